# SPDX-License-Identifier: BSD-2-Clause
# api_key_metrics: the Prometheus text counts exactly the requests, cache
# lookups, Redis reads and events this test causes, summed over workers.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s negative_ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;
            empty_gif;
        }
        location = /metrics {
            allow 127.0.0.1;
            deny all;
            api_key_metrics;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => 2, redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;

sub metrics {
    my $res = http_get($port, '/metrics');
    is($res->status, 200, 'metrics answer 200') or diag($res->body);
    my %m;
    for my $line (split /\n/, $res->body) {
        next if $line =~ /^#/ or $line !~ /\S/;
        my ($name, $value) = $line =~ /^(\S+) (\S+)$/ or next;
        $m{$name} = $value;
    }
    return (\%m, $res);
}

sub get { http_get($port, '/', headers => $_[0] ? { 'X-API-Key' => $_[0] } : {})->status }

# wait until every worker is connected (both connections), so the events
# below reach both of them
ok(wait_until(sub {
    my $text = http_get($port, '/metrics')->body;
    my ($c) = $text =~ /^api_key_redis_connects_total\{connection="events"\} (\d+)/m;
    defined $c && $c >= 2 && scalar(grep { /sub=1/ } split /\n/, $r->cmd('CLIENT', 'LIST')) >= 2;
}, timeout => 10), 'both workers subscribed');

my ($m0, $res0) = metrics();
like($res0->header('content-type'), qr{^text/plain; version=0\.0\.4},
     'Prometheus text content type');
like($res0->body, qr/^# TYPE api_key_requests_total counter$/m, 'TYPE lines');
like($res0->body, qr/^# TYPE api_key_redis_read_seconds histogram$/m,
     'latency histogram declared');

my $good = random_key('m');
my $gh = add_key($r, $good, owner => 'metrics');
my $gone = random_key('r');
add_key($r, $gone, status => 'revoked');

my @st;
push @st, get($good) for 1 .. 3;       # 1 read, then 2 cache hits
push @st, get(undef) for 1 .. 2;       # missing: no lookup
push @st, get('no-such-key-' . $$);    # unknown: 1 read
push @st, get('no-such-key-' . $$);    # unknown again: negative hit
push @st, get($gone);                  # revoked: 1 read
is_deeply(\@st, [200, 200, 200, 401, 401, 401, 401, 401], 'statuses');

my ($m) = metrics();
my $z = 'zone="keys"';
is($m->{"api_key_requests_total{$z,status=\"ok\"}"}, 3, 'ok counted: 3');
is($m->{"api_key_requests_total{$z,status=\"missing\"}"}, 2, 'missing: 2');
is($m->{"api_key_requests_total{$z,status=\"unknown\"}"}, 2, 'unknown: 2');
is($m->{"api_key_requests_total{$z,status=\"revoked\"}"}, 1, 'revoked: 1');
is($m->{"api_key_requests_total{$z,status=\"unavailable\"}"}, 0, 'unavailable: 0');
is($m->{"api_key_cache_lookups_total{$z,result=\"hit\"}"}, 2, 'cache hits: 2');
is($m->{"api_key_cache_lookups_total{$z,result=\"negative_hit\"}"}, 1,
   'negative hits: 1');
is($m->{"api_key_cache_lookups_total{$z,result=\"miss\"}"}, 3,
   'misses: 3 (the good key, the unknown key, the revoked key)');
is($m->{"api_key_redis_read_seconds_count{$z}"}, 3, 'Redis reads timed: 3');
is($m->{"api_key_redis_read_seconds_bucket{$z,le=\"+Inf\"}"}, 3,
   'histogram +Inf bucket = count');
# the buckets: 25, 50 and 100 us below 250 us (a read on loopback or a LAN
# takes 20-200 us), then up to 1 s; cumulative
my @le = ('0.000025', '0.000050', '0.000100', '0.000250', '0.000500',
          '0.001000', '0.002500', '0.005000', '0.010000', '0.025000',
          '0.050000', '0.100000', '0.250000', '1.000000', '+Inf');
my @got = map { /^api_key_redis_read_seconds_bucket\{zone="keys",le="([^"]+)"\}$/ ? $1 : () }
          sort keys %$m;
is_deeply([sort @got], [sort @le], 'histogram buckets: 25 us to 1 s, +Inf');
my @cum = map { $m->{"api_key_redis_read_seconds_bucket{$z,le=\"$_\"}"} // -1 } @le;
ok(!grep({ $cum[$_] < $cum[$_ - 1] } 1 .. $#cum) && $cum[0] >= 0,
   'histogram buckets are cumulative: ' . join(' ', @cum));
is($m->{"api_key_cache_entries{$z,kind=\"key\"}"}, 2, 'two keys cached');
is($m->{"api_key_cache_entries{$z,kind=\"negative\"}"}, 1, 'one negative entry');
ok(defined $m->{"api_key_cache_read_retries_total{$z}"}
   && $m->{"api_key_cache_read_retries_total{$z}"} =~ /^\d+$/,
   'lock-free lookups that read again: a counter');
is($m->{'api_key_redis_connected{connection="commands"}'}, 1,
   'the answering worker is connected (commands)');
is($m->{'api_key_redis_connected{connection="events"}'}, 1,
   'the answering worker is connected (events)');

# events: each worker counts what it receives
$r->cmd('PUBLISH', 'apikey:events', "revoke $gh");
$r->cmd('PUBLISH', 'apikey:events', "update $gh");
$r->cmd('PUBLISH', 'apikey:events', 'bogus message');
ok(wait_until(sub {
    my ($mm) = metrics();
    ($mm->{'api_key_events_total{type="malformed"}'} // 0) >= 2;
}, timeout => 5), 'events arrive');
($m) = metrics();
is($m->{'api_key_events_total{type="revoke"}'}, 2, 'revoke: once per worker (2)');
is($m->{'api_key_events_total{type="update"}'}, 2, 'update: once per worker (2)');
is($m->{'api_key_events_total{type="malformed"}'}, 2, 'malformed: 2');
is($m->{'api_key_subscription_reconnects_total'}, 0, 'no reconnects yet');

$r->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
ok(wait_until(sub {
    my ($mm) = metrics();
    ($mm->{'api_key_subscription_reconnects_total'} // 0) >= 2;
}, timeout => 10), 'subscription reconnects counted (2 workers)');

unlike($n->error_log, qr/\[(alert|emerg|crit)\]|exited on signal/,
       'no alert/crit in the error log');

done_testing();
