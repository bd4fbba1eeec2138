# SPDX-License-Identifier: BSD-2-Clause
# The limiter state of a key (GCRA timestamp, leased quota counts) survives
# a change event for that key when its rate and quota are unchanged:
#  - rate=5/m burst=0: one request passes; an "update HASH" event (PUBLISH),
#    or a keyspace notification of an HSET, does not give the key a fresh
#    burst: the next request is still 429 rate_limited, and the record is
#    read again (a changed owner shows);
#  - a changed rate starts the limiter afresh (a new spec, a new bucket);
#  - quota: the counts leased before an update are used after it (no new
#    lease: the Redis counter stays at the first lease) and
#    $api_key_quota_remaining keeps counting down;
#  - $api_key_quota_remaining is right while counts are granted offline
#    (Redis stopped, quota_offline larger than the lease): it used to
#    underflow to 0.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events;
use ApiKeyTest::Policy;

require_module();

avoid_window_edge('day', 30);

my $WORKERS = 2;
my $r = ApiKeyTest::Redis->start(config => [ 'notify-keyspace-events Kghx' ]);

sub conf {
    my (%o) = @_;
    return <<"EOT" . "\n" . <<'EOT2';
    api_key_zone  keys:1m ttl=60s stale=10m quota_lease=10 quota_offline=$o{offline};
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=300ms connect_timeout=300ms $o{extra};
EOT
    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Owner $api_key_owner always;
        add_header X-Rate-Remaining $api_key_rate_remaining always;
        add_header X-Quota-Remaining $api_key_quota_remaining always;
        add_header X-Pid $pid always;
        location / {
            api_key keys;
            try_files /ok.txt =404;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT2
}

sub start_nginx {
    my (%o) = @_;
    my $n = ApiKeyTest::Nginx->start(http => conf(%o), workers => $o{workers},
        redis => $r, redis_clients => 2 * $o{workers},
        vars => { REDIS => $r->port });
    static_site($n);
    return $n;
}

sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

my $n = start_nginx(workers => $WORKERS, offline => 3, extra => 'keyspace_events=on');
my $port = $n->port;
ok(wait_subscribed($r, $WORKERS), "$WORKERS subscriptions")
    or diag explain [ client_list($r) ];
sub get { http_get($port, '/', headers => xkey($_[0])) }

# --- rate 5/m burst 0, "update HASH" on the channel ------------------------------
{
    my $k = random_key('upd');
    my $h = add_key($r, $k, rate => '5/m', burst => 0, owner => 'before');
    my $first = get($k);
    is(st($first), '200 ok', '5/m burst 0: the first request passes');
    is(st(get($k)), '429 rate_limited', '... the second is rate_limited');

    $r->cmd('HSET', "apikey:$h", 'owner', 'after');
    my $ev0 = events_seen($port, 'update');
    is(publish($r, "update $h"), $WORKERS, 'PUBLISH update HASH');
    wait_events($port, 'update', $ev0, $WORKERS);
    my $res = get($k);
    is(st($res), '429 rate_limited',
       'after an update event (rate unchanged) the next request is still 429 rate_limited');
    is($res->header('X-Owner'), 'after', '... and the record was read again (new owner)');
}

# --- the same with a keyspace notification (HSET of another field) --------------
{
    my $k = random_key('ksp');
    my $h = add_key($r, $k, rate => '5/m', burst => 0, owner => 'before');
    is(st(get($k)), '200 ok', 'keyspace: the first request passes');
    my $ev0 = events_seen($port, 'keyspace');
    $r->cmd('HSET', "apikey:$h", 'owner', 'after');
    $r->cmd('PING');
    wait_events($port, 'keyspace', $ev0, $WORKERS);
    my $res = get($k);
    is(st($res), '429 rate_limited',
       'after a keyspace notification (HSET owner) the next request is still 429 rate_limited');
    is($res->header('X-Owner'), 'after', '... and the record was read again (new owner)');
}

# --- a changed rate: a new bucket ------------------------------------------------------
{
    my $k = random_key('chg');
    my $h = add_key($r, $k, rate => '5/m', burst => 0);
    is(st(get($k)), '200 ok', 'rate change: the first request passes');
    is(st(get($k)), '429 rate_limited', '... the second is rate_limited');
    my $ev0 = events_seen($port, 'keyspace');
    $r->cmd('HSET', "apikey:$h", 'rate', '600/m', 'burst', 3);
    $r->cmd('PING');
    wait_events($port, 'keyspace', $ev0, $WORKERS);
    my $res = get($k);
    is(st($res), '200 ok', 'after the rate changed to 600/m burst 3 the next request passes');
    is($res->header('X-Rate-Remaining'), '3', '... with the new burst (remaining 3)');
}

# --- leased quota counts survive an update ---------------------------------------------
{
    my $Q = 1000;
    my $k = random_key('qup');
    my $h = add_key($r, $k, quota => "$Q/day");
    my ($start) = window_bounds('day');
    my $ukey = usage_key($h, 'day', $start);
    # one connection: one worker
    my $c = ApiKeyTest::HTTPConn->new($port);
    my $a = $c->get('/', headers => xkey($k));
    is(st($a), '200 ok', 'quota: the first request takes a lease');
    is($r->cmd('GET', $ukey), 10, '... of quota_lease=10 counts');
    my $ev0 = events_seen($port, 'update');
    publish($r, "update $h");
    wait_events($port, 'update', $ev0, $WORKERS);
    my @res = map { $c->get('/', headers => xkey($k)) } 1 .. 5;
    is(join(' ', map { $_->status } @res), '200 200 200 200 200', '5 more requests pass');
    is_deeply([ map { $_->header('X-Quota-Remaining') } @res ],
              [ map { $Q - 1 - $_ } 1 .. 5 ],
              '$api_key_quota_remaining keeps counting down across the update');
    sleep 0.3;
    is($r->cmd('GET', $ukey), 10,
       'the counts leased before the update were used: no new lease (counter still 10)');
    $c->close;
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

# --- $api_key_quota_remaining with offline grants ----------------------------------------
{
    my $n2 = start_nginx(workers => 1, offline => 50, extra => '');
    my $p2 = $n2->port;
    my $Q = 1000;
    my $k = random_key('qoff');
    add_key($r, $k, quota => "$Q/day");
    my $c = ApiKeyTest::HTTPConn->new($p2);
    my $first = $c->get('/', headers => xkey($k));
    is(st($first), '200 ok', 'offline: key cached, first lease taken');
    is($first->header('X-Quota-Remaining'), $Q - 1, '... quota remaining ' . ($Q - 1));
    $r->cmd('SAVE');
    $r->stop;
    my @res = map { $c->get('/', headers => xkey($k)) } 1 .. 20;
    is(scalar(grep { $_->status == 200 } @res), 20,
       'Redis stopped: 20 requests admitted (9 left of the lease, then quota_offline=50)');
    is_deeply([ map { $_->header('X-Quota-Remaining') } @res ],
              [ map { $Q - 1 - $_ } 1 .. 20 ],
              '$api_key_quota_remaining counts down through the offline grant (no underflow to 0)');
    $c->close;
    $r->start_again;
    is_deeply([ $n2->problems ], [], 'no alert, crit or emerg');
    $n2->stop;
}

done_testing;
