//! The DHCP engine: request bytes, where they arrived, the lease database
//! and the time go in; a decision comes out. No sockets, no clock, no
//! globals: the shell feeds it and carries out what it decides.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::v4::MessageType;
use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState};

use crate::config::{Config, DhcpBoot, DhcpHost, LeaseTime, MIN_LEASE_SECS};
use crate::lease::hw::colon_hex;
use crate::lease::{merge, LeaseDb};

use super::classes;
use super::holds::{Hold, HoldKind, Holds};
use super::hostname::fqdn_reply;
use super::names::{self, Choice, ConfiguredNames};
use super::network::{self, Arrival, Network};
use super::options::{self, Context, OPT_T1, OPT_T2};
use super::pool::SplitPool;
use super::ratelimit::RateLimiter;
use super::reply::{self, Destination, FixedFields, Header, OptionList};
use super::request::{self, Request};
use super::stats::{Ignored, Stats};
use super::unanswered::{Asking, Unanswered};
use crate::share::{PartnerShare, Rules, ServeMode, SharePolicy};
use twinmasq_proto::link::Role;

/// How long an offered address stays reserved for the client's REQUEST.
pub const OFFER_HOLD_MS: u64 = 30_000;
/// How long an address that answered a ping is kept out of use.
pub const IN_USE_HOLD_MS: u64 = 600_000;
/// How long a declined address is held unusable (as dnsmasq: 10 minutes).
pub const DECLINE_HOLD_SECS: u64 = 600;
/// At most one address in this many of the dynamic ranges is held because
/// its holder declined it, and never more than [`MAX_DECLINED`]: clients
/// that DECLINE every address they get cannot take the pool out of service.
const DECLINED_SHARE: usize = 8;
pub const MAX_DECLINED: usize = 256;
/// Ping checks per DISCOVER before giving up on finding a quiet address.
const MAX_PROBES: u8 = 3;
/// Partner-share candidates tried per range and DISCOVER in partner-down
/// before giving up: each one found too recent is held until it is not,
/// so later DISCOVERs skip it and the search always makes progress.
const MAX_RECENT_TRIES: usize = 16;
/// An address whose end the failover partner has not acked yet is looked
/// at again after this long (acks come within a round trip).
const UNCONFIRMED_RECHECK_MS: u64 = 1_000;

/// What the shell should do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Reply(Reply),
    /// Ping `addr`; then call [`Engine::probe_done`] with `token`.
    Probe {
        token: u64,
        addr: Ipv4Addr,
    },
    /// Handled (RELEASE, DECLINE); nothing to send.
    Done,
    Ignored(Ignored),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub packet: Vec<u8>,
    pub to: Destination,
    /// Our address on the client's network: the source of the reply.
    pub from: Ipv4Addr,
    pub ifindex: u32,
    pub kind: MessageType,
    /// The reply promises a lease change committed to the database: it may
    /// only leave after that change is durable.
    pub durable: bool,
    /// The stamp of the last database commit a durable reply promises
    /// (None for other replies): with a failover partner in sync, the reply
    /// waits for the partner's ack of it.
    pub commit: Option<twinmasq_proto::Stamp>,
    /// When (wall-clock ms) the lease it promises was recorded: set by
    /// the lease task, read by [`Reply::age`] as the reply leaves.
    pub decided_ms: u64,
}

impl Reply {
    /// Readies the reply to leave at `now_ms`: one that waited a second or
    /// more since its lease was recorded tells the client that much less
    /// (rounded up to whole seconds), so the client's lease, counted from
    /// when the reply reaches it, ends no later than the record (shorter
    /// waits stay within the second the expiry sweep leaves). False if
    /// its lease would be over: it must not leave. A clock stepped back
    /// counts as no wait.
    pub fn age(&mut self, now_ms: u64) -> bool {
        let waited_ms = now_ms.saturating_sub(self.decided_ms);
        if waited_ms < 1000 {
            return true;
        }
        let secs = u32::try_from(waited_ms.div_ceil(1000)).unwrap_or(u32::MAX);
        reply::age_lease(&mut self.packet, secs)
    }
}

struct Pending {
    addr: Ipv4Addr,
    bytes: Vec<u8>,
    arrival: Arrival,
    tries: u8,
}

/// What is known about the client before choosing an address.
struct Client<'c> {
    key: ClientKey,
    host: Option<&'c DhcpHost>,
    tags: Vec<String>,
}

/// A lease time to grant, and whether the failover cap shortened it.
#[derive(Debug, Clone, Copy)]
struct Grant {
    time: LeaseTime,
    capped: bool,
}

pub struct Engine {
    cfg: Arc<Config>,
    /// Per dhcp-range, split into the primary's and secondary's shares.
    pools: Vec<SplitPool>,
    /// dhcp-host addresses: never handed out dynamically.
    reserved: HashSet<Ipv4Addr>,
    /// Our own addresses and subnet network/broadcast addresses.
    excluded: HashSet<Ipv4Addr>,
    holds: Holds,
    probes: std::collections::HashMap<u64, Pending>,
    next_token: u64,
    stats: Stats,
    /// None: no failover partner, the whole range is ours.
    policy: Option<SharePolicy>,
    mode: ServeMode,
    /// Addresses whose `Recent` holds a mode change dropped; their pool
    /// bits are recomputed at the next call that has the database.
    stale: Vec<Ipv4Addr>,
    limiter: RateLimiter,
    /// Addresses whose record was `Declined` when last looked at (a
    /// superset: entries are confirmed against the database when counted).
    declined: HashSet<Ipv4Addr>,
    /// How many declined addresses may be held at once.
    declined_max: usize,
    /// The names dhcp-host lines give: no client may offer itself one.
    configured_names: ConfiguredNames,
    /// Passive: clients seen asking without an answer from the primary.
    unanswered: Unanswered,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn client_key(req: &Request) -> ClientKey {
    match &req.client_id {
        Some(id) => ClientKey::from_client_id(id),
        None => ClientKey::from_hwaddr(req.htype, &req.chaddr),
    }
}

fn type_name(t: MessageType) -> &'static str {
    match t {
        MessageType::Discover => "DHCPDISCOVER",
        MessageType::Offer => "DHCPOFFER",
        MessageType::Request => "DHCPREQUEST",
        MessageType::Decline => "DHCPDECLINE",
        MessageType::Ack => "DHCPACK",
        MessageType::Nak => "DHCPNAK",
        MessageType::Release => "DHCPRELEASE",
        MessageType::Inform => "DHCPINFORM",
        _ => "DHCP?",
    }
}

/// Does this record keep its address from anyone else?
fn occupies(rec: &LeaseRecord) -> bool {
    matches!(rec.state, LeaseState::Bound | LeaseState::Declined)
}

impl Engine {
    /// Builds the engine's view of free addresses from the database. Done
    /// once at start; afterwards every change passes through the engine.
    pub fn new(cfg: Arc<Config>, db: &LeaseDb) -> Self {
        Self::with_policy(cfg, db, None)
    }

    /// As [`Engine::new`], for one node of a failover pair when `policy` is
    /// set: each range is split into the two nodes' shares. The mode starts
    /// as `Standalone`; the failover node sets the real one.
    pub fn with_policy(cfg: Arc<Config>, db: &LeaseDb, policy: Option<SharePolicy>) -> Self {
        // Without a partner, split 0 puts every address in the one share.
        let split = policy.map_or(0, |p| p.split_percent);
        let pools = cfg
            .dhcp_ranges
            .iter()
            .map(|r| SplitPool::new(r.start, r.end, split))
            .collect();
        let reserved = cfg.dhcp_hosts.iter().filter_map(|h| h.ip).collect();
        let dynamic: usize = cfg
            .dhcp_ranges
            .iter()
            .filter(|r| !r.is_static)
            .map(|r| (u32::from(r.end).saturating_sub(u32::from(r.start)) as usize) + 1)
            .sum();
        let declined_max = (dynamic / DECLINED_SHARE).clamp(1, MAX_DECLINED);
        let limiter = RateLimiter::new(cfg.dhcp_rate_limit);
        let configured_names = ConfiguredNames::new(&cfg.dhcp_hosts);
        let mut engine = Engine {
            cfg,
            pools,
            reserved,
            excluded: HashSet::new(),
            holds: Holds::default(),
            probes: Default::default(),
            next_token: 1,
            stats: Stats::default(),
            policy,
            mode: ServeMode::Standalone,
            stale: Vec::new(),
            limiter,
            declined: HashSet::new(),
            declined_max,
            configured_names,
            unanswered: Unanswered::default(),
        };
        for ip in engine.reserved.clone() {
            engine.refresh(ip, db);
        }
        for rec in db.iter() {
            if occupies(&rec) {
                engine.set_used(rec.ip, true);
            }
            if rec.state == LeaseState::Declined {
                engine.declined.insert(rec.ip);
            }
        }
        engine
    }

    /// Takes a config that differs only in its dhcp-host and dhcp-option
    /// lines (the files re-read on SIGHUP): addresses that stopped or
    /// started being some host's are freed or taken out of the pool now.
    pub fn set_hosts_and_options(&mut self, cfg: Arc<Config>, db: &LeaseDb) {
        let reserved: HashSet<Ipv4Addr> = cfg.dhcp_hosts.iter().filter_map(|h| h.ip).collect();
        let changed: Vec<Ipv4Addr> = self
            .reserved
            .symmetric_difference(&reserved)
            .copied()
            .collect();
        self.reserved = reserved;
        self.configured_names = ConfiguredNames::new(&cfg.dhcp_hosts);
        self.cfg = cfg;
        for ip in changed {
            self.refresh(ip, db);
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Clients the passive secondary remembers asking (bounded).
    pub fn unanswered_tracked(&self) -> usize {
        self.unanswered.len()
    }

    pub fn policy(&self) -> Option<&SharePolicy> {
        self.policy.as_ref()
    }

    /// What the failover state allows from now on (see [`ServeMode`]).
    pub fn set_mode(&mut self, mode: ServeMode) {
        if matches!(
            mode,
            ServeMode::Linked | ServeMode::Passive | ServeMode::Standalone
        ) {
            // "Too recent" holds only matter while not in sync with the
            // partner; in sync they would only keep usable addresses idle
            // for up to an MCLT.
            self.stale.extend(self.holds.remove_kind(HoldKind::Recent));
        }
        if mode != ServeMode::Passive {
            // Who asked unanswered matters only while the primary answers.
            self.unanswered.clear();
        }
        self.mode = mode;
    }

    pub fn mode(&self) -> ServeMode {
        self.mode
    }

    /// The record for `ip` was changed in `db` from outside the engine
    /// (merged from the partner): recompute whether the address is free.
    /// Call it for every changed record after a bulk merge too.
    pub fn note_change(&mut self, ip: Ipv4Addr, db: &LeaseDb) {
        self.refresh(ip, db);
        // The partner granted this client a lease: it was answered.
        if let Some(rec) = db.get(ip).filter(|r| {
            r.state == LeaseState::Bound
                && r.stamp.node != db.node_id()
                && !self.unanswered.is_empty()
        }) {
            self.unanswered.forget(fnv1a(&rec.client.0));
        }
    }

    /// Which node owns `ip`, if it lies in a dhcp-range (the first one
    /// listing it). Without a policy every address is the primary's.
    pub fn owner_of(&self, ip: Ipv4Addr) -> Option<Role> {
        self.pools.iter().find_map(|p| p.owner(ip))
    }

    fn refresh_stale(&mut self, db: &LeaseDb) {
        for ip in std::mem::take(&mut self.stale) {
            self.refresh(ip, db);
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Free addresses per dhcp-range, in config order.
    pub fn free_per_range(&self) -> Vec<u32> {
        self.pools.iter().map(SplitPool::free_count).collect()
    }

    /// Tells the engine which addresses are the server's own, so they are
    /// never offered.
    pub fn set_local_addresses(&mut self, addrs: &[Ipv4Addr], db: &LeaseDb) {
        for ip in addrs {
            if self.excluded.insert(*ip) {
                self.refresh(*ip, db);
            }
        }
    }

    fn set_used(&mut self, ip: Ipv4Addr, used: bool) {
        for p in &mut self.pools {
            p.set_used(ip, used);
        }
    }

    /// Recomputes whether `ip` is free from every source that can take it.
    fn refresh(&mut self, ip: Ipv4Addr, db: &LeaseDb) {
        let rec = db.get(ip);
        if rec
            .as_ref()
            .is_some_and(|r| r.state == LeaseState::Declined)
        {
            self.declined.insert(ip);
        } else {
            self.declined.remove(&ip);
        }
        let taken = self.reserved.contains(&ip)
            || self.excluded.contains(&ip)
            || self.holds.contains(ip)
            || rec.is_some_and(|r| occupies(&r));
        self.set_used(ip, taken);
    }

    /// Addresses held now because their holder declined them.
    fn declined_count(&mut self, db: &LeaseDb) -> usize {
        self.declined
            .retain(|ip| db.get(*ip).is_some_and(|r| r.state == LeaseState::Declined));
        self.declined.len()
    }

    /// A request too large for the receive buffer arrived (the shell cannot
    /// hand it over): counted like any other dropped request.
    pub fn note_oversized(&mut self) {
        self.stats.received += 1;
        self.stats.count_ignored(Ignored::Oversized);
    }

    /// Does the server know this client: a dhcp-host line for it, or a
    /// lease it holds? Known clients draw on their own rate budget.
    fn is_known(&self, req: &Request, arrival: &Arrival, db: &LeaseDb) -> bool {
        let tags = std::slice::from_ref(&arrival.ifname);
        network::find_host(&self.cfg.dhcp_hosts, req, tags).is_some()
            || db
                .by_client(&client_key(req))
                .is_some_and(|r| r.state == LeaseState::Bound)
    }

    /// Periodic upkeep: ends expired leases and holds. Returns the records
    /// it changed (the shell logs them and marks the lease file dirty).
    pub fn tick(&mut self, db: &mut LeaseDb, now_ms: u64) -> Vec<LeaseRecord> {
        self.refresh_stale(db);
        let expired_holds = self.holds.expire(now_ms);
        if !expired_holds.is_empty() {
            // A ping whose hold ran out will never be answered usefully.
            let holds = &self.holds;
            self.probes.retain(|token, p| {
                holds
                    .get(p.addr)
                    .is_some_and(|h| h.kind == HoldKind::Probing(*token))
            });
        }
        for ip in expired_holds {
            self.refresh(ip, db);
        }
        // Whole seconds, as dnsmasq's lease file: a lease granted a
        // fraction of a second into `now_secs` runs that fraction past its
        // recorded end at the client. So an address goes back to the pool
        // only once a whole second past that end has begun (a real pair
        // test found another client given it 0.14 s early).
        let expired = match db.expire_due((now_ms / 1000).saturating_sub(1), now_ms) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("cannot expire leases: {e}");
                Vec::new()
            }
        };
        for rec in &expired {
            self.refresh(rec.ip, db);
        }
        expired
    }

    pub fn handle(
        &mut self,
        bytes: &[u8],
        arrival: &Arrival,
        db: &mut LeaseDb,
        now_ms: u64,
    ) -> Decision {
        self.stats.received += 1;
        self.refresh_stale(db);
        let req = match request::decode(bytes) {
            Ok(r) => r,
            Err(e) => return self.ignore(Ignored::Decode(e)),
        };
        self.stats.bad_options += u64::from(req.bad_options);
        match req.msg_type {
            MessageType::Discover => self.stats.discover += 1,
            MessageType::Request => self.stats.request += 1,
            MessageType::Decline => self.stats.decline += 1,
            MessageType::Release => self.stats.release += 1,
            MessageType::Inform => self.stats.inform += 1,
            _ => {}
        }
        // Telling known clients from unknown ones costs lookups: only
        // when a limit is on.
        if !self.limiter.is_off() {
            let known = self.is_known(&req, arrival, db);
            if !self.limiter.admit(arrival.ifindex, known, now_ms) {
                return self.ignore(Ignored::RateLimited);
            }
        }
        if !reply::echoes_fit(&req) {
            return self.ignore(Ignored::ReplyTooBig);
        }
        self.note_asking(&req, now_ms);
        let decision = self.dispatch(&req, bytes, arrival, db, now_ms, 0);
        if matches!(&decision, Decision::Reply(r) if r.kind == MessageType::Ack)
            && self.mode == ServeMode::Passive
        {
            // Served to the end: what the client asks next is a new episode.
            self.unanswered.forget(fnv1a(&client_key(&req).0));
        }
        decision
    }

    /// The ping for `token` finished: `answered` means something already
    /// uses the address, so look for another.
    pub fn probe_done(
        &mut self,
        token: u64,
        answered: bool,
        db: &mut LeaseDb,
        now_ms: u64,
    ) -> Decision {
        let Some(p) = self.probes.remove(&token) else {
            // The hold expired while the ping ran; the client will retry.
            return Decision::Done;
        };
        let req = match request::decode(&p.bytes) {
            Ok(r) => r,
            Err(e) => return self.ignore(Ignored::Decode(e)),
        };
        let held = self
            .holds
            .of_client(&client_key(&req))
            .filter(|(_, h)| h.kind == HoldKind::Probing(token));
        let Some((ip, _)) = held else {
            return Decision::Done;
        };
        if answered {
            self.stats.probes_answered += 1;
            tracing::warn!(target: "dhcp", "{ip} answered a ping: not offering it");
            self.holds.put(
                ip,
                Hold {
                    client: None,
                    until_ms: now_ms + IN_USE_HOLD_MS,
                    kind: HoldKind::InUse,
                },
            );
            if p.tries >= MAX_PROBES {
                return self.ignore(Ignored::NoAddress);
            }
            return self.dispatch(&req, &p.bytes, &p.arrival, db, now_ms, p.tries);
        }
        let key = client_key(&req);
        self.holds.put(
            ip,
            Hold {
                client: Some(key),
                until_ms: now_ms + OFFER_HOLD_MS,
                kind: HoldKind::Offered,
            },
        );
        self.dispatch(&req, &p.bytes, &p.arrival, db, now_ms, p.tries)
    }

    /// Passive: remembers the client asking (see [`Unanswered`]). Only
    /// what a primary answers counts: DISCOVER and REQUEST.
    fn note_asking(&mut self, req: &Request, now_ms: u64) {
        if self.mode != ServeMode::Passive || self.policy.is_none() {
            return;
        }
        let asking = match (req.msg_type, req.server_id, req.requested_ip) {
            (MessageType::Discover, _, _) => Asking::Discover,
            (MessageType::Request, Some(server), Some(addr)) => Asking::Took { server, addr },
            (MessageType::Request, _, _) if !req.ciaddr.is_unspecified() => {
                Asking::Renew(req.ciaddr)
            }
            (MessageType::Request, _, Some(addr)) => Asking::Reboot(addr),
            _ => return,
        };
        self.unanswered
            .note(fnv1a(&client_key(req).0), asking, req.secs, now_ms);
    }

    /// The `secs` a passive secondary judges the request by: the client's
    /// own, or the threshold once the client has been asking unanswered
    /// that long. Also the SELECTING REQUEST for an offer this node made
    /// to a client it served (it may carry `secs` 0: some clients reset
    /// it); nothing else of that client's is answered without the
    /// threshold, so a client the primary serves again is left to it.
    fn unanswered_secs(&mut self, req: &Request, now_ms: u64) -> u16 {
        let Some(threshold) = self.policy.map(|p| p.unanswered_secs) else {
            return req.secs;
        };
        if self.mode != ServeMode::Passive {
            return req.secs;
        }
        let key = client_key(req);
        let client = fnv1a(&key.0);
        let our_offer = req.msg_type == MessageType::Request
            && req.server_id.is_some()
            && self.unanswered.was_served(client)
            && self
                .holds
                .of_client(&key)
                .is_some_and(|(_, h)| h.kind == HoldKind::Offered);
        let secs = if our_offer
            || self
                .unanswered
                .is_due(client, u64::from(threshold) * 1000, now_ms)
        {
            req.secs.max(threshold)
        } else {
            req.secs
        };
        if secs >= threshold {
            self.unanswered.served(client);
        }
        secs
    }

    fn ignore(&mut self, why: Ignored) -> Decision {
        self.stats.count_ignored(why);
        Decision::Ignored(why)
    }

    fn log(
        &self,
        kind: MessageType,
        arrival: &Arrival,
        ip: Option<Ipv4Addr>,
        req: &Request,
        extra: &str,
    ) {
        if self.cfg.quiet_dhcp {
            return;
        }
        let ip = ip.map(|i| format!("{i} ")).unwrap_or_default();
        tracing::info!(target: "dhcp", "{}({}) {}{}{}", type_name(kind), arrival.ifname, ip, colon_hex(&req.chaddr), extra);
    }

    fn dispatch(
        &mut self,
        req: &Request,
        bytes: &[u8],
        arrival: &Arrival,
        db: &mut LeaseDb,
        now_ms: u64,
        tries: u8,
    ) -> Decision {
        // A passive secondary leaves DHCP to the primary, unless the
        // client's `secs` says the primary has left it unanswered.
        // Or, without `secs`, the client's asking again and again says so.
        let secs = self.unanswered_secs(req, now_ms);
        let Some(rules) = Rules::for_request(self.mode, self.policy.as_ref(), secs, now_ms) else {
            return self.ignore(Ignored::Passive);
        };
        let cfg = Arc::clone(&self.cfg);
        let mut tags = vec![arrival.ifname.clone()];
        // Before the host lookup: a dhcp-host line may ask for these tags.
        classes::add_tags(&cfg.dhcp_classes, bytes, &mut tags);
        classes::add_match_tags(&cfg.dhcp_matches, bytes, &mut tags);
        let host = network::find_host(&cfg.dhcp_hosts, req, &tags);
        if let Some(h) = host {
            tags.extend(h.set_tags.iter().cloned());
            tags.push("known".into());
        }
        // After the host lookup, as in dnsmasq; dhcp-ignore sees them.
        names::add_name_match_tags(&cfg.dhcp_name_matches, req.offered_name(), &mut tags);
        let client = Client {
            key: client_key(req),
            host,
            tags,
        };
        let Some(net) = network::select(&cfg.dhcp_ranges, req, arrival, &client.tags) else {
            if req.msg_type != MessageType::Inform {
                // Debug only: a client can send this at any rate.
                if req.giaddr.is_unspecified() {
                    tracing::debug!(target: "dhcp", "no address range available for DHCP request via {}", arrival.ifname);
                } else {
                    tracing::debug!(target: "dhcp", "no address range available for DHCP request via {} (relay {})", req.giaddr, arrival.ifname);
                }
            }
            return self.ignore(Ignored::NoNetwork);
        };
        for addr in [net.net, net.broadcast] {
            if self.excluded.insert(addr) {
                self.refresh(addr, db);
            }
        }
        if req.msg_type != MessageType::Release {
            if host.is_some_and(|h| h.ignore) {
                return self.ignore(Ignored::HostIgnored);
            }
            // dnsmasq checks these before any range's tag joins the set.
            if cfg
                .dhcp_ignore
                .iter()
                .any(|l| network::tags_match(l, &client.tags))
            {
                return self.ignore(Ignored::TagIgnored);
            }
        }
        let ctx = Ctx {
            req,
            arrival,
            net: &net,
            client: &client,
            rules,
        };
        match req.msg_type {
            MessageType::Discover => self.discover(&ctx, bytes, db, now_ms, tries),
            MessageType::Request => self.request(&ctx, db, now_ms),
            MessageType::Release => self.release(&ctx, db, now_ms),
            MessageType::Decline => self.decline(&ctx, db, now_ms),
            MessageType::Inform => self.inform(&ctx),
            _ => self.ignore(Ignored::Incomplete),
        }
    }

    /// The host line's address, when it belongs on this network.
    fn host_addr(&self, ctx: &Ctx<'_>) -> Option<Ipv4Addr> {
        ctx.client
            .host
            .and_then(|h| h.ip)
            .filter(|ip| ctx.net.contains(*ip))
    }

    /// A dynamic range of this network that holds `ip`.
    fn dynamic_range_of(&self, ip: Ipv4Addr, net: &Network) -> Option<usize> {
        net.ranges
            .iter()
            .copied()
            .find(|&i| !self.cfg.dhcp_ranges[i].is_static && self.pools[i].contains(ip))
    }

    /// May this client have `ip` on this network? It must be the client's
    /// dhcp-host address, or (if the client has none here) an address of a
    /// dynamic range that nobody else holds.
    fn acceptable(&self, ctx: &Ctx<'_>, ip: Ipv4Addr, db: &LeaseDb) -> bool {
        if !ctx.net.contains(ip) {
            return false;
        }
        if let Some(fixed) = self.host_addr(ctx) {
            return ip == fixed && !self.held_by_other(ctx, ip, db);
        }
        if self.reserved.contains(&ip) || self.excluded.contains(&ip) {
            return false;
        }
        self.dynamic_range_of(ip, ctx.net).is_some() && !self.held_by_other(ctx, ip, db)
    }

    fn held_by_other(&self, ctx: &Ctx<'_>, ip: Ipv4Addr, db: &LeaseDb) -> bool {
        let key = &ctx.client.key;
        // A declined address is out of use for its decliner too: offering
        // it back would only bring the same DECLINE.
        let by_lease = db
            .get(ip)
            .is_some_and(|r| occupies(&r) && (&r.client != key || r.state == LeaseState::Declined));
        // A `Recent` hold only keeps new allocations away: the client the
        // partner may have renewed it for must still get its ACK.
        let by_hold = self
            .holds
            .get(ip)
            .is_some_and(|h| h.kind != HoldKind::Recent && h.client.as_ref() != Some(key));
        by_lease || by_hold
    }

    /// May a new allocation (an offer, or a SELECTING request) give `ip` to
    /// this client under the failover rules? Only the share matters here;
    /// [`Engine::acceptable`] checks the rest. The client's dhcp-host
    /// address and addresses outside the dynamic ranges are in no share.
    fn may_allocate(&self, ctx: &Ctx<'_>, ip: Ipv4Addr, db: &LeaseDb, now_ms: u64) -> bool {
        if self.host_addr(ctx) == Some(ip) {
            return true;
        }
        if !ctx.rules.allocate {
            if self.recovering_apart(ctx, ip, now_ms) {
                return false;
            }
            // Nothing new: only the client's own unexpired binding, and in
            // the partner's share only one the partner knows (simulation
            // seed 270 of `failover_pair_through_a_life_of_operations`: a
            // grant never acked, before a restart into a configuration
            // mismatch, was handed to its client as a live binding).
            return self.live_binding(ctx, ip, db, now_ms);
        }
        let Some(owner) = self
            .dynamic_range_of(ip, ctx.net)
            .and_then(|i| self.pools[i].owner(ip))
        else {
            return true;
        };
        if owner == ctx.rules.own {
            // The client's own old address is its to have back; another
            // client's only once the partner knows its lease ended
            // (`LeaseDb::unconfirmed_end`) and cannot have extended it.
            let other_client = db.get(ip).is_some_and(|r| r.client != ctx.client.key);
            if other_client && db.unconfirmed_end(ip) {
                return false;
            }
            return ctx.rules.own_aged.is_none_or(|mclt_ms| {
                db.get(ip).is_none_or(|r| {
                    r.client == ctx.client.key || recent_until(Some(r), mclt_ms, now_ms).is_none()
                })
            });
        }
        // The client's own live lease is no new allocation (issue 14, case
        // 7), in whichever share: the partner cannot be reusing the address
        // behind our back. In sync it hears of every change first, and the
        // owner gives an ended address to another client only once the
        // partner knows it ended (`LeaseDb::unconfirmed_end`); apart, the
        // owner reuses it only an MCLT after the binding's expiry
        // (`merge::ended_expiry`, even when the client released it there),
        // and we extend the binding no further than an MCLT past the expiry
        // the owner knows (`partner_share_limit`). Only when a REQUEST for
        // it could be acknowledged: an offer whose REQUEST would get no
        // answer would leave the client stuck.
        if self.live_binding(ctx, ip, db, now_ms)
            && self.grant_fits(ctx, ip, db, now_ms, self.lease_time(ctx, ip))
        {
            return true;
        }
        match ctx.rules.partner {
            PartnerShare::No => false,
            PartnerShare::Any => true,
            PartnerShare::Aged { mclt_ms } => recent_until(db.get(ip), mclt_ms, now_ms).is_none(),
        }
    }

    /// Is `ip` in the partner's share while this node recovers after its
    /// start? Then even a live lease of the client in our table is not
    /// renewed: the record may be one the partner has since seen end (a
    /// RELEASE while this node was down) and, an MCLT later, reused; our
    /// renewal would give the client the address again (simulation seed
    /// 77 of `failover_pair_under_pool_pressure`). The owner answers.
    fn recovering_apart(&self, ctx: &Ctx<'_>, ip: Ipv4Addr, now_ms: u64) -> bool {
        matches!(self.mode, ServeMode::Recovering { serve_from_ms } if now_ms < serve_from_ms)
            && self.partner_share_closed(ctx, ip)
    }

    /// Why nothing new is handed out when the rules allow no allocation.
    fn held_back(&self) -> Ignored {
        if matches!(self.mode, ServeMode::Recovering { .. }) {
            Ignored::Recovering
        } else {
            Ignored::ConfigMismatch
        }
    }

    /// Does this client hold an unexpired lease on `ip` in our table, one
    /// it was told of (`LeaseDb::is_untold`) and, in the partner's share,
    /// one the partner knows (`LeaseDb::partner_knows`)?
    fn live_binding(&self, ctx: &Ctx<'_>, ip: Ipv4Addr, db: &LeaseDb, now_ms: u64) -> bool {
        db.get(ip)
            .is_some_and(|r| r.client == ctx.client.key && r.is_active(now_ms / 1000))
            && !db.is_untold(ip)
            && (!self.partner_share_closed(ctx, ip) || db.partner_knows(ip))
    }

    /// Is `ip` in the partner's share, under rules that keep this node out
    /// of it (not in sync, and partner-down has not opened it)? A
    /// dhcp-host address is in no share.
    fn partner_share_closed(&self, ctx: &Ctx<'_>, ip: Ipv4Addr) -> bool {
        matches!(ctx.rules.partner, PartnerShare::No)
            && self.host_addr(ctx) != Some(ip)
            && self
                .dynamic_range_of(ip, ctx.net)
                .and_then(|i| self.pools[i].owner(ip))
                .is_some_and(|o| o != ctx.rules.own)
    }

    fn discover(
        &mut self,
        ctx: &Ctx<'_>,
        bytes: &[u8],
        db: &mut LeaseDb,
        now_ms: u64,
        tries: u8,
    ) -> Decision {
        self.log(MessageType::Discover, ctx.arrival, None, ctx.req, "");
        let key = &ctx.client.key;
        let (ip, fresh) = match self.choose(ctx, db, now_ms) {
            Ok(c) => c,
            Err(why) => {
                if why == Ignored::NoAddress {
                    tracing::warn!(target: "dhcp", "DHCPDISCOVER({}) {} no address available", ctx.arrival.ifname, colon_hex(&ctx.req.chaddr));
                }
                return self.ignore(why);
            }
        };
        if let Some(h) = self.holds.get(ip) {
            if let HoldKind::Probing(_) = h.kind {
                return self.ignore(Ignored::ProbeInProgress);
            }
        }
        self.drop_other_hold(ctx, ip, db);
        if fresh && !self.cfg.no_ping {
            let token = self.next_token;
            self.next_token += 1;
            self.stats.probes += 1;
            self.holds.put(
                ip,
                Hold {
                    client: Some(key.clone()),
                    until_ms: now_ms + OFFER_HOLD_MS,
                    kind: HoldKind::Probing(token),
                },
            );
            self.set_used(ip, true);
            self.probes.insert(
                token,
                Pending {
                    addr: ip,
                    bytes: bytes.to_vec(),
                    arrival: ctx.arrival.clone(),
                    tries: tries + 1,
                },
            );
            return Decision::Probe { token, addr: ip };
        }
        if ctx.req.rapid_commit && self.cfg.rapid_commit {
            return self.bind_and_ack(ctx, ip, db, now_ms, true);
        }
        self.holds.put(
            ip,
            Hold {
                client: Some(key.clone()),
                until_ms: now_ms + OFFER_HOLD_MS,
                kind: HoldKind::Offered,
            },
        );
        self.set_used(ip, true);
        let hostname = self.lease_name(ctx, ip);
        self.stats.offers += 1;
        let grant = self.lease_time(ctx, ip);
        self.build(
            ctx,
            MessageType::Offer,
            ip,
            Some(grant),
            hostname.name(),
            false,
        )
    }

    /// The client is about to hold `ip`: a hold it has on another address
    /// (chosen under rules that no longer allow it) ends, and that
    /// address becomes free again rather than staying marked taken.
    fn drop_other_hold(&mut self, ctx: &Ctx<'_>, ip: Ipv4Addr, db: &LeaseDb) {
        if let Some((old, _)) = self.holds.of_client(&ctx.client.key) {
            if old != ip {
                self.holds.remove(old);
                self.refresh(old, db);
            }
        }
    }

    /// Picks the address to offer, in RFC 2131 §4.3.1's order. The flag says
    /// whether the address is new to this client (and so worth a ping).
    /// Under the failover rules each step also asks
    /// [`Engine::may_allocate`]: a client's live lease is its own to have
    /// back in either share, but its ended one in the partner's share is a
    /// new allocation like any other.
    fn choose(
        &mut self,
        ctx: &Ctx<'_>,
        db: &LeaseDb,
        now_ms: u64,
    ) -> Result<(Ipv4Addr, bool), Ignored> {
        let key = &ctx.client.key;
        if let Some(fixed) = self.host_addr(ctx) {
            if !self.held_by_other(ctx, fixed, db) {
                return Ok((fixed, false));
            }
            tracing::warn!(target: "dhcp", "not using configured address {fixed}: it is leased to another client");
        }
        // Its lease, if it holds one: its newest record may be an ended
        // one elsewhere (a merge can leave one newer than the live lease),
        // and of two bound ones a live lease comes before one whose time
        // ran out this second, not yet swept (simulation seed 1744 of
        // `failover_pair_known_clients_rediscover_after_takeover`).
        let now_secs = now_ms / 1000;
        let bound = db
            .all_of_client(key)
            .into_iter()
            .filter(|r| r.state == LeaseState::Bound)
            .max_by_key(|r| (r.is_active(now_secs), r.stamp));
        if let Some(rec) = bound {
            if self.acceptable(ctx, rec.ip, db) && self.may_allocate(ctx, rec.ip, db, now_ms) {
                return Ok((rec.ip, false));
            }
        }
        if let Some((ip, h)) = self.holds.of_client(key) {
            if ctx.net.contains(ip) && self.may_allocate(ctx, ip, db, now_ms) {
                return Ok((ip, matches!(h.kind, HoldKind::Probing(_))));
            }
        }
        if !ctx.rules.allocate {
            return Err(self.held_back());
        }
        let cfg = Arc::clone(&self.cfg);
        if db.bound_count() >= cfg.lease_max as usize {
            return Err(Ignored::LeaseMax);
        }
        if let Some(rec) = db.by_client(key) {
            if self.acceptable(ctx, rec.ip, db) && self.may_allocate(ctx, rec.ip, db, now_ms) {
                return Ok((rec.ip, true));
            }
        }
        if let Some(want) = ctx.req.requested_ip {
            if self.acceptable(ctx, want, db)
                && !self.holds.contains(want)
                && self.may_allocate(ctx, want, db, now_ms)
            {
                return Ok((want, true));
            }
        }
        let hint = fnv1a(&key.0);
        let dynamic: Vec<usize> = ctx
            .net
            .ranges
            .iter()
            .copied()
            .filter(|&i| !cfg.dhcp_ranges[i].is_static)
            .collect();
        let (own, partner) = (ctx.rules.own, ctx.rules.own.partner());
        // The own share of every range before any of the partner's.
        for &i in &dynamic {
            if let Some(ip) = self.find_aged(i, own, hint, ctx.rules.own_aged, db, now_ms) {
                return Ok((ip, true));
            }
        }
        let partner_aged = match ctx.rules.partner {
            PartnerShare::No => return Err(Ignored::NoAddress),
            PartnerShare::Any => None,
            PartnerShare::Aged { mclt_ms } => Some(mclt_ms),
        };
        for &i in &dynamic {
            if let Some(ip) = self.find_aged(i, partner, hint, partner_aged, db, now_ms) {
                return Ok((ip, true));
            }
        }
        Err(Ignored::NoAddress)
    }

    /// A free address of range `i` in `owner`'s share. With `aged` (an
    /// MCLT in ms), one whose lease ended less than that ago is skipped and
    /// held as `Recent` until it may be used, for a bounded number of tries.
    fn find_aged(
        &mut self,
        i: usize,
        owner: Role,
        hint: u64,
        aged: Option<u64>,
        db: &LeaseDb,
        now_ms: u64,
    ) -> Option<Ipv4Addr> {
        for _ in 0..MAX_RECENT_TRIES {
            let ip = self.pools[i].find_free(owner, hint)?;
            let until_ms = if db.unconfirmed_end(ip) {
                // Looked at again once the partner may have acked the end.
                Some(now_ms + UNCONFIRMED_RECHECK_MS)
            } else {
                aged.and_then(|mclt_ms| recent_until(db.get(ip), mclt_ms, now_ms))
            };
            let Some(until_ms) = until_ms else {
                return Some(ip);
            };
            self.holds.put(
                ip,
                Hold {
                    client: None,
                    until_ms,
                    kind: HoldKind::Recent,
                },
            );
            self.set_used(ip, true);
        }
        None
    }

    fn request(&mut self, ctx: &Ctx<'_>, db: &mut LeaseDb, now_ms: u64) -> Decision {
        let req = ctx.req;
        let key = &ctx.client.key;
        let authoritative = self.cfg.authoritative;

        if let Some(sid) = req.server_id {
            // SELECTING: the client answers an offer.
            let ours = sid == ctx.net.server || ctx.arrival.addrs.iter().any(|a| a.addr == sid);
            if !ours {
                if let Some((ip, _)) = self.holds.of_client(key) {
                    self.holds.remove(ip);
                    self.refresh(ip, db);
                }
                return self.ignore(Ignored::NotForUs);
            }
            let Some(ip) = req
                .requested_ip
                .or(Some(req.ciaddr).filter(|a| !a.is_unspecified()))
            else {
                return self.ignore(Ignored::Incomplete);
            };
            self.log(MessageType::Request, ctx.arrival, Some(ip), req, "");
            // Answering an offer takes a new address: the share rules apply.
            if !self.acceptable(ctx, ip, db) || !self.may_allocate(ctx, ip, db, now_ms) {
                return self.nak(ctx, ip, db, "address not available");
            }
            // An offer is no lease: many offers may be out when the table
            // fills, and a forged REQUEST needs no offer at all.
            if self.over_lease_max(ctx, ip, db) {
                return self.ignore(Ignored::LeaseMax);
            }
            return self.bind_and_ack(ctx, ip, db, now_ms, false);
        }

        // INIT-REBOOT (requested address, no ciaddr) or RENEWING/REBINDING
        // (ciaddr set).
        let (ip, init_reboot) = match (req.requested_ip, req.ciaddr.is_unspecified()) {
            (Some(ip), true) => (ip, true),
            (_, false) => (req.ciaddr, false),
            (None, true) => return self.ignore(Ignored::Incomplete),
        };
        self.log(MessageType::Request, ctx.arrival, Some(ip), req, "");
        if !ctx.net.contains(ip) {
            // RFC 2131: a client on the wrong network must hear so at
            // INIT-REBOOT; while renewing only an authoritative server speaks.
            return if init_reboot || authoritative {
                self.nak(ctx, ip, db, "wrong network")
            } else {
                self.ignore(Ignored::UnknownClient)
            };
        }
        let known = db.get(ip).is_some_and(|r| &r.client == key);
        // Apart from the partner, its share is its to answer for unless
        // this client holds a live lease on the address here (issue 14,
        // case 6). Acknowledging an address we hold no lease for could
        // give the client one the partner has handed to another client
        // meanwhile (ISC does not answer either). A NAK would be wrong
        // too: with only the link down, the partner hears the same
        // broadcast REBINDING and may be acknowledging it right now, or
        // may have granted the address to this client since our record
        // of another holder; a NAK would cost the client an address it
        // holds. Silent, the client retries, and if nobody answers its
        // lease runs out and it DISCOVERs an address of our own share.
        if self.recovering_apart(ctx, ip, now_ms) {
            tracing::debug!(target: "dhcp", "not answering for {ip}: the partner's share, and this node is recovering after its start");
            return self.ignore(Ignored::Recovering);
        }
        if self.partner_share_closed(ctx, ip) && !self.live_binding(ctx, ip, db, now_ms) {
            tracing::debug!(target: "dhcp", "not answering for {ip}: the partner's share, and no lease of this client here");
            return self.ignore(Ignored::PartnerShare);
        }
        if self.held_by_other(ctx, ip, db) {
            return self.nak(ctx, ip, db, "address in use");
        }
        // Apart from the partner, an address we do not know may be one the
        // partner granted: if nobody else holds it, the client keeps it
        // (with an MCLT-bounded lease) instead of losing it to a NAK.
        let unclaimed = ctx.rules.ack_unclaimed
            && (self.host_addr(ctx) == Some(ip) || self.dynamic_range_of(ip, ctx.net).is_some());
        if !ctx.rules.allocate && !self.live_binding(ctx, ip, db, now_ms) {
            // A lease we do not hold is a new one here, even to an
            // authoritative server: silence, so a lease the partner may
            // have given is not NAKed away either. So is one that has
            // ended: the partner may have handed the address to another
            // client since (a node back from a restart, issue 14 case 1).
            return self.ignore(self.held_back());
        }
        if !known && !authoritative && !unclaimed {
            return self.ignore(Ignored::UnknownClient);
        }
        if !self.acceptable(ctx, ip, db) {
            return self.nak(ctx, ip, db, "address not available");
        }
        if self.over_lease_max(ctx, ip, db) {
            return self.ignore(Ignored::LeaseMax);
        }
        self.bind_and_ack(ctx, ip, db, now_ms, false)
    }

    /// Would binding `ip` to this client add a lease past dhcp-lease-max?
    /// Not when the client already holds a lease (it keeps one either way),
    /// nor for its dhcp-host address: that is reserved, it takes nothing
    /// from the pool, and a flood must not lock static hosts out.
    fn over_lease_max(&self, ctx: &Ctx<'_>, ip: Ipv4Addr, db: &LeaseDb) -> bool {
        if self.host_addr(ctx) == Some(ip) {
            return false;
        }
        let key = &ctx.client.key;
        let holds_one = db
            .get(ip)
            .is_some_and(|r| &r.client == key && r.state == LeaseState::Bound)
            || db
                .by_client(key)
                .is_some_and(|r| r.state == LeaseState::Bound);
        !holds_one && db.bound_count() >= self.cfg.lease_max as usize
    }

    /// The lease to grant: configured, shortened at the client's wish, then
    /// capped by the failover rules.
    fn lease_time(&self, ctx: &Ctx<'_>, ip: Ipv4Addr) -> Grant {
        let configured = ctx
            .client
            .host
            .and_then(|h| h.lease_time)
            .or_else(|| {
                self.dynamic_range_of(ip, ctx.net)
                    .map(|i| self.cfg.dhcp_ranges[i].lease_time)
            })
            .or_else(|| {
                ctx.net
                    .ranges
                    .first()
                    .map(|&i| self.cfg.dhcp_ranges[i].lease_time)
            })
            .unwrap_or(LeaseTime::Secs(crate::config::DEFAULT_LEASE_SECS));
        // A client may ask for less than we give, never less than dnsmasq's floor.
        let time = match (configured, ctx.req.lease_time) {
            (LeaseTime::Secs(s), Some(want)) if want < s => {
                LeaseTime::Secs(want.max(MIN_LEASE_SECS))
            }
            (LeaseTime::Infinite, Some(want)) if want != u32::MAX => {
                LeaseTime::Secs(want.max(MIN_LEASE_SECS))
            }
            (t, _) => t,
        };
        let secs = match time {
            LeaseTime::Secs(s) => Some(s),
            LeaseTime::Infinite => None,
        };
        match ctx.rules.cap(secs) {
            (Some(s), true) => Grant {
                time: LeaseTime::Secs(s),
                capped: true,
            },
            _ => Grant {
                time,
                capped: false,
            },
        }
    }

    /// Not in sync, a lease in the partner's share may run at most an MCLT
    /// past the end the partner knows, which is what the partner waits
    /// before reusing the address. A record this node wrote last may
    /// already carry such an extension, so it is not extended again.
    /// Seconds left under that bound, if it applies: a renewal that cannot
    /// get a full MCLT under it is left unanswered (the client's lease runs
    /// out and it asks again), rather than granting a sliver that would
    /// race the partner's own answer in the merge.
    fn partner_share_limit(
        &self,
        ctx: &Ctx<'_>,
        ip: Ipv4Addr,
        db: &LeaseDb,
        now_ms: u64,
    ) -> Option<u32> {
        let mclt_ms = ctx.rules.own_aged?;
        // Once partner-down opened the partner's share, the partner is
        // declared gone and waits for nothing.
        if !matches!(ctx.rules.partner, PartnerShare::No) {
            return None;
        }
        let partner = self.owner_of(ip).is_some_and(|o| o != ctx.rules.own);
        if !partner {
            return None;
        }
        let rec = db.get(ip).filter(|r| r.client == ctx.client.key)?;
        let Expiry::At(end_secs) = rec.expires else {
            return None;
        };
        // Stored data: saturate rather than overflow on an absurd expiry.
        let end_ms = if rec.stamp.node == db.node_id() {
            end_secs.saturating_mul(1000)
        } else {
            end_secs.saturating_mul(1000).saturating_add(mclt_ms)
        };
        let left = end_ms.saturating_sub(now_ms) / 1000;
        Some(u32::try_from(left).unwrap_or(u32::MAX).max(1))
    }

    /// May `grant` be given on `ip` under [`Engine::partner_share_limit`]?
    fn grant_fits(
        &self,
        ctx: &Ctx<'_>,
        ip: Ipv4Addr,
        db: &LeaseDb,
        now_ms: u64,
        grant: Grant,
    ) -> bool {
        match (self.partner_share_limit(ctx, ip, db, now_ms), grant.time) {
            (Some(limit), LeaseTime::Secs(want)) => limit >= want,
            _ => true,
        }
    }

    /// The name a lease on `ip` publishes (see [`names::choose`]).
    fn lease_name(&self, ctx: &Ctx<'_>, ip: Ipv4Addr) -> Choice {
        // dnsmasq matches these with the range's tag in the set.
        let tags = self.reply_tags(ctx, ip);
        let ignore_names = self
            .cfg
            .dhcp_ignore_names
            .iter()
            .any(|l| network::tags_match(l, &tags));
        names::choose(
            ctx.client.host,
            ctx.req.offered_name(),
            ignore_names,
            &self.configured_names,
        )
    }

    /// The client's tags and the tag of the dynamic range holding `ip`.
    fn reply_tags(&self, ctx: &Ctx<'_>, ip: Ipv4Addr) -> Vec<String> {
        let mut tags = ctx.client.tags.clone();
        if let Some(t) = self
            .dynamic_range_of(ip, ctx.net)
            .and_then(|i| self.cfg.dhcp_ranges[i].set_tag.clone())
        {
            tags.push(t);
        }
        tags
    }

    fn bind_and_ack(
        &mut self,
        ctx: &Ctx<'_>,
        ip: Ipv4Addr,
        db: &mut LeaseDb,
        now_ms: u64,
        rapid: bool,
    ) -> Decision {
        let req = ctx.req;
        let key = &ctx.client.key;
        let grant = self.lease_time(ctx, ip);
        if !self.grant_fits(ctx, ip, db, now_ms, grant) {
            return self.ignore(Ignored::NotForUs);
        }
        let choice = self.lease_name(ctx, ip);
        if let Choice::Taken { name, holder } = &choice {
            match holder {
                Some(addr) => {
                    tracing::warn!(target: "dhcp", "not giving name {name} to the DHCP lease of {ip} because the name exists in config with address {addr}")
                }
                None => {
                    tracing::warn!(target: "dhcp", "not giving name {name} to the DHCP lease of {ip} because a dhcp-host line gives it to another client")
                }
            }
        }
        let hostname = choice.name().map(str::to_string);
        let now_secs = now_ms / 1000;

        // One client, one lease: every other lease of it ends now (settled
        // under its own stamp, so it cannot undo what a failover partner
        // did with that address since). Every one, not only the newest: a
        // merge leaves a client two when their order was not certain
        // (`merge::superseded`), and this request is what settles it.
        let others: Vec<LeaseRecord> = db
            .all_of_client(key)
            .into_iter()
            .filter(|r| r.ip != ip && r.state == LeaseState::Bound)
            .collect();
        for prev in others {
            let ended = LeaseRecord {
                state: LeaseState::Released,
                expires: merge::ended_expiry(prev.expires, now_secs),
                ..prev
            };
            if db.settle(ended.clone(), now_ms).is_err() {
                return self.ignore(Ignored::Storage);
            }
            self.refresh(ended.ip, db);
        }
        // A name belongs to one lease: the newest takes it (as dnsmasq).
        // A client's own name is never a configured one (`lease_name`), so
        // it cannot take a name from the host a dhcp-host line gives it to.
        if let Some(name) = &hostname {
            if let Some(other) = db.by_hostname(name).filter(|r| r.ip != ip) {
                if db
                    .commit(
                        LeaseRecord {
                            hostname: None,
                            ..other
                        },
                        now_ms,
                    )
                    .is_err()
                {
                    return self.ignore(Ignored::Storage);
                }
            }
        }
        let rec = LeaseRecord {
            ip,
            state: LeaseState::Bound,
            client: key.clone(),
            htype: req.htype,
            hwaddr: req.chaddr.clone(),
            client_id: req.client_id.clone(),
            hostname: hostname.clone(),
            expires: held_until(
                db.get(ip).filter(|r| &r.client == key),
                match grant.time {
                    LeaseTime::Infinite => Expiry::Never,
                    LeaseTime::Secs(s) => Expiry::At(now_secs + u64::from(s)),
                },
            ),
            stamp: Default::default(),
        };
        let stamp = match db.commit(rec, now_ms) {
            Ok(stored) => stored.stamp,
            Err(e) => {
                // Debug: the lease database logs a storage fault once per episode.
                tracing::debug!(target: "dhcp", "not acknowledging {ip}: cannot store the lease: {e}");
                return self.ignore(Ignored::Storage);
            }
        };
        self.holds.remove(ip);
        self.set_used(ip, true);
        let extra = hostname
            .as_deref()
            .map(|h| format!(" {h}"))
            .unwrap_or_default();
        self.log(MessageType::Ack, ctx.arrival, Some(ip), req, &extra);
        self.stats.acks += 1;
        let mut decision = self.build(
            ctx,
            MessageType::Ack,
            ip,
            Some(grant),
            hostname.as_deref(),
            rapid,
        );
        if let Decision::Reply(r) = &mut decision {
            r.commit = Some(stamp);
        }
        decision
    }

    fn nak(&mut self, ctx: &Ctx<'_>, ip: Ipv4Addr, db: &LeaseDb, why: &str) -> Decision {
        if let Some((held, _)) = self.holds.of_client(&ctx.client.key) {
            self.holds.remove(held);
            self.refresh(held, db);
        }
        self.log(
            MessageType::Nak,
            ctx.arrival,
            Some(ip),
            ctx.req,
            &format!(" {why}"),
        );
        self.stats.naks += 1;
        let mut opts = OptionList::default();
        opts.required(54, ctx.net.server.octets().to_vec());
        opts.required(56, why.as_bytes().to_vec());
        if let Some(id) = &ctx.req.client_id {
            opts.required(61, id.clone());
        }
        opts.tail = ctx.req.relay_info.clone().map(|r| (82, r));
        let header = Header {
            kind: MessageType::Nak,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            fixed: FixedFields::default(),
        };
        self.finish(ctx, header, opts, false)
    }

    fn release(&mut self, ctx: &Ctx<'_>, db: &mut LeaseDb, now_ms: u64) -> Decision {
        let ip = ctx.req.ciaddr;
        self.log(MessageType::Release, ctx.arrival, Some(ip), ctx.req, "");
        self.end_lease(ctx, ip, db, now_ms, LeaseState::Released, now_ms / 1000)
    }

    fn decline(&mut self, ctx: &Ctx<'_>, db: &mut LeaseDb, now_ms: u64) -> Decision {
        let Some(ip) = ctx.req.requested_ip else {
            return self.ignore(Ignored::Incomplete);
        };
        self.log(MessageType::Decline, ctx.arrival, Some(ip), ctx.req, "");
        let owned = db
            .get(ip)
            .is_some_and(|r| r.client == ctx.client.key && r.state == LeaseState::Bound);
        if owned && self.declined_count(db) >= self.declined_max {
            tracing::debug!(target: "dhcp", "{} declined addresses held already: not holding {ip}", self.declined_max);
            let ended = self.end_lease(ctx, ip, db, now_ms, LeaseState::Released, now_ms / 1000);
            if ended != Decision::Done {
                return ended;
            }
            return self.ignore(Ignored::DeclineLimit);
        }
        let hold_until = now_ms / 1000 + DECLINE_HOLD_SECS;
        self.end_lease(ctx, ip, db, now_ms, LeaseState::Declined, hold_until)
    }

    /// Ends the lease on `ip` as `state` until `until`, but only for the
    /// client that holds it: a RELEASE or DECLINE forged by another client
    /// changes nothing. The name goes with the lease.
    ///
    /// The end keeps the stamp of the binding it ends (`LeaseDb::settle`),
    /// so it is ordered by that binding, not by this node's clock: a grant
    /// the failover partner made later, having seen the binding, has a
    /// greater stamp and stands over the end on both nodes, whatever the
    /// clocks say (issue 14, case 3; the rule and its limits are in
    /// `lease::merge`).
    fn end_lease(
        &mut self,
        ctx: &Ctx<'_>,
        ip: Ipv4Addr,
        db: &mut LeaseDb,
        now_ms: u64,
        state: LeaseState,
        until: u64,
    ) -> Decision {
        let owned = db
            .get(ip)
            .filter(|r| r.client == ctx.client.key && r.state == LeaseState::Bound);
        let Some(rec) = owned else {
            return self.ignore(Ignored::NotOwner);
        };
        let ended = merge::end_of(&rec, state, until);
        // `None` cannot happen (the ended form stands above the bound one
        // at the same stamp); nothing would have changed then anyway.
        if db.settle(ended, now_ms).is_err() {
            return self.ignore(Ignored::Storage);
        }
        self.refresh(ip, db);
        Decision::Done
    }

    fn inform(&mut self, ctx: &Ctx<'_>) -> Decision {
        let ip = ctx.req.ciaddr;
        if ip.is_unspecified() {
            return self.ignore(Ignored::Incomplete);
        }
        self.log(MessageType::Inform, ctx.arrival, Some(ip), ctx.req, "");
        self.stats.acks += 1;
        self.build(ctx, MessageType::Ack, ip, None, None, false)
    }

    /// Assembles an OFFER or ACK. `lease` is None for an INFORM answer.
    fn build(
        &mut self,
        ctx: &Ctx<'_>,
        kind: MessageType,
        ip: Ipv4Addr,
        lease: Option<Grant>,
        hostname: Option<&str>,
        rapid: bool,
    ) -> Decision {
        let cfg = Arc::clone(&self.cfg);
        let req = ctx.req;
        let tags = self.reply_tags(ctx, ip);
        let octx = Context {
            cfg: &cfg,
            req,
            net: ctx.net,
            tags: &tags,
            addr: ip,
            hostname,
        };
        let mut wanted = options::wanted(&octx);

        let mut opts = OptionList::default();
        opts.required(54, ctx.net.server.octets().to_vec());
        if let Some(grant) = lease {
            match grant.time {
                LeaseTime::Infinite => opts.required(51, u32::MAX.to_be_bytes().to_vec()),
                LeaseTime::Secs(s) => {
                    opts.required(51, s.to_be_bytes().to_vec());
                    // A configured T1/T2 meant for the uncapped lease may
                    // exceed the capped one: then the defaults follow the cap.
                    let fits = |v: &Vec<u8>| {
                        !grant.capped
                            || <[u8; 4]>::try_from(v.as_slice())
                                .is_ok_and(|b| u32::from_be_bytes(b) < s)
                    };
                    let t1 = wanted
                        .values
                        .remove(&OPT_T1)
                        .filter(fits)
                        .unwrap_or_else(|| (s / 2).to_be_bytes().to_vec());
                    let t2 = wanted
                        .values
                        .remove(&OPT_T2)
                        .filter(fits)
                        .unwrap_or_else(|| (s / 8 * 7).to_be_bytes().to_vec());
                    opts.required(OPT_T1, t1);
                    opts.required(OPT_T2, t2);
                }
            }
        }
        if rapid {
            opts.required(80, Vec::new());
        }
        if let Some(id) = &req.client_id {
            opts.required(61, id.clone());
        }
        if let Some(mask) = wanted.values.remove(&options::OPT_NETMASK) {
            opts.required(options::OPT_NETMASK, mask);
        }
        // The first optional one, so the last to go when space is short:
        // its length follows the client's name, which the client picks.
        if let (Some(f), Some(name)) = (&req.fqdn, hostname) {
            opts.optional(81, fqdn_reply(f.flags, name, cfg.domain_for(ip)));
        }
        let mut fixed = FixedFields {
            siaddr: ctx.net.server,
            // dnsmasq matches these before the range's tag joins the set.
            broadcast: cfg
                .dhcp_broadcast
                .iter()
                .any(|l| network::tags_match(l, &ctx.client.tags)),
            ..FixedFields::default()
        };
        if let Some(boot) = find_boot(&cfg.dhcp_boot, &tags) {
            if let Some(next) = boot.next_server {
                fixed.siaddr = next;
            }
            let asked = |code: u8| req.params.as_ref().is_some_and(|p| p.contains(&code));
            // Asked for as an option, it goes as one (zero-terminated, for
            // PXE ROMs that need it); otherwise in the header field.
            for (code, text, field) in [
                (OPT_SNAME, &boot.sname, &mut fixed.sname),
                (OPT_FILE, &boot.file, &mut fixed.file),
            ] {
                let Some(text) = text else { continue };
                if asked(code) {
                    wanted.values.remove(&code);
                    let mut v = text.as_bytes().to_vec();
                    v.push(0);
                    opts.optional(code, v);
                } else {
                    *field = text.as_bytes().to_vec();
                }
            }
        }
        match &req.params {
            Some(prl) => {
                for code in prl {
                    if let Some(v) = wanted.values.remove(code) {
                        opts.optional(*code, v);
                    }
                }
                for code in &wanted.forced {
                    if let Some(v) = wanted.values.remove(code) {
                        opts.optional(*code, v);
                    }
                }
            }
            None => {
                for (code, v) in std::mem::take(&mut wanted.values) {
                    opts.optional(code, v);
                }
            }
        }
        opts.tail = req.relay_info.clone().map(|r| (82, r));
        let ciaddr = if kind == MessageType::Ack {
            req.ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let yiaddr = if lease.is_some() {
            ip
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        if kind == MessageType::Offer {
            self.log(MessageType::Offer, ctx.arrival, Some(ip), req, "");
        }
        self.finish(
            ctx,
            Header {
                kind,
                ciaddr,
                yiaddr,
                fixed,
            },
            opts,
            kind == MessageType::Ack && lease.is_some(),
        )
    }

    fn finish(&self, ctx: &Ctx<'_>, header: Header, opts: OptionList, durable: bool) -> Decision {
        let kind = header.kind;
        let yiaddr = header.yiaddr;
        let forced = header.fixed.broadcast;
        let packet = reply::encode(ctx.req, header, opts);
        let to = reply::destination(ctx.req, kind, yiaddr, forced);
        tracing::debug!(target: "dhcp", "{} xid {:#010x}: {} bytes to {to:?}", type_name(kind), ctx.req.xid, packet.len());
        Decision::Reply(Reply {
            packet,
            to,
            from: ctx.net.server,
            ifindex: ctx.arrival.ifindex,
            kind,
            durable,
            commit: None,
            decided_ms: 0,
        })
    }
}

struct Ctx<'a> {
    req: &'a Request,
    arrival: &'a Arrival,
    net: &'a Network,
    client: &'a Client<'a>,
    /// What the failover state allows for this request.
    rules: Rules,
}

const OPT_SNAME: u8 = 66;
const OPT_FILE: u8 = 67;

/// dnsmasq's choice: the last `dhcp-boot` line whose tags all match, else
/// the last one without tags.
fn find_boot<'a>(boots: &'a [DhcpBoot], tags: &[String]) -> Option<&'a DhcpBoot> {
    boots
        .iter()
        .rev()
        .find(|b| !b.match_tags.is_empty() && network::tags_match(&b.match_tags, tags))
        .or_else(|| boots.iter().rev().find(|b| b.match_tags.is_empty()))
}

/// Until when (unix ms) a partner-share address with this record is too
/// recent for partner-down to hand out: its lease ended less than an MCLT
/// ago, or has not ended. None: no record, or it ended long enough ago.
fn recent_until(rec: Option<LeaseRecord>, mclt_ms: u64, now_ms: u64) -> Option<u64> {
    let rec = rec?;
    let end_ms = match rec.expires {
        Expiry::At(secs) => secs.saturating_mul(1000),
        // Never ends: wait an MCLT and look again.
        Expiry::Never => now_ms,
    };
    // A lease still running ends, at the earliest, now.
    let end_ms = if occupies(&rec) {
        end_ms.max(now_ms)
    } else {
        end_ms
    };
    let until = end_ms.saturating_add(mclt_ms);
    (until > now_ms).then_some(until)
}

/// The expiry a grant stores: the one it tells the client, or the expiry
/// of the client's current record on the address if that runs longer. A
/// renewal never shortens what the table says the client holds, because
/// the ACK may never reach it (lost on the LAN, or the process dies or the
/// failover gate drops the reply before it leaves) and the client then
/// keeps its earlier lease (simulation seed 3428 of
/// `failover_pair_under_pool_pressure`: a renewal apart, capped at the
/// MCLT, cut a 120 s lease to 30 s and the address went back to the pool
/// while the client held it). Nor does a grant after the client released
/// the address: the release kept its binding's expiry, which a failover
/// partner may still extend by an MCLT (`merge::ended_expiry`), and the
/// owner counts its wait from the record's expiry (seed 9459 of
/// `failover_pair_expired_clients_reclaim_their_addresses`).
fn held_until(current: Option<LeaseRecord>, told: Expiry) -> Expiry {
    match (current.map(|r| r.expires), told) {
        (Some(Expiry::Never), _) | (_, Expiry::Never) => Expiry::Never,
        (Some(Expiry::At(held)), Expiry::At(t)) => Expiry::At(held.max(t)),
        (None, told) => told,
    }
}
