//! Issue 14, case 8: a node whose lease database stops finishing flushes
//! (a hung or frozen disk) can make neither the partner's changes durable
//! nor its own, so it must stop claiming the link within the link timeout
//! and not link again until its flushes finish; then it links again.

use super::{lease, pair, Pair};
use crate::failover::node::Output;
use crate::share::ServeMode;

/// Which ends' flushes never finish; their tokens are kept here.
#[derive(Default)]
struct Hung {
    primary: bool,
    secondary: bool,
    held: Vec<(bool, u64)>,
}

impl Hung {
    fn settle(&mut self, t: &mut Pair) {
        for _ in 0..10_000 {
            let (from_primary, o) = if let Some(o) = t.p.node.poll() {
                (true, o)
            } else if let Some(o) = t.s.node.poll() {
                (false, o)
            } else {
                return;
            };
            match o {
                Output::Flush(token)
                    if (from_primary && self.primary) || (!from_primary && self.secondary) =>
                {
                    self.held.push((from_primary, token));
                }
                o => t.apply(from_primary, o),
            }
        }
        panic!("did not settle");
    }

    fn tick(&mut self, t: &mut Pair, ms: u64) {
        t.now += ms;
        t.p.node.tick(&mut t.p.db, t.now);
        t.s.node.tick(&mut t.s.db, t.now);
        self.settle(t);
    }

    /// The disk works again: every held flush finishes.
    fn recover(&mut self, t: &mut Pair) {
        self.primary = false;
        self.secondary = false;
        for (primary, token) in std::mem::take(&mut self.held) {
            let end = if primary { &mut t.p } else { &mut t.s };
            end.node.persisted(token, t.now);
        }
        self.settle(t);
    }
}

fn linked(t: &Pair) -> bool {
    t.p.mode == ServeMode::Linked || t.s.mode == ServeMode::Passive
}

/// The primary's disk hangs while the secondary streams a change (a client
/// it served by `secs`): the merge's flush never finishes, so no ack. The
/// link must end within the timeout, stay down (no re-link "in sync" that
/// would make the secondary passive again) while the flush hangs, and come
/// back once it finishes.
#[test]
fn a_hung_disk_on_the_primary_ends_the_link_and_keeps_it_down() {
    let mut t = pair();
    t.tick(1);
    assert!(t.p.mode == ServeMode::Linked && t.s.mode == ServeMode::Passive);
    let mut hung = Hung {
        primary: true,
        ..Hung::default()
    };
    t.s.db.commit(lease(30, 3), t.now).unwrap();
    t.s.node.pump(&mut t.s.db, t.now);
    hung.settle(&mut t);
    assert!(!hung.held.is_empty(), "the primary asked for a flush");
    let timeout = 5_000;
    let mut ended_at = None;
    for step in 1..=80 {
        hung.tick(&mut t, 500);
        let since = step * 500;
        match ended_at {
            None if !linked(&t) => ended_at = Some(since),
            None => assert!(
                since <= timeout + 500,
                "still linked {since} ms after the flush hung"
            ),
            Some(_) => assert!(
                !linked(&t),
                "linked again {since} ms after the flush hung, the disk still hung (primary {:?}, secondary {:?})",
                t.p.mode,
                t.s.mode
            ),
        }
    }
    assert_eq!(t.s.mode, ServeMode::Unlinked, "the secondary serves");
    hung.recover(&mut t);
    for _ in 0..20 {
        hung.tick(&mut t, 500);
    }
    assert_eq!(t.p.mode, ServeMode::Linked, "linked again once it flushes");
    assert_eq!(t.s.mode, ServeMode::Passive);
    assert_eq!(t.p.table(), t.s.table());
}

/// The primary's disk hangs with nothing coming from the secondary: the
/// primary's own replies wait on flushes that never finish, and the
/// secondary would stay passive for ever. The node checks its own flushes
/// too, so the link ends within a heartbeat and a timeout.
#[test]
fn a_hung_disk_with_no_partner_changes_still_ends_the_link() {
    let mut t = pair();
    t.tick(1);
    assert!(linked(&t));
    let mut hung = Hung {
        primary: true,
        ..Hung::default()
    };
    let mut since = 0;
    while linked(&t) {
        hung.tick(&mut t, 500);
        since += 500;
        assert!(since <= 7_000, "still linked {since} ms into the hang");
    }
    for _ in 0..40 {
        hung.tick(&mut t, 500);
        assert!(!linked(&t), "linked again while the disk hangs");
    }
    hung.recover(&mut t);
    for _ in 0..20 {
        hung.tick(&mut t, 500);
    }
    assert!(t.p.mode == ServeMode::Linked && t.s.mode == ServeMode::Passive);
}

/// The secondary's disk hangs: the same from the other end; it does not
/// reconnect while the flush hangs.
#[test]
fn a_hung_disk_on_the_secondary_ends_the_link_and_keeps_it_down() {
    let mut t = pair();
    t.tick(1);
    let mut hung = Hung {
        secondary: true,
        ..Hung::default()
    };
    t.p.db.commit(lease(12, 1), t.now).unwrap();
    t.p.node.pump(&mut t.p.db, t.now);
    hung.settle(&mut t);
    let mut since = 0;
    while linked(&t) {
        hung.tick(&mut t, 500);
        since += 500;
        assert!(since <= 5_500, "still linked {since} ms into the hang");
    }
    for _ in 0..40 {
        hung.tick(&mut t, 500);
        assert!(!linked(&t), "linked again while the disk hangs");
    }
    hung.recover(&mut t);
    for _ in 0..20 {
        hung.tick(&mut t, 500);
    }
    assert!(t.p.mode == ServeMode::Linked && t.s.mode == ServeMode::Passive);
    assert_eq!(t.p.table(), t.s.table());
}
