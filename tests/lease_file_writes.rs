//! The lease-file export against other local users (review finding 8):
//! where another user can write the lease file's directory (OpenWrt's
//! /tmp, with fs.protected_symlinks off as on some systems), a symlink
//! planted where the export writes must never make it write somewhere else.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use twinmasq::lease::lease_file::write_atomic;

const TEXT: &str = "0 52:54:00:aa:bb:cc 198.18.0.58 laptop *\n";

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The export used to write `.<name>.tmp<pid>` (the pid is in the world-
/// readable pid file) with `File::create`, which follows a symlink there.
#[test]
fn export_does_not_follow_a_symlink_at_a_predictable_temporary_name() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "precious\n").unwrap();
    let lease_file = dir.path().join("dnsmasq.leases");
    let planted = dir
        .path()
        .join(format!(".dnsmasq.leases.tmp{}", std::process::id()));
    std::os::unix::fs::symlink(&target, &planted).unwrap();

    write_atomic(&lease_file, TEXT).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    let m = std::fs::symlink_metadata(&lease_file).unwrap();
    assert!(m.is_file(), "the lease file is not a plain file: {m:?}");
    assert_eq!(std::fs::read_to_string(&lease_file).unwrap(), TEXT);
    // As `File::create` made it: readable by the tools that read it.
    assert_eq!(m.mode() & 0o777, 0o666 & !umask(), "{:o}", m.mode());
}

/// When the server's user may not create files in the lease file's
/// directory (a shared /var/lib/misc, root's), the export rewrites the file
/// in place, as dnsmasq does. That open must not follow a symlink at the
/// lease file's path to a file the user can write (its own database).
/// Run as `nobody` on a thread of its own (root writes anywhere).
#[test]
fn in_place_rewrite_does_not_follow_a_symlink_at_the_lease_path() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "needs root (CI is set, so this is a failure)"
        );
        eprintln!("SKIPPED in_place_rewrite_does_not_follow_a_symlink_at_the_lease_path: not root");
        return;
    }
    let (uid, gid) = twinmasq::service::privileges::user_ids("nobody")
        .unwrap()
        .expect("a nobody user");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The user's own file, which the user may write: what a symlink could
    // point the rewrite at.
    let own = dir.path().join("own");
    std::fs::write(&own, "the user's own data\n").unwrap();
    std::os::unix::fs::chown(&own, Some(uid), Some(gid)).unwrap();
    let lease_file = dir.path().join("dnsmasq.leases");
    std::os::unix::fs::symlink(&own, &lease_file).unwrap();

    let path = lease_file.clone();
    let result = std::thread::spawn(move || {
        // SAFETY: raw syscalls on integers change this thread only.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        write_atomic(&path, TEXT).map_err(|e| e.to_string())
    })
    .join()
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "the user's own data\n",
        "the rewrite followed the symlink (write_atomic: {result:?})"
    );
    assert!(leftovers(dir.path()).is_empty());
}

/// This process's umask, from /proc (umask(2) would change it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(field.trim(), 8).unwrap()
}

/// Temporary files left beside the lease file.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect()
}
