# SPDX-License-Identifier: BSD-2-Clause
# Concurrency: many requests for one uncached key wait on one Redis read
# (coalescing, per worker), answers are not mixed up between keys, and
# clients that go away while their request waits on Redis leave nginx
# healthy.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use List::Util qw(shuffle);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

sub conf {
    my ($timeout) = @_;
    return <<"EOT";
    api_key_zone  keys:4m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=$timeout;
    server {
        listen 127.0.0.1:%%PORT%% backlog=1024;
        api_key keys;
        add_header X-Status \$api_key_status always;
        add_header X-Owner  \$api_key_owner always;
        location / {
            root %%DIR%%/html;
            try_files /hello.txt =404;
        }
    }
EOT
}

sub start_nginx {
    my (%o) = @_;
    my $n = ApiKeyTest::Nginx->start(http => conf($o{timeout}), workers => $o{workers},
                                     vars => { REDIS => $r->port }, redis => $r);
    spew($n->dir . '/html/hello.txt', "hello\n", 0644);
    return $n;
}

sub hdr { [ 'X-API-Key' => $_[0] ] }

# 200 concurrent requests for one uncached key, Redis paused meanwhile so
# that they all wait; returns (responses, HGETALL calls, pending while paused)
sub stampede {
    my ($n, $key, $count) = @_;
    reset_stats($r);
    my ($batch, $pending);
    {
        my $g = $r->pause_guard;
        $batch = http_batch($n->port, [ map { { path => "/r$_", headers => hdr($key) } } 1 .. $count ]);
        sleep 1;
        $pending = $batch->pending;
    }
    my @res = $batch->wait(timeout => 15);
    return (\@res, hgetall_calls($r), $pending);
}

# --- one worker: exactly one HGETALL ------------------------------------------
{
    my $n = start_nginx(workers => 1, timeout => '5s');
    my @pids = $n->worker_pids;
    my $k = random_key('one');
    add_key($r, $k, owner => 'crowd');
    my ($res, $calls, $pending) = stampede($n, $k, 200);
    is($pending, 200, '1 worker: 200 requests wait while Redis is paused');
    my @ok = grep { $_->status == 200 && ($_->header('X-Owner') // '') eq 'crowd' } @$res;
    is(scalar @ok, 200, '1 worker: all 200 concurrent requests for one uncached key get 200')
        or diag join "\n", map { $_->as_string } grep { $_->status != 200 } @$res[0 .. 4];
    is($calls, 1, '1 worker: exactly one HGETALL for them');

    # many keys at once: no answer goes to the wrong request
    my @keys = map { random_key("m$_") } 1 .. 40;
    my %owner;
    for my $i (0 .. 19) {
        $owner{ $keys[$i] } = "owner$i";
        add_key($r, $keys[$i], owner => "owner$i");
    }
    my @reqs = shuffle map { my $k = $_; map { { path => '/', headers => hdr($k), key => $k } } 1 .. 5 } @keys;
    reset_stats($r);
    my $batch;
    {
        my $g = $r->pause_guard;
        $batch = http_batch($n->port, [ map { { path => $_->{path}, headers => $_->{headers} } } @reqs ]);
        sleep 1;
    }
    my @out = $batch->wait(timeout => 15);
    my ($right, @wrong) = (0);
    for my $i (0 .. $#reqs) {
        my $k = $reqs[$i]{key};
        my $x = $out[$i];
        my $good = $owner{$k}
            ? $x->status == 200 && ($x->header('X-Owner') // '') eq $owner{$k}
            : $x->status == 401 && ($x->header('X-Status') // '') eq 'unknown'
              && !defined $x->header('X-Owner');
        $good ? $right++ : push @wrong, "$k: " . $x->as_string;
    }
    is($right, 200, '1 worker: 40 keys x 5 concurrent requests, each gets its own key\'s answer')
        or diag join "\n", @wrong[0 .. ($#wrong < 4 ? $#wrong : 4)];
    is(hgetall_calls($r), 40, '1 worker: one HGETALL per key');

    is_deeply([ $n->worker_pids ], \@pids, '1 worker: no worker was replaced');
    is_deeply([ $n->problems ], [], '1 worker: no alert, crit or emerg');
    $n->stop;
    ok(!$n->stop_forced, '1 worker: graceful stop');
    is_deeply([ $n->problems ], [], '1 worker: nothing bad logged at exit (e.g. open sockets left)');
}

# --- two workers: at most two HGETALLs -----------------------------------------
{
    my $n = start_nginx(workers => 2, timeout => '5s');
    my $k = random_key('two');
    add_key($r, $k, owner => 'crowd2');
    my ($res, $calls) = stampede($n, $k, 200);
    is(scalar(grep { $_->status == 200 } @$res), 200,
       '2 workers: all 200 concurrent requests get 200');
    ok($calls >= 1 && $calls <= 2, "2 workers: at most two HGETALLs ($calls)");
    is_deeply([ $n->problems ], [], '2 workers: no alert, crit or emerg');
    $n->stop;
    ok(!$n->stop_forced, '2 workers: graceful stop');
}

# --- clients that go away while waiting -----------------------------------------
{
    my $n = start_nginx(workers => 1, timeout => '700ms');
    my @pids = $n->worker_pids;
    my $k1 = random_key('gone1');
    my $k2 = random_key('gone2');
    add_key($r, $k1, owner => 'g1');
    add_key($r, $k2, owner => 'g2');

    # (a) they go away, Redis comes back before the timeout
    {
        my $g = $r->pause_guard;
        my $b1 = http_batch($n->port, [ map { { headers => hdr($k1) } } 1 .. 10 ]);
        my $b2 = http_batch($n->port, [ map { { headers => hdr($k1) } } 1 .. 10 ]);
        sleep 0.3;
        $b1->abort;               # FIN
        $b2->abort(reset => 1);   # RST
        sleep 0.1;
    }
    my $res = http_get($n->port, '/', headers => hdr($k1));
    is($res->status, 200, 'clients gone before Redis answered: the key works afterwards');

    # (b) they go away, the read times out, then Redis answers late
    {
        my $g = $r->pause_guard;
        my $b1 = http_batch($n->port, [ map { { headers => hdr($k2) } } 1 .. 10 ]);
        my $b2 = http_batch($n->port, [ map { { headers => hdr($k2) } } 1 .. 10 ]);
        sleep 0.3;
        $b1->abort;
        $b2->abort(reset => 1);
        sleep 1.0;                # past the 700ms timeout
    }
    my $ok = wait_until(sub { http_get($n->port, '/', headers => hdr($k2))->status == 200 },
                        timeout => 5, interval => 0.1);
    ok($ok, 'clients gone, read timed out, late answer: the key works afterwards');

    my @after = http_concurrent($n->port, [ map { { headers => hdr($_ % 2 ? $k1 : $k2) } } 1 .. 20 ]);
    is(scalar(grep { $_->status == 200 } @after), 20, 'later concurrent requests all work');
    is_deeply([ $n->worker_pids ], \@pids, 'no worker crashed (same worker pid)');
    my @bad = grep { /exited on signal|\[alert\]|\[emerg\]|\[crit\]/ } split /\n/, $n->error_log;
    is_deeply(\@bad, [], 'error log: no "exited on signal", alert, crit or emerg');
    $n->stop;
    ok(!$n->stop_forced, 'graceful stop');
    is_deeply([ $n->problems ], [], 'nothing bad logged at exit');
}

done_testing;
