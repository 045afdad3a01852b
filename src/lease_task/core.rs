//! The lease task's core: the DHCP engine, the lease database, the failover
//! node and the reply gate composed in one place, with no socket, thread,
//! disk wait or clock of its own. Inputs are methods (the time passed in),
//! outputs come from [`LeaseTask::poll`]. The tokio loop (`run`) and the
//! failover simulation (`tests/failover_sim.rs`) both drive this, so the
//! simulation proves the composition the server runs.
//!
//! A reply that promises a lease change leaves only once that change is
//! durable and, while linked, once the partner has acked it
//! (`failover::gate`). One that waits for nobody but the disk goes out with
//! its persist request, for the caller to send once the fsync is done (the
//! server's flusher thread sends it, see `flusher`); one that waits for the
//! partner stays
//! here until the persist token comes back, then waits in the gate. Gate events
//! (acks, cancels, the link's rise and fall) take effect in the order they
//! happened relative to the replies: one queued behind replies still
//! waiting for the disk waits with them, as the flusher's job queue did.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use twinmasq_proto::Stamp;

use crate::config::Config;
use crate::dhcp::engine::{Decision, Engine, Reply};
use crate::dhcp::network::Arrival;
use crate::failover::gate::{Offered, ReplyGate};
use crate::failover::node::Output as NodeOutput;
use crate::failover::node::{waits_for_partner, ConnId, Handshake, Node, NodeConfig, NodeStatus};
use crate::lease::{Admission, LeaseDb, LeaseError};
use crate::share::{ServeMode, SharePolicy};

/// Counters kept around the engine (the engine keeps its own): the socket's,
/// the flusher's and the reply gate's.
#[derive(Debug, Default)]
pub struct ShellStats {
    pub not_served_interface: AtomicU64,
    pub send_errors: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    pub durable_replies: AtomicU64,
    /// Replies that waited for the failover partner's ack and were dropped
    /// because the link went down (or the wait ran out).
    pub partner_dropped: AtomicU64,
    /// Replies dropped because the partner's newer record replaced theirs.
    pub partner_cancelled: AtomicU64,
    /// Replies that waited so long (a hung disk) that the lease they
    /// promised would be over when they reached the client: not sent.
    pub stale_replies: AtomicU64,
}

fn count(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// What the task asks of the world.
#[derive(Debug)]
pub enum Output {
    /// Send this reply to the client now.
    Transmit(Reply),
    /// Ping `addr`, then call [`LeaseTask::probe_done`] with `token`.
    Probe { token: u64, addr: Ipv4Addr },
    /// Secondary: open a connection to the primary, then call
    /// [`LeaseTask::link_connected`] or [`LeaseTask::link_connect_failed`].
    LinkConnect,
    /// Write these bytes on the link connection; on failure call
    /// [`LeaseTask::link_closed`].
    LinkWrite(ConnId, Vec<u8>),
    /// Close the link connection (the node has already forgotten it).
    LinkClose(ConnId),
    /// Make the database durable (group commit is the caller's), send
    /// `send` if that worked (never otherwise), then call
    /// [`LeaseTask::persisted`] with this token. `waiting` more replies
    /// wait for it here (for the caller's count when the disk fails).
    Persist {
        token: u64,
        send: Vec<Reply>,
        waiting: usize,
    },
}

/// A change to the reply gate, applied in order with the replies.
#[derive(Debug)]
enum GateOp {
    Acked(Stamp),
    Cancel(Vec<Stamp>),
    Linked(bool),
}

/// What waits in order for the disk.
#[derive(Debug)]
enum Pending {
    /// Durable replies that wait for the partner's ack, and how many
    /// others the caller sends once durable (counted here).
    Replies {
        token: u64,
        replies: Vec<Reply>,
        sent: usize,
        done: Option<bool>,
    },
    /// A flush the failover node asked for, with the node's own token.
    Node {
        token: u64,
        node_token: u64,
        done: Option<bool>,
    },
    Gate(GateOp),
}

/// The composition: see the module's documentation.
pub struct LeaseTask {
    engine: Engine,
    db: LeaseDb,
    node: Option<Node>,
    gate: ReplyGate<Reply>,
    /// Durable replies decided since the last [`LeaseTask::poll`]: one
    /// persist request (one fsync, with group commit) for all of them.
    batch: Vec<(Reply, bool)>,
    pending: VecDeque<Pending>,
    next_token: u64,
    out: VecDeque<Output>,
    stats: Arc<ShellStats>,
}

impl LeaseTask {
    /// `db` as configured by `cfg` (its hosts files included), with a
    /// failover node when `failover` is given.
    pub fn new(
        cfg: Arc<Config>,
        mut db: LeaseDb,
        failover: Option<(NodeConfig, SharePolicy)>,
        incarnation: u64,
        now_ms: u64,
    ) -> LeaseTask {
        // Records from the partner are held to what this configuration
        // serves, its hosts files included.
        db.set_admission(Admission::from_config(&cfg));
        let policy = failover.as_ref().map(|(_, p)| *p);
        let mut engine = Engine::with_policy(cfg, &db, policy);
        let node = failover.map(|(node_cfg, _)| {
            db.enable_outbox();
            let node = Node::open(node_cfg, &db, incarnation, now_ms);
            engine.set_mode(node.mode());
            node
        });
        LeaseTask {
            engine,
            db,
            node,
            gate: ReplyGate::default(),
            batch: Vec::new(),
            pending: VecDeque::new(),
            next_token: 1,
            out: VecDeque::new(),
            stats: Arc::new(ShellStats::default()),
        }
    }

    pub fn stats(&self) -> &Arc<ShellStats> {
        &self.stats
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn db(&self) -> &LeaseDb {
        &self.db
    }

    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// How the engine serves now.
    pub fn mode(&self) -> ServeMode {
        self.engine.mode()
    }

    /// Replies waiting in the gate for the partner's ack.
    pub fn held(&self) -> usize {
        self.gate.held()
    }

    /// A client's datagram, on an interface we serve. True if it was
    /// answered (now or once durable and acked).
    pub fn datagram(&mut self, bytes: &[u8], arrival: &Arrival, now_ms: u64) -> bool {
        let d = self.engine.handle(bytes, arrival, &mut self.db, now_ms);
        self.apply(d, now_ms)
    }

    /// The prober's answer for `token`.
    pub fn probe_done(&mut self, token: u64, answered: bool, now_ms: u64) -> bool {
        let d = self
            .engine
            .probe_done(token, answered, &mut self.db, now_ms);
        self.apply(d, now_ms)
    }

    fn apply(&mut self, decision: Decision, now_ms: u64) -> bool {
        match decision {
            Decision::Reply(mut reply) => {
                reply.decided_ms = now_ms;
                if reply.durable {
                    let wait = self.node.is_some() && waits_for_partner(self.engine.mode());
                    self.batch.push((reply, wait));
                } else {
                    self.out.push_back(Output::Transmit(reply));
                }
                true
            }
            Decision::Probe { token, addr } => {
                self.out.push_back(Output::Probe { token, addr });
                false
            }
            Decision::Done | Decision::Ignored(_) => false,
        }
    }

    /// The prober cannot take `token` (saturated): treated as quiet rather
    /// than stall the client.
    pub fn probe_refused(&mut self, token: u64, now_ms: u64) {
        self.probe_done(token, false, now_ms);
    }

    /// A datagram too long for the buffer: not a DHCP client's.
    pub fn note_oversized(&mut self) {
        self.engine.note_oversized();
    }

    /// The host's addresses changed.
    pub fn set_local_addresses(&mut self, addrs: &[Ipv4Addr]) {
        self.engine.set_local_addresses(addrs, &self.db);
    }

    /// The hosts and options files were read again into `cfg`.
    pub fn reload(&mut self, cfg: Arc<Config>) {
        self.db.set_admission(Admission::from_config(&cfg));
        self.engine.set_hosts_and_options(cfg, &self.db);
    }

    /// The engine's timer: expiries, holds.
    pub fn tick(&mut self, now_ms: u64, mono: Instant) {
        self.engine.tick(&mut self.db, now_ms);
        self.expire(mono);
    }

    /// The failover node's timer (heartbeats, timeouts).
    pub fn link_tick(&mut self, now_ms: u64, mono: Instant) {
        if let Some(n) = &mut self.node {
            n.tick(&mut self.db, now_ms);
        }
        self.expire(mono);
    }

    /// Copies up to `budget` records of merged pages into their own keys.
    pub fn spread_pages(&mut self, budget: usize) -> Result<usize, LeaseError> {
        self.db.spread_pages(budget)
    }

    /// Work (a sync page, the lease-file export, spreading pages) kept the
    /// caller from listening for a while: the link's silence meanwhile is
    /// ours, not the partner's.
    pub fn was_busy(&mut self, now_ms: u64) {
        if let Some(n) = &mut self.node {
            n.was_busy(now_ms);
        }
    }

    pub fn link_connected(&mut self, conn: ConnId, nonce: [u8; 32], now_ms: u64) {
        if let Some(n) = &mut self.node {
            n.connected(conn, nonce, &self.db, now_ms);
        }
    }

    pub fn link_data(&mut self, conn: ConnId, bytes: &[u8], now_ms: u64) {
        if let Some(n) = &mut self.node {
            n.received(conn, bytes, &mut self.db, now_ms);
        }
    }

    pub fn link_closed(&mut self, conn: ConnId, now_ms: u64) {
        if let Some(n) = &mut self.node {
            n.closed(conn, now_ms);
        }
    }

    pub fn link_connect_failed(&mut self, now_ms: u64) {
        if let Some(n) = &mut self.node {
            n.connect_failed(now_ms);
        }
    }

    /// Where the handshake on `conn` stands (the link's I/O bounds a
    /// stranger's connection by it).
    pub fn handshake(&self, conn: ConnId) -> Option<Handshake> {
        self.node.as_ref().and_then(|n| n.handshake(conn))
    }

    pub fn failover_status(&self) -> Option<NodeStatus> {
        self.node.as_ref().map(Node::status)
    }

    /// The operator's declaration that the partner is down.
    pub fn declare_partner_down(&mut self, now_ms: u64) -> Option<Result<u64, String>> {
        self.node.as_mut().map(|n| n.declare_partner_down(now_ms))
    }

    /// The flush for `token` is done: `ok` false if the disk refused it
    /// (the replies waiting for it never leave; clients retry).
    pub fn persisted(&mut self, token: u64, ok: bool, now_ms: u64, mono: Instant) {
        for p in &mut self.pending {
            match p {
                Pending::Replies { token: t, done, .. } | Pending::Node { token: t, done, .. }
                    if *t == token =>
                {
                    *done = Some(ok);
                    break;
                }
                _ => {}
            }
        }
        self.settle(now_ms, mono);
        self.expire(mono);
    }

    /// Everything asked to be persisted is (the caller flushed at shutdown).
    pub fn persisted_all(&mut self, now_ms: u64, mono: Instant) {
        self.end_batch();
        for p in &mut self.pending {
            if let Pending::Replies { done, .. } | Pending::Node { done, .. } = p {
                done.get_or_insert(true);
            }
        }
        self.settle(now_ms, mono);
    }

    /// Applies, in order, what no longer waits for the disk.
    fn settle(&mut self, now_ms: u64, mono: Instant) {
        while let Some(front) = self.pending.front() {
            let ready = match front {
                Pending::Replies { done, .. } | Pending::Node { done, .. } => done.is_some(),
                Pending::Gate(_) => true,
            };
            if !ready {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            match p {
                Pending::Replies {
                    replies,
                    sent,
                    done,
                    ..
                } => {
                    if done == Some(true) {
                        count(&self.stats.durable_replies, sent);
                        self.offer(replies, mono);
                    }
                }
                Pending::Node {
                    node_token, done, ..
                } => {
                    if done == Some(true) {
                        if let Some(n) = &mut self.node {
                            n.persisted(node_token, now_ms);
                        }
                    }
                }
                Pending::Gate(op) => self.gate_op(op),
            }
        }
    }

    fn offer(&mut self, replies: Vec<Reply>, mono: Instant) {
        count(&self.stats.durable_replies, replies.len());
        for reply in replies {
            let promise = reply.commit;
            let ip = reply_address(&reply);
            match self.gate.offer(reply, promise, mono) {
                Offered::Send(reply) => self.out.push_back(Output::Transmit(reply)),
                Offered::Held => {}
                Offered::Dropped => {
                    count(&self.stats.partner_dropped, 1);
                    if let (Some(stamp), Some(ip)) = (promise, ip) {
                        self.db.note_untold(ip, stamp);
                    }
                }
            }
        }
    }

    fn gate_op(&mut self, op: GateOp) {
        match op {
            GateOp::Acked(stamp) => {
                for reply in self.gate.acked(stamp) {
                    self.out.push_back(Output::Transmit(reply));
                }
            }
            GateOp::Cancel(stamps) => {
                let n = self.gate.cancel(&stamps);
                count(&self.stats.partner_cancelled, n);
            }
            GateOp::Linked(up) => {
                let dropped = self.gate.linked(up);
                self.untold(dropped);
            }
        }
    }

    /// A gate event: now, or behind the replies still waiting for the disk.
    fn gate_event(&mut self, op: GateOp) {
        if self.pending.is_empty() {
            self.gate_op(op);
        } else {
            self.pending.push_back(Pending::Gate(op));
        }
    }

    fn expire(&mut self, mono: Instant) {
        let dropped = self.gate.expire(mono);
        self.untold(dropped);
    }

    /// Replies the gate dropped: their clients never heard of the change
    /// each promises, nor (maybe) the partner. The database notes those
    /// records as untold, so the engine does not take them for a lease
    /// the client holds (it would hand the address back to the client, or
    /// acknowledge it in the partner's share, where the partner does not
    /// know that lease and may give the address away).
    fn untold(&mut self, dropped: Vec<Reply>) {
        count(&self.stats.partner_dropped, dropped.len());
        for reply in dropped {
            if let (Some(stamp), Some(ip)) = (reply.commit, reply_address(&reply)) {
                self.db.note_untold(ip, stamp);
            }
        }
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// The durable replies decided so far go to the disk together.
    fn end_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let (wait, send): (Vec<_>, Vec<_>) = std::mem::take(&mut self.batch)
            .into_iter()
            .partition(|(_, w)| *w);
        // Without a promise to the partner the gate sends at once, whatever
        // its state: such replies need nothing but the disk.
        let (wait, send): (Vec<Reply>, Vec<Reply>) = (
            wait.into_iter().map(|(r, _)| r).collect(),
            send.into_iter().map(|(r, _)| r).collect(),
        );
        let token = self.token();
        let sent = send.len();
        self.out.push_back(Output::Persist {
            token,
            send,
            waiting: wait.len(),
        });
        self.pending.push_back(Pending::Replies {
            token,
            replies: wait,
            sent,
            done: None,
        });
    }

    /// Runs the failover node and turns what it asks for into outputs.
    fn drive(&mut self, now_ms: u64) {
        // Replies first, so a mode change the node makes next reaches the
        // gate after the replies it concerns.
        self.end_batch();
        let Some(n) = &mut self.node else {
            return;
        };
        n.pump(&mut self.db, now_ms);
        let mut outs = Vec::new();
        while let Some(o) = n.poll() {
            outs.push(o);
        }
        for o in outs {
            match o {
                NodeOutput::Connect => self.out.push_back(Output::LinkConnect),
                NodeOutput::Write(conn, bytes) => {
                    self.out.push_back(Output::LinkWrite(conn, bytes))
                }
                NodeOutput::Close(conn) => self.out.push_back(Output::LinkClose(conn)),
                NodeOutput::Mode(mode) => {
                    self.engine.set_mode(mode);
                    self.gate_event(GateOp::Linked(waits_for_partner(mode)));
                }
                NodeOutput::AckedThrough(stamp) => self.gate_event(GateOp::Acked(stamp)),
                NodeOutput::Cancel(stamps) => self.gate_event(GateOp::Cancel(stamps)),
                NodeOutput::Changed(ips) => {
                    for ip in ips {
                        self.engine.note_change(ip, &self.db);
                    }
                }
                NodeOutput::Flush(node_token) => {
                    let token = self.token();
                    self.out.push_back(Output::Persist {
                        token,
                        send: Vec::new(),
                        waiting: 0,
                    });
                    self.pending.push_back(Pending::Node {
                        token,
                        node_token,
                        done: None,
                    });
                }
            }
        }
    }

    /// The next thing to do. Call until `None` after every input; `now_ms`
    /// is the time the failover node runs at.
    pub fn poll(&mut self, now_ms: u64) -> Option<Output> {
        if self.out.is_empty() {
            self.drive(now_ms);
        }
        self.out.pop_front()
    }

    /// Stops serving: the database is handed back (for the final flush and
    /// export).
    pub fn into_db(self) -> LeaseDb {
        self.db
    }
}

/// The address a DHCP reply gives (`yiaddr`), if the packet is long
/// enough to hold one.
fn reply_address(reply: &Reply) -> Option<std::net::Ipv4Addr> {
    let b: [u8; 4] = reply.packet.get(16..20)?.try_into().ok()?;
    Some(std::net::Ipv4Addr::from(b)).filter(|ip| !ip.is_unspecified())
}
