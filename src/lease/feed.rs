//! The table's changes as tasks on other threads follow them (DNS names,
//! `dhcp-script`): a bounded broadcast of each committed record, and, for
//! a reader that fell behind it, a copy of the whole table from the task
//! that owns it. Falling behind (a 100,000-lease sync merges records much
//! faster than a busy reader takes them) thus costs one copy of the table,
//! never changes that stay missing.
//!
//! The owner's side is [`Feed`], inside [`LeaseDb`](super::LeaseDb); the
//! task that owns the database answers [`SnapshotRequest`]s (see
//! [`LeaseDb::take_snapshot_requests`](super::LeaseDb::take_snapshot_requests)).

use tokio::sync::{broadcast, mpsc, oneshot};

use twinmasq_proto::LeaseRecord;

/// Room for a burst of changes (a failover sync, a mass expiry) before a
/// slow reader falls behind and needs a copy of the table.
const CAPACITY: usize = 4096;

/// A reader's request for every record of the table as it stands.
pub type SnapshotRequest = oneshot::Sender<Vec<LeaseRecord>>;

/// What a reader gets next.
#[derive(Debug)]
pub enum FeedItem {
    /// One committed record.
    Change(LeaseRecord),
    /// The reader fell behind: every record of the table, taken after the
    /// changes it missed. Changes that follow may repeat some of those in
    /// it (each record's last change comes last, so applying them again
    /// ends where the table is).
    Resync(Vec<LeaseRecord>),
}

/// The owner's end: where commits go, and the queue of snapshot requests.
pub(crate) struct Feed {
    changes: broadcast::Sender<LeaseRecord>,
    requests: mpsc::UnboundedSender<SnapshotRequest>,
    /// Until the owning task takes it.
    pending: Option<mpsc::UnboundedReceiver<SnapshotRequest>>,
}

impl Feed {
    pub(super) fn new() -> Feed {
        Feed::with_capacity(CAPACITY)
    }

    /// A feed that holds `capacity` changes for a slow reader (tests make
    /// readers fall behind with a small one).
    pub(crate) fn with_capacity(capacity: usize) -> Feed {
        let (changes, _) = broadcast::channel(capacity);
        // Unbounded in type only: each reader has at most one request
        // outstanding, so the queue never holds more than there are readers.
        let (requests, pending) = mpsc::unbounded_channel();
        Feed {
            changes,
            requests,
            pending: Some(pending),
        }
    }

    pub(crate) fn send(&self, rec: &LeaseRecord) {
        // Nobody listening is fine (DNS and the script are optional), and
        // then the clone is not needed.
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(rec.clone());
        }
    }

    /// For the owning task, which can rebuild from the table itself when
    /// it lags.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<LeaseRecord> {
        self.changes.subscribe()
    }

    pub(crate) fn reader(&self) -> FeedReader {
        FeedReader {
            changes: self.changes.subscribe(),
            requests: self.requests.clone(),
            waiting: None,
            missed: 0,
        }
    }

    pub(crate) fn take_requests(&mut self) -> Option<mpsc::UnboundedReceiver<SnapshotRequest>> {
        self.pending.take()
    }
}

/// A reader on another thread: each change in commit order, and a copy of
/// the table instead of the changes it was too slow for.
pub struct FeedReader {
    changes: broadcast::Receiver<LeaseRecord>,
    requests: mpsc::UnboundedSender<SnapshotRequest>,
    /// The copy asked for, not yet received.
    waiting: Option<oneshot::Receiver<Vec<LeaseRecord>>>,
    missed: u64,
}

impl FeedReader {
    /// The next change, or the table after falling behind; `None` once the
    /// database is gone. Cancel-safe (for `select!`): a copy asked for is
    /// kept until it arrives.
    pub async fn next(&mut self) -> Option<FeedItem> {
        loop {
            if let Some(waiting) = &mut self.waiting {
                let copy = waiting.await;
                self.waiting = None;
                return copy.ok().map(FeedItem::Resync);
            }
            match self.changes.recv().await {
                Ok(rec) => return Some(FeedItem::Change(rec)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.missed += n;
                    // From here on the reader sees every change again; the
                    // copy is taken after this point, so it covers the
                    // changes skipped.
                    self.changes = self.changes.resubscribe();
                    let (tx, rx) = oneshot::channel();
                    if self.requests.send(tx).is_err() {
                        return None;
                    }
                    self.waiting = Some(rx);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Changes this reader fell behind on so far (each time made good by a
    /// copy of the table).
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use twinmasq_proto::{ClientKey, Expiry, LeaseState, Stamp};

    fn rec(i: u32) -> LeaseRecord {
        let hw = vec![0x0e, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        LeaseRecord {
            ip: Ipv4Addr::from(0xc612_0000 + i),
            state: LeaseState::Bound,
            client: ClientKey::from_hwaddr(1, &hw),
            htype: 1,
            hwaddr: hw,
            client_id: None,
            hostname: None,
            expires: Expiry::At(1_000_000),
            stamp: Stamp {
                wall_ms: u64::from(i),
                counter: 0,
                node: 1,
            },
        }
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_gets_the_table_then_the_changes_after() {
        let mut feed = Feed::new();
        let mut requests = feed.take_requests().unwrap();
        let mut reader = feed.reader();
        for i in 0..(CAPACITY as u32 + 10) {
            feed.send(&rec(i));
        }
        // The owner answers with its table as it stands.
        let owner = tokio::spawn(async move {
            let req = requests.recv().await.unwrap();
            let _ = req.send((0..CAPACITY as u32 + 10).map(rec).collect());
        });
        match reader.next().await {
            Some(FeedItem::Resync(all)) => assert_eq!(all.len(), CAPACITY + 10),
            other => panic!("expected the table after falling behind, got {other:?}"),
        }
        assert_eq!(reader.missed(), 10);
        owner.await.unwrap();
        feed.send(&rec(99_999));
        match reader.next().await {
            Some(FeedItem::Change(r)) => assert_eq!(r.ip, rec(99_999).ip),
            other => panic!("expected the next change, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_copy_asked_for_survives_a_cancelled_wait() {
        let mut feed = Feed::new();
        let mut requests = feed.take_requests().unwrap();
        let mut reader = feed.reader();
        for i in 0..(CAPACITY as u32 + 1) {
            feed.send(&rec(i));
        }
        // The wait is cancelled (another select! arm won) after the request
        // left and before the copy came.
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), reader.next()).await;
        assert!(cancelled.is_err(), "no copy was sent yet");
        let req = requests.recv().await.unwrap();
        let _ = req.send(vec![rec(7)]);
        match reader.next().await {
            Some(FeedItem::Resync(all)) => assert_eq!(all, vec![rec(7)]),
            other => panic!("expected the copy asked for before, got {other:?}"),
        }
        assert!(requests.try_recv().is_err(), "one fall behind, one request");
    }

    #[tokio::test]
    async fn a_reader_ends_when_the_database_is_gone() {
        let feed = Feed::new();
        let mut reader = feed.reader();
        drop(feed);
        assert!(reader.next().await.is_none());
    }
}
