#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# check-layers.pl: the file-level dependency graph of the C glue, read from
# its compiled objects, checked against a declared layer order.
#
#   check-layers.pl [--graph] LAYERS_CONF OBJECT.o ...
#
# For each object, nm lists the global symbols it defines and those it
# leaves undefined; an undefined symbol that another of the given objects
# defines is an edge caller.c -> callee.c. LAYERS_CONF (scripts/layers.conf;
# its comments say the rules) orders the files in layers, top first. An edge
# must go to a lower layer: one to the same layer or above is printed as
#   caller.c -> callee.c (symbol, ...)
# and makes the exit status 1. Files missing from the table (or table
# entries without an object) are errors too (status 2). --graph prints
# every edge, "ok" or "UP", and the file-level cycles.
# Environment: NM (default nm).

use strict;
use warnings;

$| = 1;
my $graph = 0;
if (@ARGV && $ARGV[0] eq '--graph') {
    $graph = 1;
    shift @ARGV;
}
die "usage: $0 [--graph] LAYERS_CONF OBJECT.o ...\n" if @ARGV < 2;
my ($conf, @objs) = @ARGV;

# --- the layer table ------------------------------------------------------

my (%layer_of, @layer_names, %allow);
my $prefix = '';
my $errors = 0;

sub conf_error {
    my ($where, $msg) = @_;
    print STDERR "$where: $msg\n";
    $errors++;
}

open my $fh, '<', $conf or die "$conf: $!\n";
my $text = do { local $/; <$fh> };
close $fh;
$text =~ s/\\\n/ /g;
my $lineno = 0;
my @files_in_order;
for my $line (split /\n/, $text) {
    $lineno++;
    $line =~ s/#.*//;
    next if $line =~ /^\s*$/;
    if ($line =~ /^\s*prefix\s+(\S+)\s*$/) {
        $prefix = $1;
    } elsif ($line =~ /^\s*allow\s+(\S+)\s*$/) {
        $allow{$1} = 1;
    } elsif ($line =~ /^\s*layer\s+([\w-]+)\s*:\s*(.*)$/) {
        my ($name, $files) = ($1, $2);
        push @layer_names, $name;
        for my $f (split ' ', $files) {
            if (exists $layer_of{$f}) {
                conf_error("$conf:$lineno", "$f is listed twice");
                next;
            }
            $layer_of{$f} = $#layer_names;
            push @files_in_order, $f;
        }
    } else {
        conf_error("$conf:$lineno", "cannot parse: $line");
    }
}
conf_error($conf, 'no layer') unless @layer_names;

# --- the objects ----------------------------------------------------------

sub short_name {
    my ($path) = @_;
    my $f = $path;
    $f =~ s{.*/}{};
    $f =~ s/\.o$/.c/;
    $f =~ s/^\Q$prefix\E// if length $prefix;
    return $f;
}

my $nm = $ENV{NM} || 'nm';
my (%defines, %needs, %seen);
for my $obj (@objs) {
    my $f = short_name($obj);
    if (!-f $obj) {
        conf_error($obj, 'no such object (build the module first)');
        next;
    }
    if ($seen{$f}++) {
        conf_error($obj, "a second object for $f");
        next;
    }
    if (!exists $layer_of{$f}) {
        conf_error($conf, "$f has no layer: add it to a \"layer\" line");
    }
    open my $p, '-|', $nm, '-P', '-g', $obj or die "$nm: $!\n";
    while (<$p>) {
        my ($sym, $type) = split ' ';
        next unless defined $type;
        if ($type eq 'U' || $type eq 'w' || $type eq 'v') {
            $needs{$f}{$sym} = 1;
        } else {
            if (exists $defines{$sym} && $defines{$sym} ne $f) {
                conf_error($obj, "$sym is also defined by $defines{$sym}");
            }
            $defines{$sym} = $f;
        }
    }
    close $p or die "$nm $obj failed\n";
}
for my $f (@files_in_order) {
    conf_error($conf, "$f is listed but has no object (a stale entry?)")
        unless $seen{$f};
}
exit 2 if $errors;

# --- the edges ------------------------------------------------------------

my %edge;    # caller -> callee -> [symbols]
for my $caller (sort keys %needs) {
    for my $sym (sort keys %{ $needs{$caller} }) {
        my $callee = $defines{$sym};
        next if !defined $callee || $callee eq $caller || $allow{$sym};
        push @{ $edge{$caller}{$callee} }, $sym;
    }
}

my @bad;
for my $caller (@files_in_order) {
    for my $callee (sort { $layer_of{$a} <=> $layer_of{$b} || $a cmp $b }
                    keys %{ $edge{$caller} || {} })
    {
        my $line = "$caller -> $callee ("
                   . join(', ', @{ $edge{$caller}{$callee} }) . ')';
        my $up = $layer_of{$callee} <= $layer_of{$caller};
        push @bad, $line if $up;
        if ($graph) {
            printf "%-3s %s\n", $up ? 'UP' : 'ok', $line;
        }
    }
}

if ($graph) {
    # file-level cycles: strongly connected components of more than one file
    my ($index, %idx, %low, %on, @stack, @sccs) = (0);
    my $visit;
    $visit = sub {
        my ($v) = @_;
        $idx{$v} = $low{$v} = $index++;
        push @stack, $v;
        $on{$v} = 1;
        for my $w (sort keys %{ $edge{$v} || {} }) {
            if (!exists $idx{$w}) {
                $visit->($w);
                $low{$v} = $low{$w} if $low{$w} < $low{$v};
            } elsif ($on{$w}) {
                $low{$v} = $idx{$w} if $idx{$w} < $low{$v};
            }
        }
        if ($low{$v} == $idx{$v}) {
            my @c;
            my $w;
            do {
                $w = pop @stack;
                $on{$w} = 0;
                push @c, $w;
            } while ($w ne $v);
            push @sccs, [ sort @c ] if @c > 1;
        }
    };
    for my $f (@files_in_order) {
        $visit->($f) unless exists $idx{$f};
    }
    print 'cycle: ', join(' ', @$_), "\n" for @sccs;
}

if (@bad) {
    print STDERR "check-layers: ", scalar(@bad),
        " edge(s) between glue files do not point down the layers of $conf:\n";
    print STDERR "  $_\n" for @bad;
    exit 1;
}
print "check-layers: ", scalar(@files_in_order), " files in ",
    scalar(@layer_names), " layers, every edge points down\n" unless $graph;
exit 0;
