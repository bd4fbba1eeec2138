# SPDX-License-Identifier: BSD-2-Clause
# Cluster-wide rate (rate_scope=cluster) when Redis goes away: two nginx
# nodes on one Redis.  While Redis runs, a key's rate holds across both
# nodes (rate 4/m: 4 admitted in all, whichever node is asked).  With Redis
# stopped, cached keys keep working and their rate is counted per node
# (each node admits what its own bucket holds: the per-node limiter), with
# one warning per outage at most and no error; once Redis is back (a new
# redis-server, the script loaded again), the rate holds across the nodes
# again.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s stale=10m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=300ms connect_timeout=300ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        location / {
            try_files /ok.txt =404;
        }
    }
EOT

my @nodes = map {
    my $n = ApiKeyTest::Nginx->start(http => $http, workers => 1,
        redis => $r, redis_clients => 2 * $_, vars => { REDIS => $r->port });
    static_site($n);
    $n;
} 1 .. 2;
my @ports = map { $_->port } @nodes;

# n requests alternating between the nodes: the statuses, as "200 429 ..."
sub alternate {
    my ($key, $n) = @_;
    return join ' ', map {
        http_get($ports[ $_ % 2 ], '/', headers => xkey($key))->status
    } 0 .. $n - 1;
}

sub count_of {
    my ($status, $list) = @_;
    return scalar(() = $list =~ /\b$status\b/g);
}

# --- Redis up: one rate for both nodes ---------------------------------------
my $k1 = random_key('up');
add_key($r, $k1, rate => '4/m', rate_scope => 'cluster');
my $s = alternate($k1, 10);
is(count_of(200, $s), 4, "rate 4/m across two nodes: 4 admitted in all ($s)");
is(count_of(429, $s), 6, '... the others 429');

# a key seen by both nodes before the outage (cached, one token each)
my $k2 = random_key('down');
add_key($r, $k2, rate => '5/m', rate_scope => 'cluster');
is(alternate($k2, 2), '200 200', 'a second key, cached on both nodes');

# --- Redis stopped: per node --------------------------------------------------
my $mark = [ map { $_->log_mark } @nodes ];
$r->stop;
sleep 0.5;

for my $i (0 .. 1) {
    my @st = map { http_get($ports[$i], '/', headers => xkey($k2))->status } 1 .. 8;
    # the node's own bucket of 5, one used before the outage
    is("@st", '200 200 200 200 429 429 429 429',
       "Redis down: node $i counts the rate itself (4 more of its bucket of 5)");
}
for my $i (0 .. 1) {
    my $log = $nodes[$i]->error_log_since($mark->[$i]);
    my @warn = $log =~ /^.*rate lease.*$/mg;
    cmp_ok(scalar @warn, '<=', 1, "node $i: at most one line about rate leases")
        or diag join "\n", @warn;
    unlike($log, qr/\[(?:error|crit|alert)\].*rate/, "node $i: no error about the rate");
}

# --- Redis back: across the nodes again ----------------------------------------
$r->start_again;
add_key($r, $k1, rate => '4/m', rate_scope => 'cluster');
add_key($r, $k2, rate => '5/m', rate_scope => 'cluster');
ok($r->wait_clients(2, timeout => 10), 'both nodes connected again');
# leases back off up to 5 s after the failures: wait until a fresh key
# with rate 1/m is admitted once in all (cluster), not once per node
my $tries = 0;
ok(wait_until(sub {
    my $k = random_key('probe' . $tries++);
    add_key($r, $k, rate => '1/m', rate_scope => 'cluster');
    alternate($k, 2) eq '200 429';
}, timeout => 12, interval => 0.2), "the rate holds across the nodes again ($tries tries)");
cmp_ok(commandstats($r)->{evalsha} // 0, '>', 0, 'tokens leased from the new Redis');
my $k3 = random_key('back');
add_key($r, $k3, rate => '3/m', rate_scope => 'cluster');
sleep 0.3;
$s = alternate($k3, 8);
is(count_of(200, $s), 3, "Redis back: rate 3/m across the nodes again ($s)");

done_testing;
