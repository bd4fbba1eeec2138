# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::RedisError;

# An error reply of ApiKeyTest::RedisClient (read_reply returns one).
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;
use overload '""' => sub { "redis error: $_[0]{msg}" }, fallback => 1;
sub new { bless { msg => $_[1] }, $_[0] }
sub msg { $_[0]{msg} }

1;
