//! A session's spill file: output past the memory limit in `spill` buffering mode. Private to
//! the user (0600 in a 0700 directory), emptied whenever every spilled chunk is released, and
//! deleted with the session.
//!
//! The file has its own lock, so reading and writing it never happens under the session's lock.
//! Emptying the file starts a new *generation*: a chunk is addressed by generation and offset,
//! so a reader holding an entry that was acknowledged and released meanwhile gets
//! [`SpillRead::Released`], never the bytes of a newer chunk written at the same offset.

use remora_unix::LockRecover;
use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use bytes::Bytes;
use uuid::Uuid;

/// Where one chunk lives in the spill file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillRef {
    pub generation: u64,
    pub offset: u64,
    pub len: usize,
}

/// What reading a chunk back found.
#[derive(Debug)]
pub enum SpillRead {
    Bytes(Bytes),
    /// The chunk was released (acknowledged or dropped) and the file emptied since.
    Released,
}

/// A session's lazily created spill file.
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    inner: Mutex<Option<SpillFile>>,
}

#[derive(Debug)]
struct SpillFile {
    file: fs::File,
    len: u64,
    /// Bytes written in this generation and not released yet.
    live: u64,
    generation: u64,
}

impl Spill {
    /// The spill file `<dir>/<session id>.spill`, created on the first append.
    pub fn new(dir: &Path, session: Uuid) -> Self {
        Self {
            path: dir.join(format!("{session}.spill")),
            inner: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<SpillFile>> {
        self.inner.lock_or_recover()
    }

    /// Appends a chunk; returns where it went.
    pub fn append(&self, data: &[u8]) -> io::Result<SpillRef> {
        let mut inner = self.lock();
        if inner.is_none() {
            *inner = Some(SpillFile::create(&self.path)?);
        }
        let spill = inner.as_mut().expect("just created");
        let offset = spill.len;
        spill.file.write_all_at(data, offset)?;
        spill.len += data.len() as u64;
        spill.live += data.len() as u64;
        Ok(SpillRef {
            generation: spill.generation,
            offset,
            len: data.len(),
        })
    }

    /// Reads a chunk back.
    pub fn read(&self, chunk: SpillRef) -> io::Result<SpillRead> {
        let inner = self.lock();
        let Some(spill) = inner.as_ref().filter(|s| s.generation == chunk.generation) else {
            return Ok(SpillRead::Released);
        };
        let buf = remora_unix::read_exact_at(&spill.file, chunk.len, chunk.offset)?;
        Ok(SpillRead::Bytes(Bytes::from(buf)))
    }

    /// Marks `bytes` of spilled chunks as no longer needed; empties the file once nothing in it is.
    pub fn release(&self, bytes: usize) -> io::Result<()> {
        let mut inner = self.lock();
        let Some(spill) = inner.as_mut() else { return Ok(()) };
        spill.live = spill.live.saturating_sub(bytes as u64);
        if spill.live > 0 || spill.len == 0 {
            return Ok(());
        }
        spill.generation += 1;
        spill.len = 0;
        spill.file.set_len(0)
    }

    /// Deletes the file (the session is removed); a later append starts a new one.
    pub fn discard(&self) {
        if self.lock().take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file stands, for a handover (which keeps the file): `None` if there is none.
    pub fn handover_state(&self) -> Option<SpillState> {
        self.lock().as_ref().map(|spill| SpillState {
            len: spill.len,
            live: spill.live,
            generation: spill.generation,
        })
    }

    /// The spill file a previous program of this process handed over, as it stood.
    pub fn adopt(dir: &Path, session: Uuid, state: Option<SpillState>) -> io::Result<Self> {
        let spill = Self::new(dir, session);
        if let Some(state) = state {
            let file = fs::OpenOptions::new().read(true).write(true).open(&spill.path)?;
            *spill.lock() = Some(SpillFile {
                file,
                len: state.len,
                live: state.live,
                generation: state.generation,
            });
        }
        Ok(spill)
    }
}

/// A spill file's bookkeeping, as handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpillState {
    pub len: u64,
    pub live: u64,
    pub generation: u64,
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.discard();
    }
}

impl SpillFile {
    fn create(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            file,
            len: 0,
            live: 0,
            generation: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn bytes(read: SpillRead) -> Bytes {
        match read {
            SpillRead::Bytes(bytes) => bytes,
            SpillRead::Released => panic!("chunk released"),
        }
    }

    #[test]
    fn chunks_round_trip_and_the_file_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(&dir.path().join("spill"), Uuid::new_v4());
        let a = spill.append(b"hello ").unwrap();
        let b = spill.append(b"world").unwrap();
        assert_eq!(&bytes(spill.read(b).unwrap())[..], b"world");
        assert_eq!(&bytes(spill.read(a).unwrap())[..], b"hello ");
        let path = spill.path().to_path_buf();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(spill);
        assert!(!path.exists());
    }

    #[test]
    fn a_released_chunk_is_never_read_as_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path(), Uuid::new_v4());
        let old = spill.append(b"old").unwrap();
        spill.release(3).unwrap();
        assert_eq!(
            fs::metadata(spill.path()).unwrap().len(),
            0,
            "emptied once nothing is live"
        );
        let new = spill.append(b"new").unwrap();
        assert_eq!(new.offset, old.offset);
        assert!(matches!(spill.read(old).unwrap(), SpillRead::Released));
        assert_eq!(&bytes(spill.read(new).unwrap())[..], b"new");
    }

    #[test]
    fn the_file_is_kept_while_any_chunk_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path(), Uuid::new_v4());
        spill.append(b"aa").unwrap();
        let b = spill.append(b"bb").unwrap();
        spill.release(2).unwrap();
        assert_eq!(&bytes(spill.read(b).unwrap())[..], b"bb");
    }
}
