//! The holder process (`remora __hold`): holds SSH connections by destination (the caller's
//! resolved settings, see [`Destination`]) and carries callers' byte streams to channels on
//! them, until every connection has been idle past its ControlPersist. It connects with the
//! settings a caller sent, never resolving ssh_config for the destination itself.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use nix::fcntl::Flock;
use tokio::net::{UnixListener, UnixStream};

use super::{
    prepare_dir,
    protocol::{Envelope, Held, Reply, Request},
    read_frame, same_uid, socket_in, write_frame, Destination, HolderError, VERSION,
};
use crate::{
    error::{ClientError, Result},
    ssh::{self, Persist, SshLink, SubsystemStream},
};

/// Connections one host key may use at once: sshd's MaxSessions caps channels per connection.
const MAX_LINKS: usize = 16;
/// How often idle connections are looked at.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Runs the holder in `dir` until nothing is held; `warm` is connected to first.
pub async fn serve(dir: PathBuf, warm: Option<Destination>) -> Result<()> {
    prepare_dir(&dir)?;
    let Some(_lock) = take_lock(&dir)? else {
        // Another holder of this version runs: it serves; warm it instead.
        if let Some(destination) = warm {
            super::Holder::new(PathBuf::new())
                .with_dir(dir)
                .warm(&destination)
                .await;
        }
        return Ok(());
    };
    let listener = bind(&socket_in(&dir))?;
    let holder = Arc::new(State::default());
    if let Some(destination) = warm {
        let holder = holder.clone();
        tokio::spawn(async move { holder.warm(destination).await });
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let holder = holder.clone();
                    tokio::spawn(async move { holder.serve_caller(stream).await });
                }
            }
            _ = tokio::time::sleep(REAP_EVERY) => {
                if holder.reap() {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(socket_in(&dir));
    Ok(())
}

/// Takes the holder's lifetime lock; `None` if another holder has it.
fn take_lock(dir: &Path) -> std::result::Result<Option<Flock<std::fs::File>>, HolderError> {
    let path = dir.join(format!("holder-{VERSION}.lock"));
    remora_unix::try_lock_exclusive(&path).map_err(|err| HolderError(format!("cannot lock {}: {err}", path.display())))
}

/// Binds the socket 0600, replacing a stale one (we hold the lock, so nobody serves it).
fn bind(path: &Path) -> std::result::Result<UnixListener, HolderError> {
    remora_unix::bind_private_socket(path)
        .and_then(|(listener, _)| UnixListener::from_std(listener))
        .map_err(|err| HolderError(format!("cannot bind {}: {err}", path.display())))
}

/// Everything held, by host key.
#[derive(Default)]
struct State {
    hosts: Mutex<HashMap<String, Arc<HostLinks>>>,
    /// Callers being served now: the holder does not exit under them.
    callers: AtomicU32,
}

/// The connections to one destination.
struct HostLinks {
    destination: Destination,
    persist: Persist,
    since: remora_wire::UnixMillis,
    links: tokio::sync::Mutex<Vec<Arc<SshLink>>>,
    last_used: Mutex<Instant>,
    requests: AtomicU64,
    active: AtomicU32,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HostLinks>>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn serve_caller(self: Arc<Self>, stream: UnixStream) {
        if !same_uid(&stream) {
            return;
        }
        self.callers.fetch_add(1, Ordering::Relaxed);
        self.answer(stream).await;
        self.callers.fetch_sub(1, Ordering::Relaxed);
    }

    async fn answer(&self, mut stream: UnixStream) {
        let Ok(envelope) = read_frame::<Envelope>(&mut stream).await else {
            return;
        };
        if envelope.version != VERSION {
            let reason = format!("this holder runs remora {VERSION}, the caller {}", envelope.version);
            let _ = write_frame(&mut stream, &Reply::Refused { reason }).await;
            return;
        }
        match envelope.request {
            Request::Open { destination } => self.open(stream, destination).await,
            Request::Warm { destination } => {
                let _ = write_frame(&mut stream, &Reply::Accepted).await;
                self.warm(destination).await;
            }
            Request::Forget { destination } => {
                let count = self.forget_destination(&destination);
                let _ = write_frame(&mut stream, &Reply::Stopped { count }).await;
            }
            Request::List => {
                let _ = write_frame(&mut stream, &Reply::Held(self.list())).await;
            }
            Request::Stop { host } => {
                let count = self.stop(host.as_deref());
                let _ = write_frame(&mut stream, &Reply::Stopped { count }).await;
            }
        }
    }

    /// Connects to the host unless it is held already.
    async fn warm(&self, destination: Destination) {
        if let Ok(host) = self.host(&destination) {
            if let Err(err) = host.link(false).await {
                tracing::debug!(host = %destination.settings.alias, "warming failed: {err}");
                self.forget(&host);
            }
        }
    }

    async fn open(&self, mut stream: UnixStream, destination: Destination) {
        let host = match self.host(&destination) {
            Ok(host) => host,
            Err(err) => {
                let reason = err.to_string();
                let _ = write_frame(&mut stream, &Reply::Refused { reason }).await;
                return;
            }
        };
        let (mut channel, host_key, jump_keys) = match host.channel().await {
            Ok(opened) => opened,
            Err(err) => {
                self.forget(&host);
                let reason = err.to_string();
                let _ = write_frame(&mut stream, &Reply::Refused { reason }).await;
                return;
            }
        };
        if write_frame(&mut stream, &Reply::Opened { host_key, jump_keys })
            .await
            .is_err()
        {
            return;
        }
        host.requests.fetch_add(1, Ordering::Relaxed);
        host.active.fetch_add(1, Ordering::Relaxed);
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut channel).await;
        host.active.fetch_sub(1, Ordering::Relaxed);
        *host.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// The destination's entry, made on first use.
    fn host(&self, destination: &Destination) -> std::result::Result<Arc<HostLinks>, HolderError> {
        let key = destination.key();
        if let Some(host) = self.lock().get(&key) {
            return Ok(host.clone());
        }
        let alias = &destination.settings.alias;
        if destination.home != ssh::home_dir() {
            let home = destination.home.display();
            return Err(HolderError(format!("this holder does not run with HOME {home}")));
        }
        let persist = destination.settings.control_persist;
        if persist == Persist::Off {
            return Err(HolderError(format!("ControlPersist is off for {alias}")));
        }
        let host = Arc::new(HostLinks {
            destination: destination.clone(),
            persist,
            since: now_millis(),
            links: tokio::sync::Mutex::new(Vec::new()),
            last_used: Mutex::new(Instant::now()),
            requests: AtomicU64::new(0),
            active: AtomicU32::new(0),
        });
        Ok(self.lock().entry(key).or_insert(host).clone())
    }

    /// Drops a host whose connection could not be made (it is listed no more).
    fn forget(&self, host: &Arc<HostLinks>) {
        self.lock().retain(|_, held| !Arc::ptr_eq(held, host));
    }

    /// Drops what is held for `destination` (its connections close when their last call ends).
    fn forget_destination(&self, destination: &Destination) -> u32 {
        u32::from(self.lock().remove(&destination.key()).is_some())
    }

    fn list(&self) -> Vec<Held> {
        let mut held: Vec<Held> = self.lock().values().map(|host| host.describe()).collect();
        held.sort_by(|a, b| a.host.cmp(&b.host));
        held
    }

    fn stop(&self, host: Option<&str>) -> u32 {
        let mut hosts = self.lock();
        let before = hosts.len();
        hosts.retain(|_, held| host.is_some_and(|h| h != held.destination.settings.alias));
        (before - hosts.len()) as u32
    }

    /// Forgets hosts idle past their ControlPersist and hosts whose connection is gone (or never
    /// came); true when nothing is held and nobody is being served (the holder exits).
    fn reap(&self) -> bool {
        let mut hosts = self.lock();
        hosts.retain(|_, host| !host.expired());
        hosts.is_empty() && self.callers.load(Ordering::Relaxed) == 0
    }
}

impl HostLinks {
    /// A live connection (the newest), connecting when there is none; with `fresh`, always a
    /// new one (the others refuse channels).
    async fn link(&self, fresh: bool) -> Result<Arc<SshLink>> {
        let mut links = self.links.lock().await;
        links.retain(|link| !link.is_closed());
        if !fresh {
            if let Some(link) = links.last() {
                return Ok(link.clone());
            }
        }
        if links.len() >= MAX_LINKS {
            return Err(ClientError::Holder(format!(
                "{MAX_LINKS} connections to {} are busy",
                self.destination.settings.alias
            )));
        }
        // The holder has nobody to ask: a host that needs a question is left to the caller.
        let link = Arc::new(SshLink::connect(&self.destination.holder_settings()).await?);
        links.push(link.clone());
        Ok(link)
    }

    /// A channel to the agent, with the host keys its connection accepted (the host's, its
    /// jump hosts'): on the held connection, or on a new one if it refuses (sshd's
    /// MaxSessions) or is gone.
    async fn channel(&self) -> Result<(SubsystemStream, String, Vec<String>)> {
        let mut link = self.link(false).await?;
        let channel = match open_agent(&link).await {
            Ok(channel) => channel,
            Err(_) => {
                link = self.link(true).await?;
                open_agent(&link).await?
            }
        };
        let host_key = link.host_key().and_then(ssh::VerifiedKey::to_openssh);
        let host_key = host_key.ok_or_else(|| ClientError::Holder("no host key was recorded".into()))?;
        // A hop without a key is sent as nothing readable: the caller then trusts none of it.
        let jump_keys = link
            .jump_host_keys()
            .into_iter()
            .map(|key| key.and_then(|key| key.to_openssh()).unwrap_or_default())
            .collect();
        Ok((channel, host_key, jump_keys))
    }

    fn expired(&self) -> bool {
        if self.active.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let Ok(links) = self.links.try_lock() else {
            return false; // connecting
        };
        if links.iter().all(|link| link.is_closed()) {
            return true;
        }
        drop(links);
        let idle = self.last_used.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        match self.persist {
            Persist::For(limit) => idle >= limit,
            Persist::Forever | Persist::Off => false,
        }
    }

    fn describe(&self) -> Held {
        let active = self.active.load(Ordering::Relaxed);
        let idle = self.last_used.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        let connections = self
            .links
            .try_lock()
            .map_or(0, |links| links.iter().filter(|link| !link.is_closed()).count() as u32);
        Held {
            connections,
            host: self.destination.settings.alias.clone(),
            since: self.since,
            idle_secs: if active > 0 { 0 } else { idle.as_secs() },
            requests: self.requests.load(Ordering::Relaxed),
            active,
            persist: self.persist.to_string(),
        }
    }
}

/// The agent's channel: the `remora` subsystem, else the agent started by exec.
async fn open_agent(link: &SshLink) -> Result<SubsystemStream> {
    match link.open_subsystem(remora_wire::SUBSYSTEM_NAME).await {
        Err(ssh::SshError::SubsystemRefused { .. }) => Ok(link.open_agent_by_exec().await?),
        opened => Ok(opened?),
    }
}

fn now_millis() -> remora_wire::UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as remora_wire::UnixMillis)
}
