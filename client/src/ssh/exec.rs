//! Commands run on the host through `exec` requests: how remora reaches an agent on hosts whose
//! sshd has no `remora` subsystem line (the agent found on PATH or in `~/.local/bin`), and how
//! `remora install` copies it there.
//!
//! The commands are wrapped in `sh -c '…'` so they mean the same whatever the user's login shell
//! is (sshd runs exec requests with it). Single quotes mean the same to sh, dash, bash, zsh,
//! fish and tcsh only for text without newlines (tcsh: "Unmatched '") and backslashes (fish
//! reads `\\` inside them as one); a script with either travels base64-encoded instead.

use russh::ChannelMsg;

use super::{connect::SshLink, SshError, SubsystemStream};

/// Where the agent is looked for when sshd has no subsystem line: the login PATH, then
/// `~/.local/bin` (where `remora install` puts it).
pub const AGENT_SEARCH: &str = "PATH=\"$PATH:$HOME/.local/bin\"";

/// The most a command run for remora's own use (the agent probe, `install`'s steps) may print,
/// stdout and stderr together. Their honest replies are a few lines.
pub const MAX_EXEC_OUTPUT: usize = 64 * 1024;

/// What a finished command printed and its exit status.
#[derive(Debug)]
pub struct ExecOutput {
    /// The exit status; `None` if sshd reported none (killed by a signal).
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Stdout as trimmed text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    /// Stderr as trimmed text, or a placeholder when there was none.
    pub fn complaint(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr).trim().to_string();
        if text.is_empty() {
            "no message".into()
        } else {
            text
        }
    }
}

/// `script` as one `sh -c` command line that every login shell passes to sh unchanged (see the
/// module docs): single-quoted when that is safe for all of them, else base64-encoded and
/// decoded by sh on the host, so the script's stdin stays free.
pub fn sh_command(script: &str) -> String {
    if script.contains(['\n', '\\', '!']) {
        let encoded = data_encoding::BASE64.encode(script.as_bytes());
        return format!("sh -c 'eval \"$(echo {encoded} | base64 -d)\"'");
    }
    format!("sh -c '{}'", script.replace('\'', r"'\''"))
}

impl SshLink {
    /// Runs `command`, feeding it `stdin`, and collects what it prints until it exits; past
    /// [`MAX_EXEC_OUTPUT`] bytes it closes the channel and fails.
    ///
    /// Output is read while stdin is still being sent: a command that exits before reading all
    /// of it (a failed step of `install`) ends the call with its status and complaint instead of
    /// leaving the send waiting for window space that never comes.
    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
        let channel = self.handle().channel_open_session().await;
        let channel = channel.map_err(|source| self.protocol(source))?;
        channel
            .exec(true, command)
            .await
            .map_err(|source| self.protocol(source))?;
        let (mut reader, writer) = channel.split();
        let send = async {
            writer.data(stdin).await?;
            writer.eof().await
        };
        tokio::pin!(send);
        let mut sending = true;
        let mut output = ExecOutput {
            status: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        loop {
            let message = tokio::select! {
                sent = &mut send, if sending => {
                    sending = false;
                    // A command that stopped reading closes its end; what it said still counts.
                    if let Err(err) = sent {
                        tracing::debug!("{}: stdin of `{command}` not sent whole: {err}", self.host());
                    }
                    continue;
                }
                message = reader.wait() => message,
            };
            let Some(message) = message else { break };
            let received = match &message {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
                _ => 0,
            };
            if output.stdout.len() + output.stderr.len() + received > MAX_EXEC_OUTPUT {
                let _ = writer.close().await;
                return Err(SshError::ExecOutputTooLarge {
                    host: self.alias().into(),
                    command: command.into(),
                    limit: MAX_EXEC_OUTPUT,
                });
            }
            match message {
                ChannelMsg::Data { data } => output.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => output.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                ChannelMsg::Failure => {
                    return Err(SshError::ExecRefused {
                        host: self.host().into(),
                    })
                }
                _ => {}
            }
        }
        Ok(output)
    }

    /// Starts `remora-agent subsystem` through an exec request, for hosts whose sshd refused the
    /// subsystem. Fails with [`SshError::AgentMissing`] when the host has no agent to run.
    pub async fn open_agent_by_exec(&self) -> Result<SubsystemStream, SshError> {
        let probe = sh_command(&format!("{AGENT_SEARCH}; command -v remora-agent"));
        let found = self.exec(&probe, &[]).await?;
        if !found.success() {
            return Err(SshError::AgentMissing {
                host: self.alias().into(),
            });
        }
        tracing::info!(
            "{}: no remora subsystem; running {} through exec",
            self.host(),
            found.text()
        );
        let command = sh_command(&format!("{AGENT_SEARCH}; exec remora-agent subsystem"));
        let channel = self.handle().channel_open_session().await;
        let channel = channel.map_err(|source| self.protocol(source))?;
        channel
            .exec(true, command)
            .await
            .map_err(|source| self.protocol(source))?;
        Ok(channel.into_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_survive_the_login_shell_quoted() {
        assert_eq!(sh_command("echo 'a b'; exit"), r"sh -c 'echo '\''a b'\''; exit'");
        assert!(sh_command("a\nb").contains("base64 -d"));
    }

    /// Runs each script through every login shell remora promises to work under, as sshd does
    /// (`SHELL -c COMMAND`), and compares with sh running it directly. In CI (`CI` set) every
    /// shell must be installed (scripts/test installs them); elsewhere missing ones are skipped.
    #[test]
    fn every_login_shell_hands_the_script_to_sh_unchanged() {
        let scripts = [
            "echo plain; echo \"$HOME\" 'single' \"dou\\\"ble\"",
            "set -u\nx='a b  c'\nprintf '%s\\n' \"$x\" \"it's\" '$HOME' \"!\"\nif true; then echo yes; fi",
            "printf '%s|' 'a\\\\b' \"c\\\\d\" 'tab\there' \"new\nline\"; echo",
            "dir=\"/tmp/with space\"; echo \"$dir/remora-agent\" ~ `echo tick` $((6*7)) #comment",
        ];
        let run = |shell: &str, args: &[&str]| {
            std::process::Command::new(shell)
                .args(args)
                .env("HOME", "/home/someone")
                .stdin(std::process::Stdio::null())
                .output()
        };
        for shell in ["sh", "dash", "bash", "zsh", "fish", "tcsh"] {
            if run(shell, &["-c", "true"]).is_err() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{shell} is not installed (scripts/test installs it)"
                );
                eprintln!("skipped {shell}: not installed");
                continue;
            }
            for script in scripts {
                let want = run("sh", &["-c", script]).unwrap();
                let got = run(shell, &["-c", &sh_command(script)]).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&got.stdout),
                    String::from_utf8_lossy(&want.stdout),
                    "{shell} -c {:?}: {}",
                    sh_command(script),
                    String::from_utf8_lossy(&got.stderr)
                );
            }
        }
    }
}
