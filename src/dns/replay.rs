//! Replies kept as wire bytes for queries that repeat, so a busy server
//! answers a name it answered a moment ago by copying the reply and
//! writing the new query's id into it, instead of decoding, looking up
//! and encoding again.
//!
//! Only answers from local data and the cache are kept, and an entry
//! stands only while the reply the engine would build stays the same
//! byte for byte: the key is the whole query but its id (so letter case,
//! flags and EDNS match exactly), an entry expires when the answer's TTLs
//! would next count down or local data may next change with the clock,
//! and every change to local data or the cache (a generation count the
//! engine bumps) retires all entries at once.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::engine::HEADER_LEN;

/// Entries kept at most; the table is emptied when full rather than
/// tracking recency, since a busy server refills it within a second.
const MAX_ENTRIES: usize = 8192;
/// Longer queries are not kept: real queries are far shorter, and the
/// key copies the query.
const MAX_QUERY: usize = 512;

/// Which counter the engine bumps when an entry is replayed, as the full
/// path would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Cache,
}

/// One kept reply. The key (the query without its id) and the reply share
/// one allocation, and the hash is kept: a lookup on this path touches as
/// few cache lines as it can, since between two queries the kernel's
/// network stack has evicted most of ours.
struct Entry {
    hash: u64,
    key_len: usize,
    /// The key, then the reply.
    bytes: Box<[u8]>,
    source: Source,
    until_ms: u64,
    generation: u64,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    fn reply(&self) -> &[u8] {
        &self.bytes[self.key_len..]
    }
}

/// Kept replies by query (without its id), one table per service: the
/// normal one and the authoritative one answer differently.
pub struct Replay {
    entries: [HashTable<Entry>; 2],
    /// Seeded per process: the keys are the senders' bytes, and a fixed
    /// hash would let them aim collisions at one bucket.
    hasher: RandomState,
    generation: u64,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            entries: [HashTable::new(), HashTable::new()],
            hasher: RandomState::default(),
            generation: 0,
        }
    }
}

impl Replay {
    /// Local data or the cache changed: no kept reply may be used again.
    pub fn retire_all(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// The kept reply to `query` (asked at the authoritative service when
    /// `auth`), with the query's id, if one still stands at `now_ms`.
    pub fn get(&self, query: &[u8], auth: bool, now_ms: u64) -> Option<(Vec<u8>, Source)> {
        if query.len() < HEADER_LEN || query.len() > MAX_QUERY {
            return None;
        }
        let key = &query[2..];
        let hash = self.hasher.hash_one(key);
        let e = self.entries[usize::from(auth)].find(hash, |e| e.hash == hash && e.key() == key)?;
        if e.generation != self.generation || now_ms >= e.until_ms {
            return None;
        }
        let mut reply = Vec::with_capacity(e.reply().len());
        reply.extend_from_slice(&query[..2]);
        reply.extend_from_slice(&e.reply()[2..]);
        Some((reply, e.source))
    }

    /// Keeps `reply`, the engine's answer to `query`, until `until_ms`.
    pub fn put(&mut self, query: &[u8], auth: bool, reply: &[u8], source: Source, until_ms: u64) {
        if query.len() < HEADER_LEN || query.len() > MAX_QUERY || reply.len() < 2 {
            return;
        }
        let key = &query[2..];
        let hash = self.hasher.hash_one(key);
        let table = &mut self.entries[usize::from(auth)];
        if table.len() >= MAX_ENTRIES {
            table.clear();
        }
        let entry = Entry {
            hash,
            key_len: key.len(),
            bytes: [key, reply].concat().into_boxed_slice(),
            source,
            until_ms,
            generation: self.generation,
        };
        match table.find_mut(hash, |e| e.hash == hash && e.key() == key) {
            Some(old) => *old = entry,
            None => {
                table.insert_unique(hash, entry, |e| e.hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 12-byte header with `id`, then `rest` as the question.
    fn query(id: u16, rest: &[u8]) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(rest);
        q
    }

    #[test]
    fn a_kept_reply_comes_back_with_the_new_query_id() {
        let mut r = Replay::default();
        let q = query(7, b"\x01a\x00\x00\x01\x00\x01");
        let mut reply = q.clone();
        reply[2] |= 0x80;
        reply.extend_from_slice(b"answer");
        r.put(&q, false, &reply, Source::Local, 1_000);
        let (got, source) = r
            .get(&query(0xbeef, b"\x01a\x00\x00\x01\x00\x01"), false, 999)
            .unwrap();
        assert_eq!(&got[..2], &[0xbe, 0xef]);
        assert_eq!(&got[2..], &reply[2..]);
        assert_eq!(source, Source::Local);
    }

    #[test]
    fn only_the_same_query_at_the_same_service_before_expiry_replays() {
        let mut r = Replay::default();
        let q = query(1, b"\x01a\x00\x00\x01\x00\x01");
        r.put(&q, false, &q, Source::Cache, 1_000);
        // Another letter case is another key: the reply echoes the case.
        assert!(r
            .get(&query(1, b"\x01A\x00\x00\x01\x00\x01"), false, 0)
            .is_none());
        assert!(
            r.get(&q, true, 0).is_none(),
            "the authoritative service is apart"
        );
        assert!(r.get(&q, false, 1_000).is_none(), "expired");
        assert!(r.get(&q, false, 999).is_some());
        r.retire_all();
        assert!(r.get(&q, false, 0).is_none(), "retired by a change");
        // A newer put for the same key replaces the retired entry.
        r.put(&q, false, &query(1, b"new"), Source::Cache, 2_000);
        let (got, _) = r.get(&q, false, 1_500).unwrap();
        assert_eq!(&got[HEADER_LEN..], b"new");
    }

    #[test]
    fn the_table_is_bounded_and_keeps_working_when_full() {
        let mut r = Replay::default();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let q = query(0, &i.to_be_bytes());
            r.put(&q, false, &q, Source::Local, u64::MAX);
        }
        assert!(r.entries[0].len() <= MAX_ENTRIES);
        let last = query(0, &(MAX_ENTRIES as u32 + 9).to_be_bytes());
        assert!(r.get(&last, false, 0).is_some());
        // Too short or too long is never kept.
        r.put(&[0; 4], false, &[0; 4], Source::Local, u64::MAX);
        assert!(r.get(&[0; 4], false, 0).is_none());
        let long = query(0, &[0; MAX_QUERY]);
        r.put(&long, false, &long, Source::Local, u64::MAX);
        assert!(r.get(&long, false, 0).is_none());
    }
}
