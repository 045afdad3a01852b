//! Values of dnsmasq's DNS options: `server`/`local`, `address`,
//! `rev-server`, the record options (`cname`, `mx-host`, `srv-host`,
//! `txt-record`, `ptr-record`, `host-record`), `rebind-domain-ok` and the
//! authoritative-zone options (`auth-zone`, `auth-server`, `auth-soa`,
//! `auth-sec-servers`, `auth-peer`).
//!
//! Names are normalised here once (lowercase, no trailing dot) so the DNS
//! engine can compare them byte for byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::dns_types::{
    AddrPrefix, AddressOverride, AuthConfig, AuthServer, AuthZone, CnameRecord, DomainServer,
    DomainTarget, HostRecord, IfFamily, MxRecord, PtrRecord, RevServer, SrvRecord, TxtRecord,
    ZoneNet, DEFAULT_DNS_PORT,
};
use super::error::FieldError;
use super::names::{check_domain, check_interface};
use super::value::{parse_u32, split_fields, unhide};

/// A character-string in a TXT record holds at most 255 bytes (RFC 1035).
const MAX_TXT_STRING: usize = 255;

/// A DNS name from a config field, normalised.
pub(crate) fn dns_name(field: &str) -> Result<String, FieldError> {
    let text = unhide(field);
    // dnsmasq accepts `*` in some names (wildcard cname, server=/*.dom/);
    // the engine has no wildcard matching, so say so instead of "bad name".
    if text.contains('*') {
        return Err(FieldError::not_yet(format!("the wildcard name '{text}'")));
    }
    check_domain(&text)
        .map(|n| n.to_ascii_lowercase())
        .map_err(FieldError::Bad)
}

fn optional_name(field: Option<&str>) -> Result<Option<String>, FieldError> {
    match field {
        None | Some("") => Ok(None),
        Some(f) => dns_name(f).map(Some),
    }
}

fn u16_field(field: &str, what: &str) -> Result<u16, FieldError> {
    parse_u32(field)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| FieldError::bad(format!("bad {what} '{}'", unhide(field))))
}

fn ttl_field(field: &str) -> Result<u32, FieldError> {
    parse_u32(field).ok_or_else(|| FieldError::bad(format!("bad TTL '{}'", unhide(field))))
}

fn ip(text: &str) -> Result<IpAddr, FieldError> {
    text.parse()
        .map_err(|_| FieldError::bad(format!("'{text}' is not an IP address")))
}

/// An upstream server, `ip[#port]` (IPv4 or IPv6).
fn upstream(text: &str) -> Result<SocketAddr, FieldError> {
    if text.contains('@') {
        return Err(FieldError::not_yet(
            "a source address or interface for the server (@...)",
        ));
    }
    let (addr, port) = match text.split_once('#') {
        Some((addr, port)) => (addr, Some(port)),
        None => (text, None),
    };
    let addr = ip(addr)?;
    let port = match port {
        None => DEFAULT_DNS_PORT,
        Some(p) => parse_u32(p)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0)
            .ok_or_else(|| FieldError::bad(format!("'{p}' is not a port number")))?,
    };
    Ok(SocketAddr::new(addr, port))
}

/// Splits `/dom1/dom2/rest` into the domains and what follows the last
/// slash; `None` when the value has no domain list. An empty domain
/// (`//`) stands for unqualified names.
fn domain_list(value: &str) -> Result<Option<(Vec<String>, &str)>, FieldError> {
    let Some(body) = value.strip_prefix('/') else {
        return Ok(None);
    };
    let Some((domains, rest)) = body.rsplit_once('/') else {
        return Err(FieldError::bad("the domain list needs a closing '/'"));
    };
    let mut out = Vec::new();
    for d in domains.split('/') {
        if d.is_empty() {
            out.push(String::new());
        } else if d == "#" {
            return Err(FieldError::not_yet("the domain '#' (every domain)"));
        } else {
            out.push(dns_name(d)?);
        }
    }
    Ok(Some((out, rest)))
}

/// What one `server=`/`local=` line adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerLine {
    /// `server=ip[#port]`: a normal upstream server.
    Default(SocketAddr),
    Domains(DomainServer),
}

/// `server=` and `local=` (one option in dnsmasq, two names).
pub(crate) fn parse_server(value: &str) -> Result<ServerLine, FieldError> {
    let value = unhide(value);
    match domain_list(&value)? {
        None => {
            if value.is_empty() {
                return Err(FieldError::bad("empty server address"));
            }
            if value == "#" {
                return Err(FieldError::bad(
                    "'#' (use the normal servers) goes only after a /domain/ list",
                ));
            }
            Ok(ServerLine::Default(upstream(&value)?))
        }
        Some((domains, rest)) => {
            let target = match rest {
                "" => DomainTarget::Local,
                "#" => DomainTarget::UseDefault,
                r => DomainTarget::Upstream(upstream(r)?),
            };
            Ok(ServerLine::Domains(DomainServer { domains, target }))
        }
    }
}

/// `address=/dom[/dom...]/[ip|#]`
pub(crate) fn parse_address(value: &str) -> Result<AddressOverride, FieldError> {
    let value = unhide(value);
    let Some((domains, rest)) = domain_list(&value)? else {
        return Err(FieldError::bad(
            "needs a /domain/ list, as in address=/example.com/192.0.2.1",
        ));
    };
    let addrs = match rest {
        "" => Vec::new(),
        "#" => vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ],
        r => vec![ip(r)?],
    };
    Ok(AddressOverride { domains, addrs })
}

fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// `bogus-nxdomain` and `ignore-address`: `addr[/prefix]`. As in dnsmasq,
/// blanks around the `/` go, the prefix is plain digits, and an empty one
/// is 0.
pub(crate) fn parse_addr_prefix(value: &str) -> Result<AddrPrefix, FieldError> {
    let value = unhide(value);
    let (addr, len) = match value.split_once('/') {
        Some((a, l)) => (a.trim_end(), Some(l.trim_start())),
        None => (value.as_str(), None),
    };
    let addr = ip(addr)?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len {
        None => max,
        Some(l) if l.bytes().all(|b| b.is_ascii_digit()) => {
            let n = if l.is_empty() {
                Some(0)
            } else {
                l.parse::<u8>().ok()
            };
            n.filter(|p| *p <= max)
                .ok_or_else(|| FieldError::bad(format!("bad prefix length '{l}'")))?
        }
        Some(l) => return Err(FieldError::bad(format!("bad prefix length '{l}'"))),
    };
    Ok(AddrPrefix { addr, prefix })
}

/// `rev-server=net/prefix[,ip[#port]]`
pub(crate) fn parse_rev_server(value: &str) -> Result<RevServer, FieldError> {
    let value = unhide(value);
    let fields = split_fields(&value);
    if fields.len() > 2 {
        return Err(FieldError::bad("too many fields"));
    }
    let Some((addr, len)) = fields[0].split_once('/') else {
        return Err(FieldError::bad(format!(
            "'{}' is not a subnet (net/prefix)",
            fields[0]
        )));
    };
    let addr = ip(addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = len
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| FieldError::bad(format!("bad prefix length '{len}'")))?;
    let target = match fields.get(1).copied() {
        None | Some("") => DomainTarget::Local,
        Some("#") => DomainTarget::UseDefault,
        Some(s) => DomainTarget::Upstream(upstream(s)?),
    };
    Ok(RevServer {
        net: masked(addr, prefix),
        prefix,
        target,
    })
}

/// `cname=alias[,alias...],target[,ttl]`; `earlier` are the cnames already
/// read, since an alias may have one target only.
pub(crate) fn parse_cname(value: &str, earlier: &[CnameRecord]) -> Result<CnameRecord, FieldError> {
    let mut fields = split_fields(value);
    // A trailing number is the TTL only when an alias and target remain,
    // as in dnsmasq: `cname=a,10` has the (odd) target "10".
    let ttl = match fields.last() {
        Some(last) if fields.len() >= 3 && parse_u32(last).is_some() => {
            let t = ttl_field(last)?;
            fields.pop();
            Some(t)
        }
        _ => None,
    };
    if fields.len() < 2 {
        return Err(FieldError::bad("needs an alias and a target"));
    }
    let target = dns_name(fields[fields.len() - 1])?;
    let mut aliases: Vec<String> = Vec::new();
    for f in &fields[..fields.len() - 1] {
        let alias = dns_name(f)?;
        if alias == target {
            return Err(FieldError::bad(format!(
                "'{alias}' would be an alias of itself"
            )));
        }
        let dup = aliases.contains(&alias) || earlier.iter().any(|c| c.aliases.contains(&alias));
        if dup {
            return Err(FieldError::bad(format!("duplicate CNAME '{alias}'")));
        }
        aliases.push(alias);
    }
    Ok(CnameRecord {
        aliases,
        target,
        ttl,
    })
}

/// dnsmasq's MX preference when none is given.
const DEFAULT_MX_PREFERENCE: u16 = 1;

/// `mx-host=name[,target[,preference]]`. As in dnsmasq, the second field
/// is always the target: `mx-host=a,10` points at a host named "10".
pub(crate) fn parse_mx(value: &str) -> Result<MxRecord, FieldError> {
    let fields = split_fields(value);
    if fields.len() > 3 {
        return Err(FieldError::bad("too many fields"));
    }
    let name = dns_name(fields[0])?;
    let target = optional_name(fields.get(1).copied())?;
    let preference = match fields.get(2) {
        Some(p) => u16_field(p, "MX preference")?,
        None => DEFAULT_MX_PREFERENCE,
    };
    Ok(MxRecord {
        name,
        target,
        preference,
    })
}

/// dnsmasq's SRV port when a target is given without one.
const DEFAULT_SRV_PORT: u16 = 1;

/// `srv-host=_service._proto.name[,target[,port[,priority[,weight]]]]`
pub(crate) fn parse_srv(value: &str) -> Result<SrvRecord, FieldError> {
    let fields = split_fields(value);
    if fields.len() > 5 {
        return Err(FieldError::bad("too many fields"));
    }
    let name = dns_name(fields[0])?;
    let target = optional_name(fields.get(1).copied())?;
    let num = |i: usize, what: &str, default: u16| match fields.get(i) {
        Some(f) => u16_field(f, what),
        None => Ok(default),
    };
    Ok(SrvRecord {
        name,
        target,
        port: num(2, "SRV port", DEFAULT_SRV_PORT)?,
        priority: num(3, "SRV priority", 0)?,
        weight: num(4, "SRV weight", 0)?,
    })
}

/// `txt-record=name[,text[,text...]]`; quoting keeps commas in a text.
pub(crate) fn parse_txt(value: &str) -> Result<TxtRecord, FieldError> {
    let fields = split_fields(value);
    let name = dns_name(fields[0])?;
    let mut texts = Vec::new();
    for f in &fields[1..] {
        let text = unhide(f);
        if text.len() > MAX_TXT_STRING {
            return Err(FieldError::bad(format!(
                "a TXT string is {} bytes long, more than {MAX_TXT_STRING}",
                text.len()
            )));
        }
        texts.push(text);
    }
    // dnsmasq answers a bare `txt-record=name` with one empty string: a
    // TXT record must hold at least one.
    if texts.is_empty() {
        texts.push(String::new());
    }
    Ok(TxtRecord { name, texts })
}

/// `ptr-record=name[,target]`
pub(crate) fn parse_ptr(value: &str) -> Result<PtrRecord, FieldError> {
    let fields = split_fields(value);
    if fields.len() > 2 {
        return Err(FieldError::bad("too many fields"));
    }
    Ok(PtrRecord {
        name: dns_name(fields[0])?,
        target: optional_name(fields.get(1).copied())?,
    })
}

/// `host-record=name[,name...],[ipv4],[ipv6][,ttl]`: names first, then
/// addresses, then an optional TTL; empty fields are skipped.
pub(crate) fn parse_host_record(value: &str) -> Result<HostRecord, FieldError> {
    let fields: Vec<&str> = split_fields(value)
        .into_iter()
        .filter(|f| !f.is_empty())
        .collect();
    let mut names = Vec::new();
    let mut addrs = Vec::new();
    let mut ttl = None;
    for (i, f) in fields.iter().enumerate() {
        let text = unhide(f);
        if ttl.is_some() {
            return Err(FieldError::bad(format!(
                "'{text}' after the TTL (the TTL goes last)"
            )));
        }
        if let Ok(a) = text.parse::<IpAddr>() {
            if names.is_empty() {
                return Err(FieldError::bad("the names go before the addresses"));
            }
            addrs.push(a);
        } else if !addrs.is_empty() && i == fields.len() - 1 {
            ttl = Some(ttl_field(f)?);
        } else if !addrs.is_empty() {
            return Err(FieldError::bad(format!(
                "'{text}' is not an IP address (the names go before the addresses)"
            )));
        } else {
            names.push(dns_name(f)?);
        }
    }
    if names.is_empty() {
        return Err(FieldError::bad("needs a name"));
    }
    if addrs.is_empty() {
        return Err(FieldError::bad("needs an IPv4 or IPv6 address"));
    }
    Ok(HostRecord { names, addrs, ttl })
}

/// `rebind-domain-ok=/dom/[dom/...]` or `rebind-domain-ok=dom`.
pub(crate) fn parse_rebind_domains(value: &str) -> Result<Vec<String>, FieldError> {
    let value = unhide(value);
    let names: Vec<&str> = if value.starts_with('/') {
        value.split('/').filter(|d| !d.is_empty()).collect()
    } else {
        vec![value.as_str()]
    };
    if names.is_empty() {
        return Err(FieldError::bad("needs a domain"));
    }
    names.into_iter().map(dns_name).collect()
}

/// dnsmasq's prefix lengths for an `auth-zone` subnet given without one.
const DEFAULT_ZONE_PREFIX_V4: u8 = 24;
const DEFAULT_ZONE_PREFIX_V6: u8 = 64;

/// An interface name with an optional `/4` or `/6` (which of its addresses).
fn interface_with_family(text: &str) -> Result<(String, IfFamily), FieldError> {
    let (name, family) = match text.rsplit_once('/') {
        Some((n, "4")) => (n, IfFamily::V4),
        Some((n, "6")) => (n, IfFamily::V6),
        Some((_, other)) => {
            return Err(FieldError::bad(format!(
                "'{text}': an interface takes /4 or /6, not /{other}"
            )))
        }
        None => (text, IfFamily::Any),
    };
    Ok((check_interface(name).map_err(FieldError::Bad)?, family))
}

/// `subnet[/len]` or an interface name (`eth0`, `eth0/4`, `eth0/6`).
fn zone_net(text: &str) -> Result<ZoneNet, FieldError> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        let (name, family) = interface_with_family(text)?;
        return Ok(ZoneNet::Interface { name, family });
    };
    let (max, default) = if addr.is_ipv4() {
        (32, DEFAULT_ZONE_PREFIX_V4)
    } else {
        (128, DEFAULT_ZONE_PREFIX_V6)
    };
    let prefix = match len {
        None => default,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| FieldError::bad(format!("bad prefix length '{l}'")))?,
    };
    Ok(ZoneNet::Subnet { addr, prefix })
}

/// `auth-zone=domain[,subnet[/len]...][,exclude:subnet[/len]...]`; each
/// subnet may be an interface name instead.
pub(crate) fn parse_auth_zone(value: &str) -> Result<AuthZone, FieldError> {
    let fields = split_fields(value);
    let domain = dns_name(fields[0])?;
    let mut subnets = Vec::new();
    let mut excludes = Vec::new();
    for f in &fields[1..] {
        let text = unhide(f);
        if text.is_empty() {
            return Err(FieldError::bad("empty subnet"));
        }
        match text.strip_prefix("exclude:") {
            Some(rest) => excludes.push(zone_net(rest)?),
            None => subnets.push(zone_net(&text)?),
        }
    }
    Ok(AuthZone {
        domain,
        subnets,
        excludes,
    })
}

/// `auth-server=name[,interface|address...]`
pub(crate) fn parse_auth_server(value: &str) -> Result<AuthServer, FieldError> {
    let fields = split_fields(value);
    if fields[0].is_empty() {
        return Err(FieldError::bad("needs the name server's name"));
    }
    let name = dns_name(fields[0])?;
    let mut interfaces = Vec::new();
    let mut addrs = Vec::new();
    for f in &fields[1..] {
        let text = unhide(f);
        match text.parse::<IpAddr>() {
            // The authoritative service is IPv4 only: an IPv6 address
            // would get the normal one, so say so rather than accept it.
            Ok(IpAddr::V6(_)) => {
                return Err(FieldError::not_yet(format!(
                    "the IPv6 auth-server address '{text}' (authoritative service over IPv6)"
                )))
            }
            Ok(a) => addrs.push(a),
            Err(_) => interfaces.push(interface_with_family(&text)?),
        }
    }
    Ok(AuthServer {
        name,
        interfaces,
        addrs,
    })
}

/// `auth-soa=serial[,hostmaster[,refresh[,retry[,expiry]]]]` into `auth`.
pub(crate) fn parse_auth_soa(value: &str, auth: &mut AuthConfig) -> Result<(), FieldError> {
    let fields = split_fields(value);
    if fields.len() > 5 {
        return Err(FieldError::bad("too many fields"));
    }
    let num = |f: &str, what: &str| {
        parse_u32(f).ok_or_else(|| FieldError::bad(format!("bad {what} '{}'", unhide(f))))
    };
    auth.serial = Some(num(fields[0], "serial")?);
    if let Some(h) = fields.get(1).filter(|h| !h.is_empty()) {
        // dnsmasq lets the mailbox be written as an address.
        let h = unhide(h).replace('@', ".");
        auth.hostmaster = Some(dns_name(&h)?);
    }
    if let Some(f) = fields.get(2) {
        auth.refresh = num(f, "refresh")?;
    }
    if let Some(f) = fields.get(3) {
        auth.retry = num(f, "retry")?;
    }
    if let Some(f) = fields.get(4) {
        auth.expiry = num(f, "expiry")?;
    }
    Ok(())
}

/// `auth-sec-servers=name[,name...]`
pub(crate) fn parse_name_list(value: &str) -> Result<Vec<String>, FieldError> {
    split_fields(value).into_iter().map(dns_name).collect()
}

/// `auth-peer=ip[,ip...]`
pub(crate) fn parse_peers(value: &str) -> Result<Vec<IpAddr>, FieldError> {
    split_fields(value)
        .into_iter()
        .map(|f| ip(&unhide(f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ipa(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn bad<T: std::fmt::Debug>(r: Result<T, FieldError>) -> String {
        match r {
            Err(FieldError::Bad(s)) => s,
            other => panic!("expected Bad, got {other:?}"),
        }
    }

    fn not_yet<T: std::fmt::Debug>(r: Result<T, FieldError>) -> String {
        match r {
            Err(FieldError::NotYet(s)) => s,
            other => panic!("expected NotYet, got {other:?}"),
        }
    }

    fn doms(target: DomainTarget, domains: &[&str]) -> ServerLine {
        ServerLine::Domains(DomainServer {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            target,
        })
    }

    #[test]
    fn addr_prefix_as_dnsmasq_reads_it() {
        let p = |v: &str| parse_addr_prefix(v).unwrap();
        assert_eq!(
            p("198.18.7.7"),
            AddrPrefix {
                addr: ipa("198.18.7.7"),
                prefix: 32
            }
        );
        assert_eq!(p("2001:db8::1").prefix, 128);
        assert_eq!(p("198.18.7.0/24").prefix, 24);
        assert_eq!(p("198.18.7.0 / 08").prefix, 8);
        // dnsmasq reads an empty prefix as 0: every address of the family.
        let all = p("198.18.7.7/");
        assert_eq!(all.prefix, 0);
        assert!(all.contains(ipa("203.0.113.1")));
        assert!(!all.contains(ipa("2001:db8::1")));
        let net = p("2001:db8:7::/48");
        assert!(net.contains(ipa("2001:db8:7:ffff::1")));
        assert!(!net.contains(ipa("2001:db8:8::1")));
        assert!(!p("198.18.7.0/24").contains(ipa("198.18.8.1")));
        for bad_value in [
            "",
            "host",
            "198.18.7.7/33",
            "::1/129",
            "198.18.7.7/-1",
            "198.18.7.7/1x",
            "198.18.7.7/2/4",
            "198.18.7.7/8 x",
        ] {
            assert!(parse_addr_prefix(bad_value).is_err(), "{bad_value}");
        }
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(dns_name("Home.LAN.").unwrap(), "home.lan");
        assert_eq!(dns_name("_sip._tcp.x").unwrap(), "_sip._tcp.x");
        assert!(dns_name(&"a".repeat(64)).is_err());
        assert!(dns_name("a b").is_err());
        assert!(dns_name("é.lan").is_err());
        assert!(not_yet(dns_name("*.lan")).contains("wildcard"));
    }

    #[test]
    fn server_forms() {
        use DomainTarget::*;
        assert_eq!(
            parse_server("198.18.0.53").unwrap(),
            ServerLine::Default(sa("198.18.0.53:53"))
        );
        assert_eq!(
            parse_server("198.18.0.53#5353").unwrap(),
            ServerLine::Default(sa("198.18.0.53:5353"))
        );
        assert_eq!(
            parse_server("::1#5353").unwrap(),
            ServerLine::Default(sa("[::1]:5353"))
        );
        assert_eq!(
            parse_server("2001:db8::53").unwrap(),
            ServerLine::Default(sa("[2001:db8::53]:53"))
        );
        assert_eq!(
            parse_server("/Corp.Example./198.18.1.1").unwrap(),
            doms(Upstream(sa("198.18.1.1:53")), &["corp.example"])
        );
        assert_eq!(
            parse_server("/a.example/b.example/198.18.1.1#5300").unwrap(),
            doms(Upstream(sa("198.18.1.1:5300")), &["a.example", "b.example"])
        );
        assert_eq!(
            parse_server("/lan/::1").unwrap(),
            doms(Upstream(sa("[::1]:53")), &["lan"])
        );
        assert_eq!(
            parse_server("/home.lan/").unwrap(),
            doms(Local, &["home.lan"])
        );
        assert_eq!(
            parse_server("/x.example/#").unwrap(),
            doms(UseDefault, &["x.example"])
        );
        assert_eq!(
            parse_server("//198.18.0.1").unwrap(),
            doms(Upstream(sa("198.18.0.1:53")), &[""])
        );
        assert_eq!(parse_server("//").unwrap(), doms(Local, &[""]));
    }

    #[test]
    fn server_errors() {
        assert!(not_yet(parse_server("198.18.0.53@eth0")).contains("@"));
        assert!(not_yet(parse_server("/x/198.18.0.53#53@198.18.0.1")).contains("@"));
        assert!(not_yet(parse_server("/#/198.18.0.1")).contains("'#'"));
        assert!(not_yet(parse_server("/*.x/198.18.0.1")).contains("wildcard"));
        assert_eq!(
            bad(parse_server("dns.example")),
            "'dns.example' is not an IP address"
        );
        assert_eq!(bad(parse_server("198.18.0.53#")), "'' is not a port number");
        assert_eq!(
            bad(parse_server("198.18.0.53#70000")),
            "'70000' is not a port number"
        );
        assert_eq!(
            bad(parse_server("198.18.0.53#0")),
            "'0' is not a port number"
        );
        assert_eq!(bad(parse_server("")), "empty server address");
        assert!(bad(parse_server("#")).contains("/domain/"));
        assert!(bad(parse_server("/x.example")).contains("closing"));
        assert!(bad(parse_server("/a..b/")).contains("empty label"));
        assert!(bad(parse_server("/x/1.2.3")).contains("not an IP"));
    }

    #[test]
    fn address_forms() {
        let a = parse_address("/ads.example/").unwrap();
        assert_eq!(a.domains, vec!["ads.example"]);
        assert!(a.addrs.is_empty());
        let a = parse_address("/ads.example/#").unwrap();
        assert_eq!(a.addrs, vec![ipa("0.0.0.0"), ipa("::")]);
        let a = parse_address("/A.example/b.example/198.18.0.7").unwrap();
        assert_eq!(a.domains, vec!["a.example", "b.example"]);
        assert_eq!(a.addrs, vec![ipa("198.18.0.7")]);
        let a = parse_address("/v6.example/2001:db8::7").unwrap();
        assert_eq!(a.addrs, vec![ipa("2001:db8::7")]);
        assert!(bad(parse_address("198.18.0.7")).contains("/domain/"));
        assert!(bad(parse_address("/x/198.18.0.7#53")).contains("not an IP"));
        assert!(bad(parse_address("/x/banana")).contains("not an IP"));
        assert!(not_yet(parse_address("/#/0.0.0.0")).contains("'#'"));
    }

    #[test]
    fn rev_server_forms() {
        let r = parse_rev_server("198.18.7.9/24,198.18.0.53").unwrap();
        assert_eq!(r.net, ipa("198.18.7.0"));
        assert_eq!(r.prefix, 24);
        assert_eq!(r.target, DomainTarget::Upstream(sa("198.18.0.53:53")));
        let r = parse_rev_server("fd00:1::/48,::1#5353").unwrap();
        assert_eq!(r.net, ipa("fd00:1::"));
        assert_eq!(r.target, DomainTarget::Upstream(sa("[::1]:5353")));
        let r = parse_rev_server("10.0.0.0/8").unwrap();
        assert_eq!(r.target, DomainTarget::Local);
        assert!(bad(parse_rev_server("10.0.0.0")).contains("net/prefix"));
        assert!(bad(parse_rev_server("10.0.0.0/33")).contains("prefix"));
        assert!(bad(parse_rev_server("fd00::/129")).contains("prefix"));
        assert!(bad(parse_rev_server("10.0.0.0/8,1,2")).contains("too many"));
        assert!(not_yet(parse_rev_server("10.0.0.0/8,198.18.0.1@eth0")).contains("@"));
    }

    #[test]
    fn cname_forms() {
        let c = parse_cname("Www.home.lan,nas.home.lan", &[]).unwrap();
        assert_eq!(c.aliases, vec!["www.home.lan"]);
        assert_eq!(c.target, "nas.home.lan");
        assert_eq!(c.ttl, None);
        let c = parse_cname("a.lan,b.lan,nas.lan,600", &[]).unwrap();
        assert_eq!(c.aliases, vec!["a.lan", "b.lan"]);
        assert_eq!(c.target, "nas.lan");
        assert_eq!(c.ttl, Some(600));
        let c = parse_cname("a.lan,10", &[]).unwrap();
        assert_eq!(c.target, "10");
        assert!(bad(parse_cname("a.lan", &[])).contains("alias and a target"));
        assert!(bad(parse_cname("a.lan,a.lan", &[])).contains("itself"));
        assert!(bad(parse_cname("a.lan,a.lan,b.lan", &[])).contains("duplicate"));
        let earlier = [parse_cname("a.lan,b.lan", &[]).unwrap()];
        assert_eq!(
            bad(parse_cname("A.lan,c.lan", &earlier)),
            "duplicate CNAME 'a.lan'"
        );
        assert!(not_yet(parse_cname("*.lan,b.lan", &[])).contains("wildcard"));
    }

    #[test]
    fn mx_forms() {
        let m = parse_mx("home.lan").unwrap();
        assert_eq!(
            (m.name.as_str(), m.target.as_deref(), m.preference),
            ("home.lan", None, 1)
        );
        let m = parse_mx("home.lan,Mail.home.lan").unwrap();
        assert_eq!(m.target.as_deref(), Some("mail.home.lan"));
        assert_eq!(m.preference, 1);
        let m = parse_mx("home.lan,mail.home.lan,20").unwrap();
        assert_eq!(m.preference, 20);
        assert_eq!(parse_mx("home.lan,,5").unwrap().target, None);
        assert_eq!(
            bad(parse_mx("home.lan,mail,70000")),
            "bad MX preference '70000'"
        );
        assert!(bad(parse_mx("home.lan,mail,1,2")).contains("too many"));
        assert!(bad(parse_mx("bad name")).contains("character"));
    }

    #[test]
    fn srv_forms() {
        let s = parse_srv("_ldap._tcp.home.lan").unwrap();
        assert_eq!(s.name, "_ldap._tcp.home.lan");
        assert_eq!(s.target, None);
        let s = parse_srv("_ldap._tcp.home.lan,ldap.home.lan").unwrap();
        assert_eq!(s.target.as_deref(), Some("ldap.home.lan"));
        assert_eq!((s.port, s.priority, s.weight), (1, 0, 0));
        let s = parse_srv("_sip._udp.home.lan,pbx.home.lan,5060,10,20").unwrap();
        assert_eq!((s.port, s.priority, s.weight), (5060, 10, 20));
        assert_eq!(bad(parse_srv("_a._tcp.x,t,99999")), "bad SRV port '99999'");
        assert_eq!(bad(parse_srv("_a._tcp.x,t,1,x")), "bad SRV priority 'x'");
        assert_eq!(bad(parse_srv("_a._tcp.x,t,1,2,-3")), "bad SRV weight '-3'");
        assert!(bad(parse_srv("_a._tcp.x,t,1,2,3,4")).contains("too many"));
    }

    #[test]
    fn txt_and_ptr_forms() {
        let t = parse_txt("Home.lan,v=spf1 a -all").unwrap();
        assert_eq!(t.name, "home.lan");
        assert_eq!(t.texts, vec!["v=spf1 a -all"]);
        let t = parse_txt("x.lan,one,two").unwrap();
        assert_eq!(t.texts, vec!["one", "two"]);
        assert_eq!(parse_txt("x.lan").unwrap().texts, vec![""]);
        let long = format!("x.lan,{}", "a".repeat(256));
        assert!(bad(parse_txt(&long)).contains("255"));

        let p = parse_ptr("7.0.18.198.in-addr.arpa,NAS.home.lan").unwrap();
        assert_eq!(p.name, "7.0.18.198.in-addr.arpa");
        assert_eq!(p.target.as_deref(), Some("nas.home.lan"));
        assert_eq!(parse_ptr("_http._tcp.dns-sd.lan").unwrap().target, None);
        assert!(bad(parse_ptr("a,b,c")).contains("too many"));
    }

    #[test]
    fn host_record_forms() {
        let h = parse_host_record("nas,nas.home.lan,198.18.0.10").unwrap();
        assert_eq!(h.names, vec!["nas", "nas.home.lan"]);
        assert_eq!(h.addrs, vec![ipa("198.18.0.10")]);
        assert_eq!(h.ttl, None);
        let h = parse_host_record("nas,198.18.0.10,fd00::10,300").unwrap();
        assert_eq!(h.addrs, vec![ipa("198.18.0.10"), ipa("fd00::10")]);
        assert_eq!(h.ttl, Some(300));
        let h = parse_host_record("v6only,,fd00::10").unwrap();
        assert_eq!(h.addrs, vec![ipa("fd00::10")]);
        assert!(bad(parse_host_record("nas")).contains("address"));
        assert!(bad(parse_host_record("198.18.0.10")).contains("before"));
        assert!(bad(parse_host_record("nas,198.18.0.10,other")).contains("TTL"));
        assert!(bad(parse_host_record("nas,198.18.0.10,other,1")).contains("not an IP"));
        assert!(bad(parse_host_record("nas,198.18.0.10,1,2")).contains("'1' is not an IP"));
    }

    #[test]
    fn rebind_domains() {
        assert_eq!(
            parse_rebind_domains("Plex.Direct").unwrap(),
            vec!["plex.direct"]
        );
        assert_eq!(
            parse_rebind_domains("/a.example/b.example/").unwrap(),
            vec!["a.example", "b.example"]
        );
        assert!(bad(parse_rebind_domains("//")).contains("needs"));
        assert!(bad(parse_rebind_domains("a..b")).contains("empty label"));
    }

    #[test]
    fn auth_zone_forms() {
        let z = parse_auth_zone("Home.LAN").unwrap();
        assert_eq!(z.domain, "home.lan");
        assert!(z.subnets.is_empty() && z.excludes.is_empty());
        let z = parse_auth_zone(
            "home.lan,198.18.0.0/16,198.18.7.9,fd00::/48,eth0,eth1/4,exclude:198.18.0.5/32",
        )
        .unwrap();
        assert_eq!(
            z.subnets,
            vec![
                ZoneNet::Subnet {
                    addr: ipa("198.18.0.0"),
                    prefix: 16
                },
                ZoneNet::Subnet {
                    addr: ipa("198.18.7.9"),
                    prefix: 24
                },
                ZoneNet::Subnet {
                    addr: ipa("fd00::"),
                    prefix: 48
                },
                ZoneNet::Interface {
                    name: "eth0".into(),
                    family: IfFamily::Any
                },
                ZoneNet::Interface {
                    name: "eth1".into(),
                    family: IfFamily::V4
                },
            ]
        );
        assert_eq!(
            z.excludes,
            vec![ZoneNet::Subnet {
                addr: ipa("198.18.0.5"),
                prefix: 32
            }]
        );
        let z = parse_auth_zone("x,fd00::1").unwrap();
        assert_eq!(
            z.subnets,
            vec![ZoneNet::Subnet {
                addr: ipa("fd00::1"),
                prefix: 64
            }]
        );
        assert!(bad(parse_auth_zone("x,198.18.0.0/33")).contains("prefix"));
        assert!(bad(parse_auth_zone("x,fd00::/129")).contains("prefix"));
        assert!(bad(parse_auth_zone("x,eth0/5")).contains("/4 or /6"));
        assert!(bad(parse_auth_zone("x,")).contains("empty"));
        assert!(bad(parse_auth_zone("a..b")).contains("empty label"));
    }

    #[test]
    fn auth_server_forms() {
        let s = parse_auth_server("NS1.home.lan").unwrap();
        assert_eq!(s.name, "ns1.home.lan");
        assert!(!s.listens());
        let s = parse_auth_server("ns1.home.lan,eth0,198.18.0.1,wan/4").unwrap();
        assert_eq!(
            s.interfaces,
            vec![("eth0".into(), IfFamily::Any), ("wan".into(), IfFamily::V4)]
        );
        assert_eq!(s.addrs, vec![ipa("198.18.0.1")]);
        assert!(s.listens());
        assert!(bad(parse_auth_server("")).contains("name"));
        assert!(bad(parse_auth_server("a..b,eth0")).contains("empty label"));
        assert!(not_yet(parse_auth_server("ns1,fd00::1")).contains("IPv6"));
    }

    #[test]
    fn auth_soa_and_lists() {
        let mut a = AuthConfig::default();
        parse_auth_soa("2024010101", &mut a).unwrap();
        assert_eq!(a.serial, Some(2024010101));
        assert_eq!((a.hostmaster.as_deref(), a.refresh), (None, 1200));
        parse_auth_soa("5,John@Example.com,100,20,300", &mut a).unwrap();
        assert_eq!(a.serial, Some(5));
        assert_eq!(a.hostmaster.as_deref(), Some("john.example.com"));
        assert_eq!((a.refresh, a.retry, a.expiry), (100, 20, 300));
        assert_eq!(bad(parse_auth_soa("abc", &mut a)), "bad serial 'abc'");
        assert_eq!(bad(parse_auth_soa("1,h,x", &mut a)), "bad refresh 'x'");
        assert!(bad(parse_auth_soa("1,h,1,2,3,4", &mut a)).contains("too many"));
        assert_eq!(
            parse_name_list("a.example,B.example").unwrap(),
            vec!["a.example", "b.example"]
        );
        assert!(bad(parse_name_list("a..b")).contains("empty label"));
        assert_eq!(
            parse_peers("198.18.0.1,fd00::1").unwrap(),
            vec![ipa("198.18.0.1"), ipa("fd00::1")]
        );
        assert!(bad(parse_peers("nope")).contains("not an IP"));
    }
}
