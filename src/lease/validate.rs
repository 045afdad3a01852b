//! What a lease record must be to enter the table from outside this node's
//! DHCP engine: from the failover partner (updates and syncs alike) or from
//! a dnsmasq lease file. The engine builds its own records from checked
//! input; everything else passes these rules, here and nowhere else, since
//! what is stored reaches DNS answers, the lease file and the argv of the
//! root-run dhcp-script.
//!
//! Sans-I/O: the rules come from the configuration, the time from the
//! caller.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use twinmasq_proto::{Expiry, LeaseRecord};

use crate::config::failover::DEFAULT_MAX_SKEW;
use crate::config::Config;
use crate::lease::hostname::legal_label;

/// A DHCP hardware address fits the 16-byte `chaddr` field.
pub const MAX_HWADDR: usize = 16;
/// A client identifier is one option: at most 255 bytes.
pub const MAX_CLIENT_ID: usize = 255;
/// The longest finite lease DHCP can express (option 51 is 32 bits; its
/// all-ones value is "infinite", stored as [`Expiry::Never`]).
const MAX_LEASE_SECS: u64 = u32::MAX as u64;

/// Why a record was refused, one reason per record (the first rule it
/// breaks, in the order listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Stamped beyond this node's clock plus `failover-max-skew`.
    Stamp,
    /// Not inside any `dhcp-range` (or its subnet, when the range names a
    /// netmask), nor a `dhcp-host` address.
    Address,
    /// A hardware address longer than `chaddr`.
    Hwaddr,
    /// A client identifier (or the client key made of it) too long.
    ClientId,
    /// Not one legal host label (letters, digits, `-`, `_`, no leading
    /// `-`, at most 63 bytes), as the DHCP engine requires of clients.
    Hostname,
    /// Ends later than any lease DHCP can give from now.
    Expiry,
}

impl Reject {
    pub const ALL: [Reject; 6] = [
        Reject::Stamp,
        Reject::Address,
        Reject::Hwaddr,
        Reject::ClientId,
        Reject::Hostname,
        Reject::Expiry,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Stamp => "stamp",
            Reject::Address => "address",
            Reject::Hwaddr => "hwaddr",
            Reject::ClientId => "client_id",
            Reject::Hostname => "hostname",
            Reject::Expiry => "expiry",
        }
    }

    /// For a log line.
    pub fn describe(self) -> &'static str {
        match self {
            Reject::Stamp => "stamped beyond this node's clock plus failover-max-skew",
            Reject::Address => "address outside every dhcp-range and dhcp-host",
            Reject::Hwaddr => "hardware address over 16 bytes",
            Reject::ClientId => "client-id over 255 bytes",
            Reject::Hostname => "hostname not a legal host label",
            Reject::Expiry => "expiry beyond any DHCP lease time",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Refused records counted by reason (`twinmasq_failover_rejected_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejections {
    pub stamp: u64,
    pub address: u64,
    pub hwaddr: u64,
    pub client_id: u64,
    pub hostname: u64,
    pub expiry: u64,
}

impl Rejections {
    fn slot(&mut self, r: Reject) -> &mut u64 {
        match r {
            Reject::Stamp => &mut self.stamp,
            Reject::Address => &mut self.address,
            Reject::Hwaddr => &mut self.hwaddr,
            Reject::ClientId => &mut self.client_id,
            Reject::Hostname => &mut self.hostname,
            Reject::Expiry => &mut self.expiry,
        }
    }

    pub fn add(&mut self, r: Reject) {
        let n = self.slot(r);
        *n = n.saturating_add(1);
    }

    /// Adds `other`'s counts to these.
    pub fn absorb(&mut self, other: &Rejections) {
        for r in Reject::ALL {
            let n = self.slot(r);
            *n = n.saturating_add(other.get(r));
        }
    }

    pub fn get(&self, r: Reject) -> u64 {
        match r {
            Reject::Stamp => self.stamp,
            Reject::Address => self.address,
            Reject::Hwaddr => self.hwaddr,
            Reject::ClientId => self.client_id,
            Reject::Hostname => self.hostname,
            Reject::Expiry => self.expiry,
        }
    }

    pub fn total(&self) -> u64 {
        Reject::ALL
            .iter()
            .fold(0u64, |n, r| n.saturating_add(self.get(*r)))
    }

    /// "2 stamp, 1 hostname", for a log line.
    pub fn summary(&self) -> String {
        Reject::ALL
            .iter()
            .filter(|r| self.get(**r) > 0)
            .map(|r| format!("{} {}", self.get(*r), r.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The addresses a record may be for: what this node's configuration could
/// hand out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Addresses {
    /// `dhcp-range` first and last addresses (a `static` range is one).
    ranges: Vec<(u32, u32)>,
    /// The subnet of a range that names its netmask: `dhcp-host`
    /// addresses there are served too. (Without a netmask the subnet is
    /// the interface's, which the configuration does not know; the
    /// `dhcp-host` addresses themselves are listed below.)
    nets: Vec<(u32, u32)>,
    /// `dhcp-host` addresses, sorted.
    hosts: Vec<u32>,
}

impl Addresses {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        self.ranges.iter().any(|&(lo, hi)| lo <= a && a <= hi)
            || self.nets.iter().any(|&(net, mask)| a & mask == net)
            || self.hosts.binary_search(&a).is_ok()
    }
}

/// The rules records are held to. One per lease database
/// ([`super::LeaseDb::set_admission`]): the failover link and the lease
/// file import both go through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    max_skew_ms: u64,
    /// `None`: addresses are not checked (a database used without a DHCP
    /// configuration: tools, tests).
    addresses: Option<Addresses>,
}

impl Default for Admission {
    /// The default skew bound (there is always one: the clock is bounded
    /// with or without failover) and no address rule.
    fn default() -> Self {
        Admission::new(DEFAULT_MAX_SKEW)
    }
}

impl Admission {
    /// Stamps bounded by `max_skew`; addresses not checked.
    pub fn new(max_skew: Duration) -> Self {
        Admission {
            max_skew_ms: u64::try_from(max_skew.as_millis()).unwrap_or(u64::MAX),
            addresses: None,
        }
    }

    /// The rules of a configuration: its `failover-max-skew` (the default
    /// bound without failover), its ranges and its `dhcp-host` addresses.
    /// Without any `dhcp-range` the node hands out no address and has no
    /// range to hold records to: addresses are then not checked (a lease
    /// file is still imported for its names, as before).
    pub fn from_config(cfg: &Config) -> Self {
        let max_skew = cfg
            .failover
            .as_ref()
            .map_or(DEFAULT_MAX_SKEW, |f| f.max_skew);
        if cfg.dhcp_ranges.is_empty() {
            return Admission::new(max_skew);
        }
        let mut hosts: Vec<u32> = cfg
            .dhcp_hosts
            .iter()
            .filter_map(|h| h.ip)
            .map(u32::from)
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        let addresses = Addresses {
            ranges: cfg
                .dhcp_ranges
                .iter()
                .map(|r| (u32::from(r.start), u32::from(r.end)))
                .collect(),
            nets: cfg
                .dhcp_ranges
                .iter()
                .filter_map(|r| {
                    let mask = u32::from(r.netmask?);
                    Some((u32::from(r.start) & mask, mask))
                })
                .collect(),
            hosts,
        };
        Admission {
            addresses: Some(addresses),
            ..Admission::new(max_skew)
        }
    }

    /// These rules, taking only addresses from `first..=last` of each
    /// range given.
    pub fn serving(mut self, ranges: impl IntoIterator<Item = (Ipv4Addr, Ipv4Addr)>) -> Self {
        self.addresses = Some(Addresses {
            ranges: ranges
                .into_iter()
                .map(|(a, b)| (u32::from(a), u32::from(b)))
                .collect(),
            ..Addresses::default()
        });
        self
    }

    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// The latest wall clock a stamp may carry when this node's clock
    /// reads `now_ms`.
    pub fn stamp_limit_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.max_skew_ms)
    }

    /// Whether `rec` may enter the table now.
    pub fn check(&self, rec: &LeaseRecord, now_ms: u64) -> Result<(), Reject> {
        if rec.stamp.wall_ms > self.stamp_limit_ms(now_ms) {
            return Err(Reject::Stamp);
        }
        if self.addresses.as_ref().is_some_and(|a| !a.contains(rec.ip)) {
            return Err(Reject::Address);
        }
        if rec.hwaddr.len() > MAX_HWADDR {
            return Err(Reject::Hwaddr);
        }
        // The client key is a kind byte and a client-id, or a kind byte, a
        // hardware type and a hardware address.
        let id_too_long = rec
            .client_id
            .as_ref()
            .is_some_and(|id| id.len() > MAX_CLIENT_ID);
        if id_too_long || rec.client.0.len() > 1 + MAX_CLIENT_ID {
            return Err(Reject::ClientId);
        }
        if let Some(h) = rec.hostname.as_deref() {
            // Empty means no name, as the lease file's `*`.
            if !h.is_empty() && !legal_label(h) {
                return Err(Reject::Hostname);
            }
        }
        if let Expiry::At(t) = rec.expires {
            let latest = (now_ms / 1000)
                .saturating_add(MAX_LEASE_SECS)
                .saturating_add(self.max_skew_ms.div_ceil(1000));
            if t > latest {
                return Err(Reject::Expiry);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinmasq_proto::{ClientKey, LeaseState, Stamp};

    const NOW_MS: u64 = 1_800_000_000_000;

    fn rec() -> LeaseRecord {
        let hw = vec![2, 0, 0, 0, 0, 1];
        LeaseRecord {
            ip: Ipv4Addr::new(198, 18, 0, 20),
            state: LeaseState::Bound,
            client: ClientKey::from_hwaddr(1, &hw),
            htype: 1,
            hwaddr: hw,
            client_id: None,
            hostname: Some("laptop".into()),
            expires: Expiry::At(NOW_MS / 1000 + 3_600),
            stamp: Stamp {
                wall_ms: NOW_MS,
                counter: 0,
                node: 7,
            },
        }
    }

    fn rules() -> Admission {
        let cfg = crate::config::parse_conf_text(
            "dhcp-range=198.18.0.10,198.18.0.49\n\
             dhcp-range=198.18.1.0,static,255.255.255.0\n\
             dhcp-host=52:54:00:00:00:01,198.18.2.7\n\
             failover-listen=6470\nfailover-key=/k\nfailover-max-skew=10s\n",
            "t",
        )
        .unwrap();
        Admission::from_config(&cfg)
    }

    fn verdict(edit: impl FnOnce(&mut LeaseRecord)) -> Result<(), Reject> {
        let mut r = rec();
        edit(&mut r);
        rules().check(&r, NOW_MS)
    }

    #[test]
    fn a_plain_record_passes() {
        assert_eq!(verdict(|_| {}), Ok(()));
        assert_eq!(verdict(|r| r.hostname = None), Ok(()));
        assert_eq!(verdict(|r| r.hostname = Some(String::new())), Ok(()));
        assert_eq!(verdict(|r| r.expires = Expiry::Never), Ok(()));
        // Long ended: fine (an expired record keeps its expiry).
        assert_eq!(verdict(|r| r.expires = Expiry::At(1)), Ok(()));
    }

    #[test]
    fn stamps_are_bounded_by_the_configured_skew() {
        assert_eq!(rules().max_skew_ms(), 10_000);
        assert_eq!(verdict(|r| r.stamp.wall_ms = NOW_MS + 10_000), Ok(()));
        assert_eq!(
            verdict(|r| r.stamp.wall_ms = NOW_MS + 10_001),
            Err(Reject::Stamp)
        );
        assert_eq!(
            verdict(|r| {
                r.stamp = Stamp {
                    wall_ms: u64::MAX,
                    counter: u32::MAX,
                    node: 7,
                }
            }),
            Err(Reject::Stamp)
        );
        // Stamps from the past are what merging is for.
        assert_eq!(verdict(|r| r.stamp.wall_ms = 1), Ok(()));
        // Without failover, the default bound.
        assert_eq!(Admission::default().max_skew_ms(), 30_000);
        let plain =
            crate::config::parse_conf_text("dhcp-range=198.18.0.10,198.18.0.49\n", "t").unwrap();
        assert_eq!(Admission::from_config(&plain).max_skew_ms(), 30_000);
    }

    #[test]
    fn addresses_come_from_ranges_their_subnets_and_hosts() {
        for (ip, ok) in [
            ("198.18.0.10", true),
            ("198.18.0.49", true),
            ("198.18.0.50", false),
            ("198.18.0.9", false),
            // The static range's /24, for dhcp-host addresses there.
            ("198.18.1.200", true),
            ("198.18.2.7", true),
            ("198.18.2.8", false),
            ("8.8.8.8", false),
        ] {
            let want = if ok { Ok(()) } else { Err(Reject::Address) };
            assert_eq!(verdict(|r| r.ip = ip.parse().unwrap()), want, "{ip}");
        }
        // No configuration, or no range in it, no address rule.
        let mut r = rec();
        r.ip = Ipv4Addr::new(8, 8, 8, 8);
        assert_eq!(Admission::default().check(&r, NOW_MS), Ok(()));
        let no_ranges =
            crate::config::parse_conf_text("dhcp-host=52:54:00:00:00:01,198.18.2.7\n", "t")
                .unwrap();
        assert_eq!(Admission::from_config(&no_ranges).check(&r, NOW_MS), Ok(()));
        let ranged =
            Admission::default().serving([(Ipv4Addr::new(8, 8, 8, 0), Ipv4Addr::new(8, 8, 8, 9))]);
        assert_eq!(ranged.check(&r, NOW_MS), Ok(()));
        r.ip = Ipv4Addr::new(8, 8, 8, 10);
        assert_eq!(ranged.check(&r, NOW_MS), Err(Reject::Address));
    }

    #[test]
    fn hostnames_must_be_one_legal_label() {
        for bad in [
            "x; reboot\n-rf",
            "-rf",
            "a b",
            "a.b",
            "semi;colon",
            "new\nline",
            "caf\u{e9}",
            &"a".repeat(64),
        ] {
            assert_eq!(
                verdict(|r| r.hostname = Some(bad.to_string())),
                Err(Reject::Hostname),
                "{bad:?}"
            );
        }
        for good in ["nas", "my_pc-2", "A1", &"a".repeat(63)] {
            assert_eq!(
                verdict(|r| r.hostname = Some(good.to_string())),
                Ok(()),
                "{good:?}"
            );
        }
    }

    #[test]
    fn sizes_and_expiry_are_bounded() {
        assert_eq!(verdict(|r| r.hwaddr = vec![1; 16]), Ok(()));
        assert_eq!(verdict(|r| r.hwaddr = vec![1; 17]), Err(Reject::Hwaddr));
        assert_eq!(verdict(|r| r.client_id = Some(vec![1; 255])), Ok(()));
        assert_eq!(
            verdict(|r| r.client_id = Some(vec![1; 256])),
            Err(Reject::ClientId)
        );
        assert_eq!(
            verdict(|r| r.client = ClientKey(vec![1; 300])),
            Err(Reject::ClientId)
        );
        let latest = NOW_MS / 1000 + u64::from(u32::MAX) + 10;
        assert_eq!(verdict(|r| r.expires = Expiry::At(latest)), Ok(()));
        assert_eq!(
            verdict(|r| r.expires = Expiry::At(latest + 1)),
            Err(Reject::Expiry)
        );
        assert_eq!(
            verdict(|r| r.expires = Expiry::At(u64::MAX)),
            Err(Reject::Expiry)
        );
    }

    #[test]
    fn rejections_count_by_reason() {
        let mut n = Rejections::default();
        n.add(Reject::Stamp);
        n.add(Reject::Stamp);
        n.add(Reject::Hostname);
        assert_eq!((n.get(Reject::Stamp), n.total()), (2, 3));
        assert_eq!(n.summary(), "2 stamp, 1 hostname");
        let mut m = n;
        m.absorb(&n);
        assert_eq!((m.get(Reject::Stamp), m.get(Reject::Hostname)), (4, 2));
        let labels: Vec<&str> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "stamp",
                "address",
                "hwaddr",
                "client_id",
                "hostname",
                "expiry"
            ]
        );
    }
}
