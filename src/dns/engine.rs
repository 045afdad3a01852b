//! The DNS engine core: bytes and the time in, actions out. Local data
//! first, then the cache, then upstream servers. No sockets, no clock, no
//! global RNG: the shell owns those and feeds this.
//!
//! `now_ms` must be unix-epoch milliseconds (the local data uses it for
//! lease expiry); it only needs to be monotonic enough for timeouts.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::authority::{AuthQuery, AuthVerdict, LocalData, Lookup, Route, Service};
use super::cache::{Cache, CacheKey, CacheStats};
use super::forward::{
    Attempt, CaseEcho, CaseVerdict, ClientKey, ForwardKey, LatencyHistogram, Pending, PendingTable,
    Question, ServerSelector, Strategy, TcpAttempt, Waiter, TCP_TIMEOUT_MS, UDP_TIMEOUT_MS,
};
use super::question;
use super::replay::{Replay, Scope as ReplayScope, Source as ReplaySource};
use super::zone::Net;
use crate::config::dns_types::{AddrPrefix, DnsConfig};

/// Plain DNS over UDP without EDNS (RFC 1035).
pub const UDP_LIMIT: usize = 512;
/// A bound on UDP replies for the fuzz target, whose configuration keeps
/// the default `edns-packet-max` (1232); that option is the real limit.
pub const MAX_UDP_LIMIT: usize = 4096;
pub(crate) const HEADER_LEN: usize = 12;
/// Records per zone-transfer message, by their uncompressed size: well
/// under the 64 KiB a TCP message can hold with header, question and OPT.
const TRANSFER_MESSAGE_MAX: usize = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Who asked: where to send the reply. `conn` tells TCP connections apart
/// (the shell's number); 0 for UDP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientRef {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub conn: u64,
    /// With `localise-queries`: our IPv4 address the query was sent to,
    /// with the prefix of the interface that has it. `None` otherwise.
    pub arrival: Option<Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Reply {
        client: ClientRef,
        bytes: Vec<u8>,
    },
    /// Several messages to one TCP client, in this order (a zone transfer).
    ReplyMany {
        client: ClientRef,
        messages: Vec<Vec<u8>>,
    },
    /// Send `bytes` to `server` over UDP, from socket number `socket`.
    /// Every number is new unless `query-port` is set: the shell opens a
    /// socket on a fresh random port (within `min-port`/`max-port`),
    /// connects it to `server` (the kernel then drops datagrams from
    /// anyone else), sends, and passes what arrives on it to
    /// `upstream_reply` under that number until `CloseUpstream` names it.
    /// With `query-port` the number is [`SHARED_SOCKET`], the one socket
    /// bound to that port.
    Upstream {
        server: SocketAddr,
        socket: u64,
        bytes: Vec<u8>,
    },
    /// The forward socket `socket` was opened for is done with it (it was
    /// answered, or the forward is over): close it.
    CloseUpstream {
        socket: u64,
    },
    /// Do this exchange over TCP (length framing is the shell's job) and
    /// report back with `upstream_tcp_reply(token, ..)`.
    UpstreamTcp {
        server: SocketAddr,
        token: u64,
        bytes: Vec<u8>,
    },
}

/// Why packets were dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Shorter than a header.
    pub junk: u64,
    /// A response arrived on the query port.
    pub not_query: u64,
    /// A retransmission of a query we are still forwarding.
    pub duplicate: u64,
    /// Upstream reply with an id no pending query uses.
    pub unknown_id: u64,
    /// Right id, but on another socket than the one it was sent from.
    pub wrong_socket: u64,
    /// Right id, but from a server it was not sent to.
    pub wrong_source: u64,
    /// Right id, but another question (or none): a spoofing attempt.
    pub wrong_question: u64,
    /// Right id and question, but the name not in the letter case it was
    /// sent in (0x20): a forgery, or a server that does not echo case.
    pub case_mismatch: u64,
    /// Upstream reply that was not a response or could not be read.
    pub malformed_reply: u64,
    /// A TCP result for an exchange we already gave up on.
    pub late_tcp: u64,
    /// AXFR over UDP, which dnsmasq ignores too.
    pub udp_transfer: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsStats {
    pub queries: u64,
    pub local_answers: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Questions sent upstream (one forward, however many clients wait).
    pub forwarded: u64,
    /// Queries that joined a forward of the same question already out,
    /// instead of being forwarded again.
    pub coalesced: u64,
    /// Questions asked again in plain case after an answer came back in
    /// another letter case (0x20).
    pub case_fallbacks: u64,
    pub upstream_replies: u64,
    pub tcp_fallbacks: u64,
    pub servfail: u64,
    pub refused: u64,
    pub formerr: u64,
    pub notimp: u64,
    /// Replies sent with TC because they did not fit.
    pub truncated: u64,
    /// Queries refused because `dns-forward-max` were already pending.
    pub forward_max: u64,
    /// Forwarded queries no server answered in time: like dnsmasq, the
    /// client gets no answer (it retries) rather than SERVFAIL.
    pub upstream_timeouts: u64,
    /// Upstream answers withheld by `stop-dns-rebind`.
    pub rebind_blocked: u64,
    /// Answers from authoritative zones (transfers not counted).
    pub auth_answers: u64,
    /// Zone transfers sent (AXFR, or IXFR answered with the whole zone).
    pub transfers: u64,
    /// Failed upstream attempts: SERVFAIL or REFUSED from a server, a TCP
    /// exchange that failed, one server's silence past its timeout. The
    /// query itself may still be answered by the next server.
    pub upstream_errors: u64,
    /// Of those, the silences (a subset, so `upstream_timeouts` above
    /// counts queries and this counts attempts).
    pub upstream_attempt_timeouts: u64,
    /// Time from an attempt to the server's answer, for every upstream
    /// answer accepted (error answers too).
    pub upstream_latency: LatencyHistogram,
    pub dropped: DropStats,
}

/// What is wrong with an upstream reply; each maps to a drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ReplyError {
    #[error("reply too short or not a response")]
    Malformed,
    #[error("no pending query has this id")]
    UnknownId,
    #[error("id belongs to another socket")]
    WrongSocket,
    #[error("from a server the query was not sent to")]
    WrongSource,
    #[error("question does not match")]
    WrongQuestion,
}

/// The socket number of every attempt with `query-port`: the one socket
/// bound to it. Other numbers start at 1.
pub const SHARED_SOCKET: u64 = 0;

/// dnsmasq's LOGRATE: a warning a client can trigger at will is logged at
/// most this often.
const LOG_EVERY_MS: u64 = 120_000;

/// Lets a repeated warning through once per [`LOG_EVERY_MS`].
#[derive(Debug, Default)]
struct LogLimit {
    last_ms: Option<u64>,
}

impl LogLimit {
    fn allow(&mut self, now_ms: u64) -> bool {
        let due = self
            .last_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= LOG_EVERY_MS);
        if due {
            self.last_ms = Some(now_ms);
        }
        due
    }
}

/// The client's query, as far as replies need it.
struct Request {
    id: u16,
    rd: bool,
    cd: bool,
    query: Query,
    edns: bool,
    /// The size our OPT record advertises: `edns-packet-max`.
    payload: u16,
    limit: usize,
    /// RA in replies: set by the recursive service, clear at the
    /// authoritative one (as dnsmasq).
    ra: bool,
}

impl Waiter {
    /// This client's side of a forward, for replies built here (SERVFAIL,
    /// a withheld rebind, a TC redirect to TCP).
    fn request(&self, key: &ForwardKey, payload: u16) -> Request {
        Request {
            id: self.id,
            rd: self.rd,
            cd: key.cd,
            query: self.query.clone(),
            edns: key.edns,
            payload,
            limit: self.limit,
            ra: true,
        }
    }
}

pub struct DnsEngine<L: LocalData> {
    local: L,
    cache: Cache,
    servers: Vec<SocketAddr>,
    selector: ServerSelector,
    pending: PendingTable,
    /// `query-port`: every attempt on [`SHARED_SOCKET`].
    shared_port: bool,
    /// The last socket number given out.
    next_socket: u64,
    /// Ids, 0x20 case and the server plan's probes. Seeded from the OS
    /// (256 bits) outside tests.
    rng: StdRng,
    /// Which servers echo the letter case of questions.
    case: CaseEcho,
    case_log: LogLimit,
    forward_max: usize,
    /// `edns-packet-max`: no UDP reply is larger, whatever a client offers.
    edns_max: u16,
    forward_max_log: LogLimit,
    log_queries: bool,
    rebind: RebindGuard,
    /// `bogus-nxdomain`
    bogus_nxdomain: Vec<AddrPrefix>,
    /// `ignore-address`
    ignore_address: Vec<AddrPrefix>,
    /// `max-ttl`; 0 is none.
    max_ttl: u32,
    /// `filter-A`, `filter-AAAA`
    filter_a: bool,
    filter_aaaa: bool,
    next_token: u64,
    stats: DnsStats,
    replay: Replay,
    /// Set by the answering path when its reply may be replayed: until
    /// when the same query would get the same bytes.
    replay_until: Option<(u64, ReplaySource)>,
}

/// `stop-dns-rebind`: upstream answers that point a public name at a
/// private address are withheld (NOERROR, no answers, as dnsmasq does),
/// except for `rebind-domain-ok` domains.
struct RebindGuard {
    on: bool,
    localhost_ok: bool,
    domains_ok: Vec<String>,
}

impl RebindGuard {
    fn blocks(&self, qname: &hickory_proto::rr::Name, answers: &[Record]) -> bool {
        if !self.on {
            return false;
        }
        let name = crate::dns::names::key_of(qname);
        if self
            .domains_ok
            .iter()
            .any(|d| crate::dns::names::is_under(&name, d))
        {
            return false;
        }
        answers.iter().any(|r| {
            let ip: std::net::IpAddr = match &r.data {
                hickory_proto::rr::RData::A(a) => a.0.into(),
                hickory_proto::rr::RData::AAAA(a) => a.0.into(),
                _ => return false,
            };
            crate::dns::names::is_rebind_private(ip) && !(self.localhost_ok && ip.is_loopback())
        })
    }
}

impl<L: LocalData> DnsEngine<L> {
    /// An engine whose random numbers (ids, 0x20 case) come from a
    /// generator seeded from the OS with 256 bits.
    pub fn new(cfg: &DnsConfig, local: L) -> Self {
        Self::with_rng(cfg, local, StdRng::from_os_rng())
    }

    /// The same with a fixed seed, for tests and fuzzing: reproducible,
    /// and therefore predictable.
    pub fn with_seed(cfg: &DnsConfig, local: L, seed: u64) -> Self {
        Self::with_rng(cfg, local, StdRng::seed_from_u64(seed))
    }

    fn with_rng(cfg: &DnsConfig, local: L, rng: StdRng) -> Self {
        let strategy = if cfg.all_servers {
            Strategy::AllServers
        } else if cfg.strict_order {
            Strategy::StrictOrder
        } else {
            Strategy::Fastest
        };
        DnsEngine {
            local,
            cache: Cache::new(cfg),
            servers: cfg.servers.clone(),
            selector: ServerSelector::new(strategy),
            pending: PendingTable::default(),
            shared_port: cfg.query_port.is_some(),
            next_socket: SHARED_SOCKET,
            rng,
            case: CaseEcho::default(),
            case_log: LogLimit::default(),
            forward_max: cfg.dns_forward_max as usize,
            edns_max: cfg.edns_packet_max.max(UDP_LIMIT as u16),
            forward_max_log: LogLimit::default(),
            log_queries: cfg.log_queries,
            rebind: RebindGuard {
                on: cfg.stop_dns_rebind,
                localhost_ok: cfg.rebind_localhost_ok,
                domains_ok: cfg.rebind_domain_ok.clone(),
            },
            bogus_nxdomain: cfg.bogus_nxdomain.clone(),
            ignore_address: cfg.ignore_address.clone(),
            max_ttl: cfg.max_ttl,
            filter_a: cfg.filter_a,
            filter_aaaa: cfg.filter_aaaa,
            next_token: 0,
            stats: DnsStats::default(),
            replay: Replay::default(),
            replay_until: None,
        }
    }

    pub fn local(&self) -> &L {
        &self.local
    }

    pub fn local_mut(&mut self) -> &mut L {
        self.replay.retire_all();
        &mut self.local
    }

    pub fn stats(&self) -> &DnsStats {
        &self.stats
    }

    pub fn clear_cache(&mut self) {
        self.replay.retire_all();
        self.cache.clear();
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn cache_capacity(&self) -> usize {
        self.cache.capacity()
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// New default servers (resolv-file reload). Queries already pending
    /// keep the servers they were planned with.
    pub fn set_servers(&mut self, servers: Vec<SocketAddr>) {
        if servers != self.servers {
            self.replay.retire_all();
            self.servers = servers;
            self.selector.reset();
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.pending.next_deadline()
    }

    /// The authoritative zones' current SOA serial, if any zone is set up.
    pub fn zone_serial(&self) -> Option<u32> {
        self.local.zone_serial()
    }

    /// A query at the normal (recursive) service.
    pub fn query(&mut self, bytes: &[u8], client: ClientRef, now_ms: u64) -> Vec<Action> {
        self.query_at(bytes, client, Service::Recursive, now_ms)
    }

    /// A query at `service`: the shell knows whether it arrived at an
    /// `auth-server` interface or address.
    pub fn query_at(
        &mut self,
        bytes: &[u8],
        client: ClientRef,
        service: Service,
        now_ms: u64,
    ) -> Vec<Action> {
        self.stats.queries += 1;
        // Logging wants every query looked at; TCP is rare and its replies
        // may be transfers.
        let replayable = client.transport == Transport::Udp && !self.log_queries;
        // Where the query was asked changes the answer: the service, and
        // with localise-queries the subnet it was sent to.
        let scope = ReplayScope {
            auth: service == Service::Authoritative,
            arrival: client.arrival,
        };
        if replayable {
            if let Some((reply, source)) = self.replay.get(bytes, scope, now_ms) {
                match source {
                    ReplaySource::Local => self.stats.local_answers += 1,
                    ReplaySource::Cache => self.stats.cache_hits += 1,
                }
                return vec![Action::Reply {
                    client,
                    bytes: reply,
                }];
            }
        }
        self.replay_until = None;
        let truncated = self.stats.truncated;
        let actions = self.answer(bytes, client, service, now_ms);
        if let (true, Some((until, source)), [Action::Reply { bytes: reply, .. }]) =
            (replayable, self.replay_until.take(), actions.as_slice())
        {
            // A truncated reply is counted each time it is sent.
            if self.stats.truncated == truncated {
                self.replay.put(bytes, scope, reply, source, until);
            }
        }
        actions
    }

    /// The full path for one query: decode, look up, encode.
    fn answer(
        &mut self,
        bytes: &[u8],
        client: ClientRef,
        service: Service,
        now_ms: u64,
    ) -> Vec<Action> {
        if bytes.len() < HEADER_LEN {
            self.stats.dropped.junk += 1;
            return Vec::new();
        }
        // Cheap header checks before any parsing.
        if bytes[2] & 0x80 != 0 {
            self.stats.dropped.not_query += 1;
            return Vec::new();
        }
        let opcode = (bytes[2] >> 3) & 0x0f;
        if opcode != 0 {
            self.stats.notimp += 1;
            return vec![Action::Reply {
                client,
                bytes: header_reply(bytes, ResponseCode::NotImp),
            }];
        }
        let qdcount = u16::from_be_bytes([bytes[4], bytes[5]]);
        let msg = match (qdcount, Message::from_vec(bytes)) {
            (1, Ok(m)) if m.queries.len() == 1 => m,
            _ => {
                self.stats.formerr += 1;
                return vec![Action::Reply {
                    client,
                    bytes: header_reply(bytes, ResponseCode::FormErr),
                }];
            }
        };
        let Some(query) = msg.queries.first().cloned() else {
            return Vec::new();
        };
        // RFC 6891 6.2.5: an offer below 512 counts as 512. Above our own
        // maximum it is cut to it, as dnsmasq does: no client can ask for
        // a reply larger than the operator allows (amplification).
        let limit = match client.transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => msg
                .edns
                .as_ref()
                .map(|e| usize::from(e.max_payload()).clamp(UDP_LIMIT, usize::from(self.edns_max)))
                .unwrap_or(UDP_LIMIT),
        };
        let req = Request {
            id: msg.metadata.id,
            rd: msg.metadata.recursion_desired,
            cd: msg.metadata.checking_disabled,
            query,
            edns: msg.edns.is_some(),
            payload: self.edns_max,
            limit,
            ra: service == Service::Recursive,
        };
        if self.log_queries {
            tracing::info!(
                "query[{}] {} from {}",
                req.query.query_type,
                display_name(&req.query.name),
                client.addr.ip()
            );
        }

        if let Some(actions) = self.authoritative(&req, &msg, &client, service, now_ms) {
            return actions;
        }

        // Local data answers only the Internet class; anything else goes
        // to the normal servers.
        let route = if req.query.query_class == DNSClass::IN {
            match self.local.lookup(
                &req.query.name,
                req.query.query_type,
                client.arrival,
                now_ms / 1000,
            ) {
                Lookup::Local {
                    rcode,
                    mut answers,
                    authorities,
                    authoritative,
                } => {
                    self.stats.local_answers += 1;
                    if req.query.query_type == RecordType::ANY && client.transport == Transport::Udp
                    {
                        minimal_any(&mut answers);
                    }
                    // Local data may change with the clock, in whole seconds.
                    let next_second = (now_ms / 1000 + 1) * 1000;
                    self.replay_until = Some((next_second, ReplaySource::Local));
                    self.log_answer("config", &req.query, rcode, &answers);
                    let out = self.build_reply(&req, rcode, authoritative, &answers, &authorities);
                    return vec![Action::Reply { client, bytes: out }];
                }
                Lookup::Forward(r) => r,
            }
        } else {
            Route::Default
        };

        let key = CacheKey::new(&req.query.name, req.query.query_type, req.query.query_class);
        // dnsmasq forwards a query that does not ask for recursion rather
        // than answer it from the cache.
        let hit = if req.rd {
            self.cache.get(&key, now_ms)
        } else {
            None
        };
        if let Some(mut hit) = hit {
            self.stats.cache_hits += 1;
            self.replay_until = Some((hit.steady_until_ms, ReplaySource::Cache));
            // Answer in the letter case the client asked, as a forwarded
            // answer would be.
            for r in &mut hit.answers {
                if r.name.eq_case(&req.query.name) || r.name == req.query.name {
                    r.name = req.query.name.clone();
                }
                if self.max_ttl != 0 {
                    r.ttl = r.ttl.min(self.max_ttl);
                }
            }
            let before = hit.answers.len() + hit.authorities.len();
            hit.answers.retain(|r| !self.filtered(r));
            hit.authorities.retain(|r| !self.filtered(r));
            self.log_answer("cached", &req.query, hit.rcode, &hit.answers);
            let out = if hit.answers.len() + hit.authorities.len() < before {
                ede_reply(
                    &req,
                    hit.rcode,
                    false,
                    &hit.answers,
                    &hit.authorities,
                    EDE_FILTERED,
                )
            } else {
                self.build_reply(&req, hit.rcode, false, &hit.answers, &hit.authorities)
            };
            return vec![Action::Reply { client, bytes: out }];
        }
        self.stats.cache_misses += 1;

        let (servers, domain) = match route {
            Route::Default => (self.servers.clone(), false),
            Route::Servers(s) => (s, true),
        };
        if servers.is_empty() {
            // dnsmasq answers REFUSED when it has nowhere to send a query.
            self.stats.refused += 1;
            let out = self.build_reply(&req, ResponseCode::Refused, false, &[], &[]);
            return vec![Action::Reply { client, bytes: out }];
        }
        let Some(span) = question::name_span(bytes) else {
            // Read by hickory, yet not plain labels (a compression pointer
            // where nothing comes before to point to): an answer could not
            // be matched to it byte for byte.
            self.stats.formerr += 1;
            return vec![Action::Reply {
                client,
                bytes: header_reply(bytes, ResponseCode::FormErr),
            }];
        };
        let fkey = ForwardKey {
            question: Question::new(&req.query.name, req.query.query_type, req.query.query_class),
            dnssec_ok: msg.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            cd: req.cd,
            edns: req.edns,
        };
        if self
            .pending
            .has_client(&ClientKey::new(&client, req.id, &fkey))
        {
            self.stats.dropped.duplicate += 1;
            return Vec::new();
        }
        let tcp = client.transport == Transport::Tcp;
        let waiter = Waiter {
            client,
            id: req.id,
            query: req.query.clone(),
            qname: bytes[span].to_vec(),
            rd: req.rd,
            limit: req.limit,
        };
        if let Some(key) = self.pending.by_key(&fkey) {
            // The same question is out already: this client waits for its
            // answer (dnsmasq's frec_src list), so one question from many
            // ids or ports is one upstream query, one target for a spoofer
            // (CVE-2020-25686). As in dnsmasq, the clients added this way
            // share one pool of dns-forward-max, and are refused past it.
            if self.pending.extra_waiters() >= self.forward_max {
                return self.forward_max_refused(&req, waiter.client, now_ms);
            }
            self.stats.coalesced += 1;
            self.pending.add_waiter(key, waiter);
            return Vec::new();
        }
        if self.pending.len() >= self.forward_max {
            return self.forward_max_refused(&req, waiter.client, now_ms);
        }

        let plan = if domain {
            self.selector.plan_domain(&servers)
        } else {
            self.selector.plan(&servers, now_ms)
        };
        let order = plan.order.clone();
        let fan_out = if tcp {
            1
        } else {
            plan.fan_out.clamp(1, order.len())
        };
        let key = self.pending.insert(Pending {
            key: fkey,
            waiters: vec![waiter],
            wire: bytes.to_vec(),
            plan,
            sent: fan_out,
            failed: 0,
            deadline_ms: now_ms + if tcp { TCP_TIMEOUT_MS } else { UDP_TIMEOUT_MS },
            started_ms: now_ms,
            sent_ms: now_ms,
            attempts: Vec::new(),
            tcp: None,
        });
        self.stats.forwarded += 1;
        let mut actions = Vec::with_capacity(fan_out);
        for server in &order[..fan_out] {
            // A TCP client's query goes upstream over TCP, as dnsmasq
            // does: its answer may be large.
            let sent = if tcp {
                self.send_tcp(key, *server)
            } else {
                self.send_udp(key, *server, false, now_ms)
            };
            actions.extend(sent);
        }
        actions
    }

    /// REFUSED: `dns-forward-max` forwards, or clients waiting on them, are
    /// pending already.
    fn forward_max_refused(
        &mut self,
        req: &Request,
        client: ClientRef,
        now_ms: u64,
    ) -> Vec<Action> {
        // dnsmasq logs "Maximum number of concurrent DNS queries reached"
        // and the client gets REFUSED rather than silence.
        self.stats.forward_max += 1;
        self.stats.refused += 1;
        // Once per LOG_EVERY_MS, as dnsmasq: a flood must not become a
        // flood of log lines (the counter has the full number).
        if self.forward_max_log.allow(now_ms) {
            tracing::warn!(
                "Maximum number of concurrent DNS queries reached (max: {})",
                self.forward_max
            );
        }
        let out = self.build_reply(req, ResponseCode::Refused, false, &[], &[]);
        vec![Action::Reply { client, bytes: out }]
    }

    /// One UDP attempt of forward `key` to `server`: a new socket (unless
    /// `query-port` shares one), a fresh id, and the name in random letter
    /// case unless `plain` or the server is known not to echo case.
    fn send_udp(
        &mut self,
        key: u64,
        server: SocketAddr,
        plain: bool,
        now_ms: u64,
    ) -> Option<Action> {
        let socket = if self.shared_port {
            SHARED_SOCKET
        } else {
            self.next_socket += 1;
            self.next_socket
        };
        let id = self.fresh_id(socket);
        let mixed = !plain && self.case.mixed_case(server, now_ms);
        let p = self.pending.get(key)?;
        let mut bytes = p.wire.clone();
        bytes[..2].copy_from_slice(&id.to_be_bytes());
        let span = question::name_span(&bytes)?;
        let letters = if mixed {
            question::randomise(&mut bytes[span.clone()], &mut self.rng)
        } else {
            0
        };
        if self.log_queries {
            self.log_forward(&p.first().query, server);
        }
        let attempt = Attempt {
            socket,
            server,
            id,
            qname: bytes[span].to_vec(),
            mixed_case: letters > 0,
        };
        self.pending.add_attempt(key, attempt);
        Some(Action::Upstream {
            server,
            socket,
            bytes,
        })
    }

    /// Forward `key` over TCP to `server`, in the client's own case (no
    /// blind spoofer gets into a TCP stream) with a fresh id.
    fn send_tcp(&mut self, key: u64, server: SocketAddr) -> Option<Action> {
        let token = self.token();
        let id = self.rng.random::<u16>();
        let p = self.pending.get(key)?;
        let mut bytes = p.wire.clone();
        bytes[..2].copy_from_slice(&id.to_be_bytes());
        if self.log_queries {
            self.log_forward(&p.first().query, server);
        }
        self.pending.set_tcp(key, TcpAttempt { token, id });
        Some(Action::UpstreamTcp {
            server,
            token,
            bytes,
        })
    }

    /// The shell closes the sockets of attempts that are over (a shared
    /// `query-port` socket stays).
    fn close_sockets(&self, attempts: &[Attempt]) -> Vec<Action> {
        if self.shared_port {
            return Vec::new();
        }
        attempts
            .iter()
            .map(|a| Action::CloseUpstream { socket: a.socket })
            .collect()
    }

    /// The authoritative zones' part: None when the query is not theirs
    /// (only at the recursive service).
    fn authoritative(
        &mut self,
        req: &Request,
        msg: &Message,
        client: &ClientRef,
        service: Service,
        now_ms: u64,
    ) -> Option<Vec<Action>> {
        let client_serial = if req.query.query_type == RecordType::IXFR {
            msg.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
        } else {
            None
        };
        let q = AuthQuery {
            name: &req.query.name,
            qtype: req.query.query_type,
            qclass: req.query.query_class,
            service,
            peer: client.addr.ip(),
            tcp: client.transport == Transport::Tcp,
            client_serial,
        };
        let client = client.clone();
        let reply = |bytes| {
            Some(vec![Action::Reply {
                client: client.clone(),
                bytes,
            }])
        };
        match self.local.auth(&q, now_ms / 1000) {
            // The authoritative service answers nothing else.
            AuthVerdict::NotMine if service == Service::Authoritative => {
                self.stats.refused += 1;
                reply(self.build_reply(req, ResponseCode::Refused, false, &[], &[]))
            }
            AuthVerdict::NotMine => None,
            AuthVerdict::Refused => {
                self.stats.refused += 1;
                reply(self.build_reply(req, ResponseCode::Refused, false, &[], &[]))
            }
            AuthVerdict::Drop => {
                self.stats.dropped.udp_transfer += 1;
                Some(Vec::new())
            }
            AuthVerdict::Answer {
                rcode,
                answers,
                authorities,
                authoritative,
            } => {
                self.stats.auth_answers += 1;
                self.log_answer("auth", &req.query, rcode, &answers);
                reply(self.build_reply(req, rcode, authoritative, &answers, &authorities))
            }
            AuthVerdict::Transfer(records) => {
                if client.transport != Transport::Tcp {
                    self.stats.dropped.udp_transfer += 1;
                    return Some(Vec::new());
                }
                if self.log_queries {
                    tracing::info!(
                        "auth {} is <{}> to {}, {} records",
                        display_name(&req.query.name),
                        req.query.query_type,
                        client.addr.ip(),
                        records.len()
                    );
                }
                match encode_transfer(req, &records) {
                    Some(messages) => {
                        self.stats.transfers += 1;
                        Some(vec![Action::ReplyMany { client, messages }])
                    }
                    None => {
                        tracing::error!(
                            "zone {} does not encode for transfer",
                            display_name(&req.query.name)
                        );
                        self.stats.servfail += 1;
                        reply(self.build_reply(req, ResponseCode::ServFail, true, &[], &[]))
                    }
                }
            }
        }
    }

    /// A datagram that arrived on upstream socket `socket` from `from`.
    pub fn upstream_reply(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        socket: u64,
        now_ms: u64,
    ) -> Vec<Action> {
        let (key, attempt, case) = match self.match_udp_reply(bytes, from, socket) {
            Ok(k) => k,
            Err(e) => {
                let d = &mut self.stats.dropped;
                match e {
                    ReplyError::Malformed => d.malformed_reply += 1,
                    ReplyError::UnknownId => d.unknown_id += 1,
                    ReplyError::WrongSocket => d.wrong_socket += 1,
                    ReplyError::WrongSource => d.wrong_source += 1,
                    ReplyError::WrongQuestion => d.wrong_question += 1,
                }
                tracing::debug!("dropped upstream reply from {from}: {e}");
                return Vec::new();
            }
        };
        if attempt.mixed_case {
            if case == question::Match::OtherCase {
                return self.case_mismatch(key, &attempt, now_ms);
            }
            self.case.echoed(attempt.server);
        }
        let rcode = bytes[3] & 0x0f;
        // dnsmasq drops such a reply before anything else looks at it: the
        // query stays pending for another server's answer, or times out.
        if rcode == ResponseCode::NoError.low()
            && !self.ignore_address.is_empty()
            && Message::from_vec(bytes)
                .is_ok_and(|m| listed_address(&m.answers, &self.ignore_address).is_some())
        {
            tracing::debug!("ignored upstream reply from {from}: ignore-address");
            return Vec::new();
        }
        self.stats.upstream_replies += 1;
        self.observe_latency(key, now_ms);
        if rcode == ResponseCode::ServFail.low() || rcode == ResponseCode::Refused.low() {
            self.selector.bad(from);
            self.stats.upstream_errors += 1;
            // That server has answered: its socket is done.
            let ended = self.pending.end_attempt(key, attempt.socket, attempt.id);
            let mut actions = self.close_sockets(ended.as_slice());
            actions.extend(self.server_failed(key, now_ms));
            return actions;
        }
        if bytes[2] & 0x02 != 0 {
            // Truncated: ask again over TCP, from the same server; UDP
            // answers are no longer taken.
            let ended = self.pending.end_attempts(key);
            let mut actions = self.close_sockets(&ended);
            self.stats.tcp_fallbacks += 1;
            let Some(p) = self.pending.get_mut(key) else {
                return actions;
            };
            p.deadline_ms = now_ms + TCP_TIMEOUT_MS;
            p.sent_ms = now_ms;
            actions.extend(self.send_tcp(key, from));
            return actions;
        }
        self.selector.good(from);
        self.finish(key, bytes, now_ms)
    }

    /// An answer to a mixed-case attempt that matches but for the case
    /// (see [`CaseEcho`] for the policy): never taken as it is.
    fn case_mismatch(&mut self, key: u64, attempt: &Attempt, now_ms: u64) -> Vec<Action> {
        self.stats.dropped.case_mismatch += 1;
        let server = attempt.server;
        match self.case.mismatch(server, now_ms) {
            CaseVerdict::Forged => {
                if self.case_log.allow(now_ms) {
                    let name = self
                        .pending
                        .get(key)
                        .map(|p| display_name(&p.first().query.name))
                        .unwrap_or_default();
                    tracing::warn!(
                        "answer for {name} from {} with the letter case changed: possible spoofing",
                        server.ip()
                    );
                }
                Vec::new()
            }
            CaseVerdict::AskPlain { now_plain } => {
                if now_plain {
                    tracing::info!(
                        "{server} does not echo the letter case of questions: asked in plain case for the next hour"
                    );
                }
                self.stats.case_fallbacks += 1;
                let ended = self.pending.end_attempt(key, attempt.socket, attempt.id);
                let mut actions = self.close_sockets(ended.as_slice());
                let Some(p) = self.pending.get_mut(key) else {
                    return actions;
                };
                p.deadline_ms = now_ms + UDP_TIMEOUT_MS;
                p.sent_ms = now_ms;
                actions.extend(self.send_udp(key, server, true, now_ms));
                actions
            }
        }
    }

    /// The result of a TCP exchange (`None`: it failed).
    pub fn upstream_tcp_reply(
        &mut self,
        token: u64,
        reply: Option<&[u8]>,
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(key) = self.pending.by_tcp(token) else {
            self.stats.dropped.late_tcp += 1;
            return Vec::new();
        };
        let Some(p) = self.pending.get(key) else {
            return Vec::new();
        };
        let Some(tcp) = p.tcp else {
            return Vec::new();
        };
        let (qtype, qclass) = (p.key.question.qtype, p.key.question.qclass);
        // Sent in the client's case; over TCP nobody blind gets in, so any
        // case is taken.
        let ok = reply.filter(|b| {
            b.len() >= HEADER_LEN
                && b[2] & 0x80 != 0
                && u16::from_be_bytes([b[0], b[1]]) == tcp.id
                && question::compare(b, &p.first().qname, qtype.into(), qclass.into())
                    != question::Match::Different
        });
        let Some(bytes) = ok else {
            if reply.is_some() {
                self.stats.dropped.malformed_reply += 1;
            }
            self.stats.upstream_errors += 1;
            return self.server_failed(key, now_ms);
        };
        self.stats.upstream_replies += 1;
        self.observe_latency(key, now_ms);
        let rcode = bytes[3] & 0x0f;
        if rcode == ResponseCode::ServFail.low() || rcode == ResponseCode::Refused.low() {
            self.stats.upstream_errors += 1;
            return self.server_failed(key, now_ms);
        }
        self.finish(key, bytes, now_ms)
    }

    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        for key in self.pending.expired(now_ms) {
            if let Some(p) = self.pending.get(key) {
                // Only the last server tried is to blame for the silence.
                if let Some(s) = p.sent.checked_sub(1).and_then(|i| p.plan.order.get(i)) {
                    let s = *s;
                    self.selector.bad(s);
                }
            }
            actions.extend(self.timed_out(key, now_ms));
        }
        actions
    }

    fn timed_out(&mut self, key: u64, now_ms: u64) -> Vec<Action> {
        // A timeout counts as a failure of every server still silent.
        let Some(p) = self.pending.get_mut(key) else {
            return Vec::new();
        };
        self.stats.upstream_errors += 1;
        self.stats.upstream_attempt_timeouts += 1;
        p.failed = p.sent;
        if p.sent >= p.plan.order.len() {
            // Nobody left to ask and nobody answered: dnsmasq stays silent
            // and lets the client retry.
            let Some(p) = self.pending.remove(key) else {
                return Vec::new();
            };
            self.stats.upstream_timeouts += 1;
            return self.close_sockets(&p.attempts);
        }
        self.server_failed(key, now_ms)
    }

    /// A server failed (SERVFAIL, REFUSED, TCP error, timeout): try the
    /// next one, or give up with SERVFAIL once every server has failed.
    fn server_failed(&mut self, key: u64, now_ms: u64) -> Vec<Action> {
        let Some(p) = self.pending.get_mut(key) else {
            return Vec::new();
        };
        p.failed = (p.failed + 1).min(p.sent);
        let tcp = p.tcp.is_some();
        if tcp {
            // Over TCP only one server is asked at a time, and UDP replies
            // from the others are no longer accepted: nobody else will
            // answer this round.
            p.failed = p.sent;
        }
        if p.sent < p.plan.order.len() {
            // The next server, from a fresh socket (a new port).
            let server = p.plan.order[p.sent];
            p.sent += 1;
            p.sent_ms = now_ms;
            p.deadline_ms = now_ms + if tcp { TCP_TIMEOUT_MS } else { UDP_TIMEOUT_MS };
            let sent = if tcp {
                self.send_tcp(key, server)
            } else {
                self.send_udp(key, server, false, now_ms)
            };
            return sent.into_iter().collect();
        }
        if p.failed < p.sent {
            // Others (all-servers, a probe) may still answer.
            return Vec::new();
        }
        let Some(p) = self.pending.remove(key) else {
            return Vec::new();
        };
        let mut actions = self.close_sockets(&p.attempts);
        for w in &p.waiters {
            self.stats.servfail += 1;
            let req = w.request(&p.key, self.edns_max);
            let out = self.build_reply(&req, ResponseCode::ServFail, false, &[], &[]);
            actions.push(Action::Reply {
                client: w.client.clone(),
                bytes: out,
            });
        }
        actions
    }

    /// A good answer: cache it and relay it to every waiting client, each
    /// with its own id, letter case, RD bit and size limit.
    fn finish(&mut self, key: u64, bytes: &[u8], now_ms: u64) -> Vec<Action> {
        let Some(p) = self.pending.remove(key) else {
            return Vec::new();
        };
        let mut actions = self.close_sockets(&p.attempts);
        let first = p.first();
        let truncated = bytes[2] & 0x02 != 0;
        let mut bytes = bytes.to_vec();
        // The question back in the first client's case (it went up in 0x20
        // case): what is cached and logged, and what compressed names in
        // the answer point to.
        question::restore(&mut bytes, &first.qname);
        // A name we hold locally exists, whatever the upstream says of it
        // for another type: dnsmasq turns that NXDOMAIN into NODATA.
        let nxdomain = bytes[3] & 0x0f == ResponseCode::NXDomain.low();
        if nxdomain && self.local.has_name(&first.query.name, now_ms / 1000) {
            bytes[3] &= 0xf0;
        }
        let payload = self.edns_max;
        match Message::from_vec(&bytes) {
            // dnsmasq checks this before the rebind guard, on any reply
            // not already NXDOMAIN, and answers NXDOMAIN without records
            // or AA.
            Ok(m) if !nxdomain && listed_address(&m.answers, &self.bogus_nxdomain).is_some() => {
                // dnsmasq caches the bogus record's owner as NXDOMAIN for
                // every type, for that record's TTL.
                if let Some(r) = listed_address(&m.answers, &self.bogus_nxdomain) {
                    tracing::info!("bogus-nxdomain: {} is NXDOMAIN", display_name(&r.name));
                    if !truncated {
                        self.replay.retire_all();
                        self.cache.insert_nxdomain_name(&r.name, r.ttl, now_ms);
                    }
                }
                for w in &p.waiters {
                    let req = w.request(&p.key, payload);
                    let out = ede_reply(&req, ResponseCode::NXDomain, false, &[], &[], EDE_BLOCKED);
                    actions.push(Action::Reply {
                        client: w.client.clone(),
                        bytes: out,
                    });
                }
                return actions;
            }
            Ok(m) if self.rebind.blocks(&first.query.name, &m.answers) => {
                tracing::warn!(
                    "possible DNS-rebind attack detected: {}",
                    display_name(&first.query.name)
                );
                self.stats.rebind_blocked += 1;
                for w in &p.waiters {
                    let req = w.request(&p.key, payload);
                    let out = self.build_reply(
                        &req,
                        ResponseCode::NoError,
                        m.metadata.authoritative,
                        &[],
                        &[],
                    );
                    actions.push(Action::Reply {
                        client: w.client.clone(),
                        bytes: out,
                    });
                }
                return actions;
            }
            Ok(m) => {
                self.log_answer("reply", &first.query, m.metadata.response_code, &m.answers);
                let positive = !m.answers.is_empty();
                if !truncated && (!positive || cacheable_type(first.query.query_type)) {
                    let q = &p.key.question;
                    let ck = CacheKey::new(&q.name, q.qtype, q.qclass);
                    // Kept replies may now differ from what the cache says.
                    self.replay.retire_all();
                    self.cache.insert(
                        ck,
                        m.metadata.response_code,
                        &m.answers,
                        &m.authorities,
                        now_ms,
                    );
                }
                if (self.filter_a || self.filter_aaaa)
                    && m.answers
                        .iter()
                        .chain(&m.authorities)
                        .chain(&m.additionals)
                        .any(|r| self.filtered(r))
                {
                    // The cache keeps the records; they are taken out on
                    // the way to the client, here and on a cache hit.
                    let mut m = m;
                    m.answers.retain(|r| !self.filtered(r));
                    m.authorities.retain(|r| !self.filtered(r));
                    m.additionals.retain(|r| !self.filtered(r));
                    if self.max_ttl != 0 {
                        for r in &mut m.answers {
                            r.ttl = r.ttl.min(self.max_ttl);
                        }
                    }
                    for w in &p.waiters {
                        let req = w.request(&p.key, payload);
                        let out = ede_message(&req, m.clone(), EDE_FILTERED);
                        actions.push(Action::Reply {
                            client: w.client.clone(),
                            bytes: out,
                        });
                    }
                    return actions;
                }
            }
            Err(e) => {
                // Still relayed: the client may read what we cannot.
                tracing::debug!("upstream reply not cached, unreadable: {e}");
            }
        }
        if self.max_ttl != 0 {
            cap_answer_ttls(&mut bytes, self.max_ttl);
        }
        for w in &p.waiters {
            let out = if bytes.len() <= w.limit {
                let mut out = bytes.clone();
                out[..2].copy_from_slice(&w.id.to_be_bytes());
                question::restore(&mut out, &w.qname);
                out[2] = (out[2] & !0x01) | u8::from(w.rd);
                out
            } else {
                // Too big for this client (a TCP answer to a UDP client):
                // an empty TC reply sends it to TCP.
                self.stats.truncated += 1;
                let req = w.request(&p.key, payload);
                truncated_reply(&req, bytes[3] & 0x0f)
            };
            actions.push(Action::Reply {
                client: w.client.clone(),
                bytes: out,
            });
        }
        actions
    }

    /// The forward and attempt an upstream datagram answers, and how its
    /// question's case compares: checked are the id on the socket it came
    /// in on, the server it came from and the question.
    fn match_udp_reply(
        &self,
        bytes: &[u8],
        from: SocketAddr,
        socket: u64,
    ) -> Result<(u64, Attempt, question::Match), ReplyError> {
        if bytes.len() < HEADER_LEN || bytes[2] & 0x80 == 0 {
            return Err(ReplyError::Malformed);
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let Some(key) = self.pending.by_attempt(socket, id) else {
            return Err(if self.pending.id_elsewhere(socket, id) {
                ReplyError::WrongSocket
            } else {
                ReplyError::UnknownId
            });
        };
        let p = self.pending.get(key).ok_or(ReplyError::UnknownId)?;
        let attempt = p
            .attempts
            .iter()
            .find(|a| a.socket == socket && a.id == id)
            .ok_or(ReplyError::UnknownId)?;
        if attempt.server != from {
            return Err(ReplyError::WrongSource);
        }
        let q = &p.key.question;
        match question::compare(bytes, &attempt.qname, q.qtype.into(), q.qclass.into()) {
            question::Match::Different => Err(ReplyError::WrongQuestion),
            m => Ok((key, attempt.clone(), m)),
        }
    }

    fn fresh_id(&mut self, socket: u64) -> u16 {
        // On a socket of its own any id is free. On the shared query-port
        // socket: retry on collision; the table is far smaller than the id
        // space, and after a few misses a duplicate id only costs that
        // query.
        let mut id = self.rng.random::<u16>();
        for _ in 0..16 {
            if !self.pending.attempt_in_use(socket, id) {
                break;
            }
            id = self.rng.random::<u16>();
        }
        id
    }

    fn observe_latency(&mut self, key: u64, now_ms: u64) {
        if let Some(p) = self.pending.get(key) {
            let ms = now_ms.saturating_sub(p.sent_ms);
            self.stats.upstream_latency.observe(ms);
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Is `r` a record `filter-A`/`filter-AAAA` takes out?
    fn filtered(&self, r: &Record) -> bool {
        match r.record_type() {
            RecordType::A => self.filter_a,
            RecordType::AAAA => self.filter_aaaa,
            _ => false,
        }
    }

    fn build_reply(
        &mut self,
        req: &Request,
        rcode: ResponseCode,
        aa: bool,
        answers: &[Record],
        authorities: &[Record],
    ) -> Vec<u8> {
        let (bytes, truncated) = encode_reply(req, rcode, aa, answers, authorities);
        if truncated {
            self.stats.truncated += 1;
        }
        bytes
    }

    fn log_forward(&self, q: &Query, server: SocketAddr) {
        if self.log_queries {
            tracing::info!("forwarded {} to {}", display_name(&q.name), server.ip());
        }
    }

    fn log_answer(&self, kind: &str, q: &Query, rcode: ResponseCode, answers: &[Record]) {
        if !self.log_queries {
            return;
        }
        let name = display_name(&q.name);
        if rcode == ResponseCode::NXDomain {
            tracing::info!("{kind} {name} is NXDOMAIN");
        } else if rcode != ResponseCode::NoError {
            tracing::info!("{kind} {name} is {rcode}");
        } else if answers.is_empty() {
            let what = match q.query_type {
                RecordType::A => "NODATA-IPv4",
                RecordType::AAAA => "NODATA-IPv6",
                _ => "NODATA",
            };
            tracing::info!("{kind} {name} is {what}");
        } else {
            for r in answers {
                let rname = display_name(&r.name);
                match r.record_type() {
                    RecordType::CNAME => tracing::info!("{kind} {rname} is <CNAME>"),
                    _ => tracing::info!("{kind} {rname} is {}", r.data),
                }
            }
        }
    }
}

/// RFC 8482 4.2: a UDP ANY for local data gets one RRset, the first the
/// local data holds for the name (its CNAME, else its addresses, ...),
/// not everything: a spoofed ANY must not draw a reply many times its own
/// size at a victim. Over TCP, where no source can be spoofed, ANY gets
/// every record. dnsmasq 2.90 answers a local ANY in full even over UDP
/// without EDNS, past 512 bytes (measured: 2741 bytes for 40 TXT records).
fn minimal_any(answers: &mut Vec<Record>) {
    let Some(first) = answers.first().map(Record::record_type) else {
        return;
    };
    answers.retain(|r| r.record_type() == first);
}

/// The answer types dnsmasq 2.90 keeps in its cache; others are forwarded
/// every time (negative answers of any type are cached).
fn cacheable_type(t: RecordType) -> bool {
    matches!(
        t,
        RecordType::A | RecordType::AAAA | RecordType::CNAME | RecordType::PTR | RecordType::SRV
    )
}

/// Names as dnsmasq logs them: no trailing dot.
fn display_name(n: &hickory_proto::rr::Name) -> String {
    let s = n.to_ascii();
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => s,
    }
}

/// The first A or AAAA record among `answers` that falls in one of `list`.
fn listed_address<'a>(answers: &'a [Record], list: &[AddrPrefix]) -> Option<&'a Record> {
    if list.is_empty() {
        return None;
    }
    answers.iter().find(|r| {
        let ip: std::net::IpAddr = match &r.data {
            RData::A(a) => a.0.into(),
            RData::AAAA(a) => a.0.into(),
            _ => return false,
        };
        r.dns_class == DNSClass::IN && list.iter().any(|n| n.contains(ip))
    })
}

/// `max-ttl`: lowers the TTL of every answer-section record above `max`,
/// in place, as dnsmasq rewrites the reply it relays. An unreadable reply
/// is left as it is (the client may read what we cannot).
fn cap_answer_ttls(bytes: &mut [u8], max: u32) {
    for at in answer_ttl_offsets(bytes).unwrap_or_default() {
        if let Some(field) = bytes.get_mut(at..at + 4) {
            let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            if ttl > max {
                field.copy_from_slice(&max.to_be_bytes());
            }
        }
    }
}

/// Where the TTL of each answer-section record starts.
fn answer_ttl_offsets(bytes: &[u8]) -> Option<Vec<usize>> {
    let count = |at: usize| Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
    let (questions, answers) = (count(4)?, count(6)?);
    let mut d = BinDecoder::new(bytes);
    d.read_slice(HEADER_LEN).ok()?;
    for _ in 0..questions {
        Query::read(&mut d).ok()?;
    }
    let mut offsets = Vec::with_capacity(usize::from(answers));
    for _ in 0..answers {
        hickory_proto::rr::Name::read(&mut d).ok()?;
        // type, class, TTL, rdata length, rdata
        let at = d.index();
        d.read_slice(8).ok()?;
        let len = count(at + 8)?;
        d.read_slice(10 - 8 + usize::from(len)).ok()?;
        offsets.push(at + 4);
    }
    Some(offsets)
}

/// A header-only error reply (FORMERR, NOTIMP) for a query we could not or
/// would not read: id, opcode and RD copied, nothing else trusted.
fn header_reply(query: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[0] = query[0];
    out[1] = query[1];
    out[2] = 0x80 | (query[2] & 0x78) | (query[2] & 0x01);
    out[3] = 0x80 | (rcode.low() & 0x0f);
    out
}

fn reply_message(req: &Request, rcode: ResponseCode, aa: bool) -> Message {
    let mut m = Message::new(req.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = req.rd;
    m.metadata.recursion_available = req.ra;
    m.metadata.checking_disabled = req.cd;
    m.metadata.authoritative = aa;
    m.metadata.response_code = rcode;
    m.queries.push(req.query.clone());
    if req.edns {
        let mut e = Edns::new();
        e.set_max_payload(req.payload);
        m.edns = Some(e);
    }
    m
}

/// RFC 8914 Extended DNS Error: the option code, and the info-codes
/// dnsmasq sends when it refuses (`bogus-nxdomain`) or trims
/// (`filter-A`/`filter-AAAA`) an upstream answer.
const EDNS_EDE: u16 = 15;
const EDE_BLOCKED: u16 = 15;
const EDE_FILTERED: u16 = 17;

/// A reply carrying an Extended DNS Error for an EDNS client, within the
/// client's limit.
fn ede_reply(
    req: &Request,
    rcode: ResponseCode,
    aa: bool,
    answers: &[Record],
    authorities: &[Record],
    code: u16,
) -> Vec<u8> {
    let mut m = reply_message(req, rcode, aa);
    m.answers = answers.to_vec();
    m.authorities = authorities.to_vec();
    ede_encode(req, m, code)
}

/// An upstream reply, changed here, sent on as the reply to `req` with an
/// Extended DNS Error (the upstream's flags, rcode and records are kept).
fn ede_message(req: &Request, upstream: Message, code: u16) -> Vec<u8> {
    let mut m = upstream;
    m.metadata.id = req.id;
    m.queries = vec![req.query.clone()];
    m.edns = reply_message(req, m.metadata.response_code, false).edns;
    ede_encode(req, m, code)
}

fn ede_encode(req: &Request, mut m: Message, code: u16) -> Vec<u8> {
    if let Some(e) = m.edns.as_mut() {
        e.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                EDNS_EDE,
                code.to_be_bytes().to_vec(),
            ));
    }
    encode_within(req, &m).unwrap_or_else(|| truncated_reply(req, m.metadata.response_code.low()))
}

/// `m` encoded within the client's limit, or `None` when it does not fit.
fn encode_within(req: &Request, m: &Message) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(UDP_LIMIT);
    let fits = {
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(u16::try_from(req.limit).unwrap_or(u16::MAX));
        m.emit(&mut enc).is_ok()
    };
    (fits && buf.len() >= HEADER_LEN && buf[2] & 0x02 == 0).then_some(buf)
}

/// Encode a reply within the client's limit. When it does not fit, the
/// answer is dropped whole and TC set (as dnsmasq does): half an RRset is
/// worse than none, and the client retries over TCP.
fn encode_reply(
    req: &Request,
    rcode: ResponseCode,
    aa: bool,
    answers: &[Record],
    authorities: &[Record],
) -> (Vec<u8>, bool) {
    let mut m = reply_message(req, rcode, aa);
    m.answers = answers.to_vec();
    m.authorities = authorities.to_vec();
    match encode_within(req, &m) {
        Some(buf) => (buf, false),
        None => (truncated_reply(req, rcode.low()), true),
    }
}

/// A zone transfer as TCP messages: records in order (the SOA first and
/// last), as many per message as fit; the question and OPT in the first.
/// None if a message does not encode (a record alone too big).
fn encode_transfer(req: &Request, records: &[Record]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut batch: Vec<Record> = Vec::new();
    let mut size = 0;
    let flush = |batch: &mut Vec<Record>, out: &mut Vec<Vec<u8>>| {
        let mut m = reply_message(req, ResponseCode::NoError, true);
        if !out.is_empty() {
            // RFC 5936 2.2.1: later messages may leave the question out.
            m.queries.clear();
            m.edns = None;
        }
        m.answers = std::mem::take(batch);
        m.to_vec().ok().filter(|b| b.len() <= usize::from(u16::MAX))
    };
    for r in records {
        // Alone, without compression: an upper bound of its share.
        let mut buf = Vec::new();
        r.emit(&mut BinEncoder::new(&mut buf)).ok()?;
        if !batch.is_empty() && size + buf.len() > TRANSFER_MESSAGE_MAX {
            let msg = flush(&mut batch, &mut out)?;
            out.push(msg);
            size = 0;
        }
        size += buf.len();
        batch.push(r.clone());
    }
    if !batch.is_empty() || out.is_empty() {
        let msg = flush(&mut batch, &mut out)?;
        out.push(msg);
    }
    Some(out)
}

/// Question (and OPT) only, TC set.
fn truncated_reply(req: &Request, rcode_low: u8) -> Vec<u8> {
    let mut m = reply_message(req, ResponseCode::from_low(rcode_low), false);
    m.metadata.truncation = true;
    match m.to_vec() {
        Ok(b) => b,
        Err(_) => {
            // Cannot happen for a question we parsed; still answer.
            let mut h = vec![0u8; HEADER_LEN];
            h[..2].copy_from_slice(&req.id.to_be_bytes());
            h[2] = 0x80 | 0x02 | u8::from(req.rd);
            h[3] = if req.ra { 0x80 } else { 0 } | (rcode_low & 0x0f);
            h
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
