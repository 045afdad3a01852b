//! DHCP packet decode and the engine's decision, against a real sled lease
//! database: the fuzz input is the UDP payload a client sent.
//!
//! The engine and database live for the whole process (as in the server),
//! so leases, holds and pool exhaustion carry from one input to the next;
//! the clock moves 10 s per input and `tick` expires what ran out. A crash
//! that needs earlier state shows up in libFuzzer's output as the last
//! inputs run; `fuzz/README.md` says how to turn it into a test.

#![no_main]

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use twinmasq::dhcp::{reply, request, Arrival, Decision, Engine};
use twinmasq::net::ipv4::IfAddr;
use twinmasq::lease::{DbOptions, LeaseDb};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// A small LAN as dnsmasq users write it: one range, a reservation, a few
/// options, an authoritative server (so NAKs happen too).
const CONF: &str = "\
dhcp-range=198.18.0.10,198.18.0.40,255.255.255.0,1h
dhcp-range=set:lab,198.18.0.100,198.18.0.110,2m
dhcp-host=02:00:00:00:00:07,198.18.0.7,printer,infinite
dhcp-host=id:01:02:03,198.18.0.8,byid
dhcp-option=option:router,198.18.0.1
dhcp-option=option:dns-server,198.18.0.1
dhcp-option=tag:lab,option:domain-name,lab.test
dhcp-authoritative
no-ping
domain=home.test
";

struct Rig {
    _dir: tempfile::TempDir,
    db: LeaseDb,
    engine: Engine,
    arrival: Arrival,
    now_ms: u64,
}

fn rig() -> Rig {
    let cfg =
        twinmasq::config::parse_conf_text(CONF, "fuzz.conf").expect("the fixed config parses");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).expect("sled opens");
    let mut engine = Engine::new(Arc::new(cfg), &db);
    engine.set_local_addresses(&[SERVER], &db);
    Rig {
        _dir: dir,
        db,
        engine,
        arrival: Arrival {
            ifname: "fuzz0".into(),
            ifindex: 7,
            addrs: vec![IfAddr {
                addr: SERVER,
                prefix: 24,
            }],
            to_broadcast: true,
        },
        now_ms: 1_800_000_000_000,
    }
}

static RIG: Mutex<Option<Rig>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = RIG.lock().unwrap_or_else(|p| p.into_inner());
    let rig = guard.get_or_insert_with(rig);
    rig.now_ms += 10_000;
    rig.engine.tick(&mut rig.db, rig.now_ms);
    let before = rig.engine.stats().clone();
    match rig
        .engine
        .handle(data, &rig.arrival, &mut rig.db, rig.now_ms)
    {
        Decision::Reply(r) => {
            // Whatever it answers is a DHCP message a client can read, for
            // the transaction the client started, at least BOOTP's 300
            // bytes, and within the client's maximum message size (576 by
            // RFC 2131 unless its option 57 says more). The echoed relay
            // information (82) does not count: whoever added it (a relay,
            // a snooping switch) strips it before the client sees the reply.
            let m = Message::decode(&mut Decoder::new(&r.packet))
                .unwrap_or_else(|e| panic!("reply does not decode: {e}"));
            assert_eq!(m.xid().to_be_bytes(), data[4..8], "reply xid");
            let req = request::decode(data).expect("a request that was answered decodes");
            let echo = req
                .relay_info
                .as_ref()
                .map_or(0, |r| r.len() + 2 * r.len().div_ceil(255).max(1));
            let limit = reply::size_limit(&req);
            assert!(r.packet.len() >= 300, "reply of {} bytes", r.packet.len());
            assert!(
                r.packet.len().saturating_sub(echo) <= limit,
                "reply of {} bytes ({echo} of them relay information) for a client limit of {limit}",
                r.packet.len()
            );
            let s = rig.engine.stats();
            assert_eq!(
                s.offers + s.acks + s.naks,
                before.offers + before.acks + before.naks + 1,
                "a reply is counted once"
            );
        }
        Decision::Probe { .. } => panic!("no-ping is set, yet the engine asked for a ping"),
        Decision::Done => {}
        Decision::Ignored(_) => {
            assert_eq!(
                rig.engine.stats().ignored_total(),
                before.ignored_total() + 1,
                "an ignored packet is counted once"
            );
        }
    }
    assert_eq!(rig.engine.stats().received, before.received + 1);
});
