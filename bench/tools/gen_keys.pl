#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# bench/tools/gen_keys.pl: keys for the benchmarks, made from a printf format
# and an index, so that wrk scripts can make the same keys (bench/wrk/bench.lua).
#
#   gen_keys.pl resp FMT START COUNT [FIELD VALUE]...
#       Redis protocol for `redis-cli --pipe`: one
#       HSET apikey:<sha256 hex of key> FIELD VALUE ... per key; "%d" in a
#       VALUE becomes the index.
#   gen_keys.pl map FMT START COUNT
#       lines for an nginx map: "KEY" "clientN";
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);

my ($mode, $fmt, $start, $count, @fv) = @ARGV;
die "usage: $0 resp|map FMT START COUNT [FIELD VALUE]...\n"
    unless defined $count && $mode =~ /^(resp|map)$/ && @fv % 2 == 0;
my $prefix = $ENV{AK_PREFIX} // 'apikey:';

binmode STDOUT;
my $buf = '';
for my $i ($start .. $start + $count - 1) {
    my $key = sprintf $fmt, $i;
    if ($mode eq 'map') {
        $buf .= "\"$key\" \"client$i\";\n";
    } else {
        my @args = ('HSET', $prefix . sha256_hex($key),
                    map { (my $v = $_) =~ s/%d/$i/g; $v } @fv);
        $buf .= '*' . @args . "\r\n";
        $buf .= '$' . length($_) . "\r\n$_\r\n" for @args;
    }
    if (length $buf > 1 << 20) {
        print $buf;
        $buf = '';
    }
}
print $buf;
