//! Authentication in ssh's order: ssh-agent keys (those of configured identity files first; only
//! those with IdentitiesOnly), then the identity files not already offered through the agent,
//! asking on the terminal for passphrases of encrypted ones, each file's certificate
//! (`FILE-cert.pub`) before the plain key; then, only with a terminal, keyboard-interactive and
//! password ([`super::interactive`]).
//!
//! Every attempt is reported in [`SshError::AuthFailed`], since "permission denied" alone does not
//! say what to fix. Decrypted keys are kept for the life of the process, so a run that reaches many
//! hosts, or reconnects, asks for a passphrase once.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
};

use russh::{
    client::{AuthResult, Handle, Handler},
    keys::{
        agent::{client::AgentClient, AgentIdentity},
        decode_secret_key, load_openssh_certificate, load_public_key,
        ssh_key::{self, PublicKey},
        Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg,
    },
    AgentAuthError, MethodKind,
};
use tokio::{net::UnixStream, sync::Mutex};

use super::{terminal, AgentSocket, HostSettings, SshError};

/// How often a wrong passphrase may be typed (ssh's NumberOfPasswordPrompts).
const PASSPHRASE_ATTEMPTS: usize = 3;

/// Keys decrypted in this process, by path (held while asking, so a key is asked for once).
static UNLOCKED: Mutex<Vec<(PathBuf, Arc<PrivateKey>)>> = Mutex::const_new(Vec::new());

/// Authenticates as `settings.user`, or fails saying everything that was tried.
pub async fn authenticate<H: Handler>(handle: &mut Handle<H>, settings: &HostSettings) -> Result<(), SshError> {
    let identities: Vec<Identity> = settings.identity_files.iter().map(|p| Identity::locate(p)).collect();
    let mut attempt = Attempt {
        handle,
        settings,
        tried: Vec::new(),
        offered: Vec::new(),
        rsa_hash: None,
        exhausted: false,
    };
    if attempt.with_agent(&identities).await? {
        return Ok(());
    }
    for identity in &identities {
        if attempt.with_file(identity).await? {
            return Ok(());
        }
    }
    if super::interactive::authenticate(attempt.handle, settings, &mut attempt.tried).await? {
        return Ok(());
    }
    Err(attempt.failed())
}

/// A configured identity file and, when it can be read without a passphrase, its public key.
struct Identity {
    path: PathBuf,
    public: Option<PublicKey>,
    exists: bool,
}

impl Identity {
    /// Finds the public key in `PATH.pub`, else in the private key file (OpenSSH's format keeps
    /// it unencrypted); warns like ssh when the file does not exist.
    fn locate(path: &Path) -> Identity {
        let exists = path.exists();
        if !exists {
            tracing::warn!("no such identity: {}; skipping it", path.display());
        }
        let mut pub_path = OsString::from(path.as_os_str());
        pub_path.push(".pub");
        let public = load_public_key(PathBuf::from(pub_path)).ok().or_else(|| {
            let text = std::fs::read_to_string(path).ok()?;
            Some(ssh_key::PrivateKey::from_openssh(text).ok()?.public_key().clone())
        });
        Identity {
            path: path.to_path_buf(),
            public,
            exists,
        }
    }
}

/// One authentication run and what it has tried so far.
struct Attempt<'a, H: Handler> {
    handle: &'a mut Handle<H>,
    settings: &'a HostSettings,
    tried: Vec<String>,
    /// Keys the server has answered for; not offered again.
    offered: Vec<PublicKey>,
    /// The RSA signature hash, asked of the server once.
    rsa_hash: Option<HashAlg>,
    /// The server accepts no more public keys.
    exhausted: bool,
}

impl<H: Handler> Attempt<'_, H> {
    async fn with_agent(&mut self, identities: &[Identity]) -> Result<bool, SshError> {
        let Some((mut agent, keys)) = self.agent_keys().await else {
            return Ok(false);
        };
        for key in order_agent_keys(keys, identities, self.settings.identities_only) {
            if self.exhausted {
                break;
            }
            let label = format!("ssh-agent key {}", describe(&key));
            let hash = self.rsa_hash(&key).await;
            let user = self.settings.user.clone();
            match self
                .handle
                .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                .await
            {
                Ok(result) => {
                    self.offered.push(key);
                    if self.judge(result, label) {
                        return Ok(true);
                    }
                }
                Err(AgentAuthError::Key(err)) => self.tried.push(format!("{label} (the agent did not sign: {err})")),
                Err(AgentAuthError::Send(_)) => return Err(self.broken(russh::Error::SendError)),
            }
        }
        Ok(false)
    }

    /// The agent (IdentityAgent, `SSH_AUTH_SOCK` by default) and its plain keys; `None` without
    /// a usable agent.
    async fn agent_keys(&mut self) -> Option<(AgentClient<UnixStream>, Vec<PublicKey>)> {
        let socket = match &self.settings.agent {
            AgentSocket::Environment => PathBuf::from(std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty())?),
            AgentSocket::Path(path) => path.clone(),
            AgentSocket::Disabled => return None,
        };
        let agent = AgentClient::connect_uds(&socket).await;
        let identities = match agent {
            Ok(mut agent) => agent.request_identities().await.map(|identities| (agent, identities)),
            Err(err) => Err(err),
        };
        let (agent, identities) = match identities {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(
                    "cannot use ssh-agent at {}: {err}; continuing without it",
                    socket.display()
                );
                self.tried.push(format!("ssh-agent ({err})"));
                return None;
            }
        };
        let keys = identities.into_iter().filter_map(|identity| match identity {
            AgentIdentity::PublicKey { mut key, comment } => {
                key.set_comment(comment);
                Some(key)
            }
            AgentIdentity::Certificate { comment, .. } => {
                tracing::debug!("skipping ssh-agent certificate {comment}: certificates are not supported yet");
                None
            }
        });
        Some((agent, keys.collect()))
    }

    async fn with_file(&mut self, identity: &Identity) -> Result<bool, SshError> {
        let label = identity.path.display().to_string();
        if self.exhausted {
            return Ok(false);
        }
        if !identity.exists {
            self.tried.push(format!("{label} (no such file)"));
            return Ok(false);
        }
        let already = |key: &PublicKey| self.offered.iter().any(|o| o.key_data() == key.key_data());
        if identity.public.as_ref().is_some_and(already) {
            return Ok(false);
        }
        let key = match unlock(&identity.path, !self.settings.batch_mode).await {
            Ok(key) => key,
            Err(reason) => {
                self.tried.push(format!("{label} ({reason})"));
                return Ok(false);
            }
        };
        if let Some(certificate) = certificate_for(&identity.path) {
            let user = self.settings.user.clone();
            let result = self
                .handle
                .authenticate_openssh_cert(user, key.clone(), certificate)
                .await;
            let result = result.map_err(|err| self.broken(err))?;
            if self.judge(result, format!("{label}-cert.pub")) {
                return Ok(true);
            }
        }
        let hash = self.rsa_hash(key.public_key()).await;
        let user = self.settings.user.clone();
        let result = self
            .handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
            .await;
        let result = result.map_err(|err| self.broken(err))?;
        Ok(self.judge(result, label))
    }

    /// Records a refusal; true when the server accepted.
    fn judge(&mut self, result: AuthResult, label: String) -> bool {
        let AuthResult::Failure {
            remaining_methods,
            partial_success,
        } = result
        else {
            return true;
        };
        let partial = if partial_success {
            " (accepted, but the host wants another method too)"
        } else {
            ""
        };
        self.tried.push(format!("{label}{partial}"));
        if !remaining_methods.is_empty() && !remaining_methods.contains(&MethodKind::PublicKey) {
            let names: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
            self.tried.push(format!(
                "no more public keys: the host now allows only {}",
                names.join(", ")
            ));
            self.exhausted = true;
        }
        false
    }

    /// rsa-sha2-512 or -256 as the server supports (SHA-1 `ssh-rsa` is never used).
    async fn rsa_hash(&mut self, key: &PublicKey) -> Option<HashAlg> {
        if !key.algorithm().is_rsa() {
            return None;
        }
        if self.rsa_hash.is_none() {
            let best = self.handle.best_supported_rsa_hash().await.ok().flatten().flatten();
            self.rsa_hash = Some(best.unwrap_or(HashAlg::Sha256));
        }
        self.rsa_hash
    }

    /// The connection ended mid-authentication: the link broke, or the host gave up on us (often
    /// MaxAuthTries). Either way it is worth one more try later, with what was tried listed.
    fn broken(&mut self, err: russh::Error) -> SshError {
        SshError::AuthInterrupted {
            user: self.settings.user.clone(),
            host: self.settings.alias.clone(),
            reason: err.to_string(),
            tried: std::mem::take(&mut self.tried),
        }
    }

    fn failed(&mut self) -> SshError {
        if self.handle.is_closed() {
            // A refusal on a connection that is gone may only mean the link broke mid-attempt.
            return self.broken(russh::Error::Disconnect);
        }
        if self.settings.identity_files.is_empty() && self.tried.is_empty() {
            self.tried
                .push("no identity: no ssh-agent keys and no IdentityFile (pass -i)".into());
        }
        SshError::AuthFailed {
            user: self.settings.user.clone(),
            host: self.settings.alias.clone(),
            tried: std::mem::take(&mut self.tried),
        }
    }
}

/// Agent keys of configured identity files first, in the files' order; the others after them
/// unless `identities_only`.
fn order_agent_keys(keys: Vec<PublicKey>, identities: &[Identity], identities_only: bool) -> Vec<PublicKey> {
    let rank = |key: &PublicKey| {
        identities
            .iter()
            .position(|identity| identity.public.as_ref().is_some_and(|p| p.key_data() == key.key_data()))
    };
    let (mut ordered, others): (Vec<PublicKey>, Vec<PublicKey>) = keys.into_iter().partition(|k| rank(k).is_some());
    ordered.sort_by_key(rank);
    if !identities_only {
        ordered.extend(others);
    }
    ordered
}

/// The OpenSSH certificate next to an identity file (`FILE-cert.pub`), when there is a usable one.
fn certificate_for(identity: &Path) -> Option<Certificate> {
    let mut path = OsString::from(identity.as_os_str());
    path.push("-cert.pub");
    let path = PathBuf::from(path);
    if !path.exists() {
        return None;
    }
    match load_openssh_certificate(&path) {
        Ok(certificate) => Some(certificate),
        Err(err) => {
            tracing::warn!("{}: not a usable certificate ({err}); skipping it", path.display());
            None
        }
    }
}

/// `ED25519 SHA256:… comment`, as `ssh-add -l` shows a key.
fn describe(key: &PublicKey) -> String {
    let algorithm = super::known_hosts::key_type(&key.algorithm());
    let fingerprint = key.fingerprint(HashAlg::Sha256);
    let comment = key.comment().as_str_lossy();
    format!("{algorithm} {fingerprint} {comment}").trim_end().to_string()
}

/// Loads a private key, asking for its passphrase on the terminal if it is encrypted (once per process).
async fn unlock(path: &Path, may_ask: bool) -> Result<Arc<PrivateKey>, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|err| format!("unreadable: {err}"))?;
    match decode_secret_key(&text, None) {
        Ok(key) => return Ok(Arc::new(key)),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(err) => return Err(format!("not a usable private key: {err}")),
    }
    if !may_ask {
        return Err("encrypted, and BatchMode forbids asking for its passphrase; load it with ssh-add first".into());
    }
    let mut unlocked = UNLOCKED.lock().await;
    if let Some((_, key)) = unlocked.iter().find(|(known, _)| known == path) {
        return Ok(key.clone());
    }
    let owned = path.to_path_buf();
    let _turn = terminal::turn().await;
    let key = tokio::task::spawn_blocking(move || decrypt_interactively(&owned, &text))
        .await
        .map_err(|err| format!("passphrase prompt failed: {err}"))??;
    let key = Arc::new(key);
    unlocked.push((path.to_path_buf(), key.clone()));
    Ok(key)
}

/// Prompts on the terminal (never echoing) until the passphrase fits or the attempts run out.
fn decrypt_interactively(path: &Path, text: &str) -> Result<PrivateKey, String> {
    let mut prompt = format!("Enter passphrase for key '{}': ", path.display());
    for _ in 0..PASSPHRASE_ATTEMPTS {
        let passphrase = rpassword::prompt_password(&prompt).map_err(|_| {
            "encrypted, and there is no terminal to ask for its passphrase; load it with ssh-add first".to_string()
        })?;
        if passphrase.is_empty() {
            return Err("encrypted; no passphrase given".into());
        }
        if let Ok(key) = decode_secret_key(text, Some(&passphrase)) {
            return Ok(key);
        }
        prompt = format!("Bad passphrase, try again for '{}': ", path.display());
    }
    Err("encrypted; wrong passphrase".into())
}

#[cfg(test)]
mod tests {
    use russh::keys::{ssh_key::LineEnding, Algorithm};

    use super::*;

    fn private() -> PrivateKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
    }

    fn identity(key: Option<&PublicKey>) -> Identity {
        Identity {
            path: "/k".into(),
            public: key.cloned(),
            exists: true,
        }
    }

    #[test]
    fn configured_agent_keys_go_first_and_alone_with_identities_only() {
        let keys: Vec<PublicKey> = (0..3).map(|_| private().public_key().clone()).collect();
        let identities = [identity(Some(&keys[2])), identity(None), identity(Some(&keys[1]))];
        let order = order_agent_keys(keys.clone(), &identities, false);
        assert_eq!(order, [keys[2].clone(), keys[1].clone(), keys[0].clone()]);
        let order = order_agent_keys(keys.clone(), &identities, true);
        assert_eq!(order, [keys[2].clone(), keys[1].clone()]);
        assert!(order_agent_keys(keys, &[], true).is_empty());
    }

    #[test]
    fn public_keys_are_found_next_to_or_inside_identity_files() {
        let dir = tempfile::tempdir().unwrap();
        let (with_pub, without_pub) = (private(), private());
        let path = dir.path().join("id_a");
        std::fs::write(&path, "not read: the .pub file wins").unwrap();
        std::fs::write(dir.path().join("id_a.pub"), with_pub.public_key().to_openssh().unwrap()).unwrap();
        let found = Identity::locate(&path).public.unwrap();
        assert_eq!(found.key_data(), with_pub.public_key().key_data());
        let path = dir.path().join("id_b");
        std::fs::write(&path, without_pub.to_openssh(LineEnding::LF).unwrap()).unwrap();
        let found = Identity::locate(&path).public.unwrap();
        assert_eq!(found.key_data(), without_pub.public_key().key_data());
        assert!(!Identity::locate(&dir.path().join("missing")).exists);
    }

    #[tokio::test]
    async fn plain_key_files_load_and_garbage_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let key = private();
        let path = dir.path().join("id");
        std::fs::write(&path, key.to_openssh(LineEnding::LF).unwrap()).unwrap();
        let loaded = unlock(&path, true).await.unwrap();
        assert_eq!(loaded.public_key().key_data(), key.public_key().key_data());
        std::fs::write(&path, "garbage").unwrap();
        assert!(unlock(&path, true)
            .await
            .unwrap_err()
            .starts_with("not a usable private key"));
        let missing = unlock(&dir.path().join("missing"), true).await.unwrap_err();
        assert!(missing.starts_with("unreadable"), "{missing}");
    }

    #[test]
    fn keys_are_described_like_ssh_add() {
        let mut key = private().public_key().clone();
        key.set_comment("me@laptop");
        let text = describe(&key);
        assert!(text.starts_with("ED25519 SHA256:"), "{text}");
        assert!(text.ends_with(" me@laptop"), "{text}");
    }
}
