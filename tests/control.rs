//! The control socket and the subcommands that use it, against the real
//! binary: `status` (summary, `--json`, `--check`), `leases`, `failover
//! gen-key`, `failover partner-down`, and the socket's own behaviour (mode
//! 0600, junk and idle clients, the bound on connections, stale and live
//! socket files, removal at SIGTERM).
//!
//! The server binds the DHCP port, so it runs in a lab namespace (see
//! `netns/`), with `port=0` (no DNS) and no dhcp-range; the control socket
//! is a file in the lab's directory, reachable from any namespace. Tests
//! that need no server run without root.

mod netns;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netns::{Lab, ServerConf};

fn twinmasq(args: &[&str]) -> Output {
    // The subcommands bound their own waits (15 s at most).
    Command::new(env!("CARGO_BIN_EXE_twinmasq"))
        .args(args)
        .output()
        .expect("run twinmasq")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends raw bytes on the control socket and returns the JSON reply.
fn raw(path: &Path, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(path).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    read_reply(&mut s)
}

fn read_reply(s: &mut UnixStream) -> serde_json::Value {
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read the reply");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?} is not JSON: {e}"))
}

fn error_of(v: &serde_json::Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {v}"))
        .to_string()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn gen_key_prints_a_new_key_each_time() {
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let out = twinmasq(&["failover", "gen-key"]);
            assert!(out.status.success(), "{}", text(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("0600"),
                "no hint about the file mode: {}",
                text(&out)
            );
            let key = stdout(&out);
            assert!(key.ends_with('\n'));
            let key = key.trim().to_string();
            assert!(key.len() >= 64, "{key}");
            assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
            key
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn check_without_an_answering_server_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let stale = dir.path().join("stale.sock");
    // A socket file whose server is gone.
    drop(UnixListener::bind(&stale).unwrap());
    for path in [&missing, &stale] {
        let arg = format!("--control-socket={}", path.display());
        let out = twinmasq(&["status", "--check", &arg]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            stdout(&out).starts_with("not live: no answer"),
            "{}",
            text(&out)
        );
        let out = twinmasq(&["leases", &arg]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
}

#[test]
fn subcommands_have_help() {
    for (args, wants) in [
        (&["status", "--help"][..], "--check"),
        (&["leases", "--help"][..], "--json"),
        (&["failover", "--help"][..], "gen-key"),
        (
            &["failover", "partner-down", "--help"][..],
            "--control-socket",
        ),
        (&["--help"][..], "twinmasq status"),
    ] {
        let out = twinmasq(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(stdout(&out).contains(wants), "{args:?}: {}", text(&out));
    }
    let out = twinmasq(&["status", "--bogus"]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn control_socket_answers_status_leases_and_survives_junk() {
    let Some(lab) = Lab::new("control_socket_answers_status_leases_and_survives_junk") else {
        return;
    };
    let sock = lab.dir().join("ctl.sock");
    let arg = format!("--control-socket={}", sock.display());
    // A dnsmasq lease file to import on first start.
    let expiry = now_secs() + 3600;
    let server_dir = lab.dir().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    std::fs::write(
        server_dir.join("leases"),
        format!("{expiry} 02:00:00:00:00:42 198.18.0.150 importedhost 01:02:00:00:00:00:42\n"),
    )
    .unwrap();
    // Left over from a server that died: removed at start.
    drop(UnixListener::bind(&sock).unwrap());

    // Stays root so it may remove its socket from the root-owned lab
    // directory at exit (after a drop to nobody that is best-effort).
    let conf = ServerConf::base()
        .line(format!("control-socket={}", sock.display()))
        .line("user=root");
    let mut srv = lab.start_server_kind(netns::ServerKind::Twinmasq, &conf);

    let meta = std::fs::metadata(&sock).expect("control socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // status --json
    let out = twinmasq(&["status", "--json", &arg]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let node_id = status["node_id"].as_u64().expect("node_id");
    assert_ne!(node_id, 0);
    assert_eq!(status["pid"].as_u64(), srv.pid().map(u64::from));
    let leases = &status["leases"];
    assert_eq!(leases["records"], 1, "{status}");
    assert_eq!(leases["bound"], 1, "{status}");
    assert_eq!(leases["active"], 1, "{status}");
    assert_eq!(leases["from_this_node"], 1, "{status}");
    assert_eq!(leases["from_other_nodes"], 0, "{status}");
    assert!(status["failover"].is_null(), "{status}");
    assert_eq!(status["ranges"], serde_json::json!([]));
    assert_eq!(status["dhcp"]["acks"], 0);

    // The summary.
    let out = twinmasq(&["status", &arg]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = stdout(&out);
    assert!(summary.contains(&format!("node {node_id}")), "{summary}");
    assert!(summary.contains("failover: not configured"), "{summary}");

    // leases --json: the imported lease, stamped by this node.
    let out = twinmasq(&["leases", "--json", &arg]);
    assert!(out.status.success(), "{}", text(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("leases JSON");
    let list = reply["leases"].as_array().expect("leases array");
    assert_eq!(list.len(), 1, "{reply}");
    let l = &list[0];
    assert_eq!(l["ip"], "198.18.0.150");
    assert_eq!(l["state"], "bound");
    assert_eq!(l["mac"], "02:00:00:00:00:42");
    assert_eq!(l["client_id"], "01:02:00:00:00:00:42");
    assert_eq!(l["hostname"], "importedhost");
    assert_eq!(l["expires"], expiry);
    assert_eq!(l["origin_node"], node_id);
    assert_eq!(l["stamp"]["node"], node_id);

    // The table.
    let out = twinmasq(&["leases", &arg]);
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            expiry.to_string().as_str(),
            "02:00:00:00:00:42",
            "198.18.0.150",
            "importedhost",
            "01:02:00:00:00:00:42"
        ],
        "{table}"
    );

    // A standalone server is always the live one.
    let out = twinmasq(&["status", "--check", &arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("live: standalone"),
        "{}",
        text(&out)
    );

    let out = twinmasq(&["failover", "partner-down", &arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failover is not configured"),
        "{}",
        text(&out)
    );

    // Junk gets an error, never a crash.
    assert!(error_of(&raw(&sock, b"bogus\n")).contains("unknown request"));
    assert!(error_of(&raw(&sock, &[b'x'; 300])).contains("longer than 256"));
    assert!(error_of(&raw(&sock, b"\xff\xfe\n")).contains("not UTF-8"));
    assert!(error_of(&raw(&sock, b"\n")).contains("empty request"));
    // A request the client ends by closing its side, without a newline,
    // still counts.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"status").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_reply(&mut s)["node_id"], node_id);

    // Eight idle clients take every slot: a ninth waits until they are cut
    // off after 2 s, then gets its answer.
    let mut idle: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    // Let the server take all eight before the ninth arrives.
    std::thread::sleep(Duration::from_millis(300));
    let asked = std::time::Instant::now();
    assert_eq!(raw(&sock, b"status\n")["node_id"], node_id);
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1200),
        "the ninth client was served after {waited:?}, before a slot was free"
    );
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reply = read_reply(s);
        assert!(
            error_of(&reply).contains("no request line within 2 s"),
            "{reply}"
        );
    }
    // More than a request line's worth of junk: the error still arrives.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[b'y'; 20_000]).unwrap();
    assert!(error_of(&read_reply(&mut s)).contains("longer than 256"));
    assert_eq!(raw(&sock, b"status\n")["node_id"], node_id);

    // SIGTERM: the socket file goes with the server.
    srv.stop();
    assert!(!sock.exists(), "control socket left after SIGTERM");
    let out = twinmasq(&["status", "--check", &arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A live socket of someone else's is neither replaced nor removed; the
    // server runs without one and says so.
    let theirs = UnixListener::bind(&sock).unwrap();
    let inode = std::fs::metadata(&sock).unwrap().ino();
    srv.start();
    assert_eq!(std::fs::metadata(&sock).unwrap().ino(), inode);
    srv.stop();
    assert_eq!(std::fs::metadata(&sock).unwrap().ino(), inode);
    assert!(
        srv.log_text().contains("another server answers there"),
        "{}",
        srv.log_text()
    );
    drop(theirs);
}

/// `status` of the running server at `sock`, as JSON.
fn status_json(sock: &Path) -> Option<serde_json::Value> {
    let out = twinmasq(&[
        "status",
        "--json",
        &format!("--control-socket={}", sock.display()),
    ]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn wait_state(sock: &Path, state: &str) -> serde_json::Value {
    netns::wait_for(
        Duration::from_secs(15),
        &format!("failover state {state} at {}", sock.display()),
        || status_json(sock).filter(|s| s["failover"]["state"] == state),
    )
    .unwrap_or_else(|e| panic!("{e}; last status: {:?}", status_json(sock)))
}

fn check(sock: &Path) -> (Option<i32>, String) {
    let out = twinmasq(&[
        "status",
        "--check",
        &format!("--control-socket={}", sock.display()),
    ]);
    (out.status.code(), stdout(&out))
}

#[test]
fn failover_pair_reports_roles_states_and_partner_down() {
    let Some(lab) = Lab::new("failover_pair_reports_roles_states_and_partner_down") else {
        return;
    };
    let key = lab.dir().join("failover.key");
    let out = twinmasq(&["failover", "gen-key"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&key, &out.stdout).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let timing = ["failover-heartbeat=1", "failover-timeout=3"];

    // Primary: the lab's server, 198.18.0.1.
    let primary_sock = lab.dir().join("primary.sock");
    let mut conf = ServerConf::base()
        .line(format!("control-socket={}", primary_sock.display()))
        .line(format!("failover-key={}", key.display()))
        .line(format!("failover-listen={},6470", netns::SERVER_IP));
    for t in timing {
        conf = conf.line(t);
    }
    let mut primary = lab.start_server_kind(netns::ServerKind::Twinmasq, &conf);

    // Secondary: a second host on the lab's network, 198.18.0.2.
    let host = lab.add_client();
    host.set_addr(std::net::Ipv4Addr::new(198, 18, 0, 2), netns::NETMASK);
    let dir = lab.dir().join("secondary");
    std::fs::create_dir_all(&dir).unwrap();
    let secondary_sock = lab.dir().join("secondary.sock");
    let mut text_conf = format!(
        "interface={}\nport=0\nno-resolv\nno-hosts\nno-ping\nlog-dhcp\nuser=root\n\
         control-socket={}\nfailover-key={}\nfailover-master={},6470\n",
        host.ifname,
        secondary_sock.display(),
        key.display(),
        netns::SERVER_IP
    );
    for t in timing {
        text_conf.push_str(t);
        text_conf.push('\n');
    }
    let conf_path = dir.join("dnsmasq.conf");
    std::fs::write(&conf_path, text_conf).unwrap();
    let arg = |flag: &str, name: &str| format!("{flag}={}", dir.join(name).display());
    let args = [
        env!("CARGO_BIN_EXE_twinmasq").to_string(),
        "-k".into(),
        "-C".into(),
        conf_path.display().to_string(),
        arg("--lease-db", "db"),
        arg("--dhcp-leasefile", "leases"),
        arg("--pid-file", "pid"),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = dir.join("server.log");
    let mut secondary = netns::Proc::spawn("secondary", &host.ns, &argv, &log);
    let primary_log = primary.log.clone();
    let logs = || {
        format!(
            "--- primary log:\n{}\n--- secondary log:\n{}",
            std::fs::read_to_string(&primary_log).unwrap_or_default(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };

    // Linked: the primary is live, the secondary is not.
    let s = wait_state(&secondary_sock, "passive");
    let p = wait_state(&primary_sock, "linked");
    let (p_node, s_node) = (&p["node_id"], &s["node_id"]);
    assert_eq!(p["failover"]["role"], "primary", "{p}");
    assert_eq!(p["failover"]["linked"], true, "{p}");
    assert_eq!(&p["failover"]["partner_node"], s_node, "{p}");
    assert_eq!(s["failover"]["role"], "secondary", "{s}");
    assert_eq!(s["failover"]["partner"], "198.18.0.1:6470", "{s}");
    assert_eq!(&s["failover"]["partner_node"], p_node, "{s}");
    assert!(s["failover"]["last_sync_unix_ms"].is_u64(), "{s}");
    let (code, why) = check(&primary_sock);
    assert_eq!(code, Some(0), "{why}\n{}", logs());
    assert_eq!(why.trim(), "live: primary, state linked");
    let (code, why) = check(&secondary_sock);
    assert_eq!(code, Some(1), "{why}\n{}", logs());
    assert_eq!(why.trim(), "not live: secondary, state passive");

    // A linked partner is plainly not down: refused.
    let down = [
        "failover",
        "partner-down",
        &format!("--control-socket={}", secondary_sock.display()),
    ];
    let out = twinmasq(&down);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not down"),
        "{}",
        text(&out)
    );

    // Without its primary the secondary serves: live.
    primary.stop();
    wait_state(&secondary_sock, "active");
    let (code, why) = check(&secondary_sock);
    assert_eq!(code, Some(0), "{why}\n{}", logs());
    assert_eq!(why.trim(), "live: secondary, state active");

    // The operator declares the primary down.
    let mut json_down = down.to_vec();
    json_down.push("--json");
    let out = twinmasq(&json_down);
    assert!(out.status.success(), "{}\n{}", text(&out), logs());
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    let since = reply["partner_down_since_unix_ms"].as_u64().unwrap();
    let share_from = reply["partner_share_from_unix_ms"].as_u64().unwrap();
    // The default MCLT is an hour.
    assert_eq!(share_from - since, 3_600_000, "{reply}");
    let s = wait_state(&secondary_sock, "partner-down");
    assert_eq!(
        s["failover"]["partner_down_since_unix_ms"].as_u64(),
        Some(since)
    );
    let (code, why) = check(&secondary_sock);
    assert_eq!(code, Some(0), "{why}");

    let (_, killed) = secondary.terminate(Duration::from_secs(5));
    assert!(!killed, "the secondary ignored SIGTERM\n{}", logs());
    assert!(!secondary_sock.exists());
}
