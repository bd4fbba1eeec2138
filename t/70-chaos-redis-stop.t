# SPDX-License-Identifier: BSD-2-Clause
# Faults under load (ApiKeyTest::Chaos; make chaos runs longer versions):
# redis-server stopped (SIGSTOP) for 1.5 s, then SIGCONT, while 16 keep-alive
# connections send cached keys, keys that miss the cache and unknown keys.
# Cached keys never fail, misses get 503 (never 401) while Redis is stopped,
# service is back within 2 s, the workers' fds, memory and Redis
# connections return to their baseline.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Chaos;

require_module();

my $c = ApiKeyTest::Chaos->new(conns => 16, walk => 20000, rate => 2000, warmup => 0.5,
                               pre => 0.5, post => 2);
$c->scenario('redis SIGSTOP 1.5s', fault => sub { $_[0]->fault_sigstop(1.5) });
note "\n" . $c->table;
done_testing;
