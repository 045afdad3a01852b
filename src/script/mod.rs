//! `dhcp-script=PATH`: dnsmasq's lease-change script.
//!
//! The script runs as `PATH add|old|del MAC IP [HOSTNAME]` (argv[0] is the
//! file name), as dnsmasq runs it:
//!
//! - `add`: a lease began (an address bound to a client that did not hold
//!   it). When an address passes straight to another client, `del` for the
//!   old holder comes first.
//! - `old`: a held lease changed its hostname or hardware address; with
//!   `script-on-renewal`, also its expiry (a renewal). A name that goes
//!   away is first announced by an `old` without the name and with
//!   `DNSMASQ_OLD_HOSTNAME`. At start, each bound lease in the database is
//!   reported as `old`, and
//!   each bound lease that ran out while we were down as `del`.
//! - `del`: a lease ended (released, expired, declined, or superseded by
//!   the same client's lease on another address), with the MAC, address and
//!   name it was last reported with.
//!
//! MAC is lowercase hex with colons, prefixed by the hardware type in hex
//! for anything but Ethernet (`06-01:23:...`). HOSTNAME is the lease's
//! unqualified name, left out when it has none.
//!
//! Environment (inherited from the server, plus):
//! - `DNSMASQ_LEASE_EXPIRES` (unix time; 0 for an infinite lease),
//!   `DNSMASQ_TIME_REMAINING` (not for `del`, nor for infinite leases),
//!   `DNSMASQ_DOMAIN` (the `domain=` for the address, when the lease has a
//!   name), `DNSMASQ_CLIENT_ID` (hex with colons, when the client sent one),
//!   `DNSMASQ_INTERFACE`, `DNSMASQ_OLD_HOSTNAME`, `DNSMASQ_DATA_MISSING`
//!   (for every run but `add`, as dnsmasq 2.90 does in practice),
//!   `DNSMASQ_LOG_DHCP` (with `log-dhcp`).
//! - `DNSMASQ_INTERFACE` is the local interface on the lease's subnet, not
//!   the one the last request came in on: the record does not keep it. The
//!   two are the same for directly attached clients; a relayed lease gets
//!   none. It is set at start too: dnsmasq's man page says it is not, but
//!   dnsmasq 2.90 finds it from the subnet there as well (seen in
//!   `tests/dhcp_script.rs` run against it).
//! - Not set: `DNSMASQ_SUPPLIED_HOSTNAME`, `DNSMASQ_TAGS`,
//!   `DNSMASQ_RELAY_ADDRESS`, `DNSMASQ_VENDOR_CLASS`,
//!   `DNSMASQ_USER_CLASS0..`, `DNSMASQ_REQUESTED_OPTIONS` (and the relay
//!   agent and CPE-WAN ones). They describe the request, not the lease, and
//!   the lease record (the unit the database stores and the failover pair
//!   replicates) does not carry them (dnsmasq's man page, too, has the
//!   client's hostname and classes only in runs caused by a request).
//!   `DNSMASQ_LEASE_LENGTH` is dnsmasq's
//!   broken-RTC alternative to `DNSMASQ_LEASE_EXPIRES`. Any of these the
//!   server inherited are removed, as dnsmasq does.
//!
//! Off the hot path: a thread of its own follows the lease database's
//! change feed, decides the runs ([`events`], pure) and runs them one at a
//! time in order ([`runner`]), like dnsmasq's helper process. Runs wait in
//! a bounded queue; when it is full a change is dropped, logged and
//! counted, and so are feed records missed by falling behind. A run is
//! killed (with its process group) after 60 s; that and a non-zero exit
//! are logged and the next run goes ahead. Its output is logged line by
//! line. Runs still queued at shutdown are not run.
//!
//! Failover: records merged from the partner come through the same feed,
//! so the script runs on both nodes for every change, whichever node made
//! it. Each node then tells its script about the whole shared table, as
//! dnsmasq's script sees its whole table; the alternative (only the node
//! that granted a lease) would leave a node's script blind to leases it
//! will serve after a takeover, and a change made while unlinked would be
//! told to neither script once merged.
//!
//! Who runs it, as in dnsmasq: a server started as root that drops to
//! `user` first starts a helper process that stays root ([`helper`]); the
//! script runs from there as root, or as `dhcp-scriptuser=USER` (and its
//! primary group). A server that never was root runs it itself, as its own
//! user. `script-arp` and `leasefile-ro` (the `init` action) are not
//! supported yet.

pub mod events;
pub mod helper;
pub mod runner;

use std::sync::Arc;

use crate::config::Config;
use crate::lease::LeaseDb;

pub use runner::ScriptRunner;

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("dhcp-scriptuser={0}: no such user")]
    UnknownUser(String),
    #[error("dhcp-scriptuser={user}: cannot look the user up: {source}")]
    UserLookup {
        user: String,
        source: std::io::Error,
    },
    #[error("cannot start the dhcp-script runner: {0}")]
    Start(std::io::Error),
    #[error("cannot start the dhcp-script helper, which runs the script as root after the server drops to its user: {0}")]
    Helper(std::io::Error),
}

/// Starts the root helper if `dhcp-script` is set and the server, root
/// now, drops to another user after start (`dropping_root`). Call before
/// anything limits what an exec may gain (the helper runs the script with
/// root's full powers, as dnsmasq's does) and before the drop.
pub fn spawn_helper(
    cfg: &Config,
    dropping_root: bool,
) -> Result<Option<helper::Helper>, ScriptError> {
    let Some(path) = &cfg.dhcp_script else {
        return Ok(None);
    };
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !dropping_root {
        return Ok(None);
    }
    let run_as = cfg
        .dhcp_script_user
        .as_deref()
        .map(lookup_user)
        .transpose()?;
    helper::Helper::spawn(path, run_as)
        .map(Some)
        .map_err(ScriptError::Helper)
}

/// Starts the runner if `dhcp-script` is set, with the helper from
/// [`spawn_helper`] if there is one. Subscribes to `db`'s feed and reads
/// its table, so call it before anything else changes the table.
pub fn start(
    cfg: &Arc<Config>,
    db: &LeaseDb,
    helper: Option<helper::Helper>,
) -> Result<Option<ScriptRunner>, ScriptError> {
    let Some(path) = cfg.dhcp_script.clone() else {
        return Ok(None);
    };
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let run_as = match (&cfg.dhcp_script_user, root, &helper) {
        // The helper runs it as that user.
        (Some(_), _, Some(_)) => None,
        (Some(user), true, None) => Some(lookup_user(user)?),
        (Some(user), false, None) => {
            tracing::warn!(
                "dhcp-scriptuser={user}: not running as root, the script runs as this server's user"
            );
            None
        }
        (None, _, _) => None,
    };
    if let Some(h) = &helper {
        tracing::info!(
            "dhcp-script runs from helper process {}, as {}",
            h.pid(),
            cfg.dhcp_script_user.as_deref().unwrap_or("root")
        );
    }
    let settings = runner::Settings {
        path,
        run_as,
        on_renewal: cfg.script_on_renewal,
        log_dhcp: cfg.log_dhcp,
        cfg: Arc::clone(cfg),
        timeout: runner::TIMEOUT,
        queue: runner::QUEUE,
    };
    let feed = db.feed_reader();
    let initial = db.iter().collect();
    runner::spawn(settings, initial, feed, helper)
        .map_err(ScriptError::Start)
        .map(Some)
}

/// uid and primary gid of `name`.
fn lookup_user(name: &str) -> Result<(u32, u32), ScriptError> {
    crate::service::privileges::user_ids(name)
        .map_err(|source| ScriptError::UserLookup {
            user: name.to_string(),
            source,
        })?
        .ok_or_else(|| ScriptError::UnknownUser(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_conf_text;

    #[test]
    fn options_are_read() {
        let c = parse_conf_text(
            "dhcp-script=/usr/local/bin/lease-hook\ndhcp-scriptuser=nobody\nscript-on-renewal\n",
            "/etc/dnsmasq.conf",
        )
        .unwrap();
        assert_eq!(
            c.dhcp_script.as_deref(),
            Some(std::path::Path::new("/usr/local/bin/lease-hook"))
        );
        assert_eq!(c.dhcp_script_user.as_deref(), Some("nobody"));
        assert!(c.script_on_renewal);
        let d = parse_conf_text("", "/etc/dnsmasq.conf").unwrap();
        assert_eq!((d.dhcp_script, d.script_on_renewal), (None, false));
    }

    #[test]
    fn relative_script_path_and_script_arp_are_errors() {
        let e = parse_conf_text("dhcp-script=hook.sh\n", "/etc/dnsmasq.conf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an absolute path"), "{e}");
        for unsupported in ["script-arp", "leasefile-ro"] {
            let e = parse_conf_text(&format!("{unsupported}\n"), "/etc/dnsmasq.conf")
                .unwrap_err()
                .to_string();
            assert!(e.contains("not supported by twinmasq yet"), "{e}");
        }
    }

    #[test]
    fn users_are_looked_up() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert!(matches!(
            lookup_user("no-such-user-twinmasq"),
            Err(ScriptError::UnknownUser(_))
        ));
    }
}
