//! What an agent binary needs from a host, read from its ELF headers: the CPU (`e_machine`) and
//! the C library (the program interpreter, and the highest `GLIBC_x.y` symbol version it was
//! linked against, from `.gnu.version_r`). That decides, before anything is copied, whether a
//! build can run on a host.
//!
//! Invariant: every read is bounds-checked against the file; a truncated or odd file gives
//! `None`, never a panic.

use super::platform::GlibcVersion;

/// What an executable needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The CPU in `uname -m` spelling.
    pub machine: &'static str,
    /// The C library it is linked against.
    pub libc: LibcNeed,
}

/// The C library an executable needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibcNeed {
    /// Statically linked: no program interpreter, runs on any Linux with the right CPU.
    Static,
    /// glibc, at least this version (`None`: no versioned glibc symbol at all).
    Glibc(Option<GlibcVersion>),
    /// musl's loader.
    Musl,
    /// Another program interpreter.
    Other(String),
}

const PT_INTERP: u32 = 3;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// Reads what `binary` needs, or `None` when it is not an ELF executable.
pub fn needs(binary: &[u8]) -> Option<Needs> {
    let elf = Elf::parse(binary)?;
    let machine = machine_name(elf.u16(18)?);
    let libc = match elf.interpreter() {
        None => LibcNeed::Static,
        Some(interp) if interp.contains("ld-musl") => LibcNeed::Musl,
        Some(interp) if interp.contains("ld-linux") || interp.contains("ld64.so") => {
            LibcNeed::Glibc(elf.highest_glibc())
        }
        Some(interp) => LibcNeed::Other(interp),
    };
    Some(Needs { machine, libc })
}

/// The CPU of an ELF `e_machine`, in `uname -m` spelling.
fn machine_name(machine: u16) -> &'static str {
    match machine {
        0x03 => "i686",
        0x28 => "armv7l",
        0x3e => "x86_64",
        0xb7 => "aarch64",
        0xf3 => "riscv64",
        0x15 => "ppc64le",
        0x16 => "s390x",
        _ => "an unknown CPU",
    }
}

/// An ELF file's bytes with its class and byte order.
struct Elf<'a> {
    bytes: &'a [u8],
    wide: bool,
    big_endian: bool,
}

impl<'a> Elf<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.get(..4)? != b"\x7fELF" {
            return None;
        }
        let wide = match bytes.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big_endian = *bytes.get(5)? == 2;
        Some(Self {
            bytes,
            wide,
            big_endian,
        })
    }

    fn slice(&self, at: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(at).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(start..end)
    }

    fn u16(&self, at: u64) -> Option<u16> {
        let raw: [u8; 2] = self.slice(at, 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        })
    }

    fn u32(&self, at: u64) -> Option<u32> {
        let raw: [u8; 4] = self.slice(at, 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    }

    fn u64(&self, at: u64) -> Option<u64> {
        let raw: [u8; 8] = self.slice(at, 8)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(raw)
        } else {
            u64::from_le_bytes(raw)
        })
    }

    /// A word-sized field: 8 bytes in a 64-bit file, 4 in a 32-bit one.
    fn word(&self, at: u64) -> Option<u64> {
        if self.wide {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }

    /// A NUL-terminated string at `at`.
    fn c_str(&self, at: u64) -> Option<&'a [u8]> {
        let rest = self.bytes.get(usize::try_from(at).ok()?..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..end])
    }

    /// The program interpreter (`PT_INTERP`), if the executable has one.
    fn interpreter(&self) -> Option<String> {
        let (phoff, phentsize, phnum) = if self.wide {
            (self.u64(0x20)?, self.u16(0x36)?, self.u16(0x38)?)
        } else {
            (u64::from(self.u32(0x1c)?), self.u16(0x2a)?, self.u16(0x2c)?)
        };
        (0..u64::from(phnum)).find_map(|i| {
            let header = phoff.checked_add(i.checked_mul(u64::from(phentsize))?)?;
            if self.u32(header)? != PT_INTERP {
                return None;
            }
            let (offset, size) = if self.wide {
                (self.u64(header + 8)?, self.u64(header + 32)?)
            } else {
                (u64::from(self.u32(header + 4)?), u64::from(self.u32(header + 16)?))
            };
            let text = self.slice(offset, size)?;
            let text = text.split(|&b| b == 0).next()?;
            Some(String::from_utf8_lossy(text).into_owned())
        })
    }

    /// The highest `GLIBC_x.y` among the versions `.gnu.version_r` requires.
    fn highest_glibc(&self) -> Option<GlibcVersion> {
        let (shoff, shentsize, shnum) = if self.wide {
            (self.u64(0x28)?, self.u16(0x3a)?, self.u16(0x3c)?)
        } else {
            (u64::from(self.u32(0x20)?), self.u16(0x2e)?, self.u16(0x30)?)
        };
        let section = |i: u64| shoff.checked_add(i.checked_mul(u64::from(shentsize))?);
        // sh_type at 4; sh_offset, sh_link, sh_info at 24/40/44 (64-bit) or 16/24/28 (32-bit).
        let (off_at, link_at, info_at) = if self.wide { (24, 40, 44) } else { (16, 24, 28) };
        let verneed = (0..u64::from(shnum))
            .filter_map(section)
            .find(|&header| self.u32(header + 4) == Some(SHT_GNU_VERNEED))?;
        let strings = self.word(section(u64::from(self.u32(verneed + link_at)?))? + off_at)?;
        let mut entry = self.word(verneed + off_at)?;
        let mut highest = None;
        // Verneed and Vernaux entries are 16 bytes in both classes; each links to the next.
        for _ in 0..self.u32(verneed + info_at)? {
            let mut aux = entry.checked_add(u64::from(self.u32(entry + 8)?))?;
            for _ in 0..self.u16(entry + 2)? {
                let name = self.c_str(strings.checked_add(u64::from(self.u32(aux + 8)?))?)?;
                let version = std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| name.strip_prefix("GLIBC_"))
                    .and_then(|number| number.parse::<GlibcVersion>().ok());
                highest = highest.max(version);
                aux = aux.checked_add(u64::from(self.u32(aux + 12)?))?;
            }
            entry = entry.checked_add(u64::from(self.u32(entry + 12)?))?;
        }
        highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_is_read() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needs = needs(&me).unwrap();
        assert_eq!(
            needs.machine,
            std::env::consts::ARCH
                .replace("x86", "i686")
                .replace("i686_64", "x86_64")
        );
        let LibcNeed::Glibc(Some(version)) = needs.libc else {
            panic!("a test binary built for the gnu target needs glibc: {needs:?}");
        };
        assert!(version >= "2.2.5".parse().unwrap(), "{version}");
    }

    #[test]
    fn other_files_are_not_executables_and_truncated_ones_do_not_panic() {
        assert_eq!(needs(b"#!/bin/sh\n"), None);
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for len in [4, 20, 64, 200, 4096] {
            let _ = needs(&me[..len]);
        }
    }
}
