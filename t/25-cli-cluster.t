#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl against a Redis Cluster (redis-cluster://, three masters with a
# replica each): create/show/list/usage/revoke/rotate/set/delete with
# records, id lookups and usage counters spread over the masters (their
# names have no hash tag: a record and its id lookup are in different
# slots); list scans every master; an event published reaches a subscriber
# on another node; a slot being migrated (ASK) and a slot moved; a master
# killed and its replica promoted: the CLI works on.

use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use ApiKeyTest;
use ApiKeyTest::Cli qw(run_cli subscribe next_message);

my $c = ApiKeyTest::Cluster->start(masters => 3, replicas => 1);
note sprintf 'cluster ready in %.1f s', $c->start_secs;
my $url = $c->url;

sub cli { run_cli(args => ['--redis', $url, @_]) }

sub create {
    my (@a) = @_;
    my $r = cli('create', @a);
    is $r->{exit}, 0, "create @a" or diag $r->{err};
    my ($hash) = $r->{err} =~ /hash ([0-9a-f]{64})/;
    chomp(my $key = $r->{out});
    track_key($key);
    return ($key, $hash);
}

# --- create: records and id lookups on every master ------------------------

# 12 keys, then more until their records are on all three masters (12
# random ones miss a master about 2% of the time), at most 40
my %hash;
my %masters;
for my $i (1 .. 40) {
    last if $i > 12 && keys(%masters) == 3;
    (undef, $hash{"k$i"}) = create('--id', "k$i", '--owner', 'team', '--quota', '100/day');
    $masters{ $c->master_for_key("apikey:$hash{\"k$i\"}")->port } = 1 if $hash{"k$i"};
}
my %on;
for my $id (sort keys %hash) {
    my $rec = "apikey:$hash{$id}";
    my $m = $c->master_for_key($rec);
    is $m->cmd('HGET', $rec, 'id'), $id, "$id: record on the master of its slot";
    is $c->cmd_for_key("apikey:id:$id", 'GET', "apikey:id:$id"), $hash{$id},
        "$id: id lookup on the master of its slot";
    $on{ $m->port }++;
}
is scalar(keys %on), 3, 'the records are spread over the three masters';

# --- list scans every master --------------------------------------------------

my $r = cli('list');
is $r->{exit}, 0, 'list';
my @ids = sort map { (split /\t/)[0] } split /\n/, $r->{out};
is_deeply \@ids, [sort keys %hash], 'list shows the keys of every master';

$r = cli('list', '--page-size', 1, '--json');
is $r->{exit}, 0, 'list --page-size 1 --json';
is scalar(() = $r->{out} =~ /^\{"id":/mg), scalar(keys %hash), 'each key once';

# --- show by id, by key, by hash -----------------------------------------------

my ($key, $h) = create('--id', 'alice', '--plan', 'gold', '--quota', '10/day');
for my $name ('alice', $key, $h) {
    $r = run_cli(args => ['--redis', $url, 'show', '-'], stdin => "$name\n");
    is $r->{exit}, 0, 'show';
    like $r->{out}, qr/^plan\s+gold$/m, 'show finds the record';
}

# --- usage: counters in the record's slot (their hash tag is its name) --------

$r = cli('usage', 'alice', '--json');
is $r->{exit}, 0, 'usage';
my ($start) = $r->{out} =~ /"day":\{"start":(\d+)/;
ok $start, 'the day window';
my $counter = "apikey:usage:{apikey:$h}:day:$start";
is $c->master_for_key($counter), $c->master_for_key("apikey:$h"),
   "the counter lives on the record's master";
$c->cmd_for_key($counter, 'SET', $counter, 7);
$r = cli('usage', 'alice', '--json');
like $r->{out}, qr/"used":7,"remaining":3/, 'usage reads the counter from its master';

# --- revoke: the event reaches a subscriber on another node ---------------------

my $rec = "apikey:$h";
my ($far) = grep { $_ != $c->master_for_key($rec) } $c->masters;
my $sub = $far->client;
subscribe($sub, 'apikey:events');
$r = cli('revoke', 'alice');
is $r->{exit}, 0, 'revoke' or diag $r->{err};
unlike $r->{err}, qr/nobody listens/, 'no "nobody listens" warning on a cluster';
is $c->cmd_for_key($rec, 'HGET', $rec, 'status'), 'revoked', 'revoked on its master';
my $msg = next_message($sub, 5);
is $msg && $msg->[1], "revoke $h", 'the event reached a subscriber on another master';

# --- rotate: three slots (new record, new id, old record) -----------------------

$r = cli('rotate', 'alice', '--grace', '1h', '--id', 'alice2');
is $r->{exit}, 0, 'rotate' or diag $r->{err};
chomp(my $new_key = $r->{out});
track_key($new_key);
my $nh = ApiKeyTest::sha256_hex($new_key);
is $c->cmd_for_key("apikey:$nh", 'HGET', "apikey:$nh", 'id'), 'alice2', 'the new record';
is $c->cmd_for_key("apikey:id:alice2", 'GET', 'apikey:id:alice2'), $nh, 'its id lookup';
is $c->cmd_for_key($rec, 'HGET', $rec, 'rotated_to'), $nh, 'the old record points to it';

# --- set with a new id: record, new id and old id in three slots ------------------

$r = cli('set', 'k1', 'id=k1b', 'plan=silver');
is $r->{exit}, 0, 'set id=' or diag $r->{err};
is $c->cmd_for_key('apikey:id:k1b', 'GET', 'apikey:id:k1b'), $hash{k1}, 'new id lookup';
is $c->cmd_for_key('apikey:id:k1', 'GET', 'apikey:id:k1'), undef, 'old id lookup gone';

# --- a slot being migrated (ASK) and then moved (MOVED) ---------------------------

{
    # an id whose lookup lands in a slot we migrate: first while the slot is
    # migrating (the new key is created on the importing node through ASK),
    # then after the move
    my $id = 'mig';
    my $idkey = "apikey:id:$id";
    my $slot = $c->keyslot($idkey);
    my $from = $c->master_for_slot($slot);
    my ($to) = grep { $_ != $from } $c->masters;
    $c->migrate_slot($slot, $to, stage => 'start');
    my (undef, $mh) = create('--id', $id);
    is $to->cmd('ASKING') && $to->cmd('GET', $idkey), $mh,
        'created through ASK on the importing node';
    $r = cli('show', $id);
    is $r->{exit}, 0, 'show follows ASK for the id lookup' or diag $r->{err};
    $c->finish_migration($slot);
    is $c->master_for_slot($slot)->port, $to->port, 'the slot moved';
    $r = cli('show', $id);
    is $r->{exit}, 0, 'show after the move' or diag $r->{err};
    $r = cli('delete', $id);
    is $r->{exit}, 0, 'delete after the move' or diag $r->{err};
    is $to->cmd('EXISTS', $idkey), 0, 'the id lookup deleted on its new master';
}

# --- a change refused half-way: said so, and repairable ------------------------

{
    # every master but the one of the id lookup refuses writes (out of
    # memory): create claims the id, then the record's part is refused,
    # unless the record falls on the id's master too (then another id)
    my ($id, $done);
    for my $i (1 .. 12) {
        $id = "half$i";
        my $idm = $c->master_for_key("apikey:id:$id");
        my @full = grep { $_ != $idm } $c->masters;
        $_->cmd('CONFIG', 'SET', 'maxmemory', 1) for @full;
        $r = cli('create', '--id', $id);
        $_->cmd('CONFIG', 'SET', 'maxmemory', 0) for @full;
        track_key($r->{out} =~ s/\s+$//r) if $r->{out};
        if ($r->{exit} == 0) {
            cli('delete', $id);
            next;
        }
        $done = 1;
        last;
    }
    ok $done, 'a create whose record part was refused';
    is $r->{exit}, 4, 'exit 4';
    like $r->{err}, qr/the change was made only in part .*OOM/s, 'says it was made in part, and why';
    is $r->{out}, '', 'no key printed';
    ok $c->cmd_for_key("apikey:id:$id", 'EXISTS', "apikey:id:$id"), 'the id lookup was written';
    $r = cli('delete', $id);
    is $r->{exit}, 0, 'delete removes the id whose record is missing' or diag $r->{err};
    ok !$c->cmd_for_key("apikey:id:$id", 'EXISTS', "apikey:id:$id"), 'gone';
}

# --- a master killed, its replica promoted ----------------------------------------

{
    my $m = $c->master_for_key("apikey:$hash{k2}");
    $c->kill_master($m);
    ok $c->wait_promoted(timeout => 20), 'the replica took over';
    # the URL still names the dead node first
    $r = cli('revoke', 'k2');
    is $r->{exit}, 0, 'revoke after the failover' or diag $r->{err};
    is $c->cmd_for_key("apikey:$hash{k2}", 'HGET', "apikey:$hash{k2}", 'status'),
        'revoked', 'on the promoted replica';
    $r = cli('list');
    is $r->{exit}, 0, 'list after the failover';
    is scalar(() = $r->{out} =~ /^k\d/mg), scalar(keys %hash), 'every key still listed';
    my ($k3key, $k3) = create('--id', 'after');
    $r = cli('delete', 'after');
    is $r->{exit}, 0, 'delete after the failover';
}

# --- the audit trail and the marker: one key each, on the master of its slot -----

$r = cli('audit', '--json');
is $r->{exit}, 0, 'audit on a cluster' or diag $r->{err};
unlike $r->{err}, qr/audit entry could not be written/, 'no audit entry was lost';
my $trail = eval { JSON::PP->new->decode($r->{out}) } || [];
ok scalar(grep { $_->{command} eq 'rotate' } @$trail), 'the rotate above has its entry';
is $c->cmd_for_key('apikey:meta', 'HGET', 'apikey:meta', 'hash'), 'sha256',
   'the hash mode marker';

# --- errors ---------------------------------------------------------------------

$r = run_cli(args => ['--redis', 'redis-cluster://127.0.0.1:' . ApiKeyTest::free_port(), 'list']);
is $r->{exit}, 4, 'no node answers: exit 4';
like $r->{err}, qr/no node of the cluster answered/, 'and says so';
{
    my $single = ApiKeyTest::Redis->start;
    $r = run_cli(args => ['--redis', 'redis-cluster://127.0.0.1:' . $single->port, 'list']);
    is $r->{exit}, 4, 'not a cluster: exit 4';
    like $r->{err}, qr/needs a Redis Cluster/, 'and says so';
}
$r = run_cli(args => ['--redis', "$url/2", 'list']);
is $r->{exit}, 2, 'a database in a cluster URL: usage error';

done_testing;
