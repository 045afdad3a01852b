//! `dhcp-hostsfile` and `dhcp-optsfile`: files (or directories of files)
//! whose lines are `dhcp-host` / `dhcp-option` values; and `read-ethers`,
//! /etc/ethers as hosts. Read at start and again on SIGHUP; as in dnsmasq
//! a missing file or a bad line is logged and skipped, never fatal, so an
//! edited file cannot stop a running server.

use std::path::{Path, PathBuf};

use std::net::Ipv4Addr;

use super::error::{ConfigError, Location};
use super::file::{read_option_lines, DirSpec};
use super::names::check_hostname;
use super::types::{Config, DhcpHost, DhcpOptionSpec, MacPattern};
use super::{dhcp_host, dhcp_option};

/// Fixed in dnsmasq too (`read-ethers` takes no path).
pub const ETHERS_FILE: &str = "/etc/ethers";

/// What the files held at the last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpFiles {
    pub hosts: Vec<DhcpHost>,
    pub options: Vec<DhcpOptionSpec>,
    /// With `read-ethers`: the config's and the files' hosts as the ethers
    /// file leaves them (it may change their lines, as in dnsmasq), and its
    /// own hosts after them. Replaces both `hosts` and the config's hosts.
    pub ethers_hosts: Option<Vec<DhcpHost>>,
}

impl DhcpFiles {
    /// Reads every `dhcp-hostsfile` and `dhcp-optsfile` of `cfg` (and
    /// /etc/ethers with `read-ethers`), logging what it read and skipped.
    pub fn read(cfg: &Config) -> DhcpFiles {
        Self::read_with_ethers(cfg, Path::new(ETHERS_FILE))
    }

    /// `read`, with the ethers file elsewhere (tests).
    pub fn read_with_ethers(cfg: &Config, ethers: &Path) -> DhcpFiles {
        let mut out = DhcpFiles::default();
        if cfg.read_ethers {
            let mut hosts = cfg.dhcp_hosts.clone();
            read_ethers(ethers, &mut hosts);
            out.ethers_hosts = Some(hosts);
        }
        let before = out.ethers_hosts.as_ref().unwrap_or(&cfg.dhcp_hosts);
        let mut file_hosts: Vec<DhcpHost> = Vec::new();
        for path in expand(&cfg.dhcp_hostsfiles) {
            read_lines(&path, |line, at| {
                let taken = |ip| before.iter().chain(&file_hosts).any(|h| h.ip == Some(ip));
                let h = dhcp_host::parse_with(line, taken).map_err(|e| e.at("dhcp-host", at))?;
                file_hosts.push(h);
                Ok(())
            });
        }
        out.hosts = file_hosts;
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
        if let Some(hosts) = &self.ethers_hosts {
            cfg.dhcp_hosts.clone_from(hosts);
        }
        cfg.dhcp_hosts.extend(self.hosts.iter().cloned());
        cfg.dhcp_options.extend(self.options.iter().cloned());
        cfg
    }
}

/// The one plain Ethernet address a host line names, if that is all it
/// names: the lines an ethers entry for that address extends.
fn sole_mac(h: &DhcpHost) -> Option<[u8; 6]> {
    let [m] = h.macs.as_slice() else { return None };
    if m.htype.is_some_and(|t| t != 1) {
        return None;
    }
    let bytes: Option<Vec<u8>> = m.bytes.iter().copied().collect();
    <[u8; 6]>::try_from(bytes?.as_slice()).ok()
}

/// `MAC name-or-address` lines, with dnsmasq's rules: an entry whose
/// address or name a `dhcp-host` line already has moves that line to this
/// MAC; else one for a MAC a line alone names adds to that line; else it
/// is a new host. An entry clashing with an earlier ethers entry is
/// skipped. Ethers hosts ignore client ids.
fn read_ethers(path: &Path, hosts: &mut Vec<DhcpHost>) {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            tracing::error!(target: "dhcp", "failed to read {}: {e}", path.display());
            return;
        }
    };
    let origin = path.display();
    // Which of `hosts` came from this file, parallel to it.
    let mut from_ethers = vec![false; hosts.len()];
    let mut count = 0;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim_end();
        if line.is_empty() || line.starts_with('#') || line.starts_with('+') {
            continue;
        }
        let (mac_text, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim_start();
        let mac = dhcp_host::parse_mac(mac_text)
            .filter(|m| m.htype.is_none())
            .and_then(|m| m.bytes.into_iter().collect::<Option<Vec<u8>>>())
            .and_then(|b| <[u8; 6]>::try_from(b.as_slice()).ok());
        let Some(mac) = mac.filter(|_| !rest.is_empty()) else {
            tracing::error!(target: "dhcp", "bad line at {origin} line {lineno}");
            continue;
        };
        enum Entry {
            Addr(Ipv4Addr),
            Name(String, Option<String>),
        }
        let entry = if rest.bytes().all(|b| b == b'.' || b.is_ascii_digit()) {
            match rest.parse::<Ipv4Addr>() {
                Ok(a) => Entry::Addr(a),
                Err(_) => {
                    tracing::error!(target: "dhcp", "bad address at {origin} line {lineno}");
                    continue;
                }
            }
        } else {
            match check_hostname(rest) {
                Ok((name, domain)) => Entry::Name(name, domain),
                Err(_) => {
                    tracing::error!(target: "dhcp", "bad name at {origin} line {lineno}");
                    continue;
                }
            }
        };
        // dnsmasq compares the ethers name whole with the host label of a
        // dhcp-host line, and with the whole name of an earlier ethers line.
        let same = (0..hosts.len()).find(|&i| {
            let h = &hosts[i];
            match &entry {
                Entry::Addr(a) => h.ip == Some(*a),
                Entry::Name(n, d) => {
                    let label = h
                        .hostname
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(n));
                    let domain = h.domain.as_deref().map(str::to_ascii_lowercase)
                        == d.as_deref().map(str::to_ascii_lowercase);
                    label && (domain || (!from_ethers[i] && d.is_none()))
                }
            }
        });
        if same.is_some_and(|i| from_ethers[i]) {
            tracing::error!(
                target: "dhcp",
                "ignoring {origin} line {lineno}, duplicate name or IP address"
            );
            continue;
        }
        let at = match same {
            Some(i) => i,
            None => {
                let i = match hosts.iter().position(|h| sole_mac(h) == Some(mac)) {
                    Some(i) => i,
                    None => {
                        hosts.push(DhcpHost::default());
                        from_ethers.push(true);
                        hosts.len() - 1
                    }
                };
                match &entry {
                    Entry::Addr(a) => hosts[i].ip = Some(*a),
                    Entry::Name(n, d) => {
                        hosts[i].hostname = Some(n.clone());
                        hosts[i].domain = d.clone();
                    }
                }
                i
            }
        };
        let h = &mut hosts[at];
        h.ignore_client_id = true;
        h.macs = vec![MacPattern {
            htype: Some(1),
            bytes: mac.iter().map(|b| Some(*b)).collect(),
        }];
        count += 1;
    }
    tracing::info!(target: "dhcp", "read {origin} - {count} addresses");
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

/// [`read_option_lines`], then the "read" line dnsmasq logs.
fn read_lines(path: &Path, take: impl FnMut(&str, &Location) -> Result<(), ConfigError>) {
    if read_option_lines(path, take) {
        tracing::info!(target: "dhcp", "read {}", path.display());
    }
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

    #[test]
    fn ethers_lines_as_dnsmasq_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let ethers = dir.path().join("ethers");
        std::fs::write(
            &ethers,
            "# comment\n\
             +nis-line\n\
             02:00:00:00:00:01 198.18.0.61\n\
             02:00:00:00:00:01\tlaptop\n\
             02:00:00:00:00:02 printer.home.lan\n\
             02:00:00:00:00:03 198.18.0.70\n\
             02:00:00:00:00:04 198.18.0.61\n\
             zz:00 foo\n\
             02:00:00:00:00:05\n\
             02:00:00:00:00:06 198.18.0.999\n\
             02:00:00:00:00:07 bad_name!\n\
             02:00:00:00:00:08 nas   \n\
             02:00:00:00:00:0b media\n",
        )
        .unwrap();
        let cfg = crate::config::parse_conf_text(
            "read-ethers\n\
             dhcp-host=02:00:00:00:00:09,198.18.0.70,nine\n\
             dhcp-host=02:00:00:00:00:08,set:eight\n\
             dhcp-host=02:00:00:00:00:0c,media.home.lan,198.18.0.71\n",
            "test",
        )
        .unwrap();
        assert!(cfg.read_ethers);
        let mac = |last: u8| MacPattern {
            htype: Some(1),
            bytes: [2, 0, 0, 0, 0, last].iter().map(|b| Some(*b)).collect(),
        };
        let merged = DhcpFiles::read_with_ethers(&cfg, &ethers).merged_into(&cfg);
        let h = &merged.dhcp_hosts;
        assert_eq!(h.len(), 5, "{h:#?}");
        // The entry with a dhcp-host's address takes that line over.
        assert_eq!(h[0].macs, vec![mac(3)]);
        assert_eq!(h[0].ip, Some(Ipv4Addr::new(198, 18, 0, 70)));
        assert_eq!(h[0].hostname.as_deref(), Some("nine"));
        // A name for a MAC a line alone names joins that line.
        assert_eq!(h[1].macs, vec![mac(8)]);
        assert_eq!(h[1].hostname.as_deref(), Some("nas"));
        assert_eq!(h[1].set_tags, vec!["eight".to_string()]);
        // A bare name matches a dhcp-host's label whatever its domain.
        assert_eq!(h[2].macs, vec![mac(0xb)]);
        assert_eq!(h[2].ip, Some(Ipv4Addr::new(198, 18, 0, 71)));
        let h = &h[1..];
        // Two lines for one MAC make one host; a repeated address is
        // skipped; bad lines are skipped.
        assert_eq!(h[2].macs, vec![mac(1)]);
        assert_eq!(h[2].ip, Some(Ipv4Addr::new(198, 18, 0, 61)));
        assert_eq!(h[2].hostname.as_deref(), Some("laptop"));
        assert_eq!(h[3].macs, vec![mac(2)]);
        assert_eq!(h[3].hostname.as_deref(), Some("printer"));
        assert_eq!(h[3].domain.as_deref(), Some("home.lan"));
        assert!(h.iter().all(|x| x.ignore_client_id));

        // Re-read after an edit: the last read's entries are gone.
        std::fs::write(&ethers, "02:00:00:00:00:0a 198.18.0.62\n").unwrap();
        let merged = DhcpFiles::read_with_ethers(&cfg, &ethers).merged_into(&cfg);
        let ips: Vec<_> = merged.dhcp_hosts.iter().map(|x| x.ip).collect();
        assert_eq!(
            ips,
            vec![
                Some(Ipv4Addr::new(198, 18, 0, 70)),
                None,
                Some(Ipv4Addr::new(198, 18, 0, 71)),
                Some(Ipv4Addr::new(198, 18, 0, 62))
            ]
        );
        // A missing file leaves the config's hosts as they are.
        let merged = DhcpFiles::read_with_ethers(&cfg, &dir.path().join("none")).merged_into(&cfg);
        assert_eq!(merged.dhcp_hosts, cfg.dhcp_hosts);
    }
}
