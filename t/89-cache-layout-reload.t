# SPDX-License-Identifier: BSD-2-Clause
# A reload into a module whose cache layout differs from the one in shared
# memory (an upgrade of the module by nginx -s reload) must not reuse the
# block: the old workers still read and write it in their layout.  The
# reload fails with an [emerg] naming the zone and what differs, and the
# running configuration keeps serving.
#
# The other layout is made with gdb: the worker stops in
# ak_cache_gcra_found (a rated key's request) and the cache header's layout
# version is changed there (the workers' code never looks at it again; only attach does).
# Skipped when gdb cannot attach (no gdb, no ptrace).
use strict;
use warnings;
use Test::More;
use POSIX qw(:sys_wait_h);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

my $GDB = '/usr/bin/gdb';
plan skip_all => 'gdb is not installed' unless -x $GDB;

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        location / {
            try_files /ok.txt =404;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => 1, redis => $r,
    redis_clients => 2, vars => { REDIS => $r->port });
static_site($n);
my $port = $n->port;
my ($pid) = $n->worker_pids;

my $k = random_key('layout');
add_key($r, $k, rate => '100/s');
is(http_get($port, '/', headers => xkey($k))->status, 200,
   'a key with a rate: cached');

# the reload works while the layout is the same
ok($n->reload, 'a reload keeps the cache: same layout');
($pid) = $n->worker_pids;
is(http_get($port, '/', headers => xkey($k))->status, 200, '... and serves');

my $out = $n->dir . '/gdb.out';
my ($gpid, $ready) = gdb_at($pid, $out, 'ak_cache_gcra_found',
    'set var *(unsigned int *) ((char *) c + 8) = 2',
    'printf "VERSION SET\n"');
unless ($ready) {
    gdb_finish($gpid);
    my $o = slurp($out);
    $n->stop;
    plan skip_all => "gdb cannot stop the worker here: " . ((split /\n/, $o)[-1] // '');
}
is(http_get($port, '/', headers => xkey($k), timeout => 20)->status, 200,
   'the request gdb stopped passes');
gdb_finish($gpid);
like(slurp($out), qr/VERSION SET/, 'gdb changed the layout version');

$n->expect_problem(qr/\[emerg\].*api_key_zone "keys": the cache in shared memory cannot be kept/);
my $mark = $n->log_mark;
ok(!$n->reload, 'the reload into another layout fails');
like($n->error_log_since($mark),
     qr/\[emerg\].*api_key_zone "keys": the cache in shared memory cannot be kept \(cache layout version differs\): restart nginx/,
     '... with an emerg naming the zone and what differs');
is_deeply([ $n->worker_pids ], [ $pid ], 'the old worker goes on');
is(http_get($port, '/', headers => xkey($k))->status, 200, '... and serves');

# a restart starts the cache anew
$n->stop;
$n = ApiKeyTest::Nginx->start(http => $http, workers => 1, redis => $r,
    redis_clients => 2, vars => { REDIS => $r->port });
static_site($n);
is(http_get($n->port, '/', headers => xkey($k))->status, 200,
   'after a restart: served');

# --- a worker that died while writing (its flag left set, a count
# half-updated): a reload empties the cache and keeps the zone ------------

($pid) = $n->worker_pids;
my $out2 = $n->dir . '/gdb2.out';
# the header's "writing" flag (offset 108) and hwm (offset 100)
my ($gpid2, $ready2) = gdb_at($pid, $out2, 'ak_cache_gcra_found',
    'set var *(unsigned int *) ((char *) c + 108) = 1',
    'set var *(unsigned int *) ((char *) c + 100) += 1',
    'printf "WRITER DEAD\n"');
ok($ready2, 'gdb stops the new worker');
is(http_get($n->port, '/', headers => xkey($k), timeout => 20)->status, 200,
   'the request gdb stopped passes');
gdb_finish($gpid2);
like(slurp($out2), qr/WRITER DEAD/, 'gdb left the cache as a dead writer would');
$mark = $n->log_mark;
ok($n->reload, 'a reload after a writer died mid-write: accepted');
like($n->error_log_since($mark),
     qr/\[notice\].*api_key_zone "keys": a worker died while writing to the cache: it was emptied/,
     '... the cache was emptied (notice)');
is(http_get($n->port, '/', headers => xkey($k))->status, 200,
   '... and the key is read again and served');

is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

done_testing;
