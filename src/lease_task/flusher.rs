//! Group commit: the flusher thread takes every persist request queued,
//! makes the database durable with one fsync, sends the replies that
//! waited for nothing else, and reports each token back (with whether the
//! fsync worked). While one flush runs the next batch gathers, so the
//! fsync rate stays bounded as the request rate grows. What else waits for
//! a token (replies held for the failover partner's ack, the node's acks)
//! is the lease task's business (`core`), not this thread's.
//!
//! Sending here rather than from the loop after the token comes back
//! measured the same with `bench/dhcp.sh --quick` (8,000 DORA/s at 0 %
//! failed and 3.3-3.4 ms either way, about 15,800 at 16,000 offered); it
//! is kept here so a loop busy with a sync page, the lease-file export or
//! a burst of datagrams does not delay ACKs that wait for nothing but the
//! disk.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::clock::now_ms;
use crate::dhcp::engine::Reply;
use crate::dhcp::socket;
use crate::lease::Durability;

use super::core::ShellStats;

/// At most one fsync per this interval: while it passes, ACKs gather into
/// the next batch. Costs at most this much latency; saves CPU at high rates.
const FLUSH_MIN_INTERVAL: Duration = Duration::from_millis(5);

/// Make the database durable, then send `send` (their hardware
/// destinations resolved already) and report `token`; `waiting` more
/// replies wait for it in the lease task.
#[derive(Debug)]
pub struct Job {
    pub token: u64,
    pub send: Vec<Reply>,
    pub waiting: usize,
}

/// A token's flush is done; `ok` false if the disk refused it.
#[derive(Debug, Clone, Copy)]
pub struct Persisted {
    pub token: u64,
    pub ok: bool,
}

pub struct Flusher {
    durability: Durability,
    /// Its own handle on the DHCP socket, valid however the loop ends.
    sock: std::net::UdpSocket,
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
        sock: std::net::UdpSocket,
        stats: Arc<ShellStats>,
        done: mpsc::Sender<Persisted>,
    ) -> Flusher {
        Flusher {
            durability,
            sock,
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
            let now = now_ms();
            for mut job in jobs {
                if ok {
                    for reply in &mut job.send {
                        if !reply.age(now) {
                            self.stats.stale_replies.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if !socket::deliver(self.sock.as_raw_fd(), reply) {
                            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
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
        let n: u64 = jobs.iter().map(|j| (j.send.len() + j.waiting) as u64).sum();
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
