//! The partial files of `remora cp`, as both ends name them: a copy is written to
//! `.NAME.remora-KEY.part` beside its target, and resumes only after the SHA-256 of what the
//! partial file holds matches the source's first bytes. The name is made here, beside the
//! file I/O that creates it relative to a directory handle ([`crate::Dir`]), never through a link.

use sha2::{Digest, Sha256};

/// `.NAME.remora-KEY.part` for the target file name `name`; KEY is the first 12 hex digits of
/// the SHA-256 of `key` (its parts one after another), so another source version or target gets
/// another name. A name in the same directory, never a path.
pub fn part_name(name: &[u8], key: &[&[u8]]) -> Vec<u8> {
    let mut digest = Sha256::new();
    key.iter().for_each(|part| digest.update(part));
    let key = data_encoding::HEXLOWER.encode(&digest.finalize()[..6]);
    let mut part = b".".to_vec();
    part.extend_from_slice(name);
    part.extend_from_slice(format!(".remora-{key}.part").as_bytes());
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_name_depends_on_the_source_version() {
        let a = part_name(b"f", &[b"1-2.0".as_slice(), b"src"]);
        let b = part_name(b"f", &[b"1-3.0".as_slice(), b"src"]);
        assert_ne!(a, b);
        assert!(a.starts_with(b".f.remora-") && a.ends_with(b".part"));
        assert!(!a.contains(&b'/'));
    }
}
