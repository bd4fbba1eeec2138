#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
#
# scripts/spdx.sh [--fix]: every source file of the project (what git
# tracks: C, C++, Perl, Python, Lua, shell, make, nginx configuration,
# Debian packaging, roff) carries "SPDX-License-Identifier: BSD-2-Clause"
# in its first lines (LICENSE).
# Without --fix, lists the files without it and fails (make check-spdx,
# part of make test); with --fix, adds it in the comment syntax of each
# file (after a #! line).  Seed corpora, crash inputs and documents
# (Markdown, CSV, PNG) are data, not sources, and are left alone.

id='SPDX-License-Identifier: BSD-2-Clause'
fix=0
[ "${1:-}" = "--fix" ] && fix=1

missing=0
checked=0

for f in $(git ls-files); do
    case "$f" in
        fuzz/corpus/*|fuzz/crashes/*|*.md|*.csv|*.png|*.svg|LICENSE) continue ;;
        *.c|*.h|*.cpp|*.hpp|*.map)        style=c ;;
        *.1)                              style=roff ;;
        *.pl|*.pm|*.t|*.sh|*.py|*.conf|*.inc|Makefile|config|*.mk|.ci/*|*.gp|*.gnuplot) style=hash ;;
        *.lua)                            style=lua ;;
        debian/rules|debian/*.install|debian/control|debian/*.links) style=hash ;;
        *) continue ;;
    esac

    [ -f "$f" ] || continue
    checked=$((checked + 1))

    if head -n 5 "$f" | grep -q "$id"; then
        continue
    fi

    if [ $fix -eq 0 ]; then
        echo "no SPDX line: $f"
        missing=$((missing + 1))
        continue
    fi

    tmp="$f.spdx.$$"
    case $style in
        c)    { echo "/* $id */"; cat "$f"; } >"$tmp" ;;
        roff) { echo ".\\\" $id"; cat "$f"; } >"$tmp" ;;
        lua)  { echo "-- $id"; cat "$f"; } >"$tmp" ;;
        hash)
            if head -n 1 "$f" | grep -q '^#!'; then
                { head -n 1 "$f"; echo "# $id"; tail -n +2 "$f"; } >"$tmp"
            else
                { echo "# $id"; cat "$f"; } >"$tmp"
            fi ;;
    esac
    chmod --reference="$f" "$tmp"
    mv "$tmp" "$f"
    echo "added: $f"
done

if [ $missing -ne 0 ]; then
    echo "$missing source files without \"$id\" (scripts/spdx.sh --fix adds it)"
    exit 1
fi

[ $fix -eq 1 ] || echo "check-spdx: $checked source files, each with \"$id\""
