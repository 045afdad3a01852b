//! Hostile LAN clients against the real server in a lab: floods from
//! random MACs past `dhcp-lease-max`, DECLINE floods, forged RELEASEs,
//! relayed requests for subnets nobody configured, and oversized or
//! malformed packets. The hostile packets come from sockets this test opens
//! inside a client namespace (bound to port 68 or 67 there, as a client or a
//! relay would be); the victims are real udhcpc processes; what the server
//! kept is read from its database over the control socket and its counters
//! from `metrics-listen`.

mod netns;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use netns::{Host, Lab, ServerConf, Udhcpc, RANGE_END, RANGE_START, SERVER_IP};

const METRICS_PORT: u16 = 9153;
const STATIC_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const STATIC_MAC: &str = "02:5a:00:00:00:50";
/// An address for the hostile host, outside the range.
const HOSTILE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const CMD: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Sockets inside a namespace

/// Runs `f` on a thread that has entered `ns`'s network namespace: sockets
/// it opens stay in that namespace after the thread ends.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns(2) on a valid fd; it changes only this thread's
        // network namespace, and the thread ends after `f`.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// A UDP socket on `port` of every address in `host`'s namespace, tied to
/// its interface, allowed to broadcast, non-blocking.
fn socket_on(host: &Host, port: u16) -> UdpSocket {
    let ifname = host.ifname.clone();
    in_ns(&host.ns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind_device(Some(ifname.as_bytes())).unwrap();
        s.set_recv_buffer_size(4 << 20).unwrap();
        let any = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        s.bind(&any.into()).unwrap();
        s.set_nonblocking(true).unwrap();
        s.into()
    })
}

fn to_server_broadcast() -> SocketAddr {
    SocketAddrV4::new(Ipv4Addr::BROADCAST, 67).into()
}

fn to_server() -> SocketAddr {
    SocketAddrV4::new(SERVER_IP, 67).into()
}

// ---------------------------------------------------------------------------
// Packets, built byte by byte so malformed ones are as easy as good ones

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const DECLINE: u8 = 4;
const ACK: u8 = 5;
const RELEASE: u8 = 7;

struct Pkt(Vec<u8>);

impl Pkt {
    /// A BOOTREQUEST with the broadcast flag set (so the answer reaches a
    /// socket on port 68 without an address) and message type `t`.
    fn new(t: u8, mac: [u8; 6], xid: u32) -> Pkt {
        let mut b = vec![0u8; 240];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&xid.to_be_bytes());
        b[10] = 0x80;
        b[28..34].copy_from_slice(&mac);
        b[236..240].copy_from_slice(&[99, 130, 83, 99]);
        Pkt(b).opt(53, &[t])
    }

    fn opt(mut self, code: u8, data: &[u8]) -> Pkt {
        self.0.push(code);
        self.0.push(data.len() as u8);
        self.0.extend_from_slice(data);
        self
    }

    fn ciaddr(mut self, ip: Ipv4Addr) -> Pkt {
        self.0[12..16].copy_from_slice(&ip.octets());
        self
    }

    fn giaddr(mut self, ip: Ipv4Addr) -> Pkt {
        self.0[24..28].copy_from_slice(&ip.octets());
        self
    }

    fn end(mut self) -> Vec<u8> {
        self.0.push(255);
        self.0
    }
}

/// A reply as far as the tests care.
#[derive(Debug, Clone)]
struct Reply {
    kind: u8,
    xid: u32,
    yiaddr: Ipv4Addr,
    mac: [u8; 6],
    server_id: Option<Ipv4Addr>,
    len: usize,
}

fn parse_reply(b: &[u8]) -> Option<Reply> {
    if b.len() < 240 || b[0] != 2 || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let (mut kind, mut server_id) = (None, None);
    let mut i = 240;
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(b[i + 1]);
        let data = b.get(i + 2..i + 2 + len)?;
        match (b[i], data) {
            (53, [t]) => kind = Some(*t),
            (54, [a, b2, c, d]) => server_id = Some(Ipv4Addr::new(*a, *b2, *c, *d)),
            _ => {}
        }
        i += 2 + len;
    }
    Some(Reply {
        kind: kind?,
        xid: u32::from_be_bytes(b[4..8].try_into().ok()?),
        yiaddr: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        mac: b[28..34].try_into().ok()?,
        server_id,
        len: b.len(),
    })
}

/// Every reply waiting on `sock`.
fn drain(sock: &UdpSocket) -> Vec<Reply> {
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        if let Some(r) = parse_reply(&buf[..n]) {
            out.push(r);
        }
    }
    out
}

fn random_mac(rng: &mut impl Rng) -> [u8; 6] {
    let mut m: [u8; 6] = rng.random();
    // Locally administered unicast, and never a lab host's 02:5a:... MAC.
    m[0] = 0x06;
    m
}

fn mac_bytes(text: &str) -> [u8; 6] {
    let v: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// A random address of the lab's range.
fn range_addr(rng: &mut impl Rng) -> Ipv4Addr {
    let span = u32::from(RANGE_END) - u32::from(RANGE_START);
    Ipv4Addr::from(u32::from(RANGE_START) + rng.random_range(0..=span))
}

fn in_range(ip: Ipv4Addr) -> bool {
    (RANGE_START..=RANGE_END).contains(&ip)
}

// ---------------------------------------------------------------------------
// What the server says about itself

fn metrics_line() -> String {
    format!("metrics-listen={SERVER_IP}:{METRICS_PORT}")
}

/// The metrics endpoint's series, read with curl from `host`.
fn scrape(host: &Host) -> BTreeMap<String, f64> {
    netns::scrape_metrics(host, METRICS_PORT)
}

fn ignored(m: &BTreeMap<String, f64>, reason: &str) -> f64 {
    let key = format!("twinmasq_dhcp_ignored_total{{reason=\"{reason}\"}}");
    *m.get(&key)
        .unwrap_or_else(|| panic!("no {key} in the metrics: {m:?}"))
}

fn control_line(lab: &Lab) -> (String, PathBuf) {
    let sock = lab.dir().join("ctl.sock");
    (format!("control-socket={}", sock.display()), sock)
}

/// The server's database, read over its control socket: (ip, state, mac).
fn db_leases(sock: &std::path::Path) -> Vec<(Ipv4Addr, String, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twinmasq"))
        .args([
            "leases",
            "--json",
            &format!("--control-socket={}", sock.display()),
        ])
        .output()
        .expect("run twinmasq leases");
    assert!(
        out.status.success(),
        "twinmasq leases: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("leases JSON");
    v["leases"]
        .as_array()
        .expect("leases array")
        .iter()
        .map(|l| {
            (
                l["ip"].as_str().unwrap().parse().unwrap(),
                l["state"].as_str().unwrap().to_string(),
                l["mac"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count_state(leases: &[(Ipv4Addr, String, String)], state: &str) -> usize {
    leases.iter().filter(|(_, s, _)| s == state).count()
}

/// A host for hostile packets, with an address outside the range.
fn hostile_host(lab: &Lab) -> Host {
    let h = lab.add_client();
    h.set_addr(HOSTILE_IP, netns::NETMASK);
    h
}

// ---------------------------------------------------------------------------
// (a) Pool starvation from random MACs

#[derive(Debug, Default)]
struct FloodStats {
    sent: u64,
    offers: u64,
    acks: u64,
    macs: u64,
    secs: f64,
}

/// DISCOVERs and blind SELECTING REQUESTs (for a random range address,
/// without any OFFER) from a new random MAC each, `rate` a second for
/// `secs`; every OFFER that comes back is taken up with a REQUEST, as a
/// client that wants the lease would.
fn starvation_flood(sock: UdpSocket, rate: u64, secs: u64, seed: u64) -> FloodStats {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut st = FloodStats::default();
    let start = Instant::now();
    let run_for = Duration::from_secs(secs);
    while start.elapsed() < run_for {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while st.macs < due {
            let mac = random_mac(&mut rng);
            let xid: u32 = rng.random();
            let p = if st.macs % 2 == 0 {
                Pkt::new(DISCOVER, mac, xid).opt(55, &[1, 3, 6]).end()
            } else {
                Pkt::new(REQUEST, mac, xid)
                    .opt(54, &SERVER_IP.octets())
                    .opt(50, &range_addr(&mut rng).octets())
                    .end()
            };
            // A full socket buffer drops this one; the flood goes on.
            if sock.send_to(&p, to_server_broadcast()).is_ok() {
                st.sent += 1;
            }
            st.macs += 1;
        }
        for r in drain(&sock) {
            match r.kind {
                OFFER => {
                    st.offers += 1;
                    let p = Pkt::new(REQUEST, r.mac, r.xid)
                        .opt(54, &r.server_id.unwrap_or(SERVER_IP).octets())
                        .opt(50, &r.yiaddr.octets())
                        .end();
                    if sock.send_to(&p, to_server_broadcast()).is_ok() {
                        st.sent += 1;
                    }
                }
                ACK => st.acks += 1,
                _ => {}
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    st.secs = start.elapsed().as_secs_f64();
    st
}

/// Thousands of random MACs at several thousand packets a second while
/// `dhcp-lease-max` is 20: the table stops at 20, a static host and a
/// client that already holds a lease are served during the flood, and the
/// rate-limit counter shows what was dropped.
#[test]
fn random_mac_flood_cannot_starve_static_hosts_or_lease_holders() {
    let Some(lab) = Lab::new("random_mac_flood_cannot_starve_static_hosts_or_lease_holders") else {
        return;
    };
    const LEASE_MAX: usize = 20;
    let (ctl, ctl_sock) = control_line(&lab);
    let conf = ServerConf::standard()
        .line(format!("dhcp-lease-max={LEASE_MAX}"))
        .line(format!("dhcp-host={STATIC_MAC},{STATIC_IP}"))
        // Ours: 300 packets a second from unknown clients per interface
        // (the default is 5000, more than this test can send reliably on
        // a loaded CI machine), 3000 from known ones.
        .line("dhcp-rate-limit=300,3000")
        .line(metrics_line())
        .line(ctl)
        .line("user=root")
        .line("quiet-dhcp");
    let _srv = lab.start_server_kind(netns::ServerKind::Twinmasq, &conf);

    let holder_host = lab.add_client();
    let mut holder = Udhcpc::new(&lab, &holder_host);
    let held = holder.obtain().expect("lease before the flood");
    let static_host = lab.add_client_with_mac(STATIC_MAC);
    let observer = lab.add_client();
    observer.set_addr(Ipv4Addr::new(198, 18, 0, 21), netns::NETMASK);
    let before = scrape(&observer);

    let attacker = hostile_host(&lab);
    let sock = socket_on(&attacker, 68);
    const FLOOD_SECS: u64 = 12;
    const FLOOD_RATE: u64 = 3000;
    let flood = thread::spawn(move || starvation_flood(sock, FLOOD_RATE, FLOOD_SECS, 0x5eed));
    let flood_start = Instant::now();
    // Let the flood fill the table first.
    thread::sleep(Duration::from_secs(2));

    let mut static_client = Udhcpc::new(&lab, &static_host).with_tries(8, 1);
    let got = static_client
        .obtain()
        .expect("the static host gets its address during the flood");
    assert_eq!(got.address, STATIC_IP);
    let renewed = holder
        .renew()
        .expect("the lease holder renews during the flood");
    assert_eq!(renewed.address, held.address);
    // The server still answers its metrics port, and has been dropping.
    let during = scrape(&observer);
    assert!(
        !flood.is_finished() && flood_start.elapsed() < Duration::from_secs(FLOOD_SECS),
        "the clients were served after the flood ended ({:?}): not a test of the flood",
        flood_start.elapsed()
    );

    let st = flood.join().expect("flood thread");
    eprintln!("flood: {st:?}");
    assert!(st.macs > 20_000, "thousands of random MACs: {st:?}");
    assert!(
        st.acks >= (LEASE_MAX - 1) as u64,
        "the flood did fill the table: {st:?}"
    );
    let rate_limited = ignored(&during, "rate_limited") - ignored(&before, "rate_limited");
    assert!(
        rate_limited > 1000.0,
        "the rate limit dropped flood packets: {rate_limited}"
    );
    let after = scrape(&observer);
    assert!(ignored(&after, "lease_max") > 0.0);

    let leases = db_leases(&ctl_sock);
    let dynamic: Vec<_> = leases
        .iter()
        .filter(|(ip, s, _)| s == "bound" && in_range(*ip))
        .collect();
    assert_eq!(
        dynamic.len(),
        LEASE_MAX,
        "dhcp-lease-max bound leases, no more: {leases:?}"
    );
    assert!(leases
        .iter()
        .any(|(ip, s, mac)| *ip == STATIC_IP && s == "bound" && *mac == STATIC_MAC));
    assert!(leases
        .iter()
        .any(|(ip, s, mac)| *ip == held.address && s == "bound" && *mac == holder_host.mac));
    assert_eq!(count_state(&leases, "bound"), LEASE_MAX + 1);
}

// ---------------------------------------------------------------------------
// (b) DECLINE floods and forged RELEASEs

/// Full DORAs from new random MACs, each ending in a DECLINE of the
/// address just acknowledged, `window` clients at a time. Returns the
/// DECLINEs sent.
fn dora_then_decline(sock: &UdpSocket, clients: usize, window: usize, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut live: BTreeMap<u32, ([u8; 6], Instant)> = BTreeMap::new();
    let (mut started, mut declined) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while (started < clients || !live.is_empty()) && Instant::now() < deadline {
        while live.len() < window && started < clients {
            let (mac, xid) = (random_mac(&mut rng), rng.random());
            sock.send_to(&Pkt::new(DISCOVER, mac, xid).end(), to_server_broadcast())
                .unwrap();
            live.insert(xid, (mac, Instant::now()));
            started += 1;
        }
        for r in drain(sock) {
            let Some((mac, _)) = live.get(&r.xid).copied() else {
                continue;
            };
            match r.kind {
                OFFER => {
                    let p = Pkt::new(REQUEST, mac, r.xid)
                        .opt(54, &SERVER_IP.octets())
                        .opt(50, &r.yiaddr.octets())
                        .end();
                    sock.send_to(&p, to_server_broadcast()).unwrap();
                }
                ACK => {
                    let p = Pkt::new(DECLINE, mac, r.xid)
                        .opt(54, &SERVER_IP.octets())
                        .opt(50, &r.yiaddr.octets())
                        .end();
                    sock.send_to(&p, to_server_broadcast()).unwrap();
                    declined += 1;
                    live.remove(&r.xid);
                }
                _ => {
                    live.remove(&r.xid);
                }
            }
        }
        // A transaction that got no answer in a second is given up.
        live.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(1));
        thread::sleep(Duration::from_millis(1));
    }
    declined
}

/// Spoofed DECLINEs and RELEASEs for a real client's address (from random
/// MACs, and from its own MAC without its client id) leave its lease alone;
/// clients that DECLINE every address they get take at most an eighth of
/// the pool out of service, and the pool still serves a new client.
#[test]
fn decline_flood_and_forged_release_leave_leases_and_pool_in_service() {
    let Some(lab) = Lab::new("decline_flood_and_forged_release_leave_leases_and_pool_in_service")
    else {
        return;
    };
    let (ctl, ctl_sock) = control_line(&lab);
    let conf = ServerConf::standard()
        .line(metrics_line())
        .line(ctl)
        .line("user=root")
        .line("quiet-dhcp");
    let _srv = lab.start_server_kind(netns::ServerKind::Twinmasq, &conf);
    let victim_host = lab.add_client();
    let mut victim = Udhcpc::new(&lab, &victim_host);
    let lease = victim.obtain().expect("victim lease");
    let before = scrape(&victim_host);

    let attacker = hostile_host(&lab);
    let sock = socket_on(&attacker, 68);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xdec1);
    let own_mac = mac_bytes(&victim_host.mac);
    let ip = lease.address.octets();
    let mut forged = 0u64;
    // 4000 forged packets over about two seconds.
    for i in 0..1000u32 {
        let mac = random_mac(&mut rng);
        let packets = [
            Pkt::new(DECLINE, mac, i)
                .opt(54, &SERVER_IP.octets())
                .opt(50, &ip),
            Pkt::new(RELEASE, mac, i)
                .ciaddr(lease.address)
                .opt(54, &SERVER_IP.octets()),
            // Its own MAC, but not its client id (udhcpc sends one): not
            // the lease's client.
            Pkt::new(RELEASE, own_mac, i)
                .ciaddr(lease.address)
                .opt(54, &SERVER_IP.octets()),
            Pkt::new(DECLINE, own_mac, i)
                .opt(54, &SERVER_IP.octets())
                .opt(50, &ip)
                .opt(61, &[1, 6, 6, 6, 6, 6, 6]),
        ];
        for p in packets {
            sock.send_to(&p.end(), to_server()).unwrap();
            forged += 1;
        }
        // In small bursts, so a busy CI machine's socket buffers keep up.
        if i % 5 == 0 {
            thread::sleep(Duration::from_millis(10));
        }
    }
    // 60 clients that decline whatever they get.
    let declines = dora_then_decline(&sock, 60, 8, 0xdec2);
    assert!(
        declines >= 40,
        "only {declines} DORA+DECLINE cycles completed"
    );
    thread::sleep(Duration::from_millis(500));

    let after = scrape(&victim_host);
    let not_owner = ignored(&after, "not_owner") - ignored(&before, "not_owner");
    assert!(
        not_owner >= forged as f64 * 0.95,
        "forged packets counted as not_owner: {not_owner} of {forged}"
    );
    assert!(ignored(&after, "decline_limit") > 0.0);

    let leases = db_leases(&ctl_sock);
    assert!(
        leases
            .iter()
            .any(|(a, s, mac)| *a == lease.address && s == "bound" && *mac == victim_host.mac),
        "the victim's lease survived: {leases:?}"
    );
    // The standard range has 100 addresses: at most 100 / 8 held declined.
    assert_eq!(count_state(&leases, "declined"), 12, "{leases:?}");
    let renewed = victim.renew().expect("victim renews");
    assert_eq!(renewed.address, lease.address);
    let newcomer_host = lab.add_client();
    let mut newcomer = Udhcpc::new(&lab, &newcomer_host);
    let new_lease = newcomer.obtain().expect("the pool still serves");
    assert!(in_range(new_lease.address));
    assert_ne!(new_lease.address, lease.address);
}

// ---------------------------------------------------------------------------
// (c) A relay for a subnet nobody configured

/// A relay agent (port 67 in a client namespace, routed from the server)
/// asks for a configured remote subnet and gets an OFFER there; for a
/// subnet with no dhcp-range it gets nothing, and each request is counted.
#[test]
fn relayed_request_for_unconfigured_subnet_gets_no_reply_and_is_counted() {
    let Some(lab) =
        Lab::new("relayed_request_for_unconfigured_subnet_gets_no_reply_and_is_counted")
    else {
        return;
    };
    let served = Ipv4Addr::new(198, 19, 5, 1);
    let unserved = Ipv4Addr::new(198, 19, 9, 1);
    let conf = ServerConf::standard()
        .line("dhcp-range=198.19.5.10,198.19.5.50,255.255.255.0,1h")
        .line(metrics_line())
        .line("quiet-dhcp");
    let _srv = lab.start_server_kind(netns::ServerKind::Twinmasq, &conf);
    let relay = hostile_host(&lab);
    for (giaddr, net) in [(served, "198.19.5.0/24"), (unserved, "198.19.9.0/24")] {
        relay
            .exec(
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{giaddr}/24"),
                    "dev",
                    &relay.ifname,
                ],
                CMD,
            )
            .unwrap();
        lab.server
            .exec(
                &["ip", "route", "add", net, "via", &HOSTILE_IP.to_string()],
                CMD,
            )
            .unwrap();
    }
    let sock = socket_on(&relay, 67);
    let before = scrape(&relay);

    let ask = |giaddr: Ipv4Addr, xid: u32| -> Vec<Reply> {
        let mac = [0x06, 0, 0, 0, 0x77, xid as u8];
        let discover = Pkt::new(DISCOVER, mac, xid)
            .giaddr(giaddr)
            .opt(82, &[1, 2, 0, 9]);
        let request = Pkt::new(REQUEST, mac, xid + 1000)
            .giaddr(giaddr)
            .opt(54, &SERVER_IP.octets())
            .opt(50, &Ipv4Addr::from(u32::from(giaddr) + 9).octets());
        for p in [discover, request] {
            sock.send_to(&p.end(), to_server()).unwrap();
        }
        // Replies on this path take milliseconds; two seconds of silence
        // is an answer.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            got.extend(drain(&sock).into_iter().filter(|r| r.mac == mac));
            if got.len() >= 2 {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        got
    };
    // The control: the same relay on a configured subnet is answered, so
    // silence below is the server's choice, not a broken path.
    let answered = ask(served, 1);
    assert!(
        answered
            .iter()
            .any(|r| r.kind == OFFER && r.yiaddr.octets()[..3] == [198, 19, 5]),
        "{answered:?}"
    );
    for n in 0..5 {
        let got = ask(unserved, 10 + n);
        assert!(got.is_empty(), "reply for an unconfigured subnet: {got:?}");
    }
    let after = scrape(&relay);
    assert_eq!(
        ignored(&after, "no_network") - ignored(&before, "no_network"),
        10.0,
        "five DISCOVERs and five REQUESTs counted"
    );
}

// ---------------------------------------------------------------------------
// (d) Oversized and malformed packets

/// Handcrafted bad packets, a datagram bigger than any DHCP client sends,
/// and thousands of random mutations of good requests: the server stays
/// up, counts them, every reply fits the size the client allowed, and a
/// real client is served afterwards.
#[test]
fn oversized_and_malformed_packets_are_counted_and_the_server_serves_on() {
    let Some(lab) =
        Lab::new("oversized_and_malformed_packets_are_counted_and_the_server_serves_on")
    else {
        return;
    };
    let conf = ServerConf::standard()
        .line("dhcp-authoritative")
        .line(metrics_line())
        .line("quiet-dhcp");
    let mut srv = lab.start_server_kind(netns::ServerKind::Twinmasq, &conf);
    let attacker = hostile_host(&lab);
    let sock = socket_on(&attacker, 68);
    let before = scrape(&attacker);
    let mac = [0x06, 1, 2, 3, 4, 5];

    let good = Pkt::new(DISCOVER, mac, 1).end();
    let mut corpus: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut push = |p: Vec<u8>| corpus.push((p, 548));
    // A DHCP packet of 6000 bytes (IP-fragmented on the way).
    let mut huge = Pkt::new(DISCOVER, mac, 2);
    for _ in 0..23 {
        huge = huge.opt(224, &[0xab; 255]);
    }
    push(huge.end());
    push(good[..100].to_vec());
    let mut bad_hlen = good.clone();
    bad_hlen[2] = 255;
    push(bad_hlen);
    push(Pkt::new(DISCOVER, mac, 3).opt(53, &[]).end());
    // An option length running past the end.
    let mut overrun = good[..good.len() - 1].to_vec();
    overrun.extend_from_slice(&[12, 200, b'x']);
    push(overrun);
    // Overload (52) pointing into empty sname/file, bad lengths for
    // every fixed-size option, a 255-byte client id and hostname.
    push(
        Pkt::new(DISCOVER, mac, 4)
            .opt(52, &[3])
            .opt(50, &[1, 2])
            .opt(51, &[1])
            .opt(54, &[])
            .opt(57, &[0])
            .opt(61, &[0xee; 255])
            .opt(12, &[b'h'; 255])
            .opt(81, &[0xff; 255])
            .opt(55, &[0; 255])
            .end(),
    );
    // A client id and relay information that cannot both be echoed in
    // 548 bytes; and a max message size below RFC 2131's 576.
    push(
        Pkt::new(DISCOVER, mac, 5)
            .opt(61, &[0xee; 255])
            .opt(82, &[0xdd; 255])
            .end(),
    );
    push(
        Pkt::new(DISCOVER, mac, 6)
            .opt(57, &100u16.to_be_bytes())
            .opt(55, &[0xff; 255])
            .end(),
    );
    // Random mutations of good requests.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xbad);
    let seeds: Vec<Vec<u8>> = [DISCOVER, REQUEST, DECLINE, RELEASE, 8]
        .iter()
        .map(|&t| {
            Pkt::new(t, mac, 7)
                .opt(50, &[198, 18, 0, 150])
                .opt(54, &SERVER_IP.octets())
                .opt(61, &[1, 6, 1, 2, 3, 4, 5])
                .opt(81, &[4, 0, 0, 3, b'a', b'b', b'c', 0])
                .end()
        })
        .collect();
    for i in 0..3000 {
        let mut p = seeds[i % seeds.len()].clone();
        match rng.random_range(0..3) {
            0 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
            }
            1 => p.truncate(rng.random_range(0..p.len())),
            _ => {
                p.pop();
                for _ in 0..rng.random_range(0..400) {
                    p.push(rng.random());
                }
            }
        }
        // Only replies whose xid the mutation left alone are checked
        // against 548 bytes; a mutated option 57 may allow more.
        corpus.push((p, 1472));
    }
    let mut limits: BTreeMap<u32, usize> = BTreeMap::new();
    for (n, (p, limit)) in corpus.iter().enumerate() {
        if p.len() >= 8 {
            let xid = u32::from_be_bytes(p[4..8].try_into().unwrap());
            let e = limits.entry(xid).or_insert(*limit);
            *e = (*e).max(*limit);
        }
        sock.send_to(p, to_server_broadcast()).unwrap();
        if n % 200 == 0 {
            thread::sleep(Duration::from_millis(50));
        }
    }
    thread::sleep(Duration::from_secs(1));
    let replies = drain(&sock);
    eprintln!("{} packets sent, {} replies", corpus.len(), replies.len());
    assert!(replies.len() > 100, "mutated requests were answered too");
    for r in &replies {
        let limit = limits.get(&r.xid).copied().unwrap_or(548);
        assert!(
            r.len <= limit,
            "reply of {} bytes, limit {limit}: {r:?}",
            r.len
        );
        assert!(r.len >= 300);
    }
    assert!(
        srv.pid()
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()),
        "server died:\n{}",
        srv.log_text()
    );
    let after = scrape(&attacker);
    let delta = |reason: &str| ignored(&after, reason) - ignored(&before, reason);
    assert_eq!(delta("oversized"), 1.0);
    assert!(delta("decode_too_short") >= 1.0);
    assert!(delta("decode_bad_hlen") >= 1.0);
    assert!(delta("decode_no_message_type") >= 1.0);
    assert!(delta("reply_too_big") >= 1.0);
    let bad = "twinmasq_dhcp_bad_options_total";
    assert!(after[bad] - before[bad] >= 5.0, "{}", after[bad]);

    let client_host = lab.add_client();
    let mut client = Udhcpc::new(&lab, &client_host);
    let lease = client.obtain().expect("a real client is served afterwards");
    assert!(in_range(lease.address));
    srv.stop();
}
