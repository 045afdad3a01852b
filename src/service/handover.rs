//! Giving the server's files to the user it drops to, as root, in places
//! that user controls.
//!
//! The lease database directory belongs to the user from the first start
//! on, and the lease file's directory may be one anyone can write
//! (OpenWrt's /tmp). A process running as that user (the server after a
//! compromise, or any other service sharing the user) can rename, swap and
//! link names there while root works, so root never acts on a name there
//! twice: each entry is opened once without following symlinks
//! (`O_PATH|O_NOFOLLOW`), judged by `fstat` on that descriptor, and
//! changed through it (`fchownat(fd, "", AT_EMPTY_PATH)`). Whatever the
//! name points to afterwards, only that inode is touched.
//!
//! What root does:
//! - creates the database directory if missing and gives it to the user
//!   through a descriptor opened with `O_DIRECTORY|O_NOFOLLOW`; sled itself
//!   is opened only after the drop, so the user creates its own files;
//! - hands over root-owned files a root run left in it (`-d` keeps root,
//!   as in dnsmasq): only entries owned by uid 0, regular files only with a
//!   single link (a hard link to a file elsewhere is not the database's),
//!   directories [`LEVELS`] deep, on the directory's own file
//!   system; symlinks, devices, fifos and other users' files are left;
//! - creates a missing lease file with `O_CREAT|O_EXCL|O_NOFOLLOW` and
//!   gives it through that descriptor; an existing one is given only if it
//!   is root's with a single link.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::privileges::{unreachable_dir, PrivError, Target};

/// How many levels of the database directory's tree have their root-owned
/// entries handed over: its own entries and its subdirectories' (sled 0.34
/// keeps its files there and in `blobs/`).
pub const LEVELS: usize = 2;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the path"))
}

fn open_at(dir: Option<&OwnedFd>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a NUL-terminated name and a descriptor we hold (or AT_FDCWD);
    // the mode is read only with O_CREAT.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: all-zero is a valid stat for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we hold and a stat we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// chown of the inode `fd` refers to, also for `O_PATH` descriptors.
fn chown_fd(fd: &OwnedFd, t: &Target) -> io::Result<()> {
    // SAFETY: a descriptor we hold and an empty NUL-terminated path.
    let rc = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            t.uid,
            t.gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The names in directory `dir` (`.` and `..` left out).
fn names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    // A fresh open of the same directory: readdir keeps its position in the
    // open file, and `dir` may be an O_PATH descriptor.
    let own = open_at(Some(dir), c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
    // SAFETY: fdopendir takes over the descriptor on success (closedir
    // closes it); on failure it is still ours and `own` closes it.
    let stream = unsafe { libc::fdopendir(own.as_raw_fd()) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(own);
    let mut out = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; cleared to tell the end from an
        // error, as readdir(3) documents.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a stream from fdopendir, not yet closed.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: d_name is NUL-terminated within the entry readdir
        // returned, valid until the next readdir on this stream.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name != c"." && name != c".." {
            out.push(name.to_owned());
        }
    };
    // SAFETY: the stream is ours; closing it closes its descriptor.
    unsafe { libc::closedir(stream) };
    result.map(|()| out)
}

fn chown_err(t: &Target, path: &Path, source: io::Error) -> PrivError {
    PrivError::Chown {
        user: t.user.clone(),
        path: path.to_path_buf(),
        source,
    }
}

/// Hands the root-owned entries of directory `dir` (at `path`, for
/// messages) over to `t`, and those of its subdirectories down to `levels`
/// more levels. Entries that vanish or change meanwhile are skipped: the
/// user may rename anything here at any moment.
fn migrate(
    dir: &OwnedFd,
    dev: libc::dev_t,
    path: &Path,
    t: &Target,
    levels: usize,
) -> Result<(), PrivError> {
    let names = match names(dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!("not handing over what is in {}: {e}", path.display());
            return Ok(());
        }
    };
    for name in names {
        let entry_path = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let Ok(fd) = open_at(Some(dir), &name, libc::O_PATH | libc::O_NOFOLLOW) else {
            continue;
        };
        let Ok(st) = fstat(&fd) else { continue };
        if st.st_dev != dev {
            continue;
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if st.st_uid == 0 {
                    chown_fd(&fd, t).map_err(|e| chown_err(t, &entry_path, e))?;
                }
                if levels > 0 {
                    migrate(&fd, dev, &entry_path, t, levels - 1)?;
                }
            }
            libc::S_IFREG if st.st_uid == 0 && st.st_nlink == 1 => {
                chown_fd(&fd, t).map_err(|e| chown_err(t, &entry_path, e))?;
            }
            libc::S_IFREG if st.st_uid == 0 => tracing::warn!(
                "{} has {} links: not handing it to user {} (a hard link to a file elsewhere is not the database's)",
                entry_path.display(),
                st.st_nlink,
                t.user
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The database directory: created if missing, given to `t` through a
/// descriptor, its root-owned entries handed over.
fn give_db_dir(t: &Target, lease_db: &Path) -> Result<(), PrivError> {
    let create_err = |path: &Path, source| PrivError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = lease_db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| create_err(parent, e))?;
    }
    let c = cstring(lease_db).map_err(|e| create_err(lease_db, e))?;
    // SAFETY: a NUL-terminated path; the mode is what sled would use.
    if unsafe { libc::mkdir(c.as_ptr(), 0o755) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(create_err(lease_db, e));
        }
    }
    let dir = match open_at(
        None,
        &c,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    ) {
        Ok(d) => d,
        // A file where the directory should be: the database's own open
        // (after the drop) stops the start, saying what to do.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(PrivError::Symlink {
                path: lease_db.to_path_buf(),
            })
        }
        Err(e) => return Err(chown_err(t, lease_db, e)),
    };
    let st = fstat(&dir).map_err(|e| chown_err(t, lease_db, e))?;
    chown_fd(&dir, t).map_err(|e| chown_err(t, lease_db, e))?;
    migrate(&dir, st.st_dev, lease_db, t, LEVELS - 1)
}

/// The lease file: created for `t` if missing, or given to `t` if it is a
/// root-owned file with one link. Never through a symlink.
fn give_lease_file(t: &Target, lease_file: &Path) -> Result<(), PrivError> {
    let c = cstring(lease_file).map_err(|e| chown_err(t, lease_file, e))?;
    match open_at(
        None,
        &c,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
    ) {
        Ok(fd) => return chown_fd(&fd, t).map_err(|e| chown_err(t, lease_file, e)),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(chown_err(t, lease_file, e)),
    }
    let fd = match open_at(None, &c, libc::O_PATH | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        // Gone again: the export creates it.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(chown_err(t, lease_file, e)),
    };
    let st = fstat(&fd).map_err(|e| chown_err(t, lease_file, e))?;
    let path = lease_file.display();
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if st.st_uid == t.uid => {}
        libc::S_IFREG if st.st_uid == 0 && st.st_nlink == 1 => {
            chown_fd(&fd, t).map_err(|e| chown_err(t, lease_file, e))?;
        }
        libc::S_IFREG if st.st_uid == 0 => tracing::warn!(
            "dhcp-leasefile {path} has {} links: not handing it to user {}; the export replaces it if it can",
            st.st_nlink,
            t.user
        ),
        libc::S_IFREG => tracing::warn!(
            "dhcp-leasefile {path} belongs to uid {}, not to user {}: not taking it over; the export replaces it if it can",
            st.st_uid,
            t.user
        ),
        libc::S_IFLNK => tracing::warn!(
            "dhcp-leasefile {path} is a symbolic link: not followed; the export replaces it with a file if it can"
        ),
        _ => tracing::warn!("dhcp-leasefile {path} is not a regular file"),
    }
    Ok(())
}

/// Makes the files the server writes after the drop the user's, while we
/// are still root (see the module's doc for how). Both paths must be
/// reachable by the user; see [`PrivError::Unreachable`].
pub fn hand_over(t: &Target, lease_db: &Path, lease_file: &Path) -> Result<(), PrivError> {
    check_reach(t, lease_db, lease_file)?;
    give_db_dir(t, lease_db)?;
    give_lease_file(t, lease_file)
}

/// Whether `t` can reach the database directory and the lease file's
/// directory, judged by mode bits: a user that cannot would fail at its
/// first write, long after the start.
pub fn check_reach(t: &Target, lease_db: &Path, lease_file: &Path) -> Result<(), PrivError> {
    let lease_dir = lease_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for (path, check) in [(lease_db, lease_db), (lease_file, lease_dir)] {
        if let Some(blocked) = unreachable_dir(check, t.uid, t.gid) {
            return Err(PrivError::Unreachable {
                user: t.user.clone(),
                path: path.to_path_buf(),
                blocked,
            });
        }
    }
    Ok(())
}
