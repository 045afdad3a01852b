//! The signals an init system or operator sends, as dnsmasq reads them:
//! SIGHUP reloads the hosts files and clears the DNS cache, and re-reads
//! `dhcp-hostsfile`/`dhcp-optsfile` (leases and the failover link are not
//! touched); SIGUSR1 logs cache
//! and lease statistics; SIGTERM and SIGINT stop the server cleanly.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::control::{ControlReply, ControlRequest, RequestKind, StatusReport};
use crate::dns::shell::DnsSignal;

/// Where the handler forwards what it receives.
pub struct SignalHooks {
    /// The DNS task, when DNS is on.
    pub dns: Option<mpsc::Sender<DnsSignal>>,
    /// The DHCP shell's request queue (the control socket's), for lease
    /// statistics: the shell's task owns the database.
    pub dhcp: mpsc::Sender<ControlRequest>,
    /// The DHCP shell's SIGHUP queue: re-read the DHCP host/option files.
    pub dhcp_reload: mpsc::Sender<()>,
}

/// The installed handlers. Installing replaces the default actions at
/// once, so a SIGHUP during the rest of the start-up no longer kills us.
pub struct Signals {
    hup: Signal,
    usr1: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Call inside the runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Handles signals until SIGTERM or SIGINT, whose name it returns.
    pub async fn serve(mut self, hooks: SignalHooks) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading hosts files");
                    if let Some(dns) = &hooks.dns {
                        // A full queue means reloads are already waiting;
                        // one more adds nothing.
                        let _ = dns.try_send(DnsSignal::Reload);
                    }
                    let _ = hooks.dhcp_reload.try_send(());
                }
                _ = self.usr1.recv() => {
                    if let Some(dns) = &hooks.dns {
                        let _ = dns.try_send(DnsSignal::LogStats);
                    }
                    // Asked off this loop, so a busy DHCP task cannot hold
                    // up a SIGTERM behind it.
                    tokio::spawn(log_lease_stats(hooks.dhcp.clone()));
                }
            }
        }
    }
}

async fn log_lease_stats(dhcp: mpsc::Sender<ControlRequest>) {
    let (reply, rx) = oneshot::channel();
    let req = ControlRequest {
        kind: RequestKind::Status,
        reply,
    };
    if dhcp.send(req).await.is_err() {
        return;
    }
    match rx.await {
        Ok(ControlReply::Status(s)) => log_status(&s),
        Ok(_) | Err(_) => tracing::warn!("SIGUSR1: the DHCP task gave no statistics"),
    }
}

fn log_status(s: &StatusReport) {
    let l = &s.leases;
    tracing::info!(
        "leases: {} bound, {} unexpired, {} records",
        l.bound,
        l.active,
        l.records
    );
    for r in &s.ranges {
        tracing::info!(
            "DHCP range {} -- {}: {} addresses, {} free",
            r.start,
            r.end,
            r.size,
            r.free
        );
    }
    let d = &s.dhcp;
    let ignored: u64 = d.ignored.values().sum();
    tracing::info!(
        "DHCP packets: {} received, {} offers, {} ACKs, {} NAKs, {} ignored",
        d.received,
        d.offers,
        d.acks,
        d.naks,
        ignored
    );
}
