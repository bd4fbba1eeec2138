# SPDX-License-Identifier: BSD-2-Clause
# The shared cache (api_key_zone): records are read with HGETALL prefix+hex,
# a cached key costs no Redis command (in any worker), the negative cache,
# ttl, the cache survives nginx -s reload, and a Redis error or timeout is
# never cached as "unknown".
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;
my $TTL = 2;
my $NEG = 2;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=%%TTL%%s negative_ttl=%%NEG%%s stale=1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        location / {
            add_header X-Status $api_key_status always;
            add_header X-Owner  $api_key_owner always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => 2, redis => $r,
                                 vars => { REDIS => $r->port, TTL => $TTL, NEG => $NEG });
my $port = $n->port;
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }

# --- the record is read with HGETALL prefix+hex, then cached ---------------
{
    my $k = random_key('c');
    my $h = add_key($r, $k, owner => 'cached');
    reset_stats($r);
    my $m = $r->monitor;
    my $res = get($k);
    is($res->status, 200, 'first request: 200');
    is($res->header('X-Owner'), 'cached', 'first request: the record was read');
    is(hgetall_calls($r), 1, 'first request: one HGETALL');
    my @c = grep { $_->[0] eq 'hgetall' } $m->commands(0.2);
    is_deeply(\@c, [[ 'hgetall', "apikey:$h" ]],
              'the module sends HGETALL apikey:<lowercase sha256 hex>');
    $m->close;

    reset_stats($r);
    my @s = map { get($k)->status } 1 .. 12;
    is_deeply(\@s, [ (200) x 12 ], 'cached key: 12 requests, all 200');
    is(hgetall_calls($r), 0,
       'cached key: no HGETALL (the cache is shared by both workers)');
}

# --- negative cache ----------------------------------------------------------
{
    my $u = random_key('neg');
    reset_stats($r);
    my $t0 = time;
    my $a = get($u);
    my $b = get($u);
    is($a->status, 401, 'unknown key: 401');
    is($b->status, 401, 'unknown key again: 401');
    is($b->header('X-Status'), 'unknown', 'unknown key again: unknown');
    is(hgetall_calls($r), 1, 'unknown key asked twice within negative_ttl: one HGETALL');

    add_key($r, $u, owner => 'late');
    my $c = get($u);
    my $since = time - $t0;
    SKIP: {
        skip sprintf('machine too slow: %.2fs since the first lookup, not well '
                     . 'within negative_ttl (%ds): cannot tell a cached unknown '
                     . 'from an expired one', $since, $NEG), 2
            unless $since < $NEG - 0.3;
        is($c->status, 401, 'created in Redis meanwhile: still unknown within negative_ttl');
        is(hgetall_calls($r), 1, '... and still no second HGETALL');
    }
    sleep($t0 + $NEG + 0.3 - time) if time < $t0 + $NEG + 0.3;
    my $d = get($u);
    is($d->status, 200, 'after negative_ttl the key created meanwhile is accepted');
    is($d->header('X-Owner'), 'late', '... with its record');
}

# --- ttl: a record is read again after ttl -------------------------------
{
    my $k = random_key('ttl');
    add_key($r, $k, owner => 'v1');
    my $t0 = time;
    is(get($k)->header('X-Owner'), 'v1', 'ttl: first read');
    $r->cmd('HSET', 'apikey:' . sha256_hex($k), 'owner', 'v2');
    reset_stats($r);
    my $within = get($k);
    my $since = time - $t0;
    SKIP: {
        skip sprintf('machine too slow: %.2fs since the first read, not well '
                     . 'within ttl (%ds): cannot tell a cached record from one '
                     . 'read again', $since, $TTL), 2
            unless $since < $TTL - 0.3;
        is($within->header('X-Owner'), 'v1', 'ttl: within ttl the cached record is used');
        is(hgetall_calls($r), 0, 'ttl: ... without a Redis read');
    }
    sleep($t0 + $TTL + 0.2 - time) if time < $t0 + $TTL + 0.2;
    my $owner = '';
    wait_until(sub { $owner = get($k)->header('X-Owner') // ''; $owner eq 'v2' },
               timeout => 2, interval => 0.1);
    is($owner, 'v2', 'ttl: after ttl the record is read again');
    ok(hgetall_calls($r) >= 1, 'ttl: ... with an HGETALL');
}

# --- a timeout is not cached as unknown -------------------------------------
{
    my $k = random_key('tmo');
    add_key($r, $k, owner => 'slow');
    {
        my $g = $r->pause_guard;
        my $res = get($k);
        is($res->status, 503, 'Redis paused, key not cached: 503');
        is($res->header('X-Status'), 'unavailable', '... unavailable');
    }
    my $res;
    wait_until(sub { $res = get($k); $res->status != 503 }, timeout => 10,
               interval => 0.1);
    is($res->status, 200, 'Redis resumed: the key is accepted (the timeout was not cached as unknown)');
}

# --- the cache survives nginx -s reload ------------------------------------
my $kr = random_key('reload');
add_key($r, $kr, owner => 'survivor');
is(get($kr)->status, 200, 'reload: key cached');
$r->stop;
ok($n->reload, 'nginx -s reload with Redis stopped') or diag $n->reload_error;
is_deeply($n->{old_workers_left}, [],
          'reload: the old workers exit (within 10s) although Redis is down');
{
    my $res = get($kr);
    is($res->status, 200, 'reload: the cached key is still accepted (cache kept)');
    is($res->header('X-Owner'), 'survivor', 'reload: ... with its record');
    my $u = get(random_key('down'));
    is($u->status, 503, 'reload: an uncached key gets 503 (Redis really is down)');
}

# --- a Redis error is not cached as unknown ----------------------------------
{
    my $k = random_key('err');
    my $a = get($k);
    is($a->status, 503, 'Redis down: unknown key gets 503, not 401');
    is($a->header('X-Status'), 'unavailable', '... unavailable');
    ok(defined $a->header('Retry-After'), '... with Retry-After');
    $r->start_again;
    add_key($r, $k, owner => 'back');
    my $res;
    my $t0 = time;
    wait_until(sub { $res = get($k); $res->status != 503 }, timeout => 10,
               interval => 0.1);
    is($res->status, 200, 'Redis back with the key created: accepted at once '
                          . '(the error was not cached as unknown)');
    is($res->header('X-Owner'), 'back', '... with its record');
    note sprintf 'reconnected after %.1fs', time - $t0;
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
