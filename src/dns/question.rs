//! A message's question as bytes: where its name lies, and the letter case
//! of that name, which 0x20 encoding (draft-vixie-dnsext-dns0x20) makes
//! random on the way upstream and the engine puts back, the client's own,
//! on the way to each client.
//!
//! Bytes rather than a decoded `Name`: the case is compared and copied
//! byte for byte, and a reply is relayed without being decoded again.

use std::ops::Range;

use rand::Rng;

use super::engine::HEADER_LEN;

/// The longest name on the wire (RFC 1035 3.1).
const MAX_NAME: usize = 255;

/// Where the name of a message's only question lies: its labels and the
/// root label, written out at the start of the question section. None for
/// another question count, a compression pointer (nothing comes before
/// the question for it to point to) or a name that runs off the end.
pub fn name_span(msg: &[u8]) -> Option<Range<usize>> {
    if msg.len() < HEADER_LEN || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            let end = at + 1;
            return (end - HEADER_LEN <= MAX_NAME).then_some(HEADER_LEN..end);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
}

/// The question's type and class, after its name.
fn type_class(msg: &[u8], span: &Range<usize>) -> Option<(u16, u16)> {
    let b = msg.get(span.end..span.end + 4)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

/// How a reply's question compares with the one sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The same name, type and class, the name in the same letter case.
    Exact,
    /// The same but for the letter case of the name.
    OtherCase,
    /// Another question, or none that can be read.
    Different,
}

/// Compares `reply`'s question with `name` (wire form, as sent), `qtype`
/// and `qclass`.
pub fn compare(reply: &[u8], name: &[u8], qtype: u16, qclass: u16) -> Match {
    let Some(span) = name_span(reply) else {
        return Match::Different;
    };
    if type_class(reply, &span) != Some((qtype, qclass)) {
        return Match::Different;
    }
    let got = &reply[span];
    if got == name {
        Match::Exact
    } else if got.eq_ignore_ascii_case(name) {
        Match::OtherCase
    } else {
        Match::Different
    }
}

/// Gives every ASCII letter of `name` (wire form) a random case. Length
/// bytes are below 64, so they are never letters. Returns how many
/// letters there were: the bits a spoofer has to guess.
pub fn randomise<R: Rng>(name: &mut [u8], rng: &mut R) -> u32 {
    let mut bits = 0u64;
    let mut left = 0;
    let mut letters = 0;
    for b in name.iter_mut().filter(|b| b.is_ascii_alphabetic()) {
        if left == 0 {
            bits = rng.random();
            left = 64;
        }
        *b = if bits & 1 == 1 {
            b.to_ascii_uppercase()
        } else {
            b.to_ascii_lowercase()
        };
        bits >>= 1;
        left -= 1;
        letters += 1;
    }
    letters
}

/// Writes `name`'s letter case into `msg`'s question name, when they are
/// the same name; false (and `msg` untouched) otherwise.
pub fn restore(msg: &mut [u8], name: &[u8]) -> bool {
    let Some(span) = name_span(msg) else {
        return false;
    };
    let target = &mut msg[span];
    if !target.eq_ignore_ascii_case(name) {
        return false;
    }
    target.copy_from_slice(name);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A header with one question, then `name`, type A, class IN.
    fn msg(name: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    const WWW: &[u8] = b"\x03www\x07example\x03com\x00";

    #[test]
    fn span_covers_plain_names_only() {
        let m = msg(WWW);
        assert_eq!(name_span(&m), Some(12..12 + WWW.len()));
        assert_eq!(name_span(&msg(b"\x00")), Some(12..13));
        // A pointer, a label running off the end, two questions.
        assert_eq!(name_span(&msg(b"\xc0\x0c")), None);
        assert_eq!(name_span(&m[..16]), None);
        let mut two = m.clone();
        two[5] = 2;
        assert_eq!(name_span(&two), None);
        // Longer than 255 bytes.
        let long: Vec<u8> = (0..5)
            .flat_map(|_| std::iter::once(60).chain([b'a'; 60]))
            .chain([0])
            .collect();
        assert_eq!(name_span(&msg(&long)), None);
    }

    #[test]
    fn randomised_case_compares_and_restores() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut sent = WWW.to_vec();
        assert_eq!(randomise(&mut sent, &mut rng), 13);
        assert!(sent.eq_ignore_ascii_case(WWW));
        // Over many draws each letter takes both cases.
        let mut upper = [false; 32];
        let mut lower = [false; 32];
        for _ in 0..64 {
            let mut n = WWW.to_vec();
            randomise(&mut n, &mut rng);
            for (i, b) in n.iter().enumerate() {
                upper[i] |= b.is_ascii_uppercase();
                lower[i] |= b.is_ascii_lowercase();
            }
        }
        for (i, b) in WWW.iter().enumerate() {
            assert_eq!(upper[i], b.is_ascii_alphabetic(), "byte {i}");
            assert_eq!(lower[i], b.is_ascii_alphabetic(), "byte {i}");
        }
        let reply = msg(&sent);
        assert_eq!(compare(&reply, &sent, 1, 1), Match::Exact);
        assert_eq!(compare(&msg(WWW), &sent, 1, 1), Match::OtherCase);
        assert_eq!(compare(&reply, &sent, 28, 1), Match::Different);
        assert_eq!(
            compare(&msg(b"\x03wwx\x07example\x03com\x00"), &sent, 1, 1),
            Match::Different
        );
        // The client's own case goes back into the reply.
        let mut back = reply.clone();
        assert!(restore(&mut back, b"\x03WwW\x07example\x03COM\x00"));
        assert_eq!(&back[12..12 + WWW.len()], b"\x03WwW\x07example\x03COM\x00");
        assert!(!restore(&mut back, b"\x03xyz\x07example\x03com\x00"));
    }
}
