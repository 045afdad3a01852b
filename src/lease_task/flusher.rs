//! Group commit: the flusher thread takes every persist request queued,
//! makes the database durable with one fsync, and reports each token back
//! (with whether the fsync worked). While one flush runs the next batch
//! gathers, so the fsync rate stays bounded as the request rate grows.
//! What waits for a token (replies, the failover node's acks) is the lease
//! task's business (`core`), not this thread's.

use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::lease::Durability;

use super::core::ShellStats;

/// At most one fsync per this interval: while it passes, ACKs gather into
/// the next batch. Costs at most this much latency; saves CPU at high rates.
const FLUSH_MIN_INTERVAL: Duration = Duration::from_millis(5);

/// Make the database durable, then report `token`; `replies` wait for it.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub token: u64,
    pub replies: usize,
}

/// A token's flush is done; `ok` false if the disk refused it.
#[derive(Debug, Clone, Copy)]
pub struct Persisted {
    pub token: u64,
    pub ok: bool,
}

pub struct Flusher {
    durability: Durability,
    stats: Arc<ShellStats>,
    done: mpsc::Sender<Persisted>,
    /// Replies withheld since flushing began to fail; `None` while flushes
    /// succeed. One log line when an episode starts and one when it ends,
    /// however many batches fail in between.
    withheld: Option<u64>,
}

impl Flusher {
    pub fn new(
        durability: Durability,
        stats: Arc<ShellStats>,
        done: mpsc::Sender<Persisted>,
    ) -> Flusher {
        Flusher {
            durability,
            stats,
            done,
            withheld: None,
        }
    }

    /// The thread's body: runs until every sender (or the receiver of the
    /// tokens) is gone.
    pub fn run(mut self, rx: std_mpsc::Receiver<Job>) {
        let mut last_flush: Option<Instant> = None;
        while let Ok(first) = rx.recv() {
            if let Some(wait) = last_flush.and_then(|t| FLUSH_MIN_INTERVAL.checked_sub(t.elapsed()))
            {
                std::thread::sleep(wait);
            }
            let mut jobs = vec![first];
            jobs.extend(rx.try_iter());
            last_flush = Some(Instant::now());
            self.stats.flushes.fetch_add(1, Ordering::Relaxed);
            let ok = match self.durability.flush() {
                Err(e) => {
                    // Nothing promised leaves unless it is stored: the
                    // clients retry, and nothing is acked to the partner.
                    self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
                    self.withhold(&jobs, &e);
                    false
                }
                Ok(()) => {
                    self.end_withholding();
                    true
                }
            };
            for job in jobs {
                let done = Persisted {
                    token: job.token,
                    ok,
                };
                if self.done.blocking_send(done).is_err() {
                    return;
                }
            }
        }
    }

    fn withhold(&mut self, jobs: &[Job], e: &crate::lease::LeaseError) {
        let n: u64 = jobs.iter().map(|j| j.replies as u64).sum();
        match &mut self.withheld {
            Some(total) => *total += n,
            None => {
                let until = if e.is_no_space() {
                    "space returns"
                } else {
                    "it can be written again"
                };
                tracing::error!(
                    "{e}: not acknowledging {n} leases until {until} (clients retry; no restart needed)"
                );
                self.withheld = Some(n);
            }
        }
    }

    fn end_withholding(&mut self) {
        if let Some(total) = self.withheld.take() {
            tracing::warn!(
                "lease database: flushing works again; {total} replies were withheld while it failed"
            );
        }
    }
}
