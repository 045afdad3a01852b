//! Counters the engine keeps: what arrived, what we answered, and every
//! reason a packet got no answer, so dropped input is always accounted for.

use std::collections::BTreeMap;

use super::request::DecodeError;

/// Why a request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    Decode(DecodeError),
    /// No dhcp-range serves the arrival interface or the relay's subnet.
    NoNetwork,
    /// A dhcp-host line says `ignore`.
    HostIgnored,
    /// The client's tags match a `dhcp-ignore` line.
    TagIgnored,
    /// The range is exhausted or static-only for this client.
    NoAddress,
    /// dhcp-lease-max reached.
    LeaseMax,
    /// The client chose, or addressed, another server.
    NotForUs,
    /// Not authoritative, and the client is not one of ours (RFC 2131
    /// §4.3.2: stay silent).
    UnknownClient,
    /// A ping check for this client's address is still running.
    ProbeInProgress,
    /// RELEASE or DECLINE for a lease the sender does not hold.
    NotOwner,
    /// Required fields missing for this message type.
    Incomplete,
    /// The lease database refused the change: nothing was promised.
    Storage,
    /// A passive failover secondary leaves the request to the primary
    /// (the client's `secs` is below the unanswered threshold).
    Passive,
    /// Over the receiving interface's packet budget for its class of
    /// client (see `ratelimit`).
    RateLimited,
    /// A DECLINE from the lease's holder while the most addresses a
    /// DECLINE may take out of service are already held: the lease ends,
    /// the address is not held.
    DeclineLimit,
    /// Larger than the receive buffer: no DHCP client sends that.
    Oversized,
    /// The options the reply must echo (client id, relay information)
    /// cannot fit in the client's maximum message size.
    ReplyTooBig,
    /// A new allocation while the failover partners' configurations
    /// differ (`ServeMode::ConfigMismatch`): nothing new is handed out.
    ConfigMismatch,
    /// A new allocation while the failover node recovers after its start
    /// (`ServeMode::Recovering`): nothing new until it has synced with the
    /// partner or an MCLT has passed.
    Recovering,
    /// Not in sync with the failover partner, a client asked to keep an
    /// address of the partner's share that this node holds no lease for:
    /// the partner may have given it to another client meanwhile, so no
    /// ACK; and no NAK, which could take the address from a client the
    /// partner is acknowledging at the same moment.
    PartnerShare,
}

impl Ignored {
    /// Every reason, so a metrics scrape can show each one from zero
    /// (a counter that appears only on its first event hides that event
    /// from `rate()`).
    pub const ALL: [Ignored; 25] = [
        Ignored::Decode(DecodeError::TooShort),
        Ignored::Decode(DecodeError::NotRequest),
        Ignored::Decode(DecodeError::BadHlen),
        Ignored::Decode(DecodeError::NoCookie),
        Ignored::Decode(DecodeError::NoMessageType),
        Ignored::Decode(DecodeError::UnexpectedType),
        Ignored::NoNetwork,
        Ignored::HostIgnored,
        Ignored::TagIgnored,
        Ignored::NoAddress,
        Ignored::LeaseMax,
        Ignored::NotForUs,
        Ignored::UnknownClient,
        Ignored::ProbeInProgress,
        Ignored::NotOwner,
        Ignored::Incomplete,
        Ignored::Storage,
        Ignored::Passive,
        Ignored::RateLimited,
        Ignored::DeclineLimit,
        Ignored::Oversized,
        Ignored::ReplyTooBig,
        Ignored::ConfigMismatch,
        Ignored::Recovering,
        Ignored::PartnerShare,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Ignored::Decode(DecodeError::TooShort) => "decode_too_short",
            Ignored::Decode(DecodeError::NotRequest) => "decode_not_request",
            Ignored::Decode(DecodeError::BadHlen) => "decode_bad_hlen",
            Ignored::Decode(DecodeError::NoCookie) => "decode_no_cookie",
            Ignored::Decode(DecodeError::NoMessageType) => "decode_no_message_type",
            Ignored::Decode(DecodeError::UnexpectedType) => "decode_unexpected_type",
            Ignored::NoNetwork => "no_network",
            Ignored::HostIgnored => "host_ignored",
            Ignored::TagIgnored => "tag_ignored",
            Ignored::NoAddress => "no_address",
            Ignored::LeaseMax => "lease_max",
            Ignored::NotForUs => "not_for_us",
            Ignored::UnknownClient => "unknown_client",
            Ignored::ProbeInProgress => "probe_in_progress",
            Ignored::NotOwner => "not_owner",
            Ignored::Incomplete => "incomplete",
            Ignored::Storage => "storage_error",
            Ignored::Passive => "passive",
            Ignored::RateLimited => "rate_limited",
            Ignored::DeclineLimit => "decline_limit",
            Ignored::Oversized => "oversized",
            Ignored::ReplyTooBig => "reply_too_big",
            Ignored::ConfigMismatch => "config_mismatch",
            Ignored::Recovering => "recovering",
            Ignored::PartnerShare => "partner_share",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub discover: u64,
    pub request: u64,
    pub decline: u64,
    pub release: u64,
    pub inform: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    /// Options present but malformed, skipped while the rest were used.
    pub bad_options: u64,
    pub probes: u64,
    pub probes_answered: u64,
    pub ignored: BTreeMap<&'static str, u64>,
}

impl Stats {
    pub fn count_ignored(&mut self, why: Ignored) {
        *self.ignored.entry(why.label()).or_default() += 1;
    }

    pub fn ignored_total(&self) -> u64 {
        self.ignored.values().sum()
    }

    /// Requests by DHCP message type (lowercase names, for labels).
    pub fn received_by_type(&self) -> [(&'static str, u64); 5] {
        [
            ("discover", self.discover),
            ("request", self.request),
            ("decline", self.decline),
            ("release", self.release),
            ("inform", self.inform),
        ]
    }

    /// Replies sent, by DHCP message type (an INFORM's answer is an ACK).
    pub fn replies_by_type(&self) -> [(&'static str, u64); 3] {
        [
            ("offer", self.offers),
            ("ack", self.acks),
            ("nak", self.naks),
        ]
    }

    /// Every ignore reason with its count, the ones never seen as zero.
    pub fn ignored_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Ignored::ALL.iter().map(|why| {
            let label = why.label();
            (label, self.ignored.get(label).copied().unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_and_counted_under_its_label() {
        let labels: std::collections::BTreeSet<&str> =
            Ignored::ALL.iter().map(|w| w.label()).collect();
        assert_eq!(labels.len(), Ignored::ALL.len());
        let mut s = Stats::default();
        s.count_ignored(Ignored::NotForUs);
        s.count_ignored(Ignored::NotForUs);
        s.count_ignored(Ignored::Decode(DecodeError::NoCookie));
        let all: Vec<(&str, u64)> = s.ignored_by_reason().collect();
        assert_eq!(all.len(), Ignored::ALL.len());
        assert!(all.contains(&("not_for_us", 2)));
        assert!(all.contains(&("decode_no_cookie", 1)));
        assert!(all.contains(&("lease_max", 0)));
        assert_eq!(all.iter().map(|(_, n)| n).sum::<u64>(), s.ignored_total());
    }
}
