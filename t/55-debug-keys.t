# SPDX-License-Identifier: BSD-2-Clause
# The module's debug lines of the key sources and the decision (issue 11,
# item 6): at "error_log ... debug" (Debian's nginx is built --with-debug) a
# request says where its key was found ("api_key: key from SOURCE", the
# source as configured), what the cache answered ("api_key: cache
# hit|stale|negative|miss, key id ..., hash XXXXXXXX", at most 8 hex digits
# of the hash) and the outcome ("api_key: decision STATUS, key id ...").
# None of them carries the key, nor more than 8 hex digits of its hash.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        api_key_source header:X-API-Key bearer query:api_key cookie:ak;
        add_header X-Status $api_key_status always;

        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;

my %k = map { $_ => random_key("dbg$_") } qw(hdr bearer query cookie unk);
my %h = map { $_ => key_hash($k{$_}) } keys %k;
add_key($r, $k{$_}, id => "id-$_", owner => "o-$_") for qw(hdr bearer query cookie);

# the module's lines ("api_key: ...") a request wrote, in order
sub module_lines {
    my ($text) = @_;
    return map { /\[debug\].*?(api_key: .*)$/ ? $1 : () } split /\n/, $text;
}

sub request {
    my ($path, $expect, $what, @h) = @_;
    my $mark = $n->log_mark;
    my $res = http_get($port, $path, headers => [@h]);
    is($res->status, $expect, "$what: $expect") or diag $res->as_string;
    my @l;
    wait_until(sub { @l = module_lines($n->error_log_since($mark));
                     grep { /^api_key: decision / } @l }, timeout => 5);
    return @l;
}

sub has_line {
    my ($lines, $re, $what) = @_;
    ok(scalar(grep { $_ =~ $re } @$lines), $what)
        or diag join("\n", 'lines:', @$lines);
}

# --- each source, first a miss, then a hit -----------------------------------
my @cases = (
    [hdr    => 'header:x-api-key', ['X-API-Key' => $k{hdr}], '/'],
    [bearer => 'authorization:Bearer', [Authorization => "Bearer $k{bearer}"], '/'],
    [query  => 'query:api_key', [], "/?a=1&api_key=$k{query}"],
    [cookie => 'cookie:ak', [Cookie => "x=1; ak=$k{cookie}"], '/'],
);

for my $c (@cases) {
    my ($tag, $source, $hdrs, $path) = @$c;
    my $prefix = substr($h{$tag}, 0, 8);

    my @l = request($path, 200, "$tag, first request", @$hdrs);
    has_line(\@l, qr/^api_key: key from \Q$source\E$/,
             "$tag: \"api_key: key from $source\"");
    has_line(\@l, qr/^api_key: cache miss, hash \Q$prefix\E$/,
             "$tag: \"api_key: cache miss\" with 8 hex digits of the hash");
    has_line(\@l, qr/^api_key: decision ok, key id "id-\Q$tag\E"$/,
             "$tag: \"api_key: decision ok\" with the key id");

    @l = request($path, 200, "$tag, second request", @$hdrs);
    has_line(\@l, qr/^api_key: cache hit, hash \Q$prefix\E$/,
             "$tag: then \"api_key: cache hit\"");
    has_line(\@l, qr/^api_key: decision ok, key id "id-\Q$tag\E"$/,
             "$tag: then \"api_key: decision ok\"");
}

# --- unknown, missing, malformed ----------------------------------------------
{
    my @l = request('/', 401, 'unknown key', 'X-API-Key' => $k{unk});
    has_line(\@l, qr/^api_key: decision unknown, key id ""$/, 'unknown: decision line');

    @l = request('/', 401, 'unknown key again', 'X-API-Key' => $k{unk});
    has_line(\@l, qr/^api_key: cache negative, hash \Q${\ substr($h{unk}, 0, 8) }\E$/,
             'unknown again: "api_key: cache negative"');

    @l = request('/', 401, 'no key');
    ok(!grep({ /^api_key: key from / } @l), 'no key: no "key from" line');
    has_line(\@l, qr/^api_key: decision missing, key id ""$/, 'no key: decision missing');

    @l = request('/', 401, 'malformed key', 'X-API-Key' => "bad key");
    has_line(\@l, qr/^api_key: key from header:x-api-key$/, 'malformed: key from line');
    ok(!grep({ /^api_key: cache / } @l), 'malformed: no cache line');
    has_line(\@l, qr/^api_key: decision malformed, key id ""$/, 'malformed: decision line');
}

# --- no key, no more than 8 hex digits of a hash --------------------------------
{
    my @l = module_lines($n->error_log);
    ok(scalar(grep { /^api_key: (key from|cache|decision) / } @l),
       'the module wrote its debug lines (' . scalar(@l) . ' module lines)');
    my @leak = grep { my $line = $_; grep { index($line, $_) >= 0 } values %k } @l;
    is_deeply(\@leak, [], 'no module line carries a key');
    my @long = grep { my $line = $_;
                      grep { index($line, substr($_, 0, 9)) >= 0 } values %h } @l;
    is_deeply(\@long, [], 'no module line carries more than 8 hex digits of a hash');
}

done_testing();
