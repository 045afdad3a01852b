//! The DNS half of the parsed configuration. Names are stored lowercase,
//! without a trailing dot; an empty domain in a `/.../` list stands for
//! dnsmasq's "unqualified names" (`server=//ip`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub const DEFAULT_DNS_PORT: u16 = 53;
pub const DEFAULT_CACHE_SIZE: u32 = 150;
pub const DEFAULT_DNS_FORWARD_MAX: u32 = 150;
/// `edns-packet-max` default in dnsmasq 2.90: the DNS flag day 2020 size,
/// which crosses any path without IP fragmentation.
pub const DEFAULT_EDNS_PACKET_MAX: u16 = 1232;
/// Plain DNS's UDP size (RFC 1035); no EDNS size may be smaller.
pub const MIN_EDNS_PACKET_MAX: u16 = 512;
/// `max-tcp-connections` default in dnsmasq 2.90 (its MAX_PROCS).
pub const DEFAULT_MAX_TCP_CONNECTIONS: u32 = 20;
pub const DEFAULT_HOSTS_FILE: &str = "/etc/hosts";
pub const DEFAULT_RESOLV_FILE: &str = "/etc/resolv.conf";
/// dnsmasq's defaults for authoritative zones (`auth-ttl`, `auth-soa`).
pub const DEFAULT_AUTH_TTL: u32 = 600;
pub const DEFAULT_SOA_REFRESH: u32 = 1200;
pub const DEFAULT_SOA_RETRY: u32 = 180;
pub const DEFAULT_SOA_EXPIRY: u32 = 1_209_600;

/// Where queries for some domains go (`server=/dom/...`, `local=/dom/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainTarget {
    /// `server=/dom/ip[#port]`
    Upstream(SocketAddr),
    /// `local=/dom/` or `server=/dom/`: answered from local data only,
    /// NXDOMAIN otherwise; never forwarded.
    Local,
    /// `server=/dom/#`: use the normal (unqualified) servers.
    UseDefault,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainServer {
    pub domains: Vec<String>,
    pub target: DomainTarget,
}

/// `address=/dom/[ip]`: every name in (and under) the domains answers with
/// these addresses; an empty list answers NXDOMAIN (blocking); `#` is
/// stored as the unspecified addresses 0.0.0.0 and ::.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOverride {
    pub domains: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

/// An address with a prefix length (`bogus-nxdomain`, `ignore-address`):
/// every address of its family whose first `prefix` bits are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrPrefix {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl AddrPrefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix.min(32)))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix.min(128)))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `rev-server=net/prefix[,ip[#port]]`: the reverse zone of the subnet goes
/// to that server (or is local when none is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevServer {
    pub net: IpAddr,
    pub prefix: u8,
    pub target: DomainTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnameRecord {
    pub aliases: Vec<String>,
    pub target: String,
    pub ttl: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    pub name: String,
    /// dnsmasq's default target is the server's own name; None keeps that.
    pub target: Option<String>,
    pub preference: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// `_service._proto.domain`
    pub name: String,
    /// None: the service is not available here (empty SRV).
    pub target: Option<String>,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    pub name: String,
    /// Never empty: a bare `txt-record=name` holds one empty string, as
    /// in dnsmasq.
    pub texts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrRecord {
    pub name: String,
    pub target: Option<String>,
}

/// `host-record=name[,name...],[ipv4],[ipv6][,ttl]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub names: Vec<String>,
    pub addrs: Vec<IpAddr>,
    pub ttl: Option<u32>,
}

/// Which addresses of an interface an `auth-zone`/`auth-server` entry
/// means: `eth0` (all), `eth0/4`, `eth0/6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfFamily {
    Any,
    V4,
    V6,
}

impl IfFamily {
    pub fn admits(self, addr: IpAddr) -> bool {
        match self {
            IfFamily::Any => true,
            IfFamily::V4 => addr.is_ipv4(),
            IfFamily::V6 => addr.is_ipv6(),
        }
    }
}

/// One subnet of an `auth-zone`: literal, or the subnets of an interface's
/// addresses as they are when the server looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneNet {
    /// Host bits are kept as written; matching masks both sides.
    Subnet {
        addr: IpAddr,
        prefix: u8,
    },
    Interface {
        name: String,
        family: IfFamily,
    },
}

/// `auth-zone=domain[,subnet[/len]...][,exclude:subnet[/len]...]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthZone {
    pub domain: String,
    /// Addresses in the zone must be in one of these (none: no filter);
    /// they also define the reverse zones served.
    pub subnets: Vec<ZoneNet>,
    /// Addresses never answered from the zone.
    pub excludes: Vec<ZoneNet>,
}

/// `auth-server=name[,interface|address...]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthServer {
    /// The zone's primary name server (SOA MNAME, NS).
    pub name: String,
    /// Queries arriving here get the authoritative service.
    pub interfaces: Vec<(String, IfFamily)>,
    pub addrs: Vec<IpAddr>,
}

impl AuthServer {
    /// dnsmasq names itself in NS records only when it really serves
    /// somewhere as an authoritative server.
    pub fn listens(&self) -> bool {
        !self.interfaces.is_empty() || !self.addrs.is_empty()
    }
}

/// The authoritative-zone options together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub zones: Vec<AuthZone>,
    pub server: Option<AuthServer>,
    /// `auth-soa` serial: the floor of the zone serial, which twinmasq
    /// derives from the lease database (see `dns::zone::zone_serial`).
    pub serial: Option<u32>,
    /// `auth-soa` hostmaster, `@` already turned into `.`; default
    /// `hostmaster.<auth-server name>`.
    pub hostmaster: Option<String>,
    pub refresh: u32,
    pub retry: u32,
    pub expiry: u32,
    /// `auth-sec-servers`: named in NS records; enables zone transfer.
    pub sec_servers: Vec<String>,
    /// `auth-peer`: when given, the only addresses allowed to transfer.
    pub peers: Vec<IpAddr>,
    /// `auth-ttl`: TTL of every authoritative answer and the SOA minimum.
    pub ttl: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            zones: Vec::new(),
            server: None,
            serial: None,
            hostmaster: None,
            refresh: DEFAULT_SOA_REFRESH,
            retry: DEFAULT_SOA_RETRY,
            expiry: DEFAULT_SOA_EXPIRY,
            sec_servers: Vec::new(),
            peers: Vec::new(),
            ttl: DEFAULT_AUTH_TTL,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `port`, `-p`: 0 turns DNS off.
    pub port: u16,
    /// `no-hosts`: do not read `hosts_file`.
    pub no_hosts: bool,
    /// Normally /etc/hosts; a field so tests can point elsewhere.
    pub hosts_file: PathBuf,
    /// `addn-hosts`: files or directories of hosts files.
    pub addn_hosts: Vec<PathBuf>,
    /// `expand-hosts`: plain names from hosts files also answer with the
    /// `domain` appended.
    pub expand_hosts: bool,
    /// `servers-file`: more `server=`/`rev-server=` lines, re-read on
    /// SIGHUP (`config::servers_file`).
    pub servers_file: Option<PathBuf>,
    /// `localise-queries`: a hosts name with an IPv4 address on the subnet
    /// of the address a query was sent to answers A with those only.
    pub localise_queries: bool,
    /// `no-resolv`: do not read `resolv_files` for upstream servers.
    pub no_resolv: bool,
    /// `resolv-file`; default /etc/resolv.conf.
    pub resolv_files: Vec<PathBuf>,
    /// `no-poll`: read the resolv file at start and on SIGHUP only, not
    /// whenever it changes.
    pub no_poll: bool,
    /// `server=ip[#port]`: the normal upstream servers, in config order.
    pub servers: Vec<SocketAddr>,
    /// `server=/dom/...`, `local=/dom/`.
    pub domain_servers: Vec<DomainServer>,
    pub rev_servers: Vec<RevServer>,
    pub addresses: Vec<AddressOverride>,
    pub cnames: Vec<CnameRecord>,
    pub mx: Vec<MxRecord>,
    pub srv: Vec<SrvRecord>,
    pub txt: Vec<TxtRecord>,
    pub ptr: Vec<PtrRecord>,
    pub host_records: Vec<HostRecord>,
    /// `domain-needed`: never forward names without a dot.
    pub domain_needed: bool,
    /// `bogus-priv`: reverse lookups for private ranges not found locally
    /// answer NXDOMAIN instead of being forwarded.
    pub bogus_priv: bool,
    /// `bogus-nxdomain`: an upstream answer holding one of these
    /// addresses is turned into NXDOMAIN.
    pub bogus_nxdomain: Vec<AddrPrefix>,
    /// `ignore-address`: an upstream answer holding one of these addresses
    /// is dropped as if it never came, and another awaited.
    pub ignore_address: Vec<AddrPrefix>,
    /// `filter-A`, `filter-AAAA`: A (AAAA) records are taken out of
    /// upstream answers, relayed or cached; local data keeps them.
    pub filter_a: bool,
    pub filter_aaaa: bool,
    pub stop_dns_rebind: bool,
    pub rebind_localhost_ok: bool,
    pub rebind_domain_ok: Vec<String>,
    pub strict_order: bool,
    pub all_servers: bool,
    /// `cache-size`, default 150; 0 disables the cache.
    pub cache_size: u32,
    pub no_negcache: bool,
    pub min_cache_ttl: u32,
    pub max_cache_ttl: Option<u32>,
    /// `neg-ttl`: how long a negative upstream answer without an SOA is
    /// cached; 0 (the default) does not cache it.
    pub neg_ttl: u32,
    /// `max-ttl`: the highest TTL given to clients for upstream records,
    /// relayed or cached (the cache keeps the real one); 0 is no cap.
    pub max_ttl: u32,
    /// `local-ttl`: TTL of answers from local data (hosts, leases,
    /// address=); 0 as in dnsmasq.
    pub local_ttl: u32,
    pub dns_forward_max: u32,
    /// `query-port`, `-Q`: every forwarded query from this one UDP port
    /// (`Some(0)`: one port the OS picks at start), as dnsmasq. `None`, the
    /// default: a socket of its own on a fresh random port per query.
    pub query_port: Option<u16>,
    /// `min-port`, `max-port`: random source ports (and the `query-port=0`
    /// one) come from this range, both ends included. `None`: the kernel's
    /// ephemeral range. One end alone takes the other from dnsmasq's
    /// defaults (1024, 65535).
    pub port_range: Option<(u16, u16)>,
    /// `edns-packet-max`, `-P`: the largest UDP reply sent to an EDNS
    /// client (which gets at most the size it offered), and the size
    /// advertised in our OPT records. Never below 512.
    pub edns_packet_max: u16,
    /// `max-tcp-connections`: client TCP connections served at once; more
    /// are closed as they are accepted.
    pub max_tcp_connections: u32,
    pub log_queries: bool,
    /// `local-service`: answer only clients on a directly attached subnet
    /// (dnsmasq applies it only without interface/listen-address options).
    pub local_service: bool,
    /// `auth-zone`, `auth-server`, `auth-soa`, `auth-sec-servers`,
    /// `auth-peer`, `auth-ttl`.
    pub auth: AuthConfig,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            port: DEFAULT_DNS_PORT,
            no_hosts: false,
            hosts_file: PathBuf::from(DEFAULT_HOSTS_FILE),
            addn_hosts: Vec::new(),
            expand_hosts: false,
            localise_queries: false,
            servers_file: None,
            no_resolv: false,
            resolv_files: vec![PathBuf::from(DEFAULT_RESOLV_FILE)],
            no_poll: false,
            servers: Vec::new(),
            domain_servers: Vec::new(),
            rev_servers: Vec::new(),
            addresses: Vec::new(),
            cnames: Vec::new(),
            mx: Vec::new(),
            srv: Vec::new(),
            txt: Vec::new(),
            ptr: Vec::new(),
            host_records: Vec::new(),
            domain_needed: false,
            bogus_priv: false,
            bogus_nxdomain: Vec::new(),
            ignore_address: Vec::new(),
            filter_a: false,
            filter_aaaa: false,
            stop_dns_rebind: false,
            rebind_localhost_ok: false,
            rebind_domain_ok: Vec::new(),
            strict_order: false,
            all_servers: false,
            cache_size: DEFAULT_CACHE_SIZE,
            no_negcache: false,
            min_cache_ttl: 0,
            max_cache_ttl: None,
            neg_ttl: 0,
            max_ttl: 0,
            local_ttl: 0,
            dns_forward_max: DEFAULT_DNS_FORWARD_MAX,
            query_port: None,
            port_range: None,
            edns_packet_max: DEFAULT_EDNS_PACKET_MAX,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            log_queries: false,
            local_service: false,
            auth: AuthConfig::default(),
        }
    }
}
