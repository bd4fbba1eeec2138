# SPDX-License-Identifier: BSD-2-Clause
# Missed events: when the events subscription drops and comes back, every
# record cached before is read again before it is trusted.  CLIENT KILL TYPE
# pubsub, a record changed (no PUBLISH, no keyspace events) while the
# subscription is down, then the key is denied once the module has
# re-subscribed; the control: without the loss the cached answer stays for
# ttl.  A Redis restart on the same port: the module reconnects by itself,
# keys cached before are re-read (a record that is gone is unknown), events
# published after the restart work.  nginx -s reload leaves no moment
# without a subscriber.  api_key_subscription_reconnects_total and the
# connect/disconnect counters follow.
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
    api_key_zone  keys:1m ttl=60s negative_ttl=60s stale=10m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s connect_timeout=1s;

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

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
    redis => $r, redis_clients => 2 * $WORKERS,
    vars => { REDIS => $r->port });
my $port = $n->port;
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }
sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

ok(wait_subscribed($r, $WORKERS), "$WORKERS subscriptions");

my %M = (
    reconnects => 'api_key_subscription_reconnects_total',
    sub_conn   => 'api_key_redis_connects_total{connection="events"}',
    sub_disc   => 'api_key_redis_disconnects_total{connection="events"}',
    cmd_conn   => 'api_key_redis_connects_total{connection="commands"}',
);
sub counters { my $m = metrics($port); return { map { $_ => $m->{ $M{$_} } // 0 } keys %M } }

{
    my $c = counters();
    is($c->{reconnects}, 0, 'at start: api_key_subscription_reconnects_total 0');
    is($c->{sub_conn}, $WORKERS, "at start: $WORKERS events connections made");
    is($c->{cmd_conn}, $WORKERS, "at start: $WORKERS command connections made");
}

# --- control: without a loss, a plain HSET is not seen within ttl ------------
my $kc = random_key('ctl');
my $hc = add_key($r, $kc, owner => 'ctl', status => 'active');
is(get($kc)->status, 200, 'control: key cached');
$r->cmd('HSET', "apikey:$hc", 'status', 'revoked');
reset_stats($r);
{
    my @s = map { st(get($kc)) } 1 .. 10;
    is_deeply(\@s, [ ('200 ok') x 10 ],
              'control: HSET status revoked (no event): still ok from the cache');
    sleep 0.5;
    is(st(get($kc)), '200 ok', 'control: ... also half a second later');
    is(hgetall_calls($r), 0, 'control: ... and no Redis read');
}

# --- missed events: CLIENT KILL TYPE pubsub, change while down ---------------
{
    my $k = random_key('miss');
    my $h = add_key($r, $k, owner => 'miss', status => 'active');
    my $kok = random_key('same');
    add_key($r, $kok, owner => 'unchanged');
    is(get($k)->status, 200, 'missed events: key cached');
    is(get($kok)->status, 200, 'missed events: another key cached');
    my $c0 = counters();
    my @cmd_ids = sort map { $_->{id} } cmd_conns($r);

    my $killed = $r->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    $r->cmd('HSET', "apikey:$h", 'status', 'revoked');
    my $subs_after_hset = numsub($r, 'apikey:events');
    is($killed, $WORKERS, "CLIENT KILL TYPE pubsub killed $WORKERS connections");
    note "subscribers right after the HSET: $subs_after_hset";

    my $t0 = time;
    ok(wait_subscribed($r, $WORKERS, timeout => 5),
       'the module re-subscribes by itself (within 5s)')
        or diag explain [ client_list($r) ];
    note sprintf 're-subscribed after %.2fs', time - $t0;
    is_deeply([ sort map { $_->{id} } cmd_conns($r) ], \@cmd_ids,
              'the command connections were not touched');

    my $res;
    poll(sub { $res = get($k); $res->status == 401 }, timeout => 1);
    is(st($res), '401 revoked',
       'after the re-subscription the key is re-read and denied (revoked)')
        or diag $res->as_string;
    is(st(get($kc)), '401 revoked',
       'the control key (HSET before the loss) is re-read too: revoked');
    my $u = get($kok);
    is(st($u), '200 ok', 'an unchanged key is still accepted');
    is($u->header('X-Owner'), 'unchanged', '... with its record');

    my $c1;
    poll(sub { $c1 = counters(); $c1->{reconnects} >= $c0->{reconnects} + $WORKERS },
         timeout => 1);
    is($c1->{reconnects} - $c0->{reconnects}, $WORKERS,
       "api_key_subscription_reconnects_total +$WORKERS (one per worker)");
    is($c1->{sub_disc} - $c0->{sub_disc}, $WORKERS,
       "api_key_redis_disconnects_total{connection=\"events\"} +$WORKERS");
    is($c1->{sub_conn} - $c0->{sub_conn}, $WORKERS,
       "api_key_redis_connects_total{connection=\"events\"} +$WORKERS");
    is($c1->{cmd_conn} - $c0->{cmd_conn}, 0,
       'api_key_redis_connects_total{connection="commands"} unchanged');

    # after the re-read, caching works as before (ttl, not re-read every time)
    my $k2 = random_key('after');
    my $h2 = add_key($r, $k2, owner => 'after');
    is(get($k2)->status, 200, 'after the loss: a new key is cached');
    $r->cmd('HSET', "apikey:$h2", 'status', 'revoked');
    reset_stats($r);
    is(st(get($k2)), '200 ok', 'after the loss: the cache is trusted again (control)');
    is(hgetall_calls($r), 0, '... no Redis read');

    # and events work on the new subscriptions
    is(publish($r, "revoke $h2"), $WORKERS, "PUBLISH revoke: $WORKERS receivers");
    is(st(get($k2)), '401 revoked', 'a revoke on the new subscriptions denies at once');

    # the events logged about the loss
    my $log = $n->error_log;
    like($log, qr/\[(?:notice|warn|error)\].*api_key: .*(?:subscription|events).*back/i,
         'the return of the subscription is logged');
}

# --- twice in a row: killed again right after coming back ---------------------
{
    my $k = random_key('twice');
    my $h = add_key($r, $k, owner => 'twice');
    is(get($k)->status, 200, 'twice: key cached');
    my $c0 = counters();
    $r->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    ok(wait_subscribed($r, $WORKERS, timeout => 5), 'twice: first re-subscription');
    $r->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    $r->cmd('HSET', "apikey:$h", 'owner', 'twice-changed');
    ok(wait_subscribed($r, $WORKERS, timeout => 5), 'twice: second re-subscription');
    my $res;
    poll(sub { $res = get($k); ($res->header('X-Owner') // '') eq 'twice-changed' },
         timeout => 1);
    is($res->header('X-Owner'), 'twice-changed',
       'twice: the change made during the second loss is seen');
    my $c1;
    poll(sub { $c1 = counters(); $c1->{reconnects} >= $c0->{reconnects} + 2 * $WORKERS },
         timeout => 1);
    is($c1->{reconnects} - $c0->{reconnects}, 2 * $WORKERS,
       'twice: api_key_subscription_reconnects_total +' . 2 * $WORKERS);
}

# --- nginx -s reload: no moment without a subscriber, events work after ------
{
    my $k = random_key('rl');
    my $h = add_key($r, $k, owner => 'reload');
    is(st(get($k)), '200 ok', 'reload: key cached');
    my %old = map { $_ => 1 } $n->worker_pids;
    my $out = run_nginx('-p', $n->dir . '/', '-c', $n->conf_path, '-s', 'reload');
    is($?, 0, 'nginx -s reload') or diag $out;
    my ($min, $max, $samples) = (1e9, 0, 0);
    my $done = wait_until(sub {
        my $s = numsub($r, 'apikey:events');
        $samples++;
        $min = $s if $s < $min;
        $max = $s if $s > $max;
        my @w = $n->all_worker_pids;
        return @w == $WORKERS && !grep { $old{$_} } @w;
    }, timeout => 10, interval => 0.002);
    ok($done, 'reload: a new generation of workers, the old one gone');
    cmp_ok($min, '>=', $WORKERS,
           "reload: at every moment at least $WORKERS subscribers "
           . "(min $min, max $max, $samples samples)");
    ok(wait_subscribed($r, $WORKERS), "reload: $WORKERS subscriptions afterwards");
    is(publish($r, "revoke $h"), $WORKERS, "reload: PUBLISH revoke reaches the new workers");
    is(st(get($k)), '401 revoked', 'reload: the key cached before the reload is denied');
}

# --- Redis restart on the same port --------------------------------------------
{
    my $k = random_key('rs');
    my $gone = random_key('rsgone');
    add_key($r, $k, owner => 'before-restart');
    add_key($r, $gone, owner => 'will-vanish');
    is(get($k)->header('X-Owner'), 'before-restart', 'restart: key cached');
    is(get($gone)->status, 200, 'restart: a second key cached');
    my $c0 = counters();

    $r->restart;    # stop, start again on the same port, empty
    my $h = add_key($r, $k, owner => 'after-restart', status => 'active');
    my $t0 = time;
    my $back = wait_until(sub {
        sub_conns($r) == $WORKERS && numsub($r, 'apikey:events') == $WORKERS
            && cmd_conns($r) >= $WORKERS
    }, timeout => 8, interval => 0.05);
    ok($back, 'restart: the module reconnects both connections by itself')
        or diag explain [ client_list($r) ];
    note sprintf 'reconnected %.2fs after the restart', time - $t0;
    # each worker starts a new cache generation when its subscription is
    # back: wait for all of them before relying on the cache below
    poll(sub { counters()->{reconnects} >= $c0->{reconnects} + $WORKERS },
         timeout => 2);

    my $res;
    poll(sub { $res = get($k); ($res->header('X-Owner') // '') eq 'after-restart' },
         timeout => 1);
    is(st($res), '200 ok', 'restart: the key is accepted');
    is($res->header('X-Owner'), 'after-restart',
       'restart: ... with the record as it is now (re-read after the loss)');
    my $g = get($gone);
    is(st($g), '401 unknown', 'restart: a cached key whose record is gone is unknown');

    reset_stats($r);
    is(publish($r, "revoke $h"), $WORKERS,
       "restart: PUBLISH revoke after the restart: $WORKERS receivers");
    my $rv = get($k);
    is(st($rv), '401 revoked', 'restart: the revoke takes effect at once');
    is(hgetall_calls($r), 0, '... from the event, no Redis read');

    my $k3 = random_key('rs3');
    my $h3 = add_key($r, $k3, owner => 'u1');
    is(get($k3)->header('X-Owner'), 'u1', 'restart: a new key is cached');
    $r->cmd('HSET', "apikey:$h3", 'owner', 'u2');
    is(get($k3)->header('X-Owner'), 'u1', 'restart: ... and trusted for ttl (control)');
    publish($r, "update $h3");
    is(get($k3)->header('X-Owner'), 'u2', 'restart: update after the restart works');

    my $c1;
    poll(sub { $c1 = counters(); $c1->{reconnects} >= $c0->{reconnects} + $WORKERS },
         timeout => 1);
    is($c1->{reconnects} - $c0->{reconnects}, $WORKERS,
       "restart: api_key_subscription_reconnects_total +$WORKERS");
    ok($c1->{cmd_conn} - $c0->{cmd_conn} >= $WORKERS,
       'restart: the command connections were made again too');
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
