# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Policy;

# Helpers for the per-key policy tests (t/3*.t: ips, referrers, scopes,
# rate, quota), on top of ApiKeyTest:
#
#   ipv6_loopback()                       # true if [::1] can be bound here
#   http6_get($port, $path, headers => ...)   # a request to [::1]:port
#   static_site($n)                       # html/ok.txt for "try_files /ok.txt"
#   http_load(targets => [ { port =>, path =>, headers => } ...],
#             conns => 40, total => 900, timeout => 30)
#                                         # keep-alive load: every Response,
#                                         # with ->{target} (its index)
#   window_bounds('hour'|'day'|'month', $now)  -> ($start, $end), UTC
#   avoid_window_edge('hour'|'day', $margin)   # sleeps past a window edge
#                                         # that is less than $margin away
#   usage_key($hash, $period, $start, prefix => 'apikey:')
#   status_counts(@responses)             # { "200 ok" => n, "429 ..." => n }

use strict;
use warnings;
use v5.36;

use Exporter 'import';
use Time::HiRes qw(time sleep);
use IO::Socket::IP;
use IO::Select;
use POSIX ();
use Errno qw(EAGAIN EINTR EINPROGRESS EWOULDBLOCK);
use Socket qw(AF_INET6 SOCK_STREAM);

use ApiKeyTest ();

our @EXPORT = qw(ipv6_loopback http6_get static_site http_load window_bounds
                 avoid_window_edge usage_key status_counts xkey);

# { 'X-API-Key' => $key, more headers... }
sub xkey {
    my ($key, %h) = @_;
    return { 'X-API-Key' => $key, %h };
}

sub ipv6_loopback {
    my $s = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0,
                                Proto => 'tcp', Listen => 1,
                                Family => AF_INET6);
    return 0 unless $s;
    close $s;
    return 1;
}

sub http6_get {
    my ($port, $path, %o) = @_;
    my $t0 = time;
    my $s = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $port,
                                Proto => 'tcp', Timeout => 5)
        or return ApiKeyTest::Response->error("connect [::1]: $!", time - $t0);
    my $req = ApiKeyTest::_fmt_request($path, %o, method => 'GET');
    ApiKeyTest::_write_all($s, $req, time + 5);
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + ($o{timeout} // 10);
    while (time < $deadline) {
        next unless $sel->can_read($deadline - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        next if !defined $n && ($! == EINTR || $! == EAGAIN);
        last unless $n;
        last if ApiKeyTest::Response->parse($buf, complete_only => 1);
    }
    close $s;
    my $res = ApiKeyTest::Response->parse($buf)
        // return ApiKeyTest::Response->error('bad response', time - $t0, $buf);
    $res->{elapsed} = time - $t0;
    return $res;
}

# a static file for "try_files /ok.txt =404" (the access phase runs before
# try_files, unlike "return", which would answer before any key check)
sub static_site {
    my ($n) = @_;
    ApiKeyTest::spew($n->dir . '/html/ok.txt', "ok\n", 0644);
}

# Keep-alive load: `conns` connections, connection k talking to
# targets->[k % @targets] only, each sending its next request when the
# previous answer has arrived, until `total` requests are answered.  A
# connection the server closes is opened again.  Returns the Responses in
# the order they were sent, each with ->{target} (the index of its target).
sub http_load {
    my (%o) = @_;
    my @targets = @{ $o{targets} };
    my $conns = $o{conns} // 40;
    my $total = $o{total} // 100;
    my $deadline = time + ($o{timeout} // 30);
    my @res;
    my $next = 0;
    my @c = map { { t => $_ % @targets } } 0 .. $conns - 1;

    my $send = sub {
        my ($c) = @_;
        return 0 if $next >= $total;
        my $t = $targets[ $c->{t} ];
        if (!$c->{s}) {
            $c->{s} = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                PeerPort => $t->{port}, Proto => 'tcp', Timeout => 5)
                or die "connect to $t->{port}: $!";
        }
        $c->{i} = $next++;
        $c->{buf} = '';
        $c->{t0} = time;
        my $req = ApiKeyTest::_fmt_request($t->{path} // '/',
            headers => $t->{headers} // {}, keepalive => 1, method => 'GET');
        $c->{s}->blocking(1);
        ApiKeyTest::_write_all($c->{s}, $req, time + 5);
        $c->{s}->blocking(0);
        return 1;
    };

    $send->($_) for @c;

    while (grep { defined $_->{i} } @c) {
        my $left = $deadline - time;
        last if $left <= 0;
        my %fd = map { (fileno $_->{s}) => $_ } grep { defined $_->{i} } @c;
        my $sel = IO::Select->new(map { $_->{s} } values %fd);
        for my $s ($sel->can_read($left > 0.5 ? 0.5 : $left)) {
            my $c = $fd{ fileno $s };
            my $n = sysread($s, $c->{buf}, 65536, length $c->{buf});
            next if !defined $n && ($! == EINTR || $! == EAGAIN);
            my $r = ApiKeyTest::Response->parse($c->{buf}, complete_only => 1);
            my $closed = !$n;
            if (!$r && $closed) {
                $r = ApiKeyTest::Response->parse($c->{buf})
                  // ApiKeyTest::Response->error('connection closed', 0, $c->{buf});
            }
            next unless $r;
            $r->{elapsed} = time - $c->{t0};
            $r->{target} = $c->{t};
            $res[ $c->{i} ] = $r;
            delete $c->{i};
            if ($closed || lc($r->header('connection') // '') eq 'close') {
                close $c->{s};
                delete $c->{s};
            }
            $send->($c);
        }
    }
    for my $c (@c) {
        if (defined $c->{i}) {
            $res[ $c->{i} ] = ApiKeyTest::Response->error('timeout', 0, $c->{buf});
            $res[ $c->{i} ]{target} = $c->{t};
        }
        close $c->{s} if $c->{s};
    }
    return @res;
}

# calendar windows in UTC, as the module counts them
sub window_bounds {
    my ($period, $now) = @_;
    $now //= time;
    $now = int $now;
    if ($period eq 'hour') {
        my $s = $now - $now % 3600;
        return ($s, $s + 3600);
    }
    if ($period eq 'day') {
        my $s = $now - $now % 86400;
        return ($s, $s + 86400);
    }
    if ($period eq 'month') {
        my @t = gmtime $now;
        require Time::Local;
        my $s = Time::Local::timegm(0, 0, 0, 1, $t[4], $t[5]);
        my ($m, $y) = ($t[4] + 1, $t[5]);
        if ($m == 12) { $m = 0; $y++ }
        my $e = Time::Local::timegm(0, 0, 0, 1, $m, $y);
        return ($s, $e);
    }
    die "window_bounds: unknown period $period";
}

# a test that counts over a window must not straddle its end
sub avoid_window_edge {
    my ($period, $margin) = @_;
    my (undef, $end) = window_bounds($period, time);
    my $left = $end - time;
    if ($left < $margin) {
        Test::More::note(sprintf 'waiting %.1fs for the next %s window',
                         $left + 1, $period) if $INC{'Test/More.pm'};
        sleep $left + 1;
    }
}

sub usage_key {
    my ($hash, $period, $start, %o) = @_;
    my $prefix = $o{prefix} // 'apikey:';
    return "${prefix}usage:{$prefix$hash}:$period:$start";
}

sub status_counts {
    my (@res) = @_;
    my %c;
    for my $r (@res) {
        my $k = $r->status . ' ' . ($r->header('X-Status') // '-');
        $k = 'error ' . $r->error_message if !$r->status;
        $c{$k}++;
    }
    return \%c;
}

1;
