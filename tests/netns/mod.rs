//! Shared harness for tests that run real DHCP clients against a real server
//! (twinmasq, or dnsmasq as the reference) inside network namespaces.
//!
//! Topology of one [`Lab`]: a "lan" namespace holding a bridge, a server
//! namespace (198.18.0.1/24) and any number of client namespaces, each joined
//! to the bridge by a veth pair. Every veth is created *inside* the lan
//! namespace and its peer moved straight into its own namespace, so nothing is
//! ever created in, or sent to, the host's network namespace. Addresses come
//! from 198.18.0.0/15 only (see design.md, "Addresses in tests").
//!
//! More servers: [`Lab::add_server_host`] and [`Lab::start_server_on`] (each
//! server with its own directory), [`Lab::add_direct_link`] (a veth between
//! two namespaces, off the bridge, that a test can cut), and [`PairLab`], a
//! twinmasq failover pair built from them. [`Lab::set_isolated`] steers
//! clients to one server by bridge port isolation.
//!
//! Cleanup is RAII: [`Proc`] kills its process by PID on drop, and [`Lab`]
//! on drop kills whatever is still running in its namespaces (only processes
//! we started can be there), deletes the namespaces, `/etc/netns/<ns>` and the
//! files dhcpcd leaves on the host, also when the test panics. Every wait is
//! bounded.
//!
//! Used as `mod netns;` from a test file; not every test file uses every item.
#![allow(dead_code)]

pub mod pair;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// The lab's server address; also the router handed out by [`ServerConf::standard`].
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const PREFIX_LEN: u8 = 24;
pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
pub const RANGE_START: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const RANGE_END: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 199);
pub const ROUTER: Ipv4Addr = SERVER_IP;
/// Failover pairs ([`PairLab`]): the secondary's LAN address (the primary
/// is the lab's server host, [`SERVER_IP`]), and the direct link's
/// addresses, from 198.19.0.0/24 (inside 198.18.0.0/15).
pub const SECONDARY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LINK_PRIMARY_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub const LINK_SECONDARY_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
pub const LINK_PREFIX_LEN: u8 = 24;
/// The primary's failover listener (on [`LINK_PRIMARY_IP`]).
pub const FAILOVER_PORT: u16 = 6470;
/// Nothing listens on these; they only have to arrive in option 6.
pub const DNS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 53), Ipv4Addr::new(198, 18, 0, 54)];
pub const DOMAIN: &str = "lab.test";
pub const LEASE_SECS: u32 = 3600;

/// Which server the tests drive when `TWINMASQ_TEST_SERVER` is unset.
/// `TWINMASQ_TEST_SERVER=dnsmasq` runs the same tests against real dnsmasq,
/// which shows they test DHCP behaviour, not our implementation.
pub const DEFAULT_SERVER: ServerKind = ServerKind::Twinmasq;

/// Bound for one-shot commands (`ip`, `ethtool`, `dhclient -r`).
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for a client to reach BOUND. Clients retry every 1-2 s here, so a
/// healthy server answers well within it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for the server to write its pid file and lease file on start, and for
/// the lease file to reflect a change (twinmasq batches writes within ~1 s).
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(10);

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static IF_COUNTER: AtomicU32 = AtomicU32::new(0);
static STALE_CLEANUP: Once = Once::new();

// ---------------------------------------------------------------------------
// Small process helpers

/// Runs a command to completion within `timeout`; Ok(stdout) on exit status 0.
/// Output is read by a helper thread so a chatty command cannot deadlock on a
/// full pipe, and a hung one is killed by its PID.
pub fn run(args: &[&str], timeout: Duration) -> Result<String, String> {
    let desc = args.join(" ");
    let child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{desc}`: cannot start: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Ok(Ok(out)) => Err(format!(
            "`{desc}`: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )),
        Ok(Err(e)) => Err(format!("`{desc}`: {e}")),
        Err(_) => {
            // Not yet reaped (the waiter thread has not returned), so the PID
            // is still this child's.
            signal(pid, libc::SIGKILL);
            Err(format!("`{desc}`: timed out after {timeout:?}"))
        }
    }
}

/// [`run`] for setup steps that must work: a failure is a test failure.
fn must(args: &[&str]) -> String {
    run(args, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Polls `f` every 20 ms until it yields a value or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running process we started inside a namespace. Dropping it ends it
/// (SIGTERM, then SIGKILL), by its PID and only while it is still our
/// unreaped child, so a recycled PID is never hit.
pub struct Proc {
    pub name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `args` in namespace `ns` via `ip netns exec`, which execs the
    /// program, so the PID we hold is the program's own. stdout and stderr are
    /// appended to `log`.
    pub fn spawn(name: &str, ns: &str, args: &[&str], log: &Path) -> Proc {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", args.join(" ")));
        Proc {
            name: name.to_string(),
            child,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status if it has exited (reaping it), else None.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Sends `sig` if the process has not exited (and been reaped) yet.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.running() {
            signal(self.pid(), sig);
        }
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, "exit", || self.try_status()).ok()
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL. Returns the exit status
    /// and whether SIGKILL was needed.
    pub fn terminate(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        self.signal(libc::SIGTERM);
        if let Some(st) = self.wait_timeout(grace) {
            return (Some(st), false);
        }
        self.signal(libc::SIGKILL);
        (self.wait_timeout(Duration::from_secs(5)), true)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.terminate(Duration::from_secs(2));
        }
    }
}

// ---------------------------------------------------------------------------
// The lab: namespaces and links

/// One host of the lab: a namespace with one veth on the lab's bridge.
#[derive(Clone, Debug, Default)]
pub struct Host {
    pub ns: String,
    /// Unique across all labs of all test processes: dhcpcd names files on the
    /// host filesystem after it (/var/lib/dhcpcd/<if>.lease, /run/dhcpcd/...).
    pub ifname: String,
    /// Lower-case, colon-separated, as dnsmasq writes it in the lease file.
    pub mac: String,
}

impl Host {
    /// Runs a command inside this host's namespace.
    pub fn exec(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        run(&full, timeout)
    }

    /// Configures `addr` on the interface, as a client's hook script would;
    /// unicast renew and release need the address in place.
    pub fn set_addr(&self, addr: Ipv4Addr, mask: Ipv4Addr) {
        let prefix = u32::from(mask).count_ones();
        must(&[
            "ip",
            "-n",
            &self.ns,
            "addr",
            "replace",
            &format!("{addr}/{prefix}"),
            "dev",
            &self.ifname,
        ]);
    }

    pub fn flush_addrs(&self) {
        must(&[
            "ip",
            "-n",
            &self.ns,
            "-4",
            "addr",
            "flush",
            "dev",
            &self.ifname,
        ]);
    }

    /// Adds an IPv6 address (`ADDR/PREFIX`) to the interface, usable at
    /// once: duplicate address detection is skipped (`nodad`), as nothing
    /// else in a lab holds it.
    pub fn add_addr6(&self, cidr: &str) {
        must(&[
            "ip",
            "-n",
            &self.ns,
            "-6",
            "addr",
            "add",
            cidr,
            "dev",
            &self.ifname,
            "nodad",
        ]);
    }

    /// An IPv6 route to `prefix` straight out of the interface (on-link).
    pub fn add_route6(&self, prefix: &str) {
        must(&[
            "ip",
            "-n",
            &self.ns,
            "-6",
            "route",
            "add",
            prefix,
            "dev",
            &self.ifname,
        ]);
    }

    /// The IPv4 addresses configured on the interface.
    pub fn addrs(&self) -> Vec<Ipv4Addr> {
        let out = must(&[
            "ip",
            "-n",
            &self.ns,
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            &self.ifname,
        ]);
        out.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                it.find(|w| *w == "inet")?;
                it.next()?.split('/').next()?.parse().ok()
            })
            .collect()
    }
}

/// One isolated network: a bridge in its own namespace, a server host and any
/// number of client hosts. Labs share nothing, so tests run in parallel.
pub struct Lab {
    /// `tmqt-<pid>-<n>`; prefix of every namespace of this lab.
    pub id: String,
    pub test: String,
    pub server: Host,
    lan: String,
    namespaces: Mutex<Vec<String>>,
    ifnames: Mutex<Vec<String>>,
    /// Host interface name -> its peer, the port on the lan bridge.
    ports: Mutex<BTreeMap<String, String>>,
    // Last field: dropped after Drop::drop has dumped logs from it.
    dir: tempfile::TempDir,
}

impl Lab {
    /// Builds the lan and server namespaces. Returns None (after printing
    /// `SKIPPED: reason`) only when namespaces are impossible here: not root,
    /// or `ip netns add` fails. With `CI` set in the environment that panics
    /// instead, so a CI run can never silently skip these tests.
    pub fn new(test: &str) -> Option<Lab> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip(test, "not root; network namespaces need root");
            return None;
        }
        STALE_CLEANUP.call_once(cleanup_stale);

        let id = format!(
            "tmqt-{}-{}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let lan = format!("{id}-lan");
        if let Err(e) = run(&["ip", "netns", "add", &lan], CMD_TIMEOUT) {
            skip(test, &format!("cannot create a network namespace: {e}"));
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .expect("create temp dir");
        let mut lab = Lab {
            id,
            test: test.to_string(),
            server: Host::default(),
            lan: lan.clone(),
            namespaces: Mutex::new(vec![]),
            ifnames: Mutex::new(vec![]),
            ports: Mutex::new(BTreeMap::new()),
            dir,
        };
        // Registered before anything else can fail, so Drop removes it.
        lab.register_ns(&lan);
        lab.prepare_ns(&lan);
        // STP off and no forward delay: ports forward the moment they are up,
        // so a client's first DISCOVER is not eaten by a listening port.
        must(&[
            "ip",
            "-n",
            &lan,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ]);
        must(&["ip", "-n", &lan, "link", "set", "br0", "up"]);
        lab.server = lab.add_host("srv", None, Some(SERVER_IP));
        Some(lab)
    }

    /// The lab's private directory (configs, logs, client state).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new client namespace with a random (kernel-chosen) MAC.
    pub fn add_client(&self) -> Host {
        self.add_host("c", None, None)
    }

    /// A new client namespace whose interface has `mac`, e.g. for dhcp-host.
    pub fn add_client_with_mac(&self, mac: &str) -> Host {
        self.add_host("c", Some(mac), None)
    }

    fn register_ns(&self, ns: &str) {
        self.namespaces.lock().unwrap().push(ns.to_string());
    }

    /// Must precede any `ip netns exec` into `ns`: exec bind-mounts
    /// /etc/netns/<ns>/resolv.conf over /etc/resolv.conf, so nothing run in
    /// the namespace can read or write the host's.
    fn prepare_ns(&self, ns: &str) {
        let etc = Path::new("/etc/netns").join(ns);
        fs::create_dir_all(&etc).expect("create /etc/netns/<ns>");
        fs::write(
            etc.join("resolv.conf"),
            format!("# twinmasq test lab {ns}\nnameserver {}\n", DNS[0]),
        )
        .expect("write /etc/netns/<ns>/resolv.conf");
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    fn add_host(&self, role: &str, mac: Option<&str>, addr: Option<Ipv4Addr>) -> Host {
        let k = IF_COUNTER.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{}-{role}{k}", self.id);
        must(&["ip", "netns", "add", &ns]);
        self.register_ns(&ns);
        self.prepare_ns(&ns);

        // Hex keeps the name within IFNAMSIZ-1 (15) for any pid and counter.
        let ifname = format!("tq{:x}x{k:x}", std::process::id());
        assert!(ifname.len() <= 15, "interface name {ifname} too long");
        let lanif = format!("p{k}");
        must(&[
            "ip", "-n", &self.lan, "link", "add", &lanif, "type", "veth", "peer", "name", &ifname,
            "netns", &ns,
        ]);
        self.ifnames.lock().unwrap().push(ifname.clone());
        self.ports
            .lock()
            .unwrap()
            .insert(ifname.clone(), lanif.clone());
        if let Some(mac) = mac {
            must(&[
                "ip", "-n", &ns, "link", "set", "dev", &ifname, "address", mac,
            ]);
        }
        must(&[
            "ip", "-n", &self.lan, "link", "set", &lanif, "master", "br0", "up",
        ]);
        must(&["ip", "-n", &ns, "link", "set", &ifname, "up"]);
        if let Some(addr) = addr {
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/{PREFIX_LEN}"),
                "dev",
                &ifname,
            ]);
        }
        // Checksum offload off on both ends: with it on, raw-socket clients
        // (all three DHCP clients) can see UDP checksums left unfilled.
        for (n, dev) in [(&self.lan, &lanif), (&ns, &ifname)] {
            must(&[
                "ip", "netns", "exec", n, "ethtool", "-K", dev, "tx", "off", "rx", "off",
            ]);
        }
        let out = must(&["ip", "-n", &ns, "-o", "link", "show", "dev", &ifname]);
        let mac = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in `{out}`"))
            .to_lowercase();
        Host { ns, ifname, mac }
    }

    /// Starts the server under test in the server namespace.
    pub fn start_server(&self, conf: &ServerConf) -> Server<'_> {
        self.start_server_kind(ServerKind::from_env(), conf)
    }

    /// Starts a given server, whatever the environment says: for tests that
    /// move from dnsmasq to twinmasq on the same files.
    pub fn start_server_kind(&self, kind: ServerKind, conf: &ServerConf) -> Server<'_> {
        let mut s = Server::new(self, kind, conf);
        s.start();
        s
    }

    /// A further server host on the bridge, at the fixed `addr` (in the lab
    /// subnet, distinct from [`SERVER_IP`] and from every other host's).
    pub fn add_server_host(&self, addr: Ipv4Addr) -> Host {
        self.add_host("srv", None, Some(addr))
    }

    /// A server (not started) on `host`, with its files in the lab
    /// subdirectory `name`: for labs with more than one server.
    pub fn server_on(
        &self,
        host: &Host,
        name: &str,
        kind: ServerKind,
        conf: &ServerConf,
    ) -> Server<'_> {
        Server::new_on(self, kind, conf, host, name)
    }

    /// [`server_on`](Self::server_on), started.
    pub fn start_server_on(
        &self,
        host: &Host,
        name: &str,
        kind: ServerKind,
        conf: &ServerConf,
    ) -> Server<'_> {
        let mut s = self.server_on(host, name, kind, conf);
        s.start();
        s
    }

    /// Bridge port isolation of `host`'s port on the lan bridge: isolated
    /// ports exchange no frames with each other, only with ports that are
    /// not isolated. Isolating one server and some clients steers those
    /// clients to the other server(s), deterministically, without touching
    /// anything else.
    pub fn set_isolated(&self, host: &Host, isolated: bool) {
        let port = self
            .ports
            .lock()
            .unwrap()
            .get(&host.ifname)
            .cloned()
            .unwrap_or_else(|| panic!("{} is not on this lab's bridge", host.ifname));
        must(&[
            "ip",
            "netns",
            "exec",
            &self.lan,
            "bridge",
            "link",
            "set",
            "dev",
            &port,
            "isolated",
            if isolated { "on" } else { "off" },
        ]);
    }

    /// A veth pair joining two hosts' namespaces directly, off the bridge,
    /// with `a_addr` and `b_addr` (/[`LINK_PREFIX_LEN`]) on its ends. Both
    /// ends live in the lab's namespaces, so deleting them removes it.
    pub fn add_direct_link(
        &self,
        a: &Host,
        a_addr: Ipv4Addr,
        b: &Host,
        b_addr: Ipv4Addr,
    ) -> DirectLink {
        let k = IF_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Names only need to be unique inside the two (private) namespaces.
        let (a_if, b_if) = (format!("dl{k:x}a"), format!("dl{k:x}b"));
        must(&[
            "ip", "-n", &a.ns, "link", "add", &a_if, "type", "veth", "peer", "name", &b_if,
            "netns", &b.ns,
        ]);
        let ends = [
            LinkEnd {
                ns: a.ns.clone(),
                ifname: a_if,
                addr: a_addr,
            },
            LinkEnd {
                ns: b.ns.clone(),
                ifname: b_if,
                addr: b_addr,
            },
        ];
        for e in &ends {
            must(&[
                "ip",
                "-n",
                &e.ns,
                "addr",
                "add",
                &format!("{}/{LINK_PREFIX_LEN}", e.addr),
                "dev",
                &e.ifname,
            ]);
        }
        let link = DirectLink { ends };
        link.heal();
        link
    }

    /// Writes a failover key file into the lab directory: 64 hex digits
    /// (32 bytes from /dev/urandom) and a newline, mode 0600.
    pub fn write_key_file(&self, name: &str) -> PathBuf {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("read 32 bytes from /dev/urandom");
        let mut text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        text.push('\n');
        let path = self.dir().join(name);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("create key file {}: {e}", path.display()));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write key file {}: {e}", path.display()));
        // In case the file existed with a wider mode.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

/// One end of a [`DirectLink`].
#[derive(Clone, Debug)]
pub struct LinkEnd {
    pub ns: String,
    pub ifname: String,
    pub addr: Ipv4Addr,
}

/// A veth pair between two hosts, off the lab's bridge (see
/// [`Lab::add_direct_link`]). Cutting it leaves both hosts on the LAN.
#[derive(Clone, Debug)]
pub struct DirectLink {
    pub ends: [LinkEnd; 2],
}

impl DirectLink {
    /// `ip link set down` on both ends: nothing crosses, and neither side
    /// hears of it other than by silence (no FIN, no RST).
    pub fn cut(&self) {
        self.set(false);
    }

    /// `ip link set up` on both ends.
    pub fn heal(&self) {
        self.set(true);
    }

    fn set(&self, up: bool) {
        for e in &self.ends {
            must(&[
                "ip",
                "-n",
                &e.ns,
                "link",
                "set",
                "dev",
                &e.ifname,
                if up { "up" } else { "down" },
            ]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if thread::panicking() {
            dump_logs(&self.test, self.dir.path());
        }
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in namespaces.iter().rev() {
            kill_ns_processes(ns);
        }
        for ns in namespaces.iter().rev() {
            if let Err(e) = run(&["ip", "netns", "del", ns], CMD_TIMEOUT) {
                eprintln!("warning: {e}");
            }
            let _ = fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        for ifname in self
            .ifnames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            remove_dhcpcd_files(ifname);
        }
    }
}

fn skip(test: &str, reason: &str) {
    // Straight to fd 2: libtest captures eprintln! of passing tests, and a
    // skipped test passes, so the message would never be seen.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {test}: {reason} ***\n");
    if std::env::var_os("CI").is_some() {
        panic!("SKIPPED is not allowed when CI is set: {test}: {reason}");
    }
}

/// Everything running in one of our namespaces was started by this test (the
/// namespace is private and uniquely named), so it may be killed by PID. This
/// catches what a RAII guard missed, e.g. dhcpcd's privilege-separation
/// helpers, which outlive their parent briefly.
fn kill_ns_processes(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let pids: Vec<u32> = match run(&["ip", "netns", "pids", ns], CMD_TIMEOUT) {
            Ok(out) => out
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            Err(_) => return,
        };
        if pids.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("warning: processes {pids:?} in {ns} survived SIGKILL");
            return;
        }
        for pid in pids {
            signal(pid, libc::SIGKILL);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn remove_dhcpcd_files(ifname: &str) {
    for suffix in [".lease", ".lease6"] {
        let _ = fs::remove_file(format!("/var/lib/dhcpcd/{ifname}{suffix}"));
    }
}

/// Removes what an earlier test process left behind when it was SIGKILLed
/// (no Drop ran): namespaces, /etc/netns dirs, temp dirs and dhcpcd lease files named
/// after a `tmqt-<pid>` / `tq<hexpid>x` whose process no longer exists. Live
/// processes' labs (parallel runs in other worktrees) are left alone.
fn cleanup_stale() {
    let dead = |pid: Option<u32>| pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
    let ns_pid = |name: &str| {
        name.strip_prefix("tmqt-")?
            .split('-')
            .next()?
            .parse::<u32>()
            .ok()
    };
    let listed = run(&["ip", "netns", "list"], CMD_TIMEOUT).unwrap_or_default();
    for name in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        if dead(ns_pid(name)) {
            eprintln!("removing stale namespace {name}");
            kill_ns_processes(name);
            let _ = run(&["ip", "netns", "del", name], CMD_TIMEOUT);
        }
    }
    if let Ok(rd) = fs::read_dir("/etc/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(ns_pid(&name)) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    // Lab temp dirs are named `tmqt-<pid>-<n>-XXXXXX`.
    if let Ok(rd) = fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && dead(ns_pid(&name)) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    if let Ok(rd) = fs::read_dir("/var/lib/dhcpcd") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("tq")
                .and_then(|r| r.split('x').next())
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            if name.contains(".lease") && dead(pid) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn dump_logs(test: &str, dir: &Path) {
    let mut files = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log")
                || p.file_name().is_some_and(|n| n == "leases")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut err = std::io::stderr().lock();
    for f in files {
        let text = fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(150)..];
        let _ = writeln!(
            err,
            "----- {test}: {} (last {} lines) -----",
            f.display(),
            tail.len()
        );
        for l in tail {
            let _ = writeln!(err, "{l}");
        }
    }
}

// ---------------------------------------------------------------------------
// The server under test

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Real dnsmasq: proves the tests check real DHCP behaviour, not ours.
    Dnsmasq,
    Twinmasq,
}

impl ServerKind {
    /// `TWINMASQ_TEST_SERVER=dnsmasq|twinmasq`, else [`DEFAULT_SERVER`].
    pub fn from_env() -> ServerKind {
        match std::env::var("TWINMASQ_TEST_SERVER").as_deref() {
            Ok("dnsmasq") => ServerKind::Dnsmasq,
            Ok("twinmasq") => ServerKind::Twinmasq,
            Ok("") | Err(_) => DEFAULT_SERVER,
            Ok(other) => panic!("TWINMASQ_TEST_SERVER={other}: expected dnsmasq or twinmasq"),
        }
    }
}

/// A dnsmasq configuration file, the same text for both servers.
#[derive(Clone, Debug)]
pub struct ServerConf {
    pub lines: Vec<String>,
}

impl ServerConf {
    /// Lines every lab server needs, no DHCP range.
    pub fn base() -> ServerConf {
        let lines = [
            // DNS off: these tests are about DHCP, and nothing may listen on
            // port 53 by accident. no-resolv/no-hosts: read nothing of the host.
            "port=0",
            "no-resolv",
            "no-hosts",
            // dnsmasq pings an address before offering it and, meanwhile,
            // clients that retry every second lose OFFERs; real clients back
            // off longer. The tests are about leases, not about ping.
            "no-ping",
            "log-dhcp",
        ];
        ServerConf {
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// [`base`](Self::base) plus the lab's standard range and options.
    /// Not `dhcp-authoritative`: without it a server ACKs an INIT-REBOOT
    /// only for a lease it knows, which is what the restart tests rely on.
    pub fn standard() -> ServerConf {
        ServerConf::standard_range(RANGE_START, RANGE_END)
    }

    pub fn standard_range(start: Ipv4Addr, end: Ipv4Addr) -> ServerConf {
        let dns = DNS
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        ServerConf::base()
            .line(format!("dhcp-range={start},{end},{NETMASK},{LEASE_SECS}"))
            .line(format!("dhcp-option=option:router,{ROUTER}"))
            .line(format!("dhcp-option=option:dns-server,{dns}"))
            .line(format!("domain={DOMAIN}"))
    }

    pub fn line(mut self, line: impl Into<String>) -> ServerConf {
        self.lines.push(line.into());
        self
    }
}

/// One line of dnsmasq's lease file:
/// `<expiry> <mac> <ip> <hostname|*> <client-id|*>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseLine {
    pub expiry: u64,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
}

pub fn parse_lease_file(text: &str) -> Vec<LeaseLine> {
    let star = |s: &str| (s != "*").then(|| s.to_string());
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Skips dnsmasq's DHCPv6 "duid" line and anything malformed.
            if f.len() != 5 {
                return None;
            }
            Some(LeaseLine {
                expiry: f[0].parse().ok()?,
                mac: f[1].to_lowercase(),
                ip: f[2].parse().ok()?,
                hostname: star(f[3]),
                client_id: star(f[4]),
            })
        })
        .collect()
}

/// The server process plus its files; survives restarts (same files).
pub struct Server<'a> {
    lab: &'a Lab,
    pub kind: ServerKind,
    /// The host it runs on (the lab's server host unless started with
    /// [`Lab::start_server_on`]).
    pub host: Host,
    pub conf_path: PathBuf,
    pub leasefile: PathBuf,
    pub pidfile: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl<'a> Server<'a> {
    fn new(lab: &'a Lab, kind: ServerKind, conf: &ServerConf) -> Server<'a> {
        Server::new_on(lab, kind, conf, &lab.server, "server")
    }

    fn new_on(
        lab: &'a Lab,
        kind: ServerKind,
        conf: &ServerConf,
        host: &Host,
        name: &str,
    ) -> Server<'a> {
        let dir = lab.dir().join(name);
        fs::create_dir_all(&dir).unwrap();
        let conf_path = dir.join("dnsmasq.conf");
        let mut text = format!(
            "# {} (generated by tests/netns)\ninterface={}\n",
            lab.test, host.ifname
        );
        for l in &conf.lines {
            text.push_str(l);
            text.push('\n');
        }
        fs::write(&conf_path, text).unwrap();
        Server {
            lab,
            kind,
            host: host.clone(),
            conf_path,
            leasefile: dir.join("leases"),
            pidfile: dir.join("pid"),
            db: dir.join("db"),
            log: dir.join("server.log"),
            proc: None,
            starts: 0,
        }
    }

    fn args(&self) -> Vec<String> {
        let p = |flag: &str, path: &Path| format!("{flag}={}", path.display());
        let mut args = match self.kind {
            ServerKind::Dnsmasq => vec!["dnsmasq".to_string()],
            ServerKind::Twinmasq => vec![env!("CARGO_BIN_EXE_twinmasq").to_string()],
        };
        args.extend([
            "-k".to_string(),
            "-C".to_string(),
            self.conf_path.display().to_string(),
        ]);
        if self.kind == ServerKind::Twinmasq {
            // twinmasq-only: dnsmasq would reject it.
            args.push(p("--lease-db", &self.db));
        }
        args.push(p("--dhcp-leasefile", &self.leasefile));
        args.push(p("--pid-file", &self.pidfile));
        if self.kind == ServerKind::Dnsmasq {
            // dnsmasq logs to syslog by default; twinmasq logs to stderr.
            args.push("--log-facility=-".to_string());
        }
        args
    }

    /// Starts the server and waits until it has written its pid file and
    /// lease file. Panics, with its log, if it exits or times out instead.
    pub fn start(&mut self) {
        assert!(self.proc.is_none(), "server already running");
        // A stale pid file from the previous run must not count as "ready".
        let _ = fs::remove_file(&self.pidfile);
        self.starts += 1;
        let args = self.args();
        {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let _ = writeln!(f, "===== start #{}: {}", self.starts, args.join(" "));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(&format!("{:?}", self.kind), &self.host.ns, &argv, &self.log);
        let ready = wait_for(SERVER_TIMEOUT, "server pid file and lease file", || {
            if let Some(st) = proc.try_status() {
                return Some(Err(format!("server exited during start: {st}")));
            }
            let pid = fs::read_to_string(&self.pidfile).unwrap_or_default();
            (!pid.trim().is_empty() && self.leasefile.exists()).then_some(Ok(()))
        });
        self.proc = Some(proc);
        if let Err(e) = ready.and_then(|r| r) {
            panic!("{:?} did not start: {e}\n{}", self.kind, self.log_text());
        }
    }

    /// SIGTERM and a bounded wait; panics if the server needed SIGKILL.
    pub fn stop(&mut self) {
        let mut proc = self.proc.take().expect("server not running");
        let (status, killed) = proc.terminate(Duration::from_secs(5));
        assert!(
            !killed,
            "server ignored SIGTERM for 5 s (status {status:?})\n{}",
            self.log_text()
        );
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// SIGKILL, as a power cut would end it: no flush, no cleanup. The files
    /// stay for the next `start`.
    pub fn kill9(&mut self) {
        let mut proc = self.proc.take().expect("server not running");
        proc.signal(libc::SIGKILL);
        assert!(
            proc.wait_timeout(Duration::from_secs(5)).is_some(),
            "server survived SIGKILL"
        );
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lease file as it is now.
    pub fn leases(&self) -> Vec<LeaseLine> {
        parse_lease_file(&fs::read_to_string(&self.leasefile).unwrap_or_default())
    }

    /// Waits until the lease file satisfies `pred` (twinmasq writes it within
    /// ~1 s of a change); panics with the file and the log on timeout.
    pub fn wait_leases(&self, what: &str, pred: impl Fn(&[LeaseLine]) -> bool) -> Vec<LeaseLine> {
        let r = wait_for(SERVER_TIMEOUT, what, || {
            let l = self.leases();
            pred(&l).then_some(l)
        });
        r.unwrap_or_else(|e| {
            panic!(
                "lease file: {e}\n--- lease file:\n{}\n--- server log:\n{}",
                fs::read_to_string(&self.leasefile).unwrap_or_default(),
                self.log_text()
            )
        })
    }

    /// Waits until the lease file has a lease of `ip` for `mac`.
    pub fn wait_lease(&self, mac: &str, ip: Ipv4Addr) -> LeaseLine {
        let mac = mac.to_lowercase();
        let all = self.wait_leases(&format!("a lease of {ip} to {mac}"), |l| {
            l.iter().any(|x| x.mac == mac && x.ip == ip)
        });
        all.into_iter()
            .find(|x| x.mac == mac && x.ip == ip)
            .unwrap()
    }

    /// Waits until the lease file has no lease of `ip`.
    pub fn wait_no_lease(&self, ip: Ipv4Addr) {
        self.wait_leases(&format!("no lease of {ip}"), |l| {
            l.iter().all(|x| x.ip != ip)
        });
    }

    /// The lease file as a set of (address, MAC).
    pub fn lease_pairs(&self) -> std::collections::BTreeSet<(Ipv4Addr, String)> {
        self.leases().into_iter().map(|l| (l.ip, l.mac)).collect()
    }

    /// A position in the log: later searches from it see only what was
    /// written after.
    pub fn log_mark(&self) -> usize {
        fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }

    /// The log's lines written since `mark`, ANSI colours stripped.
    pub fn log_lines_since(&self, mark: usize) -> Vec<String> {
        let raw = fs::read(&self.log).unwrap_or_default();
        let tail = raw.get(mark..).unwrap_or_default();
        String::from_utf8_lossy(tail)
            .lines()
            .map(strip_ansi)
            .collect()
    }

    /// The lines since `mark` that contain `needle`.
    pub fn log_grep(&self, mark: usize, needle: &str) -> Vec<String> {
        self.log_lines_since(mark)
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }

    /// Waits (polling every 10 ms) for a line after `mark` that contains
    /// `needle`; returns it and when it was first seen. The error quotes
    /// the log's tail.
    pub fn wait_log(
        &self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<(String, Instant), String> {
        self.wait_log_any(mark, &[needle], timeout)
    }

    /// [`wait_log`](Self::wait_log) for a line holding any of `needles`.
    pub fn wait_log_any(
        &self,
        mark: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(String, Instant), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let hit = self
                .log_lines_since(mark)
                .into_iter()
                .find(|l| needles.iter().any(|n| l.contains(n)));
            if let Some(l) = hit {
                return Ok((l, Instant::now()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: no log line containing any of {needles:?} within {timeout:?}\n{}",
                    self.log.display(),
                    self.log_tail(40)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last `n` lines of the log, for assertion messages.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines_since(0);
        let tail = &lines[lines.len().saturating_sub(n)..];
        format!(
            "--- {} (last {} lines):\n{}",
            self.log.display(),
            tail.len(),
            tail.join("\n")
        )
    }
}

/// Removes ANSI escape sequences (the server's log levels are coloured).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte.
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The time at the start of a twinmasq log line (`2025-01-31T12:34:56.789012Z`,
/// UTC, as tracing writes it), as a `SystemTime`.
pub fn log_line_time(line: &str) -> Option<std::time::SystemTime> {
    let line = strip_ansi(line);
    let ts = line.split_whitespace().next()?;
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, dd) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let digits: String = frac.chars().take(9).collect();
    let nanos = format!("{digits:0<9}").parse::<u64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(
        std::time::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(secs).ok()?)
            + Duration::from_nanos(nanos),
    )
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
    }
}

// ---------------------------------------------------------------------------
// DHCP clients

/// What a client's hook script saw for one event.
#[derive(Clone, Debug)]
pub struct Event {
    /// dhclient/dhcpcd: `$reason` (BOUND, REBOOT, RENEW...); udhcpc: `$1`
    /// (bound, renew, deconfig...).
    pub reason: String,
    pub env: BTreeMap<String, String>,
}

/// A lease as the client understood it, normalised over the three clients.
#[derive(Clone, Debug)]
pub struct Lease {
    pub client: &'static str,
    pub reason: String,
    pub address: Ipv4Addr,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: Option<u32>,
    pub hostname: Option<String>,
    pub server_id: Option<Ipv4Addr>,
    /// Everything the script's environment held, for options not listed above.
    pub env: BTreeMap<String, String>,
}

impl Lease {
    fn from_event(client: &'static str, ev: &Event) -> Result<Lease, String> {
        // udhcpc names variables after options; dhclient and dhcpcd share the
        // dhclient-script convention.
        let key = |udhcpc: &'static str, other: &'static str| {
            if client == "udhcpc" {
                udhcpc
            } else {
                other
            }
        };
        let get = |k: &str| ev.env.get(k).filter(|v| !v.is_empty()).cloned();
        let addrs = |k: &str| -> Vec<Ipv4Addr> {
            get(k)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect()
        };
        let address = get(key("ip", "new_ip_address"))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                format!(
                    "{client}: event {} carries no address: {:?}",
                    ev.reason, ev.env
                )
            })?;
        Ok(Lease {
            client,
            reason: ev.reason.clone(),
            address,
            subnet_mask: get(key("subnet", "new_subnet_mask")).and_then(|a| a.parse().ok()),
            routers: addrs(key("router", "new_routers")),
            dns: addrs(key("dns", "new_domain_name_servers")),
            domain: get(key("domain", "new_domain_name")),
            lease_time: get(key("lease", "new_dhcp_lease_time")).and_then(|a| a.parse().ok()),
            hostname: get(key("hostname", "new_host_name")),
            server_id: get(key("serverid", "new_dhcp_server_identifier"))
                .and_then(|a| a.parse().ok()),
            env: ev.env.clone(),
        })
    }
}

/// State shared by the client wrappers: a private directory, the hook script
/// and the events it recorded.
struct ClientFiles {
    name: &'static str,
    host: Host,
    dir: PathBuf,
    script: PathBuf,
    events: PathBuf,
    log: PathBuf,
    /// Events already consumed by a wait.
    seen: usize,
}

impl ClientFiles {
    fn new(lab: &Lab, host: &Host, name: &'static str) -> ClientFiles {
        let dir = lab.dir().join(format!("{name}-{}", host.ifname));
        fs::create_dir_all(&dir).unwrap();
        let events = dir.join("events");
        let script = dir.join("hook.sh");
        // Records the arguments and the environment, NUL-separated so values
        // may hold anything, and nothing else: it configures no address, no
        // route, no resolv.conf, neither in the namespace nor on the host.
        // TMQT_TIME is when the script ran (epoch seconds), so a test can
        // tell when the client took or dropped an address; TMQT_END marks a
        // complete record (we read while it appends).
        let body = format!(
            "#!/bin/sh\n{{ printf 'TMQT_ARG1=%s\\0' \"$1\"; env -0; printf 'TMQT_TIME=%s\\0' \"$(date +%s.%N)\"; printf 'TMQT_END=1\\0'; }} >> '{}'\nexit 0\n",
            events.display()
        );
        fs::write(&script, body).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.join(format!("{name}.log"));
        ClientFiles {
            name,
            host: host.clone(),
            dir,
            script,
            events,
            log,
            seen: 0,
        }
    }

    fn read_events(&self) -> Vec<Event> {
        let raw = fs::read(&self.events).unwrap_or_default();
        let mut out = vec![];
        let mut env = BTreeMap::new();
        let mut arg1 = String::new();
        for item in raw.split(|b| *b == 0) {
            let item = String::from_utf8_lossy(item);
            let Some((k, v)) = item.split_once('=') else {
                continue;
            };
            match k {
                "TMQT_ARG1" => {
                    arg1 = v.to_string();
                    env.clear();
                }
                "TMQT_END" => {
                    let reason = if self.name == "udhcpc" {
                        arg1.clone()
                    } else {
                        env.get("reason").cloned().unwrap_or_default()
                    };
                    out.push(Event {
                        reason,
                        env: std::mem::take(&mut env),
                    });
                }
                _ => {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
        out
    }

    /// Waits for the next event (after those already seen) whose reason is in
    /// `ok`; an event in `fail`, the process exiting, or the timeout is an
    /// error that quotes the client's log.
    fn wait_event(
        &mut self,
        ok: &[&str],
        fail: &[&str],
        mut proc: Option<&mut Proc>,
        timeout: Duration,
    ) -> Result<Event, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let evs = self.read_events();
            for (i, ev) in evs.iter().enumerate().skip(self.seen) {
                self.seen = i + 1;
                if ok.contains(&ev.reason.as_str()) {
                    return Ok(ev.clone());
                }
                if fail.contains(&ev.reason.as_str()) {
                    return Err(self.error(&format!("event {}", ev.reason)));
                }
            }
            if let Some(p) = proc.as_deref_mut() {
                if let Some(st) = p.try_status() {
                    // The script may have run just before the exit: one more look.
                    if self.read_events().len() == self.seen {
                        return Err(self.error(&format!("exited ({st}) before {ok:?}")));
                    }
                    continue;
                }
            }
            if Instant::now() >= deadline {
                return Err(self.error(&format!("no {ok:?} within {timeout:?}")));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn error(&self, what: &str) -> String {
        let reasons: Vec<String> = self.read_events().into_iter().map(|e| e.reason).collect();
        format!(
            "{} on {}: {what}; events so far {reasons:?}\n--- {} output:\n{}",
            self.name,
            self.host.ifname,
            self.name,
            fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

/// ISC dhclient. Runs in the foreground (`-d`) so the PID we hold stays the
/// client's; it keeps its own lease file, so a second [`obtain`](Self::obtain)
/// after [`stop`](Self::stop) is an INIT-REBOOT (reason REBOOT).
pub struct Dhclient<'a> {
    lab: &'a Lab,
    f: ClientFiles,
    proc: Option<Proc>,
    conf: PathBuf,
    pub leasefile: PathBuf,
    pidfile: PathBuf,
    /// Sent as option 12 when set.
    pub hostname: Option<String>,
}

impl<'a> Dhclient<'a> {
    pub fn new(lab: &'a Lab, host: &Host) -> Dhclient<'a> {
        let f = ClientFiles::new(lab, host, "dhclient");
        Dhclient {
            lab,
            conf: f.dir.join("dhclient.conf"),
            leasefile: f.dir.join("dhclient.leases"),
            pidfile: f.dir.join("dhclient.pid"),
            f,
            proc: None,
            hostname: None,
        }
    }

    pub fn with_hostname(mut self, name: &str) -> Self {
        self.hostname = Some(name.to_string());
        self
    }

    fn base_args(&self) -> Vec<String> {
        let d = |p: &Path| p.display().to_string();
        vec![
            "-cf".into(),
            d(&self.conf),
            "-lf".into(),
            d(&self.leasefile),
            "-pf".into(),
            d(&self.pidfile),
            "-sf".into(),
            d(&self.f.script),
        ]
    }

    /// Runs `dhclient -d -1` until BOUND (or REBOOT when it had a lease) and
    /// configures the address in the namespace, as dhclient-script would.
    pub fn obtain(&mut self) -> Result<Lease, String> {
        assert!(self.proc.is_none(), "dhclient already running");
        // Our own config, not /etc/dhcp/dhclient.conf: retries every 1-2 s
        // and gives up (with -1) after 15 s.
        let mut conf = String::from(
            "timeout 15;\nreboot 5;\ninitial-interval 1;\nbackoff-cutoff 2;\n\
             request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n",
        );
        if let Some(h) = &self.hostname {
            conf.push_str(&format!("send host-name \"{h}\";\n"));
        }
        fs::write(&self.conf, conf).unwrap();
        let mut args: Vec<String> = vec!["dhclient".into(), "-d".into(), "-1".into(), "-v".into()];
        args.extend(self.base_args());
        args.push(self.f.host.ifname.clone());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn("dhclient", &self.f.host.ns, &argv, &self.f.log);
        let ev = self.f.wait_event(
            &["BOUND", "REBOOT", "RENEW", "REBIND"],
            &["FAIL", "EXPIRE", "TIMEOUT"],
            Some(&mut proc),
            CLIENT_TIMEOUT,
        );
        self.proc = Some(proc);
        let lease = Lease::from_event("dhclient", &ev?)?;
        self.f
            .host
            .set_addr(lease.address, lease.subnet_mask.unwrap_or(NETMASK));
        Ok(lease)
    }

    /// Stops the client without releasing (SIGTERM; dhclient releases only
    /// when asked) and drops the address, as a host going down would. The
    /// lease file stays, so the next obtain() is an INIT-REBOOT.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
        self.f.host.flush_addrs();
    }

    /// `dhclient -r`: it ends the running dhclient (ours, by the PID in our pid
    /// file) and unicasts a DHCPRELEASE for the lease in our lease file.
    pub fn release(&mut self) -> Result<(), String> {
        let mut args: Vec<String> = vec!["dhclient".into(), "-r".into(), "-v".into()];
        args.extend(self.base_args());
        args.push(self.f.host.ifname.clone());
        let mut full = vec!["ip", "netns", "exec", &self.f.host.ns];
        full.extend(args.iter().map(String::as_str));
        let out = run(&full, CMD_TIMEOUT);
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.f.log)
            .and_then(|mut l| writeln!(l, "===== dhclient -r: {out:?}"))
            .ok();
        out?;
        self.f.wait_event(&["RELEASE"], &[], None, CMD_TIMEOUT)?;
        if let Some(mut p) = self.proc.take() {
            if p.wait_timeout(Duration::from_secs(3)).is_none() {
                return Err(self.f.error("dhclient -r did not end the running dhclient"));
            }
        }
        self.f.host.flush_addrs();
        Ok(())
    }

    pub fn events(&self) -> Vec<Event> {
        self.f.read_events()
    }

    pub fn lab(&self) -> &Lab {
        self.lab
    }
}

/// BusyBox udhcpc, kept running in the foreground after BOUND so it can renew
/// (SIGUSR1) and release (SIGUSR2).
pub struct Udhcpc<'a> {
    lab: &'a Lab,
    f: ClientFiles,
    proc: Option<Proc>,
    /// Sent as option 12 when set.
    pub hostname: Option<String>,
    /// DISCOVERs before giving up (`-t`), and seconds between them (`-T`).
    pub tries: u32,
    pub interval: u32,
    /// Address to ask for (`-r`).
    pub request: Option<Ipv4Addr>,
    /// More udhcpc arguments (`-V vendor`, `-x code:hex`).
    pub extra: Vec<String>,
}

impl<'a> Udhcpc<'a> {
    pub fn new(lab: &'a Lab, host: &Host) -> Udhcpc<'a> {
        Udhcpc {
            lab,
            f: ClientFiles::new(lab, host, "udhcpc"),
            proc: None,
            hostname: None,
            tries: 5,
            interval: 1,
            request: None,
            extra: Vec::new(),
        }
    }

    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn with_hostname(mut self, name: &str) -> Self {
        self.hostname = Some(name.to_string());
        self
    }

    /// Gives up after `tries` DISCOVERs `interval` seconds apart.
    pub fn with_tries(mut self, tries: u32, interval: u32) -> Self {
        self.tries = tries;
        self.interval = interval;
        self
    }

    /// `udhcpc -f -n`: foreground, exit if no lease after the tries. Not `-q`
    /// (it would exit at BOUND and could not renew) and not `-R` (a plain
    /// stop must not release; release() does it explicitly).
    pub fn obtain(&mut self) -> Result<Lease, String> {
        assert!(self.proc.is_none(), "udhcpc already running");
        let mut args: Vec<String> = vec![
            "udhcpc".into(),
            "-f".into(),
            "-n".into(),
            "-t".into(),
            self.tries.to_string(),
            "-T".into(),
            self.interval.to_string(),
            "-i".into(),
            self.f.host.ifname.clone(),
            "-s".into(),
            self.f.script.display().to_string(),
        ];
        if let Some(h) = &self.hostname {
            args.extend(["-x".into(), format!("hostname:{h}")]);
        }
        if let Some(r) = self.request {
            args.extend(["-r".into(), r.to_string()]);
        }
        args.extend(self.extra.iter().cloned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn("udhcpc", &self.f.host.ns, &argv, &self.f.log);
        let timeout =
            Duration::from_secs(u64::from(self.tries * self.interval) + 5).min(CLIENT_TIMEOUT);
        let ev = self
            .f
            .wait_event(&["bound"], &["leasefail"], Some(&mut proc), timeout);
        self.proc = Some(proc);
        let lease = Lease::from_event("udhcpc", &ev?)?;
        self.f
            .host
            .set_addr(lease.address, lease.subnet_mask.unwrap_or(NETMASK));
        Ok(lease)
    }

    /// SIGUSR1: a RENEWING-state REQUEST, unicast from the bound address to
    /// the server. Ok with the renewed lease; a NAK is an error.
    pub fn renew(&mut self) -> Result<Lease, String> {
        let p = self.proc.as_mut().expect("udhcpc not running");
        p.signal(libc::SIGUSR1);
        let ev = self.f.wait_event(
            &["renew", "bound"],
            &["nak", "leasefail"],
            Some(p),
            CLIENT_TIMEOUT,
        )?;
        Lease::from_event("udhcpc", &ev)
    }

    /// SIGUSR2: udhcpc unicasts a DHCPRELEASE and deconfigures; then it is
    /// stopped.
    pub fn release(&mut self) -> Result<(), String> {
        let p = self.proc.as_mut().expect("udhcpc not running");
        p.signal(libc::SIGUSR2);
        self.f
            .wait_event(&["deconfig"], &[], Some(p), CMD_TIMEOUT)?;
        self.stop();
        Ok(())
    }

    /// SIGTERM without release; drops the address.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
        self.f.host.flush_addrs();
    }

    pub fn events(&self) -> Vec<Event> {
        self.f.read_events()
    }

    pub fn lab(&self) -> &Lab {
        self.lab
    }
}

/// dhcpcd, one shot: it runs until BOUND (configuring the address in the
/// namespace itself) and exits. It ARP-probes the offered address, so it
/// takes ~5 s. Its lease file, /var/lib/dhcpcd/<if>.lease on the host
/// filesystem, makes the next obtain() an INIT-REBOOT; it is removed on drop.
pub struct Dhcpcd<'a> {
    lab: &'a Lab,
    f: ClientFiles,
    conf: PathBuf,
    /// Sent as option 12 when set.
    pub hostname: Option<String>,
}

impl<'a> Dhcpcd<'a> {
    pub fn new(lab: &'a Lab, host: &Host) -> Dhcpcd<'a> {
        let f = ClientFiles::new(lab, host, "dhcpcd");
        Dhcpcd {
            lab,
            conf: f.dir.join("dhcpcd.conf"),
            f,
            hostname: None,
        }
    }

    pub fn with_hostname(mut self, name: &str) -> Self {
        self.hostname = Some(name.to_string());
        self
    }

    pub fn obtain(&mut self) -> Result<Lease, String> {
        // Our own config, not /etc/dhcpcd.conf: no hooks (the -c script
        // replaces dhcpcd-run-hooks anyway; nohook is belt and braces), no
        // IPv4LL or IPv6, so the only traffic is DHCPv4 to the lab's server.
        let mut conf = String::from(
            "nohook resolv.conf\nnohook hostname\nnohook ntp.conf\nnohook timesyncd.conf\n\
             nohook wpa_supplicant\nnohook lookup-hostname\nnoipv4ll\nnoipv6rs\nipv4only\n\
             option domain_name_servers, domain_name, host_name\n",
        );
        if let Some(h) = &self.hostname {
            conf.push_str(&format!("hostname {h}\n"));
        }
        fs::write(&self.conf, conf).unwrap();
        let args = [
            "dhcpcd",
            "-4",
            "--oneshot",
            "--nobackground",
            "-t",
            "15",
            "-f",
            &self.conf.display().to_string(),
            "-c",
            &self.f.script.display().to_string(),
            &self.f.host.ifname,
        ]
        .map(String::from);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn("dhcpcd", &self.f.host.ns, &argv, &self.f.log);
        let ev = self.f.wait_event(
            &["BOUND", "REBOOT", "RENEW", "REBIND"],
            &["NAK", "EXPIRE", "FAIL", "TIMEOUT"],
            Some(&mut proc),
            CLIENT_TIMEOUT,
        )?;
        // --oneshot: it exits right after BOUND; reap it (Drop would anyway).
        proc.wait_timeout(Duration::from_secs(5));
        Lease::from_event("dhcpcd", &ev)
    }

    pub fn events(&self) -> Vec<Event> {
        self.f.read_events()
    }

    pub fn lab(&self) -> &Lab {
        self.lab
    }
}

impl Drop for Dhcpcd<'_> {
    fn drop(&mut self) {
        remove_dhcpcd_files(&self.f.host.ifname);
    }
}

// ---------------------------------------------------------------------------
// Failover pairs

/// Which end of a failover pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairRole {
    Primary,
    Secondary,
}

/// The failover timings written into both nodes' configs. Tests use short
/// ones so that link loss shows within a second or two.
#[derive(Clone, Copy, Debug)]
pub struct FailoverTimings {
    pub heartbeat_ms: u64,
    pub timeout_secs: u64,
    pub mclt_secs: u64,
}

impl FailoverTimings {
    /// failover-heartbeat=200ms, failover-timeout=1, failover-mclt=60.
    pub const SHORT: FailoverTimings = FailoverTimings {
        heartbeat_ms: 200,
        timeout_secs: 1,
        mclt_secs: 60,
    };

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// A lab for a failover pair: the primary on the lab's server host
/// ([`SERVER_IP`]), the secondary on a second server host
/// ([`SECONDARY_IP`]), both on the LAN bridge with the clients, and a
/// separate direct veth between the two server namespaces for the failover
/// link ([`LINK_PRIMARY_IP`] - [`LINK_SECONDARY_IP`]), so a test can cut
/// the link alone while both servers still reach every client. A shared
/// key file (0600) sits in the lab directory.
///
/// Servers are `Server`s with their own directories (`primary/`,
/// `secondary/`: config, sled db, lease file, `server.log`); declare them
/// after the `PairLab` so they are dropped (killed by PID) first. The
/// lab's Drop then kills anything left in its namespaces and deletes them.
pub struct PairLab {
    pub lab: Lab,
    pub primary: Host,
    pub secondary: Host,
    pub link: DirectLink,
    pub key: PathBuf,
    pub timings: FailoverTimings,
}

impl PairLab {
    /// None (after SKIPPED) when namespaces are impossible, as [`Lab::new`].
    pub fn new(test: &str) -> Option<PairLab> {
        let lab = Lab::new(test)?;
        let primary = lab.server.clone();
        let secondary = lab.add_server_host(SECONDARY_IP);
        let link = lab.add_direct_link(&primary, LINK_PRIMARY_IP, &secondary, LINK_SECONDARY_IP);
        let key = lab.write_key_file("failover.key");
        Some(PairLab {
            lab,
            primary,
            secondary,
            link,
            key,
            timings: FailoverTimings::SHORT,
        })
    }

    pub fn host(&self, role: PairRole) -> &Host {
        match role {
            PairRole::Primary => &self.primary,
            PairRole::Secondary => &self.secondary,
        }
    }

    /// The node's LAN address: its DHCP server identifier.
    pub fn lan_ip(role: PairRole) -> Ipv4Addr {
        match role {
            PairRole::Primary => SERVER_IP,
            PairRole::Secondary => SECONDARY_IP,
        }
    }

    /// `base` plus the failover lines for `role`, with key file `key`.
    pub fn node_conf(&self, role: PairRole, base: &ServerConf, key: &Path) -> ServerConf {
        let t = self.timings;
        let role_line = match role {
            PairRole::Primary => format!("failover-listen={LINK_PRIMARY_IP},{FAILOVER_PORT}"),
            PairRole::Secondary => format!("failover-master={LINK_PRIMARY_IP},{FAILOVER_PORT}"),
        };
        base.clone()
            .line(role_line)
            .line(format!("failover-key={}", key.display()))
            .line(format!("failover-heartbeat={}ms", t.heartbeat_ms))
            .line(format!("failover-timeout={}", t.timeout_secs))
            .line(format!("failover-mclt={}", t.mclt_secs))
    }

    /// A twinmasq node (not started) on its host, with a full config
    /// (see [`node_conf`](Self::node_conf)).
    pub fn node(&self, role: PairRole, conf: &ServerConf) -> Server<'_> {
        let name = match role {
            PairRole::Primary => "primary",
            PairRole::Secondary => "secondary",
        };
        self.lab
            .server_on(self.host(role), name, ServerKind::Twinmasq, conf)
    }

    /// Starts a node on `base` with the pair's key.
    pub fn start_node(&self, role: PairRole, base: &ServerConf) -> Server<'_> {
        let mut s = self.node(role, &self.node_conf(role, base, &self.key));
        s.start();
        s
    }
}

// ---------------------------------------------------------------------------
// The load generator (examples/dhcp_load.rs)

/// The load generator from `examples/`, built beside the server binary
/// (`cargo test --all-targets` builds it; a lone run builds it here).
pub fn load_generator() -> PathBuf {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_twinmasq"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = bin_dir.join("examples").join("dhcp_load");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", "dhcp_load"]);
        if bin_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build --example dhcp_load");
        assert!(st.success(), "building the load generator failed");
    }
    path
}

/// `<mac> <ip>` lines the generator wrote, one per ACK received.
pub fn read_acks(path: &Path) -> BTreeMap<String, Ipv4Addr> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets made there
/// stay in that namespace after the thread ends (setns changes only the
/// calling thread).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns(2) on a valid fd; it changes only this thread's
        // network namespace, and the thread ends when `f` returns.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("setns thread panicked")
}

/// A UDP socket bound to `addr` inside namespace `ns`.
pub fn udp_in_ns(ns: &str, addr: std::net::SocketAddr) -> std::net::UdpSocket {
    in_ns(ns, move || {
        std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
    })
}

/// `GET /metrics` on the server's `metrics-listen` port, with curl from
/// `host`: each series (comments left out) and its value.
pub fn scrape_metrics(host: &Host, port: u16) -> BTreeMap<String, f64> {
    let url = format!("http://{SERVER_IP}:{port}/metrics");
    let body = host
        .exec(
            &["curl", "-sS", "--max-time", "5", &url],
            Duration::from_secs(15),
        )
        .unwrap_or_else(|e| panic!("scrape: {e}"));
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}
