//! The I/O half of `dhcp-script`: a thread of its own that follows the lease
//! feed, queues the runs [`super::events`] decides on, and executes them one
//! at a time with a time limit.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use twinmasq_proto::LeaseRecord;

use super::events::{invocation, Change, Context, Invocation, Tracker, MANAGED_VARS};
use super::helper::Client;
use crate::config::Config;
use crate::lease::{FeedItem, FeedReader};
use crate::net::ipv4::same_subnet;

/// Runs waiting behind the one in progress. Past this, new changes are
/// dropped (and counted) rather than held without bound.
pub const QUEUE: usize = 1024;
/// A run that takes longer is killed, with its process group.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What the runner needs from the config, copied so its thread owns it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    /// uid and gid to switch to (only set when we are root).
    pub run_as: Option<(u32, u32)>,
    pub on_renewal: bool,
    pub log_dhcp: bool,
    /// For the lease's domain and which interfaces are served.
    pub cfg: Arc<Config>,
    pub timeout: Duration,
    pub queue: usize,
}

/// Counts of what went wrong, for logs now and `status` later.
#[derive(Debug, Default)]
pub struct Counters {
    /// Changes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Feed records this thread fell behind on (each time made good from
    /// a copy of the table).
    pub lagged: AtomicU64,
    pub runs: AtomicU64,
    /// Runs that exited non-zero, were killed by a signal or did not start.
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
}

/// How one run ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    NotStarted(std::io::Error),
    WaitFailed(std::io::Error),
}

/// The running runner; dropping it leaves the thread running until the
/// lease feed closes (when the database goes away at shutdown).
pub struct ScriptRunner {
    pub counters: Arc<Counters>,
    _thread: std::thread::JoinHandle<()>,
    /// The root helper that runs the script, when the server drops root.
    pub helper: Option<super::helper::Helper>,
}

pub fn spawn(
    settings: Settings,
    initial: Vec<LeaseRecord>,
    feed: FeedReader,
    mut helper: Option<super::helper::Helper>,
) -> std::io::Result<ScriptRunner> {
    let stream = helper.as_mut().and_then(super::helper::Helper::take_stream);
    let counters = Arc::new(Counters::default());
    let c = Arc::clone(&counters);
    // Own thread and runtime: forking a script and waiting on it must cost
    // the DHCP and DNS tasks nothing, and a slow script holds only this.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("dhcp-script".into())
        .spawn(move || runtime.block_on(run(settings, initial, feed, c, stream)))?;
    Ok(ScriptRunner {
        counters,
        _thread: thread,
        helper,
    })
}

fn now_secs() -> u64 {
    crate::clock::now_ms() / 1000
}

async fn run(
    settings: Settings,
    initial: Vec<LeaseRecord>,
    feed: FeedReader,
    counters: Arc<Counters>,
    helper: Option<std::os::unix::net::UnixStream>,
) {
    let mut tracker = Tracker::new(settings.on_renewal);
    // The start-up runs are as many as the table's bound leases; they are
    // held here, not in the queue, so none is dropped for being many.
    let startup = tracker.startup(initial, now_secs());
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    tokio::join!(
        follow(tracker, feed, tx, &counters),
        execute(&settings, startup, rx, &counters, helper)
    );
}

/// Turns feed records into queued runs. Never waits on the script, so it
/// keeps up with the feed however slow the script is.
async fn follow(
    mut tracker: Tracker,
    mut feed: FeedReader,
    tx: mpsc::Sender<Change>,
    counters: &Counters,
) {
    loop {
        let changes = match feed.next().await {
            Some(FeedItem::Change(rec)) => tracker.observe(rec),
            Some(FeedItem::Resync(all)) => {
                let total = feed.missed();
                let n = total - counters.lagged.swap(total, Ordering::Relaxed);
                tracing::warn!(
                    "dhcp-script: fell {n} lease changes behind the lease feed ({total} in all); \
                     reporting what they changed from a copy of the table"
                );
                tracker.resync(all)
            }
            None => return,
        };
        for change in changes {
            if let Err(mpsc::error::TrySendError::Full(c)) = tx.try_send(change) {
                let total = counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // One line per burst start and then per hundred, not per drop.
                if total == 1 || total % 100 == 0 {
                    tracing::warn!(
                        "dhcp-script: {} runs queued, not running it for {} {} ({total} dropped in all)",
                        tx.max_capacity(),
                        c.action.as_str(),
                        c.lease.ip
                    );
                }
            }
        }
    }
}

async fn execute(
    settings: &Settings,
    startup: Vec<Change>,
    mut rx: mpsc::Receiver<Change>,
    counters: &Counters,
    helper: Option<std::os::unix::net::UnixStream>,
) {
    let mut helper = match helper.map(Client::new).transpose() {
        Ok(h) => h,
        Err(e) => {
            // Runs then fail to start, each logged, rather than running
            // with the wrong user.
            tracing::error!("dhcp-script: cannot reach the script helper: {e}");
            None
        }
    };
    for change in startup {
        run_change(settings, &change, counters, &mut helper).await;
    }
    while let Some(change) = rx.recv().await {
        run_change(settings, &change, counters, &mut helper).await;
    }
}

async fn run_change(
    settings: &Settings,
    change: &Change,
    counters: &Counters,
    helper: &mut Option<Client>,
) {
    let ip = change.lease.ip;
    let ctx = Context {
        domain: settings.cfg.domain_for(ip).map(String::from),
        interface: interface_for(&settings.cfg, ip),
        log_dhcp: settings.log_dhcp,
        now_secs: now_secs(),
    };
    let inv = invocation(change, &ctx);
    counters.runs.fetch_add(1, Ordering::Relaxed);
    let what = inv.args.join(" ");
    let outcome = match helper {
        Some(h) => {
            // The helper runs the script and user it was started with.
            h.run(&inv, settings.timeout, log_line).await
        }
        None => {
            run_script(
                &settings.path,
                &inv,
                settings.run_as,
                settings.timeout,
                log_line,
            )
            .await
        }
    };
    match outcome {
        Outcome::Exited(st) if st.success() => {}
        Outcome::Exited(st) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("dhcp-script {} {what}: {st}", settings.path.display());
        }
        Outcome::TimedOut => {
            counters.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "dhcp-script {} {what}: still running after {:?}, killed",
                settings.path.display(),
                settings.timeout
            );
        }
        Outcome::NotStarted(e) | Outcome::WaitFailed(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!("dhcp-script {} {what}: {e}", settings.path.display());
        }
    }
}

/// The served interface on the lease's subnet, else any interface on it:
/// the interface a directly attached client's requests arrive on. A
/// relayed lease is on no local subnet and gets none.
fn interface_for(cfg: &Config, ip: Ipv4Addr) -> Option<String> {
    let ifaces = match crate::net::interfaces::list() {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("dhcp-script: cannot list interfaces: {e}");
            return None;
        }
    };
    let mut on_subnet: Vec<_> = ifaces
        .into_values()
        .filter(|i| i.addrs.iter().any(|a| same_subnet(a.addr, ip, a.prefix)))
        .collect();
    on_subnet.sort_by_key(|i| (!crate::net::interfaces::serves(cfg, i), i.index));
    on_subnet.into_iter().next().map(|i| i.name)
}

/// The command for one run: stdin from /dev/null, output piped for the
/// log, the variables we manage set or removed.
fn command(path: &Path, inv: &Invocation, run_as: Option<(u32, u32)>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(path);
    // dnsmasq passes the file name alone as argv[0].
    if let Some(name) = path.file_name() {
        cmd.arg0(name);
    }
    cmd.args(&inv.args);
    for var in MANAGED_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in &inv.env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout also ends what it started.
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = run_as {
        // std drops supplementary groups too when switching from root.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Runs the script once, each line of its output logged, killed with its
/// process group after `timeout`.
pub async fn run_script(
    path: &Path,
    inv: &Invocation,
    run_as: Option<(u32, u32)>,
    timeout: Duration,
    on_line: impl Fn(String) + Send + Sync + Clone + 'static,
) -> Outcome {
    let mut cmd = command(path, inv, run_as);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::NotStarted(e),
    };
    // Logged from tasks of their own: a backgrounded grandchild holding the
    // pipes open must not hold up the next run.
    if let Some(out) = child.stdout.take() {
        tokio::spawn(log_lines(out, on_line.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_lines(err, on_line));
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => Outcome::Exited(st),
        Ok(Err(e)) => Outcome::WaitFailed(e),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on the negated pid signals the process
                // group this child leads (process_group(0) above); it is not
                // reaped yet, so its pid, and thus the group, is still ours.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let _ = child.wait().await;
            Outcome::TimedOut
        }
    }
}

async fn log_lines(stream: impl AsyncRead + Unpin, on_line: impl Fn(String)) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        on_line(line);
    }
}

fn log_line(line: String) {
    tracing::info!("dhcp-script: {line}");
}

#[cfg(test)]
mod tests {
    use super::super::events::Action;
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("script.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn inv(env: Vec<(&'static str, String)>) -> Invocation {
        Invocation {
            args: vec![
                "add".into(),
                "02:00:00:00:00:01".into(),
                "198.18.0.9".into(),
            ],
            env,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn passes_arguments_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let path = script(
            dir.path(),
            &format!("echo \"$0|$*|$DNSMASQ_DOMAIN\" > {}", out.display()),
        );
        let mut i = inv(vec![("DNSMASQ_DOMAIN", "lab.test".into())]);
        i.args.push("host".into());
        let o = rt().block_on(run_script(
            &path,
            &i,
            None,
            Duration::from_secs(10),
            log_line,
        ));
        assert!(matches!(o, Outcome::Exited(s) if s.success()), "{o:?}");
        // A script's $0 is the path the kernel ran it by, not argv[0].
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            format!(
                "{}|add 02:00:00:00:00:01 198.18.0.9 host|lab.test\n",
                path.display()
            )
        );
    }

    #[test]
    fn variables_not_set_for_a_run_are_removed_from_the_inherited_ones() {
        let cmd = command(
            Path::new("/bin/true"),
            &inv(vec![("DNSMASQ_DOMAIN", "lab.test".into())]),
            None,
        );
        let envs: Vec<(String, Option<String>)> = cmd
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(envs.contains(&("DNSMASQ_TAGS".into(), None)), "{envs:?}");
        assert!(
            envs.contains(&("DNSMASQ_INTERFACE".into(), None)),
            "{envs:?}"
        );
        assert!(
            envs.contains(&("DNSMASQ_DOMAIN".into(), Some("lab.test".into()))),
            "{envs:?}"
        );
    }

    fn lease(n: u8) -> LeaseRecord {
        use twinmasq_proto::{ClientKey, Expiry, LeaseState, Stamp};
        LeaseRecord {
            ip: Ipv4Addr::new(198, 18, 0, n),
            state: LeaseState::Bound,
            client: ClientKey::from_hwaddr(1, &[2, 0, 0, 0, 0, n]),
            htype: 1,
            hwaddr: vec![2, 0, 0, 0, 0, n],
            client_id: None,
            hostname: None,
            expires: Expiry::At(u64::MAX),
            stamp: Stamp::default(),
        }
    }

    #[test]
    fn full_queue_drops_and_lagging_is_counted_and_made_good_from_the_table() {
        let counters = Counters::default();
        let mut feed = crate::lease::feed::Feed::with_capacity(2);
        let mut requests = feed.take_requests().unwrap();
        let reader = feed.reader();
        // Five records into a feed of two: the follower misses three.
        for n in 1..=5 {
            feed.send(&lease(n));
        }
        let (tx, mut rx) = mpsc::channel(8);
        rt().block_on(async {
            let owner = async {
                // The table holds all five; then the database goes away.
                let req = requests.recv().await.unwrap();
                let _ = req.send((1..=5).map(lease).collect());
                drop(feed);
            };
            tokio::join!(follow(Tracker::new(false), reader, tx, &counters), owner);
        });
        assert_eq!(counters.lagged.load(Ordering::Relaxed), 3);
        // Every lease is reported once: from the copy, then the two changes
        // that followed it repeat nothing.
        let mut added = Vec::new();
        while let Ok(c) = rx.try_recv() {
            assert_eq!(c.action, Action::Add, "{c:?}");
            added.push(c.lease.ip.octets()[3]);
        }
        assert_eq!(added, vec![1, 2, 3, 4, 5]);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_queue_drops_runs_and_counts_them() {
        let counters = Counters::default();
        let feed = crate::lease::feed::Feed::with_capacity(8);
        let reader = feed.reader();
        for n in 1..=2 {
            feed.send(&lease(n));
        }
        drop(feed);
        let (tx, mut rx) = mpsc::channel(1);
        rt().block_on(follow(Tracker::new(false), reader, tx, &counters));
        // Two adds reached it; one fits the queue, one is dropped.
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1);
        let queued = rx.try_recv().unwrap();
        assert_eq!(queued.lease.ip, Ipv4Addr::new(198, 18, 0, 1));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn non_zero_exit_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "exit 3");
        let o = rt().block_on(run_script(
            &path,
            &inv(vec![]),
            None,
            Duration::from_secs(10),
            log_line,
        ));
        assert!(
            matches!(o, Outcome::Exited(s) if s.code() == Some(3)),
            "{o:?}"
        );
        let missing = dir.path().join("nope");
        let o = rt().block_on(run_script(
            &missing,
            &inv(vec![]),
            None,
            Duration::from_secs(1),
            log_line,
        ));
        assert!(matches!(o, Outcome::NotStarted(_)), "{o:?}");
    }

    #[test]
    fn a_hung_script_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // The shell waits on a child of its own: killing the shell alone
        // would leave the sleep running.
        let path = script(
            dir.path(),
            &format!("sleep 30 & echo $! > {}\nwait", pidfile.display()),
        );
        let t0 = Instant::now();
        let o = rt().block_on(run_script(
            &path,
            &inv(vec![]),
            None,
            Duration::from_millis(500),
            log_line,
        ));
        assert!(matches!(o, Outcome::TimedOut), "{o:?}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The sleep was in the killed group: once reaped by init it is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            if stat.is_empty() || state == Some('Z') {
                break;
            }
            assert!(Instant::now() < deadline, "child {pid} survived: {stat}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
