#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/tls.sh BUILD_DIR: `make bench-tls` (also the last part of `make bench`).
#
# What `api_key_redis rediss://...` costs against `redis://...`, on loopback:
#
# 1. wrk rows: keys that miss the cache (a Redis read each) over plaintext and
#    over TLS, and a cached key over both (the cached path never touches
#    Redis: those two rows must not differ).  Worker CPU per request
#    (/proc/PID/schedstat over the measured run), p50/p99 from wrk's latency
#    distribution, and HGETALLs per request from Redis's INFO commandstats
#    (every miss must reach Redis: 1.00).  Rounds as in bench/run.sh; the
#    TLS/plaintext ratio is taken per round (the two run back to back) and
#    the median over the rounds reported.
# 2. Reconnects: the worker idle, its commands connection killed K times
#    (CLIENT KILL TYPE normal, then wait until it is back): worker CPU per
#    reconnect, minus an idle window of the same length, for plaintext, TLS
#    with session reuse (the default), and TLS without (before each kill,
#    CONFIG SET tls-cert-file to a copy of the certificate: redis-server
#    builds a new TLS context, whose new ticket keys refuse the module's
#    session); resumed sessions counted by the module's
#    api_key_redis_tls_sessions_reused_total.
# 3. callgrind (deterministic, unlike CPU time on a shared machine): one
#    nginx process under valgrind per transport; instructions per miss
#    (wrk -c1 walking fresh keys) and per reconnect, with the inclusive cost
#    of ngx_ssl_handshake per reconnect.
#
# One redis-server (on CPU 1, like wrk) serves the same records on a
# plaintext port and a TLS port (tls-port, EC P-256 certificates made with
# the openssl command line at start, verified by the module: tls_ca).  nginx:
# 1 worker pinned to CPU 0, bench/conf/module.conf (TLS: its api_key_redis
# line with rediss:// and tls_ca).  Rewrites the "tls" section of
# bench/RESULTS.md.
#
# Environment: BENCH_TLS_DURATION (4 s), BENCH_TLS_WARMUP (1 s),
# BENCH_TLS_ROUNDS (5), BENCH_CONNS (32), BENCH_TLS_MISS_KEYS (300000),
# BENCH_TLS_RECONNECTS (40), BENCH_TLS_CG_SECONDS (5),
# BENCH_TLS_CG_RECONNECTS (10), BENCH_TLS_SKIP_CALLGRIND=1.
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
MODULE=$BUILD/ngx_http_api_key_module.so
RESULTS=${BENCH_RESULTS:-$BENCH/RESULTS.md}

DURATION=${BENCH_TLS_DURATION:-4}
WARMUP=${BENCH_TLS_WARMUP:-1}
ROUNDS=${BENCH_TLS_ROUNDS:-5}
THREADS=1
CONNS=${BENCH_CONNS:-32}
MISS_KEYS=${BENCH_TLS_MISS_KEYS:-300000}
RECONNECTS=${BENCH_TLS_RECONNECTS:-40}
CG_SECONDS=${BENCH_TLS_CG_SECONDS:-5}
CG_RECONNECTS=${BENCH_TLS_CG_RECONNECTS:-10}

. "$BENCH/lib.sh"

[ -f "$MODULE" ] || die "no module at $MODULE (make module)"
for t in wrk nginx redis-server redis-cli taskset curl perl openssl; do
    command -v "$t" >/dev/null || die "$t not found (make bench-deps)"
done
if [ -z "${BENCH_TLS_SKIP_CALLGRIND:-}" ]; then
    for t in valgrind callgrind_control callgrind_annotate; do
        command -v "$t" >/dev/null || die "$t not found (make bench-deps)"
    done
fi
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (nginx on CPU 0, wrk on CPU 1)"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
bench_init "$BUILD/bench/tls"
W=$BENCH_WORK

# --- certificates (openssl CLI, as t/lib/ApiKeyTest/Tls.pm) ----------------------

PKI=$W/pki
mkdir -p "$PKI"
chmod 755 "$W" "$PKI"
ossl() { openssl "$@" >>"$PKI/openssl.log" 2>&1 || { cat "$PKI/openssl.log" >&2; die "openssl $1 failed"; }; }
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
ossl req -x509 "${EC[@]}" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 2 \
    -subj "/CN=api_key bench CA" -addext 'basicConstraints=critical,CA:TRUE' \
    -addext 'keyUsage=critical,keyCertSign,cRLSign'
printf '%s\n' 'basicConstraints=CA:FALSE' \
    'keyUsage=critical,digitalSignature,keyEncipherment' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    >"$PKI/server.ext"
ossl req -new "${EC[@]}" -keyout "$PKI/server.key" -out "$PKI/server.csr" -subj /CN=localhost
ossl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "$((1000 + $$))" -days 2 -extfile "$PKI/server.ext" -out "$PKI/server.crt"
# the same certificate under a second name: CONFIG SET tls-cert-file to the
# other name makes redis-server build a new TLS context (new session ticket
# keys), so that the next handshake cannot resume (reconnects without reuse)
cp "$PKI/server.crt" "$PKI/server-b.crt"
cp "$PKI/server.key" "$PKI/server-b.key"
chmod 644 "$PKI"/*

# --- one redis-server, a plaintext port and a TLS port, the same records ------------

free_port REDIS_PORT
free_port TLS_PORT
start_redis "$W/redis" "$REDIS_PORT" 1 --tls-port "$TLS_PORT" \
    --tls-cert-file "$PKI/server.crt" --tls-key-file "$PKI/server.key" \
    --tls-ca-cert-file "$PKI/ca.crt" --tls-auth-clients no
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
[ "$(redis-cli -p "$TLS_PORT" --tls --cacert "$PKI/ca.crt" PING)" = PONG ] \
    || die "the TLS port does not answer"

KEY_FMT='ak_bench_%031d'
GOOD=$(printf "$KEY_FMT" 4321)
MISS_FMT='ak_miss_%032d'
MISS_CHECK=$(printf "$MISS_FMT" $((MISS_KEYS - 1)))
sha() { printf %s "$1" | sha256sum | cut -c1-64; }
rcli HSET "apikey:$(sha "$GOOD")" owner client4321 plan pro >/dev/null
note "creating $MISS_KEYS key records"
perl "$BENCH/tools/gen_keys.pl" resp "$MISS_FMT" 0 "$MISS_KEYS" owner 'customer-%d' plan pro \
    | rcli --pipe >"$W/pipe.log" 2>&1 || { cat "$W/pipe.log" >&2; die "redis-cli --pipe failed"; }
[ "$(rcli DBSIZE)" -eq $((MISS_KEYS + 1)) ] || die "Redis has $(rcli DBSIZE) records"

hgetall_calls() {
    rcli INFO commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_hgetall:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}
metric() {
    awk -v m="$2" 'index($0, m " ") == 1 { print $NF; found = 1 }
                   END { if (!found) print 0 }' "$1"
}
# user and system CPU ticks of a process (/proc/PID/stat utime, stime)
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
HZ=$(getconf CLK_TCK)
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# make_conf TRANSPORT DIR PORT [single]: module.conf for redis:// or rediss://;
# single: one process (master_process off) for valgrind, timeouts raised
make_conf() {
    local tr=$1 dir=$2 port=$3 single=${4:-}
    local url="redis://127.0.0.1:$REDIS_PORT" extra=""
    if [ "$tr" = tls ]; then
        url="rediss://127.0.0.1:$TLS_PORT"
        extra=" tls_ca=$PKI/ca.crt"
    fi
    mkdir -p "$dir/logs" "$dir/tmp"
    chmod 777 "$dir/tmp"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@MODULE@#$MODULE#g" \
        -e "s#@BENCH@#$BENCH#g" \
        -e "s#^\( *api_key_redis\) redis://127.0.0.1:@REDIS_PORT@ timeout=1s;#\1 $url timeout=1s$extra;#" \
        "$BENCH/conf/module.conf" >"$dir/nginx.conf"
    grep -q "api_key_redis $url " "$dir/nginx.conf" || die "module.conf: no api_key_redis line to rewrite"
    if [ -n "$single" ]; then
        sed -i -e 's/^worker_cpu_affinity.*/master_process off;\ndaemon off;/' \
            -e 's/keys:128m/keys:16m/' -e 's/timeout=1s/timeout=10s connect_timeout=10s/' \
            "$dir/nginx.conf"
    fi
    if grep -q '@[A-Z0-9_]*@' "$dir/nginx.conf"; then die "unresolved placeholder"; fi
}

# wait_connected URL: until the metrics page says the commands connection is up
wait_connected() {
    local i
    for i in $(seq 300); do
        if curl -s --max-time 5 "$1/metrics" 2>/dev/null \
                | grep -q '^api_key_redis_connected{connection="commands"} 1'; then
            return 0
        fi
        sleep 0.1
    done
    die "the module did not connect to Redis ($1)"
}

# --- 1. wrk rows ------------------------------------------------------------------

# slug -> transport, mode
variant() {
    case $1 in
    miss_plain) V_TR=plain; V_MODE=walk;   V_LABEL="keys that miss the cache, redis:// (plaintext)" ;;
    miss_tls)   V_TR=tls;   V_MODE=walk;   V_LABEL="keys that miss the cache, rediss:// (TLS)" ;;
    hit_plain)  V_TR=plain; V_MODE=static; V_LABEL="cached key, redis://" ;;
    hit_tls)    V_TR=tls;   V_MODE=static; V_LABEL="cached key, rediss://" ;;
    *) die "no variant $1" ;;
    esac
}

wrk_run() {     # SECONDS START COUNT URL -> the WRK line
    env WRK_MODE="$V_MODE" WRK_THREADS="$THREADS" WRK_KEY_FMT="$MISS_FMT" \
        WRK_WALK_START="$2" WRK_WALK_COUNT="$3" \
        taskset -c 1 wrk -t"$THREADS" -c"$CONNS" -d"$1"s --timeout 5s \
            -s "$BENCH/wrk/bench.lua" -H "X-API-Key: $GOOD" "$4" \
        | grep '^WRK ' || die "wrk failed"
}

run_variant() {     # SLUG ROUND -> $W/res/SLUG.ROUND
    local slug=$1 round=$2 dir port worker url line start count t0 t1 h0 h1 req miss u0 u1 s0 s1
    variant "$slug"
    dir=$W/$slug.$round
    free_port port
    make_conf "$V_TR" "$dir" "$port"
    start_nginx "$dir" "$dir/nginx.conf" "$port"
    worker=${NGINX_WORKERS// /}
    url=http://127.0.0.1:$port/
    wait_connected "http://127.0.0.1:$port"
    [ "$(http_code "$url" -H "X-API-Key: $MISS_CHECK")" = 200 ] || die "$slug: a record key is not accepted"
    [ "$(http_code "$url" -H "X-API-Key: ak_bench_not_a_key_000000000000000000000")" = 401 ] \
        || die "$slug: an unknown key is not refused"

    line=$(wrk_run "$WARMUP" 0 $((MISS_KEYS - 1)) "$url")
    start=0
    count=$((MISS_KEYS - 1))
    if [ "$V_MODE" = walk ]; then
        start=$(( $(field requests "$line") + 1000 ))
        count=$((MISS_KEYS - 1 - start))
        [ "$count" -gt 1000 ] || die "$slug: the warm-up used up the keys"
    fi
    curl -s "${url}metrics" >"$dir/m0.txt"
    h0=$(hgetall_calls)
    read -r u0 s0 <<<"$(ticks "$worker")"
    t0=$(cpu_ns "$worker")
    line=$(wrk_run "$DURATION" "$start" "$count" "$url")
    t1=$(cpu_ns "$worker")
    read -r u1 s1 <<<"$(ticks "$worker")"
    h1=$(hgetall_calls)
    curl -s "${url}metrics" >"$dir/m1.txt"
    if grep -q '\[\(emerg\|alert\|crit\|error\)\]' "$dir/logs/error.log"; then
        grep -m1 '\[\(emerg\|alert\|crit\|error\)\]' "$dir/logs/error.log" | cut -c1-200 >&2
        die "$slug: errors in the error log"
    fi
    stop_nginx "$NGINX_PID"
    req=$(field requests "$line")
    [ "$req" -gt 0 ] || die "$slug: no requests"
    miss=$(( $(metric "$dir/m1.txt" 'api_key_cache_lookups_total{zone="keys",result="miss"}') \
           - $(metric "$dir/m0.txt" 'api_key_cache_lookups_total{zone="keys",result="miss"}') ))
    mkdir -p "$W/res"
    echo "rps=$(field rps "$line") p50=$(field p50_us "$line") p99=$(field p99_us "$line")" \
         "cpu=$(awk -v d=$((t1 - t0)) -v n="$req" 'BEGIN { printf "%.2f", d / 1000 / n }')" \
         "ucpu=$(awk -v d=$((u1 - u0)) -v n="$req" -v hz="$HZ" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')" \
         "scpu=$(awk -v d=$((s1 - s0)) -v n="$req" -v hz="$HZ" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')" \
         "req=$req non2xx=$(field non2xx "$line") errs=$(field sock_errors "$line")" \
         "reps=$(field repeats "$line") misses=$miss hgetall=$((h1 - h0))" >"$W/res/$slug.$round"
    note "round $round, $slug: $(cat "$W/res/$slug.$round")"
}

# odd rounds plaintext first, even rounds TLS first: a drift of the
# machine's speed within a round does not favour one transport
SLUGS="miss_plain miss_tls hit_plain hit_tls"
for round in $(seq "$ROUNDS"); do
    order=$SLUGS
    [ $((round % 2)) = 0 ] && order="miss_tls miss_plain hit_tls hit_plain"
    for slug in $order; do
        run_variant "$slug" "$round"
    done
done

ROWS=()
for slug in $SLUGS; do
    variant "$slug"
    runs=$(for f in "$W"/res/"$slug".*; do l=$(cat "$f"); echo "$(field rps "$l") $l"; done | sort -g)
    n=$(wc -l <<<"$runs")
    m=$(sed -n "$(( (n + 1) / 2 ))p" <<<"$runs" | cut -d' ' -f2-)
    cpus=$(for f in "$W"/res/"$slug".*; do field cpu "$(cat "$f")"; done | tr '\n' ' ' | sed 's/ $//')
    cpu_med=$(tr ' ' '\n' <<<"$cpus" | grep . | median)
    p99s=$(for f in "$W"/res/"$slug".*; do ms "$(field p99 "$(cat "$f")")"; echo; done | tr '\n' ' ' | sed 's/ $//')
    ucpu_med=$(for f in "$W"/res/"$slug".*; do field ucpu "$(cat "$f")"; done | median)
    scpu_med=$(for f in "$W"/res/"$slug".*; do field scpu "$(cat "$f")"; done | median)
    p99_med=$(tr ' ' '\n' <<<"$p99s" | grep . | median)
    req=$(field req "$m")
    notes="HGETALLs per request $(awk -v h="$(field hgetall "$m")" -v n="$req" 'BEGIN { printf "%.2f", h / n }')"
    notes="$notes, cache misses per request $(awk -v h="$(field misses "$m")" -v n="$req" 'BEGIN { printf "%.2f", h / n }')"
    [ "$(field non2xx "$m")" = 0 ] || notes="$notes; **$(field non2xx "$m") answers not 2xx**"
    [ "$(field errs "$m")" = 0 ] || notes="$notes; **$(field errs "$m") socket errors**"
    [ "$(field reps "$m")" = 0 ] || notes="$notes; **$(field reps "$m") repeated keys**"
    eval "CPU_$slug=$cpu_med P99_$slug=$p99_med"
    ROWS+=("| $V_LABEL | $(printf '%.0f' "$(field rps "$m")") | $(ms "$(field p50 "$m")") | $(ms "$(field p99 "$m")") | $p99_med ($p99s) | $cpu_med ($cpus) | $ucpu_med / $scpu_med | $notes |")
done

# TLS against plaintext, per round (the two ran back to back), median
ratio() {   # A B [FIELD] -> median over rounds of FIELD(A)/FIELD(B) (cpu)
    local k=${3:-cpu}
    for f in "$W"/res/"$1".*; do
        r=${f##*.}
        awk -v a="$(field "$k" "$(cat "$f")")" -v b="$(field "$k" "$(cat "$W/res/$2.$r")")" \
            'BEGIN { printf "%.3f\n", a / b }'
    done | median
}
MISS_RATIO=$(ratio miss_tls miss_plain)
HIT_RATIO=$(ratio hit_tls hit_plain)
MISS_URATIO=$(ratio miss_tls miss_plain ucpu)
# user CPU that TLS adds to a miss, per round (TLS minus plaintext), median;
# and as a share of the plaintext miss's whole worker CPU
MISS_UDELTA=$(for f in "$W"/res/miss_tls.*; do
                  r=${f##*.}
                  awk -v a="$(field ucpu "$(cat "$f")")" -v b="$(field ucpu "$(cat "$W/res/miss_plain.$r")")" \
                      'BEGIN { printf "%.2f\n", a - b }'
              done | median)
note "TLS/plaintext worker CPU per request: miss $MISS_RATIO, cached $HIT_RATIO"

# --- 1b. system calls per miss (strace -c on the worker, wrk -c1) -----------------
# callgrind (below) counts user space only; this shows whether TLS changes the
# kernel's share of a miss (more or fewer system calls)

SC_ROWS=()
syscalls_run() {    # TRANSPORT
    local tr=$1 dir=$W/strace-$1 port worker url line spid req
    free_port port
    make_conf "$tr" "$dir" "$port"
    start_nginx "$dir" "$dir/nginx.conf" "$port"
    worker=${NGINX_WORKERS// /}
    url=http://127.0.0.1:$port
    wait_connected "$url"
    V_MODE=walk
    strace -c -q -p "$worker" -o "$dir/strace.txt" &
    spid=$!
    sleep 0.5
    line=$(CONNS=1 wrk_run 2 0 100000 "$url/")
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    stop_nginx "$NGINX_PID"
    req=$(field requests "$line")
    [ "$req" -gt 0 ] && [ -s "$dir/strace.txt" ] || die "strace $tr: nothing measured"
    SC_ROWS+=("| $tr | $req | $(awk -v n="$req" '$1 ~ /^[0-9.]+$/ && $NF != "total" { s += $4 }
                                               END { printf "%.2f", s / n }' "$dir/strace.txt") | $(awk -v n="$req" '
        $1 ~ /^[0-9.]+$/ && $NF != "total" && $4 / n >= 0.01 { printf "%s %.2f, ", $NF, $4 / n }' "$dir/strace.txt" \
        | sed 's/, $//') |")
}
if command -v strace >/dev/null; then
    syscalls_run plain
    syscalls_run tls
fi

# --- 2. reconnects ----------------------------------------------------------------

# wait until the module's commands connection is back (a normal client that
# is not this redis-cli) and has sent a command (its PING: the TLS handshake
# is over); 10 s at most
wait_back() {
    local i
    for i in $(seq 1000); do
        if rcli CLIENT LIST TYPE normal | grep -v 'cmd=client|list' | grep -v 'cmd=NULL' \
                | grep -q 'id='; then
            return 0
        fi
        sleep 0.01
    done
    die "the commands connection did not come back"
}

# new_tls_context: redis-server's TLS context built again (its session
# ticket keys and session cache with it): no session resumes after it
TLS_CTX_B=0
new_tls_context() {
    local b=""
    TLS_CTX_B=$((1 - TLS_CTX_B))
    [ "$TLS_CTX_B" = 1 ] && b=-b
    [ "$(rcli CONFIG SET tls-cert-file "$PKI/server$b.crt" tls-key-file "$PKI/server$b.key")" = OK ] \
        || die "CONFIG SET tls-cert-file failed"
}

kill_loop() {   # K [full]: kill the commands connection K times, each time
                # waiting for it; full: no session to resume (new_tls_context)
    local i
    for i in $(seq "$1"); do
        wait_back
        [ "${2:-}" = full ] && new_tls_context
        rcli CLIENT KILL TYPE normal SKIPME yes >/dev/null
        sleep 0.01
    done
    wait_back
}

RC_ROWS=()
reconnect_run() {   # NAME TRANSPORT REUSE(yes|no) LABEL
    local name=$1 tr=$2 reuse=$3 label=$4 full="" dir=$W/reconnect-$1 port worker url
    local t0 t1 e0 e1 i0 i1 idle rec reused cpu
    [ "$reuse" = no ] && full=full
    free_port port
    make_conf "$tr" "$dir" "$port"
    start_nginx "$dir" "$dir/nginx.conf" "$port"
    worker=${NGINX_WORKERS// /}
    url=http://127.0.0.1:$port
    wait_connected "$url"
    kill_loop 2         # the first handshakes (and a session to resume) are done
    sleep 0.3
    curl -s "$url/metrics" >"$dir/m0.txt"
    e0=$(date +%s%N); t0=$(cpu_ns "$worker")
    kill_loop "$RECONNECTS" $full
    t1=$(cpu_ns "$worker"); e1=$(date +%s%N)
    curl -s "$url/metrics" >"$dir/m1.txt"
    # the same time idle, with the same two metrics requests
    i0=$(cpu_ns "$worker")
    curl -s "$url/metrics" >/dev/null
    sleep "$(awk -v n=$((e1 - e0)) 'BEGIN { printf "%.3f", n / 1e9 }')"
    curl -s "$url/metrics" >/dev/null
    i1=$(cpu_ns "$worker")
    stop_nginx "$NGINX_PID"
    rec=$(( $(metric "$dir/m1.txt" 'api_key_redis_reconnects_total{connection="commands"}') \
          - $(metric "$dir/m0.txt" 'api_key_redis_reconnects_total{connection="commands"}') ))
    reused=$(( $(metric "$dir/m1.txt" 'api_key_redis_tls_sessions_reused_total{connection="commands"}') \
             - $(metric "$dir/m0.txt" 'api_key_redis_tls_sessions_reused_total{connection="commands"}') ))
    [ "$rec" -gt 0 ] || die "$name: no reconnects counted"
    idle=$((i1 - i0))
    cpu=$(awk -v d=$((t1 - t0 - idle)) -v n="$rec" 'BEGIN { printf "%.1f", d / 1000 / n }')
    eval "RC_$name=$cpu"
    RC_ROWS+=("| $label | $rec | $reused | $cpu | $(awk -v d=$idle 'BEGIN { printf "%.0f", d / 1000 }') |")
    note "reconnects $name: $rec reconnects, $reused sessions reused, $cpu µs worker CPU each (idle window $((idle / 1000)) µs)"
}

reconnect_run plain plain yes "redis:// (plaintext)"
reconnect_run tls tls yes "rediss://, session reuse (default)"
reconnect_run tls_full tls no "rediss://, full handshakes (no session to resume)"

# --- 3. callgrind -----------------------------------------------------------------

# total instructions of a dump: the sum of the functions' self costs (a dump
# taken while a call is in progress, here epoll_wait, can carry a negative
# cost for that frame, which wraps around in the file's summary: left out)
cg_total() {
    callgrind_annotate --auto=no --threshold=100 "$1" 2>/dev/null \
        | awk '/file:function/ { on = 1; next }
               on && /^ *[0-9,]+ / { ir = $1; gsub(",", "", ir); if (length(ir) < 17) s += ir }
               END { printf "%.0f\n", s }'
}
cg_incl() {     # FILE FUNCTION -> inclusive Ir of the function
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null \
        | awk -v f="$2" '{ ir = $1; gsub(",", "", ir) }
                         !done && ($0 ~ (":" f " ") || $0 ~ (":" f "$")) { print ir; done = 1 }'
}
CG_DUMPS=0
cg_dump() {     # PID NAME: sets CG_FILE to the new dump (valgrind numbers
                # them .1, .2...); not to be called in $(...)
    CG_DUMPS=$((CG_DUMPS + 1))
    callgrind_control -d "$2" "$1" >/dev/null
    callgrind_control -i off "$1" >/dev/null
    [ -s "$CG_DIR/cg.out.$CG_DUMPS" ] || die "no callgrind dump for $2"
    CG_FILE=$W/cg-$2.callgrind
    cp "$CG_DIR/cg.out.$CG_DUMPS" "$CG_FILE"
}

CG_ROWS=()
cg_run() {      # TRANSPORT
    local tr=$1 port vpid url line req h0 h1 f r0 r1 m0 m1 reused total
    CG_DIR=$W/cg-$tr
    CG_DUMPS=0
    free_port port
    make_conf "$tr" "$CG_DIR" "$port" single
    url=http://127.0.0.1:$port
    taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$CG_DIR/cg.out" \
        nginx -p "$CG_DIR" -c "$CG_DIR/nginx.conf" >"$CG_DIR/valgrind.log" 2>&1 &
    vpid=$!
    BENCH_PIDS="$BENCH_PIDS other:$vpid"
    wait_connected "$url"
    # misses: one connection, a fresh key per request
    V_MODE=walk
    line=$(CONNS=1 wrk_run 1 0 100000 "$url/")
    h0=$(hgetall_calls)
    callgrind_control -i on "$vpid" >/dev/null
    line=$(CONNS=1 wrk_run "$CG_SECONDS" $(( $(field requests "$line") + 100 )) 150000 "$url/")
    cg_dump "$vpid" "miss-$tr"
    f=$CG_FILE
    h1=$(hgetall_calls)
    req=$(field requests "$line")
    [ "$(field non2xx "$line")" = 0 ] || die "callgrind $tr: answers not 2xx"
    total=$(cg_total "$f")
    eval "CG_MISS_$tr=$(awk -v t="$total" -v n="$req" 'BEGIN { printf "%.0f", t / n }')"
    CG_ROWS+=("| a request with a key that misses the cache, $tr | $req requests, $((h1 - h0)) HGETALLs | $(awk -v t="$total" -v n="$req" 'BEGIN { printf "%.0f", t / n }') | $(awk -v t="$(cg_incl "$f" ngx_ssl_write)" -v n="$req" 'BEGIN { printf "%.0f", t / n }') write, $(awk -v t="$(cg_incl "$f" ngx_ssl_recv)" -v n="$req" 'BEGIN { printf "%.0f", t / n }') read |")
    # reconnects, with session reuse and (TLS) without
    for reuse in yes no; do
        [ "$tr" = plain ] && [ "$reuse" = no ] && continue
        local full=""
        [ "$reuse" = no ] && full=full
        kill_loop 2
        sleep 0.5
        curl -s "$url/metrics" >"$CG_DIR/r0.txt"
        callgrind_control -i on "$vpid" >/dev/null
        kill_loop "$CG_RECONNECTS" $full
        sleep 0.5
        cg_dump "$vpid" "reconnect-$tr-$reuse"
        f=$CG_FILE
        curl -s "$url/metrics" >"$CG_DIR/r1.txt"
        r0=$(metric "$CG_DIR/r0.txt" 'api_key_redis_reconnects_total{connection="commands"}')
        r1=$(metric "$CG_DIR/r1.txt" 'api_key_redis_reconnects_total{connection="commands"}')
        m0=$(metric "$CG_DIR/r0.txt" 'api_key_redis_tls_sessions_reused_total{connection="commands"}')
        m1=$(metric "$CG_DIR/r1.txt" 'api_key_redis_tls_sessions_reused_total{connection="commands"}')
        reused=$((m1 - m0))
        total=$(cg_total "$f")
        local hs label="a reconnect, plaintext"
        hs=$(cg_incl "$f" ngx_ssl_handshake); hs=${hs:-0}
        if [ "$tr" = tls ]; then
            label="a reconnect, TLS, $([ "$reuse" = yes ] && echo 'session reuse' || echo 'full handshake (no session to resume)')"
        fi
        [ "$r1" -gt "$r0" ] || die "callgrind $label: no reconnects counted"
        eval "CG_RC_${tr}_$reuse=$(awk -v t="$total" -v n=$((r1 - r0)) 'BEGIN { printf "%.0f", t / n }')"
        CG_ROWS+=("| $label | $((r1 - r0)) reconnects, $reused sessions reused | $(awk -v t="$total" -v n=$((r1 - r0)) 'BEGIN { printf "%.0f", t / n }') | ngx_ssl_handshake $(awk -v t="$hs" -v n=$((r1 - r0)) 'BEGIN { printf "%.0f", t / n }') |")
        note "callgrind $label: $(( total / (r1 - r0) )) instructions each"
    done
    kill -KILL "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    forget_pid "$vpid"
}

CG_NOTE=""
if [ -z "${BENCH_TLS_SKIP_CALLGRIND:-}" ]; then
    cg_run plain
    cg_run tls
    CG_NOTE="$(awk -v a="$CG_MISS_tls" -v b="$CG_MISS_plain" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }')"
    note "callgrind: instructions per miss, TLS against plaintext: $CG_NOTE"
fi

# --- RESULTS.md ---------------------------------------------------------------------

pct() { awk -v r="$1" 'BEGIN { printf "%+.1f%%", (r - 1) * 100 }'; }
{
    echo "## Redis over TLS (\`make bench-tls\`, also run by \`make bench\`)"
    echo
    machine_info | sed "s/load average at start: .*/load average at start: $LOAD_START/"
    echo "- set-up: one redis-server (CPU 1) with the same records on a plaintext port and a TLS port (TLS 1.3, EC P-256"
    echo "  certificates made with the openssl CLI at bench time; the module verifies the chain: \`tls_ca\`);"
    echo "  nginx \`worker_processes 1\` on CPU 0 with bench/conf/module.conf, its \`api_key_redis\` pointed at either port;"
    echo "  \`taskset -c 1 wrk -t$THREADS -c$CONNS -d${DURATION}s\` after a ${WARMUP} s warm-up; $ROUNDS rounds, each round the four rows back to back"
    echo "  (odd rounds plaintext first, even rounds TLS first);"
    echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "- **The machine (2 vCPUs) was shared with other work while this ran**: requests/s, p99 and even CPU time per request"
    echo "  (caches, frequency) move between rounds; **the callgrind instruction counts below are the trustworthy (deterministic)"
    echo "  figures for the TLS/plaintext ratio**, with one caveat said there (user space only); the wrk figures give the order of magnitude,"
    echo "  the kernel's share, and show that every miss reached Redis."
    echo
    echo "### Cache misses and cached keys, plaintext against TLS (wrk)"
    echo
    echo "| variant | requests/s | p50 ms | p99 ms | p99 ms, median (each round) | worker CPU µs/request, median (each round) | of which user / system µs (utime / stime, median) | notes |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "- requests/s, p50, p99: the round with the median requests/s. Worker CPU: /proc/<pid>/schedstat (the scheduler's"
    echo "  run time of the worker, ns; the same accounting as utime+stime of /proc/<pid>/stat, without its 10 ms ticks)"
    echo "  over the measured run, divided by the requests. HGETALLs: Redis's \`INFO commandstats\` before and after."
    echo "- **Worker CPU per miss, TLS against plaintext: $(pct "$MISS_RATIO")** (median over the rounds of the in-round ratio;"
    echo "  goal: at most +25%); its user-space part alone (utime): $(pct "$MISS_URATIO"), i.e. TLS adds $MISS_UDELTA µs of user CPU"
    echo "  per miss (median of the in-round differences), $(awk -v d="$MISS_UDELTA" -v c="$CPU_miss_plain" 'BEGIN { printf "%+.0f%%", d / c * 100 }') of a plaintext miss's whole worker CPU ($CPU_miss_plain µs),"
    echo "  plus two system calls (below). Cached key, TLS against plaintext: $(pct "$HIT_RATIO") (the cached path sends nothing to"
    echo "  Redis; any difference is noise). p99 of a miss: $P99_miss_plain ms plaintext, $P99_miss_tls ms TLS (medians)."
    echo
    if [ ${#SC_ROWS[@]} -gt 0 ]; then
        echo "System calls of the worker per miss (\`strace -c\` attached to it, 2 s of \`wrk -c1\` walking fresh keys):"
        echo
        echo "| transport | requests | system calls per request | by call, per request |"
        echo "|---|---:|---:|---|"
        printf '%s\n' "${SC_ROWS[@]}"
        echo
        echo "Over TLS a miss's answer is read with one \`read()\` that returns it and, typically, two more that answer EAGAIN: nginx's"
        echo "\`ngx_ssl_recv\` calls \`SSL_read\` until it would block, and the module's read loop (ngx_http_api_key_io_read_handler)"
        echo "calls \`c->recv\` again until NGX_AGAIN without looking at \`rev->ready\` (over plaintext nginx's \`ngx_unix_recv\` answers"
        echo "that call from its epoll bookkeeping, without a system call)."
        echo
    fi
    echo "### Reconnects (worker CPU)"
    echo
    echo "The worker idle, its commands connection killed $RECONNECTS times (\`CLIENT KILL TYPE normal\`, then waiting until it"
    echo "is back: reconnect after the 100 ms backoff, TCP connect, TLS handshake and certificate check, \`PING\`). Worker CPU over the"
    echo "loop minus the same time idle, per reconnect counted by \`api_key_redis_reconnects_total{connection=\"commands\"}\`;"
    echo "resumed sessions by \`api_key_redis_tls_sessions_reused_total\`. The events connection is not touched."
    echo "Full handshakes: before each kill, \`CONFIG SET tls-cert-file\` to a copy of the same certificate, so that redis-server"
    echo "builds a new TLS context whose session ticket keys refuse the session the module offers (redis-server's"
    echo "\`tls-session-caching no\` does not stop TLS 1.3 ticket resumption: tried, every reconnect still resumed)."
    echo
    echo "| transport | reconnects | sessions reused | worker CPU µs/reconnect | idle window µs (subtracted) |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${RC_ROWS[@]}"
    echo
    echo "- **TLS handshake cost per reconnect** (worker CPU over plaintext): $(awk -v a="$RC_tls" -v b="$RC_plain" 'BEGIN { printf "%.0f", a - b }') µs with session reuse,"
    echo "  $(awk -v a="$RC_tls_full" -v b="$RC_plain" 'BEGIN { printf "%.0f", a - b }') µs for a full handshake (the key exchange plus the server's P-256 certificate verified against \`tls_ca\`)."
    if [ -z "${BENCH_TLS_SKIP_CALLGRIND:-}" ]; then
        echo
        echo "### Instructions (callgrind)"
        echo
        echo "One nginx process (\`master_process off\`) under valgrind per transport; instrumentation on only during the"
        echo "measured part: ${CG_SECONDS} s of \`wrk -t1 -c1\` walking fresh keys (every request a miss, after a 1 s warm-up),"
        echo "then $CG_RECONNECTS reconnects as above (with and, for TLS, without session reuse)."
        echo
        echo "| what | count | instructions each | of which in TLS (inclusive) |"
        echo "|---|---|---:|---|"
        printf '%s\n' "${CG_ROWS[@]}"
        echo
        echo "- **Instructions per miss, TLS against plaintext: $CG_NOTE** ($CG_MISS_plain -> $CG_MISS_tls, +$((CG_MISS_tls - CG_MISS_plain)) per miss: one"
        echo "  \`SSL_write\` of the command and the \`SSL_read\`s of the answer, TLS 1.3 AES-256-GCM records)."
        echo "  **Read this against the goal (+25% CPU per miss) with care: callgrind counts user-space instructions only.** A miss's"
        echo "  worker CPU is mostly kernel time (the HTTP and Redis sockets' system calls: see user / system above), of which"
        echo "  TLS changes little (the system calls above); so $CG_NOTE of the user-space instructions overstates the CPU increase,"
        echo "  and the user CPU that TLS adds natively (above) against the whole CPU of a miss is the better estimate. The wrk"
        echo "  figures of this shared machine are too noisy to settle a ratio closer than about ±10%."
        echo "- **TLS handshake per reconnect: $(awk -v a="$CG_RC_tls_yes" -v b="$CG_RC_plain_yes" 'BEGIN { printf "%.0f", a - b }') instructions more than a plaintext reconnect with"
        echo "  session reuse, $(awk -v a="$CG_RC_tls_no" -v b="$CG_RC_plain_yes" 'BEGIN { printf "%.0f", a - b }') for a full handshake.**"
        echo "- valgrind presents its own CPU to OpenSSL (no SHA extensions, no AVX-512), so OpenSSL's crypto code paths may differ"
        echo "  from native ones; instructions are not cycles. The handshake figures are dominated by TLS 1.3's ECDHE (key"
        echo "  generation and derivation: a resumed session still does one) and HKDF; a full handshake adds the certificate"
        echo "  chain's ECDSA verification and the server's signature check."
    fi
    echo
    echo "Reproduce: \`make bench-tls\` (about 4 minutes; also the last part of \`make bench\`); environment: BENCH_TLS_ROUNDS,"
    echo "BENCH_TLS_DURATION, BENCH_TLS_RECONNECTS, BENCH_TLS_CG_SECONDS, BENCH_TLS_CG_RECONNECTS, BENCH_TLS_SKIP_CALLGRIND=1."
} >"$W/tls.md"

replace_section "$RESULTS" tls "$W/tls.md"
cat "$W/tls.md"
