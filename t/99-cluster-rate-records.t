# SPDX-License-Identifier: BSD-2-Clause
# Cluster-wide rate (rate_scope): the record field and the zone default on
# two nginx nodes sharing one Redis.
#   - a bad rate_scope value makes the key bad_record (401), with one
#     warning per version of the record (three requests: one line; the
#     record changed: one more), naming the key id and the field;
#   - a denied request consumes nothing: scope_denied requests on both
#     nodes, then the key's whole cluster-wide bucket is still there;
#   - api_key_zone rate_scope=cluster is the default of records without the
#     field; rate_scope=node in a record keeps its rate per node;
#   - nginx -t refuses a bad rate_scope= with the file and line;
#   - apikeyctl create --rate-scope stores the field and refuses a bad one.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;
use ApiKeyTest::Cli qw(run_cli);

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s negative_ttl=300ms;
    api_key_zone  clus:1m ttl=60s rate_scope=cluster;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            try_files /ok.txt =404;
        }
        location /admin/ {
            api_key keys;
            api_key_scope admin;
            try_files /ok.txt =404;
        }
        location /c/ {
            api_key clus;
            try_files /ok.txt =404;
        }
    }
EOT

my @nodes = map {
    my $n = ApiKeyTest::Nginx->start(http => $http, workers => 1,
        redis => $r, redis_clients => 2 * $_, vars => { REDIS => $r->port });
    static_site($n);
    for my $d ('admin', 'c') {
        mkdir $n->dir . "/html/$d";
        ApiKeyTest::spew($n->dir . "/html/$d/ok.txt", "ok\n", 0644);
    }
    $n;
} 1 .. 2;
my @ports = map { $_->port } @nodes;

sub st {
    my ($res) = @_;
    return $res->status . ' ' . ($res->header('X-Status') // '-');
}

# n requests alternating between the nodes: their statuses
sub alternate {
    my ($key, $n, $path) = @_;
    return join ' ', map {
        http_get($ports[ $_ % 2 ], $path // '/', headers => xkey($key))->status
    } 0 .. $n - 1;
}

sub count_of {
    my ($status, $list) = @_;
    return scalar(() = $list =~ /\b$status\b/g);
}

# --- a bad rate_scope: bad_record, one warning per record version ----------------
{
    my $k = random_key('badscope');
    my $mark = $nodes[0]->log_mark;
    add_key($r, $k, id => 'bad-scope', rate => '5/s', rate_scope => 'global');
    my @st = map { st(http_get($ports[0], '/', headers => xkey($k))) } 1 .. 3;
    is("@st", join(' ', ('401 bad_record') x 3), 'rate_scope=global: bad_record');
    sleep 0.4;      # past negative_ttl: read again, the same version
    is(st(http_get($ports[0], '/', headers => xkey($k))), '401 bad_record',
       '... also when read again');
    my @w = $nodes[0]->error_log_since($mark) =~ /^.*\[warn\].*bad-scope.*$/mg;
    is(scalar @w, 1, 'one warning for that version of the record')
        or diag join "\n", @w;
    like($w[0] // '', qr/field "rate_scope": expected node or cluster, not "global"/,
         '... naming the field and the value');

    # a new version of the record, still bad: one more warning
    $mark = $nodes[0]->log_mark;
    $r->cmd('HSET', 'apikey:' . key_hash($k), 'rate_scope', 'Cluster');
    sleep 0.4;
    http_get($ports[0], '/', headers => xkey($k)) for 1 .. 3;
    @w = $nodes[0]->error_log_since($mark) =~ /^.*\[warn\].*bad-scope.*$/mg;
    is(scalar @w, 1, 'a changed record: one more warning') or diag join "\n", @w;

    # fixed: accepted
    $r->cmd('HSET', 'apikey:' . key_hash($k), 'rate_scope', 'cluster');
    sleep 0.4;
    is(st(http_get($ports[0], '/', headers => xkey($k))), '200 ok',
       'rate_scope=cluster: accepted');
}

# --- a denied request consumes nothing ------------------------------------------
{
    my $k = random_key('denied');
    add_key($r, $k, rate => '3/m', rate_scope => 'cluster', scopes => 'read');
    my $s = alternate($k, 6, '/admin/');
    is($s, join(' ', (403) x 6), 'scope_denied on both nodes');
    $s = alternate($k, 8);
    is(count_of(200, $s), 3, "then the whole bucket of 3, across the nodes ($s)");
}

# --- the zone's default, and a record's own scope --------------------------------
{
    my $k = random_key('zonedef');
    add_key($r, $k, rate => '2/m');
    my $s = alternate($k, 6, '/c/');
    is(count_of(200, $s), 2, "zone rate_scope=cluster: 2/m across the nodes ($s)");

    my $k2 = random_key('nodeown');
    add_key($r, $k2, rate => '2/m', rate_scope => 'node');
    $s = alternate($k2, 6, '/c/');
    is(count_of(200, $s), 4, "a record's rate_scope=node: 2/m on each node ($s)");

    my $k3 = random_key('nodedef');
    add_key($r, $k3, rate => '2/m');
    $s = alternate($k3, 6);
    is(count_of(200, $s), 4, "the default zone (node): 2/m on each node ($s)");
}

# --- nginx -t ---------------------------------------------------------------------
for my $bad ('rate_scope=global', 'rate_scope=', 'rate_scope=Cluster') {
    my $c = ApiKeyTest::Nginx->check_config(http => <<"EOT");
    api_key_zone  keys:1m $bad;
    api_key_redis redis://127.0.0.1:6379;
EOT
    my $line = ApiKeyTest::Nginx::line_of($c, qr/api_key_zone/);
    ok(!$c->{ok}, "nginx -t refuses $bad");
    like($c->{output}, qr/invalid "\Q$bad\E": expected node or cluster in \Q$c->{conf_path}\E:$line/,
         '... naming the value, the file and the line');
}

# --- apikeyctl ----------------------------------------------------------------------
{
    my @base = ('--redis', 'redis://127.0.0.1:' . $r->port);
    my $c = run_cli(args => [@base, 'create', '--rate', '10/s', '--rate-scope',
                             'cluster', '--id', 'cli-scope']);
    is($c->{exit}, 0, 'apikeyctl create --rate-scope cluster') or diag $c->{err};
    my $hex = $r->cmd('GET', 'apikey:id:cli-scope');
    is($r->cmd('HGET', "apikey:$hex", 'rate_scope'), 'cluster', '... stores the field');
    for my $args ([qw(create --rate 10/s --rate-scope global)],
                  [qw(create --rate-scope cluster)],
                  [qw(set cli-scope rate_scope=everywhere)]) {
        $c = run_cli(args => [@base, @$args]);
        is($c->{exit}, 2, "apikeyctl @$args: exit 2");
        like($c->{err}, qr/rate.scope/, '... naming the field');
    }
    is($r->cmd('HGET', "apikey:$hex", 'rate_scope'), 'cluster', 'the record is unchanged');
}

done_testing;
