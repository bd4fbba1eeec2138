#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# fuzz/run.sh BUILD SECONDS TARGET...: runs each libFuzzer target of
# BUILD for SECONDS from its committed seeds (fuzz/corpus/TARGET), one at a
# time; new inputs go to BUILD/corpus/TARGET, a crash to
# BUILD/artifacts/TARGET/.  Prints executions, executions per second and
# the coverage (cov: edges, ft: features) of libFuzzer's last stats line.
# Fails when a target finds something.  fuzz/NAME.options, when there is
# one, holds more libFuzzer flags for that target (e.g. -max_len=4096).

set -u

build=$1
seconds=$2
shift 2

status=0
summary=""

for t in "$@"; do
    mkdir -p "$build/corpus/$t" "$build/artifacts/$t" "$build/logs"
    log="$build/logs/$t.log"
    opts=""
    if [ -f "fuzz/$t.options" ]; then
        opts=$(grep -v '^#' "fuzz/$t.options")
    fi
    echo "fuzz: $t for ${seconds}s $opts"
    # shellcheck disable=SC2086
    "$build/$t" -max_total_time="$seconds" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 $opts \
        -artifact_prefix="$build/artifacts/$t/" \
        "$build/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')

    if [ $rc -ne 0 ]; then
        status=1
        result="FAILED (exit $rc, see $log and $build/artifacts/$t/)"
        grep -E 'ERROR|check failed|runtime error' "$log" | head -5
    else
        result=ok
    fi

    line=$(printf '%-12s %12s execs %8s/s  cov: %-6s ft: %-6s %s' \
        "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result")
    echo "$line"
    summary="$summary$line
"
done

echo
echo "fuzz summary (${seconds}s per target):"
printf '%s' "$summary"

exit $status
