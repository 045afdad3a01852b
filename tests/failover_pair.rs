//! A real twinmasq failover pair in network namespaces: two server
//! processes (primary on 198.18.0.1, secondary on 198.18.0.2) on the LAN
//! bridge with real DHCP clients (BusyBox udhcpc), and the failover link on
//! a separate veth between the two server namespaces (198.19.0.1 -
//! 198.19.0.2), which a test can cut alone. See `netns::PairLab`.
//!
//! Short timings throughout (`netns::FailoverTimings::SHORT`):
//! failover-heartbeat=200ms, failover-timeout=1, failover-mclt=60.
//!
//! Run as root: `cargo test --test failover_pair -- --test-threads=2`.
//! Measurements (takeover time, time to notice a cut link) are written to
//! stderr directly, so they show without `--nocapture`.
//!
//! A failed check lists every violation found in the scenario (the
//! scenario goes on where it can), with log excerpts; the lab's Drop also
//! dumps every log and lease file when a test panics.

mod netns;

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use netns::pair::{
    duplicates, must, obtain, obtain_all, obtain_from_primary, pair, report, role_name,
    start_synced, wait_pair_in, wait_synced, Checks, CONVERGE_WAIT, PRIMARY, REFUSED_WATCH,
    RESYNC_WAIT, SECONDARY, SYNC_WAIT,
};
use netns::{
    log_line_time, wait_for, Host, Lease, PairLab, Server, ServerConf, Udhcpc, RANGE_START,
    SECONDARY_IP, SERVER_IP,
};

/// The MCLT of tests whose primary starts alone: it waits that long.
/// Leases it grants alone last no longer, and one must still be live
/// when renewed after the refusal checks (about 12 s).
const LONE_MCLT_SECS: u64 = 25;

/// A primary started with no partner yet, serving once its recovery wait
/// is over: a node that starts hands out nothing new until it has synced,
/// or an MCLT has passed without its partner (issue 14, case 1); the
/// caller shortens the MCLT ([`LONE_MCLT_SECS`]).
fn start_lone_primary<'a>(pair: &'a PairLab, conf: &ServerConf) -> Server<'a> {
    let p = pair.start_node(PRIMARY, conf);
    must(
        p.wait_log(
            0,
            "no sync with the partner within failover-mclt",
            Duration::from_secs(LONE_MCLT_SECS + 10),
        ),
        "the lone primary serving after its recovery wait",
    );
    p
}

// ---------------------------------------------------------------------------

/// Scenario 1: The link comes up: both nodes sync, the secondary goes
/// passive, a client is served by the primary, and its lease is in the
/// secondary's table too (the primary's ACK waited for the secondary's
/// ack).
#[test]
fn link_up_syncs_and_replicates_leases() {
    let pair = pair!("link_up_syncs_and_replicates_leases");
    let mut checks = Checks::new("link_up_syncs_and_replicates_leases");
    let conf = ServerConf::standard();
    let (p, s) = start_synced(&pair, &conf);
    let passive_mark = s.log_mark();
    checks.check(!p.log_grep(0, "merged the secondary's").is_empty(), || {
        format!(
            "primary: no \"merged the secondary's N records\" line\n{}",
            p.log_tail(30)
        )
    });

    let host = pair.lab.add_client();
    let mut c = Udhcpc::new(&pair.lab, &host).with_hostname("pair-one");
    let l = obtain(&mut c, &host, "a client of the linked pair");
    checks.check(l.server_id == Some(SERVER_IP), || {
        format!(
            "the lease came from {} ({:?}), not the primary {SERVER_IP}: a passive secondary must not answer DHCP\n{}",
            role_name(l.server_id),
            l.server_id,
            s.log_tail(30)
        )
    });
    must(
        wait_pair_in(&p, &host.mac, l.address, netns::SERVER_TIMEOUT),
        "the lease in the primary's lease file",
    );
    // The primary's ACK waited for the secondary's ack, so the secondary's
    // database has the lease by now; its lease file follows within ~1 s.
    must(
        wait_pair_in(&s, &host.mac, l.address, Duration::from_secs(3)),
        "the lease replicated to the secondary's lease file",
    );
    let line = s
        .leases()
        .into_iter()
        .find(|x| x.ip == l.address)
        .expect("just seen");
    checks.check(line.hostname.as_deref() == Some("pair-one"), || {
        format!("the secondary's copy lost the host name: {line:?}")
    });

    // Passive: the secondary answered nothing.
    let answered: Vec<String> = ["DHCPOFFER(", "DHCPACK(", "DHCPNAK("]
        .iter()
        .flat_map(|n| s.log_grep(passive_mark, n))
        .collect();
    checks.check(answered.is_empty(), || {
        format!(
            "the passive secondary answered DHCP (the engine ignores the serve mode):\n{}",
            answered.join("\n")
        )
    });
    checks.check(
        s.log_grep(passive_mark, "serve mode Passive ->").is_empty(),
        || {
            format!(
                "the secondary left Passive while linked\n{}",
                s.log_tail(30)
            )
        },
    );
    checks.finish();
}

/// Scenario 2: kill -9 the primary: the secondary takes over within
/// failover-timeout + 1 s, serves a new client, and the primary's existing
/// client keeps its address when it renews (rebinding to the secondary).
#[test]
fn secondary_takes_over_when_primary_is_killed() {
    let pair = pair!("secondary_takes_over_when_primary_is_killed");
    let mut checks = Checks::new("secondary_takes_over_when_primary_is_killed");
    let conf = ServerConf::standard();
    let (mut p, s) = start_synced(&pair, &conf);

    let old_host = pair.lab.add_client();
    let (mut old, l_old) = obtain_from_primary(&pair, &old_host, "a client of the primary");
    must(
        wait_pair_in(&s, &old_host.mac, l_old.address, netns::SERVER_TIMEOUT),
        "the lease replicated to the secondary",
    );

    let mark = s.log_mark();
    let killed_at = SystemTime::now();
    let t0 = Instant::now();
    p.kill9();
    let limit = pair.timings.timeout() + Duration::from_secs(1);
    let (line, seen) = must(
        s.wait_log(
            mark,
            "serve mode Passive -> ",
            limit + Duration::from_secs(5),
        ),
        "the secondary leaving Passive after the primary was killed",
    );
    let polled = seen - t0;
    let logged = log_line_time(&line).and_then(|t| t.duration_since(killed_at).ok());
    let took = logged.unwrap_or(polled);
    let why = s
        .log_lines_since(mark)
        .into_iter()
        .find(|l| l.contains("failover:") && !l.contains("serve mode"))
        .unwrap_or_default();
    report(&format!(
        "takeover after kill -9 of the primary: {took:?} (log time; seen by polling after {polled:?}); \
         failover-timeout {:?}; cause: {why}\n  {line}",
        pair.timings.timeout()
    ));
    checks.check(took <= limit, || {
        format!("takeover took {took:?}, more than failover-timeout + 1 s = {limit:?}\n{line}")
    });

    // A new client: only the secondary is there to serve it.
    let new_host = pair.lab.add_client();
    let mut new = Udhcpc::new(&pair.lab, &new_host);
    let l_new = obtain(&mut new, &new_host, "a new client after the primary died");
    checks.check(l_new.server_id == Some(SECONDARY_IP), || {
        format!(
            "new client served by {:?}, not the secondary: {l_new:?}",
            l_new.server_id
        )
    });
    checks.check(l_new.address != l_old.address, || {
        format!(
            "the new client got the old client's address {}",
            l_new.address
        )
    });
    if let Err(e) = wait_pair_in(&s, &new_host.mac, l_new.address, netns::SERVER_TIMEOUT) {
        checks.check(false, || {
            format!("the new lease is not in the secondary's file: {e}")
        });
    }

    // The existing client renews: its unicast to the dead primary goes
    // unanswered, it rebinds by broadcast, and the secondary, which has its
    // lease, acknowledges the same address.
    let renewed = old.renew();
    match &renewed {
        Ok(r) => {
            checks.check(r.address == l_old.address, || {
                format!(
                    "renewal moved the client from {} to {}: {r:?}",
                    l_old.address, r.address
                )
            });
            checks.check(r.server_id == Some(SECONDARY_IP), || {
                format!(
                    "renewal answered by {:?}, not the secondary: {r:?}",
                    r.server_id
                )
            });
        }
        Err(e) => checks.check(false, || {
            format!(
                "the existing client could not renew via the secondary: {e}\n{}",
                s.log_tail(30)
            )
        }),
    }
    checks.finish();
}

/// Scenario 3: The killed primary restarts on the same database: the tables
/// merge (the lease the secondary granted alone reaches the primary) and
/// the secondary goes back to Passive.
#[test]
fn restarted_primary_merges_and_secondary_goes_passive() {
    let pair = pair!("restarted_primary_merges_and_secondary_goes_passive");
    let mut checks = Checks::new("restarted_primary_merges_and_secondary_goes_passive");
    let conf = ServerConf::standard();
    let (mut p, s) = start_synced(&pair, &conf);

    let h1 = pair.lab.add_client();
    let (_c1, l1) = obtain_from_primary(&pair, &h1, "a client of the primary");
    must(
        wait_pair_in(&s, &h1.mac, l1.address, netns::SERVER_TIMEOUT),
        "the first lease replicated to the secondary",
    );

    let mark = s.log_mark();
    p.kill9();
    must(
        s.wait_log(
            mark,
            "serve mode Passive -> ",
            pair.timings.timeout() + Duration::from_secs(5),
        ),
        "the secondary taking over",
    );
    let h2 = pair.lab.add_client();
    let mut c2 = Udhcpc::new(&pair.lab, &h2);
    let l2 = obtain(&mut c2, &h2, "a client of the lone secondary");
    checks.check(l2.server_id == Some(SECONDARY_IP), || {
        format!("served by {:?}, not the secondary: {l2:?}", l2.server_id)
    });
    must(
        wait_pair_in(&s, &h2.mac, l2.address, netns::SERVER_TIMEOUT),
        "the secondary's own lease in its file",
    );

    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    p.start();
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    if let Err(e) = wait_pair_in(&p, &h2.mac, l2.address, CONVERGE_WAIT) {
        checks.check(false, || {
            format!(
                "the lease the secondary granted alone did not reach the restarted primary: {e}"
            )
        });
    }
    checks.check(
        p.lease_pairs().contains(&(l1.address, h1.mac.clone())),
        || {
            format!(
                "the restarted primary lost its own lease {} {}: {:?}",
                l1.address,
                h1.mac,
                p.leases()
            )
        },
    );
    let converged = wait_for(CONVERGE_WAIT, "equal lease files", || {
        let (a, b) = (p.lease_pairs(), s.lease_pairs());
        (a == b).then_some(a)
    });
    checks.check(converged.is_ok(), || {
        format!(
            "lease files differ after the resync: primary {:?}, secondary {:?}",
            p.lease_pairs(),
            s.lease_pairs()
        )
    });
    checks.check(
        s.log_grep(s_mark, "serve mode Passive ->").is_empty(),
        || {
            format!(
                "the secondary left Passive again after the resync\n{}",
                s.log_tail(30)
            )
        },
    );
    checks.finish();
}

/// Scenario 4: Only the link is cut; both nodes still reach the clients.
/// Clients served meanwhile must not share an address (each node allocates
/// from its own share, leases no longer than the MCLT); after the heal both
/// tables end equal.
#[test]
fn split_link_gives_no_duplicates_and_heals() {
    let pair = pair!("split_link_gives_no_duplicates_and_heals");
    let mut checks = Checks::new("split_link_gives_no_duplicates_and_heals");
    // A small range: 16 addresses, 8 per share at failover-split 50, for
    // the 8 clients below (at most 5 of them on one node).
    let last = Ipv4Addr::new(198, 18, 0, 115);
    let conf = ServerConf::standard_range(RANGE_START, last);
    let (p, s) = start_synced(&pair, &conf);

    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    let t0 = Instant::now();
    pair.link.cut();
    let noticed = pair.timings.timeout() + Duration::from_secs(5);
    let (pl, _) = must(
        p.wait_log(p_mark, "serve mode Linked -> ", noticed),
        "the primary noticing the cut",
    );
    let (sl, _) = must(
        s.wait_log(s_mark, "serve mode Passive -> ", noticed),
        "the secondary noticing the cut",
    );
    report(&format!(
        "link cut noticed after {:?} (polled; failover-timeout {:?}):\n  primary:   {pl}\n  secondary: {sl}",
        t0.elapsed(),
        pair.timings.timeout()
    ));

    // Eight new clients while split. Three reach only the primary and three
    // only the secondary (bridge port isolation steers them; both servers
    // stay on the LAN), and each of the latter asks (option 50) for the
    // address one of the former got: a node that cannot know of the other's
    // lease must still not grant it, since it is not in its share. Two more
    // reach both nodes and take the first offer, as real clients do.
    let lab = &pair.lab;
    let group_a: Vec<Host> = (0..3).map(|_| lab.add_client()).collect();
    let group_b: Vec<Host> = (0..3).map(|_| lab.add_client()).collect();
    let group_c: Vec<Host> = (0..2).map(|_| lab.add_client()).collect();
    let steer = |server: &Host, clients: &[Host], on: bool| {
        lab.set_isolated(server, on);
        for h in clients {
            lab.set_isolated(h, on);
        }
    };
    steer(&pair.secondary, &group_a, true);
    let mut got_a = obtain_all(lab, &group_a, &[None; 3]);
    steer(&pair.secondary, &group_a, false);
    let wanted: Vec<Option<Ipv4Addr>> = got_a
        .iter()
        .map(|(_, r)| r.as_ref().ok().map(|l| l.address))
        .collect();
    steer(&pair.primary, &group_b, true);
    let mut got_b = obtain_all(lab, &group_b, &wanted);
    steer(&pair.primary, &group_b, false);
    let mut got_c = obtain_all(lab, &group_c, &[None; 2]);

    let mut told: Vec<(Ipv4Addr, String)> = Vec::new();
    let mut summary = Vec::new();
    let mut served: Vec<(Host, Lease)> = Vec::new();
    for (group, hosts, got, expect) in [
        ("A", &group_a, &mut got_a, Some(SERVER_IP)),
        ("B", &group_b, &mut got_b, Some(SECONDARY_IP)),
        ("C", &group_c, &mut got_c, None),
    ] {
        for (h, (c, r)) in hosts.iter().zip(got.iter()) {
            let l = match r {
                Ok(l) => l,
                Err(e) => {
                    checks.check(false, || {
                        format!("group {group}: a client got no lease while split: {e}")
                    });
                    continue;
                }
            };
            summary.push(format!(
                "  group {group} {} -> {} from {} ({:?} s){}",
                h.mac,
                l.address,
                role_name(l.server_id),
                l.lease_time,
                c.request
                    .map_or(String::new(), |w| format!(", asked for {w}"))
            ));
            if expect.is_some() && l.server_id != expect {
                panic!(
                    "group {group} was steered to {} but served by {:?}: the port isolation did not work",
                    role_name(expect),
                    l.server_id
                );
            }
            told.push((l.address, h.mac.clone()));
            served.push((h.clone(), l.clone()));
        }
    }
    let mclt = pair.timings.mclt_secs;
    let too_long: Vec<String> = served
        .iter()
        .filter(|(_, l)| l.lease_time.is_none_or(|t| u64::from(t) > mclt))
        .map(|(h, l)| {
            format!(
                "  {} {} for {:?} s from {}",
                h.mac,
                l.address,
                l.lease_time,
                role_name(l.server_id)
            )
        })
        .collect();
    checks.check(too_long.is_empty(), || {
        format!(
            "leases granted while unlinked must not outlast failover-mclt={mclt} s:\n{}",
            too_long.join("\n")
        )
    });
    report(&format!("leases while split:\n{}", summary.join("\n")));
    // Each lease reaches the lease file of the node that granted it.
    for (h, l) in &served {
        let srv = if l.server_id == Some(SECONDARY_IP) {
            &s
        } else {
            &p
        };
        if let Err(e) = wait_pair_in(srv, &h.mac, l.address, netns::SERVER_TIMEOUT) {
            checks.check(false, || {
                format!("lease missing from its server's file: {e}")
            });
        }
    }
    let p_split: Vec<_> = p.lease_pairs().into_iter().collect();
    let s_split: Vec<_> = s.lease_pairs().into_iter().collect();
    let dups = duplicates(&[
        ("primary lease file", p_split.clone()),
        ("secondary lease file", s_split.clone()),
        ("what the clients were told", told.clone()),
    ]);
    checks.check(dups.is_empty(), || {
        format!(
            "duplicate addresses while split:\n  {}\n--- primary lease file: {p_split:?}\n--- secondary lease file: {s_split:?}\n--- clients: {told:?}",
            dups.join("\n  ")
        )
    });

    let (p_mark, s_mark) = (p.log_mark(), s.log_mark());
    let t_heal = Instant::now();
    pair.link.heal();
    wait_synced(&p, p_mark, &s, s_mark, RESYNC_WAIT);
    let synced_after = t_heal.elapsed();
    let converged = wait_for(CONVERGE_WAIT, "equal lease files", || {
        let (a, b) = (p.lease_pairs(), s.lease_pairs());
        (a == b).then_some(a)
    });
    report(&format!(
        "link healed: resynced after {synced_after:?}, lease files {} after {:?}; conflicts logged: {}",
        if converged.is_ok() { "equal" } else { "NOT equal" },
        t_heal.elapsed(),
        p.log_grep(p_mark, "conflict on").len() + s.log_grep(s_mark, "conflict on").len()
    ));
    // Both processes lived through the cut: the sync resumes, sending only
    // what changed, never the whole tables.
    for (node, mark, name) in [(&p, p_mark, "primary"), (&s, s_mark, "secondary")] {
        let (resumed, full) = (
            node.log_grep(mark, "sync done (resumed)").len(),
            node.log_grep(mark, "sync done (full)").len(),
        );
        checks.check(resumed >= 1 && full == 0, || {
            format!("{name}: after the heal {resumed} resumed and {full} full syncs; expected only resumed ones")
        });
    }
    match converged {
        Ok(merged) => {
            let missing: Vec<_> = told.iter().filter(|x| !merged.contains(x)).collect();
            checks.check(missing.is_empty(), || {
                format!("leases clients were told are missing from the merged table (with duplicates above, these are the losing sides of the conflicts): {missing:?}; merged {merged:?}")
            });
        }
        Err(e) => checks.check(false, || {
            format!(
                "{e}: after the heal the lease files differ\n--- primary:   {:?}\n--- secondary: {:?}",
                p.lease_pairs(),
                s.lease_pairs()
            )
        }),
    }
    checks.finish();
}

/// Scenario 5: The secondary has another key: no sync, the primary drops
/// the link because the frames do not verify, the secondary never goes
/// passive, and no lease crosses in either direction.
#[test]
fn wrong_key_is_refused_and_nothing_crosses() {
    let mut pair = pair!("wrong_key_is_refused_and_nothing_crosses");
    pair.timings.mclt_secs = LONE_MCLT_SECS;
    let mut checks = Checks::new("wrong_key_is_refused_and_nothing_crosses");
    let conf = ServerConf::standard();
    let p = start_lone_primary(&pair, &conf);
    let h1 = pair.lab.add_client();
    let mut c1 = Udhcpc::new(&pair.lab, &h1);
    let l1 = obtain(&mut c1, &h1, "a client of the lone primary");
    must(
        wait_pair_in(&p, &h1.mac, l1.address, netns::SERVER_TIMEOUT),
        "the primary's lease in its file",
    );

    let wrong = pair.lab.write_key_file("wrong.key");
    let p_mark = p.log_mark();
    let mut s = pair.node(SECONDARY, &pair.node_conf(SECONDARY, &conf, &wrong));
    s.start();
    let (line, _) = must(
        p.wait_log_any(
            p_mark,
            &["MAC does not verify", "proof of the shared key is wrong"],
            SYNC_WAIT,
        ),
        "the primary dropping the link for the wrong key",
    );
    report(&format!("wrong key: primary says\n  {line}"));
    checks.check(line.contains("ends") || line.contains("refus"), || {
        format!("the primary's line does not say the link was dropped: {line}")
    });
    // A client while the two are apart: whoever serves it keeps it.
    let h2 = pair.lab.add_client();
    let mut c2 = Udhcpc::new(&pair.lab, &h2);
    let l2 = obtain(&mut c2, &h2, "a client while the key is wrong");
    thread::sleep(REFUSED_WATCH);
    let attempts = p.log_grep(p_mark, "link fault").len();
    let s_view: Vec<String> = s
        .log_grep(0, "failover:")
        .into_iter()
        .filter(|l| !l.contains("cannot reach"))
        .take(4)
        .collect();
    report(&format!(
        "wrong key: {attempts} connection(s) dropped by the primary in ~{:?}; the secondary says:\n  {}",
        REFUSED_WATCH,
        s_view.join("\n  ")
    ));

    for (srv, name) in [(&p, "primary"), (&s, "secondary")] {
        let bad: Vec<String> = ["established", "sync done", "merged the secondary"]
            .iter()
            .flat_map(|n| srv.log_grep(0, n))
            .collect();
        checks.check(bad.is_empty(), || {
            format!(
                "{name}: the link got past the handshake with a wrong key:\n{}",
                bad.join("\n")
            )
        });
    }
    checks.check(s.log_grep(0, "-> Passive").is_empty(), || {
        format!(
            "the secondary went passive with a wrong key\n{}",
            s.log_tail(30)
        )
    });
    let (pp, sp) = (p.lease_pairs(), s.lease_pairs());
    checks.check(!sp.contains(&(l1.address, h1.mac.clone())), || {
        format!("the primary's lease reached the secondary despite the wrong key: {sp:?}")
    });
    let (granter, other, other_pairs) = if l2.server_id == Some(SECONDARY_IP) {
        ("secondary", "primary", &pp)
    } else {
        ("primary", "secondary", &sp)
    };
    checks.check(!other_pairs.contains(&(l2.address, h2.mac.clone())), || {
        format!(
            "the {granter}'s lease {} reached the {other} despite the wrong key: {other_pairs:?}",
            l2.address
        )
    });
    checks.finish();
}

/// Scenario 6: The secondary's dhcp-range ends elsewhere: the link is
/// refused, and the log names the ranges; nothing syncs. While refused
/// (issue 14, case 5: the shares the two compute overlap) neither node
/// hands out a new address, and a client holding a lease still renews.
#[test]
fn mismatched_ranges_are_refused_with_the_ranges_named() {
    let mut pair = pair!("mismatched_ranges_are_refused_with_the_ranges_named");
    pair.timings.mclt_secs = LONE_MCLT_SECS;
    let mut checks = Checks::new("mismatched_ranges_are_refused_with_the_ranges_named");
    let p_conf = ServerConf::standard();
    let s_end = Ipv4Addr::new(198, 18, 0, 150);
    let s_conf = ServerConf::standard_range(RANGE_START, s_end);
    let p = start_lone_primary(&pair, &p_conf);
    let h1 = pair.lab.add_client();
    let mut c1 = Udhcpc::new(&pair.lab, &h1);
    let l1 = obtain(&mut c1, &h1, "a client of the lone primary");
    must(
        wait_pair_in(&p, &h1.mac, l1.address, netns::SERVER_TIMEOUT),
        "the primary's lease in its file",
    );

    let p_mark = p.log_mark();
    let s = pair.start_node(SECONDARY, &s_conf);
    let needle = "differ between the nodes";
    let (pl, _) = must(
        p.wait_log(p_mark, needle, SYNC_WAIT),
        "the primary refusing the link",
    );
    let (sl, _) = must(
        s.wait_log(0, needle, SYNC_WAIT),
        "the secondary logging the refusal",
    );
    report(&format!(
        "mismatched ranges:\n  primary:   {pl}\n  secondary: {sl}"
    ));
    let p_ranges = format!("this node has: ranges [{RANGE_START}-{}]", netns::RANGE_END);
    let s_ranges = format!("ranges [{RANGE_START}-{s_end}]");
    checks.check(pl.contains(&p_ranges), || {
        format!("the primary's refusal does not name its ranges ({p_ranges}): {pl}")
    });
    // The secondary names its own ranges (its refusal), or quotes the
    // primary's message; between the two logs both ranges are named.
    let s_named = s.log_grep(0, &s_ranges);
    checks.check(!s_named.is_empty(), || {
        format!(
            "the secondary's log never names its ranges ({s_ranges})\n{}",
            s.log_tail(30)
        )
    });
    thread::sleep(REFUSED_WATCH);
    for (srv, name) in [(&p, "primary"), (&s, "secondary")] {
        let bad: Vec<String> = ["sync done", "merged the secondary"]
            .iter()
            .flat_map(|n| srv.log_grep(0, n))
            .collect();
        checks.check(bad.is_empty(), || {
            format!(
                "{name}: synced despite different ranges:\n{}",
                bad.join("\n")
            )
        });
    }
    checks.check(s.log_grep(0, "-> Passive").is_empty(), || {
        format!(
            "the secondary went passive despite different ranges\n{}",
            s.log_tail(30)
        )
    });
    checks.check(
        !s.lease_pairs().contains(&(l1.address, h1.mac.clone())),
        || {
            format!(
                "the primary's lease reached the secondary despite the refusal: {:?}",
                s.lease_pairs()
            )
        },
    );
    no_new_leases_while_refused(&pair, &p, &s, &mut checks);
    match c1.renew() {
        Ok(l) => checks.check(l.address == l1.address, || {
            format!("the held lease renewed to another address: {l:?}, was {l1:?}")
        }),
        Err(e) => checks.check(false, || {
            format!(
                "the primary did not renew the lease it holds while refused: {e}\n{}",
                p.log_tail(30)
            )
        }),
    }
    checks.finish();
}

/// New clients while the link is refused for a configuration mismatch:
/// none gets an address (each node's share under its own configuration
/// may be the partner's under the other), so none is leased twice; both
/// nodes say why, once.
fn no_new_leases_while_refused(pair: &PairLab, p: &Server, s: &Server, checks: &mut Checks) {
    for (srv, name) in [(p, "primary"), (s, "secondary")] {
        let said = srv.log_grep(0, "configuration mismatch with the partner");
        checks.check(said.len() == 1, || {
            format!(
                "{name}: the mismatch is to be logged once, found {} lines:\n{}",
                said.len(),
                srv.log_tail(30)
            )
        });
    }
    let hosts = [pair.lab.add_client(), pair.lab.add_client()];
    let got: Vec<(Host, Result<Lease, String>)> = thread::scope(|sc| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                sc.spawn(move || {
                    let mut c = Udhcpc::new(&pair.lab, h).with_tries(3, 1);
                    let r = c.obtain();
                    c.stop();
                    (h.clone(), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect()
    });
    for (h, r) in &got {
        checks.check(r.is_err(), || {
            format!(
                "new client {} got {:?} while the link is refused for a configuration mismatch",
                h.mac,
                r.as_ref().map(|l| (l.address, role_name(l.server_id)))
            )
        });
    }
    let dups = duplicates(&[
        ("primary", p.lease_pairs().into_iter().collect()),
        ("secondary", s.lease_pairs().into_iter().collect()),
    ]);
    checks.check(dups.is_empty(), || format!("duplicates: {dups:?}"));
}

/// Issue 14, case 4: the secondary's failover-mclt differs from the
/// primary's. Each would extend and outwait leases by its own, so the
/// link is refused with both values named, nothing syncs, and no new
/// address is handed out meanwhile.
#[test]
fn mclt_mismatch_is_refused_with_both_values_named() {
    let pair = pair!("mclt_mismatch_is_refused_with_both_values_named");
    let mut checks = Checks::new("mclt_mismatch_is_refused_with_both_values_named");
    let conf = ServerConf::standard();
    let p_mclt = pair.timings.mclt_secs;
    let p = pair.start_node(PRIMARY, &conf);
    let mut s_conf = pair.node_conf(SECONDARY, &conf, &pair.key);
    for l in &mut s_conf.lines {
        if l.starts_with("failover-mclt=") {
            *l = "failover-mclt=10".into();
        }
    }
    let mut s = pair.node(SECONDARY, &s_conf);
    s.start();
    let needle = "differ between the nodes";
    let (pl, _) = must(
        p.wait_log(0, needle, SYNC_WAIT),
        "the primary refusing the link",
    );
    let (sl, _) = must(
        s.wait_log(0, needle, SYNC_WAIT),
        "the secondary refusing the link",
    );
    report(&format!(
        "mismatched MCLT:\n  primary:   {pl}\n  secondary: {sl}"
    ));
    let (pm, sm) = (
        format!("failover-mclt {p_mclt} s"),
        "failover-mclt 10 s".to_string(),
    );
    for (line, name) in [(&pl, "primary"), (&sl, "secondary")] {
        checks.check(line.contains(&pm) && line.contains(&sm), || {
            format!("the {name}'s refusal does not name both MCLTs ({pm}, {sm}): {line}")
        });
    }
    thread::sleep(REFUSED_WATCH);
    for (srv, name) in [(&p, "primary"), (&s, "secondary")] {
        let bad = srv.log_grep(0, "sync done");
        checks.check(bad.is_empty(), || {
            format!(
                "{name}: synced despite different MCLTs:\n{}",
                bad.join("\n")
            )
        });
    }
    no_new_leases_while_refused(&pair, &p, &s, &mut checks);
    checks.finish();
}

/// The duplicate finder itself, without root.
#[test]
fn duplicates_are_found_across_sources() {
    let a = Ipv4Addr::new(198, 18, 0, 100);
    let b = Ipv4Addr::new(198, 18, 0, 101);
    let m = |s: &str| s.to_string();
    let none = duplicates(&[
        ("x", vec![(a, m("02:00:00:00:00:01"))]),
        (
            "y",
            vec![(a, m("02:00:00:00:00:01")), (b, m("02:00:00:00:00:02"))],
        ),
    ]);
    assert!(none.is_empty(), "{none:?}");
    let found = duplicates(&[
        ("x", vec![(a, m("02:00:00:00:00:01"))]),
        ("y", vec![(a, m("02:00:00:00:00:02"))]),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("per x") && found[0].contains("per y"),
        "{found:?}"
    );
}

/// Log timestamps as tracing writes them (UTC), with and without colours.
#[test]
fn log_times_are_read() {
    let t = log_line_time("2024-03-01T00:00:01.250000Z  INFO failover: sync done").unwrap();
    let want = std::time::UNIX_EPOCH + Duration::from_millis(1_709_251_201_250);
    assert_eq!(t, want);
    let coloured = "\u{1b}[2m2024-03-01T00:00:01.250000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x";
    assert_eq!(log_line_time(coloured), Some(want));
    assert_eq!(log_line_time("===== start #1: twinmasq"), None);
}
