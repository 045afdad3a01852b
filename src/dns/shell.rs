//! The DNS engine's sockets: UDP and TCP listeners on `port` (IPv4 and
//! IPv6), upstream UDP sockets (`upstream`: one per attempt on a random
//! port, or the `query-port` one), TCP to upstreams when an answer was
//! truncated, the lease feed that keeps lease names current, and the
//! resolv-file poll.
//!
//! A query that arrives at an `auth-server` interface or address gets the
//! authoritative service (authoritative zones only, as dnsmasq); the
//! others the normal one.
//!
//! Everything the engine decides comes back as `Action`s; this module only
//! carries them out.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use twinmasq_proto::LeaseRecord;

use crate::clock::now_ms;
use crate::config::servers_file::ServersFile;
use crate::config::Config;
use crate::lease::{FeedItem, FeedReader};
use crate::net::interfaces::{self, Interface};
use crate::net::mmsg::{self, Family};
use crate::net::{pktinfo, pktinfo6};

use super::authority::{Authority, Service};
use super::engine::{Action, ClientRef, DnsEngine, Transport};
use super::listen::{
    arrival_net, interface_nets, listen_addrs, listen_addrs6, local_service_ok, served_at,
    serves_dns, serves_dns6, service_at,
};
use super::moderation::Moderation;
use super::resolv::{self, ResolvWatch};
use super::tcp_frames::FrameReader;
use super::upstream::{self, Upstreams};
use super::zone::ZoneSerial;

/// A TCP client that sends nothing for this long is dropped (no slowloris).
const TCP_IDLE: Duration = Duration::from_secs(10);
const UPSTREAM_TCP_TIMEOUT: Duration = Duration::from_secs(5);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const IFACE_REFRESH: Duration = Duration::from_secs(5);
/// Datagrams taken from a listener by one `recvmmsg`.
const RECV_BATCH: usize = 32;
/// A UDP query may be as long as any UDP datagram, as before batching.
const MAX_UDP_QUERY: usize = 65535;
/// Our own IPv6 addresses that queries arrived at, remembered so that a UDP
/// client's reference (a u64) can name the one to answer from. Only our own
/// addresses can be destinations, so this stays small; the cap is a guard.
const MAX_LOCAL_V6: usize = 4096;
/// Datagrams served from one listener before the runtime's other work
/// (timers, TCP, upstream answers, the lease feed) gets a turn.
const MAX_PER_WAKE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot bind DNS {what} socket on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("DNS: {0}")]
    Io(#[from] std::io::Error),
}

/// The lease names the DNS engine needs: every record at start, then each
/// change from the lease database's feed.
pub struct LeaseSource {
    pub initial: Vec<LeaseRecord>,
    pub feed: FeedReader,
}

/// What the service's signal handler asks of the DNS task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsSignal {
    /// SIGHUP: re-read the hosts files (with `no-poll`, the resolv file
    /// too) and clear the cache.
    Reload,
    /// SIGUSR1: log the cache and query counters.
    LogStats,
}

/// Reads the hosts files the config names: /etc/hosts unless `no-hosts`,
/// and every `addn-hosts` file (or every file in an `addn-hosts`
/// directory). A file that cannot be read is logged and skipped, as dnsmasq
/// does.
pub fn read_hosts(cfg: &Config) -> Vec<(PathBuf, String)> {
    let mut paths = Vec::new();
    if !cfg.dns.no_hosts {
        paths.push(cfg.dns.hosts_file.clone());
    }
    for p in &cfg.dns.addn_hosts {
        match std::fs::read_dir(p) {
            Ok(dir) => {
                let mut files: Vec<PathBuf> = dir
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                paths.extend(files);
            }
            Err(_) => paths.push(p.clone()),
        }
    }
    paths
        .into_iter()
        .filter_map(|p| match std::fs::read_to_string(&p) {
            Ok(text) => Some((p, text)),
            Err(e) => {
                tracing::warn!("cannot read hosts file {}: {e}", p.display());
                None
            }
        })
        .collect()
}

fn own_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

enum Event {
    TcpQuery {
        conn: u64,
        peer: SocketAddr,
        bytes: Vec<u8>,
        /// Our side of the connection: which service it reached.
        local: SocketAddr,
        reply: mpsc::Sender<Vec<Vec<u8>>>,
    },
    TcpClosed {
        conn: u64,
    },
    UpstreamTcp {
        token: u64,
        reply: Option<Vec<u8>>,
    },
}

/// A non-blocking, address-reusing socket of the address's family.
fn new_socket(
    addr: SocketAddr,
    ty: socket2::Type,
    proto: socket2::Protocol,
    what: &'static str,
) -> Result<socket2::Socket, DnsError> {
    let err = |source| DnsError::Bind { what, addr, source };
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, ty, Some(proto)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    if addr.is_ipv6() {
        // IPv4 has its own listeners on the same port.
        s.set_only_v6(true).map_err(err)?;
    }
    Ok(s)
}

fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket, DnsError> {
    let err = |source| DnsError::Bind {
        what: "UDP",
        addr,
        source,
    };
    let s = new_socket(addr, socket2::Type::DGRAM, socket2::Protocol::UDP, "UDP")?;
    let _ = s.set_recv_buffer_size(4 << 20);
    if addr.is_ipv4() {
        pktinfo::enable(s.as_raw_fd()).map_err(err)?;
    } else {
        pktinfo6::enable(s.as_raw_fd()).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    Ok(s.into())
}

/// A UDP reply waiting for the batch's `sendmmsg`.
struct UdpReply {
    listener: usize,
    bytes: Vec<u8>,
    to: SocketAddr,
    ifindex: u32,
    from: IpAddr,
}

/// Our IPv6 addresses as small numbers, for [`udp_conn`].
#[derive(Default)]
struct LocalV6 {
    by_addr: HashMap<Ipv6Addr, u32>,
    addrs: Vec<Ipv6Addr>,
}

impl LocalV6 {
    /// None when the table is full (then the kernel picks the source).
    fn index(&mut self, a: Ipv6Addr) -> Option<u32> {
        if let Some(i) = self.by_addr.get(&a) {
            return Some(*i);
        }
        if self.addrs.len() >= MAX_LOCAL_V6 {
            return None;
        }
        let i = u32::try_from(self.addrs.len()).ok()?;
        self.addrs.push(a);
        self.by_addr.insert(a, i);
        Some(i)
    }

    fn addr(&self, i: u32) -> Ipv6Addr {
        self.addrs
            .get(i as usize)
            .copied()
            .unwrap_or(Ipv6Addr::UNSPECIFIED)
    }
}

struct Shell {
    /// The config as loaded, before the servers file's lines.
    base_cfg: Arc<Config>,
    /// `base_cfg` with the servers file's servers: what the DNS side uses.
    cfg: Arc<Config>,
    engine: DnsEngine<Authority>,
    listeners: Vec<Arc<UdpSocket>>,
    /// Per listener: IPv6 (read and answered with IPV6_PKTINFO).
    listener_v6: Vec<bool>,
    local_v6: LocalV6,
    upstream: Upstreams,
    /// The resolv files, unless `no-resolv`.
    resolv: Option<ResolvWatch>,
    /// The servers the resolv file named at its last read.
    resolv_servers: Vec<SocketAddr>,
    ifaces: HashMap<u32, Interface>,
    tcp_conns: HashMap<u64, mpsc::Sender<Vec<Vec<u8>>>>,
    events: mpsc::Sender<Event>,
    /// UDP replies to send together once the current batch is answered.
    udp_out: Vec<UdpReply>,
}

/// For a UDP client, which of our sockets it came in on and how to answer
/// from the address it asked: the IPv4 address itself, or for IPv6 its
/// number in [`LocalV6`].
fn udp_conn(listener: usize, ifindex: u32, local: u32) -> u64 {
    ((listener as u64) << 48) | ((u64::from(ifindex) & 0xffff) << 32) | u64::from(local)
}

fn udp_conn_parts(conn: u64) -> (usize, u32, u32) {
    (
        (conn >> 48) as usize,
        ((conn >> 32) & 0xffff) as u32,
        conn as u32,
    )
}

impl Shell {
    fn carry_out(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Reply { client, bytes } => match client.transport {
                    Transport::Udp => {
                        let (listener, ifindex, local) = udp_conn_parts(client.conn);
                        let from = if self.listener_v6.get(listener).copied().unwrap_or(false) {
                            IpAddr::V6(self.local_v6.addr(local))
                        } else {
                            IpAddr::V4(Ipv4Addr::from(local))
                        };
                        self.udp_out.push(UdpReply {
                            listener,
                            bytes,
                            to: client.addr,
                            ifindex,
                            from,
                        });
                    }
                    Transport::Tcp => {
                        if let Some(tx) = self.tcp_conns.get(&client.conn) {
                            let _ = tx.try_send(vec![bytes]);
                        }
                    }
                },
                Action::ReplyMany { client, messages } => {
                    // Only TCP carries several messages (zone transfers).
                    if let Some(tx) = self.tcp_conns.get(&client.conn) {
                        let _ = tx.try_send(messages);
                    }
                }
                Action::Upstream {
                    server,
                    socket,
                    bytes,
                } => self.upstream.send(socket, server, &bytes),
                Action::CloseUpstream { socket } => self.upstream.close(socket),
                Action::UpstreamTcp {
                    server,
                    token,
                    bytes,
                } => {
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let reply = tokio::time::timeout(
                            UPSTREAM_TCP_TIMEOUT,
                            tcp_exchange(server, &bytes),
                        )
                        .await;
                        let reply = reply.ok().and_then(|r| r.ok());
                        let _ = events.send(Event::UpstreamTcp { token, reply }).await;
                    });
                }
            }
        }
    }

    /// Lease names live apart from the hosts tables and are kept.
    fn on_signal(&mut self, sig: DnsSignal) {
        match sig {
            DnsSignal::Reload => {
                // dnsmasq: "If --no-poll is set SIGHUP also re-reads
                // /etc/resolv.conf"; otherwise the poll has it already.
                let resolv = self.cfg.dns.no_poll && self.reread_resolv(true);
                if self.reread_servers_file() || resolv {
                    self.use_servers();
                }
                let hosts = read_hosts(&self.cfg);
                self.engine.local_mut().reload_hosts(&hosts);
                self.engine.clear_cache();
                for (path, _) in &hosts {
                    tracing::info!("read {}", path.display());
                }
                for (path, bad) in self.engine.local().bad_hosts_lines() {
                    tracing::warn!("{}: {bad}", path.display());
                }
                tracing::info!("cleared cache");
            }
            DnsSignal::LogStats => {
                let s = self.engine.stats();
                tracing::info!(
                    "cache size {}, {} entries in use, {} hits, {} misses",
                    self.cfg.dns.cache_size,
                    self.engine.cache_len(),
                    s.cache_hits,
                    s.cache_misses
                );
                tracing::info!(
                    "queries {}, forwarded {}, joined a pending forward {}, answered locally {}, upstream timeouts {}, pending {}, upstream sockets {}",
                    s.queries,
                    s.forwarded,
                    s.coalesced,
                    s.local_answers,
                    s.upstream_timeouts,
                    self.engine.pending_len(),
                    self.upstream.open_count()
                );
            }
        }
    }

    /// Looks at the resolv files (`force`: reads the newest one even if
    /// unchanged) and keeps the servers of one that changed; true then, and
    /// the caller puts them to use.
    fn reread_resolv(&mut self, force: bool) -> bool {
        let Some(r) = self.resolv.as_mut().and_then(|w| w.poll(force)) else {
            return false;
        };
        self.resolv_servers = r.servers;
        true
    }

    /// SIGHUP with a `servers-file`: its lines replace the ones read
    /// before. The domain routes change at once; true when the normal
    /// servers are to be put to use.
    fn reread_servers_file(&mut self) -> bool {
        if self.base_cfg.dns.servers_file.is_none() {
            return false;
        }
        self.cfg = Arc::new(ServersFile::read(&self.base_cfg).apply(&self.base_cfg));
        self.engine.local_mut().set_routes(&self.cfg);
        true
    }

    /// Puts the normal servers to use: the config's (and servers file's),
    /// then the resolv file's.
    fn use_servers(&mut self) {
        let servers = resolv::combine(&self.cfg, &self.resolv_servers);
        resolv::log_servers(&servers);
        self.engine.set_servers(servers);
    }

    /// Sends the waiting UDP replies, one `sendmmsg` per listener and up to
    /// its batch size.
    fn flush_udp(&mut self) {
        if self.udp_out.is_empty() {
            return;
        }
        let mut listeners: Vec<usize> = self.udp_out.iter().map(|r| r.listener).collect();
        listeners.sort_unstable();
        listeners.dedup();
        for listener in listeners {
            let Some(sock) = self.listeners.get(listener) else {
                continue;
            };
            let mine = self.udp_out.iter().filter(|r| r.listener == listener);
            if self.listener_v6.get(listener).copied().unwrap_or(false) {
                send_replies::<pktinfo6::V6>(sock.as_raw_fd(), mine);
            } else {
                send_replies::<pktinfo::V4>(sock.as_raw_fd(), mine);
            }
        }
        self.udp_out.clear();
    }

    /// Answers what listener `i` holds, a batch at a time, until it is
    /// empty or [`MAX_PER_WAKE`] datagrams were served; returns how many.
    fn drain_listener<B: ListenBatch>(&mut self, i: usize, batch: &mut B) -> usize {
        let Some(sock) = self.listeners.get(i).map(Arc::clone) else {
            return 0;
        };
        let fd = sock.as_raw_fd();
        let mut total = 0;
        while total < MAX_PER_WAKE {
            let mut got = 0;
            let r = sock.try_io(Interest::READABLE, || {
                got = batch.recv(fd)?;
                if got < batch.capacity() {
                    // recvmmsg stops short only when the queue ran dry:
                    // tell tokio, so that it waits for the next datagram's
                    // edge instead of asking again. One arriving meanwhile
                    // raises a fresh event, which this does not clear.
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            for j in 0..got {
                batch.serve(self, i, j);
            }
            self.flush_udp();
            total += got;
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(target: "dns", "receive on listener {i}: {e}");
                    break;
                }
            }
        }
        total
    }

    fn refresh_interfaces(&mut self) {
        match interfaces::list_all() {
            Ok(l) => {
                self.ifaces = l;
                let nets = interface_nets(&self.ifaces);
                self.engine.local_mut().set_interface_nets(&nets);
            }
            Err(e) => tracing::warn!("cannot list interfaces: {e}"),
        }
    }

    fn on_udp_query(&mut self, listener: usize, buf: &[u8], meta: pktinfo::RecvMeta) {
        let client = SocketAddr::V4(meta.src);
        let served = self
            .ifaces
            .get(&meta.ifindex)
            .is_some_and(|i| serves_dns(&self.cfg, i));
        if !served || !local_service_ok(&self.cfg, &self.ifaces, client.ip(), meta.ifindex) {
            return;
        }
        let conn = udp_conn(listener, meta.ifindex, u32::from(meta.dst));
        let service = service_at(&self.cfg, &self.ifaces, meta.dst);
        let actions = self.engine.query_at(
            buf,
            ClientRef {
                addr: client,
                transport: Transport::Udp,
                conn,
                arrival: arrival_net(&self.cfg, &self.ifaces, IpAddr::V4(meta.dst)),
            },
            service,
            now_ms(),
        );
        self.carry_out(actions);
    }

    /// As [`Self::on_udp_query`], for IPv6. The authoritative service is
    /// IPv4-only (an IPv6 `auth-server` is refused by the config).
    fn on_udp_query6(&mut self, listener: usize, buf: &[u8], meta: pktinfo6::RecvMeta6) {
        // A query to a multicast group we are in (all-nodes) has no
        // address of ours to answer from.
        if meta.dst.is_multicast() {
            return;
        }
        let client = SocketAddr::V6(meta.src);
        let served = self
            .ifaces
            .get(&meta.ifindex)
            .is_some_and(|i| serves_dns6(&self.cfg, i, meta.dst));
        if !served || !local_service_ok(&self.cfg, &self.ifaces, client.ip(), meta.ifindex) {
            return;
        }
        // A full table leaves the reply's source to the kernel: an index
        // past the table reads back as `::`.
        let local = self.local_v6.index(meta.dst).unwrap_or(u32::MAX);
        let conn = udp_conn(listener, meta.ifindex, local);
        let actions = self.engine.query_at(
            buf,
            ClientRef {
                addr: client,
                transport: Transport::Udp,
                conn,
                arrival: None,
            },
            Service::Recursive,
            now_ms(),
        );
        self.carry_out(actions);
    }
}

/// One listener's replies of family `F` in one `sendmmsg` batch; a reply
/// of the other family (which its listener cannot have produced) is left
/// out.
fn send_replies<'a, F: Family>(
    fd: std::os::fd::RawFd,
    replies: impl Iterator<Item = &'a UdpReply>,
) {
    let out = replies.filter_map(|r| {
        Some(mmsg::Outgoing::<'_, F> {
            packet: &r.bytes,
            to: F::addr_of(r.to)?,
            ifindex: r.ifindex,
            from: F::ip_of(r.from)?,
        })
    });
    mmsg::send_batch(fd, out, |to, e| {
        tracing::debug!(target: "dns", "reply to {to:?}: {e}");
    });
}

/// A listener's receive batch, by address family: the drain loop is the
/// same, each family's datagrams go to their own handler.
trait ListenBatch {
    fn recv(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<usize>;
    fn capacity(&self) -> usize;
    /// Answers datagram `j` of the last `recv`, which came in on `listener`.
    fn serve(&self, shell: &mut Shell, listener: usize, j: usize);
}

impl ListenBatch for pktinfo::RecvBatch {
    fn recv(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<usize> {
        pktinfo::RecvBatch::recv(self, fd)
    }
    fn capacity(&self) -> usize {
        pktinfo::RecvBatch::capacity(self)
    }
    fn serve(&self, shell: &mut Shell, listener: usize, j: usize) {
        if let Some((buf, meta)) = self.get(j) {
            shell.on_udp_query(listener, buf, meta);
        }
    }
}

impl ListenBatch for pktinfo6::RecvBatch6 {
    fn recv(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<usize> {
        pktinfo6::RecvBatch6::recv(self, fd)
    }
    fn capacity(&self) -> usize {
        pktinfo6::RecvBatch6::capacity(self)
    }
    fn serve(&self, shell: &mut Shell, listener: usize, j: usize) {
        if let Some((buf, meta)) = self.get(j) {
            shell.on_udp_query6(listener, buf, meta);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server).await?;
    let len =
        u16::try_from(query.len()).map_err(|_| std::io::Error::other("query too long for TCP"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(query).await?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut reply).await?;
    Ok(reply)
}

/// One client TCP connection: length-prefixed queries in, replies out,
/// dropped when no whole query or reply has passed for `TCP_IDLE` (a
/// trickle of partial bytes does not keep it), or when the engine goes away.
async fn tcp_client(
    mut stream: TcpStream,
    peer: SocketAddr,
    conn: u64,
    events: mpsc::Sender<Event>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    // One item per query: a reply, or the messages of a zone transfer; none
    // closes the connection.
    let (reply_tx, mut reply_rx) = mpsc::channel::<Vec<Vec<u8>>>(16);
    let (mut rd, mut wr) = stream.split();
    let mut frames = FrameReader::default();
    let mut chunk = vec![0u8; 4096];
    let idle = tokio::time::sleep(TCP_IDLE);
    tokio::pin!(idle);
    'conn: loop {
        tokio::select! {
            // `read` is cancel-safe: a reply winning the race costs no byte.
            r = rd.read(&mut chunk) => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                frames.push(&chunk[..n]);
                while let Some(q) = frames.next_message() {
                    idle.as_mut().reset(tokio::time::Instant::now() + TCP_IDLE);
                    let ev = Event::TcpQuery { conn, peer, local, bytes: q, reply: reply_tx.clone() };
                    if events.send(ev).await.is_err() {
                        break 'conn;
                    }
                }
            }
            Some(messages) = reply_rx.recv() => {
                // Nothing to send: the client is refused.
                if messages.is_empty() {
                    break;
                }
                // Framed into one buffer: one write for a whole transfer.
                let mut out = Vec::with_capacity(messages.iter().map(|m| m.len() + 2).sum());
                for m in &messages {
                    let Ok(len) = u16::try_from(m.len()) else { continue };
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(m);
                }
                if wr.write_all(&out).await.is_err() {
                    break;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + TCP_IDLE);
            }
            () = &mut idle => break,
        }
    }
    let _ = events.send(Event::TcpClosed { conn }).await;
}

/// The DNS sockets, bound before anything is served so that a port that is
/// taken stops the start-up with dnsmasq's "network" exit code.
pub struct Bound {
    ifaces: HashMap<u32, Interface>,
    listeners: Vec<Arc<UdpSocket>>,
    listener_v6: Vec<bool>,
    tcp: Vec<TcpListener>,
    /// The `query-port` sockets; per-attempt ones are opened as needed.
    shared_upstream: Option<upstream::Shared>,
    serial: ZoneSerial,
}

impl Bound {
    /// The authoritative zones' SOA serial as it moves, for whoever reports
    /// or replicates it (the failover link); 0 until `run` starts.
    pub fn zone_serial(&self) -> ZoneSerial {
        self.serial.clone()
    }
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DnsError> {
    let err = |source| DnsError::Bind {
        what: "TCP",
        addr,
        source,
    };
    let s = new_socket(addr, socket2::Type::STREAM, socket2::Protocol::TCP, "TCP")?;
    s.bind(&addr.into()).map_err(err)?;
    s.listen(128).map_err(err)?;
    TcpListener::from_std(s.into()).map_err(err)
}

/// A bind that failed because IPv6, or the address, is not (yet) there.
fn v6_unavailable(e: &DnsError) -> bool {
    let DnsError::Bind { source, .. } = e else {
        return false;
    };
    matches!(
        source.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Binds the listeners and the upstream sockets; None when `port=0`.
/// Call inside the runtime.
pub fn bind(cfg: &Config) -> Result<Option<Bound>, DnsError> {
    if cfg.dns.port == 0 {
        return Ok(None);
    }
    let ifaces = interfaces::list_all()?;
    let mut listeners = Vec::new();
    let mut tcp = Vec::new();
    for ip in listen_addrs(cfg, &ifaces) {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, cfg.dns.port));
        listeners.push(Arc::new(UdpSocket::from_std(bind_udp(addr)?)?));
        tcp.push(bind_tcp(addr)?);
    }
    let mut listener_v6 = vec![false; listeners.len()];
    for (addr, named) in listen_addrs6(cfg, &ifaces) {
        let addr = SocketAddr::V6(addr);
        match bind_udp(addr).and_then(|u| Ok((u, bind_tcp(addr)?))) {
            Ok((u, t)) => {
                listeners.push(Arc::new(UdpSocket::from_std(u)?));
                listener_v6.push(true);
                tcp.push(t);
            }
            Err(e) if !named && v6_unavailable(&e) => {
                // No IPv6 on this host, or an address still in duplicate
                // address detection: serve IPv4 (and the other addresses).
                tracing::warn!("{e}");
            }
            Err(e) => return Err(e),
        }
    }
    let shared_upstream = upstream::bind_shared(cfg)?;
    Ok(Some(Bound {
        ifaces,
        listeners,
        listener_v6,
        tcp,
        shared_upstream,
        serial: ZoneSerial::default(),
    }))
}

/// The engine's counters for a metrics scrape.
fn metrics_snapshot(engine: &DnsEngine<Authority>) -> crate::metrics::DnsSnapshot {
    crate::metrics::DnsSnapshot {
        stats: engine.stats().clone(),
        cache: engine.cache_stats(),
        cache_entries: engine.cache_len() as u64,
        cache_capacity: engine.cache_capacity() as u64,
        pending: engine.pending_len() as u64,
    }
}

/// Waits for a scrape request, or forever without `metrics-listen`.
async fn recv_metrics(
    m: &mut Option<crate::metrics::DnsHooks>,
) -> Option<crate::metrics::snapshot::Reply<crate::metrics::DnsSnapshot>> {
    match m {
        Some(m) => m.requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Serves DNS on the bound sockets until `shutdown` resolves.
pub async fn run(
    bound: Bound,
    cfg: Arc<Config>,
    leases: LeaseSource,
    mut signals: mpsc::Receiver<DnsSignal>,
    mut metrics: Option<crate::metrics::DnsHooks>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DnsError> {
    let Bound {
        ifaces,
        listeners,
        listener_v6,
        tcp,
        shared_upstream,
        serial,
    } = bound;

    let base_cfg = cfg;
    let cfg = Arc::new(ServersFile::read(&base_cfg).apply(&base_cfg));
    let hosts = read_hosts(&cfg);
    let mut authority = Authority::new(&cfg, &hosts);
    authority.share_zone_serial(serial);
    authority.set_interface_nets(&interface_nets(&ifaces));
    // mx-host without a target points at this machine, as in dnsmasq.
    if let Some(name) = own_hostname() {
        authority.set_own_name(&name, &hosts);
    }
    for (path, bad) in authority.bad_hosts_lines() {
        tracing::warn!("{}: {bad}", path.display());
    }
    let now_secs = now_ms() / 1000;
    for rec in &leases.initial {
        authority.lease_loaded(rec, now_secs);
    }
    let engine = DnsEngine::new(&cfg.dns, authority);
    let mut resolv_watch = ResolvWatch::new(&cfg);
    let resolv_servers = resolv_watch
        .as_mut()
        .and_then(|w| w.poll(true))
        .map(|r| r.servers)
        .unwrap_or_default();
    let polling = resolv_watch.is_some() && !cfg.dns.no_poll;

    let (events_tx, mut events) = mpsc::channel::<Event>(1024);
    // Upstream answers (the slow path) come through a channel from one
    // receiving task per upstream socket; the listeners are read by the
    // engine's own loop, in batches.
    let (udp_tx, mut udp_rx) = mpsc::channel::<upstream::Datagram>(4096);
    let upstream = Upstreams::new(&cfg, shared_upstream, udp_tx)?;
    let tcp_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let max_tcp = cfg.dns.max_tcp_connections as usize;
    for l in tcp {
        let (events, count) = (events_tx.clone(), Arc::clone(&tcp_count));
        tokio::spawn(async move {
            let mut next_conn: u64 = 1;
            loop {
                let Ok((stream, peer)) = l.accept().await else {
                    // Out of descriptors (EMFILE) the connection stays in
                    // the backlog and accept fails again at once: pause
                    // rather than spin.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                };
                if count.load(std::sync::atomic::Ordering::Relaxed) >= max_tcp {
                    continue; // dropping the stream closes it
                }
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (events, count, conn) = (events.clone(), Arc::clone(&count), next_conn);
                next_conn += 1;
                tokio::spawn(async move {
                    tcp_client(stream, peer, conn, events).await;
                    count.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
    }

    let mut shell = Shell {
        base_cfg,
        cfg,
        engine,
        listeners,
        listener_v6,
        local_v6: LocalV6::default(),
        upstream,
        resolv: resolv_watch,
        resolv_servers,
        ifaces,
        tcp_conns: HashMap::new(),
        events: events_tx,
        udp_out: Vec::new(),
    };
    shell.use_servers();
    let listen_socks = shell.listeners.clone();
    let mut listen_dead = vec![false; listen_socks.len()];
    let mut listen_next = 0usize;
    let mut batch = pktinfo::RecvBatch::new(RECV_BATCH, MAX_UDP_QUERY);
    // Allocated (lazily, as address space) only when there is an IPv6
    // listener to read.
    let mut batch6 = pktinfo6::RecvBatch6::new(
        if shell.listener_v6.contains(&true) {
            RECV_BATCH
        } else {
            1
        },
        MAX_UDP_QUERY,
    );
    // Waits by sleeping the thread: a timer would let each arriving
    // datagram wake it for nothing. The DNS shell has its thread to itself
    // (`dns::thread`), so DHCP and the failover link never wait for it.
    let mut moderation = Moderation::new(Instant::now());
    let mut feed = leases.feed;
    let mut feed_open = true;
    tokio::pin!(shutdown);
    let mut iface_tick = tokio::time::interval(IFACE_REFRESH);
    let mut resolv_tick = tokio::time::interval(resolv::POLL_EVERY);
    resolv_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and the files were just read.
    resolv_tick.tick().await;
    loop {
        let deadline = shell.engine.next_deadline();
        tokio::select! {
            _ = &mut shutdown => break,
            i = any_readable(&listen_socks, &mut listen_dead, listen_next) => {
                listen_next = i + 1;
                let served = if shell.listener_v6[i] {
                    shell.drain_listener(i, &mut batch6)
                } else {
                    shell.drain_listener(i, &mut batch)
                };
                if let Some(wait) = moderation.after_drain(served, RECV_BATCH, Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Some((i, bytes, from)) = udp_rx.recv() => {
                let actions = shell.engine.upstream_reply(&bytes, from, i, now_ms());
                shell.carry_out(actions);
            }
            Some(ev) = events.recv() => match ev {
                Event::TcpQuery { conn, peer, local, bytes, reply } => {
                    let scope = match peer {
                        SocketAddr::V6(p) => p.scope_id(),
                        SocketAddr::V4(_) => 0,
                    };
                    let allowed = served_at(&shell.cfg, &shell.ifaces, local.ip())
                        && local_service_ok(&shell.cfg, &shell.ifaces, peer.ip(), scope);
                    if !allowed {
                        // Closed at once, as dnsmasq does, so a refused
                        // client holds none of the few TCP slots.
                        let _ = reply.try_send(Vec::new());
                    } else {
                        shell.tcp_conns.insert(conn, reply);
                        let service = match local.ip() {
                            IpAddr::V4(dst) => service_at(&shell.cfg, &shell.ifaces, dst),
                            IpAddr::V6(_) => Service::Recursive,
                        };
                        let arrival = arrival_net(&shell.cfg, &shell.ifaces, local.ip());
                        let client = ClientRef { addr: peer, transport: Transport::Tcp, conn, arrival };
                        let actions = shell.engine.query_at(&bytes, client, service, now_ms());
                        shell.carry_out(actions);
                    }
                }
                Event::TcpClosed { conn } => { shell.tcp_conns.remove(&conn); }
                Event::UpstreamTcp { token, reply } => {
                    let actions = shell.engine.upstream_tcp_reply(token, reply.as_deref(), now_ms());
                    shell.carry_out(actions);
                }
            },
            item = feed.next(), if feed_open => match item {
                Some(FeedItem::Change(rec)) => shell.engine.local_mut().lease_changed(&rec, now_ms() / 1000),
                Some(FeedItem::Resync(all)) => {
                    shell.engine.local_mut().leases_resynced(&all, now_ms() / 1000);
                    tracing::info!(
                        "DNS fell behind the lease table ({} changes in all) and took a copy of its {} records",
                        feed.missed(),
                        all.len()
                    );
                }
                None => feed_open = false,
            },
            _ = async { match deadline { Some(t) => tokio::time::sleep(Duration::from_millis(t.saturating_sub(now_ms()))).await, None => std::future::pending().await } } => {
                let actions = shell.engine.tick(now_ms());
                shell.carry_out(actions);
            }
            _ = iface_tick.tick() => shell.refresh_interfaces(),
            _ = resolv_tick.tick(), if polling => {
                if shell.reread_resolv(false) {
                    shell.use_servers();
                }
            }
            Some(reply) = recv_metrics(&mut metrics) => {
                let _ = reply.send(metrics_snapshot(&shell.engine));
            }
            Some(sig) = signals.recv() => shell.on_signal(sig),
        }
        shell.flush_udp();
    }
    Ok(())
}

/// Resolves to the index of a listener with datagrams waiting, looking
/// first at `start` (round robin, so a flooded listener cannot starve the
/// others). A listener whose socket fails is logged once and left out.
async fn any_readable(socks: &[Arc<UdpSocket>], dead: &mut [bool], start: usize) -> usize {
    std::future::poll_fn(|cx| {
        let n = socks.len();
        for k in 0..n {
            let i = (start + k) % n;
            if dead[i] {
                continue;
            }
            match socks[i].poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(i),
                Poll::Ready(Err(e)) => {
                    tracing::warn!("DNS listener {i} stops: {e}");
                    dead[i] = true;
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
