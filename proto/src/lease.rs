//! The lease record: one per IP address, the unit the database stores and the
//! failover link exchanges and merges.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Hybrid logical clock stamp. Field order is the comparison order: wall
/// clock milliseconds, then a counter for changes within one millisecond (or
/// after the clock stepped back), then the node id as the final tie-break, so
/// two distinct stamps never compare equal across nodes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Stamp {
    pub wall_ms: u64,
    pub counter: u32,
    pub node: u32,
}

/// Identity of a DHCP client: its client identifier (option 61) when it sent
/// one, else its hardware type and address. The first byte says which, so a
/// client-id can never collide with a MAC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientKey(pub Vec<u8>);

impl ClientKey {
    const KIND_CLIENT_ID: u8 = 1;
    const KIND_HWADDR: u8 = 2;

    pub fn from_client_id(id: &[u8]) -> Self {
        let mut v = Vec::with_capacity(id.len() + 1);
        v.push(Self::KIND_CLIENT_ID);
        v.extend_from_slice(id);
        ClientKey(v)
    }

    pub fn from_hwaddr(htype: u8, hw: &[u8]) -> Self {
        let mut v = Vec::with_capacity(hw.len() + 2);
        v.push(Self::KIND_HWADDR);
        v.push(htype);
        v.extend_from_slice(hw);
        ClientKey(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expiry {
    At(u64),
    Never,
}

impl Expiry {
    /// Unix seconds as dnsmasq's lease file writes them: 0 means never.
    pub fn as_lease_file_secs(self) -> u64 {
        match self {
            Expiry::At(t) => t,
            Expiry::Never => 0,
        }
    }

    pub fn is_past(self, now_secs: u64) -> bool {
        match self {
            Expiry::At(t) => t <= now_secs,
            Expiry::Never => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaseState {
    /// Acknowledged to the client and not yet ended.
    Bound,
    /// The client released it.
    Released,
    /// Its time ran out.
    Expired,
    /// A client declined it (someone else answers on it); held unusable
    /// until `expires`.
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub ip: Ipv4Addr,
    pub state: LeaseState,
    pub client: ClientKey,
    pub htype: u8,
    pub hwaddr: Vec<u8>,
    pub client_id: Option<Vec<u8>>,
    pub hostname: Option<String>,
    pub expires: Expiry,
    /// Set by the lease database when the change is committed.
    pub stamp: Stamp,
}

impl LeaseRecord {
    /// Bound and not past its expiry: the address belongs to `client`.
    pub fn is_active(&self, now_secs: u64) -> bool {
        self.state == LeaseState::Bound && !self.expires.is_past(now_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LeaseRecord {
        LeaseRecord {
            ip: Ipv4Addr::new(198, 18, 0, 10),
            state: LeaseState::Bound,
            client: ClientKey::from_hwaddr(1, &[1, 2, 3, 4, 5, 6]),
            htype: 1,
            hwaddr: vec![1, 2, 3, 4, 5, 6],
            client_id: None,
            hostname: Some("laptop".into()),
            expires: Expiry::At(1_700_000_000),
            stamp: Stamp {
                wall_ms: 5,
                counter: 1,
                node: 9,
            },
        }
    }

    #[test]
    fn record_round_trips_through_codec() {
        let rec = sample();
        let bytes = crate::encode(&rec).unwrap();
        let back: LeaseRecord = crate::decode(&bytes).unwrap();
        assert_eq!(rec, back);
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let bytes = crate::encode(&sample()).unwrap();
        assert!(crate::decode::<LeaseRecord>(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            crate::decode::<LeaseRecord>(&longer),
            Err(crate::CodecError::Trailing(1))
        ));
    }

    #[test]
    fn stamp_orders_by_wall_then_counter_then_node() {
        let a = Stamp {
            wall_ms: 1,
            counter: 9,
            node: 9,
        };
        let b = Stamp {
            wall_ms: 2,
            counter: 0,
            node: 0,
        };
        assert!(a < b);
        let c = Stamp {
            wall_ms: 2,
            counter: 0,
            node: 1,
        };
        assert!(b < c);
    }

    #[test]
    fn client_id_and_hwaddr_keys_never_collide() {
        assert_ne!(
            ClientKey::from_client_id(&[1, 1, 2, 3]),
            ClientKey::from_hwaddr(1, &[2, 3])
        );
    }
}
