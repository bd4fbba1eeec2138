# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::FakeRedis;

# A fake Redis on a loopback port, for the replies and the silences a real
# redis-server never gives: a forked process with one select loop, every
# connection's bytes parsed as RESP commands and answered by the test's
# function.  What it saw goes to files in its directory (the test process
# reads them; the fake has no other way back).
#
#   my $srv = ApiKeyTest::FakeRedis->start(
#       command => sub { my ($conn, @argv) = @_; return $bytes },  # or undef: no answer
#       accept  => sub { my ($conn) = @_; return 0 },   # optional: 0 closes it at once
#       record  => 1,         # optional: the bytes of connection N in $dir/conn-N
#       lifetime => 90,       # optional: seconds before the fake exits by itself
#   );
#   $srv->port, $srv->pid, $srv->dir, $srv->file('name'), $srv->stop
#
# $conn: { n => the connection's number (1, 2, ... in accept order),
# sock => its socket, dir => the directory, state => {} (the test's, per
# connection) }.  Without `command` nothing is ever answered.
#
# ApiKeyTest::FakeRedis::reply(\@argv, %o) answers as a plain Redis would:
# PING +PONG, SUBSCRIBE / PSUBSCRIBE confirmed channel by channel, HGETALL
# with $o{hgetall} (default "*0\r\n": no record), anything else +OK.
# take_command(\$buf) takes one RESP command off the front of a buffer.
#
# Every fake still running is stopped when the test process ends.

use strict;
use warnings;
use v5.36;

use IO::Socket::INET;
use IO::Select;
use POSIX ();

my %RUNNING;    # pid => the pid of the process that started it

END {
    local $?;
    for my $pid (grep { $RUNNING{$_} == $$ } keys %RUNNING) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

sub start {
    my ($class, %o) = @_;
    my $dir = ApiKeyTest::tmpdir();
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 128, ReuseAddr => 1)
        or die "fake redis: listen: $!";
    my $port = $l->sockport;
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        $SIG{ALRM} = sub { POSIX::_exit(0) };
        $SIG{TERM} = sub { POSIX::_exit(0) };
        alarm($o{lifetime} // 90);
        _serve($l, $dir, \%o);
        POSIX::_exit(0);
    }

    close $l;
    $RUNNING{$pid} = $$;
    return bless { pid => $pid, port => $port, dir => $dir }, $class;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }

# the text of a file the fake wrote ('' when there is none yet)
sub file {
    my ($self, $name) = @_;
    my $f = "$self->{dir}/$name";
    return -e $f ? ApiKeyTest::slurp($f) : '';
}

sub stop {
    my ($self) = @_;
    return unless delete $RUNNING{ $self->{pid} };
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
}

sub _serve {
    my ($l, $dir, $o) = @_;
    my $sel = IO::Select->new($l);
    my (%conn, $n);

    while (1) {
        for my $s ($sel->can_read(1)) {
            if ($s == $l) {
                my $c = $l->accept or next;
                my $cn = { n => ++$n, sock => $c, dir => $dir, state => {},
                           buf => '' };
                if ($o->{record}) {
                    open $cn->{rec}, '>', "$dir/conn-$n" or die;
                    $cn->{rec}->autoflush(1);
                }
                if ($o->{accept} && !$o->{accept}->($cn)) {
                    close $c;
                    next;
                }
                $conn{ fileno $c } = $cn;
                $sel->add($c);
                next;
            }

            my $cn = $conn{ fileno $s };
            my $got = sysread($s, my $chunk, 65536);
            if (!$got) {
                $sel->remove($s);
                delete $conn{ fileno $s };
                close $s;
                next;
            }
            print { $cn->{rec} } $chunk if $cn->{rec};
            next unless $o->{command};

            $cn->{buf} .= $chunk;
            while (my @argv = take_command(\$cn->{buf})) {
                my $out = $o->{command}->($cn, @argv);
                syswrite($s, $out) if defined $out && length $out;
            }
        }
    }
}

sub reply {
    my ($argv, %o) = @_;
    my $cmd = uc $argv->[0];

    return $o{hgetall} // "*0\r\n" if $cmd eq 'HGETALL';
    return "+PONG\r\n" if $cmd eq 'PING';

    if ($cmd eq 'SUBSCRIBE' || $cmd eq 'PSUBSCRIBE') {
        my $kind = lc $cmd;
        my $out = '';
        for my $i (1 .. $#$argv) {
            $out .= "*3\r\n" . bulk($kind) . bulk($argv->[$i]) . ":$i\r\n";
        }
        return $out;
    }

    return "+OK\r\n";
}

sub bulk { '$' . length($_[0]) . "\r\n$_[0]\r\n" }

sub take_command {
    my ($buf) = @_;
    return () unless $$buf =~ /\A\*(\d+)\r\n/;
    my ($n, $pos) = ($1, length $&);
    my @argv;
    for (1 .. $n) {
        return () unless substr($$buf, $pos) =~ /\A\$(\d+)\r\n/;
        my $len = $1;
        $pos += length $&;
        return () if length($$buf) < $pos + $len + 2;
        push @argv, substr($$buf, $pos, $len);
        $pos += $len + 2;
    }
    substr($$buf, 0, $pos) = '';
    return @argv;
}

1;
