//! Giving up root once the privileged sockets are bound, as dnsmasq does:
//! `setgroups`, `setgid`, `setuid` to `user` (default `nobody`) and
//! `group` (default `dip` if it exists, else the user's own group — what
//! dnsmasq 2.90 does, checked by running it), keeping only the
//! capabilities the running server still uses.
//!
//! Files the server keeps writing after the drop are handed to the user
//! first (see [`hand_over`]), and what any later exec could gain is
//! limited before any thread starts ([`restrict_exec`]).

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, DEFAULT_GROUP, DEFAULT_USER};

pub use super::handover::{check_reach, hand_over};

/// Capability numbers from linux/capability.h.
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("unknown user or group: {0}")]
    Unknown(String),
    #[error("cannot look up {what} {name}: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        source: std::io::Error,
    },
    #[error("user {user} cannot reach {} (no search permission on {}): make it reachable, or set user=root", path.display(), blocked.display())]
    Unreachable {
        user: String,
        path: PathBuf,
        blocked: PathBuf,
    },
    #[error("cannot give {} to user {user}: {source}", path.display())]
    Chown {
        user: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lease-db {} is a symbolic link, which root does not follow into a directory its user owns: point lease-db at the directory itself", path.display())]
    Symlink { path: PathBuf },
    #[error("cannot limit what an exec may gain ({what}): {source}")]
    Restrict {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot change to user {user}: {what}: {source}")]
    Switch {
        user: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// Who the server becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// The group's name, or None for the user's primary group.
    pub group: Option<String>,
    /// `user=` was given: problems are errors, not a reason to stay root.
    pub explicit: bool,
}

struct Passwd {
    uid: u32,
    gid: u32,
}

/// uid and primary gid of user `name`, or `None` if there is no such user
/// (a name with a NUL byte included). Shared with `dhcp-scriptuser`.
pub fn user_ids(name: &str) -> Result<Option<(u32, u32)>, std::io::Error> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid passwd for getpwnam_r to fill.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local or buffer of the length
        // passed; the strings in pw point into buf, which we do not read.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some((pw.pw_uid, pw.pw_gid))),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

fn lookup_user(name: &str) -> Result<Option<Passwd>, PrivError> {
    let ids = user_ids(name).map_err(|source| PrivError::Lookup {
        what: "user",
        name: name.to_string(),
        source,
    })?;
    Ok(ids.map(|(uid, gid)| Passwd { uid, gid }))
}

fn lookup_group(name: &str) -> Result<Option<u32>, PrivError> {
    let err = |source| PrivError::Lookup {
        what: "group",
        name: name.to_string(),
        source,
    };
    let cname = CString::new(name).map_err(|_| PrivError::Unknown(name.to_string()))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid group for getgrnam_r to fill.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in lookup_user.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some(gr.gr_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            e => return Err(err(std::io::Error::from_raw_os_error(e))),
        }
    }
}

/// Whom to become, or None to stay as we are: not root, `-d` (dnsmasq's
/// debug mode keeps the user), or the user is root itself.
pub fn plan(cfg: &Config) -> Result<Option<Target>, PrivError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || cfg.no_daemon {
        return Ok(None);
    }
    let user = cfg.user.as_deref().unwrap_or(DEFAULT_USER);
    let pw = lookup_user(user)?.ok_or_else(|| PrivError::Unknown(user.to_string()))?;
    if pw.uid == 0 {
        return Ok(None);
    }
    let (gid, group) = match &cfg.group {
        Some(g) => (
            lookup_group(g)?.ok_or_else(|| PrivError::Unknown(g.clone()))?,
            Some(g.clone()),
        ),
        // Logged by the caller (`group: None`): this runs before the log.
        None => match lookup_group(DEFAULT_GROUP)? {
            Some(gid) => (gid, Some(DEFAULT_GROUP.to_string())),
            None => (pw.gid, None),
        },
    };
    Ok(Some(Target {
        user: user.to_string(),
        uid: pw.uid,
        gid,
        group,
        explicit: cfg.user.is_some(),
    }))
}

/// The first directory on the way to `path` (itself included when it is
/// a directory) that `uid`/`gid` may not search, judged by mode bits as
/// the kernel would for a user without supplementary groups.
pub fn unreachable_dir(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    let mut dirs: Vec<&Path> = abs.ancestors().skip(1).collect();
    if abs.is_dir() {
        dirs.insert(0, &abs);
    }
    dirs.into_iter().rev().find_map(|d| {
        let m = std::fs::metadata(d).ok()?;
        let mode = m.mode();
        let bit = if m.uid() == uid {
            0o100
        } else if m.gid() == gid {
            0o010
        } else {
            0o001
        };
        (mode & bit == 0).then(|| d.to_path_buf())
    })
}

/// Limits what an exec by this thread, and by every thread it starts from
/// now on, can gain: `PR_SET_NO_NEW_PRIVS` (no setuid bit or file
/// capability takes effect) and a capability bounding set of `keep` only.
/// The server never execs after the drop, so this costs nothing.
///
/// Both are per-thread attributes that new threads inherit, so call this
/// before the server starts any thread; and while still root, since
/// dropping from the bounding set needs CAP_SETPCAP. The bounding set does
/// not touch the capabilities this process holds now: root keeps working
/// until [`become_user`]. Anything that must exec with root's full powers
/// (the `dhcp-script` helper) is started before.
///
/// Without CAP_SETPCAP (an init system's bounding set that lacks it) the
/// bounding set stays as it is and the returned warning says so;
/// no_new_privs, which needs no privilege, is set all the same.
pub fn restrict_exec(keep: &[u32]) -> Result<Option<String>, PrivError> {
    let err = |what| PrivError::Restrict {
        what,
        source: std::io::Error::last_os_error(),
    };
    let mut warning = None;
    for cap in 0..64u32 {
        // SAFETY: prctl on integers.
        let held = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        match held {
            // Past the last capability this kernel knows.
            -1 => break,
            0 => continue,
            _ if keep.contains(&cap) => continue,
            _ => {}
        }
        // SAFETY: prctl on integers.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                return Err(err("PR_CAPBSET_DROP"));
            }
            warning = Some(
                "cannot reduce the capability bounding set without CAP_SETPCAP (add it to the init system's bounding set, e.g. CapabilityBoundingSet= in the unit); no_new_privs is set, so no exec can gain privileges"
                    .to_string(),
            );
            break;
        }
    }
    // SAFETY: prctl on integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(err("PR_SET_NO_NEW_PRIVS"));
    }
    Ok(warning)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn switch_err(t: &Target, what: &'static str) -> PrivError {
    PrivError::Switch {
        user: t.user.clone(),
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// Becomes `t`, keeping the capabilities in `keep` (permitted and
/// effective; none inheritable). Every thread changes user (glibc applies
/// set*id to all of them); threads other than this one lose every
/// capability, and threads started later inherit this one's.
pub fn become_user(t: &Target, keep: &[u32]) -> Result<(), PrivError> {
    // SAFETY: plain syscalls on integers; a null list with length 0 is
    // what setgroups documents for "no supplementary groups".
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(switch_err(t, "prctl(PR_SET_KEEPCAPS)"));
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(switch_err(t, "setgroups"));
        }
        if libc::setgid(t.gid) != 0 {
            return Err(switch_err(t, "setgid"));
        }
        if libc::setuid(t.uid) != 0 {
            return Err(switch_err(t, "setuid"));
        }
    }
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        if let Some(d) = data.get_mut(word) {
            d.effective |= bit;
            d.permitted |= bit;
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads a v3 header and two data words we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(switch_err(t, "capset"));
    }
    // SAFETY: as above. Cleared so a later setuid could not keep them.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    // With every uid non-zero, setuid(0) must fail now.
    // SAFETY: getuid/geteuid have no preconditions.
    if unsafe { libc::getuid() } != t.uid || unsafe { libc::geteuid() } != t.uid {
        return Err(PrivError::Switch {
            user: t.user.clone(),
            what: "checking the new uid",
            source: std::io::Error::other("uid did not change"),
        });
    }
    Ok(())
}

/// What the server still needs after the drop: ARP-cache injection for
/// DHCP replies to clients without an address (CAP_NET_ADMIN, SIOCSARP)
/// and the ping check's raw ICMP socket, opened lazily (CAP_NET_RAW).
/// Nothing binds a port after start, so no CAP_NET_BIND_SERVICE.
pub fn needed_caps(cfg: &Config) -> Vec<u32> {
    let mut caps = Vec::new();
    if !cfg.dhcp_ranges.is_empty() {
        caps.push(CAP_NET_ADMIN);
        if !cfg.no_ping {
            caps.push(CAP_NET_RAW);
        }
    }
    caps
}

/// The names of `caps`, for the log.
pub fn cap_names(caps: &[u32]) -> String {
    let names: Vec<&str> = caps
        .iter()
        .map(|c| match *c {
            CAP_NET_BIND_SERVICE => "CAP_NET_BIND_SERVICE",
            CAP_NET_ADMIN => "CAP_NET_ADMIN",
            CAP_NET_RAW => "CAP_NET_RAW",
            _ => "?",
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// For messages: `user:group`.
pub fn describe(t: &Target) -> String {
    match &t.group {
        Some(g) => format!("{}:{g}", t.user),
        None => format!("{}:{}", t.user, t.gid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn unreachable_dir_finds_the_first_closed_directory() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        let closed = open.join("closed");
        let inner = closed.join("db");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = std::fs::metadata(dir.path()).unwrap();
        // A stranger (uid/gid owning nothing here) is stopped at `closed`,
        // unless /tmp's own ancestors already stop it.
        let stranger = (me.uid().wrapping_add(54321), me.gid().wrapping_add(54321));
        let blocked = unreachable_dir(&inner, stranger.0, stranger.1);
        assert_eq!(blocked, Some(closed.clone()));
        // The owner passes.
        assert_eq!(unreachable_dir(&inner, me.uid(), me.gid()), None);
        // Group search permission lets the group through.
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o710)).unwrap();
        assert_eq!(unreachable_dir(&inner, stranger.0, me.gid()), None);
    }

    #[test]
    fn caps_follow_the_config() {
        assert!(needed_caps(&Config::default()).is_empty());
        let mut cfg = crate::config::load_with_default(
            &["--dhcp-range=198.18.0.10,198.18.0.20".to_string()],
            Path::new("/nonexistent/twinmasq.conf"),
        )
        .unwrap();
        assert_eq!(needed_caps(&cfg), vec![CAP_NET_ADMIN, CAP_NET_RAW]);
        cfg.no_ping = true;
        assert_eq!(needed_caps(&cfg), vec![CAP_NET_ADMIN]);
    }
}
