# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Load;

# A keep-alive HTTP load generator that counts every answer, for the fault
# tests (t/7*, make chaos) and the soak test (make soak): it runs in a child
# process, so the test injects faults while it runs.
#
#   my $l = ApiKeyTest::Load->start(
#       port => $n->port, conns => 64, duration => 10,
#       rate => 0,              # requests/s over all connections (0: no cap)
#       timeout => 10,          # a request not answered by then: 'timeout'
#       classes => [
#           { name => 'cached', weight => 3, path => '/',
#             keys => [ ... ],                # cycled through, or
#             gen  => sub ($i) { ... },       # the i-th key (undef: done)
#             ok   => [ '200' ] },            # expected answers
#           ...
#       ]);
#   ... inject a fault ...
#   my $res = $l->wait;        # or $l->stop (ends it early), then ->wait
#
# An answer is recorded as "CODE" or "CODE STATUS" when the response has an
# X-Status header (the configuration's `add_header X-Status $api_key_status
# always`); a request without one as "err:KIND" (refused, reset, eof,
# timeout, parse).  A connection the server closed before answering a
# request sent on it after an earlier answer (the keep-alive race: nginx
# closes idle connections on reload and shutdown) is not an error: the
# request is sent again on a new connection and counted in ka_retries.
#
# $res = { t0, t1, requests, ka_retries, unfinished,
#          classes => { NAME => { n, answers => { ANSWER => count },
#                                 bad => [ [ time, ANSWER ], ... ],
#                                 last => time of the last answer } } }
# where bad lists every answer not in the class's ok list (times are
# absolute, Time::HiRes::time).
#
# Part of the test harness (t/lib).  Core Perl modules only.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time sleep);
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h);
use Errno qw(EAGAIN EWOULDBLOCK EINTR ECONNRESET EPIPE);
use Storable ();
use Carp qw(croak);

sub start {
    my ($class, %o) = @_;
    croak "Load: port and classes are needed" unless $o{port} && $o{classes};
    my $out = ApiKeyTest::tmpdir() . '/load.result';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # the child: no harness clean-up of the parent's processes here
        $SIG{ALRM} = 'DEFAULT';
        alarm(($o{duration} // 10) + ($o{timeout} // 10) + 30);
        my $res = eval { _run(%o) };
        $res = { error => "$@" } unless $res;
        Storable::nstore($res, "$out.tmp");
        rename "$out.tmp", $out;
        POSIX::_exit(0);
    }
    return bless { pid => $pid, out => $out, o => \%o, t_start => time }, $class;
}

sub pid { $_[0]{pid} }

# ends the load now (requests in flight are still waited for)
sub stop {
    my ($self) = @_;
    kill 'TERM', $self->{pid} if $self->{pid};
    return $self;
}

sub wait {
    my ($self) = @_;
    my $pid = delete $self->{pid};
    if ($pid) {
        my $limit = ($self->{o}{duration} // 10) + ($self->{o}{timeout} // 10) + 40;
        my $ok = ApiKeyTest::wait_until(sub { waitpid($pid, WNOHANG) == $pid },
                                        timeout => $limit, interval => 0.1);
        unless ($ok) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
            croak "Load: the load generator did not finish";
        }
    }
    my $res = $self->{res} //= eval { Storable::retrieve($self->{out}) }
        // croak "Load: no result";
    croak "Load: $res->{error}" if $res->{error};
    return $res;
}

# --- the child ----------------------------------------------------------------

sub _req_text {
    my ($path, $key) = @_;
    return "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . (defined $key ? "X-API-Key: $key\r\n" : '') . "\r\n";
}

sub _run {
    my (%o) = @_;
    my $port = $o{port};
    my $nconn = $o{conns} // 16;
    my $timeout = $o{timeout} // 10;
    my $rate = $o{rate} // 0;
    my $stop = 0;
    local $SIG{TERM} = sub { $stop = 1 };
    local $SIG{PIPE} = 'IGNORE';

    my @cls = map { +{ %$_, i => 0, done => 0 } } @{ $o{classes} };
    my %res = (classes => {}, ka_retries => 0, requests => 0, unfinished => 0);
    for my $c (@cls) {
        $c->{okset} = { map { $_ => 1 } @{ $c->{ok} // ['200'] } };
        $res{classes}{ $c->{name} } = { n => 0, answers => {}, bad => [], last => 0 };
    }
    # a weighted round robin: the schedule lists class indexes
    my @sched = map { my $i = $_; ($i) x ($cls[$i]{weight} // 1) } 0 .. $#cls;
    my $si = 0;

    my $next_req = sub {
        for (1 .. @sched) {
            my $c = $cls[ $sched[ $si++ % @sched ] ];
            next if $c->{done};
            my $key;
            if ($c->{gen}) {
                $key = $c->{gen}->($c->{i}++);
                unless (defined $key) { $c->{done} = 1; next }
            } elsif ($c->{keys}) {
                $key = $c->{keys}[ $c->{i}++ % @{ $c->{keys} } ];
            }
            return [ $c, _req_text($c->{path} // '/', $key) ];
        }
        return undef;    # every class is done
    };

    my $record = sub {
        my ($c, $ans, $t) = @_;
        my $r = $res{classes}{ $c->{name} };
        $r->{n}++;
        $res{requests}++;
        $r->{answers}{$ans}++;
        $r->{last} = $t;
        push @{ $r->{bad} }, [ $t, $ans ] unless $c->{okset}{$ans} || $c->{okset}{ (split / /, $ans)[0] };
    };

    my @conns = map { +{ id => $_ } } 1 .. $nconn;
    my $t0 = time;
    my $end = $t0 + ($o{duration} // 10);
    $res{t0} = $t0;
    my $sent = 0;
    my $drain_from;
    my $until = $o{until_done};    # [ class name, seconds after it is done ]

    my $open = sub {
        my ($cn) = @_;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => 1);
        unless ($s) {
            $cn->{retry_at} = time + 0.05;
            return 0;
        }
        $s->blocking(0);
        $cn->{s} = $s;
        $cn->{used} = 0;
        return 1;
    };
    my $close = sub {
        my ($cn) = @_;
        close $cn->{s} if $cn->{s};
        delete @$cn{qw(s req rbuf wbuf)};
    };

    while (1) {
        my $now = time;
        if ($until && grep { $_->{name} eq $until->[0] && $_->{done} } @cls) {
            $end = $now + $until->[1];
            $res{until_done_at} = $now;
            undef $until;
        }
        my $sending = !$stop && $now < $end;
        $drain_from //= $now unless $sending;
        my $busy = 0;
        my ($rin, $win) = ('', '');
        for my $cn (@conns) {
            if (!$cn->{req} && $sending) {
                next if $cn->{retry_at} && $now < $cn->{retry_at};
                next if $rate && $sent >= ($now - $t0) * $rate;
                my $r = $cn->{pending} // $next_req->();
                unless ($r) { $sending = 0; next }
                delete $cn->{pending};
                unless ($cn->{s} || $open->($cn)) {
                    # connection refused: an error answer for this request
                    $record->($r->[0], 'err:refused', time);
                    next;
                }
                $cn->{req} = $r;
                $cn->{wbuf} = $r->[1];
                $cn->{rbuf} = '';
                $cn->{sent_at} = $now;
                $cn->{retried} //= 0;
                $sent++;
            }
            next unless $cn->{req};
            $busy++;
            my $fn = fileno $cn->{s};
            if (length $cn->{wbuf}) { vec($win, $fn, 1) = 1 }
            vec($rin, $fn, 1) = 1;
        }
        last if !$busy && !$sending
            && ($stop || $now >= $end || !grep { !$_->{done} } @cls);
        if (!$busy) {
            sleep 0.002;
            next;
        }
        # a request in flight past the drain limit: counted as unfinished
        if (!$sending && $now > $drain_from + $timeout + 1) {
            for my $cn (grep { $_->{req} } @conns) {
                $res{unfinished}++;
                $close->($cn);
            }
            last;
        }
        my $nfound = select(my $rout = $rin, my $wout = $win, undef, 0.02);
        next if $nfound < 0;
        $now = time;
        for my $cn (@conns) {
            next unless $cn->{req};
            my $fn = fileno $cn->{s};
            if (length $cn->{wbuf} && vec($wout, $fn, 1)) {
                my $n = syswrite($cn->{s}, $cn->{wbuf});
                if (defined $n) {
                    substr($cn->{wbuf}, 0, $n) = '';
                } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
                    _conn_error($cn, $!, $record, $close, \%res);
                    next;
                }
            }
            if (vec($rout, $fn, 1)) {
                my $n = sysread($cn->{s}, $cn->{rbuf}, 65536, length $cn->{rbuf});
                if (!defined $n) {
                    next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                    _conn_error($cn, $!, $record, $close, \%res);
                    next;
                }
                if ($n == 0) {
                    _conn_error($cn, 'eof', $record, $close, \%res);
                    next;
                }
                my $hend = index($cn->{rbuf}, "\r\n\r\n");
                next if $hend < 0;
                my $head = substr($cn->{rbuf}, 0, $hend);
                my ($code) = $head =~ m{^HTTP/1\.[01] (\d{3})};
                my ($len) = $head =~ /\r\ncontent-length:\s*(\d+)/i;
                unless (defined $code && defined $len) {
                    $record->($cn->{req}[0], 'err:parse', $now);
                    $close->($cn);
                    next;
                }
                next if length($cn->{rbuf}) < $hend + 4 + $len;
                my ($xs) = $head =~ /\r\nx-status:\s*(\S+)/i;
                $record->($cn->{req}[0], defined $xs ? "$code $xs" : $code, $now);
                my $close_it = $head =~ /\r\nconnection:\s*close/i;
                delete $cn->{req};
                $cn->{retried} = 0;
                $cn->{used}++;
                $close->($cn) if $close_it;
            } elsif ($now - $cn->{sent_at} > $timeout) {
                $record->($cn->{req}[0], 'err:timeout', $now);
                $close->($cn);
            }
        }
    }
    $res{t1} = time;
    return \%res;
}

sub _conn_error {
    my ($cn, $err, $record, $close, $res) = @_;
    my $req = $cn->{req};
    # the keep-alive race: a reused connection closed with nothing read
    if ($cn->{used} && !length($cn->{rbuf}) && !$cn->{retried}
        && ($err eq 'eof' || $err == ECONNRESET || $err == EPIPE)) {
        $res->{ka_retries}++;
        $close->($cn);
        $cn->{pending} = $req;
        $cn->{retried} = 1;
        return;
    }
    my $kind = $err eq 'eof' ? 'eof' : $err == ECONNRESET ? 'reset'
             : $err == EPIPE ? 'pipe' : "$err";
    $record->($req->[0], "err:$kind", time);
    $close->($cn);
}

# --- summaries ------------------------------------------------------------------

# total answers of a class (or all classes) matching $re
sub count {
    my ($res, $name, $re) = @_;
    my @c = defined $name ? ($res->{classes}{$name} // {}) : values %{ $res->{classes} };
    my $n = 0;
    for my $c (@c) {
        for my $a (keys %{ $c->{answers} // {} }) {
            $n += $c->{answers}{$a} if !defined $re || $a =~ $re;
        }
    }
    return $n;
}

# "ANSWER xN, ..." of a class, most frequent first
sub answers_text {
    my ($res, $name) = @_;
    my $h = $res->{classes}{$name}{answers} // {};
    return join ', ', map { "$_ x$h->{$_}" } sort { $h->{$b} <=> $h->{$a} } keys %$h;
}

1;
