# SPDX-License-Identifier: BSD-2-Clause
# Hostile input, Redis side (2): records of the wrong shape.
#
# Records of the wrong Redis type (STRING, LIST, SET, ZSET, STREAM, a
# HyperLogLog), the empty hash (Redis cannot hold one: removing the last
# field removes the key, so it is "unknown"), a hash of empty fields (a
# record without limits), records at and past the 4,096-byte serialised
# limit (817 IPv4 /24s or 454 IPv6 /64s fit; 10,000 CIDRs), and a
# record whose wrong type changes.  Expected: bad_record (401) and one
# warning per record naming the key id, never the key; never a 200 for a
# record that cannot be read.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Hostile;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:4m negative_ttl=1s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;
my $BAD = '401 bad_record';

sub name_of { 'apikey:' . key_hash($_[0]) }
sub id_of { substr(key_hash($_[0]), 0, 12) }

# IPv4 /24s and IPv6 /64s, none of them the client's
sub v4s { my ($c) = @_; join ',', map { sprintf '10.%d.%d.0/24', $_ >> 8, $_ & 0xff } 1 .. $c }
sub v6s { my ($c) = @_; join ',', map { sprintf '2001:db8:%x:%x::/64', $_ >> 16, $_ & 0xffff } 1 .. $c }

# [ name, sub { make the record of $key }, expected, id the warning names ]
my @rows = (
    [ 'a STRING',  sub { $r->cmd('SET', name_of($_[0]), 'owner') }, $BAD ],
    [ 'an empty STRING', sub { $r->cmd('SET', name_of($_[0]), '') }, $BAD ],
    [ 'a LIST',    sub { $r->cmd('RPUSH', name_of($_[0]), 'owner', 'x') }, $BAD ],
    [ 'a SET',     sub { $r->cmd('SADD', name_of($_[0]), 'owner', 'x') }, $BAD ],
    [ 'a ZSET',    sub { $r->cmd('ZADD', name_of($_[0]), 1, 'owner') }, $BAD ],
    [ 'a STREAM',  sub { $r->cmd('XADD', name_of($_[0]), '*', 'owner', 'x') }, $BAD ],
    [ 'a HyperLogLog', sub { $r->cmd('PFADD', name_of($_[0]), 'a', 'b') }, $BAD ],
    [ 'a 1 MB STRING', sub { $r->cmd('SET', name_of($_[0]), 'x' x (1 << 20)) }, $BAD ],
    [ 'a LIST of 10,000 items',
      sub { $r->cmd('RPUSH', name_of($_[0]), map { "i$_" } 1 .. 10000) }, $BAD ],
    [ 'an empty hash (HSET, then HDEL of its only field: the key is gone)',
      sub { $r->cmd('HSET', name_of($_[0]), 'owner', 'x');
            $r->cmd('HDEL', name_of($_[0]), 'owner') }, '401 unknown' ],
    [ 'a hash whose fields are all empty (a record without limits)',
      sub { $r->cmd('HSET', name_of($_[0]), map { ($_ => '') }
                    qw(id owner plan status expires_at scopes ips referrers rate burst quota)) },
      '200 ok' ],
    [ 'ips: 10,000 IPv4 CIDRs (too large)',
      sub { add_key($r, $_[0], ips => v4s(10000)) }, $BAD ],
    [ 'ips: 10,000 IPv6 CIDRs (too large)',
      sub { add_key($r, $_[0], ips => v6s(10000)) }, $BAD ],
    # an IPv4 rule takes 5 bytes, a /64 9, the record's header, the list's
    # length and its count of IPv4 rules 7: with nothing else in the
    # record, 817 and 454 fit (4,092 and 4,093 bytes)
    [ 'ips: 817 IPv4 /24s, nothing else (fits)', sub { add_key($r, $_[0], ips => v4s(817)) },
      '403 ip_denied' ],
    [ 'ips: 818 IPv4 /24s (too large)', sub { add_key($r, $_[0], ips => v4s(818)) }, $BAD ],
    [ 'ips: 817 IPv4 /24s and an owner of 3 bytes (fits)',
      sub { add_key($r, $_[0], ips => v4s(817), owner => 'abc') }, '403 ip_denied' ],
    [ 'ips: 817 IPv4 /24s and an owner of 4 bytes (too large)',
      sub { add_key($r, $_[0], ips => v4s(817), owner => 'abcd') }, $BAD ],
    [ 'ips: 454 IPv6 /64s (fits)', sub { add_key($r, $_[0], ips => v6s(454)) },
      '403 ip_denied' ],
    [ 'ips: 455 IPv6 /64s (too large)', sub { add_key($r, $_[0], ips => v6s(455)) }, $BAD ],
    [ 'ips: 816 IPv4 /24s and the client\'s',
      sub { add_key($r, $_[0], ips => v4s(816) . ',127.0.0.1/24') }, '200 ok' ],
    [ 'referrers: 2,000 hosts (too large)',
      sub { add_key($r, $_[0], referrers => join ',', map { "h$_.example.com" } 1 .. 2000) },
      $BAD ],
    [ 'scopes, referrers, ips, owner, plan each under its limit, too large together',
      sub { add_key($r, $_[0], scopes => join(' ', map { "scope$_" } 1 .. 150),
                    referrers => join(',', map { "h$_.example.org" } 1 .. 100),
                    ips => v4s(300), owner => 'o' x 256, plan => 'p' x 256) }, $BAD ],
);

my @cases;
my %want_warn;
my $i = 0;
for my $row (@rows) {
    my ($what, $make, $want) = @$row;
    $i++;
    my $k = random_key("rs$i");
    $r->cmd('DEL', name_of($k));
    $make->($k);
    push @cases, map { { name => "$what (request $_)", headers => [ 'X-API-Key' => $k ],
                         want => $want } } 1 .. 3;
    $want_warn{id_of($k)} = [ $what, $want eq $BAD ? 1 : 0 ];
}

my $mark = $n->log_mark;
run_cases($port, \@cases);

sub warnings_by_id {
    my ($text) = @_;
    my %count;
    for my $l (split /\n/, $text) {
        next unless $l =~ /\[warn\]/;
        $count{$1}++ while $l =~ /api_key: record of key id "([^"]*)" (?:is invalid|is not a hash|does not fit)/g;
    }
    return \%count;
}

{
    my $count = warnings_by_id($n->error_log_since($mark));
    my @wrong = map { "$want_warn{$_}[0]: " . ($count->{$_} // 0) . " warnings" }
                grep { ($count->{$_} // 0) != $want_warn{$_}[1] } sort keys %want_warn;
    is_deeply(\@wrong, [], 'one warning per record that cannot be used, naming the key id; '
              . 'none for the others') or diag join "\n", @wrong;
}

# --- a record whose type changes, then is fixed ----------------------------------
# the warning is per version of the record; a record that is not a hash is
# not read, so another wrong type is the same version (README)
{
    my $k = random_key('rt');
    my $name = name_of($k);
    my $id = id_of($k);
    $mark = $n->log_mark;
    $r->cmd('RPUSH', $name, 'a');
    is(got(http_get($port, '/', headers => { 'X-API-Key' => $k })), $BAD, 'a LIST: bad_record');
    $r->cmd('DEL', $name);
    $r->cmd('SADD', $name, 'b');
    sleep 1.2;    # past negative_ttl: read again
    is(got(http_get($port, '/', headers => { 'X-API-Key' => $k })), $BAD,
       'the same key as a SET: bad_record');
    $r->cmd('DEL', $name);
    add_key($r, $k, owner => 'o', rate => 'fast');
    sleep 1.2;
    is(got(http_get($port, '/', headers => { 'X-API-Key' => $k })), $BAD,
       'then a hash with a bad field: bad_record');
    my $count = warnings_by_id($n->error_log_since($mark));
    is($count->{$id}, 2, 'two warnings: one for the wrong type (LIST and SET alike), '
       . 'one for the bad field');
    add_key($r, $k, owner => 'fixed');
    $r->cmd('PUBLISH', 'apikey:events', 'update ' . key_hash($k));
    ok(wait_until(sub { got(http_get($port, '/', headers => { 'X-API-Key' => $k })) eq '200 ok' },
                  timeout => 3, interval => 0.1),
       'fixed, and an update event: the key works at once');
}

is_deeply([ $n->problems ], [], 'no alert, crit, emerg or crash');

done_testing;
