//! Name helpers for the local authority. Names are kept as lowercase text
//! without the trailing dot, the same form the config stores, so a lookup is
//! one hash probe and comparisons are plain string equality.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// The key form of a wire name: labels lowercased (ASCII only, as DNS
/// compares names) and joined with dots, no trailing dot; the root is "".
pub fn key_of(name: &Name) -> String {
    let mut out = String::new();
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
    }
    out
}

/// The key form of a configured or hosts-file name.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A wire name from text, label by label as raw bytes, so names from config
/// with characters a hostname may not have (dnsmasq allows spaces in
/// `ptr-record` targets) still encode. None if a label is too long.
pub fn to_name(text: &str) -> Option<Name> {
    let text = text.trim_end_matches('.');
    if text.is_empty() {
        return Some(Name::root());
    }
    Name::from_labels(text.split('.').map(str::as_bytes)).ok()
}

/// True when `name` is `domain` or below it, label-wise (`xhome.lan` is not
/// under `home.lan`). Both in key form. The empty domain matches everything.
pub fn is_under(name: &str, domain: &str) -> bool {
    if domain.is_empty() || name == domain {
        return true;
    }
    name.len() > domain.len()
        && name.ends_with(domain)
        && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
}

/// The longest domain in `domains` that `name` is equal to or under, with
/// its index. dnsmasq's "most specific domain wins". The empty domain (which
/// stands for unqualified names) is not matched here: see `is_unqualified`.
pub fn longest_match<'a, I>(name: &str, domains: I) -> Option<(usize, &'a str)>
where
    I: IntoIterator<Item = &'a str>,
{
    domains
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_empty() && is_under(name, d))
        .max_by_key(|(_, d)| d.len())
}

/// A name with no dot in it (what `domain-needed` and `server=//` are about).
pub fn is_unqualified(name: &str) -> bool {
    !name.is_empty() && !name.contains('.')
}

/// `w.z.y.x.in-addr.arpa` for an IPv4 address, nibbles for IPv6 (key form).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push(nibble(byte & 0xf));
                s.push('.');
                s.push(nibble(byte >> 4));
                s.push('.');
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

fn nibble(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// The address a full reverse name stands for; None for anything else
/// (partial names, junk labels, forward names).
pub fn parse_reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        let mut o = [0u8; 4];
        for (i, l) in labels.iter().rev().enumerate() {
            // Reject "01" and "+1": only the canonical decimal spelling.
            if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if l.len() > 1 && l.starts_with('0') {
                return None;
            }
            o[i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, l) in labels.iter().rev().enumerate() {
            let mut chars = l.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return None;
            };
            let v = c.to_digit(16)? as u8;
            bytes[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
        }
        return Some(IpAddr::V6(Ipv6Addr::from(bytes)));
    }
    None
}

/// The address a reverse name, possibly partial, starts: missing low
/// labels count as zero (`0.10.in-addr.arpa` is 10.0.0.0). dnsmasq 2.90
/// reads partial names this way for `bogus-priv`.
pub fn parse_reverse_prefix(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let n = rest.split('.').count();
        if n > 4 {
            return None;
        }
        let padded = format!("{}{}.in-addr.arpa", "0.".repeat(4 - n), rest);
        return parse_reverse(&padded);
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let n = rest.split('.').count();
        if n > 32 {
            return None;
        }
        let padded = format!("{}{}.ip6.arpa", "0.".repeat(32 - n), rest);
        return parse_reverse(&padded);
    }
    None
}

/// The reverse zone of a subnet, cut at the last whole label (octet for
/// IPv4, nibble for IPv6), as dnsmasq names the zone of a `rev-server=` or a
/// local `domain=`. Prefixes between label boundaries round down.
pub fn reverse_zone(net: IpAddr, prefix: u8) -> String {
    match net {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let n = usize::from(prefix.min(32) / 8);
            let mut parts: Vec<String> = o[..n].iter().rev().map(|b| b.to_string()).collect();
            parts.push("in-addr.arpa".into());
            parts.join(".")
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let n = usize::from(prefix.min(128) / 4);
            let mut parts: Vec<String> = (0..n)
                .map(|i| {
                    let b = o[i / 2];
                    nibble(if i % 2 == 0 { b >> 4 } else { b & 0xf }).to_string()
                })
                .collect();
            parts.reverse();
            parts.push("ip6.arpa".into());
            parts.join(".")
        }
    }
}

/// The ranges `bogus-priv` keeps from going upstream. Checked against real
/// dnsmasq 2.90: RFC 1918, 169.254/16, 127/8, fc00::/7 and fe80::/10 are
/// answered NXDOMAIN; 100.64/10 (shared address space) and 198.18/15 are
/// forwarded, so they are not here.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_link_local() || v4.is_loopback() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// The addresses `stop-dns-rebind` withholds from upstream answers: those
/// of [`is_private`] and, unlike `bogus-priv`, the IPv6 documentation
/// prefix 2001:db8::/32 (real dnsmasq 2.90 drops an upstream AAAA answer
/// in it; `tests/dns_differential.rs` asks for one).
pub fn is_rebind_private(ip: IpAddr) -> bool {
    is_private(ip) || matches!(ip, IpAddr::V6(v6) if v6.segments()[..2] == [0x2001, 0x0db8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_of_lowercases_and_drops_root() {
        let n = Name::from_ascii("HostFile.Home.LAN.").unwrap();
        assert_eq!(key_of(&n), "hostfile.home.lan");
        assert_eq!(key_of(&Name::root()), "");
        assert_eq!(normalize("Foo.Bar."), "foo.bar");
    }

    #[test]
    fn under_is_label_wise() {
        assert!(is_under("a.home.lan", "home.lan"));
        assert!(is_under("home.lan", "home.lan"));
        assert!(!is_under("xhome.lan", "home.lan"));
        assert!(!is_under("lan", "home.lan"));
        assert!(is_under("anything", ""));
    }

    #[test]
    fn longest_match_prefers_most_specific() {
        let doms = ["example", "ads.example", "sub.ads.example", ""];
        assert_eq!(
            longest_match("x.sub.ads.example", doms.iter().copied()),
            Some((2, "sub.ads.example"))
        );
        assert_eq!(
            longest_match("b.ads.example", doms.iter().copied()),
            Some((1, "ads.example"))
        );
        assert_eq!(longest_match("other", doms.iter().copied()), None);
    }

    #[test]
    fn reverse_names_round_trip() {
        let v4: IpAddr = "198.18.0.5".parse().unwrap();
        assert_eq!(reverse_name(v4), "5.0.18.198.in-addr.arpa");
        assert_eq!(parse_reverse("5.0.18.198.in-addr.arpa"), Some(v4));
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let r = reverse_name(v6);
        assert_eq!(
            r,
            "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(parse_reverse(&r), Some(v6));
        assert_eq!(parse_reverse("0.18.198.in-addr.arpa"), None);
        assert_eq!(parse_reverse("05.0.18.198.in-addr.arpa"), None);
        assert_eq!(parse_reverse("256.0.18.198.in-addr.arpa"), None);
        assert_eq!(parse_reverse("www.example"), None);
        assert_eq!(
            parse_reverse_prefix("0.10.in-addr.arpa"),
            Some("10.0.0.0".parse().unwrap())
        );
        assert_eq!(
            parse_reverse_prefix("10.in-addr.arpa"),
            Some("10.0.0.0".parse().unwrap())
        );
        assert_eq!(
            parse_reverse_prefix("d.f.ip6.arpa"),
            Some("fd00::".parse().unwrap())
        );
        assert_eq!(parse_reverse_prefix("1.2.3.4.5.in-addr.arpa"), None);
    }

    #[test]
    fn reverse_zones() {
        assert_eq!(
            reverse_zone("198.18.5.0".parse().unwrap(), 24),
            "5.18.198.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone("10.0.0.0".parse().unwrap(), 8),
            "10.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone("2001:db8::".parse().unwrap(), 32),
            "8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn private_ranges_as_dnsmasq_2_90() {
        for p in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(p.parse().unwrap()), "{p}");
        }
        for p in ["100.64.0.1", "198.18.7.7", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_private(p.parse().unwrap()), "{p}");
        }
        assert!(is_rebind_private("2001:db8:5::1".parse().unwrap()));
        assert!(is_rebind_private("10.0.0.1".parse().unwrap()));
        assert!(!is_rebind_private("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn to_name_keeps_odd_labels() {
        let n = to_name("New Employee Page._http._tcp.dns-sd-services").unwrap();
        assert_eq!(n.num_labels(), 4);
        assert!(n.is_fqdn());
    }
}
