# SPDX-License-Identifier: BSD-2-Clause
# api_key_error_body json's filters are in nginx's chain only when some
# block has it: a reload that adds it (in a location only, or in the server
# block) gives the denials their problem+json bodies, one that takes it away
# gives nginx's page back; the other responses are unchanged throughout.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

sub conf {
    my ($server, $loc) = @_;
    return <<"EOT" . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=300ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        $server
        location / {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /j/ {
            $loc
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
}

my $n = ApiKeyTest::Nginx->start(http => conf('', ''), redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;
my $key = random_key('jr');
add_key($r, $key, id => 'jr');

sub check {
    my ($what, $root_json, $loc_json) = @_;
    for my $c ([ '/x', $root_json ], [ '/j/x', $loc_json ]) {
        my ($path, $json) = @$c;
        my $res = http_get($port, $path);
        is($res->status, 401, "$what: $path without a key: 401");
        if ($json) {
            like($res->header('Content-Type'), qr{^application/problem\+json},
                 "$what: $path: problem+json");
            like($res->body, qr/"detail":"missing"/, "$what: $path: its body");
        } else {
            like($res->header('Content-Type'), qr{^text/html},
                 "$what: $path: nginx's page");
        }
        $res = http_get($port, $path, headers => { 'X-API-Key' => $key });
        is($res->status, 200, "$what: $path with the key: 200");
        like($res->body, qr/^echo uri=/, "$what: $path: the upstream's body");
    }
}

check('no json', 0, 0);

ok($n->reload(http => conf('', 'api_key_error_body json;')),
   'reload: json in one location') or diag $n->reload_error;
check('json in a location', 0, 1);

ok($n->reload(http => conf('api_key_error_body json;', 'api_key_error_body html;')),
   'reload: json in the server, html in the location') or diag $n->reload_error;
check('json in the server', 1, 0);

ok($n->reload(http => conf('', '')), 'reload: no json again')
    or diag $n->reload_error;
check('no json again', 0, 0);

done_testing;
