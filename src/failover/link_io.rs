//! The failover link's sockets: a TCP listener (primary) or connector
//! (secondary), and per connection a reader and a writer task. They only
//! move bytes; every decision about a connection's content is the node's,
//! in the DHCP shell's task. The listener's gate decides which connections
//! get in at all ([`Admission`]), and says so in the log at most once a
//! minute ([`LogLimit`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::admission::{Admission, Verdict};
use super::log_limit::{self, LogLimit, Note};
use super::node::{ConnId, Handshake};

/// Queued writes per connection: a partner that reads slower than this
/// is as good as gone, and its connection is closed rather than buffered.
const WRITE_QUEUE: usize = 4096;
const READ_CHUNK: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub enum LinkEvent {
    Connected {
        conn: ConnId,
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        /// Accepted by the listener (anyone may have opened it), rather
        /// than opened by us to the primary.
        inbound: bool,
    },
    Data {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Closed {
        conn: ConnId,
    },
    ConnectFailed {
        reason: String,
    },
}

/// The listener's gate, shared by the accept task and the shell: which
/// inbound connections are still in the handshake, how to end each, and
/// the rate-limited warning about those refused or displaced.
struct Gate {
    admission: Admission,
    /// Ends an admitted connection's task (it then reports `Closed`).
    kill: HashMap<ConnId, oneshot::Sender<()>>,
    noise: LogLimit,
    clock: Instant,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            admission: Admission::default(),
            kill: HashMap::new(),
            noise: LogLimit::new(log_limit::INTERVAL_MS),
            clock: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A new connection: true if it may go on to the node.
    fn admit(&mut self, conn: ConnId, peer: SocketAddr, kill: oneshot::Sender<()>) -> bool {
        match self.admission.admit(conn, peer.ip()) {
            Verdict::Refuse => {
                let per_source = self.admission.per_source();
                self.warn(|| {
                    format!(
                        "failover: refusing a link connection from {peer}: {per_source} from that address are already in the handshake"
                    )
                });
                false
            }
            Verdict::Admit { evict } => {
                if let Some((victim, from)) = evict {
                    if let Some(k) = self.kill.remove(&victim) {
                        let _ = k.send(());
                    }
                    let max = self.admission.max_waiting();
                    self.warn(|| {
                        format!(
                            "failover: {max} link connections are in the handshake; closing the oldest (connection {victim} from {from}) for one from {peer}"
                        )
                    });
                }
                self.kill.insert(conn, kill);
                true
            }
        }
    }

    fn closed(&mut self, conn: ConnId) {
        self.admission.closed(conn);
        self.kill.remove(&conn);
    }

    fn warn(&mut self, first: impl FnOnce() -> String) {
        match self.noise.note(self.now_ms()) {
            Note::First => {
                tracing::warn!("{} (more of these are counted, one line a minute)", first())
            }
            Note::Summary { count, over_ms } => self.summary(count, over_ms),
            Note::Counted => {}
        }
    }

    fn summary(&self, count: u64, over_ms: u64) {
        tracing::warn!(
            "failover: {count} unauthenticated link connections refused or dropped in the last {} s (at most {} per address and {} in all may be in the handshake)",
            over_ms.div_ceil(1000),
            self.admission.per_source(),
            self.admission.max_waiting()
        );
    }

    fn flush(&mut self) {
        if let Some((count, over_ms)) = self.noise.flush(self.now_ms()) {
            self.summary(count, over_ms);
        }
    }
}

fn lock(gate: &Mutex<Gate>) -> MutexGuard<'_, Gate> {
    // The gate's state stays consistent across a panic elsewhere (each
    // method leaves it whole), so a poisoned lock is still usable.
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends a connection with a reset rather than a FIN: no TIME_WAIT left
/// behind on our side for each of a flood's connections.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// The shell's side: writers per connection and the id counter.
pub struct LinkIo {
    events: mpsc::Sender<LinkEvent>,
    writers: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    peers: HashMap<ConnId, SocketAddr>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
    gate: Arc<Mutex<Gate>>,
    /// Inbound connections not yet through the handshake, and how far the
    /// gate was last told they got.
    inbound: HashMap<ConnId, Handshake>,
}

impl LinkIo {
    pub fn new(events: mpsc::Sender<LinkEvent>) -> LinkIo {
        LinkIo {
            events,
            writers: HashMap::new(),
            peers: HashMap::new(),
            next_conn: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            gate: Arc::new(Mutex::new(Gate::new())),
            inbound: HashMap::new(),
        }
    }

    /// Primary: accept connections on `listener`, as the gate allows.
    pub fn listen(&self, listener: TcpListener) {
        let events = self.events.clone();
        let ids = Arc::clone(&self.next_conn);
        let gate = Arc::clone(&self.gate);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("failover: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let conn = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (kill_tx, kill_rx) = oneshot::channel();
                if !lock(&gate).admit(conn, peer, kill_tx) {
                    reset(&stream);
                    continue;
                }
                let events = events.clone();
                let gate = Arc::clone(&gate);
                tokio::spawn(async move {
                    run_connection(conn, stream, peer, events, Some(kill_rx)).await;
                    lock(&gate).closed(conn);
                });
            }
        });
    }

    /// Timers: the gate's count of refused connections, once its minute
    /// is over.
    pub fn tick(&self) {
        lock(&self.gate).flush();
    }

    /// Tells the gate how far an inbound connection got in the handshake
    /// (call after its bytes went to the node): one that proved the key no
    /// longer counts against the limits.
    pub fn progress(&mut self, conn: ConnId, now: Option<Handshake>) {
        let (Some(&told), Some(now)) = (self.inbound.get(&conn), now) else {
            return;
        };
        match now {
            Handshake::Authenticated => {
                self.inbound.remove(&conn);
                lock(&self.gate).admission.authenticated(conn);
                if let Some(peer) = self.peers.get(&conn) {
                    tracing::info!("failover: connection {conn} from {peer} proved the key");
                }
            }
            Handshake::HelloVerified if told == Handshake::Waiting => {
                self.inbound.insert(conn, now);
                lock(&self.gate).admission.hello_verified(conn);
            }
            _ => {}
        }
    }

    /// Secondary: one connection attempt to the primary.
    pub fn connect(&self, to: SocketAddr) {
        let events = self.events.clone();
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(stream)) => run_connection(conn, stream, to, events, None).await,
                Ok(Err(e)) => {
                    let _ = events
                        .send(LinkEvent::ConnectFailed {
                            reason: format!("{to}: {e}"),
                        })
                        .await;
                }
                Err(_) => {
                    let _ = events
                        .send(LinkEvent::ConnectFailed {
                            reason: format!("{to}: no answer in {CONNECT_TIMEOUT:?}"),
                        })
                        .await;
                }
            }
        });
    }

    pub fn opened(
        &mut self,
        conn: ConnId,
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        inbound: bool,
    ) {
        self.writers.insert(conn, writer);
        self.peers.insert(conn, peer);
        if inbound {
            self.inbound.insert(conn, Handshake::Waiting);
        }
    }

    pub fn peer(&self, conn: ConnId) -> Option<SocketAddr> {
        self.peers.get(&conn).copied()
    }

    /// Queues bytes; false if the connection is gone or cannot keep up
    /// (the caller then treats it as closed).
    pub fn write(&mut self, conn: ConnId, bytes: Vec<u8>) -> bool {
        let ok = self
            .writers
            .get(&conn)
            .is_some_and(|w| w.try_send(bytes).is_ok());
        if !ok {
            self.close(conn);
        }
        ok
    }

    /// Dropping the writer ends the writer task, which shuts the socket.
    pub fn close(&mut self, conn: ConnId) {
        self.writers.remove(&conn);
        self.peers.remove(&conn);
        self.inbound.remove(&conn);
    }
}

/// Moves one connection's bytes until either side ends it, or (inbound
/// connections) the gate does through `kill`.
async fn run_connection(
    conn: ConnId,
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<LinkEvent>,
    mut kill: Option<oneshot::Receiver<()>>,
) {
    let _ = stream.set_nodelay(true);
    let inbound = kill.is_some();
    let (mut rd, mut wr) = stream.into_split();
    let (writer, mut queue) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if events
        .send(LinkEvent::Connected {
            conn,
            peer,
            writer,
            inbound,
        })
        .await
        .is_err()
    {
        return;
    }
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        let _ = done_tx.send(());
    });
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes = buf[..n].to_vec();
                    if events.send(LinkEvent::Data { conn, bytes }).await.is_err() {
                        break;
                    }
                }
            },
            // The shell closed the connection: the writer task has ended.
            _ = &mut done_rx => break,
            // The gate displaced it (or is gone with the listener).
            _ = killed(&mut kill) => {
                reset(rd.as_ref());
                break;
            }
        }
    }
    write_task.abort();
    let _ = events.send(LinkEvent::Closed { conn }).await;
}

/// Resolves when the gate ends the connection; never without a gate.
async fn killed(kill: &mut Option<oneshot::Receiver<()>>) {
    match kill {
        Some(k) => {
            let _ = k.await;
        }
        None => std::future::pending().await,
    }
}
