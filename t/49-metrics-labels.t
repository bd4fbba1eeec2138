# SPDX-License-Identifier: BSD-2-Clause
# api_key_metrics labels=plan|owner values=N: requests of keys with a
# record counted by their plan (or owner) and outcome, at most N values,
# the rest under "other"; label values escaped; keys without a record
# (missing, unknown) not in the family; labels=owner; bad parameters and
# two api_key_metrics asking for different labels are nginx -t errors with
# file and line; without labels= no such family.  Each worker counts in
# its own table, folded into the zone's every second (and at its exit):
# the page is at most that late, and exact once folded: N requests over 2
# workers are N, a reload right after them loses none.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events qw(metrics);

require_module();

my $r = ApiKeyTest::Redis->start;

sub start {
    my ($params) = @_;
    return ApiKeyTest::Nginx->start(http => <<"EOT", redis => $r, workers => 2,
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; empty_gif; }
        location = /metrics { api_key_metrics $params; }
    }
EOT
                                    vars => { REDIS => $r->port });
}

sub get { http_get($_[0]->port, '/', headers => $_[1] ? { 'X-API-Key' => $_[1] } : {})->status }

# the page once $cond holds (the workers' counts folded: at most a second)
sub metrics_when {
    my ($port, $cond) = @_;
    my $m;
    wait_until(sub { $m = metrics($port); $cond->($m) }, timeout => 5);
    return $m;
}

my %k = map { $_ => random_key($_) } qw(pro1 pro2 free gold plat rev weird);
add_key($r, $k{pro1}, plan => 'pro', owner => 'acme');
add_key($r, $k{pro2}, plan => 'pro', owner => 'beta');
add_key($r, $k{free}, plan => 'free', owner => 'acme');
add_key($r, $k{gold}, plan => 'gold', owner => 'gamma');
add_key($r, $k{plat}, plan => 'platinum', owner => 'delta');
add_key($r, $k{rev}, plan => 'pro', owner => 'acme', status => 'revoked');
add_key($r, $k{weird}, plan => "we\"ird\\", owner => 'x');

# --- labels=plan values=2 ----------------------------------------------------
{
    my $n = start('labels=plan values=2');
    is(get($n, $k{pro1}), 200, 'pro key');
    is(get($n, $k{free}), 200, 'free key');
    is(get($n, $k{pro2}), 200, 'another pro key');
    is(get($n, $k{gold}), 200, 'gold: a third plan');
    is(get($n, $k{plat}), 200, 'platinum: a fourth plan');
    is(get($n, $k{rev}), 401, 'a revoked pro key');
    is(get($n), 401, 'missing');
    is(get($n, random_key('unknown')), 401, 'unknown');

    # Which 2 plans get a series: the first 2 to reach the zone's table
    # (each worker's in the order it saw them, when it folds: with two
    # workers not always pro and free); every request is counted, under its
    # plan or under other.
    my %sent = (pro => 2, free => 1, gold => 1, platinum => 1);
    my $f = 'api_key_requests_by_plan_total{zone="keys"';
    my $ok_sum = sub {
        my ($m) = @_;
        my $t = 0;
        $t += $m->{qq($f,plan="$_",status="ok"})} // 0 for keys(%sent), 'other';
        return $t;
    };
    my $m = metrics_when($n->port, sub { $ok_sum->($_[0]) >= 5
        && ($_[0]{qq($f,plan="pro",status="revoked"})} // 0)
           + ($_[0]{qq($f,plan="other",status="revoked"})} // 0) >= 1 });
    my @series = grep { /^api_key_requests_by_plan_total\{/ } keys %$m;
    my %plans = map { /plan="([^"]*)"/ ? ($1 => 1) : () } @series;
    my @named = grep { $_ ne 'other' } sort keys %plans;
    is(scalar(@named), 2, 'values=2: two plan values get a series')
        or diag "@series";
    ok($plans{other}, '... plus other');
    ok(!grep({ !exists $sent{$_} } @named), '... of the plans sent');
    my $other = 0;
    for my $p (sort keys %sent) {
        if ($plans{$p}) {
            is($m->{qq($f,plan="$p",status="ok"})}, $sent{$p},
               "plan $p: $sent{$p} ok");
        } else {
            $other += $sent{$p};
        }
    }
    is($m->{qq($f,plan="other",status="ok"})}, $other,
       "the plans past values=2 are counted as other ($other)");
    is($m->{qq($f,plan="@{[ $plans{pro} ? 'pro' : 'other' ]}",status="revoked"})}, 1,
       'the revoked pro key: 1 revoked');
    ok(!grep({ /status="(missing|unknown)"/ } @series),
       'keys without a record are not in the family');
    is($m->{'api_key_requests_total{zone="keys",status="ok"}'}, 5,
       'api_key_requests_total unchanged (no plan label)');
    $n->stop;
}

# --- labels=owner, escaping ------------------------------------------------------
{
    my $n = start('labels=owner');
    is(get($n, $k{pro1}), 200, 'acme');
    is(get($n, $k{free}), 200, 'acme again');
    is(get($n, $k{gold}), 200, 'gamma');
    my $o = 'api_key_requests_by_owner_total{zone="keys",owner=';
    my $m = metrics_when($n->port, sub {
        ($_[0]{qq($o"acme",status="ok"})} // 0) >= 2
        && ($_[0]{qq($o"gamma",status="ok"})} // 0) >= 1 });
    is($m->{'api_key_requests_by_owner_total{zone="keys",owner="acme",status="ok"}'}, 2,
       'labels=owner: acme 2');
    is($m->{'api_key_requests_by_owner_total{zone="keys",owner="gamma",status="ok"}'}, 1,
       'labels=owner: gamma 1');
    ok(!grep({ /by_plan/ } keys %$m), 'labels=owner: no plan family');
    $n->stop;

    $n = start('labels=plan');
    is(get($n, $k{weird}), 200, 'a plan with a quote and a backslash');
    my $text = '';
    wait_until(sub { $text = http_get($n->port, '/metrics')->body;
                     $text =~ /by_plan_total\{[^}]*status="ok"\} 1$/m }, timeout => 5);
    like($text, qr/^api_key_requests_by_plan_total\{zone="keys",plan="we\\"ird\\\\",status="ok"\} 1$/m,
         'label values escaped');
    $n->stop;
}

# --- exact over two workers; a reload loses nothing ----------------------------------
# Each request on its own connection: both workers take some.  The reload comes
# at once: what the old workers had not folded yet (their timer runs every
# second) reaches the zone at their exit, and the new workers' page shows it
# without waiting.
{
    my $n = start('labels=plan');
    my $N = 40;
    my @keys = ($k{pro1}, $k{free}, $k{pro2}, $k{rev});
    my $ok = 0;
    for my $i (1 .. $N) {
        my $st = get($n, $keys[$i % 4]);
        $ok++ if $st == ($i % 4 == 3 ? 401 : 200);
    }
    is($ok, $N, "$N requests answered");
    my $f = 'api_key_requests_by_plan_total{zone="keys"';
    my $m = metrics_when($n->port, sub {
        ($_[0]{qq($f,plan="pro",status="ok"})} // 0)
        + ($_[0]{qq($f,plan="free",status="ok"})} // 0) >= 1 });
    my $seen = ($m->{qq($f,plan="pro",status="ok"})} // 0)
               + ($m->{qq($f,plan="free",status="ok"})} // 0)
               + ($m->{qq($f,plan="pro",status="revoked"})} // 0);
    ok($seen >= 1 && $seen <= $N, "the page shows what was folded so far ($seen of $N)");

    for my $i (1 .. $N) { get($n, $keys[$i % 4]) }
    ok($n->reload, 'reload right after another ' . $N . ' requests')
        or diag $n->reload_error;
    is_deeply($n->{old_workers_left}, [], 'the old workers exited');
    $m = metrics($n->port);
    is($m->{qq($f,plan="pro",status="ok"})}, 2 * $N / 2, 'pro ok: every request, none lost to the reload');
    is($m->{qq($f,plan="free",status="ok"})}, 2 * $N / 4, 'free ok: every request');
    is($m->{qq($f,plan="pro",status="revoked"})}, 2 * $N / 4, 'pro revoked: every request');
    is($m->{'api_key_requests_total{zone="keys",status="ok"}'}, 2 * $N * 3 / 4,
       'api_key_requests_total agrees');
    $n->stop;
}

# --- without labels= -------------------------------------------------------------
{
    my $n = start('');
    is(get($n, $k{pro1}), 200, 'no labels: pro key');
    my $text = http_get($n->port, '/metrics')->body;
    unlike($text, qr/api_key_requests_by_/, 'no labels=: no by-label family');
    $n->stop;
}

# --- bad configuration -------------------------------------------------------------
for my $c (['labels=plan values=0', qr/invalid "values=0"/],
           ['labels=plan values=1001', qr/invalid "values=1001"/],
           ['labels=status', qr/invalid parameter "labels=status"/],
           ['values=5', qr/"values=" needs/]) {
    my ($params, $re) = @$c;
    config_refused(<<"EOT", $re, "nginx -t refuses api_key_metrics $params");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; empty_gif; }
        location = /metrics {
            api_key_metrics $params;   # BAD
        }
    }
EOT
}
my $two = 'nginx -t refuses two api_key_metrics with different labels';
config_refused(<<"EOT", qr/must give the same/, $two);
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; empty_gif; }
        location = /metrics { api_key_metrics labels=plan; }
        location = /metrics2 {
            api_key_metrics labels=owner;   # BAD
        }
        location = /metrics3 { api_key_metrics; }
    }
EOT

done_testing;
