//! The host's interfaces (their IPv4 and IPv6 addresses) and which of them
//! the config lets us serve.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::Config;

use crate::net::ipv4::{prefix_of, IfAddr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub addrs: Vec<IfAddr>,
    /// IPv6 addresses, link-local ones included (for DNS only).
    pub addrs6: Vec<If6Addr>,
    /// IFF_LOOPBACK: an interface without IPv4 addresses is not loopback
    /// just because it has none that are not.
    pub loopback: bool,
}

/// One IPv6 address of an interface and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct If6Addr {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Interface {
    pub fn is_loopback(&self) -> bool {
        self.loopback || (!self.addrs.is_empty() && self.addrs.iter().all(|a| a.addr.is_loopback()))
    }
}

/// Every interface with at least one IPv4 address, by index (their IPv6
/// addresses included).
pub fn list() -> io::Result<HashMap<u32, Interface>> {
    let mut all = list_all()?;
    all.retain(|_, i| !i.addrs.is_empty());
    Ok(all)
}

/// Every interface with at least one IPv4 or IPv6 address, by index.
pub fn list_all() -> io::Result<HashMap<u32, Interface>> {
    let mut out: HashMap<u32, Interface> = HashMap::new();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once;
    // each ifa_addr/ifa_netmask is checked for null and family before the
    // cast to sockaddr_in or sockaddr_in6.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() {
                continue;
            }
            let family = i32::from((*ifa.ifa_addr).sa_family);
            if family != libc::AF_INET && family != libc::AF_INET6 {
                continue;
            }
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
            let index = libc::if_nametoindex(ifa.ifa_name);
            if index == 0 {
                continue;
            }
            let entry = out.entry(index).or_insert_with(|| Interface {
                name,
                index,
                addrs: Vec::new(),
                addrs6: Vec::new(),
                loopback: false,
            });
            entry.loopback |= ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
            if family == libc::AF_INET6 {
                let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                let prefix = if ifa.ifa_netmask.is_null() {
                    128
                } else {
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                    u128::from_be_bytes(m.sin6_addr.s6_addr).count_ones() as u8
                };
                entry.addrs6.push(If6Addr {
                    addr: Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    prefix,
                });
                continue;
            }
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let prefix = if ifa.ifa_netmask.is_null() {
                32
            } else {
                let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                prefix_of(Ipv4Addr::from(u32::from_be(m.sin_addr.s_addr)))
            };
            entry.addrs.push(IfAddr { addr, prefix });
        }
        libc::freeifaddrs(head);
    }
    Ok(out)
}

/// dnsmasq's interface names may end in `*` to match a prefix.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Whether DHCP is served on `iface`: `interface=` and `listen-address=`
/// select (either suffices), `except-interface=` always wins; with none of
/// the selecting options every interface but loopback is served.
pub fn serves(cfg: &Config, iface: &Interface) -> bool {
    if cfg
        .except_interfaces
        .iter()
        .any(|p| name_matches(p, &iface.name))
    {
        return false;
    }
    if cfg.interfaces.is_empty()
        && cfg.listen_addresses.is_empty()
        && cfg.listen_addresses_v6.is_empty()
    {
        return !iface.is_loopback();
    }
    // An IPv6 listen-address selects (so the rest is not served) but
    // opens only itself, for DNS; IPv4 follows the IPv4 addresses, as in
    // dnsmasq.
    cfg.interfaces.iter().any(|p| name_matches(p, &iface.name))
        || iface
            .addrs
            .iter()
            .any(|a| cfg.listen_addresses.contains(&a.addr))
}

/// Whether `a` and `b` share their first `prefix` bits.
pub fn same_net6(a: Ipv6Addr, b: Ipv6Addr, prefix: u8) -> bool {
    let shift = 128u32.saturating_sub(u32::from(prefix.min(128)));
    let mask = u128::MAX.checked_shl(shift).unwrap_or(0);
    u128::from(a) & mask == u128::from(b) & mask
}

/// fe80::/10.
pub fn is_link_local6(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: [u8; 4]) -> Interface {
        Interface {
            name: name.into(),
            index: 3,
            addrs: vec![IfAddr {
                addr: addr.into(),
                prefix: 24,
            }],
            addrs6: vec![If6Addr {
                addr: "2001:db8:7::1".parse().unwrap(),
                prefix: 64,
            }],
            loopback: name == "lo",
        }
    }

    #[test]
    fn selection_rules() {
        let mut cfg = Config::default();
        assert!(serves(&cfg, &iface("eth0", [198, 18, 0, 1])));
        assert!(!serves(&cfg, &iface("lo", [127, 0, 0, 1])));
        cfg.interfaces = vec!["br*".into()];
        assert!(serves(&cfg, &iface("br-lan", [198, 18, 0, 1])));
        assert!(!serves(&cfg, &iface("eth0", [198, 18, 0, 1])));
        cfg.listen_addresses = vec![Ipv4Addr::new(198, 18, 5, 1)];
        assert!(serves(&cfg, &iface("eth1", [198, 18, 5, 1])));
        cfg.except_interfaces = vec!["eth1".into()];
        assert!(!serves(&cfg, &iface("eth1", [198, 18, 5, 1])));
    }

    #[test]
    fn an_ipv6_listen_address_opens_no_ipv4() {
        let mut cfg = Config {
            listen_addresses_v6: vec!["2001:db8:7::1".parse().unwrap()],
            ..Config::default()
        };
        // eth2 holds that address, but IPv4 service needs an IPv4 one.
        assert!(!serves(&cfg, &iface("eth2", [198, 18, 7, 1])));
        cfg.listen_addresses = vec![Ipv4Addr::new(198, 18, 7, 1)];
        assert!(serves(&cfg, &iface("eth2", [198, 18, 7, 1])));
    }

    #[test]
    fn ipv6_prefix_match() {
        let a: Ipv6Addr = "2001:db8:1:2::10".parse().unwrap();
        assert!(same_net6(a, "2001:db8:1:2::1".parse().unwrap(), 64));
        assert!(!same_net6(a, "2001:db8:1:3::1".parse().unwrap(), 64));
        assert!(same_net6(a, "2001:db8:1:3::1".parse().unwrap(), 47));
        assert!(same_net6(a, "::".parse().unwrap(), 0));
        assert!(!same_net6(a, "2001:db8:1:2::11".parse().unwrap(), 128));
        assert!(is_link_local6("fe80::1".parse().unwrap()));
        assert!(is_link_local6("febf::1".parse().unwrap()));
        assert!(!is_link_local6("fec0::1".parse().unwrap()));
    }

    #[test]
    fn lists_loopback() {
        let all = list().unwrap();
        assert!(all
            .values()
            .any(|i| i.addrs.iter().any(|a| a.addr.is_loopback())));
    }
}
