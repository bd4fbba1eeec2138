#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl with a real nginx running the module: what the CLI writes and
# publishes is what the module reads and obeys, at once.  The zone's ttl is
# long (60 s) and keyspace events are off, so a change can only show within
# the test's time limits through the events apikeyctl publishes.

use strict;
use warnings;

use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);

use ApiKeyTest;
use ApiKeyTest::Cli qw(cli_path run_cli key_checksum_ok);

require_module();
BAIL_OUT('apikeyctl not built: ' . cli_path() . ' (make cli, or set AK_CLI)')
    unless -x cli_path();

my $json = JSON::PP->new;
my $WORKERS = 2;

my $r = ApiKeyTest::Redis->start;
my $url = 'redis://127.0.0.1:' . $r->port;
my $dir = tmpdir();
my $secret_file = spew("$dir/hmac.secret", "t21-hmac-secret\n", 0644);

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=60s negative_ttl=1s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;

        location / {
            add_header X-Status $api_key_status always;
            add_header X-Id     $api_key_id always;
            add_header X-Owner  $api_key_owner always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /strict/ {
            api_key_format checksum prefix=ak;
            add_header X-Status $api_key_status always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
                                 vars => { REDIS => $r->port },
                                 redis => $r, redis_clients => 2 * $WORKERS);
my $port = $n->port;

my $subscribed = wait_until(sub {
    my $ns = $r->cmd('PUBSUB', 'NUMSUB', 'apikey:events');
    return ($ns->[1] // 0) >= $WORKERS;
}, timeout => 5);
ok($subscribed, "every worker subscribes to apikey:events")
    or diag('the module does not listen on the channel: the event tests '
            . 'below fail for that reason');

sub cli {
    my (@args) = @_;
    my %o;
    %o = %{ pop @args } if @args && ref $args[-1] eq 'HASH';
    return run_cli(args => ['--redis', $url, @args], %o);
}

sub create {
    my (@args) = @_;
    my $res = cli('create', '--json', @args);
    is($res->{exit}, 0, "apikeyctl create @args") or diag($res->{err});
    return eval { $json->decode($res->{out}) } || {};
}

sub get {
    my ($key, $path) = @_;
    return http_get($port, $path // '/',
                    headers => defined $key ? { 'X-API-Key' => $key } : {});
}

# the statuses of $n requests (new connections: spread over the workers)
sub statuses {
    my ($key, $n, $path) = @_;
    return join ',', map { get($key, $path)->status } 1 .. $n;
}

# seconds until every one of 4 requests in a row answers $want (or undef)
sub time_until {
    my ($key, $want, $limit) = @_;
    my $t0 = time;
    while (time - $t0 < $limit) {
        return time - $t0 if statuses($key, 4) eq join ',', ($want) x 4;
        sleep 0.005;
    }
    return undef;
}

sub fmt { defined $_[0] ? sprintf('%.3fs', $_[0]) : 'never' }


# --- a key made by apikeyctl works; a wrong one does not ------------------

my $k = create('--owner', 'acme', '--id', 'cli-1');
{
    my $res = get($k->{key});
    is($res->status, 200, 'a key made by apikeyctl create: 200');
    is($res->header('x-status'), 'ok', '$api_key_status ok');
    is($res->header('x-id'), 'cli-1', '$api_key_id is the id given to create');
    is($res->header('x-owner'), 'acme', '$api_key_owner from --owner');

    $res = http_get($port, '/', headers => {
        Authorization => "Bearer $k->{key}" });
    is($res->status, 200, 'as a bearer token too');

    is(get($k->{key}, '/strict/')->status, 200,
       'api_key_format checksum accepts the key');

    my $wrong = checksum_key('ak');
    is(get($wrong)->status, 401, 'a well-formed key that was never made: 401');
    my $typo = $k->{key};
    substr($typo, 5, 1) = substr($typo, 5, 1) eq 'a' ? 'b' : 'a';
    is(get($typo)->status, 401, 'the key with one character changed: 401');
    is(get($typo, '/strict/')->header('x-status'), 'malformed',
       'which the checksum catches without a lookup');

    my $d = create('--id', 'default-id');
    my $plain = create();
    is(get($plain->{key})->header('x-id'), substr($plain->{hash}, 0, 12),
       'the default id is the first 12 hex digits of the hash');
}


# --- revoke: denied at once, by the event --------------------------------

{
    is(statuses($k->{key}, 8), join(',', (200) x 8),
       'the key is cached as valid by every worker');
    my $res = cli('revoke', 'cli-1');
    is($res->{exit}, 0, 'apikeyctl revoke') or diag($res->{err});
    unlike($res->{err}, qr/nobody listens/, 'nginx received the event');

    my $t = time_until($k->{key}, 401, 2);
    ok(defined $t && $t < 0.2,
       'after revoke the key is denied within ~100 ms (' . fmt($t) . ')');
    is(statuses($k->{key}, 8), join(',', (401) x 8),
       'denied by every worker');
    is(get($k->{key})->header('x-status'), 'revoked', 'status "revoked"');

    $res = cli('set', 'cli-1', 'status=active');
    $t = time_until($k->{key}, 200, 2);
    ok(defined $t && $t < 0.2,
       'set status=active lets it in again at once (' . fmt($t) . ')');
}


# --- rotate --grace 2s: both keys during the grace, only the new after -----

{
    my $old = create('--owner', 'rot', '--id', 'rot-old');
    is(statuses($old->{key}, 4), '200,200,200,200', 'the old key works');

    my $res = cli('rotate', 'rot-old', '--grace', '2s', '--json');
    is($res->{exit}, 0, 'apikeyctl rotate --grace 2s') or diag($res->{err});
    my $new = eval { $json->decode($res->{out}) } || {};
    ok(key_checksum_ok($new->{key}, 'ak'), 'a new key');

    is(statuses($new->{key}, 4), '200,200,200,200',
       'the new key works at once');
    my $nres = get($new->{key});
    is($nres->header('x-owner'), 'rot', 'with the same owner');
    is($nres->header('x-id'), 'rot-old', 'and the same id');
    is(statuses($old->{key}, 4), '200,200,200,200',
       'the old key still works during the grace');

    # the old key ends at alias_until: past that second it is refused
    my $end = $new->{old_expires_at} // time + 2;
    sleep 0.05 while time <= $end + 1.05;

    is(statuses($old->{key}, 8), join(',', (401) x 8),
       'after the grace the old key is refused by every worker');
    is(get($old->{key})->header('x-status'), 'revoked', 'as revoked');
    is(statuses($new->{key}, 4), '200,200,200,200', 'the new key still works');
}


# --- set ips=: takes effect at once -------------------------------------------

{
    my $c = create('--id', 'ipkey');
    is(statuses($c->{key}, 4), '200,200,200,200', 'works from 127.0.0.1');

    my $res = cli('set', 'ipkey', 'ips=10.9.9.9');
    is($res->{exit}, 0, 'apikeyctl set ips=10.9.9.9') or diag($res->{err});
    my $t = time_until($c->{key}, 403, 2);
    ok(defined $t && $t < 0.2,
       'set ips=10.9.9.9: 403 from 127.0.0.1 at once (' . fmt($t) . ')');
    is(get($c->{key})->header('x-status'), 'ip_denied', 'as ip_denied');

    $res = cli('set', 'ipkey', 'ips=10.9.9.9,127.0.0.0/8');
    $t = time_until($c->{key}, 200, 2);
    ok(defined $t && $t < 0.2, 'adding 127.0.0.0/8 lets it in (' . fmt($t) . ')');

    cli('set', 'ipkey', 'ips=10.9.9.9');
    time_until($c->{key}, 403, 2);
    $res = cli('set', 'ipkey', 'ips=');
    $t = time_until($c->{key}, 200, 2);
    ok(defined $t && $t < 0.2, 'ips= (removed) lets it in (' . fmt($t) . ')');
}


# --- delete: unknown at once ----------------------------------------------------

{
    my $d = create('--id', 'doomed');
    is(statuses($d->{key}, 4), '200,200,200,200', 'works');
    my $res = cli('delete', 'doomed');
    is($res->{exit}, 0, 'apikeyctl delete');
    my $t = time_until($d->{key}, 401, 2);
    ok(defined $t && $t < 0.2, 'a deleted key is refused at once ('
                               . fmt($t) . ')');
    is(get($d->{key})->header('x-status'), 'unknown', 'as unknown');
}


# --- usage: the counters the module writes -------------------------------------

{
    my $q = create('--id', 'metered', '--quota', '1000/day');
    my $ok = grep { get($q->{key})->status == 200 } 1 .. 5;
    is($ok, 5, 'five requests with a quota of 1000/day');
    my $res = cli('usage', 'metered', '--json');
    is($res->{exit}, 0, 'apikeyctl usage') or diag($res->{err});
    my $u = eval { $json->decode($res->{out}) } || {};
    is($u->{limit}, 1000, 'usage: the limit');
    ok(($u->{used} // 0) >= 5 && $u->{used} <= 1000,
       'usage: the module counted the requests (used: '
       . ($u->{used} // 'none') . ')');
    is($u->{remaining}, 1000 - ($u->{used} // 0), 'usage: remaining');
}


# --- hmac-sha256, another prefix and channel: the same on both sides ----------

{
    # (proxied, not "return": return answers before the access phase)
    my $http2 = <<'EOT' . echo_server();
    api_key_zone  keys2:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s prefix=t21: channel=t21:ev;
    api_key_hash  hmac-sha256 secret_file=%%SECRET%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys2;
        location / {
            add_header X-Status $api_key_status always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
    my $n2 = ApiKeyTest::Nginx->start(http => $http2, redis => $r,
        redis_clients => 2 * $WORKERS + 2,
        vars => { REDIS => $r->port, SECRET => $secret_file });
    wait_until(sub { ($r->cmd('PUBSUB', 'NUMSUB', 't21:ev')->[1] // 0) >= 1 },
               timeout => 5);

    my @o = ('--hash', 'hmac-sha256', '--secret-file', $secret_file,
             '--prefix', 't21:', '--channel', 't21:ev');
    my $res = cli(@o, 'create', '--json', '--id', 'hm');
    is($res->{exit}, 0, 'create with hmac-sha256, prefix and channel');
    my $h = eval { $json->decode($res->{out}) } || {};
    is($h->{hash}, hmac_sha256_hex($h->{key} // '', 't21-hmac-secret'),
       'the HMAC of the key');
    my $r2 = http_get($n2->port, '/', headers => { 'X-API-Key' => $h->{key} });
    is($r2->status, 200, 'nginx with api_key_hash hmac-sha256 accepts it');
    is($r2->header('x-status'), 'ok', 'after checking it');
    $r2 = http_get($n2->port, '/', headers => { 'X-API-Key' => $k->{key} });
    is($r2->status, 401, 'and refuses a key of the other prefix');
    is(get($h->{key})->status, 401, 'the sha256 nginx does not');

    $res = cli(@o, 'revoke', 'hm');
    is($res->{exit}, 0, 'revoke on the custom channel');
    my $t0 = time;
    my $ok = wait_until(sub {
        http_get($n2->port, '/', headers => { 'X-API-Key' => $h->{key} })
            ->status == 401 }, timeout => 2, interval => 0.005);
    my $t = time - $t0;
    ok($ok && $t < 0.2, 'denied at once (' . fmt($ok ? $t : undef) . ')');
    $n2->stop;
}

my @p = $n->problems;
is(scalar @p, 0, 'no crash or alert in the error log') or diag(join "\n", @p);
my @keys = ($k->{key});
is(scalar(key_leaks($n->error_log, @keys)), 0, 'no key in the error log');

done_testing();
