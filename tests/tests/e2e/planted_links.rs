//! Another local user who can write the destination directory (a sticky, world-writable one
//! like /tmp) plants a symlink to one of the victim's 0600 files under the name a copy will use:
//! the partial file `.NAME.remora-KEY.part` of a download or an upload, or a `--output-dir` file;
//! or swaps a directory of a tree an upload is creating for a link.
//! The victim's file stays as it was, and 0600. The second account is real (created here; it
//! needs root, as the isolation tests do).

use std::{
    fs,
    os::unix::{
        ffi::OsStrExt,
        fs::{MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use remora_unix::part_name;
use remora_wire::{AgentBody, ClientBody, PathKind, PathMeta, PutPath};

use crate::{
    hostile::RawLink,
    isolation::OtherUser,
    support::{remora, run, Sshd, TIMEOUT},
};

const SECRET: &str = "the victim's private key\n";

/// The victim's 0600 file, a shared 1777 directory, and the other user who plants links in it.
struct Shared {
    sshd: Sshd,
    victim: PathBuf,
    dir: PathBuf,
    other: OtherUser,
}

impl Shared {
    /// `None` (the test is skipped) when not root.
    fn start(user: &str) -> Option<Shared> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: creating a second Unix user needs root (CI runs as root)");
            return None;
        }
        let sshd = Sshd::start().unwrap();
        fs::set_permissions(sshd.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let victim = sshd.dir().join("id_ed25519");
        fs::write(&victim, SECRET).unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let dir = sshd.dir().join("shared");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
        let other = OtherUser::create_named(user);
        Some(Shared {
            sshd,
            victim,
            dir,
            other,
        })
    }

    /// The other user makes `name` in the shared directory a symlink to the victim's file.
    fn plant(&self, name: &[u8]) -> PathBuf {
        let link = self.dir.join(std::ffi::OsStr::from_bytes(name));
        let made = run(self.other.command("ln").arg("-s").arg(&self.victim).arg(&link), TIMEOUT).unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        assert_eq!(fs::symlink_metadata(&link).unwrap().uid(), self.other.uid);
        link
    }

    fn assert_victim_untouched(&self) {
        let held = fs::read(&self.victim).unwrap();
        assert!(
            held == SECRET.as_bytes(),
            "the victim's file changed: {} bytes now",
            held.len()
        );
        let mode = fs::metadata(&self.victim).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the victim's file was chmod-ed");
    }
}

/// The partial name a copy of `source` (its local metadata) to `target` (as the receiving side
/// names it) uses: the key both ends build from the source's size and mtime and a path.
fn partial(name: &str, source: &Path, keyed_path: &Path) -> Vec<u8> {
    let meta = fs::metadata(source).unwrap();
    let key = format!("{}-{}.{}", meta.len(), meta.mtime(), meta.mtime_nsec());
    part_name(name.as_bytes(), &[key.as_bytes(), keyed_path.as_os_str().as_bytes()])
}

/// Bytes larger than the victim's file, so a copy resuming "from" it would write into it.
fn payload() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_download_into_a_shared_dir_never_writes_through_a_planted_partial_file() {
    let Some(shared) = Shared::start("remora-e2e-plant-dl") else {
        return;
    };
    let remote = shared.sshd.remote_home().join("report.bin");
    fs::write(&remote, payload()).unwrap();
    shared.plant(&partial("report.bin", &remote, &remote));

    let dest = format!("{}/", shared.dir.display());
    let source = format!("{}:report.bin", shared.sshd.alias());
    let copied = remora(&shared.sshd, &["--no-reuse", "cp", &source, &dest]);
    shared.assert_victim_untouched();
    assert_eq!(copied.status, 0, "the copy goes on beside the link: {copied:?}");
    assert_eq!(fs::read(shared.dir.join("report.bin")).unwrap(), payload());
}

#[test]
fn an_upload_into_a_shared_dir_on_the_host_never_writes_through_a_planted_partial_file() {
    let Some(shared) = Shared::start("remora-e2e-plant-ul") else {
        return;
    };
    let local = shared.sshd.home().join("upload.bin");
    fs::write(&local, payload()).unwrap();
    let target = shared.dir.join("upload.bin");
    shared.plant(&partial("upload.bin", &local, &target));

    let dest = format!("{}:{}/", shared.sshd.alias(), shared.dir.display());
    let copied = remora(&shared.sshd, &["--no-reuse", "cp", local.to_str().unwrap(), &dest]);
    shared.assert_victim_untouched();
    assert_eq!(copied.status, 0, "the copy goes on beside the link: {copied:?}");
    assert_eq!(fs::read(&target).unwrap(), payload());
}

#[test]
fn output_dir_files_are_never_written_through_a_planted_link() {
    let Some(shared) = Shared::start("remora-e2e-plant-out") else {
        return;
    };
    let alias = shared.sshd.alias();
    shared.plant(format!("{alias}.stdout").as_bytes());

    let dir = shared.dir.display().to_string();
    let run = remora(
        &shared.sshd,
        &[
            "--no-reuse",
            "--output-dir",
            &dir,
            "invoke",
            alias,
            "--",
            "echo overwritten",
        ],
    );
    shared.assert_victim_untouched();
    assert_ne!(run.status, 0, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("{alias}.stdout is a symlink, not a file of ours")),
        "the error names the file: {run:?}"
    );
}

#[test]
fn an_upload_never_enters_a_directory_of_its_tree_swapped_for_a_link() {
    let Some(shared) = Shared::start("remora-e2e-plant-tree") else {
        return;
    };
    // The tree an upload is creating, writable by others (a -p copy of a 0777 directory): the
    // other user swaps its subdirectory for a link to a directory of the victim.
    let tree = shared.dir.join("tree");
    fs::create_dir(&tree).unwrap();
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o777)).unwrap();
    let keys = shared.sshd.dir().join("dot-ssh");
    fs::create_dir(&keys).unwrap();
    let link = tree.join("sub");
    let made = run(shared.other.command("ln").arg("-s").arg(&keys).arg(&link), TIMEOUT).unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    // The copy's next request, for a file in that subdirectory.
    let mut raw = RawLink::greeted(&shared.sshd);
    let request = PutPath {
        session: None,
        dest: link.join("authorized_keys").as_os_str().as_bytes().to_vec(),
        name: None,
        into_dir: false,
        meta: PathMeta {
            kind: PathKind::File,
            size: 5,
            mode: 0o644,
            ..PathMeta::default()
        },
        preserve: false,
        source_key: "5-0.0".into(),
        within: Some(tree.as_os_str().as_bytes().to_vec()),
    };
    raw.send(2, ClientBody::PutPath(request));
    match raw.next(TIMEOUT).body {
        AgentBody::Error(error) => assert!(error.message.contains("enter directory"), "{}", error.message),
        other => panic!("the agent went through the link: {other:?}"),
    }
    assert_eq!(
        fs::read_dir(&keys).unwrap().count(),
        0,
        "nothing was created in the link's target"
    );
}
