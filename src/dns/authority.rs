//! What twinmasq answers itself: lease names (forward and reverse, with
//! `domain`), hosts files, `address=`, `local=`, and dnsmasq's record
//! options. Everything else is for the forwarder.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Record;

/// Where a query that is not answered locally goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The normal upstream servers (`server=ip`, resolv-file).
    Default,
    /// Servers for this domain (`server=/dom/ip`, `rev-server=`).
    Servers(Vec<SocketAddr>),
}

/// The authority's verdict on one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Answered from local data: the rcode, the answer and authority
    /// sections, and whether the AA flag is set (as dnsmasq sets it).
    Local {
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
        authoritative: bool,
    },
    /// Not ours: forward it.
    Forward(Route),
}

/// Which DNS service a query arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The normal, recursive service (LAN clients).
    Recursive,
    /// An `auth-server` interface or address: authoritative answers only.
    Authoritative,
}

/// One question for the authoritative zones.
#[derive(Debug, Clone)]
pub struct AuthQuery<'a> {
    pub name: &'a hickory_proto::rr::Name,
    pub qtype: hickory_proto::rr::RecordType,
    pub qclass: hickory_proto::rr::DNSClass,
    pub service: Service,
    /// The client's address: zone transfers are only for `auth-peer`s.
    pub peer: std::net::IpAddr,
    pub tcp: bool,
    /// IXFR: the serial the client holds (its SOA in the authority section).
    pub client_serial: Option<u32>,
}

/// What the authoritative zones say about a question.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthVerdict {
    /// Not in any zone, asked of the recursive service: the normal path.
    NotMine,
    Answer {
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
        authoritative: bool,
    },
    /// Out of zone at the authoritative service, or a transfer not allowed.
    Refused,
    /// A whole zone (AXFR, or IXFR answered with the whole zone): the SOA
    /// first and last, every record between.
    Transfer(Vec<Record>),
    /// No reply at all: dnsmasq ignores an AXFR over UDP.
    Drop,
}

/// What the DNS engine asks of local data. `Authority` implements it; the
/// engine's tests use small fakes.
pub trait LocalData {
    /// The verdict for one question. `name` is as asked (any case);
    /// `arrival` is where it was sent (`ClientRef::arrival`); `now_secs` is
    /// unix time, for lease expiry.
    fn lookup(
        &self,
        name: &hickory_proto::rr::Name,
        qtype: hickory_proto::rr::RecordType,
        arrival: Option<Net>,
        now_secs: u64,
    ) -> Lookup;

    /// Whether local data knows this name at all (an address record):
    /// an upstream NXDOMAIN for it is then NODATA.
    fn has_name(&self, name: &hickory_proto::rr::Name, now_secs: u64) -> bool {
        use hickory_proto::rr::RecordType;
        [RecordType::A, RecordType::AAAA].into_iter().any(|t| {
            matches!(self.lookup(name, t, None, now_secs), Lookup::Local { answers, .. } if !answers.is_empty())
        })
    }

    /// The authoritative zones' verdict; asked before `lookup`.
    fn auth(&self, _q: &AuthQuery<'_>, _now_secs: u64) -> AuthVerdict {
        AuthVerdict::NotMine
    }

    /// The zones' current SOA serial, when any zone is configured.
    fn zone_serial(&self) -> Option<u32> {
        None
    }
}

// ---------------------------------------------------------------------------
// The authority itself.
//
// Verdict order, each step checked against real dnsmasq 2.90 (see tests):
// 1. local records of the asked type (hosts, expand-hosts, leases,
//    host-record, cname, mx/srv/txt/ptr-record, reverse of those) answer
//    NOERROR with AA;
// 2. a hosts/host-record name asked for the other family (A vs AAAA) is
//    NODATA, no AA (a lease name's other family is not: it goes on);
// 3. the most specific `address=`/`local=`/`server=/dom/`/`rev-server=`
//    domain decides: address= answers its addresses of the asked family with
//    AA, empty address= is NXDOMAIN, a family it lacks is forwarded; local
//    is NODATA for a name that exists locally, else NXDOMAIN (no AA);
//    servers and `#` forward;
// 4. `bogus-priv`: a PTR (or ANY) for a private address, partial reverse
//    names included, is NXDOMAIN with AA;
// 5. `domain-needed`: an unqualified A/AAAA/ANY is NXDOMAIN, no AA (before
//    `server=//` and checked ahead of step 3); other types of unqualified
//    names are forwarded (dnsmasq does so);
// 6. everything else goes to the default servers.
// No SOA is ever put in the authority section: dnsmasq adds none, even for
// NXDOMAIN in a `local=` domain.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use twinmasq_proto::lease::{Expiry, LeaseRecord, LeaseState};

use super::hosts::{self, BadLine};
use super::names::{
    is_private, is_unqualified, key_of, normalize, parse_reverse, parse_reverse_prefix,
    reverse_zone, to_name,
};
use super::zone::{change_ms, AuthZones, Net, ZoneSerial};
use crate::config::dns_types::DomainTarget;
use crate::config::types::{Config, DomainScope};

/// CNAME chains longer than this are cut (and loops stopped).
const MAX_CNAME_HOPS: usize = 8;

/// Everything configured for one name (key form).
#[derive(Debug, Default, Clone)]
struct NameData {
    /// From hosts files and host-record, with their TTLs.
    addrs: Vec<(IpAddr, u32)>,
    /// `cname=`: the target as written (dnsmasq answers it unexpanded).
    cname: Option<(String, u32)>,
    mx: Vec<(u16, String)>,
    /// priority, weight, port, target (None: "." — service not here).
    srv: Vec<(u16, u16, u16, Option<String>)>,
    txt: Vec<Vec<String>>,
    ptr: Vec<String>,
}

/// What the most specific configured domain says.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    /// `address=/dom/ip...`; empty: NXDOMAIN.
    Address(Vec<IpAddr>),
    /// `local=`, `server=/dom/`, local `domain=`, `rev-server` without server.
    Local,
    Servers(Vec<std::net::SocketAddr>),
    /// `server=/dom/#`
    Default,
}

#[derive(Debug, Clone)]
struct LeaseEntry {
    /// The names this lease publishes (key form): `host` and `host.domain`.
    names: Vec<String>,
    /// What the reverse lookup answers: the qualified name if there is one.
    ptr_name: String,
    expires: Expiry,
}

/// Local data plus the routing rules. Built from the config and the hosts
/// texts; leases come and go through `lease_changed`.
#[derive(Debug)]
pub struct Authority {
    local_ttl: u32,
    expand_hosts: bool,
    localise: bool,
    domain_needed: bool,
    bogus_priv: bool,
    /// Only the `domain=` lines, for `Config::domain_for`.
    domains: Config,
    /// The record options, kept so SIGHUP can rebuild with new hosts texts.
    dns: crate::config::dns_types::DnsConfig,
    names: HashMap<String, NameData>,
    /// Reverse of hosts and host-record addresses: the first name wins.
    rev: HashMap<IpAddr, (String, u32)>,
    rules: HashMap<String, Rule>,
    leases: HashMap<Ipv4Addr, LeaseEntry>,
    /// name -> lease addresses holding it (usually one).
    lease_names: HashMap<String, Vec<Ipv4Addr>>,
    bad_lines: Vec<(PathBuf, BadLine)>,
    /// This machine's host name: the target of an `mx-host` without one.
    own_name: Option<String>,
    /// `auth-zone`s and their serial.
    zones: AuthZones,
    /// Proper ancestors of names with data: they exist (empty
    /// non-terminals) in an authoritative zone rather than being NXDOMAIN.
    ents: HashSet<String>,
}

impl Authority {
    /// `hosts`: the texts of the hosts files the shell read, with their
    /// paths (for messages). With `no-hosts` the shell leaves /etc/hosts out.
    pub fn new(cfg: &Config, hosts: &[(PathBuf, String)]) -> Self {
        let mut a = Authority {
            local_ttl: cfg.dns.local_ttl,
            expand_hosts: cfg.dns.expand_hosts,
            localise: cfg.dns.localise_queries,
            domain_needed: cfg.dns.domain_needed,
            bogus_priv: cfg.dns.bogus_priv,
            domains: Config {
                domains: cfg.domains.clone(),
                ..Config::default()
            },
            dns: cfg.dns.clone(),
            names: HashMap::new(),
            rev: HashMap::new(),
            rules: build_rules(cfg),
            leases: HashMap::new(),
            lease_names: HashMap::new(),
            bad_lines: Vec::new(),
            own_name: None,
            zones: AuthZones::new(&cfg.dns.auth),
            ents: HashSet::new(),
        };
        a.build_static(hosts);
        a
    }

    /// SIGHUP: re-read hosts texts (config records are rebuilt too, as they
    /// share the tables). Leases are untouched.
    pub fn reload_hosts(&mut self, hosts: &[(PathBuf, String)]) {
        self.names.clear();
        self.rev.clear();
        self.bad_lines.clear();
        self.ents.clear();
        self.build_static(hosts);
    }

    /// New upstream routes (`servers-file` re-read): the domain and
    /// reverse servers of `cfg`, which is otherwise the one this was built
    /// from.
    pub fn set_routes(&mut self, cfg: &Config) {
        self.rules = build_rules(cfg);
    }

    /// The zone serial's handle, for whoever reports or replicates it.
    pub fn zone_serial_handle(&self) -> ZoneSerial {
        self.zones.serial_handle()
    }

    /// Publish the serial through `handle` (made before the authority).
    pub fn share_zone_serial(&mut self, handle: ZoneSerial) {
        self.zones.share_serial(handle);
    }

    /// The interfaces' subnets now, by interface name: `auth-zone`s given
    /// by interface follow them.
    pub fn set_interface_nets(&mut self, ifaces: &[(String, Vec<Net>)]) {
        self.zones.set_interfaces(ifaces);
    }

    /// The server's own host name (the shell asks the system): dnsmasq's
    /// target for `mx-host` lines that name none. Rebuilds the records.
    pub fn set_own_name(&mut self, name: &str, hosts: &[(PathBuf, String)]) {
        self.own_name = Some(normalize(name)).filter(|n| !n.is_empty());
        self.reload_hosts(hosts);
    }

    /// Hosts-file lines skipped at the last (re)load, for the log.
    pub fn bad_hosts_lines(&self) -> &[(PathBuf, BadLine)] {
        &self.bad_lines
    }

    /// One change from the lease database. Withdraws whatever the address
    /// published before, then publishes `host` and `host.<domain>` if the
    /// record is bound and named. O(1) in the number of leases.
    pub fn lease_changed(&mut self, rec: &LeaseRecord, now_secs: u64) {
        // Every change moves the zone serial, whatever it does to names.
        self.zones.changed(change_ms(rec, now_secs));
        self.publish_lease(rec, now_secs);
    }

    /// A record of the table as it stands at start: published like a
    /// change, but the serial only follows the data (no change happened
    /// that a secondary could have missed), so a restart keeps it.
    pub fn lease_loaded(&mut self, rec: &LeaseRecord, now_secs: u64) {
        self.zones.loaded(change_ms(rec, now_secs));
        self.publish_lease(rec, now_secs);
    }

    /// The whole table, after falling behind its changes: each record is
    /// published as a change, and an address the table no longer has
    /// withdraws its names. O(leases).
    pub fn leases_resynced(&mut self, all: &[LeaseRecord], now_secs: u64) {
        let present: std::collections::HashSet<Ipv4Addr> = all.iter().map(|r| r.ip).collect();
        let gone: Vec<Ipv4Addr> = self
            .leases
            .keys()
            .filter(|ip| !present.contains(ip))
            .copied()
            .collect();
        for ip in gone {
            self.withdraw_lease(ip);
        }
        for rec in all {
            self.lease_changed(rec, now_secs);
        }
    }

    fn withdraw_lease(&mut self, ip: Ipv4Addr) {
        if let Some(old) = self.leases.remove(&ip) {
            for n in &old.names {
                if let Some(ips) = self.lease_names.get_mut(n) {
                    ips.retain(|a| *a != ip);
                    if ips.is_empty() {
                        self.lease_names.remove(n);
                    }
                }
            }
        }
    }

    fn publish_lease(&mut self, rec: &LeaseRecord, now_secs: u64) {
        self.withdraw_lease(rec.ip);
        if rec.state != LeaseState::Bound || rec.expires.is_past(now_secs) {
            return;
        }
        let Some(host) = rec.hostname.as_deref().and_then(lease_host) else {
            return;
        };
        let mut names = vec![host.clone()];
        let mut ptr_name = host.clone();
        if let Some(dom) = self.domains.domain_for(rec.ip) {
            let dom = normalize(dom);
            if !dom.is_empty() {
                ptr_name = format!("{host}.{dom}");
                names.push(ptr_name.clone());
            }
        }
        for n in &names {
            self.lease_names.entry(n.clone()).or_default().push(rec.ip);
        }
        self.leases.insert(
            rec.ip,
            LeaseEntry {
                names,
                ptr_name,
                expires: rec.expires,
            },
        );
    }

    fn build_static(&mut self, hosts: &[(PathBuf, String)]) {
        let ttl = self.local_ttl;
        // host-record first, so its reverse wins over a hosts file's.
        for hr in &self.dns.host_records {
            let t = hr.ttl.unwrap_or(ttl);
            for (i, n) in hr.names.iter().enumerate() {
                let key = normalize(n);
                for addr in &hr.addrs {
                    self.names
                        .entry(key.clone())
                        .or_default()
                        .addrs
                        .push((*addr, t));
                    if i == 0 {
                        self.rev.entry(*addr).or_insert((key.clone(), t));
                    }
                }
            }
        }
        for (path, text) in hosts {
            let parsed = hosts::parse(text);
            self.bad_lines
                .extend(parsed.bad.into_iter().map(|b| (path.clone(), b)));
            for e in parsed.entries {
                let dom = self.expand_domain(e.addr);
                for (i, n) in e.names.iter().enumerate() {
                    // expand-hosts qualifies only plain names.
                    let full = match &dom {
                        Some(d) if is_unqualified(n) => Some(format!("{n}.{d}")),
                        _ => None,
                    };
                    self.names
                        .entry(n.clone())
                        .or_default()
                        .addrs
                        .push((e.addr, ttl));
                    if let Some(f) = &full {
                        self.names
                            .entry(f.clone())
                            .or_default()
                            .addrs
                            .push((e.addr, ttl));
                    }
                    if i == 0 {
                        let shown = full.unwrap_or_else(|| n.clone());
                        self.rev.entry(e.addr).or_insert((shown, ttl));
                    }
                }
            }
        }
        for c in &self.dns.cnames {
            for alias in &c.aliases {
                self.names.entry(normalize(alias)).or_default().cname =
                    Some((c.target.clone(), c.ttl.unwrap_or(ttl)));
            }
        }
        for m in &self.dns.mx {
            // No target: dnsmasq names its own host (seen: "1 vm."). Until
            // the shell tells us that name, the MX name exists but is empty.
            let target = m.target.clone().or_else(|| self.own_name.clone());
            let d = self.names.entry(normalize(&m.name)).or_default();
            if let Some(t) = target {
                d.mx.push((m.preference, t));
            }
        }
        for s in &self.dns.srv {
            self.names.entry(normalize(&s.name)).or_default().srv.push((
                s.priority,
                s.weight,
                s.port,
                s.target.clone(),
            ));
        }
        for t in &self.dns.txt {
            self.names
                .entry(normalize(&t.name))
                .or_default()
                .txt
                .push(t.texts.clone());
        }
        for p in &self.dns.ptr {
            let d = self.names.entry(normalize(&p.name)).or_default();
            if let Some(t) = &p.target {
                d.ptr.push(t.clone());
            }
        }
        // Only names inside an auth-zone matter, up to the zone's apex: a
        // large hosts file (a blocklist) costs nothing here without zones.
        for (key, d) in &self.names {
            if d.addrs.is_empty() && d.mx.is_empty() && d.srv.is_empty() && d.txt.is_empty() {
                continue;
            }
            let Some(zone) = self.zones.zone_of(key) else {
                continue;
            };
            let mut rest = key.as_str();
            while let Some(i) = rest.find('.') {
                rest = &rest[i + 1..];
                if rest.len() <= zone.domain.len() {
                    break;
                }
                self.ents.insert(rest.to_string());
            }
        }
    }

    /// The domain `expand-hosts` appends for an address, if it is on.
    fn expand_domain(&self, addr: IpAddr) -> Option<String> {
        if !self.expand_hosts {
            return None;
        }
        let d = match addr {
            IpAddr::V4(v4) => self.domains.domain_for(v4),
            // domain_for scopes by IPv4 subnet; IPv6 gets the general one.
            IpAddr::V6(_) => self
                .domains
                .domains
                .iter()
                .find(|d| d.scope == DomainScope::All)
                .map(|d| d.name.as_str()),
        };
        d.map(normalize).filter(|d| !d.is_empty())
    }

    /// Lease addresses answering for `key` now.
    fn lease_addrs(&self, key: &str, now_secs: u64) -> Vec<Ipv4Addr> {
        let Some(ips) = self.lease_names.get(key) else {
            return Vec::new();
        };
        ips.iter()
            .copied()
            .filter(|ip| {
                self.leases
                    .get(ip)
                    .is_some_and(|l| !l.expires.is_past(now_secs))
            })
            .collect()
    }

    fn reverse_of(&self, ip: IpAddr, now_secs: u64) -> Option<(String, u32)> {
        if let Some(r) = self.rev.get(&ip) {
            return Some(r.clone());
        }
        let IpAddr::V4(v4) = ip else {
            return None;
        };
        self.leases
            .get(&v4)
            .filter(|l| !l.expires.is_past(now_secs))
            .map(|l| (l.ptr_name.clone(), self.local_ttl))
    }

    /// Does the name exist locally at all (any type)?
    fn exists(&self, key: &str, now_secs: u64) -> bool {
        self.names.contains_key(key)
            || !self.lease_addrs(key, now_secs).is_empty()
            || parse_reverse(key).is_some_and(|ip| self.reverse_of(ip, now_secs).is_some())
    }

    /// Hosts-file or host-record addresses for `key`. Lease names do not
    /// count: dnsmasq 2.90 answers the other family of a hosts name NODATA
    /// but forwards it for a lease name.
    fn has_static_addrs(&self, key: &str) -> bool {
        self.names.get(key).is_some_and(|d| !d.addrs.is_empty())
    }

    /// Local records of `qtype` for `key`, owner `owner`, following a
    /// `cname=` (the CNAME plus the target's own local records).
    /// `near`: with `localise-queries`, the subnet the query was sent to.
    #[allow(clippy::too_many_arguments)]
    fn collect(
        &self,
        key: &str,
        owner: &Name,
        qtype: RecordType,
        near: Option<Net>,
        now: u64,
        out: &mut Vec<Record>,
        hops: usize,
    ) {
        let data = self.names.get(key);
        if let Some((target, ttl)) = data.and_then(|d| d.cname.as_ref()) {
            let Some(tname) = to_name(target) else {
                return;
            };
            out.push(Record::from_rdata(
                owner.clone(),
                *ttl,
                RData::CNAME(CNAME(tname.clone())),
            ));
            if qtype != RecordType::CNAME && hops < MAX_CNAME_HOPS {
                self.collect(&normalize(target), &tname, qtype, near, now, out, hops + 1);
            }
            return;
        }
        let any = qtype == RecordType::ANY;
        let want = |t: RecordType| any || qtype == t;
        if want(RecordType::A) || want(RecordType::AAAA) {
            let addrs = data.map(|d| d.addrs.as_slice()).unwrap_or(&[]);
            // localise-queries (IPv4 only, as dnsmasq): when some of the
            // name's IPv4 addresses are on the subnet asked, only those.
            let near = near.filter(|n| addrs.iter().any(|(a, _)| a.is_ipv4() && n.contains(*a)));
            for (addr, ttl) in addrs {
                match addr {
                    IpAddr::V4(_) if near.is_some_and(|n| !n.contains(*addr)) => {}
                    IpAddr::V4(v4) if want(RecordType::A) => {
                        out.push(Record::from_rdata(owner.clone(), *ttl, RData::A(A(*v4))))
                    }
                    IpAddr::V6(v6) if want(RecordType::AAAA) => out.push(Record::from_rdata(
                        owner.clone(),
                        *ttl,
                        RData::AAAA(AAAA(*v6)),
                    )),
                    _ => {}
                }
            }
            // Hosts names shadow lease names, as in dnsmasq.
            if want(RecordType::A) && data.is_none_or(|d| d.addrs.is_empty()) {
                for ip in self.lease_addrs(key, now) {
                    out.push(Record::from_rdata(
                        owner.clone(),
                        self.local_ttl,
                        RData::A(A(ip)),
                    ));
                }
            }
        }
        let ttl = self.local_ttl;
        if let Some(d) = data {
            if want(RecordType::MX) {
                for (pref, t) in &d.mx {
                    if let Some(n) = to_name(t) {
                        out.push(Record::from_rdata(
                            owner.clone(),
                            ttl,
                            RData::MX(MX::new(*pref, n)),
                        ));
                    }
                }
            }
            if want(RecordType::SRV) {
                for (prio, weight, port, t) in &d.srv {
                    let n = t.as_deref().and_then(to_name).unwrap_or_else(Name::root);
                    out.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::SRV(SRV::new(*prio, *weight, *port, n)),
                    ));
                }
            }
            if want(RecordType::TXT) {
                for texts in &d.txt {
                    out.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::TXT(txt_rdata(texts)),
                    ));
                }
            }
            if want(RecordType::PTR) {
                for t in &d.ptr {
                    if let Some(n) = to_name(t) {
                        out.push(Record::from_rdata(owner.clone(), ttl, RData::PTR(PTR(n))));
                    }
                }
            }
        }
        let ptr_done = data.is_some_and(|d| !d.ptr.is_empty());
        if want(RecordType::PTR) && !ptr_done {
            if let Some(ip) = parse_reverse(key) {
                if let Some((n, t)) = self.reverse_of(ip, now) {
                    if let Some(n) = to_name(&n) {
                        out.push(Record::from_rdata(owner.clone(), t, RData::PTR(PTR(n))));
                    }
                }
            }
        }
    }

    /// The rule of the most specific configured domain `key` is in. The
    /// empty domain (`server=//...`, unqualified names) is left to the caller.
    fn rule_for(&self, key: &str) -> Option<&Rule> {
        let mut rest = key;
        loop {
            if !rest.is_empty() {
                if let Some(r) = self.rules.get(rest) {
                    return Some(r);
                }
            }
            match rest.find('.') {
                Some(i) => rest = &rest[i + 1..],
                None => return None,
            }
        }
    }
}

/// A TXT record's character-strings hold at most 255 bytes each: longer
/// configured strings are cut into 255-byte pieces rather than fail to
/// encode on the wire.
fn txt_rdata(texts: &[String]) -> TXT {
    TXT::from_bytes(
        texts
            .iter()
            .flat_map(|t| t.as_bytes().chunks(255))
            .collect(),
    )
}

/// The DNS label of a lease's hostname: the part before any dot, lowercase,
/// and only if it is a valid label (clients send odd things).
fn lease_host(h: &str) -> Option<String> {
    let label = h.split('.').next()?.to_ascii_lowercase();
    let ok = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(label)
}

/// The domain table: address=, server=/dom/, local=, rev-server=, and the
/// implied local= of `domain=...,local`. Later lines for the same domain
/// add servers/addresses; a different kind replaces (last one wins).
fn build_rules(cfg: &Config) -> HashMap<String, Rule> {
    let mut rules: HashMap<String, Rule> = HashMap::new();
    let mut put = |dom: String, target: &DomainTarget| {
        let rule = match target {
            DomainTarget::Local => Rule::Local,
            DomainTarget::UseDefault => Rule::Default,
            DomainTarget::Upstream(sa) => match rules.remove(&dom) {
                Some(Rule::Servers(mut v)) => {
                    v.push(*sa);
                    Rule::Servers(v)
                }
                _ => Rule::Servers(vec![*sa]),
            },
        };
        rules.insert(dom, rule);
    };
    for ds in &cfg.dns.domain_servers {
        for d in &ds.domains {
            put(normalize(d), &ds.target);
        }
    }
    for rs in &cfg.dns.rev_servers {
        put(reverse_zone(rs.net, rs.prefix), &rs.target);
    }
    for ld in &cfg.local_domains {
        put(normalize(&ld.name), &DomainTarget::Local);
        if let DomainScope::Subnet { net, prefix } = ld.scope {
            put(reverse_zone(IpAddr::V4(net), prefix), &DomainTarget::Local);
        }
    }
    for ao in &cfg.dns.addresses {
        for d in &ao.domains {
            let d = normalize(d);
            let rule = match rules.remove(&d) {
                Some(Rule::Address(mut v)) if !ao.addrs.is_empty() => {
                    v.extend(ao.addrs.iter().copied());
                    Rule::Address(v)
                }
                _ => Rule::Address(ao.addrs.clone()),
            };
            rules.insert(d, rule);
        }
    }
    rules
}

fn local(rcode: ResponseCode, answers: Vec<Record>, authoritative: bool) -> Lookup {
    Lookup::Local {
        rcode,
        answers,
        authorities: Vec::new(),
        authoritative,
    }
}

impl LocalData for Authority {
    fn auth(&self, q: &AuthQuery<'_>, now_secs: u64) -> AuthVerdict {
        self.auth_verdict(q, now_secs)
    }

    fn zone_serial(&self) -> Option<u32> {
        (!self.zones.is_empty()).then(|| self.zones.serial())
    }

    fn lookup(
        &self,
        name: &Name,
        qtype: RecordType,
        arrival: Option<Net>,
        now_secs: u64,
    ) -> Lookup {
        let key = key_of(name);
        let mut answers = Vec::new();
        let near = arrival.filter(|_| self.localise);
        self.collect(&key, name, qtype, near, now_secs, &mut answers, 0);
        if !answers.is_empty() {
            return local(ResponseCode::NoError, answers, true);
        }
        let addr_query = matches!(qtype, RecordType::A | RecordType::AAAA);
        if addr_query && self.has_static_addrs(&key) {
            return local(ResponseCode::NoError, Vec::new(), false);
        }
        let unqualified = is_unqualified(&key);
        let specific = self.rule_for(&key);
        // domain-needed comes before `server=//...` (seen: with both, an
        // unqualified A is NXDOMAIN while its MX goes to that server).
        if self.domain_needed
            && unqualified
            && specific.is_none()
            && (addr_query || qtype == RecordType::ANY)
        {
            return local(ResponseCode::NXDomain, Vec::new(), false);
        }
        let rule = match specific {
            Some(r) => Some(r),
            None if unqualified => self.rules.get(""),
            None => None,
        };
        match rule {
            Some(Rule::Address(addrs)) if addrs.is_empty() => {
                return local(ResponseCode::NXDomain, Vec::new(), false);
            }
            Some(Rule::Address(addrs)) => {
                let ttl = self.local_ttl;
                // ANY gets the IPv6 addresses if there are any, else the
                // IPv4 ones: what dnsmasq 2.90 answers.
                let has_v6 = addrs.iter().any(IpAddr::is_ipv6);
                let qtype = match qtype {
                    RecordType::ANY if has_v6 => RecordType::AAAA,
                    RecordType::ANY => RecordType::A,
                    t => t,
                };
                let recs: Vec<Record> = addrs
                    .iter()
                    .filter_map(|a| match (a, qtype) {
                        (IpAddr::V4(v4), RecordType::A) => {
                            Some(Record::from_rdata(name.clone(), ttl, RData::A(A(*v4))))
                        }
                        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(
                            Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(*v6))),
                        ),
                        _ => None,
                    })
                    .collect();
                if recs.is_empty() {
                    // dnsmasq forwards a type address= has nothing for.
                    return Lookup::Forward(Route::Default);
                }
                return local(ResponseCode::NoError, recs, true);
            }
            Some(Rule::Local) => {
                let rcode = if self.exists(&key, now_secs) {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                return local(rcode, Vec::new(), false);
            }
            Some(Rule::Servers(s)) => return Lookup::Forward(Route::Servers(s.clone())),
            Some(Rule::Default) => return Lookup::Forward(Route::Default),
            None => {}
        }
        // PTR and ANY only: dnsmasq forwards other types of these names.
        if self.bogus_priv && matches!(qtype, RecordType::PTR | RecordType::ANY) {
            if let Some(ip) = parse_reverse_prefix(&key) {
                if is_private(ip) {
                    return local(ResponseCode::NXDomain, Vec::new(), true);
                }
            }
        }
        // Unqualified names of other types are forwarded even with
        // domain-needed, as dnsmasq 2.90 does.
        Lookup::Forward(Route::Default)
    }
}

#[path = "auth_zone.rs"]
mod auth_zone;

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
