//! A hostile host for the end-to-end tests: a `remora` subsystem that speaks the real protocol
//! (the `remora-wire` types, Hello/Welcome first) and answers with what a compromised host
//! could send. The `hostile-agent` binary runs it; [`crate::Sshd::start_hostile`] makes it the
//! subsystem of a test sshd.
//!
//! A request picks its scenario by name: a download of `.../absolute` gets the `absolute`
//! listing, and so on ([`scenario`]). Add a scenario there; requests it does not answer get an
//! error reply, as from an agent that does not know them.
//!
//! Invariant: it writes nothing on the host side; everything hostile is in what it sends.

pub mod scenario;

use std::path::PathBuf;

use remora_wire::{
    AgentBody, AgentFrame, ClientBody, ClientFrame, ErrorCode, ErrorReply, FrameReader, FrameWriter, Welcome,
    MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncWrite};

/// Where the test's files are (the sshd's directory): scenarios aim at paths in it.
#[derive(Debug, Clone)]
pub struct World {
    pub dir: PathBuf,
}

impl World {
    /// The directory outside every destination that scenarios try to write into.
    pub fn outside(&self) -> PathBuf {
        self.dir.join("outside")
    }
}

/// Serves one connection: the handshake, then each request by its scenario, until EOF.
pub async fn serve(
    world: &World,
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin,
) -> anyhow::Result<()> {
    let mut reader = FrameReader::new(input);
    let mut writer = FrameWriter::new(output);
    let Some(hello) = reader.read_message::<ClientFrame>().await? else {
        return Ok(());
    };
    anyhow::ensure!(
        matches!(hello.body, ClientBody::Hello(_)),
        "the first frame was no Hello"
    );
    writer.send(&reply(hello.id, AgentBody::Welcome(welcome()))).await?;
    reader.set_max_len(MAX_FRAME_LEN);
    while let Some(frame) = reader.read_message::<ClientFrame>().await? {
        let bodies = scenario::answer(world, frame.body).unwrap_or_else(|| vec![unknown()]);
        for body in bodies {
            writer.queue(&reply(frame.id, body))?;
        }
        writer.flush().await?;
    }
    Ok(())
}

fn reply(id: remora_wire::RequestId, body: AgentBody) -> AgentFrame {
    AgentFrame { id, body }
}

fn welcome() -> Welcome {
    Welcome {
        protocol: PROTOCOL_VERSION,
        software: "hostile-agent".into(),
        capabilities: Vec::new(),
        agent_id: uuid::Uuid::new_v4(),
        host: "hostile".into(),
        user: "nobody".into(),
        max_frame: MAX_FRAME_LEN as u64,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        daemon_pid: std::process::id(),
    }
}

fn unknown() -> AgentBody {
    AgentBody::Error(ErrorReply {
        code: ErrorCode::UnknownMessage,
        message: "the hostile agent does not answer this request".into(),
    })
}
