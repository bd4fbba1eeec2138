# SPDX-License-Identifier: BSD-2-Clause
# The record's strings a request keeps ($api_key_id, _owner, _plan,
# _scopes, the default id, usage under the identity): copied once at the
# decision, made into values when something asks.  A request held by its
# upstream while other keys pass through the same worker still gives its
# own values afterwards (add_header at its response, the access log at its
# end), with a text longer than the context's room (long scopes) and with a
# default id (no "id" field); a variable nothing reads costs nothing and
# still works when read by name later.
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

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Id     $api_key_id always;
        add_header X-Owner  $api_key_owner always;
        add_header X-Plan   $api_key_plan always;
        add_header X-Scopes $api_key_scopes always;

        location /held/ {
            proxy_set_header X-Owner $api_key_owner;
            proxy_pass http://127.0.0.1:%%HELD%%;
            proxy_read_timeout 20s;
        }
        location / {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /held-quiet/ {
            # nothing asks for the strings before the upstream answers
            proxy_pass http://127.0.0.1:%%HELD%%;
            proxy_read_timeout 20s;
        }
        location /quiet/ {
            # no variable here: nothing asks for the strings
            add_header X-Id "" always;
            empty_gif;
        }
    }
EOT2

# error log at info: at debug, the decision's debug line asks for the key
# id, so the strings would be made at every decision (a path the other
# tests take), never left lent
my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, workers => 1,
                                 error_level => 'info',
                                 vars => { REDIS => $r->port, HELD => $held_port });
my $port = $n->port;

# a request held by its upstream (it passed its check), then answered
sub hold    { $held->hold($port, @_) }
sub release { $held->release(@_) }

my $long = join ' ', map { "scope.number.$_" } 1 .. 20;     # > 128 bytes
cmp_ok(length $long, '>', 300, 'the scopes are longer than the context holds');
my %k = map { $_ => random_key($_) } qw(a b c);
add_key($r, $k{a}, id => 'held-a', owner => 'acme-held', plan => 'gold',
        scopes => $long);
my $hb = add_key($r, $k{b}, owner => 'bob', plan => 'free');
add_key($r, $k{c}, id => 'c-id', owner => 'carol');
my $default_id = substr($hb, 0, 12);

# all three cached first (a read from Redis is another path)
for my $w (qw(a b c)) {
    is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $k{$w} })->status,
       200, "key $w cached");
}

# --- a held request, others pass meanwhile --------------------------------
# nginx connects to the held upstream: the request has passed its check
my ($cli, $conn, $upreq) = hold('/held/x', $k{a}, 'the held request');
like($upreq, qr/^X-Owner: acme-held\r$/mi, 'proxy_set_header: its owner');

# meanwhile the worker checks other keys (the worker's copy of a record is
# theirs now)
my $res = http_get($port, '/x', headers => { 'X-API-Key' => $k{b} });
is($res->status, 200, 'key b passes meanwhile');
is($res->header('X-Id'), $default_id, 'key b: its default id');
is($res->header('X-Owner'), 'bob', 'key b: owner');
is($res->header('X-Plan'), 'free', 'key b: plan');
ok(!defined $res->header('X-Scopes'), 'key b: no scopes');
$res = http_get($port, '/x', headers => { 'X-API-Key' => $k{c} });
is($res->status, 200, 'key c passes meanwhile');
is($res->header('X-Id'), 'c-id', 'key c: id');
ok(!defined $res->header('X-Plan'), 'key c: no plan');

# the upstream answers: the held request's variables are its own
my $raw = release($cli, $conn);
like($raw, qr{^HTTP/1\.1 200 }, 'the held request: 200');
like($raw, qr/^X-Id: held-a\r$/m, 'the held request: its id after the others');
like($raw, qr/^X-Owner: acme-held\r$/m, '... its owner');
like($raw, qr/^X-Plan: gold\r$/m, '... its plan');
like($raw, qr/^X-Scopes: \Q$long\E\r$/m, '... its whole scopes (the pool copy)');

# --- the access log: at each request's end -------------------------------
ok(wait_until(sub { $n->access_log =~ m{"GET /held/x HTTP/1\.1" 200 } }, timeout => 5),
   'the held request is logged');
my $log = $n->access_log;
like($log, qr{"GET /held/x HTTP/1\.1" 200 .*st=ok id=held-a owner=acme-held plan=gold},
     'access log: the held request with its own values');
like($log, qr{"GET /x HTTP/1\.1" 200 .*st=ok id=\Q$default_id\E owner=bob plan=free},
     'access log: key b with its default id');
like($log, qr{"GET /quiet/ HTTP/1\.1" 200 .*st=ok id=\Q$default_id\E owner=bob},
     'access log: values nothing asked for until the log');
unlike($log, qr/\Q$k{a}\E|\Q$k{b}\E|\Q$k{c}\E/, 'no raw key in the access log');

# --- a short record's text, left in the worker's copy of it until another
# key's lookup overwrites that copy: held with nothing asking for it, then
# asked for (add_header, the log) after the others passed
($cli, $conn) = hold('/held-quiet/x', $k{c}, 'the quiet held request');
$res = http_get($port, '/x', headers => { 'X-API-Key' => $k{b} });
is($res->header('X-Owner'), 'bob', 'key b passes meanwhile');
$res = http_get($port, '/quiet/', headers => { 'X-API-Key' => $k{b} });
is($res->status, 200, 'and again, its record read last');
$raw = release($cli, $conn);
like($raw, qr{^HTTP/1\.1 200 }, 'the quiet held request: 200');
like($raw, qr/^X-Id: c-id\r$/m, 'the quiet held request: its id after the others');
like($raw, qr/^X-Owner: carol\r$/m, '... its owner');
unlike($raw, qr/^X-Plan:/m, '... no plan');
ok(wait_until(sub { $n->access_log =~ m{"GET /held-quiet/x HTTP/1\.1" 200 } },
              timeout => 5), 'the quiet held request is logged');
like($n->access_log,
     qr{"GET /held-quiet/x HTTP/1\.1" 200 .*st=ok id=c-id owner=carol},
     'access log: the quiet held request with its own values');

# --- a short record with a rate (viewed whole at the decision, its strings
# viewed again only when asked): held while the others pass
{
    my $k_rated = random_key('rated');
    add_key($r, $k_rated, id => 'rated-id', owner => 'rita', plan => 'metered',
            rate => '1000/s');
    is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $k_rated })->status,
       200, 'the rated key cached');
    my ($c2, $u2) = hold('/held-quiet/rated', $k_rated, 'the rated key\'s held request');
    for my $w (qw(b c)) {
        is(http_get($port, '/x', headers => { 'X-API-Key' => $k{$w} })->status, 200,
           "key $w passes meanwhile");
    }
    my $raw2 = release($c2, $u2);
    like($raw2, qr/^X-Id: rated-id\r$/m, 'the rated key\'s held request: its id after the others');
    like($raw2, qr/^X-Owner: rita\r$/m, '... its owner');
    like($raw2, qr/^X-Plan: metered\r$/m, '... its plan');
}

# --- a record that only its texts describe (allowed without reading the
# rest) but longer than the context's room: held while the others pass,
# its strings asked for afterwards
my $k_long = random_key('long');
my ($lo, $lp) = ('o' x 100 . '-owner', 'p' x 90 . '-plan');
add_key($r, $k_long, id => 'long-id', owner => $lo, plan => $lp);
is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $k_long })->status,
   200, 'the long plain key cached');
($cli, $conn) = hold('/held-quiet/long', $k_long, 'the long key\'s held request');
for my $w (qw(b c b)) {
    $res = http_get($port, '/x', headers => { 'X-API-Key' => $k{$w} });
    is($res->status, 200, "key $w passes meanwhile");
}
$raw = release($cli, $conn);
like($raw, qr{^HTTP/1\.1 200 }, 'the long key\'s held request: 200');
like($raw, qr/^X-Id: long-id\r$/m, '... its id after the others');
like($raw, qr/^X-Owner: \Q$lo\E\r$/m, '... its whole owner');
like($raw, qr/^X-Plan: \Q$lp\E\r$/m, '... its whole plan');
ok(wait_until(sub { $n->access_log =~ m{"GET /held-quiet/long HTTP/1\.1" 200 } },
              timeout => 5), 'the long key\'s held request is logged');
like($n->access_log,
     qr{"GET /held-quiet/long HTTP/1\.1" 200 .*st=ok id=long-id owner=\Q$lo\E plan=\Q$lp\E},
     'access log: the long key with its own values');

# --- records larger than the context's room without an identity (many
# CIDRs): lent whole, nothing made of them at the decision; held quietly
# while the others overwrite the worker's copy, which keeps only the part
# holding their strings, in the context (short strings) or in the
# request's pool (long scopes)
{
    my $cidrs = join ',', (map { "10.$_.0.0/16" } 1 .. 30), '127.0.0.0/8';
    # (the large one, over 512 bytes with 60 more CIDRs, is not kept
    # viewed by the worker: viewed at each request)
    my $cidrs60 = join ',', (map { "10.$_.0.0/16" } 31 .. 90), $cidrs;
    my %big = (small => { id => 'big-id', owner => 'dora', plan => 'gold',
                          ips => $cidrs },
               large => { id => 'big-long-id', owner => 'erin', plan => 'gold',
                          scopes => $long, ips => $cidrs60 });
    # another big record's key passes meanwhile: its copy overwrites
    # where the held record's strings were
    my $kf = random_key('big-other');
    add_key($r, $kf, id => 'fig-id', owner => 'fred', plan => 'iron',
            scopes => join(' ', map { "other.scope.$_" } 1 .. 20), ips => $cidrs);
    for my $w (qw(small large)) {
        my $kb = random_key("big-$w");
        add_key($r, $kb, %{ $big{$w} });
        is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $kb })->status,
           200, "the $w big record's key cached");
        my ($c3, $u3) = hold("/held-quiet/big-$w", $kb, "the $w big record's held request");
        for my $o ($k{b}, $kf, $k{c}, $kf) {
            is(http_get($port, '/quiet/', headers => { 'X-API-Key' => $o })->status,
               200, 'another key passes meanwhile');
        }
        my $raw3 = release($c3, $u3);
        like($raw3, qr{^HTTP/1\.1 200 }, "the $w big record's held request: 200");
        like($raw3, qr/^X-Id: \Q$big{$w}{id}\E\r$/m, '... its id after the others');
        like($raw3, qr/^X-Owner: \Q$big{$w}{owner}\E\r$/m, '... its owner');
        like($raw3, qr/^X-Plan: gold\r$/m, '... its plan');
        if ($w eq 'large') {
            like($raw3, qr/^X-Scopes: \Q$long\E\r$/m, '... its whole scopes');
        } else {
            unlike($raw3, qr/^X-Scopes:/m, '... no scopes');
        }
        ok(wait_until(sub { $n->access_log =~ m{"GET /held-quiet/big-$w HTTP/1\.1" 200 } },
                      timeout => 5), "the $w big record's held request is logged");
        like($n->access_log,
             qr{"GET /held-quiet/big-$w HTTP/1\.1" 200 .*st=ok id=\Q$big{$w}{id}\E owner=\Q$big{$w}{owner}\E plan=gold},
             "access log: the $w big record with its own values");
    }
}

# --- keys whose records have the same length, in the worker's same kept
# view (the hash's second byte, its low 4 bits), taking turns: two with the
# same bytes (no id: each has its own default id), one whose owner differs
# in a byte; then the first key's record changed (its owner, the same
# length): its next request sees the change, not the view kept of it
{
    my $cidrs = join ',', (map { "10.$_.0.0/16" } 1 .. 30), '127.0.0.0/8';
    my ($slot, @keys);
    my %owner = (0 => 'twin-a', 1 => 'twin-a', 2 => 'twin-b');
    for my $try (1 .. 400) {
        my $k = random_key("twin$try");
        my $h = key_hash($k);
        my $s = hex(substr($h, 2, 2)) & 15;
        $slot //= $s;
        next unless $s == $slot;
        push @keys, [$k, substr($h, 0, 12)];
        last if @keys == 3;
    }
    is(scalar @keys, 3, 'three keys of one view slot');
    for my $t (0 .. 2) {
        add_key($r, $keys[$t][0], owner => $owner{$t}, plan => 'same',
                ips => $cidrs);
    }
    for my $round (1 .. 2) {
        for my $t (0, 2, 1, 0, 0, 1, 2) {
            $res = http_get($port, '/x', headers => { 'X-API-Key' => $keys[$t][0] });
            is($res->status, 200, "key $t, round $round: 200");
            is($res->header('X-Id'), $keys[$t][1], "key $t, round $round: its own default id");
            is($res->header('X-Owner'), $owner{$t}, "key $t, round $round: its owner");
        }
    }
    # the first key's view kept last
    is(http_get($port, '/x', headers => { 'X-API-Key' => $keys[0][0] })->header('X-Owner'),
       'twin-a', 'the first key again: its owner');
    ok(wait_subscribed($r, 1), 'the worker listens to events');
    my $h0 = add_key($r, $keys[0][0], owner => 'twin-c', plan => 'same', ips => $cidrs);
    is(publish($r, "update $h0"), 1, 'the first key\'s record changed: an update event');
    my $seen;
    ok(wait_until(sub {
        $res = http_get($port, '/x', headers => { 'X-API-Key' => $keys[0][0] });
        ($seen = $res->header('X-Owner') // '') eq 'twin-c';
    }, timeout => 5), 'the first key\'s new owner is seen') or diag("owner: $seen");
}

done_testing;
