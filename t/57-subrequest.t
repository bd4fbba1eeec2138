# SPDX-License-Identifier: BSD-2-Clause
# Subrequests skip nginx's access phase: a subrequest into a location with
# api_key must never get more than a direct request would.  When the main
# request was not checked by this module (its location has no api_key: the
# auth_request pattern, an SSI page), the subrequest is checked on its own,
# waiting on Redis like a main request; when the main request was checked,
# its subrequests share its outcome.
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
        api_key_source header:X-API-Key bearer query:api_key;

        # auth_request: the main request's location has no api_key
        location /api/ {
            auth_request /check;
            auth_request_set $owner $api_key_owner;
            auth_request_set $st $api_key_status;
            add_header X-Owner $owner always;
            add_header X-Sub-Status $st always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /check {
            internal;
            api_key keys;
            proxy_set_header X-API-Key "";
            proxy_set_header Authorization "";
            proxy_pass http://127.0.0.1:%%PORT_UP%%/checked;
        }

        # SSI from a location without api_key into one with api_key
        location /pub/ {
            ssi on;
            root %%DIR%%/html;
        }

        # SSI from a checked location: its subrequests share its outcome
        location /priv/ {
            api_key keys;
            ssi on;
            root %%DIR%%/html;
        }

        # mirror: background subrequests, never the active request
        location /mir/ {
            mirror /mirrored;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /mirrored {
            internal;
            api_key keys;
            proxy_set_header X-API-Key "";
            proxy_pass http://127.0.0.1:%%PORT_UP%%/mirror-target;
        }

        location /chk/ {
            api_key keys;
            proxy_set_header X-API-Key "";
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r, error_level => 'info');
my $port = $n->port;
my $dir = $n->dir;

for my $d ('pub', 'priv') {
    mkdir "$dir/html/$d";
    chmod 0755, "$dir/html/$d";
    spew("$dir/html/$d/two.html",
         "A\n<!--#include virtual=\"/chk/one\" -->B\n<!--#include virtual=\"/chk/two\" -->C\n",
         0644);
}

my $k    = random_key('sr');
my $kq   = random_key('srq');
my $kssi = random_key('srs');
my $kp   = random_key('srp');
my $kr   = random_key('srr');
my $ku   = random_key('sru');    # unknown
add_key($r, $k, owner => 'sub-owner');
add_key($r, $kq, owner => 'query-owner');
add_key($r, $kssi, owner => 'ssi-owner');
add_key($r, $kp, owner => 'priv-owner');
add_key($r, $kr, owner => 'revoked-owner', status => 'revoked');

sub get { my ($path, %h) = @_; http_get($port, $path, headers => \%h) }

# --- auth_request -------------------------------------------------------------------
{
    my $res = get('/api/p');
    is($res->status, 401, 'auth_request, no key: 401') or diag $res->as_string;
    like($res->header('WWW-Authenticate') // '', qr/^Bearer realm="api"$/,
         'auth_request, no key: WWW-Authenticate of the subrequest');

    $res = get('/api/p', 'X-API-Key' => $ku);
    is($res->status, 401, 'auth_request, unknown key: 401');
    like($res->header('WWW-Authenticate') // '', qr/invalid_token/,
         'auth_request, unknown key: invalid_token');

    reset_stats($r);
    $res = get('/api/p', 'X-API-Key' => $k);
    is($res->status, 200, 'auth_request, valid key, cache miss: 200') or diag $res->as_string;
    is(hgetall_calls($r), 1, 'auth_request: the subrequest read Redis (a miss)');
    is($res->header('X-Owner'), 'sub-owner', 'auth_request_set: $api_key_owner of the subrequest');
    is($res->header('X-Sub-Status'), 'ok', 'auth_request_set: $api_key_status of the subrequest');

    $res = get('/api/p', Authorization => "Bearer $k");
    is($res->status, 200, 'auth_request, valid key, cache hit: 200');
    is(hgetall_calls($r), 1, 'auth_request: a cache hit, no Redis read');

    $res = get('/api/p', 'X-API-Key' => $kr);
    is($res->status, 401, 'auth_request, revoked key: 401');
    is($res->header('X-Sub-Status'), 'revoked', 'auth_request: revoked');

    # a query key, removed at the start of the main request (the server's
    # source), is found by the subrequest
    $res = get("/api/p?a=1&api_key=$kq");
    is($res->status, 200, 'auth_request, query key: 200') or diag $res->as_string;
    is($res->header('X-Owner'), 'query-owner', 'auth_request, query key: its owner');
    like($res->body, qr/args=\[a=1\]/, 'auth_request, query key: not proxied');
    $res = get("/api/p?api_key=${kq}zz");
    is($res->status, 401, 'auth_request, unknown query key: 401');
}

# --- SSI from a location without api_key: each subrequest checked ---------------------
{
    my $res = get('/pub/two.html');
    is($res->status, 200, 'SSI page without api_key: 200');
    unlike($res->body, qr/echo uri=/, 'SSI without a key: no include reached the upstream')
        or diag $res->body;
    like($res->body, qr/401/, 'SSI without a key: the includes got 401');

    # two subrequests wait for one Redis read; the second is not the
    # active request when the answer comes
    reset_stats($r);
    $res = get('/pub/two.html', 'X-API-Key' => $kssi);
    is($res->status, 200, 'SSI with a key: 200');
    like($res->body, qr{^A\necho uri=\[/chk/one\].*\nB\necho uri=\[/chk/two\].*\nC\n\z}s,
         'SSI with a key (cache miss): both includes checked and served')
        or diag $res->body;
    is(hgetall_calls($r), 1, 'SSI: one Redis read for both subrequests');
}

# --- mirror: a background subrequest waits on Redis too ------------------------------
{
    my $km = random_key('srm');
    add_key($r, $km, owner => 'mirror-owner');
    my $res = get('/mir/p?m=nokey');
    is($res->status, 200, 'mirror, no key: the main request is served');
    $res = get('/mir/p?m=key', 'X-API-Key' => $km);
    is($res->status, 200, 'mirror, a key (cache miss): the main request is served')
        or diag $res->as_string;
    ok(wait_until(sub { $n->access_log =~ m{"GET /mirror-target\?m=key HTTP/1\.0" 200} },
                  timeout => 5),
       'mirror, a key: the mirrored request was checked and reached its upstream')
        or diag $n->access_log;
    unlike($n->access_log, qr{/mirror-target\?m=nokey}, 'mirror, no key: denied (401)');
}

# --- SSI from a checked location: shared outcome ---------------------------------------
{
    my $res = get('/priv/two.html', 'X-API-Key' => $kp);
    is($res->status, 200, 'SSI in a checked location: 200') or diag $res->as_string;
    like($res->body, qr{^A\necho uri=\[/chk/one\].*\nB\necho uri=\[/chk/two\].*\nC\n\z}s,
         'SSI in a checked location: the subrequests share the outcome (the key '
         . 'was stripped by the main request)') or diag $res->body;
    $res = get('/priv/two.html');
    is($res->status, 401, 'SSI in a checked location, no key: 401');
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
