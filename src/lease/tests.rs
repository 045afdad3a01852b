use super::*;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use twinmasq_proto::Expiry;

fn ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n)
}

fn mac(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    vec![0x52, 0x54, b[0], b[1], b[2], b[3]]
}

fn lease(ip_n: u32, client_n: u32, host: Option<&str>, expires: u64) -> LeaseRecord {
    let hw = mac(client_n);
    LeaseRecord {
        ip: ip(ip_n),
        state: LeaseState::Bound,
        client: ClientKey::from_hwaddr(1, &hw),
        htype: 1,
        hwaddr: hw,
        client_id: None,
        hostname: host.map(str::to_string),
        expires: Expiry::At(expires),
        stamp: Stamp::default(),
    }
}

fn client(n: u32) -> ClientKey {
    ClientKey::from_hwaddr(1, &mac(n))
}

/// sled releases its file lock from background threads some time after the
/// last handle drops (its own test suite blocks on the lock for this), so a
/// reopen within one process waits for it.
fn open(dir: &Path) -> LeaseDb {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match LeaseDb::open(dir, DbOptions::default()) {
            Err(LeaseError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other.unwrap(),
        }
    }
}

#[test]
fn commit_then_get_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    assert!(db.is_empty() && db.node_id() != 0);
    let mut feed = db.subscribe();

    let stored = db
        .commit(lease(1, 1, Some("Laptop"), 5_000), 1_000_000)
        .unwrap();
    assert_eq!(stored.stamp.node, db.node_id());
    assert_eq!(stored.stamp.wall_ms, 1_000_000);
    assert_eq!(db.get(ip(1)).as_ref(), Some(&stored));
    assert_eq!(db.by_client(&client(1)).as_ref(), Some(&stored));
    assert_eq!(db.by_hostname("laptop").as_ref(), Some(&stored));
    assert_eq!(db.by_hostname("LAPTOP").as_ref(), Some(&stored));
    assert_eq!(db.by_hostname("laptop2"), None);
    assert_eq!(db.by_client(&client(2)), None);
    assert_eq!(
        (db.len(), db.bound_count(), db.next_expiry()),
        (1, 1, Some(5_000))
    );
    assert_eq!(feed.try_recv().unwrap(), stored);

    let mut released = stored.clone();
    released.state = LeaseState::Released;
    let released = db.commit(released, 1_000_001).unwrap();
    assert!(released.stamp > stored.stamp);
    assert_eq!(
        db.by_hostname("laptop"),
        None,
        "only bound leases carry names"
    );
    assert_eq!(
        db.by_client(&client(1)).as_ref(),
        Some(&released),
        "any state"
    );
    assert_eq!((db.len(), db.bound_count(), db.next_expiry()), (1, 0, None));
    assert_eq!(feed.try_recv().unwrap(), released);
    assert_eq!(db.iter().count(), 1);
}

#[test]
fn commit_batch_stores_all_with_rising_stamps_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = open(dir.path());
        let recs = (1..=3)
            .map(|n| lease(n, n, Some("h"), 2_000_000_000))
            .collect();
        assert_eq!(db.commit_batch(recs, 5_000).unwrap(), 3);
        let stamps: Vec<_> = (1..=3).map(|n| db.get(ip(n)).unwrap().stamp).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        assert_eq!(db.generation(), 3);
        db.durability().flush().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(db.len(), 3);
    assert_eq!(db.by_client(&client(2)).map(|r| r.ip), Some(ip(2)));
}

#[test]
fn iter_yields_records_in_address_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    for n in [9u32, 3, 250, 4, 77] {
        db.commit(lease(n, n, None, 2_000_000_000), 1_000).unwrap();
    }
    let ips: Vec<Ipv4Addr> = db.iter().map(|r| r.ip).collect();
    assert_eq!(ips, [3, 4, 9, 77, 250].map(ip));
}

#[test]
fn client_index_follows_ip_moving_between_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let older = db.commit(lease(1, 1, None, 9_000), 1_000).unwrap();
    let newer = db.commit(lease(2, 1, None, 9_000), 2_000).unwrap();
    assert_eq!(db.by_client(&client(1)).unwrap().ip, newer.ip);

    // Address 2 now belongs to client 2: client 1 falls back to its older
    // record, not to nothing and not to a record naming someone else.
    db.commit(lease(2, 2, None, 9_000), 3_000).unwrap();
    assert_eq!(db.by_client(&client(1)).unwrap(), older);
    assert_eq!(db.by_client(&client(2)).unwrap().ip, ip(2));

    db.commit(lease(1, 3, None, 9_000), 4_000).unwrap();
    assert_eq!(db.by_client(&client(1)), None);

    // A fresh commit of an old address makes it that client's newest.
    db.commit(lease(3, 2, None, 9_000), 5_000).unwrap();
    db.commit(lease(2, 2, None, 9_000), 6_000).unwrap();
    assert_eq!(db.by_client(&client(2)).unwrap().ip, ip(2));

    // Client ids and hardware addresses are separate keys.
    let mut with_id = lease(4, 4, None, 9_000);
    with_id.client = ClientKey::from_client_id(&[1, 2, 3]);
    with_id.client_id = Some(vec![1, 2, 3]);
    db.commit(with_id, 7_000).unwrap();
    assert_eq!(
        db.by_client(&ClientKey::from_client_id(&[1, 2, 3]))
            .unwrap()
            .ip,
        ip(4)
    );
    assert_eq!(db.by_client(&client(4)), None);
}

#[test]
fn hostname_index_follows_renames_and_states() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    db.commit(lease(1, 1, Some("alpha"), 9_000), 1_000).unwrap();
    db.commit(lease(1, 1, Some("Beta"), 9_000), 2_000).unwrap();
    assert_eq!(db.by_hostname("alpha"), None);
    assert_eq!(db.by_hostname("beta").unwrap().ip, ip(1));

    db.commit(lease(1, 1, None, 9_000), 3_000).unwrap();
    assert_eq!(db.by_hostname("beta"), None);

    // Two bound leases claiming one name: the newer answers, and when it
    // goes, the older one answers again.
    db.commit(lease(2, 2, Some("gamma"), 9_000), 4_000).unwrap();
    db.commit(lease(3, 3, Some("GAMMA"), 9_000), 5_000).unwrap();
    assert_eq!(db.by_hostname("gamma").unwrap().ip, ip(3));
    let mut declined = lease(3, 3, Some("GAMMA"), 9_000);
    declined.state = LeaseState::Declined;
    db.commit(declined, 6_000).unwrap();
    assert_eq!(db.by_hostname("Gamma").unwrap().ip, ip(2));
}

#[test]
fn clock_stays_monotonic_when_wall_clock_goes_back_and_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = Stamp::default();
    {
        let mut db = open(dir.path());
        for now in [10_000, 10_000, 9_000, 20_000, 5_000] {
            let s = db.commit(lease(1, 1, None, 99), now).unwrap().stamp;
            assert!(s > last, "{s:?} after {last:?}");
            last = s;
        }
        assert_eq!((last.wall_ms, last.counter), (20_000, 1));
    }
    let node = {
        let mut db = open(dir.path());
        assert_eq!(db.last_stamp(), last);
        let s = db.commit(lease(2, 2, None, 99), 1_000).unwrap().stamp;
        assert!(s > last, "after reopen: {s:?} after {last:?}");
        last = s;
        db.node_id()
    };
    let mut db = open(dir.path());
    assert_eq!(db.node_id(), node, "node id is kept");
    assert!(db.commit(lease(3, 3, None, 99), 0).unwrap().stamp > last);
}

#[test]
fn observed_remote_stamp_is_exceeded_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Stamp {
        wall_ms: 50_000,
        counter: 7,
        node: 1,
    };
    {
        let mut db = open(dir.path());
        db.observe(remote, 40_000).unwrap();
        db.observe(Stamp::default(), 40_000).unwrap();
        assert_eq!(db.last_stamp(), remote);
    }
    let mut db = open(dir.path());
    assert!(db.last_stamp() >= remote);
    // The wall clock is behind the stamp, within the bound.
    assert!(db.commit(lease(1, 1, None, 99), 40_000).unwrap().stamp > remote);
}

#[test]
fn merge_in_keeps_the_newer_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let mut feed = db.subscribe();
    let local = db.commit(lease(1, 1, Some("mine"), 9_000), 10_000).unwrap();
    feed.try_recv().unwrap();

    let mut older = lease(1, 2, Some("theirs"), 9_000);
    older.stamp = Stamp {
        wall_ms: 9_000,
        counter: 0,
        node: 5,
    };
    assert_eq!(db.merge_in(older, 10_000).unwrap(), None);
    assert_eq!(
        db.merge_in(local.clone(), 10_000).unwrap(),
        None,
        "equal is no change"
    );
    assert!(feed.try_recv().is_err());

    let mut newer = lease(1, 2, Some("theirs"), 9_000);
    newer.stamp = Stamp {
        wall_ms: 11_000,
        counter: 3,
        node: 5,
    };
    assert_eq!(
        db.merge_in(newer.clone(), 10_000).unwrap(),
        Some(newer.clone())
    );
    assert_eq!(
        db.get(ip(1)).as_ref(),
        Some(&newer),
        "stored as-is, stamp kept"
    );
    assert_eq!(feed.try_recv().unwrap(), newer);
    assert_eq!(db.by_client(&client(1)), None);
    assert_eq!(db.by_client(&client(2)).as_ref(), Some(&newer));
    assert_eq!(db.by_hostname("mine"), None);
    assert_eq!(db.by_hostname("theirs").as_ref(), Some(&newer));
    assert_eq!(
        db.merge_in(newer.clone(), 10_000).unwrap(),
        None,
        "idempotent"
    );

    // A local change after the merge must beat the merged record.
    assert!(db.commit(lease(1, 1, None, 9_000), 10_500).unwrap().stamp > newer.stamp);

    let mut fresh = lease(2, 3, None, 9_000);
    fresh.stamp = Stamp {
        wall_ms: 1,
        counter: 0,
        node: 5,
    };
    assert!(
        db.merge_in(fresh, 10_500).unwrap().is_some(),
        "unknown address"
    );
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.get(ip(2)).unwrap().stamp.wall_ms, 1);
}

#[test]
fn expire_due_touches_only_due_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    db.commit(lease(1, 1, Some("a"), 100), 1).unwrap();
    db.commit(lease(2, 2, Some("b"), 200), 1).unwrap();
    db.commit(lease(3, 3, Some("c"), 300), 1).unwrap();
    let mut never = lease(4, 4, None, 0);
    never.expires = Expiry::Never;
    db.commit(never, 1).unwrap();
    let mut declined = lease(5, 5, None, 150);
    declined.state = LeaseState::Declined;
    db.commit(declined, 1).unwrap();
    let mut released = lease(6, 6, None, 50);
    released.state = LeaseState::Released;
    db.commit(released, 1).unwrap();
    assert_eq!((db.bound_count(), db.next_expiry()), (4, Some(100)));

    assert!(db.expire_due(99, 2).unwrap().is_empty());
    let gone = db.expire_due(200, 3).unwrap();
    let mut ips: Vec<Ipv4Addr> = gone.iter().map(|r| r.ip).collect();
    ips.sort();
    assert_eq!(ips, [ip(1), ip(2), ip(5)]);
    assert!(gone.iter().all(|r| r.state == LeaseState::Expired));
    assert_eq!(db.get(ip(3)).unwrap().state, LeaseState::Bound);
    assert_eq!(db.get(ip(6)).unwrap().state, LeaseState::Released);
    assert_eq!((db.bound_count(), db.next_expiry()), (2, Some(300)));
    assert_eq!(db.by_hostname("a"), None);
    assert_eq!(db.by_hostname("c").unwrap().ip, ip(3));
    assert!(db.expire_due(299, 4).unwrap().is_empty());
    assert_eq!(db.expire_due(u64::MAX, 5).unwrap().len(), 1);
    assert_eq!((db.bound_count(), db.next_expiry()), (1, None));
}

fn raw_sled(dir: &Path) -> sled::Db {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => return other.unwrap(),
        }
    }
}

/// The open error once the lock is free (see `open`).
fn reopen_err(dir: &Path) -> LeaseError {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match LeaseDb::open(dir, DbOptions::default()) {
            Err(LeaseError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return e,
            Ok(_) => panic!("opened a corrupt database"),
        }
    }
}

#[test]
fn corrupt_record_fails_open_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = open(dir.path());
        db.commit(lease(1, 1, None, 9), 1).unwrap();
        db.commit(lease(7, 7, None, 9), 1).unwrap();
    }
    {
        let raw = raw_sled(dir.path());
        let t = raw.open_tree(LEASES_TREE).unwrap();
        t.insert(ip(7).octets(), &[0xde, 0xad, 0xbe, 0xef][..])
            .unwrap();
        raw.flush().unwrap();
    }
    let err = reopen_err(dir.path());
    assert!(
        matches!(&err, LeaseError::Corrupt { key, .. } if key == "198.18.0.7"),
        "{err}"
    );
    assert!(err.to_string().contains("198.18.0.7"), "{err}");

    {
        let raw = raw_sled(dir.path());
        let t = raw.open_tree(LEASES_TREE).unwrap();
        // A valid record filed under another address is not ours either.
        let good = t.get(ip(1).octets()).unwrap().unwrap();
        t.insert(ip(7).octets(), good).unwrap();
        raw.flush().unwrap();
    }
    let err = reopen_err(dir.path());
    assert!(err.to_string().contains("198.18.0.7"), "{err}");

    {
        let raw = raw_sled(dir.path());
        let t = raw.open_tree(LEASES_TREE).unwrap();
        t.remove(ip(7).octets()).unwrap();
        t.insert(b"junk!", &b"x"[..]).unwrap();
        raw.flush().unwrap();
    }
    let err = reopen_err(dir.path());
    assert!(err.to_string().contains("6a756e6b21"), "{err}");
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("leases.db");
    let _held = open(&db_dir);
    let err = LeaseDb::open(&db_dir, DbOptions::default()).err().unwrap();
    assert!(matches!(err, LeaseError::Open { .. }));
    assert!(
        err.to_string().contains(&*db_dir.to_string_lossy()),
        "{err}"
    );

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err = LeaseDb::open(&file, DbOptions::default()).err().unwrap();
    assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
}

#[test]
fn durability_handle_is_send_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Durability>();
    fn send<T: Send>() {}
    send::<LeaseDb>();
}

/// Runs this test binary again to execute one ignored test in a child
/// process, passing `env` to it; returns the child's stdout.
fn run_child(test: &str, env: &[(&str, &Path)]) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        test,
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os("TWINMASQ_LEASE_CHILD_DIR").map(PathBuf::from)
}

#[test]
#[ignore = "run by flushed_commits_survive_a_crash in a child process"]
fn child_commit_flush_abort() {
    let Some(dir) = child_dir() else { return };
    let mut db = open(&dir);
    for n in 0..100 {
        db.commit(lease(n, n, Some("crash"), 9_999), 1_000 + u64::from(n))
            .unwrap();
    }
    db.durability().flush().unwrap();
    // No destructors, no sled shutdown: as close to pulling the plug as a
    // test can get without a VM.
    std::process::abort();
}

#[test]
fn flushed_commits_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _) = run_child(
        "lease::tests::child_commit_flush_abort",
        &[("TWINMASQ_LEASE_CHILD_DIR", dir.path())],
    );
    assert!(!status.success(), "the child is meant to abort");
    let mut db = open(dir.path());
    assert_eq!(db.len(), 100);
    assert_eq!(db.bound_count(), 100);
    assert_eq!(db.get(ip(99)).unwrap().stamp.wall_ms, 1_099);
    assert!(db.commit(lease(1, 1, None, 1), 0).unwrap().stamp.wall_ms >= 1_099);
}

#[test]
fn commit_then_flush_then_reopen_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let stored = {
        let mut db = open(dir.path());
        let flusher = db.durability();
        let s = db.commit(lease(9, 9, Some("kept"), 77), 5).unwrap();
        std::thread::spawn(move || flusher.flush())
            .join()
            .unwrap()
            .unwrap();
        s
    };
    let db = open(dir.path());
    assert_eq!(db.get(ip(9)).as_ref(), Some(&stored));
    assert_eq!(db.by_hostname("kept").as_ref(), Some(&stored));
}

fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn big_lease(n: u32) -> LeaseRecord {
    let hw = mac(n);
    let mut id = vec![1];
    id.extend_from_slice(&hw);
    LeaseRecord {
        ip: ip(n),
        state: LeaseState::Bound,
        client: ClientKey::from_client_id(&id),
        htype: 1,
        hwaddr: hw,
        client_id: Some(id),
        hostname: Some(format!("host-{n:06}")),
        expires: Expiry::At(1_700_000_000 + u64::from(n)),
        stamp: Stamp::default(),
    }
}

const SCALE: u32 = 100_000;

#[test]
#[ignore = "run by measure_100k_leases in a child process"]
fn child_open_and_report_rss() {
    let Some(dir) = child_dir() else { return };
    let before = vm_rss_kib().unwrap_or(0);
    let t = Instant::now();
    let mut db = open(&dir);
    let open_ms = t.elapsed().as_millis();
    let after = vm_rss_kib().unwrap_or(0);
    assert_eq!(db.len(), SCALE as usize);
    assert!(db.by_hostname("HOST-054321").is_some());
    // A day of renewals: every lease rewritten once, so sled has paged in
    // and (by its own rules) evicted every node.
    for n in 0..SCALE {
        let mut r = big_lease(n);
        r.expires = Expiry::At(1_800_000_000 + u64::from(n));
        db.commit(r, 3_000_000).unwrap();
    }
    db.durability().flush().unwrap();
    let churned = vm_rss_kib().unwrap_or(0);
    println!(
        "RSS: {before} KiB before open, {after} KiB after opening {SCALE} leases \
         (+{} KiB, open took {open_ms} ms), {churned} KiB after renewing all of them",
        after.saturating_sub(before)
    );
    // The whole server's budget with 100k leases is 64 MiB; the database
    // alone (records, indexes, sled) must leave room for the rest.
    assert!(churned > 0, "VmRSS not readable");
    assert!(
        churned < 60 * 1024,
        "lease database uses {churned} KiB with {SCALE} leases"
    );
}

/// Prints commit and flush figures (run with `--nocapture`; speed is not
/// asserted, the benchmark measures that) and checks, in a fresh child
/// process, that 100k leases fit the memory budget.
#[test]
fn measure_100k_leases() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = open(dir.path());
        let t = Instant::now();
        for n in 0..SCALE {
            db.commit(big_lease(n), 1_000_000 + u64::from(n)).unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        let flusher = db.durability();
        let t = Instant::now();
        flusher.flush().unwrap();
        let big_flush = t.elapsed();
        let mut small = Vec::new();
        for round in 0..20u32 {
            for n in 0..64 {
                let mut r = big_lease(round * 64 + n);
                r.expires = Expiry::At(1_800_000_000);
                db.commit(r, 2_000_000).unwrap();
            }
            let t = Instant::now();
            flusher.flush().unwrap();
            small.push(t.elapsed());
        }
        small.sort();
        assert_eq!(db.bound_count(), SCALE as usize);
        println!(
            "commit: {SCALE} in {secs:.2} s = {:.0} commits/s; flush after them: {:?}; \
             flush of 64 commits: median {:?}, max {:?}",
            f64::from(SCALE) / secs,
            big_flush,
            small[small.len() / 2],
            small[small.len() - 1],
        );
    }
    let (status, out) = run_child(
        "lease::tests::child_open_and_report_rss",
        &[("TWINMASQ_LEASE_CHILD_DIR", dir.path())],
    );
    assert!(status.success(), "{out}");
    // libtest prints the test's name on the same line as its first output.
    let rss = out.find("RSS:").map_or("RSS: not reported", |i| {
        out[i..].lines().next().unwrap_or("")
    });
    println!("{rss}");
}

#[derive(Debug, Clone)]
enum Op {
    Commit {
        ip: u32,
        client: u32,
        host: Option<u8>,
        state: u8,
        expires: Option<u64>,
        now_ms: u64,
    },
    Merge {
        ip: u32,
        client: u32,
        state: u8,
        wall_ms: u64,
        node: u32,
    },
    Expire {
        now_secs: u64,
    },
    Reopen,
}

const HOSTS: [&str; 3] = ["alpha", "Beta", "ALPHA"];

fn state_of(n: u8) -> LeaseState {
    match n % 4 {
        0 => LeaseState::Bound,
        1 => LeaseState::Released,
        2 => LeaseState::Expired,
        _ => LeaseState::Declined,
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..6u32, 0..4u32, proptest::option::of(0..3u8), 0..4u8,
              proptest::option::of(0..20u64), 0..5_000u64)
            .prop_map(|(ip, client, host, state, expires, now_ms)| Op::Commit {
                ip, client, host, state, expires, now_ms
            }),
        2 => (0..6u32, 0..4u32, 0..4u8, 0..10_000u64, 1..3u32)
            .prop_map(|(ip, client, state, wall_ms, node)| Op::Merge {
                ip, client, state, wall_ms, node
            }),
        2 => (0..20u64).prop_map(|now_secs| Op::Expire { now_secs }),
        1 => Just(Op::Reopen),
    ]
}

fn check_against_model(db: &LeaseDb, model: &BTreeMap<Ipv4Addr, LeaseRecord>) {
    assert_eq!(db.len(), model.len());
    let bound = model
        .values()
        .filter(|r| r.state == LeaseState::Bound)
        .count();
    assert_eq!(db.bound_count(), bound);
    let next = model.values().filter_map(index::expiry_of).min();
    assert_eq!(db.next_expiry(), next);
    for (ip, rec) in model {
        assert_eq!(db.get(*ip), Some(rec.clone()));
    }
    for c in 0..4 {
        let want = model
            .values()
            .filter(|r| r.client == client(c))
            .max_by_key(|r| r.stamp);
        assert_eq!(db.by_client(&client(c)), want.cloned(), "client {c}");
    }
    for name in HOSTS.iter().chain(&["beta", "gamma"]) {
        let want = model
            .values()
            .filter(|r| r.state == LeaseState::Bound)
            .filter(|r| {
                r.hostname
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(name))
            })
            .max_by_key(|r| r.stamp);
        assert_eq!(db.by_hostname(name), want.cloned(), "host {name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn matches_a_simple_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Some(open(dir.path()));
        let mut model: BTreeMap<Ipv4Addr, LeaseRecord> = BTreeMap::new();
        let mut last = Stamp::default();
        for op in ops {
            let d = db.as_mut().unwrap();
            match op {
                Op::Commit { ip: i, client: c, host, state, expires, now_ms } => {
                    let mut r = lease(i, c, host.map(|h| HOSTS[usize::from(h)]), 0);
                    r.state = state_of(state);
                    r.expires = expires.map_or(Expiry::Never, Expiry::At);
                    let s = d.commit(r.clone(), now_ms).unwrap();
                    prop_assert!(s.stamp > last);
                    last = s.stamp;
                    r.stamp = s.stamp;
                    prop_assert_eq!(&s, &r);
                    model.insert(r.ip, r);
                }
                Op::Merge { ip: i, client: c, state, wall_ms, node } => {
                    let mut r = lease(i, c, Some("beta"), 10);
                    r.state = state_of(state);
                    r.stamp = Stamp { wall_ms, counter: 0, node };
                    let wins = merge::replaces(&r, model.get(&r.ip));
                    let got = d.merge_in(r.clone(), 5_000).unwrap();
                    prop_assert_eq!(got.is_some(), wins);
                    if wins {
                        last = last.max(r.stamp);
                        model.insert(r.ip, r);
                    }
                }
                Op::Expire { now_secs } => {
                    let mut want: Vec<Ipv4Addr> = model
                        .values()
                        .filter(|r| index::expiry_of(r).is_some_and(|t| t <= now_secs))
                        .map(|r| r.ip)
                        .collect();
                    let got = d.expire_due(now_secs, 1).unwrap();
                    let mut got_ips: Vec<Ipv4Addr> = got.iter().map(|r| r.ip).collect();
                    got_ips.sort();
                    want.sort();
                    prop_assert_eq!(got_ips, want);
                    for r in got {
                        // An expiry keeps the stamp of the lease it ends.
                        let mut m = model[&r.ip].clone();
                        m.state = LeaseState::Expired;
                        prop_assert_eq!(&m, &r);
                        model.insert(r.ip, r);
                    }
                }
                Op::Reopen => {
                    // sled holds a lock until the old handle is gone.
                    drop(db.take());
                    db = Some(open(dir.path()));
                }
            }
            check_against_model(db.as_ref().unwrap(), &model);
        }
    }
}

#[test]
fn outbox_keeps_own_changes_only_and_only_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    db.commit(lease(1, 1, None, 100), 1).unwrap();
    assert!(db.take_outbox().is_empty(), "off until enabled");
    db.enable_outbox();
    let a = db.commit(lease(2, 2, None, 100), 2).unwrap();
    db.commit_batch(vec![lease(3, 3, None, 100)], 3).unwrap();
    let mut remote = lease(4, 4, None, 100);
    remote.stamp = Stamp {
        wall_ms: 10,
        counter: 0,
        node: db.node_id().wrapping_add(1).max(1),
    };
    db.merge_in(remote, 10).unwrap();
    let out = db.take_outbox();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], a);
    assert_eq!(out[1].ip, ip(3));
    assert!(db.take_outbox().is_empty());
}

#[test]
fn merge_batch_keeps_the_newest_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let node = {
        let mut db = open(dir.path());
        let mine = db.commit(lease(1, 1, None, 100), 50).unwrap();
        let other = db.node_id().wrapping_add(1).max(1);
        let at = |ip_n, client_n, wall_ms| LeaseRecord {
            stamp: Stamp {
                wall_ms,
                counter: 0,
                node: other,
            },
            ..lease(ip_n, client_n, None, 100)
        };
        // Older than ours for ip 1; two versions of ip 2, newest last-but-one.
        let stored = db
            .merge_batch(vec![at(1, 9, 10), at(2, 5, 70), at(2, 6, 60)], 100)
            .unwrap()
            .stored;
        assert_eq!(stored.len(), 1);
        assert_eq!(db.get(ip(1)).unwrap(), mine);
        assert_eq!(db.get(ip(2)).unwrap().client, client(5));
        assert!(
            db.last_stamp().wall_ms >= 70,
            "the clock moved past the merge"
        );
        db.durability().flush().unwrap();
        db.node_id()
    };
    let db = open(dir.path());
    assert_eq!(db.node_id(), node);
    assert_eq!(db.get(ip(2)).unwrap().client, client(5));
    assert_eq!(db.by_client(&client(5)).unwrap().ip, ip(2));
}

/// A big merge is stored as a page and spread into per-address keys later;
/// whatever the point a restart comes at, the table reads the same, and a
/// change made after the merge stands over the page's older record.
#[test]
fn big_merges_go_to_pages_and_spread_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let other = |db: &LeaseDb| db.node_id().wrapping_add(1).max(1);
    let n = 300u32;
    let expected = {
        let mut db = open(dir.path());
        let node = other(&db);
        let recs: Vec<LeaseRecord> = (1..=n)
            .map(|i| LeaseRecord {
                stamp: Stamp {
                    wall_ms: 1_000 + u64::from(i),
                    counter: 0,
                    node,
                },
                ..lease(i, i, None, 5_000)
            })
            .collect();
        assert_eq!(
            db.merge_batch(recs, 10_000).unwrap().stored.len(),
            n as usize
        );
        // One page, not 300 keys.
        let store = db.store.as_ref().unwrap();
        assert_eq!(store.pages.len(), 1);
        assert_eq!(store.leases.len(), 0);
        // A change after the merge, to an address the page holds.
        db.commit(lease(7, 77, None, 9_000), 10_000).unwrap();
        db.durability().flush().unwrap();
        db.iter().collect::<Vec<_>>()
    };
    assert_eq!(expected.len(), n as usize);
    assert_eq!(expected[6].client, client(77));

    // Restart with the page unspread: the same table.
    let mut db = open(dir.path());
    assert_eq!(db.iter().collect::<Vec<_>>(), expected);
    // Spread part of it, restart: the same.
    assert_eq!(db.spread_pages(100).unwrap(), 100);
    drop(db);
    let mut db = open(dir.path());
    assert_eq!(db.iter().collect::<Vec<_>>(), expected);
    // Spread all; the page goes only after a flush has covered the keys.
    while db.spread_pages(128).unwrap() > 0 {}
    assert_eq!(db.store.as_ref().unwrap().pages.len(), 1);
    db.durability().flush().unwrap();
    db.spread_pages(128).unwrap();
    let store = db.store.as_ref().unwrap();
    assert_eq!(store.pages.len(), 0);
    assert_eq!(store.leases.len(), n as usize);
    db.durability().flush().unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.iter().collect::<Vec<_>>(), expected);
    assert_eq!(db.get(ip(7)).unwrap().client, client(77));
}

#[test]
fn a_damaged_page_fails_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let raw = raw_sled(dir.path());
        let page = super::pages::pack([&b"not a record"[..]].into_iter());
        raw.open_tree(PAGES_TREE)
            .unwrap()
            .insert(super::pages::key(4), page)
            .unwrap();
        raw.flush().unwrap();
    }
    let e = reopen_err(dir.path());
    assert!(e.to_string().contains("page 4"), "{e}");
}

/// Review §5: the wall clock of these tests, and the bound every stamp must
/// stay within (the default `failover-max-skew`).
const NOW_MS: u64 = 1_800_000_000_000;
const DAY_MS: u64 = 86_400_000;
const SKEW_MS: u64 = 30_000;

fn partner_record(ip: Ipv4Addr, host: Option<&str>, stamp: Stamp) -> LeaseRecord {
    LeaseRecord {
        ip,
        stamp,
        hostname: host.map(str::to_string),
        ..lease(1, 1, None, NOW_MS / 1000 + 3_600)
    }
}

/// Review §5 steps 1-3: a record stamped a day ahead is refused, so local
/// commits an hour apart keep stamps near their own wall clock.
#[test]
fn a_record_stamped_a_day_ahead_is_refused_and_the_clock_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let ahead = partner_record(
        ip(5),
        None,
        Stamp {
            wall_ms: NOW_MS + DAY_MS,
            counter: 0,
            node: 7,
        },
    );
    let merged = db.merge_in(ahead.clone(), NOW_MS);
    assert!(
        matches!(
            merged,
            Err(LeaseError::Rejected {
                reason: Reject::Stamp,
                ..
            })
        ),
        "a stamp a day ahead was not refused: {merged:?}"
    );
    let batch = db.merge_batch(vec![ahead.clone()], NOW_MS).unwrap();
    assert_eq!(batch.stored, []);
    assert_eq!(batch.rejected, [(ip(5), Reject::Stamp)]);
    db.observe(ahead.stamp, NOW_MS).unwrap();
    assert_eq!(db.get(ip(5)), None);
    let mut last = Stamp::default();
    for now in [NOW_MS, NOW_MS + 3_600_000] {
        let s = db.commit(lease(6, 6, None, 99), now).unwrap().stamp;
        assert!(
            s.wall_ms <= now + SKEW_MS,
            "stamp {s:?} for a commit at {now} is beyond the bound"
        );
        assert!(s > last);
        last = s;
    }
    assert_eq!(db.clock_resets(), 0);
}

/// Review §5 steps 4-5: a record stamped at the end of time is refused,
/// and the clock keeps issuing stamps above everything stored.
#[test]
fn a_record_stamped_at_the_end_of_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    let dns = Ipv4Addr::new(8, 8, 8, 8);
    let end = Stamp {
        wall_ms: u64::MAX,
        counter: u32::MAX,
        node: 7,
    };
    let merged = db.merge_in(partner_record(dns, None, end), NOW_MS);
    assert!(
        matches!(
            merged,
            Err(LeaseError::Rejected {
                reason: Reject::Stamp,
                ..
            })
        ),
        "the end-of-time stamp was not refused: {merged:?}"
    );
    assert_eq!(db.get(dns), None);
    let s = db.commit(lease(6, 6, None, 99), NOW_MS).unwrap().stamp;
    assert!(s.wall_ms <= NOW_MS + SKEW_MS, "{s:?}");
    // A later change of the address wins over what the partner holds.
    let mine = db.commit(partner_record(dns, None, s), NOW_MS).unwrap();
    assert!(mine.stamp > s);
}

/// Review §6: a partner's record for an address outside every range, with
/// a hostname carrying shell metacharacters and a newline, is not stored;
/// each rule's refusal is reported with its reason.
#[test]
fn merge_batch_drops_a_record_outside_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    db.set_admission(Admission::default().serving([(ip(1), ip(99))]));
    let at = |counter| Stamp {
        wall_ms: NOW_MS,
        counter,
        node: 7,
    };
    let bad = partner_record(Ipv4Addr::new(8, 8, 8, 8), Some("x; reboot\n-rf"), at(0));
    let good = partner_record(ip(9), Some("laptop"), at(1));
    let shell = partner_record(ip(10), Some("x; reboot\n-rf"), at(2));
    let dash = partner_record(ip(11), Some("-rf"), at(3));
    let long_hw = LeaseRecord {
        hwaddr: vec![1; 17],
        ..partner_record(ip(12), None, at(4))
    };
    let long_id = LeaseRecord {
        client_id: Some(vec![1; 256]),
        ..partner_record(ip(13), None, at(5))
    };
    let forever = LeaseRecord {
        expires: Expiry::At(u64::MAX / 500),
        ..partner_record(ip(14), None, at(6))
    };
    let merged = db
        .merge_batch(
            vec![bad, good.clone(), shell, dash, long_hw, long_id, forever],
            NOW_MS,
        )
        .unwrap();
    assert_eq!(merged.stored, vec![good]);
    assert_eq!(
        merged.rejected,
        [
            (Ipv4Addr::new(8, 8, 8, 8), Reject::Address),
            (ip(10), Reject::Hostname),
            (ip(11), Reject::Hostname),
            (ip(12), Reject::Hwaddr),
            (ip(13), Reject::ClientId),
            (ip(14), Reject::Expiry),
        ]
    );
    assert_eq!(db.len(), 1);
    assert_eq!(db.get(Ipv4Addr::new(8, 8, 8, 8)), None);
}

/// This node's own clock ran a day ahead (stamps issued then stand a day
/// ahead), then stepped back: the first operation finds the clock beyond
/// the bound, stamps what stood ahead anew in its old order as its own
/// change, and goes on from the wall clock; nothing stays ahead.
#[test]
fn a_clock_that_stepped_back_sets_back_and_restamps_what_stood_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = open(dir.path());
    db.enable_outbox();
    let early = db.commit(lease(1, 1, None, 99), NOW_MS).unwrap();
    let a = db.commit(lease(2, 2, None, 99), NOW_MS + DAY_MS).unwrap();
    let b = db.commit(lease(3, 3, None, 99), NOW_MS + DAY_MS).unwrap();
    db.take_outbox();
    let mut feed = db.subscribe();
    // Within the bound of the clock: nothing happens.
    db.keep_clock_bounded(NOW_MS + DAY_MS - SKEW_MS).unwrap();
    assert_eq!(db.clock_resets(), 0);
    // Back by a day.
    let c = db.commit(lease(4, 4, None, 99), NOW_MS + 1_000).unwrap();
    assert_eq!(db.clock_resets(), 1);
    let (a2, b2) = (db.get(a.ip).unwrap(), db.get(b.ip).unwrap());
    assert_eq!(db.get(early.ip), Some(early.clone()), "not ahead: kept");
    assert!(early.stamp < a2.stamp && a2.stamp < b2.stamp && b2.stamp < c.stamp);
    for r in db.iter() {
        assert!(r.stamp.wall_ms <= NOW_MS + 1_000 + SKEW_MS, "{r:?}");
    }
    assert_eq!(
        LeaseRecord {
            stamp: a.stamp,
            ..a2.clone()
        },
        a
    );
    // Published and handed to the partner like any own change.
    let published: Vec<Ipv4Addr> = std::iter::from_fn(|| feed.try_recv().ok())
        .map(|r| r.ip)
        .collect();
    assert_eq!(published, [a.ip, b.ip, c.ip]);
    let out: Vec<Ipv4Addr> = db.take_outbox().iter().map(|r| r.ip).collect();
    assert_eq!(out, [a.ip, b.ip, c.ip]);
    assert!(db.last_stamp().wall_ms <= NOW_MS + 1_000 + SKEW_MS);
}

/// The floor recovered from disk at open (the records' stamps and the
/// meta floor) a day ahead of the clock does not poison it: the first
/// operation sets it back, and the records stamped ahead are stamped anew
/// and stored so, across a second restart too.
#[test]
fn a_floor_from_the_future_found_at_open_does_not_poison_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = {
        let mut db = open(dir.path());
        db.commit(lease(1, 1, None, 99), NOW_MS).unwrap();
        let r = db.commit(lease(2, 2, None, 99), NOW_MS + DAY_MS).unwrap();
        db.durability().flush().unwrap();
        r
    };
    {
        let mut db = open(dir.path());
        assert_eq!(db.last_stamp(), ahead.stamp, "read back as it was");
        db.expire_due(NOW_MS / 1000, NOW_MS).unwrap();
        assert_eq!(db.clock_resets(), 1);
        assert!(db.last_stamp().wall_ms <= NOW_MS + SKEW_MS);
        assert!(db.get(ahead.ip).unwrap().stamp.wall_ms <= NOW_MS + SKEW_MS);
        db.durability().flush().unwrap();
    }
    let mut db = open(dir.path());
    assert!(db.last_stamp().wall_ms <= NOW_MS + SKEW_MS);
    db.keep_clock_bounded(NOW_MS).unwrap();
    assert_eq!(db.clock_resets(), 0, "nothing ahead any more");
}

/// What the failover node stores about its completeness is read back
/// after a restart; a new database has nothing.
#[test]
fn completeness_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = Completeness {
        last_sync: Some((7, 1_700_000_000_000)),
        partner_down_since_ms: Some(1_700_000_100_000),
    };
    {
        let mut db = LeaseDb::open(dir.path(), DbOptions::default()).unwrap();
        assert_eq!(db.completeness(), Completeness::default());
        db.set_completeness(c).unwrap();
        db.durability().flush().unwrap();
    }
    let mut tries = 0;
    let db = loop {
        match LeaseDb::open(dir.path(), DbOptions::default()) {
            Ok(db) => break db,
            Err(_) if tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(db.completeness(), c);
}
