# SPDX-License-Identifier: BSD-2-Clause
# Hostile input, client side (3): the protocol around the key.
#
# HTTP/1.0 (with and without Host, keep-alive), HTTP/0.9, HTTP/1.1 without
# Host, HEAD, OPTIONS, a body announced with "Expect: 100-continue" and a
# chunked body; pipelined requests on one connection with different keys,
# keys cached and not (a request waiting on Redis holds the ones behind it):
# each is answered for its own key, in order; HTTP/2 (prior knowledge) with
# keys in each source, cookie crumbs, several streams with different keys
# on one connection, and what nginx answers to bad header fields.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Hostile;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        api_key_source header:X-API-Key bearer query:api_key cookie:ak;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }

    server {
        listen 127.0.0.1:%%PORT_H2%% http2;
        api_key keys;
        api_key_source header:X-API-Key bearer query:api_key cookie:ak;
        proxy_set_header X-Owner $api_key_owner;
        error_page 401 = @deny;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location @deny { return 401 "st=$api_key_status owner=$api_key_owner\n"; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
# nginx's own HTTP/2 debug lines print the header fields as they came
$n->expect_key_leak(qr/\[debug\] \d+#\d+: \*\d+ (?:http2 header|http2 request line|http2 table (?:add|size)): /,
                    NGINX_REFUSED_HEADER,
                    qr/\[info\] \d+#\d+: \*\d+ client sent invalid header (?:name|value): /);
my $port = $n->port;
my $h2 = $n->port('h2');

my %k;
for my $i (1 .. 12) {
    $k{$i} = random_key("p$i");
    add_key($r, $k{$i}, owner => "own$i");
}
my $rev = random_key('prev');
add_key($r, $rev, owner => 'gone', status => 'revoked');
my $unk = random_key('punk');

# --- HTTP/1.0, 0.9, 1.1 oddities ------------------------------------------------
{
    my @cases = (
        { name => 'HTTP/1.0 with Host', want => '200 ok', owner => 'own1',
          raw => "GET /a HTTP/1.0\r\nHost: x\r\nX-API-Key: $k{1}\r\n\r\n" },
        { name => 'HTTP/1.0 without Host', want => '200 ok', owner => 'own1',
          raw => "GET /a HTTP/1.0\r\nX-API-Key: $k{1}\r\n\r\n" },
        { name => 'HTTP/1.0 without Host, unknown key', want => '401 unknown',
          raw => "GET /a HTTP/1.0\r\nX-API-Key: $unk\r\n\r\n" },
        { name => 'HTTP/1.0, no key', want => '401 missing',
          raw => "GET /a HTTP/1.0\r\n\r\n" },
        { name => 'HTTP/1.0, query key', want => '200 ok',
          raw => "GET /a?api_key=$k{1} HTTP/1.0\r\n\r\n" },
        { name => 'HTTP/1.1 without Host (nginx: 400)', want => '400 -',
          raw => "GET /a HTTP/1.1\r\nX-API-Key: $k{1}\r\n\r\n" },
        { name => 'an absolute URI, the key in its query', want => '200 ok',
          raw => "GET http://x/a?api_key=$k{1} HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n" },
        { name => 'OPTIONS without a key (no exception for preflights)', want => '401 missing',
          raw => "OPTIONS /a HTTP/1.1\r\nHost: x\r\nOrigin: http://o\r\n"
                 . "Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n" },
        { name => 'a method nginx does not know, valid key', want => '200 ok',
          raw => "FROB /a HTTP/1.1\r\nHost: x\r\nX-API-Key: $k{1}\r\nConnection: close\r\n\r\n" },
        { name => 'an unknown HTTP version (nginx: 505)', want => '505 -',
          raw => "GET /a HTTP/2.7\r\nHost: x\r\nX-API-Key: $k{1}\r\n\r\n" },
    );
    run_cases($port, \@cases);

    # HEAD: no body, the same status
    my ($res) = raw_exchange($port, "HEAD /a HTTP/1.1\r\nHost: x\r\nX-API-Key: $unk\r\n"
                                    . "Connection: close\r\n\r\n", head => 1);
    is($res ? got($res) : 'none', '401 unknown', 'HEAD, unknown key: 401 unknown');
    unlike($res ? $res->raw : '', qr/<html>/, '... without a body');

    # HTTP/0.9: no headers, so no key: the error page alone
    my $s = ApiKeyTest::_connect($port, 5);
    print $s "GET /a?api_key=$k{1}\r\n";
    local $/;
    my $out = <$s> // '';
    close $s;
    like($out, qr/^up|^echo/, 'HTTP/0.9 with a query key: the upstream answered (no status line)');

    # a body announced with Expect: 100-continue: no "100 Continue" for a
    # request that is denied, the denial at once
    ($res) = raw_exchange($port, "POST /a HTTP/1.1\r\nHost: x\r\nX-API-Key: $unk\r\n"
        . "Content-Length: 100000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
    is(got($res // ApiKeyTest::Response->error('none', 0)), '401 unknown',
       'Expect: 100-continue, unknown key: 401 unknown without the body');
    unlike($res ? $res->raw : '', qr/^HTTP\/1\.1 100/, '... and no 100 Continue before it');

    # a chunked body, the key not cached yet: the check waits on Redis, then
    # the body goes upstream
    ($res) = raw_exchange($port, "POST /a HTTP/1.1\r\nHost: x\r\nX-API-Key: $k{2}\r\n"
        . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        . "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
    is(got($res // ApiKeyTest::Response->error('none', 0)) . ' ' . ($res ? $res->header('X-Owner') // '' : ''),
       '200 ok own2', 'a chunked POST with a key not cached: 200, its owner');
}

# --- pipelining: each request answered for its own key, in order --------------------
{
    $r->cmd('DEL', 'apikey:' . key_hash($k{$_})) for ();   # (all still in Redis)
    my @seq = (
        [ $k{3},  '200 ok',        'own3' ],     # not cached: waits on Redis
        [ undef,  '401 missing',   '' ],         # must not inherit the key above
        [ $k{4},  '200 ok',        'own4' ],     # not cached
        [ $unk,   '401 unknown',   '' ],
        [ 'bad key', '401 malformed', '' ],
        [ $k{3},  '200 ok',        'own3' ],     # cached now
        [ $rev,   '401 revoked',   'gone' ],
        [ $k{5},  '200 ok',        'own5' ],
        [ $k{6},  '200 ok',        'own6' ],
        [ $k{5},  '200 ok',        'own5' ],
        [ undef,  '401 missing',   '' ],
        [ $k{7},  '200 ok',        'own7' ],
    );
    my $i = 0;
    my $bytes = join '', map {
        $i++;
        "GET /pipe/$i HTTP/1.1\r\nHost: x\r\n"
        . (defined $_->[0] ? "X-API-Key: $_->[0]\r\n" : '')
        . ($i == @seq ? "Connection: close\r\n" : '') . "\r\n"
    } @seq;
    my @res = raw_exchange($port, $bytes, responses => scalar @seq, timeout => 10);
    is(scalar @res, scalar @seq, 'pipelined: 12 requests in one write, 12 answers');
    for my $j (0 .. $#seq) {
        my $res = $res[$j] // ApiKeyTest::Response->error('none', 0);
        my $got = got($res) . ' ' . ($res->header('X-Owner') // '');
        is($got, "$seq[$j][1] $seq[$j][2]", 'pipelined request ' . ($j + 1)
           . ": $seq[$j][1] " . ($seq[$j][2] || '(no owner)'));
        like($res->body // '', qr{^echo uri=\[/pipe/${\($j + 1)}\]},
             '... answered by the upstream for its own URI')
            if $seq[$j][1] eq '200 ok';
    }

    # the same over HTTP/1.0 keep-alive, query and bearer keys
    @seq = ([ "GET /q1?api_key=$k{8}", '200 ok own8' ],
            [ "GET /q2?api_key=$unk", '401 unknown ' ],
            [ "GET /q3", '401 missing ', "Authorization: Bearer\r\n" ],
            [ "GET /q4", '200 ok own9', "Authorization: bearer $k{9}\r\n" ]);
    $i = 0;
    $bytes = join '', map {
        $i++;
        "$_->[0] HTTP/1.0\r\n" . ($_->[2] // '')
        . ($i < @seq ? "Connection: keep-alive\r\n" : '') . "\r\n"
    } @seq;
    @res = raw_exchange($port, $bytes, responses => scalar @seq, timeout => 10);
    is_deeply([ map { got($_) . ' ' . ($_->header('X-Owner') // '') } @res ],
              [ map { $_->[1] } @seq ], 'pipelined HTTP/1.0 keep-alive: 4 answers, each its own');
}

# --- HTTP/2: many streams, different keys, one connection ----------------------------
# the body tells the outcome: "st=... owner=..." from the error page, the
# upstream's echo (owner=[...]) for a request let through; nginx resets the
# stream of a header field with NUL or CR, or a name in upper case
# (RST_STREAM), before any module
{
    my @t = (
        [ '/h2/a', [ 'x-api-key' => $k{10} ],                     200, 'owner=[own10]' ],
        [ '/h2/b', [ 'x-api-key' => $unk ],                        401, 'st=unknown' ],
        [ '/h2/c', [],                                             401, 'st=missing' ],
        [ '/h2/d', [ authorization => "bearer $k{10}" ],           200, 'owner=[own10]' ],
        [ '/h2/e', [ authorization => 'Bearer' ],                  401, 'st=missing' ],
        [ "/h2/f?api_key=$k{11}", [],                              200, 'owner=[own11]' ],
        [ '/h2/g', [ cookie => 'a=1', cookie => "ak=$k{11}", cookie => 'b=2' ],
          200, 'owner=[own11]' ],
        [ '/h2/h', [ cookie => 'ak=', cookie => "ak=$k{11}" ],     401, 'st=malformed' ],
        [ '/h2/i', [ 'x-api-key' => $unk, 'x-api-key' => $k{12} ], 401, 'st=malformed' ],  # two keys
        [ '/h2/j', [ 'x-api-key' => $k{12}, 'x-api-key' => $unk ], 401, 'st=malformed' ],  # two keys
        [ '/h2/k', [ 'x-api-key' => "bad\x01key" ],                401, 'st=malformed' ],
        [ '/h2/l', [ 'x-api-key' => "k\xc3\xa9y" . $k{12} ],       401, 'st=malformed' ],
        [ '/h2/m', [ 'x-api-key' => $rev ],                        401, 'st=revoked owner=gone' ],
        [ '/h2/n', [ 'x-api-key' => "$k{12}\0" ],                  'reset', '' ],
        [ '/h2/o', [ 'x-api-key' => "$k{12}\r" ],                  'reset', '' ],
        [ '/h2/p', [ 'X-API-Key' => $k{12} ],                      'reset', '' ],
        [ '/h2/q', [ 'x-api-key' => 'L' x 300 ],                   401, 'st=malformed' ],
    );
    # and 30 more streams, alternating keys cached, not cached and unknown
    for my $j (1 .. 30) {
        my $i = 1 + $j % 9;
        push @t, $j % 3 ? [ "/h2/s$j", [ 'x-api-key' => $k{$i} ], 200, "owner=[own$i]" ]
                        : [ "/h2/s$j", [ 'x-api-key' => random_key("h2u$j") ], 401, 'st=unknown' ];
    }
    my @res = h2_requests($h2, [ map { [ $_->[0], $_->[1] ] } @t ]);
    my $conn = pop @res;
    for my $j (0 .. $#t) {
        my $res = $res[$j];
        my $path = $t[$j][0] =~ s/\?.*//r;
        my $got = $res->{reset} ? 'reset' : $res->{status};
        my $body_ok = $t[$j][3] eq '' || index($res->{body}, $t[$j][3]) >= 0;
        $body_ok &&= index($res->{body}, "uri=[$path]") >= 0 if $t[$j][2] eq '200';
        # no key reaches the upstream (a second copy of the header included)
        $body_ok &&= !grep { index($res->{body}, $_) >= 0 } tracked_keys();
        ok($got eq $t[$j][2] && $body_ok,
           "HTTP/2 stream $path: $t[$j][2] $t[$j][3]")
            or diag "got: $got body: " . substr($res->{body}, 0, 200);
    }
    is($conn->{connection}, '', 'HTTP/2: all ' . scalar(@t) . ' streams answered on one connection');

    # a header field past large_client_header_buffers: nginx refuses it
    @res = h2_requests($h2, [ [ '/h2/big', [ 'x-api-key' => 'L' x 70000 ] ] ]);
    ok($res[0]{status} == 400 || $res[0]{reset} || $res[1]{connection},
       'HTTP/2: a 70 KB key field: nginx refuses it')
        or diag "status $res[0]{status}, body $res[0]{body}";
}

is_deeply([ $n->problems ], [], 'no alert, crit, emerg or crash');

done_testing;
