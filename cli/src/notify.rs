//! `--notify` on `receive`, `connect` and `wait`: the terminal bell and a one-line summary on
//! stderr when a followed job ends, so a user in another window hears of it.

use std::io::{self, Write};

use remora_client::OutputSink;
use remora_wire::{CommandEnded, CommandInfo, CommandState, Output, OutputDropped};

use crate::output::StdSink;

/// Rings the bell and prints `remora: HOST: job ID [LABEL] ended STATE (exit N)` on stderr.
pub fn announce(host: &str, job: u64, label: Option<&str>, state: CommandState, exit_code: Option<i32>) {
    let label = label
        .map(|l| format!(" [{}]", remora_client::visible(l)))
        .unwrap_or_default();
    let exit = exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default();
    let _ = io::stdout().lock().flush();
    let _ = writeln!(
        io::stderr().lock(),
        "\x07remora: {host}: job {job}{label} ended {state}{exit}"
    );
}

/// [`announce`] for a job as `jobs` and `wait` see it.
pub fn announce_job(host: &str, job: &CommandInfo) {
    announce(host, job.id, job.options.label.as_deref(), job.state, job.exit_code);
}

/// A [`StdSink`] that announces every job end it writes.
pub struct NotifySink<'a> {
    pub inner: &'a mut StdSink,
    pub host: String,
    pub enabled: bool,
}

impl OutputSink for NotifySink<'_> {
    fn output(&mut self, output: &Output) -> io::Result<()> {
        self.inner.output(output)
    }

    fn dropped(&mut self, dropped: &OutputDropped) -> io::Result<()> {
        self.inner.dropped(dropped)
    }

    fn ended(&mut self, ended: &CommandEnded) -> io::Result<()> {
        self.inner.ended(ended)?;
        if self.enabled {
            announce(&self.host, ended.command, None, ended.state, ended.exit_code);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
