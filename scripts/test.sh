#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it: installs the
# real clients and peer servers the tests drive, checks formatting and
# lints, then runs every test of the workspace (unit, simulation, and the
# network-namespace tests, which need root).
set -euo pipefail
cd "$(dirname "$0")/.."

# First: it needs no build, so a layering slip fails in a second.
bash scripts/check-layers.sh
bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked
# A short coverage-guided fuzzing pass on the checked-in corpora (fuzz/).
bash scripts/fuzz.sh
