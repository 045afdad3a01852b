//! Starting and stopping the daemon: (background) → whom to become, the
//! dhcp-script helper, limits on exec → log → the user's files handed over
//! → sockets → (drop root) → lease database → engines, and back down on
//! SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::config::Config;
use crate::control::listener::ControlSocket;
use crate::dhcp::socket::SERVER_PORT;
use crate::dns::shell::LeaseSource;
use crate::lease::{DbOptions, LeaseDb};
use crate::lease_task::Shell;
use crate::service::daemon::{self, Reporter, Role, StartReport};
use crate::service::logging;
use crate::service::pid_file::PidFile;
use crate::service::privileges::{self, PrivError, Target};
use crate::service::signals::{SignalHooks, Signals};

/// How long the exit waits for blocking tasks (a lease-file write) left.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// Requests from SIGHUP/SIGUSR1 waiting for the DNS task.
const DNS_SIGNAL_QUEUE: usize = 4;

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
    #[error("{0}")]
    Script(#[from] crate::script::ScriptError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Log(#[from] logging::LogError),
    #[error("{0}")]
    Daemon(#[from] daemon::DaemonError),
    #[error("{0}")]
    Privileges(#[from] PrivError),
    /// The daemon's start error, as the waiting parent received it.
    #[error("{message}")]
    Reported { code: u8, message: String },
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
            StartError::Script(crate::script::ScriptError::Start(_)) => ExitCode::Other,
            StartError::Script(_) => ExitCode::Config,
            StartError::Log(logging::LogError::File { .. }) => ExitCode::Filesystem,
            StartError::Log(logging::LogError::Facility(_)) => ExitCode::Config,
            StartError::Log(_) | StartError::Daemon(_) => ExitCode::Other,
            StartError::Privileges(PrivError::Unknown(_) | PrivError::Lookup { .. }) => {
                ExitCode::Config
            }
            StartError::Privileges(
                PrivError::Unreachable { .. }
                | PrivError::Chown { .. }
                | PrivError::Create { .. }
                | PrivError::Symlink { .. },
            ) => ExitCode::Filesystem,
            StartError::Privileges(PrivError::Switch { .. } | PrivError::Restrict { .. }) => {
                ExitCode::Other
            }
            StartError::Reported { code, .. } => match code {
                1 => ExitCode::Config,
                2 => ExitCode::Network,
                3 => ExitCode::Filesystem,
                _ => ExitCode::Other,
            },
        }
    }
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
    // What an imported lease must be (the DHCP shell adds the hosts files'
    // addresses once it has read them).
    db.set_admission(crate::lease::Admission::from_config(cfg));
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

fn create_pid_file(path: &Path, dropping: bool) -> Result<PidFile, StartError> {
    PidFile::create(path, dropping).map_err(|source| StartError::Io {
        what: format!("cannot write pid file {}", path.display()),
        source,
    })
}

/// Whom to become after binding, decided before anything starts (the
/// `dhcp-script` helper and the limits on exec depend on it). With the
/// default user only, a database the user could not reach leaves us root
/// with a warning (returned, for the log that does not exist yet) rather
/// than a server that fails later; a `user=` the operator gave is held to.
fn plan_drop(cfg: &Config) -> Result<(Option<Target>, Option<String>), StartError> {
    let Some(target) = privileges::plan(cfg)? else {
        return Ok((None, None));
    };
    match privileges::check_reach(&target, &cfg.lease_db, &cfg.lease_file) {
        Ok(()) => Ok((Some(target), None)),
        Err(e @ PrivError::Unreachable { .. }) if !target.explicit => Ok((
            None,
            Some(format!(
                "{e}; staying root (an explicit user= makes this a start error)"
            )),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Runs the server with an already loaded config until a stop signal.
/// Without `-k`/`-d` the calling process returns once the daemon it forked
/// reports that it serves (Ok) or why it could not start (Err).
pub fn run(cfg: Config) -> Result<(), StartError> {
    let foreground = cfg.no_daemon || cfg.keep_in_foreground;
    let mut reporter = None;
    if !foreground {
        match daemon::detach()? {
            Role::Parent(report) => return parent_outcome(report),
            Role::Daemon(r) => reporter = Some(r),
        }
    }
    let result = serve(cfg, foreground, &mut reporter);
    if let (Err(e), Some(r)) = (&result, reporter.take()) {
        tracing::error!("{e}");
        r.failed(e.exit_code() as u8, &e.to_string());
    }
    result
}

fn parent_outcome(report: StartReport) -> Result<(), StartError> {
    match report {
        StartReport::Ready => Ok(()),
        StartReport::Failed { code, message } => Err(StartError::Reported { code, message }),
        StartReport::Vanished => Err(StartError::Reported {
            code: ExitCode::Other as u8,
            message: "the daemon exited during start-up without saying why".into(),
        }),
    }
}

fn serve(cfg: Config, foreground: bool, reporter: &mut Option<Reporter>) -> Result<(), StartError> {
    if reporter.is_some() {
        let keep_stderr = logging::outputs(&cfg, foreground).contains(&logging::Output::Stderr);
        daemon::detach_stdio(keep_stderr)?;
    }
    // Whom to become is decided first: until the drop, only this thread
    // exists, so the limits on exec set here reach every thread the server
    // starts (they are per thread). The root dhcp-script helper is started
    // before them: it runs scripts with root's full powers.
    let (target, stay_root) = plan_drop(&cfg)?;
    let helper = crate::script::spawn_helper(&cfg, target.is_some())?;
    let caps = privileges::needed_caps(&cfg);
    let unrestricted = match target {
        Some(_) => privileges::restrict_exec(&caps)?,
        None => None,
    };
    let _log = logging::init(&cfg, foreground)?;
    for warning in [stay_root, unrestricted].into_iter().flatten() {
        tracing::warn!("{warning}");
    }
    if let Some(t) = target.as_ref().filter(|t| t.group.is_none()) {
        tracing::info!(
            "group {} does not exist: running with user {}'s own group",
            crate::config::DEFAULT_GROUP,
            t.user
        );
    }
    if let Some(warning) = crate::lease::lease_file::directory_warning(&cfg.lease_file) {
        tracing::warn!("{warning}");
    }
    let cfg = Arc::new(cfg);
    let failover = crate::failover::setup::prepare(&cfg)?;
    // Dropping root: the user's files (the database directory and the
    // lease file) are handed over through descriptors (see
    // service::handover), and the database itself is opened only after
    // the drop. Otherwise it is opened first, so a damaged one stops the
    // start before anything is bound.
    let early_db = match &target {
        Some(t) => {
            privileges::hand_over(t, &cfg.lease_db, &cfg.lease_file)?;
            None
        }
        None => Some(open_db(&cfg)?),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StartError::Io {
            what: "cannot start the runtime".into(),
            source,
        })?;
    let result = runtime.block_on(async {
        let signals = Signals::install().map_err(|source| StartError::Io {
            what: "cannot install signal handlers".into(),
            source,
        })?;
        // DNS binds first, on its own thread: a taken port 53 stops the
        // start before DHCP runs.
        let dns = crate::dns::thread::spawn(Arc::clone(&cfg))?;
        let failover = failover
            .map(|f| f.into_setup())
            .transpose()
            .map_err(|source| StartError::Io {
                what: "cannot set up the failover listener".into(),
                source,
            })?;
        let dhcp_sock =
            crate::dhcp::socket::bind(SERVER_PORT).map_err(|source| StartError::Bind {
                port: SERVER_PORT,
                source,
            })?;
        // Before the pid file, so a started server answers on it at once.
        let control = match ControlSocket::bind(&cfg.control_socket) {
            Ok(sock) => Some(sock),
            // Serving DHCP and DNS matters more than being asked about it;
            // `twinmasq status --check` then says "no answer", loudly.
            Err(e) => {
                tracing::error!("{e}: running without a control socket (status, leases and partner-down get no answer)");
                None
            }
        };
        // Metrics: opt-in; each engine task answers scrapes over its own
        // channel (see `metrics::snapshot`).
        let metrics = cfg
            .metrics_listen
            .map(crate::metrics::http::bind)
            .transpose()?;
        // dnsmasq's -d (debug mode) writes no pid file. Created now, while
        // root; our pid goes in once the start is over.
        let mut pid_file = if cfg.no_daemon {
            None
        } else {
            Some(create_pid_file(&cfg.pid_file, target.is_some())?)
        };
        // Every privileged socket is bound and every root file opened:
        // from here on, root is only a liability.
        if let Some(t) = &target {
            privileges::become_user(t, &caps)?;
            tracing::info!(
                "running as {}, keeping capabilities: {}",
                privileges::describe(t),
                privileges::cap_names(&caps)
            );
        }
        // Opened by the user: sled creates its files as the user, and root
        // never reads what the user could have written.
        let db = match early_db {
            Some(db) => db,
            None => open_db(&cfg)?,
        };
        // The DNS engine learns every lease now and each change after; it
        // subscribes before the DHCP shell takes the database.
        let leases = LeaseSource {
            initial: db.iter().collect(),
            feed: db.feed_reader(),
        };
        // dhcp-script follows the same feed, on a thread of its own.
        let _script = crate::script::start(&cfg, &db, helper)?;
        let mut shell = Shell::start_on(Arc::clone(&cfg), db, dhcp_sock, failover).map_err(
            |source| StartError::Bind {
                port: SERVER_PORT,
                source,
            },
        )?;
        // The shell answers the control socket and SIGUSR1 from one queue.
        let (control_tx, control_rx) = tokio::sync::mpsc::channel(crate::control::REQUEST_QUEUE);
        shell.control.attach(control_rx);
        let (dhcp_reload_tx, dhcp_reload_rx) = tokio::sync::mpsc::channel(1);
        shell.attach_reload(dhcp_reload_rx);
        let mut metrics_sources = crate::metrics::MetricsSources::default();
        let mut dns_metrics = None;
        if metrics.is_some() {
            let (tx, rx) = crate::metrics::snapshot::channel();
            shell.attach_metrics(rx);
            metrics_sources.dhcp = Some(tx);
            if dns.is_some() {
                let (tx, rx) = crate::metrics::snapshot::channel();
                dns_metrics = Some(crate::metrics::DnsHooks { requests: rx });
                metrics_sources.dns = Some(tx);
            }
        }
        if let Some(p) = &mut pid_file {
            p.publish().map_err(|source| StartError::Io {
                what: format!("cannot write pid file {}", cfg.pid_file.display()),
                source,
            })?;
        }
        let (dns_signal_tx, dns_signal_rx) = tokio::sync::mpsc::channel(DNS_SIGNAL_QUEUE);
        let hooks = SignalHooks {
            dns: dns.is_some().then_some(dns_signal_tx),
            dhcp: control_tx.clone(),
            dhcp_reload: dhcp_reload_tx,
        };
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
        if let Some(r) = reporter.take() {
            r.ready();
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let dns_task = async {
            match dns {
                Some(thread) => {
                    thread
                        .serve(crate::dns::thread::DnsStart {
                            leases,
                            signals: dns_signal_rx,
                            metrics: dns_metrics,
                            stop: stop_rx.clone(),
                        })
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
            let name = signals.serve(hooks).await;
            tracing::info!("exiting on receipt of {name}");
            let _ = stop_tx.send(true);
        };
        // The DHCP shell flushes the lease database and writes the lease
        // file as it stops; the failover link's sockets close with the
        // runtime below.
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
    });
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    result
}
