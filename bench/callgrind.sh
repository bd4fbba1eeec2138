#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/callgrind.sh BUILD_DIR [REQUESTS]: `make bench-callgrind`.
# Instructions per request of the cached-key path, bare nginx against the
# module, under callgrind, for three cases:
#
#   plain    a cached key (owner, plan)
#   rules    a cached key with rate (1000000/s: never limited here), 10 CIDRs
#            in ips and 10 referrers rules, the request passing them all
#            (its address and Referer match the last rule of each)
#   limited  a rate-limited cached key (rate 1/h, burst 0): every request
#            measured is answered 429
#   quota    (not in the default set: CG_VARIANTS="bare quota") a cached key
#            with a quota and no rate (1000000000/month: never exceeded
#            here), counts leased 100 at a time, the next lease fetched in
#            the background
#   rated    (not in the default set: CG_VARIANTS="bare rated") a cached key
#            with owner, plan and a rate (1000000/s: never limited here),
#            the usual production key without address or Referer rules
#   ratequota (not in the default set either) a cached key with a rate
#            (1000000/s, never limited here) and that quota
#   rulesmix (not in the default set) the rules key and a second one of
#            the same shape (another owner), taking turns, request after
#            request: the second is picked so that both fall in the same
#            entry of the worker's kept views (the hash's second byte, its
#            low 4 bits: ngx_http_api_key_view() in the handler), so every
#            request views its record anew (the rules case views it once)
#
# One nginx per variant (master_process off, daemon off: a single process
# under valgrind), redis-server on a free loopback port with the keys.
# Instrumentation is off at start; after a warm-up (the first request reads
# the key from Redis and caches it) it is switched on (callgrind_control
# -i on), REQUESTS requests go over one keep-alive connection (curl URL
# globbing), then the profile is dumped.  Every variant's requests carry
# the same headers (X-API-Key, Referer), bare nginx's included.
#
# Prints, per case: instructions per request, the difference over bare,
# the inclusive cost of SHA-256 (ak_hasher_digest and what it calls) and
# the difference without it, then the module's functions (inclusive and
# self) per request; and replaces the "callgrind" section of
# bench/RESULTS.md (CG_RESULTS=- : none) with the table.
#
# Environment: CG_VARIANTS ("bare plain rules limited"), CG_OUT (output
# directory, BUILD/bench/callgrind), CG_CONF_EXTRA (extra directives in
# the module's location, e.g. 'api_key_strip on;'), CG_RESULTS (the file
# written, bench/RESULTS.md).
#
# valgrind's CPU lacks SHA-NI, so OpenSSL takes its SIMD code path for
# SHA-256 there: the SHA-256 share is larger than natively, hence the
# figure without it.
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
N=${2:-2000}
MODULE=$BUILD/ngx_http_api_key_module.so
OUT=${CG_OUT:-$BUILD/bench/callgrind}
VARIANTS=${CG_VARIANTS:-bare plain rules limited}
EXTRA=${CG_CONF_EXTRA:-}
RESULTS=${CG_RESULTS:-$BENCH/RESULTS.md}
REFERER='https://www.example.com/page'
IPS10='192.0.2.0/24,198.51.100.0/24,203.0.113.0/24,10.1.0.0/16,10.2.0.0/16,172.16.0.0/12,2001:db8::/32,2001:db8:1::/48,fd00::/8,127.0.0.0/8'
REFS10='app.example.com,*.shop.example.com,partner.example.net,*.cdn.example.org,www.example.io,dashboard.example.dev,*.eu.example.com,*.us.example.com,admin.example.co,*.example.com'


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

key_of() {   # variant -> its key
    case $1 in
        rules|rulesmix) printf 'ak_bench_%031d' 4322 ;;
        limited) printf 'ak_bench_%031d' 4323 ;;
        quota)   printf 'ak_bench_%031d' 4324 ;;
        ratequota) printf 'ak_bench_%031d' 4325 ;;
        rated)   printf 'ak_bench_%031d' 4326 ;;
        *)       printf 'ak_bench_%031d' 4321 ;;
    esac
}
code_of() {  # variant -> the status of its measured requests
    case $1 in
        limited) echo 429 ;;
        *)       echo 200 ;;
    esac
}
rname() {
    echo "apikey:$(printf %s "$(key_of "$1")" | sha256sum | cut -c1-64)"
}
redis-cli -p "$REDIS_PORT" HSET "$(rname plain)" owner client4321 plan pro >/dev/null
redis-cli -p "$REDIS_PORT" HSET "$(rname rules)" owner client4322 plan pro \
    rate 1000000/s burst 1000 ips "$IPS10" referrers "$REFS10" >/dev/null
redis-cli -p "$REDIS_PORT" HSET "$(rname limited)" owner client4323 plan pro \
    rate 1/h burst 0 >/dev/null
redis-cli -p "$REDIS_PORT" HSET "$(rname quota)" owner client4324 plan pro \
    quota 1000000000/month >/dev/null
redis-cli -p "$REDIS_PORT" HSET "$(rname ratequota)" owner client4325 plan pro \
    rate 1000000/s burst 1000 quota 1000000000/month >/dev/null
redis-cli -p "$REDIS_PORT" HSET "$(rname rated)" owner client4326 plan pro \
    rate 1000000/s burst 1000 >/dev/null

# rulesmix's second key: the first from 4400 on in the rules key's entry
# of the worker's kept views
view_slot() { local h; h=$(printf %s "$1" | sha256sum); echo $(( 16#${h:2:2} & 15 )); }
MIX_KEY=
for i in $(seq 4400 4999); do
    k=$(printf 'ak_bench_%031d' "$i")
    if [ "$(view_slot "$k")" = "$(view_slot "$(key_of rules)")" ]; then
        MIX_KEY=$k
        break
    fi
done
[ -n "$MIX_KEY" ] || die "no second key for rulesmix"
redis-cli -p "$REDIS_PORT" HSET \
    "apikey:$(printf %s "$MIX_KEY" | sha256sum | cut -c1-64)" \
    owner client4400 plan pro rate 1000000/s burst 1000 ips "$IPS10" \
    referrers "$REFS10" >/dev/null

run_one() {
    local v=$1 dir=$W/$1 port conf vpid i out key want
    key=$(key_of "$v")
    want=$(code_of "$v")
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
    # warm-up: the key is read from Redis and cached (the limited key
    # spends its one request)
    for i in 1 2 3; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" \
              -H "Referer: $REFERER" "http://127.0.0.1:$port/")" = "$want" ] \
            || { sleep 0.5; continue; }
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" \
          -H "Referer: $REFERER" "http://127.0.0.1:$port/")" = "$want" ] \
        || die "$v: the key does not get $want"

    if [ "$v" = rulesmix ]; then
        # the second key cached too; then the two by turns, one
        # keep-alive connection (a curl config of N transfers)
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $MIX_KEY" \
              -H "Referer: $REFERER" "http://127.0.0.1:$port/")" = 200 ] \
            || die "$v: the second key does not get 200"
        for i in $(seq "$N"); do
            if [ $(( i % 2 )) = 1 ]; then k=$key; else k=$MIX_KEY; fi
            printf 'url = "http://127.0.0.1:%s/%s"\nheader = "X-API-Key: %s"\n' \
                "$port" "$i" "$k"
            printf 'header = "Referer: %s"\noutput = "/dev/null"\n' "$REFERER"
            printf 'write-out = "%%{http_code}\\n"\nsilent\n'
            [ "$i" = "$N" ] || printf 'next\n'
        done >"$dir/curl.conf"
    fi

    callgrind_control -i on "$vpid" >/dev/null
    if [ "$v" = rulesmix ]; then
        curl -K "$dir/curl.conf" >"$dir/codes"
    else
        curl -s -H "X-API-Key: $key" -H "Referer: $REFERER" \
            -w '%{http_code}\n' -o /dev/null "http://127.0.0.1:$port/[1-$N]" \
            >"$dir/codes"
    fi
    [ "$(sort -u "$dir/codes")" = "$want" ] \
        || die "$v: not every measured request got $want: $(sort "$dir/codes" | uniq -c | tr '\n' ' ')"
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

# inclusive Ir of the functions whose name matches $2 (an awk regex), the
# outermost ones only: callgrind_annotate --inclusive lists callers and
# callees alike, so the largest match is taken (ak_hasher_digest contains
# the SHA-256 code it calls)
incl_of() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null \
        | awk -v re="$2" '/^ *[0-9,]+ / && $0 ~ re {
              ir = $1; gsub(",", "", ir); if (ir + 0 > m) m = ir + 0 }
              END { print m + 0 }'
}

# the module's functions (inclusive or self) per request, top $3
module_funcs() {
    local f=$1 incl=$2 top=$3
    callgrind_annotate --inclusive="$incl" --threshold=100 "$f" 2>/dev/null \
        | awk -v n="$N" '/^ *[0-9,]+ .*ngx_http_api_key_module\.so/ {
              ir = $1; gsub(",", "", ir); $1 = ""; sub(/^ +/, "");
              sub(/^\([ 0-9.]+%\) +/, ""); sub(/ +\[[^]]*\]$/, "");
              sub(/^[^:]*:/, "");
              printf "%10.1f  %s\n", ir / n, $0 }' | head -n "$top"
}

per_req() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%.0f", t / n }'; }

declare -A TOT SHA
for v in $VARIANTS; do
    TOT[$v]=$(total "$OUT/$v.callgrind")
    SHA[$v]=$(incl_of "$OUT/$v.callgrind" 'ak_hasher_digest')
done

report=$(mktemp)
trap 'rm -f "$report"; bench_cleanup' EXIT
{
    printf '| case | instructions/request | over bare | SHA-256 (inclusive) | over bare without SHA-256 |\n'
    printf '|---|---|---|---|---|\n'
    for v in $VARIANTS; do
        t=$(per_req "${TOT[$v]}")
        if [ "$v" = bare ] || [ -z "${TOT[bare]:-}" ]; then
            printf '| %s | %s | | | |\n' "$v" "$t"
            continue
        fi
        over=$(per_req "$(( ${TOT[$v]} - ${TOT[bare]} ))")
        sha=$(per_req "${SHA[$v]}")
        printf '| %s | %s | %+d | %s | %+d |\n' "$v" "$t" "$over" "$sha" "$(( over - sha ))"
    done
    for v in $VARIANTS; do
        [ "$v" = bare ] && continue
        echo
        echo "$v: the module's functions, instructions/request, inclusive (top 15):"
        echo
        echo '```'
        module_funcs "$OUT/$v.callgrind" yes 15
        echo '```'
        echo
        echo "$v: self (top 12):"
        echo
        echo '```'
        module_funcs "$OUT/$v.callgrind" no 12
        echo '```'
    done
} >"$report"
cat "$report"

[ "$RESULTS" = - ] && exit 0
md=$(mktemp)
{
    echo "## Instructions per request (\`make bench-callgrind\`)"
    echo
    echo "bench/callgrind.sh: one nginx process under callgrind per case, $N requests over one"
    echo "keep-alive connection after a warm-up (the key cached), each with X-API-Key and Referer"
    echo "headers, bare nginx's too; instructions counted (deterministic, one round). Cases: plain"
    echo "(a cached key: owner, plan), rules (a cached key with rate 1000000/s, 10 CIDRs in ips,"
    echo "10 referrers rules, the request matching the last of each), limited (a cached key with"
    echo "rate 1/h burst 0: every request 429); when asked (CG_VARIANTS): rated (owner, plan, rate"
    echo "1000000/s), quota (1000000000/month, leased 100 at a time), ratequota (both), rulesmix"
    echo "(the rules key and another of its shape in the same entry of the worker's kept views, by"
    echo "turns: every request views its record anew, where the rules case views it once). valgrind's"
    echo "CPU has no SHA-NI, so SHA-256 costs far"
    echo "more here than natively: \"without SHA-256\" subtracts the inclusive cost of"
    echo "ak_hasher_digest. Goal (issue 17): at most 1,000 over bare without SHA-256 for plain and"
    echo "rules."
    echo
    BENCH_TOP=$BENCH_TOP machine_info
    echo "- valgrind: $(valgrind --version)"
    echo
    cat "$report"
} >"$md"
replace_section "$RESULTS" callgrind "$md"
rm -f "$md"
echo "bench/callgrind.sh: section callgrind of $RESULTS replaced" >&2
