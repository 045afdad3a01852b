//! Engine tests: a fake LocalData, and "upstream servers" that are just
//! functions from query bytes to reply bytes.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::dns::forward::{CASE_STRIKES, PLAIN_CASE_MS};

#[derive(Default)]
struct FakeLocal {
    names: HashMap<String, Lookup>,
    /// Authoritative-zone verdicts by name; others are NotMine.
    zone: HashMap<String, AuthVerdict>,
    /// The IXFR serial the engine passed on last.
    seen_client_serial: std::cell::Cell<Option<u32>>,
}

impl LocalData for FakeLocal {
    fn lookup(&self, name: &Name, _qtype: RecordType, _arrival: Option<Net>, _now: u64) -> Lookup {
        self.names
            .get(&name.to_lowercase().to_ascii())
            .cloned()
            .unwrap_or(Lookup::Forward(Route::Default))
    }

    fn auth(&self, q: &AuthQuery<'_>, _now: u64) -> AuthVerdict {
        self.seen_client_serial.set(q.client_serial);
        self.zone
            .get(&q.name.to_lowercase().to_ascii())
            .cloned()
            .unwrap_or(AuthVerdict::NotMine)
    }

    fn zone_serial(&self) -> Option<u32> {
        Some(42)
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn a(n: &str, ttl: u32, last: u8) -> Record {
    Record::from_rdata(name(n), ttl, RData::A(A(Ipv4Addr::new(198, 18, 1, last))))
}

fn srv(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, n], 53))
}

fn client(n: u8) -> ClientRef {
    ClientRef {
        addr: SocketAddr::from(([198, 18, 2, n], 40000 + u16::from(n))),
        transport: Transport::Udp,
        conn: 0,
        arrival: None,
    }
}

fn tcp_client(n: u8) -> ClientRef {
    ClientRef {
        transport: Transport::Tcp,
        conn: 7,
        ..client(n)
    }
}

fn query_bytes(id: u16, qname: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

/// An upstream server's answer to `query`.
fn answer(query: &[u8], rcode: ResponseCode, answers: Vec<Record>, auth: Vec<Record>) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    m.queries = q.queries.clone();
    m.answers = answers;
    m.authorities = auth;
    m.edns = q.edns.clone();
    m.to_vec().unwrap()
}

fn cfg(servers: &[SocketAddr]) -> DnsConfig {
    DnsConfig {
        servers: servers.to_vec(),
        ..DnsConfig::default()
    }
}

fn engine(c: &DnsConfig) -> DnsEngine<FakeLocal> {
    DnsEngine::with_seed(c, FakeLocal::default(), 42)
}

/// `actions` without the sockets closed, which every answered forward
/// also brings.
fn sends(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::CloseUpstream { .. }))
        .cloned()
        .collect()
}

fn reply_of(actions: &[Action]) -> Message {
    match sends(actions).as_slice() {
        [Action::Reply { bytes, .. }] => Message::from_vec(bytes).unwrap(),
        other => panic!("expected one reply, got {other:?}"),
    }
}

fn upstreams(actions: &[Action]) -> Vec<(SocketAddr, u64, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Upstream {
                server,
                socket,
                bytes,
            } => Some((*server, *socket, bytes.clone())),
            _ => None,
        })
        .collect()
}

fn soa_rec() -> Record {
    Record::from_rdata(
        name("example."),
        3600,
        RData::SOA(SOA::new(
            name("ns.example."),
            name("host.example."),
            1,
            3600,
            600,
            86400,
            60,
        )),
    )
}

#[test]
fn dns_local_answer() {
    let mut local = FakeLocal::default();
    local.names.insert(
        "host.lan.".into(),
        Lookup::Local {
            rcode: ResponseCode::NoError,
            answers: vec![a("host.lan.", 0, 5)],
            authorities: vec![],
            authoritative: true,
        },
    );
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), local, 1);
    let out = e.query(
        &query_bytes(0x1234, "HOST.lan.", RecordType::A, None),
        client(1),
        0,
    );
    let m = reply_of(&out);
    assert_eq!(m.metadata.id, 0x1234);
    assert!(m.metadata.recursion_available && m.metadata.recursion_desired);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1);
    // The question is echoed as asked.
    assert_eq!(m.queries[0].name.to_ascii(), "HOST.lan.");
    assert_eq!(e.stats().local_answers, 1);
    assert!(e.local().names.contains_key("host.lan."));
}

/// Forward one query and answer it from `server`.
fn round_trip(
    e: &mut DnsEngine<FakeLocal>,
    id: u16,
    qname: &str,
    now: u64,
    make: impl Fn(&[u8]) -> Vec<u8>,
) -> Message {
    let out = e.query(&query_bytes(id, qname, RecordType::A, None), client(1), now);
    let ups = upstreams(&out);
    assert!(!ups.is_empty(), "expected forwarding, got {out:?}");
    let (server, socket, bytes) = &ups[0];
    let r = e.upstream_reply(&make(bytes), *server, *socket, now + 5);
    reply_of(&r)
}

#[test]
fn dns_cache_hit_counts_ttl_down() {
    let mut e = engine(&cfg(&[srv(1)]));
    let m = round_trip(&mut e, 7, "www.example.", 1_000, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![a("www.example.", 300, 1)],
            vec![],
        )
    });
    assert_eq!(m.metadata.id, 7);
    assert_eq!(m.answers[0].ttl, 300);
    let out = e.query(
        &query_bytes(8, "WWW.example.", RecordType::A, None),
        client(2),
        11_000,
    );
    let m = reply_of(&out);
    assert_eq!(m.metadata.id, 8);
    // Stored at 1.005 s, asked at 11 s: 9 whole seconds gone.
    assert_eq!(m.answers[0].ttl, 291);
    assert!(m.metadata.recursion_available);
    assert_eq!(e.stats().cache_hits, 1);
    assert_eq!(e.stats().cache_misses, 1);
    e.clear_cache();
    let out = e.query(
        &query_bytes(9, "www.example.", RecordType::A, None),
        client(2),
        12_000,
    );
    assert_eq!(upstreams(&out).len(), 1);
}

#[test]
fn dns_ttl0_answers_not_cached() {
    let mut e = engine(&cfg(&[srv(1)]));
    round_trip(&mut e, 7, "zero.example.", 0, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![a("zero.example.", 0, 1)],
            vec![],
        )
    });
    assert_eq!(e.cache_len(), 0);
}

#[test]
fn dns_negative_caching_and_no_negcache() {
    let mut e = engine(&cfg(&[srv(1)]));
    let m = round_trip(&mut e, 1, "nx.example.", 0, |q| {
        answer(q, ResponseCode::NXDomain, vec![], vec![soa_rec()])
    });
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let out = e.query(
        &query_bytes(2, "nx.example.", RecordType::A, None),
        client(1),
        5_000,
    );
    let m = reply_of(&out);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // SOA minimum 60, stored at 5 ms, asked at 5 s.
    assert_eq!(m.authorities[0].ttl, 56);

    let mut e = engine(&DnsConfig {
        no_negcache: true,
        ..cfg(&[srv(1)])
    });
    round_trip(&mut e, 1, "nx.example.", 0, |q| {
        answer(q, ResponseCode::NXDomain, vec![], vec![soa_rec()])
    });
    let out = e.query(
        &query_bytes(2, "nx.example.", RecordType::A, None),
        client(1),
        5_000,
    );
    assert_eq!(upstreams(&out).len(), 1);
}

#[test]
fn dns_cache_bound_in_engine() {
    let mut e = engine(&DnsConfig {
        cache_size: 2,
        ..cfg(&[srv(1)])
    });
    for (i, n) in ["a.example.", "b.example.", "c.example."]
        .iter()
        .enumerate()
    {
        round_trip(&mut e, i as u16, n, i as u64 * 10, |q| {
            answer(q, ResponseCode::NoError, vec![a(n, 300, 1)], vec![])
        });
    }
    assert_eq!(e.cache_len(), 2);
    // a. was the least recently used: gone.
    let out = e.query(
        &query_bytes(50, "a.example.", RecordType::A, None),
        client(1),
        100,
    );
    assert_eq!(upstreams(&out).len(), 1);
    let out = e.query(
        &query_bytes(51, "c.example.", RecordType::A, None),
        client(1),
        100,
    );
    assert!(upstreams(&out).is_empty());
}

#[test]
fn dns_forward_randomises_id_socket_and_case() {
    let mut e = engine(&DnsConfig {
        strict_order: true,
        dns_forward_max: 1000,
        ..cfg(&[srv(1)])
    });
    let mut ids = std::collections::HashSet::new();
    let mut sockets = std::collections::HashSet::new();
    let mut cases = std::collections::HashSet::new();
    for i in 0..200u16 {
        let out = e.query(
            &query_bytes(1, &format!("n{i}.example."), RecordType::A, None),
            client(1),
            0,
        );
        let ups = upstreams(&out);
        assert_eq!(ups.len(), 1);
        let (_, socket, bytes) = &ups[0];
        ids.insert(u16::from_be_bytes([bytes[0], bytes[1]]));
        // A socket of its own, never the shared query-port one.
        assert_ne!(*socket, SHARED_SOCKET);
        sockets.insert(*socket);
        let m = Message::from_vec(bytes).unwrap();
        let sent = m.queries[0].name().to_ascii();
        assert!(sent.eq_ignore_ascii_case(&format!("n{i}.example.")));
        cases.insert(
            sent.chars()
                .filter(char::is_ascii_alphabetic)
                .collect::<String>(),
        );
    }
    assert!(ids.len() > 190, "ids not random: {}", ids.len());
    assert_eq!(sockets.len(), 200, "a new socket per forward");
    // "nexample": 8 letters, 256 patterns; 200 draws hit well over 100.
    assert!(cases.len() > 100, "letter case not random: {}", cases.len());
    assert_eq!(e.stats().forwarded, 200);

    // With query-port: every query on the one shared socket, never closed.
    let mut e = engine(&DnsConfig {
        query_port: Some(5353),
        ..cfg(&[srv(1)])
    });
    let out = e.query(
        &query_bytes(1, "shared.example.", RecordType::A, None),
        client(1),
        0,
    );
    let (s, socket, q) = upstreams(&out).remove(0);
    assert_eq!(socket, SHARED_SOCKET);
    let r = answer(
        &q,
        ResponseCode::NoError,
        vec![a("shared.example.", 60, 1)],
        vec![],
    );
    let out = e.upstream_reply(&r, s, socket, 1);
    assert!(
        out.iter()
            .all(|a| !matches!(a, Action::CloseUpstream { .. })),
        "{out:?}"
    );
    assert_eq!(reply_of(&out).answers.len(), 1);
}

#[test]
fn dns_mismatched_replies_rejected() {
    let mut e = engine(&cfg(&[srv(1)]));
    let out = e.query(
        &query_bytes(5, "www.example.", RecordType::A, None),
        client(1),
        0,
    );
    let (server, socket, q) = upstreams(&out).remove(0);
    let good = answer(
        &q,
        ResponseCode::NoError,
        vec![a("www.example.", 60, 1)],
        vec![],
    );

    let mut bad_id = good.clone();
    bad_id[1] ^= 0xff;
    assert!(e.upstream_reply(&bad_id, server, socket, 1).is_empty());
    assert_eq!(e.stats().dropped.unknown_id, 1);

    // The right id on another forward's socket.
    let other = e.query(
        &query_bytes(6, "other.example.", RecordType::A, None),
        client(1),
        0,
    );
    let (_, other_socket, _) = upstreams(&other).remove(0);
    assert_ne!(other_socket, socket);
    assert!(e.upstream_reply(&good, server, other_socket, 1).is_empty());
    assert_eq!(e.stats().dropped.wrong_socket, 1);

    assert!(e.upstream_reply(&good, srv(9), socket, 1).is_empty());
    assert_eq!(e.stats().dropped.wrong_source, 1);

    let mut other_q = query_bytes(0, "evil.example.", RecordType::A, None);
    other_q[..2].copy_from_slice(&q[..2]);
    let spoof = answer(
        &other_q,
        ResponseCode::NoError,
        vec![a("evil.example.", 60, 66)],
        vec![],
    );
    assert!(e.upstream_reply(&spoof, server, socket, 1).is_empty());
    assert_eq!(e.stats().dropped.wrong_question, 1);

    let mut other_type = query_bytes(0, "www.example.", RecordType::AAAA, None);
    other_type[..2].copy_from_slice(&q[..2]);
    let spoof = answer(&other_type, ResponseCode::NoError, vec![], vec![]);
    assert!(e.upstream_reply(&spoof, server, socket, 1).is_empty());
    assert_eq!(e.stats().dropped.wrong_question, 2);

    // A query (QR clear) is not a reply.
    assert!(e.upstream_reply(&q, server, socket, 1).is_empty());
    assert_eq!(e.stats().dropped.malformed_reply, 1);

    let out = e.upstream_reply(&good, server, socket, 2);
    let m = reply_of(&out);
    assert_eq!(m.metadata.id, 5);
    // Answered: its socket is closed.
    assert!(out.contains(&Action::CloseUpstream { socket }), "{out:?}");
    // Nothing is cached from the spoofs.
    assert_eq!(e.cache_len(), 1);
    // A second copy of the good answer finds nothing pending.
    assert!(e.upstream_reply(&good, server, socket, 3).is_empty());
}

#[test]
fn dns_retry_next_server_on_timeout_then_silence() {
    let mut e = engine(&DnsConfig {
        strict_order: true,
        ..cfg(&[srv(1), srv(2)])
    });
    let out = e.query(
        &query_bytes(5, "slow.example.", RecordType::A, None),
        client(1),
        0,
    );
    let ups = upstreams(&out);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].0, srv(1));
    assert_eq!(e.next_deadline(), Some(UDP_TIMEOUT_MS));
    assert!(e.tick(999).is_empty());
    let out = e.tick(1000);
    let ups2 = upstreams(&out);
    assert_eq!(ups2.len(), 1);
    assert_eq!(ups2[0].0, srv(2));
    // A new socket (a new port) and a new id for the next server.
    assert_ne!(ups2[0].1, ups[0].1);
    assert_ne!(ups2[0].2[..2], ups[0].2[..2]);
    // Every server timed out: like dnsmasq, no answer (the client retries),
    // and the pending query is gone, its sockets closed.
    let out = e.tick(2000);
    assert!(sends(&out).is_empty(), "{out:?}");
    assert_eq!(out.len(), 2);
    assert_eq!(e.stats().upstream_timeouts, 1);
    // Two silent attempts, one query left without an answer.
    assert_eq!(e.stats().upstream_attempt_timeouts, 2);
    assert_eq!(e.stats().upstream_errors, 2);
    assert_eq!(e.stats().upstream_latency.count, 0);
    assert_eq!(e.stats().servfail, 0);
    assert_eq!(e.pending_len(), 0);
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn dns_servfail_and_refused_move_on() {
    let mut e = engine(&DnsConfig {
        strict_order: true,
        ..cfg(&[srv(1), srv(2)])
    });
    let out = e.query(
        &query_bytes(5, "x.example.", RecordType::A, None),
        client(1),
        0,
    );
    let (s, sock, q) = upstreams(&out).remove(0);
    let out = e.upstream_reply(
        &answer(&q, ResponseCode::Refused, vec![], vec![]),
        s,
        sock,
        1,
    );
    // srv(1) has answered: its socket closes.
    assert!(out.contains(&Action::CloseUpstream { socket: sock }));
    let (s2, sock2, q2) = upstreams(&out).remove(0);
    assert_eq!(s2, srv(2));
    let out = e.upstream_reply(
        &answer(&q2, ResponseCode::ServFail, vec![], vec![]),
        s2,
        sock2,
        30,
    );
    assert_eq!(
        reply_of(&out).metadata.response_code,
        ResponseCode::ServFail
    );
    let st = e.stats();
    assert_eq!(st.upstream_errors, 2);
    assert_eq!(st.upstream_attempt_timeouts, 0);
    // Each answer is timed from its own attempt: 1 ms, then 29 ms.
    assert_eq!(st.upstream_latency.count, 2);
    assert_eq!(st.upstream_latency.sum_ms, 30);
    assert_eq!(st.upstream_latency.buckets[0], 1);
    assert_eq!(st.upstream_latency.buckets[3], 1);
    assert_eq!(st.upstream_latency.buckets[4], 2);
}

#[test]
fn dns_strict_order_always_starts_first() {
    let mut e = engine(&DnsConfig {
        strict_order: true,
        ..cfg(&[srv(1), srv(2)])
    });
    for i in 0..5u16 {
        let out = e.query(
            &query_bytes(i, &format!("s{i}.example."), RecordType::A, None),
            client(1),
            u64::from(i) * 100,
        );
        let ups = upstreams(&out);
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].0, srv(1));
    }
}

#[test]
fn dns_default_prefers_fastest() {
    let mut e = engine(&cfg(&[srv(1), srv(2), srv(3)]));
    // The first query probes all servers; srv(2) answers first.
    let out = e.query(
        &query_bytes(1, "p.example.", RecordType::A, None),
        client(1),
        0,
    );
    let ups = upstreams(&out);
    assert_eq!(ups.len(), 3);
    let (_, sock, q) = &ups[1];
    e.upstream_reply(
        &answer(
            q,
            ResponseCode::NoError,
            vec![a("p.example.", 60, 1)],
            vec![],
        ),
        srv(2),
        *sock,
        10,
    );
    let out = e.query(
        &query_bytes(2, "q.example.", RecordType::A, None),
        client(1),
        100,
    );
    let ups = upstreams(&out);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].0, srv(2));
    // It times out: the next query goes elsewhere first.
    e.tick(1100);
    let out = e.query(
        &query_bytes(3, "r.example.", RecordType::A, None),
        client(1),
        1200,
    );
    assert_ne!(upstreams(&out)[0].0, srv(2));
}

#[test]
fn dns_all_servers_first_good_wins() {
    let mut e = engine(&DnsConfig {
        all_servers: true,
        ..cfg(&[srv(1), srv(2), srv(3)])
    });
    let out = e.query(
        &query_bytes(9, "all.example.", RecordType::A, None),
        client(1),
        0,
    );
    let ups = upstreams(&out);
    assert_eq!(ups.len(), 3);
    // One socket per server.
    let sockets: std::collections::HashSet<u64> = ups.iter().map(|u| u.1).collect();
    assert_eq!(sockets.len(), 3);
    let (_, sock, q) = ups[0].clone();
    // One fails: keep waiting for the others.
    assert_eq!(
        sends(&e.upstream_reply(
            &answer(&q, ResponseCode::ServFail, vec![], vec![]),
            srv(1),
            sock,
            1
        )),
        vec![]
    );
    let answer_from = |i: usize| {
        answer(
            &ups[i].2,
            ResponseCode::NoError,
            vec![a("all.example.", 60, 3)],
            vec![],
        )
    };
    let out = e.upstream_reply(&answer_from(2), srv(3), ups[2].1, 2);
    assert_eq!(reply_of(&out).answers.len(), 1);
    // The others' sockets close with it.
    assert!(out.contains(&Action::CloseUpstream { socket: ups[1].1 }));
    assert!(out.contains(&Action::CloseUpstream { socket: ups[2].1 }));
    assert!(e
        .upstream_reply(&answer_from(1), srv(2), ups[1].1, 3)
        .is_empty());
}

#[test]
fn dns_all_servers_all_fail_servfail() {
    let mut e = engine(&DnsConfig {
        all_servers: true,
        ..cfg(&[srv(1), srv(2)])
    });
    let out = e.query(
        &query_bytes(9, "all.example.", RecordType::A, None),
        client(1),
        0,
    );
    let ups = upstreams(&out);
    let bad = |i: usize| answer(&ups[i].2, ResponseCode::ServFail, vec![], vec![]);
    assert!(sends(&e.upstream_reply(&bad(0), srv(1), ups[0].1, 1)).is_empty());
    let m = reply_of(&e.upstream_reply(&bad(1), srv(2), ups[1].1, 2));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

fn big_local(n: u8) -> FakeLocal {
    let mut local = FakeLocal::default();
    local.names.insert(
        "big.lan.".into(),
        Lookup::Local {
            rcode: ResponseCode::NoError,
            answers: (0..n).map(|i| a("big.lan.", 0, i)).collect(),
            authorities: vec![],
            authoritative: false,
        },
    );
    local
}

#[test]
fn dns_truncation_at_512_and_with_edns() {
    // 40 A records: 40 * 16 bytes is more than 512.
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), big_local(40), 1);
    let out = e.query(
        &query_bytes(1, "big.lan.", RecordType::A, None),
        client(1),
        0,
    );
    let Action::Reply { bytes, .. } = &out[0] else {
        panic!()
    };
    assert!(bytes.len() <= 512);
    let m = Message::from_vec(bytes).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    assert!(m.edns.is_none());

    let out = e.query(
        &query_bytes(2, "big.lan.", RecordType::A, Some(1232)),
        client(1),
        0,
    );
    let m = reply_of(&out);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    assert!(m.edns.is_some());

    // EDNS but still too small: TC, with an OPT record.
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), big_local(120), 1);
    let out = e.query(
        &query_bytes(3, "big.lan.", RecordType::A, Some(1232)),
        client(1),
        0,
    );
    let m = reply_of(&out);
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some());
    // Over TCP it all fits.
    let out = e.query(
        &query_bytes(4, "big.lan.", RecordType::A, None),
        tcp_client(1),
        0,
    );
    let m = reply_of(&out);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 120);
    // (a fresh engine: only the EDNS one counted)
    assert_eq!(e.stats().truncated, 1);
}

#[test]
fn dns_tcp_fallback_on_truncated_upstream() {
    let mut e = engine(&cfg(&[srv(1)]));
    let out = e.query(
        &query_bytes(3, "tc.example.", RecordType::A, None),
        client(1),
        0,
    );
    let (s, sock, q) = upstreams(&out).remove(0);
    let mut tc = answer(&q, ResponseCode::NoError, vec![], vec![]);
    tc[2] |= 0x02;
    let out = e.upstream_reply(&tc, s, sock, 1);
    let [Action::CloseUpstream { socket }, Action::UpstreamTcp {
        server,
        token,
        bytes,
    }] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(*socket, sock);
    assert_eq!(*server, s);
    // The client's query in its own case, with a fresh id.
    assert_eq!(
        bytes[2..],
        query_bytes(3, "tc.example.", RecordType::A, None)[2..]
    );
    // A late UDP reply is no longer accepted.
    let udp = answer(
        &q,
        ResponseCode::NoError,
        vec![a("tc.example.", 60, 1)],
        vec![],
    );
    assert!(e.upstream_reply(&udp, s, sock, 2).is_empty());
    // The full answer over TCP is too big for this UDP client: TC, but
    // it is cached for the retry over TCP.
    let full = answer(
        bytes,
        ResponseCode::NoError,
        (0..60).map(|i| a("tc.example.", 60, i)).collect(),
        vec![],
    );
    let out = e.upstream_tcp_reply(*token, Some(&full), 3);
    let m = reply_of(&out);
    assert!(m.metadata.truncation);
    assert_eq!(m.metadata.id, 3);
    let out = e.query(
        &query_bytes(4, "tc.example.", RecordType::A, None),
        tcp_client(1),
        4,
    );
    assert_eq!(reply_of(&out).answers.len(), 60);
    assert_eq!(e.stats().tcp_fallbacks, 1);
    // A token we no longer know is dropped.
    assert!(e.upstream_tcp_reply(*token, None, 5).is_empty());
    assert_eq!(e.stats().dropped.late_tcp, 1);
}

#[test]
fn dns_tcp_client_forwarded_over_tcp_and_failure_moves_on() {
    let mut e = engine(&DnsConfig {
        strict_order: true,
        ..cfg(&[srv(1), srv(2)])
    });
    let out = e.query(
        &query_bytes(3, "t.example.", RecordType::A, None),
        tcp_client(1),
        0,
    );
    let [Action::UpstreamTcp { server, token, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(*server, srv(1));
    let out = e.upstream_tcp_reply(*token, None, 1);
    let [Action::UpstreamTcp {
        server,
        token,
        bytes,
    }] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(*server, srv(2));
    let good = answer(
        bytes,
        ResponseCode::NoError,
        vec![a("t.example.", 60, 1)],
        vec![],
    );
    let out = e.upstream_tcp_reply(*token, Some(&good), 2);
    let [Action::Reply { client: c, bytes }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(c, &tcp_client(1));
    assert_eq!(Message::from_vec(bytes).unwrap().metadata.id, 3);
}

#[test]
fn dns_forward_max_refuses() {
    let mut e = engine(&DnsConfig {
        dns_forward_max: 2,
        ..cfg(&[srv(1)])
    });
    for i in 0..2u16 {
        let out = e.query(
            &query_bytes(i, &format!("m{i}.example."), RecordType::A, None),
            client(1),
            0,
        );
        assert_eq!(upstreams(&out).len(), 1);
    }
    let out = e.query(
        &query_bytes(9, "m9.example.", RecordType::A, None),
        client(1),
        0,
    );
    assert_eq!(reply_of(&out).metadata.response_code, ResponseCode::Refused);
    assert_eq!(e.stats().forward_max, 1);
    assert_eq!(e.pending_len(), 2);
}

#[test]
fn dns_duplicate_query_not_reforwarded() {
    let mut e = engine(&cfg(&[srv(1)]));
    let q = query_bytes(77, "dup.example.", RecordType::A, None);
    assert_eq!(upstreams(&e.query(&q, client(1), 0)).len(), 1);
    assert!(e.query(&q, client(1), 10).is_empty());
    assert_eq!(e.stats().dropped.duplicate, 1);
    // Another client asking the same is not forwarded again: it waits for
    // the same answer (CVE-2020-25686), and its retransmission is not
    // added twice.
    assert!(e.query(&q, client(2), 10).is_empty());
    assert!(e.query(&q, client(2), 20).is_empty());
    assert_eq!(e.stats().dropped.duplicate, 2);
    assert_eq!(e.stats().coalesced, 1);
    assert_eq!(e.stats().forwarded, 1);
}

/// A query for `qname` with RD as given.
fn query_rd(id: u16, qname: &str, rd: bool) -> Vec<u8> {
    let mut q = query_bytes(id, qname, RecordType::A, None);
    if !rd {
        q[2] &= !0x01;
    }
    q
}

#[test]
fn dns_identical_questions_are_forwarded_once_and_all_answered() {
    let mut e = engine(&cfg(&[srv(1)]));
    // 40 UDP clients, each with its own id and letter case, one without
    // RD; then a TCP client: one forward.
    let case_of = |i: u16| {
        "same.example."
            .chars()
            .enumerate()
            .map(|(j, c)| {
                if (i >> (j % 8)) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect::<String>()
    };
    let mut forwards = Vec::new();
    for i in 1..=40u16 {
        let q = query_rd(1000 + i, &case_of(i), i != 7);
        forwards.extend(upstreams(&e.query(&q, client(i as u8), 0)));
    }
    let tcp = query_bytes(7, "SAME.example.", RecordType::A, None);
    forwards.extend(upstreams(&e.query(&tcp, tcp_client(99), 1)));
    assert_eq!(forwards.len(), 1, "{forwards:?}");
    assert_eq!(e.stats().forwarded, 1);
    assert_eq!(e.stats().coalesced, 40);
    assert_eq!(e.pending_len(), 1);
    let (server, socket, wire) = &forwards[0];
    let r = answer(
        wire,
        ResponseCode::NoError,
        vec![a("same.example.", 60, 1)],
        vec![],
    );
    let out = e.upstream_reply(&r, *server, *socket, 5);
    let replies: Vec<(ClientRef, Message)> = out
        .iter()
        .filter_map(|a| match a {
            Action::Reply { client, bytes } => {
                Some((client.clone(), Message::from_vec(bytes).unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 41);
    assert!(out.contains(&Action::CloseUpstream { socket: *socket }));
    for i in 1..=40u16 {
        let (_, m) = replies
            .iter()
            .find(|(c, _)| *c == client(i as u8))
            .unwrap_or_else(|| panic!("client {i} not answered"));
        assert_eq!(m.metadata.id, 1000 + i);
        assert_eq!(m.queries[0].name().to_ascii(), case_of(i), "client {i}");
        assert_eq!(m.metadata.recursion_desired, i != 7);
        assert_eq!(m.answers.len(), 1);
    }
    let (_, m) = replies.iter().find(|(c, _)| *c == tcp_client(99)).unwrap();
    assert_eq!(m.metadata.id, 7);
    assert_eq!(m.queries[0].name().to_ascii(), "SAME.example.");
    assert_eq!(e.pending_len(), 0);
    // Each with its own size limit: a TCP client first (forwarded over
    // TCP), then UDP clients without EDNS; the answer is over 512 bytes.
    let out = e.query(
        &query_bytes(1, "big.example.", RecordType::A, None),
        tcp_client(1),
        10,
    );
    let [Action::UpstreamTcp { token, bytes, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    for i in 2..5u8 {
        let q = query_bytes(u16::from(i), "big.example.", RecordType::A, None);
        assert!(e.query(&q, client(i), 11).is_empty());
    }
    let full = answer(
        bytes,
        ResponseCode::NoError,
        (0..60).map(|i| a("big.example.", 60, i)).collect(),
        vec![],
    );
    let out = e.upstream_tcp_reply(*token, Some(&full), 12);
    assert_eq!(out.len(), 4);
    for a in &out {
        let Action::Reply { client: to, bytes } = a else {
            panic!("{a:?}")
        };
        let m = Message::from_vec(bytes).unwrap();
        if to.transport == Transport::Tcp {
            assert_eq!(m.answers.len(), 60);
        } else {
            assert!(bytes.len() <= 512 && m.metadata.truncation);
            let i = (2..5u8).find(|i| *to == client(*i)).unwrap();
            assert_eq!(m.metadata.id, u16::from(i));
        }
    }
    // DO, CD and EDNS make other questions.
    let mut cd = query_bytes(3, "flags.example.", RecordType::A, None);
    cd[3] |= 0x10;
    let plain = query_bytes(4, "flags.example.", RecordType::A, None);
    let edns = query_bytes(5, "flags.example.", RecordType::A, Some(1232));
    let mut do_bit = Message::from_vec(&edns).unwrap();
    do_bit.metadata.id = 6;
    if let Some(o) = do_bit.edns.as_mut() {
        o.set_dnssec_ok(true);
    }
    let do_bit = do_bit.to_vec().unwrap();
    for q in [cd, plain, edns, do_bit] {
        assert_eq!(upstreams(&e.query(&q, client(9), 20)).len(), 1);
    }
}

#[test]
fn dns_waiters_are_bounded_by_dns_forward_max() {
    let mut e = engine(&DnsConfig {
        dns_forward_max: 5,
        ..cfg(&[srv(1)])
    });
    let q = |id| query_bytes(id, "popular.example.", RecordType::A, None);
    let ups = upstreams(&e.query(&q(0), client(1), 0));
    assert_eq!(ups.len(), 1);
    // As dnsmasq's frec_src pool: dns-forward-max clients may join
    // pending forwards; past that they are refused, not dropped.
    for i in 1..=5u16 {
        assert!(e.query(&q(i), client(2), 0).is_empty());
    }
    let m = reply_of(&e.query(&q(6), client(3), 0));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(m.metadata.id, 6);
    assert_eq!(e.stats().forward_max, 1);
    // Answered: every waiter gets it, and the pool is free again.
    let (server, socket, wire) = &ups[0];
    let r = answer(wire, ResponseCode::NoError, vec![], vec![soa_rec()]);
    assert_eq!(sends(&e.upstream_reply(&r, *server, *socket, 1)).len(), 6);
    let ups = upstreams(&e.query(
        &query_bytes(0, "next.example.", RecordType::A, None),
        client(1),
        2,
    ));
    assert_eq!(ups.len(), 1);
    for i in 1..=5u16 {
        let q = query_bytes(i, "next.example.", RecordType::A, None);
        assert!(e.query(&q, client(2), 2).is_empty());
    }
}

/// `bytes` with the letter case of its question's name flipped.
fn flip_case(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let span = question::name_span(&out).unwrap();
    for b in &mut out[span] {
        if b.is_ascii_alphabetic() {
            *b ^= 0x20;
        }
    }
    out
}

#[test]
fn dns_answer_in_another_case_is_not_taken_and_asked_again_in_plain_case() {
    let mut e = engine(&cfg(&[srv(1)]));
    let ask = |e: &mut DnsEngine<FakeLocal>, id: u16, qname: &str, now: u64| {
        let out = e.query(&query_bytes(id, qname, RecordType::A, None), client(1), now);
        upstreams(&out).remove(0)
    };
    let (server, socket, wire) = ask(&mut e, 1, "Case.Example.", 0);
    // Sent in mixed case.
    let sent = Message::from_vec(&wire).unwrap().queries[0]
        .name()
        .to_ascii();
    assert!(sent.eq_ignore_ascii_case("case.example.") && sent != "Case.Example.");
    // A server that does not echo case: the answer comes back in another.
    let other = answer(
        &flip_case(&wire),
        ResponseCode::NoError,
        vec![a("case.example.", 60, 1)],
        vec![],
    );
    let out = e.upstream_reply(&other, server, socket, 1);
    assert!(out.contains(&Action::CloseUpstream { socket }), "{out:?}");
    let ups = upstreams(&out);
    assert_eq!(sends(&out).len(), 1, "no reply yet: {out:?}");
    let (s2, socket2, plain) = &ups[0];
    assert_eq!((*s2, *socket2 != socket), (server, true));
    // In the client's own case, with a fresh id.
    assert_eq!(
        plain[2..],
        query_bytes(1, "Case.Example.", RecordType::A, None)[2..]
    );
    assert_ne!(plain[..2], wire[..2]);
    assert_eq!(e.stats().dropped.case_mismatch, 1);
    assert_eq!(e.stats().case_fallbacks, 1);
    assert_eq!(e.cache_len(), 0, "nothing cached from it");
    // In plain case any case is taken; the client gets its own.
    let lower = answer(
        &flip_case(plain),
        ResponseCode::NoError,
        vec![a("case.example.", 60, 1)],
        vec![],
    );
    let m = reply_of(&e.upstream_reply(&lower, server, *socket2, 2));
    assert_eq!(m.metadata.id, 1);
    assert_eq!(m.queries[0].name().to_ascii(), "Case.Example.");
    assert_eq!(m.answers.len(), 1);
    // After CASE_STRIKES answers in a row like that, the server is asked
    // in plain case from the start, for an hour.
    for i in 2..=CASE_STRIKES as u16 {
        let (s, sock, w) = ask(&mut e, i, &format!("n{i}.example."), 10);
        let r = answer(&flip_case(&w), ResponseCode::NoError, vec![], vec![]);
        let out = e.upstream_reply(&r, s, sock, 11);
        let (_, sock2, w2) = upstreams(&out).remove(0);
        let r = answer(&flip_case(&w2), ResponseCode::NoError, vec![], vec![]);
        reply_of(&e.upstream_reply(&r, s, sock2, 12));
    }
    let (_, _, w) = ask(&mut e, 9, "later.example.", 20);
    assert_eq!(
        w[2..],
        query_bytes(9, "later.example.", RecordType::A, None)[2..]
    );
    let (_, _, w) = ask(&mut e, 10, "muchlater.example.", 20 + PLAIN_CASE_MS);
    let sent = Message::from_vec(&w).unwrap().queries[0].name().to_ascii();
    assert_ne!(sent, "muchlater.example.", "mixed case again after an hour");
}

#[test]
fn dns_forged_case_from_a_server_that_echoes_case_is_dropped() {
    let mut e = engine(&cfg(&[srv(1)]));
    // The server echoes case.
    let m = round_trip(&mut e, 1, "first.example.", 0, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![a("first.example.", 60, 1)],
            vec![],
        )
    });
    assert_eq!(m.answers.len(), 1);
    let out = e.query(
        &query_bytes(2, "bank.example.", RecordType::A, None),
        client(1),
        10,
    );
    let (server, socket, wire) = upstreams(&out).remove(0);
    // A forgery with the right port and id, the name in the wrong case.
    let evil = Record::from_rdata(
        name("bank.example."),
        86_400,
        RData::A(A(Ipv4Addr::new(6, 6, 6, 6))),
    );
    let forged = answer(&flip_case(&wire), ResponseCode::NoError, vec![evil], vec![]);
    assert!(e.upstream_reply(&forged, server, socket, 11).is_empty());
    assert_eq!(e.stats().dropped.case_mismatch, 1);
    assert_eq!(e.stats().case_fallbacks, 0);
    assert_eq!(e.pending_len(), 1, "still waiting for the real answer");
    let real = answer(
        &wire,
        ResponseCode::NoError,
        vec![a("bank.example.", 60, 2)],
        vec![],
    );
    let m = reply_of(&e.upstream_reply(&real, server, socket, 12));
    assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(198, 18, 1, 2))));
    let m = reply_of(&e.query(
        &query_bytes(3, "bank.example.", RecordType::A, None),
        client(2),
        13,
    ));
    assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(198, 18, 1, 2))));
}

#[test]
fn dns_no_servers_refused_and_set_servers() {
    let mut e = engine(&cfg(&[]));
    let out = e.query(
        &query_bytes(1, "x.example.", RecordType::A, None),
        client(1),
        0,
    );
    assert_eq!(reply_of(&out).metadata.response_code, ResponseCode::Refused);
    e.set_servers(vec![srv(4)]);
    let out = e.query(
        &query_bytes(2, "x.example.", RecordType::A, None),
        client(1),
        0,
    );
    assert_eq!(upstreams(&out)[0].0, srv(4));
}

#[test]
fn dns_header_checks() {
    let mut e = engine(&cfg(&[srv(1)]));
    // Junk shorter than a header: dropped.
    assert!(e.query(&[1, 2, 3], client(1), 0).is_empty());
    // A response on the query port: dropped.
    let mut resp = query_bytes(1, "x.example.", RecordType::A, None);
    resp[2] |= 0x80;
    assert!(e.query(&resp, client(1), 0).is_empty());
    // Non-QUERY opcode (NOTIFY = 4): NOTIMP.
    let mut notify = query_bytes(1, "x.example.", RecordType::A, None);
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    let out = e.query(&notify, client(1), 0);
    let Action::Reply { bytes, .. } = &out[0] else {
        panic!()
    };
    assert_eq!(bytes[3] & 0x0f, ResponseCode::NotImp.low());
    // Two questions: FORMERR.
    let mut two = Message::new(3, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(name("a.example."), RecordType::A));
    two.add_query(Query::query(name("b.example."), RecordType::A));
    let out = e.query(&two.to_vec().unwrap(), client(1), 0);
    let Action::Reply { bytes, .. } = &out[0] else {
        panic!()
    };
    assert_eq!(bytes[3] & 0x0f, ResponseCode::FormErr.low());
    assert_eq!(&bytes[..2], &[0, 3]);
    assert_eq!(e.stats().dropped.junk, 1);
    assert_eq!(e.stats().dropped.not_query, 1);
}

fn assert_formerr_or_drop(out: &[Action]) {
    match out {
        [] => {}
        [Action::Reply { bytes, .. }] => {
            assert!(bytes[2] & 0x80 != 0);
            let rc = bytes[3] & 0x0f;
            assert!(
                rc == ResponseCode::FormErr.low() || rc == ResponseCode::NotImp.low(),
                "rcode {rc}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dns_malformed_queries() {
    let mut e = engine(&cfg(&[srv(1)]));
    let good = query_bytes(1, "www.example.", RecordType::A, None);
    // Truncated inside the question.
    assert_formerr_or_drop(&e.query(&good[..good.len() - 3], client(1), 0));
    // Compression loop: a pointer to itself as the question name.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_formerr_or_drop(&e.query(&looped, client(1), 0));
    // Forward pointer past the end.
    let mut fwd = good[..12].to_vec();
    fwd.extend_from_slice(&[0xc0, 0xff, 0, 1, 0, 1]);
    assert_formerr_or_drop(&e.query(&fwd, client(1), 0));
    // Huge counts.
    let mut huge = good.clone();
    for b in &mut huge[6..12] {
        *b = 0xff;
    }
    assert_formerr_or_drop(&e.query(&huge, client(1), 0));
    let mut qd = good.clone();
    qd[4] = 0xff;
    qd[5] = 0xff;
    assert_formerr_or_drop(&e.query(&qd, client(1), 0));
    // Bad label: length byte with the reserved 0x40 bits.
    let mut bad = good[..12].to_vec();
    bad.extend_from_slice(&[0x45, b'a', 0, 0, 1, 0, 1]);
    assert_formerr_or_drop(&e.query(&bad, client(1), 0));
    // A label running past the end.
    let mut long = good[..12].to_vec();
    long.extend_from_slice(&[63, b'a', b'b']);
    assert_formerr_or_drop(&e.query(&long, client(1), 0));
    assert_eq!(e.stats().forwarded, 0);
}

#[test]
fn dns_mutation_fuzz_never_panics() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut e = engine(&DnsConfig {
        dns_forward_max: 100_000,
        ..cfg(&[srv(1), srv(2)])
    });
    let seeds = [
        query_bytes(1, "www.example.", RecordType::A, None),
        query_bytes(2, "a.b.c.example.", RecordType::AAAA, Some(4096)),
        answer(
            &query_bytes(3, "x.example.", RecordType::A, None),
            ResponseCode::NXDomain,
            vec![],
            vec![soa_rec()],
        ),
    ];
    let mut now = 0;
    for i in 0..10_000u32 {
        let mut p = seeds[i as usize % seeds.len()].clone();
        for _ in 0..rng.random_range(1..6) {
            match rng.random_range(0..4) {
                0 if !p.is_empty() => {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
                1 if !p.is_empty() => {
                    let at = rng.random_range(0..p.len());
                    p.truncate(at);
                }
                2 => {
                    let at = rng.random_range(0..=p.len());
                    p.insert(at, rng.random());
                }
                _ => {
                    // Header counts and flags are where parsers break.
                    if p.len() >= 12 {
                        let at = rng.random_range(2..12);
                        p[at] = rng.random();
                    }
                }
            }
        }
        now += 1;
        let out = e.query(&p, client((i % 200) as u8), now);
        for a in &out {
            if let Action::Reply { bytes, .. } = a {
                assert!(bytes.len() <= 4096);
            }
        }
        // Feed the same bytes in as an upstream reply too.
        e.upstream_reply(&p, srv(1), rng.random_range(0..4), now);
        e.upstream_tcp_reply(rng.random_range(0..50), Some(&p), now);
        if i % 500 == 0 {
            e.tick(now + 10_000);
        }
    }
}

#[test]
fn dns_tcp_fallback_failure_gives_servfail() {
    let mut e = engine(&DnsConfig {
        all_servers: true,
        ..cfg(&[srv(1), srv(2)])
    });
    let out = e.query(
        &query_bytes(3, "tc.example.", RecordType::A, None),
        client(1),
        0,
    );
    let (s, sock, q) = upstreams(&out).remove(0);
    let mut tc = answer(&q, ResponseCode::NoError, vec![], vec![]);
    tc[2] |= 0x02;
    let out = e.upstream_reply(&tc, s, sock, 1);
    let out = sends(&out);
    let [Action::UpstreamTcp { token, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    // A TCP answer for another question counts as a failure, not a reply.
    let wrong = answer(
        &query_bytes(0, "other.example.", RecordType::A, None),
        ResponseCode::NoError,
        vec![],
        vec![],
    );
    let out = e.upstream_tcp_reply(*token, Some(&wrong), 2);
    assert_eq!(
        reply_of(&out).metadata.response_code,
        ResponseCode::ServFail
    );
    assert_eq!(e.pending_len(), 0);
}

#[test]
fn dns_mutated_matching_replies_never_panic() {
    // Replies that pass the id/socket/source checks but are damaged after
    // the question: they reach the full parse and the cache.
    let mut rng = StdRng::seed_from_u64(11);
    let mut e = engine(&DnsConfig {
        strict_order: true,
        dns_forward_max: 100_000,
        ..cfg(&[srv(1)])
    });
    for i in 0..3_000u32 {
        let now = u64::from(i) * 10;
        let out = e.query(
            &query_bytes(1, &format!("f{i}.example."), RecordType::A, Some(1232)),
            client(1),
            now,
        );
        let Some((s, sock, q)) = upstreams(&out).pop() else {
            continue;
        };
        let mut r = answer(
            &q,
            ResponseCode::NoError,
            (0..3)
                .map(|j| a(&format!("f{i}.example."), 60, j))
                .collect(),
            vec![soa_rec()],
        );
        let qend = q.len().min(r.len());
        for _ in 0..rng.random_range(1..4) {
            if r.len() > qend {
                let at = rng.random_range(qend..r.len());
                match rng.random_range(0..3) {
                    0 => r[at] = rng.random(),
                    1 => r.truncate(at),
                    _ => r.insert(at, rng.random()),
                }
            }
            if rng.random_range(0..4) == 0 {
                // Counts and flags too.
                let at = rng.random_range(2..12);
                r[at] = rng.random();
            }
        }
        e.upstream_reply(&r, s, sock, now + 1);
        e.tick(now + 5_000);
    }
}

#[test]
fn dns_domain_servers_get_all_at_once() {
    let mut local = FakeLocal::default();
    local.names.insert(
        "h.corp.".into(),
        Lookup::Forward(Route::Servers(vec![srv(7), srv(8)])),
    );
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), local, 3);
    let out = e.query(
        &query_bytes(1, "h.corp.", RecordType::A, None),
        client(1),
        0,
    );
    let targets: Vec<SocketAddr> = upstreams(&out).iter().map(|u| u.0).collect();
    assert_eq!(targets, vec![srv(7), srv(8)]);
    // Never to the default server, and its answer is not accepted.
    let (_, sock, q) = upstreams(&out).remove(1);
    let r = answer(&q, ResponseCode::NoError, vec![a("h.corp.", 60, 1)], vec![]);
    assert!(e.upstream_reply(&r, srv(1), sock, 1).is_empty());
    assert_eq!(
        reply_of(&e.upstream_reply(&r, srv(8), sock, 2))
            .answers
            .len(),
        1
    );
}

#[test]
fn dns_stop_dns_rebind_withholds_private_answers() {
    let mut e = engine(&DnsConfig {
        stop_dns_rebind: true,
        rebind_domain_ok: vec!["ok.example".into()],
        ..cfg(&[srv(1)])
    });
    // a() builds 198.18.1.x, which dnsmasq does not count as private.
    let private = |n: &str| {
        Record::from_rdata(
            name(n),
            300,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(192, 168, 1, 1)),
        )
    };
    // As dnsmasq 2.90 answers (checked on loopback): NOERROR, no answers.
    let m = round_trip(&mut e, 1, "evil.example.", 1_000, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![private("evil.example.")],
            vec![],
        )
    });
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(e.stats().rebind_blocked, 1);
    // A domain allowed to rebind passes.
    let m = round_trip(&mut e, 2, "nas.ok.example.", 2_000, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![private("nas.ok.example.")],
            vec![],
        )
    });
    assert_eq!(m.answers.len(), 1);
    // Public answers pass.
    let m = round_trip(&mut e, 3, "www.example.", 3_000, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![a("www.example.", 300, 1)],
            vec![],
        )
    });
    assert_eq!(m.answers.len(), 1);
}

fn prefix(text: &str, len: u8) -> crate::config::dns_types::AddrPrefix {
    crate::config::dns_types::AddrPrefix {
        addr: text.parse().unwrap(),
        prefix: len,
    }
}

#[test]
fn dns_bogus_nxdomain_answers_and_caches_the_name_nxdomain() {
    let mut e = engine(&DnsConfig {
        bogus_nxdomain: vec![prefix("198.18.1.0", 24)],
        no_negcache: true,
        ..cfg(&[srv(1)])
    });
    let m = round_trip(&mut e, 1, "typo.example.", 1_000, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![a("typo.example.", 60, 7)],
            vec![],
        )
    });
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(!m.metadata.authoritative);
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    // Every type of that name is NXDOMAIN from the cache (no-negcache
    // notwithstanding, as dnsmasq), until the bogus record's TTL ends.
    for (id, qtype) in [(2, RecordType::MX), (3, RecordType::AAAA)] {
        // 60 s from the answer at 1_005 ms: still there at 61_000.
        let out = e.query(
            &query_bytes(id, "Typo.Example.", qtype, None),
            client(1),
            61_000,
        );
        let m = reply_of(&out);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{qtype}");
    }
    let out = e.query(
        &query_bytes(4, "typo.example.", RecordType::MX, None),
        client(1),
        62_000,
    );
    assert_eq!(upstreams(&out).len(), 1, "expired: forwarded again");
    // An EDNS client learns why: EDE 15 "Blocked" (RFC 8914), as dnsmasq.
    let out = e.query(
        &query_bytes(6, "wild.example.", RecordType::A, Some(1232)),
        client(1),
        3_000,
    );
    let (server, socket, q) = upstreams(&out)[0].clone();
    let bogus = answer(
        &q,
        ResponseCode::NoError,
        vec![a("wild.example.", 60, 8)],
        vec![],
    );
    let m = reply_of(&e.upstream_reply(&bogus, server, socket, 3_001));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede_of(&m), Some(vec![0, 15]), "EDE 15 Blocked");
    // Addresses outside the list, and other families, pass.
    let m = round_trip(&mut e, 5, "ok.example.", 2_000, |q| {
        let far = Record::from_rdata(
            name("ok.example."),
            60,
            RData::A(A(Ipv4Addr::new(198, 18, 2, 7))),
        );
        answer(q, ResponseCode::NoError, vec![far], vec![])
    });
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn dns_ignore_address_drops_the_reply_and_waits_for_another() {
    let mut e = engine(&DnsConfig {
        ignore_address: vec![prefix("198.18.1.9", 32)],
        all_servers: true,
        ..cfg(&[srv(1), srv(2)])
    });
    let out = e.query(
        &query_bytes(9, "w.example.", RecordType::A, None),
        client(1),
        0,
    );
    let ups = upstreams(&out);
    assert_eq!(ups.len(), 2);
    let (_, sock, q) = ups[0].clone();
    let bad = answer(
        &q,
        ResponseCode::NoError,
        vec![a("w.example.", 60, 9)],
        vec![],
    );
    assert!(e.upstream_reply(&bad, srv(1), sock, 1).is_empty());
    assert_eq!(e.pending_len(), 1, "still waiting for the other server");
    let good = answer(
        &ups[1].2,
        ResponseCode::NoError,
        vec![a("w.example.", 60, 3)],
        vec![],
    );
    let m = reply_of(&e.upstream_reply(&good, srv(2), ups[1].1, 2));
    assert_eq!(m.answers.len(), 1);
    // Only the answer counts: NXDOMAIN from a listed server is relayed.
    let out = e.query(
        &query_bytes(10, "nx.example.", RecordType::A, None),
        client(1),
        10,
    );
    let (_, sock, q) = upstreams(&out)[0].clone();
    let nx = answer(&q, ResponseCode::NXDomain, vec![], vec![]);
    let m = reply_of(&e.upstream_reply(&nx, srv(1), sock, 11));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn dns_max_ttl_caps_relayed_and_cached_answers_not_the_cache() {
    let mut e = engine(&DnsConfig {
        max_ttl: 100,
        ..cfg(&[srv(1)])
    });
    let m = round_trip(&mut e, 1, "long.example.", 1_000, |q| {
        answer(
            q,
            ResponseCode::NoError,
            vec![a("long.example.", 3000, 1), a("long.example.", 50, 2)],
            vec![],
        )
    });
    let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, vec![100, 50]);
    // 40 s later from the cache: still capped, and counted down from the
    // real TTLs the cache kept.
    let out = e.query(
        &query_bytes(2, "long.example.", RecordType::A, None),
        client(1),
        41_005,
    );
    let m = reply_of(&out);
    let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, vec![100, 10]);
    // An unreadable tail leaves the reply alone rather than half-edited.
    let mut broken = query_bytes(3, "x.example.", RecordType::A, None);
    broken[7] = 1; // one answer that is not there
    let before = broken.clone();
    cap_answer_ttls(&mut broken, 1);
    assert_eq!(broken, before);
}

#[test]
fn dns_neg_ttl_caches_negative_answers_without_soa() {
    let forwards = |c: &DnsConfig| {
        let mut e = engine(c);
        round_trip(&mut e, 1, "nx.example.", 1_000, |q| {
            answer(q, ResponseCode::NXDomain, vec![], vec![])
        });
        let out = e.query(
            &query_bytes(2, "nx.example.", RecordType::A, None),
            client(1),
            20_000,
        );
        upstreams(&out).len()
    };
    // Without neg-ttl there is no TTL to go by: not cached.
    assert_eq!(forwards(&cfg(&[srv(1)])), 1);
    let with = DnsConfig {
        neg_ttl: 30,
        ..cfg(&[srv(1)])
    };
    assert_eq!(forwards(&with), 0);
    let mut e = engine(&with);
    round_trip(&mut e, 1, "nx.example.", 1_000, |q| {
        answer(q, ResponseCode::NXDomain, vec![], vec![])
    });
    let m = reply_of(&e.query(
        &query_bytes(3, "nx.example.", RecordType::A, None),
        client(1),
        30_000,
    ));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let out = e.query(
        &query_bytes(4, "nx.example.", RecordType::A, None),
        client(1),
        31_006,
    );
    assert_eq!(upstreams(&out).len(), 1, "expired after neg-ttl");
    // no-negcache wins.
    assert_eq!(
        forwards(&DnsConfig {
            no_negcache: true,
            ..with
        }),
        1
    );
}

fn ede_of(m: &Message) -> Option<Vec<u8>> {
    match m
        .edns
        .as_ref()?
        .option(hickory_proto::rr::rdata::opt::EdnsCode::Unknown(15))?
    {
        hickory_proto::rr::rdata::opt::EdnsOption::Unknown(_, data) => Some(data.clone()),
        _ => None,
    }
}

#[test]
fn dns_filter_aaaa_trims_forwarded_and_cached_answers() {
    let mut e = engine(&DnsConfig {
        filter_aaaa: true,
        ..cfg(&[srv(1)])
    });
    let v6 = |n: &str| {
        Record::from_rdata(
            name(n),
            300,
            RData::AAAA(hickory_proto::rr::rdata::AAAA(
                "2001:db8::1".parse().unwrap(),
            )),
        )
    };
    let ask = |e: &mut DnsEngine<FakeLocal>, id: u16, qtype: RecordType, now: u64| {
        e.query(
            &query_bytes(id, "dual.example.", qtype, Some(1232)),
            client(1),
            now,
        )
    };
    let out = ask(&mut e, 1, RecordType::AAAA, 1_000);
    let (server, socket, q) = upstreams(&out)[0].clone();
    let mut up = Message::from_vec(&answer(
        &q,
        ResponseCode::NoError,
        vec![v6("dual.example.")],
        vec![],
    ))
    .unwrap();
    up.metadata.authoritative = true;
    let m = reply_of(&e.upstream_reply(&up.to_vec().unwrap(), server, socket, 1_001));
    assert_eq!(m.metadata.id, 1);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(m.metadata.authoritative, "the upstream's flags are kept");
    assert_eq!(ede_of(&m), Some(vec![0, 17]), "EDE 17 Filtered");
    // From the cache: trimmed the same way, without AA.
    let m = reply_of(&ask(&mut e, 2, RecordType::AAAA, 2_000));
    assert!(m.answers.is_empty() && !m.metadata.authoritative);
    assert_eq!(ede_of(&m), Some(vec![0, 17]));
    // A answers pass untouched, without an EDE.
    let out = ask(&mut e, 3, RecordType::A, 3_000);
    let (server, socket, q) = upstreams(&out)[0].clone();
    let ok = answer(
        &q,
        ResponseCode::NoError,
        vec![a("dual.example.", 300, 1)],
        vec![],
    );
    let m = reply_of(&e.upstream_reply(&ok, server, socket, 3_001));
    assert_eq!(m.answers.len(), 1);
    assert_eq!(ede_of(&m), None);
}

// ---------------------------------------------------------------------------
// Authoritative zones

fn zone_engine(zone: Vec<(&str, AuthVerdict)>) -> DnsEngine<FakeLocal> {
    let local = FakeLocal {
        zone: zone.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        ..FakeLocal::default()
    };
    DnsEngine::with_seed(&cfg(&[srv(53)]), local, 42)
}

#[test]
fn zone_answers_clear_ra_at_the_authoritative_service_only() {
    let verdict = AuthVerdict::Answer {
        rcode: ResponseCode::NXDomain,
        answers: vec![],
        authorities: vec![soa_rec()],
        authoritative: true,
    };
    let mut e = zone_engine(vec![("x.example.", verdict)]);
    assert_eq!(e.zone_serial(), Some(42));
    let q = query_bytes(9, "x.example.", RecordType::A, None);
    let r = reply_of(&e.query_at(&q, client(1), Service::Authoritative, 0));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative && !r.metadata.recursion_available);
    assert_eq!(r.authorities.len(), 1);
    let r = reply_of(&e.query(&q, client(1), 0));
    assert!(r.metadata.authoritative && r.metadata.recursion_available);
    assert_eq!(e.stats().auth_answers, 2);
    // Nothing for a name outside the zones goes upstream from the
    // authoritative service: REFUSED, without RA.
    let q = query_bytes(10, "www.example.net.", RecordType::A, None);
    let r = reply_of(&e.query_at(&q, client(1), Service::Authoritative, 0));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.recursion_available && r.answers.is_empty());
    assert_eq!(e.pending_len(), 0);
    // ...while the normal service forwards it.
    assert_eq!(upstreams(&e.query(&q, client(1), 0)).len(), 1);
}

#[test]
fn zone_transfer_is_split_into_tcp_messages_soa_first_and_last() {
    let mut records = vec![soa_rec()];
    for i in 0..6000u32 {
        let n = format!("host-with-a-longish-name-{i}.example.");
        records.push(a(&n, 600, (i % 250) as u8));
    }
    records.push(soa_rec());
    let mut e = zone_engine(vec![("example.", AuthVerdict::Transfer(records.clone()))]);
    let q = query_bytes(77, "example.", RecordType::AXFR, Some(1232));
    let actions = e.query_at(&q, tcp_client(3), Service::Authoritative, 0);
    let [Action::ReplyMany {
        client: to,
        messages,
    }] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(to, &tcp_client(3));
    assert!(messages.len() > 1, "{} messages", messages.len());
    let mut got = vec![];
    for (i, m) in messages.iter().enumerate() {
        assert!(m.len() <= usize::from(u16::MAX));
        let m = Message::from_vec(m).unwrap();
        assert_eq!(m.metadata.id, 77);
        assert!(m.metadata.authoritative);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.queries.len(), usize::from(i == 0));
        got.extend(m.answers);
    }
    assert_eq!(got, records);
    assert_eq!(e.stats().transfers, 1);
    // Never over UDP.
    assert!(e
        .query_at(&q, client(3), Service::Authoritative, 0)
        .is_empty());
}

#[test]
fn ixfr_passes_the_clients_serial_on() {
    let mut e = zone_engine(vec![]);
    let mut m = Message::new(5, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name("example."), RecordType::IXFR));
    let mut soa = soa_rec();
    if let RData::SOA(s) = &mut soa.data {
        s.serial = 1234;
    }
    m.authorities.push(soa);
    e.query_at(
        &m.to_vec().unwrap(),
        tcp_client(1),
        Service::Authoritative,
        0,
    );
    assert_eq!(e.local().seen_client_serial.get(), Some(1234));
    let q = query_bytes(6, "example.", RecordType::AXFR, None);
    e.query_at(&q, tcp_client(1), Service::Authoritative, 0);
    assert_eq!(e.local().seen_client_serial.get(), None);
}

fn host_local(last: u8) -> FakeLocal {
    let mut local = FakeLocal::default();
    local.names.insert(
        "host.lan.".into(),
        Lookup::Local {
            rcode: ResponseCode::NoError,
            answers: vec![a("host.lan.", 0, last)],
            authorities: vec![],
            authoritative: true,
        },
    );
    local
}

fn reply_bytes(actions: &[Action]) -> Vec<u8> {
    match actions {
        [Action::Reply { bytes, .. }] => bytes.clone(),
        other => panic!("expected one reply, got {other:?}"),
    }
}

#[test]
fn dns_replayed_local_reply_is_what_the_full_path_builds() {
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), host_local(5), 1);
    let q1 = query_bytes(0x1111, "Host.LAN.", RecordType::A, Some(1232));
    let q2 = query_bytes(0x2222, "Host.LAN.", RecordType::A, Some(1232));
    e.query(&q1, client(1), 1_000);
    let replayed = reply_bytes(&e.query(&q2, client(2), 1_500));
    // A fresh engine can only take the full path.
    let mut fresh = DnsEngine::with_seed(&cfg(&[srv(1)]), host_local(5), 1);
    let full = reply_bytes(&fresh.query(&q2, client(2), 1_500));
    assert_eq!(replayed, full);
    assert_eq!(
        reply_of(&e.query(&q2, client(2), 1_600)).metadata.id,
        0x2222
    );
    assert_eq!(e.stats().local_answers, 3);
    assert_eq!(e.stats().queries, 3);

    // Other letter case: its own reply, echoing that case.
    let q3 = query_bytes(0x3333, "host.lan.", RecordType::A, Some(1232));
    let m = reply_of(&e.query(&q3, client(2), 1_700));
    assert_eq!(m.queries[0].name.to_ascii(), "host.lan.");
}

#[test]
fn dns_replay_follows_local_data_changes() {
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), host_local(5), 1);
    let q = query_bytes(1, "host.lan.", RecordType::A, None);
    e.query(&q, client(1), 1_000);
    *e.local_mut() = host_local(6);
    let m = reply_of(&e.query(&q, client(1), 1_100));
    assert_eq!(
        m.answers[0].data,
        RData::A(A(Ipv4Addr::new(198, 18, 1, 6))),
        "a reply kept from before the change was replayed"
    );
}

#[test]
fn dns_replayed_cache_hit_counts_ttl_down() {
    let fill = |e: &mut DnsEngine<FakeLocal>| {
        round_trip(e, 7, "www.example.", 1_000, |q| {
            answer(
                q,
                ResponseCode::NoError,
                vec![a("www.example.", 300, 1)],
                vec![],
            )
        });
    };
    let mut e = engine(&cfg(&[srv(1)]));
    fill(&mut e);
    let q = |id| query_bytes(id, "www.example.", RecordType::A, None);
    // Stored at 1.005 s: 9 s old from 10.005 s, 10 s old from 11.005 s.
    for (id, now, ttl) in [(8, 10_500, 291), (9, 11_000, 291), (10, 11_005, 290)] {
        let got = reply_bytes(&e.query(&q(id), client(2), now));
        let mut fresh = engine(&cfg(&[srv(1)]));
        fill(&mut fresh);
        let full = reply_bytes(&fresh.query(&q(id), client(2), now));
        assert_eq!(got, full, "at {now} ms");
        assert_eq!(Message::from_vec(&got).unwrap().answers[0].ttl, ttl);
    }
    assert_eq!(e.stats().cache_hits, 3);
    // Past its TTL the entry is gone: forwarded again, not replayed.
    let out = e.query(&q(11), client(2), 301_005);
    let ups = upstreams(&out);
    assert_eq!(ups.len(), 1);
    // A new upstream answer replaces what was kept.
    let (server, socket, wire) = &ups[0];
    let r = answer(
        wire,
        ResponseCode::NoError,
        vec![a("www.example.", 300, 2)],
        vec![],
    );
    let m = reply_of(&e.upstream_reply(&r, *server, *socket, 302_000));
    assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(198, 18, 1, 2))));
    let m = reply_of(&e.query(&q(13), client(2), 302_100));
    assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(198, 18, 1, 2))));
}

#[test]
fn dns_edns_packet_max_caps_what_a_client_may_ask_for() {
    // 60 A records: about 1000 bytes with EDNS.
    let local = || big_local(60);
    let ask = |e: &mut DnsEngine<FakeLocal>, id, size| {
        reply_of(&e.query(
            &query_bytes(id, "big.lan.", RecordType::A, size),
            client(1),
            0,
        ))
    };
    // Default 1232: a 4096 offer gets the whole answer, and our OPT says 1232.
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), local(), 1);
    let m = ask(&mut e, 1, Some(4096));
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    assert_eq!(m.edns.as_ref().map(|o| o.max_payload()), Some(1232));
    // An offer below 512 counts as 512.
    let m = ask(&mut e, 2, Some(100));
    assert!(m.metadata.truncation && m.answers.is_empty());
    // edns-packet-max=600: the same 4096 offer now gets TC, within 600.
    let c = DnsConfig {
        edns_packet_max: 600,
        ..cfg(&[srv(1)])
    };
    let mut e = DnsEngine::with_seed(&c, local(), 1);
    let out = e.query(
        &query_bytes(3, "big.lan.", RecordType::A, Some(4096)),
        client(1),
        0,
    );
    let Action::Reply { bytes, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(bytes.len() <= 600);
    let m = Message::from_vec(bytes).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!(m.edns.as_ref().map(|o| o.max_payload()), Some(600));
}

#[test]
fn dns_forwarded_answer_larger_than_the_client_limit_is_truncated() {
    let mut e = engine(&cfg(&[srv(1)]));
    let out = e.query(
        &query_bytes(5, "huge.example.", RecordType::A, Some(65000)),
        client(1),
        0,
    );
    let (s, sock, q) = upstreams(&out).remove(0);
    // 150 A records: about 2450 bytes, over the default 1232.
    let recs = (0..150u8)
        .map(|i| a("huge.example.", 60, i))
        .collect::<Vec<_>>();
    let big = answer(&q, ResponseCode::NoError, recs, vec![]);
    assert!(big.len() > 1232);
    let out = sends(&e.upstream_reply(&big, s, sock, 1));
    let Action::Reply { bytes, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(bytes.len() <= 1232);
    let m = Message::from_vec(bytes).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!(m.metadata.id, 5);
}

#[test]
fn dns_local_any_is_one_rrset_over_udp_and_all_over_tcp() {
    let mut local = FakeLocal::default();
    let mut answers: Vec<Record> = (0..3).map(|i| a("mix.lan.", 0, i)).collect();
    for i in 0..20 {
        answers.push(Record::from_rdata(
            name("mix.lan."),
            0,
            RData::TXT(hickory_proto::rr::rdata::TXT::new(vec![format!(
                "text record {i} with padding"
            )])),
        ));
    }
    local.names.insert(
        "mix.lan.".into(),
        Lookup::Local {
            rcode: ResponseCode::NoError,
            answers,
            authorities: vec![],
            authoritative: true,
        },
    );
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), local, 1);
    let q = query_bytes(1, "mix.lan.", RecordType::ANY, None);
    let m = reply_of(&e.query(&q, client(1), 0));
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 3);
    assert!(m.answers.iter().all(|r| r.record_type() == RecordType::A));
    // The kept reply for a repeat is the same minimal one.
    let again = e.query(&q, client(1), 1);
    assert_eq!(reply_of(&again).answers.len(), 3);
    let m = reply_of(&e.query(&q, tcp_client(1), 0));
    assert_eq!(m.answers.len(), 23);
    // Another type is not cut.
    let q = query_bytes(2, "mix.lan.", RecordType::TXT, Some(1232));
    let m = reply_of(&e.query(&q, client(1), 0));
    assert_eq!(m.answers.len(), 23);
}

#[test]
fn dns_repeated_warnings_are_logged_once_per_log_period() {
    let mut l = LogLimit::default();
    assert!(l.allow(1_000));
    assert!(!l.allow(1_001));
    assert!(!l.allow(1_000 + LOG_EVERY_MS - 1));
    assert!(l.allow(1_000 + LOG_EVERY_MS));
    assert!(!l.allow(1_000 + LOG_EVERY_MS + 5));
}

#[test]
fn dns_replay_keeps_localised_answers_per_subnet() {
    use crate::dns::authority::Authority;
    let mut c = crate::config::Config::default();
    c.dns.localise_queries = true;
    let hosts = "198.18.0.10 multi\n198.18.1.10 multi\n".to_string();
    let local = Authority::new(&c, &[(std::path::PathBuf::from("/tmp/hosts"), hosts)]);
    let mut e = DnsEngine::with_seed(&cfg(&[srv(1)]), local, 1);
    let at = |n: u8, lan: u8| ClientRef {
        arrival: Some(Net {
            addr: std::net::IpAddr::V4(Ipv4Addr::new(198, 18, lan, 1)),
            prefix: 24,
        }),
        ..client(n)
    };
    let addrs = |actions: &[Action]| -> Vec<String> {
        reply_of(actions)
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    };
    let q = query_bytes(0x1111, "multi.", RecordType::A, None);
    // Each subnet twice: the second of each is replayed, and must not be
    // the other subnet's reply.
    for t in [1_000, 1_100] {
        assert_eq!(addrs(&e.query(&q, at(1, 0), t)), vec!["198.18.0.10"]);
        assert_eq!(addrs(&e.query(&q, at(2, 1), t)), vec!["198.18.1.10"]);
    }
    assert_eq!(e.stats().local_answers, 4);
}
