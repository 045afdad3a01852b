//! The thin layer between the DHCP engine and the world: the port-67
//! socket, the interface list, the ping prober, the lease file, and group
//! commit.
//!
//! Group commit: a reply that promises a lease change is not sent until
//! that change is on disk. The engine task hands such replies to the
//! flusher thread in batches; the flusher takes everything queued, makes it
//! durable with one fsync, then sends it all. While one flush runs, the next
//! batch gathers, so the fsync rate stays fixed as the request rate grows.

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
use super::interfaces::{self, Interface};
use super::network::Arrival;
use super::ping::{self, ProbeRequest, ProbeResult};
use super::reply::Destination;
use super::socket::{self, CLIENT_PORT, SERVER_PORT};

/// Datagrams handled per wake-up before durable replies are handed on, so
/// a flood still flushes regularly.
const RECV_BATCH: usize = 256;
const TICK: Duration = Duration::from_millis(500);
/// Lease-file rewrites at most this often (dnsmasq rewrites per change).
const LEASE_FILE_INTERVAL: Duration = Duration::from_secs(1);
const IFACE_REFRESH: Duration = Duration::from_secs(2);

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

struct Outgoing {
    reply: Reply,
    ifname: String,
}

fn deliver(fd: RawFd, out: &Outgoing, stats: &ShellStats) {
    let r = &out.reply;
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
    let to = match &r.to {
        Destination::Relay(ip) => SocketAddrV4::new(*ip, SERVER_PORT),
        Destination::Unicast(ip) => SocketAddrV4::new(*ip, CLIENT_PORT),
        Destination::Broadcast => broadcast,
        Destination::Hardware { ip, htype, chaddr } => {
            match socket::arp_inject(fd, &out.ifname, *ip, *htype, chaddr) {
                Ok(()) => SocketAddrV4::new(*ip, CLIENT_PORT),
                Err(_) => broadcast,
            }
        }
    };
    if let Err(e) = socket::send(fd, &r.packet, to, r.ifindex, r.from) {
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "dhcp", "send to {to} failed: {e}");
    }
}

/// The flusher thread: one fsync per gathered batch, then the batch's replies.
fn flusher(
    rx: std_mpsc::Receiver<Vec<Outgoing>>,
    durability: Durability,
    sock: std::net::UdpSocket,
    stats: Arc<ShellStats>,
) {
    let fd = sock.as_raw_fd();
    while let Ok(mut batch) = rx.recv() {
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
        for out in &batch {
            deliver(fd, out, &stats);
        }
    }
}

pub struct Shell {
    engine: Engine,
    db: LeaseDb,
    cfg: Arc<Config>,
    sock: Arc<UdpSocket>,
    ifaces: HashMap<u32, Interface>,
    ifaces_at: Instant,
    probe_tx: mpsc::Sender<ProbeRequest>,
    probe_rx: mpsc::Receiver<ProbeResult>,
    /// Which interface a parked DISCOVER came in on, by probe token.
    probe_ifname: HashMap<u64, String>,
    flush_tx: std_mpsc::Sender<Vec<Outgoing>>,
    batch: Vec<Outgoing>,
    feed: tokio::sync::broadcast::Receiver<twinmasq_proto::LeaseRecord>,
    lease_file_dirty: bool,
    lease_file_at: Option<Instant>,
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
        let sock = Arc::new(UdpSocket::from_std(std_sock)?);
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
        let feed = db.subscribe();
        let engine = Engine::new(Arc::clone(&cfg), &db);
        let mut shell = Shell {
            engine,
            db,
            cfg,
            sock,
            ifaces: HashMap::new(),
            ifaces_at: Instant::now(),
            probe_tx,
            probe_rx,
            probe_ifname: HashMap::new(),
            flush_tx,
            batch: Vec::new(),
            feed,
            lease_file_dirty: true,
            lease_file_at: None,
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
                self.ifaces = list;
            }
            Err(e) => tracing::warn!("cannot list interfaces: {e}"),
        }
        self.ifaces_at = Instant::now();
    }

    fn arrival(&mut self, ifindex: u32, dst: Ipv4Addr) -> Option<Arrival> {
        if !self.ifaces.contains_key(&ifindex) && self.ifaces_at.elapsed() > Duration::from_secs(1)
        {
            self.refresh_interfaces();
        }
        let iface = self.ifaces.get(&ifindex)?;
        if !interfaces::serves(&self.cfg, iface) {
            return None;
        }
        let to_broadcast = dst == Ipv4Addr::BROADCAST
            || iface.addrs.iter().any(|a| {
                let host_bits = !u32::from(super::network::mask(a.prefix));
                host_bits != 0
                    && u32::from(dst) | host_bits == u32::from(dst)
                    && super::network::same_subnet(dst, a.addr, a.prefix)
            });
        Some(Arrival {
            ifname: iface.name.clone(),
            ifindex,
            addrs: iface.addrs.clone(),
            to_broadcast,
        })
    }

    fn apply(&mut self, decision: Decision, ifname: String) {
        match decision {
            Decision::Reply(reply) => {
                let out = Outgoing { reply, ifname };
                if out.reply.durable {
                    self.batch.push(out);
                } else {
                    deliver(self.sock.as_raw_fd(), &out, &self.stats);
                }
            }
            Decision::Probe { token, addr } => {
                if self.probe_tx.try_send(ProbeRequest { token, addr }).is_ok() {
                    self.probe_ifname.insert(token, ifname);
                } else {
                    // Prober saturated: treat as quiet rather than stall.
                    let d = self.engine.probe_done(token, false, &mut self.db, now_ms());
                    self.apply(d, ifname);
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
                .try_io(Interest::READABLE, || socket::recv(fd, buf))
            {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(target: "dhcp", "receive: {e}");
                    continue;
                }
            };
            let Some(arrival) = self.arrival(meta.ifindex, meta.dst) else {
                self.stats
                    .not_served_interface
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let d = self
                .engine
                .handle(&buf[..meta.len], &arrival, &mut self.db, now_ms());
            self.apply(d, arrival.ifname);
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
        // A lagged feed still means something changed.
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
            self.feed.try_recv()
        {
            self.lease_file_dirty = true;
        }
        let due = self
            .lease_file_at
            .is_none_or(|t| t.elapsed() >= LEASE_FILE_INTERVAL);
        if self.lease_file_dirty && due {
            self.lease_file_dirty = false;
            self.lease_file_at = Some(Instant::now());
            // Render here (the database lives on this task); the write and
            // its fsync happen off the engine's thread.
            let text = lease_file::render(self.db.iter(), now_ms() / 1000);
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
                    let ifname = self.probe_ifname.remove(&res.token).unwrap_or_default();
                    let d = self.engine.probe_done(res.token, res.answered, &mut self.db, now_ms());
                    self.apply(d, ifname);
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
