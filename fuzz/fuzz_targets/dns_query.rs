//! DNS query decode and answer: the sans-I/O engine with the real
//! authority (hosts text, config records, lease names) behind it. The
//! fuzz input is one query as it arrived over UDP, and again over TCP.
//!
//! The engine lives for the whole process, so its cache and pending
//! forwards carry over; the clock moves 100 ms per input and `tick` times
//! out forwards nobody answers.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use twinmasq::dns::authority::Authority;
use twinmasq::dns::engine::{Action, ClientRef, DnsEngine, Transport, MAX_UDP_LIMIT};
use twinmasq::dns::zone::Net;
use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState, Stamp};

const CONF: &str = "\
domain=home.test
expand-hosts
domain-needed
bogus-priv
local=/home.test/
server=198.18.0.53
server=/corp.test/198.18.0.54
address=/ads.example/198.18.0.99
address=/blocked.test/
cname=alias.home.test,hostfile
mx-host=home.test,mail.home.test,10
srv-host=_ldap._tcp.home.test,ldap.home.test,389
txt-record=home.test,\"v=spf1 -all\"
host-record=rec.home.test,198.18.0.20,2001:db8::20
ptr-record=21.0.18.198.in-addr.arpa,named.home.test
local-ttl=5
localise-queries
";

const HOSTS: &str = "198.18.0.5 hostfile hostfile.alias\n\
                     198.18.0.6 fq.home.test\n\
                     2001:db8::6 v6only\n\
                     10.1.2.3 privhost\n\
                     198.18.1.7 multi\n\
                     198.18.0.7 multi\n";

const NOW_SECS: u64 = 1_800_000_000;

fn lease(last: u8, host: &str) -> LeaseRecord {
    let hw = [2, 0, 0, 0, 0, last];
    LeaseRecord {
        ip: Ipv4Addr::new(198, 18, 0, last),
        state: LeaseState::Bound,
        client: ClientKey::from_hwaddr(1, &hw),
        htype: 1,
        hwaddr: hw.to_vec(),
        client_id: None,
        hostname: Some(host.to_string()),
        expires: Expiry::At(NOW_SECS + 1_000_000),
        stamp: Stamp::default(),
    }
}

struct Rig {
    engine: DnsEngine<Authority>,
    now_ms: u64,
}

fn rig() -> Rig {
    let cfg =
        twinmasq::config::parse_conf_text(CONF, "fuzz.conf").expect("the fixed config parses");
    let mut auth = Authority::new(&cfg, &[(PathBuf::from("/fuzz/hosts"), HOSTS.to_string())]);
    auth.lease_changed(&lease(30, "laptop"), NOW_SECS);
    auth.lease_changed(&lease(31, "Phone"), NOW_SECS);
    Rig {
        engine: DnsEngine::with_seed(&cfg.dns, auth, 42),
        now_ms: NOW_SECS * 1000,
    }
}

static RIG: Mutex<Option<Rig>> = Mutex::new(None);

fn check(query: &[u8], actions: &[Action], transport: Transport) {
    for a in actions {
        let Action::Reply { bytes, client } = a else {
            continue;
        };
        assert_eq!(client.transport, transport);
        // A reply always answers this query: same id, QR set, and it reads
        // back as a DNS message.
        assert_eq!(bytes[..2], query[..2], "reply id");
        assert!(bytes[2] & 0x80 != 0, "reply has QR set");
        if let Err(e) = Message::from_vec(bytes) {
            panic!("reply does not decode: {e}");
        }
        let limit = match transport {
            Transport::Udp => MAX_UDP_LIMIT,
            Transport::Tcp => usize::from(u16::MAX),
        };
        assert!(bytes.len() <= limit, "{} byte reply", bytes.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = RIG.lock().unwrap_or_else(|p| p.into_inner());
    let rig = guard.get_or_insert_with(rig);
    rig.now_ms += 100;
    rig.engine.tick(rig.now_ms);
    for (transport, conn) in [(Transport::Udp, 0), (Transport::Tcp, 9)] {
        let client = ClientRef {
            addr: SocketAddr::from(([198, 18, 2, 1], 40000)),
            transport,
            conn,
            arrival: Some(Net {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                prefix: 24,
            }),
        };
        let actions = rig.engine.query(data, client, rig.now_ms);
        check(data, &actions, transport);
    }
});
