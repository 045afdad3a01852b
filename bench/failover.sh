#!/usr/bin/env bash
# Failover benchmark: the three figures of the primary/secondary pair in one
# run, in network namespaces this script creates and removes:
#   1. sync time (one side preloaded with 100,000 leases, the other empty),
#   2. takeover time (kill -9 of the primary, and a cut link),
#   3. DHCP throughput of a lone primary vs the same primary with its
#      secondary connected (every ACK waits for the secondary's ack),
#   4. restart to serve: a primary killed (kill -9) and started again on
#      its intact database, until it answers a new client, with its
#      partner up and with it down.
# Run as root from anywhere: bench/failover.sh [--quick] [--json] (--help).
set -euo pipefail
# Decimal points, number formats and sort order must not depend on the caller.
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_NAME=failover.sh
# log, die, cleanup (trap), process and perfdhcp helpers, the peak search.
. "$SCRIPT_DIR/lib.sh"

usage() {
  cat <<'EOF'
Usage: bench/failover.sh [options]

Measures the twinmasq failover pair: sync time with 100,000 leases on one
side, takeover time after a kill -9 of the primary or a cut link, and
perfdhcp throughput of a lone primary vs a primary with its secondary, and
the time a restarted primary (kill -9, database intact) takes to answer a new
client's DISCOVER with its partner up and down.
Prints a table and writes it with a JSON summary to bench/results/.

  --quick            smoke run (~2 min): 1 repetition each, 3 s perfdhcp runs,
                     2 peak-search steps, no cases with the default timers
  --json             print the JSON summary on stdout (the table goes to stderr)
  --only LIST        comma-separated subset of sync,takeover,throughput,restart
                     (default: all)
  --leases N         leases preloaded for the sync (default 100000)
  --sync-reps N      repetitions of each sync case (default 3; --quick: 1)
  --heartbeat D      failover-heartbeat of the pair, e.g. 200ms (default 200ms)
  --timeout D        failover-timeout of the pair, e.g. 1s (default 1s)
  --takeover-reps N  repetitions of each takeover case (default 3; --quick: 1)
  --restart-reps N   repetitions of each restart case (default 3; --quick: 1)
  --restart-mclt D   failover-mclt of the pair in the restart part (default 10s):
                     with its partner down a node is to wait that long
  --no-default-timers  skip the sync and takeover cases with twinmasq's
                     default timers (heartbeat 1s, timeout 5s)
  --secondary-core N the secondary's core in the sync and takeover parts
                     (default 1)
  --paired-cores L   throughput: the secondary's core in each paired series,
                     comma-separated (default 1,0: beside perfdhcp, then
                     beside the primary)
  --rate N           throughput: fixed-rate run, DORA/s offered (default 4000)
  --period S         seconds per perfdhcp run, 1..10 (default 10; --quick: 3)
  --peak-runs N      peak-search runs after the fixed run (default 5; --quick: 2)
  --max-rate N       peak search stops here (default 16000)
  --macs N           size of perfdhcp's random MAC list (default 100000)
  --seed N           seed for the MAC list, perfdhcp and pauses (default 1)
  --twinmasq-bin P   use this twinmasq binary instead of target/release/twinmasq
  --no-build         do not run cargo build for twinmasq
  --keep             keep the work directory (configs, logs, perfdhcp output)
  -h, --help         this text
EOF
}

# ---------------------------------------------------------------- options
RATE=4000 PERIOD=10 PEAK_RUNS=5 MAX_RATE=16000 MIN_RATE=20
NLEASES=100000 SYNC_REPS=3 TAKEOVER_REPS=3 HEARTBEAT=200ms LINK_TIMEOUT=1s
RESTART_REPS=3 RESTART_MCLT=10s
NMACS=100000 SEED=1 QUICK=0 JSON=0 BUILD=1 KEEP=0 DEFAULT_TIMERS=1
ONLY="sync,takeover,throughput,restart" TWINMASQ_BIN="" SEC_CORE=1 PAIRED_CORES=1,0
period_set=0 peak_set=0 sreps_set=0 treps_set=0 rreps_set=0 deftimers_set=0

need_arg() { [ $# -ge 2 ] || { echo "failover.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --json) JSON=1 ;;
    --only) need_arg "$@"; ONLY=$2; shift ;;
    --leases) need_arg "$@"; NLEASES=$2; shift ;;
    --sync-reps) need_arg "$@"; SYNC_REPS=$2; sreps_set=1; shift ;;
    --heartbeat) need_arg "$@"; HEARTBEAT=$2; shift ;;
    --timeout) need_arg "$@"; LINK_TIMEOUT=$2; shift ;;
    --takeover-reps) need_arg "$@"; TAKEOVER_REPS=$2; treps_set=1; shift ;;
    --restart-reps) need_arg "$@"; RESTART_REPS=$2; rreps_set=1; shift ;;
    --restart-mclt) need_arg "$@"; RESTART_MCLT=$2; shift ;;
    --no-default-timers) DEFAULT_TIMERS=0; deftimers_set=1 ;;
    --secondary-core) need_arg "$@"; SEC_CORE=$2; shift ;;
    --paired-cores) need_arg "$@"; PAIRED_CORES=$2; shift ;;
    --rate) need_arg "$@"; RATE=$2; shift ;;
    --period) need_arg "$@"; PERIOD=$2; period_set=1; shift ;;
    --peak-runs) need_arg "$@"; PEAK_RUNS=$2; peak_set=1; shift ;;
    --max-rate) need_arg "$@"; MAX_RATE=$2; shift ;;
    --macs) need_arg "$@"; NMACS=$2; shift ;;
    --seed) need_arg "$@"; SEED=$2; shift ;;
    --twinmasq-bin) need_arg "$@"; TWINMASQ_BIN=$2; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "failover.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  [ "$period_set" = 1 ] || PERIOD=3
  [ "$peak_set" = 1 ] || PEAK_RUNS=2
  [ "$sreps_set" = 1 ] || SYNC_REPS=1
  [ "$treps_set" = 1 ] || TAKEOVER_REPS=1
  [ "$rreps_set" = 1 ] || RESTART_REPS=1
  [ "$deftimers_set" = 1 ] || DEFAULT_TIMERS=0
fi
for v in RATE PERIOD PEAK_RUNS MAX_RATE NLEASES SYNC_REPS TAKEOVER_REPS RESTART_REPS NMACS SEED SEC_CORE; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "failover.sh: $v must be a whole number" >&2; exit 2; }
done
# Runs are bounded by contract: nothing here may load the machine for long.
if [ "$PERIOD" -lt 1 ] || [ "$PERIOD" -gt 10 ]; then
  echo "failover.sh: --period must be 1..10 seconds" >&2; exit 2
fi
if [ "$SYNC_REPS" -lt 1 ] || [ "$SYNC_REPS" -gt 10 ] || [ "$TAKEOVER_REPS" -lt 1 ] || [ "$TAKEOVER_REPS" -gt 10 ] ||
   [ "$RESTART_REPS" -lt 1 ] || [ "$RESTART_REPS" -gt 10 ]; then
  echo "failover.sh: --sync-reps, --takeover-reps and --restart-reps must be 1..10" >&2; exit 2
fi
DO_SYNC=0 DO_TAKEOVER=0 DO_THROUGHPUT=0 DO_RESTART=0
IFS=',' read -r -a only_list <<<"$ONLY"
for o in "${only_list[@]}"; do
  case $o in
    sync) DO_SYNC=1 ;; takeover) DO_TAKEOVER=1 ;; throughput) DO_THROUGHPUT=1 ;; restart) DO_RESTART=1 ;;
    *) echo "failover.sh: unknown part '$o' in --only (sync, takeover, throughput, restart)" >&2; exit 2 ;;
  esac
done

# A duration as twinmasq reads it (500ms, 5, 5s), in milliseconds.
dur_ms() {
  case $1 in
    *ms) [[ ${1%ms} =~ ^[0-9]+$ ]] && echo $(( ${1%ms} )) ;;
    *s) [[ ${1%s} =~ ^[0-9]+$ ]] && echo $(( ${1%s} * 1000 )) ;;
    *) [[ $1 =~ ^[0-9]+$ ]] && echo $(( $1 * 1000 )) ;;
  esac
}
HB_MS=$(dur_ms "$HEARTBEAT" || true) TO_MS=$(dur_ms "$LINK_TIMEOUT" || true)
if [ -z "$HB_MS" ] || [ -z "$TO_MS" ] || [ "$HB_MS" = 0 ] || [ "$TO_MS" -le "$HB_MS" ] || [ "$TO_MS" -gt 30000 ]; then
  echo "failover.sh: --heartbeat/--timeout must look like 200ms, 1s or 5, with heartbeat < timeout <= 30s" >&2; exit 2
fi
RMCLT_MS=$(dur_ms "$RESTART_MCLT" || true)
if [ -z "$RMCLT_MS" ] || [ "$RMCLT_MS" -lt 1000 ] || [ "$RMCLT_MS" -gt 60000 ]; then
  echo "failover.sh: --restart-mclt must be 1s..60s (the partner-down case waits that long)" >&2; exit 2
fi
# twinmasq's defaults (src/config/failover.rs), the second set of takeover cases.
DEF_HEARTBEAT=1s DEF_TIMEOUT=5s

# ---------------------------------------------------------------- constants
# Only 198.18.0.0/15 (RFC 2544 benchmarking space) is ever used.
#   client veth:  primary 198.18.0.1/15 <-> perfdhcp, a relay at 198.18.0.2/15
#   link veth:    primary 198.18.0.5/30 <-> secondary 198.18.0.6/15
# The secondary's /15 puts it on the DHCP subnet as it would be on a LAN
# (it serves that subnet once it takes over); the primary's /30 is a more
# specific route, so its link traffic never leaves by the client veth.
PRI_ADDR=198.18.0.1 CLI_ADDR=198.18.0.2 PREFIX=15 NETMASK=255.254.0.0
LINK_PRI=198.18.0.5 LINK_SEC=198.18.0.6 FO_PORT=6470
SRV_ADDR=$PRI_ADDR # perfdhcp's target (lib.sh)
POOL_START=198.18.1.0 POOL_END=198.19.255.254
POOL_SIZE=$(( 2 * 65536 - 256 - 1 ))
DROP_OK=1           # a run "holds" the rate when at most this % of DORAs fail
EXIT_WAIT_US=500000 # perfdhcp -W: let answers in flight at the end arrive
SYNC_TARGET_S=2     # targets the report checks
RESTART_TARGET_S=3  # partner up; partner down: an MCLT, by design
RESTART_RATE=20     # DISCOVERs/s of the restart probe: its resolution is 1/20 s
RESTART_WATCH_S=10  # how long the probe runs beyond the wait the case expects
THROUGHPUT_TARGET=0.70
# Cores: the primary on 0, perfdhcp on 1. A real pair has a machine each;
# here the secondary must share a core with someone:
# - sync and takeover (no perfdhcp running): core 1 (--secondary-core),
#   which it then has to itself, as it would on a machine of its own;
# - throughput: both ways, one series each (--paired-cores 1,0). Beside
#   perfdhcp (core 1) it competes with a load generator that keeps its core
#   busy; beside the primary (core 0) it takes CPU from the server being
#   measured. Each handicaps the pair differently; a secondary on a machine
#   of its own should do no worse than the better of the two. The table
#   shows what the secondary cost (sec_cpu_s) and whether perfdhcp still
#   sent the offered rate (sent/s, "<").
PRI_CORE=0 CLI_CORE=1

# The PID keeps names unique when several developers run this at once; veth
# names must stay within 15 characters.
NS_PRI="tmqf-$$-pri" NS_SEC="tmqf-$$-sec" NS_CLI="tmqf-$$-cli"
IF_PRI="tmqf$$p" IF_CLI="tmqf$$c" IF_LP="tmqf$$l" IF_LS="tmqf$$s"

if [ "$NMACS" -ge "$POOL_SIZE" ] || [ "$NLEASES" -ge "$POOL_SIZE" ]; then
  echo "failover.sh: --macs and --leases must stay below the pool size ($POOL_SIZE)" >&2; exit 2
fi

bench_traps
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for c in ip ethtool taskset perfdhcp ss awk sort timeout date; do
  command -v "$c" >/dev/null || die "missing $c (scripts/install-test-deps.sh installs it)"
done
[ "$SEC_CORE" -lt "$(nproc)" ] || die "--secondary-core $SEC_CORE: this machine has $(nproc) cores"
IFS=',' read -r -a PAIRED_CORE_LIST <<<"$PAIRED_CORES"
TP_SERVERS=(lone)
for c in "${PAIRED_CORE_LIST[@]}"; do
  [[ $c =~ ^[0-9]+$ ]] && [ "$c" -lt "$(nproc)" ] || die "--paired-cores: '$c' is not a core of this machine"
  TP_SERVERS+=("paired-c$c")
done
[ "$(nproc)" -ge 2 ] || die "needs 2 cores: the primary is pinned to core $PRI_CORE, perfdhcp and the secondary to core $CLI_CORE"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- network
setup_net() {
  make_netns "$NS_PRI" "$PRI_ADDR"
  make_netns "$NS_SEC" "$PRI_ADDR"
  make_netns "$NS_CLI" "$PRI_ADDR"
  # Each pair is created inside the primary's namespace and its peer goes
  # straight to the other one: no end ever appears among the host's links.
  ip -n "$NS_PRI" link add "$IF_PRI" type veth peer name "$IF_CLI" netns "$NS_CLI"
  ip -n "$NS_PRI" addr add "$PRI_ADDR/$PREFIX" dev "$IF_PRI"
  ip -n "$NS_CLI" addr add "$CLI_ADDR/$PREFIX" dev "$IF_CLI"
  ip -n "$NS_PRI" link set "$IF_PRI" up
  ip -n "$NS_CLI" link set "$IF_CLI" up
  # veths leave UDP checksums to an offload that never happens; clients
  # reading raw frames would then see bad checksums.
  ip netns exec "$NS_PRI" ethtool -K "$IF_PRI" tx off rx off >/dev/null
  ip netns exec "$NS_CLI" ethtool -K "$IF_CLI" tx off rx off >/dev/null
  # The failover link: its own veth, so it can be cut alone.
  ip -n "$NS_PRI" link add "$IF_LP" type veth peer name "$IF_LS" netns "$NS_SEC"
  ip -n "$NS_PRI" addr add "$LINK_PRI/30" dev "$IF_LP"
  ip -n "$NS_SEC" addr add "$LINK_SEC/$PREFIX" dev "$IF_LS"
  ip -n "$NS_PRI" link set "$IF_LP" up
  ip -n "$NS_SEC" link set "$IF_LS" up
}

# Down or up, from the primary's end: the peer loses its carrier too, and
# neither end's TCP hears anything (no FIN, no RST) until the link is back.
link_set() { ip -n "$NS_PRI" link set "$IF_LP" "$1"; }

# ---------------------------------------------------------------- servers
# write_conf DIR ROLE(lone|primary|secondary) HEARTBEAT TIMEOUT
write_conf() {
  local dir=$1 role=$2 hb=$3 to=$4 iface=$IF_PRI
  [ "$role" != secondary ] || iface=$IF_LS
  {
    echo "# written by bench/failover.sh ($role)"
    echo "port=0"                      # DHCP only: no DNS listener to skew CPU
    echo "interface=$iface"
    echo "dhcp-range=$POOL_START,$POOL_END,$NETMASK,1h"
    echo "dhcp-authoritative"
    echo "dhcp-lease-max=200000"       # default 1000 would cap the run
    echo "dhcp-leasefile=$dir/leases"
    # The restart part reads when the first OFFER went out from the log.
    [ "${CONF_LOUD:-0}" = 1 ] || echo "quiet-dhcp"
    echo "log-facility=$dir/server.log"
    echo "no-ping"
    case $role in
      primary) echo "failover-listen=$LINK_PRI,$FO_PORT" ;;
      secondary) echo "failover-master=$LINK_PRI,$FO_PORT" ;;
    esac
    if [ "$role" != lone ]; then
      echo "failover-key=$WORK/failover.key"
      echo "failover-heartbeat=$hb"
      echo "failover-timeout=$to"
      # Both nodes must agree on it (a mismatch refuses the link).
      [ -z "${CONF_MCLT:-}" ] || echo "failover-mclt=$CONF_MCLT"
    fi
  } >"$dir/dnsmasq.conf"
}

# start_node DIR NS CORE: starts twinmasq on DIR's config, pinned; sets
# NODE_PID and NODE_T0 (epoch seconds just before the start).
start_node() {
  local dir=$1 ns=$2 core=$3
  NODE_T0=$(date +%s.%N)
  # ip netns exec and taskset both exec, so $! is twinmasq itself.
  ip netns exec "$ns" taskset -c "$core" "$TWINMASQ_BIN" --keep-in-foreground \
    --conf-file="$dir/dnsmasq.conf" --lease-db="$dir/db" --dhcp-rate-limit=off >"$dir/server.out" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
}

stop_node() { # pid
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do proc_alive "$pid" || break; sleep 0.1; done
  if proc_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

kill9_node() { # pid
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

# wait_listen PID NS tcp|udp PORT SECONDS: until PID listens there.
wait_listen() {
  local pid=$1 ns=$2 proto=$3 port=$4 secs=$5 flag=-Hulnp
  [ "$proto" = tcp ] && flag=-Htlnp
  for _ in $(seq $(( secs * 10 ))); do
    proc_alive "$pid" || return 1
    if ip netns exec "$ns" ss "$flag" "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# log_line FILE TEXT [SKIP]: the first line holding TEXT after SKIP lines.
log_line() { tail -n +"$(( ${3:-0} + 1 ))" "$1" 2>/dev/null | grep -m1 -F -- "$2" || true; }
log_lines() { wc -l <"$1" 2>/dev/null || echo 0; }
# first_after FILE ERE AFTER / last_before FILE ERE BEFORE: "N:line" of the
# first line matching after line AFTER, or of the last one before BEFORE.
first_after() { awk -v re="$2" -v a="$3" 'NR > a && $0 ~ re { print NR ":" $0; exit }' "$1" 2>/dev/null || true; }
last_before() { awk -v re="$2" -v b="$3" 'NR < b && $0 ~ re { l = NR ":" $0 } END { if (l != "") print l }' "$1" 2>/dev/null || true; }
# A session with the partner ending, as either node logs it.
LOSS_RE='link to the partner ends|the partner closed the link|refus'

# A log line's time (tracing's RFC 3339 UTC stamp, first field) in epoch s.
line_ts() { [ -n "$1" ] && date -u -d "${1%% *}" +%s.%N; }
# Seconds from a to b, 3 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.3f", b - a }'; }
maxf() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }

# wait_log FILE TEXT SKIP SECONDS [PID...]: until TEXT appears after SKIP
# lines; fails at the deadline or as soon as one of the PIDs is gone.
wait_log() {
  local file=$1 text=$2 skip=$3 secs=$4 p
  shift 4
  for _ in $(seq $(( secs * 20 ))); do
    [ -z "$(log_line "$file" "$text" "$skip")" ] || return 0
    for p in "$@"; do proc_alive "$p" || { [ -n "$(log_line "$file" "$text" "$skip")" ]; return; }; done
    sleep 0.05
  done
  return 1
}

# Last lines of a node's log and stderr, for the report when it misbehaves.
EVIDENCE=()
evidence() { # title dir
  local t=$1 d=$2
  EVIDENCE+=("$t ($d):")
  while IFS= read -r l; do EVIDENCE+=("    log: $l"); done < <(tail -n 6 "$d/server.log" 2>/dev/null)
  while IFS= read -r l; do EVIDENCE+=("    stderr: $l"); done < <(grep . "$d/server.out" 2>/dev/null | tail -n 3)
}

# start_pair DIR HB TO [SEC_CORE]: a primary in DIR/pri (waits until it has
# started and listens on the link port), then a secondary in DIR/sec, then
# both logs' "sync done". Sets PRI_PID SEC_PID SEC_T0, or PAIR_ERR (and
# returns 1).
start_pair() {
  local dir=$1 hb=$2 to=$3 score=${4:-$SEC_CORE}
  PAIR_ERR="" PRI_PID="" SEC_PID=""
  mkdir -p "$dir/pri" "$dir/sec"
  [ -f "$dir/pri/dnsmasq.conf" ] || write_conf "$dir/pri" primary "$hb" "$to"
  [ -f "$dir/sec/dnsmasq.conf" ] || write_conf "$dir/sec" secondary "$hb" "$to"
  start_node "$dir/pri" "$NS_PRI" "$PRI_CORE"
  PRI_PID=$NODE_PID PRI_T0=$NODE_T0
  # The link port is bound before a preloaded lease file is imported, and
  # a secondary connecting then waits unanswered (its handshake can time
  # out): the secondary starts only once the primary logged "started".
  if ! wait_log "$dir/pri/server.log" "INFO started" 0 60 "$PRI_PID" ||
     ! wait_listen "$PRI_PID" "$NS_PRI" tcp "$FO_PORT" 10; then
    PAIR_ERR="primary not started and listening on TCP $FO_PORT within 60 s"
    evidence "primary" "$dir/pri"; return 1
  fi
  start_node "$dir/sec" "$NS_SEC" "$score"
  SEC_PID=$NODE_PID SEC_T0=$NODE_T0
  if ! wait_log "$dir/sec/server.log" "failover: sync done" 0 30 "$SEC_PID" "$PRI_PID" ||
     ! wait_log "$dir/pri/server.log" "failover: sync done" 0 5 "$PRI_PID"; then
    PAIR_ERR="the pair did not sync within 30 s"
    evidence "primary" "$dir/pri"; evidence "secondary" "$dir/sec"; return 1
  fi
}

stop_pair() {
  stop_node "${SEC_PID:-}"; SEC_PID=""
  stop_node "${PRI_PID:-}"; PRI_PID=""
}

# write_leases FILE N: a dnsmasq lease file of N bound leases, distinct MACs
# (0e:..., never among perfdhcp's 02:...) and addresses from the pool's
# start up, a hostname each, expiring in a day.
write_leases() {
  awk -v n="$2" -v e="$(( $(date +%s) + 86400 ))" 'BEGIN {
    base = 198 * 16777216 + 18 * 65536 + 256   # 198.18.1.0
    for (i = 0; i < n; i++) {
      ip = base + i
      printf "%d 0e:00:00:%02x:%02x:%02x %d.%d.%d.%d bench-%d *\n", e,
        int(i / 65536) % 256, int(i / 256) % 256, i % 256,
        int(ip / 16777216), int(ip / 65536) % 256, int(ip / 256) % 256, ip % 256, i
    }
  }' >"$1"
}

# min / median / max of the numbers given (empty ones skipped).
stats() {
  printf '%s\n' "$@" | awk 'NF' | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - -"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.3f %.3f %.3f\n", v[1], m, v[NR] }'
}

# ---------------------------------------------------------------- 1. sync
declare -A S=()  # sync results: S[<case>.<rep>.<field>]
SYNC_CASES=()    # <what>-<timers>: pri-holds, sec-holds, both-hold x fast, default

# wait_stable_sync DIR SKIP_PRI SKIP_SEC SETTLE_S PID...: until both logs
# say "sync done" (after the skipped lines) for one session and neither
# node then logs that session's end within SETTLE_S. A session lost at its
# sync (one node gave up on a silent partner while the other was still
# merging) is a failed attempt: the wait goes on to the next sync, 5 at
# most. Sets SY_PRI/SY_SEC ("N:line" of the sync done lines that held),
# SY_ATTEMPTS (syncs the secondary started, up to that one), SY_DROPS (the
# lines that ended the sessions before), SY_ERR.
wait_stable_sync() {
  local dir=$1 sp=$2 ss=$3 settle=$4 p0=$2 s0=$3 hp hs lp ls l i
  shift 4
  SY_ATTEMPTS=0 SY_ERR="" SY_DROPS=() SY_PRI="" SY_SEC=""
  for i in 1 2 3 4 5; do
    if ! wait_log "$dir/sec/server.log" "failover: sync done" "$ss" 30 "$@"; then
      SY_ERR="no \"sync done\" in the secondary's log within 30 s"; break
    fi
    hs=$(first_after "$dir/sec/server.log" "failover: sync done" "$ss")
    # The primary's line for the same session: it logs "sync done" when
    # the secondary's Synced arrives, so its first one from the secondary's
    # on. (RFC 3339 stamps of one width compare as strings.)
    wait_log "$dir/pri/server.log" "failover: sync done" "$sp" 5 "$@" || true
    hp=$(awk -v a="$sp" -v t="${hs#*:}" 'BEGIN { split(t, f, " "); t = f[1] }
      NR > a && /failover: sync done/ && $1 >= t { print NR ":" $0; exit }' "$dir/pri/server.log")
    if [ -z "$hp" ]; then SY_ERR="the secondary says \"sync done\", the primary does not"; break; fi
    sleep "$settle"
    lp=$(first_after "$dir/pri/server.log" "$LOSS_RE" "${hp%%:*}")
    ls=$(first_after "$dir/sec/server.log" "$LOSS_RE" "${hs%%:*}")
    if [ -z "$lp$ls" ]; then SY_PRI=$hp SY_SEC=$hs; break; fi
    # The next session's "sync done" comes after the loss.
    sp=${hp%%:*} ss=${hs%%:*}
    [ -z "$lp" ] || sp=${lp%%:*}
    [ -z "$ls" ] || ss=${ls%%:*}
  done
  [ -n "$SY_SEC" ] || hs=$(( $(log_lines "$dir/sec/server.log") + 1 ))
  [ -n "$SY_PRI" ] || hp=$(( $(log_lines "$dir/pri/server.log") + 1 ))
  SY_ATTEMPTS=$(awk -v a="$s0" -v b="${hs%%:*}" 'NR > a && NR <= b && /established; syncing/ { n++ } END { print n + 0 }' "$dir/sec/server.log")
  while IFS= read -r l; do SY_DROPS+=("primary: $l"); done < <(awk -v a="$p0" -v b="${hp%%:*}" -v re="$LOSS_RE" 'NR > a && NR < b && $0 ~ re' "$dir/pri/server.log")
  while IFS= read -r l; do SY_DROPS+=("secondary: $l"); done < <(awk -v a="$s0" -v b="${hs%%:*}" -v re="$LOSS_RE" 'NR > a && NR < b && $0 ~ re' "$dir/sec/server.log")
  [ -n "$SY_SEC" ] || { SY_ERR=${SY_ERR:-"the link dropped after each of 5 syncs"}; return 1; }
}

# sync_rep TIMERS(fast|default) REP: the three cases on fresh nodes.
sync_rep() {
  local timers=$1 rep=$2 hb=$HEARTBEAT to=$LINK_TIMEOUT dir="$WORK/sync-$1-$2" c skip_p skip_s p_c0
  if [ "$timers" = default ]; then hb=$DEF_HEARTBEAT to=$DEF_TIMEOUT; fi
  # (a) the primary holds NLEASES (imported at its first start), the
  #     secondary starts empty.
  c=pri-holds-$timers
  mkdir -p "$dir/a/pri" "$dir/a/sec"
  write_leases "$dir/a/pri/leases" "$NLEASES"
  log "sync ($hb/$to) $rep/$SYNC_REPS: primary holds $NLEASES leases, secondary empty"
  if start_pair "$dir/a" "$hb" "$to"; then
    sync_measure "$c" "$rep" "$dir/a" 0 0 "$to"
    # (c) both hold them: the secondary restarts (SIGTERM, same database).
    c=both-hold-$timers
    skip_p=$(log_lines "$dir/a/pri/server.log")
    stop_node "$SEC_PID"; SEC_PID=""
    # The primary's note of the old session's end must not count against
    # the new one.
    wait_log "$dir/a/pri/server.log" "serve mode Linked ->" "$skip_p" 5 "$PRI_PID" || true
    skip_p=$(log_lines "$dir/a/pri/server.log") skip_s=$(log_lines "$dir/a/sec/server.log")
    p_c0=$(proc_cpu_ticks "$PRI_PID")
    log "sync ($hb/$to) $rep/$SYNC_REPS: both hold $NLEASES leases (secondary restarted)"
    start_node "$dir/a/sec" "$NS_SEC" "$SEC_CORE"
    SEC_PID=$NODE_PID SEC_T0=$NODE_T0
    sync_measure "$c" "$rep" "$dir/a" "$skip_p" "$skip_s" "$to" "$p_c0"
  else
    S[$c.$rep.err]=$PAIR_ERR
    S[both-hold-$timers.$rep.err]="not run: the pair did not start"
  fi
  stop_pair
  # (b) the secondary holds them (imported at its first start, before it
  #     connects), the primary starts empty.
  c=sec-holds-$timers
  mkdir -p "$dir/b/pri" "$dir/b/sec"
  write_leases "$dir/b/sec/leases" "$NLEASES"
  log "sync ($hb/$to) $rep/$SYNC_REPS: secondary holds $NLEASES leases, primary empty"
  if start_pair "$dir/b" "$hb" "$to"; then
    sync_measure "$c" "$rep" "$dir/b" 0 0 "$to"
  else
    S[$c.$rep.err]=$PAIR_ERR
  fi
  stop_pair
}

# sync_measure CASE REP DIR SKIP_PRI SKIP_SEC TIMEOUT [PRI_CPU0]: waits for
# a sync that holds, reads both logs (after the skipped lines). Then waits
# (up to 15 s, untimed) for the side that started empty to export the
# whole table to its lease file: it must hold every lease.
sync_measure() {
  local c=$1 rep=$2 dir=$3 sp=$4 ss=$5 to=$6 pc0=${7:-} settle l_conn l_m t_done n empty d
  settle=$(awk -v t="$(dur_ms "$to")" 'BEGIN { x = t / 1000 + 0.5; printf "%.1f", (x > 3 ? 3 : x) }')
  wait_stable_sync "$dir" "$sp" "$ss" "$settle" "$SEC_PID" "$PRI_PID" || true
  S[$c.$rep.attempts]=$SY_ATTEMPTS
  for d in "${SY_DROPS[@]}"; do S[$c.$rep.drops]="${S[$c.$rep.drops]:-}${S[$c.$rep.drops]:+ | }$d"; done
  if [ -n "$SY_ERR" ]; then
    S[$c.$rep.err]=$SY_ERR
    evidence "sync $c rep $rep: primary" "$dir/pri"; evidence "secondary" "$dir/sec"
    return 0
  fi
  # The secondary's connection that carried the sync that held.
  l_conn=$(last_before "$dir/sec/server.log" "failover: connection [0-9]+ with" "${SY_SEC%%:*}")
  l_m=$(last_before "$dir/pri/server.log" "failover: merged the secondary's" "$(( ${SY_PRI%%:*} + 1 ))")
  t_done=$(maxf "$(line_ts "${SY_PRI#*:}")" "$(line_ts "${SY_SEC#*:}")")
  S[$c.$rep.total_s]=$(elapsed "$SEC_T0" "$t_done")
  S[$c.$rep.connect_s]=$(elapsed "$(line_ts "${l_conn#*:}")" "$t_done")
  S[$c.$rep.merged]=$(sed -n "s/.*merged the secondary's \([0-9]*\) records.*/\1/p" <<<"$l_m")
  S[$c.$rep.sent_back]=$(sed -n "s/.*records, sent \([0-9]*\) back.*/\1/p" <<<"$l_m")
  S[$c.$rep.sec_cpu_s]=$(awk -v t="$(proc_cpu_ticks "$SEC_PID")" -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')
  S[$c.$rep.pri_cpu_s]=$(awk -v a="${pc0:-0}" -v b="$(proc_cpu_ticks "$PRI_PID")" -v k="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / k }')
  empty=sec; [ "${c#sec-holds}" != "$c" ] && empty=pri
  for _ in $(seq 30); do
    n=$(awk -v now="$(date +%s)" '$1 == 0 || $1 > now' "$dir/$empty/leases" 2>/dev/null | wc -l)
    [ "$n" -lt "$NLEASES" ] || break
    sleep 0.5
  done
  S[$c.$rep.copied]=$n
  log "  ${S[$c.$rep.total_s]} s from the secondary's start, ${S[$c.$rep.connect_s]} s from its connection, attempt $SY_ATTEMPTS; $empty's lease file: $n leases"
  [ "$SY_ATTEMPTS" = 1 ] || log "  earlier attempts ended: ${S[$c.$rep.drops]}"
}

# ---------------------------------------------------------------- 2. takeover
declare -A T=()  # takeover results: T[<case>.<rep>.<field>]
TAKEOVER_CASES=()

# takeover_rep KIND(kill|cut) TIMERS(fast|default) REP
takeover_rep() {
  local kind=$1 timers=$2 rep=$3 c="$1-$2" hb=$HEARTBEAT to=$LINK_TIMEOUT
  local dir="$WORK/takeover-$1-$2-$3" t_ev l l_why to_ms=$TO_MS pause skip
  if [ "$timers" = default ]; then hb=$DEF_HEARTBEAT to=$DEF_TIMEOUT to_ms=$(dur_ms "$DEF_TIMEOUT"); fi
  log "takeover $c $rep/$TAKEOVER_REPS (heartbeat $hb, timeout $to)"
  if ! start_pair "$dir" "$hb" "$to"; then
    T[$c.$rep.err]=$PAIR_ERR; stop_pair; return 0
  fi
  # Linked for a while, and at a random point of the heartbeat cycle.
  pause=$(awk -v r="$RANDOM" -v hb="$(dur_ms "$hb")" 'BEGIN { printf "%.3f", 1 + (r % hb) / 1000 }')
  sleep "$pause"
  skip=$(log_lines "$dir/sec/server.log")
  t_ev=$(date +%s.%N)
  if [ "$kind" = kill ]; then kill9_node "$PRI_PID"; PRI_PID=""; else link_set down; fi
  if wait_log "$dir/sec/server.log" "serve mode Passive ->" "$skip" $(( to_ms / 1000 + 10 )) "$SEC_PID"; then
    l=$(log_line "$dir/sec/server.log" "serve mode Passive ->" "$skip")
    l_why=$(log_line "$dir/sec/server.log" "WARN" "$skip")
    T[$c.$rep.s]=$(elapsed "$t_ev" "$(line_ts "$l")")
    T[$c.$rep.to_mode]=${l##*-> }
    T[$c.$rep.why]=$(sed 's/^[^ ]* *WARN failover: //' <<<"$l_why")
  else
    T[$c.$rep.err]="the secondary never left Passive within $(( to_ms / 1000 + 10 )) s"
    evidence "takeover $c rep $rep: secondary" "$dir/sec"
  fi
  if [ "$kind" = cut ]; then
    # The primary cannot hear the cut either: until its own timeout its
    # linked replies wait for acks that will not come.
    if wait_log "$dir/pri/server.log" "serve mode Linked ->" 0 $(( to_ms / 1000 + 10 )) "$PRI_PID"; then
      T[$c.$rep.pri_s]=$(elapsed "$t_ev" "$(line_ts "$(log_line "$dir/pri/server.log" "serve mode Linked ->")")")
    fi
    # Heal the cut: how long until the pair is in sync again (the
    # secondary's reconnect backoff, up to 4 s, dominates).
    skip=$(log_lines "$dir/sec/server.log")
    t_ev=$(date +%s.%N)
    link_set up
    if wait_log "$dir/sec/server.log" "failover: sync done" "$skip" $(( to_ms / 1000 + 15 )) "$SEC_PID" "$PRI_PID"; then
      T[$c.$rep.relink_s]=$(elapsed "$t_ev" "$(line_ts "$(log_line "$dir/sec/server.log" "failover: sync done" "$skip")")")
    fi
  fi
  log "  ${T[$c.$rep.s]:-${T[$c.$rep.err]}}${T[$c.$rep.s]:+ s to ${T[$c.$rep.to_mode]} (${T[$c.$rep.why]})}"
  stop_pair
  link_set up
}

# ---------------------------------------------------------------- 3. throughput
RUN_KEYS=()  # R (lib.sh) holds the results: R[<run key>.<field>]
declare -A SERVER_NOT_RUN=() RATIO_PEAK=() RATIO_CPU=()

# measured_run SERVER(lone|paired-c<core>) LABEL RATE PING(unused) PROBE(0|1):
# a fresh primary (empty leases; with a fresh secondary on that core when
# paired, synced first), an optional one-second probe, one perfdhcp run,
# then both are stopped. Always returns 0; R[key.status] says "ok" or why not.
measured_run() {
  local server=$1 label=$2 rate=$3 probe=$5
  local key="$server/$label" dir="$WORK/$server-$label" cpu0 cpu1 scpu0 scpu1 line k v skip_p skip_s ev
  RUN_KEYS+=("$key")
  R[$key.server]=$server R[$key.label]=$label R[$key.rate]=$rate
  log "$server $label: $rate DORA/s for $PERIOD s"
  mkdir -p "$dir/pri"
  PRI_PID="" SEC_PID=""
  if [ "$server" = lone ]; then
    write_conf "$dir/pri" lone "" ""
    start_node "$dir/pri" "$NS_PRI" "$PRI_CORE"
    PRI_PID=$NODE_PID
  elif ! start_pair "$dir" "$HEARTBEAT" "$LINK_TIMEOUT" "${server#paired-c}"; then
    stop_pair; R[$key.status]="NOT RUN: $PAIR_ERR"; return 0
  fi
  if ! wait_listen "$PRI_PID" "$NS_PRI" udp 67 10; then
    evidence "$key: primary" "$dir/pri"; stop_pair
    R[$key.status]="NOT RUN: primary not listening on UDP 67 within 10 s"; return 0
  fi
  if [ "$probe" = 1 ]; then
    # One second at a trickle: a server that is up but cannot complete a
    # DORA gets no numbers, it is reported as not run.
    run_perfdhcp "$dir/probe.out" 20 1 "$WORK/probe-macs" 0
    line=$(parse_perfdhcp "$dir/probe.out" "$dir" | awk -F= '$1 == "ra_recv" { print $2 }')
    if [ -z "$line" ] || [ "$line" = 0 ]; then
      evidence "$key: primary" "$dir/pri"; [ -z "$SEC_PID" ] || evidence "$key: secondary" "$dir/sec"
      stop_pair
      R[$key.status]="NOT RUN: listening, but completed no DORA in a 1 s probe at 20/s"
      return 0
    fi
  fi
  skip_p=$(log_lines "$dir/pri/server.log")
  cpu0=$(proc_cpu_ticks "$PRI_PID")
  [ -z "$SEC_PID" ] || scpu0=$(proc_cpu_ticks "$SEC_PID")
  run_perfdhcp "$dir/perfdhcp.out" "$rate" "$PERIOD" "$WORK/macs" 0
  if ! proc_alive "$PRI_PID" || { [ -n "$SEC_PID" ] && ! proc_alive "$SEC_PID"; }; then
    evidence "$key: primary" "$dir/pri"; [ -z "$SEC_PID" ] || evidence "$key: secondary" "$dir/sec"
    stop_pair
    R[$key.status]="FAILED: a server exited during the run (see the evidence below)"
    return 0
  fi
  cpu1=$(proc_cpu_ticks "$PRI_PID")
  R[$key.rss_kb]=$(proc_status_kb "$PRI_PID" VmRSS)
  if [ -n "$SEC_PID" ]; then
    scpu1=$(proc_cpu_ticks "$SEC_PID")
    R[$key.sec_cpu_s]=$(awk -v a="$scpu0" -v b="$scpu1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  fi
  # A paired run only counts while the pair stayed linked: a primary that
  # lost its secondary answers without waiting, and would look faster.
  ev=$(tail -n +"$(( skip_p + 1 ))" "$dir/pri/server.log" | grep -m1 -E "serve mode|link to the partner ends|partner closed" || true)
  stop_pair
  if [ "$PD_RC" != 0 ] && [ "$PD_RC" != 3 ]; then
    R[$key.status]="FAILED: perfdhcp exit status $PD_RC: $(grep -m1 -i error "$dir/perfdhcp.out" || tail -n 1 "$dir/perfdhcp.out")"
    return 0
  fi
  while IFS='=' read -r k v; do R[$key.$k]=$v; done < <(parse_perfdhcp "$dir/perfdhcp.out" "$dir")
  if [ -z "${R[$key.do_sent]}" ] || [ -z "${R[$key.ra_recv]}" ]; then
    R[$key.status]="FAILED: no final report from perfdhcp (see $dir/perfdhcp.out)"
    return 0
  fi
  R[$key.cpu_s]=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  R[$key.cli_cpu_s]=$CLI_CPU
  while IFS='=' read -r k v; do R[$key.$k]=$v; done < <(awk \
      -v ds="${R[$key.do_sent]}" -v ack="${R[$key.ra_recv]}" -v p="$PERIOD" \
      -v cpu="${R[$key.cpu_s]}" -v scpu="${R[$key.sec_cpu_s]:-}" -v ccpu="$CLI_CPU" \
      -v da="${R[$key.do_avg]}" -v ra="${R[$key.ra_avg]}" 'BEGIN {
        printf "sent_ps=%.0f\n", ds / p
        printf "dora_ps=%.0f\n", ack / p
        printf "drop_pct=%.2f\n", (ds > 0) ? 100 * (ds - ack) / ds : 100
        printf "lat_avg_ms=%s\n", (da != "" && ra != "") ? sprintf("%.3f", da + ra) : ""
        printf "cpu_ms_per_1k=%s\n", (ack > 0) ? sprintf("%.1f", cpu * 1e6 / ack) : ""
        printf "sec_cpu_ms_per_1k=%s\n", (ack > 0 && scpu != "") ? sprintf("%.1f", scpu * 1e6 / ack) : ""
        printf "cli_cpu_pct=%.0f\n", 100 * ccpu / p
      }')
  if [ -n "$ev" ]; then
    R[$key.status]="LINK LOST during the run (${R[$key.dora_ps]} DORA/s, ${R[$key.drop_pct]} % failed): ${ev#*  }"
    evidence "$key: primary" "$dir/pri"; evidence "$key: secondary" "$dir/sec"
    return 0
  fi
  R[$key.status]=ok
}

# ---------------------------------------------------------------- 4. restart
declare -A RS=()  # restart results: RS[<case>.<rep>.<field>]
RESTART_CASES=()

# restart_rep PARTNER(up|down) REP: a pair with failover-mclt
# $RESTART_MCLT that has served a few clients; kill -9 of the primary; with
# the partner up the secondary takes over first, with it down it is stopped
# (SIGTERM). perfdhcp then sends new clients' DISCOVERs (fresh MACs) at
# $RESTART_RATE/s, and half a second later the primary starts again on its
# database: the figure is the time from that start to the first OFFER in
# its log (DHCP logging on for this part), which perfdhcp must have
# received too. Also: the primary's "sync done" after its start.
restart_rep() {
  local partner=$1 rep=$2 c="partner-$1" dir="$WORK/restart-$1-$2" skip_p skip_s watch pd got l
  log "restart $c $rep/$RESTART_REPS (failover-mclt $RESTART_MCLT)"
  CONF_MCLT=$RESTART_MCLT CONF_LOUD=1
  if ! start_pair "$dir" "$HEARTBEAT" "$LINK_TIMEOUT"; then
    CONF_MCLT="" CONF_LOUD=0; RS[$c.$rep.err]=$PAIR_ERR; stop_pair; return 0
  fi
  CONF_MCLT="" CONF_LOUD=0
  # A node in service has leases in its database.
  if wait_listen "$PRI_PID" "$NS_PRI" udp 67 10; then
    run_perfdhcp "$dir/before.out" 20 1 "$WORK/probe-macs" 0
  fi
  skip_s=$(log_lines "$dir/sec/server.log")
  kill9_node "$PRI_PID"; PRI_PID=""
  if [ "$partner" = up ]; then
    if ! wait_log "$dir/sec/server.log" "serve mode Passive ->" "$skip_s" $(( TO_MS / 1000 + 10 )) "$SEC_PID"; then
      RS[$c.$rep.err]="the secondary never took over"
      evidence "restart $c rep $rep: secondary" "$dir/sec"; stop_pair; return 0
    fi
    watch=$RESTART_WATCH_S
  else
    stop_node "$SEC_PID"; SEC_PID=""
    watch=$(( RMCLT_MS / 1000 + RESTART_WATCH_S ))
  fi
  skip_p=$(log_lines "$dir/pri/server.log")
  ip netns exec "$NS_CLI" taskset -c "$CLI_CORE" timeout -k 5 $(( watch + 20 )) \
    perfdhcp -4 -g single -l "$CLI_ADDR" -M "$WORK/restart-macs" -s "$SEED" \
      -r "$RESTART_RATE" -p "$watch" -W "$EXIT_WAIT_US" "$SRV_ADDR" >"$dir/restart.out" 2>&1 &
  pd=$!
  PIDS+=("$pd")
  sleep 0.5
  start_node "$dir/pri" "$NS_PRI" "$PRI_CORE"
  PRI_PID=$NODE_PID
  wait "$pd" || true
  forget_pid "$pd"
  got=$(parse_perfdhcp "$dir/restart.out" "$dir" | awk -F= '$1 == "do_recv" { print $2 }')
  l=$(log_line "$dir/pri/server.log" "DHCPOFFER" "$skip_p")
  if [ -n "$l" ] && [ "${got:-0}" -gt 0 ]; then
    RS[$c.$rep.s]=$(elapsed "$NODE_T0" "$(line_ts "$l")")
  else
    RS[$c.$rep.err]="no OFFER within $watch s of the start (perfdhcp received ${got:-none})"
    evidence "restart $c rep $rep: primary" "$dir/pri"
  fi
  l=$(log_line "$dir/pri/server.log" "failover: sync done" "$skip_p")
  [ -z "$l" ] || RS[$c.$rep.sync_s]=$(elapsed "$NODE_T0" "$(line_ts "$l")")
  l=$(log_line "$dir/pri/server.log" "INFO started" "$skip_p")
  [ -z "$l" ] || RS[$c.$rep.started_s]=$(elapsed "$NODE_T0" "$(line_ts "$l")")
  # Serving new clients before the sync (or with no sync) is what a node
  # that cannot prove its table complete must not do (issue 14, case 1).
  if [ -n "${RS[$c.$rep.s]:-}" ]; then
    RS[$c.$rep.early]=$(awk -v s="${RS[$c.$rep.s]}" -v y="${RS[$c.$rep.sync_s]:-}" 'BEGIN { print (y == "" || s + 0 < y + 0) ? 1 : 0 }')
  fi
  log "  ${RS[$c.$rep.s]:-${RS[$c.$rep.err]:-}}${RS[$c.$rep.s]:+ s to the first OFFER}${RS[$c.$rep.sync_s]:+; synced after ${RS[$c.$rep.sync_s]} s}"
  stop_pair
}

# ---------------------------------------------------------------- output
fmt_row() { # key
  local k=$1 short=""
  if [ "${R[$k.status]}" != ok ]; then
    printf '%-9s %-6s %8s  %s\n' "${R[$k.server]}" "${R[$k.label]}" "${R[$k.rate]}" "${R[$k.status]}"
    return
  fi
  if [ $(( ${R[$k.sent_ps]} * 100 )) -lt $(( ${R[$k.rate]} * 95 )) ]; then short="<"; SHORT_SEEN=1; fi
  printf '%-9s %-6s %8s %7s %7s %6s %7s %6s %10s %9s %10s %6s %4s%%\n' \
    "${R[$k.server]}" "${R[$k.label]}" "${R[$k.rate]}" "$short${R[$k.sent_ps]}" "${R[$k.dora_ps]}" \
    "${R[$k.drop_pct]}" "$(one_dec "${R[$k.lat_avg_ms]}")" "${R[$k.cpu_s]}" "${R[$k.cpu_ms_per_1k]:--}" \
    "${R[$k.sec_cpu_s]:--}" "${R[$k.sec_cpu_ms_per_1k]:--}" \
    "$(awk -v r="${R[$k.rss_kb]:-0}" 'BEGIN { printf "%.1f", r / 1024 }')" "${R[$k.cli_cpu_pct]}"
}

verdict() { # value target le|ge
  awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
    if (v == "" || v == "-") { print "n/a"; exit }
    ok = (op == "le") ? (v + 0 <= t + 0) : (v + 0 >= t + 0); print ok ? "met" : "MISSED" }'
}

report() {
  local c rep vals st to_ms l
  echo
  echo "Failover benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), twinmasq $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
  echo "Primary on core $PRI_CORE, secondary on core $SEC_CORE$( [ "$SEC_CORE" = "$CLI_CORE" ] && echo " (with perfdhcp, which runs only in part 3)"; [ "$SEC_CORE" = "$PRI_CORE" ] && echo " (with the primary)"), perfdhcp on core $CLI_CORE;"
  echo "failover link $LINK_PRI <-> $LINK_SEC, TCP $FO_PORT, on a veth of its own."
  echo "Load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg). Figures from a loaded machine only compare within one run."
  if [ "$DO_SYNC" = 1 ]; then
    echo
    echo "1. Sync, $NLEASES leases (a dnsmasq lease file, imported at first start); $SYNC_REPS rep(s) per case."
    echo "   Time until both logs say \"sync done\" for a session that then holds: from the secondary's start, and from the TCP"
    echo "   connection that carried that sync. attempts = syncs needed per rep (a session lost right after its sync is a failed one)."
    printf '   %-25s %-10s %-8s %-20s %-20s %-14s %-7s %-11s %s\n' case timers attempts "from start s" "from connect s" "merged/sent" copied "CPU s p/s" "target < ${SYNC_TARGET_S} s"
    printf '   %-25s %-10s %-8s %-20s %-20s %-14s %-7s %-11s %s\n' "" "" "" "min/med/max" "min/med/max" "back" "" "" ""
    SYNC_VERDICT=met
    for c in "${SYNC_CASES[@]}"; do
      vals=(); for rep in $(seq "$SYNC_REPS"); do vals+=("${S[$c.$rep.total_s]:-}"); done
      S[$c.stats_total]=$(stats "${vals[@]}")
      vals=(); for rep in $(seq "$SYNC_REPS"); do vals+=("${S[$c.$rep.connect_s]:-}"); done
      S[$c.stats_connect]=$(stats "${vals[@]}")
      st=""; for rep in $(seq "$SYNC_REPS"); do st="$st${st:+,}${S[$c.$rep.attempts]:-x}"; done
      S[$c.attempts]=$st
      # The secondary's own import of a preloaded lease file is part of its
      # start, not of the sync: that case is judged from the connection.
      if [ "${c#sec-holds}" != "$c" ]; then l=${S[$c.stats_connect]}; else l=${S[$c.stats_total]}; fi
      S[$c.verdict]=$(verdict "$(awk '{ print $3 }' <<<"$l")" "$SYNC_TARGET_S" le)
      for rep in $(seq "$SYNC_REPS"); do [ -z "${S[$c.$rep.err]:-}" ] || S[$c.verdict]=MISSED; done
      [ "${S[$c.verdict]}" = met ] || SYNC_VERDICT=MISSED
      rep=$SYNC_REPS
      printf '   %-25s %-10s %-8s %-20s %-20s %-14s %-7s %-11s %s\n' "$(case $c in
          pri-holds*) echo "primary holds, sec. empty" ;;
          sec-holds*) echo "sec. holds, primary empty" ;;
          both-hold*) echo "both hold (sec. restart)" ;; esac)" \
        "$( [ "${c##*-}" = default ] && echo "$DEF_HEARTBEAT/$DEF_TIMEOUT" || echo "$HEARTBEAT/$LINK_TIMEOUT")" \
        "$st" "${S[$c.stats_total]// //}" "${S[$c.stats_connect]// //}" \
        "${S[$c.$rep.merged]:--}/${S[$c.$rep.sent_back]:--}" "${S[$c.$rep.copied]:--}" \
        "${S[$c.$rep.pri_cpu_s]:--}/${S[$c.$rep.sec_cpu_s]:--}" \
        "${S[$c.verdict]}$( [ "${c#sec-holds}" != "$c" ] && echo " (from connect)")"
      for rep in $(seq "$SYNC_REPS"); do
        [ -z "${S[$c.$rep.err]:-}" ] || printf '     rep %s: %s\n' "$rep" "${S[$c.$rep.err]}"
        [ -z "${S[$c.$rep.drops]:-}" ] || printf '     rep %s, failed attempts ended by: %s\n' "$rep" "${S[$c.$rep.drops]}"
      done
    done
    echo "   merged/sent back (the primary's log line), copied and CPU are from the last rep. copied = unexpired leases in the lease"
    echo "   file of the side that started empty (its export, waited for after the sync). CPU = each node's utime+stime since its"
    echo "   start (the primary's since the secondary's restart for \"both hold\"), imports included."
  fi
  if [ "$DO_TAKEOVER" = 1 ]; then
    echo
    echo "2. Takeover: time from the kill -9 of the primary (or the link cut) to the secondary's log line \"serve mode Passive -> ...\"; $TAKEOVER_REPS rep(s)."
    printf '   %-9s %-20s %-23s %-8s %-8s %-10s %-9s %s\n' trigger "heartbeat/timeout" "takeover s min/med/max" target verdict "primary s" "relink s" "detected by (last rep)"
    TAKEOVER_OK=1
    for c in "${TAKEOVER_CASES[@]}"; do
      vals=(); for rep in $(seq "$TAKEOVER_REPS"); do vals+=("${T[$c.$rep.s]:-}"); done
      T[$c.stats]=$(stats "${vals[@]}")
      if [ "${c#*-}" = default ]; then to_ms=$(dur_ms "$DEF_TIMEOUT"); st="$DEF_HEARTBEAT/$DEF_TIMEOUT (defaults)"; else to_ms=$TO_MS; st="$HEARTBEAT/$LINK_TIMEOUT"; fi
      T[$c.target_s]=$(awk -v t="$to_ms" 'BEGIN { printf "%.1f", t / 1000 + 1 }')
      T[$c.verdict]=$(verdict "$(awk '{ print $3 }' <<<"${T[$c.stats]}")" "${T[$c.target_s]}" le)
      for rep in $(seq "$TAKEOVER_REPS"); do [ -n "${T[$c.$rep.s]:-}" ] || T[$c.verdict]=MISSED; done
      [ "${T[$c.verdict]}" = met ] || TAKEOVER_OK=0
      vals=(); for rep in $(seq "$TAKEOVER_REPS"); do vals+=("${T[$c.$rep.pri_s]:-}"); done
      l=$(stats "${vals[@]}"); T[$c.stats_pri]=$l
      vals=(); for rep in $(seq "$TAKEOVER_REPS"); do vals+=("${T[$c.$rep.relink_s]:-}"); done
      T[$c.stats_relink]=$(stats "${vals[@]}")
      printf '   %-9s %-20s %-23s %-8s %-8s %-10s %-9s %s\n' \
        "$( [ "${c%%-*}" = kill ] && echo "kill -9" || echo "link cut")" "$st" "${T[$c.stats]// //}" \
        "<= ${T[$c.target_s]}" "${T[$c.verdict]}" \
        "$( [ "${c%%-*}" = cut ] && awk '{ print $2 }' <<<"${T[$c.stats_pri]}" || echo -)" \
        "$( [ "${c%%-*}" = cut ] && awk '{ print $2 }' <<<"${T[$c.stats_relink]}" || echo -)" \
        "${T[$c.$TAKEOVER_REPS.why]:--}"
      for rep in $(seq "$TAKEOVER_REPS"); do
        [ -z "${T[$c.$rep.err]:-}" ] || printf '   %-9s rep %s: %s\n' "" "$rep" "${T[$c.$rep.err]}"
      done
    done
    echo "   Target: within the link timeout + 1 s. primary s (cut only, median) = until the primary's own \"serve mode Linked -> ...\","
    echo "   meanwhile its replies wait for acks; relink s (median) = from \"ip link set up\" to the secondary's next \"sync done\"."
  fi
  if [ "$DO_THROUGHPUT" = 1 ]; then
    echo
    echo "3. Throughput: perfdhcp $PERFDHCP_VERSION relay mode (giaddr $CLI_ADDR) -> $PRI_ADDR; $NMACS random MACs (seed $SEED); $PERIOD s per run;"
    echo "   fresh nodes with empty leases per run. lone = the primary without failover options; paired-cN = the same primary with"
    echo "   its secondary linked (heartbeat $HEARTBEAT, timeout $LINK_TIMEOUT) and pinned to core N; every ACK waits for the secondary's ack."
    printf '%-9s %-6s %8s %7s %7s %6s %7s %6s %10s %9s %10s %6s %5s\n' \
      pair run offered sent/s DORA/s fail% lat_ms cpu_s "ms/1k DORA" sec_cpu_s "sec ms/1k" RSS_MB cli%
    SHORT_SEEN=0
    for k in "${RUN_KEYS[@]}"; do fmt_row "$k"; done
    echo
    echo "DORA/s = ACKs received / run time; fail% = DISCOVERs without an ACK; lat_ms = avg DISCOVER-OFFER + REQUEST-ACK;"
    echo "cpu_s = the primary's utime+stime during the run; sec_cpu_s = the secondary's (sec ms/1k: per 1k DORA); RSS = the"
    echo "primary's at the end; cli% = perfdhcp's CPU over the run time (core $CLI_CORE)."
    [ "$SHORT_SEEN" = 0 ] || echo "< perfdhcp sent under 95 % of the offered rate: the client side was the limit there."
    for s in "${TP_SERVERS[@]}"; do
      if [ "${R[$s/fixed.status]:-}" != ok ]; then printf '  %-9s fixed run: %s\n' "$s" "${R[$s/fixed.status]:-not run}"; continue; fi
      printf '  %-9s fixed: %s DORA/s, %s ms primary CPU per 1k DORA; peak (<= %s %% failed): %s; max seen: %s DORA/s\n' "$s" \
        "${R[$s/fixed.dora_ps]}" "${R[$s/fixed.cpu_ms_per_1k]:--}" "$DROP_OK" \
        "$( if [ -n "${PEAK[$s]:-}" ]; then echo "${PEAK[$s]} DORA/s${PEAK_CAPPED[$s]:+ (hit --max-rate)}"; else echo "none held"; fi )" \
        "${MAXDORA[$s]:-}"
    done
    THROUGHPUT_VERDICT=MISSED
    for s in "${TP_SERVERS[@]}"; do
      [ "$s" != lone ] || continue
      RATIO_PEAK[$s]=$(ratio "${PEAK[$s]:-}" "${PEAK[lone]:-}")
      RATIO_CPU[$s]=""
      if [ "${R[lone/fixed.status]:-}" = ok ] && [ "${R[$s/fixed.status]:-}" = ok ]; then
        RATIO_CPU[$s]=$(ratio "${R[$s/fixed.cpu_ms_per_1k]}" "${R[lone/fixed.cpu_ms_per_1k]}")
      fi
      l=$(verdict "${RATIO_PEAK[$s]}" "$THROUGHPUT_TARGET" ge)
      [ "$l" != met ] || THROUGHPUT_VERDICT=met
      printf '  %s/lone: peak DORA/s %s (target >= %s: %s); primary CPU per DORA at %s/s %s\n' "$s" \
        "${RATIO_PEAK[$s]:-n/a}" "$THROUGHPUT_TARGET" "$l" "$RATE" "${RATIO_CPU[$s]:-n/a}"
    done
  fi
  if [ "$DO_RESTART" = 1 ]; then
    echo
    echo "4. Restart to serve: kill -9 of the primary, then a start on its intact database; time from the start to the first OFFER"
    echo "   in its log, to perfdhcp's DISCOVERs (relay mode, fresh MACs, $RESTART_RATE/s, from before the start); failover-mclt $RESTART_MCLT on both"
    echo "   nodes; $RESTART_REPS rep(s). partner up: the secondary took over before the restart; partner down: it was stopped."
    printf '   %-13s %-23s %-20s %-20s %-22s %s
' case "to serve s min/med/max" "started s (median)" "synced s (median)" target verdict
    RESTART_OK=1
    for c in "${RESTART_CASES[@]}"; do
      vals=(); for rep in $(seq "$RESTART_REPS"); do vals+=("${RS[$c.$rep.s]:-}"); done
      RS[$c.stats]=$(stats "${vals[@]}")
      vals=(); for rep in $(seq "$RESTART_REPS"); do vals+=("${RS[$c.$rep.sync_s]:-}"); done
      RS[$c.stats_sync]=$(stats "${vals[@]}")
      vals=(); for rep in $(seq "$RESTART_REPS"); do vals+=("${RS[$c.$rep.started_s]:-}"); done
      RS[$c.stats_started]=$(stats "${vals[@]}")
      if [ "$c" = partner-up ]; then
        RS[$c.target]="<= $RESTART_TARGET_S"
        RS[$c.verdict]=$(verdict "$(awk '{ print $3 }' <<<"${RS[$c.stats]}")" "$RESTART_TARGET_S" le)
      else
        # By design an MCLT: earlier is the fault (a node that cannot
        # prove its table complete must wait), much later a cost.
        RS[$c.target]=">= MCLT ($(awk -v m="$RMCLT_MS" 'BEGIN { printf "%g", m / 1000 }') s)"
        RS[$c.verdict]=$(verdict "$(awk '{ print $1 }' <<<"${RS[$c.stats]}")" "$(awk -v m="$RMCLT_MS" 'BEGIN { printf "%.3f", m / 1000 }')" ge)
        RS[$c.over_mclt]=$(awk -v v="$(awk '{ print $2 }' <<<"${RS[$c.stats]}")" -v m="$RMCLT_MS" 'BEGIN { if (v != "-" && v != "") printf "%+.3f", v - m / 1000 }')
      fi
      RS[$c.early]=0
      for rep in $(seq "$RESTART_REPS"); do
        [ -n "${RS[$c.$rep.s]:-}" ] || RS[$c.verdict]=MISSED
        RS[$c.early]=$(( RS[$c.early] + ${RS[$c.$rep.early]:-0} ))
      done
      # Partner up, a first OFFER before the sync is the fault, however soon.
      [ "$c" != partner-up ] || [ "${RS[$c.early]}" = 0 ] || RS[$c.verdict]=MISSED
      [ "${RS[$c.verdict]}" = met ] || RESTART_OK=0
      printf '   %-13s %-23s %-20s %-20s %-22s %s
' "$c" "${RS[$c.stats]// //}" "$(awk '{ print $2 }' <<<"${RS[$c.stats_started]}")"         "$(awk '{ print $2 }' <<<"${RS[$c.stats_sync]}")" "${RS[$c.target]}"         "${RS[$c.verdict]}${RS[$c.over_mclt]:+ (median = MCLT ${RS[$c.over_mclt]} s)}$( [ "${RS[$c.early]}" = 0 ] || echo "; served before a sync in ${RS[$c.early]}/$RESTART_REPS")"
      for rep in $(seq "$RESTART_REPS"); do
        [ -z "${RS[$c.$rep.err]:-}" ] || printf '   %-13s rep %s: %s
' "" "$rep" "${RS[$c.$rep.err]}"
      done
    done
    echo "   started s = until the primary's log says \"started\"; synced s = until its \"sync done\" (- : none within the probe)."
    echo "   Partner up, the first OFFER must follow the sync (a restarted node proves its table complete first); partner down,"
    echo "   it must wait an MCLT (or an operator's word)."
  fi
  echo
  echo "Targets:"
  [ "$DO_SYNC" = 0 ] || printf '  sync of %s leases under %s s, every case:        %s\n' "$NLEASES" "$SYNC_TARGET_S" "$SYNC_VERDICT"
  [ "$DO_TAKEOVER" = 0 ] || printf '  takeover within the link timeout + 1 s, every case: %s\n' "$( [ "$TAKEOVER_OK" = 1 ] && echo met || echo MISSED)"
  [ "$DO_THROUGHPUT" = 0 ] || printf '  paired/lone peak DORA/s >= %s, best placement:   %s\n' "$THROUGHPUT_TARGET" "$THROUGHPUT_VERDICT"
  [ "$DO_RESTART" = 0 ] || printf '  restart to serve: partner up <= %s s, down >= MCLT: %s\n' "$RESTART_TARGET_S" "$( [ "$RESTART_OK" = 1 ] && echo met || echo MISSED)"
  if [ "${#EVIDENCE[@]}" -gt 0 ]; then
    echo
    echo "Evidence (last log lines of nodes that misbehaved):"
    printf '  %s\n' "${EVIDENCE[@]}"
  fi
}

json_stats() { # "min med max" -> {"min":..,"median":..,"max":..}
  local a b c
  read -r a b c <<<"$1"
  printf '{"min": %s, "median": %s, "max": %s}' "$(json_num "$a")" "$(json_num "$b")" "$(json_num "$c")"
}

write_json() {
  local k f first c rep
  printf '{\n  "benchmark": "failover",\n  "date": %s,\n  "git_rev": %s,\n' \
    "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" "$(json_str "$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)")"
  printf '  "machine": {"cores": %s, "loadavg_start": %s, "loadavg_end": %s, "kernel": %s},\n' \
    "$(nproc)" "$(json_str "$LOAD_START")" "$(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")" "$(json_str "$(uname -r)")"
  printf '  "params": {"leases": %s, "sync_reps": %s, "takeover_reps": %s, "heartbeat": %s, "timeout": %s, "default_timers": %s, "fixed_rate": %s, "period_s": %s, "peak_runs": %s, "max_rate": %s, "macs": %s, "seed": %s, "drop_ok_pct": %s, "quick": %s, "restart_reps": %s, "restart_mclt": %s, "cores": {"primary": %s, "secondary": %s, "perfdhcp": %s}, "perfdhcp": %s},\n' \
    "$NLEASES" "$SYNC_REPS" "$TAKEOVER_REPS" "$(json_str "$HEARTBEAT")" "$(json_str "$LINK_TIMEOUT")" \
    "$( [ "$DEFAULT_TIMERS" = 1 ] && echo true || echo false )" "$RATE" "$PERIOD" "$PEAK_RUNS" "$MAX_RATE" "$NMACS" "$SEED" "$DROP_OK" \
    "$( [ "$QUICK" = 1 ] && echo true || echo false )" "$RESTART_REPS" "$(json_str "$RESTART_MCLT")" "$PRI_CORE" "$SEC_CORE" "$CLI_CORE" "$(json_str "$PERFDHCP_VERSION")"
  # 1. sync
  printf '  "sync": '
  if [ "$DO_SYNC" = 1 ]; then
    printf '{"target_s": %s, "verdict": %s, "cases": {' "$SYNC_TARGET_S" "$(json_str "$SYNC_VERDICT")"
    first=1
    for c in "${SYNC_CASES[@]}"; do
      [ "$first" = 1 ] || printf ','
      first=0
      printf '\n    %s: {"timers": %s, "verdict": %s, "from_start_s": %s, "from_connect_s": %s, "reps": [' "$(json_str "$c")" \
        "$(json_str "$( [ "${c##*-}" = default ] && echo "$DEF_HEARTBEAT/$DEF_TIMEOUT" || echo "$HEARTBEAT/$LINK_TIMEOUT")")" \
        "$(json_str "${S[$c.verdict]}")" "$(json_stats "${S[$c.stats_total]}")" "$(json_stats "${S[$c.stats_connect]}")"
      for rep in $(seq "$SYNC_REPS"); do
        [ "$rep" = 1 ] || printf ', '
        printf '{"attempts": %s, "from_start_s": %s, "from_connect_s": %s, "merged": %s, "sent_back": %s, "copied": %s, "pri_cpu_s": %s, "sec_cpu_s": %s, "failed_attempts_ended_by": %s, "error": %s}' \
          "$(json_num "${S[$c.$rep.attempts]:-}")" "$(json_num "${S[$c.$rep.total_s]:-}")" "$(json_num "${S[$c.$rep.connect_s]:-}")" \
          "$(json_num "${S[$c.$rep.merged]:-}")" "$(json_num "${S[$c.$rep.sent_back]:-}")" "$(json_num "${S[$c.$rep.copied]:-}")" \
          "$(json_num "${S[$c.$rep.pri_cpu_s]:-}")" "$(json_num "${S[$c.$rep.sec_cpu_s]:-}")" \
          "$( [ -n "${S[$c.$rep.drops]:-}" ] && json_str "${S[$c.$rep.drops]}" || echo null)" \
          "$( [ -n "${S[$c.$rep.err]:-}" ] && json_str "${S[$c.$rep.err]}" || echo null)"
      done
      printf ']}'
    done
    printf '\n  }},\n'
  else
    printf 'null,\n'
  fi
  # 2. takeover
  printf '  "takeover": '
  if [ "$DO_TAKEOVER" = 1 ]; then
    printf '{"verdict": %s, "cases": {' "$(json_str "$( [ "$TAKEOVER_OK" = 1 ] && echo met || echo MISSED)")"
    first=1
    for c in "${TAKEOVER_CASES[@]}"; do
      [ "$first" = 1 ] || printf ','
      first=0
      printf '\n    %s: {"trigger": %s, "timers": %s, "target_s": %s, "verdict": %s, "takeover_s": %s, "primary_noticed_s": %s, "relink_s": %s, "reps": [' \
        "$(json_str "$c")" "$(json_str "${c%%-*}")" \
        "$(json_str "$( [ "${c#*-}" = default ] && echo "$DEF_HEARTBEAT/$DEF_TIMEOUT" || echo "$HEARTBEAT/$LINK_TIMEOUT")")" \
        "$(json_num "${T[$c.target_s]}")" "$(json_str "${T[$c.verdict]}")" "$(json_stats "${T[$c.stats]}")" \
        "$(json_stats "${T[$c.stats_pri]}")" "$(json_stats "${T[$c.stats_relink]}")"
      for rep in $(seq "$TAKEOVER_REPS"); do
        [ "$rep" = 1 ] || printf ', '
        printf '{"takeover_s": %s, "to_mode": %s, "detected_by": %s, "primary_noticed_s": %s, "relink_s": %s, "error": %s}' \
          "$(json_num "${T[$c.$rep.s]:-}")" "$(json_str "${T[$c.$rep.to_mode]:-}")" "$(json_str "${T[$c.$rep.why]:-}")" \
          "$(json_num "${T[$c.$rep.pri_s]:-}")" "$(json_num "${T[$c.$rep.relink_s]:-}")" \
          "$( [ -n "${T[$c.$rep.err]:-}" ] && json_str "${T[$c.$rep.err]}" || echo null)"
      done
      printf ']}'
    done
    printf '\n  }},\n'
  else
    printf 'null,\n'
  fi
  # 3. throughput
  printf '  "throughput": '
  if [ "$DO_THROUGHPUT" = 1 ]; then
    printf '{"runs": ['
    first=1
    for k in "${RUN_KEYS[@]}"; do
      [ "$first" = 1 ] || printf ','
      first=0
      printf '\n    {"pair": %s, "run": %s, "offered_ps": %s, "status": %s' \
        "$(json_str "${R[$k.server]}")" "$(json_str "${R[$k.label]}")" "${R[$k.rate]}" "$(json_str "${R[$k.status]}")"
      for f in sent_ps dora_ps drop_pct lat_avg_ms do_avg ra_avg cpu_s cpu_ms_per_1k sec_cpu_s sec_cpu_ms_per_1k rss_kb cli_cpu_s cli_cpu_pct do_sent do_recv do_drops ra_sent ra_recv ra_drops ra_rej; do
        [ -z "${R[$k.$f]:-}" ] || printf ', "%s": %s' "$f" "$(json_num "${R[$k.$f]}")"
      done
      printf '}'
    done
    printf '\n  ],\n  "series": {'
    first=1
    for s in "${TP_SERVERS[@]}"; do
      [ "$first" = 1 ] || printf ','
      first=0
      printf '\n    %s: {"secondary_core": %s, "peak_dora_ps": %s, "max_dora_ps": %s, "peak_capped": %s, "peak_over_lone": %s, "cpu_per_dora_over_lone": %s}' \
        "$(json_str "$s")" "$( [ "$s" = lone ] && echo null || echo "${s#paired-c}")" \
        "$(json_num "${PEAK[$s]:-}")" "$(json_num "${MAXDORA[$s]:-}")" "$( [ -n "${PEAK_CAPPED[$s]:-}" ] && echo true || echo false )" \
        "$(json_num "${RATIO_PEAK[$s]:-}")" "$(json_num "${RATIO_CPU[$s]:-}")"
    done
    printf '\n  }, "target_ratio": %s, "verdict": %s},\n' "$THROUGHPUT_TARGET" "$(json_str "$THROUGHPUT_VERDICT")"
  else
    printf 'null,\n'
  fi
  # 4. restart
  printf '  "restart": '
  if [ "$DO_RESTART" = 1 ]; then
    printf '{"mclt_s": %s, "probe_rate": %s, "verdict": %s, "cases": {' "$(awk -v m="$RMCLT_MS" 'BEGIN { printf "%g", m / 1000 }')" \
      "$RESTART_RATE" "$(json_str "$( [ "$RESTART_OK" = 1 ] && echo met || echo MISSED)")"
    first=1
    for c in "${RESTART_CASES[@]}"; do
      [ "$first" = 1 ] || printf ','
      first=0
      printf '\n    %s: {"target": %s, "verdict": %s, "to_serve_s": %s, "started_s": %s, "synced_s": %s, "median_minus_mclt_s": %s, "served_before_sync": %s, "reps": [' \
        "$(json_str "$c")" "$(json_str "${RS[$c.target]}")" "$(json_str "${RS[$c.verdict]}")" "$(json_stats "${RS[$c.stats]}")" \
        "$(json_stats "${RS[$c.stats_started]}")" "$(json_stats "${RS[$c.stats_sync]}")" "$(json_num "${RS[$c.over_mclt]:-}")" "${RS[$c.early]}"
      for rep in $(seq "$RESTART_REPS"); do
        [ "$rep" = 1 ] || printf ', '
        printf '{"to_serve_s": %s, "started_s": %s, "synced_s": %s, "served_before_sync": %s, "error": %s}' \
          "$(json_num "${RS[$c.$rep.s]:-}")" "$(json_num "${RS[$c.$rep.started_s]:-}")" "$(json_num "${RS[$c.$rep.sync_s]:-}")" \
          "$( [ "${RS[$c.$rep.early]:-0}" = 1 ] && echo true || echo false )" \
          "$( [ -n "${RS[$c.$rep.err]:-}" ] && json_str "${RS[$c.$rep.err]}" || echo null)"
      done
      printf ']}'
    done
    printf '\n  }},\n'
  else
    printf 'null,\n'
  fi
  printf '  "evidence": ['
  first=1
  for f in "${EVIDENCE[@]}"; do
    [ "$first" = 1 ] || printf ','
    first=0
    printf '\n    %s' "$(json_str "$f")"
  done
  printf '\n  ]\n}\n'
}

# ---------------------------------------------------------------- main
WORK=$(mktemp -d /var/tmp/tmqb-failover.XXXXXX)
chmod 755 "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PERFDHCP_VERSION=$(perfdhcp -v 2>&1 | awk '/VERSION/ { print $2 }')
RANDOM=$SEED
prepare_twinmasq || die "$TWINMASQ_ERR"
# The shared key: 32 random bytes as 64 hex digits, readable by root only
# (twinmasq refuses a key file that group or others can read).
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' >"$WORK/failover.key" && echo >>"$WORK/failover.key")
gen_macs "$NMACS" "$SEED" >"$WORK/macs"
# The probe uses other MACs (first octet 06) so it never touches the list's.
printf '06:00:00:00:00:%02x\n' 1 2 3 >"$WORK/probe-macs"
# The restart probe's new clients (first octet 0a): in no database yet.
gen_macs 2000 "$SEED" | sed 's/^02/0a/' >"$WORK/restart-macs"

setup_net
est=0
[ "$DO_SYNC" = 1 ] && est=$(( est + SYNC_REPS * (DEFAULT_TIMERS ? 2 : 1) * 20 ))
[ "$DO_TAKEOVER" = 1 ] && est=$(( est + TAKEOVER_REPS * (2 * 6 + (DEFAULT_TIMERS ? 2 * 11 : 0)) ))
[ "$DO_THROUGHPUT" = 1 ] && est=$(( est + ${#TP_SERVERS[@]} * (1 + PEAK_RUNS) * (PERIOD + 5) ))
[ "$DO_RESTART" = 1 ] && est=$(( est + RESTART_REPS * (2 * (RESTART_WATCH_S + 6) + RMCLT_MS / 1000) ))
log "namespaces $NS_PRI/$NS_SEC/$NS_CLI up; roughly $est s of runs (each bounded)"

if [ "$DO_SYNC" = 1 ]; then
  timer_sets=(fast)
  [ "$DEFAULT_TIMERS" = 0 ] || timer_sets+=(default)
  for t in "${timer_sets[@]}"; do
    SYNC_CASES+=(pri-holds-$t sec-holds-$t both-hold-$t)
    for rep in $(seq "$SYNC_REPS"); do sync_rep "$t" "$rep"; done
  done
fi
if [ "$DO_TAKEOVER" = 1 ]; then
  TAKEOVER_CASES=(kill-fast cut-fast)
  [ "$DEFAULT_TIMERS" = 0 ] || TAKEOVER_CASES+=(kill-default cut-default)
  for c in "${TAKEOVER_CASES[@]}"; do
    for rep in $(seq "$TAKEOVER_REPS"); do takeover_rep "${c%%-*}" "${c#*-}" "$rep"; done
  done
fi
if [ "$DO_THROUGHPUT" = 1 ]; then
  for s in "${TP_SERVERS[@]}"; do
    measured_run "$s" fixed "$RATE" 0 1
    peak_search "$s"
  done
fi

if [ "$DO_RESTART" = 1 ]; then
  RESTART_CASES=(partner-up partner-down)
  for c in "${RESTART_CASES[@]}"; do
    for rep in $(seq "$RESTART_REPS"); do restart_rep "${c#partner-}" "$rep"; done
  done
fi

mkdir -p "$SCRIPT_DIR/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
txt="$SCRIPT_DIR/results/failover-$stamp.txt"
json="$SCRIPT_DIR/results/failover-$stamp.json"
# report sets the summary variables, so it runs in this shell, not a pipe.
report >"$txt"
write_json >"$json"
if [ "$JSON" = 1 ]; then cat "$txt" >&2; cat "$json"; else cat "$txt"; fi
log "results: $txt and $json"
