//! The hybrid logical clock that stamps every lease change.
//!
//! A stamp follows the wall clock when it moves forward and falls back to
//! bumping the counter when it does not (same millisecond, or the clock
//! stepped back), so stamps issued by one node strictly increase and stay
//! close to real time. Observing a partner's stamp moves the clock past it,
//! so a local change made after seeing a remote one always wins the merge.

use twinmasq_proto::Stamp;

#[derive(Debug, Clone)]
pub(crate) struct Hlc {
    node: u32,
    /// The greatest stamp issued or observed; every new stamp is above it.
    last: Stamp,
}

impl Hlc {
    pub(crate) fn new(node: u32, last: Stamp) -> Self {
        Hlc { node, last }
    }

    pub(crate) fn last(&self) -> Stamp {
        self.last
    }

    pub(crate) fn next(&mut self, now_ms: u64) -> Stamp {
        let (wall_ms, counter) = if now_ms > self.last.wall_ms {
            (now_ms, 0)
        } else if let Some(c) = self.last.counter.checked_add(1) {
            (self.last.wall_ms, c)
        } else {
            // Four billion changes without the wall clock moving: borrow a
            // millisecond from the future rather than wrap and go backwards.
            (self.last.wall_ms.saturating_add(1), 0)
        };
        self.last = Stamp {
            wall_ms,
            counter,
            node: self.node,
        };
        self.last
    }

    /// Returns whether the clock moved.
    pub(crate) fn observe(&mut self, stamp: Stamp) -> bool {
        if stamp > self.last {
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

    #[test]
    fn follows_wall_clock_forward() {
        let mut c = Hlc::new(7, Stamp::default());
        let a = c.next(1_000);
        let b = c.next(2_000);
        assert_eq!((a.wall_ms, a.counter, a.node), (1_000, 0, 7));
        assert_eq!((b.wall_ms, b.counter), (2_000, 0));
    }

    #[test]
    fn same_millisecond_and_backwards_clock_bump_counter() {
        let mut c = Hlc::new(7, Stamp::default());
        let a = c.next(5_000);
        let b = c.next(5_000);
        let d = c.next(1_000);
        assert!(a < b && b < d);
        assert_eq!((d.wall_ms, d.counter), (5_000, 2));
        let e = c.next(6_000);
        assert_eq!((e.wall_ms, e.counter), (6_000, 0));
    }

    #[test]
    fn counter_exhaustion_moves_wall_forward() {
        let start = Stamp {
            wall_ms: 10,
            counter: u32::MAX,
            node: 1,
        };
        let mut c = Hlc::new(1, start);
        let s = c.next(10);
        assert!(s > start);
        assert_eq!((s.wall_ms, s.counter), (11, 0));
    }

    #[test]
    fn observed_remote_stamp_is_exceeded() {
        let mut c = Hlc::new(1, Stamp::default());
        c.next(100);
        let remote = Stamp {
            wall_ms: 500,
            counter: 3,
            node: u32::MAX,
        };
        assert!(c.observe(remote));
        let s = c.next(100);
        assert!(s > remote);
        assert_eq!(s.node, 1);
        assert!(!c.observe(Stamp::default()));
    }

    /// Review §5 step 4: at the end of time there is no greater stamp;
    /// `next` must not hand out a smaller one.
    #[test]
    fn next_never_goes_below_the_last_stamp() {
        let end = Stamp {
            wall_ms: u64::MAX,
            counter: u32::MAX,
            node: 7,
        };
        let mut c = Hlc::new(1, end);
        let s = c.next(1_000);
        assert!(s > end, "{s:?} is below {end:?}");
    }
}
