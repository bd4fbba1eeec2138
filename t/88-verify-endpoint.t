# SPDX-License-Identifier: BSD-2-Clause
# api_key_verify ZONE [consume=on]: POST {"key": "..."} (or a key in the
# location's sources) answers application/json with valid, status, id,
# owner, plan, scopes, expires_at and the remaining rate/quota; the same
# cache and Redis reads as api_key; the limits are consumed only with
# consume=on; the key is never echoed (nor logged); a body over 4096 bytes
# is 413 (also chunked), bad JSON or a "key" that is not a string 400;
# other methods 405; Redis down and the key not cached: 503; allow/deny
# protect it; bad configuration is an nginx -t error.
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use IO::Select;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;
my $http = <<'EOT';
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=300ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /verify {
            api_key_verify keys;
        }
        location = /verify-consume {
            api_key_verify keys consume=on;
        }
        location = /verify-closed {
            deny all;
            api_key_verify keys;
        }
        location / { api_key keys; empty_gif; }
    }
EOT
my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;
my $now = time;

my %k = map { $_ => random_key($_) } qw(ok rev dis exp rate ipk unknown);
add_key($r, $k{ok}, id => 'v-ok', owner => 'ac"me', plan => 'pro',
        scopes => 'read write', expires_at => $now + 3600, quota => '10/day');
add_key($r, $k{rev}, id => 'v-rev', status => 'revoked');
add_key($r, $k{dis}, id => 'v-dis', status => 'disabled');
add_key($r, $k{exp}, id => 'v-exp', expires_at => $now - 5);
add_key($r, $k{rate}, id => 'v-rate', rate => '2/m', burst => 1);
add_key($r, $k{ipk}, id => 'v-ip', ips => '10.0.0.0/8');

sub post {
    my ($path, $body, %h) = @_;
    return http_request($port, $path, method => 'POST', body => $body,
                        headers => { 'Content-Type' => 'application/json', %h });
}
sub verify {
    my ($key, $path) = @_;
    my $res = post($path // '/verify', JSON::PP::encode_json({ key => $key }));
    ok(index($res->raw, $key) < 0, 'the answer does not hold the key');
    return ($res, $res->status == 200 || $res->status == 503
                  ? JSON::PP::decode_json($res->body) : undef);
}

# --- a valid key ----------------------------------------------------------------
{
    my ($res, $j) = verify($k{ok});
    is($res->status, 200, 'valid: 200');
    like($res->header('Content-Type'), qr{^application/json}, 'application/json');
    is($res->header('Cache-Control'), 'no-store', 'Cache-Control: no-store');
    is_deeply($j, { valid => JSON::PP::true, status => 'ok', id => 'v-ok',
                    owner => 'ac"me', plan => 'pro', scopes => ['read', 'write'],
                    expires_at => $now + 3600, rate_remaining => undef,
                    quota_remaining => 10 },
              'valid: every field (no rate: null; the quota untouched: 10)')
        or diag $res->body;
}

# --- the outcomes ------------------------------------------------------------------
for my $c (['rev', 'revoked', 'v-rev'], ['dis', 'disabled', 'v-dis'],
           ['exp', 'expired', 'v-exp'], ['unknown', 'unknown', undef]) {
    my ($w, $status, $id) = @$c;
    my ($res, $j) = verify($k{$w});
    is($res->status, 200, "$status: 200");
    is($j->{valid}, JSON::PP::false, "$status: valid false");
    is($j->{status}, $status, "$status: status");
    is($j->{id}, $id, "$status: id");
}
{
    my ($res, $j) = verify($k{ipk});
    is($j->{status}, 'ok', 'ips are not checked (they are about the key\'s user, not the verifier)');
    ($res, $j) = verify("bad key\x01");
    is($j->{status}, 'malformed', 'a malformed key: malformed');
    ($res, $j) = verify('x' x 300);
    is($j->{status}, 'malformed', 'a key longer than any key: malformed');
}

# --- the sources, no body ------------------------------------------------------------
{
    my $res = http_request($port, '/verify', headers => { 'X-API-Key' => $k{ok} });
    is($res->status, 200, 'GET with X-API-Key: 200');
    is(JSON::PP::decode_json($res->body)->{id}, 'v-ok', '... the key of the header');
    $res = post('/verify', '{"other":1}', Authorization => "Bearer $k{rev}");
    is(JSON::PP::decode_json($res->body)->{status}, 'revoked',
       'POST without "key": the Bearer key');
    $res = http_request($port, '/verify');
    is(JSON::PP::decode_json($res->body)->{status}, 'missing', 'no key anywhere: missing');
    $res = post('/verify', JSON::PP::encode_json({ key => $k{ok} }), 'X-API-Key' => $k{rev});
    is(JSON::PP::decode_json($res->body)->{status}, 'ok', 'the body wins over the sources');
}

# --- consume=on ------------------------------------------------------------------------
{
    my (undef, $j) = verify($k{rate});
    is($j->{rate_remaining}, 2, 'consume=off: 2 requests left (rate 2/m burst 1)');
    ($_, $j) = verify($k{rate});
    is($j->{rate_remaining}, 2, 'consume=off again: still 2 (nothing consumed)');
    ($_, $j) = verify($k{rate}, '/verify-consume');
    is($j->{status}, 'ok', 'consume=on: 1st');
    is($j->{rate_remaining}, 1, 'consume=on: 1 left');
    ($_, $j) = verify($k{rate}, '/verify-consume');
    is($j->{rate_remaining}, 0, 'consume=on: 0 left');
    ($_, $j) = verify($k{rate}, '/verify-consume');
    is($j->{status}, 'rate_limited', 'consume=on: then rate_limited');
    is($j->{valid}, JSON::PP::false, '... not valid');
    ($_, $j) = verify($k{rate});
    is($j->{status}, 'ok', 'consume=off after that: ok (it checks nothing it would consume)');
    is($j->{rate_remaining}, 0, '... and says 0 requests left');
    ($_, $j) = verify($k{ok}, '/verify-consume');
    is($j->{quota_remaining}, 9, 'consume=on: quota remaining');
    ($_, $j) = verify($k{ok});
    is($j->{quota_remaining}, 9, 'consume=off: the same quota remaining, nothing consumed');
}

# --- bad requests ----------------------------------------------------------------------
{
    is(post('/verify', '{"key": ')->status, 400, 'bad JSON: 400');
    is(post('/verify', '{"key": 5}')->status, 400, '"key" not a string: 400');
    is(post('/verify', '[1]')->status, 400, 'not an object: 400');
    my $big = '{"key":"' . $k{ok} . '","pad":"' . ('x' x 5000) . '"}';
    my $res = post('/verify', $big);
    is($res->status, 413, 'a body over 4096 bytes: 413');
    ok(index($res->raw, $k{ok}) < 0, '... not echoed');
    my $chunk = '{"key":"' . $k{ok} . '","pad":"' . ('y' x 5000) . '"}';
    my $dir = tmpdir();
    spew("$dir/body", $chunk);
    my $code = `curl -s -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary \@$dir/body http://127.0.0.1:$port/verify`;
    is($code, 413, 'a chunked body over 4096 bytes: 413');
    spew("$dir/small", JSON::PP::encode_json({ key => $k{dis} }));
    my $out = `curl -s -H 'Transfer-Encoding: chunked' --data-binary \@$dir/small http://127.0.0.1:$port/verify`;
    like($out, qr/"status":"disabled"/, 'a small chunked body is read');
    # the body holds a key: nginx never writes it to a temporary file, not
    # even a chunked body larger than client_body_buffer_size (before: it
    # was spooled to client_body_temp, then refused)
    spew("$dir/huge", '{"key":"' . $k{ok} . '","pad":"' . ('z' x 100_000) . '"}');
    $code = `curl -s -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary \@$dir/huge http://127.0.0.1:$port/verify`;
    is($code, 413, 'a chunked body of 100 kB: 413');
    $code = `curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge --data-binary \@$dir/huge http://127.0.0.1:$port/verify`
        if 0;    # (HTTP/2 needs an h2 listener; HTTP/1.1 chunked is the case)
    unlike($n->error_log, qr/buffered to a temporary file/,
           '... and no body was written to a temporary file');
    is(http_request($port, '/verify', method => 'PUT', body => '{}')->status, 405,
       'PUT: 405');
    is(post('/verify-closed', JSON::PP::encode_json({ key => $k{ok} }))->status, 403,
       'deny all protects the endpoint');
}

# --- a body that arrives after the headers (read asynchronously) ---------------------------
{
    my $body = JSON::PP::encode_json({ key => $k{dis} });
    my $s = http_open_raw($port, '/verify', method => 'POST',
                          headers => { 'Content-Length' => length $body });
    sleep 0.3;
    syswrite($s, $body);
    my $buf = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(5)) {
        my $got = sysread($s, $buf, 65536, length $buf);
        last unless $got;
    }
    close $s;
    like($buf, qr{^HTTP/1\.1 200 }, 'a late body: 200');
    like($buf, qr/"status":"disabled"/, 'a late body: read, then checked');
}

# --- the same cache -----------------------------------------------------------------------
{
    my $c0 = hgetall_calls($r);
    verify($k{ok}) for 1 .. 3;
    is(http_get($port, '/', headers => { 'X-API-Key' => $k{ok} })->status, 200,
       'the key passes api_key too');
    is(hgetall_calls($r) - $c0, 0, 'served from the cache: no Redis read');
}

# --- Redis down, key not cached: 503 ---------------------------------------------------------
{
    my $g = $r->pause_guard;
    my $res = post('/verify', JSON::PP::encode_json({ key => random_key('new') }));
    is($res->status, 503, 'Redis not answering, key not cached: 503');
    is($res->header('Retry-After'), '1', '... Retry-After: 1');
    is(JSON::PP::decode_json($res->body)->{status}, 'unavailable', '... status unavailable');
}

# --- the key is in no log --------------------------------------------------------------------
# (nginx's own debug lines of the request headers aside: the harness's
# final check knows them; a key sent in the body must be nowhere)
my @leaks = grep { index($_, $k{ok}) >= 0 && !/ http header: / }
            split /\n/, $n->error_log . $n->access_log;
is(scalar @leaks, 0, 'the key is in no log') or diag join "\n", @leaks;

# --- configuration errors -------------------------------------------------------------------
for my $c (['api_key_verify keys consume=maybe;', qr/invalid parameter "consume=maybe"/],
           ['api_key_verify nosuch;', qr/unknown api_key_zone "nosuch"/],
           ['api_key_verify off;', qr/needs a zone/]) {
    my ($line, $re) = @$c;
    config_refused(<<"EOT", $re, "nginx -t refuses: $line");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /v {
            $line   # BAD
        }
    }
EOT
}

done_testing;
