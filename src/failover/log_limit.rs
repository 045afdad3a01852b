//! Warnings that come in floods (anyone on the network can cause some),
//! at most one line per interval, sans-I/O: the first of a quiet spell is logged in full, the
//! rest are counted and reported as one line when the interval is over.
//! A flood of junk connections then costs a line a minute, not a line
//! each (small routers keep their logs in a few MB of RAM).

/// The interval of the failover link's warnings about unauthenticated
/// connections.
pub const INTERVAL_MS: u64 = 60_000;

/// What to log for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Log this event in full: the first for a while.
    First,
    /// Log a summary of the `count` events counted in the last `over_ms`
    /// (this event is counted towards the next one).
    Summary { count: u64, over_ms: u64 },
    /// Nothing now: counted.
    Counted,
}

#[derive(Debug, Clone)]
pub struct LogLimit {
    interval_ms: u64,
    /// When the current interval began; None when quiet.
    since_ms: Option<u64>,
    counted: u64,
}

impl LogLimit {
    pub fn new(interval_ms: u64) -> LogLimit {
        LogLimit {
            interval_ms,
            since_ms: None,
            counted: 0,
        }
    }

    /// An event at `now_ms`.
    pub fn note(&mut self, now_ms: u64) -> Note {
        self.note_many(now_ms, 1)
    }

    /// An event at `now_ms` that stands for `n` things to count (records
    /// in one batch, say): counts and summaries are in things.
    pub fn note_many(&mut self, now_ms: u64, n: u64) -> Note {
        match self.since_ms {
            Some(since) if now_ms.saturating_sub(since) < self.interval_ms => {
                self.counted = self.counted.saturating_add(n);
                Note::Counted
            }
            Some(since) if self.counted > 0 => {
                let count = self.counted;
                self.since_ms = Some(now_ms);
                self.counted = n;
                Note::Summary {
                    count,
                    over_ms: now_ms.saturating_sub(since),
                }
            }
            _ => {
                self.since_ms = Some(now_ms);
                self.counted = 0;
                Note::First
            }
        }
    }

    /// Call now and then (a timer): when the interval is over and events
    /// were counted in it, their count and the time they span, to log.
    /// Without it the last interval's count would wait for the next event.
    pub fn flush(&mut self, now_ms: u64) -> Option<(u64, u64)> {
        let since = self.since_ms?;
        let over_ms = now_ms.saturating_sub(since);
        if over_ms < self.interval_ms {
            return None;
        }
        if self.counted == 0 {
            self.since_ms = None;
            return None;
        }
        let count = std::mem::take(&mut self.counted);
        // A new interval begins, so whatever comes next is counted too:
        // one line per interval, however the events fall.
        self.since_ms = Some(now_ms);
        Some((count, over_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines a flood of `per_sec` events a second for `secs` seconds
    /// produces, with a flush every 100 ms as the shell's timer does.
    fn lines(per_sec: u64, secs: u64) -> (u64, u64) {
        let mut l = LogLimit::new(INTERVAL_MS);
        let (mut lines, mut reported) = (0, 0);
        let step = 1_000 / per_sec.max(1);
        let mut t = 0;
        let mut next_flush = 0;
        while t < secs * 1_000 {
            match l.note(t) {
                Note::First => {
                    lines += 1;
                    reported += 1;
                }
                Note::Summary { count, .. } => {
                    lines += 1;
                    reported += count;
                }
                Note::Counted => {}
            }
            t += step.max(1);
            while next_flush <= t {
                if let Some((count, _)) = l.flush(next_flush) {
                    lines += 1;
                    reported += count;
                }
                next_flush += 100;
            }
        }
        // The end of the flood, then a quiet minute.
        for q in 0..700 {
            if let Some((count, _)) = l.flush(t + q * 100) {
                lines += 1;
                reported += count;
            }
        }
        (lines, reported)
    }

    #[test]
    fn a_flood_is_one_line_a_minute_and_every_event_is_counted() {
        // 1000 a second for 5 minutes: the first in full, then one summary
        // per minute (and the tail of the last).
        let (n, reported) = lines(1_000, 300);
        assert!(n <= 7, "{n} lines");
        assert_eq!(reported, 300_000, "every event is in some line");
    }

    #[test]
    fn a_lone_event_is_logged_in_full_and_nothing_follows() {
        let mut l = LogLimit::new(60_000);
        assert_eq!(l.note(5), Note::First);
        assert_eq!(l.flush(70_000), None);
        // Quiet since: the next one is in full again.
        assert_eq!(l.note(200_000), Note::First);
    }

    #[test]
    fn events_within_the_interval_are_counted_then_summed() {
        let mut l = LogLimit::new(60_000);
        assert_eq!(l.note(0), Note::First);
        assert_eq!(l.note(10), Note::Counted);
        assert_eq!(l.note(59_999), Note::Counted);
        assert_eq!(
            l.note(60_000),
            Note::Summary {
                count: 2,
                over_ms: 60_000
            }
        );
        // The event that brought the summary is in the next one.
        assert_eq!(l.flush(100_000), None);
        assert_eq!(l.flush(120_000), Some((1, 60_000)));
        assert_eq!(l.flush(180_000), None);
        assert_eq!(l.note(180_001), Note::First);
    }

    #[test]
    fn weighted_events_count_their_things() {
        let mut l = LogLimit::new(10_000);
        assert_eq!(l.note_many(0, 5), Note::First);
        assert_eq!(l.note_many(1, 3), Note::Counted);
        assert_eq!(l.note_many(2, 4), Note::Counted);
        assert_eq!(l.flush(10_000), Some((7, 10_000)));
    }

    #[test]
    fn a_clock_that_goes_back_does_not_open_the_gate() {
        let mut l = LogLimit::new(60_000);
        assert_eq!(l.note(100_000), Note::First);
        assert_eq!(l.note(50_000), Note::Counted);
        assert_eq!(l.flush(50_000), None);
    }
}
