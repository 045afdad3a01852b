//! The failover part of `twinmasq status`: what an operator, a monitoring
//! system or keepalived's `track_script` needs to know about the pair.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use twinmasq_proto::link::Role;

use super::node::NodeStatus;
use crate::lease::Rejections;

/// One node's view of the failover link. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverStatus {
    pub role: Role,
    /// The node's state name: primary `linked`, `unlinked`, `syncing`,
    /// `partner-down`, `config-mismatch`, `recovering`; secondary
    /// `passive`, `syncing`, `connecting`, `active`, `partner-down`,
    /// `config-mismatch`, `recovering` (see
    /// [`super::node::Node::status`]).
    pub state: String,
    /// The partner's link address, where this node knows it: the
    /// secondary's `failover-master`. The primary accepts any address the
    /// key proves, so it has none to report.
    pub partner: Option<String>,
    /// The partner's node id, once a handshake has told it.
    pub partner_node: Option<u32>,
    /// Linked and in sync: every change is acked by the partner.
    pub linked: bool,
    pub last_sync_unix_ms: Option<u64>,
    /// Updates sent to the partner and not yet acked (replication lag).
    pub unacked: u64,
    /// Merges where both ends had changed the same address.
    pub conflicts: u64,
    /// Completed syncs since start: whole tables, and resumed ones that
    /// sent only the changes the other side lacked.
    #[serde(default)]
    pub full_syncs: u64,
    #[serde(default)]
    pub resumed_syncs: u64,
    /// The partner's clock minus ours, as last measured (handshake,
    /// heartbeats).
    pub clock_skew_ms: Option<i64>,
    pub partner_down_since_unix_ms: Option<u64>,
    /// The partner's records refused by the admission rules, by reason
    /// (`lease::validate`).
    #[serde(default)]
    pub rejected: Rejections,
    /// The link is refused because the two configurations differ (ranges,
    /// split, MCLT): both sides' values. No new addresses meanwhile.
    #[serde(default)]
    pub config_mismatch: Option<String>,
    /// Recovering after its start (issue 14, case 1): no new addresses
    /// until a sync with the partner completes, or this time (unix ms) at
    /// the latest.
    #[serde(default)]
    pub recovering_until_unix_ms: Option<u64>,
}

impl FailoverStatus {
    /// The node's snapshot (its times are already unix milliseconds) plus
    /// the partner address the shell knows.
    pub fn from_node(status: &NodeStatus, partner: Option<SocketAddr>) -> FailoverStatus {
        FailoverStatus {
            role: status.role,
            state: status.state.to_string(),
            partner: partner.map(|a| a.to_string()),
            partner_node: status.partner_node,
            linked: status.linked,
            last_sync_unix_ms: status.last_sync_ms,
            unacked: status.unacked,
            conflicts: status.conflicts,
            full_syncs: status.full_syncs,
            resumed_syncs: status.resumed_syncs,
            clock_skew_ms: status.clock_skew_ms,
            partner_down_since_unix_ms: status.partner_down_since_ms,
            rejected: status.rejected,
            config_mismatch: status.mismatch.clone(),
            recovering_until_unix_ms: status.recovering_until_ms,
        }
    }

    /// Whether this node should be the one that serves (keepalived's
    /// `track_script`), and why. The primary serves whenever it runs; the
    /// secondary only while it has taken over: `active` (no primary in
    /// sight) or `partner-down`. In `passive`, `syncing` or `connecting`
    /// the primary is, or is about to be, the live one.
    pub fn should_be_live(&self) -> (bool, String) {
        match self.role {
            Role::Primary => (true, format!("primary, state {}", self.state)),
            Role::Secondary => {
                let live = matches!(self.state.as_str(), "active" | "partner-down");
                (live, format!("secondary, state {}", self.state))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: Role, state: &str) -> FailoverStatus {
        FailoverStatus {
            role,
            state: state.into(),
            partner: Some("198.18.0.1:6470".into()),
            partner_node: Some(7),
            linked: false,
            last_sync_unix_ms: None,
            unacked: 0,
            conflicts: 0,
            full_syncs: 1,
            resumed_syncs: 2,
            clock_skew_ms: Some(-3),
            partner_down_since_unix_ms: None,
            rejected: Rejections {
                hostname: 2,
                ..Rejections::default()
            },
            config_mismatch: None,
            recovering_until_unix_ms: None,
        }
    }

    #[test]
    fn liveness_follows_role_and_state() {
        for state in [
            "linked",
            "unlinked",
            "syncing",
            "partner-down",
            "recovering",
        ] {
            assert!(status(Role::Primary, state).should_be_live().0, "{state}");
        }
        for (state, live) in [
            ("active", true),
            ("partner-down", true),
            ("passive", false),
            ("syncing", false),
            ("connecting", false),
            ("config-mismatch", false),
            ("recovering", false),
        ] {
            assert_eq!(
                status(Role::Secondary, state).should_be_live().0,
                live,
                "{state}"
            );
        }
    }

    #[test]
    fn round_trips_through_json_with_lowercase_role() {
        let s = status(Role::Secondary, "passive");
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""role":"secondary""#), "{text}");
        assert_eq!(serde_json::from_str::<FailoverStatus>(&text).unwrap(), s);
    }
}
