//! Group commit, and the failover rule "linked: ack before reply".
//!
//! The flusher thread takes everything queued, makes it durable with one
//! fsync, then sends the replies. While one flush runs the next batch
//! gathers, so the fsync rate stays bounded as the request rate grows.
//! With a failover partner in sync, a reply also waits until the partner
//! has acked the change it promises; should the link go down first, or
//! the change lose a merge, the reply is dropped and the client retries.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use twinmasq_proto::Stamp;

use crate::lease::Durability;

use super::engine::Reply;
use super::shell::{deliver, ShellStats};

/// At most one fsync per this interval: while it passes, ACKs gather into
/// the next batch. Costs at most this much latency; saves CPU at high rates.
const FLUSH_MIN_INTERVAL: Duration = Duration::from_millis(5);
/// A reply still waiting for the partner after this long is dropped (the
/// client has retried by then); the node closes such a link anyway.
const MAX_WAIT: Duration = Duration::from_secs(10);

pub enum Job {
    /// Replies to send once durable; `wait` ones also after the partner's ack.
    Replies(Vec<(Reply, bool)>),
    /// Make durable, then hand this token back on the persisted channel.
    Persist(u64),
    /// The partner has every own change up to this stamp.
    Acked(Stamp),
    /// Replies promising these changes must never leave.
    Cancel(Vec<Stamp>),
    /// In sync with the partner from now on (true) or no longer (false).
    Linked(bool),
}

pub struct Flusher {
    durability: Durability,
    sock: std::net::UdpSocket,
    stats: Arc<ShellStats>,
    persisted: Option<mpsc::Sender<u64>>,
    acked: Stamp,
    linked: bool,
    waiting: BTreeMap<Stamp, Vec<(Reply, Instant)>>,
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
        persisted: Option<mpsc::Sender<u64>>,
    ) -> Flusher {
        Flusher {
            durability,
            sock,
            stats,
            persisted,
            acked: Stamp::default(),
            linked: false,
            waiting: BTreeMap::new(),
            withheld: None,
        }
    }

    /// The thread's body: runs until every sender is gone.
    pub fn run(mut self, rx: std_mpsc::Receiver<Job>) {
        let mut last_flush: Option<Instant> = None;
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            jobs.extend(rx.try_iter());
            let durable_needed = jobs
                .iter()
                .any(|j| matches!(j, Job::Replies(_) | Job::Persist(_)));
            let mut flushed = true;
            if durable_needed {
                if let Some(wait) =
                    last_flush.and_then(|t| FLUSH_MIN_INTERVAL.checked_sub(t.elapsed()))
                {
                    std::thread::sleep(wait);
                }
                last_flush = Some(Instant::now());
                jobs.extend(rx.try_iter());
                self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                match self.durability.flush() {
                    Err(e) => {
                        // Nothing promised leaves unless it is stored: the
                        // clients retry, and nothing is acked to the partner.
                        self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
                        self.withhold(&jobs, &e);
                        flushed = false;
                    }
                    Ok(()) => self.end_withholding(),
                }
            }
            for job in jobs {
                self.apply(job, flushed);
            }
            self.expire_waiting();
        }
    }

    fn withhold(&mut self, jobs: &[Job], e: &crate::lease::LeaseError) {
        let n: u64 = jobs
            .iter()
            .map(|j| match j {
                Job::Replies(r) => r.len() as u64,
                _ => 0,
            })
            .sum();
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

    fn apply(&mut self, job: Job, flushed: bool) {
        match job {
            Job::Replies(replies) if flushed => {
                self.stats
                    .durable_replies
                    .fetch_add(replies.len() as u64, Ordering::Relaxed);
                let now = Instant::now();
                for (reply, wait) in replies {
                    match reply.commit.filter(|_| wait) {
                        Some(stamp) if stamp > self.acked => {
                            if self.linked {
                                self.waiting.entry(stamp).or_default().push((reply, now));
                            } else {
                                // Promised under the link's rules, which no
                                // longer hold: let the client ask again.
                                self.stats.partner_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => deliver(self.sock.as_raw_fd(), &reply, &self.stats),
                    }
                }
            }
            Job::Replies(_) => {}
            Job::Persist(token) => {
                if flushed {
                    if let Some(tx) = &self.persisted {
                        let _ = tx.blocking_send(token);
                    }
                }
            }
            Job::Acked(stamp) => {
                self.acked = self.acked.max(stamp);
                while let Some(entry) = self.waiting.first_entry() {
                    if *entry.key() > self.acked {
                        break;
                    }
                    for (reply, _) in entry.remove() {
                        deliver(self.sock.as_raw_fd(), &reply, &self.stats);
                    }
                }
            }
            Job::Cancel(stamps) => {
                for s in stamps {
                    if let Some(v) = self.waiting.remove(&s) {
                        self.stats
                            .partner_cancelled
                            .fetch_add(v.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            Job::Linked(up) => {
                self.linked = up;
                if !up {
                    // The next session's acks count afresh: after the lease
                    // clock was set back (see `LeaseDb::keep_clock_bounded`)
                    // an old, higher ack must not release a reply waiting on
                    // a new, lower stamp.
                    self.acked = Stamp::default();
                    let n: usize = self.waiting.values().map(Vec::len).sum();
                    self.waiting.clear();
                    self.stats
                        .partner_dropped
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    }

    fn expire_waiting(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|_, v| {
            v.retain(|(_, at)| at.elapsed() < MAX_WAIT);
            !v.is_empty()
        });
        if self.waiting.len() < before {
            self.stats
                .partner_dropped
                .fetch_add((before - self.waiting.len()) as u64, Ordering::Relaxed);
        }
    }
}
