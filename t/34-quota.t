# SPDX-License-Identifier: BSD-2-Clause
# Per-key quotas, counted in Redis ({prefix}usage:{hash}:{period}:{start})
# through leases taken by an atomic Lua script:
#  - quota=5/hour: exactly 5 pass, then 429 quota_exceeded with Retry-After
#    until the end of the UTC hour; the counter is 5 with a TTL;
#    $api_key_quota_remaining counts down; scope_denied and rate_limited
#    requests consume no quota;
#  - two nginx instances (2 workers each) sharing one Redis, 40 keep-alive
#    connections, 900 requests: exactly L of them admitted (no overshoot
#    while Redis answers);
#  - Redis paused (SIGSTOP): 200 up to what was leased plus quota_offline,
#    then 429 (never 5xx/401); after SIGCONT the offline counts are added to
#    the counter (reconciliation) with the first lease after the backoff,
#    exactly once, and $api_key_quota_remaining is right;
#  - Redis stopped and started again (same data): the same, the debt goes
#    with the first lease after the reconnection;
#  - Redis paused, then lost for good while the lease carrying the offline
#    debt was in flight: the debt must still reach the counter.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

# no part of this file may straddle the end of a UTC hour or day
avoid_window_edge('hour', 45);
avoid_window_edge('day', 45);

my $r = ApiKeyTest::Redis->start;

sub conf {
    my (%o) = @_;
    my $lease = $o{lease};
    my $offline = $o{offline};
    my $timeout = $o{timeout};
    return <<"EOT";
    api_key_zone  keys:1m ttl=60s stale=10m quota_lease=$lease quota_offline=$offline;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=$timeout connect_timeout=300ms;
    keepalive_requests 100000;

    server {
        listen 127.0.0.1:%%PORT%% reuseport backlog=1024;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status \$api_key_status always;
        add_header X-Quota-Remaining \$api_key_quota_remaining always;
        add_header X-Rate-Remaining \$api_key_rate_remaining always;
        add_header X-Pid \$pid always;

        location / {
            try_files /ok.txt =404;
        }
        location /admin/ {
            api_key_scope admin;
            try_files /ok.txt =404;
        }
    }
EOT
}

sub start_nginx {
    my (%o) = @_;
    my $n = ApiKeyTest::Nginx->start(http => conf(%o), workers => $o{workers},
        redis => $r, redis_clients => $o{clients}, vars => { REDIS => $r->port });
    static_site($n);
    return $n;
}

sub statuses { join ' ', map { $_->status } @_ }
sub counts_str { my $c = status_counts(@_); join ', ', map { "$_ x$c->{$_}" } sort keys %$c }

sub counter {
    my ($key) = @_;
    my $v = $r->cmd('GET', $key);
    return $v // 0;
}

# the counter once it has stopped changing (late lease answers)
sub settled_counter {
    my ($key) = @_;
    my $last = -1;
    my $v;
    wait_until(sub {
        $v = counter($key);
        my $same = $v == $last;
        $last = $v;
        $same;
    }, timeout => 5, interval => 0.3);
    return $v;
}

my $n1 = start_nginx(workers => 1, lease => 10, offline => 3, timeout => '100ms',
                     clients => 2);
my $port = $n1->port;

# --- quota=5/hour: exactly 5 ---------------------------------------------------
{
    my $k = random_key('q5h');
    my $h = add_key($r, $k, quota => '5/hour', scopes => 'read');
    my $c = ApiKeyTest::HTTPConn->new($port);
    my (@res, @denied);
    for my $i (1 .. 8) {
        push @denied, $c->get('/admin/x', headers => xkey($k));
        push @res, $c->get('/', headers => xkey($k));
    }
    my $now = time;
    my ($start, $end) = window_bounds('hour', $now);
    note '5/hour with scope_denied requests in between: ' . statuses(@res);
    is(statuses(@res), join(' ', (200) x 5, (429) x 3),
       '5/hour: exactly 5 pass, then 429 (8 scope_denied requests in between consumed nothing)');
    is(scalar(grep { $_->status == 403 && $_->header('X-Status') eq 'scope_denied' } @denied),
       8, 'the requests to /admin/ are 403 scope_denied, also once the quota is used up');
    is_deeply([ map { $_->header('X-Quota-Remaining') } @res[0 .. 4] ], [ 4, 3, 2, 1, 0 ],
              '$api_key_quota_remaining counts down 4 3 2 1 0');
    my $x = $res[5];
    is($x->header('X-Status'), 'quota_exceeded', '429: status quota_exceeded');
    my $ra = $x->header('Retry-After') // '';
    like($ra, qr/^\d+$/, '429: Retry-After is an integer');
    my $want = $end - int($now);
    ok($ra =~ /^\d+$/ && abs($ra - $want) <= 3,
       "429: Retry-After ($ra) is the time until the end of the UTC hour ($want)");
    is($x->header('X-Quota-Remaining'), '0', '429: $api_key_quota_remaining is 0');
    is($res[7]->header('X-Status'), 'quota_exceeded', 'still quota_exceeded afterwards');

    my $ukey = usage_key($h, 'hour', $start);
    is($r->cmd('EXISTS', $ukey), 1, "the usage counter $ukey exists");
    is(counter($ukey), 5, 'the usage counter is 5');
    my $ttl = $r->cmd('TTL', $ukey);
    my $max = $end + 3600 - int(time) + 1;
    ok($ttl > 0 && $ttl <= $max, "the usage counter has a TTL ($ttl s; > 0, <= $max)");
    $c->close;
}

# --- rate and quota together: a rate_limited request consumes no quota -------------
{
    my $k = random_key('qrate');
    my $h = add_key($r, $k, quota => '5/hour', rate => '10/s', burst => 1);
    my $c = ApiKeyTest::HTTPConn->new($port);
    my @p1 = map { $c->get('/', headers => xkey($k)) } 1 .. 6;
    sleep 0.35;
    my @p2 = map { $c->get('/', headers => xkey($k)) } 1 .. 6;
    sleep 0.35;
    my @p3 = map { $c->get('/', headers => xkey($k)) } 1 .. 6;
    note 'quota 5/hour + rate 10/s burst 1: ' . join(' | ', map { statuses(@$_) } \@p1, \@p2, \@p3);
    is(statuses(@p1), '200 200 429 429 429 429', 'rate 10/s burst 1: 2 of 6 pass');
    is(scalar(grep { ($_->header('X-Status') // '') eq 'rate_limited' } @p1), 4,
       '... 4 are rate_limited');
    is(statuses(@p2), '200 200 429 429 429 429', '350 ms later: 2 more pass');
    is($p2[1]->header('X-Quota-Remaining'), '1',
       '... quota remaining 1: the 8 rate_limited requests consumed no quota');
    is(statuses(@p3), '200 429 429 429 429 429', '350 ms later: the 5th passes');
    is_deeply([ map { $_->header('X-Status') } @p3[1 .. 5] ], [ ('quota_exceeded') x 5 ],
              '... then quota_exceeded (the rate would allow them)');
    my ($start) = window_bounds('hour');
    is(settled_counter(usage_key($h, 'hour', $start)), 5, 'the usage counter is 5');
    $c->close;
}

# --- two nginx sharing one Redis: exactly L admitted ---------------------------
{
    my $L = 300;
    my $na = start_nginx(workers => 2, lease => 20, offline => 20, timeout => '2s',
                         clients => 2 + 4);
    my $nb = start_nginx(workers => 2, lease => 20, offline => 20, timeout => '2s',
                         clients => 2 + 8);
    my $k = random_key('qshared');
    my $h = add_key($r, $k, quota => "$L/day");
    my $t0 = time;
    my @res = http_load(
        targets => [ { port => $na->port, path => '/', headers => xkey($k) },
                     { port => $nb->port, path => '/', headers => xkey($k) } ],
        conns => 40, total => 900, timeout => 30);
    my $el = time - $t0;
    my $ok = grep { $_->status == 200 } @res;
    my @per = map { my $t = $_; scalar grep { $_->{target} == $t && $_->status == 200 } @res } 0, 1;
    my %pids = map { ($_->header('X-Pid') // '?') => 1 } grep { $_->status } @res;
    note sprintf '2 nginx x 2 workers, quota %d/day, quota_lease=20, 40 connections, '
        . '900 requests in %.2fs over %d workers: admitted %d (node A %d, node B %d); %s',
        $L, $el, scalar(keys %pids), $ok, @per, counts_str(@res);
    is(scalar(@res), 900, '900 answers');
    is(scalar(grep { $_->status == 200 || ($_->status == 429
                     && ($_->header('X-Status') // '') eq 'quota_exceeded') } @res),
       900, 'every answer is 200 or 429 quota_exceeded');
    cmp_ok($ok, '<=', $L, "admitted ($ok) <= quota ($L): no overshoot while Redis answers");
    cmp_ok($ok, '>=', $L, "admitted ($ok) >= quota ($L): nothing leased is left unused");
    ok($per[0] > 0 && $per[1] > 0, 'both nodes admitted requests');
    cmp_ok(scalar(keys %pids), '>=', 3, 'several workers of both nodes answered');
    my ($start) = window_bounds('day');
    my $v = settled_counter(usage_key($h, 'day', $start));
    is($v, $L, "the usage counter is $L");
    for my $x ($na, $nb) {
        unlike($x->error_log, qr/exited on signal/, 'no worker crashed');
        is_deeply([ $x->problems ], [], 'no alert, crit or emerg');
        $x->stop;
    }
}

# offline scenario helpers ---------------------------------------------------------

# $max requests, one at a time, each on a new connection
# a key with a daily quota of $Q, cached by a first request that took the
# first lease of quota_lease=10 counts; returns the key and its counter
sub cached_quota_key {
    my ($tag, $Q, $what, $counter_test) = @_;
    my $k = random_key($tag);
    my $h = add_key($r, $k, quota => "$Q/day");
    my ($start) = window_bounds('day');
    my $ukey = usage_key($h, 'day', $start);
    my $res = http_get($port, '/', headers => xkey($k));
    is($res->status, 200, "$what: key cached, first lease taken");
    is(settled_counter($ukey), 10, $counter_test);
    return ($k, $ukey);
}

sub offline_requests {
    my ($k, $max) = @_;
    my @res;
    for my $i (1 .. $max) {
        push @res, http_get($port, "/off$i", headers => xkey($k), timeout => 5);
    }
    return @res;
}

sub check_offline {
    my ($what, $leftover, @res) = @_;
    my @bad = grep { !($_->status == 200 || ($_->status == 429
                       && ($_->header('X-Status') // '') eq 'quota_exceeded')) } @res;
    is(scalar @bad, 0, "$what: every answer is 200 or 429 quota_exceeded (no 5xx, no 401)")
        or diag join "\n", map { $_->as_string } @bad[0 .. ($#bad > 4 ? 4 : $#bad)];
    my $first429 = (grep { $res[$_]->status == 429 } 0 .. $#res)[0];
    my $ok = grep { $_->status == 200 } @res;
    note "$what: " . statuses(@res);
    is($ok, $leftover + 3,
       "$what: exactly $leftover (left of the lease) + 3 (quota_offline) admitted");
    ok(defined $first429 && !grep({ $_->status == 200 } @res[$first429 .. $#res]),
       "$what: then only 429s");
    return $ok;
}

sub evals_with_debt {
    my ($ukey, @cmds) = @_;
    # the lease script runs by its SHA1 (EVALSHA); same arguments as EVAL
    my @e = grep { ($_->[0] eq 'eval' || $_->[0] eq 'evalsha')
                   && ($_->[3] // '') eq $ukey } @cmds;
    return (scalar(@e), [ map { $_->[7] } @e ]);
}

# lease scripts that ran: every EVALSHA seen, less those answered NOSCRIPT
# (after a Redis restart), each of which is followed by a SCRIPT LOAD and
# sent again; the worker loaded the script before these scenarios
sub lease_runs {
    my ($ukey, @cmds) = @_;
    my ($n, $debts) = evals_with_debt($ukey, @cmds);
    my $loads = grep { $_->[0] eq 'script' && lc($_->[1] // '') eq 'load' } @cmds;
    return ($n - $loads, $debts, $loads);
}

# Redis back: requests, one at a time, until the offline counts (debt 3)
# went to Redis with a lease: leases back off after failures, so the debt
# goes with the first lease after the backoff, not with one queued in a
# stopped Redis.  Returns the number admitted.
sub until_debt_sent {
    my ($k, $ukey, $mon, $what) = @_;
    my ($admitted, $sent, $last) = (0, 0);
    my $deadline = time + 10;
    while (time < $deadline && !$sent) {
        $last = http_get($port, '/', headers => xkey($k));
        $admitted++ if $last->status == 200;
        my (undef, $debts) = evals_with_debt($ukey, $mon->commands(0.05));
        $sent = grep { $_ eq '3' } @$debts;
        sleep 0.05 unless $sent;
    }
    ok($sent, "$what: a lease carries the 3 offline counts (debt) once Redis answers")
        or diag $last ? $last->as_string : 'no request';
    return $admitted;
}

sub check_reconciled {
    my ($what, $k, $ukey, $mon, $Q, $admitted) = @_;
    my $v = settled_counter($ukey);
    my ($runs, $debts, $loads) = lease_runs($ukey, $mon->commands(0.5));
    note "$what: $runs lease scripts ran ($loads reloaded after NOSCRIPT), "
        . "debts [@$debts], counter $v, admitted $admitted";
    is($v, 10 + 3 + 10 * $runs,
       "$what: counter = first lease 10 + debt 3 (once) + 10 per later lease ($runs)");
    my $res = http_get($port, '/', headers => xkey($k));
    $admitted++;
    is($res->status, 200, "$what: the key is admitted");
    is($res->header('X-Quota-Remaining'), $Q - $admitted,
       "$what: quota remaining = $Q - $admitted admitted in all "
       . '(the offline counts are in the counter)');
}

# --- Redis paused (SIGSTOP): offline share, then reconciliation after SIGCONT -----
{
    my $Q = 1000;
    my ($k, $ukey) = cached_quota_key('qpause', $Q, 'paused', 'paused: the first lease is quota_lease=10 counts');

    my $mon = $r->monitor;
    $mon->clear;
    my @res;
    {
        my $g = $r->pause_guard;
        @res = offline_requests($k, 16);
    }
    my $ok = check_offline('Redis paused', 9, @res);
    my $admitted = 1 + $ok;
    $admitted += until_debt_sent($k, $ukey, $mon, 'after SIGCONT');
    check_reconciled('after SIGCONT', $k, $ukey, $mon, $Q, $admitted);
    $mon->close;
}

# --- Redis stopped and started again with its data --------------------------------
{
    my $Q = 1000;
    my ($k, $ukey) = cached_quota_key('qstop', $Q, 'stopped', 'stopped: counter 10');
    $r->cmd('SAVE');    # start_again loads this dump: the same data
    $r->stop;

    my @res = offline_requests($k, 16);
    my $ok = check_offline('Redis stopped', 9, @res);
    my $admitted = 1 + $ok;
    ok(!grep({ $_->elapsed > 1 } @res), 'Redis stopped: answers come at once');

    $r->start_again;
    is(counter($ukey), 10, 'Redis started again with its data (counter 10)');
    my $mon = $r->monitor;
    $admitted += until_debt_sent($k, $ukey, $mon, 'Redis back');
    check_reconciled('Redis back', $k, $ukey, $mon, $Q, $admitted);
    $mon->close;
}

# --- Redis paused, then lost while the lease with the debt was in flight ------------
{
    my $Q = 1000;
    my ($k, $ukey) = cached_quota_key('qlost', $Q, 'lost', 'lost: counter 10');
    $r->cmd('SAVE');

    $r->pause;
    # a lease is in flight (sent, never answered) when the offline counts
    # are granted: its debt is the next lease's
    my @res = offline_requests($k, 14);
    # Redis dies while stopped: the lease scripts waiting in its socket
    # (one of them carrying the offline debt) never run
    kill 'KILL', $r->pid;
    $r->resume;
    $r->stop;
    my $ok = check_offline('Redis paused then killed', 9, @res);
    my $admitted = 1 + $ok;

    $r->start_again;
    is(counter($ukey), 10, 'Redis started again from the dump (counter 10)');
    my $mon = $r->monitor;
    $admitted += until_debt_sent($k, $ukey, $mon, 'lost, Redis back');
    check_reconciled('lost, Redis back', $k, $ukey, $mon, $Q, $admitted);
    $mon->close;
}

unlike($n1->error_log, qr/exited on signal/, 'no worker crashed');
is_deeply([ $n1->problems ], [], 'no alert, crit or emerg in the error log');
$n1->stop;
ok(!$n1->stop_forced, 'nginx stops gracefully');

done_testing;
