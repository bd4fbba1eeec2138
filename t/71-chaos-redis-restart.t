# SPDX-License-Identifier: BSD-2-Clause
# Faults under load (ApiKeyTest::Chaos; make chaos runs longer versions):
# redis-server killed (kill -9) and started again empty, its records written
# back 0.5 s later; then CLIENT KILL TYPE normal and TYPE pubsub in turn
# every 0.25 s for 1 s.  Cached keys never fail (a valid key answered
# 401 only while Redis really had no record, up to negative_ttl after the
# records are back), no valid key 401 otherwise, recovery within 2 s, the
# workers' fds, memory and Redis connections back to the baseline.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Chaos;

require_module();

my $c = ApiKeyTest::Chaos->new(conns => 16, walk => 20000, rate => 2000, warmup => 0.5,
                               pre => 0.5, post => 2);
$c->scenario('redis kill -9, restart empty, records back after 0.5s',
    fault => sub { $c->fault_kill_restart(0.5) }, allow_401 => $c->allow_401_empty);
$c->scenario('CLIENT KILL normal/pubsub every 0.25s for 1s',
    fault => sub { $c->fault_client_kill(1, 0.25) });
note "\n" . $c->table;
done_testing;
