//! Host names offered by clients (option 12, option 81), reduced to one
//! legal DNS label, since that is all the DNS engine will publish for a lease.
//! Anything hostile (non-ASCII, control bytes, over-long) is refused, not
//! repaired.

use crate::lease::hostname::legal_label;

/// Option 81 flags (RFC 4702 §2.1).
pub const FQDN_S: u8 = 0x01;
pub const FQDN_O: u8 = 0x02;
pub const FQDN_E: u8 = 0x04;
pub const FQDN_N: u8 = 0x08;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fqdn {
    pub flags: u8,
    /// The first label of the name, when it is a legal host label.
    pub host_label: Option<String>,
}

/// Option 12: some clients append a NUL or send a dotted name; keep the
/// first label.
pub fn from_option12(data: &[u8]) -> Option<String> {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let text = std::str::from_utf8(&data[..end]).ok()?;
    first_label(text)
}

fn first_label(text: &str) -> Option<String> {
    let label = text.split('.').next()?;
    legal_label(label).then(|| label.to_string())
}

/// Option 81: flags, two obsolete rcode bytes, then a name in wire format
/// (E set) or ASCII (E clear). Shorter than 3 bytes is malformed.
pub fn parse_fqdn(data: &[u8]) -> Option<Fqdn> {
    if data.len() < 3 {
        return None;
    }
    let flags = data[0];
    let name = &data[3..];
    let host_label = if flags & FQDN_E != 0 {
        wire_first_label(name)
    } else {
        std::str::from_utf8(name).ok().and_then(first_label)
    };
    Some(Fqdn { flags, host_label })
}

fn wire_first_label(name: &[u8]) -> Option<String> {
    let (&len, rest) = name.split_first()?;
    let len = usize::from(len);
    // Compression pointers (top bits set) are not allowed in option 81.
    if len == 0 || len > 63 || rest.len() < len {
        return None;
    }
    let label = std::str::from_utf8(&rest[..len]).ok()?;
    legal_label(label).then(|| label.to_string())
}

/// The option 81 we send back (RFC 4702 §4): we publish the name in our own
/// DNS, so S is set, and O too when that overrides the client's wish; N is
/// clear; both rcodes 255. The name is echoed in the client's encoding.
pub fn fqdn_reply(client_flags: u8, name: &str, domain: Option<&str>) -> Vec<u8> {
    let mut flags = FQDN_S | (client_flags & FQDN_E);
    if client_flags & FQDN_S == 0 {
        flags |= FQDN_O;
    }
    let mut out = vec![flags, 255, 255];
    let full: Vec<&str> = std::iter::once(name)
        .chain(domain.into_iter().flat_map(|d| d.split('.')))
        .filter(|l| !l.is_empty())
        .collect();
    if client_flags & FQDN_E != 0 {
        for label in &full {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        if domain.is_some() {
            out.push(0);
        }
    } else {
        out.extend_from_slice(full.join(".").as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option12_keeps_first_legal_label() {
        assert_eq!(from_option12(b"laptop\0"), Some("laptop".into()));
        assert_eq!(from_option12(b"laptop.example.net"), Some("laptop".into()));
        assert_eq!(from_option12(b"my_pc-2"), Some("my_pc-2".into()));
        assert_eq!(from_option12(b"-bad"), None);
        assert_eq!(from_option12(b"has space"), None);
        assert_eq!(from_option12(&[0xc3, 0xa9]), None);
        assert_eq!(from_option12(&[b'a'; 64]), None);
        assert_eq!(from_option12(b""), None);
    }

    #[test]
    fn option81_both_encodings_and_short_data() {
        assert_eq!(parse_fqdn(&[0, 0]), None);
        let ascii = [&[0u8, 0, 0][..], b"host.example.net"].concat();
        assert_eq!(
            parse_fqdn(&ascii).unwrap().host_label.as_deref(),
            Some("host")
        );
        let wire = [&[FQDN_E | FQDN_S, 0, 0][..], b"\x04host\x07example\x00"].concat();
        let f = parse_fqdn(&wire).unwrap();
        assert_eq!(f.host_label.as_deref(), Some("host"));
        assert_eq!(f.flags, FQDN_E | FQDN_S);
        let pointer = [FQDN_E, 0, 0, 0xc0, 0x0c];
        assert_eq!(parse_fqdn(&pointer).unwrap().host_label, None);
        let truncated = [FQDN_E, 0, 0, 10, b'a'];
        assert_eq!(parse_fqdn(&truncated).unwrap().host_label, None);
    }

    #[test]
    fn fqdn_reply_sets_s_and_o_and_echoes_encoding() {
        let r = fqdn_reply(FQDN_E, "host", Some("lan"));
        assert_eq!(
            r,
            [
                &[FQDN_S | FQDN_O | FQDN_E, 255, 255][..],
                b"\x04host\x03lan\x00"
            ]
            .concat()
        );
        let r = fqdn_reply(FQDN_S, "host", None);
        assert_eq!(r, [&[FQDN_S, 255, 255][..], b"host"].concat());
    }
}
