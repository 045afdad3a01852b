//! The merge rule of the failover pair, as pure functions: which of two
//! records for one address stands, what counts as a conflict, and which
//! leases a merge leaves superseded. The lease database and the failover
//! link both decide through these, so both nodes reach the same table
//! whatever order records arrive in.
//!
//! # Lease ends and the clocks (issue 14, case 3)
//!
//! An end (RELEASE, DECLINE, expiry, or the release of a client's older
//! lease) is ordered by the binding it ends, not by when it was decided:
//! it keeps that binding's stamp ([`end_of`], stored by `LeaseDb::settle`),
//! and at one stamp the ended form stands above the bound one
//! ([`finality`]). So an end beats the binding it ends and every binding
//! stamped before it, and loses to every binding stamped after it. A node
//! that had seen a binding stamps its own later grant of that address above
//! it (the clock observes every stamp it merges), so such a grant stands
//! over an end of that binding on both nodes, whichever node decided the
//! end and whatever the two clocks read within `failover-max-skew`. The
//! order stays the one total order of [`compare`], so merging stays
//! commutative, associative and idempotent.
//!
//! What the order cannot settle: a grant by a node that had not seen the
//! binding being ended. Apart, node A renews binding `b` (never
//! replicated); the client releases `b` on A, then gets the same address
//! again from node B, whose clock is behind by more than the time between
//! A's renewal and B's grant. B's grant then carries the smaller stamp and
//! A's end of `b` stands over it in the order. A per-client lease
//! generation would settle it, but DHCP requests do not carry one, and an
//! order of ends against grants that looks at the skew is not transitive.
//! So the order stays as it is and the nodes settle such a pair outside
//! it ([`end_in_doubt`]): whichever node meets the end and the grant,
//! both for one client and within twice the skew of each other, commits
//! the grant again with a fresh stamp, which stands over both on both
//! nodes; the node that receives the end names it lost in its ack, so
//! its sender does not count the end as held and reuse the address
//! before the grant reaches it. A fresh stamp could beat a later renewal
//! of the same client by the other node only if that renewal were
//! concurrent with the re-commit, and while linked that renewal's reply
//! waits for the partner's ack, which names it lost.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState};

/// Orders two records for one address: the greater stamp is newer. Stamps
/// carry the node id, so two nodes never issue equal ones; should equal
/// stamps ever meet with different contents (a restored backup, a bug),
/// the contents decide, so the order stays total and merging commutative.
pub fn compare(a: &LeaseRecord, b: &LeaseRecord) -> Ordering {
    a.stamp
        .cmp(&b.stamp)
        .then_with(|| content_key(a).cmp(&content_key(b)))
}

fn content_key(r: &LeaseRecord) -> impl Ord + '_ {
    (
        finality(r.state),
        &r.client.0,
        r.htype,
        &r.hwaddr,
        &r.client_id,
        &r.hostname,
        match r.expires {
            twinmasq_proto::Expiry::At(t) => (0u8, t),
            twinmasq_proto::Expiry::Never => (1u8, 0),
        },
    )
}

/// At one stamp (an expiry keeps the stamp of the lease it ends), the
/// later stage of a lease's life stands.
fn finality(s: LeaseState) -> u8 {
    use LeaseState::*;
    match s {
        Bound => 0,
        Declined => 1,
        Released => 2,
        Expired => 3,
    }
}

/// The end of `binding` as `state` (released, declined, expired) until
/// `until_secs`: its stamp kept, so that the end is ordered by the binding
/// it ends (see the module's notes), and its name dropped. A release keeps
/// the binding's expiry if that is later ([`ended_expiry`]).
pub fn end_of(binding: &LeaseRecord, state: LeaseState, until_secs: u64) -> LeaseRecord {
    let expires = match state {
        LeaseState::Released => ended_expiry(binding.expires, until_secs),
        _ => Expiry::At(until_secs),
    };
    LeaseRecord {
        state,
        expires,
        hostname: None,
        ..binding.clone()
    }
}

/// Does `incoming` replace `current`? Only if it is strictly newer, so a
/// record merged twice changes nothing the second time.
pub fn replaces(incoming: &LeaseRecord, current: Option<&LeaseRecord>) -> bool {
    current.is_none_or(|cur| compare(incoming, cur) == Ordering::Greater)
}

/// Of two records for one address, the one that stands.
pub fn merge<'a>(a: &'a LeaseRecord, b: &'a LeaseRecord) -> &'a LeaseRecord {
    if compare(b, a) == Ordering::Greater {
        b
    } else {
        a
    }
}

/// Two records for one address that each give it, unexpired, to a
/// different client: both nodes acknowledged the address to someone.
pub fn is_conflict(a: &LeaseRecord, b: &LeaseRecord, now_secs: u64) -> bool {
    a.ip == b.ip && a.client != b.client && a.is_active(now_secs) && b.is_active(now_secs)
}

/// A whole table, one record per address.
pub type Table = BTreeMap<Ipv4Addr, LeaseRecord>;

/// Merges two tables address by address. Commutative, associative and
/// idempotent, because [`merge`] picks by a total order.
pub fn merge_tables(a: &Table, b: &Table) -> Table {
    let mut out = a.clone();
    for (ip, rb) in b {
        match out.get(ip) {
            Some(ra) if !replaces(rb, Some(ra)) => {}
            _ => {
                out.insert(*ip, rb.clone());
            }
        }
    }
    out
}

/// One client, one lease: among `leases` (the bound records naming
/// `client`), those a merge should release, as the newest stands. Only
/// where the order is certain: two nodes that granted apart, each unaware
/// of the other's lease, stamp by clocks up to `max_skew_ms` apart, and a
/// stamp may run up to that far ahead of its node's clock (it observed a
/// partner's), so a stamp less than twice the skew above another may still
/// be the earlier grant, and the client may hold the one with the smaller
/// stamp. Such a pair stays bound: an address kept until the client's next
/// request (whose node then ends the other, knowing both) or the lease's
/// end, rather than an address taken from the client holding it.
pub fn superseded<'a>(
    client: &ClientKey,
    leases: impl IntoIterator<Item = &'a LeaseRecord>,
    now_secs: u64,
    max_skew_ms: u64,
) -> Vec<&'a LeaseRecord> {
    let mut bound: Vec<&LeaseRecord> = leases
        .into_iter()
        .filter(|r| &r.client == client && r.is_active(now_secs))
        .collect();
    bound.sort_by(|a, b| compare(a, b));
    let Some(newest) = bound.pop() else {
        return bound;
    };
    let margin = max_skew_ms.saturating_mul(2);
    bound.retain(|r| newest.stamp.wall_ms.saturating_sub(r.stamp.wall_ms) > margin);
    bound
}

/// Do an end and a grant of one address to one client, each decided by
/// a different node, stand in an order the stamps cannot tell? The end
/// stands over the grant by the merge order, but keeps the stamp of the
/// binding it ends, which the grant's node never saw (had it, its grant
/// would be stamped above it); two clocks up to `max_skew_ms` apart, and
/// a stamp up to that far ahead of its own clock, put a binding up to
/// twice the skew above a grant made after it. So the grant may be the
/// later event (the client released the other node's binding, then took
/// this grant) and its client may hold it. Whichever node meets the pair
/// commits the grant again (`failover::node`), so it stands on both;
/// should the end in truth have come later, the address stays with a
/// client that released it until the grant's expiry: a lease kept, never
/// one given twice (issue 14, case 3).
pub fn end_in_doubt(
    grant: &LeaseRecord,
    end: &LeaseRecord,
    now_secs: u64,
    max_skew_ms: u64,
) -> bool {
    grant.state == LeaseState::Bound
        && grant.is_active(now_secs)
        && end.state != LeaseState::Bound
        && end.ip == grant.ip
        && end.client == grant.client
        && end.stamp.node != grant.stamp.node
        && compare(end, grant) == Ordering::Greater
        && end.stamp.wall_ms.saturating_sub(grant.stamp.wall_ms) <= max_skew_ms.saturating_mul(2)
}

/// Two bound records of one client for one address, from different
/// renewals: the one that stands by the order, with the later of the two
/// expiries, when the one that loses would have run longer. A renewal
/// never shortens a lease (`dhcp::engine`'s `held_until`), so a shorter
/// winner is a renewal on one node that never saw the other's: the client
/// may hold either, and the address is its until the later end. `None`
/// when the winner already runs as long (or the loser has run out).
pub fn outlived(a: &LeaseRecord, b: &LeaseRecord, now_secs: u64) -> Option<LeaseRecord> {
    if a.ip != b.ip
        || a.client != b.client
        || a.state != LeaseState::Bound
        || b.state != LeaseState::Bound
    {
        return None;
    }
    let (winner, loser) = if compare(b, a) == Ordering::Greater {
        (b, a)
    } else {
        (a, b)
    };
    let longer = match (winner.expires, loser.expires) {
        (Expiry::Never, _) => false,
        (Expiry::At(_), Expiry::Never) => true,
        (Expiry::At(w), Expiry::At(l)) => l > w,
    };
    (longer && loser.is_active(now_secs)).then(|| LeaseRecord {
        expires: loser.expires,
        ..winner.clone()
    })
}

/// The expiry a lease keeps when it ends before its time (a RELEASE, or
/// the client taking another address): the later of the end and the
/// binding's own expiry. Not in sync, the partner may still extend that
/// binding, up to an MCLT past the expiry it knows (`dhcp::engine`'s `partner_share_limit`),
/// and offer it back to the client (issue 14, case 7); the owner, which
/// reuses an ended address only an MCLT after its end (its `recent_until`),
/// must count from the binding's expiry, not from the release. Only
/// `Bound` and `Declined` records occupy an address, so a released record
/// with a later expiry is no lease anywhere (lease file, DNS, counts).
pub fn ended_expiry(binding: Expiry, ended_secs: u64) -> Expiry {
    match binding {
        Expiry::At(t) => Expiry::At(t.max(ended_secs)),
        Expiry::Never => Expiry::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use twinmasq_proto::{Expiry, LeaseState, Stamp};

    fn rec(ip: u8, client: u8, wall: u64, node: u32, state: LeaseState) -> LeaseRecord {
        let hw = vec![2, 0, 0, 0, 0, client];
        LeaseRecord {
            ip: Ipv4Addr::new(198, 18, 0, ip),
            state,
            client: ClientKey::from_hwaddr(1, &hw),
            htype: 1,
            hwaddr: hw,
            client_id: None,
            hostname: None,
            expires: Expiry::At(1_000 + wall),
            stamp: Stamp {
                wall_ms: wall,
                counter: 0,
                node,
            },
        }
    }

    #[test]
    fn an_end_is_in_doubt_only_against_another_nodes_grant_within_twice_the_skew() {
        let grant = rec(24, 9, 100_000, 2, LeaseState::Bound);
        let end = |wall, node, client| rec(24, client, wall, node, LeaseState::Released);
        let skew = 10_000;
        // Within twice the skew, by the other node, for the same client.
        assert!(end_in_doubt(&grant, &end(120_000, 1, 9), 0, skew));
        // Beyond it: the end is certainly later.
        assert!(!end_in_doubt(&grant, &end(120_001, 1, 9), 0, skew));
        // An end of the grant itself, or of a lease of the grant's node.
        assert!(!end_in_doubt(&grant, &end(100_000, 2, 9), 0, skew));
        assert!(!end_in_doubt(&grant, &end(110_000, 2, 9), 0, skew));
        // Another client: a conflict, settled by the share owner.
        assert!(!end_in_doubt(&grant, &end(110_000, 1, 8), 0, skew));
        // An end below the grant does not stand anyway.
        assert!(!end_in_doubt(&grant, &end(90_000, 1, 9), 0, skew));
        // A grant already run out is no lease to keep.
        assert!(!end_in_doubt(&grant, &end(110_000, 1, 9), 200_000, skew));
    }

    #[test]
    fn one_clients_lease_renewed_on_both_nodes_lasts_until_the_later_end() {
        let short = rec(24, 9, 200, 1, LeaseState::Bound);
        let mut long = rec(24, 9, 100, 2, LeaseState::Bound);
        long.expires = Expiry::At(5_000);
        let kept = outlived(&short, &long, 0).expect("the winner runs shorter");
        assert_eq!((kept.stamp, kept.expires), (short.stamp, Expiry::At(5_000)));
        // Either order.
        assert_eq!(outlived(&long, &short, 0), Some(kept));
        // The winner runs as long, another client, an end, or the loser
        // already over: nothing to do.
        assert_eq!(
            outlived(&long, &rec(24, 9, 50, 1, LeaseState::Bound), 0),
            None
        );
        assert_eq!(
            outlived(&short, &rec(24, 8, 100, 2, LeaseState::Bound), 0),
            None
        );
        assert_eq!(
            outlived(&rec(24, 9, 300, 1, LeaseState::Released), &long, 0),
            None
        );
        assert_eq!(outlived(&short, &long, 6_000), None);
    }

    fn state(n: u8) -> LeaseState {
        match n % 4 {
            0 => LeaseState::Bound,
            1 => LeaseState::Released,
            2 => LeaseState::Expired,
            _ => LeaseState::Declined,
        }
    }

    /// Tables over a few addresses, clients, stamps and two node ids, so
    /// the same address often carries different records on each side,
    /// sometimes with the same stamp (the tie-break case).
    fn table() -> impl Strategy<Value = Table> {
        proptest::collection::vec((0u8..6, 0u8..4, 0u64..5, 1u32..3, any::<u8>()), 0..12).prop_map(
            |v| {
                v.into_iter()
                    .map(|(ip, c, w, n, s)| {
                        let r = rec(ip, c, w, n, state(s));
                        (r.ip, r)
                    })
                    .collect()
            },
        )
    }

    fn put(t: &mut Table, r: LeaseRecord) {
        let one: Table = [(r.ip, r)].into();
        *t = merge_tables(t, &one);
    }

    /// Bindings and ends of some of them (each end made by [`end_of`], so
    /// at its binding's stamp), scattered over three nodes' tables as a
    /// partition leaves them; each binding with its end, for the checks.
    #[allow(clippy::type_complexity)]
    fn history() -> impl Strategy<Value = ([Table; 3], Vec<(LeaseRecord, Option<LeaseRecord>)>)> {
        proptest::collection::vec(
            (
                0u8..4,
                0u8..3,
                0u64..6,
                1u32..3,
                proptest::option::of(1u8..4),
                0usize..3,
                0usize..3,
            ),
            0..16,
        )
        .prop_map(|v| {
            let mut tables: [Table; 3] = Default::default();
            let mut all = Vec::new();
            for (ip, c, w, n, end, at_bound, at_end) in v {
                let b = rec(ip, c, w, n, LeaseState::Bound);
                put(&mut tables[at_bound], b.clone());
                let ended = end.map(|e| end_of(&b, state(e), 1_000 + w));
                if let Some(ended) = &ended {
                    put(&mut tables[at_end], ended.clone());
                }
                all.push((b, ended));
            }
            (tables, all)
        })
    }

    proptest! {
        #[test]
        fn merge_with_ends_is_commutative_associative_idempotent(h in history()) {
            let ([a, b, c], _) = h;
            prop_assert_eq!(merge_tables(&a, &b), merge_tables(&b, &a));
            prop_assert_eq!(
                merge_tables(&merge_tables(&a, &b), &c),
                merge_tables(&a, &merge_tables(&b, &c))
            );
            let ab = merge_tables(&a, &b);
            prop_assert_eq!(merge_tables(&ab, &b), ab.clone());
            prop_assert_eq!(merge_tables(&ab, &ab), ab);
        }

        /// Whichever node holds what, and in whatever order the tables
        /// meet: an end stands over the binding it ends, and never over a
        /// binding stamped after that one.
        #[test]
        fn an_end_is_ordered_by_the_binding_it_ends(h in history()) {
            let ([a, b, c], pairs) = h;
            let merged = merge_tables(&merge_tables(&c, &a), &b);
            for (bound, end) in &pairs {
                let Some(end) = end else { continue };
                prop_assert_eq!(merge(bound, end), end);
                prop_assert_eq!(merge(end, bound), end);
                if &merged[&end.ip] != end {
                    continue;
                }
                for (later, _) in pairs.iter().filter(|(g, _)| g.ip == end.ip) {
                    prop_assert!(
                        later.stamp <= bound.stamp,
                        "the end of {:?} undid the later {:?}", bound, later
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in table(), b in table()) {
            prop_assert_eq!(merge_tables(&a, &b), merge_tables(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in table(), b in table(), c in table()) {
            prop_assert_eq!(
                merge_tables(&merge_tables(&a, &b), &c),
                merge_tables(&a, &merge_tables(&b, &c))
            );
        }

        #[test]
        fn merge_is_idempotent(a in table(), b in table()) {
            let ab = merge_tables(&a, &b);
            prop_assert_eq!(merge_tables(&ab, &b), ab.clone());
            prop_assert_eq!(merge_tables(&a, &a), a);
        }
    }

    #[test]
    fn newer_stamp_wins_and_node_breaks_ties() {
        let old = rec(1, 1, 5, 2, LeaseState::Bound);
        let new = rec(1, 2, 6, 1, LeaseState::Bound);
        assert_eq!(merge(&old, &new), &new);
        assert_eq!(merge(&new, &old), &new);
        let a = rec(1, 1, 5, 1, LeaseState::Bound);
        let b = rec(1, 2, 5, 2, LeaseState::Bound);
        assert_eq!(merge(&a, &b), &b);
        assert!(!replaces(&a, Some(&a)));
        assert!(replaces(&a, None));
    }

    #[test]
    fn conflicts_need_two_active_clients() {
        let a = rec(1, 1, 5, 1, LeaseState::Bound);
        let b = rec(1, 2, 6, 2, LeaseState::Bound);
        assert!(is_conflict(&a, &b, 1_000));
        assert!(!is_conflict(&a, &b, 1_005), "a has expired by then");
        let released = rec(1, 2, 6, 2, LeaseState::Released);
        assert!(!is_conflict(&a, &released, 1_000));
        assert!(!is_conflict(&a, &a, 1_000));
    }

    #[test]
    fn only_the_newest_lease_of_a_client_stands() {
        let older = rec(1, 7, 5, 1, LeaseState::Bound);
        let newer = rec(2, 7, 9, 2, LeaseState::Bound);
        let other = rec(3, 8, 10, 2, LeaseState::Bound);
        let all = [older.clone(), newer, other];
        let gone = superseded(&older.client, &all, 1_000, 1);
        assert_eq!(gone, vec![&older]);
    }

    /// Two grants made apart, 5 ms apart by their stamps: with clocks that
    /// may be 1 s apart either may be the later, so neither is released;
    /// only a lead of more than twice the skew tells.
    #[test]
    fn a_lead_within_the_skew_supersedes_nothing() {
        let older = rec(1, 7, 5, 1, LeaseState::Bound);
        let newer = rec(2, 7, 10, 2, LeaseState::Bound);
        let all = [older.clone(), newer.clone()];
        assert!(superseded(&older.client, &all, 1_000, 1_000).is_empty());
        assert!(superseded(&older.client, &all, 1_000, 3).is_empty());
        assert_eq!(superseded(&older.client, &all, 1_000, 2), vec![&older]);
    }
}
