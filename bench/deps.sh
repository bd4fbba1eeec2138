#!/bin/sh
# Installs what `make bench*` needs (Debian 12), only what is missing, like
# scripts/deps.sh does for building and testing.
#
#   wrk                    the HTTP load generator
#   libnginx-mod-http-lua  the Lua variant (access_by_lua, lua_shared_dict)
#   lua-nginx-redis        resty.redis (Debian installs it as "nginx.redis")
#   libbenchmark-dev       Google Benchmark, for bench/micro
#   redis-server/-tools    records, redis-cli --pipe, redis-benchmark
#   the module's build dependencies (nginx, nginx-dev, hiredis, OpenSSL)
set -e
need=""
for p in build-essential nginx nginx-dev libhiredis-dev libssl-dev \
         redis-server redis-tools wrk libnginx-mod-http-lua lua-nginx-redis \
         libbenchmark-dev perl curl util-linux procps iproute2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || need="$need $p"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "bench: missing packages:$need (run as root, or: sudo apt-get install$need)" >&2
    exit 1
fi
echo "bench: installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $need >/dev/null
