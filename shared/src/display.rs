//! How the wire's enums read in messages and tables: the same words as on the wire and in
//! `--json`, so people never see a `Debug` rendering.

use std::fmt;

use crate::message::{Availability, Buffering, CommandState, SessionState, Stream};

/// Writes `name`, or `unknown` for a value a newer peer sent.
fn word(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    f.pad(name)
}

impl fmt::Display for Buffering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        word(f, self.as_str())
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        word(
            f,
            match self {
                SessionState::Opened => "Opened",
                SessionState::Disconnected => "Disconnected",
                SessionState::Broken => "Broken",
                SessionState::Closed => "Closed",
                SessionState::Unknown => "Unknown",
            },
        )
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        word(
            f,
            match self {
                Availability::Available => "Available",
                Availability::Busy => "Busy",
                Availability::None => "None",
                Availability::Unknown => "Unknown",
            },
        )
    }
}

impl fmt::Display for CommandState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        word(
            f,
            match self {
                CommandState::Queued => "Queued",
                CommandState::Running => "Running",
                CommandState::Completed => "Completed",
                CommandState::Failed => "Failed",
                CommandState::Stopped => "Stopped",
                CommandState::Skipped => "Skipped",
                CommandState::Unknown => "Unknown",
            },
        )
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        word(
            f,
            match self {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_match_the_wire_and_pad_in_tables() {
        assert_eq!(Buffering::Spill.to_string(), "spill");
        assert_eq!(CommandState::Completed.to_string(), "Completed");
        assert_eq!(format!("{:<8}|", SessionState::Broken), "Broken  |");
    }
}
