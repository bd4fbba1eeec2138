#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# One key in two api_key_zones of one nginx holding two versions of its
# record (changed in Redis without an event: each zone keeps the version
# it read), asked of by turns: each request is judged by its own zone's
# version, never by the view the worker keeps of the other's (the worker
# keeps one view per key, whichever zone gave it).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  one:1m ttl=600s;
    api_key_zone  two:1m ttl=600s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;

        location /one/ {
            api_key one;
            try_files /ok.txt =404;
        }
        location /two/ {
            api_key two;
            try_files /ok.txt =404;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, redis_clients => 2,
                                 vars => { REDIS => $r->port });
static_site($n);
my $port = $n->port;

sub get {
    my ($zone, $k, $from) = @_;
    return http_get($port, "/$zone/x", headers => xkey($k), from => $from);
}

sub is_answer {
    my ($res, $status, $owner, $what) = @_;
    is($res->status, $status, "$what: $status") or diag $res->as_string;
    is($res->header('X-Owner'), $owner, "$what: owner $owner");
}

my $k = random_key('zones');

# version 1 read by zone one, then version 2 (no event) read by zone two
add_key($r, $k, owner => 'v1', ips => '127.0.0.1/32',
        referrers => 'one.example.com');
my %ref1 = (Referer => 'https://one.example.com/');
is(http_get($port, '/one/x', headers => xkey($k, %ref1))->status, 200,
   'zone one reads version 1');
add_key($r, $k, owner => 'v2', ips => '127.0.0.2/32',
        referrers => 'two.example.com');
my %ref2 = (Referer => 'https://two.example.com/');
my $res = http_get($port, '/two/x', headers => xkey($k, %ref2), from => '127.0.0.2');
is_answer($res, 200, 'v2', 'zone two reads version 2');

for my $round (1 .. 3) {
    for my $zone (qw(one one two two one two one two two one)) {
        my ($ok, $no, $owner, $ref, $other_ref) = $zone eq 'one'
            ? ('127.0.0.1', '127.0.0.2', 'v1', \%ref1, \%ref2)
            : ('127.0.0.2', '127.0.0.1', 'v2', \%ref2, \%ref1);
        is_answer(http_get($port, "/$zone/x", headers => xkey($k, %$ref), from => $ok),
                  200, $owner, "round $round, zone $zone from $ok");
        $res = http_get($port, "/$zone/x", headers => xkey($k, %$ref), from => $no);
        is_answer($res, 403, $owner, "round $round, zone $zone from $no");
        is($res->header('X-Status'), 'ip_denied', "round $round, zone $zone from $no: ip_denied");
        $res = http_get($port, "/$zone/x", headers => xkey($k, %$other_ref), from => $ok);
        is($res->header('X-Status'), 'referrer_denied',
           "round $round, zone $zone: the other version's Referer denied");
    }
}

$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
