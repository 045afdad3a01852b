//! Which network a request belongs to: the ranges that serve it, the netmask,
//! the server address to speak from, the dhcp-host line that matches the
//! client and the tags that select options. Pure functions of the config and
//! the arrival interface.

use std::net::Ipv4Addr;

use crate::config::{DhcpHost, DhcpRange, TagMatch};
use crate::net::ipv4::{broadcast_of, mask, network_of, prefix_of, same_subnet, IfAddr};

use super::request::Request;

/// Where a request arrived, as the socket shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub ifname: String,
    pub ifindex: u32,
    pub addrs: Vec<IfAddr>,
    /// The request was sent to a broadcast address (tells REBINDING from
    /// RENEWING, RFC 2131 §4.3.2).
    pub to_broadcast: bool,
}

/// The network a request is served on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Our address on it: the server identifier and the reply's source.
    pub server: Ipv4Addr,
    pub net: Ipv4Addr,
    pub prefix: u8,
    pub broadcast: Ipv4Addr,
    /// Indexes into the config's dhcp-ranges that serve this network, in
    /// config order, after tag filtering.
    pub ranges: Vec<usize>,
}

impl Network {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        same_subnet(ip, self.net, self.prefix)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        mask(self.prefix)
    }
}

pub fn tags_match(conds: &[TagMatch], tags: &[String]) -> bool {
    conds
        .iter()
        .all(|c| tags.iter().any(|t| t.eq_ignore_ascii_case(&c.name)) != c.negate)
}

/// Finds the network for a request. Relayed requests are placed by giaddr
/// (using the range's netmask, or the netmask of a local address on the same
/// subnet); direct ones by the arrival interface's addresses.
pub fn select(
    ranges: &[DhcpRange],
    req: &Request,
    arrival: &Arrival,
    tags: &[String],
) -> Option<Network> {
    let usable = |r: &DhcpRange| tags_match(&r.match_tags, tags);
    if !req.giaddr.is_unspecified() {
        let g = req.giaddr;
        let local_prefix = arrival
            .addrs
            .iter()
            .find(|a| same_subnet(a.addr, g, a.prefix))
            .map(|a| a.prefix);
        let server = arrival.addrs.first()?.addr;
        let mut found: Option<Network> = None;
        for (i, r) in ranges.iter().enumerate() {
            let Some(prefix) = r.netmask.map(prefix_of).or(local_prefix) else {
                continue;
            };
            if !usable(r) || !same_subnet(r.start, g, prefix) {
                continue;
            }
            let n = found.get_or_insert_with(|| Network {
                server,
                net: network_of(g, prefix),
                prefix,
                broadcast: r.broadcast.unwrap_or_else(|| broadcast_of(g, prefix)),
                ranges: Vec::new(),
            });
            if n.prefix == prefix {
                n.ranges.push(i);
            }
        }
        return found;
    }
    for a in &arrival.addrs {
        let ranges_here: Vec<usize> = ranges
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                let prefix = r.netmask.map(prefix_of).unwrap_or(a.prefix);
                usable(r)
                    && same_subnet(r.start, a.addr, prefix)
                    && same_subnet(r.end, a.addr, prefix)
            })
            .map(|(i, _)| i)
            .collect();
        if let Some(&first) = ranges_here.first() {
            let r = &ranges[first];
            let prefix = r.netmask.map(prefix_of).unwrap_or(a.prefix);
            return Some(Network {
                server: a.addr,
                net: network_of(a.addr, prefix),
                prefix,
                broadcast: r.broadcast.unwrap_or_else(|| broadcast_of(a.addr, prefix)),
                ranges: ranges_here,
            });
        }
    }
    None
}

/// The dhcp-host line for this client: by client-id first, then by
/// hardware address, then (for lines with neither) by the name the client
/// offers, as dnsmasq does.
pub fn find_host<'a>(
    hosts: &'a [DhcpHost],
    req: &Request,
    tags: &[String],
) -> Option<&'a DhcpHost> {
    let usable = |h: &&DhcpHost| tags_match(&h.match_tags, tags);
    if let Some(id) = &req.client_id {
        if let Some(h) = hosts
            .iter()
            .filter(usable)
            .find(|h| h.client_ids.iter().any(|c| c == id))
        {
            return Some(h);
        }
    }
    if let Some(h) = hosts
        .iter()
        .filter(usable)
        .find(|h| h.macs.iter().any(|m| m.matches(req.htype, &req.chaddr)))
    {
        return Some(h);
    }
    let name = req.offered_name()?;
    hosts.iter().filter(usable).find(|h| {
        h.macs.is_empty()
            && h.client_ids.is_empty()
            && h.hostname
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LeaseTime, MacPattern};
    use crate::dhcp::request::{build::RawRequest, decode};

    fn range(start: [u8; 4], end: [u8; 4]) -> DhcpRange {
        DhcpRange {
            match_tags: vec![],
            set_tag: None,
            start: start.into(),
            end: end.into(),
            netmask: None,
            broadcast: None,
            lease_time: LeaseTime::Secs(3600),
            is_static: false,
        }
    }

    fn arrival(addrs: &[([u8; 4], u8)]) -> Arrival {
        Arrival {
            ifname: "tmq0".into(),
            ifindex: 2,
            addrs: addrs
                .iter()
                .map(|&(a, p)| IfAddr {
                    addr: a.into(),
                    prefix: p,
                })
                .collect(),
            to_broadcast: true,
        }
    }

    #[test]
    fn direct_request_uses_the_interface_subnet() {
        let ranges = vec![
            range([198, 18, 1, 10], [198, 18, 1, 20]),
            range([198, 18, 0, 10], [198, 18, 0, 20]),
        ];
        let req = decode(&RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1).finish()).unwrap();
        let n = select(&ranges, &req, &arrival(&[([198, 18, 0, 1], 24)]), &[]).unwrap();
        assert_eq!(n.server, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(n.ranges, vec![1]);
        assert_eq!(n.broadcast, Ipv4Addr::new(198, 18, 0, 255));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(select(&ranges, &req, &arrival(&[([198, 19, 0, 1], 24)]), &[]).is_none());
    }

    #[test]
    fn relayed_request_is_placed_by_giaddr() {
        let mut r = range([198, 18, 7, 10], [198, 18, 7, 20]);
        r.netmask = Some(Ipv4Addr::new(255, 255, 255, 0));
        let ranges = vec![range([198, 18, 0, 10], [198, 18, 0, 20]), r];
        let req = decode(
            &RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1)
                .giaddr([198, 18, 7, 1].into())
                .finish(),
        )
        .unwrap();
        let n = select(&ranges, &req, &arrival(&[([198, 18, 0, 1], 24)]), &[]).unwrap();
        assert_eq!(n.ranges, vec![1]);
        assert_eq!(n.server, Ipv4Addr::new(198, 18, 0, 1));
        assert!(n.contains(Ipv4Addr::new(198, 18, 7, 200)));
    }

    #[test]
    fn tags_select_ranges_and_negate() {
        let mut tagged = range([198, 18, 0, 10], [198, 18, 0, 20]);
        tagged.match_tags = vec![TagMatch {
            name: "lab".into(),
            negate: false,
        }];
        let mut not_lab = range([198, 18, 0, 30], [198, 18, 0, 40]);
        not_lab.match_tags = vec![TagMatch {
            name: "lab".into(),
            negate: true,
        }];
        let ranges = vec![tagged, not_lab];
        let req = decode(&RawRequest::new(1, [2, 0, 0, 0, 0, 1], 1).finish()).unwrap();
        let a = arrival(&[([198, 18, 0, 1], 24)]);
        assert_eq!(
            select(&ranges, &req, &a, &["lab".into()]).unwrap().ranges,
            vec![0]
        );
        assert_eq!(select(&ranges, &req, &a, &[]).unwrap().ranges, vec![1]);
    }

    #[test]
    fn host_matching_prefers_client_id_then_mac_then_name() {
        let by_mac = DhcpHost {
            macs: vec![MacPattern {
                htype: None,
                bytes: vec![Some(2), None, Some(0), Some(0), Some(0), Some(1)],
            }],
            ip: Some(Ipv4Addr::new(198, 18, 0, 5)),
            ..Default::default()
        };
        let by_id = DhcpHost {
            client_ids: vec![vec![1, 9]],
            ip: Some(Ipv4Addr::new(198, 18, 0, 6)),
            ..Default::default()
        };
        let by_name = DhcpHost {
            hostname: Some("printer".into()),
            ip: Some(Ipv4Addr::new(198, 18, 0, 7)),
            ..Default::default()
        };
        let hosts = vec![by_mac, by_id, by_name];
        let plain = decode(&RawRequest::new(1, [2, 0xaa, 0, 0, 0, 1], 1).finish()).unwrap();
        assert_eq!(
            find_host(&hosts, &plain, &[]).unwrap().ip,
            Some(Ipv4Addr::new(198, 18, 0, 5))
        );
        let with_id = decode(
            &RawRequest::new(1, [2, 0xaa, 0, 0, 0, 1], 1)
                .opt(61, &[1, 9])
                .finish(),
        )
        .unwrap();
        assert_eq!(
            find_host(&hosts, &with_id, &[]).unwrap().ip,
            Some(Ipv4Addr::new(198, 18, 0, 6))
        );
        let named = decode(
            &RawRequest::new(1, [4, 0, 0, 0, 0, 1], 1)
                .opt(12, b"Printer")
                .finish(),
        )
        .unwrap();
        assert_eq!(
            find_host(&hosts, &named, &[]).unwrap().ip,
            Some(Ipv4Addr::new(198, 18, 0, 7))
        );
        let other = decode(&RawRequest::new(1, [4, 0, 0, 0, 0, 1], 1).finish()).unwrap();
        assert!(find_host(&hosts, &other, &[]).is_none());
    }
}
