//! Which inbound link connections the primary lets in while they have not
//! proved the key, sans-I/O.
//!
//! Anyone who can reach the failover port can open connections; only the
//! partner can finish the handshake. So connections still in the handshake
//! are bounded per source address and in all, and when all places are
//! taken the oldest such connection makes room for the new one rather
//! than the new one being refused: the real partner, whose handshake takes
//! one round trip, always gets in. Connections that proved the key are not
//! counted. The node closes a connection that has not proved the key
//! within a short deadline, so a place is never held for long.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::node::ConnId;

/// Connections from one source address that may be in the handshake at
/// once: the partner needs one (two while a stale one is being replaced).
pub const PER_SOURCE: usize = 2;
/// Connections in the handshake at once, from all sources together.
pub const MAX_WAITING: usize = 16;

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it in, after closing `evict` (the connection it displaces, and
    /// where that one came from) if there is one.
    Admit { evict: Option<(ConnId, IpAddr)> },
    /// Close it at once: its source has [`Admission::per_source`]
    /// connections in the handshake already.
    Refuse,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    conn: ConnId,
    source: IpAddr,
    /// Its hello verified under the key (possibly a replayed one): such a
    /// connection is displaced only when no other is left.
    hello: bool,
}

/// The connections in the handshake, oldest first.
#[derive(Debug)]
pub struct Admission {
    per_source: usize,
    max_waiting: usize,
    waiting: VecDeque<Waiting>,
}

/// The unit one source is counted by: an IPv4 address, or an IPv6 /64 (a
/// single host commonly holds a whole /64).
fn source_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(PER_SOURCE, MAX_WAITING)
    }
}

impl Admission {
    /// Both limits at least 1.
    pub fn new(per_source: usize, max_waiting: usize) -> Admission {
        Admission {
            per_source: per_source.max(1),
            max_waiting: max_waiting.max(1),
            waiting: VecDeque::new(),
        }
    }

    pub fn per_source(&self) -> usize {
        self.per_source
    }

    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Connections in the handshake now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A new connection `conn` from `peer`. When admitted it counts as in
    /// the handshake until [`authenticated`](Self::authenticated) or
    /// [`closed`](Self::closed).
    pub fn admit(&mut self, conn: ConnId, peer: IpAddr) -> Verdict {
        let source = source_of(peer);
        let from_source = self.waiting.iter().filter(|w| w.source == source).count();
        if from_source >= self.per_source {
            return Verdict::Refuse;
        }
        let evict = if self.waiting.len() >= self.max_waiting {
            // The oldest that has shown nothing verified, else the oldest.
            let i = self.waiting.iter().position(|w| !w.hello).unwrap_or(0);
            self.waiting.remove(i).map(|w| (w.conn, w.source))
        } else {
            None
        };
        self.waiting.push_back(Waiting {
            conn,
            source,
            hello: false,
        });
        Verdict::Admit { evict }
    }

    /// `conn`'s hello verified under the key: it is displaced last.
    pub fn hello_verified(&mut self, conn: ConnId) {
        if let Some(w) = self.waiting.iter_mut().find(|w| w.conn == conn) {
            w.hello = true;
        }
    }

    /// `conn` proved the key: it no longer counts.
    pub fn authenticated(&mut self, conn: ConnId) {
        self.forget(conn);
    }

    pub fn closed(&mut self, conn: ConnId) {
        self.forget(conn);
    }

    fn forget(&mut self, conn: ConnId) {
        self.waiting.retain(|w| w.conn != conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admitted(v: Verdict) -> Option<(ConnId, IpAddr)> {
        match v {
            Verdict::Admit { evict } => evict,
            Verdict::Refuse => panic!("refused"),
        }
    }

    #[test]
    fn one_source_gets_at_most_its_share_and_others_still_get_in() {
        let mut a = Admission::new(2, 16);
        let attacker = ip("198.18.0.66");
        assert_eq!(admitted(a.admit(1, attacker)), None);
        assert_eq!(admitted(a.admit(2, attacker)), None);
        for conn in 3..100 {
            assert_eq!(a.admit(conn, attacker), Verdict::Refuse);
        }
        assert_eq!(a.waiting(), 2);
        // The partner, from elsewhere, is let in without displacing anyone.
        assert_eq!(admitted(a.admit(100, ip("198.19.0.2"))), None);
        // Once one of the attacker's closes, it may open one again.
        a.closed(1);
        assert_eq!(admitted(a.admit(101, attacker)), None);
        assert_eq!(a.admit(102, attacker), Verdict::Refuse);
    }

    #[test]
    fn when_full_the_oldest_makes_room_for_the_newest() {
        let mut a = Admission::new(2, 4);
        for (conn, src) in [
            (1, "10.0.0.1"),
            (2, "10.0.0.2"),
            (3, "10.0.0.3"),
            (4, "10.0.0.4"),
        ] {
            assert_eq!(admitted(a.admit(conn, ip(src))), None);
        }
        assert_eq!(
            admitted(a.admit(5, ip("198.19.0.2"))),
            Some((1, ip("10.0.0.1")))
        );
        assert_eq!(
            admitted(a.admit(6, ip("10.0.0.5"))),
            Some((2, ip("10.0.0.2")))
        );
        assert_eq!(a.waiting(), 4);
    }

    #[test]
    fn a_verified_hello_is_displaced_last() {
        let mut a = Admission::new(2, 3);
        for (conn, src) in [(1, "10.0.0.1"), (2, "10.0.0.2"), (3, "10.0.0.3")] {
            admitted(a.admit(conn, ip(src)));
        }
        a.hello_verified(1);
        assert_eq!(admitted(a.admit(4, ip("10.0.0.4"))).map(|e| e.0), Some(2));
        assert_eq!(admitted(a.admit(5, ip("10.0.0.5"))).map(|e| e.0), Some(3));
        assert_eq!(admitted(a.admit(6, ip("10.0.0.6"))).map(|e| e.0), Some(4));
        a.hello_verified(5);
        a.hello_verified(6);
        // Every one has a verified hello: the oldest goes.
        assert_eq!(admitted(a.admit(7, ip("10.0.0.7"))).map(|e| e.0), Some(1));
    }

    #[test]
    fn authenticated_connections_do_not_count_and_are_never_displaced() {
        let mut a = Admission::new(2, 2);
        let partner = ip("198.19.0.2");
        admitted(a.admit(1, partner));
        a.authenticated(1);
        assert_eq!(a.waiting(), 0);
        // The partner's address may open two more, and the flood that fills
        // every place never names connection 1.
        admitted(a.admit(2, partner));
        admitted(a.admit(3, partner));
        for conn in 4..50 {
            let src = IpAddr::from([10, 0, 0, conn as u8]);
            let evicted = admitted(a.admit(conn, src));
            assert_ne!(evicted.map(|e| e.0), Some(1));
        }
        assert_eq!(a.waiting(), 2);
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_v4_as_v4() {
        let mut a = Admission::new(1, 16);
        admitted(a.admit(1, ip("2001:db8:1:2::1")));
        assert_eq!(a.admit(2, ip("2001:db8:1:2:ffff::9")), Verdict::Refuse);
        admitted(a.admit(3, ip("2001:db8:1:3::1")));
        admitted(a.admit(4, ip("198.18.0.7")));
        assert_eq!(a.admit(5, ip("::ffff:198.18.0.7")), Verdict::Refuse);
    }

    #[test]
    fn closing_what_is_unknown_is_harmless() {
        let mut a = Admission::new(2, 2);
        a.closed(42);
        a.authenticated(43);
        a.hello_verified(44);
        assert_eq!(a.waiting(), 0);
    }
}
