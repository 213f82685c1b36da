//! `remora cp`: creating paths on the host (`PutPath`, `FileData`, `FileEnd`) and reading them
//! (`GetPath`, `ReadFile`). The file work is the transfer service's ([`crate::transfer`], where
//! the copy's invariants are); this handler resolves where relative paths start, turns frames
//! into service calls and results into frames.
//!
//! Invariants:
//! - `PutPath`, `GetPath` and `ReadFile` run as streams of the connection, so its request loop
//!   keeps reading (heartbeats, the peer's end) while the service works; `FileData` and `FileEnd`
//!   are queued in order on their upload's [`Feeder`] from the request loop.
//! - An upload's feeder is in [`Uploads`] exactly while its stream runs.
//! - Remote paths are plain paths: relative ones start at the session's runspace directory (or
//!   home), `..` included, as with scp.

use remora_unix::LockRecover;
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use remora_wire::{
    AgentBody, ErrorCode, FileAck, FileData, FileEnd, GetPath, PathDone, PutPath, PutReady, ReadFile, RequestId,
    SessionRef,
};

use super::{Ctx, Refusal};
use crate::transfer::{
    bytes_path,
    download::{self, Read, Reader},
    upload::{self, Done, Feed, Feeder, Next, Opened, PushError, UploadFile},
    wire_path, TransferError,
};

/// Uploads open on one connection, by the request id of their `PutPath`.
#[derive(Default)]
pub(crate) struct Uploads(Mutex<HashMap<RequestId, Feeder>>);

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Feeder>> {
        self.0.lock_or_recover()
    }

    fn take(&self, id: RequestId) -> Option<Feeder> {
        self.lock().remove(&id)
    }

    /// Puts a feeder back after a frame, unless its upload ended meanwhile.
    fn put_back(&self, id: RequestId, feeder: Feeder) {
        if !feeder.is_closed() {
            self.lock().insert(id, feeder);
        }
    }

    /// Opens upload `id` to frames until the returned guard is dropped.
    fn register(&self, id: RequestId, feeder: Feeder) -> Registered<'_> {
        self.lock().insert(id, feeder);
        Registered { uploads: self, id }
    }
}

/// An upload's place in [`Uploads`]; dropping it closes the upload to further frames.
struct Registered<'a> {
    uploads: &'a Uploads,
    id: RequestId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.uploads.take(self.id);
    }
}

/// The refusal a client sees for a failed transfer step; messages about the host's files start
/// with its name.
fn refusal(ctx: &Ctx, err: TransferError) -> Refusal {
    let message = match err.on_host() {
        true => format!("{}: {err}", ctx.daemon.host),
        false => err.to_string(),
    };
    Refusal::new(err.code(), message)
}

/// Ends a stream: a transfer stopped because its connection ended has nobody to answer.
fn settle(ctx: &Ctx, result: Result<(), TransferError>) -> Result<(), Refusal> {
    match result {
        Ok(()) | Err(TransferError::Cancelled) => Ok(()),
        Err(err) => Err(refusal(ctx, err)),
    }
}

/// Where relative remote paths start: the session's runspace directory, else home.
fn base_dir(ctx: &Ctx, session: &Option<SessionRef>) -> Result<PathBuf, Refusal> {
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/".into())
    };
    match session {
        None => Ok(home()),
        Some(reference) => {
            let session = ctx.find_session(reference)?;
            Ok(session.runspace_dir().unwrap_or_else(home))
        }
    }
}

/// `PutPath` (a stream): a directory or symlink at once, or a file received to its end.
pub(crate) async fn put(ctx: Arc<Ctx>, id: RequestId, request: PutPath) -> Result<(), Refusal> {
    let base = base_dir(&ctx, &request.session)?;
    let opened = upload::open(request, base, ctx.closed.clone()).await;
    match opened {
        Ok(Opened::Done(made)) => done(&ctx, id, made).await,
        Ok(Opened::File(file)) => {
            let (feeder, feed) = upload::feed(file.offset());
            let _open = ctx.uploads.register(id, feeder);
            let ready = PutReady {
                path: wire_path(file.target()),
                offset: file.offset(),
            };
            ctx.send(id, AgentBody::PutReady(ready)).await?;
            receive(&ctx, id, file, feed).await
        }
        Err(err) => settle(&ctx, Err(err)),
    }
}

/// Writes an upload's data as it arrives, acknowledging progress, until its `FileEnd`. When
/// the connection ends first, what it had queued is written before the partial file is let go.
async fn receive(ctx: &Ctx, id: RequestId, file: Box<UploadFile>, mut feed: Feed) -> Result<(), Refusal> {
    let mut file = *file;
    loop {
        let next = tokio::select! {
            next = feed.next() => next,
            _ = ctx.closed.cancelled() => {
                let _ = file.write(feed.queued()).await;
                return Ok(());
            }
        };
        match next {
            Next::Data(batch) => match file.write(batch).await {
                Ok((back, ack)) => {
                    file = back;
                    if let Some(offset) = ack {
                        let _ = ctx.send(id, AgentBody::FileAck(FileAck { offset })).await;
                    }
                }
                Err(err) => return settle(ctx, Err(err)),
            },
            Next::End(end) => {
                return match file.finish(end).await {
                    Ok(made) => done(ctx, id, made).await,
                    Err(err) => settle(ctx, Err(err)),
                };
            }
            Next::Closed => return Ok(()),
        }
    }
}

/// `FileData` of an upload: queued for its stream at its offset.
pub(crate) async fn data(ctx: &Ctx, id: RequestId, data: FileData) {
    let Some(mut feeder) = ctx.uploads.take(id) else {
        return ctx
            .send_error(id, ErrorCode::InvalidRequest, "file data for no open upload".into())
            .await;
    };
    match feeder.push(data).await {
        Ok(()) => ctx.uploads.put_back(id, feeder),
        // The upload ends here; its partial file stays for a resume.
        Err(PushError::Past { offset, received }) => {
            let message = format!("file data at {offset} past the {received} bytes written; resend");
            ctx.send_error(id, ErrorCode::InvalidRequest, message).await;
        }
        Err(PushError::Closed) => {
            ctx.send_error(id, ErrorCode::InvalidRequest, "file data for no open upload".into())
                .await
        }
    }
}

/// `FileEnd` of an upload: queued behind its data; the upload's stream checks it and answers.
pub(crate) async fn end(ctx: &Ctx, id: RequestId, end: FileEnd) -> Result<(), Refusal> {
    let no_upload = || Refusal::new(ErrorCode::InvalidRequest, "end of file for no open upload");
    let feeder = ctx.uploads.take(id).ok_or_else(no_upload)?;
    feeder.end(end).await.map_err(|_| no_upload())
}

async fn done(ctx: &Ctx, id: RequestId, made: Done) -> Result<(), Refusal> {
    let done = PathDone {
        path: wire_path(&made.path),
        bytes: made.bytes,
    };
    ctx.send(id, AgentBody::PathDone(done)).await?;
    Ok(())
}

/// `GetPath` (a stream): describe a path and, recursively, a directory's tree.
pub(crate) async fn get(ctx: Arc<Ctx>, id: RequestId, request: GetPath) -> Result<(), Refusal> {
    let base = base_dir(&ctx, &request.session)?;
    let list = match download::list(request, base, ctx.closed.clone()).await {
        Ok(list) => list,
        Err(err) => return settle(&ctx, Err(err)),
    };
    ctx.send(id, AgentBody::PathList(list)).await?;
    Ok(())
}

/// `ReadFile` (a stream): the file's bytes from `offset`, then its size and SHA-256. The
/// connection's bounded outbox paces it.
pub(crate) async fn read(ctx: Arc<Ctx>, id: RequestId, request: ReadFile) -> Result<(), Refusal> {
    let path = bytes_path(&request.path);
    let result = async {
        let mut reader = Reader::open(path, request.offset, ctx.closed.clone()).await?;
        loop {
            match reader.next().await? {
                Read::Data(chunks) => {
                    for chunk in chunks {
                        tokio::select! {
                            sent = ctx.send(id, AgentBody::FileData(chunk)) => sent.map_err(|_| TransferError::Cancelled)?,
                            _ = ctx.closed.cancelled() => return Err(TransferError::Cancelled),
                        }
                    }
                }
                Read::End(end) => {
                    ctx.send(id, AgentBody::FileEnd(end))
                        .await
                        .map_err(|_| TransferError::Cancelled)?;
                    return Ok(());
                }
            }
        }
    };
    settle(&ctx, result.await)
}
