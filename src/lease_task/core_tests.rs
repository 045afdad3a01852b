//! The lease task's composition: a durable reply leaves only once its
//! persist token comes back and, linked, once the partner acked it; a
//! fallen link drops the held replies and counts them.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use twinmasq_proto::key::Key;
use twinmasq_proto::link::Role;

use super::core::{LeaseTask, Output};
use crate::config::{Config, DhcpRange, LeaseTime};
use crate::dhcp::network::Arrival;
use crate::failover::node::NodeConfig;
use crate::lease::{DbOptions, LeaseDb};
use crate::net::ipv4::IfAddr;
use crate::share::{ServeMode, SharePolicy};

const T0: u64 = 1_800_000_000_000;

fn config() -> Arc<Config> {
    let mut cfg = Config {
        no_ping: true,
        ..Config::default()
    };
    cfg.dhcp_ranges.push(DhcpRange {
        match_tags: vec![],
        set_tag: None,
        start: Ipv4Addr::new(198, 18, 0, 10),
        end: Ipv4Addr::new(198, 18, 0, 49),
        netmask: None,
        broadcast: None,
        lease_time: LeaseTime::Secs(120),
        is_static: false,
    });
    Arc::new(cfg)
}

fn failover(role: Role, cfg: &Config) -> (NodeConfig, SharePolicy) {
    let key = Key::parse(&Key::format_new([7; 32]), "test").unwrap();
    let node = NodeConfig {
        role,
        key,
        heartbeat_ms: 500,
        timeout_ms: 3_000,
        sync_timeout_ms: 9_000,
        max_skew_ms: 30_000,
        mclt_ms: 30_000,
        auto_partner_down_ms: None,
        ranges_fingerprint: [1; 32],
        ranges_text: "test".into(),
        shares: cfg.dhcp_ranges.iter().map(|r| (r.start, r.end)).collect(),
        split_percent: 50,
    };
    let policy = SharePolicy {
        own: role,
        split_percent: 50,
        mclt: Duration::from_millis(30_000),
        unanswered_secs: 10,
    };
    (node, policy)
}

fn task(dir: &tempfile::TempDir, name: &str, role: Option<Role>) -> LeaseTask {
    let cfg = config();
    let db = LeaseDb::open(&dir.path().join(name), DbOptions::default()).unwrap();
    let f = role.map(|r| failover(r, &cfg));
    let mut t = LeaseTask::new(cfg, db, f, 1, T0);
    t.set_local_addresses(&[Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)]);
    t
}

fn arrival(i: u8) -> Arrival {
    Arrival {
        ifname: "lan".into(),
        ifindex: 2,
        addrs: vec![IfAddr {
            addr: Ipv4Addr::new(198, 18, 0, 1 + i),
            prefix: 24,
        }],
        to_broadcast: true,
    }
}

/// A DISCOVER (1) or REQUEST (3) from client `n`, asking for `ip`.
fn request(kind: u8, n: u8, ip: Option<Ipv4Addr>) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&(1000 + u32::from(n)).to_be_bytes());
    p[28..34].copy_from_slice(&[2, 0, 0, 0, 9, n]);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, kind]);
    if let Some(ip) = ip {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&ip.octets());
        // SELECTING: the offer of the primary's address is taken.
        p.extend_from_slice(&[54, 4, 198, 18, 0, 1]);
    }
    p.push(255);
    p
}

fn yiaddr(packet: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19])
}

/// Everything the task asks for now, link traffic included.
fn drain(t: &mut LeaseTask, now: u64) -> Vec<Output> {
    std::iter::from_fn(|| t.poll(now)).collect()
}

fn transmits(outs: &[Output]) -> Vec<Ipv4Addr> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Transmit(r) => Some(yiaddr(&r.packet)),
            _ => None,
        })
        .collect()
}

fn persist_tokens(outs: &[Output]) -> Vec<u64> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Persist { token, .. } => Some(*token),
            _ => None,
        })
        .collect()
}

#[test]
fn an_ack_goes_to_the_disk_with_its_persist_request_and_counts_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(&dir, "db", None);
    let mono = Instant::now();
    assert!(t.datagram(&request(1, 1, None), &arrival(0), T0));
    // An OFFER promises nothing durable: out at once.
    let outs = drain(&mut t, T0);
    let offered = transmits(&outs);
    assert_eq!(offered.len(), 1, "{outs:?}");
    assert!(persist_tokens(&outs).is_empty());

    assert!(t.datagram(&request(3, 1, Some(offered[0])), &arrival(0), T0));
    let outs = drain(&mut t, T0);
    // Not a transmit: the ACK rides with its persist request, for the
    // caller to send once the fsync is done, never before.
    assert!(
        transmits(&outs).is_empty(),
        "an ACK before its fsync: {outs:?}"
    );
    let tokens = persist_tokens(&outs);
    assert_eq!(tokens.len(), 1);
    match &outs[0] {
        Output::Persist { send, waiting, .. } => {
            let ips: Vec<Ipv4Addr> = send.iter().map(|r| yiaddr(&r.packet)).collect();
            assert_eq!(ips, offered);
            assert_eq!(*waiting, 0);
        }
        o => panic!("{o:?}"),
    }

    // The disk refused it: nothing counts as durable, nothing follows.
    t.persisted(tokens[0], false, T0, mono);
    assert!(drain(&mut t, T0).is_empty());
    assert_eq!(t.stats().durable_replies.load(Ordering::Relaxed), 0);

    // The client asks again; this time the flush works.
    assert!(t.datagram(&request(3, 1, Some(offered[0])), &arrival(0), T0 + 1));
    let tokens = persist_tokens(&drain(&mut t, T0 + 1));
    t.persisted(tokens[0], true, T0 + 1, mono);
    assert!(drain(&mut t, T0 + 1).is_empty());
    assert_eq!(t.stats().durable_replies.load(Ordering::Relaxed), 1);
}

/// Two tasks whose link outputs are carried to each other at once, with
/// instant persistence, until both are quiet; `sent` has what each sent.
struct Pair {
    t: [LeaseTask; 2],
    sent: [Vec<Ipv4Addr>; 2],
    /// The link stalls: writes are lost, nobody is told.
    cut: bool,
    mono: Instant,
}

impl Pair {
    fn new(dir: &tempfile::TempDir) -> Pair {
        Pair {
            t: [
                task(dir, "p", Some(Role::Primary)),
                task(dir, "s", Some(Role::Secondary)),
            ],
            sent: [Vec::new(), Vec::new()],
            cut: false,
            mono: Instant::now(),
        }
    }

    fn settle(&mut self, now: u64) {
        for _ in 0..1000 {
            let mut quiet = true;
            for i in 0..2 {
                while let Some(o) = self.t[i].poll(now) {
                    quiet = false;
                    match o {
                        Output::Transmit(r) => self.sent[i].push(yiaddr(&r.packet)),
                        Output::Persist { token, send, .. } => {
                            self.sent[i].extend(send.iter().map(|r| yiaddr(&r.packet)));
                            self.t[i].persisted(token, true, now, self.mono)
                        }
                        Output::LinkConnect => {
                            let [p, s] = &mut self.t;
                            p.link_connected(1, [1; 32], now);
                            s.link_connected(1, [2; 32], now);
                        }
                        Output::LinkWrite(conn, bytes) => {
                            if !self.cut {
                                self.t[1 - i].link_data(conn, &bytes, now);
                            }
                        }
                        Output::LinkClose(_) | Output::Probe { .. } => {}
                    }
                }
            }
            if quiet {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    fn link_up(&mut self) {
        let mut now = T0;
        for _ in 0..50 {
            for i in 0..2 {
                self.t[i].link_tick(now, self.mono);
            }
            self.settle(now);
            if self.t[0].mode() == ServeMode::Linked {
                return;
            }
            now += 100;
        }
        panic!("no link: {:?} {:?}", self.t[0].mode(), self.t[1].mode());
    }
}

#[test]
fn linked_a_lease_is_held_until_the_partner_acks_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(&dir);
    pair.link_up();
    let now = T0 + 10_000;
    let p = &mut pair.t[0];
    assert!(p.datagram(&request(1, 1, None), &arrival(0), now));
    let offered = transmits(&drain(p, now));
    assert_eq!(offered.len(), 1);
    assert!(p.datagram(&request(3, 1, Some(offered[0])), &arrival(0), now));
    // Durable, not yet acked: held in the gate.
    let outs = drain(p, now);
    let tokens = persist_tokens(&outs);
    p.persisted(tokens[0], true, now, pair.mono);
    let outs: Vec<Output> = outs.into_iter().chain(drain(p, now)).collect();
    assert!(transmits(&outs).is_empty(), "{outs:?}");
    assert_eq!(p.held(), 1);
    // The update crosses, the ack comes back: the ACK leaves.
    for o in outs {
        if let Output::LinkWrite(conn, bytes) = o {
            pair.t[1].link_data(conn, &bytes, now);
        }
    }
    pair.settle(now);
    assert_eq!(pair.sent[0], vec![offered[0]]);
    assert_eq!(pair.t[0].held(), 0);
    assert_eq!(
        pair.t[1].db().get(offered[0]).map(|r| r.ip),
        Some(offered[0])
    );
}

#[test]
fn a_fallen_link_drops_every_held_reply_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(&dir);
    pair.link_up();
    let now = T0 + 10_000;
    // The link stalls: nothing crosses any more.
    pair.cut = true;
    for n in 1..=3 {
        let p = &mut pair.t[0];
        assert!(p.datagram(&request(1, n, None), &arrival(0), now));
        pair.settle(now);
        let ip = *pair.sent[0].last().unwrap();
        pair.sent[0].clear();
        assert!(pair.t[0].datagram(&request(3, n, Some(ip)), &arrival(0), now));
        pair.settle(now);
    }
    assert!(pair.sent[0].is_empty());
    assert_eq!(pair.t[0].held(), 3);
    // The node gives the silent link up: the held replies go, counted.
    let mut at = now;
    while pair.t[0].mode() == ServeMode::Linked {
        at += 100;
        assert!(at < now + 60_000, "the link never timed out");
        pair.t[0].link_tick(at, pair.mono);
        pair.settle(at);
    }
    assert!(
        pair.sent[0].is_empty(),
        "a held reply left: {:?}",
        pair.sent[0]
    );
    assert_eq!(pair.t[0].held(), 0);
    assert_eq!(pair.t[0].stats().partner_dropped.load(Ordering::Relaxed), 3);
}

#[test]
fn a_gate_event_waits_behind_the_replies_still_on_their_way_to_disk() {
    // The link falls while an ACK promised under it waits for its fsync:
    // once durable it is dropped, not sent under the rules of no link.
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(&dir);
    pair.link_up();
    let now = T0 + 10_000;
    pair.cut = true;
    let p = &mut pair.t[0];
    assert!(p.datagram(&request(1, 1, None), &arrival(0), now));
    let ip = transmits(&drain(p, now))[0];
    assert!(p.datagram(&request(3, 1, Some(ip)), &arrival(0), now));
    let token = persist_tokens(&drain(p, now))[0];
    // The link times out before the fsync returns.
    let mut at = now;
    while p.mode() == ServeMode::Linked {
        at += 100;
        assert!(at < now + 60_000, "the link never timed out");
        p.link_tick(at, pair.mono);
        for o in drain(p, at) {
            if let Output::Persist { token, .. } = o {
                p.persisted(token, true, at, pair.mono);
            }
        }
    }
    p.persisted(token, true, at, pair.mono);
    assert!(transmits(&drain(p, at)).is_empty());
    assert_eq!(p.stats().partner_dropped.load(Ordering::Relaxed), 1);
}
