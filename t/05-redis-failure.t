# SPDX-License-Identifier: BSD-2-Clause
# Redis failures: Redis stopped (cached key ok, stale within "stale", 503 /
# unchecked for uncached keys, 503 past ttl+stale), Redis restarted on the
# same port (the module reconnects by itself), Redis paused (cached keys
# answer at once, misses wait about "timeout").
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;
my ($TTL, $STALE) = (2, 3);

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=%%TTL%%s stale=%%STALE%%s negative_ttl=1s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=300ms connect_timeout=300ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        location / {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /open/ {
            api_key_fail open;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
    vars => { REDIS => $r->port, TTL => $TTL, STALE => $STALE });
my $port = $n->port;
sub get { my ($k, $path) = @_; http_get($port, $path // '/', headers => { 'X-API-Key' => $k }) }

sub is_503 {
    my ($res, $what) = @_;
    is($res->status, 503, "$what: 503") or diag $res->as_string;
    is($res->header('X-Status'), 'unavailable', "$what: status unavailable");
    like($res->header('Retry-After') // '', qr/^\d+$/, "$what: Retry-After");
    is($res->header('WWW-Authenticate'), undef, "$what: no WWW-Authenticate");
}

sub is_unchecked {
    my ($res, $what) = @_;
    is($res->status, 200, "$what: fail open lets the request through")
        or diag $res->as_string;
    is($res->header('X-Status'), 'unchecked', "$what: status unchecked");
    like($res->body, qr/^echo/, "$what: the upstream answered");
}

# --- Redis stopped -----------------------------------------------------------
my $kA = random_key('A');
add_key($r, $kA, owner => 'alice');
is(get($kA)->status, 200, 'key cached while Redis is up');
my $t0 = time;
$r->stop;

{
    my $res = get($kA);
    is($res->status, 200, 'Redis down: a cached key is still accepted');
    is($res->header('X-Owner'), 'alice', '... with its record');
    is(get($kA, '/open/')->header('X-Status'), 'ok', 'Redis down, fail open: a cached key is ok');
    is_503(get(random_key('U1')), 'Redis down, unknown key, fail closed');
    is_unchecked(get(random_key('U2'), '/open/'), 'Redis down, unknown key, fail open');
    is(http_get($port, '/')->status, 401, 'Redis down: no key is still 401 missing');
}

sleep($t0 + $TTL + 0.5 - time) if time < $t0 + $TTL + 0.5;
{
    my $res = get($kA);
    is($res->status, 200, 'Redis down: a key past ttl but within stale is accepted');
    is($res->header('X-Status'), 'ok', '... status ok');
}

sleep($t0 + $TTL + $STALE + 0.7 - time) if time < $t0 + $TTL + $STALE + 0.7;
is_503(get($kA), 'Redis down: a key past ttl + stale');
is_unchecked(get($kA, '/open/'), 'Redis down: a key past ttl + stale, fail open');

# --- Redis restarted on the same port: the module reconnects ----------------
$r->start_again;
add_key($r, $kA, owner => 'alice2');
my $kD = random_key('D');
add_key($r, $kD, owner => 'dave');
{
    my $res;
    my $t = time;
    my $ok = wait_until(sub { $res = get($kD); $res->status == 200 },
                        timeout => 10, interval => 0.2);
    ok($ok, 'Redis restarted: the module reconnects by itself (no nginx restart)')
        or diag $res->as_string;
    note sprintf 'reconnected within %.1fs', time - $t;
    is($res->header('X-Owner'), 'dave', '... a key created after the restart is read');
    $res = get($kA);
    is($res->status, 200, '... the old key is read again');
}

# --- Redis paused (SIGSTOP) --------------------------------------------------
{
    my $kE = random_key('E');
    my $kF = random_key('F');
    my $kG = random_key('G');
    add_key($r, $kE, owner => 'erin');
    add_key($r, $kF, owner => 'frank');
    add_key($r, $kG, owner => 'gina');
    is(get($kE)->status, 200, 'key cached before the pause');
    {
        my $g = $r->pause_guard;
        my $res = get($kE);
        is($res->status, 200, 'Redis paused: a cached key is accepted');
        ok($res->elapsed < 0.25,
           sprintf('Redis paused: a cached key does not wait for Redis (%.3fs, timeout 300ms)',
                   $res->elapsed));
        $res = get($kF);
        is_503($res, 'Redis paused, key not cached');
        ok($res->elapsed >= 0.25 && $res->elapsed <= 1.5,
           sprintf('Redis paused: a miss is answered after about timeout (%.3fs)',
                   $res->elapsed));
        $res = get($kG, '/open/');
        is_unchecked($res, 'Redis paused, key not cached, fail open');
        ok($res->elapsed >= 0.25 && $res->elapsed <= 1.5,
           sprintf('Redis paused, fail open: after about timeout (%.3fs)', $res->elapsed));
        $res = get($kE);
        ok($res->status == 200 && $res->elapsed < 0.25,
           'Redis paused: the cached key is still answered at once after a timeout');
    }
    my $res;
    wait_until(sub { $res = get($kF); $res->status != 503 }, timeout => 10,
               interval => 0.1);
    is($res->status, 200, 'Redis resumed: the key that timed out is accepted');
}

# --- paused, key past ttl within stale: the stale record is used --------------
{
    my $kH = random_key('H');
    add_key($r, $kH, owner => 'hank');
    is(get($kH)->status, 200, 'key cached');
    sleep $TTL + 0.3;
    my $g = $r->pause_guard;
    my $res = get($kH);
    is($res->status, 200, 'Redis paused, key past ttl within stale: accepted (stale)');
    is($res->header('X-Owner'), 'hank', '... with its record');
    ok($res->elapsed <= 1.5, sprintf('... within about timeout (%.3fs)', $res->elapsed));
    $g->resume;
}

is(get(random_key('after'))->status, 401, 'afterwards: Redis answers again (unknown key 401)');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
