//! DNS messages over a TCP stream (RFC 1035 §4.2.2, RFC 7766): each one
//! behind a two-byte length. Sans-I/O: the connection hands in bytes as
//! they arrive, split however TCP split them, and takes whole messages out.
//! Keeping the partial prefix here, not in a pending read, is what lets the
//! connection wait for bytes and for replies at once without losing any.

/// The bytes of a connection not yet taken out as messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Bytes as read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if its length and all its bytes are in.
    /// Bounded: at most one message (64 KiB) plus one read waits here,
    /// because the connection takes messages out after every read.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        let prefix: [u8; 2] = self.buf.get(..2)?.try_into().ok()?;
        let end = 2 + usize::from(u16::from_be_bytes(prefix));
        let message = self.buf.get(2..end)?.to_vec();
        self.buf.drain(..end);
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn messages_come_out_whole_however_the_bytes_are_split() {
        let bodies: [&[u8]; 4] = [b"one", b"", b"three three", &[7u8; 300]];
        let stream: Vec<u8> = bodies.iter().flat_map(|b| framed(b)).collect();
        for chunk in 1..=stream.len() {
            let mut r = FrameReader::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                r.push(piece);
                while let Some(m) = r.next_message() {
                    out.push(m);
                }
            }
            assert_eq!(out, bodies.map(<[u8]>::to_vec), "chunks of {chunk}");
            assert!(r.buf.is_empty());
        }
    }

    #[test]
    fn a_partial_message_waits_for_the_rest() {
        let mut r = FrameReader::default();
        r.push(&[0]);
        assert_eq!(r.next_message(), None);
        r.push(&[2, b'a']);
        assert_eq!(r.next_message(), None);
        r.push(b"b");
        assert_eq!(r.next_message(), Some(b"ab".to_vec()));
        assert_eq!(r.next_message(), None);
    }
}
