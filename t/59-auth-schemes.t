# SPDX-License-Identifier: BSD-2-Clause
# Key sources of issue 15, item 4: authorization:SCHEME (any case of the
# scheme, any number of spaces before the key), basic (the key as the user
# name, as "curl -u KEY:" sends it) and basic:password; the Authorization
# header stripped before the upstream; two different keys in the
# configured sources answered malformed (the same key twice is fine);
# WWW-Authenticate naming the configured schemes; nginx -t errors for bad
# source specs.
use strict;
use warnings;
use Test::More;
use MIME::Base64 qw(encode_base64);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    api_key keys;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        proxy_set_header X-Owner $api_key_owner;

        location /apikey/ {
            api_key_source authorization:ApiKey;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /token/ {
            api_key_source authorization:token authorization:Key;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /basic/ {
            api_key_source basic;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /basicpw/ {
            api_key_source basic:password;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /mix/ {
            api_key_realm "mixed";
            api_key_source header:X-API-Key bearer authorization:ApiKey basic;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /hdr/ {
            api_key_source header:X-API-Key query:k;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /nostrip/ {
            api_key_strip off;
            api_key_source authorization:ApiKey basic;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
# api_key_strip off sends the key upstream on purpose (nginx's own debug
# lines may print it)
$n->expect_key_leak(CORE_REQUEST_DEBUG);
my $port = $n->port;

my $kA = random_key('A');
my $kB = random_key('B');
my $kU = random_key('U');
add_key($r, $kA, owner => 'alice');
add_key($r, $kB, owner => 'bob');

sub get { my ($path, @h) = @_; http_get($port, $path, headers => [@h]) }
sub b64 { encode_base64($_[0], '') }
sub check {
    my ($res, $code, $status, $name) = @_;
    is($res->status, $code, "$name: $code") or diag $res->as_string;
    is($res->header('X-Status') // '', $status, "$name: $status");
}

# --- authorization:SCHEME --------------------------------------------------
{
    my $res = get('/apikey/', Authorization => "ApiKey $kA");
    check($res, 200, 'ok', 'ApiKey');
    like($res->body, qr/auth=\[\] .*owner=\[alice\]/, 'ApiKey: Authorization stripped upstream');
    unlike($res->body, qr/\Q$kA\E/, 'ApiKey: the key does not reach the upstream');

    check(get('/apikey/', Authorization => "apikey $kA"), 200, 'ok', 'apikey (lower case)');
    check(get('/apikey/', Authorization => "APIKEY    $kA   "), 200, 'ok',
          'APIKEY with several spaces before and after the key');
    check(get('/apikey/', Authorization => "Bearer $kA"), 401, 'missing',
          'Bearer where only ApiKey is configured');
    check(get('/apikey/', Authorization => "ApiKeys $kA"), 401, 'missing',
          'a longer scheme name does not match');
    check(get('/apikey/', Authorization => "ApiKey"), 401, 'missing',
          'the scheme alone');
    check(get('/apikey/', Authorization => "ApiKey  "), 401, 'missing',
          'the scheme and spaces (nginx trims them: the scheme alone)');
    check(get('/apikey/', Authorization => "ApiKey $kU"), 401, 'unknown', 'ApiKey, unknown key');
    check(get('/apikey/', Authorization => "ApiKey $kA x"), 401, 'malformed',
          'ApiKey with two words');

    check(get('/token/', Authorization => "Token $kB"), 200, 'ok', 'Token');
    check(get('/token/', Authorization => "TOKEN $kB"), 200, 'ok', 'TOKEN');
    check(get('/token/', Authorization => "key $kB"), 200, 'ok', 'key');
    check(get('/token/', Authorization => "Bearer $kB"), 401, 'missing', 'Bearer not configured');
}

# --- basic, basic:password -------------------------------------------------
{
    # curl -u KEY: sends "Basic base64(KEY:)"
    my $res = get('/basic/', Authorization => 'Basic ' . b64("$kA:"));
    check($res, 200, 'ok', 'basic, curl -u KEY:');
    like($res->body, qr/auth=\[\] .*owner=\[alice\]/, 'basic: Authorization stripped upstream');

    check(get('/basic/', Authorization => 'basic ' . b64("$kA:ignored")), 200, 'ok',
          'basic: the password is ignored, the scheme in any case');
    check(get('/basic/', Authorization => 'BASIC   ' . b64("$kA:")), 200, 'ok',
          'basic: several spaces');
    check(get('/basic/', Authorization => 'Basic ' . b64(":$kA")), 401, 'malformed',
          'basic: empty user name');
    check(get('/basic/', Authorization => 'Basic ' . b64($kA)), 401, 'malformed',
          'basic: a credential without ":"');
    my $cred = "$kA:";
    $cred .= 'x' while length($cred) % 3 == 0;    # so that base64 pads it
    my $bad = b64($cred);
    like($bad, qr/=$/, 'the credential is padded');
    $bad =~ s/=*$//;
    check(get('/basic/', Authorization => "Basic $bad"), 401, 'malformed',
          'basic: base64 without its padding');
    check(get('/basic/', Authorization => 'Basic ' . b64("$kA:") . '!'), 401, 'malformed',
          'basic: a byte outside base64');
    check(get('/basic/', Authorization => 'Basic %%%%'), 401, 'malformed',
          'basic: not base64 at all');
    check(get('/basic/', Authorization => 'Basic'), 401, 'missing',
          'basic: the scheme alone');
    check(get('/basic/', Authorization => "Bearer $kA"), 401, 'missing',
          'basic: a Bearer value is not looked at');
    check(get('/basic/', Authorization => 'Basic ' . b64("$kU:")), 401, 'unknown',
          'basic: unknown key');

    $res = get('/basicpw/', Authorization => 'Basic ' . b64("user:$kB"));
    check($res, 200, 'ok', 'basic:password');
    like($res->body, qr/auth=\[\] .*owner=\[bob\]/, 'basic:password: stripped upstream');
    check(get('/basicpw/', Authorization => 'Basic ' . b64(":$kB")), 200, 'ok',
          'basic:password, empty user name');
    check(get('/basicpw/', Authorization => 'Basic ' . b64("$kB:")), 401, 'malformed',
          'basic:password: empty password');
}

# --- two keys --------------------------------------------------------------
{
    check(get('/mix/', 'X-API-Key' => $kA, Authorization => "ApiKey $kA"), 200, 'ok',
          'the same key in two sources');
    check(get('/mix/', 'X-API-Key' => $kA, Authorization => 'Basic ' . b64("$kA:")), 200, 'ok',
          'the same key in a header and Basic');
    my $res = get('/mix/', 'X-API-Key' => $kA, Authorization => "ApiKey $kB");
    check($res, 401, 'malformed', 'two different keys (header, ApiKey)');
    unlike($res->body, qr/\Q$kA\E|\Q$kB\E/, 'two keys: neither is echoed');
    check(get('/mix/', 'X-API-Key' => $kA, Authorization => "Bearer $kB"), 401, 'malformed',
          'two different keys (header, Bearer)');
    check(get('/mix/', 'X-API-Key' => $kA, Authorization => 'Basic ' . b64("$kB:")), 401,
          'malformed', 'two different keys (header, Basic)');
    check(get('/mix/', 'X-API-Key' => $kA, 'X-API-Key' => $kA), 200, 'ok',
          'the same key in two X-API-Key headers');
    check(get('/mix/', 'X-API-Key' => $kA, 'X-API-Key' => $kB), 401, 'malformed',
          'two X-API-Key headers with different keys');
    check(get('/hdr/?k=' . $kB, 'X-API-Key' => $kA), 401, 'malformed',
          'two different keys (header, query)');
    $res = get('/hdr/?k=' . $kA . '&x=1', 'X-API-Key' => $kA);
    check($res, 200, 'ok', 'the same key in a header and a query argument');
    like($res->body, qr/xkey=\[\] .*args=\[x=1\]/, '... both stripped');
    check(get('/mix/', 'X-API-Key' => $kU, Authorization => "ApiKey $kA"), 401, 'malformed',
          'an unknown and a known key: malformed, not resolved by order');
}

# --- api_key_strip off keeps the header ------------------------------------
{
    my $res = get('/nostrip/', Authorization => "ApiKey $kA");
    check($res, 200, 'ok', 'strip off');
    like($res->body, qr/auth=\[ApiKey \Q$kA\E\]/, 'strip off: Authorization reaches the upstream');
}

# --- WWW-Authenticate ------------------------------------------------------
{
    my $res = get('/apikey/');
    is_deeply([ $res->headers('WWW-Authenticate') ], [ 'ApiKey realm="api"' ],
              'WWW-Authenticate: only the configured scheme (ApiKey)');
    $res = get('/token/', Authorization => "Token $kU");
    is_deeply([ $res->headers('WWW-Authenticate') ],
              [ 'token realm="api"', 'Key realm="api"' ],
              'WWW-Authenticate: the schemes as configured, in order');
    $res = get('/basic/');
    is_deeply([ $res->headers('WWW-Authenticate') ], [ 'Basic realm="api"' ],
              'WWW-Authenticate: Basic');
    $res = get('/mix/');
    is_deeply([ $res->headers('WWW-Authenticate') ],
              [ 'Bearer realm="mixed"', 'ApiKey realm="mixed"', 'Basic realm="mixed"' ],
              'WWW-Authenticate: Bearer (as before), ApiKey and Basic');
    $res = get('/mix/', 'X-API-Key' => $kU);
    is_deeply([ $res->headers('WWW-Authenticate') ],
              [ 'Bearer realm="mixed", error="invalid_token"', 'ApiKey realm="mixed"',
                'Basic realm="mixed"' ],
              'WWW-Authenticate: a rejected key');
    $res = get('/hdr/');
    is_deeply([ $res->headers('WWW-Authenticate') ], [ 'Bearer realm="api"' ],
              'WWW-Authenticate: no Authorization source: Bearer as before');
}

# --- nginx -t ----------------------------------------------------------------
for my $b (['authorization:', qr/has no scheme/],
           ['authorization:Api"Key', qr/invalid character in the scheme/],
           ['authorization:Basic', qr/use "basic" or "basic:password"/],
           ['basic:bogus', qr/expected basic, basic:user or basic:password/],
           ['basic:', qr/expected basic, basic:user or basic:password/],
           ['bearer:x', qr/invalid key source/]) {
    my ($spec, $re) = @$b;
    config_refused(<<"EOT", $re, "nginx -t refuses api_key_source $spec");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379;
    server {
        listen 127.0.0.1:1;
        location / {
            api_key keys;
            api_key_source '$spec';    # BAD
        }
    }
EOT
}

{
    my $c = ApiKeyTest::Nginx->check_config(http => <<'EOT');
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379;
    server {
        listen 127.0.0.1:1;
        location / {
            api_key keys;
            api_key_source authorization:X-Api.Key_1 basic:user basic:password bearer;
        }
    }
EOT
    ok($c->{ok}, 'nginx -t accepts token characters in a scheme, basic:user') or diag $c->{output};
}

done_testing;
