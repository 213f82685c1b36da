//! The partial files of `remora cp`, as both ends make, check and finish them: a copy is
//! written to `.NAME.remora-KEY.part` beside its target, resumes only after the SHA-256 of what
//! the partial file holds matches the source's first bytes, and gets the source's mode (and,
//! with `-p`, mtime) before it is renamed into place.

use std::{
    ffi::OsStr,
    fs::{self, File},
    io,
    os::unix::{ffi::OsStrExt, fs::FileExt, fs::PermissionsExt},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::PathMeta;

/// Bytes read per step while hashing.
const HASH_STEP: usize = 256 * 1024;

/// `.NAME.remora-KEY.part` beside `target`; KEY is the first 12 hex digits of the SHA-256 of
/// `key` (its parts one after another), so another source version or target gets another name.
pub fn part_path(target: &Path, key: &[&[u8]]) -> PathBuf {
    let name = target.file_name().map(OsStr::as_bytes).unwrap_or(b"file");
    let mut digest = Sha256::new();
    key.iter().for_each(|part| digest.update(part));
    let key = data_encoding::HEXLOWER.encode(&digest.finalize()[..6]);
    let mut part = b".".to_vec();
    part.extend_from_slice(name);
    part.extend_from_slice(format!(".remora-{key}.part").as_bytes());
    target.with_file_name(OsStr::from_bytes(&part))
}

/// Feeds the first `len` bytes of `file` to `hasher`.
pub fn hash_prefix(file: &File, len: u64, hasher: &mut Sha256) -> io::Result<()> {
    let mut buf = vec![0u8; HASH_STEP];
    let mut at = 0;
    while at < len {
        let want = ((len - at) as usize).min(HASH_STEP);
        file.read_exact_at(&mut buf[..want], at)?;
        hasher.update(&buf[..want]);
        at += want as u64;
    }
    Ok(())
}

/// Gives `path` the copied mode: exactly with `preserve`, else within this process's umask; and
/// with `preserve` the source's mtime (of a symlink itself, never its target).
pub fn apply_meta(path: &Path, meta: &PathMeta, preserve: bool) -> io::Result<()> {
    let mode = match preserve {
        true => meta.mode & 0o7777,
        false => meta.mode & 0o777 & !umask(),
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    if preserve {
        let time = nix::sys::time::TimeSpec::new(meta.mtime, meta.mtime_nanos as i64);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &time,
            &time,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )?;
    }
    Ok(())
}

/// This process's umask, read without changing it (`umask(2)` can only set it, which would race
/// with other threads creating files).
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .and_then(|mask| u32::from_str_radix(mask.trim(), 8).ok())
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_partial_name_depends_on_the_source_version() {
        let a = part_path(Path::new("/t/f"), &[b"1-2.0".as_slice(), b"src"]);
        let b = part_path(Path::new("/t/f"), &[b"1-3.0".as_slice(), b"src"]);
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/t")));
        assert!(a.file_name().unwrap().as_bytes().starts_with(b".f.remora-"));
    }

    #[test]
    fn a_prefix_hash_is_the_hash_of_the_first_bytes() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..HASH_STEP * 2 + 7).map(|i| i as u8).collect();
        file.write_all(&data).unwrap();
        let len = HASH_STEP + 3;
        let mut hasher = Sha256::new();
        hash_prefix(&file, len as u64, &mut hasher).unwrap();
        assert_eq!(hasher.finalize(), Sha256::digest(&data[..len]));
    }
}
