//! Hostile DNS clients and spoofed upstream answers, against the real
//! server in network namespaces (198.18.0.0/15), with real sockets: `dig`
//! where a real client fits, the test's own sockets for hostile traffic.
//! Run as root; see tests/README.md.
//!
//! - `local_service_scope_*`: with no interface option only attached
//!   subnets are answered (UDP and TCP), as real dnsmasq 2.90 does with
//!   `local-service` (which twinmasq applies by default); a routed host
//!   behind a router namespace gets nothing.
//! - `response_size_*`: UDP replies stay within 512 bytes without EDNS and
//!   within min(offer, `edns-packet-max`) with it; TC when cut; a local
//!   ANY gets one RRset over UDP and everything over TCP.
//! - `tcp_connection_limit_*`: `max-tcp-connections`, the idle timeout
//!   against a slowloris client, and the server's fd count meanwhile.
//! - `tcp_accept_survives_descriptor_exhaustion`: out of descriptors, the
//!   server does not spin on its listen backlog.
//! - `spoofed_upstream_answers_*`: forged answers (wrong id, wrong
//!   question, wrong source address or port) to the server's upstream
//!   port while the real upstream answers slowly; the port is the
//!   query's own, connected to the upstream, so the kernel drops the
//!   forgeries from elsewhere.

mod netns;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use netns::{in_ns, udp_in_ns, wait_for, Host, Lab, Proc, ServerKind, NETMASK, SERVER_IP};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const REF_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const PLAIN_REF_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
const ROUTER_LAN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const ROUTER_FAR_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
const FAR_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);
const SPOOF_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 66);
const METRICS_PORT: u16 = 9153;
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

// ---------------------------------------------------------------------------
// Sockets inside a namespace

fn tcp_in_ns(ns: &str, to: SocketAddr) -> io::Result<TcpStream> {
    in_ns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(3))
    })
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("name {s}: {e}"))
}

fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m
}

/// One UDP exchange: the raw reply (with our id, from `server`), or None
/// after `timeout`.
fn ask_udp(
    sock: &UdpSocket,
    server: SocketAddr,
    q: &Message,
    timeout: Duration,
) -> Option<Vec<u8>> {
    sock.send_to(&q.to_vec().unwrap(), server).unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if from == server && n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == q.metadata.id {
            return Some(buf[..n].to_vec());
        }
    }
}

/// One query over an open TCP connection: Ok(Some(reply)), Ok(None) when
/// the server closed it, Err on a timeout or reset.
fn ask_tcp(s: &mut TcpStream, q: &Message, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
    let bytes = q.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.set_read_timeout(Some(timeout))?;
    s.write_all(&framed)?;
    let mut len = [0u8; 2];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply)?;
    Ok(Some(reply))
}

/// Waits until the peer closes `s` (EOF or reset); how long that took, or
/// None if it stayed open for `timeout`.
fn wait_closed(s: &mut TcpStream, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// `dig` in `host`'s namespace: its output whether or not it got an
/// answer (it exits 9 when nothing came back).
fn dig(host: &Host, args: &[&str]) -> String {
    let mut full = vec!["dig", "+time=2", "+tries=1"];
    full.extend_from_slice(args);
    host.exec(&full, CMD).unwrap_or_else(|e| e)
}

// ---------------------------------------------------------------------------
// The server

struct DnsServer {
    kind: ServerKind,
    proc: Proc,
    log: PathBuf,
}

impl DnsServer {
    /// Starts `kind` in `host`'s namespace with exactly `lines` (no
    /// `interface=` is added) and waits until `prober` gets an answer for
    /// `probe` from the host's address.
    fn start(
        lab: &Lab,
        role: &str,
        kind: ServerKind,
        host: &Host,
        lines: &[String],
        prober: &Host,
        probe: &str,
    ) -> DnsServer {
        let dir = lab.dir().join(role);
        fs::create_dir_all(&dir).unwrap();
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
        let mut proc = Proc::spawn(&format!("{kind:?}"), &host.ns, &argv, &log);
        let sock = udp_in_ns(&prober.ns, SocketAddr::new(first_addr(prober).into(), 0));
        let server = SocketAddr::new(first_addr(host).into(), 53);
        let q = query(probe, RecordType::A, None);
        let ready = wait_for(START_TIMEOUT, "a first answer", || {
            if let Some(st) = proc.try_status() {
                return Some(Err(format!("exited during start: {st}")));
            }
            ask_udp(&sock, server, &q, Duration::from_millis(200)).map(|_| Ok(()))
        });
        if let Err(e) = ready.and_then(|r| r) {
            panic!(
                "{kind:?} ({role}) did not answer on {server}: {e}\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        DnsServer { kind, proc, log }
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or_else(|e| panic!("/proc/{}/fd: {e}", self.pid()))
    }
}

fn first_addr(h: &Host) -> Ipv4Addr {
    *h.addrs().first().expect("the host has an address")
}

/// A host on the lab's bridge at `ip`.
fn lan_host(lab: &Lab, ip: Ipv4Addr) -> Host {
    let h = lab.add_client();
    h.set_addr(ip, NETMASK);
    h
}

/// dnsmasq drops privileges before reading files: the lab dir must be
/// readable by nobody.
fn open_lab_dir(lab: &Lab) {
    fs::set_permissions(lab.dir(), fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------------------------------------------------------------------------
// Local-service scope

/// Every line the servers get: no interface option.
fn scope_conf() -> Vec<String> {
    [
        "no-resolv",
        "no-hosts",
        "host-record=scope.lab.test,198.18.7.7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Asks `server` from `host` (whose address is `src`) over UDP and TCP:
/// (UDP answered, TCP connected, TCP answered, TCP closed unanswered
/// within 2 s).
fn scope_probe(host: &Host, src: Ipv4Addr, server: Ipv4Addr) -> (bool, bool, bool, bool) {
    let to = SocketAddr::new(server.into(), 53);
    let sock = udp_in_ns(&host.ns, SocketAddr::new(src.into(), 0));
    let q = query("scope.lab.test.", RecordType::A, None);
    let udp = ask_udp(&sock, to, &q, Duration::from_secs(2)).is_some();
    let Ok(mut s) = tcp_in_ns(&host.ns, to) else {
        return (udp, false, false, false);
    };
    match ask_tcp(&mut s, &q, Duration::from_secs(2)) {
        Ok(Some(_)) => (udp, true, true, false),
        Ok(None) => (udp, true, false, true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            (udp, true, false, false)
        }
        Err(_) => (udp, true, false, true),
    }
}

#[test]
fn local_service_scope_answers_attached_hosts_only() {
    let lab = lab!("local_service_scope_answers_attached_hosts_only");
    open_lab_dir(&lab);
    let ref_host = lab.add_server_host(REF_IP);
    let plain_host = lab.add_server_host(PLAIN_REF_IP);
    let near = lan_host(&lab, CLIENT_IP);
    // A router namespace on the LAN with a second leg to a far host that
    // is off the bridge: the far host's subnet is not attached to either
    // server.
    let router = lan_host(&lab, ROUTER_LAN_IP);
    let far = lab.add_client();
    far.exec(&["ip", "link", "set", &far.ifname, "down"], CMD)
        .unwrap();
    lab.add_direct_link(&router, ROUTER_FAR_IP, &far, FAR_IP);
    router
        .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"], CMD)
        .unwrap();
    far.exec(
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &ROUTER_FAR_IP.to_string(),
        ],
        CMD,
    )
    .unwrap();
    for h in [&lab.server, &ref_host, &plain_host] {
        h.exec(
            &[
                "ip",
                "route",
                "add",
                "198.19.1.0/24",
                "via",
                &ROUTER_LAN_IP.to_string(),
            ],
            CMD,
        )
        .unwrap();
    }
    let conf = scope_conf();
    let probe = "scope.lab.test.";
    let server = lab.server.clone();
    let sut = DnsServer::start(
        &lab,
        "twinmasq",
        ServerKind::Twinmasq,
        &server,
        &conf,
        &near,
        probe,
    );
    // dnsmasq 2.90 restricts itself only when told: `local-service` is
    // meant to be set by packagers (Debian's init script does). twinmasq
    // applies it whenever no interface option is given, option or not.
    let mut ref_conf = conf.clone();
    ref_conf.push("local-service".into());
    let reference = DnsServer::start(
        &lab,
        "dnsmasq",
        ServerKind::Dnsmasq,
        &ref_host,
        &ref_conf,
        &near,
        probe,
    );
    let plain = DnsServer::start(
        &lab,
        "dnsmasq-plain",
        ServerKind::Dnsmasq,
        &plain_host,
        &conf,
        &near,
        probe,
    );
    // Plain dnsmasq answers the routed host: the routing works, and this
    // is the deliberate difference.
    assert_eq!(
        scope_probe(&far, FAR_IP, PLAIN_REF_IP),
        (true, true, true, false),
        "dnsmasq without local-service should answer a routed host"
    );
    drop(plain);
    for (s, ip) in [(&sut, SERVER_IP), (&reference, REF_IP)] {
        let kind = s.kind;
        // The far host reaches the server: ICMP both ways through the
        // router, so silence below is the server's choice, not routing.
        far.exec(&["ping", "-c", "1", "-W", "2", &ip.to_string()], CMD)
            .unwrap_or_else(|e| panic!("far host cannot reach {kind:?}: {e}"));
        assert_eq!(
            scope_probe(&near, CLIENT_IP, ip),
            (true, true, true, false),
            "{kind:?}: an attached host must be answered over UDP and TCP"
        );
        let (udp, connected, tcp, closed) = scope_probe(&far, FAR_IP, ip);
        assert!(!udp, "{kind:?} answered a routed host over UDP");
        assert!(connected, "{kind:?}: TCP from the routed host must connect");
        assert!(!tcp, "{kind:?} answered a routed host over TCP");
        // Closed at once, so it holds no connection slot.
        assert!(
            closed,
            "{kind:?} kept the routed host's TCP connection open"
        );
        // And a real client sees the same.
        let out = dig(&far, &[&format!("@{ip}"), "scope.lab.test", "A"]);
        assert!(
            !out.contains("->>HEADER<<-"),
            "{kind:?}: dig from far: {out}"
        );
        let out = dig(&far, &["+tcp", &format!("@{ip}"), "scope.lab.test", "A"]);
        assert!(
            !out.contains("->>HEADER<<-"),
            "{kind:?}: dig +tcp from far: {out}"
        );
        let out = dig(&near, &[&format!("@{ip}"), "+short", "scope.lab.test", "A"]);
        assert_eq!(out.trim(), "198.18.7.7", "{kind:?}: dig from near");
    }
    drop(reference);
    drop(sut);
}

// ---------------------------------------------------------------------------
// Response size and ANY

fn size_conf(extra: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = ["no-resolv", "no-hosts", "port=53"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // 60 addresses: about 1000 bytes, over 512, under 1232.
    for i in 1..=60 {
        lines.push(format!("host-record=many.lab.test,198.18.1.{i}"));
    }
    // 40 TXT records: about 2750 bytes, over 1232.
    for i in 1..=40 {
        lines.push(format!(
            "txt-record=big.lab.test,\"record number {i} with some padding text to make it long\""
        ));
    }
    // Three types under one name, for ANY.
    lines.push("host-record=mix.lab.test,198.18.2.1,2001:db8::21".into());
    for i in 1..=10 {
        lines.push(format!("txt-record=mix.lab.test,\"mixed text {i}\""));
    }
    lines.extend(extra.iter().map(|s| s.to_string()));
    lines
}

fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("reply does not parse: {e}"))
}

#[test]
fn response_size_is_bounded_and_any_is_minimal() {
    let lab = lab!("response_size_is_bounded_and_any_is_minimal");
    let client = lan_host(&lab, CLIENT_IP);
    let small_host = lab.add_server_host(REF_IP);
    let server = lab.server.clone();
    let probe = "mix.lab.test.";
    let sut = DnsServer::start(
        &lab,
        "default",
        ServerKind::Twinmasq,
        &server,
        &size_conf(&[]),
        &client,
        probe,
    );
    // The same data with edns-packet-max=800.
    let capped = DnsServer::start(
        &lab,
        "capped",
        ServerKind::Twinmasq,
        &small_host,
        &size_conf(&["edns-packet-max=800"]),
        &client,
        probe,
    );
    let sock = udp_in_ns(&client.ns, SocketAddr::new(CLIENT_IP.into(), 0));
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    let to_capped = SocketAddr::new(REF_IP.into(), 53);
    let t = Duration::from_secs(2);
    let ask = |to, qname: &str, qtype, edns| {
        let q = query(qname, qtype, edns);
        let bytes = ask_udp(&sock, to, &q, t)
            .unwrap_or_else(|| panic!("no UDP answer for {qname} {qtype:?} from {to}"));
        (bytes.len(), parse(&bytes))
    };

    // Without EDNS: never over 512, TC when the answer does not fit.
    for (qname, qtype) in [
        ("many.lab.test.", RecordType::A),
        ("big.lab.test.", RecordType::TXT),
        ("big.lab.test.", RecordType::ANY),
    ] {
        let (len, m) = ask(to, qname, qtype, None);
        assert!(len <= 512, "{qname} {qtype:?}: {len} bytes without EDNS");
        assert!(m.metadata.truncation, "{qname} {qtype:?}: no TC");
        assert!(m.edns.is_none());
    }
    // EDNS 4096 offered, default edns-packet-max 1232: 60 A records fit
    // (about 1000 bytes); 40 TXT records (about 2750) do not.
    let (len, m) = ask(to, "many.lab.test.", RecordType::A, Some(4096));
    assert!(len <= 1232 && !m.metadata.truncation && m.answers.len() == 60);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    let (len, m) = ask(to, "big.lab.test.", RecordType::TXT, Some(4096));
    assert!(len <= 1232 && m.metadata.truncation, "{len} bytes");
    // An offer of 700 is kept to 700.
    let (len, m) = ask(to, "many.lab.test.", RecordType::A, Some(700));
    assert!(len <= 700 && m.metadata.truncation, "{len} bytes");
    // edns-packet-max=800: a 4096 offer gets at most 800 bytes.
    let (len, m) = ask(to_capped, "many.lab.test.", RecordType::A, Some(4096));
    assert!(len <= 800 && m.metadata.truncation, "{len} bytes");
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(800));
    // Real clients: dig (EDNS 1232) gets all 60; dig without EDNS is
    // truncated and retries over TCP, where it gets them all.
    let out = dig(
        &client,
        &[&format!("@{SERVER_IP}"), "+short", "many.lab.test", "A"],
    );
    assert_eq!(out.lines().count(), 60, "{out}");
    let out = dig(
        &client,
        &["+noedns", &format!("@{SERVER_IP}"), "many.lab.test", "A"],
    );
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 60"), "{out}");

    // ANY for a local name over UDP: one RRset (the addresses), small.
    let (len, m) = ask(to, "mix.lab.test.", RecordType::ANY, None);
    let types: std::collections::BTreeSet<RecordType> =
        m.answers.iter().map(Record::record_type).collect();
    assert_eq!(types.len(), 1, "UDP ANY gave {types:?}");
    assert!(!m.metadata.truncation && len < 100, "{len} bytes");
    // Over TCP (no spoofed source possible): everything, 12 records.
    let mut s = tcp_in_ns(&client.ns, to).expect("TCP to the server");
    let q = query("mix.lab.test.", RecordType::ANY, None);
    let m = parse(&ask_tcp(&mut s, &q, t).unwrap().expect("TCP ANY answer"));
    assert_eq!(m.answers.len(), 12, "{:?}", m.answers);
    let out = dig(
        &client,
        &["+tcp", &format!("@{SERVER_IP}"), "mix.lab.test", "ANY"],
    );
    assert!(out.contains("ANSWER: 12"), "{out}");
    drop(capped);
    drop(sut);
}

// ---------------------------------------------------------------------------
// TCP limits, slowloris, file descriptors

#[test]
fn tcp_connection_limit_idle_timeout_and_fds_are_bounded() {
    let lab = lab!("tcp_connection_limit_idle_timeout_and_fds_are_bounded");
    let client = lan_host(&lab, CLIENT_IP);
    const MAX: usize = 5;
    let conf: Vec<String> = [
        "no-resolv",
        "no-hosts",
        "host-record=tcp.lab.test,198.18.7.8",
        &format!("max-tcp-connections={MAX}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = lab.server.clone();
    let sut = DnsServer::start(
        &lab,
        "twinmasq",
        ServerKind::Twinmasq,
        &server,
        &conf,
        &client,
        "tcp.lab.test.",
    );
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    let q = query("tcp.lab.test.", RecordType::A, None);
    let t = Duration::from_secs(2);
    let fds_before = sut.fds();

    // MAX connections, each served.
    let mut held = vec![];
    for i in 0..MAX {
        let mut s = tcp_in_ns(&client.ns, to).expect("connect");
        let r = ask_tcp(&mut s, &q, t).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert!(
            r.is_some(),
            "connection {i} within the limit was not served"
        );
        held.push(s);
    }
    // Beyond the limit: accepted by the kernel, closed by the server
    // without an answer.
    for i in 0..20 {
        let mut s = tcp_in_ns(&client.ns, to).expect("connect");
        let r = ask_tcp(&mut s, &q, t);
        assert!(
            !matches!(r, Ok(Some(_))),
            "connection {} over the limit of {MAX} was served",
            i + 1
        );
        assert!(
            wait_closed(&mut s, t).is_some(),
            "connection over the limit not closed"
        );
    }
    let fds_full = sut.fds();
    // UDP is still served meanwhile.
    let out = dig(
        &client,
        &[&format!("@{SERVER_IP}"), "+short", "tcp.lab.test", "A"],
    );
    assert_eq!(out.trim(), "198.18.7.8");
    // Once they close, a fresh TCP client is served.
    held.clear();
    let fresh = wait_for(Duration::from_secs(3), "a fresh TCP answer", || {
        let mut s = tcp_in_ns(&client.ns, to).ok()?;
        ask_tcp(&mut s, &q, t).ok().flatten()
    });
    assert!(fresh.is_ok(), "{fresh:?}");

    // Slowloris: MAX connections each send one byte of a length prefix
    // (or a prefix and half a query) and stall. The server closes each
    // after its 10 s idle timeout, not before and not much after.
    let mut slow = vec![];
    for i in 0..MAX {
        let mut s = tcp_in_ns(&client.ns, to).expect("connect");
        if i % 2 == 0 {
            s.write_all(&[0]).unwrap();
        } else {
            s.write_all(&[0, 40, 1, 2, 3]).unwrap();
        }
        slow.push((s, Instant::now()));
    }
    thread::sleep(Duration::from_millis(300));
    let fds_slow = sut.fds();
    // While they hold every slot, UDP still answers.
    let out = dig(
        &client,
        &[&format!("@{SERVER_IP}"), "+short", "tcp.lab.test", "A"],
    );
    assert_eq!(out.trim(), "198.18.7.8");
    for (s, opened) in &mut slow {
        let left = Duration::from_secs(14).saturating_sub(opened.elapsed());
        let closed = wait_closed(s, left);
        let after = opened.elapsed();
        assert!(
            closed.is_some(),
            "slowloris connection still open after {after:?}"
        );
        assert!(
            after >= Duration::from_secs(9),
            "slowloris connection closed after only {after:?}"
        );
    }
    // The slots are free again.
    let fresh = wait_for(
        Duration::from_secs(3),
        "a TCP answer after slowloris",
        || {
            let mut s = tcp_in_ns(&client.ns, to).ok()?;
            ask_tcp(&mut s, &q, t).ok().flatten()
        },
    );
    assert!(fresh.is_ok(), "{fresh:?}\n{}", sut.log_text());
    thread::sleep(Duration::from_millis(300));
    let fds_after = sut.fds();
    eprintln!("server fds: before {fds_before}, {MAX} held + 20 refused {fds_full}, slowloris {fds_slow}, after {fds_after}");
    assert!(
        fds_full <= fds_before + MAX + 2,
        "fds {fds_before} -> {fds_full}"
    );
    assert!(
        fds_slow <= fds_before + MAX + 2,
        "fds {fds_before} -> {fds_slow}"
    );
    assert!(
        fds_after <= fds_before + 2,
        "fds {fds_before} -> {fds_after}"
    );
}

// ---------------------------------------------------------------------------
// Spoofed upstream answers and cache poisoning

const REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 1);
const EVIL: Ipv4Addr = Ipv4Addr::new(198, 18, 66, 6);
/// The upstream's answer comes this late, inside the server's 1 s upstream
/// timeout, leaving the forgeries a window to arrive first.
/// The question of the forgeries that carry the right id.
const FORGED_QNAME: &str = "bank.example.";
const UPSTREAM_DELAY: Duration = Duration::from_millis(500);

/// The test's upstream: answers every A query with [`REAL`] after
/// [`UPSTREAM_DELAY`]; before that it has the spoofer fire its forgeries
/// at every upstream port of the server.
struct SlowUpstream {
    stop: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
    sent_forgeries: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

fn answer_to(qname: &str, id: u16, ip: Ipv4Addr) -> Vec<u8> {
    let mut r = Message::response(id, OpCode::Query);
    r.metadata.recursion_desired = true;
    r.metadata.recursion_available = true;
    r.queries.push(Query::query(name(qname), RecordType::A));
    r.answers
        .push(Record::from_rdata(name(qname), 300, RData::A(A(ip))));
    r.to_vec().unwrap()
}

/// The server's UDP ports other than DNS and DHCP, from /proc/PID/net/udp
/// (the process's namespace): its upstream sockets, whatever address
/// they are bound to.
fn upstream_ports(pid: u32) -> Vec<u16> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap();
    let mut ports: Vec<u16> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            let (_, port) = local.split_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .filter(|p| *p != 53 && *p != 67)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

impl SlowUpstream {
    fn start(ns: &str, server_pid: u32) -> SlowUpstream {
        let sock = udp_in_ns(ns, SocketAddr::new(UPSTREAM_IP.into(), 53));
        let other_port = udp_in_ns(ns, SocketAddr::new(UPSTREAM_IP.into(), 5353));
        let other_addr = udp_in_ns(ns, SocketAddr::new(SPOOF_IP.into(), 53));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(Mutex::new(vec![]));
        let (stop2, asked2, sent2) = (stop.clone(), asked.clone(), sent.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(qname) = q.queries.first().map(|x| x.name().to_ascii()) else {
                    continue;
                };
                asked2.fetch_add(1, Ordering::Relaxed);
                let id = q.metadata.id;
                // The forged question itself is answered honestly, so the
                // test can ask for it afterwards.
                let ports = if qname == FORGED_QNAME {
                    vec![]
                } else {
                    upstream_ports(server_pid)
                };
                let mut log = sent2.lock().unwrap();
                for port in &ports {
                    let to = SocketAddr::new(from.ip(), *port);
                    let right_socket = *port == from.port();
                    // Wrong id, from the real server's address and port.
                    let _ = sock.send_to(&answer_to(&qname, id ^ 0x5a5a, EVIL), to);
                    // Right id, another question.
                    let _ = sock.send_to(&answer_to(FORGED_QNAME, id, EVIL), to);
                    // Right id and question, wrong source port / address.
                    let _ = other_port.send_to(&answer_to(&qname, id, EVIL), to);
                    let _ = other_addr.send_to(&answer_to(&qname, id, EVIL), to);
                    if !right_socket {
                        // Everything right but the socket it arrives on.
                        let _ = sock.send_to(&answer_to(&qname, id, EVIL), to);
                    }
                    log.push(format!("port {port} (asked on {}): forged", from.port()));
                }
                drop(log);
                thread::sleep(UPSTREAM_DELAY);
                let _ = sock.send_to(&answer_to(&qname, id, REAL), from);
            }
        });
        SlowUpstream {
            stop,
            asked,
            sent_forgeries: sent,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The metrics endpoint's series, read with curl from `host`.
fn scrape(host: &Host) -> BTreeMap<String, f64> {
    netns::scrape_metrics(host, METRICS_PORT)
}

fn dropped(m: &BTreeMap<String, f64>, reason: &str) -> f64 {
    m.get(&format!(
        "twinmasq_dns_dropped_total{{reason=\"{reason}\"}}"
    ))
    .copied()
    .unwrap_or_else(|| panic!("no dropped counter for {reason}: {m:?}"))
}

#[test]
fn spoofed_upstream_answers_are_rejected_and_do_not_poison_the_cache() {
    let lab = lab!("spoofed_upstream_answers_are_rejected_and_do_not_poison_the_cache");
    let client = lan_host(&lab, CLIENT_IP);
    let outside = lab.add_client();
    for ip in [UPSTREAM_IP, SPOOF_IP] {
        outside.set_addr(ip, NETMASK);
    }
    let conf: Vec<String> = [
        "no-resolv".to_string(),
        "no-hosts".to_string(),
        format!("server={UPSTREAM_IP}"),
        "host-record=probe.lab.test,198.18.7.9".to_string(),
        format!("metrics-listen={SERVER_IP}:{METRICS_PORT}"),
    ]
    .to_vec();
    let server = lab.server.clone();
    let sut = DnsServer::start(
        &lab,
        "twinmasq",
        ServerKind::Twinmasq,
        &server,
        &conf,
        &client,
        "probe.lab.test.",
    );
    // Nothing pending, no upstream port open: nothing to aim at.
    let ports = upstream_ports(sut.pid());
    assert!(
        ports.is_empty(),
        "upstream ports open while idle: {ports:?}"
    );
    let upstream = SlowUpstream::start(&outside.ns, sut.pid());
    let before = scrape(&client);
    let sock = udp_in_ns(&client.ns, SocketAddr::new(CLIENT_IP.into(), 0));
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    for (i, qname) in ["www.example.net.", "mail.example.net.", "ftp.example.net."]
        .iter()
        .enumerate()
    {
        let q = query(qname, RecordType::A, None);
        let reply = ask_udp(&sock, to, &q, Duration::from_secs(3))
            .unwrap_or_else(|| panic!("no answer for {qname}\n{}", sut.log_text()));
        let m = parse(&reply);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_records(&m), vec![REAL], "{qname}: the client got {m:?}");
        assert_eq!(upstream.asked.load(Ordering::Relaxed), i + 1);
    }
    // From the cache now: the real answer, and the upstream not asked.
    let asked = upstream.asked.load(Ordering::Relaxed);
    for qname in ["www.example.net.", "mail.example.net.", "ftp.example.net."] {
        let out = dig(&client, &[&format!("@{SERVER_IP}"), "+short", qname, "A"]);
        assert_eq!(out.trim(), REAL.to_string(), "{qname} from the cache");
    }
    // The forged question was never cached either: it is asked upstream.
    let out = dig(
        &client,
        &[&format!("@{SERVER_IP}"), "+short", FORGED_QNAME, "A"],
    );
    assert_eq!(out.trim(), REAL.to_string(), "{FORGED_QNAME}");
    assert_eq!(upstream.asked.load(Ordering::Relaxed), asked + 1);

    let after = scrape(&client);
    let forged = upstream.sent_forgeries.lock().unwrap().len();
    assert!(forged >= 3, "forgeries sent: {forged}");
    for reason in ["unknown_id", "wrong_question"] {
        let moved = dropped(&after, reason) - dropped(&before, reason);
        assert!(moved >= 3.0, "{reason} moved by {moved}");
    }
    // From another port or address the kernel drops them: the query's
    // socket is connected to the upstream. (The engine would count them
    // as wrong_source.)
    for reason in ["wrong_source", "wrong_socket"] {
        let moved = dropped(&after, reason) - dropped(&before, reason);
        assert_eq!(moved, 0.0, "{reason} moved by {moved}");
    }
    drop(upstream);
    drop(sut);
}

/// CPU time (user + system, all threads) of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which may hold spaces, in parens.
    let rest = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn tcp_accept_survives_descriptor_exhaustion() {
    let lab = lab!("tcp_accept_survives_descriptor_exhaustion");
    let client = lan_host(&lab, CLIENT_IP);
    let conf: Vec<String> = [
        "no-resolv",
        "no-hosts",
        "host-record=fd.lab.test,198.18.7.10",
        "max-tcp-connections=100",
        // The test lowers the server's descriptor limit with prlimit(1),
        // which without CAP_SYS_RESOURCE needs the same uid and gid.
        "user=root",
        "group=root",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = lab.server.clone();
    let sut = DnsServer::start(
        &lab,
        "twinmasq",
        ServerKind::Twinmasq,
        &server,
        &conf,
        &client,
        "fd.lab.test.",
    );
    let to = SocketAddr::new(SERVER_IP.into(), 53);
    let q = query("fd.lab.test.", RecordType::A, None);
    // Room for two more descriptors only: the third connection finds the
    // process out of them (EMFILE) while the kernel keeps completing
    // handshakes into the listen backlog.
    let limit = (sut.fds() + 2).to_string();
    netns::run(
        &[
            "prlimit",
            "--pid",
            &sut.pid().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ],
        CMD,
    )
    .unwrap();
    let mut conns = vec![];
    for _ in 0..10 {
        conns.push(tcp_in_ns(&client.ns, to).expect("connect (backlog)"));
    }
    thread::sleep(Duration::from_millis(300));
    let ticks0 = cpu_ticks(sut.pid());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(sut.pid()) - ticks0;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    eprintln!("server CPU while out of descriptors: {used} ticks in 2 s ({hz} Hz)");
    assert!(
        used * 4 < hz,
        "the server spins while out of descriptors: {used} ticks in 2 s"
    );
    // UDP is still answered, and once the connections go, TCP again.
    let out = dig(
        &client,
        &[&format!("@{SERVER_IP}"), "+short", "fd.lab.test", "A"],
    );
    assert_eq!(out.trim(), "198.18.7.10");
    conns.clear();
    let fresh = wait_for(Duration::from_secs(5), "a TCP answer after EMFILE", || {
        let mut s = tcp_in_ns(&client.ns, to).ok()?;
        ask_tcp(&mut s, &q, Duration::from_secs(1)).ok().flatten()
    });
    assert!(fresh.is_ok(), "{fresh:?}\n{}", sut.log_text());
}
