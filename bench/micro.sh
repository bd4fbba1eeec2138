#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/micro.sh BUILD_DIR: `make bench-micro` (and the end of `make bench`).
# Runs the core's Google Benchmark micro-benchmarks (bench/micro/micro.cpp,
# built as BUILD_DIR/bench/micro_bench), pinned to CPU 1, prints them and
# replaces the "micro" section of bench/RESULTS.md.
#
# Then the cache lookups in 1,000,000 keys again, in rounds, with the
# machine's reference (BM_MemoryLatency_1M: a chain of dependent reads
# through a block of the cache's size): each of the five
# BENCH_MICRO_ROUNDS times (9), all the rounds interleaved in a random
# order, and a table of each one's median and spread.  The goal of
# BM_CacheLookupHit_1M (at most 250 ns) is read from its median: one
# sample moves by tens of percent on a shared VM.
#
# Environment: BENCH_MICRO_MIN_TIME (seconds per benchmark, 0.2),
# BENCH_MICRO_FILTER (a --benchmark_filter regex: the main pass only),
# BENCH_MICRO_ROUNDS (9; 0: no rounds).
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
rounds_out=$(mktemp)
rounds_md=$(mktemp)
trap 'rm -f "$out" "$md" "$rounds_out" "$rounds_md"' EXIT
ROUNDS=${BENCH_MICRO_ROUNDS:-9}
case $ROUNDS in
    ''|*[!0-9]*) die "BENCH_MICRO_ROUNDS: a number of rounds, not '$ROUNDS'" ;;
esac

cpu=""
[ "$(nproc)" -ge 2 ] && cpu="taskset -c 1"
$cpu "$MICRO" --benchmark_min_time="${BENCH_MICRO_MIN_TIME:-0.2}" \
    --benchmark_color=false ${BENCH_MICRO_FILTER:+--benchmark_filter="$BENCH_MICRO_FILTER"} \
    >"$out" 2>&1 || { cat "$out" >&2; die "micro_bench failed"; }
cat "$out"

if [ "$ROUNDS" -gt 0 ]; then
    $cpu "$MICRO" --benchmark_min_time="${BENCH_MICRO_MIN_TIME:-0.2}" \
        --benchmark_color=false --benchmark_filter='^BM_CacheLookup|^BM_MemoryLatency' \
        --benchmark_repetitions="$ROUNDS" \
        --benchmark_enable_random_interleaving=true \
        >"$rounds_out" 2>&1 \
        || { cat "$rounds_out" >&2; die "micro_bench rounds failed"; }
    # a benchmark that fails says so on its line, and micro_bench still
    # exits 0
    if grep -q 'ERROR OCCURRED' "$rounds_out"; then
        cat "$rounds_out" >&2
        die "a round of the cache lookups failed"
    fi
    # each round's line: NAME TIME UNIT CPU UNIT ITERATIONS (the aggregates,
    # NAME_mean and so on, are left out: median and spread made here)
    awk '
        function ns(v, u) { return u == "us" ? v * 1000 : (u == "ms" ? v * 1000000 : v) }
        $1 ~ /^BM_/ && $1 !~ /_(mean|median|stddev|cv)$/ && NF >= 6 \
            && $3 ~ /^(ns|us|ms)$/ && $5 ~ /^(ns|us|ms)$/ && $4 + 0 > 0 {
            v[$1, ++n[$1]] = ns($4, $5)
        }
        END {
            names = split("BM_CacheLookupHit_1M BM_CacheLookupHit_1M_TableDigest " \
                          "BM_CacheLookupHitSameKey_1M BM_CacheLookupAbsent_1M " \
                          "BM_MemoryLatency_1M", order, " ")
            print "| benchmark | rounds | median CPU ns | min - max | median, in reads of the chain | goal |"
            print "|---|---:|---:|---|---:|---|"
            for (k = 1; k <= names; k++) {      # the medians, then the rows
                b = order[k]; m = n[b]
                if (m == 0) { continue }
                for (i = 1; i <= m; i++) { s[i] = v[b, i] }
                for (i = 2; i <= m; i++) {      # insertion sort: m is small
                    x = s[i]
                    for (j = i - 1; j >= 1 && s[j] > x; j--) { s[j + 1] = s[j] }
                    s[j + 1] = x
                }
                med[b] = (m % 2) ? s[(m + 1) / 2] : (s[m / 2] + s[m / 2 + 1]) / 2
                lo[b] = s[1]; hi[b] = s[m]
            }
            ref = med["BM_MemoryLatency_1M"]
            for (k = 1; k <= names; k++) {
                b = order[k]; m = n[b]
                if (m == 0) { continue }
                goal = (b == "BM_CacheLookupHit_1M") ? (med[b] <= 250 ? "at most 250: met" : "at most 250: NOT met") : ""
                ratio = (ref > 0) ? sprintf("%.2f", med[b] / ref) : "-"
                printf "| `%s` | %d | %.1f | %.1f - %.1f | %s | %s |\n", b, m, med[b], lo[b], hi[b], ratio, goal
            }
        }' "$rounds_out" >"$rounds_md"
    grep -q '`BM_CacheLookupHit_1M`' "$rounds_md" \
        || { cat "$rounds_out" >&2; die "no rounds of BM_CacheLookupHit_1M in the output"; }
    echo
    echo "The cache lookups in 1,000,000 keys, $ROUNDS round(s) each, interleaved:"
    cat "$rounds_md"
fi

{
    echo "## Micro-benchmarks of the core (\`make bench-micro\`)"
    echo
    echo "Google Benchmark, bench/micro/micro.cpp linked with the core's objects"
    echo "(build/core/*.o, \`-O2\`), pinned to CPU 1. \"CPU\" is the figure to read: the"
    echo "machine is a 2-vCPU VM, where wall time also counts time the vCPU was not running."
    echo "Keys are 40 bytes; the cache holds 1,000,000 entries (146 MB with its 10% spare: a random"
    echo "lookup misses the TLB, and the CPU caches where the last-level cache, in Google"
    echo "Benchmark's header below, is smaller than that); rules: 10 CIDRs, 10 referrer patterns,"
    echo "the request matching the last one (match:1) or none (match:0). The \"DEBUG\" warning is"
    echo "about Debian's build of the Google Benchmark library, not about the code measured."
    echo
    BENCH_TOP=$BENCH_TOP machine_info
    echo
    echo '```'
    cat "$out"
    echo '```'
    if [ "$ROUNDS" -gt 0 ]; then
        echo
        echo "The cache lookups in 1,000,000 keys again, $ROUNDS round(s) of ${BENCH_MICRO_MIN_TIME:-0.2} s each, the"
        echo "rounds of the five interleaved in a random order (Google Benchmark's"
        echo "\`--benchmark_enable_random_interleaving\`), same pinning; CPU ns per lookup"
        echo "(the goal of \`BM_CacheLookupHit_1M\` is read from the median). \`BM_MemoryLatency_1M\`"
        echo "is the machine's reference, interleaved with them: a chain of reads in a block of the"
        echo "cache's size, each read's address taken from the one before, so that none overlaps"
        echo "another (each misses the TLB, and the CPU caches where the last-level cache is"
        echo "smaller than the block). A random hit needs about one such read: its bucket group"
        echo "and its home slots are fetched at once; one lookup's misses may overlap the next's."
        echo
        cat "$rounds_md"
    fi
} >"$md"
replace_section "$RESULTS" micro "$md"
