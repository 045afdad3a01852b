//! Prometheus metrics (`metrics-listen=ADDR:PORT`, ours): counters and
//! gauges of the DHCP engine, the failover node and the DNS engine, served
//! as text (exposition format 0.0.4) on `GET /metrics`.
//!
//! The engines keep plain counters in their own tasks; nothing on their
//! hot paths is shared or atomic. A scrape asks each task for a snapshot
//! over a channel ([`snapshot`]), [`render`] turns the snapshots into text
//! (a pure function), and [`http`] is the small HTTP responder around it.

pub mod http;
pub mod leases;
pub mod render;
pub mod snapshot;

pub use snapshot::{
    DhcpHooks, DhcpSnapshot, DnsHooks, DnsSnapshot, MetricsSources, RangeSnapshot, Scrape, Source,
};
