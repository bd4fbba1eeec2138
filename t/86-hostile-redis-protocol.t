# SPDX-License-Identifier: BSD-2-Clause
# Hostile input, Redis side (4): replies a real redis-server never sends,
# from a fake server on loopback that answers the handshake and the
# subscription as Redis would and HGETALL with bytes of the test's choice.
#
# hiredis's reader, the module's RESP codec, allocates an array's element
# table from the size the reply announces, before any element arrives
# ("*2147483647" asks for 16 GB).  The module refuses an array announced
# with more than 1,048,576 elements as a protocol error (README,
# api_key_redis), and a negative size other than -1 (Debian's hiredis
# refuses that one itself): the request gets 503 unavailable, the error log
# says what was announced, the connection is opened again; never a crash,
# never the memory.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Hostile;
use ApiKeyTest::FakeRedis;
use ApiKeyTest::Cli qw(run_cli);

require_module();

# a fake Redis: PING, SELECT, AUTH, CONFIG... answered; SUBSCRIBE and
# PSUBSCRIBE confirmed; HGETALL answered with $answer (raw bytes); with
# $all, every command is
sub fake_redis {
    my ($answer, $all) = @_;
    return ApiKeyTest::FakeRedis->start(lifetime => 60, command => sub {
        my ($c, @argv) = @_;
        return $answer if $all;
        return ApiKeyTest::FakeRedis::reply(\@argv, hgetall => $answer);
    });
}

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m negative_ttl=1s;
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

# an array nested 9 deep (hiredis takes 7)
my $deep = ("*1\r\n" x 9) . ":1\r\n";

my @cases = (
    [ 'an array announced with 2^31-1 elements', "*2147483647\r\n",
      qr/announced an array of 2147483647 elements \(at most 1048576 are taken\)/ ],
    [ 'an array of 1048577 elements', "*1048577\r\n",
      qr/announced an array of 1048577 elements/ ],
    [ 'an array of -6 elements', "*-6\r\n\$1\r\na\r\n\$1\r\nb\r\n",
      qr/announced an array of -6 elements|Multi-bulk length out of range/ ],
    [ 'an array of -2 elements', "*-2\r\n",
      qr/announced an array of -2 elements|Multi-bulk length out of range/ ],
    [ 'arrays nested 9 deep', $deep, qr/nested multi bulk/ ],
);

my $key = random_key('proto');

for my $c (@cases) {
    my ($what, $answer, $logre) = @$c;
    my $srv = fake_redis($answer);
    my $n = ApiKeyTest::Nginx->start(http => $http,
                                     vars => { REDIS => $srv->{port} });
    # the commands connection's handshake (PING) first
    sleep 0.3;
    my @got = map { got(http_get($n->port, '/', headers => { 'X-API-Key' => $key })) } 1 .. 3;
    is_deeply(\@got, [ ('503 unavailable') x 3 ], "$what: 503 unavailable")
        or diag "got: @got";

    # the worker did not take the memory the reply asked for (its
    # address space; not under ASan, whose shadow memory is reserved
    # address space too)
    if (!$ApiKeyTest::SANITIZE) {
        my ($w) = $n->worker_pids;
        my ($peak) = ApiKeyTest::slurp("/proc/$w/status") =~ /^VmPeak:\s+(\d+) kB/m;
        ok($peak < 4 * 1024 * 1024, "$what: the worker's address space stayed "
           . "below 4 GB (VmPeak $peak kB)");
    }

    my $ok = wait_until(sub { $n->error_log =~ $logre }, timeout => 5);
    ok($ok, "$what: the error log says so") or diag $n->error_log;
    my @err = grep { /\[error\]/ && /$logre/ } split /\n/, $n->error_log;
    ok(@err >= 1 && @err <= 3, "$what: once per refused reply, not more ("
       . scalar(@err) . ' lines)');
    $n->stop;
    $srv->stop;
}

# apikeyctl's reader has the same bound (16,777,216 elements: its pages of
# SCAN and XRANGE are bounded by COUNT): a clear protocol error, exit 4
for my $c ([ 2147483647, qr/an array of 2147483647 elements announced \(at most 16777216 are taken\)/ ],
           [ 16777217, qr/an array of 16777217 elements announced/ ]) {
    my ($size, $re) = @$c;
    my $srv = fake_redis("*$size\r\n", 1);
    my $r = run_cli(args => [ '--redis', "redis://127.0.0.1:$srv->{port}",
                              '--timeout', '5', 'show', 'some-id' ], timeout => 20);
    is($r->{exit}, 4, "apikeyctl, an array of $size elements: exit 4 (redis error)")
        or diag $r->{err};
    like($r->{err}, $re, '... saying what was announced');
    $srv->stop;
}

done_testing;
