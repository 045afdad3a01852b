//! Addresses held in memory only: offered and awaiting the client's
//! REQUEST, being ping-checked, or found answering a ping. Nothing here is
//! persisted: an offer is no promise (RFC 2131 §4.3.1), so losing one on a
//! crash costs the client one retry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;

use twinmasq_proto::ClientKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// A ping check with this token is running.
    Probing(u64),
    Offered,
    /// Something answered a ping on this address; keep away from it.
    InUse,
    /// A partner-share address whose lease ended less than an MCLT ago:
    /// not yet ours to hand out in partner-down. Held until it is, so the
    /// search skips it without rescanning.
    Recent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub client: Option<ClientKey>,
    pub until_ms: u64,
    pub kind: HoldKind,
}

#[derive(Debug, Default)]
pub struct Holds {
    by_ip: HashMap<Ipv4Addr, Hold>,
    by_client: HashMap<ClientKey, Ipv4Addr>,
    /// Expiry queue with lazy deletion: an entry whose hold changed since
    /// is skipped when it comes due.
    queue: BinaryHeap<Reverse<(u64, Ipv4Addr)>>,
}

impl Holds {
    pub fn get(&self, ip: Ipv4Addr) -> Option<&Hold> {
        self.by_ip.get(&ip)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.by_ip.contains_key(&ip)
    }

    pub fn of_client(&self, client: &ClientKey) -> Option<(Ipv4Addr, &Hold)> {
        let ip = *self.by_client.get(client)?;
        self.by_ip.get(&ip).map(|h| (ip, h))
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    pub fn put(&mut self, ip: Ipv4Addr, hold: Hold) {
        self.remove(ip);
        if let Some(c) = &hold.client {
            if let Some(old) = self.by_client.insert(c.clone(), ip) {
                if old != ip {
                    self.by_ip.remove(&old);
                }
            }
        }
        self.queue.push(Reverse((hold.until_ms, ip)));
        self.by_ip.insert(ip, hold);
    }

    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Hold> {
        let hold = self.by_ip.remove(&ip)?;
        if let Some(c) = &hold.client {
            if self.by_client.get(c) == Some(&ip) {
                self.by_client.remove(c);
            }
        }
        Some(hold)
    }

    /// Drops every hold of `kind` and returns their addresses.
    pub fn remove_kind(&mut self, kind: HoldKind) -> Vec<Ipv4Addr> {
        let ips: Vec<Ipv4Addr> = self
            .by_ip
            .iter()
            .filter(|(_, h)| h.kind == kind)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &ips {
            self.remove(*ip);
        }
        ips
    }

    /// Drops holds whose time is up and returns their addresses.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        while let Some(Reverse((until, ip))) = self.queue.peek().copied() {
            if until > now_ms {
                break;
            }
            self.queue.pop();
            if self.by_ip.get(&ip).is_some_and(|h| h.until_ms == until) {
                self.remove(ip);
                out.push(ip);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ClientKey {
        ClientKey::from_hwaddr(1, &[n; 6])
    }

    #[test]
    fn a_client_holds_one_address_and_holds_expire() {
        let mut h = Holds::default();
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 5), Ipv4Addr::new(198, 18, 0, 6));
        h.put(
            a,
            Hold {
                client: Some(key(1)),
                until_ms: 100,
                kind: HoldKind::Offered,
            },
        );
        h.put(
            b,
            Hold {
                client: Some(key(1)),
                until_ms: 200,
                kind: HoldKind::Offered,
            },
        );
        assert!(
            !h.contains(a),
            "moving the client's hold frees the old address"
        );
        assert_eq!(h.of_client(&key(1)).map(|(ip, _)| ip), Some(b));
        h.put(
            b,
            Hold {
                client: Some(key(1)),
                until_ms: 300,
                kind: HoldKind::Offered,
            },
        );
        assert!(
            h.expire(250).is_empty(),
            "a renewed hold ignores its stale queue entry"
        );
        assert_eq!(h.expire(300), vec![b]);
        assert!(h.is_empty() && h.of_client(&key(1)).is_none());
    }
}
