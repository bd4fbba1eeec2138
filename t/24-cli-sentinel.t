#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl through Redis Sentinel (redis-sentinel://h1:p1,h2:p2,h3:p3/NAME):
# create/show/list/usage/revoke/rotate on the master the sentinels name;
# after a SENTINEL FAILOVER and after a kill -9 of the master the CLI finds
# the new master (never writes to the old one); a sentinel that is down is
# skipped; an unknown master name, no sentinel, and sentinels that need a
# password (--sentinel-password-file, APIKEY_SENTINEL_PASSWORD).  The module
# on the same redis-sentinel:// URL serves what the CLI writes, before and
# after the failover: a created key, its usage, the revoke and the rotation
# published on the new master.

use strict;
use warnings;
use lib 't/lib';
use Test::More;
use ApiKeyTest;
use ApiKeyTest::Cli qw(run_cli subscribe next_message);

my $s = ApiKeyTest::Sentinel->start;
note sprintf 'sentinel set ready in %.1f s', $s->start_secs;
my $url = $s->url;

sub cli { run_cli(args => ['--redis', $url, @_]) }

sub create {
    my (@a) = @_;
    my $r = cli('create', @a);
    is $r->{exit}, 0, "create @a" or diag $r->{err};
    my ($hash) = $r->{err} =~ /hash ([0-9a-f]{64})/;
    chomp(my $key = $r->{out});
    track_key($key);
    return ($key, $hash);
}

my $m = $s->master;
my ($key, $h) = create('--id', 'alice', '--quota', '10/day', '--owner', 'o');
is $m->cmd('HGET', "apikey:$h", 'id'), 'alice', 'created on the master';

# the module on the same URL
my $n = ApiKeyTest::Nginx->start(error_level => 'info', vars => { URL => $url },
    http => <<'EOT' . echo_server());
    api_key_zone  keys:1m ttl=60s quota_lease=1;
    api_key_redis %%URL%% timeout=1s connect_timeout=500ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
sub mod_get {
    my $x = http_get($n->port, '/', headers => { 'X-API-Key' => $_[0] });
    $x->status . ' ' . ($x->header('X-Status') // '');
}
ok wait_until(sub { mod_get($key) eq '200 ok' }, timeout => 10),
    'the module serves the key the CLI created';
is mod_get($key), '200 ok', 'twice (the quota counts 2)';

my $r = cli('list');
like $r->{out}, qr/^alice\tactive\to\t/m, 'list';
$r = cli('usage', 'alice', '--json');
is $r->{exit}, 0, 'usage';
my ($start) = $r->{out} =~ /"day":\{"start":(\d+)/;
my ($mused) = $r->{out} =~ /"used":(\d+)/;
ok defined $mused && $mused >= 2 && $mused <= 3,
    "usage: what the module counted, at most a lease (1) ahead ($mused)";
my ($uname) = grep { /day/ } @{ $m->cmd('KEYS', "apikey:usage:*$h*") };
$m->cmd('SET', $uname, 4);
$r = cli('usage', 'alice', '--json');
like $r->{out}, qr/"used":4,"remaining":6/, 'usage reads the master';

# --- SENTINEL FAILOVER -------------------------------------------------------------

my $old = $s->failover;
my $new = $s->wait_switch(from => $old, timeout => 15);
ok $new, 'failed over' or BAIL_OUT('no failover');
my $sub = $new->client;
subscribe($sub, 'apikey:events');
$r = cli('revoke', 'alice');
is $r->{exit}, 0, 'revoke after the failover' or diag $r->{err};
is $new->cmd('HGET', "apikey:$h", 'status'), 'revoked', 'written on the new master';
my $msg = next_message($sub, 5);
is $msg && $msg->[1], "revoke $h", 'the event published on the new master';
ok wait_until(sub { mod_get($key) eq '401 revoked' }, timeout => 5),
    'the module follows the failover: the revoke reaches it';
$r = cli('rotate', 'alice', '--grace', '1h', '--id', 'alice2');
is $r->{exit}, 0, 'rotate' or diag $r->{err};
chomp(my $nk = $r->{out});
track_key($nk);
is $new->cmd('GET', 'apikey:id:alice2'), ApiKeyTest::sha256_hex($nk), 'rotated on the new master';
is mod_get($nk), '200 ok', 'the module serves the rotated key from the new master';
$n->stop;
$r = cli('show', 'alice2');
is $r->{exit}, 0, 'show';
like $r->{out}, qr/^rotated_from\s+alice$/m, 'the new record';

# --- a sentinel down: the next one is asked ------------------------------------------

my $first = ($s->sentinels)[0];
$first->stop;
$r = cli('show', 'alice');
is $r->{exit}, 0, 'the first sentinel down: the others answer' or diag $r->{err};

# --- kill -9 of the master -------------------------------------------------------------

# the old master must be a working replica again before it can be promoted
ok $s->wait_replica($old), 'the old master is a replica again';
my $killed = $s->kill_master;
my $after = $s->wait_switch(from => $killed, timeout => 20);
ok $after, 'the replica was promoted';
(undef, my $h2) = create('--id', 'bob');
is $after->cmd('HGET', "apikey:$h2", 'id'), 'bob', 'created on the promoted master';
$r = cli('list');
is scalar(() = $r->{out} =~ /^\S+\t/mg), 3, 'list: alice, alice2, bob';

# --- errors ------------------------------------------------------------------------------

$r = run_cli(args => ['--redis', $s->url =~ s{/mymaster$}{/nosuch}r, 'list']);
is $r->{exit}, 4, 'unknown master: exit 4';
like $r->{err}, qr/no master "nosuch" found through the sentinels/, 'and says so';
$r = run_cli(args => ['--redis', 'redis-sentinel://127.0.0.1:' . ApiKeyTest::free_port() . '/m',
                      '--timeout', '1', 'list']);
is $r->{exit}, 4, 'no sentinel: exit 4';
$r = run_cli(args => ['--redis', 'redis://127.0.0.1:1', '--sentinel-password-file', '/dev/null', 'list']);
is $r->{exit}, 2, '--sentinel-password-file with a redis:// URL: usage error';

# --- sentinels with a password -------------------------------------------------------------

{
    my $sp = ApiKeyTest::Sentinel->start(name => 'secure', sentinel_password => 'sentinel-pw-1');
    my $u = $sp->url;
    $r = run_cli(args => ['--redis', $u, 'list']);
    is $r->{exit}, 4, 'no sentinel password: exit 4';
    like $r->{err}, qr/NOAUTH|Authentication required/i, 'the sentinel asks for it';
    unlike $r->{err}, qr/sentinel-pw-1/, 'no password in the message';
    my $pwf = ApiKeyTest::tmpdir() . '/spw';
    ApiKeyTest::spew($pwf, "sentinel-pw-1\n");
    $r = run_cli(args => ['--redis', $u, '--sentinel-password-file', $pwf, 'create', '--id', 'carol']);
    is $r->{exit}, 0, '--sentinel-password-file' or diag $r->{err};
    chomp(my $ck = $r->{out});
    track_key($ck);
    is $sp->master->cmd('GET', 'apikey:id:carol'), ApiKeyTest::sha256_hex($ck), 'created';
    $r = run_cli(args => ['--redis', $u, 'show', 'carol'],
                 env => { APIKEY_SENTINEL_PASSWORD => 'sentinel-pw-1' });
    is $r->{exit}, 0, 'APIKEY_SENTINEL_PASSWORD' or diag $r->{err};
    $r = run_cli(args => ['--redis', $u, 'show', 'carol'],
                 env => { APIKEY_SENTINEL_PASSWORD => 'wrong-pw-2' });
    is $r->{exit}, 4, 'a wrong sentinel password: exit 4';
    unlike $r->{err}, qr/wrong-pw-2/, 'not echoed';
}

done_testing;
