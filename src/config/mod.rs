//! dnsmasq's option language: one table of options shared by the command
//! line and conf files.
//!
//! `load` is what the daemon calls: the command line, then `/etc/dnsmasq.conf`
//! (or the `-C` files instead), with the command line winning for options
//! that take one value.

mod builder;
mod cmdline;
mod dhcp_boot;
pub mod dhcp_files;
mod dhcp_host;
mod dhcp_names;
mod dhcp_option;
mod dhcp_range;
mod dns_opts;
pub mod dns_types;
mod domain;
mod error;
pub mod failover;
mod file;
mod names;
pub mod servers_file;
mod table;
mod tags;
pub mod types;
mod value;

use std::path::Path;

pub use dns_types::*;
pub use error::{ConfigError, Location};
pub use failover::{FailoverConfig, FailoverRole};
pub use types::*;

use builder::Builder;
use table::Opt;

/// Parses `args` (argv without the program name) and the conf files they
/// lead to.
pub fn load(args: &[String]) -> Result<Config, ConfigError> {
    load_with_default(args, Path::new(DEFAULT_CONF_FILE))
}

/// `load`, with another default conf file (tests, packaging).
pub fn load_with_default(args: &[String], default_conf: &Path) -> Result<Config, ConfigError> {
    let items = cmdline::parse(args)?;
    // Command-line mistakes are reported before any file is read, as dnsmasq does.
    for (def, value) in &items {
        Builder::check_shape(def, value.as_deref(), &Location::CommandLine)?;
    }
    let mut b = Builder::new();
    let conf_files: Vec<&str> = items
        .iter()
        .filter(|(d, _)| d.opt == Opt::ConfFile)
        .filter_map(|(_, v)| v.as_deref())
        .collect();
    if conf_files.is_empty() {
        b.read_file(default_conf, "the default configuration file", true)?;
    } else {
        for f in conf_files {
            if f == "-" {
                return Err(ConfigError::not_yet(
                    "conf-file",
                    &Location::CommandLine,
                    "reading the configuration from stdin",
                ));
            }
            b.read_file(Path::new(f), "conf-file on the command line", false)?;
        }
    }
    for (def, value) in &items {
        if def.opt != Opt::ConfFile {
            b.apply(def, value.as_deref(), &Location::CommandLine)?;
        }
    }
    b.finish()
}

/// Parses conf-file text; `origin` names it in errors. `conf-file=` and
/// `conf-dir=` lines in it are read from disk.
pub fn parse_conf_text(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut b = Builder::new();
    b.read_text(text, origin)?;
    b.finish()
}

#[cfg(test)]
mod tests;
