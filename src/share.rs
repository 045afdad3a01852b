//! Failover address shares: which node of a pair may hand out which
//! address of a range, and what the engine may do in each failover state.
//! It sits below both the DHCP engine and the failover node, so either can
//! speak the pair contract without importing the other.
//!
//! An address's owner is named by the link's `Role`: the node configured
//! primary owns the primary's share, so one type serves both questions.

use std::net::Ipv4Addr;
use std::time::Duration;

use twinmasq_proto::link::Role;

/// What the DHCP engine may do right now; the failover node sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeMode {
    /// No failover configured: the whole range, configured lease times.
    Standalone,
    /// Primary in sync with its secondary (every change is acked by the
    /// partner before the reply leaves): own share first, then the
    /// partner's; configured lease times.
    Linked,
    /// Secondary in sync: DHCP is the primary's, except for clients whose
    /// `secs` shows the primary leaves them unanswered; those are served
    /// from the own share with configured lease times.
    Passive,
    /// Not in sync with the partner: new addresses from the own share
    /// only, leases no longer than the MCLT; a renewing client whose
    /// own-share address nobody else holds is acknowledged, not NAKed; in
    /// the partner's share only a live lease of the client is, and any
    /// other request gets no answer. A DISCOVER is offered the client's
    /// live lease in the own share only (the partner may have seen the
    /// other one released and reused it).
    Unlinked,
    /// As `Unlinked`, and from `partner_share_from_ms` (unix ms) on also
    /// the partner's share, for addresses whose lease ended more than an
    /// MCLT ago.
    PartnerDown { partner_share_from_ms: u64 },
    /// The partner refused the link (or this node refused it) because the
    /// two configurations differ in what both must compute alike (ranges,
    /// split, MCLT): the shares each computes may overlap, so no new
    /// address is handed out; a client's own unexpired lease is still
    /// renewed, with leases no longer than the MCLT.
    ConfigMismatch,
    /// The node has just started (issue 14, case 1; ISC's RECOVER): what
    /// the partner handed out while this process was not running, or what
    /// a replaced or restored database lacks, is not known yet. As
    /// `ConfigMismatch` (nothing new; a client's own unexpired lease is
    /// renewed, MCLT-bounded) until a sync completes, the operator declares
    /// the partner down, or `serve_from_ms` (unix ms, an MCLT after the
    /// start) passes with no partner to sync with; then as `Unlinked`.
    Recovering { serve_from_ms: u64 },
}

/// The failover settings the engine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharePolicy {
    pub own: Role,
    /// Percent of each range's addresses owned by the secondary.
    pub split_percent: u8,
    pub mclt: Duration,
    pub unanswered_secs: u16,
}

/// How many addresses of a range of `len` belong to the secondary: the
/// floor of `split_percent` percent (above 100 counts as 100), so both
/// nodes compute the same split from the same configuration.
pub fn secondary_len(len: u32, split_percent: u8) -> u32 {
    let pct = u64::from(split_percent.min(100));
    // u64: len * 100 overflows u32 for ranges above ~43 M addresses.
    (u64::from(len) * pct / 100) as u32
}

/// Which node owns `ip` of the range `range_start..=range_end`. The range
/// is split contiguously: the first `n - floor(n * split / 100)` addresses
/// are the primary's, the rest the secondary's. An address below the range
/// counts as the primary's, one above it as the secondary's (callers only
/// ask about addresses of the range).
pub fn owner_of(
    range_start: Ipv4Addr,
    range_end: Ipv4Addr,
    ip: Ipv4Addr,
    split_percent: u8,
) -> Role {
    let (s, e, a) = (u32::from(range_start), u32::from(range_end), u32::from(ip));
    if a < s {
        return Role::Primary;
    }
    // A reversed range is empty: nothing in it, all "above".
    let len = match e.checked_sub(s) {
        Some(d) => d.saturating_add(1),
        None => return Role::Secondary,
    };
    let primary_len = len - secondary_len(len, split_percent);
    if a - s < primary_len {
        Role::Primary
    } else {
        Role::Secondary
    }
}

/// Which addresses of the partner's share new allocations may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerShare {
    /// None: the partner may be handing them out right now.
    No,
    /// Any free one, once the own share is exhausted (the partner is in
    /// sync, or there is no partner).
    ///
    /// Linked, the primary does take from the secondary's share while the
    /// secondary may be serving `secs` clients from it: offers are not
    /// replicated, so both may commit one address. That is safe because
    /// no reply leaves before the owner agreed to it. The primary's reply
    /// waits for the secondary's ack of its record, and that ack names
    /// the record lost if the secondary holds its own record for the
    /// address (a conflict always goes to the share owner's record, on
    /// both nodes); the primary then cancels the reply. If the ack does
    /// not name it, the secondary's table gave the address to the
    /// primary's client before the secondary committed anything there, so
    /// its engine hands it to no one else. The secondary's own reply waits
    /// for the primary's ack the same way, and its record always stands.
    /// Of two commits of one address, at most one reply leaves.
    Any,
    /// Once the own share is exhausted, only those with no lease or whose
    /// lease ended at least `mclt_ms` ago: the partner may have extended a
    /// lease we never heard of, but never by more than the MCLT.
    Aged { mclt_ms: u64 },
}

/// What a mode allows for one request; computed per request because
/// `Passive` depends on the request and `PartnerDown` on the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub own: Role,
    pub partner: PartnerShare,
    /// Upper bound of any lease granted, in seconds.
    pub cap_secs: Option<u32>,
    /// A renewing, rebinding or rebooting client whose own-share address
    /// no other client holds is acknowledged even when we do not know the
    /// lease: the partner may have granted it while we were apart. (The
    /// partner's share, while `partner` is `No`, is the partner's to
    /// answer for.)
    pub ack_unclaimed: bool,
    /// Not in sync: an own-share address whose lease ended less than this
    /// many ms (an MCLT) ago is not handed to another client, because the
    /// partner may have extended that lease by up to an MCLT meanwhile.
    pub own_aged: Option<u64>,
    /// New allocations allowed at all. When false, only a client's own
    /// unexpired binding is given back to it (see `ConfigMismatch`).
    pub allocate: bool,
}

impl Rules {
    /// Whole-range service with configured lease times: no partner to
    /// defer to.
    pub const STANDALONE: Rules = Rules {
        own: Role::Primary,
        partner: PartnerShare::Any,
        cap_secs: None,
        ack_unclaimed: false,
        own_aged: None,
        allocate: true,
    };

    /// The rules for a request with `secs` in it, arriving at `now_ms`;
    /// `None` means stay silent (passive secondary, primary answering).
    /// Without a policy there is no partner and every mode serves as
    /// `Standalone`.
    pub fn for_request(
        mode: ServeMode,
        policy: Option<&SharePolicy>,
        secs: u16,
        now_ms: u64,
    ) -> Option<Rules> {
        let Some(p) = policy else {
            return Some(Rules::STANDALONE);
        };
        let mclt_secs = u32::try_from(p.mclt.as_secs()).unwrap_or(u32::MAX).max(1);
        let mclt_ms = u64::try_from(p.mclt.as_millis()).unwrap_or(u64::MAX);
        let unlinked = Rules {
            own: p.own,
            partner: PartnerShare::No,
            cap_secs: Some(mclt_secs),
            ack_unclaimed: true,
            own_aged: Some(mclt_ms),
            allocate: true,
        };
        Some(match mode {
            ServeMode::Standalone | ServeMode::Linked => Rules {
                own: p.own,
                ..Rules::STANDALONE
            },
            ServeMode::Passive if secs >= p.unanswered_secs => Rules {
                cap_secs: None,
                own_aged: None,
                ..unlinked
            },
            ServeMode::Passive => return None,
            ServeMode::Unlinked => unlinked,
            ServeMode::PartnerDown {
                partner_share_from_ms,
            } if now_ms >= partner_share_from_ms => Rules {
                partner: PartnerShare::Aged { mclt_ms },
                ..unlinked
            },
            ServeMode::PartnerDown { .. } => unlinked,
            ServeMode::Recovering { serve_from_ms } if now_ms >= serve_from_ms => unlinked,
            // An address this node does not know may be one the partner
            // gave out under its other ranges, or while this node was
            // away: no ack for it either.
            ServeMode::ConfigMismatch | ServeMode::Recovering { .. } => Rules {
                ack_unclaimed: false,
                allocate: false,
                ..unlinked
            },
        })
    }

    /// The lease to grant given the configured `secs` (`None` = infinite),
    /// and whether the cap shortened it.
    pub fn cap(&self, secs: Option<u32>) -> (Option<u32>, bool) {
        match (self.cap_secs, secs) {
            (Some(cap), None) => (Some(cap), true),
            (Some(cap), Some(s)) if s > cap => (Some(cap), true),
            (_, s) => (s, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xC612_0000 + n)
    }

    fn shares(len: u32, split: u8) -> (u32, u32) {
        let (s, e) = (ip(10), ip(10 + len - 1));
        let p = (0..len)
            .filter(|&i| owner_of(s, e, ip(10 + i), split) == Role::Primary)
            .count() as u32;
        (p, len - p)
    }

    #[test]
    fn split_arithmetic() {
        assert_eq!(shares(10, 50), (5, 5));
        assert_eq!(shares(11, 50), (6, 5), "the odd address is the primary's");
        assert_eq!(shares(7, 30), (5, 2), "floor(2.1) = 2 to the secondary");
        assert_eq!(shares(3, 99), (1, 2));
        assert_eq!(shares(1, 50), (1, 0));
        assert_eq!(shares(10, 0), (10, 0));
        assert_eq!(shares(10, 100), (0, 10));
        assert_eq!(shares(10, 250), (0, 10), "above 100 counts as 100");
        // Contiguous: the primary's first, then the secondary's.
        let (s, e) = (ip(10), ip(20));
        assert_eq!(owner_of(s, e, ip(15), 50), Role::Primary);
        assert_eq!(owner_of(s, e, ip(16), 50), Role::Secondary);
        assert_eq!(owner_of(s, e, ip(9), 50), Role::Primary);
        assert_eq!(owner_of(s, e, ip(21), 50), Role::Secondary);
        // The whole address space does not overflow.
        let all = (Ipv4Addr::new(0, 0, 0, 0), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(
            owner_of(all.0, all.1, Ipv4Addr::new(127, 255, 255, 255), 50),
            Role::Primary
        );
        assert_eq!(
            owner_of(all.0, all.1, Ipv4Addr::new(128, 0, 0, 0), 50),
            Role::Secondary
        );
        assert_eq!(secondary_len(u32::MAX, 100), u32::MAX);
    }

    fn policy(own: Role) -> SharePolicy {
        SharePolicy {
            own,
            split_percent: 50,
            mclt: Duration::from_secs(600),
            unanswered_secs: 10,
        }
    }

    #[test]
    fn rules_per_mode() {
        let p = policy(Role::Secondary);
        let r = |mode, secs, now| Rules::for_request(mode, Some(&p), secs, now);
        assert_eq!(
            Rules::for_request(ServeMode::Passive, None, 0, 0),
            Some(Rules::STANDALONE)
        );
        let linked = r(ServeMode::Linked, 0, 0).unwrap();
        assert_eq!(
            (linked.own, linked.partner, linked.cap_secs),
            (Role::Secondary, PartnerShare::Any, None)
        );
        assert_eq!(r(ServeMode::Passive, 9, 0), None);
        let passive = r(ServeMode::Passive, 10, 0).unwrap();
        assert_eq!(
            (passive.partner, passive.cap_secs),
            (PartnerShare::No, None)
        );
        let unlinked = r(ServeMode::Unlinked, 0, 0).unwrap();
        assert_eq!(
            (unlinked.partner, unlinked.cap_secs, unlinked.ack_unclaimed),
            (PartnerShare::No, Some(600), true)
        );
        let down = ServeMode::PartnerDown {
            partner_share_from_ms: 1000,
        };
        assert_eq!(r(down, 0, 999), Some(unlinked));
        assert_eq!(
            r(down, 0, 1000).unwrap().partner,
            PartnerShare::Aged { mclt_ms: 600_000 }
        );
        assert_eq!(unlinked.cap(None), (Some(600), true));
        assert_eq!(unlinked.cap(Some(3600)), (Some(600), true));
        assert_eq!(unlinked.cap(Some(120)), (Some(120), false));
        assert_eq!(linked.cap(None), (None, false));
        let mismatch = r(ServeMode::ConfigMismatch, 0, 0).unwrap();
        assert_eq!(
            (mismatch.allocate, mismatch.ack_unclaimed, mismatch.cap_secs),
            (false, false, Some(600))
        );
        assert!(unlinked.allocate && linked.allocate);
        let recovering = ServeMode::Recovering {
            serve_from_ms: 1000,
        };
        assert_eq!(r(recovering, 0, 999), Some(mismatch));
        assert_eq!(r(recovering, 0, 1000), Some(unlinked));
    }
}
