//! Conf-file lines and conf-dir listings.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Location};
use super::value::{hide, split_fields, unhide};

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// One conf-file line as `(name, value)`, or `None` for a blank or comment
/// line. See [`clean_line`] for quotes and comments.
pub(crate) fn split_line(
    raw: &str,
    at: &Location,
) -> Result<Option<(String, Option<String>)>, ConfigError> {
    let Some(line) = clean_line(raw, at)? else {
        return Ok(None);
    };
    let (name, value) = split_name_value(&line);
    Ok(Some((name.to_string(), value.map(str::to_string))))
}

/// A cleaned line's option name and value: `name=value`, blanks allowed
/// around the `=`, or a bare `name`.
pub(crate) fn split_name_value(line: &str) -> (&str, Option<&str>) {
    match line.split_once('=') {
        Some((name, value)) => (
            name.trim_end_matches([' ', '=']),
            Some(value.trim_start_matches(' ')),
        ),
        None => (line, None),
    }
}

/// Hands each line of a file read while running (SIGHUP) to `take`, with
/// its location, and logs what it or the line's syntax refuses: as in
/// dnsmasq, a bad line or a missing file is skipped, never fatal, so an
/// edited file cannot stop a running server. False when the file cannot be
/// read.
pub(crate) fn read_option_lines(
    path: &Path,
    mut take: impl FnMut(&str, &Location) -> Result<(), ConfigError>,
) -> bool {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            tracing::error!("cannot read {}: {e}", path.display());
            return false;
        }
    };
    let origin = path.display().to_string();
    for (i, raw) in text.lines().enumerate() {
        let at = Location::file(&origin, i + 1);
        let result = match clean_line(raw, &at) {
            Ok(None) => continue,
            Ok(Some(line)) => take(&line, &at),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!("{e}");
        }
    }
    true
}

/// A line with its comment and outer blanks gone, or `None` when nothing
/// is left: what `dhcp-hostsfile` and `dhcp-optsfile` lines hold whole.
/// Quoted text has its special characters hidden (see `value`); `\"`,
/// `\\`, `\t`, `\n`, `\r`, `\b` and `\e` are escapes inside quotes. A `#`
/// starting a word outside quotes starts a comment.
pub(crate) fn clean_line(raw: &str, at: &Location) -> Result<Option<String>, ConfigError> {
    let mut out = String::with_capacity(raw.len());
    let mut word_start = true;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConfigError::Syntax {
                            at: at.clone(),
                            reason: "missing closing \"".to_string(),
                        })
                    }
                    Some('"') => break,
                    Some('\\') => {
                        let escaped = match chars.peek() {
                            Some('"') => Some('"'),
                            Some('\\') => Some('\\'),
                            Some('t') => Some('\t'),
                            Some('n') => Some('\n'),
                            Some('r') => Some('\r'),
                            Some('b') => Some('\x08'),
                            Some('e') => Some('\x1b'),
                            _ => None,
                        };
                        match escaped {
                            Some(e) => {
                                chars.next();
                                out.push(hide(e));
                            }
                            None => out.push('\\'),
                        }
                    }
                    Some(q) => out.push(hide(q)),
                }
            }
            word_start = false;
        } else if is_space(c) {
            out.push(' ');
            word_start = true;
        } else if word_start && c == '#' {
            break;
        } else {
            out.push(c);
            word_start = false;
        }
    }
    let line = out.trim_matches(' ');
    Ok((!line.is_empty()).then(|| line.to_string()))
}

/// `conf-dir=dir[,.ext...][,*.ext...]`: which files of `dir` to read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DirSpec {
    pub dir: PathBuf,
    /// Read only names ending in one of these (from `*suffix`).
    pub only: Vec<String>,
    /// Skip names ending in one of these.
    pub skip: Vec<String>,
}

impl DirSpec {
    pub fn parse(value: &str) -> Result<DirSpec, String> {
        let fields = split_fields(value);
        let dir = unhide(fields[0]);
        if dir.is_empty() {
            return Err("empty directory name".to_string());
        }
        let mut spec = DirSpec {
            dir: PathBuf::from(dir),
            only: Vec::new(),
            skip: Vec::new(),
        };
        for f in &fields[1..] {
            let f = unhide(f);
            match f.strip_prefix('*') {
                // A lone `*` selects nothing in particular: all files.
                Some("") => {}
                Some(suffix) => spec.only.push(suffix.to_string()),
                None if f.is_empty() => {}
                None => spec.skip.push(f),
            }
        }
        Ok(spec)
    }

    /// Editor backups (`name~`, `#name#`) and dotfiles are never read.
    pub fn wants(&self, name: &OsStr) -> bool {
        let name = name.to_string_lossy();
        if name.is_empty()
            || name.starts_with('.')
            || name.ends_with('~')
            || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        {
            return false;
        }
        let ends = |s: &String| name.len() > s.len() && name.ends_with(s.as_str());
        if !self.only.is_empty() && !self.only.iter().any(ends) {
            return false;
        }
        !self.skip.iter().any(ends)
    }

    /// The regular files to read, sorted by path as dnsmasq does.
    pub fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !self.wants(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            if std::fs::metadata(&path)?.is_file() {
                out.push(path);
            }
        }
        out.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        Ok(out)
    }
}

pub(crate) fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Location {
        Location::file("t.conf", 1)
    }

    fn line(raw: &str) -> Option<(String, Option<String>)> {
        split_line(raw, &at())
            .unwrap()
            .map(|(n, v)| (n, v.map(|v| unhide(&v))))
    }

    fn nv(n: &str, v: Option<&str>) -> Option<(String, Option<String>)> {
        Some((n.to_string(), v.map(str::to_string)))
    }

    #[test]
    fn names_values_and_comments() {
        assert_eq!(line("port=5353"), nv("port", Some("5353")));
        assert_eq!(line("  port = 5353  "), nv("port", Some("5353")));
        assert_eq!(line("bind-interfaces"), nv("bind-interfaces", None));
        assert_eq!(line("# a comment"), None);
        assert_eq!(line("   "), None);
        assert_eq!(line(""), None);
        assert_eq!(line("  # indented comment"), None);
        assert_eq!(line("no-ping # trailing comment"), nv("no-ping", None));
        assert_eq!(
            line("domain=lan#notacomment"),
            nv("domain", Some("lan#notacomment"))
        );
        assert_eq!(line("interface=\ttmq0\r"), nv("interface", Some("tmq0")));
        assert_eq!(line("dhcp-option=3,"), nv("dhcp-option", Some("3,")));
        assert_eq!(line("port="), nv("port", Some("")));
    }

    #[test]
    fn quotes() {
        assert_eq!(
            line("dhcp-option=252,\"a, b # c\""),
            nv("dhcp-option", Some("252,a, b # c"))
        );
        assert_eq!(
            line(r#"dhcp-option=224,"x\"y\\z\tq""#),
            nv("dhcp-option", Some("224,x\"y\\z\tq"))
        );
        // Quoted commas do not split.
        let (_, v) = split_line("x=\"a,b\",c", &at()).unwrap().unwrap();
        assert_eq!(split_fields(&v.unwrap()).len(), 2);
        let err = split_line("x=\"open", &at()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "syntax error at line 1 of t.conf: missing closing \""
        );
    }

    #[test]
    fn dir_specs() {
        let s = DirSpec::parse("/etc/dnsmasq.d,.bak,*.conf").unwrap();
        assert_eq!(s.dir, PathBuf::from("/etc/dnsmasq.d"));
        assert_eq!(s.only, vec![".conf".to_string()]);
        assert_eq!(s.skip, vec![".bak".to_string()]);
        assert!(s.wants(OsStr::new("a.conf")));
        assert!(!s.wants(OsStr::new("a.conf.bak")));
        assert!(!s.wants(OsStr::new("a.txt")));
        assert!(!s.wants(OsStr::new(".conf")));
        assert!(!s.wants(OsStr::new(".hidden.conf")));
        let all = DirSpec::parse("/d,*").unwrap();
        assert!(all.wants(OsStr::new("x")));
        assert!(!all.wants(OsStr::new("x~")));
        assert!(!all.wants(OsStr::new("#x#")));
        assert!(DirSpec::parse("").is_err());
    }
}
