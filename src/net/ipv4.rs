//! IPv4 address arithmetic shared by DHCP, DNS, the script and the
//! interface scan. Pure, and below every engine, so none of them has to
//! import another to ask whether two addresses share a subnet.

use std::net::Ipv4Addr;

/// An IPv4 address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

pub fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    })
}

pub fn prefix_of(netmask: Ipv4Addr) -> u8 {
    u32::from(netmask).leading_ones() as u8
}

pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let m = u32::from(mask(prefix));
    u32::from(a) & m == u32::from(b) & m
}

pub fn network_of(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & u32::from(mask(prefix)))
}

pub fn broadcast_of(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) | !u32::from(mask(prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_and_prefix_round_trip_at_the_edges() {
        assert_eq!(mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(mask(32), Ipv4Addr::new(255, 255, 255, 255));
        // A prefix over 32 comes from a bad netlink or config value; it
        // must not overflow the shift.
        assert_eq!(mask(40), Ipv4Addr::new(255, 255, 255, 255));
        for p in 0..=32 {
            assert_eq!(prefix_of(mask(p)), p);
        }
    }

    #[test]
    fn network_broadcast_and_subnet_agree() {
        let a = Ipv4Addr::new(198, 18, 7, 42);
        assert_eq!(network_of(a, 24), Ipv4Addr::new(198, 18, 7, 0));
        assert_eq!(broadcast_of(a, 24), Ipv4Addr::new(198, 18, 7, 255));
        assert_eq!(broadcast_of(a, 0), Ipv4Addr::BROADCAST);
        assert!(same_subnet(a, Ipv4Addr::new(198, 18, 7, 1), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(198, 18, 8, 1), 24));
        assert!(same_subnet(a, Ipv4Addr::new(10, 0, 0, 1), 0));
    }
}
