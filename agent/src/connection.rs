//! One client connection speaking the protocol: the hello first, then requests until the peer
//! closes, the daemon stops, or a frame is unreadable.
//!
//! A writer task owns the outgoing side and batches frames; handlers reach it through a bounded
//! channel, so a client that stops reading stalls only its own connection. Requests that stream
//! (invoke, receive) run as tasks of the connection and end with it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use remora_wire::{
    decode, AgentBody, AgentFrame, ClientBody, ClientFrame, ErrorCode, FrameId, FrameReader, FrameWriter, Heartbeat,
    Hello, Welcome, CAPABILITY_HEARTBEAT, MAX_FRAME_LEN, MAX_HELLO_FRAME_LEN, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::mpsc,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info};

use crate::{
    clock::now_millis,
    daemon::Daemon,
    handler::{self, Ctx, Outgoing},
    pipe_width::{PipeWidth, WidenOnBulk},
};

/// Time a client has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection on standby waits for the next client's hello.
const STANDBY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Frames queued for the writer before handlers wait.
const OUTBOX: usize = 256;
/// Streaming requests one connection may run at once.
const MAX_STREAMS: usize = 32;
/// How often a quiet client is pinged…
const HEARTBEAT: Duration = Duration::from_secs(3);
/// …and how many intervals of silence mean its link is dead.
const HEARTBEATS_MISSED: u32 = 3;
/// How long a frame may stay half-received before the connection is closed (slowloris).
const FRAME_DEADLINE: Duration = Duration::from_secs(20);
/// How long a write may make no progress before the connection is closed (a peer that sends
/// requests but never reads the replies).
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Bytes batched into one write.
const WRITE_BATCH: usize = 1024 * 1024;
/// A batch this large means bulk output flows: the pipe to sshd is widened (`pipe_width.rs`).
const BULK_BATCH: usize = 256 * 1024;

/// Serves one connection to its end. A connection serves one client after another when each
/// ends with a standby (the connection holder's spare channels): the transport stays, and the
/// next client starts with its own hello.
pub async fn serve<R, W>(daemon: Arc<Daemon>, reader: R, writer: W, origin: String)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + WidenOnBulk + Unpin + Send + 'static,
{
    let mut frames = FrameReader::new(reader);
    let mut writer = FrameWriter::new(writer);
    let transport = daemon.connection_token();
    let mut standing_by = None;
    loop {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let ending = CancellationToken::new();
        let writer_task = tokio::spawn(write_loop(writer, rx, transport.clone(), ending.clone()));
        // After a standby the next client may come much later than a first hello would.
        let hello_wait = match standing_by.take() {
            Some(id) => {
                let standing = AgentFrame {
                    id,
                    body: AgentBody::StandingBy,
                };
                let _ = tx.send(standing.into()).await;
                STANDBY_TIMEOUT
            }
            None => HELLO_TIMEOUT,
        };
        let next = serve_client(&daemon, &mut frames, tx, &transport, &origin, hello_wait).await;
        if next == ClientEnd::DeadLink {
            // Nothing queued can reach a dead peer; close its side now so streams blocked on a
            // full outbox let go and sshd ends the channel.
            writer_task.abort();
        }
        // Frames a finished client's tasks still queue are written; later ones are refused.
        ending.cancel();
        let Ok(Some(returned)) = writer_task.await else {
            return;
        };
        writer = returned;
        match next {
            ClientEnd::StandBy(id) => standing_by = Some(id),
            ClientEnd::Closed | ClientEnd::DeadLink => break,
        }
    }
    let _ = writer.shutdown().await;
}

/// How one client's use of the connection ended.
#[derive(Debug, PartialEq, Eq)]
enum ClientEnd {
    /// The peer closed, sent garbage, or the daemon is stopping.
    Closed,
    /// The peer went silent past the heartbeat limit.
    DeadLink,
    /// The client asked for a standby (the request id): the next client may come.
    StandBy(u64),
}

/// Greets one client (its hello may take `hello_wait`) and serves its requests until it ends;
/// everything it attached or started on this connection is released before this returns.
async fn serve_client<R: AsyncRead + Unpin>(
    daemon: &Arc<Daemon>,
    frames: &mut FrameReader<R>,
    tx: mpsc::Sender<Outgoing>,
    transport: &CancellationToken,
    origin: &str,
    hello_wait: Duration,
) -> ClientEnd {
    let closed = transport.child_token();
    frames.set_max_len(MAX_HELLO_FRAME_LEN);
    let Some(hello) = handshake(daemon, frames, &tx, &closed, hello_wait).await else {
        return ClientEnd::Closed;
    };
    frames.set_max_len(MAX_FRAME_LEN);
    let ctx = Arc::new(Ctx {
        conn: daemon.next_conn_id(),
        from: describe_client(&hello, origin),
        client_id: hello.client.id,
        closed,
        daemon: daemon.clone(),
        tx,
        uploads: Default::default(),
        input_acks: Default::default(),
    });
    info!(conn = ctx.conn, from = %ctx.from, "client connected");
    let streams = TaskTracker::new();
    let heartbeat = hello.capabilities.iter().any(|c| c == CAPABILITY_HEARTBEAT);
    let ended = request_loop(&ctx, frames, &streams, heartbeat).await;
    ctx.closed.cancel();
    // Each stream's attachment detaches as the stream ends.
    streams.close();
    streams.wait().await;
    ctx.daemon.idle_clocks_changed();
    match ended {
        ClientEnd::StandBy(_) => info!(conn = ctx.conn, "client done; connection on standby"),
        _ => info!(conn = ctx.conn, "client disconnected"),
    }
    ended
}

/// Reads the hello (waiting up to `wait`) and answers it; `None` if the connection must close.
/// A standby before the hello (a channel opened ahead of need) is answered at once, and the
/// hello may then take as long as [`STANDBY_TIMEOUT`].
async fn handshake<R: AsyncRead + Unpin>(
    daemon: &Daemon,
    frames: &mut FrameReader<R>,
    tx: &mpsc::Sender<Outgoing>,
    closed: &CancellationToken,
    mut wait: Duration,
) -> Option<Hello> {
    loop {
        match first_frame(daemon, frames, tx, closed, wait).await? {
            First::Hello(hello) => return Some(hello),
            First::Standby(id) => {
                tx.send(
                    AgentFrame {
                        id,
                        body: AgentBody::StandingBy,
                    }
                    .into(),
                )
                .await
                .ok()?;
                wait = STANDBY_TIMEOUT;
            }
        }
    }
}

/// What may open a client's use of a connection.
enum First {
    Hello(Hello),
    Standby(u64),
}

/// Reads the first frame and answers a hello; `None` (after an error reply, if one is due) if
/// the connection must close.
async fn first_frame<R: AsyncRead + Unpin>(
    daemon: &Daemon,
    frames: &mut FrameReader<R>,
    tx: &mpsc::Sender<Outgoing>,
    closed: &CancellationToken,
    wait: Duration,
) -> Option<First> {
    let first = tokio::select! {
        first = tokio::time::timeout(wait, frames.read_frame()) => first,
        // A daemon stopping or handing over does not wait for a client that has not said hello.
        _ = closed.cancelled() => return None,
    };
    let refuse = |code, message: String| AgentFrame {
        id: 0,
        body: AgentBody::Error(remora_wire::ErrorReply { code, message }),
    };
    let reply = match first {
        Err(_) => refuse(
            ErrorCode::HelloRequired,
            format!("no hello within {} s; closing", wait.as_secs()),
        ),
        Ok(Ok(None)) => return None,
        Ok(Err(err)) => refuse(ErrorCode::BadFrame, format!("{err}; closing")),
        Ok(Ok(Some(body))) => match decode::<ClientFrame>(body) {
            Ok(ClientFrame {
                id,
                body: ClientBody::Hello(hello),
            }) => match negotiate(&hello) {
                Ok(version) => {
                    let welcome = welcome(daemon, version);
                    tx.send(
                        AgentFrame {
                            id,
                            body: AgentBody::Welcome(welcome),
                        }
                        .into(),
                    )
                    .await
                    .ok()?;
                    return Some(First::Hello(hello));
                }
                Err(err) => refuse(ErrorCode::VersionMismatch, err.to_string()),
            },
            Ok(ClientFrame {
                id,
                body: ClientBody::Standby,
            }) => return Some(First::Standby(id)),
            Ok(_) => refuse(
                ErrorCode::HelloRequired,
                "the first message must be a hello; closing".into(),
            ),
            Err(err) => refuse(
                ErrorCode::BadFrame,
                format!("the first frame is not a remora hello ({err}); closing"),
            ),
        },
    };
    debug!("refusing connection: {:?}", reply.body);
    let _ = tx.send(reply.into()).await;
    None
}

/// No protocol version both sides speak; the message says which side to upgrade.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NoCommonVersion(String);

/// Picks the protocol version both sides speak.
fn negotiate(hello: &Hello) -> Result<u32, NoCommonVersion> {
    let client_min = if hello.min_protocol == 0 {
        hello.protocol
    } else {
        hello.min_protocol
    };
    let version = hello.protocol.min(PROTOCOL_VERSION);
    if version < MIN_PROTOCOL_VERSION || version < client_min {
        let newer = if hello.protocol > PROTOCOL_VERSION {
            "remora-agent on this host"
        } else {
            "the remora client"
        };
        return Err(NoCommonVersion(format!(
            "no common protocol version: client speaks {client_min}..={}, remora-agent {} speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}; upgrade {newer}",
            hello.protocol,
            env!("CARGO_PKG_VERSION"),
        )));
    }
    Ok(version)
}

fn welcome(daemon: &Daemon, protocol: u32) -> Welcome {
    Welcome {
        protocol,
        software: format!("remora-agent {}", env!("CARGO_PKG_VERSION")),
        capabilities: Vec::new(),
        agent_id: daemon.agent_id,
        host: daemon.host.clone(),
        user: daemon.user.clone(),
        max_frame: MAX_FRAME_LEN as u64,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        daemon_pid: std::process::id(),
    }
}

fn describe_client(hello: &Hello, origin: &str) -> String {
    let client = &hello.client;
    match (client.user.is_empty(), client.host.is_empty()) {
        (false, false) => format!("{}@{} (pid {}) via {origin}", client.user, client.host, client.pid),
        _ => origin.to_string(),
    }
}

async fn request_loop<R: AsyncRead + Unpin>(
    ctx: &Arc<Ctx>,
    frames: &mut FrameReader<R>,
    streams: &TaskTracker,
    heartbeat: bool,
) -> ClientEnd {
    let mut last_heard = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        let read = tokio::select! {
            read = frames.read_frame() => read,
            _ = ctx.closed.cancelled() => return ClientEnd::Closed,
            _ = tokio::time::sleep(HEARTBEAT) => {
                if heartbeat && last_heard.elapsed() >= HEARTBEAT * HEARTBEATS_MISSED {
                    info!(conn = ctx.conn, "client silent for {:?}; its link is dead, disconnecting it", last_heard.elapsed());
                    return ClientEnd::DeadLink;
                }
                let since = *partial_since.get_or_insert_with(Instant::now);
                if !frames.mid_frame() {
                    partial_since = None;
                } else if since.elapsed() >= FRAME_DEADLINE {
                    let message = format!("a frame stayed incomplete for {} s; closing the connection", FRAME_DEADLINE.as_secs());
                    info!(conn = ctx.conn, "{message}");
                    ctx.send_error(0, ErrorCode::BadFrame, message).await;
                    return ClientEnd::Closed;
                }
                if heartbeat {
                    let _ = ctx.tx.try_send(AgentFrame { id: 0, body: AgentBody::Ping(Heartbeat { sent_at: now_millis() }) }.into());
                }
                continue;
            }
        };
        last_heard = Instant::now();
        partial_since = None;
        let body = match read {
            Ok(Some(body)) => body,
            Ok(None) => return ClientEnd::Closed,
            Err(err) => {
                ctx.send_error(0, ErrorCode::BadFrame, format!("{err}; closing the connection"))
                    .await;
                return ClientEnd::Closed;
            }
        };
        match decode::<ClientFrame>(body) {
            Ok(ClientFrame {
                id,
                body: ClientBody::Standby,
            }) => return ClientEnd::StandBy(id),
            Ok(frame) => dispatch(ctx, frame, streams).await,
            Err(err) => {
                let id = decode::<FrameId>(body).map_or(0, |f| f.id);
                let message = format!(
                    "cannot understand this request ({err}); if the client is newer than remora-agent {}, upgrade the agent",
                    env!("CARGO_PKG_VERSION")
                );
                ctx.send_error(id, ErrorCode::UnknownMessage, message).await;
            }
        }
    }
}

async fn dispatch(ctx: &Arc<Ctx>, frame: ClientFrame, streams: &TaskTracker) {
    let id = frame.id;
    match frame.body {
        ClientBody::Ack(ack) => handler::ack::handle(ctx, ack),
        ClientBody::Pong(_) => {}
        ClientBody::Hello(_) => {
            ctx.send_error(id, ErrorCode::InvalidRequest, "hello was already received".into())
                .await
        }
        ClientBody::NewSession(request) => ctx.finish(id, handler::new::handle(ctx, id, request).await).await,
        ClientBody::ListSessions(request) => ctx.finish(id, handler::ls::handle(ctx, id, request).await).await,
        ClientBody::RemoveSessions(request) => ctx.finish(id, handler::rm::handle(ctx, id, request).await).await,
        ClientBody::ListCommands(request) => ctx.finish(id, handler::jobs::handle(ctx, id, request).await).await,
        ClientBody::StopCommand(request) => ctx.finish(id, handler::stop::handle(ctx, id, request).await).await,
        ClientBody::Disconnect(request) => {
            ctx.finish(id, handler::disconnect::handle(ctx, id, request).await)
                .await
        }
        ClientBody::Invoke(request) => {
            spawn_stream(ctx, streams, id, move |ctx| handler::invoke::handle(ctx, id, request)).await
        }
        ClientBody::Receive(request) => {
            spawn_stream(ctx, streams, id, move |ctx| handler::receive::handle(ctx, id, request)).await
        }
        ClientBody::OpenTerminal(request) => {
            spawn_stream(ctx, streams, id, move |ctx| handler::terminal::handle(ctx, id, request)).await
        }
        ClientBody::TermInput(request) => ctx.finish(id, handler::term::input(ctx, id, request).await).await,
        ClientBody::TermResize(request) => ctx.finish(id, handler::term::resize(ctx, request)).await,
        ClientBody::TermAck(request) => handler::term::ack(ctx, request),
        ClientBody::TermTranscript(request) => ctx.finish(id, handler::term::transcript(ctx, id, request).await).await,
        ClientBody::Wait(request) => {
            spawn_stream(ctx, streams, id, move |ctx| handler::wait::handle(ctx, id, request)).await
        }
        ClientBody::Input(input) => handler::input::handle(ctx, input).await,
        // The disk work of cp runs off this loop (and off the async worker): see `transfer`.
        ClientBody::PutPath(request) => {
            spawn_stream(ctx, streams, id, move |ctx| handler::transfer::put(ctx, id, request)).await
        }
        ClientBody::FileData(data) => handler::transfer::data(ctx, id, data).await,
        ClientBody::FileEnd(end) => ctx.finish(id, handler::transfer::end(ctx, id, end).await).await,
        ClientBody::GetPath(request) => {
            spawn_stream(ctx, streams, id, move |ctx| handler::transfer::get(ctx, id, request)).await
        }
        ClientBody::ReadFile(request) => {
            spawn_stream(ctx, streams, id, move |ctx| handler::transfer::read(ctx, id, request)).await
        }
        // Ends the request loop before it is dispatched (`request_loop`).
        ClientBody::Standby => {}
    }
}

/// Runs a streaming request as a task of this connection, within the per-connection limit.
async fn spawn_stream<F, Fut>(ctx: &Arc<Ctx>, streams: &TaskTracker, id: u64, run: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: std::future::Future<Output = Result<(), handler::Refusal>> + Send + 'static,
{
    if streams.len() >= MAX_STREAMS {
        let message = format!("this connection already runs {MAX_STREAMS} streams; wait for one to end");
        ctx.send_error(id, ErrorCode::LimitReached, message).await;
        return;
    }
    let task = run(ctx.clone());
    let ctx = ctx.clone();
    streams.spawn(async move { ctx.finish(id, task.await).await });
}

/// Queues one outgoing frame; output payloads go beside their header, uncopied.
fn queue<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, outgoing: Outgoing) -> Result<(), remora_wire::WireError> {
    match outgoing {
        Outgoing::Frame(frame) => writer.queue(&frame),
        Outgoing::Output { id, header, payload } => {
            let frame = AgentFrame {
                id,
                body: AgentBody::Output(header),
            };
            writer.queue_with_payload(&frame, payload)
        }
    }
}

/// Writes queued frames in batches until the client's use of the connection ends (`ending`:
/// what was queued by then is still written) or the connection closes, and hands the writer
/// back for the next client; `None` when the connection is done for. A peer that accepts nothing
/// for [`WRITE_STALL`], or a failed write, closes the connection (`closed`), so a client that
/// sends requests without reading the replies cannot hold the daemon's resources forever.
async fn write_loop<W: AsyncWrite + WidenOnBulk + Unpin>(
    mut writer: FrameWriter<W>,
    mut rx: mpsc::Receiver<Outgoing>,
    closed: CancellationToken,
    ending: CancellationToken,
) -> Option<FrameWriter<W>> {
    let mut width = PipeWidth::default();
    loop {
        let outgoing = tokio::select! {
            outgoing = rx.recv() => outgoing,
            _ = ending.cancelled(), if !rx.is_closed() => {
                rx.close();
                continue;
            }
        };
        let Some(outgoing) = outgoing else {
            return Some(writer);
        };
        if queue(&mut writer, outgoing).is_err() {
            return None;
        }
        while writer.pending() < WRITE_BATCH {
            let Ok(outgoing) = rx.try_recv() else { break };
            if queue(&mut writer, outgoing).is_err() {
                return None;
            }
        }
        if writer.pending() >= BULK_BATCH {
            writer.get_ref().widen_for_bulk(&mut width);
        }
        match tokio::time::timeout(WRITE_STALL, writer.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                debug!("client stopped accepting frames: {err}");
                closed.cancel();
                return None;
            }
            Err(_) => {
                info!(
                    "client read nothing for {} s; closing the connection",
                    WRITE_STALL.as_secs()
                );
                closed.cancel();
                return None;
            }
        }
    }
}
