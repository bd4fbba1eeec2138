# SPDX-License-Identifier: BSD-2-Clause
# Faults under load (ApiKeyTest::Chaos; make chaos runs longer versions):
# Redis maxclients lowered to 1 with the module's connections killed, for
# 1 s, then restored; maxmemory below the data with noeviction (quota
# leases fail OOM) for 1 s.  Cached keys (some with a quota) never fail,
# misses get 503 (never 401), recovery within 2 s, fds, memory and Redis
# connections back to the baseline.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Chaos;

require_module();

my $c = ApiKeyTest::Chaos->new(conns => 16, walk => 20000, rate => 2000, warmup => 0.5,
                               pre => 0.5, post => 2);
$c->scenario('maxclients 1 for 1s', fault => sub { $c->fault_maxclients(1) });
$c->scenario('maxmemory noeviction for 1s', fault => sub { $c->fault_maxmemory(1) });
note "\n" . $c->table;
done_testing;
