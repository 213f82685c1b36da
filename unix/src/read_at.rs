//! Reading a stretch of a file into a fresh buffer without zeroing it first: the spill and
//! stored-input readers hand out 256 KiB chunks, and zeroing each before the kernel overwrites
//! it cost a replay a few percent of a core.

use std::{fs::File, io, os::fd::AsRawFd};

/// Reads exactly `len` bytes of `file` at `offset` into a new buffer (`UnexpectedEof` when the
/// file ends first).
pub fn read_exact_at(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let filled = buf.len();
        let at = nix::libc::off_t::try_from(offset + filled as u64)
            .map_err(|_| io::Error::other("offset past the largest file"))?;
        let spare = &mut buf.spare_capacity_mut()[..len - filled];
        // SAFETY: pread writes at most `spare.len()` bytes into the vector's spare capacity
        // through a raw pointer; no reference to uninitialised bytes is made.
        let read = unsafe { nix::libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match read {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            // SAFETY: the kernel initialised these `n` bytes, right after the initialised part.
            n => unsafe { buf.set_len(filled + n as usize) },
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_the_stretch_asked_for_or_says_the_file_ended() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        assert_eq!(read_exact_at(&file, 1000, 123_456).unwrap(), &data[123_456..124_456]);
        assert_eq!(read_exact_at(&file, 0, 5).unwrap(), b"");
        let err = read_exact_at(&file, 10, 299_995).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
