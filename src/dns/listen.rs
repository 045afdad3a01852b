//! Where the DNS service listens and whom it answers: the addresses to
//! bind, which interfaces and addresses a query may arrive at (the
//! `interface`, `except-interface`, `listen-address`, `bind-interfaces`
//! and `auth-server` options), which service it gets there, the
//! `local-service` check on the client, and the subnet `localise-queries`
//! answers for. Pure functions of the config and
//! the interface list, so they are tested without sockets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};

use crate::config::dns_types::IfFamily;
use crate::config::Config;
use crate::net::interfaces::{self, Interface};
use crate::net::ipv4::same_subnet;

use super::authority::Service;
use super::zone::Net;

/// The addresses to listen on: with `bind-interfaces`, each address of
/// each served interface (so another resolver may hold port 53 on other
/// addresses, as with dnsmasq); otherwise the wildcard, filtering by
/// arrival interface.
pub(super) fn listen_addrs(cfg: &Config, ifaces: &HashMap<u32, Interface>) -> Vec<Ipv4Addr> {
    if !cfg.bind_interfaces {
        return vec![Ipv4Addr::UNSPECIFIED];
    }
    let mut out: Vec<Ipv4Addr> = ifaces
        .values()
        .filter(|i| serves_dns(cfg, i))
        .flat_map(|i| i.addrs.iter().map(|a| a.addr))
        .collect();
    let auth_addrs = cfg.dns.auth.server.iter().flat_map(|s| &s.addrs);
    let auth_v4 = auth_addrs.filter_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    for a in cfg.listen_addresses.iter().copied().chain(auth_v4) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out.sort();
    out
}

/// The IPv6 addresses to listen on, as [`listen_addrs`]; link-local ones
/// with their interface as scope. The bool says whether the address was
/// named (`listen-address`), so that failing to bind it stops the start;
/// an interface's address may be tentative (duplicate address detection)
/// or gone, which is only logged.
pub(super) fn listen_addrs6(
    cfg: &Config,
    ifaces: &HashMap<u32, Interface>,
) -> Vec<(SocketAddrV6, bool)> {
    let port = cfg.dns.port;
    if !cfg.bind_interfaces {
        return vec![(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0), false)];
    }
    let mut out: Vec<(SocketAddrV6, bool)> = Vec::new();
    let mut add = |a: Ipv6Addr, scope: u32, named: bool| {
        let scope = if interfaces::is_link_local6(a) {
            scope
        } else {
            0
        };
        let sa = SocketAddrV6::new(a, port, 0, scope);
        match out.iter_mut().find(|(x, _)| *x == sa) {
            Some(e) => e.1 |= named,
            None => out.push((sa, named)),
        }
    };
    for i in ifaces.values() {
        for a in i.addrs6.iter().filter(|a| serves_dns6(cfg, i, a.addr)) {
            add(a.addr, i.index, false);
        }
    }
    for a in &cfg.listen_addresses_v6 {
        let scope = ifaces
            .values()
            .find(|i| i.addrs6.iter().any(|x| x.addr == *a))
            .map_or(0, |i| i.index);
        add(*a, scope, true);
    }
    out.sort_by_key(|(a, _)| (*a.ip(), a.scope_id()));
    out
}

/// Does `iface` carry the authoritative service: named in `auth-server`
/// (for IPv4), or holding one of its addresses?
pub(super) fn auth_iface(cfg: &Config, iface: &Interface) -> bool {
    let Some(s) = &cfg.dns.auth.server else {
        return false;
    };
    s.interfaces
        .iter()
        .any(|(n, fam)| n == &iface.name && *fam != IfFamily::V6)
        || iface
            .addrs
            .iter()
            .any(|a| s.addrs.contains(&IpAddr::V4(a.addr)))
}

/// Which service a query to our address `dst` reached. dnsmasq decides by
/// the address: those of `auth-server` interfaces and the `auth-server`
/// addresses are authoritative, even if also named in `interface=`.
pub(super) fn service_at(cfg: &Config, ifaces: &HashMap<u32, Interface>, dst: Ipv4Addr) -> Service {
    let Some(s) = &cfg.dns.auth.server else {
        return Service::Recursive;
    };
    let named = |i: &Interface| {
        s.interfaces
            .iter()
            .any(|(n, fam)| n == &i.name && *fam != IfFamily::V6)
    };
    let auth = s.addrs.contains(&IpAddr::V4(dst))
        || ifaces
            .values()
            .filter(|i| i.addrs.iter().any(|a| a.addr == dst))
            .any(named);
    if auth {
        Service::Authoritative
    } else {
        Service::Recursive
    }
}

/// Each interface's subnets by name, for zones given by interface.
pub(super) fn interface_nets(ifaces: &HashMap<u32, Interface>) -> Vec<(String, Vec<Net>)> {
    ifaces
        .values()
        .map(|i| {
            let nets = i
                .addrs
                .iter()
                .map(|a| Net {
                    addr: IpAddr::V4(a.addr),
                    prefix: a.prefix,
                })
                .collect();
            (i.name.clone(), nets)
        })
        .collect()
}

/// DNS listens where DHCP serves, plus loopback: dnsmasq adds `lo` whenever
/// interfaces are named, and with none named every interface answers. An
/// `auth-server` interface is served even when not named otherwise.
pub(super) fn serves_dns(cfg: &Config, iface: &Interface) -> bool {
    if auth_iface(cfg, iface) {
        return true;
    }
    if cfg.except_interfaces.iter().any(|p| p == &iface.name) {
        return false;
    }
    iface.is_loopback()
        || cfg.interfaces.is_empty()
            && cfg.listen_addresses.is_empty()
            && cfg.listen_addresses_v6.is_empty()
        || interfaces::serves(cfg, iface)
}

/// Whether a query to our IPv6 address `dst` on `iface` is served. Unlike
/// IPv4 (where DHCP's interface choice is followed), an IPv4
/// `listen-address` does not open the interface's IPv6 addresses, as in
/// dnsmasq: a config that names only IPv4 addresses keeps IPv6 closed
/// (and with `bind-interfaces` binds no IPv6 socket that could collide
/// with another resolver's). Loopback comes with `interface=`, as dnsmasq
/// adds `lo` then.
pub(super) fn serves_dns6(cfg: &Config, iface: &Interface, dst: Ipv6Addr) -> bool {
    if cfg
        .except_interfaces
        .iter()
        .any(|p| interfaces::name_matches(p, &iface.name))
    {
        return false;
    }
    if cfg.listen_addresses_v6.contains(&dst) {
        return true;
    }
    if cfg.interfaces.is_empty()
        && cfg.listen_addresses.is_empty()
        && cfg.listen_addresses_v6.is_empty()
    {
        return true;
    }
    !cfg.interfaces.is_empty()
        && (iface.is_loopback()
            || cfg
                .interfaces
                .iter()
                .any(|p| interfaces::name_matches(p, &iface.name)))
}

/// For TCP, where the arrival interface is not reported: whether our
/// address `local` belongs to an interface DNS serves.
pub(super) fn served_at(cfg: &Config, ifaces: &HashMap<u32, Interface>, local: IpAddr) -> bool {
    match local {
        IpAddr::V4(a) => ifaces
            .values()
            .filter(|i| i.addrs.iter().any(|x| x.addr == a))
            .any(|i| serves_dns(cfg, i)),
        IpAddr::V6(a) => ifaces
            .values()
            .filter(|i| i.addrs6.iter().any(|x| x.addr == a))
            .any(|i| serves_dns6(cfg, i, a)),
    }
}

/// dnsmasq's `local-service` default: with no interface options, answer
/// only clients on a directly attached subnet. An IPv6 link-local client
/// is on the link it came in on (`ifindex`; for TCP its scope), which
/// must be one of ours with a link-local address.
pub(super) fn local_service_ok(
    cfg: &Config,
    ifaces: &HashMap<u32, Interface>,
    client: IpAddr,
    ifindex: u32,
) -> bool {
    let named = !cfg.interfaces.is_empty()
        || !cfg.listen_addresses.is_empty()
        || !cfg.listen_addresses_v6.is_empty()
        || !cfg.except_interfaces.is_empty()
        || cfg.dns.auth.server.is_some();
    if named {
        return true;
    }
    match client {
        IpAddr::V4(c) => {
            c.is_loopback()
                || ifaces
                    .values()
                    .flat_map(|i| &i.addrs)
                    .any(|a| same_subnet(c, a.addr, a.prefix))
        }
        IpAddr::V6(c) => {
            if let Some(v4) = c.to_ipv4_mapped() {
                return local_service_ok(cfg, ifaces, IpAddr::V4(v4), ifindex);
            }
            if c.is_loopback() {
                return true;
            }
            if interfaces::is_link_local6(c) {
                return ifaces
                    .get(&ifindex)
                    .is_some_and(|i| i.addrs6.iter().any(|a| interfaces::is_link_local6(a.addr)));
            }
            ifaces
                .values()
                .flat_map(|i| &i.addrs6)
                .filter(|a| !interfaces::is_link_local6(a.addr))
                .any(|a| interfaces::same_net6(c, a.addr, a.prefix))
        }
    }
}

/// With `localise-queries`, the subnet a query sent to our address `dst`
/// was asked from: `dst` with the prefix of the interface that has it
/// (which need not be the one the query came in on, as in dnsmasq). IPv4
/// only, as dnsmasq; `None` without the option.
pub(super) fn arrival_net(
    cfg: &Config,
    ifaces: &HashMap<u32, Interface>,
    dst: IpAddr,
) -> Option<Net> {
    if !cfg.dns.localise_queries {
        return None;
    }
    let IpAddr::V4(dst) = dst else {
        return None;
    };
    ifaces
        .values()
        .flat_map(|i| &i.addrs)
        .find(|a| a.addr == dst)
        .map(|a| Net {
            addr: IpAddr::V4(dst),
            prefix: a.prefix,
        })
}

#[cfg(test)]
#[path = "listen_tests.rs"]
mod tests;
