//! Fleets: where the hosts come from (the command line, `-H` files, an Ansible inventory), how
//! many are contacted at once (`--throttle`), the live progress line on a terminal with the
//! summary of failures after it, and where each host's output goes (`--output-dir`, `--group`).

use std::{
    fs,
    io::{self, IsTerminal, Write},
    path::{Path, PathBuf},
};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{inventory, output::StdSink, values::HostList};

/// Hosts PowerShell's -ThrottleLimit and pssh contact at once by default.
pub const DEFAULT_THROTTLE: usize = 32;

/// The fleet flags, global to every verb that takes hosts.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Contact at most N hosts at once (like -ThrottleLimit, pssh -p).
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_THROTTLE, value_parser = throttle)]
    pub throttle: usize,
    /// Also the hosts listed in FILE, one host or alias per line, `#` comments; may be repeated.
    #[arg(short = 'H', long = "hosts-file", global = true, value_name = "FILE")]
    pub hosts_files: Vec<PathBuf>,
    /// Also the hosts of an Ansible inventory (INI or YAML); ansible_host, ansible_port and
    /// ansible_user are honoured.
    #[arg(long, global = true, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// With --inventory: only this group (with its children) or host.
    #[arg(long, global = true, value_name = "GROUP", requires = "inventory")]
    pub limit: Option<String>,
    /// Write each host's stdout, stderr and exit status to DIR/HOST.{stdout,stderr,exit} instead
    /// of the terminal (like pssh -o -e).
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "group")]
    pub output_dir: Option<PathBuf>,
    /// Print identical output once, headed by the hosts that produced it (like dshbak -c).
    #[arg(long, global = true)]
    pub group: bool,
}

/// `--throttle N`: a whole number of hosts, at least 1.
fn throttle(text: &str) -> Result<usize, crate::values::ValueError> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(crate::values::ValueError::Throttle(text.to_string())),
    }
}

impl FleetArgs {
    /// The hosts to contact: those named on the command line, then `-H` files, then the
    /// inventory, in order, without repeats.
    pub fn resolve(&self, named: &HostList) -> anyhow::Result<HostList> {
        let mut lists = vec![named.clone()];
        for file in &self.hosts_files {
            lists.push(HostList(inventory::host_file(file)?));
        }
        if let Some(file) = &self.inventory {
            lists.push(HostList(inventory::ansible(file, self.limit.as_deref())?));
        }
        let hosts = HostList::merge(&lists);
        if hosts.0.is_empty() {
            anyhow::bail!("no hosts: name them (web1,web2), or give -H FILE or --inventory FILE");
        }
        Ok(hosts)
    }

    /// Whether any host list comes from a file.
    pub fn names_files(&self) -> bool {
        !self.hosts_files.is_empty() || self.inventory.is_some()
    }

    /// Where each host's output goes.
    pub fn output(&self) -> OutputMode {
        match (&self.output_dir, self.group) {
            (Some(dir), _) => OutputMode::Dir(dir.clone()),
            (None, true) => OutputMode::Group,
            (None, false) => OutputMode::Live,
        }
    }
}

/// Where a host's command output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputMode {
    /// To this terminal as it arrives (`host: ` prefixes for several hosts).
    Live,
    /// To `DIR/HOST.stdout`, `.stderr` and `.exit`.
    Dir(PathBuf),
    /// Held until every host is done, then printed once per distinct output.
    Group,
}

/// The live `done / failed / running` line, on a terminal only.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
    failed: usize,
}

impl Progress {
    /// A progress line for `total` hosts when stderr is a terminal and there are several.
    pub fn start(total: usize) -> Self {
        let bar = (total > 1 && io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("remora: {pos}/{len} hosts done {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let progress = Self {
            bar,
            total,
            done: 0,
            failed: 0,
        };
        progress.show(0);
        progress
    }

    /// Whether the line is shown (failures then wait for the summary).
    pub fn shown(&self) -> bool {
        self.bar.is_some()
    }

    /// One more host is done; `running` are still being contacted.
    pub fn done(&mut self, failed: bool, running: usize) {
        self.done += 1;
        self.failed += usize::from(failed);
        self.show(running);
    }

    /// Draws the counts, unless a host is asking a question on the terminal now: the line
    /// would land inside it (the next host done draws the counts then).
    fn show(&self, running: usize) {
        let Some(bar) = &self.bar else {
            return;
        };
        let Some(_turn) = remora_client::ssh::terminal::try_turn() else {
            return;
        };
        bar.set_position(self.done as u64);
        bar.set_message(format!("({} failed, {running} running)", self.failed));
    }

    /// Clears the line and prints the failures, each with its reason.
    pub fn finish(self, failures: &[String]) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
            if !failures.is_empty() {
                eprintln!("remora: {} of {} hosts failed:", failures.len(), self.total);
                for failure in failures {
                    eprintln!("  {failure}");
                }
            }
        }
    }
}

/// The sink for `host` in the output `mode`: the terminal, the host's files, or memory.
pub fn sink(mode: &OutputMode, host: &str, prefixed: bool) -> io::Result<StdSink> {
    Ok(match mode {
        OutputMode::Live => StdSink::for_host(host, prefixed),
        OutputMode::Dir(dir) => {
            let (stdout, stderr) = output_files(dir, host)?;
            StdSink::to_files(stdout, stderr)
        }
        OutputMode::Group => StdSink::held(),
    })
}

/// After every host is done: `--output-dir` gets each host's exit status beside its output,
/// `--group` prints the held outputs grouped; live output was printed already.
pub fn deliver(mode: &OutputMode, finished: Vec<(String, StdSink, u8)>) -> io::Result<()> {
    match mode {
        OutputMode::Live => Ok(()),
        OutputMode::Dir(dir) => finished
            .iter()
            .try_for_each(|(host, _, status)| write_exit(dir, host, *status)),
        OutputMode::Group => print_grouped(
            finished
                .into_iter()
                .map(|(host, mut sink, status)| {
                    let (stdout, stderr) = sink.take_held();
                    (host, (stdout, stderr, status))
                })
                .collect(),
        ),
    }
}

/// Writes one host's exit status beside its output files (`--output-dir`).
fn write_exit(dir: &Path, host: &str, status: u8) -> io::Result<()> {
    let mut file = output_file(&remora_unix::Dir::open(dir)?, dir, host, "exit")?;
    file.write_all(format!("{status}\n").as_bytes())
}

/// The files of `host` in `dir`: `HOST.stdout` and `HOST.stderr`, created (truncated) now.
pub fn output_files(dir: &Path, host: &str) -> io::Result<(fs::File, fs::File)> {
    fs::create_dir_all(dir)?;
    let handle = remora_unix::Dir::open(dir)?;
    Ok((
        output_file(&handle, dir, host, "stdout")?,
        output_file(&handle, dir, host, "stderr")?,
    ))
}

/// `DIR/HOST.EXT`, made relative to the directory handle: created, or an existing regular file
/// of ours with one link truncated after `fstat` checked it. A symlink or hard link another user
/// planted under the name is refused, never written through. The error names the file.
fn output_file(handle: &remora_unix::Dir, dir: &Path, host: &str, ext: &str) -> io::Result<fs::File> {
    let name = format!("{}.{ext}", file_name(host));
    handle
        .create_or_truncate(name.as_bytes())
        .map_err(|err| io::Error::new(err.kind(), format!("cannot write {}: {err}", dir.join(&name).display())))
}

/// A host as a file name: `/` (and NUL) cannot be in one.
fn file_name(host: &str) -> String {
    host.replace(['/', '\0'], "_")
}

/// One host's held output: stdout, stderr and exit status.
type Held = (Vec<u8>, Vec<u8>, u8);

/// `--group`: prints each distinct (stdout, stderr, status) once, headed by its hosts.
fn print_grouped(outputs: Vec<(String, Held)>) -> io::Result<()> {
    let mut groups: Vec<(Vec<String>, Held)> = Vec::new();
    for (host, held) in outputs {
        match groups.iter_mut().find(|(_, known)| *known == held) {
            Some((hosts, _)) => hosts.push(host),
            None => groups.push((vec![host], held)),
        }
    }
    let mut out = io::stdout().lock();
    for (hosts, (stdout, stderr, status)) in groups {
        let rule = "-".repeat(40);
        writeln!(out, "{rule}\n{} (exit {status})\n{rule}", hosts.join(","))?;
        out.write_all(&stdout)?;
        if !stderr.is_empty() {
            writeln!(out, "[stderr]")?;
            out.write_all(&stderr)?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_waits_while_a_question_holds_the_terminal() {
        let mut progress = Progress {
            bar: Some(ProgressBar::hidden()),
            total: 2,
            done: 0,
            failed: 0,
        };
        let question = remora_client::ssh::terminal::try_turn().expect("the terminal is free");
        progress.done(false, 1);
        assert_eq!(
            progress.bar.as_ref().unwrap().position(),
            0,
            "not drawn inside a question"
        );
        drop(question);
        progress.done(true, 0);
        let bar = progress.bar.as_ref().unwrap();
        assert_eq!(
            (bar.position(), bar.message()),
            (2, "(1 failed, 0 running)".to_string())
        );
    }

    #[test]
    fn host_names_make_safe_file_names() {
        assert_eq!(file_name("ops@web1:2222"), "ops@web1:2222");
        assert_eq!(file_name("../etc"), ".._etc");
    }
}
