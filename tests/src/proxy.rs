//! `FaultyLink`: a TCP proxy between a client and sshd that breaks links for real, so reconnect
//! and dead-link detection are tested against the kernel's behaviour rather than a mock.
//!
//! It runs on its own thread with a current-thread tokio runtime, so sync tests and
//! `#[tokio::test]`s alike can use it, and the controls (`cut`, `blackhole`, `restore`) are plain
//! synchronous calls that have taken effect when they return. Invariant: a link that has been
//! stalled never carries bytes again — bytes were lost, so the SSH stream on it is dead anyway.

use remora_unix::LockRecover;
use std::{
    collections::HashMap,
    io,
    net::{Shutdown, SocketAddr},
    os::fd::AsFd,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::Context;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
};

/// The ids of the forwarding links that have carried `settled` bytes or more to their client.
fn settled_links(state: &State, settled: u64) -> Vec<u64> {
    state
        .links
        .iter()
        .filter(|(_, link)| {
            *link.fate.borrow() == Fate::Forwarding && link.downstream.load(Ordering::SeqCst) >= settled
        })
        .map(|(id, _)| *id)
        .collect()
}

/// Pause after a failed accept (e.g. out of descriptors) so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// A proxy on 127.0.0.1 forwarding every connection to one target; stops when dropped.
pub struct FaultyLink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping it tells the proxy thread to stop.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What one proxied connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Forwarding,
    /// Open, but no byte moves in either direction, ever again.
    Stalled,
    /// Both sides closed; the connection's task ends.
    Cut,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Connections accepted so far, counted once registered (so `cut` sees them).
    accepted: AtomicUsize,
    /// Bytes carried from clients to the target, over all connections.
    upstream_bytes: AtomicU64,
    /// Bytes carried from the target to clients.
    downstream_bytes: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Whether new connections are stalled from the start.
    blackholed: bool,
    /// Whether new connections are closed at once (the network is down, nothing answers).
    refusing: bool,
    next_id: u64,
    links: HashMap<u64, Link>,
}

/// One proxied connection as the controls see it.
struct Link {
    fate: watch::Sender<Fate>,
    /// Duplicates of both sides' sockets, so `cut` can shut them down synchronously while the
    /// connection's task still owns the originals.
    sockets: Vec<std::net::TcpStream>,
    /// Bytes carried from the target to the client on this connection.
    downstream: Arc<AtomicU64>,
}

impl FaultyLink {
    /// Starts a proxy on an ephemeral 127.0.0.1 port forwarding to `target`.
    pub fn start(target: SocketAddr) -> anyhow::Result<FaultyLink> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("faulty link cannot bind")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel();
        let accepting = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("faulty-link-{}", addr.port()))
            .spawn(move || runtime.block_on(accept_loop(listener, target, accepting, stopped)))?;
        Ok(FaultyLink {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes both sides of every current connection (each peer reads end of file), as a dropped
    /// link does. New connections are handled as before.
    pub fn cut(&self) {
        for link in self.shared.lock().links.values() {
            for socket in &link.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
            link.fate.send_replace(Fate::Cut);
        }
    }

    /// Cuts one forwarding connection that has carried `settled` bytes or more to its client,
    /// the `pick`-th of them (modulo how many there are), as [`cut`] does; false when there is
    /// none. One client's link drops while the others' carry on, and a client still in its
    /// handshake is left to finish it.
    ///
    /// [`cut`]: FaultyLink::cut
    pub fn cut_one(&self, pick: u64, settled: u64) -> bool {
        let state = self.shared.lock();
        let mut ids = settled_links(&state, settled);
        if ids.is_empty() {
            return false;
        }
        ids.sort();
        let link = &state.links[&ids[(pick % ids.len() as u64) as usize]];
        for socket in &link.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        link.fate.send_replace(Fate::Cut);
        true
    }

    /// Forwarding connections that have carried `settled` bytes or more to their client.
    pub fn forwarding(&self, settled: u64) -> usize {
        settled_links(&self.shared.lock(), settled).len()
    }

    /// A dead link: current connections stay open but no byte moves either way any more, and new
    /// connections are accepted but never forwarded. Clients notice only by their own timeouts.
    pub fn blackhole(&self) {
        let mut state = self.shared.lock();
        state.blackholed = true;
        for link in state.links.values() {
            link.fate.send_if_modified(|fate| {
                let stall = *fate == Fate::Forwarding;
                if stall {
                    *fate = Fate::Stalled;
                }
                stall
            });
        }
    }

    /// Closes new connections as soon as they are accepted, as a host that is down does; current
    /// connections are left alone (pair with [`FaultyLink::cut`]).
    pub fn refuse(&self) {
        self.shared.lock().refusing = true;
    }

    /// Forwards new connections again, after [`FaultyLink::blackhole`] or [`FaultyLink::refuse`].
    /// Connections stalled by a blackhole stay stalled (their lost bytes broke them); clients
    /// must reconnect.
    pub fn restore(&self) {
        let mut state = self.shared.lock();
        state.blackholed = false;
        state.refusing = false;
    }

    /// Connections accepted so far, forwarded or not: wait for it to grow to see a reconnect.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes carried from clients to the target so far (the wire bytes of uploads).
    pub fn upstream_bytes(&self) -> u64 {
        self.shared.upstream_bytes.load(Ordering::SeqCst)
    }

    /// Bytes carried from the target to clients so far (the wire bytes of downloads).
    pub fn downstream_bytes(&self) -> u64 {
        self.shared.downstream_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        self.cut();
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }

    /// Records a new connection; its fate starts as the link's current mode.
    fn register(&self, client: &TcpStream) -> io::Result<(u64, watch::Receiver<Fate>, Arc<AtomicU64>)> {
        let socket = duplicate(client)?;
        let mut state = self.lock();
        let fate = if state.refusing {
            Fate::Cut
        } else if state.blackholed {
            Fate::Stalled
        } else {
            Fate::Forwarding
        };
        let (sender, receiver) = watch::channel(fate);
        let id = state.next_id;
        state.next_id += 1;
        let downstream = Arc::new(AtomicU64::new(0));
        state.links.insert(
            id,
            Link {
                fate: sender,
                sockets: vec![socket],
                downstream: downstream.clone(),
            },
        );
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Ok((id, receiver, downstream))
    }

    fn add_socket(&self, id: u64, socket: &TcpStream) -> io::Result<()> {
        let socket = duplicate(socket)?;
        if let Some(link) = self.lock().links.get_mut(&id) {
            link.sockets.push(socket);
        }
        Ok(())
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    downstream: Arc<AtomicU64>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.lock().links.remove(&self.id);
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => return eprintln!("faulty link: cannot listen: {err}"),
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => match shared.register(&client) {
                    Ok((id, fate, downstream)) => {
                        let registration = Registration { shared: shared.clone(), id, downstream };
                        tokio::spawn(relay(client, target, registration, fate));
                    }
                    Err(err) => eprintln!("faulty link: dropping a connection: {err}"),
                },
                Err(err) => {
                    eprintln!("faulty link: accept failed: {err}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}

/// Carries one connection to the target while its fate allows, then holds it open, silent,
/// until it is cut or the proxy stops.
async fn relay(mut client: TcpStream, target: SocketAddr, registration: Registration, mut fate: watch::Receiver<Fate>) {
    let left_forwarding = |fate: &Fate| *fate != Fate::Forwarding;
    if *fate.borrow() == Fate::Cut {
        return;
    }
    let mut upstream = None;
    if *fate.borrow() == Fate::Forwarding {
        tokio::select! {
            connected = TcpStream::connect(target) => match connected {
                Ok(server) => {
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    if let Err(err) = registration.shared.add_socket(registration.id, &server) {
                        return eprintln!("faulty link: dropping a connection: {err}");
                    }
                    upstream = Some(server);
                }
                // The client sees its connection closed, as with a refused one.
                Err(err) => return eprintln!("faulty link: cannot reach {target}: {err}"),
            },
            _ = fate.wait_for(left_forwarding) => {}
        }
    }
    if let Some(server) = upstream.as_mut() {
        if *fate.borrow() == Fate::Forwarding {
            tokio::select! {
                // Either side closed or failed: dropping both passes that on.
                _ = relay_counted(&mut client, server, &registration) => return,
                _ = fate.wait_for(left_forwarding) => {}
            }
        }
    }
    let _ = fate.wait_for(|fate| *fate == Fate::Cut).await;
}

/// Both directions of one connection, counting the bytes each way.
async fn relay_counted(client: &mut TcpStream, server: &mut TcpStream, registration: &Registration) {
    let shared = &registration.shared;
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let (up_counters, down_counters) = (
        [&shared.upstream_bytes],
        [&shared.downstream_bytes, &*registration.downstream],
    );
    let up = pump(&mut client_read, &mut server_write, &up_counters);
    let down = pump(&mut server_read, &mut client_write, &down_counters);
    let _ = tokio::join!(up, down);
}

async fn pump(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    counters: &[&AtomicU64],
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        for counter in counters {
            counter.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
}

/// A second descriptor for `socket`'s connection, usable from any thread.
fn duplicate(socket: &TcpStream) -> io::Result<std::net::TcpStream> {
    Ok(std::net::TcpStream::from(socket.as_fd().try_clone_to_owned()?))
}
