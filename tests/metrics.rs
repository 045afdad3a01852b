//! `metrics-listen`: the real server in a lab namespace, scraped with curl
//! from another namespace, every line read as strict Prometheus text, and
//! the counters checked against what real clients did in between (udhcpc
//! for a lease, dig for local, forwarded, cached and refused queries,
//! real dnsmasq as the upstream). Then the port's own behaviour: 404 and
//! 405, junk, oversized and silent clients, the bound on connections.
//! Run as root; see tests/README.md.

mod netns;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::io::AsRawFd;
use std::process::Command;
use std::thread;
use std::time::Duration;

use netns::{
    wait_for, Host, Lab, PairLab, PairRole, Proc, ServerConf, Udhcpc, SECONDARY_IP, SERVER_IP,
};

const METRICS_PORT: u16 = 9153;
/// The real dnsmasq the server forwards `fwd.test` to.
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);
const FWD_ANSWER: &str = "198.18.5.5";
const LOCAL_NAME: &str = "printer.lab.test";
const LOCAL_ANSWER: &str = "198.18.0.9";
const RANGE: &str = "198.18.0.100-198.18.0.199";
const CMD: Duration = Duration::from_secs(15);

fn url(path: &str) -> String {
    url_at(SERVER_IP, path)
}

fn url_at(ip: Ipv4Addr, path: &str) -> String {
    format!("http://{ip}:{METRICS_PORT}{path}")
}

/// The lab's standard DHCP config with DNS on port 53, a local name, a
/// domain forwarded to the upstream, and the metrics listener.
fn conf() -> ServerConf {
    let mut c = ServerConf::standard();
    c.lines.retain(|l| l != "port=0");
    c.line("port=53")
        .line(format!("host-record={LOCAL_NAME},{LOCAL_ANSWER}"))
        .line(format!("server=/fwd.test/{UPSTREAM_IP}"))
        .line(format!("metrics-listen={SERVER_IP}:{METRICS_PORT}"))
}

/// `curl -i` from `host`: (status line, headers, body).
fn fetch(host: &Host, path: &str) -> (String, String, String) {
    fetch_at(host, SERVER_IP, path)
}

fn fetch_at(host: &Host, ip: Ipv4Addr, path: &str) -> (String, String, String) {
    let out = host
        .exec(
            &["curl", "-sS", "-i", "--max-time", "10", &url_at(ip, path)],
            CMD,
        )
        .unwrap_or_else(|e| panic!("curl {path}: {e}"));
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {out:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// GET /metrics: checks the status and type, parses the body strictly.
fn scrape(host: &Host) -> BTreeMap<String, f64> {
    scrape_at(host, SERVER_IP)
}

fn scrape_at(host: &Host, ip: Ipv4Addr) -> BTreeMap<String, f64> {
    let (status, headers, body) = fetch_at(host, ip, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(headers.contains("connection: close"), "{headers}");
    parse_strict(&body)
}

fn name_ok(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Reads exposition format 0.0.4 strictly: only HELP, TYPE and sample
/// lines; names match `[a-zA-Z_:][a-zA-Z0-9_:]*`; each family has one HELP
/// then one TYPE before its samples; every sample belongs to a typed
/// family (histograms through `_bucket`, `_sum`, `_count`); counters end
/// in `_total`; no series twice. Returns series -> value.
fn parse_strict(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "no final newline: {text:?}");
    let mut helped = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP text");
            assert!(name_ok(name) && !help.is_empty(), "{line}");
            assert!(helped.insert(name.to_string()), "second HELP: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE kind");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter not _total: {line}");
            }
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "second TYPE: {line}"
            );
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "stray {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value not a number: {line}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let mut rest = labels.strip_suffix('}').expect("labels end in }");
                while !rest.is_empty() {
                    let (k, v) = rest.split_once("=\"").expect("label=\"value\"");
                    assert!(name_ok(k) && !k.starts_with("__"), "label {k}: {line}");
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
                    let end = end.unwrap_or_else(|| panic!("open label value: {line}"));
                    rest = &v[end + 1..];
                    if !rest.is_empty() {
                        rest = rest.strip_prefix(',').expect("labels split by ,");
                    }
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
            "series twice: {line}"
        );
    }
    samples
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series} in {m:#?}"))
}

/// How much `series` moved between two scrapes.
fn delta(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, series: &str) -> f64 {
    get(b, series) - get(a, series)
}

fn dig(host: &Host, name: &str) -> String {
    // One try: a retry would make the query counts inexact.
    host.exec(
        &[
            "dig",
            "+tries=1",
            "+time=5",
            &format!("@{SERVER_IP}"),
            name,
            "A",
        ],
        CMD,
    )
    .unwrap_or_else(|e| panic!("dig {name}: {e}"))
}

/// Real dnsmasq on its own host, answering `fwd.test` with a TTL worth
/// caching.
fn start_upstream(lab: &Lab) -> (Host, Proc) {
    let host = lab.add_server_host(UPSTREAM_IP);
    let log = lab.dir().join("upstream.log");
    let args = [
        "dnsmasq".to_string(),
        "-k".into(),
        "--conf-file=/dev/null".into(),
        "--log-facility=-".into(),
        format!("--pid-file={}", lab.dir().join("upstream.pid").display()),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={UPSTREAM_IP}"),
        format!("--address=/fwd.test/{FWD_ANSWER}"),
        "--local-ttl=300".into(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut proc = Proc::spawn("dnsmasq-upstream", &host.ns, &argv, &log);
    let ready = wait_for(Duration::from_secs(10), "the upstream dnsmasq", || {
        if !proc.running() {
            return Some(Err("exited".to_string()));
        }
        let out = host
            .exec(
                &[
                    "dig",
                    "+tries=1",
                    "+time=1",
                    &format!("@{UPSTREAM_IP}"),
                    "fwd.test",
                ],
                CMD,
            )
            .ok()?;
        out.contains(FWD_ANSWER).then_some(Ok(()))
    });
    if let Err(e) = ready.and_then(|r| r) {
        panic!(
            "upstream dnsmasq: {e}\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }
    (host, proc)
}

#[test]
fn metrics_count_a_real_lease_and_real_queries() {
    let Some(lab) = Lab::new("metrics_count_a_real_lease_and_real_queries") else {
        return;
    };
    let (upstream, _upstream_proc) = start_upstream(&lab);
    let server = lab.start_server(&conf());

    // Before any client: every family present, nothing leased.
    let before = scrape(&upstream);
    assert_eq!(
        get(&before, r#"twinmasq_scrape_source_up{source="dhcp"}"#),
        1.0
    );
    assert_eq!(
        get(&before, r#"twinmasq_scrape_source_up{source="dns"}"#),
        1.0
    );
    let range = |m: &str| format!("{m}{{range=\"{RANGE}\"}}");
    assert_eq!(get(&before, &range("twinmasq_dhcp_range_addresses")), 100.0);
    assert_eq!(
        get(&before, &range("twinmasq_dhcp_range_free_addresses")),
        100.0
    );
    assert_eq!(get(&before, &range("twinmasq_dhcp_range_leases")), 0.0);
    assert_eq!(get(&before, "twinmasq_dhcp_leases_bound"), 0.0);
    assert_eq!(get(&before, "twinmasq_dns_queries_total"), 0.0);
    assert!(
        !before.keys().any(|k| k.starts_with("twinmasq_failover_")),
        "failover metrics without failover"
    );

    let client = lab.add_client();
    let mut udhcpc = Udhcpc::new(&lab, &client);
    let lease = udhcpc.obtain().expect("udhcpc gets a lease");
    server.wait_lease(&client.mac, lease.address);

    let local = [dig(&client, LOCAL_NAME), dig(&client, LOCAL_NAME)];
    for out in &local {
        assert!(
            out.contains("status: NOERROR") && out.contains(LOCAL_ANSWER),
            "{out}"
        );
    }
    // Forwarded to the upstream, then answered from the cache.
    for _ in 0..2 {
        let out = dig(&client, "fwd.test");
        assert!(
            out.contains("status: NOERROR") && out.contains(FWD_ANSWER),
            "{out}"
        );
    }
    // No server for other names (no-resolv): REFUSED, as dnsmasq does.
    let out = dig(&client, "elsewhere.example");
    assert!(out.contains("status: REFUSED"), "{out}");

    let after = scrape(&client);
    let d = |s: &str| delta(&before, &after, s);

    // DHCP: a client may retransmit, so at least one of each step, and
    // never more answers than questions.
    let discover = d(r#"twinmasq_dhcp_requests_total{type="discover"}"#);
    let request = d(r#"twinmasq_dhcp_requests_total{type="request"}"#);
    let offer = d(r#"twinmasq_dhcp_replies_total{type="offer"}"#);
    let ack = d(r#"twinmasq_dhcp_replies_total{type="ack"}"#);
    assert!(discover >= 1.0 && request >= 1.0, "{after:#?}");
    assert!(offer >= 1.0 && offer <= discover, "{after:#?}");
    assert!(ack >= 1.0 && ack <= request, "{after:#?}");
    assert_eq!(d(r#"twinmasq_dhcp_replies_total{type="nak"}"#), 0.0);
    assert!(d("twinmasq_dhcp_received_total") >= discover + request);
    // Gauges are exact: one lease, in the one range.
    assert_eq!(get(&after, &range("twinmasq_dhcp_range_leases")), 1.0);
    assert_eq!(
        get(&after, &range("twinmasq_dhcp_range_free_addresses")),
        99.0
    );
    assert_eq!(get(&after, "twinmasq_dhcp_leases_bound"), 1.0);

    // DNS: dig does not retry here, so every count is exact.
    for (series, want) in [
        ("twinmasq_dns_queries_total", 5.0),
        ("twinmasq_dns_local_answers_total", 2.0),
        ("twinmasq_dns_cache_misses_total", 2.0),
        ("twinmasq_dns_cache_hits_total", 1.0),
        ("twinmasq_dns_forwarded_total", 1.0),
        ("twinmasq_dns_upstream_replies_total", 1.0),
        ("twinmasq_dns_upstream_errors_total", 0.0),
        ("twinmasq_dns_cache_insertions_total", 1.0),
        ("twinmasq_dns_cache_evictions_total", 0.0),
        (r#"twinmasq_dns_error_replies_total{rcode="refused"}"#, 1.0),
        (r#"twinmasq_dns_error_replies_total{rcode="servfail"}"#, 0.0),
        ("twinmasq_dns_upstream_latency_seconds_count", 1.0),
        (
            r#"twinmasq_dns_upstream_latency_seconds_bucket{le="+Inf"}"#,
            1.0,
        ),
    ] {
        assert_eq!(d(series), want, "{series}");
    }
    assert_eq!(get(&after, "twinmasq_dns_cache_entries"), 1.0);
    assert_eq!(get(&after, "twinmasq_dns_pending_queries"), 0.0);
    // The upstream is on the same bridge: well under a second.
    assert_eq!(
        d(r#"twinmasq_dns_upstream_latency_seconds_bucket{le="1"}"#),
        1.0
    );
    assert!(d("twinmasq_dns_upstream_latency_seconds_sum") < 1.0);

    // A release ends the lease; the range gauge follows.
    udhcpc.release().expect("udhcpc releases");
    server.wait_no_lease(lease.address);
    let released = wait_for(Duration::from_secs(5), "the lease gauge to drop", || {
        let m = scrape(&upstream);
        (get(&m, &range("twinmasq_dhcp_range_leases")) == 0.0).then_some(m)
    })
    .unwrap();
    assert_eq!(
        delta(
            &after,
            &released,
            r#"twinmasq_dhcp_requests_total{type="release"}"#
        ),
        1.0
    );
    assert_eq!(get(&released, "twinmasq_dhcp_leases_bound"), 0.0);
}

/// A TCP connection from inside `ns` (made on a thread that enters the
/// namespace; the socket keeps it after the thread ends).
fn connect_in_ns(ns: &str, to: SocketAddr) -> TcpStream {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let f = fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns(2) on a valid fd; it changes only this thread's
        // network namespace, and the thread ends after the connect.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {to} in {path}: {e}"))
    })
    .join()
    .expect("setns thread panicked")
}

/// Sends `bytes` and reads until the server closes; the first line.
fn exchange(s: &mut TcpStream, bytes: &[u8]) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before taking everything.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn metrics_port_answers_only_metrics_and_shrugs_off_junk() {
    let Some(lab) = Lab::new("metrics_port_answers_only_metrics_and_shrugs_off_junk") else {
        return;
    };
    let mut c = ServerConf::standard();
    c.lines
        .push(format!("metrics-listen={SERVER_IP}:{METRICS_PORT}"));
    let mut server = lab.start_server(&c);
    let peer = lab.add_server_host(UPSTREAM_IP);
    let to = SocketAddr::from((SERVER_IP, METRICS_PORT));

    // DNS is off (port=0): no DNS families, and no "dns" source.
    let m = scrape(&peer);
    assert!(!m.keys().any(|k| k.starts_with("twinmasq_dns_")), "{m:#?}");
    assert!(!m.contains_key(r#"twinmasq_scrape_source_up{source="dns"}"#));

    let (status, _, _) = fetch(&peer, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = fetch(&peer, "/metrics/x");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let out = peer
        .exec(
            &[
                "curl",
                "-sS",
                "-i",
                "-X",
                "POST",
                "--max-time",
                "10",
                &url("/metrics"),
            ],
            CMD,
        )
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    let out = peer
        .exec(
            &["curl", "-sS", "-I", "--max-time", "10", &url("/metrics")],
            CMD,
        )
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");

    // Junk: binary garbage, a request line that is not HTTP, a head that
    // never ends, a client that hangs up half-way.
    let junk: Vec<u8> = (0..600u32).map(|i| (i * 37 % 251) as u8).collect();
    let mut with_end = junk.clone();
    with_end.extend_from_slice(b"\r\n\r\n");
    let line = exchange(&mut connect_in_ns(&peer.ns, to), &with_end);
    assert!(line.starts_with("HTTP/1.1 400"), "{line:?}");
    let line = exchange(&mut connect_in_ns(&peer.ns, to), b"hello\r\n\r\n");
    assert!(line.starts_with("HTTP/1.1 400"), "{line:?}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let line = exchange(&mut connect_in_ns(&peer.ns, to), &huge);
    assert!(
        line.is_empty() || line.starts_with("HTTP/1.1 431"),
        "{line:?}"
    );
    drop(connect_in_ns(&peer.ns, to));
    {
        let mut half = connect_in_ns(&peer.ns, to);
        half.write_all(b"GET /metr").unwrap();
    }

    // Connections that say nothing: a few are held (up to the bound, 8)
    // and the next one is closed at once; a scrape works again when they
    // end. Opened one at a time until the server closes one: the junk
    // connections above (5) may not all be released yet on a busy machine,
    // so fewer than 8 may be held, never more. Each wait is short enough
    // that the first held one is still within the server's 5 s read limit
    // when the last is opened.
    const BOUND: usize = 8;
    const JUNK: usize = 5;
    let mut idle: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        assert!(
            idle.len() <= BOUND,
            "{} silent connections held, over the bound of {BOUND}",
            idle.len()
        );
        let mut c = connect_in_ns(&peer.ns, to);
        c.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("a silent connection got {n} bytes"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                idle.push(c)
            }
            Err(e) => panic!("a silent connection failed: {e}"),
        }
    }
    assert!(
        idle.len() + JUNK >= BOUND,
        "only {} silent connections held before one was refused",
        idle.len()
    );
    drop(idle);
    let m = wait_for(
        Duration::from_secs(10),
        "a scrape after the idle clients",
        || {
            let out = peer
                .exec(&["curl", "-sS", "--max-time", "5", &url("/metrics")], CMD)
                .ok()?;
            out.contains("twinmasq_dhcp_received_total").then_some(out)
        },
    )
    .unwrap();
    parse_strict(&m);

    // The server still serves DHCP after all that.
    let client = lab.add_client();
    let lease = Udhcpc::new(&lab, &client)
        .obtain()
        .expect("lease after junk");
    server.wait_lease(&client.mac, lease.address);
    let m = scrape(&peer);
    assert_eq!(
        get(
            &m,
            &format!("twinmasq_dhcp_range_leases{{range=\"{RANGE}\"}}")
        ),
        1.0
    );
    server.stop();
}

#[test]
fn failover_pair_reports_its_states_lag_and_sync() {
    let Some(pair) = PairLab::new("failover_pair_reports_its_states_lag_and_sync") else {
        return;
    };
    let base =
        |ip: Ipv4Addr| ServerConf::standard().line(format!("metrics-listen={ip}:{METRICS_PORT}"));
    let primary = pair.start_node(PairRole::Primary, &base(SERVER_IP));
    let secondary = pair.start_node(PairRole::Secondary, &base(SECONDARY_IP));
    let watcher = pair.lab.add_server_host(UPSTREAM_IP);
    let state = |m: &BTreeMap<String, f64>, role: &str, state: &str| {
        let series = format!("twinmasq_failover_state{{role=\"{role}\",state=\"{state}\"}}");
        m.get(&series).copied()
    };
    let linked = wait_for(
        Duration::from_secs(20),
        "primary linked, secondary passive",
        || {
            let p = scrape_at(&watcher, SERVER_IP);
            let s = scrape_at(&watcher, SECONDARY_IP);
            (state(&p, "primary", "linked") == Some(1.0)
                && state(&s, "secondary", "passive") == Some(1.0))
            .then_some((p, s))
        },
    );
    let (p, s) = linked.unwrap_or_else(|e| {
        panic!(
            "{e}\nprimary:\n{}\nsecondary:\n{}",
            primary.log_tail(30),
            secondary.log_tail(30)
        )
    });
    // One state at a time, and the rest listed as 0.
    for (m, role, n) in [(&p, "primary", 6), (&s, "secondary", 7)] {
        let states: Vec<f64> = m
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("twinmasq_failover_state{{role=\"{role}\"")))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(states.len(), n, "{role}: {m:#?}");
        assert_eq!(states.iter().sum::<f64>(), 1.0, "{role}");
        assert_eq!(get(m, "twinmasq_failover_linked"), 1.0, "{role}");
        assert_eq!(get(m, "twinmasq_failover_conflicts_total"), 0.0, "{role}");
        // A first link: whole tables, nothing to resume from.
        assert_eq!(get(m, "twinmasq_failover_full_syncs_total"), 1.0, "{role}");
        assert_eq!(
            get(m, "twinmasq_failover_resumed_syncs_total"),
            0.0,
            "{role}"
        );
        let age = get(m, "twinmasq_failover_last_sync_age_seconds");
        assert!((0.0..30.0).contains(&age), "{role}: last sync {age} s ago");
    }

    // A lease from the primary reaches the secondary: both count it, and
    // the primary has nothing left unacked.
    let client = pair.lab.add_client();
    let lease = Udhcpc::new(&pair.lab, &client)
        .obtain()
        .expect("a lease from the linked pair");
    primary.wait_lease(&client.mac, lease.address);
    let range = format!("twinmasq_dhcp_range_leases{{range=\"{RANGE}\"}}");
    let both = wait_for(
        Duration::from_secs(10),
        "the lease counted on both nodes",
        || {
            let p = scrape_at(&watcher, SERVER_IP);
            let s = scrape_at(&watcher, SECONDARY_IP);
            (get(&p, &range) == 1.0
                && get(&s, &range) == 1.0
                && get(&p, "twinmasq_failover_unacked_updates") == 0.0)
                .then_some((p, s))
        },
    );
    let (p, s) = both.unwrap();
    assert!(get(&p, r#"twinmasq_dhcp_replies_total{type="ack"}"#) >= 1.0);
    // The passive secondary read the client's DISCOVER and left it alone.
    assert_eq!(get(&s, r#"twinmasq_dhcp_replies_total{type="offer"}"#), 0.0);
    assert!(get(&s, r#"twinmasq_dhcp_ignored_total{reason="passive"}"#) >= 1.0);

    // Cut the link: the primary reports unlinked, the secondary active.
    pair.link.cut();
    let cut = wait_for(Duration::from_secs(15), "both nodes to see the cut", || {
        let p = scrape_at(&watcher, SERVER_IP);
        let s = scrape_at(&watcher, SECONDARY_IP);
        (state(&p, "primary", "unlinked") == Some(1.0)
            && state(&s, "secondary", "active") == Some(1.0))
        .then_some(p)
    });
    let p = cut.unwrap_or_else(|e| {
        panic!(
            "{e}\nprimary:\n{}\nsecondary:\n{}",
            primary.log_tail(30),
            secondary.log_tail(30)
        )
    });
    assert_eq!(get(&p, "twinmasq_failover_linked"), 0.0);
    assert_eq!(state(&p, "primary", "linked"), Some(0.0));
}

#[test]
fn bad_metrics_listen_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    for (value, ok) in [
        ("127.0.0.1:9153", true),
        ("127.0.0.1,9153", true),
        ("9153", false),
        ("localhost:9153", false),
    ] {
        let conf = dir.path().join("conf");
        fs::write(&conf, format!("port=0\nmetrics-listen={value}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_twinmasq"))
            .args(["--test", "-C"])
            .arg(&conf)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        if ok {
            assert!(out.status.success(), "{value}: {text}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{value}: {text}");
            assert!(text.contains("metrics-listen"), "{value}: {text}");
        }
    }
}
