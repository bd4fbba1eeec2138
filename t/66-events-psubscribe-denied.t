# SPDX-License-Identifier: BSD-2-Clause
# keyspace_events=on with a Redis ACL user that may SUBSCRIBE to the channel
# but not PSUBSCRIBE: each worker's first events connection has its
# SUBSCRIBE confirmed, then its PSUBSCRIBE refused (NOPERM; hiredis closes
# the connection).  The worker warns once and subscribes to the channel
# alone from then on (README, api_key_redis keyspace_events): the events
# connection stays up (no reconnection every 100 ms, no new cache generation
# each round), revocations on the channel still arrive, keyspace
# notifications do not (a plain HSET is seen when the ttl ends).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events;

require_module();

my $WORKERS = 2;
my $r = ApiKeyTest::Redis->start(
    users => [ 'default on nopass ~* &* +@all',
               'nopsub on >pw-nopsub ~* &* +@all -psubscribe' ],
    config => [ 'notify-keyspace-events Kghx' ]);

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=60s negative_ttl=60s;
    api_key_redis redis://nopsub:pw-nopsub@127.0.0.1:%%REDIS%% timeout=1s keyspace_events=on;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
    vars => { REDIS => $r->port });
my $port = $n->port;
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }
sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

my $EV = 'api_key_redis_connects_total{connection="events"}';

ok(wait_subscribed($r, $WORKERS), "$WORKERS subscriptions to the channel")
    or diag explain [ client_list($r) ];

# --- the subscription stays: no reconnection round after round -------------
{
    sleep 0.5;
    my $c0 = metric($port, $EV);
    sleep 1.5;
    my $c1 = metric($port, $EV);
    is($c1, $c0, "no events connection made in 1.5 s ($c0 before, $c1 after)");
    ok($c1 <= 2 * $WORKERS, "at most 2 events connections per worker ($c1)");
    is(numsub($r), $WORKERS, "$WORKERS subscribers of the channel");
    my @p = grep { ($_->{psub} // 0) > 0 } client_list($r);
    is(scalar @p, 0, 'no pattern subscription');
}

# --- revocations on the channel still arrive; HSET alone is not seen -------
{
    my $k = random_key('psd');
    my $h = add_key($r, $k, owner => 'o');
    my @s = map { st(get($k)) } 1 .. $WORKERS * 2;
    is_deeply(\@s, [ ('200 ok') x ($WORKERS * 2) ], 'key accepted and cached');

    reset_stats($r);
    $r->cmd('HSET', "apikey:$h", 'owner', 'o2');
    sleep 0.3;
    @s = map { st(get($k)) } 1 .. $WORKERS * 2;
    is_deeply(\@s, [ ('200 ok') x ($WORKERS * 2) ],
              'without keyspace notifications: a plain HSET is not seen ...');
    is(hgetall_calls($r), 0, '... and the cached record is not read again');

    is(publish($r, "revoke $h"), $WORKERS,
       "PUBLISH revoke HASH reaches $WORKERS subscribers");
    @s = map { st(get($k)) } 1 .. $WORKERS * 2;
    is_deeply(\@s, [ ('401 revoked') x ($WORKERS * 2) ],
              'revoke: the key is denied at once');
}

$n->stop;

# --- the log: one error and one warning per worker ------------------------
{
    my @l = split /\n/, $n->error_log;
    my $err = grep { /\[error\].*events connection.*lost: NOPERM/ } @l;
    my $warn = grep { /\[warn\].*keyspace_events=on, but the redis user may not PSUBSCRIBE.*alone until nginx is reloaded/ } @l;
    my $back = grep { /events subscription to .* is back/ } @l;
    is($err, $WORKERS, "the refused PSUBSCRIBE logged once per worker ($err)")
        or diag join "\n", (grep { /\[(?:error|warn)\]/ } @l)[0 .. 5];
    is($warn, $WORKERS, "one warning per worker: the channel alone ($warn)");
    ok($back <= $WORKERS, "at most one new generation per worker ($back)");
}

done_testing;
