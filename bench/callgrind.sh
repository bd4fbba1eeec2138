#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/callgrind.sh BUILD_DIR [REQUESTS]: instructions per request of the
# cached-key path, bare nginx against the module, under callgrind.
#
# One nginx per variant (master_process off, daemon off: a single process
# under valgrind), redis-server on a free loopback port with the bench's
# good key.  Instrumentation is off at start; after a warm-up (the first
# request reads the key from Redis and caches it) it is switched on
# (callgrind_control -i on), REQUESTS requests go over one keep-alive
# connection (curl URL globbing), then the profile is dumped.  Prints
# instructions per request for each variant, the difference, and the
# module's own functions (inclusive and self) per request.
#
# Environment: CG_VARIANTS ("bare module"), CG_OUT (output directory,
# BUILD/bench/callgrind), CG_CONF_EXTRA (extra directives in the module's
# location, e.g. 'api_key_strip on;').
#
# valgrind's CPU lacks SHA-NI, so OpenSSL takes its SIMD code path for
# SHA-256 there: the SHA-256 share is larger than natively.
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
N=${2:-2000}
MODULE=$BUILD/ngx_http_api_key_module.so
OUT=${CG_OUT:-$BUILD/bench/callgrind}
VARIANTS=${CG_VARIANTS:-bare module}
EXTRA=${CG_CONF_EXTRA:-}

. "$BENCH/lib.sh"

for t in valgrind callgrind_control callgrind_annotate nginx redis-server redis-cli curl; do
    command -v "$t" >/dev/null || die "$t not found"
done
[ -f "$MODULE" ] || die "no module at $MODULE (make module)"

bench_init "$OUT.work"
W=$BENCH_WORK
mkdir -p "$OUT"

free_port REDIS_PORT
start_redis "$W/redis" "$REDIS_PORT" 1

GOOD=$(printf 'ak_bench_%031d' 4321)
redis-cli -p "$REDIS_PORT" HSET "apikey:$(printf %s "$GOOD" | sha256sum | cut -c1-64)" \
    owner client4321 plan pro >/dev/null

run_one() {
    local v=$1 dir=$W/$1 port conf vpid i out
    free_port port
    mkdir -p "$dir/logs" "$dir/tmp"
    chmod 777 "$dir/tmp"
    conf=$dir/nginx.conf
    {
        [ "$v" = bare ] || echo "load_module $MODULE;"
        cat <<EOF
master_process off;
daemon         off;
worker_processes 1;
pid            $dir/nginx.pid;
error_log      $dir/logs/error.log warn;
events { worker_connections 64; }
http {
    include $BENCH/conf/http-common.inc;
EOF
        if [ "$v" != bare ]; then
            echo "    api_key_zone  keys:8m ttl=600s negative_ttl=5s;"
            echo "    api_key_redis redis://127.0.0.1:$REDIS_PORT timeout=5s;"
        fi
        echo "    server {"
        echo "        listen 127.0.0.1:$port;"
        echo "        location / {"
        [ "$v" = bare ] || echo "            api_key keys; $EXTRA"
        echo "            empty_gif;"
        echo "        }"
        echo "    }"
        echo "}"
    } >"$conf"

    valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$dir/cg.%p" \
        nginx -p "$dir" -c "$conf" >"$dir/valgrind.log" 2>&1 &
    vpid=$!
    BENCH_PIDS="$BENCH_PIDS other:$vpid"

    for i in $(seq 300); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    # warm-up: the key is read from Redis and cached
    for i in 1 2 3; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $GOOD" \
              "http://127.0.0.1:$port/")" = 200 ] || { sleep 0.5; continue; }
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $GOOD" \
          "http://127.0.0.1:$port/")" = 200 ] || die "$v: the good key does not get 200"

    callgrind_control -i on "$vpid" >/dev/null
    curl -s -H "X-API-Key: $GOOD" "http://127.0.0.1:$port/[1-$N]" >/dev/null
    callgrind_control -d "$v" "$vpid" >/dev/null
    callgrind_control -i off "$vpid" >/dev/null
    # the profile is dumped; nginx under valgrind may not act on SIGTERM
    kill -KILL "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    forget_pid "$vpid"

    out=$(ls "$dir"/cg.*.1 2>/dev/null | head -n 1)
    [ -n "$out" ] || die "$v: no callgrind dump"
    cp "$out" "$OUT/$v.callgrind"
}

for v in $VARIANTS; do
    run_one "$v"
done

total() {   # callgrind file -> total Ir
    sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -n 1
}

for v in $VARIANTS; do
    t=$(total "$OUT/$v.callgrind")
    printf '%-8s %10.0f instructions/request (%s over %s requests)\n' \
        "$v" "$(awk -v t="$t" -v n="$N" 'BEGIN { print t / n }')" "$t" "$N"
done

if [ -f "$OUT/bare.callgrind" ] && [ -f "$OUT/module.callgrind" ]; then
    awk -v a="$(total "$OUT/module.callgrind")" -v b="$(total "$OUT/bare.callgrind")" -v n="$N" \
        'BEGIN { printf "module - bare: %.0f instructions/request\n", (a - b) / n }'
fi

if [ -f "$OUT/module.callgrind" ]; then
    echo
    echo "module: inclusive instructions/request of its functions and of what they call"
    callgrind_annotate --inclusive=yes --threshold=100 "$OUT/module.callgrind" 2>/dev/null \
        | awk -v n="$N" '/^ *[0-9,]+ .*[a-z_]+/ {
              ir = $1; gsub(",", "", ir); $1 = ""; sub(/^ +/, "");
              if ($0 ~ /api_key|ak_|ak::|sha256|SHA256|sha2|digest|shmtx|memcpy|memcmp|pnalloc|palloc|cleanup_add|strncasecmp|strlchr/)
                  printf "%10.1f  %s\n", ir / n, $0 }' | head -n 60
    echo
    echo "module: self instructions/request, top 40"
    callgrind_annotate --threshold=100 "$OUT/module.callgrind" 2>/dev/null \
        | awk -v n="$N" '/^ *[0-9,]+ .*[a-z_]+/ {
              ir = $1; gsub(",", "", ir); $1 = ""; sub(/^ +/, "");
              printf "%10.1f  %s\n", ir / n, $0 }' | head -n 40
fi
