# SPDX-License-Identifier: BSD-2-Clause
# WWW-Authenticate of a scope_denied answer names the scopes of the block
# that answered: a nested location (or a location under a server) with its
# own api_key_scope, with the inherited realm or its own.  Issue 10, item 8:
# the parent's scopes were advertised.
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
        add_header X-Status $api_key_status always;

        location /outer/ {
            api_key_scope read;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;

            location /outer/inner/ {
                api_key_scope admin write;
                proxy_pass http://127.0.0.1:%%PORT_UP%%;

                location /outer/inner/deeper/ {
                    api_key_scope deep;
                    proxy_pass http://127.0.0.1:%%PORT_UP%%;
                }
            }

            location /outer/same/ {
                proxy_pass http://127.0.0.1:%%PORT_UP%%;
            }

            location /outer/realm/ {
                api_key_realm "inner-realm";
                proxy_pass http://127.0.0.1:%%PORT_UP%%;
            }
        }

        location /realm/ {
            api_key_realm "outer-realm";
            api_key_scope read;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;

            location /realm/inner/ {
                api_key_scope admin;
                proxy_pass http://127.0.0.1:%%PORT_UP%%;
            }
        }
    }

    server {
        listen 127.0.0.1:%%PORT_S2%%;
        api_key keys;
        api_key_scope srv;
        add_header X-Status $api_key_status always;

        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /loc/ {
            api_key_scope loc;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;
my $s2 = $n->port('s2');

my $k = random_key('w');
add_key($r, $k, owner => 'w', scopes => 'other');

sub www {
    my ($p, $path, $want, $what) = @_;
    my $res = http_get($p, $path, headers => { 'X-API-Key' => $k });
    is($res->status, 403, "$what: 403") or diag $res->as_string;
    is($res->header('X-Status'), 'scope_denied', "$what: scope_denied");
    is($res->header('WWW-Authenticate'), $want, "$what: WWW-Authenticate");
}

my $ins = 'error="insufficient_scope"';
www($port, '/outer/x', qq{Bearer realm="api", $ins, scope="read"}, 'outer');
www($port, '/outer/inner/x', qq{Bearer realm="api", $ins, scope="admin write"},
    'nested with its own scopes');
www($port, '/outer/inner/deeper/x', qq{Bearer realm="api", $ins, scope="deep"},
    'nested twice');
www($port, '/outer/same/x', qq{Bearer realm="api", $ins, scope="read"},
    'nested, scopes inherited');
www($port, '/outer/realm/x', qq{Bearer realm="inner-realm", $ins, scope="read"},
    'nested with its own realm, scopes inherited');
www($port, '/realm/x', qq{Bearer realm="outer-realm", $ins, scope="read"},
    'own realm');
www($port, '/realm/inner/x', qq{Bearer realm="outer-realm", $ins, scope="admin"},
    'nested: realm inherited, own scopes');
www($s2, '/x', qq{Bearer realm="api", $ins, scope="srv"}, 'server-level scope');
www($s2, '/loc/x', qq{Bearer realm="api", $ins, scope="loc"},
    'a location under a server-level scope');

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
