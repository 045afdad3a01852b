//! The local control socket and the commands that use it: `twinmasq
//! status`, `twinmasq leases`, `twinmasq failover partner-down` (and
//! `failover gen-key`, which needs no server).
//!
//! The socket side ([`listener`]) reads one request line and hands it to
//! the DHCP shell's task, which owns everything worth reporting; the shell
//! answers through [`ControlHooks`] and the socket side writes the JSON.

pub mod cli;
pub mod client;
pub mod listener;
pub mod protocol;

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::dhcp::engine::Engine;
use crate::failover::status::FailoverStatus;
use crate::lease::LeaseDb;
use crate::lease_task::ShellStats;

pub use protocol::{ControlReply, ControlRequest, RequestKind, StatusReport};
use protocol::{DhcpCounters, LeaseCounts, PartnerDownReply, RangeStatus};

/// Queue of requests between the socket and the shell: as many as the
/// socket serves at once, so a sender never waits long.
pub const REQUEST_QUEUE: usize = listener::MAX_CONNECTIONS;

/// What the DHCP shell keeps for the control socket: the request queue
/// (none until [`ControlHooks::attach`]) and when it started.
pub struct ControlHooks {
    pub requests: Option<mpsc::Receiver<ControlRequest>>,
    started: Instant,
    started_unix_ms: u64,
}

impl Default for ControlHooks {
    fn default() -> Self {
        ControlHooks {
            requests: None,
            started: Instant::now(),
            started_unix_ms: crate::clock::now_ms(),
        }
    }
}

impl ControlHooks {
    /// Makes the shell answer the requests that arrive on `rx`.
    pub fn attach(&mut self, rx: mpsc::Receiver<ControlRequest>) {
        self.requests = Some(rx);
    }

    /// Builds the `status` answer. Runs on the engine's task; its cost is
    /// one pass over the lease table, as a lease-file export is.
    pub fn status(
        &self,
        db: &LeaseDb,
        engine: &Engine,
        shell: &ShellStats,
        failover: Option<FailoverStatus>,
        now_ms: u64,
    ) -> StatusReport {
        let node_id = db.node_id();
        let now_secs = now_ms / 1000;
        let mut counts = LeaseCounts {
            bound: db.bound_count() as u64,
            active: 0,
            records: 0,
            from_this_node: 0,
            from_other_nodes: 0,
        };
        for rec in db.iter() {
            counts.records += 1;
            if rec.is_active(now_secs) {
                counts.active += 1;
            }
            if rec.stamp.node == node_id {
                counts.from_this_node += 1;
            } else {
                counts.from_other_nodes += 1;
            }
        }
        let ranges = engine
            .config()
            .dhcp_ranges
            .iter()
            .zip(engine.free_per_range())
            .map(|(r, free)| RangeStatus {
                start: r.start,
                end: r.end,
                size: u64::from(u32::from(r.end)).saturating_sub(u64::from(u32::from(r.start))) + 1,
                free: u64::from(free),
            })
            .collect();
        let s = engine.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let dhcp = DhcpCounters {
            received: s.received,
            discover: s.discover,
            request: s.request,
            decline: s.decline,
            release: s.release,
            inform: s.inform,
            offers: s.offers,
            acks: s.acks,
            naks: s.naks,
            bad_options: s.bad_options,
            probes: s.probes,
            probes_answered: s.probes_answered,
            ignored: s
                .ignored
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            not_served_interface: load(&shell.not_served_interface),
            send_errors: load(&shell.send_errors),
            flushes: load(&shell.flushes),
            flush_errors: load(&shell.flush_errors),
            durable_replies: load(&shell.durable_replies),
            partner_dropped: load(&shell.partner_dropped),
            partner_cancelled: load(&shell.partner_cancelled),
        };
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_id,
            pid: std::process::id(),
            started_unix_ms: self.started_unix_ms,
            uptime_secs: self.started.elapsed().as_secs(),
            leases: counts,
            ranges,
            dhcp,
            failover,
        }
    }
}

/// The answer to `partner-down`, from what the failover node said to the
/// declaration (the time the partner's share opens, or why it refused)
/// and its status afterwards.
pub fn partner_down_reply(
    declared: Result<u64, String>,
    status: &FailoverStatus,
    now_ms: u64,
) -> ControlReply {
    match declared {
        Ok(share_from) => ControlReply::PartnerDown(PartnerDownReply {
            ok: true,
            partner_down_since_unix_ms: status.partner_down_since_unix_ms.unwrap_or(now_ms),
            partner_share_from_unix_ms: share_from,
        }),
        Err(reason) => ControlReply::Error(reason),
    }
}
