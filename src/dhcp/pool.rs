//! Which addresses of one dhcp-range are free to hand out.
//!
//! A bitmap (1 = unavailable) with a summary bit per 64-address word that is
//! full, so finding a free address skips 4096 taken addresses per summary
//! word instead of testing each: allocation stays cheap with a nearly full
//! /16. The engine keeps the bits exact; the pool knows nothing of why an
//! address is taken.

use std::net::Ipv4Addr;

use crate::share;
use twinmasq_proto::link::Role;

#[derive(Debug, Clone)]
pub struct Pool {
    start: u32,
    len: u32,
    used: Vec<u64>,
    full: Vec<u64>,
    used_count: u32,
}

impl Pool {
    /// `end` is inclusive; a reversed range is treated as empty.
    pub fn new(start: Ipv4Addr, end: Ipv4Addr) -> Self {
        let (s, e) = (u32::from(start), u32::from(end));
        let len = if e >= s { e - s + 1 } else { 0 };
        Pool::span(s, len)
    }

    /// `len` addresses from `start`; `len` may be 0 (an empty share).
    fn span(s: u32, len: u32) -> Self {
        let words = (len as usize).div_ceil(64);
        let mut pool = Pool {
            start: s,
            len,
            used: vec![0; words],
            full: vec![0; words.div_ceil(64)],
            used_count: 0,
        };
        // Bits past the end are permanently taken so a word's fullness test
        // needs no special case for the last word.
        let tail = len as usize % 64;
        if tail != 0 {
            if let Some(last) = pool.used.last_mut() {
                *last = !0u64 << tail;
            }
            pool.update_summary(words - 1);
        }
        pool
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn used_count(&self) -> u32 {
        self.used_count
    }

    pub fn free_count(&self) -> u32 {
        self.len - self.used_count
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).checked_sub(self.start)?;
        (off < self.len).then_some(off)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip).is_some()
    }

    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        match self.offset(ip) {
            Some(off) => self.used[off as usize / 64] & (1 << (off % 64)) != 0,
            None => true,
        }
    }

    /// Marks `ip` taken or free; addresses outside the range are ignored.
    pub fn set_used(&mut self, ip: Ipv4Addr, used: bool) {
        let Some(off) = self.offset(ip) else { return };
        let (w, bit) = (off as usize / 64, 1u64 << (off % 64));
        let was = self.used[w] & bit != 0;
        if was == used {
            return;
        }
        if used {
            self.used[w] |= bit;
            self.used_count += 1;
        } else {
            self.used[w] &= !bit;
            self.used_count -= 1;
        }
        self.update_summary(w);
    }

    fn update_summary(&mut self, w: usize) {
        let bit = 1u64 << (w % 64);
        if self.used[w] == !0 {
            self.full[w / 64] |= bit;
        } else {
            self.full[w / 64] &= !bit;
        }
    }

    /// The first free address at or after offset `hint % len`, wrapping
    /// around: a client's hash picks where to start, so clients spread over
    /// the range and a returning client tends to land on the same address.
    pub fn find_free(&self, hint: u64) -> Option<Ipv4Addr> {
        if self.len == 0 || self.used_count == self.len {
            return None;
        }
        let start = (hint % u64::from(self.len)) as usize;
        let (sw, sb) = (start / 64, start % 64);
        let words = self.used.len();

        let at = |w: usize, mask: u64| -> Option<Ipv4Addr> {
            let free = !self.used[w] & mask;
            (free != 0).then(|| self.addr(w * 64 + free.trailing_zeros() as usize))
        };
        if let Some(ip) = at(sw, !0u64 << sb) {
            return Some(ip);
        }
        if let Some(w) = self.next_nonfull_word(sw + 1, words) {
            return at(w, !0);
        }
        if let Some(w) = self.next_nonfull_word(0, sw) {
            return at(w, !0);
        }
        at(sw, !(!0u64 << sb))
    }

    /// First word in `from..to` that has a free bit, found via the summary.
    fn next_nonfull_word(&self, from: usize, to: usize) -> Option<usize> {
        let mut w = from;
        while w < to {
            let (sw, sb) = (w / 64, w % 64);
            let nonfull = !self.full[sw] & (!0u64 << sb);
            if nonfull != 0 {
                let found = sw * 64 + nonfull.trailing_zeros() as usize;
                return (found < to).then_some(found);
            }
            w = (sw + 1) * 64;
        }
        None
    }

    fn addr(&self, off: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.start + off as u32)
    }
}

/// One dhcp-range as two pools, the primary's share and the secondary's
/// (see [`share::owner_of`]), so a node can search its own share, or the
/// partner's, at bitmap speed. Without failover the split is 0: one pool
/// holds the whole range and the secondary's is empty.
#[derive(Debug, Clone)]
pub struct SplitPool {
    primary: Pool,
    secondary: Pool,
}

impl SplitPool {
    /// `end` is inclusive; a reversed range is treated as empty.
    pub fn new(start: Ipv4Addr, end: Ipv4Addr, split_percent: u8) -> Self {
        let whole = Pool::new(start, end);
        let second = share::secondary_len(whole.len, split_percent);
        let first = whole.len - second;
        SplitPool {
            primary: Pool::span(whole.start, first),
            secondary: Pool::span(whole.start.wrapping_add(first), second),
        }
    }

    pub fn share(&self, owner: Role) -> &Pool {
        match owner {
            Role::Primary => &self.primary,
            Role::Secondary => &self.secondary,
        }
    }

    /// The share `ip` belongs to, if it is in the range.
    pub fn owner(&self, ip: Ipv4Addr) -> Option<Role> {
        if self.primary.contains(ip) {
            Some(Role::Primary)
        } else if self.secondary.contains(ip) {
            Some(Role::Secondary)
        } else {
            None
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.owner(ip).is_some()
    }

    pub fn set_used(&mut self, ip: Ipv4Addr, used: bool) {
        self.primary.set_used(ip, used);
        self.secondary.set_used(ip, used);
    }

    pub fn free_count(&self) -> u32 {
        self.primary.free_count() + self.secondary.free_count()
    }

    pub fn find_free(&self, owner: Role, hint: u64) -> Option<Ipv4Addr> {
        self.share(owner).find_free(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xC612_0000 + n)
    }

    #[test]
    fn finds_from_hint_and_wraps() {
        let mut p = Pool::new(ip(10), ip(19));
        assert_eq!(p.len(), 10);
        assert_eq!(p.find_free(3), Some(ip(13)));
        p.set_used(ip(13), true);
        assert_eq!(p.find_free(3), Some(ip(14)));
        for n in 14..20 {
            p.set_used(ip(n), true);
        }
        assert_eq!(p.find_free(3), Some(ip(10)));
        for n in 10..13 {
            p.set_used(ip(n), true);
        }
        assert_eq!(p.find_free(3), None);
        assert_eq!(p.free_count(), 0);
        p.set_used(ip(11), false);
        assert_eq!(p.find_free(9), Some(ip(11)));
    }

    #[test]
    fn outside_addresses_are_ignored_and_reported_used() {
        let mut p = Pool::new(ip(10), ip(19));
        p.set_used(ip(5), true);
        assert_eq!(p.used_count(), 0);
        assert!(p.is_used(ip(5)));
        assert!(Pool::new(ip(10), ip(9)).find_free(0).is_none());
    }

    #[test]
    fn nearly_full_large_pool_finds_the_one_hole() {
        let mut p = Pool::new(ip(0), ip(65_535));
        for n in 0..65_536 {
            p.set_used(ip(n), true);
        }
        p.set_used(ip(40_000), false);
        assert_eq!(p.find_free(41_000), Some(ip(40_000)));
        assert_eq!(p.find_free(7), Some(ip(40_000)));
    }

    #[test]
    fn split_pool_searches_each_share_apart() {
        let mut p = SplitPool::new(ip(10), ip(20), 50);
        assert_eq!(p.share(Role::Primary).len(), 6);
        assert_eq!(p.share(Role::Secondary).len(), 5);
        assert_eq!(p.owner(ip(15)), Some(Role::Primary));
        assert_eq!(p.owner(ip(16)), Some(Role::Secondary));
        assert_eq!(p.owner(ip(21)), None);
        for n in 10..16 {
            p.set_used(ip(n), true);
        }
        assert_eq!(p.find_free(Role::Primary, 0), None);
        assert_eq!(p.find_free(Role::Secondary, 0), Some(ip(16)));
        assert_eq!(p.free_count(), 5);
        let all_secondary = SplitPool::new(ip(0), ip(9), 100);
        assert!(all_secondary.share(Role::Primary).is_empty());
        assert_eq!(all_secondary.find_free(Role::Primary, 3), None);
        assert_eq!(all_secondary.find_free(Role::Secondary, 3), Some(ip(3)));
        let top = SplitPool::new(Ipv4Addr::new(255, 255, 255, 250), Ipv4Addr::BROADCAST, 0);
        assert_eq!(top.free_count(), 6);
        assert!(top.share(Role::Secondary).is_empty());
    }

    proptest! {
        #[test]
        fn matches_a_naive_model(len in 1u32..300, ops in prop::collection::vec((0u32..320, any::<bool>()), 0..400), hint in any::<u64>()) {
            let mut p = Pool::new(ip(0), ip(len - 1));
            let mut used = BTreeSet::new();
            for (n, u) in ops {
                p.set_used(ip(n), u);
                if n < len {
                    if u { used.insert(n); } else { used.remove(&n); }
                }
            }
            prop_assert_eq!(p.used_count() as usize, used.len());
            let start = (hint % u64::from(len)) as u32;
            let expect = (start..len).chain(0..start).find(|n| !used.contains(n)).map(ip);
            prop_assert_eq!(p.find_free(hint), expect);
        }
    }
}
