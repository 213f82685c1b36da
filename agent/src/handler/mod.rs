//! One module per request, mirroring the client's `commands/`. Handlers see sessions and the
//! connection context, never frames or bytes.

pub(crate) mod ack;
pub(crate) mod disconnect;
pub(crate) mod input;
pub(crate) mod invoke;
pub(crate) mod jobs;
pub(crate) mod ls;
pub(crate) mod new;
pub(crate) mod receive;
pub(crate) mod rm;
pub(crate) mod stop;
mod stream;
pub(crate) mod term;
pub(crate) mod terminal;
pub(crate) mod transfer;
pub(crate) mod wait;

use std::sync::Arc;

use bytes::Bytes;
use remora_wire::{AgentBody, AgentFrame, ErrorCode, ErrorReply, Output, RequestId, SessionRef};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    create::CreateError,
    daemon::Daemon,
    session::{ConnId, Session, SessionRefusal},
};

/// What a handler knows about the connection it serves.
pub(crate) struct Ctx {
    pub daemon: Arc<Daemon>,
    pub conn: ConnId,
    /// Who the client is and where it connects from, for `ls` and logs.
    pub from: String,
    /// The client process's id: the same client reconnecting takes its own attachment back.
    pub client_id: Option<uuid::Uuid>,
    pub tx: mpsc::Sender<Outgoing>,
    /// Cancelled when the connection ends.
    pub closed: CancellationToken,
    /// `cp` uploads open on this connection.
    pub uploads: transfer::Uploads,
    /// Keystroke acknowledgements owed, sent together a moment later.
    pub input_acks: Arc<term::InputAcks>,
}

/// What a connection's writer sends: a frame, or an output event whose bytes (journal `Bytes`)
/// are written beside its header, uncopied.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(Box<AgentFrame>),
    Output {
        id: RequestId,
        /// The event with empty `data`: the payload takes its place on the wire.
        header: Output,
        payload: Bytes,
    },
}

impl From<AgentFrame> for Outgoing {
    fn from(frame: AgentFrame) -> Self {
        Outgoing::Frame(Box::new(frame))
    }
}

/// The connection's writer is gone; stop producing frames.
#[derive(Debug)]
pub(crate) struct Closed;

/// A request refused with a stable code and a message for people.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<CreateError> for Refusal {
    fn from(err: CreateError) -> Self {
        let code = match &err {
            CreateError::InvalidName(_) => ErrorCode::InvalidName,
            CreateError::SessionLimit { .. } => ErrorCode::LimitReached,
            CreateError::Exists { .. } => ErrorCode::SessionExists,
            CreateError::Runspace(_) => ErrorCode::Internal,
            CreateError::Configuration(_)
            | CreateError::IdleTimeout { .. }
            | CreateError::Buffering
            | CreateError::NoBash { .. }
            | CreateError::NoShell { .. } => ErrorCode::InvalidRequest,
        };
        Refusal::new(code, err.to_string())
    }
}

impl From<Closed> for Refusal {
    fn from(_: Closed) -> Self {
        Refusal::new(ErrorCode::Internal, "connection closed")
    }
}

impl Ctx {
    /// Queues a frame for the client.
    pub(crate) async fn send(&self, id: RequestId, body: AgentBody) -> Result<(), Closed> {
        self.tx.send(AgentFrame { id, body }.into()).await.map_err(|_| Closed)
    }

    /// Queues an output event; `payload` goes out as it is (no copy into the frame).
    pub(crate) async fn send_output(&self, id: RequestId, header: Output, payload: Bytes) -> Result<(), Closed> {
        let outgoing = Outgoing::Output { id, header, payload };
        self.tx.send(outgoing).await.map_err(|_| Closed)
    }

    /// Sends an error reply (best effort: the client may be gone).
    pub(crate) async fn send_error(&self, id: RequestId, code: ErrorCode, message: String) {
        let _ = self.send(id, AgentBody::Error(ErrorReply { code, message })).await;
    }

    /// Turns a handler's refusal into an error reply.
    pub(crate) async fn finish(&self, id: RequestId, result: Result<(), Refusal>) {
        if let Err(refusal) = result {
            self.send_error(id, refusal.code, refusal.message).await;
        }
    }

    /// Finds a session or explains that it does not exist.
    pub(crate) fn find_session(&self, reference: &SessionRef) -> Result<Arc<Session>, Refusal> {
        self.daemon.remove_expired();
        self.daemon
            .registry
            .find(reference)
            .ok_or_else(|| self.not_found(reference))
    }

    fn not_found(&self, reference: &SessionRef) -> Refusal {
        let what = match reference {
            SessionRef::Name(name) => format!("no session named {name:?}"),
            SessionRef::Id(id) => format!("no session with instance id {id}"),
        };
        Refusal::new(
            ErrorCode::SessionNotFound,
            format!(
                "{what} on {} for user {}; list them with `remora ls`",
                self.daemon.host, self.daemon.user
            ),
        )
    }
}

/// The refusal a client sees when a session cannot serve it.
pub(crate) fn refusal_for(session: &Session, refusal: SessionRefusal) -> Refusal {
    match refusal {
        SessionRefusal::Broken(reason) => Refusal::new(
            ErrorCode::SessionBroken,
            format!(
                "session {:?} is broken ({reason}); receive its output with `remora receive HOST --name {0}`, then remove it with `remora rm HOST --name {0}`",
                session.name
            ),
        ),
        SessionRefusal::QueueFull { limit } => Refusal::new(
            ErrorCode::LimitReached,
            format!(
                "session {:?} already has {limit} commands queued, its configuration's max_queued; wait for some to run, or stop queued ones with `remora stop HOST --name {0} --job ID`",
                session.name
            ),
        ),
        SessionRefusal::Workflow(message) => Refusal::new(
            ErrorCode::InvalidRequest,
            format!("session {:?}: {message}", session.name),
        ),
        SessionRefusal::Busy { from, since } => Refusal::new(
            ErrorCode::SessionBusy,
            format!(
                "session {:?} is attached to {from} since {}; wait for that client to finish, or take the session over with `remora connect HOST --name {0} --force`",
                session.name,
                crate::clock::format_millis(since)
            ),
        ),
    }
}
