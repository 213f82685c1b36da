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
    AgentBody, ClientBody, CommandList, Disconnect, Invoke, Invoked, ListCommands, ListSessions, NewSession, Receive,
    Receiving, RemoveSessions, SessionInfo, SessionRef, StopCommand, StreamEnd, Welcome, SUBSYSTEM_NAME,
};

use crate::{
    connection::{Connection, OutputSink, Transport},
    error::Result,
    ssh::{self, SshLink, SshOptions, Target},
};

/// A byte stream to an agent, whatever carries it.
pub type BoxedTransport = Box<dyn Transport>;

/// A greeted connection to one host's agent.
pub struct Client {
    connection: Connection<BoxedTransport>,
    /// Keeps the SSH connection open as long as the client lives.
    link: Option<SshLink>,
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
    pub async fn connect(target: &str, options: &SshOptions) -> Result<Self> {
        let target: Target = target.parse()?;
        let settings = ssh::resolve(&target, options)?;
        let link = SshLink::connect(&settings).await?;
        let stream = link.open_subsystem(SUBSYSTEM_NAME).await?;
        let connection = Connection::open(Box::new(stream) as BoxedTransport, &target.host).await?;
        Ok(Self {
            connection,
            link: Some(link),
        })
    }

    /// Greets an agent over an already open byte stream (a unix socket, a test duplex).
    pub async fn over(stream: BoxedTransport, host: &str) -> Result<Self> {
        Ok(Self {
            connection: Connection::open(stream, host).await?,
            link: None,
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
        match self
            .connection
            .request(ClientBody::ListCommands(ListCommands { session }))
            .await?
        {
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

    /// Runs a command (Invoke-Command); when `follow`, its output goes to `sink` until it ends.
    pub async fn invoke(&mut self, request: Invoke, sink: &mut dyn OutputSink) -> Result<InvokeOutcome> {
        let follow = request.follow;
        let (id, first) = self.connection.start_stream(ClientBody::Invoke(request)).await?;
        let AgentBody::Invoked(invoked) = first else {
            return Err(self.connection.unexpected(&first));
        };
        let end = if follow {
            Some(self.connection.follow_stream(id, sink, true).await?)
        } else {
            None
        };
        Ok(InvokeOutcome { invoked, end })
    }

    /// Receives every unacknowledged output of a session into `sink` (Receive-PSSession).
    pub async fn receive(&mut self, request: Receive, sink: &mut dyn OutputSink) -> Result<(Receiving, StreamEnd)> {
        let acknowledge = !request.keep;
        let (id, first) = self.connection.start_stream(ClientBody::Receive(request)).await?;
        let AgentBody::Receiving(receiving) = first else {
            return Err(self.connection.unexpected(&first));
        };
        let end = self.connection.follow_stream(id, sink, acknowledge).await?;
        Ok((receiving, end))
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
