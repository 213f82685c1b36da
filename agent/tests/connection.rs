//! The daemon's protocol handling over in-memory streams: the hello, limits, bad input, and a
//! request round trip. No SSH, no sockets: `serve_connection` on a `tokio::io::duplex`.

use std::{sync::Arc, time::Duration};

use remora_agent::{serve_connection, ConfigStore, Daemon};
use remora_wire::*;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Peer {
    reader: FrameReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    daemon: Arc<Daemon>,
}

fn start() -> Peer {
    let daemon = Arc::new(Daemon::new(
        uuid::Uuid::new_v4(),
        ConfigStore::builtin(),
        std::env::temp_dir().join("remora-test-spill"),
    ));
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (read, write) = tokio::io::split(theirs);
    tokio::spawn(serve_connection(daemon.clone(), read, write, "test".into()));
    let (reader, writer) = tokio::io::split(ours);
    let mut reader = FrameReader::new(reader);
    reader.set_max_len(MAX_FRAME_LEN);
    Peer { reader, writer, daemon }
}

fn hello(protocol: u32, min_protocol: u32) -> ClientFrame {
    ClientFrame {
        id: 1,
        body: ClientBody::Hello(Hello {
            protocol,
            min_protocol,
            software: "test".into(),
            capabilities: vec![],
            client: ClientInfo::default(),
        }),
    }
}

impl Peer {
    async fn send(&mut self, frame: &ClientFrame) {
        let mut bytes = Vec::new();
        encode(frame, &mut bytes).unwrap();
        self.writer.write_all(&bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Option<AgentFrame> {
        tokio::time::timeout(TIMEOUT, self.reader.read_message())
            .await
            .expect("agent answered in time")
            .unwrap()
    }

    async fn greeted() -> Peer {
        let mut peer = start();
        peer.send(&hello(PROTOCOL_VERSION, MIN_PROTOCOL_VERSION)).await;
        let welcome = peer.recv().await.unwrap();
        assert!(matches!(welcome.body, AgentBody::Welcome(_)), "{welcome:?}");
        peer
    }

    async fn expect_error(&mut self) -> (u64, ErrorReply) {
        match self.recv().await {
            Some(AgentFrame {
                id,
                body: AgentBody::Error(error),
            }) => (id, error),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    async fn expect_closed(&mut self) {
        assert!(self.recv().await.is_none(), "the agent closes the connection");
    }
}

#[tokio::test]
async fn hello_is_answered_with_the_agents_identity() {
    let mut peer = start();
    peer.send(&hello(PROTOCOL_VERSION, 1)).await;
    let Some(AgentFrame {
        id: 1,
        body: AgentBody::Welcome(welcome),
    }) = peer.recv().await
    else {
        panic!()
    };
    assert_eq!(welcome.protocol, PROTOCOL_VERSION);
    assert_eq!(welcome.agent_id, peer.daemon.agent_id);
}

#[tokio::test]
async fn a_request_before_hello_is_refused_and_closed() {
    let mut peer = start();
    peer.send(&ClientFrame {
        id: 3,
        body: ClientBody::ListSessions(ListSessions::default()),
    })
    .await;
    let (_, error) = peer.expect_error().await;
    assert_eq!(error.code, ErrorCode::HelloRequired);
    peer.expect_closed().await;
}

#[tokio::test]
async fn no_common_version_names_the_side_to_upgrade() {
    let mut peer = start();
    peer.send(&hello(7, 5)).await;
    let (_, error) = peer.expect_error().await;
    assert_eq!(error.code, ErrorCode::VersionMismatch);
    assert!(error.message.contains("upgrade remora-agent"), "{}", error.message);
    peer.expect_closed().await;
}

#[tokio::test]
async fn an_oversize_frame_before_hello_is_refused_without_reading_it() {
    let mut peer = start();
    peer.writer
        .write_all(&(MAX_HELLO_FRAME_LEN as u32 + 1).to_be_bytes())
        .await
        .unwrap();
    let (_, error) = peer.expect_error().await;
    assert_eq!(error.code, ErrorCode::BadFrame);
    assert!(error.message.contains("exceeds the limit"), "{}", error.message);
    peer.expect_closed().await;
}

#[tokio::test]
async fn an_oversize_frame_after_hello_closes_the_connection() {
    let mut peer = Peer::greeted().await;
    peer.writer
        .write_all(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes())
        .await
        .unwrap();
    let (_, error) = peer.expect_error().await;
    assert_eq!(error.code, ErrorCode::BadFrame);
    peer.expect_closed().await;
}

#[tokio::test]
async fn an_unknown_message_gets_a_typed_error_and_the_connection_stays_usable() {
    #[derive(serde::Serialize)]
    struct Future {
        id: u64,
        body: std::collections::BTreeMap<&'static str, u8>,
    }
    let mut peer = Peer::greeted().await;
    let mut bytes = Vec::new();
    encode(
        &Future {
            id: 9,
            body: [("Teleport", 1)].into(),
        },
        &mut bytes,
    )
    .unwrap();
    peer.writer.write_all(&bytes).await.unwrap();
    let (id, error) = peer.expect_error().await;
    assert_eq!((id, error.code), (9, ErrorCode::UnknownMessage));

    peer.send(&ClientFrame {
        id: 10,
        body: ClientBody::ListSessions(ListSessions::default()),
    })
    .await;
    let reply = peer.recv().await.unwrap();
    assert_eq!(reply.id, 10);
    assert!(matches!(reply.body, AgentBody::Sessions(_)), "{reply:?}");
}

#[tokio::test]
async fn a_truncated_frame_closes_only_that_connection() {
    let mut peer = Peer::greeted().await;
    peer.writer.write_all(&[0, 0, 0, 50, 1, 2, 3]).await.unwrap();
    peer.writer.shutdown().await.unwrap();
    let (_, error) = peer.expect_error().await;
    assert_eq!(error.code, ErrorCode::BadFrame);

    let mut other = start();
    other.send(&hello(PROTOCOL_VERSION, 1)).await;
    assert!(matches!(other.recv().await.unwrap().body, AgentBody::Welcome(_)));
}

#[tokio::test]
async fn invalid_names_and_empty_commands_are_refused_with_codes() {
    let mut peer = Peer::greeted().await;
    let long = "n".repeat(1000);
    for (id, name) in [(2, "../etc"), (3, "a\0b"), (4, long.as_str()), (5, "")] {
        peer.send(&ClientFrame {
            id,
            body: ClientBody::NewSession(NewSession {
                name: name.into(),
                ..Default::default()
            }),
        })
        .await;
        let (got, error) = peer.expect_error().await;
        assert_eq!((got, error.code), (id, ErrorCode::InvalidName), "{name:?}");
    }
    let invoke = Invoke {
        session: None,
        command: "  ".into(),
        create: false,
        follow: true,
        window: DEFAULT_WINDOW,
        idle_timeout_secs: None,
        configuration: None,
        buffering: None,
        job: Default::default(),
        stdin: remora_wire::InputMode::Null,
    };
    peer.send(&ClientFrame {
        id: 6,
        body: ClientBody::Invoke(invoke),
    })
    .await;
    let (_, error) = peer.expect_error().await;
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert!(peer.daemon.registry.is_empty(), "nothing was created");
}

#[tokio::test]
async fn acks_for_unknown_sessions_are_ignored() {
    let mut peer = Peer::greeted().await;
    let ack = Ack {
        session: uuid::Uuid::new_v4(),
        command: 1,
        seq: 99,
    };
    peer.send(&ClientFrame {
        id: 0,
        body: ClientBody::Ack(ack),
    })
    .await;
    peer.send(&ClientFrame {
        id: 2,
        body: ClientBody::ListSessions(ListSessions::default()),
    })
    .await;
    assert_eq!(peer.recv().await.unwrap().id, 2);
}
