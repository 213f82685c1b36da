//! The OOM killer's order: a command the daemon runs is chosen before the daemon, so one
//! runaway command costs that command, not every session of the user on the host.
//!
//! Without privileges a process may raise any `oom_score_adj` of its own uid but lower none
//! below the floor it was given, so the daemon does not lower its own: it raises its
//! children's (the runspace shell, a terminal's shell) above its own by [`COMMAND_OOM_BONUS`].
//! What they start inherits the value.

use std::{fs, io};

/// How much more likely than the daemon a command is to be chosen (the scale is -1000..=1000).
pub const COMMAND_OOM_BONUS: i32 = 500;
/// The largest `oom_score_adj`.
const MOST: i32 = 1000;

/// Sets `pid`'s `oom_score_adj` to this process's plus [`COMMAND_OOM_BONUS`] (at most 1000)
/// and returns it.
pub fn rank_before_self(pid: u32) -> io::Result<i32> {
    let own = read("/proc/self/oom_score_adj")?;
    let value = own.saturating_add(COMMAND_OOM_BONUS).min(MOST);
    fs::write(format!("/proc/{pid}/oom_score_adj"), format!("{value}\n"))?;
    Ok(value)
}

fn read(path: &str) -> io::Result<i32> {
    let text = fs::read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path} holds {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_ranked_before_its_parent() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let own = read("/proc/self/oom_score_adj").unwrap();
        let set = rank_before_self(child.id());
        let seen = read(&format!("/proc/{}/oom_score_adj", child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        let set = set.unwrap();
        assert_eq!(set, (own + COMMAND_OOM_BONUS).min(MOST));
        assert_eq!(seen.unwrap(), set);
        assert!(set > own || own == MOST);
    }
}
