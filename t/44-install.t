# SPDX-License-Identifier: BSD-2-Clause
# make install DESTDIR=...: Debian's layout (the module in
# /usr/lib/nginx/modules, mod-http-api-key.conf in
# /usr/share/nginx/modules-available, the enabled link
# /etc/nginx/modules-enabled/50-mod-http-api-key.conf, apikeyctl in
# $(PREFIX)/bin, apikeyctl.1 in $(PREFIX)/share/man/man1); nginx -t loads
# the module through the installed conf (-p/-c inside DESTDIR); the man page
# renders without warnings and names every command and option of
# apikeyctl --help; PREFIX and MODULES_DIR are honoured; make uninstall
# removes every file.
use strict;
use warnings;
use Test::More;
use File::Compare qw(compare);
use lib 't/lib';
use ApiKeyTest;

require_module();
plan skip_all => 'make install would rebuild build/asan without the sanitizer flags'
    if ApiKeyTest::sanitizing();

my $build = $ENV{AK_BUILD} // 'build';
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};

sub make {
    my (@args) = @_;
    my $out = `make -s @args BUILD=$build 2>&1`;
    return ($out, $?);
}

my $d = tmpdir();
my ($out, $st) = make('install', "DESTDIR=$d");
is($st, 0, 'make install DESTDIR=... succeeds') or diag($out);

my %files = (
    'usr/lib/nginx/modules/ngx_http_api_key_module.so' => 0644,
    'usr/share/nginx/modules-available/mod-http-api-key.conf' => 0644,
    'usr/bin/apikeyctl' => 0755,
    'usr/share/man/man1/apikeyctl.1' => 0644,
);
for my $f (sort keys %files) {
    ok(-f "$d/$f", "$f installed");
    is((stat "$d/$f")[2] & 07777, $files{$f}, sprintf("$f mode %04o", $files{$f}));
}
is(compare("$d/usr/lib/nginx/modules/ngx_http_api_key_module.so",
           "$build/ngx_http_api_key_module.so"), 0, 'the module is the one built');
is(slurp("$d/usr/share/nginx/modules-available/mod-http-api-key.conf"),
   "load_module modules/ngx_http_api_key_module.so;\n",
   'mod-http-api-key.conf: the load_module line, as Debian writes it');
my $link = "$d/etc/nginx/modules-enabled/50-mod-http-api-key.conf";
ok(-l $link, 'modules-enabled/50-mod-http-api-key.conf is a link');
is(readlink($link), '../../../usr/share/nginx/modules-available/mod-http-api-key.conf',
   '... relative, to modules-available');
ok(-f $link, '... that resolves inside DESTDIR');
like(`$d/usr/bin/apikeyctl --version`, qr/^apikeyctl \d/, 'the installed apikeyctl runs');

# --- the man page -----------------------------------------------------------
my $man = "$d/usr/share/man/man1/apikeyctl.1";
SKIP: {
    skip 'groff is not installed', 2 if system('command -v groff >/dev/null') != 0;
    my $warn = `LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z $man 2>&1`;
    is($?, 0, 'groff -man -ww: exit 0');
    is($warn, '', 'groff -man -ww: no warning') or diag($warn);
}
my $text = `LC_ALL=C.UTF-8 MANWIDTH=80 man -l $man 2>/dev/null | col -b`;
SKIP: {
    skip 'man is not installed', 1 unless length $text;
    like($text, qr/^NAME\n\s+apikeyctl - /m, 'man -l renders it');
}
$text = `LC_ALL=C.UTF-8 groff -man -Tascii $man 2>/dev/null | col -b` unless length $text;
for my $sec ('NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'COMMANDS', 'ENVIRONMENT',
             'EXIT STATUS', 'EXAMPLES', 'SEE ALSO') {
    like($text, qr/^\Q$sec\E$/m, "man page: section $sec");
}
# every command and option of apikeyctl --help (and of each command's)
my $help = `$build/apikeyctl --help`;
my ($cmds) = $help =~ /^commands:\n(.*?)\n\n/ms;
my @cmds = $cmds =~ /^  (\w+)/mg;
ok(@cmds >= 8, 'apikeyctl --help lists the commands') or diag($help);
my %opts;
$opts{$_} = 'global' for $help =~ /(--[a-z][a-z-]+)/g;
for my $c (@cmds) {
    like($text, qr/^\s+\Q$c\E$/m, "man page: command $c has its section");
    my $ch = `$build/apikeyctl $c --help`;
    $opts{$_} //= $c for $ch =~ /(--[a-z][a-z-]+)/g;
}
for my $o (sort keys %opts) {
    like($text, qr/(?<![\w-])\Q$o\E(?![\w-])/, "man page: $o (from $opts{$o} --help)");
}
for my $e ($help =~ /\b(APIKEY_[A-Z_]+)/g) {
    like($text, qr/^\s+\Q$e\E$/m, "man page: ENVIRONMENT names $e");
}

# --- nginx -t through the installed conf, as Debian's nginx.conf includes it -
{
    # nginx-common's /usr/share/nginx/modules -> ../../lib/nginx/modules
    symlink('../../lib/nginx/modules', "$d/usr/share/nginx/modules") or die "symlink: $!";
    my $r = ApiKeyTest::Redis->start;
    my $port = free_port();
    my $conf = <<"EOT";
pid $d/nginx.pid;
error_log $d/error.log;
include $d/etc/nginx/modules-enabled/*.conf;
events {}
http {
    client_body_temp_path $d/tmp;
    proxy_temp_path $d/tmp;
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:@{[ $r->port ]};
    server {
        listen 127.0.0.1:$port;
        api_key keys;
    }
}
EOT
    spew("$d/etc/nginx/nginx.conf", $conf);
    my $o = run_nginx('-p', "$d/usr/share/nginx/", '-c', "$d/etc/nginx/nginx.conf", '-t');
    is($?, 0, 'nginx -t loads the module through modules-enabled') or diag($o);
    like($o, qr/syntax is ok/, 'nginx -t: syntax is ok');

    # and without the include, api_key_zone is unknown: the include did it
    (my $bare = $conf) =~ s/^include [^\n]*\n//m;
    spew("$d/etc/nginx/nginx.conf", $bare);
    $o = run_nginx('-p', "$d/usr/share/nginx/", '-c', "$d/etc/nginx/nginx.conf", '-t');
    like($o, qr/unknown directive "api_key_zone"/, 'without the include the module is not loaded');
    unlink "$d/etc/nginx/nginx.conf", "$d/usr/share/nginx/modules";
}

# --- make uninstall -------------------------------------------------------------
($out, $st) = make('uninstall', "DESTDIR=$d");
is($st, 0, 'make uninstall succeeds') or diag($out);
my @left = grep { -f || -l } map { chomp; $_ } `find $d -mindepth 1 ! -type d`;
is_deeply(\@left, [grep { /nginx\.pid|error\.log/ } @left], 'make uninstall removes every installed file')
    or diag("@left");

# --- PREFIX and MODULES_DIR -------------------------------------------------------
{
    my $d2 = tmpdir();
    ($out, $st) = make('install', "DESTDIR=$d2", 'PREFIX=/usr/local',
                       'MODULES_DIR=/opt/nginx/modules');
    is($st, 0, 'make install PREFIX=/usr/local MODULES_DIR=...') or diag($out);
    ok(-x "$d2/usr/local/bin/apikeyctl", 'apikeyctl in PREFIX/bin');
    ok(-f "$d2/usr/local/share/man/man1/apikeyctl.1", 'apikeyctl.1 in PREFIX/share/man/man1');
    ok(-f "$d2/opt/nginx/modules/ngx_http_api_key_module.so", 'the module in MODULES_DIR');
    is(slurp("$d2/usr/share/nginx/modules-available/mod-http-api-key.conf"),
       "load_module /opt/nginx/modules/ngx_http_api_key_module.so;\n",
       'another MODULES_DIR: the load_module line has its absolute path');
    ($out, $st) = make('uninstall', "DESTDIR=$d2", 'PREFIX=/usr/local',
                       'MODULES_DIR=/opt/nginx/modules');
    is(`find $d2 ! -type d`, '', 'make uninstall with the same variables removes them');
}

done_testing();
