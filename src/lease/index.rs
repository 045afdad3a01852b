//! In-memory secondary indexes over the lease table.
//!
//! The client and hostname indexes are keyed by a keyed hash of the key, not
//! the key itself, and map to the (usually single) addresses whose records
//! carry it; lookups confirm against the record. That keeps one copy of each
//! client key and hostname in memory (inside the record) instead of two,
//! which matters at 100k leases on a small router. Every address a client's
//! records name is kept, so when the newest one moves to another client the
//! next newest is found without a scan.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState};

/// The keys are already SipHash outputs; hashing them again buys nothing.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashedMap = HashMap<u64, Ips, BuildHasherDefault<PassThrough>>;

/// One address in the common case, without a heap allocation.
#[derive(Debug)]
enum Ips {
    One(Ipv4Addr),
    Many(Vec<Ipv4Addr>),
}

impl Ips {
    fn as_slice(&self) -> &[Ipv4Addr] {
        match self {
            Ips::One(ip) => std::slice::from_ref(ip),
            Ips::Many(v) => v,
        }
    }
}

fn add_ip(map: &mut HashedMap, h: u64, ip: Ipv4Addr) {
    match map.entry(h) {
        Entry::Vacant(v) => {
            v.insert(Ips::One(ip));
        }
        Entry::Occupied(mut o) => {
            let ips = o.get_mut();
            match ips {
                Ips::One(existing) if *existing == ip => {}
                Ips::One(existing) => *ips = Ips::Many(vec![*existing, ip]),
                Ips::Many(v) => {
                    if !v.contains(&ip) {
                        v.push(ip);
                    }
                }
            }
        }
    }
}

fn remove_ip(map: &mut HashedMap, h: u64, ip: Ipv4Addr) {
    let Entry::Occupied(mut o) = map.entry(h) else {
        return;
    };
    let ips = o.get_mut();
    match ips {
        Ips::One(existing) => {
            if *existing == ip {
                o.remove();
            }
        }
        Ips::Many(v) => {
            v.retain(|x| *x != ip);
            match v.len() {
                0 => {
                    o.remove();
                }
                1 => *ips = Ips::One(v[0]),
                _ => {}
            }
        }
    }
}

/// The expiry-index entry a record needs, if any: bound leases until they
/// run out, declined addresses until their hold ends.
pub(crate) fn expiry_entry(rec: &LeaseRecord) -> Option<(u64, Ipv4Addr)> {
    match (rec.state, rec.expires) {
        (LeaseState::Bound | LeaseState::Declined, Expiry::At(t)) => Some((t, rec.ip)),
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
    clients: HashedMap,
    hosts: HashedMap,
    pub(crate) expiry: BTreeSet<(u64, Ipv4Addr)>,
    pub(crate) bound: usize,
}

impl Indexes {
    pub(crate) fn new() -> Self {
        Indexes {
            hasher: RandomState::new(),
            clients: HashedMap::default(),
            hosts: HashedMap::default(),
            expiry: BTreeSet::new(),
            bound: 0,
        }
    }

    fn client_hash(&self, key: &ClientKey) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(&key.0);
        h.finish()
    }

    /// Hashes the ASCII-lowercased name without allocating: DNS names
    /// compare case-insensitively in ASCII only.
    fn host_hash(&self, name: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        let mut buf = [0u8; 32];
        for chunk in name.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            h.write(lower);
        }
        h.write_usize(name.len());
        h.finish()
    }

    pub(crate) fn add(&mut self, rec: &LeaseRecord) {
        let h = self.client_hash(&rec.client);
        add_ip(&mut self.clients, h, rec.ip);
        if let Some(name) = indexed_hostname(rec) {
            let h = self.host_hash(name);
            add_ip(&mut self.hosts, h, rec.ip);
        }
        if let Some(e) = expiry_entry(rec) {
            self.expiry.insert(e);
        }
        if rec.state == LeaseState::Bound {
            self.bound += 1;
        }
    }

    pub(crate) fn remove(&mut self, rec: &LeaseRecord) {
        let h = self.client_hash(&rec.client);
        remove_ip(&mut self.clients, h, rec.ip);
        if let Some(name) = indexed_hostname(rec) {
            let h = self.host_hash(name);
            remove_ip(&mut self.hosts, h, rec.ip);
        }
        if let Some(e) = expiry_entry(rec) {
            self.expiry.remove(&e);
        }
        if rec.state == LeaseState::Bound {
            self.bound = self.bound.saturating_sub(1);
        }
    }

    /// Addresses whose records may name `key` (a hash match; confirm
    /// against the record).
    pub(crate) fn client_candidates(&self, key: &ClientKey) -> &[Ipv4Addr] {
        self.clients
            .get(&self.client_hash(key))
            .map_or(&[], Ips::as_slice)
    }

    /// Addresses whose bound records may carry `name` (confirm likewise).
    pub(crate) fn host_candidates(&self, name: &str) -> &[Ipv4Addr] {
        self.hosts
            .get(&self.host_hash(name))
            .map_or(&[], Ips::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_hash_ignores_ascii_case_across_chunks() {
        let idx = Indexes::new();
        let long = "A".repeat(70) + "-Laptop";
        assert_eq!(idx.host_hash(&long), idx.host_hash(&long.to_lowercase()));
        assert_ne!(idx.host_hash("laptop"), idx.host_hash("laptop2"));
    }

    #[test]
    fn ip_sets_grow_and_shrink() {
        let mut m = HashedMap::default();
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        add_ip(&mut m, 1, a);
        add_ip(&mut m, 1, a);
        add_ip(&mut m, 1, b);
        assert_eq!(m[&1].as_slice(), &[a, b]);
        remove_ip(&mut m, 1, a);
        assert!(matches!(m[&1], Ips::One(x) if x == b));
        remove_ip(&mut m, 1, b);
        assert!(m.is_empty());
    }
}
