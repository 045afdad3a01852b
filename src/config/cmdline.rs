//! argv with getopt_long's rules: `--name=value`, `--name value` (when a
//! value is required), unambiguous prefixes of long names, and short flags
//! that combine (`-dk`) or carry their value (`-Cfile`, `-C file`).

use super::error::{ConfigError, Location};
use super::table::{self, Arg, OptionDef};

pub(crate) type Item = (&'static OptionDef, Option<String>);

pub(crate) fn parse(args: &[String]) -> Result<Vec<Item>, ConfigError> {
    let at = Location::CommandLine;
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(junk) = args[i..].iter().find(|a| !a.trim().is_empty()) {
                return Err(junk_error(junk));
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, mut value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let def = match table::by_prefix(name) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    return Err(ConfigError::UnknownOption {
                        name: name.to_string(),
                        at,
                    })
                }
                Err(candidates) => {
                    return Err(ConfigError::Ambiguous {
                        option: format!("--{name}"),
                        at,
                        candidates: candidates.join(", "),
                    })
                }
            };
            if def.arg == Arg::Required && value.is_none() {
                match args.get(i) {
                    Some(next) => {
                        value = Some(next.clone());
                        i += 1;
                    }
                    None => {
                        return Err(ConfigError::MissingValue {
                            option: def.name.to_string(),
                            at,
                        })
                    }
                }
            }
            out.push((def, value));
        } else if let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) {
            for (pos, c) in flags.char_indices() {
                let def = table::by_short(c).ok_or_else(|| ConfigError::UnknownOption {
                    name: format!("-{c}"),
                    at: at.clone(),
                })?;
                if !def.short_takes_value() {
                    out.push((def, None));
                    continue;
                }
                let attached = &flags[pos + c.len_utf8()..];
                let value = if !attached.is_empty() {
                    attached.to_string()
                } else if let Some(next) = args.get(i) {
                    i += 1;
                    next.clone()
                } else {
                    return Err(ConfigError::MissingValue {
                        option: def.name.to_string(),
                        at,
                    });
                };
                out.push((def, Some(value)));
                break;
            }
        } else if !arg.trim().is_empty() {
            // getopt leaves non-options for the end; dnsmasq rejects them.
            return Err(junk_error(arg));
        }
    }
    Ok(out)
}

fn junk_error(arg: &str) -> ConfigError {
    ConfigError::Syntax {
        at: Location::CommandLine,
        reason: format!("unexpected argument '{arg}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn parsed(a: &[&str]) -> Vec<(&'static str, Option<String>)> {
        parse(&args(a))
            .unwrap()
            .into_iter()
            .map(|(d, v)| (d.name, v))
            .collect()
    }

    fn s(n: &'static str, v: Option<&str>) -> (&'static str, Option<String>) {
        (n, v.map(str::to_string))
    }

    #[test]
    fn long_forms() {
        assert_eq!(parsed(&["--port=5353"]), vec![s("port", Some("5353"))]);
        assert_eq!(parsed(&["--port", "5353"]), vec![s("port", Some("5353"))]);
        assert_eq!(parsed(&["--no-daemon"]), vec![s("no-daemon", None)]);
        // Optional values are only taken with '='.
        assert_eq!(
            parsed(&["--conf-file", "--no-daemon"]),
            vec![s("conf-file", None), s("no-daemon", None)]
        );
        assert_eq!(parsed(&["--keep-in"]), vec![s("keep-in-foreground", None)]);
        assert_eq!(
            parsed(&["--dhcp-range=a,b"]),
            vec![s("dhcp-range", Some("a,b"))]
        );
    }

    #[test]
    fn short_forms() {
        assert_eq!(
            parsed(&["-C", "/x.conf"]),
            vec![s("conf-file", Some("/x.conf"))]
        );
        assert_eq!(
            parsed(&["-C/x.conf"]),
            vec![s("conf-file", Some("/x.conf"))]
        );
        assert_eq!(
            parsed(&["-dk"]),
            vec![s("no-daemon", None), s("keep-in-foreground", None)]
        );
        assert_eq!(
            parsed(&["-dkp5353"]),
            vec![
                s("no-daemon", None),
                s("keep-in-foreground", None),
                s("port", Some("5353"))
            ]
        );
        assert_eq!(
            parsed(&["-zK"]),
            vec![s("bind-interfaces", None), s("dhcp-authoritative", None)]
        );
        for (flag, name) in [
            ("-F", "dhcp-range"),
            ("-G", "dhcp-host"),
            ("-O", "dhcp-option"),
            ("-X", "dhcp-lease-max"),
            ("-l", "dhcp-leasefile"),
            ("-s", "domain"),
            ("-i", "interface"),
            ("-I", "except-interface"),
            ("-a", "listen-address"),
            ("-8", "log-facility"),
            ("-x", "pid-file"),
            ("-u", "user"),
            ("-g", "group"),
            ("-p", "port"),
        ] {
            assert_eq!(parsed(&[flag, "v"]), vec![s(name, Some("v"))], "{flag}");
        }
    }

    #[test]
    fn errors() {
        let e = parse(&args(&["--frobnicate"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown option 'frobnicate' on the command line"
        );
        let e = parse(&args(&["-%"])).unwrap_err();
        assert_eq!(e.to_string(), "unknown option '-%' on the command line");
        let e = parse(&args(&["--port"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "option 'port' on the command line needs a value"
        );
        let e = parse(&args(&["-C"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "option 'conf-file' on the command line needs a value"
        );
        let e = parse(&args(&["stray"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "syntax error on the command line: unexpected argument 'stray'"
        );
        let e = parse(&args(&["--", "stray"])).unwrap_err();
        assert!(e.to_string().contains("'stray'"));
        let e = parse(&args(&["--dhcp"])).unwrap_err();
        assert!(e.to_string().contains("ambiguous"), "{e}");
        assert!(parse(&args(&["--", " "])).unwrap().is_empty());
    }
}
