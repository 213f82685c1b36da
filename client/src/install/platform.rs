//! What a host runs on, asked in one exec round trip: the kernel and CPU (`uname -sm`) and the C
//! library (`getconf GNU_LIBC_VERSION`, else the first line of `ldd --version`, which names
//! musl on musl hosts).

use std::{fmt, str::FromStr};

/// A glibc version such as 2.17 or 2.2.5, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(u32, u32, u32);

impl GlibcVersion {
    /// The floor of the portable agent (and of Rust's `x86_64-unknown-linux-gnu`).
    pub const PORTABLE: GlibcVersion = GlibcVersion(2, 17, 0);
}

impl FromStr for GlibcVersion {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let mut numbers = text.split('.').map(|n| n.parse::<u32>().map_err(|_| ()));
        let major = numbers.next().ok_or(())??;
        let minor = numbers.next().ok_or(())??;
        let patch = numbers.next().transpose()?.unwrap_or(0);
        if numbers.next().is_some() {
            return Err(());
        }
        Ok(GlibcVersion(major, minor, patch))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlibcVersion(major, minor, 0) => write!(f, "{major}.{minor}"),
            GlibcVersion(major, minor, patch) => write!(f, "{major}.{minor}.{patch}"),
        }
    }
}

/// The host's C library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLibc {
    Glibc(GlibcVersion),
    Musl,
    /// Neither command named a C library; the text they printed, if any.
    Unknown(String),
}

impl fmt::Display for HostLibc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostLibc::Glibc(version) => write!(f, "glibc {version}"),
            HostLibc::Musl => f.write_str("musl"),
            HostLibc::Unknown(text) if text.is_empty() => f.write_str("no C library that remora could name"),
            HostLibc::Unknown(text) => write!(f, "an unknown C library ({text:?})"),
        }
    }
}

/// What a host runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlatform {
    /// The kernel, as `uname -s` says (`Linux`).
    pub system: String,
    /// The CPU in `uname -m` spelling, with BSD spellings mapped (`arm64` → `aarch64`).
    pub machine: String,
    pub libc: HostLibc,
}

impl fmt::Display for HostPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} with {}", self.system, self.machine, self.libc)
    }
}

/// The probe, for `sh -c`: line 1 `uname -sm`, line 2 the C library's own words.
pub const PROBE: &str = "uname -sm; { getconf GNU_LIBC_VERSION || ldd --version 2>&1; } 2>/dev/null | head -n 1";

/// Reads the probe's output; `None` when its first line is not `SYSTEM MACHINE`.
pub fn parse_probe(output: &str) -> Option<HostPlatform> {
    let mut lines = output.lines();
    let mut uname = lines.next()?.split_whitespace();
    let (system, machine) = (uname.next()?, uname.next()?);
    let machine = match machine {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "i386" | "i486" | "i586" => "i686",
        other => other,
    };
    let libc_line = lines.next().unwrap_or("").trim();
    Some(HostPlatform {
        system: system.to_string(),
        machine: machine.to_string(),
        libc: parse_libc(libc_line),
    })
}

/// `glibc 2.31` (getconf), `ldd (Debian GLIBC 2.31-13) 2.31`, `ldd (GNU libc) 2.17`, or
/// `musl libc (x86_64)`.
fn parse_libc(line: &str) -> HostLibc {
    let lower = line.to_ascii_lowercase();
    if lower.contains("musl") {
        return HostLibc::Musl;
    }
    let names_glibc = lower.starts_with("glibc ") || lower.contains("glibc") || lower.contains("gnu libc");
    match line.split_whitespace().last().map(str::parse) {
        Some(Ok(version)) if names_glibc => HostLibc::Glibc(version),
        _ => HostLibc::Unknown(line.chars().take(80).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc(second_line: &str) -> HostLibc {
        parse_probe(&format!("Linux x86_64\n{second_line}\n")).unwrap().libc
    }

    #[test]
    fn the_c_library_is_read_from_getconf_or_ldd() {
        let v = |text: &str| HostLibc::Glibc(text.parse().unwrap());
        assert_eq!(libc("glibc 2.31"), v("2.31"));
        assert_eq!(libc("ldd (Debian GLIBC 2.31-13+deb11u5) 2.31"), v("2.31"));
        assert_eq!(libc("ldd (GNU libc) 2.17"), v("2.17"));
        assert_eq!(libc("musl libc (x86_64)"), HostLibc::Musl);
        assert_eq!(libc(""), HostLibc::Unknown(String::new()));
        assert!(matches!(libc("something else 1.0"), HostLibc::Unknown(_)));
    }

    #[test]
    fn versions_compare_numerically() {
        let v = |text: &str| text.parse::<GlibcVersion>().unwrap();
        assert!(v("2.17") < v("2.31"));
        assert!(v("2.9") < v("2.17"));
        assert!(v("2.2.5") < v("2.3"));
        assert_eq!(v("2.17").to_string(), "2.17");
        assert_eq!(v("2.2.5").to_string(), "2.2.5");
        assert!("2".parse::<GlibcVersion>().is_err());
        assert!("2.x".parse::<GlibcVersion>().is_err());
    }

    #[test]
    fn machines_are_spelled_like_linux() {
        let host = parse_probe("Linux arm64\nglibc 2.36").unwrap();
        assert_eq!(host.machine, "aarch64");
        assert!(parse_probe("").is_none());
    }
}
