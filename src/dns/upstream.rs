//! The shell's upstream UDP sockets, as the engine's `Upstream` and
//! `CloseUpstream` actions ask for them.
//!
//! By default every attempt gets a socket of its own: a fresh random
//! source port (the kernel's ephemeral range, or `min-port`..`max-port`),
//! `connect()`ed to the one server it asks, so the kernel drops datagrams
//! from anyone else and a port probe from the LAN finds nothing open (an
//! ICMP "port unreachable", as for a closed port). It is closed when the
//! engine is done with it. A blind spoofer has to guess a port that lives
//! for one exchange, the id and the 0x20 letter case at once.
//!
//! With `query-port` every query leaves from one socket bound at start to
//! that port (`query-port=0`: a port the OS picks), as dnsmasq does; the
//! engine then checks the source of each answer itself.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::engine::SHARED_SOCKET;
use super::shell::DnsError;
use crate::config::Config;

/// A datagram from an upstream socket: the engine's socket number, the
/// bytes, and where it came from.
pub type Datagram = (u64, Vec<u8>, SocketAddr);

/// Tries at a random port of a `min-port`/`max-port` range before an
/// attempt gives up, as dnsmasq's `local_bind`; a range smaller than
/// [`SMALL_RANGE`] is searched port by port instead.
const RANGE_TRIES: u32 = 100;
const SMALL_RANGE: u32 = 30;
/// A failure to open sockets (out of descriptors, say) is logged at most
/// this often; the attempts it hits time out like a silent server.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);
/// The largest UDP datagram.
const MAX_DATAGRAM: usize = 65535;

/// The `query-port` sockets, bound before anything is served (so a low
/// port is bound while the process may still do so).
pub struct Shared {
    v4: std::net::UdpSocket,
    v6: Option<std::net::UdpSocket>,
}

/// Binds the `query-port` sockets; None without `query-port`.
pub fn bind_shared(cfg: &Config) -> Result<Option<Shared>, DnsError> {
    let Some(port) = cfg.dns.query_port else {
        return Ok(None);
    };
    let range = cfg.dns.port_range;
    let any4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    let v4 = bind_shared_one(any4, range)?;
    let any6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
    let v6 = match bind_shared_one(any6, range) {
        Ok(s) => Some(s),
        Err(DnsError::Bind { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
            ) =>
        {
            tracing::warn!("no IPv6 upstream socket: {source}");
            None
        }
        Err(e) => return Err(e),
    };
    Ok(Some(Shared { v4, v6 }))
}

fn bind_shared_one(
    addr: SocketAddr,
    range: Option<(u16, u16)>,
) -> Result<std::net::UdpSocket, DnsError> {
    let err = |source| DnsError::Bind {
        what: "upstream",
        addr,
        source,
    };
    let s = new_udp(addr).map_err(err)?;
    match (addr.port(), range) {
        // query-port=0 within min-port/max-port: one random port of it.
        (0, Some((lo, hi))) => bind_in_range(&s, addr, lo, hi).map_err(err)?,
        _ => s.bind(&addr.into()).map_err(err)?,
    }
    Ok(s.into())
}

fn new_udp(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_nonblocking(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// Binds `s` to a random free port in `lo..=hi` of `addr`'s family.
fn bind_in_range(s: &socket2::Socket, addr: SocketAddr, lo: u16, hi: u16) -> io::Result<()> {
    if hi < lo {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "max_port cannot be smaller than min_port",
        ));
    }
    let span = u32::from(hi) - u32::from(lo) + 1;
    let mut rng = rand::rng();
    let mut port = lo + rng.random_range(0..span) as u16;
    let tries = if span < SMALL_RANGE {
        span
    } else {
        RANGE_TRIES
    };
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..tries {
        let mut a = addr;
        a.set_port(port);
        match s.bind(&a.into()) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRINUSE | libc::EACCES)) => {
                last = e;
            }
            Err(e) => return Err(e),
        }
        port = if span < SMALL_RANGE {
            if port == hi {
                lo
            } else {
                port + 1
            }
        } else {
            lo + rng.random_range(0..span) as u16
        };
    }
    Err(last)
}

/// A socket of its own for one attempt: a random port, connected to
/// `server`.
fn open_connected(
    server: SocketAddr,
    range: Option<(u16, u16)>,
) -> io::Result<std::net::UdpSocket> {
    let any = match server {
        SocketAddr::V4(_) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)),
    };
    let s = new_udp(any)?;
    // Without a range connect() binds an ephemeral port, which Linux
    // picks at random.
    if let Some((lo, hi)) = range {
        bind_in_range(&s, any, lo, hi)?;
    }
    s.connect(&server.into())?;
    Ok(s.into())
}

/// Reads `sock` into the engine's channel under `socket` until the task is
/// aborted or the engine goes away.
async fn receive(sock: Arc<UdpSocket>, socket: u64, tx: mpsc::Sender<Datagram>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if tx.send((socket, buf[..n].to_vec(), from)).await.is_err() {
                    return;
                }
            }
            // An ICMP error for an earlier datagram on a connected socket:
            // the server's silence times out as any other.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                tracing::debug!(target: "dns", "upstream socket {socket}: {e}");
                return;
            }
        }
    }
}

enum Mode {
    PerAttempt {
        range: Option<(u16, u16)>,
    },
    Shared {
        v4: Arc<UdpSocket>,
        v6: Option<Arc<UdpSocket>>,
    },
}

/// The upstream sockets open now.
pub struct Upstreams {
    mode: Mode,
    tx: mpsc::Sender<Datagram>,
    /// Per-attempt sockets by the engine's number: their receive tasks,
    /// which own them.
    open: HashMap<u64, AbortHandle>,
    last_error_log: Option<Instant>,
}

impl Upstreams {
    /// Call inside the runtime: the shared sockets' receive tasks start.
    pub fn new(
        cfg: &Config,
        shared: Option<Shared>,
        tx: mpsc::Sender<Datagram>,
    ) -> Result<Self, DnsError> {
        let mode = match shared {
            None => Mode::PerAttempt {
                range: cfg.dns.port_range,
            },
            Some(Shared { v4, v6 }) => {
                let v4 = Arc::new(UdpSocket::from_std(v4)?);
                let v6 = match v6 {
                    Some(s) => Some(Arc::new(UdpSocket::from_std(s)?)),
                    None => None,
                };
                for s in std::iter::once(&v4).chain(v6.as_ref()) {
                    tokio::spawn(receive(Arc::clone(s), SHARED_SOCKET, tx.clone()));
                }
                Mode::Shared { v4, v6 }
            }
        };
        Ok(Upstreams {
            mode,
            tx,
            open: HashMap::new(),
            last_error_log: None,
        })
    }

    /// Sends `bytes` to `server` from socket `socket`, opening it first if
    /// it is a new per-attempt number.
    pub fn send(&mut self, socket: u64, server: SocketAddr, bytes: &[u8]) {
        match &self.mode {
            Mode::Shared { v4, v6 } => {
                let sock = if server.is_ipv4() {
                    Some(v4)
                } else {
                    v6.as_ref()
                };
                let Some(sock) = sock else {
                    tracing::debug!(target: "dns", "no IPv6 socket for {server}");
                    return;
                };
                if let Err(e) = sock.try_send_to(bytes, server) {
                    tracing::debug!(target: "dns", "query to {server}: {e}");
                }
            }
            Mode::PerAttempt { range } => {
                if self.open.contains_key(&socket) {
                    // Never happens: the engine gives every attempt a new
                    // number.
                    return;
                }
                let sock = match open_connected(server, *range) {
                    Ok(s) => s,
                    Err(e) => {
                        self.log_error(server, &e);
                        return;
                    }
                };
                // Sent before tokio has the socket: its readiness is not
                // known yet, so tokio's own try_send would not even try.
                if let Err(e) = sock.send(bytes) {
                    tracing::debug!(target: "dns", "query to {server}: {e}");
                }
                let sock = match UdpSocket::from_std(sock) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        self.log_error(server, &e);
                        return;
                    }
                };
                let task = tokio::spawn(receive(sock, socket, self.tx.clone()));
                self.open.insert(socket, task.abort_handle());
            }
        }
    }

    /// Closes per-attempt socket `socket` (its task owns it).
    pub fn close(&mut self, socket: u64) {
        if let Some(task) = self.open.remove(&socket) {
            task.abort();
        }
    }

    /// Per-attempt sockets open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    fn log_error(&mut self, server: SocketAddr, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) >= ERROR_LOG_EVERY)
        {
            self.last_error_log = Some(now);
            tracing::warn!("cannot open a socket for a query to {server}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_range() {
        let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        let mut held = Vec::new();
        for _ in 0..5 {
            let s = new_udp(any).unwrap();
            bind_in_range(&s, any, 40_000, 40_004).unwrap();
            let port = s.local_addr().unwrap().as_socket().unwrap().port();
            assert!((40_000..=40_004).contains(&port), "{port}");
            held.push(s);
        }
        // All five taken: a small range is searched through, then refused.
        let s = new_udp(any).unwrap();
        let e = bind_in_range(&s, any, 40_000, 40_004).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[tokio::test]
    async fn each_attempt_has_its_own_connected_port() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let mut u = Upstreams::new(&Config::default(), None, tx).unwrap();
        u.send(1, to, b"one");
        u.send(2, to, b"two");
        assert_eq!(u.open_count(), 2);
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (_, a) = server.recv_from(&mut buf).unwrap();
        let (_, b) = server.recv_from(&mut buf).unwrap();
        assert_ne!(a.port(), b.port());
        // Only the server it is connected to gets through.
        other.send_to(b"forged", a).unwrap();
        server.send_to(b"real", a).unwrap();
        let (socket, bytes, from) = rx.recv().await.unwrap();
        assert_eq!((socket, bytes.as_slice(), from), (1, &b"real"[..], to));
        // Closed: the port answers nothing any more.
        u.close(1);
        assert_eq!(u.open_count(), 1);
        tokio::task::yield_now().await;
        server.send_to(b"late", a).unwrap();
        let late = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        assert!(late.is_err(), "{late:?}");
    }
}
