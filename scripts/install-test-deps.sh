#!/usr/bin/env bash
# Installs what the test suite and benchmarks drive: real DHCP clients, the
# peer servers we compare against, and the namespace tooling. Idempotent.
# Services shipped by these packages must never start on the host (they would
# bind real interfaces), so a policy-rc.d that refuses every start is in place
# for the duration of the install.
set -euo pipefail

pkgs=(isc-dhcp-client udhcpc dhcpcd-base dnsmasq-base kea-dhcp4-server kea-admin
      dnsperf bind9-dnsutils knot iproute2 ethtool iputils-ping procps psmisc curl)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
placed_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  placed_policy=1
fi
cleanup() { if [ "$placed_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
