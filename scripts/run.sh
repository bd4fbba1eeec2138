#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# make run / make stop / make example: a local redis-server and nginx with
# the module, on loopback, for trying the module by hand.
#
#   sh scripts/run.sh start   BUILD RUN_DIR STOP_CMD   (make run)
#   sh scripts/run.sh stop    RUN_DIR                  (make stop)
#   sh scripts/run.sh example BUILD RUN_DIR NAME       (make example)
#
# start: checks that PORT, APP_PORT and REDIS_PORT (environment) are free on
# 127.0.0.1, starts redis-server and nginx as daemons (their PIDs in
# RUN_DIR/redis.pid and RUN_DIR/nginx.pid), waits until both answer, makes
# a demo key, prints what to try, the PIDs and the stop command, and stays
# in the foreground until Ctrl-C (which stops everything) or until
# `make stop`, from any shell, has stopped it.  Nothing is printed as
# "listening" unless both answered.
#
# example: runs conf-examples/NAME.conf as shipped (a copy in
# RUN_DIR/example-NAME, whose modules/ links to BUILD) against the running
# make run's Redis and application; make stop stops it too.
set -u

cmd=${1:-}
port=${PORT:-8080}
redis_port=${REDIS_PORT:-6390}
app_port=${APP_PORT:-}
top=$(cd "$(dirname "$0")/.." && pwd)

die() {
    echo "$*" >&2
    exit 1
}

# the PID in file $1 if that process is alive and its command line holds $2
live_pid() {
    [ -f "$1" ] || return 1
    lp_pid=$(cat "$1" 2>/dev/null) || return 1
    case "$lp_pid" in ''|*[!0-9]*) return 1 ;; esac
    [ -r "/proc/$lp_pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$lp_pid/cmdline" | grep -q -- "$2" || return 1
    echo "$lp_pid"
}

# true if a TCP port can be bound on 127.0.0.1 (as nginx and redis-server
# bind it: SO_REUSEADDR, so a port in TIME_WAIT counts as free)
port_free() {
    perl -MIO::Socket::INET -e '
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
                              Proto => "tcp", Listen => 1, ReuseAddr => 1)
            or exit 1' "$1"
}

valid_port() {
    case "$2" in
        ''|*[!0-9]*) die "make run: $1=$2 is not a port number" ;;
    esac
    [ "$2" -ge 1 ] && [ "$2" -le 65535 ] || die "make run: $1=$2 is not a port number (1-65535)"
}

# waits (bounded) until process $1 and the processes in $2 have exited;
# false if some are left
wait_gone() {
    wg_i=0
    while [ $wg_i -lt 100 ]; do
        wg_left=""
        for wg_p in $1 $2; do
            [ -d "/proc/$wg_p" ] && wg_left="$wg_left $wg_p"
        done
        [ -z "$wg_left" ] && return 0
        wg_i=$((wg_i + 1))
        sleep 0.1
    done
    return 1
}

# stops one nginx (master PID $1): QUIT (graceful), then TERM, then KILL
stop_nginx() {
    sn_workers=$(pgrep -P "$1" | tr '\n' ' ')
    kill -QUIT "$1" 2>/dev/null
    wait_gone "$1" "$sn_workers" && return 0
    kill -TERM "$1" $sn_workers 2>/dev/null
    wait_gone "$1" "$sn_workers" && return 0
    kill -KILL "$1" $sn_workers 2>/dev/null
    wait_gone "$1" "$sn_workers"
}

stop_redis() {
    kill -TERM "$1" 2>/dev/null
    wait_gone "$1" "" && return 0
    kill -KILL "$1" 2>/dev/null
    wait_gone "$1" ""
}

# everything started in $1: the examples' nginx, make run's nginx, then
# redis-server; prints what it stopped
stop_all() {
    sa_stopped=""
    for sa_f in "$1"/example-*/nginx.pid "$1/nginx.pid"; do
        sa_p=$(live_pid "$sa_f" nginx) || continue
        stop_nginx "$sa_p"
        sa_stopped="$sa_stopped nginx (PID $sa_p),"
    done
    if sa_p=$(live_pid "$1/redis.pid" redis-server); then
        stop_redis "$sa_p"
        sa_stopped="$sa_stopped redis-server (PID $sa_p),"
    fi
    if [ -n "$sa_stopped" ]; then
        echo "stopped:${sa_stopped%,}"
    fi
}

case "$cmd" in

stop)
    dir=${2:?RUN_DIR}
    # make run, in the foreground, sees nginx go before redis-server: this
    # tells it that make stop is stopping them, not a crash
    [ -d "$dir" ] && : >"$dir/stopping"
    out=$(stop_all "$dir")
    rm -f "$dir/stopping"
    if [ -n "$out" ]; then
        echo "$out"
    else
        echo "make stop: nothing is running from $dir"
    fi
    exit 0
    ;;

start)
    build=${2:?BUILD}
    dir=${3:?RUN_DIR}
    stop_cmd=${4:-make stop}
    [ -n "$app_port" ] || app_port=$((port + 1))
    valid_port PORT "$port"
    valid_port APP_PORT "$app_port"
    valid_port REDIS_PORT "$redis_port"

    n=$(live_pid "$dir/nginx.pid" nginx)
    r=$(live_pid "$dir/redis.pid" redis-server)
    if [ -n "$n$r" ]; then
        die "make run: already running from $dir (nginx PID ${n:-none}, redis-server PID ${r:-none}); stop it first: $stop_cmd"
    fi

    bad=""
    for v in "PORT $port" "APP_PORT $app_port" "REDIS_PORT $redis_port"; do
        set -- $v
        if ! port_free "$2"; then
            echo "make run: port $2 on 127.0.0.1 is in use ($1=$2); choose a free one: make run $1=$(( $2 + 100 ))" >&2
            bad=1
        fi
    done
    if [ "$port" = "$app_port" ] || [ "$port" = "$redis_port" ] || [ "$app_port" = "$redis_port" ]; then
        echo "make run: PORT=$port, APP_PORT=$app_port and REDIS_PORT=$redis_port must differ" >&2
        bad=1
    fi
    [ -z "$bad" ] || exit 1

    rm -rf "$dir"
    mkdir -p "$dir/logs" "$dir/tmp" || exit 1
    chmod 777 "$dir/tmp"
    dir=$(cd "$dir" && pwd)
    build=$(cd "$build" && pwd)
    ctl="$build/apikeyctl --redis redis://127.0.0.1:$redis_port"

    redis_pid=""
    nginx_pid=""
    fail() {
        echo "make run: $*" >&2
        stop_all "$dir" >/dev/null
        exit 1
    }

    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/logs/redis.log" --notify-keyspace-events Kghx \
        || fail "redis-server did not start (log: $dir/logs/redis.log)"
    i=0
    until $ctl list >/dev/null 2>&1 && redis_pid=$(live_pid "$dir/redis.pid" redis-server); do
        i=$((i + 1))
        if [ $i -gt 50 ]; then
            tail -n 5 "$dir/logs/redis.log" >&2 2>/dev/null
            fail "redis-server did not start on 127.0.0.1:$redis_port (log: $dir/logs/redis.log)"
        fi
        sleep 0.1
    done

    sed -e "s#@MODULE@#$build/ngx_http_api_key_module.so#g" \
        -e "s#@DIR@#$dir#g" \
        -e "s#@HTTP_PORT@#$port#g" \
        -e "s#@APP_PORT@#$app_port#g" \
        -e "s#@REDIS_PORT@#$redis_port#g" \
        "$top/conf-examples/run.conf" >"$dir/nginx.conf"

    nginx -p "$dir/" -c "$dir/nginx.conf" -t -q \
        || fail "the nginx configuration $dir/nginx.conf does not pass nginx -t"
    # daemon on: nginx returns once it has bound its ports (non-zero if not)
    nginx -p "$dir/" -c "$dir/nginx.conf" \
        || fail "nginx did not start (log: $dir/logs/error.log)"
    i=0
    until nginx_pid=$(live_pid "$dir/nginx.pid" nginx) \
          && curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; do
        i=$((i + 1))
        [ $i -gt 50 ] && fail "nginx does not answer on 127.0.0.1:$port (log: $dir/logs/error.log)"
        sleep 0.1
    done

    key=$($ctl create --owner demo --plan free --scopes "read" --rate 5/s \
              --burst 5 --id demo 2>/dev/null | head -n 1)
    [ -n "$key" ] || fail "apikeyctl could not create the demo key"
    workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ')

    # Ctrl-C (or TERM) here stops everything; so does make stop elsewhere
    trap 'trap - INT TERM; echo; stop_all "$dir"; exit 130' INT TERM

    cat <<EOT

nginx with ngx_http_api_key_module is listening on http://127.0.0.1:$port
redis-server on 127.0.0.1:$redis_port; config: $dir/nginx.conf, logs: $dir/logs

A demo key (id "demo", owner "demo", plan "free", 5 requests/s, burst 5):

    $key

Try:

    curl -i -H 'X-API-Key: $key' http://127.0.0.1:$port/
    curl -i -H 'Authorization: Bearer $key' http://127.0.0.1:$port/
    curl -i http://127.0.0.1:$port/                                   # 401 missing
    curl -i -H 'X-API-Key: not-a-key' http://127.0.0.1:$port/        # 401 unknown
    for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' -H 'X-API-Key: $key' http://127.0.0.1:$port/; done; echo
    $ctl revoke demo     # then the first curl: 401 revoked
    curl -s http://127.0.0.1:$port/metrics

An example of conf-examples/ as shipped, against this Redis: make example EXAMPLE=gateway

PIDs: nginx master $nginx_pid, workers ${workers% }; redis-server $redis_pid
Stop: $stop_cmd   (from any shell; or Ctrl-C here)
EOT

    # in the foreground until both are gone or one of them died
    while [ -d "/proc/$nginx_pid" ] && [ -d "/proc/$redis_pid" ]; do
        sleep 1
    done
    trap - INT TERM
    # make stop is at work: let it finish (bounded)
    sw_i=0
    while [ -e "$dir/stopping" ] && [ $sw_i -lt 300 ]; do
        sw_i=$((sw_i + 1))
        sleep 0.1
    done
    out=$(stop_all "$dir")
    if [ -n "$out" ]; then
        echo "make run: nginx or redis-server exited; $out" >&2
        exit 1
    fi
    echo "make run: stopped"
    exit 0
    ;;

example)
    build=${2:?BUILD}
    dir=${3:?RUN_DIR}
    name=${4:-}
    name=${name%.conf}
    name=${name##*/}
    src="$top/conf-examples/$name.conf"
    [ -n "$name" ] && [ "$name" != run ] && [ -f "$src" ] || {
        echo "make example: EXAMPLE= one of:" >&2
        ls "$top/conf-examples" | sed -n 's/\.conf$//p' | grep -vx run | sed 's/^/    /' >&2
        exit 1
    }
    live_pid "$dir/redis.pid" redis-server >/dev/null \
        || die "make example: make run is not running (its Redis on 127.0.0.1:6390 and application on 127.0.0.1:8081 are what the examples use); start it first"
    grep -q '127\.0\.0\.1:6390' "$src" && [ "$redis_port" != 6390 ] \
        && echo "make example: note: $name.conf uses Redis on 6390, make run's default (REDIS_PORT=$redis_port)" >&2
    edir="$dir/example-$name"
    if p=$(live_pid "$edir/nginx.pid" nginx); then
        die "make example: $name is already running (nginx PID $p)"
    fi
    bad=""
    for p in $(sed -n 's/^[[:space:]]*listen[[:space:]]\{1,\}\([0-9.]*:\)\{0,1\}\([0-9]\{1,\}\).*/\2/p' "$src"); do
        if ! port_free "$p"; then
            echo "make example: port $p, where conf-examples/$name.conf listens, is in use" >&2
            bad=1
        fi
    done
    [ -z "$bad" ] || exit 1

    build=$(cd "$build" && pwd)
    rm -rf "$edir"
    mkdir -p "$edir/logs" || exit 1
    cp "$src" "$edir/nginx.conf"
    # load_module modules/ngx_http_api_key_module.so, relative to the prefix
    ln -s "$build" "$edir/modules"
    if grep -q 'secret_file=api-key.secret' "$src"; then
        sh "$top/scripts/make-secret.sh" "$edir/api-key.secret" || exit 1
    fi
    nginx -p "$edir/" -c "$edir/nginx.conf" \
          -g "pid $edir/nginx.pid; error_log $edir/logs/error.log;" \
        || die "make example: nginx did not start with $name.conf (log: $edir/logs/error.log)"
    p=$(live_pid "$edir/nginx.pid" nginx) || die "make example: nginx exited (log: $edir/logs/error.log)"
    echo "conf-examples/$name.conf runs as shipped: nginx PID $p, prefix $edir/"
    if [ -f "$edir/api-key.secret" ]; then
        echo "its HMAC secret: $edir/api-key.secret; a key for it:"
        echo "    $build/apikeyctl --redis redis://127.0.0.1:$redis_port --hash hmac-sha256 --secret-file $edir/api-key.secret create"
    fi
    echo "Stop: make stop (stops make run too)"
    ;;

*)
    die "usage: $0 start BUILD RUN_DIR [STOP_CMD] | stop RUN_DIR | example BUILD RUN_DIR NAME"
    ;;
esac
