//! Which agent binary `install` ships to a host: the first build that runs there, looked for
//! where remora's own builds land, or the one the user named with `--agent`. A build runs on a
//! host when its CPU matches and the C library it needs is there (for glibc: the host's version
//! is at least the highest `GLIBC_` symbol version the build needs).

use std::path::{Path, PathBuf};

use super::{
    elf::{self, LibcNeed, Needs},
    platform::{GlibcVersion, HostLibc, HostPlatform},
};

/// The name `scripts/dist` gives the portable agent for `machine`.
pub fn portable_name(machine: &str) -> String {
    format!("remora-agent-{machine}-linux-gnu")
}

/// A candidate read from disk.
pub struct Build {
    pub path: PathBuf,
    pub binary: Vec<u8>,
}

/// Where a build for `machine` may be, best first: the portable agent beside this `remora` or
/// in `../dist` from it (as `scripts/dist` leaves it for `target/debug/remora`), then the plain
/// `remora-agent` beside it, then on PATH.
pub fn candidates(machine: &str) -> Vec<PathBuf> {
    let portable = portable_name(machine);
    let mut paths = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        paths.push(dir.join(&portable));
        if let Some(parent) = dir.parent() {
            paths.push(parent.join("dist").join(&portable));
        }
        paths.push(dir.join("remora-agent"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path).map(|dir| dir.join("remora-agent")));
    }
    let mut seen = Vec::new();
    paths.retain(|path| {
        let fresh = path.is_file() && !seen.contains(path);
        seen.push(path.clone());
        fresh
    });
    paths
}

/// Why `needs` does not run on `host`, or `None` when it does.
pub fn mismatch(needs: &Needs, host: &HostPlatform) -> Option<String> {
    if host.system != "Linux" {
        return Some(format!("the host runs {}, not Linux", host.system));
    }
    if needs.machine != host.machine {
        return Some(format!("it is built for {}", needs.machine));
    }
    match (&needs.libc, &host.libc) {
        (LibcNeed::Static, _) | (LibcNeed::Musl, HostLibc::Musl) | (LibcNeed::Glibc(None), HostLibc::Glibc(_)) => None,
        (LibcNeed::Glibc(Some(need)), HostLibc::Glibc(have)) if need <= have => None,
        (LibcNeed::Glibc(Some(need)), HostLibc::Glibc(_)) => Some(format!("it needs glibc {need}")),
        (LibcNeed::Glibc(_), _) => Some("it needs glibc".into()),
        (LibcNeed::Musl, _) => Some("it needs musl".into()),
        (LibcNeed::Other(interp), _) => Some(format!("it needs the loader {interp}")),
    }
}

/// The first of `paths` that runs on `host`, or the refusal: every candidate with the reason it
/// does not fit, and how to build one that would.
pub fn choose(paths: &[PathBuf], host: &HostPlatform) -> Result<Build, String> {
    let mut rejected = Vec::new();
    for path in paths {
        let binary = match std::fs::read(path) {
            Ok(binary) => binary,
            Err(err) => {
                rejected.push(format!("{}: cannot read it ({err})", path.display()));
                continue;
            }
        };
        let why = match elf::needs(&binary) {
            None => "not a Linux (ELF) executable".to_string(),
            Some(needs) => match mismatch(&needs, host) {
                None => {
                    return Ok(Build {
                        path: path.clone(),
                        binary,
                    })
                }
                Some(why) => why,
            },
        };
        rejected.push(format!("{} ({why})", path.display()));
    }
    let found = if rejected.is_empty() {
        "no remora-agent next to remora, in ../dist from it, or on PATH".to_string()
    } else {
        format!("none of these runs there: {}", rejected.join("; "))
    };
    Err(format!("the host is {host}, and {found}; {}", next_step(host)))
}

/// How to get an agent that runs on `host`.
pub fn next_step(host: &HostPlatform) -> String {
    let machine = &host.machine;
    if host.system != "Linux" {
        return "remora-agent runs on Linux only".into();
    }
    match &host.libc {
        HostLibc::Glibc(version) if *version < GlibcVersion::PORTABLE => format!(
            "remora-agent needs glibc {} or newer (Rust's floor for Linux), so it cannot run there",
            GlibcVersion::PORTABLE
        ),
        HostLibc::Glibc(_) if machine == "x86_64" => format!(
            "build the portable agent (glibc {} or newer) with `scripts/dist` in remora's source tree, which \
             writes target/dist/{}",
            GlibcVersion::PORTABLE,
            portable_name(machine)
        ),
        HostLibc::Glibc(_) => format!(
            "build remora-agent for {machine}-unknown-linux-gnu (README: agents for other CPUs) and pass it with \
             --agent PATH"
        ),
        HostLibc::Musl => format!(
            "build a static remora-agent for {machine}-unknown-linux-musl (README: agents for other CPUs) and pass \
             it with --agent PATH"
        ),
        HostLibc::Unknown(_) => format!(
            "build a static remora-agent for {machine}-unknown-linux-musl (README: agents for other CPUs) and pass \
             it with --agent PATH"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(machine: &str, libc: HostLibc) -> HostPlatform {
        HostPlatform {
            system: "Linux".into(),
            machine: machine.into(),
            libc,
        }
    }

    fn glibc(text: &str) -> HostLibc {
        HostLibc::Glibc(text.parse().unwrap())
    }

    fn needs(machine: &'static str, libc: LibcNeed) -> Needs {
        Needs { machine, libc }
    }

    #[test]
    fn a_build_runs_where_cpu_and_c_library_fit() {
        let portable = needs("x86_64", LibcNeed::Glibc(Some("2.17".parse().unwrap())));
        assert_eq!(mismatch(&portable, &host("x86_64", glibc("2.31"))), None);
        assert_eq!(mismatch(&portable, &host("x86_64", glibc("2.17"))), None);
        let old = mismatch(&portable, &host("x86_64", glibc("2.12"))).unwrap();
        assert!(old.contains("needs glibc 2.17"), "{old}");
        let arm = mismatch(&portable, &host("aarch64", glibc("2.31"))).unwrap();
        assert!(arm.contains("built for x86_64"), "{arm}");
        assert!(mismatch(&portable, &host("x86_64", HostLibc::Musl)).is_some());
        assert_eq!(
            mismatch(&needs("x86_64", LibcNeed::Static), &host("x86_64", HostLibc::Musl)),
            None
        );
    }

    #[test]
    fn refusals_name_the_build_command() {
        assert!(next_step(&host("x86_64", glibc("2.31"))).contains("scripts/dist"));
        assert!(next_step(&host("aarch64", glibc("2.31"))).contains("aarch64-unknown-linux-gnu"));
        assert!(next_step(&host("x86_64", HostLibc::Musl)).contains("x86_64-unknown-linux-musl"));
        assert!(next_step(&host("x86_64", glibc("2.12"))).contains("needs glibc 2.17 or newer"));
        let mut mac = host("arm64", HostLibc::Unknown(String::new()));
        mac.system = "Darwin".into();
        assert_eq!(next_step(&mac), "remora-agent runs on Linux only");
        let none = choose(&[], &host("aarch64", glibc("2.31"))).err().unwrap();
        assert!(none.contains("Linux aarch64 with glibc 2.31"), "{none}");
    }
}
