//! The terminal's screen model: a `vt100` emulator fed every output byte, the lines that
//! scrolled off its top (with their colours), and the plain-text transcript made from them.
//!
//! The emulator keeps no scrollback of its own (its cells cost 32 bytes each, 25 MB for 10,000
//! lines of 80 columns); rows are taken as they scroll off (`on_scroll`) and kept as short SGR
//! strings instead, at most `scrollback` of them, so memory per terminal stays bounded by the
//! scrollback whatever the output holds. The transcript is not kept beside them: a request
//! strips the colours from the kept lines it has not given yet, so a line that scrolls off
//! costs one formatting (it is on the path of every byte a `cat` prints).
//!
//! Invariants (a byte budget per terminal, whatever the window size or the output):
//! - The emulator's grid has at most [`MAX_CELLS`] cells: a larger window is clamped to it, the
//!   columns kept and the rows reduced ([`fit`]), so a client with a huge window still works, on
//!   fewer rows. Both grids (main and alternate) together stay under 2 × 32 B × [`MAX_CELLS`].
//! - The kept lines hold at most [`HISTORY_BYTES`] bytes, however wide each line is; the oldest
//!   go first. A transcript gives at most those lines, and counts the ones that went before it
//!   could give them.

use std::collections::VecDeque;
use std::num::NonZeroU16;

use vt100::{
    capture::{basic_formatted_to_plain, BasicFormattedCaptureState, RowContents},
    Callbacks,
};

/// Most cells (rows × columns) the model holds: 32 B each, 16 MB a grid; well above real
/// screens (an 8K display in a small font is about 1,300 × 360 = 470,000).
pub const MAX_CELLS: u32 = 500_000;

/// Most bytes of scrolled-off lines kept (so a transcript gives at most as many): a redraw and a transcript
/// each fit in one frame.
pub const HISTORY_BYTES: usize = 4 << 20;

/// The size the model (and the pty) take for a window of `rows` × `cols`: the same, or the
/// columns with as many rows as [`MAX_CELLS`] allows.
pub fn fit(rows: u16, cols: u16) -> (u16, u16) {
    let (rows, cols) = (rows.max(1), cols.max(1));
    let most_rows = (MAX_CELLS / u32::from(cols)).clamp(1, u32::from(u16::MAX)) as u16;
    (rows.min(most_rows), cols)
}

/// Lines kept, oldest first, bounded by count and by bytes.
#[derive(Debug, Default)]
pub struct Lines {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Lines {
    /// Appends, letting the oldest lines go past `limit` lines or [`HISTORY_BYTES`].
    fn push(&mut self, line: String, limit: usize) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > limit || self.bytes > HISTORY_BYTES {
            let Some(old) = self.lines.pop_front() else { break };
            self.bytes -= old.len();
        }
    }

    fn iter(&self) -> impl Iterator<Item = &String> {
        self.lines.iter()
    }

    fn len(&self) -> u64 {
        self.lines.len() as u64
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Lines kept beside the emulator.
#[derive(Debug, Default)]
pub struct History {
    /// Lines as they looked (SGR only), oldest first: the newest of the `scrolled`.
    pub lines: Lines,
    /// The number of the first scrolled-off line no transcript has given yet.
    pub untaken: u64,
    /// Lines that have scrolled off the main screen so far: the number of the screen's top row,
    /// counting every line the terminal ever showed from 0.
    pub scrolled: u64,
    pub limit: usize,
}

impl History {
    /// The scrolled-off lines no transcript has given yet, as plain text with their numbers,
    /// and how many of them went before they could be given; the next call starts after them.
    fn take_untaken(&mut self) -> (Vec<(u64, String)>, u64) {
        let kept_from = self.scrolled - self.lines.len();
        let from = self.untaken.max(kept_from);
        let lost = from - self.untaken;
        self.untaken = self.scrolled;
        let lines = self
            .lines
            .iter()
            .skip((from - kept_from) as usize)
            .zip(from..)
            .map(|(line, number)| (number, plain(line)))
            .collect();
        (lines, lost)
    }
}

/// A kept line without its colours, trailing blanks trimmed.
fn plain(formatted: &str) -> String {
    let mut text: String = basic_formatted_to_plain(formatted).collect();
    text.truncate(text.trim_end().len());
    text
}

impl Callbacks for History {
    fn on_scroll(&mut self, contents: RowContents<'_>, alternate_screen: bool) {
        // A full-screen program's rows are not history, as in xterm.
        if alternate_screen || self.limit == 0 {
            return;
        }
        let mut line = String::new();
        let _ = contents.write_formatted_basic(&mut line, &mut BasicFormattedCaptureState::new());
        line.push_str("\x1b[m");
        self.lines.push(line, self.limit);
        self.scrolled += 1;
    }
}

/// The emulator with its history.
pub struct Screen {
    parser: vt100::Parser<History>,
    /// The main screen's rows as the last transcript gave them, by line number: the next one
    /// leaves out a line that is still (or has since scrolled off) exactly as it was given.
    given: std::collections::BTreeMap<u64, String>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen").field("size", &self.size()).finish()
    }
}

fn side(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    /// A model of a `rows` × `cols` window, clamped by [`fit`].
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> Self {
        let history = History {
            limit: scrollback,
            ..History::default()
        };
        let (rows, cols) = fit(rows, cols);
        Self {
            parser: vt100::Parser::new_with_callbacks(side(rows), side(cols), 0, history),
            given: Default::default(),
        }
    }

    pub fn process(&mut self, bytes: &[u8]) {
        self.parser.process(bytes);
    }

    /// Resizes to a `rows` × `cols` window, clamped by [`fit`]; [`Screen::size`] says to what.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let (rows, cols) = fit(rows, cols);
        self.parser.screen_mut().set_size(side(rows), side(cols));
    }

    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (rows.get(), cols.get())
    }

    /// Scrolled-off lines (with colours), oldest first.
    pub fn scrollback(&self) -> Vec<Vec<u8>> {
        let history = self.parser.callbacks();
        history.lines.iter().map(|l| l.clone().into_bytes()).collect()
    }

    /// Bytes that make a terminal of the same size show this screen: the alternate screen when a
    /// full-screen program is on it, contents, attributes, cursor and input modes.
    pub fn repaint(&self) -> Vec<u8> {
        let screen = self.parser.screen();
        let mut out = Vec::new();
        // Start from the main screen with default modes, then switch as the model says.
        out.extend_from_slice(b"\x1b[?1049l\x1b[m");
        if screen.alternate_screen() {
            out.extend_from_slice(b"\x1b[?1049h");
        }
        out.extend_from_slice(screen.state_formatted().as_bytes());
        out
    }

    /// The plain-text transcript since the last call: the lines that scrolled off the main
    /// screen, then the main screen's rows (the shell's, also while a full-screen program such
    /// as vim has the alternate screen), leaving out every line the last call gave that is still
    /// as it was. A line that changed since (the prompt line, typed on) comes again.
    pub fn take_transcript(&mut self) -> (String, u64) {
        let history = self.parser.callbacks_mut();
        let scrolled = history.scrolled;
        let (untaken, lost) = history.take_untaken();
        let rows = main_screen_rows(self.parser.screen());
        let end = rows.iter().rposition(|row| !row.is_empty()).map_or(0, |last| last + 1);
        let numbered = untaken.into_iter().chain(
            rows.into_iter()
                .take(end)
                .enumerate()
                .map(|(r, row)| (scrolled + r as u64, row)),
        );
        let mut text = String::new();
        let mut given = std::collections::BTreeMap::new();
        for (number, line) in numbered {
            if self.given.get(&number) != Some(&line) {
                text.push_str(&line);
                text.push('\n');
            }
            if number >= scrolled {
                given.insert(number, line);
            }
        }
        self.given = given;
        (text, lost)
    }

    /// Plain contents of the visible screen (tests, logs at trace level never).
    pub fn contents(&self) -> String {
        self.parser.screen().contents()
    }
}

/// The main screen's rows as plain text, trimmed: the screen itself, or with a full-screen
/// program on the alternate screen, what a copy shows once it leaves it.
fn main_screen_rows(screen: &vt100::Screen) -> Vec<String> {
    let (_, cols) = screen.size();
    let rows = |screen: &vt100::Screen| -> Vec<String> {
        screen
            .rows(0, cols.get())
            .map(|row| row.trim_end().to_string())
            .collect()
    };
    if !screen.alternate_screen() {
        return rows(screen);
    }
    let (height, width) = screen.size();
    let mut main = vt100::Parser::new(height, width, 0);
    *main.screen_mut() = screen.clone();
    main.process(b"\x1b[?1049l");
    rows(main.screen())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_scrolled_off_are_kept_with_their_colours_and_bounded() {
        let mut screen = Screen::new(3, 20, 5);
        for i in 1..=10 {
            screen.process(format!("\x1b[31mline {i}\x1b[m\r\n").as_bytes());
        }
        let lines = screen.scrollback();
        assert_eq!(lines.len(), 5);
        let last = String::from_utf8(lines[4].clone()).unwrap();
        assert!(last.contains("line 8") && last.contains("\x1b[31m"), "{last:?}");
        let (text, lost) = screen.take_transcript();
        assert!(text.starts_with("line 4\n"), "{text:?}");
        assert!(text.contains("line 10"));
        assert_eq!(lost, 3);
    }

    #[test]
    fn a_second_transcript_gives_only_what_came_since() {
        let mut screen = Screen::new(3, 20, 100);
        screen.process(b"a\r\nb\r\n$ ");
        assert_eq!(screen.take_transcript().0, "a\nb\n$\n");
        assert_eq!(screen.take_transcript().0, "", "nothing came since");
        // a and b scroll off now: given already, they are not given again.
        screen.process(b"ls\r\nc\r\nd\r\n$ ");
        assert_eq!(screen.take_transcript().0, "$ ls\nc\nd\n$\n");
        // A cleared screen's new rows are new lines, though they sit where given ones were.
        screen.process(b"\x1b[H\x1b[2Jfresh\r\n$ ");
        assert_eq!(screen.take_transcript().0, "fresh\n$\n");
    }

    #[test]
    fn with_vim_on_the_alternate_screen_the_transcript_is_the_shells() {
        let mut screen = Screen::new(5, 30, 100);
        screen.process(b"$ echo before\r\nbefore\r\n$ vim notes\r\n\x1b[?1049h\x1b[H~ vim's own screen");
        let text = screen.take_transcript().0;
        assert!(text.contains("before\n$ vim notes\n"), "{text:?}");
        assert!(!text.contains("vim's own screen"), "{text:?}");
        assert!(
            screen.parser.screen().alternate_screen(),
            "the model itself stays on vim's screen"
        );
    }

    #[test]
    fn a_repaint_reproduces_the_screen_in_a_fresh_emulator() {
        let mut screen = Screen::new(5, 20, 100);
        screen.process(b"hello\r\n\x1b[1;32mgreen\x1b[m\r\n\x1b[?1049h\x1b[2;3Hfull screen");
        let mut copy = vt100::Parser::new(side(5), side(20), 0);
        copy.process(&screen.repaint());
        assert_eq!(copy.screen().contents(), screen.contents());
        assert!(copy.screen().alternate_screen());
        assert_eq!(
            copy.screen().cursor_position(),
            screen.parser.screen().cursor_position()
        );
    }

    #[test]
    fn a_huge_window_is_clamped_to_the_cell_budget_keeping_its_columns() {
        assert_eq!(fit(50, 200), (50, 200));
        assert_eq!(fit(10_000, 10_000), (50, 10_000));
        assert_eq!(fit(10_000, 1), (10_000, 1));
        assert_eq!(fit(0, 0), (1, 1));
        let mut screen = Screen::new(10_000, 10_000, 100);
        assert_eq!(screen.size(), (50, 10_000));
        screen.resize(9_000, 2_000);
        assert_eq!(screen.size(), (250, 2_000));
        let (rows, cols) = screen.size();
        assert!(u32::from(rows) * u32::from(cols) <= MAX_CELLS);
        screen.process(b"\x1b[?1049hstill works");
        assert!(screen.contents().contains("still works"));
    }

    #[test]
    fn wide_lines_are_bounded_by_bytes_not_only_by_count() {
        let mut screen = Screen::new(2, 10_000, 100_000);
        let wide: String = (0..10_000).map(|i| format!("\x1b[3{}m✓", i % 8)).collect();
        for _ in 0..200 {
            screen.process(format!("{wide}\r\n").as_bytes());
        }
        let history = screen.parser.callbacks();
        assert!(history.lines.bytes() <= HISTORY_BYTES, "{}", history.lines.bytes());
        assert!(!screen.scrollback().is_empty(), "the newest lines are kept");
        let kept = screen.scrollback().len() as u64;
        let scrolled = history.scrolled;
        let (text, lost) = screen.take_transcript();
        assert_eq!(
            lost,
            scrolled - kept,
            "the oldest transcript lines went, and are counted"
        );
        assert!(text.len() <= HISTORY_BYTES + wide.len(), "{}", text.len());
    }

    #[test]
    fn hostile_output_does_not_grow_memory() {
        let mut screen = Screen::new(24, 80, 100);
        let junk: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 256) as u8).collect();
        for _ in 0..5 {
            screen.process(&junk);
            screen.process(b"\x1b[9999S\x1b[99999;99999H\x1b]0;title\x07");
        }
        assert!(screen.scrollback().len() <= 100);
    }
}
