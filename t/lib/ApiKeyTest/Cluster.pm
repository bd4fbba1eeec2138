# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Cluster;

# A Redis Cluster on loopback: N masters (default 3) and optionally a
# replica each, every node an ApiKeyTest::Redis on free ports of 127.0.0.1
# (cluster-enabled, nodes.conf in its directory, its own free bus port),
# joined with redis-cli --cluster create ... --cluster-yes.
#
#   my $c = ApiKeyTest::Cluster->start(masters => 3, replicas => 0 | 1,
#                                      node_timeout => 1000,     # ms
#                                      config => [lines],
#                                      tls => ApiKeyTest::Tls->new->redis_tls);
#           (tls: every node TLS only, tls-cluster and tls-replication on)
#   $c->nodes               every node (ApiKeyTest::Redis objects)
#   $c->masters             the live nodes that are masters now, by port
#   $c->slot_map            [[start, end, master port, replica ports...], ...]
#   $c->keyslot($key)       CLUSTER KEYSLOT
#   $c->master_for_key($key), $c->master_for_slot($slot)
#   $c->cmd_for_key($key, @cmd)   the command on the master of the key
#   $c->router              ->cmd(@cmd) on the master of $cmd[1] (add_key)
#   ApiKeyTest::Cluster::slot_of($name)   the slot, computed here
#   $c->url(%o)             redis-cluster://127.0.0.1:P1,...  (tls => 1:
#                           rediss-cluster, user/password as Redis->url)
#   $c->node_id($node)      CLUSTER MYID
#   $c->migrate_slot($slot, $to, stage => 'start' | 'all' (default)):
#           moves a slot to node $to with the CLUSTER SETSLOT IMPORTING /
#           MIGRATING, MIGRATE (its keys), SETSLOT NODE steps; with stage
#           'start' it stops after IMPORTING/MIGRATING (the old node then
#           answers ASK for keys it does not hold), ->finish_migration
#           ($slot) does the rest.
#   $c->kill_master($i)     kill -9 of masters()[$i] (or of a node given);
#                           returns the node
#   $c->wait_promoted(timeout => 15): until every live node says
#                           cluster_state:ok and no slot is served by a
#                           killed node; true when so
#   $c->wait_agree          until every live node has the same slot map
#   $c->problems            a member that crashed or exited by itself
#   $c->stop
#
# start returns when every node says cluster_state:ok and all agree on the
# slot map (16384 slots covered): a few seconds (redis-cli polls the join
# once a second).  The final checks of ApiKeyTest add a test per cluster:
# ->problems empty.
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use Carp qw(croak);

our @SETS;
our @CRC16;       # slot_of's table, filled below
our $REDIS_CLI = $ENV{AK_REDIS_CLI} // '/usr/bin/redis-cli';

sub start {
    my ($class, %o) = @_;
    my $self = bless {
        nmasters => $o{masters} // 3,
        nrep => $o{replicas} // 0,
        node_timeout => $o{node_timeout} // 1000,
        nodes => [], killed => {},
    }, $class;
    croak "a cluster needs at least 3 masters" if $self->{nmasters} < 3;
    push @SETS, $self;
    my $t0 = time;
    my $n = $self->{nmasters} * (1 + $self->{nrep});
    for (1 .. $n) {
        my $bus = ApiKeyTest::free_port();
        my $r = ApiKeyTest::Redis->start(
            ($o{tls} ? (tls => $o{tls}) : ()),
            config => [
            ($o{tls} ? ("tls-cluster yes", "tls-replication yes") : ()),
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            "cluster-node-timeout $self->{node_timeout}",
            "cluster-port $bus",
            "cluster-replica-validity-factor 0",
            "repl-diskless-sync-delay 0",
            @{ $o{config} // [] },
        ]);
        $r->{member_of} = $self;
        push @{ $self->{nodes} }, $r;
    }
    my $dir = ApiKeyTest::tmpdir();
    my @cmd = ($REDIS_CLI,
               ($o{tls} ? ('--tls', '--cacert', $o{tls}{ca},
                           ($o{tls}{client_cert}
                            ? ('--cert', $o{tls}{client_cert},
                               '--key', $o{tls}{client_key}) : ()))
                        : ()),
               '--cluster', 'create',
               (map { '127.0.0.1:' . $_->port } @{ $self->{nodes} }),
               '--cluster-replicas', $self->{nrep}, '--cluster-yes');
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/create.out";
        open STDERR, '>&', \*STDOUT;
        exec(@cmd) or POSIX::_exit(127);
    }
    my $done = ApiKeyTest::wait_until(sub { waitpid($pid, WNOHANG) == $pid },
                                      timeout => 30, interval => 0.05);
    unless ($done) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
        croak "redis-cli --cluster create did not finish in 30 s:\n"
            . ApiKeyTest::slurp("$dir/create.out");
    }
    croak "redis-cli --cluster create failed (exit " . ($? >> 8) . "):\n"
        . ApiKeyTest::slurp("$dir/create.out") if $?;
    $self->{create_secs} = time - $t0;
    $self->wait_agree(timeout => 20)
        or croak "the cluster did not become ready (cluster_state:ok, one "
               . "slot map) within 20 s";
    $self->{agree_secs} = time - $t0;
    if ($self->{nrep}) {
        ApiKeyTest::wait_until(sub {
            for my $r (@{ $self->{nodes} }) {
                my $i = $r->cmd('INFO', 'replication');
                return 0 if $i =~ /role:slave/ && $i !~ /master_link_status:up/;
                # every node lists the replicas in its slot map
                my $m = eval { $self->slot_map($r) } or return 0;
                return 0 if grep { @$_ != 3 + $self->{nrep} } @$m;
            }
            return 1;
        }, timeout => 15) or croak "the replicas did not sync within 15 s";
    }
    $self->{start_secs} = time - $t0;
    return $self;
}

sub nodes      { @{ $_[0]{nodes} } }
sub start_secs { $_[0]{start_secs} }
sub live       { grep { $_->pid } @{ $_[0]{nodes} } }

sub by_port {
    my ($self, $port) = @_;
    for my $r (@{ $self->{nodes} }) {
        return $r if $r->port == $port;
    }
    return undef;
}

# the slot map as a live node says it: [[start, end, master port,
# replica ports...], ...] sorted by start
sub slot_map {
    my ($self, $node) = @_;
    $node //= ($self->live)[0];
    my $s = $node->cmd('CLUSTER', 'SLOTS');
    return [ sort { $a->[0] <=> $b->[0] }
             map { [ $_->[0], $_->[1], map { $_->[1] } @$_[2 .. $#$_] ] } @$s ];
}

sub _map_text { join ';', map { join ',', @$_[0 .. 2] } @{ $_[0] } }

# until every live node says cluster_state:ok and has the same slot map,
# covering every slot, with no killed node in it
sub wait_agree {
    my ($self, %o) = @_;
    return ApiKeyTest::wait_until(sub {
        my %maps;
        for my $r ($self->live) {
            my ($info) = $r->try_cmd('CLUSTER', 'INFO');
            return 0 unless defined $info && $info =~ /cluster_state:ok/;
            my $m = eval { $self->slot_map($r) } or return 0;
            my $covered = 0;
            for (@$m) {
                return 0 if $self->{killed}{ $_->[2] };
                $covered += $_->[1] - $_->[0] + 1;
            }
            return 0 unless $covered == 16384;
            $maps{ _map_text($m) } = 1;
        }
        return keys %maps == 1;
    }, timeout => $o{timeout} // 10, interval => 0.1);
}

sub masters {
    my ($self) = @_;
    my %m = map { $_->[2] => 1 } @{ $self->slot_map };
    return sort { $a->port <=> $b->port } grep { $m{ $_->port } } $self->live;
}

sub keyslot {
    my ($self, $key) = @_;
    return ($self->live)[0]->cmd('CLUSTER', 'KEYSLOT', $key);
}

sub master_for_slot {
    my ($self, $slot) = @_;
    for (@{ $self->slot_map }) {
        return $self->by_port($_->[2]) if $slot >= $_->[0] && $slot <= $_->[1];
    }
    return undef;
}

sub master_for_key {
    my ($self, $key) = @_;
    return $self->master_for_slot($self->keyslot($key));
}

sub cmd_for_key {
    my ($self, $key, @cmd) = @_;
    my $m = $self->master_for_key($key) or croak "no master for $key";
    return $m->cmd(@cmd);
}

# an object with ->cmd(@cmd) that runs each command on the master of its
# key ($cmd[1]; SELECT 0 is a no-op): add_key($c->router, ...) writes a
# record on the cluster
# (the slot computed here, the slot map read once: ->refresh after a
# change; a MOVED answer refreshes it and runs the command again)
sub router {
    my ($self) = @_;
    return bless { c => $self, map => $self->slot_map },
                 'ApiKeyTest::Cluster::Router';
}

sub ApiKeyTest::Cluster::Router::refresh {
    $_[0]{map} = $_[0]{c}->slot_map;
}

sub ApiKeyTest::Cluster::Router::cmd {
    my ($r, @cmd) = @_;
    return 'OK' if uc $cmd[0] eq 'SELECT';
    my $slot = slot_of($cmd[1]);
    for my $try (1 .. 2) {
        my ($m) = grep { $slot >= $_->[0] && $slot <= $_->[1] } @{ $r->{map} };
        my $node = $m && $r->{c}->by_port($m->[2]);
        my ($res, $err) = $node ? $node->try_cmd(@cmd) : (undef, 'no master');
        return $res unless defined $err;
        croak "@cmd[0, 1]: $err" if $try == 2 || $err !~ /^MOVED|no master/;
        $r->refresh;
    }
}

# the slot of a key name, as CLUSTER KEYSLOT (CRC16/XMODEM, hash tags)
sub slot_of {
    my ($name) = @_;
    $name = $1 if $name =~ /\{([^}]+)\}/ && index($name, '{') == $-[0];
    my $crc = 0;
    $crc = (($crc << 8) & 0xff00) ^ $CRC16[(($crc >> 8) ^ $_) & 0xff]
        for unpack 'C*', $name;
    return $crc & 16383;
}

@CRC16 = map {
    my $crc = $_ << 8;
    for (1 .. 8) {
        $crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) : ($crc << 1);
        $crc &= 0xffff;
    }
    $crc;
} 0 .. 255;

sub node_id {
    my ($self, $node) = @_;
    return $node->cmd('CLUSTER', 'MYID');
}

sub url {
    my ($self, %o) = @_;
    my $auth = '';
    if (defined $o{user} || defined $o{password}) {
        $auth = ($o{user} // '') . (defined $o{password} ? ":$o{password}" : '')
            . '@';
    }
    my @n = $o{nodes} ? @{ $o{nodes} } : @{ $self->{nodes} };
    return ($o{tls} ? 'rediss' : 'redis') . "-cluster://$auth"
        . join(',', map { '127.0.0.1:' . $_->port } @n);
}

sub migrate_slot {
    my ($self, $slot, $to, %o) = @_;
    my $from = $self->master_for_slot($slot) or croak "slot $slot has no master";
    croak "slot $slot is on that node already" if $from == $to;
    my ($fid, $tid) = ($self->node_id($from), $self->node_id($to));
    $to->cmd('CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $fid);
    $from->cmd('CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $tid);
    $self->{migrating}{$slot} = [$from, $to];
    return 1 if ($o{stage} // 'all') eq 'start';
    return $self->finish_migration($slot);
}

sub finish_migration {
    my ($self, $slot) = @_;
    my $m = delete $self->{migrating}{$slot} or croak "slot $slot is not migrating";
    my ($from, $to) = @$m;
    while (1) {
        my $keys = $from->cmd('CLUSTER', 'GETKEYSINSLOT', $slot, 100);
        last unless @$keys;
        $from->cmd('MIGRATE', '127.0.0.1', $to->port, '', 0, 5000,
                   'KEYS', @$keys);
    }
    my $tid = $self->node_id($to);
    $to->cmd('CLUSTER', 'SETSLOT', $slot, 'NODE', $tid);
    $from->cmd('CLUSTER', 'SETSLOT', $slot, 'NODE', $tid);
    for my $r ($self->masters) {
        next if $r == $to || $r == $from;
        $r->try_cmd('CLUSTER', 'SETSLOT', $slot, 'NODE', $tid);
    }
    $self->wait_agree(timeout => 10) or croak "the nodes do not agree after "
        . "moving slot $slot";
    return 1;
}

sub kill_master {
    my ($self, $i) = @_;
    my $m = ref $i ? $i : ($self->masters)[$i // 0]
        or croak "no master $i";
    $self->{killed}{ $m->port } = 1;
    $m->kill9;
    return $m;
}

sub wait_promoted {
    my ($self, %o) = @_;
    return $self->wait_agree(timeout => $o{timeout} // 15);
}

sub problems {
    my ($self) = @_;
    my @p;
    for my $r (@{ $self->{nodes} }) {
        my $c = $r->crashed;
        push @p, "redis on port " . $r->port . " crashed:\n$c" if length $c;
        if ($r->pid && waitpid($r->pid, WNOHANG) == $r->pid) {
            push @p, "redis on port " . $r->port . " exited by itself";
            delete $r->{pid};
        }
    }
    return join "\n", @p;
}

sub stop {
    my ($self) = @_;
    $self->{problems} //= $self->problems;
    $_->stop for @{ $self->{nodes} };
    return $self->{problems};
}

1;
