//! Where frames begin and end in a byte stream that is copied, not parsed: the connection
//! holder relays an agent channel chunk by chunk, and may reuse the channel only when both
//! directions stopped exactly between frames.

/// Follows the length prefixes of a framed byte stream fed to it in arbitrary pieces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameBoundary {
    /// The current frame's length prefix, as far as it has arrived.
    prefix: [u8; 4],
    prefix_len: usize,
    /// Body bytes of the current frame still to come.
    body_left: u64,
    /// Frames completed so far.
    frames: u64,
}

impl FrameBoundary {
    /// Accounts for `bytes`, the next bytes of the stream.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let step = bytes.len().min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= step as u64;
                bytes = &bytes[step..];
                if self.body_left == 0 {
                    self.frames += 1;
                }
                continue;
            }
            let step = bytes.len().min(4 - self.prefix_len);
            self.prefix[self.prefix_len..self.prefix_len + step].copy_from_slice(&bytes[..step]);
            self.prefix_len += step;
            bytes = &bytes[step..];
            if self.prefix_len == 4 {
                self.prefix_len = 0;
                self.body_left = u64::from(u32::from_be_bytes(self.prefix));
                if self.body_left == 0 {
                    self.frames += 1;
                }
            }
        }
    }

    /// True when the bytes so far end exactly after a whole frame (or are none).
    pub fn between_frames(&self) -> bool {
        self.prefix_len == 0 && self.body_left == 0
    }

    /// How many bytes may be read next without reading past the end of the current frame's
    /// prefix or body (0 between frames).
    pub fn to_next_boundary(&self) -> usize {
        match self.prefix_len {
            0 => usize::try_from(self.body_left).unwrap_or(usize::MAX),
            partial => 4 - partial,
        }
    }

    /// Frames completed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, AgentBody, AgentFrame, Heartbeat};

    fn stream_of(count: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        for id in 0..count {
            let frame = AgentFrame {
                id,
                body: AgentBody::Ping(Heartbeat { sent_at: id * 1000 }),
            };
            encode(&frame, &mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn frames_are_followed_whatever_the_pieces() {
        let bytes = stream_of(5);
        for piece in 1..=bytes.len() {
            let mut boundary = FrameBoundary::default();
            for chunk in bytes.chunks(piece) {
                boundary.advance(chunk);
            }
            assert!(boundary.between_frames(), "pieces of {piece}");
            assert_eq!(boundary.frames(), 5, "pieces of {piece}");
        }
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_not_between_frames() {
        let bytes = stream_of(2);
        for cut in 1..bytes.len() {
            let mut boundary = FrameBoundary::default();
            boundary.advance(&bytes[..cut]);
            let at_first_end = cut == stream_of(1).len();
            assert_eq!(boundary.between_frames(), at_first_end, "cut at {cut}");
        }
    }

    #[test]
    fn an_empty_frame_and_a_split_prefix_are_counted() {
        let mut boundary = FrameBoundary::default();
        boundary.advance(&[0, 0]);
        assert!(!boundary.between_frames());
        assert_eq!(boundary.to_next_boundary(), 2, "the rest of the prefix");
        boundary.advance(&[0, 0, 0, 0, 0, 3, b'a']);
        assert_eq!(boundary.frames(), 1, "the empty frame");
        assert!(!boundary.between_frames());
        assert_eq!(boundary.to_next_boundary(), 2, "the rest of the body");
        boundary.advance(b"bc");
        assert!(boundary.between_frames());
        assert_eq!(boundary.frames(), 2);
    }
}
