# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Redis::Monitor;

# MONITOR on its own connection: my $m = $r->monitor (ApiKeyTest::Redis);
# ->lines($wait) ->commands($wait) ->clear ->close.
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;

sub lines {
    my ($self, $wait) = @_;
    push @{ $self->{lines} }, grep { defined && !ref }
        $self->{c}->read_available($wait // 0.3);
    return @{ $self->{lines} };
}

# the commands seen, each as [ lc command, args... ] (args unquoted)
sub commands {
    my ($self, $wait) = @_;
    my @out;
    for my $l ($self->lines($wait)) {
        my ($rest) = $l =~ /^\S+ \[[^\]]*\] (.*)$/ or next;
        my @a;
        while ($rest =~ /"((?:[^"\\]|\\.)*)"/g) {
            my $s = $1;
            $s =~ s/\\x([0-9a-fA-F]{2})/chr hex $1/ge;
            $s =~ s/\\(.)/$1 eq 'n' ? "\n" : $1 eq 'r' ? "\r" : $1 eq 't' ? "\t" : $1/ge;
            push @a, $s;
        }
        $a[0] = lc $a[0] if @a;
        push @out, \@a if @a;
    }
    return @out;
}

sub clear { $_[0]->lines(0.05); $_[0]{lines} = [] }

sub close { $_[0]{c}->close }

1;
