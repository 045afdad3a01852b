//! dnsmasq lease-file import: the fuzz input is the file's text.
//!
//! Each input is parsed, rendered back and parsed again (what we write we
//! read back the same), then imported for real, the way a first start takes
//! over dnsmasq's file: written to disk and read by `import_lease_file` into
//! a fresh, empty sled database.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use twinmasq::lease::lease_file::{parse, render};
use twinmasq::lease::{DbOptions, LeaseDb};
use twinmasq_proto::LeaseState;

const NOW_MS: u64 = 1_800_000_000_000;

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/dnsmasq.leases");
    let Ok(records) = parse(text, path) else {
        return;
    };
    // Every parsed record is bound and unexpired at time 0, so all of them
    // are rendered; reading the rendering gives the same records.
    let rendered = render(&records, 0);
    let back = parse(&rendered, path)
        .unwrap_or_else(|e| panic!("our own rendering does not parse: {e}\n{rendered}"));
    assert_eq!(back, records, "render/parse round trip\n{rendered}");

    let dir = tempfile::tempdir_in(scratch()).expect("temp dir");
    let file = dir.path().join("dnsmasq.leases");
    std::fs::write(&file, text).expect("write lease file");
    let mut db = LeaseDb::open(&dir.path().join("db"), DbOptions::default()).expect("sled opens");
    let n = db
        .import_lease_file(&file, NOW_MS)
        .unwrap_or_else(|e| panic!("a file that parses imports: {e}"));
    // The admission rules (a legal host label, sizes, expiry) drop some
    // lines; every other one comes in.
    let admitted: Vec<_> = records
        .iter()
        .filter(|r| db.admission().check(r, NOW_MS).is_ok())
        .collect();
    assert_eq!(
        n,
        admitted.len(),
        "every admitted record is imported into the empty database"
    );
    // Stored under the address, so a later line for the same address wins;
    // what is stored is what the file said, expired or not by the clock.
    for rec in &admitted {
        let stored = db.get(rec.ip).expect("an imported address is stored");
        let last = admitted
            .iter()
            .rev()
            .find(|r| r.ip == rec.ip)
            .expect("present");
        assert_eq!(stored.hwaddr, last.hwaddr);
        assert_eq!(stored.client_id, last.client_id);
        assert_eq!(stored.hostname, last.hostname);
        let want = if last.expires.is_past(NOW_MS / 1000) {
            LeaseState::Expired
        } else {
            LeaseState::Bound
        };
        assert_eq!(stored.state, want);
    }
});
