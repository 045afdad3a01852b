# Shell code shared by the benchmarks (bench/dhcp.sh, bench/dns.sh, bench/failover.sh).
# Sourced, never run. The caller sets, before using what needs them:
#   BENCH_NAME   prefix of log lines ("dhcp.sh")
#   REPO, WORK, KEEP (cleanup keeps WORK when 1), BUILD, TWINMASQ_BIN
#   NS_CLI, CLI_CORE, CLI_ADDR, SRV_ADDR, SEED, EXIT_WAIT_US   (perfdhcp)
#   DROP_OK, MIN_RATE, MAX_RATE, PEAK_RUNS, and a measured_run function
#   with dhcp.sh's signature                                   (peak search)
# and calls bench_traps once, right after sourcing.

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()        # every background process we started, killed by PID on exit
CREATED_NS=()  # namespaces we created
CREATED_ETC=() # /etc/netns/<ns> directories we created
WORK=""

forget_pid() {
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local rc=$? p ns d alive
  set +e
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  # Give servers a moment to exit cleanly, then make sure.
  for _ in $(seq 30); do
    alive=0
    for p in "${PIDS[@]}"; do proc_alive "$p" && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do
    proc_alive "$p" && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  # Anything still inside our namespaces descends from us (a daemon that
  # forked away, say): end it by PID before the namespaces go.
  for ns in "${CREATED_NS[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  for d in "${CREATED_ETC[@]}"; do rm -rf "$d"; done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
bench_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# True while the process exists and is not a zombie.
proc_alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# utime+stime of a process in clock ticks (fields 14 and 15 of /proc/PID/stat;
# cut after the ")" of the command name so a space in it cannot shift them).
proc_cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

proc_status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- network
# make_netns NS NAMESERVER: a namespace of our own with lo up, and a
# resolv.conf of our own first, so `ip netns exec` bind-mounts it and
# nothing run inside can read or rewrite the host's.
make_netns() {
  local ns=$1
  if ip netns list | awk '{ print $1 }' | grep -qxF -- "$ns"; then die "namespace $ns already exists"; fi
  if [ ! -d "/etc/netns/$ns" ]; then
    mkdir -p "/etc/netns/$ns"
    CREATED_ETC+=("/etc/netns/$ns")
  fi
  printf 'nameserver %s\n' "$2" >"/etc/netns/$ns/resolv.conf"
  ip netns add "$ns"
  CREATED_NS+=("$ns")
  ip -n "$ns" link set lo up
}

# ---------------------------------------------------------------- perfdhcp
# Children's CPU seconds of this shell, into CHILD_CPU. `times` must run in
# this very shell, not in a $(...) subshell whose children counters start
# empty, hence a function that sets a variable and a file in between.
children_cpu() {
  times >"$WORK/times"
  CHILD_CPU=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] } printf "%.2f\n", t }' "$WORK/times")
}

# run_perfdhcp OUT RATE PERIOD MACFILE [TIMERS(0|1)]: one bounded run on the
# client core. Sets PD_RC and CLI_CPU (perfdhcp's CPU seconds).
run_perfdhcp() {
  local out=$1 rate=$2 period=$3 macs=$4 timers=${5:-1} pid c0 c1
  local -a extra=()
  # -x t prints both exchanges' timestamps for every completed DORA, the
  # only way to get percentiles out of perfdhcp (printed after the run).
  [ "$timers" = 1 ] && extra=(-x t)
  children_cpu
  c0=$CHILD_CPU
  # -g single: pinned to one core, perfdhcp's receive thread would only
  # compete with its sender. The timeout is a backstop, not the run length.
  ip netns exec "$NS_CLI" taskset -c "$CLI_CORE" \
    timeout -k 5 $(( period + 20 )) \
    perfdhcp -4 -g single -l "$CLI_ADDR" -M "$macs" -s "$SEED" \
      -r "$rate" -p "$period" -W "$EXIT_WAIT_US" "${extra[@]}" "$SRV_ADDR" \
    >"$out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  PD_RC=0
  wait "$pid" || PD_RC=$?
  forget_pid "$pid"
  children_cpu
  c1=$CHILD_CPU
  CLI_CPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
}

# parse_perfdhcp OUT DIR: prints "key=value" lines from perfdhcp's final
# report, and the 99th percentile of each exchange's delay from -x t.
parse_perfdhcp() {
  local out=$1 dir=$2 k f n
  awk -v dof="$dir/delay-do.txt" -v raf="$dir/delay-ra.txt" '
    /^\*\*\*Statistics for: DISCOVER-OFFER/ { s = "do"; next }
    /^\*\*\*Statistics for: REQUEST-ACK/    { s = "ra"; next }
    /^\*\*\*Timestamps for packets: DISCOVER-OFFER/ { s = "tdo"; next }
    /^\*\*\*Timestamps for packets: REQUEST-ACK/    { s = "tra"; next }
    /^\*\*\*/ { s = ""; next }
    (s == "do" || s == "ra") && /^sent packets:/     { v[s "_sent"] = $3 }
    (s == "do" || s == "ra") && /^received packets:/ { v[s "_recv"] = $3 }
    (s == "do" || s == "ra") && /^drops:/            { v[s "_drops"] = $2 }
    (s == "do" || s == "ra") && /^rejected leases:/  { v[s "_rej"] = $3 }
    (s == "do" || s == "ra") && /^orphans:/          { v[s "_orphans"] = $2 }
    (s == "do" || s == "ra") && /^avg delay:/        { v[s "_avg"] = $3 }
    s == "tdo" && /^sent \/ received:/ { printf "%.3f\n", ($6 - $4) * 1000 > dof }
    s == "tra" && /^sent \/ received:/ { printf "%.3f\n", ($6 - $4) * 1000 > raf }
    END {
      split("do_sent do_recv do_drops do_rej do_orphans do_avg ra_sent ra_recv ra_drops ra_rej ra_orphans ra_avg", ks, " ")
      # perfdhcp prints "n/a" for delays of an exchange that never completed.
      for (i = 1; i in ks; i++) printf "%s=%s\n", ks[i], ((ks[i] in v && v[ks[i]] ~ /^[0-9.]+$/) ? v[ks[i]] : "")
    }' "$out"
  for k in do ra; do
    f="$dir/delay-$k.txt"
    if [ -s "$f" ]; then
      n=$(wc -l <"$f")
      printf '%s_p99=%s\n' "$k" "$(sort -n "$f" | awk -v i="$(( (n * 99 + 99) / 100 ))" 'NR == i { print; exit }')"
    else
      printf '%s_p99=\n' "$k"
    fi
  done
}

# ---------------------------------------------------------------- peak search
# R holds every run's figures (R[<run key>.<field>]); PEAK, MAXDORA and
# PEAK_CAPPED are per server. measured_run (the caller's) fills R.
declare -A R=() PEAK=() MAXDORA=() PEAK_CAPPED=()

# Is drop% within the threshold? (floats, hence awk)
holds() { awk -v d="$1" -v t="$DROP_OK" 'BEGIN { exit !(d <= t) }'; }
# Rates are kept to two significant digits (184 -> 180, 12345 -> 12000):
# finer steps are below what one run on a shared machine can tell apart.
round2() { awk -v x="$1" -v m="$MIN_RATE" 'BEGIN {
  if (x < m) x = m; q = 1; while (x / q >= 100) q *= 10; print int(x / q + 0.5) * q }'; }

# Peak search from the fixed-rate result: climb by x1.5 while the rate holds
# (up to --max-rate); while it does not, step down to 90 % of what the server
# completed; once bracketed, try the geometric middle, but never more than
# x1.5 over the best rate held nor 1.2 x what the failing run completed (an
# overloaded server's completions say roughly where its limit is); stop when
# the bracket is within 10 %. Peak = best DORA/s of a run that held (<= 1 %).
peak_search() {
  local server=$1 lo=0 hi=0 hi_done=0 rate next i key
  key="$server/fixed"
  [ "${R[$key.status]}" = ok ] || return 0
  rate=${R[$key.rate]}
  note_run "$server" "$key"
  for i in $(seq 0 "$PEAK_RUNS"); do
    # Bracket the peak with the run just made.
    if holds "${R[$key.drop_pct]}"; then
      [ "$rate" -le "$lo" ] || lo=$rate
    elif [ "$hi" = 0 ] || [ "$rate" -lt "$hi" ]; then
      hi=$rate hi_done=${R[$key.dora_ps]}
    fi
    [ "$i" -lt "$PEAK_RUNS" ] || break
    if [ "$hi" = 0 ]; then
      [ "$rate" -lt "$MAX_RATE" ] || break
      next=$(round2 "$(awk -v r="$rate" -v m="$MAX_RATE" 'BEGIN { x = r * 1.5; print (x > m ? m : x) }')")
    elif [ "$lo" = 0 ]; then
      [ "$rate" -gt "$MIN_RATE" ] || break
      next=$(round2 "$(awk -v r="$rate" -v d="${R[$key.dora_ps]}" 'BEGIN {
        x = 0.9 * d; if (x > 0.8 * r) x = 0.8 * r; print x }')")
    else
      [ $(( (hi - lo) * 10 )) -gt "$lo" ] || break
      next=$(round2 "$(awk -v l="$lo" -v h="$hi" -v d="$hi_done" 'BEGIN {
        x = sqrt(l * h); c = 1.2 * d; if (c < 1.5 * l) c = 1.5 * l
        if (x > c) x = c; print x }')")
    fi
    if [ "$next" -le "$lo" ] || { [ "$hi" != 0 ] && [ "$next" -ge "$hi" ]; } || [ "$next" = "$rate" ]; then break; fi
    rate=$next
    key="$server/peak$(( i + 1 ))"
    measured_run "$server" "peak$(( i + 1 ))" "$rate" 0 1
    [ "${R[$key.status]}" = ok ] || break
    note_run "$server" "$key"
  done
  if [ "$lo" -ge "$MAX_RATE" ]; then PEAK_CAPPED[$server]=1; fi
}

# Track per server the best DORA/s of runs that held, and of any run.
note_run() {
  local server=$1 key=$2 d=${R[$2.dora_ps]}
  if [ -z "${MAXDORA[$server]:-}" ] || [ "$d" -gt "${MAXDORA[$server]:-}" ]; then MAXDORA[$server]=$d; fi
  if holds "${R[$key.drop_pct]}"; then
    if [ -z "${PEAK[$server]:-}" ] || [ "$d" -gt "${PEAK[$server]:-}" ]; then PEAK[$server]=$d; fi
  fi
}

# ---------------------------------------------------------------- output
one_dec() { awk -v x="$1" 'BEGIN { if (x == "") print "-"; else printf "%.1f", x }'; }

ratio() { # a b -> a/b with 2 decimals, or empty
  awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.2f", a / b }'
}

json_str() { # minimal JSON string escaping for our own messages and paths
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\t'/ }; s=${s//$'\n'/ }
  s=$(printf '%s' "$s" | tr -d '\000-\037')
  printf '"%s"' "$s"
}
json_num() { if [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then printf '%s' "$1"; else printf 'null'; fi; }

# ---------------------------------------------------------------- twinmasq
# Finds or builds the binary (cargo build --release when it is missing or
# older than the sources, unless BUILD=0). Sets TWINMASQ_BIN and returns 0,
# or sets TWINMASQ_ERR and returns 1.
prepare_twinmasq() {
  local target newer pid st
  TWINMASQ_ERR=""
  if [ -n "$TWINMASQ_BIN" ]; then
    [ -x "$TWINMASQ_BIN" ] && return 0
    TWINMASQ_ERR="--twinmasq-bin $TWINMASQ_BIN is not executable"; return 1
  fi
  target=${CARGO_TARGET_DIR:-$REPO/target}
  TWINMASQ_BIN=$target/release/twinmasq
  if [ -x "$TWINMASQ_BIN" ]; then
    newer=$(find "$REPO/src" "$REPO/proto" "$REPO/Cargo.toml" "$REPO/Cargo.lock" -newer "$TWINMASQ_BIN" -print -quit 2>/dev/null || true)
    [ -n "$newer" ] || return 0
  fi
  if [ "$BUILD" = 0 ]; then
    [ -x "$TWINMASQ_BIN" ] && return 0
    TWINMASQ_ERR="$TWINMASQ_BIN missing and --no-build given"; return 1
  fi
  if ! command -v cargo >/dev/null; then
    TWINMASQ_ERR="cargo not found to build $TWINMASQ_BIN"; return 1
  fi
  log "building twinmasq (cargo build --release; not part of the timed runs)"
  # In the background so that an interrupt reaches it through the trap.
  (cd "$REPO" && exec cargo build --release --bin twinmasq) >"$WORK/cargo-build.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  st=0
  wait "$pid" || st=$?
  forget_pid "$pid"
  if [ "$st" != 0 ] || [ ! -x "$TWINMASQ_BIN" ]; then
    TWINMASQ_ERR="cargo build --release failed: $(grep -m1 '^error' "$WORK/cargo-build.log" || tail -n 1 "$WORK/cargo-build.log")"
    return 1
  fi
}

# ---------------------------------------------------------------- clients
# gen_macs N SEED: N random, distinct, locally administered unicast MACs,
# one a line (perfdhcp -M picks one at random per exchange). Sequential
# MACs (-R) would pile up in dnsmasq's hash-then-probe allocator and
# measure that instead.
gen_macs() {
  awk -v n="$1" -v seed="$2" 'BEGIN {
    srand(seed)
    while (c < n) {
      m = sprintf("02:%02x:%02x:%02x:%02x:%02x", int(rand() * 256), int(rand() * 256),
                  int(rand() * 256), int(rand() * 256), int(rand() * 256))
      if (!(m in seen)) { seen[m] = 1; print m; c++ }
    }
  }'
}
