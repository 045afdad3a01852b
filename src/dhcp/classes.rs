//! Tags from what the client says it is: `dhcp-vendorclass` (option 60),
//! `dhcp-userclass` (option 77) and `dhcp-match` (any option), matched on
//! the raw request bytes the way dnsmasq matches them.

use crate::config::{ClassMatch, MatchForm, OptionMatch};

const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
const OPT_OVERLOAD: u8 = 52;
const OPT_VENDOR_CLASS: u8 = 60;
const OPT_USER_CLASS: u8 = 77;
/// Header and magic cookie.
const OPTIONS_AT: usize = 240;
const FILE: std::ops::Range<usize> = 108..236;
const SNAME: std::ops::Range<usize> = 44..108;

/// The first instance of `code` with at least one byte, in one area.
fn find_in(area: &[u8], code: u8) -> Option<&[u8]> {
    let mut i = 0;
    while i < area.len() {
        match area[i] {
            OPT_PAD => i += 1,
            OPT_END => return None,
            c => {
                let len = usize::from(*area.get(i + 1)?);
                let data = area.get(i + 2..i + 2 + len)?;
                if c == code && len >= 1 {
                    return Some(data);
                }
                i += 2 + len;
            }
        }
    }
    None
}

/// `code` in the options, then in the `file` and `sname` fields when
/// option 52 says they hold options (RFC 2132 §9.3), as dnsmasq looks.
pub fn find_option(packet: &[u8], code: u8) -> Option<&[u8]> {
    let opts = packet.get(OPTIONS_AT..)?;
    if let Some(d) = find_in(opts, code) {
        return Some(d);
    }
    let overload = find_in(opts, OPT_OVERLOAD)?.first().copied()?;
    if overload & 1 != 0 {
        if let Some(d) = packet.get(FILE).and_then(|a| find_in(a, code)) {
            return Some(d);
        }
    }
    if overload & 2 != 0 {
        return packet.get(SNAME).and_then(|a| find_in(a, code));
    }
    None
}

/// RFC 3004 makes option 77 a list of counted strings. When the counts add
/// up, dnsmasq zeroes them so that a count byte cannot join a match; a
/// value whose counts do not add up (some clients send one bare string)
/// is matched as it is.
fn user_class_text(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    let mut j = 0;
    while j < raw.len() {
        j += usize::from(raw[j]) + 1;
    }
    if j == raw.len() {
        let mut j = 0;
        while j < out.len() {
            let next = j + usize::from(out[j]) + 1;
            out[j] = 0;
            j = next;
        }
    }
    out
}

/// dnsmasq's comparison: hex at the start, text anywhere, numbers and
/// addresses at any multiple of their own length.
fn matches(m: &OptionMatch, data: &[u8]) -> bool {
    let n = m.data.len();
    if n == 0 {
        return true;
    }
    if n > data.len() {
        return false;
    }
    match m.form {
        MatchForm::Hex => data.starts_with(&m.data),
        MatchForm::Text => data.windows(n).any(|w| w == m.data),
        MatchForm::Other => data.chunks_exact(n).any(|w| w == m.data),
    }
}

/// Appends the tags of every `dhcp-match` line the request matches.
pub fn add_match_tags(lines: &[OptionMatch], packet: &[u8], tags: &mut Vec<String>) {
    for m in lines {
        if find_option(packet, m.code).is_some_and(|d| matches(m, d)) {
            tags.push(m.set_tag.clone());
        }
    }
}

/// Appends the tags of every class line the request matches.
pub fn add_tags(classes: &[ClassMatch], packet: &[u8], tags: &mut Vec<String>) {
    if classes.is_empty() {
        return;
    }
    let vendor = find_option(packet, OPT_VENDOR_CLASS);
    let user = find_option(packet, OPT_USER_CLASS).map(user_class_text);
    for c in classes {
        let hay = if c.user { user.as_deref() } else { vendor };
        let Some(hay) = hay else { continue };
        let found = c.data.is_empty() || hay.windows(c.data.len()).any(|w| w == c.data);
        if found && c.data.len() <= hay.len() {
            tags.push(c.set_tag.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::request::build::RawRequest;

    fn class(user: bool, tag: &str, data: &[u8]) -> ClassMatch {
        ClassMatch {
            user,
            set_tag: tag.into(),
            data: data.to_vec(),
        }
    }

    fn tags(classes: &[ClassMatch], packet: &[u8]) -> Vec<String> {
        let mut t = Vec::new();
        add_tags(classes, packet, &mut t);
        t
    }

    #[test]
    fn substrings_of_vendor_and_user_class() {
        let classes = [
            class(false, "pxe", b"PXEClient"),
            class(false, "msft", b"MSFT"),
            class(true, "ipxe", b"iPXE"),
            class(true, "counted", b"\x00iPXE"),
            class(false, "any-vendor", b""),
        ];
        let pxe = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(60, b"PXEClient:Arch:00000:UNDI:002001")
            .finish();
        assert_eq!(tags(&classes, &pxe), vec!["pxe", "any-vendor"]);
        // RFC 3004 form: the count byte is zeroed before matching.
        let counted = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(77, b"\x04iPXE")
            .finish();
        assert_eq!(tags(&classes, &counted), vec!["ipxe", "counted"]);
        // Counts that do not add up: matched as sent.
        let bare = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(77, b"iPXE-bare")
            .finish();
        assert_eq!(tags(&classes, &bare), vec!["ipxe"]);
        let none = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1).finish();
        assert!(tags(&classes, &none).is_empty());
        // Case matters, as in dnsmasq's memcmp.
        let lower = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(60, b"pxeclient")
            .finish();
        assert_eq!(tags(&classes, &lower), vec!["any-vendor"]);
    }

    fn matched(line: &str, packet: &[u8]) -> bool {
        let cfg = crate::config::parse_conf_text(&format!("dhcp-match={line}\n"), "t").unwrap();
        let mut t = Vec::new();
        add_match_tags(&cfg.dhcp_matches, packet, &mut t);
        assert!(t.len() <= 1);
        !t.is_empty()
    }

    #[test]
    fn dhcp_match_forms() {
        let efi = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(93, &[0, 7])
            .opt(77, b"\x04iPXE")
            .opt(175, &[1, 1, 1])
            .opt(60, b"PXEClient:Arch:00007")
            .finish();
        // The PXE and iPXE idioms of OpenWrt and Pi-hole configs.
        assert!(matched("set:efi-x86_64,option:client-arch,7", &efi));
        assert!(!matched("set:bios,option:client-arch,0", &efi));
        assert!(matched("set:ipxe,175", &efi));
        assert!(matched("set:ipxe,77,iPXE", &efi));
        assert!(!matched("set:other,176", &efi));
        // Numbers step by their own size: 0x0700 is in 00 07 00 09 only
        // at an odd offset, so it is not there; 0x0009 is.
        let two = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(93, &[0, 7, 0, 9])
            .finish();
        assert!(!matched("set:x,93,1792", &two));
        assert!(matched("set:x,93,9", &two));
        assert!(matched("set:x,93,7b", &efi));
        // Hex is a prefix; text anywhere.
        assert!(matched("set:x,60,50:58:45", &efi));
        assert!(!matched("set:x,60,58:45", &efi));
        assert!(matched("set:x,60,Arch", &efi));
        // An empty option is not there for dnsmasq.
        let empty = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(175, &[])
            .finish();
        assert!(!matched("set:ipxe,175", &empty));
    }

    #[test]
    fn dhcp_match_refused_forms() {
        let err = |l: &str| crate::config::parse_conf_text(&format!("dhcp-match={l}\n"), "t");
        assert!(err("set:a,set:b,60,x").is_err());
        assert!(err("60,x").is_err());
        assert!(err("set:x,60,50:58:*").is_err());
        assert!(err("set:x,option:bogus,1").is_err());
    }

    #[test]
    fn overloaded_file_field_is_searched() {
        let mut p = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
            .opt(52, &[1])
            .finish();
        let in_file = [60u8, 4, b'M', b'S', b'F', b'T', 255];
        p[FILE.start..FILE.start + in_file.len()].copy_from_slice(&in_file);
        assert_eq!(find_option(&p, 60), Some(&b"MSFT"[..]));
        assert_eq!(tags(&[class(false, "msft", b"MSFT")], &p), vec!["msft"]);
        // Truncated options end the search rather than read past the end.
        assert_eq!(find_in(&[60, 9, 1, 2], 60), None);
    }
}
