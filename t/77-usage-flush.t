# SPDX-License-Identifier: BSD-2-Clause
# api_key_zone usage_flush=: per key, the last use and the requests per UTC
# day by outcome class reach Redis in batches: one EVALSHA per key and
# flush (a node writes a key at most once per usage_flush, whatever its
# workers), to usage:{record}:requests:DAY and usage:{record}:last_used,
# which expire on their own; never a write to the record's hash; unknown
# keys are not counted; usage_flush=off writes nothing; counts made while
# Redis is away are written once it is back.  Each worker counts in its own
# table, folded into the zone's a few times per usage_flush and at its
# exit: a reload right after requests loses none of them.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events qw(metrics wait_subscribed);

require_module();

my $r = ApiKeyTest::Redis->start;
my $FLUSH = 0.5;

my $http = <<'EOT';
    api_key_zone  keys:1m usage_flush=500ms;
    api_key_zone  quiet:1m usage_flush=off;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;
            empty_gif;
        }
        location /quiet/ {
            api_key quiet;
            empty_gif;
        }
        location /scoped/ {
            api_key keys;
            api_key_scope admin;
            empty_gif;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => 2, redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;
wait_subscribed($r, 2, timeout => 10);

sub get { http_get($port, $_[0], headers => { 'X-API-Key' => $_[1] })->status }
sub req_name  { "apikey:usage:{apikey:$_[0]}:requests:$_[1]" }
sub last_name { "apikey:usage:{apikey:$_[0]}:last_used" }
sub day { my $t = shift // time; int($t) - int($t) % 86400 }
sub counts {
    my ($h) = @_;
    my %c = @{ $r->cmd('HGETALL', req_name($h, day())) // [] };
    return \%c;
}

my %k = map { $_ => random_key($_) } qw(a dis ip rate scope unknown quiet);
my %h;
$h{a}     = add_key($r, $k{a}, id => 'use-a', owner => 'acme');
$h{dis}   = add_key($r, $k{dis}, id => 'use-dis', status => 'disabled');
$h{ip}    = add_key($r, $k{ip}, id => 'use-ip', ips => '10.0.0.0/8');
$h{rate}  = add_key($r, $k{rate}, id => 'use-rate', rate => '1/m', burst => 0);
$h{scope} = add_key($r, $k{scope}, id => 'use-scope', scopes => 'read');
$h{quiet} = add_key($r, $k{quiet}, id => 'use-quiet');
$h{unknown} = key_hash($k{unknown});
my %before = map { $_ => $r->cmd('HGETALL', "apikey:$h{$_}") } keys %h;

my $mon = $r->monitor;
my $t0 = int(time);

# --- counts by class --------------------------------------------------------
is(get('/', $k{a}), 200, 'key a: 200') for 1 .. 3;
is(get('/', $k{dis}), 403, 'disabled: 403');
is(get('/', $k{dis}), 403, 'disabled: 403 again');
is(get('/', $k{ip}), 403, 'ip_denied: 403');
is(get('/', $k{rate}), 200, 'rate: the first passes');
is(get('/', $k{rate}), 429, 'rate: the second is limited');
is(get('/scoped/', $k{scope}), 403, 'scope_denied: 403');
is(get('/', $k{unknown}), 401, 'unknown: 401');
is(get('/quiet/', $k{quiet}), 200, 'a key of the usage_flush=off zone: 200');

ok(wait_until(sub { (counts($h{a})->{allowed} // 0) == 3
                    && (counts($h{scope})->{denied_policy} // 0) == 1
                    && (counts($h{rate})->{denied_limit} // 0) == 1 },
              timeout => 10), 'the counts reach Redis')
    or diag explain { map { $_ => counts($h{$_}) } keys %h };

is_deeply(counts($h{a}), { allowed => 3 }, 'key a: allowed 3');
is_deeply(counts($h{dis}), { denied_status => 2 }, 'disabled: denied_status 2');
is_deeply(counts($h{ip}), { denied_policy => 1 }, 'ip_denied: denied_policy 1');
is_deeply(counts($h{rate}), { allowed => 1, denied_limit => 1 },
          'rate: allowed 1, denied_limit 1');
is_deeply(counts($h{scope}), { denied_policy => 1 }, 'scope_denied: denied_policy 1');

my $last = $r->cmd('GET', last_name($h{a}));
ok(defined $last && $last >= $t0 && $last <= time + 1,
   "last_used is the time of the last request ($last)");

my $ttl = $r->cmd('TTL', req_name($h{a}, day()));
ok($ttl > 91 * 86400 && $ttl <= 93 * 86400,
   "requests:DAY expires on its own, after 92 days ($ttl s)");
$ttl = $r->cmd('TTL', last_name($h{a}));
ok($ttl > 399 * 86400 && $ttl <= 401 * 86400,
   "last_used expires on its own, 400 days after the last use ($ttl s)");

is($r->cmd('EXISTS', req_name($h{unknown}, day()), last_name($h{unknown})), 0,
   'an unknown key is not counted');

for my $w (keys %h) {
    is_deeply($r->cmd('HGETALL', "apikey:$h{$w}"), $before{$w},
              "the record of $w is unchanged");
}

# --- one key, every class in one flush: a rotated key's old secret (its
# grace over: revoked, denied_status) counts under the identity of the new
# one, which is admitted, refused by scope and by its rate meanwhile.  (The
# flush's command had room for 3 of the 4 classes: the 4th overflowed its
# argument array, caught by ASan.)
{
    my $new = random_key('four-new');
    my $old = random_key('four-old');
    my $hn = add_key($r, $new, id => 'use-four', rate => '1/m', burst => 0,
                     scopes => 'read');
    add_key($r, $old, id => 'use-four', identity => $hn, alias_until => 1);
    my @st = (get('/', $new), get('/scoped/', $new), get('/', $new), get('/', $old));
    is("@st", '200 403 429 401', 'allowed, denied_policy, denied_limit, denied_status');
    ok(wait_until(sub { keys(%{ counts($hn) }) == 4 }, timeout => 10),
       'all four classes reach Redis')
        or diag explain counts($hn);
    is_deeply(counts($hn), { allowed => 1, denied_policy => 1, denied_limit => 1,
                             denied_status => 1 }, '... one each, under the identity');
}

# --- at most one write per key per flush, never the record ------------------
{
    my $start = time;
    # about three flush intervals of traffic over both workers
    my $sent = 0;
    while (time - $start < 3 * $FLUSH) {
        $sent++ if get('/', $k{a}) == 200;
        sleep 0.02;
    }
    ok(wait_until(sub { ($r->cmd('GET', last_name($h{a})) // 0) >= int($start) },
                  timeout => 5), 'last_used moved');
    sleep 2 * $FLUSH;
    my @lines = $mon->lines(0.3);
    my (@writes, @record_writes);
    for my $l (@lines) {
        my ($ts, $src, $rest) = $l =~ /^(\d+\.\d+) \[(\S+ [^\]]*)\] (.*)$/ or next;
        if ($rest =~ /^"EVALSHA" "[0-9a-f]{40}" "2" "\Q@{[ req_name($h{a}, day()) ]}\E"/) {
            push @writes, $ts;
        }
        for my $w (keys %h) {
            my $rec = "apikey:$h{$w}";
            push @record_writes, $l
                if $rest =~ /^"(\w+)" "\Q$rec\E"/ && lc $1 ne 'hgetall';
        }
    }
    ok(@writes >= 2, scalar(@writes) . ' writes for key a while it was used');
    my $close = grep { $writes[$_] - $writes[$_ - 1] < $FLUSH / 2 } 1 .. $#writes;
    is($close, 0, 'no two writes of key a closer than the flush interval')
        or diag "write times: @writes";
    ok(@writes <= 3 * $FLUSH / $FLUSH + 3,
       'far fewer writes than requests (' . scalar(@writes) . " for ~$sent)");
    is(scalar(@record_writes), 0, 'no command but HGETALL on a record')
        or diag "@record_writes";
    ok(wait_until(sub { (counts($h{a})->{allowed} // 0) == 3 + $sent },
                  timeout => 5), "every request counted (3 + $sent)")
        or diag explain counts($h{a});
}

# --- usage_flush=off ---------------------------------------------------------
is($r->cmd('EXISTS', req_name($h{quiet}, day()), last_name($h{quiet})), 0,
   'usage_flush=off: nothing written for its keys');
my $m = metrics($port);
is($m->{'api_key_usage_writes_total{zone="quiet"}'}, 0, 'usage_flush=off: no writes');
ok($m->{'api_key_usage_writes_total{zone="keys"}'} >= 6, 'metrics: writes counted');
ok($m->{'api_key_usage_flushes_total{zone="keys"}'} >= 2, 'metrics: flushes counted');
is($m->{'api_key_usage_write_errors_total{zone="keys"}'}, 0, 'metrics: no write errors');

# --- Redis away: the counts wait in the zone ----------------------------------
{
    $r->stop;
    my $ok = 0;
    for (1 .. 5) { $ok++ if get('/', $k{a}) == 200 }
    is($ok, 5, 'Redis stopped: the cached key still passes');
    sleep 2 * $FLUSH;
    $r->start_again;
    ok(wait_until(sub { (counts($h{a})->{allowed} // 0) == 5 }, timeout => 15),
       'Redis back (empty): the 5 requests made meanwhile are written')
        or diag explain counts($h{a});
}

# --- a reload right after requests: the old workers' counts are not lost ------
# usage_flush=4s: the workers fold their counts every second; the reload
# comes before that (the old workers fold at their exit), a new worker
# flushes them.
{
    $n->stop;
    my $n2 = ApiKeyTest::Nginx->start(http => <<'EOT', workers => 2, redis => $r,
    api_key_zone  slow:1m usage_flush=4s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key slow; empty_gif; }
    }
EOT
                                      vars => { REDIS => $r->port });
    my $key = random_key('reload');
    my $hr = add_key($r, $key, id => 'use-reload');
    my $N = 30;
    my $ok = 0;
    for (1 .. $N) {
        $ok++ if http_get($n2->port, '/', headers => { 'X-API-Key' => $key })->status == 200;
    }
    is($ok, $N, "$N requests over two workers");
    ok($n2->reload, 'reload at once') or diag $n2->reload_error;
    is_deeply($n2->{old_workers_left}, [], 'the old workers exited');
    ok(wait_until(sub { (counts($hr)->{allowed} // 0) >= $N }, timeout => 20),
       'the counts reach Redis after the reload')
        or diag explain counts($hr);
    sleep 1;
    is_deeply(counts($hr), { allowed => $N }, "exactly $N, none lost, none twice");
    $n2->stop;
}

# --- a reload while a flush waits on Redis: the old worker stays for the answers
# Redis is stopped after the key's first count is written; the next requests'
# counts go out with the next flush and wait; the reload comes meanwhile and
# Redis resumes 1 s later.  The old worker must wait for its writes'
# answers (it used to close the connection on them: "a usage write got no
# answer"), and the counts must be exact.
{
    my $n3 = ApiKeyTest::Nginx->start(http => <<'EOT', workers => 1, redis => $r,
    api_key_zone  inflight:1m usage_flush=500ms;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=3s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key inflight; empty_gif; }
    }
EOT
                                      vars => { REDIS => $r->port });
    my $key = random_key('inflight');
    my $hr = add_key($r, $key, id => 'use-inflight');
    is(http_get($n3->port, '/', headers => { 'X-API-Key' => $key })->status, 200,
       'the key, cached');
    ok(wait_until(sub { (counts($hr)->{allowed} // 0) == 1 }, timeout => 10),
       'its first count is written');
    my $mark = $n3->log_mark;
    $r->pause;
    my $N = 10;
    my $ok = 0;
    for (1 .. $N) {
        $ok++ if http_get($n3->port, '/', headers => { 'X-API-Key' => $key })->status == 200;
    }
    is($ok, $N, "$N requests while Redis is stopped (a cached key)");
    sleep 1.2;      # a flush (every 0.5 s) has sent its write, unanswered
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        sleep 1;
        kill 'CONT', $r->{pid};
        POSIX::_exit(0);
    }
    ok($n3->reload, 'reload while the write waits') or diag $n3->reload_error;
    waitpid($pid, 0);
    $r->resume;
    is_deeply($n3->{old_workers_left}, [], 'the old worker exited, once answered');
    unlike($n3->error_log_since($mark), qr/usage write got no answer/,
           'no usage write left unanswered');
    ok(wait_until(sub { (counts($hr)->{allowed} // 0) >= $N + 1 }, timeout => 10),
       'the counts reach Redis') or diag explain counts($hr);
    sleep 1;
    is_deeply(counts($hr), { allowed => $N + 1 }, 'exactly ' . ($N + 1) . ', none lost, none twice');
    $n3->stop;
}

done_testing;
