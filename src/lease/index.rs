//! In-memory secondary indexes over the lease table.
//!
//! Each index is a `BTreeSet<u64>` of packed `(key, address)` pairs: the
//! high half is a 32-bit key (a keyed hash of the client key or lowercased
//! hostname, or the expiry time), the low half the address. At 100k leases
//! that is about 15 bytes an entry, against 50-60 for a map from owned keys,
//! and it keeps one copy of each client key and hostname in memory (inside
//! the record). Hash lookups return candidates that the caller confirms
//! against the record, so a collision costs a comparison, never a wrong
//! answer. Every address a client's records name is kept, so when its newest
//! one moves to another client the next newest is found without a scan.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState};

fn pack(key: u32, ip: Ipv4Addr) -> u64 {
    (u64::from(key) << 32) | u64::from(u32::from(ip))
}

fn unpack_ip(entry: u64) -> Ipv4Addr {
    // The low half is the address by construction.
    Ipv4Addr::from(entry as u32)
}

fn entries_for(set: &BTreeSet<u64>, key: u32) -> impl Iterator<Item = Ipv4Addr> + '_ {
    set.range(pack(key, Ipv4Addr::UNSPECIFIED)..=pack(key, Ipv4Addr::BROADCAST))
        .map(|e| unpack_ip(*e))
}

/// Expiry times past 2106 share the last slot; callers check the record's
/// real expiry, so they are only ever reported later, never earlier.
fn expiry_slot(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// The expiry a record is indexed under, if any: bound leases until they
/// run out, declined addresses until their hold ends.
pub(crate) fn expiry_of(rec: &LeaseRecord) -> Option<u64> {
    match (rec.state, rec.expires) {
        (LeaseState::Bound | LeaseState::Declined, Expiry::At(t)) => Some(t),
        _ => None,
    }
}

fn indexed_hostname(rec: &LeaseRecord) -> Option<&str> {
    match (&rec.state, &rec.hostname) {
        (LeaseState::Bound, Some(h)) if !h.is_empty() => Some(h),
        _ => None,
    }
}

pub(crate) struct Indexes {
    /// Per-database random keys, so clients cannot pick keys that collide.
    hasher: RandomState,
    clients: BTreeSet<u64>,
    hosts: BTreeSet<u64>,
    expiry: BTreeSet<u64>,
    pub(crate) bound: usize,
}

impl Indexes {
    pub(crate) fn new() -> Self {
        Indexes {
            hasher: RandomState::new(),
            clients: BTreeSet::new(),
            hosts: BTreeSet::new(),
            expiry: BTreeSet::new(),
            bound: 0,
        }
    }

    fn fold(h: u64) -> u32 {
        (h ^ (h >> 32)) as u32
    }

    fn client_hash(&self, key: &ClientKey) -> u32 {
        let mut h = self.hasher.build_hasher();
        h.write(&key.0);
        Self::fold(h.finish())
    }

    /// Hashes the ASCII-lowercased name without allocating: DNS names
    /// compare case-insensitively in ASCII only.
    fn host_hash(&self, name: &str) -> u32 {
        let mut h = self.hasher.build_hasher();
        let mut buf = [0u8; 32];
        for chunk in name.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            h.write(lower);
        }
        h.write_usize(name.len());
        Self::fold(h.finish())
    }

    pub(crate) fn add(&mut self, rec: &LeaseRecord) {
        self.clients
            .insert(pack(self.client_hash(&rec.client), rec.ip));
        if let Some(name) = indexed_hostname(rec) {
            self.hosts.insert(pack(self.host_hash(name), rec.ip));
        }
        if let Some(t) = expiry_of(rec) {
            self.expiry.insert(pack(expiry_slot(t), rec.ip));
        }
        if rec.state == LeaseState::Bound {
            self.bound += 1;
        }
    }

    pub(crate) fn remove(&mut self, rec: &LeaseRecord) {
        self.clients
            .remove(&pack(self.client_hash(&rec.client), rec.ip));
        if let Some(name) = indexed_hostname(rec) {
            self.hosts.remove(&pack(self.host_hash(name), rec.ip));
        }
        if let Some(t) = expiry_of(rec) {
            self.expiry.remove(&pack(expiry_slot(t), rec.ip));
        }
        if rec.state == LeaseState::Bound {
            self.bound = self.bound.saturating_sub(1);
        }
    }

    /// Addresses whose records may name `key` (confirm against the record).
    pub(crate) fn client_candidates(&self, key: &ClientKey) -> impl Iterator<Item = Ipv4Addr> + '_ {
        entries_for(&self.clients, self.client_hash(key))
    }

    /// Addresses whose bound records may carry `name` (confirm likewise).
    pub(crate) fn host_candidates(&self, name: &str) -> impl Iterator<Item = Ipv4Addr> + '_ {
        entries_for(&self.hosts, self.host_hash(name))
    }

    /// Addresses indexed with an expiry at or before `now_secs`, earliest
    /// first, plus any in the shared far-future slot when `now_secs` reaches
    /// it (confirm against the record).
    pub(crate) fn due(&self, now_secs: u64) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.expiry
            .range(..=pack(expiry_slot(now_secs), Ipv4Addr::BROADCAST))
            .map(|e| unpack_ip(*e))
    }

    /// The address with the earliest indexed expiry.
    pub(crate) fn first_expiring(&self) -> Option<Ipv4Addr> {
        self.expiry.first().map(|e| unpack_ip(*e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinmasq_proto::Stamp;

    #[test]
    fn host_hash_ignores_ascii_case_across_chunks() {
        let idx = Indexes::new();
        let long = "A".repeat(70) + "-Laptop";
        assert_eq!(idx.host_hash(&long), idx.host_hash(&long.to_lowercase()));
        assert_ne!(idx.host_hash("laptop"), idx.host_hash("laptop2"));
    }

    fn rec(ip: u8, expires: Expiry) -> LeaseRecord {
        LeaseRecord {
            ip: Ipv4Addr::new(198, 18, 0, ip),
            state: LeaseState::Bound,
            client: ClientKey::from_hwaddr(1, &[ip]),
            htype: 1,
            hwaddr: vec![ip],
            client_id: None,
            hostname: None,
            expires,
            stamp: Stamp::default(),
        }
    }

    #[test]
    fn expiry_order_and_far_future_slot() {
        let mut idx = Indexes::new();
        let far = rec(1, Expiry::At(u64::from(u32::MAX) + 10));
        idx.add(&far);
        idx.add(&rec(2, Expiry::At(500)));
        idx.add(&rec(3, Expiry::At(100)));
        idx.add(&rec(4, Expiry::Never));
        assert_eq!(idx.first_expiring(), Some(Ipv4Addr::new(198, 18, 0, 3)));
        assert_eq!(idx.due(499).count(), 1);
        assert_eq!(idx.due(500).count(), 2);
        assert_eq!(idx.due(u64::from(u32::MAX)).count(), 3, "a candidate only");
        idx.remove(&far);
        assert_eq!(idx.due(u64::MAX).count(), 2);
        assert_eq!(idx.bound, 3);
    }
}
