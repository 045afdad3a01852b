//! The failover link, sans-I/O: messages, framing, the handshake that
//! proves both ends hold the shared key before any lease data moves, and
//! per-frame MACs with sequence numbers afterwards. Bytes in, events and
//! bytes out; the caller owns the TCP connection and the clock.
//!
//! Frame: `len: u32 BE` (of what follows) `| seq: u64 BE | body | mac: 32`.
//! The MAC is HMAC-SHA256 over `seq | body` with the sender's key: during
//! the handshake a key derived from the shared key alone, afterwards a
//! per-session, per-direction key derived from both ends' fresh nonces.
//! Sequence numbers start at 0 and rise by one per frame in each direction,
//! so a replayed, dropped or reordered frame ends the link.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::key::Key;
use crate::lease::{LeaseRecord, Stamp};

pub const PROTOCOL_VERSION: u16 = 4;
/// The most of [`Hello::terms`] a sender puts in, in bytes: a readable
/// list of ranges for a refusal message, not a place for data.
pub const MAX_TERMS: usize = 4096;
/// Largest frame accepted, so a hostile length prefix cannot make us
/// allocate without bound. Lease pages are sized to fit well within it.
pub const MAX_FRAME: usize = 1 << 20;
const MAC_LEN: usize = 32;
const SEQ_LEN: usize = 8;

/// Which end of the pair. The serde names are the lowercase words that
/// `twinmasq status` prints; they never reach the link, where bincode sends
/// the variant's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Secondary,
}

impl Role {
    /// The other end of the pair.
    pub fn partner(self) -> Role {
        match self {
            Role::Primary => Role::Secondary,
            Role::Secondary => Role::Primary,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Role::Primary => 1,
            Role::Secondary => 2,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub role: Role,
    pub node: u32,
    /// Fresh per connection: makes every session's proof and keys new.
    pub nonce: [u8; 32],
    /// Hash of the DHCP ranges and split, compared by the caller.
    pub ranges: [u8; 32],
    /// Sender's wall clock, for the skew check.
    pub wall_ms: u64,
    /// The maximum client lead time the sender extends and outwaits
    /// leases by: both ends must use the same.
    pub mclt_ms: u64,
    /// The sender's ranges and split, readable (at most [`MAX_TERMS`]
    /// bytes), so a refusal can name both sides' values.
    pub terms: String,
}

/// What a side knows of the peer when a link opens: whether the two can
/// resume where the last session left off instead of sending whole tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStart {
    /// Random per start of the sender's process: a peer that restarted
    /// (and may have lost what it had not flushed) has a new one.
    pub incarnation: u64,
    pub resume: Option<ResumePoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// The peer's incarnation this point belongs to.
    pub peer_incarnation: u64,
    /// Every update of the peer's up to this number is merged here.
    pub applied_through: u64,
    /// The sender can send again every own update from this number on, and
    /// every change it made since.
    pub kept_from: u64,
}

impl SyncStart {
    /// Whether two sides that sent these can resume. Symmetric, so both
    /// ends decide alike without another round trip: each must hold the
    /// other's current incarnation, and each must still keep every update
    /// the other has not applied.
    pub fn can_resume(&self, other: &SyncStart) -> bool {
        match (self.resume, other.resume) {
            (Some(a), Some(b)) => {
                a.peer_incarnation == other.incarnation
                    && b.peer_incarnation == self.incarnation
                    && a.kept_from <= b.applied_through.saturating_add(1)
                    && b.kept_from <= a.applied_through.saturating_add(1)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    Auth {
        proof: [u8; 32],
    },
    /// Opens the sync; both sides send it once the link is established.
    SyncStart(SyncStart),
    /// Part of a table during sync. `last` is `None` on every page but the
    /// secondary's last one, where it is the number of the sender's latest
    /// update: the table covers every change up to it.
    LeasePage {
        records: Vec<LeaseRecord>,
        last: Option<u64>,
    },
    /// The primary's table is merged and sent: `serial` is the zone
    /// serial's source, `through` the number of its latest update, which
    /// what it sent covers.
    SyncDone {
        serial: u64,
        through: u64,
    },
    /// The secondary has merged everything before `SyncDone`: the sync is
    /// over on both sides.
    Synced,
    Update {
        seq: u64,
        records: Vec<LeaseRecord>,
    },
    /// The update `seq` is merged and durable. `lost` names the stamps of
    /// its records that did not stand here (a conflict went to another
    /// record, or the admission rules refused it): the sender must never
    /// send the replies that promised them. An ack says "stored and
    /// agreed", not only "persisted"; an ack of one update covers only
    /// the records of that update, so `lost` never names more stamps than
    /// it had records.
    Ack {
        seq: u64,
        lost: Vec<Stamp>,
    },
    Heartbeat {
        wall_ms: u64,
    },
    Error {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    Oversize(usize),
    #[error("frame too short to hold a sequence number and MAC")]
    Runt,
    #[error("frame MAC does not verify: wrong key or tampered frame")]
    BadMac,
    #[error("frame sequence {got}, expected {expected}: replayed, lost or reordered")]
    Sequence { expected: u64, got: u64 },
    #[error("frame body does not decode: {0}")]
    Body(String),
    #[error("peer speaks protocol version {0}, we speak {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("peer has the same role as we do")]
    SameRole,
    #[error("peer's proof of the shared key is wrong")]
    AuthFailed,
    #[error("unexpected {0} in state {1}")]
    Unexpected(&'static str, &'static str),
    #[error("the link has failed and carries nothing more")]
    Failed,
}

/// What the peer said, after its frame verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's hello: check version, ranges and skew before going on
    /// (the link has already sent its proof; it sends nothing else until
    /// the peer's proof verifies).
    PeerHello(Hello),
    /// Both ends proved the key: lease data may move.
    Established,
    Message(Message),
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitAuth,
    Established,
    Failed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::AwaitHello => "await-hello",
            State::AwaitAuth => "await-auth",
            State::Established => "established",
            State::Failed => "failed",
        }
    }
}

pub struct Link {
    key: Key,
    me: Hello,
    peer: Option<Hello>,
    state: State,
    send_key: [u8; 32],
    recv_key: [u8; 32],
    send_seq: u64,
    recv_seq: u64,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

impl Link {
    /// Starts a link; our hello is queued at once (see [`Link::take_output`]).
    pub fn new(key: Key, me: Hello) -> Link {
        let hs = hmac(key.as_bytes(), &[b"twinmasq handshake v1"]);
        let mut link = Link {
            key,
            me: me.clone(),
            peer: None,
            state: State::AwaitHello,
            send_key: hs,
            recv_key: hs,
            send_seq: 0,
            recv_seq: 0,
            inbuf: Vec::new(),
            out: Vec::new(),
        };
        // A hello is a few fixed-size fields: it always encodes and fits.
        if link.queue(&Message::Hello(me)).is_err() {
            link.state = State::Failed;
        }
        link
    }

    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    pub fn peer(&self) -> Option<&Hello> {
        self.peer.as_ref()
    }

    /// Bytes to write to the connection.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Queues a message; only once established (handshake messages are
    /// the link's own). A message too big for one frame is refused.
    pub fn send(&mut self, msg: &Message) -> Result<(), LinkError> {
        if self.state != State::Established {
            return Err(LinkError::Unexpected("send", self.state.name()));
        }
        self.queue(msg)
    }

    fn queue(&mut self, msg: &Message) -> Result<(), LinkError> {
        let body = crate::codec::encode(msg).map_err(|e| LinkError::Body(e.to_string()))?;
        let frame_len = SEQ_LEN + body.len() + MAC_LEN;
        if frame_len > MAX_FRAME {
            // The peer would refuse it; the caller must page it smaller.
            return Err(LinkError::Oversize(frame_len));
        }
        let seq = self.send_seq.to_be_bytes();
        let mac = hmac(&self.send_key, &[&seq, &body]);
        self.out
            .extend_from_slice(&(frame_len as u32).to_be_bytes());
        self.out.extend_from_slice(&seq);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&mac);
        self.send_seq += 1;
        Ok(())
    }

    fn fail(&mut self, e: LinkError) -> LinkError {
        self.state = State::Failed;
        self.inbuf.clear();
        e
    }

    /// Feeds bytes read from the connection. Any error ends the link: the
    /// caller closes the connection, and nothing the peer sent after the
    /// fault is acted on.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Vec<Event>, LinkError> {
        if self.state == State::Failed {
            return Err(LinkError::Failed);
        }
        self.inbuf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(len) = self
            .inbuf
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        {
            if len > MAX_FRAME {
                return Err(self.fail(LinkError::Oversize(len)));
            }
            if len < SEQ_LEN + MAC_LEN {
                return Err(self.fail(LinkError::Runt));
            }
            if self.inbuf.len() < 4 + len {
                break;
            }
            let frame: Vec<u8> = self.inbuf.drain(..4 + len).skip(4).collect();
            let (seq_bytes, rest) = frame.split_at(SEQ_LEN);
            let (body, mac) = rest.split_at(rest.len() - MAC_LEN);
            let mut m = <HmacSha256 as Mac>::new_from_slice(&self.recv_key)
                .unwrap_or_else(|_| unreachable!());
            m.update(seq_bytes);
            m.update(body);
            if m.verify_slice(mac).is_err() {
                return Err(self.fail(LinkError::BadMac));
            }
            let mut s = [0u8; SEQ_LEN];
            s.copy_from_slice(seq_bytes);
            let seq = u64::from_be_bytes(s);
            if seq != self.recv_seq {
                let expected = self.recv_seq;
                return Err(self.fail(LinkError::Sequence { expected, got: seq }));
            }
            self.recv_seq += 1;
            let msg: Message = match crate::codec::decode(body) {
                Ok(m) => m,
                // A hello of another version has other fields: say so
                // rather than only that it does not decode.
                Err(e) if self.state == State::AwaitHello => {
                    return Err(self.fail(LinkError::Body(format!(
                        "{e} (a hello of another protocol version? we speak {PROTOCOL_VERSION})"
                    ))))
                }
                Err(e) => return Err(self.fail(LinkError::Body(e.to_string()))),
            };
            match self.on_message(msg) {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(events)
    }

    fn proof(&self, role: Role, own: &[u8; 32], other: &[u8; 32]) -> [u8; 32] {
        hmac(
            self.key.as_bytes(),
            &[b"twinmasq proof v1", &[role.byte()], own, other],
        )
    }

    fn on_message(&mut self, msg: Message) -> Result<Option<Event>, LinkError> {
        match (self.state, msg) {
            (State::AwaitHello, Message::Hello(h)) => {
                if h.version != PROTOCOL_VERSION {
                    return Err(LinkError::Version(h.version));
                }
                if h.role == self.me.role {
                    return Err(LinkError::SameRole);
                }
                let proof = self.proof(self.me.role, &self.me.nonce, &h.nonce);
                self.queue(&Message::Auth { proof })?;
                self.peer = Some(h.clone());
                self.state = State::AwaitAuth;
                Ok(Some(Event::PeerHello(h)))
            }
            (State::AwaitAuth, Message::Auth { proof }) => {
                let Some(peer) = self.peer.clone() else {
                    return Err(LinkError::Unexpected("auth", self.state.name()));
                };
                // The peer's proof is a MAC over its role, its nonce and
                // ours; verified in constant time.
                let mut m = <HmacSha256 as Mac>::new_from_slice(self.key.as_bytes())
                    .unwrap_or_else(|_| unreachable!());
                m.update(b"twinmasq proof v1");
                m.update(&[peer.role.byte()]);
                m.update(&peer.nonce);
                m.update(&self.me.nonce);
                if m.verify_slice(&proof).is_err() {
                    return Err(LinkError::AuthFailed);
                }
                // Per-direction session keys from both nonces: frames of
                // this session verify in no other session or direction.
                let (p, s) = match self.me.role {
                    Role::Primary => (&self.me.nonce, &peer.nonce),
                    Role::Secondary => (&peer.nonce, &self.me.nonce),
                };
                let key_for = |role: Role| {
                    hmac(
                        self.key.as_bytes(),
                        &[b"twinmasq session v1", &[role.byte()], p, s],
                    )
                };
                self.send_key = key_for(self.me.role);
                self.recv_key = key_for(peer.role);
                self.state = State::Established;
                Ok(Some(Event::Established))
            }
            (State::Established, m @ (Message::Hello(_) | Message::Auth { .. })) => {
                let what = if matches!(m, Message::Hello(_)) {
                    "hello"
                } else {
                    "auth"
                };
                Err(LinkError::Unexpected(what, "established"))
            }
            (State::Established, m) => Ok(Some(Event::Message(m))),
            (state, _) => Err(LinkError::Unexpected("message", state.name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_goes_on_the_wire_as_its_index() {
        assert_eq!(crate::encode(&Role::Primary).unwrap(), [0]);
        assert_eq!(crate::encode(&Role::Secondary).unwrap(), [1]);
        assert_eq!(Role::Secondary.to_string(), "secondary");
    }

    fn key(b: u8) -> Key {
        Key::parse(&Key::format_new([b; 32]), "test").unwrap()
    }

    fn hello(role: Role, nonce: u8) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            role,
            node: nonce.into(),
            nonce: [nonce; 32],
            ranges: [9; 32],
            wall_ms: 1,
            mclt_ms: 3_600_000,
            terms: "ranges [198.18.0.10-198.18.0.99], failover-split 50".into(),
        }
    }

    type Outcome = Result<Vec<Event>, LinkError>;

    /// Runs both ends to completion; returns them and each side's events.
    fn pair(kp: Key, ks: Key) -> (Link, Link, Outcome, Outcome) {
        let mut p = Link::new(kp, hello(Role::Primary, 1));
        let mut s = Link::new(ks, hello(Role::Secondary, 2));
        let mut ep = Ok(Vec::new());
        let mut es = Ok(Vec::new());
        for _ in 0..3 {
            let to_s = p.take_output();
            let to_p = s.take_output();
            if let Ok(v) = &mut es {
                match s.receive(&to_s) {
                    Ok(more) => v.extend(more),
                    Err(e) => es = Err(e),
                }
            }
            if let Ok(v) = &mut ep {
                match p.receive(&to_p) {
                    Ok(more) => v.extend(more),
                    Err(e) => ep = Err(e),
                }
            }
        }
        (p, s, ep, es)
    }

    #[test]
    fn same_key_establishes_and_messages_flow() {
        let (mut p, mut s, ep, es) = pair(key(5), key(5));
        assert!(matches!(
            ep.unwrap().as_slice(),
            [Event::PeerHello(_), Event::Established]
        ));
        assert!(matches!(
            es.unwrap().as_slice(),
            [Event::PeerHello(_), Event::Established]
        ));
        p.send(&Message::Ack {
            seq: 7,
            lost: vec![],
        })
        .unwrap();
        p.send(&Message::Heartbeat { wall_ms: 3 }).unwrap();
        let bytes = p.take_output();
        // Delivered in pieces, as TCP may.
        let mut got = s.receive(&bytes[..5]).unwrap();
        got.extend(s.receive(&bytes[5..]).unwrap());
        assert_eq!(
            got,
            vec![
                Event::Message(Message::Ack {
                    seq: 7,
                    lost: vec![]
                }),
                Event::Message(Message::Heartbeat { wall_ms: 3 })
            ]
        );
    }

    #[test]
    fn an_ack_carries_the_stamps_that_did_not_stand() {
        let (mut p, mut s, _, _) = pair(key(5), key(5));
        let lost = vec![
            Stamp {
                wall_ms: 1_800_000_000_000,
                counter: 3,
                node: 7,
            },
            Stamp {
                wall_ms: u64::MAX,
                counter: u32::MAX,
                node: u32::MAX,
            },
        ];
        let ack = Message::Ack {
            seq: 9,
            lost: lost.clone(),
        };
        p.send(&ack).unwrap();
        assert_eq!(
            s.receive(&p.take_output()).unwrap(),
            vec![Event::Message(ack)]
        );
        // The most stamps an ack can carry fit in one frame with room to
        // spare: an update of records fills at most a quarter of one, and
        // a stamp encodes smaller than any record.
        let many = Message::Ack {
            seq: u64::MAX,
            lost: vec![lost[1]; (MAX_FRAME / 4) / 64],
        };
        assert!(crate::encode(&many).unwrap().len() < MAX_FRAME - 40);
    }

    #[test]
    fn wrong_key_is_refused_before_any_data() {
        let (p, s, ep, es) = pair(key(5), key(6));
        // The hello frames' MACs already fail under the other key.
        assert_eq!(ep, Err(LinkError::BadMac));
        assert_eq!(es, Err(LinkError::BadMac));
        assert!(!p.is_established() && !s.is_established());
    }

    #[test]
    fn tampered_replayed_oversize_and_junk_frames_end_the_link() {
        let established = || {
            let (p, s, _, _) = pair(key(5), key(5));
            (p, s)
        };
        let (mut p, mut s) = established();
        p.send(&Message::Ack {
            seq: 1,
            lost: vec![],
        })
        .unwrap();
        let mut bytes = p.take_output();
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        assert_eq!(s.receive(&bytes), Err(LinkError::BadMac));
        assert_eq!(s.receive(&[]), Err(LinkError::Failed));

        let (mut p, mut s) = established();
        p.send(&Message::Ack {
            seq: 1,
            lost: vec![],
        })
        .unwrap();
        let frame = p.take_output();
        s.receive(&frame).unwrap();
        assert!(matches!(s.receive(&frame), Err(LinkError::Sequence { .. })));

        let (_, mut s) = established();
        assert_eq!(
            s.receive(&((MAX_FRAME + 1) as u32).to_be_bytes()),
            Err(LinkError::Oversize(MAX_FRAME + 1))
        );
        let (_, mut s) = established();
        assert_eq!(s.receive(&[0, 0, 0, 3, 1, 2, 3]), Err(LinkError::Runt));
        let (_, mut s) = established();
        assert_eq!(s.receive(&[0, 0, 0, 60]).unwrap(), vec![]);
        assert_eq!(s.receive(&[0xAA; 60]), Err(LinkError::BadMac));
    }

    #[test]
    fn a_recorded_session_does_not_replay_into_a_new_one() {
        // Record everything a primary sent in one session...
        let mut p = Link::new(key(5), hello(Role::Primary, 1));
        let mut s = Link::new(key(5), hello(Role::Secondary, 2));
        s.receive(&p.take_output()).unwrap();
        p.receive(&s.take_output()).unwrap();
        s.receive(&p.take_output()).unwrap();
        p.send(&Message::Ack {
            seq: 1,
            lost: vec![],
        })
        .unwrap();
        let recorded = p.take_output();
        // ...and replay it to a fresh secondary (new nonce): the old proof
        // and the old session's frames do not verify.
        let mut s2 = Link::new(key(5), hello(Role::Secondary, 3));
        let mut p2 = Link::new(key(5), hello(Role::Primary, 1));
        let hello_frame = p2.take_output();
        s2.receive(&hello_frame).unwrap();
        assert!(s2.receive(&recorded).is_err());
        assert!(!s2.is_established());
    }

    #[test]
    fn version_and_role_mismatches_are_named() {
        let mut p = Link::new(key(5), hello(Role::Primary, 1));
        let mut other = hello(Role::Secondary, 2);
        other.version = 99;
        let mut s = Link::new(key(5), other);
        assert_eq!(p.receive(&s.take_output()), Err(LinkError::Version(99)));
        let mut p = Link::new(key(5), hello(Role::Primary, 1));
        let mut p2 = Link::new(key(5), hello(Role::Primary, 2));
        assert_eq!(p.receive(&p2.take_output()), Err(LinkError::SameRole));
    }

    #[test]
    fn a_message_too_big_for_a_frame_is_refused_not_sent() {
        let (mut p, _, _, _) = pair(key(5), key(5));
        let huge = Message::Error {
            reason: "x".repeat(MAX_FRAME),
        };
        assert!(matches!(p.send(&huge), Err(LinkError::Oversize(_))));
        assert!(p.take_output().is_empty());
        p.send(&Message::Ack {
            seq: 1,
            lost: vec![],
        })
        .unwrap();
        assert!(!p.take_output().is_empty());
    }

    #[test]
    fn nothing_is_sent_before_established() {
        let mut p = Link::new(key(5), hello(Role::Primary, 1));
        assert!(p
            .send(&Message::SyncDone {
                serial: 1,
                through: 0
            })
            .is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..8))| {
            let (_, mut s, _, _) = pair(key(5), key(5));
            for c in chunks {
                if s.receive(&c).is_err() {
                    break;
                }
            }
        });
    }

    fn start(inc: u64, resume: Option<(u64, u64, u64)>) -> SyncStart {
        SyncStart {
            incarnation: inc,
            resume: resume.map(
                |(peer_incarnation, applied_through, kept_from)| ResumePoint {
                    peer_incarnation,
                    applied_through,
                    kept_from,
                },
            ),
        }
    }

    #[test]
    fn resume_needs_both_incarnations_and_both_journals() {
        let p = start(10, Some((20, 7, 5)));
        let s = start(20, Some((10, 4, 8)));
        assert!(p.can_resume(&s) && s.can_resume(&p));
        // The secondary restarted: the primary's point is for an old one.
        let s2 = start(21, None);
        assert!(!p.can_resume(&s2));
        let s3 = start(21, Some((10, 4, 8)));
        assert!(!p.can_resume(&s3) && !s3.can_resume(&p));
        // The primary no longer keeps update 5, which the secondary lacks.
        let s4 = start(20, Some((10, 3, 8)));
        assert!(!p.can_resume(&s4) && !s4.can_resume(&p));
        // The secondary keeps its updates from 9 on, but the primary has
        // applied them only through 7: update 8 is gone.
        let s5 = start(20, Some((10, 4, 9)));
        assert!(!p.can_resume(&s5) && !s5.can_resume(&p));
        // A SyncStart encodes and decodes as a message.
        let m = Message::SyncStart(p);
        assert_eq!(
            crate::decode::<Message>(&crate::encode(&m).unwrap()).unwrap(),
            m
        );
    }

    #[test]
    fn resume_decision_is_symmetric() {
        use proptest::prelude::*;
        let side = || (0u64..3, prop::option::of((0u64..3, 0u64..6, 0u64..8)));
        proptest!(|(a in side(), b in side())| {
            let (a, b) = (start(a.0, a.1), start(b.0, b.1));
            prop_assert_eq!(a.can_resume(&b), b.can_resume(&a));
        });
    }
}
