#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# Rotation that keeps the key's identity (apikeyctl rotate with a real
# nginx): after "rotate ID --grace T" the new secret has the id, the fields
# and the quota count of the key; the old secret works as an alias until the
# grace ends and is then refused with 401 revoked.  The quota is counted per
# identity (the "identity" field: the first secret's hash), not per secret:
# requests with the old and the new secret draw on one counter, across two
# rotations.  One worker and quota_lease=1, so the count is exact.

use strict;
use warnings;

use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);

use ApiKeyTest;
use ApiKeyTest::Cli qw(cli_path run_cli hgetall);
use ApiKeyTest::Policy;

require_module();
BAIL_OUT('apikeyctl not built: ' . cli_path() . ' (make cli, or set AK_CLI)')
    unless -x cli_path();

avoid_window_edge('day', 45);

my $json = JSON::PP->new;
my $r = ApiKeyTest::Redis->start;
my $url = 'redis://127.0.0.1:' . $r->port;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s negative_ttl=1s quota_lease=1;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Id     $api_key_id always;
        add_header X-Owner  $api_key_owner always;

        location / {
            try_files /ok.txt =404;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => 1,
                                 vars => { REDIS => $r->port },
                                 redis => $r, redis_clients => 2);
static_site($n);
my $port = $n->port;

ok(wait_until(sub {
    ($r->cmd('PUBSUB', 'NUMSUB', 'apikey:events')->[1] // 0) >= 1
}, timeout => 5), 'the worker subscribes to apikey:events');

sub cli {
    my (@args) = @_;
    my %o;
    %o = %{ pop @args } if @args && ref $args[-1] eq 'HASH';
    return run_cli(args => ['--redis', $url, @args], %o);
}

sub get { http_get($port, '/', headers => { 'X-API-Key' => $_[0] }) }
sub statuses { join ',', map { get($_[0])->status } 1 .. $_[1] }

my $now = int(time);
my $day = $now - $now % 86400;

my $c = cli('create', '--json', '--id', 'rot', '--owner', 'acme',
            '--plan', 'gold', '--scopes', 'read', '--quota', '10/day');
is($c->{exit}, 0, 'create --quota 10/day') or diag($c->{err});
my $old = eval { $json->decode($c->{out}) } || {};
track_key($old->{key});

is(statuses($old->{key}, 4), '200,200,200,200', '4 requests with the key');
my $first = $r->cmd('GET', "apikey:usage:{apikey:$old->{hash}}:day:$day") // 0;
ok($first == 4 || $first == 5,
   "counted on the counter of its hash ($first: 4, and one leased ahead)");

# --- rotate: the new secret is the same key --------------------------------

my $t0 = time;
my $rot = cli('rotate', 'rot', '--grace', '6s', '--json');
is($rot->{exit}, 0, 'rotate rot --grace 6s') or diag($rot->{err});
my $new = eval { $json->decode($rot->{out}) } || {};
track_key($new->{key});
isnt($new->{key}, $old->{key}, 'a new secret');
is($new->{id}, 'rot', 'with the same id');
is($new->{old_hash}, $old->{hash}, '--json names the old hash');

my $nf = hgetall($r->client, "apikey:$new->{hash}");
my $of = hgetall($r->client, "apikey:$old->{hash}");
is($nf->{id}, 'rot', 'the new record holds the id');
is($nf->{identity}, $old->{hash}, 'and the identity: the first secret\'s hash');
is($nf->{$_}, $of->{$_}, "the same $_") for qw(owner plan scopes quota);
is($nf->{rotated_from}, $old->{hash}, 'rotated_from names the old hash');
is($r->cmd('GET', 'apikey:id:rot'), $new->{hash},
   'the id lookup names the new secret');
ok($of->{alias_until} >= int($t0) + 5 && $of->{alias_until} <= time + 7,
   "the old record is an alias until now + grace ($of->{alias_until})");
is($of->{rotated_to}, $new->{hash}, 'rotated_to names the new hash');
is($of->{status}, 'active', 'the old record is not revoked (yet)');

my $res = get($new->{key});
is($res->status, 200, 'the new secret works at once');
is($res->header('x-id'), 'rot', '$api_key_id is the key\'s id');
is($res->header('x-owner'), 'acme', 'the owner too');
$res = get($old->{key});
is($res->status, 200, 'the old secret works during the grace');
is($res->header('x-id'), 'rot', 'as the same key id');

# Each secret has its own cache entry, which leases counts on its own (one
# at a time here, and the next one ahead): a count leased to an entry and
# not used is lost for the window, so the secrets together admit at most
# the quota, and at least the quota less one count per entry.
my $ok = 0;
for my $k (($new->{key}, $old->{key}) x 4) {
    $ok++ if get($k)->status == 200;
}
ok(!$r->cmd('EXISTS', "apikey:usage:{apikey:$new->{hash}}:day:$day"),
   'no counter of the new hash');

# --- a second rotation keeps the identity ----------------------------------

my $rot2 = cli('rotate', '-', '--grace', '1h', '--json',
               { stdin => "$new->{key}\n" });
is($rot2->{exit}, 0, 'rotate again (named by the key)') or diag($rot2->{err});
my $newer = eval { $json->decode($rot2->{out}) } || {};
track_key($newer->{key});
is($r->cmd('HGET', "apikey:$newer->{hash}", 'identity'), $old->{hash},
   'the identity is kept by the next rotation');
is($newer->{id}, 'rot', 'and so is the id');

for my $k (($newer->{key}) x 4) {
    $ok++ if get($k)->status == 200;
}
my $total = 4 + 2 + $ok;
ok($total <= 10 && $total >= 7,
   "the three secrets together admitted $total of the quota of 10 "
   . '(at most 10, at least 10 less one count per entry)');
$res = get($newer->{key});
is($res->status, 429, 'then the quota is used up, whichever secret');
is($res->header('x-status'), 'quota_exceeded', 'quota_exceeded');
is(get($new->{key})->status, 429, 'the middle secret too');
isnt(get($old->{key})->status, 200, 'the first one too');
is($r->cmd('GET', "apikey:usage:{apikey:$old->{hash}}:day:$day"), 10,
   'the identity\'s counter says 10 (all of it granted)');
is(scalar(@{ $r->cmd('KEYS', 'apikey:usage:*:day:*') }), 1,
   'and it is the only usage counter');

my $u = cli('usage', 'rot', '--json');
my $uj = eval { $json->decode($u->{out}) } || {};
is($uj->{used}, 10, 'apikeyctl usage reads the identity\'s counter');
is($uj->{remaining}, 0, 'remaining 0');

# --- after the grace: the old secret is refused as revoked ------------------

my $end = $of->{alias_until};
sleep 0.05 while time < $end + 1.05;
$res = get($old->{key});
is($res->status, 401, 'after the grace the old secret gets 401');
is($res->header('x-status'), 'revoked', 'as revoked');
is($res->header('x-id'), 'rot', 'naming the key id');

# --- refusals ----------------------------------------------------------------

my $ra = cli('rotate', $old->{hash}, '--grace', '1h');
is($ra->{exit}, 2, 'rotating an old secret (an alias) is refused');
like($ra->{err}, qr/old secret of a rotated key/, 'saying so');
my $si = cli('set', 'rot', 'identity=' . ('0' x 64));
is($si->{exit}, 2, 'set identity= is refused');
like($si->{err}, qr/identity.*kept by rotate/, 'saying so');

# --grace 0: the old secret is refused at once (the update event)
my $g0 = cli('rotate', 'rot', '--grace', '0', '--json');
is($g0->{exit}, 0, 'rotate --grace 0') or diag($g0->{err});
my $newest = eval { $json->decode($g0->{out}) } || {};
track_key($newest->{key});
ok(wait_until(sub { get($newer->{key})->status == 401 }, timeout => 2),
   '--grace 0: the previous secret is refused at once');
is(get($newer->{key})->header('x-status'), 'revoked', 'as revoked');

# revoking the key revokes its old secrets still in their grace too
my $g1 = cli('rotate', 'rot', '--grace', '1h', '--json');
my $last = eval { $json->decode($g1->{out}) } || {};
track_key($last->{key});
is(get($newest->{key})->status, 429, 'the old secret works during its grace '
   . '(429: the quota is used up)');
my $rv = cli('revoke', 'rot');
is($rv->{exit}, 0, 'revoke rot') or diag($rv->{err});
like($rv->{err}, qr/revoked its old secret \(hash \Q$newest->{hash}\E\)/,
     'says it revoked the old secret too');
ok(wait_until(sub { get($newest->{key})->status == 401
                    && get($last->{key})->status == 401 }, timeout => 2),
   'both secrets are refused at once');
is(get($newest->{key})->header('x-status'), 'revoked', 'as revoked');

done_testing();
