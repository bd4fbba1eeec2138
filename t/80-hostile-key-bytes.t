# SPDX-License-Identifier: BSD-2-Clause
# Hostile input, client side (1): the bytes and the length of a key.
#
# Control bytes, NUL, DEL, bytes above 0x7e and UTF-8 in a header value and
# in a query argument (raw, as far as nginx lets them through, and
# percent-encoded: every byte value), malformed percent-encoding, long keys
# (8 KB, 64 KB: what nginx itself answers past large_client_header_buffers,
# and that the module answers below it).  Each input gets a precise answer
# (README, Outcomes): never a 200 but for the key itself, never a crash,
# never the key in a log or in the answer (the final checks).
#
# Already covered elsewhere, not repeated: 256/257 bytes, \x01 and \x7f in a
# header (t/02), dangling '%', '%4', '%zz', %00, %20, '+' and a fully
# encoded 256-byte key (t/52).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Hostile;

require_module();

my $r = ApiKeyTest::Redis->start;

(my $echo = echo_server())
    =~ s/api_key off;/api_key off;\n        large_client_header_buffers 4 128k;/;

my $http = <<'EOT' . $echo;
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        api_key_source header:X-API-Key query:api_key;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }

    # the same, with room for 64 KB header lines and request lines
    server {
        listen 127.0.0.1:%%PORT_BIG%%;
        large_client_header_buffers 4 128k;
        api_key keys;
        api_key_source header:X-API-Key query:api_key;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
# a key in an argument that is not the location's source is not stripped:
# it is logged like any other argument
$n->expect_key_leak(qr/api%5Fkey=/);
my $port = $n->port;
my $big = $n->port('big');

my $k = random_key('hb');                   # a valid key, 30 bytes
add_key($r, $k, owner => 'bytes');
my $ik = 9;                                 # where bytes go into it: past
                                            # the first 8-byte block
sub ins { my ($s, $at, $b) = @_; substr($s, 0, $at) . $b . substr($s, $at) }
sub hdr { [ 'X-API-Key' => $_[0] ] }
sub pct { join '', map { sprintf '%%%02X', ord } split //, $_[0] }

# --- a header value: control bytes, NUL, high bytes, UTF-8 ------------------
{
    my @cases = (
        { name => 'header: the key', headers => hdr($k), want => '200 ok',
          owner => 'bytes' },
        { name => 'header: leading spaces (nginx trims them)',
          headers => hdr("   $k"), want => '200 ok' },
        { name => 'header: trailing spaces (nginx trims them)',
          headers => hdr("$k   "), want => '200 ok' },
        { name => 'header: a space inside', headers => hdr(ins($k, $ik, ' ')),
          want => '401 malformed' },
    );
    # every control byte nginx passes in a header value (not CR, LF, NUL),
    # first, inside and last
    for my $c ((map { chr } 1 .. 8, 11, 12, 14 .. 31), "\x7f", "\t") {
        for my $at (0, $ik, length $k) {
            next if $c eq "\t" && ($at == 0 || $at == length $k);  # blanks
            push @cases, { name => 'header: ' . byte_name($c) . " at byte $at",
                           headers => hdr(ins($k, $at, $c)),
                           want => '401 malformed' };
        }
    }
    for my $c (map { chr } 0x80, 0xa0, 0xc0, 0xfe, 0xff) {
        push @cases, { name => 'header: byte ' . byte_name($c) . ' inside',
                       headers => hdr(ins($k, $ik, $c)), want => '401 malformed' };
    }
    my %utf8 = (
        "e with acute"           => "\xc3\xa9",
        "cyrillic word"          => "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
        "an emoji (4 bytes)"     => "\xf0\x9f\x94\x91",
        "zero-width space"       => "\xe2\x80\x8b",
        "no-break space"         => "\xc2\xa0",
        "byte order mark"        => "\xef\xbb\xbf",
        "overlong '/'"           => "\xc0\xaf",
        "a lone continuation"    => "\x80",
        "fullwidth 'k'"          => "\xef\xbd\x8b",
        "surrogate (CESU)"       => "\xed\xa0\x80",
    );
    for my $what (sort keys %utf8) {
        push @cases,
            { name => "header: UTF-8 $what inside the key",
              headers => hdr(ins($k, $ik, $utf8{$what})), want => '401 malformed' },
            { name => "header: UTF-8 $what before the key",
              headers => hdr($utf8{$what} . $k), want => '401 malformed' };
    }
    push @cases, { name => 'header: a key of UTF-8 only',
                   headers => hdr("\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87" x 4),
                   want => '401 malformed' };
    run_cases($port, \@cases);
}

# --- a header value nginx refuses itself: NUL, a bare CR --------------------
{
    my @cases;
    for my $v ([ 'NUL inside', ins($k, $ik, "\0") ], [ 'NUL first', "\0$k" ],
               [ 'a bare CR inside', ins($k, $ik, "\r") ])
    {
        push @cases, { name => "header: $v->[0] (nginx: 400)",
                       raw => "GET / HTTP/1.1\r\nHost: x\r\nX-API-Key: $v->[1]\r\n"
                              . "Connection: close\r\n\r\n",
                       want => '400 -' };
    }
    run_cases($port, \@cases);
}

# --- a query argument: every byte value, percent-encoded --------------------
# decoded, a printable byte (0x21..0x7e) makes another key (unknown); any
# other is malformed, wherever it is in the key (the check reads eight bytes
# at a time, then the rest one by one)
{
    my @cases;
    for my $b (0 .. 255) {
        my $printable = $b >= 0x21 && $b <= 0x7e;
        my @at = $printable ? ($ik) : (0, 7, $ik, 16, length $k);
        for my $at (@at) {
            push @cases, { name => sprintf('query: %%%02X at byte %d', $b, $at),
                           path => '/?api_key=' . ins($k, $at, sprintf '%%%02X', $b),
                           want => $printable ? '401 unknown' : '401 malformed' };
        }
    }
    push @cases, { name => 'query: the key, every byte encoded',
                   path => '/?api_key=' . pct($k), want => '200 ok', owner => 'bytes' };
    push @cases, { name => 'query: UTF-8 (e with acute) encoded',
                   path => '/?api_key=' . ins($k, $ik, '%C3%A9'), want => '401 malformed' };
    push @cases, { name => 'query: the key with "%7E" (~) is another key',
                   path => "/?api_key=$k%7E", want => '401 unknown' };
    run_cases($port, \@cases);
}

# --- a query argument: malformed percent-encoding ------------------------------
{
    my @bad = ('%%', '%%41', '%4G', '%G4', '%-1', '%+1', '%u0041', '%%%',
               '%0', '%4%41', '%%2541', '%x41', '%4+');
    my @cases;
    for my $e (@bad) {
        for my $where ('before', 'after') {
            push @cases, { name => "query: '$e' $where the key",
                           path => '/?api_key=' . ($where eq 'before' ? "$e$k" : "$k$e"),
                           want => '401 malformed' };
        }
    }
    push @cases,
        { name => "query: '%2525' is the literal '%25' (another key)",
          path => "/?api_key=$k%2525", want => '401 unknown' },
        { name => "query: '%' alone", path => '/?api_key=%', want => '401 malformed' },
        { name => "query: an empty value", path => '/?api_key=', want => '401 malformed' },
        { name => "query: the name without '='", path => '/?api_key', want => '401 missing' },
        { name => "query: the name in upper case", path => "/?API_KEY=$k",
          want => '200 ok' },
        { name => "query: the name percent-encoded is another name",
          path => "/?api%5Fkey=$k", want => '401 missing' },
        { name => "query: twice, the empty one first", path => "/?api_key=&api_key=$k",
          want => '401 malformed' },
        { name => "query: twice, the valid one first",
          path => "/?api_key=$k&api_key=" . random_key('hq'), want => '200 ok' },
        { name => "query: twice, an unknown one first",
          path => '/?api_key=' . random_key('hq') . "&api_key=$k", want => '401 unknown' },
        { name => "query: empty arguments around it", path => "/?&&a=1&&api_key=$k&&",
          want => '200 ok' },
        { name => "query: ';' is no separator", path => "/?api_key=$k;a=1",
          want => '401 unknown' },
        { name => "query: '#' is part of the value (no fragment on the wire)",
          path => "/?api_key=$k%23x", want => '401 unknown' };
    run_cases($port, \@cases);
}

# --- the request line: raw control bytes and high bytes ------------------------
{
    my @cases;
    for my $c ("\x01", "\x1f", "\x7f", "\t") {
        push @cases, { name => 'request line: raw ' . byte_name($c) . ' in the key (nginx: 400)',
                       raw => 'GET /?api_key=' . ins($k, $ik, $c) . " HTTP/1.1\r\n"
                              . "Host: x\r\nConnection: close\r\n\r\n",
                       want => '400 -' };
    }
    push @cases, { name => 'request line: NUL in the key (nginx: 400)',
                   raw => 'GET /?api_key=' . ins($k, $ik, "\0") . " HTTP/1.1\r\n"
                          . "Host: x\r\nConnection: close\r\n\r\n",
                   want => '400 -' };
    for my $c ("\x80", "\xff", "\xc3\xa9") {
        push @cases, { name => 'request line: raw ' . join(' ', map { byte_name($_) } split //, $c)
                               . ' in the key',
                       raw => 'GET /?api_key=' . ins($k, $ik, $c) . " HTTP/1.1\r\n"
                              . "Host: x\r\nConnection: close\r\n\r\n",
                       want => '401 malformed' };
    }
    run_cases($port, \@cases);
}

# --- long keys: what nginx answers past its buffers, the module below them -----
{
    my $k8 = 'L' . random_base62(8191);         # 8 KB
    my $k64 = 'H' . random_base62(65535);       # 64 KB
    track_key($k8, $k64);
    my @cases = (
        { name => 'header: 1 KB', headers => hdr($k x 35), want => '401 malformed' },
        { name => 'header: 8000 bytes (below the 8k buffer)',
          headers => hdr(substr($k8, 0, 8000)), want => '401 malformed' },
        { name => 'header: the valid key + 8000 bytes',
          headers => hdr($k . substr($k8, 0, 8000)), want => '401 malformed' },
        { name => 'header: 8 KB (past large_client_header_buffers 4 8k: nginx 400)',
          headers => hdr($k8), want => '400 -' },
        { name => 'header: 64 KB (nginx 400)', headers => hdr($k64), want => '400 -' },
        { name => 'header: the valid key + 8 KB (nginx 400)',
          headers => hdr($k . $k8), want => '400 -' },
        { name => 'query: 8000 bytes (below the 8k buffer)',
          path => '/?api_key=' . substr($k8, 0, 8000), want => '401 malformed' },
        { name => 'query: 8 KB (a request line past the buffers: nginx 414)',
          path => "/?api_key=$k8", want => '414 -' },
        { name => 'query: 64 KB (nginx 414)', path => "/?api_key=$k64", want => '414 -' },
        { name => 'header: many 4 KB headers, 40 KB in all (nginx 400)',
          headers => [ (map { ("X-Fill-$_" => 'f' x 4000) } 1 .. 10), @{ hdr($k) } ],
          want => '400 -' },
    );
    run_cases($port, \@cases);

    @cases = (
        { name => 'big buffers: header 8 KB', headers => hdr($k8), want => '401 malformed' },
        { name => 'big buffers: header 64 KB', headers => hdr($k64), want => '401 malformed' },
        { name => 'big buffers: query 8 KB', path => "/?api_key=$k8", want => '401 malformed' },
        { name => 'big buffers: query 64 KB', path => "/?api_key=$k64",
          want => '401 malformed' },
        { name => 'big buffers: query 64 KB, every byte encoded (decoding stops early)',
          path => '/?api_key=' . pct(substr($k64, 0, 21000)), want => '401 malformed' },
        { name => 'big buffers: the key after 64 KB of other headers',
          headers => [ (map { ("X-Fill-$_" => 'f' x 4000) } 1 .. 16), @{ hdr($k) } ],
          want => '200 ok', owner => 'bytes' },
    );
    run_cases($big, \@cases);

    # nginx's own line for a header line too long holds its beginning: the
    # valid key sent first there (an error while reading the request, README
    # Security notes)
    $n->expect_key_leak(NGINX_REFUSED_HEADER);
}

my @w = $n->worker_pids;
is(scalar @w, 1, 'one worker, still running');
is_deeply([ $n->problems ], [], 'no alert, crit, emerg or crash');

done_testing;
