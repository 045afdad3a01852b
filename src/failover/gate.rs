//! The failover rule "linked: ack before reply", as a pure part: replies
//! that promise a lease change wait here until the partner has acked that
//! change, and are dropped (the client retries) when the link falls, the
//! change loses a merge, or the wait grows too long. No clock, socket or
//! disk: the time is passed in, so the rule is tested on its own and the
//! simulation can run the same code the server runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use twinmasq_proto::Stamp;

/// A reply still waiting for the partner after this long is dropped (the
/// client has retried by then); the node closes such a link anyway.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// What became of a reply handed to the gate.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered<R> {
    /// Send it now: it promises nothing the partner must know first.
    Send(R),
    /// Held until the partner acks its change.
    Held,
    /// Promised under the link's rules, which no longer hold: dropped, so
    /// the client asks again and is answered under today's rules.
    Dropped,
}

#[derive(Debug)]
pub struct ReplyGate<R> {
    /// The partner has every own change up to this stamp.
    acked: Stamp,
    linked: bool,
    /// By the stamp of the change each reply promises, with when it came.
    waiting: BTreeMap<Stamp, Vec<(R, Instant)>>,
}

impl<R> Default for ReplyGate<R> {
    fn default() -> Self {
        ReplyGate {
            acked: Stamp::default(),
            linked: false,
            waiting: BTreeMap::new(),
        }
    }
}

impl<R> ReplyGate<R> {
    /// A reply whose change is durable here. `promise` is the stamp of the
    /// change the partner must hold before the client hears of it, if any.
    pub fn offer(&mut self, reply: R, promise: Option<Stamp>, now: Instant) -> Offered<R> {
        match promise {
            Some(stamp) if stamp > self.acked => {
                if self.linked {
                    self.waiting.entry(stamp).or_default().push((reply, now));
                    Offered::Held
                } else {
                    Offered::Dropped
                }
            }
            _ => Offered::Send(reply),
        }
    }

    /// The partner has every own change up to `stamp`: the replies that
    /// waited for those changes, in stamp order.
    pub fn acked(&mut self, stamp: Stamp) -> Vec<R> {
        self.acked = self.acked.max(stamp);
        let mut out = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > self.acked {
                break;
            }
            out.extend(entry.remove().into_iter().map(|(r, _)| r));
        }
        out
    }

    /// These changes lost a merge: their replies must never leave.
    /// Returns how many replies were cancelled.
    pub fn cancel(&mut self, stamps: &[Stamp]) -> usize {
        stamps
            .iter()
            .filter_map(|s| self.waiting.remove(s))
            .map(|v| v.len())
            .sum()
    }

    /// In sync with the partner from now on (true) or no longer (false).
    /// Returns the held replies the fall of the link dropped.
    pub fn linked(&mut self, up: bool) -> Vec<R> {
        self.linked = up;
        if up {
            return Vec::new();
        }
        // The next session's acks count afresh: after the lease clock was
        // set back (`LeaseDb::keep_clock_bounded`) an old, higher ack must
        // not release a reply waiting on a new, lower stamp.
        self.acked = Stamp::default();
        std::mem::take(&mut self.waiting)
            .into_values()
            .flatten()
            .map(|(r, _)| r)
            .collect()
    }

    /// Drops replies held for `MAX_WAIT` or longer, and returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<R> {
        let mut dropped = Vec::new();
        for v in self.waiting.values_mut() {
            let (late, young): (Vec<_>, Vec<_>) = std::mem::take(v)
                .into_iter()
                .partition(|(_, at)| now.saturating_duration_since(*at) >= MAX_WAIT);
            *v = young;
            dropped.extend(late.into_iter().map(|(r, _)| r));
        }
        self.waiting.retain(|_, v| !v.is_empty());
        dropped
    }

    /// Replies waiting for the partner.
    pub fn held(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(wall_ms: u64) -> Stamp {
        Stamp {
            wall_ms,
            counter: 0,
            node: 1,
        }
    }

    fn linked_gate() -> ReplyGate<&'static str> {
        let mut g = ReplyGate::default();
        assert!(g.linked(true).is_empty());
        g
    }

    #[test]
    fn replies_without_a_promise_or_already_acked_leave_at_once() {
        let now = Instant::now();
        let mut g = linked_gate();
        assert_eq!(g.offer("inform", None, now), Offered::Send("inform"));
        g.acked(stamp(5));
        assert_eq!(g.offer("old", Some(stamp(5)), now), Offered::Send("old"));
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn held_replies_leave_in_stamp_order_once_acked() {
        let now = Instant::now();
        let mut g = linked_gate();
        assert_eq!(g.offer("b", Some(stamp(20)), now), Offered::Held);
        assert_eq!(g.offer("a", Some(stamp(10)), now), Offered::Held);
        assert_eq!(g.offer("c", Some(stamp(30)), now), Offered::Held);
        assert_eq!(g.offer("a2", Some(stamp(10)), now), Offered::Held);
        assert_eq!(g.acked(stamp(5)), Vec::<&str>::new());
        assert_eq!(g.acked(stamp(20)), vec!["a", "a2", "b"]);
        // An older ack never takes back what a newer one released.
        assert_eq!(g.acked(stamp(1)), Vec::<&str>::new());
        assert_eq!(g.held(), 1);
        assert_eq!(g.acked(stamp(30)), vec!["c"]);
    }

    #[test]
    fn unlinked_promises_are_dropped_and_a_fallen_link_drops_every_held_reply() {
        let now = Instant::now();
        let mut g = ReplyGate::default();
        assert_eq!(g.offer("x", Some(stamp(1)), now), Offered::Dropped);
        g.linked(true);
        for (i, r) in ["a", "b", "c"].into_iter().enumerate() {
            g.offer(r, Some(stamp(10 + i as u64 / 2)), now);
        }
        assert_eq!(
            g.linked(false).len(),
            3,
            "every held reply counts, not every stamp"
        );
        assert_eq!(g.held(), 0);
        // The ack of a change promised before the fall releases nothing.
        assert_eq!(g.acked(stamp(100)), Vec::<&str>::new());
        // Nor does an old, higher ack release what a new session promises
        // under a lease clock that was set back.
        g.linked(false);
        g.linked(true);
        assert_eq!(g.offer("new", Some(stamp(50)), now), Offered::Held);
    }

    #[test]
    fn cancelled_changes_never_reply() {
        let now = Instant::now();
        let mut g = linked_gate();
        g.offer("lost1", Some(stamp(10)), now);
        g.offer("lost2", Some(stamp(10)), now);
        g.offer("kept", Some(stamp(11)), now);
        assert_eq!(g.cancel(&[stamp(10), stamp(99)]), 2);
        assert_eq!(g.acked(stamp(11)), vec!["kept"]);
    }

    #[test]
    fn expiry_counts_every_dropped_reply() {
        let t0 = Instant::now();
        let mut g = linked_gate();
        // Three replies promise one change, one another; one comes later.
        g.offer("a", Some(stamp(10)), t0);
        g.offer("b", Some(stamp(10)), t0);
        g.offer("c", Some(stamp(10)), t0);
        g.offer("d", Some(stamp(11)), t0);
        g.offer("late", Some(stamp(11)), t0 + Duration::from_secs(5));
        assert!(g
            .expire(t0 + MAX_WAIT - Duration::from_millis(1))
            .is_empty());
        assert_eq!(
            g.expire(t0 + MAX_WAIT).len(),
            4,
            "dropped replies, not emptied groups"
        );
        assert_eq!(g.acked(stamp(11)), vec!["late"]);
    }
}
