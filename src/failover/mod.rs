//! Primary/secondary lease failover: the node state machine (sans-I/O) and
//! the shell that gives it sockets. The wire protocol is the `proto` crate.

pub mod admission;
pub mod flush_watch;
pub mod gate;
pub mod link_io;
pub mod log_limit;
pub mod node;
pub mod ranges;
pub mod setup;
pub mod status;

// pub(crate): the lease task's composition tests drive an engine on this
// in-memory pair.
#[cfg(test)]
pub(crate) mod tests;
