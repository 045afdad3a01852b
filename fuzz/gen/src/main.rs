//! Writes the seed corpus under `fuzz/corpus/<target>/`: real DHCP and DNS
//! packets built with dhcproto and hickory-proto, the repository's conf
//! files, failover frames from the real link, and dnsmasq lease files.
//! Run from anywhere: `cargo run --manifest-path fuzz/Cargo.toml -p
//! twinmasq-fuzz-corpus`. Output is deterministic, so a rerun leaves git
//! clean.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::Encodable;
use hickory_proto::op::{Edns, Message as DnsMessage, MessageType as DnsType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use twinmasq_proto::key::Key;
use twinmasq_proto::link::{Hello, Link, Message, ResumePoint, Role, SyncStart, PROTOCOL_VERSION};
use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState, Stamp};

/// Must match `fuzz_targets/failover_frame.rs`.
const SHARED: [u8; 32] = [0x5a; 32];
const LINK_NONCE: [u8; 32] = [0x11; 32];

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const UNSPEC: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = repo().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn dhcp(
    xid: u32,
    mac: [u8; 6],
    kind: MessageType,
    ciaddr: Ipv4Addr,
    opts: Vec<DhcpOption>,
) -> Vec<u8> {
    let mut m = v4::Message::new_with_id(xid, ciaddr, UNSPEC, UNSPEC, UNSPEC, &mac);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().expect("a DHCP message encodes")
}

fn dhcp_seeds() {
    let a = [2, 0, 0, 0, 0, 0xa];
    let prl = DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
    ]);
    let ask = DhcpOption::RequestedIpAddress(Ipv4Addr::new(198, 18, 0, 12));
    let sid = DhcpOption::ServerIdentifier(SERVER);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "discover",
            dhcp(
                1,
                a,
                MessageType::Discover,
                UNSPEC,
                vec![
                    prl.clone(),
                    DhcpOption::Hostname("laptop".into()),
                    DhcpOption::MaxMessageSize(1500),
                ],
            ),
        ),
        (
            "request-selecting",
            dhcp(
                2,
                a,
                MessageType::Request,
                UNSPEC,
                vec![prl.clone(), ask.clone(), sid.clone()],
            ),
        ),
        (
            "request-init-reboot",
            dhcp(3, a, MessageType::Request, UNSPEC, vec![ask.clone()]),
        ),
        (
            "request-renewing",
            dhcp(
                4,
                a,
                MessageType::Request,
                Ipv4Addr::new(198, 18, 0, 12),
                vec![prl.clone()],
            ),
        ),
        (
            "release",
            dhcp(
                5,
                a,
                MessageType::Release,
                Ipv4Addr::new(198, 18, 0, 12),
                vec![sid.clone()],
            ),
        ),
        (
            "decline",
            dhcp(6, a, MessageType::Decline, UNSPEC, vec![ask, sid]),
        ),
        (
            "inform",
            dhcp(
                7,
                a,
                MessageType::Inform,
                Ipv4Addr::new(198, 18, 0, 50),
                vec![prl.clone()],
            ),
        ),
        (
            "discover-reserved",
            dhcp(
                8,
                [2, 0, 0, 0, 0, 7],
                MessageType::Discover,
                UNSPEC,
                vec![prl.clone()],
            ),
        ),
        (
            "discover-client-id",
            dhcp(
                9,
                [2, 0, 0, 0, 0, 9],
                MessageType::Discover,
                UNSPEC,
                vec![prl, DhcpOption::ClientIdentifier(vec![1, 2, 3])],
            ),
        ),
    ];
    for (name, bytes) in seeds {
        write("dhcp_engine", name, &bytes);
    }
    // Relay information too long for one option, split in two (RFC 3396):
    // its echo alone makes the reply longer than 548 bytes (found by the
    // fuzzer; the relay strips it, so the client's limit still holds).
    let mut relayed = dhcp(
        10,
        a,
        MessageType::Request,
        UNSPEC,
        vec![
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(198, 18, 0, 37)),
            DhcpOption::ServerIdentifier(SERVER),
        ],
    );
    let end = relayed
        .iter()
        .rposition(|&b| b == 255)
        .expect("an end option");
    relayed.truncate(end);
    for part in [198u8, 82] {
        relayed.extend_from_slice(&[82, part]);
        relayed.extend(std::iter::repeat_n(0x52, usize::from(part)));
    }
    relayed.push(255);
    write("dhcp_engine", "request-long-relay-info", &relayed);
}

fn dns_query(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = DnsMessage::new(id, DnsType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("a valid name"),
        qtype,
    ));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m.to_vec().expect("a DNS query encodes")
}

fn dns_seeds() {
    let seeds = [
        ("a-lease", "laptop.home.test.", RecordType::A, None),
        ("a-hosts", "hostfile.", RecordType::A, None),
        (
            "aaaa-host-record",
            "rec.home.test.",
            RecordType::AAAA,
            Some(1232),
        ),
        (
            "ptr-hosts",
            "5.0.18.198.in-addr.arpa.",
            RecordType::PTR,
            None,
        ),
        (
            "ptr-private",
            "3.2.1.10.in-addr.arpa.",
            RecordType::PTR,
            None,
        ),
        ("mx", "home.test.", RecordType::MX, None),
        ("srv", "_ldap._tcp.home.test.", RecordType::SRV, None),
        ("txt", "home.test.", RecordType::TXT, Some(4096)),
        ("cname", "alias.home.test.", RecordType::A, None),
        ("address", "www.ads.example.", RecordType::A, None),
        ("blocked", "blocked.test.", RecordType::AAAA, None),
        ("forward", "www.example.com.", RecordType::A, Some(1232)),
        ("forward-domain", "git.corp.test.", RecordType::A, None),
        ("unqualified", "nosuchhost.", RecordType::A, None),
        ("any", "laptop.home.test.", RecordType::ANY, Some(4096)),
    ];
    for (i, (file, name, qtype, edns)) in seeds.into_iter().enumerate() {
        write(
            "dns_query",
            file,
            &dns_query(0x1000 + i as u16, name, qtype, edns),
        );
    }
}

fn config_seeds() {
    let files = [
        ("dnsmasq.conf.example", "dnsmasq.conf.example"),
        (
            "dnsmasq-realistic.conf",
            "tests/data/dnsmasq-realistic.conf",
        ),
        ("10-lab.conf", "tests/data/dnsmasq.d/10-lab.conf"),
        ("20-voip.conf", "tests/data/dnsmasq.d/20-voip.conf"),
    ];
    for (name, path) in files {
        let text = std::fs::read(repo().join(path)).expect("read repository conf file");
        write("config", name, &text);
    }
    // Conf text, NUL, then one command-line argument per line.
    write(
        "config",
        "cmdline",
        b"domain=home.test\n\0--no-daemon\n-p\n5353\n--dhcp-range=198.18.0.10,198.18.0.20,12h\n-kd\n--log-queries",
    );
    write(
        "config",
        "cmdline-failover",
        b"\0--interface=lo\n--bind-interfaces\n-A\n/ads.example/198.18.0.99\n--server=/corp.test/198.18.0.54",
    );
}

fn hello(role: Role, nonce: [u8; 32]) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role,
        node: 9,
        nonce,
        ranges: [3; 32],
        wall_ms: 1_800_000_000_000,
        mclt_ms: 3_600_000,
        terms: "ranges [198.18.0.10-198.18.0.99], failover-split 50".into(),
    }
}

fn key() -> Key {
    Key::parse(&Key::format_new(SHARED), "corpus").expect("a fresh key parses")
}

fn some_lease() -> LeaseRecord {
    let hw = [2, 0, 0, 0, 0, 0xa];
    LeaseRecord {
        ip: Ipv4Addr::new(198, 18, 0, 12),
        state: LeaseState::Bound,
        client: ClientKey::from_hwaddr(1, &hw),
        htype: 1,
        hwaddr: hw.to_vec(),
        client_id: None,
        hostname: Some("laptop".into()),
        expires: Expiry::At(1_800_003_600),
        stamp: Stamp::default(),
    }
}

fn session_messages() -> Vec<Message> {
    vec![
        Message::SyncStart(SyncStart {
            incarnation: 7,
            resume: Some(ResumePoint {
                peer_incarnation: 9,
                applied_through: 3,
                kept_from: 2,
            }),
        }),
        Message::LeasePage {
            records: vec![some_lease()],
            last: Some(4),
        },
        Message::SyncDone {
            serial: 1,
            through: 4,
        },
        Message::Synced,
        Message::Update {
            seq: 1,
            records: vec![some_lease()],
        },
        Message::Ack {
            seq: 1,
            lost: vec![],
        },
        Message::Ack {
            seq: 2,
            lost: vec![Stamp {
                wall_ms: 1_800_000_000_000,
                counter: 1,
                node: 2,
            }],
        },
        Message::Heartbeat {
            wall_ms: 1_800_000_000_500,
        },
        Message::Error {
            reason: "ranges differ".into(),
        },
    ]
}

/// Raw mode: everything a real peer link writes in a whole session with
/// the link under test, whose hello it really read.
fn raw_session(role: Role) -> Vec<u8> {
    let peer_role = if role == Role::Primary {
        Role::Secondary
    } else {
        Role::Primary
    };
    let mut under_test = Link::new(key(), hello(role, LINK_NONCE));
    let mut peer = Link::new(key(), hello(peer_role, [0x22; 32]));
    peer.receive(&under_test.take_output())
        .expect("hello verifies");
    let mut sent = peer.take_output();
    under_test
        .receive(&sent)
        .expect("peer hello and auth verify");
    peer.receive(&under_test.take_output())
        .expect("auth verifies");
    assert!(peer.is_established());
    for m in session_messages() {
        peer.send(&m).expect("send");
    }
    sent.extend(peer.take_output());
    sent
}

/// Script steps of `fuzz_targets/failover_frame.rs`.
const HELLO_OP: u8 = 0x00;
const AUTH_OP: u8 = 0x01;
const BODY_OP: u8 = 0x02;
const GOOD_PROOF: u8 = 4;

/// A hello step; a wrong version is taken from the op's high nibble.
fn hello_op(good_version: bool, other_role: bool) -> u8 {
    let mut op = HELLO_OP;
    if good_version {
        op |= 4;
    }
    if other_role {
        op |= 8;
    }
    op
}

fn script_body(out: &mut Vec<u8>, body: &[u8]) {
    out.push(BODY_OP);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn failover_seeds() {
    for (bit, role) in [(0u8, Role::Primary), (1, Role::Secondary)] {
        let name = if bit == 0 { "primary" } else { "secondary" };
        let mut raw = vec![bit | 2, 0];
        raw.extend(raw_session(role));
        write("failover_frame", &format!("raw-session-{name}"), &raw);
        let mut raw_bytewise = vec![bit | 2, 1];
        raw_bytewise.extend(raw_session(role));
        write(
            "failover_frame",
            &format!("raw-session-bytewise-{name}"),
            &raw_bytewise,
        );

        // Script: a correct hello and proof, then every session message.
        let mut s = vec![bit, hello_op(true, true)];
        s.extend_from_slice(&[0x33; 32]);
        s.push(AUTH_OP | GOOD_PROOF);
        for m in session_messages() {
            script_body(&mut s, &twinmasq_proto::encode(&m).expect("encode"));
        }
        write("failover_frame", &format!("script-session-{name}"), &s);

        let mut bad_version = vec![bit, 0x70 | hello_op(false, true)];
        bad_version.extend_from_slice(&[0x33; 32]);
        write(
            "failover_frame",
            &format!("script-bad-version-{name}"),
            &bad_version,
        );

        let mut same_role = vec![bit, hello_op(true, false)];
        same_role.extend_from_slice(&[0x33; 32]);
        write(
            "failover_frame",
            &format!("script-same-role-{name}"),
            &same_role,
        );

        let mut bad_proof = vec![bit, hello_op(true, true)];
        bad_proof.extend_from_slice(&[0x33; 32]);
        bad_proof.push(AUTH_OP);
        bad_proof.extend_from_slice(&[0x44; 32]);
        write(
            "failover_frame",
            &format!("script-bad-proof-{name}"),
            &bad_proof,
        );

        // A message before the handshake, and raw junk after it.
        let mut early = vec![bit];
        script_body(
            &mut early,
            &twinmasq_proto::encode(&Message::Ack {
                seq: 0,
                lost: vec![],
            })
            .expect("encode"),
        );
        write(
            "failover_frame",
            &format!("script-early-message-{name}"),
            &early,
        );
    }
}

fn lease_seeds() {
    write(
        "lease_file",
        "dnsmasq.leases",
        b"1800003600 02:00:00:00:00:0a 198.18.0.12 laptop *\n\
          1800007200 02:00:00:00:00:0b 198.18.0.13 * 01:02:00:00:00:00:0b\n\
          0 02:00:00:00:00:07 198.18.0.7 printer *\n\
          1700000000 02:00:00:00:00:0c 198.18.0.14 old-phone ff:00:00:00:01:00:01:2a:2b\n\
          1800003600 06-02:00:00:00:00:0d 198.18.0.15 tokenring *\n\
          1800003600 00- 198.18.0.16 nohw 01:aa\n",
    );
    write(
        "lease_file",
        "dnsmasq-with-ipv6.leases",
        b"1800003600 02:00:00:00:00:0a 198.18.0.12 laptop 01:02:00:00:00:00:0a\n\
          duid 00:01:00:01:2a:2b:2c:2d:02:00:00:00:00:0a\n\
          1800003600 1234567 2001:db8::12 laptop 00:01:00:01:2a:2b:2c:2d:02:00:00:00:00:0a\n",
    );
    write("lease_file", "empty.leases", b"");
}

fn main() {
    dhcp_seeds();
    dns_seeds();
    config_seeds();
    failover_seeds();
    lease_seeds();
    println!(
        "corpus written under {}",
        repo().join("fuzz/corpus").display()
    );
}
