#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/failover-cluster.sh BUILD_DIR: the cluster part of `make
# bench-failover` (bench/failover-cluster.pl: a cluster master killed and its
# replica promoted under a client's requests, and the miss-path cost on a
# 3-master cluster against one redis-server).  Rewrites the
# "failover-cluster" section of bench/RESULTS.md.
#
# Environment: BENCH_FAILOVER_ROUNDS (3), BENCH_FAILOVER_MISSES (3000).
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
MODULE=$BUILD/ngx_http_api_key_module.so
RESULTS=${BENCH_RESULTS:-$BENCH/RESULTS.md}

. "$BENCH/lib.sh"

[ -f "$MODULE" ] || die "no module at $MODULE (make module)"

out=$(mktemp)
trap 'rm -f "$out"' EXIT

{
    echo "## Redis Cluster failover (\`make bench-failover\`)"
    echo
    machine_info
    echo
} >"$out"

AK_MODULE=$MODULE AK_TEST_TIMEOUT=600 perl -I "$BENCH_TOP/t/lib" \
    "$BENCH/failover-cluster.pl" >>"$out.body" 2>"$out.tap" || {
    cat "$out.tap" >&2
    rm -f "$out.body" "$out.tap"
    die "bench/failover-cluster.pl failed"
}

# the markdown only (Test::More's TAP on stdout is not part of it)
grep -v '^\(ok \|not ok\|1\.\.\|# \)' "$out.body" >>"$out"
rm -f "$out.body" "$out.tap"

cat "$out"
replace_section "$RESULTS" failover-cluster "$out"
