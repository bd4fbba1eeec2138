# SPDX-License-Identifier: BSD-2-Clause
# Concurrent reads of the same key are coalesced into one HGETALL per zone,
# also when the same key is used in two zones: the in-flight reads are an
# rbtree keyed by the hash's first bytes, where equal keys (the same hash in
# two zones) may end up on either side of each other after a rotation.
# Here: K in zone 1, K in zone 2 (inserted to the right of it), X > K (a
# rotation makes K/zone 2 the parent of K/zone 1), then K in zone 1 again:
# it must join the first read, not send another.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  one:1m;
    api_key_zone  two:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=5s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location /one/ {
            api_key one;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /two/ {
            api_key two;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, redis_clients => 2,
    vars => { REDIS => $r->port });
my $port = $n->port;

# the rbtree key: the hash's first 8 bytes as a native (little-endian) word
sub tree_key { unpack 'Q<', substr(Digest::SHA::sha256($_[0]), 0, 8) }
sub key_where {
    my ($name, $ok) = @_;
    for (1 .. 1000) { my $k = random_key($name); return $k if $ok->(tree_key($k)) }
    die "no key found";
}
my $K = key_where('K', sub { $_[0] < 2**62 });
my $X = key_where('X', sub { $_[0] > 2**63 });
add_key($r, $K, owner => 'kay');
add_key($r, $X, owner => 'xavier');

reset_stats($r);
my @b;
{
    my $g = $r->pause_guard;
    for my $req ([ '/one/', $K ], [ '/two/', $K ], [ '/one/', $X ], [ '/one/', $K ],
                 [ '/two/', $K ])
    {
        push @b, http_batch($port, [ { path => $req->[0], headers => { 'X-API-Key' => $req->[1] } } ]);
        sleep 0.15;    # one at a time, in this order
    }
}
my @res = map { ($_->wait(timeout => 10))[0] } @b;
is_deeply([ map { $_->status . ' ' . ($_->header('X-Status') // '') } @res ],
          [ ('200 ok') x 5 ], 'every request is answered once Redis answers');
is(hgetall_calls($r), 3,
   'one HGETALL per zone and key: K in zone one, K in zone two, X (the second K of each zone joined)');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

done_testing;
