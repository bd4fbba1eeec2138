#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# bench/failover-sentinel.pl (run by bench/failover-sentinel.sh, `make
# bench-failover`): what a Redis Sentinel failover costs the module.
#
# Per round, a fresh set (ApiKeyTest::Sentinel: one master, one replica,
# three sentinels, down-after-milliseconds FO_DOWN_AFTER, 500 ms) and an
# nginx with the module (2 workers, api_key_redis redis-sentinel://...,
# timeout=1s): ApiKeyTest::Load sends, on 16 keep-alive connections capped
# at FO_RATE requests/s (1000), half cached keys and half keys read once
# each (every request a Redis read), for FO_SECONDS (8 s); after 2 s the
# failover is triggered, either SENTINEL FAILOVER or kill -9 of the master.
# A client subscribed to +switch-master on a sentinel times the
# announcement.  Per round: the failed requests of each class, the
# unavailability window of the uncached keys (first to last failed
# request), when the announcement came and when the last failure was after
# it.  FO_ROUNDS (3) rounds of each kind; the table goes to stdout and to
# the "failover-sentinel" section of bench/RESULTS.md (FO_RESULTS).
use strict;
use warnings;
use v5.36;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use ApiKeyTest;
use ApiKeyTest::Load;
use ApiKeyTest::Cli qw(subscribe next_message);

my $TOP = "$FindBin::Bin/..";
my $RESULTS = $ENV{FO_RESULTS} // "$TOP/bench/RESULTS.md";
my $ROUNDS = $ENV{FO_ROUNDS} // 3;
my $RATE = $ENV{FO_RATE} // 1000;
my $SECONDS = $ENV{FO_SECONDS} // 8;
my $DOWN_AFTER = $ENV{FO_DOWN_AFTER} // 500;

require_module();

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:16m ttl=60s stale=10m negative_ttl=1s;
    api_key_redis %%URL%% timeout=1s connect_timeout=500ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

my @rows;

sub round {
    my ($kind) = @_;
    my $s = ApiKeyTest::Sentinel->start(down_after => $DOWN_AFTER,
                                        failover_timeout => 3000);
    my $m = $s->master;
    my @cached = map { random_key("c$_") } 1 .. 16;
    add_key($m, $_, owner => 'o') for @cached;
    my @pool = map { random_key("u$_") } 1 .. int($RATE * $SECONDS * 0.6);
    my $c = $m->client;
    for (my $i = 0; $i < @pool; $i += 1000) {
        my @part = @pool[$i .. ($i + 999 < $#pool ? $i + 999 : $#pool)];
        $c->send_only('HSET', 'apikey:' . key_hash($_), 'owner', 'o') for @part;
        $c->read_reply for @part;
    }
    track_key($_) for @pool;
    wait_until(sub { ($s->replica->cmd('EXISTS', 'apikey:' . key_hash($pool[-1])) // 0) == 1 },
               timeout => 10) or die "the replica did not get the records";

    my $n = ApiKeyTest::Nginx->start(http => $http, workers => 2,
        error_level => 'notice', vars => { URL => $s->url });
    wait_until(sub {
        http_get($n->port, '/', headers => { 'X-API-Key' => $cached[0] })->status == 200
    }, timeout => 10) or die "nginx did not find the master";
    http_get($n->port, '/', headers => { 'X-API-Key' => $_ }) for @cached, @cached;

    my $watch = ($s->sentinels)[1]->client;
    subscribe($watch, '+switch-master');
    my $load = ApiKeyTest::Load->start(port => $n->port, conns => 16,
        duration => $SECONDS, rate => $RATE, timeout => 5, classes => [
            { name => 'cached', weight => 1, keys => \@cached, ok => ['200 ok'] },
            { name => 'uncached', weight => 1, ok => ['200 ok'],
              gen => sub { $pool[$_[0]] } },
        ]);
    sleep 2;
    my $t0 = time;
    $kind eq 'kill' ? $s->kill_master : $s->failover;
    my $msg = next_message($watch, 30);
    my $t_switch = time;
    my $res = $load->wait;
    my $cc = $res->{classes}{cached};
    my $uc = $res->{classes}{uncached};
    my @bad = @{ $uc->{bad} };
    my %row = (
        kind => $kind eq 'kill' ? 'kill -9 of the master' : 'SENTINEL FAILOVER',
        switch_ms => $msg ? ($t_switch - $t0) * 1000 : -1,
        cached_n => $cc->{n}, cached_bad => scalar @{ $cc->{bad} },
        uncached_n => $uc->{n}, uncached_bad => scalar @bad,
        window_ms => @bad ? ($bad[-1][0] - $bad[0][0]) * 1000 : 0,
        last_after_ms => @bad ? ($bad[-1][0] - $t_switch) * 1000 : 0,
        answers => ApiKeyTest::Load::answers_text($res, 'uncached'),
    );
    printf STDERR "bench: %s: +switch-master after %.0f ms; cached %d/%d failed; "
        . "uncached %d/%d failed (%s), window %.0f ms, last failure %+.0f ms after "
        . "+switch-master\n", @row{qw(kind switch_ms cached_bad cached_n uncached_bad
        uncached_n answers window_ms last_after_ms)};
    push @rows, \%row;
    $n->stop;
    $s->stop;
}

for my $kind (qw(failover kill)) {
    round($kind) for 1 .. $ROUNDS;
}

# --- the table ----------------------------------------------------------------

my $md = sprintf <<'EOT', strftime('%Y-%m-%d', gmtime), $RATE, $SECONDS, $DOWN_AFTER;
## Redis Sentinel failover (`make bench-failover`, %s)

One master, one replica, three sentinels on loopback; nginx with the module
(2 workers, `api_key_redis redis-sentinel://... timeout=1s`);
ApiKeyTest::Load at %d requests/s over 16 keep-alive connections for %d s,
half cached keys, half keys read once each (a Redis read per request); the
failover 2 s in. `down-after-milliseconds` %d. "Window": from the first to
the last failed request of the uncached keys; "last failure": when the last
one came, relative to the `+switch-master` announcement (negative: before
it). Failed uncached requests are `503 unavailable` (never 401).

| failover | +switch-master after | cached keys: failed / requests | uncached: failed / requests | window | last failure vs +switch-master |
|---|---|---|---|---|---|
EOT
for my $r (@rows) {
    $md .= sprintf "| %s | %.0f ms | %d / %d | %d / %d | %.0f ms | %+.0f ms |\n",
        @{$r}{qw(kind switch_ms cached_bad cached_n uncached_bad uncached_n
                 window_ms last_after_ms)};
}
print $md;
replace_section($RESULTS, 'failover-sentinel', $md);

ok 1, 'bench ran';
done_testing;

sub replace_section {
    my ($file, $name, $new) = @_;
    my $text = -f $file ? slurp($file) : '';
    $new =~ s/\n*\z/\n/;
    my $block = "<!-- bench:$name -->\n$new<!-- /bench:$name -->\n";
    if ($text !~ s/<!-- bench:\Q$name\E -->\n.*?<!-- \/bench:\Q$name\E -->\n/$block/s) {
        $text =~ s/\n*\z/\n\n/ if length $text;
        $text .= $block;
    }
    spew($file, $text);
}
