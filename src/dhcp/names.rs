//! Which host name a lease publishes. A `dhcp-host` line's name belongs to
//! the host the line matches. A name the client offers (option 12 or 81) is
//! used unless `dhcp-ignore-names` says not to, or some `dhcp-host` line
//! gives that name: the line is not this client's (else its name would be
//! used), so the name is another host's, and a LAN client must not take it
//! over in DNS. dnsmasq's lease.c has the same rule ("Don't allow a name
//! from the client to override a name from dnsmasq config"), enforced
//! while the configured host holds a lease; here it holds always, so there
//! is no window before the host's first lease.
//!
//! "Configured" is read from the current config whenever a name is chosen,
//! not stored on the lease: records replicate to the failover partner, and
//! a SIGHUP that changes the hosts changes the answer at once.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::config::{DhcpHost, NameMatch};

/// The names `dhcp-host` lines give (from the config, hosts files and
/// /etc/ethers alike), ASCII-lowercased, each with an address a line
/// gives it, if any (for the log).
#[derive(Debug, Default)]
pub struct ConfiguredNames(HashMap<String, Option<Ipv4Addr>>);

impl ConfiguredNames {
    pub fn new(hosts: &[DhcpHost]) -> Self {
        let mut names: HashMap<String, Option<Ipv4Addr>> = HashMap::new();
        for h in hosts {
            if let Some(n) = &h.hostname {
                let addr = names.entry(n.to_ascii_lowercase()).or_default();
                *addr = addr.or(h.ip);
            }
        }
        ConfiguredNames(names)
    }

    /// `Some(address)` when a `dhcp-host` line gives `name`.
    fn get(&self, name: &str) -> Option<Option<Ipv4Addr>> {
        self.0.get(&name.to_ascii_lowercase()).copied()
    }
}

/// What name a lease gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The client's `dhcp-host` line names it.
    Configured(String),
    /// The name the client offered.
    Client(String),
    /// No name: the client offered none, or `dhcp-ignore-names` matched.
    Nameless,
    /// The client offered a name a `dhcp-host` line gives to another
    /// host (at the address, if the line has one): not used.
    Taken {
        name: String,
        holder: Option<Ipv4Addr>,
    },
}

impl Choice {
    /// The name to publish, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Choice::Configured(n) | Choice::Client(n) => Some(n),
            Choice::Nameless | Choice::Taken { .. } => None,
        }
    }
}

/// dnsmasq's order: a configured name wins; a client's name is dropped by
/// `dhcp-ignore-names` (`ignore_names`: one of its lines matched the
/// client's tags), then refused if it is configured for another host.
pub fn choose(
    host: Option<&DhcpHost>,
    offered: Option<&str>,
    ignore_names: bool,
    configured: &ConfiguredNames,
) -> Choice {
    if let Some(name) = host.and_then(|h| h.hostname.as_deref()) {
        return Choice::Configured(name.to_string());
    }
    let Some(offered) = offered else {
        return Choice::Nameless;
    };
    if ignore_names {
        return Choice::Nameless;
    }
    match configured.get(offered) {
        Some(holder) => Choice::Taken {
            name: offered.to_string(),
            holder,
        },
        None => Choice::Client(offered.to_string()),
    }
}

/// Appends the tag of every `dhcp-name-match` line the offered name
/// matches: the whole name, ASCII case ignored, or its start for a line
/// ending in `*`.
pub fn add_name_match_tags(lines: &[NameMatch], offered: Option<&str>, tags: &mut Vec<String>) {
    let Some(name) = offered else { return };
    for m in lines {
        let hit = if m.prefix {
            name.as_bytes()
                .get(..m.name.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(m.name.as_bytes()))
        } else {
            name.eq_ignore_ascii_case(&m.name)
        };
        if hit {
            tags.push(m.set_tag.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MacPattern;

    fn host(mac_last: u8, name: Option<&str>, ip: Option<Ipv4Addr>) -> DhcpHost {
        DhcpHost {
            macs: vec![MacPattern {
                htype: None,
                bytes: [2, 0, 0, 0, 0, mac_last].into_iter().map(Some).collect(),
            }],
            hostname: name.map(str::to_string),
            ip,
            ..Default::default()
        }
    }

    #[test]
    fn configured_wins_then_ignore_then_taken() {
        let nas_ip = Ipv4Addr::new(198, 18, 0, 15);
        let hosts = [
            host(1, Some("nas"), None),
            host(2, Some("NAS"), Some(nas_ip)),
            host(3, None, None),
        ];
        let names = ConfiguredNames::new(&hosts);
        let c = |h: Option<&DhcpHost>, o: Option<&str>, ign: bool| choose(h, o, ign, &names);
        assert_eq!(
            c(Some(&hosts[0]), Some("other"), true),
            Choice::Configured("nas".into())
        );
        assert_eq!(
            c(None, Some("Nas"), false),
            Choice::Taken {
                name: "Nas".into(),
                holder: Some(nas_ip)
            }
        );
        assert_eq!(c(Some(&hosts[2]), Some("nas"), false).name(), None);
        assert_eq!(c(None, Some("nas"), true), Choice::Nameless);
        assert_eq!(
            c(Some(&hosts[2]), Some("pc"), false),
            Choice::Client("pc".into())
        );
        assert_eq!(c(None, None, false), Choice::Nameless);
    }

    #[test]
    fn name_match_whole_or_prefix_case_blind() {
        let lines = [
            NameMatch {
                set_tag: "exact".into(),
                name: "wpad".into(),
                prefix: false,
            },
            NameMatch {
                set_tag: "prefix".into(),
                name: "WPAD".into(),
                prefix: true,
            },
            NameMatch {
                set_tag: "any".into(),
                name: String::new(),
                prefix: true,
            },
        ];
        let tags = |n: Option<&str>| {
            let mut t = Vec::new();
            add_name_match_tags(&lines, n, &mut t);
            t
        };
        assert_eq!(tags(Some("Wpad")), ["exact", "prefix", "any"]);
        assert_eq!(tags(Some("wpad-2")), ["prefix", "any"]);
        assert_eq!(tags(Some("wpa")), ["any"]);
        assert!(tags(None).is_empty());
    }
}
