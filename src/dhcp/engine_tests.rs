//! The engine driven directly: real wire bytes in, real wire bytes out, a
//! real sled database in a temp dir, and a clock we set.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState};

use super::engine::{Decision, Engine, Reply};
use super::network::Arrival;
use super::reply::Destination;
use super::request::build::RawRequest;
use super::stats::Ignored;
use crate::config::{
    Config, DhcpHost, DhcpOptionSpec, DhcpRange, LeaseTime, MacPattern, OptionValue,
};
use crate::lease::{DbOptions, LeaseDb};
use crate::net::ipv4::IfAddr;
use crate::share::{owner_of, ServeMode, SharePolicy};
use twinmasq_proto::link::Role;

const T0: u64 = 1_800_000_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn range(start: u8, end: u8) -> DhcpRange {
    DhcpRange {
        match_tags: vec![],
        set_tag: None,
        start: Ipv4Addr::new(198, 18, 0, start),
        end: Ipv4Addr::new(198, 18, 0, end),
        netmask: None,
        broadcast: None,
        lease_time: LeaseTime::Secs(3600),
        is_static: false,
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    db: LeaseDb,
    engine: Engine,
    arrival: Arrival,
    now: u64,
}

impl Rig {
    fn new(edit: impl FnOnce(&mut Config)) -> Rig {
        Rig::build(edit, None)
    }

    /// One node of a failover pair over the default range 10..=20: with a
    /// 50 % split the primary owns 10..=15, the secondary 16..=20.
    fn failover(own: Role, mode: ServeMode) -> Rig {
        let mut rig = Rig::build(
            |_| {},
            Some(SharePolicy {
                own,
                split_percent: 50,
                mclt: std::time::Duration::from_secs(MCLT_SECS),
                unanswered_secs: 10,
            }),
        );
        rig.engine.set_mode(mode);
        rig
    }

    fn build(edit: impl FnOnce(&mut Config), policy: Option<SharePolicy>) -> Rig {
        let mut cfg = Config {
            no_ping: true,
            ..Config::default()
        };
        cfg.dhcp_ranges.push(range(10, 20));
        edit(&mut cfg);
        let dir = tempfile::tempdir().unwrap();
        let db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).unwrap();
        let engine = Engine::with_policy(Arc::new(cfg), &db, policy);
        let arrival = Arrival {
            ifname: "tmq0".into(),
            ifindex: 7,
            addrs: vec![IfAddr {
                addr: SERVER,
                prefix: 24,
            }],
            to_broadcast: true,
        };
        let mut rig = Rig {
            _dir: dir,
            db,
            engine,
            arrival,
            now: T0,
        };
        rig.engine.set_local_addresses(&[SERVER], &rig.db);
        rig
    }

    fn send(&mut self, bytes: &[u8]) -> Decision {
        self.engine
            .handle(bytes, &self.arrival, &mut self.db, self.now)
    }

    fn reply(&mut self, bytes: &[u8]) -> (Reply, Message) {
        match self.send(bytes) {
            Decision::Reply(r) => {
                let m = Message::decode(&mut Decoder::new(&r.packet)).unwrap();
                (r, m)
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// DISCOVER + REQUEST for `mac`; returns the address acknowledged.
    fn dora(&mut self, mac: [u8; 6]) -> Ipv4Addr {
        let (_, offer) = self.reply(&RawRequest::new(1, mac, 1).finish());
        let ip = offer.yiaddr();
        let (r, ack) = self.reply(
            &RawRequest::new(3, mac, 2)
                .opt(54, &SERVER.octets())
                .opt(50, &ip.octets())
                .finish(),
        );
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert!(r.durable);
        ip
    }

    /// A record written into the database from outside the engine, as a
    /// merge from the partner does, and the engine told of it.
    fn merged(&mut self, ip: Ipv4Addr, mac: [u8; 6], state: LeaseState, expires_secs: u64) {
        let rec = record(ip, mac, state, expires_secs);
        self.db.commit(rec, self.now).unwrap();
        self.engine.note_change(ip, &self.db);
    }

    /// A record as the partner wrote it (its node id in the stamp),
    /// replicated into this node's table.
    fn replicated(&mut self, ip: Ipv4Addr, mac: [u8; 6], state: LeaseState, expires_secs: u64) {
        let rec = LeaseRecord {
            stamp: twinmasq_proto::Stamp {
                wall_ms: self.now - 1000,
                counter: 0,
                node: self.db.node_id().wrapping_add(1).max(1),
            },
            ..record(ip, mac, state, expires_secs)
        };
        self.db.merge_in(rec, self.now).unwrap();
        self.engine.note_change(ip, &self.db);
    }

    fn now_secs(&self) -> u64 {
        self.now / 1000
    }
}

fn record(ip: Ipv4Addr, mac: [u8; 6], state: LeaseState, expires_secs: u64) -> LeaseRecord {
    LeaseRecord {
        ip,
        state,
        client: ClientKey::from_hwaddr(1, &mac),
        htype: 1,
        hwaddr: mac.to_vec(),
        client_id: None,
        hostname: None,
        expires: Expiry::At(expires_secs),
        stamp: Default::default(),
    }
}

const MCLT_SECS: u64 = 600;

fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 1, n]
}

fn in_share(ip: Ipv4Addr, owner: Role) -> bool {
    let last = ip.octets()[3];
    match owner {
        Role::Primary => (10..=15).contains(&last),
        Role::Secondary => (16..=20).contains(&last),
    }
}

fn opt_u32(r: &Reply, code: u8) -> Option<u32> {
    raw_opt(&r.packet, code).and_then(|v| {
        <[u8; 4]>::try_from(v.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    })
}

fn msg_type(m: &Message) -> MessageType {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => *t,
        other => panic!("no message type: {other:?}"),
    }
}

fn raw_opt(packet: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut i = 240;
    while i + 1 < packet.len() && packet[i] != 255 {
        if packet[i] == 0 {
            i += 1;
            continue;
        }
        let len = packet[i + 1] as usize;
        if packet[i] == code {
            return Some(packet[i + 2..i + 2 + len].to_vec());
        }
        i += 2 + len;
    }
    None
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

#[test]
fn dora_gives_an_address_with_default_options() {
    let mut rig = Rig::new(|c| c.dns.port = 53);
    let discover = RawRequest::new(1, MAC_A, 1)
        .opt(55, &[1, 3, 6, 28])
        .broadcast()
        .finish();
    let (r, offer) = rig.reply(&discover);
    assert_eq!(msg_type(&offer), MessageType::Offer);
    assert!(!r.durable);
    assert_eq!(r.to, Destination::Broadcast);
    assert_eq!(r.from, SERVER);
    assert_eq!(r.ifindex, 7);
    let ip = offer.yiaddr();
    assert!((Ipv4Addr::new(198, 18, 0, 10)..=Ipv4Addr::new(198, 18, 0, 20)).contains(&ip));
    assert_eq!(raw_opt(&r.packet, 54), Some(SERVER.octets().to_vec()));
    assert_eq!(raw_opt(&r.packet, 1), Some(vec![255, 255, 255, 0]));
    assert_eq!(raw_opt(&r.packet, 3), Some(SERVER.octets().to_vec()));
    assert_eq!(raw_opt(&r.packet, 6), Some(SERVER.octets().to_vec()));
    assert_eq!(raw_opt(&r.packet, 51), Some(3600u32.to_be_bytes().to_vec()));
    assert_eq!(raw_opt(&r.packet, 58), Some(1800u32.to_be_bytes().to_vec()));
    assert_eq!(raw_opt(&r.packet, 59), Some(3150u32.to_be_bytes().to_vec()));
    assert!(rig.db.get(ip).is_none(), "an offer is not stored");

    let request = RawRequest::new(3, MAC_A, 2)
        .opt(54, &SERVER.octets())
        .opt(50, &ip.octets())
        .opt(12, b"laptop")
        .finish();
    let (r, ack) = rig.reply(&request);
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), ip);
    assert!(r.durable, "an ACK waits for the lease to be durable");
    let rec = rig.db.get(ip).unwrap();
    assert_eq!(rec.state, LeaseState::Bound);
    assert_eq!(rec.hostname.as_deref(), Some("laptop"));
    assert_eq!(rec.hwaddr, MAC_A.to_vec());
    assert_eq!(rig.engine.stats().acks, 1);
}

#[test]
fn returning_client_keeps_its_address_and_two_clients_differ() {
    let mut rig = Rig::new(|_| {});
    let a = rig.dora(MAC_A);
    let b = rig.dora(MAC_B);
    assert_ne!(a, b);
    assert_eq!(rig.dora(MAC_A), a);
    // After its lease ends, the client still gets its old address back.
    rig.now += 7200 * 1000;
    rig.engine.tick(&mut rig.db, rig.now);
    assert_eq!(rig.db.get(a).unwrap().state, LeaseState::Expired);
    assert_eq!(rig.dora(MAC_A), a);
}

#[test]
fn offer_for_another_server_releases_the_hold() {
    let mut rig = Rig::new(|c| c.dhcp_ranges = vec![range(10, 10)]);
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 0, 10));
    // The only address is held for A: B gets nothing.
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_B, 1).finish()),
        Decision::Ignored(Ignored::NoAddress)
    );
    let other = RawRequest::new(3, MAC_A, 2)
        .opt(54, &[198, 18, 0, 2])
        .opt(50, &[198, 18, 0, 10])
        .finish();
    assert_eq!(rig.send(&other), Decision::Ignored(Ignored::NotForUs));
    let (_, offer_b) = rig.reply(&RawRequest::new(1, MAC_B, 1).finish());
    assert_eq!(offer_b.yiaddr(), Ipv4Addr::new(198, 18, 0, 10));
}

#[test]
fn static_host_gets_its_address_and_nobody_else_does() {
    let fixed = Ipv4Addr::new(198, 18, 0, 15);
    let mut rig = Rig::new(|c| {
        c.dhcp_ranges = vec![range(15, 16)];
        c.dhcp_hosts.push(DhcpHost {
            macs: vec![MacPattern {
                htype: None,
                bytes: MAC_A.iter().map(|b| Some(*b)).collect(),
            }],
            ip: Some(fixed),
            hostname: Some("nas".into()),
            ..Default::default()
        });
    });
    assert_eq!(rig.dora(MAC_B), Ipv4Addr::new(198, 18, 0, 16));
    assert_eq!(
        rig.send(&RawRequest::new(1, [2, 0, 0, 0, 0, 0xc], 1).finish()),
        Decision::Ignored(Ignored::NoAddress)
    );
    assert_eq!(rig.dora(MAC_A), fixed);
    assert_eq!(rig.db.get(fixed).unwrap().hostname.as_deref(), Some("nas"));
}

#[test]
fn init_reboot_rules() {
    let mut rig = Rig::new(|_| {});
    let a = rig.dora(MAC_A);
    let reboot = |ip: Ipv4Addr, mac| RawRequest::new(3, mac, 9).opt(50, &ip.octets()).finish();
    // Our client, its address: ACK.
    let (_, ack) = rig.reply(&reboot(a, MAC_A));
    assert_eq!(msg_type(&ack), MessageType::Ack);
    // Wrong network: NAK, broadcast.
    let (r, nak) = rig.reply(&reboot(Ipv4Addr::new(198, 19, 0, 5), MAC_A));
    assert_eq!(msg_type(&nak), MessageType::Nak);
    assert_eq!(r.to, Destination::Broadcast);
    // Someone else's address: NAK.
    let (_, nak) = rig.reply(&reboot(a, MAC_B));
    assert_eq!(msg_type(&nak), MessageType::Nak);
    // Unknown client on a free address: silence unless authoritative.
    let free = Ipv4Addr::new(198, 18, 0, 19);
    assert_eq!(
        rig.send(&reboot(free, MAC_B)),
        Decision::Ignored(Ignored::UnknownClient)
    );
    let mut auth = Rig::new(|c| c.authoritative = true);
    let (_, ack) = auth.reply(&reboot(free, MAC_B));
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(auth.db.get(free).unwrap().hwaddr, MAC_B.to_vec());
}

#[test]
fn renew_extends_and_unicasts() {
    let mut rig = Rig::new(|_| {});
    let a = rig.dora(MAC_A);
    let first = rig.db.get(a).unwrap().expires;
    rig.now += 1800 * 1000;
    let (r, ack) = rig.reply(&RawRequest::new(3, MAC_A, 5).ciaddr(a).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(r.to, Destination::Unicast(a));
    assert_eq!(ack.ciaddr(), a);
    let second = rig.db.get(a).unwrap().expires;
    assert_eq!(
        second.as_lease_file_secs(),
        first.as_lease_file_secs() + 1800
    );
}

#[test]
fn release_frees_but_only_for_the_owner() {
    let mut rig = Rig::new(|c| c.dhcp_ranges = vec![range(10, 10)]);
    let a = rig.dora(MAC_A);
    let forged = RawRequest::new(7, MAC_B, 3)
        .ciaddr(a)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(rig.send(&forged), Decision::Ignored(Ignored::NotOwner));
    assert_eq!(rig.db.get(a).unwrap().state, LeaseState::Bound);
    let release = RawRequest::new(7, MAC_A, 3)
        .ciaddr(a)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(rig.send(&release), Decision::Done);
    assert_eq!(rig.db.get(a).unwrap().state, LeaseState::Released);
    assert_eq!(rig.dora(MAC_B), a);
}

#[test]
fn declined_address_is_held_then_reused() {
    let mut rig = Rig::new(|c| c.dhcp_ranges = vec![range(10, 11)]);
    let a = rig.dora(MAC_A);
    let decline = RawRequest::new(4, MAC_A, 3)
        .opt(50, &a.octets())
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(rig.send(&decline), Decision::Done);
    assert_eq!(rig.db.get(a).unwrap().state, LeaseState::Declined);
    let b = rig.dora(MAC_B);
    assert_ne!(a, b);
    assert_eq!(
        rig.send(&RawRequest::new(1, [2, 0, 0, 0, 0, 0xc], 1).finish()),
        Decision::Ignored(Ignored::NoAddress)
    );
    rig.now += 601 * 1000;
    rig.engine.tick(&mut rig.db, rig.now);
    assert_eq!(rig.dora([2, 0, 0, 0, 0, 0xc]), a);
}

#[test]
fn lease_max_is_enforced_but_existing_clients_renew() {
    let mut rig = Rig::new(|c| c.lease_max = 1);
    let a = rig.dora(MAC_A);
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_B, 1).finish()),
        Decision::Ignored(Ignored::LeaseMax)
    );
    assert_eq!(rig.dora(MAC_A), a);
}

#[test]
fn ping_check_parks_the_client_and_skips_busy_addresses() {
    let mut rig = Rig::new(|c| c.no_ping = false);
    let discover = RawRequest::new(1, MAC_A, 1).finish();
    let Decision::Probe { token, addr: first } = rig.send(&discover) else {
        panic!("expected a probe")
    };
    // The client retransmits while the ping runs: no second probe, no offer.
    assert_eq!(
        rig.send(&discover),
        Decision::Ignored(Ignored::ProbeInProgress)
    );
    // Meanwhile another client is served and does not get the probed address.
    let Decision::Probe {
        token: tb,
        addr: b_addr,
    } = rig.send(&RawRequest::new(1, MAC_B, 1).finish())
    else {
        panic!()
    };
    assert_ne!(b_addr, first);
    // Something answers: A is probed on another address.
    let Decision::Probe {
        token: t2,
        addr: second,
    } = rig.engine.probe_done(token, true, &mut rig.db, rig.now)
    else {
        panic!()
    };
    assert_ne!(second, first);
    assert_eq!(rig.engine.stats().probes_answered, 1);
    let Decision::Reply(r) = rig.engine.probe_done(t2, false, &mut rig.db, rig.now) else {
        panic!()
    };
    let offer = Message::decode(&mut Decoder::new(&r.packet)).unwrap();
    assert_eq!(offer.yiaddr(), second);
    assert!(matches!(
        rig.engine.probe_done(tb, false, &mut rig.db, rig.now),
        Decision::Reply(_)
    ));
    // The address that answered stays out of use for a while.
    let (_, ack) = rig.reply(
        &RawRequest::new(3, [2, 0, 0, 0, 0, 0xc], 2)
            .opt(50, &first.octets())
            .opt(54, &SERVER.octets())
            .finish(),
    );
    assert_eq!(msg_type(&ack), MessageType::Nak);
}

#[test]
fn rapid_commit_acks_a_discover() {
    let mut rig = Rig::new(|c| c.rapid_commit = true);
    let (r, ack) = rig.reply(&RawRequest::new(1, MAC_A, 1).opt(80, &[]).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert!(r.durable);
    assert_eq!(raw_opt(&r.packet, 80), Some(vec![]));
    assert!(rig.db.get(ack.yiaddr()).is_some());
    // Without the client's option 80 it is a normal OFFER.
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_B, 1).finish());
    assert_eq!(msg_type(&offer), MessageType::Offer);
}

#[test]
fn relayed_requests_go_back_to_the_relay_with_option_82_last() {
    let mut rig = Rig::new(|c| {
        let mut r = range(10, 20);
        r.start = Ipv4Addr::new(198, 18, 9, 10);
        r.end = Ipv4Addr::new(198, 18, 9, 20);
        r.netmask = Some(Ipv4Addr::new(255, 255, 255, 0));
        c.dhcp_ranges = vec![r];
    });
    let relay = Ipv4Addr::new(198, 18, 9, 1);
    let agent = [1u8, 4, 0, 0, 0, 5];
    let discover = RawRequest::new(1, MAC_A, 1)
        .giaddr(relay)
        .opt(61, &[1, 2, 3])
        .opt(82, &agent)
        .finish();
    let (r, offer) = rig.reply(&discover);
    assert_eq!(r.to, Destination::Relay(relay));
    assert_eq!(offer.giaddr(), relay);
    assert!(offer.yiaddr().octets()[2] == 9);
    assert_eq!(raw_opt(&r.packet, 82), Some(agent.to_vec()));
    assert_eq!(
        raw_opt(&r.packet, 61),
        Some(vec![1, 2, 3]),
        "client-id echoed (RFC 6842)"
    );
    assert_eq!(
        raw_opt(&r.packet, 3),
        Some(relay.octets().to_vec()),
        "the relay is the client's router"
    );
    let end = r.packet.iter().rposition(|&b| b == 255).unwrap();
    assert_eq!(
        &r.packet[end - agent.len() - 2..end],
        &[&[82u8, agent.len() as u8][..], &agent].concat()[..]
    );
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut rig = Rig::new(|c| {
        c.dhcp_options.push(DhcpOptionSpec {
            code: 42,
            match_tags: vec![],
            value: OptionValue::Addresses(vec![Ipv4Addr::UNSPECIFIED]),
            force: false,
        })
    });
    let client = Ipv4Addr::new(198, 18, 0, 200);
    let (r, ack) = rig.reply(
        &RawRequest::new(8, MAC_A, 1)
            .ciaddr(client)
            .opt(55, &[42])
            .finish(),
    );
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.to, Destination::Unicast(client));
    assert!(!r.durable);
    assert_eq!(raw_opt(&r.packet, 51), None);
    assert_eq!(
        raw_opt(&r.packet, 42),
        Some(SERVER.octets().to_vec()),
        "0.0.0.0 means this server"
    );
    assert!(rig.db.is_empty());
}

#[test]
fn ignored_hosts_and_unserved_interfaces_get_nothing() {
    let mut rig = Rig::new(|c| {
        c.dhcp_hosts.push(DhcpHost {
            macs: vec![MacPattern {
                htype: None,
                bytes: MAC_A.iter().map(|b| Some(*b)).collect(),
            }],
            ignore: true,
            ..Default::default()
        })
    });
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_A, 1).finish()),
        Decision::Ignored(Ignored::HostIgnored)
    );
    rig.arrival.addrs = vec![IfAddr {
        addr: Ipv4Addr::new(198, 19, 5, 1),
        prefix: 24,
    }];
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_B, 1).finish()),
        Decision::Ignored(Ignored::NoNetwork)
    );
}

#[test]
fn a_new_lease_takes_a_hostname_from_an_older_one() {
    let mut rig = Rig::new(|_| {});
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    let a = offer.yiaddr();
    rig.reply(
        &RawRequest::new(3, MAC_A, 2)
            .opt(54, &SERVER.octets())
            .opt(50, &a.octets())
            .opt(12, b"pc")
            .finish(),
    );
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_B, 1).finish());
    let b = offer.yiaddr();
    rig.reply(
        &RawRequest::new(3, MAC_B, 2)
            .opt(54, &SERVER.octets())
            .opt(50, &b.octets())
            .opt(12, b"PC")
            .finish(),
    );
    assert_eq!(rig.db.get(a).unwrap().hostname, None);
    assert_eq!(rig.db.get(b).unwrap().hostname.as_deref(), Some("PC"));
    assert_eq!(rig.db.by_hostname("pc").map(|r| r.ip), Some(b));
}

#[test]
fn hostile_packets_are_counted_never_answered() {
    let mut rig = Rig::new(|_| {});
    let good = RawRequest::new(1, MAC_A, 1).finish();
    let mut corpus: Vec<Vec<u8>> = vec![vec![], vec![0; 10], good[..239].to_vec()];
    let mut bad_hlen = good.clone();
    bad_hlen[2] = 200;
    corpus.push(bad_hlen);
    let mut reply_op = good.clone();
    reply_op[0] = 2;
    corpus.push(reply_op);
    let mut huge_prl = RawRequest::new(1, MAC_A, 1);
    for _ in 0..40 {
        huge_prl.opt(55, &[0xff; 255]);
    }
    // Overlong option length running past the end of the packet.
    let mut overrun = good[..240].to_vec();
    overrun.extend_from_slice(&[53, 1, 1, 12, 200, b'x']);
    let mut offer = good.clone();
    offer[242] = 2;
    corpus.push(offer);
    for p in &corpus {
        assert!(matches!(rig.send(p), Decision::Ignored(_)), "{p:?}");
    }
    assert_eq!(rig.engine.stats().ignored_total(), corpus.len() as u64);
    // A huge parameter request list is a request like any other.
    assert!(matches!(rig.send(&huge_prl.finish()), Decision::Reply(_)));
    // An option running past the end costs only itself, and is counted.
    assert!(matches!(rig.send(&overrun), Decision::Reply(_)));
    assert_eq!(rig.engine.stats().bad_options, 1);
}

/// Mutated real requests (flipped bytes, truncations, random option
/// runs) against one engine and database: nothing panics, and every packet
/// is either answered or counted.
#[test]
fn mutated_requests_never_panic_and_are_accounted_for() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7717);
    let mut rig = Rig::new(|c| c.authoritative = true);
    let seeds: Vec<Vec<u8>> = (1u8..=8)
        .map(|t| {
            RawRequest::new(t, MAC_A, 1)
                .opt(50, &[198, 18, 0, 12])
                .opt(54, &SERVER.octets())
                .opt(81, &[4, 0, 0, 3, b'a', b'b', b'c', 0])
                .opt(61, &[1, 2, 3])
                .finish()
        })
        .collect();
    let n = 20_000;
    let (mut replies, mut ignored, mut done) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let mut p = seeds[i % seeds.len()].clone();
        match rng.random_range(0..4) {
            0 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
            }
            1 => p.truncate(rng.random_range(0..p.len())),
            2 => {
                p.pop();
                for _ in 0..rng.random_range(0..300) {
                    p.push(rng.random());
                }
            }
            _ => {
                let at = rng.random_range(240..p.len());
                p[at] = rng.random();
                p[rng.random_range(0..240)] = rng.random();
            }
        }
        match rig.send(&p) {
            Decision::Reply(r) => {
                replies += 1;
                assert!(
                    r.packet.len() >= 300 && r.packet.len() <= 548,
                    "{} bytes",
                    r.packet.len()
                );
            }
            Decision::Ignored(_) => ignored += 1,
            Decision::Done => done += 1,
            Decision::Probe { .. } => panic!("no-ping is set"),
        }
        rig.now += 10;
    }
    let s = rig.engine.stats();
    assert_eq!(s.received, n as u64);
    assert_eq!(s.offers + s.acks + s.naks, replies);
    assert_eq!(s.ignored_total(), ignored);
    assert_eq!(replies + ignored + done, n as u64);
    assert!(
        replies > 100 && ignored > 100,
        "the mutations exercise both paths: {s:?}"
    );
}

#[test]
fn owner_of_splits_each_range_contiguously() {
    let (s, e) = (addr(10), addr(20));
    let primaries = |split| {
        (10..=20)
            .filter(|&n| owner_of(s, e, addr(n), split) == Role::Primary)
            .count()
    };
    assert_eq!(
        primaries(50),
        6,
        "11 addresses: floor(5.5) = 5 to the secondary"
    );
    assert_eq!(primaries(0), 11);
    assert_eq!(primaries(100), 0);
    assert_eq!(primaries(33), 8, "floor(3.63) = 3 to the secondary");
    assert_eq!(owner_of(s, e, addr(15), 50), Role::Primary);
    assert_eq!(owner_of(s, e, addr(16), 50), Role::Secondary);
    assert_eq!(owner_of(addr(10), addr(10), addr(10), 99), Role::Primary);
    assert_eq!(owner_of(addr(10), addr(10), addr(10), 100), Role::Secondary);
    // The engine splits its pools the same way.
    let rig = Rig::failover(Role::Primary, ServeMode::Linked);
    assert_eq!(rig.engine.owner_of(addr(15)), Some(Role::Primary));
    assert_eq!(rig.engine.owner_of(addr(16)), Some(Role::Secondary));
    assert_eq!(rig.engine.owner_of(addr(21)), None);
    assert_eq!(
        Rig::new(|_| {}).engine.owner_of(addr(20)),
        Some(Role::Primary)
    );
}

#[test]
fn unlinked_allocates_only_its_own_share_with_mclt_leases() {
    for own in [Role::Primary, Role::Secondary] {
        let mut rig = Rig::failover(own, ServeMode::Unlinked);
        let size = if own == Role::Primary { 6 } else { 5 };
        for n in 0..size {
            let (_, offer) = rig.reply(&RawRequest::new(1, mac(n), 1).finish());
            let ip = offer.yiaddr();
            assert!(in_share(ip, own), "{own:?} offered {ip}");
            let (r, ack) = rig.reply(
                &RawRequest::new(3, mac(n), 2)
                    .opt(54, &SERVER.octets())
                    .opt(50, &ip.octets())
                    .finish(),
            );
            assert_eq!(msg_type(&ack), MessageType::Ack);
            assert_eq!(
                opt_u32(&r, 51),
                Some(MCLT_SECS as u32),
                "lease capped at the MCLT"
            );
            assert_eq!(
                opt_u32(&r, 58),
                Some(MCLT_SECS as u32 / 2),
                "T1 follows the cap"
            );
            assert_eq!(
                opt_u32(&r, 59),
                Some(MCLT_SECS as u32 / 8 * 7),
                "T2 follows the cap"
            );
            assert_eq!(
                rig.db.get(ip).unwrap().expires,
                Expiry::At(rig.now_secs() + MCLT_SECS)
            );
        }
        assert_eq!(
            rig.send(&RawRequest::new(1, mac(99), 1).finish()),
            Decision::Ignored(Ignored::NoAddress),
            "own share exhausted: the partner's stays untouched"
        );
        assert_eq!(rig.engine.free_per_range(), vec![11 - size as u32]);
    }
}

#[test]
fn linked_primary_reaches_into_the_secondary_share_only_when_its_own_is_exhausted() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Linked);
    for n in 0..6 {
        let ip = rig.dora(mac(n));
        assert!(in_share(ip, Role::Primary), "{ip}");
    }
    let (r, offer) = rig.reply(&RawRequest::new(1, mac(6), 1).finish());
    assert!(
        in_share(offer.yiaddr(), Role::Secondary),
        "{}",
        offer.yiaddr()
    );
    assert_eq!(
        opt_u32(&r, 51),
        Some(3600),
        "configured lease time while linked"
    );
    for n in 7..11 {
        assert!(in_share(rig.dora(mac(n)), Role::Secondary));
    }
}

#[test]
fn passive_secondary_serves_only_clients_the_primary_leaves_unanswered() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Passive);
    for secs in [0, 9] {
        assert_eq!(
            rig.send(&RawRequest::new(1, MAC_A, 1).secs(secs).finish()),
            Decision::Ignored(Ignored::Passive)
        );
    }
    assert_eq!(rig.engine.stats().ignored.get("passive"), Some(&2));
    let (r, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).secs(10).finish());
    let ip = offer.yiaddr();
    assert!(in_share(ip, Role::Secondary), "{ip}");
    assert_eq!(opt_u32(&r, 51), Some(3600), "configured lease, no MCLT cap");
    let request = |secs| {
        RawRequest::new(3, MAC_A, 2)
            .opt(54, &SERVER.octets())
            .opt(50, &ip.octets())
            .secs(secs)
            .finish()
    };
    // Another client's REQUEST for it, secs 0: the primary's to answer.
    let other = RawRequest::new(3, MAC_B, 2)
        .opt(54, &SERVER.octets())
        .opt(50, &ip.octets())
        .finish();
    assert_eq!(rig.send(&other), Decision::Ignored(Ignored::Passive));
    // The client served by `secs` gets the ACK for our offer even if its
    // REQUEST says secs 0 (some clients reset it): issue 14, case 8.
    let (r, ack) = rig.reply(&request(0));
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(opt_u32(&r, 51), Some(3600));
    assert_eq!(rig.db.get(ip).unwrap().state, LeaseState::Bound);
}

#[test]
fn unlinked_acks_an_unknown_unclaimed_rebind_and_naks_a_held_one() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Unlinked);
    // Not authoritative, address in the own share, unknown to us.
    let ours = addr(14);
    let (r, ack) = rig.reply(&RawRequest::new(3, MAC_A, 5).ciaddr(ours).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), ours);
    assert_eq!(opt_u32(&r, 51), Some(MCLT_SECS as u32));
    assert_eq!(rig.db.get(ours).unwrap().hwaddr, MAC_A.to_vec());
    // In the partner's share it is the partner's to answer for
    // (takeover_tests has the details).
    assert_eq!(
        rig.send(&RawRequest::new(3, MAC_A, 6).ciaddr(addr(18)).finish()),
        Decision::Ignored(Ignored::PartnerShare)
    );
    // INIT-REBOOT for an unknown own-share address: an ACK.
    let (_, ack) = rig.reply(
        &RawRequest::new(3, MAC_B, 6)
            .opt(50, &addr(11).octets())
            .finish(),
    );
    assert_eq!(msg_type(&ack), MessageType::Ack);

    // Another client's lease on an own-share address: NAK.
    rig.merged(addr(13), mac(7), LeaseState::Bound, rig.now_secs() + 3600);
    let (_, nak) = rig.reply(&RawRequest::new(3, mac(8), 7).ciaddr(addr(13)).finish());
    assert_eq!(msg_type(&nak), MessageType::Nak);
    // The same in the partner's share: silence, as our record of it may
    // be stale (the partner may have given it to this client since).
    rig.merged(addr(17), mac(7), LeaseState::Bound, rig.now_secs() + 3600);
    assert_eq!(
        rig.send(&RawRequest::new(3, mac(8), 7).ciaddr(addr(17)).finish()),
        Decision::Ignored(Ignored::PartnerShare)
    );
    // An address offered to another client (held): NAK.
    let (_, offer) = rig.reply(&RawRequest::new(1, mac(9), 8).finish());
    let (_, nak) = rig.reply(
        &RawRequest::new(3, mac(8), 9)
            .ciaddr(offer.yiaddr())
            .finish(),
    );
    assert_eq!(msg_type(&nak), MessageType::Nak);
    // Linked, the same unknown rebind is someone else's business.
    rig.engine.set_mode(ServeMode::Linked);
    assert_eq!(
        rig.send(&RawRequest::new(3, mac(8), 10).ciaddr(addr(19)).finish()),
        Decision::Ignored(Ignored::UnknownClient)
    );
}

#[test]
fn unlinked_discover_moves_a_client_with_an_ended_lease_out_of_the_partner_share() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Unlinked);
    let old = addr(18);
    // Its lease there ended (a live one it would get back: takeover_tests).
    rig.merged(old, MAC_A, LeaseState::Expired, rig.now_secs() - 10);
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).opt(50, &old.octets()).finish());
    let ip = offer.yiaddr();
    assert!(in_share(ip, Role::Primary), "{ip}");
    // Selecting the partner-share address is a new allocation too: NAK.
    let (_, nak) = rig.reply(
        &RawRequest::new(3, MAC_A, 2)
            .opt(54, &SERVER.octets())
            .opt(50, &old.octets())
            .finish(),
    );
    assert_eq!(msg_type(&nak), MessageType::Nak);
    assert_eq!(rig.dora(MAC_A), ip);
    assert_eq!(rig.db.get(old).unwrap().state, LeaseState::Expired);
    // A live lease there, the partner's, is renewed.
    rig.replicated(addr(19), MAC_B, LeaseState::Bound, rig.now_secs() + 3600);
    let (_, ack) = rig.reply(&RawRequest::new(3, MAC_B, 3).ciaddr(addr(19)).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
}

#[test]
fn partner_down_takes_only_aged_partner_addresses_and_only_after_its_time() {
    let from = T0 + 60_000;
    let mut rig = Rig::failover(
        Role::Primary,
        ServeMode::PartnerDown {
            partner_share_from_ms: from,
        },
    );
    let now = rig.now_secs();
    // The secondary's share: 16 released recently, 17 expired long ago,
    // 18 never leased, 19 bound to a client, 20 expired recently.
    rig.merged(addr(16), mac(16), LeaseState::Released, now - 100);
    rig.merged(addr(17), mac(17), LeaseState::Expired, now - 2 * MCLT_SECS);
    rig.merged(addr(19), mac(19), LeaseState::Bound, now + 3600);
    rig.merged(
        addr(20),
        mac(20),
        LeaseState::Expired,
        from / 1000 - MCLT_SECS + 30,
    );
    for n in 0..6 {
        let ip = rig.dora(mac(n));
        assert!(in_share(ip, Role::Primary), "{ip}");
    }
    assert_eq!(
        rig.send(&RawRequest::new(1, mac(50), 1).finish()),
        Decision::Ignored(Ignored::NoAddress),
        "before the partner-share time: own share only"
    );
    rig.now = from;
    let mut got: Vec<Ipv4Addr> = (50..52).map(|n| rig.dora(mac(n))).collect();
    got.sort();
    assert_eq!(got, vec![addr(17), addr(18)]);
    let (r, _) = rig.reply(&RawRequest::new(3, mac(50), 9).ciaddr(addr(17)).finish());
    assert_eq!(
        opt_u32(&r, 51),
        Some(MCLT_SECS as u32),
        "partner-down leases are capped"
    );
    assert_eq!(
        rig.send(&RawRequest::new(1, mac(52), 1).finish()),
        Decision::Ignored(Ignored::NoAddress),
        "16 and 20 ended less than an MCLT ago"
    );
    // The client the partner may have renewed 16 for still gets its ACK.
    let (_, ack) = rig.reply(&RawRequest::new(3, mac(16), 2).ciaddr(addr(16)).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    // Once 20's lease is an MCLT old, it is free for partner-down.
    rig.now = from + 30_000;
    rig.engine.tick(&mut rig.db, rig.now);
    assert_eq!(rig.dora(mac(52)), addr(20));
}

#[test]
fn leaving_partner_down_frees_addresses_held_as_too_recent() {
    let mut rig = Rig::failover(
        Role::Primary,
        ServeMode::PartnerDown {
            partner_share_from_ms: T0,
        },
    );
    for n in 16..=20 {
        rig.merged(addr(n), mac(n), LeaseState::Released, rig.now_secs());
    }
    for n in 0..6 {
        rig.dora(mac(n));
    }
    assert_eq!(rig.engine.free_per_range(), vec![5]);
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_A, 1).finish()),
        Decision::Ignored(Ignored::NoAddress)
    );
    assert_eq!(rig.engine.free_per_range(), vec![0], "held as too recent");
    // Back in sync, the partner acks every change: linked may use them.
    rig.engine.set_mode(ServeMode::Linked);
    rig.engine.tick(&mut rig.db, rig.now);
    assert_eq!(rig.engine.free_per_range(), vec![5]);
    assert!(in_share(rig.dora(MAC_A), Role::Secondary));
}

#[test]
fn durable_replies_carry_the_stamp_of_their_commit() {
    for mut rig in [
        Rig::new(|c| c.authoritative = true),
        Rig::failover(Role::Primary, ServeMode::Unlinked),
    ] {
        let (r, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
        assert_eq!(r.commit, None, "an offer promises nothing");
        let ip = offer.yiaddr();
        let (r, ack) = rig.reply(
            &RawRequest::new(3, MAC_A, 2)
                .opt(54, &SERVER.octets())
                .opt(50, &ip.octets())
                .opt(12, b"pc")
                .finish(),
        );
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert_eq!(r.commit, Some(rig.db.get(ip).unwrap().stamp));
        // A move ends the old lease first; the reply waits for the last commit.
        rig.now += 1000;
        let to = if ip == addr(12) { addr(13) } else { addr(12) };
        let (r, ack) = rig.reply(&RawRequest::new(3, MAC_A, 3).opt(50, &to.octets()).finish());
        assert_eq!(msg_type(&ack), MessageType::Ack);
        let stamp = rig.db.get(to).unwrap().stamp;
        assert_eq!(r.commit, Some(stamp));
        assert!(stamp > rig.db.get(ip).unwrap().stamp);
        let (r, _) = rig.reply(&RawRequest::new(8, MAC_B, 4).ciaddr(addr(200)).finish());
        assert_eq!(r.commit, None, "an INFORM answer is not durable");
    }
}

#[test]
fn unlinked_reuses_an_own_share_address_only_an_mclt_after_its_lease_ended() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Unlinked);
    let own: Vec<Ipv4Addr> = (10..=20)
        .map(addr)
        .filter(|ip| in_share(*ip, Role::Primary))
        .collect();
    let (&recent, others) = own.split_first().unwrap();
    for (k, ip) in others.iter().enumerate() {
        rig.merged(
            *ip,
            mac(100 + k as u8),
            LeaseState::Bound,
            rig.now_secs() + 3600,
        );
    }
    // Ended 10 s ago: the partner may have extended it for its client.
    rig.merged(recent, MAC_B, LeaseState::Expired, rig.now_secs() - 10);
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_A, 1).finish()),
        Decision::Ignored(Ignored::NoAddress)
    );
    // Its own client may have it back at once.
    let (_, offer) = rig.reply(
        &RawRequest::new(1, MAC_B, 2)
            .opt(50, &recent.octets())
            .finish(),
    );
    assert_eq!(offer.yiaddr(), recent);
    // An MCLT after the end, anyone may.
    rig.now += (MCLT_SECS + 1) * 1000 + super::engine::OFFER_HOLD_MS;
    rig.engine.tick(&mut rig.db, rig.now);
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 3).finish());
    assert_eq!(offer.yiaddr(), recent);
}

#[test]
fn unlinked_extends_a_partner_share_lease_once_by_an_mclt_at_most() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Unlinked);
    let theirs = addr(19);
    assert!(in_share(theirs, Role::Secondary));
    let partner_node = rig.db.node_id().wrapping_add(1).max(1);
    rig.db
        .merge_in(
            LeaseRecord {
                ip: theirs,
                state: LeaseState::Bound,
                client: ClientKey::from_hwaddr(1, &MAC_A),
                htype: 1,
                hwaddr: MAC_A.to_vec(),
                client_id: None,
                hostname: None,
                expires: Expiry::At(rig.now_secs() + 60),
                stamp: twinmasq_proto::Stamp {
                    wall_ms: rig.now,
                    counter: 0,
                    node: partner_node,
                },
            },
            rig.now,
        )
        .unwrap();
    rig.engine.note_change(theirs, &rig.db);
    // The partner knows the lease ends in 60 s: an MCLT past now fits.
    let (r, ack) = rig.reply(&RawRequest::new(3, MAC_A, 1).ciaddr(theirs).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(opt_u32(&r, 51), Some(MCLT_SECS as u32));
    // Our own extension is not extended again: the partner does not know
    // it (`LeaseDb::partner_knows`), so it is no lease to renew in the
    // partner's share; the client's lease runs out and it asks again.
    rig.now += 10_000;
    assert_eq!(
        rig.send(&RawRequest::new(3, MAC_A, 2).ciaddr(theirs).finish()),
        Decision::Ignored(Ignored::PartnerShare)
    );
}

/// The DHCP lines of a conf-file text, laid over the rig's config.
fn conf(text: &'static str) -> impl FnOnce(&mut Config) {
    move |c| {
        let p = crate::config::parse_conf_text(text, "test").unwrap();
        c.dhcp_hosts = p.dhcp_hosts;
        c.dhcp_options = p.dhcp_options;
        c.dhcp_ignore = p.dhcp_ignore;
        c.dhcp_broadcast = p.dhcp_broadcast;
        c.dhcp_boot = p.dhcp_boot;
        c.dhcp_classes = p.dhcp_classes;
    }
}

/// A BOOTP text field up to its first zero.
fn field(packet: &[u8], at: usize, len: usize) -> &[u8] {
    let f = &packet[at..at + len];
    &f[..f.iter().position(|b| *b == 0).unwrap_or(len)]
}

fn siaddr(packet: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(packet[20], packet[21], packet[22], packet[23])
}

#[test]
fn dhcp_ignore_turns_away_clients_whose_tags_match() {
    let mut rig = Rig::new(conf(
        "dhcp-host=02:00:00:00:00:0a,198.18.0.15\ndhcp-ignore=tag:!known\n",
    ));
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 0, 15));
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_B, 1).finish()),
        Decision::Ignored(Ignored::TagIgnored)
    );
    let ip = Ipv4Addr::new(198, 18, 0, 12);
    assert_eq!(
        rig.send(
            &RawRequest::new(3, MAC_B, 2)
                .opt(54, &SERVER.octets())
                .opt(50, &ip.octets())
                .finish()
        ),
        Decision::Ignored(Ignored::TagIgnored)
    );
    assert!(rig.db.is_empty());
    assert_eq!(rig.engine.stats().ignored.get("tag_ignored"), Some(&2));

    // All tags of a line must match; the interface name is a tag.
    let mut rig = Rig::new(conf("dhcp-ignore=tmq0,tag:!known\n"));
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_A, 1).finish()),
        Decision::Ignored(Ignored::TagIgnored)
    );
    let mut rig = Rig::new(conf("dhcp-ignore=tag:tmq0,tag:known\n"));
    assert!(matches!(
        rig.send(&RawRequest::new(1, MAC_A, 1).finish()),
        Decision::Reply(_)
    ));
}

#[test]
fn dhcp_broadcast_forces_broadcast_replies() {
    let mut rig = Rig::new(|_| {});
    let (r, _) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert!(matches!(r.to, Destination::Hardware { .. }));
    assert_eq!(r.packet[10] & 0x80, 0);

    let mut rig = Rig::new(conf(
        "dhcp-host=02:00:00:00:00:0a,set:old-pxe\ndhcp-broadcast=tag:old-pxe\n",
    ));
    let (r, _) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(r.to, Destination::Broadcast);
    assert_eq!(r.packet[10] & 0x80, 0x80);
    let (r, _) = rig.reply(&RawRequest::new(1, MAC_B, 1).finish());
    assert!(matches!(r.to, Destination::Hardware { .. }));

    // Without tags it covers every client.
    let mut rig = Rig::new(conf("dhcp-broadcast\n"));
    let (r, _) = rig.reply(&RawRequest::new(1, MAC_B, 1).finish());
    assert_eq!(r.to, Destination::Broadcast);
    assert_eq!(r.packet[10] & 0x80, 0x80);
}

#[test]
fn dhcp_boot_fills_file_sname_and_siaddr() {
    // Without dhcp-boot, siaddr is our own address, as dnsmasq sends it.
    let mut rig = Rig::new(|_| {});
    let (r, _) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(siaddr(&r.packet), SERVER);
    assert_eq!(field(&r.packet, 108, 128), b"");

    let mut rig = Rig::new(conf("dhcp-boot=pxelinux.0,boothost,198.18.0.9\n"));
    let (r, _) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(siaddr(&r.packet), Ipv4Addr::new(198, 18, 0, 9));
    assert_eq!(field(&r.packet, 44, 64), b"boothost");
    assert_eq!(field(&r.packet, 108, 128), b"pxelinux.0");
    assert_eq!(raw_opt(&r.packet, 66), None);
    assert_eq!(raw_opt(&r.packet, 67), None);
    // Asked for as options, they go as options, zero-terminated.
    let (r, _) = rig.reply(
        &RawRequest::new(1, MAC_B, 1)
            .opt(55, &[1, 3, 66, 67])
            .finish(),
    );
    assert_eq!(raw_opt(&r.packet, 67), Some(b"pxelinux.0\0".to_vec()));
    assert_eq!(raw_opt(&r.packet, 66), Some(b"boothost\0".to_vec()));
    assert_eq!(field(&r.packet, 108, 128), b"");
    assert_eq!(siaddr(&r.packet), Ipv4Addr::new(198, 18, 0, 9));
}

#[test]
fn dhcp_boot_picks_the_last_matching_line() {
    let mut rig = Rig::new(conf(
        "dhcp-host=02:00:00:00:00:0a,set:efi\n\
         dhcp-boot=tag:efi,first.efi\n\
         dhcp-boot=tag:efi,tag:!nothing,second.efi\n\
         dhcp-boot=plain.0\n\
         dhcp-boot=tag:other,other.0\n",
    ));
    let (r, _) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(field(&r.packet, 108, 128), b"second.efi");
    assert_eq!(siaddr(&r.packet), SERVER);
    let (r, ack) = rig.reply(&RawRequest::new(1, MAC_B, 1).finish());
    assert_eq!(msg_type(&ack), MessageType::Offer);
    assert_eq!(field(&r.packet, 108, 128), b"plain.0");
}

#[test]
fn hosts_from_ethers_and_a_changed_hosts_file_reach_the_engine() {
    use crate::config::dhcp_files::DhcpFiles;
    let dir = tempfile::tempdir().unwrap();
    let ethers = dir.path().join("ethers");
    std::fs::write(&ethers, "02:00:00:00:00:0a 198.18.0.17\n").unwrap();
    let base = Arc::new(crate::config::parse_conf_text("read-ethers\n", "test").unwrap());
    let mut rig = Rig::new(|c| {
        c.read_ethers = true;
        c.dhcp_hosts = DhcpFiles::read_with_ethers(&base, &ethers)
            .merged_into(&base)
            .dhcp_hosts;
    });
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 0, 17));

    // The file now gives MAC_B .18; the engine takes the new hosts.
    std::fs::write(&ethers, "02:00:00:00:00:0b 198.18.0.18\n").unwrap();
    let mut cfg = rig.engine.config().clone();
    cfg.dhcp_hosts = DhcpFiles::read_with_ethers(&base, &ethers)
        .merged_into(&base)
        .dhcp_hosts;
    rig.engine.set_hosts_and_options(Arc::new(cfg), &rig.db);
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_B, 3).finish());
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 0, 18));
}

#[test]
fn class_tags_are_set_before_the_host_lookup() {
    let mut rig = Rig::new(conf(
        "dhcp-vendorclass=set:pxe,PXEClient\n\
         dhcp-host=tag:pxe,02:00:00:00:00:0a,198.18.0.16\n\
         dhcp-ignore=tag:!pxe,tag:!known\n",
    ));
    let (_, offer) = rig.reply(
        &RawRequest::new(1, MAC_A, 1)
            .opt(60, b"PXEClient:Arch:00007")
            .finish(),
    );
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 18, 0, 16));
    // The same MAC without the class: the host line does not apply, and
    // neither tag is there, so dhcp-ignore turns it away.
    assert_eq!(
        rig.send(&RawRequest::new(1, MAC_A, 2).finish()),
        Decision::Ignored(Ignored::TagIgnored)
    );
}

/// Hostile clients, on the same rig.
#[path = "hostile_tests.rs"]
mod hostile;

/// Whose names leases publish, on the same rig.
#[path = "names_tests.rs"]
mod names;

/// Serving without the partner: partner-share requests, takeover.
#[path = "takeover_tests.rs"]
mod takeover;

/// A passive secondary and clients that leave `secs` at 0 (issue 14, case 8).
#[path = "unanswered_tests.rs"]
mod unanswered;
/// Review §10: an expiry near the end of the clock, as a lease file or a
/// partner could once store, reaches the unlinked partner-share rule; its
/// milliseconds saturate instead of overflowing (debug builds panicked).
#[test]
fn an_expiry_at_the_end_of_time_does_not_overflow() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Unlinked);
    let theirs = addr(19);
    assert!(in_share(theirs, Role::Secondary));
    rig.db
        .commit(
            LeaseRecord {
                ip: theirs,
                state: LeaseState::Bound,
                client: ClientKey::from_hwaddr(1, &MAC_A),
                htype: 1,
                hwaddr: MAC_A.to_vec(),
                client_id: None,
                hostname: None,
                expires: Expiry::At(u64::MAX / 100),
                stamp: twinmasq_proto::Stamp::default(),
            },
            rig.now,
        )
        .unwrap();
    // A sync since: the partner knows our record.
    rig.db.partner_holds_all_but([]);
    rig.engine.note_change(theirs, &rig.db);
    let (_, ack) = rig.reply(&RawRequest::new(3, MAC_A, 1).ciaddr(theirs).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
}

/// Issue 14, case 5: while the partners' configurations differ nothing new
/// is handed out, by any path: no offer, no SELECTING ACK, and not even
/// with `dhcp-authoritative` an INIT-REBOOT ACK for an address the node
/// holds no lease of; the client's own lease still renews.
#[test]
fn config_mismatch_hands_out_nothing_new_by_any_path() {
    let policy = SharePolicy {
        own: Role::Primary,
        split_percent: 50,
        mclt: std::time::Duration::from_secs(MCLT_SECS),
        unanswered_secs: 10,
    };
    let mut rig = Rig::build(|c| c.authoritative = true, Some(policy));
    rig.engine.set_mode(ServeMode::Unlinked);
    let held = rig.dora(mac(1));
    rig.engine.set_mode(ServeMode::ConfigMismatch);
    assert!(matches!(
        rig.send(&RawRequest::new(1, mac(2), 1).finish()),
        Decision::Ignored(_)
    ));
    let selecting = RawRequest::new(3, mac(2), 2)
        .opt(54, &SERVER.octets())
        .opt(50, &addr(11).octets())
        .finish();
    assert!(!matches!(rig.send(&selecting), Decision::Reply(r) if r.kind == MessageType::Ack));
    let reboot = RawRequest::new(3, mac(3), 3)
        .opt(50, &addr(12).octets())
        .finish();
    let d = rig.send(&reboot);
    assert!(
        !matches!(&d, Decision::Reply(r) if r.kind == MessageType::Ack),
        "an unknown INIT-REBOOT was ACKed while the configurations differ: {d:?}"
    );
    assert!(rig.db.get(addr(12)).is_none());
    let renew = RawRequest::new(3, mac(1), 4).ciaddr(held).finish();
    let (_, ack) = rig.reply(&renew);
    assert_eq!(msg_type(&ack), MessageType::Ack);
}

/// Lease ends against later grants under clock skew (case 3).
#[path = "ends_tests.rs"]
mod ends;

/// A renewal never shortens the lease the table records: should the ACK
/// never reach the client (lost, or the process died first), the client
/// keeps its earlier, longer lease. Simulation seed 3428 of
/// `failover_pair_under_pool_pressure` on 91d6cfa: a renewal apart,
/// capped at the MCLT, cut a lease's record short and the address went
/// back to the pool while its client held it.
#[test]
fn a_renewal_does_not_shorten_the_recorded_lease() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Linked);
    let ip = rig.dora(MAC_A);
    let first = rig.db.get(ip).unwrap().expires;
    let Expiry::At(first_end) = first else {
        panic!("a finite lease expected, got {first:?}");
    };
    assert!(first_end > rig.now_secs() + MCLT_SECS, "{first:?}");
    // Apart, leases are an MCLT long.
    rig.engine.set_mode(ServeMode::Unlinked);
    rig.now += 5_000;
    let (r, ack) = rig.reply(&RawRequest::new(3, MAC_A, 9).ciaddr(ip).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(opt_u32(&r, 51), Some(MCLT_SECS as u32));
    assert_eq!(rig.db.get(ip).unwrap().expires, first);
}

/// Nor does a grant to the client that released the address: the release
/// kept its binding's expiry, which the partner may still extend by an
/// MCLT, and the owner counts its wait for reuse from the record's expiry
/// (simulation seed 9459 of
/// `failover_pair_expired_clients_reclaim_their_addresses`).
#[test]
fn a_grant_after_a_release_keeps_the_released_bindings_expiry() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Linked);
    let ip = rig.dora(MAC_A);
    let first = rig.db.get(ip).unwrap().expires;
    rig.engine.set_mode(ServeMode::Unlinked);
    let release = RawRequest::new(7, MAC_A, 5)
        .ciaddr(ip)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(rig.send(&release), Decision::Done);
    assert_eq!(rig.db.get(ip).unwrap().state, LeaseState::Released);
    rig.now += 5_000;
    assert_eq!(rig.dora(MAC_A), ip);
    let rec = rig.db.get(ip).unwrap();
    assert_eq!((rec.state, rec.expires), (LeaseState::Bound, first));
}
