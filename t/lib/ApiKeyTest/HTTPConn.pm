# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::HTTPConn;

# A keep-alive connection: my $c = ApiKeyTest::HTTPConn->new($port);
# $c->get($path, headers => ...) (reconnects if the server closed it).
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time);
use IO::Select;
use Errno qw(EAGAIN EINTR);

sub new {
    my ($class, $port, %o) = @_;
    my $self = bless { port => $port, timeout => $o{timeout} // 10,
                       connects => 0 }, $class;
    return $self;
}

sub connects { $_[0]{connects} }

sub _ensure {
    my ($self) = @_;
    return $self->{s} if $self->{s};
    $self->{s} = ApiKeyTest::_connect($self->{port}, $self->{timeout})
        or return undef;
    $self->{connects}++;
    $self->{buf} = '';
    return $self->{s};
}

sub get {
    my ($self, $path, %o) = @_;
    return $self->request($path, %o, method => 'GET');
}

sub request {
    my ($self, $path, %o) = @_;
    my $t0 = time;
    my $s = $self->_ensure
        or return ApiKeyTest::Response->error("connect: $!", time - $t0);
    my $req = ApiKeyTest::_fmt_request($path, %o, keepalive => 1);
    my $deadline = $t0 + ($o{timeout} // $self->{timeout});
    unless (ApiKeyTest::_write_all($s, $req, $deadline)) {
        $self->close;
        return ApiKeyTest::Response->error("write: $!", time - $t0);
    }
    my $sel = IO::Select->new($s);
    my $buf = '';
    while (1) {
        if (my $r = ApiKeyTest::Response->parse($buf, complete_only => 1)) {
            $r->{elapsed} = time - $t0;
            my $conn = lc($r->header('connection') // '');
            $self->close if $conn eq 'close';
            return $r;
        }
        my $left = $deadline - time;
        if ($left <= 0) {
            $self->close;
            return ApiKeyTest::Response->error('timeout', time - $t0, $buf);
        }
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
        }
        if (!$n) {
            $self->close;
            my $r = ApiKeyTest::Response->parse($buf);
            if ($r) { $r->{elapsed} = time - $t0; return $r }
            return ApiKeyTest::Response->error('connection closed',
                                               time - $t0, $buf);
        }
    }
}

sub close {
    my ($self) = @_;
    close $self->{s} if $self->{s};
    delete $self->{s};
}

sub DESTROY { $_[0]->close }

1;
