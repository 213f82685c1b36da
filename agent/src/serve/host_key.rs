//! The embedded server's host key: generated once (ed25519, 0600) and reused, so clients' known_hosts
//! entries stay valid across restarts.

use std::{fs, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use russh::keys::{ssh_key::LineEnding, Algorithm, PrivateKey};

use crate::error::{AgentError, HostKeyFailure, Result};

/// Loads the host key at `path`, creating it first if it does not exist.
pub(crate) fn load_or_create_host_key(path: &Path) -> Result<PrivateKey> {
    if path.exists() {
        return PrivateKey::read_openssh_file(path).map_err(|cause| {
            AgentError::HostKey(HostKeyFailure::Read {
                path: path.to_path_buf(),
                cause,
            })
        });
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|err| AgentError::HostKey(HostKeyFailure::Generate(err)))?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|err| AgentError::HostKey(HostKeyFailure::Encode(err)))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(AgentError::io("cannot create host key", path))?;
    file.write_all(text.as_bytes())
        .map_err(AgentError::io("cannot write host key", path))?;
    tracing::info!("generated host key {}", path.display());
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use russh::keys::HashAlg;

    use super::*;

    #[test]
    fn created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_key");
        let first = load_or_create_host_key(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let second = load_or_create_host_key(&path).unwrap();
        assert_eq!(
            first.public_key().fingerprint(HashAlg::Sha256),
            second.public_key().fingerprint(HashAlg::Sha256)
        );
    }
}
