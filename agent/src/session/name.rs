//! Session names: short, printable, safe in file names and shell prompts.

/// Longest accepted session name.
pub const MAX_NAME_LEN: usize = 64;

/// Accepts names of ASCII letters, digits, `.`, `_` and `-`, not starting with `.` or `-`.
/// Returns a message for people on refusal.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("session name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "session name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!("session name {name:?} must not start with '.' or '-'"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "session name {name:?} contains {bad:?}; use letters, digits, '.', '_' and '-'"
        ));
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
