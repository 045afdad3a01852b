//! DNSpooq (CVE-2020-25686) against the real server in network namespaces
//! (198.18.0.0/15): a LAN host that floods the server with one question
//! must not get many upstream queries pending, each a target for blind
//! spoofed answers. Run as root; see tests/README.md.
//!
//! - `identical_questions_are_forwarded_once*`: 100 identical questions
//!   from 100 client ports reach a silent upstream as at most one query
//!   (twinmasq, and real dnsmasq 2.90 as the reference).
//! - `forwarded_questions_leave_from_many_ports*`: 60 distinct forwarded
//!   questions leave from at least 50 distinct source ports.
//! - `query_port_*`, `source_ports_follow_*`: `query-port`, `min-port` and
//!   `max-port` as dnsmasq has them.
//! - `spoofed_answer_burst_does_not_poison_the_cache`: while 100 identical
//!   questions wait on a silent upstream, an attacker on the LAN probes the
//!   server's UDP ports (a port that answers no ICMP "unreachable" is open
//!   to it), then fires 30,000 forged answers (6.6.6.6, TTL 86400) with
//!   random ids from the upstream's address and port, at the open ports it
//!   found, else at random ports. No client, then or later, gets 6.6.6.6.

mod netns;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;

use netns::{in_ns, udp_in_ns, wait_for, Host, Lab, Proc, ServerKind, NETMASK, SERVER_IP};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);
const REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 1);
const EVIL: Ipv4Addr = Ipv4Addr::new(6, 6, 6, 6);
const START_TIMEOUT: Duration = Duration::from_secs(10);
const CMD: Duration = Duration::from_secs(15);

macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("name {s}: {e}"))
}

fn query(id: u16, qname: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), RecordType::A));
    m.to_vec().unwrap()
}

/// An answer to `qname` (exactly as given, letter case included) with id
/// `id`: one A record.
fn answer(qname: &Name, id: u16, ip: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut r = Message::response(id, OpCode::Query);
    r.metadata.recursion_desired = true;
    r.metadata.recursion_available = true;
    r.queries.push(Query::query(qname.clone(), RecordType::A));
    r.answers
        .push(Record::from_rdata(qname.clone(), ttl, RData::A(A(ip))));
    r.to_vec().unwrap()
}

fn a_records(bytes: &[u8]) -> Vec<Ipv4Addr> {
    let Ok(m) = Message::from_vec(bytes) else {
        return vec![];
    };
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The server

struct DnsServer {
    proc: Proc,
    log: PathBuf,
}

impl DnsServer {
    /// Starts `kind` on the lab's server host with `server=UPSTREAM_IP` and
    /// waits until `prober` gets an answer from local data.
    fn start(lab: &Lab, kind: ServerKind, prober: &Host, extra: &[&str]) -> DnsServer {
        let dir = lab.dir().join(format!("{kind:?}"));
        fs::create_dir_all(&dir).unwrap();
        // dnsmasq drops privileges before reading files.
        fs::set_permissions(lab.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let mut lines = vec![
            "no-resolv".to_string(),
            "no-hosts".to_string(),
            format!("server={UPSTREAM_IP}"),
            "host-record=probe.lab.test,198.18.7.9".to_string(),
        ];
        lines.extend(extra.iter().map(|s| s.to_string()));
        let conf = dir.join("dnsmasq.conf");
        fs::write(&conf, lines.join("\n") + "\n").unwrap();
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
            ServerKind::Dnsmasq => args.push("--log-facility=-".into()),
            ServerKind::Twinmasq => args.push(p("--lease-db", &dir.join("db"))),
        }
        fs::write(&log, format!("===== {}\n", args.join(" "))).unwrap();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = lab.server.clone();
        let mut proc = Proc::spawn(&format!("{kind:?}"), &server.ns, &argv, &log);
        let sock = udp_in_ns(&prober.ns, SocketAddr::new(CLIENT_IP.into(), 0));
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let to = SocketAddr::new(SERVER_IP.into(), 53);
        let ready = wait_for(START_TIMEOUT, "a first answer", || {
            if let Some(st) = proc.try_status() {
                return Some(Err(format!("exited during start: {st}")));
            }
            sock.send_to(&query(1, "probe.lab.test."), to).ok()?;
            let mut buf = [0u8; 512];
            sock.recv_from(&mut buf).ok().map(|_| Ok(()))
        });
        if let Err(e) = ready.and_then(|r| r) {
            panic!(
                "{kind:?} did not answer on {to}: {e}\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        DnsServer { proc, log }
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// The upstream: records every query, answers only when told to

#[derive(Debug, Clone)]
struct Seen {
    port: u16,
    qname: Name,
}

struct Upstream {
    sock: UdpSocket,
    seen: Arc<Mutex<Vec<Seen>>>,
    answering: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(host: &Host) -> Upstream {
        let sock = udp_in_ns(&host.ns, SocketAddr::new(UPSTREAM_IP.into(), 53));
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answering = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (rx, seen2, answering2, stop2) = (
            sock.try_clone().unwrap(),
            seen.clone(),
            answering.clone(),
            stop.clone(),
        );
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = rx.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(qname) = q.queries.first().map(|x| x.name().clone()) else {
                    continue;
                };
                seen2.lock().unwrap().push(Seen {
                    port: from.port(),
                    qname: qname.clone(),
                });
                if answering2.load(Ordering::Relaxed) {
                    // An honest server: the question echoed as asked.
                    let _ = rx.send_to(&answer(&qname, q.metadata.id, REAL, 300), from);
                }
            }
        });
        Upstream {
            sock,
            seen,
            answering,
            stop,
            thread: Some(thread),
        }
    }

    /// The queries seen so far for `qname` (any letter case).
    fn asked(&self, qname: &str) -> Vec<Seen> {
        let want = name(qname);
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.qname == want)
            .cloned()
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A lab with the server host, a LAN client at [`CLIENT_IP`] and an
/// upstream host at [`UPSTREAM_IP`].
fn setup(lab: &Lab) -> (Host, Host) {
    let client = lab.add_client();
    client.set_addr(CLIENT_IP, NETMASK);
    let outside = lab.add_client();
    outside.set_addr(UPSTREAM_IP, NETMASK);
    (client, outside)
}

/// `n` client sockets in `host`'s namespace, each on its own port.
fn client_sockets(host: &Host, n: usize) -> Vec<UdpSocket> {
    in_ns(&host.ns, move || {
        (0..n)
            .map(|_| {
                let s = UdpSocket::bind(SocketAddr::new(CLIENT_IP.into(), 0)).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect()
    })
}

/// Every datagram waiting on `socks`: (socket index, bytes).
fn drain(socks: &[UdpSocket]) -> Vec<(usize, Vec<u8>)> {
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    for (i, s) in socks.iter().enumerate() {
        while let Ok(n) = s.recv(&mut buf) {
            out.push((i, buf[..n].to_vec()));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Identical questions

fn identical_questions(test: &str, kind: ServerKind) {
    let lab = lab!(test);
    let (client, outside) = setup(&lab);
    let upstream = Upstream::start(&outside);
    let sut = DnsServer::start(&lab, kind, &client, &[]);
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    let socks = client_sockets(&client, 100);
    let mut rng = rand::rng();
    for s in &socks {
        s.send_to(&query(rng.random(), "same.example.net."), to)
            .unwrap();
    }
    // The server has had time to forward everything it was going to (its
    // upstream timeout is longer than this).
    thread::sleep(Duration::from_millis(700));
    let asked = upstream.asked("same.example.net.");
    eprintln!(
        "{kind:?}: 100 identical questions from 100 ports, the upstream saw {} queries",
        asked.len()
    );
    assert!(!asked.is_empty(), "never forwarded\n{}", sut.log_text());
    assert!(
        asked.len() <= 1,
        "{kind:?}: 100 identical questions reached the upstream as {} queries",
        asked.len()
    );
}

#[test]
fn identical_questions_are_forwarded_once() {
    identical_questions(
        "identical_questions_are_forwarded_once",
        ServerKind::Twinmasq,
    );
}

/// The reference: dnsmasq ≥ 2.83 attaches later clients to the pending
/// forward (its frec_src list).
#[test]
fn identical_questions_are_forwarded_once_by_dnsmasq_too() {
    identical_questions(
        "identical_questions_are_forwarded_once_by_dnsmasq_too",
        ServerKind::Dnsmasq,
    );
}

// ---------------------------------------------------------------------------
// Source ports

fn many_ports(test: &str, kind: ServerKind) {
    let lab = lab!(test);
    let (client, outside) = setup(&lab);
    let upstream = Upstream::start(&outside);
    let sut = DnsServer::start(&lab, kind, &client, &[]);
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    let socks = client_sockets(&client, 1);
    for i in 0..60u16 {
        socks[0]
            .send_to(&query(i, &format!("q{i}.ports.example.net.")), to)
            .unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    let seen = wait_for(Duration::from_secs(3), "60 forwarded questions", || {
        let seen: Vec<Seen> = upstream
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                s.qname
                    .to_lowercase()
                    .to_ascii()
                    .ends_with(".ports.example.net.")
            })
            .cloned()
            .collect();
        (seen.len() >= 60).then_some(seen)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", sut.log_text()));
    let ports: BTreeSet<u16> = seen.iter().map(|s| s.port).collect();
    eprintln!(
        "{kind:?}: 60 forwarded questions left from {} distinct source ports",
        ports.len()
    );
    assert!(
        ports.len() >= 50,
        "{kind:?}: 60 forwarded questions left from only {} source ports: {ports:?}",
        ports.len()
    );
}

#[test]
fn forwarded_questions_leave_from_many_ports() {
    many_ports(
        "forwarded_questions_leave_from_many_ports",
        ServerKind::Twinmasq,
    );
}

#[test]
fn forwarded_questions_leave_from_many_ports_in_dnsmasq_too() {
    many_ports(
        "forwarded_questions_leave_from_many_ports_in_dnsmasq_too",
        ServerKind::Dnsmasq,
    );
}

/// Asks `n` distinct names with `extra` config lines and an answering
/// upstream: the source ports the upstream saw; every question answered.
fn ports_with(test: &str, extra: &[&str], n: u16) -> Option<Vec<u16>> {
    let lab = Lab::new(test)?;
    let (client, outside) = setup(&lab);
    let upstream = Upstream::start(&outside);
    upstream.answering.store(true, Ordering::Relaxed);
    let sut = DnsServer::start(&lab, ServerKind::Twinmasq, &client, extra);
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    let socks = client_sockets(&client, 1);
    for i in 0..n {
        socks[0]
            .send_to(&query(i, &format!("p{i}.Ports.Example.net.")), to)
            .unwrap();
    }
    let mut answered = BTreeSet::new();
    wait_for(Duration::from_secs(3), "every answer", || {
        for (_, r) in drain(&socks) {
            if a_records(&r) == vec![REAL] {
                answered.insert(u16::from_be_bytes([r[0], r[1]]));
            }
        }
        (answered.len() == usize::from(n)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {answered:?}\n{}", sut.log_text()));
    let seen = upstream.seen.lock().unwrap().clone();
    Some(seen.iter().map(|s| s.port).collect())
}

#[test]
fn query_port_sends_every_query_from_that_port() {
    let Some(ports) = ports_with(
        "query_port_sends_every_query_from_that_port",
        &["query-port=5353"],
        10,
    ) else {
        return;
    };
    assert!(
        ports.len() >= 10 && ports.iter().all(|p| *p == 5353),
        "{ports:?}"
    );
}

#[test]
fn source_ports_follow_min_port_and_max_port() {
    let Some(ports) = ports_with(
        "source_ports_follow_min_port_and_max_port",
        &["min-port=40000", "max-port=40099"],
        20,
    ) else {
        return;
    };
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert!(
        ports.iter().all(|p| (40000..=40099).contains(p)) && distinct.len() >= 10,
        "{ports:?}"
    );
}

// ---------------------------------------------------------------------------
// The spoofing attack

/// The server's UDP ports other than its DNS and DHCP ones, from
/// /proc/PID/net/udp (its namespace), whatever address they are bound to.
fn udp_ports(pid: u32) -> Vec<u16> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap();
    let mut ports: Vec<u16> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            let (_, port) = local.split_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        // DNS and DHCP: nothing an upstream answer goes to.
        .filter(|p| *p != 53 && *p != 67)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// What a LAN attacker learns by probing: of `candidates`, the ports of
/// the server that take a datagram from the attacker's own address
/// without an ICMP "port unreachable". Probing only the ports the server
/// has open gives the result of a full scan (every other port answers
/// ICMP), quickly.
fn probe_open_ports(host: &Host, candidates: &[u16]) -> Vec<u16> {
    let candidates = candidates.to_vec();
    in_ns(&host.ns, move || {
        let socks: Vec<(u16, UdpSocket)> = candidates
            .iter()
            .map(|port| {
                let s = UdpSocket::bind(SocketAddr::new(CLIENT_IP.into(), 0)).unwrap();
                s.connect(SocketAddr::new(SERVER_IP.into(), *port)).unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.send(b"junk");
                (*port, s)
            })
            .collect();
        thread::sleep(Duration::from_millis(150));
        let mut buf = [0u8; 64];
        socks
            .into_iter()
            .filter(|(_, s)| {
                !matches!(s.recv(&mut buf), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
            })
            .map(|(p, _)| p)
            .collect()
    })
}

#[test]
fn spoofed_answer_burst_does_not_poison_the_cache() {
    let lab = lab!("spoofed_answer_burst_does_not_poison_the_cache");
    let (client, outside) = setup(&lab);
    // No ICMP rate limit towards the prober: it sees every closed port.
    lab.server
        .exec(&["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"], CMD)
        .unwrap();
    let range = lab
        .server
        .exec(&["cat", "/proc/sys/net/ipv4/ip_local_port_range"], CMD)
        .unwrap();
    let range: Vec<u16> = range
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let (lo, hi) = (range[0], range[1]);
    let upstream = Upstream::start(&outside);
    let sut = DnsServer::start(&lab, ServerKind::Twinmasq, &client, &[]);
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    let qname = "bank.example.net.";

    // Many identical questions pending on the silent upstream.
    let socks = client_sockets(&client, 100);
    let mut rng = rand::rng();
    for s in &socks {
        s.send_to(&query(rng.random(), qname), to).unwrap();
    }
    wait_for(Duration::from_secs(1), "the forwarded question", || {
        (!upstream.asked(qname).is_empty()).then_some(())
    })
    .unwrap();
    let started = Instant::now();
    let open = probe_open_ports(&client, &udp_ports(sut.pid()));
    // The burst: right address and port, the question as anyone would
    // write it, random ids, at the open ports found or at random ports.
    let forged_from = upstream.sock.try_clone().unwrap();
    let mut forged = answer(&name(qname), 0, EVIL, 86_400);
    let mut sent = 0;
    for _ in 0..30_000 {
        let port = if open.is_empty() {
            rng.random_range(lo..=hi)
        } else {
            open[rng.random_range(0..open.len())]
        };
        forged[..2].copy_from_slice(&rng.random::<u16>().to_be_bytes());
        if forged_from
            .send_to(&forged, SocketAddr::new(SERVER_IP.into(), port))
            .is_ok()
        {
            sent += 1;
        }
    }
    let burst = started.elapsed();
    thread::sleep(Duration::from_millis(200));
    let replies = drain(&socks);
    let poisoned_replies = replies
        .iter()
        .filter(|(_, r)| a_records(r).contains(&EVIL))
        .count();

    // Later: the upstream answers now, the pending forward has timed out,
    // and a fresh client asks.
    upstream.answering.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(1200));
    let later = client_sockets(&client, 1);
    let got = wait_for(
        Duration::from_secs(4),
        "an answer to the later query",
        || {
            later[0].send_to(&query(0x4242, qname), to).ok()?;
            thread::sleep(Duration::from_millis(300));
            drain(&later).into_iter().map(|(_, r)| r).next()
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", sut.log_text()));
    let later_answer = a_records(&got);
    eprintln!(
        "twinmasq: {} identical questions pending; ports open to a LAN prober: {open:?}; \
         {sent} forged answers in {burst:?}; replies with {EVIL} meanwhile: {poisoned_replies}; \
         the later query got {later_answer:?}",
        socks.len()
    );
    assert_eq!(
        poisoned_replies, 0,
        "{poisoned_replies} waiting clients got the forged {EVIL}"
    );
    assert_eq!(
        later_answer,
        vec![REAL],
        "the later query was answered {later_answer:?}: the cache was poisoned"
    );
    drop(upstream);
    drop(sut);
}
