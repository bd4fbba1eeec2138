# SPDX-License-Identifier: BSD-2-Clause
# A redirect never grants more than a direct request to its target would
# get.  A denied request that error_page sends to a location checking keys
# is denied there too, with the same answer, counted once; a location
# without api_key still serves the error page.  An allowed request
# redirected into another zone is looked up again there; into a location
# that reads keys from other sources it is checked again as it is now.
# Issue 10, item 6: "/pub/" with no key and "error_page 401 =
# /admin/fallback" reached the /admin/ backend with 200.
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
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Status $api_key_status always;
        proxy_set_header X-Owner $api_key_owner;

        # the issue's example
        location /pub/ {
            error_page 401 = /admin/fallback;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /admin/ {
            api_key_scope admin;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # a named location that inherits api_key from the server
        location /named/ {
            error_page 401 403 = @fallback;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location @fallback {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # the same with api_key off: the error page is served
        location /named-off/ {
            error_page 401 = @fallback_off;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location @fallback_off {
            api_key off;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # a static error page in a public location
        location /static/ {
            error_page 401 403 /errors/denied.html;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /errors/ {
            api_key off;
            root %%DIR%%/html;
        }

        # error_page into a location of another zone, with other sources
        location /cross/ {
            error_page 401 = /otherzone/fallback;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /otherzone/ {
            api_key other;
            api_key_source query:k header:X-API-Key;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # allowed, then redirected (try_files) into another zone
        location /tz/ {
            try_files /nonexistent @otherzone;
        }
        location @otherzone {
            api_key other;
            api_key_scope admin;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # allowed, then redirected into a location with other sources
        location /ts/ {
            try_files /nonexistent @querysource;
        }
        location @querysource {
            api_key_source query:k;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # allowed, then redirected into a location reading another source
        # first, and the same one second
        location /tw/ {
            api_key_strip off;
            try_files /nonexistent @queryfirst;
        }
        location @queryfirst {
            api_key_source query:k header:X-API-Key;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # allowed, then redirected into a location with a stricter format
        location /tf/ {
            try_files /nonexistent @checksum;
        }
        location @checksum {
            api_key_format checksum;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /metrics {
            api_key off;
            api_key_metrics;
        }
    }
EOT

# /cross/, /ts/ and /tw/ do not read ?k=: nginx's debug lines before the
# redirect print it
my $before_redirect = qr/\[debug\] .*"\/(?:cross|ts|tw)\/x\?k=/;

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
# (a harness with final log checks is told about them too)
$n->expect_key_leak($before_redirect) if $n->can('expect_key_leak');
my $port = $n->port;
mkdir "$n->{dir}/html/errors";
chmod 0755, "$n->{dir}/html/errors";
spew($n->dir . '/html/errors/denied.html', "the error page\n", 0644);

my $kUser = random_key('user');
my $kAdmin = random_key('admin');
add_key($r, $kUser, owner => 'user', scopes => 'read');
add_key($r, $kAdmin, owner => 'admin', scopes => 'read admin');

sub get { my ($path, @h) = @_; http_get($port, $path, headers => [@h]) }

sub metrics {
    my $res = get('/metrics');
    my %m;
    for my $line (split /\n/, $res->body) {
        my ($name, $value) = $line =~ /^(\S+) (\S+)$/ or next;
        $m{$name} = $value;
    }
    return \%m;
}
sub count {
    my ($m, $zone, $status) = @_;
    return $m->{"api_key_requests_total{zone=\"$zone\",status=\"$status\"}"} // 0;
}

# --- the issue's example ------------------------------------------------------
{
    my $m0 = metrics();
    my $res = get('/pub/x');
    is($res->status, 401, '/pub/ without a key, error_page to /admin/: 401');
    unlike($res->body, qr/^echo/, '... the /admin/ backend is not reached');
    is($res->header('X-Status'), 'missing', '... missing');
    like($res->header('WWW-Authenticate') // '', qr/^Bearer realm="api"$/,
         '... WWW-Authenticate of the first answer');
    my $m1 = metrics();
    is(count($m1, 'keys', 'missing') - count($m0, 'keys', 'missing'), 1,
       '... counted once');

    $res = get('/pub/x', 'X-API-Key' => 'no-such-key-' . $$);
    is($res->status, 401, '/pub/ with an unknown key: 401');
    unlike($res->body, qr/^echo/, '... the /admin/ backend is not reached');
    is($res->header('X-Status'), 'unknown', '... unknown');

    $res = get('/pub/x', 'X-API-Key' => $kUser);
    is($res->status, 200, '/pub/ with a valid key: 200 (no error page)');

    $res = get('/admin/fallback', 'X-API-Key' => $kUser);
    is($res->status, 403, 'direct: /admin/ with a key without admin: 403');
    $res = get('/admin/fallback');
    is($res->status, 401, 'direct: /admin/ without a key: 401');
}

# --- named locations ------------------------------------------------------------
{
    my $res = get('/named/x');
    is($res->status, 401, 'error_page to a named location checking keys: 401');
    unlike($res->body, qr/^echo/, '... its backend is not reached');

    $res = get('/named-off/x');
    is($res->status, 200, 'error_page = @location with api_key off: served (status of the page)');
    like($res->body, qr/^echo uri=\[\/named-off\/x\]/, '... its backend answered');
    is($res->header('X-Status'), 'missing', '... $api_key_status there: missing');
}

# --- a static error page in a public location ----------------------------------
{
    my $res = get('/static/x');
    is($res->status, 401, 'error_page to a public location: 401 kept');
    is($res->body, "the error page\n", '... the error page is served');
    is($res->header('X-Status'), 'missing', '... missing');
}

# --- a denied request sent to another zone ------------------------------------------
{
    my $m0 = metrics();
    my $res = get("/cross/x?k=$kAdmin");
    is($res->status, 401,
       'denied (missing), error_page to another zone where the query key is a source: 401');
    unlike($res->body, qr/^echo/, '... its backend is not reached');
    my $m1 = metrics();
    is(count($m1, 'other', 'ok') - count($m0, 'other', 'ok'), 0,
       '... nothing counted in the other zone');
}

# --- allowed, then redirected ------------------------------------------------------
{
    my $m0 = metrics();
    my $res = get('/tz/x', 'X-API-Key' => $kAdmin);
    is($res->status, 200, 'allowed, redirected into another zone: looked up there, 200');
    like($res->body, qr/owner=\[admin\]/, '... identified there');
    my $m1 = metrics();
    is(count($m1, 'other', 'ok') - count($m0, 'other', 'ok'), 1,
       '... counted in the other zone');

    $res = get('/tz/x', 'X-API-Key' => $kUser);
    is($res->status, 403, 'a key without the other zone\'s scope: 403');
    is($res->header('X-Status'), 'scope_denied', '... scope_denied');

    $res = get('/ts/x', 'X-API-Key' => $kAdmin);
    is($res->status, 401,
       'allowed, redirected into a location reading another source: checked again, 401');
    is($res->header('X-Status'), 'missing', '... missing there (the header was stripped)');

    $res = get("/ts/x?k=$kUser", 'X-API-Key' => $kAdmin);
    is($res->status, 200, '... with a key in that source too: checked with that key, 200');
    like($res->body, qr/owner=\[user\] /, '... identified by that key');
    like($res->body, qr/args=\[\]/, '... stripped there');

    $res = get('/tw/x', 'X-API-Key' => $kAdmin);
    is($res->status, 200, 'allowed, redirected where the same source is read: 200');
    like($res->body, qr/owner=\[admin\] /, '... the same key');
    $res = get('/tw/x?k=no-such-key', 'X-API-Key' => $kAdmin);
    is($res->status, 401,
       '... where another source holds another key: checked again, 401');
    is($res->header('X-Status'), 'malformed', '... two different keys: malformed');

    $res = get('/tf/x', 'X-API-Key' => $kAdmin);
    is($res->status, 401,
       'allowed, redirected into a location with a stricter format: checked again, 401');
}

is_deeply([ grep { $_ !~ $before_redirect }
            key_leaks($n->error_log, $kUser, $kAdmin) ],
          [], 'no key in the error log (but nginx\'s debug lines before the redirect)');
unlike($n->access_log, qr/\Q$kAdmin\E|\Q$kUser\E/,
       'no key in the access log (the query key stripped where it is a source)');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
