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
#                       ROLE says master; returns the new master (or undef,
#                       with a diag of ->report).  After kill_master of
#                       PORT the timeout is at least ->kill_timeout.
#   $s->wait_replica(PORT, timeout => 30): until the sentinels see PORT as
#                       a working replica (after a failover, before the
#                       next one to it)
#   $s->wait_ready(timeout => 40): until every live sentinel can act on a
#                       failover (not in TILT mode, the master plainly up,
#                       every replica working); false (and a diag) if not
#   $s->kill_master     wait_ready, then kill -9 of the current master
#                       (returns its port)
#   $s->kill_timeout    seconds a failover after a kill -9 may take when
#                       attempts are aborted and retried (see there)
#   $s->report          what each sentinel says (SENTINEL MASTER, REPLICAS,
#                       SENTINELS, INFO's TILT state, its log's last lines)
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
    $self->wait_ready;
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
# master.  Returns that ApiKeyTest::Redis; undef on timeout, after a diag
# of what each sentinel says (->report).  After kill_master of PORT the
# timeout is at least kill_timeout: the failover of a killed master may
# legitimately need a retry or two (see kill_timeout).
sub wait_switch {
    my ($self, %o) = @_;
    my $from = $o{from} // ($self->master_addr // [0, 0])->[1];
    my $timeout = $o{timeout} // 10;
    $timeout = $self->kill_timeout
        if $self->{killed}{$from} && $timeout < $self->kill_timeout;
    my $t0 = time;
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
    }, timeout => $timeout, interval => 0.05);
    _diag(sprintf("wait_switch: the sentinels did not agree on a new master "
        . "(from port %d) within %.1f s:\n", $from, time - $t0)
        . $self->report) unless $new;
    return $new;
}

# The longest a failover after a kill -9 may take, in seconds, when the
# sentinels work as designed (Redis 7.0 sentinel.c): the master is seen
# down after down-after ms and objectively down after the next
# is-master-down-by-addr round (every 1 s); an attempt can then be aborted
# (split vote: -failover-abort-not-elected after min(10 s, failover-timeout);
# a replica whose last INFO is too old: -failover-abort-no-good-slave; the
# promotion not seen within failover-timeout), and no sentinel starts the
# next attempt, nor one that voted for another, before 2 x failover-timeout
# (plus up to 1 s of random desync) after the last one began
# (sentinelStartFailoverIfNeeded, sentinelVoteLeader).  Allow three
# attempts, and two hello periods (2 s each) for the other sentinels to
# learn the new master.  With 500 ms and 3000 ms: 26.5 s.
sub kill_timeout {
    my ($self) = @_;
    return $self->{down_after} / 1000 + 1
        + 3 * (2 * $self->{failover_timeout} / 1000 + 1) + 4;
}

# INFO sentinel of one sentinel as a hash (empty when it does not answer)
sub _info {
    my ($s) = @_;
    my ($info) = $s->try_cmd('INFO', 'sentinel');
    return () unless defined $info && !ref $info;
    return map { /^([a-z_0-9]+):(.*?)\r?$/ ? ($1, $2) : () } split /\n/, $info;
}

# wait_ready(timeout => S): until every live sentinel can act on a
# failover of the master now: it is not in TILT mode, it names that
# master and flags it plainly 'master' (not down, no failover in
# progress), it knows the other sentinels, and it lists every replica as
# a 'slave' whose link to the master is up.
#
# TILT is what SENTINEL REPLICAS does not show: a sentinel whose timer
# ran more than 2 s late (sentinel_tilt_trigger: the process stalled, as
# on a loaded machine) enters TILT mode for 30 s (sentinel_tilt_period).
# It keeps collecting state, so the replica looks fine, but it acts on
# nothing and answers "not down" to the other sentinels: with two of
# three in TILT, a killed master is not failed over for 30 s.  Worse, a
# sentinel that first sees the master down when its TILT ends rejects the
# replica, whose link has been down for longer than 10 x down-after past
# that moment (sentinelSelectSlave: -failover-abort-no-good-slave), at
# every attempt: only a sentinel that saw the master go down in time can
# promote it.  So a kill -9 must wait until no sentinel is in TILT; the
# default timeout is the TILT period and some margin.  Returns true, or
# false on timeout after a diag of ->report.
sub wait_ready {
    my ($self, %o) = @_;
    my $timeout = $o{timeout} // 40;
    my $t0 = time;
    my $ok = ApiKeyTest::wait_until(sub {
        my $m = $self->master or return 0;
        my $live = 0;
        for my $s (@{ $self->{sentinels} }) {
            next unless $s->pid;
            $live++;
            my %i = _info($s);
            return 0 unless ($i{sentinel_tilt} // '') eq '0';
            my ($mi) = $s->try_cmd('SENTINEL', 'MASTER', $self->{name});
            return 0 unless ref $mi;
            my %f = @$mi;
            return 0 unless ($f{port} // 0) == $m->port
                && ($f{flags} // '') eq 'master'
                && ($f{'failover-state'} // 'none') eq 'none'
                && ($f{'num-other-sentinels'} // 0) == $self->{nsent} - 1;
            my ($reps) = $s->try_cmd('SENTINEL', 'REPLICAS', $self->{name});
            return 0 unless ref $reps;
            my $up = grep { my %r = @$_; ($r{flags} // '') eq 'slave'
                            && ($r{'master-link-status'} // '') eq 'ok' } @$reps;
            return 0 unless $up == $self->{nrep};
        }
        return $live >= $self->{quorum};
    }, timeout => $timeout, interval => 0.1);
    _diag(sprintf("wait_ready: the sentinels were not ready to fail over "
        . "within %.1f s:\n", time - $t0) . $self->report) unless $ok;
    return $ok ? 1 : 0;
}

# what each sentinel says: for the diag of a failover that did not happen
sub report {
    my ($self) = @_;
    my @out;
    for my $s (@{ $self->{sentinels} }) {
        unless ($s->pid) {
            push @out, "sentinel " . $s->port . ": stopped";
            next;
        }
        my %i = _info($s);
        push @out, sprintf "sentinel %d (pid %d): tilt %s%s", $s->port, $s->pid,
            $i{sentinel_tilt} // '?',
            ($i{sentinel_tilt} // '') eq '1'
                ? " (for $i{sentinel_tilt_since_seconds} s)" : '';
        my ($mi, $err) = $s->try_cmd('SENTINEL', 'MASTER', $self->{name});
        if (ref $mi) {
            my %f = @$mi;
            push @out, '  master ' . join ' ', map { "$_=" . ($f{$_} // '-') }
                qw(port flags failover-state num-other-sentinels num-slaves
                   config-epoch s-down-time o-down-time);
        } else {
            push @out, '  SENTINEL MASTER: ' . ($err // 'no answer');
        }
        my ($reps) = $s->try_cmd('SENTINEL', 'REPLICAS', $self->{name});
        for my $r (ref $reps ? @$reps : ()) {
            my %f = @$r;
            push @out, '  replica ' . join ' ', map { "$_=" . ($f{$_} // '-') }
                qw(port flags master-link-status master-link-down-time
                   info-refresh slave-priority);
        }
        my ($sents) = $s->try_cmd('SENTINEL', 'SENTINELS', $self->{name});
        for my $r (ref $sents ? @$sents : ()) {
            my %f = @$r;
            push @out, '  sentinel ' . join ' ', map { "$_=" . ($f{$_} // '-') }
                qw(port flags voted-leader voted-leader-epoch);
        }
        my @log = grep { length } split /\n/, $s->log;
        push @out, map { "  | $_" } @log[($#log > 19 ? $#log - 19 : 0) .. $#log];
    }
    for my $r (@{ $self->{redises} }) {
        push @out, sprintf "redis %d: %s", $r->port,
            $r->pid ? 'ROLE ' . (_role($r) || '?') : 'not running';
    }
    return join("\n", @out) . "\n";
}

sub _diag {
    my ($text) = @_;
    if (Test::More->can('diag')) { Test::More::diag($text) }
    else { print STDERR map { "# $_\n" } split /\n/, $text }
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

# kill -9 of the master now, once the sentinels can fail it over
# (wait_ready: if they cannot within its timeout, the diag says why and the
# kill goes ahead); returns its port
sub kill_master {
    my ($self) = @_;
    $self->wait_ready;
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
