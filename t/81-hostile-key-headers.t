# SPDX-License-Identifier: BSD-2-Clause
# Hostile input, client side (2): how a key is sent.
#
# Repeated and conflicting key headers (both orders), odd header names,
# odd Authorization schemes, casing and spacing (empty bearer, tabs, many
# spaces), odd Cookie syntax (no value, quotes, duplicate names, spaces
# around '=', commas, a 4 KB Cookie header of hundreds of pairs).  Each
# input has its answer in the table: the README's rules (the first source
# present gives the key, a different key in another source or another copy
# of the header makes the request malformed, the same key twice is fine; a cookie's
# surrounding double quotes go; a bearer needs "Bearer" and a space, the
# scheme compared without case) and nginx's own (a second Authorization
# header, a space in a header name: 400).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Hostile;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;

        location /d/ { proxy_pass http://127.0.0.1:%%PORT_UP%%; }   # header, bearer
        location /b/ {
            api_key_source bearer;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /c/ {
            api_key_source cookie:ak;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /hc/ {
            api_key_source header:X-API-Key cookie:ak;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
# nginx logs (at info) the header lines it refuses or ignores, as sent
$n->expect_key_leak(NGINX_REFUSED_HEADER);
my $port = $n->port;

my $k = random_key('hh');          # valid
my $u = random_key('hu');          # unknown
my $m = "bad key";                 # malformed (a space)
add_key($r, $k, owner => 'hdr');

sub h { my ($path, @h) = @_; (path => $path, headers => [@h]) }

# --- repeated and conflicting key headers ---------------------------------------
my @repeated = (
    { name => 'X-API-Key twice, both valid', h('/d/', 'X-API-Key' => $k, 'X-API-Key' => $k),
      want => '200 ok', owner => 'hdr' },
    # two different keys are not resolved by order (issue 15): malformed
    { name => 'X-API-Key twice, valid then unknown: two keys',
      h('/d/', 'X-API-Key' => $k, 'X-API-Key' => $u), want => '401 malformed' },
    { name => 'X-API-Key twice, unknown then valid: two keys',
      h('/d/', 'X-API-Key' => $u, 'X-API-Key' => $k), want => '401 malformed' },
    # the copies of the header are the last headers of the request, the
    # first not the first header: the second one must go too (api_key_strip:
    # every occurrence), not reach the upstream
    { name => 'X-API-Key twice, valid then unknown, after Host: both stripped',
      h('/d/', Connection => 'keep-alive', Host => 'x', 'X-API-Key' => $k, 'X-API-Key' => $k),
      want => '200 ok' },
    { name => 'X-API-Key three times, valid first, after Host: all stripped',
      h('/d/', Connection => 'keep-alive', Host => 'x', 'X-API-Key' => $k, 'X-API-Key' => $k,
        'X-API-Key' => $k), want => '200 ok' },
    { name => 'X-API-Key three times, after Host, the third another key',
      h('/d/', Connection => 'keep-alive', Host => 'x', 'X-API-Key' => $k, 'X-API-Key' => $k,
        'X-API-Key' => $u), want => '401 malformed' },
    { name => 'X-API-Key twice, valid then malformed',
      h('/d/', 'X-API-Key' => $k, 'X-API-Key' => $m), want => '401 malformed' },
    { name => 'X-API-Key twice, malformed then valid',
      h('/d/', 'X-API-Key' => $m, 'X-API-Key' => $k), want => '401 malformed' },
    { name => 'X-API-Key twice, empty then valid',
      h('/d/', 'X-API-Key' => '', 'X-API-Key' => $k), want => '401 malformed' },
    { name => 'X-API-Key twice, in other casings, the same key',
      h('/d/', 'x-api-key' => $k, 'X-API-KEY' => $k), want => '200 ok' },
    { name => 'X-API-Key twice, in other casings, two keys',
      h('/d/', 'x-api-key' => $u, 'X-API-KEY' => $k), want => '401 malformed' },
    { name => 'X-API-Key 50 times, the valid one last',
      h('/d/', (map { ('X-API-Key' => $u) } 1 .. 49), 'X-API-Key' => $k),
      want => '401 malformed' },
    { name => 'X-API-Key 50 times, the same key',
      h('/d/', (map { ('X-API-Key' => $k) } 1 .. 50)), want => '200 ok' },
    { name => 'X-API-Key (unknown) and a valid bearer: two keys',
      h('/d/', Authorization => "Bearer $k", 'X-API-Key' => $u), want => '401 malformed' },
    { name => 'X-API-Key empty and a valid bearer: an empty header is present',
      h('/d/', 'X-API-Key' => '', Authorization => "Bearer $k"), want => '401 malformed' },
    { name => 'X_API_Key (underscores): not the header, nginx ignores it',
      h('/d/', 'X_API_Key' => $k), want => '401 missing' },
    { name => 'X-API-Key-2: another header', h('/d/', 'X-API-Key-2' => $k),
      want => '401 missing' },
    { name => 'header and cookie, two keys',
      h('/hc/', Cookie => "ak=$k", 'X-API-Key' => $u), want => '401 malformed' },
    { name => 'header and cookie, the same key',
      h('/hc/', Cookie => "ak=$k", 'X-API-Key' => $k), want => '200 ok' },
    { name => 'header and cookie, no header: the cookie',
      h('/hc/', Cookie => "ak=$k"), want => '200 ok' },
);

# nginx refuses these itself (400), before any module
my @nginx400 = (
    [ 'a space before the colon', "X-API-Key : $k\r\n" ],
    [ 'a folded header (obs-fold)', "X-API-Key: $u\r\n $k\r\n" ],
    [ 'two Authorization headers', "Authorization: Bearer $k\r\nAuthorization: Bearer $u\r\n" ],
    [ 'two Authorization headers, one empty', "Authorization: Bearer $k\r\nAuthorization:\r\n" ],
    [ 'a header name with a control byte', "X-API\x01Key: $k\r\n" ],
);
push @repeated, map {
    { name => "$_->[0] (nginx: 400)",
      raw => "GET /d/ HTTP/1.1\r\nHost: x\r\n$_->[1]Connection: close\r\n\r\n",
      want => '400 -' }
} @nginx400;
run_cases($port, \@repeated);

# --- Authorization: the scheme, its casing and spacing ------------------------------
{
    my @auth = (
        [ "Bearer $k",           '200 ok' ],
        [ "bearer $k",           '200 ok' ],
        [ "BEARER $k",           '200 ok' ],
        [ "bEaReR $k",           '200 ok' ],
        [ "Bearer  $k",          '200 ok' ],
        [ "Bearer          $k",  '200 ok' ],
        [ "Bearer $k   ",        '200 ok' ],
        [ "   Bearer $k",        '200 ok' ],       # nginx trims the value
        [ "Bearer\t$k",          '401 missing' ],  # the scheme needs a space
        [ "Bearer \t$k",         '401 malformed' ],
        [ "Bearer $k\t",         '401 malformed' ],
        [ "Bearer",              '401 missing' ],
        [ "Bearer ",             '401 missing' ],  # nginx trims: "Bearer"
        [ "Bearer      ",        '401 missing' ],
        [ "bearer",              '401 missing' ],
        [ "Bearer:$k",           '401 missing' ],
        [ "Bearer: $k",          '401 missing' ],
        [ "Bearer=$k",           '401 missing' ],
        [ "Bearer$k",            '401 missing' ],
        [ "Bearerx $k",          '401 missing' ],
        [ "Bear $k",             '401 missing' ],
        [ "Token $k",            '401 missing' ],
        [ "Basic $k",            '401 missing' ],
        [ "$k",                  '401 missing' ],
        [ "",                    '401 missing' ],
        [ "Bearer $k $u",        '401 malformed' ],
        [ "Bearer $k,",          '401 unknown' ],
        [ "Bearer $k=",          '401 unknown' ],
        [ "Bearer \"$k\"",       '401 unknown' ],  # quotes are not removed here
        [ "Bearer Bearer $k",    '401 malformed' ],
        [ "Bearer $u",           '401 unknown' ],
        [ "Bearer " . ('x' x 4000), '401 malformed' ],
        [ "Bearer " . ('x' x 256), '401 unknown' ],
        [ "Bearer " . ('x' x 257), '401 malformed' ],
    );
    my @cases;
    for my $a (@auth) {
        (my $shown = $a->[0]) =~ s/\t/<tab>/g;
        $shown =~ s/\Q$k\E/KEY/g;
        $shown =~ s/\Q$u\E/UNKNOWN/g;
        $shown = substr($shown, 0, 30) . '...' if length $shown > 40;
        for my $loc ('/d/', '/b/') {
            push @cases, { name => "Authorization: \"$shown\" at $loc",
                           h($loc, Authorization => $a->[0]), want => $a->[1] };
        }
    }
    run_cases($port, \@cases);
}

# --- Cookie syntax ----------------------------------------------------------------
{
    my @cookie = (
        [ "ak=$k",                 '200 ok' ],
        [ "ak=\"$k\"",             '200 ok' ],       # quotes removed
        [ " ak=$k",                '200 ok' ],
        [ ";;; ak=$k;;;",          '200 ok' ],
        [ "a=1;ak=$k",             '200 ok' ],
        [ "a=1 ;  ak=$k  ; b",     '200 ok' ],
        [ "\$Version=1; ak=$k; \$Path=/", '200 ok' ],
        [ "ak",                    '401 missing' ],  # no '=': no value
        [ "ak;a=1",                '401 missing' ],
        [ "ak=",                   '401 malformed' ],
        [ "ak=;a=1",               '401 malformed' ],
        [ "ak=\"\"",               '401 malformed' ],
        [ "ak=\"",                 '401 unknown' ],  # one quote: a 1-byte key
        [ "ak=\"$k",               '401 unknown' ],
        [ "ak=$k\"",               '401 unknown' ],
        [ "ak='$k'",               '401 unknown' ],
        [ "ak = $k",               '401 missing' ],  # the name is "ak "
        [ "ak =$k",                '401 missing' ],
        [ "ak= $k",                '401 malformed' ],
        [ "\tak=$k",               '401 missing' ],  # only spaces are skipped
        [ "AK=$k",                 '401 missing' ],  # names with case
        [ "Ak=$k",                 '401 missing' ],
        [ "ak=$k; ak=$u",          '200 ok' ],       # the first one
        [ "ak=$u; ak=$k",          '401 unknown' ],
        [ "ak=; ak=$k",            '401 malformed' ],
        [ "ak; ak=$k",             '200 ok' ],       # "ak" alone is no cookie
        [ "ak=$k,b=2",             '401 unknown' ],  # ',' is no separator
        [ "ak==$k",                '401 unknown' ],
        [ "ak=$k=",                '401 unknown' ],
        [ "ak=$k\t",               '401 malformed' ],
        [ "xak=$k; akx=$k",        '401 missing' ],
        [ "a=1; b=2",              '401 missing' ],
        [ ";;;;",                  '401 missing' ],
        [ "=",                     '401 missing' ],
        [ "=$k",                   '401 missing' ],
    );
    my @cases;
    for my $c (@cookie) {
        (my $shown = $c->[0]) =~ s/\t/<tab>/g;
        $shown =~ s/\Q$k\E/KEY/g;
        $shown =~ s/\Q$u\E/UNKNOWN/g;
        push @cases, { name => "Cookie: '$shown'", h('/c/', Cookie => $c->[0]),
                       want => $c->[1] };
    }

    # a 4 KB Cookie header of hundreds of pairs
    my @pairs = map { "c$_=v$_" } 1 .. 500;
    my $many = join '; ', @pairs;
    my @odd = map { $_ % 3 == 0 ? "x$_" : $_ % 3 == 1 ? "y$_=" : "=z$_" } 1 .. 500;
    push @cases,
        { name => 'Cookie: 500 pairs, the key last', h('/c/', Cookie => "$many; ak=$k"),
          want => '200 ok', owner => 'hdr' },
        { name => 'Cookie: 500 pairs, the key first', h('/c/', Cookie => "ak=$k; $many"),
          want => '200 ok' },
        { name => 'Cookie: 500 pairs, the key in the middle',
          h('/c/', Cookie => join('; ', @pairs[0 .. 249], "ak=$k", @pairs[250 .. 499])),
          want => '200 ok' },
        { name => 'Cookie: 500 pairs, no key', h('/c/', Cookie => $many),
          want => '401 missing' },
        { name => 'Cookie: 500 pairs without "=", empty values and empty names, then the key',
          h('/c/', Cookie => join(';', @odd) . ";ak=$k"), want => '200 ok' },
        { name => 'Cookie: 300 empty "ak=" pairs, then the key',
          h('/c/', Cookie => join(';', ('ak=') x 300) . ";ak=$k"), want => '401 malformed' },
        { name => 'Cookie: 300 "ak" without "=", then the key',
          h('/c/', Cookie => join(';', ('ak') x 300) . ";ak=$k"), want => '200 ok' },
        { name => 'Cookie: 100 Cookie headers, the key in the last',
          h('/c/', (map { (Cookie => "n$_=1") } 1 .. 99), Cookie => "ak=$k"),
          want => '200 ok' };
    run_cases($port, \@cases);
}

is_deeply([ $n->problems ], [], 'no alert, crit, emerg or crash');

done_testing;
