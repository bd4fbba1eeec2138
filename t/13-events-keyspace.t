# SPDX-License-Identifier: BSD-2-Clause
# keyspace_events=on: with the Redis server's notify-keyspace-events "Kghx"
# (README: K, g, h and x for expiries), an operator's plain HSET / HDEL / DEL
# / EXPIRE / RENAME on a record takes
# effect on the next requests without a PUBLISH (each is polled for up to
# about a second; ttl=60s so only the notification can explain it).  The
# subscriber also PSUBSCRIBEs; the db and prefix of api_key_redis shape the
# pattern.  When the server's notify-keyspace-events lacks K, g, h or x, a
# warning naming notify-keyspace-events is logged at start; CONFIG SET at
# run time then makes it work.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events;

require_module();

my $WORKERS = 2;
my $NOTIFY_RE = qr/notify-keyspace-events/;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=60s negative_ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%%%%DB%% timeout=1s keyspace_events=on %%EXTRA%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        add_header X-Plan   $api_key_plan always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT

sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

my $r = ApiKeyTest::Redis->start(config => ['notify-keyspace-events Kghx']);
{
    my $v = $r->cmd('CONFIG', 'GET', 'notify-keyspace-events')->[1];
    ok($v =~ /K/ && $v =~ /g/ && $v =~ /h/ && $v =~ /x/ && $v !~ /A/,
       "redis-server runs with notify-keyspace-events Kghx ($v)");
}

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
    redis => $r, redis_clients => 2 * $WORKERS,
    vars => { REDIS => $r->port, DB => '', EXTRA => '' });
my $port = $n->port;
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }

# poll the key until $cond->($res) or about 1 s; returns the last response
sub poll_key {
    my ($k, $cond, $timeout) = @_;
    my $res;
    poll(sub { $res = get($k); $cond->($res) }, timeout => $timeout // 1,
         interval => 0.02);
    return $res;
}

ok(wait_subscribed($r, $WORKERS), "$WORKERS subscriptions to apikey:events");
{
    my $by = conns_by_pid($r, $n->worker_pids);
    for my $pid ($n->worker_pids) {
        my @s = @{ $by->{$pid}{sub} };
        is(scalar @s, 1, "worker $pid: one pub/sub connection");
        is(($s[0] // {})->{sub}, 1, "worker $pid: sub=1 (the channel)");
        is(($s[0] // {})->{psub}, 1, "worker $pid: psub=1 (the keyspace pattern)");
        is(scalar @{ $by->{$pid}{cmd} }, 1, "worker $pid: one command connection");
    }
}
sleep 0.2;
is_deeply([ grep { $_ =~ $NOTIFY_RE } split /\n/, $n->error_log ], [],
          'Kghx: no warning about notify-keyspace-events');

my $ks0 = metric($port, 'api_key_events_total{type="keyspace"}');

# --- HSET status revoked -----------------------------------------------------
{
    my $k = random_key('ksr');
    my $h = add_key($r, $k, owner => 'op', status => 'active');
    is(st(get($k)), '200 ok', 'HSET status: key cached');
    $r->cmd('HSET', "apikey:$h", 'status', 'revoked');
    my $t0 = time;
    my $res = poll_key($k, sub { $_[0]->status == 401 });
    is(st($res), '401 revoked', 'plain HSET status revoked (no PUBLISH): denied')
        or diag $res->as_string;
    note sprintf 'seen after %.3fs', time - $t0;
    my @s = map { st(get($k)) } 1 .. 6;
    is_deeply(\@s, [ ('401 revoked') x 6 ], '... on every later request');

    $r->cmd('HSET', "apikey:$h", 'status', 'active');
    $res = poll_key($k, sub { $_[0]->status == 200 });
    is(st($res), '200 ok', 'HSET status active again: accepted again');
}

# --- HSET owner ----------------------------------------------------------------
{
    my $k = random_key('kso');
    my $h = add_key($r, $k, owner => 'first', plan => 'free');
    is(get($k)->header('X-Owner'), 'first', 'HSET owner: key cached');
    $r->cmd('HSET', "apikey:$h", 'owner', 'second');
    my $res = poll_key($k, sub { ($_[0]->header('X-Owner') // '') eq 'second' });
    is($res->header('X-Owner'), 'second', 'plain HSET owner: the new owner shows up');
    is($res->header('X-Plan'), 'free', '... the rest of the record kept');

    $r->cmd('HDEL', "apikey:$h", 'plan');
    $res = poll_key($k, sub { ($_[0]->header('X-Plan') // '') eq '' });
    is($res->header('X-Plan') // '', '', 'plain HDEL plan: the plan is gone');
    is($res->status, 200, '... still accepted');
}

# --- DEL ---------------------------------------------------------------------------
{
    my $k = random_key('ksd');
    my $h = add_key($r, $k, owner => 'del');
    is(st(get($k)), '200 ok', 'DEL: key cached');
    $r->cmd('DEL', "apikey:$h");
    my $res = poll_key($k, sub { $_[0]->status == 401 });
    is(st($res), '401 unknown', 'plain DEL: the key is unknown');

    # created again: the negative entry is dropped too (negative_ttl=60s)
    add_key($r, $k, owner => 'reborn');
    $res = poll_key($k, sub { $_[0]->status == 200 });
    is(st($res), '200 ok', 'HSET of a deleted key: known again (negative entry dropped)');
    is($res->header('X-Owner'), 'reborn', '... with its new record');
}

# --- EXPIRE -------------------------------------------------------------------------
{
    my $k = random_key('kse');
    my $h = add_key($r, $k, owner => 'exp');
    is(st(get($k)), '200 ok', 'EXPIRE: key cached');
    my $t0 = time;
    is($r->cmd('EXPIRE', "apikey:$h", 1), 1, 'EXPIRE apikey:HASH 1');
    # traffic goes on while the key lives (it is read again and cached)
    my (@before, $res);
    while (time < $t0 + 0.8) {
        push @before, st(get($k));
        sleep 0.05;
    }
    SKIP: {
        skip 'machine too slow: no request made within 0.8 s '
             . 'of EXPIRE (the key lives 1 s): nothing to check', 1 unless @before;
        is_deeply([ grep { $_ ne '200 ok' } @before ], [],
                  'EXPIRE: accepted while the key lives (' . scalar(@before) . ' requests)');
    }
    poll(sub { $r->cmd('EXISTS', "apikey:$h") == 0 }, timeout => 2, interval => 0.01);
    my $gone_at = time;
    is($r->cmd('EXISTS', "apikey:$h"), 0, 'EXPIRE: the key expired in Redis');
    $res = poll_key($k, sub { $_[0]->status == 401 });
    is(st($res), '401 unknown', 'EXPIRE: after it expired the key is unknown')
        or diag sprintf('still %s %.2fs after the record expired',
                        st($res), time - $gone_at);
    note sprintf 'expired %.2fs after EXPIRE', $gone_at - $t0;
}

# --- EXPIRE without requests meanwhile ----------------------------------------------
{
    my $k = random_key('kse2');
    my $h = add_key($r, $k, owner => 'exp2');
    is(st(get($k)), '200 ok', 'EXPIRE (idle): key cached');
    $r->cmd('PEXPIRE', "apikey:$h", 300);
    poll(sub { $r->cmd('EXISTS', "apikey:$h") == 0 }, timeout => 2, interval => 0.01);
    my $res = poll_key($k, sub { $_[0]->status == 401 });
    is(st($res), '401 unknown', 'PEXPIRE 300 (no request meanwhile): unknown after it expired');
}

# --- RENAME ---------------------------------------------------------------------------
{
    my $k = random_key('ksn');
    my $h = add_key($r, $k, owner => 'ren');
    is(st(get($k)), '200 ok', 'RENAME: key cached');
    $r->cmd('RENAME', "apikey:$h", "attic:$h");
    my $res = poll_key($k, sub { $_[0]->status == 401 });
    is(st($res), '401 unknown', 'RENAME away: the key is unknown');

    # RENAME onto a record name: the destination is re-read
    my $k2 = random_key('ksn2');
    my $h2 = add_key($r, $k2, owner => 'dest-old');
    is(get($k2)->header('X-Owner'), 'dest-old', 'RENAME onto: destination key cached');
    $r->cmd('HSET', "staging:$h2", 'owner', 'dest-new');
    $r->cmd('RENAME', "staging:$h2", "apikey:$h2");
    $res = poll_key($k2, sub { ($_[0]->header('X-Owner') // '') eq 'dest-new' });
    is($res->header('X-Owner'), 'dest-new', 'RENAME onto a record: the new record is read');

    # and back: RENAME the attic copy to its name again
    $r->cmd('RENAME', "attic:$h", "apikey:$h");
    $res = poll_key($k, sub { $_[0]->status == 200 });
    is(st($res), '200 ok', 'RENAME back: known again');
}

# --- the keyspace pattern is subscribed again after a loss --------------------
{
    my $k = random_key('ksk');
    my $h = add_key($r, $k, owner => 'kill');
    is(st(get($k)), '200 ok', 'after CLIENT KILL: key cached');
    is($r->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub'), $WORKERS,
       'CLIENT KILL TYPE pubsub');
    ok(wait_until(sub {
        my @s = sub_conns($r);
        @s == $WORKERS && !grep { ($_->{sub} // 0) != 1 || ($_->{psub} // 0) != 1 } @s
    }, timeout => 5, interval => 0.02),
       'after CLIENT KILL: every worker is back with sub=1 and psub=1')
        or diag explain [ sub_conns($r) ];
    # let the re-read that follows the loss happen, then a plain HSET
    poll_key($k, sub { $_[0]->status == 200 });
    is(st(get($k)), '200 ok', 'after CLIENT KILL: key accepted (re-read)');
    $r->cmd('HSET', "apikey:$h", 'status', 'disabled');
    my $res = poll_key($k, sub { $_[0]->status == 403 });
    is(st($res), '403 disabled', 'after CLIENT KILL: a plain HSET is seen again');
}

# --- other keys under the prefix and elsewhere -------------------------------------
{
    my $k = random_key('kso2');
    my $h = add_key($r, $k, owner => 'calm');
    is(st(get($k)), '200 ok', 'unrelated keys: key cached');
    # every worker receives every notification: the count settles on a
    # multiple of the workers once the last one has read the earlier ones
    # (a multiple alone is not enough: one worker may have read two that
    # the other has not yet; so also unchanged for 300 ms)
    my $ks;
    poll(sub {
        my $before = events_seen($port, 'keyspace');
        sleep 0.3;
        $ks = events_seen($port, 'keyspace');
        $ks == $before && $ks % $WORKERS == 0;
    }, timeout => 5);
    $r->cmd('HSET', "apikey:$h", 'owner', 'calm2');    # seen, as control
    poll_key($k, sub { ($_[0]->header('X-Owner') // '') eq 'calm2' });
    # every worker drops the record on its own copy of the notification:
    # wait for the last one, then let the record be cached again
    is(wait_events($port, 'keyspace', $ks, $WORKERS) - $ks, $WORKERS,
       'the notification was applied by every worker');
    is(get($k)->header('X-Owner'), 'calm2', '... record cached again');
    reset_stats($r);
    $r->cmd('SET', "apikey:id:someid", $h);
    $r->cmd('INCR', "apikey:usage:$h:day:0");
    $r->cmd('INCR', "apikey:usage:{apikey:$h}:day:0");
    $r->cmd('SET', "apikey:rate:{apikey:$h}", 1);
    $r->cmd('HSET', "other:$h", 'status', 'revoked');
    $r->cmd('HSET', "apikey:${h}x", 'status', 'revoked');
    sleep 0.2;
    my $res = get($k);
    is(st($res), '200 ok', 'changes to id/usage keys and other names do not disturb the key');
    is(hgetall_calls($r), 0, '... and cause no Redis read');
}

{
    my $ks1;
    poll(sub { ($ks1 = metric($port, 'api_key_events_total{type="keyspace"}')) > $ks0 },
         timeout => 1);
    ok($ks1 > $ks0, "api_key_events_total{type=\"keyspace\"} counts notifications ($ks0 -> $ks1)");
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;

# --- db and prefix shape the pattern ---------------------------------------------------
{
    my $n2 = ApiKeyTest::Nginx->start(http => $http, workers => 1,
        vars => { REDIS => $r->port, DB => '/3', EXTRA => 'prefix=tenant:' });
    ok(wait_subscribed($r, 1), 'db 3, prefix tenant:: subscribed');
    my $p2 = $n2->port;
    my $g = sub { http_get($p2, '/', headers => { 'X-API-Key' => $_[0] }) };
    my $k = random_key('db3');
    my $h = add_key($r, $k, owner => 'db3', -db => 3, -prefix => 'tenant:');
    is(st($g->($k)), '200 ok', 'db 3: key cached');
    my $c3 = $r->client(db => 3);

    # the same name in db 0, and apikey: in db 3: not this record
    $r->cmd('HSET', "tenant:$h", 'status', 'revoked');
    $c3->cmd('HSET', "apikey:$h", 'status', 'revoked');
    sleep 0.2;
    is(st($g->($k)), '200 ok', 'db 3: changes in db 0 or under another prefix do not apply');

    $c3->cmd('HSET', "tenant:$h", 'status', 'revoked');
    my $res;
    poll(sub { $res = $g->($k); $res->status == 401 }, timeout => 1);
    is(st($res), '401 revoked', 'db 3, prefix tenant:: plain HSET there is seen');
    $c3->close;
    is_deeply([ $n2->problems ], [], 'db 3: no alert, crit or emerg');
    $n2->stop;
}
# --- a prefix with glob characters ------------------------------------------------
{
    my $P = 'k*[x]?\\:';
    my $n2 = ApiKeyTest::Nginx->start(http => $http, workers => 1,
        vars => { REDIS => $r->port, DB => '', EXTRA => "prefix=$P" });
    ok(wait_subscribed($r, 1), "prefix $P: subscribed");
    my $g = sub { http_get($n2->port, '/', headers => { 'X-API-Key' => $_[0] }) };
    my $k = random_key('glob');
    my $h = add_key($r, $k, owner => 'glob', -prefix => $P);
    is(st($g->($k)), '200 ok', "prefix $P: key cached");
    # names the unescaped pattern would match: not this record
    $r->cmd('HSET', "kA[x]?\\:$h", 'status', 'revoked');
    $r->cmd('HSET', "k*x!\\:$h", 'status', 'revoked');
    sleep 0.2;
    is(st($g->($k)), '200 ok', "prefix $P: look-alike names do not apply");
    $r->cmd('HSET', "$P$h", 'status', 'revoked');
    my $res;
    poll(sub { $res = $g->($k); $res->status == 401 }, timeout => 1);
    is(st($res), '401 revoked', "prefix $P: a plain HSET of the record is seen");
    is_deeply([ $n2->problems ], [], "prefix $P: no alert, crit or emerg");
    $n2->stop;
}
$r->stop;

# --- notify-keyspace-events not enabled on the server: a warning -------------------------
for my $case (['', 'empty'], ['Kgh', 'Kgh (no x: expiries)'], ['Kgx', 'Kgx (no h)'],
              ['ghx', 'ghx (no K)'], ['Ehx$', 'Ehx$ (no K, no g)']) {
    my ($val, $what) = @$case;
    my $r2 = ApiKeyTest::Redis->start;
    $r2->cmd('CONFIG', 'SET', 'notify-keyspace-events', $val);
    my $n2 = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
        redis => $r2, redis_clients => 2 * $WORKERS,
        vars => { REDIS => $r2->port, DB => '', EXTRA => '' });
    my @w;
    poll(sub {
        @w = grep { $_->{msg} =~ $NOTIFY_RE } parse_error_log($n2->error_log);
        @w;
    }, timeout => 2);
    ok(scalar @w, "notify-keyspace-events $what: a warning at start mentions notify-keyspace-events")
        or diag join "\n", grep { !/\[debug\]/ } split /\n/, $n2->error_log;
    is($w[0]{level}, 'warn', "... at level warn") if @w;

    my $g = sub { http_get($n2->port, '/', headers => { 'X-API-Key' => $_[0] }) };
    my $k = random_key('nw');
    my $h = add_key($r2, $k, owner => 'nw');
    is(st($g->($k)), '200 ok', "notify-keyspace-events $what: nginx works");

    if ($val eq '') {
        # control: without notifications a plain HSET is not seen
        $r2->cmd('HSET', "apikey:$h", 'owner', 'nw2');
        sleep 0.3;
        is($g->($k)->header('X-Owner'), 'nw', 'no notifications: a plain HSET is not seen (control)');

        # CONFIG SET at run time: the module listens already
        $r2->cmd('CONFIG', 'SET', 'notify-keyspace-events', 'Kghx');
        $r2->cmd('HSET', "apikey:$h", 'status', 'revoked');
        my $res;
        poll(sub { $res = $g->($k); $res->status == 401 }, timeout => 1);
        is(st($res), '401 revoked',
           'CONFIG SET notify-keyspace-events Kghx at run time: a plain HSET is seen');
    }
    is_deeply([ $n2->problems ], [], "notify-keyspace-events $what: no alert, crit or emerg");
    $n2->stop;
    $r2->stop;
}

# --- KA: no warning ------------------------------------------------------------------------------
{
    my $r2 = ApiKeyTest::Redis->start(config => ['notify-keyspace-events KA']);
    my $n2 = ApiKeyTest::Nginx->start(http => $http, workers => 1,
        redis => $r2, redis_clients => 2,
        vars => { REDIS => $r2->port, DB => '', EXTRA => '' });
    my $g = sub { http_get($n2->port, '/', headers => { 'X-API-Key' => $_[0] }) };
    my $k = random_key('ka');
    my $h = add_key($r2, $k, owner => 'ka');
    is(st($g->($k)), '200 ok', 'KA: key cached');
    $r2->cmd('HSET', "apikey:$h", 'status', 'disabled');
    my $res;
    poll(sub { $res = $g->($k); $res->status == 403 }, timeout => 1);
    is(st($res), '403 disabled', 'KA: plain HSET status disabled is seen (disabled)');
    is_deeply([ grep { $_ =~ $NOTIFY_RE } split /\n/, $n2->error_log ], [],
              'KA: no warning about notify-keyspace-events');

    # EXPIRE with traffic meanwhile, as above (KA includes x)
    my $ke = random_key('kae');
    my $he = add_key($r2, $ke, owner => 'kae');
    is(st($g->($ke)), '200 ok', 'KA, EXPIRE: key cached');
    my $t0 = time;
    $r2->cmd('EXPIRE', "apikey:$he", 1);
    my @before;
    while (time < $t0 + 0.8) { push @before, st($g->($ke)); sleep 0.05 }
    SKIP: {
        skip 'machine too slow: no request made within 0.8 s '
             . 'of EXPIRE (the key lives 1 s): nothing to check', 1 unless @before;
        is_deeply([ grep { $_ ne '200 ok' } @before ], [],
                  'KA, EXPIRE: accepted while the key lives');
    }
    poll(sub { $r2->cmd('EXISTS', "apikey:$he") == 0 }, timeout => 2, interval => 0.01);
    poll(sub { $res = $g->($ke); $res->status == 401 }, timeout => 1);
    is(st($res), '401 unknown', 'KA, EXPIRE: after it expired the key is unknown');
    $n2->stop;
    $r2->stop;
}

done_testing;
