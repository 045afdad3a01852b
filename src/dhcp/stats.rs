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
}

impl Ignored {
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
            Ignored::NoAddress => "no_address",
            Ignored::LeaseMax => "lease_max",
            Ignored::NotForUs => "not_for_us",
            Ignored::UnknownClient => "unknown_client",
            Ignored::ProbeInProgress => "probe_in_progress",
            Ignored::NotOwner => "not_owner",
            Ignored::Incomplete => "incomplete",
            Ignored::Storage => "storage_error",
            Ignored::Passive => "passive",
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
}
