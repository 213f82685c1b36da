//! The codec against the properties both peers rely on: round trips, limits, truncation and
//! messages from newer peers.

use remora_wire::*;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

fn invoke_frame() -> ClientFrame {
    ClientFrame {
        id: 7,
        body: ClientBody::Invoke(Invoke {
            session: Some(SessionRef::Name("build".into())),
            command: "make -j4".into(),
            create: true,
            follow: true,
            window: DEFAULT_WINDOW,
            idle_timeout_secs: None,
            configuration: None,
            buffering: None,
            job: Default::default(),
            stdin: remora_wire::InputMode::Null,
        }),
    }
}

async fn reader_over(bytes: Vec<u8>) -> FrameReader<tokio::io::DuplexStream> {
    let (mut tx, rx) = tokio::io::duplex(bytes.len().max(1) + 16);
    tx.write_all(&bytes).await.unwrap();
    drop(tx);
    FrameReader::new(rx)
}

#[tokio::test]
async fn frames_round_trip_through_a_stream() {
    let output = AgentFrame {
        id: 7,
        body: AgentBody::Output(Output {
            session: Uuid::new_v4(),
            command: 1,
            seq: 3,
            stream: Stream::Stderr,
            data: vec![0, 255, b'\n'],
        }),
    };
    let mut bytes = Vec::new();
    encode(&invoke_frame(), &mut bytes).unwrap();
    encode(&output, &mut bytes).unwrap();
    let mut reader = reader_over(bytes).await;
    assert_eq!(
        reader.read_message::<ClientFrame>().await.unwrap(),
        Some(invoke_frame())
    );
    assert_eq!(reader.read_message::<AgentFrame>().await.unwrap(), Some(output));
    assert_eq!(
        reader.read_message::<AgentFrame>().await.unwrap(),
        None,
        "clean close between frames"
    );
}

#[tokio::test]
async fn oversize_frame_is_refused_before_allocating() {
    let mut bytes = (MAX_HELLO_FRAME_LEN as u32 + 1).to_be_bytes().to_vec();
    bytes.extend_from_slice(b"tiny");
    let mut reader = reader_over(bytes).await;
    let err = reader.read_frame().await.unwrap_err();
    assert!(
        matches!(err, WireError::FrameTooLarge { max, .. } if max == MAX_HELLO_FRAME_LEN),
        "{err}"
    );
}

#[tokio::test]
async fn raised_limit_accepts_larger_frames() {
    let big = vec![b'x'; MAX_HELLO_FRAME_LEN * 2];
    let mut bytes = (big.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&big);
    let mut reader = reader_over(bytes).await;
    reader.set_max_len(MAX_FRAME_LEN);
    assert_eq!(reader.read_frame().await.unwrap().unwrap().len(), big.len());
}

#[tokio::test]
async fn truncated_frame_is_an_error_not_a_clean_close() {
    let mut bytes = Vec::new();
    encode(&invoke_frame(), &mut bytes).unwrap();
    bytes.truncate(bytes.len() - 3);
    let mut reader = reader_over(bytes).await;
    assert!(matches!(
        reader.read_frame().await.unwrap_err(),
        WireError::Truncated { .. }
    ));

    let mut reader = reader_over(vec![0, 0]).await;
    assert!(matches!(
        reader.read_frame().await.unwrap_err(),
        WireError::Truncated { expected: 4, got: 2 }
    ));
}

#[tokio::test]
async fn empty_stream_is_a_clean_close() {
    let mut reader = reader_over(Vec::new()).await;
    assert!(reader.read_frame().await.unwrap().is_none());
}

#[tokio::test]
async fn partial_reads_survive_cancellation() {
    let mut bytes = Vec::new();
    encode(&invoke_frame(), &mut bytes).unwrap();
    let (mut tx, rx) = tokio::io::duplex(1024);
    let mut reader = FrameReader::new(rx);
    tx.write_all(&bytes[..6]).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_millis(20), reader.read_frame()).await;
    assert!(first.is_err(), "a partial frame must not complete");
    tx.write_all(&bytes[6..]).await.unwrap();
    assert_eq!(
        reader.read_message::<ClientFrame>().await.unwrap(),
        Some(invoke_frame())
    );
}

#[test]
fn unknown_message_type_is_a_decode_error_but_its_id_is_readable() {
    #[derive(serde::Serialize)]
    struct Future {
        id: u64,
        body: std::collections::BTreeMap<&'static str, u32>,
    }
    let mut bytes = Vec::new();
    encode(
        &Future {
            id: 42,
            body: [("Teleport", 1)].into(),
        },
        &mut bytes,
    )
    .unwrap();
    let body = &bytes[4..];
    assert!(matches!(decode::<ClientFrame>(body), Err(WireError::Decode(_))));
    assert_eq!(decode::<FrameId>(body).unwrap().id, 42);
}

#[test]
fn unknown_fields_are_skipped_and_missing_optional_fields_default() {
    #[derive(serde::Serialize)]
    struct NewerHello {
        protocol: u32,
        telemetry: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Frame {
        id: u64,
        body: std::collections::BTreeMap<&'static str, NewerHello>,
    }
    let frame = Frame {
        id: 1,
        body: [(
            "Hello",
            NewerHello {
                protocol: 9,
                telemetry: "x",
            },
        )]
        .into(),
    };
    let mut bytes = Vec::new();
    encode(&frame, &mut bytes).unwrap();
    let decoded: ClientFrame = decode(&bytes[4..]).unwrap();
    let ClientBody::Hello(hello) = decoded.body else {
        panic!("not a hello: {decoded:?}")
    };
    assert_eq!(hello.protocol, 9);
    assert_eq!(hello.min_protocol, 0);
    assert!(hello.capabilities.is_empty());
}

#[test]
fn unknown_enum_values_from_newer_peers_decode_as_unknown() {
    #[derive(serde::Serialize)]
    struct Reply {
        code: &'static str,
        message: &'static str,
    }
    let mut bytes = Vec::new();
    encode(
        &Reply {
            code: "quota_exceeded_on_mars",
            message: "m",
        },
        &mut bytes,
    )
    .unwrap();
    let reply: ErrorReply = decode(&bytes[4..]).unwrap();
    assert_eq!(reply.code, ErrorCode::Unknown);
}

/// A body of `depth` nested one-element arrays inside a field the message does not know.
fn nested_frame(depth: usize) -> Vec<u8> {
    // {"id": 9, "body": {"Pong": {"x": [[[…nil…]]]}}}
    let mut body = vec![0x82, 0xa2, b'i', b'd', 9, 0xa4, b'b', b'o', b'd', b'y'];
    body.extend_from_slice(&[0x81, 0xa4, b'P', b'o', b'n', b'g', 0x81, 0xa1, b'x']);
    body.extend(std::iter::repeat_n(0x91, depth));
    body.push(0xc0);
    body
}

#[test]
fn deep_nesting_is_refused_within_a_worker_stack() {
    // tokio's worker threads have 2 MiB stacks; the daemon decodes every frame on one. A
    // thousand nested arrays (1 KB) used to overflow it in a debug build and abort the daemon.
    let decoded = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let shallow = decode::<ClientFrame>(&nested_frame(16)).map(|f| f.id).ok();
            let deep = decode::<ClientFrame>(&nested_frame(1000));
            (shallow, matches!(deep, Err(WireError::Decode(_))))
        })
        .unwrap()
        .join()
        .expect("decoding stays within the stack");
    assert_eq!(
        decoded,
        (Some(9), true),
        "unknown nested fields are skipped, up to a limit"
    );
    // Nor is its id read: the agent answers it with id 0, as any unreadable frame.
    assert_eq!(decode::<FrameId>(&nested_frame(1000)).map(|f| f.id).ok(), None);
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 0..512 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = decode::<ClientFrame>(&bytes);
        let _ = decode::<AgentFrame>(&bytes);
    }
}

#[tokio::test]
async fn a_frame_that_stops_arriving_is_seen_mid_frame_and_large_ones_arrive_whole() {
    let (mut near, far) = tokio::io::duplex(64);
    let mut reader = FrameReader::new(far);
    reader.set_max_len(MAX_FRAME_LEN);
    assert!(!reader.mid_frame());
    near.write_all(&(MAX_FRAME_LEN as u32).to_be_bytes()).await.unwrap();
    near.write_all(b"only this").await.unwrap();
    let stalled = tokio::time::timeout(std::time::Duration::from_millis(50), reader.read_frame()).await;
    assert!(stalled.is_err(), "no whole frame yet");
    assert!(
        reader.mid_frame(),
        "a partial frame is visible to the connection's deadline"
    );

    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut near, far) = tokio::io::duplex(1 << 16);
    let mut reader = FrameReader::new(far);
    reader.set_max_len(MAX_FRAME_LEN);
    let sent = body.clone();
    let writer = tokio::spawn(async move {
        near.write_all(&(sent.len() as u32).to_be_bytes()).await.unwrap();
        near.write_all(&sent).await.unwrap();
        near
    });
    assert_eq!(
        reader.read_frame().await.unwrap().unwrap(),
        &body[..],
        "grown chunk by chunk, whole"
    );
    assert!(!reader.mid_frame());
    drop(writer.await.unwrap());
}

fn output(data: Vec<u8>) -> AgentFrame {
    AgentFrame {
        id: 7,
        body: AgentBody::Output(Output {
            session: uuid::Uuid::from_u128(42),
            command: 3,
            seq: 9,
            stream: Stream::Stderr,
            data,
        }),
    }
}

#[test]
fn a_payload_frame_is_the_same_message_with_its_bytes_beside_the_header() {
    for len in [0usize, 1, 255, 256, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut header = Vec::new();
        encode_with_payload(&output(Vec::new()), payload.len(), &mut header).unwrap();
        let frame = [header, payload.clone()].concat();
        let body_len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(body_len, frame.len() - 4);
        assert_eq!(decode::<AgentFrame>(&frame[4..]).unwrap(), output(payload));
    }
}

#[test]
fn a_message_that_does_not_end_with_an_empty_byte_string_cannot_carry_a_payload() {
    let mut out = Vec::new();
    assert!(encode_with_payload(&output(b"x".to_vec()), 3, &mut out).is_err());
    assert!(out.is_empty(), "nothing half-written");
}

#[tokio::test]
async fn payload_frames_and_ordinary_frames_arrive_in_order() {
    let (client, agent) = tokio::io::duplex(1 << 10);
    let mut writer = FrameWriter::new(agent);
    let big = vec![5u8; 100_000];
    writer.queue(&output(b"small".to_vec())).unwrap();
    writer
        .queue_with_payload(&output(Vec::new()), bytes::Bytes::from(big.clone()))
        .unwrap();
    writer.queue(&output(b"after".to_vec())).unwrap();
    assert!(writer.pending() > 100_000);
    let writing = tokio::spawn(async move {
        writer.flush().await.unwrap();
        writer
    });
    let mut reader = FrameReader::new(client);
    reader.set_max_len(MAX_FRAME_LEN);
    for expected in [b"small".to_vec(), big, b"after".to_vec()] {
        let frame: AgentFrame = reader.read_message().await.unwrap().unwrap();
        assert_eq!(frame, output(expected));
    }
    assert_eq!(writing.await.unwrap().pending(), 0);
}

#[tokio::test]
async fn a_single_frame_is_read_without_the_bytes_after_it_and_within_its_limit() {
    let mut bytes = Vec::new();
    encode(&"hello", &mut bytes).unwrap();
    bytes.extend_from_slice(b"raw stream after the frame");
    let mut stream = bytes.as_slice();
    let message: String = read_single(&mut stream, 64).await.unwrap();
    assert_eq!(message, "hello");
    assert_eq!(stream, b"raw stream after the frame");
    let mut big = Vec::new();
    encode(&"x".repeat(100), &mut big).unwrap();
    let err = read_single::<String>(&mut big.as_slice(), 64).await.unwrap_err();
    assert!(matches!(err, WireError::FrameTooLarge { max: 64, .. }), "{err}");
}
