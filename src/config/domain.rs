//! `domain=name[,net/len[,local]]` and `domain=name,start[,end]`: the
//! parse, and which line names a lease address ([`Config::domain_for`]),
//! which DHCP, DNS and the script must agree on.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::FieldError;
use super::names::check_domain;
use super::types::{Config, DomainScope, DomainSpec};
use super::value::{split_fields, unhide};
use crate::net::ipv4::same_subnet;

impl Config {
    /// The domain for a lease address: the first `domain=` whose scope holds
    /// it, else the first unscoped one.
    pub fn domain_for(&self, ip: Ipv4Addr) -> Option<&str> {
        let scoped = self.domains.iter().find(|d| match d.scope {
            DomainScope::All => false,
            DomainScope::Subnet { net, prefix } => same_subnet(ip, net, prefix),
            DomainScope::Range { start, end } => (start..=end).contains(&ip),
        });
        scoped
            .or_else(|| self.domains.iter().find(|d| d.scope == DomainScope::All))
            .map(|d| d.name.as_str())
    }
}

fn ipv4(field: &str) -> Result<Ipv4Addr, FieldError> {
    let text = unhide(field);
    if let Ok(a) = text.parse::<Ipv4Addr>() {
        return Ok(a);
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Err(FieldError::not_yet("an IPv6 subnet or range"));
    }
    Err(FieldError::bad(format!("'{text}' is not an IPv4 address")))
}

/// Returns the spec and whether `,local` was given.
pub(crate) fn parse(value: &str) -> Result<(DomainSpec, bool), FieldError> {
    let fields = split_fields(value);
    let raw_name = unhide(fields[0]);
    if raw_name == "#" {
        return Err(FieldError::not_yet(
            "domain=# (taking the domain from resolv.conf)",
        ));
    }
    let name = check_domain(&raw_name).map_err(FieldError::Bad)?;
    let Some(second) = fields.get(1) else {
        return Ok((
            DomainSpec {
                name,
                scope: DomainScope::All,
            },
            false,
        ));
    };
    let second = unhide(second);
    if let Some((addr, len)) = second.split_once('/') {
        let addr = ipv4(addr)?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| FieldError::bad(format!("bad prefix length '{len}'")))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let net = Ipv4Addr::from(u32::from(addr) & mask);
        let local = match fields.get(2).map(|f| unhide(f)) {
            None => false,
            Some(word) if word == "local" => true,
            Some(other) => {
                return Err(FieldError::bad(format!(
                    "expected 'local' after the subnet, got '{other}'"
                )))
            }
        };
        if fields.len() > 3 {
            return Err(FieldError::bad("too many fields"));
        }
        return Ok((
            DomainSpec {
                name,
                scope: DomainScope::Subnet { net, prefix },
            },
            local,
        ));
    }
    if second.parse::<Ipv4Addr>().is_err() && second.parse::<Ipv6Addr>().is_err() {
        return Err(FieldError::not_yet(
            "a domain for an interface's subnets (domain=name,interface)",
        ));
    }
    let start = ipv4(&second)?;
    let end = match fields.get(2) {
        Some(f) => ipv4(f)?,
        None => start,
    };
    if u32::from(end) < u32::from(start) {
        return Err(FieldError::bad(format!(
            "end address {end} is before start {start}"
        )));
    }
    if fields.len() > 3 {
        return Err(FieldError::bad(
            "too many fields ('local' goes only with a net/len subnet)",
        ));
    }
    Ok((
        DomainSpec {
            name,
            scope: DomainScope::Range { start, end },
        },
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn forms() {
        let (d, local) = parse("home.lan").unwrap();
        assert_eq!(d.name, "home.lan");
        assert_eq!(d.scope, DomainScope::All);
        assert!(!local);

        let (d, local) = parse("lab.home.lan,198.18.4.7/22").unwrap();
        assert_eq!(
            d.scope,
            DomainScope::Subnet {
                net: ip("198.18.4.0"),
                prefix: 22
            }
        );
        assert!(!local);

        let (d, local) = parse("lab.home.lan,198.18.4.0/24,local").unwrap();
        assert_eq!(
            d.scope,
            DomainScope::Subnet {
                net: ip("198.18.4.0"),
                prefix: 24
            }
        );
        assert!(local);

        let (d, _) = parse("guest.home.lan,198.18.0.200,198.18.0.250").unwrap();
        assert_eq!(
            d.scope,
            DomainScope::Range {
                start: ip("198.18.0.200"),
                end: ip("198.18.0.250")
            }
        );

        let (d, _) = parse("one.home.lan,198.18.0.9").unwrap();
        assert_eq!(
            d.scope,
            DomainScope::Range {
                start: ip("198.18.0.9"),
                end: ip("198.18.0.9")
            }
        );

        let (d, _) = parse("all.lan,0.0.0.0/0").unwrap();
        assert_eq!(
            d.scope,
            DomainScope::Subnet {
                net: ip("0.0.0.0"),
                prefix: 0
            }
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(parse("#"), Err(FieldError::NotYet(_))));
        assert!(matches!(parse("x.lan,eth0"), Err(FieldError::NotYet(_))));
        assert!(matches!(
            parse("x.lan,fd00::/64"),
            Err(FieldError::NotYet(_))
        ));
        assert!(matches!(parse("bad..lan"), Err(FieldError::Bad(_))));
        assert!(matches!(
            parse("x.lan,198.18.0.0/33"),
            Err(FieldError::Bad(_))
        ));
        assert!(matches!(
            parse("x.lan,198.18.0.0/24,global"),
            Err(FieldError::Bad(_))
        ));
        assert!(matches!(
            parse("x.lan,198.18.0.9,198.18.0.1"),
            Err(FieldError::Bad(_))
        ));
        assert!(matches!(
            parse("x.lan,198.18.0.1,198.18.0.9,local"),
            Err(FieldError::Bad(_))
        ));
    }

    #[test]
    fn scoped_domains() {
        let mut cfg = Config::default();
        cfg.domains.push(DomainSpec {
            name: "lan".into(),
            scope: DomainScope::All,
        });
        cfg.domains.push(DomainSpec {
            name: "guest.lan".into(),
            scope: DomainScope::Range {
                start: Ipv4Addr::new(198, 18, 0, 100),
                end: Ipv4Addr::new(198, 18, 0, 150),
            },
        });
        assert_eq!(
            cfg.domain_for(Ipv4Addr::new(198, 18, 0, 120)),
            Some("guest.lan")
        );
        assert_eq!(cfg.domain_for(Ipv4Addr::new(198, 18, 0, 20)), Some("lan"));
    }
}
