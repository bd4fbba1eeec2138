# SPDX-License-Identifier: BSD-2-Clause
# Key sources (header:NAME, bearer, query:NAME, cookie:NAME; first
# configured source present gives the key, another key elsewhere is malformed), inheritance http -> server -> location,
# api_key_strip on/off (what the upstream receives), internal redirects and
# subrequests are not checked twice.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    api_key keys;                        # http level: inherited everywhere

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        proxy_set_header X-Owner $api_key_owner;

        location /default/ { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /public/  { api_key off; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /header/ {
            api_key_source header:X-Custom;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /query/ {
            api_key_source query:api_key;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /cookie/ {
            api_key_source cookie:ak;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /order/ {
            api_key_source query:k header:X-API-Key;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /nostrip/ {
            api_key_strip off;
            api_key_source header:X-API-Key bearer query:api_key cookie:ak;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /tf/ {
            try_files /nonexistent-file @up;
        }
        location @up {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /ssi/ {
            ssi on;
            root %%DIR%%/html;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_S2%%;
        api_key_source query:sk;         # server level
        add_header X-Status $api_key_status always;
        proxy_set_header X-Owner $api_key_owner;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /nostrip/ {
            api_key_strip off;           # location level, source inherited
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $dir = tmpdir();
my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r, dir => $dir);
# keys sent where they are not the location's source, or to api_key_strip
# off, reach the upstream on purpose: nginx's own debug lines print them,
# and the access log has those URIs
$n->expect_key_leak(CORE_REQUEST_DEBUG,
    qr{^access\.log: .*"GET /(?:nostrip/|default/a\?api_key=|query/p\?xapi_key=)});
mkdir "$dir/html/ssi";
chmod 0755, "$dir/html/ssi";
spew("$dir/html/ssi/index.html",
     "before\n<!--#include virtual=\"/default/sub?x=1\" -->after\n", 0644);
my $port = $n->port;

my $kA = random_key('A');
my $kB = random_key('B');
my $kU = random_key('U');    # unknown
my $kP = 'tkpct/' . random_base62(20) . '==';    # needs percent-encoding
add_key($r, $kA, owner => 'alice');
add_key($r, $kB, owner => 'bob');
add_key($r, $kP, owner => 'percent');

sub get { my ($path, @h) = @_; http_get($port, $path, headers => [@h]) }
sub body_has {
    my ($res, $re, $name) = @_;
    like($res->body, $re, $name) or diag $res->as_string;
}

# --- default sources: header:X-API-Key bearer ------------------------------
{
    my $res = get('/default/a', 'X-API-Key' => $kA);
    is($res->status, 200, 'default: X-API-Key');
    body_has($res, qr/xkey=\[\] .*owner=\[alice\]/, 'default: X-API-Key stripped, owner passed');

    $res = get('/default/a', Authorization => "Bearer $kA");
    is($res->status, 200, 'default: Authorization: Bearer');
    body_has($res, qr/auth=\[\] .*owner=\[alice\]/, 'default: Authorization stripped');

    # two different keys are not resolved by order (issue 15): malformed
    $res = get('/default/a', 'X-API-Key' => $kA, Authorization => "Bearer $kU");
    is($res->status, 401, 'default: a valid header and another key in bearer: 401');
    is($res->header('X-Status'), 'malformed', 'default: ... status malformed');

    $res = get('/default/a', 'X-API-Key' => $kU, Authorization => "Bearer $kA");
    is($res->status, 401, 'default: an unknown header and a valid bearer: 401');
    is($res->header('X-Status'), 'malformed', 'default: ... status malformed');

    $res = get('/default/a', 'X-API-Key' => $kA, Authorization => "Bearer $kA");
    is($res->status, 200, 'default: the same key in both sources: 200');
    body_has($res, qr/xkey=\[\] auth=\[\] .*owner=\[alice\]/, 'default: ... both stripped');

    $res = get('/default/a', 'X-Custom' => $kA);
    is($res->status, 401, 'default: a key in another header is not looked at');
    is($res->header('X-Status'), 'missing', 'default: ... status missing');

    $res = get('/default/a?api_key=' . $kA);
    is($res->status, 401, 'default: a query argument is not a default source');
}

# --- a request with a body, key not cached yet (the check waits on Redis) ----
{
    my $kpost = random_key('post');
    add_key($r, $kpost, owner => 'poster');
    my $body = 'x' x 20000;
    my $res = http_request($port, '/default/post', method => 'POST', body => $body,
                           headers => [ 'X-API-Key' => $kpost,
                                        'Content-Type' => 'text/plain' ]);
    is($res->status, 200, 'POST with a 20 KB body, uncached key: 200')
        or diag $res->as_string;
    body_has($res, qr/owner=\[poster\]/, 'POST: proxied with the identity');
    $res = http_request($port, '/default/post', method => 'POST', body => $body);
    is($res->status, 401, 'POST without a key: 401');
}

# --- api_key off below an enforced level ------------------------------------
{
    my $res = get('/public/x');
    is($res->status, 200, 'api_key off in a location under http-level api_key');
    is($res->header('X-Status') // '', '', 'api_key off: $api_key_status empty');
}

# --- header:NAME -------------------------------------------------------------
{
    my $res = get('/header/', 'X-Custom' => $kB);
    is($res->status, 200, 'header:X-Custom');
    body_has($res, qr/custom=\[\] .*owner=\[bob\]/, 'header:X-Custom stripped');
    $res = get('/header/', 'x-custom' => $kB);
    is($res->status, 200, 'header names are case-insensitive');
    $res = get('/header/', 'X-API-Key' => $kB);
    is($res->status, 401, 'header:X-Custom only: X-API-Key ignored');
    is($res->header('X-Status'), 'missing', '... missing');
}

# --- query:NAME --------------------------------------------------------------
{
    my $res = get("/query/p?a=1&api_key=$kA&b=2");
    is($res->status, 200, 'query:api_key');
    body_has($res, qr/args=\[a=1&b=2\]/,
             'query: the argument is stripped, the others kept, upstream');
    body_has($res, qr/owner=\[alice\]/, 'query: owner');
    unlike($res->body, qr/\Q$kA\E/, 'query: the key does not reach the upstream');

    $res = get("/query/p?api_key=$kA");
    is($res->status, 200, 'query: only argument');
    body_has($res, qr/args=\[\]/, 'query: only argument stripped');

    (my $enc = $kP) =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    $res = get("/query/p?api_key=$enc");
    is($res->status, 200, 'query: the argument is percent-decoded (README)');
    is($res->header('X-Status'), 'ok', 'query: percent-decoded key found');

    $res = get("/query/p?xapi_key=$kA");
    is($res->status, 401, 'query: a longer argument name does not match');
    $res = get("/query/p?other=1", 'X-API-Key' => $kA);
    is($res->status, 401, 'query only: header ignored');
}

# --- cookie:NAME -------------------------------------------------------------
{
    my $res = get('/cookie/', Cookie => "a=1; ak=$kB; b=2");
    is($res->status, 200, 'cookie:ak');
    my ($cookie) = $res->body =~ /cookie=\[([^\]]*)\]/;
    $cookie //= '';
    unlike($cookie, qr/\Q$kB\E/, 'cookie: the key is stripped');
    unlike($cookie, qr/(?:^|[;\s])ak=/, 'cookie: the ak cookie is gone');
    like($cookie, qr/(?:^|; ?)a=1(?:;|$)/, 'cookie: the cookie before it is kept');
    like($cookie, qr/(?:^|; ?)b=2(?:;|$)/, 'cookie: the cookie after it is kept');
    body_has($res, qr/owner=\[bob\]/, 'cookie: owner');

    $res = get('/cookie/', Cookie => 'a=1', Cookie => "ak=$kB; b=2");
    is($res->status, 200, 'cookie: found in a second Cookie header');
    ($cookie) = $res->body =~ /cookie=\[([^\]]*)\]/;
    $cookie //= '';
    unlike($cookie, qr/\Q$kB\E/, 'cookie: stripped from the second Cookie header');
    like($cookie, qr/a=1/, 'cookie: the first Cookie header kept');
    like($cookie, qr/b=2/, 'cookie: the other cookie of the second header kept');

    $res = get('/cookie/', Cookie => "xak=$kB");
    is($res->status, 401, 'cookie: another cookie name does not match');
}

# --- strip: every copy of the header, wherever it is in the header list ----
# nginx keeps request headers in a list of parts (20 per part): the key as
# the first, a middle and the last header of a part, in a later part, and
# sent twice; the neighbours must reach the upstream untouched.
{
    my @fill = map { ("X-F$_" => "v$_") } 1 .. 30;
    for my $case ([ 'first header', 0 ], [ 'middle of the first part', 10 ],
                  [ 'last of the first part', 18 ], [ 'in the second part', 25 ],
                  [ 'last header', 30 ])
    {
        my ($what, $at) = @$case;
        my @h = @fill;
        splice @h, 2 * $at, 0, 'X-API-Key' => $kA;
        my $res = get('/default/f', @h, 'X-Custom' => 'after');
        is($res->status, 200, "strip, key $what: 200");
        body_has($res, qr/xkey=\[\] .*custom=\[after\] .*owner=\[alice\]/,
                 "strip, key $what: removed, the header after it kept");
    }

    my $res = get('/default/d', 'X-API-Key' => $kA, 'X-Custom' => 'mid',
                  @fill, 'X-API-Key' => $kA);
    is($res->status, 200, 'strip, key sent twice: 200');
    body_has($res, qr/xkey=\[\] .*custom=\[mid\]/,
             'strip, key sent twice: both copies removed (the second would show)');

    # (a second Authorization header is a 400 in nginx itself)
    $res = get('/default/b', @fill, Authorization => "Bearer $kA", 'X-Custom' => 'b');
    is($res->status, 200, 'strip, bearer in the second part: 200');
    body_has($res, qr/auth=\[\] .*custom=\[b\]/,
             'strip, bearer in the second part: removed, the header after it kept');

    $res = get('/cookie/', Cookie => "ak=$kB", @fill, Cookie => 'a=1',
               Cookie => "ak=$kB", 'X-Custom' => 'c');
    is($res->status, 200, 'strip, cookie in two of three Cookie headers: 200');
    my ($cookie) = $res->body =~ /cookie=\[([^\]]*)\]/;
    is($cookie, 'a=1', 'strip: both emptied Cookie headers removed, the other kept');
    body_has($res, qr/custom=\[c\]/, '... and the header after them');
}

# --- two sources: the same key is fine, two different keys malformed ----------
{
    my $res = get("/order/?k=$kA", 'X-API-Key' => $kU);
    is($res->status, 401, 'order: query:k (valid) and the header (unknown): 401');
    is($res->header('X-Status'), 'malformed', 'order: ... malformed, not resolved by order');
    $res = get("/order/?k=$kU", 'X-API-Key' => $kA);
    is($res->status, 401, 'order: query:k (unknown) and the header (valid): 401');
    is($res->header('X-Status'), 'malformed', 'order: ... malformed');
    $res = get("/order/?k=$kA&z=1", 'X-API-Key' => $kA);
    is($res->status, 200, 'order: the same key in both: 200');
    body_has($res, qr/xkey=\[\] .*args=\[z=1\] .*owner=\[alice\]/, 'order: ... both stripped');
    $res = get('/order/', 'X-API-Key' => $kB);
    is($res->status, 200, 'order: the second source used when the first is absent');
    body_has($res, qr/owner=\[bob\]/, 'order: the header key identified');
}

# --- api_key_strip off ---------------------------------------------------------
{
    my $res = get('/nostrip/', 'X-API-Key' => $kA);
    is($res->status, 200, 'strip off: header');
    body_has($res, qr/xkey=\[\Q$kA\E\]/, 'strip off: the header reaches the upstream');
    $res = get('/nostrip/', Authorization => "Bearer $kA");
    body_has($res, qr/auth=\[Bearer \Q$kA\E\]/, 'strip off: the Authorization header reaches the upstream');
    $res = get("/nostrip/?api_key=$kA&z=9");
    is($res->status, 200, 'strip off: query');
    body_has($res, qr/args=\[api_key=\Q$kA\E&z=9\]/, 'strip off: the query argument reaches the upstream');
    $res = get('/nostrip/', Cookie => "a=1; ak=$kA");
    is($res->status, 200, 'strip off: cookie');
    body_has($res, qr/cookie=\[a=1; ak=\Q$kA\E\]/, 'strip off: the cookie reaches the upstream');
}

# --- server-level source, location-level strip --------------------------------
{
    my $s2 = $n->port('s2');
    my $res = http_get($s2, "/x?sk=$kB&q=1");
    is($res->status, 200, 'server 2: api_key inherited from http, source from server');
    like($res->body, qr/args=\[q=1\].*owner=\[bob\]/, 'server 2: stripped (default on)');
    $res = http_get($s2, '/x', headers => { 'X-API-Key' => $kB });
    is($res->status, 401, 'server 2: the server-level source replaces the default');
    $res = http_get($s2, "/nostrip/?sk=$kB");
    is($res->status, 200, 'server 2 /nostrip/: source inherited');
    like($res->body, qr/args=\[sk=\Q$kB\E\]/, 'server 2 /nostrip/: strip off');
}

# --- internal redirect (try_files) and subrequests (SSI) -----------------------
{
    my $res = get('/tf/x', 'X-API-Key' => $kA);
    is($res->status, 200, 'try_files to a named location: not checked twice '
                          . '(the key was stripped by the first check)')
        or diag $res->as_string;
    body_has($res, qr/xkey=\[\]/, 'try_files: key stripped');
    is($res->header('X-Status'), 'ok', 'try_files: $api_key_status kept (README)');
    like($res->body, qr/owner=\[alice\]/,
         'try_files: $api_key_owner kept after the redirect (README)');
    $res = get('/tf/x');
    is($res->status, 401, 'try_files: still checked without a key');

    $res = get('/ssi/', 'X-API-Key' => $kB);
    is($res->status, 200, 'SSI (index redirect + subrequest) with a key')
        or diag $res->as_string;
    like($res->body, qr/^before\necho uri=\[\/default\/sub\] xkey=\[\]/m,
         'SSI: the subrequest reached the upstream (not checked again)');
    like($res->body, qr/after/, 'SSI: the whole page');
    $res = get('/ssi/');
    is($res->status, 401, 'SSI page without a key: 401');
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
