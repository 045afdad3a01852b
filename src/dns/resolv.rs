//! Upstream servers from resolv files, and noticing when those change.
//!
//! As dnsmasq: of several `resolv-file`s, the one changed last is used;
//! each is looked at (one `stat`) at most once a second unless `no-poll`,
//! and a file that changed is read again. A file that names no server
//! keeps the servers we had and is read again at the next look, with one
//! warning ("no servers found in FILE, will retry").
//!
//! [`ResolvWatch`] decides from what `stat` said, so it is tested without
//! files; [`ResolvWatch::poll`] does the looking and the reading.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::Config;

/// dnsmasq looks at its resolv files at most once a second.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// What `stat` says of a file, enough to see that it was rewritten:
/// the inode moves on an atomic replace, the length on most edits, and the
/// modification time (to the nanosecond) on the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub mtime: SystemTime,
    pub len: u64,
    pub inode: u64,
}

impl Stamp {
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            mtime: m.modified()?,
            len: m.len(),
            inode: m.ino(),
        })
    }
}

/// The resolv files and what was last seen of each.
#[derive(Debug)]
pub struct ResolvWatch {
    files: Vec<PathBuf>,
    seen: Vec<Option<Stamp>>,
    /// Files whose absence was logged already, so a missing file is
    /// reported once, not every second.
    missing_logged: Vec<bool>,
    /// "no servers found" was logged for the current change.
    empty_warned: bool,
}

/// The upstream servers a (re-)read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reread {
    pub path: PathBuf,
    pub servers: Vec<SocketAddr>,
}

impl ResolvWatch {
    /// None with `no-resolv`: there is nothing to watch.
    pub fn new(cfg: &Config) -> Option<ResolvWatch> {
        if cfg.dns.no_resolv || cfg.dns.resolv_files.is_empty() {
            return None;
        }
        let n = cfg.dns.resolv_files.len();
        Some(ResolvWatch {
            files: cfg.dns.resolv_files.clone(),
            seen: vec![None; n],
            missing_logged: vec![false; n],
            empty_warned: false,
        })
    }

    /// Which file to read, given each file's stamp now (None: cannot be
    /// looked at). `force` reads the newest file even if nothing changed
    /// (start-up, SIGHUP with no-poll). Records the stamps.
    pub fn decide(&mut self, now: &[Option<Stamp>], force: bool) -> Option<usize> {
        let changed = force || now.iter().zip(&self.seen).any(|(now, seen)| now != seen);
        self.seen = now.to_vec();
        if !changed {
            return None;
        }
        // The file changed last, as dnsmasq's "latest" file; a file that
        // vanished leaves the choice to the others.
        now.iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s.mtime)))
            .max_by_key(|(i, t)| (*t, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    }

    /// The file read named no server: forget its stamp, so that the next
    /// poll reads it again. True the first time (warn once).
    pub fn found_nothing(&mut self, i: usize) -> bool {
        if let Some(s) = self.seen.get_mut(i) {
            *s = None;
        }
        !std::mem::replace(&mut self.empty_warned, true)
    }

    /// One look at the files: the servers of the newest one if something
    /// changed and it names any. Logs as dnsmasq does.
    pub fn poll(&mut self, force: bool) -> Option<Reread> {
        let now: Vec<Option<Stamp>> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, p)| match Stamp::of(p) {
                Ok(s) => {
                    self.missing_logged[i] = false;
                    Some(s)
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.missing_logged[i], true) {
                        tracing::warn!("failed to access {}: {e}", p.display());
                    }
                    None
                }
            })
            .collect();
        let i = self.decide(&now, force)?;
        let path = self.files[i].clone();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("failed to access {}: {e}", path.display());
                self.found_nothing(i);
                return None;
            }
        };
        let servers = parse_resolv(&text);
        if servers.is_empty() {
            if self.found_nothing(i) {
                tracing::warn!("no servers found in {}, will retry", path.display());
            }
            return None;
        }
        self.empty_warned = false;
        tracing::info!("reading {}", path.display());
        Some(Reread { path, servers })
    }
}

/// The `nameserver` lines of a resolv.conf, on port 53.
pub fn parse_resolv(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = w.next()?.parse().ok()?;
            // A resolv.conf pointing at ourselves would loop.
            (!ip.is_loopback()).then_some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The default upstream servers: the `server=` lines, then those of the
/// resolv file in use.
pub fn combine(cfg: &Config, from_resolv: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut servers = cfg.dns.servers.clone();
    servers.extend(from_resolv.iter().copied());
    servers
}

/// dnsmasq's "using nameserver A#PORT" lines.
pub fn log_servers(servers: &[SocketAddr]) {
    for s in servers {
        tracing::info!("using nameserver {}#{}", s.ip(), s.port());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::authority::Authority;
    use crate::dns::engine::{Action, ClientRef, DnsEngine, Transport};

    fn stamp(secs: u64, len: u64, inode: u64) -> Option<Stamp> {
        Some(Stamp {
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            len,
            inode,
        })
    }

    fn watch(n: usize) -> ResolvWatch {
        let mut cfg = Config::default();
        cfg.dns.resolv_files = (0..n).map(|i| PathBuf::from(format!("/r{i}"))).collect();
        ResolvWatch::new(&cfg).unwrap()
    }

    #[test]
    fn nothing_to_watch_with_no_resolv() {
        let mut cfg = Config::default();
        cfg.dns.no_resolv = true;
        assert!(ResolvWatch::new(&cfg).is_none());
    }

    #[test]
    fn a_change_of_any_kind_is_seen_once() {
        let mut w = watch(1);
        assert_eq!(w.decide(&[stamp(10, 30, 1)], true), Some(0));
        assert_eq!(w.decide(&[stamp(10, 30, 1)], false), None);
        // Same second, other length: an edit within the mtime's second.
        assert_eq!(w.decide(&[stamp(10, 31, 1)], false), Some(0));
        assert_eq!(w.decide(&[stamp(10, 31, 1)], false), None);
        // Renamed over (atomic replace): a new inode.
        assert_eq!(w.decide(&[stamp(10, 31, 2)], false), Some(0));
        assert_eq!(w.decide(&[stamp(11, 31, 2)], false), Some(0));
        // Gone: nothing to read, and the old servers stay.
        assert_eq!(w.decide(&[None], false), None);
        assert_eq!(w.decide(&[None], false), None);
        // Back again.
        assert_eq!(w.decide(&[stamp(12, 31, 3)], false), Some(0));
        // Forced (SIGHUP with no-poll): read though unchanged.
        assert_eq!(w.decide(&[stamp(12, 31, 3)], true), Some(0));
    }

    #[test]
    fn the_newest_file_is_the_one_used() {
        let mut w = watch(3);
        assert_eq!(
            w.decide(&[stamp(10, 1, 1), stamp(20, 1, 2), None], true),
            Some(1)
        );
        assert_eq!(
            w.decide(&[stamp(30, 1, 1), stamp(20, 1, 2), None], false),
            Some(0)
        );
        assert_eq!(
            w.decide(&[stamp(30, 1, 1), stamp(20, 1, 2), stamp(40, 1, 3)], false),
            Some(2)
        );
        // The newest vanishes: the next newest takes over.
        assert_eq!(
            w.decide(&[stamp(30, 1, 1), stamp(20, 1, 2), None], false),
            Some(0)
        );
        // Equal times: the first named wins.
        let mut w = watch(2);
        assert_eq!(w.decide(&[stamp(5, 1, 1), stamp(5, 2, 2)], true), Some(0));
    }

    #[test]
    fn an_empty_file_is_retried_and_warned_about_once() {
        let mut w = watch(1);
        assert_eq!(w.decide(&[stamp(10, 0, 1)], true), Some(0));
        assert!(w.found_nothing(0));
        // Unchanged, but its stamp was forgotten: looked at again.
        assert_eq!(w.decide(&[stamp(10, 0, 1)], false), Some(0));
        assert!(!w.found_nothing(0));
    }

    #[test]
    fn poll_reads_the_file_and_sees_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let mut cfg = Config::default();
        cfg.dns.resolv_files = vec![path.clone()];
        let mut w = ResolvWatch::new(&cfg).unwrap();
        // Missing: nothing, no panic.
        assert_eq!(w.poll(true), None);
        std::fs::write(&path, "search lan\nnameserver 198.18.0.60\n").unwrap();
        let r = w.poll(false).unwrap();
        assert_eq!(r.servers, vec!["198.18.0.60:53".parse().unwrap()]);
        assert_eq!(w.poll(false), None);
        std::fs::write(&path, "nameserver 2001:db8::60\nnameserver 127.0.0.1\n").unwrap();
        let r = w.poll(false).unwrap();
        assert_eq!(r.servers, vec!["[2001:db8::60]:53".parse().unwrap()]);
        std::fs::write(&path, "# nothing\n").unwrap();
        assert_eq!(w.poll(false), None);
        std::fs::write(&path, "nameserver 198.18.0.61\n").unwrap();
        assert_eq!(
            w.poll(false).unwrap().servers,
            vec!["198.18.0.61:53".parse().unwrap()]
        );
    }

    /// A query for `name` as a UDP client would send it.
    fn query(id: u16, name: &str) -> Vec<u8> {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RecordType};
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    fn answer_to(wire: &[u8]) -> Vec<u8> {
        use hickory_proto::op::{Message, MessageType, OpCode};
        use hickory_proto::rr::{rdata::A, RData, Record};
        let q = Message::from_vec(wire).unwrap();
        let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.queries = q.queries.clone();
        let name = q.queries[0].name().clone();
        r.answers = vec![Record::from_rdata(
            name,
            60,
            RData::A(A::new(198, 18, 5, 1)),
        )];
        r.edns = q.edns.clone();
        r.to_vec().unwrap()
    }

    fn upstream_sends(actions: &[Action]) -> Vec<(SocketAddr, u64, Vec<u8>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Upstream {
                    server,
                    socket,
                    bytes,
                } => Some((*server, *socket, bytes.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn swapping_servers_keeps_queries_in_flight_answerable() {
        let mut cfg = Config::default();
        cfg.dns.no_resolv = true;
        let old: SocketAddr = "198.18.0.60:53".parse().unwrap();
        let new: SocketAddr = "[2001:db8::61]:53".parse().unwrap();
        let auth = Authority::new(&cfg, &[]);
        let mut e = DnsEngine::with_seed(&cfg.dns, auth, 7);
        e.set_servers(vec![old]);
        let client = ClientRef {
            addr: "[2001:db8::10]:5000".parse().unwrap(),
            transport: Transport::Udp,
            conn: 1,
            arrival: None,
        };
        let sent = upstream_sends(&e.query(&query(1, "a.example.net."), client.clone(), 1000));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, old);

        // The resolv file now names another server.
        e.set_servers(vec![new]);
        assert_eq!(e.pending_len(), 1, "the query in flight is kept");
        // Its answer from the old server still reaches the client.
        let (_, socket, wire) = &sent[0];
        let acts = e.upstream_reply(&answer_to(wire), old, *socket, 1010);
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::Reply { client: c, .. } if c.conn == 1)),
            "{acts:?}"
        );
        assert_eq!(e.pending_len(), 0);

        // New queries go to the new server only, IPv6 included.
        let sent = upstream_sends(&e.query(&query(2, "b.example.net."), client, 1020));
        assert_eq!(sent.iter().map(|s| s.0).collect::<Vec<_>>(), vec![new]);
        // An answer from the old server to the new query is not taken.
        let (_, socket, wire) = &sent[0];
        assert!(e
            .upstream_reply(&answer_to(wire), old, *socket, 1030)
            .is_empty());
        assert_eq!(e.pending_len(), 1);
        let acts = e.upstream_reply(&answer_to(wire), new, *socket, 1040);
        assert!(acts.iter().any(|a| matches!(a, Action::Reply { .. })));
    }
}
