//! Snapshots to Prometheus text (exposition format 0.0.4): a `# HELP` and
//! a `# TYPE` line per metric family, then its samples. Pure: the same
//! snapshot always gives the same text.

use std::fmt::Write as _;

use twinmasq_proto::link::Role;

use crate::dns::forward::LATENCY_BUCKETS_MS;
use crate::failover::status::FailoverStatus;
use crate::lease::Reject;

use super::snapshot::{DhcpSnapshot, DnsSnapshot, Scrape, Source};

/// The Content-Type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value as the format spells it.
trait Value {
    fn put(&self, out: &mut String);
}

impl Value for u64 {
    fn put(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for i64 {
    fn put(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn put(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            // Rust's Display never uses an exponent: "0.005", "12.5".
            let _ = write!(out, "{self}");
        }
    }
}

struct Text {
    out: String,
}

impl Text {
    /// Starts a family. Counters are named with `_total`, as the
    /// format's conventions want.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.name());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.put(&mut self.out);
        self.out.push('\n');
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Value) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one label over fixed values.
    fn labelled(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'static str, u64)>,
    ) {
        self.family(name, kind, help);
        for (v, n) in values {
            self.sample(name, &[(label, v)], n);
        }
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The whole page for one scrape.
pub fn render(scrape: &Scrape) -> String {
    let mut t = Text {
        out: String::with_capacity(8 << 10),
    };
    t.family(
        "twinmasq_build_info",
        Kind::Gauge,
        "Always 1; the version is the label.",
    );
    t.sample("twinmasq_build_info", &[("version", &scrape.version)], 1u64);
    t.single(
        "twinmasq_uptime_seconds",
        Kind::Gauge,
        "Seconds since the server started.",
        scrape.uptime_secs,
    );
    let parts = [("dhcp", up(&scrape.dhcp)), ("dns", up(&scrape.dns))];
    t.family(
        "twinmasq_scrape_source_up",
        Kind::Gauge,
        "1 if the part answered this scrape in time, 0 if not; parts that are off are not listed.",
    );
    for (name, up) in parts {
        if let Some(up) = up {
            t.sample("twinmasq_scrape_source_up", &[("source", name)], up);
        }
    }
    if let Source::Answered(d) = &scrape.dhcp {
        dhcp(&mut t, d);
        if let Some(f) = &d.failover {
            failover(&mut t, f, d.now_unix_ms);
        }
    }
    if let Source::Answered(d) = &scrape.dns {
        dns(&mut t, d);
    }
    t.out
}

fn up<T>(s: &Source<T>) -> Option<u64> {
    match s {
        Source::Off => None,
        Source::NoAnswer => Some(0),
        Source::Answered(_) => Some(1),
    }
}

fn dhcp(t: &mut Text, d: &DhcpSnapshot) {
    let s = &d.stats;
    t.single(
        "twinmasq_dhcp_received_total",
        Kind::Counter,
        "DHCP packets the engine read on served interfaces, answered or not.",
        s.received,
    );
    t.labelled(
        "twinmasq_dhcp_requests_total",
        Kind::Counter,
        "DHCP requests read, by message type.",
        "type",
        s.received_by_type(),
    );
    t.labelled(
        "twinmasq_dhcp_replies_total",
        Kind::Counter,
        "DHCP replies sent, by message type (an INFORM is answered with an ack).",
        "type",
        s.replies_by_type(),
    );
    t.labelled(
        "twinmasq_dhcp_ignored_total",
        Kind::Counter,
        "DHCP packets that got no reply, by reason.",
        "reason",
        s.ignored_by_reason(),
    );
    let counters: [(&str, &str, u64); 11] = [
        (
            "twinmasq_dhcp_bad_options_total",
            "Malformed options skipped in requests that were otherwise used.",
            s.bad_options,
        ),
        (
            "twinmasq_dhcp_ping_checks_total",
            "Ping checks of an address before offering it.",
            s.probes,
        ),
        (
            "twinmasq_dhcp_ping_checks_answered_total",
            "Ping checks answered: the address was in use and not offered.",
            s.probes_answered,
        ),
        (
            "twinmasq_dhcp_not_served_interface_total",
            "DHCP packets that arrived on an interface not served.",
            d.shell.not_served_interface,
        ),
        (
            "twinmasq_dhcp_send_errors_total",
            "DHCP replies the socket refused to send.",
            d.shell.send_errors,
        ),
        (
            "twinmasq_dhcp_stale_replies_total",
            "DHCP replies not sent because they waited (for the disk or the failover partner) until the lease they promised was over.",
            d.shell.stale_replies,
        ),
        (
            "twinmasq_dhcp_lease_flushes_total",
            "fsyncs of the lease database (each shared by the replies queued meanwhile).",
            d.shell.flushes,
        ),
        (
            "twinmasq_dhcp_lease_flush_errors_total",
            "fsyncs of the lease database that failed; their replies were withheld.",
            d.shell.flush_errors,
        ),
        (
            "twinmasq_dhcp_durable_replies_total",
            "Replies sent after their lease was on disk.",
            d.shell.durable_replies,
        ),
        (
            "twinmasq_dhcp_partner_dropped_replies_total",
            "Replies dropped because the failover partner did not ack their lease in time.",
            d.shell.partner_dropped,
        ),
        (
            "twinmasq_dhcp_partner_cancelled_replies_total",
            "Replies dropped because the failover partner's newer record replaced theirs.",
            d.shell.partner_cancelled,
        ),
    ];
    for (name, help, v) in counters {
        t.single(name, Kind::Counter, help, v);
    }
    t.single(
        "twinmasq_dhcp_leases_bound",
        Kind::Gauge,
        "Bound leases in the lease database (expired ones leave within a second).",
        d.leases_bound,
    );
    let ranges: Vec<String> = d
        .ranges
        .iter()
        .map(|r| format!("{}-{}", r.start, r.end))
        .collect();
    let per_range: [(&str, &str, RangeField); 3] = [
        (
            "twinmasq_dhcp_range_addresses",
            "Addresses in the dhcp-range.",
            |r| r.size,
        ),
        (
            "twinmasq_dhcp_range_free_addresses",
            "Addresses of the dhcp-range free to hand out now.",
            |r| r.free,
        ),
        (
            "twinmasq_dhcp_range_leases",
            "Bound leases inside the dhcp-range.",
            |r| r.leases,
        ),
    ];
    for (name, help, get) in per_range {
        t.family(name, Kind::Gauge, help);
        for (r, label) in d.ranges.iter().zip(&ranges) {
            t.sample(name, &[("range", label)], get(r));
        }
    }
}

/// One gauge's value from a range's snapshot.
type RangeField = fn(&super::RangeSnapshot) -> u64;

/// Every state name the failover node reports for `role` (see
/// `Node::status`), so the state gauge lists each one, 1 for the current.
fn states_of(role: Role) -> &'static [&'static str] {
    match role {
        Role::Primary => &[
            "linked",
            "unlinked",
            "syncing",
            "partner-down",
            "config-mismatch",
            "recovering",
        ],
        Role::Secondary => &[
            "passive",
            "syncing",
            "connecting",
            "active",
            "partner-down",
            "config-mismatch",
            "recovering",
        ],
    }
}

fn failover(t: &mut Text, f: &FailoverStatus, now_unix_ms: u64) {
    let role = f.role.to_string();
    t.family(
        "twinmasq_failover_state",
        Kind::Gauge,
        "The failover node's state: 1 for the current one, 0 for the others.",
    );
    let known = states_of(f.role);
    for s in known {
        let v = u64::from(*s == f.state);
        t.sample(
            "twinmasq_failover_state",
            &[("role", &role), ("state", s)],
            v,
        );
    }
    if !known.contains(&f.state.as_str()) {
        t.sample(
            "twinmasq_failover_state",
            &[("role", &role), ("state", &f.state)],
            1u64,
        );
    }
    t.single(
        "twinmasq_failover_linked",
        Kind::Gauge,
        "1 while linked and in sync with the partner (every change acked).",
        u64::from(f.linked),
    );
    t.single(
        "twinmasq_failover_unacked_updates",
        Kind::Gauge,
        "Lease updates sent to the partner and not yet acked (replication lag).",
        f.unacked,
    );
    t.single(
        "twinmasq_failover_conflicts_total",
        Kind::Counter,
        "Merges where both nodes had changed the same address.",
        f.conflicts,
    );
    t.labelled(
        "twinmasq_failover_rejected_total",
        Kind::Counter,
        "The partner's lease records dropped for breaking a rule: stamped beyond failover-max-skew, an address outside the ranges, a hostname not a legal label, an oversized hwaddr or client_id, an expiry out of bounds.",
        "reason",
        Reject::ALL.iter().map(|r| (r.as_str(), f.rejected.get(*r))),
    );
    t.single(
        "twinmasq_failover_full_syncs_total",
        Kind::Counter,
        "Completed syncs that sent whole lease tables.",
        f.full_syncs,
    );
    t.single(
        "twinmasq_failover_resumed_syncs_total",
        Kind::Counter,
        "Completed syncs that resumed, sending only the changes the partner lacked.",
        f.resumed_syncs,
    );
    if let Some(at) = f.last_sync_unix_ms {
        t.single(
            "twinmasq_failover_last_sync_age_seconds",
            Kind::Gauge,
            "Seconds since the last completed sync with the partner.",
            secs(now_unix_ms.saturating_sub(at)),
        );
    }
    if let Some(skew) = f.clock_skew_ms {
        t.single(
            "twinmasq_failover_clock_skew_seconds",
            Kind::Gauge,
            "The partner's clock minus ours, as last measured (handshake, heartbeats).",
            skew as f64 / 1000.0,
        );
    }
    if let Some(until) = f.recovering_until_unix_ms {
        t.single(
            "twinmasq_failover_recovering_seconds",
            Kind::Gauge,
            "Recovering after the start: seconds until new addresses are handed out at the latest (sooner once a sync with the partner completes).",
            secs(until.saturating_sub(now_unix_ms)),
        );
    }
    if let Some(since) = f.partner_down_since_unix_ms {
        t.single(
            "twinmasq_failover_partner_down_seconds",
            Kind::Gauge,
            "Seconds since the partner was declared down.",
            secs(now_unix_ms.saturating_sub(since)),
        );
    }
}

fn dns(t: &mut Text, d: &DnsSnapshot) {
    let s = &d.stats;
    let counters: [(&str, &str, u64); 18] = [
        (
            "twinmasq_dns_queries_total",
            "DNS queries received (UDP and TCP), junk included.",
            s.queries,
        ),
        (
            "twinmasq_dns_local_answers_total",
            "Queries answered from local data (hosts, leases, address=, host-record, ...).",
            s.local_answers,
        ),
        (
            "twinmasq_dns_cache_hits_total",
            "Queries answered from the cache.",
            s.cache_hits,
        ),
        (
            "twinmasq_dns_cache_misses_total",
            "Queries not in the cache (then forwarded, or refused with no server to ask).",
            s.cache_misses,
        ),
        (
            "twinmasq_dns_forwarded_total",
            "Questions forwarded to upstream servers (once however many clients asked).",
            s.forwarded,
        ),
        (
            "twinmasq_dns_coalesced_total",
            "Queries that waited for a forward of the same question already out instead of being forwarded again.",
            s.coalesced,
        ),
        (
            "twinmasq_dns_case_fallbacks_total",
            "Questions asked again in plain letter case after an answer came back in another case (0x20).",
            s.case_fallbacks,
        ),
        (
            "twinmasq_dns_upstream_replies_total",
            "Upstream answers accepted (matched to a pending query).",
            s.upstream_replies,
        ),
        (
            "twinmasq_dns_upstream_errors_total",
            "Failed upstream attempts: SERVFAIL or REFUSED, a failed TCP exchange, a silent server.",
            s.upstream_errors,
        ),
        (
            "twinmasq_dns_upstream_attempt_timeouts_total",
            "Upstream attempts that timed out (the next server may still answer).",
            s.upstream_attempt_timeouts,
        ),
        (
            "twinmasq_dns_upstream_timeouts_total",
            "Forwarded queries no server answered in time; the client got no answer.",
            s.upstream_timeouts,
        ),
        (
            "twinmasq_dns_tcp_fallbacks_total",
            "Truncated upstream answers asked again over TCP.",
            s.tcp_fallbacks,
        ),
        (
            "twinmasq_dns_truncated_replies_total",
            "Replies sent truncated (TC) because they did not fit.",
            s.truncated,
        ),
        (
            "twinmasq_dns_forward_max_refused_total",
            "Queries refused because dns-forward-max queries were pending.",
            s.forward_max,
        ),
        (
            "twinmasq_dns_rebind_blocked_total",
            "Upstream answers withheld by stop-dns-rebind.",
            s.rebind_blocked,
        ),
        (
            "twinmasq_dns_cache_insertions_total",
            "Answers stored in the cache.",
            d.cache.insertions,
        ),
        (
            "twinmasq_dns_cache_evictions_total",
            "Live cache entries pushed out to make room (cache-size reached).",
            d.cache.evictions,
        ),
        (
            "twinmasq_dns_cache_expired_total",
            "Cache entries dropped when found past their TTL.",
            d.cache.expired,
        ),
    ];
    for (name, help, v) in counters {
        t.single(name, Kind::Counter, help, v);
    }
    t.labelled(
        "twinmasq_dns_error_replies_total",
        Kind::Counter,
        "Error replies built by this server, by response code.",
        "rcode",
        [
            ("servfail", s.servfail),
            ("refused", s.refused),
            ("formerr", s.formerr),
            ("notimp", s.notimp),
        ],
    );
    let dr = &s.dropped;
    t.labelled(
        "twinmasq_dns_dropped_total",
        Kind::Counter,
        "DNS packets dropped without a reply, by reason.",
        "reason",
        [
            ("junk", dr.junk),
            ("not_query", dr.not_query),
            ("duplicate", dr.duplicate),
            ("unknown_id", dr.unknown_id),
            ("wrong_socket", dr.wrong_socket),
            ("wrong_source", dr.wrong_source),
            ("wrong_question", dr.wrong_question),
            ("case_mismatch", dr.case_mismatch),
            ("malformed_reply", dr.malformed_reply),
            ("late_tcp", dr.late_tcp),
        ],
    );
    let gauges: [(&str, &str, u64); 3] = [
        (
            "twinmasq_dns_cache_entries",
            "Entries in the cache now.",
            d.cache_entries,
        ),
        (
            "twinmasq_dns_cache_capacity",
            "The most entries the cache keeps (cache-size).",
            d.cache_capacity,
        ),
        (
            "twinmasq_dns_pending_queries",
            "Forwarded queries waiting for an upstream answer.",
            d.pending,
        ),
    ];
    for (name, help, v) in gauges {
        t.single(name, Kind::Gauge, help, v);
    }
    let name = "twinmasq_dns_upstream_latency_seconds";
    let h = &s.upstream_latency;
    t.family(
        name,
        Kind::Histogram,
        "Time from an upstream attempt to the server's answer.",
    );
    let bucket = format!("{name}_bucket");
    for (bound, n) in LATENCY_BUCKETS_MS.iter().zip(h.buckets) {
        let le = secs(*bound).to_string();
        t.sample(&bucket, &[("le", &le)], n);
    }
    t.sample(&bucket, &[("le", "+Inf")], h.count);
    t.sample(&format!("{name}_sum"), &[], secs(h.sum_ms));
    t.sample(&format!("{name}_count"), &[], h.count);
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
