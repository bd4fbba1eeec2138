# SPDX-License-Identifier: BSD-2-Clause
# The module among nginx's own access and limiting modules, as operators
# combine them (issue 15, item 6):
#  - satisfy any with allow/deny, and with auth_basic (an htpasswd file made
#    with openssl passwd): either one lets the request through; satisfy all
#    needs both; 429/503 of the module stay final under satisfy any;
#  - auth_request beside api_key in the same location: both must agree;
#  - limit_req_zone $api_key_id: empty in the location that checks the key
#    (limit_req runs in the preaccess phase, before the access phase), so
#    nothing is limited there; a named location reached by try_files after
#    the check has the id, and limits per key;
#  - error_page 401 403 429 = @named: the named location sees the outcome;
#  - HTTP/2 (listen ... http2, curl --http2-prior-knowledge): every source,
#    stripping and the variables as over HTTP/1.1;
#  - gRPC: grpc_pass to a real gRPC server (python3-grpcio), the key as
#    x-api-key metadata, from the grpcio client and from curl with gRPC
#    framing; denials map to gRPC status codes.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use MIME::Base64 ();
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

my $have_h2   = `curl --version 2>/dev/null` =~ /HTTP2/;
# Debian's python3 (python3-grpcio), not another one first in PATH
my $PY = '/usr/bin/python3';
my $have_grpc = system("$PY -c 'import grpc' 2>/dev/null") == 0;
my $have_ossl = `openssl version 2>/dev/null` =~ /OpenSSL/;

my $r = ApiKeyTest::Redis->start;

# the gRPC upstream
my ($grpc_pid, $grpc_port, $grpc_in, $grpc_out);
if ($have_grpc) {
    $grpc_port = free_port();
    pipe(my $rd, $grpc_in) or die "pipe: $!";
    my $pid = open($grpc_out, '-|');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        # the server stops when this pipe closes (the test ends) or on TERM
        open STDIN, '<&', $rd or POSIX::_exit(127);
        { exec $PY, 't/lib/grpc_echo.py', 'server', $grpc_port };
        POSIX::_exit(127);
    }
    close $rd;
    my $line = '';
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 20;
        $line = <$grpc_out> // '';
        alarm 0;
    };
    $grpc_pid = $pid if $line =~ /^ready/;
    diag "the gRPC server did not start: $line" unless $grpc_pid;
}
END { close $grpc_in if $grpc_in; kill 'TERM', $grpc_pid if $grpc_pid }

my $dir = tmpdir();
my $htpasswd = "$dir/htpasswd";
if ($have_ossl) {
    my $hash = `openssl passwd -apr1 s3cret`;
    chomp $hash;
    spew($htpasswd, "alice:$hash\n", 0644);
}

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    limit_req_zone $api_key_id zone=perkey:1m rate=1r/m;
    limit_req_status 429;

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT_H2%% http2;
        root %%DIR%%/html;
        api_key_source header:X-API-Key bearer query:api_key cookie:ak;
        add_header X-Status $api_key_status always;
        add_header X-Id $api_key_id always;
        add_header X-Owner $api_key_owner always;

        # --- satisfy any / all ------------------------------------------
        location /any-allow/ {
            api_key keys;
            satisfy any;
            allow 127.0.0.1;
            deny all;
            try_files /ok.txt =404;
        }
        location /any-deny/ {
            api_key keys;
            satisfy any;
            deny all;
            try_files /ok.txt =404;
        }
        location /all-allow/ {
            api_key keys;
            allow 127.0.0.1;
            deny all;
            try_files /ok.txt =404;
        }
        location /any-basic/ {
            api_key keys;
            satisfy any;
            auth_basic "basic";
            auth_basic_user_file %%HTPASSWD%%;
            try_files /ok.txt =404;
        }
        location /all-basic/ {
            api_key keys;
            api_key_source header:X-API-Key;
            auth_basic "basic";
            auth_basic_user_file %%HTPASSWD%%;
            try_files /ok.txt =404;
        }

        # --- auth_request beside api_key ---------------------------------
        location /ar/ {
            api_key keys;
            auth_request /authcheck;
            try_files /ok.txt =404;
        }
        location = /authcheck {
            internal;
            if ($http_x_deny) {
                return 403;
            }
            return 204;
        }

        # --- limit_req_zone $api_key_id ------------------------------------
        # in the location that checks the key: the id is empty in the
        # preaccess phase, limit_req does not account empty keys
        location /lr-same/ {
            api_key keys;
            limit_req zone=perkey;
            try_files /ok.txt =404;
        }
        # checked here, limited in @perkey (reached after the access phase)
        location /lr/ {
            api_key keys;
            try_files /.nonexistent @perkey;
        }
        location @perkey {
            limit_req zone=perkey;
            add_header X-Where perkey always;
            add_header X-Status $api_key_status always;
            add_header X-Id $api_key_id always;
            proxy_set_header X-Key-Id $api_key_id;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # --- error_page to a named location --------------------------------
        location /ep/ {
            api_key keys;
            error_page 401 403 429 = @denied;
            try_files /ok.txt =404;
        }
        location @denied {
            default_type application/json;
            return 401 '{"error":"$api_key_status","id":"$api_key_id"}\n';
        }

        # --- proxied: what the upstream sees (HTTP/1.1 and HTTP/2) ---------
        location /up/ {
            api_key keys;
            proxy_set_header X-Key-Id $api_key_id;
            proxy_set_header X-Owner $api_key_owner;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # --- gRPC -----------------------------------------------------------
        location /ak.Echo/ {
            api_key keys;
            api_key_source header:X-API-Key;
            grpc_set_header X-Key-Id $api_key_id;
            grpc_set_header X-Owner $api_key_owner;
            grpc_pass grpc://127.0.0.1:%%GRPC%%;
        }
    }

    # gRPC with gRPC-style denials: HTTP 200, grpc-status and grpc-message
    server {
        listen 127.0.0.1:%%PORT_G2%% http2;
        location /ak.Echo/ {
            api_key keys;
            error_page 401 = @grpc_unauthenticated;
            error_page 403 = @grpc_permission_denied;
            error_page 429 = @grpc_resource_exhausted;
            error_page 503 = @grpc_unavailable;
            grpc_set_header X-Key-Id $api_key_id;
            grpc_pass grpc://127.0.0.1:%%GRPC%%;
        }
        location @grpc_unauthenticated {
            default_type application/grpc;
            add_header grpc-status 16 always;
            add_header grpc-message $api_key_status always;
            return 204;
        }
        location @grpc_permission_denied {
            default_type application/grpc;
            add_header grpc-status 7 always;
            add_header grpc-message $api_key_status always;
            return 204;
        }
        location @grpc_resource_exhausted {
            default_type application/grpc;
            add_header grpc-status 8 always;
            add_header grpc-message $api_key_status always;
            return 204;
        }
        location @grpc_unavailable {
            default_type application/grpc;
            add_header grpc-status 14 always;
            add_header grpc-message $api_key_status always;
            return 204;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
    vars => { REDIS => $r->port, HTPASSWD => $htpasswd, GRPC => $grpc_port // 9 });
static_site($n);
# nginx's own debug lines of HTTP/2 print the request's headers as they came
$n->expect_key_leak(qr/\[debug\] \d+#\d+: \*\d+ (?:http2 header|http2 request line|http2 table (?:add|size)): /);
my $port = $n->port;
my $h2 = $n->port('h2');

my $k   = random_key('conv');
my $kb  = random_key('convb');
my $rev = random_key('convrev');
my $lim = random_key('convlim');
add_key($r, $k, owner => 'acme', id => 'conv-a');
add_key($r, $kb, owner => 'bravo', id => 'conv-b');
add_key($r, $rev, owner => 'gone', status => 'revoked');
add_key($r, $lim, owner => 'lim', rate => '1/m', burst => 0);

sub get { my ($path, %h) = @_; http_get($port, $path, headers => \%h) }
sub st  { my ($res) = @_; $res->status . ' ' . ($res->header('X-Status') // '') }
my $basic = 'Basic ' . MIME::Base64::encode_base64('alice:s3cret', '');
my $wrong = 'Basic ' . MIME::Base64::encode_base64('alice:nope', '');

# --- satisfy any with allow/deny -----------------------------------------------
{
    is(st(get('/any-allow/x', 'X-API-Key' => $k)), '200 ok',
       'satisfy any, allowed address, valid key: 200 ok');
    is(get('/any-allow/x')->status, 200,
       'satisfy any, allowed address, no key: 200 (allow lets it through)');
    is(get('/any-allow/x', 'X-API-Key' => $rev)->status, 200,
       'satisfy any, allowed address, revoked key: 200 (allow lets it through)');
    my $l1 = get('/any-allow/x', 'X-API-Key' => $lim);
    my $l2 = get('/any-allow/x', 'X-API-Key' => $lim);
    is(st($l1), '200 ok', 'satisfy any, rate 1/m: the first request passes');
    is(st($l2), '429 rate_limited',
       'satisfy any, over the key\'s rate: 429 is final (nginx lets only 401/403 fall through)');
    ok(defined $l2->header('Retry-After'), '... with Retry-After');

    is(st(get('/any-deny/x', 'X-API-Key' => $k)), '200 ok',
       'satisfy any, denied address, valid key: 200 ok');
    my $res = get('/any-deny/x');
    is($res->status, 401, 'satisfy any, denied address, no key: 401 (the key\'s answer)');
    like($res->header('WWW-Authenticate') // '', qr/^Bearer realm=/, '... with WWW-Authenticate: Bearer');
    is(get('/any-deny/x', 'X-API-Key' => $rev)->status, 401,
       'satisfy any, denied address, revoked key: 401');

    is(st(get('/all-allow/x', 'X-API-Key' => $k)), '200 ok',
       'satisfy all, allowed address, valid key: 200');
    is(get('/all-allow/x')->status, 401, 'satisfy all, allowed address, no key: 401');
}

# --- satisfy any / all with auth_basic ------------------------------------------
SKIP: {
    skip 'openssl is needed for the htpasswd file', 9 unless $have_ossl;
    is(st(get('/any-basic/x', 'X-API-Key' => $k)), '200 ok',
       'satisfy any + auth_basic: a valid key alone: 200');
    is(get('/any-basic/x', Authorization => $basic)->status, 200,
       'satisfy any + auth_basic: valid basic credentials alone: 200');
    my $res = get('/any-basic/x');
    is($res->status, 401, 'satisfy any + auth_basic: neither: 401');
    my @wa = $res->headers('WWW-Authenticate');
    ok((grep { /^Basic realm="basic"/ } @wa) && (grep { /^Bearer realm=/ } @wa),
       '... WWW-Authenticate names both schemes (Basic and Bearer)')
        or diag explain \@wa;
    is(get('/any-basic/x', Authorization => $wrong)->status, 401,
       'satisfy any + auth_basic: wrong password, no key: 401');
    is(get('/any-basic/x', Authorization => $wrong, 'X-API-Key' => $k)->status, 200,
       'satisfy any + auth_basic: wrong password, valid key: 200');

    is(get('/all-basic/x', Authorization => $basic, 'X-API-Key' => $k)->status, 200,
       'satisfy all + auth_basic: credentials and a key: 200');
    is(get('/all-basic/x', Authorization => $basic)->status, 401,
       'satisfy all + auth_basic: credentials, no key: 401');
    is(get('/all-basic/x', 'X-API-Key' => $k)->status, 401,
       'satisfy all + auth_basic: a key, no credentials: 401');
}

# --- auth_request beside api_key ----------------------------------------------------
{
    is(st(get('/ar/x', 'X-API-Key' => $k)), '200 ok', 'auth_request + api_key: both agree: 200');
    is(get('/ar/x', 'X-API-Key' => $k, 'X-Deny' => 1)->status, 403,
       'auth_request denies, the key is valid: 403');
    is(get('/ar/x')->status, 401, 'auth_request allows, no key: 401');
    is(get('/ar/x', 'X-API-Key' => $rev)->status, 401, 'auth_request allows, revoked key: 401');
}

# --- limit_req_zone $api_key_id ---------------------------------------------------------
{
    my @same = map { get('/lr-same/x', 'X-API-Key' => $k) } 1 .. 3;
    is(join(' ', map { $_->status } @same), '200 200 200',
       'limit_req in the location that checks the key: nothing limited ($api_key_id is empty in preaccess)');

    my @a = map { get('/lr/x', 'X-API-Key' => $k) } 1 .. 3;
    is(join(' ', map { $_->status } @a), '200 429 429',
       'limit_req in @perkey after the check (1r/m per key): key A 200 429 429');
    is($a[0]->header('X-Where'), 'perkey', '... served by @perkey');
    like($a[0]->body, qr/id=\[conv-a\]/, '... whose upstream gets the key id');
    like($a[0]->body, qr/xkey=\[\]/, '... and not the key (stripped)');
    is($a[1]->header('X-Id'), 'conv-a', '... the 429 is limit_req\'s, the id is known');
    is(get('/lr/x', 'X-API-Key' => $kb)->status, 200, 'key B has its own bucket: 200');
    is(get('/lr/x')->status, 401, 'no key: 401 before @perkey');
}

# --- error_page to a named location -------------------------------------------------------
{
    my $res = get('/ep/x', 'X-API-Key' => $rev);
    is($res->status, 401, 'error_page = @denied: 401');
    like($res->body, qr/^\{"error":"revoked","id":"[0-9a-f]{12}"\}$/,
         '... @denied reads $api_key_status and $api_key_id');
    $res = get('/ep/x');
    like($res->body, qr/"error":"missing"/, 'no key: @denied says missing');
    is(st(get('/ep/x', 'X-API-Key' => $k)), '200 ok', 'a valid key: 200, no error page');
    unlike($res->body, qr/\Q$rev\E|\Q$k\E/, 'no key in the error body');
}

# --- HTTP/1.1 and HTTP/2 alike ---------------------------------------------------------------
sub curl_get {
    my ($proto, $path, @args) = @_;
    my $p = $proto eq 'h2' ? $h2 : $port;
    my @opt = $proto eq 'h2' ? ('--http2-prior-knowledge') : ('--http1.1');
    my $cmd = join ' ', 'curl -s -m 10 -D -', @opt, @args, "'http://127.0.0.1:$p$path'";
    my $out = `$cmd`;
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    my ($status) = ($head // '') =~ m{^HTTP/\S+ (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } split /\r\n/, $head // '';
    return { status => $status // 0, h => \%h, body => $body // '', raw => $out };
}

SKIP: {
    skip 'curl with HTTP/2 is needed', 6 * 5 + 3 unless $have_h2;
    my %src = (
        header => [ "-H 'X-API-Key: $k'" ],
        bearer => [ "-H 'Authorization: Bearer $k'" ],
        query  => [ ], # in the path
        cookie => [ "-H 'Cookie: a=1; ak=$k; b=2'" ],
    );
    for my $s (sort keys %src) {
        my $path = $s eq 'query' ? "/up/p?a=1&api_key=$k&b=2" : '/up/p';
        my %got;
        for my $proto (qw(h1 h2)) {
            my $res = curl_get($proto, $path, @{ $src{$s} });
            $got{$proto} = $res;
            is($res->{status}, 200, "$s over $proto: 200") or diag $res->{raw};
        }
        my ($a, $b) = @got{qw(h1 h2)};
        is($b->{h}{'x-status'}, 'ok', "$s over h2: \$api_key_status ok");
        is_deeply([ @{ $b->{h} }{qw(x-id x-owner)} ], [ 'conv-a', 'acme' ],
                  "$s over h2: \$api_key_id and \$api_key_owner as over HTTP/1.1")
            or diag explain [ $a->{h}, $b->{h} ];
        is($b->{body}, $a->{body}, "$s: the upstream sees the same request over h2 and HTTP/1.1");
        unlike($b->{body}, qr/\Q$k\E/, "$s over h2: the key is stripped");
    }
    my $res = curl_get('h2', '/up/p', "-H 'X-API-Key: $rev'");
    is($res->{status}, 401, 'h2: revoked key: 401');
    is($res->{h}{'x-status'}, 'revoked', 'h2: $api_key_status revoked');
    $res = curl_get('h2', '/up/p');
    like($res->{h}{'www-authenticate'} // '', qr/^Bearer realm=/, 'h2: missing: WWW-Authenticate');
}

# --- gRPC ---------------------------------------------------------------------------------------
sub grpc_call {
    my ($key, $body, $hdr, $p) = @_;
    $p //= $h2;
    local $ENV{AK_GRPC_KEY} = $key if defined $key;
    delete local $ENV{AK_GRPC_KEY} unless defined $key;
    my $out = `$PY t/lib/grpc_echo.py call $p '$body' ${\ ($hdr // 'x-api-key')} 2>/dev/null`;
    chomp $out;
    return $out;
}

SKIP: {
    skip 'python3-grpcio is needed for the gRPC server', 15 unless $have_grpc && $grpc_pid;
    is(grpc_call($k, 'hi'), 'OK key=no id=conv-a owner=acme body=hi',
       'gRPC client, x-api-key metadata: OK; the upstream gets the id and owner, not the key');
    is(grpc_call(undef, 'hi'), 'ERR UNAUTHENTICATED Received http2 header with status: 401',
       'gRPC client without a key: UNAUTHENTICATED (HTTP 401)');
    is(grpc_call($rev, 'hi'), 'ERR UNAUTHENTICATED Received http2 header with status: 401',
       'gRPC client with a revoked key: UNAUTHENTICATED');
    my $lim2 = random_key('convgl');
    add_key($r, $lim2, owner => 'glim', rate => '1/m', burst => 0);
    like(grpc_call($lim2, 'a'), qr/^OK key=no /, 'gRPC, rate 1/m: the first call passes');
    is(grpc_call($lim2, 'b'), 'ERR UNAVAILABLE Received http2 header with status: 429',
       'gRPC, rate 1/m: the second call is UNAVAILABLE (HTTP 429)');

    # the gRPC-style denials of the second server
    my $g2 = $n->port('g2');
    is(grpc_call($k, 'hi', undef, $g2), 'OK key=no id=conv-a owner= body=hi',
       'gRPC-style denials: a valid key: OK');
    is(grpc_call(undef, 'hi', undef, $g2), 'ERR UNAUTHENTICATED missing',
       'gRPC-style denials: no key: UNAUTHENTICATED, grpc-message missing');
    is(grpc_call($rev, 'hi', undef, $g2), 'ERR UNAUTHENTICATED revoked',
       'gRPC-style denials: revoked: UNAUTHENTICATED, grpc-message revoked');
    is(grpc_call($lim2, 'c', undef, $g2), 'ERR RESOURCE_EXHAUSTED rate_limited',
       'gRPC-style denials: over the rate: RESOURCE_EXHAUSTED rate_limited');

    SKIP: {
        skip 'curl with HTTP/2 is needed', 6 unless $have_h2;
        # one gRPC message: compressed flag 0, length 2, "hi"
        my $msg = "$dir/msg.bin";
        spew($msg, "\0\0\0\0\2hi");
        my $curl = "curl -s -m 10 --http2-prior-knowledge -D - -o $dir/out.bin"
                 . " -H 'content-type: application/grpc' -H 'te: trailers'"
                 . " --data-binary \@$msg";
        my $out = `$curl -H 'x-api-key: $k' 'http://127.0.0.1:$h2/ak.Echo/Echo'`;
        like($out, qr{^HTTP/2 200}, 'curl, gRPC framing, x-api-key: 200') or diag $out;
        like($out, qr/^grpc-status: 0\r?$/m, '... grpc-status 0 (trailer)');
        my $resp = slurp("$dir/out.bin");
        is(substr($resp, 5), 'key=no id=conv-a owner=acme body=hi',
           '... the answer in one gRPC message: no key upstream, the id and owner');
        # nginx answers, then resets the stream whose body it did not read
        # (RST_STREAM NO_ERROR, as HTTP/2 allows); curl sometimes drops the
        # whole answer when the reset comes while it still sends the body.
        # What nginx answered is then read from its access log.
        my $mark = length $n->access_log;
        $out = `$curl 'http://127.0.0.1:$h2/ak.Echo/Echo'`;
        if ($out !~ m{^HTTP/2 }) {
            note 'curl gave no answer (the stream reset race): the access log says';
            ok(wait_until(sub { substr($n->access_log, $mark) =~ m{"POST /ak\.Echo/Echo HTTP/2\.0" \d+} },
                          timeout => 5), '... (curl dropped it: the access log has the request)');
            ($out) = substr($n->access_log, $mark) =~ m{"POST /ak\.Echo/Echo HTTP/2\.0" (\d+ .*)};
            $out = "HTTP/2 $out\nx-status: " . (($out // '') =~ /st=(\S+)/ ? $1 : '') . "\n";
        } else {
            pass('... curl had the answer');
        }
        like($out, qr{^HTTP/2 401}, 'curl, gRPC framing, no key: 401');
        like($out, qr/^x-status: missing\r?$/m, '... missing');
    }
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;
done_testing;
