# SPDX-License-Identifier: BSD-2-Clause
# The harness itself, without the module: redis-server start/stop/pause/
# restart and a RESP round trip, a plain nginx (no load_module) with HTTP
# requests, keep-alive, concurrency, reload, nginx -t errors; hashes and the
# key format helpers.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;

# --- hashes and key helpers (known vectors) --------------------------------

is(sha256_hex('abc'),
   'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
   'sha256_hex');
is(hmac_sha256_hex('The quick brown fox jumps over the lazy dog', 'key'),
   'f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8',
   'hmac_sha256_hex(data, secret)');
is(crc32('123456789'), 0xCBF43926, 'crc32 (IEEE, as zlib)');
is(base62(0, 6), '000000', 'base62 zero padded');
is(base62(61), 'z', 'base62 alphabet 0-9A-Za-z');
is(base62(62), '10', 'base62 most significant digit first');
is(base62(0xCBF43926, 6), '3jZRME', 'base62 of a crc');
{
    my $k = checksum_key('ak', 'a' x 30);
    like($k, qr/^ak_a{30}[0-9A-Za-z]{6}$/, 'checksum_key shape');
    is(substr($k, -6), base62(crc32('ak_' . 'a' x 30), 6),
       'checksum covers the prefix, the underscore and the random part');
    my $r = checksum_key('my_org');
    like($r, qr/^my_org_[0-9A-Za-z]{36}$/, 'checksum_key with a random part');
}

# --- redis ------------------------------------------------------------------

my $r = ApiKeyTest::Redis->start;
ok($r->port > 0, 'redis started on port ' . $r->port);
is($r->cmd('PING'), 'PONG', 'PING');
is($r->cmd('SET', 'a', "bin\r\nary\0x"), 'OK', 'SET');
is($r->cmd('GET', 'a'), "bin\r\nary\0x", 'GET: binary-safe bulk string');
is($r->cmd('GET', 'nope'), undef, 'nil bulk string');
is($r->cmd('INCR', 'n'), 1, 'integer reply');
my ($rep, $err) = $r->try_cmd('HGETALL', 'a');
like($err, qr/WRONGTYPE/, 'error reply from try_cmd');
ok(!eval { $r->cmd('HGETALL', 'a'); 1 }, 'cmd dies on an error reply');
is($r->cmd('PING'), 'PONG', 'the connection still works after an error');

my $key = random_key('h');
my $hash = add_key($r, $key, owner => 'acme', plan => 'pro');
is($hash, sha256_hex($key), 'add_key returns the sha256 hex');
is_deeply({ @{ $r->cmd('HGETALL', "apikey:$hash") } },
          { owner => 'acme', plan => 'pro' }, 'add_key: HSET apikey:<hex>');
my $h2 = add_key($r, $key, owner => 'x', -secret => 's', -prefix => 'p:', -db => 3);
is($h2, hmac_sha256_hex($key, 's'), 'add_key with an HMAC secret');
is($r->cmd('EXISTS', "p:$h2"), 0, 'not in db 0');
is($r->client(db => 3)->cmd('HGET', "p:$h2", 'owner'), 'x', 'in db 3');
add_key($r, $key, -string => 'junk', -prefix => 's:');
is($r->cmd('TYPE', "s:$hash"), 'string', 'add_key -string');

reset_stats($r);
$r->cmd('HGETALL', "apikey:$hash") for 1 .. 3;
is(hgetall_calls($r), 3, 'commandstats counts HGETALL');
reset_stats($r);
is(hgetall_calls($r), 0, 'CONFIG RESETSTAT');

# MONITOR
{
    my $m = $r->monitor;
    $r->cmd('HGETALL', "apikey:$hash");
    $r->cmd('SET', 'q"uote', "a\nb");
    my @c = $m->commands(0.3);
    ok(scalar(grep { $_->[0] eq 'hgetall' && $_->[1] eq "apikey:$hash" } @c),
       'monitor sees HGETALL and its argument');
    ok(scalar(grep { $_->[0] eq 'set' && $_->[1] eq 'q"uote' && $_->[2] eq "a\nb" } @c),
       'monitor unquotes arguments') or diag explain \@c;
    $m->close;
}

# pause / resume
{
    my $c = $r->client(timeout => 0.5);
    $r->pause;
    my $t0 = time;
    my ($x, $e) = $c->try_cmd('PING');
    ok(!defined $x && $e =~ /timeout/, 'a paused redis does not answer');
    ok(time - $t0 < 2, 'the client times out');
    ok(!eval { $r->cmd('PING'); 1 }, 'cmd refuses to run on a paused redis');
    $r->resume;
    is($r->cmd('PING'), 'PONG', 'resumed');
    {
        my $g = $r->pause_guard;
        ok($r->{paused}, 'pause_guard pauses');
    }
    is($r->cmd('PING'), 'PONG', 'pause_guard resumes when it goes out of scope');
}

# restart on the same port
{
    my $port = $r->port;
    $r->cmd('SET', 'persist', 1);
    $r->restart;
    is($r->port, $port, 'restarted on the same port');
    is($r->cmd('GET', 'persist'), undef, 'restart starts empty');
    $r->stop;
    ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                              Proto => 'tcp', Timeout => 1),
       'stopped: the port refuses connections');
    $r->start_again;
    is($r->cmd('PING'), 'PONG', 'started again');
}

# auth, ACL users, unix socket only
{
    my $a = ApiKeyTest::Redis->start(
        requirepass => 'adm1n',
        users => ['alice on >alicepw ~* &* +@all'],
        unixsocket => 1, port => 0);
    ok(-S $a->socket_path, 'unix socket exists');
    is($a->cmd('PING'), 'PONG', 'unix socket + requirepass');
    my $c = $a->client(user => 'alice', password => 'alicepw', db => 2);
    is($c->cmd('ACL', 'WHOAMI'), 'alice', 'ACL user');
    $c->cmd('SET', 'k', 'v');
    is($a->client(db => 2)->cmd('GET', 'k'), 'v', 'db selection');
    ok(!eval { $a->client(user => 'alice', password => 'nope'); 1 },
       'wrong password refused');
    $a->stop;
}

# --- nginx without the module ---------------------------------------------

my $conf = <<'EOT';
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            proxy_set_header X-Owner "o-$arg_o";
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /slow {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /multi {
            add_header X-Multi a;
            add_header X-Multi b;
            return 200 "multi\n";
        }
        location = /gen {
            return 200 "generation %%GEN%%\n";
        }
        location = /chunked {
            proxy_http_version 1.1;
            proxy_pass http://127.0.0.1:%%PORT_UP%%/big;
        }
    }
    server {
        listen 127.0.0.1:%%PORT_UP%%;
        location / {
            return 200 "echo uri=[$uri] xkey=[$http_x_api_key] auth=[$http_authorization] args=[$args] cookie=[$http_cookie] owner=[$http_x_owner]\n";
        }
        location = /big {
            chunked_transfer_encoding on;
            gzip off;
            return 200 "big\n";
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $conf, module => 0, workers => 2,
                                 vars => { GEN => 1 });
ok($n->port > 0 && $n->port('up') > 0, 'nginx started with two ports');
is(scalar $n->worker_pids, 2, 'two workers');

my $res = http_get($n->port, '/path/x?a=1&o=me',
                   headers => [ 'X-API-Key' => 'k1', Authorization => 'Bearer b1',
                                Cookie => 'c=1; ak=k2' ]);
is($res->status, 200, 'GET through the proxy');
is($res->body,
   "echo uri=[/path/x] xkey=[k1] auth=[Bearer b1] args=[a=1&o=me] "
   . "cookie=[c=1; ak=k2] owner=[o-me]\n", 'the echo upstream sees everything');
ok($res->elapsed > 0 && $res->elapsed < 5, 'elapsed time measured');
is_deeply([ $res->headers('content-type') ], ['text/plain'], 'header values');

$res = http_get($n->port, '/multi');
is_deeply([ $res->headers('x-multi') ], [qw(a b)], 'multi-valued headers kept');
is($res->header('X-Multi'), 'a, b', 'header() joins values');

$res = http_get($n->port('up'), '/nothing-here-but-200');
is($res->status, 200, 'second port');

# free_port never gives the same port twice (two placeholders of one config
# sharing a port would go unnoticed: nginx merges the two listens)
{
    my %seen;
    my $dup = grep { $seen{$_}++ } map { free_port() } 1 .. 3000;
    is($dup, 0, 'free_port: 3000 ports, none given twice');
}

# ... nor a port another test process holds (test files run in parallel):
# a claim by a live process is respected, one by a process that is gone is
# taken over
{
    my $dir = $ENV{AK_PORT_DIR} // '/tmp/apikey-test-ports';
    my $p = 1;    # never handed out by the kernel
    ApiKeyTest::spew("$dir/$p", "1\n");    # pid 1 is alive
    ok(!ApiKeyTest::_claim_port($p), 'a port claimed by a live process is not given');
    my $pid = fork // die "fork: $!";
    POSIX::_exit(0) unless $pid;
    waitpid($pid, 0);
    ApiKeyTest::spew("$dir/$p", "$pid\n");
    ok(ApiKeyTest::_claim_port($p), 'a claim of a process that is gone is taken over');
    like(ApiKeyTest::slurp("$dir/$p"), qr/^$$\b/, '... and now holds this process');
    unlink "$dir/$p";
}

$res = http_get(free_port(), '/');
is($res->status, 0, 'connection refused gives status 0');
ok($res->error_message, '... and an error message');

# keep-alive
{
    my $c = ApiKeyTest::HTTPConn->new($n->port);
    my @s = map { $c->get("/k$_")->status } 1 .. 5;
    is_deeply(\@s, [ (200) x 5 ], 'keep-alive requests');
    is($c->connects, 1, 'over one connection');
    $c->close;
}

# concurrency
{
    my @reqs = map { { path => "/c$_?o=$_" } } 1 .. 100;
    my @res = http_concurrent($n->port, \@reqs, timeout => 15);
    is(scalar(grep { $_->status == 200 } @res), 100, '100 concurrent requests');
    my $right = grep { $res[$_]->body =~ /uri=\[\/c@{[$_+1]}\].*owner=\[o-@{[$_+1]}\]/ }
        0 .. $#res;
    is($right, 100, 'answers in request order');
    my $b = http_batch($n->port, [ ('/x') x 5 ]);
    my @r5 = $b->wait(timeout => 5);
    is(scalar(grep { $_->status == 200 } @r5), 5, 'batch + wait');
}

# a raw request left hanging, then closed
{
    my $s = http_open_raw($n->port, '/raw');
    ok($s, 'raw request');
    close $s;
}

# reload with a new config
{
    my @before = $n->worker_pids;
    is(http_get($n->port, '/gen')->body, "generation 1\n", 'generation 1');
    ok($n->reload(vars => { GEN => 2 }), 'reload') or diag $n->reload_error;
    my @after = $n->worker_pids;
    is(scalar @after, 2, 'two new workers');
    ok(!grep({ my $p = $_; grep { $_ == $p } @before } @after), 'all new pids');
    is(http_get($n->port, '/gen')->body, "generation 2\n",
       'the new configuration serves right after reload()');
    is_deeply($n->{old_workers_left}, [], 'old workers exited');
}

# logs
like($n->access_log, qr{"GET /path/x\?a=1&o=me HTTP/1.1" 200}, 'access log');
like($n->error_log, qr/\[debug\]/, 'error log at debug level');
my $mark = $n->log_mark;
http_get($n->port, '/after-mark', headers => { 'X-API-Key' => 'MARKKEY123' });
my $since = $n->error_log_since($mark);
like($since, qr/after-mark/, 'error_log_since');
unlike($since, qr/\/path\/x/, '... only new lines');
my @leaks = key_leaks($n->error_log, 'MARKKEY123');
# without the module, the key reaches the upstream echo server, so nginx's
# own script engine logs it ("http script var") besides the parser lines
ok(scalar(grep { /http script var|http proxy header/ } @leaks),
   'key_leaks finds lines outside the core parser prefixes')
    or diag join "\n", @leaks;
ok(!grep({ /http header: "X-API-Key/ } @leaks),
   'key_leaks ignores the core parser lines');
is_deeply([ $n->problems ], [], 'no alerts in the error log');

$n->stop;
ok(!$n->stop_forced, 'graceful stop');
ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $n->port,
                          Proto => 'tcp', Timeout => 1), 'nginx stopped');

# --- nginx -t ------------------------------------------------------------

my $bad = ApiKeyTest::Nginx->check_config(module => 0, http => <<'EOT');
    server {
        listen 127.0.0.1:%%PORT%%;
        no_such_directive on;
    }
EOT
ok(!$bad->{ok}, 'nginx -t fails on a bad config');
my $line = ApiKeyTest::Nginx::line_of($bad, qr/no_such_directive/);
like($bad->{output}, qr/unknown directive "no_such_directive" in \Q$bad->{conf_path}\E:$line\b/,
     "nginx -t names the file and line ($line)");
my $good = ApiKeyTest::Nginx->check_config(module => 0, http => "server { listen 127.0.0.1:%%PORT%%; }\n");
ok($good->{ok}, 'nginx -t passes on a good config') or diag $good->{output};

# nginx failing to start is reported, not hung on
ok(!eval { ApiKeyTest::Nginx->start(module => 0, http => "bogus;\n"); 1 },
   'start dies when nginx cannot start');
like($@, qr/unknown directive "bogus"/, '... with nginx\'s message');

# --- the final checks: a child test file, its exit status and output -------
#
# Every test file fails at its end when an nginx it started logged an
# [alert]/[crit]/[emerg] or crashed, a raw key made by the helpers reached
# its logs, or a sanitizer report was written; unless the test declared it.

my $kids = tmpdir();
my $kid_n = 0;

# child_test($body, plan => 'done_testing' | N): { exit, out }
sub child_test {
    my ($body, %o) = @_;
    my $plan = $o{plan} // 'done_testing';
    my $file = "$kids/kid" . ++$kid_n . '.t';
    my $head = "use strict; use warnings;\n"
        . ($plan eq 'done_testing' ? "use Test::More;\n"
                                   : "use Test::More tests => $plan;\n")
        . "use ApiKeyTest;\n"
        . "my \$n = ApiKeyTest::Nginx->start(module => 0, http => "
        . "'server { listen 127.0.0.1:%%PORT%%; location / { return 200 \"x\\\\n\"; } }');\n"
        . "is(http_get(\$n->port, '/')->status, 200, 'nginx answers');\n";
    spew($file, $head . $body . ($plan eq 'done_testing' ? "done_testing;\n" : ''));
    my $lib = -d 't/lib' ? 't/lib' : "$ENV{PWD}/t/lib";
    my $out = `$^X -I$lib $file 2>&1`;
    return { exit => $? >> 8, out => $out };
}

my $append = 'open my $fh, ">>", $n->dir . "/error.log" or die; '
    . 'print $fh "2030/01/01 00:00:00 [alert] 1#1: a test alert\n"; close $fh;' . "\n";

my $k = child_test('');
is($k->{exit}, 0, 'final checks: a clean test passes') or diag $k->{out};
like($k->{out}, qr/^ok 2 - final check of nginx 1: /m, '... with one more test per nginx');

$k = child_test(<<'EOT');
my ($w) = $n->worker_pids;
kill 'KILL', $w;    # (a SEGV would be caught by ASan in a sanitizer run)
wait_until(sub { $n->error_log =~ /exited on signal/ }, timeout => 5);
EOT
isnt($k->{exit}, 0, 'final checks: a worker crash fails the test file');
like($k->{out}, qr/not ok 2 - final check of nginx 1.*exited on signal \d+/s,
     '... and shows the log line') or diag $k->{out};

$k = child_test($append);
isnt($k->{exit}, 0, 'final checks: an [alert] fails the test file');
like($k->{out}, qr/unexpected .*\n.*a test alert/, '... with the line') or diag $k->{out};

$k = child_test("\$n->expect_problem(qr/a test alert/);\n$append");
is($k->{exit}, 0, 'final checks: an expected alert passes') or diag $k->{out};

$k = child_test("\$n->expect_problem(qr/another alert/);\n$append");
isnt($k->{exit}, 0, '... but not an alert other than the expected one');

$k = child_test(<<'EOT');
my $key = random_key('leak');
http_get($n->port, "/?k=$key");
EOT
isnt($k->{exit}, 0, 'final checks: a raw key in the access log fails the test file');
like($k->{out}, qr/raw keys in the logs.*\n.*access\.log: .*tkleakX/s,
     '... with the line') or diag $k->{out};

$k = child_test(<<'EOT');
my $key = checksum_key('ak');
$n->expect_key_leak($key);
http_get($n->port, "/?k=$key");
EOT
is($k->{exit}, 0, 'final checks: an expected key leak passes') or diag $k->{out};

$k = child_test(<<'EOT');
my $key = 'short';
http_get($n->port, "/?k=$key");
EOT
is($k->{exit}, 0, 'final checks: strings not made by the key helpers do not count')
    or diag $k->{out};

$k = child_test(<<'EOT');
spew($n->dir . '/san/asan.12345', "==12345==ERROR: AddressSanitizer: heap-buffer-overflow\n");
EOT
isnt($k->{exit}, 0, 'final checks: a sanitizer report fails the test file');
like($k->{out}, qr/sanitizer report .*\n.*heap-buffer-overflow/, '... with its text')
    or diag $k->{out};

$k = child_test(<<'EOT');
open my $fh, '>>', $n->dir . '/error.log' or die;
print $fh "src/x.c:12:5: runtime error: signed integer overflow\n";
close $fh;
EOT
isnt($k->{exit}, 0, 'final checks: a UBSan report in the error log (its stderr) fails');

$k = child_test('', plan => 1);
is($k->{exit}, 0, 'final checks with a numeric plan: a clean test passes (no extra test)')
    or diag $k->{out};
$k = child_test($append, plan => 1);
isnt($k->{exit}, 0, 'final checks with a numeric plan: an [alert] fails the test file');
like($k->{out}, qr/a test alert/, '... with the line') or diag $k->{out};

# --- AK_KEEP: the directories stay and are named at the end --------------
{
    local $ENV{AK_KEEP} = 1;
    my $kk = child_test('');
    is($kk->{exit}, 0, 'AK_KEEP=1: the test file passes') or diag $kk->{out};
    my ($kept) = $kk->{out} =~ /^# AK_KEEP: nginx 1: (\S+)$/m;
    ok(defined $kept && -s "$kept/error.log" && -s "$kept/nginx.conf",
       'AK_KEEP=1: the nginx directory is named on stderr and kept, with its logs')
        or diag $kk->{out};
    # remove what the child kept
    require File::Path;
    File::Path::remove_tree($kept) if defined $kept && $kept =~ m{/aktest-\w+$};
    if ($kk->{out} =~ /^# AK_KEEP: sanitizer reports of the programs run: (\S+)\/san$/m) {
        my $d = $1;
        File::Path::remove_tree($d) if $d =~ m{/aktest-\w+$};
    }
}

$k = child_test(<<'EOT');
ok(!eval { ApiKeyTest::Nginx->start(module => 0, http => 'bogus;'); 1 },
   'a bad configuration');
EOT
is($k->{exit}, 0, 'an nginx that failed to start is not checked for its [emerg]')
    or diag $k->{out};

done_testing;
