//! Per-interface admission of DHCP requests: token buckets with the clock
//! passed in, so the engine stays sans-I/O and the tests set the time.
//!
//! Each receiving interface has two budgets. Clients the server knows (a
//! `dhcp-host` line matches them, or they hold a lease) draw from one;
//! everybody else from the other. A flood from random MACs is all
//! "unknown", so it can exhaust only its own budget: renewals and static
//! hosts keep theirs. Dropping here happens before any database work.

use std::collections::HashMap;

/// Packets per second for each class (`dhcp-rate-limit`); 0 is no limit.
pub use crate::config::DhcpRateLimit as RateLimits;

/// A bucket of `rate` tokens a second, holding at most one second's worth
/// (the burst a quiet interface may take at once).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u32,
    /// Thousandths of a token, so refills of a few milliseconds count.
    milli_tokens: u64,
    at_ms: u64,
}

impl TokenBucket {
    pub fn new(rate: u32, now_ms: u64) -> Self {
        TokenBucket {
            rate,
            milli_tokens: Self::cap(rate),
            at_ms: now_ms,
        }
    }

    fn cap(rate: u32) -> u64 {
        u64::from(rate) * 1000
    }

    /// Takes one token if there is one. A clock that steps back refills
    /// nothing and loses nothing.
    pub fn take(&mut self, now_ms: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now_ms.saturating_sub(self.at_ms);
        // Tokens accrue at `rate` per 1000 ms = `rate` milli-tokens per ms.
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(self.rate)))
            .min(Self::cap(self.rate));
        self.at_ms = self.at_ms.max(now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone)]
struct Budgets {
    known: TokenBucket,
    unknown: TokenBucket,
}

/// The buckets of every interface requests arrived on. The map is keyed by
/// interface index, which the kernel assigns: it grows with the host's
/// interfaces, not with anything a client sends.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    per_if: HashMap<u32, Budgets>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            per_if: HashMap::new(),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// No limit for either class (`dhcp-rate-limit=off`).
    pub fn is_off(&self) -> bool {
        self.limits.unknown_per_sec == 0 && self.limits.known_per_sec == 0
    }

    /// May a request from a `known` (or unknown) client, arriving on
    /// `ifindex` now, be handled?
    pub fn admit(&mut self, ifindex: u32, known: bool, now_ms: u64) -> bool {
        let limits = self.limits;
        let b = self.per_if.entry(ifindex).or_insert_with(|| Budgets {
            known: TokenBucket::new(limits.known_per_sec, now_ms),
            unknown: TokenBucket::new(limits.unknown_per_sec, now_ms),
        });
        if known {
            b.known.take(now_ms)
        } else {
            b.unknown.take(now_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(b: &mut TokenBucket, n: u32, now: u64) -> u32 {
        (0..n).filter(|_| b.take(now)).count() as u32
    }

    #[test]
    fn a_bucket_allows_one_seconds_burst_then_its_rate() {
        let mut b = TokenBucket::new(100, 1_000);
        assert_eq!(admitted(&mut b, 150, 1_000), 100, "burst is one second");
        assert_eq!(admitted(&mut b, 10, 1_000), 0);
        // 10 ms at 100/s is one token.
        assert_eq!(admitted(&mut b, 5, 1_010), 1);
        // Over ten seconds at 500 offered per second, 100 a second pass.
        let mut passed = 0;
        for step in 1..=1000u64 {
            passed += admitted(&mut b, 5, 1_010 + step * 10);
        }
        assert_eq!(passed, 1000);
        // A long pause refills to the cap, not beyond.
        assert_eq!(admitted(&mut b, 500, 1_000_000), 100);
    }

    #[test]
    fn a_clock_step_back_neither_refills_nor_panics() {
        let mut b = TokenBucket::new(10, 5_000);
        assert_eq!(admitted(&mut b, 10, 5_000), 10);
        assert_eq!(admitted(&mut b, 10, 0), 0);
        assert_eq!(admitted(&mut b, 10, 5_000), 0);
        assert_eq!(admitted(&mut b, 10, 5_100), 1);
        let mut edge = TokenBucket::new(u32::MAX, u64::MAX - 1);
        assert!(edge.take(u64::MAX));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut b = TokenBucket::new(0, 0);
        assert_eq!(admitted(&mut b, 100_000, 0), 100_000);
        let off = RateLimiter::new(RateLimits {
            unknown_per_sec: 0,
            known_per_sec: 0,
        });
        assert!(off.is_off());
        let mut half = RateLimiter::new(RateLimits {
            unknown_per_sec: 1,
            known_per_sec: 0,
        });
        assert!(!half.is_off());
        assert!((0..1000).all(|_| half.admit(3, true, 0)));
        assert!(half.admit(3, false, 0) && !half.admit(3, false, 0));
    }

    #[test]
    fn unknown_flood_leaves_known_clients_and_other_interfaces_their_budget() {
        let mut l = RateLimiter::new(RateLimits {
            unknown_per_sec: 50,
            known_per_sec: 200,
        });
        let t = 10_000;
        let unknown_passed = (0..10_000).filter(|_| l.admit(1, false, t)).count();
        assert_eq!(unknown_passed, 50);
        assert!((0..200).all(|_| l.admit(1, true, t)), "known budget intact");
        assert!(!l.admit(1, true, t), "and bounded too");
        assert!(l.admit(2, false, t), "another interface has its own");
        assert!(l.admit(1, false, t + 20), "refills with time");
    }
}
