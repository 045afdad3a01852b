//! `dhcp-range=[tag:t,...][set:t,]start,end|static[,netmask[,broadcast]][,lease]`

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::FieldError;
use super::tags::{set_tag, strip_match_prefix, tag_match};
use super::types::{DhcpRange, LeaseTime, DEFAULT_LEASE_SECS, MIN_LEASE_SECS};
use super::value::{parse_duration, split_fields, unhide};

/// dnsmasq decides whether a leading field is a tag or the start address by
/// its characters: only address-like characters mean an address.
fn looks_like_address(field: &str) -> bool {
    field
        .chars()
        .all(|c| c == ' ' || c == '.' || c == ':' || c.is_ascii_hexdigit())
}

pub(crate) fn parse_ipv4(field: &str) -> Option<Ipv4Addr> {
    unhide(field).parse().ok()
}

fn is_ipv6(field: &str) -> bool {
    unhide(field).parse::<Ipv6Addr>().is_ok()
}

/// Lease time as dnsmasq reads it in dhcp-range and dhcp-host: raised to
/// the two-minute floor, `infinite` allowed.
pub(crate) fn parse_lease(field: &str) -> Option<LeaseTime> {
    if unhide(field) == "infinite" {
        return Some(LeaseTime::Infinite);
    }
    parse_duration(field).map(|s| LeaseTime::Secs(s.max(MIN_LEASE_SECS)))
}

fn contiguous_mask(mask: Ipv4Addr) -> bool {
    let m = u32::from(mask);
    m.leading_ones() + m.trailing_zeros() == 32
}

pub(crate) fn parse(value: &str) -> Result<DhcpRange, FieldError> {
    let fields = split_fields(value);
    let mut match_tags = Vec::new();
    let mut set = None;
    let mut i = 0;
    while i + 1 < fields.len() && !looks_like_address(fields[i]) {
        let f = fields[i];
        if let Some(body) = strip_match_prefix(f) {
            // dnsmasq ignores an empty `tag:`.
            if !body.is_empty() {
                match_tags.push(tag_match(body)?);
            }
        } else {
            if set.is_some() {
                return Err(FieldError::bad("only one set: tag is allowed"));
            }
            set = Some(set_tag(f.strip_prefix("set:").unwrap_or(f))?);
        }
        i += 1;
    }
    let a = &fields[i..];
    if a.len() < 2 {
        return Err(FieldError::bad(
            "needs a start address and an end address (or 'static')",
        ));
    }
    let start = match parse_ipv4(a[0]) {
        Some(ip) => ip,
        None if is_ipv6(a[0]) => return Err(FieldError::not_yet("DHCPv6 (an IPv6 range)")),
        None => {
            return Err(FieldError::bad(format!(
                "'{}' is not an IPv4 address",
                unhide(a[0])
            )))
        }
    };
    let mode = unhide(a[1]);
    let (end, is_static) = match mode.as_str() {
        "static" => (start, true),
        "proxy" => return Err(FieldError::not_yet("proxy mode")),
        _ => match parse_ipv4(a[1]) {
            Some(end) => (end, false),
            None => {
                return Err(FieldError::bad(format!(
                    "'{mode}' is neither an end address nor a mode (static)"
                )))
            }
        },
    };
    if u32::from(end) < u32::from(start) {
        return Err(FieldError::bad(format!(
            "end address {end} is before start {start}"
        )));
    }

    let mut pos = 2;
    let mut netmask = None;
    let mut broadcast = None;
    if let Some(mask) = a
        .get(2)
        .filter(|f| f.contains('.'))
        .and_then(|f| parse_ipv4(f))
    {
        if !contiguous_mask(mask) {
            return Err(FieldError::bad(format!("netmask {mask} is not contiguous")));
        }
        let m = u32::from(mask);
        if u32::from(start) & m != u32::from(end) & m {
            return Err(FieldError::bad(format!(
                "start {start} and end {end} are not in the same subnet with netmask {mask}"
            )));
        }
        netmask = Some(mask);
        pos = 3;
        if let Some(b) = a
            .get(3)
            .filter(|f| f.contains('.'))
            .and_then(|f| parse_ipv4(f))
        {
            broadcast = Some(b);
            pos = 4;
        }
    }

    let mut lease_time = LeaseTime::Secs(DEFAULT_LEASE_SECS);
    if pos < a.len() {
        if pos + 1 < a.len() {
            return Err(FieldError::bad(format!(
                "unexpected field '{}' after the lease time",
                unhide(a[pos + 1])
            )));
        }
        let text = unhide(a[pos]);
        lease_time = match parse_lease(a[pos]) {
            Some(t) => t,
            None if text == "deprecated" => {
                return Err(FieldError::not_yet("DHCPv6 (the 'deprecated' mode)"))
            }
            None => {
                return Err(FieldError::bad(format!(
                    "'{text}' is not a lease time (like 45m, 12h, 2d, 1w, 3600 or infinite)"
                )))
            }
        };
    }

    Ok(DhcpRange {
        match_tags,
        set_tag: set,
        start,
        end,
        netmask,
        broadcast,
        lease_time,
        is_static,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::TagMatch;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn bad(v: &str) -> String {
        match parse(v) {
            Err(FieldError::Bad(r)) => r,
            other => panic!("expected a bad value for {v}, got {other:?}"),
        }
    }

    #[test]
    fn plain_range_defaults_to_one_hour() {
        let r = parse("198.18.0.50,198.18.0.150").unwrap();
        assert_eq!(r.start, ip("198.18.0.50"));
        assert_eq!(r.end, ip("198.18.0.150"));
        assert_eq!(r.lease_time, LeaseTime::Secs(3600));
        assert_eq!(r.netmask, None);
        assert!(!r.is_static);
        assert!(r.match_tags.is_empty());
        assert_eq!(r.set_tag, None);
    }

    #[test]
    fn lease_time_forms() {
        for (text, secs) in [
            ("45m", 2700),
            ("12h", 43200),
            ("2d", 172800),
            ("1w", 604800),
            ("3600", 3600),
        ] {
            let r = parse(&format!("198.18.0.50,198.18.0.150,{text}")).unwrap();
            assert_eq!(r.lease_time, LeaseTime::Secs(secs), "{text}");
        }
        let r = parse("198.18.0.50,198.18.0.150,infinite").unwrap();
        assert_eq!(r.lease_time, LeaseTime::Infinite);
        // dnsmasq raises short leases to two minutes.
        let r = parse("198.18.0.50,198.18.0.150,30").unwrap();
        assert_eq!(r.lease_time, LeaseTime::Secs(120));
        let r = parse("198.18.0.50,198.18.0.150,1m").unwrap();
        assert_eq!(r.lease_time, LeaseTime::Secs(120));
    }

    #[test]
    fn netmask_and_broadcast() {
        let r = parse("198.18.0.50,198.18.0.150,255.255.255.0,198.18.0.255,12h").unwrap();
        assert_eq!(r.netmask, Some(ip("255.255.255.0")));
        assert_eq!(r.broadcast, Some(ip("198.18.0.255")));
        assert_eq!(r.lease_time, LeaseTime::Secs(43200));
        let r = parse("198.18.0.50,198.18.0.150,255.255.255.0").unwrap();
        assert_eq!(r.netmask, Some(ip("255.255.255.0")));
        assert_eq!(r.broadcast, None);
    }

    #[test]
    fn tags() {
        let r = parse("set:lan,198.18.0.50,198.18.0.150").unwrap();
        assert_eq!(r.set_tag.as_deref(), Some("lan"));
        let r = parse("tag:wired,tag:!guest,set:lan,198.18.0.50,198.18.0.150").unwrap();
        assert_eq!(
            r.match_tags,
            vec![
                TagMatch {
                    name: "wired".into(),
                    negate: false
                },
                TagMatch {
                    name: "guest".into(),
                    negate: true
                }
            ]
        );
        // A bare word is a set: tag, as in dnsmasq's old syntax.
        let r = parse("lan,198.18.0.50,198.18.0.150").unwrap();
        assert_eq!(r.set_tag.as_deref(), Some("lan"));
        assert_eq!(
            bad("set:a,set:b,198.18.0.1,198.18.0.2"),
            "only one set: tag is allowed"
        );
    }

    #[test]
    fn static_mode() {
        let r = parse("198.18.0.0,static").unwrap();
        assert!(r.is_static);
        assert_eq!(r.start, r.end);
        let r = parse("198.18.0.0,static,255.255.255.0,infinite").unwrap();
        assert_eq!(r.netmask, Some(ip("255.255.255.0")));
        assert_eq!(r.lease_time, LeaseTime::Infinite);
    }

    #[test]
    fn unsupported_modes() {
        assert_eq!(
            parse("198.18.0.0,proxy"),
            Err(FieldError::NotYet("proxy mode".into()))
        );
        assert!(matches!(
            parse("fd00::1,fd00::ff"),
            Err(FieldError::NotYet(_))
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(
            bad("192.168.1.50,192.168.1.10"),
            "end address 192.168.1.10 is before start 192.168.1.50"
        );
        assert!(bad("198.18.0.1").contains("needs a start address"));
        assert!(bad("198.18.0.1,banana").contains("'banana'"));
        assert!(bad("198.18.0.1,198.18.1.5,255.255.255.0").contains("same subnet"));
        assert!(bad("198.18.0.1,198.18.0.5,255.0.255.0").contains("not contiguous"));
        assert!(bad("198.18.0.1,198.18.0.5,12x").contains("not a lease time"));
        assert!(bad("198.18.0.1,198.18.0.5,12h,extra").contains("unexpected field"));
        assert!(bad("198.18.0.300,198.18.0.5").contains("not an IPv4 address"));
    }
}
