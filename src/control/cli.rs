//! The subcommands: `twinmasq status`, `twinmasq leases`, `twinmasq
//! failover gen-key|partner-down`. Any other first argument makes the
//! command line dnsmasq's (see `main.rs`).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use twinmasq_proto::key::{Key, MIN_KEY_BYTES};

use super::client::{self, ClientError};
use super::protocol::{LeaseEntry, LeasesReply, PartnerDownReply, RequestKind, StatusReport};
use crate::clock::now_ms;
use crate::config::failover::DEFAULT_CONTROL_SOCKET;

/// First arguments that are our subcommands. dnsmasq takes no bare words,
/// so none of these can be a dnsmasq option.
pub const SUBCOMMANDS: &[&str] = &["status", "leases", "failover"];

/// Whether this command line is one of our subcommands rather than
/// dnsmasq's options.
pub fn is_subcommand(args: &[OsString]) -> bool {
    args.get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| SUBCOMMANDS.contains(&a))
}

/// What dnsmasq's `--version`/`-v` and `--help`/`-w` ask for, when given
/// as arguments of their own: dnsmasq acts on them while reading its
/// command line, before any config file is read, so a broken file does not
/// stop them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoRequest {
    Version,
    Help,
}

pub fn info_request(args: &[OsString]) -> Option<InfoRequest> {
    args.iter().skip(1).find_map(|a| match a.to_str()? {
        "--version" | "-v" => Some(InfoRequest::Version),
        "--help" | "-w" => Some(InfoRequest::Help),
        _ => None,
    })
}

/// `--version`: the version, and dnsmasq's "Compile time options" line in
/// its own words, so a script that greps it for a feature finds what this
/// build has.
pub fn version_text() -> String {
    format!(
        "twinmasq version {}  (a dnsmasq-compatible DHCPv4 + DNS server with primary/secondary lease failover)\n\
         Compile time options: IPv6 GNU-getopt no-DBus no-UBus no-i18n no-IDN DHCP no-DHCPv6 no-Lua no-TFTP no-conntrack no-ipset no-nftset auth no-cryptohash no-DNSSEC no-loop-detect no-inotify no-dumpfile\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Exit codes of the subcommands: 0 done (or, with `--check`, this node
/// should be live), 1 failed (or should not be live), 2 no answer from the
/// control socket. Usage errors exit 2, as clap makes them.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_NO_ANSWER: u8 = 2;

#[derive(Parser)]
#[command(
    name = "twinmasq",
    version,
    about = "Ask a running twinmasq about its state, or manage its failover pair",
    disable_help_subcommand = true
)]
struct ControlCli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the running server's state.
    ///
    /// Node id, uptime, lease counts, free addresses per range, DHCP
    /// counters and the failover link, asked over the control socket.
    #[command(after_help = "\
With --check (for keepalived's track_script), prints one line saying why and exits:
  0  this node should be the live one: a standalone server or a primary that
     answers, or a secondary that has taken over (state active or partner-down)
  1  it should not: a secondary in state passive, syncing or connecting
  2  no answer from the control socket")]
    Status(StatusArgs),
    /// List the lease database.
    ///
    /// The active leases with dnsmasq's lease-file columns (expiry in unix
    /// seconds, MAC, IP, hostname, client-id); --all lists every record
    /// with its state; --json every record with its stamp and origin node.
    Leases(LeasesArgs),
    /// Manage the failover pair.
    #[command(subcommand)]
    Failover(FailoverCommand),
}

#[derive(Args)]
struct SocketArg {
    /// The server's control socket (its control-socket= option).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    /// Print the server's JSON document instead of a summary.
    #[arg(long)]
    json: bool,
    /// Say whether this node should be the live one, in the exit code.
    #[arg(long, conflicts_with = "json")]
    check: bool,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Args)]
struct LeasesArgs {
    /// Print the server's JSON document (every record) instead of a table.
    #[arg(long)]
    json: bool,
    /// List every record, ended ones too, with its state.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Subcommand)]
enum FailoverCommand {
    /// Print a new random failover key.
    ///
    /// 256 bits from the OS as 64 hex digits on standard output, for the
    /// failover-key= file of both nodes.
    GenKey,
    /// Declare the failover partner down.
    ///
    /// One MCLT later this node also hands out the partner's share of the
    /// ranges. Only when the partner is really down (powered off, not just
    /// unreachable), or both nodes may give out the same address.
    PartnerDown {
        /// Print the server's JSON document.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("unexpected reply from the server: {0}")]
    Reply(#[from] serde_json::Error),
    #[error("cannot draw random bytes from the OS: {0}")]
    Random(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(ClientError::NoAnswer { .. }) => EXIT_NO_ANSWER,
            _ => EXIT_FAILED,
        }
    }
}

/// Runs a subcommand (`args` as from `std::env::args_os`, the program name
/// first) and returns its exit code. Usage errors and `--help` are clap's:
/// it prints them and exits.
pub fn run(args: Vec<OsString>) -> Result<u8, CliError> {
    let cli = ControlCli::parse_from(args);
    let out = io::stdout();
    let mut out = out.lock();
    let written = match cli.command {
        Command::Status(a) if a.check => {
            let (code, reason) = check(&a.socket.control_socket);
            writeln!(out, "{reason}").map(|()| code)
        }
        Command::Status(a) => {
            let doc = ask(&a.socket.control_socket, RequestKind::Status)?;
            if a.json {
                print_json(&mut out, &doc).map(|()| 0)
            } else {
                let report: StatusReport = serde_json::from_value(doc)?;
                out.write_all(render_status(&report, now_ms()).as_bytes())
                    .map(|()| 0)
            }
        }
        Command::Leases(a) => {
            let doc = ask(&a.socket.control_socket, RequestKind::Leases)?;
            if a.json {
                print_json(&mut out, &doc).map(|()| 0)
            } else {
                let reply: LeasesReply = serde_json::from_value(doc)?;
                out.write_all(render_leases(&reply.leases, a.all, now_ms() / 1000).as_bytes())
                    .map(|()| 0)
            }
        }
        Command::Failover(FailoverCommand::GenKey) => {
            let key = new_key()?;
            out.write_all(key.as_bytes()).map(|()| {
                eprintln!(
                    "twinmasq: save this key in the same file on both nodes, readable by root only \
                     (mode 0600; created so, e.g. `(umask 077; twinmasq failover gen-key > /etc/twinmasq.key)`), \
                     and name that file with failover-key=FILE"
                );
                0
            })
        }
        Command::Failover(FailoverCommand::PartnerDown { json, socket }) => {
            let doc = ask(&socket.control_socket, RequestKind::PartnerDown)?;
            if json {
                print_json(&mut out, &doc).map(|()| 0)
            } else {
                let reply: PartnerDownReply = serde_json::from_value(doc)?;
                writeln!(
                    out,
                    "partner declared down (since {}); its share of the ranges is used from {}",
                    unix_ms_text(reply.partner_down_since_unix_ms),
                    unix_ms_text(reply.partner_share_from_unix_ms)
                )
                .map(|()| 0)
            }
        }
    };
    match written {
        Ok(code) => Ok(code),
        // `twinmasq leases | head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn ask(path: &std::path::Path, kind: RequestKind) -> Result<serde_json::Value, ClientError> {
    client::request(path, kind, client::REPLY_WAIT)
}

fn print_json(out: &mut impl Write, doc: &serde_json::Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(doc).map_err(io::Error::other)?;
    writeln!(out, "{text}")
}

fn new_key() -> Result<String, CliError> {
    use rand::TryRngCore;
    let mut random = [0u8; MIN_KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut random)
        .map_err(|e| CliError::Random(e.to_string()))?;
    Ok(Key::format_new(random))
}

/// `status --check`: the exit code and the one-line reason.
fn check(path: &std::path::Path) -> (u8, String) {
    let doc = match ask(path, RequestKind::Status) {
        Ok(doc) => doc,
        Err(e) => return (e_code(&e), format!("not live: {e}")),
    };
    match serde_json::from_value::<StatusReport>(doc) {
        Ok(report) => check_report(&report),
        Err(e) => (
            EXIT_FAILED,
            format!("not live: unexpected reply from the server: {e}"),
        ),
    }
}

fn e_code(e: &ClientError) -> u8 {
    match e {
        ClientError::NoAnswer { .. } => EXIT_NO_ANSWER,
        _ => EXIT_FAILED,
    }
}

/// The decision of `status --check` for an answering server.
pub fn check_report(report: &StatusReport) -> (u8, String) {
    match &report.failover {
        None => (
            0,
            format!(
                "live: standalone server (no failover), node {}",
                report.node_id
            ),
        ),
        Some(f) => match f.should_be_live() {
            (true, why) => (0, format!("live: {why}")),
            (false, why) => (EXIT_FAILED, format!("not live: {why}")),
        },
    }
}

fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m"),
    }
}

/// Unix milliseconds as unix seconds (what dnsmasq's lease file uses).
fn unix_ms_text(ms: u64) -> String {
    format!("unix time {}", ms / 1000)
}

fn ago_text(ms: u64, now_ms: u64) -> String {
    match now_ms.checked_sub(ms) {
        Some(d) => format!("{} ago", duration_text(d / 1000)),
        None => format!("in {}", duration_text((ms - now_ms) / 1000)),
    }
}

/// The human summary of `status`.
pub fn render_status(r: &StatusReport, now_ms: u64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "twinmasq {}, node {} (pid {}), up {}",
        r.version,
        r.node_id,
        r.pid,
        duration_text(r.uptime_secs)
    );
    let l = &r.leases;
    let _ = writeln!(
        s,
        "leases: {} active, {} bound, {} records ({} from this node, {} from other nodes)",
        l.active, l.bound, l.records, l.from_this_node, l.from_other_nodes
    );
    if r.ranges.is_empty() {
        let _ = writeln!(s, "ranges: none (no dhcp-range)");
    }
    for range in &r.ranges {
        let _ = writeln!(
            s,
            "range {} - {}: {} of {} free",
            range.start, range.end, range.free, range.size
        );
    }
    let d = &r.dhcp;
    let _ = writeln!(
        s,
        "dhcp: {} received ({} discover, {} request, {} decline, {} release, {} inform); \
         sent {} offers, {} acks, {} naks",
        d.received, d.discover, d.request, d.decline, d.release, d.inform, d.offers, d.acks, d.naks
    );
    if !d.ignored.is_empty() {
        let list: Vec<String> = d.ignored.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "  not answered: {}", list.join(", "));
    }
    let _ = writeln!(
        s,
        "  {} durable replies in {} flushes ({} flush errors), {} send errors, \
         {} from unserved interfaces, {} bad options, {} pings ({} answered)",
        d.durable_replies,
        d.flushes,
        d.flush_errors,
        d.send_errors,
        d.not_served_interface,
        d.bad_options,
        d.probes,
        d.probes_answered
    );
    match &r.failover {
        None => {
            let _ = writeln!(s, "failover: not configured (standalone)");
        }
        Some(f) => {
            let _ = writeln!(
                s,
                "failover: {}, state {}, {}",
                f.role,
                f.state,
                if f.linked { "linked" } else { "not linked" }
            );
            let partner = f.partner.as_deref().unwrap_or("address not known");
            let node = f
                .partner_node
                .map_or_else(|| "not yet known".to_string(), |n| n.to_string());
            let _ = writeln!(s, "  partner {partner}, node {node}");
            let last_sync = f
                .last_sync_unix_ms
                .map_or_else(|| "never".to_string(), |t| ago_text(t, now_ms));
            let skew = f
                .clock_skew_ms
                .map_or_else(|| "not measured".to_string(), |k| format!("{k} ms"));
            let _ = writeln!(
                s,
                "  last sync {last_sync}, {} unacked updates, {} conflicts, clock skew {skew}",
                f.unacked, f.conflicts
            );
            let _ = writeln!(
                s,
                "  syncs since start: {} full, {} resumed",
                f.full_syncs, f.resumed_syncs
            );
            if f.rejected.total() > 0 {
                let _ = writeln!(
                    s,
                    "  partner records refused: {} ({})",
                    f.rejected.total(),
                    f.rejected.summary()
                );
            }
            if let Some(since) = f.partner_down_since_unix_ms {
                let _ = writeln!(s, "  partner declared down {}", ago_text(since, now_ms));
            }
            if let Some(until) = f.recovering_until_unix_ms {
                let _ = writeln!(
                    s,
                    "  recovering, serving in {} s: no new addresses until a sync with the partner completes (leases held are renewed)",
                    until.saturating_sub(now_ms).div_ceil(1000)
                );
            }
            if let Some(m) = &f.config_mismatch {
                let _ = writeln!(
                    s,
                    "  CONFIGURATION MISMATCH with the partner, no new addresses handed out: {m}"
                );
            }
        }
    }
    s
}

/// The `leases` table: dnsmasq's lease-file columns (expiry in unix
/// seconds, `never` for infinite; `*` for no hostname or client-id), the
/// active leases only unless `all`, which adds the state.
pub fn render_leases(leases: &[LeaseEntry], all: bool, now_secs: u64) -> String {
    use std::fmt::Write as _;
    let rows: Vec<[String; 6]> = leases
        .iter()
        .filter(|l| all || l.is_active(now_secs))
        .map(|l| {
            [
                l.expires
                    .map_or_else(|| "never".to_string(), |t| t.to_string()),
                l.mac.clone(),
                l.ip.to_string(),
                l.hostname.clone().unwrap_or_else(|| "*".into()),
                l.client_id.clone().unwrap_or_else(|| "*".into()),
                l.state.clone(),
            ]
        })
        .collect();
    let header = ["EXPIRY", "MAC", "IP", "HOSTNAME", "CLIENT-ID", "STATE"];
    let columns = if all { 6 } else { 5 };
    let mut widths = [0usize; 6];
    for row in std::iter::once(header.map(String::from)).chain(rows.iter().cloned()) {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.len());
        }
    }
    let mut s = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let cells: Vec<String> = row[..columns]
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i + 1 == columns {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join("  "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{DhcpCounters, LeaseCounts};
    use crate::failover::status::FailoverStatus;
    use twinmasq_proto::link::Role;
    use twinmasq_proto::Stamp;

    fn report(failover: Option<FailoverStatus>) -> StatusReport {
        StatusReport {
            version: "0".into(),
            node_id: 42,
            pid: 1,
            started_unix_ms: 0,
            uptime_secs: 3725,
            leases: LeaseCounts {
                bound: 1,
                active: 1,
                records: 2,
                from_this_node: 1,
                from_other_nodes: 1,
            },
            ranges: vec![],
            dhcp: DhcpCounters::default(),
            failover,
        }
    }

    fn failover(role: Role, state: &str) -> FailoverStatus {
        FailoverStatus {
            role,
            state: state.into(),
            partner: None,
            partner_node: None,
            linked: false,
            last_sync_unix_ms: Some(1_000),
            unacked: 0,
            conflicts: 0,
            full_syncs: 0,
            resumed_syncs: 0,
            clock_skew_ms: None,
            partner_down_since_unix_ms: None,
            rejected: Default::default(),
            config_mismatch: None,
            recovering_until_unix_ms: None,
        }
    }

    #[test]
    fn check_decides_by_role_and_state() {
        assert_eq!(check_report(&report(None)).0, 0);
        assert_eq!(
            check_report(&report(Some(failover(Role::Primary, "unlinked")))).0,
            0
        );
        let (code, why) = check_report(&report(Some(failover(Role::Secondary, "passive"))));
        assert_eq!(code, EXIT_FAILED);
        assert_eq!(why, "not live: secondary, state passive");
        assert_eq!(
            check_report(&report(Some(failover(Role::Secondary, "partner-down")))).0,
            0
        );
    }

    /// Issue 14, case 1: a node recovering after its start says when it
    /// serves at the latest.
    #[test]
    fn a_recovering_node_says_when_it_serves() {
        let mut f = failover(Role::Primary, "recovering");
        f.recovering_until_unix_ms = Some(61_000 + 41_500);
        let text = render_status(&report(Some(f)), 61_000);
        assert!(
            text.contains("failover: primary, state recovering, not linked"),
            "{text}"
        );
        assert!(text.contains("  recovering, serving in 42 s"), "{text}");
    }

    #[test]
    fn subcommands_are_told_from_dnsmasq_options() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(is_subcommand(&args(&["twinmasq", "status", "--json"])));
        assert!(is_subcommand(&args(&["twinmasq", "failover", "gen-key"])));
        assert!(!is_subcommand(&args(&["twinmasq", "-k", "status"])));
        assert!(!is_subcommand(&args(&["twinmasq"])));
    }

    #[test]
    fn summaries_read_well() {
        let text = render_status(&report(Some(failover(Role::Secondary, "active"))), 61_000);
        assert!(text.contains("node 42 (pid 1), up 1h 02m 05s"), "{text}");
        assert!(
            text.contains("failover: secondary, state active, not linked"),
            "{text}"
        );
        assert!(text.contains("last sync 1m 00s ago"), "{text}");
        assert!(!text.contains("refused"), "{text}");
        let mut f = failover(Role::Secondary, "active");
        f.rejected.stamp = 2;
        f.rejected.hostname = 1;
        let text = render_status(&report(Some(f)), 61_000);
        assert!(
            text.contains("partner records refused: 3 (2 stamp, 1 hostname)"),
            "{text}"
        );
        let lease = |ip: u8, state: &str, expires| LeaseEntry {
            ip: std::net::Ipv4Addr::new(198, 18, 0, ip),
            state: state.into(),
            mac: "02:00:00:00:00:01".into(),
            client_id: None,
            hostname: Some("pc".into()),
            expires,
            stamp: Stamp::default(),
            origin_node: 1,
        };
        let leases = [
            lease(10, "bound", Some(2_000)),
            lease(11, "released", Some(500)),
            lease(12, "bound", None),
        ];
        let table = render_leases(&leases, false, 1_000);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("EXPIRY"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["2000", "02:00:00:00:00:01", "198.18.0.10", "pc", "*"]
        );
        assert!(lines[2].starts_with("never"));
        assert_eq!(render_leases(&leases, true, 1_000).lines().count(), 4);
    }
}
