//! Whether this node's lease database still finishes its flushes.
//!
//! Every flush the node asks for ([`super::node::Output::Flush`]) must come
//! back as persisted. One that does not within the link timeout means the
//! disk hangs (or fails): the node can make neither the partner's changes
//! durable nor its own (its replies wait on the same flushes), so it must
//! not go on claiming the link, and must not link again until a flush
//! finishes. While linked with nothing to flush, and while hung, the node
//! asks for a probe flush now and then, so a hang shows without traffic and
//! its end shows even when the hung flush itself failed (a failed flush is
//! never reported back; a later one that succeeds covers it).

use std::collections::VecDeque;

/// Probe flushes waiting at most: a hang of hours adds no more.
const MAX_OUTSTANDING_PROBES: usize = 64;

#[derive(Debug, Default)]
pub struct FlushWatch {
    /// Flushes asked for and not yet reported done: (token, asked at ms).
    outstanding: VecDeque<(u64, u64)>,
    last_asked_ms: Option<u64>,
    probes: usize,
    /// Since when (the oldest unfinished flush's time) this node has known
    /// its flushes hang; `None` while they finish.
    hung_since_ms: Option<u64>,
}

impl FlushWatch {
    /// A flush was asked for with `token` (tokens rise).
    pub fn asked(&mut self, token: u64, now_ms: u64) {
        self.outstanding.push_back((token, now_ms));
        self.last_asked_ms = Some(now_ms);
    }

    /// As [`Self::asked`], for a probe.
    pub fn probe_asked(&mut self, token: u64, now_ms: u64) {
        self.asked(token, now_ms);
        self.probes += 1;
    }

    /// Should a probe flush be asked for now? `linked`: the node claims the
    /// link. A probe at most every `interval_ms`, and only when nothing
    /// asked since then would show the same.
    pub fn wants_probe(&self, linked: bool, interval_ms: u64, now_ms: u64) -> bool {
        let hung = self.hung_since_ms.is_some();
        if !(linked || hung) || self.probes >= MAX_OUTSTANDING_PROBES {
            return false;
        }
        // Linked: one outstanding flush is enough to time. Hung: a new one
        // now and then, since the old one may have failed for good.
        if !hung && !self.outstanding.is_empty() {
            return false;
        }
        self.last_asked_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= interval_ms)
    }

    /// Flush `token` and every earlier one finished. Returns how long the
    /// flushes had hung when this ends a hang.
    pub fn persisted(&mut self, token: u64, timeout_ms: u64, now_ms: u64) -> Option<u64> {
        while let Some(&(t, _)) = self.outstanding.front() {
            if t > token {
                break;
            }
            self.outstanding.pop_front();
        }
        self.probes = self.probes.min(self.outstanding.len());
        let since = self.hung_since_ms?;
        if self.overdue(timeout_ms, now_ms).is_some() {
            return None;
        }
        self.hung_since_ms = None;
        Some(now_ms.saturating_sub(since))
    }

    /// How long the oldest unfinished flush has waited, if past `timeout_ms`.
    pub fn overdue(&self, timeout_ms: u64, now_ms: u64) -> Option<u64> {
        let &(_, asked) = self.outstanding.front()?;
        let waited = now_ms.saturating_sub(asked);
        (waited > timeout_ms).then_some(waited)
    }

    /// Checks for a hang: `Some(waited)` the first time one is seen (the
    /// caller ends the link and says so), `None` otherwise.
    pub fn check(&mut self, timeout_ms: u64, now_ms: u64) -> Option<u64> {
        if self.hung_since_ms.is_some() {
            return None;
        }
        let waited = self.overdue(timeout_ms, now_ms)?;
        self.hung_since_ms = Some(now_ms.saturating_sub(waited));
        Some(waited)
    }

    /// Since when flushes hang, while they do.
    pub fn hung_since(&self) -> Option<u64> {
        self.hung_since_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_outstanding_past_the_timeout_is_a_hang_until_a_later_one_finishes() {
        let mut w = FlushWatch::default();
        w.asked(1, 0);
        assert_eq!(w.check(5_000, 5_000), None, "not past the timeout");
        assert_eq!(w.check(5_000, 5_001), Some(5_001));
        assert_eq!(w.check(5_000, 6_000), None, "reported once");
        assert_eq!(w.hung_since(), Some(0));
        // Hung: probes now and then, bounded.
        assert!(w.wants_probe(false, 1_000, 6_000));
        w.probe_asked(2, 6_000);
        assert!(!w.wants_probe(false, 1_000, 6_500));
        assert!(w.wants_probe(false, 1_000, 7_000));
        // Flush 1 failed for good; probe 2 finishes and covers it.
        assert_eq!(w.persisted(2, 5_000, 7_000), Some(7_000));
        assert_eq!(w.hung_since(), None);
        assert!(!w.wants_probe(false, 1_000, 9_000), "not linked, not hung");
    }

    #[test]
    fn probes_while_linked_only_when_nothing_is_outstanding() {
        let mut w = FlushWatch::default();
        assert!(w.wants_probe(true, 1_000, 0));
        w.probe_asked(1, 0);
        assert!(
            !w.wants_probe(true, 1_000, 3_000),
            "one outstanding times it"
        );
        assert_eq!(w.persisted(1, 5_000, 3_000), None);
        assert!(w.wants_probe(true, 1_000, 3_000));
        w.asked(2, 3_000);
        assert!(!w.wants_probe(true, 1_000, 3_500));
    }

    #[test]
    fn probes_stay_bounded_through_a_long_hang() {
        let mut w = FlushWatch::default();
        w.asked(1, 0);
        let mut token = 2;
        for s in 6..100_000u64 {
            let now = s * 1_000;
            w.check(5_000, now);
            if w.wants_probe(false, 1_000, now) {
                w.probe_asked(token, now);
                token += 1;
            }
        }
        assert!(w.outstanding.len() <= MAX_OUTSTANDING_PROBES + 1);
    }

    #[test]
    fn a_finished_flush_that_leaves_an_older_one_hung_does_not_end_the_hang() {
        let mut w = FlushWatch::default();
        w.asked(1, 0);
        w.check(5_000, 6_000);
        // Nothing reported for 1 yet; a stale report for 0 changes nothing.
        assert_eq!(w.persisted(0, 5_000, 7_000), None);
        assert_eq!(w.hung_since(), Some(0));
    }
}
