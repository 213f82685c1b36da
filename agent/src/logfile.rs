//! The daemon's log file with size-based rotation: `daemon.log` grows to a limit, then becomes
//! `daemon.log.1` (older ones shift up to `.KEEP`, the oldest is deleted) and a fresh file starts.
//! A daemon that runs for months therefore holds at most `(KEEP + 1) × limit` bytes of log.
//!
//! Every file is created 0600: logs name sessions and clients, which are the user's business.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Size at which the log is rotated.
pub(crate) const MAX_LOG_BYTES: u64 = 10 << 20;
/// Rotated files kept besides the current one.
pub(crate) const KEEP_ROTATED: usize = 5;

/// An append-only log file that rotates itself by size.
pub(crate) struct RotatingLog {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    keep: usize,
}

impl RotatingLog {
    /// Opens (appending to) the log at `path`.
    pub(crate) fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        let file = open_private(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            written,
            max_bytes,
            keep,
        })
    }

    /// `daemon.log` → `daemon.log.1` → … → `daemon.log.KEEP` (dropped), then a fresh file.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..self.keep).rev() {
            if numbered(n).exists() {
                fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_private(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            // A log that cannot rotate keeps appending rather than losing lines.
            if let Err(err) = self.rotate() {
                let _ = writeln!(self.file, "cannot rotate {}: {err}", self.path.display());
            }
        }
        let written = self.file.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn rotates_by_size_keeping_a_bounded_number_of_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut log = RotatingLog::open(&path, 100, 2).unwrap();
        for line in 0..20 {
            writeln!(log, "line {line:02} {}", "x".repeat(30)).unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["daemon.log", "daemon.log.1", "daemon.log.2"]);
        for name in &names {
            let meta = fs::metadata(dir.path().join(name)).unwrap();
            assert!(meta.len() <= 100, "{name}: {}", meta.len());
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
        let newest = fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with(&format!("line 19 {}\n", "x".repeat(30))), "{newest}");
        let older = fs::read_to_string(dir.path().join("daemon.log.1")).unwrap();
        assert!(older.contains("line 17"), "{older}");
    }

    #[test]
    fn reopening_continues_counting_from_the_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        fs::write(&path, "x".repeat(90)).unwrap();
        let mut log = RotatingLog::open(&path, 100, 1).unwrap();
        log.write_all(&[b'y'; 20]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "y".repeat(20));
        assert_eq!(
            fs::read_to_string(dir.path().join("daemon.log.1")).unwrap(),
            "x".repeat(90)
        );
    }
}
