//! Each test records a behaviour checked against real dnsmasq 2.90 on
//! loopback (same options, queried with dig), unless it says otherwise.

use super::*;
use crate::config::dns_types::{
    AddressOverride, CnameRecord, DnsConfig, DomainServer, HostRecord, MxRecord, PtrRecord,
    RevServer, SrvRecord, TxtRecord,
};
use crate::config::types::DomainSpec;
use std::net::SocketAddr;
use twinmasq_proto::lease::{ClientKey, Stamp};

const HOSTS: &str = "198.18.0.5 hostfile hostfile.alias\n\
                     198.18.0.6 fq.home.lan\n\
                     2001:db8::6 v6only\n\
                     198.18.0.7 both\n\
                     2001:db8::7 both\n\
                     10.1.2.3 privhost\n";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The configuration the dnsmasq runs used.
fn cfg() -> Config {
    let dns = DnsConfig {
        expand_hosts: true,
        domain_needed: true,
        bogus_priv: true,
        servers: vec![sa("127.0.0.2:53999")],
        domain_servers: vec![
            DomainServer {
                domains: vec!["home.lan".into()],
                target: DomainTarget::Local,
            },
            DomainServer {
                domains: vec!["intra.test".into()],
                target: DomainTarget::Local,
            },
            DomainServer {
                domains: vec!["corp.test".into()],
                target: DomainTarget::Upstream(sa("127.0.0.3:53998")),
            },
            DomainServer {
                domains: vec!["viadefault.corp.test".into()],
                target: DomainTarget::UseDefault,
            },
        ],
        rev_servers: vec![RevServer {
            net: ip("198.18.5.0"),
            prefix: 24,
            target: DomainTarget::Upstream(sa("127.0.0.4:53997")),
        }],
        addresses: vec![
            AddressOverride {
                domains: vec!["blocked.test".into()],
                addrs: vec![],
            },
            AddressOverride {
                domains: vec!["ads.example".into()],
                addrs: vec![ip("198.18.0.99")],
            },
            AddressOverride {
                domains: vec!["v6.example".into()],
                addrs: vec![ip("2001:db8::99")],
            },
            AddressOverride {
                domains: vec!["sub.ads.example".into()],
                addrs: vec![ip("198.18.0.98")],
            },
        ],
        cnames: vec![
            CnameRecord {
                aliases: vec!["alias.home.lan".into()],
                target: "hostfile".into(),
                ttl: None,
            },
            CnameRecord {
                aliases: vec!["web.test".into()],
                target: "both.home.lan".into(),
                ttl: None,
            },
        ],
        mx: vec![
            MxRecord {
                name: "home.lan".into(),
                target: Some("mail.home.lan".into()),
                preference: 10,
            },
            MxRecord {
                name: "m.out.test".into(),
                target: Some("mail.out.test".into()),
                preference: 5,
            },
        ],
        srv: vec![
            SrvRecord {
                name: "_ldap._tcp.home.lan".into(),
                target: Some("ldap.home.lan".into()),
                port: 389,
                priority: 1,
                weight: 2,
            },
            SrvRecord {
                name: "_s._tcp.out.test".into(),
                target: None,
                port: 1,
                priority: 0,
                weight: 0,
            },
        ],
        txt: vec![
            TxtRecord {
                name: "txt.home.lan".into(),
                texts: vec!["v=spf1 -all".into(), "second".into()],
            },
            TxtRecord {
                name: "t.out.test".into(),
                texts: vec!["x".into()],
            },
        ],
        ptr: vec![PtrRecord {
            name: "_http._tcp.dns-sd-services".into(),
            target: Some("New Employee Page._http._tcp.dns-sd-services".into()),
        }],
        host_records: vec![HostRecord {
            names: vec!["hr.home.lan".into(), "hr2".into()],
            addrs: vec![ip("198.18.0.20"), ip("2001:db8::20")],
            ttl: Some(300),
        }],
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

fn auth() -> Authority {
    Authority::new(&cfg(), &[(PathBuf::from("/tmp/hosts"), HOSTS.to_string())])
}

fn q(a: &Authority, name: &str, t: RecordType) -> Lookup {
    a.lookup(&Name::from_ascii(name).unwrap(), t, None, 1000)
}

/// (rcode, aa, answers as "name type data ttl" text) of a local verdict.
fn local_of(l: &Lookup) -> (ResponseCode, bool, Vec<String>) {
    match l {
        Lookup::Local {
            rcode,
            answers,
            authorities,
            authoritative,
        } => {
            assert!(authorities.is_empty(), "dnsmasq puts no SOA in");
            let a = answers
                .iter()
                .map(|r| format!("{} {} {} {}", r.name, r.record_type(), r.data, r.ttl))
                .collect();
            (*rcode, *authoritative, a)
        }
        Lookup::Forward(r) => panic!("forwarded to {r:?}"),
    }
}

fn answer(a: &Authority, name: &str, t: RecordType) -> Vec<String> {
    let (rc, aa, ans) = local_of(&q(a, name, t));
    assert_eq!(rc, ResponseCode::NoError);
    assert!(aa, "local answers carry AA");
    ans
}

fn nodata(a: &Authority, name: &str, t: RecordType) {
    assert_eq!(
        local_of(&q(a, name, t)),
        (ResponseCode::NoError, false, vec![]),
        "{name} {t}"
    );
}

fn nxdomain(a: &Authority, name: &str, t: RecordType, aa: bool) {
    assert_eq!(
        local_of(&q(a, name, t)),
        (ResponseCode::NXDomain, aa, vec![]),
        "{name} {t}"
    );
}

use RecordType::{
    A, AAAA, ANY, CNAME as T_CNAME, MX as T_MX, NS, PTR as T_PTR, SOA, SRV as T_SRV, TXT as T_TXT,
};

#[test]
fn hosts_names_plain_and_expanded_with_aa() {
    let a = auth();
    assert_eq!(answer(&a, "hostfile.", A), vec!["hostfile. A 198.18.0.5 0"]);
    assert_eq!(
        answer(&a, "hostfile.home.lan.", A),
        vec!["hostfile.home.lan. A 198.18.0.5 0"]
    );
    // Dotted names are not expanded: hostfile.alias.home.lan is NXDOMAIN
    // (home.lan is local here).
    assert_eq!(
        answer(&a, "hostfile.alias.", A),
        vec!["hostfile.alias. A 198.18.0.5 0"]
    );
    nxdomain(&a, "hostfile.alias.home.lan.", A, false);
    assert_eq!(
        answer(&a, "fq.home.lan.", A),
        vec!["fq.home.lan. A 198.18.0.6 0"]
    );
    nxdomain(&a, "fq.", A, false);
}

#[test]
fn case_insensitive_and_answer_keeps_the_asked_case() {
    let a = auth();
    assert_eq!(
        answer(&a, "HostFile.Home.Lan.", A),
        vec!["HostFile.Home.Lan. A 198.18.0.5 0"]
    );
}

#[test]
fn other_family_is_nodata_without_aa() {
    let a = auth();
    nodata(&a, "hostfile.", AAAA);
    nodata(&a, "HostFile.Home.Lan.", AAAA);
    nodata(&a, "v6only.", A);
    nodata(&a, "v6only.home.lan.", A);
}

#[test]
fn any_returns_all_addresses() {
    let a = auth();
    assert_eq!(
        answer(&a, "both.", ANY),
        vec!["both. A 198.18.0.7 0", "both. AAAA 2001:db8::7 0"]
    );
    assert_eq!(
        answer(&a, "hostfile.home.lan.", ANY),
        vec!["hostfile.home.lan. A 198.18.0.5 0"]
    );
    assert_eq!(
        answer(&a, "home.lan.", ANY),
        vec!["home.lan. MX 10 mail.home.lan. 0"]
    );
    nxdomain(&a, "nothere.home.lan.", ANY, false);
}

#[test]
fn local_domain_nxdomain_and_nodata_no_soa() {
    let a = auth();
    nxdomain(&a, "nothere.home.lan.", A, false);
    nxdomain(&a, "nope.intra.test.", A, false);
    // Exists with other types: NODATA, for any type, SOA and NS included.
    nodata(&a, "hostfile.home.lan.", T_MX);
    nodata(&a, "hostfile.home.lan.", NS);
    nodata(&a, "v6only.home.lan.", T_PTR);
    nodata(&a, "home.lan.", A);
    nodata(&a, "home.lan.", SOA);
    nodata(&a, "txt.home.lan.", A);
}

#[test]
fn hosts_name_outside_local_domains_forwards_other_types() {
    let a = auth();
    assert_eq!(
        q(&a, "hostfile.alias.", T_MX),
        Lookup::Forward(Route::Default)
    );
    // dotless and domain-needed, but not A/AAAA/ANY: still forwarded.
    assert_eq!(q(&a, "hostfile.", T_MX), Lookup::Forward(Route::Default));
    assert_eq!(q(&a, "hostfile.", T_TXT), Lookup::Forward(Route::Default));
}

#[test]
fn record_names_outside_local_domains_forward_other_types() {
    let a = auth();
    assert_eq!(
        answer(&a, "t.out.test.", T_TXT),
        vec!["t.out.test. TXT x 0"]
    );
    for (n, t) in [
        ("t.out.test.", A),
        ("t.out.test.", AAAA),
        ("t.out.test.", T_MX),
        ("m.out.test.", A),
        ("m.out.test.", T_TXT),
    ] {
        assert_eq!(q(&a, n, t), Lookup::Forward(Route::Default), "{n} {t}");
    }
}

#[test]
fn address_override_longest_match_and_families() {
    let a = auth();
    assert_eq!(
        answer(&a, "ads.example.", A),
        vec!["ads.example. A 198.18.0.99 0"]
    );
    assert_eq!(
        answer(&a, "x.ads.example.", A),
        vec!["x.ads.example. A 198.18.0.99 0"]
    );
    assert_eq!(
        answer(&a, "sub.ads.example.", A),
        vec!["sub.ads.example. A 198.18.0.98 0"]
    );
    assert_eq!(
        answer(&a, "v6.example.", AAAA),
        vec!["v6.example. AAAA 2001:db8::99 0"]
    );
    // dnsmasq 2.90 forwards the family (or type) address= has nothing for.
    assert_eq!(q(&a, "v6.example.", A), Lookup::Forward(Route::Default));
    assert_eq!(
        q(&a, "www.ads.example.", AAAA),
        Lookup::Forward(Route::Default)
    );
    assert_eq!(q(&a, "ads.example.", T_MX), Lookup::Forward(Route::Default));
}

#[test]
fn empty_address_is_nxdomain_for_every_type() {
    let a = auth();
    nxdomain(&a, "blocked.test.", A, false);
    nxdomain(&a, "x.blocked.test.", A, false);
    nxdomain(&a, "blocked.test.", T_MX, false);
}

#[test]
fn address_hash_answers_unspecified() {
    // Not run against dnsmasq: `#` is stored as 0.0.0.0 and :: by the parser.
    let mut c = cfg();
    c.dns.addresses = vec![AddressOverride {
        domains: vec!["zero.test".into()],
        addrs: vec![ip("0.0.0.0"), ip("::")],
    }];
    let a = Authority::new(&c, &[]);
    assert_eq!(
        answer(&a, "a.zero.test.", A),
        vec!["a.zero.test. A 0.0.0.0 0"]
    );
    assert_eq!(
        answer(&a, "a.zero.test.", AAAA),
        vec!["a.zero.test. AAAA :: 0"]
    );
}

#[test]
fn server_domains_route() {
    let a = auth();
    assert_eq!(
        q(&a, "x.corp.test.", A),
        Lookup::Forward(Route::Servers(vec![sa("127.0.0.3:53998")]))
    );
    assert_eq!(
        q(&a, "x.viadefault.corp.test.", A),
        Lookup::Forward(Route::Default)
    );
    assert_eq!(
        q(&a, "www.example.org.", A),
        Lookup::Forward(Route::Default)
    );
}

#[test]
fn several_servers_for_one_domain_are_kept_in_order() {
    // Not run against dnsmasq (it would use both; order is ours).
    let mut c = cfg();
    c.dns.domain_servers.push(DomainServer {
        domains: vec!["corp.test".into()],
        target: DomainTarget::Upstream(sa("127.0.0.5:53")),
    });
    let a = Authority::new(&c, &[]);
    assert_eq!(
        q(&a, "corp.test.", A),
        Lookup::Forward(Route::Servers(vec![
            sa("127.0.0.3:53998"),
            sa("127.0.0.5:53")
        ]))
    );
}

#[test]
fn unqualified_server_rule_takes_dotless_names() {
    let mut c = cfg();
    c.dns.domain_servers.push(DomainServer {
        domains: vec!["".into()],
        target: DomainTarget::Upstream(sa("127.0.0.6:53")),
    });
    let a = Authority::new(&c, &[]);
    // domain-needed still answers an unqualified A itself.
    nxdomain(&a, "nothere.", A, false);
    assert_eq!(
        q(&a, "nothere.", T_MX),
        Lookup::Forward(Route::Servers(vec![sa("127.0.0.6:53")]))
    );
    assert_eq!(q(&a, "a.b.", A), Lookup::Forward(Route::Default));
    c.dns.domain_needed = false;
    let a = Authority::new(&c, &[]);
    assert_eq!(
        q(&a, "nothere.", A),
        Lookup::Forward(Route::Servers(vec![sa("127.0.0.6:53")]))
    );
}

#[test]
fn rev_server_routes_its_reverse_zone() {
    let a = auth();
    assert_eq!(
        q(&a, "5.5.18.198.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Servers(vec![sa("127.0.0.4:53997")]))
    );
    // Outside it, public: forwarded normally.
    assert_eq!(
        q(&a, "7.7.18.198.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Default)
    );
}

#[test]
fn reverse_of_hosts_and_host_records() {
    let a = auth();
    assert_eq!(
        answer(&a, "5.0.18.198.in-addr.arpa.", T_PTR),
        vec!["5.0.18.198.in-addr.arpa. PTR hostfile.home.lan. 0"]
    );
    assert_eq!(
        answer(&a, "20.0.18.198.in-addr.arpa.", T_PTR),
        vec!["20.0.18.198.in-addr.arpa. PTR hr.home.lan. 300"]
    );
    let r6 = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(
        answer(&a, r6, T_PTR),
        vec![format!("{r6} PTR both.home.lan. 0")]
    );
    let r6 = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(
        answer(&a, r6, T_PTR),
        vec![format!("{r6} PTR hr.home.lan. 300")]
    );
    // A private address found locally is answered, bogus-priv or not.
    assert_eq!(
        answer(&a, "3.2.1.10.in-addr.arpa.", T_PTR),
        vec!["3.2.1.10.in-addr.arpa. PTR privhost.home.lan. 0"]
    );
    // address= makes no PTR: forwarded.
    assert_eq!(
        q(&a, "99.0.18.198.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Default)
    );
}

#[test]
fn bogus_priv_is_nxdomain_with_aa() {
    let a = auth();
    for n in [
        "9.9.9.10.in-addr.arpa.",
        "1.1.168.192.in-addr.arpa.",
        "1.0.16.172.in-addr.arpa.",
        "1.1.254.169.in-addr.arpa.",
        "1.0.0.127.in-addr.arpa.",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa.",
    ] {
        nxdomain(&a, n, T_PTR, true);
    }
    // 100.64/10 is not private to dnsmasq 2.90: forwarded.
    assert_eq!(
        q(&a, "1.0.64.100.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Default)
    );
    let mut c = cfg();
    c.dns.bogus_priv = false;
    let a = Authority::new(&c, &[]);
    assert_eq!(
        q(&a, "9.9.9.10.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Default)
    );
}

#[test]
fn domain_needed_answers_unqualified_addresses_nxdomain_and_forwards_the_rest() {
    let a = auth();
    nxdomain(&a, "nothere.", A, false);
    nxdomain(&a, "nothere.", AAAA, false);
    nxdomain(&a, "nothere.", ANY, false);
    for t in [T_MX, T_TXT, T_PTR, T_SRV] {
        assert_eq!(q(&a, "nothere.", t), Lookup::Forward(Route::Default), "{t}");
    }
    let mut c = cfg();
    c.dns.domain_needed = false;
    let a = Authority::new(&c, &[]);
    assert_eq!(q(&a, "nothere.", A), Lookup::Forward(Route::Default));
}

#[test]
fn cname_answers_alias_and_target_records() {
    let a = auth();
    assert_eq!(
        answer(&a, "alias.home.lan.", A),
        vec![
            "alias.home.lan. CNAME hostfile. 0",
            "hostfile. A 198.18.0.5 0"
        ]
    );
    // Target without that type: CNAME alone, still NOERROR + AA.
    assert_eq!(
        answer(&a, "alias.home.lan.", AAAA),
        vec!["alias.home.lan. CNAME hostfile. 0"]
    );
    assert_eq!(
        answer(&a, "alias.home.lan.", ANY),
        vec![
            "alias.home.lan. CNAME hostfile. 0",
            "hostfile. A 198.18.0.5 0"
        ]
    );
    assert_eq!(
        answer(&a, "web.test.", A),
        vec![
            "web.test. CNAME both.home.lan. 0",
            "both.home.lan. A 198.18.0.7 0"
        ]
    );
    assert_eq!(
        answer(&a, "web.test.", T_CNAME),
        vec!["web.test. CNAME both.home.lan. 0"]
    );
}

#[test]
fn cname_ttl_option_and_loops() {
    // Not run against dnsmasq (it refuses loops at load); here they stop.
    let mut c = cfg();
    c.dns.cnames = vec![
        CnameRecord {
            aliases: vec!["l1.test".into()],
            target: "l2.test".into(),
            ttl: Some(60),
        },
        CnameRecord {
            aliases: vec!["l2.test".into()],
            target: "l1.test".into(),
            ttl: None,
        },
    ];
    let a = Authority::new(&c, &[]);
    let ans = answer(&a, "l1.test.", A);
    assert_eq!(ans[0], "l1.test. CNAME l2.test. 60");
    assert_eq!(ans.len(), MAX_CNAME_HOPS + 1);
}

#[test]
fn mx_srv_txt_ptr_records() {
    let a = auth();
    assert_eq!(
        answer(&a, "home.lan.", T_MX),
        vec!["home.lan. MX 10 mail.home.lan. 0"]
    );
    assert_eq!(
        answer(&a, "_ldap._tcp.home.lan.", T_SRV),
        vec!["_ldap._tcp.home.lan. SRV 1 2 389 ldap.home.lan. 0"]
    );
    assert_eq!(
        answer(&a, "_s._tcp.out.test.", T_SRV),
        vec!["_s._tcp.out.test. SRV 0 0 1 . 0"]
    );
    let (_, _, t) = local_of(&q(&a, "txt.home.lan.", T_TXT));
    assert_eq!(t.len(), 1);
    assert!(
        t[0].contains("v=spf1 -all") && t[0].contains("second"),
        "{t:?}"
    );
    assert_eq!(answer(&a, "txt.home.lan.", ANY).len(), 1);
    let ans = answer(&a, "_http._tcp.dns-sd-services.", T_PTR);
    assert_eq!(ans.len(), 1);
    assert!(
        ans[0].starts_with("_http._tcp.dns-sd-services. PTR New"),
        "{ans:?}"
    );
}

#[test]
fn host_record_ttl_and_dotless_names() {
    let a = auth();
    assert_eq!(
        answer(&a, "hr.home.lan.", A),
        vec!["hr.home.lan. A 198.18.0.20 300"]
    );
    assert_eq!(answer(&a, "hr2.", AAAA), vec!["hr2. AAAA 2001:db8::20 300"]);
    assert_eq!(
        answer(&a, "hr.home.lan.", ANY),
        vec![
            "hr.home.lan. A 198.18.0.20 300",
            "hr.home.lan. AAAA 2001:db8::20 300"
        ]
    );
}

#[test]
fn local_ttl_applies_to_local_answers() {
    // dnsmasq's local-ttl (0 by default, seen above).
    let mut c = cfg();
    c.dns.local_ttl = 42;
    let a = Authority::new(&c, &[(PathBuf::from("h"), HOSTS.into())]);
    assert_eq!(
        answer(&a, "hostfile.", A),
        vec!["hostfile. A 198.18.0.5 42"]
    );
    assert_eq!(
        answer(&a, "ads.example.", A),
        vec!["ads.example. A 198.18.0.99 42"]
    );
    assert_eq!(answer(&a, "hr2.", A), vec!["hr2. A 198.18.0.20 300"]);
}

#[test]
fn without_expand_hosts_only_plain_names() {
    let mut c = cfg();
    c.dns.expand_hosts = false;
    let a = Authority::new(&c, &[(PathBuf::from("h"), HOSTS.into())]);
    assert_eq!(answer(&a, "hostfile.", A).len(), 1);
    nxdomain(&a, "hostfile.home.lan.", A, false);
    assert_eq!(
        answer(&a, "5.0.18.198.in-addr.arpa.", T_PTR),
        vec!["5.0.18.198.in-addr.arpa. PTR hostfile. 0"]
    );
}

#[test]
fn reload_hosts_replaces_hosts_and_reports_bad_lines() {
    let mut a = auth();
    a.reload_hosts(&[(
        PathBuf::from("/h2"),
        "198.18.0.50 newhost\nbogus line\n".into(),
    )]);
    nxdomain(&a, "hostfile.home.lan.", A, false);
    assert_eq!(
        answer(&a, "newhost.home.lan.", A),
        vec!["newhost.home.lan. A 198.18.0.50 0"]
    );
    // Config records survive the reload.
    assert_eq!(answer(&a, "hr2.", A).len(), 1);
    assert_eq!(a.bad_hosts_lines().len(), 1);
    assert_eq!(a.bad_hosts_lines()[0].0, PathBuf::from("/h2"));
    assert_eq!(a.bad_hosts_lines()[0].1.line, 2);
}

fn lease(ipv4: &str, state: LeaseState, host: Option<&str>, exp: u64) -> LeaseRecord {
    LeaseRecord {
        ip: ipv4.parse().unwrap(),
        state,
        client: ClientKey::from_hwaddr(1, &[1, 2, 3, 4, 5, 6]),
        htype: 1,
        hwaddr: vec![1, 2, 3, 4, 5, 6],
        client_id: None,
        hostname: host.map(str::to_string),
        expires: Expiry::At(exp),
        stamp: Stamp::default(),
    }
}

#[test]
fn bound_lease_publishes_name_qualified_name_and_ptr() {
    let mut a = auth();
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("Laptop"), 5000),
        1000,
    );
    assert_eq!(answer(&a, "laptop.", A), vec!["laptop. A 198.18.1.10 0"]);
    assert_eq!(
        answer(&a, "laptop.home.lan.", A),
        vec!["laptop.home.lan. A 198.18.1.10 0"]
    );
    assert_eq!(
        answer(&a, "10.1.18.198.in-addr.arpa.", T_PTR),
        vec!["10.1.18.198.in-addr.arpa. PTR laptop.home.lan. 0"]
    );
    // Under the local= domain the name exists: NODATA.
    nodata(&a, "laptop.home.lan.", AAAA);
}

#[test]
fn a_resync_publishes_the_table_and_withdraws_what_it_no_longer_has() {
    let mut a = auth();
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("gone"), 5000),
        1000,
    );
    a.lease_changed(
        &lease("198.18.1.11", LeaseState::Bound, Some("old-name"), 5000),
        1000,
    );
    // The changes missed: .10 left the table, .11 was renamed, .12 is new.
    a.leases_resynced(
        &[
            lease("198.18.1.11", LeaseState::Bound, Some("new-name"), 5000),
            lease("198.18.1.12", LeaseState::Bound, Some("fresh"), 5000),
        ],
        1000,
    );
    // Withdrawn names are answered as a name never seen is.
    let unknown = q(&a, "never-seen.", A);
    assert_eq!(q(&a, "gone.", A), unknown, "a lease the table lost");
    assert_eq!(q(&a, "old-name.", A), unknown, "a lease's old name");
    assert_eq!(
        answer(&a, "new-name.", A),
        vec!["new-name. A 198.18.1.11 0"]
    );
    assert_eq!(answer(&a, "fresh.", A), vec!["fresh. A 198.18.1.12 0"]);
}

/// Seen with dnsmasq loading a lease file (domain=home.lan, no local=, no
/// domain-needed, hosts file without expand-hosts).
fn plain_lease_cfg() -> Config {
    Config {
        domains: vec![DomainSpec {
            name: "home.lan".into(),
            scope: DomainScope::All,
        }],
        ..Config::default()
    }
}

#[test]
fn lease_name_other_family_is_forwarded_not_nodata() {
    let mut a = Authority::new(&plain_lease_cfg(), &[(PathBuf::from("h"), HOSTS.into())]);
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("laptop"), 5000),
        1000,
    );
    assert_eq!(
        answer(&a, "Laptop.Home.Lan.", ANY),
        vec!["Laptop.Home.Lan. A 198.18.1.10 0"]
    );
    assert_eq!(
        q(&a, "laptop.home.lan.", AAAA),
        Lookup::Forward(Route::Default)
    );
    // A hosts name's other family is NODATA.
    nodata(&a, "hostfile.", AAAA);
}

#[test]
fn lease_named_like_a_hosts_name_keeps_only_the_qualified_name() {
    // dnsmasq: "not giving name hostfile to the DHCP lease ... exists in
    // hosts", yet hostfile.home.lan and the PTR go to the lease.
    let mut a = Authority::new(&plain_lease_cfg(), &[(PathBuf::from("h"), HOSTS.into())]);
    a.lease_changed(
        &lease("198.18.1.12", LeaseState::Bound, Some("hostfile"), 5000),
        1000,
    );
    assert_eq!(answer(&a, "hostfile.", A), vec!["hostfile. A 198.18.0.5 0"]);
    assert_eq!(
        answer(&a, "hostfile.home.lan.", A),
        vec!["hostfile.home.lan. A 198.18.1.12 0"]
    );
    assert_eq!(
        answer(&a, "12.1.18.198.in-addr.arpa.", T_PTR),
        vec!["12.1.18.198.in-addr.arpa. PTR hostfile.home.lan. 0"]
    );
}

#[test]
fn lease_expired_at_load_is_not_published() {
    let mut a = Authority::new(&plain_lease_cfg(), &[]);
    a.lease_changed(
        &lease("198.18.1.11", LeaseState::Bound, Some("oldone"), 990),
        1000,
    );
    assert_eq!(
        q(&a, "oldone.home.lan.", A),
        Lookup::Forward(Route::Default)
    );
}

#[test]
fn lease_domain_follows_domain_for() {
    let mut c = cfg();
    c.domains.insert(
        0,
        DomainSpec {
            name: "lab.lan".into(),
            scope: DomainScope::Subnet {
                net: "198.18.2.0".parse().unwrap(),
                prefix: 24,
            },
        },
    );
    let mut a = Authority::new(&c, &[]);
    a.lease_changed(
        &lease("198.18.2.10", LeaseState::Bound, Some("probe"), 5000),
        1000,
    );
    assert_eq!(answer(&a, "probe.lab.lan.", A).len(), 1);
    assert_eq!(
        q(&a, "probe.home.lan.", A),
        local(ResponseCode::NXDomain, vec![], false)
    );
}

#[test]
fn lease_end_rename_and_move_withdraw_old_names() {
    let mut a = auth();
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("laptop"), 5000),
        1000,
    );
    // Renamed.
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("desk"), 5000),
        1000,
    );
    nxdomain(&a, "laptop.home.lan.", A, false);
    assert_eq!(answer(&a, "desk.home.lan.", A).len(), 1);
    // Released.
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Released, Some("desk"), 5000),
        1000,
    );
    nxdomain(&a, "desk.home.lan.", A, false);
    assert_eq!(
        q(&a, "10.1.18.198.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Default)
    );
    // Expired and declined publish nothing; a record without a name neither.
    for st in [LeaseState::Expired, LeaseState::Declined] {
        a.lease_changed(&lease("198.18.1.11", st, Some("gone"), 5000), 1000);
        nxdomain(&a, "gone.home.lan.", A, false);
    }
    a.lease_changed(&lease("198.18.1.12", LeaseState::Bound, None, 5000), 1000);
    assert_eq!(
        q(&a, "12.1.18.198.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Default)
    );
    assert!(a.lease_names.is_empty() || !a.lease_names.contains_key("gone"));
}

#[test]
fn two_leases_one_name_survive_each_other() {
    let mut a = auth();
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("dup"), 5000),
        1000,
    );
    a.lease_changed(
        &lease("198.18.1.11", LeaseState::Bound, Some("dup"), 5000),
        1000,
    );
    assert_eq!(answer(&a, "dup.", A).len(), 2);
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Released, Some("dup"), 5000),
        1000,
    );
    assert_eq!(answer(&a, "dup.", A), vec!["dup. A 198.18.1.11 0"]);
}

#[test]
fn expired_lease_answers_nothing_before_the_sweep() {
    let mut a = auth();
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("laptop"), 5000),
        1000,
    );
    let n = Name::from_ascii("laptop.home.lan.").unwrap();
    assert!(matches!(
        a.lookup(&n, A, None, 4999),
        Lookup::Local {
            rcode: ResponseCode::NoError,
            ..
        }
    ));
    assert_eq!(
        a.lookup(&n, A, None, 5000),
        local(ResponseCode::NXDomain, vec![], false)
    );
    let r = Name::from_ascii("10.1.18.198.in-addr.arpa.").unwrap();
    assert_eq!(
        a.lookup(&r, T_PTR, None, 5000),
        Lookup::Forward(Route::Default)
    );
    // Already past when it arrives: not published at all.
    a.lease_changed(
        &lease("198.18.1.20", LeaseState::Bound, Some("late"), 900),
        1000,
    );
    assert!(!a.lease_names.contains_key("late"));
}

#[test]
fn hosts_name_shadows_lease_name() {
    let mut a = auth();
    a.lease_changed(
        &lease("198.18.1.10", LeaseState::Bound, Some("hostfile"), 5000),
        1000,
    );
    assert_eq!(answer(&a, "hostfile.", A), vec!["hostfile. A 198.18.0.5 0"]);
}

#[test]
fn qualified_or_bad_lease_hostnames() {
    let mut a = auth();
    a.lease_changed(
        &lease(
            "198.18.1.10",
            LeaseState::Bound,
            Some("nas.elsewhere"),
            5000,
        ),
        1000,
    );
    assert_eq!(answer(&a, "nas.home.lan.", A).len(), 1);
    a.lease_changed(
        &lease("198.18.1.11", LeaseState::Bound, Some("bad name!"), 5000),
        1000,
    );
    assert_eq!(
        q(&a, "11.1.18.198.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Default)
    );
}

#[test]
fn local_domain_option_makes_domain_and_reverse_zone_local() {
    // domain=lab.lan,198.18.9.0/24,local: as dnsmasq's implied local=.
    let mut c = Config::default();
    let spec = DomainSpec {
        name: "lab.lan".into(),
        scope: DomainScope::Subnet {
            net: "198.18.9.0".parse().unwrap(),
            prefix: 24,
        },
    };
    c.domains.push(spec.clone());
    c.local_domains.push(spec);
    let mut a = Authority::new(&c, &[]);
    nxdomain(&a, "x.lab.lan.", A, false);
    nxdomain(&a, "5.9.18.198.in-addr.arpa.", T_PTR, false);
    a.lease_changed(
        &lease("198.18.9.5", LeaseState::Bound, Some("pi"), 5000),
        1000,
    );
    assert_eq!(answer(&a, "pi.lab.lan.", A).len(), 1);
    assert_eq!(
        answer(&a, "5.9.18.198.in-addr.arpa.", T_PTR),
        vec!["5.9.18.198.in-addr.arpa. PTR pi.lab.lan. 0"]
    );
}

#[test]
fn bogus_priv_covers_any_and_partial_names_but_not_other_types() {
    let a = auth();
    nxdomain(&a, "9.9.9.10.in-addr.arpa.", ANY, true);
    nxdomain(&a, "0.10.in-addr.arpa.", T_PTR, true);
    assert_eq!(
        q(&a, "1.0.0.10.in-addr.arpa.", T_TXT),
        Lookup::Forward(Route::Default)
    );
    assert_eq!(
        q(&a, "1.0.0.10.in-addr.arpa.", A),
        Lookup::Forward(Route::Default)
    );
}

#[test]
fn server_rule_for_private_reverse_zone_beats_bogus_priv() {
    let mut c = cfg();
    c.dns.domain_servers.push(DomainServer {
        domains: vec!["168.192.in-addr.arpa".into()],
        target: DomainTarget::Upstream(sa("127.0.0.5:53996")),
    });
    let a = Authority::new(&c, &[]);
    assert_eq!(
        q(&a, "1.1.168.192.in-addr.arpa.", T_PTR),
        Lookup::Forward(Route::Servers(vec![sa("127.0.0.5:53996")]))
    );
}

#[test]
fn hosts_beat_address_override() {
    let mut c = cfg();
    c.dns.addresses.push(AddressOverride {
        domains: vec!["hostfile.alias".into(), "both".into()],
        addrs: vec![ip("198.18.0.77")],
    });
    let a = Authority::new(&c, &[(PathBuf::from("h"), HOSTS.into())]);
    assert_eq!(
        answer(&a, "hostfile.alias.", A),
        vec!["hostfile.alias. A 198.18.0.5 0"]
    );
    assert_eq!(answer(&a, "both.", AAAA), vec!["both. AAAA 2001:db8::7 0"]);
}

#[test]
fn host_record_names_are_not_expanded() {
    let mut c = cfg();
    c.dns.domain_servers.clear();
    c.dns.host_records = vec![HostRecord {
        names: vec!["hrx".into()],
        addrs: vec![ip("198.18.0.30")],
        ttl: None,
    }];
    let a = Authority::new(&c, &[]);
    assert_eq!(answer(&a, "hrx.", A), vec!["hrx. A 198.18.0.30 0"]);
    assert_eq!(q(&a, "hrx.home.lan.", A), Lookup::Forward(Route::Default));
    assert_eq!(
        answer(&a, "30.0.18.198.in-addr.arpa.", T_PTR),
        vec!["30.0.18.198.in-addr.arpa. PTR hrx. 0"]
    );
}

#[test]
fn mx_without_target_names_this_host() {
    let mut c = cfg();
    c.dns.mx = vec![MxRecord {
        name: "mx.out.test".into(),
        target: None,
        preference: 1,
    }];
    let mut a = Authority::new(&c, &[]);
    assert_eq!(q(&a, "mx.out.test.", T_MX), Lookup::Forward(Route::Default));
    a.set_own_name("vm", &[]);
    assert_eq!(
        answer(&a, "mx.out.test.", T_MX),
        vec!["mx.out.test. MX 1 vm. 0"]
    );
}

#[test]
fn address_any_prefers_ipv6_like_dnsmasq() {
    let mut c = cfg();
    c.dns.addresses = vec![
        AddressOverride {
            domains: vec!["two.example".into()],
            addrs: vec![ip("198.18.0.1")],
        },
        AddressOverride {
            domains: vec!["two.example".into()],
            addrs: vec![ip("198.18.0.2")],
        },
        AddressOverride {
            domains: vec!["mix.example".into()],
            addrs: vec![ip("198.18.0.1"), ip("2001:db8::1"), ip("198.18.0.3")],
        },
    ];
    let a = Authority::new(&c, &[]);
    assert_eq!(answer(&a, "two.example.", ANY).len(), 2);
    assert_eq!(
        answer(&a, "mix.example.", ANY),
        vec!["mix.example. AAAA 2001:db8::1 0"]
    );
    assert_eq!(answer(&a, "mix.example.", A).len(), 2);
}

#[test]
fn cname_to_outside_name_and_ttls_with_local_ttl() {
    // dnsmasq with local-ttl=5: external target answered as the CNAME alone
    // (the client's resolver chases it); cname TTL option beats local-ttl.
    let mut c = cfg();
    c.dns.local_ttl = 5;
    c.dns.cnames = vec![
        CnameRecord {
            aliases: vec!["ext.test".into()],
            target: "www.example.org".into(),
            ttl: None,
        },
        CnameRecord {
            aliases: vec!["tt.test".into()],
            target: "hostfile".into(),
            ttl: Some(77),
        },
    ];
    let a = Authority::new(&c, &[(PathBuf::from("h"), HOSTS.into())]);
    assert_eq!(
        answer(&a, "ext.test.", A),
        vec!["ext.test. CNAME www.example.org. 5"]
    );
    assert_eq!(
        answer(&a, "tt.test.", A),
        vec!["tt.test. CNAME hostfile. 77", "hostfile. A 198.18.0.5 5"]
    );
    assert_eq!(
        answer(&a, "5.0.18.198.in-addr.arpa.", T_PTR),
        vec!["5.0.18.198.in-addr.arpa. PTR hostfile.home.lan. 5"]
    );
}

#[test]
fn long_txt_strings_are_split_at_255_bytes() {
    // Not run against dnsmasq: keeps the record encodable.
    let t = txt_rdata(&["a".repeat(300), "b".into()]);
    let lens: Vec<usize> = t.txt_data.iter().map(|s| s.len()).collect();
    assert_eq!(lens, vec![255, 45, 1]);
}

/// Hosts names with addresses on two subnets, one with both families, and
/// a CNAME to one of them; `localise-queries` on.
fn localised() -> Authority {
    let mut c = cfg();
    c.dns.localise_queries = true;
    c.dns.cnames.push(CnameRecord {
        aliases: vec!["to-multi.test".into()],
        target: "multi".into(),
        ttl: None,
    });
    let hosts = "198.18.0.10 multi\n198.18.1.10 multi\n2001:db8::10 multi\n\
                 10.9.0.5 far\n10.9.0.6 far\n";
    Authority::new(&c, &[(PathBuf::from("/tmp/hosts"), hosts.to_string())])
}

fn at(a: &Authority, name: &str, t: RecordType, dst: &str, prefix: u8) -> Vec<String> {
    let arrival = Some(Net {
        addr: dst.parse().unwrap(),
        prefix,
    });
    match a.lookup(&Name::from_ascii(name).unwrap(), t, arrival, 1000) {
        l @ Lookup::Local { .. } => local_of(&l).2,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn localise_queries_answers_the_address_on_the_asked_subnet() {
    let a = localised();
    // Asked at 198.18.1.1/24: only the address on that subnet.
    assert_eq!(
        at(&a, "multi.", A, "198.18.1.1", 24),
        vec!["multi. A 198.18.1.10 0"]
    );
    assert_eq!(
        at(&a, "multi.", A, "198.18.0.1", 24),
        vec!["multi. A 198.18.0.10 0"]
    );
    // A wider prefix takes in both.
    assert_eq!(at(&a, "multi.", A, "198.18.0.1", 16).len(), 2);
    // No address on the asked subnet: all of them.
    assert_eq!(at(&a, "far.", A, "198.18.0.1", 24).len(), 2);
    // IPv4 only, as dnsmasq: AAAA is untouched, and ANY keeps it.
    assert_eq!(
        at(&a, "multi.", AAAA, "198.18.0.1", 24),
        vec!["multi. AAAA 2001:db8::10 0"]
    );
    let any = at(&a, "multi.", ANY, "198.18.0.1", 24);
    assert!(
        any.contains(&"multi. A 198.18.0.10 0".to_string()),
        "{any:?}"
    );
    assert!(!any.iter().any(|r| r.contains("198.18.1.10")), "{any:?}");
    // Through a CNAME, the target's addresses are localised too.
    assert_eq!(
        at(&a, "to-multi.test.", A, "198.18.1.1", 24),
        vec!["to-multi.test. CNAME multi. 0", "multi. A 198.18.1.10 0"]
    );
    // Without an arrival (IPv6 queries) every address answers.
    assert_eq!(local_of(&q(&a, "multi.", A)).2.len(), 2);
}

#[test]
fn localise_queries_leaves_leases_and_the_unset_option_alone() {
    let mut a = localised();
    a.lease_changed(
        &lease("198.18.5.20", LeaseState::Bound, Some("dyn"), 5000),
        1000,
    );
    assert_eq!(
        at(&a, "dyn.", A, "198.18.0.1", 24),
        vec!["dyn. A 198.18.5.20 0"]
    );
    // The option off: the arrival changes nothing.
    let plain = Authority::new(
        &cfg(),
        &[(
            PathBuf::from("/tmp/hosts"),
            "198.18.0.10 multi\n198.18.1.10 multi\n".into(),
        )],
    );
    assert_eq!(at(&plain, "multi.", A, "198.18.1.1", 24).len(), 2);
}
