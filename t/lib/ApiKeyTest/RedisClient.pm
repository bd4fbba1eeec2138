# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::RedisClient;

# A tiny RESP2 client.  ApiKeyTest::RedisClient->new(port => P | path => S,
# host => H (default 127.0.0.1), user => U, password => P, timeout => 5,
# tls => { cert => PEM, key => PEM (a client certificate),
#          verify => 1, ca => PEM, name => NAME (check the server) }).
# With tls the connection is IO::Socket::SSL (non-blocking after the
# handshake); without verify the server certificate is not checked.  cmd(@args) returns the decoded
# reply (arrays as array refs, nil as undef) and dies on an error reply or a
# timeout; try_cmd(@args) returns ($reply, $error_string).
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Errno qw(EAGAIN EINTR);
use Carp qw(croak);

sub new {
    my ($class, %o) = @_;
    my $self = bless { %o, timeout => $o{timeout} // 5 }, $class;
    $self->_connect;
    return $self;
}

sub _connect {
    my ($self) = @_;
    my $s;
    if (defined $self->{path}) {
        $s = IO::Socket::UNIX->new(Peer => $self->{path}, Type => Socket::SOCK_STREAM())
            or croak "redis connect $self->{path}: $!";
    } elsif (my $t = $self->{tls}) {
        require IO::Socket::SSL;
        my $host = $self->{host} // '127.0.0.1';
        my %v = $t->{verify}
            ? (SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_PEER(),
               SSL_ca_file => $t->{ca},
               SSL_verifycn_scheme => 'default',
               SSL_verifycn_name => $t->{name} // $host)
            : (SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE());
        my $sni = $t->{name} // $host;
        $s = IO::Socket::SSL->new(
            PeerAddr => $host, PeerPort => $self->{port}, Proto => 'tcp',
            Timeout => $self->{timeout}, %v,
            SSL_hostname => ($sni =~ /^[\d.]+$|:/ ? '' : $sni),
            (defined $t->{cert} ? (SSL_cert_file => $t->{cert},
                                   SSL_key_file => $t->{key}) : ()),
        ) or croak "redis connect $host:$self->{port} (TLS): "
            . ($IO::Socket::SSL::SSL_ERROR || $!);
        $s->blocking(0);
    } else {
        my $host = $self->{host} // '127.0.0.1';
        $s = IO::Socket::INET->new(PeerAddr => $host,
                                   PeerPort => $self->{port}, Proto => 'tcp',
                                   Timeout => $self->{timeout})
            or croak "redis connect $host:$self->{port}: $!";
    }
    $self->{s} = $s;
    $self->{buf} = '';
    if (defined $self->{password}) {
        my @a = defined $self->{user}
            ? ('AUTH', $self->{user}, $self->{password})
            : ('AUTH', $self->{password});
        $self->cmd(@a);
    }
    $self->cmd('SELECT', $self->{db}) if $self->{db};
    return $s;
}

sub close {
    my ($self) = @_;
    close $self->{s} if $self->{s};
    delete $self->{s};
}

sub _encode {
    my (@args) = @_;
    my $out = '*' . scalar(@args) . "\r\n";
    for my $a (@args) {
        $a = "$a";
        $out .= '$' . length($a) . "\r\n$a\r\n";
    }
    return $out;
}

sub send_only {
    my ($self, @args) = @_;
    $self->_connect unless $self->{s};
    ApiKeyTest::_write_all($self->{s}, _encode(@args), time + $self->{timeout})
        or do { $self->close; croak "redis write: $!" };
}

sub _fill {
    my ($self, $deadline) = @_;
    my $left = $deadline - time;
    die "redis: timeout waiting for a reply\n" if $left <= 0;
    # TLS: bytes already decrypted are not seen by select
    my $pending = $self->{tls} && $self->{s}->pending;
    my $sel = IO::Select->new($self->{s});
    return unless $pending || $sel->can_read($left);
    my $n = sysread($self->{s}, $self->{buf}, 65536, length $self->{buf});
    if (!defined $n) {
        return if $! == EINTR || $! == EAGAIN;
        $self->close;
        die "redis: read error: $!\n";
    }
    if ($n == 0) {
        $self->close;
        die "redis: connection closed\n";
    }
}

sub _line {
    my ($self, $deadline) = @_;
    while (1) {
        my $i = index($self->{buf}, "\r\n");
        if ($i >= 0) {
            my $l = substr($self->{buf}, 0, $i);
            substr($self->{buf}, 0, $i + 2) = '';
            return $l;
        }
        $self->_fill($deadline);
    }
}

sub _bytes {
    my ($self, $n, $deadline) = @_;
    $self->_fill($deadline) while length($self->{buf}) < $n + 2;
    my $d = substr($self->{buf}, 0, $n);
    substr($self->{buf}, 0, $n + 2) = '';
    return $d;
}

# read_reply(timeout => T): one decoded reply; errors as RedisError objects
sub read_reply {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // $self->{timeout});
    return $self->_reply($deadline);
}

sub _reply {
    my ($self, $deadline) = @_;
    my $l = $self->_line($deadline);
    my $t = substr($l, 0, 1, '');
    return $l if $t eq '+';
    return ApiKeyTest::RedisError->new($l) if $t eq '-';
    return $l + 0 if $t eq ':';
    if ($t eq '$') {
        return undef if $l < 0;
        return $self->_bytes($l, $deadline);
    }
    if ($t eq '*') {
        return undef if $l < 0;
        return [ map { $self->_reply($deadline) } 1 .. $l ];
    }
    die "redis: protocol error: unexpected '$t$l'\n";
}

# replies that arrive within $wait seconds (MONITOR, pub/sub)
sub read_available {
    my ($self, $wait) = @_;
    my @out;
    while (1) {
        my $r = eval { $self->read_reply(timeout => $wait) };
        last if $@;
        push @out, $r;
    }
    return @out;
}

sub try_cmd {
    my ($self, @args) = @_;
    my $r = eval {
        $self->send_only(@args);
        $self->read_reply;
    };
    if (my $e = $@) {
        $self->close;    # the stream is out of step now
        return (undef, "$e");
    }
    return (undef, $r->msg) if ref $r eq 'ApiKeyTest::RedisError';
    return ($r, undef);
}

sub cmd {
    my ($self, @args) = @_;
    my ($r, $err) = $self->try_cmd(@args);
    croak "redis command '$args[0]' failed: $err" if defined $err;
    return $r;
}

sub DESTROY { $_[0]->close }

1;
