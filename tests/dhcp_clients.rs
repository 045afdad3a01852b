//! Real DHCP clients (ISC dhclient, BusyBox udhcpc, dhcpcd) against the server
//! under test, in network namespaces. Run as root; see tests/README.md.
//! `TWINMASQ_TEST_SERVER=dnsmasq` runs the same tests against real dnsmasq.

mod netns;

use std::net::Ipv4Addr;
use std::thread;

use netns::{
    Dhclient, Dhcpcd, Lab, Lease, ServerConf, Udhcpc, DNS, DOMAIN, LEASE_SECS, NETMASK, RANGE_END,
    RANGE_START, ROUTER, SERVER_IP,
};

/// Builds a lab or returns from the test (after a loud SKIPPED, which panics
/// under CI).
macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

fn in_range(ip: Ipv4Addr) -> bool {
    (RANGE_START..=RANGE_END).contains(&ip)
}

/// The options of [`ServerConf::standard`] arrived as configured.
fn assert_standard_options(l: &Lease) {
    assert!(
        in_range(l.address),
        "{}: {} not in the range: {l:?}",
        l.client,
        l.address
    );
    assert_eq!(
        l.subnet_mask,
        Some(NETMASK),
        "{}: subnet mask: {l:?}",
        l.client
    );
    assert_eq!(l.routers, vec![ROUTER], "{}: routers: {l:?}", l.client);
    assert_eq!(l.dns, DNS.to_vec(), "{}: dns servers: {l:?}", l.client);
    assert_eq!(
        l.domain.as_deref(),
        Some(DOMAIN),
        "{}: domain: {l:?}",
        l.client
    );
    assert_eq!(
        l.lease_time,
        Some(LEASE_SECS),
        "{}: lease time: {l:?}",
        l.client
    );
    assert_eq!(
        l.server_id,
        Some(SERVER_IP),
        "{}: server id: {l:?}",
        l.client
    );
}

#[test]
fn dhclient_gets_lease_with_options() {
    let lab = lab!("dhclient_gets_lease_with_options");
    let srv = lab.start_server(&ServerConf::standard());
    let host = lab.add_client();
    let mut c = Dhclient::new(&lab, &host).with_hostname("isc-one");
    let l = c.obtain().unwrap();
    assert_eq!(l.reason, "BOUND");
    assert_standard_options(&l);
    let line = srv.wait_lease(&host.mac, l.address);
    assert_eq!(line.hostname.as_deref(), Some("isc-one"));
    assert_eq!(host.addrs(), vec![l.address]);
}

#[test]
fn udhcpc_gets_lease_with_options() {
    let lab = lab!("udhcpc_gets_lease_with_options");
    let srv = lab.start_server(&ServerConf::standard());
    let host = lab.add_client();
    let mut c = Udhcpc::new(&lab, &host).with_hostname("busybox-one");
    let l = c.obtain().unwrap();
    assert_standard_options(&l);
    let line = srv.wait_lease(&host.mac, l.address);
    assert_eq!(line.hostname.as_deref(), Some("busybox-one"));
}

#[test]
fn dhcpcd_gets_lease_with_options() {
    let lab = lab!("dhcpcd_gets_lease_with_options");
    let srv = lab.start_server(&ServerConf::standard());
    let host = lab.add_client();
    let mut c = Dhcpcd::new(&lab, &host).with_hostname("dhcpcd-one");
    let l = c.obtain().unwrap();
    assert_eq!(l.reason, "BOUND");
    assert_standard_options(&l);
    let line = srv.wait_lease(&host.mac, l.address);
    assert_eq!(line.hostname.as_deref(), Some("dhcpcd-one"));
    // dhcpcd configures the address itself (the others leave it to a script).
    assert_eq!(host.addrs(), vec![l.address]);
}

#[test]
fn renew_keeps_address_and_extends_lease() {
    let lab = lab!("renew_keeps_address_and_extends_lease");
    let srv = lab.start_server(&ServerConf::standard());
    let host = lab.add_client();
    let mut c = Udhcpc::new(&lab, &host);
    let l = c.obtain().unwrap();
    let before = srv.wait_lease(&host.mac, l.address);
    // Expiry has a one-second resolution: let a second pass so a renewal
    // visibly moves it.
    thread::sleep(std::time::Duration::from_millis(1100));
    let r = c.renew().unwrap();
    assert_eq!(r.reason, "renew");
    assert_eq!(r.address, l.address);
    assert_standard_options(&r);
    srv.wait_leases("the renewal to extend the expiry", |ls| {
        ls.iter()
            .any(|x| x.mac == host.mac && x.ip == l.address && x.expiry > before.expiry)
    });
}

#[test]
fn release_frees_lease() {
    let lab = lab!("release_frees_lease");
    let srv = lab.start_server(&ServerConf::standard());
    let (h1, h2) = (lab.add_client(), lab.add_client());
    let mut isc = Dhclient::new(&lab, &h1);
    let mut bb = Udhcpc::new(&lab, &h2);
    let (l1, l2) = (isc.obtain().unwrap(), bb.obtain().unwrap());
    srv.wait_lease(&h1.mac, l1.address);
    srv.wait_lease(&h2.mac, l2.address);

    isc.release().unwrap();
    srv.wait_no_lease(l1.address);
    bb.release().unwrap();
    srv.wait_no_lease(l2.address);
    assert!(srv.leases().is_empty(), "{:?}", srv.leases());
    assert!(h1.addrs().is_empty() && h2.addrs().is_empty());
}

#[test]
fn dhclient_init_reboot_gets_same_address() {
    let lab = lab!("dhclient_init_reboot_gets_same_address");
    let srv = lab.start_server(&ServerConf::standard());
    let host = lab.add_client();
    let mut c = Dhclient::new(&lab, &host);
    let first = c.obtain().unwrap();
    srv.wait_lease(&host.mac, first.address);
    c.stop();
    let again = c.obtain().unwrap();
    // REBOOT, not BOUND: dhclient went through INIT-REBOOT with its lease
    // file, and the server ACKed the address it asked for.
    assert_eq!(again.reason, "REBOOT", "{again:?}");
    assert_eq!(again.address, first.address);
    assert_standard_options(&again);
}

#[test]
fn static_dhcp_host_is_honoured() {
    let lab = lab!("static_dhcp_host_is_honoured");
    // Fixed addresses outside the dynamic range, in the same subnet.
    let (mac1, ip1, mac2, ip2) = (
        "02:54:4d:51:00:01",
        Ipv4Addr::new(198, 18, 0, 42),
        "02:54:4d:51:00:02",
        Ipv4Addr::new(198, 18, 0, 43),
    );
    let conf = ServerConf::standard()
        .line(format!("dhcp-host={mac1},{ip1},fixed-isc"))
        .line(format!("dhcp-host={mac2},{ip2},fixed-bb"));
    let srv = lab.start_server(&conf);
    let (h1, h2, h3) = (
        lab.add_client_with_mac(mac1),
        lab.add_client_with_mac(mac2),
        lab.add_client(),
    );
    assert_eq!(h1.mac, mac1);

    let l1 = Dhclient::new(&lab, &h1).obtain().unwrap();
    assert_eq!(l1.address, ip1);
    assert_eq!(
        l1.hostname.as_deref(),
        Some("fixed-isc"),
        "option 12 from dhcp-host: {l1:?}"
    );
    assert_eq!(l1.routers, vec![ROUTER]);
    let l2 = Udhcpc::new(&lab, &h2).obtain().unwrap();
    assert_eq!(l2.address, ip2);
    // Anyone else still gets a dynamic address.
    let l3 = Udhcpc::new(&lab, &h3).obtain().unwrap();
    assert!(in_range(l3.address), "{l3:?}");

    assert_eq!(
        srv.wait_lease(mac1, ip1).hostname.as_deref(),
        Some("fixed-isc")
    );
    assert_eq!(
        srv.wait_lease(mac2, ip2).hostname.as_deref(),
        Some("fixed-bb")
    );
}

#[test]
fn server_restart_keeps_every_lease() {
    let lab = lab!("server_restart_keeps_every_lease");
    // A pool of exactly three, filled by three clients: after the restart a
    // fourth client must find it full, which it would not if the server had
    // forgotten any lease.
    let last = Ipv4Addr::new(198, 18, 0, 102);
    let mut srv = lab.start_server(&ServerConf::standard_range(RANGE_START, last));
    let (h1, h2, h3, h4) = (
        lab.add_client(),
        lab.add_client(),
        lab.add_client(),
        lab.add_client(),
    );
    let mut isc = Dhclient::new(&lab, &h1);
    let mut bb = Udhcpc::new(&lab, &h2);
    let mut cd = Dhcpcd::new(&lab, &h3);
    // dhcpcd spends ~5 s probing; run it alongside the others.
    let (l1, l2, l3) = thread::scope(|s| {
        let t = s.spawn(|| cd.obtain());
        let l1 = isc.obtain().unwrap();
        let l2 = bb.obtain().unwrap();
        (l1, l2, t.join().unwrap().unwrap())
    });
    let mut want: Vec<(String, Ipv4Addr)> = vec![
        (h1.mac.clone(), l1.address),
        (h2.mac.clone(), l2.address),
        (h3.mac.clone(), l3.address),
    ];
    want.sort();
    let pairs = |ls: &[netns::LeaseLine]| {
        let mut v: Vec<(String, Ipv4Addr)> = ls.iter().map(|x| (x.mac.clone(), x.ip)).collect();
        v.sort();
        v
    };
    let before = srv.wait_leases("all three leases", |ls| pairs(ls) == want);

    isc.stop();
    srv.restart();
    let after = srv.wait_leases("the same three leases after restart", |ls| {
        pairs(ls) == want
    });
    for b in &before {
        let a = after.iter().find(|a| a.ip == b.ip).unwrap();
        assert_eq!(
            a.expiry, b.expiry,
            "restart changed the expiry: {b:?} -> {a:?}"
        );
    }

    // The server is not authoritative, so it ACKs an INIT-REBOOT only for a
    // lease it still knows.
    let r1 = isc.obtain().unwrap();
    assert_eq!(
        (r1.reason.as_str(), r1.address),
        ("REBOOT", l1.address),
        "{r1:?}"
    );
    // A unicast renewal of a lease granted before the restart.
    let r2 = bb.renew().unwrap();
    assert_eq!(r2.address, l2.address);
    // The pool is full of remembered leases: nothing for a newcomer.
    let err = Udhcpc::new(&lab, &h4)
        .with_tries(2, 1)
        .obtain()
        .unwrap_err();
    assert!(err.contains("leasefail") || err.contains("exited"), "{err}");
    assert_eq!(pairs(&srv.leases()), want);
}

/// The address a client asks for is already used by a host the server does
/// not know of: the ping check finds it and the client is given another.
/// (Without the check the server would offer the requested, free-looking
/// address.) The wait for the ping must not hold up a second client either.
#[test]
fn ping_check_skips_an_address_in_use() {
    let lab = lab!("ping_check_skips_an_address_in_use");
    let mut conf = ServerConf::standard();
    conf.lines.retain(|l| l != "no-ping");
    let srv = lab.start_server(&conf);
    let squatter = lab.add_client();
    let taken = Ipv4Addr::new(198, 18, 0, 150);
    squatter.set_addr(taken, NETMASK);

    let host = lab.add_client();
    let mut c = Udhcpc::new(&lab, &host);
    c.request = Some(taken);
    let l = c.obtain().unwrap();
    assert_ne!(l.address, taken, "offered an address that answers ping");
    assert!(in_range(l.address));
    srv.wait_lease(&host.mac, l.address);
    if srv.kind == netns::ServerKind::Twinmasq {
        assert!(
            srv.log_text().contains(&format!("{taken} answered a ping")),
            "{}",
            srv.log_text()
        );
    }
}

/// Drop-in migration: real dnsmasq hands out leases and stops; twinmasq
/// starts on the same config file and lease file. Its empty database
/// imports dnsmasq's file, so a client rebooting (INIT-REBOOT, which a
/// non-authoritative server answers only for leases it knows) keeps its
/// address.
#[test]
fn twinmasq_takes_over_dnsmasq_leases() {
    let lab = lab!("twinmasq_takes_over_dnsmasq_leases");
    let conf = ServerConf::standard();
    let mut old = lab.start_server_kind(netns::ServerKind::Dnsmasq, &conf);
    let host = lab.add_client();
    let mut c = Dhclient::new(&lab, &host).with_hostname("migrated");
    let first = c.obtain().unwrap();
    old.wait_lease(&host.mac, first.address);
    c.stop();
    old.stop();
    drop(old);

    let new = lab.start_server_kind(netns::ServerKind::Twinmasq, &conf);
    let imported = new.wait_lease(&host.mac, first.address);
    assert_eq!(imported.hostname.as_deref(), Some("migrated"));
    assert!(
        new.log_text().contains("imported 1 leases"),
        "{}",
        new.log_text()
    );
    let again = c.obtain().unwrap();
    assert_eq!(again.reason, "REBOOT", "{again:?}");
    assert_eq!(again.address, first.address);
}

/// A name a real DHCP client gets a lease under resolves, forward and
/// reverse, from the same server within a second.
#[test]
fn lease_names_resolve_in_dns_at_once() {
    let lab = lab!("lease_names_resolve_in_dns_at_once");
    let mut conf = ServerConf::standard();
    conf.lines.retain(|l| l != "port=0");
    let srv = lab.start_server(&conf);
    let host = lab.add_client();
    let l = Udhcpc::new(&lab, &host)
        .with_hostname("printer7")
        .obtain()
        .unwrap();
    let started = std::time::Instant::now();
    let dig = |args: &[&str]| {
        let mut argv = vec![
            "ip", "netns", "exec", &host.ns, "dig", "+short", "+time=1", "+tries=1",
        ];
        argv.extend_from_slice(args);
        netns::run(&argv, std::time::Duration::from_secs(5)).unwrap_or_default()
    };
    let server = format!("@{SERVER_IP}");
    let fqdn = format!("printer7.{DOMAIN}");
    let forward = netns::wait_for(
        std::time::Duration::from_secs(1),
        "the lease name in DNS",
        || {
            let out = dig(&[&server, &fqdn, "A"]);
            (out.trim() == l.address.to_string()).then_some(out)
        },
    );
    assert!(
        forward.is_ok(),
        "{fqdn} did not resolve to {} within a second\n{}",
        l.address,
        srv.log_text()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let reverse = dig(&[&server, "-x", &l.address.to_string()]);
    assert_eq!(reverse.trim(), format!("{fqdn}."), "{}", srv.log_text());
}

/// `dhcp-boot` and `dhcp-ignore=tag:!known` seen by udhcpc, from real
/// dnsmasq and from twinmasq on the same file: the boot fields (file,
/// sname, siaddr, which udhcpc hands its script) and who gets no lease.
#[test]
fn dhcp_boot_and_ignore_unknown_match_dnsmasq() {
    let efi_mac = "02:54:4d:51:00:11";
    let plain_mac = "02:54:4d:51:00:12";
    let boot_server = Ipv4Addr::new(198, 18, 0, 9);
    let conf = ServerConf::standard()
        .line(format!("dhcp-host={efi_mac},set:efi"))
        .line(format!("dhcp-host={plain_mac},plainhost"))
        .line(format!("dhcp-boot=tag:efi,grub.efi,bootsrv,{boot_server}"))
        .line("dhcp-boot=pxelinux.0")
        .line("dhcp-ignore=tag:!known");
    for kind in [netns::ServerKind::Dnsmasq, netns::ServerKind::Twinmasq] {
        let name = format!("dhcp_boot_and_ignore_{kind:?}").to_lowercase();
        let lab = lab!(&name);
        let srv = lab.start_server_kind(kind, &conf);
        let (efi, plain, stranger) = (
            lab.add_client_with_mac(efi_mac),
            lab.add_client_with_mac(plain_mac),
            lab.add_client(),
        );
        let env = |l: &Lease, k: &str| l.env.get(k).cloned().unwrap_or_default();

        let l = Udhcpc::new(&lab, &efi).obtain().unwrap();
        assert!(in_range(l.address), "{kind:?}: {l:?}");
        assert_eq!(env(&l, "boot_file"), "grub.efi", "{kind:?}: {l:?}");
        assert_eq!(env(&l, "sname"), "bootsrv", "{kind:?}: {l:?}");
        assert_eq!(
            env(&l, "siaddr"),
            boot_server.to_string(),
            "{kind:?}: {l:?}"
        );

        // The untagged line; siaddr is the server's own address.
        let l = Udhcpc::new(&lab, &plain).obtain().unwrap();
        assert_eq!(env(&l, "boot_file"), "pxelinux.0", "{kind:?}: {l:?}");
        assert_eq!(env(&l, "sname"), "", "{kind:?}: {l:?}");
        assert_eq!(env(&l, "siaddr"), SERVER_IP.to_string(), "{kind:?}: {l:?}");
        srv.wait_lease(plain_mac, l.address);

        let refused = Udhcpc::new(&lab, &stranger).with_tries(2, 1).obtain();
        assert!(
            refused.is_err(),
            "{kind:?}: an unknown client got {refused:?}"
        );
        assert!(
            srv.leases().iter().all(|x| x.mac != stranger.mac),
            "{kind:?}: {:?}",
            srv.leases()
        );
    }
}

/// `dhcp-hostsfile` (a directory) and `dhcp-optsfile`: read at start, and
/// an edit takes effect at SIGHUP, not before; the same for real dnsmasq.
#[test]
fn dhcp_hosts_and_opts_files_reload_on_sighup() {
    use std::os::unix::fs::PermissionsExt;
    let (mac1, mac2, mac3) = (
        "02:54:4d:51:00:21",
        "02:54:4d:51:00:22",
        "02:54:4d:51:00:23",
    );
    let (ip1, ip2, ip3) = (
        Ipv4Addr::new(198, 18, 0, 42),
        Ipv4Addr::new(198, 18, 0, 43),
        Ipv4Addr::new(198, 18, 0, 44),
    );
    let new_router = Ipv4Addr::new(198, 18, 0, 254);
    for kind in [netns::ServerKind::Dnsmasq, netns::ServerKind::Twinmasq] {
        let name = format!("dhcp_files_sighup_{kind:?}").to_lowercase();
        let lab = lab!(&name);
        // The servers drop root before a SIGHUP re-reads the files.
        let dir = lab.dir().join("dhcp-files");
        let hosts_dir = dir.join("hosts.d");
        std::fs::create_dir_all(&hosts_dir).unwrap();
        for d in [lab.dir(), dir.as_path(), hosts_dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let opts = dir.join("opts");
        std::fs::write(
            hosts_dir.join("10-first"),
            format!("{mac1},{ip1},filehost\n"),
        )
        .unwrap();
        std::fs::write(&opts, format!("# routers\noption:router,{ROUTER}\n")).unwrap();
        let conf = ServerConf::base()
            .line(format!(
                "dhcp-range={RANGE_START},{RANGE_END},{NETMASK},{LEASE_SECS}"
            ))
            .line(format!("dhcp-hostsfile={}", hosts_dir.display()))
            .line(format!("dhcp-optsfile={}", opts.display()));
        let srv = lab.start_server_kind(kind, &conf);
        let (h1, h2, h3) = (
            lab.add_client_with_mac(mac1),
            lab.add_client_with_mac(mac2),
            lab.add_client_with_mac(mac3),
        );
        let l1 = Udhcpc::new(&lab, &h1).obtain().unwrap();
        assert_eq!(l1.address, ip1, "{kind:?}: {l1:?}");
        assert_eq!(l1.routers, vec![ROUTER], "{kind:?}: {l1:?}");

        std::fs::write(
            hosts_dir.join("20-second"),
            format!("{mac2},{ip2}\n{mac3},{ip3}\n"),
        )
        .unwrap();
        std::fs::write(&opts, format!("option:router,{new_router}\n")).unwrap();
        // Not read until told.
        let l3 = Udhcpc::new(&lab, &h3).obtain().unwrap();
        assert!(in_range(l3.address), "{kind:?}: {l3:?}");
        assert_eq!(l3.routers, vec![ROUTER], "{kind:?}: {l3:?}");

        let mark = srv.log_mark();
        let pid = srv.pid().unwrap();
        // SAFETY: kill(2) on the server this test started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
        let opts_read = format!("read {}", opts.display());
        srv.wait_log(mark, &opts_read, std::time::Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let l2 = Udhcpc::new(&lab, &h2).obtain().unwrap();
        assert_eq!(l2.address, ip2, "{kind:?}: {l2:?}");
        assert_eq!(l2.routers, vec![new_router], "{kind:?}: {l2:?}");
        srv.wait_lease(mac1, ip1);
    }
}

/// `dhcp-vendorclass` (option 60, `udhcpc -V`), `dhcp-userclass` (option
/// 77 in RFC 3004 form) and `dhcp-match` (option 93, the PXE client
/// architecture) set tags that pick options; the same for real dnsmasq.
#[test]
fn vendor_and_user_classes_set_tags_like_dnsmasq() {
    let (acme_router, kiosk_router, efi_router) = (
        Ipv4Addr::new(198, 18, 0, 11),
        Ipv4Addr::new(198, 18, 0, 12),
        Ipv4Addr::new(198, 18, 0, 13),
    );
    let conf = ServerConf::base()
        .line(format!(
            "dhcp-range={RANGE_START},{RANGE_END},{NETMASK},{LEASE_SECS}"
        ))
        .line("dhcp-vendorclass=set:acme,ACME-phone")
        .line("dhcp-userclass=set:kiosk,kiosk")
        .line(format!("dhcp-option=tag:acme,option:router,{acme_router}"))
        .line(format!(
            "dhcp-option=tag:kiosk,option:router,{kiosk_router}"
        ))
        .line("dhcp-match=set:efi64,option:client-arch,7")
        .line(format!("dhcp-option=tag:efi64,option:router,{efi_router}"));
    for kind in [netns::ServerKind::Dnsmasq, netns::ServerKind::Twinmasq] {
        let name = format!("dhcp_classes_{kind:?}").to_lowercase();
        let lab = lab!(&name);
        let _srv = lab.start_server_kind(kind, &conf);
        let (a, b, c) = (lab.add_client(), lab.add_client(), lab.add_client());
        let la = Udhcpc::new(&lab, &a)
            .with_args(&["-V", "ACME-phone v2"])
            .obtain()
            .unwrap();
        assert_eq!(la.routers, vec![acme_router], "{kind:?}: {la:?}");
        // "\x05kiosk": one counted string.
        let lb = Udhcpc::new(&lab, &b)
            .with_args(&["-x", "0x4d:056b696f736b"])
            .obtain()
            .unwrap();
        assert_eq!(lb.routers, vec![kiosk_router], "{kind:?}: {lb:?}");
        let d = lab.add_client();
        let ld = Udhcpc::new(&lab, &d)
            .with_args(&["-x", "0x5d:0007"])
            .obtain()
            .unwrap();
        assert_eq!(ld.routers, vec![efi_router], "{kind:?}: {ld:?}");
        // No class: the default router, the server itself.
        let lc = Udhcpc::new(&lab, &c).obtain().unwrap();
        assert_eq!(lc.routers, vec![SERVER_IP], "{kind:?}: {lc:?}");
    }
}

/// dig from a client's namespace against the lab server; `+short` or not.
fn dig_at(host: &netns::Host, name: &str, short: bool) -> String {
    let server = format!("@{SERVER_IP}");
    // Generous tries: the suite runs many labs at once on two cores, and a
    // lost UDP answer must not read as a wrong one.
    let mut argv = vec![
        "ip", "netns", "exec", &host.ns, "dig", "+time=2", "+tries=4",
    ];
    if short {
        argv.push("+short");
    }
    argv.extend([server.as_str(), name, "A"]);
    netns::run(&argv, std::time::Duration::from_secs(10)).unwrap_or_default()
}

/// A client that names itself after a `dhcp-host` line's host gets a lease
/// but not the name, and DNS keeps answering the configured host's address.
/// Real dnsmasq agrees on the same file, except in one order: a client
/// asking for the name before the configured host has ever had a lease gets
/// it from dnsmasq (until the host comes), never from twinmasq.
#[test]
fn clients_cannot_take_a_configured_name() {
    let nas_mac = "02:54:4d:51:00:31";
    let nas_ip = Ipv4Addr::new(198, 18, 0, 42);
    let mut conf = ServerConf::standard().line(format!("dhcp-host={nas_mac},{nas_ip},nas"));
    conf.lines.retain(|l| l != "port=0");
    let nas_fqdn = format!("nas.{DOMAIN}");
    for kind in [netns::ServerKind::Dnsmasq, netns::ServerKind::Twinmasq] {
        let name = format!("configured_name_{kind:?}").to_lowercase();
        let lab = lab!(&name);
        let srv = lab.start_server_kind(kind, &conf);
        let name_of = |mac: &str, ip: Ipv4Addr| srv.wait_lease(mac, ip).hostname;

        // Before the configured host has a lease.
        let early = lab.add_client();
        let mut early_c = Udhcpc::new(&lab, &early).with_hostname("nas");
        let e = early_c.obtain().unwrap();
        assert!(in_range(e.address), "{kind:?}: {e:?}");
        let early_name = name_of(&early.mac, e.address);
        match kind {
            netns::ServerKind::Twinmasq => {
                assert_eq!(
                    early_name,
                    None,
                    "the configured name went to another client\n{}",
                    srv.log_text()
                );
                let why = format!(
                    "not giving name nas to the DHCP lease of {} because the name exists in config with address {nas_ip}",
                    e.address
                );
                assert!(srv.log_text().contains(&why), "{}", srv.log_text());
            }
            netns::ServerKind::Dnsmasq => assert_eq!(early_name.as_deref(), Some("nas")),
        }

        // The configured host comes and has its name.
        let nas = lab.add_client_with_mac(nas_mac);
        let l = Udhcpc::new(&lab, &nas).obtain().unwrap();
        assert_eq!(l.address, nas_ip, "{kind:?}");
        assert_eq!(name_of(nas_mac, nas_ip).as_deref(), Some("nas"), "{kind:?}");
        srv.wait_leases("the early client without a name", |ls| {
            ls.iter()
                .any(|x| x.mac == early.mac && x.ip == e.address && x.hostname.is_none())
        });

        // Asking again, or as a new client, takes nothing from it.
        let r = early_c.renew().unwrap();
        assert_eq!(r.address, e.address, "{kind:?}");
        let late = lab.add_client();
        let t = Udhcpc::new(&lab, &late)
            .with_hostname("nas")
            .obtain()
            .unwrap();
        assert_eq!(
            name_of(&late.mac, t.address),
            None,
            "{kind:?}\n{}",
            srv.log_text()
        );
        assert_eq!(
            name_of(&early.mac, e.address),
            None,
            "{kind:?}: the renewal took the name"
        );
        assert_eq!(name_of(nas_mac, nas_ip).as_deref(), Some("nas"), "{kind:?}");
        for q in ["nas", nas_fqdn.as_str()] {
            assert_eq!(
                dig_at(&late, q, true).trim(),
                nas_ip.to_string(),
                "{kind:?}: {q}\n{}",
                srv.log_text()
            );
        }
    }
}

/// The lines OpenWrt and Pi-hole write: clients naming themselves `wpad`
/// or `localhost` get a lease and no name, in the lease file or in DNS;
/// other names work. The same for real dnsmasq, except that dnsmasq 2.90
/// matches the whole name the client sent, so `wpad.lan` escapes the line
/// and is registered as `wpad`; twinmasq matches the label it would
/// publish.
#[test]
fn openwrt_bogus_hostnames_are_not_registered() {
    let mut conf = ServerConf::standard()
        .line("dhcp-name-match=set:dhcp_bogus_hostname,localhost")
        .line("dhcp-name-match=set:dhcp_bogus_hostname,wpad")
        .line("dhcp-ignore-names=tag:dhcp_bogus_hostname");
    conf.lines.retain(|l| l != "port=0");
    for kind in [netns::ServerKind::Dnsmasq, netns::ServerKind::Twinmasq] {
        let name = format!("bogus_names_{kind:?}").to_lowercase();
        let lab = lab!(&name);
        let srv = lab.start_server_kind(kind, &conf);
        let name_of = |mac: &str, ip: Ipv4Addr| srv.wait_lease(mac, ip).hostname;
        let mut last = None;
        for bogus in ["wpad", "localhost", "laptop"] {
            let h = lab.add_client();
            let l = Udhcpc::new(&lab, &h).with_hostname(bogus).obtain().unwrap();
            assert!(in_range(l.address), "{kind:?}: {l:?}");
            let want = (bogus == "laptop").then(|| bogus.to_string());
            assert_eq!(name_of(&h.mac, l.address), want, "{kind:?}: {bogus}");
            last = Some((h, l.address));
        }
        let (h, laptop) = last.unwrap();
        assert_eq!(
            dig_at(&h, &format!("laptop.{DOMAIN}"), true).trim(),
            laptop.to_string(),
            "{kind:?}"
        );
        // An answer came, with no address in it.
        let wpad = || dig_at(&h, &format!("wpad.{DOMAIN}"), false);
        let answer = wpad();
        assert!(answer.contains("ANSWER: 0,"), "{kind:?}: {answer}");

        let d = lab.add_client();
        let l = Udhcpc::new(&lab, &d)
            .with_hostname("wpad.lan")
            .obtain()
            .unwrap();
        let dotted = name_of(&d.mac, l.address);
        match kind {
            netns::ServerKind::Twinmasq => {
                assert_eq!(dotted, None);
                let answer = wpad();
                assert!(answer.contains("ANSWER: 0,"), "{answer}");
            }
            netns::ServerKind::Dnsmasq => assert_eq!(dotted.as_deref(), Some("wpad")),
        }
    }
}
