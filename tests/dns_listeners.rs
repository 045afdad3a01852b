//! DNS over IPv6 and the resolv-file poll, with real `dig` in network
//! namespaces. Run as root; see tests/README.md.
//!
//! Topology (one lab, all hosts on its bridge):
//! - the server host: 198.18.0.1/24, 2001:db8:1::1/64 and 2001:db8:1::2/64
//! - a client on the attached prefix: 2001:db8:1::10/64 (and a DHCP lease)
//! - a client elsewhere: 2001:db8:2::10/64, routed on-link both ways, so
//!   only `local-service` can keep it from an answer
//! - the test's upstream servers, one namespace: 198.18.0.60 and
//!   [2001:db8:1::61] (port 53, and 5353 for `server=`), each answering
//!   every A question with its own address
//!
//! The listener test runs the server `TWINMASQ_TEST_SERVER` names (twinmasq
//! by default; `dnsmasq` shows the test checks dnsmasq's behaviour); the
//! resolv-file tests run both, real dnsmasq 2.90 first, and compare.

mod netns;

use netns::udp_in_ns;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use netns::{wait_for, Host, Lab, Proc, ServerKind, Udhcpc, NETMASK, SERVER_IP};

const SERVER6: &str = "2001:db8:1::1";
/// A second address on the same prefix: a reply the kernel addressed from
/// its own choice of source would miss one of the two.
const SERVER6_B: &str = "2001:db8:1::2";
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const CLIENT6: &str = "2001:db8:1::10";
const FAR6: &str = "2001:db8:2::10";
const UPSTREAM_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);
const UPSTREAM_V6: &str = "2001:db8:1::61";
/// What each upstream answers, so the answer names the upstream asked.
const FROM_V4_UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 1);
const FROM_V6_UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 2);
/// Answered by the server itself (`address=`): "it is up".
const READY_NAME: &str = "ready.test";
const READY_IP: &str = "198.18.7.7";
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// dnsmasq reacts to a resolv-file change at once (inotify) or within a
/// second (polling); twinmasq looks once a second. Both must have switched
/// well within this.
const SWITCH_WITHIN: Duration = Duration::from_millis(3000);

macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------
// The test's upstream servers

/// One tiny DNS server: every A question gets `answer` (TTL 0, so nothing
/// is cached and each query shows which upstream was asked).
struct Upstream {
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(ns: &str, addr: SocketAddr, answer: Ipv4Addr) -> Upstream {
        let sock = udp_in_ns(ns, addr);
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let (st, h) = (stop.clone(), hits.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries.first().cloned() else {
                    continue;
                };
                h.fetch_add(1, Ordering::Relaxed);
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                r.metadata.response_code = ResponseCode::NoError;
                r.queries.push(query.clone());
                if query.query_type() == RecordType::A {
                    r.answers.push(Record::from_rdata(
                        query.name().clone(),
                        0,
                        RData::A(A(answer)),
                    ));
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        Upstream {
            stop,
            hits,
            thread: Some(thread),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
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

// ---------------------------------------------------------------------------
// The server and the client

struct DnsServer {
    kind: ServerKind,
    proc: Proc,
    log: PathBuf,
}

impl DnsServer {
    /// Starts `kind` in the lab's server namespace with `lines` as its
    /// whole config (no `interface=` unless given), and waits until it
    /// answers `READY_NAME` over IPv4 to `client`.
    fn start(lab: &Lab, kind: ServerKind, name: &str, lines: &[String], client: &Host) -> Self {
        let dir = lab.dir().join(name);
        fs::create_dir_all(&dir).unwrap();
        // dnsmasq reads its files after dropping to nobody.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let conf = dir.join("dnsmasq.conf");
        let mut text = format!("# {} (tests/dns_listeners.rs)\n", lab.test);
        for l in lines.iter().map(String::as_str).chain([
            "no-hosts",
            "log-queries",
            &format!("address=/{READY_NAME}/{READY_IP}"),
        ]) {
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
        args.extend(["-k".into(), "-C".into(), conf.display().to_string()]);
        args.push(p("--pid-file", &dir.join("pid")));
        args.push(p("--dhcp-leasefile", &dir.join("leases")));
        match kind {
            ServerKind::Dnsmasq => args.push("--log-facility=-".into()),
            ServerKind::Twinmasq => {
                args.push(p("--lease-db", &dir.join("db")));
                // Not the shared default under /run.
                args.push(p("--control-socket", &dir.join("control.sock")));
            }
        }
        fs::write(&log, format!("===== {}\n", args.join(" "))).unwrap();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(&format!("{kind:?}"), &lab.server.ns, &argv, &log);
        let ready = wait_for(START_TIMEOUT, "a first answer", || {
            if let Some(st) = proc.try_status() {
                return Some(Err(format!("exited during start: {st}")));
            }
            let (_, got) = dig(client, &SERVER_IP.to_string(), READY_NAME, "A", false).ok()?;
            (got == [READY_IP]).then_some(Ok(()))
        });
        if let Err(e) = ready.and_then(|r| r) {
            panic!(
                "{kind:?} did not start answering DNS: {e}\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        DnsServer { kind, proc, log }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sighup(&mut self) {
        self.proc.signal(libc::SIGHUP);
    }
}

/// `dig` from `host` to `server` (an IPv4 or IPv6 address): the rcode and
/// the answer's record data, or Err when no answer came. Over UDP dig takes
/// a reply only from the address it asked (another source is "unexpected"
/// and ignored), so an answer also shows where it came from.
fn dig(
    host: &Host,
    server: &str,
    name: &str,
    rtype: &str,
    tcp: bool,
) -> Result<(String, Vec<String>), String> {
    let at = format!("@{server}");
    let mut args = vec![
        "dig",
        "+noall",
        "+comments",
        "+answer",
        "+time=1",
        "+tries=1",
        &at,
        name,
        rtype,
    ];
    if tcp {
        args.push("+tcp");
    }
    let out = host.exec(&args, Duration::from_secs(5))?;
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .ok_or_else(|| format!("no reply: {out}"))?
        .to_string();
    let data = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    Ok((status, data))
}

/// [`dig`] that must get a NOERROR answer: its record data.
fn dig_ok(host: &Host, server: &str, name: &str, rtype: &str, tcp: bool) -> Vec<String> {
    let proto = if tcp { "TCP" } else { "UDP" };
    match dig(host, server, name, rtype, tcp) {
        Ok((status, data)) if status == "NOERROR" => data,
        Ok((status, _)) => panic!("{name} {rtype} from {server} ({proto}): {status}"),
        Err(e) => panic!("no answer for {name} {rtype} from {server} ({proto}): {e}"),
    }
}

// ---------------------------------------------------------------------------
// IPv6 listeners

#[test]
fn ipv6_clients_get_answers_under_local_service() {
    let lab = lab!("ipv6_clients_get_answers_under_local_service");
    let kind = ServerKind::from_env();
    lab.server.add_addr6(&format!("{SERVER6}/64"));
    lab.server.add_addr6(&format!("{SERVER6_B}/64"));
    // The far client's prefix is reachable on-link from the server, so an
    // answer could reach it; only local-service stops one.
    lab.server.add_route6("2001:db8:2::/64");
    let near = lab.add_client();
    near.set_addr(CLIENT_IP, NETMASK);
    near.add_addr6(&format!("{CLIENT6}/64"));
    let far = lab.add_client();
    far.add_addr6(&format!("{FAR6}/64"));
    far.add_route6("2001:db8:1::/64");
    // An IPv6 upstream on a port of its own, given by `server=`.
    let outside = lab.add_client();
    outside.add_addr6(&format!("{UPSTREAM_V6}/64"));
    let upstream = Upstream::start(
        &outside.ns,
        SocketAddr::new(UPSTREAM_V6.parse().unwrap(), 5353),
        FROM_V6_UPSTREAM,
    );

    // No interface options, so local-service applies (DHCP serves every
    // interface). twinmasq applies it by default then; dnsmasq 2.90 only
    // when given, as Debian's init script does, so it is given.
    let lines = vec![
        "local-service".to_string(),
        "domain=lab.test".to_string(),
        "dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,1h".to_string(),
        "no-resolv".to_string(),
        format!("server={UPSTREAM_V6}#5353"),
        "no-ping".to_string(),
    ];
    let _server = DnsServer::start(&lab, kind, "server", &lines, &near);

    for server in [SERVER6, SERVER6_B] {
        for tcp in [false, true] {
            assert_eq!(
                dig_ok(&near, server, READY_NAME, "A", tcp),
                [READY_IP],
                "{kind:?}: IPv6 to {server}, tcp {tcp}"
            );
        }
    }

    // Forwarded, from an IPv6 client to the IPv6 upstream and back (over
    // UDP: dnsmasq forwards a TCP query over TCP, which this upstream
    // does not serve).
    for _ in 0..2 {
        assert_eq!(
            dig_ok(&near, SERVER6, "www.example.net", "A", false),
            [FROM_V6_UPSTREAM.to_string()],
            "{kind:?}: forwarded over IPv6"
        );
    }
    assert!(upstream.hits() >= 1);

    // A lease name answers over IPv6: its A record, and no AAAA (DHCPv4).
    let laptop = lab.add_client();
    let lease = Udhcpc::new(&lab, &laptop)
        .with_hostname("laptop")
        .obtain()
        .expect("DHCP lease");
    for tcp in [false, true] {
        assert_eq!(
            dig_ok(&near, SERVER6, "laptop.lab.test", "A", tcp),
            [lease.address.to_string()],
            "{kind:?}: lease name over IPv6, tcp {tcp}"
        );
    }
    assert_eq!(
        dig_ok(&near, SERVER6, "laptop.lab.test", "AAAA", false),
        Vec::<String>::new()
    );

    // The far client can reach the server (ping both ways) ...
    far.exec(
        &["ping", "-6", "-c", "1", "-W", "2", SERVER6],
        Duration::from_secs(5),
    )
    .expect("the far client reaches the server");
    // ... but gets no answer over UDP or TCP.
    for tcp in [false, true] {
        let r = dig(&far, SERVER6, READY_NAME, "A", tcp);
        assert!(
            r.is_err(),
            "{kind:?}: a client off the attached prefixes got {r:?} (tcp {tcp})"
        );
        if tcp {
            // Closed at once (dnsmasq resets it), not left to time out
            // holding one of the few TCP slots.
            let e = r.unwrap_err();
            assert!(
                e.contains("end of file") || e.contains("connection reset"),
                "{kind:?}: {e}"
            );
        }
    }
    // The near one still does: the refusal was about the far one.
    assert_eq!(dig_ok(&near, SERVER6, READY_NAME, "A", false), [READY_IP]);
}

/// The interface options select IPv6 as they select IPv4: `interface=`
/// with the wildcard socket, and IPv6 `listen-address` with
/// `bind-interfaces`, which must leave the interface's other IPv6 address
/// unanswered.
#[test]
fn ipv6_follows_interface_and_listen_address_options() {
    let lab = lab!("ipv6_follows_interface_and_listen_address_options");
    let kind = ServerKind::from_env();
    lab.server.add_addr6(&format!("{SERVER6}/64"));
    lab.server.add_addr6(&format!("{SERVER6_B}/64"));
    let near = lab.add_client();
    near.set_addr(CLIENT_IP, NETMASK);
    near.add_addr6(&format!("{CLIENT6}/64"));

    let by_name = vec![
        format!("interface={}", lab.server.ifname),
        "no-resolv".to_string(),
    ];
    let server = DnsServer::start(&lab, kind, "by-name", &by_name, &near);
    for tcp in [false, true] {
        assert_eq!(dig_ok(&near, SERVER6, READY_NAME, "A", tcp), [READY_IP]);
    }
    drop(server);

    let by_address = vec![
        format!("listen-address={SERVER_IP},{SERVER6_B}"),
        "bind-interfaces".to_string(),
        "no-resolv".to_string(),
    ];
    let _server = DnsServer::start(&lab, kind, "by-address", &by_address, &near);
    for tcp in [false, true] {
        assert_eq!(dig_ok(&near, SERVER6_B, READY_NAME, "A", tcp), [READY_IP]);
        let r = dig(&near, SERVER6, READY_NAME, "A", tcp);
        assert!(
            r.is_err(),
            "{kind:?}: {SERVER6} is not a listen-address: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The resolv file

struct ResolvRig {
    v4: Upstream,
    v6: Upstream,
    client: Host,
    resolv: PathBuf,
    lab: Lab,
}

fn resolv_rig(test: &str) -> Option<ResolvRig> {
    let lab = Lab::new(test)?;
    lab.server.add_addr6(&format!("{SERVER6}/64"));
    let outside = lab.add_client();
    outside.set_addr(UPSTREAM_V4, NETMASK);
    outside.add_addr6(&format!("{UPSTREAM_V6}/64"));
    let client = lab.add_client();
    client.set_addr(CLIENT_IP, NETMASK);
    let v4 = Upstream::start(
        &outside.ns,
        SocketAddr::new(IpAddr::V4(UPSTREAM_V4), 53),
        FROM_V4_UPSTREAM,
    );
    let v6 = Upstream::start(
        &outside.ns,
        SocketAddr::new(UPSTREAM_V6.parse().unwrap(), 53),
        FROM_V6_UPSTREAM,
    );
    fs::set_permissions(lab.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let resolv = lab.dir().join("resolv.conf");
    Some(ResolvRig {
        v4,
        v6,
        client,
        resolv,
        lab,
    })
}

impl ResolvRig {
    /// Replaces the resolv file as resolvconf and DHCP clients do: a new
    /// file renamed over the old one.
    fn write_resolv(&self, nameserver: &str) {
        let tmp = self.resolv.with_extension("new");
        fs::write(
            &tmp,
            format!("# test\nsearch lab.test\nnameserver {nameserver}\n"),
        )
        .unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&tmp, &self.resolv).unwrap();
    }

    fn start(&self, kind: ServerKind, no_poll: bool) -> DnsServer {
        self.write_resolv(&UPSTREAM_V4.to_string());
        let mut lines = vec![
            format!("interface={}", self.lab.server.ifname),
            format!("resolv-file={}", self.resolv.display()),
        ];
        if no_poll {
            lines.push("no-poll".into());
        }
        let name = format!("{kind:?}-{}", if no_poll { "no-poll" } else { "poll" });
        DnsServer::start(&self.lab, kind, &name, &lines, &self.client)
    }

    /// Which upstream answered a fresh name (never cached).
    fn ask(&self, n: &mut u32) -> Option<Ipv4Addr> {
        *n += 1;
        let name = format!("q{n}.example.net");
        let (_, got) = dig(&self.client, &SERVER_IP.to_string(), &name, "A", false).ok()?;
        got.first()?.parse().ok()
    }

    /// Asks until the answer comes from `want`; how long that took.
    fn wait_answer_from(&self, want: Ipv4Addr, within: Duration, n: &mut u32) -> Duration {
        let t0 = Instant::now();
        let mut last = None;
        while t0.elapsed() < within {
            last = self.ask(n);
            if last == Some(want) {
                return t0.elapsed();
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("no answer from {want} within {within:?}; last {last:?}");
    }
}

/// Polling: a rewritten resolv file moves forwarding to the server it now
/// names (here an IPv6 one), without a restart, for dnsmasq and for us.
#[test]
fn a_changed_resolv_file_is_followed() {
    let Some(rig) = resolv_rig("a_changed_resolv_file_is_followed") else {
        return;
    };
    let mut n = 0;
    for kind in [ServerKind::Dnsmasq, ServerKind::Twinmasq] {
        let server = rig.start(kind, false);
        assert_eq!(rig.ask(&mut n), Some(FROM_V4_UPSTREAM), "{kind:?} at start");
        let v6_before = rig.v6.hits();
        rig.write_resolv(UPSTREAM_V6);
        let took = rig.wait_answer_from(FROM_V6_UPSTREAM, SWITCH_WITHIN, &mut n);
        eprintln!("{kind:?} followed the resolv file in {took:?}");
        assert!(rig.v6.hits() > v6_before);
        let log = server.log_text();
        assert!(
            log.contains(&format!("reading {}", rig.resolv.display())),
            "{kind:?} log:\n{log}"
        );
        assert!(
            log.contains(&format!("using nameserver {UPSTREAM_V6}#53")),
            "{kind:?} log:\n{log}"
        );
        // And back, to IPv4.
        rig.write_resolv(&UPSTREAM_V4.to_string());
        rig.wait_answer_from(FROM_V4_UPSTREAM, SWITCH_WITHIN, &mut n);
        drop(server);
    }
    assert!(rig.v4.hits() > 0);
}

/// `no-poll`: the change is ignored until SIGHUP, which re-reads the file.
#[test]
fn no_poll_rereads_the_resolv_file_on_sighup_only() {
    let Some(rig) = resolv_rig("no_poll_rereads_the_resolv_file_on_sighup_only") else {
        return;
    };
    let mut n = 0;
    for kind in [ServerKind::Dnsmasq, ServerKind::Twinmasq] {
        let mut server = rig.start(kind, true);
        assert_eq!(rig.ask(&mut n), Some(FROM_V4_UPSTREAM), "{kind:?} at start");
        rig.write_resolv(UPSTREAM_V6);
        // Longer than either server's poll would need.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(2500) {
            assert_eq!(
                rig.ask(&mut n),
                Some(FROM_V4_UPSTREAM),
                "{kind:?} with no-poll followed the file without SIGHUP"
            );
            thread::sleep(Duration::from_millis(200));
        }
        server.sighup();
        rig.wait_answer_from(FROM_V6_UPSTREAM, SWITCH_WITHIN, &mut n);
        let log = server.log_text();
        assert!(
            log.contains(&format!("using nameserver {UPSTREAM_V6}#53")),
            "{kind:?} log:\n{log}"
        );
        assert_eq!(server.kind, kind);
        drop(server);
    }
}

/// `servers-file`: its servers and domain routes are used from the start,
/// and a rewritten file takes effect on SIGHUP (not before), for dnsmasq
/// and for us.
#[test]
fn a_servers_file_is_reread_on_sighup() {
    let Some(rig) = resolv_rig("a_servers_file_is_reread_on_sighup") else {
        return;
    };
    let file = rig.lab.dir().join("servers");
    let write = |lines: &str| {
        let tmp = file.with_extension("new");
        fs::write(&tmp, lines).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&tmp, &file).unwrap();
    };
    let ask = |name: &str| -> Option<Ipv4Addr> {
        let (_, got) = dig(&rig.client, &SERVER_IP.to_string(), name, "A", false).ok()?;
        got.first()?.parse().ok()
    };
    let mut n = 0;
    for kind in [ServerKind::Dnsmasq, ServerKind::Twinmasq] {
        write(&format!(
            "# normal server, and one domain routed to the other\n\
             server={UPSTREAM_V4}\n\
             server=/six.example/{UPSTREAM_V6}\n"
        ));
        let lines = vec![
            format!("interface={}", rig.lab.server.ifname),
            "no-resolv".to_string(),
            format!("servers-file={}", file.display()),
        ];
        let mut server = DnsServer::start(
            &rig.lab,
            kind,
            &format!("{kind:?}-servers-file"),
            &lines,
            &rig.client,
        );
        assert_eq!(rig.ask(&mut n), Some(FROM_V4_UPSTREAM), "{kind:?} at start");
        assert_eq!(
            ask("a.six.example"),
            Some(FROM_V6_UPSTREAM),
            "{kind:?} domain route"
        );

        write(&format!(
            "server={UPSTREAM_V6}\n\
             server=/four.example/{UPSTREAM_V4}\n"
        ));
        // Not polled: nothing changes until SIGHUP.
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            rig.ask(&mut n),
            Some(FROM_V4_UPSTREAM),
            "{kind:?} before SIGHUP"
        );
        server.sighup();
        rig.wait_answer_from(FROM_V6_UPSTREAM, SWITCH_WITHIN, &mut n);
        assert_eq!(
            ask("b.four.example"),
            Some(FROM_V4_UPSTREAM),
            "{kind:?} new route"
        );
        // The old route is gone: the name now goes to the normal server.
        assert_eq!(
            ask("c.six.example"),
            Some(FROM_V6_UPSTREAM),
            "{kind:?} old route"
        );
        drop(server);
    }
}
