//! Descriptors inherited from whoever started us, closed at start as
//! dnsmasq does: a careless starter's files and pipes must reach neither
//! the server, which runs as another user after the drop, nor the root
//! `dhcp-script` helper. Nothing the server uses is inherited: no socket
//! activation, no readiness descriptor (the daemon's report pipe is made
//! after this).

use std::os::fd::RawFd;

/// Closes every descriptor above 2 except those in `keep`. Call first
/// thing, before anything opens a descriptor of its own.
pub fn close_inherited(keep: &[RawFd]) {
    // Without allocating: the helper calls this before anything else, and
    // the list is one or two long.
    let mut from: RawFd = 3;
    while let Some(k) = keep.iter().copied().filter(|fd| *fd >= from).min() {
        if k > from {
            close_range(from, k - 1);
        }
        from = k.saturating_add(1);
    }
    close_range(from, RawFd::MAX);
}

/// Closes `first..=last`: close_range(2) (Linux 5.9), else each open one.
fn close_range(first: RawFd, last: RawFd) {
    // SAFETY: close_range only closes descriptors; nothing in this process
    // holds the inherited ones (they were never wrapped in an owner).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if rc == 0 {
        return;
    }
    // Older kernels: the open ones, as /proc lists them (collected first,
    // so the listing's own descriptor is closed by its owner, not here).
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in open.into_iter().filter(|fd| (first..=last).contains(fd)) {
        // SAFETY: as above; EBADF (the listing's own, now closed) is fine.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// In a child process: the test harness's own descriptors must live.
    #[test]
    fn closes_all_but_the_kept_ones() {
        let keep = std::fs::File::open("/dev/null").unwrap();
        let gone = std::fs::File::open("/dev/null").unwrap();
        let (k, g) = (keep.as_raw_fd(), gone.as_raw_fd());
        // SAFETY: the child only makes syscalls (close_range, fcntl) and
        // _exits; close_inherited allocates only on kernels without
        // close_range (before 5.9).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            close_inherited(&[k]);
            // SAFETY: fcntl on integers; _exit ends the child.
            unsafe {
                let kept = libc::fcntl(k, libc::F_GETFD) >= 0;
                let closed = libc::fcntl(g, libc::F_GETFD) < 0;
                let stdio = libc::fcntl(2, libc::F_GETFD) >= 0;
                libc::_exit(if kept && closed && stdio { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
