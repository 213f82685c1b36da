//! Text from a host is shown, not obeyed: names, labels, command text, configuration names and
//! refusals reach the terminal with their control characters as visible escapes, tables stay
//! aligned, and command output and `--json` stay byte-exact.

use serde_json::Value;

use crate::support::{remora, write_agent_config, Run, Sshd};

/// A configuration name holding a screen clear, in agent.toml on the host.
const EVIL_CONFIG: &str = "\u{1b}[2Jevil";

/// Nothing the terminal would obey: no ESC, CSI, CR or bidi override.
fn assert_inert(what: &str, run: &Run) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let raw = text
            .chars()
            .find(|c| matches!(c, '\u{1b}' | '\u{9b}' | '\r' | '\u{202e}'));
        assert_eq!(raw, None, "{what}: a raw control character reached {stream}: {run:?}");
    }
}

#[test]
fn job_labels_and_command_text_are_shown_as_escapes() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let command = "printf 'out\\n' # \u{1b}]0;pwned\u{7}\u{1b}[2J\rFAKE";
    let label = "x\u{202e}txt";
    let id = remora(
        &sshd,
        &["invoke", host, "--name", "t", "--job", "--label", label, "--", command],
    )
    .ok();
    let id = id.trim();

    let wait = remora(&sshd, &["wait", host, "--name", "t", "--notify"]);
    assert_eq!(wait.status, 0, "{wait:?}");
    assert_inert("wait --notify", &wait);
    assert!(wait.stderr.contains("[x\\u{202e}txt]"), "{wait:?}");

    let jobs = remora(&sshd, &["jobs", host, "--name", "t"]);
    assert_inert("jobs", &jobs);
    assert!(
        jobs.stdout.contains("# \\e]0;pwned\\a\\e[2J\\rFAKE") && jobs.stdout.contains("x\\u{202e}tx"),
        "{jobs:?}"
    );

    let json: Vec<Value> = serde_json::from_str(&remora(&sshd, &["jobs", host, "--name", "t", "--json"]).ok()).unwrap();
    assert_eq!(
        (json[0]["command"].as_str(), json[0]["label"].as_str()),
        (Some(command), Some(label))
    );

    let received = remora(&sshd, &["receive", host, "--name", "t", "--job", id]);
    assert_eq!(
        (received.status, received.stdout.as_str()),
        (0, "out\n"),
        "{received:?}"
    );
}

#[test]
fn a_stopped_jobs_command_text_is_shown_as_escapes() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    let command = "sleep 30 # \u{1b}[1A\u{1b}[2K\rfake prompt: ";
    remora(&sshd, &["invoke", host, "--name", "s", "--job", "--", command]).ok();
    let stop = remora(&sshd, &["stop", host, "--name", "s", "--job", "1"]);
    assert_eq!(stop.status, 0, "{stop:?}");
    assert_inert("stop", &stop);
    assert!(stop.stdout.contains("# \\e[1A\\e[2K\\rfake prompt:"), "{stop:?}");
}

#[test]
fn configuration_names_from_the_host_are_shown_as_escapes_and_the_table_stays_aligned() {
    let sshd = Sshd::start().unwrap();
    let host = sshd.alias();
    write_agent_config(&sshd, "[configurations.\"\\u001b[2Jevil\"]\nidle_timeout = \"15m\"\n");
    remora(&sshd, &["new", host, "--name", "c", "--config", EVIL_CONFIG]).ok();

    let ls = remora(&sshd, &["ls", host]);
    assert_inert("ls", &ls);
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{ls:?}");
    let column = |line: &str, text: &str| line.find(text).map(|at| line[..at].chars().count());
    assert_eq!(
        column(lines[1], "\\e[2Jevil"),
        column(lines[0], "Configuration"),
        "{ls:?}"
    );
    assert_eq!(column(lines[1], "None"), column(lines[0], "Availability"), "{ls:?}");

    let json: Vec<Value> = serde_json::from_str(&remora(&sshd, &["ls", host, "--json"]).ok()).unwrap();
    assert_eq!(
        json[0]["configuration"].as_str(),
        Some(EVIL_CONFIG),
        "--json stays exact"
    );

    // The agent's refusal lists the configurations it has: the host's own words.
    let unknown = remora(&sshd, &["new", host, "--name", "x", "--config", "nope"]);
    assert_eq!(unknown.status, 1, "{unknown:?}");
    assert_inert("a refusal", &unknown);
    assert!(unknown.stderr.contains("\\e[2Jevil"), "{unknown:?}");
}

#[test]
fn a_refusal_that_quotes_a_host_path_is_shown_as_escapes() {
    let sshd = Sshd::start().unwrap();
    let dir = sshd.dir().join("tree\u{1b}[2J\rgone");
    std::fs::create_dir(&dir).unwrap();
    let source = format!("{}:{}", sshd.alias(), dir.display());
    let dest = sshd.dir().join("dest");
    let copy = remora(&sshd, &["cp", &source, dest.to_str().unwrap()]);
    assert_ne!(copy.status, 0, "{copy:?}");
    assert_inert("cp's refusal", &copy);
    assert!(copy.stderr.contains("tree\\e[2J\\rgone"), "{copy:?}");
}
