//! Upstream bookkeeping: which server a query goes to next, and the table
//! of queries waiting for an upstream answer. Sans-I/O like the engine:
//! the time is passed in, randomness comes from the engine's seeded RNG.

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

/// A question as compared for matching: lowercased, since upstream servers
/// may answer in another case (and 0x20 randomisation relies on that).
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

/// Identifies a client's query, so a retransmission while it is pending is
/// not forwarded twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub addr: SocketAddr,
    pub tcp: bool,
    pub conn: u64,
    pub id: u16,
    pub question: Question,
}

impl ClientKey {
    pub fn new(client: &ClientRef, id: u16, question: &Question) -> Self {
        ClientKey {
            addr: client.addr,
            tcp: client.transport == Transport::Tcp,
            conn: client.conn,
            id,
            question: question.clone(),
        }
    }
}

/// One query waiting for an upstream answer.
#[derive(Debug, Clone)]
pub struct Pending {
    pub client: ClientRef,
    pub client_key: ClientKey,
    /// The client's question as asked (its case), for replies we build.
    pub query: hickory_proto::op::Query,
    pub client_rd: bool,
    pub client_cd: bool,
    pub client_edns: bool,
    /// Largest reply the client takes.
    pub limit: usize,
    /// The bytes sent upstream: the client's query with our id.
    pub wire: Vec<u8>,
    pub upstream_id: u16,
    pub socket: usize,
    pub plan: Plan,
    /// Servers sent to so far (in `plan.order`, a prefix).
    pub sent: usize,
    /// Of those, how many answered SERVFAIL/REFUSED.
    pub failed: usize,
    pub deadline_ms: u64,
    pub started_ms: u64,
    /// When the latest attempt went out, to time the answer to it.
    pub sent_ms: u64,
    /// Set while the exchange runs over TCP.
    pub tcp_token: Option<u64>,
}

/// Pending queries with the indexes replies are matched through.
#[derive(Debug, Default)]
pub struct PendingTable {
    entries: HashMap<u64, Pending>,
    by_upstream: HashMap<(usize, u16), u64>,
    by_tcp: HashMap<u64, u64>,
    by_client: HashMap<ClientKey, u64>,
    next_key: u64,
}

impl PendingTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn id_in_use(&self, socket: usize, id: u16) -> bool {
        self.by_upstream.contains_key(&(socket, id))
    }

    pub fn has_client(&self, key: &ClientKey) -> bool {
        self.by_client.contains_key(key)
    }

    pub fn insert(&mut self, p: Pending) -> u64 {
        self.next_key += 1;
        let key = self.next_key;
        if p.tcp_token.is_none() {
            self.by_upstream.insert((p.socket, p.upstream_id), key);
        }
        if let Some(t) = p.tcp_token {
            self.by_tcp.insert(t, key);
        }
        self.by_client.insert(p.client_key.clone(), key);
        self.entries.insert(key, p);
        key
    }

    pub fn remove(&mut self, key: u64) -> Option<Pending> {
        let p = self.entries.remove(&key)?;
        self.by_upstream.remove(&(p.socket, p.upstream_id));
        if let Some(t) = p.tcp_token {
            self.by_tcp.remove(&t);
        }
        self.by_client.remove(&p.client_key);
        Some(p)
    }

    pub fn get(&self, key: u64) -> Option<&Pending> {
        self.entries.get(&key)
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut Pending> {
        self.entries.get_mut(&key)
    }

    pub fn by_upstream(&self, socket: usize, id: u16) -> Option<u64> {
        self.by_upstream.get(&(socket, id)).copied()
    }

    pub fn by_tcp(&self, token: u64) -> Option<u64> {
        self.by_tcp.get(&token).copied()
    }

    /// Move a pending query to TCP under `token`: UDP replies for it are
    /// no longer accepted.
    pub fn switch_to_tcp(&mut self, key: u64, token: u64) {
        if let Some(p) = self.entries.get_mut(&key) {
            self.by_upstream.remove(&(p.socket, p.upstream_id));
            if let Some(old) = p.tcp_token.replace(token) {
                self.by_tcp.remove(&old);
            }
            self.by_tcp.insert(token, key);
        }
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

    pub fn clear(&mut self) {
        *self = PendingTable {
            next_key: self.next_key,
            ..PendingTable::default()
        };
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
