//! Bound leases per dhcp-range, kept current from the lease database's
//! change feed so a scrape reads one counter per range instead of walking
//! the lease table.

use std::net::Ipv4Addr;

use tokio::sync::broadcast::{self, error::TryRecvError};
use twinmasq_proto::{LeaseRecord, LeaseState};

use crate::config::DhcpRange;
use crate::dhcp::pool::Pool;
use crate::lease::LeaseDb;

/// One bitmap per range (a bit per address: a bound lease holds it),
/// the same structure the engine uses for free addresses, so the memory
/// is the engine's again and a count is one field read.
pub struct RangeLeases {
    bounds: Vec<(Ipv4Addr, Ipv4Addr)>,
    pools: Vec<Pool>,
    feed: broadcast::Receiver<LeaseRecord>,
}

impl RangeLeases {
    /// Subscribes to `db`'s feed and counts what it holds now.
    pub fn new(ranges: &[DhcpRange], db: &LeaseDb) -> RangeLeases {
        let mut me = RangeLeases {
            bounds: ranges.iter().map(|r| (r.start, r.end)).collect(),
            pools: Vec::new(),
            feed: db.subscribe(),
        };
        me.rebuild(db);
        me
    }

    fn note(&mut self, rec: &LeaseRecord) {
        let bound = rec.state == LeaseState::Bound;
        for p in &mut self.pools {
            p.set_used(rec.ip, bound);
        }
    }

    fn rebuild(&mut self, db: &LeaseDb) {
        self.pools = self.bounds.iter().map(|(s, e)| Pool::new(*s, *e)).collect();
        for rec in db.iter() {
            self.note(&rec);
        }
    }

    /// Applies the changes since the last call. Runs in the task that owns
    /// `db`, after each batch of work: the feed's buffer then only overflows
    /// when one batch changes thousands of records (a failover sync, a mass
    /// expiry), and that costs one walk of the table, not a wrong count.
    pub fn absorb(&mut self, db: &LeaseDb) {
        loop {
            match self.feed.try_recv() {
                Ok(rec) => self.note(&rec),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return,
                Err(TryRecvError::Lagged(_)) => {
                    // Start over from now: the table is the truth.
                    self.feed = self.feed.resubscribe();
                    self.rebuild(db);
                    return;
                }
            }
        }
    }

    /// Bound leases per range, in config order.
    pub fn counts(&self) -> Vec<u64> {
        self.pools
            .iter()
            .map(|p| u64::from(p.used_count()))
            .collect()
    }
}
