# SPDX-License-Identifier: BSD-2-Clause
# Revocation reaches every worker and every node: four workers with 16
# keep-alive connections spread over all of them (X-Pid), one PUBLISH
# revoke, then every later request on every connection is 401 revoked;
# two nginx instances (separate caches) sharing one Redis both deny after
# one PUBLISH, and both re-read after one "update".
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events;

require_module();

my $WORKERS = 4;
my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;
    keepalive_requests 10000;
    keepalive_timeout  120s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        add_header X-Pid    $pid always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT

# --- 4 workers, 16 keep-alive connections over all of them -----------------
{
    my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
        redis => $r, redis_clients => 2 * $WORKERS,
        vars => { REDIS => $r->port });
    my $port = $n->port;
    ok(wait_subscribed($r, $WORKERS), "$WORKERS workers subscribed");

    my $k = random_key('ka');
    my $h = add_key($r, $k, owner => 'many', status => 'active');
    my @c = spread_conns($port, $k, $WORKERS, per_worker => 4);
    my %pids = map { $_->{pid} => 1 } @c;
    is_deeply([ sort keys %pids ], [ $n->worker_pids ],
              'every worker served the key (X-Pid)');
    is(scalar @c, 4 * $WORKERS, '16 keep-alive connections, 4 per worker');
    is_deeply([ map { $_->{res}->status } @c ], [ (200) x @c ],
              'the key is accepted on every connection');

    # a second request on every connection: still the same worker, still ok
    my @again = map { $_->{conn}->get('/', headers => { 'X-API-Key' => $k }) } @c;
    is_deeply([ map { $_->status } @again ], [ (200) x @c ],
              'a second request on each connection: ok');
    is_deeply([ map { $_->header('X-Pid') } @again ], [ map { $_->{pid} } @c ],
              '... on the same workers (keep-alive)');
    is_deeply([ map { $_->{conn}->connects } @c ], [ (1) x @c ],
              '... over the same connections');

    my $ev0 = metric($port, 'api_key_events_total{type="revoke"}');
    reset_stats($r);
    is(publish($r, "revoke $h"), $WORKERS, "PUBLISH revoke: $WORKERS receivers");

    for my $round (1 .. 3) {
        my @res = map { $_->{conn}->get('/', headers => { 'X-API-Key' => $k }) } @c;
        my @st = map { $_->status . ' ' . ($_->header('X-Status') // '') } @res;
        is_deeply(\@st, [ ('401 revoked') x @c ],
                  "after the revoke, round $round: every connection gets 401 revoked")
            or diag explain \@st;
        my %seen = map { ($_->header('X-Pid') // '?') => 1 } @res;
        is(scalar keys %seen, $WORKERS, "round $round: answered by all $WORKERS workers")
            if $round == 1;
    }
    is_deeply([ map { $_->{conn}->connects } @c ], [ (1) x @c ],
              'still the same 16 connections');
    is(hgetall_calls($r), 0, 'no Redis read: the revoke came from the event');

    my $ev1;
    poll(sub { ($ev1 = metric($port, 'api_key_events_total{type="revoke"}'))
               >= $ev0 + $WORKERS }, timeout => 1);
    is($ev1 - $ev0, $WORKERS,
       "api_key_events_total{type=\"revoke\"} counts the revoke once per worker (+$WORKERS)");

    # new connections too
    my @fresh = map { http_get($port, '/', headers => { 'X-API-Key' => $k }) } 1 .. 12;
    is_deeply([ map { $_->status } @fresh ], [ (401) x 12 ],
              'new connections: 401 as well');

    # update: every connection (every worker) re-reads the record at once
    my $k2 = random_key('ka2');
    my $h2 = add_key($r, $k2, owner => 'v1');
    my @res1 = map { $_->{conn}->get('/', headers => { 'X-API-Key' => $k2 }) } @c;
    is_deeply([ map { $_->header('X-Owner') } @res1 ], [ ('v1') x @c ],
              'second key cached, owner v1 on every connection');
    $r->cmd('HSET', "apikey:$h2", 'owner', 'v2');
    is(publish($r, "update $h2"), $WORKERS, 'PUBLISH update');
    my @res2 = map { $_->{conn}->get('/', headers => { 'X-API-Key' => $k2 }) } @c;
    is_deeply([ map { $_->header('X-Owner') } @res2 ], [ ('v2') x @c ],
              'update: every connection (every worker) sees owner v2 at once');

    $_->{conn}->close for @c;
    is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
    $n->stop;
    ok(!$n->stop_forced, 'nginx stops gracefully');
}

# --- two nginx instances sharing one Redis --------------------------------------
{
    my $a = ApiKeyTest::Nginx->start(http => $http, workers => 2,
        vars => { REDIS => $r->port });
    my $b = ApiKeyTest::Nginx->start(http => $http, workers => 2,
        vars => { REDIS => $r->port });
    ok(wait_subscribed($r, 4), 'two nodes, two workers each: 4 subscriptions')
        or diag explain [ client_list($r) ];
    my $ga = sub { http_get($a->port, '/', headers => { 'X-API-Key' => $_[0] }) };
    my $gb = sub { http_get($b->port, '/', headers => { 'X-API-Key' => $_[0] }) };

    my $k = random_key('node');
    my $h = add_key($r, $k, owner => 'shared', status => 'active');
    is($ga->($k)->status, 200, 'node A: key accepted (cached)');
    is($gb->($k)->status, 200, 'node B: key accepted (cached)');

    # each node has its own cache: a revoke by HSET alone changes nothing
    $r->cmd('HSET', "apikey:$h", 'owner', 'changed');
    is($ga->($k)->header('X-Owner'), 'shared', 'node A: cached record (control)');
    is($gb->($k)->header('X-Owner'), 'shared', 'node B: cached record (control)');
    $r->cmd('HSET', "apikey:$h", 'owner', 'shared');

    reset_stats($r);
    is(publish($r, "revoke $h"), 4, 'one PUBLISH revoke: 4 receivers (2 nodes x 2 workers)');
    my ($ra, $rb) = ($ga->($k), $gb->($k));
    is($ra->status, 401, 'node A: denied');
    is($ra->header('X-Status'), 'revoked', 'node A: revoked');
    is($rb->status, 401, 'node B: denied');
    is($rb->header('X-Status'), 'revoked', 'node B: revoked');
    my @more = map { ($ga->($k)->status, $gb->($k)->status) } 1 .. 6;
    is_deeply(\@more, [ (401) x 12 ], 'both nodes keep denying it (12 more requests)');
    is(hgetall_calls($r), 0, 'both from their caches (no Redis read)');

    # update reaches both nodes
    my $k2 = random_key('node2');
    my $h2 = add_key($r, $k2, owner => 'one');
    is($ga->($k2)->header('X-Owner'), 'one', 'node A: second key cached');
    is($gb->($k2)->header('X-Owner'), 'one', 'node B: second key cached');
    $r->cmd('HSET', "apikey:$h2", 'owner', 'two');
    is(publish($r, "update $h2"), 4, 'one PUBLISH update');
    is($ga->($k2)->header('X-Owner'), 'two', 'node A: re-read, owner two');
    is($gb->($k2)->header('X-Owner'), 'two', 'node B: re-read, owner two');

    # flush reaches both nodes
    $r->cmd('HSET', "apikey:$h2", 'owner', 'three');
    is(publish($r, 'flush'), 4, 'one PUBLISH flush');
    is($ga->($k2)->header('X-Owner'), 'three', 'node A: flushed, owner three');
    is($gb->($k2)->header('X-Owner'), 'three', 'node B: flushed, owner three');

    # each node counts the events its own workers received
    is(metric($a->port, 'api_key_events_total{type="revoke"}'), 2,
       'node A: api_key_events_total{type="revoke"} 2 (its 2 workers)');
    is(metric($b->port, 'api_key_events_total{type="revoke"}'), 2,
       'node B: api_key_events_total{type="revoke"} 2');

    is_deeply([ $a->problems, $b->problems ], [], 'no alert, crit or emerg');
    $a->stop;
    $b->stop;
}

done_testing;
