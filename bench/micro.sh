#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/micro.sh BUILD_DIR: `make bench-micro` (and the end of `make bench`).
# Runs the core's Google Benchmark micro-benchmarks (bench/micro/micro.cpp,
# built as BUILD_DIR/bench/micro_bench), pinned to CPU 1, prints them and
# replaces the "micro" section of bench/RESULTS.md.
#
# Environment: BENCH_MICRO_MIN_TIME (seconds per benchmark, 0.2),
# BENCH_MICRO_FILTER (a --benchmark_filter regex).
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
MICRO=$BUILD/bench/micro_bench
RESULTS=${BENCH_RESULTS:-$BENCH/RESULTS.md}

. "$BENCH/lib.sh"

[ -x "$MICRO" ] || die "no $MICRO (make bench-micro builds it)"
out=$(mktemp)
md=$(mktemp)
trap 'rm -f "$out" "$md"' EXIT

cpu=""
[ "$(nproc)" -ge 2 ] && cpu="taskset -c 1"
$cpu "$MICRO" --benchmark_min_time="${BENCH_MICRO_MIN_TIME:-0.2}" \
    --benchmark_color=false ${BENCH_MICRO_FILTER:+--benchmark_filter="$BENCH_MICRO_FILTER"} \
    >"$out" 2>&1 || { cat "$out" >&2; die "micro_bench failed"; }
cat "$out"

{
    echo "## Micro-benchmarks of the core (\`make bench-micro\`)"
    echo
    echo "Google Benchmark, bench/micro/micro.cpp linked with the core's objects"
    echo "(build/core/*.o, \`-O2\`), pinned to CPU 1. \"CPU\" is the figure to read: the"
    echo "machine is a 2-vCPU VM, where wall time also counts time the vCPU was not running."
    echo "Keys are 40 bytes; the cache holds 1,000,000 entries (about 130 MB, so a random"
    echo "lookup misses the CPU caches and the TLB); rules: 10 CIDRs, 10 referrer patterns,"
    echo "the request matching the last one (match:1) or none (match:0). The \"DEBUG\" warning is"
    echo "about Debian's build of the Google Benchmark library, not about the code measured."
    echo
    BENCH_TOP=$BENCH_TOP machine_info
    echo
    echo '```'
    cat "$out"
    echo '```'
} >"$md"
replace_section "$RESULTS" micro "$md"
