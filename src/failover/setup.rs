//! From the configuration to a running node: the key checked, the link
//! port bound, the node's and the engine's settings derived.

use std::net::SocketAddr;

use twinmasq_proto::key::{Key, KeyError};
use twinmasq_proto::link::Role;

use crate::config::{Config, FailoverRole};
use crate::share::SharePolicy;

use super::node::NodeConfig;
use super::ranges;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("cannot listen for the failover link on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Checks the key and binds the listener (primary) before anything runs,
/// so a bad key or a taken port stops the start with the reason.
pub fn prepare(cfg: &Config) -> Result<Option<Prepared>, SetupError> {
    let Some(f) = &cfg.failover else {
        return Ok(None);
    };
    let key = Key::load(&f.key_file)?;
    let description = ranges::describe(cfg, f.split_percent);
    let role = match f.role {
        FailoverRole::Primary { .. } => Role::Primary,
        FailoverRole::Secondary { .. } => Role::Secondary,
    };
    let (listener, master) = match f.role {
        FailoverRole::Primary { listen } => {
            if listen.ip().is_unspecified() {
                // Kept for configs that rely on it; the link's key keeps
                // strangers out either way, and the listener bounds what
                // they can hold, but the port need not face every network.
                tracing::warn!(
                    "failover: failover-listen without an address listens on every address of this host, WAN included; give the address facing the partner (failover-listen=ADDR,{})",
                    listen.port()
                );
            }
            let l = std::net::TcpListener::bind(listen)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| SetupError::Listen {
                    addr: listen,
                    source,
                })?;
            (Some(l), None)
        }
        FailoverRole::Secondary { master } => (None, Some(master)),
    };
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Ok(Some(Prepared {
        node: NodeConfig {
            role,
            key,
            heartbeat_ms: ms(f.heartbeat),
            timeout_ms: ms(f.timeout),
            sync_timeout_ms: ms(f.sync_timeout),
            max_skew_ms: ms(f.max_skew),
            mclt_ms: ms(f.mclt),
            auto_partner_down_ms: f.auto_partner_down.map(ms),
            ranges_fingerprint: ranges::fingerprint(&description),
            ranges_text: description,
            shares: cfg.dhcp_ranges.iter().map(|r| (r.start, r.end)).collect(),
            split_percent: f.split_percent,
        },
        policy: SharePolicy {
            own: role,
            split_percent: f.split_percent,
            mclt: f.mclt,
            unanswered_secs: f.unanswered_secs,
        },
        listener,
        master,
    }))
}

/// What the server hands the lease task to run a failover node.
pub struct FailoverSetup {
    pub node: NodeConfig,
    pub policy: SharePolicy,
    /// Primary: the bound link listener.
    pub listener: Option<tokio::net::TcpListener>,
    /// Secondary: the primary's link address.
    pub master: Option<SocketAddr>,
}

pub struct Prepared {
    node: NodeConfig,
    policy: SharePolicy,
    listener: Option<std::net::TcpListener>,
    master: Option<SocketAddr>,
}

impl Prepared {
    /// Inside the runtime: the listener becomes a tokio one.
    pub fn into_setup(self) -> std::io::Result<FailoverSetup> {
        let listener = self
            .listener
            .map(tokio::net::TcpListener::from_std)
            .transpose()?;
        Ok(FailoverSetup {
            node: self.node,
            policy: self.policy,
            listener,
            master: self.master,
        })
    }
}
