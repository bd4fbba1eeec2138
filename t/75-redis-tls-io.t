# SPDX-License-Identifier: BSD-2-Clause
# api_key_redis rediss://: the I/O of a TLS connection under pressure (the
# parts t/68 does not reach), against a redis-server with TLS only:
#  - a write backlog: Redis stops reading (SIGSTOP) while misses keep coming;
#    the commands pile up in the module's output buffer, which grows and
#    moves while OpenSSL waits to finish a write: the connection must
#    survive it (no "bad write retry") and Redis answers once it runs again;
#  - large replies (records with a 1 MB field) read over TLS, pipelined;
#  - nginx -s quit while reads wait on a stopped TLS Redis: the worker exits
#    once they time out, nothing left open;
#  - a password over TLS (right and wrong) is in no log line, debug included.
#
# Linux gives a loopback socket (64 KB MSS) a send buffer of some MB at
# connect time: more than the reads a stopped Redis lets pile up before the
# module gives up on it.  So the test runs in a network namespace of its own
# whose loopback has a 1500-byte MTU (unshare -n, as root: make test), where
# a socket's buffers are those of a real network; it is skipped elsewhere.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';

BEGIN {
    if (!$ENV{AK_NETNS}) {
        if ($> != 0 || system('unshare -n true >/dev/null 2>&1') != 0) {
            plan skip_all => 'needs a network namespace of its own (root, unshare -n)';
        }
        $ENV{AK_NETNS} = 1;
        exec 'unshare', '-n', 'sh', '-c',
             'PATH="$PATH:/usr/sbin:/sbin"; ip link set lo mtu 1500 up && exec "$@"',
             'sh', $^X, (map { "-I$_" } grep { !ref } @INC), $0, @ARGV
            or die "exec unshare: $!";
    }
}

use ApiKeyTest;

require_module();

my $pki = ApiKeyTest::Tls->new;
my $CA = $pki->ca;

sub conf {
    my ($redis) = @_;
    return <<"EOT" . echo_server();
    api_key_zone  keys:4m ttl=60s;
    api_key_redis $redis;
    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        add_header X-Owner  \$api_key_owner always;
        location = /metrics { api_key_metrics; }
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
}

sub get { my ($n, $k) = @_; http_get($n->port, '/', headers => { 'X-API-Key' => $k }) }

sub metric {
    my ($n, $name, $conn) = @_;
    my $text = http_get($n->port, '/metrics')->body;
    return $text =~ /^\Q$name\E\{connection="\Q$conn\E"\} (\d+)$/m ? $1 : undef;
}

# --- a write backlog while Redis does not read ---------------------------------
{
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
    my $k = random_key('tlsio');
    # a long prefix: each read is ~350 bytes on the wire
    my $prefix = 'p' x 250 . ':';
    add_key($r, $k, owner => 'backlog', -prefix => $prefix);

    # reads time out fast and stay pending (max_timeouts, stall: 100 s)
    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_ca=$CA prefix=$prefix "
                     . "timeout=100ms max_timeouts=1000 max_pending=5000"),
        vars => { REDIS => $r->port }, redis => $r);
    is(get($n, random_key('nope'))->status, 401, 'Redis answers over TLS');

    {
        my $g = $r->pause_guard;
        my $sent = 0;
        for my $round (1 .. 12) {
            my @reqs = map { { path => '/', headers => { 'X-API-Key' => random_key("bl$round") } } }
                       1 .. 75;
            my $res = http_concurrent($n->port, \@reqs, timeout => 10);
            $sent += @reqs;
        }
        note "$sent misses sent while Redis was stopped";
    }

    my $st;
    ok(wait_until(sub { $st = get($n, $k)->status; $st == 200 }, timeout => 10),
       'Redis runs again: a key verifies over the same TLS connection') or diag "last $st";
    my $log = $n->error_log;
    unlike($log, qr/bad write retry/, 'no "bad write retry"');
    unlike($log, qr/commands connection to "rediss:[^"]*" lost/,
           'the commands connection was not lost') or diag $log;
    is(metric($n, 'api_key_redis_disconnects_total', 'commands'), 0,
       'metrics: no disconnect of the commands connection');
    $n->stop;
    $r->stop;
}

# --- large replies: 1 MB record fields, read over TLS --------------------------
{
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
    my @big = map { random_key("big$_") } 1 .. 3;
    add_key($r, $_, owner => 'big', note => ('x' x (1024 * 1024))) for @big;
    my $k = random_key('small');
    add_key($r, $k, owner => 'small');

    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_ca=$CA timeout=3s"),
        vars => { REDIS => $r->port }, redis => $r);

    # three 1 MB replies pipelined, and a small one behind them
    my @res = http_concurrent($n->port,
        [ map { { path => '/', headers => { 'X-API-Key' => $_ } } } @big, $k ],
        timeout => 10);
    my @st = map { $_->status . " " . ($_->header("X-Status") // "") } @res;
    # (a field the module does not know is not kept: the records are fine)
    is_deeply(\@st, [('200 ok') x 4],
              'three records with a 1 MB field and a small one, over TLS: each '
              . 'read whole, none timed out') or diag "@st";
    is(get($n, random_key('nope'))->status, 401, '... and the connection goes on');
    unlike($n->error_log, qr/timed out/, '... no read timed out');
    is(metric($n, 'api_key_redis_disconnects_total', 'commands'), 0, '... nor was lost');
    $n->stop;
    $r->stop;
}

# --- graceful quit with commands pending on a TLS connection -------------------
{
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_ca=$CA timeout=2s"),
        vars => { REDIS => $r->port }, redis => $r);
    is(get($n, random_key('nope'))->status, 401, 'Redis answers over TLS');

    my $g = $r->pause_guard;
    my $b = http_batch($n->port,
        [ map { { path => '/', headers => { 'X-API-Key' => random_key("q$_") } } } 1 .. 20 ]);
    sleep 0.3;                      # the reads are sent, unanswered
    $n->stop;
    ok(!$n->stop_forced, 'nginx -s quit with 20 reads pending over TLS: the worker exits by itself');
    ok($n->stop_seconds < 8, '... once the reads timed out (' . sprintf('%.1f', $n->stop_seconds) . ' s)');
    my @st = map { $_->status } $b->wait(timeout => 1);
    is_deeply(\@st, [(503) x 20], '... each request answered 503') or diag "@st";
    unlike($n->error_log, qr/open socket/, '... no socket left open');
    undef $g;
    $r->stop;
}

# --- a password over TLS: never in the (debug) error log -----------------------
{
    my $pw = 'tls-pw-' . random_base62(16);
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls, requirepass => $pw);
    my $k = random_key('pw');
    add_key($r, $k, owner => 'pw');
    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://:$pw\@localhost:%%REDIS%% tls_ca=$CA"),
        vars => { REDIS => $r->port }, redis => $r);
    is(get($n, $k)->status, 200, 'a password over TLS: AUTH, then a key verifies');
    $r->cmd('CLIENT', 'KILL', 'TYPE', 'normal');
    ok(wait_until(sub { get($n, random_key('nope'))->status == 401 }, timeout => 5),
       '... and again after a reconnection');
    $n->stop;

    my $n2 = ApiKeyTest::Nginx->start(
        http => conf("rediss://:wrong-$pw\@localhost:%%REDIS%% tls_ca=$CA"),
        vars => { REDIS => $r->port });
    is(get($n2, $k)->status, 503, 'a wrong password over TLS: 503');
    ok(wait_until(sub { $n2->error_log =~ /AUTH failed/ }, timeout => 3), '... AUTH failed, logged');
    $n2->stop;
    for my $x ([$n, 'right'], [$n2, 'wrong']) {
        my $log = $x->[0]->error_log . $x->[0]->access_log;
        ok(index($log, $pw) < 0, "the $x->[1] password is in no log line (debug included)");
    }
    $r->stop;
}

done_testing;
