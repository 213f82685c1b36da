//! Downloads (`GetPath`, `ReadFile`): describing a tree, and a file's bytes from an offset with
//! the SHA-256 of the whole file.
//!
//! Invariants:
//! - A listing never follows a symlink (it is listed as one, with its target text) and stops at
//!   [`MAX_LISTED`] paths with a refusal, not a partial answer.
//! - A [`Reader`] keeps one batch ([`READ_AHEAD`] chunks) read ahead of the connection, so the
//!   disk and the link work at the same time while memory stays bounded; the connection's
//!   outbox paces it.
//! - The hash covers the whole file: on a resume the bytes before the offset are hashed first
//!   (a blocking job, stopped when the connection ends).

use std::{
    fs::{self, File},
    os::unix::{
        ffi::OsStringExt,
        fs::{FileExt, MetadataExt},
    },
    path::{Path, PathBuf},
};

use remora_wire::{FileData, FileEnd, GetPath, ListedPath, PathKind, PathList, PathMeta};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{blocking, check, hash_prefix, io_err, resolve, stopped, wire_path, TransferError, CHUNK, MAX_LISTED};

/// Chunks one read job reads before handing them to the connection.
const READ_AHEAD: usize = 4;

/// `GetPath`: the path and, recursively, a directory's tree (a blocking job). Relative paths
/// start at `base`.
pub(crate) async fn list(
    request: GetPath,
    base: PathBuf,
    cancel: CancellationToken,
) -> Result<PathList, TransferError> {
    let root = resolve(&base, &request.path);
    blocking(&root.clone(), move || list_now(&root, request.recursive, &cancel)).await
}

fn list_now(root: &Path, recursive: bool, cancel: &CancellationToken) -> Result<PathList, TransferError> {
    let meta = fs::symlink_metadata(root).map_err(io_err("read", root))?;
    let mut entries = vec![ListedPath {
        path: Vec::new(),
        meta: path_meta(root, &meta),
    }];
    if meta.is_dir() {
        if !recursive {
            return Err(TransferError::Conflict(format!(
                "{} is a directory; copy it with -r",
                root.display()
            )));
        }
        walk(root, Path::new(""), &mut entries, cancel)?;
    } else if meta.is_file() {
        File::open(root).map_err(io_err("read", root))?;
    }
    Ok(PathList {
        root: wire_path(root),
        entries,
    })
}

fn walk(
    root: &Path,
    relative: &Path,
    entries: &mut Vec<ListedPath>,
    cancel: &CancellationToken,
) -> Result<(), TransferError> {
    let dir = root.join(relative);
    let listing = fs::read_dir(&dir).map_err(io_err("list", &dir))?;
    let mut names: Vec<_> = listing.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    names.sort();
    for name in names {
        check(cancel)?;
        let path = relative.join(&name);
        let full = root.join(&path);
        let meta = fs::symlink_metadata(&full).map_err(io_err("read", &full))?;
        if entries.len() >= MAX_LISTED {
            return Err(TransferError::TooMany {
                root: root.to_path_buf(),
            });
        }
        entries.push(ListedPath {
            path: wire_path(&path),
            meta: path_meta(&full, &meta),
        });
        if meta.is_dir() {
            walk(root, &path, entries, cancel)?;
        }
    }
    Ok(())
}

/// A path's kind and attributes as the wire has them.
fn path_meta(path: &Path, meta: &fs::Metadata) -> PathMeta {
    let kind = if meta.is_dir() {
        PathKind::Dir
    } else if meta.file_type().is_symlink() {
        PathKind::Symlink
    } else {
        PathKind::File
    };
    PathMeta {
        kind,
        size: if kind == PathKind::File { meta.len() } else { 0 },
        mode: meta.mode() & 0o7777,
        mtime: meta.mtime(),
        mtime_nanos: meta.mtime_nsec() as u32,
        link_target: match kind {
            PathKind::Symlink => fs::read_link(path)
                .map(|t| t.into_os_string().into_vec())
                .unwrap_or_default(),
            _ => Vec::new(),
        },
    }
}

/// What a [`Reader`] has next.
pub(crate) enum Read {
    /// The next chunks, in order.
    Data(Vec<FileData>),
    /// Every byte was read: the file's size and SHA-256.
    End(FileEnd),
}

/// `ReadFile`: a file's bytes from an offset, read by blocking jobs one batch ahead.
pub(crate) struct Reader {
    path: PathBuf,
    ahead: Ahead,
}

enum Ahead {
    /// A read job under way.
    Reading(JoinHandle<(ReadState, Result<Vec<FileData>, TransferError>)>),
    /// The file is read to its end.
    Ended(ReadState),
    /// The end was reported, or a job failed.
    Gone,
}

/// A file being read; moved into each read job and handed back.
struct ReadState {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    at: u64,
    eof: bool,
    cancel: CancellationToken,
}

impl Reader {
    /// Opens `path` and hashes its bytes before `offset` (capped at its size), then starts
    /// reading from there.
    pub(crate) async fn open(path: PathBuf, offset: u64, cancel: CancellationToken) -> Result<Reader, TransferError> {
        let state = blocking(&path.clone(), move || ReadState::open(path, offset, cancel)).await?;
        let path = state.path.clone();
        Ok(Reader {
            path,
            ahead: Ahead::Reading(read_ahead(state)),
        })
    }

    /// The next chunks, or the end; a read error ends the reader.
    pub(crate) async fn next(&mut self) -> Result<Read, TransferError> {
        loop {
            match std::mem::replace(&mut self.ahead, Ahead::Gone) {
                Ahead::Reading(job) => {
                    let (state, read) = job.await.map_err(|err| stopped(&self.path, &err))?;
                    let chunks = read?;
                    self.ahead = match state.eof {
                        true => Ahead::Ended(state),
                        false => Ahead::Reading(read_ahead(state)),
                    };
                    if !chunks.is_empty() {
                        return Ok(Read::Data(chunks));
                    }
                }
                Ahead::Ended(state) => {
                    return Ok(Read::End(FileEnd {
                        size: state.at,
                        sha256: data_encoding::HEXLOWER.encode(&state.hasher.finalize()),
                    }))
                }
                Ahead::Gone => return Err(TransferError::Cancelled),
            }
        }
    }
}

/// Starts the job that reads the next batch.
fn read_ahead(mut state: ReadState) -> JoinHandle<(ReadState, Result<Vec<FileData>, TransferError>)> {
    tokio::task::spawn_blocking(move || {
        let read = state.read_batch();
        (state, read)
    })
}

impl ReadState {
    fn open(path: PathBuf, offset: u64, cancel: CancellationToken) -> Result<ReadState, TransferError> {
        let file = File::open(&path).map_err(io_err("read", &path))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let offset = offset.min(size);
        let hasher = hash_prefix(&file, offset, &cancel).map_err(|e| e.naming("read", &path))?;
        Ok(ReadState {
            file,
            path,
            hasher,
            at: offset,
            eof: false,
            cancel,
        })
    }

    /// Up to [`READ_AHEAD`] chunks from where the last batch ended; `eof` once a read finds none.
    fn read_batch(&mut self) -> Result<Vec<FileData>, TransferError> {
        let mut chunks = Vec::with_capacity(READ_AHEAD);
        while chunks.len() < READ_AHEAD {
            check(&self.cancel)?;
            let mut buf = vec![0u8; CHUNK];
            let n = self
                .file
                .read_at(&mut buf, self.at)
                .map_err(io_err("read", &self.path))?;
            if n == 0 {
                self.eof = true;
                break;
            }
            buf.truncate(n);
            self.hasher.update(&buf);
            chunks.push(FileData {
                offset: self.at,
                data: buf,
            });
            self.at += n as u64;
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(reader: &mut Reader) -> (Vec<u8>, FileEnd) {
        let mut bytes = Vec::new();
        loop {
            match reader.next().await.unwrap() {
                Read::Data(chunks) => chunks.into_iter().for_each(|c| {
                    assert_eq!(c.offset, bytes.len() as u64 + 3);
                    bytes.extend(c.data)
                }),
                Read::End(end) => return (bytes, end),
            }
        }
    }

    #[tokio::test]
    async fn a_file_is_read_from_its_offset_and_hashed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..CHUNK * READ_AHEAD * 2 + 5).map(|i| i as u8).collect();
        fs::write(&path, &data).unwrap();
        let mut reader = Reader::open(path, 3, CancellationToken::new()).await.unwrap();
        let (bytes, end) = read_all(&mut reader).await;
        assert!(bytes == data[3..]);
        assert_eq!(end.size, data.len() as u64);
        assert_eq!(end.sha256, data_encoding::HEXLOWER.encode(&Sha256::digest(&data)));
    }

    #[tokio::test]
    async fn reading_stops_once_the_connection_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, vec![0u8; CHUNK * READ_AHEAD * 3]).unwrap();
        let cancel = CancellationToken::new();
        let mut reader = Reader::open(path, 0, cancel.clone()).await.unwrap();
        assert!(matches!(reader.next().await, Ok(Read::Data(_))));
        cancel.cancel();
        let mut reads = 0;
        let stopped = loop {
            match reader.next().await {
                Ok(Read::Data(_)) => reads += 1,
                other => break other,
            }
        };
        assert!(reads <= 1, "at most the batch read ahead before the end");
        assert!(matches!(stopped, Err(TransferError::Cancelled)));
    }

    #[test]
    fn a_listing_names_links_as_links_and_refuses_directories_without_r() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/a"), b"a").unwrap();
        std::os::unix::fs::symlink("sub/a", dir.path().join("link")).unwrap();
        let cancel = CancellationToken::new();
        let list = list_now(dir.path(), true, &cancel).unwrap();
        let paths: Vec<_> = list.entries.iter().map(|e| (e.path.clone(), e.meta.kind)).collect();
        assert_eq!(
            paths,
            [
                (b"".to_vec(), PathKind::Dir),
                (b"link".to_vec(), PathKind::Symlink),
                (b"sub".to_vec(), PathKind::Dir),
                (b"sub/a".to_vec(), PathKind::File),
            ]
        );
        assert_eq!(list.entries[1].meta.link_target, b"sub/a");
        assert!(matches!(
            list_now(dir.path(), false, &cancel),
            Err(TransferError::Conflict(_))
        ));
        cancel.cancel();
        assert!(matches!(
            list_now(dir.path(), true, &cancel),
            Err(TransferError::Cancelled)
        ));
    }
}
