# SPDX-License-Identifier: BSD-2-Clause
# Quota leases against a Redis that refuses them:
#  - Redis out of memory (maxmemory 1, noeviction: the lease script's INCRBY
#    fails with OOM): once a key has used its lease and its quota_offline
#    share, requests get 429 quota_exceeded (as while Redis is down) without
#    a lease script per request: EVAL/EVALSHA calls (INFO commandstats) and
#    error log lines stay bounded over a few seconds of traffic from 4
#    connections; the line names the key id (never the key) and Redis's
#    error; when Redis accepts writes again leases work again within the
#    longest backoff (5 s) and one line says so, with the count of failures;
#  - a key's own error (its usage counter is a hash: WRONGTYPE; or a string
#    that is not a number, or one that overflows: an "ERR" from the script):
#    that key backs off, other keys' leases go on (a server's "ERR": t/38);
#  - the script is loaded once (SCRIPT LOAD) and called by its SHA1
#    (EVALSHA), never sent whole (EVAL); after SCRIPT FLUSH the NOSCRIPT
#    answer makes the worker load it again and retry: no request fails and
#    nothing is logged.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

avoid_window_edge('day', 30);

my $WORKERS = 2;
my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s quota_lease=10 quota_offline=3;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;
    keepalive_requests 100000;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Quota-Remaining $api_key_quota_remaining always;
        add_header X-Pid $pid always;
        location / {
            try_files /ok.txt =404;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS, redis => $r,
    redis_clients => 2 * $WORKERS, vars => { REDIS => $r->port });
static_site($n);
my $port = $n->port;

# { command => calls + rejected_calls } from INFO commandstats
sub cmdstats {
    my $info = $r->cmd('INFO', 'commandstats');
    my %c;
    while ($info =~ /^cmdstat_([^:]+):calls=(\d+)(?:.*?rejected_calls=(\d+))?/mg) {
        $c{lc $1} = $2 + ($3 // 0);
    }
    return \%c;
}

sub lease_calls { my $c = cmdstats(); ($c->{eval} // 0) + ($c->{evalsha} // 0) }

sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

# --- EVALSHA, and NOSCRIPT after SCRIPT FLUSH ----------------------------------------
{
    my $Q = 1000;
    my $k = random_key('sha');
    my $h = add_key($r, $k, quota => "$Q/day");
    my ($start) = window_bounds('day');
    my $ukey = usage_key($h, 'day', $start);
    reset_stats($r);
    my $c = ApiKeyTest::HTTPConn->new($port);
    my @res = map { $c->get('/', headers => xkey($k)) } 1 .. 25;
    is(scalar(grep { $_->status == 200 } @res), 25, '25 requests with a 1000/day quota pass');
    my $s = cmdstats();
    note explain { map { $_ => $s->{$_} } grep { /eval|script/ } keys %$s };
    is($s->{eval} // 0, 0, 'the lease script is never sent whole (no EVAL)');
    cmp_ok($s->{evalsha} // 0, '>=', 2, 'it is called by its SHA1 (EVALSHA)');
    cmp_ok($s->{'script|load'} // 0, '>=', 1, 'it was loaded (SCRIPT LOAD)');
    cmp_ok($s->{'script|load'} // 0, '<=', $WORKERS, '... once per worker at most');

    $r->cmd('SCRIPT', 'FLUSH');
    my $mark = $n->log_mark;
    reset_stats($r);
    my @res2 = map { $c->get('/', headers => xkey($k)) } 1 .. 25;
    is(scalar(grep { $_->status == 200 } @res2), 25,
       'after SCRIPT FLUSH: 25 more requests pass');
    is_deeply([ map { $_->header('X-Quota-Remaining') } @res2 ],
              [ map { $Q - 25 - $_ } 1 .. 25 ], '... and the quota counts down 974 .. 950');
    my $s2 = cmdstats();
    note explain { map { $_ => $s2->{$_} } grep { /eval|script/ } keys %$s2 };
    cmp_ok($s2->{'script|load'} // 0, '>=', 1, 'NOSCRIPT: the script was loaded again');
    is($s2->{eval} // 0, 0, '... still no EVAL');
    is(scalar(grep { /quota lease/ } split /\n/, $n->error_log_since($mark)), 0,
       '... and nothing was logged');
    sleep 0.3;
    my $used = $r->cmd('GET', $ukey);
    ok($used >= 50 && $used <= 50 + 10 * $WORKERS,
       "the usage counter ($used) covers the 50 admitted, leases apart");
    $c->close;
}

# --- Redis out of memory ---------------------------------------------------------------
{
    my $k = random_key('oom');
    my $h = add_key($r, $k, quota => '1000000/day');
    # cached, with a first lease taken, on every worker's connection
    my @c = map { ApiKeyTest::HTTPConn->new($port) } 1 .. 4;
    is(st($_->get('/', headers => xkey($k))), '200 ok', 'a key with a quota: admitted')
        for @c;

    $r->cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    $r->cmd('CONFIG', 'SET', 'maxmemory', '1');
    my (undef, $err) = $r->try_cmd('SET', 'oom-probe', 1);
    like($err // '', qr/^OOM/, 'Redis refuses writes (OOM)');

    my $mark = $n->log_mark;
    reset_stats($r);
    my (@res, %st);
    my $t0 = time;
    while (time - $t0 < 3 && @res < 4000) {
        for my $c (@c) {
            my $x = $c->get('/', headers => xkey($k));
            push @res, $x;
            $st{ st($x) }++;
        }
        sleep 0.002;
    }
    my $el = time - $t0;
    my $calls = lease_calls();
    # (the failures' lines; the notice "quota leases work again" that ends
    # an earlier case's streak may come meanwhile, in its own time)
    my @lines = grep { /quota lease for key id/ } split /\n/, $n->error_log_since($mark);
    note sprintf '%d requests in %.1fs from 4 connections: %s; %d EVAL/EVALSHA, '
        . '%d log lines', scalar(@res), $el,
        join(', ', map { "$_ x$st{$_}" } sort keys %st), $calls, scalar(@lines);
    note $_ for @lines[0 .. ($#lines > 3 ? 3 : $#lines)];
    cmp_ok(scalar(@res), '>=', 100, 'over 100 requests while Redis is out of memory');
    is(scalar(grep { st($_) ne '200 ok' && st($_) ne '429 quota_exceeded' } @res), 0,
       'every answer is 200 or 429 quota_exceeded');
    ok($st{'429 quota_exceeded'}, 'once the lease and quota_offline are used up: 429 quota_exceeded');
    cmp_ok($calls, '<=', 12 * $WORKERS,
           "lease scripts sent ($calls) bounded by the backoff, not one per request");
    cmp_ok(scalar(@lines), '>=', 1, 'the failure is logged');
    cmp_ok(scalar(@lines), '<=', $WORKERS, '... once per worker and outage');
    like($lines[0] // '', qr/OOM command not allowed/, "... with Redis's error (OOM)");
    my $id = substr($h, 0, 12);
    like($lines[0] // '', qr/key id "\Q$id\E"/, '... naming the key id');
    is_deeply([ key_leaks($n->error_log, $k) ], [], 'the key itself is never logged');

    # Redis accepts writes again: leases work again within the longest backoff
    $r->cmd('CONFIG', 'SET', 'maxmemory', '0');
    $r->cmd('DEL', 'oom-probe');
    my $ok = wait_until(sub {
        my $n200 = 0;
        for my $c (@c) { $n200++ if $c->get('/', headers => xkey($k))->status == 200 }
        $n200 == @c;
    }, timeout => 8, interval => 0.2);
    ok($ok, 'Redis writable again: the key is admitted again (leases work)');
    # Each worker backs off on its own.  A worker whose leases failed may
    # have served the 200s above from counts another worker leased (the
    # entry is shared) without sending a lease itself: it still backs off,
    # up to 5 s, and a new key's first requests there would get only its
    # quota_offline share, as the cases below would see under load.  A new
    # key per connection and round makes that connection's worker ask for
    # a lease (one key on every connection: the first worker's lease would
    # serve the others): wait until every worker that failed says its
    # leases work again.
    my %failed = map { /\] (\d+)#/ ? ($1 => 1) : () } @lines;
    my @after;
    my $all = wait_until(sub {
        for my $c (@c) {
            my $kn = random_key('again');
            add_key($r, $kn, quota => '1000/day');
            $c->get('/', headers => xkey($kn));
        }
        @after = grep { /quota leases work again/ } split /\n/, $n->error_log_since($mark);
        my %w = map { /\] (\d+)#/ ? ($1 => 1) : () } @after;
        !grep { !$w{$_} } keys %failed;
    }, timeout => 8, interval => 0.2);
    ok($all, 'every worker whose leases failed (' . join(', ', sort keys %failed)
       . ') says they work again, within the longest backoff') or diag join "\n", @after;
    is(scalar(@after), scalar(keys %failed), '... once each') or diag join "\n", @after;
    like($after[0] // '', qr/\d+ failed or timed out meanwhile/, '... with the count of failures');
    $_->close for @c;
}

# --- one key's own error (its counter is not a number): that key backs off -----
# WRONGTYPE (a hash), an "ERR" from the script (a string that is not a number:
# Lua's arithmetic on nil; one that overflows), a negative count in the
# script's answer (a number out of range): the key's own, not the server's
for my $case (['WRONGTYPE', sub { $r->cmd('HSET', $_[0], 'x', 1) }, qr/WRONGTYPE/],
              ['not a number', sub { $r->cmd('SET', $_[0], 'abc') }, qr/ERR .*arithmetic/],
              ['overflowing', sub { $r->cmd('SET', $_[0], '9223372036854775807') },
               qr/(?:ERR .*overflow|out of range)/],
              ['negative', sub { $r->cmd('SET', $_[0], '-1000000') },
               qr/out of range/])
{
    my ($what, $break, $errre) = @$case;
    my $kb = random_key('badctr');
    my $hb = add_key($r, $kb, quota => '1000/day');
    my $kc = random_key('fine');
    add_key($r, $kc, quota => '1000/day');
    my ($start) = window_bounds('day');
    $break->(usage_key($hb, 'day', $start));
    my $mark = $n->log_mark;
    my $mon = $r->monitor;
    $mon->clear;
    my $c = ApiKeyTest::HTTPConn->new($port);
    my (@b, @cres);
    for (1 .. 40) {
        push @b, $c->get('/', headers => xkey($kb));
        push @cres, $c->get('/', headers => xkey($kc));
        sleep 0.01;
    }
    my @leases = grep { ($_->[0] eq 'evalsha' || $_->[0] eq 'eval')
                        && ($_->[3] // '') eq usage_key($hb, 'day', $start) }
                 $mon->commands(0.3);
    $mon->close;
    # (the failures' lines; the notice "quota leases work again" that ends
    # an earlier case's streak may come meanwhile, in its own time)
    my @lines = grep { /quota lease for key id/ } split /\n/, $n->error_log_since($mark);
    note sprintf '%s counter: %s; other key: %s; %d leases of the bad key, %d log lines',
        $what, join(' ', map { $_->status } @b[0 .. 9]),
        join(' ', map { $_->status } @cres[0 .. 9]), scalar(@leases), scalar(@lines);
    note $_ for @lines;
    my $ok200 = scalar(grep { $_->status == 200 } @b);
    if ($what eq 'overflowing' || $what eq 'negative') {
        # the counter is past any quota: nothing to grant, or the script fails
        ok($ok200 <= 3, "$what counter: at most its quota_offline share (3) passes");
        is(scalar(grep { st($_) eq '429 quota_exceeded' } @b), 40 - $ok200,
           '... the others get 429 quota_exceeded');
    } else {
        is($ok200, 3, "$what counter: its quota_offline share (3) passes");
        is(scalar(grep { st($_) eq '429 quota_exceeded' } @b), 37, '... then 429 quota_exceeded');
    }
    cmp_ok(scalar(@leases), '<=', 6, '... its leases back off (' . scalar(@leases) . ' in 40 requests)');
    is(scalar(grep { $_->status == 200 } @cres), 40,
       '... another key on the same connection keeps working (its leases are not held back)');
    cmp_ok(scalar(@lines), '<=', 1, '... at most one log line') or diag join "\n", @lines;
    like($lines[0], qr/$errre.*this key's leases back off/, "... naming Redis's error, for this key")
        if @lines;
    $c->close;
}

unlike($n->error_log, qr/exited on signal/, 'no worker crashed');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

done_testing;
