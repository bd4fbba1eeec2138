#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# Slots moved under load on a Redis Cluster (three masters): a slot holding
# records is moved with the CLUSTER SETSLOT IMPORTING / MIGRATING, MIGRATE
# (a few keys at a time) and SETSLOT NODE steps while a client keeps asking
# for its keys (and for unknown keys of the same slot) with a cache that
# re-reads every 100 ms and no stale answers.  No request gets a wrong
# answer: valid keys 200, unknown ones 401, never 503 either.  The old node
# answered ASK for the keys it no longer held (the module followed with
# ASKING on the new one) and, once the slot was moved, MOVED (the module's
# map followed); both are counted in the nodes' errorstats.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $c = ApiKeyTest::Cluster->start(masters => 3);
my $rt = $c->router;

# a slot, and 8 keys whose records are in it (and 4 unknown keys of the
# same slot): the slot of the first key found
my ($slot, @known, @unknown);
while (@known < 8 || @unknown < 4) {
    my $k = join '', 'mig', map { sprintf '%08x', int rand 2**32 } 1 .. 4;
    $slot //= ApiKeyTest::Cluster::slot_of('apikey:' . key_hash($k));
    next unless ApiKeyTest::Cluster::slot_of('apikey:' . key_hash($k)) == $slot;
    if (@known < 8) {
        my $h = key_hash($k);
        $rt->cmd('HSET', "apikey:$h", id => 'm' . scalar(@known), owner => 'o');
        push @known, $k;
    } else {
        push @unknown, $k;
    }
}
my $m0 = $c->master_for_slot($slot);
is scalar(@{ $m0->cmd('CLUSTER', 'GETKEYSINSLOT', $slot, 100) }), 8, "8 records in slot $slot";

my $n = ApiKeyTest::Nginx->start(workers => 2, http => <<"EOT" . echo_server());
    api_key_zone  keys:4m ttl=100ms negative_ttl=100ms stale=0;
    api_key_redis ${\ $c->url } timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
my $port = $n->port;
sub st {
    my $x = http_get($port, '/', headers => { 'X-API-Key' => $_[0] });
    return $x->status . ' ' . ($x->header('X-Status') // '');
}

is st($_), '200 ok', 'a key of the slot verifies' for @known[0, 1];
is st($unknown[0]), '401 unknown', 'an unknown key of the slot is unknown';

# --- the load: every key of the slot in turn, until told to stop ---------------

my $dir = ApiKeyTest::tmpdir();
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my ($ok, @wrong) = (0);
    my $stop = time + 40;
    while (!-e "$dir/stop" && time < $stop) {
        for my $k (@known) {
            my $s = st($k);
            $s eq '200 ok' ? $ok++ : push @wrong, "known: $s";
        }
        for my $k (@unknown) {
            my $s = st($k);
            $s eq '401 unknown' ? $ok++ : push @wrong, "unknown: $s";
        }
    }
    ApiKeyTest::spew("$dir/result", join "\n", $ok, @wrong);
    POSIX::_exit(0);
}

sub errorstat {
    my ($node, $what) = @_;
    my $info = $node->cmd('INFO', 'errorstats');
    return $info =~ /^errorstat_$what:count=(\d+)/m ? $1 : 0;
}

# --- the steps ------------------------------------------------------------------

my ($to) = grep { $_->port != $m0->port } $c->masters;
sleep 0.5;
$c->migrate_slot($slot, $to, stage => 'start');
sleep 0.3;
# half of the records move, a few at a time: the old node answers ASK for them
my @names = @{ $m0->cmd('CLUSTER', 'GETKEYSINSLOT', $slot, 100) };
for my $i (0 .. 1) {
    $m0->cmd('MIGRATE', '127.0.0.1', $to->port, '', 0, 5000, 'KEYS',
             @names[2 * $i, 2 * $i + 1]);
    sleep 0.4;
}
ok errorstat($m0, 'ASK') > 0, 'the old node answered ASK (' . errorstat($m0, 'ASK') . ')';
ok(($to->cmd('INFO', 'commandstats') =~ /cmdstat_asking:calls=(\d+)/)[0],
   'the module followed it with ASKING on the new node');
$c->finish_migration($slot);
is $c->master_for_slot($slot)->port, $to->port, "slot $slot moved";
sleep 1;
ok errorstat($m0, 'MOVED') > 0, 'then the old node answered MOVED (' . errorstat($m0, 'MOVED') . ')';

# the moved slot back, in one go, while the load goes on
$c->migrate_slot($slot, $m0);
sleep 1;

ApiKeyTest::spew("$dir/stop", '');
waitpid $pid, 0;
my ($ok, @wrong) = split /\n/, ApiKeyTest::slurp("$dir/result");
cmp_ok $ok, '>', 100, "the load got answers ($ok right ones)";
is scalar(@wrong), 0, 'no wrong answer while the slot moved (twice)'
    or diag join "\n", @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)];

my $hg = 0;
$hg += hgetall_calls($_) for $c->masters;
note "$hg HGETALL in all";
is st($_), '200 ok', 'the key verifies after the moves' for @known;

done_testing;
