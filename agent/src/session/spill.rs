//! A session's spill file: output past the memory limit in `spill` buffering mode. Private to
//! the user (0600 in a 0700 directory), emptied whenever every spilled chunk is acknowledged,
//! and deleted with the session.

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use bytes::Bytes;
use uuid::Uuid;

/// An append-only file of output chunks.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    file: fs::File,
    len: u64,
}

impl SpillFile {
    /// Creates `<dir>/<session id>.spill`.
    pub fn create(dir: &Path, session: Uuid) -> io::Result<Self> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let path = dir.join(format!("{session}.spill"));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Self { path, file, len: 0 })
    }

    /// Appends a chunk; returns its offset.
    pub fn append(&mut self, data: &[u8]) -> io::Result<u64> {
        let offset = self.len;
        self.file.write_all_at(data, offset)?;
        self.len += data.len() as u64;
        Ok(offset)
    }

    /// Reads a chunk back.
    pub fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }

    /// Empties the file once nothing in it is needed.
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn chunks_round_trip_and_the_file_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let mut spill = SpillFile::create(&spill_dir, Uuid::new_v4()).unwrap();
        let a = spill.append(b"hello ").unwrap();
        let b = spill.append(b"world").unwrap();
        assert_eq!(&spill.read(b, 5).unwrap()[..], b"world");
        assert_eq!(&spill.read(a, 6).unwrap()[..], b"hello ");
        let path = fs::read_dir(&spill_dir).unwrap().next().unwrap().unwrap().path();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        spill.reset().unwrap();
        assert!(spill.is_empty());
        drop(spill);
        assert!(!path.exists());
    }
}
