# SPDX-License-Identifier: BSD-2-Clause
# The raw key never reaches a log, Redis or a response: after requests of
# every outcome through every source (strip on), the access log (with
# $request and $request_uri) and the error log at debug level contain no key,
# except nginx core's request-parser debug lines (ApiKeyTest::CORE_DEBUG_PREFIXES:
# "http header: ", "http request line: ", "http args: ", "http uri: ",
# "http exten: "); Redis (MONITOR) never receives
# a key; no response contains the key; the metrics page (if the module has
# api_key_metrics) contains no key.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $metrics_loc = <<'EOT';
        location = /metrics { api_key off; api_key_metrics; }
EOT
my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=300ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        api_key_source header:X-API-Key bearer query:api_key cookie:ak;
        add_header X-Status $api_key_status always;
        add_header X-Id $api_key_id always;
        proxy_set_header X-Owner $api_key_owner;
        proxy_set_header X-Key-Id $api_key_id;

        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /cs/ {
            api_key_format checksum prefix=ak;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /open/ {
            api_key_fail open;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /json/ {
            error_page 401 503 = @json;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location @json {
            default_type application/json;
            return 401 '{"error":"$api_key_status","id":"$api_key_id"}';
        }
%%METRICS%%
    }
EOT

my $has_metrics = ApiKeyTest::Nginx->check_config(
    http => $http, vars => { REDIS => $r->port, METRICS => $metrics_loc })->{ok};
note $has_metrics ? 'api_key_metrics available' : 'no api_key_metrics: not checked';

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
    vars => { REDIS => $r->port, METRICS => $has_metrics ? $metrics_loc : '' });
my $port = $n->port;
my $mon = $r->monitor;

my (@keys, @responses);
sub K { my $k = random_key($_[0]); push @keys, $k; $k }
sub req {
    my ($path, $expect, $what, @h) = @_;
    my $res = http_get($port, $path, headers => [@h]);
    push @responses, [$res, $what];
    is($res->status, $expect, "$what: $expect") or diag $res->as_string;
    return $res;
}

my $now = time;
my %k = map { $_ => K($_) } qw(hdr bearer query cookie unk_h unk_q unk_c
                               expired revoked strtype badstat badexp json);
add_key($r, $k{$_}, owner => "o-$_") for qw(hdr bearer query cookie);
add_key($r, $k{expired}, owner => 'e', expires_at => $now - 5);
add_key($r, $k{revoked}, owner => 'r', status => 'revoked');
add_key($r, $k{strtype}, -string => 'x');
add_key($r, $k{badstat}, owner => 'b', status => 'foo');
add_key($r, $k{badexp}, owner => 'b', expires_at => 'abc');
my $cs_good = checksum_key('ak');
push @keys, $cs_good;
add_key($r, $cs_good, owner => 'cs');
my $cs_bad = substr($cs_good, 0, 10) . (substr($cs_good, 10, 1) eq 'Z' ? 'Y' : 'Z') . substr($cs_good, 11);
push @keys, $cs_bad;
my $long = 'tkLONGX' . random_base62(250);
push @keys, $long;

# every source, twice (the second time from the cache)
for (1, 2) {
    req('/a', 200, 'ok, header', 'X-API-Key' => $k{hdr});
    req('/a', 200, 'ok, bearer', Authorization => "Bearer $k{bearer}");
    req("/a?x=1&api_key=$k{query}&y=2", 200, 'ok, query');
    req('/a', 200, 'ok, cookie', Cookie => "s=1; ak=$k{cookie}; t=2");
}
req('/a', 401, 'unknown, header', 'X-API-Key' => $k{unk_h});
req("/a?api_key=$k{unk_q}", 401, 'unknown, query');
req('/a', 401, 'unknown, cookie', Cookie => "ak=$k{unk_c}");
req('/a', 401, 'expired', 'X-API-Key' => $k{expired});
req('/a', 401, 'revoked', 'X-API-Key' => $k{revoked});
req('/a', 401, 'bad_record (type)', 'X-API-Key' => $k{strtype});
req('/a', 401, 'bad_record (status)', 'X-API-Key' => $k{badstat});
req('/a', 401, 'bad_record (expires_at)', Authorization => "Bearer $k{badexp}");
req('/a', 401, 'malformed (length)', 'X-API-Key' => $long);
req('/cs/', 200, 'checksum ok', 'X-API-Key' => $cs_good);
req("/cs/?api_key=$cs_bad", 401, 'checksum malformed, query');
req('/json/', 401, 'error_page', 'X-API-Key' => $k{json});

my @monitor = $mon->commands(0.3);
$mon->close;

# Redis cannot answer: unavailable, unchecked
{
    my $g = $r->pause_guard;
    my ($u1, $u2, $u3) = (K('unav_h'), K('unav_q'), K('unch'));
    req('/a', 503, 'unavailable, header', 'X-API-Key' => $u1);
    req("/a?api_key=$u2", 503, 'unavailable, query');
    req('/open/', 200, 'unchecked, fail open', 'X-API-Key' => $u3);
    req('/a', 200, 'ok from the cache while Redis is paused', 'X-API-Key' => $k{hdr});
}
$r->stop;
req('/a', 503, 'Redis down, cookie', Cookie => 'ak=' . K('down_c'));
req('/json/', 401, 'Redis down, error_page', 'X-API-Key' => K('down_json'));

my $metrics = $has_metrics ? http_get($port, '/metrics')->body : '';
sleep 0.2;    # let the last log lines be written

# --- responses ---------------------------------------------------------------
{
    my @echo;
    for my $x (@responses) {
        my ($res, $what) = @$x;
        push @echo, $what if grep { index($res->raw, $_) >= 0 } @keys;
    }
    is_deeply(\@echo, [], 'no response (headers, body, upstream echo) contains a key');
}

# --- access log --------------------------------------------------------------
{
    my $log = $n->access_log;
    ok(length $log, 'the access log has lines');
    like($log, qr/st=ok/, 'the access log has the statuses');
    my @leak = grep { my $l = $_; grep { index($l, $_) >= 0 } @keys } split /\n/, $log;
    is_deeply(\@leak, [], 'the access log ($request, $request_uri, variables) contains no key');
}

# --- error log -----------------------------------------------------------------
{
    my $log = $n->error_log;
    my @mod = grep { /api_key/ } split /\n/, $log;
    ok(scalar @mod, 'the module wrote lines to the error log (' . scalar(@mod) . ')');
    ok(scalar(grep { /\[debug\]/ } split /\n/, $log), 'the error log is at debug level');
    my @leak = key_leaks($log, @keys);
    is_deeply(\@leak, [], 'the error log contains no key outside nginx core\'s '
                          . 'request-parser debug lines')
        or diag 'excluded prefixes: ' . join(', ', map { "'$_'" } CORE_DEBUG_PREFIXES);
    my @core = grep { my $l = $_; grep { index($l, $_) >= 0 } @keys } split /\n/, $log;
    note scalar(@core) . ' core parser debug lines carry a key (expected at debug level)';
}

# --- Redis ---------------------------------------------------------------------
{
    ok(scalar(grep { $_->[0] eq 'hgetall' } @monitor), 'MONITOR saw the module\'s HGETALLs');
    my @leak = grep { my $c = join ' ', @$_; grep { index($c, $_) >= 0 } @keys } @monitor;
    is_deeply(\@leak, [], 'Redis never received a raw key (MONITOR)');
}

# --- metrics -------------------------------------------------------------------
SKIP: {
    skip 'no api_key_metrics', 2 unless $has_metrics;
    ok(length $metrics, 'metrics page');
    ok(!grep({ index($metrics, $_) >= 0 } @keys), 'the metrics contain no key');
}

is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;

done_testing;
