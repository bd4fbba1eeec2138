# SPDX-License-Identifier: BSD-2-Clause
# contrib/grafana-dashboard.json is built on what the module exports: every
# PromQL query in it (panel targets, template variables) names at least one
# api_key_* metric, and every metric it names is a family of the metrics
# page of a running nginx (with api_key_metrics labels=plan, after requests
# of every kind, so every family has samples); every label it groups or
# filters by is a label of the page.
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use lib 't/lib';
use ApiKeyTest;

require_module();

my $file = 'contrib/grafana-dashboard.json';
my $dash = JSON::PP::decode_json(slurp($file));
ok($dash->{panels} && @{ $dash->{panels} }, "$file: has panels");

# every query: targets' "expr", template variables' "query"/"definition"
my @queries;
sub walk {
    my ($x, $key) = @_;
    if (ref $x eq 'HASH') {
        walk($x->{$_}, $_) for sort keys %$x;
    } elsif (ref $x eq 'ARRAY') {
        walk($_, $key) for @$x;
    } elsif (defined $x && defined $key
             && ($key eq 'expr' || $key eq 'definition'
                 || ($key eq 'query' && $x =~ /api_key_|label_values/))) {
        push @queries, $x;
    }
}
walk($dash);
ok(@queries >= 10, scalar(@queries) . ' queries found');

# the page, with every family present
my $r = ApiKeyTest::Redis->start;
my $n = ApiKeyTest::Nginx->start(http => <<'EOT', redis => $r,
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; empty_gif; }
        location = /metrics { api_key_metrics labels=plan; }
    }
EOT
                                 vars => { REDIS => $r->port });
my $k = random_key('g');
add_key($r, $k, plan => 'pro');
ok(wait_until(sub { http_get($n->port, '/', headers => { 'X-API-Key' => $k })->status == 200 },
              timeout => 10), 'a request of a key with a plan');
http_get($n->port, '/', headers => { 'X-API-Key' => random_key('u') });
my $page = http_get($n->port, '/metrics')->body;
my %family = map { $_ => 1 } $page =~ /^# TYPE (\S+) /mg;
my %histogram = map { $_ => 1 } $page =~ /^# TYPE (\S+) histogram$/mg;
my %label = map { $_ => 1 } $page =~ /[{,]([a-z_]+)="/g;
ok($family{api_key_requests_by_plan_total}, 'the page has the by-plan family');

# PromQL words that are not metrics or labels
my %not_metric = map { $_ => 1 } qw(sum rate irate increase by without
    histogram_quantile min max avg count label_values on ignoring);

my (%named, @bad);
for my $q (@queries) {
    my @m = $q =~ /\b(api_key_[a-z_]+)\b/g;
    ok(@m, "names an exported metric: $q");
    for my $m (@m) {
        my $fam = $m;
        if (!$family{$fam}) {
            ($fam = $m) =~ s/_(bucket|sum|count)$//;
            $fam = $m unless $histogram{$fam};
        }
        $named{$fam} = 1;
        push @bad, "$m (in: $q)" unless $family{$fam};
    }
    # labels grouped by, filtered on, or asked for
    my @labels;
    while ($q =~ /\bby \(([^)]*)\)/g) { push @labels, split /\s*,\s*/, $1 }
    while ($q =~ /[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)/g) { push @labels, $1 }
    push @labels, $1 while $q =~ /label_values\([^,]+,\s*([a-z_]+)\)/g;
    for my $l (@labels) {
        next if $l eq 'le';
        push @bad, "label $l (in: $q)" unless $label{$l};
    }
}
is_deeply(\@bad, [], 'every metric and label the dashboard uses is exported')
    or diag join "\n", @bad;
ok($named{api_key_requests_total} && $named{api_key_usage_writes_total}
   && $named{api_key_redis_read_seconds},
   'the dashboard shows requests, usage writes and the Redis latency');

done_testing;
