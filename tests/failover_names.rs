//! Lease names after a big sync: a primary that imports 100,000 named
//! leases from a dnsmasq lease file, and a secondary that starts empty and
//! gets them all in one sync. Every name must then resolve, on both nodes,
//! to its lease's address: the DNS task follows the lease table through a
//! bounded feed, and a sync merges records faster than DNS may read them,
//! so falling behind must mean a fresh copy of the table, never names that
//! stay missing (issue 15, "one change log").
//!
//! Run as root: `cargo test --test failover_names`.

mod netns;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netns::pair::{must, pair, report, wait_synced, PRIMARY, SECONDARY, SYNC_WAIT};
use netns::{run, udp_in_ns, wait_for, ServerConf, SECONDARY_IP, SERVER_IP};

const LEASES: u32 = 100_000;
/// The leases start here and skip 198.19.0.0/24, the failover link's.
const FIRST: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 0);
/// Queries in flight at once per node.
const WINDOW: usize = 256;
/// A window's answers must all have come within this, or it is sent again.
const WINDOW_WAIT: Duration = Duration::from_millis(1500);
/// Rounds of sending again what got no answer (lost datagrams, a busy
/// server); a name unanswered after them counts as not resolving.
const ROUNDS: usize = 3;
/// Queries sent at the secondary during its sync: for at most this long,
/// and at most this many.
const FLOOD_FOR: Duration = Duration::from_secs(15);
const FLOOD_MAX: u32 = 2_000_000;
/// The client's own address on the lab LAN.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 250);

fn lease_ip(i: u32) -> Ipv4Addr {
    let mut n = u32::from(FIRST) + i;
    if n >= u32::from(Ipv4Addr::new(198, 19, 0, 0)) {
        n += 256;
    }
    Ipv4Addr::from(n)
}

fn lease_name(i: u32) -> String {
    format!("host-{i}")
}

/// dnsmasq's lease file: `<expiry> <mac> <ip> <hostname> <client-id>`.
fn lease_file(expiry: u64) -> String {
    let mut text = String::with_capacity(LEASES as usize * 48);
    for i in 0..LEASES {
        let _ = writeln!(
            text,
            "{expiry} 0e:00:00:{:02x}:{:02x}:{:02x} {} {} *",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            lease_ip(i),
            lease_name(i)
        );
    }
    text
}

/// Reads and drops whatever has arrived until 300 ms pass without more.
fn drain(sock: &UdpSocket) {
    let mut buf = [0u8; 512];
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while sock.recv(&mut buf).is_ok() {}
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The address an answer gives, when it is a NOERROR answer with one A
/// record and nothing after it (we send no EDNS, so none comes back).
fn answer_addr(reply: &[u8]) -> Option<Ipv4Addr> {
    let rcode = reply.get(3)? & 0x0f;
    let answers = u16::from_be_bytes([*reply.get(6)?, *reply.get(7)?]);
    if rcode != 0 || answers != 1 || reply.len() < 4 {
        return None;
    }
    let a = &reply[reply.len() - 4..];
    Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
}

/// Asks `server` for every lease name; returns the names that did not
/// resolve to their lease's address, with what came instead.
fn unresolved(sock: &UdpSocket, server: Ipv4Addr) -> Vec<String> {
    let to = SocketAddr::from((server, 53));
    let mut todo: Vec<u32> = (0..LEASES).collect();
    let mut wrong: HashMap<u32, String> = HashMap::new();
    let mut buf = [0u8; 512];
    for _ in 0..ROUNDS {
        let mut missed = Vec::new();
        for chunk in todo.chunks(WINDOW) {
            // The id names the query's slot in the window.
            let mut open: HashMap<u16, u32> = HashMap::new();
            for (slot, &i) in chunk.iter().enumerate() {
                let id = slot as u16;
                let _ = sock.send_to(&query(id, &lease_name(i)), to);
                open.insert(id, i);
            }
            let end = Instant::now() + WINDOW_WAIT;
            while !open.is_empty() {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                sock.set_read_timeout(Some(left)).unwrap();
                // A timeout: the rest of the window goes round again.
                let Ok(n) = sock.recv(&mut buf) else { break };
                if n < 12 {
                    continue;
                }
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let Some(i) = open.remove(&id) else { continue };
                match answer_addr(&buf[..n]) {
                    Some(a) if a == lease_ip(i) => {
                        wrong.remove(&i);
                    }
                    got => {
                        wrong.insert(
                            i,
                            format!("{} -> {got:?} (rcode {})", lease_name(i), buf[3] & 0x0f),
                        );
                    }
                }
            }
            missed.extend(open.into_values());
        }
        missed.sort_unstable();
        todo = missed;
        if todo.is_empty() {
            break;
        }
    }
    for i in todo {
        wrong
            .entry(i)
            .or_insert_with(|| format!("{}: no answer", lease_name(i)));
    }
    let mut out: Vec<String> = wrong.into_values().collect();
    out.sort();
    out
}

#[test]
fn every_name_resolves_on_both_nodes_after_a_100k_lease_sync() {
    let pair = pair!("every_name_resolves_on_both_nodes_after_a_100k_lease_sync");
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let conf = ServerConf {
        lines: [
            "no-resolv",
            "no-hosts",
            "no-ping",
            "dhcp-range=198.18.8.0,198.19.255.254,255.254.0.0,1d",
            "dhcp-lease-max=200000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    let mut p = pair.node(PRIMARY, &pair.node_conf(PRIMARY, &conf, &pair.key));
    std::fs::write(&p.leasefile, lease_file(expiry)).unwrap();
    p.start();
    let client = pair.lab.add_client();
    client.set_addr(CLIENT_IP, Ipv4Addr::new(255, 255, 255, 0));
    let sock = udp_in_ns(&client.ns, SocketAddr::from((CLIENT_IP, 0)));
    // DNS clients keep the secondary's DNS task busy while the sync
    // arrives, as a LAN does, on one core for all of its threads, as on
    // many routers: the DNS task then takes changes off the feed more
    // slowly than the lease task merges them.
    let flood_sock = sock.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let q = query(0xfffe, &lease_name(0));
            let end = Instant::now() + FLOOD_FOR;
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end && sent < FLOOD_MAX {
                let _ = flood_sock.send_to(&q, (SECONDARY_IP, 53));
                sent += 1;
            }
            sent
        })
    };
    let s = pair.start_node(SECONDARY, &conf);
    let pid = s.pid().expect("the secondary runs").to_string();
    must(
        run(
            &["taskset", "-a", "-p", "-c", "0", &pid],
            Duration::from_secs(5),
        )
        .map(|_| ()),
        "pinning the secondary to one core",
    );
    wait_synced(&p, 0, &s, 0, SYNC_WAIT);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let flooded = flood.join().unwrap();
    report(&format!(
        "{flooded} queries to the secondary during its sync"
    ));
    // Their answers, still arriving, are not the test's.
    drain(&sock);

    // The secondary's DNS task takes the synced records in after the sync's
    // log line: wait until the last lease's name resolves there.
    let last = LEASES - 1;
    let settled = wait_for(Duration::from_secs(20), "the last lease name", || {
        let _ = sock.send_to(&query(0xffff, &lease_name(last)), (SECONDARY_IP, 53));
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).ok()?;
        (answer_addr(&buf[..n]) == Some(lease_ip(last))).then_some(())
    });
    let mut failures = Vec::new();
    if settled.is_err() {
        failures.push(format!(
            "secondary: {} never resolved to {}",
            lease_name(last),
            lease_ip(last)
        ));
    }
    for (node, ip) in [("primary", SERVER_IP), ("secondary", SECONDARY_IP)] {
        let started = Instant::now();
        let bad = unresolved(&sock, ip);
        report(&format!(
            "{node}: {} of {LEASES} names resolved in {:.1?}",
            LEASES as usize - bad.len(),
            started.elapsed()
        ));
        if !bad.is_empty() {
            failures.push(format!(
                "{node}: {} of {LEASES} lease names do not resolve, e.g. {:?}",
                bad.len(),
                &bad[..bad.len().min(5)]
            ));
        }
    }
    // Without a fall behind, the test proved nothing about one.
    if s.log_grep(0, "DNS fell behind the lease table").is_empty() {
        failures.push(
            "the secondary's DNS task never fell behind the feed: the scenario did not test a copy of the table"
                .into(),
        );
    }
    assert!(
        failures.is_empty(),
        "{}\nsecondary log:\n{}",
        failures.join("\n"),
        s.log_tail(30)
    );
}
