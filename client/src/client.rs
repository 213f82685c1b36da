//! The library API: one connected agent, with a method per request.
//!
//! ```no_run
//! # async fn demo() -> remora_client::Result<()> {
//! use remora_client::{Client, ssh::SshOptions};
//! let mut client = Client::connect("web01", &SshOptions::default()).await?;
//! for session in client.list(None).await? {
//!     println!("{} {:?}", session.name, session.state);
//! }
//! # Ok(()) }
//! ```

use remora_wire::{
    AgentBody, ClientBody, CommandList, Disconnect, Invoke, Invoked, ListCommands, ListSessions, NewSession,
    OpenTerminal, Receive, Receiving, RemoveSessions, SessionInfo, SessionRef, StopCommand, StreamEnd, TermTranscript,
    TerminalOpened, Transcript, WaitJobs, Waited, Welcome, SUBSYSTEM_NAME,
};

use remora_wire::{InputMode, RequestId};

use std::path::{Path, PathBuf};

use crate::{
    connection::{Connection, OutputSink, Transport},
    error::ClientError,
    error::Result,
    holder::{Destination, Holder},
    input::InputFeed,
    resume::{OnceSink, ReconnectPolicy, Retrying},
    ssh::{self, SshLink, SshOptions, Target},
    terminal::TerminalStream,
    transfer::{Copied, CopyOptions, CopyProgress, Downloader, Uploader},
};

/// A byte stream to an agent, whatever carries it.
pub type BoxedTransport = Box<dyn Transport>;

/// A greeted connection to one host's agent.
pub struct Client {
    pub(crate) connection: Connection<BoxedTransport>,
    /// Keeps the SSH connection open as long as the client lives.
    link: Option<SshLink>,
    /// How to reach the host again after the link breaks (clients made by `connect`).
    pub(crate) target: Option<(String, SshOptions)>,
    pub(crate) reconnect: ReconnectPolicy,
}

/// What to resume after a reconnect: the session, and the one job when only it was followed.
struct Resume {
    session: uuid::Uuid,
    command: Option<u64>,
}

/// What an invoke produced.
#[derive(Debug)]
pub struct InvokeOutcome {
    pub invoked: Invoked,
    /// The stream's end, for attached invokes.
    pub end: Option<StreamEnd>,
}

impl Client {
    /// Connects over SSH to `target` (`[user@]host[:port]` or an ssh_config alias) and greets its agent.
    pub async fn connect(target_text: &str, options: &SshOptions) -> Result<Self> {
        let target: Target = target_text.parse()?;
        let settings = ssh::resolve(&target, options)?;
        Self::connect_with(target_text, &target, options, &settings).await
    }

    /// Like [`Client::connect`], through the user's connection holder when it holds (or can
    /// make, without asking anything) a connection to the same resolved destination whose host
    /// key this call's known_hosts accepts now; otherwise directly (refusing, asking or learning
    /// as a fresh connection does), after which the holder is asked to keep one for the next
    /// call. ControlPersist `no` connects directly.
    pub async fn connect_reusing(target_text: &str, options: &SshOptions, holder: &Holder) -> Result<Self> {
        let target: Target = target_text.parse()?;
        let settings = ssh::resolve(&target, options)?;
        if settings.control_persist == ssh::Persist::Off {
            return Self::connect_with(target_text, &target, options, &settings).await;
        }
        let destination = Destination::of(&settings);
        if let Some(client) = Self::through_holder(target_text, options, &settings, &destination, holder).await {
            return Ok(client);
        }
        let client = Self::connect_with(target_text, &target, options, &settings).await?;
        holder.warm(&destination).await;
        Ok(client)
    }

    /// A client on a channel of a held connection to `destination`, if the holder gives one
    /// and its host key is one `settings` trust now; a distrusted connection is forgotten.
    async fn through_holder(
        target_text: &str,
        options: &SshOptions,
        settings: &ssh::HostSettings,
        destination: &Destination,
        holder: &Holder,
    ) -> Option<Self> {
        let (stream, keys) = holder.open(destination).await?;
        if !ssh::trusts_held(settings, &keys.host, &keys.jump_hosts) {
            tracing::debug!("the held connection's host key is not trusted now; connecting directly");
            drop(stream);
            holder.forget(destination).await;
            return None;
        }
        match Connection::open(Box::new(stream) as BoxedTransport, &settings.alias).await {
            Ok(connection) => Some(Self {
                connection,
                link: None,
                target: Some((target_text.to_string(), options.clone())),
                reconnect: ReconnectPolicy::disabled(),
            }),
            Err(err) => {
                tracing::debug!("the held connection failed ({err}); connecting directly");
                None
            }
        }
    }

    async fn connect_with(
        target_text: &str,
        target: &Target,
        options: &SshOptions,
        settings: &ssh::HostSettings,
    ) -> Result<Self> {
        let link = SshLink::connect(settings).await?;
        let stream = match link.open_subsystem(SUBSYSTEM_NAME).await {
            // Users who cannot edit sshd_config still get everything.
            Err(ssh::SshError::SubsystemRefused { .. }) => link.open_agent_by_exec().await?,
            opened => opened?,
        };
        let connection = Connection::open(Box::new(stream) as BoxedTransport, &target.host).await?;
        Ok(Self {
            connection,
            link: Some(link),
            target: Some((target_text.to_string(), options.clone())),
            reconnect: ReconnectPolicy::disabled(),
        })
    }

    /// Makes attached invokes and receives survive a broken link (see [`ReconnectPolicy`]).
    pub fn set_reconnect(&mut self, policy: ReconnectPolicy) {
        self.reconnect = policy;
    }

    /// Greets an agent over an already open byte stream (a unix socket, a test duplex).
    pub async fn over(stream: BoxedTransport, host: &str) -> Result<Self> {
        Ok(Self {
            connection: Connection::open(stream, host).await?,
            link: None,
            target: None,
            reconnect: ReconnectPolicy::disabled(),
        })
    }

    /// What the agent said about itself in its welcome.
    pub fn agent(&self) -> &Welcome {
        self.connection.welcome()
    }

    /// Creates a session (New-PSSession).
    pub async fn new_session(&mut self, request: NewSession) -> Result<SessionInfo> {
        match self.connection.request(ClientBody::NewSession(request)).await? {
            AgentBody::Session(info) => Ok(info),
            other => Err(self.connection.unexpected(&other)),
        }
    }

    /// Lists sessions, optionally only names matching a glob (Get-PSSession).
    pub async fn list(&mut self, name_glob: Option<String>) -> Result<Vec<SessionInfo>> {
        match self
            .connection
            .request(ClientBody::ListSessions(ListSessions { name_glob }))
            .await?
        {
            AgentBody::Sessions(list) => Ok(list.sessions),
            other => Err(self.connection.unexpected(&other)),
        }
    }

    /// Removes sessions by name glob or id (Remove-PSSession); returns what was (or would be) removed.
    pub async fn remove(&mut self, request: RemoveSessions) -> Result<Vec<SessionInfo>> {
        match self.connection.request(ClientBody::RemoveSessions(request)).await? {
            AgentBody::Removed(list) => Ok(list.sessions),
            other => Err(self.connection.unexpected(&other)),
        }
    }

    /// Detaches whoever is attached to a session and may change its settings (Disconnect-PSSession).
    pub async fn disconnect(&mut self, request: Disconnect) -> Result<SessionInfo> {
        match self.connection.request(ClientBody::Disconnect(request)).await? {
            AgentBody::Session(info) => Ok(info),
            other => Err(self.connection.unexpected(&other)),
        }
    }

    /// Lists a session's commands (Get-Job).
    pub async fn commands(&mut self, session: SessionRef) -> Result<CommandList> {
        self.jobs(ListCommands {
            session,
            label_glob: None,
        })
        .await
    }

    /// Lists a session's commands, only those with a matching label when asked (Get-Job).
    pub async fn jobs(&mut self, request: ListCommands) -> Result<CommandList> {
        match self.connection.request(ClientBody::ListCommands(request)).await? {
            AgentBody::Commands(list) => Ok(list),
            other => Err(self.connection.unexpected(&other)),
        }
    }

    /// Interrupts a running command, or cancels a queued one, keeping the runspace (Stop-Job).
    pub async fn stop(&mut self, session: SessionRef, command: Option<u64>) -> Result<CommandList> {
        match self
            .connection
            .request(ClientBody::StopCommand(StopCommand { session, command }))
            .await?
        {
            AgentBody::Commands(list) => Ok(list),
            other => Err(self.connection.unexpected(&other)),
        }
    }

    /// Waits until a session's chosen jobs have ended (Wait-Job). With `request.updates`,
    /// `on_update` sees the chosen jobs' table at once and whenever one of them changes.
    ///
    /// A link that breaks meanwhile is reconnected within the reconnect policy, and the wait is
    /// asked again: waiting has no position to lose. With no job ids given, the new wait covers
    /// the jobs the session has at that moment.
    pub async fn wait(&mut self, request: WaitJobs, on_update: &mut dyn FnMut(&CommandList)) -> Result<Waited> {
        loop {
            match self.wait_once(request.clone(), on_update).await {
                Err(err) if err.is_transient() && self.can_reconnect() => self.reconnect(&err).await?,
                result => return result,
            }
        }
    }

    async fn wait_once(&mut self, request: WaitJobs, on_update: &mut dyn FnMut(&CommandList)) -> Result<Waited> {
        let (id, mut reply) = self.connection.start_stream(ClientBody::Wait(request)).await?;
        loop {
            match reply {
                AgentBody::Waited(waited) => return Ok(waited),
                AgentBody::Commands(list) => on_update(&list),
                other => return Err(self.connection.unexpected(&other)),
            }
            reply = self.connection.next_reply(id).await?;
        }
    }

    /// Runs a command (Invoke-Command); when `follow`, its output goes to `sink` until it ends.
    pub async fn invoke(&mut self, request: Invoke, sink: &mut dyn OutputSink) -> Result<InvokeOutcome> {
        self.invoke_with_input(request, sink, None).await
    }

    /// [`Client::invoke`] with the command's stdin read from `input`; `request.stdin` says how
    /// (`stream` while it runs, `stored` on the host before it starts). A stored input is
    /// uploaded to its end before this returns.
    pub async fn invoke_with_input(
        &mut self,
        mut request: Invoke,
        sink: &mut dyn OutputSink,
        mut input: Option<&mut InputFeed>,
    ) -> Result<InvokeOutcome> {
        if input.is_none() {
            request.stdin = InputMode::Null;
        }
        let follow = request.follow;
        let (id, first) = self.connection.start_stream(ClientBody::Invoke(request)).await?;
        let AgentBody::Invoked(invoked) = first else {
            return Err(self.connection.unexpected(&first));
        };
        if let Some(feed) = input.as_deref_mut() {
            feed.bind(invoked.session.instance_id, invoked.command.id);
        }
        let end = match (follow, input) {
            (true, input) => {
                let resume = Resume {
                    session: invoked.session.instance_id,
                    command: Some(invoked.command.id),
                };
                Some(self.follow_resuming(id, sink, true, resume, input).await?)
            }
            (false, Some(feed)) => {
                self.upload_resuming(feed).await?;
                None
            }
            (false, None) => None,
        };
        Ok(InvokeOutcome { invoked, end })
    }

    /// Uploads a stored input to its end, reconnecting when the link breaks.
    async fn upload_resuming(&mut self, feed: &mut InputFeed) -> Result<()> {
        loop {
            match self.connection.upload_input(feed).await {
                Err(err) if err.is_transient() && self.can_reconnect() => self.reconnect(&err).await?,
                result => return result,
            }
        }
    }

    /// Receives every unacknowledged output of a session into `sink` (Receive-PSSession).
    pub async fn receive(&mut self, request: Receive, sink: &mut dyn OutputSink) -> Result<(Receiving, StreamEnd)> {
        let acknowledge = !request.keep;
        let command = request.command;
        let (id, first) = self.connection.start_stream(ClientBody::Receive(request)).await?;
        let AgentBody::Receiving(receiving) = first else {
            return Err(self.connection.unexpected(&first));
        };
        let resume = Resume {
            session: receiving.session.instance_id,
            command,
        };
        let end = self.follow_resuming(id, sink, acknowledge, resume, None).await?;
        Ok((receiving, end))
    }

    /// Follows a stream; when the link breaks and the policy allows, reconnects to the same
    /// agent, resumes the same session (or job) and goes on, writing nothing twice.
    async fn follow_resuming(
        &mut self,
        mut id: RequestId,
        sink: &mut dyn OutputSink,
        acknowledge: bool,
        resume: Resume,
        mut input: Option<&mut InputFeed>,
    ) -> Result<StreamEnd> {
        let mut once = OnceSink::new(sink);
        loop {
            let followed = self
                .connection
                .follow_stream_with_input(id, &mut once, acknowledge, input.as_deref_mut())
                .await;
            match followed {
                Err(err) if err.is_transient() && self.can_reconnect() => {
                    id = self.reconnect_and_resume(&err, &resume, acknowledge).await?;
                }
                result => return result,
            }
        }
    }

    /// Reconnects to the same agent within the policy's window (the link broke with `cause`),
    /// for requests that resume on their own (transfers, stored input).
    pub(crate) async fn reconnect(&mut self, cause: &ClientError) -> Result<()> {
        let (target, options) = self.target.clone().expect("checked by can_reconnect");
        let agent_id = self.agent().agent_id;
        let fresh = Retrying::start(self.reconnect.clone(), cause)
            .until_ok(async || Client::connect_same_agent(&target, &options, agent_id).await)
            .await
            .map_err(|err| ClientError::LinkLost {
                host: target.clone(),
                cause: Box::new(err),
            })?;
        self.replace_link(fresh);
        Ok(())
    }

    /// Takes over `fresh`'s connection, keeping this client's reconnect policy.
    fn replace_link(&mut self, fresh: Client) {
        *self = Client {
            reconnect: self.reconnect.clone(),
            ..fresh
        };
    }

    /// A new connection to `target`, refused unless the agent that answers is `agent_id`.
    pub(crate) async fn connect_same_agent(target: &str, options: &SshOptions, agent_id: uuid::Uuid) -> Result<Client> {
        let fresh = Client::connect(target, options).await?;
        if fresh.agent().agent_id != agent_id {
            return Err(ClientError::Unexpected {
                host: target.to_string(),
                what: format!(
                    "a different agent answered ({} instead of {agent_id})",
                    fresh.agent().agent_id
                ),
            });
        }
        Ok(fresh)
    }

    /// Whether a broken link goes through the reconnect policy: this client knows its target.
    /// A policy with a zero window then gives up at once, saying the link was lost and how to
    /// collect the output later.
    pub(crate) fn can_reconnect(&self) -> bool {
        self.target.is_some()
    }

    /// Reconnects within the policy's window and restarts the stream; returns its request id.
    async fn reconnect_and_resume(
        &mut self,
        cause: &ClientError,
        resume: &Resume,
        acknowledge: bool,
    ) -> Result<RequestId> {
        let (target, options) = self.target.clone().expect("checked by can_reconnect");
        let agent_id = self.agent().agent_id;
        let (fresh, id) = Retrying::start(self.reconnect.clone(), cause)
            .until_ok(async || Client::resume_on_fresh_link(&target, &options, agent_id, resume, acknowledge).await)
            .await
            .map_err(|err| ClientError::GaveUp {
                host: target.clone(),
                session: resume.session,
                cause: Box::new(err),
            })?;
        self.replace_link(fresh);
        Ok(id)
    }

    /// One reconnect attempt: a new connection to the same agent, with the stream restarted on
    /// it. Any transient failure along the way (the link may break again at any step) is worth
    /// another attempt.
    async fn resume_on_fresh_link(
        target: &str,
        options: &SshOptions,
        agent_id: uuid::Uuid,
        resume: &Resume,
        acknowledge: bool,
    ) -> Result<(Client, RequestId)> {
        let mut fresh = Client::connect_same_agent(target, options, agent_id).await?;
        let request = Receive {
            command: resume.command,
            keep: !acknowledge,
            ..Receive::follow_all(SessionRef::Id(resume.session))
        };
        let (id, first) = fresh.connection.start_stream(ClientBody::Receive(request)).await?;
        if !matches!(first, AgentBody::Receiving(_)) {
            return Err(fresh.connection.unexpected(&first));
        }
        Ok((fresh, id))
    }

    /// Copies local `sources` to `dest` on the host (Copy-Item -ToSession); see [`crate::transfer`].
    pub async fn upload(
        &mut self,
        sources: &[PathBuf],
        dest: &[u8],
        options: &CopyOptions,
        progress: &mut dyn CopyProgress,
    ) -> Result<Vec<Copied>> {
        Uploader { client: self }.upload(sources, dest, options, progress).await
    }

    /// Copies remote `sources` from the host to the local `dest` (Copy-Item -FromSession).
    pub async fn download(
        &mut self,
        sources: &[Vec<u8>],
        dest: &Path,
        options: &CopyOptions,
        progress: &mut dyn CopyProgress,
    ) -> Result<Vec<Copied>> {
        Downloader { client: self }
            .download(sources, dest, options, progress)
            .await
    }

    /// Opens or attaches to a session's terminal (`remora shell`); see [`crate::terminal`].
    pub async fn open_terminal(self, request: OpenTerminal) -> Result<(TerminalOpened, TerminalStream)> {
        TerminalStream::open(self, request).await
    }

    /// The terminal's transcript since the last one, as plain text (`receive --terminal`).
    pub async fn transcript(&mut self, session: SessionRef) -> Result<Transcript> {
        match self
            .connection
            .request(ClientBody::TermTranscript(TermTranscript { session }))
            .await?
        {
            AgentBody::Transcript(transcript) => Ok(transcript),
            other => Err(self.connection.unexpected(&other)),
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) -> Result<()> {
        self.connection.shutdown().await?;
        if let Some(link) = self.link {
            link.close().await?;
        }
        Ok(())
    }
}
