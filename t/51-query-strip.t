# SPDX-License-Identifier: BSD-2-Clause
# A query-argument key must reach no variable that can be logged and no
# upstream request: $request, $request_uri, $args, $query_string,
# $arg_NAME (empty once stripped), the access log, the proxied request line;
# over HTTP/1.0, 1.1 and HTTP/2, after "rewrite ... last", after
# "set $args", with $request_uri taken before the access phase, and when
# "set $args" removed the key from r->args (outcome missing).  Issue 10,
# item 2.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use IO::Socket::INET;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    log_format q 'Q request=[$request] request_uri=[$request_uri] '
                 'args=[$args] qs=[$query_string] arg=[$arg_api_key] '
                 'is_args=[$is_args] st=[$api_key_status]';

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT_H2%% http2;
        access_log %%DIR%%/q.log q;

        api_key keys;
        api_key_source query:api_key;

        add_header X-Status      $api_key_status always;
        add_header X-Request     $request always;
        add_header X-Request-Uri $request_uri always;
        add_header X-Args        $args always;
        add_header X-Query       $query_string always;
        add_header X-Arg         "[$arg_api_key]" always;

        location /q/ { proxy_pass http://127.0.0.1:%%PORT_UP%%; }

        # proxy_pass with a URI: the upstream gets $uri + $args
        location /base/ { proxy_pass http://127.0.0.1:%%PORT_UP%%/b/; }

        # rewrite ... last: valid_unparsed_uri is cleared
        location /rw/ { rewrite ^/rw/(.*)$ /q/$1 last; }

        # set $args: valid_unparsed_uri is cleared, the key stays in r->args
        location /set/ {
            set $args "$args&added=1";
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # set $args drops the key from r->args: the request line still has
        # it (a source of the location only: the server's query:api_key
        # leaves the request before the rewrite phases, README)
        location /drop/ {
            api_key_source query:dk;
            set $args "x=1";
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # the server's source: removed at the start, still found after
        # "set $args" replaced the arguments
        location /dropsrv/ {
            set $args "x=1";
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # $request_uri and $request read (and cached) before the access phase
        location /early/ {
            if ($request_uri ~ "^/nomatch") { return 404; }
            if ($request ~ "^NOMATCH") { return 404; }
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # a second query source, and a header source found first
        location /two/ {
            api_key_source header:X-API-Key query:k2 query:api_key;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

    }

    server {
        listen 127.0.0.1:%%PORT_UP%%;
        api_key off;
        access_log %%DIR%%/up.log q;
        location / {
            return 200 "up request=[$request] uri=[$uri] args=[$args]\n";
        }
    }
EOT

# nginx's own HTTP/2 debug lines print the request's headers as they came;
# at debug level the rewrite module logs its matches (as rewrite_log on
# does) and the script its values, before the access phase, with the
# request line as it came (README, Security notes)
my @core_lines = (
    qr/\[debug\] \d+#\d+: \*\d+ (?:http2 header|http2 request line|http script var): /,
    qr/\[notice\] \d+#\d+: \*\d+ (?:"[^"]*" (?:does not )?match(?:es)? "|rewritten data: )/,
);

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
# (a harness with final log checks is told about them too)
$n->expect_key_leak(@core_lines) if $n->can('expect_key_leak');
my $port = $n->port;
my $h2 = $n->port('h2');
my $dir = $n->dir;

my $k = random_key('q');
my $k2 = random_key('q2');
add_key($r, $k, owner => 'q-owner');
add_key($r, $k2, owner => 'q2-owner');
my @keys = ($k, $k2);

sub no_key {
    my ($text, $what) = @_;
    my @hit = grep { index($text, $_) >= 0 } @keys;
    ok(!@hit, "$what: no key") or diag substr($text, 0, 600);
}

# checks the variables (response headers) and the upstream's view
sub check {
    my ($what, $res, %want) = @_;
    is($res->status, $want{status} // 200, "$what: status")
        or diag substr($res->as_string, 0, 600);
    no_key(join("\n", map { "$_: " . ($res->header($_) // '') }
                          qw(X-Request X-Request-Uri X-Args X-Query X-Arg)),
           "$what: \$request \$request_uri \$args \$query_string \$arg_api_key");
    no_key($res->body, "$what: the upstream request") if ($want{status} // 200) == 200;
    is($res->header('X-Arg'), '[]', "$what: \$arg_api_key is empty once stripped");
    for my $h (sort keys %{ $want{headers} // {} }) {
        # (add_header sends no empty header)
        is($res->header($h) // '', $want{headers}{$h}, "$what: $h");
    }
    like($res->body, $want{body}, "$what: what the upstream got")
        if $want{body};
}

# --- HTTP/1.1 -----------------------------------------------------------------
{
    my $res = http_get($port, "/q/p?a=1&api_key=$k&b=2");
    check('1.1', $res,
          headers => { 'X-Request' => 'GET /q/p?a=1&b=2 HTTP/1.1',
                       'X-Request-Uri' => '/q/p?a=1&b=2', 'X-Args' => 'a=1&b=2',
                       'X-Status' => 'ok' },
          body => qr{^up request=\[GET /q/p\?a=1&b=2 HTTP/1\.0\] uri=\[/q/p\] args=\[a=1&b=2\]});

    $res = http_get($port, "/q/p?api_key=$k");
    check('1.1, the only argument', $res,
          headers => { 'X-Request' => 'GET /q/p HTTP/1.1', 'X-Request-Uri' => '/q/p',
                       'X-Args' => '' },
          body => qr{^up request=\[GET /q/p HTTP/1\.0\]});

    $res = http_get($port, "/q/p?API_KEY=$k&api_key=$k&x&&y=");
    check('1.1, twice, other case, empty arguments', $res,
          headers => { 'X-Request' => 'GET /q/p?x&y= HTTP/1.1',
                       'X-Request-Uri' => '/q/p?x&y=', 'X-Args' => 'x&y=' });

    $res = http_get($port, "/base/p?api_key=$k&z=1");
    check('proxy_pass with a URI part', $res,
          body => qr{^up request=\[GET /b/p\?z=1 HTTP/1\.0\]});

    # an unknown or malformed key is stripped too
    $res = http_get($port, "/q/p?api_key=${k}zz&c=3");
    check('an unknown key', $res, status => 401,
          headers => { 'X-Request' => 'GET /q/p?c=3 HTTP/1.1', 'X-Status' => 'unknown' });
}

# --- HTTP/1.0 and HTTP/0.9 (raw requests) ------------------------------------
sub raw {
    my ($req) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5) or die "connect: $!";
    print $s $req;
    local $/;
    my $out = <$s>;
    close $s;
    return $out // '';
}
{
    my $out = raw("GET /q/p?api_key=$k&v=10 HTTP/1.0\r\n\r\n");
    my $res = ApiKeyTest::Response->parse($out);
    check('1.0', $res,
          headers => { 'X-Request' => 'GET /q/p?v=10 HTTP/1.0',
                       'X-Request-Uri' => '/q/p?v=10' });

    # HTTP/0.9: no headers in the answer, only the access log tells
    $out = raw("GET /q/p?v=9&api_key=$k\r\n");
    like($out, qr/^up request=\[GET \/q\/p\?v=9 HTTP\/1\.0\]/, '0.9: proxied without the key');
    no_key($out, '0.9: the answer');
}

# --- HTTP/2: the request line is a copy of its own ------------------------------
SKIP: {
    my $curl = `curl --version 2>/dev/null`;
    skip 'curl with HTTP/2 is not available', 12 unless $curl =~ /HTTP2/;
    my $out = `curl -s -m 10 --http2-prior-knowledge -D - 'http://127.0.0.1:$h2/q/p?a=1&api_key=$k&b=2'`;
    my $res = ApiKeyTest::Response->parse($out =~ s{^HTTP/2 }{HTTP/1.1 }r);
    ok($res, 'HTTP/2: an answer') or diag $out;
    $res //= ApiKeyTest::Response->error('no answer', 0);
    check('HTTP/2', $res,
          headers => { 'X-Request' => 'GET /q/p?a=1&b=2 HTTP/2.0',
                       'X-Request-Uri' => '/q/p?a=1&b=2', 'X-Status' => 'ok' },
          body => qr{^up request=\[GET /q/p\?a=1&b=2 HTTP/1\.0\]});
}

# --- rewrite ... last, set $args ----------------------------------------------
{
    my $res = http_get($port, "/rw/p?api_key=$k&r=1");
    check('rewrite ... last', $res,
          headers => { 'X-Request' => 'GET /rw/p?r=1 HTTP/1.1',
                       'X-Request-Uri' => '/rw/p?r=1', 'X-Args' => 'r=1' },
          body => qr{^up request=\[GET /q/p\?r=1 HTTP/1\.0\]});

    $res = http_get($port, "/set/p?api_key=$k&s=1");
    check('set $args', $res,
          headers => { 'X-Request' => 'GET /set/p?s=1 HTTP/1.1',
                       'X-Request-Uri' => '/set/p?s=1', 'X-Args' => 's=1&added=1' },
          body => qr{^up request=\[GET /set/p\?s=1&added=1 HTTP/1\.0\]});

    $res = http_get($port, "/drop/p?dk=$k&d=1");
    check('set $args without the key: missing, the request line stripped all the same',
          $res, status => 401,
          headers => { 'X-Request' => 'GET /drop/p?d=1 HTTP/1.1',
                       'X-Request-Uri' => '/drop/p?d=1', 'X-Status' => 'missing' });

    $res = http_get($port, "/dropsrv/p?api_key=$k&d=1");
    check('set $args, the server\'s source: the key was removed at the start and is found',
          $res, status => 200,
          headers => { 'X-Request' => 'GET /dropsrv/p?d=1 HTTP/1.1',
                       'X-Request-Uri' => '/dropsrv/p?d=1', 'X-Args' => 'x=1',
                       'X-Status' => 'ok' },
          body => qr{^up request=\[GET /dropsrv/p\?x=1 HTTP/1\.0\]});

    $res = http_get($port, "/early/p?api_key=$k&e=1");
    check('$request_uri and $request cached before the access phase', $res,
          headers => { 'X-Request' => 'GET /early/p?e=1 HTTP/1.1',
                       'X-Request-Uri' => '/early/p?e=1' });
}

# --- several query sources; a header source found first ------------------------
{
    # the same key in both (two different keys would be malformed)
    my $res = http_get($port, "/two/p?k2=$k&api_key=$k&t=1");
    check('two query sources: both arguments stripped', $res,
          headers => { 'X-Request' => 'GET /two/p?t=1 HTTP/1.1' },
          body => qr{args=\[t=1\]});
    $res = http_get($port, "/two/p?api_key=$k&t=2", headers => { 'X-API-Key' => $k });
    check('a header and a query argument, the same key: both stripped', $res,
          headers => { 'X-Request' => 'GET /two/p?t=2 HTTP/1.1' });
}

my $log = slurp("$dir/q.log");
no_key($log, 'the access log');
like($log, qr{request=\[GET /q/p\?a=1&b=2 HTTP/2\.0\]}, 'the access log has the HTTP/2 request');
no_key(slurp("$dir/up.log"), "the upstream's access log");
unlike($n->access_log, qr/\Q$k2\E/, 'the default access log has no key');
my @leaks = key_leaks($n->error_log, @keys);
for my $re (@core_lines) { @leaks = grep { $_ !~ $re } @leaks }
is_deeply(\@leaks, [], 'the error log has no key (but for nginx core lines)');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
