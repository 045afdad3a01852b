//! The lease database: the single source of truth for who holds which
//! address. sled 0.34 on disk (one tree keyed by IP), with in-memory indexes
//! by client key, hostname and expiry rebuilt at open.
//!
//! Every change goes through [`LeaseDb::commit`], which stamps it with the
//! hybrid logical clock, writes it (without fsync), updates the indexes and
//! publishes it on the change feed. Durability is the caller's to batch:
//! [`Durability::flush`] makes everything committed before the call durable,
//! so the DHCP shell sends a batch of ACKs after one flush (group commit).

pub mod lease_file;

use std::net::Ipv4Addr;
use std::path::Path;

use twinmasq_proto::{ClientKey, LeaseRecord};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease database at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("lease database: {0}")]
    Storage(#[from] sled::Error),
    #[error("lease database record for {key}: {source}")]
    Corrupt { key: String, source: twinmasq_proto::CodecError },
    #[error("lease codec: {0}")]
    Codec(#[from] twinmasq_proto::CodecError),
    #[error("lease file {path}: {message}")]
    LeaseFile { path: String, message: String },
}

pub struct DbOptions {
    /// sled's page cache; its default (1 GB) is far too much for a router.
    pub cache_bytes: u64,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { cache_bytes: 8 << 20 }
    }
}

pub struct LeaseDb {/* sled handles, in-memory tables, HLC, feed sender */}

/// A cheap, `Send + Clone` handle that makes committed changes durable.
#[derive(Clone)]
pub struct Durability {/* sled::Db clone */}

impl Durability {
    /// Blocks until every change committed before this call is on stable
    /// storage (fsync). Meant for a flusher thread or `spawn_blocking`.
    pub fn flush(&self) -> Result<(), LeaseError> {
        todo!()
    }
}

impl LeaseDb {
    /// Opens or creates the database in `dir`. A new database gets a random
    /// node id, kept in the database. A record that does not decode is an
    /// error naming its key (never silently skipped).
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Self, LeaseError> {
        todo!()
    }

    pub fn node_id(&self) -> u32 {
        todo!()
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&LeaseRecord> {
        todo!()
    }

    /// The newest record (any state) that names this client.
    pub fn by_client(&self, key: &ClientKey) -> Option<&LeaseRecord> {
        todo!()
    }

    /// The bound lease carrying this hostname (case-insensitive).
    pub fn by_hostname(&self, name: &str) -> Option<&LeaseRecord> {
        todo!()
    }

    /// The one way to change a lease. Stamps `rec` (its `stamp` field is
    /// overwritten) with an HLC stamp not below `now_ms` and above every stamp
    /// this node has issued or seen, persists it without fsync, updates the
    /// indexes, publishes it on the feed and returns the stored record.
    pub fn commit(&mut self, rec: LeaseRecord, now_ms: u64) -> Result<LeaseRecord, LeaseError> {
        todo!()
    }

    /// Moves every bound lease whose expiry is at or before `now_secs` to
    /// `Expired` (through `commit`) and returns the new records; declined
    /// holds that ended likewise. Uses an expiry index, not a scan.
    pub fn expire_due(&mut self, now_secs: u64, now_ms: u64) -> Result<Vec<LeaseRecord>, LeaseError> {
        todo!()
    }

    /// Earliest expiry (unix seconds) among bound and declined records.
    pub fn next_expiry(&self) -> Option<u64> {
        todo!()
    }

    /// Number of records in state `Bound` (expired-but-not-yet-swept count).
    pub fn bound_count(&self) -> usize {
        todo!()
    }

    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &LeaseRecord> + '_ {
        std::iter::empty()
    }

    pub fn durability(&self) -> Durability {
        todo!()
    }

    /// Every committed record, in commit order, for the DNS engine, the
    /// failover link and the lease-file exporter.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LeaseRecord> {
        todo!()
    }
}
