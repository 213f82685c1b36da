//! Property tests: every message the types can express survives encode → frame → decode, alone
//! and in a stream of frames read back in arbitrary pieces. The fuzz targets (`fuzz/`) cover
//! the other direction, arbitrary bytes; these run in CI with every `cargo test`.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use proptest::{collection::vec, option, prelude::*};
use remora_wire::*;
use tokio::io::{AsyncRead, ReadBuf};
use uuid::Uuid;

fn text() -> impl Strategy<Value = String> {
    // Mostly short, sometimes any Unicode, so str8/str16 lengths and multibyte text both occur.
    prop_oneof![3 => "[a-z0-9 ._-]{0,12}", 1 => any::<String>()]
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn session_ref() -> impl Strategy<Value = SessionRef> {
    prop_oneof![text().prop_map(SessionRef::Name), uuid().prop_map(SessionRef::Id)]
}

fn buffering() -> impl Strategy<Value = Buffering> {
    prop_oneof![
        Just(Buffering::Block),
        Just(Buffering::Drop),
        Just(Buffering::Spill),
        Just(Buffering::Unknown),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<(u32, u32, u32)>(),
        text(),
        vec(text(), 0..3),
        text(),
        text(),
        option::of(uuid()),
    )
        .prop_map(
            |((protocol, min_protocol, pid), software, capabilities, host, user, id)| Hello {
                protocol,
                min_protocol,
                software,
                capabilities,
                client: ClientInfo { host, user, pid, id },
            },
        )
}

fn job_options() -> impl Strategy<Value = JobOptions> {
    let kind = prop_oneof![
        Just(DependencyKind::Ended),
        Just(DependencyKind::Succeeded),
        Just(DependencyKind::Unknown)
    ];
    (
        option::of(text()),
        vec(
            (any::<u64>(), kind).prop_map(|(job, kind)| Dependency { job, kind }),
            0..3,
        ),
        any::<(u32, u64)>(),
    )
        .prop_map(|(label, after, (retries, retry_delay_ms))| JobOptions {
            label,
            after,
            retries,
            retry_delay_ms,
        })
}

fn invoke() -> impl Strategy<Value = Invoke> {
    (
        option::of(session_ref()),
        text(),
        any::<(bool, bool, u64)>(),
        option::of(any::<u64>()),
        option::of(text()),
        option::of(buffering()),
        (job_options(), input_mode()),
    )
        .prop_map(
            |(
                session,
                command,
                (create, follow, window),
                idle_timeout_secs,
                configuration,
                buffering,
                (job, stdin),
            )| Invoke {
                session,
                command,
                create,
                follow,
                window,
                idle_timeout_secs,
                configuration,
                buffering,
                job,
                stdin,
            },
        )
}

fn receive() -> impl Strategy<Value = Receive> {
    (
        session_ref(),
        any::<(bool, u64, bool, bool)>(),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(session, (follow, window, keep, force), command, idle_timeout_secs)| Receive {
                session,
                follow,
                window,
                command,
                keep,
                force,
                idle_timeout_secs,
            },
        )
}

fn client_body() -> impl Strategy<Value = ClientBody> {
    let timeout = || option::of(any::<u64>());
    prop_oneof![
        hello().prop_map(ClientBody::Hello),
        (text(), option::of(text()), timeout(), option::of(buffering())).prop_map(
            |(name, configuration, idle_timeout_secs, buffering)| ClientBody::NewSession(NewSession {
                name,
                configuration,
                idle_timeout_secs,
                buffering,
            })
        ),
        option::of(text()).prop_map(|name_glob| ClientBody::ListSessions(ListSessions { name_glob })),
        invoke().prop_map(ClientBody::Invoke),
        receive().prop_map(ClientBody::Receive),
        (vec(text(), 0..3), vec(uuid(), 0..3), any::<bool>())
            .prop_map(|(names, ids, dry_run)| { ClientBody::RemoveSessions(RemoveSessions { names, ids, dry_run }) }),
        (session_ref(), option::of(text()))
            .prop_map(|(session, label_glob)| ClientBody::ListCommands(ListCommands { session, label_glob })),
        (
            session_ref(),
            vec(any::<u64>(), 0..3),
            option::of(text()),
            any::<(bool, bool)>()
        )
            .prop_map(
                |(session, commands, label_glob, (any, updates))| ClientBody::Wait(WaitJobs {
                    session,
                    commands,
                    label_glob,
                    any,
                    updates,
                })
            ),
        (session_ref(), option::of(any::<u64>()))
            .prop_map(|(session, command)| ClientBody::StopCommand(StopCommand { session, command })),
        (session_ref(), timeout(), option::of(buffering())).prop_map(|(session, idle_timeout_secs, buffering)| {
            ClientBody::Disconnect(Disconnect {
                session,
                idle_timeout_secs,
                buffering,
            })
        }),
        (uuid(), any::<(u64, u64)>()).prop_map(|(session, (command, seq))| ClientBody::Ack(Ack {
            session,
            command,
            seq
        })),
        any::<u64>().prop_map(|sent_at| ClientBody::Pong(Heartbeat { sent_at })),
        terminal_client_body(),
        transfer_client_body(),
    ]
}

fn term_size() -> impl Strategy<Value = (u16, u16)> {
    any::<(u16, u16)>()
}

fn terminal_client_body() -> impl Strategy<Value = ClientBody> {
    let open = (
        option::of(session_ref()),
        any::<(bool, bool, bool)>(),
        term_size(),
        text(),
        option::of(any::<(u64, u64)>()),
        any::<u64>(),
        (option::of(any::<u64>()), option::of(text()), option::of(buffering())),
    )
        .prop_map(
            |(
                session,
                (create, force, watch),
                (rows, cols),
                term,
                resume,
                window,
                (idle_timeout_secs, configuration, buffering),
            )| {
                ClientBody::OpenTerminal(OpenTerminal {
                    session,
                    create,
                    rows,
                    cols,
                    term,
                    force,
                    watch,
                    resume: resume.map(|(generation, seq)| TermResume { generation, seq }),
                    window,
                    idle_timeout_secs,
                    configuration,
                    buffering,
                })
            },
        );
    prop_oneof![
        open,
        (uuid(), any::<(u64, u64)>(), vec(any::<u8>(), 0..64)).prop_map(|(session, (generation, seq), data)| {
            ClientBody::TermInput(TermInput {
                session,
                generation,
                seq,
                data,
            })
        }),
        (uuid(), term_size()).prop_map(|(session, (rows, cols))| ClientBody::TermResize(TermResize {
            session,
            rows,
            cols
        })),
        (uuid(), any::<u64>()).prop_map(|(session, seq)| ClientBody::TermAck(TermAck { session, seq })),
        session_ref().prop_map(|session| ClientBody::TermTranscript(TermTranscript { session })),
    ]
}

fn terminal_info() -> impl Strategy<Value = TerminalInfo> {
    (term_size(), option::of(text()), option::of(any::<i32>()), any::<u32>()).prop_map(
        |((rows, cols), foreground, exit_code, watchers)| TerminalInfo {
            rows,
            cols,
            foreground,
            exit_code,
            watchers,
        },
    )
}

fn terminal_agent_body() -> impl Strategy<Value = AgentBody> {
    prop_oneof![
        (session_info(), any::<(u64, bool, bool, u64)>()).prop_map(
            |(session, (generation, started, created, input_seq))| {
                AgentBody::TerminalOpened(TerminalOpened {
                    session,
                    generation,
                    started,
                    created,
                    input_seq,
                })
            }
        ),
        (uuid(), any::<u64>(), vec(any::<u8>(), 0..64))
            .prop_map(|(session, seq, data)| AgentBody::TermOutput(TermOutput { session, seq, data })),
        (
            uuid(),
            any::<u64>(),
            vec(vec(any::<u8>(), 0..16), 0..4),
            vec(any::<u8>(), 0..64),
            term_size()
        )
            .prop_map(
                |(session, seq, lines, screen, (rows, cols))| AgentBody::TermRedraw(TermRedraw {
                    session,
                    seq,
                    scrollback: lines.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                    screen,
                    rows,
                    cols,
                })
            ),
        (uuid(), any::<u64>()).prop_map(|(session, seq)| AgentBody::TermInputAck(TermInputAck { session, seq })),
        (uuid(), option::of(any::<i32>()))
            .prop_map(|(session, exit_code)| AgentBody::TermEnded(TermEnded { session, exit_code })),
        (text(), any::<u64>()).prop_map(|(text, lines_lost)| AgentBody::Transcript(Transcript { text, lines_lost })),
    ]
}

fn session_state() -> impl Strategy<Value = SessionState> {
    prop_oneof![
        Just(SessionState::Opened),
        Just(SessionState::Disconnected),
        Just(SessionState::Broken),
        Just(SessionState::Closed),
        Just(SessionState::Unknown),
    ]
}

fn availability() -> impl Strategy<Value = Availability> {
    prop_oneof![
        Just(Availability::Available),
        Just(Availability::Busy),
        Just(Availability::None),
        Just(Availability::Unknown),
    ]
}

fn command_state() -> impl Strategy<Value = CommandState> {
    prop_oneof![
        Just(CommandState::Queued),
        Just(CommandState::Running),
        Just(CommandState::Completed),
        Just(CommandState::Failed),
        Just(CommandState::Stopped),
        Just(CommandState::Skipped),
        Just(CommandState::Unknown),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::BadFrame),
        Just(ErrorCode::HelloRequired),
        Just(ErrorCode::VersionMismatch),
        Just(ErrorCode::UnknownMessage),
        Just(ErrorCode::InvalidName),
        Just(ErrorCode::InvalidRequest),
        Just(ErrorCode::SessionNotFound),
        Just(ErrorCode::SessionExists),
        Just(ErrorCode::SessionBroken),
        Just(ErrorCode::SessionBusy),
        Just(ErrorCode::LimitReached),
        Just(ErrorCode::Internal),
        Just(ErrorCode::PathNotFound),
        Just(ErrorCode::PermissionDenied),
        Just(ErrorCode::NoSpace),
        Just(ErrorCode::PathConflict),
        Just(ErrorCode::ChecksumMismatch),
        Just(ErrorCode::IoFailed),
        Just(ErrorCode::Unknown),
    ]
}

fn session_info() -> impl Strategy<Value = SessionInfo> {
    let names = (text(), uuid(), text(), text());
    let states = (session_state(), availability(), buffering(), any::<bool>());
    let times = (any::<(u64, u64)>(), option::of(any::<u64>()), option::of(any::<u64>()));
    let attached = option::of((text(), any::<u64>()).prop_map(|(from, since)| Attachment { from, since }));
    let counts = any::<(u32, u32, u32, u64, u64, u64, u32)>();
    let reasons = (option::of(text()), option::of(text()), text());
    let terminal = option::of(terminal_info());
    (names, states, times, attached, counts, reasons, terminal).prop_map(
        |(
            (name, instance_id, host, configuration),
            (state, availability, buffering, temporary),
            ((created_at, idle_timeout_secs), disconnected_at, expires_at),
            attached,
            (
                commands_running,
                commands_queued,
                commands_completed,
                unacked_bytes,
                spilled_bytes,
                dropped_bytes,
                commands_failed,
            ),
            (broken_reason, blocked_reason, agent_version),
            terminal,
        )| SessionInfo {
            name,
            instance_id,
            host,
            state,
            availability,
            configuration,
            created_at,
            disconnected_at,
            idle_timeout_secs,
            expires_at,
            buffering,
            attached,
            commands_running,
            commands_queued,
            commands_completed,
            commands_failed,
            broken_reason,
            unacked_bytes,
            temporary,
            spilled_bytes,
            dropped_bytes,
            blocked_reason,
            agent_version,
            terminal,
        },
    )
}

fn command_info() -> impl Strategy<Value = CommandInfo> {
    let when = || option::of(any::<u64>());
    (
        any::<(u64, u64, u64)>(),
        text(),
        command_state(),
        option::of(any::<i32>()),
        when(),
        when(),
        (job_options(), any::<u32>(), option::of(text())),
    )
        .prop_map(
            |(
                (id, queued_at, dropped_bytes),
                command,
                state,
                exit_code,
                started_at,
                ended_at,
                (options, attempts, reason),
            )| CommandInfo {
                id,
                command,
                state,
                exit_code,
                queued_at,
                started_at,
                ended_at,
                dropped_bytes,
                options,
                attempts,
                reason,
            },
        )
}

fn agent_body() -> impl Strategy<Value = AgentBody> {
    let sessions = || vec(session_info(), 0..3).prop_map(|sessions| SessionList { sessions });
    prop_oneof![
        (
            any::<(u32, u64, u32)>(),
            text(),
            vec(text(), 0..3),
            uuid(),
            text(),
            text(),
            text()
        )
            .prop_map(
                |((protocol, max_frame, daemon_pid), software, capabilities, agent_id, host, user, agent_version)| {
                    AgentBody::Welcome(Welcome {
                        protocol,
                        software,
                        capabilities,
                        agent_id,
                        host,
                        user,
                        max_frame,
                        agent_version,
                        daemon_pid,
                    })
                }
            ),
        session_info().prop_map(AgentBody::Session),
        sessions().prop_map(AgentBody::Sessions),
        (session_info(), command_info())
            .prop_map(|(session, command)| AgentBody::Invoked(Invoked { session, command })),
        session_info().prop_map(|session| AgentBody::Receiving(Receiving { session })),
        (uuid(), any::<(u64, u64, bool)>(), vec(any::<u8>(), 0..300)).prop_map(
            |(session, (command, seq, stderr), data)| {
                let stream = if stderr { Stream::Stderr } else { Stream::Stdout };
                AgentBody::Output(Output {
                    session,
                    command,
                    seq,
                    stream,
                    data,
                })
            }
        ),
        (uuid(), any::<(u64, u64, u64, u64)>()).prop_map(|(session, (command, seq, first_seq, bytes))| {
            AgentBody::OutputDropped(OutputDropped {
                session,
                command,
                seq,
                first_seq,
                bytes,
            })
        }),
        (
            uuid(),
            any::<(u64, u64, u64)>(),
            command_state(),
            option::of(any::<i32>())
        )
            .prop_map(|(session, (command, seq, ended_at), state, exit_code)| {
                AgentBody::CommandEnded(CommandEnded {
                    session,
                    command,
                    seq,
                    state,
                    exit_code,
                    ended_at,
                })
            }),
        (option::of(any::<i32>()), any::<u32>(), option::of(text())).prop_map(
            |(last_exit_code, commands_pending, released_by)| {
                AgentBody::StreamEnd(StreamEnd {
                    last_exit_code,
                    commands_pending,
                    released_by,
                })
            }
        ),
        sessions().prop_map(AgentBody::Removed),
        (session_info(), vec(command_info(), 0..3))
            .prop_map(|(session, commands)| AgentBody::Commands(CommandList { session, commands })),
        (error_code(), text()).prop_map(|(code, message)| AgentBody::Error(ErrorReply { code, message })),
        (session_info(), vec(command_info(), 0..3), option::of(any::<u64>())).prop_map(|(session, commands, last)| {
            AgentBody::Waited(Waited {
                session,
                commands,
                last,
            })
        }),
        any::<u64>().prop_map(|sent_at| AgentBody::Ping(Heartbeat { sent_at })),
        terminal_agent_body(),
        transfer_agent_body(),
    ]
}

fn input_mode() -> impl Strategy<Value = InputMode> {
    prop_oneof![
        Just(InputMode::Null),
        Just(InputMode::Stream),
        Just(InputMode::Stored),
        Just(InputMode::Unknown),
    ]
}

/// Any bytes, as paths and file data are.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..64)
}

fn path_meta() -> impl Strategy<Value = PathMeta> {
    let kind = prop_oneof![
        Just(PathKind::File),
        Just(PathKind::Dir),
        Just(PathKind::Symlink),
        Just(PathKind::Unknown),
    ];
    (kind, any::<(u64, u32, i64, u32)>(), bytes()).prop_map(|(kind, (size, mode, mtime, mtime_nanos), link_target)| {
        PathMeta {
            kind,
            size,
            mode,
            mtime,
            mtime_nanos,
            link_target,
        }
    })
}

/// Input streams and `cp`, client side.
fn transfer_client_body() -> impl Strategy<Value = ClientBody> {
    prop_oneof![
        (uuid(), any::<(u64, u64, bool)>(), bytes()).prop_map(|(session, (command, offset, eof), data)| {
            ClientBody::Input(Input {
                session,
                command,
                offset,
                data,
                eof,
            })
        }),
        (
            option::of(session_ref()),
            bytes(),
            option::of(bytes()),
            any::<(bool, bool)>(),
            path_meta(),
            text(),
            option::of(bytes()),
        )
            .prop_map(
                |(session, dest, name, (into_dir, preserve), meta, source_key, within)| {
                    ClientBody::PutPath(PutPath {
                        session,
                        dest,
                        name,
                        into_dir,
                        meta,
                        preserve,
                        source_key,
                        within,
                    })
                }
            ),
        (any::<u64>(), bytes()).prop_map(|(offset, data)| ClientBody::FileData(FileData { offset, data })),
        (any::<u64>(), text()).prop_map(|(size, sha256)| ClientBody::FileEnd(FileEnd { size, sha256 })),
        (option::of(session_ref()), bytes(), any::<bool>()).prop_map(|(session, path, recursive)| {
            ClientBody::GetPath(GetPath {
                session,
                path,
                recursive,
            })
        }),
        (bytes(), any::<u64>()).prop_map(|(path, offset)| ClientBody::ReadFile(ReadFile { path, offset })),
    ]
}

/// Input streams and `cp`, agent side.
fn transfer_agent_body() -> impl Strategy<Value = AgentBody> {
    let listed = (bytes(), path_meta()).prop_map(|(path, meta)| ListedPath { path, meta });
    prop_oneof![
        (uuid(), any::<(u64, u64, bool)>()).prop_map(|(session, (command, offset, eof))| {
            AgentBody::InputAck(InputAck {
                session,
                command,
                offset,
                eof,
            })
        }),
        (bytes(), any::<u64>()).prop_map(|(path, offset)| AgentBody::PutReady(PutReady { path, offset })),
        any::<u64>().prop_map(|offset| AgentBody::FileAck(FileAck { offset })),
        (any::<u64>(), bytes()).prop_map(|(offset, data)| AgentBody::FileData(FileData { offset, data })),
        (any::<u64>(), text()).prop_map(|(size, sha256)| AgentBody::FileEnd(FileEnd { size, sha256 })),
        (bytes(), any::<u64>()).prop_map(|(path, bytes)| AgentBody::PathDone(PathDone { path, bytes })),
        (bytes(), vec(listed, 0..3)).prop_map(|(root, entries)| AgentBody::PathList(PathList { root, entries })),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    (any::<u64>(), client_body()).prop_map(|(id, body)| ClientFrame { id, body })
}

fn agent_frame() -> impl Strategy<Value = AgentFrame> {
    (any::<u64>(), agent_body()).prop_map(|(id, body)| AgentFrame { id, body })
}

/// Hands out a buffer in the given piece sizes (cycled), like a socket that delivers partial reads.
struct Pieces {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let end = self.data.len().min(self.pos + size.min(buf.remaining()));
        let pos = self.pos;
        buf.put_slice(&self.data[pos..end]);
        self.pos = end;
        Poll::Ready(Ok(()))
    }
}

fn read_all<T: serde::de::DeserializeOwned>(data: Vec<u8>, sizes: Vec<usize>) -> Vec<T> {
    let mut reader = FrameReader::new(Pieces {
        data,
        pos: 0,
        sizes,
        turn: 0,
    });
    reader.set_max_len(MAX_FRAME_LEN);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut messages = Vec::new();
        while let Some(message) = reader.read_message().await.unwrap() {
            messages.push(message);
        }
        messages
    })
}

fn encode_one<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode(message, &mut bytes).unwrap();
    bytes
}

proptest! {
    // Enough cases to reach every variant many times, few enough that the file runs in about a
    // second in a debug build.
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        let bytes = encode_one(&frame);
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(len, bytes.len() - 4);
        prop_assert_eq!(decode::<ClientFrame>(&bytes[4..]).unwrap(), frame.clone());
        // The agent reads the id of any body, for answering one it cannot decode.
        prop_assert_eq!(decode::<FrameId>(&bytes[4..]).unwrap().id, frame.id);
    }

    #[test]
    fn agent_frames_round_trip(frame in agent_frame()) {
        let bytes = encode_one(&frame);
        prop_assert_eq!(decode::<AgentFrame>(&bytes[4..]).unwrap(), frame);
    }

}

proptest! {
    // Each case is a stream of up to 8 frames.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn streams_of_frames_read_back_whatever_the_pieces(
        frames in vec(client_frame(), 0..8),
        sizes in vec(1usize..64, 1..8),
    ) {
        let mut bytes = Vec::new();
        for frame in &frames {
            encode(frame, &mut bytes).unwrap();
        }
        prop_assert_eq!(read_all::<ClientFrame>(bytes, sizes), frames);
    }

    #[test]
    fn agent_streams_read_back_whatever_the_pieces(
        frames in vec(agent_frame(), 0..8),
        sizes in vec(1usize..4096, 1..8),
    ) {
        let mut bytes = Vec::new();
        for frame in &frames {
            encode(frame, &mut bytes).unwrap();
        }
        prop_assert_eq!(read_all::<AgentFrame>(bytes, sizes), frames);
    }
}
