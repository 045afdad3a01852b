//! The DNS engine: local authority (leases, hosts files, dnsmasq's record
//! options, `address=`/`local=`), then a forwarder with a cache for
//! everything else. The core is sans-I/O (`engine`: bytes and the time in,
//! actions out); `shell` holds the sockets.
//!
//! Module map: `names` (name helpers), `hosts` (hosts-file parsing),
//! `authority` (what we answer ourselves), `cache`, `forward` (upstream
//! choice and pending queries), `zone` (authoritative zones: SOA, NS, serial,
//! transfer permission), `resolv` (resolv files and their polling),
//! `question` (a question's name and letter case as bytes, for 0x20),
//! `engine` (ties them together), `listen` (where the shell listens and
//! whom it answers).

pub mod authority;
pub mod cache;
pub mod engine;
pub mod forward;
pub mod hosts;
mod listen;
mod moderation;
pub mod names;
pub mod question;
pub mod replay;
pub mod resolv;
pub mod shell;
mod tcp_frames;
pub mod thread;
mod upstream;
pub mod zone;
