# SPDX-License-Identifier: BSD-2-Clause
# Debug logging: with `error_log ... debug` (Debian's nginx is built
# --with-debug, so is the module built against its nginx-dev), a maintainer
# can follow a request step by step: where the key came from, the cache's
# answer, the Redis read (started, joined by a concurrent request, answered),
# the wake of the waiting requests, a quota lease, an applied event and the
# decision.  Every such line names the key id (the record's, or the first 12
# hex digits of the hash), never the key nor more of its hash; the harness's
# final check also fails on a raw key in any log line.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events qw(publish);

require_module();

my $V = `$ApiKeyTest::NGINX -V 2>&1`;
plan skip_all => "this nginx is not built --with-debug: no debug lines "
    . "to check" unless $V =~ /--with-debug/;

my $r = ApiKeyTest::Redis->start;

my $n = ApiKeyTest::Nginx->start(redis => $r, workers => 1,
    vars => { REDIS => $r->port }, http => <<'EOT' . echo_server());
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=3s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        api_key_source header:X-API-Key query:api_key;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
my $port = $n->port;

sub hdr { [ 'X-API-Key' => $_[0] ] }

# module lines since a mark, the "api_key: " ones only
sub lines_since {
    my ($mark) = @_;
    return grep { /\[debug\].*api_key: / } split /\n/, $n->error_log_since($mark);
}

sub has_line {
    my ($lines, $re, $what) = @_;
    ok((grep { $_ =~ $re } @$lines), $what)
        or diag "no line matching $re among:\n" . join("\n", @$lines);
}

my @keys;

# --- a miss read from Redis by two concurrent requests, then a hit ----------
my $k = random_key('dbg');
push @keys, $k;
my $h = add_key($r, $k, owner => 'dbg', id => 'dbg-key-1');

my $mark = $n->log_mark;
my $batch;
{
    my $g = $r->pause_guard;
    $batch = http_batch($port, [ map { { path => "/c$_", headers => hdr($k) } } 1 .. 2 ]);
    sleep 0.5;
}
my @res = $batch->wait(timeout => 10);
is(scalar(grep { $_->status == 200 } @res), 2, 'two concurrent requests: 200');
my $res = http_get($port, '/again', headers => hdr($k));
is($res->status, 200, 'then a cached request: 200');

my @l = lines_since($mark);
has_line(\@l, qr/api_key: key from header:X-API-Key/i, 'the source the key came from');
has_line(\@l, qr/api_key: cache miss/, 'a cache miss');
has_line(\@l, qr/api_key: read started/, 'a read started');
has_line(\@l, qr/api_key: read joined/, 'the concurrent request joined it');
has_line(\@l, qr/api_key: read answered/, 'the read answered');
has_line(\@l, qr/api_key: wake 2 request/, 'both waiting requests woken');
has_line(\@l, qr/api_key: cache hit.*hash [0-9a-f]{8}\b/, 'a cache hit, with 8 hex digits of the hash');
has_line(\@l, qr/api_key: decision ok.*dbg-key-1/, 'the decision, with the key id');

# --- a query key; an unknown key ---------------------------------------------
my $q = random_key('dbgq');
push @keys, $q;
$mark = $n->log_mark;
$res = http_get($port, "/q?api_key=$q");
is($res->status, 401, 'an unknown query key: 401');
@l = lines_since($mark);
has_line(\@l, qr/api_key: key from query:api_key/, 'the query source');
has_line(\@l, qr/api_key: decision unknown/, 'decision unknown');

# --- a quota lease ------------------------------------------------------------
my $kq = random_key('dbglease');
push @keys, $kq;
add_key($r, $kq, owner => 'q', quota => '100/day');
$mark = $n->log_mark;
$res = http_get($port, '/lease', headers => hdr($kq));
is($res->status, 200, 'a key with a quota: 200');
@l = lines_since($mark);
has_line(\@l, qr/api_key: lease sent/, 'a lease sent');
has_line(\@l, qr/api_key: lease answered/, 'the lease answered');

# --- an event -----------------------------------------------------------------
$mark = $n->log_mark;
publish($r, "revoke $h");
ApiKeyTest::wait_until(sub { grep { /event applied/ } lines_since($mark) }, timeout => 5);
@l = lines_since($mark);
has_line(\@l, qr/api_key: event applied: revoke/, 'the revoke event applied');
$res = http_get($port, '/revoked', headers => hdr($k));
is($res->status, 401, 'the revoked key: 401');

# --- no module debug line carries a key, nor more of its hash than the id --
my @all = grep { /\[debug\].*api_key: / } split /\n/, $n->error_log;
cmp_ok(scalar @all, '>', 20, 'the module wrote debug lines');
my @secret = (@keys, map { substr(key_hash($_), 0, 13) } @keys);
my @leaks;
for my $line (@all) {
    push @leaks, $line if grep { index(lc $line, lc $_) >= 0 } @secret;
}
is(scalar @leaks, 0, 'no module debug line has a key or 13+ digits of its hash')
    or diag join("\n", @leaks[0 .. ($#leaks < 9 ? $#leaks : 9)]);

done_testing;
