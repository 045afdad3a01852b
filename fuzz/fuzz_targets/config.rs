//! The config parser: conf-file text, then (after a NUL byte in the input,
//! if any) a command line, one argument per line.
//!
//! Inputs that would make the parser read other files from disk
//! (`conf-file`, `conf-dir`, and on the command line `-C`/`-7` or a prefix
//! of their long names) are skipped: the filesystem is not what is fuzzed,
//! and `conf-file=/dev/zero` would only measure the disk.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use twinmasq::config::{self, Config, ConfigError};
use twinmasq::dns::authority::Authority;

const READS_FILES: [&str; 2] = ["conf-file", "conf-dir"];

fn arg_reads_files(arg: &str) -> bool {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        !name.is_empty() && READS_FILES.iter().any(|o| o.starts_with(name))
    } else if let Some(short) = arg.strip_prefix('-') {
        short.contains(['C', '7'])
    } else {
        false
    }
}

/// An empty default conf file, so the command-line path reads nothing else.
fn empty_conf() -> &'static PathBuf {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = P.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("empty.conf");
        std::fs::write(&p, "").expect("write empty conf");
        (dir, p)
    });
    p
}

/// Either a Config or a ConfigError, the same each time, whose message
/// renders; a Config is one the DNS side can build its tables from.
fn check(parse: impl Fn() -> Result<Config, ConfigError>) {
    let first = parse();
    let again = parse();
    assert_eq!(
        format!("{first:?}"),
        format!("{again:?}"),
        "parsing is deterministic"
    );
    match first {
        Ok(cfg) => {
            let _ = Authority::new(&cfg, &[]);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty(), "an error says something");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (conf, cmdline) = match text.split_once('\0') {
        Some((c, a)) => (c, Some(a)),
        None => (&*text, None),
    };
    if !READS_FILES.iter().any(|o| conf.contains(o)) {
        check(|| config::parse_conf_text(conf, "fuzz.conf"));
    }
    if let Some(cmdline) = cmdline {
        let args: Vec<String> = cmdline.split('\n').map(str::to_string).collect();
        if !args.iter().any(|a| arg_reads_files(a)) {
            check(|| config::load_with_default(&args, empty_conf()));
        }
    }
});
