#!/usr/bin/env bash
# DHCPv4 benchmark: perfdhcp against twinmasq, dnsmasq and Kea (memfile), all
# on the same pool, in network namespaces this script creates and removes.
# Run as root from anywhere: bench/dhcp.sh [--quick] [--json] (--help for all).
set -euo pipefail
# Decimal points, number formats and sort order must not depend on the caller.
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_NAME=dhcp.sh
# log, die, cleanup (trap), process and perfdhcp helpers, the peak search.
. "$SCRIPT_DIR/lib.sh"

usage() {
  cat <<'EOF'
Usage: bench/dhcp.sh [options]

Runs perfdhcp (relay mode, random MACs) against twinmasq, dnsmasq and Kea,
one after the other, each freshly started with an empty lease store for every
run, and prints a table, ratios and a JSON summary (bench/results/).

  --quick            smoke run (~1 min): 3 s runs, 2 peak-search steps
  --json             print the JSON summary on stdout (the table goes to stderr)
  --servers LIST     comma-separated subset of twinmasq,dnsmasq,kea (default: all)
  --rate N           fixed-rate run, DORA/s offered (default 8000)
  --period S         seconds per perfdhcp run, 1..10 (default 10; --quick: 3)
  --peak-runs N      peak-search runs per server after the fixed run (default 5)
  --max-rate N       peak search stops here; perfdhcp itself tops out near 15k (default 16000)
  --ping-rate N      DORA/s offered in the ping-check scenario (default 200)
  --no-ping          skip the ping-check scenario
  --ping-only        run only the ping-check scenario
  --macs N           size of the random MAC list (default 100000)
  --seed N           seed for MAC list and perfdhcp (default 1)
  --twinmasq-bin P   use this twinmasq binary instead of target/release/twinmasq
  --no-build         do not run cargo build for twinmasq
  --p99              record per-exchange timestamps (perfdhcp -x t) for p99
                     latency; costs perfdhcp enough CPU that it, not the
                     server, limits the rate near 8000 DORA/s on this machine
  --keep             keep the work directory (configs, logs, perfdhcp output)
  -h, --help         this text
EOF
}

# ---------------------------------------------------------------- options
RATE=8000 PERIOD=10 PEAK_RUNS=5 MAX_RATE=16000 MIN_RATE=20 PING_RATE=200
NMACS=100000 SEED=1 QUICK=0 JSON=0 DO_MAIN=1 DO_PING=1 BUILD=1 KEEP=0 P99=0
SERVERS="twinmasq,dnsmasq,kea" TWINMASQ_BIN="" period_set=0 peak_set=0

need_arg() { [ $# -ge 2 ] || { echo "dhcp.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --json) JSON=1 ;;
    --servers) need_arg "$@"; SERVERS=$2; shift ;;
    --rate) need_arg "$@"; RATE=$2; shift ;;
    --period) need_arg "$@"; PERIOD=$2; period_set=1; shift ;;
    --peak-runs) need_arg "$@"; PEAK_RUNS=$2; peak_set=1; shift ;;
    --max-rate) need_arg "$@"; MAX_RATE=$2; shift ;;
    --ping-rate) need_arg "$@"; PING_RATE=$2; shift ;;
    --no-ping) DO_PING=0 ;;
    --ping-only) DO_MAIN=0 ;;
    --macs) need_arg "$@"; NMACS=$2; shift ;;
    --seed) need_arg "$@"; SEED=$2; shift ;;
    --twinmasq-bin) need_arg "$@"; TWINMASQ_BIN=$2; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --p99) P99=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "dhcp.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  [ "$period_set" = 1 ] || PERIOD=3
  [ "$peak_set" = 1 ] || PEAK_RUNS=2
fi
for v in RATE PERIOD PEAK_RUNS MAX_RATE PING_RATE NMACS SEED; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "dhcp.sh: $v must be a whole number" >&2; exit 2; }
done
# Runs are bounded by contract: nothing here may load the machine for long.
if [ "$PERIOD" -lt 1 ] || [ "$PERIOD" -gt 10 ]; then
  echo "dhcp.sh: --period must be 1..10 seconds" >&2; exit 2
fi

# ---------------------------------------------------------------- constants
# Only 198.18.0.0/15 (RFC 2544 benchmarking space) is ever used. The server is
# 198.18.0.1/15; perfdhcp poses as a relay at 198.18.0.2, inside the pool's
# subnet, so every server picks the subnet from giaddr without relay config
# and answers by unicast on the same link (no routes needed).
SRV_ADDR=198.18.0.1 CLI_ADDR=198.18.0.2 PREFIX=15 NETMASK=255.254.0.0
SUBNET=198.18.0.0/15 POOL_START=198.18.1.0 POOL_END=198.19.255.254
POOL_SIZE=$(( 2 * 65536 - 256 - 1 ))
DROP_OK=1           # a run "holds" the rate when at most this % of DORAs fail
EXIT_WAIT_US=500000 # perfdhcp -W: let answers in flight at the end arrive
SRV_CORE=0 CLI_CORE=1

# The PID keeps names unique when several developers run this at once; veth
# names must stay within 15 characters.
NS_SRV="tmqb-$$-srv" NS_CLI="tmqb-$$-cli"
IF_SRV="tmqb$$s" IF_CLI="tmqb$$c"

if [ "$NMACS" -ge "$POOL_SIZE" ]; then
  echo "dhcp.sh: --macs must stay below the pool size ($POOL_SIZE)" >&2; exit 2
fi

bench_traps
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for c in ip ethtool taskset perfdhcp ss awk sort timeout; do
  command -v "$c" >/dev/null || die "missing $c (scripts/install-test-deps.sh installs it)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 cores: servers are pinned to core $SRV_CORE, perfdhcp to core $CLI_CORE"
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- network
setup_net() {
  make_netns "$NS_SRV" "$SRV_ADDR"
  make_netns "$NS_CLI" "$SRV_ADDR"
  # The pair is created inside the server namespace and its peer goes
  # straight to the client one: no end ever appears among the host's links.
  ip -n "$NS_SRV" link add "$IF_SRV" type veth peer name "$IF_CLI" netns "$NS_CLI"
  ip -n "$NS_SRV" addr add "$SRV_ADDR/$PREFIX" dev "$IF_SRV"
  ip -n "$NS_CLI" addr add "$CLI_ADDR/$PREFIX" dev "$IF_CLI"
  ip -n "$NS_SRV" link set "$IF_SRV" up
  ip -n "$NS_CLI" link set "$IF_CLI" up
  # veths leave UDP checksums to an offload that never happens; clients
  # reading raw frames would then see bad checksums.
  ip netns exec "$NS_SRV" ethtool -K "$IF_SRV" tx off rx off >/dev/null
  ip netns exec "$NS_CLI" ethtool -K "$IF_CLI" tx off rx off >/dev/null
}

# ---------------------------------------------------------------- servers
write_dnsmasq_conf() { # dir ping(0|1)
  local dir=$1 ping=$2
  {
    echo "# written by bench/dhcp.sh; dnsmasq and twinmasq read the same file"
    echo "port=0"                      # DHCP only: no DNS listener to skew CPU
    echo "interface=$IF_SRV"
    echo "dhcp-range=$POOL_START,$POOL_END,$NETMASK,1h"
    echo "dhcp-authoritative"
    echo "dhcp-lease-max=200000"       # default 1000 would cap the run
    echo "dhcp-leasefile=$dir/leases"
    # Per-packet log lines would measure syslog, not DHCP; and the log goes
    # to a file of ours, never to the host's syslog.
    echo "quiet-dhcp"
    echo "log-facility=$dir/server.log"
    if [ "$ping" = 0 ]; then echo "no-ping"; fi
  } >"$dir/dnsmasq.conf"
}

write_kea_conf() { # dir
  local dir=$1
  cat >"$dir/kea.json" <<EOF
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "$IF_SRV" ], "dhcp-socket-type": "udp" },
  "multi-threading": { "enable-multi-threading": false },
  "lease-database": { "type": "memfile", "persist": true,
                      "name": "$dir/leases4.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600, "renew-timer": 1800, "rebind-timer": 3150,
  "authoritative": true,
  "subnet4": [ { "id": 1, "subnet": "$SUBNET",
                 "pools": [ { "pool": "$POOL_START - $POOL_END" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                 "output_options": [ { "output": "$dir/server.log" } ] } ]
} }
EOF
}

# start_server SERVER PING DIR: starts it pinned to the server core, waits
# until it listens on UDP 67. Sets SRV_PID, or NOT_RUN and returns 1.
start_server() {
  local server=$1 ping=$2 dir=$3 st last
  local -a cmd
  NOT_RUN="" SRV_PID=""
  case $server in
    dnsmasq)
      write_dnsmasq_conf "$dir" "$ping"
      cmd=("$DNSMASQ_BIN" --keep-in-foreground --conf-file="$dir/dnsmasq.conf"
           --pid-file="$dir/server.pid") ;;
    twinmasq)
      write_dnsmasq_conf "$dir" "$ping"
      cmd=("$TWINMASQ_BIN" --keep-in-foreground --conf-file="$dir/dnsmasq.conf"
           --pid-file="$dir/server.pid" --lease-db="$dir/db" --dhcp-rate-limit=off) ;;
    kea)
      write_kea_conf "$dir"
      # Kea's lock and pid files would otherwise go to system directories.
      cmd=(env KEA_LOCKFILE_DIR="$dir" KEA_PIDFILE_DIR="$dir" "$KEA_BIN" -c "$dir/kea.json") ;;
  esac
  # ip netns exec, taskset and env all exec, so $! is the server itself.
  ip netns exec "$NS_SRV" taskset -c "$SRV_CORE" "${cmd[@]}" >"$dir/server.out" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  for _ in $(seq 100); do
    if ! proc_alive "$SRV_PID"; then
      st=0; wait "$SRV_PID" 2>/dev/null || st=$?
      forget_pid "$SRV_PID"
      # Its own last words: stderr first, else its log file; one short line.
      last=$(grep . "$dir/server.out" 2>/dev/null | tail -n 1 || true)
      [ -n "$last" ] || last=$(grep . "$dir/server.log" 2>/dev/null | tail -n 1 || true)
      last=${last:0:160}
      NOT_RUN="exited (status $st) before listening on UDP 67${last:+: $last}"
      reap_daemon "$dir/server.pid"
      SRV_PID=""
      return 1
    fi
    if ip netns exec "$NS_SRV" ss -Hulnp 'sport = :67' 2>/dev/null | grep -q "pid=$SRV_PID,"; then
      return 0
    fi
    sleep 0.1
  done
  stop_server
  NOT_RUN="not listening on UDP 67 after 10 s"
  return 1
}

# A server that forked into the background despite --keep-in-foreground is
# still ours: find it by the pid file we asked for and end it by that PID,
# once sure it lives in our server namespace (nothing else runs there).
reap_daemon() { # pidfile
  local p
  [ -s "$1" ] || return 0
  p=$(tr -dc '0-9' <"$1")
  [ -n "$p" ] && proc_alive "$p" || return 0
  if [ "$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null)" = "$(stat -L -c %i "/run/netns/$NS_SRV")" ]; then
    kill -TERM "$p" 2>/dev/null || true
    NOT_RUN="$NOT_RUN (it had forked into the background as PID $p; stopped)"
  fi
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

# ---------------------------------------------------------------- runs
RUN_KEYS=()  # R (lib.sh) holds the results: R[<run key>.<field>]

# measured_run SERVER LABEL RATE PING(0|1) PROBE(0|1): a fresh server (empty
# leases), an optional one-second probe, one perfdhcp run, then the server
# is stopped. Always returns 0; R[key.status] says "ok" or why not.
measured_run() {
  local server=$1 label=$2 rate=$3 ping=$4 probe=$5
  local key="$server/$label" dir="$WORK/$server-$label" cpu0 cpu1 line k v
  RUN_KEYS+=("$key")
  R[$key.server]=$server R[$key.label]=$label R[$key.rate]=$rate R[$key.ping]=$ping
  if [ -n "${SERVER_NOT_RUN[$server]:-}" ]; then
    R[$key.status]="NOT RUN: ${SERVER_NOT_RUN[$server]}"; return 0
  fi
  mkdir -p "$dir"
  # dnsmasq drops to "nobody" after opening its files; let it into ours.
  chmod 755 "$dir"
  local what="$server $label: $rate DORA/s for $PERIOD s"
  [ "$ping" = 0 ] || what="$what, ping check on"
  log "$what"
  if ! start_server "$server" "$ping" "$dir"; then
    R[$key.status]="NOT RUN: $NOT_RUN"; return 0
  fi
  if [ "$probe" = 1 ]; then
    # One second at a trickle: a server that is up but cannot complete a
    # DORA gets no numbers, it is reported as not run.
    run_perfdhcp "$dir/probe.out" 20 1 "$WORK/probe-macs" 0
    line=$(parse_perfdhcp "$dir/probe.out" "$dir" | awk -F= '$1 == "ra_recv" { print $2 }')
    if [ -z "$line" ] || [ "$line" = 0 ]; then
      stop_server
      R[$key.status]="NOT RUN: listening, but completed no DORA in a 1 s probe at 20/s"
      return 0
    fi
  fi
  cpu0=$(proc_cpu_ticks "$SRV_PID")
  run_perfdhcp "$dir/perfdhcp.out" "$rate" "$PERIOD" "$WORK/macs" "$P99"
  if ! proc_alive "$SRV_PID"; then
    stop_server
    R[$key.status]="FAILED: server exited during the run (see $dir)"
    return 0
  fi
  cpu1=$(proc_cpu_ticks "$SRV_PID")
  R[$key.rss_kb]=$(proc_status_kb "$SRV_PID" VmRSS)
  R[$key.hwm_kb]=$(proc_status_kb "$SRV_PID" VmHWM)
  if [ -f "$dir/leases" ]; then R[$key.lease_lines]=$(wc -l <"$dir/leases"); fi
  stop_server
  # perfdhcp exits 3 when some exchanges did not complete: a normal outcome.
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
  # A completed exchange is an ACK received; perfdhcp's own "Rate" divides
  # by the run plus the -W wait, so divide by the run period ourselves.
  # Failed = DISCOVERs sent that never got their ACK, whatever the stage.
  while IFS='=' read -r k v; do R[$key.$k]=$v; done < <(awk \
      -v ds="${R[$key.do_sent]}" -v ack="${R[$key.ra_recv]}" -v p="$PERIOD" \
      -v cpu="${R[$key.cpu_s]}" -v ccpu="$CLI_CPU" \
      -v da="${R[$key.do_avg]}" -v ra="${R[$key.ra_avg]}" 'BEGIN {
        printf "sent_ps=%.0f\n", ds / p
        printf "dora_ps=%.0f\n", ack / p
        printf "drop_pct=%.2f\n", (ds > 0) ? 100 * (ds - ack) / ds : 100
        # Sum of both exchanges average delays: the DORA as the client sees it.
        printf "lat_avg_ms=%s\n", (da != "" && ra != "") ? sprintf("%.3f", da + ra) : ""
        printf "cpu_ms_per_1k=%s\n", (ack > 0) ? sprintf("%.1f", cpu * 1e6 / ack) : ""
        printf "cli_cpu_pct=%.0f\n", 100 * ccpu / p
      }')
  if [ "${R[$key.ra_rej]:-0}" != 0 ] || [ "${R[$key.do_rej]:-0}" != 0 ]; then
    log "warning: $key: perfdhcp reports rejected leases (do ${R[$key.do_rej]}, ra ${R[$key.ra_rej]})"
  fi
  R[$key.status]=ok
}

# ---------------------------------------------------------------- output
fmt_row() { # key
  local k=$1 short=""
  if [ "${R[$k.status]}" != ok ]; then
    printf '%-9s %-7s %8s  %s\n' "${R[$k.server]}" "${R[$k.label]}" "${R[$k.rate]}" "${R[$k.status]}"
    return
  fi
  # "<" marks a run where perfdhcp did not send the offered rate (its core
  # was busy): the server was not offered what the row says.
  if [ $(( ${R[$k.sent_ps]} * 100 )) -lt $(( ${R[$k.rate]} * 95 )) ]; then short="<"; SHORT_SEEN=1; fi
  printf '%-9s %-7s %8s %7s %7s %6s %7s %15s %6s %10s %6s %4s%%\n' \
    "${R[$k.server]}" "${R[$k.label]}" "${R[$k.rate]}" "$short${R[$k.sent_ps]}" "${R[$k.dora_ps]}" \
    "${R[$k.drop_pct]}" "$(one_dec "${R[$k.lat_avg_ms]}")" \
    "$(one_dec "${R[$k.do_p99]}")/$(one_dec "${R[$k.ra_p99]}")" \
    "${R[$k.cpu_s]}" "${R[$k.cpu_ms_per_1k]:--}" "$(awk -v r="${R[$k.rss_kb]:-0}" 'BEGIN { printf "%.1f", r / 1024 }')" \
    "${R[$k.cli_cpu_pct]}"
}

report() {
  local k s fixed_key cpu_tm cpu_kea r1 r2 r3
  echo
  echo "DHCPv4 benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), twinmasq $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
  echo "perfdhcp $PERFDHCP_VERSION relay mode (giaddr $CLI_ADDR) -> $SRV_ADDR; pool $POOL_START-$POOL_END ($POOL_SIZE addresses);"
  echo "$NMACS random MACs (seed $SEED); $PERIOD s per run; fresh server and empty leases per run; server on core $SRV_CORE, perfdhcp on core $CLI_CORE."
  echo "Load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg). Figures from a loaded machine only compare within one run."
  echo
  if [ "$DO_MAIN" = 1 ]; then
    printf '%-9s %-7s %8s %7s %7s %6s %7s %15s %6s %10s %6s %5s\n' \
      server run offered sent/s DORA/s fail% lat_ms "p99 DO/RA ms" cpu_s "ms/1k DORA" RSS_MB cli%
    SHORT_SEEN=0
    for k in "${RUN_KEYS[@]}"; do
      [ "${R[$k.label]}" != ping ] || continue
      fmt_row "$k"
    done
    echo
    echo "DORA/s = ACKs received / run time; fail% = DISCOVERs without an ACK; lat_ms = avg DISCOVER-OFFER + REQUEST-ACK;"
    echo "cpu_s = server utime+stime during the run; RSS at the end of the run; cli% = perfdhcp's CPU over the run time."
    if [ "$SHORT_SEEN" = 1 ]; then
      echo "< perfdhcp sent under 95 % of the offered rate: the client (or the machine's load) was the limit there."
    fi
    echo
    echo "Per server: fixed rate $RATE DORA/s offered; peak = best DORA/s of a run with <= ${DROP_OK} % failed."
    for s in "${SERVER_LIST[@]}"; do
      fixed_key="$s/fixed"
      if [ "${R[$fixed_key.status]:-}" != ok ]; then
        printf '  %-9s %s\n' "$s" "${R[$fixed_key.status]:-NOT RUN}"
        continue
      fi
      printf '  %-9s fixed: %s DORA/s, %s ms CPU per 1k DORA; peak: %s; max seen: %s DORA/s\n' "$s" \
        "${R[$fixed_key.dora_ps]}" "${R[$fixed_key.cpu_ms_per_1k]:--}" \
        "$( if [ -n "${PEAK[$s]:-}" ]; then echo "${PEAK[$s]:-} DORA/s${PEAK_CAPPED[$s]:+ (hit --max-rate; perfdhcp may be the limit)}"; else echo "none held <= ${DROP_OK} %"; fi )" \
        "${MAXDORA[$s]:-}"
    done
    echo
    echo "Ratios:"
    cpu_tm=""; cpu_kea=""
    [ "${R[twinmasq/fixed.status]:-}" = ok ] && cpu_tm=${R[twinmasq/fixed.cpu_ms_per_1k]}
    [ "${R[kea/fixed.status]:-}" = ok ] && cpu_kea=${R[kea/fixed.cpu_ms_per_1k]}
    r1=$(ratio "$cpu_tm" "$cpu_kea")
    r2=$(ratio "${PEAK[twinmasq]:-}" "${PEAK[dnsmasq]:-}")
    r3=$(ratio "${PEAK[kea]:-}" "${PEAK[dnsmasq]:-}")
    RATIO_CPU_TM_KEA=$r1 RATIO_PEAK_TM_DNSMASQ=$r2 RATIO_PEAK_KEA_DNSMASQ=$r3
    printf '  twinmasq/Kea CPU per DORA at %s/s: %s\n' "$RATE" "${r1:-n/a ($(why_na twinmasq kea cpu))}"
    printf '  twinmasq/dnsmasq peak DORA/s:    %s\n' "${r2:-n/a ($(why_na twinmasq dnsmasq peak))}"
    printf '  Kea/dnsmasq peak DORA/s:         %s\n' "${r3:-n/a ($(why_na kea dnsmasq peak))}"
  fi
  if [ "$DO_PING" = 1 ]; then
    echo
    echo "Ping check on (dnsmasq without no-ping; twinmasq the same config): $PING_RATE DORA/s offered for $PERIOD s."
    for k in "${RUN_KEYS[@]}"; do
      [ "${R[$k.label]}" = ping ] || continue
      if [ "${R[$k.status]}" = ok ]; then
        printf '  %-9s DISCOVERs %s, OFFERs %s, ACKs (leases granted) %s, %s DORA/s, server CPU %s s%s\n' \
          "${R[$k.server]}" "${R[$k.do_sent]}" "${R[$k.do_recv]}" "${R[$k.ra_recv]}" "${R[$k.dora_ps]}" \
          "${R[$k.cpu_s]}" "${R[$k.lease_lines]:+, lease file lines ${R[$k.lease_lines]}}"
      else
        printf '  %-9s %s\n' "${R[$k.server]}" "${R[$k.status]}"
      fi
    done
  fi
}

why_na() { # a b kind: the first reason a ratio has no value
  local s
  for s in "$1" "$2"; do
    if [[ ",$SERVERS," != *",$s,"* ]]; then echo "$s not selected"; return; fi
    if [ "${R[$s/fixed.status]:-}" != ok ]; then echo "$s did not run"; return; fi
    if [ "$3" = peak ] && [ -z "${PEAK[$s]:-}" ]; then echo "no $s run held <= ${DROP_OK} %"; return; fi
  done
  echo "no data"
}

write_json() {
  local k f first=1 s
  printf '{\n  "benchmark": "dhcp",\n  "date": %s,\n  "git_rev": %s,\n' \
    "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" "$(json_str "$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)")"
  printf '  "machine": {"cores": %s, "loadavg_start": %s, "loadavg_end": %s, "kernel": %s},\n' \
    "$(nproc)" "$(json_str "$LOAD_START")" "$(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")" "$(json_str "$(uname -r)")"
  printf '  "versions": {"perfdhcp": %s, "dnsmasq": %s, "kea": %s},\n' \
    "$(json_str "$PERFDHCP_VERSION")" "$(json_str "$DNSMASQ_VERSION")" "$(json_str "$KEA_VERSION")"
  printf '  "params": {"fixed_rate": %s, "period_s": %s, "peak_runs": %s, "max_rate": %s, "ping_rate": %s, "macs": %s, "seed": %s, "pool_size": %s, "drop_ok_pct": %s, "exit_wait_us": %s, "quick": %s},\n' \
    "$RATE" "$PERIOD" "$PEAK_RUNS" "$MAX_RATE" "$PING_RATE" "$NMACS" "$SEED" "$POOL_SIZE" "$DROP_OK" "$EXIT_WAIT_US" "$( [ "$QUICK" = 1 ] && echo true || echo false )"
  printf '  "runs": ['
  for k in "${RUN_KEYS[@]}"; do
    [ "$first" = 1 ] || printf ','
    first=0
    printf '\n    {"server": %s, "run": %s, "offered_ps": %s, "ping_check": %s, "status": %s' \
      "$(json_str "${R[$k.server]}")" "$(json_str "${R[$k.label]}")" "${R[$k.rate]}" \
      "$( [ "${R[$k.ping]}" = 1 ] && echo true || echo false )" "$(json_str "${R[$k.status]}")"
    if [ "${R[$k.status]}" = ok ]; then
      for f in sent_ps dora_ps drop_pct lat_avg_ms do_avg ra_avg do_p99 ra_p99 cpu_s cpu_ms_per_1k rss_kb hwm_kb cli_cpu_s cli_cpu_pct do_sent do_recv do_drops do_orphans ra_sent ra_recv ra_drops ra_orphans ra_rej lease_lines; do
        printf ', "%s": %s' "$f" "$(json_num "${R[$k.$f]:-}")"
      done
    fi
    printf '}'
  done
  printf '\n  ],\n  "servers": {'
  first=1
  for s in "${SERVER_LIST[@]}"; do
    [ "$first" = 1 ] || printf ','
    first=0
    printf '\n    %s: {"ran": %s, "peak_dora_ps": %s, "max_dora_ps": %s, "peak_capped": %s}' "$(json_str "$s")" \
      "$( [ "${R[$s/fixed.status]:-}" = ok ] && echo true || echo false )" \
      "$(json_num "${PEAK[$s]:-}")" "$(json_num "${MAXDORA[$s]:-}")" "$( [ -n "${PEAK_CAPPED[$s]:-}" ] && echo true || echo false )"
  done
  printf '\n  },\n  "ratios": {"twinmasq_over_kea_cpu_per_dora": %s, "twinmasq_over_dnsmasq_peak": %s, "kea_over_dnsmasq_peak": %s}\n}\n' \
    "$(json_num "${RATIO_CPU_TM_KEA:-}")" "$(json_num "${RATIO_PEAK_TM_DNSMASQ:-}")" "$(json_num "${RATIO_PEAK_KEA_DNSMASQ:-}")"
}

# ---------------------------------------------------------------- main
declare -A SERVER_NOT_RUN=()
IFS=',' read -r -a SERVER_LIST <<<"$SERVERS"
for s in "${SERVER_LIST[@]}"; do
  case $s in twinmasq|dnsmasq|kea) ;; *) die "unknown server '$s' in --servers" ;; esac
done

WORK=$(mktemp -d /var/tmp/tmqb-dhcp.XXXXXX)
chmod 755 "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PERFDHCP_VERSION=$(perfdhcp -v 2>&1 | awk '/VERSION/ { print $2 }')
DNSMASQ_BIN=$(command -v dnsmasq || true)
KEA_BIN=$(command -v kea-dhcp4 || true)
DNSMASQ_VERSION=$([ -n "$DNSMASQ_BIN" ] && "$DNSMASQ_BIN" -v | awk 'NR == 1 { print $3 }' || true)
KEA_VERSION=$([ -n "$KEA_BIN" ] && "$KEA_BIN" -v 2>/dev/null || true)
[ -n "$DNSMASQ_BIN" ] || SERVER_NOT_RUN[dnsmasq]="dnsmasq not installed"
[ -n "$KEA_BIN" ] || SERVER_NOT_RUN[kea]="kea-dhcp4 not installed"
for s in "${SERVER_LIST[@]}"; do
  [ "$s" != twinmasq ] || prepare_twinmasq || SERVER_NOT_RUN[twinmasq]=$TWINMASQ_ERR
done

gen_macs "$NMACS" "$SEED" >"$WORK/macs"
# The probe uses other MACs (first octet 06) so it never touches the list's.
printf '06:00:00:00:00:%02x\n' 1 2 3 >"$WORK/probe-macs"

setup_net
runs_est=0
[ "$DO_MAIN" = 1 ] && runs_est=$(( ${#SERVER_LIST[@]} * (1 + PEAK_RUNS) ))
[ "$DO_PING" = 1 ] && runs_est=$(( runs_est + 2 ))
log "namespaces $NS_SRV/$NS_CLI up; at most $runs_est runs of ${PERIOD} s (+~3 s each for start and probe)"

if [ "$DO_MAIN" = 1 ]; then
  for s in "${SERVER_LIST[@]}"; do
    measured_run "$s" fixed "$RATE" 0 1
    peak_search "$s"
  done
fi
if [ "$DO_PING" = 1 ]; then
  # Kea has no ping check to compare; the scenario is dnsmasq's and ours.
  for s in dnsmasq twinmasq; do
    [[ ",$SERVERS," == *",$s,"* ]] || continue
    measured_run "$s" ping "$PING_RATE" 1 0
  done
fi

mkdir -p "$SCRIPT_DIR/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
txt="$SCRIPT_DIR/results/dhcp-$stamp.txt"
json="$SCRIPT_DIR/results/dhcp-$stamp.json"
# report sets the ratio variables, so it runs in this shell, not a pipe.
report >"$txt"
write_json >"$json"
if [ "$JSON" = 1 ]; then cat "$txt" >&2; cat "$json"; else cat "$txt"; fi
log "results: $txt and $json"
