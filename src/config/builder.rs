//! Applies options, from wherever they came, to a `Config`.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::dns_opts::{self, ServerLine};
use super::dns_types::MIN_EDNS_PACKET_MAX;
use super::error::{ConfigError, Location};
use super::file::{display, split_line, DirSpec};
use super::names::check_interface;
use super::table::{self, Arg, Opt, OptionDef};
use super::types::{Config, DomainScope, LogFacility};
use super::value::{parse_u32, split_fields, unhide};
use super::{dhcp_boot, dhcp_host, dhcp_names, dhcp_option, dhcp_range, domain, failover};

/// glibc's syslog facility names, which dnsmasq accepts.
const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "security",
    "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
];

pub(crate) struct Builder {
    pub cfg: Config,
    /// (device, inode) of files already read: a file is read once, which
    /// also stops include loops.
    seen_files: HashSet<(u64, u64)>,
    singles_in_files: HashSet<Opt>,
    singles_on_cmdline: HashSet<Opt>,
    /// `resolv_files` still holds only the default: dnsmasq's first
    /// `resolv-file` replaces it, later ones add to the list.
    resolv_is_default: bool,
    /// `min-port`, `max-port` as given (0: not given, as in dnsmasq);
    /// `finish` makes the range of them.
    min_port: u16,
    max_port: u16,
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            cfg: Config::default(),
            seen_files: HashSet::new(),
            singles_in_files: HashSet::new(),
            singles_on_cmdline: HashSet::new(),
            resolv_is_default: true,
            min_port: 0,
            max_port: 0,
        }
    }

    /// Checks that need no state: unsupported options, values present or
    /// not as the option wants.
    pub fn check_shape(
        def: &OptionDef,
        value: Option<&str>,
        at: &Location,
    ) -> Result<(), ConfigError> {
        if def.opt == Opt::Unsupported {
            return Err(ConfigError::Unsupported {
                name: def.name.to_string(),
                at: at.clone(),
            });
        }
        match (def.arg, value) {
            (Arg::None, Some(v)) => Err(ConfigError::UnexpectedValue {
                option: def.name.to_string(),
                at: at.clone(),
                value: unhide(v),
            }),
            (Arg::Required, None) => Err(ConfigError::MissingValue {
                option: def.name.to_string(),
                at: at.clone(),
            }),
            _ => Ok(()),
        }
    }

    pub fn apply(
        &mut self,
        def: &'static OptionDef,
        value: Option<&str>,
        at: &Location,
    ) -> Result<(), ConfigError> {
        Self::check_shape(def, value, at)?;
        let name = def.name;
        if def.single_valued() {
            let seen = match at {
                Location::CommandLine => &mut self.singles_on_cmdline,
                Location::File { .. } => &mut self.singles_in_files,
            };
            if !seen.insert(def.opt) {
                return Err(ConfigError::Repeated {
                    option: name.to_string(),
                    at: at.clone(),
                });
            }
        }
        let Some(v) = value else {
            return self.apply_flag(def, at);
        };
        let bad = |reason: String| ConfigError::bad(name, at, reason);
        let c = &mut self.cfg;
        match def.opt {
            Opt::ConfFile => {
                let path = unhide(v);
                if path == "-" {
                    return Err(ConfigError::not_yet(
                        name,
                        at,
                        "reading the configuration from stdin",
                    ));
                }
                if !path.is_empty() {
                    let context = format!("conf-file {at}");
                    self.read_file(Path::new(&path), &context, false)?;
                }
            }
            Opt::ConfDir => {
                let spec = DirSpec::parse(v).map_err(bad)?;
                let context = format!("conf-dir {at}");
                let files = spec.files().map_err(|source| ConfigError::Io {
                    path: spec.dir.clone(),
                    context: context.clone(),
                    source,
                })?;
                for f in files {
                    self.read_file(&f, &context, false)?;
                }
            }
            Opt::Interface | Opt::ExceptInterface => {
                if v.is_empty() {
                    return Err(ConfigError::not_yet(
                        name,
                        at,
                        "an empty interface list (loopback only)",
                    ));
                }
                for f in split_fields(v) {
                    let iface = check_interface(&unhide(f)).map_err(bad)?;
                    if def.opt == Opt::Interface {
                        c.interfaces.push(iface);
                    } else {
                        c.except_interfaces.push(iface);
                    }
                }
            }
            Opt::ListenAddress => {
                for f in split_fields(v) {
                    let text = unhide(f);
                    match text.parse::<Ipv4Addr>() {
                        Ok(a) => c.listen_addresses.push(a),
                        Err(_) => match text.parse::<Ipv6Addr>() {
                            Ok(a) => c.listen_addresses_v6.push(a),
                            Err(_) => return Err(bad(format!("'{text}' is not an IP address"))),
                        },
                    }
                }
            }
            Opt::DhcpRange => {
                let r = dhcp_range::parse(v).map_err(|e| e.at(name, at))?;
                c.dhcp_ranges.push(r);
            }
            Opt::DhcpHost => {
                let h = dhcp_host::parse(v, &c.dhcp_hosts).map_err(|e| e.at(name, at))?;
                c.dhcp_hosts.push(h);
            }
            Opt::DhcpOption | Opt::DhcpOptionForce => {
                let o = dhcp_option::parse(v, def.opt == Opt::DhcpOptionForce)
                    .map_err(|e| e.at(name, at))?;
                c.dhcp_options.push(o);
            }
            Opt::DhcpIgnore => {
                let l = dhcp_boot::tag_list(v).map_err(|e| e.at(name, at))?;
                c.dhcp_ignore.push(l);
            }
            Opt::DhcpBroadcast => {
                let l = dhcp_boot::tag_list(v).map_err(|e| e.at(name, at))?;
                c.dhcp_broadcast.push(l);
            }
            Opt::DhcpVendorClass | Opt::DhcpUserClass => {
                let user = def.opt == Opt::DhcpUserClass;
                let m = dhcp_boot::class_match(v, user).map_err(|e| e.at(name, at))?;
                c.dhcp_classes.push(m);
            }
            Opt::DhcpMatch => {
                let m = dhcp_option::parse_match(v).map_err(|e| e.at(name, at))?;
                c.dhcp_matches.push(m);
            }
            Opt::DhcpNameMatch => {
                let m = dhcp_names::name_match(v).map_err(|e| e.at(name, at))?;
                c.dhcp_name_matches.push(m);
            }
            Opt::DhcpIgnoreNames => {
                let l = dhcp_boot::tag_list(v).map_err(|e| e.at(name, at))?;
                c.dhcp_ignore_names.push(l);
            }
            Opt::DhcpBoot => {
                let b = dhcp_boot::parse(v).map_err(|e| e.at(name, at))?;
                c.dhcp_boot.push(b);
            }
            Opt::LeaseMax => {
                c.lease_max =
                    parse_u32(v).ok_or_else(|| bad(format!("'{}' is not a number", unhide(v))))?;
            }
            Opt::DhcpRateLimit => c.dhcp_rate_limit = dhcp_rate_limit(v).map_err(bad)?,
            Opt::LeaseFile => c.lease_file = path_value(v).map_err(bad)?,
            Opt::DhcpHostsFile => c.dhcp_hostsfiles.push(path_value(v).map_err(bad)?),
            Opt::DhcpOptsFile => c.dhcp_optsfiles.push(path_value(v).map_err(bad)?),
            Opt::PidFile => c.pid_file = path_value(v).map_err(bad)?,
            Opt::LeaseDb => c.lease_db = path_value(v).map_err(bad)?,
            Opt::ControlSocket => c.control_socket = path_value(v).map_err(bad)?,
            Opt::MetricsListen => {
                c.metrics_listen =
                    Some(failover::metrics_listen(&unhide(v)).map_err(|e| e.at(name, at))?)
            }
            Opt::FailoverKey => c.failover_options.key_file = Some(path_value(v).map_err(bad)?),
            Opt::FailoverListen
            | Opt::FailoverMaster
            | Opt::FailoverHeartbeat
            | Opt::FailoverTimeout
            | Opt::FailoverSyncTimeout
            | Opt::FailoverSplit
            | Opt::FailoverMclt
            | Opt::FailoverAutoPartnerDown
            | Opt::FailoverMaxSkew
            | Opt::FailoverUnansweredSecs => {
                let f = &mut c.failover_options;
                let field = |e: super::error::FieldError| e.at(name, at);
                let v = unhide(v);
                match def.opt {
                    Opt::FailoverListen => f.listen = Some(failover::listen(&v).map_err(field)?),
                    Opt::FailoverMaster => f.master = Some(failover::master(&v).map_err(field)?),
                    Opt::FailoverHeartbeat => {
                        f.heartbeat = Some(failover::duration(&v).map_err(field)?)
                    }
                    Opt::FailoverTimeout => {
                        f.timeout = Some(failover::duration(&v).map_err(field)?)
                    }
                    Opt::FailoverSyncTimeout => {
                        f.sync_timeout = Some(failover::duration(&v).map_err(field)?)
                    }
                    Opt::FailoverSplit => {
                        f.split_percent = Some(failover::percent(&v).map_err(field)?)
                    }
                    Opt::FailoverMclt => f.mclt = Some(failover::duration(&v).map_err(field)?),
                    Opt::FailoverAutoPartnerDown => {
                        f.auto_partner_down = Some(failover::duration(&v).map_err(field)?)
                    }
                    Opt::FailoverMaxSkew => {
                        f.max_skew = Some(failover::duration(&v).map_err(field)?)
                    }
                    _ => f.unanswered_secs = Some(failover::secs(&v).map_err(field)?),
                }
            }
            Opt::User => c.user = Some(word_value(v).map_err(bad)?),
            Opt::DhcpScript => {
                let path = path_value(v).map_err(bad)?;
                // dnsmasq runs it without a PATH search, so a relative
                // name would depend on the working directory.
                if !path.is_absolute() {
                    return Err(bad(format!("'{}' is not an absolute path", path.display())));
                }
                c.dhcp_script = Some(path);
            }
            Opt::DhcpScriptUser => c.dhcp_script_user = Some(word_value(v).map_err(bad)?),
            Opt::Group => c.group = Some(word_value(v).map_err(bad)?),
            Opt::Domain => {
                let (spec, local) = domain::parse(v).map_err(|e| e.at(name, at))?;
                // Like dnsmasq's single default domain, a later plain
                // `domain=` replaces an earlier one.
                if spec.scope == DomainScope::All {
                    c.domains.retain(|d| d.scope != DomainScope::All);
                }
                if local {
                    c.local_domains.push(spec.clone());
                }
                c.domains.push(spec);
            }
            Opt::LogFacility => {
                let text = unhide(v);
                c.log_facility = Some(if text == "-" {
                    LogFacility::Stderr
                } else if text.contains('/') {
                    LogFacility::File(PathBuf::from(text))
                } else {
                    let lower = text.to_ascii_lowercase();
                    if !FACILITIES.contains(&lower.as_str()) {
                        return Err(bad(format!(
                            "'{text}' is neither a syslog facility nor a file path"
                        )));
                    }
                    LogFacility::Syslog(lower)
                });
            }
            Opt::Port => c.dns.port = port_number(v).map_err(bad)?,
            Opt::QueryPort => c.dns.query_port = Some(port_number(v).map_err(bad)?),
            Opt::MinPort => self.min_port = port_number(v).map_err(bad)?,
            Opt::MaxPort => self.max_port = port_number(v).map_err(bad)?,
            Opt::AddnHosts => c.dns.addn_hosts.push(path_value(v).map_err(bad)?),
            // One file, as in dnsmasq: a later line replaces it.
            Opt::ServersFile => c.dns.servers_file = Some(path_value(v).map_err(bad)?),
            Opt::LogAsync => {
                let n = parse_u32(v)
                    .ok_or_else(|| bad(format!("'{}' is not a number of lines", unhide(v))))?;
                // dnsmasq caps the queue rather than refusing a big one.
                c.log_async = Some(n.min(super::types::MAX_LOG_ASYNC));
            }
            Opt::ResolvFile => {
                let path = path_value(v).map_err(bad)?;
                if self.resolv_is_default {
                    c.dns.resolv_files.clear();
                    self.resolv_is_default = false;
                }
                c.dns.resolv_files.push(path);
            }
            Opt::Server => match dns_opts::parse_server(v).map_err(|e| e.at(name, at))? {
                ServerLine::Default(s) => c.dns.servers.push(s),
                ServerLine::Domains(d) => c.dns.domain_servers.push(d),
            },
            Opt::Address => {
                let a = dns_opts::parse_address(v).map_err(|e| e.at(name, at))?;
                c.dns.addresses.push(a);
            }
            Opt::RevServer => {
                let r = dns_opts::parse_rev_server(v).map_err(|e| e.at(name, at))?;
                c.dns.rev_servers.push(r);
            }
            Opt::Cname => {
                let r = dns_opts::parse_cname(v, &c.dns.cnames).map_err(|e| e.at(name, at))?;
                c.dns.cnames.push(r);
            }
            Opt::MxHost => {
                let r = dns_opts::parse_mx(v).map_err(|e| e.at(name, at))?;
                c.dns.mx.push(r);
            }
            Opt::SrvHost => {
                let r = dns_opts::parse_srv(v).map_err(|e| e.at(name, at))?;
                c.dns.srv.push(r);
            }
            Opt::TxtRecord => {
                let r = dns_opts::parse_txt(v).map_err(|e| e.at(name, at))?;
                c.dns.txt.push(r);
            }
            Opt::PtrRecord => {
                let r = dns_opts::parse_ptr(v).map_err(|e| e.at(name, at))?;
                c.dns.ptr.push(r);
            }
            Opt::HostRecord => {
                let r = dns_opts::parse_host_record(v).map_err(|e| e.at(name, at))?;
                c.dns.host_records.push(r);
            }
            Opt::AuthZone => {
                let z = dns_opts::parse_auth_zone(v).map_err(|e| e.at(name, at))?;
                c.dns.auth.zones.push(z);
            }
            Opt::AuthServer => {
                let s = dns_opts::parse_auth_server(v).map_err(|e| e.at(name, at))?;
                c.dns.auth.server = Some(s);
            }
            Opt::AuthSoa => {
                dns_opts::parse_auth_soa(v, &mut c.dns.auth).map_err(|e| e.at(name, at))?
            }
            Opt::AuthSecServers => {
                let n = dns_opts::parse_name_list(v).map_err(|e| e.at(name, at))?;
                c.dns.auth.sec_servers.extend(n);
            }
            Opt::AuthPeer => {
                let p = dns_opts::parse_peers(v).map_err(|e| e.at(name, at))?;
                c.dns.auth.peers.extend(p);
            }
            Opt::AuthTtl => c.dns.auth.ttl = number(v).map_err(bad)?,
            Opt::RebindDomainOk => {
                let d = dns_opts::parse_rebind_domains(v).map_err(|e| e.at(name, at))?;
                c.dns.rebind_domain_ok.extend(d);
            }
            Opt::BogusNxdomain => {
                let a = dns_opts::parse_addr_prefix(v).map_err(|e| e.at(name, at))?;
                c.dns.bogus_nxdomain.push(a);
            }
            Opt::IgnoreAddress => {
                let a = dns_opts::parse_addr_prefix(v).map_err(|e| e.at(name, at))?;
                c.dns.ignore_address.push(a);
            }
            Opt::CacheSize => c.dns.cache_size = number(v).map_err(bad)?,
            // dnsmasq caps it: a floor above an hour would keep stale
            // answers far longer than their owners asked for.
            Opt::MinCacheTtl => {
                c.dns.min_cache_ttl = number(v).map_err(bad)?.min(MAX_MIN_CACHE_TTL)
            }
            Opt::MaxCacheTtl => c.dns.max_cache_ttl = Some(number(v).map_err(bad)?),
            Opt::NegTtl => c.dns.neg_ttl = number(v).map_err(bad)?,
            Opt::MaxTtl => c.dns.max_ttl = number(v).map_err(bad)?,
            Opt::LocalTtl => c.dns.local_ttl = number(v).map_err(bad)?,
            Opt::DnsForwardMax => c.dns.dns_forward_max = number(v).map_err(bad)?,
            // dnsmasq raises a value below 512 to 512: RFC 6891 6.2.5 lets
            // no EDNS size go below plain DNS's.
            Opt::EdnsPacketMax => {
                let n = number(v).map_err(bad)?;
                let n = u16::try_from(n)
                    .map_err(|_| bad(format!("{n} is larger than a UDP datagram")))?;
                c.dns.edns_packet_max = n.max(MIN_EDNS_PACKET_MAX);
            }
            Opt::MaxTcpConnections => c.dns.max_tcp_connections = number(v).map_err(bad)?,
            Opt::LogQueries => match unhide(v).as_str() {
                // The extra detail these ask for is a logging format
                // matter; queries are logged either way.
                "extra" | "proto" => c.dns.log_queries = true,
                other => {
                    return Err(bad(format!(
                        "'{other}' is not a log-queries form (extra or proto)"
                    )))
                }
            },
            Opt::LocalService => match unhide(v).as_str() {
                "net" => c.dns.local_service = true,
                "host" => {
                    return Err(ConfigError::not_yet(
                        name,
                        at,
                        "local-service=host (answering this host only)",
                    ))
                }
                other => {
                    return Err(bad(format!(
                        "'{other}' is not a local-service form (net or host)"
                    )))
                }
            },
            // Flags were refused a value by check_shape.
            Opt::ExpandHosts
            | Opt::LocaliseQueries
            | Opt::DomainNeeded
            | Opt::BogusPriv
            | Opt::FilterA
            | Opt::FilterAaaa
            | Opt::StopDnsRebind
            | Opt::RebindLocalhostOk
            | Opt::StrictOrder
            | Opt::AllServers
            | Opt::NoNegcache
            | Opt::BindInterfaces
            | Opt::Authoritative
            | Opt::NoPing
            | Opt::NoHosts
            | Opt::NoResolv
            | Opt::NoPoll
            | Opt::RapidCommit
            | Opt::LogDhcp
            | Opt::QuietDhcp
            | Opt::ScriptOnRenewal
            | Opt::ReadEthers
            | Opt::KeepInForeground
            | Opt::NoDaemon
            | Opt::Test
            | Opt::Unsupported => {}
        }
        Ok(())
    }

    fn apply_flag(&mut self, def: &OptionDef, at: &Location) -> Result<(), ConfigError> {
        let c = &mut self.cfg;
        match def.opt {
            Opt::BindInterfaces => c.bind_interfaces = true,
            Opt::Authoritative => c.authoritative = true,
            Opt::NoPing => c.no_ping = true,
            Opt::NoHosts => c.dns.no_hosts = true,
            Opt::NoResolv => c.dns.no_resolv = true,
            Opt::NoPoll => c.dns.no_poll = true,
            Opt::ExpandHosts => c.dns.expand_hosts = true,
            Opt::LocaliseQueries => c.dns.localise_queries = true,
            Opt::DomainNeeded => c.dns.domain_needed = true,
            Opt::BogusPriv => c.dns.bogus_priv = true,
            Opt::FilterA => c.dns.filter_a = true,
            Opt::FilterAaaa => c.dns.filter_aaaa = true,
            Opt::StopDnsRebind => c.dns.stop_dns_rebind = true,
            Opt::RebindLocalhostOk => c.dns.rebind_localhost_ok = true,
            Opt::StrictOrder => c.dns.strict_order = true,
            Opt::AllServers => c.dns.all_servers = true,
            Opt::NoNegcache => c.dns.no_negcache = true,
            Opt::LogQueries => c.dns.log_queries = true,
            Opt::LocalService => c.dns.local_service = true,
            // A bare `resolv-file` empties the default list, as in dnsmasq;
            // after an explicit one it changes nothing.
            Opt::ResolvFile => {
                if self.resolv_is_default {
                    c.dns.resolv_files.clear();
                    self.resolv_is_default = false;
                }
            }
            Opt::RapidCommit => c.rapid_commit = true,
            Opt::LogDhcp => c.log_dhcp = true,
            Opt::QuietDhcp => c.quiet_dhcp = true,
            Opt::ScriptOnRenewal => c.script_on_renewal = true,
            Opt::ReadEthers => c.read_ethers = true,
            // Without tags: every reply is broadcast.
            Opt::DhcpBroadcast => c.dhcp_broadcast.push(Vec::new()),
            // Without tags: no client's own name is used.
            Opt::DhcpIgnoreNames => c.dhcp_ignore_names.push(Vec::new()),
            Opt::KeepInForeground => c.keep_in_foreground = true,
            Opt::LogAsync => c.log_async = Some(super::types::DEFAULT_LOG_ASYNC),
            Opt::NoDaemon => c.no_daemon = true,
            Opt::Test => {
                if *at != Location::CommandLine {
                    return Err(ConfigError::CommandLineOnly {
                        option: def.name.to_string(),
                        at: at.clone(),
                    });
                }
                c.test_only = true;
            }
            // A bare `conf-file` names no file.
            Opt::ConfFile => {}
            // dnsmasq reads these without a value as "none" (no lease file,
            // no pid file, keep the user/group); the Config cannot say so.
            Opt::LeaseFile | Opt::PidFile | Opt::User | Opt::Group => {
                return Err(ConfigError::not_yet(
                    def.name,
                    at,
                    "giving it without a value",
                ));
            }
            _ => {
                return Err(ConfigError::MissingValue {
                    option: def.name.to_string(),
                    at: at.clone(),
                })
            }
        }
        Ok(())
    }

    /// Checks that need every option: auth zones need an auth-server, and
    /// the failover settings as a whole.
    pub fn finish(mut self) -> Result<Config, ConfigError> {
        let auth = &self.cfg.dns.auth;
        if !auth.zones.is_empty() && auth.server.is_none() {
            // dnsmasq's own message: the SOA and NS records need the name.
            return Err(ConfigError::Inconsistent {
                reason: "--auth-server required when an auth zone is defined.".into(),
            });
        }
        let dns = &self.cfg.dns;
        if dns.no_poll && !dns.no_resolv && dns.resolv_files.len() > 1 {
            // dnsmasq's own message: without polling there is no newest
            // file to choose.
            return Err(ConfigError::Inconsistent {
                reason: "only one resolv.conf file allowed in no-poll mode.".into(),
            });
        }
        self.cfg.dns.port_range = port_range(self.min_port, self.max_port)
            .map_err(|reason| ConfigError::Inconsistent { reason })?;
        self.cfg.failover = self
            .cfg
            .failover_options
            .resolve()
            .map_err(|reason| ConfigError::Inconsistent { reason })?;
        Ok(self.cfg)
    }

    /// Reads one conf file. `context` says who asked for it, for errors.
    pub fn read_file(
        &mut self,
        path: &Path,
        context: &str,
        missing_ok: bool,
    ) -> Result<(), ConfigError> {
        let io_err = |source| ConfigError::Io {
            path: path.to_path_buf(),
            context: context.to_string(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(e)),
        };
        if !self.seen_files.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        let bytes = std::fs::read(path).map_err(io_err)?;
        let text = String::from_utf8_lossy(&bytes);
        self.read_text(&text, &display(path))
    }

    pub fn read_text(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        for (i, raw) in text.split('\n').enumerate() {
            let at = Location::file(origin, i + 1);
            let Some((name, value)) = split_line(raw, &at)? else {
                continue;
            };
            let def = table::by_name(&name).ok_or_else(|| ConfigError::UnknownOption {
                name: unhide(&name),
                at: at.clone(),
            })?;
            self.apply(def, value.as_deref(), &at)?;
        }
        Ok(())
    }
}

fn path_value(v: &str) -> Result<PathBuf, String> {
    let p = unhide(v);
    if p.is_empty() {
        return Err("empty path".to_string());
    }
    Ok(PathBuf::from(p))
}

/// dnsmasq's TTL_FLOOR_LIMIT.
const MAX_MIN_CACHE_TTL: u32 = 3600;

fn port_number(v: &str) -> Result<u16, String> {
    parse_u32(v)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("'{}' is not a port number", unhide(v)))
}

/// dnsmasq's MIN_PORT and MAX_PORT: the other end of a range given by one.
const MIN_PORT: u16 = 1024;
const MAX_PORT: u16 = 65535;

/// The source-port range `min-port`/`max-port` give (0: not given), as
/// dnsmasq 2.90 completes and checks it. None when neither is given: the
/// kernel picks from its ephemeral range.
fn port_range(min: u16, max: u16) -> Result<Option<(u16, u16)>, String> {
    match (min, max) {
        (0, 0) => Ok(None),
        (min, 0) => Ok(Some((min, MAX_PORT))),
        (0, max) if max < MIN_PORT => Err("max_port cannot be smaller than min_port".into()),
        (0, max) => Ok(Some((MIN_PORT, max))),
        (min, max) if max < min => Err("max_port cannot be smaller than min_port".into()),
        (min, max) => Ok(Some((min, max))),
    }
}

fn number(v: &str) -> Result<u32, String> {
    parse_u32(v).ok_or_else(|| format!("'{}' is not a number", unhide(v)))
}

/// `UNKNOWN[,KNOWN]` packets per second; KNOWN defaults to four times
/// UNKNOWN (and to no limit when UNKNOWN is 0, "off").
fn dhcp_rate_limit(v: &str) -> Result<super::types::DhcpRateLimit, String> {
    let text = unhide(v);
    let mut parts = text.split(',').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let unknown = if first.eq_ignore_ascii_case("off") {
        0
    } else {
        number(first)?
    };
    let known = match parts.next() {
        Some(k) => number(k)?,
        None => unknown.saturating_mul(4),
    };
    if parts.next().is_some() {
        return Err(format!("'{text}' has more than two values"));
    }
    Ok(super::types::DhcpRateLimit {
        unknown_per_sec: unknown,
        known_per_sec: known,
    })
}

fn word_value(v: &str) -> Result<String, String> {
    let w = unhide(v);
    if w.is_empty() || w.contains(char::is_whitespace) {
        return Err(format!("'{w}' is not a valid name"));
    }
    Ok(w)
}
