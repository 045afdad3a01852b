//! twinmasq: a dnsmasq-compatible DHCPv4 + DNS server with primary/secondary
//! lease failover. See `../shared/design.md` for the shape.

pub mod clock;
pub mod config;
pub mod control;
pub mod dhcp;
pub mod dns;
pub mod failover;
pub mod lease;
pub mod lease_task;
pub mod metrics;
pub mod net;
pub mod script;
pub mod server;
pub mod service;
pub mod share;
