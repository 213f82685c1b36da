//! `remora cp`: files, trees, odd names, modes and mtimes, session-relative paths, several
//! hosts; nothing half-written under a real name; resuming after cut links and interrupted
//! runs; clear errors that touch nothing, disk full on either side included.

use std::{
    ffi::{OsStr, OsString},
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::{MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{
    stdin::noise,
    support::{flaky, run, wait_until, FaultyLink, Sshd, TIMEOUT},
};

/// What one `remora cp` did.
#[derive(Debug)]
struct Copy {
    status: i32,
    stdout: String,
    stderr: String,
}

fn cp_with(mut command: Command, args: &[&OsStr]) -> Copy {
    let output = run(command.arg("cp").args(args), TIMEOUT).unwrap();
    Copy {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn cp(sshd: &Sshd, args: &[&OsStr]) -> Copy {
    cp_with(sshd.remora(), args)
}

fn ok(copy: Copy) -> String {
    assert_eq!(copy.status, 0, "cp failed: {copy:#?}");
    copy.stdout
}

/// `HOST:PATH` as an OS string (any bytes).
fn remote(host: &str, path: &Path) -> OsString {
    let mut bytes = format!("{host}:").into_bytes();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    OsString::from_vec(bytes)
}

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

/// The agent daemon's umask: files it writes get it.
fn daemon_umask(sshd: &Sshd) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", sshd.daemon_pid().unwrap())).unwrap();
    let mask = status.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap();
    u32::from_str_radix(mask.trim(), 8).unwrap()
}

fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(partial_files(&path));
        } else if path.as_os_str().as_bytes().ends_with(b".part") {
            found.push(path);
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn files_go_up_and_down_byte_for_byte_under_the_users_umask() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let (local, far) = (sshd.dir().join("local"), sshd.dir().join("far"));
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&far).unwrap();
    let data = noise(5 * 1024 * 1024 + 7, 10);
    let (big, empty) = (local.join("big.bin"), local.join("empty"));
    std::fs::write(&big, &data).unwrap();
    std::fs::write(&empty, b"").unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o666)).unwrap();
    ok(cp(&sshd, &[big.as_os_str(), empty.as_os_str(), &remote(host, &far)]));
    assert!(std::fs::read(far.join("big.bin")).unwrap() == data);
    assert_eq!(std::fs::read(far.join("empty")).unwrap(), b"");
    assert_eq!(
        mode(&far.join("big.bin")),
        0o666 & !daemon_umask(&sshd),
        "written under the umask"
    );
    let back = sshd.dir().join("back");
    std::fs::create_dir_all(&back).unwrap();
    let summary = ok(cp(
        &sshd,
        &[
            &remote(host, &far.join("big.bin")),
            &remote(host, &far.join("empty")),
            back.as_os_str(),
            os("--json"),
        ],
    ));
    assert!(std::fs::read(back.join("big.bin")).unwrap() == data);
    assert_eq!(std::fs::read(back.join("empty")).unwrap(), b"");
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(json[0]["bytes"], data.len() as u64, "{summary}");
    assert_eq!(
        json[0]["paths"][0]["path"],
        back.join("big.bin").to_str().unwrap(),
        "{summary}"
    );
    assert!(partial_files(sshd.dir()).is_empty(), "no temporary file is left");
}

/// A tree with odd names, a symlink, a nested directory and distinct modes and mtimes.
fn odd_tree(root: &Path) -> Vec<PathBuf> {
    let names: Vec<OsString> = vec![
        "with space".into(),
        "new\nline".into(),
        OsString::from_vec(b"bytes-\xff\xfe".to_vec()),
    ];
    std::fs::create_dir_all(root.join("sub dir")).unwrap();
    let mut files = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = root.join("sub dir").join(name);
        std::fs::write(&path, noise(1000 * (i + 1), i as u64)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600 + i as u32 * 0o11)).unwrap();
        files.push(path);
    }
    std::os::unix::fs::symlink("sub dir/with space", root.join("link")).unwrap();
    std::fs::set_permissions(root.join("sub dir"), std::fs::Permissions::from_mode(0o750)).unwrap();
    for (i, path) in files.iter().chain([&root.join("sub dir")]).enumerate() {
        let time = nix::sys::time::TimeSpec::new(1_600_000_000 + i as i64 * 1000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &time,
            &time,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    files
}

/// Asserts two trees hold the same names, bytes, link targets, modes and (file) mtimes.
fn assert_same_tree(a: &Path, b: &Path) {
    let list = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(list(a), list(b), "{} vs {}", a.display(), b.display());
    for name in list(a) {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(
            ma.file_type().is_symlink(),
            mb.file_type().is_symlink(),
            "{}",
            pb.display()
        );
        if ma.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&pa).unwrap(), std::fs::read_link(&pb).unwrap());
            continue;
        }
        assert_eq!(mode(&pa), mode(&pb), "mode of {}", pb.display());
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", pb.display());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else {
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "{}",
                pb.display()
            );
        }
    }
}

#[test]
fn trees_with_odd_names_and_symlinks_keep_modes_and_mtimes_with_p() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let source = sshd.dir().join("tree");
    odd_tree(&source);
    let far = sshd.dir().join("far-tree");
    ok(cp(
        &sshd,
        &[os("-r"), os("-p"), source.as_os_str(), &remote(host, &far)],
    ));
    assert_same_tree(&source, &far);
    assert!(
        std::fs::symlink_metadata(far.join("link"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "links stay links"
    );
    let back = sshd.dir().join("back-tree");
    ok(cp(&sshd, &[os("-r"), os("-p"), &remote(host, &far), back.as_os_str()]));
    assert_same_tree(&source, &back);
    let odd = far.join("sub dir").join(OsStr::from_bytes(b"bytes-\xff\xfe"));
    let single = sshd.dir().join("single");
    ok(cp(&sshd, &[&remote(host, &odd), single.as_os_str()]));
    assert!(std::fs::read(&single).unwrap() == std::fs::read(&odd).unwrap());
}

#[test]
fn relative_remote_paths_start_in_the_sessions_runspace_directory_else_home() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let work = sshd.dir().join("work dir");
    let command = format!("mkdir -p '{0}' && cd '{0}'", work.display());
    crate::support::remora(&sshd, &["invoke", host, "--name", "s", "--", &command]).ok();
    let file = sshd.dir().join("note.txt");
    std::fs::write(&file, b"note").unwrap();
    ok(cp(
        &sshd,
        &[
            os("--name"),
            os("s"),
            file.as_os_str(),
            os(&format!("{host}:copied.txt")),
        ],
    ));
    assert_eq!(std::fs::read(work.join("copied.txt")).unwrap(), b"note");
    ok(cp(&sshd, &[file.as_os_str(), os(&format!("{host}:copied.txt"))]));
    assert_eq!(std::fs::read(sshd.remote_home().join("copied.txt")).unwrap(), b"note");
    let down = sshd.dir().join("down.txt");
    ok(cp(
        &sshd,
        &[
            os("--name"),
            os("s"),
            os(&format!("{host}:../work dir/copied.txt")),
            down.as_os_str(),
        ],
    ));
    assert_eq!(
        std::fs::read(&down).unwrap(),
        b"note",
        "`..` is a plain path, as with scp"
    );
}

#[test]
fn a_comma_list_uploads_to_every_host() {
    let sshd = Sshd::start().unwrap();
    sshd.add_alias("second", sshd.port()).unwrap();
    let file = sshd.dir().join("app.tgz");
    std::fs::write(&file, noise(300_000, 5)).unwrap();
    let (a, b) = (sshd.dir().join("a"), sshd.dir().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    let hosts = format!("{},second", sshd.alias());
    let summary = ok(cp(&sshd, &[os("--json"), file.as_os_str(), &remote(&hosts, &a)]));
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{summary}");
    assert!(std::fs::read(a.join("app.tgz")).unwrap() == std::fs::read(&file).unwrap());
    let missing = cp(&sshd, &[file.as_os_str(), &remote(&hosts, &b.join("x").join("y"))]);
    assert_eq!(missing.status, 1);
    assert_eq!(
        missing.stderr.matches("No such file or directory").count(),
        2,
        "{missing:?}"
    );
}

/// Everything under `dir`, for "nothing else touched".
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        all.push((path.clone(), meta.len()));
        if meta.is_dir() {
            all.extend(snapshot(&path));
        }
    }
    all.sort();
    all
}

#[test]
fn each_refused_copy_says_why_and_touches_nothing() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let stage = sshd.dir().join("stage");
    std::fs::create_dir_all(stage.join("dir/inner")).unwrap();
    std::fs::create_dir_all(stage.join("dest/file-named")).unwrap();
    std::fs::write(stage.join("file-named"), b"f").unwrap();
    std::fs::write(stage.join("dest/plain"), b"p").unwrap();
    let before = snapshot(&stage);
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (
            vec![stage.join("nope").into(), remote(host, &stage.join("dest"))],
            "No such file or directory",
        ),
        (
            vec![remote(host, &stage.join("nope")), stage.join("dest").into()],
            "No such file or directory",
        ),
        (
            vec![stage.join("dir").into(), remote(host, &stage.join("dest"))],
            "is a directory; copy it with -r",
        ),
        (
            vec![remote(host, &stage.join("dir")), stage.join("dest").into()],
            "is a directory; copy it with -r",
        ),
        (
            vec![stage.join("file-named").into(), remote(host, &stage.join("dest"))],
            "cannot overwrite directory",
        ),
        (
            vec![remote(host, &stage.join("file-named")), stage.join("dest").into()],
            "cannot overwrite directory",
        ),
        (
            vec![
                "-r".into(),
                stage.join("dir").into(),
                remote(host, &stage.join("dest/plain")),
            ],
            "cannot overwrite non-directory",
        ),
        (
            vec![
                "-r".into(),
                remote(host, &stage.join("dir")),
                stage.join("dest/plain").into(),
            ],
            "cannot overwrite non-directory",
        ),
        (
            vec![
                stage.join("file-named").into(),
                stage.join("file-named").into(),
                remote(host, &stage.join("dest/plain")),
            ],
            "is not a directory",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let copy = cp(&sshd, &args);
        assert_eq!(copy.status, 1, "{args:?}: {copy:?}");
        assert!(
            copy.stderr.contains(expected),
            "{args:?}: expected {expected:?} in {copy:?}"
        );
        assert_eq!(snapshot(&stage), before, "{args:?} touched nothing");
    }
    // Permission denied: a directory the user may not write (as root, one the kernel refuses).
    let locked = stage.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let target = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/sys/kernel")
    } else {
        locked.clone()
    };
    let file = stage.join("file-named");
    let up = cp(&sshd, &[file.as_os_str(), &remote(host, &target)]);
    assert_eq!(up.status, 1, "{up:?}");
    assert!(
        up.stderr.contains("not permitted") || up.stderr.contains("Permission denied"),
        "{up:?}"
    );
    let down = cp(&sshd, &[&remote(host, &file), target.as_os_str()]);
    assert_eq!(down.status, 1, "{down:?}");
    assert!(
        down.stderr.contains("not permitted") || down.stderr.contains("Permission denied"),
        "{down:?}"
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(snapshot(&locked), vec![]);
}

/// A small tmpfs, unmounted when dropped, even if the test fails.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` (with a message) when not root: mounting needs it.
    fn mount(path: PathBuf, size: &str) -> Option<SmallDisk> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
            return None;
        }
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs at {}", path.display());
        Some(SmallDisk(path))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_on_either_side_is_an_error_that_leaves_nothing_behind() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let Some(disk) = SmallDisk::mount(sshd.dir().join("small"), "1m") else {
        return;
    };
    let big = sshd.dir().join("big.bin");
    std::fs::write(&big, noise(3 * 1024 * 1024, 6)).unwrap();
    let up = cp(&sshd, &[big.as_os_str(), &remote(host, &disk.0)]);
    assert_eq!(up.status, 1, "{up:?}");
    assert!(
        up.stderr.contains("No space left") && up.stderr.contains("big.bin"),
        "{up:?}"
    );
    assert_eq!(snapshot(&disk.0), vec![], "no partial file is left on the host");
    let down = cp(&sshd, &[&remote(host, &big), disk.0.as_os_str()]);
    assert_eq!(down.status, 1, "{down:?}");
    assert!(
        down.stderr.contains("No space left") && down.stderr.contains("big.bin"),
        "{down:?}"
    );
    assert_eq!(snapshot(&disk.0), vec![], "no partial file is left locally");
}

fn part_len(dir: &Path) -> u64 {
    partial_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// Cuts the link three times as the partial file under `dir` passes 1/4, 2/4 and 3/4 of
/// `size`, waiting for each reconnect.
fn cut_three_times(link: &FaultyLink, dir: &Path, size: u64) {
    for quarter in 1..=3 {
        let connections = link.connections();
        crate::support::wait_until_within(TIMEOUT, "the transfer to pass the next quarter", || {
            part_len(dir) >= size * quarter / 4
        })
        .unwrap();
        link.cut();
        crate::support::wait_until_within(TIMEOUT, "the client to reconnect", || link.connections() > connections)
            .unwrap();
    }
}

#[test]
fn an_upload_and_a_download_cut_three_times_resume_and_send_at_most_5_percent_more() {
    let sshd = Sshd::start().unwrap();
    let (link, config) = flaky(&sshd);
    let size = 160 * 1024 * 1024;
    let data = noise(size, 7);
    let source = sshd.dir().join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("big.bin"), &data).unwrap();
    let (far, back) = (sshd.dir().join("far"), sshd.dir().join("back"));
    std::fs::create_dir_all(&far).unwrap();
    std::fs::create_dir_all(&back).unwrap();

    let start_up = link.upstream_bytes();
    let mut upload = sshd.remora_with_config(&config);
    upload
        .args(["cp"])
        .arg(source.join("big.bin"))
        .arg(remote("flaky", &far))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = upload.spawn().unwrap();
    cut_three_times(&link, &far, size as u64);
    let output = crate::support::run_child(child, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(std::fs::read(far.join("big.bin")).unwrap() == data);
    let sent = link.upstream_bytes() - start_up;
    assert!(sent as f64 <= size as f64 * 1.05, "{sent} bytes on the wire for {size}");
    assert_eq!(stderr.matches("resumed after").count(), 3, "{stderr}");

    let start_down = link.downstream_bytes();
    let mut download = sshd.remora_with_config(&config);
    download
        .args(["cp"])
        .arg(remote("flaky", &far.join("big.bin")))
        .arg(&back)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = download.spawn().unwrap();
    cut_three_times(&link, &back, size as u64);
    let output = crate::support::run_child(child, TIMEOUT).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(std::fs::read(back.join("big.bin")).unwrap() == data);
    let received = link.downstream_bytes() - start_down;
    assert!(
        received as f64 <= size as f64 * 1.05,
        "{received} bytes on the wire for {size}"
    );
}

#[test]
fn a_second_cp_resumes_the_first_ones_partial_file_and_checks_it_end_to_end() {
    let sshd = Sshd::start().unwrap();
    let size = 64 * 1024 * 1024;
    let data = noise(size, 8);
    let source = sshd.dir().join("data.bin");
    std::fs::write(&source, &data).unwrap();
    let far = sshd.dir().join("far");
    std::fs::create_dir_all(&far).unwrap();
    let interrupted = |dir: &Path, args: &[&OsStr]| {
        let mut child = sshd
            .remora()
            .arg("cp")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("a partial file", || part_len(dir) >= size as u64 / 3).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    };
    interrupted(&far, &[source.as_os_str(), &remote(sshd.alias(), &far)]);
    let summary = ok(cp(
        &sshd,
        &[os("--json"), source.as_os_str(), &remote(sshd.alias(), &far)],
    ));
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(
        json[0]["paths"][0]["resumed_from"].as_u64().unwrap() >= size as u64 / 3,
        "{summary}"
    );
    assert!(std::fs::read(far.join("data.bin")).unwrap() == data);
    assert!(partial_files(&far).is_empty());

    // A partial file that does not hold the source's bytes is caught by the checksum.
    std::fs::remove_file(far.join("data.bin")).unwrap();
    interrupted(&far, &[source.as_os_str(), &remote(sshd.alias(), &far)]);
    let part = partial_files(&far).remove(0);
    let file = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"garbage", 0).unwrap();
    let corrupt = cp(&sshd, &[source.as_os_str(), &remote(sshd.alias(), &far)]);
    assert_eq!(corrupt.status, 1, "{corrupt:?}");
    assert!(
        corrupt.stderr.contains("SHA-256") && corrupt.stderr.contains("data.bin"),
        "{corrupt:?}"
    );
    assert!(!far.join("data.bin").exists(), "nothing under the real name");
    assert!(partial_files(&far).is_empty(), "the bad partial file is gone");
    ok(cp(&sshd, &[source.as_os_str(), &remote(sshd.alias(), &far)]));
    assert!(std::fs::read(far.join("data.bin")).unwrap() == data);

    // Downloads resume a local partial file the same way.
    let back = sshd.dir().join("back");
    std::fs::create_dir_all(&back).unwrap();
    interrupted(&back, &[&remote(sshd.alias(), &source), back.as_os_str()]);
    let summary = ok(cp(
        &sshd,
        &[os("--json"), &remote(sshd.alias(), &source), back.as_os_str()],
    ));
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(
        json[0]["paths"][0]["resumed_from"].as_u64().unwrap() >= size as u64 / 3,
        "{summary}"
    );
    assert!(std::fs::read(back.join("data.bin")).unwrap() == data);
}

#[test]
fn set_uid_set_gid_and_sticky_bits_are_never_copied_in_either_direction() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let source = sshd.dir().join("special");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(source.join("tool"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    std::fs::create_dir(source.join("drop")).unwrap();
    std::fs::set_permissions(source.join("drop"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let far = sshd.dir().join("far-special");
    ok(cp(
        &sshd,
        &[os("-r"), os("-p"), source.as_os_str(), &remote(host, &far)],
    ));
    assert_eq!(
        (mode(&far.join("tool")), mode(&far.join("drop"))),
        (0o755, 0o777),
        "the agent keeps the permission bits of an upload, only those"
    );

    std::fs::set_permissions(far.join("tool"), std::fs::Permissions::from_mode(0o4711)).unwrap();
    let back = sshd.dir().join("back-special");
    ok(cp(&sshd, &[os("-r"), os("-p"), &remote(host, &far), back.as_os_str()]));
    assert_eq!(mode(&back.join("tool")), 0o711, "nor the client of a download");
}
