//! `servers-file`: a file of `server=` and `rev-server=` lines, read at
//! start and again on SIGHUP, whose servers stand beside the config's. As
//! in dnsmasq, any other option in it, a bad line or a missing file is
//! logged and skipped, never fatal.

use super::dns_opts::{self, ServerLine};
use super::dns_types::{DomainServer, RevServer};
use super::error::ConfigError;
use super::file::{read_option_lines, split_name_value};
use super::types::Config;

/// What the servers file held at its last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServersFile {
    pub servers: Vec<std::net::SocketAddr>,
    pub domain_servers: Vec<DomainServer>,
    pub rev_servers: Vec<RevServer>,
}

impl ServersFile {
    /// Reads `cfg`'s servers file; empty without one.
    pub fn read(cfg: &Config) -> ServersFile {
        let mut out = ServersFile::default();
        let Some(path) = &cfg.dns.servers_file else {
            return out;
        };
        let read = read_option_lines(path, |line, at| {
            let (name, value) = split_name_value(line);
            let value = value.unwrap_or_default();
            match name {
                "server" => match dns_opts::parse_server(value).map_err(|e| e.at(name, at))? {
                    ServerLine::Default(s) => out.servers.push(s),
                    ServerLine::Domains(d) => out.domain_servers.push(d),
                },
                "rev-server" => {
                    let r = dns_opts::parse_rev_server(value).map_err(|e| e.at(name, at))?;
                    out.rev_servers.push(r);
                }
                _ => {
                    return Err(ConfigError::bad(
                        name,
                        at,
                        "only server and rev-server lines may be in a servers-file",
                    ))
                }
            }
            Ok(())
        });
        if read {
            tracing::info!(target: "dns", "read {}", path.display());
        }
        out
    }

    /// `base` with this file's servers after its own.
    pub fn apply(&self, base: &Config) -> Config {
        let mut cfg = base.clone();
        cfg.dns.servers.extend(self.servers.iter().copied());
        cfg.dns
            .domain_servers
            .extend(self.domain_servers.iter().cloned());
        cfg.dns.rev_servers.extend(self.rev_servers.iter().cloned());
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dns_types::DomainTarget;

    #[test]
    fn server_lines_are_read_and_everything_else_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servers");
        std::fs::write(
            &path,
            "# upstreams\n\
             server=198.18.0.53\n\
             server = 198.18.0.54#5353 # spaces around = as in conf files\n\
             server=/corp.example/198.18.0.60\n\
             rev-server=10.77.0.0/16,198.18.0.61\n\
             local=/lan/\n\
             address=/x.example/198.18.0.1\n\
             server=not-an-address\n",
        )
        .unwrap();
        let mut cfg = Config::default();
        cfg.dns.servers_file = Some(path);
        let f = ServersFile::read(&cfg);
        assert_eq!(
            f.servers,
            vec![
                "198.18.0.53:53".parse().unwrap(),
                "198.18.0.54:5353".parse().unwrap()
            ]
        );
        assert_eq!(f.domain_servers.len(), 1);
        assert_eq!(
            f.domain_servers[0].domains,
            vec!["corp.example".to_string()]
        );
        assert_eq!(
            f.domain_servers[0].target,
            DomainTarget::Upstream("198.18.0.60:53".parse().unwrap())
        );
        assert_eq!(f.rev_servers.len(), 1);

        cfg.dns.servers = vec!["198.18.0.1:53".parse().unwrap()];
        let eff = f.apply(&cfg);
        assert_eq!(eff.dns.servers.len(), 3);
        assert_eq!(eff.dns.servers[0], cfg.dns.servers[0], "the config's first");
        assert_eq!(eff.dns.domain_servers.len(), 1);
    }

    #[test]
    fn no_file_or_a_missing_one_gives_nothing() {
        let mut cfg = Config::default();
        assert_eq!(ServersFile::read(&cfg), ServersFile::default());
        cfg.dns.servers_file = Some("/nonexistent/twinmasq-servers".into());
        assert_eq!(ServersFile::read(&cfg), ServersFile::default());
    }
}
