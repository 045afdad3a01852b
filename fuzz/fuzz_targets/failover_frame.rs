//! Failover link: frame decode and the handshake state machine, in both
//! roles.
//!
//! Random bytes never get past a frame's MAC, so most of the input drives a
//! forging peer that holds the shared key (as a real partner does): it
//! frames and MACs whatever the input says with the keys PROTOCOL.md gives,
//! so the hello/auth state machine and the message decoder see fuzzed
//! content. Byte 0: bit 0 picks the link's role, bit 1 "raw" mode (the rest
//! goes to `receive` unframed, in chunks whose size is byte 1). Otherwise
//! the rest is a script of steps:
//!
//! - `0x00|f`: a hello (f bit 2: correct version, bit 3: other role), nonce
//!   from the next 32 bytes;
//! - `0x01|f`: an auth (f bit 2: the correct proof, else the next 32 bytes);
//! - `0x02`: `len: u16 BE` then a frame body (a codec-encoded message),
//!   framed under the current key and sequence;
//! - `0x03`: `len: u16 BE` then bytes sent unframed.
//!
//! Checked on the way: once `receive` fails it fails for good; every byte
//! the link writes is a frame that verifies under the keys of PROTOCOL.md
//! and decodes as a message; an established link says so, and only then
//! passes messages up.

#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use twinmasq_proto::key::Key;
use twinmasq_proto::link::{Event, Hello, Link, LinkError, Message, Role, PROTOCOL_VERSION};

const SHARED: [u8; 32] = [0x5a; 32];
const LINK_NONCE: [u8; 32] = [0x11; 32];

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn role_byte(r: Role) -> u8 {
    match r {
        Role::Primary => 1,
        Role::Secondary => 2,
    }
}

fn other(r: Role) -> Role {
    match r {
        Role::Primary => Role::Secondary,
        Role::Secondary => Role::Primary,
    }
}

fn handshake_key() -> [u8; 32] {
    hmac(&SHARED, &[b"twinmasq handshake v1"])
}

fn session_key(role: Role, primary_nonce: &[u8; 32], secondary_nonce: &[u8; 32]) -> [u8; 32] {
    hmac(
        &SHARED,
        &[
            b"twinmasq session v1",
            &[role_byte(role)],
            primary_nonce,
            secondary_nonce,
        ],
    )
}

fn frame(key: &[u8; 32], seq: u64, body: &[u8]) -> Vec<u8> {
    let seq = seq.to_be_bytes();
    let mac = hmac(key, &[&seq, body]);
    let mut out = ((8 + body.len() + 32) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&seq);
    out.extend_from_slice(body);
    out.extend_from_slice(&mac);
    out
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

/// Reads what the link under test wrote, as its peer would.
struct Reader {
    key: [u8; 32],
    seq: u64,
}

impl Reader {
    fn read(&mut self, mut out: &[u8]) -> Vec<Message> {
        let mut msgs = Vec::new();
        while !out.is_empty() {
            let len = u32::from_be_bytes(out[..4].try_into().expect("4 bytes")) as usize;
            let (f, rest) = out[4..].split_at(len);
            let (seq, body) = f.split_at(8);
            let (body, mac) = body.split_at(body.len() - 32);
            assert_eq!(
                u64::from_be_bytes(seq.try_into().expect("8 bytes")),
                self.seq
            );
            assert_eq!(hmac(&self.key, &[seq, body]), mac, "the link's frame MAC");
            msgs.push(twinmasq_proto::decode(body).expect("the link's frame body decodes"));
            self.seq += 1;
            out = rest;
        }
        msgs
    }
}

struct Forger {
    key: [u8; 32],
    seq: u64,
    role: Role,
    nonce: [u8; 32],
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn take32(data: &mut &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    let b = take(data, 32);
    a[..b.len()].copy_from_slice(b);
    a
}

fn take_len(data: &mut &[u8]) -> usize {
    let b = take(data, 2);
    match b {
        [h, l] => usize::from(u16::from_be_bytes([*h, *l])),
        [h] => usize::from(*h),
        _ => 0,
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut data)) = input.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Primary
    } else {
        Role::Secondary
    };
    let key = Key::parse(&Key::format_new(SHARED), "fuzz").expect("a fresh key parses");
    let me = hello(role, LINK_NONCE);
    let mut link = Link::new(key, me.clone());
    let mut reader = Reader {
        key: handshake_key(),
        seq: 0,
    };
    assert_eq!(reader.read(&link.take_output()), vec![Message::Hello(me)]);

    let mut failed = false;
    let mut established = false;
    let mut feed = |link: &mut Link, bytes: &[u8], reader: &mut Reader| -> bool {
        let r = link.receive(bytes);
        if failed {
            assert_eq!(r, Err(LinkError::Failed), "a failed link stays failed");
            return false;
        }
        match r {
            Err(_) => {
                failed = true;
                assert_eq!(link.receive(&[]), Err(LinkError::Failed));
            }
            Ok(events) => {
                for ev in events {
                    match ev {
                        Event::PeerHello(h) => {
                            assert!(!established);
                            assert_eq!(h.version, PROTOCOL_VERSION);
                            assert_ne!(h.role, role);
                            // The link proves itself right away, under the
                            // handshake key.
                            let want = hmac(
                                &SHARED,
                                &[
                                    b"twinmasq proof v1",
                                    &[role_byte(role)],
                                    &LINK_NONCE,
                                    &h.nonce,
                                ],
                            );
                            assert_eq!(
                                reader.read(&link.take_output()),
                                vec![Message::Auth { proof: want }]
                            );
                            let (p, s) = match role {
                                Role::Primary => (LINK_NONCE, h.nonce),
                                Role::Secondary => (h.nonce, LINK_NONCE),
                            };
                            reader.key = session_key(role, &p, &s);
                        }
                        Event::Established => {
                            assert!(!established && link.is_established());
                            established = true;
                            // Messages now flow under the session key.
                            link.send(&Message::Heartbeat { wall_ms: 5 }).expect("send");
                            assert_eq!(
                                reader.read(&link.take_output()),
                                vec![Message::Heartbeat { wall_ms: 5 }]
                            );
                        }
                        Event::Message(m) => {
                            assert!(established, "a message before the handshake: {m:?}");
                            assert!(!matches!(m, Message::Hello(_) | Message::Auth { .. }));
                        }
                    }
                }
                assert!(link.take_output().is_empty(), "nothing unexpected written");
            }
        }
        true
    };

    if mode & 2 != 0 {
        let chunk = usize::from(take(&mut data, 1).first().copied().unwrap_or(0)).max(1);
        for c in data.chunks(chunk) {
            if !feed(&mut link, c, &mut reader) {
                break;
            }
        }
        return;
    }

    let mut forger = Forger {
        key: handshake_key(),
        seq: 0,
        role: other(role),
        nonce: [0; 32],
    };
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        let bytes = match op & 3 {
            0 => {
                let r = if op & 8 != 0 { other(role) } else { role };
                let mut h = hello(r, take32(&mut data));
                if op & 4 == 0 {
                    h.version = u16::from(op >> 4);
                }
                forger.role = r;
                forger.nonce = h.nonce;
                let body = twinmasq_proto::encode(&Message::Hello(h)).expect("encode");
                let f = frame(&forger.key, forger.seq, &body);
                forger.seq += 1;
                f
            }
            1 => {
                let proof = if op & 4 != 0 {
                    hmac(
                        &SHARED,
                        &[
                            b"twinmasq proof v1",
                            &[role_byte(forger.role)],
                            &forger.nonce,
                            &LINK_NONCE,
                        ],
                    )
                } else {
                    take32(&mut data)
                };
                let body = twinmasq_proto::encode(&Message::Auth { proof }).expect("encode");
                let f = frame(&forger.key, forger.seq, &body);
                forger.seq += 1;
                // The peer's frames after its auth use its session key.
                let (p, s) = match forger.role {
                    Role::Primary => (forger.nonce, LINK_NONCE),
                    Role::Secondary => (LINK_NONCE, forger.nonce),
                };
                forger.key = session_key(forger.role, &p, &s);
                f
            }
            2 => {
                let n = take_len(&mut data);
                let f = frame(&forger.key, forger.seq, take(&mut data, n));
                forger.seq += 1;
                f
            }
            _ => {
                let n = take_len(&mut data);
                take(&mut data, n).to_vec()
            }
        };
        if !feed(&mut link, &bytes, &mut reader) {
            break;
        }
    }
});
