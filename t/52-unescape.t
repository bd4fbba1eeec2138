# SPDX-License-Identifier: BSD-2-Clause
# Percent-decoding: only a query argument is decoded, the whole value,
# strictly (an invalid escape is "malformed"); a header, bearer or cookie
# key is taken as it is, '%' included (a printable character, so a valid
# key byte).  Different byte strings never verify as the same key.
# Issue 10, item 5: "X-API-Key: abc%", "abc%4", "ab%63" all authenticated
# as "abc", and "?api_key=key%3Fanything" as "key?".
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
        api_key_source header:X-API-Key bearer query:api_key cookie:ak;
        add_header X-Status $api_key_status always;
        add_header X-Owner $api_key_owner always;

        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;

my $abc = random_key('u');               # "abc" of the issue
my $lit = random_key('l') . '%41';       # a key with a literal '%'
add_key($r, $abc, owner => 'abc');
add_key($r, "$abc?", owner => 'abc-qmark');
add_key($r, "$abc?anything", owner => 'abc-qmark-anything');
add_key($r, $lit, owner => 'literal-percent');
(my $lit_decoded = $lit) =~ s/%41$/A/;
add_key($r, $lit_decoded, owner => 'decoded-percent');

my $pre = substr($abc, 0, -1);
my $last = sprintf '%%%02x', ord substr($abc, -1);    # "ab%63"

sub req {
    my ($what, $path, $headers, $status, $outcome, $owner) = @_;
    my $res = http_get($port, $path, headers => $headers);
    is($res->status, $status, "$what: $status") or diag $res->as_string;
    is($res->header('X-Status'), $outcome, "$what: $outcome");
    is($res->header('X-Owner') // '', $owner // '', "$what: owner " . ($owner // 'none'));
}

# --- header and bearer: literal -----------------------------------------------
for my $src ([ 'header', sub { [ 'X-API-Key' => $_[0] ] } ],
             [ 'bearer', sub { [ Authorization => "Bearer $_[0]" ] } ],
             [ 'cookie', sub { [ Cookie => "x=1; ak=$_[0]" ] } ])
{
    my ($name, $h) = @$src;
    req("$name: the key", '/p', $h->($abc), 200, 'ok', 'abc');
    req("$name: key + '%'", '/p', $h->("$abc%"), 401, 'unknown');
    req("$name: key + '%4'", '/p', $h->("${abc}%4"), 401, 'unknown');
    req("$name: the last character as %XX", '/p', $h->("$pre$last"), 401, 'unknown');
    req("$name: key + '%3F' is not key + '?'", '/p', $h->("${abc}%3F"), 401, 'unknown');
    req("$name: a key with a literal '%41'", '/p', $h->($lit), 200, 'ok',
        'literal-percent');
}

# --- query: strictly decoded --------------------------------------------------
{
    req('query: the key', "/p?api_key=$abc", [], 200, 'ok', 'abc');
    req('query: the last character as %XX', "/p?api_key=$pre$last", [], 200, 'ok', 'abc');
    req('query: %3F decodes to "?", and the rest is kept', "/p?api_key=${abc}%3Fanything",
        [], 200, 'ok', 'abc-qmark-anything');
    req('query: %3f (lowercase)', "/p?api_key=${abc}%3f", [], 200, 'ok', 'abc-qmark');
    req("query: a dangling '%'", "/p?api_key=$abc%", [], 401, 'malformed');
    req("query: a dangling '%4'", "/p?api_key=${abc}%4", [], 401, 'malformed');
    req("query: '%zz'", "/p?api_key=${abc}%zz", [], 401, 'malformed');
    req("query: '%' then one hex digit then more", "/p?api_key=${abc}%4&x=1", [], 401,
        'malformed');
    req("query: '%41' decodes", "/p?api_key=$lit", [], 200, 'ok', 'decoded-percent');
    req("query: '%2541' is the literal '%41'", '/p?api_key=' . ($lit =~ s/%/%25/r), [],
        200, 'ok', 'literal-percent');
    req("query: '+' stays '+' (unknown, not a space)", "/p?api_key=$abc+", [], 401,
        'unknown');
    req('query: %00 (a NUL byte)', "/p?api_key=$abc%00", [], 401, 'malformed');
    req('query: %20 (a space)', "/p?api_key=$abc%20", [], 401, 'malformed');

    # longest: 256 bytes decoded; 257 decoded is malformed whatever the
    # encoding
    my $k256 = 'L' . random_base62(255);
    add_key($r, $k256, owner => 'long');
    (my $enc = $k256) =~ s/(.)/sprintf '%%%02X', ord $1/ge;
    req('query: 256 bytes, every one encoded (768 characters)', "/p?api_key=$enc", [],
        200, 'ok', 'long');
    req('query: 257 bytes encoded', "/p?api_key=$enc%41", [], 401, 'malformed');
}

my @keys = ($abc, $lit, $lit_decoded);
is_deeply([ key_leaks($n->error_log, @keys) ], [], 'no key in the error log');
unlike($n->access_log, qr/\Q$abc\E/, 'no key in the access log');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
