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
    ClientKey, LatencyHistogram, Pending, PendingTable, Question, ServerSelector, Strategy,
    TCP_TIMEOUT_MS, UDP_TIMEOUT_MS,
};
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
    /// Send over UDP socket number `socket` (of the N the shell bound).
    Upstream {
        server: SocketAddr,
        socket: usize,
        bytes: Vec<u8>,
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
    pub forwarded: u64,
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

impl Pending {
    /// The client's side of a pending query, for replies built here
    /// (SERVFAIL, a withheld rebind, a TC redirect to TCP).
    fn client_request(&self, payload: u16) -> Request {
        Request {
            id: self.client_key.id,
            rd: self.client_rd,
            cd: self.client_cd,
            query: self.query.clone(),
            edns: self.client_edns,
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
    sockets: usize,
    rng: StdRng,
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
    pub fn new(cfg: &DnsConfig, local: L, upstream_sockets: usize, seed: u64) -> Self {
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
            // At least one socket, so the index we pick is always valid.
            sockets: upstream_sockets.max(1),
            rng: StdRng::seed_from_u64(seed),
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
        let question = Question::new(&req.query.name, req.query.query_type, req.query.query_class);
        let client_key = ClientKey::new(&client, req.id, &question);
        if self.pending.has_client(&client_key) {
            self.stats.dropped.duplicate += 1;
            return Vec::new();
        }
        if self.pending.len() >= self.forward_max {
            // dnsmasq logs "Maximum number of concurrent DNS queries
            // reached" and the client gets REFUSED rather than silence.
            self.stats.forward_max += 1;
            self.stats.refused += 1;
            // Once per LOG_EVERY_MS, as dnsmasq: a flood must not become
            // a flood of log lines (the counter has the full number).
            if self.forward_max_log.allow(now_ms) {
                tracing::warn!(
                    "Maximum number of concurrent DNS queries reached (max: {})",
                    self.forward_max
                );
            }
            let out = self.build_reply(&req, ResponseCode::Refused, false, &[], &[]);
            return vec![Action::Reply { client, bytes: out }];
        }

        let plan = if domain {
            self.selector.plan_domain(&servers)
        } else {
            self.selector.plan(&servers, now_ms)
        };
        // Source port and id randomisation: a spoofer has to guess both.
        let socket = self.rng.random_range(0..self.sockets);
        let upstream_id = self.fresh_id(socket);
        let mut wire = bytes.to_vec();
        wire[..2].copy_from_slice(&upstream_id.to_be_bytes());

        let tcp = client.transport == Transport::Tcp;
        let mut pending = Pending {
            client,
            client_key,
            query: req.query.clone(),
            client_rd: req.rd,
            client_cd: req.cd,
            client_edns: req.edns,
            limit: req.limit,
            wire,
            upstream_id,
            socket,
            plan,
            sent: 0,
            failed: 0,
            deadline_ms: 0,
            started_ms: now_ms,
            sent_ms: now_ms,
            tcp_token: None,
        };
        let mut actions = Vec::new();
        if tcp {
            // A TCP client's query goes upstream over TCP, as dnsmasq does:
            // its answer may be large.
            let token = self.token();
            pending.tcp_token = Some(token);
            pending.sent = 1;
            pending.deadline_ms = now_ms + TCP_TIMEOUT_MS;
            let server = pending.plan.order[0];
            self.log_forward(&pending.query, server);
            actions.push(Action::UpstreamTcp {
                server,
                token,
                bytes: pending.wire.clone(),
            });
        } else {
            let fan_out = pending.plan.fan_out.max(1);
            for server in pending.plan.order.iter().take(fan_out) {
                self.log_forward(&pending.query, *server);
                actions.push(Action::Upstream {
                    server: *server,
                    socket,
                    bytes: pending.wire.clone(),
                });
            }
            pending.sent = fan_out.min(pending.plan.order.len());
            pending.deadline_ms = now_ms + UDP_TIMEOUT_MS;
        }
        self.stats.forwarded += 1;
        self.pending.insert(pending);
        actions
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

    pub fn upstream_reply(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        socket: usize,
        now_ms: u64,
    ) -> Vec<Action> {
        let key = match self.match_udp_reply(bytes, from, socket) {
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
            return self.server_failed(key, now_ms);
        }
        if bytes[2] & 0x02 != 0 {
            // Truncated: ask again over TCP, from the same server.
            let token = self.token();
            self.pending.switch_to_tcp(key, token);
            self.stats.tcp_fallbacks += 1;
            let Some(p) = self.pending.get_mut(key) else {
                return Vec::new();
            };
            p.deadline_ms = now_ms + TCP_TIMEOUT_MS;
            p.sent_ms = now_ms;
            return vec![Action::UpstreamTcp {
                server: from,
                token,
                bytes: p.wire.clone(),
            }];
        }
        self.selector.good(from);
        self.finish(key, bytes, now_ms)
    }

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
        let ok = reply.filter(|b| {
            b.len() >= HEADER_LEN
                && b[2] & 0x80 != 0
                && u16::from_be_bytes([b[0], b[1]]) == p.upstream_id
                && question_matches(b, &p.client_key.question)
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
            self.pending.remove(key);
            self.stats.upstream_timeouts += 1;
            return Vec::new();
        }
        self.server_failed(key, now_ms)
    }

    /// A server failed (SERVFAIL, REFUSED, TCP error, timeout): try the
    /// next one, or give up with SERVFAIL once every server has failed.
    fn server_failed(&mut self, key: u64, now_ms: u64) -> Vec<Action> {
        let next_token = self.next_token + 1;
        let Some(p) = self.pending.get_mut(key) else {
            return Vec::new();
        };
        p.failed = (p.failed + 1).min(p.sent);
        if p.tcp_token.is_some() {
            // Over TCP only one server is asked at a time, and UDP replies
            // from the others are no longer accepted: nobody else will
            // answer this round.
            p.failed = p.sent;
        }
        if p.sent < p.plan.order.len() {
            let server = p.plan.order[p.sent];
            p.sent += 1;
            p.sent_ms = now_ms;
            if p.tcp_token.is_some() {
                p.deadline_ms = now_ms + TCP_TIMEOUT_MS;
                let bytes = p.wire.clone();
                let query = p.query.clone();
                self.next_token = next_token;
                self.pending.switch_to_tcp(key, next_token);
                self.log_forward(&query, server);
                return vec![Action::UpstreamTcp {
                    server,
                    token: next_token,
                    bytes,
                }];
            }
            p.deadline_ms = now_ms + UDP_TIMEOUT_MS;
            let action = Action::Upstream {
                server,
                socket: p.socket,
                bytes: p.wire.clone(),
            };
            let query = p.query.clone();
            self.log_forward(&query, server);
            return vec![action];
        }
        if p.failed < p.sent {
            // Others (all-servers, a probe) may still answer.
            return Vec::new();
        }
        let Some(p) = self.pending.remove(key) else {
            return Vec::new();
        };
        self.stats.servfail += 1;
        let req = p.client_request(self.edns_max);
        let out = self.build_reply(&req, ResponseCode::ServFail, false, &[], &[]);
        vec![Action::Reply {
            client: p.client,
            bytes: out,
        }]
    }

    /// A good answer: cache it and relay it to the client with its own id.
    fn finish(&mut self, key: u64, bytes: &[u8], now_ms: u64) -> Vec<Action> {
        let Some(p) = self.pending.remove(key) else {
            return Vec::new();
        };
        let truncated = bytes[2] & 0x02 != 0;
        let mut bytes = std::borrow::Cow::Borrowed(bytes);
        // A name we hold locally exists, whatever the upstream says of it
        // for another type: dnsmasq turns that NXDOMAIN into NODATA.
        let nxdomain = bytes[3] & 0x0f == ResponseCode::NXDomain.low();
        if nxdomain && self.local.has_name(&p.query.name, now_ms / 1000) {
            bytes.to_mut()[3] &= 0xf0;
        }
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
                let req = p.client_request(self.edns_max);
                let out = ede_reply(&req, ResponseCode::NXDomain, false, &[], &[], EDE_BLOCKED);
                return vec![Action::Reply {
                    client: p.client,
                    bytes: out,
                }];
            }
            Ok(m) if self.rebind.blocks(&p.query.name, &m.answers) => {
                tracing::warn!(
                    "possible DNS-rebind attack detected: {}",
                    display_name(&p.query.name)
                );
                self.stats.rebind_blocked += 1;
                let req = p.client_request(self.edns_max);
                let out = self.build_reply(
                    &req,
                    ResponseCode::NoError,
                    m.metadata.authoritative,
                    &[],
                    &[],
                );
                return vec![Action::Reply {
                    client: p.client,
                    bytes: out,
                }];
            }
            Ok(m) => {
                self.log_answer("reply", &p.query, m.metadata.response_code, &m.answers);
                let positive = !m.answers.is_empty();
                if !truncated && (!positive || cacheable_type(p.query.query_type)) {
                    let ck = CacheKey::new(
                        &p.client_key.question.name,
                        p.client_key.question.qtype,
                        p.client_key.question.qclass,
                    );
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
                    let req = p.client_request(self.edns_max);
                    let out = ede_message(&req, m, EDE_FILTERED);
                    return vec![Action::Reply {
                        client: p.client,
                        bytes: out,
                    }];
                }
            }
            Err(e) => {
                // Still relayed: the client may read what we cannot.
                tracing::debug!("upstream reply not cached, unreadable: {e}");
            }
        }
        let out = if bytes.len() <= p.limit {
            let mut out = bytes.into_owned();
            out[..2].copy_from_slice(&p.client_key.id.to_be_bytes());
            if self.max_ttl != 0 {
                cap_answer_ttls(&mut out, self.max_ttl);
            }
            out
        } else {
            // Too big for this client (a TCP answer to a UDP client):
            // an empty TC reply sends it to TCP.
            self.stats.truncated += 1;
            let req = p.client_request(self.edns_max);
            truncated_reply(&req, bytes[3] & 0x0f)
        };
        vec![Action::Reply {
            client: p.client,
            bytes: out,
        }]
    }

    fn match_udp_reply(
        &self,
        bytes: &[u8],
        from: SocketAddr,
        socket: usize,
    ) -> Result<u64, ReplyError> {
        if bytes.len() < HEADER_LEN || bytes[2] & 0x80 == 0 {
            return Err(ReplyError::Malformed);
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let Some(key) = self.pending.by_upstream(socket, id) else {
            let elsewhere = (0..self.sockets).any(|s| s != socket && self.pending.id_in_use(s, id));
            return Err(if elsewhere {
                ReplyError::WrongSocket
            } else {
                ReplyError::UnknownId
            });
        };
        let p = self.pending.get(key).ok_or(ReplyError::UnknownId)?;
        if !p.plan.order[..p.sent].contains(&from) {
            return Err(ReplyError::WrongSource);
        }
        if !question_matches(bytes, &p.client_key.question) {
            return Err(ReplyError::WrongQuestion);
        }
        Ok(key)
    }

    fn fresh_id(&mut self, socket: usize) -> u16 {
        // Retry on collision; the table is far smaller than the id space,
        // and after a few misses a duplicate id only costs that query.
        let mut id = self.rng.random::<u16>();
        for _ in 0..16 {
            if !self.pending.id_in_use(socket, id) {
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

/// Does the reply's only question equal ours (case-insensitively)?
fn question_matches(bytes: &[u8], q: &Question) -> bool {
    if bytes.len() < HEADER_LEN || u16::from_be_bytes([bytes[4], bytes[5]]) != 1 {
        return false;
    }
    let mut d = BinDecoder::new(bytes);
    // Skip the header by reading it; its contents were checked already.
    if d.read_slice(HEADER_LEN).is_err() {
        return false;
    }
    match Query::read(&mut d) {
        Ok(rq) => {
            rq.query_type == q.qtype
                && rq.query_class == q.qclass
                && rq.name.to_lowercase() == q.name
        }
        Err(_) => false,
    }
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
