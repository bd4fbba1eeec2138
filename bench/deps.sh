#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs what `make bench*` needs (Debian 12), only what is missing:
# scripts/deps.sh (the module's build and test dependencies) and
#
#   wrk                    the HTTP load generator
#   libnginx-mod-http-lua  the Lua variant (access_by_lua, lua_shared_dict)
#   lua-nginx-redis        resty.redis (Debian installs it as "nginx.redis")
#   libbenchmark-dev       Google Benchmark, for bench/micro
#   redis-tools            redis-cli --pipe, redis-benchmark
#   util-linux procps iproute2   taskset, ps, ss
#   valgrind               make bench-callgrind, make bench-tls
#   strace                 make bench-tls (system calls per miss)
#   gnuplot-nox            make soak (the PNG plot)
exec sh "$(dirname "$0")/../scripts/deps.sh" redis-tools wrk \
    libnginx-mod-http-lua lua-nginx-redis libbenchmark-dev util-linux \
    procps iproute2 valgrind strace gnuplot-nox
