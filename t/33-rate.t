# SPDX-License-Identifier: BSD-2-Clause
# Per-key rate limits (GCRA, per node, in shared memory): exactly burst+1
# back-to-back requests pass, then 429 rate_limited with Retry-After,
# RateLimit-Policy and RateLimit; $api_key_rate_remaining counts down; one
# more passes after the interval; requests denied for another reason
# (ip_denied, scope_denied) consume no rate; with 4 workers the limit is
# still exactly burst+1 per node (sequential new connections and a
# concurrent batch on an uncached key).  A record with a rate and no burst
# field gets a bucket of N: 5/m admits 5 of 8 at once; burst=0 admits 1.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    keepalive_requests 10000;

    server {
        listen 127.0.0.1:%%PORT%% reuseport backlog=1024;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Rate-Remaining $api_key_rate_remaining always;
        add_header X-Pid $pid always;

        location / {
            try_files /ok.txt =404;
        }
        location /admin/ {
            api_key_scope admin;
            try_files /ok.txt =404;
        }
        location /fwd/ {
            set_real_ip_from 127.0.0.1;
            real_ip_header   X-Forwarded-For;
            try_files /ok.txt =404;
        }
    }
EOT

sub start_nginx {
    my ($workers) = @_;
    my $n = ApiKeyTest::Nginx->start(http => $http, workers => $workers,
        redis => $r, redis_clients => 2 * $workers, vars => { REDIS => $r->port });
    static_site($n);
    return $n;
}

# $n requests on one keep-alive connection, as fast as possible
sub burst {
    my ($port, $key, $count, $path) = @_;
    my $c = ApiKeyTest::HTTPConn->new($port);
    my $t0 = time;
    my @res = map { $c->get($path // '/', headers => xkey($key)) } 1 .. $count;
    my $el = time - $t0;
    $c->close;
    return ($el, @res);
}

sub statuses { join ' ', map { $_->status } @_ }

my $n = start_nginx(1);
my $port = $n->port;

# --- rate=5/s burst=0: one request per 200 ms -------------------------------------
{
    my $k = random_key('r5s');
    add_key($r, $k, rate => '5/s', burst => 0);
    is(http_get($port, '/', headers => xkey($k))->status, 200, '5/s: the first request passes');
    # the token is back after 200 ms: now fire 10 at once (again if a busy
    # machine took longer than the interval for them)
    my ($el, @res);
    for my $try (1 .. 3) {
        sleep 0.25;
        ($el, @res) = burst($port, $k, 10);
        last if $el < 0.15;
    }
    note sprintf '5/s burst 0: 10 requests in %.1f ms: %s', $el * 1000, statuses(@res);
    cmp_ok($el, '<', 0.15, '10 requests within 150 ms (less than the 200 ms interval)');
    my @ok = grep { $_->status == 200 } @res;
    is(scalar @ok, 1, '5/s burst 0: exactly 1 of 10 back-to-back requests passes');
    is($res[0]->status, 200, '... the first one');
    is(scalar(grep { $_->status == 429 && $_->header('X-Status') eq 'rate_limited' } @res),
       9, '... the other 9 are 429 rate_limited');
    is($res[0]->header('X-Rate-Remaining'), '0', '$api_key_rate_remaining is 0 with burst 0');
    my $l = $res[1];
    is($l->header('Retry-After'), '1', '429 (5/s): Retry-After 1 (rounded up from < 200 ms)');
    is($l->header('RateLimit-Policy'), '5;w=1;burst=0', '429 (5/s): RateLimit-Policy 5;w=1;burst=0');
    is($l->header('RateLimit'), 'limit=5, remaining=0, reset=1', '429 (5/s): RateLimit');
}

# --- rate=100000/s burst=0: the limiter's clock is finer than a millisecond --------
# One request every 10 µs is allowed; sequential requests on one keep-alive
# connection are further apart than that (a loopback round trip through
# nginx and this Perl client), so every one passes.  A millisecond clock
# (nginx's cached ngx_current_msec) would let one per millisecond through.
{
    my $k = random_key('r100k');
    add_key($r, $k, rate => '100000/s', burst => 0);
    my ($el, @res) = burst($port, $k, 300);
    my $ok = grep { $_->status == 200 } @res;
    note sprintf '100000/s burst 0: 300 sequential requests in %.1f ms, %d passed',
        $el * 1000, $ok;
    is($ok, 300, '100000/s burst 0: 300 sequential requests on one connection all pass');
}

# --- rate=60/m burst=4: exactly 5 back-to-back --------------------------------------
{
    my $k = random_key('r60m');
    add_key($r, $k, rate => '60/m', burst => 4);
    my ($el, @res) = burst($port, $k, 10);
    note sprintf '60/m burst 4: 10 requests in %.1f ms: %s', $el * 1000, statuses(@res);
    cmp_ok($el, '<', 0.9, '10 requests (the first one reads Redis) within 900 ms');
    is(statuses(@res), join(' ', (200) x 5, (429) x 5),
       '60/m burst 4: exactly 5 of 10 back-to-back requests pass, the first 5');
    is_deeply([ map { $_->header('X-Rate-Remaining') } @res[0 .. 4] ], [ 4, 3, 2, 1, 0 ],
              '$api_key_rate_remaining counts down 4 3 2 1 0 on the allowed requests');
    for my $i (5 .. 9) {
        my $x = $res[$i];
        is($x->header('X-Status'), 'rate_limited', "request " . ($i + 1) . ": rate_limited");
    }
    my $x = $res[5];
    my $ra = $x->header('Retry-After') // '';
    like($ra, qr/^\d+$/, '429: Retry-After is an integer');
    cmp_ok($ra, '>=', 1, '429: Retry-After >= 1') if $ra =~ /^\d+$/;
    is($ra, '1', '429: Retry-After 1 (the next request conforms in at most 1 s)');
    is($x->header('RateLimit-Policy'), '60;w=60;burst=4', '429: RateLimit-Policy: 60;w=60;burst=4');
    like($x->header('RateLimit') // '', qr/^limit=60, remaining=0, reset=(\d+)$/,
         '429: RateLimit: limit=60, remaining=0, reset=N');
    my ($reset) = ($x->header('RateLimit') // '') =~ /reset=(\d+)/;
    ok(defined $reset && $reset >= 4 && $reset <= 5,
       "429: RateLimit reset ($reset) is the time until the bucket is empty, about 5 s");
    is($x->header('X-Rate-Remaining'), '0', '429: $api_key_rate_remaining is 0');
    is($res[0]->header('RateLimit'), undef, 'an allowed request carries no RateLimit header');

    # one interval later: exactly one more passes
    sleep 1.1;
    my ($el2, @more) = burst($port, $k, 3);
    is(statuses(@more), '200 429 429', 'after 1.1 s (interval 1 s): exactly one more passes');
    is($more[0]->header('X-Rate-Remaining'), '0', '... with remaining 0');
}

# --- rate=5/m and no burst field: a bucket of 5 -------------------------------------
# "5 per minute" reads as a budget of five: 8 requests at once (concurrent
# connections on a cached key), 5 pass, 3 are 429 with Retry-After 12 s
# (60 s / 5).  With an explicit burst=0 the same 8 admit one (GCRA as
# limit_req: one per 12 s).
{
    my $k = random_key('r5m');
    add_key($r, $k, rate => '5/m');
    is(http_get($port, '/admin/', headers => xkey($k))->status, 403,
       '5/m no burst: key cached (scope_denied, no rate consumed)');
    my @con = http_concurrent($port, [ map { { path => "/n$_", headers => xkey($k) } } 1 .. 8 ],
                              timeout => 10);
    note '5/m no burst, 8 at once: ' . statuses(@con);
    is(scalar(grep { $_->status == 200 } @con), 5, '5/m, no burst: 5 of 8 requests at once pass');
    my @lim = grep { $_->status == 429 } @con;
    is(scalar(@lim), 3, '... 3 are 429');
    is(scalar(grep { ($_->header('X-Status') // '') eq 'rate_limited' } @lim), 3,
       '... rate_limited');
    is(scalar(grep { ($_->header('Retry-After') // '') eq '12' } @lim), 3,
       '... each with Retry-After: 12 (60 s / 5)');
    is($lim[0] && $lim[0]->header('RateLimit-Policy'), '5;w=60;burst=4',
       '... RateLimit-Policy: 5;w=60;burst=4 (a bucket of 5)');
    is(join(' ', sort map { $_->header('X-Rate-Remaining') } grep { $_->status == 200 } @con),
       '0 1 2 3 4', '$api_key_rate_remaining: 4 3 2 1 0 on the allowed requests');

    my $k0 = random_key('r5m0');
    add_key($r, $k0, rate => '5/m', burst => 0);
    is(http_get($port, '/admin/', headers => xkey($k0))->status, 403,
       '5/m burst=0: key cached');
    @con = http_concurrent($port, [ map { { path => "/z$_", headers => xkey($k0) } } 1 .. 8 ],
                           timeout => 10);
    note '5/m burst=0, 8 at once: ' . statuses(@con);
    is(scalar(grep { $_->status == 200 } @con), 1,
       '5/m, explicit burst=0: 1 of 8 requests at once passes (GCRA, as before)');
    @lim = grep { $_->status == 429 } @con;
    is(scalar(@lim), 7, '... 7 are 429');
    is(scalar(grep { ($_->header('Retry-After') // '') eq '12' } @lim), 7,
       '... each with Retry-After: 12');
    is($lim[0] && $lim[0]->header('RateLimit-Policy'), '5;w=60;burst=0',
       '... RateLimit-Policy: 5;w=60;burst=0');
}

# --- denied requests consume no rate ------------------------------------------
{
    my $k = random_key('rden');
    add_key($r, $k, rate => '60/m', burst => 4, ips => '127.0.0.0/8', scopes => 'read');
    my $c = ApiKeyTest::HTTPConn->new($port);
    my (@allowed, @denied);
    my $t0 = time;
    for my $i (1 .. 10) {
        push @denied, [ 'scope_denied', $c->get('/admin/x', headers => xkey($k)) ];
        push @denied, [ 'ip_denied', $c->get('/fwd/x',
            headers => xkey($k, 'X-Forwarded-For' => '192.0.2.10')) ];
        push @denied, [ 'scope_denied', $c->get('/admin/y', headers => xkey($k)) ];
        push @allowed, $c->get('/', headers => xkey($k));
    }
    my $el = time - $t0;
    note sprintf 'alternating: 40 requests in %.1f ms; allowed path: %s',
        $el * 1000, statuses(@allowed);
    cmp_ok($el, '<', 0.9, '40 requests within 900 ms');
    is(statuses(@allowed), join(' ', (200) x 5, (429) x 5),
       'with 30 denied requests in between, still exactly 5 pass (denials consume no rate)');
    is_deeply([ map { $_->header('X-Rate-Remaining') } @allowed[0 .. 4] ], [ 4, 3, 2, 1, 0 ],
              '... and $api_key_rate_remaining still counts 4 3 2 1 0');
    my @bad = grep { $_->[1]->status != 403 || ($_->[1]->header('X-Status') // '') ne $_->[0] }
              @denied;
    is(scalar @bad, 0, 'the 30 denied requests are 403 ip_denied / scope_denied, never 429')
        or diag join "\n", map { "$_->[0]: " . $_->[1]->as_string } @bad[0 .. 2];
    # and a request through real_ip from an allowed address counts
    my $res = $c->get('/fwd/x', headers => xkey($k, 'X-Forwarded-For' => '127.0.0.5'));
    is($res->status, 429, 'an allowed request through /fwd/ meets the same exhausted rate');
}

$n->stop;
ok(!$n->stop_forced, '1 worker: nginx stops gracefully');

# --- 4 workers: the rate is shared by every worker of the node ---------------------
{
    my $n4 = start_nginx(4);
    my $p4 = $n4->port;

    # sequential requests, each on a new connection (reuseport spreads them)
    my $k = random_key('r4seq');
    add_key($r, $k, rate => '60/m', burst => 4);
    # cache the key through a location that denies it: no rate consumed
    is(http_get($p4, '/admin/', headers => xkey($k))->status, 403,
       '4 workers: key cached (scope_denied, no rate consumed)');
    my $t0 = time;
    my @res = map { http_get($p4, "/s$_", headers => xkey($k)) } 1 .. 12;
    my $el = time - $t0;
    my %pids = map { ($_->header('X-Pid') // '?') => 1 } @res;
    note sprintf '4 workers, 12 new connections in %.1f ms over %d workers: %s',
        $el * 1000, scalar(keys %pids), statuses(@res);
    cmp_ok(scalar(keys %pids), '>=', 2, 'the requests were spread over several workers');
    cmp_ok($el, '<', 0.9, '12 requests within 900 ms');
    is(scalar(grep { $_->status == 200 } @res), 5,
       '4 workers, 12 sequential new connections: exactly 5 pass (burst 4 + 1)');
    is(scalar(grep { $_->status == 429 } @res), 7, '... 7 are 429');

    # concurrent, on an uncached key: every worker may read it from Redis
    my $k2 = random_key('r4con');
    add_key($r, $k2, rate => '60/m', burst => 4);
    my @con = http_concurrent($p4, [ map { { path => "/c$_", headers => xkey($k2) } } 1 .. 16 ],
                              timeout => 10);
    my %p2 = map { ($_->header('X-Pid') // '?') => 1 } @con;
    my $c = status_counts(@con);
    note '4 workers, 16 concurrent on an uncached key over ' . scalar(keys %p2)
        . ' workers: ' . join(', ', map { "$_ x$c->{$_}" } sort keys %$c);
    cmp_ok(scalar(keys %p2), '>=', 2, 'the concurrent requests were spread over several workers');
    is(scalar(grep { $_->status == 200 } @con), 5,
       '4 workers, 16 concurrent requests on an uncached key: exactly 5 pass');
    is(scalar(grep { $_->status == 429 } @con), 11, '... 11 are 429');

    # concurrent on a cached key
    my $k3 = random_key('r4cc');
    add_key($r, $k3, rate => '60/m', burst => 4);
    http_get($p4, '/admin/', headers => xkey($k3));
    @con = http_concurrent($p4, [ map { { path => "/d$_", headers => xkey($k3) } } 1 .. 16 ],
                           timeout => 10);
    is(scalar(grep { $_->status == 200 } @con), 5,
       '4 workers, 16 concurrent requests on a cached key: exactly 5 pass');

    unlike($n4->error_log, qr/exited on signal/, '4 workers: no worker crashed');
    is_deeply([ $n4->problems ], [], '4 workers: no alert, crit or emerg');
    $n4->stop;
}

done_testing;
