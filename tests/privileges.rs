//! The root side of the privilege drop, against the user the server drops
//! to. Before dropping, the server (as root) gives that user its lease
//! database directory and lease file (`privileges::hand_over`). The user
//! owns that directory from the first start on, so everything in it, and
//! the lease file's directory when that is shared (OpenWrt's /tmp), is
//! under the user's control while root works there: root must never follow
//! a name the user can swap, and never give away a file that is not the
//! server's own.
//!
//! The "attacker" here is a thread of this test that has switched to
//! `nobody` (a raw setresuid changes only the calling thread's
//! credentials), so the kernel judges its renames and links exactly as it
//! would another process running as that user. Root only (the hand-over
//! chowns); with `CI` set a missing root is a failure, not a skip.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use twinmasq::service::privileges::{hand_over, user_ids, Target};

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

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

/// `nobody`, as the server would drop to it.
fn nobody() -> Target {
    let (uid, gid) = user_ids("nobody").unwrap().expect("a nobody user");
    Target {
        user: "nobody".into(),
        uid,
        gid,
        group: None,
        explicit: true,
    }
}

/// A directory in /tmp that `nobody` may enter (tempdir makes it 0700).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tmqt-priv-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Switches the calling thread, and only it, to `t` (the raw syscalls skip
/// glibc's broadcast of set*id to every thread).
fn become_on_this_thread(t: &Target) {
    // SAFETY: plain syscalls on integers; a null list of length 0 for
    // setgroups.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
            0
        );
        assert_eq!(libc::syscall(libc::SYS_setresgid, t.gid, t.gid, t.gid), 0);
        assert_eq!(libc::syscall(libc::SYS_setresuid, t.uid, t.uid, t.uid), 0);
    }
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Files under `dir` (itself included) not owned by root.
fn not_roots(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let meta = std::fs::symlink_metadata(dir).unwrap();
    if meta.uid() != 0 {
        out.push(dir.to_path_buf());
    }
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            out.extend(not_roots(&e.unwrap().path()));
        }
    }
    out
}

const VICTIMS: usize = 2000;

/// The review's attack (finding 1): the database directory is `nobody`'s,
/// as after any first start. In it, `d` is a directory whose entries have
/// the names of root's files in `victim`, and `lnk` is a symlink to
/// `victim`. A process running as `nobody` swaps the two names in a loop
/// (renameat2 RENAME_EXCHANGE) while root runs the start-up hand-over: a
/// walk by path name then chowns `victim/NAME` when it meant `db/d/NAME`.
/// Not one file outside the database directory may change owner; the
/// swaps must really have happened meanwhile.
#[test]
fn swapper_never_gets_a_file_outside_the_db_directory_chowned() {
    if !need_root("swapper_never_gets_a_file_outside_the_db_directory_chowned") {
        return;
    }
    let t = nobody();
    let top = open_tempdir();
    let victim = top.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let db = top.path().join("db");
    let d = db.join("d");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..VICTIMS {
        let name = format!("f{i:04}");
        let v = victim.join(&name);
        std::fs::write(&v, "root's\n").unwrap();
        std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Root-owned here too, as files a root run left in the database
        // would be: the hand-over has work to do in `d` while the swaps go.
        std::fs::write(d.join(&name), "").unwrap();
    }
    lchown(&db, t.uid, t.gid);
    lchown(&d, t.uid, t.gid);
    let lnk = db.join("lnk");
    std::os::unix::fs::symlink(&victim, &lnk).unwrap();
    lchown(&lnk, t.uid, t.gid);
    // The lease file lives apart, in a directory of root's.
    let lease_file = top.path().join("leases");

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, t) = (Arc::clone(&stop), Arc::clone(&swaps), t.clone());
        let (a, b) = (cpath(&d), cpath(&lnk));
        std::thread::spawn(move || {
            become_on_this_thread(&t);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                // SAFETY: two NUL-terminated paths that outlive the call.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if rc == 0 {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let started = Instant::now();
    while swaps.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(5) {
        std::thread::yield_now();
    }
    let before = swaps.load(Ordering::Relaxed);
    let mut results = Vec::new();
    for _ in 0..5 {
        // Errors are allowed (the user may make the hand-over fail); what
        // it touched is what counts.
        results.push(hand_over(&t, &db, &lease_file).map_err(|e| e.to_string()));
    }
    let during = swaps.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();

    assert!(during > 0, "the swapper never ran during the hand-over");
    let taken = not_roots(&victim);
    assert!(
        taken.is_empty(),
        "{} of {} root-owned files outside the database directory were chowned \
         ({during} swaps during the hand-over; results {results:?}), e.g. {:?}",
        taken.len(),
        VICTIMS + 1,
        taken.first()
    );
}

/// Finding 8: a missing lease file is created by root before the drop. In
/// a directory others can write (OpenWrt's /tmp) another user can put a
/// dangling symlink there first; root must not create the file it points
/// to (an empty root-owned /etc/nologin, say).
#[test]
fn a_missing_lease_file_is_not_created_through_a_dangling_symlink() {
    if !need_root("a_missing_lease_file_is_not_created_through_a_dangling_symlink") {
        return;
    }
    let t = nobody();
    let top = open_tempdir();
    let shared = top.path().join("tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let elsewhere = top.path().join("etc");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("nologin");
    let lease_file = shared.join("dhcp.leases");
    std::os::unix::fs::symlink(&target, &lease_file).unwrap();
    lchown(&lease_file, t.uid, t.gid);

    // The database exists, as after any start.
    let db = top.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let result = hand_over(&t, &db, &lease_file);
    assert!(
        !target.exists(),
        "root created {} through the symlink (hand_over: {result:?})",
        target.display()
    );
    assert!(std::fs::symlink_metadata(&lease_file)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Finding 8, the other way: an existing lease file that is a hard link to
/// a root file elsewhere (possible for any user where
/// fs.protected_hardlinks is 0) must not be given to the user.
#[test]
fn a_lease_file_hard_linked_to_a_root_file_is_not_chowned() {
    if !need_root("a_lease_file_hard_linked_to_a_root_file_is_not_chowned") {
        return;
    }
    let t = nobody();
    let top = open_tempdir();
    let shared = top.path().join("tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let shadow = top.path().join("shadow");
    std::fs::write(&shadow, "root:secret\n").unwrap();
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o600)).unwrap();
    let lease_file = shared.join("dhcp.leases");
    std::fs::hard_link(&shadow, &lease_file).unwrap();

    let db = top.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let result = hand_over(&t, &db, &lease_file);
    assert_eq!(
        std::fs::metadata(&shadow).unwrap().uid(),
        0,
        "root's file was given away through a hard link (hand_over: {result:?})"
    );
}

/// Files a root run left in the database directory (`-d` keeps root, as
/// in dnsmasq) are handed over, through descriptors: root-owned entries of
/// the database itself only. A hard link to a root file elsewhere, a
/// symlink and another user's file stay as they are.
#[test]
fn root_files_left_in_the_db_are_handed_over_but_nothing_else() {
    if !need_root("root_files_left_in_the_db_are_handed_over_but_nothing_else") {
        return;
    }
    let t = nobody();
    let top = open_tempdir();
    let db = top.path().join("db");
    let blobs = db.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(db.join("conf"), "segment_size: 524288\n").unwrap();
    std::fs::write(db.join("db"), "").unwrap();
    std::fs::write(blobs.join("7"), "").unwrap();
    let outside = top.path().join("outside");
    std::fs::write(&outside, "root's\n").unwrap();
    std::fs::hard_link(&outside, db.join("hard")).unwrap();
    let pointed = top.path().join("pointed");
    std::fs::write(&pointed, "root's\n").unwrap();
    std::os::unix::fs::symlink(&pointed, db.join("sym")).unwrap();
    let other = db.join("other");
    std::fs::write(&other, "").unwrap();
    lchown(&other, 4242, 4242);

    hand_over(&t, &db, &top.path().join("leases")).unwrap();
    for p in [
        &db,
        &blobs,
        &db.join("conf"),
        &db.join("db"),
        &blobs.join("7"),
    ] {
        let m = std::fs::symlink_metadata(p).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (t.uid, t.gid),
            "{} not handed over",
            p.display()
        );
    }
    assert_eq!(
        std::fs::metadata(&outside).unwrap().uid(),
        0,
        "hard link followed"
    );
    assert_eq!(
        std::fs::metadata(&pointed).unwrap().uid(),
        0,
        "symlink followed"
    );
    assert_eq!(
        std::fs::metadata(&other).unwrap().uid(),
        4242,
        "another user's file taken"
    );
    // The lease file was missing: created for the user.
    let lf = std::fs::symlink_metadata(top.path().join("leases")).unwrap();
    assert!(lf.is_file());
    assert_eq!(lf.uid(), t.uid);
}

/// Finding 8: a lease file in a directory anyone can write (OpenWrt's
/// /tmp) can be squatted or raced by another user; the start says so, once.
/// The real binary, in a network namespace of its own.
#[test]
fn a_world_writable_lease_file_directory_is_warned_about_once() {
    if !need_root("a_world_writable_lease_file_directory_is_warned_about_once") {
        return;
    }
    let top = open_tempdir();
    let shared = top.path().join("tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let conf = top.path().join("dnsmasq.conf");
    std::fs::write(&conf, "port=0\nno-resolv\nno-hosts\nno-ping\n").unwrap();
    let pid_file = top.path().join("pid");
    let lease_file = shared.join("dhcp.leases");
    let mut child = Command::new("unshare")
        .arg("-n")
        .arg(env!("CARGO_BIN_EXE_twinmasq"))
        .args(["-k", "-C"])
        .arg(&conf)
        .arg(format!("--lease-db={}", top.path().join("db").display()))
        .arg(format!("--dhcp-leasefile={}", lease_file.display()))
        .arg(format!("--pid-file={}", pid_file.display()))
        .arg(format!(
            "--control-socket={}",
            top.path().join("ctl.sock").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("no start: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let warned = err
        .lines()
        .filter(|l| l.contains("world-writable") && l.contains(&shared.display().to_string()))
        .count();
    assert_eq!(
        warned,
        1,
        "one warning about {} expected:\n{err}",
        shared.display()
    );
}
