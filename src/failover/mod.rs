//! Primary/secondary lease failover: the node state machine (sans-I/O) and
//! the shell that gives it sockets. The wire protocol is the `proto` crate.

pub mod node;

#[cfg(test)]
mod tests;
