# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Sentinel;

# A Redis Sentinel set on loopback: one master, one replica and three
# sentinels (redis-server --sentinel), each an ApiKeyTest::Redis on a free
# port of 127.0.0.1, in the test's temporary directory.
#
#   my $s = ApiKeyTest::Sentinel->start(
#       name => 'mymaster',          # the master's name (default mymaster)
#       down_after => 500,           # ms, sentinel down-after-milliseconds
#       failover_timeout => 3000,    # ms, sentinel failover-timeout
#       replicas => 1, sentinels => 3, quorum => 2,
#       sentinel_password => PW);   # the sentinels' requirepass (and
#                                   # sentinel-pass between them)
#   $s->master          the ApiKeyTest::Redis that is master now (ROLE)
#   $s->replica         the one that is a replica now
#   $s->redises         both data nodes; $s->sentinels: the sentinels
#   $s->master_addr     [host, port] as a sentinel says (asks them in turn)
#   $s->failover        SENTINEL FAILOVER (returns the old master's port)
#   $s->wait_switch(timeout => 10, from => PORT): until every live sentinel
#                       names a master other than PORT and that server's
#                       ROLE says master; returns the new master (or undef)
#   $s->wait_replica(PORT, timeout => 30): until the sentinels see PORT as
#                       a working replica (after a failover, before the
#                       next one to it)
#   $s->kill_master     kill -9 of the current master (returns its port)
#   $s->url(%o)         redis-sentinel://127.0.0.1:P1,...:P3/NAME
#                       (user => U, password => P, db => N, tls => 1)
#   $s->problems        what went wrong ('' when nothing): a member that
#                       crashed or exited without being told to
#   $s->stop
#
# start returns once the replica is in sync and every sentinel knows the
# replica and the other sentinels (a failover can then be agreed on): about
# two seconds (the sentinels' hello messages go every 2 s).  The final
# checks of ApiKeyTest (done_testing) add a test per set: ->problems empty.
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time sleep);
use Carp qw(croak);

our @SETS;      # every set started by this process (final checks)

sub start {
    my ($class, %o) = @_;
    my $self = bless {
        name => $o{name} // 'mymaster',
        down_after => $o{down_after} // 500,
        failover_timeout => $o{failover_timeout} // 3000,
        quorum => $o{quorum} // 2,
        nsent => $o{sentinels} // 3,
        nrep => $o{replicas} // 1,
        sentinel_password => $o{sentinel_password},
        config => ["repl-diskless-sync-delay 0", @{ $o{config} // [] }],
        redises => [], sentinels => [], killed => {},
    }, $class;
    push @SETS, $self;
    my $t0 = time;

    my $m = ApiKeyTest::Redis->start(config => [@{ $self->{config} }]);
    $m->{member_of} = $self;
    push @{ $self->{redises} }, $m;
    for (1 .. $self->{nrep}) {
        my $r = ApiKeyTest::Redis->start(config => [
            @{ $self->{config} }, "replicaof 127.0.0.1 " . $m->port,
            "replica-priority 100"]);
        $r->{member_of} = $self;
        push @{ $self->{redises} }, $r;
    }
    for my $r (@{ $self->{redises} }[1 .. $#{ $self->{redises} }]) {
        ApiKeyTest::wait_until(sub {
            ($r->cmd('INFO', 'replication') // '') =~ /master_link_status:up/
        }, timeout => 10) or croak "replica on port " . $r->port . " did not sync";
    }

    my $n = $self->{name};
    for (1 .. $self->{nsent}) {
        my $pw = $self->{sentinel_password};
        my $s = ApiKeyTest::Redis->start(args => ['--sentinel'],
            (defined $pw ? (requirepass => $pw) : ()), config => [
            "sentinel monitor $n 127.0.0.1 " . $m->port . " $self->{quorum}",
            (defined $pw ? ("sentinel sentinel-pass $pw") : ()),
            "sentinel down-after-milliseconds $n $self->{down_after}",
            "sentinel failover-timeout $n $self->{failover_timeout}",
            "sentinel parallel-syncs $n 1",
        ]);
        $s->{member_of} = $self;
        push @{ $self->{sentinels} }, $s;
    }
    # ready: each sentinel sees the replicas and the other sentinels
    my $ok = ApiKeyTest::wait_until(sub {
        for my $s (@{ $self->{sentinels} }) {
            my ($reps) = $s->try_cmd('SENTINEL', 'REPLICAS', $n);
            my ($sents) = $s->try_cmd('SENTINEL', 'SENTINELS', $n);
            return 0 unless ref $reps && ref $sents;
            return 0 unless @$sents == $self->{nsent} - 1;
            my $up = grep { my %f = @$_; ($f{flags} // '') eq 'slave'
                            && ($f{'master-link-status'} // '') eq 'ok' } @$reps;
            return 0 unless $up == $self->{nrep};
        }
        return 1;
    }, timeout => 15, interval => 0.1);
    croak "sentinels did not discover each other and the replica within 15 s"
        unless $ok;
    $self->{start_secs} = time - $t0;
    return $self;
}

sub name       { $_[0]{name} }
sub sentinels  { @{ $_[0]{sentinels} } }
sub redises    { @{ $_[0]{redises} } }
sub start_secs { $_[0]{start_secs} }

sub _role {
    my ($r) = @_;
    return '' unless $r->pid;
    my ($role) = $r->try_cmd('ROLE');
    return ref $role ? $role->[0] : '';
}

# the data node whose ROLE says master (undef when none)
sub master {
    my ($self) = @_;
    for my $r (@{ $self->{redises} }) {
        return $r if _role($r) eq 'master';
    }
    return undef;
}

sub replica {
    my ($self) = @_;
    for my $r (@{ $self->{redises} }) {
        return $r if _role($r) eq 'slave';
    }
    return undef;
}

sub by_port {
    my ($self, $port) = @_;
    for my $r (@{ $self->{redises} }) {
        return $r if $r->port == $port;
    }
    return undef;
}

# [host, port] of the master as the first sentinel that answers says
sub master_addr {
    my ($self) = @_;
    for my $s (@{ $self->{sentinels} }) {
        next unless $s->pid;
        my ($a) = $s->try_cmd('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', $self->{name});
        return [@$a] if ref $a && @$a == 2;
    }
    return undef;
}

# SENTINEL FAILOVER on a sentinel (no agreement needed); returns the port
# of the master before it
sub failover {
    my ($self) = @_;
    my $old = $self->master_addr or croak "no sentinel names a master";
    my $err;
    for my $s (@{ $self->{sentinels} }) {
        next unless $s->pid;
        my ($r, $e) = $s->try_cmd('SENTINEL', 'FAILOVER', $self->{name});
        return $old->[1] if defined $r && $r eq 'OK';
        $err = $e;
    }
    croak "SENTINEL FAILOVER: " . ($err // 'no sentinel');
}

# wait_switch(timeout => S, from => PORT (default: the master now)): until
# every live sentinel names the same master, not PORT, and its ROLE says
# master.  Returns that ApiKeyTest::Redis, undef on timeout.
sub wait_switch {
    my ($self, %o) = @_;
    my $from = $o{from} // ($self->master_addr // [0, 0])->[1];
    my $new;
    ApiKeyTest::wait_until(sub {
        my %seen;
        for my $s (@{ $self->{sentinels} }) {
            next unless $s->pid;
            my ($a) = $s->try_cmd('SENTINEL', 'GET-MASTER-ADDR-BY-NAME',
                                  $self->{name});
            return 0 unless ref $a && @$a == 2;
            $seen{$a->[1]} = 1;
        }
        return 0 unless keys %seen == 1;
        my ($port) = keys %seen;
        return 0 if $port == $from;
        my $r = $self->by_port($port) or return 0;
        return 0 unless _role($r) eq 'master';
        $new = $r;
        return 1;
    }, timeout => $o{timeout} // 10, interval => 0.05);
    return $new;
}

# wait_replica(PORT, timeout => 30): until every live sentinel lists the
# server on PORT as a replica whose link to the master is up (what a later
# failover to it needs).  Sentinels refresh a replica's state from its INFO
# every 10 s, so this can take that long after a failover.
sub wait_replica {
    my ($self, $port, %o) = @_;
    return ApiKeyTest::wait_until(sub {
        for my $s (@{ $self->{sentinels} }) {
            next unless $s->pid;
            my ($reps) = $s->try_cmd('SENTINEL', 'REPLICAS', $self->{name});
            return 0 unless ref $reps;
            return 0 unless grep {
                my %f = @$_;
                $f{port} == $port && $f{flags} eq 'slave'
                    && ($f{'master-link-status'} // '') eq 'ok'
            } @$reps;
        }
        return 1;
    }, timeout => $o{timeout} // 30, interval => 0.1);
}

# kill -9 of the master now; returns its port
sub kill_master {
    my ($self) = @_;
    my $m = $self->master or croak "no master to kill";
    $self->{killed}{ $m->port } = 1;
    $m->kill9;
    return $m->port;
}

# redis-sentinel://[user[:password]@]127.0.0.1:P1,...,127.0.0.1:Pn/NAME[/db]
sub url {
    my ($self, %o) = @_;
    my $auth = '';
    if (defined $o{user} || defined $o{password}) {
        $auth = ($o{user} // '') . (defined $o{password} ? ":$o{password}" : '')
            . '@';
    }
    return ($o{tls} ? 'rediss' : 'redis') . "-sentinel://$auth"
        . join(',', map { '127.0.0.1:' . $_->port } @{ $self->{sentinels} })
        . "/$self->{name}" . (defined $o{db} ? "/$o{db}" : '');
}

# a member that crashed (its log says so) or exited on its own
sub problems {
    my ($self) = @_;
    my @p;
    for my $r (@{ $self->{redises} }, @{ $self->{sentinels} }) {
        my $c = $r->crashed;
        push @p, "redis on port " . $r->port . " crashed:\n$c" if length $c;
        if ($r->pid && POSIX::waitpid($r->pid, POSIX::WNOHANG()) == $r->pid) {
            push @p, "redis on port " . $r->port . " exited by itself";
            delete $r->{pid};
        }
    }
    return join "\n", @p;
}

sub stop {
    my ($self) = @_;
    $self->{problems} //= $self->problems;
    $_->stop for @{ $self->{sentinels} }, @{ $self->{redises} };
    return $self->{problems};
}

1;
