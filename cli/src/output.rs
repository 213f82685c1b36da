//! Printing for people and for `--json`: the session table, durations and timestamps, and the
//! sink that writes received output to this process's stdout and stderr.

use std::{
    io::{self, Write},
    time::{Duration, UNIX_EPOCH},
};

use remora_wire::{CommandEnded, CommandInfo, Output, OutputDropped, SessionInfo, Stream, UnixMillis};

use remora_client::{visible, OutputSink};

/// Writes command output to our stdout/stderr, keeping the streams apart. With a prefix (many
/// hosts at once) every line starts with `host: `; bytes are written as they come, never held
/// back, so what is acknowledged has been written.
#[derive(Default)]
pub struct StdSink {
    prefix: Option<String>,
    /// Where the bytes go: this terminal, a host's files, or memory (`--group`).
    target: SinkTarget,
    /// Whether the next byte on stdout / stderr starts a line.
    mid_line: [bool; 2],
    /// Exit code of the last command that ended.
    pub last_exit: Option<i32>,
    /// Output bytes written.
    pub bytes: u64,
}

/// Where a [`StdSink`] writes.
#[derive(Default)]
enum SinkTarget {
    #[default]
    Terminal,
    Files(std::fs::File, std::fs::File),
    Memory(Vec<u8>, Vec<u8>),
}

impl StdSink {
    /// A sink that prefixes lines with `host: ` when `prefixed`.
    pub fn for_host(host: &str, prefixed: bool) -> Self {
        Self {
            prefix: prefixed.then(|| format!("{host}: ")),
            ..Self::default()
        }
    }

    /// A sink that writes stdout and stderr to these files (a host's files of `--output-dir`).
    pub fn to_files(stdout: std::fs::File, stderr: std::fs::File) -> Self {
        Self {
            target: SinkTarget::Files(stdout, stderr),
            ..Self::default()
        }
    }

    /// A sink that holds what it is given, for [`StdSink::take_held`] (`--group`).
    pub fn held() -> Self {
        Self {
            target: SinkTarget::Memory(Vec::new(), Vec::new()),
            ..Self::default()
        }
    }

    /// What a `--group` sink held: stdout and stderr.
    pub fn take_held(&mut self) -> (Vec<u8>, Vec<u8>) {
        match &mut self.target {
            SinkTarget::Memory(stdout, stderr) => (std::mem::take(stdout), std::mem::take(stderr)),
            _ => (Vec::new(), Vec::new()),
        }
    }

    fn write_stream(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        match (&mut self.target, stream) {
            (SinkTarget::Files(stdout, _), Stream::Stdout) => stdout.write_all(data),
            (SinkTarget::Files(_, stderr), Stream::Stderr) => stderr.write_all(data),
            (SinkTarget::Memory(stdout, _), Stream::Stdout) => {
                stdout.extend_from_slice(data);
                Ok(())
            }
            (SinkTarget::Memory(_, stderr), Stream::Stderr) => {
                stderr.extend_from_slice(data);
                Ok(())
            }
            (SinkTarget::Terminal, Stream::Stdout) if self.prefix.is_none() => write_stdout_unbuffered(data),
            (SinkTarget::Terminal, Stream::Stdout) => self.write_prefixed(&mut io::stdout().lock(), 0, data),
            (SinkTarget::Terminal, Stream::Stderr) => {
                io::stdout().lock().flush()?;
                self.write_prefixed(&mut io::stderr().lock(), 1, data)
            }
        }
    }

    fn write_prefixed(&mut self, out: &mut dyn Write, index: usize, data: &[u8]) -> io::Result<()> {
        let Some(prefix) = &self.prefix else {
            return out.write_all(data);
        };
        for line in data.split_inclusive(|&b| b == b'\n') {
            if !self.mid_line[index] {
                out.write_all(prefix.as_bytes())?;
            }
            out.write_all(line)?;
            self.mid_line[index] = !line.ends_with(b"\n");
        }
        Ok(())
    }
}

impl OutputSink for StdSink {
    fn output(&mut self, output: &Output) -> io::Result<()> {
        self.bytes += output.data.len() as u64;
        self.write_stream(output.stream, &output.data)
    }

    fn dropped(&mut self, dropped: &OutputDropped) -> io::Result<()> {
        let note = format!(
            "remora: {} bytes of job {}'s output were dropped (entries {}..={}; buffering mode drop)\n",
            dropped.bytes, dropped.command, dropped.first_seq, dropped.seq
        );
        if !matches!(self.target, SinkTarget::Terminal) {
            return self.write_stream(Stream::Stderr, note.as_bytes());
        }
        io::stdout().lock().flush()?;
        let prefix = self.prefix.as_deref().unwrap_or("");
        let mut stderr = io::stderr().lock();
        if self.mid_line[1] {
            writeln!(stderr)?;
            self.mid_line[1] = false;
        }
        write!(stderr, "{prefix}{note}")
    }

    fn ended(&mut self, ended: &CommandEnded) -> io::Result<()> {
        self.last_exit = ended.exit_code;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.target {
            SinkTarget::Files(stdout, stderr) => {
                stdout.flush()?;
                stderr.flush()
            }
            SinkTarget::Memory(..) => Ok(()),
            SinkTarget::Terminal => {
                io::stdout().lock().flush()?;
                io::stderr().lock().flush()
            }
        }
    }
}

/// Writes straight to fd 1, after whatever std's stdout still holds. Std's stdout is
/// line-buffered and scans every byte for a newline, which in a bulk stream costs more than the
/// write itself; received output is written at once anyway.
fn write_stdout_unbuffered(data: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.flush()?;
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(&stdout, rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => rest = &rest[written..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

/// RFC 3339 UTC, seconds precision.
pub fn timestamp(millis: UnixMillis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
}

/// `2h`, `90s`: a duration as people type it.
pub fn duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// The session table, or a JSON array with `--json`.
pub fn print_sessions(sessions: &[SessionInfo], json: bool) -> serde_json::Result<()> {
    if json {
        let objects: Vec<_> = sessions.iter().map(session_json).collect();
        println!("{}", serde_json::to_string_pretty(&objects)?);
    } else if !sessions.is_empty() {
        print!("{}", session_table(sessions));
    }
    Ok(())
}

/// The `ls` table, like Get-PSSession (Id is the instance id) plus command counts and expiry.
pub fn session_table(sessions: &[SessionInfo]) -> String {
    let header = [
        "Id",
        "Name",
        "Host",
        "State",
        "Configuration",
        "Availability",
        "Running",
        "Done",
        "Terminal",
        "Expires",
    ];
    table(header, sessions.iter().map(session_row).collect())
}

/// Columns padded to their widest cell, counted in characters as `format!` pads them. Cells
/// hold host text already made visible, so none has a control character to throw this off.
fn table<const N: usize>(header: [&str; N], rows: Vec<[String; N]>) -> String {
    let mut widths = header.map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &header.map(String::from), &widths);
    for row in &rows {
        push_row(&mut out, row, &widths);
    }
    out
}

/// `80x24 vim`, `ended (0)`, or `-` without a terminal.
fn terminal_cell(s: &SessionInfo) -> String {
    match &s.terminal {
        None => "-".into(),
        Some(t) if t.foreground.is_none() && t.exit_code.is_some() => {
            format!("ended ({})", t.exit_code.unwrap_or_default())
        }
        Some(t) => format!(
            "{}x{} {}",
            t.cols,
            t.rows,
            visible(t.foreground.as_deref().unwrap_or("?"))
        ),
    }
}

fn session_row(s: &SessionInfo) -> [String; 10] {
    [
        s.instance_id.to_string(),
        visible(&s.name).into_owned(),
        visible(&s.host).into_owned(),
        s.state.to_string(),
        visible(&s.configuration).into_owned(),
        s.availability.to_string(),
        (s.commands_running + s.commands_queued).to_string(),
        s.commands_completed.to_string(),
        terminal_cell(s),
        s.expires_at.map_or_else(|| "-".into(), timestamp),
    ]
}

fn push_row<const N: usize>(out: &mut String, cells: &[String; N], widths: &[usize; N]) {
    let line: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect();
    out.push_str(line.join("  ").trim_end());
    out.push('\n');
}

/// The `jobs` table, like Get-Job.
pub fn command_table(commands: &[CommandInfo]) -> String {
    let mut out = format!(
        "{:<5} {:<10} {:<5} {:<5} {:<12} {:<20} {:<20} {}\n",
        "Id", "State", "Exit", "Tries", "Label", "Started", "Ended", "Command"
    );
    for c in commands {
        let exit = c.exit_code.map_or_else(|| "-".into(), |code| code.to_string());
        let started = c.started_at.map_or_else(|| "-".into(), timestamp);
        let ended = c.ended_at.map_or_else(|| "-".into(), timestamp);
        let text: String = visible(&c.command.replace('\n', "; ")).chars().take(60).collect();
        let state = c.state.to_string();
        let tries = attempts(c);
        let label: String = visible(c.options.label.as_deref().unwrap_or("-"))
            .chars()
            .take(12)
            .collect();
        out.push_str(&format!(
            "{:<5} {state:<10} {exit:<5} {tries:<5} {label:<12} {started:<20} {ended:<20} {text}\n",
            c.id
        ));
        if let Some(reason) = &c.reason {
            out.push_str(&format!("      {}: {}\n", c.state, visible(reason)));
        }
    }
    out
}

/// `2/4`: attempts so far out of those allowed, or `-` for a job that has not started.
fn attempts(c: &CommandInfo) -> String {
    match (c.attempts, c.options.retries) {
        (0, _) => "-".into(),
        (n, 0) => n.to_string(),
        (n, retries) => format!("{n}/{}", retries + 1),
    }
}

/// One line saying where a job stands now (`jobs --follow` without a terminal).
pub fn job_change(c: &CommandInfo) -> String {
    let mut line = format!("job {} {}", c.id, c.state);
    if let Some(code) = c.exit_code.filter(|_| c.ended_at.is_some()) {
        line.push_str(&format!(" exit {code}"));
    }
    if c.attempts > 1 {
        line.push_str(&format!(" attempt {}", attempts(c)));
    }
    if let Some(reason) = &c.reason {
        line.push_str(&format!(": {}", visible(reason)));
    }
    line
}

/// A command as a `--json` object.
pub fn command_json(c: &CommandInfo) -> serde_json::Value {
    let after: Vec<_> = c
        .options
        .after
        .iter()
        .map(|d| serde_json::json!({"job": d.job, "ok": d.kind == remora_wire::DependencyKind::Succeeded}))
        .collect();
    serde_json::json!({
        "id": c.id,
        "command": c.command,
        "state": c.state.to_string(),
        "exit_code": c.exit_code,
        "queued_at": timestamp(c.queued_at),
        "started_at": c.started_at.map(timestamp),
        "ended_at": c.ended_at.map(timestamp),
        "dropped_bytes": c.dropped_bytes,
        "label": c.options.label,
        "after": after,
        "retries": c.options.retries,
        "attempts": c.attempts,
        "reason": c.reason,
    })
}

/// A session as a `--json` object with the documented field names.
pub fn session_json(s: &SessionInfo) -> serde_json::Value {
    serde_json::json!({
        "name": s.name,
        "instance_id": s.instance_id,
        "host": s.host,
        "state": s.state.to_string(),
        "availability": s.availability.to_string(),
        "configuration": s.configuration,
        "idle_timeout_secs": s.idle_timeout_secs,
        "expires_at": s.expires_at.map(timestamp),
        "buffering": s.buffering.as_str(),
        "commands_running": s.commands_running,
        "commands_queued": s.commands_queued,
        "commands_completed": s.commands_completed,
        "commands_failed": s.commands_failed,
        "created_at": timestamp(s.created_at),
        "disconnected_at": s.disconnected_at.map(timestamp),
        "attached_from": s.attached.as_ref().map(|a| a.from.clone()),
        "attached_since": s.attached.as_ref().map(|a| timestamp(a.since)),
        "broken_reason": s.broken_reason,
        "unacked_bytes": s.unacked_bytes,
        "spilled_bytes": s.spilled_bytes,
        "dropped_bytes": s.dropped_bytes,
        "blocked_reason": s.blocked_reason,
        "agent_version": s.agent_version,
        "terminal": s.terminal.as_ref().map(|t| serde_json::json!({
            "rows": t.rows,
            "cols": t.cols,
            "foreground": t.foreground,
            "exit_code": t.exit_code,
            "running": t.foreground.is_some() || t.exit_code.is_none(),
            "watchers": t.watchers,
        })),
    })
}

/// `remora conn ls`: one row per held connection.
pub fn held_table(held: &[remora_client::holder::Held]) -> String {
    let header = ["Host", "Since", "Idle", "Calls", "Running", "Ready", "Persist"];
    let rows = held
        .iter()
        .map(|h| {
            [
                visible(&h.host).into_owned(),
                timestamp(h.since),
                duration(h.idle_secs),
                h.requests.to_string(),
                h.active.to_string(),
                h.ready.to_string(),
                persist_text(&h.persist),
            ]
        })
        .collect();
    table(header, rows)
}

/// `remora conn ls --json`.
pub fn held_json(held: &[remora_client::holder::Held]) -> serde_json::Value {
    held.iter()
        .map(|h| {
            serde_json::json!({
                "host": h.host,
                "since": timestamp(h.since),
                "idle_secs": h.idle_secs,
                "requests": h.requests,
                "active": h.active,
                "connections": h.connections,
                "ready": h.ready,
                "persist": h.persist,
            })
        })
        .collect()
}

/// ControlPersist for people: `until stopped`, or a duration.
fn persist_text(persist: &str) -> String {
    match persist.parse::<u64>() {
        Ok(secs) => duration(secs),
        Err(_) => "until stopped".into(),
    }
}
