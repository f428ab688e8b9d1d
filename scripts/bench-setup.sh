#!/usr/bin/env bash
# Installs the Debian packages `npm run bench` needs (the reference tools, the real peers, and
# iproute2 for the clients-as-hosts network namespaces),
# non-interactively, without leaving any of their services running: the benchmark starts its
# own instances on loopback, with their own config directories and ports.
#
# Debian's postinst scripts start nginx, transmission-daemon, opentracker and rabbitmq-server
# through invoke-rc.d (or deb-systemd-invoke, which does nothing where systemd is not running,
# as in a container). A /usr/sbin/policy-rc.d that exits 101 makes invoke-rc.d refuse every
# start; we put one in place for the install if there is none (Docker images often have one
# already) and remove it afterwards.
#
# usage: bash scripts/bench-setup.sh [MORE_PACKAGES...]   (as root when something is missing;
#        .ci/run adds what only the tests need)
set -euo pipefail

packages=(aria2 libeccodes-tools python3-libtorrent mktorrent curl rabbitmq-server transmission-daemon qbittorrent-nox opentracker nginx gdal-bin iproute2 "$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "bench-setup: every package needed is installed."
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-setup: missing Debian packages: ${missing[*]}" >&2
  echo "bench-setup: installing them needs root: sudo bash scripts/bench-setup.sh" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Written by gribswarm scripts/bench-setup.sh for the time of an install: no service starts.\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

echo "bench-setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bench-setup: done (no service was started; the benchmark runs its own instances on 127.0.0.1)."
