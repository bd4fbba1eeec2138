# SPDX-License-Identifier: BSD-2-Clause
# A quota lease refused with an "ERR" that is the server's, not one key's
# (here EVALSHA renamed away: "ERR unknown command 'evalsha'"), backs off
# every lease of the worker, not each key on its own: with several quota keys
# the EVALSHA attempts stay bounded by one backoff (200 ms doubling to 5 s),
# not one backoff per key, and one line is logged for the outage, not one
# per key.  Only errors that name the key's own data (WRONGTYPE, a counter
# that is not a number: t/35) back off that key alone.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

avoid_window_edge('day', 30);

my $r = ApiKeyTest::Redis->start(config => ['rename-command EVALSHA ""']);

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s quota_lease=10 quota_offline=3;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;
    keepalive_requests 100000;

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
    vars => { REDIS => $r->port });
static_site($n);

my (undef, $err) = $r->try_cmd('EVALSHA', '0' x 40, 0);
like($err // '', qr/^ERR unknown command/, 'EVALSHA is unknown to this Redis');

# ERR answers since the last reset: the module's EVALSHA attempts (nothing
# else it sends fails)
sub err_count {
    my $info = $r->cmd('INFO', 'errorstats');
    return $info =~ /^errorstat_ERR:count=(\d+)/m ? $1 : 0;
}

my $KEYS = 8;
my @k = map { random_key("srverr$_") } 1 .. $KEYS;
add_key($r, $_, quota => '1000/day') for @k;

my $mark = $n->log_mark;
reset_stats($r);
my $c = ApiKeyTest::HTTPConn->new($n->port);
my (%st, $total);
my $t0 = time;
while (time - $t0 < 3) {
    for my $k (@k) {
        my $x = $c->get('/', headers => xkey($k));
        $st{ $x->status . ' ' . ($x->header('X-Status') // '') }++;
        $total++;
    }
    sleep 0.02;
}
my $errs = err_count();
my @lines = grep { /quota lease/ } split /\n/, $n->error_log_since($mark);
note sprintf '%d requests for %d keys in %.1fs: %s; %d ERR answers; %d log lines',
    $total, $KEYS, time - $t0, join(', ', map { "$_ x$st{$_}" } sort keys %st),
    $errs, scalar(@lines);
note $_ for @lines[0 .. ($#lines > 3 ? 3 : $#lines)];

is(scalar(grep { $_ ne '200 ok' && $_ ne '429 quota_exceeded' } keys %st), 0,
   'every answer is 200 or 429 quota_exceeded');
is($st{'200 ok'}, 3 * $KEYS, "each key passes its quota_offline share (3), no more");
cmp_ok($errs, '>=', 1, 'leases were tried');
# one backoff for the worker: about 5 attempts in 3 s (200 ms doubling);
# one per key would be at least $KEYS x 4
cmp_ok($errs, '<=', 8, "EVALSHA attempts ($errs) bounded by one backoff, not one per key");
is(scalar(@lines), 1, 'one log line for the outage, not one per key')
    or diag join "\n", @lines;
like($lines[0] // '', qr/ERR unknown command.*all leases back off/,
     "... naming Redis's error, for all leases");
$c->close;

unlike($n->error_log, qr/exited on signal/, 'no worker crashed');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

done_testing;
