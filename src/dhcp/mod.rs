//! The DHCPv4 engine: a sans-I/O core (`engine`, fed bytes, an arrival
//! interface, the lease database and the time) and the socket shell around
//! it (`shell`).

pub mod classes;
pub mod engine;
pub mod flusher;
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
pub mod share;
pub mod shell;
pub mod socket;
pub mod stats;
pub mod unanswered;

#[cfg(test)]
mod engine_tests;

pub use engine::{Decision, Engine, Reply};
pub use network::{Arrival, IfAddr};
