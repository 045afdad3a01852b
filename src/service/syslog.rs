//! A syslog client for the local daemon's datagram socket (`/dev/log`).
//!
//! Lines are in the BSD (RFC 3164) form glibc's `syslog(3)` sends locally:
//! `<PRI>Mmm dd hh:mm:ss twinmasq[PID]: message`. The HOSTNAME field is
//! left out, as glibc does for the local socket: journald and rsyslog take
//! the word after the timestamp as the tag, and add the host themselves.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::Level;

pub const DEV_LOG: &str = "/dev/log";
/// The tag before `[pid]`.
const IDENT: &str = "twinmasq";
/// journald and rsyslog take far longer datagrams; nothing we log is near.
const MAX_LINE: usize = 4096;
/// After a failed send, wait this long before trying to reconnect, so a
/// missing syslog daemon costs one connect attempt per interval, not per line.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("unknown syslog facility '{0}'")]
pub struct UnknownFacility(String);

/// The numeric facility for a name glibc (and so dnsmasq) accepts.
pub fn facility_code(name: &str) -> Result<u8, UnknownFacility> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" | "security" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        other => return Err(UnknownFacility(other.to_string())),
    })
}

/// syslog severities: err, warning, info, debug.
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

struct Conn {
    sock: Option<UnixDatagram>,
    failed_at: Option<Instant>,
}

/// One connection to the syslog socket, reopened when the daemon restarts.
pub struct Syslog {
    path: PathBuf,
    facility: u8,
    pid: u32,
    conn: Mutex<Conn>,
}

impl Syslog {
    pub fn new(facility: u8) -> Syslog {
        Syslog::with_path(Path::new(DEV_LOG), facility)
    }

    pub fn with_path(path: &Path, facility: u8) -> Syslog {
        Syslog {
            path: path.to_path_buf(),
            facility,
            // Created after any fork, so this is the daemon's pid.
            pid: std::process::id(),
            conn: Mutex::new(Conn {
                sock: None,
                failed_at: None,
            }),
        }
    }

    /// The datagram for one line (its trailing newline dropped).
    pub fn format(&self, level: Level, line: &[u8], now: libc::time_t) -> Vec<u8> {
        let pri = self.facility * 8 + severity(level);
        let mut out = format!("<{pri}>{} {IDENT}[{}]: ", timestamp(now), self.pid).into_bytes();
        let mut msg = line;
        while let Some((b'\n' | b'\r', rest)) = msg.split_last() {
            msg = rest;
        }
        out.extend_from_slice(&msg[..msg.len().min(MAX_LINE)]);
        out
    }

    /// Sends one line. A syslog daemon that is away loses the line, as
    /// with syslog(3); it is tried again after [`RETRY_AFTER`].
    pub fn send(&self, level: Level, line: &[u8]) -> bool {
        // SAFETY: time(2) with a null pointer only returns the time.
        let now = unsafe { libc::time(std::ptr::null_mut()) };
        let datagram = self.format(level, line, now);
        let Ok(mut conn) = self.conn.lock() else {
            return false;
        };
        if let Some(sock) = &conn.sock {
            if sock.send(&datagram).is_ok() {
                return true;
            }
            // The daemon restarted (a new socket at the path) or is gone.
            conn.sock = None;
            conn.failed_at = None;
        }
        if conn.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return false;
        }
        let sock = UnixDatagram::unbound().and_then(|s| {
            s.connect(&self.path)?;
            s.send(&datagram)?;
            Ok(s)
        });
        match sock {
            Ok(s) => {
                conn.sock = Some(s);
                conn.failed_at = None;
                true
            }
            Err(_) => {
                conn.failed_at = Some(Instant::now());
                false
            }
        }
    }
}

/// `Mmm dd hh:mm:ss` in local time, the day space-padded (RFC 3164 §4.1.2).
fn timestamp(now: libc::time_t) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // SAFETY: an all-zero tm is a valid value for localtime_r to fill.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is the
    // thread-safe form.
    let ok = !unsafe { libc::localtime_r(&now, &mut tm) }.is_null();
    if !ok {
        return "Jan  1 00:00:00".to_string();
    }
    let month = MONTHS
        .get(usize::try_from(tm.tm_mon).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn facility_names_map_to_glibc_codes() {
        assert_eq!(facility_code("daemon").unwrap(), 3);
        assert_eq!(facility_code("LOCAL5").unwrap(), 21);
        assert_eq!(facility_code("security").unwrap(), 4);
        assert!(facility_code("bogus").is_err());
    }

    #[test]
    fn sends_rfc3164_lines_and_reconnects_to_a_new_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let log = Syslog::with_path(&path, facility_code("daemon").unwrap());

        assert!(log.send(Level::INFO, b"started, version 1\n"));
        let line = recv(&server);
        // <30> = daemon (3) * 8 + info (6).
        let rest = line
            .strip_prefix("<30>")
            .unwrap_or_else(|| panic!("{line}"));
        let (stamp, msg) = rest.split_at(15);
        let b = stamp.as_bytes();
        assert!(b[..3].iter().all(u8::is_ascii_alphabetic), "{stamp}");
        assert_eq!(
            (b[3], b[6], b[9], b[12]),
            (b' ', b' ', b':', b':'),
            "{stamp}"
        );
        assert_eq!(
            msg,
            format!(" twinmasq[{}]: started, version 1", std::process::id())
        );

        assert!(log.send(Level::ERROR, b"bad"));
        assert!(recv(&server).starts_with("<27>"));

        // The syslog daemon restarts: a new socket at the same path.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        let server = UnixDatagram::bind(&path).unwrap();
        assert!(log.send(Level::WARN, b"after restart"));
        let line = recv(&server);
        assert!(
            line.starts_with("<28>") && line.ends_with(": after restart"),
            "{line}"
        );
    }

    #[test]
    fn no_daemon_loses_the_line_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let log = Syslog::with_path(&dir.path().join("absent"), 3);
        assert!(!log.send(Level::INFO, b"nobody listens"));
        // Within RETRY_AFTER no new connect is even tried.
        assert!(!log.send(Level::INFO, b"still nobody"));
    }
}
