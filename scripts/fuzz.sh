#!/usr/bin/env bash
# Short fuzzing pass for CI: builds every cargo-fuzz target under fuzz/ once
# and runs each for a bounded time on a scratch copy of its checked-in seed
# corpus (so CI runs never grow the repository). Prints, per target, the
# executions, the corpus size it ended with, and the crashes; exits non-zero
# if any target crashed, naming the artifact that reproduces it.
#
#   FUZZ_SECONDS      run time per target (default 12)
#   FUZZ_ARTIFACTS    where crash inputs are kept (default fuzz/target/fuzz-artifacts)
#
# The targets are libFuzzer programs (libfuzzer-sys), built here the way
# `cargo fuzz build --sanitizer none --debug-assertions` builds them, with
# the coverage instrumentation flags it passes, all of which the stable
# toolchain takes. So CI needs neither nightly nor a cargo-fuzz install;
# `cargo +nightly fuzz run TARGET` (fuzz/README.md) works as well.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-12}"
artifacts="${FUZZ_ARTIFACTS:-$PWD/fuzz/target/fuzz-artifacts}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

# An explicit --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions"
# Release with debug assertions, so arithmetic overflow is a crash too.
cargo build --manifest-path fuzz/Cargo.toml --locked --release \
    --target "$triple" -p twinmasq-fuzz --bins
bin_dir="fuzz/target/$triple/release"
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^twinmasq-fuzz$')

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in $targets; do
    corpus="$scratch/$target"
    mkdir -p "$corpus" "$artifacts/$target"
    if [ -d "fuzz/corpus/$target" ]; then
        cp -r "fuzz/corpus/$target/." "$corpus/"
    fi
    log="$scratch/$target.log"
    status=0
    "$bin_dir/$target" "$corpus" \
        -max_total_time="$seconds" -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/$target/" >"$log" 2>&1 || status=$?
    # "Done N runs" when time ran out; otherwise the last status line.
    runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)"
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n1)"
    fi
    size="$(ls "$corpus" | wc -l)"
    crash_files="$(grep -o 'Test unit written to [^ ]*' "$log" | sed 's/Test unit written to //' || true)"
    crashes="$(printf '%s' "$crash_files" | grep -c . || true)"
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1
    fi
    echo "fuzz $target: executions=${runs:-0} corpus=$size crashes=$crashes"
    if [ "$crashes" -ne 0 ]; then
        failed+=("$target")
        # The panic and the input that caused it, for the CI log.
        grep -a -A2 -E "panicked at|^Error|ERROR: libFuzzer|SUMMARY" "$log" | head -n 30 || true
        for f in $crash_files; do
            echo "  crash artifact: $f"
        done
        if [ -z "$crash_files" ]; then
            echo "  exit status $status; last lines of the log:"
            tail -n 20 "$log"
        fi
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no crashes"
