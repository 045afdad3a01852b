//! The one option table, shared by the command line and conf files.
//!
//! It lists every long option dnsmasq knows, so that a dnsmasq option
//! twinmasq does not implement yet is told apart from a misspelling.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg {
    None,
    Required,
    /// The long form may go without a value (`--opt` or `--opt=value`).
    Optional,
}

/// What twinmasq does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Opt {
    ConfFile,
    ConfDir,
    Interface,
    ExceptInterface,
    ListenAddress,
    BindInterfaces,
    DhcpRange,
    DhcpHost,
    DhcpOption,
    DhcpOptionForce,
    Authoritative,
    LeaseMax,
    LeaseFile,
    Domain,
    NoPing,
    NoHosts,
    NoResolv,
    NoPoll,
    RapidCommit,
    LogDhcp,
    QuietDhcp,
    LogFacility,
    KeepInForeground,
    NoDaemon,
    PidFile,
    User,
    Group,
    Port,
    Test,
    LeaseDb,
    AddnHosts,
    ExpandHosts,
    LocaliseQueries,
    ServersFile,
    ResolvFile,
    /// `server` and `local`: one option in dnsmasq.
    Server,
    Address,
    RevServer,
    Cname,
    MxHost,
    SrvHost,
    TxtRecord,
    PtrRecord,
    HostRecord,
    DomainNeeded,
    BogusPriv,
    StopDnsRebind,
    BogusNxdomain,
    IgnoreAddress,
    FilterA,
    FilterAaaa,
    RebindLocalhostOk,
    RebindDomainOk,
    StrictOrder,
    AllServers,
    CacheSize,
    NoNegcache,
    MinCacheTtl,
    MaxCacheTtl,
    LocalTtl,
    NegTtl,
    MaxTtl,
    DnsForwardMax,
    QueryPort,
    MinPort,
    MaxPort,
    EdnsPacketMax,
    MaxTcpConnections,
    LogQueries,
    LocalService,
    AuthZone,
    AuthServer,
    AuthTtl,
    AuthSoa,
    AuthSecServers,
    AuthPeer,
    FailoverListen,
    FailoverMaster,
    FailoverKey,
    FailoverHeartbeat,
    FailoverTimeout,
    FailoverSyncTimeout,
    FailoverSplit,
    FailoverMclt,
    FailoverAutoPartnerDown,
    FailoverMaxSkew,
    FailoverUnansweredSecs,
    ControlSocket,
    MetricsListen,
    DhcpRateLimit,
    DhcpScript,
    DhcpScriptUser,
    ScriptOnRenewal,
    LogAsync,
    DhcpIgnore,
    DhcpBroadcast,
    DhcpBoot,
    DhcpHostsFile,
    DhcpOptsFile,
    ReadEthers,
    DhcpVendorClass,
    DhcpUserClass,
    DhcpMatch,
    DhcpNameMatch,
    DhcpIgnoreNames,
    /// A dnsmasq option twinmasq does not implement yet.
    Unsupported,
}

#[derive(Debug)]
pub(crate) struct OptionDef {
    pub name: &'static str,
    pub short: Option<char>,
    pub arg: Arg,
    pub opt: Opt,
}

impl OptionDef {
    /// Options dnsmasq allows once per source: a second one in the conf
    /// files is an error, and the command line overrides the files.
    pub fn single_valued(&self) -> bool {
        matches!(
            self.opt,
            Opt::Port
                | Opt::QueryPort
                | Opt::MinPort
                | Opt::MaxPort
                | Opt::PidFile
                | Opt::User
                | Opt::Group
                | Opt::LeaseFile
                | Opt::LeaseMax
                | Opt::LogFacility
                | Opt::LeaseDb
                | Opt::AuthServer
                | Opt::AuthSoa
                | Opt::FailoverListen
                | Opt::FailoverMaster
                | Opt::FailoverKey
                | Opt::FailoverHeartbeat
                | Opt::FailoverTimeout
                | Opt::FailoverSyncTimeout
                | Opt::FailoverSplit
                | Opt::FailoverMclt
                | Opt::FailoverAutoPartnerDown
                | Opt::FailoverMaxSkew
                | Opt::FailoverUnansweredSecs
                | Opt::ControlSocket
                | Opt::MetricsListen
                | Opt::DhcpRateLimit
                | Opt::LogAsync
        )
    }

    /// getopt's short form: dnsmasq's short options either take a value or
    /// not; only `-q` and `-1` drop the optional value of their long form.
    pub fn short_takes_value(&self) -> bool {
        match self.arg {
            Arg::None => false,
            Arg::Required => true,
            Arg::Optional => !matches!(self.short, Some('q') | Some('1')),
        }
    }
}

const fn def(name: &'static str, short: Option<char>, arg: Arg, opt: Opt) -> OptionDef {
    OptionDef {
        name,
        short,
        arg,
        opt,
    }
}

use Arg::{None as N, Optional as O, Required as R};
use Opt::Unsupported as U;

pub(crate) static OPTIONS: &[OptionDef] = &[
    // Implemented.
    def("conf-file", Some('C'), O, Opt::ConfFile),
    def("conf-dir", Some('7'), R, Opt::ConfDir),
    def("interface", Some('i'), R, Opt::Interface),
    def("except-interface", Some('I'), R, Opt::ExceptInterface),
    def("listen-address", Some('a'), R, Opt::ListenAddress),
    def("bind-interfaces", Some('z'), N, Opt::BindInterfaces),
    def("dhcp-range", Some('F'), R, Opt::DhcpRange),
    def("dhcp-host", Some('G'), R, Opt::DhcpHost),
    def("dhcp-option", Some('O'), R, Opt::DhcpOption),
    def("dhcp-option-force", None, R, Opt::DhcpOptionForce),
    def("dhcp-authoritative", Some('K'), N, Opt::Authoritative),
    def("dhcp-lease-max", Some('X'), R, Opt::LeaseMax),
    def("dhcp-leasefile", Some('l'), O, Opt::LeaseFile),
    def("dhcp-lease", None, R, Opt::LeaseFile),
    def("domain", Some('s'), R, Opt::Domain),
    def("domain-suffix", None, R, Opt::Domain),
    def("no-ping", Some('5'), N, Opt::NoPing),
    def("dhcp-rapid-commit", None, N, Opt::RapidCommit),
    def("log-dhcp", None, N, Opt::LogDhcp),
    def("quiet-dhcp", None, N, Opt::QuietDhcp),
    def("log-facility", Some('8'), R, Opt::LogFacility),
    def("keep-in-foreground", Some('k'), N, Opt::KeepInForeground),
    def("no-daemon", Some('d'), N, Opt::NoDaemon),
    def("pid-file", Some('x'), O, Opt::PidFile),
    def("user", Some('u'), O, Opt::User),
    def("group", Some('g'), O, Opt::Group),
    def("port", Some('p'), R, Opt::Port),
    def("test", None, N, Opt::Test),
    // twinmasq's own.
    def("lease-db", None, R, Opt::LeaseDb),
    def("failover-listen", None, R, Opt::FailoverListen),
    def("failover-master", None, R, Opt::FailoverMaster),
    def("failover-key", None, R, Opt::FailoverKey),
    def("failover-heartbeat", None, R, Opt::FailoverHeartbeat),
    def("failover-timeout", None, R, Opt::FailoverTimeout),
    def("failover-sync-timeout", None, R, Opt::FailoverSyncTimeout),
    def("failover-split", None, R, Opt::FailoverSplit),
    def("failover-mclt", None, R, Opt::FailoverMclt),
    def(
        "failover-auto-partner-down",
        None,
        R,
        Opt::FailoverAutoPartnerDown,
    ),
    def("failover-max-skew", None, R, Opt::FailoverMaxSkew),
    def(
        "failover-unanswered-secs",
        None,
        R,
        Opt::FailoverUnansweredSecs,
    ),
    def("control-socket", None, R, Opt::ControlSocket),
    def("metrics-listen", None, R, Opt::MetricsListen),
    // Not in dnsmasq: DHCP packets per second and interface, unknown
    // clients first, then known ones (src/dhcp/ratelimit.rs).
    def("dhcp-rate-limit", None, R, Opt::DhcpRateLimit),
    // The rest of dnsmasq's options, in dnsmasq's order: the DNS ones
    // twinmasq implements, the others Unsupported.
    def("version", Some('v'), N, U),
    def("no-hosts", Some('h'), N, Opt::NoHosts),
    def("no-poll", Some('n'), N, Opt::NoPoll),
    def("help", Some('w'), N, U),
    def("log-queries", Some('q'), O, Opt::LogQueries),
    def("resolv-file", Some('r'), O, Opt::ResolvFile),
    def("servers-file", None, R, Opt::ServersFile),
    def("mx-host", Some('m'), R, Opt::MxHost),
    def("mx-target", Some('t'), R, U),
    def("cache-size", Some('c'), O, Opt::CacheSize),
    def("dhcp-boot", Some('M'), R, Opt::DhcpBoot),
    def("local-service", None, O, Opt::LocalService),
    def("bogus-priv", Some('b'), N, Opt::BogusPriv),
    def("bogus-nxdomain", Some('B'), R, Opt::BogusNxdomain),
    def("ignore-address", None, R, Opt::IgnoreAddress),
    def("selfmx", Some('e'), N, U),
    def("filterwin2k", Some('f'), N, U),
    def("filter-A", None, N, Opt::FilterA),
    def("filter-AAAA", None, N, Opt::FilterAaaa),
    def("filter-rr", None, R, U),
    def("strict-order", Some('o'), N, Opt::StrictOrder),
    def("server", Some('S'), R, Opt::Server),
    def("rev-server", None, R, Opt::RevServer),
    def("local", None, R, Opt::Server),
    def("address", Some('A'), R, Opt::Address),
    def("conf-script", None, R, U),
    def("no-resolv", Some('R'), N, Opt::NoResolv),
    def("expand-hosts", Some('E'), N, Opt::ExpandHosts),
    def("localmx", Some('L'), N, U),
    def("local-ttl", Some('T'), R, Opt::LocalTtl),
    def("no-negcache", Some('N'), N, Opt::NoNegcache),
    def("no-round-robin", None, N, U),
    def("no-0x20-encode", None, N, U),
    def("do-0x20-encode", None, N, U),
    def("cache-rr", None, R, U),
    def("addn-hosts", Some('H'), R, Opt::AddnHosts),
    def("hostsdir", None, R, U),
    def("query-port", Some('Q'), R, Opt::QueryPort),
    def("no-dhcp-interface", Some('2'), R, U),
    def("no-dhcpv4-interface", None, R, U),
    def("no-dhcpv6-interface", None, R, U),
    def("domain-needed", Some('D'), N, Opt::DomainNeeded),
    def("read-ethers", Some('Z'), N, Opt::ReadEthers),
    def("alias", Some('V'), R, U),
    def("dhcp-vendorclass", Some('U'), R, Opt::DhcpVendorClass),
    def("dhcp-userclass", Some('j'), R, Opt::DhcpUserClass),
    def("dhcp-ignore", Some('J'), R, Opt::DhcpIgnore),
    def("edns-packet-max", Some('P'), R, Opt::EdnsPacketMax),
    def("srv-host", Some('W'), R, Opt::SrvHost),
    def("localise-queries", Some('y'), N, Opt::LocaliseQueries),
    def("txt-record", Some('Y'), R, Opt::TxtRecord),
    def("caa-record", None, R, U),
    def("dns-rr", None, R, U),
    def("enable-dbus", Some('1'), O, U),
    def("enable-ubus", None, O, U),
    def("bootp-dynamic", Some('3'), O, U),
    def("dhcp-mac", Some('4'), R, U),
    def("dhcp-script", Some('6'), R, Opt::DhcpScript),
    def("leasefile-ro", Some('9'), N, U),
    def("script-on-renewal", None, N, Opt::ScriptOnRenewal),
    def("dns-forward-max", Some('0'), R, Opt::DnsForwardMax),
    def("clear-on-reload", None, N, U),
    def("dhcp-ignore-names", None, O, Opt::DhcpIgnoreNames),
    def("enable-tftp", None, O, U),
    def("tftp-secure", None, N, U),
    def("tftp-no-fail", None, N, U),
    def("tftp-unique-root", None, O, U),
    def("tftp-root", None, R, U),
    def("tftp-max", None, R, U),
    def("tftp-mtu", None, R, U),
    def("tftp-lowercase", None, N, U),
    def("tftp-single-port", None, N, U),
    def("ptr-record", None, R, Opt::PtrRecord),
    def("naptr-record", None, R, U),
    def("bridge-interface", None, R, U),
    def("shared-network", None, R, U),
    def("dhcp-option-pxe", None, R, U),
    def("tftp-no-blocksize", None, N, U),
    def("log-async", None, O, Opt::LogAsync),
    def("dhcp-circuitid", None, R, U),
    def("dhcp-remoteid", None, R, U),
    def("dhcp-subscrid", None, R, U),
    def("dhcp-pxe-vendor", None, R, U),
    def("interface-name", None, R, U),
    def("dhcp-hostsfile", None, R, Opt::DhcpHostsFile),
    def("dhcp-optsfile", None, R, Opt::DhcpOptsFile),
    def("dhcp-hostsdir", None, R, U),
    def("dhcp-optsdir", None, R, U),
    def("dhcp-no-override", None, N, U),
    def("tftp-port-range", None, R, U),
    def("stop-dns-rebind", None, N, Opt::StopDnsRebind),
    def("rebind-domain-ok", None, R, Opt::RebindDomainOk),
    def("all-servers", None, N, Opt::AllServers),
    def("dhcp-match", None, R, Opt::DhcpMatch),
    def("dhcp-name-match", None, R, Opt::DhcpNameMatch),
    def("dhcp-broadcast", None, O, Opt::DhcpBroadcast),
    def("neg-ttl", None, R, Opt::NegTtl),
    def("max-ttl", None, R, Opt::MaxTtl),
    def("min-cache-ttl", None, R, Opt::MinCacheTtl),
    def("max-cache-ttl", None, R, Opt::MaxCacheTtl),
    def("dhcp-alternate-port", None, O, U),
    def("dhcp-scriptuser", None, R, Opt::DhcpScriptUser),
    def("min-port", None, R, Opt::MinPort),
    def("max-port", None, R, Opt::MaxPort),
    def("dhcp-fqdn", None, N, U),
    def("cname", None, R, Opt::Cname),
    def("pxe-prompt", None, R, U),
    def("pxe-service", None, R, U),
    def("tag-if", None, R, U),
    def("dhcp-proxy", None, O, U),
    def("dhcp-generate-names", None, O, U),
    def("rebind-localhost-ok", None, N, Opt::RebindLocalhostOk),
    def("add-mac", None, O, U),
    def("strip-mac", None, N, U),
    def("add-subnet", None, O, U),
    def("strip-subnet", None, N, U),
    def("add-cpe-id", None, R, U),
    def("proxy-dnssec", None, N, U),
    def("dhcp-sequential-ip", None, N, U),
    def("conntrack", None, N, U),
    def("dhcp-client-update", None, N, U),
    def("dhcp-luascript", None, R, U),
    def("enable-ra", None, N, U),
    def("dhcp-duid", None, R, U),
    def("host-record", None, R, Opt::HostRecord),
    def("bind-dynamic", None, N, U),
    def("auth-zone", None, R, Opt::AuthZone),
    def("auth-server", None, R, Opt::AuthServer),
    def("auth-ttl", None, R, Opt::AuthTtl),
    def("auth-soa", None, R, Opt::AuthSoa),
    def("auth-sec-servers", None, R, Opt::AuthSecServers),
    def("auth-peer", None, R, Opt::AuthPeer),
    def("ipset", None, R, U),
    def("nftset", None, R, U),
    def("connmark-allowlist-enable", None, O, U),
    def("connmark-allowlist", None, R, U),
    def("synth-domain", None, R, U),
    def("dnssec", None, N, U),
    def("trust-anchor", None, R, U),
    def("dnssec-debug", None, N, U),
    def("dnssec-check-unsigned", None, O, U),
    def("dnssec-no-timecheck", None, N, U),
    def("dnssec-timestamp", None, R, U),
    def("dnssec-limits", None, R, U),
    def("dhcp-relay", None, R, U),
    def("dhcp-split-relay", None, R, U),
    def("ra-param", None, R, U),
    def("quiet-dhcp6", None, N, U),
    def("quiet-ra", None, N, U),
    def("dns-loop-detect", None, N, U),
    def("script-arp", None, N, U),
    def("dhcp-ttl", None, R, U),
    def("dhcp-reply-delay", None, R, U),
    def("dumpfile", None, R, U),
    def("dumpmask", None, R, U),
    def("dhcp-ignore-clid", None, N, U),
    def("dynamic-host", None, R, U),
    def("log-debug", None, N, U),
    def("umbrella", None, O, U),
    def("quiet-tftp", None, N, U),
    def("port-limit", None, R, U),
    def("fast-dns-retry", None, O, U),
    def("use-stale-cache", None, O, U),
    def("no-ident", None, N, U),
    def("max-tcp-connections", None, R, Opt::MaxTcpConnections),
    def("leasequery", None, O, U),
    def("log-malloc", None, N, U),
];

pub(crate) fn by_name(name: &str) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|d| d.name == name)
}

pub(crate) fn by_short(c: char) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|d| d.short == Some(c))
}

/// getopt_long accepts any unambiguous prefix of a long option.
pub(crate) fn by_prefix(prefix: &str) -> Result<Option<&'static OptionDef>, Vec<&'static str>> {
    if let Some(d) = by_name(prefix) {
        return Ok(Some(d));
    }
    let hits: Vec<&'static OptionDef> = OPTIONS
        .iter()
        .filter(|d| d.name.starts_with(prefix))
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        [first, rest @ ..]
            if rest
                .iter()
                .all(|d| d.opt == first.opt && d.opt != Opt::Unsupported) =>
        {
            Ok(Some(first))
        }
        many => Err(many.iter().map(|d| d.name).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_short_letters_are_unique() {
        let mut names = HashSet::new();
        let mut shorts = HashSet::new();
        for d in OPTIONS {
            assert!(names.insert(d.name), "duplicate {}", d.name);
            if let Some(c) = d.short {
                assert!(shorts.insert(c), "duplicate -{c}");
            }
        }
        // dnsmasq's long option list, plus lease-db, the eleven failover
        // options, control-socket, metrics-listen and dhcp-rate-limit.
        assert_eq!(OPTIONS.len(), 210);
    }

    #[test]
    fn lookups() {
        assert_eq!(by_short('C').map(|d| d.name), Some("conf-file"));
        assert_eq!(by_name("dhcp-lease").map(|d| d.opt), Some(Opt::LeaseFile));
        assert_eq!(
            by_name("strict-order").map(|d| d.opt),
            Some(Opt::StrictOrder)
        );
        assert_eq!(by_name("local").map(|d| d.opt), Some(Opt::Server));
        assert_eq!(by_name("dnssec").map(|d| d.opt), Some(Opt::Unsupported));
        assert_eq!(by_short('Q').map(|d| d.opt), Some(Opt::QueryPort));
        assert_eq!(by_name("min-port").map(|d| d.opt), Some(Opt::MinPort));
        assert_eq!(by_name("max-port").map(|d| d.opt), Some(Opt::MaxPort));
        assert_eq!(by_name("auth-zone").map(|d| d.opt), Some(Opt::AuthZone));
        assert!(by_name("auth-soa").unwrap().single_valued());
        assert!(by_name("foo").is_none());
        assert_eq!(
            by_prefix("keep-in").unwrap().map(|d| d.name),
            Some("keep-in-foreground")
        );
        assert!(by_prefix("dhcp-").is_err());
        assert_eq!(by_prefix("xyz").unwrap().map(|d| d.name), None);
    }

    #[test]
    fn short_values() {
        assert!(by_short('C').unwrap().short_takes_value());
        assert!(by_short('u').unwrap().short_takes_value());
        assert!(!by_short('q').unwrap().short_takes_value());
        assert!(!by_short('d').unwrap().short_takes_value());
    }
}
