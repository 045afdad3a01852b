//! Who may ask (local-service, IPv6 included), where to listen, which
//! addresses are served.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};

use super::*;
use crate::net::interfaces::If6Addr;
use crate::net::ipv4::IfAddr;

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// lo, and eth0 with 198.18.0.1/24, 2001:db8:1::1/64 and fe80::1/64.
fn ifaces() -> HashMap<u32, Interface> {
    let lo = Interface {
        name: "lo".into(),
        index: 1,
        addrs: vec![IfAddr {
            addr: Ipv4Addr::LOCALHOST,
            prefix: 8,
        }],
        addrs6: vec![If6Addr {
            addr: Ipv6Addr::LOCALHOST,
            prefix: 128,
        }],
        loopback: true,
    };
    let eth0 = Interface {
        name: "eth0".into(),
        index: 2,
        addrs: vec![IfAddr {
            addr: Ipv4Addr::new(198, 18, 0, 1),
            prefix: 24,
        }],
        addrs6: vec![
            If6Addr {
                addr: ip6("2001:db8:1::1"),
                prefix: 64,
            },
            If6Addr {
                addr: ip6("fe80::1"),
                prefix: 64,
            },
        ],
        loopback: false,
    };
    // IPv6 only, no link-local address (e.g. a tunnel).
    let tun = Interface {
        name: "tun0".into(),
        index: 3,
        addrs: vec![],
        addrs6: vec![If6Addr {
            addr: ip6("fd00:5::1"),
            prefix: 48,
        }],
        loopback: false,
    };
    [lo, eth0, tun].into_iter().map(|i| (i.index, i)).collect()
}

#[test]
fn local_service_admits_attached_ipv6_prefixes_only() {
    let cfg = Config::default();
    let ifs = ifaces();
    let ok = |c: &str, ifindex: u32| {
        local_service_ok(&cfg, &ifs, IpAddr::V6(c.parse().unwrap()), ifindex)
    };
    assert!(ok("2001:db8:1::99", 2));
    assert!(ok("2001:db8:1:0:ffff::1", 2));
    assert!(!ok("2001:db8:2::99", 2), "another /64");
    assert!(ok("fd00:5:0:ffff::1", 3), "the /48 of tun0");
    assert!(!ok("fd00:6::1", 3));
    assert!(ok("::1", 1));
    // Link-local: from an interface of ours that has a link-local address.
    assert!(ok("fe80::99", 2));
    assert!(!ok("fe80::99", 3), "tun0 has no link-local address");
    assert!(!ok("fe80::99", 42), "not one of our interfaces");
    // A link-local address of ours does not make the prefix fe80::/64
    // "attached" for clients elsewhere.
    assert!(!ok("fe80::99", 0));
    // IPv4-mapped: judged as the IPv4 address.
    assert!(ok("::ffff:198.18.0.7", 2));
    assert!(!ok("::ffff:198.19.0.7", 2));
    // And IPv4 as before.
    assert!(local_service_ok(
        &cfg,
        &ifs,
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 50)),
        2
    ));
    assert!(!local_service_ok(
        &cfg,
        &ifs,
        IpAddr::V4(Ipv4Addr::new(198, 19, 0, 50)),
        2
    ));
}

#[test]
fn local_service_is_off_once_interfaces_or_addresses_are_named() {
    let ifs = ifaces();
    let far = IpAddr::V6(ip6("2001:db8:9::9"));
    let mut cfg = Config::default();
    assert!(!local_service_ok(&cfg, &ifs, far, 2));
    cfg.listen_addresses_v6 = vec![ip6("2001:db8:1::1")];
    assert!(local_service_ok(&cfg, &ifs, far, 2));
    let cfg = Config {
        interfaces: vec!["eth0".into()],
        ..Config::default()
    };
    assert!(local_service_ok(&cfg, &ifs, far, 2));
}

#[test]
fn which_ipv6_addresses_are_served() {
    let ifs = ifaces();
    let (lo, eth0, tun) = (&ifs[&1], &ifs[&2], &ifs[&3]);
    // No options: everything.
    let cfg = Config::default();
    assert!(serves_dns6(&cfg, eth0, ip6("2001:db8:1::1")));
    assert!(serves_dns6(&cfg, lo, Ipv6Addr::LOCALHOST));
    // An IPv6 listen-address: that address only.
    let mut cfg = Config {
        listen_addresses_v6: vec![ip6("fd00:5::1")],
        ..Config::default()
    };
    assert!(serves_dns6(&cfg, tun, ip6("fd00:5::1")));
    assert!(!serves_dns6(&cfg, eth0, ip6("2001:db8:1::1")));
    assert!(!serves_dns6(&cfg, lo, Ipv6Addr::LOCALHOST));
    assert!(served_at(&cfg, &ifs, IpAddr::V6(ip6("fd00:5::1"))));
    assert!(!served_at(&cfg, &ifs, IpAddr::V6(ip6("2001:db8:1::1"))));
    cfg.except_interfaces = vec!["tun*".into()];
    assert!(!serves_dns6(&cfg, tun, ip6("fd00:5::1")));
    // Only IPv4 listen-addresses: no IPv6 at all, even on their interface.
    let cfg = Config {
        listen_addresses: vec![Ipv4Addr::new(198, 18, 0, 1)],
        ..Config::default()
    };
    assert!(!serves_dns6(&cfg, eth0, ip6("2001:db8:1::1")));
    assert!(!serves_dns6(&cfg, lo, Ipv6Addr::LOCALHOST));
    assert!(serves_dns(&cfg, eth0), "IPv4 still served");
    // interface=: its addresses, and loopback's.
    let cfg = Config {
        interfaces: vec!["eth*".into()],
        ..Config::default()
    };
    assert!(serves_dns6(&cfg, eth0, ip6("fe80::1")));
    assert!(serves_dns6(&cfg, lo, Ipv6Addr::LOCALHOST));
    assert!(!serves_dns6(&cfg, tun, ip6("fd00:5::1")));
}

#[test]
fn ipv6_listen_addresses_follow_bind_interfaces() {
    let ifs = ifaces();
    let mut cfg = Config::default();
    cfg.dns.port = 5353;
    assert_eq!(
        listen_addrs6(&cfg, &ifs),
        vec![(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 5353, 0, 0), false)]
    );
    cfg.bind_interfaces = true;
    cfg.interfaces = vec!["eth0".into()];
    cfg.listen_addresses_v6 = vec![ip6("2001:db8:1::1")];
    let got = listen_addrs6(&cfg, &ifs);
    assert_eq!(
        got,
        vec![
            (SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5353, 0, 0), false),
            (SocketAddrV6::new(ip6("2001:db8:1::1"), 5353, 0, 0), true),
            // Link-local: bound with its interface as scope.
            (SocketAddrV6::new(ip6("fe80::1"), 5353, 0, 2), false),
        ]
    );
}

#[test]
fn bind_interfaces_with_ipv4_addresses_only_binds_no_ipv6() {
    let ifs = ifaces();
    let mut cfg = Config {
        listen_addresses: vec![Ipv4Addr::new(198, 18, 0, 1)],
        bind_interfaces: true,
        ..Config::default()
    };
    assert_eq!(listen_addrs6(&cfg, &ifs), vec![]);
    cfg.listen_addresses_v6 = vec![ip6("fd00:5::1")];
    assert_eq!(
        listen_addrs6(&cfg, &ifs),
        vec![(SocketAddrV6::new(ip6("fd00:5::1"), 53, 0, 0), true)]
    );
}

#[test]
fn arrival_net_is_the_asked_address_with_its_interface_prefix() {
    let mut c = Config::default();
    let dst = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(arrival_net(&c, &ifaces(), dst), None, "option off");
    c.dns.localise_queries = true;
    assert_eq!(
        arrival_net(&c, &ifaces(), dst),
        Some(Net {
            addr: dst,
            prefix: 24
        })
    );
    // Not one of our addresses, or IPv6: nothing to localise by.
    assert_eq!(
        arrival_net(&c, &ifaces(), IpAddr::V4(Ipv4Addr::new(198, 18, 9, 9))),
        None
    );
    assert_eq!(
        arrival_net(&c, &ifaces(), IpAddr::V6(ip6("2001:db8:1::1"))),
        None
    );
}
