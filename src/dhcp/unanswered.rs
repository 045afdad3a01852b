//! Which clients a passive secondary sees asking, again and again, without
//! an answer from the primary: the second sign (besides `secs`) that the
//! primary, though linked, is not answering on the LAN.
//!
//! A client counts as unanswered once it has been asking for the threshold
//! of wall time without its state moving on: the same message again (a
//! retransmission), or a fall back to DISCOVER from an offer it took or a
//! lease it renewed (what a client whose REQUESTs go unanswered does). Any
//! other change (it took an offer, it went from INIT-REBOOT to RENEWING or
//! to DISCOVER, or asks for another address) may follow an answer, and
//! starts the count again; so does the primary's grant replicated into this
//! table, and a silence longer than any retransmission interval. A client
//! that fills in `secs` counts its own time, better than we can: once one
//! of its messages in the episode had `secs` above 0 it is judged by
//! `secs` alone, so this is for clients that leave it at 0. Everything here comes from the LAN, so the
//! memory is a capped map: at the cap the entry whose episode began first
//! is evicted.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

/// Clients remembered at most (each entry some 60 bytes).
pub const MAX_TRACKED: usize = 4096;
/// Silence after which a client's next message starts a new episode: a
/// client still asking retransmits within 64 s (RFC 2131 §4.1), so a longer
/// gap means it was answered (or gave up) meanwhile.
pub const EPISODE_GAP_MS: u64 = 90_000;

/// What one message of a client says about its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asking {
    /// DISCOVER.
    Discover,
    /// A SELECTING REQUEST: it took the offer of `server` for `addr`.
    Took { server: Ipv4Addr, addr: Ipv4Addr },
    /// INIT-REBOOT for `addr`.
    Reboot(Ipv4Addr),
    /// RENEWING or REBINDING `addr` (ciaddr).
    Renew(Ipv4Addr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When this episode of asking began (or last moved on).
    since_ms: u64,
    last_ms: u64,
    asking: Asking,
    /// Some message of this episode had `secs` above 0.
    secs_seen: bool,
    /// This node has served the client in this episode: the REQUEST for
    /// our own offer is answered even if it carries `secs` 0.
    served: bool,
    /// Matches the eviction queue's entry.
    generation: u64,
}

#[derive(Debug, Default)]
pub struct Unanswered {
    entries: HashMap<u64, Entry>,
    /// (client, generation) in the order episodes began; stale pairs are
    /// skipped when met.
    order: VecDeque<(u64, u64)>,
    next_generation: u64,
}

impl Unanswered {
    /// A message from `client` (a hash of its id) at `now_ms`.
    pub fn note(&mut self, client: u64, asking: Asking, secs: u16, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(&client) {
            if now_ms.saturating_sub(e.last_ms) <= EPISODE_GAP_MS {
                e.last_ms = e.last_ms.max(now_ms);
                let fell_back = asking == Asking::Discover
                    && matches!(e.asking, Asking::Took { .. } | Asking::Renew(_));
                if asking != e.asking && !fell_back {
                    // Moved on: counted from here.
                    e.since_ms = now_ms;
                    e.secs_seen = false;
                }
                e.asking = asking;
                e.secs_seen |= secs > 0;
                return;
            }
            self.entries.remove(&client);
        }
        while self.entries.len() >= MAX_TRACKED {
            self.evict_oldest();
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(
            client,
            Entry {
                since_ms: now_ms,
                last_ms: now_ms,
                asking,
                secs_seen: secs > 0,
                served: false,
                generation,
            },
        );
        self.order.push_back((client, generation));
        if self.order.len() > 2 * MAX_TRACKED {
            let entries = &self.entries;
            self.order
                .retain(|(c, g)| entries.get(c).is_some_and(|e| e.generation == *g));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((c, g)) = self.order.pop_front() {
            if self.entries.get(&c).is_some_and(|e| e.generation == g) {
                self.entries.remove(&c);
                return;
            }
        }
        // The queue lost track (it cannot, but memory stays bounded).
        self.entries.clear();
    }

    /// Has `client` been asking for `threshold_ms` without moving on?
    pub fn is_due(&self, client: u64, threshold_ms: u64, now_ms: u64) -> bool {
        self.entries.get(&client).is_some_and(|e| {
            !e.secs_seen
                && now_ms.saturating_sub(e.last_ms) <= EPISODE_GAP_MS
                && now_ms.saturating_sub(e.since_ms) >= threshold_ms
        })
    }

    /// Has this node served `client` in this episode (so an offer of ours
    /// may be what it answers)?
    pub fn was_served(&self, client: u64) -> bool {
        self.entries.get(&client).is_some_and(|e| e.served)
    }

    /// This node answers `client` now (its `secs`, or [`Self::is_due`]).
    pub fn served(&mut self, client: u64) {
        if let Some(e) = self.entries.get_mut(&client) {
            e.served = true;
        }
    }

    /// The primary answered `client` (its grant reached this table).
    pub fn forget(&mut self, client: u64) {
        self.entries.remove(&client);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 10_000;

    #[test]
    fn asking_for_the_threshold_makes_a_client_due() {
        let mut u = Unanswered::default();
        u.note(1, Asking::Discover, 0, 0);
        assert!(!u.is_due(1, T, 9_999));
        u.note(1, Asking::Discover, 0, 9_999);
        assert!(u.is_due(1, T, 10_000));
        assert!(!u.is_due(2, T, 10_000), "never seen");
    }

    #[test]
    fn taking_an_offer_restarts_the_count_and_falling_back_does_not() {
        let mut u = Unanswered::default();
        let took = Asking::Took {
            server: Ipv4Addr::new(198, 18, 0, 2),
            addr: Ipv4Addr::new(198, 18, 0, 11),
        };
        u.note(1, Asking::Discover, 0, 0);
        u.note(1, took, 0, 8_000);
        u.note(1, took, 0, 17_000);
        assert!(!u.is_due(1, T, 17_000), "the same offer again: no progress");
        u.note(1, took, 0, 18_000);
        assert!(u.is_due(1, T, 18_000));
        // Back to DISCOVER: still the same episode.
        u.note(1, Asking::Discover, 0, 19_000);
        assert!(u.is_due(1, T, 19_000));
        // A client that counts `secs` is judged by it alone.
        u.note(3, Asking::Discover, 0, 0);
        u.note(3, Asking::Discover, 4, 4_000);
        u.note(3, Asking::Discover, 0, 12_000);
        assert!(!u.is_due(3, T, 12_000));
        // INIT-REBOOT given up, then RENEWING: a state of its own.
        let ip = Ipv4Addr::new(198, 18, 0, 11);
        u.note(2, Asking::Reboot(ip), 0, 0);
        u.note(2, Asking::Reboot(ip), 0, 4_000);
        u.note(2, Asking::Renew(ip), 0, 12_000);
        assert!(!u.is_due(2, T, 12_000));
        // INIT-REBOOT, then DISCOVER: it may have been NAKed; counted anew.
        u.note(4, Asking::Reboot(ip), 0, 0);
        u.note(4, Asking::Discover, 0, 11_000);
        assert!(!u.is_due(4, T, 11_000));
        u.note(2, Asking::Renew(ip), 0, 22_000);
        assert!(u.is_due(2, T, 22_000));
    }

    #[test]
    fn a_long_silence_starts_a_new_episode() {
        let mut u = Unanswered::default();
        u.note(1, Asking::Discover, 0, 0);
        u.note(1, Asking::Discover, 0, 12_000);
        assert!(u.is_due(1, T, 12_000));
        assert!(!u.is_due(1, T, 12_000 + EPISODE_GAP_MS + 1));
        u.note(1, Asking::Discover, 0, 12_000 + EPISODE_GAP_MS + 1);
        assert!(!u.is_due(1, T, 12_000 + EPISODE_GAP_MS + 1));
    }

    #[test]
    fn served_clients_are_remembered_and_forgotten_ones_start_over() {
        let mut u = Unanswered::default();
        u.note(1, Asking::Discover, 0, 0);
        u.served(1);
        assert!(u.was_served(1) && !u.is_due(1, T, 1));
        u.forget(1);
        assert!(!u.is_due(1, T, 20_000));
        assert!(u.is_empty());
    }

    #[test]
    fn the_map_is_capped_and_evicts_the_oldest() {
        let mut u = Unanswered::default();
        for c in 0..(3 * MAX_TRACKED as u64) {
            u.note(c, Asking::Discover, 0, c);
            // Refreshing an early one does not save it: eviction is by
            // when its episode began.
            u.note(0, Asking::Discover, 0, c);
        }
        assert_eq!(u.len(), MAX_TRACKED);
        assert!(u.order.len() <= 2 * MAX_TRACKED + 1);
        let last = 3 * MAX_TRACKED as u64 - 1;
        assert!(u.entries.contains_key(&last));
        assert!(!u.entries.contains_key(&1));
    }
}
