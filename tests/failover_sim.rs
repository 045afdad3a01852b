//! Deterministic simulation of a failover pair: two nodes, each the lease
//! task the server runs (`twinmasq::lease_task::LeaseTask`: the real DHCP
//! engine, failover node, reply gate and a real sled lease database),
//! a dozen DHCP clients, and a network that partitions, delays and breaks
//! the link, with node kills, restarts, clock skew and partner-down
//! declarations (and, in the life scenario, wiped databases, configuration
//! edits on one node, partners returning after partner-down and hung
//! disks), all driven by one seeded random generator. The simulation
//! only carries out the task's outputs: link bytes onto a simulated wire,
//! persist requests at once (what sled wrote survives a kill of the
//! process), replies to the clients; no glue of its own.
//!
//! After every step it checks:
//! - no address acknowledged to two clients with overlapping lease times;
//! - once both nodes are in sync and quiet, every lease a client holds is
//!   on both nodes, and both tables are identical;
//! - the secondary answers DHCP only while not in sync, or for a client
//!   whose `secs` shows the primary leaves it unanswered, or that has been
//!   asking, unanswered, for that long (`secs` 0 or not);
//! - each node's clock floor never decreases, nor does the time-derived
//!   zone serial of its lease table (`dns::zone::zone_serial` of the
//!   newest record's stamp), across kills and restarts, unless the clock
//!   stood beyond its wall clock plus the skew bound (then it is set back);
//! - the zone serial the DNS side publishes (`dns::zone::AuthZones` fed by
//!   the lease database's change feed, as the DNS task does) moves up,
//!   RFC 1982, between any two readings with a change in between, and
//!   stays put without one;
//! - no node holds a stamp beyond the highest reading of its own clock
//!   plus `failover-max-skew`, whatever its partner sends: in the
//!   clock-jump scenario a node's clock leaps ahead by more than that and
//!   back while it serves and syncs.
//!
//! `TWINMASQ_SIM_SEEDS=N` sets how many seeds each scenario runs (by
//! default 2,300 in all: 800, 400, 250, 300, 250 and 300);
//! `TWINMASQ_SIM_SEED=S` runs seed S alone with a trace, and
//! `TWINMASQ_SIM_WATCH=<address>` adds every change of that address's
//! record on either node to it. A failure prints the command that
//! reproduces it.

use std::collections::{HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use tokio::sync::broadcast;
use twinmasq::config::{AuthConfig, Config, DhcpRange, LeaseTime};
use twinmasq::dhcp::engine::Reply;
use twinmasq::dhcp::network::Arrival;
use twinmasq::dns::zone::{change_ms, serial_gt, zone_serial, AuthZones, DEFAULT_SERIAL_BASE};
use twinmasq::failover::node::{ConnId, NodeConfig, NodeStatus};
use twinmasq::lease::{DbOptions, LeaseDb, LeaseError};
use twinmasq::lease_task::{LeaseTask, Output};
use twinmasq::net::ipv4::IfAddr;
use twinmasq::share::{owner_of, ServeMode, SharePolicy};
use twinmasq_proto::key::Key;
use twinmasq_proto::link::Role;
use twinmasq_proto::{LeaseRecord, LeaseState, Stamp};

const T0: u64 = 1_800_000_000_000;
const STEP_MS: u64 = 50;
const SIM_MS: u64 = 240_000;
const CLIENTS: usize = 12;
const RANGE_START: u8 = 10;
const MCLT_MS: u64 = 30_000;
const TIMEOUT_MS: u64 = 3_000;
const UNANSWERED_SECS: u16 = 10;
const MAX_SKEW_MS: u64 = 30_000;

fn server_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 1 + i as u8)
}

fn config(range_end: u8) -> Arc<Config> {
    let mut cfg = Config {
        no_ping: true,
        ..Config::default()
    };
    cfg.dhcp_ranges.push(DhcpRange {
        match_tags: vec![],
        set_tag: None,
        start: Ipv4Addr::new(198, 18, 0, RANGE_START),
        end: Ipv4Addr::new(198, 18, 0, range_end),
        netmask: None,
        broadcast: None,
        lease_time: LeaseTime::Secs(120),
        is_static: false,
    });
    Arc::new(cfg)
}

fn node_config(role: Role, cfg: &Config, edit: Option<Edit>) -> NodeConfig {
    NodeConfig {
        role,
        key: Key::parse(&Key::format_new([7; 32]), "sim").unwrap_or_else(|e| panic!("{e}")),
        heartbeat_ms: 500,
        timeout_ms: TIMEOUT_MS,
        // Longer, as in a real pair, yet short enough that a link stalled
        // during a sync is given up on within a run.
        sync_timeout_ms: 3 * TIMEOUT_MS,
        max_skew_ms: MAX_SKEW_MS,
        mclt_ms: mclt_ms(edit),
        auto_partner_down_ms: None,
        ranges_fingerprint: if edit == Some(Edit::Range) {
            [2; 32]
        } else {
            [1; 32]
        },
        ranges_text: "sim".into(),
        shares: cfg.dhcp_ranges.iter().map(|r| (r.start, r.end)).collect(),
        split_percent: 50,
    }
}

/// A configuration edited on one node only (the life scenario): its
/// `dhcp-range` ends four addresses later, or its `failover-mclt` is a
/// third. The handshake refuses the link until the edit is undone.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Edit {
    Range,
    Mclt,
}

fn mclt_ms(edit: Option<Edit>) -> u64 {
    if edit == Some(Edit::Mclt) {
        MCLT_MS / 3
    } else {
        MCLT_MS
    }
}

fn policy(role: Role, edit: Option<Edit>) -> SharePolicy {
    SharePolicy {
        own: role,
        split_percent: 50,
        mclt: Duration::from_millis(mclt_ms(edit)),
        unanswered_secs: UNANSWERED_SECS,
    }
}

/// sled lets go of its lock from background threads shortly after the last
/// handle drops; a restart in the same process waits for that.
fn open_db(dir: &Path) -> LeaseDb {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match LeaseDb::open(
            dir,
            DbOptions {
                cache_bytes: 1 << 20,
                // Sync pages of a dozen records go through pages too, so
                // kills find them at every stage of spreading.
                page_min_records: 4,
            },
        ) {
            Ok(db) => return db,
            Err(LeaseError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

struct Live {
    /// The composition the server runs: engine, lease database, failover
    /// node and reply gate.
    task: LeaseTask,
    /// The DNS side's serial, fed from the change feed, and its last
    /// reading.
    zones: AuthZones,
    feed: broadcast::Receiver<LeaseRecord>,
    published: u32,
}

impl Live {
    fn db(&self) -> &LeaseDb {
        self.task.db()
    }

    fn mode(&self) -> ServeMode {
        self.task.mode()
    }

    fn status(&self) -> NodeStatus {
        self.task
            .failover_status()
            .unwrap_or_else(|| panic!("a simulated node without failover"))
    }
}

struct SimNode {
    role: Role,
    dir: PathBuf,
    live: Option<Live>,
    skew_ms: i64,
    /// A clock leap on top of the skew (the clock-jump scenario), and the
    /// largest one so far.
    jump_ms: i64,
    max_jump_ms: u64,
    /// The highest reading of this node's clock so far.
    max_now: u64,
    lan_up: bool,
    conn: Option<ConnId>,
    restart_at: Option<u64>,
    serial_floor: Stamp,
    /// The zone serial last seen, and the table generation it was read at.
    zone_serial: u32,
    zone_serial_at: Option<u64>,
    /// Declared partner-down: the partner stays dead until it returns (an
    /// operator's promise the simulation keeps).
    declared_down: bool,
    /// This incarnation's configuration edit (the life scenario).
    edit: Option<Edit>,
    /// When the operator notices the edit and restarts the node with it
    /// undone.
    undo_at: Option<u64>,
    /// Whether the partner held every change of this node when it died:
    /// only then may its disk be replaced in the life scenario (a lease
    /// acknowledged apart and never replicated is on that disk alone,
    /// and goes with it).
    replicated_at_death: bool,
    /// The node came back wiped, edited, or after its partner declared it
    /// down: until it has synced (or the edit is undone), the link stays
    /// up and the partner alive, the promises the README asks of an
    /// operator for these.
    hold: bool,
}

impl SimNode {
    fn now(&self, now: u64) -> u64 {
        (now as i64 + self.skew_ms + self.jump_ms) as u64
    }

    fn start(&mut self, cfg: &Arc<Config>, incarnation: u64, now: u64) {
        let db = open_db(&self.dir);
        let feed = db.subscribe();
        let mut zones = AuthZones::new(&AuthConfig::default());
        let now_secs = self.now(now) / 1000;
        for r in db.iter() {
            zones.loaded(change_ms(&r, now_secs));
        }
        let published = zones.serial();
        let cfg = match self.edit {
            Some(Edit::Range) => {
                let end = cfg.dhcp_ranges[0].end.octets()[3];
                config(end + 4)
            }
            _ => Arc::clone(cfg),
        };
        let mut task = LeaseTask::new(
            Arc::clone(&cfg),
            db,
            Some((
                node_config(self.role, &cfg, self.edit),
                policy(self.role, self.edit),
            )),
            incarnation,
            self.now(now),
        );
        task.set_local_addresses(&[server_ip(0), server_ip(1)]);
        self.zone_serial_at = None;
        self.live = Some(Live {
            task,
            zones,
            feed,
            published,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CState {
    Idle {
        until: u64,
    },
    Selecting {
        xid: u32,
        since: u64,
        next_try: u64,
    },
    Requesting {
        xid: u32,
        ip: Ipv4Addr,
        server: usize,
        since: u64,
        give_up: u64,
    },
    Bound,
    Renewing {
        xid: u32,
        next_try: u64,
        since: u64,
    },
    Rebinding {
        xid: u32,
        next_try: u64,
        since: u64,
    },
    Rebooting {
        xid: u32,
        give_up: u64,
    },
    /// Its lease ran out while it slept; at `at` it wakes and asks for the
    /// old address again (INIT-REBOOT), as if it still held it.
    Reclaiming {
        xid: u32,
        ip: Ipv4Addr,
        at: u64,
        sent: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    ip: Ipv4Addr,
    server: usize,
    t1: u64,
    t2: u64,
    end: u64,
}

struct Client {
    mac: [u8; 6],
    state: CState,
    lease: Option<Lease>,
    grant: Option<usize>,
    lost_conflict: bool,
    /// Since when (simulated ms) the client has been asking without any
    /// reply reaching it: a passive secondary may serve a client that has
    /// asked that long even with `secs` 0 (issue 14, case 8).
    asking_since: Option<u64>,
}

/// One lease as a client saw it: the address was its from `start` to `end`.
#[derive(Debug, Clone)]
struct Grant {
    ip: Ipv4Addr,
    client: usize,
    start: u64,
    end: u64,
    from: usize,
}

struct Wire {
    at: u64,
    to: usize,
    conn: ConnId,
    bytes: Option<Vec<u8>>,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    next_incarnation: u64,
    now: u64,
    cfg: Arc<Config>,
    nodes: [SimNode; 2],
    clients: Vec<Client>,
    grants: Vec<Grant>,
    wire: VecDeque<Wire>,
    last_at: [u64; 2],
    broken: HashSet<ConnId>,
    link_cut: bool,
    next_conn: ConnId,
    next_xid: u32,
    trace: bool,
    /// Whether a node's LAN side may fail.
    lan_faults: bool,
    /// Whether a node's clock may leap ahead and back.
    clock_jumps: bool,
    _tmp: tempfile::TempDir,
    /// With `slow_flush`: flushes under way, (done at, node, token, the
    /// replies that wait only for it), and each node's last.
    slow_flush: bool,
    flushes: VecDeque<(u64, usize, u64, Vec<Reply>)>,
    flush_at: [u64; 2],
    /// Where the simulated time starts on the monotonic clock.
    epoch: Instant,
    checks: u64,
    /// Client leases that lost a counted conflict in a merge.
    conflict_losses: u64,
    /// Completed syncs (full, resumed) of nodes no longer running.
    syncs_of_the_dead: (u64, u64),
    /// Clock leaps, and what they led to: the partner's records refused for
    /// stamps from the future, clocks set back (of nodes no longer running
    /// too).
    jumps: u64,
    refused_of_the_dead: u64,
    resets_of_the_dead: u64,
    takeover: Takeover,
    /// With a trace and `TWINMASQ_SIM_WATCH=<address>`: that address's
    /// record on each node as last logged.
    watch: Option<(Ipv4Addr, [Option<LeaseRecord>; 2])>,
    /// The life scenario: wiped databases, configuration edits on one
    /// node, a partner declared down that returns, hung disks.
    life: bool,
    lives: Lives,
}

/// What the life scenario did.
#[derive(Default, Clone, Copy)]
struct Lives {
    wipes: u64,
    returns: u64,
    edits: u64,
    mismatch_steps: u64,
    hangs: u64,
}

/// The takeover scenarios' client behaviours and what they saw (issue 14,
/// cases 6 and 7).
#[derive(Default)]
struct Takeover {
    /// Bound clients now and then forget their lease and DISCOVER afresh.
    rediscover: bool,
    /// Clients whose lease ran out sometimes ask for it back later.
    stale_claims: bool,
    /// Offers of a client's live binding in the offering node's partner
    /// share by a passive secondary or in partner-down: the case the
    /// rediscover scenario is for.
    kept: u64,
    /// Stale claims sent, and those acknowledged at once.
    reclaims: u64,
    reclaim_acks: u64,
}

fn dhcp_request(
    kind: u8,
    xid: u32,
    secs: u16,
    mac: [u8; 6],
    ciaddr: Ipv4Addr,
    opts: &[(u8, Vec<u8>)],
) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[8..10].copy_from_slice(&secs.to_be_bytes());
    p[12..16].copy_from_slice(&ciaddr.octets());
    p[28..34].copy_from_slice(&mac);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, kind]);
    for (code, v) in opts {
        p.push(*code);
        p.push(v.len() as u8);
        p.extend_from_slice(v);
    }
    p.push(255);
    p
}

struct Answer {
    kind: u8,
    xid: u32,
    yiaddr: Ipv4Addr,
    lease_secs: u32,
}

fn parse_answer(p: &[u8]) -> Option<Answer> {
    if p.len() < 240 {
        return None;
    }
    let xid = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let yiaddr = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let (mut kind, mut lease_secs) = (0, 0);
    let mut i = 240;
    while i + 1 < p.len() && p[i] != 255 {
        if p[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (p[i], p[i + 1] as usize);
        let v = p.get(i + 2..i + 2 + len)?;
        match code {
            53 => kind = v[0],
            51 if len == 4 => lease_secs = u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            _ => {}
        }
        i += 2 + len;
    }
    Some(Answer {
        kind,
        xid,
        yiaddr,
        lease_secs,
    })
}

impl Sim {
    fn new(seed: u64, trace: bool, scenario: Scenario) -> Sim {
        let tmp = tempfile::Builder::new()
            .prefix("tmq-sim-")
            .tempdir_in(if Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut rng = StdRng::seed_from_u64(seed);
        let mk = |role, n: &str, rng: &mut StdRng| SimNode {
            role,
            dir: tmp.path().join(n),
            live: None,
            skew_ms: if seed % 2 == 1 {
                rng.random_range(-scenario.wide_skew_ms..=scenario.wide_skew_ms)
            } else {
                rng.random_range(-1_500..=1_500)
            },
            jump_ms: 0,
            max_jump_ms: 0,
            max_now: 0,
            lan_up: true,
            conn: None,
            restart_at: None,
            serial_floor: Stamp::default(),
            zone_serial: DEFAULT_SERIAL_BASE,
            zone_serial_at: None,
            declared_down: false,
            edit: None,
            undo_at: None,
            replicated_at_death: false,
            hold: false,
        };
        let nodes = [
            mk(Role::Primary, "p", &mut rng),
            mk(Role::Secondary, "s", &mut rng),
        ];
        let clients = (0..CLIENTS)
            .map(|i| Client {
                mac: [2, 0, 0, 0, (seed % 251) as u8, i as u8],
                state: CState::Idle {
                    until: T0 + rng.random_range(0..5_000),
                },
                lease: None,
                grant: None,
                lost_conflict: false,
                asking_since: None,
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            now: T0,
            cfg: config(scenario.range_end),
            nodes,
            clients,
            grants: Vec::new(),
            wire: VecDeque::new(),
            last_at: [0; 2],
            broken: HashSet::new(),
            link_cut: false,
            next_conn: 1,
            next_xid: 1,
            trace,
            lan_faults: scenario.lan_faults,
            clock_jumps: scenario.clock_jumps,
            _tmp: tmp,
            slow_flush: scenario.slow_flush,
            flushes: VecDeque::new(),
            flush_at: [0; 2],
            epoch: Instant::now(),
            checks: 0,
            conflict_losses: 0,
            next_incarnation: 0,
            syncs_of_the_dead: (0, 0),
            jumps: 0,
            refused_of_the_dead: 0,
            resets_of_the_dead: 0,
            takeover: Takeover {
                rediscover: scenario.rediscover,
                stale_claims: scenario.stale_claims,
                ..Takeover::default()
            },
            watch: std::env::var("TWINMASQ_SIM_WATCH")
                .ok()
                .filter(|_| trace)
                .and_then(|s| s.parse().ok())
                .map(|ip| (ip, [None, None])),
            life: scenario.life,
            lives: Lives::default(),
        };
        for i in 0..2 {
            sim.next_incarnation += 1;
            sim.nodes[i].start(&sim.cfg, sim.next_incarnation, T0);
        }
        sim
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>7}] {}", self.now - T0, what());
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {}: at {} ms: {what}\nreproduce: TWINMASQ_SIM_SEED={} cargo test --test failover_sim -- --nocapture",
            self.seed,
            self.now - T0,
            self.seed
        );
    }

    fn run(&mut self) {
        while self.now < T0 + SIM_MS {
            self.now += STEP_MS;
            self.chaos();
            self.deliver_wire();
            self.finish_flushes();
            for i in 0..2 {
                self.tick_node(i);
            }
            for c in 0..self.clients.len() {
                self.client_step(c);
            }
            for i in 0..2 {
                self.drain(i);
            }
            self.log_watched();
            self.check();
        }
    }

    /// Logs each change of the watched address's record on either node.
    fn log_watched(&mut self) {
        let Some((ip, mut seen)) = self.watch.take() else {
            return;
        };
        for (i, last) in seen.iter_mut().enumerate() {
            let Some(live) = &self.nodes[i].live else {
                continue;
            };
            let now = live.db().get(ip);
            if now != *last {
                self.log(|| format!("watch: node {i} records {ip} as {now:?}"));
                *last = now;
            }
        }
        self.watch = Some((ip, seen));
    }

    /// Random faults, each rare per step.
    fn chaos(&mut self) {
        let r: f64 = self.rng.random();
        let held = self.nodes.iter().any(|n| n.hold);
        if r < 0.002 && (!held || self.link_cut) {
            self.link_cut = !self.link_cut;
            self.log(|| format!("link {}", if self.link_cut { "cut" } else { "healed" }));
            if self.link_cut {
                // Connections stall: nothing more crosses, nobody is told.
                for i in 0..2 {
                    if let Some(c) = self.nodes[i].conn {
                        self.broken.insert(c);
                    }
                }
            }
        } else if r < 0.003 && !held {
            // One connection stalls (a frame lost for good, as TCP sees it).
            if let Some(c) = self.nodes[0].conn {
                self.log(|| format!("connection {c} stalls"));
                self.broken.insert(c);
            }
        } else if r < 0.0035 {
            let i = self.rng.random_range(0..2);
            let down_elsewhere = self.nodes[1 - i].declared_down;
            // A held node's partner stays; the held node itself may die
            // (an edited one comes back with the edit undone).
            let partner_held = self.nodes[1 - i].hold;
            if self.nodes[i].live.is_some() && !down_elsewhere && !partner_held {
                self.kill(i);
            }
        } else if r < 0.0045 && self.lan_faults {
            let i = self.rng.random_range(0..2);
            self.nodes[i].lan_up = !self.nodes[i].lan_up;
            self.log(|| {
                format!(
                    "node {i} LAN {}",
                    if self.nodes[i].lan_up { "up" } else { "down" }
                )
            });
        } else if r < 0.0048 {
            // The operator declares a dead partner down; it stays dead.
            let i = self.rng.random_range(0..2);
            let partner_dead = self.nodes[1 - i].live.is_none();
            if partner_dead && self.nodes[i].live.is_some() && !self.nodes[i].declared_down {
                let now = self.nodes[i].now(self.now);
                if let Some(l) = &mut self.nodes[i].live {
                    if matches!(l.task.declare_partner_down(now), Some(Ok(_))) {
                        self.nodes[i].declared_down = true;
                        // In the life scenario the partner returns later,
                        // into a link that is up (it must sync first).
                        self.nodes[1 - i].restart_at = if self.life {
                            Some(self.now + self.rng.random_range(40_000..100_000))
                        } else {
                            None
                        };
                        self.log(|| format!("node {i} declares its partner down"));
                    }
                }
            }
        } else if r < 0.0056 && self.clock_jumps {
            // The clock leaps ahead by more than the skew bound (a bad RTC,
            // a wrong NTP answer), or comes back.
            let i = self.rng.random_range(0..2);
            let n = &mut self.nodes[i];
            n.jump_ms = if n.jump_ms == 0 {
                self.rng.random_range(35_000..120_000)
            } else {
                0
            };
            n.max_jump_ms = n.max_jump_ms.max(n.jump_ms.unsigned_abs());
            let jump = n.jump_ms;
            self.jumps += 1;
            self.log(|| format!("node {i}'s clock now runs {jump} ms ahead"));
        } else if r < 0.0061 && self.life && self.slow_flush {
            // The disk hangs: no flush finishes for longer than the link's
            // timeout.
            let i = self.rng.random_range(0..2);
            let until = self.now + self.rng.random_range(4_000..8_000);
            for f in self.flushes.iter_mut().filter(|f| f.1 == i) {
                f.0 = f.0.max(until);
            }
            self.flush_at[i] = self.flush_at[i].max(until);
            self.lives.hangs += 1;
            self.log(|| format!("node {i}'s disk hangs until {} ms", until - T0));
        }
        for i in 0..2 {
            if self.nodes[i].undo_at.is_some_and(|t| t <= self.now) {
                self.nodes[i].undo_at = None;
                if self.nodes[i].live.is_some() {
                    self.kill(i);
                }
            }
            if self.nodes[i].restart_at.is_some_and(|t| t <= self.now) {
                self.nodes[i].restart_at = None;
                if self.life {
                    self.before_restart(i);
                }
                self.log(|| format!("node {i} restarts"));
                // Not drawn from the generator, so every seed keeps the path it
                // had before incarnations existed.
                self.next_incarnation += 1;
                self.nodes[i].start(&self.cfg, self.next_incarnation, self.now);
            }
        }
    }

    /// The life scenario's operations on a node about to start again: it
    /// returns after its partner declared it down, or its database was
    /// wiped (a replaced disk), or its configuration was edited (or the
    /// edit is undone). Each holds the link up and the partner alive
    /// until the node synced or the edit is undone.
    fn before_restart(&mut self, i: usize) {
        let partner_up = self.nodes[1 - i].live.is_some();
        if self.nodes[1 - i].declared_down {
            self.nodes[1 - i].declared_down = false;
            self.nodes[i].hold = true;
            self.lives.returns += 1;
            self.log(|| format!("node {i} returns after partner-down"));
        } else if self.nodes[i].edit.take().is_some() {
            self.nodes[i].undo_at = None;
            self.nodes[i].hold = false;
            self.log(|| format!("node {i}'s configuration edit is undone"));
        } else {
            let r: f64 = self.rng.random();
            if r < 0.6 && partner_up && self.nodes[i].replicated_at_death {
                if let Err(e) = std::fs::remove_dir_all(&self.nodes[i].dir) {
                    panic!("wiping node {i}'s database: {e}");
                }
                // A new disk: the serial and the clock floor start over.
                self.nodes[i].serial_floor = Stamp::default();
                self.nodes[i].zone_serial = DEFAULT_SERIAL_BASE;
                self.nodes[i].hold = true;
                self.lives.wipes += 1;
                self.log(|| format!("node {i}'s database is wiped"));
            } else if r < 0.8 && partner_up {
                let edit = if self.rng.random::<bool>() {
                    Edit::Range
                } else {
                    Edit::Mclt
                };
                self.nodes[i].edit = Some(edit);
                self.nodes[i].undo_at = Some(self.now + self.rng.random_range(10_000..30_000));
                self.nodes[i].hold = true;
                self.lives.edits += 1;
                self.log(|| format!("node {i} starts with an edited configuration: {edit:?}"));
            }
        }
        if self.nodes[i].hold && self.link_cut {
            self.link_cut = false;
            self.log(|| "link healed".to_string());
        }
    }

    fn kill(&mut self, i: usize) {
        self.log(|| format!("node {i} killed"));
        // Flushes under way die with the process, and their replies.
        self.flushes.retain(|f| f.1 != i);
        if let Some(live) = self.nodes[i].live.take() {
            let st = live.status();
            self.nodes[i].replicated_at_death = !self.link_cut
                && matches!(live.mode(), ServeMode::Linked | ServeMode::Passive)
                && st.unacked == 0;
            self.syncs_of_the_dead.0 += st.full_syncs;
            self.syncs_of_the_dead.1 += st.resumed_syncs;
            self.refused_of_the_dead += st.rejected.stamp;
            self.resets_of_the_dead += live.db().clock_resets();
            // The process dies; what sled wrote survives (the kernel keeps
            // the page cache), held replies are lost.
            drop(live);
        }
        if let Some(c) = self.nodes[i].conn.take() {
            if !self.broken.contains(&c) && !self.link_cut {
                let at = self.now + 1;
                self.wire.push_back(Wire {
                    at,
                    to: 1 - i,
                    conn: c,
                    bytes: None,
                });
            }
            self.broken.insert(c);
        }
        let delay = self.rng.random_range(500..20_000);
        self.nodes[i].restart_at = Some(self.now + delay);
    }

    fn deliver_wire(&mut self) {
        while self.wire.front().is_some_and(|w| w.at <= self.now) {
            let Some(w) = self.wire.pop_front() else {
                break;
            };
            let now = self.nodes[w.to].now(self.now);
            let Some(live) = &mut self.nodes[w.to].live else {
                continue;
            };
            match w.bytes {
                Some(bytes) => {
                    if !self.broken.contains(&w.conn) {
                        live.task.link_data(w.conn, &bytes, now);
                    }
                }
                None => live.task.link_closed(w.conn, now),
            }
            self.drain(w.to);
        }
    }

    /// Flushes due by now report their tokens; the replies that waited
    /// only for them reach their clients.
    fn finish_flushes(&mut self) {
        // In order per node; a hung disk holds back only its own node's.
        while let Some(at) = self.flushes.iter().position(|f| f.0 <= self.now) {
            let Some((_, i, token, send)) = self.flushes.remove(at) else {
                break;
            };
            let now = self.nodes[i].now(self.now);
            let mono = self.instant();
            let Some(live) = &mut self.nodes[i].live else {
                continue;
            };
            live.task.persisted(token, true, now, mono);
            // As the flusher does: a reply that waited tells the client
            // that much less, or does not leave.
            for mut reply in send {
                if !reply.age(now) {
                    continue;
                }
                match self.client_of(&reply) {
                    Some(c) => self.deliver_to_client(i, c, &reply),
                    None => self.fail("a reply to no client of the simulation".into()),
                }
            }
            self.drain(i);
        }
    }

    fn tick_node(&mut self, i: usize) {
        let now = self.nodes[i].now(self.now);
        let mono = self.instant();
        let Some(live) = &mut self.nodes[i].live else {
            return;
        };
        let mut problem = None;
        if (self.now / STEP_MS) % 2 == 0 {
            live.task.link_tick(now, mono);
            // A few at a time, so pages outlive some kills half spread.
            if let Err(e) = live.task.spread_pages(3) {
                panic!("spreading pages: {e}");
            }
            live.task.tick(now, mono);
            // A clock that stepped back leaves no stamp, kept or issued,
            // beyond its reading plus the bound once the node has ticked.
            let limit = now + MAX_SKEW_MS;
            let floor = live.db().last_stamp();
            let ahead = live.db().iter().find(|r| r.stamp.wall_ms > limit);
            if floor.wall_ms > limit || ahead.is_some() {
                problem = Some(format!(
                    "after a tick at {now}, node {i} keeps stamps beyond its clock plus {MAX_SKEW_MS} ms: floor {floor:?}, record {ahead:?}"
                ));
            }
        }
        if let Some(p) = problem {
            self.fail(p);
        }
        if let Some(live) = &self.nodes[i].live {
            if live.mode() == ServeMode::ConfigMismatch {
                self.lives.mismatch_steps += 1;
            }
            let st = live.status();
            if self.nodes[i].hold
                && self.nodes[i].edit.is_none()
                && st.full_syncs + st.resumed_syncs > 0
            {
                self.nodes[i].hold = false;
                self.log(|| format!("node {i} synced: no longer held"));
            }
        }
        self.drain(i);
    }

    /// Carries out what node i's lease task asks for: link traffic onto
    /// the wire, persist requests at once (what sled wrote survives a
    /// kill of the process), replies to their clients once it is quiet.
    fn drain(&mut self, i: usize) {
        let now = self.nodes[i].now(self.now);
        let mono = self.instant();
        let mut ready = Vec::new();
        loop {
            let out = {
                let Some(live) = &mut self.nodes[i].live else {
                    return;
                };
                match live.task.poll(now) {
                    Some(o) => o,
                    None => break,
                }
            };
            match out {
                Output::LinkConnect => self.connect(i),
                Output::LinkWrite(conn, bytes) => {
                    if !self.link_cut && !self.broken.contains(&conn) {
                        let delay = self.rng.random_range(1..30);
                        let at = (self.now + delay).max(self.last_at[i]);
                        self.last_at[i] = at;
                        self.wire.push_back(Wire {
                            at,
                            to: 1 - i,
                            conn,
                            bytes: Some(bytes),
                        });
                        self.wire.make_contiguous().sort_by_key(|w| w.at);
                    }
                }
                Output::LinkClose(conn) => {
                    if !self.link_cut && !self.broken.contains(&conn) {
                        let at = (self.now + 1).max(self.last_at[i]);
                        self.last_at[i] = at;
                        self.wire.push_back(Wire {
                            at,
                            to: 1 - i,
                            conn,
                            bytes: None,
                        });
                    }
                    self.broken.insert(conn);
                }
                Output::Persist { token, send, .. } => {
                    if self.slow_flush {
                        // Done 0 to 50 ms later, in order.
                        let at = (self.now + self.rng.random_range(0..50)).max(self.flush_at[i]);
                        self.flush_at[i] = at;
                        self.flushes.push_back((at, i, token, send));
                    } else {
                        ready.extend(send);
                        if let Some(live) = &mut self.nodes[i].live {
                            live.task.persisted(token, true, now, mono);
                        }
                    }
                }
                Output::Transmit(reply) => ready.push(reply),
                // The simulated config has no-ping.
                Output::Probe { token, .. } => {
                    if let Some(live) = &mut self.nodes[i].live {
                        live.task.probe_done(token, false, now);
                    }
                }
            }
        }
        for mut reply in ready {
            // As the shell does before sending.
            if !reply.age(now) {
                continue;
            }
            match self.client_of(&reply) {
                Some(c) => self.deliver_to_client(i, c, &reply),
                None => self.fail("a reply to no client of the simulation".into()),
            }
        }
    }

    /// The client a reply is for, by its hardware address.
    fn client_of(&self, reply: &Reply) -> Option<usize> {
        let chaddr = reply.packet.get(28..34)?;
        self.clients.iter().position(|c| c.mac[..] == *chaddr)
    }

    /// The simulated time as the monotonic clock the flusher reads.
    fn instant(&self) -> Instant {
        self.epoch + Duration::from_millis(self.now)
    }

    fn connect(&mut self, i: usize) {
        let now = self.nodes[i].now(self.now);
        let other_up = self.nodes[1 - i].live.is_some();
        if self.link_cut || !other_up {
            if let Some(l) = &mut self.nodes[i].live {
                l.task.link_connect_failed(now);
            }
            return;
        }
        let c = self.next_conn;
        self.next_conn += 1;
        self.nodes[i].conn = Some(c);
        self.nodes[1 - i].conn = Some(c);
        let mut n1 = [0u8; 32];
        let mut n2 = [0u8; 32];
        self.rng.fill(&mut n1);
        self.rng.fill(&mut n2);
        let pnow = self.nodes[1 - i].now(self.now);
        if let Some(l) = &mut self.nodes[1 - i].live {
            l.task.link_connected(c, n1, pnow);
        }
        if let Some(l) = &mut self.nodes[i].live {
            l.task.link_connected(c, n2, now);
        }
        self.drain(1 - i);
    }

    /// A client's packet reaches the nodes that can hear it.
    fn send(&mut self, c: usize, bytes: &[u8], to: Option<usize>, broadcast: bool) {
        self.clients[c].asking_since.get_or_insert(self.now);
        for i in 0..2 {
            if to.is_some_and(|t| t != i) || !self.nodes[i].lan_up {
                continue;
            }
            let now = self.nodes[i].now(self.now);
            let Some(live) = &mut self.nodes[i].live else {
                continue;
            };
            let arrival = Arrival {
                ifname: "lan".into(),
                ifindex: 2,
                addrs: vec![IfAddr {
                    addr: server_ip(i),
                    prefix: 24,
                }],
                to_broadcast: broadcast,
            };
            let mode = live.mode();
            let secs = u16::from_be_bytes([bytes[8], bytes[9]]);
            if !live.task.datagram(bytes, &arrival, now) {
                continue;
            }
            let asking_ms = self.clients[c]
                .asking_since
                .map_or(0, |t| self.now.saturating_sub(t));
            // A clock that leapt moves the engine's count of how long a
            // client has asked with it.
            let leapt = self.nodes[i].max_jump_ms > 0;
            // Its REQUEST for this node's own offer is answered whatever
            // its `secs` (some clients reset it): the offer was checked.
            let takes_our_offer = matches!(
                self.clients[c].state,
                CState::Requesting { server, .. } if server == i
            );
            if self.nodes[i].role == Role::Secondary
                && !takes_our_offer
                && mode == ServeMode::Passive
                && secs < UNANSWERED_SECS
                && asking_ms < u64::from(UNANSWERED_SECS) * 1000
                && !leapt
            {
                self.fail(format!(
                    "the passive secondary answered client {c} (secs {secs}, asking for {asking_ms} ms) while in sync"
                ));
            }
            // What may leave now (an OFFER; an ACK once durable and, in
            // sync, acked by the partner) reaches the client.
            self.drain(i);
        }
    }

    fn xid(&mut self) -> u32 {
        self.next_xid += 1;
        self.next_xid
    }

    fn client_step(&mut self, c: usize) {
        let now = self.now;
        let mac = self.clients[c].mac;
        // A lease that ran out is gone.
        if let Some(l) = self.clients[c].lease {
            if now >= l.end {
                self.end_lease(c, l.end);
                self.clients[c].state = CState::Idle { until: now };
                if self.takeover.stale_claims && self.rng.random::<f64>() < 0.5 {
                    self.clients[c].state = CState::Reclaiming {
                        xid: self.xid(),
                        ip: l.ip,
                        at: now + self.rng.random_range(0..60_000),
                        sent: false,
                    };
                }
            }
        }
        if self.takeover.rediscover
            && self.clients[c].state == CState::Bound
            && self.rng.random::<f64>() < 0.001
        {
            // It forgets its lease and starts over (a reinstalled OS, a
            // client that never does INIT-REBOOT), without asking for any
            // address: whoever serves it should offer it the one it has.
            let xid = self.xid();
            self.log(|| format!("client {c} DISCOVERs afresh"));
            self.end_lease(c, now);
            self.clients[c].state = CState::Selecting {
                xid,
                since: now,
                next_try: now,
            };
            return;
        }
        let secs = |since: u64| ((now - since) / 1000).min(u64::from(u16::MAX)) as u16;
        match self.clients[c].state {
            CState::Idle { until } if now >= until => {
                let xid = self.xid();
                self.clients[c].state = CState::Selecting {
                    xid,
                    since: now,
                    next_try: now,
                };
            }
            CState::Selecting {
                xid,
                since,
                next_try,
            } if now >= next_try => {
                let p = dhcp_request(1, xid, secs(since), mac, Ipv4Addr::UNSPECIFIED, &[]);
                let wait = self.rng.random_range(1_000..4_000);
                self.clients[c].state = CState::Selecting {
                    xid,
                    since,
                    next_try: now + wait,
                };
                self.send(c, &p, None, true);
            }
            CState::Requesting { give_up, since, .. } if now >= give_up => {
                let xid = self.xid();
                self.clients[c].state = CState::Selecting {
                    xid,
                    since,
                    next_try: now,
                };
            }
            CState::Bound => {
                let Some(l) = self.clients[c].lease else {
                    return;
                };
                if self.rng.random::<f64>() < 0.0005 {
                    // Release and go away for a while.
                    self.log(|| format!("client {c} releases {} at node {}", l.ip, l.server));
                    let p = dhcp_request(
                        7,
                        self.xid(),
                        0,
                        mac,
                        l.ip,
                        &[(54, server_ip(l.server).octets().to_vec())],
                    );
                    self.end_lease(c, now);
                    self.clients[c].state = CState::Idle {
                        until: now + self.rng.random_range(1_000..20_000),
                    };
                    self.send(c, &p, Some(l.server), false);
                } else if self.rng.random::<f64>() < 0.0005 {
                    // Reboot: INIT-REBOOT with the address it holds.
                    let xid = self.xid();
                    let p = dhcp_request(
                        3,
                        xid,
                        0,
                        mac,
                        Ipv4Addr::UNSPECIFIED,
                        &[(50, l.ip.octets().to_vec())],
                    );
                    self.clients[c].state = CState::Rebooting {
                        xid,
                        give_up: now + 4_000,
                    };
                    self.send(c, &p, None, true);
                } else if now >= l.t1 {
                    self.clients[c].state = CState::Renewing {
                        xid: self.xid(),
                        next_try: now,
                        since: now,
                    };
                }
            }
            CState::Renewing {
                xid,
                next_try,
                since,
            } if now >= next_try => {
                let Some(l) = self.clients[c].lease else {
                    return;
                };
                if now >= l.t2 {
                    self.clients[c].state = CState::Rebinding {
                        xid: self.xid(),
                        next_try: now,
                        since: now,
                    };
                    return;
                }
                let p = dhcp_request(3, xid, secs(since), mac, l.ip, &[]);
                self.clients[c].state = CState::Renewing {
                    xid,
                    next_try: now + 5_000,
                    since,
                };
                self.send(c, &p, Some(l.server), false);
            }
            CState::Rebinding {
                xid,
                next_try,
                since,
            } if now >= next_try => {
                let Some(l) = self.clients[c].lease else {
                    return;
                };
                let p = dhcp_request(3, xid, secs(since), mac, l.ip, &[]);
                self.clients[c].state = CState::Rebinding {
                    xid,
                    next_try: now + 3_000,
                    since,
                };
                self.send(c, &p, None, true);
            }
            CState::Rebooting { give_up, .. } if now >= give_up => {
                // No answer: keep using the lease as it stands.
                self.clients[c].state = CState::Bound;
            }
            CState::Reclaiming { xid, ip, at, sent } => self.reclaim_step(c, xid, ip, at, sent),
            _ => {}
        }
    }

    /// A client whose lease ran out asks for the address again. No node
    /// that is not linked acknowledges an address of its partner's share
    /// it holds no live lease on for the client (case 6): the partner may
    /// have given it to another client meanwhile.
    fn reclaim_step(&mut self, c: usize, xid: u32, ip: Ipv4Addr, at: u64, sent: bool) {
        let now = self.now;
        if sent {
            if now >= at + 4_000 {
                self.clients[c].state = CState::Idle { until: now };
            }
            return;
        }
        if now < at {
            return;
        }
        let may_ack = [0, 1].map(|i| self.may_ack_unlinked(i, c, ip));
        self.clients[c].state = CState::Reclaiming {
            xid,
            ip,
            at,
            sent: true,
        };
        self.takeover.reclaims += 1;
        self.log(|| format!("client {c} asks for {ip} again after its lease ran out"));
        let p = dhcp_request(
            3,
            xid,
            0,
            self.clients[c].mac,
            Ipv4Addr::UNSPECIFIED,
            &[(50, ip.octets().to_vec())],
        );
        self.send(c, &p, None, true);
        // Replies that wait for the partner's ack come later; those come
        // from a linked node, which the rule does not restrict.
        if let (CState::Bound, Some(l)) = (self.clients[c].state, self.clients[c].lease) {
            if l.ip == ip {
                self.takeover.reclaim_acks += 1;
                if !may_ack[l.server] {
                    self.fail(format!(
                        "node {} acknowledged {ip}, of its partner's share, to client {c}, which held no lease on it there",
                        l.server
                    ));
                }
            }
        }
    }

    /// May node i, in its mode now, acknowledge `ip` to client c without
    /// a live lease of c on it in its table?
    fn may_ack_unlinked(&self, i: usize, c: usize, ip: Ipv4Addr) -> bool {
        let now_i = self.nodes[i].now(self.now);
        let Some(live) = &self.nodes[i].live else {
            return true;
        };
        let closed = match live.mode() {
            ServeMode::Unlinked
            | ServeMode::Passive
            | ServeMode::ConfigMismatch
            | ServeMode::Recovering { .. } => true,
            ServeMode::PartnerDown {
                partner_share_from_ms,
            } => now_i < partner_share_from_ms,
            ServeMode::Linked | ServeMode::Standalone => false,
        };
        let own = self.nodes[i].role;
        let range = &self.cfg.dhcp_ranges[0];
        let partner_share = owner_of(range.start, range.end, ip, 50) != own;
        let holds = live
            .db()
            .get(ip)
            .is_some_and(|r| r.hwaddr == self.clients[c].mac.to_vec() && r.is_active(now_i / 1000));
        !closed || !partner_share || holds
    }

    /// A client that DISCOVERs while node `from` holds a live lease of it
    /// that the partner wrote (so both know it) is offered that address,
    /// whatever the share, when the partner cannot be reusing it unseen:
    /// in sync, or once partner-down opened the partner's share (case 7).
    fn expect_binding_offered(&mut self, from: usize, c: usize, a: &Answer) {
        let now_i = self.nodes[from].now(self.now);
        let Some(live) = &self.nodes[from].live else {
            return;
        };
        let settled = match live.mode() {
            ServeMode::Unlinked | ServeMode::ConfigMismatch | ServeMode::Recovering { .. } => false,
            ServeMode::PartnerDown {
                partner_share_from_ms,
            } => now_i >= partner_share_from_ms,
            ServeMode::Linked | ServeMode::Passive | ServeMode::Standalone => true,
        };
        if !settled {
            return;
        }
        let mac = self.clients[c].mac.to_vec();
        let own_node = live.db().node_id();
        let live_leases: Vec<LeaseRecord> = live
            .db()
            .iter()
            .filter(|r| r.hwaddr == mac && r.is_active(now_i / 1000))
            .collect();
        if !live_leases.iter().any(|r| r.stamp.node != own_node) {
            return;
        }
        if !live_leases.iter().any(|r| r.ip == a.yiaddr) {
            self.fail(format!(
                "node {from} offered {} to client {c}, which holds {:?} there",
                a.yiaddr,
                live_leases.iter().map(|r| r.ip).collect::<Vec<_>>()
            ));
        }
        let own = self.nodes[from].role;
        let range = &self.cfg.dhcp_ranges[0];
        if owner_of(range.start, range.end, a.yiaddr, 50) != own && live.mode() != ServeMode::Linked
        {
            self.takeover.kept += 1;
            self.log(|| format!("node {from} offers client {c} its binding {}", a.yiaddr));
        }
    }

    fn end_lease(&mut self, c: usize, at: u64) {
        if let Some(g) = self.clients[c].grant.take() {
            let g = &mut self.grants[g];
            g.end = g.end.min(at);
        }
        self.clients[c].lease = None;
    }

    fn deliver_to_client(&mut self, from: usize, c: usize, reply: &Reply) {
        let Some(a) = parse_answer(&reply.packet) else {
            self.fail("a reply does not parse".into());
        };
        let now = self.now;
        let mac = self.clients[c].mac;
        self.clients[c].asking_since = None;
        if a.kind == 2 && self.takeover.rediscover {
            self.expect_binding_offered(from, c, &a);
        }
        match (self.clients[c].state, a.kind) {
            (CState::Selecting { xid, since, .. }, 2) if xid == a.xid => {
                let p = dhcp_request(
                    3,
                    xid,
                    ((now - since) / 1000) as u16,
                    mac,
                    Ipv4Addr::UNSPECIFIED,
                    &[
                        (54, server_ip(from).octets().to_vec()),
                        (50, a.yiaddr.octets().to_vec()),
                    ],
                );
                self.clients[c].state = CState::Requesting {
                    xid,
                    ip: a.yiaddr,
                    server: from,
                    since,
                    give_up: now + 3_000,
                };
                self.send(c, &p, None, true);
            }
            (CState::Requesting { xid, ip, .. }, 5) if xid == a.xid && a.yiaddr == ip => {
                self.bind(c, from, a);
            }
            (CState::Reclaiming { xid, ip, .. }, 5) if xid == a.xid && a.yiaddr == ip => {
                self.bind(c, from, a);
            }
            (CState::Reclaiming { xid, .. }, 6) if xid == a.xid => {
                self.clients[c].state = CState::Idle { until: now };
            }
            (
                CState::Renewing { xid, .. }
                | CState::Rebinding { xid, .. }
                | CState::Rebooting { xid, .. },
                5,
            ) if xid == a.xid && self.clients[c].lease.is_some_and(|l| l.ip == a.yiaddr) => {
                self.bind(c, from, a);
            }
            (
                CState::Requesting { xid, .. }
                | CState::Renewing { xid, .. }
                | CState::Rebinding { xid, .. }
                | CState::Rebooting { xid, .. },
                6,
            ) if xid == a.xid => {
                self.log(|| format!("client {c} NAKed by node {from}"));
                self.end_lease(c, now);
                self.clients[c].state = CState::Idle { until: now };
            }
            _ => {}
        }
    }

    fn bind(&mut self, c: usize, from: usize, a: Answer) {
        let now = self.now;
        let secs = u64::from(a.lease_secs);
        let lease = Lease {
            ip: a.yiaddr,
            server: from,
            t1: now + secs * 500,
            t2: now + secs * 875,
            end: now + secs * 1000,
        };
        self.end_lease(c, now);
        let grant = Grant {
            ip: a.yiaddr,
            client: c,
            start: now,
            end: lease.end,
            from,
        };
        self.log(|| {
            let rec = self.nodes[from]
                .live
                .as_ref()
                .and_then(|l| l.db().get(a.yiaddr));
            let mode = self.nodes[from].live.as_ref().map(|l| l.mode());
            format!(
                "client {c} gets {} from node {from} for {secs} s (node records {:?}, mode {mode:?})",
                a.yiaddr,
                rec.map(|r| (r.state, r.expires, r.stamp.wall_ms))
            )
        });
        // Time-based expiry cannot be more exact than the nodes' clocks
        // agree, and lease ends are whole seconds.
        let tolerance = (self.nodes[0].skew_ms - self.nodes[1].skew_ms).unsigned_abs()
            + self.nodes[0].max_jump_ms
            + self.nodes[1].max_jump_ms
            + 1_000;
        for g in &self.grants {
            if g.ip == grant.ip && g.client != c && g.end > grant.start + tolerance {
                self.fail(format!(
                    "{} acknowledged to client {c} by node {from} while client {} holds it until {} ms (from node {})",
                    grant.ip,
                    g.client,
                    g.end - T0,
                    g.from
                ));
            }
        }
        self.grants.push(grant);
        self.clients[c].grant = Some(self.grants.len() - 1);
        self.clients[c].lease = Some(lease);
        self.clients[c].lost_conflict = false;
        self.clients[c].state = CState::Bound;
    }

    /// Feeds node i's changes since the last reading to its DNS side's
    /// serial and reads it: up after a change, the same without one.
    fn read_zone_serial(&mut self, i: usize, now_i: u64) -> Option<String> {
        let live = self.nodes[i].live.as_mut()?;
        let mut changed = false;
        loop {
            match live.feed.try_recv() {
                Ok(r) => {
                    live.zones.changed(change_ms(&r, now_i / 1000));
                    changed = true;
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => changed = true,
                Err(_) => break,
            }
        }
        let before = live.published;
        let now = live.zones.serial();
        live.published = now;
        if changed && !serial_gt(now, before) {
            return Some(format!(
                "node {i}'s table changed, but its zone serial went from {before} to {now}"
            ));
        }
        if !changed && now != before {
            return Some(format!(
                "node {i}'s zone serial moved from {before} to {now} with no change"
            ));
        }
        None
    }

    fn check(&mut self) {
        for i in 0..2 {
            let now_i = self.nodes[i].now(self.now);
            self.nodes[i].max_now = self.nodes[i].max_now.max(now_i);
            if let Some(l) = &self.nodes[i].live {
                // Whatever the partner sent, nothing stands beyond the
                // highest reading of this node's own clock plus the bound.
                let limit = self.nodes[i].max_now + MAX_SKEW_MS;
                if let Some(r) = l.db().iter().find(|r| r.stamp.wall_ms > limit) {
                    self.fail(format!(
                        "node {i} holds a record stamped beyond its clock plus {MAX_SKEW_MS} ms: {r:?}"
                    ));
                }
                if l.db().last_stamp().wall_ms > limit {
                    self.fail(format!(
                        "node {i}'s clock floor {:?} is beyond its clock plus {MAX_SKEW_MS} ms",
                        l.db().last_stamp()
                    ));
                }
                let s = l.db().last_stamp();
                let generation = l.db().generation();
                if let Some(problem) = self.read_zone_serial(i, now_i) {
                    self.fail(problem);
                }
                let Some(l) = &self.nodes[i].live else {
                    continue;
                };
                let newest = (self.nodes[i].zone_serial_at != Some(generation))
                    .then(|| l.db().iter().map(|r| r.stamp).max().unwrap_or_default());
                // Back only where it stood beyond the clock plus the bound
                // (the clock stepped back).
                let floor = self.nodes[i].serial_floor;
                if s < floor && floor.wall_ms <= now_i + MAX_SKEW_MS {
                    self.fail(format!(
                        "node {i}'s clock floor went back from {floor:?} to {s:?}"
                    ));
                }
                self.nodes[i].serial_floor = s;
                if let Some(newest) = newest {
                    let z = zone_serial(newest, DEFAULT_SERIAL_BASE);
                    // A clock set back stamps anew what stood ahead.
                    let jumped = self.nodes[i].max_jump_ms > 0;
                    if serial_gt(self.nodes[i].zone_serial, z) && !jumped {
                        self.fail(format!(
                            "node {i}'s zone serial went back from {} to {z}",
                            self.nodes[i].zone_serial
                        ));
                    }
                    self.nodes[i].zone_serial = z;
                    self.nodes[i].zone_serial_at = Some(generation);
                }
            }
        }
        let (Some(p), Some(s)) = (&self.nodes[0].live, &self.nodes[1].live) else {
            return;
        };
        let quiet = p.mode() == ServeMode::Linked
            && s.mode() == ServeMode::Passive
            && self.wire.is_empty()
            && p.status().unacked == 0
            && s.status().unacked == 0;
        if !quiet {
            return;
        }
        self.checks += 1;
        let pt: Vec<_> = p.db().iter().collect();
        let st: Vec<_> = s.db().iter().collect();
        if pt != st {
            let diff: Vec<String> = pt
                .iter()
                .zip(st.iter())
                .filter(|(a, b)| a != b)
                .take(3)
                .map(|(a, b)| format!("{a:?} vs {b:?}"))
                .collect();
            self.fail(format!(
                "in sync and quiet, but the tables differ ({} vs {} records): {diff:?}",
                pt.len(),
                st.len()
            ));
        }
        let tolerance = (self.nodes[0].skew_ms - self.nodes[1].skew_ms).unsigned_abs()
            + self.nodes[0]
                .skew_ms
                .unsigned_abs()
                .max(self.nodes[1].skew_ms.unsigned_abs())
            + self.nodes[0].max_jump_ms
            + self.nodes[1].max_jump_ms
            + 1_000;
        let mut lost = Vec::new();
        for (c, cl) in self.clients.iter().enumerate() {
            // A lease about to end may already be expired by a node whose
            // clock runs ahead.
            let Some(l) = cl
                .lease
                .filter(|l| l.end > self.now + tolerance && !cl.lost_conflict)
            else {
                continue;
            };
            let conflicts = p.status().conflicts + s.status().conflicts;
            for (n, db) in [(0, &p.db()), (1, &s.db())] {
                let rec = db.get(l.ip);
                let held = rec
                    .as_ref()
                    .is_some_and(|r| r.state == LeaseState::Bound && r.hwaddr == cl.mac.to_vec());
                // design.md's conflict rule: two clients for one address
                // after a partition, the newer record stands on both nodes
                // and the other client is NAKed at its next renew. Counted
                // here, not failed; see the issue note (seed 728).
                let lost_conflict = conflicts > 0
                    && rec.as_ref().is_some_and(|r| {
                        r.state == LeaseState::Bound && r.hwaddr != cl.mac.to_vec()
                    });
                if lost_conflict {
                    lost.push(c);
                } else if !held {
                    self.fail(format!(
                        "client {c} holds {} but node {n} records {rec:?}",
                        l.ip
                    ));
                }
            }
        }
        for c in lost {
            self.conflict_losses += 1;
            self.log(|| format!("client {c} lost a counted conflict"));
            // It hears so at its next renew; not checked again until it
            // binds anew.
            self.clients[c].lost_conflict = true;
        }
    }
}

/// What varies between the simulation's test cases.
#[derive(Clone, Copy)]
struct Scenario {
    lan_faults: bool,
    /// Whether a node's clock leaps ahead by more than the skew bound and
    /// back.
    clock_jumps: bool,
    /// Last address of the range .10-: .49 gives each node a 20-address
    /// share for the 12 clients; .29 gives 10, so the linked primary
    /// reaches into the secondary's share.
    range_end: u8,
    /// Seeds a CI run takes (`TWINMASQ_SIM_SEEDS` overrides); the two
    /// scenarios share a thousand.
    seeds: u64,
    /// Bound clients now and then DISCOVER afresh (case 7).
    rediscover: bool,
    /// Clients ask for their address again after their lease ran out
    /// (case 6).
    stale_claims: bool,
    /// Odd seeds draw each node's clock offset from this many ms either
    /// way (the pair's skew stays within `failover-max-skew` when it is
    /// half the bound); even seeds from 1.5 s (case 3).
    wide_skew_ms: i64,
    /// Flushes take 0 to 50 ms instead of none, so updates queue behind
    /// the link's two-update window and acks cross conflicting updates
    /// (case 2).
    slow_flush: bool,
    /// Wiped databases, one-node configuration edits, a partner declared
    /// down that returns, hung disks (cases 1, 4, 5 and 8).
    life: bool,
}

/// What one seed did, for the totals.
#[derive(Default, Clone, Copy)]
struct Outcome {
    checks: u64,
    grants: usize,
    lost: u64,
    full_syncs: u64,
    resumed_syncs: u64,
    jumps: u64,
    refused: u64,
    resets: u64,
    kept: u64,
    reclaims: u64,
    reclaim_acks: u64,
    lives: Lives,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, o: Outcome) {
        self.checks += o.checks;
        self.grants += o.grants;
        self.lost += o.lost;
        self.full_syncs += o.full_syncs;
        self.resumed_syncs += o.resumed_syncs;
        self.jumps += o.jumps;
        self.refused += o.refused;
        self.resets += o.resets;
        self.kept += o.kept;
        self.reclaims += o.reclaims;
        self.reclaim_acks += o.reclaim_acks;
        self.lives.wipes += o.lives.wipes;
        self.lives.returns += o.lives.returns;
        self.lives.edits += o.lives.edits;
        self.lives.mismatch_steps += o.lives.mismatch_steps;
        self.lives.hangs += o.lives.hangs;
    }
}

fn run_seed(seed: u64, trace: bool, scenario: Scenario) -> Outcome {
    let mut sim = Sim::new(seed, trace, scenario);
    sim.run();
    let (mut full_syncs, mut resumed_syncs) = sim.syncs_of_the_dead;
    let mut refused = sim.refused_of_the_dead;
    let mut resets = sim.resets_of_the_dead;
    for live in sim.nodes.iter().filter_map(|n| n.live.as_ref()) {
        let st = live.status();
        full_syncs += st.full_syncs;
        resumed_syncs += st.resumed_syncs;
        refused += st.rejected.stamp;
        resets += live.db().clock_resets();
    }
    Outcome {
        checks: sim.checks,
        grants: sim.grants.len(),
        lost: sim.conflict_losses,
        full_syncs,
        resumed_syncs,
        jumps: sim.jumps,
        refused,
        resets,
        kept: sim.takeover.kept,
        reclaims: sim.takeover.reclaims,
        reclaim_acks: sim.takeover.reclaim_acks,
        lives: sim.lives,
    }
}

fn run_seeds(scenario: Scenario) {
    if let Some(seed) = std::env::var("TWINMASQ_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let o = run_seed(seed, true, scenario);
        eprintln!(
            "seed {seed}: {} leases granted, {} in-sync checks, {} conflict losses, {} full and {} resumed syncs; {} clock leaps, {} records refused for their stamps, {} clocks set back",
            o.grants, o.checks, o.lost, o.full_syncs, o.resumed_syncs, o.jumps, o.refused, o.resets
        );
        return;
    }
    let seeds: u64 = std::env::var("TWINMASQ_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(scenario.seeds);
    let threads = 2;
    let started = Instant::now();
    let totals: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut sum = Outcome::default();
                    let mut seed = t;
                    while seed < seeds {
                        sum += run_seed(seed, false, scenario);
                        seed += threads;
                    }
                    sum
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut t = Outcome::default();
    for o in totals {
        t += o;
    }
    eprintln!(
        "{seeds} seeds in {:?}: {} leases granted, {} in-sync table checks, {} client leases lost a counted conflict, {} full and {} resumed syncs; {} clock leaps, {} records refused for their stamps, {} clocks set back",
        started.elapsed(),
        t.grants,
        t.checks,
        t.lost,
        t.full_syncs,
        t.resumed_syncs,
        t.jumps,
        t.refused,
        t.resets
    );
    if scenario.rediscover {
        eprintln!(
            "{} offers of a partner-share binding by a passive secondary or in partner-down",
            t.kept
        );
        assert!(t.kept > 0, "no takeover of a known client to check");
    }
    if scenario.stale_claims {
        eprintln!(
            "{} stale claims, {} acknowledged at once",
            t.reclaims, t.reclaim_acks
        );
        assert!(t.reclaims > seeds, "too few stale claims to mean anything");
    }
    if scenario.life {
        let l = t.lives;
        eprintln!(
            "{} databases wiped, {} returns after partner-down, {} configuration edits ({} steps refused as a mismatch), {} disk hangs",
            l.wipes, l.returns, l.edits, l.mismatch_steps, l.hangs
        );
        assert!(
            l.wipes > seeds / 4
                && l.returns > 0
                && l.edits > seeds / 10
                && l.mismatch_steps > 0
                && l.hangs > seeds / 4,
            "too few of the life scenario's operations to mean anything"
        );
    }
    if scenario.clock_jumps {
        // The leaps must reach what they are there to test.
        assert!(
            t.jumps > seeds && t.refused > 0 && t.resets > seeds / 4,
            "too few clock leaps, refusals or clocks set back to mean anything"
        );
    }
    assert!(
        t.grants > seeds as usize * 10,
        "the clients got too few leases to mean anything"
    );
    assert!(t.checks > seeds, "too few in-sync checks to mean anything");
    // Both kinds of sync must be exercised for the checks to cover them.
    assert!(
        t.resumed_syncs > seeds && t.full_syncs > seeds,
        "too few syncs of each kind to mean anything"
    );
}

/// Partitions, stalled connections, a node's LAN side failing (so clients
/// renew with the node that did not grant their lease), kills and
/// restarts, clock skew, partner-down; each node's share big enough for
/// every client.
#[test]
fn failover_pair_never_duplicates_and_converges() {
    run_seeds(Scenario {
        lan_faults: true,
        clock_jumps: false,
        range_end: 49,
        seeds: 800,
        rediscover: false,
        stale_claims: false,
        wide_skew_ms: 5_000,
        slow_flush: false,
        life: false,
    });
}

/// The same with a pool so small that the linked primary allocates from
/// the secondary's share. Such a change, never acked because the link
/// stalled and the primary died, can later meet the address the secondary
/// gave a real client meanwhile; before conflicts went to the share
/// owner's record, the newer-stamp rule let the untold record win and its
/// client was told an address another client held (seed 728 found it).
#[test]
fn failover_pair_under_pool_pressure() {
    let scenario = Scenario {
        lan_faults: true,
        clock_jumps: false,
        range_end: 29,
        seeds: 400,
        rediscover: false,
        stale_claims: false,
        wide_skew_ms: 15_000,
        slow_flush: true,
        life: false,
    };
    // The seed that found the untold record winning, kept as a regression.
    run_seed(728, false, scenario);
    run_seeds(scenario);
}

/// A node's clock leaps ahead by more than `failover-max-skew` (35 to 120
/// s) and later back, while it serves, syncs and streams: the partner
/// refuses its stamps from the future and the link stays down while the
/// clocks disagree, the node's own stamps come back within the bound once
/// its clock is back, and the pair still never duplicates and converges.
#[test]
fn failover_pair_through_clock_jumps() {
    run_seeds(Scenario {
        lan_faults: false,
        clock_jumps: true,
        range_end: 49,
        seeds: 250,
        rediscover: false,
        stale_claims: false,
        wide_skew_ms: 1_500,
        slow_flush: false,
        life: false,
    });
}

/// Issue 14, case 7: bound clients now and then forget their lease and
/// DISCOVER afresh, amid kills and partitions; a node that holds a live
/// lease of the client written by its partner offers that address, even
/// one of the partner's share, in sync or once partner-down opened that
/// share (the primary killed and declared down, the secondary serving).
#[test]
fn failover_pair_known_clients_rediscover_after_takeover() {
    run_seeds(Scenario {
        lan_faults: true,
        clock_jumps: false,
        range_end: 49,
        seeds: 300,
        rediscover: true,
        stale_claims: false,
        wide_skew_ms: 5_000,
        slow_flush: false,
        life: false,
    });
}

/// Issue 14, cases 1, 4, 5 and 8 over the life of a pair, with the pool
/// pressure and slow flushes of the second scenario: a node comes back
/// with its database wiped (a replaced disk), or with its `dhcp-range` or
/// `failover-mclt` edited and the edit undone later, or after its partner
/// declared it down; a disk hangs past the link's timeout. The node back
/// hands out nothing new until it has synced (the edited one not while
/// refused), and nothing is acknowledged to two clients. Each of these is
/// done as the README asks of an operator: the partner alive and the link
/// up until the node has synced (a wiped node whose partner is gone
/// serves after an MCLT from an empty table, a documented limit).
#[test]
fn failover_pair_through_a_life_of_operations() {
    run_seeds(Scenario {
        lan_faults: true,
        clock_jumps: false,
        range_end: 29,
        seeds: 300,
        rediscover: false,
        stale_claims: false,
        wide_skew_ms: 5_000,
        slow_flush: true,
        life: true,
    });
}

/// Issue 14, case 6: clients whose lease ran out ask for their address
/// again up to a minute later (two MCLTs), with a pool small enough that
/// ended addresses are soon given to others; a node not linked never
/// acknowledges an address of its partner's share it holds no live lease
/// on for the client, and nothing is acknowledged to two clients.
#[test]
fn failover_pair_expired_clients_reclaim_their_addresses() {
    run_seeds(Scenario {
        lan_faults: true,
        clock_jumps: false,
        range_end: 29,
        seeds: 250,
        rediscover: false,
        stale_claims: true,
        wide_skew_ms: 5_000,
        slow_flush: false,
        life: false,
    });
}
