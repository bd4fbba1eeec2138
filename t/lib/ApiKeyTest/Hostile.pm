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
#   raw_exchange($port, $bytes, timeout => 5, responses => N)
#       sends $bytes on a new connection and reads until N responses are
#       complete or the server closes: the list of Responses.
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
use Test::More ();

use ApiKeyTest ();

our @EXPORT = qw(run_cases raw_exchange got byte_name NGINX_REFUSED_HEADER);

use constant NGINX_REFUSED_HEADER =>
    qr/\[info\] \d+#\d+: \*\d+ client sent (?:invalid|duplicate|too long) header line: /;

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
