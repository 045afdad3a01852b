//! `dhcp-script`: a real script run by the server for a real udhcpc's
//! lease, in network namespaces. Run as root; see tests/README.md.
//! `TWINMASQ_TEST_SERVER=dnsmasq` runs the same tests against real dnsmasq.

mod netns;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netns::{wait_for, Lab, PairLab, PairRole, ServerConf, ServerKind, Udhcpc, DOMAIN, LEASE_SECS};

macro_rules! lab {
    ($name:expr) => {
        match Lab::new($name) {
            Some(lab) => lab,
            None => return,
        }
    };
}

const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// One run of the script as it recorded itself.
#[derive(Debug, Clone)]
struct Run {
    argv0: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    uid: u32,
}

impl Run {
    fn var(&self, k: &str) -> Option<&str> {
        self.env.get(k).map(String::as_str)
    }

    fn num(&self, k: &str) -> u64 {
        self.var(k)
            .unwrap_or_else(|| panic!("{k} not set: {self:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{k}: {e}: {self:?}"))
    }
}

/// A script that appends, per run, its argv[0], arguments, uid and
/// DNSMASQ_* variables, NUL-separated and closed by an END record (the
/// test reads while it appends). With `slow_name`, a run about that
/// hostname sleeps after recording itself, then records `DONE`.
fn write_script(dir: &Path, log: &Path, slow_name: Option<&str>) -> PathBuf {
    let path = dir.join("lease-hook.sh");
    let slow = slow_name
        .map(|n| {
            format!(
                "if [ \"$4\" = '{n}' ]; then sleep 6; printf 'DONE %s\\0' \"$*\" >> '{}'; fi\n",
                log.display()
            )
        })
        .unwrap_or_default();
    let body = format!(
        "#!/bin/sh\n\
         {{ printf 'ARGV0=%s\\0' \"$0\"; for a in \"$@\"; do printf 'ARG=%s\\0' \"$a\"; done; \
            printf 'UID=%s\\0' \"$(id -u)\"; env -0 | grep -z '^DNSMASQ_'; printf 'END\\0'; }} >> '{log}'\n\
         {slow}exit 0\n",
        log = log.display()
    );
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn read_runs(log: &Path) -> Vec<Run> {
    let raw = fs::read(log).unwrap_or_default();
    let mut out = vec![];
    let mut cur = Run {
        argv0: String::new(),
        args: vec![],
        env: BTreeMap::new(),
        uid: u32::MAX,
    };
    for item in raw.split(|b| *b == 0) {
        let item = String::from_utf8_lossy(item);
        if item == "END" {
            out.push(std::mem::replace(
                &mut cur,
                Run {
                    argv0: String::new(),
                    args: vec![],
                    env: BTreeMap::new(),
                    uid: u32::MAX,
                },
            ));
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        match k {
            "ARGV0" => cur.argv0 = v.to_string(),
            "ARG" => cur.args.push(v.to_string()),
            "UID" => cur.uid = v.parse().unwrap_or(u32::MAX),
            _ => {
                cur.env.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

/// Waits until the script has recorded `n` runs; returns them all.
fn wait_runs(log: &Path, n: usize, what: &str) -> Vec<Run> {
    wait_for(RUN_TIMEOUT, what, || {
        let runs = read_runs(log);
        (runs.len() >= n).then_some(runs)
    })
    .unwrap_or_else(|e| panic!("{e}; runs so far: {:#?}", read_runs(log)))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// These tests keep root, in a lab directory private to root; the ones
/// below that drop to `user` show who runs the script then.
fn script_conf(script: &Path) -> ServerConf {
    ServerConf::standard()
        .line("user=root")
        .line(format!("dhcp-script={}", script.display()))
}

#[test]
fn script_sees_add_renewal_restart_and_release() {
    let lab = lab!("script_sees_add_renewal_restart_and_release");
    let log = lab.dir().join("script.log");
    let script = write_script(lab.dir(), &log, None);
    let mut srv = lab.start_server(&script_conf(&script).line("script-on-renewal"));
    let host = lab.add_client();
    let mut c = Udhcpc::new(&lab, &host).with_hostname("scripted");

    let before = now_secs();
    let l = c.obtain().unwrap();
    let after = now_secs();
    let ip = l.address.to_string();
    let expect_args = vec![
        "add".to_string(),
        host.mac.clone(),
        ip.clone(),
        "scripted".into(),
    ];

    let runs = wait_runs(&log, 1, "the add run");
    let add = &runs[0];
    assert_eq!(add.args, expect_args, "{add:?}");
    // For a script, $0 is the path it was run by.
    assert_eq!(add.argv0, script.display().to_string());
    assert_eq!(
        add.var("DNSMASQ_INTERFACE"),
        Some(srv.host.ifname.as_str()),
        "{add:?}"
    );
    assert_eq!(add.var("DNSMASQ_DOMAIN"), Some(DOMAIN), "{add:?}");
    // udhcpc sends its MAC as client-id (type 1).
    assert_eq!(
        add.var("DNSMASQ_CLIENT_ID"),
        Some(format!("01:{}", host.mac).as_str()),
        "{add:?}"
    );
    assert_eq!(add.var("DNSMASQ_LOG_DHCP"), Some("1"), "{add:?}");
    assert_eq!(add.var("DNSMASQ_DATA_MISSING"), None, "{add:?}");
    let expires = add.num("DNSMASQ_LEASE_EXPIRES");
    let lease_secs = u64::from(LEASE_SECS);
    assert!(
        (before + lease_secs..=after + lease_secs).contains(&expires),
        "expiry {expires} not within [{before}+{lease_secs}, {after}+{lease_secs}]: {add:?}"
    );
    // The lease file and the script agree on the expiry.
    assert_eq!(srv.wait_lease(&host.mac, l.address).expiry, expires);
    let remaining = add.num("DNSMASQ_TIME_REMAINING");
    assert!(
        (lease_secs - 5..=lease_secs).contains(&remaining),
        "remaining {remaining}: {add:?}"
    );
    assert_eq!(l.lease_time, Some(LEASE_SECS));

    // Renewal: a new expiry with the same client, name and address.
    std::thread::sleep(Duration::from_millis(1100));
    let r = c.renew().unwrap();
    assert_eq!(r.address, l.address);
    let runs = wait_runs(&log, 2, "the renewal's old run");
    let old = &runs[1];
    assert_eq!(old.args[0], "old", "{old:?}");
    assert_eq!(old.args[1..], expect_args[1..], "{old:?}");
    assert!(old.num("DNSMASQ_LEASE_EXPIRES") > expires, "{old:?}");
    assert_eq!(old.var("DNSMASQ_DATA_MISSING"), Some("1"), "{old:?}");
    assert_eq!(old.var("DNSMASQ_INTERFACE"), Some(srv.host.ifname.as_str()));

    // A restart reports the held lease from storage.
    srv.restart();
    let runs = wait_runs(&log, 3, "the start-up old run");
    let boot = &runs[2];
    assert_eq!(boot.args[0], "old", "{boot:?}");
    assert_eq!(boot.args[1..], expect_args[1..], "{boot:?}");
    assert_eq!(boot.var("DNSMASQ_DATA_MISSING"), Some("1"), "{boot:?}");
    // The man page says no interface here; dnsmasq 2.90 finds it anyway.
    assert_eq!(
        boot.var("DNSMASQ_INTERFACE"),
        Some(srv.host.ifname.as_str()),
        "{boot:?}"
    );
    assert_eq!(
        boot.num("DNSMASQ_LEASE_EXPIRES"),
        old.num("DNSMASQ_LEASE_EXPIRES")
    );

    // Release: del with what the lease was, and no remaining time.
    c.release().unwrap();
    srv.wait_no_lease(l.address);
    let runs = wait_for(RUN_TIMEOUT, "the release's del run", || {
        let runs = read_runs(&log);
        (runs.last().map(|r| r.args[0].as_str()) == Some("del")).then_some(runs)
    })
    .unwrap_or_else(|e| panic!("{e}: {:#?}", read_runs(&log)));
    let del = runs.last().unwrap();
    assert_eq!(del.args[1..], expect_args[1..], "{del:?}");
    assert_eq!(del.var("DNSMASQ_TIME_REMAINING"), None, "{del:?}");
    assert_eq!(del.var("DNSMASQ_DATA_MISSING"), Some("1"), "{del:?}");
    // The expiry the lease had, not the moment it ended.
    assert_eq!(
        del.num("DNSMASQ_LEASE_EXPIRES"),
        old.num("DNSMASQ_LEASE_EXPIRES"),
        "{del:?}"
    );
    assert!(del.var("DNSMASQ_LEASE_EXPIRES").is_some(), "{del:?}");
    let between = &runs[3..runs.len() - 1];
    if srv.kind == ServerKind::Twinmasq {
        assert!(between.is_empty(), "{runs:#?}");
    } else {
        // dnsmasq 2.90 repeats the start-up `old` once more.
        assert!(between.iter().all(|r| r.args == boot.args), "{runs:#?}");
    }

    // Nothing more: one run per change.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_runs(&log).len(), runs.len(), "{:#?}", read_runs(&log));
}

#[test]
fn renewal_runs_nothing_without_script_on_renewal() {
    let lab = lab!("renewal_runs_nothing_without_script_on_renewal");
    let log = lab.dir().join("script.log");
    let script = write_script(lab.dir(), &log, None);
    let srv = lab.start_server(&script_conf(&script));
    let host = lab.add_client();
    let mut c = Udhcpc::new(&lab, &host);
    let l = c.obtain().unwrap();
    let runs = wait_runs(&log, 1, "the add run");
    // No hostname sent: three arguments, no domain.
    assert_eq!(
        runs[0].args,
        ["add", host.mac.as_str(), l.address.to_string().as_str()]
    );
    assert_eq!(runs[0].var("DNSMASQ_DOMAIN"), None, "{:?}", runs[0]);
    let before = srv.wait_lease(&host.mac, l.address);
    std::thread::sleep(Duration::from_millis(1100));
    c.renew().unwrap();
    srv.wait_leases("the renewal to extend the expiry", |ls| {
        ls.iter()
            .any(|x| x.ip == l.address && x.expiry > before.expiry)
    });
    std::thread::sleep(Duration::from_millis(500));
    let runs = read_runs(&log);
    assert_eq!(runs.len(), 1, "{runs:#?}");
}

#[test]
fn slow_script_does_not_delay_dhcp() {
    let lab = lab!("slow_script_does_not_delay_dhcp");
    let log = lab.dir().join("script.log");
    let script = write_script(lab.dir(), &log, Some("slow"));
    let _srv = lab.start_server(&script_conf(&script));
    let (h1, h2) = (lab.add_client(), lab.add_client());
    let mut slow = Udhcpc::new(&lab, &h1).with_hostname("slow");
    let mut fast = Udhcpc::new(&lab, &h2).with_hostname("fast");
    let l1 = slow.obtain().unwrap();
    let runs = wait_runs(&log, 1, "the slow run to start");
    assert_eq!(runs[0].args[3], "slow");
    let done =
        |log: &Path| String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).contains("DONE ");

    // The slow run sleeps for 6 s; the second client is served meanwhile.
    let t0 = Instant::now();
    let l2 = fast.obtain().unwrap();
    let took = t0.elapsed();
    assert!(
        !done(&log),
        "the slow run ended before the second lease was granted ({took:?})"
    );
    assert!(took < Duration::from_secs(4), "second lease took {took:?}");
    assert_ne!(l1.address, l2.address);

    // Runs are one at a time, in order: the second add starts after the
    // first run has finished.
    let runs = wait_runs(&log, 2, "the second add run");
    assert!(done(&log), "second run started before the first ended");
    assert_eq!(
        runs[1].args,
        [
            "add",
            h2.mac.as_str(),
            l2.address.to_string().as_str(),
            "fast"
        ]
    );
    let text = String::from_utf8_lossy(&fs::read(&log).unwrap()).into_owned();
    let done_at = text.find("DONE ").unwrap();
    let second_at = text.find("ARG=fast").unwrap();
    assert!(done_at < second_at, "{text:?}");
}

/// A directory outside the lab's (which is private to root) with an empty
/// script log in it, both open to `nobody`.
fn dir_nobody_can_use() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("tmqt-script-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("script.log");
    fs::write(&log, "").unwrap();
    fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
    (dir, log)
}

#[test]
fn script_runs_as_dhcp_scriptuser() {
    let lab = lab!("script_runs_as_dhcp_scriptuser");
    // The lab's directory is private to root; the script and its log live
    // where `nobody` can reach them.
    let (dir, log) = dir_nobody_can_use();
    let script = write_script(dir.path(), &log, None);
    let srv = lab.start_server(&script_conf(&script).line("dhcp-scriptuser=nobody"));
    let host = lab.add_client();
    let l = Udhcpc::new(&lab, &host).obtain().unwrap();
    let runs = wait_runs(&log, 1, "the add run as nobody");
    assert_eq!(runs[0].args[2], l.address.to_string());
    let nobody = netns::run(&["id", "-u", "nobody"], Duration::from_secs(5)).unwrap();
    assert_eq!(runs[0].uid.to_string(), nobody.trim(), "{:?}", runs[0]);
    assert_ne!(runs[0].uid, 0);
    if ServerKind::from_env() == ServerKind::Twinmasq {
        // Ours names the user in the log only when it cannot switch.
        assert!(!srv.log_text().contains("not running as root"));
    }
}

/// The uid of a running process, from /proc.
fn proc_uid(pid: u32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no Uid line: {status}"))
}

/// Started as root with the default `user` (nobody), the server drops
/// root, yet the script runs as root, as dnsmasq's does: from a helper
/// process started before the drop. With `dhcp-scriptuser` the helper runs
/// it as that user.
#[test]
fn script_runs_as_root_or_scriptuser_after_the_server_drops_root() {
    let lab = lab!("script_runs_as_root_or_scriptuser_after_the_server_drops_root");
    let nobody: u32 = netns::run(&["id", "-u", "nobody"], Duration::from_secs(5))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for scriptuser in [None, Some("nobody")] {
        // Where `nobody` can write too, for the dhcp-scriptuser run.
        let (dir, log) = dir_nobody_can_use();
        let script = write_script(dir.path(), &log, None);
        let mut conf = ServerConf::standard().line(format!("dhcp-script={}", script.display()));
        if let Some(u) = scriptuser {
            conf = conf.line(format!("dhcp-scriptuser={u}"));
        }
        let mut srv = lab.start_server(&conf);
        let host = lab.add_client();
        let l = Udhcpc::new(&lab, &host).obtain().unwrap();
        // A restart on the same database runs `old` for the earlier
        // client first.
        let add = wait_for(RUN_TIMEOUT, "the add run", || {
            read_runs(&log)
                .into_iter()
                .find(|r| r.args.first().map(String::as_str) == Some("add"))
        })
        .unwrap();
        assert_eq!(
            add.args[..3],
            ["add", host.mac.as_str(), &l.address.to_string()]
        );
        let want = if scriptuser.is_some() { nobody } else { 0 };
        assert_eq!(add.uid, want, "{scriptuser:?}: {add:?}");
        let pid = srv.pid().expect("the server runs");
        assert_eq!(proc_uid(pid), nobody, "the server itself dropped root");
        srv.stop();
    }
}

/// In a failover pair each node runs its own script for every change,
/// whichever node made it: the secondary hears of the primary's lease
/// through the link's merge.
#[test]
fn both_nodes_of_a_pair_run_the_script() {
    if ServerKind::from_env() == ServerKind::Dnsmasq {
        // dnsmasq has no failover pair to compare with.
        return;
    }
    let Some(pair) = PairLab::new("both_nodes_of_a_pair_run_the_script") else {
        return;
    };
    let (log_p, log_s) = (
        pair.lab.dir().join("primary-script.log"),
        pair.lab.dir().join("secondary-script.log"),
    );
    let script_dir = pair.lab.dir().join("scripts");
    let (dir_p, dir_s) = (script_dir.join("p"), script_dir.join("s"));
    fs::create_dir_all(&dir_p).unwrap();
    fs::create_dir_all(&dir_s).unwrap();
    let p = pair.start_node(
        PairRole::Primary,
        &script_conf(&write_script(&dir_p, &log_p, None)),
    );
    let s = pair.start_node(
        PairRole::Secondary,
        &script_conf(&write_script(&dir_s, &log_s, None)),
    );
    for (srv, needle) in [
        (&p, "sync done"),
        (&s, "sync done"),
        (&s, "-> Passive"),
        (&p, "-> Linked"),
    ] {
        if let Err(e) = srv.wait_log(0, needle, Duration::from_secs(10)) {
            panic!("the link did not come up: {e}\n{}", srv.log_tail(40));
        }
    }

    let host = pair.lab.add_client();
    let mut c = Udhcpc::new(&pair.lab, &host).with_hostname("paired");
    let l = c.obtain().unwrap();
    let expect = vec![
        "add".to_string(),
        host.mac.clone(),
        l.address.to_string(),
        "paired".into(),
    ];
    for (log, node) in [(&log_p, &pair.primary), (&log_s, &pair.secondary)] {
        let runs = wait_runs(log, 1, "the add run on each node");
        assert_eq!(runs.len(), 1, "{runs:#?}");
        assert_eq!(runs[0].args, expect, "{runs:#?}");
        assert_eq!(
            runs[0].var("DNSMASQ_INTERFACE"),
            Some(node.ifname.as_str()),
            "{runs:#?}"
        );
    }
    c.release().unwrap();
    for log in [&log_p, &log_s] {
        let runs = wait_runs(log, 2, "the del run on each node");
        assert_eq!(runs[1].args[0], "del", "{runs:#?}");
        assert_eq!(runs[1].args[1..], expect[1..], "{runs:#?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_runs(&log_p).len(), 2, "{:#?}", read_runs(&log_p));
    assert_eq!(read_runs(&log_s).len(), 2, "{:#?}", read_runs(&log_s));
}
