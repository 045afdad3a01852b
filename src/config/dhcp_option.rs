//! `dhcp-option` / `dhcp-option-force`: `[tag:t,...]opt,value[,value...]`
//! where `opt` is a number or `option:name`. The value is encoded to wire
//! form here, after dnsmasq's rules: the option's known type decides when
//! it can, else the value's look does (address list, hex bytes, decimal,
//! string).

use std::net::Ipv4Addr;

use super::error::FieldError;
use super::names::check_domain;
use super::tags::tag_match;
use super::types::{DhcpOptionSpec, MatchForm, OptionMatch, OptionValue};
use super::value::{parse_duration, parse_hex_bytes, split_fields, split_first, unhide};

/// How an option's value is written when the option is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One or more IPv4 addresses.
    AddrList,
    /// Text, never a number or an address.
    Name,
    /// A list of domain names in RFC 1035 wire form (RFC 3397).
    NameList,
    /// A number of this many bytes.
    Fixed(u8),
    /// A duration in seconds, 4 bytes.
    Time,
    /// No fixed type: the value's form decides.
    Raw,
}

#[derive(Debug)]
pub(crate) struct OptionName {
    pub name: &'static str,
    pub code: u8,
    pub kind: Kind,
    /// Filled in by the server from the protocol itself; cannot be set by name.
    pub internal: bool,
}

const fn opt(name: &'static str, code: u8, kind: Kind) -> OptionName {
    OptionName {
        name,
        code,
        kind,
        internal: false,
    }
}

const fn internal(name: &'static str, code: u8, kind: Kind) -> OptionName {
    OptionName {
        name,
        code,
        kind,
        internal: true,
    }
}

use Kind::{AddrList as A, Fixed as F, Name as S, Raw, Time as T};

/// dnsmasq's DHCPv4 option names. dnsmasq refuses the names of options it
/// fills in itself; twinmasq also accepts hostname, broadcast, lease-time
/// and vendor-encap by name (dnsmasq takes them by number only).
pub(crate) static OPTION_NAMES: &[OptionName] = &[
    opt("netmask", 1, A),
    opt("time-offset", 2, F(4)),
    opt("router", 3, A),
    opt("dns-server", 6, A),
    opt("log-server", 7, A),
    opt("lpr-server", 9, A),
    opt("hostname", 12, S),
    opt("boot-file-size", 13, F(2)),
    opt("domain-name", 15, S),
    opt("swap-server", 16, A),
    opt("root-path", 17, S),
    opt("extension-path", 18, S),
    opt("ip-forward-enable", 19, F(1)),
    opt("non-local-source-routing", 20, F(1)),
    opt("policy-filter", 21, A),
    opt("max-datagram-reassembly", 22, F(2)),
    opt("default-ttl", 23, F(1)),
    opt("mtu", 26, F(2)),
    opt("all-subnets-local", 27, F(1)),
    opt("broadcast", 28, A),
    opt("router-discovery", 31, F(1)),
    opt("router-solicitation", 32, A),
    opt("static-route", 33, A),
    opt("trailer-encapsulation", 34, F(1)),
    opt("arp-timeout", 35, F(4)),
    opt("ethernet-encap", 36, F(1)),
    opt("tcp-ttl", 37, F(1)),
    opt("tcp-keepalive", 38, F(4)),
    opt("nis-domain", 40, S),
    opt("nis-server", 41, A),
    opt("ntp-server", 42, A),
    opt("vendor-encap", 43, Raw),
    opt("netbios-ns", 44, A),
    opt("netbios-dd", 45, A),
    opt("netbios-nodetype", 46, F(1)),
    opt("netbios-scope", 47, Raw),
    opt("x-windows-fs", 48, A),
    opt("x-windows-dm", 49, A),
    internal("requested-address", 50, A),
    opt("lease-time", 51, T),
    internal("option-overload", 52, Raw),
    internal("message-type", 53, Raw),
    internal("server-identifier", 54, A),
    internal("parameter-request", 55, Raw),
    internal("message", 56, Raw),
    internal("max-message-size", 57, Raw),
    opt("T1", 58, T),
    opt("T2", 59, T),
    opt("vendor-class", 60, Raw),
    internal("client-id", 61, Raw),
    opt("nis+-domain", 64, S),
    opt("nis+-server", 65, A),
    opt("tftp-server", 66, S),
    opt("bootfile-name", 67, S),
    opt("mobile-ip-home", 68, A),
    opt("smtp-server", 69, A),
    opt("pop3-server", 70, A),
    opt("nntp-server", 71, A),
    opt("irc-server", 74, A),
    opt("user-class", 77, Raw),
    opt("rapid-commit", 80, Raw),
    internal("FQDN", 81, Raw),
    internal("agent-id", 82, Raw),
    opt("client-arch", 93, F(2)),
    opt("client-interface-id", 94, Raw),
    opt("client-machine-id", 97, Raw),
    opt("posix-timezone", 100, S),
    opt("tzdb-timezone", 101, S),
    internal("subnet-select", 118, Raw),
    opt("domain-search", 119, Kind::NameList),
    opt("sip-server", 120, Raw),
    opt("classless-static-route", 121, Raw),
    opt("vendor-id-encap", 125, Raw),
    opt("tftp-server-address", 150, A),
];

const DOMAIN_SEARCH: u8 = 119;
const SIP_SERVER: u8 = 120;
const CLASSLESS_ROUTE: u8 = 121;
const MAX_OPTION_LEN: usize = 255;

pub(crate) fn lookup_name(name: &str) -> Option<&'static OptionName> {
    OPTION_NAMES
        .iter()
        .find(|o| o.name.eq_ignore_ascii_case(name))
}

fn kind_of(code: u8) -> Kind {
    OPTION_NAMES
        .iter()
        .find(|o| o.code == code)
        .map_or(Kind::Raw, |o| o.kind)
}

pub(crate) fn parse(value: &str, force: bool) -> Result<DhcpOptionSpec, FieldError> {
    parse_any(value, force, false).map(|(spec, _)| spec)
}

/// `dhcp-match=set:tag,opt[,value]`: the dhcp-option grammar with exactly
/// one (set) tag; options the server fills in may be named too.
pub(crate) fn parse_match(value: &str) -> Result<OptionMatch, FieldError> {
    if value.contains('*') {
        return Err(FieldError::not_yet("wildcards in a dhcp-match value"));
    }
    let (spec, form) = parse_any(value, false, true)?;
    let [tag] = spec.match_tags.as_slice() else {
        return Err(FieldError::bad(
            "illegal dhcp-match: it takes exactly one tag",
        ));
    };
    if tag.negate {
        return Err(FieldError::bad(format!(
            "cannot set the negated tag '!{}'",
            tag.name
        )));
    }
    let data = match spec.value {
        OptionValue::Empty => Vec::new(),
        OptionValue::Bytes(b) => b,
        OptionValue::Addresses(a) => a.iter().flat_map(|x| x.octets()).collect(),
    };
    Ok(OptionMatch {
        set_tag: tag.name.clone(),
        code: spec.code,
        data,
        form,
    })
}

fn parse_any(
    value: &str,
    force: bool,
    for_match: bool,
) -> Result<(DhcpOptionSpec, MatchForm), FieldError> {
    let mut match_tags = Vec::new();
    let mut rest = Some(value);
    let (code, data) = loop {
        let Some(r) = rest else {
            return Err(FieldError::bad("no option number or option:name given"));
        };
        let (field, tail) = split_first(r);
        if !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit()) {
            let n: u32 = field
                .parse()
                .map_err(|_| FieldError::bad(format!("option number {field} is out of range")))?;
            let code = match u8::try_from(n) {
                Ok(c) if c != 0 && c != 255 => c,
                _ => {
                    return Err(FieldError::bad(format!(
                        "option number {n} is out of range (1 to 254)"
                    )))
                }
            };
            break (code, tail);
        }
        if let Some(name) = field.strip_prefix("option:") {
            let name = unhide(name);
            if name.eq_ignore_ascii_case("server-ip-address") {
                return Err(FieldError::not_yet("option:server-ip-address (siaddr)"));
            }
            let known = lookup_name(&name)
                .ok_or_else(|| FieldError::bad(format!("unknown DHCP option name '{name}'")))?;
            if known.internal && !for_match {
                return Err(FieldError::bad(format!(
                    "option '{name}' is filled in by the server and cannot be configured"
                )));
            }
            break (known.code, tail);
        }
        if field.starts_with("option6:") {
            return Err(FieldError::not_yet("DHCPv6 (option6:)"));
        }
        if field.starts_with("vendor:") {
            return Err(FieldError::not_yet("vendor: (options for a vendor class)"));
        }
        if field.starts_with("encap:") {
            return Err(FieldError::not_yet("encap: (encapsulated options)"));
        }
        if field.starts_with("vi-encap:") {
            return Err(FieldError::not_yet("vi-encap: (RFC 3925 options)"));
        }
        let body = field
            .strip_prefix("tag:")
            .or_else(|| field.strip_prefix("net:"))
            .or_else(|| field.strip_prefix("set:"))
            .unwrap_or(field);
        match_tags.push(tag_match(body)?);
        rest = tail;
    };

    let (value, form) = match data {
        None => (OptionValue::Empty, MatchForm::Other),
        Some("") => (OptionValue::Empty, MatchForm::Other),
        Some(d) => encode(code, d)?,
    };
    if let OptionValue::Bytes(b) = &value {
        if b.len() > MAX_OPTION_LEN {
            return Err(FieldError::bad(format!(
                "option {code} data is {} bytes long, more than the {MAX_OPTION_LEN} an option can hold",
                b.len()
            )));
        }
    }
    if let OptionValue::Addresses(a) = &value {
        if a.len() * 4 > MAX_OPTION_LEN {
            return Err(FieldError::bad(format!(
                "option {code} has {} addresses, more than fit in one option",
                a.len()
            )));
        }
    }
    Ok((
        DhcpOptionSpec {
            code,
            match_tags,
            value,
            force,
        },
        form,
    ))
}

/// What a value looks like, judged character by character as dnsmasq does.
/// Quoted characters are hidden, so they count as "other" here.
struct Shape {
    addr: bool,
    hex: bool,
    dec: bool,
    colons: usize,
    dots: usize,
    /// `b`, `s` or `i` after a decimal: force 1, 2 or 4 bytes.
    width: Option<char>,
}

fn shape(v: &str) -> Shape {
    let mut s = Shape {
        addr: true,
        hex: true,
        dec: true,
        colons: 0,
        dots: 0,
        width: None,
    };
    let mut found_digit = false;
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' => {
                s.dec = false;
                s.hex = false;
            }
            ':' => {
                s.colons += 1;
                s.dec = false;
                s.addr = false;
            }
            '/' => {
                s.dec = false;
                s.hex = false;
                if i == 0 {
                    s.addr = false;
                }
            }
            '.' => {
                s.dec = false;
                s.hex = false;
                s.dots += 1;
            }
            '-' => {
                s.hex = false;
                s.addr = false;
                s.dec = false;
            }
            ' ' => {
                s.dec = false;
                s.hex = false;
            }
            '0'..='9' => found_digit = true,
            _ => {
                s.addr = false;
                if i + 1 == n && s.dec && matches!(c, 'b' | 's' | 'i') {
                    s.width = Some(c);
                } else {
                    s.dec = false;
                }
                if !c.is_ascii_hexdigit() {
                    s.hex = false;
                }
            }
        }
    }
    if !found_digit {
        s.dec = false;
        s.addr = false;
    }
    s
}

/// The value and how it was read, which `dhcp-match` compares by.
fn encode(code: u8, v: &str) -> Result<(OptionValue, MatchForm), FieldError> {
    let form = |v: OptionValue| (v, MatchForm::Other);
    let kind = kind_of(code);
    let mut s = shape(v);
    match kind {
        Kind::AddrList => {
            if !s.addr || s.dots == 0 {
                return Err(FieldError::bad(format!(
                    "option {code} takes IPv4 addresses, not '{}'",
                    unhide(v)
                )));
            }
            s.hex = false;
            s.dec = false;
        }
        Kind::Name | Kind::NameList => {
            s.addr = false;
            s.hex = false;
            s.dec = false;
        }
        _ => {}
    }

    if kind == Kind::Time && v.bytes().any(|b| b.is_ascii_digit()) {
        let secs = parse_duration(v).ok_or_else(|| {
            FieldError::bad(format!(
                "'{}' is not a time (like 3600, 45m, 12h)",
                unhide(v)
            ))
        })?;
        return Ok(form(OptionValue::Bytes(secs.to_be_bytes().to_vec())));
    }
    if s.hex && s.colons > 0 {
        let bytes =
            parse_hex_bytes(v).ok_or_else(|| FieldError::bad(format!("bad hex bytes '{v}'")))?;
        return Ok((OptionValue::Bytes(bytes), MatchForm::Hex));
    }
    if s.dec {
        return encode_decimal(code, kind, v, s.width).map(form);
    }
    if s.addr {
        return encode_addresses(code, v).map(form);
    }
    match code {
        DOMAIN_SEARCH => Ok(form(OptionValue::Bytes(encode_names(v)?))),
        SIP_SERVER => {
            let mut out = vec![0];
            out.extend(encode_names(v)?);
            Ok(form(OptionValue::Bytes(out)))
        }
        _ => Ok((OptionValue::Bytes(unhide(v).into_bytes()), MatchForm::Text)),
    }
}

fn encode_decimal(
    code: u8,
    kind: Kind,
    v: &str,
    width: Option<char>,
) -> Result<OptionValue, FieldError> {
    let digits = if width.is_some() {
        &v[..v.len() - 1]
    } else {
        v
    };
    let n: u32 = digits
        .parse()
        .map_err(|_| FieldError::bad(format!("number {digits} is too large")))?;
    let len = match (width, kind) {
        (Some('b'), _) => 1,
        (Some('s'), _) => 2,
        (Some(_), _) => 4,
        (None, Kind::Fixed(n)) => n as usize,
        (None, _) if n > 0xffff => 4,
        (None, _) if n > 0xff => 2,
        (None, _) => 1,
    };
    if len < 4 && n >> (8 * len) != 0 {
        return Err(FieldError::bad(format!(
            "{n} does not fit in the {len} byte(s) of option {code}"
        )));
    }
    Ok(OptionValue::Bytes(n.to_be_bytes()[4 - len..].to_vec()))
}

fn parse_addr(item: &str) -> Result<Ipv4Addr, FieldError> {
    item.parse()
        .map_err(|_| FieldError::bad(format!("'{item}' is not an IPv4 address")))
}

/// Plain addresses stay an address list (so `0.0.0.0` can become the
/// server's own address per reply); `net/len` items make the RFC 3442
/// descriptor form, which is bytes.
fn encode_addresses(code: u8, v: &str) -> Result<OptionValue, FieldError> {
    let items = split_fields(v);
    let mut addrs = Vec::new();
    let mut bytes = Vec::new();
    let mut any_prefix = false;
    for (i, item) in items.iter().enumerate() {
        match item.split_once('/') {
            Some((net, len)) => {
                any_prefix = true;
                let net = parse_addr(net.trim())?;
                let width: u8 = len
                    .trim()
                    .parse()
                    .ok()
                    .filter(|w| *w <= 32)
                    .ok_or_else(|| FieldError::bad(format!("bad prefix length in '{item}'")))?;
                if code == CLASSLESS_ROUTE && i % 2 == 1 {
                    return Err(FieldError::bad(format!(
                        "classless-static-route router '{item}' must be a plain address"
                    )));
                }
                bytes.push(width);
                bytes.extend_from_slice(&net.octets()[..usize::from(width).div_ceil(8)]);
            }
            None => {
                let a = parse_addr(item)?;
                if code == CLASSLESS_ROUTE && i % 2 == 0 {
                    return Err(FieldError::bad(format!(
                        "classless-static-route destination '{item}' needs a /prefix-length"
                    )));
                }
                addrs.push(a);
                bytes.extend_from_slice(&a.octets());
            }
        }
    }
    if code == CLASSLESS_ROUTE && items.len() % 2 == 1 {
        return Err(FieldError::bad(
            "classless-static-route takes destination/prefix,router pairs",
        ));
    }
    if code == SIP_SERVER {
        // RFC 3361: encoding byte 1 means a list of addresses.
        let mut out = vec![1];
        out.extend(bytes);
        return Ok(OptionValue::Bytes(out));
    }
    if any_prefix {
        Ok(OptionValue::Bytes(bytes))
    } else {
        Ok(OptionValue::Addresses(addrs))
    }
}

/// Domain names in wire form, later names compressed against earlier ones
/// (RFC 3397 section 2; pointers count from the start of the option data).
fn encode_names(v: &str) -> Result<Vec<u8>, FieldError> {
    let mut out = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for item in split_fields(v) {
        let item = unhide(item);
        if item.is_empty() {
            continue;
        }
        if item == "." {
            out.push(0);
            continue;
        }
        let name = check_domain(&item).map_err(|e| FieldError::bad(format!("bad domain: {e}")))?;
        let labels: Vec<&str> = name.split('.').collect();
        let mut compressed = false;
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if let Some((_, off)) = seen.iter().find(|(s, _)| *s == suffix) {
                let ptr = 0xC000u16 | (*off as u16);
                out.extend_from_slice(&ptr.to_be_bytes());
                compressed = true;
                break;
            }
            if out.len() < 0x3FFF {
                seen.push((suffix, out.len()));
            }
            out.push(labels[i].len() as u8);
            out.extend_from_slice(labels[i].as_bytes());
        }
        if !compressed {
            out.push(0);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::TagMatch;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn val(v: &str) -> OptionValue {
        parse(v, false).unwrap().value
    }

    fn bytes(v: &str) -> Vec<u8> {
        match val(v) {
            OptionValue::Bytes(b) => b,
            other => panic!("expected bytes for {v}, got {other:?}"),
        }
    }

    fn bad(v: &str) -> String {
        match parse(v, false) {
            Err(FieldError::Bad(r)) => r,
            other => panic!("expected an error for {v}, got {other:?}"),
        }
    }

    #[test]
    fn router_by_number_and_name() {
        assert_eq!(
            val("3,198.18.0.1"),
            OptionValue::Addresses(vec![ip("198.18.0.1")])
        );
        let s = parse("option:router,198.18.0.1", true).unwrap();
        assert_eq!(s.code, 3);
        assert!(s.force);
        assert_eq!(s.value, OptionValue::Addresses(vec![ip("198.18.0.1")]));
    }

    #[test]
    fn address_lists_and_this_server() {
        assert_eq!(
            val("option:dns-server,0.0.0.0,198.18.0.2"),
            OptionValue::Addresses(vec![ip("0.0.0.0"), ip("198.18.0.2")])
        );
        assert_eq!(
            val("option:ntp-server, 198.18.0.1"),
            OptionValue::Addresses(vec![ip("198.18.0.1")])
        );
        assert_eq!(
            val("option:netmask,255.255.254.0"),
            OptionValue::Addresses(vec![ip("255.255.254.0")])
        );
        assert_eq!(
            val("option:broadcast,198.18.1.255"),
            OptionValue::Addresses(vec![ip("198.18.1.255")])
        );
        assert_eq!(
            val("option:static-route,198.19.0.0,198.18.0.1"),
            OptionValue::Addresses(vec![ip("198.19.0.0"), ip("198.18.0.1")])
        );
        assert_eq!(
            val("option:log-server,198.18.0.3"),
            OptionValue::Addresses(vec![ip("198.18.0.3")])
        );
        assert_eq!(
            val("option:tftp-server-address,198.18.0.4"),
            OptionValue::Addresses(vec![ip("198.18.0.4")])
        );
    }

    #[test]
    fn empty_value_means_not_sent() {
        assert_eq!(val("3"), OptionValue::Empty);
        assert_eq!(val("option:router"), OptionValue::Empty);
        assert_eq!(val("3,"), OptionValue::Empty);
    }

    #[test]
    fn numbers() {
        assert_eq!(bytes("option:mtu,1500"), vec![0x05, 0xdc]);
        assert_eq!(bytes("option:ip-forward-enable,0"), vec![0]);
        assert_eq!(bytes("option:all-subnets-local,1"), vec![1]);
        assert_eq!(bytes("option:time-offset,3600"), vec![0, 0, 0x0e, 0x10]);
        // Unknown options: sized by magnitude, or by a b/s/i suffix.
        assert_eq!(bytes("200,5"), vec![5]);
        assert_eq!(bytes("200,300"), vec![1, 0x2c]);
        assert_eq!(bytes("200,70000"), vec![0, 1, 0x11, 0x70]);
        assert_eq!(bytes("200,5s"), vec![0, 5]);
        assert_eq!(bytes("200,5i"), vec![0, 0, 0, 5]);
        assert_eq!(bytes("200,5b"), vec![5]);
        assert!(bad("option:mtu,70000").contains("does not fit"));
        assert!(bad("200,99999999999").contains("too large"));
    }

    #[test]
    fn times() {
        assert_eq!(bytes("option:T1,30m"), vec![0, 0, 0x07, 0x08]);
        assert_eq!(bytes("option:T2,3000"), vec![0, 0, 0x0b, 0xb8]);
        assert_eq!(bytes("option:lease-time,1h"), vec![0, 0, 0x0e, 0x10]);
        assert_eq!(bytes("51,2d"), 172800u32.to_be_bytes().to_vec());
        assert!(bad("option:T1,1.5h").contains("not a time"));
    }

    #[test]
    fn strings() {
        assert_eq!(bytes("option:domain-name,home.lan"), b"home.lan".to_vec());
        assert_eq!(bytes("option:hostname,box"), b"box".to_vec());
        assert_eq!(
            bytes("option:bootfile-name,pxelinux.0"),
            b"pxelinux.0".to_vec()
        );
        assert_eq!(
            bytes("option:tftp-server,tftp.home.lan"),
            b"tftp.home.lan".to_vec()
        );
        assert_eq!(bytes("option:root-path,/srv/root"), b"/srv/root".to_vec());
        assert_eq!(bytes("252,\"\\n\""), b"\"\\n\"".to_vec());
        // An unknown option with text is sent as is.
        assert_eq!(bytes("224,hello world"), b"hello world".to_vec());
    }

    #[test]
    fn hex_bytes() {
        assert_eq!(
            bytes("option:vendor-encap,01:04:c0:a8:00:01"),
            vec![1, 4, 0xc0, 0xa8, 0, 1]
        );
        assert_eq!(bytes("250,01:02:03"), vec![1, 2, 3]);
        assert_eq!(bytes("43,01:02:03"), vec![1, 2, 3]);
    }

    #[test]
    fn domain_search_is_compressed() {
        let b = bytes("option:domain-search,eng.example.com,example.com,lab.example.com");
        let mut want = vec![3];
        want.extend(b"eng");
        want.push(7);
        want.extend(b"example");
        want.push(3);
        want.extend(b"com");
        want.push(0);
        // example.com -> pointer to offset 4
        want.extend([0xC0, 4]);
        // lab + pointer to offset 4
        want.push(3);
        want.extend(b"lab");
        want.extend([0xC0, 4]);
        assert_eq!(b, want);
        assert!(bad("option:domain-search,bad..name").contains("bad domain"));
    }

    #[test]
    fn classless_static_route() {
        let b =
            bytes("option:classless-static-route,198.19.0.0/16,198.18.0.1,0.0.0.0/0,198.18.0.254");
        assert_eq!(b, vec![16, 198, 19, 198, 18, 0, 1, 0, 198, 18, 0, 254]);
        let b = bytes("121,10.1.2.0/24,198.18.0.1");
        assert_eq!(b, vec![24, 10, 1, 2, 198, 18, 0, 1]);
        assert!(
            bad("option:classless-static-route,198.19.0.0,198.18.0.1").contains("needs a /prefix")
        );
        assert!(bad("option:classless-static-route,198.19.0.0/16").contains("pairs"));
        assert!(
            bad("option:classless-static-route,198.19.0.0/33,198.18.0.1").contains("prefix length")
        );
    }

    #[test]
    fn sip_server() {
        assert_eq!(
            bytes("option:sip-server,198.18.0.5"),
            vec![1, 198, 18, 0, 5]
        );
        let b = bytes("option:sip-server,sip.example.com");
        assert_eq!(b[0], 0);
        assert_eq!(b[1], 3);
    }

    #[test]
    fn tags() {
        let s = parse("tag:lan,tag:!guest,option:router,198.18.0.1", false).unwrap();
        assert_eq!(
            s.match_tags,
            vec![
                TagMatch {
                    name: "lan".into(),
                    negate: false
                },
                TagMatch {
                    name: "guest".into(),
                    negate: true
                }
            ]
        );
        let s = parse("set:wifi,3,198.18.0.1", false).unwrap();
        assert_eq!(s.match_tags[0].name, "wifi");
        let s = parse("wifi,3,198.18.0.1", false).unwrap();
        assert_eq!(s.match_tags[0].name, "wifi");
    }

    #[test]
    fn errors() {
        assert!(bad("option:router,not-an-address").contains("takes IPv4 addresses"));
        assert!(bad("option:router,198.18.0").contains("not an IPv4 address"));
        assert!(bad("3,1,2").contains("takes IPv4 addresses"));
        assert!(bad("option:nonsense,1").contains("unknown DHCP option name 'nonsense'"));
        assert!(bad("option:message-type,1").contains("filled in by the server"));
        assert!(bad("256,1").contains("out of range"));
        assert!(bad("0,1").contains("out of range"));
        assert!(bad("tag:lan").contains("no option number"));
        let long = format!("224,{}", "x".repeat(256));
        assert!(bad(&long).contains("more than the 255"));
        assert!(parse(&format!("224,{}", "x".repeat(255)), false).is_ok());
    }

    #[test]
    fn not_yet_forms() {
        for v in [
            "encap:175,1,1",
            "vendor:MSFT,2,1i",
            "option6:dns-server,[::]",
            "vi-encap:1,1,1",
        ] {
            assert!(matches!(parse(v, false), Err(FieldError::NotYet(_))), "{v}");
        }
    }
}
