//! `remora jobs HOST[,HOST…] --name N [--state S] [--label GLOB] [--json | --follow]`: a
//! session's commands (Get-Job). `--follow` keeps the table up to date until every job has
//! ended: redrawn in place on a terminal, otherwise one line per change.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
};

use remora_wire::{CommandInfo, CommandList, CommandState, ListCommands, WaitJobs};

use super::with_client;
use crate::{
    args::{Cli, JobsArgs},
    fanout::fan_out,
    output,
};

pub async fn run(cli: &Cli, args: &JobsArgs) -> anyhow::Result<u8> {
    if args.follow {
        return follow(cli, args).await;
    }
    let request = ListCommands {
        session: args.session.reference(),
        label_glob: args.label.clone(),
    };
    let hosts = cli.fleet.resolve(&args.host)?;
    let gathered = fan_out(cli, &hosts, |host| {
        let request = request.clone();
        async move { with_client(cli, &host, async move |client| client.jobs(request).await).await }
    })
    .await;
    use remora_client::visible;
    if gathered.all_failed() {
        return Ok(gathered.status);
    }
    let (mut lists, status) = (gathered.answers, gathered.status);
    if let Some(state) = args.state {
        for (_, list) in &mut lists {
            list.commands.retain(|c| state.matches(c));
        }
    }
    if args.json {
        let mut objects = Vec::new();
        for (host, list) in &lists {
            objects.extend(list.commands.iter().map(|c| {
                let mut object = output::command_json(c);
                object["host"] = host.as_str().into();
                object["session"] = list.session.name.as_str().into();
                object
            }));
        }
        println!("{}", serde_json::to_string_pretty(&objects)?);
        return Ok(status);
    }
    for (host, list) in &lists {
        if hosts.is_many() {
            println!("{host}:");
        }
        match list.commands.is_empty() {
            true => eprintln!("no jobs in session {} on {host}", visible(&list.session.name)),
            false => print!("{}", output::command_table(&list.commands)),
        }
    }
    Ok(status)
}

/// `--follow`: one wait with updates per host, until every job has ended.
async fn follow(cli: &Cli, args: &JobsArgs) -> anyhow::Result<u8> {
    let request = WaitJobs {
        session: args.session.reference(),
        commands: Vec::new(),
        label_glob: args.label.clone(),
        any: false,
        updates: true,
    };
    let hosts = cli.fleet.resolve(&args.host)?;
    let redraw = std::io::stdout().is_terminal() && !hosts.is_many();
    let prefix = hosts.is_many();
    let gathered = fan_out(cli, &hosts, |host| {
        let request = request.clone();
        async move {
            let mut view = FollowView::new(&host, prefix, redraw, args.state);
            with_client(cli, &host, async |client| {
                client.wait(request, &mut |list| view.update(list)).await
            })
            .await
        }
    })
    .await;
    Ok(gathered.status)
}

/// What `jobs --follow` has shown for one host.
struct FollowView {
    host: String,
    prefix: bool,
    redraw: bool,
    state: Option<crate::values::JobStateArg>,
    shown: BTreeMap<u64, (CommandState, u32)>,
    first: bool,
}

impl FollowView {
    fn new(host: &str, prefix: bool, redraw: bool, state: Option<crate::values::JobStateArg>) -> Self {
        Self {
            host: host.to_string(),
            prefix,
            redraw,
            state,
            shown: BTreeMap::new(),
            first: true,
        }
    }

    fn update(&mut self, list: &CommandList) {
        let jobs: Vec<CommandInfo> = list
            .commands
            .iter()
            .filter(|c| self.state.is_none_or(|s| s.matches(c)))
            .cloned()
            .collect();
        let mut out = std::io::stdout().lock();
        if self.redraw {
            let _ = write!(out, "\x1b[H\x1b[2J{}", output::command_table(&jobs));
        } else if self.first {
            let _ = write!(out, "{}", self.prefixed(&output::command_table(&jobs)));
        } else {
            for job in &jobs {
                if self.shown.get(&job.id) != Some(&(job.state, job.attempts)) {
                    let _ = write!(out, "{}", self.prefixed(&format!("{}\n", output::job_change(job))));
                }
            }
        }
        let _ = out.flush();
        self.first = false;
        self.shown = jobs.iter().map(|c| (c.id, (c.state, c.attempts))).collect();
    }

    fn prefixed(&self, text: &str) -> String {
        match self.prefix {
            true => text.lines().map(|l| format!("{}: {l}\n", self.host)).collect(),
            false => text.to_string(),
        }
    }
}
