//! The recovery and config-mismatch cases of issue 14 (cases 1 and 5),
//! checked through what a DHCP engine serves in each mode the failover
//! node hands out: the composition the lease task runs, so they live
//! here, on the failover tests' in-memory pair.

use std::net::Ipv4Addr;

use twinmasq_proto::link::Role;
use twinmasq_proto::LeaseState;

use crate::failover::node::*;
use crate::failover::tests::*;
use crate::share::ServeMode;

/// An engine serving from `db` in the mode a node handed out, over the
/// rig's range 198.18.0.10-49 split 50/50.
fn engine_for(end: &End, own: Role) -> crate::dhcp::Engine {
    use crate::config::{Config, DhcpRange, LeaseTime};
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
        lease_time: LeaseTime::Secs(3600),
        is_static: false,
    });
    let policy = crate::share::SharePolicy {
        own,
        split_percent: 50,
        mclt: std::time::Duration::from_secs(60),
        unanswered_secs: 10,
    };
    let mut e = crate::dhcp::Engine::with_policy(std::sync::Arc::new(cfg), &end.db, Some(policy));
    e.set_local_addresses(&[Ipv4Addr::new(198, 18, 0, 1)], &end.db);
    e.set_mode(end.mode);
    e
}

/// Issue 14, case 5: after one node's `dhcp-range` is edited the link is
/// refused, and each node's own share under its own ranges may overlap
/// the partner's. While refused for that, neither hands out a new
/// address; a client renewing a lease the node holds is still answered.
#[test]
fn a_config_mismatch_stops_new_allocations_but_renews_held_leases() {
    use crate::dhcp::request::build::RawRequest;
    use crate::dhcp::{Arrival, Decision};
    use crate::net::ipv4::IfAddr;
    use twinmasq_proto::link::Role;
    let mut t = Pair::new(
        cfg(Role::Primary, 1, "198.18.0.10-198.18.0.49 split 50"),
        cfg(Role::Secondary, 1, "198.18.0.10-198.18.0.30 split 50"),
    );
    // Each holds one lease from before the edit: 12 the primary's, 40 the
    // secondary's.
    t.p.db.commit(lease(12, 1), t.now).unwrap();
    t.s.db.commit(lease(40, 2), t.now).unwrap();
    t.tick(1);
    t.tick(5_000);
    let arrival = Arrival {
        ifname: "tmq0".into(),
        ifindex: 7,
        addrs: vec![IfAddr {
            addr: Ipv4Addr::new(198, 18, 0, 1),
            prefix: 24,
        }],
        to_broadcast: true,
    };
    for (end, own, held, client) in [
        (&mut t.p, Role::Primary, 12, 1),
        (&mut t.s, Role::Secondary, 40, 2),
    ] {
        assert_eq!(end.node.status().state, "config-mismatch", "{own:?}");
        let mut engine = engine_for(end, own);
        let now = t.now;
        let fresh = RawRequest::new(1, [2, 0, 0, 0, 9, 9], 1).finish();
        let d = engine.handle(&fresh, &arrival, &mut end.db, now);
        assert!(
            matches!(d, Decision::Ignored(_)),
            "{own:?} answered a new client's DISCOVER while the configurations differ: {d:?}"
        );
        let renew = RawRequest::new(3, [2, 0, 0, 0, 0, client], 2)
            .ciaddr(Ipv4Addr::new(198, 18, 0, held))
            .finish();
        let d = engine.handle(&renew, &arrival, &mut end.db, now);
        assert!(
            matches!(d, Decision::Reply(_)),
            "{own:?} did not renew the lease it holds: {d:?}"
        );
    }
}

// Issue 14, case 1: recovery before service. A node that starts does not
// know what its partner handed out meanwhile (a replaced disk, a restored
// backup, the partner in partner-down): it hands out no new address until
// a sync has told it, or an MCLT has passed with no partner to ask.

/// DISCOVER then REQUEST from client `mac_last` on `end`'s engine, in the
/// mode its node handed out: the address acknowledged, or None if the
/// node stayed silent (or NAKed).
fn dora(end: &mut End, own: Role, mac_last: u8, now: u64) -> Option<Ipv4Addr> {
    use crate::dhcp::request::build::RawRequest;
    use crate::dhcp::{Arrival, Decision};
    use crate::net::ipv4::IfAddr;
    use dhcproto::v4::{Message, MessageType, OptionCode};
    use dhcproto::{Decodable, Decoder};
    let arrival = Arrival {
        ifname: "tmq0".into(),
        ifindex: 7,
        addrs: vec![IfAddr {
            addr: Ipv4Addr::new(198, 18, 0, 1),
            prefix: 24,
        }],
        to_broadcast: true,
    };
    let mac = [2, 0, 0, 0, 0, mac_last];
    let mut engine = engine_for(end, own);
    let decode = |d: Decision| match d {
        Decision::Reply(r) => Some(Message::decode(&mut Decoder::new(&r.packet)).unwrap()),
        _ => None,
    };
    let offer = decode(engine.handle(
        &RawRequest::new(1, mac, u32::from(mac_last)).finish(),
        &arrival,
        &mut end.db,
        now,
    ))?;
    let ip = offer.yiaddr();
    let ack = decode(
        engine.handle(
            &RawRequest::new(3, mac, u32::from(mac_last) + 1)
                .opt(54, &[198, 18, 0, 1])
                .opt(50, &ip.octets())
                .finish(),
            &arrival,
            &mut end.db,
            now,
        ),
    )?;
    let kind = ack.opts().get(OptionCode::MessageType).cloned();
    (kind == Some(dhcproto::v4::DhcpOption::MessageType(MessageType::Ack))).then_some(ip)
}

fn holder(end: &End, ip: Ipv4Addr) -> Option<u8> {
    end.db
        .get(ip)
        .filter(|r| r.state == LeaseState::Bound)
        .map(|r| r.hwaddr[5])
}

/// A replaced (empty) database on the primary, the secondary alive: the
/// primary hands out nothing before the sync, then nothing the
/// secondary's table gives to another client.
#[test]
fn a_wiped_primary_allocates_nothing_until_synced_with_a_live_partner() {
    use twinmasq_proto::link::Role;
    let mut t = pair();
    t.tick(1);
    assert_eq!(t.p.mode, ServeMode::Linked);
    let held = linked_clients(&mut t, 1..16);
    // The primary's disk is replaced; the process starts again.
    t.p = End::new(cfg(Role::Primary, 1, "198.18.0.10-198.18.0.200"), t.now);
    t.settle();
    for c in 100..116 {
        let got = dora(&mut t.p, Role::Primary, c, t.now);
        assert_eq!(
            got,
            None,
            "a node with a replaced database handed out {got:?} to client {c} before syncing; the partner gives it to client {:?}",
            got.and_then(|ip| holder(&t.s, ip))
        );
    }
    for _ in 0..20 {
        t.tick(500);
    }
    assert_eq!(t.p.mode, ServeMode::Linked);
    let b = dora(&mut t.p, Role::Primary, 100, t.now).unwrap();
    assert!(held.iter().all(|(ip, _)| *ip != b));
    t.p.node.pump(&mut t.p.db, t.now);
    t.settle();
    for end in [&t.p, &t.s] {
        for (ip, c) in &held {
            assert_eq!(holder(end, *ip), Some(*c), "client {c}'s lease survives");
        }
        assert_eq!(holder(end, b), Some(100));
    }
}

/// Clients `macs` get addresses from the linked primary, replicated to
/// the secondary: (address, client).
fn linked_clients(t: &mut Pair, macs: std::ops::Range<u8>) -> Vec<(Ipv4Addr, u8)> {
    use twinmasq_proto::link::Role;
    let mut held = Vec::new();
    for c in macs {
        held.push((dora(&mut t.p, Role::Primary, c, t.now).unwrap(), c));
    }
    t.p.node.pump(&mut t.p.db, t.now);
    t.settle();
    for (ip, c) in &held {
        assert_eq!(holder(&t.s, *ip), Some(*c));
    }
    held
}

/// The same with the partner down: nothing new for an MCLT (the partner
/// may be serving; RECOVER-WAIT), then the own share.
#[test]
fn a_wiped_primary_with_its_partner_down_waits_an_mclt() {
    use twinmasq_proto::link::Role;
    let mut t = pair();
    t.tick(1);
    linked_clients(&mut t, 1..16);
    t.cut();
    t.p = End::new(cfg(Role::Primary, 1, "198.18.0.10-198.18.0.200"), t.now);
    let started = t.now;
    t.settle();
    for i in 0..59u8 {
        t.tick(1_000);
        let got = dora(&mut t.p, Role::Primary, 100 + i % 16, t.now);
        assert_eq!(
            got,
            None,
            "{} ms after start, partner unreachable, it handed out {got:?}; the partner gives it to client {:?}",
            t.now - started,
            got.and_then(|ip| holder(&t.s, ip))
        );
    }
    t.tick(1_000);
    assert!(dora(&mut t.p, Role::Primary, 100, t.now).is_some());
}

/// Partner-down declared on the secondary, which then hands out the
/// primary's share; the primary returns with its database intact (and
/// unaware): it syncs before it hands out anything, and the secondary's
/// leases stand.
#[test]
fn a_primary_returning_after_partner_down_syncs_before_serving() {
    use twinmasq_proto::link::Role;
    let mut t = pair();
    t.tick(1);
    let a = dora(&mut t.p, Role::Primary, 1, t.now).unwrap();
    t.p.node.pump(&mut t.p.db, t.now);
    t.settle();
    t.cut();
    t.tick(6_000);
    t.s.node.declare_partner_down(t.now).unwrap();
    t.tick(61_000);
    assert!(matches!(t.s.mode, ServeMode::PartnerDown { .. }));
    // The secondary's own share (30-49) fills, then the primary's.
    let mut given = Vec::new();
    for c in 10..40 {
        given.push((dora(&mut t.s, Role::Secondary, c, t.now).unwrap(), c));
    }
    let in_primary_share: Vec<_> = given
        .iter()
        .filter(|(ip, _)| u32::from(*ip) < u32::from(Ipv4Addr::new(198, 18, 0, 30)))
        .copied()
        .collect();
    assert!(!in_primary_share.is_empty());
    // The primary process starts again over its intact database.
    t.p.node = Node::open(
        cfg(Role::Primary, 1, "198.18.0.10-198.18.0.200"),
        &t.p.db,
        rand::random(),
        t.now,
    );
    t.p.conn = None;
    t.heal();
    t.settle();
    for c in 100..116 {
        let got = dora(&mut t.p, Role::Primary, c, t.now);
        assert_eq!(
            got,
            None,
            "the returning primary handed out {got:?} to client {c} before syncing; the partner gives it to client {:?}",
            got.and_then(|ip| holder(&t.s, ip))
        );
    }
    for _ in 0..20 {
        t.tick(500);
    }
    assert_eq!(t.p.mode, ServeMode::Linked);
    let fresh = dora(&mut t.p, Role::Primary, 120, t.now).unwrap();
    assert!(given.iter().all(|(ip, _)| *ip != fresh) && fresh != a);
    t.p.node.pump(&mut t.p.db, t.now);
    t.settle();
    for end in [&t.p, &t.s] {
        for (ip, c) in &given {
            assert_eq!(holder(end, *ip), Some(*c), "partner-down lease on {ip}");
        }
    }
}
