# SPDX-License-Identifier: BSD-2-Clause
# A key must reach no log line when the request ends before the access
# phase (where a location's sources are stripped): the server's query
# sources leave the request at its start (POST_READ), before limit_req,
# limit_conn, "return" or "if" in the server's rewrite phase, and in the
# server's locations without api_key.  Cacheable variables of header,
# bearer and cookie sources read before the access phase ($http_x_api_key,
# $http_authorization, $cookie_NAME, $http_cookie) are dropped once the
# source is stripped.  The harness's final check fails the file on any key
# in the error or access log: none is expected here.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use IO::Socket::INET;
use Time::HiRes qw(sleep);

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    limit_req_zone  $binary_remote_addr zone=one:1m rate=1r/m;
    limit_conn_zone $binary_remote_addr zone=addr:1m;

    log_format leak 'L "$request" ru=[$request_uri] args=[$args] '
                    'xk=[$http_x_api_key] auth=[$http_authorization] '
                    'ck=[$cookie_ak] cookie=[$http_cookie] st=[$api_key_status] '
                    's=$status';

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT_H2%% http2;
        access_log %%DIR%%/access.log leak;

        api_key_source query:api_key header:X-API-Key bearer cookie:ak;

        # the server's rewrite phase: every source variable read (and
        # cached) before the access phase
        set $x "$http_x_api_key$http_authorization$cookie_ak$http_cookie";

        if ($arg_x) { return 400; }
        if ($uri = /srv403) { return 403; }

        add_header X-Status $api_key_status always;

        location /lr/ {
            api_key keys;
            limit_req zone=one nodelay;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /lc/ {
            api_key keys;
            limit_conn addr 1;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /ok/ {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # rewrite ... last runs the server's rewrite phase again
        location /rw/ {
            rewrite ^/rw/(.*)$ /ok/$1 last;
        }

        # the argument is gone before the rewrite phases (README)
        location /argtest/ {
            api_key keys;
            if ($arg_api_key) { return 418; }
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # no api_key here
        location /open/ {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r, error_level => 'info');
my $port = $n->port;
my $h2 = $n->port('h2');

my $k  = random_key('es');
my $k2 = random_key('es2');
add_key($r, $k, owner => 'early');
add_key($r, $k2, owner => 'early2');

sub no_key {
    my ($text, $what) = @_;
    my @hit = grep { index($text, $_) >= 0 } ($k, $k2);
    ok(!@hit, "$what: no key") or diag substr($text, 0, 800);
}

# the access log line of a request (by a marker argument)
sub log_line {
    my ($marker) = @_;
    my $line;
    wait_until(sub {
        ($line) = grep { /^L / && index($_, $marker) >= 0 } split /\n/, $n->access_log;
        defined $line;
    }, timeout => 5);
    return $line // '';
}

# --- limit_req: 503 in the preaccess phase -------------------------------------
{
    my $res = http_get($port, "/lr/a?api_key=$k&m=lr1");
    is($res->status, 200, 'limit_req: the first request passes') or diag $res->as_string;
    like($res->body, qr/args=\[m=lr1\]/, 'limit_req: the upstream got no key');

    $res = http_get($port, "/lr/a?api_key=$k&m=lr2");
    is($res->status, 503, 'limit_req: the second request gets 503');
    my $line = log_line('m=lr2');
    like($line, qr{"GET /lr/a\?m=lr2 HTTP/1\.1" ru=\[/lr/a\?m=lr2\] args=\[m=lr2\] .* s=503},
         'limit_req: $request, $request_uri, $args without the key');
    no_key($line, 'limit_req: the access log');
    like($n->error_log, qr{limiting requests, .*request: "GET /lr/a\?m=lr2 HTTP/1\.1"},
         'limit_req: its error line has the request line without the key');
}

# --- limit_conn: 503 in the preaccess phase ------------------------------------
{
    # a request waiting for its body holds the one connection allowed
    my $held = http_open_raw($port, "/lc/a?api_key=$k2&m=held", method => 'POST',
                             headers => [ 'Content-Length' => 100 ],
                             keepalive => 1);
    my $res;
    for (1 .. 50) {
        $res = http_get($port, "/lc/a?api_key=$k&m=lc$_");
        last if $res->status == 503;
        sleep 0.1;
    }
    is($res->status, 503, 'limit_conn: a second request gets 503');
    # (the log line is written when the request is freed, which may come
    # after the client has read the answer: wait for it, bounded)
    my @lines;
    wait_until(sub {
        @lines = grep { /^L / && /s=503/ && m{/lc/a} } split /\n/, $n->access_log;
        scalar @lines;
    }, timeout => 5);
    ok(@lines, 'limit_conn: logged') or diag $n->access_log;
    no_key(join("\n", @lines), 'limit_conn: the access log');
    like($n->error_log, qr{limiting connections by zone "addr", .*request: "GET /lc/a\?m=lc\d+ HTTP/1\.1"},
         'limit_conn: its error line has the request line without the key');
    close $held;
    my $line = log_line('m=held');
    like($line, qr{"POST /lc/a\?m=held HTTP/1\.1"}, 'limit_conn: the held request logged without its key');
}

# --- return / if in the server's rewrite phase ----------------------------------
{
    my $res = http_get($port, "/srv403?api_key=$k&m=r403");
    is($res->status, 403, 'return 403 in the server block');
    my $line = log_line('m=r403');
    like($line, qr{"GET /srv403\?m=r403 HTTP/1\.1" ru=\[/srv403\?m=r403\] args=\[m=r403\]},
         'return 403: logged without the key');

    $res = http_get($port, "/ok/p?x=1&api_key=$k&m=if400");
    is($res->status, 400, 'if ($arg_x) { return 400; }');
    $line = log_line('m=if400');
    like($line, qr{"GET /ok/p\?x=1&m=if400 HTTP/1\.1" ru=\[/ok/p\?x=1&m=if400\] args=\[x=1&m=if400\]},
         'if/return 400: logged without the key');

    # HTTP/1.0 (raw)
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or die "connect: $!";
    print $s "GET /srv403?m=r10&api_key=$k HTTP/1.0\r\n\r\n";
    local $/;
    my $out = <$s> // '';
    close $s;
    like($out, qr{^HTTP/1\.1 403}, 'HTTP/1.0: return 403');
    $line = log_line('m=r10');
    like($line, qr{"GET /srv403\?m=r10 HTTP/1\.0"}, 'HTTP/1.0: logged without the key');
}

# --- a location without api_key ---------------------------------------------------
{
    my $res = http_get($port, "/open/p?api_key=$k&m=open");
    is($res->status, 200, 'a location without api_key');
    like($res->body, qr/args=\[m=open\]/, 'without api_key: the argument is removed (README)');
    is($res->header('X-Status') // '', '', 'without api_key: no check ran');
    my $line = log_line('m=open');
    like($line, qr{"GET /open/p\?m=open HTTP/1\.1" ru=\[/open/p\?m=open\] args=\[m=open\]},
         'without api_key: logged without the key');
}

# --- the key still authenticates -------------------------------------------------
{
    my $res = http_get($port, "/ok/p?a=1&api_key=$k&m=ok");
    is($res->status, 200, 'a query key: 200') or diag $res->as_string;
    is($res->header('X-Status'), 'ok', 'a query key: ok');
    like($res->body, qr/args=\[a=1&m=ok\]/, 'a query key: stripped upstream');
    like(log_line('m=ok'), qr{"GET /ok/p\?a=1&m=ok HTTP/1\.1" .* st=\[ok\]},
         'a query key: logged ok, without the key');

    $res = http_get($port, "/ok/p?api_key=${k}zz&m=unknown");
    is($res->status, 401, 'an unknown query key: 401');
    is($res->header('X-Status'), 'unknown', 'an unknown query key: unknown');

    $res = http_get($port, "/ok/p?m=none");
    is($res->header('X-Status'), 'missing', 'no key: missing');

    $res = http_get($port, "/argtest/p?api_key=$k&m=arg");
    is($res->status, 200, '$arg_api_key is empty in the rewrite phases, the key is found')
        or diag $res->as_string;

    $res = http_get($port, "/rw/p?api_key=$k&m=rw");
    is($res->status, 200, 'rewrite ... last: the key is found') or diag $res->as_string;
    like($res->body, qr/uri=\[\/ok\/p\] .*args=\[m=rw\]/, 'rewrite ... last: stripped upstream');
    like(log_line('m=rw'), qr{"GET /rw/p\?m=rw HTTP/1\.1" .* st=\[ok\]},
         'rewrite ... last: logged without the key');
}

# --- HTTP/2 ---------------------------------------------------------------------------
SKIP: {
    my $curl = `curl --version 2>/dev/null`;
    skip 'curl with HTTP/2 is not available', 4 unless $curl =~ /HTTP2/;
    my $out = `curl -s -m 10 --http2-prior-knowledge -D - 'http://127.0.0.1:$h2/ok/p?api_key=$k&m=h2ok'`;
    like($out, qr{^HTTP/2 200}, 'HTTP/2: a query key authenticates') or diag $out;
    like(log_line('m=h2ok'), qr{"GET /ok/p\?m=h2ok HTTP/2\.0" .* st=\[ok\]},
         'HTTP/2: logged without the key');
    $out = `curl -s -m 10 --http2-prior-knowledge -D - 'http://127.0.0.1:$h2/srv403?api_key=$k&m=h2r'`;
    like($out, qr{^HTTP/2 403}, 'HTTP/2: return 403') or diag $out;
    like(log_line('m=h2r'), qr{"GET /srv403\?m=h2r HTTP/2\.0" ru=\[/srv403\?m=h2r\] args=\[m=h2r\]},
         'HTTP/2: return 403 logged without the key');
}

# --- cached variables of header, bearer and cookie sources ---------------------------
{
    my $res = http_get($port, '/ok/p?m=vh', headers => { 'X-API-Key' => $k });
    is($res->status, 200, 'header: 200');
    like(log_line('m=vh'), qr{ xk=\[-?\] .* st=\[ok\]}, 'header: $http_x_api_key dropped once stripped');

    $res = http_get($port, '/ok/p?m=vb', headers => { Authorization => "Bearer $k" });
    is($res->status, 200, 'bearer: 200');
    like(log_line('m=vb'), qr{ auth=\[-?\] .* st=\[ok\]}, 'bearer: $http_authorization dropped once stripped');

    $res = http_get($port, '/ok/p?m=vc', headers => { Cookie => "a=1; ak=$k; b=2" });
    is($res->status, 200, 'cookie: 200');
    like(log_line('m=vc'), qr{ ck=\[-?\] cookie=\[a=1; b=2\] st=\[ok\]},
         'cookie: $cookie_ak and $http_cookie dropped once stripped');

    # a denied request is stripped too
    $res = http_get($port, '/ok/p?m=vu', headers => { 'X-API-Key' => "${k}zz" });
    is($res->status, 401, 'an unknown header key: 401');
    like(log_line('m=vu'), qr{ xk=\[-?\] }, 'an unknown header key: dropped too');
}

no_key($n->access_log, 'the whole access log');
no_key($n->error_log, 'the whole error log');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
