//! The hybrid logical clock that stamps every lease change.
//!
//! A stamp follows the wall clock when it moves forward and falls back to
//! bumping the counter when it does not (same millisecond, or the clock
//! stepped back), so stamps issued by one node strictly increase and stay
//! close to real time. Observing a partner's stamp moves the clock past it,
//! so a local change made after seeing a remote one always wins the merge.
//!
//! Bounded: the clock never adopts a stamp beyond its wall clock plus the
//! skew bound (`failover-max-skew`), so one stamp from the future (a
//! partner's clock running ahead, a record crafted at `u64::MAX`) cannot
//! carry it away. What to do when it stands beyond that bound anyway (its
//! own wall clock stepped back, or a stamp recovered from disk) is the
//! lease database's call: see `LeaseDb::keep_clock_bounded`.

use twinmasq_proto::Stamp;

/// No stamp is left above the last one: the clock cannot go on without
/// going backwards, which it never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the lease clock is exhausted at {0:?}: no greater stamp exists")]
pub struct Exhausted(pub Stamp);

#[derive(Debug, Clone)]
pub(crate) struct Hlc {
    node: u32,
    /// The greatest stamp issued or observed; every new stamp is above it.
    last: Stamp,
    /// How far ahead of the wall clock an observed stamp may be.
    bound_ms: u64,
}

impl Hlc {
    pub(crate) fn new(node: u32, last: Stamp, bound_ms: u64) -> Self {
        Hlc {
            node,
            last,
            bound_ms,
        }
    }

    pub(crate) fn last(&self) -> Stamp {
        self.last
    }

    pub(crate) fn set_bound(&mut self, bound_ms: u64) {
        self.bound_ms = bound_ms;
    }

    /// The latest wall clock the clock may stand at when the wall clock
    /// reads `now_ms`.
    pub(crate) fn limit(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.bound_ms)
    }

    /// Whether the clock stands beyond its wall clock plus the bound.
    pub(crate) fn is_ahead(&self, now_ms: u64) -> bool {
        self.last.wall_ms > self.limit(now_ms)
    }

    /// Sets the clock back to `floor`: only for the lease database, once
    /// nothing it holds is stamped above `floor` (see
    /// `LeaseDb::keep_clock_bounded`).
    pub(crate) fn rebase(&mut self, floor: Stamp) {
        self.last = floor;
    }

    /// A stamp above every stamp issued or observed, never below `now_ms`
    /// unless the clock already stands above it.
    pub(crate) fn next(&mut self, now_ms: u64) -> Result<Stamp, Exhausted> {
        let (wall_ms, counter) = if now_ms > self.last.wall_ms {
            (now_ms, 0)
        } else if let Some(c) = self.last.counter.checked_add(1) {
            (self.last.wall_ms, c)
        } else if let Some(w) = self.last.wall_ms.checked_add(1) {
            // Four billion changes without the wall clock moving: borrow a
            // millisecond from the future rather than wrap and go backwards.
            (w, 0)
        } else {
            return Err(Exhausted(self.last));
        };
        // Above `last` in (wall, counter) alone, so whatever the node ids.
        self.last = Stamp {
            wall_ms,
            counter,
            node: self.node,
        };
        Ok(self.last)
    }

    /// Moves the clock up to a partner's stamp. Returns whether it moved;
    /// a stamp beyond the wall clock plus the bound never moves it.
    pub(crate) fn observe(&mut self, stamp: Stamp, now_ms: u64) -> bool {
        if stamp > self.last && stamp.wall_ms <= self.limit(now_ms) {
            self.last = stamp;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: u64 = 30_000;

    fn clock(node: u32, last: Stamp) -> Hlc {
        Hlc::new(node, last, BOUND)
    }

    #[test]
    fn follows_wall_clock_forward() {
        let mut c = clock(7, Stamp::default());
        let a = c.next(1_000).unwrap();
        let b = c.next(2_000).unwrap();
        assert_eq!((a.wall_ms, a.counter, a.node), (1_000, 0, 7));
        assert_eq!((b.wall_ms, b.counter), (2_000, 0));
    }

    #[test]
    fn same_millisecond_and_backwards_clock_bump_counter() {
        let mut c = clock(7, Stamp::default());
        let a = c.next(5_000).unwrap();
        let b = c.next(5_000).unwrap();
        let d = c.next(1_000).unwrap();
        assert!(a < b && b < d);
        assert_eq!((d.wall_ms, d.counter), (5_000, 2));
        let e = c.next(6_000).unwrap();
        assert_eq!((e.wall_ms, e.counter), (6_000, 0));
    }

    #[test]
    fn counter_exhaustion_moves_wall_forward() {
        let start = Stamp {
            wall_ms: 10,
            counter: u32::MAX,
            node: 1,
        };
        let mut c = clock(1, start);
        let s = c.next(10).unwrap();
        assert!(s > start);
        assert_eq!((s.wall_ms, s.counter), (11, 0));
    }

    #[test]
    fn observed_remote_stamp_is_exceeded() {
        let mut c = clock(1, Stamp::default());
        c.next(100).unwrap();
        let remote = Stamp {
            wall_ms: 500,
            counter: 3,
            node: u32::MAX,
        };
        assert!(c.observe(remote, 100));
        let s = c.next(100).unwrap();
        assert!(s > remote);
        assert_eq!(s.node, 1);
        assert!(!c.observe(Stamp::default(), 100));
    }

    /// Review §5: a stamp beyond the wall clock plus the bound never moves
    /// the clock, however far ahead; one just inside does.
    #[test]
    fn observe_never_moves_beyond_the_bound() {
        let now = 1_800_000_000_000;
        let mut c = clock(1, Stamp::default());
        for wall_ms in [now + BOUND + 1, now + 86_400_000, u64::MAX] {
            let far = Stamp {
                wall_ms,
                counter: u32::MAX,
                node: 7,
            };
            assert!(!c.observe(far, now));
            assert_eq!(c.last(), Stamp::default());
        }
        let near = Stamp {
            wall_ms: now + BOUND,
            counter: 0,
            node: 7,
        };
        assert!(c.observe(near, now));
        assert!(!c.is_ahead(now));
        assert!(c.is_ahead(now - 1));
        assert!(c.next(now).unwrap() > near);
    }

    /// Review §5 step 4: at the end of time there is no greater stamp;
    /// `next` says so rather than hand out a smaller one.
    #[test]
    fn next_never_goes_below_the_last_stamp() {
        let end = Stamp {
            wall_ms: u64::MAX,
            counter: u32::MAX,
            node: 7,
        };
        let mut c = clock(1, end);
        assert_eq!(c.next(1_000), Err(Exhausted(end)));
        assert_eq!(c.last(), end, "unchanged");
        // One step below the end: the last stamp there, then no more.
        let mut c = clock(
            1,
            Stamp {
                wall_ms: u64::MAX,
                counter: u32::MAX - 1,
                node: 7,
            },
        );
        let s = c.next(u64::MAX).unwrap();
        assert_eq!((s.wall_ms, s.counter, s.node), (u64::MAX, u32::MAX, 1));
        assert!(c.next(u64::MAX).is_err());
    }
}
