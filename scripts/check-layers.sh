#!/usr/bin/env bash
# Layering guard: folders below the DHCP engine must not import it, so the
# shared vocabulary (crate::clock, crate::net::ipv4, Config::domain_for,
# crate::lease::hw, crate::lease::hostname) and the pair contract
# (crate::share) stay where every engine can reach them without reaching
# into another engine's folder.
#
# Enforced: src/dns, src/script, src/net, src/config, src/failover,
# src/lease. Tests that drive a dhcp::Engine against the failover node are
# tests of the composition and live in src/lease_task.
#
# Not yet (each still imports crate::dhcp, for a reason a later move removes):
# - src/metrics: reads dhcp::engine::Engine, dhcp::stats::Stats and
#   dhcp::pool::Pool until the counters are plain data in a root report.rs;
# - src/control: reads dhcp::engine::Engine for `status`, likewise until
#   report.rs.
# Add a folder to ENFORCED once its grep comes back empty.
set -euo pipefail
cd "$(dirname "$0")/.."

ENFORCED=(src/dns src/script src/net src/config src/failover src/lease)

# Also catches grouped imports written on one line: `use crate::{dhcp, …}`.
# grep exits 1 for "no match"; anything above that (a folder gone missing)
# must fail too, not pass as clean.
rc=0
hits=$(grep -rnE 'crate::(dhcp\b|\{[^}]*\bdhcp\b)' "${ENFORCED[@]}") || rc=$?
case $rc in
0)
    echo "check-layers: these lines import crate::dhcp from a layer below it:" >&2
    echo "$hits" >&2
    exit 1
    ;;
1) echo "check-layers: ok (${ENFORCED[*]})" ;;
*)
    echo "check-layers: grep failed (exit $rc)" >&2
    exit "$rc"
    ;;
esac
