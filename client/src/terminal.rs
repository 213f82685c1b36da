//! A session's terminal from the client side: open or attach, keystrokes in, output out, with
//! the same robustness as `receive`.
//!
//! Output is numbered by the agent and acknowledged after the caller has written it (what the
//! previous calls to [`TerminalStream::next`] returned, every 64 KiB and else 5 ms after), so a
//! reconnect resumes after the last byte written: nothing twice, nothing lost while the agent
//! still holds it, and a redraw from the agent's screen model otherwise.
//!
//! Keystrokes are numbered too and kept until the agent acknowledges them. Keystrokes typed
//! while the link is down wait in the caller's command source; after the reconnect, the ones the
//! agent had not taken are sent again and the waiting ones follow: every keystroke arrives once,
//! in order.
//!
//! The module does not touch the local terminal: raw mode, escapes and drawing belong to the
//! caller (the CLI).

use std::{collections::VecDeque, future::Future};

use remora_wire::{
    AgentBody, ClientBody, OpenTerminal, RequestId, SessionRef, StreamEnd, TermAck, TermInput, TermRedraw, TermResize,
    TermResume, TerminalOpened, MAX_TERM_INPUT,
};
use tokio::{
    sync::mpsc,
    time::{Duration, Instant},
};
use uuid::Uuid;

use crate::{
    error::{ClientError, Result},
    resume::Retrying,
    Client,
};

/// Output acknowledged at least this often while it streams (the agent's window is larger).
const ACK_EVERY: u64 = 64 * 1024;
/// The longest written output waits to be acknowledged when less than [`ACK_EVERY`] came.
const ACK_IDLE: Duration = Duration::from_millis(5);

/// What the caller asks of the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermCommand {
    /// Keystrokes (already past any escape handling).
    Input(Vec<u8>),
    /// The local window changed.
    Resize { rows: u16, cols: u16 },
}

/// Where a terminal's commands come from: a channel, or the caller's own reader of the
/// keyboard, polled in the stream's loop (no thread or task between a keystroke and its frame).
pub trait TermCommands {
    /// The next command; `None` once there are none. Cancel-safe: it is raced against the
    /// agent's frames, and a command it has not returned stays for the next call.
    fn next_command(&mut self) -> impl Future<Output = Option<TermCommand>>;
    /// A command that is already waiting, without waiting (keys typed just before a detach).
    fn waiting_command(&mut self) -> Option<TermCommand>;
}

impl TermCommands for mpsc::UnboundedReceiver<TermCommand> {
    async fn next_command(&mut self) -> Option<TermCommand> {
        self.recv().await
    }

    fn waiting_command(&mut self) -> Option<TermCommand> {
        self.try_recv().ok()
    }
}

/// What the terminal delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum TermEvent {
    /// Live output bytes, to be written as they are.
    Output(Vec<u8>),
    /// Repaint: scrollback lines first, then the screen.
    Redraw(TermRedraw),
    /// The shell ended with this code.
    Ended(Option<i32>),
    /// Another client took the session over (`--force`): who and why.
    Released(String),
    /// The agent ended the stream for another reason.
    StreamEnded(StreamEnd),
}

/// An attached terminal.
pub struct TerminalStream {
    client: Client,
    id: RequestId,
    request: OpenTerminal,
    session: Uuid,
    generation: u64,
    /// Last output seq returned to the caller, and last acknowledged.
    written: u64,
    acked: u64,
    /// Output bytes written since the last acknowledgement, and when it is due at the latest.
    unacked_bytes: u64,
    ack_due: Option<Instant>,
    /// Input seq last assigned, and what the agent has not acknowledged yet.
    input_seq: u64,
    unacked: VecDeque<(u64, Vec<u8>)>,
}

impl TerminalStream {
    /// Opens or attaches to a session's terminal on `client`'s connection (through
    /// [`Client::open_terminal`]).
    pub(crate) async fn open(mut client: Client, request: OpenTerminal) -> Result<(TerminalOpened, TerminalStream)> {
        let (id, first) = client
            .connection
            .start_stream(ClientBody::OpenTerminal(request.clone()))
            .await?;
        let AgentBody::TerminalOpened(opened) = first else {
            return Err(client.connection.unexpected(&first));
        };
        let stream = TerminalStream {
            session: opened.session.instance_id,
            generation: opened.generation,
            input_seq: opened.input_seq,
            client,
            id,
            request,
            written: 0,
            acked: 0,
            unacked_bytes: 0,
            ack_due: None,
            unacked: VecDeque::new(),
        };
        Ok((opened, stream))
    }
}

impl TerminalStream {
    /// The session's instance id.
    pub fn session(&self) -> Uuid {
        self.session
    }

    /// The next event, carrying out `commands` meanwhile. A broken link is reconnected within
    /// the client's reconnect policy (reported through it) and the stream resumed.
    pub async fn next(&mut self, commands: &mut impl TermCommands) -> Result<TermEvent> {
        loop {
            match self.step(commands).await {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(err) if err.is_transient() && self.client.can_reconnect() => self.reconnect(&err).await?,
                Err(err) => return Err(err),
            }
        }
    }

    /// One frame or one command; `None` when there is nothing for the caller.
    async fn step(&mut self, commands: &mut impl TermCommands) -> Result<Option<TermEvent>> {
        let sender = self.client.connection.sender().await?;
        if self.written > self.acked && self.unacked_bytes >= ACK_EVERY {
            self.send_ack(&sender).await?;
        }
        // Like journals: output is acknowledged every ACK_EVERY bytes, and else once it has sat
        // for ACK_IDLE. An ack sent as soon as the output was written went out beside every
        // echo, in front of the next keystroke.
        let ack_due =
            (self.written > self.acked).then(|| *self.ack_due.get_or_insert_with(|| Instant::now() + ACK_IDLE));
        tokio::select! {
            body = self.client.connection.next_reply(self.id) => self.on_frame(body?).await,
            command = commands.next_command() => {
                match command {
                    Some(command) => self.on_command(&sender, command).await?,
                    None => std::future::pending::<()>().await,
                }
                Ok(None)
            }
            _ = tokio::time::sleep_until(ack_due.unwrap_or_else(Instant::now)), if ack_due.is_some() => {
                self.send_ack(&sender).await?;
                Ok(None)
            }
        }
    }

    async fn send_ack(&mut self, sender: &crate::connection::FrameSender) -> Result<()> {
        let ack = TermAck {
            session: self.session,
            seq: self.written,
        };
        sender.send(0, ClientBody::TermAck(ack)).await?;
        self.unacked_bytes = 0;
        self.acked = self.written;
        self.ack_due = None;
        Ok(())
    }

    async fn on_frame(&mut self, body: AgentBody) -> Result<Option<TermEvent>> {
        Ok(Some(match body {
            AgentBody::TermOutput(output) => {
                if output.seq <= self.written {
                    return Ok(None); // already written before a reconnect
                }
                self.written = output.seq;
                self.unacked_bytes += output.data.len() as u64;
                TermEvent::Output(output.data)
            }
            AgentBody::TermRedraw(redraw) => {
                self.written = redraw.seq;
                TermEvent::Redraw(redraw)
            }
            AgentBody::TermInputAck(ack) => {
                while self.unacked.front().is_some_and(|(seq, _)| *seq <= ack.seq) {
                    self.unacked.pop_front();
                }
                return Ok(None);
            }
            AgentBody::TermEnded(ended) => TermEvent::Ended(ended.exit_code),
            AgentBody::StreamEnd(end) => match end.released_by.clone() {
                Some(by) => TermEvent::Released(by),
                None => TermEvent::StreamEnded(end),
            },
            other => return Err(self.client.connection.unexpected(&other)),
        }))
    }

    async fn on_command(&mut self, sender: &crate::connection::FrameSender, command: TermCommand) -> Result<()> {
        if self.request.watch {
            return Ok(()); // read-only: never types or resizes
        }
        match command {
            TermCommand::Input(data) => {
                for piece in data.chunks(MAX_TERM_INPUT) {
                    self.input_seq += 1;
                    self.unacked.push_back((self.input_seq, piece.to_vec()));
                    self.send_input(sender, self.input_seq, piece.to_vec()).await?;
                }
            }
            TermCommand::Resize { rows, cols } => {
                self.request.rows = rows;
                self.request.cols = cols;
                sender
                    .send(
                        0,
                        ClientBody::TermResize(TermResize {
                            session: self.session,
                            rows,
                            cols,
                        }),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn send_input(&self, sender: &crate::connection::FrameSender, seq: u64, data: Vec<u8>) -> Result<()> {
        // Id 0: the agent's acknowledgement (and any refusal) reaches whichever stream reads.
        sender
            .send(
                0,
                ClientBody::TermInput(TermInput {
                    session: self.session,
                    generation: self.generation,
                    seq,
                    data,
                }),
            )
            .await
    }

    /// Reconnects within the policy and re-attaches after the last byte written.
    async fn reconnect(&mut self, cause: &ClientError) -> Result<()> {
        let (target, options) = self.client.target.clone().expect("checked by can_reconnect");
        let agent_id = self.client.agent().agent_id;
        let retrying = Retrying::start(self.client.reconnect.clone(), cause);
        let attached = retrying
            .until_ok(async || self.attach_again(&target, &options, agent_id).await)
            .await;
        attached.map_err(|err| ClientError::GaveUp {
            host: target.clone(),
            session: self.session,
            cause: Box::new(err),
        })
    }

    async fn attach_again(&mut self, target: &str, options: &crate::ssh::SshOptions, agent_id: Uuid) -> Result<()> {
        let mut fresh = Client::connect_same_agent(target, options, agent_id).await?;
        let request = OpenTerminal {
            session: Some(SessionRef::Id(self.session)),
            create: false,
            force: false,
            resume: Some(TermResume {
                generation: self.generation,
                seq: self.written,
            }),
            ..self.request.clone()
        };
        let (id, first) = fresh.connection.start_stream(ClientBody::OpenTerminal(request)).await?;
        let AgentBody::TerminalOpened(opened) = first else {
            return Err(fresh.connection.unexpected(&first));
        };
        fresh.reconnect = self.client.reconnect.clone();
        let old = std::mem::replace(&mut self.client, fresh);
        drop(old);
        self.id = id;
        self.acked = self.written;
        self.unacked_bytes = 0;
        self.ack_due = None;
        if opened.generation != self.generation {
            // The shell ended and another started meanwhile: old keystrokes were for the old one.
            self.generation = opened.generation;
            self.unacked.clear();
            self.input_seq = opened.input_seq;
            return Ok(());
        }
        let sender = self.client.connection.sender().await?;
        self.unacked.retain(|(seq, _)| *seq > opened.input_seq);
        for (seq, data) in &self.unacked {
            self.send_input(&sender, *seq, data.clone()).await?;
        }
        Ok(())
    }

    /// Detaches: the shell keeps running on the agent. Commands still waiting in `pending`
    /// (keys typed just before the detach) are sent first; closing the connection waits until
    /// the agent has taken them.
    pub async fn detach(mut self, pending: &mut impl TermCommands) -> Result<()> {
        if let Ok(sender) = self.client.connection.sender().await {
            while let Some(command) = pending.waiting_command() {
                self.on_command(&sender, command).await?;
            }
            if self.written > self.acked {
                let _ = self.send_ack(&sender).await;
            }
        }
        self.client.close().await
    }
}
