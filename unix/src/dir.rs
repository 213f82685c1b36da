//! [`Dir`]: a directory opened once, and every file, link and subdirectory made relative to its
//! descriptor with `O_NOFOLLOW`, so nothing under it is reached through a symlink.

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::{openat, renameat, AtFlags, OFlag},
    sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag},
    unistd::{ftruncate, symlinkat, unlinkat, Uid, UnlinkatFlags},
};

/// What a name in a directory is, the name itself (a symlink is a symlink, whatever it points at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device.
    Other,
}

/// A name that holds something we will not write to: a symlink, not a regular file, another
/// user's file, or a file with other hard links (which could be someone else's file).
#[derive(Debug, thiserror::Error)]
#[error("{name} is {what}, not a file of ours; remove it and run the same command again")]
pub struct NotOurs {
    /// The name, as text for messages.
    pub name: String,
    /// What it is instead ("a symlink", "owned by uid 1001", "a file with 2 links").
    pub what: String,
}

/// A directory opened once; see the module docs.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// Flags of every file opened under a [`Dir`]: never through a symlink, never kept across exec,
/// never blocking on a fifo planted under the name, never becoming our terminal.
fn file_flags() -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// `name` as a single path component, or an `InvalidInput` error naming it.
fn component(name: &[u8]) -> io::Result<&OsStr> {
    let plain = !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0);
    match plain {
        true => Ok(OsStr::from_bytes(name)),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is not a plain file name (empty, `.`, `..`, or holding `/` or NUL)",
                String::from_utf8_lossy(name)
            ),
        )),
    }
}

fn kind_of(stat: &FileStat) -> EntryKind {
    match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => EntryKind::File,
        SFlag::S_IFDIR => EntryKind::Dir,
        SFlag::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// Refuses an open file that is not a regular file of ours with exactly one link.
fn check_ours(file: &File, name: &OsStr) -> io::Result<()> {
    let stat = fstat(file)?;
    let what = if kind_of(&stat) != EntryKind::File {
        Some("not a regular file".to_string())
    } else if stat.st_uid != Uid::effective().as_raw() {
        Some(format!("owned by uid {}", stat.st_uid))
    } else if stat.st_nlink != 1 {
        Some(format!("a file with {} links", stat.st_nlink))
    } else {
        None
    };
    match what {
        None => Ok(()),
        Some(what) => Err(not_ours(name, what)),
    }
}

fn not_ours(name: &OsStr, what: String) -> io::Error {
    let refusal = NotOurs {
        name: name.to_string_lossy().into_owned(),
        what,
    };
    io::Error::new(io::ErrorKind::AlreadyExists, refusal)
}

/// Whether `err` is a [`NotOurs`] refusal.
fn is_not_ours(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<NotOurs>())
}

impl Dir {
    /// Opens the directory at `path`. The path is the caller's own (the command line, the
    /// user's request), so its components may be links; everything below it is not followed.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(path, dir_flags(), Mode::empty())?;
        Ok(Dir { fd })
    }

    /// The subdirectory `name`, refused when it is a symlink (`ELOOP`) or not a directory.
    pub fn subdir(&self, name: &[u8]) -> io::Result<Dir> {
        let name = component(name)?;
        let fd = openat(&self.fd, name, dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())?;
        Ok(Dir { fd })
    }

    /// Creates the subdirectory `name` with `mode` (within the umask).
    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        let name = component(name)?;
        mkdirat(&self.fd, name, Mode::from_bits_truncate(mode & 0o777))?;
        Ok(())
    }

    /// What `name` is, without following it; `None` when there is nothing under that name.
    pub fn kind(&self, name: &[u8]) -> io::Result<Option<EntryKind>> {
        let name = component(name)?;
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(kind_of(&stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// A new file `name`, read-write, 0600: `O_CREAT|O_EXCL|O_NOFOLLOW`, so it fails on any
    /// existing name, a symlink included.
    pub fn create_new(&self, name: &[u8]) -> io::Result<File> {
        let name = component(name)?;
        let flags = file_flags() | OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
        let fd = openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600))?;
        Ok(File::from(fd))
    }

    /// The existing file `name`, read-write, to continue it: `None` when there is none, a
    /// [`NotOurs`] refusal when it is a symlink, not a regular file, not ours, or hard-linked.
    pub fn open_resume(&self, name: &[u8]) -> io::Result<Option<File>> {
        let name = component(name)?;
        let file = match openat(&self.fd, name, file_flags() | OFlag::O_RDWR, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(self.open_failed(name, errno)),
        };
        check_ours(&file, name)?;
        Ok(Some(file))
    }

    /// A partial file `name`: the existing one when it is ours to resume (`true`), else a new
    /// one. Whatever else holds the name (a planted link, someone's hard link) is unlinked, never
    /// followed; when it cannot be removed (another user's entry in a sticky directory), the
    /// refusal says so.
    pub fn resume_or_create(&self, name: &[u8]) -> io::Result<(File, bool)> {
        match self.open_resume(name) {
            Ok(Some(file)) => return Ok((file, true)),
            Ok(None) => {}
            Err(err) if is_not_ours(&err) => self.remove(name).map_err(|_| err)?,
            Err(err) => return Err(err),
        }
        Ok((self.create_new(name)?, false))
    }

    /// The file `name` for writing from its start: created (0666 within the umask), or an
    /// existing regular file of ours with one link, truncated only after `fstat` checked it.
    pub fn create_or_truncate(&self, name: &[u8]) -> io::Result<File> {
        let name = component(name)?;
        let flags = file_flags() | OFlag::O_WRONLY | OFlag::O_CREAT;
        let fd = openat(&self.fd, name, flags, Mode::from_bits_truncate(0o666))
            .map_err(|errno| self.open_failed(name, errno))?;
        let file = File::from(fd);
        check_ours(&file, name)?;
        ftruncate(&file, 0)?;
        Ok(file)
    }

    /// Why opening `name` failed: a symlink under it is a [`NotOurs`] refusal (`ELOOP`, or
    /// `EACCES` where the kernel protects links in sticky directories), else the error itself.
    fn open_failed(&self, name: &OsStr, errno: Errno) -> io::Error {
        let is_link = matches!(
            fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW),
            Ok(stat) if kind_of(&stat) == EntryKind::Symlink
        );
        match is_link {
            true => not_ours(name, "a symlink".into()),
            false => errno.into(),
        }
    }

    /// A symlink `name` holding `target` (any text: it is never followed here).
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        let name = component(name)?;
        symlinkat(OsStr::from_bytes(target), &self.fd, name)?;
        Ok(())
    }

    /// Renames `from` to `to`, both in this directory; `to` is replaced if it exists (a symlink
    /// under `to` is replaced itself, not what it points at).
    pub fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let (from, to) = (component(from)?, component(to)?);
        renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }

    /// Whether `name` is (still) the open `file`, not something renamed or planted over it since.
    pub fn holds(&self, name: &[u8], file: &File) -> bool {
        let Ok(name) = component(name) else { return false };
        match (fstat(file), fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)) {
            (Ok(open), Ok(named)) => open.st_ino == named.st_ino && open.st_dev == named.st_dev,
            _ => false,
        }
    }

    /// Removes the file or link `name` (never a directory, never what a link points at).
    pub fn remove(&self, name: &[u8]) -> io::Result<()> {
        let name = component(name)?;
        unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        io::{Read, Write},
        os::unix::fs::{symlink, PermissionsExt},
    };

    use super::*;

    fn victim(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("victim");
        fs::write(&path, b"secret").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn names_with_slashes_dots_or_nul_are_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = Dir::open(scratch.path()).unwrap();
        for name in [&b""[..], b".", b"..", b"a/b", b"/etc", b"a\0b"] {
            let err = dir.create_new(name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let scratch = tempfile::tempdir().unwrap();
        let victim = victim(scratch.path());
        symlink(&victim, scratch.path().join("part")).unwrap();
        let dir = Dir::open(scratch.path()).unwrap();
        assert!(dir.create_new(b"part").is_err());
        assert!(is_not_ours(&dir.open_resume(b"part").unwrap_err()));
        assert!(is_not_ours(&dir.create_or_truncate(b"part").unwrap_err()));
        let (mut file, resumed) = dir.resume_or_create(b"part").unwrap();
        assert!(!resumed);
        file.write_all(b"copied").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"secret");
        assert_eq!(fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(dir.kind(b"part").unwrap(), Some(EntryKind::File));
    }

    #[test]
    fn a_hard_link_is_not_resumed_nor_truncated() {
        let scratch = tempfile::tempdir().unwrap();
        let victim = victim(scratch.path());
        fs::hard_link(&victim, scratch.path().join("part")).unwrap();
        let dir = Dir::open(scratch.path()).unwrap();
        assert!(is_not_ours(&dir.open_resume(b"part").unwrap_err()));
        assert!(is_not_ours(&dir.create_or_truncate(b"part").unwrap_err()));
        assert_eq!(fs::read(&victim).unwrap(), b"secret");
    }

    #[test]
    fn a_file_of_ours_is_resumed_and_truncated() {
        let scratch = tempfile::tempdir().unwrap();
        fs::write(scratch.path().join("part"), b"half").unwrap();
        let dir = Dir::open(scratch.path()).unwrap();
        let (mut file, resumed) = dir.resume_or_create(b"part").unwrap();
        let mut held = String::new();
        file.read_to_string(&mut held).unwrap();
        assert!(resumed);
        assert_eq!(held, "half");
        drop(dir.create_or_truncate(b"part").unwrap());
        assert_eq!(fs::read(scratch.path().join("part")).unwrap(), b"");
    }

    #[test]
    fn a_symlinked_subdirectory_is_not_entered() {
        let scratch = tempfile::tempdir().unwrap();
        fs::create_dir(scratch.path().join("real")).unwrap();
        symlink(scratch.path().join("real"), scratch.path().join("link")).unwrap();
        let dir = Dir::open(scratch.path()).unwrap();
        assert!(dir.subdir(b"real").is_ok());
        assert!(dir.subdir(b"link").is_err());
        assert_eq!(dir.kind(b"link").unwrap(), Some(EntryKind::Symlink));
        dir.symlink(b"/etc/passwd", b"new").unwrap();
        dir.rename(b"new", b"link").unwrap();
        assert_eq!(
            fs::read_link(scratch.path().join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(scratch.path().join("real").is_dir());
    }
}
