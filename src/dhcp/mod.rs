//! The DHCPv4 engine: a sans-I/O core (`engine`, fed bytes, an arrival
//! interface, the lease database and the time) and its socket (`socket`).
//! The engine runs inside the lease task (`crate::lease_task`), which
//! composes it with the lease database and the failover node.

pub mod classes;
pub mod engine;
pub mod holds;
pub mod hostname;
pub mod names;
pub mod network;
pub mod options;
pub mod ping;
pub mod pool;
pub mod ratelimit;
pub mod reply;
pub mod request;
pub mod socket;
pub mod stats;
pub mod unanswered;

#[cfg(test)]
mod engine_tests;

pub use engine::{Decision, Engine, Reply};
pub use network::Arrival;
