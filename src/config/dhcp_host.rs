//! `dhcp-host=`: each field is classified by its form, in any order, as
//! dnsmasq does: hardware addresses, `id:` client-ids, `set:`/`tag:` tags,
//! an IPv4 address, a lease time, `ignore`, and a hostname.

use super::dhcp_range::{parse_ipv4, parse_lease};
use super::error::FieldError;
use super::names::check_hostname;
use super::tags::{set_tag, tag_match};
use super::types::{DhcpHost, LeaseTime, MacPattern, MIN_LEASE_SECS};
use super::value::{hex_group, parse_duration, parse_hex_bytes, split_fields, unhide};

/// chaddr holds at most 16 bytes.
const MAX_HW_LEN: usize = 16;

/// `aa:bb:*:dd:ee:ff`, or `1-aa:bb:...` with a hardware type first.
pub(crate) fn parse_mac(field: &str) -> Option<MacPattern> {
    let mut htype = None;
    let mut rest = field;
    if let Some((first, tail)) = field.split_once(['-', ':']) {
        // A '-' right after the first group marks that group as the type.
        if field.as_bytes().get(first.len()) == Some(&b'-') {
            let t = hex_group(first)?;
            if t.len() != 1 {
                return None;
            }
            htype = Some(t[0]);
            rest = tail;
        }
    }
    let mut bytes = Vec::new();
    for group in rest.split([':', '-']) {
        if group == "*" {
            bytes.push(None);
        } else {
            bytes.extend(hex_group(group)?.into_iter().map(Some));
        }
    }
    if bytes.is_empty() || bytes.len() > MAX_HW_LEN {
        return None;
    }
    Some(MacPattern { htype, bytes })
}

fn lease_field(field: &str) -> Option<LeaseTime> {
    // Digits with an optional unit make a lease time; anything else with
    // letters is a name.
    if field.len() > 1 || field.bytes().all(|b| b.is_ascii_digit()) {
        parse_duration(field).map(|s| LeaseTime::Secs(s.max(MIN_LEASE_SECS)))
    } else {
        None
    }
}

pub(crate) fn parse(value: &str, existing: &[DhcpHost]) -> Result<DhcpHost, FieldError> {
    parse_with(value, |ip| existing.iter().any(|h| h.ip == Some(ip)))
}

/// `parse`, with `taken` telling which addresses other lines already hold.
pub(crate) fn parse_with(
    value: &str,
    taken: impl Fn(std::net::Ipv4Addr) -> bool,
) -> Result<DhcpHost, FieldError> {
    let mut host = DhcpHost::default();
    for field in split_fields(value) {
        if field.is_empty() {
            continue;
        }
        if field.contains(':') {
            let lower = field.get(..3).map(str::to_ascii_lowercase);
            if lower.as_deref() == Some("id:") {
                let id = &field[3..];
                if id.starts_with('*') {
                    host.ignore_client_id = true;
                } else if id.contains(':') {
                    let bytes = parse_hex_bytes(id).ok_or_else(|| {
                        FieldError::bad(format!("bad hex client-id 'id:{}'", unhide(id)))
                    })?;
                    host.client_ids.push(bytes);
                } else {
                    let text = unhide(id);
                    if text.is_empty() {
                        return Err(FieldError::bad("empty client-id 'id:'"));
                    }
                    host.client_ids.push(text.into_bytes());
                }
            } else if let Some(body) = field
                .strip_prefix("set:")
                .or_else(|| field.strip_prefix("net:"))
            {
                host.set_tags.push(set_tag(body)?);
            } else if let Some(body) = field.strip_prefix("tag:") {
                host.match_tags.push(tag_match(body)?);
            } else if field.starts_with('[') {
                return Err(FieldError::not_yet("DHCPv6 (an IPv6 address)"));
            } else {
                let mac = parse_mac(field).ok_or_else(|| {
                    FieldError::bad(format!("bad hardware address '{}'", unhide(field)))
                })?;
                host.macs.push(mac);
            }
        } else if let Some(ip) = field.contains('.').then(|| parse_ipv4(field)).flatten() {
            if let Some(prev) = host.ip {
                return Err(FieldError::bad(format!(
                    "more than one IPv4 address ({prev} and {ip})"
                )));
            }
            if taken(ip) {
                return Err(FieldError::bad(format!(
                    "duplicate dhcp-host IP address {ip}"
                )));
            }
            host.ip = Some(ip);
        } else if let Some(t) = lease_field(field) {
            host.lease_time = Some(t);
        } else {
            let text = unhide(field);
            if text == "infinite" {
                host.lease_time = parse_lease(field);
            } else if text == "ignore" {
                host.ignore = true;
            } else if let Some(prev) = &host.hostname {
                return Err(FieldError::bad(format!(
                    "more than one hostname ('{prev}' and '{text}')"
                )));
            } else {
                let (name, domain) = check_hostname(&text).map_err(FieldError::Bad)?;
                host.hostname = Some(name);
                host.domain = domain;
            }
        }
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::TagMatch;
    use std::net::Ipv4Addr;

    fn mac(bytes: &[u8]) -> MacPattern {
        MacPattern {
            htype: None,
            bytes: bytes.iter().map(|b| Some(*b)).collect(),
        }
    }

    fn p(v: &str) -> DhcpHost {
        parse(v, &[]).unwrap()
    }

    fn bad(v: &str) -> String {
        match parse(v, &[]) {
            Err(FieldError::Bad(r)) => r,
            other => panic!("expected an error for {v}, got {other:?}"),
        }
    }

    #[test]
    fn mac_ip_name_lease() {
        let h = p("00:11:22:33:44:55,198.18.0.10,nas,12h");
        assert_eq!(h.macs, vec![mac(&[0, 0x11, 0x22, 0x33, 0x44, 0x55])]);
        assert_eq!(h.ip, Some(Ipv4Addr::new(198, 18, 0, 10)));
        assert_eq!(h.hostname.as_deref(), Some("nas"));
        assert_eq!(h.lease_time, Some(LeaseTime::Secs(43200)));
    }

    #[test]
    fn order_does_not_matter() {
        assert_eq!(
            p("nas,12h,198.18.0.10,00:11:22:33:44:55"),
            p("00:11:22:33:44:55,198.18.0.10,nas,12h")
        );
    }

    #[test]
    fn several_macs_wildcards_and_htype() {
        let h = p("00:11:22:33:44:55,00:11:22:*:*:66,1-aa:bb:cc:dd:ee:ff,printer");
        assert_eq!(h.macs.len(), 3);
        assert_eq!(h.macs[1].bytes[3], None);
        assert_eq!(h.macs[1].bytes[5], Some(0x66));
        assert_eq!(h.macs[2].htype, Some(1));
        assert_eq!(h.macs[2].bytes.len(), 6);
        assert!(h.macs[2].matches(1, &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]));
        assert!(!h.macs[2].matches(6, &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]));
        assert!(h.macs[1].matches(1, &[0, 0x11, 0x22, 9, 9, 0x66]));
    }

    #[test]
    fn client_ids() {
        let h = p("id:01:00:11:22:33:44:55,198.18.0.11");
        assert_eq!(h.client_ids, vec![vec![1, 0, 0x11, 0x22, 0x33, 0x44, 0x55]]);
        let h = p("id:marcos-laptop,198.18.0.12");
        assert_eq!(h.client_ids, vec![b"marcos-laptop".to_vec()]);
        let h = p("ID:ab:cd,id:other,laptop");
        assert_eq!(h.client_ids.len(), 2);
        let h = p("00:11:22:33:44:55,id:*,198.18.0.13");
        assert!(h.ignore_client_id);
        assert!(h.client_ids.is_empty());
    }

    #[test]
    fn tags_ignore_and_infinite() {
        let h = p("00:11:22:33:44:55,set:known,tag:!guest,ignore");
        assert_eq!(h.set_tags, vec!["known".to_string()]);
        assert_eq!(
            h.match_tags,
            vec![TagMatch {
                name: "guest".into(),
                negate: true
            }]
        );
        assert!(h.ignore);
        let h = p("00:11:22:33:44:55,infinite");
        assert_eq!(h.lease_time, Some(LeaseTime::Infinite));
        let h = p("00:11:22:33:44:55,net:old-style");
        assert_eq!(h.set_tags, vec!["old-style".to_string()]);
    }

    #[test]
    fn lease_forms_and_floor() {
        assert_eq!(p("nas,3600").lease_time, Some(LeaseTime::Secs(3600)));
        assert_eq!(p("nas,45m").lease_time, Some(LeaseTime::Secs(2700)));
        assert_eq!(p("nas,1w").lease_time, Some(LeaseTime::Secs(604800)));
        assert_eq!(p("nas,5").lease_time, Some(LeaseTime::Secs(120)));
    }

    #[test]
    fn qualified_hostname_splits_domain() {
        let h = p("00:11:22:33:44:55,nas.home.lan");
        assert_eq!(h.hostname.as_deref(), Some("nas"));
        assert_eq!(h.domain.as_deref(), Some("home.lan"));
    }

    #[test]
    fn errors() {
        assert!(bad("00:11:22:33:44:zz").contains("bad hardware address"));
        assert!(bad("nas,other").contains("more than one hostname"));
        assert!(bad("bad_host!").contains("bad hostname"));
        assert!(bad(&"a".repeat(64)).contains("more than 63"));
        assert!(bad("198.18.0.1,198.18.0.2").contains("more than one IPv4"));
        assert!(bad("id:zz:yy").contains("bad hex client-id"));
        assert!(bad("set:").contains("empty tag"));
        let existing = vec![p("00:11:22:33:44:55,198.18.0.10")];
        assert_eq!(
            parse("00:11:22:33:44:66,198.18.0.10", &existing),
            Err(FieldError::Bad(
                "duplicate dhcp-host IP address 198.18.0.10".into()
            ))
        );
        assert!(matches!(
            parse("[fd00::1]", &[]),
            Err(FieldError::NotYet(_))
        ));
    }
}
