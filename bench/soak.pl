#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# bench/soak.pl: `make soak`.  SOAK_MINUTES (default 10) of steady load on an
# nginx with the module (2 workers) and a redis-server, on loopback, through
# the test harness (t/lib): cached keys, keys that miss the cache, unknown
# keys, rate-limited keys, quota keys, and keys that are revoked and updated
# (HSET + PUBLISH revoke/update, one change every 0.5 s); an `nginx -s
# reload` every minute.  Every 10 s it samples each worker's private memory
# (RssAnon: heap and stacks, not the shared zone), the master's, the
# workers' open fds and the Redis connections.
#
# Fails (exit status 1) on growth beyond the bound, computed from the
# samples of the first two minutes after a 30 s warm-up (the baseline, the
# median of each series there):
#   - largest worker's RssAnon: at most baseline + max(2 MiB, 10%);
#   - master's RssAnon: at most baseline + 1 MiB (a reload every minute);
#   - fds over the workers: at most baseline + 1 per worker;
#   - Redis connections: exactly 2 per worker at every sample (one for
#     commands, one subscriber; samples are taken 5 s after a reload);
# and also on a failed request for a cached key, a valid key answered 401,
# or an [alert]/[crit]/[emerg]/signal exit in the error log.
#
# Writes bench/soak.csv (the samples), bench/soak.png (gnuplot) and the
# "soak" section of bench/RESULTS.md.
#
# Environment: SOAK_MINUTES (10), SOAK_RATE (requests/s over all
# connections, 3000), SOAK_CONNS (32), SOAK_OUT (directory for the CSV and
# PNG, default bench/), SOAK_RESULTS (default bench/RESULTS.md).
use strict;
use warnings;
use v5.36;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use ApiKeyTest;
use ApiKeyTest::Load;

my $TOP = "$FindBin::Bin/..";
my $MIN = $ENV{SOAK_MINUTES} // 10;
my $RATE = $ENV{SOAK_RATE} // 3000;
my $CONNS = $ENV{SOAK_CONNS} // 32;
my $OUT = $ENV{SOAK_OUT} // "$TOP/bench";
my $RESULTS = $ENV{SOAK_RESULTS} // "$TOP/bench/RESULTS.md";
my $WORKERS = 2;
my $SAMPLE = 10;
my $DUR = $MIN * 60;
my $WALK = int($RATE / 8 * $DUR * 1.1) + 1000;

require_module();
for my $t (qw(gnuplot redis-cli)) {
    system("command -v $t >/dev/null") == 0 or BAIL_OUT("$t not found (make bench-deps)");
}

my $r = ApiKeyTest::Redis->start(config => ['maxclients 10000']);
my $http = <<'EOT';
    api_key_zone  keys:64m ttl=30s negative_ttl=5s quota_lease=100;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            empty_gif;
        }
    }
EOT

# --- records ----------------------------------------------------------------
sub resp { my $s = '*' . @_ . "\r\n"; $s .= '$' . length($_) . "\r\n$_\r\n" for @_; $s }
my %key = (
    cached => [ map { sprintf 'soak_c_%04d', $_ } 0 .. 63 ],
    rate   => [ map { sprintf 'soak_r_%04d', $_ } 0 .. 7 ],
    quota  => [ map { sprintf 'soak_q_%04d', $_ } 0 .. 7 ],
    mut    => [ map { sprintf 'soak_m_%04d', $_ } 0 .. 15 ],
);
my $walk_fmt = 'soak_w_%08d';
{
    my $f = ApiKeyTest::tmpdir() . '/records.resp';
    open my $fh, '>:raw', $f or die;
    print $fh resp('HSET', 'apikey:' . sha256_hex($_), owner => 'c', plan => 'soak') for @{ $key{cached} };
    print $fh resp('HSET', 'apikey:' . sha256_hex($_), owner => 'r', rate => '20/s', burst => 5) for @{ $key{rate} };
    print $fh resp('HSET', 'apikey:' . sha256_hex($_), owner => 'q', quota => '1000000000/day') for @{ $key{quota} };
    print $fh resp('HSET', 'apikey:' . sha256_hex($_), owner => 'm0', status => 'active') for @{ $key{mut} };
    my $buf = '';
    for my $i (0 .. $WALK - 1) {
        $buf .= resp('HSET', 'apikey:' . sha256_hex(sprintf $walk_fmt, $i), owner => "w$i");
        if (length $buf > 1 << 20) { print $fh $buf; $buf = '' }
    }
    print $fh $buf;
    close $fh;
    my $port = $r->port;
    my $out = `redis-cli -p $port --pipe < $f 2>&1`;
    die "redis-cli --pipe: $out" unless $out =~ /errors: 0\b/;
}

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS, error_level => 'info',
    redis => $r, redis_clients => 2 * $WORKERS, vars => { REDIS => $r->port });
for my $k (@{ $key{cached} }, @{ $key{quota} }, @{ $key{mut} }) {
    my $res = http_get($n->port, '/', headers => { 'X-API-Key' => $k });
    die "warm-up: " . $res->status unless $res->status == 200;
}

my $u = $$;
my $load = ApiKeyTest::Load->start(port => $n->port, conns => $CONNS, rate => $RATE,
    duration => $DUR, timeout => 10, classes => [
        { name => 'cached', weight => 3, keys => $key{cached}, ok => ['200'] },
        { name => 'miss', weight => 1, ok => ['200'],
          gen => sub ($i) { sprintf $walk_fmt, $i % $WALK } },
        { name => 'unknown', weight => 1, ok => ['401 unknown'],
          gen => sub ($i) { "soak_u_${u}_$i" } },
        { name => 'rate', weight => 1, keys => $key{rate}, ok => ['200', '429 rate_limited'] },
        { name => 'quota', weight => 1, keys => $key{quota}, ok => ['200'] },
        { name => 'mut', weight => 1, keys => $key{mut}, ok => ['200', '401 revoked'] },
    ]);

# --- sampling, changes, reloads ---------------------------------------------
sub status_kb {
    my ($pid, $field) = @_;
    my ($kb) = ApiKeyTest::slurp("/proc/$pid/status") =~ /^$field:\s+(\d+)/m;
    return $kb // 0;
}
sub fds {
    my ($pid) = @_;
    opendir my $d, "/proc/$pid/fd" or return 0;
    return scalar grep { /^\d+$/ } readdir $d;
}

my @samples;
my $t0 = time;
my ($next_sample, $next_reload, $next_change) = ($t0 + $SAMPLE, $t0 + 55, $t0 + 0.5);
my ($reloads, $changes, $mi) = (0, 0, 0);
my $mark = 0;
while (time < $t0 + $DUR) {
    my $now = time;
    if ($now >= $next_change) {
        # the mutable keys, in turn: revoke (HSET + PUBLISH revoke), then at
        # its next turn back to active with a new owner (HSET + PUBLISH update)
        my $k = $key{mut}[ $mi % @{ $key{mut} } ];
        my $h = sha256_hex($k);
        if (int($mi / @{ $key{mut} }) % 2 == 0) {
            $r->cmd('HSET', "apikey:$h", status => 'revoked');
            $r->cmd('PUBLISH', 'apikey:events', "revoke $h");
        } else {
            $r->cmd('HSET', "apikey:$h", status => 'active', owner => "m$mi");
            $r->cmd('PUBLISH', 'apikey:events', "update $h");
        }
        $mi++;
        $changes++;
        $next_change += 0.5;
    }
    if ($now >= $next_reload) {
        my $out = run_nginx('-p', $n->dir . '/', '-c', $n->conf_path, '-s', 'reload');
        die "reload: $out" if $?;
        $reloads++;
        $next_reload += 60;
    }
    if ($now >= $next_sample) {
        my @w = $n->worker_pids;
        my @rss = map { status_kb($_, 'RssAnon') } @w;
        my @vm = map { status_kb($_, 'VmRSS') } @w;
        my $fd = 0;
        $fd += fds($_) for @w;
        my $conns = scalar $r->other_clients;
        my ($ci) = $r->cmd('INFO', 'clients') =~ /^connected_clients:(\d+)/m;
        push @samples, {
            t => sprintf('%.0f', $now - $t0), workers => scalar @w,
            rss_max => (sort { $b <=> $a } @rss)[0] // 0,
            rss_sum => eval { my $s = 0; $s += $_ for @rss; $s },
            vmrss_sum => eval { my $s = 0; $s += $_ for @vm; $s },
            master => status_kb($n->master_pid, 'RssAnon'),
            fds => $fd, redis => $conns, reloads => $reloads, changes => $changes,
        };
        note sprintf 't=%4ds workers %d RssAnon max %d KiB, master %d KiB, fds %d, Redis connections %d',
            $samples[-1]{t}, scalar @w, $samples[-1]{rss_max}, $samples[-1]{master}, $fd, $conns;
        $next_sample += $SAMPLE;
    }
    sleep 0.05;
}
my $res = $load->wait;

# --- the checks -------------------------------------------------------------
sub median { my @s = sort { $a <=> $b } @_; @s ? $s[$#s / 2] : 0 }
my @base = grep { $_->{t} >= 30 && $_->{t} <= 150 } @samples;
@base = @samples[0 .. ($#samples < 2 ? $#samples : 2)] unless @base;
my %b = map { my $f = $_; ($f => median(map { $_->{$f} } @base)) } qw(rss_max master fds);
my %bound = (
    rss_max => $b{rss_max} + ($b{rss_max} / 10 > 2048 ? $b{rss_max} / 10 : 2048),
    master => $b{master} + 1024,
    fds => $b{fds} + $WORKERS,
);
my %peak = map { my $f = $_; ($f => (sort { $b <=> $a } map { $_->{$f} } @samples)[0]) } qw(rss_max master fds);
my @late = @samples[int(@samples * 0.8) .. $#samples];
my %end = map { my $f = $_; ($f => median(map { $_->{$f} } @late)) } qw(rss_max master fds);

ok(@samples >= $MIN * 6 - 1, scalar(@samples) . " samples");
for my $f (qw(rss_max master fds)) {
    ok($peak{$f} <= $bound{$f}, sprintf "%s: peak %d <= bound %d (baseline %d, last-20%% median %d)",
       $f, $peak{$f}, $bound{$f}, $b{$f}, $end{$f});
}
my @badc = grep { $_->{redis} != 2 * $WORKERS || $_->{workers} != $WORKERS } @samples;
is(scalar @badc, 0, "every sample: $WORKERS workers, " . 2 * $WORKERS . " Redis connections")
    or diag join ', ', map { "t=$_->{t}: $_->{workers} workers, $_->{redis} connections" } @badc;
my $cached_fail = $res->{classes}{cached}{n} - ($res->{classes}{cached}{answers}{'200 ok'} // 0);
is($cached_fail, 0, "no request for a cached key failed ($res->{classes}{cached}{n})");
my $valid401 = 0;
for my $c (qw(cached miss quota rate)) {
    $valid401 += ApiKeyTest::Load::count($res, $c, qr/^401/);
}
is($valid401, 0, 'no valid key answered 401');
is(ApiKeyTest::Load::count($res, 'mut', qr/^(?!200|401 revoked)/), 0,
   'revoked and updated keys: 200 or 401 revoked only');
my @probs = $n->problems;
is(scalar @probs, 0, 'no [alert], [crit], [emerg] or signal exit in the error log')
    or diag join "\n", @probs[0 .. ($#probs > 19 ? 19 : $#probs)];
my $warns = () = $n->error_log =~ /\[(?:error|warn)\]/g;
# what they said: each message once, with its count (time, pid#tid and
# connection number left out; the test checks that no key is in the log)
my %said;
for my $l (grep { /\[(?:error|warn)\]/ } split /\n/, $n->error_log) {
    $l =~ s/^\S+ \S+ //;
    $l =~ s/\d+#\d+: (?:\*\d+ )?//;
    $said{$l}++;
}
my $said = join '', map { "\n  - $said{$_}x: `$_`" }
           (sort { $said{$b} <=> $said{$a} || $a cmp $b } keys %said)[0 .. (keys %said > 5 ? 4 : keys(%said) - 1)];
diag "warnings/errors: $said" if $said;

# --- CSV, plot, RESULTS.md -----------------------------------------------------
my @cols = qw(t workers rss_max rss_sum vmrss_sum master fds redis reloads changes);
my %head = (t => 't_s', rss_max => 'worker_rssanon_max_kib', rss_sum => 'workers_rssanon_sum_kib',
            vmrss_sum => 'workers_vmrss_sum_kib', master => 'master_rssanon_kib',
            fds => 'workers_fds', redis => 'redis_connections');
spew("$OUT/soak.csv", join(',', map { $head{$_} // $_ } @cols) . "\n"
    . join('', map { my $s = $_; join(',', map { $s->{$_} } @cols) . "\n" } @samples));
my $gp = <<"EOT";
set terminal png size 1000,600
set output '$OUT/soak.png'
set datafile separator ','
set key outside bottom center horizontal
set title 'make soak: ${MIN} min, $RATE requests/s (cap), reload every 60 s' noenhanced
set xlabel 'seconds'
set ylabel 'KiB (private memory)'
set y2label 'count'
set y2tics
set ytics nomirror
set yrange [0:*]
set y2range [0:*]
plot '$OUT/soak.csv' every ::1 using 1:3 with linespoints title 'largest worker RssAnon', \\
     '' every ::1 using 1:6 with linespoints title 'master RssAnon', \\
     '' every ::1 using 1:7 axes x1y2 with linespoints title 'worker fds', \\
     '' every ::1 using 1:8 axes x1y2 with linespoints title 'Redis connections'
EOT
spew("$OUT/soak.gp", $gp);
system('gnuplot', "$OUT/soak.gp") == 0 or diag 'gnuplot failed';
unlink "$OUT/soak.gp";

my $tb = Test::More->builder;
chomp(my $commit = `git -C $TOP rev-parse --short HEAD 2>/dev/null` // '');
my $passed = !grep { !$_ } $tb->summary;
my $secs = $res->{t1} - $res->{t0};
my $tot = $res->{requests};
my $answers = join '; ', map { "$_: " . ApiKeyTest::Load::answers_text($res, $_) }
    qw(cached miss unknown rate quota mut);
my $md = <<"EOT";
## Soak (`make soak`)

- ${MIN} minutes, $CONNS keep-alive connections capped at $RATE requests/s
  (ApiKeyTest::Load), nginx with 2 workers, redis-server on loopback; date:
  @{[ strftime('%Y-%m-%d %H:%M UTC', gmtime) ]}, module commit $commit;
  load average at the end: @{[ (split ' ', ApiKeyTest::slurp('/proc/loadavg'))[0 .. 2] ]}
- mix (weights): cached keys 3, cache misses 1 (each key once), unknown keys 1,
  rate-limited keys (20/s, burst 5) 1, quota keys (leases) 1, keys revoked and
  re-activated by HSET + PUBLISH (one change every 0.5 s: $changes changes) 1;
  `nginx -s reload` every 60 s ($reloads reloads)
- $tot requests in @{[ sprintf '%.0f', $secs ]} s (@{[ sprintf '%.0f', $tot / ($secs || 1) ]}/s);
  answers: $answers; keep-alive retries (connections closed by a reload): $res->{ka_retries};
  warnings/errors in the error log: $warns$said
- @{[ scalar @samples ]} samples every ${SAMPLE} s: [soak.csv](soak.csv), plot [soak.png](soak.png)

| series | baseline (median, 30-150 s) | bound | peak | median of the last 20% |
|---|---:|---:|---:|---:|
| largest worker RssAnon (KiB) | $b{rss_max} | @{[ int $bound{rss_max} ]} (+max(2 MiB, 10%)) | $peak{rss_max} | $end{rss_max} |
| master RssAnon (KiB) | $b{master} | @{[ int $bound{master} ]} (+1 MiB) | $peak{master} | $end{master} |
| workers' fds | $b{fds} | $bound{fds} (+1 per worker) | $peak{fds} | $end{fds} |
| Redis connections | 4 | 4 at every sample | @{[ (sort { $b <=> $a } map { $_->{redis} } @samples)[0] ]} | @{[ median(map { $_->{redis} } @late) ]} |

Result: @{[ $passed ? 'pass' : 'FAIL' ]}. Private memory (RssAnon) leaves out the zone's shared
pages, which fill up to the zone's size by design; workers are replaced at every reload, so
a leak would show as a rising saw-tooth or as a rising master.
EOT
my $tmp = ApiKeyTest::tmpdir() . '/soak.md';
spew($tmp, $md);
replace_section($RESULTS, 'soak', $md);
print $md;
done_testing;

# the "<!-- bench:NAME -->" section of FILE becomes TEXT (appended when absent)
sub replace_section {
    my ($file, $name, $new) = @_;
    my $text = -f $file ? slurp($file) : '';
    $new =~ s/\n*\z/\n/;
    my $block = "<!-- bench:$name -->\n$new<!-- /bench:$name -->\n";
    if ($text !~ s/<!-- bench:\Q$name\E -->\n.*?<!-- \/bench:\Q$name\E -->\n/$block/s) {
        $text =~ s/\n*\z/\n\n/ if length $text;
        $text .= $block;
    }
    spew($file, $text);
}
