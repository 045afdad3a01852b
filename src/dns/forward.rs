//! Upstream bookkeeping: which server a query goes to next, the table of
//! forwards waiting for an upstream answer (one per question, with every
//! client that asked it), and what each server does with the letter case
//! of a question (0x20). Sans-I/O like the engine: the time is passed in,
//! randomness comes from the engine's RNG.

use std::collections::HashMap;
use std::net::SocketAddr;

use hickory_proto::rr::{DNSClass, Name, RecordType};

use super::engine::{ClientRef, Transport};

/// How long one UDP attempt waits before the next server is tried.
pub const UDP_TIMEOUT_MS: u64 = 1000;
/// A TCP exchange (connect, send, read) gets longer; the shell may also
/// report failure earlier through `upstream_tcp_reply(token, None)`.
pub const TCP_TIMEOUT_MS: u64 = 5000;
/// dnsmasq re-measures its servers by sending a query to all of them every
/// so many queries or seconds; the first to answer becomes the preferred one.
pub const PROBE_EVERY_QUERIES: u32 = 50;
pub const PROBE_EVERY_MS: u64 = 20_000;

/// Upper bounds (milliseconds) of the upstream latency buckets: from a
/// server on the LAN to one that is about to time out.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/// How long upstream servers took to answer, as a cumulative histogram
/// (Prometheus's shape), in whole milliseconds: the engine's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `buckets[i]`: answers that took at most `LATENCY_BUCKETS_MS[i]`.
    pub buckets: [u64; LATENCY_BUCKETS_MS.len()],
    pub count: u64,
    pub sum_ms: u64,
}

impl LatencyHistogram {
    pub fn observe(&mut self, ms: u64) {
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
        // Cumulative: an answer counts in its bucket and every larger one.
        for (bound, n) in LATENCY_BUCKETS_MS.iter().zip(&mut self.buckets) {
            if ms <= *bound {
                *n += 1;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// dnsmasq's default: the server that answered fastest recently.
    Fastest,
    /// `strict-order`: config order, the next one only on failure.
    StrictOrder,
    /// `all-servers`: everything to everyone, first good answer wins.
    AllServers,
}

/// A question as forwards are keyed by: the name lowercased, since names
/// compare without regard to case (the letter case of what goes up is
/// chosen per attempt, see [`CaseEcho`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    pub name: Name,
    pub qtype: RecordType,
    pub qclass: DNSClass,
}

impl Question {
    pub fn new(name: &Name, qtype: RecordType, qclass: DNSClass) -> Self {
        Question {
            name: name.to_lowercase(),
            qtype,
            qclass,
        }
    }
}

/// The order in which one query's servers are tried, and how many are sent
/// to at once at the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub order: Vec<SocketAddr>,
    pub fan_out: usize,
}

#[derive(Debug)]
pub struct ServerSelector {
    strategy: Strategy,
    preferred: Option<SocketAddr>,
    since_probe: u32,
    last_probe_ms: Option<u64>,
}

impl ServerSelector {
    pub fn new(strategy: Strategy) -> Self {
        ServerSelector {
            strategy,
            preferred: None,
            since_probe: 0,
            last_probe_ms: None,
        }
    }

    pub fn preferred(&self) -> Option<SocketAddr> {
        self.preferred
    }

    /// Plan one forward over `servers` (config order).
    pub fn plan(&mut self, servers: &[SocketAddr], now_ms: u64) -> Plan {
        let mut order = servers.to_vec();
        let n = order.len();
        match self.strategy {
            Strategy::StrictOrder => Plan { order, fan_out: 1 },
            Strategy::AllServers => Plan { order, fan_out: n },
            Strategy::Fastest => {
                self.since_probe += 1;
                let probe_due = match self.last_probe_ms {
                    None => true,
                    Some(t) => {
                        self.since_probe >= PROBE_EVERY_QUERIES
                            || now_ms.saturating_sub(t) >= PROBE_EVERY_MS
                    }
                };
                if probe_due && n > 1 {
                    self.since_probe = 0;
                    self.last_probe_ms = Some(now_ms);
                    return Plan { order, fan_out: n };
                }
                if let Some(p) = self.preferred {
                    if let Some(i) = order.iter().position(|s| *s == p) {
                        let s = order.remove(i);
                        order.insert(0, s);
                    }
                }
                Plan { order, fan_out: 1 }
            }
        }
    }

    /// Plan a forward to `server=/domain/` servers. dnsmasq sends these to
    /// all of the domain's servers at once unless `strict-order` is set
    /// (its "last good server" applies only to the normal servers).
    pub fn plan_domain(&self, servers: &[SocketAddr]) -> Plan {
        let fan_out = match self.strategy {
            Strategy::StrictOrder => 1,
            Strategy::Fastest | Strategy::AllServers => servers.len(),
        };
        Plan {
            order: servers.to_vec(),
            fan_out,
        }
    }

    /// A server gave a usable answer. In a probe the first answer arrives
    /// here first, so the fastest server becomes the preferred one.
    pub fn good(&mut self, server: SocketAddr) {
        self.preferred = Some(server);
    }

    /// A server timed out or refused: stop preferring it.
    pub fn bad(&mut self, server: SocketAddr) {
        if self.preferred == Some(server) {
            self.preferred = None;
        }
    }

    /// The server list changed (resolv-file reload).
    pub fn reset(&mut self) {
        self.preferred = None;
        self.last_probe_ms = None;
        self.since_probe = 0;
    }
}

/// A server whose answers came back with the question's letter case
/// changed this many times in a row, and never echoed it meanwhile, is
/// asked in plain case for [`PLAIN_CASE_MS`].
pub const CASE_STRIKES: u32 = 3;
/// How long a server that does not echo case is asked in plain case before
/// 0x20 is tried on it again.
pub const PLAIN_CASE_MS: u64 = 3_600_000;
/// Servers remembered; more come only from config lines.
const MAX_CASE_SERVERS: usize = 1024;

/// 0x20 (draft-vixie-dnsext-dns0x20): a forwarded question's name goes out
/// with a random case per letter and the answer has to echo it byte for
/// byte, so a blind spoofer has to guess one more bit per letter on top of
/// the port and the id. dnsmasq 2.90 does not do this, and some servers
/// do not echo case, so an answer that matches but for the case is never
/// taken as it is: it is counted, and then
/// - from a server that has echoed case before (and fewer than
///   [`CASE_STRIKES`] times in a row did not): it is taken for a forgery
///   (whoever sent it knew the port and the id) and dropped; the query
///   keeps waiting for the real answer;
/// - otherwise the same server is asked again at once in plain case (the
///   client's), from a fresh port with a fresh id, and that answer is
///   compared without regard to case: as strong as dnsmasq 2.90, and a
///   spoofer had to hit port and id twice to get there. After
///   [`CASE_STRIKES`] such answers in a row a server is asked in plain case
///   from the start for [`PLAIN_CASE_MS`].
#[derive(Debug, Default)]
pub struct CaseEcho {
    servers: HashMap<SocketAddr, ServerCase>,
}

#[derive(Debug, Default, Clone, Copy)]
struct ServerCase {
    /// It answered in the case asked at least once since it was last put
    /// in plain case.
    echoed: bool,
    /// Answers in another case since the last one in the right case.
    strikes: u32,
    plain_until_ms: Option<u64>,
}

/// What to do with an answer whose question differs only in case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseVerdict {
    /// Drop it and keep waiting: the server echoes case, this is forged.
    Forged,
    /// Ask the server again in plain case; `now_plain` when the server has
    /// just been put in plain case for [`PLAIN_CASE_MS`].
    AskPlain { now_plain: bool },
}

impl CaseEcho {
    /// Is `server` asked in mixed case?
    pub fn mixed_case(&mut self, server: SocketAddr, now_ms: u64) -> bool {
        let Some(s) = self.servers.get_mut(&server) else {
            return true;
        };
        match s.plain_until_ms {
            Some(t) if now_ms < t => false,
            Some(_) => {
                *s = ServerCase::default();
                true
            }
            None => true,
        }
    }

    /// `server` answered in the case it was asked.
    pub fn echoed(&mut self, server: SocketAddr) {
        let s = self.entry(server);
        s.echoed = true;
        s.strikes = 0;
    }

    /// `server`'s answer came back in another case.
    pub fn mismatch(&mut self, server: SocketAddr, now_ms: u64) -> CaseVerdict {
        let s = self.entry(server);
        s.strikes += 1;
        if s.strikes >= CASE_STRIKES {
            *s = ServerCase {
                plain_until_ms: Some(now_ms + PLAIN_CASE_MS),
                ..ServerCase::default()
            };
            return CaseVerdict::AskPlain { now_plain: true };
        }
        if s.echoed {
            CaseVerdict::Forged
        } else {
            CaseVerdict::AskPlain { now_plain: false }
        }
    }

    fn entry(&mut self, server: SocketAddr) -> &mut ServerCase {
        if self.servers.len() >= MAX_CASE_SERVERS && !self.servers.contains_key(&server) {
            self.servers.clear();
        }
        self.servers.entry(server).or_default()
    }
}

/// What coalesces: queries that get one upstream query between them and
/// share its answer. The name is compared without regard to case; the DO
/// and CD bits change what a server sends (DNSSEC records, unvalidated
/// data), and whether the query had an OPT record decides whether the
/// reply relayed may carry one (RFC 6891 7), as dnsmasq 2.90 keys its
/// `lookup_frec_by_query` on `FREC_HAS_PHEADER` too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardKey {
    pub question: Question,
    pub dnssec_ok: bool,
    pub cd: bool,
    pub edns: bool,
}

/// Identifies a client's query, so a retransmission while it waits is not
/// added twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub addr: SocketAddr,
    pub tcp: bool,
    pub conn: u64,
    pub id: u16,
    pub key: ForwardKey,
}

impl ClientKey {
    pub fn new(client: &ClientRef, id: u16, key: &ForwardKey) -> Self {
        ClientKey {
            addr: client.addr,
            tcp: client.transport == Transport::Tcp,
            conn: client.conn,
            id,
            key: key.clone(),
        }
    }
}

/// A client waiting for a forward's answer, with what its own reply needs.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub client: ClientRef,
    pub id: u16,
    /// Its question as asked, letter case included.
    pub query: hickory_proto::op::Query,
    /// That question's name in wire form: the reply's is set to it.
    pub qname: Vec<u8>,
    pub rd: bool,
    /// Largest reply it takes.
    pub limit: usize,
}

impl Waiter {
    pub fn client_key(&self, key: &ForwardKey) -> ClientKey {
        ClientKey::new(&self.client, self.id, key)
    }
}

/// One UDP query to one server. In the default mode each has a socket of
/// its own, on a fresh random port, connected to that server.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The shell's number for the socket (0: the one shared `query-port`
    /// socket).
    pub socket: u64,
    pub server: SocketAddr,
    pub id: u16,
    /// The question name as sent, letter case included.
    pub qname: Vec<u8>,
    /// Sent in 0x20 mixed case: the answer has to echo that case exactly.
    pub mixed_case: bool,
}

/// The exchange with one server over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpAttempt {
    pub token: u64,
    pub id: u16,
}

/// One upstream question and the clients waiting for its answer.
#[derive(Debug, Clone)]
pub struct Pending {
    pub key: ForwardKey,
    /// Never empty; the first is the client whose query goes upstream.
    pub waiters: Vec<Waiter>,
    /// That client's query; each attempt sends it with its own id and
    /// letter case.
    pub wire: Vec<u8>,
    pub plan: Plan,
    /// Servers sent to so far (in `plan.order`, a prefix).
    pub sent: usize,
    /// Of those, how many answered SERVFAIL/REFUSED.
    pub failed: usize,
    pub deadline_ms: u64,
    pub started_ms: u64,
    /// When the latest attempt went out, to time the answer to it.
    pub sent_ms: u64,
    /// UDP attempts whose answers are still taken.
    pub attempts: Vec<Attempt>,
    /// Set while the exchange runs over TCP.
    pub tcp: Option<TcpAttempt>,
}

impl Pending {
    /// The client whose query went upstream.
    pub fn first(&self) -> &Waiter {
        &self.waiters[0]
    }
}

/// Pending forwards with the indexes answers and clients are matched
/// through.
#[derive(Debug, Default)]
pub struct PendingTable {
    entries: HashMap<u64, Pending>,
    by_attempt: HashMap<(u64, u16), u64>,
    /// Attempts per upstream id, over every socket: tells an answer with an
    /// id pending elsewhere (`wrong_socket`) from an unknown id.
    ids: HashMap<u16, u32>,
    by_tcp: HashMap<u64, u64>,
    by_client: HashMap<ClientKey, u64>,
    by_key: HashMap<ForwardKey, u64>,
    /// Waiters beyond each forward's first, over all forwards.
    extra_waiters: usize,
    next_key: u64,
}

impl PendingTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn extra_waiters(&self) -> usize {
        self.extra_waiters
    }

    pub fn has_client(&self, key: &ClientKey) -> bool {
        self.by_client.contains_key(key)
    }

    /// The forward already asking this question, if any.
    pub fn by_key(&self, key: &ForwardKey) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// Is `id` pending on a socket other than `socket`?
    pub fn id_elsewhere(&self, socket: u64, id: u16) -> bool {
        let here = u32::from(self.by_attempt.contains_key(&(socket, id)));
        self.ids.get(&id).copied().unwrap_or(0) > here
    }

    pub fn attempt_in_use(&self, socket: u64, id: u16) -> bool {
        self.by_attempt.contains_key(&(socket, id))
    }

    /// A new forward, with its waiters and without attempts yet.
    pub fn insert(&mut self, p: Pending) -> u64 {
        self.next_key += 1;
        let key = self.next_key;
        for w in &p.waiters {
            self.by_client.insert(w.client_key(&p.key), key);
        }
        self.extra_waiters += p.waiters.len().saturating_sub(1);
        self.by_key.insert(p.key.clone(), key);
        self.entries.insert(key, p);
        key
    }

    /// Another client for forward `key`; false if there is none.
    pub fn add_waiter(&mut self, key: u64, w: Waiter) -> bool {
        let Some(p) = self.entries.get_mut(&key) else {
            return false;
        };
        self.by_client.insert(w.client_key(&p.key), key);
        p.waiters.push(w);
        self.extra_waiters += 1;
        true
    }

    pub fn add_attempt(&mut self, key: u64, a: Attempt) {
        let Some(p) = self.entries.get_mut(&key) else {
            return;
        };
        self.by_attempt.insert((a.socket, a.id), key);
        *self.ids.entry(a.id).or_default() += 1;
        p.attempts.push(a);
    }

    /// Stops taking answers to one attempt; returns it.
    pub fn end_attempt(&mut self, key: u64, socket: u64, id: u16) -> Option<Attempt> {
        let p = self.entries.get_mut(&key)?;
        let i = p
            .attempts
            .iter()
            .position(|a| a.socket == socket && a.id == id)?;
        let a = p.attempts.swap_remove(i);
        Self::unindex_attempt(&mut self.by_attempt, &mut self.ids, &a);
        Some(a)
    }

    /// Stops taking UDP answers for forward `key`; returns its attempts.
    pub fn end_attempts(&mut self, key: u64) -> Vec<Attempt> {
        let Some(p) = self.entries.get_mut(&key) else {
            return Vec::new();
        };
        let attempts = std::mem::take(&mut p.attempts);
        for a in &attempts {
            Self::unindex_attempt(&mut self.by_attempt, &mut self.ids, a);
        }
        attempts
    }

    fn unindex_attempt(
        by_attempt: &mut HashMap<(u64, u16), u64>,
        ids: &mut HashMap<u16, u32>,
        a: &Attempt,
    ) {
        by_attempt.remove(&(a.socket, a.id));
        if let Some(n) = ids.get_mut(&a.id) {
            *n -= 1;
            if *n == 0 {
                ids.remove(&a.id);
            }
        }
    }

    /// Runs forward `key` over TCP from now on, as `tcp`.
    pub fn set_tcp(&mut self, key: u64, tcp: TcpAttempt) {
        let Some(p) = self.entries.get_mut(&key) else {
            return;
        };
        if let Some(old) = p.tcp.replace(tcp) {
            self.by_tcp.remove(&old.token);
        }
        self.by_tcp.insert(tcp.token, key);
    }

    /// Takes forward `key` out, its attempts (no longer indexed) with it.
    pub fn remove(&mut self, key: u64) -> Option<Pending> {
        let p = self.entries.remove(&key)?;
        for a in &p.attempts {
            Self::unindex_attempt(&mut self.by_attempt, &mut self.ids, a);
        }
        if let Some(t) = p.tcp {
            self.by_tcp.remove(&t.token);
        }
        for w in &p.waiters {
            self.by_client.remove(&w.client_key(&p.key));
        }
        self.extra_waiters -= p.waiters.len().saturating_sub(1);
        self.by_key.remove(&p.key);
        Some(p)
    }

    pub fn get(&self, key: u64) -> Option<&Pending> {
        self.entries.get(&key)
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut Pending> {
        self.entries.get_mut(&key)
    }

    pub fn by_attempt(&self, socket: u64, id: u16) -> Option<u64> {
        self.by_attempt.get(&(socket, id)).copied()
    }

    pub fn by_tcp(&self, token: u64) -> Option<u64> {
        self.by_tcp.get(&token).copied()
    }

    /// Keys whose deadline has passed. Linear in the table, which
    /// `dns-forward-max` bounds (150 by default).
    pub fn expired(&self, now_ms: u64) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        v.sort_unstable();
        v
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.entries.values().map(|p| p.deadline_ms).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative() {
        let mut h = LatencyHistogram::default();
        for ms in [0, 3, 5, 700, 9000] {
            h.observe(ms);
        }
        assert_eq!(h.count, 5);
        assert_eq!(h.sum_ms, 9708);
        assert_eq!(h.buckets, [1, 3, 3, 3, 3, 3, 3, 3, 4, 4]);
    }

    fn s(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, n], 53))
    }

    #[test]
    fn dns_selector_fastest_probes_then_prefers() {
        let mut sel = ServerSelector::new(Strategy::Fastest);
        let servers = [s(1), s(2), s(3)];
        // The first query probes everyone.
        assert_eq!(sel.plan(&servers, 0).fan_out, 3);
        sel.good(s(3));
        let p = sel.plan(&servers, 10);
        assert_eq!(p.fan_out, 1);
        assert_eq!(p.order, vec![s(3), s(1), s(2)]);
        sel.bad(s(3));
        assert_eq!(sel.plan(&servers, 20).order[0], s(1));
        // 20 s later it probes again.
        assert_eq!(sel.plan(&servers, 30_000).fan_out, 3);
    }

    #[test]
    fn dns_selector_strict_and_all() {
        let servers = [s(1), s(2)];
        let mut strict = ServerSelector::new(Strategy::StrictOrder);
        strict.good(s(2));
        assert_eq!(
            strict.plan(&servers, 0),
            Plan {
                order: servers.to_vec(),
                fan_out: 1
            }
        );
        let mut all = ServerSelector::new(Strategy::AllServers);
        assert_eq!(all.plan(&servers, 0).fan_out, 2);
    }
}
