#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# bench/failover-cluster.pl (run by bench/failover-cluster.sh, `make
# bench-failover`): the module on a Redis Cluster, on loopback.
#
# 1. Failover: six nodes (three masters, a replica each,
#    cluster-node-timeout 1000 ms), nginx with 2 workers; one client walks
#    keys whose records are on the master that is killed (kill -9): each
#    request a key never asked before (uncached: a Redis read each), and in
#    between every cached key (8 on that master, 8 on the others) and an
#    uncached key on another master.  Reported per round: the
#    unavailability window for uncached keys on the dead master (kill to the
#    first 200; every answer meanwhile must be 503 "unavailable", never 401),
#    the errors on cached keys (goal 0) and on the other masters' keys
#    (Redis's default cluster-require-full-coverage yes: every node answers
#    CLUSTERDOWN between the master being marked failed and the promotion,
#    so a few of those are 503 too).
#    BENCH_FAILOVER_ROUNDS rounds (3), each on a new cluster.
# 2. Miss-path cost: one nginx worker, one keep-alive connection, N
#    (BENCH_FAILOVER_MISSES, 3000) keys each asked once (each a Redis read),
#    against one redis-server and against a 3-master cluster; the mean and
#    p50/p99 of the request's time as the client sees it (the client's own
#    cost is the same in both rows).
#
# Prints a markdown section on stdout (and TAP on stderr).

use strict;
use warnings;
use v5.36;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use ApiKeyTest;
use ApiKeyTest::HTTPConn;

require_module();

my $ROUNDS = $ENV{BENCH_FAILOVER_ROUNDS} // 3;
my $MISSES = $ENV{BENCH_FAILOVER_MISSES} // 3000;

sub fresh_key { join '', 'bk', map { sprintf '%08x', int rand 2**32 } 1 .. 4 }

sub nginx_for {
    my ($url, %o) = @_;
    return ApiKeyTest::Nginx->start(workers => $o{workers} // 2, http => <<"EOT" . echo_server(),
    api_key_zone  keys:16m ttl=60s negative_ttl=0;
    api_key_redis $url timeout=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
        expect_problems => [qr/redis cluster .*node .*(?:refused|closed|reset|timed out)/]);
}

# --- 1. failover ---------------------------------------------------------------------

my @rounds;
for my $round (1 .. $ROUNDS) {
    my $c = ApiKeyTest::Cluster->start(masters => 3, replicas => 1, node_timeout => 1000);
    my $rt = $c->router;
    my $victim = ($c->masters)[$round % 3];
    my @map = @{ $c->slot_map };
    my $on_victim = sub {
        my $s = ApiKeyTest::Cluster::slot_of($_[0]);
        for (@map) { return $_->[2] == $victim->port if $s >= $_->[0] && $s <= $_->[1] }
        return 0;
    };
    my (%set);
    while (grep { @{ $set{$_} // [] } < ($_ =~ /fresh/ ? 400 : 8) }
           qw(on_cached off_cached on_fresh off_fresh)) {
        my $k = fresh_key();
        my $name = 'apikey:' . key_hash($k);
        my $w = $on_victim->($name) ? 'on' : 'off';
        my ($s) = grep { @{ $set{$_} // [] } < ($_ =~ /fresh/ ? 400 : 8) }
                  ("${w}_cached", "${w}_fresh");
        next unless $s;
        $rt->cmd('HSET', $name, id => 'b', owner => 'o');
        push @{ $set{$s} }, $k;
    }
    my $n = nginx_for($c->url);
    my $conn = ApiKeyTest::HTTPConn->new($n->port);
    my $st = sub {
        my $x = $conn->get('/', headers => { 'X-API-Key' => $_[0] });
        return $x->status . ' ' . ($x->header('X-Status') // '');
    };
    $st->($_) for @{ $set{on_cached} }, @{ $set{off_cached} };

    my %r = (cached_errors => 0, other_errors => 0, wrong => 0, u503 => 0);
    my $t0 = time;
    $c->kill_master($victim);
    my $i = 0;
    while (time < $t0 + 20 && $i < 400) {
        my $s = $st->($set{on_fresh}[$i]);
        if ($s eq '200 ok') {
            $r{first_ok} //= time - $t0;
        } elsif ($s eq '503 unavailable' && !defined $r{first_ok}) {
            $r{u503}++;
            $r{last_503} = time - $t0;
        } else {
            $r{wrong}++;
        }
        for my $k (@{ $set{on_cached} }, @{ $set{off_cached} }) {
            $r{cached_errors}++ unless $st->($k) eq '200 ok';
        }
        $r{other_errors}++ unless $st->($set{off_fresh}[$i]) eq '200 ok';
        $i++;
        last if defined $r{first_ok} && time > $r{first_ok} + $t0 + 1;
        sleep 0.01;
    }
    $r{asked} = $i;
    ok defined $r{first_ok}, "round $round: uncached keys on the dead master answered again";
    is $r{wrong}, 0, "round $round: no wrong answer (401, or 503 after a 200)";
    push @rounds, \%r;
    $n->stop;
    $c->stop;
}

# --- 2. miss-path cost ---------------------------------------------------------------

sub misses {
    my ($url, $writer) = @_;
    my @keys;
    for (1 .. $MISSES) {
        my $k = fresh_key();
        $writer->cmd('HSET', 'apikey:' . key_hash($k), id => 'm', owner => 'o');
        push @keys, $k;
    }
    my $n = nginx_for($url, workers => 1);
    my $conn = ApiKeyTest::HTTPConn->new($n->port);
    # warm-up: the connections (and the cluster's map) are up
    $conn->get('/', headers => { 'X-API-Key' => fresh_key() }) for 1 .. 50;
    my @t;
    my $bad = 0;
    for my $k (@keys) {
        my $t0 = time;
        my $x = $conn->get('/', headers => { 'X-API-Key' => $k });
        push @t, time - $t0;
        $bad++ unless $x->status == 200;
    }
    $n->stop;
    @t = sort { $a <=> $b } @t;
    my $sum = 0;
    $sum += $_ for @t;
    return { mean => 1e6 * $sum / @t, p50 => 1e6 * $t[int(@t * 0.5)],
             p99 => 1e6 * $t[int(@t * 0.99)], bad => $bad };
}

my $r1 = ApiKeyTest::Redis->start;
my $single = misses($r1->url, $r1);
$r1->stop;
my $c3 = ApiKeyTest::Cluster->start(masters => 3);
my $cluster = misses($c3->url, $c3->router);
$c3->stop;
is $single->{bad} + $cluster->{bad}, 0, 'every miss verified';

# --- the section -----------------------------------------------------------------------

sub f { defined $_[0] ? sprintf('%.2f s', $_[0]) : 'none' }
say "### Cluster master failover (kill -9, replica promoted; cluster-node-timeout 1000 ms)";
say "";
say "| round | uncached keys on the dead master: 503 answers | last 503 | first 200 (window) | wrong answers | cached-key errors | errors on other masters' uncached keys |";
say "|---|---|---|---|---|---|---|";
my $n = 0;
for my $r (@rounds) {
    $n++;
    say "| $n | $r->{u503} | ", f($r->{last_503}), " | ", f($r->{first_ok}),
        " | $r->{wrong} | $r->{cached_errors} | $r->{other_errors} |";
}
say "";
say "";
say "With \`cluster-require-full-coverage yes\` (Redis's default) every node answers \`CLUSTERDOWN\` from the moment the master is marked failed to its replica's promotion: uncached keys on the other masters get 503 for that moment too (the last column); \`no\` keeps them served (t/95).";
say "";
say "### Miss path: one redis-server against a 3-master cluster ($MISSES misses, one keep-alive connection, 1 worker)";
say "";
say "| Redis | mean | p50 | p99 |";
say "|---|---|---|---|";
printf "| single redis-server | %.0f µs | %.0f µs | %.0f µs |\n", @$single{qw(mean p50 p99)};
printf "| 3-master cluster | %.0f µs | %.0f µs | %.0f µs |\n", @$cluster{qw(mean p50 p99)};

done_testing;
