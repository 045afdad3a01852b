//! twinmasq's shared formats: the lease record (stored in the lease database
//! and carried on the failover link) and the one codec both use.
//!
//! The failover link protocol itself grows here; see `PROTOCOL.md`.

pub mod codec;
pub mod key;
pub mod lease;
pub mod link;

pub use codec::{decode, encode, CodecError};
pub use lease::{ClientKey, Expiry, LeaseRecord, LeaseState, Stamp};
