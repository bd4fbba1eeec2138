# SPDX-License-Identifier: BSD-2-Clause
# api_key_strip on a header that nginx keeps a pointer to in
# r->headers_in (User-Agent, Referer, X-Forwarded-For, Authorization): the
# header leaves the request and that pointer too, so $http_user_agent,
# $http_referer, $proxy_add_x_forwarded_for and the access log's
# "combined" fields have no key, at the upstream, in a response header
# computed after the access phase, and in the access log; what nginx
# decoded of Basic credentials ($remote_user, decoded early by a "set")
# goes too; an emptied Cookie header leaves $http_cookie; header:Host,
# which nginx also keeps as the server's name, is refused by nginx -t.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    log_format kept 'kept ua=[$http_user_agent] ref=[$http_referer] '
                    'xff=[$http_x_forwarded_for] auth=[$http_authorization] '
                    'user=[$remote_user] st=$api_key_status';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/access.log kept;
        api_key keys;

        # computed when the response header is sent: after the access phase
        add_header X-Seen "ua=[$http_user_agent] ref=[$http_referer] xff=[$http_x_forwarded_for]" always;

        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;

        location /ua/ {
            api_key_source header:User-Agent;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /ref/ {
            api_key_source header:Referer;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /xff/ {
            api_key_source header:X-Forwarded-For;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /auth/ {
            api_key_source header:Authorization;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /basic/ {
            api_key_source basic;
            set $early_user $remote_user;    # decoded before the strip
            add_header X-User "[$remote_user]" always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /cookie/ {
            api_key_source cookie:ak;
            add_header X-Cookie "[$http_cookie]" always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /keep/ {
            api_key_strip off;
            api_key_source header:User-Agent;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_UP%%;
        api_key off;
        access_log off;
        location / {
            return 200 "up ua=[$http_user_agent] ref=[$http_referer] xff=[$http_x_forwarded_for] auth=[$http_authorization]\n";
        }
    }
EOT

my $dir = tmpdir();
my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r, dir => $dir);
# nginx's own debug lines print the request headers as they are read,
# before the module runs
$n->expect_key_leak(CORE_REQUEST_DEBUG);
my $port = $n->port;

my $k = random_key('kept');
my $kk = random_key('kept2');
add_key($r, $k, owner => 'kept');
add_key($r, $kk, owner => 'keep');

sub get { my ($path, @h) = @_; http_get($port, $path, headers => [@h]) }

sub no_key {
    my ($res, $what) = @_;
    is($res->status, 200, "$what: 200") or diag $res->as_string;
    unlike($res->body, qr/\Q$k\E/, "$what: the key does not reach the upstream");
    unlike($res->header('X-Seen') // '', qr/\Q$k\E/,
           "$what: nor a variable read after the access phase");
}

{
    my $res = get('/ua/', 'User-Agent' => $k);
    no_key($res, 'header:User-Agent');
    like($res->body, qr/ua=\[\]/, 'header:User-Agent: $http_user_agent empty upstream');
    like($res->header('X-Seen') // '', qr/ua=\[\]/,
         'header:User-Agent: $http_user_agent empty after the access phase');
}

{
    my $res = get('/ref/', 'Referer' => $k, 'User-Agent' => 'test-agent');
    no_key($res, 'header:Referer');
    like($res->body, qr/ua=\[test-agent\] ref=\[\]/,
         'header:Referer: $http_referer empty, other headers kept');
}

{
    my $res = get('/xff/', 'X-Forwarded-For' => $k);
    no_key($res, 'header:X-Forwarded-For');
    like($res->body, qr/xff=\[127\.0\.0\.1\]/,
         'header:X-Forwarded-For: $proxy_add_x_forwarded_for is the client only');

    # the same key twice: both headers go, and both pointers
    $res = get('/xff/', 'X-Forwarded-For' => $k, 'X-Forwarded-For' => $k);
    no_key($res, 'header:X-Forwarded-For twice');
    like($res->body, qr/xff=\[127\.0\.0\.1\]/,
         'header:X-Forwarded-For twice: the client only');
}

{
    my $res = get('/auth/', 'Authorization' => $k);
    no_key($res, 'header:Authorization');
    like($res->body, qr/auth=\[\]/, 'header:Authorization: $http_authorization empty');
}

{
    require MIME::Base64;
    my $res = get('/basic/', 'Authorization' => 'Basic ' . MIME::Base64::encode_base64("$k:", ''));
    no_key($res, 'basic, $remote_user decoded before the strip');
    is($res->header('X-User'), '[]', 'basic: $remote_user empty after the strip');
    like($res->body, qr/auth=\[\]/, 'basic: no Authorization upstream');
}

{
    my $res = get('/cookie/', 'Cookie' => "ak=$k", 'Cookie' => 'a=1');
    no_key($res, 'cookie:ak, its Cookie header emptied');
    is($res->header('X-Cookie'), '[a=1]',
       'cookie: $http_cookie is the other Cookie header only');
}

{
    # api_key_strip off: the header stays, and so does what reads it
    my $res = get('/keep/', 'User-Agent' => $kk);
    is($res->status, 200, 'api_key_strip off: 200');
    like($res->body, qr/ua=\[\Q$kk\E\]/, 'api_key_strip off: the header is kept');
    $n->expect_key_leak($kk);
}

my @lines;
wait_until(sub { @lines = grep { /^kept / } split /\n/, $n->access_log; @lines >= 8 },
           timeout => 5);
is(scalar @lines, 8, 'eight requests in the access log');
is(scalar(grep { /\Q$k\E/ } @lines), 0, 'no key in the access log (combined fields)');
is(scalar(grep { /st=ok/ } @lines), 8, 'every request passed');

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

# header:Host: nginx keeps the value as the server's name ($host) too
for my $spec ('header:Host', 'header:host', 'header:HOST') {
    my $why = qr/the Host header cannot carry a key/;
    config_refused(<<"EOT", $why, "nginx -t refuses api_key_source $spec");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379;
    server {
        listen 127.0.0.1:1;
        location / {
            api_key keys;
            api_key_source $spec;    # BAD
        }
    }
EOT
}

done_testing;
