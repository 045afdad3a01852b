//! Going into the background as dnsmasq does: fork, `setsid`, fork again
//! (so the daemon is no session leader and can never regain a terminal),
//! `chdir("/")`, stdio to /dev/null. The first process stays until the
//! daemon says it is serving, or why it is not, through a pipe, so an init
//! script still sees a start error and its exit code.
//!
//! Fork only while the process has one thread: before the tokio runtime,
//! sled and the log writer exist.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot go into the background ({what}): {source}")]
    Sys {
        what: &'static str,
        source: std::io::Error,
    },
}

fn sys(what: &'static str) -> DaemonError {
    DaemonError::Sys {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// How the daemon's start ended, as the waiting parent learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartReport {
    Ready,
    /// A nonzero exit code and the message to print.
    Failed {
        code: u8,
        message: String,
    },
    /// The daemon ended without a word (killed, or a panic).
    Vanished,
}

pub enum Role {
    /// The process that was started: it only waits for the report.
    Parent(StartReport),
    /// The daemon, which reports through this once it serves or fails.
    Daemon(Reporter),
}

/// The daemon's end of the pipe. Reporting consumes it; dropping it
/// unreported reads as [`StartReport::Vanished`] in the parent.
pub struct Reporter(File);

impl Reporter {
    pub fn ready(mut self) {
        let _ = self.0.write_all(&[0]);
    }

    pub fn failed(mut self, code: u8, message: &str) {
        let mut bytes = vec![code.max(1)];
        bytes.extend_from_slice(message.as_bytes());
        let _ = self.0.write_all(&bytes);
    }
}

fn read_report(mut pipe: File) -> StartReport {
    let mut bytes = Vec::new();
    // EOF comes when the daemon has written its report and closed the
    // pipe, or has died; a read error counts as the latter.
    let _ = pipe.read_to_end(&mut bytes);
    match bytes.split_first() {
        None => StartReport::Vanished,
        Some((0, _)) => StartReport::Ready,
        Some((&code, msg)) => StartReport::Failed {
            code,
            message: String::from_utf8_lossy(msg).into_owned(),
        },
    }
}

fn pipe() -> Result<(File, File), DaemonError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(sys("pipe"));
    }
    // SAFETY: both descriptors are new and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

fn fork() -> Result<libc::pid_t, DaemonError> {
    // SAFETY: called while the process is single-threaded (module doc), so
    // the child inherits no lock held by another thread.
    match unsafe { libc::fork() } {
        -1 => Err(sys("fork")),
        pid => Ok(pid),
    }
}

/// Forks into the background. The parent gets [`Role::Parent`] once the
/// daemon reports; the daemon continues with [`Role::Daemon`].
pub fn detach() -> Result<Role, DaemonError> {
    let (read_end, write_end) = pipe()?;
    let child = fork()?;
    if child > 0 {
        drop(write_end);
        let report = read_report(read_end);
        // Reap the middle process, which exits as soon as it has forked.
        let mut status = 0;
        // SAFETY: waiting on our own child with a valid status pointer.
        unsafe { libc::waitpid(child, &mut status, 0) };
        return Ok(Role::Parent(report));
    }
    drop(read_end);
    let reporter = Reporter(write_end);
    // SAFETY: setsid has no preconditions; it fails only for a group
    // leader, which a fresh child is not.
    if unsafe { libc::setsid() } == -1 {
        let e = sys("setsid");
        reporter.failed(5, &e.to_string());
        // SAFETY: _exit ends this forked child without running the
        // parent's atexit handlers or flushing its copied buffers.
        unsafe { libc::_exit(5) };
    }
    match fork() {
        Ok(0) => {}
        Ok(_) => {
            // SAFETY: as above; the daemon holds its own copy of the pipe.
            unsafe { libc::_exit(0) }
        }
        Err(e) => {
            reporter.failed(5, &e.to_string());
            // SAFETY: as above.
            unsafe { libc::_exit(5) }
        }
    }
    // Not keeping a mount point busy; config paths are absolute in
    // practice, as dnsmasq (which does the same) expects.
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        return Err(sys("chdir /"));
    }
    Ok(Role::Daemon(reporter))
}

/// Points stdin and stdout, and stderr unless the log goes there, at
/// /dev/null, so the daemon holds no terminal or pipe of its starter.
pub fn detach_stdio(keep_stderr: bool) -> Result<(), DaemonError> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| DaemonError::Sys {
            what: "open /dev/null",
            source,
        })?;
    let mut targets = vec![libc::STDIN_FILENO, libc::STDOUT_FILENO];
    if !keep_stderr {
        targets.push(libc::STDERR_FILENO);
    }
    for fd in targets {
        // SAFETY: both descriptors are valid; dup2 replaces fd atomically.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(sys("dup2 /dev/null"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_travel_through_the_pipe() {
        let (r, w) = pipe().unwrap();
        Reporter(w).ready();
        assert_eq!(read_report(r), StartReport::Ready);

        let (r, w) = pipe().unwrap();
        Reporter(w).failed(2, "cannot bind DNS UDP socket on 0.0.0.0:53");
        assert_eq!(
            read_report(r),
            StartReport::Failed {
                code: 2,
                message: "cannot bind DNS UDP socket on 0.0.0.0:53".into()
            }
        );

        let (r, w) = pipe().unwrap();
        drop(Reporter(w));
        assert_eq!(read_report(r), StartReport::Vanished);
    }
}
