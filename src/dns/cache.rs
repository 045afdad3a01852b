//! The answer cache: what upstream servers told us, kept until the TTL runs
//! out. Bounded by `cache-size` entries; least recently used entries go
//! first when it is full, found through an ordered index so eviction never
//! scans. Time comes in as `now_ms`; nothing here reads a clock.

use std::collections::{BTreeMap, HashMap};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::config::dns_types::DnsConfig;

/// dnsmasq caps `min-cache-ttl` at one hour so a typo cannot pin stale
/// answers for days; keep the same bound.
pub const MAX_MIN_CACHE_TTL: u32 = 3600;

/// The type under which a name-wide NXDOMAIN is kept (`bogus-nxdomain`):
/// type 0 is reserved (RFC 6895), so no upstream answer is stored under it.
const NAME_WIDE: RecordType = RecordType::ZERO;

/// (lowercased name, type, class): names compare case-insensitively in DNS,
/// so `Example.COM` and `example.com` share one entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub name: Name,
    pub qtype: RecordType,
    pub qclass: DNSClass,
}

impl CacheKey {
    pub fn new(name: &Name, qtype: RecordType, qclass: DNSClass) -> Self {
        CacheKey {
            name: name.to_lowercase(),
            qtype,
            qclass,
        }
    }
}

/// What a cache hit gives back: records with TTLs already counted down.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// NoError (with answers, or empty for NODATA) or NXDomain.
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA of a negative answer, so clients can cache it too.
    pub authorities: Vec<Record>,
    /// Until when (ms) the same entry gives the same TTLs: the next
    /// whole second of its age, or its expiry if sooner.
    pub steady_until_ms: u64,
}

impl CachedAnswer {
    pub fn is_negative(&self) -> bool {
        self.rcode != ResponseCode::NoError || self.answers.is_empty()
    }
}

#[derive(Debug)]
struct Entry {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    stored_ms: u64,
    expires_ms: u64,
    /// Position in the LRU index.
    stamp: u64,
}

impl Entry {
    /// Its share of `cache-size`.
    fn weight(&self) -> usize {
        // A name-wide NXDOMAIN holds no record but still takes a slot, as
        // its `crec` does in dnsmasq; otherwise such entries had no bound.
        (self.answers.len() + self.authorities.len()).max(1)
    }
}

/// What the cache did since start, for metrics. Plain counters: the
/// cache lives in the one DNS task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub insertions: u64,
    /// Live entries pushed out to make room (`cache-size` reached).
    pub evictions: u64,
    /// Entries found past their TTL and dropped.
    pub expired: u64,
}

#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    no_negcache: bool,
    min_ttl: u32,
    max_ttl: Option<u32>,
    /// `neg-ttl`
    neg_ttl: u32,
    entries: HashMap<CacheKey, Entry>,
    /// Records held by all entries. `cache-size` counts records, as in
    /// dnsmasq (one `crec` per record): counting RRsets instead would let
    /// a client who picks names with long answers make every entry large.
    records: usize,
    /// stamp -> key, oldest use first. Stamps only grow, so the first entry
    /// is always the least recently used one.
    lru: BTreeMap<u64, CacheKey>,
    next_stamp: u64,
    stats: CacheStats,
    /// Whether a name-wide NXDOMAIN was ever stored, so lookups skip the
    /// extra probe until `bogus-nxdomain` has fired.
    name_wide: bool,
}

impl Cache {
    pub fn new(cfg: &DnsConfig) -> Self {
        Cache {
            capacity: cfg.cache_size as usize,
            no_negcache: cfg.no_negcache,
            min_ttl: cfg.min_cache_ttl.min(MAX_MIN_CACHE_TTL),
            max_ttl: cfg.max_cache_ttl,
            neg_ttl: cfg.neg_ttl,
            entries: HashMap::new(),
            records: 0,
            lru: BTreeMap::new(),
            next_stamp: 0,
            stats: CacheStats::default(),
            name_wide: false,
        }
    }

    /// `cache-size`: the most records kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Records held (what `cache-size` bounds).
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.records = 0;
        self.lru.clear();
    }

    fn clamp(&self, ttl: u32) -> u32 {
        let ttl = ttl.max(self.min_ttl);
        match self.max_ttl {
            Some(max) => ttl.min(max),
            None => ttl,
        }
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(e) = self.entries.remove(key) {
            self.records -= e.weight();
            self.lru.remove(&e.stamp);
        }
    }

    /// Look up a question. Expired entries are dropped on the way; a hit
    /// refreshes the entry's place in the LRU order.
    pub fn get(&mut self, key: &CacheKey, now_ms: u64) -> Option<CachedAnswer> {
        if self.name_wide {
            let wide = CacheKey {
                name: key.name.clone(),
                qtype: NAME_WIDE,
                qclass: key.qclass,
            };
            if let Some(hit) = self.get_entry(&wide, now_ms) {
                return Some(hit);
            }
        }
        self.get_entry(key, now_ms)
    }

    fn get_entry(&mut self, key: &CacheKey, now_ms: u64) -> Option<CachedAnswer> {
        let expired = match self.entries.get(key) {
            None => return None,
            Some(e) => now_ms >= e.expires_ms,
        };
        if expired {
            self.remove(key);
            self.stats.expired += 1;
            return None;
        }
        let stamp = self.stamp();
        let e = self.entries.get_mut(key)?;
        self.lru.remove(&e.stamp);
        e.stamp = stamp;
        self.lru.insert(stamp, key.clone());
        let elapsed = u32::try_from(now_ms.saturating_sub(e.stored_ms) / 1000).unwrap_or(u32::MAX);
        let count_down = |recs: &[Record]| {
            recs.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(elapsed);
                    r
                })
                .collect::<Vec<_>>()
        };
        let next_tick = e
            .stored_ms
            .saturating_add((u64::from(elapsed) + 1).saturating_mul(1000));
        Some(CachedAnswer {
            rcode: e.rcode,
            answers: count_down(&e.answers),
            authorities: count_down(&e.authorities),
            steady_until_ms: next_tick.min(e.expires_ms),
        })
    }

    /// `bogus-nxdomain`: `name` answers NXDOMAIN for every type for `ttl`
    /// seconds (clamped like an address record's). dnsmasq stores this
    /// even with `no-negcache`, and so do we.
    pub fn insert_nxdomain_name(&mut self, name: &Name, ttl: u32, now_ms: u64) -> bool {
        let ttl = self.clamp(ttl);
        if self.capacity == 0 || ttl == 0 {
            return false;
        }
        self.name_wide = true;
        let key = CacheKey::new(name, NAME_WIDE, DNSClass::IN);
        self.store(
            key,
            ResponseCode::NXDomain,
            Vec::new(),
            Vec::new(),
            ttl,
            now_ms,
        );
        true
    }

    /// `neg-ttl`, for a negative answer without an SOA. As dnsmasq 2.90
    /// does (seen on the wire): NXDOMAIN holds for every type of the name,
    /// NODATA is kept for address queries only.
    fn insert_neg_ttl(&mut self, key: CacheKey, rcode: ResponseCode, now_ms: u64) -> bool {
        if self.neg_ttl == 0 {
            return false;
        }
        if rcode == ResponseCode::NXDomain {
            return self.insert_nxdomain_name(&key.name, self.neg_ttl, now_ms);
        }
        let ttl = self.clamp(self.neg_ttl);
        if !matches!(key.qtype, RecordType::A | RecordType::AAAA) || ttl == 0 {
            return false;
        }
        self.store(key, rcode, Vec::new(), Vec::new(), ttl, now_ms);
        true
    }

    /// Store an upstream answer for `key`, if it is cacheable: NOERROR with
    /// answers, or (unless `no-negcache`) NXDOMAIN/NODATA carrying an SOA.
    /// Returns whether it was stored. The caller must not offer truncated
    /// answers: they are incomplete by definition.
    pub fn insert(
        &mut self,
        key: CacheKey,
        rcode: ResponseCode,
        answers: &[Record],
        authorities: &[Record],
        now_ms: u64,
    ) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let (answers, authorities, ttl) = match rcode {
            ResponseCode::NoError if !answers.is_empty() => {
                // Any TTL-0 record means "use once": dnsmasq does not cache
                // such answers, and neither do we.
                if answers.iter().any(|r| r.ttl == 0) {
                    return false;
                }
                let answers: Vec<Record> = answers
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        r.ttl = self.clamp(r.ttl);
                        r
                    })
                    .collect();
                let ttl = answers.iter().map(|r| r.ttl).min().unwrap_or(0);
                (answers, Vec::new(), ttl)
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                if self.no_negcache {
                    return false;
                }
                // RFC 2308: the negative TTL is the lesser of the SOA's own
                // TTL and its MINIMUM field. Without an SOA dnsmasq goes by
                // `neg-ttl`, and does not cache the answer when it is 0.
                let Some(soa) = authorities
                    .iter()
                    .find(|r| r.record_type() == RecordType::SOA)
                else {
                    return self.insert_neg_ttl(key, rcode, now_ms);
                };
                let RData::SOA(s) = &soa.data else {
                    return false;
                };
                let ttl = self.clamp(soa.ttl.min(s.minimum));
                if ttl == 0 {
                    return false;
                }
                let mut soa = soa.clone();
                soa.ttl = ttl;
                (Vec::new(), vec![soa], ttl)
            }
            _ => return false,
        };
        if ttl == 0 || answers.len() + authorities.len() > self.capacity {
            return false;
        }
        self.store(key, rcode, answers, authorities, ttl, now_ms);
        true
    }

    fn store(
        &mut self,
        key: CacheKey,
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
        ttl: u32,
        now_ms: u64,
    ) {
        let weight = (answers.len() + authorities.len()).max(1);
        self.remove(&key);
        while self.records + weight > self.capacity {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.records -= e.weight();
            }
            self.stats.evictions += 1;
        }
        self.records += weight;
        self.stats.insertions += 1;
        let stamp = self.stamp();
        self.lru.insert(stamp, key.clone());
        self.entries.insert(
            key,
            Entry {
                rcode,
                answers,
                authorities,
                stored_ms: now_ms,
                expires_ms: now_ms.saturating_add(u64::from(ttl) * 1000),
                stamp,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::net::Ipv4Addr;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(n: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(n), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        Record::from_rdata(
            name("example."),
            ttl,
            RData::SOA(SOA::new(
                name("ns.example."),
                name("host.example."),
                1,
                3600,
                600,
                86400,
                minimum,
            )),
        )
    }

    fn cfg(size: u32) -> DnsConfig {
        DnsConfig {
            cache_size: size,
            ..DnsConfig::default()
        }
    }

    fn key(n: &str) -> CacheKey {
        CacheKey::new(&name(n), RecordType::A, DNSClass::IN)
    }

    #[test]
    fn dns_cache_positive_ttl_countdown_and_expiry() {
        let mut c = Cache::new(&cfg(10));
        assert!(c.insert(
            key("a.example."),
            ResponseCode::NoError,
            &[a("a.example.", 300, [198, 18, 0, 1])],
            &[],
            1_000
        ));
        // Case-insensitive key.
        let hit = c.get(&key("A.Example."), 11_500).unwrap();
        assert_eq!(hit.answers[0].ttl, 290);
        assert!(!hit.is_negative());
        assert!(c.get(&key("a.example."), 301_000).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn dns_cache_ttl0_and_bad_rcodes_not_cached() {
        let mut c = Cache::new(&cfg(10));
        assert!(!c.insert(
            key("a."),
            ResponseCode::NoError,
            &[a("a.", 0, [198, 18, 0, 1])],
            &[],
            0
        ));
        assert!(!c.insert(key("a."), ResponseCode::ServFail, &[], &[], 0));
        assert!(c.is_empty());
    }

    #[test]
    fn dns_cache_negative_uses_soa_minimum() {
        let mut c = Cache::new(&cfg(10));
        assert!(c.insert(
            key("nx.example."),
            ResponseCode::NXDomain,
            &[],
            &[soa(3600, 60)],
            0
        ));
        let hit = c.get(&key("nx.example."), 10_000).unwrap();
        assert_eq!(hit.rcode, ResponseCode::NXDomain);
        assert_eq!(hit.authorities[0].ttl, 50);
        assert!(c.get(&key("nx.example."), 60_000).is_none());
        // Without an SOA there is no TTL to use: not cached.
        assert!(!c.insert(key("x."), ResponseCode::NXDomain, &[], &[], 0));
    }

    #[test]
    fn dns_cache_no_negcache() {
        let mut c = Cache::new(&DnsConfig {
            no_negcache: true,
            ..cfg(10)
        });
        assert!(!c.insert(key("nx."), ResponseCode::NXDomain, &[], &[soa(3600, 60)], 0));
    }

    #[test]
    fn dns_cache_clamps() {
        let mut c = Cache::new(&DnsConfig {
            min_cache_ttl: 100,
            max_cache_ttl: Some(200),
            ..cfg(10)
        });
        c.insert(
            key("lo."),
            ResponseCode::NoError,
            &[a("lo.", 5, [198, 18, 0, 1])],
            &[],
            0,
        );
        c.insert(
            key("hi."),
            ResponseCode::NoError,
            &[a("hi.", 5000, [198, 18, 0, 1])],
            &[],
            0,
        );
        assert_eq!(c.get(&key("lo."), 0).unwrap().answers[0].ttl, 100);
        assert_eq!(c.get(&key("hi."), 0).unwrap().answers[0].ttl, 200);
    }

    #[test]
    fn dns_cache_bound_evicts_lru_and_zero_disables() {
        let mut c = Cache::new(&cfg(3));
        for (i, n) in ["a.", "b.", "c."].iter().enumerate() {
            c.insert(
                key(n),
                ResponseCode::NoError,
                &[a(n, 300, [198, 18, 0, i as u8])],
                &[],
                0,
            );
        }
        // Touch a. so b. is now the least recently used.
        assert!(c.get(&key("a."), 1).is_some());
        c.insert(
            key("d."),
            ResponseCode::NoError,
            &[a("d.", 300, [198, 18, 0, 9])],
            &[],
            2,
        );
        assert_eq!(c.len(), 3);
        assert!(c.get(&key("b."), 3).is_none());
        assert!(c.get(&key("a."), 3).is_some());
        assert!(c.get(&key("d."), 3).is_some());
        assert_eq!(
            c.stats(),
            CacheStats {
                insertions: 4,
                evictions: 1,
                expired: 0
            }
        );
        // Replacing an entry is no eviction; reading one past its TTL
        // drops it as expired.
        c.insert(
            key("d."),
            ResponseCode::NoError,
            &[a("d.", 300, [198, 18, 0, 9])],
            &[],
            4,
        );
        assert!(c.get(&key("c."), 300_001).is_none());
        assert_eq!(
            c.stats(),
            CacheStats {
                insertions: 5,
                evictions: 1,
                expired: 1
            }
        );
        c.clear();
        assert!(c.is_empty());

        // cache-size counts records: a three-record answer takes three
        // places, and evicts as many single-record entries as it needs.
        let mut c = Cache::new(&cfg(4));
        for (i, n) in ["a.", "b.", "c."].iter().enumerate() {
            c.insert(
                key(n),
                ResponseCode::NoError,
                &[a(n, 300, [198, 18, 0, i as u8])],
                &[],
                0,
            );
        }
        let three: Vec<Record> = (0..3).map(|i| a("m.", 300, [198, 18, 1, i])).collect();
        assert!(c.insert(key("m."), ResponseCode::NoError, &three, &[], 1));
        assert_eq!(c.len(), 4);
        assert!(c.get(&key("a."), 2).is_none() && c.get(&key("b."), 2).is_none());
        assert!(c.get(&key("c."), 2).is_some() && c.get(&key("m."), 2).is_some());
        // An answer larger than the whole cache is not kept at all.
        let five: Vec<Record> = (0..5).map(|i| a("f.", 300, [198, 18, 2, i])).collect();
        assert!(!c.insert(key("f."), ResponseCode::NoError, &five, &[], 3));
        assert_eq!(c.len(), 4);
        // Replacing an entry gives its places back first.
        assert!(c.insert(key("m."), ResponseCode::NoError, &three[..1], &[], 4));
        assert_eq!(c.len(), 2);

        let mut off = Cache::new(&cfg(0));
        assert!(!off.insert(
            key("a."),
            ResponseCode::NoError,
            &[a("a.", 300, [198, 18, 0, 1])],
            &[],
            0
        ));
    }
}
