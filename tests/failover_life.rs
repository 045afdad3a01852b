//! The life of a real failover pair (issue 14, Build item 10): the
//! operations a pair goes through over years, each with real processes in
//! network namespaces (see `netns::PairLab`: primary 198.18.0.1, secondary
//! 198.18.0.2, the link on its own veth 198.19.0.1 - 198.19.0.2) and BusyBox
//! udhcpc clients:
//!
//! a. the primary's database replaced, partner alive;
//! b. the secondary's database replaced, partner alive;
//! c. the primary's database replaced, partner down (then it returns);
//! d. partner-down declared on the secondary, then the primary returns;
//! e. a client the secondary knows re-DISCOVERs after a takeover;
//! f. a dhcp-range edited on one node (link refused), then put back.
//!
//! Every scenario keeps a ledger of every ACK the clients took (the client
//! hook records each event with its time) and ends with both nodes linked
//! and synced, where it checks the ledger against both nodes' final lease
//! files: no address held by two clients at overlapping times, no ACKed
//! lease missing from either table, and no lease taken back by a NAK
//! before it ran out. New clients that get no address at all are no
//! violation: a node that cannot prove its table complete is to wait.
//!
//! Small ranges (8 addresses, 4 per share at failover-split 50) make the
//! allocator's choice certain: new clients take every address of a share.
//! New clients are steered to one node by bridge port isolation.
//!
//! Run as root: `cargo test --test failover_life -- --test-threads=2`.
//! What each scenario saw is written to stderr, so it shows without
//! `--nocapture`.

mod netns;

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use netns::pair::{
    must, pair, report, role_name, start_synced, steer, wait_pair_in, wait_synced, Checks, Fleet,
    CONVERGE_WAIT, PRIMARY, RESYNC_WAIT, SECONDARY, SYNC_WAIT,
};
use netns::{Lease, PairLab, Server, ServerConf, RANGE_START, SECONDARY_IP};

/// The last address of an 8-address range from `RANGE_START`.
const SMALL_END: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 107);
/// DISCOVERs (a second apart) a new client sends before it gives up: long
/// enough for a restarted node to sync with a live partner (the
/// secondary's reconnect backoff is at most 4 s).
const PATIENT: u32 = 15;
/// How long the link stays cut after a node restarts in scenarios a and
/// b: the seconds before the partner reconnects, which a live partner in
/// its reconnect backoff (up to 4 s) also leaves.
const RECONNECT_GAP: Duration = Duration::from_secs(3);
/// For clients expected to get nothing.
const BRIEF: u32 = 4;

fn small_range() -> ServerConf {
    ServerConf::standard_range(RANGE_START, SMALL_END)
}

/// Replaces a node's disk: database and lease file gone (the lease file
/// would otherwise be imported into the empty database).
fn wipe(srv: &Server) {
    if srv.db.exists() {
        must(
            fs::remove_dir_all(&srv.db).map_err(|e| e.to_string()),
            "removing the database",
        );
    }
    let _ = fs::remove_file(&srv.leasefile);
}

/// Lines for the report and the checks: what each client got.
fn describe(what: &str, hosts: &[netns::Host], got: &[Result<Lease, String>]) -> String {
    let lines: Vec<String> = hosts
        .iter()
        .zip(got)
        .map(|(h, r)| match r {
            Ok(l) => format!(
                "  {what} {} -> {} from {} ({:?} s)",
                h.mac,
                l.address,
                role_name(l.server_id),
                l.lease_time
            ),
            Err(_) => format!("  {what} {} -> nothing", h.mac),
        })
        .collect();
    lines.join("\n")
}

/// Hard step: every client of a setup phase must get an address.
fn all_served(what: &str, got: &[Result<Lease, String>]) -> Vec<Lease> {
    got.iter()
        .map(|r| match r {
            Ok(l) => l.clone(),
            Err(e) => panic!("{what}: a client got no address: {e}"),
        })
        .collect()
}

/// Both nodes linked and synced by now: the lease files must end equal,
/// and the ledger of every ACK must agree with them.
fn check_ledger(test: &str, p: &Server, s: &Server, fleet: &Fleet, checks: &mut Checks) {
    // The lease files are rewritten at most once a second: wait until both
    // agree with each other and with the ledger, or the wait ends.
    let converged = netns::wait_for(CONVERGE_WAIT, "equal lease files", || {
        let (a, b) = (p.lease_pairs(), s.lease_pairs());
        let ledger = fleet.ledger();
        let now = SystemTime::now();
        (a == b && ledger.missing_from(now, &a).is_empty()).then_some(())
    });
    let (pt, st) = (p.lease_pairs(), s.lease_pairs());
    let _ = converged;
    checks.check(pt == st, || {
        format!(
            "the lease files differ after the sync:\n--- primary:   {pt:?}\n--- secondary: {st:?}"
        )
    });
    let ledger = fleet.ledger();
    let now = SystemTime::now();
    report(&format!(
        "[{test}] ledger, {} ACK(s):\n{}\n[{test}] final tables: primary {pt:?}; secondary {st:?}",
        ledger.held.len(),
        ledger.summary()
    ));
    checks.check(ledger.untimed == 0, || {
        format!("{} client event(s) without a time", ledger.untimed)
    });
    let dups = ledger.duplicates();
    checks.check(dups.is_empty(), || {
        format!(
            "{} address(es) held by two clients at once:\n  {}",
            dups.len(),
            dups.join("\n  ")
        )
    });
    let naked = ledger.lost_to_naks();
    checks.check(naked.is_empty(), || {
        format!(
            "ACKed leases taken back by a NAK before they ran out:\n  {}",
            naked.join("\n  ")
        )
    });
    for (table, name) in [(&pt, "primary"), (&st, "secondary")] {
        let missing = ledger.missing_from(now, table);
        checks.check(missing.is_empty(), || {
            format!(
                "ACKed leases still held by their clients are missing from the {name}'s table:\n  {}",
                missing.join("\n  ")
            )
        });
    }
}

/// Starts `srv` and at once `n` new clients steered to it (the other node
/// isolated from them); returns their hosts and results. With `gap`, the
/// link is cut before the start and healed that long after it.
fn restart_with_new_clients(
    pair: &PairLab,
    fleet: &mut Fleet,
    srv: &mut Server,
    other: &netns::Host,
    n: usize,
    tries: u32,
    gap: Option<Duration>,
) -> (Vec<netns::Host>, Vec<Result<Lease, String>>) {
    let hosts = fleet.add_hosts(n);
    steer(&pair.lab, other, &hosts, true);
    if gap.is_some() {
        pair.link.cut();
    }
    let got = fleet.obtain_while(&hosts, tries, || {
        srv.start();
        if let Some(g) = gap {
            thread::sleep(g);
            pair.link.heal();
        }
    });
    steer(&pair.lab, other, &hosts, false);
    (hosts, got)
}

// ---------------------------------------------------------------------------

/// a. The primary's box is replaced (kill -9, database and lease file
/// gone, restarted) while the secondary is alive; new clients arrive at
/// once, during the seconds before the secondary reconnects (the link is
/// held down for [`RECONNECT_GAP`]). It must not hand out the addresses its
/// old clients hold: it learns them from the secondary's sync first.
#[test]
fn replaced_primary_database_partner_alive() {
    const T: &str = "replaced_primary_database_partner_alive";
    let pair = pair!(T);
    let mut checks = Checks::new(T);
    let (mut p, s) = start_synced(&pair, &small_range());
    let mut fleet = Fleet::new(&pair.lab);

    let old = fleet.add_hosts(2);
    steer(&pair.lab, &pair.secondary, &old, true);
    let got = fleet.obtain(&old, BRIEF);
    steer(&pair.lab, &pair.secondary, &old, false);
    let old_leases = all_served("old clients of the linked primary", &got);
    for (h, l) in old.iter().zip(&old_leases) {
        must(
            wait_pair_in(&s, &h.mac, l.address, netns::SERVER_TIMEOUT),
            "an old lease replicated to the secondary",
        );
    }

    p.kill9();
    wipe(&p);
    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    let t0 = Instant::now();
    let (new, got) = restart_with_new_clients(
        &pair,
        &mut fleet,
        &mut p,
        &pair.secondary,
        4,
        PATIENT,
        Some(RECONNECT_GAP),
    );
    report(&format!(
        "[{T}] old clients:\n{}\n[{T}] new clients at the restart ({:?}):\n{}",
        describe("old", &old, &got_ok(&old_leases)),
        t0.elapsed(),
        describe("new", &new, &got)
    ));
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    check_ledger(T, &p, &s, &fleet, &mut checks);
    checks.finish();
}

/// b. The secondary's box is replaced while the primary is alive. The old
/// clients hold addresses of the secondary's share too (the linked primary
/// reached into it once its own was full); new clients steered to the
/// restarted secondary, before it reconnects ([`RECONNECT_GAP`]), must not
/// get those.
#[test]
fn replaced_secondary_database_partner_alive() {
    const T: &str = "replaced_secondary_database_partner_alive";
    let pair = pair!(T);
    let mut checks = Checks::new(T);
    let (p, mut s) = start_synced(&pair, &small_range());
    let mut fleet = Fleet::new(&pair.lab);

    // Six clients of the linked primary: its four, then two of the
    // secondary's share. One at a time, so the primary's share fills first.
    let old = fleet.add_hosts(6);
    let mut old_leases = Vec::new();
    for h in &old {
        steer(&pair.lab, &pair.secondary, std::slice::from_ref(h), true);
        let got = fleet.obtain(std::slice::from_ref(h), BRIEF);
        steer(&pair.lab, &pair.secondary, std::slice::from_ref(h), false);
        old_leases.extend(all_served("old clients of the linked primary", &got));
    }
    for (h, l) in old.iter().zip(&old_leases) {
        must(
            wait_pair_in(&s, &h.mac, l.address, netns::SERVER_TIMEOUT),
            "an old lease replicated to the secondary",
        );
    }

    s.kill9();
    wipe(&s);
    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    let (new, got) = restart_with_new_clients(
        &pair,
        &mut fleet,
        &mut s,
        &pair.primary,
        4,
        BRIEF,
        Some(RECONNECT_GAP),
    );
    report(&format!(
        "[{T}] old clients:\n{}\n[{T}] new clients at the secondary's restart:\n{}",
        describe("old", &old, &got_ok(&old_leases)),
        describe("new", &new, &got)
    ));
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    check_ledger(T, &p, &s, &fleet, &mut checks);
    checks.finish();
}

/// c. The primary's box is replaced while the secondary is down too. The
/// clients it served before hold their addresses (the stopped secondary
/// knows them), so the restarted primary must not hand those out to new
/// clients; once the secondary returns and they sync, it serves again.
#[test]
fn replaced_primary_database_partner_down() {
    const T: &str = "replaced_primary_database_partner_down";
    let pair = pair!(T);
    let mut checks = Checks::new(T);
    let (mut p, mut s) = start_synced(&pair, &small_range());
    let mut fleet = Fleet::new(&pair.lab);

    let old = fleet.add_hosts(2);
    steer(&pair.lab, &pair.secondary, &old, true);
    let got = fleet.obtain(&old, BRIEF);
    steer(&pair.lab, &pair.secondary, &old, false);
    let old_leases = all_served("clients of the linked primary", &got);
    for (h, l) in old.iter().zip(&old_leases) {
        must(
            wait_pair_in(&s, &h.mac, l.address, netns::SERVER_TIMEOUT),
            "a lease replicated to the secondary",
        );
    }
    // The secondary takes over and serves two clients of its own.
    let s_mark = s.log_mark();
    p.kill9();
    must(
        s.wait_log(
            s_mark,
            "serve mode Passive -> ",
            pair.timings.timeout() + Duration::from_secs(5),
        ),
        "the secondary taking over",
    );
    let by_s = fleet.add_hosts(2);
    let got = fleet.obtain(&by_s, PATIENT);
    let by_s_leases = all_served("clients of the lone secondary", &got);
    s.stop();

    // The primary's disk is replaced; the partner is down; clients arrive.
    wipe(&p);
    let (new, got) =
        restart_with_new_clients(&pair, &mut fleet, &mut p, &pair.secondary, 4, BRIEF, None);
    report(&format!(
        "[{T}] clients of the linked primary:\n{}\n[{T}] of the lone secondary:\n{}\n[{T}] new clients of the replaced primary, partner down:\n{}",
        describe("old", &old, &got_ok(&old_leases)),
        describe("sec", &by_s, &got_ok(&by_s_leases)),
        describe("new", &new, &got)
    ));

    // The secondary returns: after the sync the new clients are served.
    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    s.start();
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    let unserved: Vec<netns::Host> = new
        .iter()
        .zip(&got)
        .filter(|(_, r)| r.is_err())
        .map(|(h, _)| h.clone())
        .collect();
    let again = fleet.obtain(&unserved, PATIENT);
    report(&format!(
        "[{T}] after the secondary's return:\n{}",
        describe("retry", &unserved, &again)
    ));
    checks.check(again.iter().all(Result::is_ok), || {
        format!(
            "after the sync, new clients still get no address (4 are free):\n{}",
            describe("retry", &unserved, &again)
        )
    });
    check_ledger(T, &p, &s, &fleet, &mut checks);
    checks.finish();
}

/// d. The primary dies; the operator declares it down on the secondary,
/// which after an MCLT hands out addresses of the primary's share too. The
/// primary returns with its database intact but unaware of partner-down:
/// new clients at once must not get what the secondary gave out.
#[test]
fn partner_down_then_primary_returns() {
    const T: &str = "partner_down_then_primary_returns";
    let mut pair = pair!(T);
    // Short, so the partner's share opens within the test; leases granted
    // apart are this long too.
    pair.timings.mclt_secs = 8;
    let mut checks = Checks::new(T);
    let sock = pair.lab.dir().join("secondary.sock");
    let base = small_range();
    let mut p = pair.start_node(PRIMARY, &base);
    let s_conf = pair
        .node_conf(SECONDARY, &base, &pair.key)
        .line(format!("control-socket={}", sock.display()));
    let mut s = pair.node(SECONDARY, &s_conf);
    s.start();
    wait_synced(&p, 0, &s, 0, SYNC_WAIT);
    let mut fleet = Fleet::new(&pair.lab);

    let old = fleet.add_hosts(2);
    steer(&pair.lab, &pair.secondary, &old, true);
    let got = fleet.obtain(&old, BRIEF);
    steer(&pair.lab, &pair.secondary, &old, false);
    let old_leases = all_served("clients of the linked primary", &got);
    for (h, l) in old.iter().zip(&old_leases) {
        must(
            wait_pair_in(&s, &h.mac, l.address, netns::SERVER_TIMEOUT),
            "a lease replicated to the secondary",
        );
    }

    let s_mark = s.log_mark();
    p.kill9();
    must(
        s.wait_log(
            s_mark,
            "serve mode Passive -> ",
            pair.timings.timeout() + Duration::from_secs(5),
        ),
        "the secondary taking over",
    );
    let out = twinmasq(&[
        "failover",
        "partner-down",
        &format!("--control-socket={}", sock.display()),
    ]);
    checks.check(out.status.success(), || {
        format!("partner-down refused: {}", text(&out))
    });
    report(&format!("[{T}] partner-down: {}", text(&out).trim()));
    // The primary's share opens an MCLT later.
    thread::sleep(Duration::from_secs(pair.timings.mclt_secs + 1));
    // Five clients: the secondary's four, then one of the primary's.
    let by_s = fleet.add_hosts(5);
    let mut by_s_got = Vec::new();
    for h in &by_s {
        by_s_got.extend(fleet.obtain(std::slice::from_ref(h), BRIEF));
    }
    report(&format!(
        "[{T}] clients of the secondary in partner-down:\n{}",
        describe("sec", &by_s, &by_s_got)
    ));
    checks.check(by_s_got.iter().all(Result::is_ok), || {
        format!(
            "in partner-down the secondary did not serve 5 clients (6 addresses free):\n{}",
            describe("sec", &by_s, &by_s_got)
        )
    });

    // The primary returns, database intact; new clients at once.
    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    let (new, got) =
        restart_with_new_clients(&pair, &mut fleet, &mut p, &pair.secondary, 3, PATIENT, None);
    report(&format!(
        "[{T}] new clients at the primary's return:\n{}",
        describe("new", &new, &got)
    ));
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    check_ledger(T, &p, &s, &fleet, &mut checks);
    checks.finish();
}

/// e. A client with a replicated lease: kill -9 of the primary, and the
/// client starts afresh (a DISCOVER with no requested address). The
/// secondary knows its binding and must offer it that address, not a new
/// one of its own share.
#[test]
fn known_client_rediscovers_after_takeover() {
    const T: &str = "known_client_rediscovers_after_takeover";
    let pair = pair!(T);
    let mut checks = Checks::new(T);
    let (mut p, s) = start_synced(&pair, &ServerConf::standard());
    let mut fleet = Fleet::new(&pair.lab);

    let known = fleet.add_hosts(1);
    steer(&pair.lab, &pair.secondary, &known, true);
    let got = fleet.obtain(&known, BRIEF);
    steer(&pair.lab, &pair.secondary, &known, false);
    let first = all_served("a client of the linked primary", &got).remove(0);
    must(
        wait_pair_in(&s, &known[0].mac, first.address, netns::SERVER_TIMEOUT),
        "the lease replicated to the secondary",
    );

    let s_mark = s.log_mark();
    p.kill9();
    must(
        s.wait_log(
            s_mark,
            "serve mode Passive -> ",
            pair.timings.timeout() + Duration::from_secs(5),
        ),
        "the secondary taking over",
    );
    // A fresh udhcpc: it forgot its lease and DISCOVERs without option 50.
    let again = fleet.obtain(&known, PATIENT);
    report(&format!(
        "[{T}] before: {} from {}; after the takeover:\n{}",
        first.address,
        role_name(first.server_id),
        describe("again", &known, &again)
    ));
    match &again[0] {
        Ok(l) => {
            checks.check(l.server_id == Some(SECONDARY_IP), || {
                format!(
                    "served by {}, not the secondary: {l:?}",
                    role_name(l.server_id)
                )
            });
            checks.check(l.address == first.address, || {
                format!(
                    "the known client was given {} by the secondary, not its replicated binding {}",
                    l.address, first.address
                )
            });
        }
        Err(e) => checks.check(false, || {
            format!(
                "the known client got nothing from the secondary: {e}\n{}",
                s.log_tail(30)
            )
        }),
    }

    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    p.start();
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    check_ledger(T, &p, &s, &fleet, &mut checks);
    checks.finish();
}

/// f. The secondary's dhcp-range is edited (restart with another range):
/// the link is refused. Sixteen clients arrive while refused; whatever
/// either node hands out, no address goes to two clients. The range is put
/// back, the link comes up, and the tables agree with the ledger.
#[test]
fn range_edit_on_one_node() {
    const T: &str = "range_edit_on_one_node";
    let pair = pair!(T);
    let mut checks = Checks::new(T);
    let last = Ipv4Addr::new(198, 18, 0, 123);
    let conf = ServerConf::standard_range(RANGE_START, last);
    let (p, mut s) = start_synced(&pair, &conf);
    let mut fleet = Fleet::new(&pair.lab);

    let old = fleet.add_hosts(4);
    let got = fleet.obtain(&old, BRIEF);
    let old_leases = all_served("clients of the linked pair", &got);
    for (h, l) in old.iter().zip(&old_leases) {
        must(
            wait_pair_in(&s, &h.mac, l.address, netns::SERVER_TIMEOUT),
            "a lease replicated to the secondary",
        );
    }

    // The edit: the secondary's range starts 8 addresses later.
    s.stop();
    let edited = ServerConf::standard_range(Ipv4Addr::new(198, 18, 0, 108), last);
    let mut s2 = pair.node(SECONDARY, &pair.node_conf(SECONDARY, &edited, &pair.key));
    let p_mark = p.log_mark();
    s2.start();
    must(
        p.wait_log(p_mark, "differ between the nodes", SYNC_WAIT),
        "the primary refusing the link after the range edit",
    );
    let new = fleet.add_hosts(16);
    let got = fleet.obtain(&new, BRIEF);
    let served = got.iter().filter(|r| r.is_ok()).count();
    report(&format!(
        "[{T}] 16 new clients while the link is refused: {served} served\n{}",
        describe("new", &new, &got)
    ));
    let dups = fleet.ledger().duplicates();
    checks.check(dups.is_empty(), || {
        format!(
            "while refused, addresses held twice:\n  {}",
            dups.join("\n  ")
        )
    });

    // Put back: the secondary's range as before (same database).
    s2.stop();
    drop(s2);
    drop(s);
    let mut s = pair.node(SECONDARY, &pair.node_conf(SECONDARY, &conf, &pair.key));
    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    s.start();
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    check_ledger(T, &p, &s, &fleet, &mut checks);
    checks.finish();
}

// ---------------------------------------------------------------------------

fn got_ok(leases: &[Lease]) -> Vec<Result<Lease, String>> {
    leases.iter().cloned().map(Ok).collect()
}

fn twinmasq(args: &[&str]) -> Output {
    // The subcommands bound their own waits (15 s at most).
    Command::new(env!("CARGO_BIN_EXE_twinmasq"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run twinmasq {args:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// The ledger's arithmetic, without root.
#[test]
fn ledger_finds_overlaps_and_losses() {
    use netns::Event;
    let ev = |reason: &str, t: &str, ip: &str, lease: &str| Event {
        reason: reason.into(),
        env: [
            ("TMQT_TIME", t),
            ("ip", ip),
            ("lease", lease),
            ("serverid", "198.18.0.1"),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let mut l = netns::pair::Ledger::default();
    // a holds .100 from 100 s for 60 s; b takes .100 at 150 s: overlap.
    l.add_events(
        "02:00:00:00:00:0a",
        &[
            ev("deconfig", "99.5", "", ""),
            ev("bound", "100.0", "198.18.0.100", "60"),
        ],
    );
    l.add_events(
        "02:00:00:00:00:0b",
        &[ev("bound", "150.25", "198.18.0.100", "60")],
    );
    // c holds .101 until a NAK at 110 s; d takes it at 120 s: no overlap,
    // but c's lease was lost early.
    l.add_events(
        "02:00:00:00:00:0c",
        &[
            ev("bound", "100.0", "198.18.0.101", "60"),
            ev("nak", "110.0", "", ""),
        ],
    );
    l.add_events(
        "02:00:00:00:00:0d",
        &[ev("bound", "120.0", "198.18.0.101", "60")],
    );
    let d = l.duplicates();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].starts_with("198.18.0.100 held twice"), "{d:?}");
    let lost = l.lost_to_naks();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].contains("02:00:00:00:00:0c"), "{lost:?}");
    let t = std::time::UNIX_EPOCH + Duration::from_secs(155);
    let table: BTreeSet<(Ipv4Addr, String)> = [(
        Ipv4Addr::new(198, 18, 0, 100),
        "02:00:00:00:00:0b".to_string(),
    )]
    .into();
    // Live at 155 s: a, b and d; the table has only b.
    let missing = l.missing_from(t, &table);
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert_eq!(l.untimed, 0);
}
