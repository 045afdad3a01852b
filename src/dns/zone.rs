//! Authoritative zones (`auth-zone` and friends): which names and addresses
//! a zone holds, its SOA and NS records, who may transfer it, and its
//! serial. The answers themselves are built from the local data in
//! `authority::auth_zone`.
//!
//! The serial is twinmasq's own (see `zone_serial`): dnsmasq counts up from
//! its start time, which two nodes can never agree on; ours follows the
//! lease data, so two nodes with the same leases publish the same serial
//! and it never goes backwards when a secondary DNS server moves from one
//! node to the other (the serial trap of multi-master DNS). On top of
//! that, every change moves it up ([`ZoneSerial`]).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record};
use twinmasq_proto::{Expiry, LeaseRecord, LeaseState, Stamp};

use super::names::{is_under, to_name};
use crate::config::dns_types::{AuthConfig, ZoneNet};

/// The serial's epoch: 2024-01-01T00:00:00Z, in unix milliseconds.
pub const SERIAL_EPOCH_MS: u64 = 1_704_067_200_000;

/// The serial of a zone with no leases when `auth-soa` gives none: the
/// epoch in unix seconds. Serials then stay above a unix-time serial (what
/// dnsmasq publishes by default) in RFC 1982 terms for years, so secondaries
/// that followed dnsmasq take the zone from twinmasq without a manual
/// retransfer.
pub const DEFAULT_SERIAL_BASE: u32 = 1_704_067_200;

/// The zone serial for the newest lease change `newest`: `base` (the
/// `auth-soa` serial) plus the tenths of a second from the epoch to that
/// change's wall clock, modulo 2^32.
///
/// - Monotonic: a later stamp never gives a lower serial (RFC 1982), as
///   long as the zone changes at least once every 2^31 tenths (6.8 years).
/// - Stable: a pure function of the data, so two nodes holding the same
///   leases (the failover link makes their tables equal) give the same
///   serial, and a restart changes nothing.
/// - Never below `base`: with no leases (or a clock before the epoch) the
///   serial is `base` itself.
///
/// Changes less than 0.1 s apart share a serial: a secondary that checked
/// between them catches up at the next change.
pub fn zone_serial(newest: Stamp, base: u32) -> u32 {
    serial_at(newest.wall_ms, base)
}

/// [`zone_serial`] for a change at `ms` (unix milliseconds).
pub fn serial_at(ms: u64, base: u32) -> u32 {
    let tenths = ms.saturating_sub(SERIAL_EPOCH_MS) / 100;
    // Truncation is the modulo 2^32 of RFC 1982 serial arithmetic.
    base.wrapping_add(tenths as u32)
}

/// The time a lease change stands for in the serial: its stamp's wall
/// clock; for a lease that ended (expired, or released because its client
/// took another address), the end, when later. Such an end keeps the
/// lease's stamp (see `LeaseDb::settle`) yet changes the zone; both nodes
/// know the same end, so both still give the same serial. An end the
/// clock has not reached counts as now.
pub fn change_ms(rec: &LeaseRecord, now_secs: u64) -> u64 {
    match (rec.state, rec.expires) {
        (LeaseState::Expired | LeaseState::Released, Expiry::At(t)) => {
            rec.stamp.wall_ms.max(t.min(now_secs).saturating_mul(1000))
        }
        _ => rec.stamp.wall_ms,
    }
}

/// RFC 1982: is serial `a` greater than `b`?
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// The current zone serial, shared with whoever needs to report or
/// replicate it (the failover link) without reaching into the DNS task.
///
/// It strictly increases (RFC 1982) with every change of the zone, as any
/// reader sees it: a change moves it to the serial its time gives
/// ([`serial_at`]) when that is greater; otherwise (changes within a tenth
/// of a second, a partner's older record merged late, a clock held ahead
/// by a stamp from within the skew bound) the change is noted, and the
/// next reading moves it up by one. Bumping at the reading, not at each
/// change, keeps a burst (a whole table merged in a sync) to one step, so
/// it stays within a step or two of the time-derived serial both nodes
/// share. A restart starts from the time-derived serial of the data.
#[derive(Debug, Clone, Default)]
pub struct ZoneSerial(Arc<Mutex<SerialState>>);

#[derive(Debug, Clone, Copy, Default)]
struct SerialState {
    value: u32,
    /// A change happened that `value` does not show yet.
    pending: bool,
}

impl ZoneSerial {
    pub fn get(&self) -> u32 {
        let mut st = self.lock();
        if st.pending {
            st.value = st.value.wrapping_add(1);
            st.pending = false;
        }
        st.value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SerialState> {
        // The state is two plain fields, valid whatever a panic left.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The zone changed; `at` is the serial its newest data gives.
    fn changed(&self, at: u32) {
        let mut st = self.lock();
        if serial_gt(at, st.value) {
            st.value = at;
            st.pending = false;
        } else {
            st.pending = true;
        }
    }

    /// Data read at start: the serial follows it, no change to show.
    fn loaded(&self, at: u32) {
        let mut st = self.lock();
        if serial_gt(at, st.value) {
            st.value = at;
        }
    }

    fn set(&self, v: u32) {
        let mut st = self.lock();
        st.value = v;
        st.pending = false;
    }

    fn take_over(&self, from: &ZoneSerial) {
        let state = *from.lock();
        *self.lock() = state;
    }
}

/// A subnet; host bits may be set, matching masks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32)));
                let mask = mask.unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix.min(128)));
                let mask = mask.unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// The reverse zone of the subnet as dnsmasq names it: whole octets,
    /// at least one and at most three, for IPv4 (a /25 lives in its /24's
    /// zone); nibbles for IPv6.
    pub fn reverse_zone(&self) -> String {
        match self.addr {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                let n = usize::from(self.prefix / 8).clamp(1, 3);
                let mut parts: Vec<String> = o[..n].iter().rev().map(|b| b.to_string()).collect();
                parts.push("in-addr.arpa".into());
                parts.join(".")
            }
            IpAddr::V6(_) => super::names::reverse_zone(self.addr, self.prefix),
        }
    }
}

/// One `auth-zone`, with its interface subnets as last resolved.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Key form (lowercase, no trailing dot).
    pub domain: String,
    specs: Vec<ZoneNet>,
    exclude_specs: Vec<ZoneNet>,
    subnets: Vec<Net>,
    excludes: Vec<Net>,
}

fn resolve(specs: &[ZoneNet], ifaces: &[(String, Vec<Net>)]) -> Vec<Net> {
    let mut out = Vec::new();
    for s in specs {
        match s {
            ZoneNet::Subnet { addr, prefix } => out.push(Net {
                addr: *addr,
                prefix: *prefix,
            }),
            ZoneNet::Interface { name, family } => {
                for (n, nets) in ifaces {
                    if n == name {
                        out.extend(nets.iter().filter(|x| family.admits(x.addr)));
                    }
                }
            }
        }
    }
    out
}

impl Zone {
    /// dnsmasq's filter: excluded addresses never; with subnets given,
    /// only addresses in one of them.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.excludes.iter().any(|n| n.contains(ip)) {
            return false;
        }
        self.specs.is_empty() || self.subnets.iter().any(|n| n.contains(ip))
    }

    /// The subnet (of this zone's own, excludes not considered) holding `ip`.
    pub fn subnet_of(&self, ip: IpAddr) -> Option<Net> {
        self.subnets.iter().copied().find(|n| n.contains(ip))
    }

    pub fn holds(&self, key: &str) -> bool {
        is_under(key, &self.domain)
    }

    /// `key` without the zone's domain (None at the apex).
    pub fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_suffix(self.domain.as_str())?.strip_suffix('.')
    }
}

/// Everything the `auth-*` options configure, plus the serial.
#[derive(Debug, Clone)]
pub struct AuthZones {
    pub zones: Vec<Zone>,
    /// `auth-server` name: SOA MNAME and our own NS record.
    server: String,
    /// Whether we name ourselves in NS records (auth-server names an
    /// interface or address).
    listens: bool,
    hostmaster: String,
    refresh: u32,
    retry: u32,
    expiry: u32,
    sec_servers: Vec<String>,
    peers: Vec<IpAddr>,
    pub ttl: u32,
    base: u32,
    /// The latest time a change stood for (see [`change_ms`]).
    newest_ms: u64,
    serial: ZoneSerial,
}

impl AuthZones {
    pub fn new(cfg: &AuthConfig) -> Self {
        let server = cfg
            .server
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let hostmaster = cfg.hostmaster.clone().unwrap_or_else(|| {
            // dnsmasq's default mailbox is hostmaster at the server's name.
            if server.is_empty() {
                "hostmaster".into()
            } else {
                format!("hostmaster.{server}")
            }
        });
        let z = AuthZones {
            zones: cfg
                .zones
                .iter()
                .map(|z| Zone {
                    domain: z.domain.clone(),
                    specs: z.subnets.clone(),
                    exclude_specs: z.excludes.clone(),
                    subnets: resolve(&z.subnets, &[]),
                    excludes: resolve(&z.excludes, &[]),
                })
                .collect(),
            listens: cfg.server.as_ref().is_some_and(|s| s.listens()),
            server,
            hostmaster,
            refresh: cfg.refresh,
            retry: cfg.retry,
            expiry: cfg.expiry,
            sec_servers: cfg.sec_servers.clone(),
            peers: cfg.peers.clone(),
            ttl: cfg.ttl,
            base: cfg.serial.unwrap_or(DEFAULT_SERIAL_BASE),
            newest_ms: 0,
            serial: ZoneSerial::default(),
        };
        z.serial.set(serial_at(0, z.base));
        z
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// New interface addresses (the shell looks every few seconds): zones
    /// given by interface name follow them.
    pub fn set_interfaces(&mut self, ifaces: &[(String, Vec<Net>)]) {
        for z in &mut self.zones {
            z.subnets = resolve(&z.specs, ifaces);
            z.excludes = resolve(&z.exclude_specs, ifaces);
        }
    }

    /// A lease change at `at_ms` (see [`change_ms`]) was seen: the serial
    /// follows the newest, and moves up in any case.
    pub fn changed(&mut self, at_ms: u64) {
        self.newest_ms = self.newest_ms.max(at_ms);
        self.serial.changed(serial_at(self.newest_ms, self.base));
    }

    /// A lease stored at `at_ms` was read at start: the serial follows it.
    pub fn loaded(&mut self, at_ms: u64) {
        self.newest_ms = self.newest_ms.max(at_ms);
        self.serial.loaded(serial_at(self.newest_ms, self.base));
    }

    pub fn serial(&self) -> u32 {
        self.serial.get()
    }

    pub fn serial_handle(&self) -> ZoneSerial {
        self.serial.clone()
    }

    /// Use `handle` for the serial from now on (the shell hands out the
    /// handle before the authority exists).
    pub fn share_serial(&mut self, handle: ZoneSerial) {
        handle.take_over(&self.serial);
        self.serial = handle;
    }

    /// The most specific zone holding forward name `key`.
    pub fn zone_of(&self, key: &str) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| z.holds(key))
            .max_by_key(|z| z.domain.len())
    }

    /// The zone and subnet whose reverse zone holds `ip` (PTR, SOA, NS of
    /// `in-addr.arpa` names).
    pub fn reverse_zone_of(&self, ip: IpAddr) -> Option<(&Zone, Net)> {
        self.zones
            .iter()
            .find_map(|z| z.subnet_of(ip).map(|n| (z, n)))
    }

    /// dnsmasq: zone transfer needs `auth-sec-servers` or `auth-peer`; with
    /// `auth-peer` only those addresses may transfer.
    pub fn may_transfer(&self, peer: IpAddr) -> bool {
        if self.peers.is_empty() {
            return !self.sec_servers.is_empty();
        }
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.peers.contains(&peer)
    }

    pub fn soa(&self, owner: &str) -> Option<Record> {
        let soa = SOA::new(
            to_name(&self.server)?,
            to_name(&self.hostmaster)?,
            self.serial(),
            clamp_i32(self.refresh),
            clamp_i32(self.retry),
            clamp_i32(self.expiry),
            self.ttl,
        );
        Some(Record::from_rdata(
            to_name(owner)?,
            self.ttl,
            RData::SOA(soa),
        ))
    }

    /// NS records at `owner`: ourselves when we serve as an authoritative
    /// server, and the secondaries (only in forward zones, as dnsmasq).
    pub fn ns(&self, owner: &str, forward: bool) -> Vec<Record> {
        let Some(owner) = to_name(owner) else {
            return Vec::new();
        };
        let mut names: Vec<&str> = Vec::new();
        if self.listens {
            names.push(&self.server);
        }
        if forward {
            names.extend(self.sec_servers.iter().map(String::as_str));
        }
        names
            .into_iter()
            .filter_map(to_name)
            .map(|n| Record::from_rdata(owner.clone(), self.ttl, RData::NS(NS(n))))
            .collect()
    }

    /// A record owner `name` in the zone's TTL.
    pub fn record(&self, owner: &Name, data: RData) -> Record {
        Record::from_rdata(owner.clone(), self.ttl, data)
    }
}

/// SOA timers are signed 32-bit in hickory; config values above that are
/// meaningless for timers anyway.
fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dns_types::{AuthServer, AuthZone, IfFamily};

    fn stamp(wall_ms: u64, counter: u32, node: u32) -> Stamp {
        Stamp {
            wall_ms,
            counter,
            node,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn serial_counts_tenths_from_the_base() {
        assert_eq!(zone_serial(Stamp::default(), 7), 7);
        assert_eq!(zone_serial(stamp(SERIAL_EPOCH_MS - 5, 0, 1), 7), 7);
        assert_eq!(zone_serial(stamp(SERIAL_EPOCH_MS, 0, 1), 7), 7);
        assert_eq!(zone_serial(stamp(SERIAL_EPOCH_MS + 99, 3, 1), 7), 7);
        assert_eq!(zone_serial(stamp(SERIAL_EPOCH_MS + 100, 0, 1), 7), 8);
        assert_eq!(
            zone_serial(stamp(SERIAL_EPOCH_MS + 3_600_000, 0, 1), 0),
            36_000
        );
        // A day of changes from a base near the top wraps, as RFC 1982 wants.
        let s = zone_serial(stamp(SERIAL_EPOCH_MS + 86_400_000, 0, 1), u32::MAX - 10);
        assert_eq!(s, 864_000 - 11);
        assert!(serial_gt(s, u32::MAX - 10));
    }

    #[test]
    fn serial_is_stable_and_ignores_the_node() {
        let t = SERIAL_EPOCH_MS + 123_456_789;
        assert_eq!(
            zone_serial(stamp(t, 0, 1), 9),
            zone_serial(stamp(t, 0, 1), 9)
        );
        assert_eq!(
            zone_serial(stamp(t, 0, 1), 9),
            zone_serial(stamp(t, 5, 2), 9)
        );
    }

    #[test]
    fn serial_is_monotonic_in_the_stamp() {
        // Stamps in HLC order, from two nodes, through a wrap of the base.
        let base = u32::MAX - 1_000;
        let mut stamps = vec![];
        for i in 0..2_000u64 {
            let wall = SERIAL_EPOCH_MS + 2_000_000_000 + i * 37;
            stamps.push(stamp(wall, (i % 3) as u32, 1 + (i % 2) as u32));
        }
        stamps.sort();
        for w in stamps.windows(2) {
            let (a, b) = (zone_serial(w[0], base), zone_serial(w[1], base));
            assert!(
                a == b || serial_gt(b, a),
                "{:?} -> {a}, {:?} -> {b}",
                w[0],
                w[1]
            );
        }
        // Six years later it is still greater, and above the base.
        let later = stamp(SERIAL_EPOCH_MS + 2_000_000_000 + 6 * 365 * 86_400_000, 0, 1);
        let first = zone_serial(stamps[0], base);
        assert!(serial_gt(zone_serial(later, base), first));
        assert!(serial_gt(zone_serial(later, base), base));
    }

    #[test]
    fn default_base_stays_above_a_unix_time_serial() {
        // What dnsmasq publishes by default: its start time in seconds.
        for year in [2026u64, 2028, 2030] {
            let unix = (year - 1970) * 31_556_952;
            let ours = zone_serial(stamp(unix * 1000, 0, 1), DEFAULT_SERIAL_BASE);
            assert!(serial_gt(ours, unix as u32), "{year}");
        }
    }

    #[test]
    fn rfc1982_comparison() {
        assert!(serial_gt(2, 1));
        assert!(!serial_gt(1, 2));
        assert!(!serial_gt(5, 5));
        assert!(serial_gt(0, u32::MAX));
        assert!(serial_gt(100, u32::MAX - 100));
        assert!(!serial_gt(1 << 31, 0) && !serial_gt(0, 1 << 31));
    }

    #[test]
    fn serial_follows_the_newest_change_and_moves_with_every_one() {
        let mut z = AuthZones::new(&AuthConfig {
            serial: Some(1000),
            ..AuthConfig::default()
        });
        let h = z.serial_handle();
        assert_eq!(h.get(), 1000);
        z.changed(SERIAL_EPOCH_MS + 500);
        assert_eq!(h.get(), 1005);
        // An older change (merged from the partner) does not lower it, and
        // is a change all the same.
        z.changed(SERIAL_EPOCH_MS + 100);
        assert_eq!(h.get(), 1006);
        assert_eq!(h.get(), 1006, "no change, no move");
        // A later change is back on the time-derived serial.
        z.changed(SERIAL_EPOCH_MS + 2_000);
        assert_eq!(h.get(), 1020);
        let shared = ZoneSerial::default();
        z.share_serial(shared.clone());
        assert_eq!(shared.get(), 1020);
        z.changed(SERIAL_EPOCH_MS + 2_050);
        assert_eq!((shared.get(), z.serial()), (1021, 1021));
    }

    /// A burst of changes between two readings is one step: a whole
    /// table merged in a sync does not run the serial ahead of what the
    /// data gives by the size of the table.
    #[test]
    fn a_burst_between_readings_is_one_step() {
        let mut z = AuthZones::new(&AuthConfig::default());
        z.changed(SERIAL_EPOCH_MS + 10_000);
        let before = z.serial();
        for i in 0..1_000 {
            z.changed(SERIAL_EPOCH_MS + i);
        }
        assert_eq!(z.serial(), before.wrapping_add(1));
    }

    /// The table read at start gives the time-derived serial of its
    /// newest change, in any order, with no step for the reading itself.
    #[test]
    fn loading_follows_the_data_only() {
        let times = [
            SERIAL_EPOCH_MS + 700,
            SERIAL_EPOCH_MS + 300,
            SERIAL_EPOCH_MS,
        ];
        let mut a = AuthZones::new(&AuthConfig::default());
        let mut b = AuthZones::new(&AuthConfig::default());
        for t in times {
            a.loaded(t);
        }
        for t in times.iter().rev() {
            b.loaded(*t);
        }
        let want = serial_at(SERIAL_EPOCH_MS + 700, DEFAULT_SERIAL_BASE);
        assert_eq!((a.serial(), b.serial()), (want, want));
    }

    /// Review §5 step 3: changes whose stamps share a wall clock (a clock
    /// held ahead by a future stamp, or a burst within a tenth of a
    /// second), and a partner's older record merged late, each move the
    /// serial up (RFC 1982), as a secondary reading it between any two of
    /// them must see.
    #[test]
    fn every_change_moves_the_serial_up() {
        let mut z = AuthZones::new(&AuthConfig::default());
        let h = z.serial_handle();
        let ahead = SERIAL_EPOCH_MS + 86_400_000;
        let mut last = h.get();
        for wall in [ahead, ahead, ahead + 50, ahead - 5_000] {
            z.changed(wall);
            let now = h.get();
            assert!(
                serial_gt(now, last),
                "the change at {wall} left the serial at {now} (was {last})"
            );
            last = now;
        }
        // Through the wrap of the 32-bit serial too.
        let mut w = AuthZones::new(&AuthConfig {
            serial: Some(u32::MAX),
            ..AuthConfig::default()
        });
        let before = w.serial();
        w.changed(0);
        assert_eq!(w.serial(), 0);
        assert!(serial_gt(w.serial(), before));
    }

    /// An ended lease keeps its stamp, but counts from its end, which both
    /// nodes know alike; an end not yet reached counts as now.
    #[test]
    fn an_ended_lease_counts_from_its_end() {
        let rec = |state, expires| LeaseRecord {
            ip: std::net::Ipv4Addr::new(198, 18, 0, 10),
            state,
            client: twinmasq_proto::ClientKey(vec![2, 1, 1]),
            htype: 1,
            hwaddr: vec![1],
            client_id: None,
            hostname: None,
            expires,
            stamp: stamp(5_000_000, 0, 1),
        };
        let now = 9_000;
        assert_eq!(
            change_ms(&rec(LeaseState::Bound, Expiry::At(8_000)), now),
            5_000_000
        );
        assert_eq!(
            change_ms(&rec(LeaseState::Expired, Expiry::At(8_000)), now),
            8_000_000
        );
        assert_eq!(
            change_ms(&rec(LeaseState::Released, Expiry::At(8_000)), now),
            8_000_000
        );
        assert_eq!(
            change_ms(&rec(LeaseState::Expired, Expiry::At(1)), now),
            5_000_000
        );
        assert_eq!(
            change_ms(&rec(LeaseState::Expired, Expiry::At(u64::MAX)), now),
            9_000_000
        );
        assert_eq!(
            change_ms(&rec(LeaseState::Expired, Expiry::Never), now),
            5_000_000
        );
    }

    #[test]
    fn nets_and_reverse_zones() {
        let n = Net {
            addr: ip("198.18.7.9"),
            prefix: 24,
        };
        assert!(n.contains(ip("198.18.7.200")));
        assert!(!n.contains(ip("198.18.8.1")));
        assert!(!n.contains(ip("fd00::1")));
        assert_eq!(n.reverse_zone(), "7.18.198.in-addr.arpa");
        let n25 = Net {
            addr: ip("198.18.7.128"),
            prefix: 25,
        };
        assert_eq!(n25.reverse_zone(), "7.18.198.in-addr.arpa");
        let n8 = Net {
            addr: ip("10.0.0.0"),
            prefix: 4,
        };
        assert_eq!(n8.reverse_zone(), "10.in-addr.arpa");
        let all = Net {
            addr: ip("0.0.0.0"),
            prefix: 0,
        };
        assert!(all.contains(ip("198.18.0.1")));
        let v6 = Net {
            addr: ip("fd00:1::"),
            prefix: 48,
        };
        assert!(v6.contains(ip("fd00:1::5")));
        assert_eq!(v6.reverse_zone(), "0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa");
    }

    fn zones() -> AuthZones {
        AuthZones::new(&AuthConfig {
            zones: vec![
                AuthZone {
                    domain: "home.lan".into(),
                    subnets: vec![
                        ZoneNet::Subnet {
                            addr: ip("198.18.1.0"),
                            prefix: 24,
                        },
                        ZoneNet::Interface {
                            name: "eth1".into(),
                            family: IfFamily::V4,
                        },
                    ],
                    excludes: vec![ZoneNet::Subnet {
                        addr: ip("198.18.1.13"),
                        prefix: 32,
                    }],
                },
                AuthZone {
                    domain: "sub.home.lan".into(),
                    subnets: vec![],
                    excludes: vec![],
                },
            ],
            server: Some(AuthServer {
                name: "ns1.home.lan".into(),
                interfaces: vec![("eth0".into(), IfFamily::Any)],
                addrs: vec![],
            }),
            sec_servers: vec!["ns2.example".into()],
            ..AuthConfig::default()
        })
    }

    #[test]
    fn zone_membership_and_filters() {
        let mut z = zones();
        assert_eq!(z.zone_of("a.home.lan").unwrap().domain, "home.lan");
        assert_eq!(z.zone_of("a.sub.home.lan").unwrap().domain, "sub.home.lan");
        assert!(z.zone_of("xhome.lan").is_none());
        let home = z.zone_of("home.lan").unwrap();
        assert_eq!(home.relative("a.b.home.lan"), Some("a.b"));
        assert_eq!(home.relative("home.lan"), None);
        assert!(home.admits(ip("198.18.1.12")));
        assert!(!home.admits(ip("198.18.1.13")));
        assert!(!home.admits(ip("198.18.2.1")));
        assert!(z.zone_of("sub.home.lan").unwrap().admits(ip("203.0.113.1")));
        assert!(z.reverse_zone_of(ip("198.18.2.1")).is_none());
        z.set_interfaces(&[(
            "eth1".into(),
            vec![
                Net {
                    addr: ip("198.18.2.1"),
                    prefix: 24,
                },
                Net {
                    addr: ip("fd00::1"),
                    prefix: 64,
                },
            ],
        )]);
        let home = z.zone_of("home.lan").unwrap();
        assert!(home.admits(ip("198.18.2.77")));
        assert!(!home.admits(ip("fd00::5")));
        let (zone, net) = z.reverse_zone_of(ip("198.18.2.1")).unwrap();
        assert_eq!(
            (zone.domain.as_str(), net.reverse_zone().as_str()),
            ("home.lan", "2.18.198.in-addr.arpa")
        );
    }

    #[test]
    fn transfer_permission_as_dnsmasq() {
        let mut cfg = AuthConfig::default();
        assert!(!AuthZones::new(&cfg).may_transfer(ip("198.18.0.10")));
        cfg.sec_servers = vec!["ns2.example".into()];
        assert!(AuthZones::new(&cfg).may_transfer(ip("198.18.0.10")));
        cfg.peers = vec![ip("198.18.0.10")];
        let z = AuthZones::new(&cfg);
        assert!(z.may_transfer(ip("198.18.0.10")));
        assert!(z.may_transfer(ip("::ffff:198.18.0.10")));
        assert!(!z.may_transfer(ip("198.18.0.11")));
        cfg.sec_servers.clear();
        assert!(AuthZones::new(&cfg).may_transfer(ip("198.18.0.10")));
    }

    #[test]
    fn soa_and_ns_records() {
        let z = zones();
        let soa = z.soa("home.lan").unwrap();
        assert_eq!(soa.ttl, 600);
        let RData::SOA(s) = &soa.data else {
            panic!("{soa:?}")
        };
        assert_eq!(s.mname.to_ascii(), "ns1.home.lan.");
        assert_eq!(s.rname.to_ascii(), "hostmaster.ns1.home.lan.");
        assert_eq!(s.serial, DEFAULT_SERIAL_BASE);
        assert_eq!(
            (s.refresh, s.retry, s.expire, s.minimum),
            (1200, 180, 1_209_600, 600)
        );
        let ns: Vec<String> = z
            .ns("home.lan", true)
            .iter()
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(ns, vec!["ns1.home.lan.", "ns2.example."]);
        assert_eq!(z.ns("1.18.198.in-addr.arpa", false).len(), 1);
    }
}
