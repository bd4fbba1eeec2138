#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/failover-sentinel.sh BUILD_DIR: the Redis Sentinel part of `make
# bench-failover`: the unavailability window of keys not cached and the
# failed requests of cached keys during a SENTINEL FAILOVER and a kill -9 of
# the master, under load (bench/failover-sentinel.pl, which uses the test
# harness, t/lib).  Rewrites the "failover-sentinel" section of
# bench/RESULTS.md.  About 1.5 minutes.
#
# Environment: FO_ROUNDS (3 per kind), FO_RATE (1000 requests/s),
# FO_SECONDS (8), FO_DOWN_AFTER (500 ms), FO_RESULTS (bench/RESULTS.md).
set -eu -o pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$TOP/build}" && pwd)

[ -f "$BUILD/ngx_http_api_key_module.so" ] \
    || { echo "bench: FATAL: no module in $BUILD (make module)" >&2; exit 1; }

cd "$TOP"
AK_MODULE=$BUILD/ngx_http_api_key_module.so AK_TEST_TIMEOUT=900 \
    perl -I t/lib bench/failover-sentinel.pl
