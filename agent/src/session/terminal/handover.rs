//! A terminal in its handover form: the master's descriptor, the shell's pid, the numbering of
//! both streams and the output ring (raw bytes with their seqs). The new program rebuilds the
//! screen model by feeding the ring into a fresh emulator, so a reattach after an upgrade
//! repaints what the last `RING_BYTES` of output drew, and a client that resumes within the ring
//! loses and repeats nothing.

use std::{
    os::fd::{FromRawFd, OwnedFd, RawFd},
    sync::Arc,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{core::TermCore, model::Model, screen::Screen, ShellProcess, Terminal};

/// One parked terminal, handed over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandedTerminal {
    pub generation: u64,
    pub pid: i32,
    pub master: RawFd,
    pub rows: u16,
    pub cols: u16,
    pub scrollback: usize,
    pub last_seq: u64,
    pub input_seq: u64,
    /// Output kept for resuming clients, oldest first.
    pub ring: Vec<(u64, serde_bytes::ByteBuf)>,
}

impl Terminal {
    /// The terminal's handover form, when it is parked with its shell still running.
    pub fn handover_form(&self) -> Option<HandedTerminal> {
        let parked = self.process.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        let core = self.lock();
        if !parked || core.exit().is_some() {
            return None;
        }
        let (rows, cols) = core.size();
        let (last_seq, ring) = core.ring();
        Some(HandedTerminal {
            generation: self.generation,
            pid: self.pid,
            master: self.master_fd(),
            rows,
            cols,
            scrollback: self.scrollback,
            last_seq,
            input_seq: self.input.try_lock().map_or(0, |seq| *seq),
            ring: ring
                .map(|(seq, bytes)| (*seq, serde_bytes::ByteBuf::from(bytes.to_vec())))
                .collect(),
        })
    }

    /// A terminal handed over by a previous program of this process.
    ///
    /// # Safety
    /// `handed.master` must be the open master descriptor handed over to this program alone, and
    /// `handed.pid` a child of this process.
    pub unsafe fn adopt(handed: HandedTerminal) -> std::io::Result<Arc<Self>> {
        // SAFETY: guaranteed by the caller.
        let master = unsafe { OwnedFd::from_raw_fd(handed.master) };
        let process = ShellProcess::adopt(handed.pid)?;
        let ring: Vec<(u64, Bytes)> = handed
            .ring
            .into_iter()
            .map(|(seq, bytes)| (seq, Bytes::from(bytes.into_vec())))
            .collect();
        let mut screen = Screen::new(handed.rows, handed.cols, handed.scrollback);
        for (_, bytes) in &ring {
            screen.process(bytes);
        }
        let model = Model::new(screen, handed.last_seq);
        let core = TermCore::from_ring(handed.rows, handed.cols, handed.last_seq, ring);
        let parts = (core, model);
        let terminal = Self::assemble(handed.generation, handed.pid, master, process, parts, handed.scrollback)?;
        *terminal.input.try_lock().expect("a new terminal's input is free") = handed.input_seq;
        Ok(terminal)
    }
}
