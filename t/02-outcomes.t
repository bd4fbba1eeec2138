# SPDX-License-Identifier: BSD-2-Clause
# Outcomes: ok, missing, malformed, unknown, expired, revoked, disabled,
# bad_record;
# the HTTP answer, WWW-Authenticate, the variables (add_header,
# proxy_set_header, log_format), api_key_realm, error_page to a named
# location.
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

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;

        location / {
            add_header X-Status $api_key_status always;
            add_header X-Id     $api_key_id always;
            add_header X-Owner  $api_key_owner always;
            add_header X-Plan   $api_key_plan always;
            add_header X-Scopes $api_key_scopes always;
            proxy_set_header X-Owner  $api_key_owner;
            proxy_set_header X-Plan   $api_key_plan;
            proxy_set_header X-Key-Id $api_key_id;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /realm/ {
            api_key_realm "my-realm";
            add_header X-Status $api_key_status always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /json/ {
            error_page 401 = @json;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location @json {
            default_type application/json;
            return 401 '{"error":"$api_key_status"}';
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;

my $now = time;
my %k = (
    ok       => random_key('ok'),
    noid     => random_key('noid'),
    unknown  => random_key('unknown'),
    expired  => random_key('expired'),
    future   => random_key('future'),
    zero     => random_key('zero'),
    revoked  => random_key('revoked'),
    disabled => random_key('disabled'),
    active   => random_key('active'),
    strtype  => random_key('strtype'),
    badexp   => random_key('badexp'),
    badstat  => random_key('badstat'),
    long256  => 'L' . random_base62(255),
    one      => 'Q',
);
add_key($r, $k{ok}, id => 'pub-id-1', owner => 'acme', plan => 'pro',
        scopes => 'read write');
my $noid_hash = add_key($r, $k{noid}, owner => 'bob');
add_key($r, $k{expired}, owner => 'e', expires_at => $now - 10);
add_key($r, $k{future}, owner => 'f', expires_at => $now + 3600);
add_key($r, $k{zero}, owner => 'z', expires_at => 0);
add_key($r, $k{revoked}, owner => 'r', status => 'revoked');
add_key($r, $k{disabled}, owner => 'd', status => 'disabled');
add_key($r, $k{active}, owner => 'a', status => 'active');
my $str_hash = add_key($r, $k{strtype}, -string => 'not a hash');
add_key($r, $k{badexp}, id => 'bad-exp-id', owner => 'x', expires_at => 'abc');
my $badstat_hash = add_key($r, $k{badstat}, owner => 'y', status => 'foo');
add_key($r, $k{long256}, owner => 'long');
add_key($r, $k{one}, owner => 'one');

sub get { http_get($port, $_[0], headers => $_[1] // {}) }
sub xkey { { 'X-API-Key' => $_[0] } }

my $INVALID = 'Bearer realm="api", error="invalid_token"';

# no outcome echoes the key
sub no_echo {
    my ($res, $key, $what) = @_;
    ok(index($res->raw, $key) < 0, "$what: the response does not contain the key");
}

# --- ok --------------------------------------------------------------------
{
    my $res = get('/v1/x', xkey($k{ok}));
    is($res->status, 200, 'ok: a known key passes (X-API-Key)') or diag $res->as_string;
    is($res->header('X-Status'), 'ok', 'ok: $api_key_status = ok');
    is($res->header('X-Id'), 'pub-id-1', 'ok: $api_key_id is the record id');
    is($res->header('X-Owner'), 'acme', 'ok: $api_key_owner');
    is($res->header('X-Plan'), 'pro', 'ok: $api_key_plan');
    is($res->header('X-Scopes'), 'read write', 'ok: $api_key_scopes');
    like($res->body, qr/^echo uri=\[\/v1\/x\]/, 'ok: the upstream answered');
    like($res->body, qr/owner=\[acme\] plan=\[pro\] id=\[pub-id-1\]/,
         'ok: proxy_set_header with the variables reaches the upstream');
    is($res->header('WWW-Authenticate'), undef, 'ok: no WWW-Authenticate');

    $res = get('/v1/y', { Authorization => "Bearer $k{ok}" });
    is($res->status, 200, 'ok: Authorization: Bearer');
    is($res->header('X-Owner'), 'acme', 'ok: bearer key identified');

    $res = get('/', xkey($k{noid}));
    is($res->status, 200, 'ok: key without an id field');
    is($res->header('X-Id'), substr($noid_hash, 0, 12),
       'ok: $api_key_id defaults to the first 12 hex digits of the hash');

    for my $which (qw(future zero active long256 one)) {
        $res = get('/', xkey($k{$which}));
        is($res->status, 200, "ok: $which key passes");
        is($res->header('X-Status'), 'ok', "ok: $which key status ok");
    }
}

# --- missing ---------------------------------------------------------------
{
    my $res = get('/');
    is($res->status, 401, 'missing: 401');
    is($res->header('WWW-Authenticate'), 'Bearer realm="api"',
       'missing: WWW-Authenticate: Bearer realm="api"');
    is($res->header('X-Status'), 'missing', 'missing: status');
    $res = get('/', { Authorization => 'Basic dXNlcjpwYXNz' });
    is($res->status, 401, 'missing: a Basic Authorization is not a key');
    is($res->header('X-Status'), 'missing', 'missing: status with Basic auth');
    $res = get('/', { 'X-API-Key' => '' });
    is($res->status, 401, 'missing or malformed: an empty header is no key');
}

# --- malformed (no Redis lookup) -----------------------------------------
{
    reset_stats($r);
    my @bad = ('M' . random_base62(256), "bad\x01char" . random_base62(8),
               "del\x7f" . random_base62(8));
    for my $i (0 .. $#bad) {
        my $res = get('/', xkey($bad[$i]));
        is($res->status, 401, "malformed #$i: 401");
        is($res->header('X-Status'), 'malformed', "malformed #$i: status");
        is($res->header('WWW-Authenticate'), $INVALID,
           "malformed #$i: WWW-Authenticate with error=\"invalid_token\"");
        no_echo($res, $bad[$i], "malformed #$i");
    }
    is(hgetall_calls($r), 0, 'malformed: no HGETALL sent to Redis');
}

# --- unknown -----------------------------------------------------------
{
    my $res = get('/', xkey($k{unknown}));
    is($res->status, 401, 'unknown: 401');
    is($res->header('X-Status'), 'unknown', 'unknown: status');
    is($res->header('WWW-Authenticate'), $INVALID, 'unknown: WWW-Authenticate');
    no_echo($res, $k{unknown}, 'unknown');
}

# --- expired, revoked ----------------------------------------------------
for my $c (['expired', 'expired', 401, $INVALID],
           ['revoked', 'revoked', 401, $INVALID],
           ['disabled', 'disabled', 403, undef]) {
    my ($which, $status, $code, $www) = @$c;
    my $res = get('/', xkey($k{$which}));
    is($res->status, $code, "$which: $code");
    is($res->header('X-Status'), $status, "$which: status $status");
    is($res->header('WWW-Authenticate'), $www, "$which: WWW-Authenticate");
    no_echo($res, $k{$which}, $which);
    unlike($res->body, qr/^echo/, "$which: the upstream was not called");
}

# --- bad_record --------------------------------------------------------
{
    my @cases = (
        ['strtype', substr($str_hash, 0, 12), 'record of the wrong Redis type'],
        ['badstat', substr($badstat_hash, 0, 12), 'status=foo'],
        ['badexp', 'bad-exp-id', 'expires_at=abc, with an id field'],
    );
    for my $c (@cases) {
        my ($which, $id, $what) = @$c;
        my $mark = $n->log_mark;
        my $res = get('/', xkey($k{$which}));
        is($res->status, 401, "bad_record ($what): 401");
        is($res->header('X-Status'), 'bad_record', "bad_record ($what): status");
        is($res->header('WWW-Authenticate'), $INVALID,
           "bad_record ($what): WWW-Authenticate");
        no_echo($res, $k{$which}, "bad_record ($what)");
        my $log = $n->error_log_since($mark);
        my @warn = grep { /\[warn\]/ && /api_key/ } split /\n/, $log;
        ok(scalar(grep { index($_, $id) >= 0 } @warn),
           "bad_record ($what): a warning names the key id $id")
            or diag "warnings: @warn";
        ok(!grep({ index($_, $k{$which}) >= 0 } @warn),
           "bad_record ($what): the warning does not contain the key");
    }
}

# --- api_key_realm -----------------------------------------------------
{
    my $res = get('/realm/');
    is($res->status, 401, 'realm: missing is 401');
    is($res->header('WWW-Authenticate'), 'Bearer realm="my-realm"',
       'realm: api_key_realm sets the realm');
    $res = get('/realm/', xkey($k{unknown}));
    is($res->header('WWW-Authenticate'),
       'Bearer realm="my-realm", error="invalid_token"',
       'realm: ... also with error="invalid_token"');
    $res = get('/realm/', xkey($k{ok}));
    is($res->status, 200, 'realm: a known key passes');
}

# --- error_page to a named location ----------------------------------
{
    my $res = get('/json/', xkey($k{unknown}));
    is($res->status, 401, 'error_page: status 401');
    is($res->body, '{"error":"unknown"}',
       'error_page: the named location renders $api_key_status (not re-checked)');
    like($res->header('Content-Type') // '', qr{^application/json},
         'error_page: the named location\'s content type');
    $res = get('/json/');
    is($res->status, 401, 'error_page: missing, 401');
    is($res->body, '{"error":"missing"}', 'error_page: missing body');
    $res = get('/json/', xkey($k{revoked}));
    is($res->body, '{"error":"revoked"}', 'error_page: revoked body');
    $res = get('/json/', xkey($k{ok}));
    is($res->status, 200, 'error_page: a known key still passes');
    like($res->body, qr/^echo/, 'error_page: ... to the upstream');
}

# --- keep-alive: every request is checked on its own --------------------
{
    my $c = ApiKeyTest::HTTPConn->new($port);
    my @seq = (
        [ $k{ok},      200, 'ok',      'acme' ],
        [ undef,       401, 'missing', undef ],
        [ $k{noid},    200, 'ok',      'bob' ],
        [ $k{unknown}, 401, 'unknown', undef ],
        [ $k{ok},      200, 'ok',      'acme' ],
        [ $k{revoked}, 401, 'revoked', undef ],
        [ $k{noid},    200, 'ok',      'bob' ],
    );
    my $i = 0;
    for my $s (@seq) {
        my ($key, $code, $status, $owner) = @$s;
        $i++;
        my $res = $c->get("/ka$i", headers => $key ? xkey($key) : {});
        is($res->status, $code, "keep-alive request $i: $code");
        is($res->header('X-Status'), $status, "keep-alive request $i: $status");
        is($res->header('X-Owner'), $owner, "keep-alive request $i: owner " . ($owner // 'none'))
            if defined $owner;
    }
    is($c->connects, 1, 'keep-alive: all on one connection');
    $c->close;
}

# --- the access log (log_format with the variables) -------------------
{
    # the harness's log_format "ak": ... st=$api_key_status id=$api_key_id
    # owner=$api_key_owner plan=$api_key_plan
    my $log = $n->access_log;
    like($log, qr{"GET /v1/x HTTP/1\.1" 200 .*st=ok id=pub-id-1 owner=acme plan=pro},
         'access log: status, id, owner, plan of an accepted key');
    like($log, qr{ 401 .*st=unknown }, 'access log: unknown');
    like($log, qr{ 401 .*st=missing }, 'access log: missing');
    like($log, qr{ 401 .*st=malformed }, 'access log: malformed');
    like($log, qr{ 401 .*st=bad_record }, "access log: bad_record");
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
