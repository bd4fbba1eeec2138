# SPDX-License-Identifier: BSD-2-Clause
# api_key_redis with a host name: resolved when nginx reads its
# configuration (a name that does not resolve then does not stop nginx),
# and again before every connection through the http block's "resolver"
# (nginx's own, asynchronous); without a resolver the start-time address is
# kept, and the log says so once.  A test DNS server on loopback
# (ApiKeyTest::Dns) answers the name:
#  - the name moves to a second redis-server and the first one stops: the
#    workers follow at their next connection, and no request for a cached
#    key fails meanwhile;
#  - a name with two addresses: when the one in use dies, the other is
#    used (the dead one still in the DNS is not tried for ever);
#  - a name unknown at start (NXDOMAIN): nginx starts, answers 503, logs it
#    once per connection, and connects once the name appears;
#  - no resolver: a name that did not resolve at start is logged, 503; a
#    name that did is used at that address, said once.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

sub conf {
    my ($resolver, $url) = @_;
    return <<"EOT" . echo_server();
    $resolver
    api_key_zone  keys:1m ttl=60s;
    api_key_redis $url timeout=500ms connect_timeout=500ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        add_header X-Owner  \$api_key_owner always;
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
}

sub get { my ($n, $k) = @_; http_get($n->port, '/', headers => { 'X-API-Key' => $k }) }

sub lines { my ($n, $re) = @_; scalar grep { /$re/ } split /\n/, $n->error_log }

# nginx's resolver sends a query again when it had no answer within its
# resend timeout (5 s): "resolver resend" in the debug log.  Only then can
# an answer come late, to a query the resolver has since replaced (a new
# query for the name in flight: "wrong ident ... in DNS response") or
# finished ("unexpected DNS response"): the test's DNS server (a perl
# process) did not answer for seconds, the machine's load, not the
# module's doing.  Such lines are allowed, two (A and AAAA) per resend;
# likewise a wait for the worker to connect may last as long as the
# resolver keeps resending.
sub resends {
    my ($log) = @_;
    return scalar(() = $log =~ /\[debug\] \d+#\d+: resolver resend "redis\.test"/g);
}

sub late_answers {
    my ($log) = @_;
    return scalar grep {
        /\[error\] \d+#\d+: (?:wrong ident \d+ in DNS response for redis\.test, expect \d+|unexpected DNS response for redis\.test)$/
    } split /\n/, $log;
}

# wait_until(10 s), longer only while the log since $mark shows resends
sub wait_connects {
    my ($n, $mark, $cb) = @_;
    my $t0 = time;
    my $ok = wait_until($cb, timeout => 10);
    if (!$ok && (my $rs = resends($n->error_log_since($mark)))) {
        note "$rs DNS queries resent (not answered within 5 s): waiting up to 20 s more";
        $ok = wait_until($cb, timeout => 20);
    }
    note sprintf 'connected after %.1f s', time - $t0 if $ok;
    return $ok;
}

# --- the name moves to another server -------------------------------------------
{
    my $r1 = ApiKeyTest::Redis->start;
    my $r2 = ApiKeyTest::Redis->start(bind => '127.0.0.2', port => $r1->port);
    my $dns = ApiKeyTest::Dns->start(records => { 'redis.test' => '127.0.0.1' }, ttl => 1);

    my $kc = random_key('dnsc');
    add_key($_, $kc, owner => 'cached') for $r1, $r2;
    my $k2 = random_key('dns2');
    add_key($r2, $k2, owner => 'second');

    my $n = ApiKeyTest::Nginx->start(
        http => conf('resolver ' . $dns->resolver_line . ' valid=1s;',
                     'redis://redis.test:%%REDIS%%'),
        vars => { REDIS => $r1->port }, redis => $r1);

    like(slurp($n->dir . '/nginx.stderr') . $n->error_log,
         qr/\[warn\].*redis url "redis:\/\/redis\.test:\d+": the host does not resolve now/,
         'a name the system resolver does not know: nginx starts, with a warning');
    my $res = get($n, $kc);
    is($res->status, 200, 'resolved through nginx\'s resolver: the key verifies')
        or diag $res->as_string;
    ok(scalar(grep { /^redis\.test A$/i } $dns->queries), '... the worker asked the DNS server');
    is(get($n, $k2)->status, 401, 'a key only on the second server: 401 (the first answers)');

    $dns->set('redis.test' => '127.0.0.2');
    sleep 1.1;                      # the resolver's cache (ttl, valid=1s)
    $r1->stop;

    my (@bad, $moved);
    my $deadline = time + 10;
    while (time < $deadline) {
        my $st = get($n, $kc)->status;
        push @bad, $st if $st != 200;
        if (!$moved && get($n, random_key('probe'))->status == 401) {
            $moved = 1;
        }
        last if $moved && get($n, $k2)->status == 200;
        sleep 0.05;
    }
    ok($moved, 'the first server stopped, the name moved: the worker follows it');
    is(get($n, $k2)->status, 200, '... a key only on the second server now verifies');
    is_deeply(\@bad, [], '... and no request for the cached key failed meanwhile');
    like($n->error_log, qr/\[notice\].*redis commands connection to "redis:\/\/redis\.test:\d+": its host is at 127\.0\.0\.2:\d+ now/,
         '... the log says where the host is now');
    is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
    $n->stop;

    # --- a name unknown at start: nginx starts, and connects once it appears ---
    $dns->set('redis.test' => undef);
    sleep 1.1;
    $n = ApiKeyTest::Nginx->start(
        http => conf('resolver ' . $dns->resolver_line . ' valid=1s;',
                     'redis://redis.test:%%REDIS%%'),
        vars => { REDIS => $r2->port });
    my @st = map { sleep 0.2; get($n, $k2)->status } 1 .. 5;
    is_deeply(\@st, [(503) x 5], 'NXDOMAIN: nginx runs, uncached keys get 503') or diag "@st";
    is(lines($n, qr/\[error\].*commands connection to .*its host could not be resolved/), 1,
       '... one error line for the commands connection')
        or diag $n->error_log;
    my $log = $n->error_log;
    my $late = late_answers($log);
    cmp_ok($late, '<=', 2 * resends($log),
           "... late DNS answers ($late) only after queries not answered within 5 s")
        or diag $log;
    is(lines($n, qr/\[error\]/) - $late, 2, '... one for the events connection, no more')
        or diag $log;
    my $mark = $n->log_mark;
    $dns->set('redis.test' => '127.0.0.2');
    ok(wait_connects($n, $mark, sub { get($n, $k2)->status == 200 }),
       'the name appears: the worker connects');
    like($n->error_log, qr/redis commands connection to .* is up/, '... and says so');
    $n->stop;
    $r2->stop;
}

# --- a name with two addresses, the one in use dies ---------------------------
{
    my $r1 = ApiKeyTest::Redis->start;
    my $r2 = ApiKeyTest::Redis->start(bind => '127.0.0.2', port => $r1->port);
    my $dns = ApiKeyTest::Dns->start(records => { 'redis.test' => '127.0.0.1' }, ttl => 1);
    my $k2 = random_key('dnsrr');
    add_key($r2, $k2, owner => 'second');

    my $n = ApiKeyTest::Nginx->start(
        http => conf('resolver ' . $dns->resolver_line . ' valid=1s ipv6=off;',
                     'redis://redis.test:%%REDIS%%'),
        vars => { REDIS => $r1->port }, redis => $r1);
    is(get($n, $k2)->status, 401, 'two addresses: connected to the first (401 there)');

    # both addresses in the DNS now, in either order; the one in use stops
    $dns->set('redis.test' => ['127.0.0.1', '127.0.0.2']);
    sleep 1.1;
    my $mark = $n->log_mark;
    $r1->stop;
    ok(wait_connects($n, $mark, sub { get($n, $k2)->status == 200 }),
       '... the address in use stopped, still in the DNS: the worker moves to the other one');
    $n->stop;
    $r2->stop;
}

# --- no resolver --------------------------------------------------------------
{
    my $r = ApiKeyTest::Redis->start;
    my $k = random_key('nores');
    add_key($r, $k, owner => 'nores');

    my $n = ApiKeyTest::Nginx->start(
        http => conf('', 'redis://redis-not-there.invalid:%%REDIS%%'),
        vars => { REDIS => $r->port }, workers => 2);
    my @st = map { sleep 0.2; get($n, $k)->status } 1 .. 4;
    is_deeply(\@st, [(503) x 4],
              'no resolver, a name that did not resolve at start: nginx runs, 503')
        or diag "@st";
    is(lines($n, qr/\[error\].*did not resolve when nginx read its configuration and there is no "resolver" in the http block/), 1,
       '... said once') or diag $n->error_log;
    is(lines($n, qr/\[error\].*connection to .* failed: its host did not resolve/), 4,
       '... and once per connection and worker, not per retry') or diag $n->error_log;
    $n->stop;

    $n = ApiKeyTest::Nginx->start(
        http => conf('', 'redis://localhost:%%REDIS%%'),
        vars => { REDIS => $r->port }, workers => 2, redis => $r);
    is(get($n, $k)->status, 200, 'no resolver, localhost: the start-time address is used');
    is(lines($n, qr/\[notice\].*redis "redis:\/\/localhost:\d+" is used at 127\.0\.0\.1:\d+, the address its host had when nginx read its configuration/),
       1, '... said once, for all workers') or diag $n->error_log;
    $n->stop;
    $r->stop;
}

done_testing;
