//! The thin layer between the DHCP engine and the world: the port-67
//! socket, the interface list, the ping prober, the lease file, the
//! failover node and its link, and group commit (see `flusher`).
//!
//! The lease database lives in this task alone: the engine and the failover
//! node both change it here, so neither needs a lock or a copy.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::dhcp_files::DhcpFiles;
use crate::config::Config;
use crate::failover::link_io::{LinkEvent, LinkIo};
use crate::failover::node::{waits_for_partner, Node, NodeConfig, Output};
use crate::lease::{lease_file, Admission, LeaseDb};

use super::engine::{Decision, Engine, Reply};
use super::flusher::{Flusher, Job};
use super::network::{mask, same_subnet, Arrival};
use super::ping::{self, ProbeRequest, ProbeResult};
use super::reply::Destination;
use super::share::SharePolicy;
use super::socket::{self, CLIENT_PORT, SERVER_PORT};
use crate::net::interfaces::{self, Interface};
use crate::net::pktinfo;

/// Datagrams handled per wake-up before durable replies are handed on, so
/// a flood still flushes regularly.
const RECV_BATCH: usize = 256;
const TICK: Duration = Duration::from_millis(500);
/// Lease-file rewrites at most this often (dnsmasq rewrites per change).
const LEASE_FILE_INTERVAL: Duration = Duration::from_secs(1);
/// A rewrite may take this fraction of the time between rewrites, at most.
const LEASE_FILE_COST_FACTOR: u32 = 100;
const IFACE_REFRESH: Duration = Duration::from_secs(2);
/// The failover node's timer: well under its heartbeat and timeout.
const LINK_TICK: Duration = Duration::from_millis(100);
/// Records of a big failover merge copied into their own keys per link
/// tick: about 10 ms of sled's time, so 100,000 take some 10 s in the
/// background instead of a second inside the sync.
const SPREAD_PER_TICK: usize = 1_000;
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Counters kept by the shell itself (the engine keeps its own).
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
}

/// Work that kept the engine's task this long (a sync page, a table to send
/// back, the lease-file export, spreading merged pages) excuses the
/// failover partner's silence meanwhile.
const BUSY_MS: u64 = 100;

fn ifname_of(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has the IF_NAMESIZE bytes if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Turns a reply to a client's hardware address into a unicast (after
/// writing the ARP entry the kernel needs for it) or, failing that, a
/// broadcast. Runs on the engine's thread: after the privilege drop only
/// that thread keeps CAP_NET_ADMIN, which the ARP write needs.
fn resolve_hardware(fd: RawFd, r: &mut Reply) {
    if let Destination::Hardware { ip, htype, chaddr } = &r.to {
        let injected = ifname_of(r.ifindex)
            .is_some_and(|name| socket::arp_inject(fd, &name, *ip, *htype, chaddr).is_ok());
        r.to = if injected {
            Destination::Unicast(*ip)
        } else {
            Destination::Broadcast
        };
    }
}

pub(super) fn deliver(fd: RawFd, r: &Reply, stats: &ShellStats) {
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
    let to = match &r.to {
        Destination::Relay(ip) => SocketAddrV4::new(*ip, SERVER_PORT),
        Destination::Unicast(ip) => SocketAddrV4::new(*ip, CLIENT_PORT),
        Destination::Broadcast => broadcast,
        // `resolve_hardware` ran before any reply got here.
        Destination::Hardware { .. } => broadcast,
    };
    if let Err(e) = pktinfo::send(fd, &r.packet, to, r.ifindex, r.from) {
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "dhcp", "send to {to} failed: {e}");
    }
}

pub struct Shell {
    engine: Engine,
    db: LeaseDb,
    cfg: Arc<Config>,
    sock: UdpSocket,
    ifaces: HashMap<u32, Interface>,
    /// Per served interface, what the engine is told with each request.
    arrivals: HashMap<u32, Arrival>,
    ifaces_at: Instant,
    probe_tx: mpsc::Sender<ProbeRequest>,
    probe_rx: mpsc::Receiver<ProbeResult>,
    flush_tx: std_mpsc::Sender<Job>,
    /// Durable replies of this wake-up, and whether each waits for the
    /// failover partner's ack.
    batch: Vec<(Reply, bool)>,
    failover: Option<Failover>,
    failover_inputs: Option<FailoverInputs>,
    /// The database's change count when the lease file was last rendered.
    lease_file_generation: Option<u64>,
    lease_file_at: Option<Instant>,
    /// At least a second, and long enough that rendering a large table
    /// takes no more than 1/LEASE_FILE_COST_FACTOR of the engine's time.
    lease_file_interval: Duration,
    pub stats: Arc<ShellStats>,
    /// Requests from the control socket (`twinmasq status`, ...); the
    /// server attaches the queue after `start`.
    pub control: crate::control::ControlHooks,
    /// Scrape requests and per-range lease counts, with `metrics-listen`.
    metrics: Option<crate::metrics::DhcpHooks>,
    /// The config without the `dhcp-hostsfile`/`dhcp-optsfile` lines,
    /// which `reload` reads again on top of it.
    base_cfg: Arc<Config>,
    /// SIGHUP: re-read those files.
    reload: Option<mpsc::Receiver<()>>,
}

impl Shell {
    /// Binds the socket and starts the flusher thread and the prober (and
    /// the failover node, when configured). Call inside a tokio runtime.
    pub fn start(
        cfg: Arc<Config>,
        db: LeaseDb,
        port: u16,
        failover: Option<FailoverSetup>,
    ) -> std::io::Result<Self> {
        Self::start_on(cfg, db, socket::bind(port)?, failover)
    }

    /// [`Shell::start`] on a socket bound already ([`socket::bind`]): the
    /// server binds while root and opens the database after the drop.
    pub fn start_on(
        cfg: Arc<Config>,
        mut db: LeaseDb,
        std_sock: std::net::UdpSocket,
        failover: Option<FailoverSetup>,
    ) -> std::io::Result<Self> {
        // The flusher sends through its own handle, so its descriptor stays
        // valid however the shell's task ends.
        let flush_sock = std_sock.try_clone()?;
        let sock = UdpSocket::from_std(std_sock)?;
        let stats = Arc::new(ShellStats::default());
        let (flush_tx, flush_rx) = std_mpsc::channel();
        let (persisted_tx, persisted_rx) = mpsc::channel(1024);
        let flusher = Flusher::new(
            db.durability(),
            flush_sock,
            Arc::clone(&stats),
            failover.is_some().then_some(persisted_tx),
        );
        std::thread::Builder::new()
            .name("lease-flush".into())
            .spawn(move || flusher.run(flush_rx))?;
        let (probe_tx, probe_req_rx) = mpsc::channel(4096);
        let (probe_res_tx, probe_rx) = mpsc::channel(4096);
        tokio::spawn(ping::run(probe_req_rx, probe_res_tx, ping::PING_WAIT));
        let policy = failover.as_ref().map(|f| f.policy);
        let base_cfg = Arc::clone(&cfg);
        let cfg = with_files(&base_cfg);
        // Records from the partner are held to what this configuration
        // serves, its hosts files included.
        db.set_admission(Admission::from_config(&cfg));
        let mut engine = Engine::with_policy(Arc::clone(&cfg), &db, policy);
        let mut failover_inputs = None;
        let failover = failover.map(|f| {
            db.enable_outbox();
            let (events_tx, events) = mpsc::channel(1024);
            failover_inputs = Some(FailoverInputs {
                events,
                persisted: persisted_rx,
            });
            let io = LinkIo::new(events_tx);
            if let Some(listener) = f.listener {
                io.listen(listener);
            }
            let node = Node::open(f.node, &db, rand::random(), now_ms());
            engine.set_mode(node.mode());
            Failover {
                node,
                io,
                master: f.master,
            }
        });
        let mut shell = Shell {
            engine,
            db,
            cfg,
            sock,
            ifaces: HashMap::new(),
            arrivals: HashMap::new(),
            ifaces_at: Instant::now(),
            probe_tx,
            probe_rx,
            flush_tx,
            batch: Vec::new(),
            failover,
            failover_inputs,
            lease_file_generation: None,
            lease_file_at: None,
            lease_file_interval: LEASE_FILE_INTERVAL,
            stats,
            control: Default::default(),
            metrics: None,
            base_cfg,
            reload: None,
        };
        shell.refresh_interfaces();
        Ok(shell)
    }

    /// Makes the shell re-read the `dhcp-hostsfile`s and `dhcp-optsfile`s
    /// at each message on `rx` (SIGHUP).
    pub fn attach_reload(&mut self, rx: mpsc::Receiver<()>) {
        self.reload = Some(rx);
    }

    fn reload_files(&mut self) {
        if !has_files(&self.base_cfg) {
            return;
        }
        let since = now_ms();
        self.cfg = with_files(&self.base_cfg);
        self.db.set_admission(Admission::from_config(&self.cfg));
        self.engine
            .set_hosts_and_options(Arc::clone(&self.cfg), &self.db);
        self.note_busy(since);
    }

    /// Makes the shell answer metrics scrapes arriving on `rx`, and keep
    /// the per-range lease counts they report from now on.
    pub fn attach_metrics(
        &mut self,
        rx: tokio::sync::mpsc::Receiver<
            crate::metrics::snapshot::Reply<crate::metrics::DhcpSnapshot>,
        >,
    ) {
        let bounds = self
            .cfg
            .dhcp_ranges
            .iter()
            .map(|r| (r.start, r.end))
            .collect();
        let leases = crate::metrics::leases::RangeLeases::new(bounds, &self.db);
        self.metrics = Some(crate::metrics::DhcpHooks {
            requests: rx,
            leases,
        });
    }

    fn on_metrics(&mut self, reply: crate::metrics::snapshot::Reply<crate::metrics::DhcpSnapshot>) {
        use crate::failover::status::FailoverStatus;
        let Some(m) = &mut self.metrics else {
            return;
        };
        m.leases.absorb(&self.db);
        let failover = self
            .failover
            .as_ref()
            .map(|f| FailoverStatus::from_node(&f.node.status(), f.master));
        let snapshot = crate::metrics::DhcpSnapshot::build(
            &self.engine,
            &self.db,
            &self.stats,
            &m.leases,
            failover,
            now_ms(),
        );
        // The scrape may have given up meanwhile.
        let _ = reply.send(snapshot);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn db(&self) -> &LeaseDb {
        &self.db
    }

    fn refresh_interfaces(&mut self) {
        match interfaces::list() {
            Ok(list) => {
                let local: Vec<Ipv4Addr> = list
                    .values()
                    .flat_map(|i| i.addrs.iter().map(|a| a.addr))
                    .collect();
                self.engine.set_local_addresses(&local, &self.db);
                self.arrivals = list
                    .values()
                    .filter(|i| interfaces::serves(&self.cfg, i))
                    .map(|i| {
                        let arrival = Arrival {
                            ifname: i.name.clone(),
                            ifindex: i.index,
                            addrs: i.addrs.clone(),
                            to_broadcast: false,
                        };
                        (i.index, arrival)
                    })
                    .collect();
                self.ifaces = list;
            }
            Err(e) => tracing::warn!("cannot list interfaces: {e}"),
        }
        self.ifaces_at = Instant::now();
    }

    /// Marks the cached arrival for `ifindex` with whether the datagram was
    /// sent to a broadcast address; false if we do not serve the interface.
    fn note_arrival(&mut self, ifindex: u32, dst: Ipv4Addr) -> bool {
        if !self.ifaces.contains_key(&ifindex) && self.ifaces_at.elapsed() > Duration::from_secs(1)
        {
            self.refresh_interfaces();
        }
        let Some(arrival) = self.arrivals.get_mut(&ifindex) else {
            return false;
        };
        arrival.to_broadcast = dst == Ipv4Addr::BROADCAST
            || arrival.addrs.iter().any(|a| {
                let host_bits = !u32::from(mask(a.prefix));
                host_bits != 0
                    && u32::from(dst) & host_bits == host_bits
                    && same_subnet(dst, a.addr, a.prefix)
            });
        true
    }

    fn apply(&mut self, decision: Decision) {
        match decision {
            Decision::Reply(mut reply) => {
                resolve_hardware(self.sock.as_raw_fd(), &mut reply);
                if reply.durable {
                    let wait = self.failover.is_some() && waits_for_partner(self.engine.mode());
                    self.batch.push((reply, wait));
                } else {
                    deliver(self.sock.as_raw_fd(), &reply, &self.stats);
                }
            }
            Decision::Probe { token, addr } => {
                if self
                    .probe_tx
                    .try_send(ProbeRequest { token, addr })
                    .is_err()
                {
                    // Prober saturated: treat as quiet rather than stall.
                    let d = self.engine.probe_done(token, false, &mut self.db, now_ms());
                    self.apply(d);
                }
            }
            Decision::Done | Decision::Ignored(_) => {}
        }
    }

    fn handle_datagrams(&mut self, buf: &mut [u8]) {
        let fd = self.sock.as_raw_fd();
        for _ in 0..RECV_BATCH {
            let meta = match self
                .sock
                .try_io(Interest::READABLE, || pktinfo::recv(fd, buf))
            {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // `pktinfo::recv` says so for a datagram cut short by the
                // buffer: DHCP clients send at most an MTU, this is not one.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.engine.note_oversized();
                    continue;
                }
                Err(e) => {
                    tracing::debug!(target: "dhcp", "receive: {e}");
                    continue;
                }
            };
            if !self.note_arrival(meta.ifindex, meta.dst) {
                self.stats
                    .not_served_interface
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some(arrival) = self.arrivals.get(&meta.ifindex) else {
                continue;
            };
            let d = self
                .engine
                .handle(&buf[..meta.len], arrival, &mut self.db, now_ms());
            self.apply(d);
        }
    }

    fn hand_over_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if self.flush_tx.send(Job::Replies(batch)).is_err() {
            tracing::error!("lease flusher has stopped: replies withheld");
        }
    }

    fn upkeep(&mut self) {
        self.engine.tick(&mut self.db, now_ms());
        if self.ifaces_at.elapsed() >= IFACE_REFRESH {
            self.refresh_interfaces();
        }
        let dirty = self.lease_file_generation != Some(self.db.generation());
        let due = self
            .lease_file_at
            .is_none_or(|t| t.elapsed() >= self.lease_file_interval);
        // Not while the database cannot write: the export must never list a
        // lease the database may lose (a start refuses such a database).
        if dirty && due && !self.db.is_faulted() {
            self.lease_file_generation = Some(self.db.generation());
            let started = Instant::now();
            self.lease_file_at = Some(started);
            // Render here (the database lives on this task); the write and
            // its fsync happen off the engine's thread.
            let seq = lease_file::next_export();
            let text = lease_file::render(self.db.iter(), now_ms() / 1000);
            self.lease_file_interval =
                LEASE_FILE_INTERVAL.max(started.elapsed() * LEASE_FILE_COST_FACTOR);
            let path = self.cfg.lease_file.clone();
            let durability = self.db.durability();
            tokio::task::spawn_blocking(move || {
                // Every lease in the text is on disk before the text is: a
                // start compares the two and takes a lease the export lists
                // but the database lacks for a damaged database.
                let written = durability
                    .flush()
                    .and_then(|()| lease_file::write_export(&path, &text, seq));
                if let Err(e) = written {
                    tracing::error!("{e}");
                }
            });
        }
    }

    /// Carries out what the failover node asks for.
    fn drive_failover(&mut self) {
        let Some(f) = &mut self.failover else {
            return;
        };
        f.node.pump(&mut self.db, now_ms());
        while let Some(out) = f.node.poll() {
            match out {
                Output::Connect => match f.master {
                    Some(to) => f.io.connect(to),
                    None => f.node.connect_failed(now_ms()),
                },
                Output::Write(conn, bytes) => {
                    if !f.io.write(conn, bytes) {
                        f.node.closed(conn, now_ms());
                    }
                }
                Output::Close(conn) => f.io.close(conn),
                Output::Mode(mode) => {
                    self.engine.set_mode(mode);
                    let _ = self.flush_tx.send(Job::Linked(waits_for_partner(mode)));
                }
                Output::AckedThrough(stamp) => {
                    let _ = self.flush_tx.send(Job::Acked(stamp));
                }
                Output::Cancel(stamps) => {
                    let _ = self.flush_tx.send(Job::Cancel(stamps));
                }
                Output::Changed(ips) => {
                    for ip in ips {
                        self.engine.note_change(ip, &self.db);
                    }
                }
                Output::Flush(token) => {
                    let _ = self.flush_tx.send(Job::Persist(token));
                }
            }
        }
    }

    fn on_link_event(&mut self, ev: LinkEvent) {
        let Some(f) = &mut self.failover else {
            return;
        };
        let now = now_ms();
        match ev {
            LinkEvent::Connected {
                conn,
                peer,
                writer,
                inbound,
            } => {
                if inbound {
                    // Anyone may open one: logged once it proves the key.
                    tracing::trace!("failover: connection {conn} from {peer}");
                } else {
                    tracing::info!("failover: connection {conn} with {peer}");
                }
                f.io.opened(conn, peer, writer, inbound);
                f.node.connected(conn, rand::random(), &self.db, now);
            }
            LinkEvent::Data { conn, bytes } => {
                f.node.received(conn, &bytes, &mut self.db, now);
                f.io.progress(conn, f.node.handshake(conn));
                self.note_busy(now);
            }
            LinkEvent::Closed { conn } => {
                f.io.close(conn);
                f.node.closed(conn, now);
            }
            LinkEvent::ConnectFailed { reason } => {
                tracing::debug!("failover: cannot reach the primary: {reason}");
                f.node.connect_failed(now);
            }
        }
    }

    /// Work since `since` kept this task from listening: if that was long,
    /// the link's silence meanwhile is ours, not the partner's.
    fn note_busy(&mut self, since: u64) {
        let now = now_ms();
        if let Some(f) = &mut self.failover {
            if now.saturating_sub(since) >= BUSY_MS {
                f.node.was_busy(now);
            }
        }
    }

    /// Answers a control-socket request: the database, the engine and the
    /// failover node all live on this task. A partner-down declaration
    /// changes the node's mode; `drive_failover`, which runs after every
    /// wake-up, hands that on to the engine and the flusher.
    fn on_control(&mut self, req: crate::control::ControlRequest) {
        use crate::control::{ControlReply, RequestKind};
        use crate::failover::status::FailoverStatus;
        let now = now_ms();
        let reply = match req.kind {
            RequestKind::Status => {
                let failover = self
                    .failover
                    .as_ref()
                    .map(|f| FailoverStatus::from_node(&f.node.status(), f.master));
                let report =
                    self.control
                        .status(&self.db, &self.engine, &self.stats, failover, now);
                ControlReply::Status(Box::new(report))
            }
            RequestKind::Leases => ControlReply::Leases {
                node_id: self.db.node_id(),
                records: self.db.iter().collect(),
            },
            RequestKind::PartnerDown => match &mut self.failover {
                None => ControlReply::Error("failover is not configured".into()),
                Some(f) => {
                    let declared = f.node.declare_partner_down(now);
                    let status = FailoverStatus::from_node(&f.node.status(), f.master);
                    crate::control::partner_down_reply(declared, &status, now)
                }
            },
        };
        // The client may have given up meanwhile; then nobody listens.
        let _ = req.reply.send(reply);
    }

    pub fn failover_node(&self) -> Option<&Node> {
        self.failover.as_ref().map(|f| &f.node)
    }

    /// Serves until `shutdown` resolves, then makes everything durable and
    /// writes the lease file one last time.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), crate::lease::LeaseError> {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut link_events, mut persisted) = match self.failover_inputs.take() {
            Some(i) => (Some(i.events), Some(i.persisted)),
            None => (None, None),
        };
        let mut link_tick = tokio::time::interval(LINK_TICK);
        link_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                r = self.sock.readable() => {
                    if r.is_ok() {
                        self.handle_datagrams(&mut buf);
                    }
                }
                Some(res) = self.probe_rx.recv() => {
                    let d = self.engine.probe_done(res.token, res.answered, &mut self.db, now_ms());
                    self.apply(d);
                }
                Some(ev) = recv_opt(&mut link_events) => self.on_link_event(ev),
                Some(token) = recv_opt(&mut persisted) => {
                    if let Some(f) = &mut self.failover {
                        f.node.persisted(token, now_ms());
                    }
                }
                _ = link_tick.tick(), if self.failover.is_some() => {
                    if let Some(f) = &mut self.failover {
                        f.node.tick(&mut self.db, now_ms());
                        f.io.tick();
                    }
                    let since = now_ms();
                    if let Err(e) = self.db.spread_pages(SPREAD_PER_TICK) {
                        tracing::warn!("lease database: cannot spread merged pages yet: {e}");
                    }
                    self.note_busy(since);
                }
                _ = tick.tick() => {
                    let since = now_ms();
                    self.upkeep();
                    self.note_busy(since);
                }
                Some(req) = recv_opt(&mut self.control.requests) => self.on_control(req),
                Some(()) = recv_opt(&mut self.reload) => self.reload_files(),
                Some(reply) = recv_metrics(&mut self.metrics) => self.on_metrics(reply),
            }
            // Replies first, so a mode change the node makes next reaches
            // the flusher after the replies it concerns.
            self.hand_over_batch();
            let since = now_ms();
            self.drive_failover();
            self.note_busy(since);
            if let Some(m) = &mut self.metrics {
                m.leases.absorb(&self.db);
            }
        }
        self.db.durability().flush()?;
        let seq = lease_file::next_export();
        let text = lease_file::render(self.db.iter(), now_ms() / 1000);
        lease_file::write_export(&self.cfg.lease_file, &text, seq)?;
        Ok(())
    }
}

fn has_files(cfg: &Config) -> bool {
    !cfg.dhcp_hostsfiles.is_empty() || !cfg.dhcp_optsfiles.is_empty() || cfg.read_ethers
}

/// `cfg` with what its `dhcp-hostsfile`s and `dhcp-optsfile`s (and
/// /etc/ethers) hold now
/// (read like dnsmasq: a bad line or a missing file is logged, not fatal).
fn with_files(cfg: &Arc<Config>) -> Arc<Config> {
    if !has_files(cfg) {
        return Arc::clone(cfg);
    }
    Arc::new(DhcpFiles::read(cfg).merged_into(cfg))
}

/// Waits on a receiver that may not exist (no failover): then forever.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits for a scrape request, or forever without `metrics-listen`.
async fn recv_metrics(
    m: &mut Option<crate::metrics::DhcpHooks>,
) -> Option<crate::metrics::snapshot::Reply<crate::metrics::DhcpSnapshot>> {
    match m {
        Some(m) => m.requests.recv().await,
        None => std::future::pending().await,
    }
}

/// What the server hands the shell to run a failover node.
pub struct FailoverSetup {
    pub node: NodeConfig,
    pub policy: SharePolicy,
    /// Primary: the bound link listener.
    pub listener: Option<tokio::net::TcpListener>,
    /// Secondary: the primary's link address.
    pub master: Option<std::net::SocketAddr>,
}

struct Failover {
    node: Node,
    io: LinkIo,
    master: Option<std::net::SocketAddr>,
}

/// The failover node's inputs, apart from the node so `select!` can wait
/// on them while the arms use the node.
struct FailoverInputs {
    events: mpsc::Receiver<LinkEvent>,
    persisted: mpsc::Receiver<u64>,
}
