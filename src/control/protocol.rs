//! The control socket's protocol: one request line in, one JSON document
//! out, then the server closes. Requests: `status`, `leases`,
//! `partner-down`. A failed request answers `{"error": "..."}`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use twinmasq_proto::{Expiry, LeaseRecord, LeaseState, Stamp};

use crate::failover::status::FailoverStatus;
use crate::lease::hw::{colon_hex, hw_text};

/// Longest request line accepted; the real ones are a dozen bytes.
pub const MAX_REQUEST: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Status,
    Leases,
    PartnerDown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("empty request: expected status, leases or partner-down")]
    Empty,
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("request is not UTF-8 text")]
    NotText,
    #[error("unknown request {0:?}: expected status, leases or partner-down")]
    Unknown(String),
}

impl RequestKind {
    /// The line a client sends (without its newline).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Status => "status",
            RequestKind::Leases => "leases",
            RequestKind::PartnerDown => "partner-down",
        }
    }

    /// Reads one request line as received, newline already removed.
    pub fn parse(line: &[u8]) -> Result<RequestKind, RequestError> {
        if line.len() > MAX_REQUEST {
            return Err(RequestError::TooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| RequestError::NotText)?;
        match text.trim() {
            "" => Err(RequestError::Empty),
            "status" => Ok(RequestKind::Status),
            "leases" => Ok(RequestKind::Leases),
            "partner-down" => Ok(RequestKind::PartnerDown),
            // Shown back to whoever sent it; control characters are
            // escaped by the Debug format, and the length is bounded above.
            other => Err(RequestError::Unknown(other.to_string())),
        }
    }
}

/// A request for the DHCP shell's task, which owns the lease database, the
/// engine and the failover node; it answers on `reply`.
#[derive(Debug)]
pub struct ControlRequest {
    pub kind: RequestKind,
    pub reply: oneshot::Sender<ControlReply>,
}

/// The shell's answer. Lease records go back raw: turning them into JSON
/// is left to the socket side, off the engine's task.
#[derive(Debug)]
pub enum ControlReply {
    Status(Box<StatusReport>),
    Leases {
        node_id: u32,
        records: Vec<LeaseRecord>,
    },
    PartnerDown(PartnerDownReply),
    Error(String),
}

impl ControlReply {
    /// The JSON document sent to the client, newline-terminated.
    pub fn to_json(self) -> Vec<u8> {
        let doc = match self {
            ControlReply::Status(s) => serde_json::to_vec(&s),
            ControlReply::Leases { node_id, records } => serde_json::to_vec(&LeasesReply {
                node_id,
                leases: records.iter().map(LeaseEntry::from_record).collect(),
            }),
            ControlReply::PartnerDown(p) => serde_json::to_vec(&p),
            ControlReply::Error(message) => return error_json(&message),
        };
        match doc {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                bytes
            }
            // Plain structs with string keys always serialize; should one
            // not, the client still gets a document.
            Err(e) => error_json(&format!("cannot encode the reply: {e}")),
        }
    }
}

/// `{"error": message}` and a newline.
pub fn error_json(message: &str) -> Vec<u8> {
    let mut bytes = serde_json::json!({ "error": message })
        .to_string()
        .into_bytes();
    bytes.push(b'\n');
    bytes
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub node_id: u32,
    pub pid: u32,
    pub started_unix_ms: u64,
    pub uptime_secs: u64,
    pub leases: LeaseCounts,
    /// Per `dhcp-range`, in config order.
    pub ranges: Vec<RangeStatus>,
    pub dhcp: DhcpCounters,
    /// `null` when no failover is configured (a standalone server).
    pub failover: Option<FailoverStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCounts {
    /// Records in state bound, expired or not yet marked so.
    pub bound: u64,
    /// Bound and not past their expiry.
    pub active: u64,
    /// Every record, any state (ended leases are kept as history).
    pub records: u64,
    /// Records whose last change this node made (its stamp's node id)...
    pub from_this_node: u64,
    /// ...and those that came from other nodes (the failover partner).
    pub from_other_nodes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeStatus {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub size: u64,
    pub free: u64,
}

/// The DHCP engine's counters and the socket shell's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpCounters {
    pub received: u64,
    pub discover: u64,
    pub request: u64,
    pub decline: u64,
    pub release: u64,
    pub inform: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub bad_options: u64,
    pub probes: u64,
    pub probes_answered: u64,
    /// Requests that got no reply, by reason.
    pub ignored: BTreeMap<String, u64>,
    pub not_served_interface: u64,
    pub send_errors: u64,
    pub flushes: u64,
    pub flush_errors: u64,
    pub durable_replies: u64,
    pub partner_dropped: u64,
    pub partner_cancelled: u64,
}

/// The answer to `leases`: every record the database holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasesReply {
    pub node_id: u32,
    pub leases: Vec<LeaseEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEntry {
    pub ip: Ipv4Addr,
    /// `bound`, `released`, `expired` or `declined`.
    pub state: String,
    /// As dnsmasq's lease file writes it: colon hex, with an `NN-` type
    /// prefix unless Ethernet.
    pub mac: String,
    /// Colon hex, as in dnsmasq's lease file.
    pub client_id: Option<String>,
    pub hostname: Option<String>,
    /// Unix seconds; `null` for an infinite lease.
    pub expires: Option<u64>,
    pub stamp: Stamp,
    /// The node that made the last change to this record.
    pub origin_node: u32,
}

pub fn state_name(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Bound => "bound",
        LeaseState::Released => "released",
        LeaseState::Expired => "expired",
        LeaseState::Declined => "declined",
    }
}

impl LeaseEntry {
    pub fn from_record(r: &LeaseRecord) -> LeaseEntry {
        LeaseEntry {
            ip: r.ip,
            state: state_name(r.state).to_string(),
            mac: hw_text(r.htype, &r.hwaddr),
            client_id: r
                .client_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .map(colon_hex),
            hostname: r.hostname.clone(),
            expires: match r.expires {
                Expiry::At(t) => Some(t),
                Expiry::Never => None,
            },
            stamp: r.stamp,
            origin_node: r.stamp.node,
        }
    }

    /// Bound and not past its expiry at `now_secs`.
    pub fn is_active(&self, now_secs: u64) -> bool {
        self.state == "bound" && self.expires.is_none_or(|t| t > now_secs)
    }
}

/// The answer to `partner-down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerDownReply {
    pub ok: bool,
    /// When the partner was (first) declared down.
    pub partner_down_since_unix_ms: u64,
    /// From then on, the partner's share of the ranges may be handed out
    /// too (one MCLT after the declaration).
    pub partner_share_from_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinmasq_proto::ClientKey;

    #[test]
    fn parses_requests_and_names_every_fault() {
        assert_eq!(RequestKind::parse(b"status"), Ok(RequestKind::Status));
        assert_eq!(RequestKind::parse(b" leases\r"), Ok(RequestKind::Leases));
        assert_eq!(
            RequestKind::parse(b"partner-down"),
            Ok(RequestKind::PartnerDown)
        );
        assert_eq!(RequestKind::parse(b""), Err(RequestError::Empty));
        assert_eq!(RequestKind::parse(b"\xff\xfe"), Err(RequestError::NotText));
        assert_eq!(
            RequestKind::parse(&[b'x'; MAX_REQUEST + 1]),
            Err(RequestError::TooLong)
        );
        assert!(matches!(
            RequestKind::parse(b"STATUS"),
            Err(RequestError::Unknown(_))
        ));
        for k in [
            RequestKind::Status,
            RequestKind::Leases,
            RequestKind::PartnerDown,
        ] {
            assert_eq!(RequestKind::parse(k.as_str().as_bytes()), Ok(k));
        }
    }

    #[test]
    fn lease_entry_uses_the_lease_file_conventions() {
        let rec = LeaseRecord {
            ip: Ipv4Addr::new(198, 18, 0, 10),
            state: LeaseState::Bound,
            client: ClientKey::from_hwaddr(1, &[2, 0, 0, 0, 0, 0x42]),
            htype: 1,
            hwaddr: vec![2, 0, 0, 0, 0, 0x42],
            client_id: Some(vec![1, 0xab]),
            hostname: Some("pc".into()),
            expires: Expiry::Never,
            stamp: Stamp {
                wall_ms: 1,
                counter: 0,
                node: 9,
            },
        };
        let e = LeaseEntry::from_record(&rec);
        assert_eq!(e.mac, "02:00:00:00:00:42");
        assert_eq!(e.client_id.as_deref(), Some("01:ab"));
        assert_eq!(e.expires, None);
        assert_eq!(e.origin_node, 9);
        assert!(e.is_active(u64::MAX));
        assert_eq!(hw_text(6, &[1, 2]), "06-01:02");
        assert_eq!(hw_text(1, &[]), "01-");
    }

    #[test]
    fn replies_are_one_json_document_per_line() {
        let err = ControlReply::Error("nope \"quoted\"".into()).to_json();
        assert_eq!(err.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&err).unwrap();
        assert_eq!(v["error"], "nope \"quoted\"");
        let leases = ControlReply::Leases {
            node_id: 5,
            records: vec![],
        }
        .to_json();
        let back: LeasesReply = serde_json::from_slice(&leases).unwrap();
        assert_eq!(back.node_id, 5);
    }
}
