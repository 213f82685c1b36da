//! Entry points of the `remora-agent` subcommands: runtime, logging, then the library.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::{handover, launcher, lifecycle, paths::StatePaths, serve, subsystem};

/// `remora-agent subsystem`: log to stderr (sshd forwards it), hand the channel to the daemon.
pub fn subsystem(paths: StatePaths) -> anyhow::Result<()> {
    init_stderr_log();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(subsystem::run(paths))?;
    Ok(())
}

/// `remora-agent keeper --socket PATH`: no runtime and no log, only the keeper's `poll` loop.
pub fn keeper(socket: &std::path::Path) -> anyhow::Result<()> {
    crate::keeper::run(socket)?;
    Ok(())
}

/// `remora-agent daemon [--resume SNAPSHOT]`: log to the state dir's log file and serve until
/// stopped; with `--resume`, carry on from the program that handed this process over.
pub fn daemon(paths: StatePaths, resume: Option<PathBuf>) -> anyhow::Result<()> {
    // Before any thread or runtime opens a descriptor: keep exactly what was handed over.
    let handed = resume.map(|file| handover::DaemonSnapshot::read_and_remove(&file));
    match &handed {
        Some(Ok(snapshot)) => handover::close_stray_fds(&snapshot.kept_fds()),
        Some(Err(_)) => handover::close_stray_fds(&[]),
        None => {}
    }
    paths.prepare()?;
    init_file_log(&paths)?;
    let handed = match handed.transpose() {
        Ok(handed) => handed,
        Err(err) => {
            tracing::error!("{err}; starting afresh: saved sessions come back Broken");
            None
        }
    };
    keep_freed_heap();
    // One worker: the daemon's work is moving bytes between pipes, and a chunk read by one task
    // and written by another costs a cross-thread wakeup on every handoff with two. Blocking
    // work (saving, spill files) runs on the blocking pool as before.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(lifecycle::run(paths, handed))?;
    Ok(())
}

/// Output moves through 256 KiB chunks that are freed as clients acknowledge them. glibc's
/// defaults map each such chunk afresh and hand freed heap back to the kernel as soon as 128 KiB
/// sit free, so a stream faults its pages in again and again. Keep up to 16 MiB of freed heap
/// and take chunks from the heap.
fn keep_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the runtime's threads start.
    unsafe {
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, 16 << 20);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// `remora-agent upgrade`: hand the running daemon over to this binary, keeping its sessions,
/// running commands and unreceived output.
pub fn upgrade(paths: StatePaths) -> anyhow::Result<()> {
    init_stderr_log();
    let binary = handover::own_binary()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let version = env!("CARGO_PKG_VERSION");
        let Some(answer) = handover::request(&paths, &binary).await? else {
            println!(
                "no remora daemon is running; the next connection starts remora-agent {version} from {}",
                binary.display()
            );
            return Ok(());
        };
        let last = answer.lines().last().unwrap_or_default();
        if let Some(reason) = last.strip_prefix("refused: ") {
            anyhow::bail!("{reason}");
        }
        let welcome = handover::confirm(&paths).await?;
        println!(
            "handed over: the daemon (pid {}) now runs remora-agent {}; its sessions, running commands and unreceived output carried on",
            welcome.daemon_pid, welcome.agent_version
        );
        Ok(())
    })
}

/// `remora-agent handover-check`: which handover snapshots this binary reads.
pub fn handover_check() -> anyhow::Result<()> {
    handover::print_formats();
    Ok(())
}

/// `remora-agent config check`: validate agent.toml and print the effective values.
pub fn config_check(paths: StatePaths) -> anyhow::Result<()> {
    let path = paths.config_file();
    let config = crate::config::load(&path)?;
    let origin = if path.exists() {
        ""
    } else {
        " (no file: built-in defaults)"
    };
    println!("# {}: ok{origin}\n{}", path.display(), config.describe());
    Ok(())
}

/// `remora-agent serve`: the embedded SSH server, relaying each subsystem channel to the daemon.
pub fn serve(
    paths: StatePaths,
    listen: SocketAddr,
    authorized_keys: &str,
    host_key: Option<PathBuf>,
) -> anyhow::Result<()> {
    init_stderr_log();
    paths.prepare()?;
    let options = serve::ServeOptions {
        listen,
        authorized_keys: expand_home(authorized_keys),
        host_key,
    };
    let connect_paths = paths.clone();
    let connect: serve::DaemonConnector = Arc::new(move || {
        let paths = connect_paths.clone();
        Box::pin(async move { launcher::connect_daemon(&paths).await })
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            stop.cancel();
        });
        serve::run(options, &paths, connect, shutdown).await
    })?;
    Ok(())
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn init_stderr_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMORA_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The daemon logs to `daemon.log` in its state dir, rotated by size (see [`crate::logfile`]). At
/// the default level (`info`) it records sessions, clients and errors — never command text or
/// output.
fn init_file_log(paths: &StatePaths) -> anyhow::Result<()> {
    use crate::logfile::{RotatingLog, KEEP_ROTATED, MAX_LOG_BYTES};
    let file = RotatingLog::open(&paths.log_file(), MAX_LOG_BYTES, KEEP_ROTATED)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMORA_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
