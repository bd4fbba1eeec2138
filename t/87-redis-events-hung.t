# SPDX-License-Identifier: BSD-2-Clause
# The events connection's handshake and subscription are bounded in time
# (README, api_key_redis: connect_timeout + max_timeouts x timeout, at least
# 5 s).  A fake server on loopback answers the commands connection (PING,
# HGETALL with an empty record) and never confirms a SUBSCRIBE: the events
# connection is closed and opened again within the bound, with one error
# line for the whole failure streak (not one per retry), a graceful quit
# ends at once (the pending timer does not hold the worker), and when the
# server finally confirms the subscription, "is up" and "is back, cached
# records will be re-read" are logged.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::FakeRedis;

require_module();

# a fake Redis: PING, HGETALL (*0) and the rest answered; SUBSCRIBE and
# PSUBSCRIBE confirmed only once "$dir/answer" exists.  "$dir/subs" gets one
# line per connection that sent a SUBSCRIBE (an events connection).
sub fake_redis {
    return ApiKeyTest::FakeRedis->start(command => sub {
        my ($c, @argv) = @_;
        my $cmd = uc $argv[0];
        if ($cmd eq 'SUBSCRIBE' || $cmd eq 'PSUBSCRIBE') {
            if (!$c->{state}{subscribed}++) {
                open my $f, '>>', "$c->{dir}/subs" or die;
                print $f "$cmd\n";
                close $f;
            }
            return undef unless -e "$c->{dir}/answer";
        }
        return ApiKeyTest::FakeRedis::reply(\@argv);
    });
}

sub subs {
    my ($srv) = @_;
    my $t = -e "$srv->{dir}/subs" ? slurp("$srv->{dir}/subs") : '';
    return scalar(() = $t =~ /\n/g);
}

# the bound: connect_timeout (500 ms) + max(3 x 100 ms, 5 s) = 5.5 s
my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m negative_ttl=1s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=100ms
                  connect_timeout=500ms max_timeouts=3;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $LINE = qr/redis events connection to "[^"]*": its subscription was not answered within 5500 ms: it is closed and opened again/;

# 1. never confirmed: reopened within the bound, logged once, quit at once
{
    my $srv = fake_redis();
    my $n = ApiKeyTest::Nginx->start(http => $http,
                                     vars => { REDIS => $srv->{port} });

    # the commands connection works: a miss is answered by the fake
    my $res = http_get($n->port, '/', headers => { 'X-API-Key' => random_key('evh') });
    is($res->status, 401, 'the commands connection is answered (401 for an unknown key)');

    ok(wait_until(sub { subs($srv) >= 1 }, timeout => 5),
       'the events connection subscribed');
    my $t0 = time;

    # 5.5 s each, plus the backoff (100, 200 ms): 3 connections by ~11.5 s
    ok(wait_until(sub { subs($srv) >= 3 }, timeout => 20),
       'the unconfirmed events connection is closed and opened again (3 connections)')
        or diag 'events connections: ' . subs($srv);
    my $took = time - $t0;
    note sprintf 'the third events connection came %.1f s after the first', $took;
    cmp_ok($took, '>=', 10, 'not sooner than the bound (2 x 5.5 s)');

    my $log = $n->error_log;
    my @lines = grep { /redis events connection/ && /\[(?:error|warn)\]/ } split /\n/, $log;
    is(scalar(@lines), 1, 'one error line for the failure streak, not one per retry')
        or diag join "\n", @lines;
    like($lines[0] // '', $LINE, 'it says what was not answered and the bound');
    unlike($log, qr/events subscription to .* is back/, 'no "is back" while unconfirmed');

    # a pending subscription timer does not hold the worker at graceful quit
    $n->stop;
    ok(!$n->stop_forced, 'graceful quit ends without TERM');
    cmp_ok($n->stop_seconds, '<', 3, 'graceful quit ends at once')
        or diag 'stop took ' . $n->stop_seconds . ' s';
    $srv->stop;
}

# 2. confirmed at last: "is up", "is back, cached records will be re-read"
{
    my $srv = fake_redis();
    my $n = ApiKeyTest::Nginx->start(http => $http,
                                     vars => { REDIS => $srv->{port} });
    ok(wait_until(sub { $n->error_log =~ $LINE }, timeout => 10),
       'the first events connection timed out');
    spew("$srv->{dir}/answer", "1\n");

    ok(wait_until(sub { $n->error_log =~ /events subscription to "[^"]*" is back, cached records will be re-read/ },
                  timeout => 10),
       'once confirmed: the subscription is back, cached records will be re-read');
    ok($n->error_log =~ /redis events connection to "[^"]*" is up/,
       'once confirmed: the events connection is up');
    my @lines = grep { /redis events connection/ && /\[(?:error|warn)\]/ } split /\n/, $n->error_log;
    is(scalar(@lines), 1, 'still one error line') or diag join "\n", @lines;
    $n->stop;
    ok(!$n->stop_forced, 'graceful quit ends without TERM');
}

done_testing();
