//! Socket plumbing shared by the DHCP and DNS shells: the host's interfaces
//! and which of them the config serves, and UDP with IP_PKTINFO.

pub mod interfaces;
pub mod pktinfo;
