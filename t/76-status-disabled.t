# SPDX-License-Identifier: BSD-2-Clause
# status=disabled is its own outcome: $api_key_status "disabled", 403, no
# WWW-Authenticate, its own problem+json body and metrics label; a revoke
# event on a disabled key makes it "revoked"; re-enabling it (update event)
# lets it through again.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events;
use ApiKeyTest::Cli qw(run_cli);

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        add_header X-Id $api_key_id always;

        location / {
            api_key keys;
            empty_gif;
        }
        location /json/ {
            api_key keys;
            api_key_error_body json;
            empty_gif;
        }
        location = /metrics {
            api_key_metrics;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;
wait_subscribed($r, 1, timeout => 10);

my $dis = random_key('dis');
my $dh = add_key($r, $dis, id => 'susp-1', status => 'disabled');
my $rev = random_key('rev');
add_key($r, $rev, id => 'rev-1', status => 'revoked');

sub get { http_get($port, $_[0], headers => { 'X-API-Key' => $_[1] }) }

my $res = get('/', $dis);
is($res->status, 403, 'disabled: 403');
is($res->header('X-Status'), 'disabled', '$api_key_status = disabled');
is($res->header('X-Id'), 'susp-1', 'the id is known on a disabled key');
is($res->header('WWW-Authenticate'), undef, 'no WWW-Authenticate on disabled');
ok(index($res->raw, $dis) < 0, 'the answer does not hold the key');

$res = get('/', $rev);
is($res->status, 401, 'revoked stays 401');
is($res->header('X-Status'), 'revoked', 'revoked stays revoked');

$res = get('/json/', $dis);
is($res->status, 403, 'json: 403');
like($res->header('Content-Type'), qr{^application/problem\+json}, 'json: problem+json');
is($res->body,
   qq({"type":"about:blank","title":"Forbidden","status":403,"detail":"disabled"}\n),
   'json: the disabled problem body');

my $m = metrics($port);
is($m->{'api_key_requests_total{zone="keys",status="disabled"}'}, 2,
   'metrics: two disabled requests under their own label');
is($m->{'api_key_requests_total{zone="keys",status="revoked"}'}, 1,
   'metrics: the revoked one under revoked');

# re-enabled: an update event, then it passes
$r->cmd('HSET', "apikey:$dh", 'status', 'active');
publish($r, "update $dh");
ok(wait_until(sub { get('/', $dis)->status == 200 }, timeout => 5),
   'disabled -> active (update event): 200');

# suspended again, then revoked by event: revoked wins
$r->cmd('HSET', "apikey:$dh", 'status', 'disabled');
publish($r, "update $dh");
ok(wait_until(sub { get('/', $dis)->status == 403 }, timeout => 5),
   'active -> disabled (update event): 403');
publish($r, "revoke $dh");
ok(wait_until(sub { (get('/', $dis)->header('X-Status') // '') eq 'revoked' },
              timeout => 5), 'a revoke event on a disabled key: revoked');
is(get('/', $dis)->status, 401, '... 401');

# apikeyctl set --status disabled (it publishes revoke, then update): once
# the record is read again the outcome is disabled, not revoked
my $c = run_cli(args => ['--redis', 'redis://127.0.0.1:' . $r->port, 'create',
                         '--id', 'cli-1', '--owner', 'x']);
is($c->{exit}, 0, 'apikeyctl create') or diag $c->{err};
my ($ck) = $c->{out} =~ /^(\S+)/;
ApiKeyTest::track_key($ck);
is(get('/', $ck)->status, 200, 'created key: 200');
$c = run_cli(args => ['--redis', 'redis://127.0.0.1:' . $r->port, 'set',
                      'cli-1', 'status=disabled']);
is($c->{exit}, 0, 'apikeyctl set --status disabled') or diag $c->{err};
ok(wait_until(sub { (get('/', $ck)->header('X-Status') // '') eq 'disabled' },
              timeout => 5), 'after set --status disabled: disabled');
$c = run_cli(args => ['--redis', 'redis://127.0.0.1:' . $r->port, 'set',
                      'cli-1', 'status=active']);
ok(wait_until(sub { get('/', $ck)->status == 200 }, timeout => 5),
   'after set --status active: 200 again');

done_testing;
