# SPDX-License-Identifier: BSD-2-Clause
# The record views the worker keeps (16 keys', ngx_http_api_key_view()),
# with requests held by their upstream while their text is lent from a
# view entry and the entry is replaced: by another key of the same entry,
# then by the held key's own changed record (an update event); records of
# up to 128 bytes and larger ones; a quiet location, one with
# api_key_scope, an internal redirect to it; records with an identity.
# The nginx logs at info (at debug the decision's debug line makes the
# strings at once, see t/89-variables-kept).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Held;
use ApiKeyTest::Events qw(wait_subscribed publish);

require_module();

my $r = ApiKeyTest::Redis->start;
my $held = ApiKeyTest::Held->new;
my $held_port = $held->{port};

my $http = <<'EOT2' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    log_format kept '$request $status id=$api_key_id owner=$api_key_owner sc=$api_key_scopes';

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        access_log %%DIR%%/kept.log kept;
        add_header X-Id     $api_key_id always;
        add_header X-Owner  $api_key_owner always;
        add_header X-Scopes $api_key_scopes always;

        location /held-quiet/ {
            proxy_pass http://127.0.0.1:%%HELD%%;
            proxy_read_timeout 20s;
        }
        location /held-scoped/ {
            api_key_scope read;
            proxy_pass http://127.0.0.1:%%HELD%%;
            proxy_read_timeout 20s;
        }
        location /redir/ {
            rewrite ^ /held-scoped/r last;
        }
        location /quiet/ {
            add_header X-Id "" always;
            empty_gif;
        }
        location / {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT2

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, workers => 1,
                                 error_level => 'info',
                                 vars => { REDIS => $r->port, HELD => $held_port });
my $port = $n->port;

# a request held by its upstream (it passed its check), then answered
sub hold    { $held->hold($port, @_) }
sub release { $held->release(@_) }

my $cidrs = join ',', (map { "10.$_.0.0/16" } 1 .. 10), '127.0.0.0/8';
my $cidrs30 = join ',', (map { "10.$_.0.0/16" } 1 .. 30), '127.0.0.0/8';

# keys of one view slot
my ($slot, @keys);
for my $try (1 .. 2000) {
    my $k = random_key("vs$try");
    my $h = key_hash($k);
    my $s = hex(substr($h, 2, 2)) & 15;
    $slot //= $s;
    next unless $s == $slot;
    push @keys, [$k, $h];
    last if @keys == 6;
}
is(scalar @keys, 6, 'six keys of one view slot');

ok(wait_subscribed($r, 1), 'the worker listens to events');

for my $case (['small', $cidrs], ['big', $cidrs30]) {
    my ($name, $ips) = @$case;
    my ($ka, $ha) = @{ $keys[0] };
    my ($kb) = @{ $keys[1] };
    add_key($r, $ka, owner => "old-$name", plan => 'p', scopes => 'read write', ips => $ips);
    add_key($r, $kb, owner => "other-$name", plan => 'p', scopes => 'read', ips => $ips);
    for my $k ($ka, $kb, $ka) {
        is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $k })->status, 200, "$name: cached");
    }
    for my $loc (qw(held-quiet held-scoped redir)) {
        add_key($r, $ka, owner => "old-$name", plan => 'p', scopes => 'read write', ips => $ips);
        is(publish($r, "update $ha"), 1, 'update event (back to old)');
        ok(wait_until(sub {
            (http_get($port, '/x', headers => { 'X-API-Key' => $ka })->header('X-Owner') // '') eq "old-$name" }, timeout => 5),
           "$name/$loc: old owner seen");
        my ($c, $u) = hold("/$loc/$name", $ka, "$name/$loc held");
        # another key of the slot replaces the entry; then the held key's
        # record changes and is viewed anew into the same entry
        is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $kb })->status, 200, 'other key');
        add_key($r, $ka, owner => "new-$name", plan => 'p', scopes => 'read write', ips => $ips);
        is(publish($r, "update $ha"), 1, 'update event');
        ok(wait_until(sub {
            (http_get($port, '/x', headers => { 'X-API-Key' => $ka })->header('X-Owner') // '') eq "new-$name" }, timeout => 5),
           "$name/$loc: new owner seen");
        is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $kb })->status, 200, 'other key again');
        my $raw = release($c, $u);
        like($raw, qr{^HTTP/1\.1 200 }, "$name/$loc: held 200");
        like($raw, qr/^X-Owner: old-$name\r$/m, "$name/$loc: held keeps its old owner");
        like($raw, qr/^X-Id: \Q@{[substr($ha, 0, 12)]}\E\r$/m, "$name/$loc: its default id");
        like($raw, qr/^X-Scopes: read write\r$/m, "$name/$loc: its scopes");
    }
}

# identity records (a rotated key's): two keys of the slot, each with an
# identity, one held
{
    my ($ki, $hi) = @{ $keys[2] };
    my ($kj) = @{ $keys[3] };
    my $idn = 'ab' x 32;
    my $long = join ' ', map { "scope.number.$_" } 1 .. 12;
    add_key($r, $ki, id => 'ident-i', owner => 'ivy', scopes => $long, identity => $idn, ips => $cidrs);
    add_key($r, $kj, id => 'ident-j', owner => 'jay', identity => 'cd' x 32, ips => $cidrs30);
    for my $k ($ki, $kj, $ki) {
        is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $k })->status, 200, 'identity key cached');
    }
    my ($c, $u) = hold('/held-quiet/ident', $ki, 'identity held');
    for (1 .. 3) {
        is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $kj })->status, 200, 'other identity key');
        is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $keys[4][0] })->status, 401, 'unknown key');
    }
    my $raw = release($c, $u);
    like($raw, qr/^X-Id: ident-i\r$/m, 'identity held: its id');
    like($raw, qr/^X-Owner: ivy\r$/m, 'identity held: its owner');
    like($raw, qr/^X-Scopes: \Q$long\E\r$/m, 'identity held: its scopes');
}

done_testing;
