//! Issue 14, case 2: an ack must mean "your record stands here", not only
//! "persisted". Two whole nodes (the real DHCP engine, failover node, sled
//! lease database and reply gate, composed as the shell composes them)
//! over an in-memory wire, driven through one fixed schedule; what leaves
//! each node is kept as a client's ledger and checked against both tables.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use dhcproto::v4::{Message as Dhcp, MessageType};
use dhcproto::{Decodable, Decoder};
use twinmasq_proto::key::Key;
use twinmasq_proto::link::Role;
use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState, Stamp};

use crate::config::{Config, DhcpRange, LeaseTime};
use crate::dhcp::request::build::RawRequest;
use crate::dhcp::{Arrival, Decision, Engine, Reply};
use crate::failover::gate::{Offered, ReplyGate};
use crate::failover::node::{waits_for_partner, ConnId, Node, NodeConfig, Output};
use crate::lease::{DbOptions, LeaseDb};
use crate::net::ipv4::IfAddr;
use crate::share::{owner_of, ServeMode, SharePolicy};

const T0: u64 = 1_800_000_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// .10-.13 the primary's share, .14-.17 the secondary's.
const FIRST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const LAST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 17);
const RANGES: &str = "198.18.0.10-198.18.0.17 split 50";

fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn node_cfg(role: Role) -> NodeConfig {
    NodeConfig {
        role,
        key: Key::parse(&Key::format_new([1; 32]), "test").unwrap(),
        heartbeat_ms: 1_000,
        timeout_ms: 5_000,
        sync_timeout_ms: 60_000,
        max_skew_ms: 30_000,
        mclt_ms: 60_000,
        auto_partner_down_ms: None,
        ranges_fingerprint: crate::failover::ranges::fingerprint(RANGES),
        ranges_text: RANGES.to_string(),
        shares: vec![(FIRST, LAST)],
        split_percent: 50,
    }
}

fn engine(db: &LeaseDb, own: Role) -> Engine {
    let mut cfg = Config {
        no_ping: true,
        ..Config::default()
    };
    cfg.dhcp_ranges.push(DhcpRange {
        match_tags: vec![],
        set_tag: None,
        start: FIRST,
        end: LAST,
        netmask: None,
        broadcast: None,
        lease_time: LeaseTime::Secs(3600),
        is_static: false,
    });
    let policy = SharePolicy {
        own,
        split_percent: 50,
        mclt: std::time::Duration::from_secs(60),
        unanswered_secs: 10,
    };
    let mut e = Engine::with_policy(Arc::new(cfg), db, Some(policy));
    e.set_local_addresses(&[SERVER], db);
    e
}

fn bound(ip: Ipv4Addr, client: u8) -> LeaseRecord {
    let hw = mac(client).to_vec();
    LeaseRecord {
        ip,
        state: LeaseState::Bound,
        client: ClientKey::from_hwaddr(1, &hw),
        htype: 1,
        hwaddr: hw,
        client_id: None,
        hostname: None,
        expires: Expiry::At(T0 / 1000 + 3600),
        stamp: Stamp::default(),
    }
}

/// One node: what `src/dhcp/shell.rs` and `src/dhcp/flusher.rs` wire
/// together, without sockets or threads.
struct End {
    node: Node,
    db: LeaseDb,
    engine: Engine,
    gate: ReplyGate<Reply>,
    _dir: tempfile::TempDir,
    conn: Option<ConnId>,
    /// While set, flushes requested by the node wait (a slow disk): the
    /// partner's updates are merged but not acked.
    slow_disk: bool,
    flushes: Vec<u64>,
    /// Every reply that left, in order.
    sent: Vec<Reply>,
    /// Every output of the node, in order, for order checks.
    outputs: Vec<Output>,
    /// The stamps the replies handed to the gate promised.
    promises: Vec<Stamp>,
}

impl End {
    fn new(role: Role, own: Role, fill: &[(u8, u8)]) -> End {
        let dir = tempfile::tempdir().unwrap();
        let mut db = LeaseDb::open(dir.path(), DbOptions::default()).unwrap();
        db.enable_outbox();
        for &(ip, client) in fill {
            db.commit(bound(addr(ip), client), T0).unwrap();
        }
        let engine = engine(&db, own);
        End {
            node: Node::new(node_cfg(role), db.node_id(), rand::random(), T0),
            db,
            engine,
            gate: ReplyGate::default(),
            _dir: dir,
            conn: None,
            slow_disk: false,
            flushes: Vec::new(),
            sent: Vec::new(),
            outputs: Vec::new(),
            promises: Vec::new(),
        }
    }

    /// A client's datagram, as the shell and flusher handle it: the
    /// engine decides, the database is made durable, the reply goes to
    /// the gate (held for the partner's ack while linked), and the node
    /// sends the batch's changes.
    fn request(&mut self, bytes: &[u8], now: u64) -> Option<Dhcp> {
        let arrival = Arrival {
            ifname: "tmq0".into(),
            ifindex: 7,
            addrs: vec![IfAddr {
                addr: SERVER,
                prefix: 24,
            }],
            to_broadcast: true,
        };
        let d = self.engine.handle(bytes, &arrival, &mut self.db, now);
        let Decision::Reply(reply) = d else {
            return None;
        };
        let msg = Dhcp::decode(&mut Decoder::new(&reply.packet)).unwrap();
        self.db.durability().flush().unwrap();
        let promise = reply
            .commit
            .filter(|_| waits_for_partner(self.engine.mode()));
        self.promises.extend(promise);
        match self.gate.offer(reply, promise, Instant::now()) {
            Offered::Send(r) => self.sent.push(r),
            Offered::Held | Offered::Dropped => {}
        }
        self.node.pump(&mut self.db, now);
        Some(msg)
    }

    /// DISCOVER then REQUEST; the address the REQUEST asked for.
    fn dora(&mut self, client: u8, secs: u16, xid: u32, now: u64) -> Ipv4Addr {
        let offer = self
            .request(
                &RawRequest::new(1, mac(client), xid).secs(secs).finish(),
                now,
            )
            .expect("an offer");
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        let ip = offer.yiaddr();
        self.request(
            &RawRequest::new(3, mac(client), xid + 1)
                .opt(54, &SERVER.octets())
                .opt(50, &ip.octets())
                .secs(secs)
                .finish(),
            now,
        );
        ip
    }

    /// Where the node said `stamp`'s reply must never leave, and where it
    /// first let it leave, as positions in its outputs.
    fn cancelled_and_released(&self, stamp: Stamp) -> (Option<usize>, Option<usize>) {
        let cancelled = self
            .outputs
            .iter()
            .position(|o| matches!(o, Output::Cancel(v) if v.contains(&stamp)));
        let released = self
            .outputs
            .iter()
            .position(|o| matches!(o, Output::AckedThrough(a) if *a >= stamp));
        (cancelled, released)
    }

    /// `stamp`'s reply can never have left: cancelled before any ack
    /// covering it.
    fn never_released(&self, stamp: Stamp, what: &str) {
        match self.cancelled_and_released(stamp) {
            (Some(c), Some(r)) => assert!(c < r, "{what}: released at {r}, cancelled only at {c}"),
            (Some(_), None) => {}
            (None, r) => panic!("{what}: never cancelled (released at {r:?})"),
        }
    }

    /// The ACKs that left this node: (address, client).
    fn acks(&self) -> Vec<(Ipv4Addr, Vec<u8>)> {
        self.sent
            .iter()
            .filter_map(|r| {
                let m = Dhcp::decode(&mut Decoder::new(&r.packet)).unwrap();
                (m.opts().msg_type() == Some(MessageType::Ack))
                    .then(|| (m.yiaddr(), m.chaddr()[..6].to_vec()))
            })
            .collect()
    }
}

/// The primary, the secondary and the wire; every output is carried out
/// at once, in order, except flushes on a slow disk.
struct Duo {
    p: End,
    s: End,
    now: u64,
    next_conn: ConnId,
}

impl Duo {
    fn new(p_fill: &[(u8, u8)], s_fill: &[(u8, u8)]) -> Duo {
        Duo {
            p: End::new(Role::Primary, Role::Primary, p_fill),
            s: End::new(Role::Secondary, Role::Secondary, s_fill),
            now: T0,
            next_conn: 1,
        }
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            if let Some(o) = self.p.node.poll() {
                self.apply(true, o);
            } else if let Some(o) = self.s.node.poll() {
                self.apply(false, o);
            } else {
                return;
            }
        }
        panic!("did not settle");
    }

    fn apply(&mut self, from_primary: bool, o: Output) {
        let now = self.now;
        let (me, other) = if from_primary {
            (&mut self.p, &mut self.s)
        } else {
            (&mut self.s, &mut self.p)
        };
        me.outputs.push(o.clone());
        match o {
            Output::Connect => {
                let c = self.next_conn;
                self.next_conn += 1;
                me.conn = Some(c);
                other.conn = Some(c);
                other.node.connected(c, [c as u8; 32], &other.db, now);
                me.node.connected(c, [c as u8 + 100; 32], &me.db, now);
            }
            Output::Write(c, bytes) => {
                if other.conn == Some(c) {
                    other.node.received(c, &bytes, &mut other.db, now);
                }
            }
            Output::Close(c) => {
                if other.conn == Some(c) {
                    other.node.closed(c, now);
                }
            }
            Output::Mode(m) => {
                me.engine.set_mode(m);
                me.gate.linked(waits_for_partner(m));
            }
            Output::AckedThrough(stamp) => {
                let released = me.gate.acked(stamp);
                me.sent.extend(released);
            }
            Output::Cancel(stamps) => {
                me.gate.cancel(&stamps);
            }
            Output::Changed(ips) => {
                for ip in ips {
                    me.engine.note_change(ip, &me.db);
                }
            }
            Output::Flush(t) => {
                if me.slow_disk {
                    me.flushes.push(t);
                } else {
                    me.db.durability().flush().unwrap();
                    me.node.persisted(t, now);
                }
            }
        }
    }

    /// (the primary, the secondary), or the other way round.
    fn pick(&mut self, primary_first: bool) -> (&mut End, &mut End) {
        if primary_first {
            (&mut self.p, &mut self.s)
        } else {
            (&mut self.s, &mut self.p)
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now += ms;
        self.p.node.tick(&mut self.p.db, self.now);
        self.s.node.tick(&mut self.s.db, self.now);
        self.settle();
    }

    /// The slow disk of `primary` (or the secondary) catches up.
    fn disk_catches_up(&mut self, primary: bool) {
        let now = self.now;
        let end = if primary { &mut self.p } else { &mut self.s };
        end.slow_disk = false;
        end.db.durability().flush().unwrap();
        if let Some(&t) = end.flushes.iter().max() {
            end.node.persisted(t, now);
        }
        end.flushes.clear();
        self.settle();
    }

    /// The pair's ledger check: no address acknowledged to two clients,
    /// and every acknowledged lease held, for its client, by both tables
    /// (the newest ACK of a client is the one it holds).
    fn check_ledger(&self) {
        let mut by_client: BTreeMap<Vec<u8>, Ipv4Addr> = BTreeMap::new();
        let mut by_addr: BTreeMap<Ipv4Addr, Vec<u8>> = BTreeMap::new();
        for (who, end) in [("primary", &self.p), ("secondary", &self.s)] {
            for (ip, client) in end.acks() {
                if let Some(other) = by_addr.get(&ip).filter(|c| **c != client) {
                    panic!(
                        "{ip} acknowledged to two clients: {other:?}, and by the {who} to {client:?}"
                    );
                }
                by_addr.insert(ip, client.clone());
                by_client.insert(client, ip);
            }
        }
        for (client, ip) in by_client {
            for (who, end) in [("primary", &self.p), ("secondary", &self.s)] {
                let rec = end.db.get(ip);
                assert!(
                    rec.as_ref()
                        .is_some_and(|r| r.hwaddr == client && r.state == LeaseState::Bound),
                    "the {who}'s table lost {client:?}'s acknowledged lease on {ip}: {rec:?}"
                );
            }
        }
    }
}

/// The primary's own share (.10-.13) is full, so it hands out from the
/// secondary's share (.14-.17), of which one address, .17, is left. The
/// secondary, passive, serves a client whose `secs` climbs (the primary
/// seems not to answer it) from its own share: .17 too. The primary's disk
/// is slow, so the secondary's two updates before (two renewals) are not
/// acked and its update with .17 waits behind the two-update window. The
/// primary's update crosses it: the secondary keeps its own record (the
/// share owner's) and acks the primary's update. That ack must not let the
/// primary's reply leave.
#[test]
fn one_address_is_never_acknowledged_to_two_clients_while_linked() {
    let mut t = Duo::new(
        &[(10, 1), (11, 2), (12, 3), (13, 4)],
        &[(14, 5), (15, 6), (16, 7)],
    );
    t.tick(1);
    t.tick(1);
    assert_eq!(t.p.engine.mode(), ServeMode::Linked);
    assert_eq!(t.s.engine.mode(), ServeMode::Passive);
    assert_eq!(t.p.db.iter().count(), 7);

    t.p.slow_disk = true;
    // Two renewals the secondary serves (the clients' secs climbing): two
    // updates out, neither acked by the primary yet.
    for (ip, client) in [(14, 5), (15, 6)] {
        let ack =
            t.s.request(
                &RawRequest::new(3, mac(client), 100 + u32::from(client))
                    .ciaddr(addr(ip))
                    .secs(30)
                    .finish(),
                t.now,
            )
            .expect("renewed");
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        t.settle();
    }
    assert_eq!(t.s.node.status().unacked, 2);

    // Client 20 at the secondary gets .17; its update waits in the window.
    let b = t.s.dora(20, 30, 200, t.now);
    assert_eq!(b, addr(17));
    assert_eq!(owner_of(FIRST, LAST, b, 50), Role::Secondary);
    t.settle();
    // Client 21 at the primary: its own share full, it takes .17 too.
    let a = t.p.dora(21, 0, 300, t.now);
    assert_eq!(a, addr(17));
    t.settle();
    let a_stamp = *t.p.promises.last().unwrap();
    t.p.never_released(a_stamp, "the primary's ACK of .17");
    t.disk_catches_up(true);
    t.tick(1);
    t.tick(1);

    assert_eq!(
        t.p.db.iter().collect::<Vec<_>>(),
        t.s.db.iter().collect::<Vec<_>>(),
        "tables differ"
    );
    t.check_ledger();
    // The primary's client asks again and is told no; the secondary's
    // holds .17 on both nodes.
    let again =
        t.p.request(
            &RawRequest::new(3, mac(21), 301)
                .opt(54, &SERVER.octets())
                .opt(50, &a.octets())
                .finish(),
            t.now,
        )
        .expect("an answer");
    assert_eq!(again.opts().msg_type(), Some(MessageType::Nak));
    t.settle();
    t.check_ledger();
}

/// The same race on the node alone, in every arrangement: the receiver's
/// window is full (its partner's disk is slow), so its record for the
/// contested address waits unsent while the sender's crosses; the address
/// is the primary's, the secondary's or in no share; the receiver's
/// record is the older or the newer. Whichever record does not stand (the
/// share owner's stands, else the newer), its node never lets its reply
/// leave: the loser's ack names it, or the loser's own merge cancels it,
/// always before an ack covers it. The winner's reply leaves.
#[test]
fn an_ack_never_overtakes_the_receivers_conflicting_update() {
    for contested in [12u8, 16, 200] {
        for receiver_is_primary in [true, false] {
            for receiver_older in [true, false] {
                let case =
                    format!(".{contested}, receiver primary {receiver_is_primary}, receiver older {receiver_older}");
                let mut t = Duo::new(&[], &[]);
                t.tick(1);
                t.tick(1);
                assert_eq!(t.p.engine.mode(), ServeMode::Linked, "{case}");
                let now = t.now;
                // Two updates of the receiver's out and not acked.
                t.pick(!receiver_is_primary).0.slow_disk = true;
                for (ip, client) in [(40, 40), (41, 41)] {
                    let r = t.pick(receiver_is_primary).0;
                    r.db.commit(bound(addr(ip), client), now).unwrap();
                    r.node.pump(&mut r.db, now);
                    t.settle();
                }
                let (first, second) = (now + 10, now + 20);
                let (r_at, s_at) = if receiver_older {
                    (first, second)
                } else {
                    (second, first)
                };
                let (r, s) = t.pick(receiver_is_primary);
                assert_eq!(r.node.status().unacked, 2, "{case}");
                let r_rec = r.db.commit(bound(addr(contested), 1), r_at).unwrap();
                r.node.pump(&mut r.db, r_at);
                let s_rec = s.db.commit(bound(addr(contested), 2), s_at).unwrap();
                assert!((r_rec.stamp < s_rec.stamp) == receiver_older, "{case}");
                s.node.pump(&mut s.db, second);
                t.now = second;
                t.settle();
                let owner_is_receiver = match contested {
                    12 => Some(receiver_is_primary),
                    16 => Some(!receiver_is_primary),
                    _ => None,
                };
                let receiver_wins = owner_is_receiver.unwrap_or(!receiver_older);
                // Before the receiver's record has even left it.
                let (r, s) = if receiver_is_primary {
                    (&t.p, &t.s)
                } else {
                    (&t.s, &t.p)
                };
                if receiver_wins {
                    s.never_released(s_rec.stamp, &format!("{case}: the sender's lost record"));
                } else {
                    r.never_released(r_rec.stamp, &format!("{case}: the receiver's lost record"));
                    assert!(
                        s.cancelled_and_released(s_rec.stamp).1.is_some(),
                        "{case}: the sender's record stood, its ack came"
                    );
                }
                t.disk_catches_up(!receiver_is_primary);
                t.tick(1);
                t.tick(1);
                let (r, s) = if receiver_is_primary {
                    (&t.p, &t.s)
                } else {
                    (&t.s, &t.p)
                };
                assert_eq!(
                    t.p.db.iter().collect::<Vec<_>>(),
                    t.s.db.iter().collect::<Vec<_>>(),
                    "{case}: tables differ"
                );
                let (winner, w_end, loser, l_end) = if receiver_wins {
                    (&r_rec, r, &s_rec, s)
                } else {
                    (&s_rec, s, &r_rec, r)
                };
                let held = t.p.db.get(addr(contested)).unwrap();
                assert_eq!(held.client, winner.client, "{case}");
                assert!(held.is_active(t.now / 1000), "{case}");
                l_end.never_released(loser.stamp, &format!("{case}: the losing record"));
                assert_eq!(
                    w_end.cancelled_and_released(winner.stamp).0,
                    None,
                    "{case}: the standing record's reply was cancelled"
                );
                assert!(
                    w_end.cancelled_and_released(winner.stamp).1.is_some(),
                    "{case}: the standing record was never acked"
                );
            }
        }
    }
}
