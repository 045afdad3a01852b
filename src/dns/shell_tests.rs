//! The UDP client reference and the table of our IPv6 addresses behind it.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn udp_client_references_round_trip() {
    let conn = udp_conn(3, 17, u32::from(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(
        udp_conn_parts(conn),
        (3, 17, u32::from(Ipv4Addr::new(198, 18, 0, 1)))
    );
    let mut t = LocalV6::default();
    let a = t.index(ip6("2001:db8:1::1")).unwrap();
    let b = t.index(ip6("fe80::1")).unwrap();
    assert_ne!(a, b);
    assert_eq!(t.index(ip6("2001:db8:1::1")), Some(a));
    assert_eq!(t.addr(b), ip6("fe80::1"));
    assert_eq!(t.addr(u32::MAX), Ipv6Addr::UNSPECIFIED);
    for i in 0..MAX_LOCAL_V6 as u128 {
        t.index(Ipv6Addr::from(0x2001_0db8_00ff_u128 << 80 | i));
    }
    assert_eq!(t.index(ip6("2001:db8:2::1")), None, "the table is capped");
}
