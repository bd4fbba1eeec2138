#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# The harness's Redis Sentinel set and Redis Cluster (ApiKeyTest::Sentinel,
# ApiKeyTest::Cluster): a SENTINEL FAILOVER moves the master and ROLE
# agrees; a master killed with kill -9 is replaced by its replica; a
# cluster covers every slot; a slot being migrated answers ASK on its old
# node, and once moved MOVED; a cluster master killed is replaced by its
# replica.  No nginx: the harness only.

use strict;
use warnings;
use lib 't/lib';
use Test::More;
use ApiKeyTest;

# --- Sentinel --------------------------------------------------------------

{
    my $s = ApiKeyTest::Sentinel->start;
    note sprintf 'sentinel set ready in %.1f s', $s->start_secs;
    my $m = $s->master;
    ok $m, 'a master';
    is $s->master_addr->[1], $m->port, 'the sentinels name it';
    like $s->url, qr{^redis-sentinel://127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+/mymaster$},
        'url: the three sentinels and the name';
    is $s->replica->cmd('ROLE')->[0], 'slave', 'the other is a replica';

    $m->cmd('SET', 'before', 'failover');
    ApiKeyTest::wait_until(sub { ($s->replica->cmd('GET', 'before') // '') eq 'failover' })
        or fail 'the write reached the replica';

    my $old = $s->failover;
    is $old, $m->port, 'failover: from the master';
    my $new = $s->wait_switch(from => $old, timeout => 15);
    ok $new, 'the sentinels switched to another master';
    isnt $new && $new->port, $old, 'a new master';
    is $new && $new->cmd('ROLE')->[0], 'master', 'its ROLE says master';
    is $new && $new->cmd('GET', 'before'), 'failover', 'with the data';
    ok ApiKeyTest::wait_until(sub {
        my ($r) = $s->by_port($old)->try_cmd('ROLE');
        ref $r && $r->[0] eq 'slave';
    }, timeout => 15), 'the old master became a replica';
    # the sentinels must see the old master as a working replica again
    # before they can fail over to it
    ok $s->wait_replica($old), 'the sentinels see it as a replica';
    # and be able to act on it: none in TILT mode (a sentinel stalled for
    # 2 s on a loaded machine does nothing for 30 s, though its view of the
    # replica looks fine), the master up, no failover in progress
    ok $s->wait_ready, 'the sentinels can fail the master over';

    my $killed = $s->kill_master;
    is $killed, $new->port, 'kill -9 of the new master';
    # (wait_switch waits ->kill_timeout after a kill: an aborted attempt
    # is retried only 2 x failover-timeout after it began)
    my $after = $s->wait_switch(from => $killed);
    ok $after, 'its replica was promoted';
    is $after && $after->port, $old, 'the first master again';
    is $after && $after->cmd('ROLE')->[0], 'master', 'ROLE agrees';
    is $s->problems, '', 'no member crashed';
    $s->stop;
}

# --- Cluster, three masters --------------------------------------------------

{
    my $c = ApiKeyTest::Cluster->start(masters => 3);
    note sprintf 'cluster ready in %.1f s', $c->start_secs;
    my $map = $c->slot_map;
    my $covered = 0;
    $covered += $_->[1] - $_->[0] + 1 for @$map;
    is $covered, 16384, 'every slot is covered';
    is scalar(my @m = $c->masters), 3, 'three masters';
    like $c->url, qr{^redis-cluster://(?:127\.0\.0\.1:\d+,){2}127\.0\.0\.1:\d+$}, 'url';

    is $c->keyslot('foo'), 12182, 'CLUSTER KEYSLOT foo';
    my $m = $c->master_for_key('foo');
    $c->cmd_for_key('foo', 'SET', 'foo', 'bar');
    is $m->cmd('GET', 'foo'), 'bar', 'cmd_for_key wrote on the right master';
    my ($other) = grep { $_ != $m } $c->masters;
    my (undef, $err) = $other->try_cmd('GET', 'foo');
    like $err, qr/^MOVED 12182 127\.0\.0\.1:${\ $m->port}/, 'another master answers MOVED';

    # a slot on the move: ASK on the old node for a key it does not hold
    $c->migrate_slot(12182, $other, stage => 'start');
    (undef, $err) = $m->try_cmd('GET', 'foo');
    is $err, undef, 'a key still on the old node is served there';
    my $absent = 'foo{foo}';
    is $c->keyslot($absent), 12182, 'same slot by hash tag';
    (undef, $err) = $m->try_cmd('GET', $absent);
    like $err, qr/^ASK 12182 127\.0\.0\.1:${\ $other->port}/, 'ASK during the migration';
    $c->finish_migration(12182);
    (undef, $err) = $m->try_cmd('GET', 'foo');
    like $err, qr/^MOVED 12182 127\.0\.0\.1:${\ $other->port}/, 'MOVED on the old node afterwards';
    is $other->cmd('GET', 'foo'), 'bar', 'the key moved with the slot';
    is $c->master_for_key('foo')->port, $other->port, 'the slot map says so';
    is $c->problems, '', 'no member crashed';
    $c->stop;
}

# --- Cluster with replicas: a master killed ----------------------------------

{
    my $c = ApiKeyTest::Cluster->start(masters => 3, replicas => 1);
    note sprintf 'six-node cluster ready in %.1f s', $c->start_secs;
    is scalar(my @m = $c->masters), 3, 'three masters';
    is scalar(grep { @$_ == 4 } @{ $c->slot_map }), scalar(@{ $c->slot_map }),
        'every slot range has a replica';
    $c->cmd_for_key('foo', 'SET', 'foo', 'bar');
    my $m = $c->master_for_key('foo');
    my ($rep_port) = map { $_->[3] } grep { $_->[0] <= 12182 && $_->[1] >= 12182 }
        @{ $c->slot_map };
    ApiKeyTest::wait_until(sub {
        ($c->by_port($rep_port)->cmd('READONLY'), $c->by_port($rep_port)->cmd('GET', 'foo'))[1]
    }) or fail 'the replica has the key';
    $c->kill_master($m);
    ok $c->wait_promoted(timeout => 20), 'the cluster is ok again';
    is $c->master_for_key('foo')->port, $rep_port, 'the replica serves the slot';
    is $c->cmd_for_key('foo', 'GET', 'foo'), 'bar', 'with the data';
    is $c->problems, '', 'no member crashed';
}

done_testing;
