//! Socket plumbing shared by the DHCP and DNS shells: the host's interfaces
//! and which of them the config serves, and UDP with IP_PKTINFO
//! (IPv4) and IPV6_PKTINFO (IPv6); plus the IPv4 arithmetic (`ipv4`) they
//! and the engines share.

pub mod interfaces;
pub mod ipv4;
pub mod mmsg;
pub mod pktinfo;
pub mod pktinfo6;
