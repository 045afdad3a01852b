//! A node serving without its partner (issue 14, cases 6 and 7): it stays
//! silent for partner-share addresses it holds no lease for, and a client
//! whose binding both nodes know gets that binding back from a passive
//! secondary or a node in partner-down, in either share. Real wire bytes,
//! a real sled database.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use twinmasq_proto::{Expiry, LeaseState};

use super::{addr, in_share, msg_type, opt_u32, Rig, MAC_A, MAC_B, MCLT_SECS, SERVER, T0};
use crate::dhcp::engine::Decision;
use crate::dhcp::request::build::RawRequest;
use crate::share::ServeMode;
use twinmasq_proto::link::Role;

impl Rig {
    fn partner_share_silences(&self) -> u64 {
        self.engine
            .stats()
            .ignored
            .get("partner_share")
            .copied()
            .unwrap_or(0)
    }
}

/// The three forms of a REQUEST for an address the client believes it
/// holds: RENEWING (unicast, ciaddr), REBINDING (broadcast, ciaddr) and
/// INIT-REBOOT (requested address, no ciaddr).
fn not_selecting(mac: [u8; 6], ip: Ipv4Addr, xid: u32) -> [(&'static str, Vec<u8>); 3] {
    [
        ("renewing", RawRequest::new(3, mac, xid).ciaddr(ip).finish()),
        (
            "rebinding",
            RawRequest::new(3, mac, xid + 1)
                .ciaddr(ip)
                .broadcast()
                .finish(),
        ),
        (
            "init-reboot",
            RawRequest::new(3, mac, xid + 2)
                .opt(50, &ip.octets())
                .finish(),
        ),
    ]
}

fn is_reply(d: &Decision) -> bool {
    matches!(d, Decision::Reply(_))
}

/// Case 6. Apart from the primary, the secondary knows nothing of 12 (the
/// primary's share), or only an ended lease on it: the primary may have
/// given it to another client since, so no ACK, and no NAK either (the
/// primary may be acknowledging this very client's broadcast REBINDING).
#[test]
fn unlinked_stays_silent_for_a_partner_share_address_it_holds_no_lease_for() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Unlinked);
    let theirs = addr(12);
    assert!(in_share(theirs, Role::Primary));
    // Unknown address.
    for (form, bytes) in not_selecting(MAC_A, theirs, 1) {
        let d = rig.send(&bytes);
        assert!(
            !is_reply(&d),
            "{form} for an unknown partner address: {d:?}"
        );
    }
    assert!(rig.db.get(theirs).is_none(), "nothing stored");
    // The client's own lease on it expired (as the primary told us), and
    // another client's ended lease on 13: no lease held, the same.
    let ended = rig.now_secs() - 2 * MCLT_SECS;
    rig.replicated(theirs, MAC_A, LeaseState::Expired, ended);
    rig.replicated(addr(13), MAC_B, LeaseState::Released, ended);
    for (ip, who) in [(theirs, MAC_A), (addr(13), MAC_A)] {
        for (form, bytes) in not_selecting(who, ip, 10) {
            let d = rig.send(&bytes);
            assert!(!is_reply(&d), "{form} for {ip}, an ended lease: {d:?}");
        }
        assert_ne!(rig.db.get(ip).unwrap().state, LeaseState::Bound);
    }
    assert_eq!(rig.partner_share_silences(), 9, "counted as partner_share");
    assert_eq!(rig.engine.stats().acks + rig.engine.stats().naks, 0);
}

/// Case 6, the other side: the own share still acknowledges an unknown,
/// unclaimed address (the partner may have renewed it while apart), with
/// a lease capped at the MCLT; and a partner-share lease this node holds
/// for the client is still renewed.
#[test]
fn unlinked_still_acks_unknown_own_share_addresses_and_held_partner_leases() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Unlinked);
    for (k, (form, bytes)) in not_selecting(MAC_A, addr(17), 1).into_iter().enumerate() {
        let (r, ack) = rig.reply(&bytes);
        assert_eq!(msg_type(&ack), MessageType::Ack, "{form}");
        assert_eq!(opt_u32(&r, 51), Some(MCLT_SECS as u32), "{form}");
        assert_eq!(
            rig.db.get(addr(17)).unwrap().expires,
            Expiry::At(rig.now_secs() + MCLT_SECS)
        );
        rig.now += 1000 * (k as u64 + 1);
    }
    // The same for the client's own expired own-share lease.
    rig.replicated(addr(18), MAC_B, LeaseState::Expired, rig.now_secs() - 5);
    let (_, ack) = rig.reply(&RawRequest::new(3, MAC_B, 9).ciaddr(addr(18)).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    // A bound partner-share lease, replicated from the primary.
    let theirs = addr(11);
    rig.replicated(
        theirs,
        [2, 0, 0, 0, 0, 0xc],
        LeaseState::Bound,
        rig.now_secs() + 60,
    );
    let (r, ack) = rig.reply(
        &RawRequest::new(3, [2, 0, 0, 0, 0, 0xc], 10)
            .ciaddr(theirs)
            .finish(),
    );
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(opt_u32(&r, 51), Some(MCLT_SECS as u32));
    assert_eq!(rig.partner_share_silences(), 0);
}

/// Case 6 for a secondary serving a `secs` client while linked, and for a
/// node in partner-down before it may take the partner's share: the same
/// silence. Once partner-down opens the partner's share, the partner is
/// declared gone and an unknown address may be acknowledged again.
#[test]
fn passive_and_early_partner_down_stay_silent_too_and_late_partner_down_acks() {
    let mut passive = Rig::failover(Role::Secondary, ServeMode::Passive);
    let d = passive.send(
        &RawRequest::new(3, MAC_A, 1)
            .ciaddr(addr(12))
            .secs(30)
            .finish(),
    );
    assert!(!is_reply(&d), "{d:?}");
    assert_eq!(passive.partner_share_silences(), 1);

    let from = T0 + 60_000;
    let mut down = Rig::failover(
        Role::Secondary,
        ServeMode::PartnerDown {
            partner_share_from_ms: from,
        },
    );
    let d = down.send(&RawRequest::new(3, MAC_A, 1).ciaddr(addr(12)).finish());
    assert!(!is_reply(&d), "{d:?}");
    assert_eq!(down.partner_share_silences(), 1);
    down.now = from;
    let (_, ack) = down.reply(&RawRequest::new(3, MAC_A, 2).ciaddr(addr(12)).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
}

/// Case 7. The primary died and was declared down; a client whose lease
/// the secondary learnt from it (unexpired) sends a fresh DISCOVER: it is
/// offered the address it has, although that lies in the primary's share,
/// and its REQUEST is acknowledged with a lease no longer than the MCLT.
/// The same the other way round, and for a passive secondary serving a
/// client the primary leaves unanswered.
#[test]
fn a_known_client_rediscovering_after_takeover_keeps_its_address() {
    for (own, theirs) in [(Role::Secondary, addr(12)), (Role::Primary, addr(18))] {
        for mode in [
            ServeMode::PartnerDown {
                partner_share_from_ms: T0,
            },
            ServeMode::Passive,
        ] {
            let mut rig = Rig::failover(own, mode);
            assert!(in_share(theirs, own.partner()));
            rig.replicated(theirs, MAC_A, LeaseState::Bound, rig.now_secs() + 3000);
            let (r, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).secs(30).finish());
            assert_eq!(msg_type(&offer), MessageType::Offer);
            assert_eq!(offer.yiaddr(), theirs, "{own:?} {mode:?}");
            let cap = if mode == ServeMode::Passive {
                3600
            } else {
                MCLT_SECS as u32
            };
            assert_eq!(opt_u32(&r, 51), Some(cap));
            let (r, ack) = rig.reply(
                &RawRequest::new(3, MAC_A, 2)
                    .opt(54, &SERVER.octets())
                    .opt(50, &theirs.octets())
                    .secs(30)
                    .finish(),
            );
            assert_eq!(msg_type(&ack), MessageType::Ack, "{own:?} {mode:?}");
            assert_eq!(ack.yiaddr(), theirs);
            let lease = opt_u32(&r, 51).unwrap();
            assert!(lease <= cap, "lease {lease} over {cap}");
            let rec = rig.db.get(theirs).unwrap();
            assert_eq!(
                (rec.state, rec.hwaddr.clone()),
                (LeaseState::Bound, MAC_A.to_vec())
            );
            // The record keeps the longer replicated lease: the client
            // holds that one should this ACK never reach it.
            assert_eq!(
                rec.expires,
                Expiry::At((rig.now_secs() + u64::from(lease)).max(rig.now_secs() + 3000))
            );
            assert_eq!(rig.db.bound_count(), 1, "no second lease for the client");
        }
    }
}

/// Case 7 after a kill -9: merely apart (the partner may be alive behind
/// a cut link, which this node cannot tell from a dead one), a client's
/// live binding in the partner's share is offered back too, and its
/// REQUEST acknowledged for an MCLT. Safe because the owner gives that
/// address to no other client until the partner (we) acked its end while
/// in sync, and apart not until an MCLT past the binding's expiry, even
/// when the client released it there (the next two tests).
#[test]
fn merely_apart_a_partner_share_binding_is_offered_back() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Unlinked);
    rig.replicated(addr(12), MAC_A, LeaseState::Bound, rig.now_secs() + 3000);
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_eq!(offer.yiaddr(), addr(12));
    let (r, ack) = rig.reply(
        &RawRequest::new(3, MAC_A, 2)
            .opt(54, &SERVER.octets())
            .opt(50, &addr(12).octets())
            .finish(),
    );
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), addr(12));
    assert_eq!(opt_u32(&r, 51), Some(MCLT_SECS as u32));
}

/// On the owner, in sync: a released address goes to another client only
/// once the partner has acked the release. Before, a grant to another
/// client whose reply the link's fall drops would stay in this table
/// unknown to the partner, which may then offer the old binding back to
/// the client that released it (simulation seed 73 of
/// `failover_pair_under_pool_pressure`).
#[test]
fn in_sync_the_owner_reuses_a_released_address_only_once_the_partner_acked_the_release() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Linked);
    rig.db.enable_outbox();
    let ip = addr(11);
    rig.replicated(ip, MAC_A, LeaseState::Bound, rig.now_secs() + 3000);
    let release = RawRequest::new(7, MAC_A, 1)
        .ciaddr(ip)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(rig.send(&release), Decision::Done);
    let asks_for = |mac, xid| RawRequest::new(1, mac, xid).opt(50, &ip.octets()).finish();
    let (_, offer) = rig.reply(&asks_for(MAC_B, 2));
    assert_ne!(
        offer.yiaddr(),
        ip,
        "reused before the partner acked the release"
    );
    // The node hands the release to the link; the partner acks it.
    let sent = rig.db.take_outbox();
    rig.db.partner_holds(sent.iter());
    rig.now += 2_000;
    rig.engine.tick(&mut rig.db, rig.now);
    let (_, offer) = rig.reply(&asks_for([2, 0, 0, 0, 0, 0x33], 3));
    assert_eq!(offer.yiaddr(), ip);
}

/// On the owner: apart, a client releases its address here; the partner
/// may still extend the binding it knows (a renewal that reaches it), up
/// to an MCLT past the expiry it knows. So the address goes to no other client until then, and to
/// the next one after it.
#[test]
fn apart_the_owner_keeps_a_released_address_until_an_mclt_past_the_binding() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Unlinked);
    let ip = addr(11);
    assert!(in_share(ip, Role::Primary));
    let binding_end = rig.now_secs() + 3000;
    rig.replicated(ip, MAC_A, LeaseState::Bound, binding_end);
    let release = RawRequest::new(7, MAC_A, 1)
        .ciaddr(ip)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(rig.send(&release), Decision::Done);
    assert_eq!(rig.db.get(ip).unwrap().state, LeaseState::Released);
    let asks_for = |xid| {
        RawRequest::new(1, MAC_B, xid)
            .opt(50, &ip.octets())
            .finish()
    };
    // An MCLT after the release, long before the binding's end.
    rig.now += (MCLT_SECS + 1) * 1000;
    let (_, offer) = rig.reply(&asks_for(2));
    assert_ne!(
        offer.yiaddr(),
        ip,
        "given away while the partner may extend it"
    );
    rig.now = (binding_end + MCLT_SECS + 1) * 1000;
    rig.engine.tick(&mut rig.db, rig.now);
    let (_, offer) = rig.reply(&asks_for(3));
    assert_eq!(offer.yiaddr(), ip);
}

/// Case 7's limits: an ended binding in the partner's share is no binding
/// (a new address from the own share), nor is another client's; and a
/// binding this node already extended is not offered when its REQUEST
/// could not be acknowledged (it would only be ignored).
#[test]
fn takeover_offers_only_live_bindings_it_can_acknowledge() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Unlinked);
    rig.replicated(addr(12), MAC_A, LeaseState::Bound, rig.now_secs() - 1);
    rig.engine.tick(&mut rig.db, rig.now);
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert!(
        in_share(offer.yiaddr(), Role::Secondary),
        "{}",
        offer.yiaddr()
    );

    let mut rig = Rig::failover(Role::Secondary, ServeMode::Unlinked);
    rig.replicated(addr(13), MAC_B, LeaseState::Bound, rig.now_secs() + 3000);
    let d = rig.send(
        &RawRequest::new(1, MAC_A, 1)
            .opt(50, &addr(13).octets())
            .finish(),
    );
    let Decision::Reply(r) = d else {
        panic!("{d:?}")
    };
    let offered = dhcproto::Decodable::decode(&mut dhcproto::Decoder::new(&r.packet))
        .map(|m: dhcproto::v4::Message| m.yiaddr())
        .unwrap();
    assert!(in_share(offered, Role::Secondary), "{offered}");

    // Acknowledged here for an MCLT; half an MCLT later the client
    // reboots and DISCOVERs: the rest of our own extension cannot give a
    // full MCLT, so it gets an address of the own share.
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Unlinked);
    rig.replicated(addr(14), MAC_A, LeaseState::Bound, rig.now_secs() + 3000);
    let (_, ack) = rig.reply(&RawRequest::new(3, MAC_A, 1).ciaddr(addr(14)).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
    rig.now += MCLT_SECS * 500;
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 2).finish());
    let ip = offer.yiaddr();
    assert!(in_share(ip, Role::Secondary), "{ip}");
    let (_, ack) = rig.reply(
        &RawRequest::new(3, MAC_A, 3)
            .opt(54, &SERVER.octets())
            .opt(50, &ip.octets())
            .finish(),
    );
    assert_eq!(msg_type(&ack), MessageType::Ack);
}

/// Case 1: a node recovering after its start hands out nothing new and
/// acknowledges no address it holds no live lease for (a wiped table, or
/// a lease that ended while the partner may have reused the address); a
/// client's own live lease is renewed, MCLT-bounded. Once the wait is
/// over it serves as unlinked.
#[test]
fn recovering_renews_live_leases_only_until_its_wait_ends() {
    let serve_from_ms = T0 + MCLT_SECS * 1000;
    let mut rig = Rig::failover(Role::Primary, ServeMode::Recovering { serve_from_ms });
    let mine = addr(11);
    assert!(in_share(mine, Role::Primary));
    rig.replicated(mine, MAC_A, LeaseState::Bound, rig.now_secs() + 3000);
    // An ended lease of MAC_B on 12: the partner may have given 12 away.
    rig.replicated(addr(12), MAC_B, LeaseState::Bound, rig.now_secs() - 10);
    let d = rig.send(&RawRequest::new(1, [2, 0, 0, 0, 0, 0xc], 1).finish());
    assert!(!is_reply(&d), "a new client got {d:?}");
    for (form, bytes) in not_selecting(MAC_B, addr(12), 10) {
        let d = rig.send(&bytes);
        assert!(!is_reply(&d), "{form} of an ended lease: {d:?}");
    }
    for (form, bytes) in not_selecting(MAC_B, addr(13), 20) {
        let d = rig.send(&bytes);
        assert!(
            !is_reply(&d),
            "{form} of an unknown own-share address: {d:?}"
        );
    }
    assert_eq!(rig.engine.stats().ignored.get("recovering"), Some(&7));
    for (form, bytes) in not_selecting(MAC_A, mine, 30) {
        let (r, ack) = rig.reply(&bytes);
        assert_eq!(msg_type(&ack), MessageType::Ack, "{form}");
        assert_eq!(opt_u32(&r, 51), Some(MCLT_SECS as u32), "{form}");
    }
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 40).finish());
    assert_eq!(offer.yiaddr(), mine, "its own live lease is offered back");
    rig.now = serve_from_ms;
    let (_, offer) = rig.reply(&RawRequest::new(1, [2, 0, 0, 0, 0, 0xc], 50).finish());
    assert!(in_share(offer.yiaddr(), Role::Primary));
}

/// Case 1: while recovering, a partner-share lease in our table may be
/// stale (released at the partner while this node was down, and reused an
/// MCLT later): not renewed, nor offered back; the partner answers.
#[test]
fn recovering_leaves_partner_share_leases_to_the_partner() {
    let serve_from_ms = T0 + MCLT_SECS * 1000;
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Recovering { serve_from_ms });
    let theirs = addr(12);
    assert!(in_share(theirs, Role::Primary));
    rig.replicated(theirs, MAC_A, LeaseState::Bound, rig.now_secs() + 3000);
    for (form, bytes) in not_selecting(MAC_A, theirs, 1) {
        let d = rig.send(&bytes);
        assert!(!is_reply(&d), "{form} of a partner-share lease: {d:?}");
    }
    let d = rig.send(&RawRequest::new(1, MAC_A, 10).finish());
    assert!(!is_reply(&d), "offered {d:?}");
    assert_eq!(
        rig.db.get(theirs).unwrap().expires,
        Expiry::At(rig.now_secs() + 3000)
    );
}

/// A binding this node wrote in the partner's share, which the partner may
/// never have heard of (the link fell before the ack, or the process died
/// waiting for it, and the restart lost what was acked), is no lease to
/// hand back apart: its client was never told, and the owner may have
/// given the address to another client. Simulation seed 7568 of
/// `failover_pair_expired_clients_reclaim_their_addresses` on 91d6cfa: the
/// primary offered and acknowledged such a record to its client while the
/// secondary's client held the address. Once a sync shows the partner
/// holds it, it is a binding like any other.
#[test]
fn apart_an_own_binding_the_partner_may_not_know_is_not_handed_back() {
    let mut rig = Rig::failover(Role::Primary, ServeMode::Linked);
    rig.db.enable_outbox();
    let theirs = addr(18);
    assert!(in_share(theirs, Role::Secondary));
    rig.db
        .commit(
            twinmasq_proto::LeaseRecord {
                ip: theirs,
                state: LeaseState::Bound,
                client: twinmasq_proto::ClientKey::from_hwaddr(1, &MAC_A),
                htype: 1,
                hwaddr: MAC_A.to_vec(),
                client_id: None,
                hostname: None,
                expires: Expiry::At(rig.now_secs() + 3000),
                stamp: Default::default(),
            },
            rig.now,
        )
        .unwrap();
    rig.engine.note_change(theirs, &rig.db);
    // Refused for a configuration mismatch, nothing new is handed out,
    // and this is no binding to hand back either (simulation seed 270 of
    // `failover_pair_through_a_life_of_operations`).
    rig.engine.set_mode(ServeMode::ConfigMismatch);
    assert!(matches!(
        rig.send(&RawRequest::new(1, MAC_A, 7).finish()),
        Decision::Ignored(_)
    ));
    rig.engine.set_mode(ServeMode::Unlinked);
    let (_, offer) = rig.reply(&RawRequest::new(1, MAC_A, 1).finish());
    assert_ne!(
        offer.yiaddr(),
        theirs,
        "offered a binding the owner may not know"
    );
    assert_eq!(
        rig.send(&RawRequest::new(3, MAC_A, 2).ciaddr(theirs).finish()),
        Decision::Ignored(crate::dhcp::stats::Ignored::PartnerShare)
    );
    // The link sends the change, and a sync completes: the partner holds
    // every own change.
    let _sent = rig.db.take_outbox();
    rig.db.partner_holds_all_but([]);
    let (_, ack) = rig.reply(&RawRequest::new(3, MAC_A, 3).ciaddr(theirs).finish());
    assert_eq!(msg_type(&ack), MessageType::Ack);
}
