//! The authoritative LAN zone end to end: the server hands out a lease to a
//! real DHCP client (BusyBox udhcpc), and real `dig AXFR` transfers the zone
//! from the server's `auth-server` address. Run as root; see
//! tests/README.md. `TWINMASQ_TEST_SERVER=dnsmasq` runs it against dnsmasq
//! (the checks that are twinmasq's own say so).
//!
//! Topology (198.18.0.0/24 on the lab's bridge): the server at 198.18.0.1
//! (DHCP and DNS, authoritative there); a DHCP client; a "tools" namespace
//! at 198.18.0.10 (an `auth-peer`) and 198.18.0.11 (not one) running dig.

mod netns;

use std::net::Ipv4Addr;
use std::time::Duration;

use netns::{wait_for, Host, Lab, ServerConf, ServerKind, Udhcpc, NETMASK, SERVER_IP};

const ZONE: &str = "lab.test";
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const DIG_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for a lease change to show in the zone (the DNS follows the lease
/// database's change feed, so it is there at once; dnsmasq likewise).
const ZONE_TIMEOUT: Duration = Duration::from_secs(10);

macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

/// The standard lab DHCP config with DNS on, authoritative for `lab.test`
/// at the server's address, transfers for `PEER` only.
fn auth_conf() -> ServerConf {
    let mut c = ServerConf::standard();
    c.lines.retain(|l| l != "port=0");
    c.line(format!("auth-server=ns1.{ZONE},{SERVER_IP}"))
        .line(format!("auth-zone={ZONE},198.18.0.0/24"))
        .line(format!("auth-sec-servers=ns2.{ZONE}"))
        .line(format!("auth-peer={PEER}"))
        .line("auth-soa=1000,hostmaster@lab.test,2,2,600")
        .line("auth-ttl=30")
}

/// One record of dig's output: owner, type, data (TTL and class dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    owner: String,
    rtype: String,
    data: String,
}

fn parse_records(out: &str) -> Vec<Rr> {
    out.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5).then(|| Rr {
                owner: f[0].to_lowercase(),
                rtype: f[3].to_string(),
                data: f[4..].join(" "),
            })
        })
        .collect()
}

fn soa_serial(rr: &Rr) -> u32 {
    rr.data
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no serial in {rr:?}"))
}

/// RFC 1982: a is greater than b.
fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

fn dig(tools: &Host, from: Ipv4Addr, args: &[&str]) -> String {
    let from = from.to_string();
    let server = format!("@{SERVER_IP}");
    let mut argv = vec![
        "dig",
        "+nocookie",
        "+tries=1",
        "+time=3",
        "-b",
        &from,
        &server,
    ];
    argv.extend_from_slice(args);
    // dig exits non-zero when a transfer fails: that is output to look at.
    tools
        .exec(&argv, DIG_TIMEOUT)
        .unwrap_or_else(|e| format!("; dig failed: {e}"))
}

/// A zone transfer from `PEER`, checked for shape: SOA first and last, the
/// same SOA both times. Returns the records and the serial.
fn axfr(tools: &Host) -> (Vec<Rr>, u32) {
    let out = dig(tools, PEER, &[ZONE, "AXFR"]);
    let recs = parse_records(&out);
    assert!(recs.len() >= 2, "AXFR gave too little:\n{out}");
    let (first, last) = (&recs[0], &recs[recs.len() - 1]);
    assert_eq!(first.rtype, "SOA", "AXFR must start with the SOA:\n{out}");
    assert_eq!(last.rtype, "SOA", "AXFR must end with the SOA:\n{out}");
    assert_eq!(first, last, "the two SOAs differ:\n{out}");
    assert_eq!(first.owner, format!("{ZONE}."));
    let serial = soa_serial(first);
    (recs, serial)
}

fn has_a(recs: &[Rr], owner: &str, addr: Ipv4Addr) -> bool {
    recs.iter()
        .any(|r| r.owner == owner && r.rtype == "A" && r.data == addr.to_string())
}

#[test]
fn dns_auth_zone_follows_leases_and_transfers_to_peers_only() {
    let lab = lab!("dns_auth_zone_follows_leases_and_transfers_to_peers_only");
    let srv = lab.start_server(&auth_conf());
    let tools = lab.add_client();
    tools.set_addr(PEER, NETMASK);
    tools.set_addr(STRANGER, NETMASK);
    let soa_query = || dig(&tools, PEER, &["+norec", ZONE, "SOA"]);
    let ready = wait_for(Duration::from_secs(10), "the SOA", || {
        let out = soa_query();
        out.contains("status: NOERROR").then_some(out)
    });
    if let Err(e) = ready {
        panic!("no SOA from the server: {e}\n{}", srv.log_text());
    }

    // Before any lease: SOA, NS, SOA.
    let (recs, s0) = axfr(&tools);
    let ns: Vec<&str> = recs
        .iter()
        .filter(|r| r.rtype == "NS")
        .map(|r| r.data.as_str())
        .collect();
    assert_eq!(ns, vec!["ns1.lab.test.", "ns2.lab.test."], "{recs:?}");

    // A lease: its name enters the zone and the serial rises.
    let client = lab.add_client();
    let mut c = Udhcpc::new(&lab, &client).with_hostname("tqlaptop");
    let lease = c.obtain().unwrap();
    let owner = format!("tqlaptop.{ZONE}.");
    let (recs, s1) = wait_for(ZONE_TIMEOUT, "the lease name in the AXFR", || {
        let (recs, s) = axfr(&tools);
        has_a(&recs, &owner, lease.address).then_some((recs, s))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", srv.log_text()));
    assert!(
        serial_gt(s1, s0),
        "serial {s0} -> {s1} after a lease: {recs:?}"
    );
    assert!(serial_gt(s1, 1000), "serial {s1} not above auth-soa's 1000");

    // The same name and serial over UDP, authoritatively.
    let out = dig(&tools, PEER, &["+norec", &owner, "A"]);
    assert!(
        out.contains("status: NOERROR") && out.contains(" aa"),
        "{out}"
    );
    assert!(out.contains(&lease.address.to_string()), "{out}");
    let soa = parse_records(&soa_query());
    assert_eq!(soa.first().map(soa_serial), Some(s1), "{soa:?}");
    // A name that is not there: NXDOMAIN with the SOA.
    let out = dig(&tools, PEER, &["+norec", &format!("nobody.{ZONE}"), "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("AUTHORITY: 1") && out.contains("SOA"), "{out}");
    // Names outside the zone are refused at the authoritative address.
    let out = dig(&tools, PEER, &["www.example.net", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");

    // Not a peer: no zone.
    let out = dig(&tools, STRANGER, &[ZONE, "AXFR"]);
    assert!(
        out.contains("Transfer failed"),
        "a stranger got the zone:\n{out}"
    );
    assert!(parse_records(&out).is_empty(), "{out}");
    if srv.kind == ServerKind::Twinmasq {
        // twinmasq's own: it answers REFUSED where dnsmasq hangs up.
        let out = dig(&tools, STRANGER, &[ZONE, "AXFR", "+all"]);
        assert!(out.contains("status: REFUSED"), "{out}");
    }

    // The lease ends: the name leaves the zone and the serial rises again.
    c.release().unwrap();
    let (recs, s2) = wait_for(ZONE_TIMEOUT, "the lease name to leave the AXFR", || {
        let (recs, s) = axfr(&tools);
        (!has_a(&recs, &owner, lease.address)).then_some((recs, s))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", srv.log_text()));
    assert!(
        serial_gt(s2, s1),
        "serial {s1} -> {s2} after a release: {recs:?}"
    );
}
