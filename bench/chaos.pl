#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# bench/chaos.pl: `make chaos`.  One fault at a time under load: 64
# keep-alive connections (ApiKeyTest::Load, capped at CHAOS_RATE requests/s,
# default 6000) send cached valid keys (half of the requests; some with a
# quota, so Redis gets writes), valid keys that miss the cache and unknown
# keys to an nginx with the module (2 workers) in front of a redis-server
# holding 250,000 records, while:
#
#   redis SIGSTOP 5 s, then SIGCONT
#   redis kill -9, started again empty, records restored 1 s later
#   CLIENT KILL TYPE normal / TYPE pubsub, in turn every 0.25 s for 4 s
#   maxclients 1 (the module's connections killed) for 3 s, then restored
#   maxmemory below the data with noeviction (writes fail OOM) for 4 s
#   20 nginx -s reload, one every 0.25 s
#   kill -9 of a worker
#   a flood of 100,000 distinct unknown keys on a zone of the smallest size
#   graceful quit while requests wait on a stopped Redis
#
# What each scenario asserts: see t/lib/ApiKeyTest/Chaos.pm.  Prints the
# table and writes it to bench/CHAOS.md (CHAOS_OUT).  About 1.5 minutes.
# The short versions run in make test: t/70-74.
use strict;
use warnings;
use v5.36;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Test::More;
use Time::HiRes qw(time);
use POSIX qw(strftime);
use ApiKeyTest;
use ApiKeyTest::Chaos;

my $TOP = "$FindBin::Bin/..";
my $OUT = $ENV{CHAOS_OUT} // "$TOP/bench/CHAOS.md";
my $T0 = time;

require_module();

my $c = ApiKeyTest::Chaos->new(conns => 64, walk => 250_000, warmup => 3,
                               rate => $ENV{CHAOS_RATE} // 6000, pre => 1.5, post => 3);

# CHAOS_ONLY=regexp: only the scenarios whose name matches (for debugging)
my $ONLY = $ENV{CHAOS_ONLY};
if (defined $ONLY) {
    for my $m (qw(scenario scenario_flood scenario_quit)) {
        no strict 'refs';
        no warnings 'redefine';
        my $orig = \&{"ApiKeyTest::Chaos::$m"};
        *{"ApiKeyTest::Chaos::$m"} = sub { $_[1] =~ /$ONLY/i ? goto &$orig : undef };
    }
}

$c->scenario('Redis SIGSTOP 5 s, SIGCONT', fault => sub { $c->fault_sigstop(5) });
$c->scenario('Redis kill -9, restart empty, records restored after 1 s',
    fault => sub { $c->fault_kill_restart(1) }, allow_401 => $c->allow_401_empty,
    note => 'valid keys answered 401 unknown while Redis had no records are expected');
$c->scenario('CLIENT KILL TYPE normal / pubsub every 0.25 s for 4 s',
    fault => sub { $c->fault_client_kill(4, 0.25) });
$c->scenario('maxclients 1 for 3 s (connections killed), restored',
    fault => sub { $c->fault_maxclients(3) });
$c->scenario('maxmemory + noeviction (writes fail OOM) for 4 s',
    fault => sub { $c->fault_maxmemory(4) });
$c->scenario('20 nginx -s reload, every 0.25 s',
    fault => sub { $c->fault_reloads(20, 0.25) });
my $killed;
$c->scenario('kill -9 of a worker',
    fault => sub { my $t = $c->fault_kill_worker; $killed = $c->{killed}; $t },
    allow_cached => qr/^err:/,
    expect => [ qr/exited on signal 9/, qr/was locked by/ ]);
$c->scenario_flood('flood of 100,000 unknown keys, zone of the smallest size (41k)', 100_000);
$c->scenario_quit('graceful quit while 48 misses wait on a stopped Redis', 48, 16);

my $table = $c->table;
my @rows = $c->rows;
BAIL_OUT('no scenario ran') unless @rows;
my $secs = time - $T0;
my @failed = grep { $_->{ok} ne 'pass' } $c->rows;
chomp(my $commit = `git -C $TOP rev-parse --short HEAD 2>/dev/null` // '');
my $md = "# Faults under load (`make chaos`)\n\n"
    . "Written by `make chaos` (bench/chaos.pl; the scenarios and checks are in\n"
    . "t/lib/ApiKeyTest/Chaos.pm). Date: " . strftime('%Y-%m-%d %H:%M UTC', gmtime)
    . ", module commit $commit, run time " . sprintf('%.0f', $secs) . " s, load average at the end: "
    . join(' ', (split ' ', slurp('/proc/loadavg'))[0 .. 2]) . ".\n\n"
    . "Load: 64 keep-alive connections capped at " . ($ENV{CHAOS_RATE} // 6000)
    . " requests/s; half cached valid keys (8 of 32 with a quota), a quarter valid keys\n"
    . "missing the cache, a quarter unknown keys. nginx: 2 workers, `timeout=1s`, `negative_ttl=1s`,\n"
    . "`quota_offline=1000000`. Columns: *failures* are requests for a cached valid key that did\n"
    . "not get a 200 (declared: connection errors of the killed worker); *other unexpected\n"
    . "answers* are misses and unknown keys answered otherwise than normal (mostly 503 while\n"
    . "Redis cannot answer: expected); *401 by a Redis fault* must be 0; *recovery* is the time\n"
    . "from the end of the fault to the last unexpected answer (at most 2 s); after each\n"
    . "scenario the workers' fds (+1 per worker), private memory (+max(2 MiB, 10%)) and Redis\n"
    . "connections (2 per worker) are back to the baseline. *Keep-alive retries*: requests sent\n"
    . "again because nginx closed an idle keep-alive connection as they were sent (a reload, a\n"
    . "worker's exit); not failures.\n\n"
    . $table . "\n"
    . join('', map { "- $_->{name}: $_->{note}\n" } grep { $_->{note} } $c->rows)
    . "\nResult: " . (@failed ? 'FAIL (' . join(', ', map { $_->{name} } @failed) . ')' : 'pass') . "\n";
spew($OUT, $md);
print "\n$table";
note "written: $OUT";
done_testing;
