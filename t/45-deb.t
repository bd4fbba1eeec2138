# SPDX-License-Identifier: BSD-2-Clause
# make deb, then the packages on this machine: dpkg -i of
# libnginx-mod-http-api-key and apikeyctl; nginx -t with Debian's stock
# /etc/nginx/nginx.conf plus a site using the module (in sites-enabled for
# the time of the check); a request served, with a key made by the installed
# apikeyctl, by an nginx running the stock configuration (a copy whose pid,
# logs, temp paths and site are the test's); dpkg --purge; and the system as
# before (/etc/nginx, the module and conf directories, /usr/bin/apikeyctl,
# the man page, /var/lib/nginx's owners, /var/log/nginx, dpkg's status).
#
# It changes the system while it runs, so it runs only as root with dpkg,
# when neither package is installed already, and not with AK_DEB_TEST=0
# (README: Tests). Not under the sanitizers (the packages build their own
# module).
use strict;
use warnings;
use Test::More;
use Digest::SHA ();
use POSIX qw(:sys_wait_h);
use lib 't/lib';
use ApiKeyTest;

my @pkgs = qw(libnginx-mod-http-api-key apikeyctl);
my $site_file = '/etc/nginx/sites-enabled/zz-api-key-deb-test.conf';
my ($nginx_pid, $installed, %before);

plan skip_all => 'AK_DEB_TEST=0' if ($ENV{AK_DEB_TEST} // '') eq '0';
plan skip_all => 'installs packages: root only' if $> != 0;
plan skip_all => 'dpkg and dpkg-buildpackage are needed'
    if system('command -v dpkg dpkg-buildpackage dpkg-deb >/dev/null') != 0;
plan skip_all => 'the packages build their own module (not under the sanitizers)'
    if ApiKeyTest::sanitizing();
for my $p (@pkgs) {
    my $st = `dpkg-query -W -f='\${Status}' $p 2>/dev/null`;
    plan skip_all => "$p is installed already: left alone" if $st =~ /installed|config-files/;
}
plan skip_all => 'no stock /etc/nginx/nginx.conf' unless -f '/etc/nginx/nginx.conf';

my $build = $ENV{AK_BUILD} // 'build';
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};
$ENV{AK_TEST_TIMEOUT} = 600;
alarm 600;    # the package build compiles everything once


# --- the state of the system, before and after ----------------------------
sub snapshot {
    my %s;
    for my $root ('/etc/nginx', '/usr/share/nginx/modules-available',
                  '/usr/lib/nginx/modules', '/var/lib/nginx', '/var/log/nginx') {
        next unless -e $root;
        for my $f (sort split /\n/, `find $root -mindepth 1`) {
            my @st = lstat $f or next;
            my $v = sprintf '%o %d:%d', $st[2], $st[4], $st[5];
            if (-l $f) {
                $v .= ' -> ' . readlink($f);
            } elsif (-f _) {
                $v .= ' ' . Digest::SHA->new(256)->addfile($f)->hexdigest;
            }
            $s{$f} = $v;
        }
    }
    $s{$_} = -e $_ ? 'present' : 'absent'
        for '/usr/bin/apikeyctl', '/usr/share/man/man1/apikeyctl.1.gz';
    for my $p (@pkgs) {
        $s{"dpkg:$p"} = `dpkg-query -W -f='\${Status}' $p 2>/dev/null` || 'unknown';
    }
    return %s;
}

# puts back what nginx itself changes (nginx -t with the stock configuration
# creates its logs, creates its temp directories where there were none, as
# on a machine where Debian's nginx never ran, and gives them to its user)
sub restore {
    for my $f (sort keys %before) {
        next unless $f =~ m{^/var/lib/nginx/} && -d $f;
        my ($uid, $gid) = $before{$f} =~ /^\d+ (\d+):(\d+)/ or next;
        chown $uid, $gid, $f;
    }
    for my $f (split /\n/, `find /var/lib/nginx -mindepth 1 -maxdepth 1 -type d 2>/dev/null`) {
        rmdir $f unless exists $before{$f};     # only if empty
    }
    for my $f (split /\n/, `find /var/log/nginx -mindepth 1 2>/dev/null`) {
        unlink $f unless exists $before{$f};
    }
}

sub cleanup {
    unlink $site_file if %before;
    if ($nginx_pid) {
        kill 'QUIT', $nginx_pid;
        for (1 .. 50) { last if waitpid($nginx_pid, WNOHANG) != 0; sleep 0.1 }
        kill 'KILL', $nginx_pid;
        waitpid($nginx_pid, 0);
        undef $nginx_pid;
    }
    if ($installed) {
        system("dpkg --purge @pkgs >/dev/null 2>&1");
        undef $installed;
    }
    restore() if %before;
}
END { local $?; cleanup() }

%before = snapshot();

# --- make deb ---------------------------------------------------------------
my $out = `make -s deb BUILD=$build 2>&1`;
is($?, 0, 'make deb succeeds') or diag($out);
chomp(my $version = `dpkg-parsechangelog -S Version -l debian/changelog`);
chomp(my $arch = `dpkg --print-architecture`);
my %deb = map { $_ => "$build/deb/${_}_${version}_$arch.deb" } @pkgs;
ok(-f $deb{$_}, "$_\_${version}_$arch.deb built") for @pkgs;

my ($abi) = slurp('/usr/share/nginx/src/debian/libnginx-mod.abisubstvars') =~ /^nginx:abi=(\S+)/m;
ok($abi, "nginx-dev names its ABI ($abi)");
my $dep = `dpkg-deb -f $deb{'libnginx-mod-http-api-key'} Depends`;
like($dep, qr/(?:^|, )\Q$abi\E(?:,|$)/m, "the module depends on $abi (the exact nginx build)");
unlike(`dpkg-deb -f $deb{apikeyctl} Depends`, qr/nginx/, 'apikeyctl does not depend on nginx');
like(`dpkg-deb -c $deb{'libnginx-mod-http-api-key'}`,
     qr{\./usr/share/nginx/modules-available/mod-http-api-key\.conf$}m,
     'the package ships mod-http-api-key.conf (dh_nginx)');

# --- dpkg -i ----------------------------------------------------------------
$installed = 1;
$out = `dpkg -i $deb{'libnginx-mod-http-api-key'} $deb{apikeyctl} 2>&1`;
is($?, 0, 'dpkg -i of both packages') or diag($out);
is(readlink('/etc/nginx/modules-enabled/50-mod-http-api-key.conf'),
   '/usr/share/nginx/modules-available/mod-http-api-key.conf',
   'postinst enabled the module (modules-enabled/50-mod-http-api-key.conf)');
is(slurp('/usr/share/nginx/modules-available/mod-http-api-key.conf'),
   "load_module modules/ngx_http_api_key_module.so;\n", 'its load_module line');
like(`dpkg -S /usr/bin/apikeyctl 2>&1`, qr/^apikeyctl: /, '/usr/bin/apikeyctl is the package\'s');
like(`man -w apikeyctl 2>&1`, qr{/usr/share/man/man1/apikeyctl\.1\.gz}, 'man apikeyctl finds its page')
    if system('command -v man >/dev/null') == 0;

# --- nginx -t: the stock nginx.conf plus a site using the module -----------
my $r = ApiKeyTest::Redis->start;
my $port = free_port();
my $d = tmpdir();
mkdir "$d/html";
chmod 0755, "$d/html";
spew("$d/html/index.html", "hello from the package\n");
chmod 0644, "$d/html/index.html";
my $site = <<"EOT";
# written by t/45-deb.t, removed by it
api_key_zone  debtest:1m;
api_key_redis redis://127.0.0.1:@{[ $r->port ]} timeout=2s;

server {
    listen 127.0.0.1:$port;
    location / {
        api_key debtest;
        api_key_error_body json;
        root $d/html;
    }
}
EOT
spew($site_file, $site);
$out = `nginx -t 2>&1`;
is($?, 0, 'nginx -t: /etc/nginx/nginx.conf as shipped, the module, the site') or diag($out);
like($out, qr{configuration file /etc/nginx/nginx\.conf test is successful}, 'nginx -t: successful');
unlink $site_file;

# --- served, by the stock configuration (a copy, with the test's site) -------
{
    my $stock = slurp('/etc/nginx/nginx.conf');
    my $copy = $stock;
    my $n = 0;
    $n += $copy =~ s{^pid \S+;}{pid $d/nginx.pid;}m;
    $n += $copy =~ s{^error_log \S+;}{error_log $d/error.log;}m;
    $n += $copy =~ s{^(\s*)access_log \S+;}{$1access_log $d/access.log;}m;
    $n += $copy =~ s{^(\s*)include /etc/nginx/sites-enabled/\*;}{$1include $d/site.conf;}m;
    my $temp = join '', map { "\t${_}_temp_path $d/tmp/$_;\n" }
                            qw(client_body proxy fastcgi uwsgi scgi);
    $n += $copy =~ s!^(http \{\n)!$1$temp!m;
    is($n, 5, 'the copy of the stock nginx.conf: pid, logs, temp paths, the site');
    mkdir "$d/tmp";
    spew("$d/site.conf", $site);
    spew("$d/nginx.conf", $copy);
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$d/nginx.out";
        open STDERR, '>&', \*STDOUT;
        exec('/usr/sbin/nginx', '-c', "$d/nginx.conf", '-g', 'daemon off;') or POSIX::_exit(127);
    }
    $nginx_pid = $pid;
    ok(wait_until(sub { http_get($port, '/', timeout => 1)->status > 0 }, timeout => 10),
       'nginx with the stock configuration answers') or diag(slurp("$d/nginx.out"), slurp("$d/error.log"));

    my $res = http_get($port, '/');
    is($res->status, 401, 'no key: 401');
    is($res->header('content-type'), 'application/problem+json', 'no key: problem+json');

    my $key = `/usr/bin/apikeyctl --redis redis://127.0.0.1:@{[ $r->port ]} create --owner deb 2>/dev/null`;
    chomp $key;
    like($key, qr/^ak_\w+$/, 'the installed apikeyctl made a key');
    $res = http_get($port, '/', headers => { 'X-API-Key' => $key });
    is($res->status, 200, 'the key is served') or diag($res->as_string);
    is($res->body, "hello from the package\n", 'the page');

    kill 'QUIT', $nginx_pid;
    ok(wait_until(sub { waitpid($nginx_pid, WNOHANG) == $nginx_pid }, timeout => 10),
       'nginx stopped');
    undef $nginx_pid;
    unlike(slurp("$d/error.log") // '', qr/\[(?:alert|crit|emerg)\]/, 'no alert in its error log');
    unlike(slurp("$d/error.log") . (slurp("$d/access.log") // ''), qr/\Q$key\E/,
           'the key is not in its logs') if length $key;
}

# --- dpkg --purge: the system as it was -----------------------------------------
$out = `dpkg --purge @pkgs 2>&1`;
is($?, 0, 'dpkg --purge of both packages') or diag($out);
undef $installed;
ok(!-e '/etc/nginx/modules-enabled/50-mod-http-api-key.conf'
   && !-e '/etc/nginx/modules-enabled/50-mod-http-api-key.conf.removed',
   'postrm removed the enabled link');
restore();
my %after = snapshot();
my @diff = grep { ($before{$_} // 'none') ne ($after{$_} // 'none') }
           sort(keys %{{ %before, %after }});
is_deeply(\@diff, [], 'the system is as before')
    or diag(join "\n", map { "$_: " . ($before{$_} // 'none') . ' => ' . ($after{$_} // 'none') } @diff);

done_testing();
