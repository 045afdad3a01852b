//! The lease database: the single source of truth for who holds which
//! address. sled 0.34 on disk (one tree keyed by IP), with in-memory indexes
//! by client key, hostname and expiry rebuilt at open.
//!
//! Every change goes through [`LeaseDb::commit`], which stamps it with the
//! hybrid logical clock, writes it (without fsync), updates the indexes and
//! publishes it on the change feed. Durability is the caller's to batch:
//! [`Durability::flush`] makes everything committed before the call durable,
//! so the DHCP shell sends a batch of ACKs after one flush (group commit).

mod hlc;
mod index;
pub mod lease_file;
pub mod merge;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use tokio::sync::broadcast;
use twinmasq_proto::{decode, encode, ClientKey, CodecError, LeaseRecord, LeaseState, Stamp};

use hlc::Hlc;
use index::Indexes;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease database at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("lease database: {0}")]
    Storage(#[from] sled::Error),
    #[error("lease database record for {key}: {source}")]
    Corrupt {
        key: String,
        source: twinmasq_proto::CodecError,
    },
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
        DbOptions {
            cache_bytes: 4 << 20,
        }
    }
}

const LEASES_TREE: &str = "leases";
const META_TREE: &str = "meta";
const NODE_ID_KEY: &[u8] = b"node_id";
const HLC_KEY: &[u8] = b"hlc";

/// Room for a burst of changes (a failover sync, a mass expiry) before a
/// slow subscriber starts lagging; lagging is the subscriber's to handle.
const FEED_CAPACITY: usize = 4096;

pub struct LeaseDb {
    db: sled::Db,
    leases: sled::Tree,
    meta: sled::Tree,
    node_id: u32,
    clock: Hlc,
    /// Each record as its encoded bytes, the same bytes sled holds: one
    /// small allocation per lease instead of a struct and its buffers, which
    /// is what keeps 100k leases inside a router's memory. Lookups decode.
    records: HashMap<Ipv4Addr, Box<[u8]>>,
    idx: Indexes,
    feed: broadcast::Sender<LeaseRecord>,
    /// Changes stored since open: lets a reader that only needs "did
    /// anything change" (the lease-file export) ask without a subscription.
    generation: u64,
    /// This node's own changes not yet taken by the failover link; `None`
    /// when no link wants them. Unlike the feed it cannot lag: the link
    /// drains it in the same task after every batch of requests.
    outbox: Option<Vec<LeaseRecord>>,
}

/// A cheap, `Send + Clone` handle that makes committed changes durable.
#[derive(Clone)]
pub struct Durability {
    db: sled::Db,
}

impl Durability {
    /// Blocks until every change committed before this call is on stable
    /// storage (fsync). Meant for a flusher thread or `spawn_blocking`.
    pub fn flush(&self) -> Result<(), LeaseError> {
        self.db.flush()?;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn corrupt(key: impl Into<String>, message: impl Into<String>) -> LeaseError {
    LeaseError::Corrupt {
        key: key.into(),
        source: CodecError::Decode(message.into()),
    }
}

fn key_ip(key: &[u8]) -> Result<Ipv4Addr, LeaseError> {
    let octets: [u8; 4] = key.try_into().map_err(|_| {
        corrupt(
            format!("key {}", hex(key)),
            format!("key is {} bytes, not a 4-byte IPv4 address", key.len()),
        )
    })?;
    Ok(Ipv4Addr::from(octets))
}

fn new_node_id() -> u32 {
    loop {
        let id: u32 = rand::random();
        // 0 is reserved so a default (unset) stamp never looks like ours.
        if id != 0 {
            return id;
        }
    }
}

impl LeaseDb {
    /// Opens or creates the database in `dir`. A new database gets a random
    /// node id, kept in the database. A record that does not decode is an
    /// error naming its key (never silently skipped).
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Self, LeaseError> {
        let open_err = |source| LeaseError::Open {
            path: dir.display().to_string(),
            source,
        };
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_bytes)
            .open()
            .map_err(open_err)?;
        let leases = db.open_tree(LEASES_TREE).map_err(open_err)?;
        let meta = db.open_tree(META_TREE).map_err(open_err)?;

        let node_id = match meta.get(NODE_ID_KEY).map_err(open_err)? {
            Some(v) => {
                let raw: [u8; 4] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt("meta node_id", format!("{} bytes, not 4", v.len())))?;
                match u32::from_be_bytes(raw) {
                    0 => return Err(corrupt("meta node_id", "node id is 0")),
                    id => id,
                }
            }
            None => {
                let id = new_node_id();
                meta.insert(NODE_ID_KEY, &id.to_be_bytes())
                    .map_err(open_err)?;
                // The id is stamped into every record from now on: it must
                // not change under a crash, so make it durable right away.
                db.flush().map_err(open_err)?;
                id
            }
        };

        let mut last = match meta.get(HLC_KEY).map_err(open_err)? {
            Some(v) => decode::<Stamp>(&v).map_err(|source| LeaseError::Corrupt {
                key: "meta hlc".into(),
                source,
            })?,
            None => Stamp::default(),
        };

        let mut records = HashMap::new();
        let mut idx = Indexes::new();
        for item in leases.iter() {
            let (k, v) = item.map_err(open_err)?;
            let ip = key_ip(&k)?;
            let rec: LeaseRecord = decode(&v).map_err(|source| LeaseError::Corrupt {
                key: ip.to_string(),
                source,
            })?;
            if rec.ip != ip {
                return Err(corrupt(
                    ip.to_string(),
                    format!("record is for {}, stored under {ip}", rec.ip),
                ));
            }
            // Every stamp this node issued is inside the record it stamped,
            // written in the same single insert, so the clock's floor is
            // recovered from the records themselves: there is no second write
            // a crash could separate from the first.
            last = last.max(rec.stamp);
            idx.add(&rec);
            records.insert(ip, Box::from(&*v));
        }

        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Ok(LeaseDb {
            db,
            leases,
            meta,
            node_id,
            clock: Hlc::new(node_id, last),
            records,
            idx,
            feed,
            generation: 0,
            outbox: None,
        })
    }

    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    /// The greatest stamp this node has issued or observed.
    pub fn last_stamp(&self) -> Stamp {
        self.clock.last()
    }

    /// Bytes in `records` were encoded by this process or checked at open,
    /// so they always decode; should that ever fail, the lease reads as
    /// absent and the failure is logged rather than panicking.
    fn decode_stored(ip: Ipv4Addr, bytes: &[u8]) -> Option<LeaseRecord> {
        decode(bytes)
            .map_err(|e| tracing::error!("lease record for {ip} no longer decodes: {e}"))
            .ok()
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<LeaseRecord> {
        self.records
            .get(&ip)
            .and_then(|b| Self::decode_stored(ip, b))
    }

    /// The newest record (any state) that names this client.
    pub fn by_client(&self, key: &ClientKey) -> Option<LeaseRecord> {
        self.idx
            .client_candidates(key)
            .filter_map(|ip| self.get(ip))
            .filter(|r| r.client == *key)
            .max_by_key(|r| r.stamp)
    }

    /// The bound lease carrying this hostname (case-insensitive). Should two
    /// bound leases carry it, the newer one.
    pub fn by_hostname(&self, name: &str) -> Option<LeaseRecord> {
        self.idx
            .host_candidates(name)
            .filter_map(|ip| self.get(ip))
            .filter(|r| {
                r.state == LeaseState::Bound
                    && r.hostname
                        .as_deref()
                        .is_some_and(|h| h.eq_ignore_ascii_case(name))
            })
            .max_by_key(|r| r.stamp)
    }

    /// The one way to change a lease. Stamps `rec` (its `stamp` field is
    /// overwritten) with an HLC stamp not below `now_ms` and above every stamp
    /// this node has issued or seen, persists it without fsync, updates the
    /// indexes, publishes it on the feed and returns the stored record.
    pub fn commit(&mut self, mut rec: LeaseRecord, now_ms: u64) -> Result<LeaseRecord, LeaseError> {
        rec.stamp = self.clock.next(now_ms);
        let stored = self.store(rec)?;
        if let Some(out) = &mut self.outbox {
            out.push(stored.clone());
        }
        Ok(stored)
    }

    /// Starts keeping this node's own changes for [`LeaseDb::take_outbox`].
    pub fn enable_outbox(&mut self) {
        self.outbox.get_or_insert_with(Vec::new);
    }

    /// This node's changes since the last call, in commit order.
    pub fn take_outbox(&mut self) -> Vec<LeaseRecord> {
        self.outbox.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Every record naming `client`, any state.
    pub fn all_of_client(&self, key: &ClientKey) -> Vec<LeaseRecord> {
        self.idx
            .client_candidates(key)
            .filter_map(|ip| self.get(ip))
            .filter(|r| r.client == *key)
            .collect()
    }

    /// Moves the clock past a partner's stamp, so this node's next change
    /// wins over everything it has seen. Kept in memory and written to the
    /// meta tree (without fsync) as a floor; a remote stamp that must survive
    /// a restart arrives inside a record, and `merge_in` stores that.
    pub fn observe(&mut self, stamp: Stamp) {
        if self.clock.observe(stamp) {
            self.write_floor(stamp);
        }
    }

    fn write_floor(&mut self, stamp: Stamp) {
        // The floor is an extra safety margin, not what correctness rests
        // on (see `open`), so failing to write it is worth a warning only.
        let written = encode(&stamp)
            .map_err(LeaseError::from)
            .and_then(|b| self.meta.insert(HLC_KEY, b).map_err(LeaseError::from));
        if let Err(e) = written {
            tracing::warn!("cannot record the clock floor: {e}");
        }
    }

    /// Stores a partner's record as it is, stamp included, if its stamp is
    /// above the stored record's for that address (or there is none); then
    /// indexes and publishes it like a commit and returns it. Returns `None`
    /// when the stored record is as new or newer, so merging the same record
    /// twice, or in any order, ends in the same table.
    pub fn merge_in(&mut self, rec: LeaseRecord) -> Result<Option<LeaseRecord>, LeaseError> {
        if !merge::replaces(&rec, self.get(rec.ip).as_ref()) {
            return Ok(None);
        }
        self.clock.observe(rec.stamp);
        self.store(rec).map(Some)
    }

    /// `merge_in` for many records, written as one sled batch (a sync page
    /// costs one write instead of thousands). Returns the records that
    /// replaced what was stored; a record listed twice merges as the newer.
    pub fn merge_batch(&mut self, recs: Vec<LeaseRecord>) -> Result<Vec<LeaseRecord>, LeaseError> {
        let mut winners: HashMap<Ipv4Addr, LeaseRecord> = HashMap::new();
        for rec in recs {
            let current = winners.get(&rec.ip).cloned().or_else(|| self.get(rec.ip));
            if merge::replaces(&rec, current.as_ref()) {
                winners.insert(rec.ip, rec);
            }
        }
        let mut batch = sled::Batch::default();
        let mut stored = Vec::with_capacity(winners.len());
        for rec in winners.into_values() {
            let bytes: Box<[u8]> = encode(&rec)?.into();
            batch.insert(&rec.ip.octets(), &*bytes);
            stored.push((rec, bytes));
        }
        self.leases.apply_batch(batch)?;
        let mut out = Vec::with_capacity(stored.len());
        for (rec, bytes) in stored {
            self.clock.observe(rec.stamp);
            self.remember(&rec, bytes);
            out.push(rec);
        }
        Ok(out)
    }

    fn store(&mut self, rec: LeaseRecord) -> Result<LeaseRecord, LeaseError> {
        let bytes: Box<[u8]> = encode(&rec)?.into();
        self.leases.insert(rec.ip.octets(), &*bytes)?;
        self.remember(&rec, bytes);
        Ok(rec)
    }

    /// Commits many records as one atomic sled batch: after a crash either
    /// all of them are stored or none, so an interrupted import is simply
    /// done again at the next start (the database is still empty).
    pub fn commit_batch(
        &mut self,
        recs: Vec<LeaseRecord>,
        now_ms: u64,
    ) -> Result<usize, LeaseError> {
        let mut batch = sled::Batch::default();
        let mut stamped = Vec::with_capacity(recs.len());
        for mut rec in recs {
            rec.stamp = self.clock.next(now_ms);
            let bytes: Box<[u8]> = encode(&rec)?.into();
            batch.insert(&rec.ip.octets(), &*bytes);
            stamped.push((rec, bytes));
        }
        self.leases.apply_batch(batch)?;
        let n = stamped.len();
        for (rec, bytes) in stamped {
            self.remember(&rec, bytes);
            if let Some(out) = &mut self.outbox {
                out.push(rec);
            }
        }
        Ok(n)
    }

    /// The in-memory half of storing: table, indexes, change count, feed.
    fn remember(&mut self, rec: &LeaseRecord, bytes: Box<[u8]>) {
        match self.records.entry(rec.ip) {
            Entry::Occupied(mut o) => {
                let old = std::mem::replace(o.get_mut(), bytes);
                if let Some(old) = Self::decode_stored(rec.ip, &old) {
                    self.idx.remove(&old);
                }
            }
            Entry::Vacant(v) => {
                v.insert(bytes);
            }
        }
        self.idx.add(rec);
        self.generation += 1;
        // Nobody listening is fine; cloning for an empty feed is not needed.
        if self.feed.receiver_count() > 0 {
            let _ = self.feed.send(rec.clone());
        }
    }

    /// Moves every bound lease whose expiry is at or before `now_secs` to
    /// `Expired` and returns the new records; declined holds that ended
    /// likewise. Uses an expiry index, not a scan.
    ///
    /// An expiry keeps the record's stamp: it follows from the record
    /// itself, it is not a new decision. So on a failover merge a renewal
    /// the partner made meanwhile (a greater stamp) still wins over this
    /// node's expiry of the old copy, and the merge order puts the expired
    /// form above the bound one at the same stamp. The clock still moves,
    /// so the zone serial rises.
    pub fn expire_due(
        &mut self,
        now_secs: u64,
        now_ms: u64,
    ) -> Result<Vec<LeaseRecord>, LeaseError> {
        let due: Vec<Ipv4Addr> = self.idx.due(now_secs).collect();
        let mut out = Vec::with_capacity(due.len());
        for ip in due {
            let Some(mut rec) = self.get(ip) else {
                continue;
            };
            if !rec.expires.is_past(now_secs) {
                continue;
            }
            rec.state = LeaseState::Expired;
            if let Some(stored) = self.settle(rec, now_ms)? {
                out.push(stored);
            }
        }
        Ok(out)
    }

    /// Stores a change that follows from a lease itself rather than a new
    /// decision (its expiry; its end because the same client took another
    /// address), keeping the lease's stamp: then a change the failover
    /// partner made to that lease meanwhile, which has a greater stamp,
    /// still stands after a merge. At equal stamps the merge order puts the
    /// ended form above the bound one. Returns `None` if the stored record
    /// already stands above `rec`. The clock moves on (the zone serial
    /// rises), and the change goes out like a commit.
    pub fn settle(
        &mut self,
        rec: LeaseRecord,
        now_ms: u64,
    ) -> Result<Option<LeaseRecord>, LeaseError> {
        if !merge::replaces(&rec, self.get(rec.ip).as_ref()) {
            return Ok(None);
        }
        let stored = self.store(rec)?;
        if let Some(o) = &mut self.outbox {
            o.push(stored.clone());
        }
        let floor = self.clock.next(now_ms);
        self.write_floor(floor);
        Ok(Some(stored))
    }

    /// Earliest expiry (unix seconds) among bound and declined records.
    pub fn next_expiry(&self) -> Option<u64> {
        let ip = self.idx.first_expiring()?;
        self.get(ip).as_ref().and_then(index::expiry_of)
    }

    /// Number of records in state `Bound` (expired-but-not-yet-swept count).
    pub fn bound_count(&self) -> usize {
        self.idx.bound
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every record in address order, decoded one at a time.
    pub fn iter(&self) -> impl Iterator<Item = LeaseRecord> + '_ {
        let mut ips: Vec<Ipv4Addr> = self.records.keys().copied().collect();
        ips.sort_unstable();
        ips.into_iter().filter_map(|ip| self.get(ip))
    }

    /// Counts stored changes; it moves whenever the table does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn durability(&self) -> Durability {
        Durability {
            db: self.db.clone(),
        }
    }

    /// Every committed record, in commit order, for the DNS engine, the
    /// failover link and the lease-file exporter.
    pub fn subscribe(&self) -> broadcast::Receiver<LeaseRecord> {
        self.feed.subscribe()
    }
}

#[cfg(test)]
mod tests;
