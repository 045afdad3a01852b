//! The thin layer between the DHCP engine and the world: the port-67
//! socket, the interface list, the ping prober, the lease file, and group
//! commit.
//!
//! Group commit: a reply that promises a lease change is not sent until
//! that change is on disk. The engine task hands such replies to the
//! flusher thread in batches; the flusher takes everything queued, makes it
//! durable with one fsync, then sends it all. While one flush runs, the next
//! batch gathers, so the fsync rate stays bounded as the request rate grows.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::lease::{lease_file, Durability, LeaseDb};

use super::engine::{Decision, Engine, Reply};
use super::network::{mask, same_subnet, Arrival};
use super::ping::{self, ProbeRequest, ProbeResult};
use super::reply::Destination;
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
/// At most one fsync per this interval: while it passes, ACKs gather into
/// the next batch. Costs at most this much latency; saves CPU at high rates.
const FLUSH_MIN_INTERVAL: Duration = Duration::from_millis(5);

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
}

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

fn deliver(fd: RawFd, r: &Reply, stats: &ShellStats) {
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
    let to = match &r.to {
        Destination::Relay(ip) => SocketAddrV4::new(*ip, SERVER_PORT),
        Destination::Unicast(ip) => SocketAddrV4::new(*ip, CLIENT_PORT),
        Destination::Broadcast => broadcast,
        Destination::Hardware { ip, htype, chaddr } => {
            let injected = ifname_of(r.ifindex)
                .is_some_and(|name| socket::arp_inject(fd, &name, *ip, *htype, chaddr).is_ok());
            if injected {
                SocketAddrV4::new(*ip, CLIENT_PORT)
            } else {
                broadcast
            }
        }
    };
    if let Err(e) = pktinfo::send(fd, &r.packet, to, r.ifindex, r.from) {
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "dhcp", "send to {to} failed: {e}");
    }
}

/// The flusher thread: one fsync per gathered batch, then the batch's replies.
fn flusher(
    rx: std_mpsc::Receiver<Vec<Reply>>,
    durability: Durability,
    sock: std::net::UdpSocket,
    stats: Arc<ShellStats>,
) {
    let fd = sock.as_raw_fd();
    let mut last_flush: Option<Instant> = None;
    while let Ok(mut batch) = rx.recv() {
        if let Some(wait) = last_flush.and_then(|t| FLUSH_MIN_INTERVAL.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        last_flush = Some(Instant::now());
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = durability.flush() {
            // Nothing promised leaves unless it is stored: the clients retry.
            stats.flush_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "lease database flush failed, {} replies withheld: {e}",
                batch.len()
            );
            continue;
        }
        stats
            .durable_replies
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for reply in &batch {
            deliver(fd, reply, &stats);
        }
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
    flush_tx: std_mpsc::Sender<Vec<Reply>>,
    batch: Vec<Reply>,
    /// The database's change count when the lease file was last rendered.
    lease_file_generation: Option<u64>,
    lease_file_at: Option<Instant>,
    /// At least a second, and long enough that rendering a large table
    /// takes no more than 1/LEASE_FILE_COST_FACTOR of the engine's time.
    lease_file_interval: Duration,
    pub stats: Arc<ShellStats>,
}

impl Shell {
    /// Binds the socket and starts the flusher thread and the prober. Call
    /// inside a tokio runtime.
    pub fn start(cfg: Arc<Config>, db: LeaseDb, port: u16) -> std::io::Result<Self> {
        let std_sock = socket::bind(port)?;
        // The flusher sends through its own handle, so its descriptor stays
        // valid however the shell's task ends.
        let flush_sock = std_sock.try_clone()?;
        let sock = UdpSocket::from_std(std_sock)?;
        let stats = Arc::new(ShellStats::default());
        let (flush_tx, flush_rx) = std_mpsc::channel();
        let durability = db.durability();
        let fstats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("lease-flush".into())
            .spawn(move || flusher(flush_rx, durability, flush_sock, fstats))?;
        let (probe_tx, probe_req_rx) = mpsc::channel(4096);
        let (probe_res_tx, probe_rx) = mpsc::channel(4096);
        tokio::spawn(ping::run(probe_req_rx, probe_res_tx, ping::PING_WAIT));
        let engine = Engine::new(Arc::clone(&cfg), &db);
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
            lease_file_generation: None,
            lease_file_at: None,
            lease_file_interval: LEASE_FILE_INTERVAL,
            stats,
        };
        shell.refresh_interfaces();
        Ok(shell)
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
            Decision::Reply(reply) => {
                if reply.durable {
                    self.batch.push(reply);
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
        if self.flush_tx.send(batch).is_err() {
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
        if dirty && due {
            self.lease_file_generation = Some(self.db.generation());
            let started = Instant::now();
            self.lease_file_at = Some(started);
            // Render here (the database lives on this task); the write and
            // its fsync happen off the engine's thread.
            let text = lease_file::render(self.db.iter(), now_ms() / 1000);
            self.lease_file_interval =
                LEASE_FILE_INTERVAL.max(started.elapsed() * LEASE_FILE_COST_FACTOR);
            let path = self.cfg.lease_file.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = lease_file::write_atomic(&path, &text) {
                    tracing::error!("{e}");
                }
            });
        }
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
                _ = tick.tick() => self.upkeep(),
            }
            self.hand_over_batch();
        }
        self.db.durability().flush()?;
        let text = lease_file::render(self.db.iter(), now_ms() / 1000);
        lease_file::write_atomic(&self.cfg.lease_file, &text)?;
        Ok(())
    }
}
