//! The parsed configuration: what the engines read. Parsing lives in the
//! sibling modules; nothing here touches files.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::dns_types::DnsConfig;
use super::failover::{FailoverConfig, FailoverOptions, DEFAULT_CONTROL_SOCKET};

/// dnsmasq's default when a range gives none.
pub const DEFAULT_LEASE_SECS: u32 = 3600;
/// dnsmasq refuses shorter leases and silently raises them to this.
pub const MIN_LEASE_SECS: u32 = 120;
pub const DEFAULT_LEASE_MAX: u32 = 1000;
pub const DEFAULT_LEASE_FILE: &str = "/var/lib/misc/dnsmasq.leases";
pub const DEFAULT_LEASE_DB: &str = "/var/lib/twinmasq/leases.sled";
pub const DEFAULT_CONF_FILE: &str = "/etc/dnsmasq.conf";
/// dnsmasq's compiled-in group (`CHGRP`; `CHUSER` is [`DEFAULT_USER`]).
pub const DEFAULT_GROUP: &str = "dip";
/// dnsmasq's `log-async` queue without a value, and its cap.
pub const DEFAULT_LOG_ASYNC: u32 = 5;
pub const MAX_LOG_ASYNC: u32 = 100;
pub const DEFAULT_PID_FILE: &str = "/var/run/dnsmasq.pid";
pub const DEFAULT_USER: &str = "nobody";
/// Unknown clients' DHCP packets per second and interface, by default: far
/// above what a LAN of thousands of new devices booting at once sends.
pub const DEFAULT_DHCP_RATE_UNKNOWN: u32 = 5_000;
/// Known clients' (a dhcp-host line, or a lease) packets per second and
/// interface, by default.
pub const DEFAULT_DHCP_RATE_KNOWN: u32 = 20_000;

/// `dhcp-rate-limit=UNKNOWN[,KNOWN]` (ours, not in dnsmasq): DHCP packets
/// per second each receiving interface takes from clients the server does
/// not know, and from those it does. 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpRateLimit {
    pub unknown_per_sec: u32,
    pub known_per_sec: u32,
}

impl Default for DhcpRateLimit {
    fn default() -> Self {
        DhcpRateLimit {
            unknown_per_sec: DEFAULT_DHCP_RATE_UNKNOWN,
            known_per_sec: DEFAULT_DHCP_RATE_KNOWN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseTime {
    Secs(u32),
    Infinite,
}

/// A tag reference in `tag:` form; `tag:!name` negates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMatch {
    pub name: String,
    pub negate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    /// `tag:` conditions: the range serves a request only if all hold.
    pub match_tags: Vec<TagMatch>,
    /// `set:` tag given to requests served from this range.
    pub set_tag: Option<String>,
    pub start: Ipv4Addr,
    /// Equal to `start` for a `static` range.
    pub end: Ipv4Addr,
    pub netmask: Option<Ipv4Addr>,
    pub broadcast: Option<Ipv4Addr>,
    pub lease_time: LeaseTime,
    /// `static`: only addresses from `dhcp-host` lines are handed out.
    pub is_static: bool,
}

/// One byte of a MAC pattern: `None` is dnsmasq's `*` wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPattern {
    /// Hardware type when given as `1-aa:bb:...`; else any.
    pub htype: Option<u8>,
    pub bytes: Vec<Option<u8>>,
}

impl MacPattern {
    pub fn matches(&self, htype: u8, hw: &[u8]) -> bool {
        if let Some(t) = self.htype {
            if t != htype {
                return false;
            }
        }
        self.bytes.len() == hw.len()
            && self
                .bytes
                .iter()
                .zip(hw)
                .all(|(p, b)| p.is_none_or(|p| p == *b))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhcpHost {
    pub macs: Vec<MacPattern>,
    /// `id:` client identifiers, raw bytes (`id:01:02:..` hex or `id:text`).
    pub client_ids: Vec<Vec<u8>>,
    /// `id:*`: ignore the client-id and match on MAC only.
    pub ignore_client_id: bool,
    pub match_tags: Vec<TagMatch>,
    pub set_tags: Vec<String>,
    pub ip: Option<Ipv4Addr>,
    /// The host label only: a qualified `dhcp-host` name is split, and its
    /// domain part goes to `domain`.
    pub hostname: Option<String>,
    /// Domain of a qualified `dhcp-host` name (`nas.home.lan` -> `home.lan`);
    /// dnsmasq uses the host entry only when it matches the client's domain.
    pub domain: Option<String>,
    pub lease_time: Option<LeaseTime>,
    pub ignore: bool,
}

/// The value of a `dhcp-option`, already in wire form except for addresses
/// written `0.0.0.0`, which mean "the address of the server answering" and
/// are filled in per reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// No value: the option is not sent (`dhcp-option=3` turns off the router).
    Empty,
    Bytes(Vec<u8>),
    Addresses(Vec<Ipv4Addr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpOptionSpec {
    pub code: u8,
    pub match_tags: Vec<TagMatch>,
    pub value: OptionValue,
    /// `dhcp-option-force`: sent even when the client did not ask for it.
    pub force: bool,
}

/// `dhcp-vendorclass=set:tag,text` / `dhcp-userclass=set:tag,text`: the
/// tag goes to clients whose option 60 (or 77) holds `text` anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassMatch {
    /// Option 77 (user class) rather than 60 (vendor class).
    pub user: bool,
    pub set_tag: String,
    pub data: Vec<u8>,
}

/// `dhcp-match=set:tag,opt[,value]`: the tag goes to clients that send
/// option `opt` (with at least one byte) holding `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionMatch {
    pub set_tag: String,
    pub code: u8,
    /// Empty: the option's presence is enough.
    pub data: Vec<u8>,
    pub form: MatchForm,
}

/// `dhcp-name-match=set:tag,name[*]`: the tag goes to clients that offer
/// `name` as their host name (ASCII case ignored); with `*`, any name
/// starting with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMatch {
    pub set_tag: String,
    pub name: String,
    pub prefix: bool,
}

/// How dnsmasq compares a `dhcp-match` value, after the form it was
/// written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchForm {
    /// Hex bytes: the option must start with them.
    Hex,
    /// Text: anywhere in the option.
    Text,
    /// Numbers and addresses: at any multiple of their length.
    Other,
}

/// `dhcp-boot=[tag:x,]filename[,servername[,server address]]`: what goes
/// in a reply's `file`, `sname` and `siaddr` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpBoot {
    pub match_tags: Vec<TagMatch>,
    /// None when given empty, as dnsmasq reads an empty field.
    pub file: Option<String>,
    pub sname: Option<String>,
    /// The TFTP server; None leaves `siaddr` as our own address.
    pub next_server: Option<Ipv4Addr>,
}

/// `domain=name[,subnet|start,end][,local]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    pub scope: DomainScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainScope {
    All,
    Subnet { net: Ipv4Addr, prefix: u8 },
    Range { start: Ipv4Addr, end: Ipv4Addr },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFacility {
    Syslog(String),
    File(PathBuf),
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub interfaces: Vec<String>,
    pub except_interfaces: Vec<String>,
    pub listen_addresses: Vec<Ipv4Addr>,
    /// The IPv6 `listen-address`es: DNS only (DHCP is IPv4 here), kept
    /// apart so the DHCP side keeps its plain IPv4 list.
    pub listen_addresses_v6: Vec<Ipv6Addr>,
    pub bind_interfaces: bool,
    pub dhcp_ranges: Vec<DhcpRange>,
    pub dhcp_hosts: Vec<DhcpHost>,
    pub dhcp_options: Vec<DhcpOptionSpec>,
    /// `dhcp-ignore`: a client whose tags match all of one list gets no
    /// address.
    pub dhcp_ignore: Vec<Vec<TagMatch>>,
    /// `dhcp-broadcast`: replies to clients matching one list (an empty
    /// list matches every client) are broadcast.
    pub dhcp_broadcast: Vec<Vec<TagMatch>>,
    /// In config order; the last matching line wins, as in dnsmasq.
    pub dhcp_boot: Vec<DhcpBoot>,
    pub dhcp_classes: Vec<ClassMatch>,
    pub dhcp_matches: Vec<OptionMatch>,
    pub dhcp_name_matches: Vec<NameMatch>,
    /// `dhcp-ignore-names`: the host name a client offers is not used when
    /// its tags match all of one list (an empty list matches every client).
    pub dhcp_ignore_names: Vec<Vec<TagMatch>>,
    /// `dhcp-hostsfile`, `dhcp-optsfile`: files or directories of
    /// `dhcp-host`/`dhcp-option` values, read at start and on SIGHUP (see
    /// `dhcp_files`); their lines are not in `dhcp_hosts`/`dhcp_options`.
    pub dhcp_hostsfiles: Vec<PathBuf>,
    pub dhcp_optsfiles: Vec<PathBuf>,
    /// `read-ethers`: /etc/ethers as hosts, read with the files above.
    pub read_ethers: bool,
    pub authoritative: bool,
    pub lease_max: u32,
    pub dhcp_rate_limit: DhcpRateLimit,
    pub lease_file: PathBuf,
    pub lease_db: PathBuf,
    pub domains: Vec<DomainSpec>,
    /// `domain=name,subnet,local`: these are also in `domains`; DNS answers
    /// the domain and the subnet's reverse zone itself and never forwards
    /// them (dnsmasq's implied `local=/name/` and `local=/x.y.in-addr.arpa/`).
    pub local_domains: Vec<DomainSpec>,
    pub no_ping: bool,
    pub rapid_commit: bool,
    pub log_dhcp: bool,
    pub quiet_dhcp: bool,
    pub log_facility: Option<LogFacility>,
    /// `log-async[=N]`: log lines queue up to N deep for a writer thread
    /// (dnsmasq's default 5, at most 100); None or 0 logs synchronously.
    pub log_async: Option<u32>,
    pub keep_in_foreground: bool,
    pub no_daemon: bool,
    pub pid_file: PathBuf,
    /// None: dnsmasq's default, [`DEFAULT_USER`] (and [`DEFAULT_GROUP`]
    /// if it exists); the drop happens only when started as root.
    pub user: Option<String>,
    pub group: Option<String>,
    /// `dhcp-script`: run on lease changes (see `crate::script`).
    pub dhcp_script: Option<PathBuf>,
    /// `dhcp-scriptuser`: the user the script runs as when we are root.
    pub dhcp_script_user: Option<String>,
    /// `script-on-renewal`: a renewal (new expiry) also runs the script.
    pub script_on_renewal: bool,
    pub dns: DnsConfig,
    /// `--test`: check the configuration and exit.
    pub test_only: bool,
    /// The failover options as given; `failover` is what they resolve to.
    pub failover_options: FailoverOptions,
    pub failover: Option<FailoverConfig>,
    pub control_socket: PathBuf,
    /// `metrics-listen=ADDR:PORT` (ours): where Prometheus scrapes
    /// `/metrics`; off unless given.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interfaces: Vec::new(),
            except_interfaces: Vec::new(),
            listen_addresses: Vec::new(),
            listen_addresses_v6: Vec::new(),
            bind_interfaces: false,
            dhcp_ranges: Vec::new(),
            dhcp_hosts: Vec::new(),
            dhcp_options: Vec::new(),
            dhcp_ignore: Vec::new(),
            dhcp_broadcast: Vec::new(),
            dhcp_boot: Vec::new(),
            dhcp_classes: Vec::new(),
            dhcp_matches: Vec::new(),
            dhcp_name_matches: Vec::new(),
            dhcp_ignore_names: Vec::new(),
            dhcp_hostsfiles: Vec::new(),
            dhcp_optsfiles: Vec::new(),
            read_ethers: false,
            authoritative: false,
            lease_max: DEFAULT_LEASE_MAX,
            dhcp_rate_limit: DhcpRateLimit::default(),
            lease_file: PathBuf::from(DEFAULT_LEASE_FILE),
            lease_db: PathBuf::from(DEFAULT_LEASE_DB),
            domains: Vec::new(),
            local_domains: Vec::new(),
            no_ping: false,
            rapid_commit: false,
            log_dhcp: false,
            quiet_dhcp: false,
            log_facility: None,
            log_async: None,
            keep_in_foreground: false,
            no_daemon: false,
            pid_file: PathBuf::from(DEFAULT_PID_FILE),
            user: None,
            group: None,
            dhcp_script: None,
            dhcp_script_user: None,
            script_on_renewal: false,
            dns: DnsConfig::default(),
            test_only: false,
            failover_options: FailoverOptions::default(),
            failover: None,
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            metrics_listen: None,
        }
    }
}
