//! twinmasq as a system service, against the real binary in namespaces:
//! SIGHUP reloads hosts files while DHCP clients keep their leases,
//! SIGUSR1 logs statistics, the drop from root to `user`, background
//! (daemon) mode with its pid file, and start errors reported by the
//! waiting parent with dnsmasq's exit codes.

mod netns;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use netns::{Lab, ServerConf, Udhcpc, SERVER_IP};

macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

const BIN: &str = env!("CARGO_BIN_EXE_twinmasq");

fn dig(ns: &str, name: &str) -> String {
    let server = format!("@{SERVER_IP}");
    let argv = [
        "ip", "netns", "exec", ns, "dig", "+short", "+time=1", "+tries=1", &server, name, "A",
    ];
    netns::run(&argv, Duration::from_secs(5))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn leases_json(sock: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["leases", "--json"])
        .arg(format!("--control-socket={}", sock.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter says so.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z")
        })
        .unwrap_or(false)
}

/// The `Uid:`/`Gid:`/`CapEff:` fields of /proc/PID/status.
fn proc_status(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn getent(db: &str, name: &str) -> Option<Vec<String>> {
    let out = Command::new("getent").args([db, name]).output().unwrap();
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(String::from)
            .collect()
    })
}

/// A server started by hand (not through `Server`, which always passes
/// `-k`): its own directory, config and files.
struct Daemon {
    dir: PathBuf,
    conf: PathBuf,
    ns: String,
    pid: Option<u32>,
}

impl Daemon {
    fn new(lab: &Lab, name: &str, lines: &[String]) -> Daemon {
        // The lab's directory is root's 0700; the dropped server must reach
        // its own files below it, as it would under /var/lib.
        std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = lab.dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = dir.join("dnsmasq.conf");
        let mut text = format!("interface={}\n", lab.server.ifname);
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str(&format!(
            "dhcp-leasefile={}\nlease-db={}\npid-file={}\ncontrol-socket={}\nlog-facility={}\n",
            dir.join("leases").display(),
            dir.join("db").display(),
            dir.join("pid").display(),
            dir.join("ctl.sock").display(),
            dir.join("server.log").display(),
        ));
        std::fs::write(&conf, text).unwrap();
        Daemon {
            dir,
            conf,
            ns: lab.server.ns.clone(),
            pid: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// Runs the command as an init script would; it must return on its
    /// own (the parent exits once the daemon reports). Bounded by
    /// `timeout(1)`.
    fn launch(&self, extra: &[&str]) -> (Output, Duration) {
        self.launch_inheriting(extra, &[])
    }

    /// As `launch`, with descriptors left open for the server as a careless
    /// starter would: each `(fd, n)` is open as `n` in the server's
    /// process, without close-on-exec.
    fn launch_inheriting(&self, extra: &[&str], fds: &[(RawFd, RawFd)]) -> (Output, Duration) {
        let started = Instant::now();
        let mut cmd = Command::new("timeout");
        cmd.args(["30", "ip", "netns", "exec", &self.ns, BIN, "-C"])
            .arg(&self.conf)
            .args(extra);
        let fds = fds.to_vec();
        // SAFETY: between fork and exec the closure only calls dup2(2),
        // which is async-signal-safe, on descriptors this test holds open.
        unsafe {
            cmd.pre_exec(move || {
                for &(fd, n) in &fds {
                    if libc::dup2(fd, n) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        (out, started.elapsed())
    }

    /// Starts in the background as `start` does, through `launch_inheriting`.
    fn start_inheriting(&mut self, fds: &[(RawFd, RawFd)]) -> u32 {
        let (out, took) = self.launch_inheriting(&[], fds);
        assert!(
            out.status.success(),
            "start failed: {}\n{}",
            text(&out),
            self.log()
        );
        assert!(took < Duration::from_secs(20), "start took {took:?}");
        let pid: u32 = std::fs::read_to_string(self.path("pid"))
            .unwrap_or_else(|e| panic!("no pid file after a successful start: {e}\n{}", self.log()))
            .trim()
            .parse()
            .unwrap();
        self.pid = Some(pid);
        pid
    }

    /// Starts in the background; returns the daemon's pid from its pid file.
    fn start(&mut self) -> u32 {
        self.start_inheriting(&[])
    }

    /// SIGTERM; waits (bounded) for the process to go.
    fn stop(&mut self) {
        let pid = self.pid.take().expect("not started");
        kill(pid, libc::SIGTERM);
        let gone = netns::wait_for(Duration::from_secs(10), "daemon exit", || {
            (!alive(pid)).then_some(())
        });
        assert!(gone.is_ok(), "daemon {pid} ignored SIGTERM\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            if alive(pid) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn sighup_reloads_hosts_and_keeps_leases() {
    let lab = lab!("sighup_reloads_hosts_and_keeps_leases");
    let hosts = lab.dir().join("addn-hosts");
    std::fs::write(&hosts, "198.18.0.77 old.svc.test\n").unwrap();
    let sock = lab.dir().join("ctl.sock");
    let mut conf = ServerConf::standard()
        .line(format!("addn-hosts={}", hosts.display()))
        .line(format!("control-socket={}", sock.display()));
    conf.lines.retain(|l| l != "port=0");
    let srv = lab.start_server(&conf);
    let pid = srv.pid().unwrap();
    let host = lab.add_client();
    let mut client = Udhcpc::new(&lab, &host);
    let lease = client.obtain().unwrap();
    assert_eq!(
        dig(&host.ns, "old.svc.test"),
        "198.18.0.77",
        "{}",
        srv.log_text()
    );

    std::fs::write(&hosts, "198.18.0.78 new.svc.test\n").unwrap();
    // Not read until told: the old answer stands.
    assert_eq!(dig(&host.ns, "new.svc.test"), "", "{}", srv.log_text());
    let mark = srv.log_mark();
    kill(pid, libc::SIGHUP);
    let reloaded = netns::wait_for(Duration::from_secs(5), "the new name", || {
        (dig(&host.ns, "new.svc.test") == "198.18.0.78").then_some(())
    });
    assert!(reloaded.is_ok(), "no reload\n{}", srv.log_text());
    assert_eq!(dig(&host.ns, "old.svc.test"), "", "{}", srv.log_text());
    assert!(
        !srv.log_grep(mark, "cleared cache").is_empty(),
        "{}",
        srv.log_text()
    );

    // The same process, the lease untouched, and the renewal ACKed.
    assert!(alive(pid));
    let leases = leases_json(&sock);
    let found = leases["leases"].as_array().unwrap().iter().any(|l| {
        l["ip"] == lease.address.to_string() && l["mac"] == host.mac && l["state"] == "bound"
    });
    assert!(found, "lease gone after SIGHUP: {leases}");
    let renewed = client.renew().unwrap();
    assert_eq!(renewed.address, lease.address);

    // SIGUSR1: cache and lease statistics in the log.
    let mark = srv.log_mark();
    kill(pid, libc::SIGUSR1);
    let wait = Duration::from_secs(5);
    srv.wait_log(mark, "cache size 150,", wait).unwrap();
    srv.wait_log(mark, "leases: 1 bound", wait).unwrap();
    srv.wait_log(
        mark,
        "DHCP range 198.18.0.100 -- 198.18.0.199: 100 addresses",
        wait,
    )
    .unwrap();
    assert!(alive(pid));
}

#[test]
fn drops_root_and_still_serves_and_stores_leases() {
    let lab = lab!("drops_root_and_still_serves_and_stores_leases");
    let conf = ServerConf::standard().line("user=nobody");
    let mut d = Daemon::new(&lab, "svc", &conf.lines);
    let pid = d.start();

    let nobody = getent("passwd", "nobody").expect("a nobody user");
    let uid = &nobody[2];
    // dnsmasq's default group is dip when it exists, else the user's own.
    let gid = getent("group", "dip").map_or_else(|| nobody[3].clone(), |g| g[2].clone());
    assert_eq!(
        proc_status(pid, "Uid"),
        format!("{uid} {uid} {uid} {uid}"),
        "{}",
        d.log()
    );
    assert_eq!(proc_status(pid, "Gid"), format!("{gid} {gid} {gid} {gid}"));
    assert_eq!(proc_status(pid, "Groups"), "");
    // no-ping (standard config): CAP_NET_ADMIN (12) only, for ARP entries.
    assert_eq!(proc_status(pid, "CapEff"), "0000000000001000");
    assert_eq!(proc_status(pid, "CapPrm"), "0000000000001000");
    assert!(d.log().contains("running as nobody"), "{}", d.log());

    // Still serves, and the lease reaches the database and the lease
    // file, whose directory (root's) now only allows rewriting in place.
    let host = lab.add_client();
    let mut client = Udhcpc::new(&lab, &host);
    let lease = client
        .obtain()
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let leasefile = d.path("leases");
    let written = netns::wait_for(Duration::from_secs(10), "lease in the lease file", || {
        let text = std::fs::read_to_string(&leasefile).unwrap_or_default();
        netns::parse_lease_file(&text)
            .iter()
            .any(|l| l.ip == lease.address && l.mac == host.mac)
            .then_some(())
    });
    assert!(written.is_ok(), "lease file not written\n{}", d.log());
    assert_eq!(
        std::fs::metadata(&leasefile).unwrap().uid().to_string(),
        *uid
    );
    let leases = leases_json(&d.path("ctl.sock"));
    assert!(
        leases["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ip"] == lease.address.to_string() && l["state"] == "bound"),
        "{leases}"
    );
    // sled keeps creating files in its directory: all of it is nobody's.
    for e in std::fs::read_dir(d.path("db")).unwrap().flatten() {
        assert_eq!(
            e.metadata().unwrap().uid().to_string(),
            *uid,
            "{:?}",
            e.path()
        );
    }
    let renewed = client.renew().unwrap();
    assert_eq!(renewed.address, lease.address);
    client.stop();
    d.stop();

    // The database written after the drop is whole at the next start.
    let mut again = Daemon {
        dir: d.dir.clone(),
        conf: d.conf.clone(),
        ns: d.ns.clone(),
        pid: None,
    };
    again.start();
    let leases = leases_json(&again.path("ctl.sock"));
    assert!(
        leases["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ip"] == lease.address.to_string() && l["mac"] == host.mac),
        "{leases}"
    );
    again.stop();
}

/// Where each descriptor of process `pid` above 2 points.
fn fd_targets(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) > Some(2))
        .map(|e| {
            let to = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                to.display().to_string(),
            )
        })
        .collect()
}

/// Review finding 7, with dnsmasq as the model: once dropped, the server
/// cannot gain privileges through exec (`NoNewPrivs: 1`) and its capability
/// bounding set holds only what it keeps, on every thread; and descriptors
/// its starter left open reach neither the server nor the root
/// `dhcp-script` helper, which still runs the script as root.
#[test]
fn dropped_server_has_no_new_privs_a_small_bounding_set_and_no_inherited_fds() {
    let lab = lab!("dropped_server_has_no_new_privs_a_small_bounding_set_and_no_inherited_fds");
    let dir = lab.dir().join("nnp");
    std::fs::create_dir_all(&dir).unwrap();
    let script_log = dir.join("script.log");
    let script = dir.join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $(id -u)\" >> '{}'\n",
            script_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = ServerConf::standard()
        .line("user=nobody")
        .line(format!("dhcp-script={}", script.display()));
    let mut d = Daemon::new(&lab, "svc", &conf.lines);
    // What a careless starter leaves open: a file and a pipe.
    let marker = d.path("inherited-marker");
    std::fs::write(&marker, "").unwrap();
    let file = std::fs::File::open(&marker).unwrap();
    let mut ends = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    assert_eq!(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    // SAFETY: both are new and owned by nothing else.
    let (pipe_r, _pipe_w) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    let pipe_name = std::fs::read_link(format!("/proc/self/fd/{}", pipe_r.as_raw_fd()))
        .unwrap()
        .display()
        .to_string();
    let pid = d.start_inheriting(&[(file.as_raw_fd(), 10), (pipe_r.as_raw_fd(), 251)]);
    let helper: u32 = d
        .log()
        .split("dhcp-script runs from helper process ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no helper pid in the log\n{}", d.log()));

    let mut problems = Vec::new();
    // The bounding set and no_new_privs are per thread: all of them.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: u32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let (nnp, bnd) = (proc_status(tid, "NoNewPrivs"), proc_status(tid, "CapBnd"));
        if nnp != "1" {
            problems.push(format!("thread {tid}: NoNewPrivs: {nnp}"));
        }
        // no-ping (standard config): CAP_NET_ADMIN (12) only.
        if bnd != "0000000000001000" {
            problems.push(format!("thread {tid}: CapBnd: {bnd}"));
        }
    }
    for (who, p) in [("server", pid), ("helper", helper)] {
        for (fd, to) in fd_targets(p) {
            if to == marker.display().to_string() || to == pipe_name {
                problems.push(format!("{who} {p} holds the inherited {to} as fd {fd}"));
            }
        }
    }
    // The helper keeps root's bounding set: scripts run as root as before.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_bnd = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(proc_status(helper, "CapBnd"), own_bnd);
    assert!(problems.is_empty(), "{problems:#?}\n{}", d.log());

    let host = lab.add_client();
    let mut client = Udhcpc::new(&lab, &host);
    client
        .obtain()
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let ran = netns::wait_for(Duration::from_secs(15), "the script's add run", || {
        std::fs::read_to_string(&script_log)
            .unwrap_or_default()
            .lines()
            .any(|l| l == "add 0")
            .then_some(())
    });
    assert!(
        ran.is_ok(),
        "the helper did not run the script as root\n{}",
        d.log()
    );
    client.stop();
    d.stop();
}

#[test]
fn daemon_mode_detaches_writes_pid_file_and_stops_on_sigterm() {
    let lab = lab!("daemon_mode_detaches_writes_pid_file_and_stops_on_sigterm");
    // log-async: the log goes through the writer thread, and the last
    // line (written while exiting) must still reach the file.
    let conf = ServerConf::standard().line("log-async=20");
    let mut d = Daemon::new(&lab, "svc", &conf.lines);
    // As systemd's RuntimeDirectory=: the pid file's directory is the
    // dropped user's, so the daemon can remove its pid file at exit.
    let run = d.path("run");
    std::fs::create_dir_all(&run).unwrap();
    let nobody = getent("passwd", "nobody").expect("a nobody user");
    let uid: u32 = nobody[2].parse().unwrap();
    std::os::unix::fs::chown(&run, Some(uid), None).unwrap();
    let pidfile = run.join("twinmasq.pid");
    let conf = std::fs::read_to_string(&d.conf).unwrap();
    std::fs::write(
        &d.conf,
        conf.replace(
            &format!("pid-file={}", d.path("pid").display()),
            &format!("pid-file={}", pidfile.display()),
        ),
    )
    .unwrap();

    let (out, took) = d.launch(&[]);
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    assert!(took < Duration::from_secs(20));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    d.pid = Some(pid);
    assert!(alive(pid), "pid file names no live process\n{}", d.log());
    // The command returned, the daemon lives on: another process, in its
    // own session, not a session leader (double fork), stdio detached.
    // SAFETY: getsid(2) has no memory-safety preconditions.
    let (sid, our_sid) = unsafe { (libc::getsid(pid as i32), libc::getsid(0)) };
    assert!(sid > 0 && sid != our_sid, "sid {sid}, ours {our_sid}");
    assert_ne!(sid, pid as i32, "the daemon must not lead its session");
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert_eq!(stdin, Path::new("/dev/null"));
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/2")).unwrap(),
        Path::new("/dev/null")
    );
    // It serves.
    let host = lab.add_client();
    let mut client = Udhcpc::new(&lab, &host);
    client
        .obtain()
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    client.stop();

    d.stop();
    assert!(
        !pidfile.exists(),
        "pid file left after SIGTERM\n{}",
        d.log()
    );
    assert!(
        d.log().contains("exiting on receipt of SIGTERM"),
        "{}",
        d.log()
    );
}

#[test]
fn daemon_start_errors_reach_the_parent_with_dnsmasq_exit_codes() {
    let lab = lab!("daemon_start_errors_reach_the_parent_with_dnsmasq_exit_codes");

    // A port taken: a foreground twinmasq holds DNS port 5353 (TCP too).
    let holder_dir = lab.dir().join("holder");
    std::fs::create_dir_all(&holder_dir).unwrap();
    let p = |n: &str| holder_dir.join(n).display().to_string();
    let holder_args = [
        BIN.to_string(),
        "-k".into(),
        "--conf-file=/dev/null".into(),
        "--port=5353".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        format!("--lease-db={}", p("db")),
        format!("--dhcp-leasefile={}", p("leases")),
        format!("--pid-file={}", p("pid")),
        format!("--control-socket={}", p("ctl.sock")),
    ];
    let argv: Vec<&str> = holder_args.iter().map(String::as_str).collect();
    let mut holder = netns::Proc::spawn("holder", &lab.server.ns, &argv, &holder_dir.join("log"));
    let up = netns::wait_for(Duration::from_secs(10), "holder pid file", || {
        holder_dir.join("pid").exists().then_some(())
    });
    assert!(
        up.is_ok() && holder.running(),
        "{}",
        std::fs::read_to_string(holder_dir.join("log")).unwrap_or_default()
    );

    let lines = ServerConf::standard().lines;
    let lines: Vec<String> = lines.into_iter().filter(|l| l != "port=0").collect();
    let d = Daemon::new(&lab, "taken", &lines);
    let (out, _) = d.launch(&["--port=5353"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot bind DNS") && stderr.contains("5353"),
        "{stderr}"
    );
    assert!(!d.path("pid").exists(), "pid file of a failed start");
    holder.terminate(Duration::from_secs(5));

    // A log file that cannot be opened: found by the daemon after the fork.
    let d = Daemon::new(&lab, "nolog", &ServerConf::standard().lines);
    let (out, _) = d.launch(&["--log-facility=/nonexistent/dir/twinmasq.log"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open log file /nonexistent/dir"),
        "{}",
        text(&out)
    );

    // An explicit user the database would be out of reach for: an error,
    // not a server that fails at its first snapshot.
    let d = Daemon::new(
        &lab,
        "closed",
        &ServerConf::standard().line("user=nobody").lines,
    );
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (out, _) = d.launch(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("user nobody cannot reach"),
        "{}",
        text(&out)
    );

    // An unknown user: dnsmasq's configuration exit code.
    let d = Daemon::new(
        &lab,
        "baduser",
        &ServerConf::standard().line("user=no-such-user-tmq").lines,
    );
    let (out, _) = d.launch(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown user or group: no-such-user-tmq"),
        "{}",
        text(&out)
    );
}
