#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/misstail.sh BUILD_DIR: `make bench-miss` (also part of `make bench`).
#
# The tail of a cache miss under load: p50, p99 and p99.9 of requests whose
# key is not cached (a Redis HGETALL each) at 1, 32 and 256 connections,
# beside what the module's own read histogram saw and Redis's own round
# trip at the same concurrency, over several runs.
#
# Set-up (as bench/run.sh): one redis-server on CPU 1, with BENCH_MISS_KEYS
# records (owner, plan) made by bench/tools/gen_keys.pl; per cell (run x
# connections x variant) a fresh nginx (bench/conf/module_nousage.conf: one
# worker pinned to CPU 0, a 128m zone, ttl=60s, timeout=1s, usage_flush=off
# so that only the reads reach Redis: with a fresh key per request every
# request would otherwise be one usage write too); wrk pinned to CPU 1,
# keep-alive, one thread.  Variants:
#   miss    wrk walks the records in order (bench/wrk/bench.lua, walk mode):
#           every request a key never sent to this nginx, so a real miss;
#           checked: Redis's HGETALL calls over the measured run (INFO
#           commandstats, after CONFIG RESETSTAT) equal the module's misses
#           and its timed reads, and wrk's requests plus at most one per
#           connection (those in flight when wrk stops; the worker is let
#           settle before and after the run so that no read of the warm-up
#           or of the run's end is counted on one side only)
#   hit     one cached key (the reference: nginx and the module without
#           Redis, at the same concurrency)
# Per cell: wrk's p50/p99/p99.9/mean, the worker's and redis-server's CPU,
# run-queue wait and times scheduled in per request (/proc/PID/schedstat),
# Redis's read events (INFO stats: commands per write of the worker), the
# module's api_key_redis_read_seconds
# histogram over the measured run (its buckets, sum and count: from the
# HGETALL leaving the worker's buffer to its answer being handled, as the
# worker saw it), Redis's own latencystats for HGETALL (the command's
# execution inside redis-server), and then, nginx stopped, redis-benchmark
# HGETALL of one of the records from CPU 0 at the same number of
# connections (a plain client's round trip; the 1-connection one is the
# bare round trip the module's reads are compared with).  The load average
# at the start and end of each cell.  bench/misstail.pl makes the tables;
# the "miss" section of bench/RESULTS.md is rewritten.
#
# Environment: BENCH_MISS_RUNS (5), BENCH_MISS_CONNS ("1 32 256"),
# BENCH_MISS_DURATION (5 s), BENCH_MISS_WARMUP (1 s), BENCH_MISS_KEYS
# (1000000: more than a run sends on a fast day; 400000 was not),
# BENCH_MISS_RB_REQUESTS (30000: redis-benchmark's requests per
# cell), BENCH_MISS_VARIANTS ("miss hit"); BENCH_MISS_MODULE_B=PATH.so adds
# a variant "miss_b": the same misses through another build of the module
# (before/after a change, measured in the same runs, side by side),
# described in the table by BENCH_MISS_B_LABEL; BENCH_MISS_SECTION ("miss"):
# the section of bench/RESULTS.md to rewrite (and the work directory,
# BUILD/bench/misstail-SECTION).
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
MODULE=$BUILD/ngx_http_api_key_module.so
RESULTS=${BENCH_RESULTS:-$BENCH/RESULTS.md}

RUNS=${BENCH_MISS_RUNS:-5}
CONNS_LIST=${BENCH_MISS_CONNS:-1 32 256}
DURATION=${BENCH_MISS_DURATION:-5}
WARMUP=${BENCH_MISS_WARMUP:-1}
MISS_KEYS=${BENCH_MISS_KEYS:-1000000}
RB_REQUESTS=${BENCH_MISS_RB_REQUESTS:-30000}
VARIANTS=${BENCH_MISS_VARIANTS:-miss hit}
MODULE_B=${BENCH_MISS_MODULE_B:-}
SECTION=${BENCH_MISS_SECTION:-miss}
export MISSTAIL_B_LABEL=${BENCH_MISS_B_LABEL:-module B}

. "$BENCH/lib.sh"

if [ -n "$MODULE_B" ]; then
    [ -f "$MODULE_B" ] || die "BENCH_MISS_MODULE_B: no $MODULE_B"
    VARIANTS="miss miss_b ${VARIANTS//miss/}"
    VARIANTS=$(echo $VARIANTS)
fi

[ -f "$MODULE" ] || die "no module at $MODULE (make module)"
for t in wrk nginx redis-server redis-cli redis-benchmark taskset curl perl; do
    command -v "$t" >/dev/null || die "$t not found (make bench-deps)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (nginx on CPU 0, wrk on CPU 1)"
for c in $CONNS_LIST; do
    [ "$c" -ge 1 ] && [ "$c" -le 1000 ] || die "BENCH_MISS_CONNS: 1 to 1000 connections"
done

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
bench_init "$BUILD/bench/misstail-$SECTION"
W=$BENCH_WORK
machine_info >"$W/machine.md"    # its load average: the one at the start
RES=$W/res
mkdir -p "$RES"

# --- Redis and the records -------------------------------------------------------

free_port REDIS_PORT
start_redis "$W/redis" "$REDIS_PORT" 1

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
sha() { printf %s "$1" | sha256sum | cut -c1-64; }

MISS_FMT='ak_miss_%032d'
HIT=ak_bench_hit_000000000000000000000000001      # 40 characters
MISS_CHECK=$(printf "$MISS_FMT" $((MISS_KEYS - 1)))   # never walked by wrk

note "creating $MISS_KEYS key records"
perl "$BENCH/tools/gen_keys.pl" resp "$MISS_FMT" 0 "$MISS_KEYS" \
        owner 'customer-%d' plan pro \
    | rcli --pipe >"$W/pipe.log" 2>&1 || { cat "$W/pipe.log" >&2; die "redis-cli --pipe failed"; }
rcli HSET "apikey:$(sha "$HIT")" owner customer-hit plan pro >/dev/null
[ "$(rcli DBSIZE)" -eq $((MISS_KEYS + 1)) ] || die "expected $((MISS_KEYS + 1)) records, Redis has $(rcli DBSIZE)"
# latencystats: Redis 7's per-command percentiles (on by default)
rcli CONFIG SET latency-tracking yes >/dev/null
rcli CONFIG SET latency-tracking-info-percentiles "50 99 99.9" >/dev/null

# the Prometheus value of a metric line (exact label set), 0 when absent
metric() {
    awk -v m="$2" 'index($0, m " ") == 1 { print $NF; found = 1 }
                   END { if (!found) print 0 }' "$1"
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# sched PID: "on-CPU ns, runnable-but-waiting ns, times scheduled in" of its
# main thread (/proc/PID/schedstat: the scheduler's own accounting)
sched() {
    local a b n
    read -r a b n <"/proc/$1/schedstat" || die "no process $1"
    echo "$a $b $n"
}

# settle URL FILE: waits until the worker is quiet: two metrics pages 0.1 s
# apart with the same count of misses and reads, every miss's read answered
# (in this benchmark each miss is one read); FILE: the last page
settle() {
    local url=$1 file=$2 i now last=""
    for i in $(seq 100); do
        curl -s "${url}metrics" >"$file"
        now="$(metric "$file" 'api_key_cache_lookups_total{zone="keys",result="miss"}')"
        now="$now $(metric "$file" 'api_key_redis_read_seconds_count{zone="keys"}')"
        if [ "$now" = "$last" ] && [ "${now% *}" = "${now#* }" ]; then
            return 0
        fi
        last=$now
        sleep 0.1
    done
    return 1
}

# --- one cell ------------------------------------------------------------------------

# run_cell VARIANT CONNS RUN: writes $RES/VARIANT.CONNS.RUN (key=value line)
# and $RES/VARIANT.CONNS.RUN.m0/.m1 (metrics pages), .rb (redis-benchmark)
run_cell() {
    local v=$1 conns=$2 run=$3
    local tag=$v.$conns.$run dir=$W/$v.$conns.$run out=$RES/$v.$conns.$run
    local port url worker i up=0 line start count mode hdr=() good so=$MODULE
    local t0 t1 r0 r1 la0 la1 calls lat rreads rwrites q0 q1 n0 n1 rw0 rw1 rq0 rq1

    note "run $run, $conns connection(s), $v"
    if [ "$v" = miss_b ]; then
        so=$MODULE_B
    fi
    free_port port
    mkdir -p "$dir/logs" "$dir/tmp"
    chmod 777 "$dir/tmp"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" \
        -e "s#@REDIS_PORT@#$REDIS_PORT#g" -e "s#@MODULE@#$so#g" \
        -e "s#@BENCH@#$BENCH#g" "$BENCH/conf/module_nousage.conf" >"$dir/nginx.conf"
    start_nginx "$dir" "$dir/nginx.conf" "$port"
    set -- $NGINX_WORKERS
    [ $# -eq 1 ] || die "$tag: expected 1 worker, found $#"
    worker=$1
    taskset -p "$worker" | grep -q 'mask: 1$' || die "$tag: worker not pinned to CPU 0"
    url=http://127.0.0.1:$port/

    for i in $(seq 100); do
        curl -s "${url}metrics" >"$dir/m.txt" || true
        if [ "$(metric "$dir/m.txt" 'api_key_redis_connected{connection="commands"}')" = 1 ]; then
            up=1
            break
        fi
        sleep 0.05
    done
    [ "$up" = 1 ] || die "$tag: the module did not connect to Redis"

    if [ "$v" != hit ]; then
        mode=walk
        good=$MISS_CHECK
    else
        mode=static
        good=$HIT
        hdr=(-H "X-API-Key: $HIT")
    fi
    [ "$(http_code "$url" -H "X-API-Key: $good" || true)" = 200 ] \
        || die "$tag: a known key was not accepted"
    [ "$(http_code "$url" -H "X-API-Key: ak_bench_not_a_key_000000000000000000000" || true)" = 401 ] \
        || die "$tag: an unknown key was not refused"

    wrk_run() {     # SECONDS START COUNT -> the WRK line
        env WRK_MODE="$mode" WRK_THREADS=1 WRK_KEY_FMT="$MISS_FMT" \
            WRK_WALK_START="$2" WRK_WALK_COUNT="$3" \
            taskset -c 1 wrk -t1 -c"$conns" -d"$1"s --timeout 5s \
                -s "$BENCH/wrk/bench.lua" "${hdr[@]}" "$url" \
            | grep '^WRK ' || die "$tag: wrk failed"
    }

    # the warm-up walks the first keys, the measured run the ones after
    start=0
    count=$((MISS_KEYS - 1))
    line=$(wrk_run "$WARMUP" "$start" "$count")
    if [ "$mode" = walk ]; then
        start=$(( $(field requests "$line") + 1000 ))
        count=$((MISS_KEYS - 1 - start))
        [ "$count" -gt 1000 ] || die "$tag: the warm-up used up the keys (raise BENCH_MISS_KEYS)"
    fi

    # the warm-up's last requests may still be in the worker (a busy
    # machine): the measured run starts once it is quiet
    settle "$url" "$out.m0" || die "$tag: the worker did not settle after the warm-up"
    la0=$(cut -d' ' -f1 /proc/loadavg)
    rcli CONFIG RESETSTAT >/dev/null
    read -r t0 q0 n0 <<<"$(sched "$worker")"
    read -r r0 rq0 rw0 <<<"$(sched "$REDIS_PID")"
    line=$(wrk_run "$DURATION" "$start" "$count")
    read -r t1 q1 n1 <<<"$(sched "$worker")"
    read -r r1 rq1 rw1 <<<"$(sched "$REDIS_PID")"
    # the requests wrk left in flight: read and answered before Redis's and
    # the module's counts are taken (they are the + conns of the check)
    settle "$url" "$out.m1" || die "$tag: the worker did not settle after the run"
    rcli INFO commandstats | tr -d '\r' >"$out.cs"
    rcli INFO latencystats | tr -d '\r' >"$out.ls"
    rcli INFO stats | tr -d '\r' >"$out.st"
    la1=$(cut -d' ' -f1 /proc/loadavg)

    if grep -q '\[\(emerg\|alert\|crit\|error\)\]' "$dir/logs/error.log"; then
        grep -m1 '\[\(emerg\|alert\|crit\|error\)\]' "$dir/logs/error.log" \
            | cut -c1-200 >"$out.errlog"
    fi
    stop_nginx "$NGINX_PID"

    calls=$(sed -n 's/^cmdstat_hgetall:calls=\([0-9]*\),.*/\1/p' "$out.cs" | grep . || echo 0)
    lat=$(sed -n 's/^latency_percentiles_usec_hgetall://p' "$out.ls" | tr ',' ' ')
    # Redis's read events (and replies written) over the run: with the
    # module's connection the only busy one, HGETALLs per read event is how
    # many commands one write of the worker carried
    rreads=$(sed -n 's/^total_reads_processed:\([0-9]*\)/\1/p' "$out.st" | grep . || echo 0)
    rwrites=$(sed -n 's/^total_writes_processed:\([0-9]*\)/\1/p' "$out.st" | grep . || echo 0)

    # a plain client's round trip, nginx stopped: from CPU 0, as the worker
    taskset -c 0 redis-benchmark -p "$REDIS_PORT" -n "$RB_REQUESTS" -c "$conns" \
        HGETALL "apikey:$(sha "$MISS_CHECK")" 2>/dev/null | tr '\r' '\n' >"$out.rb" \
        || die "$tag: redis-benchmark failed"

    echo "$line wcpu_ns=$((t1 - t0)) wwait_ns=$((q1 - q0)) wslices=$((n1 - n0))" \
         "rcpu_ns=$((r1 - r0)) rwait_ns=$((rq1 - rq0)) rslices=$((rw1 - rw0)) hgetall=$calls" \
         "rreads=$rreads rwrites=$rwrites" \
         "load0=$la0 load1=$la1 redis_${lat// / redis_}" >"$out"
    note "  $(cut -c5-200 "$out")"
}

for run in $(seq "$RUNS"); do
    for conns in $CONNS_LIST; do
        for v in $VARIANTS; do
            run_cell "$v" "$conns" "$run"
        done
    done
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table ------------------------------------------------------------------------

perl "$BENCH/misstail.pl" "$RES" "$RUNS" "$CONNS_LIST" "$VARIANTS" "$DURATION" \
    >"$W/tables.md" || die "misstail.pl failed"

{
    if [ "$SECTION" = miss ]; then
        echo "## The miss tail under load (\`make bench-miss\`)"
    else
        echo "## The miss tail under load: this module against $MISSTAIL_B_LABEL (\`bench/misstail.sh\`, BENCH_MISS_MODULE_B)"
    fi
    echo
    cat "$W/machine.md"
    echo "- load average at the end: $LOAD_END (the benchmark itself keeps both CPUs busy; the load at the start shows what else ran)"
    echo "- set-up: redis-server on CPU 1 with $MISS_KEYS records; per cell a fresh nginx, \`worker_processes 1\` pinned to CPU 0"
    echo "  (bench/conf/module_nousage.conf: \`usage_flush=off\`, so that Redis sees only the reads); \`taskset -c 1 wrk -t1 -cN -d${DURATION}s\`"
    echo "  after a ${WARMUP} s warm-up; $RUNS runs, each run every connection count and variant once, one after another;"
    echo "  Redis's own round trip: \`taskset -c 0 redis-benchmark -n $RB_REQUESTS -c N HGETALL\` of one of the records, right after each cell, nginx stopped"
    echo
    cat "$W/tables.md"
    echo
    echo "Run time of \`make bench-miss\` (without building): $(( $(date +%s) - T_START )) s."
} >"$W/miss.md"

replace_section "$RESULTS" "$SECTION" "$W/miss.md"
echo
cat "$W/miss.md"
if grep -q 'CHECK FAILED' "$W/miss.md"; then
    die "some cells failed their checks (see the table)"
fi
note "make bench-miss: $(( $(date +%s) - T_START )) s; results in $RESULTS"
