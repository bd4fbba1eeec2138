# SPDX-License-Identifier: BSD-2-Clause
# A cache entry that goes away between a request's lookup and its limits
# (another worker evicts it, or a flush) must not let the request through
# uncounted: the request looks its key up again and is counted.
#
# The window is a few microseconds in one worker, so the test makes it
# happen deterministically: gdb stops the only worker at the entry of
# ak_cache_gcra_found (the rate's swap of the entry the lookup found) and
# empties the cache there (ak_cache_flush, which is what a flush event or a
# full eviction does), then lets it go on.  Skipped when gdb cannot attach (no gdb, no ptrace).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
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
        add_header X-Rate-Remaining $api_key_rate_remaining always;
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

# gdb attached to the worker: at the next ak_cache_gcra_found, the cache is
# emptied, then gdb detaches.  Returns gdb's pid, its output file and
# whether the breakpoint was set.
sub gdb_flush_at_limits {
    my $out = $n->dir . '/gdb.out';
    my ($gpid, $ready) = gdb_at($pid, $out, 'ak_cache_gcra_found',
        'call (void) ak_cache_flush(c)',
        'printf "FLUSHED\n"');
    return ($gpid, $out, $ready);
}

sub finish_gdb { gdb_finish($_[0]) }

my $k = random_key('gone');
add_key($r, $k, rate => '5/m', burst => 0);

my $first = http_get($port, '/', headers => xkey($k));

my ($gpid, $out, $ready) = gdb_flush_at_limits();
unless ($ready) {
    kill 'KILL', $gpid;
    waitpid $gpid, 0;
    my $o = eval { slurp($out) } // '';
    $n->stop;
    plan skip_all => "gdb cannot stop the worker here: " . ((split /\n/, $o)[-1] // '');
}

is($first->status, 200, '5/m burst 0: the first request passes (cached, counted)');

my $second = http_get($port, '/', headers => xkey($k), timeout => 20);
finish_gdb($gpid);
my $o = slurp($out);
like($o, qr/FLUSHED/, 'gdb emptied the cache between the lookup and the limits')
    or diag $o;

is($second->status, 200,
   'the request whose entry went away passes (a fresh bucket: the flush lost the state)');
is($second->header('X-Rate-Remaining'), '0',
   '... and it was counted: $api_key_rate_remaining is 0, not empty');

my $third = http_get($port, '/', headers => xkey($k));
is($third->status . ' ' . ($third->header('X-Status') // ''), '429 rate_limited',
   'the next request is rate_limited: the one before was counted');

is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

done_testing;
