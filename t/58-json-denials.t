# SPDX-License-Identifier: BSD-2-Clause
# api_key_error_body json: every denial reachable answers
# application/problem+json (RFC 9457) with the exact static body for its
# outcome, its status code, and the headers the HTML answer has
# (WWW-Authenticate, Retry-After, RateLimit*); never the key or anything of
# the request.  error_page still wins; the "html" default and a location
# switched back to it keep nginx's page; responses the module did not deny
# (an upstream's 401/403, satisfy any let through) are left alone; HEAD
# gets the headers and the exact length, no body; keep-alive works after a
# denial; HTTP/2 answers the same; a bad value is an nginx -t error with
# file:line.
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=300ms;
    api_key_error_body json;

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT_H2%% http2;
        api_key keys;
        add_header X-Status $api_key_status always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /html/ {
            api_key_error_body html;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /scoped/ {
            api_key_scope admin;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /html-scoped/ {
            api_key_scope admin;
            api_key_error_body html;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # error_page wins: a static page, a named location
        location /ep/ {
            error_page 401 403 /errors/denied.html;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /errors/ {
            api_key off;
            root %%DIR%%/html;
        }
        location /ep-named/ {
            error_page 401 = @fallback;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location @fallback {
            api_key off;
            return 200 "fallback\n";
        }
        # an error_page for another status: the denial is still JSON
        location /ep-other/ {
            error_page 404 /errors/denied.html;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        # error_page into a location that denies again: JSON from there
        location /ep-again/ {
            error_page 401 /again/target;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /again/ {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # satisfy any: denied by every module -> the module's JSON; let
        # through by "allow" -> the upstream's own 401 untouched
        location /any-denied/ {
            satisfy any;
            allow 10.9.9.9;
            deny all;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /any-allowed/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            proxy_pass http://127.0.0.1:%%PORT_NO%%;
        }
        # a key that passes, an upstream that answers 403 itself
        location /up403/ {
            proxy_pass http://127.0.0.1:%%PORT_NO%%;
        }
    }

    # an upstream that says no by itself
    server {
        listen 127.0.0.1:%%PORT_NO%%;
        api_key off;
        location /any-allowed/ { return 401 "upstream 401\n"; }
        location /up403/ { return 403 "upstream 403\n"; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
spew($n->dir . '/html/errors/denied.html', "custom denied page\n")
    if mkdir($n->dir . '/html/errors') && chmod(0755, $n->dir . '/html/errors');
my $port = $n->port;
# nginx's own HTTP/2 debug lines print the request's headers as they came
# (README, Security notes)
$n->expect_key_leak(qr/\[debug\] \d+#\d+: \*\d+ http2 (?:table add|header): /);

my %title = (401 => 'Unauthorized', 403 => 'Forbidden',
             429 => 'Too Many Requests', 503 => 'Service Unavailable');

sub problem {
    my ($status, $detail) = @_;
    return qq({"type":"about:blank","title":"$title{$status}","status":$status,"detail":"$detail"}\n);
}

sub get { http_get($port, $_[0], headers => $_[1] // {}) }
sub xkey { { 'X-API-Key' => $_[0] } }

# checks a JSON denial: status, type, exact body, parsed fields, length, no
# key or request input in it
sub is_problem {
    my ($res, $status, $detail, $what, %o) = @_;
    is($res->status, $status, "$what: $status") or diag($res->as_string);
    is($res->header('content-type'), 'application/problem+json',
       "$what: Content-Type application/problem+json");
    is($res->body, problem($status, $detail), "$what: the exact body");
    my $j = eval { JSON::PP->new->decode($res->body) };
    is_deeply($j, { type => 'about:blank', title => $title{$status},
                    status => $status, detail => $detail },
              "$what: JSON with type, title, status, detail") or diag($@);
    is($res->header('content-length'), length($res->body),
       "$what: Content-Length is the body's");
    for my $secret (grep { defined && length } @{ $o{not} // [] }) {
        ok(index($res->body, $secret) < 0, "$what: the body does not echo '"
           . (length $secret > 12 ? substr($secret, 0, 6) . '...' : $secret) . "'");
    }
    is($res->header('X-Status'), $detail, "$what: \$api_key_status agrees");
}

my $INVALID = 'Bearer realm="api", error="invalid_token"';
my $now = time;
my %k = map { $_ => random_key($_) } qw(ok unknown expired revoked disabled badrec ip
                                        ref scope rate quota down);
add_key($r, $k{ok}, owner => 'ok', scopes => 'admin');
add_key($r, $k{expired}, expires_at => $now - 10);
add_key($r, $k{revoked}, status => 'revoked');
add_key($r, $k{disabled}, status => 'disabled');
add_key($r, $k{badrec}, status => 'no-such-status');
add_key($r, $k{ip}, ips => '10.0.0.0/8');
add_key($r, $k{ref}, referrers => 'example.com');
add_key($r, $k{scope}, scopes => 'read');
add_key($r, $k{rate}, rate => '1/m', burst => 0);
add_key($r, $k{quota}, quota => '1/day');

my $path = '/p?q=req-input-Zq9';
my @secrets = ('req-input-Zq9', 'Zq9');

# --- every outcome, against the html location ------------------------------
my @cases = (
    ['missing',         401, {},                         $INVALID =~ s/, error.*//r],
    ['malformed',       401, xkey("bad\x01" . random_base62(10)), $INVALID],
    ['unknown',         401, xkey($k{unknown}),          $INVALID],
    ['expired',         401, xkey($k{expired}),          $INVALID],
    ['revoked',         401, xkey($k{revoked}),          $INVALID],
    ['disabled',        403, xkey($k{disabled}),         undef],
    ['bad_record',      401, xkey($k{badrec}),           $INVALID],
    ['ip_denied',       403, xkey($k{ip}),               undef],
    ['referrer_denied', 403, { %{ xkey($k{ref}) }, Referer => 'https://evil.test/x' }, undef],
);
for my $c (@cases) {
    my ($detail, $status, $h, $www) = @$c;
    my @not = (@secrets, values %$h);
    my $res = get($path, $h);
    is_problem($res, $status, $detail, $detail, not => \@not);
    is($res->header('www-authenticate'), $www, "$detail: WWW-Authenticate as today");
    my $html = get("/html$path", $h);
    is($html->status, $status, "$detail (html): $status");
    like($html->header('content-type'), qr{^text/html}, "$detail (html): nginx's page");
    like($html->body, qr{<title>$status }, "$detail (html): nginx's page body");
    is($html->header('www-authenticate'), $res->header('www-authenticate'),
       "$detail: the same WWW-Authenticate as with html");
}

# scope_denied: 403 with the WWW-Authenticate of html
{
    my $res = get("/scoped$path", xkey($k{scope}));
    is_problem($res, 403, 'scope_denied', 'scope_denied', not => [@secrets, $k{scope}]);
    my $html = get("/html-scoped$path", xkey($k{scope}));
    is($html->status, 403, 'scope_denied (html): 403');
    ok(defined $res->header('www-authenticate'), 'scope_denied: WWW-Authenticate');
    is($res->header('www-authenticate'), $html->header('www-authenticate'),
       'scope_denied: the same WWW-Authenticate as with html');
    is(get("/scoped$path", xkey($k{ok}))->status, 200, 'scope admin: 200');
}

# rate_limited and quota_exceeded: Retry-After (and RateLimit*) kept
{
    is(get($path, xkey($k{rate}))->status, 200, 'rate 1/m: the first passes');
    my $res = get($path, xkey($k{rate}));
    is_problem($res, 429, 'rate_limited', 'rate_limited', not => [@secrets, $k{rate}]);
    like($res->header('retry-after') // '', qr/^[1-9]\d*$/, 'rate_limited: Retry-After');
    like($res->header('ratelimit-policy') // '', qr/^1;w=60;burst=0$/,
         'rate_limited: RateLimit-Policy kept');
    like($res->header('ratelimit') // '', qr/remaining=0/, 'rate_limited: RateLimit kept');

    is(get($path, xkey($k{quota}))->status, 200, 'quota 1/day: the first passes');
    $res = get($path, xkey($k{quota}));
    is_problem($res, 429, 'quota_exceeded', 'quota_exceeded', not => [@secrets, $k{quota}]);
    like($res->header('retry-after') // '', qr/^[1-9]\d*$/, 'quota_exceeded: Retry-After');
}

# --- an allowed request is untouched; responses the module did not deny ------
{
    my $res = get($path, xkey($k{ok}));
    is($res->status, 200, 'ok: 200');
    like($res->body, qr/^echo /, 'ok: the upstream answered');

    $res = get('/up403/x', xkey($k{ok}));
    is($res->status, 403, "an upstream's 403 after an allowed key");
    is($res->body, "upstream 403\n", "... its own body");
    unlike($res->header('content-type') // '', qr/problem/, '... its own type');

    $res = get('/any-allowed/x');
    is($res->status, 401, "satisfy any, let through by allow: the upstream's 401");
    is($res->body, "upstream 401\n", '... its own body');

    $res = get('/any-denied/x');
    is_problem($res, 401, 'missing', 'satisfy any, every module denies');
}

# --- error_page wins ---------------------------------------------------------
{
    my $res = get('/ep/x');
    is($res->status, 401, 'error_page to a static page: 401');
    is($res->body, "custom denied page\n", 'error_page to a static page: its body');
    like($res->header('content-type'), qr{^text/html}, 'error_page: its type');
    $res = get('/ep/x', xkey($k{ip}));
    is($res->body, "custom denied page\n", 'error_page 403: its body');

    $res = get('/ep-named/x');
    is($res->status, 200, 'error_page = @named: its answer');
    is($res->body, "fallback\n", 'error_page = @named: its body');

    $res = get('/ep-other/x');
    is_problem($res, 401, 'missing', 'error_page for another status');

    $res = get('/ep-again/x');
    is_problem($res, 401, 'missing', 'error_page into a location that denies again');
}

# --- HEAD: headers and the exact length, no body ----------------------------
{
    my $out = `curl -s -m 10 -I 'http://127.0.0.1:$port/x'`;
    like($out, qr{^HTTP/1\.1 401 }, 'HEAD: 401');
    like($out, qr{^content-type: application/problem\+json\r?$}mi, 'HEAD: type');
    like($out, qr{^content-length: @{[ length problem(401, 'missing') ]}\r?$}mi,
         'HEAD: the length of the GET body');
    like($out, qr/\r\n\r\n\z/, 'HEAD: no body');
}

# --- keep-alive: the next request on the connection is read right -----------
{
    my $c = ApiKeyTest::HTTPConn->new($port);
    my $a = $c->get('/x');
    is_problem($a, 401, 'missing', 'keep-alive #1');
    my $b = $c->get('/x', headers => xkey($k{unknown}));
    is_problem($b, 401, 'unknown', 'keep-alive #2');
    my $d = $c->get('/x', headers => xkey($k{ok}));
    is($d->status, 200, 'keep-alive #3: an allowed request');
    is($c->connects, 1, 'keep-alive: one connection for the three');
}

# --- HTTP/2 -------------------------------------------------------------------
SKIP: {
    skip 'curl with HTTP/2 is needed', 8
        unless `curl --version 2>/dev/null` =~ /HTTP2/;
    my $h2 = $n->port('h2');
    my $out = `curl -s -m 10 --http2-prior-knowledge -D - -H 'X-API-Key: $k{revoked}' 'http://127.0.0.1:$h2/x'`;
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    like($head, qr{^HTTP/2 401}, 'HTTP/2: 401');
    like($head, qr{^content-type: application/problem\+json\r?$}mi, 'HTTP/2: type');
    like($head, qr{^content-length: @{[ length problem(401, 'revoked') ]}\r?$}mi,
         'HTTP/2: exact length');
    is($body, problem(401, 'revoked'), 'HTTP/2: the exact body');
    like($head, qr{^www-authenticate: \Q$INVALID\E\r?$}mi, 'HTTP/2: WWW-Authenticate');
    ok(index($out, $k{revoked}) < 0, 'HTTP/2: no key in the answer');
    $out = `curl -s -m 10 --http2-prior-knowledge -I 'http://127.0.0.1:$h2/x'`;
    like($out, qr{^HTTP/2 401}, 'HTTP/2 HEAD: 401');
    like($out, qr{^content-length: @{[ length problem(401, 'missing') ]}\r?$}mi,
         'HTTP/2 HEAD: the length of the GET body');
}

# --- unavailable: Redis gone, a key not cached ---------------------------------
{
    $r->stop;
    my $res = get($path, xkey($k{down}));
    is_problem($res, 503, 'unavailable', 'unavailable', not => [@secrets, $k{down}]);
    is($res->header('retry-after'), '1', 'unavailable: Retry-After: 1');
}

# --- nginx -t: a bad value, with file and line --------------------------------
{
    my $c = ApiKeyTest::Nginx->check_config(http => <<'EOT');
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:1;
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        api_key_error_body xml;
    }
EOT
    ok(!$c->{ok}, 'api_key_error_body xml: nginx -t fails');
    my $line = ApiKeyTest::Nginx::line_of($c, qr/api_key_error_body xml/);
    like($c->{output}, qr/\[emerg\].*invalid value "xml".*\Q$c->{conf_path}\E:$line\b/,
         'api_key_error_body xml: the error names file:line');
}

done_testing();
