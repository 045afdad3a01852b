//! Helpers for option values: quoting, comma splitting, numbers and times.
//!
//! Characters that were quoted in a conf file are "hidden": mapped into a
//! private-use range so that the field splitter and the value classifiers
//! (address? number? hex?) do not see them as commas, digits or colons. This
//! is how dnsmasq lets `"1,2"` be one string, and `"10"` be text rather
//! than a number. `unhide` restores them where the text itself is wanted.

const HIDE_BASE: u32 = 0xF700;

/// The characters whose meaning quoting suppresses: digits, hex letters,
/// separators and whitespace (dnsmasq's set).
fn is_meta(c: char) -> bool {
    matches!(c, '0'..='9' | 'a'..='f' | 'A'..='F' | ' ' | ':' | ',' | '.') || (c.is_ascii_control())
}

pub(crate) fn hide(c: char) -> char {
    if is_meta(c) {
        char::from_u32(HIDE_BASE + c as u32).unwrap_or(c)
    } else {
        c
    }
}

fn unhide_char(c: char) -> char {
    let v = c as u32;
    if (HIDE_BASE..HIDE_BASE + 0x80).contains(&v) {
        char::from_u32(v - HIDE_BASE).unwrap_or(c)
    } else {
        c
    }
}

pub(crate) fn unhide(s: &str) -> String {
    s.chars().map(unhide_char).collect()
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits at unquoted commas, trimming blanks around each comma (not at the
/// ends of the whole value: those were trimmed when the line was read).
pub(crate) fn split_fields(s: &str) -> Vec<&str> {
    let parts: Vec<&str> = s.split(',').collect();
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let p = if i > 0 {
                p.trim_start_matches(is_blank)
            } else {
                p
            };
            if i < last {
                p.trim_end_matches(is_blank)
            } else {
                p
            }
        })
        .collect()
}

/// A decimal number; quoted digits count as digits here, as in dnsmasq.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    let s = unhide(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `3600`, `45m`, `12h`, `2d`, `1w`, `30s`: seconds. `None` if malformed or
/// too large for 32 bits.
pub(crate) fn parse_duration(s: &str) -> Option<u32> {
    let s = unhide(s);
    let (digits, factor) = match s.chars().last()? {
        'w' | 'W' => (&s[..s.len() - 1], 7 * 24 * 3600u64),
        'd' | 'D' => (&s[..s.len() - 1], 24 * 3600),
        'h' | 'H' => (&s[..s.len() - 1], 3600),
        'm' | 'M' => (&s[..s.len() - 1], 60),
        's' | 'S' => (&s[..s.len() - 1], 1),
        _ => (&s[..], 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = n.checked_mul(factor)?;
    // u32::MAX is how "infinite" goes on the wire: a finite lease must stay below.
    u32::try_from(secs).ok().filter(|s| *s < u32::MAX)
}

/// Hex bytes in `01:02:ab` form (also `-` separated). A group longer than
/// two digits gives several bytes, as in dnsmasq.
pub(crate) fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for group in s.split([':', '-']) {
        out.extend(hex_group(group)?);
    }
    Some(out)
}

pub(crate) fn hex_group(group: &str) -> Option<Vec<u8>> {
    if group.is_empty() || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    group
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Splits off the first field: `(first, rest after the comma)`, trimming
/// blanks around that comma.
pub(crate) fn split_first(s: &str) -> (&str, Option<&str>) {
    match s.split_once(',') {
        Some((first, rest)) => (
            first.trim_end_matches(is_blank),
            Some(rest.trim_start_matches(is_blank)),
        ),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_trims_around_commas() {
        assert_eq!(split_fields("a , b,c"), vec!["a", "b", "c"]);
        assert_eq!(split_fields("a,"), vec!["a", ""]);
        assert_eq!(split_fields(""), vec![""]);
    }

    #[test]
    fn hidden_commas_do_not_split() {
        let quoted: String = "a,b".chars().map(hide).collect();
        assert_eq!(split_fields(&quoted).len(), 1);
        assert_eq!(unhide(&quoted), "a,b");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600"), Some(3600));
        assert_eq!(parse_duration("45m"), Some(2700));
        assert_eq!(parse_duration("12h"), Some(43200));
        assert_eq!(parse_duration("2d"), Some(172800));
        assert_eq!(parse_duration("1w"), Some(604800));
        assert_eq!(parse_duration("10S"), Some(10));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("1.5h"), None);
        assert_eq!(parse_duration("99999999w"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex_bytes("01:02:ff"), Some(vec![1, 2, 255]));
        assert_eq!(parse_hex_bytes("0102"), Some(vec![1, 2]));
        assert_eq!(parse_hex_bytes("1:2"), Some(vec![1, 2]));
        assert_eq!(parse_hex_bytes("01::02"), None);
        assert_eq!(parse_hex_bytes("0g"), None);
    }

    #[test]
    fn numbers_accept_quoted_digits() {
        let quoted: String = "42".chars().map(hide).collect();
        assert_eq!(parse_u32(&quoted), Some(42));
        assert_eq!(parse_u32("4x"), None);
        assert_eq!(parse_u32("99999999999"), None);
    }
}
