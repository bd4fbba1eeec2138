#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl and the module on the same Redis Cluster (redis-cluster://,
# three masters): keys apikeyctl creates verify in nginx; revoke, rotate
# and delete take effect through the events apikeyctl publishes (the module
# listens on one node; a PUBLISH reaches every node); list finds the keys
# of every master; usage shows the counts the module's quota leases wrote
# on the counter's master.  (t/25 covers apikeyctl alone on a cluster, with
# slots moving and a failover.)
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Cli qw(cli_path run_cli);

require_module();
BAIL_OUT('apikeyctl not built: ' . cli_path()) unless -x cli_path();

my $json = JSON::PP->new;
# (an ACL user that may not PSUBSCRIBE, for the last part)
my $c = ApiKeyTest::Cluster->start(masters => 3, config => [
    'notify-keyspace-events Kghx',
    'user nopsub on >pw-nopsub ~* &* +@all -psubscribe']);
my $url = $c->url;

# the module: keyspace events off, ttl 60 s: only apikeyctl's events can
# explain a change seen at once
my $n = ApiKeyTest::Nginx->start(workers => 2, http => <<"EOT" . echo_server());
    api_key_zone  keys:1m ttl=60s negative_ttl=1s quota_lease=1;
    api_key_redis $url timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        add_header X-Owner  \$api_key_owner always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
my $port = $n->port;
sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }
sub st  { my $x = get($_[0]); $x->status . ' ' . ($x->header('X-Status') // '') }

sub cli { run_cli(args => ['--redis', $url, @_]) }
sub create {
    my $res = cli('create', '--json', @_);
    is $res->{exit}, 0, "apikeyctl create @_" or diag $res->{err};
    my $k = eval { $json->decode($res->{out}) } || {};
    track_key($k->{key}) if $k->{key};
    return $k;
}
sub until_st {
    my ($key, $want) = @_;
    my $last;
    wait_until(sub { ($last = st($key)) eq $want }, timeout => 3) or diag "last: $last";
    return $last;
}

# --- create: keys on every master verify ----------------------------------------

my %k;
for my $i (1 .. 9) {
    $k{$i} = create('--id', "c$i", '--owner', "own$i");
}
my %on = map {
    ($c->master_for_slot(ApiKeyTest::Cluster::slot_of('apikey:' . $k{$_}{hash}
        // key_hash($k{$_}{key})))->port => 1)
} keys %k;
note 'records on ' . scalar(keys %on) . ' masters';
for my $i (sort keys %k) {
    my $x = get($k{$i}{key});
    is $x->status . ' ' . $x->header('X-Owner'), "200 own$i", "c$i verifies";
}

# --- list: every master ----------------------------------------------------------

my $res = cli('list', '--json');
is $res->{exit}, 0, 'apikeyctl list' or diag $res->{err};
my %listed = map { $_->{id} => 1 } grep { ref $_ eq 'HASH' }
             map { my $d = eval { $json->decode($_) }; ref $d eq 'ARRAY' ? @$d : ($d) }
             ($res->{out} =~ /^\s*\[/ ? ($res->{out}) : split /\n/, $res->{out});
is scalar(grep { $listed{"c$_"} } 1 .. 9), 9, 'list finds the nine keys';

# --- revoke, delete: at once, through the events ---------------------------------

is cli('revoke', 'c1')->{exit}, 0, 'apikeyctl revoke';
is until_st($k{1}{key}, '401 revoked'), '401 revoked', 'the module denies it at once';
is cli('delete', 'c2')->{exit}, 0, 'apikeyctl delete';
is until_st($k{2}{key}, '401 unknown'), '401 unknown', 'a deleted key is unknown at once';

# --- rotate: the new key works, the old one stops ---------------------------------

$res = cli('rotate', 'c3', '--grace', '0', '--json');
is $res->{exit}, 0, 'apikeyctl rotate' or diag $res->{err};
my $new = eval { $json->decode($res->{out}) } || {};
track_key($new->{key}) if $new->{key};
is st($new->{key}), '200 ok', 'the new key works';
like until_st($k{3}{key}, '401 expired'), qr/^401/, 'the old key is refused (--grace 0)';

# --- usage: the module's quota counts ----------------------------------------------

my $q = create('--id', 'metered', '--quota', '1000/day');
my $ok = grep { get($q->{key})->status == 200 } 1 .. 5;
is $ok, 5, 'five requests with a quota of 1000/day';
$res = cli('usage', 'metered', '--json');
is $res->{exit}, 0, 'apikeyctl usage' or diag $res->{err};
my $u = eval { $json->decode($res->{out}) } || {};
is $u->{limit}, 1000, 'usage: the limit';
ok(($u->{used} // 0) >= 5 && $u->{used} <= 10,
   'usage: the module counted the requests on the cluster (used: ' . ($u->{used} // 'none') . ')');

# --- an ACL user, keyspace_events=on, PSUBSCRIBE refused ---------------------------
# Every node's connection authenticates (AUTH user password); the events
# connections' PSUBSCRIBE is refused (NOPERM): each worker warns once and
# keeps the channel alone, revocations still arrive.

my $n2 = ApiKeyTest::Nginx->start(workers => 2, http => <<"EOT" . echo_server(),
    api_key_zone  keys:1m ttl=60s negative_ttl=1s;
    api_key_redis ${\ $c->url(user => 'nopsub', password => 'pw-nopsub') } timeout=1s keyspace_events=on;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
    expect_problems => [qr/NOPERM|may not PSUBSCRIBE/]);
sub st2 {
    my $x = http_get($n2->port, '/', headers => { 'X-API-Key' => $_[0] });
    return $x->status . ' ' . ($x->header('X-Status') // '');
}
my $a2 = create('--id', 'acl1');
is st2($a2->{key}), '200 ok', 'AUTH with an ACL user on every node: the key verifies';
sub warns { my $n = () = $n2->error_log =~ /may not PSUBSCRIBE/g; $n }
ok wait_until(sub { warns() >= 2 }, timeout => 8),
    'the PSUBSCRIBE refused: each worker warns';
is cli('revoke', 'acl1')->{exit}, 0, 'apikeyctl revoke';
my $l2;
ok wait_until(sub { ($l2 = st2($a2->{key})) eq '401 revoked' }, timeout => 5),
    'the channel alone still brings the revocation' or diag $l2;
sleep 1;
is warns(), 2, 'once: the events connections stay up, no more warnings';

done_testing;
