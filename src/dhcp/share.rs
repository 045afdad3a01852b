//! Failover address shares: which node of a pair may hand out which
//! address of a range, and what the engine may do in each failover state.

use std::time::Duration;

/// The end of a failover pair an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Primary,
    Secondary,
}

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
    /// address nobody else holds is acknowledged, not NAKed.
    Unlinked,
    /// As `Unlinked`, and from `partner_share_from_ms` (unix ms) on also
    /// the partner's share, for addresses whose lease ended more than an
    /// MCLT ago.
    PartnerDown { partner_share_from_ms: u64 },
}

/// The failover settings the engine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharePolicy {
    pub own: Owner,
    /// Percent of each range's addresses owned by the secondary.
    pub split_percent: u8,
    pub mclt: Duration,
    pub unanswered_secs: u16,
}
