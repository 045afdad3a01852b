//! Issue 14, case 8: a passive secondary notices a primary that is linked
//! but dead on its LAN side from the clients themselves even when they
//! leave `secs` at 0: the same client asking again and again, its state
//! never moving on, for `failover-unanswered-secs` of wall time. A client
//! the primary answers never trips it, and a flood of client ids cannot
//! grow what the engine remembers.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState, Stamp};

use super::{addr, in_share, msg_type, Rig, MAC_A, MAC_B, SERVER};
use crate::dhcp::engine::Decision;
use crate::dhcp::request::build::RawRequest;
use crate::dhcp::stats::Ignored;
use crate::share::ServeMode;
use twinmasq_proto::link::Role;

/// The primary's address on the clients' network.
const PRIMARY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

impl Rig {
    fn at(&mut self, ms: u64, bytes: &[u8]) -> Decision {
        self.now = super::T0 + ms;
        self.send(bytes)
    }

    /// The primary's grant of `ip` to `mac`, replicated into this table.
    fn granted_by_primary(&mut self, ip: Ipv4Addr, mac: [u8; 6]) {
        let node = self.db.node_id().wrapping_add(1).max(1);
        self.db
            .merge_in(
                LeaseRecord {
                    ip,
                    state: LeaseState::Bound,
                    client: ClientKey::from_hwaddr(1, &mac),
                    htype: 1,
                    hwaddr: mac.to_vec(),
                    client_id: None,
                    hostname: None,
                    expires: Expiry::At(self.now / 1000 + 3600),
                    stamp: Stamp {
                        wall_ms: self.now,
                        counter: 0,
                        node,
                    },
                },
                self.now,
            )
            .unwrap();
        self.engine.note_change(ip, &self.db);
    }
}

fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    RawRequest::new(1, mac, xid).finish()
}

fn selecting(mac: [u8; 6], xid: u32, server: Ipv4Addr, ip: Ipv4Addr) -> Vec<u8> {
    RawRequest::new(3, mac, xid)
        .opt(54, &server.octets())
        .opt(50, &ip.octets())
        .finish()
}

fn passive(d: &Decision) -> bool {
    *d == Decision::Ignored(Ignored::Passive)
}

/// A client that never sets `secs` and that the primary never answers:
/// DISCOVERs at 0, 4 and 12 s (RFC 2131's backoff). From 10 s of asking
/// the secondary offers from its own share, and ACKs the REQUEST that
/// follows (also with `secs` 0).
#[test]
fn a_passive_secondary_serves_a_secs_zero_client_left_unanswered() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Passive);
    assert!(passive(&rig.at(0, &discover(MAC_A, 1))));
    assert!(passive(&rig.at(4_000, &discover(MAC_A, 1))));
    let d = rig.at(12_000, &discover(MAC_A, 1));
    let Decision::Reply(offer) = d else {
        panic!("after 12 s of unanswered DISCOVERs with secs 0: {d:?}");
    };
    assert_eq!(offer.kind, MessageType::Offer);
    let (_, m) = rig.reply(&discover(MAC_A, 1));
    let ip = m.yiaddr();
    assert!(in_share(ip, Role::Secondary), "{ip}");
    let (r, ack) = rig.reply(&selecting(MAC_A, 2, SERVER, ip));
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert!(r.durable);
    assert_eq!(rig.db.get(ip).unwrap().state, LeaseState::Bound);
    // Bound: what it asks next (a reboot a second later) is the primary's
    // to answer again, until it too goes unanswered for the threshold.
    let reboot = RawRequest::new(3, MAC_A, 3).opt(50, &ip.octets()).finish();
    assert!(passive(&rig.at(13_000, &reboot)));
    assert!(passive(&rig.at(17_000, &reboot)));
    assert!(matches!(rig.at(23_000, &reboot), Decision::Reply(_)));
}

/// The same for a client rebinding a lease the primary granted (the
/// secondary knows it, replicated): broadcast REBINDING with `secs` 0 for
/// 10 s gets the ACK.
#[test]
fn a_rebinding_client_left_unanswered_is_acked_after_the_threshold() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Passive);
    let ip = addr(12);
    rig.granted_by_primary(ip, MAC_B);
    let rebind = RawRequest::new(3, MAC_B, 7).ciaddr(ip).broadcast().finish();
    for ms in [100_000, 104_000, 108_000] {
        assert!(passive(&rig.at(ms, &rebind)), "at {ms}");
    }
    let d = rig.at(110_500, &rebind);
    assert!(
        matches!(&d, Decision::Reply(r) if r.kind == MessageType::Ack),
        "after 10.5 s of unanswered REBINDING: {d:?}"
    );
}

/// A client the primary answers: quick retransmissions of the DISCOVER,
/// the REQUEST for the primary's offer (its state moves on), the primary's
/// ACK replicated. Later the client reboots and asks again; answered
/// again. The secondary never answers any of it.
#[test]
fn a_client_the_primary_answers_never_trips_it() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Passive);
    let ip = addr(11);
    for ms in [0, 300, 700, 1_000] {
        assert!(passive(&rig.at(ms, &discover(MAC_A, 1))));
    }
    // A slow primary: its offer arrives at 9.5 s; the REQUEST is
    // retransmitted at 13 s, 3.5 s after the state moved on.
    assert!(passive(&rig.at(9_000, &discover(MAC_A, 1))));
    let req = selecting(MAC_A, 2, PRIMARY, ip);
    assert!(passive(&rig.at(9_500, &req)));
    assert!(passive(&rig.at(13_000, &req)));
    rig.granted_by_primary(ip, MAC_A);
    // Rebooted 5 s later: INIT-REBOOT, retransmitted; the primary ACKs.
    let reboot = RawRequest::new(3, MAC_A, 3).opt(50, &ip.octets()).finish();
    assert!(passive(&rig.at(18_000, &reboot)));
    assert!(passive(&rig.at(18_400, &reboot)));
    rig.granted_by_primary(ip, MAC_A);
    // Once more a minute later, retransmitting for a while before the
    // primary's answer lands; each episode counts from its own start.
    for ms in [78_000, 82_000, 86_000] {
        assert!(passive(&rig.at(ms, &reboot)), "at {ms}");
    }
    assert_eq!(rig.engine.stats().offers + rig.engine.stats().acks, 0);
}

/// A flood of DISCOVERs from made-up client ids leaves what the engine
/// remembers bounded; an old entry is evicted rather than the map grown.
#[test]
fn a_flood_of_client_ids_cannot_grow_memory() {
    let mut rig = Rig::failover(Role::Secondary, ServeMode::Passive);
    for n in 0u32..50_000 {
        let b = n.to_be_bytes();
        let mac = [2, 0xf, b[0], b[1], b[2], b[3]];
        let d = rig.at(u64::from(n), &discover(mac, n));
        assert!(passive(&d));
    }
    let tracked = rig.engine.unanswered_tracked();
    assert!(
        tracked <= crate::dhcp::unanswered::MAX_TRACKED,
        "{tracked} clients remembered"
    );
}
