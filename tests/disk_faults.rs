//! Disk faults: a full filesystem under the lease database, and a database
//! that is damaged or cannot be read at start.
//!
//! Full disk (namespace test, root): the server's database and lease file
//! live on a small tmpfs the test mounts and fills. While it is full no
//! ACK may leave for a lease that is not stored, the log says why (once,
//! not per packet), and once space returns the server stores and
//! acknowledges again by itself. After a kill -9 and a restart every ACK
//! sent during the whole test is in the database.
//!
//! Damaged database (no lab: the binary runs in a fresh network namespace
//! of its own and stops before it binds anything): exit code 3, a message
//! that says what is wrong and what to do, and the files left as they were.

mod netns;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use netns::{load_generator, read_acks, run, Lab, Proc, Server, ServerConf, NETMASK, SERVER_IP};

const GENERATOR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// A tmpfs mounted on a directory for the length of a test; unmounted
/// when dropped, also while a failed test unwinds.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let dir_s = dir.to_str().expect("utf-8 path");
        run(
            &[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
                dir_s,
            ],
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs on {dir_s}: {e}"));
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes `name` until the filesystem refuses more; returns its size.
    fn fill(&self, name: &str) -> u64 {
        let mut f = std::fs::File::create(self.dir.join(name)).unwrap();
        let block = vec![0x5a_u8; 16 << 10];
        let mut written = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                    break;
                }
            }
        }
        // Whatever the last partial page left: take it too, byte by byte.
        while let Ok(1) = f.write(&[0x5a]) {
            written += 1;
        }
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server killed a moment ago may still hold a file open.
        let _ = run(
            &["umount", "-l", self.dir.to_str().unwrap_or_default()],
            Duration::from_secs(10),
        );
    }
}

/// Runs the generator in `ns` for `clients` new clients (MACs from `seed`);
/// returns its summary line. Its ACKs go to `acks-<seed>.txt` in the lab.
fn generate(lab: &Lab, ns: &str, seed: u32, clients: u32, max_secs: u32) -> String {
    let acks = lab.dir().join(format!("acks-{seed}.txt"));
    let generator = load_generator();
    let log = lab.dir().join(format!("generator-{seed}.log"));
    let (server, bind) = (SERVER_IP.to_string(), GENERATOR_IP.to_string());
    let (seed, clients, max_secs) = (seed.to_string(), clients.to_string(), max_secs.to_string());
    let mut gen = Proc::spawn(
        "dhcp_load",
        ns,
        &[
            generator.to_str().expect("utf-8 path"),
            "--server",
            &server,
            "--bind",
            &bind,
            "--clients",
            &clients,
            "--window",
            "8",
            "--seed",
            &seed,
            "--acks",
            acks.to_str().expect("utf-8 path"),
            "--max-secs",
            &max_secs,
        ],
        &log,
    );
    let limit = Duration::from_secs(max_secs.parse::<u64>().unwrap() + 15);
    let st = gen
        .wait_timeout(limit)
        .unwrap_or_else(|| panic!("the generator ran past {limit:?}"));
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.success(), "generator failed: {st}\n{out}");
    // Every run numbers its transactions from 0: a late reply to this run
    // must find no socket rather than the next run's.
    std::thread::sleep(Duration::from_millis(500));
    out.lines()
        .find(|l| l.starts_with("clients "))
        .unwrap_or_else(|| panic!("no summary from the generator:\n{out}"))
        .to_string()
}

/// The number after `word` in the generator's summary line.
fn field(summary: &str, word: &str) -> u64 {
    let mut it = summary.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next().and_then(|v| v.parse().ok()).unwrap();
        }
    }
    panic!("no `{word}` in `{summary}`")
}

fn assert_all_in_db(srv: &Server<'_>, acks: &BTreeMap<String, Ipv4Addr>) {
    let db = twinmasq::lease::LeaseDb::open(&srv.db, Default::default())
        .expect("open the lease database");
    for (mac, ip) in acks {
        let rec = db
            .get(*ip)
            .unwrap_or_else(|| panic!("{ip} acknowledged to {mac} is not in the database"));
        let hw: Vec<String> = rec.hwaddr.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&hw.join(":"), mac, "{ip}");
        assert_eq!(rec.state, twinmasq_proto::LeaseState::Bound, "{ip}");
    }
}

#[test]
fn full_disk_refuses_leases_then_recovers_without_restart() {
    let Some(lab) = Lab::new("full_disk") else {
        return;
    };
    let disk = Tmpfs::mount(&lab.dir().join("disk"), "6m");
    let conf = ServerConf::base()
        .line("dhcp-range=198.18.0.10,198.18.0.250,255.255.255.0,12h")
        .line("dhcp-lease-max=1000");
    // Started once where the lab puts it, then moved onto the small disk
    // (the log stays off it, so it can say what happens).
    let mut srv = lab.start_server(&conf);
    srv.stop();
    srv.db = disk.dir.join("db");
    srv.leasefile = disk.dir.join("leases");
    srv.start();
    let host = lab.add_client();
    host.set_addr(GENERATOR_IP, NETMASK);

    // With room: every client gets its lease.
    let s = generate(&lab, &host.ns, 1, 20, 10);
    assert_eq!(field(&s, "acked"), 20, "{s}\n{}", srv.log_tail(30));

    // Full: whatever cannot be stored is not acknowledged, and the log
    // says so. A few changes may still fit into pages the database
    // already holds; those are stored, and their ACKs are checked below.
    let mark = srv.log_mark();
    let filler = disk.fill("filler");
    eprintln!("filler: {filler} bytes");
    let s = generate(&lab, &host.ns, 2, 60, 8);
    eprintln!("while full: {s}");
    assert!(
        field(&s, "acked") < 60,
        "every client got an ACK on a full disk: {s}\n{}",
        srv.log_tail(30)
    );
    let (line, _) = srv
        .wait_log(
            mark,
            "cannot write (No space left on device)",
            Duration::from_secs(5),
        )
        .unwrap();
    eprintln!("log: {line}");
    // Once refusing, a new client gets nothing at all.
    let s = generate(&lab, &host.ns, 3, 10, 5);
    eprintln!("still full: {s}");
    assert_eq!(field(&s, "acked"), 0, "{s}\n{}", srv.log_tail(30));
    // Logged once per episode, not once per packet (70 clients, each
    // retrying): the database's line and the flusher's, at most.
    let fault_lines: Vec<String> = srv
        .log_grep(mark, "cannot write")
        .into_iter()
        .filter(|l| l.contains("lease database"))
        .collect();
    assert!(
        (1..=2).contains(&fault_lines.len()),
        "{fault_lines:#?}\n{}",
        srv.log_tail(40)
    );
    assert!(
        fault_lines
            .iter()
            .any(|l| l.contains("until space returns")),
        "{fault_lines:#?}"
    );

    // Space returns: the next clients get leases, no restart.
    let pid = srv.pid();
    std::fs::remove_file(disk.dir.join("filler")).unwrap();
    let s = generate(&lab, &host.ns, 4, 10, 10);
    assert_eq!(field(&s, "acked"), 10, "{s}\n{}", srv.log_tail(60));
    assert_eq!(srv.pid(), pid);
    srv.wait_log(mark, "writable again", Duration::from_secs(1))
        .unwrap();

    // Every ACK of the whole test survives a kill -9 and a restart.
    let all: BTreeMap<String, Ipv4Addr> = (1..=4)
        .flat_map(|seed| read_acks(&lab.dir().join(format!("acks-{seed}.txt"))))
        .collect();
    assert!(all.len() >= 30, "{} ACKs", all.len());
    srv.kill9();
    srv.start();
    srv.wait_leases("every acknowledged lease", |l| {
        all.iter()
            .all(|(mac, ip)| l.iter().any(|x| &x.mac == mac && x.ip == *ip))
    });
    srv.stop();
    assert_all_in_db(&srv, &all);
    eprintln!(
        "{} acknowledged leases checked after the full disk",
        all.len()
    );
    for l in srv.log_grep(mark, "lease database") {
        eprintln!("{l}");
    }
}

// --- a damaged database at start --------------------------------------

/// A directory the server can read as any user, with a config file that
/// serves no DHCP range and no DNS.
fn start_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.path().join("dnsmasq.conf"),
        "port=0\nno-resolv\nno-hosts\nno-ping\n",
    )
    .unwrap();
    dir
}

/// A database with 240 leases, committed one by one as the server does,
/// and their export in the server's lease file.
fn make_db(db: &Path, dir: &Path) {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let text: String = (10..250)
        .map(|n| format!("{expiry} 02:00:00:00:00:{n:02x} 198.18.0.{n} host{n} *\n"))
        .collect();
    let lease_file = dir.join("dnsmasq.leases");
    std::fs::write(&lease_file, &text).unwrap();
    let records = twinmasq::lease::lease_file::parse(&text, &lease_file).unwrap();
    let mut ldb = twinmasq::lease::LeaseDb::open(db, Default::default()).unwrap();
    for (n, rec) in records.into_iter().enumerate() {
        ldb.commit(rec, 1_800_000_000_000 + n as u64).unwrap();
        ldb.durability().flush().unwrap();
    }
    assert_eq!(ldb.len(), 240);
}

/// Starts the server on `dir`'s config and database, in a network
/// namespace of its own (so even a start that went wrong touches no real
/// network), optionally as another user.
fn spawn_server(dir: &Path, db: &Path, as_user: Option<u32>) -> std::process::Child {
    let mut args: Vec<String> = vec!["-n".into()];
    if let Some(uid) = as_user {
        args.extend([
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ]);
    }
    args.extend([
        env!("CARGO_BIN_EXE_twinmasq").into(),
        "-k".into(),
        "-C".into(),
        dir.join("dnsmasq.conf").display().to_string(),
        format!("--lease-db={}", db.display()),
        format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
        format!("--pid-file={}", dir.join("pid").display()),
        format!("--control-socket={}", dir.join("control.sock").display()),
    ]);
    // unshare (without --fork) and setpriv exec what they run: the child's
    // pid is the server's.
    Command::new("unshare")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare")
}

/// Waits up to 20 s for the child to end by itself; kills it otherwise.
fn wait_bounded(mut child: std::process::Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A start that must fail: bounded in time.
fn start_server(dir: &Path, db: &Path, as_user: Option<u32>) -> Output {
    wait_bounded(
        spawn_server(dir, db, as_user),
        "the server did not stop by itself on a bad database",
    )
}

/// A start that must succeed: waits for the pid file, then SIGTERM.
fn start_server_briefly(dir: &Path, db: &Path) -> Output {
    let mut child = spawn_server(dir, db, None);
    let pid_file = dir.join("pid");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the server did not start: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past the first lease-file export: one still running at SIGTERM is
    // not what this test is about.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on the pid of a child this test started and has not
    // reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = wait_bounded(child, "the server ignored SIGTERM");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir` with its bytes and mode, to show nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let meta = std::fs::symlink_metadata(dir).unwrap();
    if meta.is_file() {
        out.insert(
            dir.to_path_buf(),
            (meta.permissions().mode(), std::fs::read(dir).unwrap()),
        );
        return out;
    }
    out.insert(dir.to_path_buf(), (meta.permissions().mode(), vec![]));
    for e in std::fs::read_dir(dir).unwrap() {
        out.extend(snapshot(&e.unwrap().path()));
    }
    out
}

fn assert_refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit status {}\n{err}",
        out.status
    );
    for n in needles {
        assert!(err.contains(n), "no `{n}` in the message:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    eprintln!("refused as expected:\n{err}");
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// These tests run the server in a namespace of its own: root only. With
/// `CI` set a missing root fails the test instead of skipping it.
fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs root (CI is set, so this is a failure)"
    );
    eprintln!("SKIPPED {test}: not root");
    false
}

#[test]
fn corrupt_database_stops_the_start_with_exit_code_3() {
    if !need_root("corrupt_database") {
        return;
    }
    let dir = start_dir();
    let db = dir.path().join("db");
    make_db(&db, dir.path());
    // Bytes in the middle of sled's data file overwritten.
    let file = db.join("db");
    let mut data = std::fs::read(&file).unwrap();
    let mid = data.len() / 2;
    data[mid - 200..mid + 200].fill(0xa5);
    std::fs::write(&file, &data).unwrap();
    let lease_file = dir.path().join("dnsmasq.leases");
    let export = std::fs::read(&lease_file).unwrap();

    // sled itself reads up to the damage and calls the rest unwritten (it
    // rewrites its files as it opens them, so those cannot be kept as they
    // were); the server notices the lost leases and refuses, every time,
    // and the export the advice points to stays as it was.
    for _ in 0..2 {
        let out = start_server(dir.path(), &db, None);
        assert_refused(
            &out,
            &[
                &format!("lease database {} is corrupt", db.display()),
                "move it aside",
                &format!("imports {}", lease_file.display()),
            ],
        );
        assert_eq!(std::fs::read(&lease_file).unwrap(), export);
        assert!(file.exists(), "the database file is gone");
        assert!(!dir.path().join("pid").exists());
    }

    // The advice works: moved aside, the next start imports every lease.
    std::fs::rename(&db, dir.path().join("db.broken")).unwrap();
    let out = start_server_briefly(dir.path(), &db);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imported 240 leases"), "{err}");
}

#[test]
fn unreadable_database_stops_the_start_with_exit_code_3() {
    if !need_root("unreadable_database") {
        return;
    }
    let dir = start_dir();
    let db = dir.path().join("db");
    make_db(&db, dir.path());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = snapshot(&db);

    // As nobody, who may not enter root's 0700 directory.
    let out = start_server(dir.path(), &db, Some(65534));
    assert_refused(
        &out,
        &[
            &format!("lease database {} cannot be opened", db.display()),
            "uid 65534",
            "owner or mode",
        ],
    );
    assert_eq!(snapshot(&db), before, "the database was changed");
}

#[test]
fn file_in_place_of_the_database_stops_the_start_with_exit_code_3() {
    if !need_root("file_in_place_of_the_database") {
        return;
    }
    let dir = start_dir();
    let db = dir.path().join("db");
    std::fs::write(&db, "not a database\n").unwrap();
    let before = snapshot(&db);

    let out = start_server(dir.path(), &db, None);
    assert_refused(
        &out,
        &[
            &format!("lease database {} is a file, not a directory", db.display()),
            "move the file aside",
        ],
    );
    assert_eq!(snapshot(&db), before, "the file was changed");
}
