#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# api_key_redis redis-sentinel:// (README, api_key_redis, "Redis Sentinel").
#
# - nginx -t takes the documented forms and refuses bad ones with file and
#   line, never echoing a password.
# - One master, one replica, three sentinels: the workers ask the sentinels
#   where the master is, and under steady load (cached keys, keys read once)
#   a SENTINEL FAILOVER moves both connections to the new master: no failed
#   request for a cached key, keys not cached answered by the new master
#   soon after +switch-master (the window is printed), a revoke published
#   after the failover reaches every worker (4 workers), a quota keeps
#   counting (at most one lease of drift), the metrics count the move.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Load;
use ApiKeyTest::Cli qw(subscribe next_message);

require_module();

my $dir = ApiKeyTest::tmpdir();
my $spw = spew("$dir/sentinel.pw", "s3ntinel-pw\n", 0600);

# --- nginx -t: the forms ------------------------------------------------------

my $conf = <<'EOT';
    api_key_zone  keys:1m;
    api_key_redis %%URL%% %%ARGS%%;
    server { listen 127.0.0.1:%%PORT%%; api_key keys; location / { return 204; } }
EOT

for my $c (
    ['three sentinels and a master', 'redis-sentinel://127.0.0.1:26379,127.0.0.1:26380,[::1]:26381/mymaster', ''],
    ['default port, a database, user and password', 'redis-sentinel://alice:pw@127.0.0.1,127.0.0.2/m/3', ''],
    ['a user, password_file, sentinel_password_file', 'redis-sentinel://alice@localhost:26379/m', "password_file=$spw sentinel_password_file=$spw"],
    ['rediss-sentinel with tls_verify=off', 'rediss-sentinel://127.0.0.1:26379/m', 'tls_verify=off'],
    ['rediss-sentinel with tls_name', 'rediss-sentinel://127.0.0.1:26379/m', 'tls_verify=off tls_name=redis.example'],
) {
    my ($name, $url, $args) = @$c;
    my $r = ApiKeyTest::Nginx->check_config(http => $conf, vars => { URL => $url, ARGS => $args });
    ok $r->{ok}, "nginx -t: $name" or diag $r->{output};
}

for my $c (
    ['no master name', 'redis-sentinel://127.0.0.1:26379', '', qr/invalid redis url "redis-sentinel:\/\/127\.0\.0\.1:\*\*\*": no master name/],
    ['an empty master name', 'redis-sentinel://127.0.0.1:26379/', '', qr/no master name/],
    ['an empty sentinel', 'redis-sentinel://127.0.0.1:26379,,127.0.0.1:1/m', '', qr/an empty sentinel in the list/],
    ['a bad port', 'redis-sentinel://127.0.0.1:99999/m', '', qr/invalid sentinel host or port/],
    ['no sentinel', 'redis-sentinel:///m', '', qr/no sentinel/],
    ['a database that is not a number', 'redis-sentinel://127.0.0.1/m/x', '', qr/the database must be a number/],
    ['a master name over 256 bytes', 'redis-sentinel://127.0.0.1/' . ('m' x 257), '', qr/the master's name must be 1 to 256 bytes/],
    ['more than 64 sentinels', 'redis-sentinel://' . join(',', ('127.0.0.1:1') x 65) . '/m', '', qr/more than 64 sentinels/],
    ['sentinel_password_file with redis://', 'redis://127.0.0.1:6379', "sentinel_password_file=$spw", qr/"sentinel_password_file" needs a redis-sentinel:\/\/ or rediss-sentinel:\/\/ url/],
    ['sentinel_password_file that cannot be read', 'redis-sentinel://127.0.0.1/m', "sentinel_password_file=$dir/none", qr/sentinel_password_file: cannot open/],
    ['tls_ with redis-sentinel://', 'redis-sentinel://127.0.0.1/m', 'tls_verify=off', qr/needs a rediss:\/\/ url/],
    ['a password in a bad url', 'redis-sentinel://alice:Secr3t-pw@127.0.0.1:26379', '', qr/alice:\*\*\*\@127\.0\.0\.1:26379": no master name/],
) {
    my ($name, $url, $args, $re) = @$c;
    my $r = ApiKeyTest::Nginx->check_config(http => $conf, vars => { URL => $url, ARGS => $args });
    ok !$r->{ok}, "nginx -t refuses $name";
    my $line = ApiKeyTest::Nginx::line_of($r, qr/api_key_redis/);
    like $r->{output}, qr/\[emerg\].*$re.* in \Q$r->{conf_path}\E:$line/, "... and says so, with file and line"
        or diag $r->{output};
    unlike $r->{output}, qr/Secr3t-pw/, '... without the password';
}

# --- a failover under load ---------------------------------------------------------

# (failover-timeout 10 s: the promoted replica must be seen as master within
# it, or the failover is aborted and not retried; 3 s was too short once on
# a machine at load 10)
my $s = ApiKeyTest::Sentinel->start(down_after => 500, failover_timeout => 10000);
note sprintf 'sentinel set ready in %.1f s', $s->start_secs;
my $m = $s->master;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:4m ttl=60s stale=10m negative_ttl=1s quota_lease=5;
    api_key_redis %%URL%% timeout=1s connect_timeout=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        add_header X-Pid $pid always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /metrics { api_key off; api_key_metrics; }
    }
EOT

my $WORKERS = 4;
my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
    error_level => 'info',
    vars => { URL => $s->url });
my $port = $n->port;
sub get { my ($k) = @_; http_get($port, '/', headers => { 'X-API-Key' => $k }) }
sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

# keys: cached ones (read before the failover), and a pool read once each
my @cached = map { random_key("c$_") } 1 .. 8;
add_key($m, $_, owner => 'o') for @cached;
my @pool = map { random_key("u$_") } 1 .. 1500;
{
    my $c = $m->client;
    $c->send_only('HSET', 'apikey:' . key_hash($_), 'owner', 'o') for @pool;
    $c->read_reply for @pool;
    track_key($_) for @pool;
}
my $quota_key = random_key('q');
my $qh = add_key($m, $quota_key, owner => 'q', quota => '1000/day');

ok wait_until(sub { st(get($cached[0])) eq '200 ok' }, timeout => 10),
    'the workers found the master through the sentinels';
# every worker: a request per connection lands on some worker; repeat
for (1 .. 20) { is st(get($_)), '200 ok', 'cached' or last for @cached }
ok wait_until(sub {
    ($s->replica->cmd('EXISTS', 'apikey:' . key_hash($pool[-1])) // 0) == 1
}, timeout => 5), 'the pool reached the replica';

my $quota_before = 0;
for (1 .. 20) { $quota_before++ if get($quota_key)->status == 200 }
is $quota_before, 20, 'quota key: 20 requests before the failover';

# +switch-master as a client of a sentinel sees it
my $watch = ($s->sentinels)[1]->client;
subscribe($watch, '+switch-master');

# the sentinels can act: none in TILT mode (a sentinel stalled for 2 s on a
# loaded machine carries out no failover, not even SENTINEL FAILOVER, for
# 30 s), the master up, the replica working
ok $s->wait_ready, 'the sentinels can fail the master over';

my $i = 0;
my $load = ApiKeyTest::Load->start(port => $port, conns => 8, duration => 8,
    rate => 300, timeout => 5, classes => [
        { name => 'cached', weight => 1, keys => \@cached, ok => ['200 ok'] },
        { name => 'uncached', weight => 1, ok => ['200 ok'],
          gen => sub { my ($j) = @_; $pool[$j] } },
    ]);
sleep 1.5;
my $t_failover = time;
my $old = $s->failover;
my $msg = next_message($watch, 15);
my $t_switch = time;
ok $msg, '+switch-master announced' or diag 'no +switch-master';
note sprintf '+switch-master %.2f s after SENTINEL FAILOVER', $t_switch - $t_failover;
my $new = $s->wait_switch(from => $old, timeout => 15);
ok $new && $new->port != $old, 'a new master';
my $res = $load->wait;

my $cc = $res->{classes}{cached};
my $uc = $res->{classes}{uncached};
note 'cached: ', ApiKeyTest::Load::answers_text($res, 'cached');
note 'uncached: ', ApiKeyTest::Load::answers_text($res, 'uncached');
ok $cc->{n} > 100, "cached keys were requested ($cc->{n})";
is scalar(@{ $cc->{bad} }), 0, 'no failed request for a cached key';
ok $uc->{n} > 100, "keys not cached were requested ($uc->{n})";
my @ubad = @{ $uc->{bad} };
my $window = @ubad ? $ubad[-1][0] - $ubad[0][0] : 0;
diag sprintf 'sentinel failover: %d of %d uncached requests failed (%s), '
    . 'unavailability window %.0f ms, the last %.0f ms after +switch-master',
    scalar @ubad, $uc->{n}, ApiKeyTest::Load::answers_text($res, 'uncached'),
    $window * 1000, @ubad ? ($ubad[-1][0] - $t_switch) * 1000 : 0;
is scalar(grep { $_->[1] !~ /^(200 ok|503 unavailable)$/ } @ubad), 0,
    'failures are 503 unavailable, never 401';
ok !@ubad || $ubad[-1][0] - $t_switch < 3,
    'keys not cached are answered within seconds of +switch-master';
ok $uc->{last} > $t_switch + 1, 'the load went on after the switch';

# after it: both connections at the new master
my $k2 = random_key('after');
add_key($new, $k2, owner => 'after');
is st(get($k2)), '200 ok', 'a key written on the new master after the failover';

# a revoke published after the failover reaches every worker
{
    my $rk = $cached[0];
    my $h = key_hash($rk);
    $new->cmd('HSET', "apikey:$h", 'status', 'revoked');
    my $subs = 0;
    ok wait_until(sub {
        my $ch = $new->cmd('PUBSUB', 'NUMSUB', 'apikey:events');
        $subs = $ch->[1];
        $subs >= $WORKERS;
    }, timeout => 5), "every worker subscribed on the new master ($subs)";
    my $revokes = sub {
        (http_get($port, '/metrics')->body =~ /^api_key_events_total\{type="revoke"\} (\d+)$/m)[0] // 0
    };
    my $before = $revokes->();
    $new->cmd('PUBLISH', 'apikey:events', "revoke $h");
    ok wait_until(sub { $revokes->() - $before >= $WORKERS }, timeout => 5),
        "every worker received the revoke (metrics: +" . ($revokes->() - $before) . ")";
    my %seen;
    my $ok = wait_until(sub {
        for (1 .. 8) {
            my $x = get($rk);
            $seen{ $x->header('X-Pid') } = st($x);
        }
        (grep { $_ eq '401 revoked' } values %seen) == keys %seen
            && keys %seen >= 2;
    }, timeout => 5);
    ok $ok, 'the revoke reached every worker that answered ('
        . join(', ', map { "$_: $seen{$_}" } sort keys %seen) . ')';
}

# the quota kept counting: 20 before, counted on the new master
{
    my $after = 0;
    for (1 .. 20) { $after++ if get($quota_key)->status == 200 }
    is $after, 20, 'quota key: 20 more requests after the failover';
    my ($start) = grep { /^apikey:usage:/ } @{ $new->cmd('KEYS', "apikey:usage:*$qh*") };
    my $used = $start ? $new->cmd('GET', $start) : 0;
    # leases of 5 per worker: what Redis counts is at most a lease per
    # worker ahead of what was admitted, and never behind; a lease lost
    # with the old master's connection (answered after the move) counts
    # one more lease
    ok $used >= 40 - 5 * $WORKERS && $used <= 40 + 5 * ($WORKERS + 1),
        "usage in Redis ($used) within a lease per worker of the 40 admitted";
}

# metrics: the move and the questions
{
    my $mt = http_get($port, '/metrics')->body;
    my ($sw) = $mt =~ /^api_key_redis_master_switches_total (\d+)$/m;
    my ($q) = $mt =~ /^api_key_redis_master_queries_total (\d+)$/m;
    ok $sw && $sw >= 1, "metrics: the master's moves ($sw)";
    ok $q && $q >= $WORKERS, "metrics: questions to the sentinels ($q)";
}
like $n->error_log, qr/the master "mymaster" is at 127\.0\.0\.1:${\ $new->port} \(\+switch-master\)/,
    'the log names the new master';

$n->stop;
done_testing;
