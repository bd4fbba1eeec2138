# SPDX-License-Identifier: BSD-2-Clause
# Faults under load (ApiKeyTest::Chaos; make chaos runs longer versions):
# 5 nginx -s reload 0.2 s apart, then kill -9 of a worker (its "exited on
# signal 9" alert is declared; connections in flight on it may fail).
# Cached keys never fail otherwise, recovery within 2 s, fds, memory and
# Redis connections back to the baseline.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Chaos;

require_module();

my $c = ApiKeyTest::Chaos->new(conns => 16, walk => 20000, rate => 2000, warmup => 0.5,
                               pre => 0.5, post => 2);
$c->scenario('5 reloads', fault => sub { $c->fault_reloads(5, 0.2) });
$c->scenario('kill -9 of a worker', fault => sub { $c->fault_kill_worker },
    allow_cached => qr/^err:/, expect => [ qr/exited on signal 9/, qr/was locked by/ ]);
note "\n" . $c->table;
done_testing;
