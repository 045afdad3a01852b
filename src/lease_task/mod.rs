//! The lease task: everything that changes the lease database, on one task.
//!
//! - `core`: the sans-I/O [`LeaseTask`] (DHCP engine + lease database +
//!   failover node + reply gate), driven by the server and, the same code,
//!   by the failover simulation (`tests/failover_sim.rs`);
//! - `run`: the tokio loop around it (the port-67 socket, interfaces, the
//!   ping prober, the failover link's I/O, the lease-file export, control,
//!   metrics and reload requests);
//! - `flusher`: the group-commit thread, which fsyncs and reports tokens.

pub mod core;
pub mod flusher;
pub mod run;

#[cfg(test)]
mod agreement_tests;
#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod recovery_tests;

pub use self::core::{LeaseTask, Output, ShellStats};
pub use self::run::Shell;
