#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/run.sh BUILD_DIR: `make bench`.
#
# Compares, on loopback with wrk, nginx answering with empty_gif behind
# several ways of checking an API key: none (bare), NGINX's static map,
# auth_request to a validator, a Lua implementation (lua-nginx-module +
# resty.redis), and this module (cached key, cached key with rules, keys that
# miss the cache, a flood of unknown keys).  Then the rate limiter's accuracy
# (burst=0), shared memory per key
# (bench/tools/ak_sizes.cpp) and the core's micro-benchmarks (bench/micro.sh).
# Prints the table and rewrites the "main" and "micro" sections of
# bench/RESULTS.md (the "revoke" section, from `make bench-revoke`, stays).
#
# Set-up: one nginx per variant, 1 worker pinned to CPU 0
# (worker_cpu_affinity); wrk pinned to CPU 1, and redis-server on CPU 1 too,
# so that the nginx worker has CPU 0 to itself.  Every variant: the same wrk
# threads/connections, keep-alive, a plain-request check (good key 200, bad
# key 401/403), a warm-up, then the measured run; worker CPU time from
# /proc/<pid>/stat over the measured run.
#
# Environment: BENCH_DURATION (5 s), BENCH_WARMUP (1 s), BENCH_THREADS (1),
# BENCH_CONNS (32), BENCH_ROUNDS (3: every variant is measured once per
# round, the rounds one after another; the table shows the round with the
# median requests/s), BENCH_MISS_KEYS (600000), BENCH_SKIP_MICRO=1,
# BENCH_ONLY="slug ..." (a subset of the variants, for debugging).
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
MODULE=$BUILD/ngx_http_api_key_module.so
SIZES=$BUILD/bench/ak_sizes
RESULTS=${BENCH_RESULTS:-$BENCH/RESULTS.md}

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
THREADS=${BENCH_THREADS:-1}
CONNS=${BENCH_CONNS:-32}
MISS_KEYS=${BENCH_MISS_KEYS:-600000}
ROUNDS=${BENCH_ROUNDS:-3}
MAP_KEYS=10000

. "$BENCH/lib.sh"

[ -f "$MODULE" ] || die "no module at $MODULE (make module)"
[ -x "$SIZES" ] || die "no $SIZES (make bench builds it)"
for t in wrk nginx redis-server redis-cli redis-benchmark taskset curl perl; do
    command -v "$t" >/dev/null || die "$t not found (make bench-deps)"
done
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] \
    || die "no lua-nginx-module (apt-get install libnginx-mod-http-lua)"
[ -f /usr/share/lua/5.1/nginx/redis.lua ] || [ -f /usr/share/lua/5.1/resty/redis.lua ] \
    || die "no resty.redis (apt-get install lua-nginx-redis)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (nginx on CPU 0, wrk on CPU 1)"

T_START=$(date +%s)
bench_init "$BUILD/bench/run"
W=$BENCH_WORK

# --- Redis and the key records ------------------------------------------------

free_port REDIS_PORT
start_redis "$W/redis" "$REDIS_PORT" 1

KEY_FMT='ak_bench_%031d'                        # 40 characters
GOOD=$(printf "$KEY_FMT" 4321)                  # in the map, and in Redis
RULES=$(printf "$KEY_FMT" 20001)                # in Redis only, with rules
BAD=ak_bench_not_a_key_000000000000000000000    # nowhere
MISS_FMT='ak_miss_%032d'
MISS_CHECK=$(printf "$MISS_FMT" $((MISS_KEYS - 1)))   # never walked by wrk
REFERER='https://app.example.com/dashboard'

sha() { printf %s "$1" | sha256sum | cut -c1-64; }

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# HGETALL commands Redis has answered so far
hgetall_calls() {
    rcli INFO commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_hgetall:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}

rcli HSET "apikey:$(sha "$GOOD")" owner client4321 plan pro >/dev/null
rcli HSET "apikey:$(sha "$RULES")" owner client20001 plan pro \
    ips 127.0.0.0/8 referrers '*.example.com' rate 100000000/s burst 1000000 \
    >/dev/null

note "creating $MISS_KEYS key records for the cache-miss variants"
perl "$BENCH/tools/gen_keys.pl" resp "$MISS_FMT" 0 "$MISS_KEYS" \
        owner 'customer-%d' plan pro \
    | rcli --pipe >"$W/pipe.log" 2>&1 || { cat "$W/pipe.log" >&2; die "redis-cli --pipe failed"; }
[ "$(rcli DBSIZE)" -eq $((MISS_KEYS + 2)) ] || die "expected $((MISS_KEYS + 2)) records, Redis has $(rcli DBSIZE)"

perl "$BENCH/tools/gen_keys.pl" map "$KEY_FMT" 0 "$MAP_KEYS" >"$W/map-keys.inc"
grep -q "\"$GOOD\"" "$W/map-keys.inc" || die "the good key is not in the map"

# Redis round trip, for the cache-miss rows: HGETALL of a record like theirs,
# from CPU 0 (where nginx runs) to redis-server on CPU 1
redis_rtt() {   # CONNECTIONS -> "p50_ms p99_ms rps"
    taskset -c 0 redis-benchmark -p "$REDIS_PORT" -n 20000 -c "$1" --csv \
        HGETALL "apikey:$(sha "$MISS_CHECK")" 2>/dev/null \
        | awk -F'","' 'NR == 2 { print $5, $7, $2 }'
}
read -r RTT1_P50 RTT1_P99 RTT1_RPS <<<"$(redis_rtt 1)"
read -r RTTC_P50 RTTC_P99 RTTC_RPS <<<"$(redis_rtt "$CONNS")"
[ -n "$RTT1_P50" ] && [ -n "$RTTC_P50" ] || die "redis-benchmark gave no figures"

# --- one variant, one round -----------------------------------------------------

# the Prometheus value of a metric line (exact label set), 0 when absent
metric() {
    awk -v m="$2" 'index($0, m " ") == 1 { print $NF; found = 1 }
                   END { if (!found) print 0 }' "$1"
}

ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# the variants: slug -> label, configuration, wrk mode, expected answers;
# set_variant also sets the headers wrk sends (V_HDR) and the checks' curl
# options (V_GOOD: must get 200; V_BAD: must get 401/403, empty: no check;
# V_BAD2: must get 403, empty: no check)
VARIANTS="bare map auth_request lua module module_nousage module_verify module_rules lua_miss module_miss lua_flood module_flood"
set_variant() {
    local G=(-H "X-API-Key: $GOOD") B=(-H "X-API-Key: $BAD")
    V_HDR=("${G[@]}"); V_GOOD=("${G[@]}"); V_BAD=("${B[@]}"); V_BAD2=()
    V_MODE=static; V_EXPECT=ok; V_PATH=
    case $1 in
    bare)         V_LABEL="bare nginx (no key check)"; V_CONF=bare.conf; V_BAD=() ;;
    map)          V_LABEL="static map, 10,000 keys (NGINX recipe)"; V_CONF=map.conf ;;
    auth_request) V_LABEL="auth_request to a validator (keepalive upstream)"; V_CONF=auth_request.conf ;;
    lua)          V_LABEL="Lua: FFI SHA-256 + shared dict + resty.redis, cached key"; V_CONF=lua.conf ;;
    module)       V_LABEL="this module, cached key"; V_CONF=module.conf ;;
    module_nousage) V_LABEL="this module, cached key, usage_flush=off"; V_CONF=module_nousage.conf ;;
    module_verify) V_LABEL="this module, api_key_verify: POST {\"key\": ...} of a cached key"; V_CONF=module.conf
                  V_MODE=verify; V_PATH=verify; V_HDR=(); V_BAD=()
                  V_GOOD=(-X POST -H "Content-Type: application/json" --data-binary "{\"key\":\"$GOOD\"}") ;;
    module_rules) V_LABEL="this module, cached key + ips, referrers, rate rules"; V_CONF=module.conf
                  V_HDR=(-H "X-API-Key: $RULES" -H "Referer: $REFERER"); V_GOOD=("${V_HDR[@]}")
                  V_BAD2=(-H "X-API-Key: $RULES" -H "Referer: https://evil.test/") ;;
    lua_miss)     V_LABEL="Lua, keys that miss the cache (a Redis read each)"; V_CONF=lua.conf
                  V_MODE=walk; V_HDR=(); V_GOOD=(-H "X-API-Key: $MISS_CHECK") ;;
    module_miss)  V_LABEL="this module, keys that miss the cache (a Redis read each)"; V_CONF=module.conf
                  V_MODE=walk; V_HDR=(); V_GOOD=(-H "X-API-Key: $MISS_CHECK") ;;
    lua_flood)    V_LABEL="Lua, flood of unknown keys"; V_CONF=lua.conf; V_MODE=flood; V_EXPECT=denied; V_HDR=() ;;
    module_flood) V_LABEL="this module, flood of unknown keys"; V_CONF=module.conf; V_MODE=flood; V_EXPECT=denied; V_HDR=() ;;
    *) die "no variant $1" ;;
    esac
}

# run_variant SLUG ROUND: writes $W/res/SLUG.ROUND, one line:
#   "CHECKFAILED <what>"  or
#   "rps=.. p50=.. p99=.. cpu=.. rcpu=.. req=.. non2xx=.. errs=.. reps=..
#    hits=.. misses=.. rsum=.. rcnt=.." (the last four from api_key_metrics)
run_variant() {
    local slug=$1 round=$2
    local dir=$W/$slug.$round res=$W/res/$slug.$round
    local port port2 url worker good bad bad2 checks="" has_metrics=0
    local line start count t0 t1 r0 r1 h0 h1

    set_variant "$slug"
    note "round $round, $slug: $V_LABEL"

    free_port port
    free_port port2
    mkdir -p "$dir/logs" "$dir/tmp" "$W/res"
    chmod 777 "$dir/tmp"
    cp "$W/map-keys.inc" "$dir/"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@PORT2@#$port2#g" \
        -e "s#@REDIS_PORT@#$REDIS_PORT#g" -e "s#@MODULE@#$MODULE#g" \
        -e "s#@BENCH@#$BENCH#g" "$BENCH/conf/$V_CONF" >"$dir/nginx.conf"
    if grep -q '@[A-Z0-9]*@' "$dir/nginx.conf"; then
        die "unresolved placeholder in $V_CONF"
    fi
    if grep -q api_key_metrics "$dir/nginx.conf"; then
        has_metrics=1
    fi

    start_nginx "$dir" "$dir/nginx.conf" "$port"
    set -- $NGINX_WORKERS
    [ $# -eq 1 ] || die "$slug: expected 1 worker, found $#"
    worker=$1
    taskset -p "$worker" | grep -q 'mask: 1$' || die "$slug: worker not pinned to CPU 0"
    url=http://127.0.0.1:$port/$V_PATH

    # the module: wait until the worker's Redis connection is up
    if [ "$has_metrics" = 1 ]; then
        local i up=0
        for i in $(seq 100); do
            curl -s "http://127.0.0.1:$port/metrics" >"$dir/m.txt" || true
            if [ "$(metric "$dir/m.txt" 'api_key_redis_connected{connection="commands"}')" = 1 ]; then
                up=1
                break
            fi
            sleep 0.05
        done
        [ "$up" = 1 ] || die "$slug: the module did not connect to Redis"
    fi

    # the checks: plain requests
    good=$(http_code "$url" "${V_GOOD[@]}" || true)
    [ "$good" = 200 ] || checks="good key got $good"
    if [ ${#V_BAD[@]} -gt 0 ]; then
        bad=$(http_code "$url" "${V_BAD[@]}" || true)
        if [ "$bad" != 401 ] && [ "$bad" != 403 ]; then
            checks="${checks:+$checks, }bad key got $bad"
        fi
    fi
    if [ ${#V_BAD2[@]} -gt 0 ]; then
        bad2=$(http_code "$url" "${V_BAD2[@]}" || true)
        [ "$bad2" = 403 ] || checks="${checks:+$checks, }good key with a wrong Referer got $bad2"
    fi
    if [ -n "$checks" ]; then
        note "$slug: CHECK FAILED: $checks"
        echo "CHECKFAILED $checks" >"$res"
        stop_nginx "$NGINX_PID"
        return 0
    fi

    wrk_run() {     # SECONDS START COUNT -> the WRK line
        env WRK_MODE="$V_MODE" WRK_THREADS="$THREADS" WRK_KEY_FMT="$MISS_FMT" \
            WRK_BODY="{\"key\":\"$GOOD\"}" \
            WRK_WALK_START="$2" WRK_WALK_COUNT="$3" \
            taskset -c 1 wrk -t"$THREADS" -c"$CONNS" -d"$1"s --timeout 5s \
                -s "$BENCH/wrk/bench.lua" "${V_HDR[@]}" "$url" \
            | grep '^WRK ' || die "$slug: wrk failed"
    }

    # warm-up; keys that miss: the warm-up walks the first keys, the
    # measured run the ones after (the check's key is the last one, never
    # walked)
    start=0
    count=$((MISS_KEYS - 1))
    line=$(wrk_run "$WARMUP" "$start" "$count")
    if [ "$V_MODE" = walk ]; then
        start=$(( $(field requests "$line") + 1000 ))
        count=$((MISS_KEYS - 1 - start))
        [ "$count" -gt 1000 ] || die "$slug: the warm-up used up the keys (raise BENCH_MISS_KEYS)"
    fi

    if [ "$has_metrics" = 1 ]; then
        curl -s "http://127.0.0.1:$port/metrics" >"$dir/m0.txt"
    fi
    h0=$(hgetall_calls)
    t0=$(cpu_ns "$worker")
    r0=$(cpu_ns "$REDIS_PID")
    line=$(wrk_run "$DURATION" "$start" "$count")
    t1=$(cpu_ns "$worker")
    r1=$(cpu_ns "$REDIS_PID")
    h1=$(hgetall_calls)
    if [ "$has_metrics" = 1 ]; then
        curl -s "http://127.0.0.1:$port/metrics" >"$dir/m1.txt"
    fi

    local req lk='zone="keys",result=' hits=0 misses=0 rsum=0 rcnt=0 uw=0 ud=0
    req=$(field requests "$line")
    [ "$req" -gt 0 ] || die "$slug: no requests"
    if [ "$has_metrics" = 1 ]; then
        hits=$(( $(metric "$dir/m1.txt" "api_key_cache_lookups_total{${lk}\"hit\"}") \
               - $(metric "$dir/m0.txt" "api_key_cache_lookups_total{${lk}\"hit\"}") ))
        misses=$(( $(metric "$dir/m1.txt" "api_key_cache_lookups_total{${lk}\"miss\"}") \
                 - $(metric "$dir/m0.txt" "api_key_cache_lookups_total{${lk}\"miss\"}") ))
        rsum=$(awk -v a="$(metric "$dir/m1.txt" 'api_key_redis_read_seconds_sum{zone="keys"}')" \
                   -v b="$(metric "$dir/m0.txt" 'api_key_redis_read_seconds_sum{zone="keys"}')" \
                   'BEGIN { print a - b }')
        rcnt=$(( $(metric "$dir/m1.txt" 'api_key_redis_read_seconds_count{zone="keys"}') \
               - $(metric "$dir/m0.txt" 'api_key_redis_read_seconds_count{zone="keys"}') ))
        uw=$(( $(metric "$dir/m1.txt" 'api_key_usage_writes_total{zone="keys"}') \
             - $(metric "$dir/m0.txt" 'api_key_usage_writes_total{zone="keys"}') ))
        ud=$(( $(metric "$dir/m1.txt" 'api_key_usage_dropped_total{zone="keys"}') \
             - $(metric "$dir/m0.txt" 'api_key_usage_dropped_total{zone="keys"}') ))
        if [ "$slug" = module ] && [ ! -f "$W/metrics-zone.txt" ]; then
            cp "$dir/m0.txt" "$W/metrics-zone.txt"     # the 128m zone's slots
        fi
        if [ "$V_MODE" = walk ]; then
            local total free ents
            total=$(metric "$dir/m1.txt" 'api_key_cache_slots{zone="keys",state="total"}')
            free=$(metric "$dir/m1.txt" 'api_key_cache_slots{zone="keys",state="free"}')
            ents=$(( $(metric "$dir/m1.txt" 'api_key_cache_entries{zone="keys",kind="key"}') \
                   + $(metric "$dir/m1.txt" 'api_key_cache_entries{zone="keys",kind="negative"}') ))
            echo "$ents $((total - free))" >"$W/walk-slots.txt"
        fi
    fi
    if grep -q '\[\(emerg\|alert\|crit\|error\)\]' "$dir/logs/error.log"; then
        grep -m1 '\[\(emerg\|alert\|crit\|error\)\]' "$dir/logs/error.log" \
            | cut -c1-200 >"$W/res/$slug.errlog"
    fi
    stop_nginx "$NGINX_PID"

    echo "rps=$(field rps "$line") p50=$(field p50_us "$line") p99=$(field p99_us "$line")" \
         "cpu=$(awk -v d=$((t1 - t0)) -v n="$req" 'BEGIN { printf "%.2f", d / 1000 / n }')" \
         "rcpu=$(awk -v d=$((r1 - r0)) -v n="$req" 'BEGIN { printf "%.2f", d / 1000 / n }')" \
         "req=$req non2xx=$(field non2xx "$line") errs=$(field sock_errors "$line")" \
         "reps=$(field repeats "$line") hits=$hits misses=$misses rsum=$rsum rcnt=$rcnt" \
         "hgetall=$((h1 - h0)) uw=$uw ud=$ud" \
         >"$res"
    note "  $(cat "$res")"
}

# --- the rounds: every variant once per round, the rounds one after another, so
# that a noisy moment on the machine spreads over the variants -------------------

SLUGS=${BENCH_ONLY:-$VARIANTS}
for round in $(seq "$ROUNDS"); do
    for slug in $SLUGS; do
        run_variant "$slug" "$round"
    done
done

# --- latency at one connection: what a cache miss adds to a request ---------------
# At 32 connections on a 2-vCPU machine the p99 is mostly queueing behind other
# requests; with one request at a time it is the request's own cost.

LAT_NOTE=""
if [ -z "${BENCH_ONLY:-}" ]; then
    saved_conns=$CONNS
    CONNS=1
    for slug in module module_miss; do
        set_variant "$slug"
        run_variant "$slug" c1
    done
    CONNS=$saved_conns
    c=" $(cat "$W/res/module.c1")"
    m=" $(cat "$W/res/module_miss.c1")"
    if [ "$(field p99 "$c")" != "" ] && [ "$(field p99 "$m")" != "" ]; then
        LAT_NOTE="cached key p50 $(ms "$(field p50 "$c")") ms, p99 $(ms "$(field p99 "$c")") ms ($(printf '%.0f' "$(field rps "$c")") requests/s);"
        LAT_NOTE="$LAT_NOTE keys that miss the cache p50 $(ms "$(field p50 "$m")") ms, p99 $(ms "$(field p99 "$m")") ms ($(field hgetall "$m") HGETALLs for $(field req "$m") requests);"
        LAT_NOTE="$LAT_NOTE Redis HGETALL alone (redis-benchmark, 1 connection) p50 $RTT1_P50 ms, p99 $RTT1_P99 ms."
        LAT_NOTE="$LAT_NOTE **A miss adds $(ms $(( $(field p99 "$m") - $(field p99 "$c") ))) ms at p99 to a cached request, $(awk -v d="$(( $(field p99 "$m") - $(field p99 "$c") ))" -v r="$RTT1_P99" 'BEGIN { printf "%.3f", d / 1000 - r }') ms against Redis's own p99 round trip (1 connection)**"
        LAT_NOTE="$LAT_NOTE (p50: $(awk -v d="$(( $(field p50 "$m") - $(field p50 "$c") ))" -v r="$RTT1_P50" 'BEGIN { printf "%.3f", d / 1000 - r }') ms over the p50 round trip)."
    fi
fi

# --- one row per variant: the round with the median requests/s -------------------

ROWS=()
NOTES=()
FAILED=0
BARE_RPS=""
CACHED_P50=""
MISS_P50=""
MISS_READ_MS=""
for slug in $SLUGS; do
    set_variant "$slug"
    if grep -qh '^CHECKFAILED' "$W"/res/"$slug".[0-9]*; then
        what=$(grep -h '^CHECKFAILED' "$W"/res/"$slug".[0-9]* | head -n 1 | cut -d' ' -f2-)
        ROWS+=("| $V_LABEL | **check failed: $what** | | | | | | |")
        FAILED=$((FAILED + 1))
        continue
    fi
    # sort the rounds by requests/s; take the middle one
    runs=$(for f in "$W"/res/"$slug".[0-9]*; do
               l=$(cat "$f"); echo "$(field rps " $l") $l"
           done | sort -n)
    n=$(wc -l <<<"$runs")
    med=$(sed -n "$(( (n + 1) / 2 ))p" <<<"$runs" | cut -d' ' -f2-)
    lo=$(head -n 1 <<<"$runs" | cut -d' ' -f1)
    hi=$(tail -n 1 <<<"$runs" | cut -d' ' -f1)
    m=" $med"
    rps=$(field rps "$m"); p50=$(field p50 "$m"); p99=$(field p99 "$m")
    cpu=$(field cpu "$m"); rcpu=$(field rcpu "$m"); req=$(field req "$m")
    hits=$(field hits "$m"); misses=$(field misses "$m")
    rsum=$(field rsum "$m"); rcnt=$(field rcnt "$m")
    [ -n "$BARE_RPS" ] || BARE_RPS=$rps
    ratio=$(awk -v a="$rps" -v b="$BARE_RPS" 'BEGIN { printf "%.2f", a / b }')

    notes=""
    # every round, not only the median one, must have answered as expected
    for f in "$W"/res/"$slug".[0-9]*; do
        l=" $(cat "$f")"
        r=${f##*.}
        if [ "$V_EXPECT" = ok ] && [ "$(field non2xx "$l")" -ne 0 ]; then
            notes="${notes:+$notes; }**round $r: $(field non2xx "$l") of $(field req "$l") answers not 2xx**"
            FAILED=$((FAILED + 1))
        elif [ "$V_EXPECT" = denied ] && [ "$(field non2xx "$l")" -ne "$(field req "$l")" ]; then
            notes="${notes:+$notes; }**round $r: $(( $(field req "$l") - $(field non2xx "$l") )) answers not denied**"
            FAILED=$((FAILED + 1))
        fi
        if [ "$(field errs "$l")" -ne 0 ]; then
            notes="${notes:+$notes; }**round $r: $(field errs "$l") socket errors**"
        fi
        if [ "$(field reps "$l")" -ne 0 ]; then
            notes="${notes:+$notes; }**round $r: $(field reps "$l") requests repeated a key (raise BENCH_MISS_KEYS)**"
            FAILED=$((FAILED + 1))
        fi
    done
    if [ "$V_EXPECT" = denied ]; then
        notes="${notes:+$notes; }every answer 401, as expected"
    fi
    if [ "$V_MODE" != static ]; then
        notes="${notes:+$notes; }Redis HGETALLs: $(awk -v h="$(field hgetall "$m")" -v n="$req" 'BEGIN { printf "%.2f", h / n }') per request"
    fi
    if [ "${V_CONF#module}" != "$V_CONF" ] && { [ "$V_MODE" = static ] || [ "$V_MODE" = verify ]; }; then
        if [ "$hits" -ge "$req" ]; then
            notes="${notes:+$notes; }every request a cache hit"
        else
            notes="${notes:+$notes; }**only $hits cache hits for $req requests**"
        fi
    elif [ "$V_CONF" = module.conf ]; then
        if [ "$misses" -ge "$req" ]; then
            notes="${notes:+$notes; }every request a cache miss"
        else
            notes="${notes:+$notes; }**only $misses cache misses for $req requests**"
        fi
        if [ "$rcnt" -gt 0 ]; then
            notes="$notes; module's Redis reads, mean (command to answer): $(awk -v s="$rsum" -v n="$rcnt" 'BEGIN { printf "%.3f", s * 1000 / n }') ms"
        fi
    fi
    case $V_CONF in
    module*.conf)
        notes="${notes:+$notes; }usage writes to Redis: $(awk -v w="$(field uw "$m")" -v d="$DURATION" 'BEGIN { printf "%.1f", w / d }')/s"
        if [ "$(field ud "$m")" -gt 0 ]; then
            notes="$notes ($(field ud "$m") requests not counted: the usage table was full)"
        fi
        ;;
    esac
    if [ "$slug" = module ]; then
        CACHED_P50=$p50
    fi
    if [ "$slug" = module_miss ]; then
        MISS_P50=$p50
        MISS_READ_MS=$(awk -v s="$rsum" -v n="$rcnt" 'BEGIN { if (n > 0) printf "%.3f", s * 1000 / n }')
    fi
    if [ "$slug" = module_miss ] && [ -n "$CACHED_P50" ]; then
        notes="${notes:+$notes; }p50 minus the cached-key p50: $(ms $((p50 - CACHED_P50))) ms"
    fi
    if [ -f "$W/res/$slug.errlog" ]; then
        NOTES+=("- $V_LABEL: the error log has errors, first: \`$(cat "$W/res/$slug.errlog")\`")
    fi
    ROWS+=("| $V_LABEL | $(printf '%.0f' "$rps") ($(printf '%.0f' "$lo")–$(printf '%.0f' "$hi")) | $(ms "$p50") | $(ms "$p99") | $cpu | $rcpu | $ratio | $notes |")
done

# --- paired per round: a variant against bare nginx in the same round -------------
# The machine's speed drifts between rounds by more than a key check costs;
# within a round the variants run back to back, so the median over rounds of
# the in-round difference is the steadier estimate.

PAIRED=()
if [ -f "$W/res/bare.1" ]; then
    for slug in $SLUGS; do
        [ "$slug" = bare ] && continue
        d=""
        for f in "$W"/res/"$slug".[0-9]*; do
            r=${f##*.}
            b=" $(cat "$W/res/bare.$r" 2>/dev/null)"
            l=" $(cat "$f")"
            [ -n "$(field cpu "$b")" ] && [ -n "$(field cpu "$l")" ] || continue
            d="$d$(awk -v a="$(field cpu "$l")" -v b="$(field cpu "$b")" \
                       -v x="$(field rps "$l")" -v y="$(field rps "$b")" \
                       'BEGIN { printf "%.2f %.3f", a - b, x / y }')
"
        done
        [ -n "$d" ] || continue
        n=$(grep -c . <<<"$d")
        cpu_d=$(grep . <<<"$d" | cut -d' ' -f1 | sort -g | sed -n "$(( (n + 1) / 2 ))p")
        rps_r=$(grep . <<<"$d" | cut -d' ' -f2 | sort -g | sed -n "$(( (n + 1) / 2 ))p")
        set_variant "$slug"
        PAIRED+=("| $V_LABEL | $cpu_d | $rps_r | $(grep . <<<"$d" | cut -d' ' -f1 | tr '\n' ' ')|")
    done
fi

# --- rate limiter accuracy: a key with burst=0 and a rate above / below 1000/s --------

RATE_NOTE=""
if [ -z "${BENCH_ONLY:-}" ]; then
    d=$W/rate; free_port rp
    mkdir -p "$d/logs" "$d/tmp"; chmod 777 "$d/tmp"
    sed -e "s#@DIR@#$d#g" -e "s#@PORT@#$rp#g" -e "s#@REDIS_PORT@#$REDIS_PORT#g" \
        -e "s#@MODULE@#$MODULE#g" -e "s#@BENCH@#$BENCH#g" \
        "$BENCH/conf/module.conf" >"$d/nginx.conf"
    start_nginx "$d" "$d/nginx.conf" "$rp"
    for rate in 500/s 5000/s 50000/s; do
        key=$(printf "$KEY_FMT" "3${rate%/s}")
        rcli HSET "apikey:$(sha "$key")" owner ratecheck rate "$rate" burst 0 >/dev/null
        [ "$(http_code "http://127.0.0.1:$rp/" -H "X-API-Key: $key" || true)" = 200 ] \
            || die "rate check: the key with rate $rate was not accepted"
        line=$(env WRK_MODE=static taskset -c 1 wrk -t"$THREADS" -c"$CONNS" -d3s \
                   -s "$BENCH/wrk/bench.lua" -H "X-API-Key: $key" "http://127.0.0.1:$rp/" \
               | grep '^WRK ') || die "rate check: wrk failed"
        allowed=$(awk -v n="$(field requests " $line")" -v d="$(field non2xx " $line")" \
                      -v us="$(field duration_us " $line")" 'BEGIN { printf "%.0f", (n - d) / (us / 1e6) }')
        RATE_NOTE="${RATE_NOTE:+$RATE_NOTE; }\`rate=$rate\`: $allowed/s allowed of $(printf '%.0f' "$(field rps " $line")") requests/s"
        note "rate $rate, burst 0: $allowed/s allowed"
    done
    stop_nginx "$NGINX_PID"
fi

# --- memory per key ----------------------------------------------------------------

ZONE_SLOTS=""
if [ -f "$W/metrics-zone.txt" ]; then
    ZONE_SLOTS=$(metric "$W/metrics-zone.txt" 'api_key_cache_slots{zone="keys",state="total"}')
fi
if [ -z "$ZONE_SLOTS" ] || [ "$ZONE_SLOTS" -eq 0 ]; then
    # BENCH_ONLY without a module variant: ask a module nginx directly
    d=$W/zone; free_port zp
    mkdir -p "$d/logs" "$d/tmp"; chmod 777 "$d/tmp"
    sed -e "s#@DIR@#$d#g" -e "s#@PORT@#$zp#g" -e "s#@REDIS_PORT@#$REDIS_PORT#g" \
        -e "s#@MODULE@#$MODULE#g" -e "s#@BENCH@#$BENCH#g" \
        "$BENCH/conf/module.conf" >"$d/nginx.conf"
    start_nginx "$d" "$d/nginx.conf" "$zp"
    curl -s "http://127.0.0.1:$zp/metrics" >"$W/metrics-zone.txt"
    stop_nginx "$NGINX_PID"
    ZONE_SLOTS=$(metric "$W/metrics-zone.txt" 'api_key_cache_slots{zone="keys",state="total"}')
fi
[ "$ZONE_SLOTS" -gt 0 ] || die "no api_key_cache_slots{state=\"total\"} from the module"
"$SIZES" "$ZONE_SLOTS" >"$W/sizes.md" 2>"$W/sizes.txt" || die "ak_sizes failed"

# --- RESULTS.md -------------------------------------------------------------------

{
    echo "## Throughput and latency (\`make bench\`)"
    echo
    machine_info
    echo "- set-up: one nginx per variant, \`worker_processes 1\` pinned to CPU 0; wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}') pinned to CPU 1"
    echo "  (\`taskset -c 1 wrk -t$THREADS -c$CONNS -d${DURATION}s\`, keep-alive, after a ${WARMUP} s warm-up); redis-server on CPU 1 too;"
    echo "  every variant answers with \`empty_gif\`; keys are 40 characters, sent in \`X-API-Key\`"
    echo "- $ROUNDS rounds (every variant once per round): each row is the round with the median requests/s, with the"
    echo "  (min–max) requests/s over the rounds; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Reading it: on a shared 2-vCPU VM requests/s and p99 move a lot between rounds (see the min–max); the"
    echo "  worker's CPU time per request is the steadier figure, and what a key check costs is its"
    echo "  difference to the bare row."
    echo
    echo "| variant | requests/s | p50 ms | p99 ms | nginx worker CPU µs/request | redis-server CPU µs/request | requests/s vs bare | notes |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    if [ ${#PAIRED[@]} -gt 0 ]; then
        echo "Each variant against bare nginx **in the same round** (median over the $ROUNDS rounds):"
        echo
        echo "| variant | worker CPU µs/request added | requests/s vs bare | CPU added, each round |"
        echo "|---|---:|---:|---|"
        printf '%s\n' "${PAIRED[@]}"
        echo
    fi
    echo "- Worker CPU: the time the worker process ran on its CPU (/proc/<pid>/schedstat, nanoseconds; redis-server: its main thread) over the measured run, divided by its requests."
    echo "- Redis round trip (redis-benchmark HGETALL of a record like the cache-miss ones, from CPU 0): p50 $RTT1_P50 ms, p99 $RTT1_P99 ms with 1 connection; p50 $RTTC_P50 ms, p99 $RTTC_P99 ms with $CONNS connections ($(printf '%.0f' "$RTTC_RPS") requests/s)."
    if [ -n "$MISS_P50" ] && [ -n "$CACHED_P50" ]; then
        echo "- **A cache miss** (this module): p50 $(ms "$MISS_P50") ms against $(ms "$CACHED_P50") ms for a cached key, i.e. +$(ms $((MISS_P50 - CACHED_P50))) ms;"
        echo "  a Redis HGETALL round trip alone is $RTT1_P50 ms (p50, 1 connection) / $RTTC_P50 ms ($CONNS connections), and the module's"
        echo "  own reads took ${MISS_READ_MS:-?} ms on average (command to answer, its \`api_key_redis_read_seconds\` histogram):"
        echo "  a miss costs about one Redis round trip, plus $(awk -v d="$((MISS_P50 - CACHED_P50))" -v r="$RTTC_P50" 'BEGIN { printf "%.3f", d / 1000 - r }') ms over the $CONNS-connection round trip."
    fi
    if [ -n "$LAT_NOTE" ]; then
        echo "- **Latency at one connection** (\`wrk -c1\`, one request at a time, the same set-up otherwise): $LAT_NOTE"
    fi
    echo "- Cache-miss variants: $MISS_KEYS pre-created records (owner, plan); wrk walks them in order, so every request carries a key never sent before (the warm-up walks the first ones, the measured run the next ones)."
    echo "- Rules variant: the record has \`ips=127.0.0.0/8\`, \`referrers=*.example.com\`, \`rate=100000000/s\`, \`burst=1000000\`; wrk sends \`Referer: $REFERER\`; checked: a wrong Referer gets 403."
    if [ -n "$RATE_NOTE" ]; then
        echo "- Rate limiter accuracy (a key with \`burst=0\`, the same wrk load for 3 s, requests allowed per second):"
        echo "  $RATE_NOTE. (Why the rules variant uses a large burst.)"
    fi
    echo "- Lua variants: bench/lua/apikey.lua; it checks status and expires_at only (no ips/referrers/rate)."
    if [ -f "$W/walk-slots.txt" ]; then
        read -r ents used <"$W/walk-slots.txt"
        echo "- Zone use: after a cache-miss run the zone held $ents entries in $used slots (records: owner \`customer-N\`, plan \`pro\`)."
    fi
    if [ ${#NOTES[@]} -gt 0 ]; then printf '%s\n' "${NOTES[@]}"; fi
    echo
    echo "### Shared memory per cached key"
    echo
    s1=$(sed -n 's/^SIZES sample=1 .*computed=\([0-9]*\).*/\1/p' "$W/sizes.txt")
    s3=$(sed -n 's/^SIZES sample=3 .*computed=\([0-9]*\).*/\1/p' "$W/sizes.txt")
    s5=$(sed -n 's/^SIZES sample=5 .*slots=\([0-9]*\) .*computed=\([0-9]*\).*/\1 slots, \2 keys/p' "$W/sizes.txt")
    echo "**$(sed -n 's/^SIZES bytes_per_key_min=//p' "$W/sizes.txt") bytes per cached key; a 128m zone holds $s1 keys** whose record fits the slot"
    echo "(owner + plan + rate with short texts; blob of at most 32 bytes), $s3 when the record needs a second slot"
    echo "(a custom id, longer names), and a record with 10 CIDRs and 10 referrers takes $s5 per 128m."
    echo
    echo "A 128m \`api_key_zone\` has **$ZONE_SLOTS slots** (\`api_key_cache_slots{state=\"total\"}\` from \`api_key_metrics\`)."
    echo "A slot costs $(sed -n 's/^SIZES bytes_per_key_min=//p' "$W/sizes.txt") bytes (\`ak_cache_bytes_per_key()\`: the 128-byte slot + its 4-byte bucket head); an entry takes one slot"
    echo "while its record blob (\`ak_record_build\`) is at most 32 bytes, plus one overflow slot per further 124 bytes."
    echo "Keys that fit: computed (slots / slots per key), and measured by filling a core cache of exactly that many slots"
    echo "(bench/tools/ak_sizes.cpp, linked with the core) until the first eviction:"
    echo
    cat "$W/sizes.md"
    echo
    echo "Run time of \`make bench\` (without building): $(( $(date +%s) - T_START )) s before the micro-benchmarks."
} >"$W/main.md"

if [ ! -f "$RESULTS" ] || ! grep -q '^# Benchmarks' "$RESULTS"; then
    {
        echo "# Benchmarks"
        echo
        echo "Written by \`make bench\` (sections \"Throughput and latency\" and \"Micro-benchmarks\")"
        echo "and \`make bench-revoke\` (section \"Revocation latency\"); each run replaces its own"
        echo "sections. Scripts, configurations and sources: [bench/](.)."
        echo
        [ -f "$RESULTS" ] && cat "$RESULTS"
    } >"$W/results.new"
    mv "$W/results.new" "$RESULTS"
fi
replace_section "$RESULTS" main "$W/main.md"

echo
cat "$W/main.md"

if [ "${BENCH_SKIP_MICRO:-0}" != 1 ]; then
    bash "$BENCH/micro.sh" "$BUILD" || die "micro-benchmarks failed"
fi

note "make bench: $(( $(date +%s) - T_START )) s; results in $RESULTS"
if [ "$FAILED" -gt 0 ]; then
    die "$FAILED variant(s) failed their checks (see the table)"
fi
