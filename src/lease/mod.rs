//! The lease database: the single source of truth for who holds which
//! address. sled 0.34 on disk (one tree keyed by IP), with in-memory indexes
//! by client key, hostname and expiry rebuilt at open.
//!
//! Every change goes through [`LeaseDb::commit`], which stamps it with the
//! hybrid logical clock, writes it (without fsync), updates the indexes and
//! publishes it on the change feed. Durability is the caller's to batch:
//! [`Durability::flush`] makes everything committed before the call durable,
//! so the DHCP shell sends a batch of ACKs after one flush (group commit).
//!
//! Records from outside this node's DHCP engine (the failover partner, the
//! lease-file import) enter through [`LeaseDb::merge_batch`],
//! [`LeaseDb::merge_in`] and the import, which hold them to the database's
//! [`Admission`] rules first.

pub mod feed;
mod hlc;
pub mod hostname;
pub mod hw;
mod index;
pub mod lease_file;
pub mod merge;
mod pages;
pub mod validate;

pub use hlc::Exhausted;
pub use validate::{Admission, Reject, Rejections};

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use twinmasq_proto::{decode, encode, ClientKey, CodecError, LeaseRecord, LeaseState, Stamp};

use feed::Feed;
pub use feed::{FeedItem, FeedReader, SnapshotRequest};
use hlc::Hlc;
use index::Indexes;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease database at {path}: {source}")]
    Open { path: String, source: sled::Error },
    /// sled found its own files damaged, or could not read them back.
    #[error("lease database {path} is corrupt ({detail})")]
    CorruptDb { path: String, detail: String },
    #[error("lease database {path} cannot be opened: {detail}")]
    NoAccess { path: String, detail: String },
    #[error("lease database {path} is a file, not a directory")]
    NotADirectory { path: String },
    /// Writing failed earlier and the database has not been reopened yet:
    /// nothing can be stored now (see [`LeaseDb::commit`]).
    #[error("lease database: cannot write ({cause})")]
    Unwritable { cause: String },
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
    #[error("lease clock: {0}")]
    Clock(#[from] Exhausted),
    /// A record from outside broke a rule of the [`Admission`].
    #[error("lease record for {ip} refused: {}", reason.describe())]
    Rejected { ip: Ipv4Addr, reason: Reject },
}

/// The cause [`describe`] gives a full filesystem.
const NO_SPACE: &str = "No space left on device";

impl LeaseError {
    /// Whether this is a write refused because the filesystem is full.
    pub fn is_no_space(&self) -> bool {
        match self {
            LeaseError::Unwritable { cause } => cause == NO_SPACE,
            LeaseError::Storage(e) => is_no_space(e),
            _ => false,
        }
    }
}

#[derive(Clone, Copy)]
pub struct DbOptions {
    /// sled's page cache; its default (1 GB) is far too much for a router.
    pub cache_bytes: u64,
    /// Merges of at least this many records are stored as a page and
    /// spread into their keys later (see [`pages`]).
    pub page_min_records: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            cache_bytes: 4 << 20,
            page_min_records: pages::MIN_RECORDS,
        }
    }
}

const LEASES_TREE: &str = "leases";
const META_TREE: &str = "meta";
/// Big merges, a page per value, until spread (see [`pages`]).
const PAGES_TREE: &str = "pages";
const NODE_ID_KEY: &[u8] = b"node_id";
const HLC_KEY: &[u8] = b"hlc";
/// What this node knows of its completeness for failover (see
/// [`Completeness`]).
const COMPLETENESS_KEY: &[u8] = b"completeness";

/// What a failover node knows about whether its table is complete, kept
/// across restarts (issue 14, case 1; ISC's RECOVER). A node that starts
/// hands out nothing new until it has synced with its partner or an MCLT
/// has passed, unless this says the operator had declared the partner
/// down: then the partner is gone and the node keeps serving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Completeness {
    /// The last completed sync: the partner's node id and when (unix ms).
    pub last_sync: Option<(u32, u64)>,
    /// This node declared its partner down at this time (unix ms), and no
    /// sync has completed since.
    pub partner_down_since_ms: Option<u64>,
}

/// Reopen attempts while the database is unwritable, at most one per this
/// interval: each costs a full re-read, and the engine waits for it.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
/// sled drops its file lock from background threads a little after the
/// last handle goes, so a reopen in the same process waits for it this
/// long; the engine waits too, so not longer (the next attempt retries).
const REOPEN_LOCK_WAIT: Duration = Duration::from_millis(300);

/// sled's "could not acquire lock" at open, which passes once the threads
/// of the previous open have let go of the file.
fn is_lock_busy(e: &LeaseError) -> bool {
    matches!(e, LeaseError::Open { source: sled::Error::Io(io), .. }
        if io.to_string().contains("could not acquire lock"))
}

/// The open sled handles, replaced together when the database is reopened.
struct Store {
    db: sled::Db,
    leases: sled::Tree,
    meta: sled::Tree,
    pages: sled::Tree,
}

/// What a [`LeaseDb`] and its [`Durability`] handles share.
struct Shared {
    /// `None` while closed for a reopen. A flush holds the read lock for
    /// its whole length, so no handle outlives a reopen's write lock.
    db: RwLock<Option<sled::Db>>,
    /// Set by the first failed write or flush. sled 0.34 keeps the first
    /// I/O error of its log writer and refuses every later write and flush
    /// with it until the database is opened again, so space coming back is
    /// not enough: the database must be reopened (see `LeaseDb::recover`).
    fault: Mutex<Option<Fault>>,
    /// Flushes numbered as they start, and the greatest number completed:
    /// a write made before `flush_started` read N is on disk once
    /// `flushed_through` exceeds N.
    flush_started: AtomicU64,
    flushed_through: AtomicU64,
}

struct Fault {
    cause: String,
    since: Instant,
    last_try: Option<Instant>,
    refused: u64,
}

impl Shared {
    /// Notes a failed write; logs only the first one of an episode.
    fn fail(&self, path: &Path, e: &sled::Error) {
        let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *fault {
            Some(f) => f.refused += 1,
            None => {
                let cause = describe(e);
                tracing::error!(
                    "lease database {}: cannot write ({cause}): refusing new leases until {}; retrying every {}s, no restart needed",
                    path.display(),
                    if is_no_space(e) { "space returns" } else { "it can be written again" },
                    REOPEN_INTERVAL.as_secs()
                );
                *fault = Some(Fault {
                    cause,
                    since: Instant::now(),
                    last_try: None,
                    refused: 1,
                });
            }
        }
    }
}

/// Whether sled's error is a full filesystem. sled hands out its stored
/// error as a copy that keeps only the kind and a debug text, not the OS
/// error number, so the text is checked too.
pub fn is_no_space(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.raw_os_error() == Some(libc::ENOSPC)
                || io.kind() == std::io::ErrorKind::StorageFull
                || io.to_string().contains("StorageFull")
        }
        _ => false,
    }
}

/// A short cause for a log line: "No space left on device", not the
/// debug text of sled's copied error.
fn describe(e: &sled::Error) -> String {
    if is_no_space(e) {
        return NO_SPACE.into();
    }
    match e {
        sled::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

pub struct LeaseDb {
    /// `None` only while a reopen is under way or after one failed.
    store: Option<Store>,
    shared: Arc<Shared>,
    path: PathBuf,
    opts: DbOptions,
    node_id: u32,
    completeness: Completeness,
    clock: Hlc,
    /// Each record as its encoded bytes, the same bytes sled holds: one
    /// small allocation per lease instead of a struct and its buffers, which
    /// is what keeps 100k leases inside a router's memory. Lookups decode.
    records: HashMap<Ipv4Addr, Box<[u8]>>,
    idx: Indexes,
    feed: Feed,
    /// Changes stored since open: lets a reader that only needs "did
    /// anything change" (the lease-file export) ask without a subscription.
    generation: u64,
    /// This node's own changes not yet taken by the failover link; `None`
    /// when no link wants them. Unlike the feed it cannot lag: the link
    /// drains it in the same task after every batch of requests.
    outbox: Option<Vec<LeaseRecord>>,
    /// With an outbox: per address, this node's latest own change the
    /// failover partner is not known to hold yet (see
    /// [`LeaseDb::unconfirmed_end`]).
    unconfirmed: HashMap<Ipv4Addr, (Stamp, LeaseState)>,
    /// Records whose reply never left (the failover gate dropped it): by
    /// address, the stamp of that change (see [`LeaseDb::is_untold`]).
    untold: HashMap<Ipv4Addr, Stamp>,
    /// No sync has completed since this database was opened: what the
    /// partner acked before the restart was not kept, so no own change
    /// counts as known to it (see [`LeaseDb::partner_knows`]).
    unsynced_since_open: bool,
    /// Big merges stored as pages, still to be spread into their keys.
    pending: pages::Pending,
    /// What records from outside must be (and the clock's bound).
    admission: Admission,
    /// Times the clock was found beyond its bound and set back.
    clock_resets: u64,
    /// Pages whose records are in their keys, each with the flush number
    /// after which it may go: removed only once those writes are on disk.
    spread: Vec<(u64, u64)>,
}

/// What [`LeaseDb::merge_batch`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// The records that replaced what was stored.
    pub stored: Vec<LeaseRecord>,
    /// The records refused by the admission rules, with why; not stored.
    pub rejected: Vec<(Ipv4Addr, Reject)>,
}

/// A cheap, `Send + Clone` handle that makes committed changes durable.
#[derive(Clone)]
pub struct Durability {
    shared: Arc<Shared>,
    path: Arc<Path>,
}

impl Durability {
    /// Blocks until every change committed before this call is on stable
    /// storage (fsync). Meant for a flusher thread or `spawn_blocking`.
    /// While the database is unwritable this fails at once, so nothing
    /// waiting on it is acknowledged.
    pub fn flush(&self) -> Result<(), LeaseError> {
        let db = self
            .shared
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(db) = db.as_ref() else {
            return Err(self.unwritable());
        };
        if let Some(cause) = self.fault_cause() {
            return Err(LeaseError::Unwritable { cause });
        }
        let ticket = self.shared.flush_started.fetch_add(1, Ordering::AcqRel) + 1;
        db.flush().map_err(|e| {
            self.shared.fail(&self.path, &e);
            LeaseError::Unwritable {
                cause: describe(&e),
            }
        })?;
        self.shared
            .flushed_through
            .fetch_max(ticket, Ordering::AcqRel);
        Ok(())
    }

    fn fault_cause(&self) -> Option<String> {
        let fault = self
            .shared
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        fault.as_ref().map(|f| f.cause.clone())
    }

    fn unwritable(&self) -> LeaseError {
        LeaseError::Unwritable {
            cause: self.fault_cause().unwrap_or_else(|| "closed".into()),
        }
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

/// Opens sled in `dir` and its two trees, saying plainly what is wrong when
/// that fails: a damaged or unreadable database stops the start, and the
/// operator needs to know which of the two it is.
fn open_store(dir: &Path, opts: DbOptions) -> Result<Store, LeaseError> {
    let path = dir.display().to_string();
    if dir.exists() && !dir.is_dir() {
        return Err(LeaseError::NotADirectory { path });
    }
    // sled 0.34 reads its files with asserts and unwraps along the way,
    // so damage may panic instead of returning `Corruption` (a bytes-
    // overwritten file did not, in our tests: it reads short, see
    // `open_db` in server.rs). A panic must not end the start without
    // saying what to do, so one while opening counts as corruption.
    // Nothing else is shared with the closure: the half-opened handles are
    // dropped with the unwind.
    let opened = std::panic::catch_unwind(|| -> Result<Store, sled::Error> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_bytes)
            .open()?;
        let leases = db.open_tree(LEASES_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let pages = db.open_tree(PAGES_TREE)?;
        Ok(Store {
            db,
            leases,
            meta,
            pages,
        })
    });
    match opened {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e)) => Err(open_error(dir, e)),
        Err(panic) => Err(LeaseError::CorruptDb {
            path,
            detail: format!("reading it failed: {}", panic_text(&panic)),
        }),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "sled panicked".into())
}

/// Sorts an error from sled while opening or reading into what the
/// operator has to do about it.
fn open_error(dir: &Path, e: sled::Error) -> LeaseError {
    let path = dir.display().to_string();
    match &e {
        sled::Error::Corruption { .. } => LeaseError::CorruptDb {
            path,
            detail: e.to_string(),
        },
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            // SAFETY: geteuid(2) has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            LeaseError::NoAccess {
                path,
                detail: format!(
                    "{io}: the server runs as uid {uid} and needs to read and write the directory and every file in it"
                ),
            }
        }
        sled::Error::Io(io) if io.raw_os_error() == Some(libc::ENOTDIR) => {
            LeaseError::NotADirectory { path }
        }
        _ => LeaseError::Open { path, source: e },
    }
}

/// Everything [`LeaseDb::open`] reads back from disk.
struct Loaded {
    node_id: u32,
    completeness: Completeness,
    last: Stamp,
    records: HashMap<Ipv4Addr, Box<[u8]>>,
    idx: Indexes,
    pending: pages::Pending,
}

fn load(dir: &Path, store: &Store) -> Result<Loaded, LeaseError> {
    let open_err = |e| open_error(dir, e);
    let node_id = match store.meta.get(NODE_ID_KEY).map_err(open_err)? {
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
            store
                .meta
                .insert(NODE_ID_KEY, &id.to_be_bytes())
                .map_err(open_err)?;
            // The id is stamped into every record from now on: it must
            // not change under a crash, so make it durable right away.
            store.db.flush().map_err(open_err)?;
            id
        }
    };

    let mut last = match store.meta.get(HLC_KEY).map_err(open_err)? {
        Some(v) => decode::<Stamp>(&v).map_err(|source| LeaseError::Corrupt {
            key: "meta hlc".into(),
            source,
        })?,
        None => Stamp::default(),
    };

    let completeness = match store.meta.get(COMPLETENESS_KEY).map_err(open_err)? {
        Some(v) => decode::<Completeness>(&v).map_err(|source| LeaseError::Corrupt {
            key: "meta completeness".into(),
            source,
        })?,
        None => Completeness::default(),
    };

    let mut records = HashMap::new();
    let mut idx = Indexes::new();
    for item in store.leases.iter() {
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
    // Pages not yet spread: each record stands where it is newer than its
    // address's own key (which a later change may have written).
    let mut pending = pages::Pending::default();
    for item in store.pages.iter() {
        let (k, v) = item.map_err(open_err)?;
        let n = pages::key_number(&k)
            .ok_or_else(|| corrupt(format!("page key {}", hex(&k)), "not a page number"))?;
        let encoded = pages::unpack(&v).map_err(|e| corrupt(format!("page {n}"), e))?;
        let mut ips = Vec::with_capacity(encoded.len());
        for bytes in encoded {
            let rec: LeaseRecord = decode(bytes).map_err(|source| LeaseError::Corrupt {
                key: format!("page {n}"),
                source,
            })?;
            let current = match records.get(&rec.ip) {
                Some(b) => {
                    Some(
                        decode::<LeaseRecord>(b).map_err(|source| LeaseError::Corrupt {
                            key: rec.ip.to_string(),
                            source,
                        })?,
                    )
                }
                None => None,
            };
            if merge::replaces(&rec, current.as_ref()) {
                if let Some(old) = &current {
                    idx.remove(old);
                }
                idx.add(&rec);
                records.insert(rec.ip, Box::from(bytes));
            }
            last = last.max(rec.stamp);
            ips.push(rec.ip);
        }
        pending.push(n, ips);
    }
    Ok(Loaded {
        node_id,
        completeness,
        last,
        records,
        idx,
        pending,
    })
}

impl LeaseDb {
    /// Opens or creates the database in `dir`. A new database gets a random
    /// node id, kept in the database. A record that does not decode is an
    /// error naming its key (never silently skipped).
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Self, LeaseError> {
        let store = open_store(dir, opts)?;
        // Pages are read lazily, so damage can also surface (or make sled
        // panic) while reading the records: same treatment as at open.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(dir, &store)))
            .unwrap_or_else(|panic| {
            Err(LeaseError::CorruptDb {
                path: dir.display().to_string(),
                detail: format!("reading it failed: {}", panic_text(&panic)),
            })
        })?;
        let Loaded {
            node_id,
            completeness,
            last,
            records,
            idx,
            pending,
        } = loaded;

        let feed = Feed::new();
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(store.db.clone())),
            fault: Mutex::new(None),
            flush_started: AtomicU64::new(0),
            flushed_through: AtomicU64::new(0),
        });
        Ok(LeaseDb {
            store: Some(store),
            shared,
            path: dir.to_path_buf(),
            opts,
            node_id,
            completeness,
            clock: Hlc::new(node_id, last, Admission::default().max_skew_ms()),
            records,
            idx,
            feed,
            generation: 0,
            outbox: None,
            unconfirmed: HashMap::new(),
            untold: HashMap::new(),
            unsynced_since_open: true,
            pending,
            spread: Vec::new(),
            admission: Admission::default(),
            clock_resets: 0,
        })
    }

    /// Runs one write against the open database. After a failed write the
    /// database refuses everything until it is reopened: at most once per
    /// [`REOPEN_INTERVAL`] this tries that first, so writes succeed again
    /// as soon as the cause (a full disk) is gone, without a restart.
    fn write<T>(&mut self, f: impl FnOnce(&Store) -> sled::Result<T>) -> Result<T, LeaseError> {
        self.recover()?;
        let Some(store) = self.store.as_ref() else {
            return Err(LeaseError::Unwritable {
                cause: "closed".into(),
            });
        };
        f(store).map_err(|e| {
            self.shared.fail(&self.path, &e);
            LeaseError::Unwritable {
                cause: describe(&e),
            }
        })
    }

    /// Whether a write or flush has failed and the database not been
    /// reopened since.
    pub fn is_faulted(&self) -> bool {
        self.shared
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn recover(&mut self) -> Result<(), LeaseError> {
        let cause = {
            let mut fault = self
                .shared
                .fault
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(f) = fault.as_mut() else {
                return Ok(());
            };
            if f.last_try.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
                f.refused += 1;
                return Err(LeaseError::Unwritable {
                    cause: f.cause.clone(),
                });
            }
            f.last_try = Some(Instant::now());
            f.cause.clone()
        };
        let started = Instant::now();
        let reopened = self.reopen();
        tracing::debug!(
            "lease database {}: reopen took {} ms",
            self.path.display(),
            started.elapsed().as_millis()
        );
        match reopened {
            Ok(rewritten) => {
                let fault = self
                    .shared
                    .fault
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(f) = fault {
                    tracing::warn!(
                        "lease database {}: writable again after {}s; reopened, {rewritten} unsaved changes stored, {} writes refused meanwhile; acknowledging leases again",
                        self.path.display(),
                        f.since.elapsed().as_secs(),
                        f.refused
                    );
                }
                Ok(())
            }
            Err(e) => {
                tracing::debug!(
                    "lease database {}: still unwritable: {e}",
                    self.path.display()
                );
                let mut fault = self
                    .shared
                    .fault
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(f) = fault.as_mut() {
                    f.refused += 1;
                }
                Err(LeaseError::Unwritable { cause })
            }
        }
    }

    /// Closes sled and opens it again (which clears the error it keeps),
    /// then stores every record the table holds that did not reach the
    /// disk, and flushes: after this, disk and memory agree again. Returns
    /// how many records were stored anew.
    fn reopen(&mut self) -> Result<usize, LeaseError> {
        *self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.store = None;
        let deadline = Instant::now() + REOPEN_LOCK_WAIT;
        let store = loop {
            match open_store(&self.path, self.opts) {
                Err(e) if is_lock_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        };
        let mut batch = sled::Batch::default();
        let mut rewritten = 0;
        for (ip, bytes) in &self.records {
            if store.leases.get(ip.octets())?.as_deref() != Some(&**bytes) {
                batch.insert(&ip.octets(), &**bytes);
                rewritten += 1;
            }
        }
        store.leases.apply_batch(batch)?;
        store.meta.insert(HLC_KEY, encode(&self.clock.last())?)?;
        store.db.flush()?;
        // Every record is in its own key, on disk: the pages can go.
        store.pages.clear()?;
        self.pending.clear();
        self.spread.clear();
        store.db.flush()?;
        *self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(store.db.clone());
        self.store = Some(store);
        Ok(rewritten)
    }

    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    /// What the failover node last stored about its completeness.
    pub fn completeness(&self) -> Completeness {
        self.completeness
    }

    /// Stores `c` (without fsync: the next flush makes it durable, and
    /// what a crash loses before then only makes the node wait longer at
    /// its next start, except a partner-down it had ended, see
    /// `Node::sync_complete`).
    pub fn set_completeness(&mut self, c: Completeness) -> Result<(), LeaseError> {
        if c == self.completeness {
            return Ok(());
        }
        let bytes = encode(&c)?;
        self.write(|s| s.meta.insert(COMPLETENESS_KEY, bytes))?;
        self.completeness = c;
        Ok(())
    }

    /// The database's directory, for messages about it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The greatest stamp this node has issued or observed.
    pub fn last_stamp(&self) -> Stamp {
        self.clock.last()
    }

    /// Holds records from outside to `rules` from now on, and the clock to
    /// its skew bound. Call before the first import or merge (and again
    /// when the configuration's hosts change).
    pub fn set_admission(&mut self, rules: Admission) {
        self.clock.set_bound(rules.max_skew_ms());
        self.admission = rules;
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Whether a record from outside may enter the table now.
    pub fn check(&self, rec: &LeaseRecord, now_ms: u64) -> Result<(), Reject> {
        self.admission.check(rec, now_ms)
    }

    /// How many times the clock was found beyond its wall clock plus the
    /// bound and set back (see [`LeaseDb::keep_clock_bounded`]). Stamps
    /// issued before such a reset may stand above those issued after it:
    /// whoever relies on stamps rising (the failover node's acks) starts
    /// over when this moves.
    pub fn clock_resets(&self) -> u64 {
        self.clock_resets
    }

    /// Sets the clock back within the wall clock plus the bound if it
    /// stands beyond (this node's wall clock stepped back by more than the
    /// bound, or the floor recovered from disk at open is that far ahead).
    /// Records stamped beyond are stamped anew, in their old order, as this
    /// node's changes: kept as they were, the partner would refuse them
    /// until real time caught up, and they would win every merge for their
    /// address meanwhile. Called by every operation that takes the time;
    /// costs one comparison unless the clock is ahead.
    ///
    /// This is the one place the clock goes back. Within a process that
    /// breaks "stamps only rise", which the failover node's acks rely on:
    /// it watches [`LeaseDb::clock_resets`] and starts over with a full
    /// sync. A restart starts over anyway. (A big merge's page not yet
    /// spread keeps the old stamp; read back by a restart before it is
    /// spread, that record is simply stamped anew once more.)
    pub fn keep_clock_bounded(&mut self, now_ms: u64) -> Result<(), LeaseError> {
        if !self.clock.is_ahead(now_ms) {
            return Ok(());
        }
        let limit = self.clock.limit(now_ms);
        let was = self.clock.last();
        let mut floor = Stamp::default();
        let mut ahead = Vec::new();
        for (ip, bytes) in &self.records {
            let Some(rec) = Self::decode_stored(*ip, bytes) else {
                continue;
            };
            if rec.stamp.wall_ms > limit {
                ahead.push(rec);
            } else {
                floor = floor.max(rec.stamp);
            }
        }
        ahead.sort_by_key(|r| r.stamp);
        // On a copy, so a failed write leaves clock and table as they were
        // (and the next operation tries again).
        let mut clock = self.clock.clone();
        clock.rebase(floor);
        let mut batch = sled::Batch::default();
        let mut stamped = Vec::with_capacity(ahead.len());
        for mut rec in ahead {
            rec.stamp = clock.next(now_ms)?;
            let bytes: Box<[u8]> = encode(&rec)?.into();
            batch.insert(&rec.ip.octets(), &*bytes);
            stamped.push((rec, bytes));
        }
        if !stamped.is_empty() {
            self.write(|s| s.leases.apply_batch(batch))?;
        }
        self.clock = clock;
        self.clock_resets += 1;
        let n = stamped.len();
        for (rec, bytes) in stamped {
            self.remember(&rec, bytes);
            self.push_outbox(rec);
        }
        self.write_floor(self.clock.last());
        tracing::warn!(
            "lease clock: the newest stamp ({} ms) is {} s ahead of this node's clock, more than the {} s allowed (failover-max-skew): the clock stepped back, or ran ahead before. Stamps go on from the clock; {n} record{} stamped ahead {} stamped anew",
            was.wall_ms,
            was.wall_ms.saturating_sub(now_ms) / 1000,
            self.admission.max_skew_ms() / 1000,
            if n == 1 { "" } else { "s" },
            if n == 1 { "is" } else { "are" },
        );
        Ok(())
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
        self.keep_clock_bounded(now_ms)?;
        rec.stamp = self.clock.next(now_ms)?;
        let stored = self.store(rec)?;
        self.push_outbox(stored.clone());
        Ok(stored)
    }

    fn push_outbox(&mut self, rec: LeaseRecord) {
        if let Some(out) = &mut self.outbox {
            self.unconfirmed.insert(rec.ip, (rec.stamp, rec.state));
            out.push(rec);
        }
    }

    /// Is the record for `ip` an end (released, expired) of a lease that
    /// the failover partner may not know ended yet? Then the address goes
    /// to no other client even in sync: a grant to another client whose
    /// reply the link's fall then drops would stay in this table, unknown
    /// to the partner, which still holds the old client's lease and may
    /// hand it back to that client once apart (as ISC, which frees a
    /// released address only once the partner has acked the release).
    pub fn unconfirmed_end(&self, ip: Ipv4Addr) -> bool {
        let Some(&(stamp, state)) = self.unconfirmed.get(&ip) else {
            return false;
        };
        matches!(state, LeaseState::Released | LeaseState::Expired)
            // A record merged from the partner since stands in its place.
            && self
                .get(ip)
                .is_some_and(|r| r.stamp == stamp && r.state == state)
    }

    /// The reply promising the change stamped `stamp` on `ip` never left
    /// (the failover link fell first, or the wait ran out).
    pub fn note_untold(&mut self, ip: Ipv4Addr, stamp: Stamp) {
        if self.get(ip).is_some_and(|r| r.stamp == stamp) {
            self.untold.insert(ip, stamp);
        }
    }

    /// Is the record for `ip` a change no client was told of? Its client
    /// does not hold that lease, and the partner may not know it: it is
    /// no lease to hand back, nor to acknowledge in the partner's share.
    /// Kept in memory only: a restart recovers (syncs, or waits an MCLT)
    /// before serving.
    pub fn is_untold(&self, ip: Ipv4Addr) -> bool {
        self.untold.get(&ip).is_some_and(|s| {
            self.get(ip)
                .is_some_and(|r| r.stamp == *s && r.state == LeaseState::Bound)
        })
    }

    /// Does the failover partner know the record for `ip` as it stands
    /// here? It wrote it, or it acked our change, or a sync since this
    /// database was opened carried it. A binding this node wrote that the
    /// partner may not know (the link fell before the ack, or the process
    /// died waiting for it) is no lease to hand back in the partner's
    /// share: its client was never told, and the partner may have given
    /// the address to another client (simulation seed 7568 of
    /// `failover_pair_expired_clients_reclaim_their_addresses`).
    pub fn partner_knows(&self, ip: Ipv4Addr) -> bool {
        let Some(r) = self.get(ip) else {
            return false;
        };
        if r.stamp.node != self.node_id {
            return true;
        }
        !self.unsynced_since_open && self.unconfirmed.get(&ip) != Some(&(r.stamp, r.state))
    }

    /// The failover partner holds these own changes (it acked them).
    pub fn partner_holds<'a>(&mut self, records: impl IntoIterator<Item = &'a LeaseRecord>) {
        for r in records {
            if self.unconfirmed.get(&r.ip) == Some(&(r.stamp, r.state)) {
                self.unconfirmed.remove(&r.ip);
            }
        }
    }

    /// After a sync: the partner holds every own change but `pending`
    /// (still to be sent, or sent and not acked).
    pub fn partner_holds_all_but<'a>(
        &mut self,
        pending: impl IntoIterator<Item = &'a LeaseRecord>,
    ) {
        let mut keep = HashMap::new();
        let mut note = |r: &LeaseRecord| {
            if let Some(v) = self
                .unconfirmed
                .get(&r.ip)
                .filter(|v| **v == (r.stamp, r.state))
            {
                keep.insert(r.ip, *v);
            }
        };
        for r in pending {
            note(r);
        }
        for r in self.outbox.iter().flatten() {
            note(r);
        }
        self.unconfirmed = keep;
        self.unsynced_since_open = false;
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
    /// a restart arrives inside a record, and `merge_in` stores that. A
    /// stamp beyond `now_ms` plus the skew bound is ignored.
    pub fn observe(&mut self, stamp: Stamp, now_ms: u64) -> Result<(), LeaseError> {
        self.keep_clock_bounded(now_ms)?;
        if self.clock.observe(stamp, now_ms) {
            self.write_floor(stamp);
        }
        Ok(())
    }

    fn write_floor(&mut self, stamp: Stamp) {
        // The floor is an extra safety margin, not what correctness rests
        // on (see `open`), so failing to write it is worth a warning only;
        // while the database is unwritable it is not even tried (a reopen
        // writes the floor).
        if self.is_faulted() {
            return;
        }
        let written = encode(&stamp)
            .map_err(LeaseError::from)
            .and_then(|b| self.write(|s| s.meta.insert(HLC_KEY, b)));
        if let Err(e) = written {
            tracing::warn!("cannot record the clock floor: {e}");
        }
    }

    /// Stores a partner's record as it is, stamp included, if its stamp is
    /// above the stored record's for that address (or there is none); then
    /// indexes and publishes it like a commit and returns it. Returns `None`
    /// when the stored record is as new or newer, so merging the same record
    /// twice, or in any order, ends in the same table. A record breaking
    /// the [`Admission`] rules at `now_ms` is refused with
    /// [`LeaseError::Rejected`].
    pub fn merge_in(
        &mut self,
        rec: LeaseRecord,
        now_ms: u64,
    ) -> Result<Option<LeaseRecord>, LeaseError> {
        if let Err(reason) = self.check(&rec, now_ms) {
            return Err(LeaseError::Rejected { ip: rec.ip, reason });
        }
        self.keep_clock_bounded(now_ms)?;
        if !merge::replaces(&rec, self.get(rec.ip).as_ref()) {
            return Ok(None);
        }
        self.clock.observe(rec.stamp, now_ms);
        self.store(rec).map(Some)
    }

    /// `merge_in` for many records. Returns the records that replaced what
    /// was stored, and those refused by the [`Admission`] rules (dropped);
    /// a record listed twice merges as the newer. A few are written as one
    /// sled batch; many (a sync page) as one page, spread into their keys
    /// later by [`LeaseDb::spread_pages`].
    pub fn merge_batch(
        &mut self,
        recs: Vec<LeaseRecord>,
        now_ms: u64,
    ) -> Result<Merged, LeaseError> {
        self.keep_clock_bounded(now_ms)?;
        let mut rejected = Vec::new();
        let mut winners: HashMap<Ipv4Addr, LeaseRecord> = HashMap::new();
        for rec in recs {
            if let Err(reason) = self.check(&rec, now_ms) {
                rejected.push((rec.ip, reason));
                continue;
            }
            let current = winners.get(&rec.ip).cloned().or_else(|| self.get(rec.ip));
            if merge::replaces(&rec, current.as_ref()) {
                winners.insert(rec.ip, rec);
            }
        }
        let mut stored = Vec::with_capacity(winners.len());
        for rec in winners.into_values() {
            let bytes: Box<[u8]> = encode(&rec)?.into();
            stored.push((rec, bytes));
        }
        if stored.len() >= self.opts.page_min_records {
            let n = self.pending.next;
            let page = pages::pack(stored.iter().map(|(_, b)| &**b));
            self.write(|s| s.pages.insert(pages::key(n), page))?;
            self.pending
                .push(n, stored.iter().map(|(r, _)| r.ip).collect());
        } else {
            let mut batch = sled::Batch::default();
            for (rec, bytes) in &stored {
                batch.insert(&rec.ip.octets(), &**bytes);
            }
            self.write(|s| s.leases.apply_batch(batch))?;
        }
        let mut out = Vec::with_capacity(stored.len());
        for (rec, bytes) in stored {
            self.clock.observe(rec.stamp, now_ms);
            self.remember(&rec, bytes);
            out.push(rec);
        }
        Ok(Merged {
            stored: out,
            rejected,
        })
    }

    /// Copies up to `budget` records of big merges from their pages into
    /// their own keys, and drops the pages that are then done. Returns how
    /// many it copied; call it while idle until it returns 0.
    pub fn spread_pages(&mut self, budget: usize) -> Result<usize, LeaseError> {
        if self.is_faulted() {
            return Ok(0);
        }
        let flushed = self.shared.flushed_through.load(Ordering::Acquire);
        let (gone, kept): (Vec<_>, Vec<_>) = self.spread.iter().partition(|(_, m)| flushed > *m);
        if !gone.is_empty() {
            self.write(|s| {
                for (n, _) in &gone {
                    s.pages.remove(pages::key(*n))?;
                }
                Ok(())
            })?;
            self.spread = kept;
        }
        if self.pending.is_empty() {
            return Ok(0);
        }
        let (ips, done) = self.pending.take(budget);
        let mut batch = sled::Batch::default();
        for ip in &ips {
            // The current bytes: a change since the merge wrote its key
            // already, and stands.
            if let Some(bytes) = self.records.get(ip) {
                batch.insert(&ip.octets(), &**bytes);
            }
        }
        // Should this fail, the pages stay: a start reads them again, and
        // the reopen after the fault writes every key anyway.
        self.write(|s| s.leases.apply_batch(batch))?;
        // A page goes only once these writes are on disk, whatever order
        // sled would restore its trees in after a crash.
        let mark = self.shared.flush_started.load(Ordering::Acquire);
        self.spread.extend(done.into_iter().map(|n| (n, mark)));
        Ok(ips.len())
    }

    fn store(&mut self, rec: LeaseRecord) -> Result<LeaseRecord, LeaseError> {
        let bytes: Box<[u8]> = encode(&rec)?.into();
        self.write(|s| s.leases.insert(rec.ip.octets(), &*bytes))?;
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
        self.keep_clock_bounded(now_ms)?;
        let mut batch = sled::Batch::default();
        let mut stamped = Vec::with_capacity(recs.len());
        for mut rec in recs {
            rec.stamp = self.clock.next(now_ms)?;
            let bytes: Box<[u8]> = encode(&rec)?.into();
            batch.insert(&rec.ip.octets(), &*bytes);
            stamped.push((rec, bytes));
        }
        self.write(|s| s.leases.apply_batch(batch))?;
        let n = stamped.len();
        for (rec, bytes) in stamped {
            self.remember(&rec, bytes);
            self.push_outbox(rec);
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
        self.feed.send(rec);
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
        self.keep_clock_bounded(now_ms)?;
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
        self.keep_clock_bounded(now_ms)?;
        let mut rec = rec;
        if rec.stamp.wall_ms > self.clock.limit(now_ms) {
            // The lease was stamped while this node's clock ran ahead, and
            // `keep_clock_bounded` has just given it a stamp within the
            // bound: the change keeps the stamp the lease has now. (Another
            // client's record there cannot be this lease's: a fresh stamp.)
            rec.stamp = match self.get(rec.ip) {
                Some(cur) if cur.client == rec.client => cur.stamp,
                _ => self.clock.next(now_ms)?,
            };
        }
        if !merge::replaces(&rec, self.get(rec.ip).as_ref()) {
            return Ok(None);
        }
        let stored = self.store(rec)?;
        self.push_outbox(stored.clone());
        // Only a floor: at the end of the clock there is none to take, and
        // the change is stored all the same.
        if let Ok(floor) = self.clock.next(now_ms) {
            self.write_floor(floor);
        }
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
            shared: Arc::clone(&self.shared),
            path: Arc::from(self.path.as_path()),
        }
    }

    /// Every committed record, in commit order, for a reader in the task
    /// that owns the database: one that falls behind rebuilds from the
    /// table itself (the per-range counts of the metrics).
    pub fn subscribe(&self) -> broadcast::Receiver<LeaseRecord> {
        self.feed.subscribe()
    }

    /// Every committed record, in commit order, for a task on another
    /// thread (DNS, `dhcp-script`); one that falls behind gets a copy of
    /// the table, which the owning task sends when it answers
    /// [`take_snapshot_requests`](Self::take_snapshot_requests).
    pub fn feed_reader(&self) -> FeedReader {
        self.feed.reader()
    }

    /// The queue of copies of the table that readers ask for; the task that
    /// owns the database takes it once and answers each request with
    /// [`iter`](Self::iter). `None` after the first call.
    pub fn take_snapshot_requests(
        &mut self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<SnapshotRequest>> {
        self.feed.take_requests()
    }
}

#[cfg(test)]
mod tests;
