# SPDX-License-Identifier: BSD-2-Clause
# api_key_verify answers every outcome (its access phase never denies, nor
# checks the client's address, nor takes from the limits with
# consume=off): a request it decided that is then sent elsewhere by an
# internal redirect (try_files, error_page...) into a location that checks
# keys is checked there as a direct request would be, never let through on
# the verify location's outcome (an unknown, revoked, malformed, address-
# restricted or limited key would pass otherwise), and a key that was never
# hashed is never looked up (in another zone).  A subrequest (mirror) of
# such a request is checked on its own too.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;
my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_zone  other:1m;
    log_format    mirror 'mirror $uri $status st=$api_key_status';
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key_source header:X-API-Key;
        location = /verify {
            api_key_verify keys;
            try_files /nowhere @backend;
        }
        location = /verify-other {
            api_key_verify keys;
            try_files /nowhere @other;
        }
        location = /verify-chain {
            api_key_verify keys;
            try_files /nowhere @verify-other;
        }
        location = /verify-mirror {
            api_key_verify keys;
            mirror /m;
        }
        location = /m {
            internal;
            api_key keys;
            log_subrequest on;
            access_log mirror.log mirror;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location @verify-other {
            api_key_verify other;
        }
        location @backend {
            api_key keys;
            add_header X-St $api_key_status always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location @other {
            api_key other;
            add_header X-St $api_key_status always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;

my %k = map { $_ => random_key($_) } qw(ok rev unknown ipk rate);
add_key($r, $k{ok}, id => 'r-ok');
add_key($r, $k{rev}, id => 'r-rev', status => 'revoked');
add_key($r, $k{ipk}, id => 'r-ip', ips => '10.0.0.0/8');
add_key($r, $k{rate}, id => 'r-rate', rate => '1/m', burst => 0);

# a valid key: checked again in @backend, and passes
my $res = http_get($port, '/verify', headers => { 'X-API-Key' => $k{ok} });
is($res->status, 200, 'a valid key: the backend');
is($res->header('X-St'), 'ok', '... checked there: ok');

# what the verify location let through its access phase is denied there
$res = http_get($port, '/verify', headers => { 'X-API-Key' => $k{unknown} });
is($res->status, 401, 'an unknown key: not let through by the redirect');
is($res->header('X-St'), 'unknown', '... unknown there');

$res = http_get($port, '/verify', headers => { 'X-API-Key' => $k{rev} });
is($res->status, 401, 'a revoked key: not let through by the redirect');
is($res->header('X-St'), 'revoked', '... revoked there');

$res = http_get($port, '/verify', headers => { 'X-API-Key' => 'not a key' });
is($res->status, 401, 'a malformed key: not let through by the redirect');
is($res->header('X-St'), 'malformed', '... malformed there');

$res = http_get($port, '/verify');
is($res->status, 401, 'no key: not let through by the redirect');
is($res->header('X-St'), 'missing', '... missing there');

# what api_key_verify does not check: the client's address, the limits
$res = http_get($port, '/verify', headers => { 'X-API-Key' => $k{ipk} });
is($res->status, 403, 'a key for other addresses: denied by the redirect');
is($res->header('X-St'), 'ip_denied', '... ip_denied there');

$res = http_get($port, '/verify', headers => { 'X-API-Key' => $k{rate} });
is($res->status, 200, 'a limited key, the first request: the backend');
$res = http_get($port, '/verify', headers => { 'X-API-Key' => $k{rate} });
is($res->status, 429, '... the second, over its rate: 429 there');
is($res->header('X-St'), 'rate_limited', '... rate_limited');

# into another zone: a malformed key has no hash to look up there
reset_stats($r);
$res = http_get($port, '/verify-other',
                headers => { 'X-API-Key' => 'not a key' });
is($res->status, 401, 'another zone, a malformed key: 401');
is($res->header('X-St'), 'malformed', '... malformed there, not looked up');
is(hgetall_calls($r), 0, '... no read from Redis');

$res = http_get($port, '/verify-other', headers => { 'X-API-Key' => $k{ok} });
is($res->status, 200, 'another zone, a valid key: 200');
is($res->header('X-St'), 'ok', '... ok there');

# from one api_key_verify to another's zone: a key never hashed is not
# looked up there either
reset_stats($r);
$res = http_get($port, '/verify-chain',
                headers => { 'X-API-Key' => 'not a key' });
is($res->status, 200, 'verify into another zone\'s verify, a malformed key: 200');
like($res->body, qr/"valid":false/, '... not valid');
is(hgetall_calls($r), 0, '... no read from Redis');

# a subrequest (mirror) of a request api_key_verify decided: checked on its
# own, not let through on the verify location's outcome
$res = http_get($port, '/verify-mirror',
                headers => { 'X-API-Key' => $k{unknown} });
is($res->status, 200, 'verify with a mirror: its answer');
ok(wait_until(sub { -s "$n->{dir}/mirror.log" }, timeout => 5),
   'the mirror subrequest is logged');
my $mlog = ApiKeyTest::slurp("$n->{dir}/mirror.log");
like($mlog, qr{^mirror /m 401 }m, 'the mirror subrequest: denied')
    or diag $mlog;
unlike($mlog, qr{^mirror /m 200 }m, '... not sent to its upstream');

done_testing;
