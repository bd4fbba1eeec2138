#!/bin/sh
# Installs what building, running and testing need (Debian 12), if missing,
# and the packages given as arguments (bench/deps.sh adds its own).
set -e
need=""
for p in build-essential nginx nginx-dev libhiredis-dev libssl-dev \
         redis-server libgtest-dev perl curl gdb python3-grpcio "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || need="$need $p"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing packages:$need (run as root, or: sudo apt-get install$need)" >&2
    exit 1
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $need >/dev/null
