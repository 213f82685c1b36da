//! A compromised host: the `remora` subsystem is the hostile agent (`remora_testkit::hostile_agent`),
//! which speaks the real protocol and lists what an attacker would. Each refusal is asserted by
//! what exists on disk afterwards: nothing outside DEST changes, nothing is created for a refused
//! listing, and no copied file carries set-uid, set-gid or sticky bits.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{symlink, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use remora_testkit::hostile_agent::scenario::CONTENT;

use crate::support::{remora, Run, Sshd};

/// What a tree holds: each path's mode (with its type bits) and contents or link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let held = if meta.file_type().is_symlink() {
                fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes()
            } else if meta.is_dir() {
                pending.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            found.insert(path, (meta.mode(), held));
        }
    }
    found
}

/// A hostile sshd with `outside/authorized_keys` (0600, the user's real key) and an empty `dest/`.
struct World {
    sshd: Sshd,
    outside: PathBuf,
    dest: PathBuf,
}

impl World {
    fn start() -> World {
        let sshd = Sshd::start_hostile().unwrap();
        let outside = sshd.dir().join("outside");
        let dest = sshd.dir().join("dest");
        fs::create_dir(&outside).unwrap();
        fs::create_dir(&dest).unwrap();
        let keys = outside.join("authorized_keys");
        fs::write(&keys, "ssh-ed25519 AAAA-my-own-key me@laptop\n").unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
        World { sshd, outside, dest }
    }

    /// `remora cp [FLAGS] testhost:NAME dest/`, on a connection of its own.
    fn download(&self, flags: &[&str], name: &str) -> Run {
        let source = format!("{}:{name}", self.sshd.alias());
        let dest = format!("{}/", self.dest.display());
        let mut args = vec!["--no-reuse", "cp"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&source, &dest]);
        remora(&self.sshd, &args)
    }
}

#[test]
fn listings_that_reach_outside_dest_are_refused_and_nothing_is_written() {
    let world = World::start();
    let before = snapshot(&world.outside);
    let absolute = world.outside.join("authorized_keys").display().to_string();
    for (scenario, entry) in [
        ("absolute", absolute.as_str()),
        ("dotdot", "../../outside/authorized_keys"),
        ("symlink-then-file", "keys/authorized_keys"),
    ] {
        let run = world.download(&["-r"], scenario);
        assert_ne!(run.status, 0, "{scenario}: {run:?}");
        assert!(
            run.stderr.contains("refused its listing") && run.stderr.contains(entry),
            "{scenario}: the error names the host's listing and the entry: {run:?}"
        );
        assert_eq!(
            snapshot(&world.dest),
            BTreeMap::new(),
            "{scenario}: nothing created in DEST"
        );
        assert_eq!(
            snapshot(&world.outside),
            before,
            "{scenario}: nothing outside DEST changed"
        );
    }
}

#[test]
fn extra_entries_for_a_single_file_are_refused() {
    let world = World::start();
    let run = world.download(&[], "extra-without-r");
    assert_ne!(run.status, 0, "{run:?}");
    assert!(
        run.stderr.contains("2 paths were listed for the single path"),
        "{run:?}"
    );
    assert_eq!(
        snapshot(&world.dest),
        BTreeMap::new(),
        "not even the first file is written"
    );
}

#[test]
fn set_uid_set_gid_and_sticky_bits_are_never_taken_from_the_host() {
    let world = World::start();
    world.download(&["-r", "-p"], "setuid").ok();
    let tree = world.dest.join("setuid");
    let mode = |path: &str| fs::symlink_metadata(tree.join(path)).unwrap().mode() & 0o7777;
    assert_eq!(
        (mode("tool"), mode("shared"), mode("shared/tool")),
        (0o755, 0o777, 0o711),
        "-p keeps the permission bits, only those"
    );
    assert_eq!(fs::read(tree.join("tool")).unwrap(), CONTENT);
    assert_eq!(
        fs::metadata(tree.join("tool")).unwrap().mtime(),
        1_000_000_000,
        "-p keeps mtimes"
    );

    fs::remove_dir_all(&tree).unwrap();
    world.download(&["-r"], "setuid").ok();
    for (path, (mode, _)) in snapshot(&world.dest) {
        assert_eq!(mode & 0o7000, 0, "{} has special bits: {mode:o}", path.display());
    }
}

#[test]
fn links_found_in_dest_are_replaced_or_refused_never_followed() {
    let world = World::start();
    let before = snapshot(&world.outside);
    // A directory of the listing is a link on disk: the copy refuses to enter it.
    let tree = world.dest.join("plain-tree");
    fs::create_dir(&tree).unwrap();
    symlink(&world.outside, tree.join("sub")).unwrap();
    let run = world.download(&["-r"], "plain-tree");
    assert_eq!(snapshot(&world.outside), before, "nothing written through the link");
    assert_ne!(run.status, 0, "{run:?}");
    assert!(run.stderr.contains("cannot overwrite non-directory"), "{run:?}");

    // A file of the listing is a link on disk: the link itself is replaced by the file.
    fs::remove_file(tree.join("sub")).unwrap();
    fs::create_dir(tree.join("sub")).unwrap();
    symlink(world.outside.join("authorized_keys"), tree.join("sub/authorized_keys")).unwrap();
    world.download(&["-r"], "plain-tree").ok();
    let copied = tree.join("sub/authorized_keys");
    assert!(
        fs::symlink_metadata(&copied).unwrap().is_file(),
        "the link was replaced"
    );
    assert_eq!(fs::read(&copied).unwrap(), CONTENT);
    assert_eq!(snapshot(&world.outside), before, "the link's target is untouched");
}
