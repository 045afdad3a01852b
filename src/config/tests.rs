//! Whole-config tests: options through conf text, files, conf-dirs and the
//! command line, and the exact error messages.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn conf(text: &str) -> Config {
    parse_conf_text(text, "/etc/dnsmasq.conf").unwrap()
}

fn err(text: &str) -> String {
    parse_conf_text(text, "/etc/dnsmasq.conf")
        .unwrap_err()
        .to_string()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn defaults() {
    let c = conf("");
    assert_eq!(c, Config::default());
    assert_eq!(c.lease_max, 1000);
    assert_eq!(c.dns.port, 53);
}

#[test]
fn every_simple_option() {
    let c = conf(
        "interface=tmq0,tmq1\n\
         interface=tmq2\n\
         except-interface=lo\n\
         listen-address=198.18.0.1,127.0.0.1\n\
         bind-interfaces\n\
         dhcp-authoritative\n\
         dhcp-lease-max=250\n\
         dhcp-leasefile=/var/lib/twinmasq/dnsmasq.leases\n\
         no-ping\n\
         dhcp-rapid-commit\n\
         log-dhcp\n\
         quiet-dhcp\n\
         log-facility=local3\n\
         keep-in-foreground\n\
         no-daemon\n\
         pid-file=/run/twinmasq.pid\n\
         user=dnsmasq\n\
         group=dnsmasq\n\
         port=5353\n\
         lease-db=/var/lib/twinmasq/db\n",
    );
    assert_eq!(c.interfaces, vec!["tmq0", "tmq1", "tmq2"]);
    assert_eq!(c.except_interfaces, vec!["lo"]);
    assert_eq!(c.listen_addresses, vec![ip("198.18.0.1"), ip("127.0.0.1")]);
    assert!(c.bind_interfaces && c.authoritative && c.no_ping && c.rapid_commit);
    assert!(c.log_dhcp && c.quiet_dhcp && c.keep_in_foreground && c.no_daemon);
    assert_eq!(c.lease_max, 250);
    assert_eq!(
        c.lease_file,
        PathBuf::from("/var/lib/twinmasq/dnsmasq.leases")
    );
    assert_eq!(c.log_facility, Some(LogFacility::Syslog("local3".into())));
    assert_eq!(c.pid_file, PathBuf::from("/run/twinmasq.pid"));
    assert_eq!(c.user.as_deref(), Some("dnsmasq"));
    assert_eq!(c.group.as_deref(), Some("dnsmasq"));
    assert_eq!(c.dns.port, 5353);
    assert_eq!(c.lease_db, PathBuf::from("/var/lib/twinmasq/db"));
    assert!(!c.test_only);
}

#[test]
fn aliases() {
    assert_eq!(conf("dhcp-lease=/x").lease_file, PathBuf::from("/x"));
    assert_eq!(conf("domain-suffix=home.lan").domains[0].name, "home.lan");
}

#[test]
fn log_facility_forms() {
    assert_eq!(
        conf("log-facility=-").log_facility,
        Some(LogFacility::Stderr)
    );
    assert_eq!(
        conf("log-facility=/var/log/twinmasq.log").log_facility,
        Some(LogFacility::File("/var/log/twinmasq.log".into()))
    );
    assert_eq!(
        conf("log-facility=DAEMON").log_facility,
        Some(LogFacility::Syslog("daemon".into()))
    );
    assert_eq!(
        err("log-facility=nowhere"),
        "bad log-facility at line 1 of /etc/dnsmasq.conf: 'nowhere' is neither a syslog facility nor a file path"
    );
}

#[test]
fn port_zero_disables_dns() {
    assert_eq!(conf("port=0").dns.port, 0);
}

#[test]
fn domains_and_local() {
    let c = conf(
        "domain=old.lan\n\
         domain=home.lan\n\
         domain=lab.home.lan,198.18.4.0/24,local\n\
         domain=guest.home.lan,198.18.0.200,198.18.0.250\n",
    );
    assert_eq!(c.domains.len(), 3);
    assert_eq!(
        c.domains[0],
        DomainSpec {
            name: "home.lan".into(),
            scope: DomainScope::All
        }
    );
    assert_eq!(c.local_domains.len(), 1);
    assert_eq!(c.local_domains[0].name, "lab.home.lan");
}

#[test]
fn dhcp_lines_reach_the_config() {
    let c = conf(
        "dhcp-range=set:lan,198.18.0.50,198.18.0.150,255.255.255.0,12h\n\
         dhcp-host=00:11:22:33:44:55,198.18.0.10,nas\n\
         dhcp-option=option:router,198.18.0.1\n\
         dhcp-option-force=tag:lan,option:mtu,1500\n",
    );
    assert_eq!(c.dhcp_ranges[0].set_tag.as_deref(), Some("lan"));
    assert_eq!(c.dhcp_ranges[0].lease_time, LeaseTime::Secs(43200));
    assert_eq!(c.dhcp_hosts[0].hostname.as_deref(), Some("nas"));
    assert_eq!(c.dhcp_options.len(), 2);
    assert!(!c.dhcp_options[0].force);
    assert!(c.dhcp_options[1].force);
    assert_eq!(c.dhcp_options[1].value, OptionValue::Bytes(vec![5, 0xdc]));
}

#[test]
fn dhcp_name_match_and_ignore_names_as_openwrt_writes_them() {
    let c = conf(
        "dhcp-name-match=set:dhcp_bogus_hostname,localhost\n\
         dhcp-name-match=set:dhcp_bogus_hostname,wpad\n\
         dhcp-name-match=printers,PRN*\n\
         dhcp-ignore-names=tag:dhcp_bogus_hostname\n\
         dhcp-ignore-names=guest,tag:!known\n\
         dhcp-ignore-names\n",
    );
    let m = |tag: &str, name: &str, prefix: bool| NameMatch {
        set_tag: tag.into(),
        name: name.into(),
        prefix,
    };
    assert_eq!(
        c.dhcp_name_matches,
        vec![
            m("dhcp_bogus_hostname", "localhost", false),
            m("dhcp_bogus_hostname", "wpad", false),
            m("printers", "PRN", true),
        ]
    );
    let t = |name: &str, negate: bool| TagMatch {
        name: name.into(),
        negate,
    };
    assert_eq!(
        c.dhcp_ignore_names,
        vec![
            vec![t("dhcp_bogus_hostname", false)],
            vec![t("guest", false), t("known", true)],
            vec![],
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let c = load_with_default(
        &args(&["--dhcp-ignore-names", "--dhcp-name-match=set:x,wpad"]),
        &dir.path().join("absent.conf"),
    )
    .unwrap();
    assert_eq!(c.dhcp_ignore_names, vec![Vec::<TagMatch>::new()]);
    assert_eq!(c.dhcp_name_matches, vec![m("x", "wpad", false)]);
    assert_eq!(
        err("dhcp-name-match=set:x"),
        "bad dhcp-name-match at line 1 of /etc/dnsmasq.conf: expected a tag and a name"
    );
    assert_eq!(
        err("dhcp-name-match=set:x,wpad.lan"),
        "dhcp-name-match at line 1 of /etc/dnsmasq.conf: a name with a domain ('.') is not supported by twinmasq yet"
    );
    assert_eq!(
        err("dhcp-ignore-names=tag:"),
        "bad dhcp-ignore-names at line 1 of /etc/dnsmasq.conf: empty tag name"
    );
}

#[test]
fn quoted_values() {
    // Quoted digits are text, not a number or an address.
    let c = conf("dhcp-option=224,\"1.2.3.4\"\ndhcp-option=225,\"a,b\"");
    assert_eq!(
        c.dhcp_options[0].value,
        OptionValue::Bytes(b"1.2.3.4".to_vec())
    );
    assert_eq!(c.dhcp_options[1].value, OptionValue::Bytes(b"a,b".to_vec()));
    let c = conf("dhcp-host=00:11:22:33:44:55,\"nas\"");
    assert_eq!(c.dhcp_hosts[0].hostname.as_deref(), Some("nas"));
    assert_eq!(conf("port=\"5353\"").dns.port, 5353);
}

#[test]
fn error_messages_name_file_line_and_option() {
    assert_eq!(
        err("# comment\n\ndnssec"),
        "option 'dnssec' (line 3 of /etc/dnsmasq.conf) is not supported by twinmasq yet"
    );
    assert_eq!(
        err("foo=1"),
        "unknown option 'foo' at line 1 of /etc/dnsmasq.conf"
    );
    assert_eq!(
        err("\n\n\n\n\n\n\n\n\n\n\ndhcp-range=192.168.1.50,192.168.1.10"),
        "bad dhcp-range at line 12 of /etc/dnsmasq.conf: end address 192.168.1.10 is before start 192.168.1.50"
    );
    assert_eq!(
        err("dhcp-range=198.18.0.0,proxy"),
        "dhcp-range at line 1 of /etc/dnsmasq.conf: proxy mode is not supported by twinmasq yet"
    );
    assert_eq!(
        err("dhcp-option=encap:175,1,1"),
        "dhcp-option at line 1 of /etc/dnsmasq.conf: encap: (encapsulated options) is not supported by twinmasq yet"
    );
    assert_eq!(
        err("dhcp-option-force=vendor:MSFT,2,1i"),
        "dhcp-option-force at line 1 of /etc/dnsmasq.conf: vendor: (options for a vendor class) is not supported by twinmasq yet"
    );
    assert_eq!(
        err("dhcp-host=00:11:22:33:44:55,198.18.0.10\ndhcp-host=00:11:22:33:44:66,198.18.0.10"),
        "bad dhcp-host at line 2 of /etc/dnsmasq.conf: duplicate dhcp-host IP address 198.18.0.10"
    );
    assert_eq!(
        err(&format!("dhcp-host=00:11:22:33:44:55,{}", "a".repeat(64))),
        format!(
            "bad dhcp-host at line 1 of /etc/dnsmasq.conf: bad hostname: label '{}' is 64 characters long, more than 63",
            "a".repeat(64)
        )
    );
    assert_eq!(
        err("dhcp-option=option:router,banana"),
        "bad dhcp-option at line 1 of /etc/dnsmasq.conf: option 3 takes IPv4 addresses, not 'banana'"
    );
    assert_eq!(
        err(&format!("dhcp-option=224,{}", "x".repeat(300))),
        "bad dhcp-option at line 1 of /etc/dnsmasq.conf: option 224 data is 300 bytes long, more than the 255 an option can hold"
    );
    assert_eq!(
        err("domain=bad..lan"),
        "bad domain at line 1 of /etc/dnsmasq.conf: 'bad..lan' has an empty label"
    );
    assert_eq!(
        err("port"),
        "option 'port' at line 1 of /etc/dnsmasq.conf needs a value"
    );
    assert_eq!(
        err("port=99999"),
        "bad port at line 1 of /etc/dnsmasq.conf: '99999' is not a port number"
    );
    assert_eq!(
        err("dhcp-lease-max=lots"),
        "bad dhcp-lease-max at line 1 of /etc/dnsmasq.conf: 'lots' is not a number"
    );
    assert_eq!(
        err("no-ping=yes"),
        "option 'no-ping' at line 1 of /etc/dnsmasq.conf takes no value (got 'yes')"
    );
    assert_eq!(
        err("port=53\nport=5353"),
        "option 'port' at line 2 of /etc/dnsmasq.conf is given more than once"
    );
    assert_eq!(
        err("test"),
        "option 'test' at line 1 of /etc/dnsmasq.conf is only valid on the command line"
    );
    assert_eq!(
        err("pid-file"),
        "pid-file at line 1 of /etc/dnsmasq.conf: giving it without a value is not supported by twinmasq yet"
    );
    assert_eq!(
        err("interface=a/b"),
        "bad interface at line 1 of /etc/dnsmasq.conf: interface name 'a/b' contains '/'"
    );
    assert_eq!(
        err("listen-address=localhost"),
        "bad listen-address at line 1 of /etc/dnsmasq.conf: 'localhost' is not an IP address"
    );
    assert_eq!(
        err("no-poll\nresolv-file=/run/a\nresolv-file=/run/b"),
        "only one resolv.conf file allowed in no-poll mode."
    );
    assert_eq!(
        err("dhcp-option=252,\"unterminated"),
        "syntax error at line 1 of /etc/dnsmasq.conf: missing closing \""
    );
    assert_eq!(
        err("conf-file=/nonexistent/twinmasq/x.conf"),
        "cannot read /nonexistent/twinmasq/x.conf (conf-file at line 1 of /etc/dnsmasq.conf): No such file or directory (os error 2)"
    );
    assert_eq!(
        err("conf-dir=/nonexistent/twinmasq.d"),
        "cannot read /nonexistent/twinmasq.d (conf-dir at line 1 of /etc/dnsmasq.conf): No such file or directory (os error 2)"
    );
}

#[test]
fn every_dnsmasq_option_is_known() {
    for d in table::OPTIONS {
        if d.opt == table::Opt::Unsupported {
            let e = err(&format!("{}=1", d.name));
            assert!(e.contains("is not supported by twinmasq yet"), "{e}");
            assert!(e.contains(d.name), "{e}");
        }
    }
}

#[test]
fn nested_conf_file_errors_name_the_inner_file() {
    let dir = tempfile::tempdir().unwrap();
    let inner = write(dir.path(), "inner.conf", "port=5353\n\nbogus-option\n");
    let e = err(&format!("conf-file={}", inner.display()));
    assert_eq!(
        e,
        format!(
            "unknown option 'bogus-option' at line 3 of {}",
            inner.display()
        )
    );
}

#[test]
fn nested_conf_files_and_loops() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.conf");
    let b = dir.path().join("b.conf");
    fs::write(&a, format!("interface=a0\nconf-file={}\n", b.display())).unwrap();
    fs::write(&b, format!("interface=b0\nconf-file={}\n", a.display())).unwrap();
    let c = conf(&format!("conf-file={}", a.display()));
    assert_eq!(c.interfaces, vec!["a0", "b0"]);
}

#[test]
fn conf_dir_reads_sorted_and_skips_backups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "20-b.conf", "interface=b\n");
    write(d, "10-a.conf", "interface=a\n");
    write(d, "30-c.conf~", "interface=backup\n");
    write(d, ".hidden.conf", "interface=hidden\n");
    write(d, "#autosave#", "interface=autosave\n");
    write(d, "40-d.bak", "interface=d\n");
    fs::create_dir(d.join("50-subdir.conf")).unwrap();

    let c = conf(&format!("conf-dir={}", d.display()));
    assert_eq!(c.interfaces, vec!["a", "b", "d"]);

    let c = conf(&format!("conf-dir={},.bak", d.display()));
    assert_eq!(c.interfaces, vec!["a", "b"]);

    let c = conf(&format!("conf-dir={},*.conf", d.display()));
    assert_eq!(c.interfaces, vec!["a", "b"]);

    let c = conf(&format!("conf-dir={},*.bak", d.display()));
    assert_eq!(c.interfaces, vec!["d"]);

    let c = conf(&format!("conf-dir={},*.conf,*.bak,b.conf", d.display()));
    assert_eq!(c.interfaces, vec!["a", "d"]);
}

#[test]
fn load_reads_default_then_command_line_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let default = write(
        dir.path(),
        "dnsmasq.conf",
        "port=5353\ninterface=tmq0\nuser=dnsmasq\n",
    );
    let c = load_with_default(
        &args(&["-p", "5300", "-i", "tmq1", "--test", "-dk"]),
        &default,
    )
    .unwrap();
    assert_eq!(c.dns.port, 5300);
    assert_eq!(c.interfaces, vec!["tmq0", "tmq1"]);
    assert_eq!(c.user.as_deref(), Some("dnsmasq"));
    assert!(c.test_only && c.no_daemon && c.keep_in_foreground);

    // A missing default file is fine.
    let c = load_with_default(&args(&[]), &dir.path().join("absent.conf")).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn conf_file_on_command_line_replaces_default() {
    let dir = tempfile::tempdir().unwrap();
    let default = write(dir.path(), "dnsmasq.conf", "interface=default\n");
    let mine = write(dir.path(), "mine.conf", "interface=mine\n");
    let other = write(dir.path(), "other.conf", "interface=other\n");
    let c = load_with_default(&args(&["-C", mine.to_str().unwrap()]), &default).unwrap();
    assert_eq!(c.interfaces, vec!["mine"]);
    let joined = format!("-C{}", mine.display());
    let c = load_with_default(
        &args(&[&joined, &format!("--conf-file={}", other.display())]),
        &default,
    )
    .unwrap();
    assert_eq!(c.interfaces, vec!["mine", "other"]);

    let missing = dir.path().join("missing.conf");
    let e = load_with_default(&args(&["-C", missing.to_str().unwrap()]), &default).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read {} (conf-file on the command line): No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn command_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.conf");
    let e = |a: &[&str]| {
        load_with_default(&args(a), &absent)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        e(&["--dnssec"]),
        "option 'dnssec' (on the command line) is not supported by twinmasq yet"
    );
    assert_eq!(
        e(&["-f"]),
        "option 'filterwin2k' (on the command line) is not supported by twinmasq yet"
    );
    assert_eq!(
        e(&["--dhcp-range=198.18.0.9,198.18.0.1"]),
        "bad dhcp-range on the command line: end address 198.18.0.1 is before start 198.18.0.9"
    );
    assert_eq!(
        e(&["-p", "1", "--port=2"]),
        "option 'port' on the command line is given more than once"
    );
    assert_eq!(
        e(&["--no-daemon=1"]),
        "option 'no-daemon' on the command line takes no value (got '1')"
    );
    // Command-line mistakes come before reading any file.
    assert!(e(&["-C", "/nonexistent/x.conf", "--dnssec"]).contains("dnssec"));
}

#[test]
fn command_line_all_dhcp_forms() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.conf");
    let c = load_with_default(
        &args(&[
            "-F",
            "198.18.0.50,198.18.0.150,2h",
            "-G00:11:22:33:44:55,198.18.0.10",
            "-O",
            "option:dns-server,0.0.0.0",
            "-K",
            "-X",
            "50",
            "-l",
            "/tmp/leases",
            "-s",
            "home.lan",
            "-I",
            "lo",
            "-a",
            "198.18.0.1",
            "-z",
            "-8",
            "-",
            "-x",
            "/tmp/pid",
            "-u",
            "nobody",
            "-g",
            "nogroup",
            "--lease-db",
            "/tmp/db",
            "--dhcp-option-force=option:T1,30m",
        ]),
        &absent,
    )
    .unwrap();
    assert_eq!(c.dhcp_ranges[0].lease_time, LeaseTime::Secs(7200));
    assert_eq!(c.dhcp_hosts[0].ip, Some(ip("198.18.0.10")));
    assert_eq!(
        c.dhcp_options[0].value,
        OptionValue::Addresses(vec![ip("0.0.0.0")])
    );
    assert!(c.dhcp_options[1].force);
    assert!(c.authoritative && c.bind_interfaces);
    assert_eq!(c.lease_max, 50);
    assert_eq!(c.lease_file, PathBuf::from("/tmp/leases"));
    assert_eq!(c.domains[0].name, "home.lan");
    assert_eq!(c.except_interfaces, vec!["lo"]);
    assert_eq!(c.listen_addresses, vec![ip("198.18.0.1")]);
    assert_eq!(c.log_facility, Some(LogFacility::Stderr));
    assert_eq!(c.pid_file, PathBuf::from("/tmp/pid"));
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert_eq!(c.group.as_deref(), Some("nogroup"));
    assert_eq!(c.lease_db, PathBuf::from("/tmp/db"));
}

fn sock(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

#[test]
fn dns_options_reach_the_config() {
    let c = conf(
        "no-hosts\n\
         addn-hosts=/etc/hosts.d\n\
         addn-hosts=/etc/banner.hosts\n\
         expand-hosts\n\
         no-resolv\n\
         resolv-file=/run/resolv.upstream\n\
         server=198.18.0.53\n\
         server=::1#5353\n\
         server=/corp.example/198.18.9.1#5300\n\
         server=//198.18.0.54\n\
         server=/cdn.example/#\n\
         local=/home.lan/\n\
         address=/ads.example/\n\
         address=/tracker.example/#\n\
         address=/nas.example/198.18.0.10\n\
         rev-server=198.18.0.0/16,198.18.9.1\n\
         cname=www.home.lan,nas.home.lan\n\
         mx-host=home.lan,mail.home.lan,5\n\
         srv-host=_ldap._tcp.home.lan,ldap.home.lan,389\n\
         txt-record=home.lan,\"v=spf1 a, mx -all\"\n\
         ptr-record=10.0.18.198.in-addr.arpa,nas.home.lan\n\
         host-record=printer,printer.home.lan,198.18.0.20,fd00::20\n\
         domain-needed\n\
         bogus-priv\n\
         stop-dns-rebind\n\
         rebind-localhost-ok\n\
         rebind-domain-ok=/plex.direct/\n\
         rebind-domain-ok=local.example\n\
         strict-order\n\
         all-servers\n\
         cache-size=1000\n\
         no-negcache\n\
         min-cache-ttl=60\n\
         max-cache-ttl=86400\n\
         local-ttl=5\n\
         dns-forward-max=300\n\
         log-queries\n\
         local-service\n\
         bind-interfaces\n",
    );
    let d = &c.dns;
    assert!(d.no_hosts && d.expand_hosts && d.no_resolv);
    assert_eq!(
        d.addn_hosts,
        vec![
            PathBuf::from("/etc/hosts.d"),
            PathBuf::from("/etc/banner.hosts")
        ]
    );
    assert_eq!(d.resolv_files, vec![PathBuf::from("/run/resolv.upstream")]);
    assert_eq!(d.servers, vec![sock("198.18.0.53:53"), sock("[::1]:5353")]);
    assert_eq!(
        d.domain_servers,
        vec![
            DomainServer {
                domains: vec!["corp.example".into()],
                target: DomainTarget::Upstream(sock("198.18.9.1:5300")),
            },
            DomainServer {
                domains: vec!["".into()],
                target: DomainTarget::Upstream(sock("198.18.0.54:53")),
            },
            DomainServer {
                domains: vec!["cdn.example".into()],
                target: DomainTarget::UseDefault,
            },
            DomainServer {
                domains: vec!["home.lan".into()],
                target: DomainTarget::Local,
            },
        ]
    );
    assert_eq!(d.addresses.len(), 3);
    assert!(d.addresses[0].addrs.is_empty());
    assert_eq!(d.addresses[1].addrs.len(), 2);
    assert_eq!(
        d.addresses[2].addrs,
        vec!["198.18.0.10".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(d.rev_servers[0].prefix, 16);
    assert_eq!(d.cnames[0].aliases, vec!["www.home.lan"]);
    assert_eq!(d.mx[0].preference, 5);
    assert_eq!(d.srv[0].port, 389);
    assert_eq!(d.txt[0].texts, vec!["v=spf1 a, mx -all"]);
    assert_eq!(d.ptr[0].target.as_deref(), Some("nas.home.lan"));
    assert_eq!(d.host_records[0].names, vec!["printer", "printer.home.lan"]);
    assert_eq!(d.host_records[0].addrs.len(), 2);
    assert!(d.domain_needed && d.bogus_priv && d.stop_dns_rebind && d.rebind_localhost_ok);
    assert_eq!(d.rebind_domain_ok, vec!["plex.direct", "local.example"]);
    assert!(d.strict_order && d.all_servers && d.no_negcache);
    assert_eq!(d.cache_size, 1000);
    assert_eq!(d.min_cache_ttl, 60);
    assert_eq!(d.max_cache_ttl, Some(86400));
    assert_eq!(d.local_ttl, 5);
    assert_eq!(d.dns_forward_max, 300);
    assert!(d.log_queries && d.local_service && c.bind_interfaces);
}

#[test]
fn auth_options_reach_the_config() {
    let c = conf(
        "auth-server=ns1.home.lan,eth0,198.18.0.1\n\
         auth-zone=home.lan,198.18.0.0/24,exclude:198.18.0.9\n\
         auth-zone=lab.example\n\
         auth-soa=100,admin@home.lan,600,60,86400\n\
         auth-sec-servers=ns2.example.net\n\
         auth-sec-servers=ns3.example.net\n\
         auth-peer=198.18.0.53\n\
         auth-peer=198.18.0.54,198.18.0.55\n\
         auth-ttl=300\n",
    );
    let a = &c.dns.auth;
    assert_eq!(a.zones.len(), 2);
    assert_eq!(a.zones[0].domain, "home.lan");
    assert_eq!(a.zones[0].excludes.len(), 1);
    let s = a.server.as_ref().unwrap();
    assert_eq!(s.name, "ns1.home.lan");
    assert_eq!(s.interfaces, vec![("eth0".to_string(), IfFamily::Any)]);
    assert_eq!(a.serial, Some(100));
    assert_eq!(a.hostmaster.as_deref(), Some("admin.home.lan"));
    assert_eq!((a.refresh, a.retry, a.expiry, a.ttl), (600, 60, 86400, 300));
    assert_eq!(a.sec_servers, vec!["ns2.example.net", "ns3.example.net"]);
    assert_eq!(a.peers.len(), 3);
    assert_eq!(conf("").dns.auth, AuthConfig::default());
    let f = "/etc/dnsmasq.conf";
    assert_eq!(
        err("auth-zone=home.lan"),
        "--auth-server required when an auth zone is defined."
    );
    assert_eq!(
        err("auth-server=a\nauth-server=b"),
        format!("option 'auth-server' at line 2 of {f} is given more than once")
    );
    assert_eq!(
        err("auth-soa=1\nauth-soa=2"),
        format!("option 'auth-soa' at line 2 of {f} is given more than once")
    );
    assert_eq!(
        err("auth-ttl=x"),
        format!("bad auth-ttl at line 1 of {f}: 'x' is not a number")
    );
    assert_eq!(
        err("auth-server=ns1,fd00::1"),
        format!("auth-server at line 1 of {f}: the IPv6 auth-server address 'fd00::1' (authoritative service over IPv6) is not supported by twinmasq yet")
    );
}

#[test]
fn dns_defaults() {
    let d = conf("").dns;
    assert_eq!(d.resolv_files, vec![PathBuf::from("/etc/resolv.conf")]);
    assert_eq!(d.cache_size, 150);
    assert_eq!(d.dns_forward_max, 150);
    assert!(!d.log_queries && !d.local_service && !d.expand_hosts);
}

#[test]
fn resolv_file_replaces_the_default_then_adds() {
    let d = conf("resolv-file=/a\nresolv-file=/b").dns;
    assert_eq!(
        d.resolv_files,
        vec![PathBuf::from("/a"), PathBuf::from("/b")]
    );
    // A bare resolv-file means none at all...
    assert!(conf("resolv-file").dns.resolv_files.is_empty());
    assert_eq!(
        conf("resolv-file\nresolv-file=/a").dns.resolv_files,
        vec![PathBuf::from("/a")]
    );
    // ...but only in place of the default.
    assert_eq!(
        conf("resolv-file=/a\nresolv-file").dns.resolv_files,
        vec![PathBuf::from("/a")]
    );
}

#[test]
fn dns_optional_values() {
    assert!(conf("log-queries=extra").dns.log_queries);
    assert!(conf("log-queries=proto").dns.log_queries);
    assert!(conf("local-service=net").dns.local_service);
    // dnsmasq never lets min-cache-ttl go above an hour.
    assert_eq!(conf("min-cache-ttl=7200").dns.min_cache_ttl, 3600);
    assert_eq!(conf("cache-size=0").dns.cache_size, 0);
    // server and local are one option.
    assert_eq!(conf("local=/x.lan/").dns, conf("server=/x.lan/").dns);
}

#[test]
fn edns_packet_max_and_max_tcp_connections() {
    // dnsmasq 2.90's defaults: 1232 bytes, 20 connections.
    let d = conf("").dns;
    assert_eq!((d.edns_packet_max, d.max_tcp_connections), (1232, 20));
    assert_eq!(conf("edns-packet-max=4096").dns.edns_packet_max, 4096);
    // Below plain DNS's 512 is raised to it, as dnsmasq does.
    assert_eq!(conf("edns-packet-max=100").dns.edns_packet_max, 512);
    assert!(err("edns-packet-max=70000").contains("edns-packet-max"));
    assert!(err("edns-packet-max=big").contains("not a number"));
    assert_eq!(conf("max-tcp-connections=3").dns.max_tcp_connections, 3);
    let dir = tempfile::tempdir().unwrap();
    let c = load_with_default(&args(&["-P", "2048"]), &dir.path().join("absent.conf")).unwrap();
    assert_eq!(c.dns.edns_packet_max, 2048);
}

#[test]
fn query_port_and_the_source_port_range() {
    // dnsmasq 2.90: no query-port means a random port per query; the
    // kernel's ephemeral range unless min-port/max-port say otherwise.
    let d = conf("").dns;
    assert_eq!((d.query_port, d.port_range), (None, None));
    assert_eq!(conf("query-port=5353").dns.query_port, Some(5353));
    // 0: one port the OS picks, for every query.
    assert_eq!(conf("query-port=0").dns.query_port, Some(0));
    assert_eq!(
        conf("min-port=20000\nmax-port=30000").dns.port_range,
        Some((20000, 30000))
    );
    // One end alone takes the other from dnsmasq's MIN_PORT/MAX_PORT.
    assert_eq!(conf("min-port=40000").dns.port_range, Some((40000, 65535)));
    assert_eq!(conf("max-port=2000").dns.port_range, Some((1024, 2000)));
    assert_eq!(
        conf("min-port=5000\nmax-port=5000").dns.port_range,
        Some((5000, 5000))
    );
    // dnsmasq's own message.
    assert_eq!(
        err("min-port=30000\nmax-port=20000"),
        "max_port cannot be smaller than min_port"
    );
    assert_eq!(
        err("max-port=1000"),
        "max_port cannot be smaller than min_port"
    );
    for bad in [
        "query-port=65536",
        "min-port=-1",
        "max-port=big",
        "query-port=",
    ] {
        let e = err(bad);
        assert!(e.contains("port"), "{bad}: {e}");
    }
    // Given once, as in dnsmasq.
    assert!(err("query-port=1\nquery-port=2").contains("query-port"));
    let dir = tempfile::tempdir().unwrap();
    let c = load_with_default(
        &args(&["-Q", "5353", "--min-port=1500", "--max-port=1600"]),
        &dir.path().join("absent.conf"),
    )
    .unwrap();
    assert_eq!(c.dns.query_port, Some(5353));
    assert_eq!(c.dns.port_range, Some((1500, 1600)));
}

#[test]
fn dns_error_messages() {
    let f = "/etc/dnsmasq.conf";
    assert_eq!(
        err("\n\n\nserver=dns.example"),
        format!("bad server at line 4 of {f}: 'dns.example' is not an IP address")
    );
    assert_eq!(
        err("server=198.18.0.53@eth0"),
        format!("server at line 1 of {f}: a source address or interface for the server (@...) is not supported by twinmasq yet")
    );
    assert_eq!(
        err("local=/x.lan/198.18.0.1@198.18.0.2"),
        format!("local at line 1 of {f}: a source address or interface for the server (@...) is not supported by twinmasq yet")
    );
    assert_eq!(
        err("server=198.18.0.53#99999"),
        format!("bad server at line 1 of {f}: '99999' is not a port number")
    );
    assert_eq!(
        err(&format!("address=/{}.lan/", "a".repeat(64))),
        format!(
            "bad address at line 1 of {f}: label '{}' is 64 characters long, more than 63",
            "a".repeat(64)
        )
    );
    assert_eq!(
        err("address=/#/0.0.0.0"),
        format!("address at line 1 of {f}: the domain '#' (every domain) is not supported by twinmasq yet")
    );
    assert_eq!(
        err("cname=a.lan,b.lan\ncname=a.lan,c.lan"),
        format!("bad cname at line 2 of {f}: duplicate CNAME 'a.lan'")
    );
    assert_eq!(
        err("mx-host=home.lan,mail,x"),
        format!("bad mx-host at line 1 of {f}: bad MX preference 'x'")
    );
    assert_eq!(
        err("srv-host=_a._tcp.x,t,70000"),
        format!("bad srv-host at line 1 of {f}: bad SRV port '70000'")
    );
    assert_eq!(
        err("txt-record=bad name,x"),
        format!("bad txt-record at line 1 of {f}: 'bad name' contains the character ' '")
    );
    assert_eq!(
        err("ptr-record=a,b,c"),
        format!("bad ptr-record at line 1 of {f}: too many fields")
    );
    assert_eq!(
        err("host-record=nas"),
        format!("bad host-record at line 1 of {f}: needs an IPv4 or IPv6 address")
    );
    assert_eq!(
        err("rev-server=198.18.0.0/40"),
        format!("bad rev-server at line 1 of {f}: bad prefix length '40'")
    );
    assert_eq!(
        err("rebind-domain-ok=//"),
        format!("bad rebind-domain-ok at line 1 of {f}: needs a domain")
    );
    assert_eq!(
        err("cache-size=lots"),
        format!("bad cache-size at line 1 of {f}: 'lots' is not a number")
    );
    assert_eq!(
        err("cache-size"),
        format!("option 'cache-size' at line 1 of {f} needs a value")
    );
    assert_eq!(
        err("log-queries=all"),
        format!(
            "bad log-queries at line 1 of {f}: 'all' is not a log-queries form (extra or proto)"
        )
    );
    assert_eq!(
        err("local-service=host"),
        format!("local-service at line 1 of {f}: local-service=host (answering this host only) is not supported by twinmasq yet")
    );
    assert_eq!(
        err("domain-needed=yes"),
        format!("option 'domain-needed' at line 1 of {f} takes no value (got 'yes')")
    );
    assert_eq!(
        err("addn-hosts="),
        format!("bad addn-hosts at line 1 of {f}: empty path")
    );
    for unsupported in [
        "dnssec",
        "synth-domain=x,198.18.0.0/24",
        "ipset=/x/s",
        "nftset=/x/s",
        "conntrack",
        "filterwin2k",
    ] {
        assert!(
            err(unsupported).contains("is not supported by twinmasq yet"),
            "{unsupported}"
        );
    }
}

#[test]
fn dns_options_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.conf");
    let c = load_with_default(
        &args(&[
            "-S",
            "198.18.0.53",
            "--server=/home.lan/",
            "-A",
            "/ads.example/",
            "-D",
            "-b",
            "-o",
            "-c",
            "500",
            "-q",
            "-E",
            "-H",
            "/etc/more.hosts",
            "-T",
            "10",
            "-N",
            "-r",
            "/run/r.conf",
            "-m",
            "home.lan",
            "-W",
            "_x._tcp.home.lan",
            "-Y",
            "home.lan,hi",
            "-0",
            "20",
        ]),
        &absent,
    )
    .unwrap();
    let d = &c.dns;
    assert_eq!(d.servers, vec![sock("198.18.0.53:53")]);
    assert_eq!(d.domain_servers[0].target, DomainTarget::Local);
    assert!(d.addresses[0].addrs.is_empty());
    assert!(d.domain_needed && d.bogus_priv && d.strict_order && d.log_queries);
    assert!(d.expand_hosts && d.no_negcache);
    assert_eq!(d.cache_size, 500);
    assert_eq!(d.addn_hosts, vec![PathBuf::from("/etc/more.hosts")]);
    assert_eq!(d.local_ttl, 10);
    assert_eq!(d.resolv_files, vec![PathBuf::from("/run/r.conf")]);
    assert_eq!(d.mx[0].preference, 1);
    assert_eq!(d.srv[0].target, None);
    assert_eq!(d.txt[0].texts, vec!["hi"]);
    assert_eq!(d.dns_forward_max, 20);
}

/// Option names that never touch the file system, for fuzzing.
fn fuzz_names() -> Vec<&'static str> {
    table::OPTIONS
        .iter()
        .map(|d| d.name)
        .filter(|n| *n != "conf-file" && *n != "conf-dir")
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_lines(line in "\\PC{0,80}") {
        prop_assume!(!line.contains("conf-file") && !line.contains("conf-dir"));
        let _ = parse_conf_text(&line, "fuzz");
    }

    #[test]
    fn never_panics_on_arbitrary_values(
        idx in 0usize..200,
        value in "[ -~\u{80}-\u{10ff}]{0,60}",
    ) {
        let names = fuzz_names();
        let name = names[idx % names.len()];
        let _ = parse_conf_text(&format!("{name}={value}"), "fuzz");
        let _ = parse_conf_text(name, "fuzz");
    }

    #[test]
    fn never_panics_on_dhcp_like_values(
        which in 0usize..4,
        fields in prop::collection::vec("[0-9a-fA-F:.*/!,-]{0,12}|tag:[a-z!]{0,4}|set:[a-z]{0,4}|id:[0-9a-z:*]{0,8}|option:[a-z-]{0,12}|static|proxy|infinite|ignore|[0-9]{1,4}[smhdw]?", 0..6),
    ) {
        let name = ["dhcp-range", "dhcp-host", "dhcp-option", "domain"][which];
        let _ = parse_conf_text(&format!("{name}={}", fields.join(",")), "fuzz");
    }

    #[test]
    fn never_panics_on_dns_like_values(
        which in 0usize..11,
        value in "[/#@,.:0-9a-fA-F_*x -]{0,40}",
    ) {
        let name = [
            "server", "local", "address", "rev-server", "cname", "mx-host", "srv-host",
            "txt-record", "ptr-record", "host-record", "rebind-domain-ok",
        ][which];
        let _ = parse_conf_text(&format!("{name}={value}"), "fuzz");
    }

    #[test]
    fn never_panics_on_arbitrary_argv(argv in prop::collection::vec("-{0,2}[a-zA-Z0-9=,.:-]{0,12}", 0..5)) {
        prop_assume!(!argv.iter().any(|a| a.starts_with("-C") || a.starts_with("-7") || a.contains("conf")));
        let _ = load_with_default(&argv, Path::new("/nonexistent/twinmasq-test.conf"));
    }
}

#[test]
fn ipv6_listen_addresses_and_no_poll() {
    let c = conf("listen-address=198.18.0.1,2001:db8::1\nlisten-address=fe80::1\nno-poll\n");
    assert_eq!(c.listen_addresses, vec![ip("198.18.0.1")]);
    let v6: Vec<std::net::Ipv6Addr> =
        vec!["2001:db8::1".parse().unwrap(), "fe80::1".parse().unwrap()];
    assert_eq!(c.listen_addresses_v6, v6);
    assert!(c.dns.no_poll);
    assert!(!conf("").dns.no_poll);
    // dnsmasq checks the file count only when it reads resolv files.
    let c = conf("no-poll\nno-resolv\nresolv-file=/run/a\nresolv-file=/run/b\n");
    assert!(c.dns.no_poll && c.dns.no_resolv);
}

#[test]
fn dhcp_rate_limit_is_ours_with_a_default_and_off() {
    assert_eq!(
        conf("").dhcp_rate_limit,
        DhcpRateLimit {
            unknown_per_sec: DEFAULT_DHCP_RATE_UNKNOWN,
            known_per_sec: DEFAULT_DHCP_RATE_KNOWN,
        }
    );
    let both = conf("dhcp-rate-limit=200,1000").dhcp_rate_limit;
    assert_eq!((both.unknown_per_sec, both.known_per_sec), (200, 1000));
    let one = conf("dhcp-rate-limit=300").dhcp_rate_limit;
    assert_eq!((one.unknown_per_sec, one.known_per_sec), (300, 1200));
    let off = conf("dhcp-rate-limit=off").dhcp_rate_limit;
    assert_eq!((off.unknown_per_sec, off.known_per_sec), (0, 0));
    assert_eq!(
        err("dhcp-rate-limit=fast"),
        "bad dhcp-rate-limit at line 1 of /etc/dnsmasq.conf: 'fast' is not a number"
    );
    assert!(err("dhcp-rate-limit=1,2,3").contains("more than two values"));
}

#[test]
fn localise_queries_and_servers_file() {
    let c = conf("localise-queries\nservers-file=/etc/dnsmasq.servers\n");
    assert!(c.dns.localise_queries);
    assert_eq!(
        c.dns.servers_file,
        Some(PathBuf::from("/etc/dnsmasq.servers"))
    );
    // A later servers-file replaces the earlier one, as in dnsmasq.
    let c = conf("servers-file=/a\nservers-file=/b\n");
    assert_eq!(c.dns.servers_file, Some(PathBuf::from("/b")));
    assert!(!conf("").dns.localise_queries);
    assert!(err("localise-queries=yes\n").contains("localise-queries"));
    assert!(err("servers-file\n").contains("servers-file"));
}
