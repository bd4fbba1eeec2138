#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs what building, running and testing need (Debian 12), if missing,
# and the packages given as arguments (bench/deps.sh adds its own).
#   openssl                 the CLI: the tests make their certificates with it
#   libio-socket-ssl-perl   the test harness's TLS connections to redis-server
#   libnet-dns-perl         the test DNS server (Net::DNS::Nameserver)
#   redis-tools             redis-cli (also a dependency of redis-server)
#   iproute2, util-linux    ip and unshare: a test in a network namespace of
#                           its own (t/75)
set -e
need=""
for p in build-essential nginx nginx-dev libhiredis-dev libssl-dev \
         redis-server redis-tools libgtest-dev perl curl gdb openssl \
         libio-socket-ssl-perl libnet-dns-perl iproute2 util-linux \
         python3-grpcio "$@"; do
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
