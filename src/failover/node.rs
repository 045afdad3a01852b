//! The failover node, sans-I/O: one end of the primary/secondary pair.
//!
//! It owns the link sessions (handshake through [`twinmasq_proto::link`]),
//! the sync on (re)connect, the numbered stream of changes and their acks,
//! the timers (heartbeat, link timeout, reconnect backoff, automatic
//! partner-down) and the serve mode it hands the DHCP engine. Connection
//! events, bytes, the lease database and the time go in; [`Output`]s come
//! out for the shell (or the simulation) to carry out. No sockets, clock or
//! randomness inside: the caller passes the time and each session's nonce.
//!
//! Sync: both ends open with `SyncStart`, saying how far they got with the
//! other's changes. When both processes are still the ones that last synced
//! and each still keeps the own changes the other lacks, the sync resumes:
//! each side sends only those changes. Otherwise the secondary sends its
//! whole table in pages; the primary merges each page, and after the last
//! one sends back every record the secondary's table lacks or holds an
//! older version of. Then `SyncDone`. From then on both ends stream their
//! own changes as numbered updates; each end merges, makes durable, then
//! acks, naming the records of the update that did not stand (lost a
//! conflict, or refused). A reply that depends on a change leaves only
//! after the partner's ack, and never if the ack names the change lost
//! (see [`Output::AckedThrough`] and [`Output::Cancel`]).

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use twinmasq_proto::key::Key;
use twinmasq_proto::link::{
    Event, Hello, Link, Message, ResumePoint, Role, SyncStart, MAX_TERMS, PROTOCOL_VERSION,
};
use twinmasq_proto::{LeaseRecord, LeaseState, Stamp};

use crate::lease::{merge, Completeness, LeaseDb, Reject, Rejections};
use crate::share::{self, ServeMode};

use super::flush_watch::FlushWatch;
use super::log_limit::{self, LogLimit, Note};

pub type ConnId = u64;

/// Lease pages and updates are cut at about this many encoded bytes, well
/// inside the link's 1 MiB frame limit.
const PAGE_BYTES: usize = 256 << 10;
/// A connection has this long to prove the key (the link timeout, if that
/// is shorter). The handshake is one round trip and a few MACs, so a
/// second is ample on any network a pair runs over; anyone can open
/// connections, and each one that has not proved the key holds a place
/// the partner may need.
pub const HANDSHAKE_MS: u64 = 1_000;
/// Reconnect backoff of the secondary: first retry, and the ceiling. A
/// restarted primary syncs before it serves (see `Recovering`), so the
/// ceiling is most of the time it waits for its secondary: a connection
/// attempt a second to a dead primary costs nothing worth saving.
const BACKOFF_MIN_MS: u64 = 250;
const BACKOFF_MAX_MS: u64 = 1_000;
/// After the partner refused the link (a configuration or clock it will
/// not accept): that does not change in a moment.
const REFUSED_BACKOFF_MS: u64 = 4_000;
/// Own changes kept for the partner (sent and not known merged, or not
/// sent yet) beyond which they are dropped and left to the next full sync:
/// bounds memory while a sync stalls or the partner is away long.
const MAX_KEPT: usize = 100_000;
/// Updates sent and not yet acked before further changes wait in `unsent`.
/// The partner's cost is mostly per update (a wake-up, a sled batch, a
/// flush request, an ack), so while it works on one update the next ones
/// gather into a single, larger one. Two keep the link busy while an ack
/// is on its way back.
const SEND_WINDOW: usize = 2;
/// Refused partner records are reported at most once per this interval,
/// however many batches bring them (they are all counted).
const REJECT_LOG_INTERVAL_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub role: Role,
    pub key: Key,
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    /// Replaces `timeout_ms` while a sync is under way: a partner reading
    /// or merging a whole table sends nothing meanwhile.
    pub sync_timeout_ms: u64,
    pub max_skew_ms: u64,
    pub mclt_ms: u64,
    pub auto_partner_down_ms: Option<u64>,
    /// Hash of the DHCP ranges and split: both ends must agree.
    pub ranges_fingerprint: [u8; 32],
    /// The same, readable, for the message when they do not agree.
    pub ranges_text: String,
    /// The DHCP ranges (first, last) and the split, for the owner of an
    /// address's share when a merge meets a conflict.
    pub shares: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub split_percent: u8,
}

/// What the node asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Secondary: open a connection to the primary, then call
    /// [`Node::connected`] or [`Node::connect_failed`].
    Connect,
    Write(ConnId, Vec<u8>),
    /// Close the connection; the node has already forgotten it.
    Close(ConnId),
    /// The DHCP engine's mode changes.
    Mode(ServeMode),
    /// The partner has persisted, and kept, every own change with a stamp
    /// up to this, except those a [`Output::Cancel`] before it named:
    /// replies waiting on those changes may leave.
    AckedThrough(Stamp),
    /// Replies waiting on changes with these stamps must never leave: a
    /// newer record from the partner replaced the change, or the partner's
    /// ack said the change did not stand there. Always comes before the
    /// `AckedThrough` that covers the stamps.
    Cancel(Vec<Stamp>),
    /// Records for these addresses changed by merge: the engine refreshes.
    Changed(Vec<Ipv4Addr>),
    /// Make the database durable, then call [`Node::persisted`] with this.
    Flush(u64),
}

/// Does the engine's reply wait for the partner's ack in this mode?
pub fn waits_for_partner(mode: ServeMode) -> bool {
    matches!(mode, ServeMode::Linked | ServeMode::Passive)
}

#[derive(Debug)]
enum Phase {
    Handshake,
    /// Our `SyncStart` is sent; waiting for the partner's.
    AwaitSyncStart,
    /// Secondary: our table (or changes) sent; merging the primary's pages.
    AwaitPrimaryTable {
        resumed: bool,
    },
    /// Primary: merging the secondary's pages. In a full sync, noting what
    /// it holds (whole records: a settled lease keeps its stamp, so stamps
    /// alone do not tell two versions apart).
    ReceivingTable {
        theirs: HashMap<Ipv4Addr, LeaseRecord>,
        resumed: bool,
    },
    /// Primary: `SyncDone` sent; waiting for the secondary to have merged
    /// what came before it. `peer_through`: the secondary's update number
    /// its table covered, noted as the resume point only once `Synced`
    /// confirms the sync (a sync broken before then, when the secondary may
    /// not have the primary's table, must not be resumed from).
    AwaitSynced {
        resumed: bool,
        peer_through: u64,
    },
    Streaming,
}

impl Phase {
    fn is_sync(&self) -> bool {
        !matches!(self, Phase::Handshake | Phase::Streaming)
    }
}

/// How far this node got with the partner's changes, for a resume.
#[derive(Debug, Clone, Copy)]
struct PeerPoint {
    incarnation: u64,
    applied_through: u64,
}

struct Session {
    link: Link,
    phase: Phase,
    /// The handshake deadline counts from here.
    opened_ms: u64,
    last_rx_ms: u64,
    last_tx_ms: u64,
    peer_node: Option<u32>,
    /// The clock skew the peer's hello claims. A hello proves nothing (an
    /// old one replays), so it is reported only once the proof verifies.
    peer_skew_ms: Option<i64>,
    /// Why this session must end once the handshake lets us say so.
    refusal: Option<String>,
    /// The peer's hello differs in what both ends must compute alike
    /// (ranges, split, MCLT): both ends' values, readable. `None` when
    /// they agree.
    mismatch: Option<String>,
    /// The `SyncStart` we sent, and the partner's incarnation from its own.
    own_start: Option<SyncStart>,
    peer_incarnation: Option<u64>,
    /// The number our table (or resumed changes) covered, once sent.
    sent_through: u64,
    /// How far the partner got with our updates, from its `SyncStart`.
    peer_applied: u64,
}

/// A snapshot for `twinmasq status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub role: Role,
    pub state: &'static str,
    pub linked: bool,
    pub partner_node: Option<u32>,
    pub last_sync_ms: Option<u64>,
    pub unacked: u64,
    pub conflicts: u64,
    pub clock_skew_ms: Option<i64>,
    pub partner_down_since_ms: Option<u64>,
    pub mode: ServeMode,
    pub full_syncs: u64,
    pub resumed_syncs: u64,
    /// The partner's records refused by the admission rules, by reason.
    pub rejected: Rejections,
    /// The link is refused because the two configurations differ: both
    /// sides' values. Cleared by a handshake that finds them equal.
    pub mismatch: Option<String>,
    /// Recovering after the start: new addresses from this time on (unix
    /// ms) at the latest, sooner once a sync completes.
    pub recovering_until_ms: Option<u64>,
}

pub struct Node {
    cfg: NodeConfig,
    node_id: u32,
    sessions: HashMap<ConnId, Session>,
    /// The session that is, or is becoming, the link to the partner.
    partner: Option<ConnId>,
    out: VecDeque<Output>,
    mode: ServeMode,
    /// Random per process start (see [`SyncStart::incarnation`]).
    incarnation: u64,
    /// Own changes not yet sent in an update.
    unsent: Vec<LeaseRecord>,
    /// Numbers own updates for the whole life of the process, across
    /// sessions, so a resumed session can say where it stands.
    next_update: u64,
    /// Updates sent in this session and not yet acked: (seq, greatest
    /// stamp, sent at, records).
    in_flight: VecDeque<(u64, Stamp, u64, usize)>,
    /// Own changes sent and not yet known to be merged by the partner, by
    /// update number (or the number a resumed table was given), kept
    /// across a broken link so a resumed session sends them again.
    kept: VecDeque<(u64, Vec<LeaseRecord>)>,
    /// False once own changes were dropped (too many kept): the next sync
    /// must be a full one.
    kept_whole: bool,
    /// How far we got with the partner's changes, once a sync completed.
    peer: Option<PeerPoint>,
    full_syncs: u64,
    resumed_syncs: u64,
    acked_through: Stamp,
    /// Received updates waiting for their flush: (token, session, seq,
    /// the stamps of its records that did not stand here).
    pending_acks: VecDeque<(u64, ConnId, u64, Vec<Stamp>)>,
    /// Whether the lease database still finishes flushes (a hung disk).
    flushes: FlushWatch,
    next_token: u64,
    connecting: bool,
    next_connect_ms: u64,
    backoff_ms: u64,
    unlinked_since_ms: Option<u64>,
    partner_down_since_ms: Option<u64>,
    last_partner_node: Option<u32>,
    last_sync_ms: Option<u64>,
    skew_ms: Option<i64>,
    conflicts: u64,
    /// Warnings about connections that failed the handshake: anyone who
    /// reaches the port can cause them.
    strangers: LogLimit,
    /// The partner's records refused so far, and their log's pacing.
    rejected: Rejections,
    /// Paces the warning about them (counted in records).
    reject_log: LogLimit,
    /// The lease database's clock resets seen (see `follow_clock_resets`).
    clock_resets: u64,
    /// The last authenticated handshake found the configurations differ
    /// (both sides' values): no new allocations until one finds them
    /// equal, or the operator declares the partner down.
    mismatch: Option<String>,
    /// Started and not yet synced (ISC's RECOVER): no new allocations
    /// until a sync completes, the partner is declared down, or this time
    /// passes (an MCLT after the start; ISC's RECOVER-WAIT without the
    /// partner). Set at every start, so restarts only make the wait
    /// longer, never shorter.
    recover_until_ms: Option<u64>,
    /// What the database should hold about this node's completeness;
    /// stored by `store_completeness` whenever it differs.
    completeness: Completeness,
    /// Storing the completeness failed; reported once until it succeeds.
    completeness_failed: bool,
}

/// How far a connection got in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Nothing verified from the peer yet.
    Waiting,
    /// Its hello verified under the key; its proof is still to come. (A
    /// hello can be a replay of an old one: not proof of anything.)
    HelloVerified,
    /// It proved the key.
    Authenticated,
}

/// The peer's clock minus ours. The peer's clock is a u64 from the wire:
/// any value gives an answer, saturated at the ends of i64.
pub fn skew_between(peer_ms: u64, now_ms: u64) -> i64 {
    let d = i128::from(peer_ms) - i128::from(now_ms);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// An MCLT as the configuration would say it: whole seconds as `N s`.
fn duration_text(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

fn record_size(r: &LeaseRecord) -> usize {
    // An upper estimate of the encoded size: fixed fields plus the buffers.
    64 + r.client.0.len()
        + r.hwaddr.len()
        + r.client_id.as_ref().map_or(0, Vec::len)
        + r.hostname.as_ref().map_or(0, String::len)
}

/// Cuts records into pages of at most about [`PAGE_BYTES`].
fn paginate(records: Vec<LeaseRecord>) -> Vec<Vec<LeaseRecord>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut bytes = 0;
    for r in records {
        let size = record_size(&r);
        if bytes + size > PAGE_BYTES && !page.is_empty() {
            pages.push(std::mem::take(&mut page));
            bytes = 0;
        }
        bytes += size;
        page.push(r);
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}

impl Node {
    /// `incarnation` must be random and new at every start of the process
    /// (or of whatever holds the lease database open). Starts recovering,
    /// as [`Node::open`] over a database with nothing stored about its
    /// completeness.
    pub fn new(cfg: NodeConfig, node_id: u32, incarnation: u64, now_ms: u64) -> Node {
        Node::start(cfg, node_id, Completeness::default(), incarnation, now_ms)
    }

    /// A node over `db`, at the start of the process: recovering (no new
    /// addresses until a sync with the partner completes, or an MCLT
    /// passes without one), unless the database says this node had
    /// declared its partner down, which the partner's absence does not
    /// undo: then it keeps serving in partner-down.
    pub fn open(cfg: NodeConfig, db: &LeaseDb, incarnation: u64, now_ms: u64) -> Node {
        Node::start(cfg, db.node_id(), db.completeness(), incarnation, now_ms)
    }

    fn start(
        cfg: NodeConfig,
        node_id: u32,
        completeness: Completeness,
        incarnation: u64,
        now_ms: u64,
    ) -> Node {
        let down = completeness.partner_down_since_ms;
        let recover_until_ms = down.is_none().then(|| now_ms.saturating_add(cfg.mclt_ms));
        let mut node = Node {
            cfg,
            node_id,
            sessions: HashMap::new(),
            partner: None,
            out: VecDeque::new(),
            mode: ServeMode::Unlinked,
            incarnation,
            unsent: Vec::new(),
            next_update: 1,
            in_flight: VecDeque::new(),
            kept: VecDeque::new(),
            kept_whole: true,
            peer: None,
            full_syncs: 0,
            resumed_syncs: 0,
            acked_through: Stamp::default(),
            pending_acks: VecDeque::new(),
            flushes: FlushWatch::default(),
            next_token: 1,
            connecting: false,
            next_connect_ms: now_ms,
            backoff_ms: BACKOFF_MIN_MS,
            unlinked_since_ms: Some(now_ms),
            partner_down_since_ms: None,
            last_partner_node: None,
            last_sync_ms: None,
            skew_ms: None,
            conflicts: 0,
            strangers: LogLimit::new(log_limit::INTERVAL_MS),
            rejected: Rejections::default(),
            reject_log: LogLimit::new(REJECT_LOG_INTERVAL_MS),
            clock_resets: 0,
            mismatch: None,
            recover_until_ms,
            completeness,
            completeness_failed: false,
        };
        node.partner_down_since_ms = down;
        node.last_sync_ms = completeness.last_sync.map(|(_, at)| at);
        let last = completeness.last_sync.map_or_else(
            || "never synced with a partner".to_string(),
            |(partner, at)| format!("last synced with node {partner} at unix ms {at}"),
        );
        match down {
            Some(since) => tracing::warn!(
                "failover: started with the partner declared down (since unix ms {since}): serving at once, as before the restart ({last})"
            ),
            None => tracing::warn!(
                "failover: recovering, serving in {} s: no new addresses until a sync with the partner completes, or failover-mclt passes without one; leases held are renewed ({last})",
                node.cfg.mclt_ms.div_ceil(1000)
            ),
        }
        node.update_mode();
        if node.out.is_empty() {
            node.out.push_back(Output::Mode(node.mode));
        }
        node
    }

    pub fn role(&self) -> Role {
        self.cfg.role
    }

    pub fn mode(&self) -> ServeMode {
        self.mode
    }

    /// Next thing for the caller to do.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// How far connection `conn` got in the handshake; None if unknown.
    pub fn handshake(&self, conn: ConnId) -> Option<Handshake> {
        let s = self.sessions.get(&conn)?;
        Some(if s.link.is_established() {
            Handshake::Authenticated
        } else if s.link.peer().is_some() {
            Handshake::HelloVerified
        } else {
            Handshake::Waiting
        })
    }

    fn in_sync(&self) -> bool {
        self.partner
            .and_then(|c| self.sessions.get(&c))
            .is_some_and(|s| matches!(s.phase, Phase::Streaming))
    }

    pub fn status(&self) -> NodeStatus {
        let phase = self
            .partner
            .and_then(|c| self.sessions.get(&c))
            .map(|s| &s.phase);
        let state = match (self.cfg.role, phase) {
            (_, _) if self.mismatch.is_some() && !self.in_sync() => "config-mismatch",
            (_, _) if self.partner_down_since_ms.is_some() && !self.in_sync() => "partner-down",
            (_, _) if self.recover_until_ms.is_some() && !self.in_sync() => "recovering",
            (Role::Primary, Some(Phase::Streaming)) => "linked",
            (Role::Secondary, Some(Phase::Streaming)) => "passive",
            (
                _,
                Some(
                    Phase::AwaitSyncStart
                    | Phase::AwaitPrimaryTable { .. }
                    | Phase::ReceivingTable { .. }
                    | Phase::AwaitSynced { .. },
                ),
            ) => "syncing",
            (Role::Primary, _) => "unlinked",
            (Role::Secondary, Some(Phase::Handshake)) => "connecting",
            (Role::Secondary, None) => "active",
        };
        NodeStatus {
            role: self.cfg.role,
            state,
            linked: self.in_sync(),
            partner_node: self.last_partner_node,
            last_sync_ms: self.last_sync_ms,
            unacked: (self.in_flight.iter().map(|f| f.3).sum::<usize>() + self.unsent.len()) as u64,
            conflicts: self.conflicts,
            clock_skew_ms: self.skew_ms,
            partner_down_since_ms: self.partner_down_since_ms,
            mode: self.mode,
            full_syncs: self.full_syncs,
            resumed_syncs: self.resumed_syncs,
            rejected: self.rejected,
            mismatch: self.mismatch.clone(),
            recovering_until_ms: self.recover_until_ms.filter(|_| !self.in_sync()),
        }
    }

    /// The operator (or the automatic timer) says the partner is gone for
    /// good: after an MCLT the partner's share may be used. Refused while
    /// the partner is in sync, since then it plainly is not down.
    pub fn declare_partner_down(&mut self, now_ms: u64) -> Result<u64, String> {
        if self.in_sync() {
            return Err("the partner is linked and in sync: it is not down".into());
        }
        if let Some(m) = self.mismatch.take() {
            // The operator says the partner is gone: nobody is left to
            // overlap with.
            tracing::warn!("failover: partner declared down; no longer holding back for the configuration mismatch ({m})");
        }
        if self.recover_until_ms.take().is_some() {
            tracing::warn!("failover: partner declared down: recovery ends, handing out addresses from the own share");
        }
        let since = *self.partner_down_since_ms.get_or_insert(now_ms);
        // Kept across restarts: the partner stays down until it syncs
        // again, whatever happens to this process meanwhile.
        self.completeness.partner_down_since_ms = Some(since);
        tracing::warn!(
            "failover: partner declared down; its share of the ranges is used from {} ms on",
            self.cfg.mclt_ms
        );
        self.update_mode();
        Ok(since + self.cfg.mclt_ms)
    }

    fn update_mode(&mut self) {
        let mode = if self.in_sync() {
            match self.cfg.role {
                Role::Primary => ServeMode::Linked,
                Role::Secondary => ServeMode::Passive,
            }
        } else if self.mismatch.is_some() {
            ServeMode::ConfigMismatch
        } else if let Some(since) = self.partner_down_since_ms {
            ServeMode::PartnerDown {
                partner_share_from_ms: since + self.cfg.mclt_ms,
            }
        } else if let Some(until) = self.recover_until_ms {
            ServeMode::Recovering {
                serve_from_ms: until,
            }
        } else {
            ServeMode::Unlinked
        };
        if mode != self.mode {
            tracing::info!("failover: serve mode {:?} -> {mode:?}", self.mode);
            self.mode = mode;
            self.out.push_back(Output::Mode(mode));
        }
    }

    /// A connection is up (accepted by the primary, or the secondary's
    /// [`Output::Connect`] succeeded). `nonce` must be fresh and random.
    pub fn connected(&mut self, conn: ConnId, nonce: [u8; 32], db: &LeaseDb, now_ms: u64) {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: self.cfg.role,
            node: db.node_id(),
            nonce,
            ranges: self.cfg.ranges_fingerprint,
            wall_ms: now_ms,
            mclt_ms: self.cfg.mclt_ms,
            terms: truncated(&self.cfg.ranges_text, MAX_TERMS),
        };
        let session = Session {
            link: Link::new(self.cfg.key.clone(), hello),
            phase: Phase::Handshake,
            opened_ms: now_ms,
            last_rx_ms: now_ms,
            last_tx_ms: now_ms,
            peer_node: None,
            peer_skew_ms: None,
            refusal: None,
            mismatch: None,
            own_start: None,
            peer_incarnation: None,
            sent_through: 0,
            peer_applied: 0,
        };
        self.sessions.insert(conn, session);
        if self.cfg.role == Role::Secondary {
            self.connecting = false;
            if let Some(old) = self.partner.replace(conn) {
                self.close(old, now_ms, "replaced by a new connection");
            }
        }
        self.flush_link(conn, now_ms);
    }

    /// The secondary's connection attempt failed.
    pub fn connect_failed(&mut self, now_ms: u64) {
        self.connecting = false;
        self.schedule_reconnect(now_ms);
    }

    fn schedule_reconnect(&mut self, now_ms: u64) {
        self.next_connect_ms = now_ms + self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
    }

    /// The connection ended from the other side (or failed).
    pub fn closed(&mut self, conn: ConnId, now_ms: u64) {
        if self.sessions.contains_key(&conn) {
            if Some(conn) == self.partner {
                tracing::warn!("failover: the partner closed the link");
            }
            self.forget(conn, now_ms);
        }
    }

    fn close(&mut self, conn: ConnId, now_ms: u64, why: &str) {
        if let Some(s) = self.sessions.get(&conn) {
            if Some(conn) == self.partner {
                tracing::warn!("failover: link to the partner ends: {why}");
            } else if s.link.is_established() {
                tracing::info!("failover: connection {conn} ends: {why}");
            } else {
                // Anyone can open these; the warning, if any, is
                // `refuse_stranger`'s, rate-limited.
                tracing::trace!("failover: connection {conn} ends: {why}");
            }
            self.out.push_back(Output::Close(conn));
            self.forget(conn, now_ms);
        }
    }

    /// Ends a connection that did not get through the handshake. On the
    /// primary anyone who reaches the port can cause this, as often as
    /// they like, so the warning is one line a minute with a count (the
    /// first in full: a partner with the wrong key shows at once).
    fn refuse_stranger(&mut self, conn: ConnId, now_ms: u64, why: &str) {
        if Some(conn) == self.partner {
            self.close(conn, now_ms, why);
            return;
        }
        match self.strangers.note(now_ms) {
            Note::First => tracing::warn!(
                "failover: connection {conn} refused: {why} (more of these are counted, one line a minute)"
            ),
            Note::Summary { count, over_ms } => Self::strangers_summary(count, over_ms),
            Note::Counted => {}
        }
        self.close(conn, now_ms, why);
    }

    fn strangers_summary(count: u64, over_ms: u64) {
        tracing::warn!(
            "failover: {count} unauthenticated link connections failed the handshake in the last {} s (wrong key, junk, or no proof of the key within {HANDSHAKE_MS} ms)",
            over_ms.div_ceil(1000)
        );
    }

    fn forget(&mut self, conn: ConnId, now_ms: u64) {
        self.sessions.remove(&conn);
        self.pending_acks.retain(|(_, c, _, _)| *c != conn);
        if self.partner == Some(conn) {
            self.partner = None;
            self.in_flight.clear();
            if self.peer.is_none() {
                // Nothing to resume: the next sync is a full one.
                self.unsent.clear();
                self.kept.clear();
            }
            self.unlinked_since_ms.get_or_insert(now_ms);
            if self.cfg.role == Role::Secondary {
                self.schedule_reconnect(now_ms);
            }
            self.update_mode();
        }
    }

    /// Moves the database's own changes into `unsent`: while a session
    /// exists, or while unlinked after a sync, for a resume. Otherwise they
    /// are dropped: the next sync sends the whole table.
    fn absorb_outbox(&mut self, db: &mut LeaseDb, now_ms: u64) {
        self.follow_clock_resets(db, now_ms);
        let changes = db.take_outbox();
        if changes.is_empty()
            || (self.partner.is_none() && (self.peer.is_none() || !self.kept_whole))
        {
            return;
        }
        self.unsent.extend(changes);
        let kept: usize = self.kept.iter().map(|(_, r)| r.len()).sum();
        if self.unsent.len() + kept > MAX_KEPT {
            tracing::warn!(
                "failover: over {MAX_KEPT} changes kept for the partner; the next sync sends the whole table"
            );
            self.unsent.clear();
            self.kept.clear();
            self.kept_whole = false;
            if let Some(p) = self.partner {
                self.close(p, now_ms, "too many changes waiting for the partner");
            }
        }
    }

    /// The database set its clock back (this node's wall clock stepped
    /// back by more than the skew bound): stamps issued from now on may
    /// stand below ones already sent, acked or kept, and what relies on
    /// them rising starts over. The partner's ack of an older, higher stamp
    /// must not release a reply waiting on a new, lower one; the kept
    /// changes carry the stamps the database has since replaced. So: no
    /// acks carried over, nothing kept, no resume (the next sync is a full
    /// one, with the new stamps), and the link starts again.
    fn follow_clock_resets(&mut self, db: &LeaseDb, now_ms: u64) {
        let resets = db.clock_resets();
        if resets == self.clock_resets {
            return;
        }
        self.clock_resets = resets;
        self.acked_through = Stamp::default();
        self.peer = None;
        self.unsent.clear();
        self.kept.clear();
        self.kept_whole = true;
        if let Some(p) = self.partner {
            self.close(
                p,
                now_ms,
                "this node's clock stepped back beyond failover-max-skew and its stamps start over: resyncing the whole table",
            );
        }
    }

    /// Where this side stands for a resume, if it can offer one.
    fn resume_point(&self) -> Option<ResumePoint> {
        let peer = self.peer.filter(|_| self.kept_whole)?;
        Some(ResumePoint {
            peer_incarnation: peer.incarnation,
            applied_through: peer.applied_through,
            kept_from: self.kept.front().map_or(self.next_update, |(seq, _)| *seq),
        })
    }

    /// Sends the own changes made since the last call. Call after every
    /// batch of DHCP requests, so replies wait no longer than needed.
    pub fn pump(&mut self, db: &mut LeaseDb, now_ms: u64) {
        self.absorb_outbox(db, now_ms);
        let Some(conn) = self.partner.filter(|_| self.in_sync()) else {
            return;
        };
        if self.unsent.is_empty() || self.in_flight.len() >= SEND_WINDOW {
            return;
        }
        let changes = std::mem::take(&mut self.unsent);
        let mut updates = Vec::new();
        for page in paginate(changes) {
            let seq = self.next_update;
            self.next_update += 1;
            // Kept before anything is sent: should the link break midway,
            // a resumed session sends them again.
            self.kept.push_back((seq, page.clone()));
            updates.push((seq, page));
        }
        for (seq, page) in updates {
            let top = page.iter().map(|r| r.stamp).max().unwrap_or_default();
            let count = page.len();
            if !self.send(conn, &Message::Update { seq, records: page }, now_ms) {
                return;
            }
            self.in_flight.push_back((seq, top, now_ms, count));
        }
    }

    /// Timers: reconnects, heartbeats, timeouts, automatic partner-down.
    pub fn tick(&mut self, db: &mut LeaseDb, now_ms: u64) {
        // A clock that stepped back is noticed even with nothing to stamp.
        // Failing (an unwritable database) it is tried again by the next
        // operation; the database reports the fault itself.
        if let Err(e) = db.keep_clock_bounded(now_ms) {
            tracing::debug!("failover: cannot set the lease clock back yet: {e}");
        }
        self.pump(db, now_ms);
        if let Some((count, over_ms)) = self.strangers.flush(now_ms) {
            Self::strangers_summary(count, over_ms);
        }
        if let Some((count, over_ms)) = self.reject_log.flush(now_ms) {
            Self::rejections_summary(count, over_ms);
        }
        self.watch_flushes(db, now_ms);
        if self.cfg.role == Role::Secondary
            && self.partner.is_none()
            && !self.connecting
            && now_ms >= self.next_connect_ms
            && self.flushes.hung_since().is_none()
        {
            self.connecting = true;
            self.out.push_back(Output::Connect);
        }
        let timeout = self.cfg.timeout_ms;
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            let Some(s) = self.sessions.get(&conn) else {
                continue;
            };
            let silent = now_ms.saturating_sub(s.last_rx_ms);
            let established = s.link.is_established();
            // A partner reading or merging a whole table is busy, not gone.
            let limit = if s.phase.is_sync() {
                self.cfg.sync_timeout_ms.max(timeout)
            } else {
                timeout
            };
            let handshake_limit = timeout.min(HANDSHAKE_MS);
            if !established && now_ms.saturating_sub(s.opened_ms) > handshake_limit {
                self.refuse_stranger(
                    conn,
                    now_ms,
                    &format!("handshake did not finish within {handshake_limit} ms"),
                );
            } else if silent > limit {
                self.close(conn, now_ms, &format!("nothing heard for {silent} ms"));
            } else if established && now_ms.saturating_sub(s.last_tx_ms) >= self.cfg.heartbeat_ms {
                self.send(conn, &Message::Heartbeat { wall_ms: now_ms }, now_ms);
            }
        }
        if let (Some(conn), Some(&(seq, _, sent, _))) = (self.partner, self.in_flight.front()) {
            if now_ms.saturating_sub(sent) > timeout {
                self.close(
                    conn,
                    now_ms,
                    &format!("update {seq} not acked within {timeout} ms"),
                );
            }
        }
        if self.recover_until_ms.is_some_and(|until| now_ms >= until) {
            self.recover_until_ms = None;
            tracing::warn!(
                "failover: recovery: no sync with the partner within failover-mclt ({}): handing out addresses from the own share",
                duration_text(self.cfg.mclt_ms)
            );
            self.update_mode();
        }
        // A partner that answers with another configuration is not down.
        if let (Some(after), Some(since), None, None) = (
            self.cfg.auto_partner_down_ms,
            self.unlinked_since_ms,
            self.partner_down_since_ms,
            &self.mismatch,
        ) {
            if now_ms.saturating_sub(since) >= after {
                tracing::warn!("failover: partner unlinked for {after} ms: declaring it down");
                let _ = self.declare_partner_down(now_ms);
            }
        }
        self.store_completeness(db);
    }

    /// Stores what changed about this node's completeness, and asks for
    /// a flush to make it durable. A failed write is tried again at the
    /// next tick; meanwhile the database keeps the older state, which
    /// only makes a restart wait longer (or, for an ended partner-down,
    /// serve as it did before the sync: see `sync_complete`).
    fn store_completeness(&mut self, db: &mut LeaseDb) {
        if db.completeness() == self.completeness {
            return;
        }
        match db.set_completeness(self.completeness) {
            Ok(()) => {
                self.completeness_failed = false;
                let token = self.next_token;
                self.next_token += 1;
                self.out.push_back(Output::Flush(token));
            }
            Err(e) => {
                if !std::mem::replace(&mut self.completeness_failed, true) {
                    tracing::error!(
                        "failover: cannot store the sync and partner-down state (a restart would not know it): {e}"
                    );
                }
            }
        }
    }

    /// A hung disk (see [`FlushWatch`]): probes, and the end of the link
    /// when a flush has not finished within the link timeout. The partner
    /// then serves alone; this node, its flushes hung, answers no one
    /// anyway (its replies wait on the same flushes).
    fn watch_flushes(&mut self, db: &LeaseDb, now_ms: u64) {
        if self
            .flushes
            .wants_probe(self.in_sync(), self.cfg.heartbeat_ms, now_ms)
        {
            let token = self.next_token;
            self.next_token += 1;
            self.flushes.probe_asked(token, now_ms);
            self.out.push_back(Output::Flush(token));
        }
        let Some(waited) = self.flushes.check(self.cfg.timeout_ms, now_ms) else {
            return;
        };
        tracing::error!(
            "failover: the lease database {} has not finished a flush for {waited} ms (hung or failing disk?): this node can make neither the partner's changes nor its own durable; ending the link so the partner serves alone, and not linking again until a flush finishes",
            db.path().display()
        );
        if let Some(p) = self.partner {
            self.close(
                p,
                now_ms,
                &format!("the lease database has not finished a flush for {waited} ms"),
            );
        }
    }

    /// Why this node must not link while its flushes hang.
    fn hung_refusal(&self, now_ms: u64) -> Option<String> {
        self.flushes.hung_since().map(|since| {
            format!(
                "the refusing node's lease database has not finished a flush for {} ms (hung or failing disk): it links again once one finishes",
                now_ms.saturating_sub(since)
            )
        })
    }

    /// The flush for `token` (and every earlier one) is done: ack the
    /// updates it covered.
    pub fn persisted(&mut self, token: u64, now_ms: u64) {
        if let Some(hung_ms) = self.flushes.persisted(token, self.cfg.timeout_ms, now_ms) {
            tracing::warn!(
                "failover: the lease database finishes flushes again (after {hung_ms} ms): the link may resume"
            );
        }
        while let Some(&(t, conn, seq, _)) = self.pending_acks.front() {
            if t > token {
                break;
            }
            let lost = self
                .pending_acks
                .pop_front()
                .map(|(_, _, _, lost)| lost)
                .unwrap_or_default();
            if self.sessions.contains_key(&conn) {
                self.send(conn, &Message::Ack { seq, lost }, now_ms);
            }
        }
    }

    /// Queues a message; false (and the session closed) if it cannot go.
    fn send(&mut self, conn: ConnId, msg: &Message, now_ms: u64) -> bool {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return false;
        };
        if let Err(e) = s.link.send(msg) {
            self.close(conn, now_ms, &format!("cannot send: {e}"));
            return false;
        }
        self.flush_link(conn, now_ms);
        true
    }

    fn flush_link(&mut self, conn: ConnId, now_ms: u64) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            let bytes = s.link.take_output();
            if !bytes.is_empty() {
                s.last_tx_ms = now_ms;
                self.out.push_back(Output::Write(conn, bytes));
            }
        }
    }

    /// The caller could not listen until `now_ms` (a long sync page, a
    /// whole table to send back): silence from the partner until then is
    /// ours, not its (what it sent meanwhile waits in the socket), so the
    /// link timeout counts from now. A dead partner is noticed that much
    /// later, at most.
    pub fn was_busy(&mut self, now_ms: u64) {
        for s in self.sessions.values_mut() {
            s.last_rx_ms = s.last_rx_ms.max(now_ms);
            if !s.link.is_established() {
                s.opened_ms = s.opened_ms.max(now_ms);
            }
        }
    }

    /// Bytes arrived on a connection.
    pub fn received(&mut self, conn: ConnId, bytes: &[u8], db: &mut LeaseDb, now_ms: u64) {
        self.absorb_outbox(db, now_ms);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.last_rx_ms = now_ms;
        let events = match s.link.receive(bytes) {
            Ok(evs) => evs,
            Err(e) => {
                // Nothing after a bad frame is acted on; the database is
                // untouched by it.
                self.flush_link(conn, now_ms);
                // A wrong key, a stranger or junk on the port: the
                // operator should see it even at the default level, but
                // once a minute.
                self.refuse_stranger(conn, now_ms, &format!("link fault: {e}"));
                return;
            }
        };
        for ev in events {
            if !self.sessions.contains_key(&conn) {
                break;
            }
            self.on_event(conn, ev, db, now_ms);
        }
        // A long sync keeps this side busy merging pages without a tick;
        // the partner must still hear from it within its timeout.
        let due = self.sessions.get(&conn).is_some_and(|s| {
            s.link.is_established() && now_ms.saturating_sub(s.last_tx_ms) >= self.cfg.heartbeat_ms
        });
        if due {
            self.send(conn, &Message::Heartbeat { wall_ms: now_ms }, now_ms);
        }
        self.flush_link(conn, now_ms);
        self.store_completeness(db);
    }

    fn on_event(&mut self, conn: ConnId, ev: Event, db: &mut LeaseDb, now_ms: u64) {
        match ev {
            Event::PeerHello(h) => self.on_hello(conn, &h, now_ms),
            Event::Established => self.on_established(conn, now_ms),
            Event::Message(m) => self.on_message(conn, m, db, now_ms),
        }
    }

    fn on_hello(&mut self, conn: ConnId, h: &Hello, now_ms: u64) {
        let skew = skew_between(h.wall_ms, now_ms);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.peer_node = Some(h.node);
        s.peer_skew_ms = Some(skew);
        if h.ranges != self.cfg.ranges_fingerprint || h.mclt_ms != self.cfg.mclt_ms {
            // The peer's text is a key holder's, but still shown only as
            // printable characters, and bounded.
            let theirs: String = truncated(&h.terms, MAX_TERMS)
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            s.mismatch = Some(format!(
                "this node has: {}, failover-mclt {}; the partner has: {theirs}, failover-mclt {}",
                self.cfg.ranges_text,
                duration_text(self.cfg.mclt_ms),
                duration_text(h.mclt_ms)
            ));
        }
        if skew.unsigned_abs() > self.cfg.max_skew_ms {
            s.refusal = Some(format!(
                "clock skew of {skew} ms between the nodes exceeds the {} ms allowed (failover-max-skew): synchronise the clocks",
                self.cfg.max_skew_ms
            ));
        } else if let Some(m) = &s.mismatch {
            s.refusal = Some(format!(
                "DHCP ranges, failover-split or failover-mclt differ between the nodes (no new addresses are handed out until they agree); {m}"
            ));
        }
    }

    fn on_established(&mut self, conn: ConnId, now_ms: u64) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let (peer, skew) = (s.peer_node, s.peer_skew_ms);
        let (mismatch, refusal) = (s.mismatch.clone(), s.refusal.clone());
        let refusal = refusal.or_else(|| self.hung_refusal(now_ms));
        // The hello is the peer's own now (its proof covers the hello's
        // nonce): what it says of its configuration counts.
        if self.partner.is_none_or(|p| p == conn) {
            self.note_mismatch(mismatch);
        }
        if let Some(reason) = refusal {
            // A key holder, so its clock is worth showing (it may be why
            // it is refused); not over a linked partner's, though.
            if self.partner.is_none_or(|p| p == conn) && skew.is_some() {
                self.skew_ms = skew;
            }
            tracing::error!("failover: refusing the link: {reason}");
            self.send(conn, &Message::Error { reason }, now_ms);
            self.close(conn, now_ms, "refused");
            return;
        }
        if self.cfg.role == Role::Primary {
            if let Some(other) = self.partner.filter(|o| *o != conn) {
                let other_node = self.sessions.get(&other).and_then(|s| s.peer_node);
                if other_node != peer {
                    let reason = format!(
                        "this primary already has a secondary (node {}); refusing node {} (one secondary per primary)",
                        other_node.map_or("?".into(), |n| n.to_string()),
                        peer.map_or("?".into(), |n| n.to_string()),
                    );
                    tracing::error!("failover: {reason}");
                    self.send(conn, &Message::Error { reason }, now_ms);
                    self.close(conn, now_ms, "second secondary refused");
                    return;
                }
                // The same secondary again: its old connection is stale.
                self.close(other, now_ms, "the secondary reconnected");
            }
            self.partner = Some(conn);
        }
        self.last_partner_node = peer;
        if skew.is_some() {
            self.skew_ms = skew;
        }
        let start = SyncStart {
            incarnation: self.incarnation,
            resume: self.resume_point(),
        };
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.phase = Phase::AwaitSyncStart;
            s.own_start = Some(start);
        }
        tracing::info!(
            "failover: link to node {} established; syncing",
            peer.map_or("?".into(), |n| n.to_string())
        );
        self.send(conn, &Message::SyncStart(start), now_ms);
    }

    /// Records what the last authenticated handshake said about the two
    /// configurations: a mismatch stops new allocations (both nodes may
    /// count an address as their own), loudly, once per distinct
    /// mismatch rather than at every retry of the link.
    fn note_mismatch(&mut self, mismatch: Option<String>) {
        if mismatch == self.mismatch {
            return;
        }
        match &mismatch {
            Some(m) => tracing::error!(
                "failover: configuration mismatch with the partner: no new addresses are handed out (leases held are still renewed) until both nodes have the same dhcp-range, failover-split and failover-mclt; {m}"
            ),
            None => tracing::warn!(
                "failover: the partner's configuration agrees with ours again: handing out addresses again"
            ),
        }
        self.mismatch = mismatch;
        self.update_mode();
    }

    /// Both `SyncStart`s are known: the secondary sends its table, or its
    /// changes the primary lacks; the primary waits for them.
    fn on_sync_start(&mut self, conn: ConnId, theirs: SyncStart, db: &mut LeaseDb, now_ms: u64) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let resumed = s.own_start.is_some_and(|mine| mine.can_resume(&theirs));
        s.peer_incarnation = Some(theirs.incarnation);
        s.peer_applied = theirs.resume.map_or(0, |p| p.applied_through);
        match self.cfg.role {
            Role::Primary => {
                s.phase = Phase::ReceivingTable {
                    theirs: HashMap::new(),
                    resumed,
                };
            }
            Role::Secondary => {
                s.phase = Phase::AwaitPrimaryTable { resumed };
                let (records, through) = match theirs.resume.filter(|_| resumed) {
                    Some(point) => self.take_changes_for_resume(point.applied_through, db, now_ms),
                    None => self.take_whole_table(db),
                };
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.sent_through = through;
                }
                self.send_table(conn, records, Some(through), now_ms);
            }
        }
    }

    /// For a full sync: every record, and nothing kept any longer (the
    /// table covers it). Returns the records and the update number they
    /// cover.
    fn take_whole_table(&mut self, db: &mut LeaseDb) -> (Vec<LeaseRecord>, u64) {
        db.take_outbox();
        self.unsent.clear();
        self.kept.clear();
        self.kept_whole = true;
        (db.iter().collect(), self.next_update - 1)
    }

    /// For a resumed sync: the own changes the partner has not merged
    /// (it has every update up to `applied`), still kept until it is known
    /// to have these. Returns the records and the update number they cover.
    fn take_changes_for_resume(
        &mut self,
        applied: u64,
        db: &mut LeaseDb,
        now_ms: u64,
    ) -> (Vec<LeaseRecord>, u64) {
        self.absorb_outbox(db, now_ms);
        self.kept.retain(|(seq, _)| *seq > applied);
        let fresh = std::mem::take(&mut self.unsent);
        if !fresh.is_empty() {
            self.kept.push_back((self.next_update, fresh));
            self.next_update += 1;
        }
        let records = self
            .kept
            .iter()
            .flat_map(|(_, r)| r.iter().cloned())
            .collect();
        (records, self.next_update - 1)
    }

    /// Sends records as lease pages, `last` on the last one (an empty
    /// table is one empty page).
    fn send_table(
        &mut self,
        conn: ConnId,
        table: Vec<LeaseRecord>,
        last: Option<u64>,
        now_ms: u64,
    ) -> bool {
        let mut pages = paginate(table);
        if pages.is_empty() {
            pages.push(Vec::new());
        }
        let n = pages.len();
        for (i, records) in pages.into_iter().enumerate() {
            let last = last.filter(|_| i + 1 == n);
            if !self.send(conn, &Message::LeasePage { records, last }, now_ms) {
                return false;
            }
        }
        true
    }

    /// A sync finished on this side: from now on the partner's updates
    /// count from `through`, which its sync covered.
    fn note_peer_point(&mut self, conn: ConnId, through: u64) {
        if let Some(incarnation) = self.sessions.get(&conn).and_then(|s| s.peer_incarnation) {
            self.peer = Some(PeerPoint {
                incarnation,
                applied_through: through,
            });
        }
    }

    fn protocol_error(&mut self, conn: ConnId, what: &str, now_ms: u64) {
        let reason = format!("protocol error: {what}");
        self.send(
            conn,
            &Message::Error {
                reason: reason.clone(),
            },
            now_ms,
        );
        self.close(conn, now_ms, &reason);
    }

    fn on_message(&mut self, conn: ConnId, m: Message, db: &mut LeaseDb, now_ms: u64) {
        #[derive(Clone, Copy)]
        enum P {
            Handshake,
            AwaitSyncStart,
            AwaitPrimaryTable,
            ReceivingTable,
            AwaitSynced,
            Streaming,
        }
        let phase = match self.sessions.get(&conn).map(|s| &s.phase) {
            None => return,
            Some(Phase::Handshake) => P::Handshake,
            Some(Phase::AwaitSyncStart) => P::AwaitSyncStart,
            Some(Phase::AwaitPrimaryTable { .. }) => P::AwaitPrimaryTable,
            Some(Phase::ReceivingTable { .. }) => P::ReceivingTable,
            Some(Phase::AwaitSynced { .. }) => P::AwaitSynced,
            Some(Phase::Streaming) => P::Streaming,
        };
        match (phase, m) {
            (_, Message::Error { reason }) => {
                tracing::error!("failover: the partner refused the link: {reason}");
                if self.cfg.role == Role::Secondary {
                    self.backoff_ms = REFUSED_BACKOFF_MS;
                }
                self.close(conn, now_ms, "refused by the partner");
            }
            (_, Message::Heartbeat { wall_ms }) => {
                let skew = skew_between(wall_ms, now_ms);
                self.skew_ms = Some(skew);
                // Enforced only ahead: a heartbeat read late (this node
                // busy merging a table) looks behind by the delay, never
                // ahead. A clock behind is caught by the partner, which
                // checks ours the same way.
                if skew > 0 && skew.unsigned_abs() > self.cfg.max_skew_ms {
                    self.end_for_skew(
                        conn,
                        format!(
                            "clock skew of {skew} ms between the nodes exceeds the {} ms allowed (failover-max-skew): synchronise the clocks",
                            self.cfg.max_skew_ms
                        ),
                        now_ms,
                    );
                }
            }
            (P::AwaitSyncStart, Message::SyncStart(theirs)) => {
                self.on_sync_start(conn, theirs, db, now_ms);
            }
            (P::ReceivingTable, Message::LeasePage { records, last }) => {
                let Some((records, _)) = self.admit(conn, records, db, now_ms) else {
                    return;
                };
                if let Some(Phase::ReceivingTable {
                    theirs,
                    resumed: false,
                }) = self.sessions.get_mut(&conn).map(|s| &mut s.phase)
                {
                    for r in &records {
                        theirs.insert(r.ip, r.clone());
                    }
                }
                if self.merge_partner(records, db, now_ms).is_none() {
                    return;
                }
                if let Some(through) = last {
                    self.finish_sync_primary(conn, through, db, now_ms);
                }
            }
            (P::AwaitPrimaryTable, Message::LeasePage { records, .. }) => {
                // No reply waits on a sync's records: the gate let every
                // held reply go when the link fell.
                let Some((records, _)) = self.admit(conn, records, db, now_ms) else {
                    return;
                };
                self.merge_partner(records, db, now_ms);
            }
            (P::AwaitPrimaryTable, Message::SyncDone { through, .. }) => {
                self.note_peer_point(conn, through);
                let mut resumed = false;
                if let Some(s) = self.sessions.get_mut(&conn) {
                    resumed = matches!(s.phase, Phase::AwaitPrimaryTable { resumed: true });
                    s.phase = Phase::Streaming;
                    // The primary answers only after merging all we sent.
                    let sent = s.sent_through;
                    self.kept.retain(|(seq, _)| *seq > sent);
                }
                if !self.send(conn, &Message::Synced, now_ms) {
                    return;
                }
                // The partner holds every own change the sync covered.
                db.partner_holds_all_but(
                    self.unsent
                        .iter()
                        .chain(self.kept.iter().flat_map(|(_, r)| r)),
                );
                self.sync_complete(resumed, now_ms);
                self.pump(db, now_ms);
            }
            (P::AwaitSynced, Message::Synced) => {
                if let Some(Phase::AwaitSynced { peer_through, .. }) =
                    self.sessions.get(&conn).map(|s| &s.phase)
                {
                    let through = *peer_through;
                    self.note_peer_point(conn, through);
                }
                let mut resumed = false;
                if let Some(s) = self.sessions.get_mut(&conn) {
                    resumed = matches!(s.phase, Phase::AwaitSynced { resumed: true, .. });
                    s.phase = Phase::Streaming;
                    let sent = s.sent_through;
                    self.kept.retain(|(seq, _)| *seq > sent);
                }
                // The partner holds every own change the sync covered.
                db.partner_holds_all_but(
                    self.unsent
                        .iter()
                        .chain(self.kept.iter().flat_map(|(_, r)| r)),
                );
                self.sync_complete(resumed, now_ms);
                self.pump(db, now_ms);
            }
            (P::Streaming, Message::Update { seq, records }) => {
                let Some((records, mut lost)) = self.admit(conn, records, db, now_ms) else {
                    return;
                };
                let Some(lost_here) = self.merge_partner(records, db, now_ms) else {
                    return;
                };
                lost.extend(lost_here);
                if let Some(p) = &mut self.peer {
                    p.applied_through = p.applied_through.max(seq);
                }
                let token = self.next_token;
                self.next_token += 1;
                self.pending_acks.push_back((token, conn, seq, lost));
                self.out.push_back(Output::Flush(token));
                self.flushes.asked(token, now_ms);
            }
            (P::Streaming, Message::Ack { seq, lost }) => {
                let covered: usize = self
                    .in_flight
                    .iter()
                    .take_while(|f| f.0 <= seq)
                    .map(|f| f.3)
                    .sum();
                if lost.len() > covered {
                    self.protocol_error(
                        conn,
                        &format!(
                            "ack {seq} names {} lost records of updates that had {covered}",
                            lost.len()
                        ),
                        now_ms,
                    );
                    return;
                }
                let (held, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.kept)
                    .into_iter()
                    .partition(|(s, _)| *s <= seq);
                self.kept = kept.into();
                db.partner_holds(
                    held.iter()
                        .flat_map(|(_, r)| r)
                        .filter(|r| !lost.contains(&r.stamp)),
                );
                let mut top = None;
                while let Some(&(s, stamp, _, _)) = self.in_flight.front() {
                    if s > seq {
                        break;
                    }
                    self.in_flight.pop_front();
                    top = Some(stamp);
                }
                if !lost.is_empty() {
                    // Before the ack releases anything: these changes did
                    // not stand at the partner (it kept another client's
                    // record, or refused ours), so their replies must never
                    // leave; the clients ask again and are answered from
                    // the merged table.
                    tracing::warn!(
                        "failover: the partner kept {} of our records from update {seq} out (a conflict went to its record, or its rules refused ours): their replies are not sent",
                        lost.len()
                    );
                    self.out.push_back(Output::Cancel(lost));
                }
                if let Some(stamp) = top {
                    self.acked_through = self.acked_through.max(stamp);
                    self.out.push_back(Output::AckedThrough(self.acked_through));
                }
                // The window has room again: what gathered meanwhile goes now.
                self.pump(db, now_ms);
            }
            (phase, m) => {
                let what = format!(
                    "{} while {}",
                    match m {
                        Message::Hello(_) => "hello",
                        Message::Auth { .. } => "auth",
                        Message::SyncStart(_) => "sync start",
                        Message::LeasePage { .. } => "lease page",
                        Message::SyncDone { .. } => "sync done",
                        Message::Synced => "synced",
                        Message::Update { .. } => "update",
                        Message::Ack { .. } => "ack",
                        Message::Heartbeat { .. } => "heartbeat",
                        Message::Error { .. } => "error",
                    },
                    match phase {
                        P::Handshake => "handshaking",
                        P::AwaitSyncStart
                        | P::AwaitPrimaryTable
                        | P::ReceivingTable
                        | P::AwaitSynced => "syncing",
                        P::Streaming => "streaming",
                    }
                );
                self.protocol_error(conn, &what, now_ms);
            }
        }
    }

    fn sync_complete(&mut self, resumed: bool, now_ms: u64) {
        if resumed {
            self.resumed_syncs += 1;
        } else {
            self.full_syncs += 1;
        }
        self.last_sync_ms = Some(now_ms);
        self.unlinked_since_ms = None;
        self.partner_down_since_ms = None;
        if self.recover_until_ms.take().is_some() {
            tracing::info!("failover: recovery done: synced with the partner");
        }
        // Stored at the end of this `received`; flushed right after. A
        // crash before that flush restarts this node in the partner-down
        // it had, until its next sync (a few ms of exposure).
        self.completeness = Completeness {
            last_sync: self
                .last_partner_node
                .map(|partner| (partner, now_ms))
                .or(self.completeness.last_sync),
            partner_down_since_ms: None,
        };
        self.backoff_ms = BACKOFF_MIN_MS;
        tracing::info!(
            "failover: sync done ({}); in sync with the partner",
            if resumed { "resumed" } else { "full" }
        );
        self.update_mode();
    }

    /// After the secondary's last page: send it what it lacks, then done.
    fn finish_sync_primary(
        &mut self,
        conn: ConnId,
        peer_through: u64,
        db: &mut LeaseDb,
        now_ms: u64,
    ) {
        let (theirs, resumed) = match self.sessions.get_mut(&conn).map(|s| &mut s.phase) {
            Some(Phase::ReceivingTable { theirs, resumed }) => (std::mem::take(theirs), *resumed),
            _ => return,
        };
        let (lacking, through) = if resumed {
            let applied = self.sessions.get(&conn).map_or(0, |s| s.peer_applied);
            self.take_changes_for_resume(applied, db, now_ms)
        } else {
            // Changes made up to now are in the table about to be sent.
            let (table, through) = self.take_whole_table(db);
            let lacking = table
                .into_iter()
                .filter(|r| merge::replaces(r, theirs.get(&r.ip)))
                .collect();
            (lacking, through)
        };
        let sent = lacking.len();
        if !lacking.is_empty() && !self.send_table(conn, lacking, None, now_ms) {
            return;
        }
        let serial = db.last_stamp().wall_ms;
        if !self.send(conn, &Message::SyncDone { serial, through }, now_ms) {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.phase = Phase::AwaitSynced {
                resumed,
                peer_through,
            };
            s.sent_through = through;
        }
        if resumed {
            tracing::info!("failover: resumed: merged the secondary's changes, sent {sent} back");
        } else {
            tracing::info!(
                "failover: merged the secondary's {} records, sent {sent} back",
                theirs.len()
            );
        }
    }

    /// The node id of the owner of `ip`'s share, when known.
    fn share_owner_node(&self, ip: Ipv4Addr) -> Option<u32> {
        let (first, last) = self
            .cfg
            .shares
            .iter()
            .find(|(first, last)| *first <= ip && ip <= *last)?;
        let owner = share::owner_of(*first, *last, ip, self.cfg.split_percent);
        let own = self.cfg.role;
        if owner == own {
            Some(self.node_id)
        } else {
            self.last_partner_node
        }
    }

    /// Of two records giving one address to two clients, the one that
    /// stands: the one its share's owner wrote. The owner hands out its
    /// share only once it knows the address free, while the other node
    /// writes there only linked (a change the owner acks before the client
    /// hears of it) or as a bounded extension of a lease the owner knows;
    /// so a conflict means the other node's record was never told to the
    /// owner, nor to its client. Without a single owner's record, the
    /// newer stands.
    fn conflict_winner<'a>(&self, a: &'a LeaseRecord, b: &'a LeaseRecord) -> &'a LeaseRecord {
        match self.share_owner_node(a.ip) {
            Some(n) if a.stamp.node == n && b.stamp.node != n => a,
            Some(n) if b.stamp.node == n && a.stamp.node != n => b,
            _ => merge::merge(a, b),
        }
    }

    /// Ends the link because the clocks disagree, saying so to the partner
    /// as the handshake does.
    fn end_for_skew(&mut self, conn: ConnId, reason: String, now_ms: u64) {
        tracing::error!("failover: ending the link: {reason}");
        self.send(
            conn,
            &Message::Error {
                reason: reason.clone(),
            },
            now_ms,
        );
        self.close(conn, now_ms, "clocks disagree");
    }

    /// Holds the partner's records to the database's admission rules (see
    /// `lease::validate`): what breaks them is dropped and counted, with a
    /// paced warning. Returns the rest and the stamps of the refused (an
    /// update's ack names them lost), or `None` when one is stamped
    /// beyond this node's clock plus the skew bound: then the clocks
    /// disagree, nothing of the batch is stored or acked (an ack would let
    /// the partner answer its client on a record this node does not hold),
    /// and the link ends, as on a heartbeat. Records refused for any other
    /// reason do not stop the rest: this node does not serve such an
    /// address (it never hands it out twice), or the record could not have
    /// come from a sound DHCP engine. Either way the partner is told they
    /// did not stand, so it sends no reply promising them: a lease one
    /// table lacks is not acknowledged while linked.
    fn admit(
        &mut self,
        conn: ConnId,
        records: Vec<LeaseRecord>,
        db: &LeaseDb,
        now_ms: u64,
    ) -> Option<(Vec<LeaseRecord>, Vec<Stamp>)> {
        let mut refused = Rejections::default();
        let mut first = None;
        let mut ahead_ms = 0u64;
        let mut ok = Vec::with_capacity(records.len());
        let mut refused_stamps = Vec::new();
        for r in records {
            match db.check(&r, now_ms) {
                Ok(()) => ok.push(r),
                Err(reason) => {
                    refused_stamps.push(r.stamp);
                    refused.add(reason);
                    first.get_or_insert((r.ip, reason));
                    if reason == Reject::Stamp {
                        ahead_ms = ahead_ms.max(r.stamp.wall_ms.saturating_sub(now_ms));
                    }
                }
            }
        }
        let Some((ip, reason)) = first else {
            return Some((ok, refused_stamps));
        };
        self.rejected.absorb(&refused);
        self.log_rejections(&refused, ip, reason, now_ms);
        if refused.stamp > 0 {
            self.end_for_skew(
                conn,
                format!(
                    "{} of the partner's records are stamped up to {ahead_ms} ms ahead of this node's clock, beyond the {} ms allowed (failover-max-skew): synchronise the clocks",
                    refused.stamp,
                    db.admission().max_skew_ms()
                ),
                now_ms,
            );
            return None;
        }
        Some((ok, refused_stamps))
    }

    fn log_rejections(&mut self, refused: &Rejections, ip: Ipv4Addr, reason: Reject, now_ms: u64) {
        match self.reject_log.note_many(now_ms, refused.total()) {
            Note::First => tracing::warn!(
                "failover: dropped {} of the partner's records ({}); the first, for {ip}: {}",
                refused.total(),
                refused.summary(),
                reason.describe()
            ),
            Note::Summary { count, over_ms } => Self::rejections_summary(count, over_ms),
            Note::Counted => {}
        }
    }

    fn rejections_summary(count: u64, over_ms: u64) {
        tracing::warn!(
            "failover: dropped {count} more of the partner's records in the last {} s (see twinmasq status)",
            over_ms.div_ceil(1000)
        );
    }

    /// Merges the partner's records: newer wins per address. Counts
    /// conflicts, cancels own replies whose record lost, and releases a
    /// client's older lease when the merge leaves it holding two. Returns
    /// the stamps of the partner's records that did not stand (see
    /// [`did_not_stand`]), or `None` (and the link closed) if they could
    /// not be stored.
    fn merge_partner(
        &mut self,
        records: Vec<LeaseRecord>,
        db: &mut LeaseDb,
        now_ms: u64,
    ) -> Option<Vec<Stamp>> {
        let now_secs = now_ms / 1000;
        // What each record promised its client, judged once the merge and
        // its releases are done.
        let promised: Vec<(Ipv4Addr, twinmasq_proto::ClientKey, Stamp)> = records
            .iter()
            .filter(|r| r.is_active(now_secs))
            .map(|r| (r.ip, r.client.clone(), r.stamp))
            .collect();
        let mut cancel = Vec::new();
        // Conflicts the newer-stamp order would settle the wrong way: the
        // owner's record is committed again with a fresh stamp, so it wins
        // on both nodes whatever else arrives (the merge stays the one
        // pure order).
        let mut restamp: Vec<LeaseRecord> = Vec::new();
        // The partner's ends kept out for such a grant: named lost in the
        // ack, so the partner does not take its end as held here (it would
        // reuse the address) before our grant reaches it.
        let mut doubted = Vec::new();
        let mut merged = Vec::with_capacity(records.len());
        let skew = self.cfg.max_skew_ms;
        // What each address holds once the batch's earlier records are in:
        // a batch may carry several records of one address.
        let mut view: HashMap<Ipv4Addr, LeaseRecord> = HashMap::new();
        for r in records {
            let current = view.get(&r.ip).cloned().or_else(|| db.get(r.ip));
            if let Some(cur) = &current {
                // Kept out of the merge, with the record that stands in its
                // place committed again below.
                let mut instead = None;
                if cur.stamp.node == self.node_id && merge::end_in_doubt(&r, cur, now_secs, skew) {
                    // Our end against the partner's grant: the grant stands.
                    tracing::info!(
                        "failover: the partner granted {} again to a client whose lease this node ended, in an order the clocks cannot tell: the grant stands",
                        r.ip
                    );
                    instead = Some(r.clone());
                } else if cur.stamp.node == self.node_id
                    && merge::end_in_doubt(cur, &r, now_secs, skew)
                {
                    // The partner's end against our grant: likewise.
                    tracing::info!(
                        "failover: the partner ended a lease of {} that this node granted again, in an order the clocks cannot tell: the grant stands",
                        r.ip
                    );
                    doubted.push(r.stamp);
                    instead = Some(cur.clone());
                } else if let Some(longer) = merge::outlived(cur, &r, now_secs) {
                    // One client's lease, renewed on each node: it lasts
                    // until the later of the two ends.
                    instead = Some(longer);
                } else if merge::is_conflict(cur, &r, now_secs) {
                    self.conflicts += 1;
                    let winner = self.conflict_winner(cur, &r);
                    let ours = std::ptr::eq(winner, cur);
                    tracing::warn!(
                        "failover: conflict on {}: both nodes gave it to a client; {} record stands (the share owner's, or else the newer), the other client is NAKed at its next renew",
                        r.ip,
                        if ours { "our" } else { "the partner's" }
                    );
                    if !std::ptr::eq(winner, merge::merge(cur, &r)) {
                        if !ours && self.unreleased(cur) {
                            cancel.push(cur.stamp);
                        }
                        instead = Some(winner.clone());
                    }
                }
                if let Some(rec) = instead {
                    if let Err(e) = db.observe(r.stamp, now_ms) {
                        tracing::error!("failover: cannot store the partner's records: {e}");
                        if let Some(p) = self.partner {
                            self.close(p, now_ms, "lease database error");
                        }
                        return None;
                    }
                    restamp.retain(|x| x.ip != rec.ip);
                    view.insert(rec.ip, rec.clone());
                    restamp.push(rec);
                    continue;
                }
            }
            if merge::replaces(&r, current.as_ref()) {
                if let Some(cur) = current.filter(|c| self.unreleased(c)) {
                    cancel.push(cur.stamp);
                }
                view.insert(r.ip, r.clone());
            }
            merged.push(r);
        }
        let stored = db.merge_batch(merged, now_ms).and_then(|m| {
            // Admitted before, against the same clock: nothing refused here.
            for (_, reason) in &m.rejected {
                self.rejected.add(*reason);
            }
            let mut stored = m.stored;
            for mut rec in restamp {
                // A later record of the batch for the same lease may run
                // longer: the lease lasts until the later end.
                if let Some(longer) = db
                    .get(rec.ip)
                    .and_then(|c| merge::outlived(&rec, &c, now_secs))
                {
                    rec = longer;
                }
                stored.push(db.commit(rec, now_ms)?);
            }
            Ok(stored)
        });
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                // Not stored, so not acked: the partner resends after the
                // link restarts.
                tracing::error!("failover: cannot store the partner's records: {e}");
                if let Some(p) = self.partner {
                    self.close(p, now_ms, "lease database error");
                }
                return None;
            }
        };
        let mut changed: Vec<Ipv4Addr> = stored.iter().map(|r| r.ip).collect();
        for rec in stored.iter().filter(|r| r.is_active(now_secs)) {
            let all = db.all_of_client(&rec.client);
            let older: Vec<LeaseRecord> =
                merge::superseded(&rec.client, &all, now_secs, self.cfg.max_skew_ms)
                    .into_iter()
                    .cloned()
                    .collect();
            for old in older {
                if self.unreleased(&old) {
                    cancel.push(old.stamp);
                }
                let ended = LeaseRecord {
                    state: LeaseState::Released,
                    expires: merge::ended_expiry(old.expires, now_secs),
                    hostname: None,
                    ..old
                };
                match db.settle(ended, now_ms) {
                    Ok(Some(r)) => changed.push(r.ip),
                    Ok(None) => {}
                    Err(e) => tracing::error!("failover: cannot release a superseded lease: {e}"),
                }
            }
        }
        if !cancel.is_empty() {
            self.out.push_back(Output::Cancel(cancel));
        }
        if !changed.is_empty() {
            self.out.push_back(Output::Changed(changed));
        }
        Some(
            promised
                .into_iter()
                .filter(|(ip, client, _)| did_not_stand(db.get(*ip).as_ref(), client, now_secs))
                .map(|(_, _, stamp)| stamp)
                .chain(doubted)
                .collect(),
        )
    }

    /// An own change whose reply may still be waiting for the partner.
    fn unreleased(&self, r: &LeaseRecord) -> bool {
        r.stamp.node == self.node_id && r.stamp > self.acked_through
    }
}

/// Whether a partner's record that gave its address to `client` did not
/// stand, given what this node holds for the address after the merge: the
/// address is not (or no longer) `client`'s. A conflict that went to the
/// share owner's record, a newer record of another client, and the
/// release of a lease the client holds a newer one to all count; a newer
/// record of the same client (a later renewal) and the record restamped
/// as the owner's do not. Both nodes settle a conflict by the same rule
/// (`conflict_winner`), so the record named here is the one the sender's
/// own merge drops once the winner reaches it.
fn did_not_stand(
    held: Option<&LeaseRecord>,
    client: &twinmasq_proto::ClientKey,
    now_secs: u64,
) -> bool {
    !held.is_some_and(|h| h.client == *client && h.is_active(now_secs))
}
