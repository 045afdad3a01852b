//! The failover link's sockets: a TCP listener (primary) or connector
//! (secondary), and per connection a reader and a writer task. They only
//! move bytes; every decision is the node's, in the DHCP shell's task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::node::ConnId;

/// Queued writes per connection: a partner that reads slower than this
/// is as good as gone, and its connection is closed rather than buffered.
const WRITE_QUEUE: usize = 4096;
const READ_CHUNK: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections accepted but not yet through the handshake; a flood of
/// connections beyond this is refused at once.
const MAX_CONNECTIONS: usize = 8;

#[derive(Debug)]
pub enum LinkEvent {
    Connected {
        conn: ConnId,
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
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

/// The shell's side: writers per connection and the id counter.
pub struct LinkIo {
    events: mpsc::Sender<LinkEvent>,
    writers: HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    peers: HashMap<ConnId, SocketAddr>,
    next_conn: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl LinkIo {
    pub fn new(events: mpsc::Sender<LinkEvent>) -> LinkIo {
        LinkIo {
            events,
            writers: HashMap::new(),
            peers: HashMap::new(),
            next_conn: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    /// Primary: accept connections on `listener`.
    pub fn listen(&self, listener: TcpListener) {
        let events = self.events.clone();
        let ids = std::sync::Arc::clone(&self.next_conn);
        tokio::spawn(async move {
            let open = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("failover: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = std::sync::Arc::clone(&open).try_acquire_owned() else {
                    tracing::warn!("failover: too many link connections; refusing {peer}");
                    continue;
                };
                let conn = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let events = events.clone();
                tokio::spawn(async move {
                    run_connection(conn, stream, peer, events).await;
                    drop(permit);
                });
            }
        });
    }

    /// Secondary: one connection attempt to the primary.
    pub fn connect(&self, to: SocketAddr) {
        let events = self.events.clone();
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(stream)) => run_connection(conn, stream, to, events).await,
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

    pub fn opened(&mut self, conn: ConnId, peer: SocketAddr, writer: mpsc::Sender<Vec<u8>>) {
        self.writers.insert(conn, writer);
        self.peers.insert(conn, peer);
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
    }
}

async fn run_connection(
    conn: ConnId,
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<LinkEvent>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (writer, mut queue) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if events
        .send(LinkEvent::Connected { conn, peer, writer })
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
        }
    }
    write_task.abort();
    let _ = events.send(LinkEvent::Closed { conn }).await;
}
