#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# redis-sentinel://: kill -9 of the master under steady load (README,
# api_key_redis, "Redis Sentinel").
#
# The first sentinel of the URL is down from the start: the workers ask the
# next one.  Then the master is killed (kill -9) while cached keys and keys
# read once are requested: no failed request for a cached key; keys not
# cached get 503 "unavailable" (never 401) until the sentinels promote the
# replica, and are answered by it soon after +switch-master (the window is
# printed); a revoke published on the new master reaches the workers.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Load;
use ApiKeyTest::Cli qw(subscribe next_message);

require_module();

my $s = ApiKeyTest::Sentinel->start(down_after => 500, failover_timeout => 3000);
note sprintf 'sentinel set ready in %.1f s', $s->start_secs;
my $m = $s->master;
my @sent = $s->sentinels;
my $first = $sent[0]->port;
$sent[0]->stop;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:4m ttl=60s stale=10m negative_ttl=1s;
    api_key_redis %%URL%% timeout=1s connect_timeout=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        add_header X-Pid $pid always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $WORKERS = 2;
my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
    error_level => 'info', vars => { URL => $s->url });
my $port = $n->port;
sub get { my ($k) = @_; http_get($port, '/', headers => { 'X-API-Key' => $k }) }
sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

my @cached = map { random_key("c$_") } 1 .. 8;
add_key($m, $_, owner => 'o') for @cached;
# read once at 150 a second: enough for the longest load below
my @pool = map { random_key("u$_") } 1 .. 5000;
{
    my $c = $m->client;
    $c->send_only('HSET', 'apikey:' . key_hash($_), 'owner', 'o') for @pool;
    $c->read_reply for @pool;
    track_key($_) for @pool;
}

ok wait_until(sub { st(get($cached[0])) eq '200 ok' }, timeout => 10),
    'the first sentinel is down: the workers asked the next one';
like $n->error_log, qr/sentinel 127\.0\.0\.1:$first: connection failed: .*asking the next sentinel/,
    'the log says the first sentinel failed';
for (1 .. 10) { is st(get($_)), '200 ok', 'cached' or last for @cached }
ok wait_until(sub {
    ($s->replica->cmd('EXISTS', 'apikey:' . key_hash($pool[-1])) // 0) == 1
}, timeout => 5), 'the pool reached the replica';

my $watch = $sent[1]->client;
subscribe($watch, '+switch-master');

# the sentinels can act: none in TILT mode (a sentinel stalled for 2 s on a
# loaded machine does nothing for 30 s), the master up, the replica working
ok $s->wait_ready, 'the sentinels can fail the master over';

# the load runs until 4 s after +switch-master (stopped below), at most as
# long as a failover with retried attempts may take (kill_timeout)
my $load = ApiKeyTest::Load->start(port => $port, conns => 8,
    duration => 1 + $s->kill_timeout + 4,
    rate => 300, timeout => 5, classes => [
        { name => 'cached', weight => 1, keys => \@cached, ok => ['200 ok'] },
        { name => 'uncached', weight => 1, ok => ['200 ok'],
          gen => sub { my ($j) = @_; $pool[$j] } },
    ]);
sleep 1;
my $t_kill = time;
my $old = $s->kill_master;
my $msg = next_message($watch, $s->kill_timeout);
my $t_switch = time;
ok $msg, '+switch-master announced';
note sprintf '+switch-master %.2f s after kill -9', $t_switch - $t_kill;
my $new = $s->wait_switch(from => $old);
ok $new && $new->port != $old, 'the replica was promoted';
sleep 4 - (time - $t_switch) if time - $t_switch < 4;
my $res = $load->stop->wait;

my $cc = $res->{classes}{cached};
my $uc = $res->{classes}{uncached};
note 'cached: ', ApiKeyTest::Load::answers_text($res, 'cached');
note 'uncached: ', ApiKeyTest::Load::answers_text($res, 'uncached');
ok $cc->{n} > 100, "cached keys were requested ($cc->{n})";
is scalar(@{ $cc->{bad} }), 0, 'no failed request for a cached key';
ok $uc->{n} > 100, "keys not cached were requested ($uc->{n})";
my @ubad = @{ $uc->{bad} };
diag sprintf 'sentinel kill -9: %d of %d uncached requests failed (%s); '
    . 'failures from %.0f ms to %.0f ms after the kill, +switch-master at '
    . '%.0f ms, the last failure %.0f ms after it',
    scalar @ubad, $uc->{n}, ApiKeyTest::Load::answers_text($res, 'uncached'),
    @ubad ? (($ubad[0][0] - $t_kill) * 1000, ($ubad[-1][0] - $t_kill) * 1000)
          : (0, 0),
    ($t_switch - $t_kill) * 1000,
    @ubad ? ($ubad[-1][0] - $t_switch) * 1000 : 0;
ok scalar(@ubad) > 0, 'keys not cached failed while there was no master';
is scalar(grep { $_->[1] ne '503 unavailable' } @ubad), 0,
    'their failures are 503 unavailable, never 401';
ok !@ubad || $ubad[-1][0] - $t_switch < 3,
    'keys not cached are answered within seconds of +switch-master';
ok $uc->{last} > $t_switch + 1, 'the load went on after the switch';

my $k2 = random_key('after');
add_key($new, $k2, owner => 'after');
is st(get($k2)), '200 ok', 'a key written on the promoted master';

{
    my $rk = $cached[1];
    my $h = key_hash($rk);
    ok wait_until(sub {
        $new->cmd('PUBSUB', 'NUMSUB', 'apikey:events')->[1] >= $WORKERS
    }, timeout => 5), 'every worker subscribed on the promoted master';
    $new->cmd('HSET', "apikey:$h", 'status', 'revoked');
    $new->cmd('PUBLISH', 'apikey:events', "revoke $h");
    my %seen;
    ok wait_until(sub {
        for (1 .. 6) { my $x = get($rk); $seen{ $x->header('X-Pid') } = st($x) }
        !grep { $_ ne '401 revoked' } values %seen;
    }, timeout => 5), 'the revoke reached the workers ('
        . join(', ', map { "$_: $seen{$_}" } sort keys %seen) . ')';
}

like $n->error_log, qr/the master "mymaster" is at 127\.0\.0\.1:${\ $new->port}/,
    'the log names the promoted master';
$n->stop;
done_testing;
