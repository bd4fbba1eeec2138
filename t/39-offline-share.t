# SPDX-License-Identifier: BSD-2-Clause
# The offline share (quota_offline) is taken in blocks of at most
# quota_lease as it is used, not all at the first outage: when the key's
# cache entry loses its state between two outages of one window (a flush
# event, an eviction, a re-read after Redis answered "unknown"), only the
# block in use is lost, and the second outage is still served from what is
# left of the share.  Found by make chaos: with the whole share granted at
# once, quota keys got 429 quota_exceeded in every outage after the first.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;
use ApiKeyTest::Events qw(publish);

require_module();

avoid_window_edge('day', 60);

my $r = ApiKeyTest::Redis->start;

my $n = ApiKeyTest::Nginx->start(redis => $r, workers => 1,
    vars => { REDIS => $r->port }, http => <<'EOT');
    api_key_zone  keys:1m ttl=60s stale=10m quota_lease=5 quota_offline=50;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=100ms connect_timeout=300ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        location / { try_files /ok.txt =404; }
    }
EOT
static_site($n);
my $port = $n->port;

my $k = random_key('offshare');
add_key($r, $k, quota => '100000/day');

sub req { http_get($port, "/$_[0]", headers => xkey($k), timeout => 5) }
sub summary { my %c; $c{$_->status . ' ' . ($_->header('X-Status') // '')}++ for @_;
              join ', ', map { "$_ x$c{$_}" } sort keys %c }

is(req('first')->status, 200, 'the key is cached and has a lease');

# --- outage 1: a few requests beyond the lease, served offline ---------------
my @one;
{
    my $g = $r->pause_guard;
    push @one, req("a$_") for 1 .. 10;
}
is(scalar(grep { $_->status == 200 } @one), 10,
   'outage 1: 10 requests admitted (lease, then the offline share)')
    or diag summary(@one);

# Redis back; the entry loses its state (flush event), the key is read again
ok(wait_until(sub { req('back')->status == 200 }, timeout => 10),
   'Redis back: the key is admitted again');
publish($r, 'flush');
sleep 0.3;
is(req('reread')->status, 200, 'after a flush event: read again, admitted');

# --- outage 2 in the same window: the rest of the share is still there ------
my @two;
{
    my $g = $r->pause_guard;
    push @two, req("b$_") for 1 .. 20;
}
is(scalar(grep { $_->status == 200 } @two), 20,
   'outage 2: 20 requests admitted from what is left of quota_offline=50')
    or diag summary(@two);

done_testing;
