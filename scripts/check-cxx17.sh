#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Refuses a C++ compiler that cannot build the core as C++17.
# CXX (environment): the compiler; arguments: the flags the core is built
# with (-std=c++17 among them). Used by the Makefile before the first C++
# object and by the addon config.
set -u
cxx=${CXX:-g++}
out=$(printf '%s\n' \
    '#if !defined(__cplusplus) || __cplusplus < 201703L' \
    '#error the C++ core needs C++17' \
    '#endif' \
    'int main() { return 0; }' \
    | $cxx "$@" -x c++ -fsyntax-only - 2>&1)
if [ $? -ne 0 ]; then
    printf '%s\n' "$out" >&2
    echo "error: '$cxx $*' does not compile C++17; the C++ core (src/core)" \
         "needs a C++17 compiler (g++ 7 or clang 5 or later): set CXX=..." >&2
    exit 1
fi
