# SPDX-License-Identifier: BSD-2-Clause
# Events apply once per node, in publication order, however late a worker
# reads them.  Every worker receives every event and all of them share one
# cache, so a worker that lags (here: stopped with SIGSTOP; in production
# descheduled or busy) must not apply an older "update" after another worker
# applied a newer "revoke": that would drop the revocation and the key,
# whose record still says active, would be accepted again.  A worker that
# lags by more than the node's event log (1024 events) re-reads everything
# and says so in the error log.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events;

require_module();

my $WORKERS = 2;
my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=60s negative_ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
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

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
    redis => $r, redis_clients => 2 * $WORKERS, vars => { REDIS => $r->port });
my $port = $n->port;

ok(wait_subscribed($r, $WORKERS), "$WORKERS subscriptions");

# a stopped worker is always continued, whatever happens to the test
my @stopped;
END { kill 'CONT', @stopped if @stopped }

# keep-alive connections to each worker, each having served the key once
sub conns_of {
    my ($key) = @_;
    my @c = spread_conns($port, $key, $WORKERS, per_worker => 2);
    my %by;
    push @{ $by{ $_->{pid} } }, $_->{conn} for @c;
    return \%by;
}

sub statuses {
    my ($key, @conns) = @_;
    my %st;
    for my $c (@conns) {
        my $x = $c->get('/', headers => { 'X-API-Key' => $key }, timeout => 3);
        $st{ $x->status . ' ' . ($x->header('X-Status') // '') }++;
    }
    return \%st;
}

# events received so far, counted over a given connection (a new one might
# be handed to the stopped worker)
sub seen {
    my ($conn, $type) = @_;
    my $x = $conn->get('/metrics', timeout => 3);
    return -1 unless $x->status == 200;
    my ($v) = $x->body =~ /^api_key_events_total\{type="$type"\} (\d+)$/m;
    return $v // 0;
}

sub wait_seen {
    my ($conn, $type, $want) = @_;
    my $v;
    poll(sub { ($v = seen($conn, $type)) >= $want },
         timeout => 5, interval => 0.02);
    return $v;
}

# --- an older update read late does not undo a newer revoke ------------------
{
    my $k = random_key('ord');
    my $h = add_key($r, $k, owner => 'acme');
    my $by = conns_of($k);
    my ($w1, $w2) = sort keys %$by;
    is(scalar keys %$by, $WORKERS, 'both workers serve the key (200)')
        or BAIL_OUT('no connections to both workers');
    my @c1 = @{ $by->{$w1} };
    my @c2 = @{ $by->{$w2} };
    my $up0 = seen($c1[0], 'update');
    my $rv0 = seen($c1[0], 'revoke');

    kill 'STOP', $w2;
    push @stopped, $w2;

    is(publish($r, "update $h"), $WORKERS,
       "worker $w2 stopped: PUBLISH update reaches both subscriptions");
    is_deeply(statuses($k, @c1), { '200 ok' => 2 },
              "worker $w1 applied it: the record is re-read, still active");
    is(publish($r, "revoke $h"), $WORKERS, 'PUBLISH revoke');
    is_deeply(statuses($k, @c1), { '401 revoked' => 2 },
              "worker $w1 applied it: denied");
    is(wait_seen($c1[0], 'revoke', $rv0 + 1), $rv0 + 1,
       "worker $w1 counted the revoke; worker $w2 has not read either event");

    kill 'CONT', $w2;
    @stopped = ();

    is(wait_seen($c1[0], 'update', $up0 + 2), $up0 + 2,
       "worker $w2 continued and read the update");
    is(wait_seen($c1[0], 'revoke', $rv0 + 2), $rv0 + 2,
       "... and the revoke");
    reset_stats($r);
    is_deeply(statuses($k, @c1, @c2), { '401 revoked' => 4 },
              'the key stays revoked on both workers (4 of 4 requests 401)');
    is(hgetall_calls($r), 0,
       '... denied from the cache: the late update dropped nothing');

    # the same events with every worker running: applied as usual
    is(publish($r, "update $h"), $WORKERS, 'a new update');
    is(wait_seen($c1[0], 'update', $up0 + 4), $up0 + 4,
       '... read by both workers');
    is_deeply(statuses($k, @c1, @c2), { '200 ok' => 4 },
              '... re-read once more: the record says active, accepted');
    is(hgetall_calls($r), 1, '... with one Redis read');
    is(publish($r, "revoke $h"), $WORKERS, 'a new revoke');
    is_deeply(statuses($k, @c1, @c2), { '401 revoked' => 4 },
              '... denied everywhere');
}

# --- a worker that lags beyond the event log skips what the others applied --
{
    my $k = random_key('lag');
    my $h = add_key($r, $k, owner => 'acme');
    my $other = random_key('lago');
    add_key($r, $other, owner => 'bob');
    my $by = conns_of($k);
    my ($w1, $w2) = sort keys %$by;
    my @c1 = @{ $by->{$w1} };
    my @c2 = @{ $by->{$w2} };
    is_deeply(statuses($other, @c1, @c2), { '200 ok' => 4 }, 'another key cached');
    my $up0 = seen($c1[0], 'update');

    kill 'STOP', $w2;
    push @stopped, $w2;

    # the key's update (re-read by worker 1), then 1100 updates of keys
    # nobody uses and the key's revoke (the record stays active: only the
    # event denies it)
    is(publish($r, "update $h"), $WORKERS, 'PUBLISH update');
    is_deeply(statuses($k, @c1), { '200 ok' => 2 }, "worker $w1: re-read, 200");
    my @msgs = ((map { 'update ' . sha256_hex("nobody $_") } 1 .. 1100),
                "revoke $h");
    my @rep = publish_pipelined($r, \@msgs);
    is(scalar(grep { $_ == $WORKERS } @rep), scalar @msgs,
       scalar(@msgs) . ' events published to both subscriptions');
    # 1101 events take a moment to apply (longer under ASan): the first
    # request may come before the last of them, so wait for it (bounded)
    wait_until(sub { (statuses($k, $c1[0])->{'401 revoked'} // 0) == 1 },
               timeout => 10, interval => 0.05);
    is_deeply(statuses($k, @c1), { '401 revoked' => 2 },
              "worker $w1 applied them: denied");

    reset_stats($r);
    kill 'CONT', $w2;
    @stopped = ();

    is(wait_seen($c1[0], 'update', $up0 + 2 * 1101), $up0 + 2 * 1101,
       "worker $w2 continued and read the 1101 updates");
    ok(wait_until(sub { $n->error_log =~ /fell more than 1024 events behind/ },
                  timeout => 3),
       "worker $w2 logged that it fell more than 1024 events behind");
    is_deeply(statuses($k, @c1, @c2), { '401 revoked' => 4 },
              'the key stays revoked on both workers: the old update was skipped');
    is_deeply(statuses($other, @c1, @c2), { '200 ok' => 4 },
              'the other key is still accepted');
    is(hgetall_calls($r), 0, '... and neither was read again');
    is(scalar(() = $n->error_log =~ /fell more than 1024 events behind/g), 1,
       'one warning for the whole episode');
}

done_testing;
