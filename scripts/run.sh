#!/bin/sh
# make run: redis-server + nginx with the module on loopback, a demo key,
# and what to try.  Ctrl-C stops both.
set -e
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
dir="$build/run"
http_port=${AK_RUN_PORT:-8080}
redis_port=${AK_RUN_REDIS_PORT:-6390}

rm -rf "$dir"
mkdir -p "$dir/logs" "$dir/tmp"
chmod 777 "$dir/tmp"

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --daemonize no --notify-keyspace-events Kghx \
    >"$dir/logs/redis.log" 2>&1 &
redis_pid=$!

nginx_pid=""
stop() {
    trap - INT TERM EXIT
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    kill "$redis_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    echo
    echo "stopped nginx and redis-server"
}
trap stop INT TERM EXIT

i=0
until "$build/apikeyctl" --redis "redis://127.0.0.1:$redis_port" list >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 50 ]; then echo "redis-server did not start" >&2; exit 1; fi
    sleep 0.1
done

sed -e "s#@MODULE@#$build/ngx_http_api_key_module.so#g" \
    -e "s#@DIR@#$dir#g" \
    -e "s#@HTTP_PORT@#$http_port#g" \
    -e "s#@APP_PORT@#$((http_port + 1))#g" \
    -e "s#@REDIS_PORT@#$redis_port#g" \
    "$top/conf-examples/run.conf" >"$dir/nginx.conf"

nginx -p "$dir" -c "$dir/nginx.conf" -t -q
nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
nginx_pid=$!

key=$("$build/apikeyctl" --redis "redis://127.0.0.1:$redis_port" create \
        --owner demo --plan free --scopes "read" --rate 5/s --burst 5 \
        --id demo 2>/dev/null | head -n 1)

sleep 0.3

cat <<EOT

nginx with ngx_http_api_key_module is listening on http://127.0.0.1:$http_port
redis-server on 127.0.0.1:$redis_port; config: $dir/nginx.conf, logs: $dir/logs

A demo key (id "demo", owner "demo", plan "free", 5 requests/s, burst 5):

    $key

Try:

    curl -i -H 'X-API-Key: $key' http://127.0.0.1:$http_port/
    curl -i -H 'Authorization: Bearer $key' http://127.0.0.1:$http_port/
    curl -i http://127.0.0.1:$http_port/                                   # 401 missing
    curl -i -H 'X-API-Key: not-a-key' http://127.0.0.1:$http_port/        # 401 unknown
    for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' -H 'X-API-Key: $key' http://127.0.0.1:$http_port/; done; echo
    $build/apikeyctl --redis redis://127.0.0.1:$redis_port revoke demo     # then the first curl: 401 revoked
    curl -s http://127.0.0.1:$http_port/metrics

Ctrl-C stops nginx and redis-server.
EOT

wait "$nginx_pid"
