//! What makes a per-user daemon's files its own: directories private to the user (0700, owned
//! by them, not a link), and sockets that serve only peers of the same uid. The agent's
//! daemon and the client's connection holder both stand on these.

use std::{
    fs, io,
    os::{
        fd::AsFd,
        unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

/// Why a directory cannot be the private directory of this user.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error("cannot create directory {}: {cause}", path.display())]
    Create { path: PathBuf, cause: io::Error },
    #[error("cannot inspect {}: {cause}", path.display())]
    Inspect { path: PathBuf, cause: io::Error },
    /// It exists but is not private: the reason says how.
    #[error("refusing to use {}: {reason}", path.display())]
    NotPrivate { path: PathBuf, reason: String },
}

/// Creates `dir` (and its parents) 0700 if missing, then checks it with [`verify_private_dir`].
pub fn ensure_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|cause| PrivateDirError::Create {
            path: dir.to_path_buf(),
            cause,
        })?;
    verify_private_dir(dir)
}

/// Like [`ensure_private_dir`], but an existing directory of ours that is open to others (an
/// older version created it 0755) is made 0700 first, rather than refused.
pub fn tighten_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        let ours = meta.uid() == nix::unistd::getuid().as_raw();
        if meta.is_dir() && ours && meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|cause| PrivateDirError::Create {
                path: dir.to_path_buf(),
                cause,
            })?;
        }
    }
    ensure_private_dir(dir)
}

/// Checks, without following symlinks, that `dir` is a directory of the current user that no
/// one else may read, write or enter.
pub fn verify_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    let meta = fs::symlink_metadata(dir).map_err(|cause| PrivateDirError::Inspect {
        path: dir.to_path_buf(),
        cause,
    })?;
    let refuse = |reason: String| PrivateDirError::NotPrivate {
        path: dir.to_path_buf(),
        reason,
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        return Err(refuse(format!("it is owned by uid {}, not {uid}", meta.uid())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!("its mode is {mode:o}, open to other users")));
    }
    Ok(())
}

/// `Some((peer, own))` when the process at the other end of the unix socket `stream` runs as
/// another uid than this one (`SO_PEERCRED`), `None` when it is ours.
pub fn foreign_peer(stream: &impl AsFd) -> io::Result<Option<(u32, u32)>> {
    let own = nix::unistd::getuid().as_raw();
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    let peer = cred.uid();
    Ok((peer != own).then_some((peer, own)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_made_and_an_open_or_linked_one_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let private = scratch.path().join("a/b");
        ensure_private_dir(&private).unwrap();
        assert_eq!(fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o700);
        fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
        let err = verify_private_dir(&private).unwrap_err();
        assert!(err.to_string().contains("mode is 755"), "{err}");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let err = verify_private_dir(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn an_open_dir_of_ours_is_tightened_and_a_link_still_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let open = scratch.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        tighten_private_dir(&open).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o700);
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(tighten_private_dir(&link).is_err(), "a link is never followed");
    }

    #[test]
    fn a_socket_pair_of_this_process_is_not_foreign() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(foreign_peer(&a).unwrap(), None);
    }
}
