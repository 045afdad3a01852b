//! Memory and file descriptors under floods, measured on the real server
//! in a lab namespace (198.18.0.0/15) from /proc/PID/status (VmRSS) and
//! /proc/PID/fd: before, between two equal floods, and after. The first
//! flood fills what is meant to fill (the cache, the lease table); the
//! second, just as large and all new names or clients, must add little,
//! because every table it could grow is capped.
//! Run as root; see tests/README.md.

mod netns;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use netns::{load_generator, read_acks, wait_for, Lab, Proc, ServerConf, NETMASK, SERVER_IP};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);
const GENERATOR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const MIB: u64 = 1024 * 1024;
/// The absolute cap for both floods. What may legitimately fill: the DNS
/// cache (10,000 RRsets of a few hundred bytes: ~5 MiB), the kept replies
/// (2 x 8192 of at most `edns-packet-max` bytes: under 21 MiB, ~2 MiB
/// here), 150 pending forwards, sled's 4 MiB cache, 1000 leases (well
/// under 1 MiB), on a debug build that starts near 12 MiB. 64 MiB leaves
/// room for allocator slack and nothing for a table that grows per name
/// or per client.
const RSS_CAP: u64 = 64 * MIB;

macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

fn udp_in_ns(ns: &str, addr: SocketAddr) -> UdpSocket {
    netns::in_ns(ns, move || {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        // Room for a burst of replies while the flood is being sent.
        let sock = socket2::SockRef::from(&s);
        let _ = sock.set_recv_buffer_size(8 << 20);
        s
    })
}

/// (VmRSS in bytes, open fds) of `pid`.
fn usage(pid: u32) -> (u64, usize) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (kb * 1024, fds)
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("name {s}: {e}"))
}

// ---------------------------------------------------------------------------
// DNS: a flood of distinct names

/// Answers A queries for any name with one address, except names that
/// start with `silent-`, which it never answers: those stay pending in
/// the server until they time out, so `dns-forward-max` bites.
struct Upstream {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(ns: &str) -> Upstream {
        let sock = udp_in_ns(ns, SocketAddr::new(UPSTREAM_IP.into(), 53));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (stop2, answered2) = (stop.clone(), answered.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries.first().cloned() else {
                    continue;
                };
                if query.name().to_ascii().starts_with("silent-") {
                    continue;
                }
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.metadata.recursion_desired = true;
                r.metadata.recursion_available = true;
                r.queries.push(query.clone());
                r.answers.push(Record::from_rdata(
                    query.name().clone(),
                    3600,
                    RData::A(A(Ipv4Addr::new(198, 18, 9, 9))),
                ));
                if let Ok(b) = r.to_vec() {
                    let _ = sock.send_to(&b, from);
                    answered2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Upstream {
            stop,
            answered,
            thread: Some(thread),
        }
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

#[derive(Debug, Default)]
struct FloodResult {
    /// Phase 1: never-answered names sent at once, and how many of them
    /// the server refused because `dns-forward-max` were pending.
    silent_sent: usize,
    silent_refused: usize,
    /// Phase 2: distinct names the upstream answers.
    sent: usize,
    answered: usize,
    refused: usize,
}

fn query_for(qname: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.metadata.id = id;
    m.add_query(Query::query(name(qname), RecordType::A));
    m.to_vec().unwrap()
}

/// Reads what has arrived; (replies, of which REFUSED).
fn drain(sock: &UdpSocket, wait: Duration) -> (usize, usize) {
    let (mut got, mut refused) = (0, 0);
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(wait)).unwrap();
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        if n >= 4 {
            got += 1;
            if buf[3] & 0x0f == ResponseCode::Refused.low() {
                refused += 1;
            }
        }
        sock.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
    }
    (got, refused)
}

/// One flood under `prefix`: first [`SILENT`] names the upstream never
/// answers, all at once (the forward table fills and the rest are
/// refused), then, once those have timed out, `count` distinct names in
/// windows of [`WINDOW`] queries, so that every one is forwarded and its
/// answer cached.
fn flood(sock: &UdpSocket, server: SocketAddr, prefix: &str, count: usize) -> FloodResult {
    let mut r = FloodResult::default();
    for i in 0..SILENT {
        let q = query_for(&format!("silent-{prefix}-{i}.flood.test."), i as u16);
        sock.send_to(&q, server).unwrap();
        r.silent_sent += 1;
    }
    // The server times them out after 1 s, answering nothing.
    let end = Instant::now() + Duration::from_millis(1300);
    while Instant::now() < end {
        r.silent_refused += drain(sock, Duration::from_millis(50)).1;
    }
    let mut i = 0;
    while i < count {
        let n = WINDOW.min(count - i);
        for k in i..i + n {
            let q = query_for(&format!("n-{prefix}-{k}.flood.test."), k as u16);
            sock.send_to(&q, server).unwrap();
        }
        r.sent += n;
        i += n;
        // Until the window's answers are in, or 500 ms (lost ones).
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_millis(500);
        while got < n && Instant::now() < deadline {
            let (g, refused) = drain(sock, Duration::from_millis(20));
            got += g;
            r.answered += g;
            r.refused += refused;
        }
    }
    r.answered += drain(sock, Duration::from_millis(200)).0;
    r
}

/// Never-answered names per flood: more than `dns-forward-max` (150).
const SILENT: usize = 600;
const WINDOW: usize = 100;

#[test]
fn dns_memory_and_fds_stay_bounded_under_a_flood_of_distinct_names() {
    let lab = lab!("dns_memory_and_fds_stay_bounded_under_a_flood_of_distinct_names");
    let outside = lab.add_client();
    outside.set_addr(CLIENT_IP, NETMASK);
    outside.set_addr(UPSTREAM_IP, NETMASK);
    let upstream = Upstream::start(&outside.ns);
    // cache-size at dnsmasq's largest allowed value and the default
    // dns-forward-max (150): each flood reaches both.
    let conf = ServerConf {
        lines: vec![
            "no-resolv".into(),
            "no-hosts".into(),
            format!("server={UPSTREAM_IP}"),
            "cache-size=10000".into(),
            "host-record=ready.lab.test,198.18.7.1".into(),
        ],
    };
    let srv = lab.start_server(&conf);
    let pid = srv.pid().expect("server running");
    let sock = udp_in_ns(&outside.ns, SocketAddr::new(CLIENT_IP.into(), 0));
    let server = SocketAddr::new(SERVER_IP.into(), 53);
    wait_for(Duration::from_secs(10), "a first DNS answer", || {
        let mut m = Message::query();
        m.add_query(Query::query(name("ready.lab.test."), RecordType::A));
        sock.send_to(&m.to_vec().unwrap(), server).ok()?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .ok()?;
        let mut b = [0u8; 512];
        sock.recv_from(&mut b).ok().map(|_| ())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", srv.log_tail(40)));

    // Twice the cache each, so each flood turns it over.
    const N: usize = 20_000;
    let started = Instant::now();
    let (rss0, fds0) = usage(pid);
    let first = flood(&sock, server, "a", N);
    let (rss1, fds1) = usage(pid);
    let second = flood(&sock, server, "b", N);
    let (rss2, fds2) = usage(pid);
    let third = flood(&sock, server, "c", N);
    let (rss3, fds3) = usage(pid);
    let took = started.elapsed();
    eprintln!(
        "DNS flood of {N} distinct names x3 in {took:?}: RSS {} -> {} -> {} -> {} KiB, fds {fds0} -> {fds1} -> {fds2} -> {fds3}; \
         answers {first:?} {second:?} {third:?}; upstream answered {}",
        rss0 / 1024,
        rss1 / 1024,
        rss2 / 1024,
        rss3 / 1024,
        upstream.answered.load(Ordering::Relaxed)
    );
    // The floods did reach the limits: the silent names filled the
    // forward table, so others of them were refused; the others were
    // answered (and cached). How many were refused depends on how many of
    // the first had timed out (1 s) while the rest still arrived, which a
    // loaded machine stretches (330 of 600 seen under CI load, 450 when
    // quiet), so the check is that the limit refused some, and none
    // before the table's 150 places were taken.
    for f in [&first, &second, &third] {
        assert_eq!(f.sent, N);
        assert!(
            f.silent_refused > 0 && f.silent_refused <= SILENT - 150,
            "dns-forward-max not reached, or not honoured: {f:?}"
        );
        assert!(
            f.answered - f.refused >= N * 9 / 10,
            "too few answers: {f:?}"
        );
    }
    // Enough answers to fill the cache twice over.
    assert!(
        upstream.answered.load(Ordering::Relaxed) >= 20_000,
        "cache never filled"
    );
    let grow1 = rss1.saturating_sub(rss0);
    let grow2 = rss2.saturating_sub(rss1);
    let grow3 = rss3.saturating_sub(rss2);
    // 10,000 cache entries and 8192 kept replies of ~100 bytes, plus
    // allocator slack, are a few MiB; the later floods evict instead.
    // (Measured, debug build: +8 MiB, +2.7 MiB, +0.1 MiB; with the cache
    // unbounded, +15, +15 and +20 MiB.)
    assert!(
        grow2 <= grow1 / 2 + 2 * MIB && grow3 <= grow1 / 2 + 2 * MIB,
        "RSS keeps growing: +{} KiB, +{} KiB, +{} KiB",
        grow1 / 1024,
        grow2 / 1024,
        grow3 / 1024
    );
    assert!(rss3 < RSS_CAP, "RSS {} MiB", rss3 / MIB);
    // Nothing opens a descriptor per query.
    assert!(fds3 <= fds0 + 4, "fds {fds0} -> {fds3}");
    // And it still answers.
    let out = outside
        .exec(
            &[
                "dig",
                "+time=2",
                "+tries=1",
                "+short",
                &format!("@{SERVER_IP}"),
                "ready.lab.test",
            ],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(out.trim(), "198.18.7.1");
    drop(srv);
    drop(upstream);
}

// ---------------------------------------------------------------------------
// DHCP: a flood of distinct clients

/// Runs the load generator for `clients` new MACs (seed `seed`); returns
/// how many ACKs it got.
fn dhcp_flood(lab: &Lab, host: &netns::Host, seed: u32, clients: u32, window: u32) -> usize {
    let acks = lab.dir().join(format!("acks-{seed}.txt"));
    let log = lab.dir().join(format!("generator-{seed}.log"));
    let generator = load_generator();
    let (server, bind) = (SERVER_IP.to_string(), GENERATOR_IP.to_string());
    let (seed_s, clients_s, window_s) = (seed.to_string(), clients.to_string(), window.to_string());
    let acks_s = acks.display().to_string();
    let mut gen = Proc::spawn(
        "dhcp_load",
        &host.ns,
        &[
            generator.to_str().expect("utf-8 path"),
            "--server",
            &server,
            "--bind",
            &bind,
            "--clients",
            &clients_s,
            "--window",
            &window_s,
            "--seed",
            &seed_s,
            "--acks",
            &acks_s,
            "--max-secs",
            "25",
        ],
        &log,
    );
    let st = gen.wait_timeout(Duration::from_secs(40));
    assert!(st.is_some(), "load generator did not finish");
    read_acks(&acks).len()
}

#[test]
fn dhcp_memory_and_fds_stay_bounded_under_a_flood_of_distinct_clients() {
    let lab = lab!("dhcp_memory_and_fds_stay_bounded_under_a_flood_of_distinct_clients");
    // A relay subnet of 4000 addresses and a lease cap of 1000: the first
    // flood fills the cap, the second (as many new clients) meets it.
    const CAP: usize = 1000;
    let conf = ServerConf::base()
        .line("dhcp-range=198.18.0.10,198.18.15.250,255.255.240.0,12h")
        .line(format!("dhcp-lease-max={CAP}"))
        .line("quiet-dhcp");
    let srv = lab.start_server(&conf);
    let pid = srv.pid().expect("server running");
    let host = lab.add_client();
    host.set_addr(GENERATOR_IP, NETMASK);

    let started = Instant::now();
    let (rss0, fds0) = usage(pid);
    let acked1 = dhcp_flood(&lab, &host, 1, CAP as u32, 64);
    let (rss1, fds1) = usage(pid);
    // New clients the table has no room for: each tries three times, so a
    // wide window keeps this short.
    let acked2 = dhcp_flood(&lab, &host, 2, CAP as u32, 500);
    let (rss2, fds2) = usage(pid);
    let took = started.elapsed();
    eprintln!(
        "DHCP floods of {CAP} distinct clients x2 in {took:?}: ACKs {acked1}, {acked2}; RSS {} -> {} -> {} KiB, fds {fds0} -> {fds1} -> {fds2}",
        rss0 / 1024,
        rss1 / 1024,
        rss2 / 1024
    );
    assert!(acked1 >= CAP * 9 / 10, "first flood: {acked1} ACKs");
    assert!(
        acked1 + acked2 <= CAP,
        "dhcp-lease-max exceeded: {acked1} + {acked2}"
    );
    let leases = srv.wait_leases("the lease file to catch up", |l| l.len() >= acked1);
    assert!(leases.len() <= CAP, "{} leases", leases.len());
    let grow1 = rss1.saturating_sub(rss0);
    let grow2 = rss2.saturating_sub(rss1);
    assert!(
        grow2 <= grow1 / 2 + 2 * MIB,
        "RSS grows with refused clients: +{} KiB then +{} KiB",
        grow1 / 1024,
        grow2 / 1024
    );
    assert!(rss2 < RSS_CAP, "RSS {} MiB", rss2 / MIB);
    assert!(fds2 <= fds0 + 4, "fds {fds0} -> {fds2}");
}
