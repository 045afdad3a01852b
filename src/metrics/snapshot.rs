//! What a scrape collects: one snapshot from the DHCP task (the engine,
//! the lease database and the failover node live there) and one from the
//! DNS task, each asked for over a channel and answered between two
//! packets.
//!
//! Asked for, not published: a task that published a snapshot every second
//! would build one every second whether or not anyone scrapes, and a stuck
//! task would keep serving its last numbers as if all were well. Asked for,
//! the cost is zero until a scrape comes, the numbers are current, and a
//! stuck task shows as `twinmasq_scrape_source_up{source=...} 0`.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use crate::dhcp::engine::Engine;
use crate::dhcp::stats::Stats;
use crate::dns::cache::CacheStats;
use crate::dns::engine::DnsStats;
use crate::failover::status::FailoverStatus;
use crate::lease::LeaseDb;
use crate::lease_task::ShellStats;

use super::leases::RangeLeases;

/// Where a task sends its snapshot.
pub type Reply<T> = oneshot::Sender<T>;

/// Scrapes waiting for a task at once; a full queue answers the scrape
/// without that part rather than wait.
pub const REQUEST_QUEUE: usize = super::http::MAX_CONNECTIONS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSnapshot {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub size: u64,
    pub free: u64,
    /// Bound leases inside the range.
    pub leases: u64,
}

/// The DHCP shell's own counters (socket and flusher), read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpShellCounters {
    pub not_served_interface: u64,
    pub send_errors: u64,
    pub flushes: u64,
    pub flush_errors: u64,
    pub durable_replies: u64,
    pub partner_dropped: u64,
    pub partner_cancelled: u64,
    pub stale_replies: u64,
}

impl DhcpShellCounters {
    pub fn read(s: &ShellStats) -> DhcpShellCounters {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        DhcpShellCounters {
            not_served_interface: load(&s.not_served_interface),
            send_errors: load(&s.send_errors),
            flushes: load(&s.flushes),
            flush_errors: load(&s.flush_errors),
            durable_replies: load(&s.durable_replies),
            partner_dropped: load(&s.partner_dropped),
            partner_cancelled: load(&s.partner_cancelled),
            stale_replies: load(&s.stale_replies),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSnapshot {
    pub stats: Stats,
    pub shell: DhcpShellCounters,
    pub ranges: Vec<RangeSnapshot>,
    /// Bound leases in the whole table (static ones outside ranges too).
    pub leases_bound: u64,
    pub failover: Option<FailoverStatus>,
    pub now_unix_ms: u64,
}

impl DhcpSnapshot {
    /// Built in the DHCP task: O(ranges), never a walk of the lease table.
    pub fn build(
        engine: &Engine,
        db: &LeaseDb,
        shell: &ShellStats,
        leases: &RangeLeases,
        failover: Option<FailoverStatus>,
        now_unix_ms: u64,
    ) -> DhcpSnapshot {
        let ranges = engine
            .config()
            .dhcp_ranges
            .iter()
            .zip(engine.free_per_range())
            .zip(leases.counts())
            .map(|((r, free), leases)| RangeSnapshot {
                start: r.start,
                end: r.end,
                size: u64::from(u32::from(r.end)).saturating_sub(u64::from(u32::from(r.start))) + 1,
                free: u64::from(free),
                leases,
            })
            .collect();
        DhcpSnapshot {
            stats: engine.stats().clone(),
            shell: DhcpShellCounters::read(shell),
            ranges,
            leases_bound: db.bound_count() as u64,
            failover,
            now_unix_ms,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSnapshot {
    pub stats: DnsStats,
    pub cache: CacheStats,
    pub cache_entries: u64,
    pub cache_capacity: u64,
    /// Queries waiting for an upstream answer.
    pub pending: u64,
}

/// What the DHCP task keeps for metrics: the scrape requests and the
/// per-range lease counts it maintains.
pub struct DhcpHooks {
    pub requests: mpsc::Receiver<Reply<DhcpSnapshot>>,
    pub leases: RangeLeases,
}

/// What the DNS task keeps for metrics.
pub struct DnsHooks {
    pub requests: mpsc::Receiver<Reply<DnsSnapshot>>,
}

/// The scrape side of the channels; a part that is off has none.
#[derive(Default, Clone)]
pub struct MetricsSources {
    pub dhcp: Option<mpsc::Sender<Reply<DhcpSnapshot>>>,
    pub dns: Option<mpsc::Sender<Reply<DnsSnapshot>>>,
}

/// A request channel for one task.
pub fn channel<T>() -> (mpsc::Sender<Reply<T>>, mpsc::Receiver<Reply<T>>) {
    mpsc::channel(REQUEST_QUEUE)
}

/// One part's contribution to a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<T> {
    /// Not running (DNS with `port=0`): nothing to report.
    Off,
    /// Running, but it did not answer in time.
    NoAnswer,
    Answered(T),
}

/// Everything one scrape renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrape {
    pub version: String,
    pub uptime_secs: u64,
    pub dhcp: Source<DhcpSnapshot>,
    pub dns: Source<DnsSnapshot>,
}
