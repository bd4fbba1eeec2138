# SPDX-License-Identifier: BSD-2-Clause
# Faults under load (ApiKeyTest::Chaos; make chaos runs longer versions):
# 5,000 distinct unknown keys on a zone of the smallest allowed size (41k)
# while cached keys are requested there (they never fail); then a graceful
# quit while misses wait on a stopped Redis: each gets its 503, cached keys
# their 200, nginx exits by itself within the timeout + 3 s.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Chaos;

require_module();

my $c = ApiKeyTest::Chaos->new(conns => 16, walk => 5000, rate => 2000, warmup => 0.5,
                               pre => 0.5, post => 1);
$c->scenario_flood('flood of 5,000 unknown keys, zone 41k', 5000);
$c->scenario_quit('graceful quit, 24 misses waiting on a stopped Redis', 24, 8);
note "\n" . $c->table;
done_testing;
