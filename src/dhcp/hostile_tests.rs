//! The engine against hostile clients: floods from random MACs, forged
//! REQUESTs past dhcp-lease-max, DECLINE floods, requests whose echoes
//! cannot fit. Real wire bytes, a real sled database, a clock we set.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use twinmasq_proto::LeaseState;

use super::{range, Rig, SERVER, T0};
use crate::config::{DhcpHost, DhcpRateLimit, MacPattern};
use crate::dhcp::engine::Decision;
use crate::dhcp::request::build::RawRequest;
use crate::dhcp::stats::Ignored;

impl Rig {
    fn reply_type(&mut self, bytes: &[u8]) -> Option<(MessageType, Ipv4Addr)> {
        match self.send(bytes) {
            Decision::Reply(r) => {
                let m = Message::decode(&mut Decoder::new(&r.packet)).unwrap();
                let t = match m.opts().get(OptionCode::MessageType) {
                    Some(DhcpOption::MessageType(t)) => *t,
                    other => panic!("no message type: {other:?}"),
                };
                Some((t, m.yiaddr()))
            }
            _ => None,
        }
    }

    fn ignored(&self, why: Ignored) -> u64 {
        self.engine
            .stats()
            .ignored_by_reason()
            .find(|(l, _)| *l == why.label())
            .map_or(0, |(_, n)| n)
    }
}

/// A SELECTING REQUEST for `ip` naming us as the server.
fn request(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    RawRequest::new(3, mac, 2)
        .opt(54, &SERVER.octets())
        .opt(50, &ip.octets())
        .finish()
}

fn renew(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    RawRequest::new(3, mac, 3).ciaddr(ip).finish()
}

fn random_mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x06, 0xee, b[0], b[1], b[2], b[3]]
}

const MAC_KNOWN: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_STATIC: [u8; 6] = [2, 0, 0, 0, 0, 0x5];
const STATIC_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);

fn static_host() -> DhcpHost {
    DhcpHost {
        macs: vec![MacPattern {
            htype: None,
            bytes: MAC_STATIC.iter().map(|b| Some(*b)).collect(),
        }],
        ip: Some(STATIC_IP),
        ..Default::default()
    }
}

#[test]
fn a_random_mac_flood_is_rate_limited_but_known_and_static_clients_are_served() {
    let mut rig = Rig::new(|c| {
        c.dhcp_rate_limit = DhcpRateLimit {
            unknown_per_sec: 100,
            known_per_sec: 1000,
        };
        c.dhcp_hosts.push(static_host());
        c.dhcp_ranges = vec![range(5, 5), range(10, 250)];
    });
    let known_ip = rig.dora(MAC_KNOWN);
    // One second: 5000 DISCOVERs from new MACs, the known client's
    // renewal and the static host's DORA in the middle of it.
    for n in 0..5000u32 {
        rig.now = T0 + u64::from(n) / 5;
        rig.send(&RawRequest::new(1, random_mac(n), n).finish());
        if n == 2500 {
            assert_eq!(
                rig.reply_type(&renew(MAC_KNOWN, known_ip)),
                Some((MessageType::Ack, known_ip))
            );
            assert_eq!(rig.dora(MAC_STATIC), STATIC_IP);
        }
    }
    // The first second's burst (less the known client's DORA) plus about
    // one second of refill.
    let admitted = 5000 - rig.ignored(Ignored::RateLimited);
    assert!(
        (190..=200).contains(&admitted),
        "{admitted} unknown DISCOVERs admitted"
    );
    // The budget refills: a new client a second later gets its offer.
    rig.now += 1000;
    assert!(rig
        .reply_type(&RawRequest::new(1, random_mac(99_999), 1).finish())
        .is_some());
}

#[test]
fn the_known_budget_is_per_interface_and_bounded_too() {
    let mut rig = Rig::new(|c| {
        c.dhcp_rate_limit = DhcpRateLimit {
            unknown_per_sec: 10,
            known_per_sec: 20,
        }
    });
    let ip = rig.dora(MAC_KNOWN);
    let acks = (0..100)
        .filter(|_| rig.reply_type(&renew(MAC_KNOWN, ip)).is_some())
        .count();
    assert_eq!(acks, 20, "the DORA came from the unknown budget");
    rig.arrival.ifindex = 8;
    assert!(rig.reply_type(&renew(MAC_KNOWN, ip)).is_some());
}

#[test]
fn lease_max_holds_against_offers_and_forged_requests_but_not_for_static_hosts() {
    let mut rig = Rig::new(|c| {
        c.lease_max = 3;
        c.dhcp_hosts.push(static_host());
        c.dhcp_ranges = vec![range(5, 5), range(10, 100)];
    });
    // Ten offers go out while the table is empty.
    let mut offered = Vec::new();
    for n in 0..10 {
        let (t, ip) = rig
            .reply_type(&RawRequest::new(1, random_mac(n), n).finish())
            .unwrap();
        assert_eq!(t, MessageType::Offer);
        offered.push((random_mac(n), ip));
    }
    for (mac, ip) in &offered {
        rig.send(&request(*mac, *ip));
    }
    // REQUESTs for addresses nobody offered, from MACs nobody saw.
    let mut forged = 0;
    for n in 100..200u32 {
        let ip = Ipv4Addr::new(198, 18, 0, 50 + (n % 50) as u8);
        // An address offered to someone else is NAKed, not counted here.
        if offered.iter().any(|(_, o)| *o == ip) {
            continue;
        }
        forged += 1;
        rig.send(&request(random_mac(n), ip));
        rig.send(
            &RawRequest::new(3, random_mac(n), n)
                .opt(50, &ip.octets())
                .finish(),
        );
    }
    assert_eq!(rig.db.bound_count(), 3);
    assert!(forged > 50);
    assert_eq!(rig.ignored(Ignored::LeaseMax), 7 + forged);
    // The static host, and a client that holds a lease, still get theirs.
    assert_eq!(rig.dora(MAC_STATIC), STATIC_IP);
    let holder = offered
        .iter()
        .find(|(_, ip)| {
            rig.db
                .get(*ip)
                .is_some_and(|r| r.state == LeaseState::Bound)
        })
        .copied()
        .unwrap();
    assert_eq!(
        rig.reply_type(&renew(holder.0, holder.1)),
        Some((MessageType::Ack, holder.1))
    );
    assert_eq!(
        rig.db.bound_count(),
        4,
        "three dynamic leases and the static one"
    );
}

#[test]
fn declines_take_at_most_a_bounded_share_of_the_pool_out_of_service() {
    // 32 addresses: at most 32 / 8 = 4 held as declined.
    let mut rig = Rig::new(|c| c.dhcp_ranges = vec![range(10, 41)]);
    let mut declined = 0;
    for n in 0..24u32 {
        let mac = random_mac(n);
        let ip = rig.dora(mac);
        let decline = RawRequest::new(4, mac, 9)
            .opt(50, &ip.octets())
            .opt(54, &SERVER.octets())
            .finish();
        match rig.send(&decline) {
            Decision::Done => {
                assert_eq!(rig.db.get(ip).unwrap().state, LeaseState::Declined);
                declined += 1;
            }
            Decision::Ignored(Ignored::DeclineLimit) => {
                assert_eq!(rig.db.get(ip).unwrap().state, LeaseState::Released);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(declined, 4);
    assert_eq!(rig.ignored(Ignored::DeclineLimit), 20);
    // Everything else is back in the pool: 20 new clients get addresses.
    for n in 1000..1020u32 {
        rig.dora(random_mac(n));
    }
    // A DECLINE for an address the sender does not hold changes nothing.
    let victim = rig.dora(MAC_KNOWN);
    let forged = RawRequest::new(4, random_mac(5000), 9)
        .opt(50, &victim.octets())
        .finish();
    assert_eq!(rig.send(&forged), Decision::Ignored(Ignored::NotOwner));
    let forged_release = RawRequest::new(7, random_mac(5001), 9)
        .ciaddr(victim)
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(
        rig.send(&forged_release),
        Decision::Ignored(Ignored::NotOwner)
    );
    assert_eq!(rig.db.get(victim).unwrap().state, LeaseState::Bound);
    // When the holds run out, the cap counts only what is still held.
    rig.now += 601 * 1000;
    rig.engine.tick(&mut rig.db, rig.now);
    let decline = RawRequest::new(4, MAC_KNOWN, 9)
        .opt(50, &victim.octets())
        .finish();
    assert_eq!(rig.send(&decline), Decision::Done);
}

#[test]
fn relayed_request_for_an_unconfigured_subnet_is_counted_not_answered() {
    let mut rig = Rig::new(|_| {});
    for t in [1u8, 3] {
        let p = RawRequest::new(t, MAC_KNOWN, 1)
            .giaddr(Ipv4Addr::new(198, 19, 77, 1))
            .opt(50, &[198, 19, 77, 10])
            .opt(54, &SERVER.octets())
            .finish();
        assert_eq!(rig.send(&p), Decision::Ignored(Ignored::NoNetwork));
    }
    assert_eq!(rig.ignored(Ignored::NoNetwork), 2);
}

#[test]
fn echoes_too_big_for_the_client_get_no_reply_and_big_clients_get_them() {
    let mut rig = Rig::new(|_| {});
    let id = [7u8; 255];
    let agent = [1u8; 255];
    let p = RawRequest::new(1, MAC_KNOWN, 1)
        .giaddr(Ipv4Addr::new(198, 18, 0, 1))
        .opt(61, &id)
        .opt(82, &agent)
        .finish();
    assert_eq!(rig.send(&p), Decision::Ignored(Ignored::ReplyTooBig));
    let big = RawRequest::new(1, MAC_KNOWN, 1)
        .giaddr(Ipv4Addr::new(198, 18, 0, 1))
        .opt(61, &id)
        .opt(82, &agent)
        .opt(57, &1500u16.to_be_bytes())
        .opt(
            81,
            &[[4u8, 0, 0].as_slice(), &[63], &[b'a'; 63], &[0]].concat(),
        )
        .opt(55, &(1..=254).collect::<Vec<u8>>())
        .finish();
    match rig.send(&big) {
        Decision::Reply(r) => assert!(r.packet.len() <= 1500 - 28, "{}", r.packet.len()),
        other => panic!("{other:?}"),
    }
    rig.engine.note_oversized();
    assert_eq!(rig.ignored(Ignored::Oversized), 1);
    assert_eq!(rig.engine.stats().received, 3);
}

#[test]
fn with_the_limit_off_nothing_is_rate_limited() {
    let mut rig = Rig::new(|c| {
        c.dhcp_rate_limit = DhcpRateLimit {
            unknown_per_sec: 0,
            known_per_sec: 0,
        }
    });
    for n in 0..20_000u32 {
        rig.send(&RawRequest::new(1, random_mac(n), n).finish());
    }
    assert_eq!(rig.ignored(Ignored::RateLimited), 0);
    assert_eq!(rig.engine.stats().offers, 11, "the whole range offered");
}

#[test]
fn a_declined_address_is_not_offered_back_to_its_decliner() {
    let mut rig = Rig::new(|c| c.dhcp_ranges = vec![range(10, 11)]);
    let a = rig.dora(MAC_KNOWN);
    let decline = RawRequest::new(4, MAC_KNOWN, 9)
        .opt(50, &a.octets())
        .opt(54, &SERVER.octets())
        .finish();
    assert_eq!(rig.send(&decline), Decision::Done);
    // Not by its old lease, nor when it asks for it.
    let (_, offered) = rig
        .reply_type(
            &RawRequest::new(1, MAC_KNOWN, 10)
                .opt(50, &a.octets())
                .finish(),
        )
        .expect("an offer");
    assert_ne!(offered, a);
    let init_reboot = RawRequest::new(3, MAC_KNOWN, 11)
        .opt(50, &a.octets())
        .finish();
    assert_eq!(
        rig.reply_type(&init_reboot).map(|(t, _)| t),
        Some(MessageType::Nak)
    );
    assert_eq!(rig.db.get(a).unwrap().state, LeaseState::Declined);
}
