//! `remora demo`: the README's first command, against the agent's embedded SSH server.

use std::process::Command;

use crate::support::{binaries, live_command_lines, run, TIMEOUT};

#[test]
fn the_demo_walks_through_every_verb_and_cleans_up() {
    let home = tempfile::tempdir().unwrap();
    let mut demo = Command::new(&binaries().remora);
    demo.args(["demo", "--agent"])
        .arg(&binaries().agent)
        .env("HOME", home.path());
    let output = run(&mut demo, TIMEOUT).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "$ remora new demo-host --name build",
        "started command 1 and returned at once",
        "step 1 of 3\nstep 2 of 3\nstep 3 of 3\n",
        "(exit status 3)",
        "(0 bytes)",
        "same shell: i=3",
        "removed build",
        "0 sessions",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let state = stdout
        .split("(state in ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    assert!(
        !std::path::Path::new(state).exists(),
        "the demo removed its state dir {state}"
    );
    let left: Vec<String> = live_command_lines().into_iter().filter(|c| c.contains(state)).collect();
    assert!(left.is_empty(), "the demo ended its server and daemon: {left:?}");
}
