//! Text from a host, made safe to print on a terminal: control characters are shown as visible
//! escapes instead of being obeyed, like OpenSSH's `strnvis`.
//!
//! Every string a host sends that is printed outside command output (session names, labels,
//! command text, configuration names, the agent's error and refusal messages, keyboard-interactive
//! names, instructions and prompts, notices) goes through one of these functions first, so a host
//! cannot clear the screen, move the cursor, draw a fake prompt or rewrite a table.
//!
//! Invariants:
//! - The result holds no C0 control character (except `\n` from [`visible_lines`]), no DEL, no
//!   C1 control character and no bidirectional-override character: each becomes `\e`, `\r`, `\t`,
//!   `\n`, `\0`, `\a`, `\b`, `\x7f`, `\u{9b}`, `\u{202e}` and the like.
//! - Printable text, including any non-ASCII letter, is unchanged and borrowed, not copied.
//! - Invalid UTF-8 ([`visible_bytes`]) becomes `\xNN` for each byte that is not part of a
//!   character.
//! - Backslashes are left alone, as OpenSSH does with `VIS_NOSLASH`: the output is for people, not
//!   for decoding back.

use std::{borrow::Cow, fmt::Write};

/// `text` with every control character shown as an escape (`\e[2J` for ESC `[2J`); newlines too,
/// for one-line fields such as names, labels and table cells.
pub fn visible(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// `text` with every control character except `\n` shown as an escape, for messages that may
/// span lines (errors, keyboard-interactive instructions).
pub fn visible_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

/// Bytes from a host as visible text: valid UTF-8 as [`visible`] shows it, every other byte as
/// `\xNN`.
pub fn visible_bytes(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => visible(text),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(&visible(chunk.valid()));
                for byte in chunk.invalid() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let shown = |c: char| !needs_escape(c) || (keep_newlines && c == '\n');
    let Some(first) = text.find(|c| !shown(c)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match shown(c) {
            true => out.push(c),
            false => push_escape(&mut out, c),
        }
    }
    Cow::Owned(out)
}

/// C0, DEL, C1, and the characters that reorder a line (bidirectional overrides and isolates,
/// line and paragraph separators).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escape(out: &mut String, c: char) {
    let _ = match c {
        '\u{1b}' => out.write_str("\\e"),
        '\r' => out.write_str("\\r"),
        '\n' => out.write_str("\\n"),
        '\t' => out.write_str("\\t"),
        '\0' => out.write_str("\\0"),
        '\u{7}' => out.write_str("\\a"),
        '\u{8}' => out.write_str("\\b"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in ["web01", "déjà vu ✓", "a\\b", "", "tab-free"] {
            assert!(matches!(visible(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escape_sequences_become_visible() {
        assert_eq!(visible("\u{1b}[2Jx"), "\\e[2Jx");
        assert_eq!(visible("a\rb\tc\nd"), "a\\rb\\tc\\nd");
        assert_eq!(visible("\0\u{7}\u{8}\u{7f}\u{1}"), "\\0\\a\\b\\x7f\\x01");
    }

    #[test]
    fn c1_and_bidi_controls_become_visible() {
        assert_eq!(visible("a\u{9b}31mb"), "a\\u{9b}31mb");
        assert_eq!(visible("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(visible("x\u{2028}y"), "x\\u{2028}y");
    }

    #[test]
    fn lines_keep_newlines_only() {
        assert_eq!(visible_lines("one\ntwo\r\n\u{1b}]0;t\u{7}"), "one\ntwo\\r\n\\e]0;t\\a");
    }

    #[test]
    fn invalid_utf8_shows_each_stray_byte() {
        assert_eq!(visible_bytes(b"ok"), "ok");
        assert_eq!(visible_bytes(b"a\x9bb\xff\x1b"), "a\\x9bb\\xff\\e");
        assert_eq!(visible_bytes("é\u{1b}".as_bytes()), "é\\e");
    }

    #[test]
    fn nothing_raw_survives_any_input() {
        for byte in 0..=255u8 {
            let bytes = [b'x', byte, 0xc2, byte, b'y'];
            let shown = visible_bytes(&bytes);
            assert!(!shown.chars().any(needs_escape), "{bytes:?} -> {shown:?}");
        }
    }
}
