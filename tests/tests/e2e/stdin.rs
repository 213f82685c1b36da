//! stdin to commands: forwarded when it is not a terminal, EOF delivered, `-n` keeps /dev/null,
//! every host gets the same bytes, a cut link resumes the input exactly, and `--disconnected`
//! stores it on the host before the command starts.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use sha2::{Digest, Sha256};

use crate::support::{remora, run_child, wait_until, Sshd, TIMEOUT};

/// Deterministic noise: every byte value, no line structure.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x853c_49e6_748f_ea9bu64 ^ seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

/// Runs `remora ARGS` with `input` on its stdin (written from a thread); returns status,
/// stdout bytes and stderr.
pub fn with_stdin(mut command: Command, args: &[&str], input: Vec<u8>) -> (i32, Vec<u8>, String) {
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = run_child(child, TIMEOUT).unwrap();
    writer.join().unwrap();
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn binary_stdin_larger_than_every_buffer_reaches_the_command_byte_for_byte() {
    let sshd = Sshd::start().unwrap();
    let input = noise(40 * 1024 * 1024, 1);
    let (status, stdout, stderr) = with_stdin(sshd.remora(), &["invoke", sshd.alias(), "--", "cat"], input.clone());
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout.len(), input.len(), "{stderr}");
    assert!(stdout == input, "every byte once, in order");
}

#[test]
fn an_empty_stdin_is_end_of_file_and_dash_n_keeps_dev_null() {
    let sshd = Sshd::start().unwrap();
    let (status, stdout, stderr) = with_stdin(sshd.remora(), &["invoke", sshd.alias(), "--", "wc -c"], Vec::new());
    assert_eq!((status, String::from_utf8_lossy(&stdout).trim()), (0, "0"), "{stderr}");
    let (status, stdout, stderr) = with_stdin(
        sshd.remora(),
        &["invoke", sshd.alias(), "-n", "--", "cat; echo done"],
        b"must not arrive".to_vec(),
    );
    assert_eq!(
        (status, String::from_utf8_lossy(&stdout).as_ref()),
        (0, "done\n"),
        "{stderr}"
    );
}

#[test]
fn a_command_reads_its_input_and_never_the_runspace_command_stream() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let (status, stdout, stderr) = with_stdin(
        sshd.remora(),
        &[
            "invoke",
            host,
            "--name",
            "s",
            "--",
            "read a; read b; read c; echo \"[$a|$b|$c]\"; cat",
        ],
        b"one\ntwo\n".to_vec(),
    );
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        "[one|two|]\n",
        "EOF after the input, nothing of the shell's"
    );
    let next = remora(&sshd, &["invoke", host, "--name", "s", "--", "echo still-here"]).ok();
    assert_eq!(next, "still-here\n", "the runspace goes on");
}

#[test]
fn every_host_gets_the_same_input() {
    let sshd = Sshd::start().unwrap();
    sshd.add_alias("second", sshd.port()).unwrap();
    let input = noise(3 * 1024 * 1024, 2);
    let hosts = format!("{},second", sshd.alias());
    let (status, stdout, stderr) = with_stdin(sshd.remora(), &["invoke", &hosts, "--", "sha256sum"], input.clone());
    assert_eq!(status, 0, "{stderr}");
    let text = String::from_utf8_lossy(&stdout);
    let digest = sha256_hex(&input);
    assert_eq!(text.matches(&digest).count(), 2, "{text}");
}

#[test]
fn stdin_cut_twice_midway_arrives_exactly_once() {
    let sshd = Sshd::start().unwrap();
    let (link, config) = crate::support::flaky(&sshd);
    let input = noise(48 * 1024 * 1024, 3);
    let mut child = sshd
        .remora_with_config(&config)
        .args(["invoke", "flaky", "--", "sha256sum"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let expected = sha256_hex(&input);
    let link = &link;
    let (output, cuts) = std::thread::scope(|scope| {
        let cutter = scope.spawn(move || {
            let piece = 1024 * 1024;
            let mut cuts = 0;
            for (i, chunk) in input.chunks(piece).enumerate() {
                if stdin.write_all(chunk).is_err() {
                    return cuts;
                }
                if (i == 12 || i == 30) && link.connections() > cuts {
                    link.cut();
                    cuts += 1;
                }
            }
            drop(stdin);
            cuts
        });
        let output = run_child(child, TIMEOUT).unwrap();
        (output, cutter.join().unwrap())
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(&expected), "{stdout} {stderr}");
    assert_eq!(cuts, 2);
    assert!(stderr.matches("resumed after").count() >= 2, "{stderr}");
}

#[test]
fn disconnected_stdin_is_stored_before_the_command_starts_and_outlives_the_client() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let gate = sshd.dir().join("gate");
    let input = noise(3 * 1024 * 1024, 4);
    let command = format!("while [ ! -e {} ]; do sleep 0.05; done; sha256sum", gate.display());
    let (status, stdout, stderr) = with_stdin(
        sshd.remora(),
        &["invoke", host, "--name", "stored", "--disconnected", "--", &command],
        input.clone(),
    );
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), "stored");
    // The client is gone; the input is on the host, in memory and a private spill file.
    let spilled = find_input_files(&sshd.state_dir());
    assert_eq!(spilled.len(), 1, "one spill file for the input past its memory share");
    let mode = std::fs::metadata(&spilled[0]).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    std::fs::write(&gate, b"").unwrap();
    let received = remora(&sshd, &["receive", host, "--name", "stored"]).ok();
    assert!(received.contains(&sha256_hex(&input)), "{received}");
    wait_until("the stored input to be removed", || {
        find_input_files(&sshd.state_dir()).is_empty()
    })
    .unwrap();
}

#[test]
fn a_job_with_stdin_waits_for_all_of_it_and_commands_keep_their_order() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let (status, _, stderr) = with_stdin(
        sshd.remora(),
        &["invoke", host, "--name", "q", "--job", "--", "tr a-z A-Z"],
        b"hello\n".to_vec(),
    );
    assert_eq!(status, 0, "{stderr}");
    remora(
        &sshd,
        &["invoke", host, "--name", "q", "--job", "-n", "--", "echo second"],
    )
    .ok();
    let received = remora(&sshd, &["receive", host, "--name", "q"]).ok();
    assert_eq!(received, "HELLO\nsecond\n");
}

fn find_input_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_input_files(&path));
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("-input-"))
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_command_that_does_not_read_holds_the_input_back_within_the_buffers() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    let sshd = Sshd::start().unwrap();
    let gate = sshd.dir().join("gate");
    let command = format!("while [ ! -e {} ]; do sleep 0.05; done; sha256sum", gate.display());
    let mut child = sshd
        .remora()
        .args(["invoke", sshd.alias(), "--", &command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = noise(64 * 1024 * 1024, 5);
    let expected = sha256_hex(&input);
    let written = Arc::new(AtomicUsize::new(0));
    let mut stdin = child.stdin.take().unwrap();
    let counter = written.clone();
    let writer = std::thread::spawn(move || {
        for piece in input.chunks(1024 * 1024) {
            if stdin.write_all(piece).is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mib = || written.load(Ordering::SeqCst);
    wait_until("input to flow", || mib() >= 4).unwrap();
    // Client window (8 MiB) + the agent's share (4 MiB) + the fifo (1 MiB) + local pipes: the
    // writer must stall far below 40 MiB while the command reads nothing.
    let overran =
        crate::support::wait_until_within(std::time::Duration::from_secs(3), "input past the buffers", || {
            mib() >= 40
        });
    assert!(
        overran.is_err(),
        "{} MiB taken in while the command read nothing",
        mib()
    );
    std::fs::write(&gate, b"").unwrap();
    let output = run_child(child, TIMEOUT).unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains(&expected), "{stderr}");
}
