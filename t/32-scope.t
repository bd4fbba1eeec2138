# SPDX-License-Identifier: BSD-2-Clause
# api_key_scope: the key's "scopes" must hold every listed scope (403
# scope_denied with WWW-Authenticate error="insufficient_scope" and the
# scopes asked for); $api_key_scopes; a location without api_key_scope
# accepts any valid key; an internal redirect checks the new location's
# scopes against the same key.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Scopes $api_key_scopes always;

        location / {
            try_files /ok.txt =404;
        }
        location /rw/ {
            api_key_scope read write;
            try_files /ok.txt =404;
        }
        location /admin/ {
            api_key_scope admin;
            try_files /ok.txt =404;
        }
        location /realm/ {
            api_key_realm "shop";
            api_key_scope orders:read;
            try_files /ok.txt =404;
        }
        location /to-admin/ {
            rewrite ^ /admin/x last;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, redis_clients => 2,
                                 vars => { REDIS => $r->port });
static_site($n);
my $port = $n->port;

sub get { my ($k, $path) = @_; http_get($port, $path, headers => xkey($k)) }

my %k = map { $_ => random_key($_) } qw(rwa r none empty many colon w);
add_key($r, $k{rwa},   scopes => 'read write admin');
add_key($r, $k{r},     scopes => 'read');
add_key($r, $k{w},     scopes => 'write');
add_key($r, $k{none},  owner => 'no-scopes');
add_key($r, $k{empty}, owner => 'empty-scopes', scopes => '');
add_key($r, $k{many},  scopes => 'admin   write  read');
add_key($r, $k{colon}, scopes => 'orders:read orders/write x.y-z_1 *');

sub is_ok {
    my ($res, $what) = @_;
    is($res->status, 200, "$what: 200") or diag $res->as_string;
    is($res->header('X-Status'), 'ok', "$what: ok");
}

sub is_scope_denied {
    my ($res, $what, $scopes, $realm) = @_;
    $realm //= 'api';
    is($res->status, 403, "$what: 403") or diag $res->as_string;
    is($res->header('X-Status'), 'scope_denied', "$what: scope_denied");
    is($res->header('WWW-Authenticate'),
       qq{Bearer realm="$realm", error="insufficient_scope", scope="$scopes"},
       "$what: WWW-Authenticate with error=\"insufficient_scope\" and scope=\"$scopes\"");
}

# --- api_key_scope read write --------------------------------------------------
{
    my $res = get($k{rwa}, '/rw/x');
    is_ok($res, 'scopes "read write admin" on /rw/');
    is($res->header('X-Scopes'), 'read write admin', '$api_key_scopes exposes the scopes');

    $res = get($k{many}, '/rw/x');
    is_ok($res, 'scopes with extra spaces, in another order, on /rw/');

    $res = get($k{r}, '/rw/x');
    is_scope_denied($res, 'scopes "read" on /rw/', 'read write');
    is($res->header('X-Scopes'), 'read', 'scope_denied: $api_key_scopes is still set');

    is_scope_denied(get($k{w}, '/rw/x'), 'scopes "write" on /rw/', 'read write');
    is_scope_denied(get($k{none}, '/rw/x'), 'no scopes field on /rw/', 'read write');
    is_scope_denied(get($k{empty}, '/rw/x'), 'empty scopes field on /rw/', 'read write');
    is_scope_denied(get($k{rwa}, '/realm/x'), 'api_key_realm with a scope location',
                    'orders:read', 'shop');
    is_ok(get($k{colon}, '/realm/x'), 'scopes with ":" "/" "." "-" "_" "*"');
    is_scope_denied(get($k{colon}, '/rw/x'),
                    '"*" is a scope word, not a wildcard', 'read write');
}

# --- a location without api_key_scope ----------------------------------------
{
    for my $which (qw(rwa r none empty)) {
        my $res = get($k{$which}, '/plain');
        is_ok($res, "no api_key_scope: key \"$which\" passes");
    }
    is(get($k{none}, '/plain')->header('X-Scopes'), undef,
       'a key without scopes: $api_key_scopes is empty (no header)');
}

# --- admin, and an internal redirect into it ------------------------------------
{
    is_ok(get($k{rwa}, '/admin/x'), 'scopes "read write admin" on /admin/');
    is_scope_denied(get($k{r}, '/admin/x'), 'scopes "read" on /admin/', 'admin');
    is_ok(get($k{rwa}, '/to-admin/x'), 'rewrite ... last into /admin/: admin key passes');
    is_scope_denied(get($k{r}, '/to-admin/x'),
                    'rewrite ... last into /admin/: the scopes are checked again', 'admin');
}

# --- scopes are case-sensitive words, not prefixes ------------------------------
{
    my $k1 = random_key('case');
    add_key($r, $k1, scopes => 'Read Write');
    is_scope_denied(get($k1, '/rw/x'), 'scopes "Read Write" on /rw/ (case matters)',
                    'read write');
    my $k2 = random_key('prefix');
    add_key($r, $k2, scopes => 'readonly writer');
    is_scope_denied(get($k2, '/rw/x'), 'scopes "readonly writer" on /rw/ (whole words)',
                    'read write');
}

unlike($n->error_log, qr/exited on signal/, 'no worker crashed');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;

done_testing;
