//! Socket plumbing shared by the DHCP and DNS shells: the host's interfaces
//! and which of them the config serves, and UDP with IP_PKTINFO
//! (IPv4) and IPV6_PKTINFO (IPv6).

pub mod interfaces;
pub mod mmsg;
pub mod pktinfo;
pub mod pktinfo6;
