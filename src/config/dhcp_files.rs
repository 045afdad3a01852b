//! `dhcp-hostsfile` and `dhcp-optsfile`: files (or directories of files)
//! whose lines are `dhcp-host` / `dhcp-option` values. Read at start and
//! again on SIGHUP; as in dnsmasq a missing file or a bad line is logged
//! and skipped, never fatal, so an edited file cannot stop a running
//! server.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Location};
use super::file::{clean_line, DirSpec};
use super::types::{Config, DhcpHost, DhcpOptionSpec};
use super::{dhcp_host, dhcp_option};

/// What the files held at the last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpFiles {
    pub hosts: Vec<DhcpHost>,
    pub options: Vec<DhcpOptionSpec>,
}

impl DhcpFiles {
    /// Reads every `dhcp-hostsfile` and `dhcp-optsfile` of `cfg`, logging
    /// what it read and what it skipped.
    pub fn read(cfg: &Config) -> DhcpFiles {
        let mut out = DhcpFiles::default();
        for path in expand(&cfg.dhcp_hostsfiles) {
            read_lines(&path, |line, at| {
                let taken = |ip| {
                    cfg.dhcp_hosts
                        .iter()
                        .chain(&out.hosts)
                        .any(|h| h.ip == Some(ip))
                };
                let h = dhcp_host::parse_with(line, taken).map_err(|e| e.at("dhcp-host", at))?;
                out.hosts.push(h);
                Ok(())
            });
        }
        for path in expand(&cfg.dhcp_optsfiles) {
            read_lines(&path, |line, at| {
                let o = dhcp_option::parse(line, false).map_err(|e| e.at("dhcp-option", at))?;
                out.options.push(o);
                Ok(())
            });
        }
        out
    }

    /// `base` with the files' hosts and options after its own, the order
    /// dnsmasq keeps them in.
    pub fn merged_into(&self, base: &Config) -> Config {
        let mut cfg = base.clone();
        cfg.dhcp_hosts.extend(self.hosts.iter().cloned());
        cfg.dhcp_options.extend(self.options.iter().cloned());
        cfg
    }
}

/// Directories become their files, sorted by name, without editor
/// backups and dotfiles.
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let spec = DirSpec {
                dir: p.clone(),
                only: Vec::new(),
                skip: Vec::new(),
            };
            match spec.files() {
                Ok(files) => out.extend(files),
                Err(e) => tracing::error!("cannot read {}: {e}", p.display()),
            }
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn read_lines(path: &Path, mut take: impl FnMut(&str, &Location) -> Result<(), ConfigError>) {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            tracing::error!("cannot read {}: {e}", path.display());
            return;
        }
    };
    let origin = path.display().to_string();
    for (i, raw) in text.lines().enumerate() {
        let at = Location::file(&origin, i + 1);
        let result = match clean_line(raw, &at) {
            Ok(None) => continue,
            Ok(Some(line)) => take(&line, &at),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!("{e}");
        }
    }
    tracing::info!(target: "dhcp", "read {origin}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn files_and_directories_bad_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let hosts_dir = dir.path().join("hosts.d");
        std::fs::create_dir(&hosts_dir).unwrap();
        std::fs::write(
            hosts_dir.join("b"),
            "# comment\n02:00:00:00:00:02,198.18.0.52,two\n\nbad line!!,zz\n",
        )
        .unwrap();
        std::fs::write(hosts_dir.join("a"), "02:00:00:00:00:01,198.18.0.51 # one\n").unwrap();
        std::fs::write(hosts_dir.join("a~"), "02:00:00:00:00:09,198.18.0.59\n").unwrap();
        std::fs::write(hosts_dir.join(".x"), "02:00:00:00:00:08,198.18.0.58\n").unwrap();
        let opts = dir.path().join("opts");
        std::fs::write(
            &opts,
            "option:router,198.18.0.1\noption:bogus,1\n252,\"a,b\"\n",
        )
        .unwrap();
        let cfg = crate::config::parse_conf_text(
            &format!(
                "dhcp-host=02:00:00:00:00:03,198.18.0.53\n\
                 dhcp-hostsfile={}\ndhcp-hostsfile={}\ndhcp-optsfile={}\n",
                hosts_dir.display(),
                dir.path().join("missing").display(),
                opts.display()
            ),
            "test",
        )
        .unwrap();
        assert!(cfg.dhcp_hosts.len() == 1 && cfg.dhcp_options.is_empty());
        let files = DhcpFiles::read(&cfg);
        let ips: Vec<Option<Ipv4Addr>> = files.hosts.iter().map(|h| h.ip).collect();
        assert_eq!(
            ips,
            vec![
                Some(Ipv4Addr::new(198, 18, 0, 51)),
                Some(Ipv4Addr::new(198, 18, 0, 52))
            ]
        );
        assert_eq!(files.hosts[1].hostname.as_deref(), Some("two"));
        let codes: Vec<u8> = files.options.iter().map(|o| o.code).collect();
        assert_eq!(codes, vec![3, 252]);
        let merged = files.merged_into(&cfg);
        assert_eq!(merged.dhcp_hosts.len(), 3);
        assert_eq!(merged.dhcp_options.len(), 2);
    }

    #[test]
    fn a_file_address_taken_by_the_config_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hosts");
        std::fs::write(
            &f,
            "02:00:00:00:00:01,198.18.0.53\n02:00:00:00:00:02,198.18.0.54\n",
        )
        .unwrap();
        let cfg = crate::config::parse_conf_text(
            &format!(
                "dhcp-host=02:00:00:00:00:03,198.18.0.53\ndhcp-hostsfile={}\n",
                f.display()
            ),
            "test",
        )
        .unwrap();
        let files = DhcpFiles::read(&cfg);
        assert_eq!(files.hosts.len(), 1);
        assert_eq!(files.hosts[0].ip, Some(Ipv4Addr::new(198, 18, 0, 54)));
    }
}
