#!/usr/bin/env bash
# DNS benchmark: dnsperf against twinmasq and dnsmasq on the same data, in
# network namespaces this script creates and removes.
# Run as root from anywhere: bench/dns.sh [--quick] (--help for all).
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

usage() {
  cat <<'EOF'
Usage: bench/dns.sh [options]

Runs dnsperf against twinmasq and dnsmasq, one after the other, each freshly
started on the same config, in three scenarios:
  local   names from a hosts file (addn-hosts)
  hit     forwarded names already in the cache (warmed first)
  miss    names never asked before, forwarded to a local upstream
each uncapped and at a fixed rate, and prints qps, latency, lost queries,
server CPU and the twinmasq/dnsmasq ratios.

  --quick            smoke run: 3 s runs
  --servers LIST     comma-separated subset of twinmasq,dnsmasq (default: both)
  --rate N           fixed-rate runs, queries/s (dnsperf -Q; default 20000)
  --period S         seconds per dnsperf run, 1..10 (default 10; --quick: 3)
  --names N          names in the hosts file and the cache set (default 1000)
  --twinmasq-bin P   use this twinmasq binary instead of target/release/twinmasq
  --no-build         do not run cargo build for twinmasq
  --keep             keep the work directory (configs, logs, dnsperf output)
  -h, --help         this text
EOF
}

RATE=20000 PERIOD=10 NAMES=1000 QUICK=0 BUILD=1 KEEP=0 period_set=0
SERVERS="twinmasq,dnsmasq" TWINMASQ_BIN=""
need_arg() { [ $# -ge 2 ] || { echo "dns.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --servers) need_arg "$@"; SERVERS=$2; shift ;;
    --rate) need_arg "$@"; RATE=$2; shift ;;
    --period) need_arg "$@"; PERIOD=$2; period_set=1; shift ;;
    --names) need_arg "$@"; NAMES=$2; shift ;;
    --twinmasq-bin) need_arg "$@"; TWINMASQ_BIN=$2; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "dns.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ] && [ "$period_set" = 0 ]; then PERIOD=3; fi
for v in RATE PERIOD NAMES; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "dns.sh: $v must be a whole number" >&2; exit 2; }
done
if [ "$PERIOD" -lt 1 ] || [ "$PERIOD" -gt 10 ]; then
  echo "dns.sh: --period must be 1..10 seconds" >&2; exit 2
fi
if [ "$NAMES" -lt 1 ] || [ "$NAMES" -gt 60000 ]; then
  echo "dns.sh: --names must be 1..60000" >&2; exit 2
fi

# ---------------------------------------------------------------- constants
# Only 198.18.0.0/15. The server under test is 198.18.0.1 in its namespace;
# dnsperf (198.18.0.2) and the upstream (198.18.0.3) share the client
# namespace, across one veth pair.
SRV_ADDR=198.18.0.1 CLI_ADDR=198.18.0.2 UP_ADDR=198.18.0.3 PREFIX=24
UP_ANSWER=198.18.0.99
SRV_CORE=0 CLI_CORE=1
NS_SRV="tmqd-$$-srv" NS_CLI="tmqd-$$-cli"
IF_SRV="tmqd$$s" IF_CLI="tmqd$$c"

BENCH_NAME=dns.sh
# log, die, cleanup (trap), process helpers, make_netns.
. "$SCRIPT_DIR/lib.sh"
bench_traps

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for c in ip taskset dnsperf dig awk timeout; do
  command -v "$c" >/dev/null || die "missing $c"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 cores: servers on core $SRV_CORE, dnsperf on core $CLI_CORE"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- network
setup_net() {
  make_netns "$NS_SRV" "$SRV_ADDR"
  make_netns "$NS_CLI" "$SRV_ADDR"
  ip -n "$NS_SRV" link add "$IF_SRV" type veth peer name "$IF_CLI" netns "$NS_CLI"
  ip -n "$NS_SRV" addr add "$SRV_ADDR/$PREFIX" dev "$IF_SRV"
  ip -n "$NS_CLI" addr add "$CLI_ADDR/$PREFIX" dev "$IF_CLI"
  ip -n "$NS_CLI" addr add "$UP_ADDR/$PREFIX" dev "$IF_CLI"
  ip -n "$NS_SRV" link set "$IF_SRV" up
  ip -n "$NS_CLI" link set "$IF_CLI" up
}

# ---------------------------------------------------------------- data
# hosts: h<i>.bench.lan -> 198.18.(16 + i / 250).(i % 250 + 1)
write_data() {
  awk -v n="$NAMES" 'BEGIN { for (i = 0; i < n; i++)
    printf "198.18.%d.%d h%d.bench.lan\n", 16 + int(i / 250), i % 250 + 1, i }' >"$WORK/hosts"
  chmod 644 "$WORK/hosts"
  awk -v n="$NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "h%d.bench.lan A\n", i }' >"$WORK/q-local"
  awk -v n="$NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "c%d.cache.example A\n", i }' >"$WORK/q-hit"
}

# A fresh list of never-asked names for one miss run: enough for the run at
# 200k qps; dnsperf -n 1 reads it once, so no name repeats (and hits).
write_miss_names() { # file tag
  awk -v tag="$2" -v n=$(( PERIOD * 200000 )) 'BEGIN {
    for (i = 0; i < n; i++) printf "m%d.%s.miss.example A\n", i, tag }' >"$1"
}

write_conf() { # dir
  local dir=$1
  {
    echo "# written by bench/dns.sh; dnsmasq and twinmasq read the same file"
    echo "interface=$IF_SRV"
    echo "bind-interfaces"
    echo "no-resolv"
    echo "no-hosts"
    echo "addn-hosts=$WORK/hosts"
    echo "local=/bench.lan/"
    echo "server=$UP_ADDR"
    echo "cache-size=10000"
    # dnsmasq's default (150) caps forwarded queries in flight.
    echo "dns-forward-max=1000"
    echo "log-facility=$dir/server.log"
  } >"$dir/dnsmasq.conf"
}

# ---------------------------------------------------------------- processes
# The upstream: a second dnsmasq that answers every A query with one address
# (TTL 300, so forwarded answers are cached), on the client core.
start_upstream() {
  local d=$WORK/upstream
  mkdir -p "$d"
  ip netns exec "$NS_CLI" taskset -c "$CLI_CORE" "$DNSMASQ_BIN" --keep-in-foreground \
    --conf-file=/dev/null --listen-address="$UP_ADDR" --bind-interfaces --no-resolv --no-hosts \
    --address="/#/$UP_ANSWER" --local-ttl=300 --cache-size=0 --pid-file="$d/pid" \
    --log-facility="$d/log" >"$d/out" 2>&1 &
  UP_PID=$!
  PIDS+=("$UP_PID")
  for _ in $(seq 100); do
    if dig_probe "$UP_ADDR" probe.example; then return 0; fi
    proc_alive "$UP_PID" || break
    sleep 0.1
  done
  die "upstream dnsmasq did not answer: $(tail -n 3 "$d/out" "$d/log" 2>/dev/null | tr '\n' ' ')"
}

dig_probe() { # server name
  ip netns exec "$NS_CLI" timeout 3 dig +time=1 +tries=1 +short -b "$CLI_ADDR" "@$1" "$2" A 2>/dev/null | grep -q .
}

# start_server SERVER DIR: pinned to the server core; ready once it answers a
# hosts name. Sets SRV_PID, or NOT_RUN and returns 1.
start_server() {
  local server=$1 dir=$2 st last
  local -a cmd
  NOT_RUN="" SRV_PID=""
  write_conf "$dir"
  case $server in
    dnsmasq) cmd=("$DNSMASQ_BIN" --keep-in-foreground --conf-file="$dir/dnsmasq.conf"
                  --pid-file="$dir/server.pid") ;;
    twinmasq) cmd=("$TWINMASQ_BIN" --keep-in-foreground --conf-file="$dir/dnsmasq.conf"
                   --pid-file="$dir/server.pid" --lease-db="$dir/db") ;;
  esac
  ip netns exec "$NS_SRV" taskset -c "$SRV_CORE" "${cmd[@]}" >"$dir/server.out" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  for _ in $(seq 50); do
    if ! proc_alive "$SRV_PID"; then
      st=0; wait "$SRV_PID" 2>/dev/null || st=$?
      forget_pid "$SRV_PID"
      last=$(grep . "$dir/server.out" 2>/dev/null | tail -n 1 || true)
      [ -n "$last" ] || last=$(grep . "$dir/server.log" 2>/dev/null | tail -n 1 || true)
      NOT_RUN="exited (status $st) before answering DNS${last:+: ${last:0:160}}"
      SRV_PID=""
      return 1
    fi
    if dig_probe "$SRV_ADDR" h0.bench.lan; then return 0; fi
    sleep 0.2
  done
  stop_server
  NOT_RUN="no answer to a DNS query for h0.bench.lan on $SRV_ADDR:53 within ~10 s"
  return 1
}

stop_server() {
  [ -n "${SRV_PID:-}" ] || return 0
  kill -TERM "$SRV_PID" 2>/dev/null || true
  for _ in $(seq 50); do proc_alive "$SRV_PID" || break; sleep 0.1; done
  if proc_alive "$SRV_PID"; then kill -KILL "$SRV_PID" 2>/dev/null || true; fi
  wait "$SRV_PID" 2>/dev/null || true
  forget_pid "$SRV_PID"
  SRV_PID=""
}

# run_dnsperf OUT FILE PERIOD RATE(0 = uncapped) ONCE(0|1)
run_dnsperf() {
  local out=$1 file=$2 period=$3 rate=$4 once=$5 pid
  local -a extra=()
  [ "$rate" -gt 0 ] && extra+=(-Q "$rate")
  [ "$once" = 1 ] && extra+=(-n 1)
  # -t 1: a query unanswered after 1 s is lost, and the run ends at most 1 s
  # after -l. The outer timeout is a backstop.
  ip netns exec "$NS_CLI" taskset -c "$CLI_CORE" timeout -k 3 $(( period + 15 )) \
    dnsperf -s "$SRV_ADDR" -a "$CLI_ADDR" -d "$file" -l "$period" -t 1 -c 1 -T 1 "${extra[@]}" \
    >"$out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  PERF_RC=0
  wait "$pid" || PERF_RC=$?
  forget_pid "$pid"
}

# ---------------------------------------------------------------- results
declare -A R=()
RUN_KEYS=()

# measure SERVER SCENARIO MODE FILE RATE ONCE
measure() {
  local s=$1 sc=$2 mode=$3 file=$4 rate=$5 once=$6 k out t0 t1
  k="$s/$sc/$mode"
  RUN_KEYS+=("$k")
  out="$WORK/$s/$sc-$mode.dnsperf"
  t0=$(proc_cpu_ticks "$SRV_PID")
  run_dnsperf "$out" "$file" "$PERIOD" "$rate" "$once"
  if ! proc_alive "$SRV_PID"; then
    R[$k]="NOT RUN: server died during the run"; return 0
  fi
  t1=$(proc_cpu_ticks "$SRV_PID")
  if [ "$PERF_RC" != 0 ] || ! grep -q 'Queries per second' "$out"; then
    R[$k]="NOT RUN: dnsperf failed (status $PERF_RC): $(grep . "$out" | tail -n 1)"; return 0
  fi
  R[$k]=$(awk -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" '
    /Queries sent:/      { sent = $3 }
    /Queries completed:/ { done = $3 }
    /Queries lost:/      { lost = $3 }
    /Run time \(s\):/    { rt = $4 }
    /Queries per second:/ { qps = $4 }
    /Average Latency \(s\):/ { lat = $4; mx = $8; sub(/\)/, "", mx) }
    END {
      cpu = (t1 - t0) / hz
      printf "ok %.0f %d %d %d %.3f %.3f %.2f %.3f %.1f", qps, sent, done, lost, lat * 1000, mx * 1000, cpu,
        (done > 0 ? cpu * 1000000 / done : 0), (rt > 0 ? cpu * 100 / rt : 0)
    }' "$out")
}

ratio() { # a b -> a/b or empty
  [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }' || true
}

field() { # key index (1 = status) -> value when the run is ok
  local v=${R[$1]:-}
  [ "${v%% *}" = ok ] || return 0
  awk -v i="$2" '{ print $i }' <<<"$v"
}

report() {
  local k s sc mode
  echo "DNS benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
  echo "dnsperf $DNSPERF_VERSION, dnsmasq $DNSMASQ_VERSION; $PERIOD s per run; $NAMES names; fixed rate $RATE qps."
  echo "Servers on core $SRV_CORE, dnsperf and the upstream on core $CLI_CORE."
  echo "Load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg). On a shared machine, compare within one run only."
  echo
  printf '%-9s %-6s %-9s %9s %9s %9s %7s %8s %8s %7s %9s %6s\n' \
    server scen mode qps sent done lost lat_ms max_ms cpu_s "us/query" cpu%
  for k in "${RUN_KEYS[@]}"; do
    IFS=/ read -r s sc mode <<<"$k"
    if [ "$(field "$k" 1)" = ok ]; then
      # shellcheck disable=SC2046
      printf '%-9s %-6s %-9s %9s %9s %9s %7s %8s %8s %7s %9s %6s\n' "$s" "$sc" "$mode" \
        $(awk '{ print $2, $3, $4, $5, $6, $7, $8, $9, $10 }' <<<"${R[$k]}")
    else
      printf '%-9s %-6s %-9s %s\n' "$s" "$sc" "$mode" "${R[$k]}"
    fi
  done
  for s in "${SERVER_LIST[@]}"; do
    [ -z "${SERVER_NOT_RUN[$s]:-}" ] || printf '%-9s NOT RUN: %s\n' "$s" "${SERVER_NOT_RUN[$s]}"
  done
  echo
  echo "qps = completed / run time (dnsperf); lost = no answer within 1 s; lat = average and max latency;"
  echo "cpu_s = server utime+stime (/proc/<pid>/stat) during the run; us/query = CPU per completed query; cpu% = of one core."
  echo
  echo "Ratios twinmasq/dnsmasq (qps: above 1 is faster; CPU per query: below 1 is cheaper):"
  for sc in local hit miss; do
    for mode in uncapped "fixed"; do
      local q c
      q=$(ratio "$(field "twinmasq/$sc/$mode" 2)" "$(field "dnsmasq/$sc/$mode" 2)")
      c=$(ratio "$(field "twinmasq/$sc/$mode" 9)" "$(field "dnsmasq/$sc/$mode" 9)")
      printf '  %-6s %-9s qps %-6s CPU/query %s\n' "$sc" "$mode" "${q:-n/a}" "${c:-n/a}"
    done
  done
}

# ---------------------------------------------------------------- twinmasq
prepare_twinmasq() {
  local target newer pid st
  if [ -n "$TWINMASQ_BIN" ]; then
    [ -x "$TWINMASQ_BIN" ] || SERVER_NOT_RUN[twinmasq]="--twinmasq-bin $TWINMASQ_BIN is not executable"
    return 0
  fi
  target=${CARGO_TARGET_DIR:-$REPO/target}
  TWINMASQ_BIN=$target/release/twinmasq
  if [ -x "$TWINMASQ_BIN" ]; then
    newer=$(find "$REPO/src" "$REPO/proto" "$REPO/Cargo.toml" "$REPO/Cargo.lock" -newer "$TWINMASQ_BIN" -print -quit 2>/dev/null || true)
    [ -n "$newer" ] || return 0
  fi
  if [ "$BUILD" = 0 ]; then
    [ -x "$TWINMASQ_BIN" ] || SERVER_NOT_RUN[twinmasq]="$TWINMASQ_BIN missing and --no-build given"
    return 0
  fi
  command -v cargo >/dev/null || { SERVER_NOT_RUN[twinmasq]="cargo not found to build $TWINMASQ_BIN"; return 0; }
  log "building twinmasq (cargo build --release; not part of the timed runs)"
  (cd "$REPO" && exec cargo build --release --bin twinmasq) >"$WORK/cargo-build.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  st=0
  wait "$pid" || st=$?
  forget_pid "$pid"
  if [ "$st" != 0 ] || [ ! -x "$TWINMASQ_BIN" ]; then
    SERVER_NOT_RUN[twinmasq]="cargo build --release failed: $(grep -m1 '^error' "$WORK/cargo-build.log" || tail -n 1 "$WORK/cargo-build.log")"
  fi
}

# ---------------------------------------------------------------- main
declare -A SERVER_NOT_RUN=()
IFS=',' read -r -a SERVER_LIST <<<"$SERVERS"
for s in "${SERVER_LIST[@]}"; do
  case $s in twinmasq|dnsmasq) ;; *) die "unknown server '$s' in --servers" ;; esac
done

WORK=$(mktemp -d /var/tmp/tmqd-dns.XXXXXX)
chmod 755 "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DNSPERF_VERSION=$(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }')
DNSMASQ_BIN=$(command -v dnsmasq || true)
[ -n "$DNSMASQ_BIN" ] || die "dnsmasq not installed (it is also the upstream)"
DNSMASQ_VERSION=$("$DNSMASQ_BIN" -v | awk 'NR == 1 { print $3 }')
for s in "${SERVER_LIST[@]}"; do [ "$s" != twinmasq ] || prepare_twinmasq; done

write_data
setup_net
start_upstream
log "namespaces $NS_SRV/$NS_CLI up, upstream at $UP_ADDR; up to 7 runs of $PERIOD s per server"

for s in "${SERVER_LIST[@]}"; do
  [ -z "${SERVER_NOT_RUN[$s]:-}" ] || continue
  mkdir -p "$WORK/$s"
  if ! start_server "$s" "$WORK/$s"; then
    SERVER_NOT_RUN[$s]=$NOT_RUN
    log "$s NOT RUN: $NOT_RUN"
    continue
  fi
  log "$s: local names"
  measure "$s" local uncapped "$WORK/q-local" 0 0
  measure "$s" local fixed "$WORK/q-local" "$RATE" 0
  log "$s: cache hits (warming first)"
  run_dnsperf "$WORK/$s/hit-warm.dnsperf" "$WORK/q-hit" 5 500 1
  measure "$s" hit uncapped "$WORK/q-hit" 0 0
  measure "$s" hit fixed "$WORK/q-hit" "$RATE" 0
  log "$s: misses forwarded to the upstream"
  write_miss_names "$WORK/q-miss-a" "$s-a"
  measure "$s" miss uncapped "$WORK/q-miss-a" 0 1
  write_miss_names "$WORK/q-miss-b" "$s-b"
  measure "$s" miss fixed "$WORK/q-miss-b" "$RATE" 1
  rm -f "$WORK/q-miss-a" "$WORK/q-miss-b"
  stop_server
done

mkdir -p "$SCRIPT_DIR/results"
txt="$SCRIPT_DIR/results/dns-$(date -u +%Y%m%dT%H%M%SZ).txt"
report >"$txt"
cat "$txt"
log "results: $txt"
