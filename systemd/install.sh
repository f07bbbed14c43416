#!/usr/bin/env bash
# Install edgectl on a controller box (or a HIL bench box): a venv in /opt/edgectl, the systemd units,
# the site file in /etc/edgectl/site.toml (kept if present), then enable and start the service.
#
#   sudo bash systemd/install.sh                 # edgectl.service
#   sudo bash systemd/install.sh --with-hil-sim  # also hil-sim.service (bench box)
#   bash systemd/install.sh --destdir /tmp/stage --no-venv --no-start   # stage files only (no root)
#
# `make install` runs the first form. Options:
#   --destdir DIR    install under DIR (packaging / dry runs); implies --no-start
#   --prefix DIR     venv location (default /opt/edgectl)
#   --config FILE    site file to install when /etc/edgectl/site.toml does not exist
#                    (default config/site.example.toml; edit it, then `edgectl check-config`)
#   --with-hil-sim   also install and enable hil-sim.service
#   --no-venv        do not build the venv (it already exists)
#   --no-start       install and enable nothing at runtime (no systemctl calls)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
destdir=""
prefix="/opt/edgectl"
config="$repo/config/site.example.toml"
with_sim=0
venv=1
start=1
python="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) destdir="$2"; start=0; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --with-hil-sim) with_sim=1; shift ;;
    --no-venv) venv=0; shift ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (or use --destdir DIR to stage files)" >&2
  exit 1
fi

unitdir="$destdir/etc/systemd/system"
confdir="$destdir/etc/edgectl"

if [ "$venv" = 1 ]; then
  echo "install.sh: building venv in $destdir$prefix"
  "$python" -m venv "$destdir$prefix"
  "$destdir$prefix/bin/python" -m pip install -q --upgrade pip
  "$destdir$prefix/bin/python" -m pip install -q "$repo"
  install -m 0644 "$repo/README.md" "$destdir$prefix/README.md" 2>/dev/null || true
fi

install -d -m 0755 "$unitdir" "$confdir"
install -m 0644 "$here/edgectl.service" "$unitdir/edgectl.service"
if [ "$with_sim" = 1 ]; then
  install -m 0644 "$here/hil-sim.service" "$unitdir/hil-sim.service"
fi

if [ -e "$confdir/site.toml" ]; then
  echo "install.sh: keeping existing $confdir/site.toml"
else
  install -m 0644 "$config" "$confdir/site.toml"
  echo "install.sh: installed $config as $confdir/site.toml: edit it for this site"
fi

if [ -x "$destdir$prefix/bin/edgectl" ]; then
  "$destdir$prefix/bin/edgectl" check-config "$confdir/site.toml"
fi

if [ "$start" = 1 ]; then
  systemctl daemon-reload
  if [ "$with_sim" = 1 ]; then systemctl enable --now hil-sim.service; fi
  systemctl enable --now edgectl.service
  echo "install.sh: started; see: systemctl status edgectl ; $prefix/bin/edgectl status --state-dir /var/lib/edgectl"
else
  echo "install.sh: files in place under '${destdir:-/}' (not started)"
fi
