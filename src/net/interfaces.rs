//! The host's IPv4 interfaces and which of them the config lets us serve.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

use crate::config::Config;

use crate::dhcp::network::{prefix_of, IfAddr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub addrs: Vec<IfAddr>,
}

/// Every interface with at least one IPv4 address, by index.
pub fn list() -> io::Result<HashMap<u32, Interface>> {
    let mut out: HashMap<u32, Interface> = HashMap::new();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once;
    // each ifa_addr/ifa_netmask is checked for null and family before the
    // cast to sockaddr_in.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
            let index = libc::if_nametoindex(ifa.ifa_name);
            if index == 0 {
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
            out.entry(index)
                .or_insert_with(|| Interface {
                    name,
                    index,
                    addrs: Vec::new(),
                })
                .addrs
                .push(IfAddr { addr, prefix });
        }
        libc::freeifaddrs(head);
    }
    Ok(out)
}

/// dnsmasq's interface names may end in `*` to match a prefix.
fn name_matches(pattern: &str, name: &str) -> bool {
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
    if cfg.interfaces.is_empty() && cfg.listen_addresses.is_empty() {
        return !iface.addrs.iter().all(|a| a.addr.is_loopback());
    }
    cfg.interfaces.iter().any(|p| name_matches(p, &iface.name))
        || iface
            .addrs
            .iter()
            .any(|a| cfg.listen_addresses.contains(&a.addr))
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
    fn lists_loopback() {
        let all = list().unwrap();
        assert!(all
            .values()
            .any(|i| i.addrs.iter().any(|a| a.addr.is_loopback())));
    }
}
