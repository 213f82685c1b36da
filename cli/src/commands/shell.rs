//! `remora shell HOST [--name N | --id UUID] [--force | --watch] [-e CHAR|none]`: an interactive
//! shell on a terminal the agent keeps. The local terminal is raw while attached and restored on
//! every way out; `~.` detaches, the link is re-established by itself when it breaks.

use std::io::Write;

use anyhow::Context;
use remora_client::{
    ssh,
    terminal::{TermEvent, TerminalStream},
    Client,
};
use remora_wire::{OpenTerminal, SessionRef, TermRedraw, DEFAULT_TERM_WINDOW};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use super::reconnect_policy_ending;
use crate::{
    args::{Cli, ShellArgs},
    keyboard::Keyboard,
    terminal::{window_size, Attached, Escapes},
    values::EscapeChar,
};

/// How the attachment ended, and the exit status it gives.
enum End {
    Detached,
    ShellExited(Option<i32>),
    TakenOver(String),
    Ended,
}

pub async fn run(cli: &Cli, args: &ShellArgs) -> anyhow::Result<u8> {
    let escape = match args.escape {
        Some(escape) => escape,
        None => configured_escape(cli, &args.host)?,
    };
    let (rows, cols) = window_size().unwrap_or((24, 80));
    let session = match (&args.name, args.id) {
        (_, Some(id)) => Some(SessionRef::Id(id)),
        (Some(name), None) => Some(SessionRef::Name(name.clone())),
        (None, None) => None,
    };
    let request = OpenTerminal {
        create: matches!(session, Some(SessionRef::Name(_))),
        session,
        rows,
        cols,
        term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()),
        force: args.force,
        watch: args.watch,
        resume: None,
        window: DEFAULT_TERM_WINDOW,
        idle_timeout_secs: args.idle_timeout.map(|t| t.secs()),
        configuration: None,
        buffering: None,
    };
    let mut client = Client::connect(&args.host, &cli.ssh_options()).await?;
    client.set_reconnect(reconnect_policy_ending(cli, &args.host, "\r\n"));
    let (opened, stream) = client.open_terminal(request).await?;
    let name = remora_client::visible(&opened.session.name);
    // Shown after the first repaint, which would otherwise scroll it away.
    let note = (opened.created && args.name.is_none()).then(|| {
        format!(
            "remora: {}: opened session {name}; reattach with `remora shell {} --name {name}`\r\n",
            args.host, args.host
        )
    });
    let local = Attached::enter();
    let end = attached(stream, Escapes::new(escape), args.watch, note).await;
    drop(local);
    let end = end?;
    Ok(match end {
        End::Detached => {
            eprintln!(
                "remora: detached from session {name} on {}; the shell keeps running",
                args.host
            );
            0
        }
        End::ShellExited(code) => {
            eprintln!("remora: the shell of session {name} on {} ended", args.host);
            code.map_or(0, |c| c.clamp(0, 255) as u8)
        }
        End::TakenOver(by) => {
            eprintln!(
                "remora: {}: session {name} was {}; its shell keeps running there",
                args.host,
                remora_client::visible(&by)
            );
            1
        }
        End::Ended => 0,
    })
}

/// ssh_config's EscapeChar for the host, else `~`.
fn configured_escape(cli: &Cli, host: &str) -> anyhow::Result<EscapeChar> {
    let target: ssh::Target = host.parse()?;
    let settings = ssh::resolve(&target, &cli.ssh_options())?;
    match settings.escape_char {
        Some(text) => EscapeChar::parse(&text).with_context(|| format!("EscapeChar for {host} in ssh_config")),
        None => Ok(EscapeChar::Byte(b'~')),
    }
}

/// Runs until detach, the shell's end, a takeover, an error or a signal.
///
/// Keystrokes and window changes are read in the stream's own loop ([`Keyboard`]): they are
/// commands the stream carries out between frames, so typing never interrupts a reconnect;
/// only the ways out cancel it.
async fn attached(
    mut stream: TerminalStream,
    escapes: Escapes,
    watch: bool,
    mut note: Option<String>,
) -> anyhow::Result<End> {
    let (detach_tx, mut detach) = mpsc::unbounded_channel::<()>();
    let mut keyboard = Keyboard::open(escapes, watch, detach_tx)?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut stdout = std::io::stdout();
    let end = loop {
        tokio::select! {
            event = stream.next(&mut keyboard) => match event {
                Ok(TermEvent::Output(bytes)) => write_out(&mut stdout, &bytes)?,
                Ok(TermEvent::Redraw(redraw)) => {
                    write_out(&mut stdout, &repaint(&redraw))?;
                    if let Some(note) = note.take() {
                        eprint!("{note}");
                    }
                }
                Ok(TermEvent::Ended(code)) => break Ok(End::ShellExited(code)),
                Ok(TermEvent::Released(by)) => break Ok(End::TakenOver(by)),
                Ok(TermEvent::StreamEnded(_)) => break Ok(End::Ended),
                Err(err) => break Err(err.into()),
            },
            // `~.`, or the end of input (the window closed).
            _ = detach.recv() => break Ok(End::Detached),
            _ = hangup.recv() => break Ok(End::Detached),
            _ = terminate.recv() => break Ok(End::Detached),
        }
    };
    if let Ok(End::Detached) = end {
        // Keys typed before the detach still go; then the connection closes cleanly.
        stream.detach(&mut keyboard).await.ok();
    }
    end
}

fn write_out(stdout: &mut std::io::Stdout, bytes: &[u8]) -> std::io::Result<()> {
    let mut out = stdout.lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Scrollback lines first, so they land in the local terminal's own history, then enough
/// newlines to push the last of them off the screen, then the screen itself.
fn repaint(redraw: &TermRedraw) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"\x1b[?1049l\x1b[m\r");
    for line in &redraw.scrollback {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    let rows = window_size().map_or(redraw.rows, |(rows, _)| rows);
    for _ in 0..rows {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&redraw.screen);
    out
}
