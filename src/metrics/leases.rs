//! Bound leases per dhcp-range, kept current from the lease database's
//! change feed so a scrape reads one counter per range instead of walking
//! the lease table.

use std::net::Ipv4Addr;

use tokio::sync::broadcast::{self, error::TryRecvError};
use twinmasq_proto::{LeaseRecord, LeaseState};

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
    /// For ranges given as (first, last) addresses: subscribes to `db`'s
    /// feed and counts what it holds now.
    pub fn new(bounds: Vec<(Ipv4Addr, Ipv4Addr)>, db: &LeaseDb) -> RangeLeases {
        let mut me = RangeLeases {
            bounds,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::DbOptions;
    use twinmasq_proto::{ClientKey, Expiry, Stamp};

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 16, 0)) + n)
    }

    fn lease(n: u32, state: LeaseState) -> LeaseRecord {
        let hw = vec![0x52, 0x54, 0, 0, (n >> 8) as u8, n as u8];
        LeaseRecord {
            ip: ip(n),
            state,
            client: ClientKey::from_hwaddr(1, &hw),
            htype: 1,
            hwaddr: hw,
            client_id: None,
            hostname: None,
            expires: Expiry::At(4_000_000_000),
            stamp: Stamp::default(),
        }
    }

    #[test]
    fn counts_follow_the_feed_and_survive_a_lag() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = LeaseDb::open(dir.path(), DbOptions::default()).unwrap();
        // Present before the tracker starts: counted from the table.
        db.commit(lease(1, LeaseState::Bound), 1).unwrap();
        db.commit(lease(5000, LeaseState::Bound), 1).unwrap();
        let mut t = RangeLeases::new(vec![(ip(0), ip(9)), (ip(10), ip(5999))], &db);
        assert_eq!(t.counts(), vec![1, 1]);

        db.commit(lease(2, LeaseState::Bound), 2).unwrap();
        db.commit(lease(1, LeaseState::Released), 2).unwrap();
        db.commit(lease(3, LeaseState::Declined), 2).unwrap();
        // Outside every range: not counted.
        let mut outside = lease(0, LeaseState::Bound);
        outside.ip = Ipv4Addr::new(198, 18, 200, 1);
        db.commit(outside, 2).unwrap();
        t.absorb(&db);
        assert_eq!(t.counts(), vec![1, 1]);

        // More changes in one go than the feed holds: counted again from
        // the table, and the feed followed from there on.
        for n in 10..4200 {
            db.commit(lease(n, LeaseState::Bound), 3).unwrap();
        }
        t.absorb(&db);
        assert_eq!(t.counts(), vec![1, 4191]);
        db.commit(lease(5000, LeaseState::Expired), 4).unwrap();
        t.absorb(&db);
        assert_eq!(t.counts(), vec![1, 4190]);
    }
}
