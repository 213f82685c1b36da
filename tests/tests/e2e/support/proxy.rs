//! `FaultyLink`: a TCP proxy between a client and sshd that can cut every connection or refuse
//! new ones, to break links for real.

use std::{
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
};

/// A proxy on 127.0.0.1 forwarding to `target`.
pub struct FaultyLink {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    sockets: Mutex<Vec<TcpStream>>,
    refusing: AtomicBool,
    blackholed: AtomicBool,
    stopping: AtomicBool,
    accepted: AtomicUsize,
}

impl FaultyLink {
    pub fn start(target: SocketAddr) -> io::Result<FaultyLink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        thread::spawn(move || accept_loop(listener, target, accepting));
        Ok(FaultyLink { addr, shared })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes both sides of every open connection, as a dropped link does.
    pub fn cut(&self) {
        for socket in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// While refusing, new connections are closed at once (the network is down).
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// While blackholed, connections stay open but every byte is swallowed (a silent link).
    pub fn blackhole(&self, on: bool) {
        self.shared.blackholed.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        self.cut();
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.refusing.load(Ordering::SeqCst) {
            continue;
        }
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        if let Err(err) = forward(client, server, &shared.clone()) {
            eprintln!("faulty link: {err}");
        }
    }
}

fn forward(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    shared
        .sockets
        .lock()
        .unwrap()
        .extend([client.try_clone()?, server.try_clone()?]);
    pump(client.try_clone()?, server.try_clone()?, shared.clone());
    pump(server, client, shared.clone());
    Ok(())
}

/// Copies one direction (swallowing bytes while blackholed) until it ends, then closes the
/// other side's write half.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    thread::spawn(move || {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !shared.blackholed.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
