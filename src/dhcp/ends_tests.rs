//! Lease ends against grants across a partition with skewed clocks (issue
//! 14, case 3): two engines on two real sled databases, their clocks set
//! apart by up to `failover-max-skew`, records carried between them as
//! the link carries them at a heal.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use twinmasq_proto::LeaseState;

use super::{in_share, msg_type, Rig, MAC_A, MAC_B, SERVER};
use crate::dhcp::engine::Decision;
use crate::dhcp::request::build::RawRequest;
use crate::share::ServeMode;
use twinmasq_proto::link::Role;

/// How far the secondary's clock runs behind the primary's: within the
/// default `failover-max-skew` (30 s), so the link would accept it.
const BEHIND_MS: u64 = 20_000;

/// Every record of `from` merged into `to`, as a sync does at a heal.
fn carry(from: &Rig, to: &mut Rig) {
    let recs: Vec<_> = from.db.iter().collect();
    for rec in recs {
        let ip = rec.ip;
        to.db.merge_in(rec, to.now).unwrap();
        to.engine.note_change(ip, &to.db);
    }
}

/// A primary and a secondary whose clock is `BEHIND_MS` behind, linked;
/// `MAC_A` holds an address of the primary's share that both know.
fn pair_with_a_replicated_binding() -> (Rig, Rig, Ipv4Addr) {
    let mut p = Rig::failover(Role::Primary, ServeMode::Linked);
    let mut s = Rig::failover(Role::Secondary, ServeMode::Passive);
    s.now = p.now - BEHIND_MS;
    let ip = p.dora(MAC_A);
    assert!(in_share(ip, Role::Primary));
    carry(&p, &mut s);
    assert_eq!(s.db.get(ip), p.db.get(ip), "replicated");
    (p, s, ip)
}

/// Both nodes' tables, after each took the other's records.
fn heal(p: &mut Rig, s: &mut Rig) {
    p.engine.set_mode(ServeMode::Linked);
    s.engine.set_mode(ServeMode::Passive);
    carry(p, s);
    carry(s, p);
}

fn advance(p: &mut Rig, s: &mut Rig, ms: u64) {
    p.now += ms;
    s.now += ms;
}

/// The case as the issue found it: apart, the client releases its address
/// on the primary, then rebinds to it on the secondary a second later,
/// whose clock is 20 s behind. The secondary's ACK is the later event, so
/// at the heal it must stand on both nodes, and the primary must not give
/// the address to another client. With the release stamped when it was
/// decided, the release won on both sides.
#[test]
fn a_release_does_not_undo_a_later_grant_by_a_partner_whose_clock_is_behind() {
    let (mut p, mut s, ip) = pair_with_a_replicated_binding();
    p.engine.set_mode(ServeMode::Unlinked);
    s.engine.set_mode(ServeMode::Unlinked);

    advance(&mut p, &mut s, 1_000);
    let release = RawRequest::new(7, MAC_A, 3)
        .ciaddr(ip)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(p.send(&release), Decision::Done);
    assert_eq!(p.db.get(ip).map(|r| r.state), Some(LeaseState::Released));

    advance(&mut p, &mut s, 1_000);
    let rebind = RawRequest::new(3, MAC_A, 4).ciaddr(ip).broadcast().finish();
    let (_, ack) = s.reply(&rebind);
    assert_eq!(msg_type(&ack), MessageType::Ack, "the secondary renews");
    let granted = s.db.get(ip).unwrap();

    advance(&mut p, &mut s, 1_000);
    heal(&mut p, &mut s);
    for (name, rig) in [("primary", &p), ("secondary", &s)] {
        let rec = rig.db.get(ip).unwrap();
        assert_eq!(
            (rec.state, &rec.client, rec.expires),
            (LeaseState::Bound, &granted.client, granted.expires),
            "{name}: the later grant stands, not the earlier release: {rec:?}"
        );
    }
    // And so the primary keeps it from everyone else.
    assert_ne!(p.dora(MAC_B), ip, "given to a second client");
}

/// The same for a DECLINE: an end decided on the primary never overrides
/// the secondary's later grant to the same client.
#[test]
fn a_decline_does_not_undo_a_later_grant_by_a_partner_whose_clock_is_behind() {
    let (mut p, mut s, ip) = pair_with_a_replicated_binding();
    p.engine.set_mode(ServeMode::Unlinked);
    s.engine.set_mode(ServeMode::Unlinked);

    advance(&mut p, &mut s, 1_000);
    let decline = RawRequest::new(4, MAC_A, 3)
        .opt(50, &ip.octets())
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(p.send(&decline), Decision::Done);
    assert_eq!(p.db.get(ip).map(|r| r.state), Some(LeaseState::Declined));

    advance(&mut p, &mut s, 1_000);
    let reboot = RawRequest::new(3, MAC_A, 4).opt(50, &ip.octets()).finish();
    let (_, ack) = s.reply(&reboot);
    assert_eq!(msg_type(&ack), MessageType::Ack, "the secondary renews");

    heal(&mut p, &mut s);
    for rig in [&p, &s] {
        assert_eq!(rig.db.get(ip).map(|r| r.state), Some(LeaseState::Bound));
    }
}

/// What keeping the binding's stamp must not cost: a release with no later
/// grant still wins on both nodes, frees the address for the next client,
/// drops the name, and goes out like any other change.
#[test]
fn a_release_still_wins_over_the_binding_it_ends_on_both_nodes() {
    let (mut p, mut s, ip) = pair_with_a_replicated_binding();
    p.db.enable_outbox();
    let bound = p.db.get(ip).unwrap();
    let free = p.engine.free_per_range();
    advance(&mut p, &mut s, 1_000);
    let release = RawRequest::new(7, MAC_A, 3)
        .ciaddr(ip)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(p.send(&release), Decision::Done);
    let released = p.db.get(ip).unwrap();
    assert_eq!(released.state, LeaseState::Released);
    assert_eq!(released.hostname, None);
    assert_eq!(released.stamp, bound.stamp, "ordered by what it ends");
    assert!(
        p.db.last_stamp() > bound.stamp,
        "the clock still moves, so the zone serial rises"
    );
    assert_eq!(p.db.take_outbox(), vec![released.clone()], "replicated");
    heal(&mut p, &mut s);
    assert_eq!(s.db.get(ip), Some(released));
    assert_eq!(
        p.engine.free_per_range(),
        vec![free[0] + 1],
        "free again for the next client"
    );
}

/// A merge leaves a client two bound leases when neither grant's order is
/// certain (see `merge::superseded`); its next request settles it: the
/// node answering ends every other lease of the client, not only the one
/// with the greatest stamp (which may be the one it asks for).
#[test]
fn a_request_ends_every_other_lease_of_the_client() {
    let mut rig = Rig::new(|_| {});
    let (older, newer) = (super::addr(12), super::addr(13));
    let end = rig.now_secs() + 3600;
    rig.merged(older, MAC_A, LeaseState::Bound, end);
    rig.now += 5;
    rig.merged(newer, MAC_A, LeaseState::Bound, end);
    rig.now += 1_000;
    let renew = RawRequest::new(3, MAC_A, 9).ciaddr(newer).finish();
    let (_, ack) = rig.reply(&renew);
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(rig.db.get(newer).unwrap().state, LeaseState::Bound);
    let ended = rig.db.get(older).unwrap();
    assert_eq!(ended.state, LeaseState::Released, "{ended:?}");
}
