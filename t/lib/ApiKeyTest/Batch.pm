# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Batch;

# Requests sent at once, one connection each (http_batch,
# http_concurrent): ->pending ->wait(timeout => 15) ->abort(reset => 1).
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time);
use IO::Select;
use Errno qw(EAGAIN EINTR);
use Socket ();

sub new {
    my ($class, $port, $reqs, %o) = @_;
    my $self = bless { port => $port, items => [], t0 => time }, $class;
    for my $r (@$reqs) {
        my %r = ref $r eq 'HASH' ? %$r : (path => $r);
        my $path = delete $r{path} // '/';
        my $item = { t0 => time, buf => '', done => 0 };
        my $s = ApiKeyTest::_connect($port, 5);
        if (!$s) {
            $item->{res} = ApiKeyTest::Response->error("connect: $!", 0);
            $item->{done} = 1;
        } else {
            $item->{s} = $s;
            $item->{req} = ApiKeyTest::_fmt_request($path, %r);
            $s->blocking(0);
        }
        push @{ $self->{items} }, $item;
    }
    # send everything (requests are small: one write each, normally)
    for my $it (grep { !$_->{done} } @{ $self->{items} }) {
        $it->{s}->blocking(1);
        ApiKeyTest::_write_all($it->{s}, $it->{req}, time + 5);
        $it->{s}->blocking(0);
    }
    return $self;
}

# the number of requests still without a complete answer
sub pending {
    my ($self) = @_;
    $self->_poll(0);
    return scalar grep { !$_->{done} } @{ $self->{items} };
}

sub _finish {
    my ($it, $eof) = @_;
    my $r = ApiKeyTest::Response->parse($it->{buf}, complete_only => !$eof);
    return 0 unless $r || $eof;
    $r //= ApiKeyTest::Response->error('connection closed', 0, $it->{buf});
    $r->{elapsed} = time - $it->{t0};
    $it->{res} = $r;
    $it->{done} = 1;
    close $it->{s};
    delete $it->{s};
    return 1;
}

sub _poll {
    my ($self, $wait) = @_;
    my %by_fd;
    for my $it (grep { !$_->{done} } @{ $self->{items} }) {
        $by_fd{ fileno $it->{s} } = $it;
    }
    return unless %by_fd;
    my $sel = IO::Select->new(map { $_->{s} } values %by_fd);
    for my $s ($sel->can_read($wait)) {
        my $it = $by_fd{ fileno $s };
        my $n = sysread($s, $it->{buf}, 65536, length $it->{buf});
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            _finish($it, 1);
            next;
        }
        if ($n == 0) { _finish($it, 1); next }
        _finish($it, 0);
    }
}

# wait(timeout => 15): every Response (status 0 / error "timeout" for the
# ones without an answer)
sub wait {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // 15);
    while (grep { !$_->{done} } @{ $self->{items} }) {
        my $left = $deadline - time;
        last if $left <= 0;
        $self->_poll($left > 0.2 ? 0.2 : $left);
    }
    for my $it (@{ $self->{items} }) {
        next if $it->{done};
        $it->{res} = ApiKeyTest::Response->error('timeout', time - $it->{t0},
                                                 $it->{buf});
        close $it->{s};
        delete $it->{s};
        $it->{done} = 1;
    }
    return map { $_->{res} } @{ $self->{items} };
}

# abort(): close every connection without reading (clients going away)
sub abort {
    my ($self, %o) = @_;
    for my $it (@{ $self->{items} }) {
        next if $it->{done};
        if ($o{reset}) {
            # RST instead of FIN
            setsockopt($it->{s}, Socket::SOL_SOCKET(), Socket::SO_LINGER(),
                       pack('ii', 1, 0));
        }
        close $it->{s};
        delete $it->{s};
        $it->{done} = 1;
        $it->{res} = ApiKeyTest::Response->error('aborted', 0);
    }
}

sub DESTROY {
    my ($self) = @_;
    for my $it (@{ $self->{items} // [] }) {
        close $it->{s} if $it->{s};
    }
}

1;
