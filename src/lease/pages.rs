//! Merged records stored a page at a time.
//!
//! sled 0.34 costs about 10 µs of CPU per key written, so a sync that
//! brings 100,000 new records, written key by key, keeps the merging node's
//! core busy for a second or more. A big merge is therefore written as one
//! sled value per page (under a rising number in the `pages` tree); the
//! records are in memory at once, and `LeaseDb::spread_pages` later copies
//! them into their per-address keys a few at a time and drops each page
//! once it is spread. A start reads the pages after the per-address keys
//! and lets each record stand where it is newer, so a crash at any point
//! loses nothing a page held.
//!
//! A page's value: per record, its encoded length (u32, big-endian) and
//! its encoding, the same bytes a per-address key holds.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// Merges of fewer records than this are written key by key: a page
/// saves nothing for an update of a few changes.
pub(super) const MIN_RECORDS: usize = 64;

pub(super) fn pack<'a>(records: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut page = Vec::new();
    for r in records {
        // Records are a few hundred bytes at most (the codec's limit is far
        // below 4 GiB), so the length always fits.
        let len = u32::try_from(r.len()).unwrap_or(u32::MAX);
        page.extend_from_slice(&len.to_be_bytes());
        page.extend_from_slice(r);
    }
    page
}

/// The encoded records of a page, or what is wrong with it.
pub(super) fn unpack(page: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut rest = page;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(format!("{} stray bytes at the end", rest.len()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(format!("a record of {len} bytes, only {} left", tail.len()));
        }
        let (rec, tail) = tail.split_at(len);
        out.push(rec);
        rest = tail;
    }
    Ok(out)
}

pub(super) fn key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(super) fn key_number(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

/// The pages not yet spread into per-address keys, oldest first, with the
/// addresses each still has to spread.
#[derive(Default)]
pub(super) struct Pending {
    pages: VecDeque<(u64, Vec<Ipv4Addr>)>,
    pub(super) next: u64,
}

impl Pending {
    pub(super) fn push(&mut self, page: u64, ips: Vec<Ipv4Addr>) {
        self.next = self.next.max(page + 1);
        self.pages.push_back((page, ips));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.pages.clear();
    }

    /// Takes up to `budget` addresses to spread, and the pages that are
    /// done once those are written.
    pub(super) fn take(&mut self, budget: usize) -> (Vec<Ipv4Addr>, Vec<u64>) {
        let mut ips = Vec::new();
        let mut done = Vec::new();
        while ips.len() < budget {
            let Some((page, left)) = self.pages.front_mut() else {
                break;
            };
            let n = (budget - ips.len()).min(left.len());
            ips.extend(left.drain(..n));
            if left.is_empty() {
                done.push(*page);
                self.pages.pop_front();
            }
        }
        (ips, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack_round_trip_and_damage_is_named() {
        let recs: Vec<&[u8]> = vec![b"abc", b"", b"defgh"];
        let page = pack(recs.iter().copied());
        assert_eq!(unpack(&page).unwrap(), recs);
        assert!(unpack(&page[..page.len() - 1])
            .unwrap_err()
            .contains("only"));
        let mut stray = page.clone();
        stray.push(1);
        assert!(unpack(&stray).unwrap_err().contains("stray"));
        assert_eq!(key_number(&key(7)), Some(7));
        assert_eq!(key_number(b"abc"), None);
    }

    #[test]
    fn take_spreads_pages_in_order_and_names_the_finished_ones() {
        let ip = |n| Ipv4Addr::new(198, 18, 0, n);
        let mut p = Pending::default();
        p.push(3, vec![ip(1), ip(2), ip(3)]);
        p.push(4, vec![ip(4)]);
        assert_eq!(p.next, 5);
        assert_eq!(p.take(2), (vec![ip(1), ip(2)], vec![]));
        assert_eq!(p.take(5), (vec![ip(3), ip(4)], vec![3, 4]));
        assert!(p.is_empty());
    }
}
