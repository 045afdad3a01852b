//! dnsmasq's lease file: `<expiry|0> <mac> <ip> <hostname|*> <client-id|*>`
//! per line. Exported for tools that read it; imported on first start.
//!
//! Conventions kept from dnsmasq so its tools and scripts read our file:
//! hex is lowercase, two digits, colon-separated; a hardware address whose
//! type is not Ethernet (1), or that is empty, is prefixed with its type as
//! two hex digits and a dash (`06-…`, `00-`); expiry 0 means infinite. Its
//! IPv6 section (a `duid <hex>` line, then lines whose address has colons)
//! and its `vendorclass`/`agent-info` extra lines are skipped on import.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use twinmasq_proto::{ClientKey, Expiry, LeaseRecord, LeaseState, Stamp};

use super::hw::{push_colon_hex, push_hw_text, HTYPE_ETHER};
use super::{LeaseDb, LeaseError};

fn file_err(path: &Path, message: impl Into<String>) -> LeaseError {
    LeaseError::LeaseFile {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A hostname that would break the space-separated line (or be read back as
/// "no name") cannot be written; `*` says "no name" instead.
fn writable_hostname(name: Option<&str>) -> Option<&str> {
    name.filter(|n| !n.is_empty() && *n != "*" && !n.chars().any(char::is_whitespace))
}

fn render_line(out: &mut String, rec: &LeaseRecord) {
    let _ = write!(out, "{} ", rec.expires.as_lease_file_secs());
    push_hw_text(out, rec.htype, &rec.hwaddr);
    let _ = write!(out, " {} ", rec.ip);
    out.push_str(writable_hostname(rec.hostname.as_deref()).unwrap_or("*"));
    out.push(' ');
    match rec.client_id.as_deref() {
        Some(id) if !id.is_empty() => push_colon_hex(out, id),
        _ => out.push('*'),
    }
    out.push('\n');
}

/// The lease file for the bound, unexpired records, ordered by address so
/// successive exports diff cleanly.
/// Lines for the active leases, in the order given ([`LeaseDb::iter`]
/// yields by address, as dnsmasq's file reads). Records are taken one at a
/// time, so rendering 100k leases never holds them all decoded at once.
pub fn render<R: std::borrow::Borrow<LeaseRecord>>(
    records: impl IntoIterator<Item = R>,
    now_secs: u64,
) -> String {
    let mut out = String::new();
    for rec in records {
        let rec = rec.borrow();
        if rec.is_active(now_secs) {
            render_line(&mut out, rec);
        }
    }
    out
}

/// Orders the server's exports: each rendering takes a number, and a text
/// is written only if no newer one was, so an export still running in the
/// background can neither collide with the final one at shutdown nor
/// overwrite it with older contents.
static EXPORTED: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
static EXPORT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The number of a rendering about to be taken: call just before `render`.
pub fn next_export() -> u64 {
    EXPORT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// [`write_atomic`] for rendering number `seq`, unless a newer one is out.
pub fn write_export(path: &Path, text: &str, seq: u64) -> Result<(), LeaseError> {
    // A panic elsewhere while holding it leaves a plain number behind.
    let mut newest = EXPORTED.lock().unwrap_or_else(|p| p.into_inner());
    if seq < *newest {
        return Ok(());
    }
    write_atomic(path, text)?;
    *newest = seq;
    Ok(())
}

/// Replaces `path` with `text` so a reader sees the old file or the new one,
/// never a torn one: write a temporary file beside it, fsync, rename over,
/// then fsync the directory so the rename itself survives a crash.
///
/// The directory may be one other users can write (OpenWrt's /tmp), so no
/// name there is trusted: the temporary file has a random name and is
/// created with `O_CREAT|O_EXCL|O_NOFOLLOW` (a name someone planted, a
/// symlink included, is never opened; another is drawn), and the rename
/// replaces a symlink at `path` rather than writing through it.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), LeaseError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| file_err(path, "not a file name"))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");

    let result = (|| {
        let created = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .make_in(dir, |tmp| {
                // 0666 before the umask, as `File::create` made it: tools
                // read the lease file as other users.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o666)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(tmp)
            });
        let mut tmp = match created {
            Ok(t) => t,
            // After the drop from root the directory may not be ours (a
            // shared /var/lib/misc) while the file is (see
            // service::privileges::hand_over): rewrite it in place, as
            // dnsmasq always does; never through a symlink.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(path)?;
                f.write_all(text.as_bytes())?;
                return f.sync_all();
            }
            Err(e) => return Err(e),
        };
        tmp.as_file_mut().write_all(text.as_bytes())?;
        tmp.as_file().sync_all()?;
        // On failure the temporary file is removed as `tmp` drops.
        tmp.persist(path).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| file_err(path, format!("cannot write: {e}")))
}

/// Why the lease file's directory invites trouble, if it does: a directory
/// every user may write (OpenWrt's /tmp) lets any local user take the lease
/// file's name first, a symlink or a file of their own, so that the server
/// cannot write its export; without the sticky bit they may also replace
/// or remove the file. Logged once at start.
pub fn directory_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mode = std::fs::metadata(dir).ok()?.mode();
    if mode & 0o002 == 0 {
        return None;
    }
    let what = if mode & 0o1000 != 0 {
        "any local user can take the lease file's name before the server writes it"
    } else {
        "any local user can replace or remove the lease file"
    };
    Some(format!(
        "the directory {} of dhcp-leasefile {} is world-writable: {what}; a directory only the server's user may write is safer",
        dir.display(),
        path.display()
    ))
}

/// Parses `aa:bb:cc`-style hex; dnsmasq also accepts single-digit groups.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(':')
        .map(|g| {
            if (1..=2).contains(&g.len()) {
                u8::from_str_radix(g, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// `<htype>-<hex>` or plain `<hex>` (Ethernet when non-empty).
fn parse_hwaddr(s: &str) -> Option<(u8, Vec<u8>)> {
    match s.split_once('-') {
        Some((t, rest)) if t.len() == 2 => {
            let htype = u8::from_str_radix(t, 16).ok()?;
            Some((htype, parse_hex(rest)?))
        }
        Some(_) => None,
        None => {
            let hw = parse_hex(s)?;
            let htype = if hw.is_empty() { 0 } else { HTYPE_ETHER };
            Some((htype, hw))
        }
    }
}

fn parse_line(fields: &[&str]) -> Result<Option<LeaseRecord>, String> {
    let [expiry, mac, ip, host, clid] = fields else {
        return Err(format!(
            "expected 5 fields (expiry mac ip hostname client-id), found {}",
            fields.len()
        ));
    };
    if ip.contains(':') {
        return Ok(None);
    }
    let expires = match expiry.parse::<u64>() {
        Ok(0) => Expiry::Never,
        Ok(t) => Expiry::At(t),
        Err(_) => return Err(format!("bad expiry time {expiry:?}")),
    };
    let (htype, hwaddr) =
        parse_hwaddr(mac).ok_or_else(|| format!("bad hardware address {mac:?}"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("bad IPv4 address {ip:?}"))?;
    let hostname = (*host != "*").then(|| host.to_string());
    let client_id = match *clid {
        "*" => None,
        s => Some(parse_hex(s).ok_or_else(|| format!("bad client-id {s:?}"))?),
    }
    .filter(|id| !id.is_empty());
    let client = match &client_id {
        Some(id) => ClientKey::from_client_id(id),
        None => ClientKey::from_hwaddr(htype, &hwaddr),
    };
    Ok(Some(LeaseRecord {
        ip,
        state: LeaseState::Bound,
        client,
        htype,
        hwaddr,
        client_id,
        hostname,
        expires,
        stamp: Stamp::default(),
    }))
}

/// Reads a dnsmasq lease file. Every record comes back `Bound` with a zero
/// stamp; the caller decides what is current. Errors name the line.
pub fn parse(text: &str, path: &Path) -> Result<Vec<LeaseRecord>, LeaseError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            None => continue,
            Some(&("duid" | "vendorclass" | "agent-info")) => continue,
            Some(_) => {}
        }
        match parse_line(&fields) {
            Ok(Some(rec)) => out.push(rec),
            Ok(None) => {}
            Err(msg) => return Err(file_err(path, format!("line {}: {msg}", n + 1))),
        }
    }
    Ok(out)
}

impl LeaseDb {
    /// Takes over a dnsmasq lease file on first start: only into an empty
    /// database (afterwards the database is the truth and the file only its
    /// export), and a missing file is no error. Leases already past their
    /// expiry come in as `Expired`, which keeps the client's address
    /// affinity without a burst of expiries. Lines the [`super::Admission`]
    /// rules refuse (an address this configuration does not serve, a
    /// hostname no DHCP client could have given, sizes or an expiry out of
    /// bounds) are dropped, with one warning for them all. Returns how many
    /// records came in.
    pub fn import_lease_file(&mut self, path: &Path, now_ms: u64) -> Result<usize, LeaseError> {
        if !self.is_empty() {
            return Ok(0);
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(file_err(path, format!("cannot read: {e}"))),
        };
        let mut records = parse(&text, path)?;
        let mut refused = super::Rejections::default();
        let mut first = None;
        records.retain(|rec| match self.check(rec, now_ms) {
            Ok(()) => true,
            Err(reason) => {
                refused.add(reason);
                first.get_or_insert((rec.ip, reason));
                false
            }
        });
        if let Some((ip, reason)) = first {
            tracing::warn!(
                "lease file {}: {} lease{} not imported ({}); the first, for {ip}: {}",
                path.display(),
                refused.total(),
                if refused.total() == 1 { "" } else { "s" },
                refused.summary(),
                reason.describe()
            );
        }
        let now_secs = now_ms / 1000;
        for rec in &mut records {
            if rec.expires.is_past(now_secs) {
                rec.state = LeaseState::Expired;
            }
        }
        self.commit_batch(records, now_ms)
    }
}

/// Paces lease-file rewrites: the shell marks it dirty on every change and
/// asks `due` when it may write, so a burst of changes costs one rewrite
/// per interval rather than one per change (dnsmasq's is one per reply).
#[derive(Debug)]
pub struct Exporter {
    path: PathBuf,
    min_interval_secs: u64,
    dirty: bool,
    last_write: Option<u64>,
}

impl Exporter {
    pub fn new(path: impl Into<PathBuf>, min_interval: Duration) -> Self {
        Exporter {
            path: path.into(),
            min_interval_secs: min_interval.as_secs(),
            // The file on disk may predate this run: write it once anyway.
            dirty: true,
            last_write: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Dirty and the interval since the last attempt has passed.
    pub fn due(&self, now_secs: u64) -> bool {
        self.dirty && self.next_due().is_some_and(|t| now_secs >= t)
    }

    /// When a write may next happen (unix seconds), if there is anything to
    /// write, so the shell knows how long to sleep.
    pub fn next_due(&self) -> Option<u64> {
        if !self.dirty {
            return None;
        }
        Some(match self.last_write {
            None => 0,
            Some(t) => t.saturating_add(self.min_interval_secs),
        })
    }

    /// Rewrites the file now. A failure leaves it dirty and still counts as
    /// an attempt, so a full disk is retried once per interval, not in a loop.
    pub fn write(&mut self, db: &LeaseDb, now_secs: u64) -> Result<(), LeaseError> {
        self.last_write = Some(now_secs);
        write_atomic(&self.path, &render(db.iter(), now_secs))?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::DbOptions;

    const SAMPLE: &str = "\
1700000000 52:54:00:12:34:56 198.18.0.57 laptop 01:52:54:00:12:34:56
0 52:54:00:aa:bb:cc 198.18.0.58 * *
1700000500 06-00:11:22:33:44:55 198.18.0.59 printer *
1700000600 00- 198.18.0.60 * ff:00:00:00:01:00:01:2c:9a:7b:10:52:54:00:00:00:01
";

    fn p() -> &'static Path {
        Path::new("/test/dnsmasq.leases")
    }

    #[test]
    fn parses_dnsmasq_lines() {
        let recs = parse(SAMPLE, p()).unwrap();
        assert_eq!(recs.len(), 4);
        let a = &recs[0];
        assert_eq!(a.expires, Expiry::At(1_700_000_000));
        assert_eq!(a.htype, 1);
        assert_eq!(a.hwaddr, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(a.ip, Ipv4Addr::new(198, 18, 0, 57));
        assert_eq!(a.hostname.as_deref(), Some("laptop"));
        let id = vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56];
        assert_eq!(a.client, ClientKey::from_client_id(&id));
        assert_eq!(a.client_id, Some(id));
        let b = &recs[1];
        assert_eq!(b.expires, Expiry::Never);
        assert_eq!((b.hostname.as_ref(), b.client_id.as_ref()), (None, None));
        assert_eq!(b.client, ClientKey::from_hwaddr(1, &b.hwaddr));
        assert_eq!((recs[2].htype, recs[2].hwaddr.len()), (6, 6));
        assert_eq!((recs[3].htype, recs[3].hwaddr.len()), (0, 0));
    }

    #[test]
    fn render_parse_round_trip_is_byte_exact() {
        let recs = parse(SAMPLE, p()).unwrap();
        assert_eq!(render(recs.iter(), 1_600_000_000), SAMPLE);
    }

    #[test]
    fn render_writes_only_bound_unexpired_in_given_order() {
        let mut recs = parse(SAMPLE, p()).unwrap();
        recs.reverse();
        recs[0].state = LeaseState::Released; // .60
        let text = render(recs.iter(), 1_700_000_000);
        let ips: Vec<&str> = text.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        // .57 expires at exactly now, so it is over.
        assert_eq!(ips, ["198.18.0.59", "198.18.0.58"]);
    }

    #[test]
    fn unwritable_hostnames_become_star() {
        let mut recs = parse(SAMPLE, p()).unwrap();
        recs[0].hostname = Some("two words".into());
        recs[1].hostname = Some(String::new());
        let text = render(recs[..2].iter(), 0);
        assert!(
            text.lines().all(|l| l.split(' ').nth(3) == Some("*")),
            "{text}"
        );
    }

    #[test]
    fn skips_duid_ipv6_and_extra_lines() {
        let text = format!(
            "{SAMPLE}duid 00:01:00:01:2c:9a:7b:10:52:54:00:00:00:01\n\
             1700000000 12345678 2001:db8::5 host6 00:01:00:01:2c\n\
             vendorclass 198.18.0.57 41:42\n\n"
        );
        assert_eq!(parse(&text, p()).unwrap().len(), 4);
    }

    #[test]
    fn errors_name_file_and_line() {
        for bad in [
            "1 52:54:00:12:34:56 198.18.0.5 host",
            "x 52:54:00:12:34:56 198.18.0.5 host *",
            "1 52:54:zz:12:34:56 198.18.0.5 host *",
            "1 52:54:00:12:34:56 198.18.0.500 host *",
            "1 52:54:00:12:34:56 198.18.0.5 host 01:xyz",
            "1 123-52:54 198.18.0.5 host *",
        ] {
            let text = format!("0 52:54:00:aa:bb:cc 198.18.0.58 * *\n{bad}\n");
            let e = parse(&text, p()).unwrap_err().to_string();
            assert!(
                e.contains("/test/dnsmasq.leases") && e.contains("line 2"),
                "{e}"
            );
        }
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsmasq.leases");
        write_atomic(&path, "old\n").unwrap();
        write_atomic(&path, SAMPLE).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SAMPLE);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write_atomic(&dir.path().join("no/such/dir/f"), "x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir/f"), "{e}");
    }

    #[test]
    fn import_only_into_empty_db() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dnsmasq.leases");
        let mut db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).unwrap();
        assert_eq!(
            db.import_lease_file(&file, 1_000).unwrap(),
            0,
            "missing file"
        );
        std::fs::write(&file, SAMPLE).unwrap();
        let now_ms = 1_700_000_100_000;
        assert_eq!(db.import_lease_file(&file, now_ms).unwrap(), 4);
        assert_eq!(db.len(), 4);
        // .57 ended before now: kept, but not as a bound lease.
        assert_eq!(db.bound_count(), 3);
        let laptop = db.get(Ipv4Addr::new(198, 18, 0, 57)).unwrap();
        assert_eq!(laptop.state, LeaseState::Expired);
        assert_eq!(
            db.by_hostname("PRINTER").unwrap().ip,
            Ipv4Addr::new(198, 18, 0, 59)
        );
        assert!(db.iter().all(|r| r.stamp.node == db.node_id()));
        assert_eq!(db.import_lease_file(&file, now_ms).unwrap(), 0, "not empty");
        assert_eq!(db.len(), 4);
    }

    #[test]
    fn import_reports_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dnsmasq.leases");
        std::fs::write(&file, "0 52:54:00:aa:bb:cc 198.18.0.58 *\n").unwrap();
        let mut db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).unwrap();
        let e = db.import_lease_file(&file, 1_000).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(db.is_empty());
    }

    /// Review §6, through the import: a line for an address outside every
    /// range, or with a hostname no DHCP client could have given (a leading
    /// `-`, a `;`), is dropped; the other lines come in.
    #[test]
    fn import_drops_records_outside_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dnsmasq.leases");
        std::fs::write(
            &file,
            "1900000000 52:54:00:aa:bb:01 198.18.0.58 laptop *\n\
             1900000000 52:54:00:aa:bb:02 198.18.0.59 -rf;reboot *\n\
             1900000000 52:54:00:aa:bb:03 8.8.8.8 dns *\n",
        )
        .unwrap();
        let mut db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).unwrap();
        let cfg =
            crate::config::parse_conf_text("dhcp-range=198.18.0.10,198.18.0.99\n", "t").unwrap();
        db.set_admission(crate::lease::Admission::from_config(&cfg));
        let now_ms = 1_800_000_000_000;
        assert_eq!(db.import_lease_file(&file, now_ms).unwrap(), 1);
        let ips: Vec<Ipv4Addr> = db.iter().map(|r| r.ip).collect();
        assert_eq!(ips, [Ipv4Addr::new(198, 18, 0, 58)]);
    }

    #[test]
    fn exporter_batches_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dnsmasq.leases");
        let mut db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).unwrap();
        let mut ex = Exporter::new(&file, Duration::from_secs(10));
        assert!(ex.due(100), "first write is always due");
        ex.write(&db, 100).unwrap();
        assert!(!ex.due(200) && ex.next_due().is_none());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "");

        let mut rec = parse(SAMPLE, p()).unwrap().remove(1);
        rec.expires = Expiry::At(2_000);
        db.commit(rec, 101_000).unwrap();
        ex.mark_dirty();
        assert!(!ex.due(105));
        assert_eq!(ex.next_due(), Some(110));
        assert!(ex.due(110));
        ex.write(&db, 110).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, "2000 52:54:00:aa:bb:cc 198.18.0.58 * *\n");
        assert!(!ex.is_dirty());
    }

    #[test]
    fn exporter_failure_stays_dirty_and_waits() {
        let dir = tempfile::tempdir().unwrap();
        let db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).unwrap();
        let mut ex = Exporter::new(
            dir.path().join("missing/dnsmasq.leases"),
            Duration::from_secs(5),
        );
        assert!(ex.write(&db, 50).is_err());
        assert!(ex.is_dirty());
        assert!(!ex.due(54));
        assert!(ex.due(55));
    }
}
