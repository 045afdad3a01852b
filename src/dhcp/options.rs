//! Which options a reply carries and with what values: dnsmasq's defaults
//! (netmask, broadcast, router and DNS server = us, domain, hostname),
//! overridden by matching `dhcp-option` lines, filtered by the client's
//! parameter request list unless forced.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::config::{Config, DhcpOptionSpec, OptionValue};

use super::network::{tags_match, Network};
use super::request::Request;

pub const OPT_NETMASK: u8 = 1;
pub const OPT_ROUTER: u8 = 3;
pub const OPT_DNS: u8 = 6;
pub const OPT_HOSTNAME: u8 = 12;
pub const OPT_DOMAIN: u8 = 15;
pub const OPT_BROADCAST: u8 = 28;
pub const OPT_T1: u8 = 58;
pub const OPT_T2: u8 = 59;

/// The `dhcp-option` line that applies for `code`: the one whose tag
/// conditions hold and name the most tags (dnsmasq prefers tagged lines to
/// untagged ones); among equals the later line wins.
pub fn configured<'a>(cfg: &'a Config, code: u8, tags: &[String]) -> Option<&'a DhcpOptionSpec> {
    cfg.dhcp_options
        .iter()
        .filter(|o| o.code == code && tags_match(&o.match_tags, tags))
        .fold(None, |best: Option<&DhcpOptionSpec>, o| match best {
            Some(b) if b.match_tags.len() > o.match_tags.len() => Some(b),
            _ => Some(o),
        })
}

fn addresses(list: &[Ipv4Addr], server: Ipv4Addr) -> Vec<u8> {
    list.iter()
        .flat_map(|a| if a.is_unspecified() { server } else { *a }.octets())
        .collect()
}

pub struct Wanted {
    /// Values by option code, after defaults and config.
    pub values: BTreeMap<u8, Vec<u8>>,
    /// Codes from `dhcp-option-force`: sent even if not requested.
    pub forced: Vec<u8>,
}

pub struct Context<'a> {
    pub cfg: &'a Config,
    pub req: &'a Request,
    pub net: &'a Network,
    pub tags: &'a [String],
    /// The client's address (yiaddr, or ciaddr for INFORM).
    pub addr: Ipv4Addr,
    pub hostname: Option<&'a str>,
}

/// All options this reply could carry, with dnsmasq's defaults.
pub fn wanted(ctx: &Context<'_>) -> Wanted {
    let mut values = BTreeMap::new();
    let server = ctx.net.server;
    values.insert(OPT_NETMASK, ctx.net.netmask().octets().to_vec());
    values.insert(OPT_BROADCAST, ctx.net.broadcast.octets().to_vec());
    // A relayed client's router is its relay; a direct one's is us.
    let router = if ctx.req.giaddr.is_unspecified() {
        server
    } else {
        ctx.req.giaddr
    };
    values.insert(OPT_ROUTER, router.octets().to_vec());
    if ctx.cfg.dns.port != 0 {
        values.insert(OPT_DNS, server.octets().to_vec());
    }
    if let Some(d) = ctx.cfg.domain_for(ctx.addr) {
        values.insert(OPT_DOMAIN, d.as_bytes().to_vec());
    }
    if let Some(h) = ctx.hostname {
        values.insert(OPT_HOSTNAME, h.as_bytes().to_vec());
    }

    let mut forced = Vec::new();
    let codes: std::collections::BTreeSet<u8> =
        ctx.cfg.dhcp_options.iter().map(|o| o.code).collect();
    for code in codes {
        let Some(spec) = configured(ctx.cfg, code, ctx.tags) else {
            continue;
        };
        match &spec.value {
            OptionValue::Empty => {
                values.remove(&code);
                continue;
            }
            OptionValue::Bytes(b) => values.insert(code, b.clone()),
            OptionValue::Addresses(list) => values.insert(code, addresses(list, server)),
        };
        if spec.force {
            forced.push(code);
        }
    }
    Wanted { values, forced }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DomainScope, DomainSpec, TagMatch};
    use crate::dhcp::request::{build::RawRequest, decode};

    fn net() -> Network {
        Network {
            server: Ipv4Addr::new(198, 18, 0, 1),
            net: Ipv4Addr::new(198, 18, 0, 0),
            prefix: 24,
            broadcast: Ipv4Addr::new(198, 18, 0, 255),
            ranges: vec![0],
        }
    }

    fn opt(code: u8, tags: &[&str], value: OptionValue) -> DhcpOptionSpec {
        DhcpOptionSpec {
            code,
            match_tags: tags
                .iter()
                .map(|t| TagMatch {
                    name: t.to_string(),
                    negate: false,
                })
                .collect(),
            value,
            force: false,
        }
    }

    #[test]
    fn defaults_then_config_with_tags_and_this_server() {
        let mut cfg = Config::default();
        cfg.domains.push(DomainSpec {
            name: "lan".into(),
            scope: DomainScope::All,
        });
        cfg.dhcp_options.push(opt(
            6,
            &[],
            OptionValue::Addresses(vec![Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(198, 18, 0, 53)]),
        ));
        cfg.dhcp_options.push(opt(
            42,
            &[],
            OptionValue::Addresses(vec![Ipv4Addr::new(198, 18, 0, 123)]),
        ));
        cfg.dhcp_options.push(opt(
            42,
            &["lab"],
            OptionValue::Addresses(vec![Ipv4Addr::new(198, 18, 0, 124)]),
        ));
        cfg.dhcp_options.push(opt(3, &[], OptionValue::Empty));
        let req = decode(&RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1).finish()).unwrap();
        let n = net();
        let tags = vec!["lab".to_string()];
        let ctx = Context {
            cfg: &cfg,
            req: &req,
            net: &n,
            tags: &tags,
            addr: Ipv4Addr::new(198, 18, 0, 9),
            hostname: Some("pc"),
        };
        let w = wanted(&ctx);
        assert_eq!(w.values[&1], vec![255, 255, 255, 0]);
        assert_eq!(w.values[&6], vec![198, 18, 0, 1, 198, 18, 0, 53]);
        assert_eq!(w.values[&42], vec![198, 18, 0, 124]);
        assert_eq!(w.values[&15], b"lan".to_vec());
        assert_eq!(w.values[&12], b"pc".to_vec());
        assert!(
            !w.values.contains_key(&3),
            "empty dhcp-option=3 turns the router off"
        );
        let untagged = Context { tags: &[], ..ctx };
        assert_eq!(wanted(&untagged).values[&42], vec![198, 18, 0, 123]);
    }
}
