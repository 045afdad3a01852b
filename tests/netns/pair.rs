//! Helpers for tests of a real failover pair (`tests/failover_pair.rs`,
//! `tests/failover_life.rs`): starting and syncing the two nodes, steering
//! clients, collecting violations, and finding addresses held twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    wait_for, Event, Host, Lab, Lease, PairLab, PairRole, Server, ServerConf, Udhcpc, SECONDARY_IP,
    SERVER_IP,
};

/// Builds a pair lab or returns from the test (after a loud SKIPPED, which
/// panics under CI).
#[allow(unused_macros)]
macro_rules! pair {
    ($name:expr) => {
        match $crate::netns::PairLab::new($name) {
            Some(p) => p,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use pair;

/// Both nodes started: bound for the link to come up and the sync to end.
pub const SYNC_WAIT: Duration = Duration::from_secs(10);
/// After a heal or a restart the secondary may be in its reconnect backoff
/// (at most 1 s) and a connect attempt may be hanging (at most 3 s).
pub const RESYNC_WAIT: Duration = Duration::from_secs(15);
/// For the lease files to agree after a sync (rewritten at most 1/s).
pub const CONVERGE_WAIT: Duration = Duration::from_secs(10);
/// How long a refused link is watched for a sync that must not happen:
/// the secondary retries several times within it (backoff 250 ms, 500 ms, ...,
/// or 4 s after an explicit refusal).
pub const REFUSED_WATCH: Duration = Duration::from_secs(5);

pub const PRIMARY: PairRole = PairRole::Primary;
pub const SECONDARY: PairRole = PairRole::Secondary;

/// Writes to fd 2 directly: libtest captures `eprintln!` of passing tests.
pub fn report(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Violations found along a scenario, reported together at its end, so
/// one run shows everything that is wrong (and the steps after a soft
/// failure still run). Hard failures (a step the rest depends on) panic
/// at once with their own message.
pub struct Checks {
    test: &'static str,
    failed: Vec<String>,
}

impl Checks {
    pub fn new(test: &'static str) -> Checks {
        Checks {
            test,
            failed: Vec::new(),
        }
    }

    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            let m = msg();
            report(&format!("[{}] CHECK FAILED: {m}", self.test));
            self.failed.push(m);
        }
    }

    pub fn finish(self) {
        if !self.failed.is_empty() {
            panic!(
                "{}: {} check(s) failed:\n\n{}",
                self.test,
                self.failed.len(),
                self.failed.join("\n\n")
            );
        }
    }
}

/// A hard step: its failure ends the test with the message.
pub fn must<T>(r: Result<T, String>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub fn role_name(ip: Option<Ipv4Addr>) -> &'static str {
    match ip {
        Some(SERVER_IP) => "the primary",
        Some(SECONDARY_IP) => "the secondary",
        _ => "an unknown server",
    }
}

/// Starts primary then secondary on `conf` and waits until both say the
/// sync is done, the secondary is passive and the primary linked.
pub fn start_synced<'a>(pair: &'a PairLab, conf: &ServerConf) -> (Server<'a>, Server<'a>) {
    let p = pair.start_node(PRIMARY, conf);
    let s = pair.start_node(SECONDARY, conf);
    wait_synced(&p, 0, &s, 0, SYNC_WAIT);
    (p, s)
}

/// Waits for a (re)sync after the given log marks.
pub fn wait_synced(p: &Server, p_mark: usize, s: &Server, s_mark: usize, timeout: Duration) {
    for (srv, mark, needle) in [
        (p, p_mark, "sync done"),
        (s, s_mark, "sync done"),
        // From whatever mode the node was in (Unlinked, PartnerDown, ...).
        (s, s_mark, " -> Passive"),
        (p, p_mark, " -> Linked"),
    ] {
        if let Err(e) = srv.wait_log(mark, needle, timeout) {
            panic!(
                "the link did not come up: {e}\n{}",
                other_log(srv, p, s).log_tail(40)
            );
        }
    }
}

/// The log of whichever of `p`/`s` is not `srv`, for context.
pub fn other_log<'s, 'a>(srv: &Server, p: &'s Server<'a>, s: &'s Server<'a>) -> &'s Server<'a> {
    if srv.log == p.log {
        s
    } else {
        p
    }
}

/// Waits until `srv`'s lease file holds `mac` at `ip`; Err names both.
pub fn wait_pair_in(
    srv: &Server,
    mac: &str,
    ip: Ipv4Addr,
    timeout: Duration,
) -> Result<(), String> {
    wait_for(
        timeout,
        &format!("{ip} for {mac} in {}", srv.leasefile.display()),
        || {
            srv.lease_pairs()
                .contains(&(ip, mac.to_string()))
                .then_some(())
        },
    )
    .map_err(|e| {
        format!(
            "{e}\n--- lease file now: {:?}\n{}",
            srv.lease_pairs(),
            srv.log_tail(30)
        )
    })
}

/// Addresses held by more than one MAC across the named sources.
pub fn duplicates(sources: &[(&str, Vec<(Ipv4Addr, String)>)]) -> Vec<String> {
    let mut by_ip: BTreeMap<Ipv4Addr, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
    for (name, pairs) in sources {
        for (ip, mac) in pairs {
            by_ip
                .entry(*ip)
                .or_default()
                .entry(mac.clone())
                .or_default()
                .push(name);
        }
    }
    by_ip
        .into_iter()
        .filter(|(_, macs)| macs.len() > 1)
        .map(|(ip, macs)| {
            let who: Vec<String> = macs
                .iter()
                .map(|(mac, srcs)| format!("{mac} (per {})", srcs.join(", ")))
                .collect();
            format!("{ip} held by {}", who.join(" and "))
        })
        .collect()
}

/// Starts one udhcpc per host at once (asking for `want[i]` when given)
/// and waits for all; the clients keep running (and holding their
/// leases) until dropped.
pub fn obtain_all<'a>(
    lab: &'a Lab,
    hosts: &[Host],
    want: &[Option<Ipv4Addr>],
) -> Vec<(Udhcpc<'a>, Result<Lease, String>)> {
    let clients: Vec<Udhcpc<'a>> = hosts
        .iter()
        .zip(want)
        .map(|(h, w)| {
            let mut c = Udhcpc::new(lab, h);
            c.request = *w;
            c
        })
        .collect();
    thread::scope(|sc| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                sc.spawn(move || {
                    let r = c.obtain();
                    (c, r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect()
    })
}

/// A client served by the primary for certain: while it obtains, it and
/// the secondary are isolated on the bridge, so it only hears the primary
/// (a no-op once a passive secondary keeps out of DHCP, which it does not
/// yet, see scenario 1). Isolation is lifted afterwards.
pub fn obtain_from_primary<'a>(pair: &'a PairLab, host: &Host, what: &str) -> (Udhcpc<'a>, Lease) {
    let lab = &pair.lab;
    lab.set_isolated(&pair.secondary, true);
    lab.set_isolated(host, true);
    let mut c = Udhcpc::new(lab, host);
    let r = c.obtain();
    lab.set_isolated(&pair.secondary, false);
    lab.set_isolated(host, false);
    let l = must(r, &format!("{what} ({})", host.mac));
    assert_eq!(
        l.server_id,
        Some(SERVER_IP),
        "{what}: steered to the primary, served by {}: {l:?}",
        role_name(l.server_id)
    );
    (c, l)
}

pub fn obtain(c: &mut Udhcpc, host: &Host, what: &str) -> Lease {
    must(c.obtain(), &format!("{what} ({})", host.mac))
}

/// Turns client `host`'s port isolation on or off together with
/// `server`'s: while on, those clients hear only the other node.
pub fn steer(lab: &Lab, server: &Host, hosts: &[Host], on: bool) {
    lab.set_isolated(server, on);
    for h in hosts {
        lab.set_isolated(h, on);
    }
}

/// Every udhcpc a scenario ran, one per client host, kept running (and
/// holding its lease) until the fleet is dropped; its events are the
/// ledger of what the clients were told.
pub struct Fleet<'a> {
    lab: &'a Lab,
    clients: Vec<(Host, Udhcpc<'a>)>,
}

impl<'a> Fleet<'a> {
    pub fn new(lab: &'a Lab) -> Fleet<'a> {
        Fleet {
            lab,
            clients: Vec::new(),
        }
    }

    /// `n` new client hosts (not yet running a client).
    pub fn add_hosts(&self, n: usize) -> Vec<Host> {
        (0..n).map(|_| self.lab.add_client()).collect()
    }

    /// [`obtain_while`](Self::obtain_while) with nothing to do meanwhile.
    pub fn obtain(&mut self, hosts: &[Host], tries: u32) -> Vec<Result<Lease, String>> {
        self.obtain_while(hosts, tries, || {})
    }

    /// Starts (or restarts, forgetting its lease: a fresh DISCOVER with no
    /// requested address) one udhcpc per host at once, `tries` DISCOVERs a
    /// second apart; runs `meanwhile` on this thread while they try, then
    /// waits for all. Results are in `hosts`' order.
    pub fn obtain_while(
        &mut self,
        hosts: &[Host],
        tries: u32,
        meanwhile: impl FnOnce(),
    ) -> Vec<Result<Lease, String>> {
        for h in hosts {
            if !self.clients.iter().any(|(x, _)| x.mac == h.mac) {
                self.clients.push((h.clone(), Udhcpc::new(self.lab, h)));
            }
        }
        let macs: Vec<&str> = hosts.iter().map(|h| h.mac.as_str()).collect();
        let mut got: BTreeMap<String, Result<Lease, String>> = thread::scope(|sc| {
            let handles: Vec<_> = self
                .clients
                .iter_mut()
                .filter(|(h, _)| macs.contains(&h.mac.as_str()))
                .map(|(h, c)| {
                    sc.spawn(move || {
                        c.stop();
                        c.tries = tries;
                        c.interval = 1;
                        (h.mac.clone(), c.obtain())
                    })
                })
                .collect();
            meanwhile();
            handles
                .into_iter()
                .map(|h| h.join().expect("a client thread panicked"))
                .collect()
        });
        hosts
            .iter()
            .map(|h| {
                got.remove(&h.mac)
                    .unwrap_or_else(|| Err(format!("no client ran on {}", h.mac)))
            })
            .collect()
    }

    /// The client of `host`, which must have been started by this fleet.
    pub fn client(&mut self, host: &Host) -> &mut Udhcpc<'a> {
        self.clients
            .iter_mut()
            .find(|(h, _)| h.mac == host.mac)
            .map(|(_, c)| c)
            .expect("a host of this fleet")
    }

    /// What every client was told, from its hook's records.
    pub fn ledger(&self) -> Ledger {
        let mut l = Ledger::default();
        for (h, c) in &self.clients {
            l.add_events(&h.mac, &c.events());
        }
        l
    }
}

/// A time as the client hook writes it (`date +%s.%N`).
fn hook_time(v: &str) -> Option<SystemTime> {
    let (s, frac) = v.trim().split_once('.').unwrap_or((v.trim(), "0"));
    let digits: String = frac.chars().take(9).collect();
    let nanos: u64 = format!("{digits:0<9}").parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(s.parse().ok()?) + Duration::from_nanos(nanos))
}

/// An address a client held, as it was told: from the ACK until its lease
/// time ran out or the client's next event (a new ACK, or a drop).
#[derive(Clone, Debug)]
pub struct Held {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub from: SystemTime,
    pub until: SystemTime,
    /// The event that ended it early, if one did (`nak`, `deconfig`, ...).
    pub ended_by: Option<String>,
}

impl Held {
    fn describe(&self) -> String {
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| format!("{:.3}", d.as_secs_f64()))
                .unwrap_or_default()
        };
        format!(
            "{} {} from {} ({} .. {}{})",
            self.mac,
            self.ip,
            role_name(self.server),
            secs(self.from),
            secs(self.until),
            self.ended_by
                .as_ref()
                .map_or(String::new(), |e| format!(", ended by {e}"))
        )
    }
}

/// Every ACK the clients took, with the time each held its address.
#[derive(Default, Debug)]
pub struct Ledger {
    pub held: Vec<Held>,
    /// Events the hook wrote without a readable time.
    pub untimed: usize,
}

impl Ledger {
    /// Adds the ACKs (udhcpc `bound`, `renew`) among `mac`'s events.
    pub fn add_events(&mut self, mac: &str, events: &[Event]) {
        let timed: Vec<(SystemTime, &Event)> = events
            .iter()
            .filter_map(|e| {
                let t = e.env.get("TMQT_TIME").and_then(|v| hook_time(v));
                if t.is_none() {
                    self.untimed += 1;
                }
                Some((t?, e))
            })
            .collect();
        for (i, (at, ev)) in timed.iter().enumerate() {
            if ev.reason != "bound" && ev.reason != "renew" {
                continue;
            }
            let Some(ip) = ev.env.get("ip").and_then(|a| a.parse().ok()) else {
                continue;
            };
            let lease = ev
                .env
                .get("lease")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let mut until = *at + Duration::from_secs(lease);
            let mut ended_by = None;
            if let Some((next, nev)) = timed.get(i + 1) {
                if *next < until {
                    until = *next;
                    if nev.reason != "bound" && nev.reason != "renew" {
                        ended_by = Some(nev.reason.clone());
                    }
                }
            }
            self.held.push(Held {
                mac: mac.to_string(),
                ip,
                server: ev.env.get("serverid").and_then(|a| a.parse().ok()),
                from: *at,
                until,
                ended_by,
            });
        }
    }

    /// Addresses held by two clients at overlapping times.
    pub fn duplicates(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, a) in self.held.iter().enumerate() {
            for b in &self.held[i + 1..] {
                if a.ip == b.ip && a.mac != b.mac && a.from < b.until && b.from < a.until {
                    out.push(format!(
                        "{} held twice:\n    {}\n    {}",
                        a.ip,
                        a.describe(),
                        b.describe()
                    ));
                }
            }
        }
        out
    }

    /// Leases a NAK took from a client before they ran out.
    pub fn lost_to_naks(&self) -> Vec<String> {
        self.held
            .iter()
            .filter(|h| h.ended_by.as_deref() == Some("nak"))
            .map(Held::describe)
            .collect()
    }

    /// What each client still holds at `t`.
    pub fn live_at(&self, t: SystemTime) -> Vec<&Held> {
        self.held
            .iter()
            .filter(|h| h.from <= t && t < h.until)
            .collect()
    }

    /// The live leases (at `t`) that `table` (address, MAC) lacks.
    pub fn missing_from(
        &self,
        t: SystemTime,
        table: &std::collections::BTreeSet<(Ipv4Addr, String)>,
    ) -> Vec<String> {
        self.live_at(t)
            .into_iter()
            .filter(|h| !table.contains(&(h.ip, h.mac.clone())))
            .map(Held::describe)
            .collect()
    }

    /// One line per ACK, for the report.
    pub fn summary(&self) -> String {
        self.held
            .iter()
            .map(|h| format!("  {}", h.describe()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
