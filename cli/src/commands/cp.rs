//! `remora cp [-r] [-p] [--name N] SRC… DEST`: copy to or from hosts, like scp, with
//! `HOST:PATH` on exactly one side (Copy-Item -ToSession / -FromSession). Uploads take a
//! comma host list and go to every host at once. A broken link reconnects and the copy goes
//! on from what the receiving side holds; a second run resumes an interrupted one. On a
//! terminal a progress bar per file goes to stderr; `--json` prints what was written where.

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use remora_client::{
    transfer::{Copied, CopyOptions, CopyProgress, NoProgress},
    wire::{PathKind, SessionRef},
};

use super::connect;
use crate::{
    args::{Cli, CpArgs},
    fanout::fan_out,
    values::{CpPath, HostList},
};

/// Which way a copy goes.
enum Direction {
    Up {
        sources: Vec<PathBuf>,
        hosts: HostList,
        dest: Vec<u8>,
    },
    Down {
        host: String,
        sources: Vec<Vec<u8>>,
        dest: PathBuf,
    },
}

pub async fn run(cli: &Cli, args: &CpArgs) -> anyhow::Result<u8> {
    let options = CopyOptions {
        session: args.name.clone().map(SessionRef::Name),
        recursive: args.recursive,
        preserve: args.preserve,
    };
    let gathered = match direction(&args.paths)? {
        Direction::Up { sources, hosts, dest } => {
            let many = hosts.is_many();
            fan_out(cli, &hosts, |host| {
                let (sources, dest, options) = (&sources, &dest, &options);
                async move {
                    let mut progress = progress_for(&host, many, args.json);
                    let mut client = connect(cli, &host).await?;
                    let copied = client.upload(sources, dest, options, progress.as_mut()).await?;
                    client.close().await?;
                    Ok(copied)
                }
            })
            .await
        }
        Direction::Down { host, sources, dest } => {
            let hosts = HostList(vec![host]);
            fan_out(cli, &hosts, |host| {
                let (sources, dest, options) = (&sources, &dest, &options);
                async move {
                    let mut progress = progress_for(&host, false, args.json);
                    let mut client = connect(cli, &host).await?;
                    let copied = client.download(sources, dest, options, progress.as_mut()).await?;
                    client.close().await?;
                    Ok(copied)
                }
            })
            .await
        }
    };
    if args.json {
        let hosts: Vec<_> = gathered
            .answers
            .iter()
            .map(|(host, copied)| summary_json(host, copied))
            .collect();
        println!("{}", serde_json::to_string_pretty(&hosts)?);
    }
    Ok(gathered.status)
}

/// Sorts the operands into an upload or a download; the host must be on exactly one side.
fn direction(paths: &[CpPath]) -> anyhow::Result<Direction> {
    let (dest, sources) = paths.split_last().expect("clap requires two operands");
    let remote_sources: Vec<_> = sources
        .iter()
        .filter_map(|p| match p {
            CpPath::Remote { hosts, path } => Some((hosts, path)),
            CpPath::Local(_) => None,
        })
        .collect();
    match dest {
        CpPath::Remote { hosts, path } => {
            if !remote_sources.is_empty() {
                bail!("both sides are remote; copy between hosts through a local directory");
            }
            let sources = sources
                .iter()
                .filter_map(|p| match p {
                    CpPath::Local(path) => Some(path.clone()),
                    CpPath::Remote { .. } => None,
                })
                .collect();
            Ok(Direction::Up {
                sources,
                hosts: hosts.clone(),
                dest: path.clone(),
            })
        }
        CpPath::Local(dest) => {
            if remote_sources.len() != sources.len() {
                bail!("no side is remote; name the host as HOST:PATH on one side");
            }
            let host = &remote_sources[0].0;
            if host.is_many() || remote_sources.iter().any(|(h, _)| h != host) {
                bail!("downloads come from one host; copy from each host into its own directory");
            }
            Ok(Direction::Down {
                host: host.0[0].clone(),
                sources: remote_sources.iter().map(|(_, p)| (*p).clone()).collect(),
                dest: dest.clone(),
            })
        }
    }
}

/// A progress bar on a terminal's stderr; nothing otherwise or with `--json`.
fn progress_for(host: &str, many: bool, json: bool) -> Box<dyn CopyProgress> {
    if json || !std::io::stderr().is_terminal() {
        return Box::new(NoProgress);
    }
    let prefix = if many { format!("{host}: ") } else { String::new() };
    Box::new(Bar { bar: None, prefix })
}

/// One indicatif bar per file: bytes, rate and ETA.
struct Bar {
    bar: Option<ProgressBar>,
    prefix: String,
}

impl CopyProgress for Bar {
    fn file(&mut self, name: &str, size: u64, done: u64) {
        let style =
            ProgressStyle::with_template("{prefix}{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::new(size)
            .with_style(style)
            .with_prefix(self.prefix.clone());
        bar.set_message(remora_client::visible(name).into_owned());
        bar.set_position(done);
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finished(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

fn summary_json(host: &str, copied: &[Copied]) -> serde_json::Value {
    let files: Vec<_> = copied
        .iter()
        .map(|c| {
            serde_json::json!({
                "source": String::from_utf8_lossy(&c.source),
                "path": String::from_utf8_lossy(&c.path),
                "kind": match c.kind {
                    PathKind::Dir => "dir",
                    PathKind::Symlink => "symlink",
                    _ => "file",
                },
                "size": c.size,
                "resumed_from": c.resumed_from,
            })
        })
        .collect();
    serde_json::json!({
        "host": host,
        "paths": files,
        "bytes": copied.iter().map(|c| c.size).sum::<u64>(),
    })
}
