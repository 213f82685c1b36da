//! Uploads (`PutPath`, `FileData`, `FileEnd`): a directory or symlink made at once, a file
//! written to its partial name, checked and renamed into place.
//!
//! Invariants:
//! - Nothing half-written appears under a real name: a file's bytes go to a temporary name
//!   beside the target (`.NAME.remora-KEY.part`), the SHA-256 of the whole file is compared with
//!   the client's, and only then is it renamed into place. A mismatch or a failed write removes
//!   the temporary file; a broken link leaves it, so the next attempt resumes it.
//! - The temporary name depends on the target and the source's size and mtime (`source_key`):
//!   a later `cp` of the same source finds it and continues from its length, after hashing what
//!   it holds; a changed source starts afresh.
//! - An upload holds an flock on its partial file. A reconnecting client waits briefly for its
//!   old connection to let go and resumes; a second client copying the same source to the same
//!   target at the same time gets a fresh name of its own. Writes are positional (at the frame's
//!   offset) in any case.
//! - Files are written by the agent, so as the user and under the agent's umask (the user's).
//! - The target's directory is opened once and the target is made relative to it
//!   ([`remora_unix::Dir`]), so a link another local user plants under the target's or the
//!   partial file's name is replaced or refused, never written through or chmod-ed. Mode and
//!   mtime are set through the descriptor and never carry set-uid, set-gid or sticky bits.
//! - Data waits for the disk in a [`Feed`] bounded by bytes ([`QUEUED_BYTES`]), written in
//!   batches of about [`ACK_STEP`] by blocking jobs; the client's window does the rest.

use std::{
    collections::VecDeque,
    fs::{self, File},
    io,
    os::unix::{ffi::OsStrExt, fs::FileExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use nix::fcntl::{Flock, FlockArg};
use remora_unix::{part_name, set_meta, CopiedMeta, Dir, EntryKind, WriteBack};
use remora_wire::{FileData, FileEnd, PathKind, PathMeta, PutPath};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{blocking, hash_prefix, io_err, resolve, TransferError};

/// Upload progress between acknowledgements, and about the bytes one write job takes.
const ACK_STEP: u64 = 1024 * 1024;
/// Most bytes of one upload waiting for the disk (a larger frame waits alone).
pub(crate) const QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Most frames of one upload waiting for the disk, whatever their size.
const QUEUED_FRAMES: usize = 64;
/// How long an upload waits for another one to let go of the same partial file (the old
/// connection of a client that reconnected, not yet noticed gone) before using a fresh name.
const PART_LOCK_WAIT: Duration = Duration::from_secs(3);
/// Pause between two tries of a partial file's lock.
const PART_LOCK_RETRY: Duration = Duration::from_millis(50);

/// A path that is complete: made at once (a directory, a symlink) or renamed into place.
#[derive(Debug)]
pub(crate) struct Done {
    pub path: PathBuf,
    /// File bytes written by this request (0 for directories and links).
    pub bytes: u64,
}

/// What a `PutPath` led to.
pub(crate) enum Opened {
    Done(Done),
    /// A file to receive: its partial file is open and locked, resumed from [`UploadFile::offset`].
    File(Box<UploadFile>),
}

/// `PutPath`: make a directory or symlink, or open (and for a resume, hash) a file's partial
/// file. Relative paths start at `base`.
pub(crate) async fn open(request: PutPath, base: PathBuf, cancel: CancellationToken) -> Result<Opened, TransferError> {
    let dest = resolve(&base, &request.dest);
    let (request, place) = blocking(&dest, move || {
        let place = Place::for_request(&request, &base)?;
        Ok((request, place))
    })
    .await?;
    let target = place.target.clone();
    match request.meta.kind {
        PathKind::Dir => blocking(&target, move || place.make_dir(&request))
            .await
            .map(Opened::Done),
        PathKind::Symlink => blocking(&target, move || place.make_symlink(&request))
            .await
            .map(Opened::Done),
        PathKind::File => open_file(request, place, cancel)
            .await
            .map(|file| Opened::File(Box::new(file))),
        PathKind::Unknown => Err(TransferError::UnknownKind),
    }
}

/// Where an uploaded path goes: `name` in the directory `dir`, opened once.
struct Place {
    dir: Dir,
    name: Vec<u8>,
    target: PathBuf,
    /// What holds the name now.
    existing: Option<EntryKind>,
}

impl Place {
    /// The target of `request` (inside `dest` when it is a directory or ends in `/`).
    fn for_request(request: &PutPath, base: &Path) -> Result<Place, TransferError> {
        let dest = resolve(base, &request.dest);
        let dest_is_dir = fs::metadata(&dest).is_ok_and(|m| m.is_dir());
        let target = match &request.name {
            Some(name) if dest_is_dir || request.dest.ends_with(b"/") => dest.join(std::ffi::OsStr::from_bytes(name)),
            Some(_) if request.into_dir => {
                return Err(TransferError::Conflict(format!(
                    "{} is not a directory; several sources need a directory to copy into",
                    dest.display()
                )));
            }
            _ => dest,
        };
        let mut place = match &request.within {
            Some(root) => Place::within(&resolve(base, root), target)?,
            None => Place::open(target)?,
        };
        place.existing = place.dir.kind(&place.name).map_err(io_err("read", &place.target))?;
        Ok(place)
    }

    /// `target` as a name in its parent directory, opened by path (the user's own request).
    fn open(target: PathBuf) -> Result<Place, TransferError> {
        let name = target.file_name().map(|n| n.as_bytes().to_vec());
        let Some(name) = name.filter(|n| n != b"..") else {
            let message = format!("{} names no file to create; name one", target.display());
            return Err(TransferError::Conflict(message));
        };
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = Dir::open(parent).map_err(io_err("open directory", parent))?;
        Ok(Place {
            dir,
            name,
            target,
            existing: None,
        })
    }

    /// `target` inside the tree at `root` (made by an earlier request of the same copy): the
    /// root is opened by its path, each directory below it by name without following links.
    fn within(root: &Path, target: PathBuf) -> Result<Place, TransferError> {
        let outside = || TransferError::Outside {
            target: target.clone(),
            root: root.to_path_buf(),
        };
        let below = target.strip_prefix(root).map_err(|_| outside())?;
        let mut names = Vec::new();
        for component in below.components() {
            match component {
                std::path::Component::Normal(name) => names.push(name.as_bytes().to_vec()),
                _ => return Err(outside()),
            }
        }
        let Some(name) = names.pop() else {
            return Place::open(target);
        };
        let mut dir = Dir::open(root).map_err(io_err("open directory", root))?;
        let mut at = root.to_path_buf();
        for step in &names {
            at.push(std::ffi::OsStr::from_bytes(step));
            dir = dir.subdir(step).map_err(io_err("enter directory", &at))?;
        }
        Ok(Place {
            dir,
            name,
            target,
            existing: None,
        })
    }

    fn make_dir(self, request: &PutPath) -> Result<Done, TransferError> {
        let target = &self.target;
        match self.existing {
            Some(EntryKind::Dir) => {}
            Some(_) => {
                return Err(TransferError::Conflict(format!(
                    "cannot overwrite non-directory {} with a directory",
                    target.display()
                )));
            }
            None => self
                .dir
                .mkdir(&self.name, request.meta.mode & 0o777 | 0o700)
                .map_err(io_err("create directory", target))?,
        }
        // With -p the client sends each directory again after its contents, so its mtime sticks.
        if request.preserve {
            let dir = self.dir.subdir(&self.name);
            dir.and_then(|dir| set_meta(&dir, copied_meta(&request.meta), true))
                .map_err(io_err("set the mode and mtime of", target))?;
        }
        Ok(self.done(0))
    }

    fn make_symlink(self, request: &PutPath) -> Result<Done, TransferError> {
        let target = &self.target;
        if self.existing == Some(EntryKind::Dir) {
            return Err(TransferError::Conflict(format!(
                "cannot overwrite directory {} with a symlink",
                target.display()
            )));
        }
        let part = part_name(
            &self.name,
            &[request.source_key.as_bytes(), target.as_os_str().as_bytes()],
        );
        let _ = self.dir.remove(&part);
        let made = self
            .dir
            .symlink(&request.meta.link_target, &part)
            .and_then(|()| self.dir.rename(&part, &self.name));
        if let Err(err) = made {
            let _ = self.dir.remove(&part);
            return Err(io_err("create symlink", target)(err));
        }
        Ok(self.done(0))
    }

    fn done(self, bytes: u64) -> Done {
        Done {
            path: self.target,
            bytes,
        }
    }

    /// One try at the partial file `part`: opened (resumed only when it is a regular file of
    /// ours with one link; anything else under the name is replaced, never followed) and locked.
    fn try_lock(&self, part: &[u8]) -> io::Result<Attempt> {
        let (file, _) = self.dir.resume_or_create(part)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Still the file under that name (not one another upload renamed into place meanwhile).
            Ok(locked) if self.dir.holds(part, &locked) => Ok(Attempt::Locked(locked)),
            Ok(_) => Ok(Attempt::Replaced),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Attempt::Busy),
            Err((_, errno)) => Err(errno.into()),
        }
    }

    /// A partial file of this upload's own, for when another upload holds the shared one.
    fn fresh_part(&self, source_key: &str) -> io::Result<(Vec<u8>, Flock<File>)> {
        let fresh = part_name(
            &self.name,
            &[
                format!("{source_key}-{}", uuid::Uuid::new_v4()).as_bytes(),
                self.target.as_os_str().as_bytes(),
            ],
        );
        let file = self.dir.create_new(&fresh)?;
        let locked = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| errno)?;
        Ok((fresh, locked))
    }
}

/// How one try at a partial file's lock went.
enum Attempt {
    Locked(Flock<File>),
    /// Another upload renamed its file into place meanwhile: try the name again.
    Replaced,
    /// Another upload holds it.
    Busy,
}

/// The attributes an uploaded path takes from the client's request.
fn copied_meta(meta: &PathMeta) -> CopiedMeta {
    CopiedMeta {
        mode: meta.mode,
        mtime: meta.mtime,
        mtime_nanos: meta.mtime_nanos,
    }
}

/// Opens and locks the partial file (another upload holding it, two clients at once, gets a
/// fresh name after [`PART_LOCK_WAIT`]), then hashes what it already holds.
async fn open_file(request: PutPath, place: Place, cancel: CancellationToken) -> Result<UploadFile, TransferError> {
    let target = place.target.clone();
    if place.existing == Some(EntryKind::Dir) {
        return Err(TransferError::Conflict(format!(
            "cannot overwrite directory {} with a file",
            target.display()
        )));
    }
    let part = part_name(
        &place.name,
        &[request.source_key.as_bytes(), target.as_os_str().as_bytes()],
    );
    let deadline = tokio::time::Instant::now() + PART_LOCK_WAIT;
    let mut place = place;
    let (place, part, file) = loop {
        let name = part.clone();
        let (back, attempt) = blocking(&target, move || {
            let attempt = place.try_lock(&name);
            Ok((place, attempt))
        })
        .await?;
        place = back;
        match attempt.map_err(io_err("create", &target))? {
            Attempt::Locked(file) => break (place, part, file),
            Attempt::Replaced => continue,
            Attempt::Busy if tokio::time::Instant::now() < deadline => {
                tokio::select! {
                    _ = tokio::time::sleep(PART_LOCK_RETRY) => continue,
                    _ = cancel.cancelled() => return Err(TransferError::Cancelled),
                }
            }
            Attempt::Busy => {
                let key = request.source_key.clone();
                let (back, fresh) = blocking(&target, move || {
                    let fresh = place.fresh_part(&key);
                    Ok((place, fresh))
                })
                .await?;
                let (part, file) = fresh.map_err(io_err("create", &target))?;
                break (back, part, file);
            }
        }
    };
    blocking(&target, move || UploadFile::resume(request, place, part, file, cancel)).await
}

/// A file being uploaded to its partial name, locked (flock) so that no other upload writes it.
/// Moved into each blocking job that works on it and handed back.
pub(crate) struct UploadFile {
    file: Flock<File>,
    /// The target's directory, opened once; `part` and the target's name are names in it.
    dir: Dir,
    part: Vec<u8>,
    name: Vec<u8>,
    /// The target's path, for messages and the reply.
    target: PathBuf,
    hasher: Sha256,
    written: u64,
    /// Hands what is written to the disk as it comes, so the final `fsync` is short.
    write_back: WriteBack,
    started_at: u64,
    acked: u64,
    meta: PathMeta,
    preserve: bool,
}

impl UploadFile {
    /// Continues the partial file from its length (from 0 when it is longer than the source),
    /// hashing what it holds.
    fn resume(
        request: PutPath,
        place: Place,
        part: Vec<u8>,
        file: Flock<File>,
        cancel: CancellationToken,
    ) -> Result<UploadFile, TransferError> {
        let target = place.target;
        let mut offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        if offset > request.meta.size {
            offset = 0;
            file.set_len(0).map_err(io_err("write", &target))?;
        }
        let hasher = hash_prefix(&file, offset, &cancel).map_err(|e| e.naming("read the partial file of", &target))?;
        Ok(UploadFile {
            file,
            dir: place.dir,
            part,
            name: place.name,
            target,
            hasher,
            written: offset,
            write_back: WriteBack::from(offset),
            started_at: offset,
            acked: offset,
            meta: request.meta,
            preserve: request.preserve,
        })
    }

    /// Where the file goes.
    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    /// The bytes the partial file holds: where the client continues.
    pub(crate) fn offset(&self) -> u64 {
        self.written
    }

    /// Writes `batch` at the end of what is written (a blocking job) and says when the client
    /// is due an acknowledgement (every [`ACK_STEP`]). A failed write removes the partial file.
    /// A closed connection does not stop it: a batch is bounded by [`QUEUED_BYTES`], and what
    /// reached the host is worth keeping, so a resume sends only what never arrived.
    pub(crate) async fn write(self, batch: Vec<Chunk>) -> Result<(UploadFile, Option<u64>), TransferError> {
        let target = self.target.clone();
        blocking(&target, move || self.write_now(batch)).await
    }

    fn write_now(mut self, batch: Vec<Chunk>) -> Result<(UploadFile, Option<u64>), TransferError> {
        for chunk in batch {
            let fresh = chunk.fresh();
            if let Err(err) = self.file.write_all_at(fresh, self.written) {
                let _ = self.dir.remove(&self.part);
                return Err(io_err("write", &self.target)(err));
            }
            self.hasher.update(fresh);
            self.written += fresh.len() as u64;
        }
        self.write_back.written(&*self.file, self.written);
        let ack = (self.written >= self.acked + ACK_STEP).then_some(self.written);
        if let Some(offset) = ack {
            self.acked = offset;
        }
        Ok((self, ack))
    }

    /// `FileEnd`: checks size and SHA-256, then `fsync`, mode and mtime, and the rename into
    /// place (a blocking job). Any failure removes the partial file.
    pub(crate) async fn finish(self, end: FileEnd) -> Result<Done, TransferError> {
        let target = self.target.clone();
        blocking(&target, move || self.finish_now(end)).await
    }

    fn finish_now(self, end: FileEnd) -> Result<Done, TransferError> {
        let sha256 = data_encoding::HEXLOWER.encode(&self.hasher.clone().finalize());
        if self.written != end.size || sha256 != end.sha256 {
            let _ = self.dir.remove(&self.part);
            return Err(TransferError::Mismatch {
                target: self.target,
                written: self.written,
                sha256,
                size: end.size,
                expected: end.sha256,
            });
        }
        let finish = || -> io::Result<()> {
            self.file.sync_data()?;
            set_meta(&*self.file, copied_meta(&self.meta), self.preserve)?;
            self.dir.rename(&self.part, &self.name)
        };
        if let Err(err) = finish() {
            let _ = self.dir.remove(&self.part);
            return Err(io_err("write", &self.target)(err));
        }
        Ok(Done {
            bytes: self.written - self.started_at,
            path: self.target,
        })
    }
}

/// One data frame's bytes waiting for the disk, holding its share of the feed's room.
pub(crate) struct Chunk {
    data: Vec<u8>,
    /// Leading bytes the partial file already holds (a client resending after a reconnect).
    skip: usize,
    _room: OwnedSemaphorePermit,
}

impl Chunk {
    fn fresh(&self) -> &[u8] {
        &self.data[self.skip..]
    }
}

enum Item {
    Data(Chunk),
    End(FileEnd),
}

/// A `FileData` frame that cannot be taken.
#[derive(Debug)]
pub(crate) enum PushError {
    /// It starts past the bytes received so far: bytes are missing in between.
    Past { offset: u64, received: u64 },
    /// The upload has ended (it failed, or its connection is closing).
    Closed,
}

/// The request loop's end of an upload: takes its frames in order, trims what the partial file
/// already has, and waits while [`QUEUED_BYTES`] wait for the disk.
pub(crate) struct Feeder {
    tx: mpsc::Sender<Item>,
    room: Arc<Semaphore>,
    /// Bytes of the file received so far (written or waiting).
    received: u64,
}

/// The upload's end of the queue: batches for the write jobs, then the `FileEnd`.
pub(crate) struct Feed {
    rx: mpsc::Receiver<Item>,
    room: Arc<Semaphore>,
    /// An item taken while gathering a batch, for the next call.
    held: VecDeque<Item>,
}

/// What the upload does next.
pub(crate) enum Next {
    Data(Vec<Chunk>),
    End(FileEnd),
    /// The feeder is gone: the connection ended or refused a frame; the partial file stays.
    Closed,
}

/// A bounded queue for an upload whose partial file holds `offset` bytes.
pub(crate) fn feed(offset: u64) -> (Feeder, Feed) {
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    let room = Arc::new(Semaphore::new(QUEUED_BYTES));
    let feeder = Feeder {
        tx,
        room: room.clone(),
        received: offset,
    };
    let feed = Feed {
        rx,
        room,
        held: VecDeque::new(),
    };
    (feeder, feed)
}

impl Feeder {
    /// Queues a frame's new bytes, waiting for room.
    pub(crate) async fn push(&mut self, data: FileData) -> Result<(), PushError> {
        if data.offset > self.received {
            return Err(PushError::Past {
                offset: data.offset,
                received: self.received,
            });
        }
        let skip = ((self.received - data.offset) as usize).min(data.data.len());
        let len = data.data.len() - skip;
        if len == 0 {
            return match self.tx.is_closed() {
                true => Err(PushError::Closed),
                false => Ok(()),
            };
        }
        let share = len.min(QUEUED_BYTES) as u32;
        let room = self.room.clone().acquire_many_owned(share).await;
        let room = room.map_err(|_| PushError::Closed)?;
        let chunk = Chunk {
            data: data.data,
            skip,
            _room: room,
        };
        self.tx.send(Item::Data(chunk)).await.map_err(|_| PushError::Closed)?;
        self.received += len as u64;
        Ok(())
    }

    /// Queues the `FileEnd` behind the data.
    pub(crate) async fn end(self, end: FileEnd) -> Result<(), PushError> {
        self.tx.send(Item::End(end)).await.map_err(|_| PushError::Closed)
    }

    /// Whether the upload has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Feed {
    /// Everything queued now, without waiting: what arrived before the connection ended.
    pub(crate) fn queued(&mut self) -> Vec<Chunk> {
        let held = std::mem::take(&mut self.held).into_iter();
        let waiting = std::iter::from_fn(|| self.rx.try_recv().ok());
        held.chain(waiting)
            .filter_map(|item| match item {
                Item::Data(chunk) => Some(chunk),
                Item::End(_) => None,
            })
            .collect()
    }

    /// Waits for data (gathering what is queued, up to about [`ACK_STEP`] bytes) or the end.
    pub(crate) async fn next(&mut self) -> Next {
        let first = match self.held.pop_front() {
            Some(item) => item,
            None => match self.rx.recv().await {
                Some(item) => item,
                None => return Next::Closed,
            },
        };
        let mut batch = match first {
            Item::End(end) => return Next::End(end),
            Item::Data(chunk) => vec![chunk],
        };
        let mut bytes = batch[0].fresh().len() as u64;
        while bytes < ACK_STEP {
            match self.rx.try_recv() {
                Ok(Item::Data(chunk)) => {
                    bytes += chunk.fresh().len() as u64;
                    batch.push(chunk);
                }
                Ok(end) => {
                    self.held.push_back(end);
                    break;
                }
                Err(_) => break,
            }
        }
        Next::Data(batch)
    }
}

impl Drop for Feed {
    /// Wakes a feeder waiting for room: nothing will make room any more.
    fn drop(&mut self) {
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(offset: u64, len: usize) -> FileData {
        FileData {
            offset,
            data: vec![1; len],
        }
    }

    fn lens(next: Next) -> Vec<usize> {
        match next {
            Next::Data(batch) => batch.iter().map(|c| c.fresh().len()).collect(),
            _ => panic!("expected data"),
        }
    }

    #[tokio::test]
    async fn frames_are_trimmed_to_what_is_new_and_gathered_into_batches() {
        let (mut feeder, mut feed) = feed(100);
        feeder.push(frame(90, 30)).await.unwrap();
        feeder.push(frame(120, 10)).await.unwrap();
        feeder.push(frame(100, 20)).await.unwrap();
        assert!(matches!(
            feeder.push(frame(200, 1)).await,
            Err(PushError::Past {
                offset: 200,
                received: 130
            })
        ));
        feeder
            .end(FileEnd {
                size: 130,
                sha256: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(lens(feed.next().await), [20, 10], "a resent prefix is skipped");
        assert!(matches!(feed.next().await, Next::End(FileEnd { size: 130, .. })));
        assert!(matches!(feed.next().await, Next::Closed));
    }

    #[tokio::test]
    async fn a_feeder_waits_for_room_and_lets_go_when_the_upload_ends() {
        let (mut feeder, mut feed) = feed(0);
        feeder.push(frame(0, QUEUED_BYTES)).await.unwrap();
        {
            let waiting = feeder.push(frame(QUEUED_BYTES as u64, 1));
            tokio::pin!(waiting);
            let early = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
            assert!(early.is_err(), "the feed is full: the frame waits");
            let Next::Data(batch) = feed.next().await else {
                panic!("data")
            };
            drop(batch);
            waiting.await.unwrap();
        }
        drop(feed);
        assert!(matches!(
            feeder.push(frame(QUEUED_BYTES as u64 + 1, 1)).await,
            Err(PushError::Closed)
        ));
    }
}
