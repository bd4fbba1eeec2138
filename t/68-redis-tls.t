# SPDX-License-Identifier: BSD-2-Clause
# api_key_redis rediss://: the module over TLS (nginx's OpenSSL, nginx's
# connections).  Against a redis-server with TLS only, certificates made at
# test time (ApiKeyTest::Tls):
#  - a key verifies; a cache miss, a revoke via PUBLISH, a keyspace event
#    and a quota lease work over TLS; by name (localhost) and by IP address
#    (the certificate's IP SAN); tls_name checks (and sends) another name;
#  - a wrong CA and a wrong name: uncached keys get 503 unavailable (never
#    401), the error log has one line per connection naming the reason
#    ("certificate verify failed", "name mismatch"), not one per request or
#    retry, and the metrics count the failed handshakes and the retries;
#    tls_verify=off connects anyway;
#  - tls-auth-clients yes: tls_cert/tls_key work, without them it fails
#    with one clear line;
#  - Redis restarted with a new certificate: the module reconnects; a
#    reconnection resumes the TLS session;
#  - nginx -t: the tls_* parameters' errors, with file and line.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $pki = ApiKeyTest::Tls->new;
my $CA = $pki->ca;

sub conf {
    my ($redis) = @_;
    return <<"EOT" . echo_server();
    api_key_zone  keys:1m ttl=60s quota_lease=2;
    api_key_redis $redis timeout=1s connect_timeout=1s;
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

sub lines { my ($n, $re) = @_; scalar grep { /$re/ } split /\n/, $n->error_log }

# --- a TLS redis: everything works over it ----------------------------------
{
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls,
                                     config => ['notify-keyspace-events KA']);
    my $k1 = random_key('tls');
    my $h1 = add_key($r, $k1, owner => 'acme');
    my $kq = random_key('tlsq');
    add_key($r, $kq, owner => 'quota', quota => '3/hour');
    my $ks = random_key('tlsks');
    my $hs = add_key($r, $ks, owner => 'keyspace');

    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_ca=$CA keyspace_events=on"),
        vars => { REDIS => $r->port }, redis => $r);

    my $res = get($n, $k1);
    is($res->status, 200, 'rediss://localhost, tls_ca: a key verifies')
        or diag $res->as_string;
    is($res->header('X-Owner'), 'acme', '... its record was read over TLS');
    $res = get($n, random_key('nope'));
    is($res->status, 401, 'a cache miss for an unknown key: 401 (Redis answered)');
    is($res->header('X-Status'), 'unknown', '... unknown');

    # a revoke published over TLS reaches the events connection (the
    # record itself is left active: only the event revokes the cached key)
    $r->cmd('PUBLISH', 'apikey:events', "revoke $h1");
    ok(wait_until(sub { (get($n, $k1)->header('X-Status') // '') eq 'revoked' },
                  timeout => 5),
       'a revoke via PUBLISH over TLS: the cached key is revoked');
    is(get($n, $k1)->status, 401, '... 401');

    # a keyspace notification (PSUBSCRIBE over TLS)
    is(get($n, $ks)->status, 200, 'keyspace: the key is cached');
    $r->cmd('DEL', "apikey:$hs");
    ok(wait_until(sub { get($n, $ks)->status == 401 }, timeout => 5),
       'a keyspace event over TLS (DEL): the record is dropped');

    # a quota counted in Redis with leases (EVALSHA over TLS)
    my @st = map { get($n, $kq)->status } 1 .. 5;
    is_deeply(\@st, [200, 200, 200, 429, 429], 'quota=3/hour over TLS: 3 pass, then 429')
        or diag "@st";

    is(metric($n, 'api_key_redis_tls_handshake_failures_total', 'commands'), 0,
       'metrics: no failed TLS handshake');
    is(metric($n, 'api_key_redis_connected', 'commands'), 1, 'metrics: connected');

    # a reconnection resumes the TLS session
    my $before = metric($n, 'api_key_redis_connects_total', 'commands');
    $r->cmd('CLIENT', 'KILL', 'TYPE', 'normal');
    $r->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    ok(wait_until(sub { (metric($n, 'api_key_redis_connects_total', 'commands') // 0) > $before
                        && metric($n, 'api_key_redis_connected', 'commands') },
                  timeout => 5), 'connections killed: the module connects again');
    ok(wait_until(sub { (metric($n, 'api_key_redis_tls_sessions_reused_total', 'commands') // 0)
                        + (metric($n, 'api_key_redis_tls_sessions_reused_total', 'events') // 0) > 0 },
                  timeout => 3), '... resuming the TLS session');
    is(get($n, random_key('nope'))->status, 401, '... and Redis answers over it');
    is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
    $n->stop;

    # by IP address: the certificate's IP SAN is what is checked
    my $n2 = ApiKeyTest::Nginx->start(
        http => conf("rediss://127.0.0.1:%%REDIS%% tls_ca=$CA"),
        vars => { REDIS => $r->port }, redis => $r);
    is(get($n2, random_key('nope'))->status, 401,
       'rediss://127.0.0.1 (an IP SAN): Redis answers');
    $n2->stop;

    # --- Redis restarted with a new certificate -----------------------------
    my $k2 = random_key('tls2');
    my $n3 = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_ca=$CA"),
        vars => { REDIS => $r->port }, redis => $r);
    is(get($n3, random_key('nope'))->status, 401, 'before the restart: Redis answers');
    my ($crt, $key) = $pki->cert_for('localhost', ip => ['127.0.0.1']);
    $r->restart(tls => { cert => $crt, key => $key });
    add_key($r, $k2, owner => 'after');
    my $st;
    ok(wait_until(sub { $st = get($n3, $k2)->status; $st == 200 }, timeout => 10),
       'Redis restarted with a new certificate: the module reconnects')
        or diag "last status $st";
    ok(metric($n3, 'api_key_redis_reconnects_total', 'commands') >= 1,
       '... metrics: reconnects counted');
    $n3->stop;
    $r->stop;
}

# --- wrong CA, wrong name, tls_verify=off --------------------------------------
{
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
    my $k = random_key('tlsbad');
    add_key($r, $k, owner => 'bad');

    for my $case (['wrong CA', "rediss://localhost:%%REDIS%% tls_ca=" . $pki->other_ca,
                   qr/certificate verify failed/],
                  ['wrong name', "rediss://localhost:%%REDIS%% tls_ca=$CA tls_name=other.example",
                   qr/name mismatch: the certificate is not for "other\.example"/])
    {
        my ($what, $url, $reason) = @$case;
        my $n = ApiKeyTest::Nginx->start(http => conf($url),
                                         vars => { REDIS => $r->port });
        my @st;
        for (1 .. 6) {
            my $res = get($n, $k);
            push @st, $res->status . ' ' . ($res->header('X-Status') // '');
            sleep 0.25;
        }
        is_deeply(\@st, [('503 unavailable') x 6],
                  "$what: an uncached key gets 503 unavailable, never 401") or diag "@st";
        # the backoff retried several times meanwhile
        ok(wait_until(sub { (metric($n, 'api_key_redis_tls_handshake_failures_total', 'commands') // 0) >= 3 },
                      timeout => 5), "$what: the failed handshakes are counted");
        ok(metric($n, 'api_key_redis_reconnects_total', 'commands') >= 2,
           "$what: ... and the retries");
        my $log = $n->error_log;
        is(lines($n, qr/\[error\].*commands connection to "rediss:.*failed: TLS: .*$reason/), 1,
           "$what: one error line for the commands connection, naming the reason")
            or diag $log;
        is(lines($n, qr/\[error\].*events connection to "rediss:.*failed: TLS: .*$reason/), 1,
           "$what: one for the events connection");
        is(lines($n, qr/\[error\]/), 2, "$what: no other error line") or diag $log;
        is_deeply([ $n->problems ], [], "$what: no alert, crit or emerg");
        $n->stop;
    }

    # a certificate for another name, checked by tls_name (also the SNI)
    my ($oc, $ok) = $pki->cert_for('redis.example');
    my $r2 = ApiKeyTest::Redis->start(tls => $pki->redis_tls(cert => $oc, key => $ok));
    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://127.0.0.1:%%REDIS%% tls_ca=$CA tls_name=redis.example"),
        vars => { REDIS => $r2->port }, redis => $r2);
    is(get($n, random_key('nope'))->status, 401,
       'tls_name=redis.example: the certificate for that name is accepted');
    $n->stop;
    # a fully qualified name with its trailing dot is the same name (checked,
    # and sent as the SNI, without the dot)
    $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://127.0.0.1:%%REDIS%% tls_ca=$CA tls_name=redis.example."),
        vars => { REDIS => $r2->port }, redis => $r2);
    is(get($n, random_key('nope'))->status, 401,
       'tls_name=redis.example. (a trailing dot): the certificate for redis.example is accepted');
    $n->stop;
    $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://127.0.0.1:%%REDIS%% tls_ca=$CA"),
        vars => { REDIS => $r2->port });
    is(get($n, random_key('nope'))->status, 503,
       '... without tls_name (the IP address is checked): 503');
    ok(wait_until(sub { $n->error_log =~ /name mismatch: the certificate is not for "127\.0\.0\.1"/ },
                  timeout => 3), '... name mismatch');
    $n->stop;
    $r2->stop;

    # tls_verify=off: the wrong CA's server is accepted
    my $r3 = ApiKeyTest::Redis->start(tls => $pki->redis_tls(
        cert => $pki->other_server_cert, key => $pki->other_server_key));
    add_key($r3, $k, owner => 'unverified');
    $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_verify=off"),
        vars => { REDIS => $r3->port }, redis => $r3);
    my $res = get($n, $k);
    is($res->status, 200, 'tls_verify=off: connects to a server of an unknown CA')
        or diag $res->as_string;
    $n->stop;
    $r3->stop;
    $r->stop;
}

# --- tls-auth-clients yes: a client certificate --------------------------------
{
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls(auth_clients => 'yes'));
    my $k = random_key('mtls');
    add_key($r, $k, owner => 'mtls');
    my $cc = $pki->client_cert;
    my $ck = $pki->client_key;

    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_ca=$CA tls_cert=$cc tls_key=$ck"),
        vars => { REDIS => $r->port }, redis => $r);
    my $res = get($n, $k);
    is($res->status, 200, 'tls-auth-clients yes, tls_cert/tls_key: a key verifies')
        or diag $res->as_string;
    $n->stop;

    $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%% tls_ca=$CA"),
        vars => { REDIS => $r->port });
    my @st = map { sleep 0.2; get($n, $k)->status } 1 .. 5;
    is_deeply(\@st, [(503) x 5], 'without a client certificate: 503') or diag "@st";
    my $log = $n->error_log;
    is(lines($n, qr/\[error\].*commands connection to "rediss:.* the server asks for a client certificate/), 1,
       '... one line for the commands connection, saying why') or diag $log;
    ok(wait_until(sub { (metric($n, 'api_key_redis_tls_handshake_failures_total', 'commands') // 0) >= 2 },
                  timeout => 5), '... counted as failed TLS handshakes');
    is(lines($n, qr/\[error\]/), 2, '... and one for the events connection, no more')
        or diag $log;
    is_deeply([ $n->problems ], [], '... no alert, crit or emerg');
    $n->stop;
    $r->stop;
}

# a TLS server that asks for a client certificate but does not require one
# (openssl s_server -verify) and then answers with bytes that are not RESP
# (it sends what it reads on its stdin: /dev/zero): the error is the
# protocol error; the missing client certificate, which the server accepted,
# is not blamed (it was before: "the server asks for a client certificate
# and none is configured: Protocol error, ...")
SKIP: {
    skip 'openssl not found', 3 if system('command -v openssl >/dev/null') != 0;
    my $port = free_port();
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/zero';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec 'openssl', 's_server', '-quiet', '-accept', "127.0.0.1:$port",
             '-cert', $pki->server_cert, '-key', $pki->server_key, '-verify', '1',
             '-naccept', '100';
        POSIX::_exit(127);
    }
    ok(wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") }, timeout => 5),
       's_server listens');
    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:$port tls_ca=$CA"));
    get($n, random_key('garbage-tls'));
    ok(wait_until(sub { $n->error_log =~ /\[error\].*commands connection.*Protocol error/ }, timeout => 8),
       'a TLS server that asks for a client certificate and sends garbage: "Protocol error"')
        or diag $n->error_log;
    unlike($n->error_log, qr/asks for a client certificate/,
           '... and the missing client certificate is not blamed');
    $n->stop;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

# the system's CA store (no tls_ca) is read when nginx starts, not while a
# worker verifies a chain: handshakes with a server of an unknown CA (each
# one fails) open no file under /etc/ssl or /usr/lib/ssl (before, OpenSSL
# looked the issuer up in the hashed directory /usr/lib/ssl/certs each time)
SKIP: {
    skip 'strace not found', 3 if system('command -v strace >/dev/null') != 0;
    my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
    my $n = ApiKeyTest::Nginx->start(
        http => conf("rediss://localhost:%%REDIS%%"), vars => { REDIS => $r->port });
    my $log = tmpdir() . '/strace.log';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', "$log.err";
        exec 'strace', '-f', '-qq', '-e', 'trace=%file,connect', '-o', $log,
             map { ('-p', $_) } $n->worker_pids;
        POSIX::_exit(127);
    }
    sleep 1;    # attached
    my $k = random_key('sysca');
    my @st = map { sleep 0.3; get($n, $k)->status } 1 .. 6;
    kill 'INT', $pid;
    waitpid $pid, 0;
    my $trace = slurp($log);
    skip 'strace cannot attach here: ' . slurp("$log.err"), 3 if $trace eq '';
    is_deeply(\@st, [(503) x 6], 'system CA store, server of an unknown CA: 503');
    ok(scalar(() = $trace =~ /\bconnect\(/g) >= 1,
       '... the worker connected (and failed a handshake) while traced');
    my @files = grep { m{"/(?:etc/ssl|usr/lib/ssl)} } split /\n/, $trace;
    is(scalar @files, 0, '... and opened no file of the CA store meanwhile')
        or diag join "\n", @files[0 .. ($#files < 5 ? $#files : 5)];
    $n->stop;
    $r->stop;
}

# --- nginx -t ----------------------------------------------------------------
{
    my $missing = tmpdir() . '/missing.pem';
    my $cc = $pki->client_cert;
    my $ck = $pki->client_key;
    for my $case (
        ["redis://127.0.0.1:6379 tls_ca=$CA", qr/"tls_ca=.*" needs a rediss:\/\/ url/,
         'tls_ca on a redis:// url'],
        ["unix:/tmp/x.sock tls_verify=off", qr/"tls_verify=off" needs a rediss:\/\/ url/,
         'tls_verify on a unix socket'],
        ["rediss://127.0.0.1:6379 tls_cert=$cc", qr/"tls_cert" without "tls_key"/,
         'tls_cert without tls_key'],
        ["rediss://127.0.0.1:6379 tls_key=$ck", qr/"tls_key" without "tls_cert"/,
         'tls_key without tls_cert'],
        ["rediss://127.0.0.1:6379 tls_ca=$missing", qr/"tls_ca": cannot open "\Q$missing\E"/,
         'an unreadable tls_ca'],
        ["rediss://127.0.0.1:6379 tls_cert=$missing tls_key=$ck",
         qr/"tls_cert": cannot open/, 'an unreadable tls_cert'],
        ["rediss://127.0.0.1:6379 tls_verify=maybe", qr/invalid "tls_verify=maybe"/,
         'a bad tls_verify'],
        ["rediss://127.0.0.1:6379 tls_cert=$ck tls_key=$ck",
         qr/cannot use ".*" and ".*" as the client certificate/,
         'a key file given as the certificate'])
    {
        my ($args, $msg, $what) = @$case;
        my $c = ApiKeyTest::Nginx->check_config(http => conf($args));
        ok(!$c->{ok}, "nginx -t, $what: rejected") or diag $c->{output};
        like($c->{output}, $msg, '... says what is wrong') or diag $c->{output};
        my $line = ApiKeyTest::Nginx::line_of($c, qr/api_key_redis/);
        like($c->{output}, qr/in \Q$c->{conf_path}\E:$line\b/, '... with file and line');
    }
    my $c = ApiKeyTest::Nginx->check_config(
        http => conf("rediss://alice:pw\@localhost:6379/2 tls_verify=on tls_ca=$CA "
                     . "tls_cert=$cc tls_key=$ck tls_name=redis.example"));
    ok($c->{ok}, 'nginx -t: every tls_* parameter together is accepted') or diag $c->{output};
    $c = ApiKeyTest::Nginx->check_config(http => conf('rediss://127.0.0.1:6379'));
    ok($c->{ok}, 'nginx -t: rediss:// alone (the system CA store) is accepted')
        or diag $c->{output};
}

done_testing;
