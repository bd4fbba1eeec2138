#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/scale.sh BUILD_DIR: `make bench-scale`.  Runs BUILD_DIR/bench/scale_bench
# (bench/scale/scale.cpp: the core cache in one MAP_SHARED mapping, filled,
# then N forked processes doing random hits), prints its table and replaces
# the section of bench/RESULTS.md of each mode run: "scale-lockfree" for
# lockfree (the module's lookups), then "scale" for lock (every lookup under
# a mutex, as before lock-free reads: the comparison).
#
# Environment: SCALE_MODE ("lockfree lock": both, one after the other; or
# one of them), SCALE_PROCS (1,2,4,8), SCALE_SECONDS
# (2), SCALE_ROUNDS (5), SCALE_KEYS (1000000), SCALE_WRITER_RATE (0: no
# writer; else puts per second by one more process), BENCH_RESULTS (the
# file written, bench/RESULTS.md; "-": none).
set -eu -o pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$BENCH_TOP/bench
BUILD=$(cd "${1:-$BENCH_TOP/build}" && pwd)
SCALE=$BUILD/bench/scale_bench
RESULTS=${BENCH_RESULTS:-$BENCH/RESULTS.md}
MODES=${SCALE_MODE:-lockfree lock}
PROCS=${SCALE_PROCS:-1,2,4,8}
SECONDS_=${SCALE_SECONDS:-2}
ROUNDS=${SCALE_ROUNDS:-5}
KEYS=${SCALE_KEYS:-1000000}
WRATE=${SCALE_WRITER_RATE:-0}

. "$BENCH/lib.sh"

[ -x "$SCALE" ] || die "no $SCALE (make bench-scale builds it)"
out=$(mktemp)
md=$(mktemp)
trap 'rm -f "$out" "$md"' EXIT

for MODE in $MODES; do
    case $MODE in
        lock|lockfree) ;;
        *) die "SCALE_MODE: lock or lockfree, not $MODE" ;;
    esac
done

for MODE in $MODES; do
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    "$SCALE" --mode "$MODE" --procs "$PROCS" --seconds "$SECONDS_" \
        --rounds "$ROUNDS" --keys "$KEYS" --writer-rate "$WRATE" >"$out"
    cat "$out"
    [ "$RESULTS" = - ] && continue

    section=scale
    [ "$MODE" = lock ] || section=scale-$MODE
    {
        echo "## The cache shared by N processes, mode $MODE (\`make bench-scale\`)"
        echo
        echo "bench/scale/scale.cpp: the core cache (ak_cache_create) in one anonymous MAP_SHARED"
        echo "mapping holding $KEYS keys (a typical record: owner, plan, rate, burst; filled before"
        echo "the fork, nothing evicted), then N forked processes, pinned round-robin to the CPUs,"
        echo "each doing random hits (ak_cache_lookup of a present key, record copied out) for"
        echo "${SECONDS_} s; $ROUNDS rounds, the Ns interleaved; median (min..max) over the rounds."
        echo "\"x N=1\" is the scaling ratio of the total hits/s; \"CPU ns/hit\" is the CPU time the"
        echo "readers used (CLOCK_PROCESS_CPUTIME_ID) per hit, which oversubscription does not inflate"
        echo "unless the processes burn CPU waiting for each other; \"CPUs used\": the readers' CPU time"
        echo "over the wall time (below min(N, cores) when other work shares the machine: then the"
        echo "machine, not the cache, limits the scaling). Goals (issue 17): N=2 >= 1.8x N=1;"
        echo "ns/hit at N=8 within 20% of N=1. The machine has $(nproc) cores: N > $(nproc) is oversubscribed."
        if [ "$MODE" = lock ]; then
            echo "Mode lock (the module before lock-free reads, for comparison): every lookup under a"
            echo "process-shared lock taken as nginx's ngx_shmtx_lock takes a zone's mutex on Linux"
            echo "(compare-and-swap of a lock word, then pause-instruction spins doubling up to 2048,"
            echo "then a wait on a process-shared POSIX semaphore that the unlocker posts; retries:"
            echo "not applicable)."
        else
            echo "Mode $MODE: lookups without any lock (AK_CACHE_LOCKFREE_READS); \"retries/hit\" is"
            echo "the core's count of reader retries per hit, when its statistics have one."
        fi
        [ "$WRATE" = 0 ] || echo "One more process puts $WRATE records per second under the lock."
        echo
        BENCH_TOP=$BENCH_TOP machine_info | sed "s/load average at start: .*/load average at start: $load0/"
        echo
        cat "$out"
    } >"$md"
    replace_section "$RESULTS" "$section" "$md"
    echo "bench/scale.sh: section $section of $RESULTS replaced" >&2
done
