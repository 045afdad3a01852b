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

use std::collections::HashMap;

use super::engine::HEADER_LEN;

/// Entries kept at most; the map is emptied when full rather than
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

struct Entry {
    reply: Vec<u8>,
    source: Source,
    until_ms: u64,
    generation: u64,
}

/// Kept replies by query (without its id), one map per service: the
/// normal one and the authoritative one answer differently.
#[derive(Default)]
pub struct Replay {
    entries: [HashMap<Vec<u8>, Entry>; 2],
    generation: u64,
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
        let e = self.entries[usize::from(auth)].get(&query[2..])?;
        if e.generation != self.generation || now_ms >= e.until_ms {
            return None;
        }
        let mut reply = e.reply.clone();
        reply[..2].copy_from_slice(&query[..2]);
        Some((reply, e.source))
    }

    /// Keeps `reply`, the engine's answer to `query`, until `until_ms`.
    pub fn put(&mut self, query: &[u8], auth: bool, reply: &[u8], source: Source, until_ms: u64) {
        if query.len() < HEADER_LEN || query.len() > MAX_QUERY || reply.len() < 2 {
            return;
        }
        let map = &mut self.entries[usize::from(auth)];
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            query[2..].to_vec(),
            Entry {
                reply: reply.to_vec(),
                source,
                until_ms,
                generation: self.generation,
            },
        );
    }
}
