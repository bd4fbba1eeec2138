#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Writes a new HMAC secret for "api_key_hash hmac-sha256 secret_file=FILE"
# (and apikeyctl --secret-file FILE): 32 random bytes as 64 hex digits and a
# newline, readable by its owner only.  An existing file is left alone: a
# new secret would make every stored key unusable.
#
#   sh scripts/make-secret.sh /etc/nginx/api-key.secret    (make secret SECRET=...)
set -eu
f=${1:?usage: make-secret.sh FILE}
if [ -e "$f" ]; then
    echo "make-secret: $f exists, kept (delete it first to make a new secret;" \
         "keys hashed with the old one stop working)" >&2
    exit 0
fi
umask 077
tmp="$f.tmp.$$"
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$tmp"
echo >>"$tmp"
[ "$(wc -c <"$tmp")" -eq 65 ] || { rm -f "$tmp"; echo "make-secret: could not read /dev/urandom" >&2; exit 1; }
mv "$tmp" "$f"
echo "make-secret: wrote $f (mode 0600)"
