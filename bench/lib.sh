# SPDX-License-Identifier: BSD-2-Clause
# bench/lib.sh: helpers shared by bench/run.sh and bench/revoke.sh (bash).
#
# Every process started through these helpers is remembered and stopped by
# bench_cleanup (installed as an EXIT/INT/TERM trap by bench_init): nginx
# masters gracefully (QUIT, then TERM, then KILL), redis-servers with TERM.
# Nothing is ever stopped by name.

BENCH_PIDS=""           # "kind:pid" of everything we started

die() {
    echo "bench: FATAL: $*" >&2
    exit 1
}

note() {
    echo "bench: $*" >&2
}

bench_init() {
    # $1: working directory (created empty)
    BENCH_WORK=$1
    rm -rf "$BENCH_WORK"
    mkdir -p "$BENCH_WORK" || die "cannot create $BENCH_WORK"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local entry kind pid i
    trap - EXIT
    for entry in $BENCH_PIDS; do
        kind=${entry%%:*}
        pid=${entry#*:}
        kill -0 "$pid" 2>/dev/null || continue
        if [ "$kind" = nginx ]; then
            kill -QUIT "$pid" 2>/dev/null
        else
            kill -TERM "$pid" 2>/dev/null
        fi
    done
    for entry in $BENCH_PIDS; do
        pid=${entry#*:}
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    BENCH_PIDS=""
}

forget_pid() {
    local entry out=""
    for entry in $BENCH_PIDS; do
        [ "${entry#*:}" = "$1" ] || out="$out $entry"
    done
    BENCH_PIDS=$out
}

# any socket on that local port (listening, connected, TIME_WAIT) counts
port_in_use() {
    [ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
}

# free_port VAR: sets VAR to a TCP port on 127.0.0.1 that no socket uses,
# below the ephemeral range (where the kernel picks client ports), from a
# per-run pseudo-random base (other test suites may run on this machine too).
# Not to be called in $(...): it remembers the ports it gave.
BENCH_NEXT_PORT=""
free_port() {
    local p low span
    if [ -z "$BENCH_NEXT_PORT" ]; then
        read -r low _ </proc/sys/net/ipv4/ip_local_port_range
        span=$(( low - 2000 - 20000 ))
        [ "$span" -ge 1000 ] || die "ephemeral port range starts too low ($low)"
        BENCH_NEXT_PORT=$(( 20000 + ($$ * 7) % span ))
    fi
    p=$BENCH_NEXT_PORT
    while port_in_use "$p"; do
        p=$((p + 1))
    done
    BENCH_NEXT_PORT=$((p + 1))
    printf -v "$1" '%s' "$p"
}

# start_redis DIR PORT [CPU [ARGS...]]: redis-server without persistence
# (ARGS: more of its options, e.g. --tls-port); waits for PONG on PORT
start_redis() {
    local dir=$1 port=$2 cpu=${3:-} pfx="" i
    shift 2
    [ $# -gt 0 ] && shift
    mkdir -p "$dir"
    [ -n "$cpu" ] && pfx="taskset -c $cpu"
    $pfx redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$dir" --daemonize no \
        --notify-keyspace-events '' --maxclients 10000 "$@" \
        >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    BENCH_PIDS="$BENCH_PIDS redis:$REDIS_PID"
    for i in $(seq 100); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$dir/redis.log" >&2
    die "redis-server on port $port did not start"
}

# start_nginx PREFIX CONF PORT: checks the configuration (nginx -t), starts
# nginx in the foreground of a background job, waits until PORT answers and
# the workers run.  Sets NGINX_PID (master) and NGINX_WORKERS (pids).
start_nginx() {
    local prefix=$1 conf=$2 port=$3 i
    if ! nginx -p "$prefix" -c "$conf" -t -q 2>"$prefix/nginx-t.log"; then
        cat "$prefix/nginx-t.log" >&2
        die "nginx -t failed for $conf"
    fi
    nginx -p "$prefix" -c "$conf" -g 'daemon off;' 2>>"$prefix/stderr.log" &
    NGINX_PID=$!
    BENCH_PIDS="$BENCH_PIDS nginx:$NGINX_PID"
    for i in $(seq 100); do
        if ! kill -0 "$NGINX_PID" 2>/dev/null; then
            cat "$prefix/stderr.log" "$prefix/logs/error.log" >&2 2>/dev/null
            die "nginx exited at start ($conf)"
        fi
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" ; then
            NGINX_WORKERS=$(ps -o pid= --ppid "$NGINX_PID" | tr -s ' \n' ' ')
            [ -n "${NGINX_WORKERS// /}" ] && return 0
        fi
        sleep 0.05
    done
    die "nginx did not answer on port $port ($conf)"
}

stop_nginx() {
    local pid=$1 i
    kill -QUIT "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget_pid "$pid"
}

# cpu_ns PID: nanoseconds the process (its main thread) has run on a CPU,
# from the scheduler's own accounting (/proc/PID/schedstat), far finer than
# the 100 Hz utime/stime ticks of /proc/PID/stat
cpu_ns() {
    local ns
    read -r ns _ <"/proc/$1/schedstat" || die "no process $1"
    echo "$ns"
}

# http_code URL [curl args...]: the status of one plain request
http_code() {
    local url=$1
    shift
    curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@" "$url"
}

# replace_section FILE NAME CONTENT_FILE: FILE's text between
# "<!-- bench:NAME -->" and "<!-- /bench:NAME -->" becomes CONTENT_FILE's,
# the section is appended when absent; other sections stay as they are.
replace_section() {
    local file=$1 name=$2 content=$3
    [ -f "$file" ] || : >"$file"
    perl -0777 -i -e '
        my ($name, $cfile) = (shift, shift);
        open my $fh, "<", $cfile or die "$cfile: $!";
        local $/; my $new = <$fh>; close $fh;
        $new =~ s/\n*\z/\n/;
        my $text = <>;
        my $block = "<!-- bench:$name -->\n$new<!-- /bench:$name -->\n";
        if ($text !~ s/<!-- bench:\Q$name\E -->\n.*?<!-- \/bench:\Q$name\E -->\n/$block/s) {
            $text =~ s/\n*\z/\n\n/ if length $text;
            $text .= $block;
        }
        print $text;
    ' "$name" "$content" "$file"
}

machine_info() {
    local cpu
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    echo "- CPU: $cpu, $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM"
    echo "- OS: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), redis-server: $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), wrk: $(if command -v wrk >/dev/null; then wrk -v 2>&1 | head -n 1 | awk '{print $2}'; else echo 'not installed'; fi), lua-nginx-module: $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo 'not installed'), Google Benchmark: $(dpkg-query -W -f='${Version}' libbenchmark-dev 2>/dev/null || echo 'not installed')"
    echo "- module: git commit $(git -C "$BENCH_TOP" rev-parse --short HEAD 2>/dev/null)$(git -C "$BENCH_TOP" status --porcelain -- src config 2>/dev/null | grep -q . && echo ' (+ uncommitted changes in src/)')"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}
