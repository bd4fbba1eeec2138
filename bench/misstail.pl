#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# bench/misstail.pl RESDIR RUNS "CONNS..." "VARIANTS..." DURATION: the tables
# of `make bench-miss` (bench/misstail.sh), in Markdown on stdout.
#
# RESDIR holds, per cell VARIANT.CONNS.RUN: one line of key=value (wrk's
# figures, worker/redis CPU, HGETALLs, load, Redis's latencystats), the
# metrics pages before and after the measured run (.m0, .m1) and
# redis-benchmark's output (.rb).  Every figure is per cell; a row shows the
# median over the runs and the (min-max).
use strict;
use warnings;

my ($res, $runs, $conns_list, $variants, $duration) = @ARGV;
die "usage: $0 RESDIR RUNS CONNS VARIANTS DURATION\n" unless defined $duration;
my @conns = split ' ', $conns_list;
my %has = map { $_ => 1 } split ' ', $variants;

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    my $t = <$fh>;
    return $t // '';
}

sub kv {
    my ($line) = @_;
    my %h;
    $h{$1} = $2 while $line =~ /([\w.]+)=(\S+)/g;
    return \%h;
}

# the metrics page: "name{labels} value" -> value
sub metrics {
    my ($f) = @_;
    my %m;
    for (split /\n/, slurp($f)) {
        next if /^#/;
        $m{$1} = $2 if /^(\S+) (\S+)$/;
    }
    return \%m;
}

# the module's read histogram over the run: [[bound_us, count]...], sum_us, n
sub histogram {
    my ($m0, $m1) = @_;
    my (@b, $prev);
    for my $k (keys %$m1) {
        next unless $k =~ /^api_key_redis_read_seconds_bucket\{zone="keys",le="([^"]+)"\}$/;
        my $le = $1 eq '+Inf' ? 9**9**9 : $1 * 1e6;
        push @b, [$le, $m1->{$k} - ($m0->{$k} // 0)];
    }
    @b = sort { $a->[0] <=> $b->[0] } @b;
    my $sum = ($m1->{'api_key_redis_read_seconds_sum{zone="keys"}'} // 0)
            - ($m0->{'api_key_redis_read_seconds_sum{zone="keys"}'} // 0);
    my $n = ($m1->{'api_key_redis_read_seconds_count{zone="keys"}'} // 0)
          - ($m0->{'api_key_redis_read_seconds_count{zone="keys"}'} // 0);
    return (\@b, $sum * 1e6, $n);
}

# quantile Q of the cumulative buckets: the upper bound (µs) of the bucket
# that holds it (what a Prometheus histogram can say without guessing)
sub hquant {
    my ($b, $n, $q) = @_;
    return undef unless $n > 0;
    for my $e (@$b) {
        return $e->[0] if $e->[1] >= $q * $n;
    }
    return undef;
}

# redis-benchmark's "Latency by percentile distribution": the value at the
# first listed percentile >= Q (ms), and the summary's average
sub rbench {
    my ($f) = @_;
    my $t = slurp($f);
    my (@d, %r);
    push @d, [$1, $2] while $t =~ /^\s*([\d.]+)% <= ([\d.]+) milliseconds/mg;
    for my $q (50, 99, 99.9) {
        for my $e (@d) {
            if ($e->[0] >= $q - 1e-9) { $r{$q} = $e->[1] * 1000; last; }
        }
    }
    if ($t =~ /avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.]+)/) {
        $r{avg} = $1 * 1000;
    }
    $r{rps} = $1 if $t =~ /throughput summary: ([\d.]+) requests per second/;
    return \%r;
}

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    return $v[$#v / 2] if @v % 2;
    return ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub range {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return @v ? ($v[0], $v[-1]) : (undef, undef);
}

sub ms { defined $_[0] ? sprintf('%.3f', $_[0] / 1000) : '?' }

sub upto { defined $_[0] ? ($_[0] > 1e12 ? '>1 s' : '≤' . ms($_[0])) : '?' }

# "median (min–max)" of µs values, in ms
sub mr {
    my @v = @_;
    my ($lo, $hi) = range(@v);
    return '?' unless defined $lo;
    return ms(median(@v)) . ' (' . ms($lo) . '–' . ms($hi) . ')';
}

# --- the cells ----------------------------------------------------------------

my (%cell, @problems);
my @missv = grep { $has{$_} } qw(miss miss_b);
my %label = (miss => 'miss', miss_b => 'miss, ' . ($ENV{MISSTAIL_B_LABEL} // 'module B'),
             hit => 'cached key');
for my $v (qw(miss miss_b hit)) {
    next unless $has{$v};
    for my $c (@conns) {
        for my $r (1 .. $runs) {
            my $base = "$res/$v.$c.$r";
            my $line = slurp($base);
            unless ($line =~ /^WRK /) {
                push @problems, "$v, $c connection(s), run $r: no result";
                next;
            }
            my $k = kv($line);
            my $m0 = metrics("$base.m0");
            my $m1 = metrics("$base.m1");
            my ($b, $sum, $n) = histogram($m0, $m1);
            my $lk = 'api_key_cache_lookups_total{zone="keys",result=';
            my %x = (
                %$k,
                rb     => rbench("$base.rb"),
                hb     => $b, hsum => $sum, hn => $n,
                misses => ($m1->{"$lk\"miss\"}"} // 0) - ($m0->{"$lk\"miss\"}"} // 0),
                hits   => ($m1->{"$lk\"hit\"}"} // 0) - ($m0->{"$lk\"hit\"}"} // 0),
                errlog => slurp("$base.errlog"),
            );
            my $req = $x{requests};
            my $what = "$v, $c connection(s), run $r";
            push @problems, "$what: $x{non2xx} answers not 200" if $x{non2xx};
            push @problems, "$what: $x{sock_errors} socket errors" if $x{sock_errors};
            push @problems, "$what: $x{repeats} requests repeated a key" if $x{repeats};
            if ($v ne 'hit') {
                # wrk counts the answers it got: the requests in flight
                # when it stops (at most one per connection) were read too
                push @problems, "$what: $x{hgetall} HGETALLs for $req requests"
                    if $x{hgetall} < $req || $x{hgetall} > $req + $c;
                push @problems, "$what: $x{misses} cache misses for $x{hgetall} HGETALLs"
                    if $x{misses} != $x{hgetall};
                push @problems, "$what: $n reads in the module's histogram for $x{hgetall} HGETALLs"
                    if $n != $x{hgetall};
            } else {
                push @problems, "$what: $x{hgetall} HGETALLs (a cached key reads nothing)"
                    if $x{hgetall} != 0;
            }
            chomp $x{errlog};
            push @problems, "$what: error log: `$x{errlog}`" if $x{errlog} ne '';
            $cell{$v}{$c}{$r} = \%x;
        }
    }
}

sub cells { my ($v, $c) = @_; return map { $cell{$v}{$c}{$_} // () } 1 .. $runs }

# --- the tail table ---------------------------------------------------------------

print "### Tail: a cache miss against Redis's own round trip\n\n";
print "Median over the $runs runs (min–max), ms. *Miss*: wrk's latency of requests whose key is read from Redis (one HGETALL each);\n";
print "*module's read*: the worker's \`api_key_redis_read_seconds\` histogram over the same run (from the HGETALL leaving for Redis to its\n";
print "answer handled; the bucket that holds the percentile, its bounds are 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 ... ms) and its exact mean;\n";
print "*Redis round trip*: redis-benchmark HGETALL at the same number of connections; *cached*: a cached key, same set-up.\n\n";
print "| conns | | requests/s | p50 | p99 | p99.9 | mean |\n";
print "|---:|---|---:|---:|---:|---:|---:|\n";
for my $c (@conns) {
    my $first = 1;
    for my $v (@missv) {
        my @m = cells($v, $c);
        next unless @m;
        my ($lo, $hi) = range(map { $_->{rps} } @m);
        printf "| %s | **%s** (wrk) | %.0f (%.0f–%.0f) | **%s** | **%s** | **%s** | %s |\n",
            $first ? $c : '', $label{$v},
            median(map { $_->{rps} } @m), $lo, $hi,
            mr(map { $_->{p50_us} } @m), mr(map { $_->{p99_us} } @m),
            mr(map { $_->{p999_us} } @m), mr(map { $_->{mean_us} } @m);
        $first = 0;
        printf "| | %s: module's read (histogram) | | %s | %s | %s | %s |\n", $label{$v},
            upto(median(map { hquant($_->{hb}, $_->{hn}, 0.5) } @m)),
            upto(median(map { hquant($_->{hb}, $_->{hn}, 0.99) } @m)),
            upto(median(map { hquant($_->{hb}, $_->{hn}, 0.999) } @m)),
            mr(map { $_->{hn} ? $_->{hsum} / $_->{hn} : undef } @m);
    }
    my @m = cells($missv[0] // 'miss', $c);
    if (@m) {
        my @rb = map { $_->{rb} } @m;
        my ($lo, $hi) = range(map { $_->{rps} } @rb);
        printf "| | Redis round trip (redis-benchmark) | %s | %s | %s | %s | %s |\n",
            defined $lo ? sprintf('%.0f (%.0f–%.0f)', median(map { $_->{rps} } @rb), $lo, $hi) : '?',
            mr(map { $_->{50} } @rb), mr(map { $_->{99} } @rb),
            mr(map { $_->{'99.9'} } @rb), mr(map { $_->{avg} } @rb);
        printf "| | Redis executing HGETALL (latencystats) | | %s | %s | %s | |\n",
            mr(map { $_->{redis_p50} } @m), mr(map { $_->{redis_p99} } @m),
            mr(map { $_->{'redis_p99.9'} } @m);
    }
    my @h = cells('hit', $c);
    if (@h) {
        my ($lo, $hi) = range(map { $_->{rps} } @h);
        printf "| %s | cached key (wrk) | %.0f (%.0f–%.0f) | %s | %s | %s | %s |\n",
            $first ? $c : '',
            median(map { $_->{rps} } @h), $lo, $hi,
            mr(map { $_->{p50_us} } @h), mr(map { $_->{p99_us} } @h),
            mr(map { $_->{p999_us} } @h), mr(map { $_->{mean_us} } @h);
    }
}
print "\n";

# --- per run: the tail and the load ---------------------------------------------

if (@missv) {
    print "Each run's miss p99 / p99.9 (ms) and the 1-minute load average at the start and end of its measured run:\n\n";
    print "| conns | | " . join(' | ', map { "run $_" } 1 .. $runs) . " |\n";
    print "|---:|---|" . ('---|' x $runs) . "\n";
    for my $c (@conns) {
      for my $v (@missv) {
        print "| $c | $label{$v} | " . join(' | ', map {
            my $x = $cell{$v}{$c}{$_};
            $x ? sprintf('%s / %s (load %s→%s)', ms($x->{p99_us}), ms($x->{p999_us}),
                         $x->{load0}, $x->{load1}) : '?'
        } 1 .. $runs) . " |\n";
      }
    }
    print "\n";
}

# --- where the time goes: means --------------------------------------------------

if (@missv) {
    print "### Where a miss's time goes (means, µs; median over the runs)\n\n";
    print "Means add up where percentiles do not. (a) Redis's round trip as a plain client sees it with nothing else going on\n";
    print "(redis-benchmark, 1 connection, the same run): loopback, two wake-ups, Redis's work; (b) the module's read as the worker\n";
    print "saw it (its histogram's mean); (b) − (a): what a read waits beyond a bare round trip: for the end of the worker's\n";
    print "event-loop iteration (the commands of one iteration leave in one write), for Redis to get through the reads of the same\n";
    print "write and to get CPU 1 (shared with wrk), and for the worker to come to the answer after the other events it handles;\n";
    print "(c) the rest of a miss: wrk's mean minus (b): the request's own handling in nginx and the module (hashing, the zone\n";
    print "lock, the record), the wait for CPU 0 before and after the read, and wrk's side. Redis at the same number of connections:\n";
    print "redis-benchmark -c N; a cached key, for reference.\n\n";
    print "| conns | miss (wrk) | cached key (wrk) | miss − cached | (a) Redis round trip, 1 conn | (b) module's read | (b) − (a) | (c) miss − (b) | Redis round trip, N conns |\n";
    print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    my $f = sub { defined $_[0] ? sprintf('%.1f', $_[0]) : '?' };
    my @sched;
    for my $c (@conns) {
      for my $v (@missv) {
        my @m = cells($v, $c);
        next unless @m;
        my @h = cells('hit', $c);
        my $e2e = median(map { $_->{mean_us} } @m);
        my $hit = median(map { $_->{mean_us} } @h);
        my $an = median(map { $_->{rb}{avg} } @m);
        # (a): this run's redis-benchmark at 1 connection (the 1-connection cell)
        my %a1 = map { my $x = $cell{$missv[0]}{1}{$_}; $x ? ($_ => $x->{rb}{avg}) : () } 1 .. $runs;
        my $a = median(values %a1);
        my $b = median(map { $_->{hn} ? $_->{hsum} / $_->{hn} : undef } @m);
        my $bma = median(map { my $r = $_; defined $a1{$r} && $cell{$v}{$c}{$r} && $cell{$v}{$c}{$r}{hn}
                               ? $cell{$v}{$c}{$r}{hsum} / $cell{$v}{$c}{$r}{hn} - $a1{$r} : undef } 1 .. $runs);
        my $cc = median(map { $_->{hn} ? $_->{mean_us} - $_->{hsum} / $_->{hn} : undef } @m);
        my $cl = $v eq 'miss' ? $c : "$c ($label{$v})";
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $cl,
            $f->($e2e), $f->($hit), defined $hit ? $f->($e2e - $hit) : '?',
            $f->($a), $f->($b), $f->($bma), $f->($cc), $f->($an);

        my $per = sub {     # median over cells of FIELD / DIVISOR-FIELD, ns -> µs
            my ($cl, $k, $d, $scale) = @_;
            return median(map { $_->{$d} ? $_->{$k} / $scale / $_->{$d} : undef } @$cl);
        };
        push @sched, sprintf "| %s | %s / %s | %s / %s | %s / %s | %s | %s | %s | %s |", $cl,
            $f->($per->(\@m, 'wcpu_ns', 'requests', 1000)), $f->($per->(\@h, 'wcpu_ns', 'requests', 1000)),
            $f->($per->(\@m, 'wwait_ns', 'requests', 1000)), $f->($per->(\@h, 'wwait_ns', 'requests', 1000)),
            map({ defined $_ ? sprintf('%.2f', $_) : '?' }
                $per->(\@m, 'wslices', 'requests', 1), $per->(\@h, 'wslices', 'requests', 1)),
            $f->($per->(\@m, 'rcpu_ns', 'hgetall', 1000)), $f->($per->(\@m, 'rwait_ns', 'hgetall', 1000)),
            map({ defined $_ ? sprintf('%.3f', $_) : '?' } $per->(\@m, 'hgetall', 'requests', 1)),
            map({ defined $_ ? sprintf('%.1f', $_) : '?' } $per->(\@m, 'hgetall', 'rreads', 1));
      }
    }
    print "\n";
    print "The CPUs (per request, µs; median over the runs; /proc/PID/schedstat of the nginx worker and redis-server's main\n";
    print "thread over the measured run): *CPU*, time on a CPU; *waiting*, time runnable but not running (the CPU taken by\n";
    print "another process: wrk and redis-server share CPU 1, other work shares both); *times run*, how often the worker was\n";
    print "scheduled in (a wake-up: at one connection a miss is two, a request and its answer); *HGETALLs per Redis read\n";
    print "event*: Redis's HGETALL calls over its `total_reads_processed` (INFO stats), i.e. how many reads one write of the\n";
    print "worker carried (the module writes the commands of one event-loop iteration at its end, in one write).\n\n";
    print "| conns | worker CPU miss / cached | worker waiting miss / cached | worker times run miss / cached | redis-server CPU per HGETALL | redis-server waiting per HGETALL | HGETALLs per request | HGETALLs per Redis read event |\n";
    print "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    print "$_\n" for @sched;
    print "\n";
}

# --- in a few lines -------------------------------------------------------------

if ($has{miss} && $has{hit}) {
    print "### In short (medians over the runs)\n\n";
    my %a1 = map { my $x = $cell{miss}{1}{$_}; $x ? ($_ => $x) : () } 1 .. $runs;
    my $rt50 = median(map { $_->{rb}{50} } values %a1);
    for my $c (@conns) {
        my @m = cells('miss', $c);
        my @h = cells('hit', $c);
        next unless @m && @h;
        my $per = sub { my ($cl, $k) = @_; median(map { $_->{$k} / 1000 / $_->{requests} } @$cl) };
        my ($mc, $hc) = ($per->(\@m, 'wcpu_ns'), $per->(\@h, 'wcpu_ns'));
        my $mw = $per->(\@m, 'wwait_ns');
        printf "- %s connection%s: p50 %s ms for a miss, %s ms for a cached key (+%s ms; Redis's own p50 round trip at 1 connection: %s ms);"
             . " p99 %s / p99.9 %s ms for a miss, %s / %s ms for a cached key, %s / %s ms for redis-benchmark at %s connection%s."
             . " A miss costs the worker %.1f µs of CPU more than a cached key (%.1f against %.1f µs per request); meanwhile it waited"
             . " %.1f µs per miss for a CPU taken by other processes.\n",
            $c, $c == 1 ? '' : 's',
            ms(median(map { $_->{p50_us} } @m)), ms(median(map { $_->{p50_us} } @h)),
            ms(median(map { $_->{p50_us} } @m) - median(map { $_->{p50_us} } @h)), ms($rt50),
            ms(median(map { $_->{p99_us} } @m)), ms(median(map { $_->{p999_us} } @m)),
            ms(median(map { $_->{p99_us} } @h)), ms(median(map { $_->{p999_us} } @h)),
            ms(median(map { $_->{rb}{99} } @m)), ms(median(map { $_->{rb}{'99.9'} } @m)),
            $c, $c == 1 ? '' : 's',
            $mc - $hc, $mc, $hc, $mw;
    }
    print "\n";
}

if (@problems) {
    print "**CHECK FAILED:**\n\n";
    print "- $_\n" for @problems;
    print "\n";
} else {
    print "Checks, every cell: every answer 200, no socket error, no key sent twice; miss cells: Redis's HGETALL calls\n";
    print "(INFO commandstats, reset before the measured run) = the module's cache misses = reads in its histogram = wrk's\n";
    print "requests plus at most one per connection (the requests in flight when wrk stops: read, not counted by wrk);\n";
    print "cached-key cells: no HGETALL; no error in nginx's log.\n";
}
