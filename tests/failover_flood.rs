//! The failover port under a flood of connections that never prove the
//! key, from a LAN host, against a real primary in network namespaces (see
//! `netns::PairLab`): the real secondary must still link within a few
//! seconds, and the primary's log must stay small.
//!
//! The attacker is a set of threads of this test process that entered the
//! attacker host's namespace: each holds one TCP connection to the
//! primary's failover port open, sends nothing, and opens a new one the
//! moment the primary closes it (or refuses it). The attacker reaches the
//! link address (198.19.0.1) through the primary's LAN address, as any LAN
//! host with a route could.
//!
//! Run as root: `cargo test --test failover_flood`. The measured figures
//! (time to link, log growth, connections the attacker made) go to stderr
//! directly, so they show without `--nocapture`.

mod netns;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netns::{PairLab, PairRole, ServerConf, FAILOVER_PORT, LINK_PRIMARY_IP, NETMASK, SERVER_IP};

/// Connections the attacker holds open at once.
const ATTACKER_CONNECTIONS: usize = 64;
/// How long the flood goes on, in all; the secondary starts after
/// [`FLOOD_BEFORE_PARTNER`] of it.
const FLOOD_FOR: Duration = Duration::from_secs(22);
const FLOOD_BEFORE_PARTNER: Duration = Duration::from_secs(2);
/// The secondary must be linked (primary linked, secondary passive) this
/// long after its start.
const LINK_WITHIN: Duration = Duration::from_secs(15);
/// What the primary's log may grow by during the whole flood.
const LOG_BUDGET: u64 = 1 << 20;

/// Writes to fd 2 directly: libtest captures `eprintln!` of passing tests.
fn report(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[derive(Default)]
struct FloodStats {
    /// Connections the primary accepted at the TCP level.
    opened: AtomicU64,
    /// Of those, the ones the primary closed (or reset) again.
    closed: AtomicU64,
    /// Connect attempts that failed outright.
    failed: AtomicU64,
    open_now: AtomicUsize,
    open_max: AtomicUsize,
}

/// Threads in the attacker's namespace, each keeping one connection to
/// `target` open from one of `sources`. Dropping it stops and joins them.
struct Flood {
    stop: Arc<AtomicBool>,
    stats: Arc<FloodStats>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Flood {
    fn start(ns: &str, target: SocketAddr, sources: &[Ipv4Addr], conns: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FloodStats::default());
        let threads = (0..conns)
            .map(|i| {
                let path = format!("/run/netns/{ns}");
                let source = sources[i % sources.len()];
                let (stop, stats) = (Arc::clone(&stop), Arc::clone(&stats));
                thread::spawn(move || {
                    let file =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: setns(2) on a valid fd; it changes only this
                    // thread's network namespace.
                    let rc = unsafe {
                        libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                    };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    hold_one(source, target, &stop, &stats);
                })
            })
            .collect();
        Flood {
            stop,
            stats,
            threads,
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop();
    }
}

fn connect_from(source: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(source.into(), 0).into())?;
    s.connect_timeout(&target.into(), Duration::from_millis(500))?;
    Ok(s.into())
}

/// One attacker connection, reopened as soon as the primary ends it.
fn hold_one(source: Ipv4Addr, target: SocketAddr, stop: &AtomicBool, stats: &FloodStats) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match connect_from(source, target) {
            Ok(c) => c,
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        stats.opened.fetch_add(1, Ordering::Relaxed);
        let now = stats.open_now.fetch_add(1, Ordering::Relaxed) + 1;
        stats.open_max.fetch_max(now, Ordering::Relaxed);
        let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
        let ended = loop {
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            match conn.read(&mut buf) {
                Ok(0) => break true,
                // The primary's hello: read and ignored.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break true,
            }
        };
        stats.open_now.fetch_sub(1, Ordering::Relaxed);
        if ended {
            stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the primary, floods its failover port from `sources` (addresses
/// of one LAN host), starts the secondary during the flood, and checks it
/// links in time while the primary's log stays small.
fn flood_scenario(test: &'static str, sources: &[Ipv4Addr]) {
    let Some(pair) = PairLab::new(test) else {
        return;
    };
    let conf = ServerConf::standard();
    let p = pair.start_node(PairRole::Primary, &conf);

    let attacker = pair.lab.add_client();
    attacker.set_addr(sources[0], NETMASK);
    for extra in &sources[1..] {
        attacker
            .exec(
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{extra}/32"),
                    "dev",
                    &attacker.ifname,
                ],
                Duration::from_secs(10),
            )
            .unwrap();
    }
    attacker
        .exec(
            &[
                "ip",
                "route",
                "add",
                &format!("{LINK_PRIMARY_IP}/32"),
                "via",
                &SERVER_IP.to_string(),
            ],
            Duration::from_secs(10),
        )
        .unwrap();
    let target = SocketAddr::new(LINK_PRIMARY_IP.into(), FAILOVER_PORT);

    let log_before = p.log_mark();
    let flood_start = Instant::now();
    let mut flood = Flood::start(&attacker.ns, target, sources, ATTACKER_CONNECTIONS);
    thread::sleep(FLOOD_BEFORE_PARTNER);
    let held_before_partner = flood.stats.open_now.load(Ordering::Relaxed);

    let s_start = Instant::now();
    let s = pair.start_node(PairRole::Secondary, &conf);
    let linked = p
        .wait_log(log_before, "-> Linked", LINK_WITHIN)
        .and_then(|_| {
            let left = LINK_WITHIN.saturating_sub(s_start.elapsed());
            s.wait_log(0, "-> Passive", left)
        })
        .map(|(_, at)| at.duration_since(s_start));
    let linked_mark = p.log_mark();

    let left = FLOOD_FOR.saturating_sub(flood_start.elapsed());
    thread::sleep(left);
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let grown = (p.log_mark() - log_before) as u64;
    let lines = p.log_lines_since(log_before).len();
    flood.stop();
    let st = &flood.stats;
    let (opened, closed, failed, max) = (
        st.opened.load(Ordering::Relaxed),
        st.closed.load(Ordering::Relaxed),
        st.failed.load(Ordering::Relaxed),
        st.open_max.load(Ordering::Relaxed),
    );
    let dropped_after_link = p.log_grep(linked_mark, "serve mode Linked ->");
    report(&format!(
        "{test}: {} source address(es), {ATTACKER_CONNECTIONS} connections held; \
         {held_before_partner} open when the secondary started, at most {max} at once; \
         {opened} accepted, {closed} closed by the primary, {failed} connects failed, \
         in {flood_secs:.1} s\n  secondary linked: {}\n  primary log grew by {grown} bytes \
         ({lines} lines) during the flood",
        sources.len(),
        match &linked {
            Ok(d) => format!("after {:.2} s", d.as_secs_f64()),
            Err(_) => format!("NOT within {LINK_WITHIN:?}"),
        }
    ));
    let summaries: Vec<String> = p
        .log_lines_since(log_before)
        .into_iter()
        .filter(|l| l.contains("failover:") && !l.contains("INFO"))
        .take(8)
        .collect();
    report(&format!(
        "  the primary's warnings (first 8):\n    {}",
        summaries.join("\n    ")
    ));

    let mut failed_checks = Vec::new();
    if opened < ATTACKER_CONNECTIONS as u64 {
        failed_checks.push(format!(
            "the flood did not happen: only {opened} connections were accepted"
        ));
    }
    if let Err(e) = &linked {
        failed_checks.push(format!(
            "the secondary did not link within {LINK_WITHIN:?} of its start during the flood: {e}"
        ));
    }
    if !dropped_after_link.is_empty() {
        failed_checks.push(format!(
            "the link dropped during the flood: {dropped_after_link:?}"
        ));
    }
    if grown >= LOG_BUDGET {
        failed_checks.push(format!(
            "the primary's log grew by {grown} bytes ({lines} lines) in {flood_secs:.1} s of flood \
             (budget {LOG_BUDGET})"
        ));
    }
    assert!(
        failed_checks.is_empty(),
        "{test}:\n{}",
        failed_checks.join("\n")
    );
    drop(s);
    drop(p);
}

/// 64 connections from one LAN address: at most a couple of them wait for
/// the handshake at a time, the rest are refused at once, quietly.
#[test]
fn a_flood_from_one_address_neither_keeps_the_partner_out_nor_fills_the_log() {
    flood_scenario(
        "a_flood_from_one_address_neither_keeps_the_partner_out_nor_fills_the_log",
        &[Ipv4Addr::new(198, 18, 0, 66)],
    );
}

/// The same 64 connections from 16 addresses of one LAN host (four each):
/// together they want more places in the handshake than there are, so
/// each new one displaces the oldest; the partner's, once in, finishes
/// its handshake before its turn comes.
#[test]
fn a_flood_from_many_addresses_neither_keeps_the_partner_out_nor_fills_the_log() {
    let sources: Vec<Ipv4Addr> = (0..16).map(|i| Ipv4Addr::new(198, 18, 0, 70 + i)).collect();
    flood_scenario(
        "a_flood_from_many_addresses_neither_keeps_the_partner_out_nor_fills_the_log",
        &sources,
    );
}
