#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Builds the module for a given nginx binary: reads its version and configure
# arguments from `nginx -V`, configures a source tree of the same version with
# those arguments (plus this module as a dynamic module) and builds the
# module, then checks that this nginx loads it (nginx -t with load_module).
# Fetches nothing but, with --apt-source, Debian's source (apt-get source).
#
#   scripts/build-for-nginx.sh --nginx /usr/sbin/nginx --src ~/nginx-1.24.0
#   scripts/build-for-nginx.sh --nginx /usr/sbin/nginx --apt-source
#   scripts/build-for-nginx.sh --nginx /usr/local/openresty/nginx/sbin/nginx \
#       --src ~/openresty-1.25.3.2/bundle/nginx-1.25.3
#   scripts/build-for-nginx.sh --nginx NGINX --print     # what it would use
#   scripts/build-for-nginx.sh --nginx NGINX --check SO  # does NGINX load SO?
#
# README: Building against your nginx.
set -e

usage() {
    cat <<'EOT'
usage: scripts/build-for-nginx.sh [--nginx PATH] (--src DIR | --apt-source)
                                  [--build DIR] [--force-version] [--no-check]
       scripts/build-for-nginx.sh [--nginx PATH] --print
       scripts/build-for-nginx.sh [--nginx PATH] --check MODULE.so

  --nginx PATH     the nginx that will load the module (default: nginx in PATH)
  --src DIR        an nginx source tree of the same version (nginx-X.Y.Z, or
                   OpenResty's bundle/nginx-X.Y.Z)
  --apt-source     Debian's nginx only: apt-get source nginx=<its version>
                   into build/apt-source and use that tree
  --build DIR      the build directory (default build/for-nginx-VERSION)
  --force-version  build even if the tree's version is not the binary's
  --no-check       do not check that the nginx loads the result
  --print          print the version and the configure arguments it would
                   use (one a line; dropped ones on stderr), build nothing
  --check SO       only check that this nginx loads SO
EOT
}

die() { echo "build-for-nginx: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")/.." && pwd)
nginx=nginx
src=
apt=
build=
force=
check=1
mode=build
so=

while [ $# -gt 0 ]; do
    case $1 in
        --nginx)         [ $# -ge 2 ] || die "--nginx needs a path"; nginx=$2; shift ;;
        --src)           [ $# -ge 2 ] || die "--src needs a directory"; src=$2; shift ;;
        --apt-source)    apt=1 ;;
        --build)         [ $# -ge 2 ] || die "--build needs a directory"; build=$2; shift ;;
        --force-version) force=1 ;;
        --no-check)      check= ;;
        --print)         mode=print ;;
        --check)         [ $# -ge 2 ] || die "--check needs a module file"; mode=check; so=$2; shift ;;
        -h|--help)       usage; exit 0 ;;
        *)               usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

command -v "$nginx" >/dev/null 2>&1 || die "no nginx at $nginx (--nginx PATH)"
info=$("$nginx" -V 2>&1) || die "$nginx -V failed: $info"

# "nginx version: nginx/1.22.1", "nginx version: openresty/1.25.3.2",
# "nginx version: nginx/1.24.0 (Ubuntu)": the nginx core's X.Y.Z
product=$(printf '%s\n' "$info" | sed -n 's|^nginx version: \([A-Za-z_-]*\)/.*|\1|p' | head -n 1)
version=$(printf '%s\n' "$info" \
    | sed -n 's|^nginx version: [A-Za-z_-]*/\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*|\1|p' \
    | head -n 1)
[ -n "$version" ] || die "cannot read a version from \`$nginx -V\`"

args=$(printf '%s\n' "$info" | sed -n 's/^configure arguments: //p' | head -n 1)

# the target's configure arguments, one a line: xargs undoes the shell
# quoting that nginx -V prints (--with-cc-opt='-g -O2 ...') without running
# anything; arguments naming what is not here are dropped (they do not
# change the module signature)
kept=$(mktemp)
dropped=$(mktemp)
trap 'rm -f "$kept" "$dropped"' EXIT
if [ -n "$args" ]; then
    printf '%s\n' "$args" | xargs printf '%s\n' >"$kept.all" \
        || die "cannot parse the configure arguments of $nginx"
else
    : >"$kept.all"
fi
while IFS= read -r a; do
    case $a in
        --add-module=*|--add-dynamic-module=*|--with-*=dynamic)
            # other modules (and their libraries): not needed to build this
            # one, and not part of the signature
            echo "$a" >>"$dropped" ;;
        --with-openssl=*|--with-pcre=*|--with-zlib=*|--with-libatomic=*)
            # a library's source tree on the build machine
            if [ -d "${a#*=}" ]; then echo "$a" >>"$kept"; else echo "$a" >>"$dropped"; fi ;;
        '') ;;
        *)  echo "$a" >>"$kept" ;;
    esac
done <"$kept.all"
rm -f "$kept.all"

compat=
grep -qx -- '--with-compat' "$kept" && compat=1

if [ $mode = print ]; then
    echo "product $product"
    echo "version $version"
    echo "compat ${compat:-no}"
    cat "$kept"
    sed 's/^/dropped: /' "$dropped" >&2
    exit 0
fi

# nginx -t with the module loaded, in a scratch prefix
check_load() {
    m=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    [ -f "$m" ] || die "no module file $1"
    t=$(mktemp -d)
    cat >"$t/nginx.conf" <<EOT
load_module $m;
pid $t/nginx.pid;
error_log stderr;
events { }
http { }
EOT
    eopt=
    "$nginx" -h 2>&1 | grep -q -- '-e filename' && eopt="-e stderr"
    # shellcheck disable=SC2086
    if out=$("$nginx" -t -p "$t" -c "$t/nginx.conf" $eopt 2>&1); then
        rm -rf "$t"
        echo "build-for-nginx: $nginx loads $m"
        return 0
    fi
    rm -rf "$t"
    printf '%s\n' "$out" >&2
    case $out in
        *"not binary compatible"*)
            echo "build-for-nginx: the module's signature differs from this nginx's:" \
                 "build it with this nginx's configure arguments (this script does)" >&2 ;;
        *"instead of"*)
            echo "build-for-nginx: the module was built for another nginx version" >&2 ;;
    esac
    return 1
}

if [ $mode = check ]; then
    check_load "$so"
    exit $?
fi

# --- the source tree ---------------------------------------------------------

if [ -n "$apt" ]; then
    [ -z "$src" ] || die "--src and --apt-source exclude each other"
    bin=$(readlink -f "$(command -v "$nginx")")
    pkg=$(dpkg -S "$bin" 2>/dev/null | sed -n '1s/:.*//p')
    [ -n "$pkg" ] || die "$bin belongs to no Debian package: give its source with --src"
    srcver=$(dpkg-query -W -f='${source:Version}' "$pkg")
    mkdir -p "$here/build/apt-source"
    [ -d "$here/build/apt-source/nginx-$version" ] \
        || (cd "$here/build/apt-source" && apt-get source "nginx=$srcver" >apt-source.log 2>&1) \
        || die "apt-get source nginx=$srcver failed (deb-src configured?); see build/apt-source/apt-source.log"
    src="$here/build/apt-source/nginx-$version"
fi

[ -n "$src" ] || { usage >&2; die "give the source tree: --src DIR or --apt-source"; }
[ -d "$src" ] || die "no directory $src"
src=$(cd "$src" && pwd)
[ -f "$src/src/core/nginx.h" ] || die "$src is not an nginx source tree (no src/core/nginx.h)"
tree=$(sed -n 's/^#define NGINX_VERSION  *"\(.*\)"/\1/p' "$src/src/core/nginx.h")
if [ "$tree" != "$version" ]; then
    [ -n "$force" ] || die "$src is nginx $tree, $nginx is $version: nginx refuses a module" \
        "built for another version (--force-version to build anyway)"
    echo "build-for-nginx: building against $tree for an nginx $version (--force-version)" >&2
fi

[ -n "$compat" ] || echo "build-for-nginx: $nginx was built without --with-compat:" \
    "the module matches it only if the tree and compiler match its build too" >&2

[ -n "$build" ] || build="$here/build/for-nginx-$version"
mkdir -p "$build"
build=$(cd "$build" && pwd)
# the arguments as a file: a change configures the tree again
if ! cmp -s "$kept" "$build/configure-args" 2>/dev/null; then
    cp "$kept" "$build/configure-args"
fi
if [ -s "$dropped" ]; then
    sed 's/^/build-for-nginx: not passed on: /' "$dropped" >&2
fi

echo "build-for-nginx: nginx $version ($product), tree $src, build $build"
make -C "$here" module BUILD="$build" NGINX_SRC="$src" \
    NGINX_CONF_ARGS="$build/configure-args"

echo "build-for-nginx: $build/ngx_http_api_key_module.so"
[ -z "$check" ] || check_load "$build/ngx_http_api_key_module.so"
