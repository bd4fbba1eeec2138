# SPDX-License-Identifier: BSD-2-Clause
# Error answers of Redis to record reads, and malformed records.
#
# - An authorization error (an ACL user without HGETALL: NOPERM) is a
#   misconfiguration, not an outage: keys not cached are answered 503
#   "unavailable" also under api_key_fail open (never "unchecked").  It is
#   logged once, with the key id (never the key), until a read succeeds,
#   which is logged with the count.
# - A malformed record (a bad field, or not a hash: WRONGTYPE) is cached
#   like a negative entry for negative_ttl (one HGETALL, not one per
#   request) and answered bad_record; it is logged once per version of the
#   record, with the key id; a changed record is logged again, a fixed one
#   works after an update event.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start(
    users => ['default on nopass ~* &* +@all',
              'nginx on >nginx-pw ~* &* +@all -hgetall',
              'noping on >noping-pw ~* &* +@all -ping']);

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m negative_ttl=%%NEGTTL%%;
    api_key_redis redis://nginx:nginx-pw@127.0.0.1:%%REDIS%% timeout=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        add_header X-Id     $api_key_id always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /open/ {
            api_key keys;
            api_key_fail open;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, redis_clients => 2,
    vars => { REDIS => $r->port, NEGTTL => '1s' });
my $port = $n->port;
sub get { my ($k, $p) = @_; http_get($port, $p // '/', headers => { 'X-API-Key' => $k }) }
sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }
sub id_of { substr(key_hash($_[0]), 0, 12) }
sub lines { my ($re, $text) = @_; grep { /$re/ } split /\n/, $text }

# --- NOPERM: fail closed, logged once with the key id ------------------------
my @keys = map { random_key("np$_") } 1 .. 10;
add_key($r, $_, owner => 'o') for @keys;
my $mark = $n->log_mark;
{
    my @s = map { st(get($_, '/open/')) } @keys;
    is_deeply(\@s, [ ('503 unavailable') x 10 ],
              'NOPERM on HGETALL, api_key_fail open: 503 unavailable, never unchecked');
    is(st(get('garbage-that-is-no-key', '/open/')), '503 unavailable',
       '... also for any string');
    is(st(get($keys[0])), '503 unavailable', '... and under fail closed');
    my $log = $n->error_log_since($mark);
    my @err = lines(qr/answered the read of key id/, $log);
    is(scalar @err, 1, 'one error line for the 12 error answers') or diag join "\n", @err;
    like($err[0] // '', qr/key id "${\ id_of($keys[0]) }".*NOPERM.*authorization error/,
         '... naming the key id, the error, and that it fails closed');
    is_deeply([ key_leaks($log, @keys) ], [], '... and never a key');
}

$r->cmd('ACL', 'SETUSER', 'nginx', '+hgetall');
sleep 1.1;    # the run of error answers is over after a second without one
{
    is(st(get($keys[1], '/open/')), '200 ok', 'HGETALL allowed again: the key works');
    my @ok = lines(qr/reads succeed again, after (\d+) error answers/, $n->error_log_since($mark));
    is(scalar @ok, 1, '... and the log says the reads succeed again');
    like($ok[0] // '', qr/after 1[12] error answers/, '... with the count');
    is(st(get(random_key('u'), '/open/')), '401 unknown', 'an unknown key is unknown again');
}

# --- a malformed record: cached for negative_ttl, logged once per version ---
{
    my $k = random_key('bad');
    my $h = add_key($r, $k, owner => 'b', rate => 'lots');
    my $id = id_of($k);
    reset_stats($r);
    $mark = $n->log_mark;
    my @s = map { st(get($k)) } 1 .. 10;
    is_deeply(\@s, [ ('401 bad_record') x 10 ], 'a malformed record: 401 bad_record');
    is(hgetall_calls($r), 1, '... read once for 10 requests (cached like a negative entry)');
    my @w = lines(qr/record of key id "$id" is invalid/, $n->error_log_since($mark));
    is(scalar @w, 1, '... and logged once, with the key id');

    sleep 1.2;    # past negative_ttl: read again, the same record: not logged again
    is(st(get($k)), '401 bad_record', 'past negative_ttl: still bad_record');
    is(hgetall_calls($r), 2, '... read again once');
    @w = lines(qr/record of key id "$id" is invalid/, $n->error_log_since($mark));
    is(scalar @w, 1, '... the same version is not logged again');

    $r->cmd('HSET', "apikey:$h", 'rate', 'even more');
    sleep 1.2;
    is(st(get($k)), '401 bad_record', 'another malformed version: bad_record');
    @w = lines(qr/record of key id "$id" is invalid/, $n->error_log_since($mark));
    is(scalar @w, 2, '... logged once more (a new version)');

    $r->cmd('HSET', "apikey:$h", 'rate', '10/s');
    $r->cmd('PUBLISH', 'apikey:events', "update $h");
    ok(wait_until(sub { st(get($k)) eq '200 ok' }, timeout => 3, interval => 0.1),
       'the record fixed and an update published: the key works at once');
    is_deeply([ key_leaks($n->error_log, $k) ], [], 'the key is never logged');
}

# --- not a hash (WRONGTYPE): the same ----------------------------------------
{
    my $k = random_key('str');
    add_key($r, $k, -string => 'i am a string');
    my $id = id_of($k);
    reset_stats($r);
    $mark = $n->log_mark;
    my @s = map { st(get($k, '/open/')) } 1 .. 10;
    is_deeply(\@s, [ ('401 bad_record') x 10 ], 'a record that is not a hash: 401 bad_record');
    is(hgetall_calls($r), 1, '... read once for 10 requests');
    my @w = lines(qr/key id "$id" is not a hash/, $n->error_log_since($mark));
    is(scalar @w, 1, '... logged once, with the key id');
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

# --- an ACL user without PING: the connection's PING answered NOPERM is an
# answer (authenticated, working), not a failure --------------------------
{
    (my $h2 = $http) =~ s/nginx:nginx-pw/noping:noping-pw/;
    my $n2 = ApiKeyTest::Nginx->start(http => $h2, redis => $r, redis_clients => 2,
        vars => { REDIS => $r->port, NEGTTL => '1s' });
    my $k = random_key('np');
    add_key($r, $k, owner => 'p');
    is(http_get($n2->port, '/', headers => { 'X-API-Key' => $k })->status, 200,
       'an ACL user without PING: keys work');
    my @e = grep { /\[error\]/ } split /\n/, $n2->error_log;
    is_deeply(\@e, [], '... and no error is logged');
    $n2->stop;
}

done_testing;
