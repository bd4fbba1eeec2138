#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# api_key_redis redis-cluster://: nginx -t takes the cluster forms and
# refuses bad ones (file:line); on three masters (redis-cli --cluster
# create), 1,000 keys spread over every master all verify (each read goes to
# the master of its record's slot: no MOVED needed once the map is read),
# unknown keys are "unknown", and an HSET on a record on each master
# invalidates the cached record through that master's keyspace
# notifications (node-local: the module subscribes on every master).  A
# quota (leases as EVAL on the counter's master) counts.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

# --- nginx -t ---------------------------------------------------------------

sub conf_with {
    my ($line) = @_;
    return <<"EOT";
    api_key_zone  keys:1m;
    $line   # THE LINE
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; return 204; }
    }
EOT
}

for my $ok ('redis-cluster://127.0.0.1:7000,127.0.0.1:7001',
            'redis-cluster://127.0.0.1:7000',
            'redis-cluster://alice:s3cret@127.0.0.1:7000,[::1]:7001/0',
            'redis-cluster://localhost:7000,127.0.0.1:7001 keyspace_events=on',
            'rediss-cluster://127.0.0.1:7000,127.0.0.1:7001 tls_verify=off') {
    my $c = ApiKeyTest::Nginx->check_config(http => conf_with("api_key_redis $ok;"));
    ok $c->{ok}, "nginx -t accepts $ok" or diag $c->{output};
}

for my $bad (['redis-cluster://127.0.0.1:7000/1', qr/database 0 only/],
             ['redis-cluster://127.0.0.1:7000,,127.0.0.1:7001', qr/empty host/],
             ['redis-cluster://', qr/invalid redis url/],
             ['redis-cluster://127.0.0.1:99999', qr/invalid redis url/],
             ['redis-cluster://127.0.0.1:7000 "prefix=ak{x}:"', qr/"prefix" must not contain/],
             ['redis-cluster://127.0.0.1:7000 tls_verify=off', qr/needs a rediss/],
             ['redis-cluster://u:pw@127.0.0.1:7000/2', qr/database 0 only/]) {
    my ($url, $re) = @$bad;
    my $c = ApiKeyTest::Nginx->check_config(http => conf_with("api_key_redis $url;"));
    ok !$c->{ok}, "nginx -t refuses $url";
    my $line = ApiKeyTest::Nginx::line_of($c, qr/THE LINE/);
    like $c->{output}, qr/\[emerg\].*in \Q$c->{conf_path}\E:$line/, '... with file:line';
    like $c->{output}, $re, '... saying why';
    unlike $c->{output}, qr/pw\@|s3cret/, '... without the password';
}

# --- three masters -----------------------------------------------------------

my $c = ApiKeyTest::Cluster->start(masters => 3,
                                   config => ['notify-keyspace-events Kghx']);
note sprintf 'cluster ready in %.1f s', $c->start_secs;
my $url = $c->url(nodes => [($c->nodes)[1]]);   # one seed is enough
my $rt = $c->router;

my $n = ApiKeyTest::Nginx->start(workers => 2, http => <<"EOT" . echo_server());
    api_key_zone  keys:4m ttl=60s negative_ttl=60s;
    api_key_redis $url timeout=1s keyspace_events=on;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT
my $port = $n->port;
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }
sub st  { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }

my (%per_master, @keys);
my @map = @{ $c->slot_map };
sub master_of_slot {
    my ($s) = @_;
    for (@map) { return $_->[2] if $s >= $_->[0] && $s <= $_->[1] }
    return 0;
}
for my $i (1 .. 1000) {
    # random_key() would track it too: the final check looks for every
    # tracked key in the (debug) log, 50 of them are enough
    my $k = $i <= 50 ? random_key()
          : join '', 'bulk', map { sprintf '%08x', int rand 2**32 } 1 .. 4;
    my $h;
    if ($i <= 50) {
        $h = add_key($rt, $k, id => "k$i", owner => "o$i");
    } else {
        $h = key_hash($k);
        $rt->cmd('HSET', "apikey:$h", id => "k$i", owner => "o$i");
    }
    my $slot = ApiKeyTest::Cluster::slot_of("apikey:$h");
    $per_master{ master_of_slot($slot) }++;
    push @keys, [$k, "o$i", "apikey:$h"];
}
is scalar(keys %per_master), 3, 'the 1,000 records are on all three masters';
note join ', ', map { "$_: $per_master{$_}" } sort keys %per_master;

my $t0 = time;
my @bad;
for my $k (@keys) {
    my $res = get($k->[0]);
    push @bad, st($res) unless st($res) eq '200 ok';
}
is scalar(@bad), 0, 'all 1,000 keys verify' or diag "@bad[0 .. 4]";
note sprintf '1,000 first reads in %.2f s', time - $t0;

is ApiKeyTest::Cluster::slot_of('foo'), $c->keyslot('foo'), 'the test computes slots as redis does';
my $hg = 0;
$hg += hgetall_calls($_) for $c->masters;
cmp_ok $hg, '>=', 1000, "the masters answered the reads ($hg HGETALL)";
cmp_ok $hg, '<=', 1000 + 20, '... each record read about once (cached after)';

is st(get(random_key())), '401 unknown', 'an unknown key is unknown';

# the connections: a command connection per master (each worker read keys
# of every master) and an events connection per master, per worker
my $mt = http_get($port, '/metrics')->body;
my ($cc) = $mt =~ /^api_key_redis_connects_total\{connection="commands"\} (\d+)/m;
my ($ec) = $mt =~ /^api_key_redis_connects_total\{connection="events"\} (\d+)/m;
is $cc, 6, 'metrics: 6 command connections (3 masters, 2 workers)';
is $ec, 6, 'metrics: 6 events connections';
like $mt, qr/^api_key_redis_connected\{connection="events"\} 1/m, 'metrics: events connected';

# --- keyspace notifications on every master ----------------------------------

my %done;
for my $k (@keys) {
    my $m = master_of_slot(ApiKeyTest::Cluster::slot_of($k->[2]));
    next if $done{$m};
    $done{$m} = $k;
}
is scalar(keys %done), 3, 'a record on each master';
for my $m (sort keys %done) {
    my $k = $done{$m};
    is st(get($k->[0])), '200 ok', "key on master $m: cached";
    $rt->cmd('HSET', $k->[2], 'status', 'revoked');
    my $last;
    ok wait_until(sub { $last = st(get($k->[0])); $last =~ /revoked/ }, timeout => 5),
        "an HSET on master $m is seen at once (keyspace event; ttl 60s)"
        or diag $last;
}

# --- the events channel: a PUBLISH on any node reaches the subscriber --------

for my $m ($c->nodes) {
    my $k = pop @keys;
    is st(get($k->[0])), '200 ok', 'cached';
    $m->cmd('PUBLISH', 'apikey:events', 'revoke ' . substr($k->[2], 7));
    my $last;
    ok wait_until(sub { $last = st(get($k->[0])); $last =~ /revoked/ }, timeout => 5),
        '"revoke" published on node ' . $m->port . ' reaches the workers'
        or diag $last;
}

# --- a quota: its leases run on the counter's master --------------------------

my $qk = random_key();
my $qh = add_key($rt, $qk, id => 'quota1', owner => 'q', quota => '5/day');
my $qmark = $n->log_mark;
# (20 requests: a request that finds no count yet may get 429 before a
# later one gets the lease's counts, README "Rate limits and quotas"; so
# count, do not expect an order)
my @codes = map { Time::HiRes::sleep(0.02); get($qk)->status } 1 .. 20;
my $admitted = grep { $_ == 200 } @codes;
if ($n->error_log_since($qmark) =~ /quota lease for key id "quota1" timed out/) {
    # a lease that takes longer than timeout= (seen under ASan with the
    # test files running 4 at a time) is handled as an outage, README "Rate
    # limits and quotas": each of the 2 workers may admit its quota_offline
    # share, the late answer's grant is lost for the window, and what is
    # denied is quota_exceeded
    my @other = grep { $_ != 200 && $_ != 429 } @codes;
    ok !@other,
       "a quota of 5/day on a cluster, a lease timed out: $admitted admitted, the others 429 (never a 5xx)"
        or diag "@codes";
} else {
    ok $admitted == 5 && !grep({ $_ != 200 && $_ != 429 } @codes),
       "a quota of 5/day on a cluster: $admitted of 20 admitted, the others 429"
        or diag "@codes";
}

# --- a cluster-wide rate on a cluster: its GCRA state is on the record's
# master (the hash tag), leased with EVAL there -------------------------------

my $rk = random_key();
my $rh = add_key($rt, $rk, id => 'rate1', owner => 'r', rate => '2/m', burst => 1,
                 rate_scope => 'cluster');
# (the tokens come in leases: a request may find none yet and get 429
# before a later one gets the lease, so count, do not expect an order)
@codes = map { Time::HiRes::sleep(0.1); get($rk)->status } 1 .. 10;
is scalar(grep { $_ == 200 } @codes), 2,
   'rate 2/m burst 1, rate_scope=cluster, on a cluster: 2 of 10 admitted in a second'
    or diag "@codes";
is scalar(grep { $_ != 200 && $_ != 429 } @codes), 0, '... the others 429';
my $rname = "apikey:rate:{apikey:$rh}";
ok $c->cmd_for_key("apikey:$rh", 'EXISTS', $rname),
   '... its state is on the master of the record\'s slot';

# --- rediss-cluster://: every node over TLS ------------------------------------

{
    my $pki = ApiKeyTest::Tls->new;
    my $tc = ApiKeyTest::Cluster->start(masters => 3, tls => $pki->redis_tls,
                                        config => ['notify-keyspace-events Kghx']);
    my $trt = $tc->router;
    my $ca = $pki->ca;
    my $tn = ApiKeyTest::Nginx->start(workers => 1, http => <<"EOT" . echo_server());
    api_key_zone  keys:1m ttl=60s negative_ttl=60s;
    api_key_redis ${\ $tc->url(tls => 1) } tls_ca=$ca timeout=1s keyspace_events=on;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
    my $tst = sub {
        my $x = http_get($tn->port, '/', headers => { 'X-API-Key' => $_[0] });
        return $x->status . ' ' . ($x->header('X-Status') // '');
    };
    my (%on, @tk);
    while (keys(%on) < 3) {
        my $k = random_key();
        my $h = add_key($trt, $k, owner => 'tls');
        $on{ $tc->master_for_slot(ApiKeyTest::Cluster::slot_of("apikey:$h"))->port } = 1;
        push @tk, [$k, "apikey:$h"];
    }
    is $tst->($_->[0]), '200 ok', 'rediss-cluster://: a key verifies (certificates checked)'
        for @tk;
    is $tst->(random_key()), '401 unknown', 'rediss-cluster://: unknown';
    $trt->cmd('HSET', $tk[-1][1], 'status', 'revoked');
    my $last;
    ok wait_until(sub { ($last = $tst->($tk[-1][0])) =~ /revoked/ }, timeout => 5),
        'rediss-cluster://: keyspace events over TLS' or diag $last;
}

done_testing;

