#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl and the module, both over TLS to one redis-server that requires
# client certificates (tls-auth-clients yes): a key made with apikeyctl over
# TLS works through nginx, and a revoke, a rotate and a set made over TLS
# reach nginx through the events it receives over TLS.  The zone's ttl is
# long (60 s) and keyspace events are off, so a change can only show within
# the test's time limits through the events apikeyctl publishes.
#
# Skipped when the module does not take rediss:// yet (nginx -t refuses the
# configuration for that reason).

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
my $pki = ApiKeyTest::Tls->new;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=60s negative_ttl=1s;
    api_key_redis rediss://localhost:%%REDIS%% tls_ca=%%CA%%
                  tls_cert=%%CERT%% tls_key=%%KEY%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;

        location / {
            add_header X-Status $api_key_status always;
            add_header X-Owner  $api_key_owner always;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my %vars = (CA => $pki->ca, CERT => $pki->client_cert, KEY => $pki->client_key);

# does the module take rediss:// and the tls_ parameters?
{
    my $c = ApiKeyTest::Nginx->check_config(http => $http,
                                            vars => { %vars, REDIS => 6379 });
    if (!$c->{ok}) {
        plan skip_all => 'the module does not take rediss:// yet: '
            . ($c->{output} =~ /(\[emerg\][^\n]*)/ ? $1 : $c->{output})
            if $c->{output} =~ /rediss|tls_|invalid redis url/i;
        BAIL_OUT("nginx -t fails for another reason:\n$c->{output}");
    }
}

my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls(auth_clients => 'yes'));
my $url = $r->url(host => 'localhost');
my @tls = ('--tls-ca', $pki->ca, '--tls-cert', $pki->client_cert,
           '--tls-key', $pki->client_key);

my $n = ApiKeyTest::Nginx->start(http => $http, workers => $WORKERS,
                                 vars => { %vars, REDIS => $r->port },
                                 redis => $r, redis_clients => 2 * $WORKERS);
my $port = $n->port;

ok(wait_until(sub {
    my $ns = $r->cmd('PUBSUB', 'NUMSUB', 'apikey:events');
    return ($ns->[1] // 0) >= $WORKERS;
}, timeout => 5), 'every worker subscribes to apikey:events over TLS');

sub cli {
    my (@args) = @_;
    return run_cli(args => ['--redis', $url, @tls, @args]);
}

sub create {
    my (@args) = @_;
    my $res = cli('create', '--json', @args);
    is($res->{exit}, 0, "apikeyctl create @args over TLS") or diag($res->{err});
    my $k = eval { $json->decode($res->{out}) } || {};
    track_key($k->{key});
    return $k;
}

sub get {
    my ($key) = @_;
    return http_get($port, '/', headers => { 'X-API-Key' => $key });
}

# true when 4 requests in a row (new connections: spread over the workers)
# answer $want within $limit seconds
sub becomes {
    my ($key, $want, $limit) = @_;
    return wait_until(sub {
        (join ',', map { get($key)->status } 1 .. 4) eq join ',', ($want) x 4;
    }, timeout => $limit, interval => 0.01);
}

my $k = create('--owner', 'acme', '--id', 'tls-1');
is(get($k->{key})->status, 200, 'a key made over TLS works through nginx');
is(get($k->{key})->header('x-owner'), 'acme', '... with its owner');

# revoke over TLS: denied through the event, not the ttl
{
    my $res = cli('revoke', 'tls-1');
    is($res->{exit}, 0, 'apikeyctl revoke over TLS') or diag($res->{err});
    unlike($res->{err}, qr/nobody listens/, '... and nginx received the event');
    ok(becomes($k->{key}, 401, 2), 'nginx denies the revoked key (event over TLS)');
    is(get($k->{key})->header('x-status'), 'revoked', 'status "revoked"');

    $res = cli('set', 'tls-1', 'status=active');
    is($res->{exit}, 0, 'apikeyctl set status=active over TLS') or diag($res->{err});
    ok(becomes($k->{key}, 200, 2), 'nginx accepts it again');
}

# rotate over TLS: the new key works, the old one ends with grace 0
{
    my $res = cli('rotate', 'tls-1', '--grace', '0', '--json');
    is($res->{exit}, 0, 'apikeyctl rotate over TLS') or diag($res->{err});
    my $new = eval { $json->decode($res->{out}) } || {};
    track_key($new->{key});
    is(get($new->{key})->status, 200, 'the new key works');
    ok(becomes($k->{key}, 401, 2), 'the old key is denied (grace 0)');
}

done_testing;
