//! The renderer against a strict reading of the text format, and the
//! exact lines a few snapshots must give.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use twinmasq_proto::link::Role;

use super::*;
use crate::dhcp::stats::{Ignored, Stats};
use crate::dns::engine::DnsStats;
use crate::failover::status::FailoverStatus;
use crate::metrics::snapshot::{DhcpShellCounters, DhcpSnapshot, DnsSnapshot, RangeSnapshot};

/// Checks every line of `text` against exposition format 0.0.4 as this
/// project writes it and returns the samples (series -> value).
fn parse_strict(text: &str) -> BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        let mut cs = n.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut helped = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    assert!(text.ends_with('\n'), "text must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(name_ok(name), "{line}");
            assert!(!help.is_empty(), "{line}");
            assert!(helped.insert(name.to_string()), "second HELP: {line}");
            assert!(!types.contains_key(name), "HELP after TYPE: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(helped.contains(name), "TYPE without HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "second TYPE: {line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("labels end with }");
                let mut rest = labels;
                while !rest.is_empty() {
                    let (k, v) = rest.split_once("=\"").expect("label=\"value\"");
                    assert!(name_ok(k) && !k.starts_with("__"), "{line}");
                    // The value runs to the first quote not escaped.
                    let mut end = None;
                    let mut escaped = false;
                    for (i, c) in v.char_indices() {
                        match (escaped, c) {
                            (true, _) => escaped = false,
                            (false, '\\') => escaped = true,
                            (false, '"') => {
                                end = Some(i);
                                break;
                            }
                            _ => {}
                        }
                    }
                    let end = end.unwrap_or_else(|| panic!("unterminated label: {line}"));
                    rest = &v[end + 1..];
                    rest = rest.strip_prefix(',').unwrap_or(rest);
                }
                name
            }
            None => series,
        };
        assert!(name_ok(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                let base = name.strip_suffix(s)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without TYPE: {line}");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "duplicate series: {line}"
        );
    }
    samples
}

fn dhcp_snapshot(failover: Option<FailoverStatus>) -> DhcpSnapshot {
    let mut stats = Stats {
        received: 20,
        discover: 7,
        request: 6,
        decline: 1,
        release: 2,
        inform: 1,
        offers: 7,
        acks: 5,
        naks: 1,
        ..Stats::default()
    };
    stats.count_ignored(Ignored::NotForUs);
    stats.count_ignored(Ignored::NotForUs);
    DhcpSnapshot {
        stats,
        shell: DhcpShellCounters {
            send_errors: 3,
            ..DhcpShellCounters::default()
        },
        ranges: vec![
            RangeSnapshot {
                start: Ipv4Addr::new(198, 18, 0, 100),
                end: Ipv4Addr::new(198, 18, 0, 199),
                size: 100,
                free: 96,
                leases: 3,
            },
            RangeSnapshot {
                start: Ipv4Addr::new(198, 18, 1, 10),
                end: Ipv4Addr::new(198, 18, 1, 10),
                size: 1,
                free: 1,
                leases: 0,
            },
        ],
        leases_bound: 4,
        failover,
        now_unix_ms: 1_000_000,
    }
}

fn primary(state: &str) -> FailoverStatus {
    FailoverStatus {
        role: Role::Primary,
        state: state.into(),
        partner: None,
        partner_node: Some(9),
        linked: state == "linked",
        last_sync_unix_ms: Some(997_500),
        unacked: 12,
        conflicts: 2,
        full_syncs: 1,
        resumed_syncs: 0,
        clock_skew_ms: Some(-250),
        partner_down_since_unix_ms: None,
        rejected: crate::lease::Rejections {
            stamp: 3,
            hostname: 1,
            ..Default::default()
        },
        config_mismatch: None,
        recovering_until_unix_ms: None,
    }
}

fn dns_snapshot() -> DnsSnapshot {
    let mut stats = DnsStats {
        queries: 10,
        local_answers: 4,
        cache_hits: 3,
        cache_misses: 3,
        forwarded: 2,
        coalesced: 6,
        case_fallbacks: 1,
        refused: 1,
        upstream_replies: 2,
        ..DnsStats::default()
    };
    stats.upstream_latency.observe(3);
    stats.upstream_latency.observe(40);
    stats.dropped.junk = 5;
    stats.dropped.case_mismatch = 2;
    DnsSnapshot {
        stats,
        cache: crate::dns::cache::CacheStats {
            insertions: 2,
            evictions: 1,
            expired: 0,
        },
        cache_entries: 1,
        cache_capacity: 150,
        pending: 0,
    }
}

fn scrape(dhcp: Source<DhcpSnapshot>, dns: Source<DnsSnapshot>) -> Scrape {
    Scrape {
        version: "0.1.0".into(),
        uptime_secs: 42,
        dhcp,
        dns,
    }
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in:\n{text}"
    );
}

#[test]
fn full_scrape_is_valid_and_exact() {
    let text = render(&scrape(
        Source::Answered(dhcp_snapshot(Some(primary("linked")))),
        Source::Answered(dns_snapshot()),
    ));
    let samples = parse_strict(&text);
    for line in [
        "# TYPE twinmasq_dhcp_requests_total counter",
        "twinmasq_build_info{version=\"0.1.0\"} 1",
        "twinmasq_uptime_seconds 42",
        "twinmasq_scrape_source_up{source=\"dhcp\"} 1",
        "twinmasq_scrape_source_up{source=\"dns\"} 1",
        "twinmasq_dhcp_received_total 20",
        "twinmasq_dhcp_requests_total{type=\"discover\"} 7",
        "twinmasq_dhcp_requests_total{type=\"decline\"} 1",
        "twinmasq_dhcp_replies_total{type=\"offer\"} 7",
        "twinmasq_dhcp_replies_total{type=\"nak\"} 1",
        "twinmasq_dhcp_ignored_total{reason=\"not_for_us\"} 2",
        "twinmasq_dhcp_ignored_total{reason=\"lease_max\"} 0",
        "twinmasq_dhcp_send_errors_total 3",
        "twinmasq_dhcp_leases_bound 4",
        "twinmasq_dhcp_range_addresses{range=\"198.18.0.100-198.18.0.199\"} 100",
        "twinmasq_dhcp_range_free_addresses{range=\"198.18.0.100-198.18.0.199\"} 96",
        "twinmasq_dhcp_range_leases{range=\"198.18.0.100-198.18.0.199\"} 3",
        "twinmasq_dhcp_range_leases{range=\"198.18.1.10-198.18.1.10\"} 0",
        "twinmasq_failover_state{role=\"primary\",state=\"linked\"} 1",
        "twinmasq_failover_state{role=\"primary\",state=\"unlinked\"} 0",
        "twinmasq_failover_linked 1",
        "twinmasq_failover_unacked_updates 12",
        "twinmasq_failover_conflicts_total 2",
        "twinmasq_failover_rejected_total{reason=\"stamp\"} 3",
        "twinmasq_failover_rejected_total{reason=\"hostname\"} 1",
        "twinmasq_failover_rejected_total{reason=\"address\"} 0",
        "twinmasq_failover_rejected_total{reason=\"client_id\"} 0",
        "twinmasq_failover_full_syncs_total 1",
        "twinmasq_failover_resumed_syncs_total 0",
        "twinmasq_failover_last_sync_age_seconds 2.5",
        "twinmasq_failover_clock_skew_seconds -0.25",
        "twinmasq_dns_queries_total 10",
        "twinmasq_dns_local_answers_total 4",
        "twinmasq_dns_cache_hits_total 3",
        "twinmasq_dns_cache_misses_total 3",
        "twinmasq_dns_forwarded_total 2",
        "twinmasq_dns_error_replies_total{rcode=\"refused\"} 1",
        "twinmasq_dns_dropped_total{reason=\"junk\"} 5",
        "twinmasq_dns_coalesced_total 6",
        "twinmasq_dns_case_fallbacks_total 1",
        "twinmasq_dns_dropped_total{reason=\"case_mismatch\"} 2",
        "twinmasq_dns_cache_entries 1",
        "twinmasq_dns_cache_capacity 150",
        "twinmasq_dns_cache_insertions_total 2",
        "twinmasq_dns_cache_evictions_total 1",
        "# TYPE twinmasq_dns_upstream_latency_seconds histogram",
        "twinmasq_dns_upstream_latency_seconds_bucket{le=\"0.001\"} 0",
        "twinmasq_dns_upstream_latency_seconds_bucket{le=\"0.005\"} 1",
        "twinmasq_dns_upstream_latency_seconds_bucket{le=\"0.05\"} 2",
        "twinmasq_dns_upstream_latency_seconds_bucket{le=\"2.5\"} 2",
        "twinmasq_dns_upstream_latency_seconds_bucket{le=\"+Inf\"} 2",
        "twinmasq_dns_upstream_latency_seconds_sum 0.043",
        "twinmasq_dns_upstream_latency_seconds_count 2",
    ] {
        has(&text, line);
    }
    // One state gauge per primary state; only the current one is 1.
    let states: Vec<f64> = samples
        .iter()
        .filter(|(k, _)| k.starts_with("twinmasq_failover_state{"))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(states.len(), 6);
    assert_eq!(states.iter().sum::<f64>(), 1.0);
    // Every ignore reason is listed, seen or not.
    let reasons = samples
        .keys()
        .filter(|k| k.starts_with("twinmasq_dhcp_ignored_total{"))
        .count();
    assert_eq!(reasons, Ignored::ALL.len());
    assert!(!text.contains("partner_down_seconds"), "{text}");
    assert!(!text.contains("recovering_seconds"), "{text}");
}

/// A node recovering after its start says so, and how long it may wait.
#[test]
fn a_recovering_node_shows_its_state_and_wait() {
    let mut f = primary("recovering");
    f.recovering_until_unix_ms = Some(1_000_000 + 42_000);
    let text = render(&scrape(
        Source::Answered(dhcp_snapshot(Some(f))),
        Source::Off,
    ));
    parse_strict(&text);
    has(
        &text,
        "twinmasq_failover_state{role=\"primary\",state=\"recovering\"} 1",
    );
    has(&text, "twinmasq_failover_recovering_seconds 42");
}

#[test]
fn parts_that_are_off_or_silent_leave_only_their_up_gauge() {
    let text = render(&scrape(Source::NoAnswer, Source::Off));
    parse_strict(&text);
    has(&text, "twinmasq_scrape_source_up{source=\"dhcp\"} 0");
    assert!(!text.contains("source=\"dns\""), "{text}");
    assert!(!text.contains("twinmasq_dhcp_"), "{text}");
    assert!(!text.contains("twinmasq_dns_"), "{text}");

    // Without failover, no failover families at all.
    let text = render(&scrape(
        Source::Answered(dhcp_snapshot(None)),
        Source::NoAnswer,
    ));
    parse_strict(&text);
    has(&text, "twinmasq_scrape_source_up{source=\"dns\"} 0");
    assert!(!text.contains("twinmasq_failover_"), "{text}");
}

#[test]
fn secondary_states_unknown_states_and_escaping() {
    let mut f = primary("passive");
    f.role = Role::Secondary;
    f.last_sync_unix_ms = None;
    f.clock_skew_ms = None;
    f.partner_down_since_unix_ms = Some(940_000);
    let mut s = scrape(Source::Answered(dhcp_snapshot(Some(f))), Source::Off);
    s.version = "1.0 \"odd\\\nbuild".into();
    let text = render(&s);
    parse_strict(&text);
    has(
        &text,
        "twinmasq_failover_state{role=\"secondary\",state=\"passive\"} 1",
    );
    has(
        &text,
        "twinmasq_failover_state{role=\"secondary\",state=\"active\"} 0",
    );
    has(&text, "twinmasq_failover_partner_down_seconds 60");
    has(
        &text,
        r#"twinmasq_build_info{version="1.0 \"odd\\\nbuild"} 1"#,
    );
    assert!(!text.contains("last_sync_age"), "{text}");

    // A state this renderer does not know yet still shows, as the 1.
    let text = render(&scrape(
        Source::Answered(dhcp_snapshot(Some(primary("resyncing")))),
        Source::Off,
    ));
    parse_strict(&text);
    has(
        &text,
        "twinmasq_failover_state{role=\"primary\",state=\"resyncing\"} 1",
    );
    has(
        &text,
        "twinmasq_failover_state{role=\"primary\",state=\"linked\"} 0",
    );
}
