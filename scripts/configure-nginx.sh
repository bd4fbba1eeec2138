#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Runs nginx's configure in the current (copied) build tree with the flags of
# the nginx that will load the module, plus this module as a dynamic module.
# $1: the module's source directory.
# AK_CC_OPT / AK_LD_OPT (environment): extra compiler / linker flags, e.g.
# -fsanitize=address,undefined for the sanitizer build (make test-asan).
# AK_CORE_LIB (environment): the C++ core's static library (libakcore.a,
# built by the Makefile) that the addon config links into the module.
set -e
moddir=$1
case "${AK_CORE_LIB:-}" in
    /*) export AK_CORE_LIB ;;
    *)  echo "configure-nginx.sh: AK_CORE_LIB must name the core library" \
             "by its absolute path (the Makefile sets it)" >&2
        exit 1 ;;
esac
if [ -n "${AK_CONF_ARGS:-}" ]; then
    # the target nginx's own configure arguments, one a line (written by
    # scripts/build-for-nginx.sh from its nginx -V): used as they are
    [ -f "$AK_CONF_ARGS" ] || { echo "configure-nginx.sh: no file $AK_CONF_ARGS" >&2; exit 1; }
    if [ ! -x configure ] && [ -x auto/configure ]; then
        cp auto/configure configure
    fi
    set --
    while IFS= read -r a; do
        [ -z "$a" ] || set -- "$@" "$a"
    done <"$AK_CONF_ARGS"
    ./configure "$@" --add-dynamic-module="$moddir" >configure.log 2>&1 \
        || { tail -30 configure.log >&2; exit 1; }
    exit 0
fi
flags=""
if [ -f conf_flags ]; then
    # Debian's nginx-dev: NGX_CONF_FLAGS=( ... )
    flags=$(sed -n 's/^NGX_CONF_FLAGS=( *\(.*\) *)$/\1/p' conf_flags)
fi
if [ ! -x configure ] && [ -x auto/configure ]; then
    cp auto/configure configure
fi
# shellcheck disable=SC2086
./configure $flags --with-compat \
    --with-cc-opt="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -D_FORTIFY_SOURCE=2 ${AK_CC_OPT:-}" \
    --with-ld-opt="-Wl,-z,relro -Wl,-z,now -fPIC ${AK_LD_OPT:-}" \
    --add-dynamic-module="$moddir" >configure.log 2>&1 \
    || { tail -30 configure.log >&2; exit 1; }
