# SPDX-License-Identifier: BSD-2-Clause
# A record near the largest size (4,096 bytes serialised) in the smallest
# zone api_key_zone accepts: the cache always has room for it (the smallest
# zone has at least 64 slots, the largest record takes 34), so it is cached
# like any record: 10 requests cost 1 HGETALL and log nothing.  Just over
# the limit it is a bad record: cached for negative_ttl, 1 HGETALL, 1
# warning naming the key id.  (A record the cache refuses for any other
# reason is cached as a bad record too, see lookup.c.)  A bad record whose
# cached answer was evicted is read again but not logged again.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

# the smallest zone nginx -t accepts
my $probe = ApiKeyTest::Nginx->check_config(http => <<'EOT');
    api_key_zone  keys:1k;
EOT
my ($min) = $probe->{output} =~ /at least (\d+)k/;
ok($min, "the smallest zone: ${\ ($min // '?') }k");
$min //= 64;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:%%ZONE%%k ttl=60s negative_ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
    vars => { REDIS => $r->port, ZONE => $min });
sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }
sub lines { my ($re, $text) = @_; grep { /$re/ } split /\n/, $text }

# $count IPv4 /24 CIDRs (each "10.A.B.0/24", 5 bytes of the record), and the
# client's own address so that the key is admitted
sub cidrs {
    my ($count) = @_;
    return join ',', '127.0.0.1', map { sprintf '10.%d.%d.0/24', int($_ / 256), $_ % 256 } 1 .. $count - 1;
}

for my $case ([800, '200 ok', 'near 4 KB'], [900, '401 bad_record', 'over 4 KB']) {
    my ($count, $want, $what) = @$case;
    my $k = random_key("big$count");
    my $h = add_key($r, $k, owner => 'o', ips => cidrs($count));
    my $id = substr($h, 0, 12);
    reset_stats($r);
    my $mark = $n->log_mark;
    my @s = map { st(http_get($n->port, '/', headers => { 'X-API-Key' => $k })) } 1 .. 10;
    is_deeply(\@s, [ ($want) x 10 ], "a record $what ($count CIDRs), zone ${min}k: $want x10");
    is(hgetall_calls($r), 1, '... one HGETALL for 10 requests (cached)');
    my @w = lines(qr/api_key: record of key id/, $n->error_log_since($mark));
    is(scalar(@w), $want =~ /bad/ ? 1 : 0, '... ' . ($want =~ /bad/ ? 'one warning' : 'no warning'))
        or diag join "\n", @w;
    like($w[0], qr/key id "$id"/, '... naming the key id') if @w;
    is_deeply([ key_leaks($n->error_log, $k) ], [], '... and never the key');
}

# A bad record's cached answer is a negative entry, which does not stay: a
# flood of unknown keys evicts it (negative entries take at most negative_max
# of the zone, oldest first).  Read again, the same version is not logged
# again by the worker that logged it (it remembers the last ones).
{
    my $k = random_key('badev');
    my $h = add_key($r, $k, owner => 'o', rate => 'lots');
    my $id = substr($h, 0, 12);
    reset_stats($r);
    my $mark = $n->log_mark;
    is(st(http_get($n->port, '/', headers => { 'X-API-Key' => $k })), '401 bad_record',
       'a malformed record: bad_record');
    my $c = ApiKeyTest::HTTPConn->new($n->port);
    my %u;
    $u{ st($c->get('/', headers => { 'X-API-Key' => random_key('flood') })) }++ for 1 .. 200;
    $c->close;
    is_deeply(\%u, { '401 unknown' => 200 }, '200 unknown keys (negative entries)');
    is(st(http_get($n->port, '/', headers => { 'X-API-Key' => $k })), '401 bad_record',
       'the malformed record again: bad_record');
    is(hgetall_calls($r), 202, '... read again: its cached answer was evicted by the flood');
    my @w = lines(qr/record of key id "$id"/, $n->error_log_since($mark));
    is(scalar(@w), 1, '... and not logged again (the same version)') or diag join "\n", @w;
}

# ... but a record fixed, then broken again the same way, is news: logged again
{
    my $k = random_key('badagain');
    my $h = add_key($r, $k, owner => 'o', rate => 'lots');
    my $id = substr($h, 0, 12);
    my $mark = $n->log_mark;
    my $get = sub { st(http_get($n->port, '/', headers => { 'X-API-Key' => $k })) };
    is($get->(), '401 bad_record', 'a malformed record: bad_record');
    $r->cmd('HSET', "apikey:$h", 'rate', '10/s');
    $r->cmd('PUBLISH', 'apikey:events', "update $h");
    ok(wait_until(sub { $get->() eq '200 ok' }, timeout => 3, interval => 0.1),
       'fixed, and an update published: 200 ok');
    $r->cmd('HSET', "apikey:$h", 'rate', 'lots');
    $r->cmd('PUBLISH', 'apikey:events', "update $h");
    ok(wait_until(sub { $get->() eq '401 bad_record' }, timeout => 3, interval => 0.1),
       'broken again the same way: bad_record');
    my @w = lines(qr/record of key id "$id"/, $n->error_log_since($mark));
    is(scalar(@w), 2, '... and logged again') or diag join "\n", @w;
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

done_testing;
