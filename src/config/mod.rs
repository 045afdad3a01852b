//! dnsmasq's option language: one table of options shared by the command
//! line and conf files.

pub mod types;

pub use types::*;
