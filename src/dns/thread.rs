//! The DNS shell on a thread of its own, with its own runtime.
//!
//! Two reasons. The shell's interrupt moderation waits by sleeping the
//! thread (a timer wait would let every arriving datagram wake the thread
//! for nothing, which is the cost moderation exists to save); DHCP, the
//! failover link and the control socket must never wait for that. And a
//! DNS flood then costs DHCP at most a share of the CPU, never its turn.
//!
//! The sockets are bound on the DNS thread (tokio sockets belong to the
//! runtime that registers them), and the start waits for that, so a taken
//! port 53 still stops the start before anything else runs, and before
//! privileges are dropped.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::shell::{bind, run, DnsError, DnsSignal, LeaseSource};
use crate::config::Config;
use crate::metrics::DnsHooks;

/// What the shell needs that exists only once the rest has started.
pub struct DnsStart {
    /// The leases, from the database opened after the drop from root.
    pub leases: LeaseSource,
    pub signals: mpsc::Receiver<DnsSignal>,
    pub metrics: Option<DnsHooks>,
    /// Becomes true when the server stops.
    pub stop: watch::Receiver<bool>,
}

/// A DNS thread whose sockets are bound, waiting for [`DnsThread::serve`].
pub struct DnsThread {
    go: std::sync::mpsc::Sender<DnsStart>,
    done: oneshot::Receiver<Result<(), DnsError>>,
}

/// Starts the DNS thread and binds its sockets; `None` with `port=0`.
pub fn spawn(cfg: Arc<Config>) -> Result<Option<DnsThread>, DnsError> {
    if cfg.dns.port == 0 {
        return Ok(None);
    }
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<(), DnsError>>();
    let (go, go_rx) = std::sync::mpsc::channel::<DnsStart>();
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = bound_tx.send(Err(e.into()));
                    return;
                }
            };
            let result = runtime.block_on(async move {
                let bound = match bind(&cfg) {
                    Ok(Some(b)) => b,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let _ = bound_tx.send(Ok(()));
                // Nothing else runs on this thread yet; datagrams that
                // arrive meanwhile wait in the sockets.
                let Ok(start) = go_rx.recv() else {
                    return Ok(());
                };
                let mut stop = start.stop;
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                run(
                    bound,
                    cfg,
                    start.leases,
                    start.signals,
                    start.metrics,
                    stopped,
                )
                .await
            });
            let _ = done_tx.send(result);
        })?;
    match bound_rx.recv() {
        Ok(Ok(())) => Ok(Some(DnsThread { go, done })),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DnsError::Io(std::io::Error::other(
            "the DNS thread ended during start-up",
        ))),
    }
}

impl DnsThread {
    /// Lets the shell serve, and resolves when it has stopped.
    pub async fn serve(self, start: DnsStart) -> Result<(), DnsError> {
        if self.go.send(start).is_err() {
            return Err(DnsError::Io(std::io::Error::other(
                "the DNS thread ended before serving",
            )));
        }
        self.done.await.unwrap_or_else(|_| {
            Err(DnsError::Io(std::io::Error::other(
                "the DNS thread ended without a result",
            )))
        })
    }
}
