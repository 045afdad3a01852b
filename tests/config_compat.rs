//! The shipped example and a realistic dnsmasq.conf parse to what they say.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use twinmasq::config::{
    load, parse_conf_text, Config, DhcpOptionSpec, DomainScope, DomainServer, DomainSpec,
    DomainTarget, LeaseTime, LogFacility, MacPattern, OptionValue, TagMatch,
};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn load_file(rel: &str) -> Config {
    load(&["-C".to_string(), path(rel)]).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn mac(s: &str) -> MacPattern {
    MacPattern {
        htype: None,
        bytes: s
            .split(':')
            .map(|b| (b != "*").then(|| u8::from_str_radix(b, 16).unwrap()))
            .collect(),
    }
}

fn tag(name: &str) -> TagMatch {
    TagMatch {
        name: name.to_string(),
        negate: false,
    }
}

fn option(c: &Config, code: u8) -> &DhcpOptionSpec {
    c.dhcp_options
        .iter()
        .find(|o| o.code == code)
        .unwrap_or_else(|| panic!("no option {code}"))
}

#[test]
fn example_config() {
    let c = load_file("dnsmasq.conf.example");

    assert_eq!(c.interfaces, vec!["tmq0"]);
    assert!(c.bind_interfaces);
    assert!(c.authoritative);
    assert_eq!(c.lease_max, 200);
    assert_eq!(c.lease_db, PathBuf::from("/var/lib/twinmasq/leases.sled"));
    assert_eq!(
        c.lease_file,
        PathBuf::from("/var/lib/twinmasq/dnsmasq.leases")
    );
    assert_eq!(c.pid_file, PathBuf::from("/run/twinmasq.pid"));
    assert!(c.log_dhcp);
    assert_eq!(c.dns.port, 53);

    let lan = DomainSpec {
        name: "home.lan".into(),
        scope: DomainScope::Subnet {
            net: ip("198.18.0.0"),
            prefix: 24,
        },
    };
    assert_eq!(c.domains, vec![lan.clone()]);
    assert_eq!(c.local_domains, vec![lan]);

    assert_eq!(c.dhcp_ranges.len(), 1);
    let r = &c.dhcp_ranges[0];
    assert_eq!((r.start, r.end), (ip("198.18.0.50"), ip("198.18.0.150")));
    assert_eq!(r.netmask, Some(ip("255.255.255.0")));
    assert_eq!(r.lease_time, LeaseTime::Secs(12 * 3600));
    assert_eq!(r.set_tag.as_deref(), Some("lan"));
    assert!(!r.is_static);

    assert_eq!(
        option(&c, 3).value,
        OptionValue::Addresses(vec![ip("198.18.0.1")])
    );
    assert_eq!(
        option(&c, 6).value,
        OptionValue::Addresses(vec![ip("0.0.0.0")])
    );
    assert_eq!(
        option(&c, 42).value,
        OptionValue::Addresses(vec![ip("198.18.0.1")])
    );
    let mut search = vec![4];
    search.extend(b"home");
    search.push(3);
    search.extend(b"lan");
    search.push(0);
    assert_eq!(option(&c, 119).value, OptionValue::Bytes(search));
    let route = option(&c, 121);
    assert_eq!(route.match_tags, vec![tag("lan")]);
    assert_eq!(
        route.value,
        OptionValue::Bytes(vec![16, 198, 19, 198, 18, 0, 2, 0, 198, 18, 0, 1])
    );
    assert!(c.dhcp_options.iter().all(|o| !o.force));

    let h = &c.dhcp_hosts;
    assert_eq!(h.len(), 5);
    assert_eq!(h[0].macs, vec![mac("00:16:3e:12:34:56")]);
    assert_eq!(h[0].ip, Some(ip("198.18.0.10")));
    assert_eq!(h[0].hostname.as_deref(), Some("nas"));
    assert_eq!(h[0].lease_time, Some(LeaseTime::Infinite));
    assert_eq!(h[1].lease_time, Some(LeaseTime::Secs(86400)));
    assert_eq!(h[2].macs.len(), 2);
    assert_eq!(h[2].hostname.as_deref(), Some("laptop"));
    assert_eq!(
        h[3].client_ids,
        vec![vec![1, 0, 0x16, 0x3e, 0x77, 0x88, 0x99]]
    );
    assert!(h[3].macs.is_empty());
    assert!(h[4].ignore);
    assert_eq!(h[4].ip, None);
}

#[test]
fn example_stays_inside_the_test_network() {
    let c = load_file("dnsmasq.conf.example");
    let net = |a: Ipv4Addr| (u32::from(a) & 0xfffe_0000) == u32::from(ip("198.18.0.0"));
    for r in &c.dhcp_ranges {
        assert!(net(r.start) && net(r.end));
    }
    for h in &c.dhcp_hosts {
        assert!(h.ip.is_none_or(net));
    }
}

#[test]
fn realistic_dnsmasq_conf() {
    let c = load_file("tests/data/dnsmasq-realistic.conf");

    assert_eq!(c.interfaces, vec!["tmq0", "tmq1"]);
    assert_eq!(c.except_interfaces, vec!["tmq9"]);
    assert_eq!(c.listen_addresses, vec![ip("198.18.0.1"), ip("198.18.2.1")]);
    assert!(c.bind_interfaces && c.authoritative && c.rapid_commit && c.no_ping);
    assert!(!c.log_dhcp && !c.quiet_dhcp);
    assert_eq!(c.lease_max, 500);
    assert_eq!(c.log_facility, Some(LogFacility::Syslog("local5".into())));
    assert_eq!(c.user.as_deref(), Some("dnsmasq"));
    assert_eq!(c.group.as_deref(), Some("dnsmasq"));
    assert_eq!(
        c.lease_db,
        PathBuf::from(twinmasq::config::DEFAULT_LEASE_DB)
    );

    assert_eq!(
        c.domains,
        vec![
            DomainSpec {
                name: "office.example".into(),
                scope: DomainScope::All
            },
            DomainSpec {
                name: "guest.office.example".into(),
                scope: DomainScope::Subnet {
                    net: ip("198.18.2.0"),
                    prefix: 24
                }
            },
            DomainSpec {
                name: "printers.office.example".into(),
                scope: DomainScope::Range {
                    start: ip("198.18.0.240"),
                    end: ip("198.18.0.250")
                }
            },
        ]
    );
    assert!(c.local_domains.is_empty());

    // Three ranges here, one from conf-dir.
    let r = &c.dhcp_ranges;
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].broadcast, Some(ip("198.18.0.255")));
    assert_eq!(r[0].lease_time, LeaseTime::Secs(8 * 3600));
    assert!(r[1].is_static);
    assert_eq!(r[1].match_tags, vec![tag("office")]);
    assert_eq!(r[1].lease_time, LeaseTime::Secs(3600));
    assert_eq!(r[2].lease_time, LeaseTime::Secs(45 * 60));
    assert_eq!(r[2].set_tag.as_deref(), Some("guest"));
    assert_eq!(r[3].set_tag.as_deref(), Some("lab"));
    assert_eq!(r[3].start, ip("198.19.0.10"));

    let o = &c.dhcp_options;
    assert_eq!(o[0].code, 3);
    assert_eq!(
        o[1].value,
        OptionValue::Addresses(vec![ip("198.18.0.1"), ip("198.18.0.2")])
    );
    assert_eq!(o[2].match_tags, vec![tag("guest")]);
    assert_eq!(o[3].code, 42);
    assert_eq!(o[3].value, OptionValue::Empty);
    assert_eq!(o[4].code, 114);
    assert_eq!(
        o[4].value,
        OptionValue::Bytes(b"https://portal.office.example/".to_vec())
    );
    assert_eq!(
        o[5].match_tags,
        vec![TagMatch {
            name: "guest".into(),
            negate: true
        }]
    );
    assert_eq!(o[6].code, 119);
    let mtu = option(&c, 26);
    assert!(mtu.force);
    assert_eq!(mtu.value, OptionValue::Bytes(vec![0x05, 0xdc]));
    assert_eq!(
        option(&c, 58).value,
        OptionValue::Bytes((4u32 * 3600).to_be_bytes().to_vec())
    );
    assert_eq!(
        option(&c, 59).value,
        OptionValue::Bytes((7u32 * 3600).to_be_bytes().to_vec())
    );
    // From conf-dir, in name order.
    assert_eq!(o[o.len() - 2].match_tags, vec![tag("lab")]);
    assert_eq!(o[o.len() - 1].code, 66);
    assert_eq!(
        o[o.len() - 1].value,
        OptionValue::Bytes(b"tftp.office.example".to_vec())
    );

    let h = &c.dhcp_hosts;
    assert_eq!(h.len(), 7);
    assert_eq!(h[1].set_tags, vec!["printers".to_string()]);
    assert_eq!(h[1].hostname.as_deref(), Some("printer1"));
    assert_eq!(h[1].domain.as_deref(), Some("office.example"));
    assert_eq!(h[2].macs, vec![mac("52:54:00:aa:00:*")]);
    assert_eq!(h[2].set_tags, vec!["lab-vm".to_string()]);
    assert_eq!(h[3].client_ids, vec![b"ups-controller".to_vec()]);
    assert_eq!(h[3].lease_time, Some(LeaseTime::Secs(2 * 86400)));
    assert!(h[4].ignore_client_id);
    assert_eq!(h[4].lease_time, Some(LeaseTime::Infinite));
    assert!(h[5].ignore);
    assert_eq!(h[6].hostname.as_deref(), Some("phone-reception"));

    let d = &c.dns;
    assert!(d.domain_needed && d.bogus_priv && d.no_resolv && d.expand_hosts && d.log_queries);
    assert!(!d.no_hosts && !d.strict_order);
    assert_eq!(
        d.servers,
        vec!["198.18.0.53:53".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        d.domain_servers,
        vec![
            DomainServer {
                domains: vec!["corp.example".into()],
                target: DomainTarget::Upstream("198.18.9.1:5353".parse().unwrap()),
            },
            DomainServer {
                domains: vec!["home.lan".into()],
                target: DomainTarget::Local,
            },
        ]
    );
    assert_eq!(d.addresses.len(), 2);
    assert_eq!(d.addresses[0].domains, vec!["ads.example"]);
    assert!(d.addresses[0].addrs.is_empty());
    assert_eq!(
        d.addresses[1].domains,
        vec!["tracker.example", "doubleclick.example"]
    );
    assert_eq!(
        d.addresses[1].addrs,
        vec![
            IpAddr::from(Ipv4Addr::UNSPECIFIED),
            IpAddr::from(Ipv6Addr::UNSPECIFIED)
        ]
    );
    assert_eq!(d.cnames.len(), 1);
    assert_eq!(
        d.cnames[0].aliases,
        vec!["www.office.example", "intranet.office.example"]
    );
    assert_eq!(d.cnames[0].target, "fileserver.office.example");
    assert_eq!(d.mx[0].target.as_deref(), Some("mail.office.example"));
    assert_eq!(d.mx[0].preference, 10);
    assert_eq!(d.srv[0].port, 389);
    assert_eq!(d.txt[0].texts, vec!["v=spf1 mx -all"]);
    assert_eq!(d.host_records[0].names, vec!["gw", "gw.office.example"]);
    assert_eq!(
        d.host_records[0].addrs,
        vec![IpAddr::from(ip("198.18.0.1"))]
    );
    assert_eq!(d.cache_size, 1000);
}

#[test]
fn command_line_overrides_the_files() {
    let c = load(&[
        "-C".to_string(),
        path("dnsmasq.conf.example"),
        "--port=5353".to_string(),
        "-X".to_string(),
        "50".to_string(),
        "-dk".to_string(),
        "--test".to_string(),
    ])
    .unwrap();
    assert_eq!(c.dns.port, 5353);
    assert_eq!(c.lease_max, 50);
    assert!(c.no_daemon && c.keep_in_foreground && c.test_only);
}

#[test]
fn unsupported_dnsmasq_options_are_named() {
    let e = parse_conf_text("port=53\n\nsynth-domain=home.lan\n", "/etc/dnsmasq.conf").unwrap_err();
    assert_eq!(
        e.to_string(),
        "option 'synth-domain' (line 3 of /etc/dnsmasq.conf) is not supported by twinmasq yet"
    );
}

/// `--version`/`-v` and `--help`/`-w` answer at once, as dnsmasq's do,
/// even when the conf file named beside them would not load.
#[test]
fn version_and_help_answer_before_any_config_is_read() {
    let bin = env!("CARGO_BIN_EXE_twinmasq");
    for args in [
        vec!["--version"],
        vec!["-v"],
        vec!["-C", "/nonexistent/x.conf", "-v"],
    ] {
        let out = std::process::Command::new(bin)
            .args(&args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(text.starts_with("twinmasq version "), "{args:?}: {text}");
        assert!(text.contains("Compile time options: IPv6"), "{text}");
    }
    for flag in ["--help", "-w"] {
        let out = std::process::Command::new(bin).arg(flag).output().unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: twinmasq"));
    }
}
