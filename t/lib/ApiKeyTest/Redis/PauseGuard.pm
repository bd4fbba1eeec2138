# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Redis::PauseGuard;

# my $g = $r->pause_guard (ApiKeyTest::Redis): redis-server is paused
# until $g goes out of scope or ->resume.
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;

sub resume  { my $r = delete $_[0]{r}; $r->resume if $r }
sub DESTROY { $_[0]->resume }

1;
