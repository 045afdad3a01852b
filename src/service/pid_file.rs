//! The pid file.
//!
//! It is created while still root (its directory, /run, is usually root's)
//! but the server finishes its start only after the drop: the lease
//! database is opened by the user it drops to, so that the user creates
//! its own files and root never parses them. A start that fails there
//! (a damaged database, exit code 3) must not leave a pid file behind, and
//! the user may not remove it from root's directory. So, when dropping, a
//! small process forked before the drop stays root until the start is
//! over: told that the start failed, it removes the file, and only if the
//! name still refers to the file we created (held open meanwhile, so its
//! inode number cannot be reused); otherwise it just exits. After the fork
//! it calls only read, fstatat, unlinkat and _exit.
//!
//! The file is created empty, never through a symlink and never by
//! truncating whatever is at its name (a stale pid file is removed
//! first); the pid is written once the server serves.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The root process that removes the pid file of a failed start.
struct Guard {
    pid: libc::pid_t,
    tell: Option<OwnedFd>,
}

impl Guard {
    /// Ends the guard; with `remove`, after it removed the file.
    fn finish(mut self, remove: bool) {
        if let Some(tell) = self.tell.take() {
            if remove {
                // SAFETY: one byte from a local to a descriptor we hold.
                unsafe { libc::write(tell.as_raw_fd(), b"R".as_ptr().cast(), 1) };
            }
        }
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child with a valid status pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
}

fn spawn_guard(dir: OwnedFd, name: CString, dev: u64, ino: u64) -> io::Result<Guard> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    let (listen, tell) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only async-signal-safe calls (close, read,
    // fstatat, unlinkat, _exit) on values prepared before the fork, so no
    // lock another thread held at the fork matters.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => unsafe {
            // Our copy of the write end, so the server's closing it (or
            // its death) reads as end of file here.
            libc::close(tell.as_raw_fd());
            let mut byte = 0u8;
            let n = loop {
                let n = libc::read(listen.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                if n >= 0 || *libc::__errno_location() != libc::EINTR {
                    break n;
                }
            };
            if n == 1 && byte == b'R' {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::fstatat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                ) == 0
                    && st.st_dev as u64 == dev
                    && st.st_ino as u64 == ino
                {
                    libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0);
                }
            }
            libc::_exit(0)
        },
        pid => Ok(Guard {
            pid,
            tell: Some(tell),
        }),
    }
}

/// A pid file, removed when dropped (best effort once the user has no
/// right to: the init system removes it then, as for dnsmasq).
pub struct PidFile {
    path: PathBuf,
    file: Option<File>,
    guard: Option<Guard>,
}

impl PidFile {
    /// Creates the pid file at `path`, empty. `dropping`: we are root and
    /// drop to another user before [`PidFile::publish`], so a guard
    /// removes the file should the start fail after the drop.
    pub fn create(path: &Path, dropping: bool) -> io::Result<PidFile> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the path"))?;
        // A stale one (or whatever else is at the name) goes; the name,
        // not what a symlink there points to.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // SAFETY: a NUL-terminated path; O_EXCL|O_NOFOLLOW creates a new
        // file or fails, whatever appeared at the name meanwhile.
        let fd = unsafe {
            libc::open(
                cpath.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let guard = if dropping {
            let meta = file.metadata()?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let dir = File::open(dir)?;
            let name = path
                .file_name()
                .map(|n| CString::new(n.as_bytes()))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the path"))?;
            Some(spawn_guard(dir.into(), name, meta.dev(), meta.ino())?)
        } else {
            None
        };
        Ok(PidFile {
            path: path.to_path_buf(),
            file: Some(file),
            guard,
        })
    }

    /// Writes our pid: the server serves. The guard, if any, goes.
    pub fn publish(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        }
        if let Some(g) = self.guard.take() {
            g.finish(false);
        }
        Ok(())
    }
}

impl Drop for PidFile {
    /// Best-effort, as in dnsmasq: after the drop to `user` the pid file's
    /// directory (/run, /var/run) is usually not ours to change, and the
    /// init system removes it (systemd's PIDFile=, start-stop-daemon).
    /// Before it is published the guard removes it.
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            g.finish(true);
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!("pid file {} left in place: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinmasq.pid");
        std::fs::write(&path, "stale\n").unwrap();
        let mut p = PidFile::create(&path, false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        p.publish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(p);
        assert!(!path.exists());
    }

    #[test]
    fn a_symlink_at_the_name_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "precious\n").unwrap();
        let path = dir.path().join("twinmasq.pid");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let mut p = PidFile::create(&path, false).unwrap();
        p.publish().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    }

    /// The guard removes the file of a start that failed, and leaves a
    /// published one (and a file that replaced ours) alone.
    #[test]
    fn the_guard_removes_only_an_unpublished_file_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinmasq.pid");
        drop(PidFile::create(&path, true).unwrap());
        assert!(!path.exists(), "a failed start left its pid file");

        let mut p = PidFile::create(&path, true).unwrap();
        p.publish().unwrap();
        assert!(p.guard.is_none());
        std::mem::forget(p);
        assert!(path.exists());

        let p = PidFile::create(&path, true).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's\n").unwrap();
        drop(p);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's\n");
    }
}
