//! A protocol connection to one agent: the hello, requests, and output streams with acks.
//!
//! Works over any byte stream (an SSH subsystem channel, a unix socket, an in-memory duplex).
//! Output is handed to an [`OutputSink`] and acknowledged only after the sink has written it,
//! so whatever a crashed client had not acknowledged is delivered again to the next receive.

use std::time::Duration;

use remora_wire::{
    Ack, AgentBody, AgentFrame, ClientBody, ClientFrame, ClientInfo, CommandEnded, FrameReader, FrameWriter, Hello,
    Output, OutputDropped, RequestId, StreamEnd, Welcome, WireError, CAPABILITY_HEARTBEAT, MAX_FRAME_LEN,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadHalf},
    sync::mpsc,
};
use uuid::Uuid;

use crate::{
    error::{ClientError, Result},
    input::InputFeed,
};

/// How long a clean close waits for the agent to finish with this connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Output is acknowledged as soon as no further frame is waiting (so an idle stream is fully
/// acknowledged and a client that dies then has nothing unacknowledged on screen)…
const ACK_DELAY: Duration = Duration::ZERO;
/// …or once this many bytes are unacknowledged, so a client killed in full flow leaves at most
/// this much (plus the chunk it was writing) to be sent again, at one small frame per 256 KiB.
pub const ACK_BYTES: u64 = 256 * 1024;

/// Where received output goes. Returning from a method means the data is durably written.
pub trait OutputSink {
    /// A chunk of a command's output.
    fn output(&mut self, output: &Output) -> std::io::Result<()>;
    /// `drop` buffering discarded some of a command's output before it could be delivered.
    fn dropped(&mut self, dropped: &OutputDropped) -> std::io::Result<()>;
    /// A command ended.
    fn ended(&mut self, ended: &CommandEnded) -> std::io::Result<()>;
    /// Makes everything written so far durable (called before acknowledging).
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Any byte stream to an agent.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// An open, greeted connection to an agent.
///
/// Frames are written by a task of their own: reading never waits for a write, so a busy SSH
/// channel delivering output can never block behind the acknowledgements going the other way.
pub struct Connection<S> {
    host: String,
    reader: FrameReader<ReadHalf<S>>,
    /// Frames for the writer task; `None` once the connection is being shut down.
    outbox: Option<mpsc::UnboundedSender<ClientFrame>>,
    writer: tokio::task::JoinHandle<Result<(), WireError>>,
    welcome: Welcome,
    next_id: RequestId,
}

/// The acknowledgement a stream owes the agent.
#[derive(Default)]
struct PendingAck {
    ack: Option<Ack>,
    bytes: u64,
    /// False when the client keeps output on the agent (`--keep`): nothing is acknowledged.
    enabled: bool,
}

impl<S: Transport> Connection<S> {
    /// Says hello over `stream` and waits for the agent's welcome. `host` names the agent in errors.
    pub async fn open(stream: S, host: &str) -> Result<Self> {
        let (read, write) = tokio::io::split(stream);
        let (outbox, frames) = mpsc::unbounded_channel();
        let mut connection = Self {
            host: host.to_string(),
            reader: FrameReader::new(read),
            outbox: Some(outbox),
            writer: tokio::spawn(write_frames(FrameWriter::new(write), frames)),
            welcome: placeholder_welcome(),
            next_id: 1,
        };
        let id = connection.send(ClientBody::Hello(hello())).await?;
        connection.reader.set_max_len(MAX_FRAME_LEN);
        match connection.next_reply(id).await? {
            AgentBody::Welcome(welcome) => connection.welcome = welcome,
            other => return Err(connection.unexpected(&other)),
        }
        Ok(connection)
    }

    /// What the agent said about itself.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The host name used in error messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends a request and returns its single reply.
    pub async fn request(&mut self, body: ClientBody) -> Result<AgentBody> {
        let id = self.send(body).await?;
        self.next_reply(id).await
    }

    /// Sends a streaming request; returns its id and first reply (Invoked or Receiving).
    pub async fn start_stream(&mut self, body: ClientBody) -> Result<(RequestId, AgentBody)> {
        let id = self.send(body).await?;
        let first = self.next_reply(id).await?;
        Ok((id, first))
    }

    /// Delivers a stream's output to `sink` until its end, acknowledging as it goes unless
    /// `acknowledge` is false (`--keep`: the output stays to be received again).
    pub async fn follow_stream(
        &mut self,
        id: RequestId,
        sink: &mut dyn OutputSink,
        acknowledge: bool,
    ) -> Result<StreamEnd> {
        self.follow_stream_with_input(id, sink, acknowledge, None).await
    }

    /// [`Connection::follow_stream`], feeding the followed command's stdin from `input` as the
    /// agent's acknowledgements allow (from its first unacknowledged byte).
    pub async fn follow_stream_with_input(
        &mut self,
        id: RequestId,
        sink: &mut dyn OutputSink,
        acknowledge: bool,
        mut input: Option<&mut InputFeed>,
    ) -> Result<StreamEnd> {
        let mut pending = PendingAck {
            enabled: acknowledge,
            ..PendingAck::default()
        };
        if let Some(feed) = input.as_deref_mut() {
            feed.rewind();
        }
        loop {
            let next = tokio::select! {
                next = self.next_with_deadline(id, &pending) => next?,
                frame = next_input(input.as_deref_mut()) => {
                    let frame = frame.map_err(ClientError::Input)?;
                    self.send_frame(ClientFrame { id: 0, body: ClientBody::Input(frame) }).await?;
                    continue;
                }
            };
            let body = match next {
                Some(body) => body,
                None => {
                    self.send_ack(&mut pending, sink).await?;
                    continue;
                }
            };
            match body {
                AgentBody::InputAck(ack) => {
                    if let Some(feed) = input.as_deref_mut() {
                        feed.on_ack(&ack);
                    }
                }
                AgentBody::Output(output) => {
                    sink.output(&output).map_err(ClientError::Output)?;
                    pending.bytes += output.data.len() as u64;
                    pending.ack = Some(Ack {
                        session: output.session,
                        command: output.command,
                        seq: output.seq,
                    });
                    if pending.bytes >= ACK_BYTES {
                        self.send_ack(&mut pending, sink).await?;
                    }
                }
                AgentBody::OutputDropped(dropped) => {
                    sink.dropped(&dropped).map_err(ClientError::Output)?;
                    pending.ack = Some(Ack {
                        session: dropped.session,
                        command: dropped.command,
                        seq: dropped.seq,
                    });
                }
                AgentBody::CommandEnded(ended) => {
                    sink.ended(&ended).map_err(ClientError::Output)?;
                    pending.ack = Some(Ack {
                        session: ended.session,
                        command: ended.command,
                        seq: ended.seq,
                    });
                    self.send_ack(&mut pending, sink).await?;
                }
                AgentBody::StreamEnd(end) => {
                    self.send_ack(&mut pending, sink).await?;
                    return Ok(end);
                }
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// The next frame for `id`, or `None` when an ack is due and nothing arrived in time.
    async fn next_with_deadline(&mut self, id: RequestId, pending: &PendingAck) -> Result<Option<AgentBody>> {
        if pending.ack.is_none() {
            return self.next_reply(id).await.map(Some);
        }
        match tokio::time::timeout(ACK_DELAY, self.next_reply(id)).await {
            Ok(reply) => reply.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn send_ack(&mut self, pending: &mut PendingAck, sink: &mut dyn OutputSink) -> Result<()> {
        let Some(ack) = pending.ack.take().filter(|_| pending.enabled) else {
            return Ok(());
        };
        sink.flush().map_err(ClientError::Output)?;
        pending.bytes = 0;
        self.send_frame(ClientFrame {
            id: 0,
            body: ClientBody::Ack(ack),
        })
        .await
    }

    /// Ends the connection cleanly: says end-of-input, then waits (bounded) until the agent has
    /// processed everything sent, acks included, and closed its side.
    pub async fn shutdown(mut self) -> Result<()> {
        self.outbox = None;
        match (&mut self.writer).await {
            Ok(Err(source)) => return Err(self.wire_error(source)),
            Err(_) => return Err(self.closed()),
            Ok(Ok(())) => {}
        }
        let drain = async { while let Ok(Some(_)) = self.reader.read_frame().await {} };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
        Ok(())
    }

    /// Acknowledges output up to `seq` of a command without receiving it (e.g. already shown).
    pub async fn ack(&mut self, session: Uuid, command: u64, seq: u64) -> Result<()> {
        self.send_frame(ClientFrame {
            id: 0,
            body: ClientBody::Ack(Ack { session, command, seq }),
        })
        .await
    }

    /// A handle that queues frames while this connection is being read (terminal input).
    pub(crate) async fn sender(&self) -> Result<FrameSender> {
        let outbox = self.outbox.clone().ok_or_else(|| self.closed())?;
        Ok(FrameSender {
            outbox,
            host: self.host.clone(),
        })
    }

    /// Sends a stored input to its end and waits until the agent acknowledged all of it.
    pub async fn upload_input(&mut self, feed: &mut InputFeed) -> Result<()> {
        feed.rewind();
        while !feed.complete() {
            tokio::select! {
                reply = self.next_reply(0) => match reply? {
                    AgentBody::InputAck(ack) => feed.on_ack(&ack),
                    other => return Err(self.unexpected(&other)),
                },
                frame = feed.next_frame() => {
                    let frame = frame.map_err(ClientError::Input)?;
                    self.send_frame(ClientFrame { id: 0, body: ClientBody::Input(frame) }).await?;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn send(&mut self, body: ClientBody) -> Result<RequestId> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_frame(ClientFrame { id, body }).await?;
        Ok(id)
    }

    pub(crate) async fn send_frame(&mut self, frame: ClientFrame) -> Result<()> {
        let outbox = self.outbox.as_ref().ok_or_else(|| self.closed())?;
        outbox.send(frame).map_err(|_| self.closed())
    }

    /// Reads frames until one for `id` (or for no request) arrives; errors become `Refused`.
    ///
    /// Cancel-safe only between frames: callers that time it out must not lose a partial frame,
    /// which holds because the reader keeps its buffer across calls.
    pub(crate) async fn next_reply(&mut self, id: RequestId) -> Result<AgentBody> {
        loop {
            let frame: AgentFrame = match self.reader.read_message().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return Err(self.closed()),
                Err(source) => return Err(self.wire_error(source)),
            };
            if let AgentBody::Ping(beat) = frame.body {
                self.send_frame(ClientFrame {
                    id: 0,
                    body: ClientBody::Pong(beat),
                })
                .await?;
                continue;
            }
            if frame.id != id && frame.id != 0 {
                continue;
            }
            if let AgentBody::Error(error) = frame.body {
                return Err(ClientError::Refused {
                    host: self.host.clone(),
                    code: error.code,
                    message: error.message,
                });
            }
            return Ok(frame.body);
        }
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed {
            host: self.host.clone(),
            hint: String::new(),
        }
    }

    fn wire_error(&self, source: remora_wire::WireError) -> ClientError {
        ClientError::Wire {
            host: self.host.clone(),
            cause: source,
        }
    }

    /// An error for a reply that does not fit the request.
    pub fn unexpected(&self, body: &AgentBody) -> ClientError {
        let what = format!("{body:?}");
        ClientError::Unexpected {
            host: self.host.clone(),
            what: what.chars().take(120).collect(),
        }
    }
}

/// Queues frames for a connection from beside its reader.
#[derive(Clone)]
pub(crate) struct FrameSender {
    outbox: mpsc::UnboundedSender<ClientFrame>,
    host: String,
}

impl FrameSender {
    pub(crate) async fn send(&self, id: RequestId, body: ClientBody) -> Result<()> {
        self.outbox
            .send(ClientFrame { id, body })
            .map_err(|_| ClientError::Closed {
                host: self.host.clone(),
                hint: String::new(),
            })
    }
}

/// The feed's next frame; never ready without a feed or once the input is complete.
async fn next_input(feed: Option<&mut InputFeed>) -> std::io::Result<remora_wire::Input> {
    match feed {
        Some(feed) if !feed.complete() => feed.next_frame().await,
        _ => std::future::pending().await,
    }
}

/// Writes queued frames, batching what is waiting, until the connection drops its sender;
/// then flushes and says end-of-input.
async fn write_frames<W: tokio::io::AsyncWrite + Unpin>(
    mut writer: FrameWriter<W>,
    mut frames: mpsc::UnboundedReceiver<ClientFrame>,
) -> Result<(), WireError> {
    while let Some(frame) = frames.recv().await {
        writer.queue(&frame)?;
        while let Ok(frame) = frames.try_recv() {
            writer.queue(&frame)?;
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}

fn hello() -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        min_protocol: MIN_PROTOCOL_VERSION,
        software: format!("remora {}", env!("CARGO_PKG_VERSION")),
        capabilities: vec![CAPABILITY_HEARTBEAT.to_string()],
        client: ClientInfo {
            host: local_host_name(),
            user: crate::ssh::local_user(),
            pid: std::process::id(),
            id: Some(client_id()),
        },
    }
}

/// This process's client id, the same on every connection it makes.
fn client_id() -> Uuid {
    static ID: std::sync::OnceLock<Uuid> = std::sync::OnceLock::new();
    *ID.get_or_init(Uuid::new_v4)
}

fn placeholder_welcome() -> Welcome {
    Welcome {
        protocol: 0,
        software: String::new(),
        capabilities: Vec::new(),
        agent_id: Uuid::nil(),
        host: String::new(),
        user: String::new(),
        max_frame: 0,
        agent_version: String::new(),
        daemon_pid: 0,
    }
}

/// This machine's host name, for the agent's "attached from".
pub fn local_host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}
