//! DNS differential tests: real dnsmasq (the reference) and the server under
//! test run the same config in two network namespaces of one lab, get the
//! same queries, and every difference in what they answer is a failure.
//! Run as root; see tests/README.md.
//!
//! Topology (all 198.18.0.0/24, on the lab's bridge):
//! - 198.18.0.1: reference dnsmasq (the lab's server namespace)
//! - 198.18.0.2: the server under test (its own namespace)
//! - 198.18.0.10: the test's client socket; 198.18.0.60 and 198.18.0.61: the
//!   test's own upstream servers (general and `corp.example`), all in one
//!   "outside" namespace. The test binds these sockets there with setns(2)
//!   on a short-lived thread; nothing is ever sent from the host namespace.

mod netns;

use netns::udp_in_ns;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use netns::{wait_for, Host, Lab, Proc, ServerKind, NETMASK, SERVER_IP};

/// The server compared with dnsmasq when `TWINMASQ_TEST_SERVER` is unset.
/// `TWINMASQ_TEST_SERVER=dnsmasq` compares dnsmasq with itself, which
/// shows the harness finds no difference where there is none.
const DEFAULT_DNS_SERVER: ServerKind = ServerKind::Twinmasq;

const REF_IP: Ipv4Addr = SERVER_IP; // 198.18.0.1
const SUT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);
const CORP_UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 61);

/// How long the client waits for one answer. Every answer here takes
/// milliseconds except `slow.example.net`, which the upstream answers after
/// [`SLOW_DELAY`], so both servers must leave the client without one.
const QUERY_TIMEOUT: Duration = Duration::from_millis(2500);
const SLOW_DELAY: Duration = Duration::from_secs(4);
/// Bound for a server to answer its first query after start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const UPSTREAM_TTL: u32 = 300;

fn server_under_test() -> ServerKind {
    match std::env::var("TWINMASQ_TEST_SERVER").as_deref() {
        Ok("dnsmasq") => ServerKind::Dnsmasq,
        Ok("twinmasq") => ServerKind::Twinmasq,
        Ok("") | Err(_) => DEFAULT_DNS_SERVER,
        Ok(other) => panic!("TWINMASQ_TEST_SERVER={other}: expected dnsmasq or twinmasq"),
    }
}

macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------
// Sockets inside a namespace

// ---------------------------------------------------------------------------
// The test's own upstream servers

/// One query an upstream received: from which server, for what.
#[derive(Clone, Debug)]
struct Hit {
    from: IpAddr,
    name: String,
    rtype: RecordType,
}

/// Two tiny authoritative servers with fixed zones, one thread each. They
/// record every query so the test can see what a server forwarded.
struct Upstream {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<Hit>>>,
    threads: Vec<JoinHandle<()>>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("name {s}: {e}"))
}

/// The general upstream's zone. Anything not listed is NXDOMAIN, a listed
/// name without the asked type is NODATA.
fn general_zone(qname: &str) -> Option<Vec<RData>> {
    let v = match qname {
        "www.example.net." => vec![
            RData::A(A(Ipv4Addr::new(198, 18, 5, 1))),
            RData::AAAA(AAAA("2001:db8:5::1".parse::<Ipv6Addr>().unwrap())),
        ],
        "multi.example.net." => vec![
            RData::A(A(Ipv4Addr::new(198, 18, 5, 3))),
            RData::A(A(Ipv4Addr::new(198, 18, 5, 4))),
            RData::A(A(Ipv4Addr::new(198, 18, 5, 5))),
        ],
        "mail.example.net." => vec![
            RData::MX(MX::new(10, name("mx.example.net."))),
            RData::A(A(Ipv4Addr::new(198, 18, 5, 2))),
        ],
        "txt.example.net." => vec![RData::TXT(TXT::new(vec![
            "upstream text".into(),
            "part two".into(),
        ]))],
        "slow.example.net." => vec![RData::A(A(Ipv4Addr::new(198, 18, 5, 9)))],
        // bogus-nxdomain and ignore-address targets.
        "bogus.example.net." => vec![
            RData::A(A(Ipv4Addr::new(198, 18, 7, 7))),
            RData::AAAA(AAAA("2001:db8:5::7".parse::<Ipv6Addr>().unwrap())),
            RData::MX(MX::new(10, name("mx.example.net."))),
        ],
        "bogusnet.example.net." => vec![
            RData::A(A(Ipv4Addr::new(198, 18, 5, 20))),
            RData::A(A(Ipv4Addr::new(198, 18, 7, 200))),
        ],
        "bogus6.example.net." => vec![
            RData::A(A(Ipv4Addr::new(198, 18, 5, 21))),
            RData::AAAA(AAAA("2001:db8:7::7".parse::<Ipv6Addr>().unwrap())),
        ],
        "ignored.example.net." => vec![
            RData::A(A(Ipv4Addr::new(198, 18, 8, 8))),
            RData::MX(MX::new(10, name("mx.example.net."))),
        ],
        "99.1.18.198.in-addr.arpa." => vec![RData::PTR(PTR(name("far.example.net.")))],
        _ => return None,
    };
    Some(v)
}

fn corp_zone(qname: &str) -> Option<Vec<RData>> {
    match qname {
        "host.corp.example." => Some(vec![RData::A(A(Ipv4Addr::new(198, 18, 6, 1)))]),
        "corp.example." => Some(vec![]),
        _ => None,
    }
}

type Zone = fn(&str) -> Option<Vec<RData>>;

impl Upstream {
    fn start(ns: &str) -> Upstream {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(vec![]));
        let mut threads = vec![];
        for (ip, zone) in [
            (UPSTREAM_IP, general_zone as Zone),
            (CORP_UPSTREAM_IP, corp_zone as Zone),
        ] {
            let sock = udp_in_ns(ns, SocketAddr::new(ip.into(), 53));
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let (stop, hits) = (stop.clone(), hits.clone());
            threads.push(thread::spawn(move || serve(sock, zone, &stop, &hits)));
        }
        Upstream {
            stop,
            hits,
            threads,
        }
    }

    /// How many times `from` asked for `name`/`rtype` (case-insensitively).
    fn count(&self, from: Ipv4Addr, name: &str, rtype: RecordType) -> usize {
        let want = format!("{}.", name.trim_end_matches('.')).to_lowercase();
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.from == IpAddr::V4(from) && h.name == want && h.rtype == rtype)
            .count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(sock: UdpSocket, zone: Zone, stop: &AtomicBool, hits: &Mutex<Vec<Hit>>) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(q) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Some(query) = q.queries.first().cloned() else {
            continue;
        };
        let qname = query.name().to_ascii().to_lowercase();
        hits.lock().unwrap().push(Hit {
            from: from.ip(),
            name: qname.clone(),
            rtype: query.query_type(),
        });
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.metadata.authoritative = true;
        r.queries.push(query.clone());
        match zone(&qname) {
            None => r.metadata.response_code = ResponseCode::NXDomain,
            Some(data) => {
                r.answers = data
                    .into_iter()
                    .filter(|d| d.record_type() == query.query_type())
                    .map(|d| Record::from_rdata(query.name().clone(), UPSTREAM_TTL, d))
                    .collect();
            }
        }
        let Ok(bytes) = r.to_vec() else { continue };
        if qname == "slow.example.net." {
            // Late, from its own thread so the other queries are not held up.
            if let Ok(s) = sock.try_clone() {
                thread::spawn(move || {
                    thread::sleep(SLOW_DELAY);
                    let _ = s.send_to(&bytes, from);
                });
            }
        } else {
            let _ = sock.send_to(&bytes, from);
        }
    }
}

// ---------------------------------------------------------------------------
// The servers

struct DnsServer {
    kind: ServerKind,
    role: &'static str,
    ip: Ipv4Addr,
    proc: Proc,
    log: PathBuf,
}

impl DnsServer {
    /// Starts `kind` in `host`'s namespace with `lines` (plus its own
    /// `interface=`) and waits until it answers a query for `probe`.
    #[allow(clippy::too_many_arguments)]
    fn start(
        lab: &Lab,
        role: &'static str,
        kind: ServerKind,
        host: &Host,
        ip: Ipv4Addr,
        lines: &[String],
        client: &Client,
        probe: &str,
    ) -> DnsServer {
        let dir = lab.dir().join(role);
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("dnsmasq.conf");
        let mut text = format!(
            "# {} {role} (generated by tests/dns_differential.rs)\ninterface={}\n",
            lab.test, host.ifname
        );
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        fs::write(&conf, text).unwrap();
        let log = dir.join("server.log");
        let p = |flag: &str, path: &Path| format!("{flag}={}", path.display());
        let mut args = match kind {
            ServerKind::Dnsmasq => vec!["dnsmasq".to_string()],
            ServerKind::Twinmasq => vec![env!("CARGO_BIN_EXE_twinmasq").to_string()],
        };
        args.extend([
            "-k".to_string(),
            "-C".to_string(),
            conf.display().to_string(),
        ]);
        args.push(p("--pid-file", &dir.join("pid")));
        match kind {
            ServerKind::Dnsmasq => {
                // Logs to syslog otherwise; twinmasq logs to stderr.
                args.push("--log-facility=-".into());
                args.push("--log-queries".into());
            }
            ServerKind::Twinmasq => args.push(p("--lease-db", &dir.join("db"))),
        }
        fs::write(&log, format!("===== {}\n", args.join(" "))).unwrap();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(&format!("{kind:?}"), &host.ns, &argv, &log);
        let server = SocketAddr::new(ip.into(), 53);
        let ready = wait_for(START_TIMEOUT, "a first answer", || {
            if let Some(st) = proc.try_status() {
                return Some(Err(format!("exited during start: {st}")));
            }
            match client.ask_timeout(
                server,
                probe,
                RecordType::A,
                true,
                Duration::from_millis(200),
            ) {
                Outcome::NoAnswer => None,
                _ => Some(Ok(())),
            }
        });
        if let Err(e) = ready.and_then(|r| r) {
            panic!(
                "{kind:?} ({role}) did not start answering DNS on {server}: {e}\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        DnsServer {
            kind,
            role,
            ip,
            proc,
            log,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip.into(), 53)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// The client

/// What came back for one query, reduced to what must match.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    rcode: ResponseCode,
    aa: bool,
    ra: bool,
    tc: bool,
    /// The question section as echoed, exactly (case included).
    question: Vec<String>,
    /// Answer RRset as a set of `owner type rdata` (owner case as sent).
    records: BTreeSet<String>,
    /// Authority section, the same way (SOA and NS of authoritative zones).
    authority: BTreeSet<String>,
    /// TTL per record; compared with a tolerance (cached TTLs count down).
    ttls: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    NoAnswer,
    /// A reply hickory cannot parse (hex of its first bytes).
    Unparsable(String),
    Answer(Answer),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NoAnswer => write!(f, "no answer"),
            Outcome::Unparsable(h) => write!(f, "unparsable reply {h}"),
            Outcome::Answer(a) => write!(
                f,
                "{:?} aa={} ra={} tc={} {:?}",
                a.rcode,
                u8::from(a.aa),
                u8::from(a.ra),
                u8::from(a.tc),
                a.ttls
            ),
        }
    }
}

struct Client {
    sock: UdpSocket,
}

impl Client {
    fn new(ns: &str) -> Client {
        Client {
            sock: udp_in_ns(ns, SocketAddr::new(CLIENT_IP.into(), 0)),
        }
    }

    fn ask(&self, server: SocketAddr, qname: &str, rtype: RecordType, rd: bool) -> Outcome {
        self.ask_timeout(server, qname, rtype, rd, QUERY_TIMEOUT)
    }

    /// One query; waits up to `timeout` for the reply with its ID from
    /// `server`. Anything else that arrives (a late answer to an earlier
    /// query) is skipped.
    fn ask_timeout(
        &self,
        server: SocketAddr,
        qname: &str,
        rtype: RecordType,
        rd: bool,
        timeout: Duration,
    ) -> Outcome {
        let mut m = Message::query();
        m.metadata.recursion_desired = rd;
        m.add_query(Query::query(name(qname), rtype));
        let id = m.metadata.id;
        self.sock
            .send_to(&m.to_vec().expect("encode query"), server)
            .unwrap_or_else(|e| panic!("send to {server}: {e}"));
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 65535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Outcome::NoAnswer;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            if from != server || n < 2 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                continue;
            }
            return match Message::from_vec(&buf[..n]) {
                Ok(r) => Outcome::Answer(summarise(&r)),
                Err(_) => Outcome::Unparsable(hex(&buf[..n.min(48)])),
            };
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A record as compared: `owner type data`. The SOA serial is left out:
/// twinmasq derives it from the lease data where dnsmasq counts from its
/// start time (a deliberate difference, see README).
fn record_key(rec: &Record) -> String {
    // TXT's Display runs its strings together; keep their boundaries.
    let data = match &rec.data {
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|x| format!("{:?}", String::from_utf8_lossy(x)))
            .collect::<Vec<_>>()
            .join(" "),
        RData::SOA(soa) => format!(
            "{} {} <serial> {} {} {} {}",
            soa.mname, soa.rname, soa.refresh, soa.retry, soa.expire, soa.minimum
        ),
        d => d.to_string(),
    };
    format!("{} {} {data}", rec.name, rec.record_type())
}

fn summarise(r: &Message) -> Answer {
    let mut records = BTreeSet::new();
    let mut ttls = BTreeMap::new();
    for rec in &r.answers {
        let key = record_key(rec);
        records.insert(key.clone());
        ttls.insert(key, rec.ttl);
    }
    let mut authority = BTreeSet::new();
    for rec in &r.authorities {
        let key = format!("{} {}", record_key(rec), rec.ttl);
        authority.insert(key);
    }
    Answer {
        rcode: r.metadata.response_code,
        aa: r.metadata.authoritative,
        ra: r.metadata.recursion_available,
        tc: r.metadata.truncation,
        question: r
            .queries
            .iter()
            .map(|q| format!("{} {}", q.name(), q.query_type()))
            .collect(),
        records,
        authority,
        ttls,
    }
}

/// Every difference between the reference's outcome and the other's.
fn differences(reference: &Outcome, other: &Outcome) -> Vec<String> {
    let (a, b) = match (reference, other) {
        (Outcome::Answer(a), Outcome::Answer(b)) => (a, b),
        _ if reference == other => return vec![],
        _ => return vec![format!("dnsmasq: {reference}; under test: {other}")],
    };
    let mut d = vec![];
    if a.rcode != b.rcode {
        d.push(format!("rcode {:?} vs {:?}", a.rcode, b.rcode));
    }
    for (flag, x, y) in [("AA", a.aa, b.aa), ("RA", a.ra, b.ra), ("TC", a.tc, b.tc)] {
        if x != y {
            d.push(format!("{flag} {} vs {}", u8::from(x), u8::from(y)));
        }
    }
    if a.question != b.question {
        d.push(format!("question {:?} vs {:?}", a.question, b.question));
    }
    for r in a.records.difference(&b.records) {
        d.push(format!("missing {r}"));
    }
    for r in b.records.difference(&a.records) {
        d.push(format!("extra {r}"));
    }
    for r in a.authority.difference(&b.authority) {
        d.push(format!("missing in authority {r}"));
    }
    for r in b.authority.difference(&a.authority) {
        d.push(format!("extra in authority {r}"));
    }
    for (k, ta) in &a.ttls {
        if let Some(tb) = b.ttls.get(k) {
            if ta.abs_diff(*tb) > 2 {
                d.push(format!("TTL of {k}: {ta} vs {tb}"));
            }
        }
    }
    d
}

// ---------------------------------------------------------------------------
// The scenario

/// Writes the hosts file and returns the config lines both servers share.
fn dns_config(dir: &Path) -> Vec<String> {
    let hosts = dir.join("hosts");
    fs::write(
        &hosts,
        "# addn-hosts of tests/dns_differential.rs\n\
         198.18.1.10 nas\n\
         2001:db8:1::10 nas\n\
         198.18.1.11 printer printer-alias\n\
         198.18.1.12 Laptop\n\
         198.18.1.13 mail\n\
         198.18.1.14 full.other.example\n\
         192.168.77.5 lanbox\n\
         198.18.0.40 multi\n\
         198.18.3.40 multi\n\
         198.18.3.41 elsewhere\n\
         198.18.4.41 elsewhere\n",
    )
    .unwrap();
    // dnsmasq reads hosts files after dropping privileges to nobody.
    fs::set_permissions(&hosts, fs::Permissions::from_mode(0o644)).unwrap();
    // The normal upstream comes from a resolv file, as on most routers.
    let resolv = dir.join("resolv.conf");
    fs::write(
        &resolv,
        format!(
            "nameserver {UPSTREAM_IP}
"
        ),
    )
    .unwrap();
    fs::set_permissions(&resolv, fs::Permissions::from_mode(0o644)).unwrap();
    [
        format!("resolv-file={}", resolv.display()),
        "no-hosts".into(),
        format!("addn-hosts={}", hosts.display()),
        "domain=home.lan".into(),
        "expand-hosts".into(),
        "local=/home.lan/".into(),
        "address=/ads.example/".into(),
        "address=/blocked.example/0.0.0.0".into(),
        format!("server=/corp.example/{CORP_UPSTREAM_IP}"),
        "cname=alias.home.lan,nas.home.lan".into(),
        "cname=chain.home.lan,alias.home.lan".into(),
        "mx-host=home.lan,mail.home.lan,10".into(),
        "mx-host=mx2.home.lan,mail.home.lan,20".into(),
        "srv-host=_ldap._tcp.home.lan,nas.home.lan,389,0,100".into(),
        "srv-host=_ldap._tcp.home.lan,printer.home.lan,389,10,5".into(),
        "txt-record=info.home.lan,\"v=spf1 -all\",\"second string\"".into(),
        "ptr-record=_printer._tcp.home.lan,printer.home.lan".into(),
        "ptr-record=250.0.18.198.in-addr.arpa,special.home.lan".into(),
        "host-record=router.home.lan,router,198.18.0.254,2001:db8::254".into(),
        "domain-needed".into(),
        "bogus-priv".into(),
        "cache-size=1000".into(),
        "strict-order".into(),
        "dns-forward-max=150".into(),
        "log-queries".into(),
        "stop-dns-rebind".into(),
        "rebind-domain-ok=/corp.example/".into(),
        format!("rev-server=10.77.0.0/16,{CORP_UPSTREAM_IP}"),
        "max-cache-ttl=3600".into(),
        "min-cache-ttl=30".into(),
        "no-negcache".into(),
        "server=/plain.corp.example/#".into(),
        "bogus-nxdomain=198.18.7.0/24".into(),
        "bogus-nxdomain=2001:db8:7::7".into(),
        "ignore-address=198.18.8.8".into(),
        // Both servers are on 198.18.0.0/24: `multi` answers its address
        // there only, `elsewhere` (none there) all of its.
        "localise-queries".into(),
    ]
    .into()
}

/// (name, type, RD): asked of the reference, then of the server under test,
/// in this order (the order matters: repeated names come from the cache).
fn queries() -> Vec<(&'static str, RecordType, bool)> {
    use RecordType::*;
    vec![
        // Hosts file, bare and expanded, in several cases.
        ("nas.home.lan.", A, true),
        ("NAS.Home.LAN.", A, true),
        ("nAs.hOmE.lAn.", AAAA, true),
        ("nas.", A, true),
        ("nas.", AAAA, true),
        ("laptop.home.lan.", A, true),
        ("LAPTOP.", A, true),
        ("printer-alias.home.lan.", A, true),
        ("full.other.example.", A, true),
        ("lanbox.home.lan.", A, true),
        // localise-queries.
        ("multi.home.lan.", A, true),
        ("MULTI.", A, true),
        ("elsewhere.home.lan.", A, true),
        // NODATA vs NXDOMAIN for local names.
        ("nas.home.lan.", MX, true),
        ("nas.home.lan.", TXT, true),
        ("laptop.home.lan.", AAAA, true),
        ("missing.home.lan.", A, true),
        ("missing.home.lan.", AAAA, true),
        ("deep.nas.home.lan.", A, true),
        ("home.lan.", A, true),
        ("home.lan.", SOA, true),
        // Reverse.
        ("10.1.18.198.in-addr.arpa.", PTR, true),
        ("12.1.18.198.in-addr.arpa.", PTR, true),
        ("254.0.18.198.in-addr.arpa.", PTR, true),
        ("250.0.18.198.in-addr.arpa.", PTR, true),
        (
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            PTR,
            true,
        ),
        ("99.1.18.198.in-addr.arpa.", PTR, true),
        // bogus-priv: private reverse names never go upstream.
        ("5.77.168.192.in-addr.arpa.", PTR, true),
        ("9.9.168.192.in-addr.arpa.", PTR, true),
        ("1.0.0.10.in-addr.arpa.", PTR, true),
        ("1.0.16.172.in-addr.arpa.", PTR, true),
        // Records from the config.
        ("home.lan.", MX, true),
        ("mx2.home.lan.", MX, true),
        ("_ldap._tcp.home.lan.", SRV, true),
        ("info.home.lan.", TXT, true),
        ("_printer._tcp.home.lan.", PTR, true),
        ("router.home.lan.", A, true),
        ("router.home.lan.", AAAA, true),
        ("router.", A, true),
        ("alias.home.lan.", A, true),
        ("Alias.Home.Lan.", AAAA, true),
        ("alias.home.lan.", CNAME, true),
        ("chain.home.lan.", A, true),
        // address= overrides.
        ("ads.example.", A, true),
        ("sub.ads.example.", A, true),
        ("ads.example.", AAAA, true),
        ("blocked.example.", A, true),
        ("x.y.blocked.example.", A, true),
        ("blocked.example.", AAAA, true),
        ("blocked.example.", MX, true),
        // Forwarded; the second time from the cache.
        ("www.example.net.", A, true),
        ("www.example.net.", A, true),
        ("WWW.Example.NET.", A, true),
        ("www.example.net.", AAAA, true),
        ("multi.example.net.", A, true),
        ("mail.example.net.", MX, true),
        ("txt.example.net.", TXT, true),
        ("txt.example.net.", TXT, true),
        ("www.example.net.", TXT, true),
        ("www.example.net.", TXT, true),
        ("nx.example.net.", A, true),
        ("nx.example.net.", A, true),
        ("www.example.net.", A, false),
        ("notcached.example.net.", A, false),
        // server=/corp.example/ goes to its own upstream.
        ("host.corp.example.", A, true),
        ("nothere.corp.example.", A, true),
        // domain-needed: unqualified names never go upstream.
        ("unknownhost.", A, true),
        ("unknownhost.", AAAA, true),
        // bogus-nxdomain: an address in the listed /24 or the listed
        // IPv6 address makes the answer NXDOMAIN, and the name is then
        // cached as NXDOMAIN for every type; an answer without a listed
        // address passes.
        ("bogus.example.net.", MX, true),
        ("bogus.example.net.", A, true),
        ("bogus.example.net.", A, true),
        ("bogus.example.net.", AAAA, true),
        ("bogus.example.net.", MX, true),
        ("bogusnet.example.net.", A, true),
        ("bogus6.example.net.", AAAA, true),
        ("bogus6.example.net.", A, true),
        // ignore-address: that answer is dropped, the MX one is not.
        ("ignored.example.net.", A, true),
        ("ignored.example.net.", MX, true),
        // Upstream never answers in time.
        ("slow.example.net.", A, true),
    ]
}

/// (name, type) that must reach the upstream exactly as often from both
/// servers: a cached name once, domain-needed and bogus-priv names never.
const FORWARD_COUNTS: &[(&str, RecordType)] = &[
    ("www.example.net", RecordType::A),
    ("txt.example.net", RecordType::TXT),
    ("www.example.net", RecordType::TXT),
    ("nx.example.net", RecordType::A),
    ("host.corp.example", RecordType::A),
    ("99.1.18.198.in-addr.arpa", RecordType::PTR),
    ("5.77.168.192.in-addr.arpa", RecordType::PTR),
    ("1.0.0.10.in-addr.arpa", RecordType::PTR),
    ("unknownhost", RecordType::A),
    ("missing.home.lan", RecordType::A),
    ("ads.example", RecordType::A),
    ("bogus.example.net", RecordType::A),
    ("bogus.example.net", RecordType::AAAA),
    ("bogus.example.net", RecordType::MX),
    ("ignored.example.net", RecordType::A),
];

/// The lab: reference and the server under test, each in its namespace,
/// plus the outside namespace with the client and the upstreams.
struct Rig {
    // Field order is drop order: servers and upstream before the lab.
    reference: DnsServer,
    sut: DnsServer,
    upstream: Upstream,
    client: Client,
    lab: Lab,
}

fn rig(lab: Lab, sut_kind: ServerKind) -> Rig {
    rig_with(lab, sut_kind, dns_config)
}

/// [`rig`] with the config lines `conf` writes and returns.
fn rig_with(lab: Lab, sut_kind: ServerKind, conf: fn(&Path) -> Vec<String>) -> Rig {
    // dnsmasq drops privileges to nobody before it reads the hosts file.
    fs::set_permissions(lab.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let sut_host = lab.add_client();
    sut_host.set_addr(SUT_IP, NETMASK);
    let outside = lab.add_client();
    for ip in [CLIENT_IP, UPSTREAM_IP, CORP_UPSTREAM_IP] {
        outside.set_addr(ip, NETMASK);
    }
    let upstream = Upstream::start(&outside.ns);
    let client = Client::new(&outside.ns);
    let dir = lab.dir().join("data");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = conf(&dir);
    let probe = "nas.home.lan.";
    let server = lab.server.clone();
    let reference = DnsServer::start(
        &lab,
        "reference",
        ServerKind::Dnsmasq,
        &server,
        REF_IP,
        &conf,
        &client,
        probe,
    );
    let sut = DnsServer::start(
        &lab,
        "under-test",
        sut_kind,
        &sut_host,
        SUT_IP,
        &conf,
        &client,
        probe,
    );
    Rig {
        reference,
        sut,
        upstream,
        client,
        lab,
    }
}

/// Asserts that the reference really exercised what the scenario is about,
/// so that dnsmasq-vs-dnsmasq passing means something.
fn check_reference(results: &[(String, Outcome, Outcome)], up: &Upstream) -> Vec<String> {
    let find = |label: &str| {
        results
            .iter()
            .find(|(l, _, _)| l == label)
            .map(|(_, r, _)| r.clone())
            .unwrap_or(Outcome::NoAnswer)
    };
    let has = |label: &str, rcode: ResponseCode, rec: &str| match find(label) {
        Outcome::Answer(a) => {
            a.rcode == rcode && (rec.is_empty() || a.records.iter().any(|r| r.contains(rec)))
        }
        _ => false,
    };
    let mut bad = vec![];
    let mut want = |ok: bool, what: &str| {
        if !ok {
            bad.push(what.to_string());
        }
    };
    want(
        has("nas.home.lan. A rd", ResponseCode::NoError, "198.18.1.10"),
        "hosts name answered",
    );
    want(
        has("missing.home.lan. A rd", ResponseCode::NXDomain, ""),
        "local= name NXDOMAIN",
    );
    want(
        has("multi.home.lan. A rd", ResponseCode::NoError, "198.18.0.40")
            && !has("multi.home.lan. A rd", ResponseCode::NoError, "198.18.3.40"),
        "localise-queries kept only the address on the asked subnet",
    );
    want(
        has(
            "elsewhere.home.lan. A rd",
            ResponseCode::NoError,
            "198.18.3.41",
        ) && has(
            "elsewhere.home.lan. A rd",
            ResponseCode::NoError,
            "198.18.4.41",
        ),
        "localise-queries kept every address when none is on the asked subnet",
    );
    want(
        has("www.example.net. A rd", ResponseCode::NoError, "198.18.5.1"),
        "forwarded name answered",
    );
    want(
        has(
            "host.corp.example. A rd",
            ResponseCode::NoError,
            "198.18.6.1",
        ),
        "corp.example routed to its upstream",
    );
    want(
        has("blocked.example. A rd", ResponseCode::NoError, "0.0.0.0"),
        "blocked name answered 0.0.0.0",
    );
    want(
        find("slow.example.net. A rd") == Outcome::NoAnswer,
        "slow name left unanswered",
    );
    want(
        has("bogus.example.net. A rd", ResponseCode::NXDomain, ""),
        "bogus-nxdomain turned an answer into NXDOMAIN",
    );
    want(
        up.count(REF_IP, "bogus.example.net", RecordType::A) == 1
            && up.count(REF_IP, "bogus.example.net", RecordType::AAAA) == 0
            && up.count(REF_IP, "bogus.example.net", RecordType::MX) == 1,
        "bogus-nxdomain cached the name as NXDOMAIN for every type",
    );
    want(
        has("bogus6.example.net. AAAA rd", ResponseCode::NXDomain, ""),
        "bogus-nxdomain matched an IPv6 address",
    );
    want(
        // The first of the two MX queries, before the name went bad.
        has(
            "bogus.example.net. MX rd",
            ResponseCode::NoError,
            "mx.example.net",
        ),
        "bogus-nxdomain left an answer without addresses alone",
    );
    want(
        find("ignored.example.net. A rd") == Outcome::NoAnswer,
        "ignore-address dropped the answer",
    );
    want(
        has(
            "ignored.example.net. MX rd",
            ResponseCode::NoError,
            "mx.example.net",
        ),
        "ignore-address left another answer alone",
    );
    // Three RD=1 queries and one RD=0: the first goes upstream, the other
    // RD=1 ones come from the cache; dnsmasq forwards the RD=0 one anyway.
    want(
        up.count(REF_IP, "www.example.net", RecordType::A) == 2,
        "repeated www.example.net A came from the cache",
    );
    want(
        up.count(REF_IP, "unknownhost", RecordType::A) == 0,
        "domain-needed kept unknownhost local",
    );
    want(
        up.count(REF_IP, "5.77.168.192.in-addr.arpa", RecordType::PTR) == 0,
        "bogus-priv kept a private reverse name local",
    );
    bad
}

/// How often each server asked the upstream for each of `names`, where
/// the two differ.
fn count_differences(up: &Upstream, names: &[(&str, RecordType)]) -> Vec<String> {
    names
        .iter()
        .filter_map(|(n, t)| {
            let a = up.count(REF_IP, n, *t);
            let b = up.count(SUT_IP, n, *t);
            (a != b).then(|| {
                format!("{n} {t}: dnsmasq asked the upstream {a} times, the server under test {b}")
            })
        })
        .collect()
}

/// One line per query (two where the servers differ), for failure messages.
fn outcome_table(results: &[(String, Outcome, Outcome)]) -> Vec<String> {
    results
        .iter()
        .map(|(l, a, b)| {
            if a == b {
                format!("  {l}: {a}")
            } else {
                format!("  {l}:\n    dnsmasq:    {a}\n    under test: {b}")
            }
        })
        .collect()
}

#[test]
fn dns_answers_match_dnsmasq() {
    let lab = lab!("dns_answers_match_dnsmasq");
    let kind = server_under_test();
    let r = rig(lab, kind);
    let mut results = vec![];
    let mut report = vec![];
    for (qname, rtype, rd) in queries() {
        let a = r.client.ask(r.reference.addr(), qname, rtype, rd);
        let b = r.client.ask(r.sut.addr(), qname, rtype, rd);
        let label = format!("{qname} {rtype} {}", if rd { "rd" } else { "nord" });
        for d in differences(&a, &b) {
            report.push(format!("{label}: {d}"));
        }
        results.push((label, a, b));
    }
    report.extend(count_differences(&r.upstream, FORWARD_COUNTS));
    let sanity = check_reference(&results, &r.upstream);
    let table = outcome_table(&results);
    assert!(
        sanity.is_empty(),
        "the reference did not behave as the scenario assumes: {sanity:?}\n{}\n--- dnsmasq log:\n{}",
        table.join("\n"),
        r.reference.log_text()
    );
    assert!(
        report.is_empty(),
        "{:?} ({}) differs from dnsmasq in {} places:\n  {}\n--- all outcomes:\n{}\n--- {} log:\n{}",
        r.sut.kind,
        r.sut.role,
        report.len(),
        report.join("\n  "),
        table.join("\n"),
        r.sut.role,
        r.sut.log_text()
    );
    // Shown with --nocapture: what both servers answered.
    eprintln!(
        "{} outcomes, {:?} vs dnsmasq, lab {}:\n{}",
        results.len(),
        r.sut.kind,
        r.lab.id,
        table.join("\n")
    );
}

/// The base of the small scenarios' configs: `hosts` as the only hosts
/// file, expanded with home.lan, and the general upstream.
fn small_config(dir: &Path, hosts: &str) -> Vec<String> {
    let path = dir.join("hosts");
    fs::write(&path, hosts).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    vec![
        "no-resolv".into(),
        "no-hosts".into(),
        format!("addn-hosts={}", path.display()),
        "domain=home.lan".into(),
        "expand-hosts".into(),
        format!("server={UPSTREAM_IP}"),
    ]
}

/// `neg-ttl`, `max-ttl` and `local-ttl` with `max-cache-ttl`: TTLs handed
/// out and what is cached, on a config without `no-negcache`.
fn ttl_config(dir: &Path) -> Vec<String> {
    let mut lines = small_config(dir, "198.18.1.10 nas\n");
    lines.extend([
        "neg-ttl=60".into(),
        "max-ttl=100".into(),
        "max-cache-ttl=200".into(),
        "local-ttl=500".into(),
        "address=/fixed.example/198.18.9.1".into(),
    ]);
    lines
}

/// What a small scenario found: every query's outcomes, and what differs.
struct Scenario {
    rig: Rig,
    results: Vec<(String, Outcome, Outcome)>,
    report: Vec<String>,
}

impl Scenario {
    /// Asks both servers `queries` (RD set) in order, then compares how
    /// often each asked the upstream for each of `counts`.
    fn run(
        lab: Lab,
        conf: fn(&Path) -> Vec<String>,
        queries: &[(&str, RecordType)],
        counts: &[(&str, RecordType)],
    ) -> Scenario {
        let rig = rig_with(lab, server_under_test(), conf);
        let mut results = vec![];
        let mut report = vec![];
        for (qname, rtype) in queries {
            let a = rig.client.ask(rig.reference.addr(), qname, *rtype, true);
            let b = rig.client.ask(rig.sut.addr(), qname, *rtype, true);
            let label = format!("{qname} {rtype}");
            for d in differences(&a, &b) {
                report.push(format!("{label}: {d}"));
            }
            results.push((label, a, b));
        }
        report.extend(count_differences(&rig.upstream, counts));
        Scenario {
            rig,
            results,
            report,
        }
    }

    fn answer(&self, label: &str) -> Option<&Answer> {
        match self.results.iter().find(|(l, _, _)| l == label) {
            Some((_, Outcome::Answer(a), _)) => Some(a),
            _ => None,
        }
    }

    /// Fails on what the reference did not do as assumed (`sanity`), then
    /// on any difference.
    fn check(&self, sanity: &[&str]) {
        let table = outcome_table(&self.results);
        assert!(
            sanity.is_empty(),
            "the reference did not behave as the scenario assumes: {sanity:?}\n{}\n--- dnsmasq log:\n{}",
            table.join("\n"),
            self.rig.reference.log_text()
        );
        assert!(
            self.report.is_empty(),
            "{:?} differs from dnsmasq in {} places:\n  {}\n--- all outcomes:\n{}\n--- log:\n{}",
            self.rig.sut.kind,
            self.report.len(),
            self.report.join("\n  "),
            table.join("\n"),
            self.rig.sut.log_text()
        );
    }
}

#[test]
fn dns_ttl_options_match_dnsmasq() {
    use RecordType::*;
    let lab = lab!("dns_ttl_options_match_dnsmasq");
    // Repeated ones come from the cache.
    let queries = [
        ("www.example.net.", A),
        ("www.example.net.", A),
        ("www.example.net.", AAAA),
        ("multi.example.net.", A),
        ("mail.example.net.", MX),
        ("txt.example.net.", TXT),
        ("txt.example.net.", TXT),
        ("nx.example.net.", A),
        ("nx.example.net.", A),
        ("nx.example.net.", MX),
        ("nx.example.net.", MX),
        ("www.example.net.", TXT),
        ("www.example.net.", TXT),
        ("txt.example.net.", A),
        ("txt.example.net.", A),
        ("txt.example.net.", AAAA),
        ("txt.example.net.", AAAA),
        ("txt.example.net.", MX),
        ("txt.example.net.", MX),
        ("nas.home.lan.", A),
        ("nas.", A),
        ("fixed.example.", A),
    ];
    let counts = [
        ("www.example.net", A),
        ("txt.example.net", TXT),
        ("nx.example.net", A),
        ("nx.example.net", MX),
        ("www.example.net", TXT),
        ("txt.example.net", A),
        ("txt.example.net", AAAA),
        ("txt.example.net", MX),
    ];
    let s = Scenario::run(lab, ttl_config, &queries, &counts);
    let ttl_of = |label: &str| s.answer(label).and_then(|a| a.ttls.values().copied().max());
    let mut sanity = vec![];
    if ttl_of("www.example.net. A") != Some(100) {
        sanity.push("max-ttl capped a relayed answer");
    }
    if ttl_of("nas.home.lan. A") != Some(500) {
        sanity.push("local-ttl, above max-ttl, on a hosts name");
    }
    if s.rig.upstream.count(REF_IP, "nx.example.net", A) != 1 {
        sanity.push("neg-ttl cached an NXDOMAIN without SOA");
    }
    s.check(&sanity);
}

/// `filter-A`: forwarded A answers lose their A records (NODATA), from the
/// cache too; hosts names keep theirs; other types pass.
fn filter_config(dir: &Path) -> Vec<String> {
    let mut lines = small_config(dir, "198.18.1.10 nas\n2001:db8:1::10 nas\n");
    lines.push("filter-A".into());
    lines
}

#[test]
fn dns_filter_a_matches_dnsmasq() {
    use RecordType::*;
    let lab = lab!("dns_filter_a_matches_dnsmasq");
    let queries = [
        ("www.example.net.", A),
        ("www.example.net.", A),
        ("www.example.net.", AAAA),
        ("multi.example.net.", A),
        ("mail.example.net.", MX),
        ("mail.example.net.", A),
        ("nx.example.net.", A),
        ("nas.home.lan.", A),
        ("nas.home.lan.", AAAA),
    ];
    let counts = [
        ("www.example.net", A),
        ("www.example.net", AAAA),
        ("mail.example.net", A),
    ];
    let s = Scenario::run(lab, filter_config, &queries, &counts);
    let mut sanity = vec![];
    match s.answer("www.example.net. A") {
        Some(a) if a.rcode == ResponseCode::NoError && a.records.is_empty() => {}
        _ => sanity.push("filter-A left a forwarded A query NODATA"),
    }
    if s.answer("www.example.net. AAAA").map(|a| a.records.len()) != Some(1) {
        sanity.push("filter-A left AAAA alone");
    }
    if s.answer("nas.home.lan. A").map(|a| a.records.len()) != Some(1) {
        sanity.push("filter-A left a hosts name alone");
    }
    s.check(&sanity);
}

/// Malformed queries over UDP: the server answers FORMERR (or REFUSED, as
/// dnsmasq does for unreadable names) or nothing, and keeps answering good
/// queries after each.
#[test]
fn dns_malformed_queries() {
    let lab = lab!("dns_malformed_queries");
    let r = rig(lab, server_under_test());
    let server = r.sut.addr();
    // Header: ID, flags (RD), QD, AN, NS, AR.
    let header = |id: u16, flags: u16, qd: u16| {
        let mut v = vec![];
        for x in [id, flags, qd, 0, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    };
    let q_nas: Vec<u8> = b"\x03nas\x04home\x03lan\x00\x00\x01\x00\x01".to_vec();
    let cat = |a: Vec<u8>, b: &[u8]| {
        let mut v = a;
        v.extend_from_slice(b);
        v
    };
    let mut long_name = vec![];
    for _ in 0..5 {
        long_name.push(63u8);
        long_name.extend_from_slice(&[b'a'; 63]);
    }
    long_name.extend_from_slice(b"\x00\x00\x01\x00\x01");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("5 bytes", vec![0x12, 0x34, 0x01, 0x00, 0x00]),
        ("header only, qdcount 1", header(0x1001, 0x0100, 1)),
        (
            "name cut mid-label",
            cat(header(0x1002, 0x0100, 1), b"\x03nas\x04ho"),
        ),
        (
            "question without type/class",
            cat(header(0x1003, 0x0100, 1), b"\x03nas\x00"),
        ),
        (
            "compression pointer to itself",
            cat(header(0x1004, 0x0100, 1), b"\xc0\x0c\x00\x01\x00\x01"),
        ),
        (
            "two pointers in a loop",
            cat(
                header(0x1005, 0x0100, 1),
                b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01",
            ),
        ),
        (
            "pointer past the end",
            cat(header(0x1006, 0x0100, 1), b"\xc0\xff\x00\x01\x00\x01"),
        ),
        ("qdcount 5000", cat(header(0x1007, 0x0100, 5000), &q_nas)),
        (
            "label length past the end",
            cat(header(0x1008, 0x0100, 1), b"\x3fnas\x00\x00\x01\x00\x01"),
        ),
        (
            "label type 01 (reserved)",
            cat(header(0x1009, 0x0100, 1), b"\x43nas\x00\x00\x01\x00\x01"),
        ),
        (
            "name over 255 octets",
            cat(header(0x100a, 0x0100, 1), &long_name),
        ),
        ("answer count with no answer", {
            let mut v = cat(header(0x100b, 0x0100, 1), &q_nas);
            v[7] = 3;
            v
        }),
        (
            "a response (QR=1) sent as a query",
            cat(header(0x100c, 0x8180, 1), &q_nas),
        ),
    ];
    let raw = &r.client.sock;
    let mut bad = vec![];
    for (what, pkt) in &cases {
        raw.send_to(pkt, server).unwrap();
        // Whatever comes back within 300 ms is this packet's reply.
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            raw.set_read_timeout(Some(left)).unwrap();
            let Ok((n, from)) = raw.recv_from(&mut buf) else {
                continue;
            };
            if from != server {
                continue;
            }
            // A reply must be an error without answers: FORMERR, or
            // REFUSED, which is what dnsmasq 2.90 sends for a question
            // whose name it cannot read (pointer loops, bad pointers).
            let rcode = if n >= 4 { buf[3] & 0x0f } else { 0xff };
            let qr = n >= 3 && buf[2] & 0x80 != 0;
            let ancount = if n >= 8 {
                u16::from_be_bytes([buf[6], buf[7]])
            } else {
                0
            };
            if !(qr && (rcode == 1 || rcode == 5) && ancount == 0) {
                bad.push(format!(
                    "{what}: replied with something other than FORMERR/REFUSED: {}",
                    hex(&buf[..n.min(48)])
                ));
            }
        }
        match r.client.ask(server, "nas.home.lan.", RecordType::A, true) {
            Outcome::Answer(a)
                if a.rcode == ResponseCode::NoError
                    && a.records.iter().any(|x| x.contains("198.18.1.10")) => {}
            other => bad.push(format!("{what}: the next good query got {other}")),
        }
    }
    let mut sut = r.sut;
    if let Some(st) = sut.proc.try_status() {
        bad.push(format!("server exited: {st}"));
    }
    assert!(
        bad.is_empty(),
        "{:?}: {}\n--- log:\n{}",
        sut.kind,
        bad.join("\n"),
        sut.log_text()
    );
}

/// The comparison itself (no root needed): each kind of difference is
/// reported, and equal outcomes give none.
#[test]
fn differences_are_all_listed() {
    let base = Answer {
        rcode: ResponseCode::NoError,
        aa: true,
        ra: true,
        tc: false,
        question: vec!["nas.home.lan. A".into()],
        records: ["nas.home.lan. A 198.18.1.10".to_string()].into(),
        authority: BTreeSet::new(),
        ttls: [("nas.home.lan. A 198.18.1.10".to_string(), 300)].into(),
    };
    let same = Outcome::Answer(base.clone());
    assert!(differences(&same, &same.clone()).is_empty());
    let mut other = base.clone();
    other.rcode = ResponseCode::NXDomain;
    other.aa = false;
    other.tc = true;
    other.question = vec!["NAS.home.lan. A".into()];
    other.records = ["nas.home.lan. A 198.18.1.11".to_string()].into();
    other.ttls = [("nas.home.lan. A 198.18.1.11".to_string(), 300)].into();
    let d = differences(&same, &Outcome::Answer(other));
    assert_eq!(d.len(), 6, "{d:?}");
    let mut ttl = base.clone();
    ttl.ttls = [("nas.home.lan. A 198.18.1.10".to_string(), 297)].into();
    assert_eq!(differences(&same, &Outcome::Answer(ttl.clone())).len(), 1);
    ttl.ttls = [("nas.home.lan. A 198.18.1.10".to_string(), 298)].into();
    assert!(differences(&same, &Outcome::Answer(ttl)).is_empty());
    assert_eq!(differences(&same, &Outcome::NoAnswer).len(), 1);
    let mut auth = base.clone();
    auth.authority = ["home.lan. SOA x 300".to_string()].into();
    assert_eq!(differences(&same, &Outcome::Answer(auth)).len(), 1);
}

// ---------------------------------------------------------------------------
// Authoritative zones

/// Each server's second address, where `auth-server` makes it authoritative.
const REF_AUTH_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const SUT_AUTH_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);

/// The shared lines of the auth scenario (each server adds its own
/// `auth-server` address and lease file). `home.lan` is the zone; the
/// leases come from a dnsmasq lease file both servers load at start.
fn auth_config(dir: &Path) -> Vec<String> {
    let hosts = dir.join("hosts");
    fs::write(
        &hosts,
        "# addn-hosts of tests/dns_differential.rs (auth)\n\
         198.18.1.10 nas\n\
         198.18.1.11 printer\n\
         198.18.1.13 excluded\n\
         198.18.3.9 faraway\n\
         192.168.77.5 lanbox\n",
    )
    .unwrap();
    fs::set_permissions(&hosts, fs::Permissions::from_mode(0o644)).unwrap();
    [
        "no-resolv".to_string(),
        "no-hosts".into(),
        format!("addn-hosts={}", hosts.display()),
        "domain=home.lan".into(),
        "expand-hosts".into(),
        format!("server={UPSTREAM_IP}"),
        "dhcp-range=198.18.1.100,198.18.1.150,12h".into(),
        "dhcp-range=198.18.2.100,198.18.2.150,12h".into(),
        // Without /32 dnsmasq excludes the whole /24 (its default length).
        "auth-zone=home.lan,198.18.1.0/24,exclude:198.18.1.13/32".into(),
        "auth-sec-servers=ns2.example.net".into(),
        format!("auth-peer={CLIENT_IP}"),
        "auth-soa=100,admin@home.lan,1800,300,604800".into(),
        "auth-ttl=300".into(),
        "host-record=router.home.lan,198.18.1.1,2001:db8::1".into(),
        "host-record=far.home.lan,198.18.3.5".into(),
        "cname=alias.home.lan,nas.home.lan".into(),
        "cname=short.home.lan,nas".into(),
        "mx-host=home.lan,mail.home.lan,10".into(),
        "srv-host=_ldap._tcp.home.lan,nas.home.lan,389,0,100".into(),
        "txt-record=info.home.lan,\"v=spf1 -all\"".into(),
        "ptr-record=_printer._tcp.home.lan,printer.home.lan".into(),
        "cache-size=0".into(),
        "all-servers".into(),
    ]
    .into()
}

/// Asked at each server's normal address and at its authoritative one.
fn auth_queries() -> Vec<(&'static str, RecordType)> {
    use RecordType::*;
    vec![
        ("home.lan.", SOA),
        ("HOME.LAN.", SOA),
        ("home.lan.", NS),
        ("home.lan.", A),
        ("home.lan.", MX),
        ("nas.home.lan.", A),
        ("NAS.Home.Lan.", AAAA),
        ("printer.home.lan.", A),
        ("excluded.home.lan.", A),
        ("faraway.home.lan.", A),
        ("laptop.home.lan.", A),
        ("laptop.home.lan.", AAAA),
        ("laptop.home.lan.", SOA),
        ("phone.home.lan.", A),
        ("router.home.lan.", A),
        ("router.home.lan.", AAAA),
        ("far.home.lan.", A),
        ("alias.home.lan.", A),
        ("alias.home.lan.", CNAME),
        ("short.home.lan.", A),
        ("_ldap._tcp.home.lan.", SRV),
        ("_tcp.home.lan.", A),
        ("info.home.lan.", TXT),
        ("_printer._tcp.home.lan.", PTR),
        ("missing.home.lan.", A),
        ("deep.nas.home.lan.", A),
        ("ns2.example.net.", A),
        ("www.example.net.", A),
        ("laptop.", A),
        ("10.1.18.198.in-addr.arpa.", PTR),
        ("100.1.18.198.in-addr.arpa.", PTR),
        ("13.1.18.198.in-addr.arpa.", PTR),
        ("5.1.18.198.in-addr.arpa.", PTR),
        ("1.18.198.in-addr.arpa.", SOA),
        ("7.1.18.198.in-addr.arpa.", NS),
        ("9.3.18.198.in-addr.arpa.", PTR),
    ]
}

/// A dig zone transfer from the client's address: (SOA first and last,
/// records as `owner type data` with the SOA serial masked), or the dig
/// output when it failed.
fn dig_axfr(outside: &Host, server: Ipv4Addr) -> Result<(bool, BTreeSet<String>), String> {
    let out = outside
        .exec(
            &[
                "dig",
                "+nocookie",
                "+tries=1",
                "+time=3",
                "-b",
                &CLIENT_IP.to_string(),
                &format!("@{server}"),
                "home.lan",
                "AXFR",
            ],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| e);
    let recs: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 5)
        .collect();
    if recs.is_empty() {
        return Err(out);
    }
    let is_soa = |f: &Vec<&str>| f[3] == "SOA";
    let soa_ends = is_soa(&recs[0]) && is_soa(&recs[recs.len() - 1]);
    let set = recs
        .iter()
        .map(|f| {
            let mut data: Vec<&str> = f[4..].to_vec();
            if f[3] == "SOA" && data.len() > 2 {
                data[2] = "<serial>";
            }
            format!(
                "{} {} {} {}",
                f[0].to_lowercase(),
                f[1],
                f[3],
                data.join(" ")
            )
        })
        .collect();
    Ok((soa_ends, set))
}

#[test]
fn dns_auth_matches_dnsmasq() {
    let lab = lab!("dns_auth_matches_dnsmasq");
    let sut_kind = server_under_test();
    fs::set_permissions(lab.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let sut_host = lab.add_client();
    sut_host.set_addr(SUT_IP, NETMASK);
    sut_host.set_addr(SUT_AUTH_IP, NETMASK);
    lab.server.set_addr(REF_AUTH_IP, NETMASK);
    let outside = lab.add_client();
    for ip in [CLIENT_IP, UPSTREAM_IP, CORP_UPSTREAM_IP] {
        outside.set_addr(ip, NETMASK);
    }
    let upstream = Upstream::start(&outside.ns);
    let client = Client::new(&outside.ns);
    let data = lab.dir().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    let shared = auth_config(&data);
    // The same leases for both: one in the zone's subnet, one outside it.
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let leases = format!(
        "{expiry} 02:00:00:00:00:01 198.18.1.100 laptop 01:02:00:00:00:00:01\n\
         {expiry} 02:00:00:00:00:02 198.18.2.100 phone *\n"
    );
    let lines_for = |role: &str, auth_ip: Ipv4Addr| {
        let dir = lab.dir().join(role);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("leases");
        fs::write(&file, &leases).unwrap();
        let mut l = shared.clone();
        l.push(format!("auth-server=ns1.home.lan,{auth_ip}"));
        l.push(format!("dhcp-leasefile={}", file.display()));
        l
    };
    let server = lab.server.clone();
    let ref_lines = lines_for("auth-reference", REF_AUTH_IP);
    let reference = DnsServer::start(
        &lab,
        "auth-reference",
        ServerKind::Dnsmasq,
        &server,
        REF_IP,
        &ref_lines,
        &client,
        "nas.home.lan.",
    );
    let sut_lines = lines_for("auth-under-test", SUT_AUTH_IP);
    let sut = DnsServer::start(
        &lab,
        "auth-under-test",
        sut_kind,
        &sut_host,
        SUT_IP,
        &sut_lines,
        &client,
        "nas.home.lan.",
    );

    let at = |ip: Ipv4Addr| SocketAddr::new(ip.into(), 53);
    let mut results = vec![];
    let mut report = vec![];
    for (service, ref_ip, sut_ip) in [
        ("normal", REF_IP, SUT_IP),
        ("auth", REF_AUTH_IP, SUT_AUTH_IP),
    ] {
        for (qname, rtype) in auth_queries() {
            let a = client.ask(at(ref_ip), qname, rtype, true);
            let b = client.ask(at(sut_ip), qname, rtype, true);
            let label = format!("{service} {qname} {rtype}");
            for d in differences(&a, &b) {
                report.push(format!("{label}: {d}"));
            }
            results.push((label, a, b));
        }
        match (dig_axfr(&outside, ref_ip), dig_axfr(&outside, sut_ip)) {
            (Ok((ref_ends, a)), Ok((sut_ends, b))) => {
                if !(ref_ends && sut_ends) {
                    report.push(format!(
                        "{service} AXFR: SOA first and last: dnsmasq {ref_ends}, under test {sut_ends}"
                    ));
                }
                for r in a.difference(&b) {
                    report.push(format!("{service} AXFR: missing {r}"));
                }
                for r in b.difference(&a) {
                    report.push(format!("{service} AXFR: extra {r}"));
                }
                results.push((
                    format!("{service} AXFR ({} records)", a.len()),
                    Outcome::NoAnswer,
                    Outcome::NoAnswer,
                ));
            }
            (a, b) => report.push(format!(
                "{service} AXFR failed: dnsmasq {a:?}\nunder test {b:?}"
            )),
        }
    }

    // The scenario means something only if dnsmasq did these.
    let find = |label: &str| {
        results
            .iter()
            .find(|(l, _, _)| l == label)
            .map(|(_, r, _)| r.clone())
            .unwrap_or(Outcome::NoAnswer)
    };
    let mut sanity = vec![];
    let mut want = |label: &str, ok: &dyn Fn(&Answer) -> bool| {
        if !matches!(find(label), Outcome::Answer(a) if ok(&a)) {
            sanity.push(label.to_string());
        }
    };
    want("auth home.lan. SOA", &|a| {
        a.aa && !a.ra && a.records.len() == 1
    });
    want("auth laptop.home.lan. A", &|a| {
        a.aa && a.records.iter().any(|r| r.contains("198.18.1.100"))
    });
    want("auth phone.home.lan. A", &|a| {
        a.records.is_empty() && a.rcode == ResponseCode::NoError
    });
    want("auth missing.home.lan. A", &|a| {
        a.rcode == ResponseCode::NXDomain && a.authority.iter().any(|r| r.contains(" SOA "))
    });
    want("auth www.example.net. A", &|a| {
        a.rcode == ResponseCode::Refused
    });
    want("normal phone.home.lan. A", &|a| {
        !a.aa && a.ra && a.records.iter().any(|r| r.contains("198.18.2.100"))
    });
    want("normal www.example.net. A", &|a| {
        a.records.iter().any(|r| r.contains("198.18.5.1"))
    });
    let table = outcome_table(&results);
    assert!(
        sanity.is_empty(),
        "the reference did not behave as the scenario assumes: {sanity:?}\n{}\n--- dnsmasq log:\n{}",
        table.join("\n"),
        reference.log_text()
    );
    assert!(
        report.is_empty(),
        "{:?} differs from dnsmasq in {} places:\n  {}\n--- all outcomes:\n{}\n--- log:\n{}",
        sut.kind,
        report.len(),
        report.join("\n  "),
        table.join("\n"),
        sut.log_text()
    );
    eprintln!(
        "{} outcomes, {:?} vs dnsmasq, lab {}:\n{}",
        results.len(),
        sut.kind,
        lab.id,
        table.join("\n")
    );
    drop((reference, sut, upstream));
}
