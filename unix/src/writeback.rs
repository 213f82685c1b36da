//! Starting a file's write-back while it is still being written, so that the `fdatasync` a
//! copy makes before it renames the file into place finds little left to do.
//!
//! Without it the kernel holds a whole copy's data dirty in memory until the final sync, which
//! then waits for all of it at once: a gigabyte upload spent seconds in that one call. With it,
//! each [`WRITE_BACK_STEP`] written is handed to the disk at once (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE`, which starts the writes and does not wait for them), so the disk
//! works while the network does.
//!
//! It changes no durability promise: the final `fdatasync` still decides. A file system that
//! does not support the call just keeps its data dirty until then.

use std::os::fd::{AsFd, AsRawFd};

/// How much is written before its write-back is started.
pub const WRITE_BACK_STEP: u64 = 8 * 1024 * 1024;

/// The write-back of one file being written from `offset` on.
#[derive(Debug)]
pub struct WriteBack {
    /// Where the data whose write-back has not been started begins.
    started_to: u64,
    /// The file system refused the call once: leave everything to the final sync.
    unsupported: bool,
}

impl WriteBack {
    /// For a file whose first `offset` bytes were there before (a resumed partial file).
    pub fn from(offset: u64) -> Self {
        Self {
            started_to: offset,
            unsupported: false,
        }
    }

    /// Records that the file now holds `written` bytes, and starts the write-back of what is
    /// past the last start once that is at least [`WRITE_BACK_STEP`].
    pub fn written(&mut self, file: &impl AsFd, written: u64) {
        if self.unsupported || written < self.started_to + WRITE_BACK_STEP {
            return;
        }
        let (from, len) = (self.started_to, written - self.started_to);
        self.started_to = written;
        let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
            return;
        };
        let fd = file.as_fd().as_raw_fd();
        // SAFETY: sync_file_range only reads its integer arguments; `fd` is borrowed open.
        let result = unsafe { nix::libc::sync_file_range(fd, offset, len, nix::libc::SYNC_FILE_RANGE_WRITE) };
        // Only a head start for the final sync, which still reports any real failure.
        self.unsupported = result != 0;
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write, os::unix::fs::FileExt};

    use super::*;

    #[test]
    fn write_back_starts_once_per_step_and_never_changes_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut back = WriteBack::from(0);
        let block = vec![7u8; 1024 * 1024];
        let mut written = 0u64;
        for _ in 0..20 {
            file.write_all(&block).unwrap();
            written += block.len() as u64;
            back.written(&file, written);
        }
        assert_eq!(back.started_to, 16 * 1024 * 1024, "two steps of 8 MiB started");
        assert!(
            !back.unsupported,
            "a regular file on a local file system takes the call"
        );
        file.sync_data().unwrap();
        let mut tail = [0u8; 4];
        file.read_exact_at(&mut tail, written - 4).unwrap();
        assert_eq!(tail, [7; 4]);
    }

    #[test]
    fn a_resumed_file_counts_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let mut back = WriteBack::from(100);
        back.written(&file, 100 + WRITE_BACK_STEP - 1);
        assert_eq!(back.started_to, 100, "less than a step past the offset starts nothing");
    }
}
