//! The client library, used the way another Rust program would.

use std::io;

use remora_client::{ssh::SshOptions, Client, OutputSink};
use remora_wire::{
    CommandEnded, Invoke, NewSession, Output, OutputDropped, Receive, RemoveSessions, SessionRef, SessionState, Stream,
};

use crate::support::Sshd;

/// Collects output in memory.
#[derive(Default)]
struct Collect {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exits: Vec<Option<i32>>,
}

impl OutputSink for Collect {
    fn output(&mut self, output: &Output) -> io::Result<()> {
        match output.stream {
            Stream::Stdout => self.stdout.extend_from_slice(&output.data),
            Stream::Stderr => self.stderr.extend_from_slice(&output.data),
        }
        Ok(())
    }
    fn dropped(&mut self, dropped: &OutputDropped) -> io::Result<()> {
        panic!("nothing is dropped in block or spill mode: {dropped:?}")
    }
    fn ended(&mut self, ended: &CommandEnded) -> io::Result<()> {
        self.exits.push(ended.exit_code);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invoke(command: &str, follow: bool) -> Invoke {
    Invoke {
        session: Some(SessionRef::Name("lib".into())),
        command: command.into(),
        create: false,
        follow,
        window: remora_wire::DEFAULT_WINDOW,
        idle_timeout_secs: None,
        configuration: None,
        buffering: None,
        job: Default::default(),
        stdin: remora_wire::InputMode::Null,
    }
}

#[tokio::test]
async fn the_library_drives_a_session_end_to_end() {
    let sshd = Sshd::start().unwrap();
    let options = SshOptions {
        config_file: Some(sshd.ssh_config().to_path_buf()),
        ..SshOptions::default()
    };
    let work = async {
        let mut client = Client::connect(sshd.alias(), &options).await.unwrap();
        assert!(!client.agent().agent_id.is_nil());
        let created = client
            .new_session(NewSession {
                name: "lib".into(),
                ..NewSession::default()
            })
            .await
            .unwrap();
        assert_eq!(created.state, SessionState::Disconnected);

        let mut sink = Collect::default();
        let outcome = client
            .invoke(invoke("echo out; echo err >&2; (exit 5)", true), &mut sink)
            .await
            .unwrap();
        assert_eq!(outcome.end.unwrap().last_exit_code, Some(5));
        assert_eq!(
            (sink.stdout.as_slice(), sink.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );

        client
            .invoke(invoke("printf 'later'", false), &mut Collect::default())
            .await
            .unwrap();
        client.close().await.unwrap();

        let mut client = Client::connect(sshd.alias(), &options).await.unwrap();
        let mut sink = Collect::default();
        let receive = Receive {
            session: SessionRef::Id(created.instance_id),
            window: 64 * 1024,
            ..Receive::follow_all(SessionRef::Id(created.instance_id))
        };
        let (receiving, _) = client.receive(receive, &mut sink).await.unwrap();
        assert_eq!(
            receiving.session.state,
            SessionState::Opened,
            "attached to us while receiving"
        );
        assert_eq!(sink.stdout, b"later");
        assert_eq!(sink.exits, [Some(0)]);

        let removed = client
            .remove(RemoveSessions {
                ids: vec![created.instance_id],
                ..RemoveSessions::default()
            })
            .await
            .unwrap();
        assert_eq!(removed[0].state, SessionState::Closed);
        assert!(client.list(None).await.unwrap().is_empty());
    };
    tokio::time::timeout(crate::support::TIMEOUT, work)
        .await
        .expect("library test timed out");
}

#[tokio::test]
async fn a_big_output_arrives_whole_through_a_small_window() {
    let sshd = Sshd::start().unwrap();
    let options = SshOptions {
        config_file: Some(sshd.ssh_config().to_path_buf()),
        ..SshOptions::default()
    };
    let work = async {
        let mut client = Client::connect(sshd.alias(), &options).await.unwrap();
        let mut request = invoke("head -c 20000000 /dev/zero | tr '\\0' 'x'; echo", true);
        request.session = None;
        request.window = 64 * 1024;
        let mut sink = Collect::default();
        client.invoke(request, &mut sink).await.unwrap();
        assert_eq!(sink.stdout.len(), 20_000_001);
        assert!(sink.stdout[..20_000_000].iter().all(|&b| b == b'x'));
    };
    tokio::time::timeout(crate::support::TIMEOUT, work)
        .await
        .expect("big output timed out");
}
