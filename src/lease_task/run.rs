//! The lease task's tokio loop: a thin shell around [`LeaseTask`] that
//! gives it the port-67 socket, the interface list, the ping prober, the
//! failover link's I/O, the flusher thread (group commit), the lease-file
//! export schedule and the control, metrics and reload channels. Every
//! decision is the core's; this file carries out its outputs.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::clock::now_ms;
use crate::config::dhcp_files::DhcpFiles;
use crate::config::Config;
use crate::dhcp::engine::Engine;
use crate::dhcp::network::Arrival;
use crate::dhcp::ping::{self, ProbeRequest, ProbeResult};
use crate::dhcp::socket;
use crate::failover::link_io::{LinkEvent, LinkIo};
use crate::failover::setup::FailoverSetup;
use crate::lease::{lease_file, LeaseDb, SnapshotRequest};
use crate::net::interfaces::{self, Interface};
use crate::net::ipv4::{mask, same_subnet};
use crate::net::pktinfo;

use super::core::{LeaseTask, Output, ShellStats};
use super::flusher::{Flusher, Job, Persisted};

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

/// Work that kept the lease task this long (a sync page, a table to send
/// back, the lease-file export, spreading merged pages) excuses the
/// failover partner's silence meanwhile.
const BUSY_MS: u64 = 100;

pub struct Shell {
    task: LeaseTask,
    cfg: Arc<Config>,
    sock: UdpSocket,
    ifaces: HashMap<u32, Interface>,
    /// Per served interface, what the engine is told with each request.
    arrivals: HashMap<u32, Arrival>,
    ifaces_at: Instant,
    probe_tx: mpsc::Sender<ProbeRequest>,
    probe_rx: mpsc::Receiver<ProbeResult>,
    flush_tx: std_mpsc::Sender<Job>,
    persisted: mpsc::Receiver<Persisted>,
    link: Option<Link>,
    /// The database's change count when the lease file was last rendered.
    lease_file_generation: Option<u64>,
    lease_file_at: Option<Instant>,
    /// At least a second, and long enough that rendering a large table
    /// takes no more than 1/LEASE_FILE_COST_FACTOR of the task's time.
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
    /// Readers of the lease feed on other threads (DNS, the script) that
    /// fell behind ask here for a copy of the table.
    snapshots: mpsc::UnboundedReceiver<SnapshotRequest>,
}

/// The failover link's I/O and where its events arrive.
struct Link {
    io: LinkIo,
    events: Option<mpsc::Receiver<LinkEvent>>,
    master: Option<std::net::SocketAddr>,
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
        // Taken once, before the task owns the database; a second shell on
        // one database would get none (and no reader would get a copy).
        let snapshots = db
            .take_snapshot_requests()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        // The flusher sends through its own handle, so its descriptor stays
        // valid however the loop ends.
        let flush_sock = std_sock.try_clone()?;
        let sock = UdpSocket::from_std(std_sock)?;
        let base_cfg = Arc::clone(&cfg);
        let cfg = with_files(&base_cfg);
        let durability = db.durability();
        let mut link = None;
        let node = failover.map(|f| {
            let (events_tx, events) = mpsc::channel(1024);
            let io = LinkIo::new(events_tx);
            if let Some(listener) = f.listener {
                io.listen(listener);
            }
            link = Some(Link {
                io,
                events: Some(events),
                master: f.master,
            });
            (f.node, f.policy)
        });
        let task = LeaseTask::new(Arc::clone(&cfg), db, node, rand::random(), now_ms());
        let stats = Arc::clone(task.stats());
        let (flush_tx, flush_rx) = std_mpsc::channel();
        let (persisted_tx, persisted) = mpsc::channel(1024);
        let flusher = Flusher::new(durability, flush_sock, Arc::clone(&stats), persisted_tx);
        std::thread::Builder::new()
            .name("lease-flush".into())
            .spawn(move || flusher.run(flush_rx))?;
        let (probe_tx, probe_req_rx) = mpsc::channel(4096);
        let (probe_res_tx, probe_rx) = mpsc::channel(4096);
        tokio::spawn(ping::run(probe_req_rx, probe_res_tx, ping::PING_WAIT));
        let mut shell = Shell {
            task,
            cfg,
            sock,
            ifaces: HashMap::new(),
            arrivals: HashMap::new(),
            ifaces_at: Instant::now(),
            probe_tx,
            probe_rx,
            flush_tx,
            persisted,
            link,
            lease_file_generation: None,
            lease_file_at: None,
            lease_file_interval: LEASE_FILE_INTERVAL,
            stats,
            control: Default::default(),
            metrics: None,
            base_cfg,
            reload: None,
            snapshots,
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
        self.task.reload(Arc::clone(&self.cfg));
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
        let leases = crate::metrics::leases::RangeLeases::new(bounds, self.task.db());
        self.metrics = Some(crate::metrics::DhcpHooks {
            requests: rx,
            leases,
        });
    }

    fn failover_status(&self) -> Option<crate::failover::status::FailoverStatus> {
        let master = self.link.as_ref().and_then(|l| l.master);
        self.task
            .failover_status()
            .map(|s| crate::failover::status::FailoverStatus::from_node(&s, master))
    }

    fn on_metrics(&mut self, reply: crate::metrics::snapshot::Reply<crate::metrics::DhcpSnapshot>) {
        let failover = self.failover_status();
        let Some(m) = &mut self.metrics else {
            return;
        };
        m.leases.absorb(self.task.db());
        let snapshot = crate::metrics::DhcpSnapshot::build(
            self.task.engine(),
            self.task.db(),
            &self.stats,
            &m.leases,
            failover,
            now_ms(),
        );
        // The scrape may have given up meanwhile.
        let _ = reply.send(snapshot);
    }

    pub fn engine(&self) -> &Engine {
        self.task.engine()
    }

    pub fn db(&self) -> &LeaseDb {
        self.task.db()
    }

    pub fn lease_task(&self) -> &LeaseTask {
        &self.task
    }

    fn refresh_interfaces(&mut self) {
        match interfaces::list() {
            Ok(list) => {
                let local: Vec<Ipv4Addr> = list
                    .values()
                    .flat_map(|i| i.addrs.iter().map(|a| a.addr))
                    .collect();
                self.task.set_local_addresses(&local);
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
                    self.task.note_oversized();
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
            self.task.datagram(&buf[..meta.len], arrival, now_ms());
        }
    }

    fn upkeep(&mut self) {
        self.task.tick(now_ms(), Instant::now());
        if self.ifaces_at.elapsed() >= IFACE_REFRESH {
            self.refresh_interfaces();
        }
        let db = self.task.db();
        let dirty = self.lease_file_generation != Some(db.generation());
        let due = self
            .lease_file_at
            .is_none_or(|t| t.elapsed() >= self.lease_file_interval);
        // Not while the database cannot write: the export must never list a
        // lease the database may lose (a start refuses such a database).
        if dirty && due && !db.is_faulted() {
            self.lease_file_generation = Some(db.generation());
            let started = Instant::now();
            self.lease_file_at = Some(started);
            // Render here (the database lives on this task); the write and
            // its fsync happen off the task's thread.
            let seq = lease_file::next_export();
            let text = lease_file::render(db.iter(), now_ms() / 1000);
            self.lease_file_interval =
                LEASE_FILE_INTERVAL.max(started.elapsed() * LEASE_FILE_COST_FACTOR);
            let path = self.cfg.lease_file.clone();
            let durability = db.durability();
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

    /// Carries out what the lease task asks for.
    fn carry_out(&mut self) {
        let fd = self.sock.as_raw_fd();
        while let Some(out) = self.task.poll(now_ms()) {
            match out {
                Output::Transmit(mut reply) => {
                    if !reply.age(now_ms()) {
                        self.stats.stale_replies.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    socket::resolve_hardware(fd, &mut reply);
                    if !socket::deliver(fd, &reply) {
                        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Probe { token, addr } => {
                    if self
                        .probe_tx
                        .try_send(ProbeRequest { token, addr })
                        .is_err()
                    {
                        self.task.probe_refused(token, now_ms());
                    }
                }
                Output::Persist {
                    token,
                    mut send,
                    waiting,
                } => {
                    // Here: only this thread may write the ARP entry.
                    for reply in &mut send {
                        socket::resolve_hardware(fd, reply);
                    }
                    let job = Job {
                        token,
                        send,
                        waiting,
                    };
                    if self.flush_tx.send(job).is_err() {
                        tracing::error!("lease flusher has stopped: replies withheld");
                    }
                }
                Output::LinkConnect => match self.link.as_ref().and_then(|l| l.master) {
                    Some(to) => {
                        if let Some(l) = &mut self.link {
                            l.io.connect(to);
                        }
                    }
                    None => self.task.link_connect_failed(now_ms()),
                },
                Output::LinkWrite(conn, bytes) => {
                    let written = self.link.as_mut().is_some_and(|l| l.io.write(conn, bytes));
                    if !written {
                        self.task.link_closed(conn, now_ms());
                    }
                }
                Output::LinkClose(conn) => {
                    if let Some(l) = &mut self.link {
                        l.io.close(conn);
                    }
                }
            }
        }
    }

    fn on_link_event(&mut self, ev: LinkEvent) {
        let Some(link) = &mut self.link else {
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
                link.io.opened(conn, peer, writer, inbound);
                self.task.link_connected(conn, rand::random(), now);
            }
            LinkEvent::Data { conn, bytes } => {
                self.task.link_data(conn, &bytes, now);
                link.io.progress(conn, self.task.handshake(conn));
                self.note_busy(now);
            }
            LinkEvent::Closed { conn } => {
                link.io.close(conn);
                self.task.link_closed(conn, now);
            }
            LinkEvent::ConnectFailed { reason } => {
                tracing::debug!("failover: cannot reach the primary: {reason}");
                self.task.link_connect_failed(now);
            }
        }
    }

    /// Work since `since` kept this task from listening: if that was long,
    /// the link's silence meanwhile is ours, not the partner's.
    fn note_busy(&mut self, since: u64) {
        let now = now_ms();
        if now.saturating_sub(since) >= BUSY_MS {
            self.task.was_busy(now);
        }
    }

    /// Answers a control-socket request: the database, the engine and the
    /// failover node all live in the lease task. A partner-down
    /// declaration changes the node's mode; `carry_out`, which runs after
    /// every wake-up, hands that on to the engine and the gate.
    fn on_control(&mut self, req: crate::control::ControlRequest) {
        use crate::control::{ControlReply, RequestKind};
        let now = now_ms();
        let reply = match req.kind {
            RequestKind::Status => {
                let failover = self.failover_status();
                let report = self.control.status(
                    self.task.db(),
                    self.task.engine(),
                    &self.stats,
                    failover,
                    now,
                );
                ControlReply::Status(Box::new(report))
            }
            RequestKind::Leases => ControlReply::Leases {
                node_id: self.task.db().node_id(),
                records: self.task.db().iter().collect(),
            },
            RequestKind::PartnerDown => match self.task.declare_partner_down(now) {
                None => ControlReply::Error("failover is not configured".into()),
                Some(declared) => match self.failover_status() {
                    Some(status) => crate::control::partner_down_reply(declared, &status, now),
                    None => ControlReply::Error("failover is not configured".into()),
                },
            },
        };
        // The client may have given up meanwhile; then nobody listens.
        let _ = req.reply.send(reply);
    }

    pub fn failover_node(&self) -> Option<&crate::failover::node::Node> {
        self.task.node()
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
        let mut link_events = self.link.as_mut().and_then(|l| l.events.take());
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
                    self.task.probe_done(res.token, res.answered, now_ms());
                }
                Some(ev) = recv_opt(&mut link_events) => self.on_link_event(ev),
                Some(p) = self.persisted.recv() => {
                    self.task.persisted(p.token, p.ok, now_ms(), Instant::now());
                }
                _ = link_tick.tick(), if self.link.is_some() => {
                    self.task.link_tick(now_ms(), Instant::now());
                    if let Some(l) = &self.link {
                        l.io.tick();
                    }
                    let since = now_ms();
                    if let Err(e) = self.task.spread_pages(SPREAD_PER_TICK) {
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
                Some(req) = self.snapshots.recv() => {
                    let since = now_ms();
                    // The reader may have ended meanwhile.
                    let _ = req.send(self.task.db().iter().collect());
                    self.note_busy(since);
                }
            }
            let since = now_ms();
            self.carry_out();
            self.note_busy(since);
            if let Some(m) = &mut self.metrics {
                m.leases.absorb(self.task.db());
            }
        }
        self.task.db().durability().flush()?;
        // Replies still waiting for the disk are durable now.
        self.task.persisted_all(now_ms(), Instant::now());
        self.carry_out();
        let seq = lease_file::next_export();
        let text = lease_file::render(self.task.db().iter(), now_ms() / 1000);
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
