//! Confinement of the dispatch target: before the first input reaches the daemon, the thread
//! that runs inputs (and every thread it starts later, such as tokio's blocking pool, where the
//! transfer service does its file work) is restricted with Landlock so that the paths a fuzzed
//! `PutPath`, `GetPath` or `ReadFile` names can only be in a fresh temporary state dir.
//!
//! Allowed, everything else denied (every filesystem right Landlock ABI 5 knows is handled, and
//! signals and abstract sockets are scoped to the process):
//! - the state dir: everything;
//! - libFuzzer's outputs, taken from its arguments: the first corpus dir (new inputs, reduced
//!   ones removed), the artifact dir (`-artifact_prefix`, `-exact_artifact_path`), and the merge
//!   control file; other corpus dirs and input files only read;
//! - files (not directory listings) under `/usr` and the fuzz binary itself, read and executed:
//!   what the sanitizer's symbolizer needs to name frames in a crash report;
//! - this process's own `/proc` directory, read: LeakSanitizer lists its threads and maps.
//!
//! Setting it up fails loudly: a kernel without Landlock ABI 5, a rule that cannot be added, or
//! a probe that still creates a file beside the state dir is a panic naming the cause, never an
//! unconfined run. The confinement starts with the first input rather than at libFuzzer's
//! initialization: a process that only forks workers (`-merge`, `-minimize_crash`, `-fork`)
//! runs no input, so it stays unconfined and its workers each confine themselves with their
//! own arguments. Threads that exist before (libFuzzer's RSS monitor) are not restricted.

use std::{
    fs::File,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    process::{ChildStdin, Command, Stdio},
    sync::OnceLock,
};

use landlock::{
    path_beneath_rules, Access, AccessFs, BitFlags, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};

/// The filesystem rights as of this ABI (5: Linux 6.10) are all handled; scopes need ABI 6.
const FS_ABI: ABI = ABI::V5;
const SCOPE_ABI: ABI = ABI::V6;

/// What libFuzzer was told to read and write, from its command line.
#[derive(Default, Debug)]
struct FuzzerPaths {
    /// The first corpus dir: libFuzzer writes new inputs there and removes reduced ones.
    output_corpus: Option<PathBuf>,
    /// Further corpus dirs and input files, only read.
    inputs: Vec<PathBuf>,
    /// Dirs that crash, timeout and minimized artifacts are created in.
    artifact_dirs: Vec<PathBuf>,
    /// Files libFuzzer rewrites in place (the merge control file).
    rewritten: Vec<PathBuf>,
}

/// The dir part of an artifact prefix: `dir/` as is, `dir/crash-` its parent.
fn prefix_dir(prefix: &str) -> PathBuf {
    if prefix.ends_with('/') {
        return PathBuf::from(prefix);
    }
    match Path::new(prefix).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn fuzzer_paths(args: impl IntoIterator<Item = String>) -> FuzzerPaths {
    let mut paths = FuzzerPaths::default();
    for arg in args {
        if let Some(prefix) = arg.strip_prefix("-artifact_prefix=") {
            paths.artifact_dirs.push(prefix_dir(prefix));
        } else if let Some(path) = arg.strip_prefix("-exact_artifact_path=") {
            paths.artifact_dirs.push(prefix_dir(path));
        } else if let Some(path) = arg.strip_prefix("-merge_control_file=") {
            paths.rewritten.push(path.into());
        } else if arg.starts_with('-') {
            continue;
        } else if paths.output_corpus.is_none() && Path::new(&arg).is_dir() {
            paths.output_corpus = Some(arg.into());
        } else if Path::new(&arg).exists() {
            paths.inputs.push(arg.into());
        }
    }
    if paths.artifact_dirs.is_empty() {
        eprintln!(
            "remora-fuzz: no -artifact_prefix given: the confinement allows no crash artifact in \
             the current dir (cargo fuzz passes one)"
        );
    }
    paths
}

/// A process that removes the state dir once this one has exited normally (`exit()`, as
/// libFuzzer ends after `-runs` or `-max_total_time`). The confined process itself cannot:
/// removing the dir is a right on its parent. After a crash the dir stays, with what led to it.
fn start_janitor(state: &Path) -> ChildStdin {
    let mut janitor = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"IFS= read -r said; [ "$said" = exit ] && rm -rf -- "$0""#)
        .arg(state)
        .stdin(Stdio::piped())
        .spawn()
        .expect("cannot start the process that removes the dispatch target's state dir");
    janitor.stdin.take().expect("the janitor's stdin is piped")
}

static JANITOR: OnceLock<ChildStdin> = OnceLock::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn tell_janitor() {
    if let Some(mut janitor) = JANITOR.get() {
        let _ = janitor.write_all(b"exit\n");
    }
}

/// The ruleset for `state` and `paths`; see the module docs.
fn restrict(state: &Path, paths: &FuzzerPaths) -> Result<RulesetStatus, landlock::RulesetError> {
    let all = AccessFs::from_all(FS_ABI);
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let create: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::Truncate;
    let run = AccessFs::ReadFile | AccessFs::Execute;
    let own_binary = std::env::current_exe().ok();
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)?
        .scope(Scope::from_all(SCOPE_ABI))?
        .create()?
        .add_rules(path_beneath_rules([state], all))?
        .add_rules(path_beneath_rules(
            &paths.output_corpus,
            create | read | AccessFs::RemoveFile,
        ))?
        .add_rules(path_beneath_rules(&paths.inputs, read))?
        .add_rules(path_beneath_rules(&paths.artifact_dirs, create))?
        .add_rules(path_beneath_rules(&paths.rewritten, create))?
        .add_rules(path_beneath_rules(["/usr"], run))?
        .add_rules(path_beneath_rules(&own_binary, run))?
        // LeakSanitizer's leak check reads this process's threads and maps (/proc/self is
        // opened, so the rule is this process's own directory, not every process's).
        .add_rules(path_beneath_rules(["/proc/self"], read))?
        .restrict_self()?;
    Ok(status.ruleset)
}

/// Checks that the confinement holds: a file beside the state dir cannot be created, from this
/// thread or a new one.
fn probe(state: &Path) {
    let outside = state
        .parent()
        .expect("the state dir has a parent")
        .join(format!("remora-fuzz-probe-{}", std::process::id()));
    let attempt = |path: PathBuf| std::thread::spawn(move || File::create(path)).join();
    for result in [File::create(&outside), attempt(outside.clone()).expect("probe thread")] {
        match result {
            Err(err) if err.kind() == ErrorKind::PermissionDenied => {}
            Ok(_) => {
                let _ = std::fs::remove_file(&outside);
                panic!("the dispatch target is not confined: it created {}", outside.display());
            }
            Err(err) => panic!("probing the confinement with {}: unexpected {err}", outside.display()),
        }
    }
}

/// Creates a fresh state dir and confines this thread (and those it starts) to it; see the
/// module docs. Panics if the confinement cannot be set up.
pub fn confined_state_dir() -> PathBuf {
    let paths = fuzzer_paths(std::env::args().skip(1));
    let state = tempfile::Builder::new()
        .prefix("remora-fuzz-dispatch-")
        .tempdir()
        .expect("temporary state dir")
        .keep();
    JANITOR.set(start_janitor(&state)).expect("one state dir");
    // SAFETY: registers a plain function that only writes to a pipe it finds in a static.
    unsafe { atexit(tell_janitor) };
    match restrict(&state, &paths) {
        Ok(RulesetStatus::FullyEnforced) => {}
        Ok(status) => panic!("cannot confine the dispatch target: Landlock is {status:?} on this kernel"),
        Err(err) => panic!("cannot confine the dispatch target with Landlock: {err}"),
    }
    probe(&state);
    eprintln!(
        "remora-fuzz: confined with Landlock to {} and libFuzzer's outputs",
        state.display()
    );
    state
}
