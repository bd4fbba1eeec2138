# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl and the module's usage flush: show prints the last use, usage
# prints the requests per UTC day by class and, apart and labelled, the
# quota state; list --unused DURATION lists the keys not used for that
# long (never used, or used before); bad --days / --unused are refused.
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Cli qw(run_cli);
use ApiKeyTest::Events qw(wait_subscribed);

require_module();

my $r = ApiKeyTest::Redis->start;
my $url = 'redis://127.0.0.1:' . $r->port;

my $http = <<'EOT';
    api_key_zone  keys:1m usage_flush=200ms;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;
            empty_gif;
        }
    }
EOT
my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;
wait_subscribed($r, 1, timeout => 10);

sub cli { run_cli(args => ['--redis', $url, @_]) }
sub create {
    my $c = cli('create', '--json', @_);
    is($c->{exit}, 0, "create @_") or diag $c->{err};
    my $j = JSON::PP::decode_json($c->{out});
    ApiKeyTest::track_key($j->{key});
    return $j;
}
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] })->status }

my $used  = create('--id', 'used-1', '--quota', '1000/day');
my $never = create('--id', 'never-1');
my $old   = create('--id', 'old-1');

my $t0 = int(time);
is(get($used->{key}), 200, 'used key: 200') for 1 .. 4;
$r->cmd('HSET', "apikey:$used->{hash}", 'rate', '1/m', 'burst', '0');
$r->cmd('PUBLISH', 'apikey:events', "update $used->{hash}");
ok(wait_until(sub { get($used->{key}) == 429 }, timeout => 5),
   'used key: rate-limited after the change');
my $day = $t0 - $t0 % 86400;
my $rq = "apikey:usage:{apikey:$used->{hash}}:requests:$day";
ok(wait_until(sub { ($r->cmd('HGET', $rq, 'denied_limit') // 0) >= 1 },
              timeout => 5), 'the flush wrote the counts');
my %c = @{ $r->cmd('HGETALL', $rq) };

# old-1: last used 100 days ago (as the flush would have written it)
$r->cmd('SET', "apikey:usage:{apikey:$old->{hash}}:last_used", $t0 - 100 * 86400);

# --- show -------------------------------------------------------------------
{
    my $s = cli('show', 'used-1');
    is($s->{exit}, 0, 'show used-1');
    like($s->{out}, qr/^last_used\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)$/m,
         'show: last_used, with how long ago') or diag $s->{out};
    $s = cli('show', 'never-1');
    like($s->{out}, qr/^last_used\s+never/m, 'show: a key never used');
    $s = cli('show', '--json', 'used-1');
    my $j = JSON::PP::decode_json($s->{out});
    ok($j->{last_used} >= $t0 && $j->{last_used} <= time + 1, 'show --json: last_used');
    $j = JSON::PP::decode_json(cli('show', '--json', 'never-1')->{out});
    ok(exists $j->{last_used} && !defined $j->{last_used}, 'show --json: null when never');
}

# --- usage ------------------------------------------------------------------
{
    my $u = cli('usage', 'used-1', '--days', '3');
    is($u->{exit}, 0, 'usage --days 3') or diag $u->{err};
    my $today = substr(`date -u -d \@$day +%F`, 0, 10);
    like($u->{out}, qr/^last used\s+\d{4}-/m, 'usage: last used');
    like($u->{out}, qr/^requests per UTC day, last 3 /m, 'usage: the requests section');
    my @rows = $u->{out} =~ /^  (\d{4}-\d\d-\d\d) /mg;
    is(scalar @rows, 3, 'usage: three days') or diag $u->{out};
    is($rows[0], $today, 'usage: newest first, today');
    like($u->{out}, qr/^  \Q$today\E\s+$c{allowed}\s+0\s+0\s+$c{denied_limit}$/m,
         "usage: today's row (allowed $c{allowed}, denied_limit $c{denied_limit})");
    like($u->{out}, qr/^quota state \(counts taken by nginx nodes.*not requests\):$/m,
         'usage: the quota state is labelled apart');
    like($u->{out}, qr/^quota\s+1000\/day$/m, 'usage: the quota');
    ok(index($u->{out}, 'requests per UTC day') < index($u->{out}, 'quota state'),
       'usage: requests first, then the quota state');

    my $j = JSON::PP::decode_json(cli('usage', '--json', 'used-1', '--days', '2')->{out});
    is(scalar @{ $j->{requests} }, 2, 'usage --json: two days');
    is($j->{requests}[0]{day}, $today, 'usage --json: today first');
    is($j->{requests}[0]{allowed}, $c{allowed}, 'usage --json: allowed');
    is($j->{requests}[0]{denied_limit}, $c{denied_limit}, 'usage --json: denied_limit');
    is($j->{requests}[1]{allowed}, 0, 'usage --json: yesterday 0');
    ok($j->{last_used} >= $t0, 'usage --json: last_used');
    is($j->{quota}, '1000/day', 'usage --json: the quota state still there');

    my $d = cli('usage', 'used-1');
    my @d30 = $d->{out} =~ /^  (\d{4}-\d\d-\d\d) /mg;
    is(scalar @d30, 30, 'usage: 30 days by default');

    for my $bad ('0', '93', 'x', '-1') {
        my $e = cli('usage', 'used-1', '--days', $bad);
        is($e->{exit}, 2, "usage --days $bad: refused (exit 2)");
        like($e->{err}, qr/--days/, "usage --days $bad: says why");
    }
}

# --- list --unused ------------------------------------------------------------
{
    my $l = cli('list', '--unused', '90d');
    is($l->{exit}, 0, 'list --unused 90d') or diag $l->{err};
    my %ids = map { (split /\t/)[0] => [split /\t/] } split /\n/, $l->{out};
    ok(!$ids{'used-1'}, 'list --unused 90d: not the key used now');
    ok($ids{'never-1'}, 'list --unused 90d: the key never used');
    ok($ids{'old-1'}, 'list --unused 90d: the key last used 100 days ago');
    is($ids{'never-1'}[-1], 'never', 'list --unused: LAST_USED never');
    like($ids{'old-1'}[-1], qr/^\d{4}-\d\d-\d\dT/, 'list --unused: LAST_USED a time');

    $l = cli('list', '--unused', '101d');
    %ids = map { (split /\t/)[0] => 1 } split /\n/, $l->{out};
    ok(!$ids{'old-1'} && $ids{'never-1'} && !$ids{'used-1'},
       'list --unused 101d: not the key used 100 days ago');

    $l = cli('list', '--unused', '1s');
    ok(wait_until(sub {
        my %i = map { (split /\t/)[0] => 1 } split /\n/, cli('list', '--unused', '2s')->{out};
        $i{'used-1'} }, timeout => 10), 'list --unused 2s: the used key, 2 s later');

    my $j = JSON::PP::decode_json(cli('list', '--json', '--unused', '90d')->{out});
    my ($o) = grep { $_->{id} eq 'old-1' } @$j;
    is($o->{last_used}, $t0 - 100 * 86400, 'list --json --unused: last_used');

    for my $bad ('abc', '0', '90x', '') {
        my $e = cli('list', '--unused', $bad);
        is($e->{exit}, 2, "list --unused '$bad': refused (exit 2)");
    }
}

done_testing;
