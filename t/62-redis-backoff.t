# SPDX-License-Identifier: BSD-2-Clause
# The reconnection backoff (100 ms doubling to 2 s) starts over only when a
# connection has proven itself (handshake answered, subscription confirmed),
# not when TCP connects: a server that accepts and then closes at once, or
# answers "-ERR max number of clients reached" and closes, is retried with a
# growing delay, and the log says so once, not twice per attempt.  Once a
# real Redis listens there, the module connects and works.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::FakeRedis;

require_module();

# accepts, optionally writes $greeting, closes; logs a line per accept
sub rejecting_server {
    my ($greeting) = @_;
    return ApiKeyTest::FakeRedis->start(lifetime => 60, accept => sub {
        my ($c) = @_;
        open my $f, '>>', "$c->{dir}/accepts" or die;
        printf $f "%.3f\n", time;
        close $f;
        syswrite($c->{sock}, $greeting) if defined $greeting;
        return 0;
    });
}

sub accepts { my @t = split /\n/, slurp("$_[0]{dir}/accepts"); return @t }

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=200ms connect_timeout=300ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $SECS = 4;

for my $case ([ 'accepts and closes', undef ],
              [ 'answers -ERR max number of clients reached', "-ERR max number of clients reached\r\n" ])
{
    my ($what, $greeting) = @$case;
    my $srv = rejecting_server($greeting);
    my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $srv->{port} });
    my $t0 = time;
    my $res = http_get($n->port, '/', headers => { 'X-API-Key' => random_key('x') });
    is($res->status, 503, "$what: a miss is 503");
    sleep $SECS - (time - $t0);

    my @a = accepts($srv);
    # two connections (commands, events), each retried with a growing delay:
    # 100 + 200 + 400 + 800 + 1600 ms; every 100 ms it would be 80 in all
    note sprintf "$what: %d connection attempts in %ds", scalar @a, $SECS;
    ok(@a >= 4, "$what: the module keeps retrying (" . scalar(@a) . ')');
    ok(@a <= 16, "$what: attempts bounded by a growing backoff (" . scalar(@a) . " in ${SECS}s)");
    # the delays between attempts grow: the last ones are far apart
    my @t = sort { $a <=> $b } @a;
    ok($t[-1] - $t[-3] > 0.5, sprintf("$what: the last attempts are spread (%.2fs apart)",
                                      $t[-1] - $t[-3]));

    my @lines = grep { /api_key: redis/ && /\[(?:error|warn|notice)\]/ } split /\n/, $n->error_log;
    note "$what: $_" for @lines;
    ok(@lines <= 4, "$what: the failure is logged once per connection, not per attempt ("
                    . scalar(@lines) . ' lines)');
    ok(!grep({ /is up/ } @lines), "$what: the connection is never reported up");

    # a real Redis takes the port: the module connects within the backoff
    $srv->stop;
    my $r = ApiKeyTest::Redis->start(port => $srv->{port});
    my $k = random_key('k');
    add_key($r, $k, owner => 'kay');
    ok(wait_until(sub { http_get($n->port, '/', headers => { 'X-API-Key' => $k })->status == 200 },
                  timeout => 8, interval => 0.2),
       "$what: once Redis listens there, the module connects and works");
    like($n->error_log, qr/redis commands connection to .* is up/, '... and says it is up');
    is_deeply([ $n->problems ], [], "$what: no alert, crit or emerg");
    $n->stop;
    $r->stop;
}

done_testing;
