//! Authoritative zones, each case as dnsmasq 2.90 answered it (run in a
//! namespace with the same options and leases, queried with dig), unless
//! it says it is one of twinmasq's deliberate differences.

use super::super::*;
use crate::config::dns_types::{
    AuthConfig, AuthServer, AuthZone, CnameRecord, DnsConfig, HostRecord, IfFamily, MxRecord,
    TxtRecord, ZoneNet,
};
use crate::config::types::DomainSpec;
use crate::dns::zone::{serial_gt, zone_serial, DEFAULT_SERIAL_BASE, SERIAL_EPOCH_MS};
use hickory_proto::rr::DNSClass;
use twinmasq_proto::lease::{ClientKey, Stamp};

const HOSTS: &str = "198.18.10.60 hostfile\n\
                     198.18.10.61 printer.home.lan\n\
                     198.18.99.5 outside\n";
const NOW: u64 = 1_800_000_000;
const PEER: &str = "198.18.10.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg() -> Config {
    let dns = DnsConfig {
        expand_hosts: true,
        host_records: vec![
            HostRecord {
                names: vec!["nas.home.lan".into()],
                addrs: vec![ip("198.18.10.50")],
                ttl: None,
            },
            HostRecord {
                names: vec!["far.home.lan".into()],
                addrs: vec![ip("198.18.12.5")],
                ttl: None,
            },
        ],
        mx: vec![MxRecord {
            name: "home.lan".into(),
            target: Some("mail.home.lan".into()),
            preference: 10,
        }],
        txt: vec![TxtRecord {
            name: "info.home.lan".into(),
            texts: vec!["hello".into()],
        }],
        cnames: vec![CnameRecord {
            aliases: vec!["alias.home.lan".into()],
            target: "nas.home.lan".into(),
            ttl: None,
        }],
        auth: AuthConfig {
            zones: vec![AuthZone {
                domain: "home.lan".into(),
                subnets: vec![ZoneNet::Subnet {
                    addr: ip("198.18.10.0"),
                    prefix: 24,
                }],
                excludes: vec![],
            }],
            server: Some(AuthServer {
                name: "ns1.home.lan".into(),
                interfaces: vec![("va".into(), IfFamily::Any)],
                addrs: vec![],
            }),
            sec_servers: vec!["sec.example".into()],
            peers: vec![ip(PEER)],
            ..AuthConfig::default()
        },
        ..DnsConfig::default()
    };
    Config {
        domains: vec![DomainSpec {
            name: "home.lan".into(),
            scope: DomainScope::All,
        }],
        dns,
        ..Config::default()
    }
}

fn lease(ipv4: &str, host: &str, wall_ms: u64) -> LeaseRecord {
    LeaseRecord {
        ip: ipv4.parse().unwrap(),
        state: LeaseState::Bound,
        client: ClientKey::from_hwaddr(1, &[2, 0, 0, 0, 0, 1]),
        htype: 1,
        hwaddr: vec![2, 0, 0, 0, 0, 1],
        client_id: None,
        hostname: Some(host.into()),
        expires: Expiry::At(NOW + 3600),
        stamp: Stamp {
            wall_ms,
            counter: 0,
            node: 7,
        },
    }
}

fn authority_with(cfg: &Config) -> Authority {
    let mut a = Authority::new(cfg, &[(PathBuf::from("/h"), HOSTS.to_string())]);
    a.lease_changed(
        &lease("198.18.10.100", "laptop", SERIAL_EPOCH_MS + 1000),
        NOW,
    );
    a.lease_changed(
        &lease("198.18.11.100", "phone", SERIAL_EPOCH_MS + 2000),
        NOW,
    );
    a
}

fn authority() -> Authority {
    authority_with(&cfg())
}

fn ask(
    a: &Authority,
    name: &str,
    t: RecordType,
    service: Service,
    peer: &str,
    tcp: bool,
) -> AuthVerdict {
    let n = Name::from_ascii(name).unwrap();
    a.auth(
        &AuthQuery {
            name: &n,
            qtype: t,
            qclass: DNSClass::IN,
            service,
            peer: ip(peer),
            tcp,
            client_serial: None,
        },
        NOW,
    )
}

fn text(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
        .collect()
}

/// (rcode, aa, answers, authorities) as text.
type Shown = (ResponseCode, bool, Vec<String>, Vec<String>);

fn shown(v: AuthVerdict) -> Shown {
    match v {
        AuthVerdict::Answer {
            rcode,
            answers,
            authorities,
            authoritative,
        } => (rcode, authoritative, text(&answers), text(&authorities)),
        other => panic!("not an answer: {other:?}"),
    }
}

fn ext(a: &Authority, name: &str, t: RecordType) -> Shown {
    shown(ask(
        a,
        name,
        t,
        Service::Authoritative,
        "198.18.10.3",
        false,
    ))
}

fn lan(a: &Authority, name: &str, t: RecordType) -> Shown {
    shown(ask(a, name, t, Service::Recursive, "198.18.11.2", false))
}

fn soa_text(a: &Authority, owner: &str) -> String {
    format!(
        "{owner} 600 SOA ns1.home.lan. hostmaster.ns1.home.lan. {} 1200 180 1209600 600",
        a.zones.serial()
    )
}

fn ns_text() -> Vec<String> {
    vec![
        "home.lan. 600 NS ns1.home.lan.".to_string(),
        "home.lan. 600 NS sec.example.".to_string(),
    ]
}

use RecordType::{A, AAAA, AXFR, IXFR, MX, NS, PTR, SOA};
use ResponseCode::{NXDomain, NoError};

#[test]
fn apex_soa_and_ns() {
    let a = authority();
    let soa = soa_text(&a, "home.lan.");
    assert_eq!(
        ext(&a, "home.lan.", SOA),
        (NoError, true, vec![soa.clone()], ns_text())
    );
    assert_eq!(ext(&a, "HOME.LAN.", NS), (NoError, true, ns_text(), vec![]));
    // The apex exists: other types are NODATA with the SOA.
    assert_eq!(
        ext(&a, "home.lan.", A),
        (NoError, true, vec![], vec![soa.clone()])
    );
    // At the normal service the apex SOA and NS still carry AA.
    assert_eq!(
        lan(&a, "home.lan.", SOA),
        (NoError, true, vec![soa], ns_text())
    );
    assert_eq!(lan(&a, "home.lan.", NS), (NoError, true, ns_text(), vec![]));
    assert_eq!(lan(&a, "home.lan.", A), (NoError, false, vec![], vec![]));
}

#[test]
fn names_in_the_zone_at_the_authoritative_service() {
    let a = authority();
    let soa = soa_text(&a, "home.lan.");
    let lease = vec!["laptop.home.lan. 600 A 198.18.10.100".to_string()];
    assert_eq!(
        ext(&a, "laptop.home.lan.", A),
        (NoError, true, lease, ns_text())
    );
    assert_eq!(
        ext(&a, "nas.home.lan.", A),
        (
            NoError,
            true,
            vec!["nas.home.lan. 600 A 198.18.10.50".into()],
            ns_text()
        )
    );
    assert_eq!(
        ext(&a, "hostfile.home.lan.", A).2,
        vec!["hostfile.home.lan. 600 A 198.18.10.60"]
    );
    assert_eq!(
        ext(&a, "printer.home.lan.", A).2,
        vec!["printer.home.lan. 600 A 198.18.10.61"]
    );
    assert_eq!(
        ext(&a, "home.lan.", MX),
        (
            NoError,
            true,
            vec!["home.lan. 600 MX 10 mail.home.lan.".into()],
            ns_text()
        )
    );
    assert_eq!(
        ext(&a, "alias.home.lan.", A),
        (
            NoError,
            true,
            vec![
                "alias.home.lan. 600 CNAME nas.home.lan.".into(),
                "nas.home.lan. 600 A 198.18.10.50".into()
            ],
            ns_text()
        )
    );
    // Missing names: NXDOMAIN with the SOA; names that exist but have
    // nothing of the type, or only addresses outside the zone's subnet
    // (a lease, a host-record), NODATA with the SOA.
    let nx = (NXDomain, true, vec![], vec![soa.clone()]);
    let nodata = (NoError, true, vec![], vec![soa]);
    assert_eq!(ext(&a, "missing.home.lan.", A), nx);
    assert_eq!(ext(&a, "deep.laptop.home.lan.", A), nx);
    assert_eq!(ext(&a, "ns1.home.lan.", A), nx);
    assert_eq!(ext(&a, "laptop.home.lan.", AAAA), nodata);
    assert_eq!(ext(&a, "phone.home.lan.", A), nodata);
    assert_eq!(ext(&a, "far.home.lan.", A), nodata);
    assert_eq!(ext(&a, "laptop.home.lan.", SOA), nodata);
    // Outside every zone: REFUSED.
    for (n, t) in [("www.example.com.", A), ("outside.", A), ("lan.", SOA)] {
        assert_eq!(
            ask(&a, n, t, Service::Authoritative, "198.18.10.3", false),
            AuthVerdict::Refused,
            "{n}"
        );
    }
}

#[test]
fn names_in_the_zone_at_the_normal_service() {
    let a = authority();
    // No AA, no authority section, no subnet filter.
    assert_eq!(
        lan(&a, "laptop.home.lan.", A),
        (
            NoError,
            false,
            vec!["laptop.home.lan. 600 A 198.18.10.100".into()],
            vec![]
        )
    );
    assert_eq!(
        lan(&a, "phone.home.lan.", A).2,
        vec!["phone.home.lan. 600 A 198.18.11.100"]
    );
    assert_eq!(
        lan(&a, "far.home.lan.", A).2,
        vec!["far.home.lan. 600 A 198.18.12.5"]
    );
    assert_eq!(
        lan(&a, "missing.home.lan.", A),
        (NXDomain, false, vec![], vec![])
    );
    assert_eq!(
        lan(&a, "laptop.home.lan.", AAAA),
        (NoError, false, vec![], vec![])
    );
    assert_eq!(lan(&a, "alias.home.lan.", A).2.len(), 2);
    // Not in a zone: the normal path (reverse names included).
    for (n, t) in [
        ("www.example.com.", A),
        ("laptop.", A),
        ("100.10.18.198.in-addr.arpa.", PTR),
    ] {
        assert_eq!(
            ask(&a, n, t, Service::Recursive, "198.18.11.2", false),
            AuthVerdict::NotMine,
            "{n}"
        );
    }
}

#[test]
fn reverse_zone_of_the_subnet() {
    let a = authority();
    let rev = "10.18.198.in-addr.arpa.";
    let own_ns = vec![format!("{rev} 600 NS ns1.home.lan.")];
    assert_eq!(
        ext(&a, "100.10.18.198.in-addr.arpa.", PTR),
        (
            NoError,
            true,
            vec!["100.10.18.198.in-addr.arpa. 600 PTR laptop.home.lan.".into()],
            own_ns.clone()
        )
    );
    assert_eq!(
        ext(&a, "60.10.18.198.in-addr.arpa.", PTR).2,
        vec!["60.10.18.198.in-addr.arpa. 600 PTR hostfile.home.lan."]
    );
    assert_eq!(
        ext(&a, "5.10.18.198.in-addr.arpa.", PTR),
        (NXDomain, true, vec![], vec![soa_text(&a, rev)])
    );
    // SOA and NS answer at the zone's name, whatever name below it.
    assert_eq!(
        ext(&a, rev, SOA),
        (NoError, true, vec![soa_text(&a, rev)], own_ns.clone())
    );
    assert_eq!(
        ext(&a, "5.10.18.198.in-addr.arpa.", NS),
        (NoError, true, own_ns, vec![])
    );
    for n in ["5.12.18.198.in-addr.arpa.", "18.198.in-addr.arpa."] {
        assert_eq!(
            ask(&a, n, PTR, Service::Authoritative, "198.18.10.3", false),
            AuthVerdict::Refused
        );
    }
}

fn transfer(v: AuthVerdict) -> Vec<String> {
    match v {
        AuthVerdict::Transfer(r) => text(&r),
        other => panic!("not a transfer: {other:?}"),
    }
}

#[test]
fn axfr_is_the_whole_zone_between_two_soas() {
    let a = authority();
    let soa = soa_text(&a, "home.lan.");
    let got = transfer(ask(
        &a,
        "home.lan.",
        AXFR,
        Service::Authoritative,
        PEER,
        true,
    ));
    let mut want = vec![soa.clone()];
    want.extend(ns_text());
    want.extend([
        "alias.home.lan. 600 CNAME nas.home.lan.".to_string(),
        "home.lan. 600 MX 10 mail.home.lan.".into(),
        "info.home.lan. 600 TXT hello".into(),
        "laptop.home.lan. 600 A 198.18.10.100".into(),
        "hostfile.home.lan. 600 A 198.18.10.60".into(),
        "nas.home.lan. 600 A 198.18.10.50".into(),
        "printer.home.lan. 600 A 198.18.10.61".into(),
        soa,
    ]);
    assert_eq!(got, want);
    // At the normal service nothing is filtered (dnsmasq's local mode).
    let all = transfer(ask(&a, "home.lan.", AXFR, Service::Recursive, PEER, true));
    for r in [
        "phone.home.lan. 600 A 198.18.11.100",
        "far.home.lan. 600 A 198.18.12.5",
        "outside.home.lan. 600 A 198.18.99.5",
    ] {
        assert!(all.iter().any(|x| x == r), "{r} in {all:?}");
    }
}

#[test]
fn axfr_permission_and_transport() {
    let a = authority();
    // Not a peer: refused (dnsmasq closes the connection instead).
    assert_eq!(
        ask(
            &a,
            "home.lan.",
            AXFR,
            Service::Authoritative,
            "198.18.10.3",
            true
        ),
        AuthVerdict::Refused
    );
    // Over UDP: ignored, as dnsmasq does.
    assert_eq!(
        ask(&a, "home.lan.", AXFR, Service::Authoritative, PEER, false),
        AuthVerdict::Drop
    );
    // Only the apex transfers.
    assert!(matches!(
        ask(
            &a,
            "laptop.home.lan.",
            AXFR,
            Service::Authoritative,
            PEER,
            true
        ),
        AuthVerdict::Answer { .. }
    ));
    // auth-sec-servers without auth-peer: anyone may transfer.
    let mut c = cfg();
    c.dns.auth.peers.clear();
    let open = authority_with(&c);
    assert!(matches!(
        ask(
            &open,
            "home.lan.",
            AXFR,
            Service::Authoritative,
            "198.18.10.3",
            true
        ),
        AuthVerdict::Transfer(_)
    ));
    // Neither: no transfers.
    c.dns.auth.sec_servers.clear();
    let closed = authority_with(&c);
    assert_eq!(
        ask(
            &closed,
            "home.lan.",
            AXFR,
            Service::Authoritative,
            PEER,
            true
        ),
        AuthVerdict::Refused
    );
}

#[test]
fn ixfr_sends_the_soa_to_a_current_client_else_the_zone() {
    // twinmasq's own: dnsmasq answers IXFR with NODATA.
    let a = authority();
    let n = Name::from_ascii("home.lan.").unwrap();
    let q = |serial: Option<u32>, tcp: bool| {
        a.auth(
            &AuthQuery {
                name: &n,
                qtype: IXFR,
                qclass: DNSClass::IN,
                service: Service::Authoritative,
                peer: ip(PEER),
                tcp,
                client_serial: serial,
            },
            NOW,
        )
    };
    let s = a.zones.serial();
    let soa_only = (NoError, true, vec![soa_text(&a, "home.lan.")], vec![]);
    assert_eq!(shown(q(Some(s), true)), soa_only);
    assert_eq!(shown(q(Some(s.wrapping_add(5)), true)), soa_only);
    assert_eq!(shown(q(Some(s - 1), false)), soa_only);
    assert_eq!(transfer(q(Some(s - 1), true)).len(), 11);
    assert_eq!(transfer(q(None, true)).len(), 11);
}

#[test]
fn excludes_and_interface_subnets() {
    let mut c = cfg();
    c.dns.auth.zones[0].excludes = vec![ZoneNet::Subnet {
        addr: ip("198.18.10.100"),
        prefix: 32,
    }];
    c.dns.auth.zones[0].subnets.push(ZoneNet::Interface {
        name: "lan1".into(),
        family: IfFamily::Any,
    });
    let mut a = authority_with(&c);
    assert_eq!(ext(&a, "laptop.home.lan.", A).2, Vec::<String>::new());
    assert_eq!(ext(&a, "phone.home.lan.", A).2, Vec::<String>::new());
    a.set_interface_nets(&[(
        "lan1".into(),
        vec![crate::dns::zone::Net {
            addr: ip("198.18.11.1"),
            prefix: 24,
        }],
    )]);
    assert_eq!(
        ext(&a, "phone.home.lan.", A).2,
        vec!["phone.home.lan. 600 A 198.18.11.100"]
    );
}

#[test]
fn serial_rises_with_each_lease_change_and_matches_across_nodes() {
    let mut a = Authority::new(&cfg(), &[]);
    let handle = a.zone_serial_handle();
    assert_eq!(a.zone_serial(), Some(DEFAULT_SERIAL_BASE));
    assert_eq!(handle.get(), DEFAULT_SERIAL_BASE);
    let l1 = lease("198.18.10.100", "laptop", SERIAL_EPOCH_MS + 60_000);
    let mut l2 = lease("198.18.10.101", "tablet", SERIAL_EPOCH_MS + 120_000);
    a.lease_changed(&l1, NOW);
    let s1 = handle.get();
    assert!(serial_gt(s1, DEFAULT_SERIAL_BASE));
    a.lease_changed(&l2, NOW);
    let s2 = handle.get();
    assert!(serial_gt(s2, s1));
    // The lease ends: the name goes and the serial rises again.
    l2.state = LeaseState::Released;
    l2.stamp.wall_ms += 30_000;
    l2.expires = Expiry::At(l2.stamp.wall_ms / 1000);
    a.lease_changed(&l2, NOW);
    let s3 = handle.get();
    assert!(serial_gt(s3, s2));
    assert_eq!(s3, zone_serial(l2.stamp, DEFAULT_SERIAL_BASE));
    assert_eq!(a.zone_serial(), Some(s3));
    // The same records read at start in another order (a partner node,
    // a restart) give the same.
    let mut b = Authority::new(&cfg(), &[]);
    for r in [&l2, &l1] {
        b.lease_loaded(r, NOW);
    }
    assert_eq!(b.zone_serial(), Some(s3));
    // So do the same changes arriving newest last; one arriving after a
    // newer one moves the serial a step on (a change a secondary must
    // see), and the next change brings both back to the same.
    let mut c = Authority::new(&cfg(), &[]);
    c.lease_changed(&l1, NOW);
    c.lease_changed(&l2, NOW);
    assert_eq!(c.zone_serial(), Some(s3));
    let mut late = Authority::new(&cfg(), &[]);
    late.lease_changed(&l2, NOW);
    assert_eq!(late.zone_serial(), Some(s3));
    late.lease_changed(&l1, NOW);
    assert_eq!(late.zone_serial(), Some(s3.wrapping_add(1)));
    let l3 = lease("198.18.10.102", "phone", l2.stamp.wall_ms + 10_000);
    for node in [&mut a, &mut late] {
        node.lease_changed(&l3, NOW);
    }
    assert_eq!(a.zone_serial(), late.zone_serial());
    assert_eq!(
        a.zone_serial(),
        Some(zone_serial(l3.stamp, DEFAULT_SERIAL_BASE))
    );
    // And the SOA carries it, never below the configured auth-soa serial.
    let mut c = cfg();
    c.dns.auth.serial = Some(4_000_000_000);
    let mut d = Authority::new(&c, &[]);
    assert_eq!(d.zone_serial(), Some(4_000_000_000));
    d.lease_changed(&l1, NOW);
    assert!(serial_gt(d.zone_serial().unwrap(), 4_000_000_000));
    let soa = ext(&d, "home.lan.", SOA).2;
    assert!(
        soa[0].contains(&format!(" {} ", d.zone_serial().unwrap())),
        "{soa:?}"
    );
}

#[test]
fn no_zones_means_normal_service_and_refusals() {
    let mut c = cfg();
    c.dns.auth = AuthConfig::default();
    let a = authority_with(&c);
    assert_eq!(a.zone_serial(), None);
    assert_eq!(
        ask(&a, "laptop.home.lan.", A, Service::Recursive, PEER, false),
        AuthVerdict::NotMine
    );
    assert_eq!(
        ask(
            &a,
            "laptop.home.lan.",
            A,
            Service::Authoritative,
            PEER,
            false
        ),
        AuthVerdict::Refused
    );
}
