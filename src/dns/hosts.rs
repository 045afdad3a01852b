//! Hosts-file text (`/etc/hosts` format) to entries. The shell reads the
//! file; this only parses, so it is tested on strings.

use std::net::IpAddr;

/// One line: an address and its names (lowercase, no trailing dot), the
/// first name being the one reverse lookups answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    pub addr: IpAddr,
    pub names: Vec<String>,
}

/// A line that was skipped, with its 1-based number, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BadLine {
    pub line: usize,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedHosts {
    pub entries: Vec<HostsEntry>,
    pub bad: Vec<BadLine>,
}

/// Parse hosts-file text. Comments run from `#` to the end of the line;
/// blank lines are ignored; a line whose address does not parse, or that
/// has no valid name, is skipped and reported. Invalid names on an
/// otherwise good line are dropped, the rest kept.
pub fn parse(text: &str) -> ParsedHosts {
    let mut out = ParsedHosts::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(addr_text) = fields.next() else {
            continue;
        };
        // A zone index ("fe80::1%eth0") means nothing to DNS; drop it.
        let addr_text = addr_text.split('%').next().unwrap_or(addr_text);
        let Ok(addr) = addr_text.parse::<IpAddr>() else {
            out.bad.push(BadLine {
                line: i + 1,
                reason: "bad address",
            });
            continue;
        };
        let names: Vec<String> = fields
            .filter(|n| valid_name(n))
            .map(super::names::normalize)
            .collect();
        if names.is_empty() {
            out.bad.push(BadLine {
                line: i + 1,
                reason: "no valid name",
            });
            continue;
        }
        out.entries.push(HostsEntry { addr, names });
    }
    out
}

/// Hostname characters as hosts files use them: letters, digits, `-`, `_`
/// and dots between non-empty labels of at most 63 bytes.
fn valid_name(n: &str) -> bool {
    let n = n.strip_suffix('.').unwrap_or(n);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_v6_comments_and_counts_bad_lines() {
        let text = "# comment\n\
                    198.18.0.5 HostFile hostfile.alias # trailing\n\
                    \n\
                    2001:db8::6\tv6only\n\
                    not-an-ip foo\n\
                    198.18.0.9\n\
                    198.18.0.10 bad..name good\n\
                    fe80::1%eth0 linklocal\n";
        let p = parse(text);
        assert_eq!(p.entries.len(), 4);
        assert_eq!(p.entries[0].addr, "198.18.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(p.entries[0].names, vec!["hostfile", "hostfile.alias"]);
        assert_eq!(p.entries[1].names, vec!["v6only"]);
        assert_eq!(p.entries[2].names, vec!["good"]);
        assert_eq!(p.entries[3].addr, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            p.bad,
            vec![
                BadLine {
                    line: 5,
                    reason: "bad address"
                },
                BadLine {
                    line: 6,
                    reason: "no valid name"
                },
            ]
        );
    }
}
