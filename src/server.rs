//! Starting and stopping the daemon: config → lease database → sockets →
//! engines, and back down on SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, LogFacility};
use crate::control::listener::ControlSocket;
use crate::dhcp::shell::{now_ms, Shell};
use crate::dhcp::socket::SERVER_PORT;
use crate::dns::shell::LeaseSource;
use crate::lease::{DbOptions, LeaseDb};

/// dnsmasq's exit codes, so init scripts read ours the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Config = 1,
    Network = 2,
    Filesystem = 3,
    Other = 5,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot bind the DHCP socket on port {port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("{0}")]
    Lease(#[from] crate::lease::LeaseError),
    #[error("{0}")]
    Dns(#[from] crate::dns::shell::DnsError),
    #[error("{0}")]
    Failover(#[from] crate::failover::setup::SetupError),
    #[error("{0}")]
    Metrics(#[from] crate::metrics::http::MetricsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl StartError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StartError::Config(_) => ExitCode::Config,
            StartError::Bind { .. } | StartError::Dns(_) | StartError::Metrics(_) => {
                ExitCode::Network
            }
            StartError::Lease(_) | StartError::Io { .. } => ExitCode::Filesystem,
            StartError::Failover(crate::failover::setup::SetupError::Key(_)) => ExitCode::Config,
            StartError::Failover(_) => ExitCode::Network,
        }
    }
}

fn init_logging(cfg: &Config) -> Result<(), StartError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TWINMASQ_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if cfg.log_dhcp {
            "info,twinmasq=debug"
        } else {
            "info"
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &cfg.log_facility {
        Some(LogFacility::File(path)) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| StartError::Io {
                    what: format!("cannot open log file {}", path.display()),
                    source,
                })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        Some(LogFacility::Syslog(facility)) => {
            builder.with_writer(std::io::stderr).init();
            tracing::warn!(
                "log-facility={facility}: syslog is not supported yet, logging to stderr"
            );
        }
        Some(LogFacility::Stderr) | None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

fn open_db(cfg: &Config) -> Result<LeaseDb, StartError> {
    if let Some(parent) = cfg.lease_db.parent() {
        std::fs::create_dir_all(parent).map_err(|source| StartError::Io {
            what: format!("cannot create {}", parent.display()),
            source,
        })?;
    }
    // A database that cannot be used stops the start (exit code 3) with
    // what to do about it; moving or deleting files is the operator's call.
    let mut db = LeaseDb::open(&cfg.lease_db, DbOptions::default()).map_err(|e| {
        let advice = match &e {
            crate::lease::LeaseError::CorruptDb { .. } | crate::lease::LeaseError::Corrupt { .. } => {
                format!(
                    "move it aside (mv {0} {0}.broken); the next start imports {1} if present, or starts empty",
                    cfg.lease_db.display(),
                    cfg.lease_file.display()
                )
            }
            crate::lease::LeaseError::NotADirectory { .. } => {
                "move the file aside, or point lease-db at a directory".to_string()
            }
            crate::lease::LeaseError::NoAccess { .. } => {
                "fix the owner or mode of the directory and its files".to_string()
            }
            _ => return StartError::Lease(e),
        };
        StartError::Io {
            what: e.to_string(),
            source: std::io::Error::other(advice),
        }
    })?;
    // sled 0.34 reads its log up to the first damaged entry and takes the
    // rest as never written: no error, leases silently gone. The lease
    // file is this database's own export, so a lease it lists that the
    // database lacks means the database lost it; starting anyway would
    // hand those addresses out again.
    if !db.is_empty() {
        let listed = std::fs::read_to_string(&cfg.lease_file)
            .ok()
            .and_then(|text| crate::lease::lease_file::parse(&text, &cfg.lease_file).ok())
            .unwrap_or_default();
        let missing: Vec<_> = listed.iter().filter(|r| db.get(r.ip).is_none()).collect();
        if let Some(first) = missing.first() {
            return Err(StartError::Io {
                what: format!(
                    "lease database {} is corrupt (it lacks {} of the {} leases its export {} lists, {} among them: it was read only up to damage in its files)",
                    cfg.lease_db.display(),
                    missing.len(),
                    listed.len(),
                    cfg.lease_file.display(),
                    first.ip
                ),
                source: std::io::Error::other(format!(
                    "move it aside (mv {0} {0}.broken); the next start imports {1}, or starts empty",
                    cfg.lease_db.display(),
                    cfg.lease_file.display()
                )),
            });
        }
    }
    let imported = db.import_lease_file(&cfg.lease_file, now_ms())?;
    if imported > 0 {
        db.durability().flush()?;
        tracing::info!(
            "imported {imported} leases from {}",
            cfg.lease_file.display()
        );
    }
    let bound = db.bound_count();
    if bound > cfg.lease_max as usize {
        // dnsmasq refuses to start here; we keep every lease and say so.
        tracing::warn!(
            "{bound} leases held, more than dhcp-lease-max={}: no new clients until some end",
            cfg.lease_max
        );
    }
    Ok(db)
}

struct PidFile<'a>(&'a Path);

impl Drop for PidFile<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Runs the server with an already loaded config until a stop signal.
pub fn run(cfg: Config) -> Result<(), StartError> {
    init_logging(&cfg)?;
    if !(cfg.no_daemon || cfg.keep_in_foreground) {
        tracing::warn!("running in the foreground: background (daemon) mode is not implemented yet; use -k or -d");
    }
    if cfg.user.is_some() || cfg.group.is_some() {
        tracing::warn!("user=/group= are read but privileges are not dropped yet");
    }
    let cfg = Arc::new(cfg);
    let failover = crate::failover::setup::prepare(&cfg)?;
    let db = open_db(&cfg)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StartError::Io {
            what: "cannot start the runtime".into(),
            source,
        })?;
    runtime.block_on(async {
        // DNS binds first: a taken port 53 stops the start before DHCP runs.
        let dns = crate::dns::shell::bind(&cfg)?;
        // The DNS engine learns every lease now and each change after; it
        // subscribes before the DHCP shell takes the database.
        let leases = LeaseSource {
            initial: db.iter().collect(),
            feed: db.subscribe(),
        };
        let failover = failover
            .map(|f| f.into_setup())
            .transpose()
            .map_err(|source| StartError::Io {
                what: "cannot set up the failover listener".into(),
                source,
            })?;
        let mut shell =
            Shell::start(Arc::clone(&cfg), db, SERVER_PORT, failover).map_err(|source| {
                StartError::Bind {
                    port: SERVER_PORT,
                    source,
                }
            })?;
        // Before the pid file, so a started server answers on it at once.
        let (control_tx, control_rx) = tokio::sync::mpsc::channel(crate::control::REQUEST_QUEUE);
        let control = match ControlSocket::bind(&cfg.control_socket) {
            Ok(sock) => {
                shell.control.attach(control_rx);
                Some(sock)
            }
            // Serving DHCP and DNS matters more than being asked about it;
            // `twinmasq status --check` then says "no answer", loudly.
            Err(e) => {
                tracing::error!("{e}: running without a control socket (status, leases and partner-down get no answer)");
                None
            }
        };
        // Metrics: opt-in; each engine task answers scrapes over its own
        // channel (see `metrics::snapshot`).
        let mut metrics_sources = crate::metrics::MetricsSources::default();
        let mut dns_metrics = None;
        let metrics = match cfg.metrics_listen {
            Some(addr) => {
                let listener = crate::metrics::http::bind(addr)?;
                let (tx, rx) = crate::metrics::snapshot::channel();
                shell.attach_metrics(rx);
                metrics_sources.dhcp = Some(tx);
                if dns.is_some() {
                    let (tx, rx) = crate::metrics::snapshot::channel();
                    dns_metrics = Some(crate::metrics::DnsHooks { requests: rx });
                    metrics_sources.dns = Some(tx);
                }
                Some(listener)
            }
            None => None,
        };
        std::fs::write(&cfg.pid_file, format!("{}\n", std::process::id())).map_err(|source| {
            StartError::Io {
                what: format!("cannot write pid file {}", cfg.pid_file.display()),
                source,
            }
        })?;
        let _pid = PidFile(&cfg.pid_file);
        tracing::info!(
            "started, version {}, {} DHCP range(s), DNS {}",
            env!("CARGO_PKG_VERSION"),
            cfg.dhcp_ranges.len(),
            if dns.is_some() {
                format!("on port {}", cfg.dns.port)
            } else {
                "off".into()
            }
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let dns_task = async {
            match dns {
                Some(bound) => {
                    crate::dns::shell::run_with_metrics(
                        bound,
                        Arc::clone(&cfg),
                        leases,
                        dns_metrics,
                        stopped(stop_rx.clone()),
                    )
                    .await
                }
                None => Ok(()),
            }
        };
        let control_task = async {
            if let Some(sock) = control {
                sock.serve(control_tx, stopped(stop_rx.clone())).await;
            }
        };
        let metrics_task = async {
            if let Some(listener) = metrics {
                listener
                    .serve(metrics_sources, stopped(stop_rx.clone()))
                    .await;
            }
        };
        let signal = async {
            shutdown_signal().await;
            tracing::info!("exiting on signal");
            let _ = stop_tx.send(true);
        };
        let (dhcp, dns, (), (), ()) = tokio::join!(
            shell.run(stopped(stop_rx.clone())),
            dns_task,
            control_task,
            metrics_task,
            signal
        );
        dhcp?;
        dns?;
        Ok(())
    })
}
