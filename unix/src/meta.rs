//! Copied attributes, set through a descriptor, and reading a file's first bytes.
//!
//! Invariant: the mode a copy gets never holds set-uid, set-gid or sticky bits, whatever the
//! other side sent: those are the bits that turn a copied file into a way in.

use std::{fs::File, io, os::fd::AsFd, os::unix::fs::FileExt};

use nix::sys::{
    stat::{fchmod, futimens, Mode},
    time::TimeSpec,
};

/// Bytes read per step by [`read_prefix`].
const READ_STEP: usize = 256 * 1024;

/// The attributes a copy takes from its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedMeta {
    /// The source's mode bits as the other side sent them (any bits; see [`copied_mode`]).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    pub mtime_nanos: u32,
}

/// The permission bits a copy gets: the source's `0o777` bits, within this process's umask
/// unless `preserve` (`-p`). Set-uid, set-gid and sticky bits are never copied.
pub fn copied_mode(mode: u32, preserve: bool) -> u32 {
    match preserve {
        true => mode & 0o777,
        false => mode & 0o777 & !umask(),
    }
}

/// Gives the open file or directory `fd` its copied mode ([`copied_mode`]) and, with
/// `preserve`, its mtime (the access time too, as `cp -p` does).
pub fn set_meta(fd: impl AsFd, meta: CopiedMeta, preserve: bool) -> io::Result<()> {
    let mode = Mode::from_bits_truncate(copied_mode(meta.mode, preserve) as _);
    fchmod(fd.as_fd(), mode)?;
    if preserve {
        let time = TimeSpec::new(meta.mtime, i64::from(meta.mtime_nanos.min(999_999_999)) as _);
        futimens(fd.as_fd(), &time, &time)?;
    }
    Ok(())
}

/// Feeds the first `len` bytes of `file` to `consume`, in steps (positional reads: the file's
/// offset is left alone).
pub fn read_prefix(file: &File, len: u64, mut consume: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; READ_STEP.min(len as usize)];
    let mut at = 0;
    while at < len {
        let want = ((len - at) as usize).min(READ_STEP);
        file.read_exact_at(&mut buf[..want], at)?;
        consume(&buf[..want]);
        at += want as u64;
    }
    Ok(())
}

/// This process's umask, read without changing it (`umask(2)` can only set it, which would race
/// with other threads creating files).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .and_then(|mask| u32::from_str_radix(mask.trim(), 8).ok())
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        os::unix::fs::{MetadataExt, PermissionsExt},
    };

    use super::*;

    #[test]
    fn special_bits_are_never_copied() {
        for mode in [0o4755, 0o2755, 0o1777, 0o7777] {
            assert_eq!(copied_mode(mode, true), mode & 0o777);
            assert_eq!(copied_mode(mode, false) & 0o7000, 0);
        }
        let file = tempfile::tempfile().unwrap();
        let meta = CopiedMeta {
            mode: 0o6755,
            mtime: 1_000_000_000,
            mtime_nanos: 5,
        };
        set_meta(&file, meta, true).unwrap();
        let stat = file.metadata().unwrap();
        assert_eq!(stat.permissions().mode() & 0o7777, 0o755);
        assert_eq!((stat.mtime(), stat.mtime_nsec()), (1_000_000_000, 5));
    }

    #[test]
    fn a_prefix_is_read_in_order() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..READ_STEP * 2 + 7).map(|i| i as u8).collect();
        file.write_all(&data).unwrap();
        let len = READ_STEP + 3;
        let mut read = Vec::new();
        read_prefix(&file, len as u64, |bytes| read.extend_from_slice(bytes)).unwrap();
        assert_eq!(read, data[..len]);
    }
}
