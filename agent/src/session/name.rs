//! Session names: short, printable, safe in file names and shell prompts.

/// Longest accepted session name.
pub(super) const MAX_NAME_LEN: usize = 64;

/// Why a session name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("session name is empty")]
    Empty,
    #[error("session name is {0} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong(usize),
    #[error("session name {0:?} must not start with '.' or '-'")]
    BadStart(String),
    #[error("session name {name:?} contains {bad:?}; use letters, digits, '.', '_' and '-'")]
    BadChar { name: String, bad: char },
}

/// Accepts names of ASCII letters, digits, `.`, `_` and `-`, not starting with `.` or `-`.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidName::TooLong(name.len()));
    }
    if name.starts_with(['.', '-']) {
        return Err(InvalidName::BadStart(name.to_string()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(InvalidName::BadChar {
            name: name.to_string(),
            bad,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["build", "web01.deploy", "a_b-c", "X9"] {
            assert!(validate_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_paths_controls_and_oversize() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for name in [
            "",
            "..",
            "a/b",
            "../x",
            "a\0b",
            "tab\there",
            "-rf",
            ".hidden",
            "sp ace",
            long.as_str(),
        ] {
            assert!(validate_name(name).is_err(), "{name:?}");
        }
    }
}
