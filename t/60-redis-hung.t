# SPDX-License-Identifier: BSD-2-Clause
# Redis connected but not answering (a hung server, SIGSTOP): commands in
# flight on the command connection are capped (max_pending: beyond it a
# miss is answered "unavailable" at once, no command sent), the connection
# is closed and opened again after max_timeouts read timeouts in a row,
# every request is answered within about "timeout", the warnings are one
# per outage (plus a count when it ends), and service is back to normal
# once Redis answers again.
#
# 1. A fake server on loopback that accepts and never answers: what it
#    received tells the commands per connection, its accepts the reopenings.
# 2. A SIGSTOPped redis-server: INFO's connections and HGETALL calls after
#    SIGCONT tell what was sent while it was stopped.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::FakeRedis;

require_module();

my ($MAXP, $MAXT) = (8, 3);
# --- a server that accepts and never answers --------------------------------
# Each connection's bytes go to $dir/conn-N; nothing is ever written back.
sub silent_server { ApiKeyTest::FakeRedis->start(record => 1) }

# per connection: [ PINGs, HGETALLs, SUBSCRIBEs ] received
sub received {
    my ($srv) = @_;
    my @c;
    for my $f (sort { ($a =~ /(\d+)$/)[0] <=> ($b =~ /(\d+)$/)[0] }
               glob "$srv->{dir}/conn-*")
    {
        my $t = slurp($f);
        push @c, { ping => scalar(() = $t =~ /\r\nPING\r\n/g),
                   hgetall => scalar(() = $t =~ /\r\nHGETALL\r\n/g),
                   subscribe => scalar(() = $t =~ /\r\nSUBSCRIBE\r\n/gi) };
    }
    return @c;
}

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m negative_ttl=1s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=200ms connect_timeout=300ms
                  max_pending=%%MAXP%% max_timeouts=%%MAXT%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

sub misses {
    my ($port, $n) = @_;
    return http_concurrent($port,
        [ map { { path => '/', headers => { 'X-API-Key' => random_key("m$_") } } } 1 .. $n ],
        timeout => 10);
}

# misses in waves of 10 for about $secs seconds
sub misses_for {
    my ($port, $secs) = @_;
    my (@res, $i);
    my $end = time + $secs;
    while (time < $end) {
        push @res, misses($port, 10);
        sleep 0.05;
    }
    return @res;
}

sub all_unavailable {
    my ($what, @res) = @_;
    my @bad = grep { $_->status != 503
                     || ($_->header('X-Status') // '') ne 'unavailable' } @res;
    is(scalar @bad, 0, "$what: every miss is 503 unavailable") or diag $bad[0]->as_string;
    my ($slow) = sort { $b <=> $a } map { $_->elapsed } @res;
    ok($slow < 2, sprintf('%s: every miss answered within about timeout (slowest %.2fs, timeout 200ms)',
                          $what, $slow));
}

sub lines_like {
    my ($text, $re) = @_;
    return scalar grep { /$re/ } split /\n/, $text;
}

# === 1. the silent server ===================================================
{
    my $srv = silent_server();
    my $n = ApiKeyTest::Nginx->start(http => $http,
        vars => { REDIS => $srv->{port}, MAXP => $MAXP, MAXT => $MAXT });
    my $port = $n->port;
    ok(wait_until(sub { (grep { $_->{subscribe} } received($srv)) >= 1 }, timeout => 5),
       'silent server: the module connected and subscribed');

    my @res = misses_for($port, 3);
    my $N = @res;
    all_unavailable("silent server, $N misses in 3s", @res);

    # the fake server writes down what it read when it gets the CPU: on a
    # busy machine (test files run in parallel) give it a bounded moment
    wait_until(sub { (grep { $_->{ping} || $_->{hgetall} } received($srv)) >= 2 },
               timeout => 5);
    wait_until(sub { $n->error_log =~ /closed and opened again/ }, timeout => 5);
    my @c = received($srv);
    my @cmd = grep { $_->{ping} || $_->{hgetall} } @c;
    my $max = 0;
    $max < $_->{hgetall} and $max = $_->{hgetall} for @cmd;
    my $total = 0;
    $total += $_->{hgetall} for @cmd;
    note sprintf 'silent server: %d command connections, HGETALLs per connection: %s',
        scalar @cmd, join(' ', map { $_->{hgetall} } @cmd);
    ok($max <= $MAXP, "at most max_pending=$MAXP HGETALLs were sent on any connection (most: $max)");
    ok($total < $N / 2, "far fewer HGETALLs than misses were sent in all ($total for $N)");
    ok(@cmd >= 2, 'the command connection was closed and opened again after '
                  . "$MAXT timeouts (" . scalar(@cmd) . ' command connections)');
    ok(@cmd <= 15, 'reopenings are bounded by the backoff (' . scalar(@cmd) . ')');

    my $log = $n->error_log;
    my $begin = lines_like($log, qr/\[warn\].*(?:timed out|max_pending)/);
    my $reop = lines_like($log, qr/\[warn\].*closed and opened again/);
    note "silent server: warn lines: outage $begin, reopened $reop";
    is($begin, 1, 'one warning (timeout or max_pending) for the whole outage');
    is($reop, 1, 'one warning about reopening the connection');
    my $warns = lines_like($log, qr/\[(?:warn|error)\]/);
    ok($warns <= 4, "warnings and errors in all are bounded ($warns for $N misses)");
    is_deeply([ $n->problems ], [], 'silent server: no alert, crit or emerg');
    $n->stop;
    $srv->stop;
}

# === 2. redis-server stopped (SIGSTOP) ======================================
{
    my $r = ApiKeyTest::Redis->start;
    my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, redis_clients => 2,
        vars => { REDIS => $r->port, MAXP => $MAXP, MAXT => $MAXT });
    my $port = $n->port;
    my $k = random_key('known');
    add_key($r, $k, owner => 'kim');
    sub conns { my ($r) = @_; ($r->cmd('INFO', 'stats') =~ /total_connections_received:(\d+)/)[0] }

    reset_stats($r);
    my $c0 = conns($r);
    my $mark = $n->log_mark;
    my @res;
    {
        my $g = $r->pause_guard;
        @res = misses_for($port, 3);
    }
    all_unavailable('SIGSTOP, ' . scalar(@res) . ' misses in 3s', @res);

    my $res;
    ok(wait_until(sub { $res = http_get($port, '/', headers => { 'X-API-Key' => $k });
                        $res->status == 200 }, timeout => 10, interval => 0.2),
       'SIGCONT: service is back (a known key is accepted)') or diag $res->as_string;
    is(http_get($port, '/', headers => { 'X-API-Key' => random_key('u') })->status, 401,
       'SIGCONT: an unknown key is 401 again');
    sleep 1.1;    # the outage is over once a second passed without trouble
    http_get($port, '/', headers => { 'X-API-Key' => random_key('v') });

    my $new = conns($r) - $c0;
    my $hg = hgetall_calls($r);
    note "SIGSTOP: $new connections made while stopped, $hg HGETALLs ran after SIGCONT";
    ok($new >= 1, 'the command connection was reopened while Redis was stopped');
    ok($new <= 15, "reopenings bounded ($new)");
    ok($hg <= $MAXP * ($new + 1) + 2,
       "what Redis received while stopped is bounded by max_pending per connection ($hg HGETALLs)");

    my $log = $n->error_log_since($mark);
    my $begin = lines_like($log, qr/\[warn\].*(?:timed out|max_pending)/);
    is($begin, 1, 'one warning (timeout or max_pending) for the outage');
    my ($end) = grep { /answers again/ } split /\n/, $log;
    ok($end, 'a notice when Redis answers again') and note $end;
    like($end // '', qr/(\d+) reads timed out, (\d+) misses were answered without it \(\d+ with too many commands waiting, \d+ while reconnecting\)/,
         '... with the counts');
    is_deeply([ $n->problems ], [], 'SIGSTOP: no alert, crit or emerg');
    $n->stop;
    ok(!$n->stop_forced, 'nginx stops gracefully');
}

# === bad values: nginx -t names the file and line ==========================
for my $bad ('max_pending=0', 'max_pending=x', 'max_pending=100001',
             'max_timeouts=0', 'max_timeouts=-1', 'max_timeouts=1001')
{
    my $c = ApiKeyTest::Nginx->check_config(http => <<"EOT");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379 $bad;
EOT
    my $line = ApiKeyTest::Nginx::line_of($c, qr/api_key_redis/);
    ok(!$c->{ok}, "nginx -t rejects $bad");
    like($c->{output}, qr/invalid "\Q$bad\E".* in \Q$c->{conf_path}\E:$line/,
         "... naming it, the file and the line");
}
{
    my $c = ApiKeyTest::Nginx->check_config(http => <<"EOT");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379 max_pending=1 max_timeouts=1000;
EOT
    ok($c->{ok}, 'nginx -t accepts max_pending=1 max_timeouts=1000') or diag $c->{output};
}

done_testing;
