# SPDX-License-Identifier: BSD-2-Clause
# scripts/build-for-nginx.sh without building: what it reads from a
# target's `nginx -V` (a fake nginx printing OpenResty-like output, shell
# quoting included), what it passes on and drops, its refusal of a source
# tree of another version, and --check against the real nginx with the
# module of this build (loads) and with a file that is no module.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

my $script = 'scripts/build-for-nginx.sh';
my $dir = tmpdir();

sub fake_nginx {
    my ($name, $version, $args) = @_;
    my $path = "$dir/$name";
    spew($path, <<"EOT", 0755);
#!/bin/sh
case "\$1" in
    -V) cat >&2 <<'EOV'
nginx version: $version
built by gcc 12.2.0 (Debian 12.2.0-14)
built with OpenSSL 3.0.11 19 Sep 2023
TLS SNI support enabled
configure arguments: $args
EOV
        exit 0 ;;
esac
exit 1
EOT
    return $path;
}

sub run {
    my (@a) = @_;
    my $out = `sh $script @a 2>$dir/err`;
    return ($? >> 8, $out, slurp("$dir/err"));
}

my $or = fake_nginx('openresty', 'openresty/1.25.3.2',
    q{--prefix=/usr/local/openresty/nginx --with-cc-opt='-O2 -DNGX_LUA_ABORT_AT_PANIC -I/usr/local/openresty/zlib/include' }
  . q{--add-module=../ngx_devel_kit-0.3.3 --add-module=../lua-nginx-module-0.10.26 }
  . q{--with-ld-opt="-Wl,-rpath,/usr/local/openresty/luajit/lib -L/usr/local/openresty/zlib/lib" }
  . q{--with-pcre-jit --with-stream --with-http_v2_module --with-http_image_filter_module=dynamic }
  . q{--with-openssl=/nonexistent/openssl-3.0.15 --with-threads --with-compat});

my ($rc, $out, $err) = run('--nginx', $or, '--print');
is($rc, 0, '--print exits 0') or diag $err;
my @l = split /\n/, $out;
is_deeply([ @l[0 .. 2] ], [ 'product openresty', 'version 1.25.3', 'compat 1' ],
          'OpenResty 1.25.3.2: the nginx core version 1.25.3, built --with-compat');
is_deeply([ @l[3 .. $#l] ], [
    '--prefix=/usr/local/openresty/nginx',
    '--with-cc-opt=-O2 -DNGX_LUA_ABORT_AT_PANIC -I/usr/local/openresty/zlib/include',
    '--with-ld-opt=-Wl,-rpath,/usr/local/openresty/luajit/lib -L/usr/local/openresty/zlib/lib',
    '--with-pcre-jit', '--with-stream', '--with-http_v2_module', '--with-threads', '--with-compat',
], 'the configure arguments, unquoted as the shell would, one a line') or diag $out;
is_deeply([ split /\n/, $err ], [
    'dropped: --add-module=../ngx_devel_kit-0.3.3',
    'dropped: --add-module=../lua-nginx-module-0.10.26',
    'dropped: --with-http_image_filter_module=dynamic',
    'dropped: --with-openssl=/nonexistent/openssl-3.0.15',
], 'dropped: other modules, dynamic ones, a library source tree that is not here') or diag $err;

# Debian's nginx as it is: what the Makefile's default build uses too
($rc, $out, $err) = run('--nginx', '/usr/sbin/nginx', '--print');
is($rc, 0, 'the real nginx: --print exits 0');
like($out, qr/^version \d+\.\d+\.\d+\ncompat 1\n/m, '... its version, built --with-compat');
like($out, qr/^--with-cc-opt=-g -O2 .*-D_FORTIFY_SOURCE=2$/m, '... --with-cc-opt in one piece');

# a tree of another version is refused
my $fake124 = fake_nginx('nginx124', 'nginx/1.24.0', '--with-compat');
($rc, $out, $err) = run('--nginx', $fake124, '--src', '/usr/share/nginx/src');
isnt($rc, 0, 'a source tree of another version: refused');
like($err, qr/is nginx 1\.22\.\d+, .* is 1\.24\.0/, '... naming both versions') or diag $err;

# nothing to build from
($rc, $out, $err) = run('--nginx', $fake124);
isnt($rc, 0, 'no --src nor --apt-source: refused');
like($err, qr/--src DIR or --apt-source/, '... saying what is missing');
($rc, $out, $err) = run('--nginx', "$dir/none", '--print');
isnt($rc, 0, 'no such nginx: refused');
($rc, $out, $err) = run('--frobnicate');
isnt($rc, 0, 'an unknown argument: refused');

# --check: does this nginx load the module?
SKIP: {
    my $so = module_path();
    skip 'the module is not built', 4 unless -f $so;
    # a sanitized module needs the runtimes preloaded: not this check's way
    skip 'sanitizer build', 4 if $ENV{AK_SANITIZE};
    ($rc, $out, $err) = run('--nginx', '/usr/sbin/nginx', '--check', $so);
    is($rc, 0, '--check: the real nginx loads this build\'s module') or diag $err;
    like($out, qr/loads /, '... and says so');
    spew("$dir/not-a-module.so", "junk");
    ($rc, $out, $err) = run('--nginx', '/usr/sbin/nginx', '--check', "$dir/not-a-module.so");
    isnt($rc, 0, '--check: a file that is no module: fails');
    like($err, qr/\[emerg\].*not-a-module\.so/, '... with nginx\'s error') or diag $err;
}

done_testing;
