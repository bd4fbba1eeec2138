# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Hostile;

# Helpers for the hostile-input corpus (t/80-*.t .. t/85-*.t), on top of
# ApiKeyTest.  A corpus is a table of cases, each an input and the answer
# expected for it, so that a case is one line to add:
#
#   run_cases($port, \@cases, %o)
#       every case a hash:
#         name    => 'what it is',
#         path    => '/p?x=1'            (default '/'),
#         headers => [ 'X-API-Key' => $v, ... ]  (sent as given, repeats kept),
#         raw     => "GET / HTTP/1.0\r\n\r\n"    (sent as is instead, on a
#                                          connection of its own),
#         want    => '401 malformed'     (status, then $api_key_status;
#                                          '400 -' when nginx itself answers,
#                                          before the module: no status),
#         owner   => 'acme'              (optional: $api_key_owner expected),
#       Requests go on one keep-alive connection (reopened when the server
#       closes it); each case is one test: "status outcome" as expected, no
#       raw key made by the key helpers in the answer (headers or body).
#       Needs "add_header X-Status $api_key_status always" and, for owner,
#       "add_header X-Owner $api_key_owner always" in the location.
#   raw_exchange($port, $bytes, timeout => 5, responses => N, head => 1)
#       sends $bytes on a new connection and reads until N responses are
#       complete or the server closes: the list of Responses.  head: the
#       answer to one HEAD request (read until the server closes).
#   h2_requests($port, [ [ $path, [ name => value, ... ] ], ... ], timeout => 10)
#       HTTP/2 with prior knowledge: every request a stream of one
#       connection, all sent at once (HEADERS frames, HPACK literals without
#       Huffman coding); returns { status => 401, body => '...', reset => 0 }
#       per request, in order, and { connection => 'goaway'|'closed'|'' }
#       last.  Only what the tests need: the status (as nginx encodes it),
#       DATA, RST_STREAM, SETTINGS/PING answered.
#   got($res)  "status outcome" of a response ("-" for no $api_key_status)
#   byte_name($c)  "0x1f" for a byte, for case names
#   NGINX_REFUSED_HEADER
#       nginx's own [info] lines about a header line it refused or ignored
#       while reading the request (invalid, duplicate, too long): they hold
#       the line as sent, a key there included (README, Security notes);
#       for $n->expect_key_leak in tests that send such lines on purpose

use strict;
use warnings;
use v5.36;

use Exporter 'import';
use Time::HiRes qw(time);
use IO::Select;
use Errno qw(EAGAIN EINTR);
use List::Util qw(max);
use Test::More ();

use ApiKeyTest ();

our @EXPORT = qw(run_cases raw_exchange got byte_name NGINX_REFUSED_HEADER
                 h2_requests);

use constant NGINX_REFUSED_HEADER =>
    qr/\[info\] \d+#\d+: \*\d+ client sent (?:(?:invalid|duplicate|too long) header line: |header "[^"]*" with invalid value: )/;

sub got {
    my ($res) = @_;
    return 'no answer: ' . ($res->error_message // '') unless $res->status;
    my $st = $res->header('X-Status');
    return $res->status . ' ' . (defined $st && length $st ? $st : '-');
}

sub byte_name { sprintf '0x%02x', ord $_[0] }

# the tracked keys found in $text
sub _echoed {
    my ($text) = @_;
    return grep { index($text, $_) >= 0 } ApiKeyTest::tracked_keys();
}

sub run_cases {
    my ($port, $cases, %o) = @_;
    my $c = ApiKeyTest::HTTPConn->new($port, timeout => $o{timeout} // 10);
    for my $case (@$cases) {
        my $res;
        if (defined $case->{raw}) {
            ($res) = raw_exchange($port, $case->{raw}, responses => 1);
            $res //= ApiKeyTest::Response->error('no response', 0);
        } else {
            $res = $c->get($case->{path} // '/', headers => $case->{headers} // []);
        }
        my $got = got($res);
        my $want = $case->{want};
        $want .= ' owner=' . $case->{owner} if defined $case->{owner};
        $got .= ' owner=' . ($res->header('X-Owner') // '') if defined $case->{owner};
        my @echo = _echoed($res->raw);
        my $ok = Test::More::ok($got eq $want && !@echo,
                                "$case->{name}: $case->{want}"
                                . (defined $case->{owner} ? " ($case->{owner})" : ''));
        unless ($ok) {
            Test::More::diag("got: $got" . (@echo ? ' (the answer holds a raw key)' : ''));
            Test::More::diag(substr($res->as_string, 0, 400));
        }
    }
    return;
}

sub raw_exchange {
    my ($port, $bytes, %o) = @_;
    my $timeout = $o{timeout} // 5;
    my $want = $o{responses} // 1;
    my $t0 = time;
    my $s = ApiKeyTest::_connect($port, $timeout)
        or return ApiKeyTest::Response->error("connect: $!", 0);
    ApiKeyTest::_write_all($s, $bytes, $t0 + $timeout);
    my $sel = IO::Select->new($s);
    my $buf = '';
    my @res;
    if ($o{head}) {
        while ($sel->can_read(max(0.01, $t0 + $timeout - time))) {
            my $n = sysread($s, $buf, 65536, length $buf);
            last unless $n;
        }
        close $s;
        $buf =~ s/\r\nContent-Length: \d+/\r\nContent-Length: 0/i;
        return grep { defined } ApiKeyTest::Response->parse($buf);
    }
    while (1) {
        # complete responses at the front of the buffer
        while (my $r = ApiKeyTest::Response->parse($buf, complete_only => 1)) {
            my $len = length($r->raw) - _rest_len($r);
            push @res, $r;
            substr($buf, 0, $len, '');
            last if @res >= $want;
        }
        last if @res >= $want;
        my $left = $t0 + $timeout - time;
        last if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            last;
        }
        last if $n == 0;
    }
    close $s;
    # what is left: a close-delimited answer
    if (@res < $want && length $buf) {
        my $r = ApiKeyTest::Response->parse($buf);
        push @res, $r if $r;
    }
    return @res;
}

# --- a minimal HTTP/2 client ---------------------------------------------------

sub _h2_frame {
    my ($type, $flags, $stream, $payload) = @_;
    my $len = length $payload;
    return pack('C3 C C N', $len >> 16, ($len >> 8) & 0xff, $len & 0xff,
                $type, $flags, $stream & 0x7fffffff) . $payload;
}

# an HPACK integer with an N-bit prefix
sub _hpack_int {
    my ($first, $bits, $v) = @_;
    my $max = (1 << $bits) - 1;
    return chr($first | $v) if $v < $max;
    my $s = chr($first | $max);
    $v -= $max;
    while ($v >= 128) { $s .= chr(($v & 0x7f) | 0x80); $v >>= 7 }
    return $s . chr($v);
}

# a literal header field without indexing, new name, no Huffman coding
sub _hpack_literal {
    my ($name, $value) = @_;
    return "\x00" . _hpack_int(0, 7, length $name) . $name
           . _hpack_int(0, 7, length $value) . $value;
}

my %H2_STATIC_STATUS = (8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400,
                        13 => 404, 14 => 500);

sub h2_requests {
    my ($port, $reqs, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $t0 = time;
    my $s = ApiKeyTest::_connect($port, $timeout) or die "connect: $!";
    my $out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . _h2_frame(4, 0, 0, '');
    my (%res, @ids);
    my $id = 1;
    for my $q (@$reqs) {
        my ($path, $hdrs) = @$q;
        my $block = join '', map { _hpack_literal(@$_) }
            [':method', 'GET'], [':scheme', 'http'], [':path', $path],
            [':authority', '127.0.0.1'],
            map { [ $hdrs->[2 * $_], $hdrs->[2 * $_ + 1] ] } 0 .. @{ $hdrs // [] } / 2 - 1;
        $out .= _h2_frame(1, 0x5, $id, $block);     # END_STREAM|END_HEADERS
        $res{$id} = { status => 0, body => '', reset => 0, done => 0 };
        push @ids, $id;
        $id += 2;
    }
    ApiKeyTest::_write_all($s, $out, $t0 + $timeout);
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $conn = '';
    my $open = @ids;
    while ($open > 0) {
        while (length $buf >= 9) {
            my ($l1, $l2, $l3, $type, $flags, $sid) = unpack 'C3 C C N', $buf;
            my $len = ($l1 << 16) | ($l2 << 8) | $l3;
            last if length $buf < 9 + $len;
            my $p = substr($buf, 9, $len);
            substr($buf, 0, 9 + $len, '');
            $sid &= 0x7fffffff;
            my $st = $res{$sid};
            if ($type == 4 && !($flags & 1)) {           # SETTINGS: ack
                ApiKeyTest::_write_all($s, _h2_frame(4, 1, 0, ''), time + 2);
            } elsif ($type == 6 && !($flags & 1)) {      # PING: pong
                ApiKeyTest::_write_all($s, _h2_frame(6, 1, 0, $p), time + 2);
            } elsif ($type == 7) {                       # GOAWAY
                $conn = 'goaway';
                $open = 0;
            } elsif ($st && $type == 3) {                # RST_STREAM
                $st->{reset} = 1;
                $st->{done}++ or $open--;
            } elsif ($st && ($type == 1 || $type == 0)) {
                if ($type == 1) {
                    my $pad = $flags & 0x8 ? ord substr($p, 0, 1) : 0;
                    $p = substr($p, $flags & 0x8 ? 1 : 0);
                    $p = substr($p, 5) if $flags & 0x20;          # PRIORITY
                    my $b = ord $p;
                    if ($b & 0x80 && $H2_STATIC_STATUS{$b & 0x7f}) {
                        $st->{status} = $H2_STATIC_STATUS{$b & 0x7f};
                    } elsif (($b == 0x48 || $b == 0x08) && ord(substr($p, 1, 1)) == 3) {
                        $st->{status} = substr($p, 2, 3) + 0;
                    }
                } else {
                    my $pad = $flags & 0x8 ? ord substr($p, 0, 1) : 0;
                    $st->{body} .= substr($p, $flags & 0x8 ? 1 : 0,
                                          length($p) - ($flags & 0x8 ? 1 : 0) - $pad);
                    # give the window back, so that big bodies keep coming
                    ApiKeyTest::_write_all($s, _h2_frame(8, 0, 0, pack('N', $len))
                        . _h2_frame(8, 0, $sid, pack('N', $len)), time + 2) if $len;
                }
                if ($flags & 1) { $st->{done}++ or $open-- }  # END_STREAM
            }
        }
        last if $open <= 0;
        my $left = $t0 + $timeout - time;
        if ($left <= 0) { $conn = 'timeout'; last }
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            $conn = 'closed';
            last;
        }
        if ($n == 0) { $conn = 'closed'; last }
    }
    close $s;
    return ((map { delete $res{$_}{done}; $res{$_} } @ids), { connection => $conn });
}

# the bytes after the end of a parsed response in its raw buffer
sub _rest_len {
    my ($r) = @_;
    my $raw = $r->raw;
    my $he = index($raw, "\r\n\r\n") + 4;
    my $body_raw_len;
    if (lc($r->header('transfer-encoding') // '') =~ /chunked/) {
        # find the end of the chunked body: the "0\r\n\r\n" after the head
        my $p = $he;
        while (1) {
            my $e = index($raw, "\r\n", $p);
            my ($size) = substr($raw, $p, $e - $p) =~ /^([0-9a-fA-F]+)/;
            $size = hex $size;
            $p = $e + 2;
            if ($size == 0) {
                $p = index($raw, "\r\n", $p) + 2;
                last;
            }
            $p += $size + 2;
        }
        $body_raw_len = $p - $he;
    } else {
        $body_raw_len = length($r->body // '');
    }
    return length($raw) - $he - $body_raw_len;
}

1;
