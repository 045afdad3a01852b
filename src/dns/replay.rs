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
use super::zone::Net;

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

/// Where a query was asked, as far as it changes the answer: at the
/// authoritative service or the normal one, and (with `localise-queries`)
/// the subnet it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    pub auth: bool,
    pub arrival: Option<Net>,
}

/// One kept reply. The key (the query without its id) and the reply share
/// one allocation, and the hash is kept: a lookup on this path touches as
/// few cache lines as it can, since between two queries the kernel's
/// network stack has evicted most of ours.
struct Entry {
    hash: u64,
    scope: Scope,
    key_len: usize,
    /// The key, then the reply.
    bytes: Box<[u8]>,
    source: Source,
    until_ms: u64,
    generation: u64,
}

impl Entry {
    fn matches(&self, hash: u64, scope: Scope, key: &[u8]) -> bool {
        self.hash == hash && self.scope == scope && self.key() == key
    }

    fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    fn reply(&self) -> &[u8] {
        &self.bytes[self.key_len..]
    }
}

/// Kept replies by scope and query (without its id).
pub struct Replay {
    entries: HashTable<Entry>,
    /// Seeded per process: the keys are the senders' bytes, and a fixed
    /// hash would let them aim collisions at one bucket.
    hasher: RandomState,
    generation: u64,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            entries: HashTable::new(),
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

    /// The kept reply to `query` asked in `scope`, with the query's id, if
    /// one still stands at `now_ms`.
    pub fn get(&self, query: &[u8], scope: Scope, now_ms: u64) -> Option<(Vec<u8>, Source)> {
        if query.len() < HEADER_LEN || query.len() > MAX_QUERY {
            return None;
        }
        let key = &query[2..];
        let hash = self.hasher.hash_one((scope, key));
        let e = self.entries.find(hash, |e| e.matches(hash, scope, key))?;
        if e.generation != self.generation || now_ms >= e.until_ms {
            return None;
        }
        let mut reply = Vec::with_capacity(e.reply().len());
        reply.extend_from_slice(&query[..2]);
        reply.extend_from_slice(&e.reply()[2..]);
        Some((reply, e.source))
    }

    /// Keeps `reply`, the engine's answer to `query` asked in `scope`,
    /// until `until_ms`.
    pub fn put(&mut self, query: &[u8], scope: Scope, reply: &[u8], source: Source, until_ms: u64) {
        if query.len() < HEADER_LEN || query.len() > MAX_QUERY || reply.len() < 2 {
            return;
        }
        let key = &query[2..];
        let hash = self.hasher.hash_one((scope, key));
        let table = &mut self.entries;
        if table.len() >= MAX_ENTRIES {
            table.clear();
        }
        let entry = Entry {
            hash,
            scope,
            key_len: key.len(),
            bytes: [key, reply].concat().into_boxed_slice(),
            source,
            until_ms,
            generation: self.generation,
        };
        match table.find_mut(hash, |e| e.matches(hash, scope, key)) {
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

    const NORMAL: Scope = Scope {
        auth: false,
        arrival: None,
    };
    const AUTH: Scope = Scope {
        auth: true,
        arrival: None,
    };

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
        r.put(&q, NORMAL, &reply, Source::Local, 1_000);
        let (got, source) = r
            .get(&query(0xbeef, b"\x01a\x00\x00\x01\x00\x01"), NORMAL, 999)
            .unwrap();
        assert_eq!(&got[..2], &[0xbe, 0xef]);
        assert_eq!(&got[2..], &reply[2..]);
        assert_eq!(source, Source::Local);
    }

    #[test]
    fn only_the_same_query_at_the_same_service_before_expiry_replays() {
        let mut r = Replay::default();
        let q = query(1, b"\x01a\x00\x00\x01\x00\x01");
        r.put(&q, NORMAL, &q, Source::Cache, 1_000);
        // Another letter case is another key: the reply echoes the case.
        assert!(r
            .get(&query(1, b"\x01A\x00\x00\x01\x00\x01"), NORMAL, 0)
            .is_none());
        assert!(
            r.get(&q, AUTH, 0).is_none(),
            "the authoritative service is apart"
        );
        let lan = Scope {
            auth: false,
            arrival: Some(Net {
                addr: "198.18.1.1".parse().unwrap(),
                prefix: 24,
            }),
        };
        assert!(r.get(&q, lan, 0).is_none(), "another subnet asked");
        assert!(r.get(&q, NORMAL, 1_000).is_none(), "expired");
        assert!(r.get(&q, NORMAL, 999).is_some());
        r.retire_all();
        assert!(r.get(&q, NORMAL, 0).is_none(), "retired by a change");
        // A newer put for the same key replaces the retired entry.
        r.put(&q, NORMAL, &query(1, b"new"), Source::Cache, 2_000);
        let (got, _) = r.get(&q, NORMAL, 1_500).unwrap();
        assert_eq!(&got[HEADER_LEN..], b"new");
    }

    #[test]
    fn the_table_is_bounded_and_keeps_working_when_full() {
        let mut r = Replay::default();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let q = query(0, &i.to_be_bytes());
            r.put(&q, NORMAL, &q, Source::Local, u64::MAX);
        }
        assert!(r.entries.len() <= MAX_ENTRIES);
        let last = query(0, &(MAX_ENTRIES as u32 + 9).to_be_bytes());
        assert!(r.get(&last, NORMAL, 0).is_some());
        // Too short or too long is never kept.
        r.put(&[0; 4], NORMAL, &[0; 4], Source::Local, u64::MAX);
        assert!(r.get(&[0; 4], NORMAL, 0).is_none());
        let long = query(0, &[0; MAX_QUERY]);
        r.put(&long, NORMAL, &long, Source::Local, u64::MAX);
        assert!(r.get(&long, NORMAL, 0).is_none());
    }
}
