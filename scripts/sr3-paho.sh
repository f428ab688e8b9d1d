#!/usr/bin/env bash
# sr3 3.00.56rc2 speaks MQTT only with paho-mqtt >= 2.1.0 (sarracenia/featuredetection.py), and
# Debian bookworm's python3-paho-mqtt is 1.6.1: with it, an `sr3 subscribe` on mqtt:// logs
# "support for mqtt missing" and never connects. Debian trixie packages 2.1.0, pure Python
# (Depends: python3:any). This fetches that one .deb through apt (signature checked against
# the installed debian-archive-keyring), with a private source list and state under a scratch
# directory, so the system's sources and packages stay as they are, and unpacks it into
# $SR3_PAHO_DIR, which test/kit/sr3.ts puts first on sr3's PYTHONPATH. Nothing else uses it.
#
# usage: bash scripts/sr3-paho.sh   (.ci/run runs it; a no-op when it is there already)
set -euo pipefail

dest="${SR3_PAHO_DIR:-/opt/gribswarm-test/paho-mqtt}"
module="$dest/usr/lib/python3/dist-packages/paho/mqtt/__init__.py"
if [ -f "$module" ]; then
  echo "sr3-paho: paho-mqtt $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$module") is in $dest"
  exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lists/partial" "$scratch/archives/partial"
echo "deb http://deb.debian.org/debian trixie main" >"$scratch/sources.list"
apt_private=(-o APT::Sandbox::User=root -o "Dir::Etc::SourceList=$scratch/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$scratch/lists" -o "Dir::Cache::Archives=$scratch/archives" -o "Dir::Cache=$scratch")
apt-get "${apt_private[@]}" -qq update
(cd "$scratch" && apt-get "${apt_private[@]}" -qq download python3-paho-mqtt=2.1.0-1)
mkdir -p "$dest"
dpkg -x "$scratch"/python3-paho-mqtt_2.1.0-1_all.deb "$dest"
echo "sr3-paho: paho-mqtt 2.1.0 (Debian trixie) unpacked into $dest for sr3's MQTT"
