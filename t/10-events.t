# SPDX-License-Identifier: BSD-2-Clause
# Revocation and change events on the pub/sub channel, one nginx with four
# workers: every worker has its own SUBSCRIBE connection beside its command
# connection; "revoke HASH" denies a cached key at once although its record
# still says active, "update HASH" re-reads one record, "flush" re-reads all;
# malformed messages are logged (without their content) and ignored; a
# custom channel= is listened to instead of the default one.
# ttl=60s everywhere: only an event can explain a change within a test.
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
    api_key_zone  keys:1m ttl=60s negative_ttl=60s;
    api_key_zone  other:1m ttl=60s negative_ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s %%CHANNEL%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        add_header X-Pid    $pid always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /z2/ {
            api_key other;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
    redis => $r, redis_clients => 2 * $WORKERS,
    vars => { REDIS => $r->port, CHANNEL => '' });
my $port = $n->port;
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }
sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

ok(wait_subscribed($r, $WORKERS), "$WORKERS subscriptions to apikey:events")
    or diag explain [ client_list($r) ];

# --- connections: per worker one subscriber and one command connection ----
{
    my @pids = $n->worker_pids;
    is(scalar @pids, $WORKERS, "$WORKERS workers");
    my $by = conns_by_pid($r, @pids);
    my $ok = 1;
    for my $pid (@pids) {
        my ($s, $c) = ($by->{$pid}{sub}, $by->{$pid}{cmd});
        $ok &= is(scalar @$s, 1, "worker $pid: one pub/sub connection");
        $ok &= is(scalar @$c, 1, "worker $pid: one command connection");
        next unless @$s;
        is($s->[0]{sub}, 1, "worker $pid: its pub/sub connection has sub=1");
        is($s->[0]{psub}, 0, "worker $pid: ... and psub=0 (keyspace_events off)");
        like($s->[0]{flags}, qr/P/, "worker $pid: ... flags=P");
        isnt($s->[0]{id}, $c->[0]{id}, "worker $pid: two distinct connections")
            if @$c;
    }
    ok(!$by->{'?'}, 'no Redis connection that no worker holds')
        or diag explain $by->{'?'};
    is(numsub($r, 'apikey:events'), $WORKERS,
       "PUBSUB NUMSUB apikey:events = $WORKERS");
    diag explain [ client_list($r) ] unless $ok;
}

# --- revoke HASH -------------------------------------------------------------
{
    my $k = random_key('rv');
    my $other = random_key('rvo');
    my $h = add_key($r, $k, owner => 'alice', status => 'active');
    add_key($r, $other, owner => 'bob');
    is(get($k)->status, 200, 'revoke: key accepted and cached');
    is(get($other)->status, 200, 'revoke: another key accepted and cached');

    my $ev0 = metric($port, 'api_key_events_total{type="revoke"}');
    reset_stats($r);
    is(publish($r, "revoke $h"), $WORKERS,
       "PUBLISH revoke HASH reaches $WORKERS subscribers");
    my $res = get($k);
    is($res->status, 401, 'revoke: the next request is denied (401)')
        or diag $res->as_string;
    is($res->header('X-Status'), 'revoked', 'revoke: $api_key_status revoked');
    like($res->header('WWW-Authenticate') // '', qr/^Bearer realm="api"/,
         'revoke: WWW-Authenticate');
    is($res->header('X-Owner'), 'alice',
       'revoke: the identity variables are still set');
    is($r->cmd('HGET', "apikey:$h", 'status'), 'active',
       'revoke: (the record in Redis still says active)');

    # many requests, new connections each: whatever worker answers denies
    my %st;
    my %pids;
    for (1 .. 24) {
        my $x = get($k);
        $st{ $x->status . ' ' . ($x->header('X-Status') // '') }++;
        $pids{ $x->header('X-Pid') // '?' } = 1;
    }
    is_deeply(\%st, { '401 revoked' => 24 },
              'revoke: 24 more requests, every one 401 revoked');
    note 'answered by workers ' . join ' ', sort keys %pids;
    is(hgetall_calls($r), 0,
       'revoke: denied from the cache, no Redis read (the record says active)');

    my $o = get($other);
    is($o->status, 200, 'revoke: another cached key is not affected');
    is($o->header('X-Owner'), 'bob', '... and keeps its record');

    my $ev1;
    poll(sub { ($ev1 = metric($port, 'api_key_events_total{type="revoke"}'))
               >= $ev0 + $WORKERS }, timeout => 1);
    is($ev1 - $ev0, $WORKERS,
       "api_key_events_total{type=\"revoke\"} +$WORKERS (once per worker)");

    # update after revoke: the record is read again, and it says active
    my $up0 = events_seen($port, 'update');
    is(publish($r, "update $h"), $WORKERS, 'update after revoke: published');
    my $u = get($k);
    is($u->status, 200, 'update after revoke: re-read from Redis, active again')
        or diag $u->as_string;
    is($u->header('X-Status'), 'ok', '... status ok');
    ok(hgetall_calls($r) >= 1, '... read from Redis (HGETALL)');
    # every worker reads its copy of the event (the first one applies it,
    # t/14-events-order.t): let the last one have read it before the next
    # test
    is(wait_events($port, 'update', $up0, $WORKERS) - $up0, $WORKERS,
       "the update was read by all $WORKERS workers");
}

# --- revoke of a key whose record really is revoked ---------------------------
{
    my $k = random_key('rv2');
    my $h = add_key($r, $k, owner => 'carol');
    is(get($k)->status, 200, 'revoke + HSET: cached as active');
    $r->cmd('HSET', "apikey:$h", 'status', 'revoked');
    is(get($k)->status, 200,
       'control: HSET status revoked without an event: still the cached answer');
    my $rv0 = events_seen($port, 'revoke');
    publish($r, "revoke $h");
    is(get($k)->header('X-Status'), 'revoked', 'revoke + HSET: revoked');
    wait_events($port, 'revoke', $rv0, $WORKERS);
    publish($r, "update $h");
    my $res = get($k);
    is($res->header('X-Status'), 'revoked',
       'revoke + HSET, then update: read again, still revoked');
}

# --- update HASH -------------------------------------------------------------
{
    my $k = random_key('up');
    my $h = add_key($r, $k, owner => 'old-owner', plan => 'free');
    is(get($k)->header('X-Owner'), 'old-owner', 'update: cached with owner old-owner');
    $r->cmd('HSET', "apikey:$h", 'owner', 'new-owner');
    reset_stats($r);
    my @o = map { get($k)->header('X-Owner') } 1 .. 8;
    is_deeply(\@o, [ ('old-owner') x 8 ],
              'update: after HSET without an event, 8 requests still see the cached owner');
    is(hgetall_calls($r), 0, '... without reading Redis');

    my $ev0 = metric($port, 'api_key_events_total{type="update"}');
    is(publish($r, "update $h"), $WORKERS, 'PUBLISH update HASH');
    my $res = get($k);
    is($res->status, 200, 'update: the next request is accepted');
    is($res->header('X-Owner'), 'new-owner',
       'update: the next request shows the new owner');
    ok(hgetall_calls($r) >= 1, 'update: the record was read again (HGETALL)');
    my $ev1 = wait_events($port, 'update', $ev0, $WORKERS);
    is($ev1 - $ev0, $WORKERS, "api_key_events_total{type=\"update\"} +$WORKERS");
    # once every worker has applied it, the record is cached again
    is(get($k)->header('X-Owner'), 'new-owner', 'update: new owner');
    reset_stats($r);
    my @o2 = map { get($k)->header('X-Owner') } 1 .. 8;
    is_deeply(\@o2, [ ('new-owner') x 8 ], 'update: and then cached again');
    is(hgetall_calls($r), 0, '... no more Redis reads');

    # update of a key that is not cached: harmless
    my $nc = random_key('upnc');
    my $hnc = add_key($r, $nc, owner => 'nc');
    publish($r, "update $hnc");
    is(get($nc)->header('X-Owner'), 'nc', 'update of a key not cached: harmless');
    wait_events($port, 'update', $ev1, $WORKERS);

    # update of a deleted record: unknown
    $r->cmd('DEL', "apikey:$h");
    is(get($k)->status, 200, 'DEL without an event: still cached');
    publish($r, "update $h");
    my $d = get($k);
    is($d->status, 401, 'update after DEL: 401');
    is($d->header('X-Status'), 'unknown', '... unknown');
}

# --- flush ---------------------------------------------------------------------
{
    my @k = map { random_key("fl$_") } 1 .. 5;
    my @h = map { add_key($r, $k[$_], owner => "before$_") } 0 .. $#k;
    for my $i (0 .. $#k) { get($k[$i]) }
    $r->cmd('HSET', "apikey:$h[$_]", 'owner', "after$_") for 0 .. $#k;
    reset_stats($r);
    my @before = map { get($k[$_])->header('X-Owner') } 0 .. $#k;
    is_deeply(\@before, [ map { "before$_" } 0 .. $#k ],
              'flush: 5 keys cached, owners changed in Redis, still the cached owners');
    is(hgetall_calls($r), 0, '... no Redis read');

    my $ev0 = metric($port, 'api_key_events_total{type="flush"}');
    is(publish($r, 'flush'), $WORKERS, 'PUBLISH flush');
    my @after = map { get($k[$_])->header('X-Owner') } 0 .. $#k;
    is_deeply(\@after, [ map { "after$_" } 0 .. $#k ],
              'flush: every key shows its new owner');
    ok(hgetall_calls($r) >= @k, 'flush: every key was read again ('
       . hgetall_calls($r) . ' HGETALLs for ' . scalar(@k) . ' keys)');
    my $ev1 = wait_events($port, 'flush', $ev0, $WORKERS);
    is($ev1 - $ev0, $WORKERS, "api_key_events_total{type=\"flush\"} +$WORKERS");
}

# --- every zone: a revoke applies to each api_key_zone ------------------------
{
    my $k = random_key('mz');
    my $h = add_key($r, $k, owner => 'mz');
    my $g2 = sub { http_get($port, '/z2/', headers => { 'X-API-Key' => $k }) };
    is(st(get($k)), '200 ok', 'two zones: cached in zone keys');
    is(st($g2->()), '200 ok', 'two zones: cached in zone other');
    my ($rv0, $up0) = (events_seen($port, 'revoke'), events_seen($port, 'update'));
    publish($r, "revoke $h");
    is(st(get($k)), '401 revoked', 'two zones: revoked in zone keys');
    is(st($g2->()), '401 revoked', 'two zones: revoked in zone other');
    wait_events($port, 'revoke', $rv0, $WORKERS);
    reset_stats($r);
    publish($r, "update $h");
    is(st(get($k)), '200 ok', 'two zones: update re-reads in zone keys');
    is(st($g2->()), '200 ok', 'two zones: update re-reads in zone other');
    ok(hgetall_calls($r) >= 2, '... an HGETALL for each zone');
    wait_events($port, 'update', $up0, $WORKERS);
    $r->cmd('HSET', "apikey:$h", 'owner', 'mz2');
    publish($r, 'flush');
    is(get($k)->header('X-Owner'), 'mz2', 'two zones: flush empties zone keys');
    is($g2->()->header('X-Owner'), 'mz2', 'two zones: flush empties zone other');
}

# --- a burst of events: all applied, in order -----------------------------------
{
    my @k = map { random_key("b$_") } 1 .. 3;
    my @h = map { add_key($r, $_, owner => 'burst') } @k;
    is(st(get($_)), '200 ok', 'burst: key cached') for @k;
    my $N = 20000;
    my $ev0 = metrics($port);
    my $t0 = time;
    # pipelined: updates of random (uncached) hashes, the real events last
    my @msgs = ((map { 'update ' . sha256_hex("burst-$_-" . rand) } 1 .. $N),
                (map { "revoke $_" } @h));
    my @rep = publish_pipelined($r, \@msgs);
    is_deeply([ grep { !defined $_ || $_ != $WORKERS } @rep ], [],
              "burst: $N + " . scalar(@h) . " PUBLISHes, each to $WORKERS receivers");
    my $want_u = ($ev0->{'api_key_events_total{type="update"}'} // 0) + $WORKERS * $N;
    my $want_r = ($ev0->{'api_key_events_total{type="revoke"}'} // 0) + $WORKERS * @h;
    my $ev1;
    poll(sub { $ev1 = metrics($port);
               ($ev1->{'api_key_events_total{type="update"}'} // 0) >= $want_u
               && ($ev1->{'api_key_events_total{type="revoke"}'} // 0) >= $want_r },
         timeout => 10, interval => 0.05);
    is($ev1->{'api_key_events_total{type="update"}'}, $want_u,
       "burst: every update was received by every worker");
    is($ev1->{'api_key_events_total{type="revoke"}'}, $want_r,
       "burst: ... and every revoke");
    note sprintf 'burst applied in %.2fs', time - $t0;
    my @s = map { st(get($_)) } @k;
    is_deeply(\@s, [ ('401 revoked') x @k ], 'burst: the revokes at its end are applied');
}

# --- malformed messages: a warning, otherwise ignored ------------------------
{
    my $k = random_key('mf');
    my $h = add_key($r, $k, owner => 'steady');
    is(get($k)->status, 200, 'malformed: key cached');
    my $secret = random_key('LEAK');    # as if someone published a raw key
    my @bad = (
        'revoke nothex',
        'hello',
        "revoke $secret",
        'revoke ' . substr($h, 0, 63),
        'revoke ' . $h . '0',
        'revoke  ' . $h,
        "revoke\t$h",
        'update',
        'flush please',
        'revoke ' . ('g' x 64),
        '',
        "revoke $h\0",
        "revoke $h\r\n",
        'x' x 1_000_000,
    );
    my $ev0 = metric($port, 'api_key_events_total{type="malformed"}');
    my $mark = $n->log_mark;
    reset_stats($r);
    for my $m (@bad) {
        my $show = length $m > 80 ? substr($m, 0, 20) . '... (' . length($m) . ' bytes)' : $m;
        $show =~ s/([\x00-\x1f])/sprintf '\\x%02x', ord $1/ge;
        is(publish($r, $m), $WORKERS, "published a malformed message '$show'");
    }
    my $ev1;
    poll(sub { ($ev1 = metric($port, 'api_key_events_total{type="malformed"}'))
               >= $ev0 + $WORKERS * @bad }, timeout => 2);
    is($ev1 - $ev0, $WORKERS * @bad,
       'api_key_events_total{type="malformed"} counts each, once per worker');
    my $res = get($k);
    is($res->status, 200, 'malformed: nginx keeps working, the cached key is still ok');
    is($res->header('X-Owner'), 'steady', '... with its record');
    is(hgetall_calls($r), 0, '... from the cache (no event took effect)');
    my @warn;
    poll(sub {
        @warn = grep { $_->{level} eq 'warn' }
            parse_error_log($n->error_log_since($mark));
        @warn >= @bad;
    }, timeout => 2);
    ok(@warn >= @bad, 'a warning per malformed message (' . scalar(@warn)
       . ' warn lines for ' . scalar(@bad) . ' messages)')
        or diag join "\n", map { $_->{line} } @warn;
    like($warn[0]{msg} // '', qr/malformed|event/i, '... about a malformed event')
        if @warn;
    my $log = $n->error_log_since($mark);
    unlike($log, qr/\Q$secret\E/, 'the content of a malformed message is not logged');
    unlike($log, qr/nothex/, '... (not even "nothex")');
    is_deeply([ $n->problems($log) ], [], 'malformed: no alert or crash');

    # a well-formed event still works afterwards
    publish($r, "revoke $h");
    is(get($k)->header('X-Status'), 'revoked',
       'after the malformed messages, a revoke still works');
}

# --- messages on other channels are not events --------------------------------
{
    my $k = random_key('oc');
    my $h = add_key($r, $k, owner => 'oc');
    is(get($k)->status, 200, 'other channel: key cached');
    is(publish($r, "revoke $h", channel => 'apikey:events2'), 0,
       'PUBLISH revoke on apikey:events2: nobody listens');
    is(publish($r, "revoke $h", channel => 'other'), 0,
       'PUBLISH revoke on other: nobody listens');
    is(get($k)->status, 200, 'other channel: the key is still accepted');
}

# --- channel= -------------------------------------------------------------------
{
    my $n2 = ApiKeyTest::Nginx->start(http => $http, workers => 1,
        vars => { REDIS => $r->port, CHANNEL => 'channel=ops:keys' });
    ok(poll(sub { numsub($r, 'ops:keys') == 1 }, timeout => 5),
       'channel=ops:keys: the second nginx subscribes to ops:keys');
    is(numsub($r, 'ops:keys'), 1, 'PUBSUB NUMSUB ops:keys = 1');
    is(numsub($r, 'apikey:events'), $WORKERS,
       '... and the second nginx does not subscribe to apikey:events');
    my $k = random_key('ch');
    my $h = add_key($r, $k, owner => 'ch');
    my $g2 = sub { http_get($n2->port, '/', headers => { 'X-API-Key' => $k }) };
    is($g2->()->status, 200, 'channel=: key cached');
    publish($r, "revoke $h");
    is($g2->()->status, 200, 'channel=: a revoke on apikey:events is not for it');
    is(publish($r, "revoke $h", channel => 'ops:keys'), 1,
       'PUBLISH revoke on ops:keys: one receiver');
    my $res = $g2->();
    is($res->status, 401, 'channel=: the revoke on its channel denies the key');
    is($res->header('X-Status'), 'revoked', '... revoked');
    is_deeply([ $n2->problems ], [], 'second nginx: no alert, crit or emerg');
    $n2->stop;
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
