//! Interrupt moderation for the UDP listeners: how long the shell waits
//! after a drain so that the next one finds a batch.
//!
//! Under steady load each query would otherwise cost a wake-up of its own
//! (epoll, two context switches), and the replies a `sendmmsg` of their
//! own; in a VM those are most of what a query costs. So once queries
//! arrive faster than a few per millisecond, the shell waits after
//! answering for as long as it takes to gather [`TARGET_BATCH`] of them at
//! the rate they have been arriving, never longer than [`MAX_WAIT`]. Below
//! that rate a wait would gather too few to pay for the latency it adds, so
//! each query is answered at once. A drain that filled its whole receive
//! batch found a backlog, which already amortises the wake-up: no wait then.
//!
//! The rate is what the shell served over the last window of at least
//! [`WINDOW`]; the clock is passed in, so the decisions are unit-tested.

use std::time::{Duration, Instant};

/// How long the served count is gathered before the rate is updated.
const WINDOW: Duration = Duration::from_millis(20);
/// The most a wait lasts, and so the most latency moderation adds.
const MAX_WAIT: Duration = Duration::from_millis(1);
/// The batch a wait aims to gather.
const TARGET_BATCH: f64 = 24.0;
/// A wait expected to gather fewer queries than this does not pay for the
/// latency it adds.
const MIN_BATCH: f64 = 4.0;

/// The arrival rate seen so far and the wait it calls for.
#[derive(Debug)]
pub struct Moderation {
    window_start: Instant,
    window_served: u64,
    /// Queries per second over the last whole window.
    rate: f64,
}

impl Moderation {
    pub fn new(now: Instant) -> Self {
        Moderation {
            window_start: now,
            window_served: 0,
            rate: 0.0,
        }
    }

    /// A drain at `now` served `served` datagrams from a receive batch of
    /// `capacity`: how long to wait before the next drain, if at all.
    pub fn after_drain(
        &mut self,
        served: usize,
        capacity: usize,
        now: Instant,
    ) -> Option<Duration> {
        self.window_served += served as u64;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            self.rate = self.window_served as f64 / elapsed.as_secs_f64();
            self.window_start = now;
            self.window_served = 0;
        }
        if served == 0 || served >= capacity {
            return None;
        }
        let wait = (TARGET_BATCH / self.rate).min(MAX_WAIT.as_secs_f64());
        (self.rate * wait >= MIN_BATCH).then(|| Duration::from_secs_f64(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains `per_drain` datagrams every `every`, 200 times; returns the
    /// wait after the last drain.
    fn steady(per_drain: usize, every: Duration, capacity: usize) -> Option<Duration> {
        let t0 = Instant::now();
        let mut m = Moderation::new(t0);
        let mut wait = None;
        for i in 1..=200u32 {
            wait = m.after_drain(per_drain, capacity, t0 + every * i);
        }
        wait
    }

    #[test]
    fn slow_arrivals_are_answered_at_once() {
        // 1,000 a second: a 1 ms wait would gather one.
        assert_eq!(steady(1, Duration::from_millis(1), 32), None);
        // 3,000 a second: three, still under the floor.
        assert_eq!(steady(3, Duration::from_millis(1), 32), None);
    }

    #[test]
    fn a_moderate_rate_waits_the_longest_allowed() {
        // 20,000 a second: 24 would take 1.2 ms, so the cap.
        assert_eq!(steady(10, Duration::from_micros(500), 32), Some(MAX_WAIT));
    }

    #[test]
    fn a_high_rate_waits_only_for_one_batch() {
        // 80,000 a second: 24 arrive in 300 us.
        let wait = steady(16, Duration::from_micros(200), 32).unwrap_or_default();
        assert!(
            wait >= Duration::from_micros(290) && wait <= Duration::from_micros(310),
            "{wait:?}"
        );
    }

    #[test]
    fn a_full_batch_or_an_empty_drain_never_waits() {
        assert_eq!(steady(32, Duration::from_micros(500), 32), None);
        let t0 = Instant::now();
        let mut m = Moderation::new(t0);
        for i in 1..=100u32 {
            m.after_drain(10, 32, t0 + Duration::from_micros(500) * i);
        }
        assert_eq!(m.after_drain(0, 32, t0 + Duration::from_millis(51)), None);
    }

    #[test]
    fn a_burst_after_silence_starts_unmoderated() {
        let t0 = Instant::now();
        let mut m = Moderation::new(t0);
        // A busy spell, then ten seconds of nothing.
        for i in 1..=100u32 {
            m.after_drain(10, 32, t0 + Duration::from_micros(500) * i);
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(m.after_drain(2, 32, later), None);
        // It moderates again once a window at the new rate has passed.
        let mut wait = None;
        for i in 1..=100u32 {
            wait = m.after_drain(10, 32, later + Duration::from_micros(500) * i);
        }
        assert_eq!(wait, Some(MAX_WAIT));
    }
}
