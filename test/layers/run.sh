#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Self-test of scripts/check-layers.pl (make check-layers-selftest, run by
# make test) on four fake glue files, fx_top.c > fx_mid.c > fx_low.c and
# fx_leaf.c (one layer), layers in layers.conf:
#   clean     top -> mid -> low, leaf              accepted
#   up        low calls top, leaf reads mid's variable   rejected, both listed
#   same      low and leaf call each other (a cycle in one layer)   rejected
#   unlisted  an object that the table does not place   rejected (status 2)
# $1: a scratch directory for the objects. CC: the C compiler.
set -u
here=$(cd "$(dirname "$0")" && pwd)
check=$here/../../scripts/check-layers.pl
out=${1:?usage: run.sh SCRATCH_DIR}
CC=${CC:-cc}
failed=0

build() {   # case, compiler flags
    dir=$out/$1
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    for f in top mid low leaf; do
        $CC -c -O0 "$@" -o "$dir/fx_$f.o" "$here/fx_$f.c" || exit 2
    done
}

expect() {  # case, exit status, lines the output must have
    name=$1
    want=$2
    shift 2
    got=$(perl "$check" "$here/layers.conf" "$out/$name"/*.o 2>&1)
    status=$?
    ok=1
    if [ "$status" -ne "$want" ]; then
        echo "layers self-test '$name': exit status $status, want $want"
        ok=0
    fi
    for line in "$@"; do
        if ! printf '%s\n' "$got" | grep -qxF "$line"; then
            echo "layers self-test '$name': no line '$line'"
            ok=0
        fi
    done
    if [ $ok -eq 0 ]; then
        printf '%s\n' "$got" | sed 's/^/    | /'
        failed=1
    else
        echo "layers self-test '$name': ok"
    fi
}

build clean
expect clean 0

build up -DUP
expect up 1 '  low.c -> top.c (fx_top_wake)' '  leaf.c -> mid.c (fx_mid_state)'

build same -DSAME
expect same 1 '  low.c -> leaf.c (fx_leaf_get)' '  leaf.c -> low.c (fx_low_get)'

build unlisted
echo 'int fx_extra_count;' | $CC -c -x c -o "$out/unlisted/fx_extra.o" - \
    || exit 2
expect unlisted 2 \
    "$here/layers.conf: extra.c has no layer: add it to a \"layer\" line"

exit $failed
