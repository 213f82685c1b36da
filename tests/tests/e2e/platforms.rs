//! The hosts admins have. `remora install` on hosts of other CPUs and C libraries ships a build
//! that runs there, or refuses before copying anything and names the command that builds one
//! (the host's `uname`, `getconf` and `ldd` are fakes first on its PATH, answering what a test
//! writes into files); the agent it ships needs glibc 2.17 at most; and the agent runs on hosts
//! without a systemd user session (no usable XDG_RUNTIME_DIR).

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use remora_client::install::{needs, GlibcVersion, LibcNeed};

use crate::support::{binaries, remora, Run, Sshd};

/// A directory of fake `uname`, `getconf` and `ldd`, each printing its `NAME.out` file (and
/// failing when that file is absent, as a missing command would), put first on the host's PATH.
struct FakeHost {
    bin: tempfile::TempDir,
    sshd: Sshd,
}

impl FakeHost {
    fn start() -> FakeHost {
        let bin = tempfile::Builder::new().prefix("remora-fakebin-").tempdir().unwrap();
        for name in ["uname", "getconf", "ldd"] {
            let out = bin.path().join(format!("{name}.out"));
            let script = format!("#!/bin/sh\ncat {} 2>/dev/null || exit 127\n", out.display());
            // Written here, made executable by a cp child (see copy_executable: no ETXTBSY).
            let source = bin.path().join(format!("{name}.src"));
            fs::write(&source, script).unwrap();
            remora_testkit::copy_executable(&source, &bin.path().join(name)).unwrap();
        }
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.path().display());
        let sshd = Sshd::start_without_subsystem_env(&[("PATH", &path)]).unwrap();
        FakeHost { bin, sshd }
    }

    /// What the host's `uname -sm`, `getconf GNU_LIBC_VERSION` and `ldd --version` print from
    /// now on (`None`: the command fails).
    fn reports(&self, uname: &str, getconf: Option<&str>, ldd: Option<&str>) {
        let set = |name: &str, text: Option<&str>| {
            let out = self.bin.path().join(format!("{name}.out"));
            match text {
                Some(text) => fs::write(out, format!("{text}\n")).unwrap(),
                None => {
                    let _ = fs::remove_file(out);
                }
            }
        };
        set("uname", Some(uname));
        set("getconf", getconf);
        set("ldd", ldd);
    }

    fn install(&self, extra: &[&str]) -> Run {
        let mut args = vec!["install", self.sshd.alias()];
        args.extend_from_slice(extra);
        remora(&self.sshd, &args)
    }

    /// Asserts the install was refused with every one of `words`, and that nothing reached the
    /// host: `install` creates ~/.local/bin only in the step that copies.
    fn assert_refused(&self, run: Run, words: &[&str]) {
        assert_eq!(run.status, 1, "{run:#?}");
        for word in words {
            assert!(run.stderr.contains(word), "{word:?} missing from: {}", run.stderr);
        }
        let local = self.sshd.remote_home().join(".local");
        assert!(!local.exists(), "nothing copied, yet {} exists", local.display());
    }
}

#[test]
fn install_refuses_an_aarch64_host_before_copying_and_names_the_build() {
    let host = FakeHost::start();
    host.reports("Linux aarch64", Some("glibc 2.36"), None);
    let run = host.install(&[]);
    host.assert_refused(
        run,
        &[
            "the host is Linux aarch64 with glibc 2.36",
            "built for x86_64",
            "build remora-agent for aarch64-unknown-linux-gnu",
        ],
    );
    // A named binary is checked the same way.
    let agent = binaries().agent.display().to_string();
    let run = host.install(&["--agent", &agent]);
    host.assert_refused(run, &[&format!("{agent} cannot run there (it is built for x86_64")]);
}

#[test]
fn install_refuses_a_glibc_older_than_every_build_and_a_musl_only_host() {
    let host = FakeHost::start();
    host.reports("Linux x86_64", Some("glibc 2.12"), None);
    let run = host.install(&[]);
    host.assert_refused(
        run,
        &[
            "the host is Linux x86_64 with glibc 2.12",
            "it needs glibc 2.",
            "remora-agent needs glibc 2.17 or newer",
        ],
    );

    host.reports("Linux x86_64", None, Some("musl libc (x86_64)\nVersion 1.2.4"));
    let run = host.install(&[]);
    host.assert_refused(
        run,
        &[
            "the host is Linux x86_64 with musl",
            "it needs glibc",
            "x86_64-unknown-linux-musl",
        ],
    );
}

/// A host whose glibc is older than the one remora was built against (2.31, Debian 11's) gets
/// the portable agent; without it, the refusal names `scripts/dist`. `--agent` with the native
/// build is refused by its GLIBC_ symbol versions.
#[test]
fn install_ships_the_portable_agent_to_an_older_glibc_or_names_scripts_dist() {
    let host = FakeHost::start();
    host.reports("Linux x86_64", None, Some("ldd (Debian GLIBC 2.31-13+deb11u11) 2.31"));
    let native = binaries().agent.display().to_string();
    let run = host.install(&["--agent", &native]);
    host.assert_refused(
        run,
        &[
            &format!("{native} cannot run there (it needs glibc 2.3"),
            "scripts/dist",
        ],
    );

    let portable = &binaries().portable_agent;
    let run = host.install(&[]);
    if !portable.is_file() {
        eprintln!(
            "{} not built (scripts/dist): checking the refusal only",
            portable.display()
        );
        host.assert_refused(run, &["build the portable agent", "with `scripts/dist`"]);
        return;
    }
    let printed = run.ok();
    assert!(
        printed.contains(&format!("copied from {}", portable.display())),
        "{printed}"
    );
    assert!(printed.contains("Linux x86_64 with glibc 2.31"), "{printed}");
    let installed = host.sshd.remote_home().join(".local/bin/remora-agent");
    assert_eq!(fs::read(installed).unwrap(), fs::read(portable).unwrap());
}

/// The agent `install` ships (scripts/dist's output) needs no glibc newer than 2.17, by
/// binutils' reading of its version needs and by install's own. CI builds it (scripts/test runs
/// scripts/dist) and fails here without it; elsewhere a missing build is reported and skipped.
#[test]
fn the_shipped_agent_needs_no_glibc_above_2_17() {
    let portable = &binaries().portable_agent;
    if !portable.is_file() {
        let why = format!("{} is missing: build it with scripts/dist", portable.display());
        assert!(std::env::var_os("CI").is_none(), "{why} (scripts/test does, in CI)");
        eprintln!("skipped: {why}");
        return;
    }
    let output = Command::new("readelf")
        .args(["--version-info", "--wide"])
        .arg(portable)
        .output()
        .expect("readelf (binutils) runs: scripts/test installs it");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let versions: Vec<GlibcVersion> = text
        .split(|c: char| c.is_whitespace())
        .filter_map(|word| word.strip_prefix("GLIBC_")?.parse().ok())
        .collect();
    let highest = versions
        .iter()
        .max()
        .copied()
        .expect("a glibc build needs GLIBC_ versions");
    assert!(
        highest <= GlibcVersion::PORTABLE,
        "{} needs GLIBC_{highest}",
        portable.display()
    );

    let needed = needs(&fs::read(portable).unwrap()).unwrap();
    assert_eq!(needed.machine, "x86_64");
    assert_eq!(
        needed.libc,
        LibcNeed::Glibc(Some(highest)),
        "install reads the same floor"
    );
}

/// Hosts without a systemd user session: with no XDG_RUNTIME_DIR, or one that does not exist,
/// the agent keeps its socket in `~/.local/share/remora/run` (0700, checked) and creates
/// nothing where the variable points; a private XDG_RUNTIME_DIR is used.
#[test]
fn without_a_usable_xdg_runtime_dir_the_socket_lives_in_the_data_dir() {
    let runtime = tempfile::Builder::new().prefix("remora-xdg-").tempdir().unwrap();
    let missing = runtime.path().join("missing");
    let private = runtime.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let agent = binaries().agent.display().to_string();
    let missing_text = missing.display().to_string();
    let private_text = private.display().to_string();
    // The host's environment, and where the socket must be (None: the data dir).
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a Path>);
    let cases: [Case; 3] = [
        (&[], None),
        (&[("XDG_RUNTIME_DIR", &missing_text)], None),
        (&[("XDG_RUNTIME_DIR", &private_text)], Some(&private)),
    ];
    for (env, runtime_dir) in cases {
        let sshd = Sshd::start_without_subsystem_env(env).unwrap();
        remora(&sshd, &["install", sshd.alias(), "--agent", &agent]).ok();
        let said = remora(&sshd, &["invoke", sshd.alias(), "--", "echo ok-$((6*7))"]).ok();
        assert_eq!(said, "ok-42\n", "{env:?}");
        let run_dir = match runtime_dir {
            Some(dir) => dir.join("remora"),
            None => sshd.remote_home().join(".local/share/remora/run"),
        };
        assert!(
            run_dir.join("agent.sock").exists(),
            "{env:?}: no socket in {}",
            run_dir.display()
        );
        let mode = fs::metadata(&run_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{env:?}");
        assert!(!missing.exists(), "{env:?}: created {}", missing.display());
    }
}
