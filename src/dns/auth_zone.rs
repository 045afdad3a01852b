//! Answers from the authoritative zones (`auth-zone`), built from the same
//! local data as the rest of the authority, the way dnsmasq 2.90's
//! `answer_auth()` builds them (each rule checked against it):
//!
//! - At an `auth-server` interface or address every answer has AA and no
//!   RA; names outside every zone are REFUSED. A query for a zone name at
//!   the normal service gets the same records, without AA (but with RA),
//!   NXDOMAIN without SOA, and no address filtering ("local" mode); other
//!   names take the normal path.
//! - Records in a zone: `mx-host`, `srv-host`, `txt-record` and `cname`
//!   names in it; hosts-file and `host-record` addresses of names in it;
//!   lease names as `<host>.<zone>`. Addresses outside the zone's subnets,
//!   or excluded, are left out (authoritative service only).
//! - Authoritative answers carry NS records in the authority section, or
//!   the SOA when there is no answer; NXDOMAIN for names that do not exist.
//! - `in-addr.arpa`/`ip6.arpa` names of a zone's subnets answer PTR, SOA and
//!   NS at the authoritative service.
//! - AXFR of a zone: over TCP, to `auth-peer`s (or, without any, to anyone
//!   when `auth-sec-servers` is set); SOA, NS, the records, SOA.
//!
//! Where twinmasq differs on purpose: a refused transfer gets REFUSED
//! (dnsmasq closes the connection), IXFR is answered (the SOA alone when
//! the client is current, else the whole zone; dnsmasq answers NODATA), and
//! the serial is derived from the lease data (see `zone::zone_serial`).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::super::names::{key_of, normalize, parse_reverse_prefix, to_name};
use super::super::zone::{serial_gt, Zone};
use super::{txt_rdata, AuthQuery, AuthVerdict, Authority, Service};
use std::net::IpAddr;

impl Authority {
    pub(super) fn auth_verdict(&self, q: &AuthQuery<'_>, now: u64) -> AuthVerdict {
        let auth = q.service == Service::Authoritative;
        let not_ours = if auth {
            AuthVerdict::Refused
        } else {
            AuthVerdict::NotMine
        };
        if self.zones.is_empty() || q.qclass != DNSClass::IN {
            return not_ours;
        }
        let key = key_of(q.name);
        if auth && matches!(q.qtype, RecordType::PTR | RecordType::SOA | RecordType::NS) {
            if let Some(ip) = parse_reverse_prefix(&key) {
                return self.auth_reverse(q.qtype, ip, now);
            }
        }
        let Some(zone) = self.zones.zone_of(&key) else {
            return not_ours;
        };
        if key == zone.domain && matches!(q.qtype, RecordType::AXFR | RecordType::IXFR) {
            return self.transfer(q, zone, now);
        }
        self.auth_forward(q, zone, &key, now)
    }

    /// PTR, SOA and NS in the reverse zone of a zone's subnet. dnsmasq
    /// answers SOA and NS at the reverse zone's name whatever name below it
    /// was asked, and only names itself (not the secondaries) there.
    fn auth_reverse(&self, qtype: RecordType, ip: IpAddr, now: u64) -> AuthVerdict {
        let Some((zone, net)) = self.zones.reverse_zone_of(ip) else {
            return AuthVerdict::Refused;
        };
        let apex = net.reverse_zone();
        let soa = || self.zones.soa(&apex).into_iter().collect::<Vec<_>>();
        let ns = || self.zones.ns(&apex, false);
        let (rcode, answers, authorities) = match qtype {
            RecordType::SOA => (ResponseCode::NoError, soa(), ns()),
            RecordType::NS => (ResponseCode::NoError, ns(), Vec::new()),
            _ => {
                let Some(owner) = to_name(&super::super::names::reverse_name(ip)) else {
                    return AuthVerdict::Refused;
                };
                let ptrs: Vec<Record> = self
                    .zone_ptr_names(zone, ip, now)
                    .iter()
                    .filter_map(|n| to_name(n))
                    .map(|n| self.zones.record(&owner, RData::PTR(PTR(n))))
                    .collect();
                if ptrs.is_empty() {
                    (ResponseCode::NXDomain, Vec::new(), soa())
                } else {
                    (ResponseCode::NoError, ptrs, ns())
                }
            }
        };
        AuthVerdict::Answer {
            rcode,
            answers,
            authorities,
            authoritative: true,
        }
    }

    /// The names `ip` has in `zone`: its lease's (as `<host>.<zone>`) and
    /// its hosts/host-record name when that is in the zone.
    fn zone_ptr_names(&self, zone: &Zone, ip: IpAddr, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        if let IpAddr::V4(v4) = ip {
            if let Some(l) = self.leases.get(&v4).filter(|l| !l.expires.is_past(now)) {
                if let Some(host) = l.names.first() {
                    out.push(format!("{host}.{}", zone.domain));
                }
            }
        }
        if let Some((name, _)) = self.rev.get(&ip) {
            if zone.holds(name) && !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// The lease addresses of `host` (a bare label), unless a hosts or
    /// host-record name shadows it, as the normal path does.
    fn zone_lease_addrs(&self, host: &str, now: u64) -> Vec<std::net::Ipv4Addr> {
        if self.has_static_addrs(host) {
            return Vec::new();
        }
        self.lease_addrs(host, now)
    }

    fn auth_forward(&self, q: &AuthQuery<'_>, zone: &Zone, key: &str, now: u64) -> AuthVerdict {
        let auth = q.service == Service::Authoritative;
        let admits = |ip: IpAddr| !auth || zone.admits(ip);
        let qtype = q.qtype;
        let mut aa = auth;
        let (mut soa, mut ns, mut nxdomain) = (false, false, true);
        let mut answers = Vec::new();
        let mut cur = key.to_string();
        let mut owner = q.name.clone();
        // dnsmasq follows one CNAME, and treats its target like the apex
        // (no lease names, the SOA/NS flags).
        let mut after_cname = false;
        loop {
            let data = self.names.get(&cur);
            if let Some(d) = data {
                if !(d.mx.is_empty() && d.srv.is_empty() && d.txt.is_empty()) {
                    nxdomain = false;
                }
                if qtype == RecordType::MX {
                    for (pref, t) in &d.mx {
                        if let Some(n) = to_name(t) {
                            answers.push(self.zones.record(&owner, RData::MX(MX::new(*pref, n))));
                        }
                    }
                }
                if qtype == RecordType::SRV {
                    for (prio, weight, port, t) in &d.srv {
                        let n = t.as_deref().and_then(to_name).unwrap_or_else(Name::root);
                        let srv = SRV::new(*prio, *weight, *port, n);
                        answers.push(self.zones.record(&owner, RData::SRV(srv)));
                    }
                }
                if qtype == RecordType::TXT {
                    for texts in &d.txt {
                        answers.push(self.zones.record(&owner, RData::TXT(txt_rdata(texts))));
                    }
                }
            }
            if cur == zone.domain || after_cname {
                nxdomain = false;
                if qtype == RecordType::SOA {
                    soa = true;
                    aa = true;
                } else if qtype == RecordType::NS {
                    ns = true;
                    aa = true;
                }
            }
            let host = zone.relative(&cur).filter(|h| !h.contains('.'));
            if let (false, Some(host)) = (after_cname, host) {
                let ips = self.zone_lease_addrs(host, now);
                if !ips.is_empty() {
                    nxdomain = false;
                }
                if qtype == RecordType::A {
                    for ip in ips.into_iter().filter(|ip| admits(IpAddr::V4(*ip))) {
                        answers.push(self.zones.record(&owner, RData::A(A(ip))));
                    }
                }
            }
            if let Some(d) = data.filter(|d| !d.addrs.is_empty()) {
                nxdomain = false;
                for (ip, _) in d.addrs.iter().filter(|(ip, _)| admits(*ip)) {
                    match (ip, qtype) {
                        (IpAddr::V4(v4), RecordType::A) => {
                            answers.push(self.zones.record(&owner, RData::A(A(*v4))))
                        }
                        (IpAddr::V6(v6), RecordType::AAAA) => {
                            answers.push(self.zones.record(&owner, RData::AAAA(AAAA(*v6))))
                        }
                        _ => {}
                    }
                }
            }
            // A CNAME only for a name with nothing else, as dnsmasq.
            let cname = data.and_then(|d| d.cname.as_ref());
            if let (true, false, Some((target, _))) = (nxdomain, after_cname, cname) {
                let target = qualify(target, &zone.domain);
                if let Some(t) = to_name(&target) {
                    answers.push(self.zones.record(&owner, RData::CNAME(CNAME(t.clone()))));
                    owner = t;
                    cur = normalize(&target);
                    after_cname = true;
                    continue;
                }
            }
            if nxdomain && self.ents.contains(&cur) {
                nxdomain = false;
            }
            break;
        }
        let mut authorities = Vec::new();
        if aa {
            let apex = &zone.domain;
            if (answers.is_empty() && !ns) || soa {
                if let Some(r) = self.zones.soa(apex) {
                    if soa {
                        answers.push(r);
                    } else {
                        authorities.push(r);
                    }
                }
            }
            if !answers.is_empty() || ns {
                let recs = self.zones.ns(apex, true);
                if ns {
                    answers.extend(recs);
                } else {
                    authorities.extend(recs);
                }
            }
        }
        AuthVerdict::Answer {
            rcode: if nxdomain {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            },
            answers,
            authorities,
            authoritative: aa,
        }
    }

    fn transfer(&self, q: &AuthQuery<'_>, zone: &Zone, now: u64) -> AuthVerdict {
        if q.qtype == RecordType::AXFR && !q.tcp {
            return AuthVerdict::Drop;
        }
        if !self.zones.may_transfer(q.peer) {
            tracing::warn!("refusing zone transfer of {} to {}", zone.domain, q.peer);
            return AuthVerdict::Refused;
        }
        if q.qtype == RecordType::IXFR {
            // RFC 1995: the SOA alone tells a current client it is current,
            // and any client over UDP to come back over TCP.
            let current = q
                .client_serial
                .is_some_and(|c| !serial_gt(self.zones.serial(), c));
            if !q.tcp || current {
                return AuthVerdict::Answer {
                    rcode: ResponseCode::NoError,
                    answers: self.zones.soa(&zone.domain).into_iter().collect(),
                    authorities: Vec::new(),
                    authoritative: true,
                };
            }
        }
        let filter = q.service == Service::Authoritative;
        AuthVerdict::Transfer(self.zone_records(zone, filter, now))
    }

    /// The whole zone for a transfer: SOA, NS, the record options, lease
    /// names, hosts and host-record addresses, SOA. `filter`: leave out
    /// addresses outside the zone's subnets (authoritative service).
    pub(super) fn zone_records(&self, zone: &Zone, filter: bool, now: u64) -> Vec<Record> {
        let admits = |ip: IpAddr| !filter || zone.admits(ip);
        let apex = &zone.domain;
        let Some(soa) = self.zones.soa(apex) else {
            return Vec::new();
        };
        let mut out = vec![soa.clone()];
        out.extend(self.zones.ns(apex, true));
        let mut keys: Vec<&String> = self.names.keys().filter(|k| zone.holds(k)).collect();
        keys.sort();
        let named = |k: &str| to_name(k);
        for k in &keys {
            let (Some(d), Some(owner)) = (self.names.get(*k), named(k)) else {
                continue;
            };
            for (pref, t) in &d.mx {
                if let Some(n) = to_name(t) {
                    out.push(self.zones.record(&owner, RData::MX(MX::new(*pref, n))));
                }
            }
            for (prio, weight, port, t) in &d.srv {
                let n = t.as_deref().and_then(to_name).unwrap_or_else(Name::root);
                let srv = SRV::new(*prio, *weight, *port, n);
                out.push(self.zones.record(&owner, RData::SRV(srv)));
            }
            for texts in &d.txt {
                out.push(self.zones.record(&owner, RData::TXT(txt_rdata(texts))));
            }
            if let Some(t) = d
                .cname
                .as_ref()
                .and_then(|(t, _)| to_name(&qualify(t, apex)))
            {
                out.push(self.zones.record(&owner, RData::CNAME(CNAME(t))));
            }
        }
        let mut leases: Vec<(String, std::net::Ipv4Addr)> = self
            .leases
            .iter()
            .filter(|(ip, l)| !l.expires.is_past(now) && admits(IpAddr::V4(**ip)))
            .filter_map(|(ip, l)| l.names.first().map(|h| (h.clone(), *ip)))
            .filter(|(h, _)| !self.has_static_addrs(h))
            .collect();
        leases.sort();
        for (host, ip) in leases {
            if let Some(owner) = to_name(&format!("{host}.{apex}")) {
                out.push(self.zones.record(&owner, RData::A(A(ip))));
            }
        }
        for k in &keys {
            let (Some(d), Some(owner)) = (self.names.get(*k), named(k)) else {
                continue;
            };
            for (ip, _) in d.addrs.iter().filter(|(ip, _)| admits(*ip)) {
                let data = match ip {
                    IpAddr::V4(v4) => RData::A(A(*v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                out.push(self.zones.record(&owner, data));
            }
        }
        out.push(soa);
        out
    }
}

/// dnsmasq qualifies an unqualified CNAME target with the zone's domain.
fn qualify(target: &str, zone: &str) -> String {
    if target.contains('.') {
        target.to_string()
    } else {
        format!("{target}.{zone}")
    }
}

#[cfg(test)]
#[path = "auth_zone_tests.rs"]
mod tests;
