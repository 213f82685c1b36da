//! A session's disk work, done in order, off the session's lock and off the async workers.
//!
//! Every change to a session returns its effects; `Session` turns them into [`Job`]s on this
//! queue. One task per session takes them in order and runs each batch on a blocking thread, so
//! a 1 GiB journal being saved never holds up `ls`, a stream or the reaper, and an ack file is
//! never overwritten by an older position. The task ends once the session is dropped and its
//! queue is empty, so a daemon that stops waits for every session's last save.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{
    journal::{Data, Entry, EntryKind},
    spill::{Spill, SpillRead},
    store::{CommandSnapshot, SessionStore, StoredSession},
};

/// One piece of disk work.
#[derive(Debug)]
pub enum Job {
    SaveSession(StoredSession),
    SaveCommand(CommandSnapshot),
    SaveAck {
        command: u64,
        seq: u64,
        offset: u64,
        fully_acked: bool,
    },
    ReleaseSpill(usize),
    /// Run the `on_job_end` hook, once the jobs before it are done.
    Notice(super::notice::Notice),
    /// The session is removed for good: delete its files; later jobs are moot.
    Remove,
    /// Says when every job before it is done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending side, held by the session.
pub type Queue = mpsc::UnboundedSender<Job>;

/// The receiving side and what it works on.
#[derive(Debug)]
pub struct Persister {
    jobs: mpsc::UnboundedReceiver<Job>,
    worker: Worker,
}

#[derive(Debug)]
struct Worker {
    session: String,
    store: Option<SessionStore>,
    spill: Arc<Spill>,
    removed: bool,
    /// Commands saved in this batch, synced at its end.
    unsynced: Vec<u64>,
}

/// A queue and the persister that serves it.
pub fn channel(session: &str, store: Option<SessionStore>, spill: Arc<Spill>) -> (Queue, Persister) {
    let (tx, jobs) = mpsc::unbounded_channel();
    let worker = Worker {
        session: session.to_string(),
        store,
        spill,
        removed: false,
        unsynced: Vec::new(),
    };
    (tx, Persister { jobs, worker })
}

impl Persister {
    /// Carries out jobs until the session is gone and the queue is empty.
    pub async fn run(mut self) {
        while let Some(first) = self.jobs.recv().await {
            let mut batch = vec![first];
            while let Ok(job) = self.jobs.try_recv() {
                batch.push(job);
            }
            // Hooks start once the saves queued before them are done, off the blocking thread.
            let (notices, batch): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| matches!(j, Job::Notice(_)));
            let batch = coalesce(batch);
            let mut worker = self.worker;
            worker = match tokio::task::spawn_blocking(move || {
                for job in batch {
                    worker.carry_out(job);
                }
                // After the batch's flushes were answered: a command's end is reported once its
                // journal is in place, and reaches the disk right after.
                worker.sync_saved();
                worker
            })
            .await
            {
                Ok(worker) => worker,
                Err(err) => {
                    tracing::error!("a session's disk work panicked: {err}");
                    return;
                }
            };
            self.worker = worker;
            for notice in notices {
                if let Job::Notice(notice) = notice {
                    notice.spawn(self.worker.session.clone());
                }
            }
        }
    }
}

impl Worker {
    /// Syncs the journals this batch saved.
    fn sync_saved(&mut self) {
        let unsynced = std::mem::take(&mut self.unsynced);
        let Some(store) = self.store.as_ref().filter(|_| !self.removed) else {
            return;
        };
        for command in unsynced {
            if let Err(err) = store.sync_command(command) {
                tracing::error!(session = %self.session, "{err}; a crash of the machine now may lose that command's output");
            }
        }
    }

    fn carry_out(&mut self, job: Job) {
        if let Job::Flush(done) = job {
            let _ = done.send(());
            return;
        }
        if self.removed {
            return;
        }
        let result = match (&job, &self.store) {
            (Job::Flush(_), _) | (Job::Notice(_), _) => Ok(()),
            (Job::ReleaseSpill(bytes), _) => self
                .spill
                .release(*bytes)
                .map_err(|err| crate::AgentError::io("cannot empty the spill file", self.spill.path())(err)),
            (Job::Remove, store) => {
                if let Some(store) = store {
                    store.remove();
                }
                self.spill.discard();
                self.removed = true;
                Ok(())
            }
            (_, None) => Ok(()),
            (Job::SaveSession(stored), Some(store)) => store.save_session(stored),
            (Job::SaveCommand(snapshot), Some(store)) => {
                self.unsynced.push(snapshot.id());
                store.save_command(snapshot, |e| load(&self.spill, e))
            }
            (
                Job::SaveAck {
                    command,
                    seq,
                    offset,
                    fully_acked,
                },
                Some(store),
            ) => store.save_ack(*command, *seq, *offset, *fully_acked),
        };
        if let Err(err) = result {
            tracing::error!(session = %self.session, "{err}; the session's saved state may be behind (it matters only if the agent restarts)");
        }
    }
}

/// Drops acknowledgement saves that a later one in the same batch supersedes: a client acks every
/// few hundred KiB, and only the newest position needs to reach the disk.
fn coalesce(batch: Vec<Job>) -> Vec<Job> {
    let mut last = std::collections::HashMap::new();
    for (index, job) in batch.iter().enumerate() {
        if let Job::SaveAck { command, .. } = job {
            last.insert(*command, index);
        }
    }
    batch
        .into_iter()
        .enumerate()
        .filter(|(index, job)| match job {
            Job::SaveAck { command, .. } => last.get(command) == Some(index),
            _ => true,
        })
        .map(|(_, job)| job)
        .collect()
}

/// The entry with its bytes in memory, read back from the spill file if needed; `None` when the
/// chunk was released meanwhile (acknowledged, so nobody needs it). A chunk that cannot be read
/// back is reported as dropped, never silently skipped.
pub fn load(spill: &Spill, mut entry: Entry) -> Option<Entry> {
    let EntryKind::Output {
        data: Data::Spilled(chunk),
        stream,
    } = entry.kind
    else {
        return Some(entry);
    };
    entry.kind = match spill.read(chunk) {
        Ok(SpillRead::Bytes(bytes)) => EntryKind::Output {
            stream,
            data: Data::Memory(bytes),
        },
        Ok(SpillRead::Released) => return None,
        Err(err) => {
            tracing::error!("cannot read spilled output back from {}: {err}", spill.path().display());
            EntryKind::Dropped {
                first_seq: entry.seq,
                bytes: chunk.len as u64,
            }
        }
    };
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(command: u64, seq: u64) -> Job {
        Job::SaveAck {
            command,
            seq,
            offset: seq,
            fully_acked: false,
        }
    }

    fn acks(jobs: &[Job]) -> Vec<(u64, u64)> {
        jobs.iter()
            .filter_map(|job| match job {
                Job::SaveAck { command, seq, .. } => Some((*command, *seq)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_the_newest_ack_of_each_command_is_written() {
        let batch = vec![ack(1, 1), ack(2, 5), Job::ReleaseSpill(3), ack(1, 2), ack(1, 3)];
        let kept = coalesce(batch);
        assert_eq!(acks(&kept), [(2, 5), (1, 3)]);
        assert_eq!(kept.len(), 3, "other jobs stay, in order");
    }
}
