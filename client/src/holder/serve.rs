//! The holder process (`remora __hold`): holds SSH connections by destination (the caller's
//! resolved settings, see [`Destination`]) and carries callers' byte streams to channels on
//! them, until every connection has been idle past its ControlPersist. It connects with the
//! settings a caller sent, never resolving ssh_config for the destination itself.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use nix::fcntl::Flock;
use tokio::net::{UnixListener, UnixStream};

use remora_unix::LockRecover;

use super::{
    prepare_dir,
    protocol::{Envelope, Held, Reply, Request},
    read_frame, same_uid, socket_in,
    spare::{self, NotKept},
    write_frame, Destination, HolderError, VERSION,
};
use crate::{
    error::{ClientError, Result},
    ssh::{self, Persist, SshLink, SubsystemStream},
};

/// Connections one host key may use at once: sshd's MaxSessions caps channels per connection.
const MAX_LINKS: usize = 16;
/// Channels one destination keeps on standby between calls.
const MAX_SPARES: usize = 4;
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
    /// Agent channels on standby, ready for the next call (`spare.rs`).
    spares: Mutex<Vec<Spare>>,
    /// False once the host's agent refused a standby (an older agent): channels are not kept.
    keeps_spares: AtomicBool,
    /// Channels whose caller is done, being put on standby now: a call waits for one of them
    /// rather than open a channel of its own.
    returning: AtomicU32,
    /// Told when one of those is kept or given up.
    returned: tokio::sync::Notify,
    last_used: Mutex<Instant>,
    requests: AtomicU64,
    active: AtomicU32,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HostLinks>>> {
        self.hosts.lock_or_recover()
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

    /// Connects to the host unless it is held already, and keeps a channel ready on standby.
    async fn warm(&self, destination: Destination) {
        let Ok(host) = self.host(&destination) else {
            return;
        };
        match host.link(false).await {
            Ok(link) => host.prepare_spare(link).await,
            Err(err) => {
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
        let opened = match host.channel().await {
            Ok(spare) => host_keys(&spare.link)
                .map(|keys| (keys, spare))
                .ok_or_else(|| "no host key was recorded".to_string()),
            Err(err) => Err(err.to_string()),
        };
        let ((host_key, jump_keys), spare) = match opened {
            Ok(opened) => opened,
            Err(reason) => {
                self.forget(&host);
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
        if !host.keeps_spares.load(Ordering::Relaxed) {
            let mut channel = spare.channel;
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut channel).await;
            host.active.fetch_sub(1, Ordering::Relaxed);
            *host.last_used.lock_or_recover() = Instant::now();
            return;
        }
        let served = spare::serve_caller(stream, spare.channel, || {
            host.returning.fetch_add(1, Ordering::Relaxed);
        })
        .await;
        host.active.fetch_sub(1, Ordering::Relaxed);
        *host.last_used.lock_or_recover() = Instant::now();
        let stood_by = match served {
            Ok(draining) => draining.stand_by().await,
            Err(not_kept) => Err(not_kept),
        };
        match stood_by {
            Ok(channel) => host.keep(Spare {
                channel,
                link: spare.link,
            }),
            Err(NotKept::Unsupported) => host.keeps_spares.store(false, Ordering::Relaxed),
            Err(NotKept::Unclean) => {}
        }
        host.returning.fetch_sub(1, Ordering::Relaxed);
        host.returned.notify_waiters();
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
            spares: Mutex::new(Vec::new()),
            keeps_spares: AtomicBool::new(true),
            returning: AtomicU32::new(0),
            returned: tokio::sync::Notify::new(),
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

    /// A channel to the agent: a spare on standby if one is still open, else a new one on the
    /// held connection, or on a new connection if it refuses (sshd's MaxSessions) or is gone.
    async fn channel(&self) -> Result<Spare> {
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(spare) = self.live_spare().await {
                return Ok(spare);
            }
            if self.returning.load(Ordering::Relaxed) == 0 {
                break;
            }
            let _ = tokio::time::timeout(spare::STANDBY_REPLY_TIMEOUT, returned).await;
        }
        let mut link = self.link(false).await?;
        let channel = match open_agent(&link).await {
            Ok(channel) => channel,
            Err(_) => {
                link = self.link(true).await?;
                open_agent(&link).await?
            }
        };
        Ok(Spare { channel, link })
    }

    /// A kept channel that is still open; closed ones are dropped.
    async fn live_spare(&self) -> Option<Spare> {
        loop {
            let mut spare = self.spares.lock_or_recover().pop()?;
            if !spare.link.is_closed() && spare::still_open(&mut spare.channel).await {
                return Some(spare);
            }
        }
    }

    /// Keeps a channel on standby for the next call, up to [`MAX_SPARES`].
    fn keep(&self, spare: Spare) {
        let mut spares = self.spares.lock_or_recover();
        spares.retain(|kept| !kept.link.is_closed());
        if spares.len() < MAX_SPARES && !spare.link.is_closed() {
            spares.push(spare);
        }
    }

    /// Opens a channel on `link` ahead of need and puts it on standby, unless one is ready.
    async fn prepare_spare(&self, link: Arc<SshLink>) {
        if !self.keeps_spares.load(Ordering::Relaxed) || !self.spares.lock_or_recover().is_empty() {
            return;
        }
        let Ok(channel) = open_agent(&link).await else {
            return;
        };
        match spare::stand_by(channel).await {
            Ok(channel) => self.keep(Spare { channel, link }),
            Err(NotKept::Unsupported) => self.keeps_spares.store(false, Ordering::Relaxed),
            Err(NotKept::Unclean) => {}
        }
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
        let idle = self.last_used.lock_or_recover().elapsed();
        match self.persist {
            Persist::For(limit) => idle >= limit,
            Persist::Forever | Persist::Off => false,
        }
    }

    fn describe(&self) -> Held {
        let active = self.active.load(Ordering::Relaxed);
        let idle = self.last_used.lock_or_recover().elapsed();
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
            ready: self.spares.lock_or_recover().len() as u32,
        }
    }
}

/// The host keys a connection accepted (the host's, its jump hosts'), in OpenSSH's one-line
/// form, for the caller to check.
fn host_keys(link: &SshLink) -> Option<(String, Vec<String>)> {
    let host_key = link.host_key().and_then(ssh::VerifiedKey::to_openssh)?;
    // A hop without a key is sent as nothing readable: the caller then trusts none of it.
    let jump_keys = link
        .jump_host_keys()
        .into_iter()
        .map(|key| key.and_then(|key| key.to_openssh()).unwrap_or_default())
        .collect();
    Some((host_key, jump_keys))
}

/// An agent channel and the connection it runs on.
struct Spare {
    channel: SubsystemStream,
    link: Arc<SshLink>,
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
