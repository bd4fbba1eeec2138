# SPDX-License-Identifier: BSD-2-Clause
# A rotated key keeps its usage history: the module counts the requests of
# every secret of a key under the key's identity (the first secret's hash,
# which apikeyctl rotate keeps), so apikeyctl usage, show and
# list --unused see one history whichever secret was used.
use strict;
use warnings;
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Cli qw(run_cli);
use ApiKeyTest::Events qw(wait_subscribed);

require_module();

my $r = ApiKeyTest::Redis->start;
my $url = 'redis://127.0.0.1:' . $r->port;

my $n = ApiKeyTest::Nginx->start(http => <<'EOT', redis => $r, vars => { REDIS => $r->port });
    api_key_zone  keys:1m usage_flush=200ms;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;
            empty_gif;
        }
    }
EOT
wait_subscribed($r, 1, timeout => 10);

sub cli { run_cli(args => ['--redis', $url, @_]) }
sub get { http_get($n->port, '/', headers => { 'X-API-Key' => $_[0] })->status }
sub allowed_today {
    my $u = cli('usage', '--json', '--days', '1', 'hist-1');
    return -1 if $u->{exit} != 0;
    my $j = JSON::PP::decode_json($u->{out});
    return $j->{requests}[0]{allowed} // 0;
}

my $c = cli('create', '--json', '--id', 'hist-1');
is($c->{exit}, 0, 'create hist-1') or diag $c->{err};
my $first = JSON::PP::decode_json($c->{out});
track_key($first->{key});

is(get($first->{key}), 200, 'the first secret: 200') for 1 .. 3;
ok(wait_until(sub { allowed_today() == 3 }, timeout => 5),
   'usage: 3 requests of the first secret') or diag 'allowed: ' . allowed_today();

$c = cli('rotate', '--json', '--grace', '60s', 'hist-1');
is($c->{exit}, 0, 'rotate hist-1') or diag $c->{err};
my $second = JSON::PP::decode_json($c->{out});
track_key($second->{key});

is(get($second->{key}), 200, 'the new secret: 200') for 1 .. 2;
ok(wait_until(sub { allowed_today() == 5 }, timeout => 5),
   'usage after the rotation: 5, the new secret counted with the old one')
    or diag 'allowed: ' . allowed_today();
ok(!$r->cmd('EXISTS', "apikey:usage:{apikey:$second->{hash}}:last_used"),
   'nothing is written under the new secret\'s own hash');

my $s = JSON::PP::decode_json(cli('show', '--json', 'hist-1')->{out});
ok(defined $s->{last_used} && $s->{last_used} >= int(time) - 60,
   'show: the last use of the key (by its new secret)');

my $l = cli('list', '--unused', '1h');
is($l->{exit}, 0, 'list --unused 1h');
unlike($l->{out}, qr/^hist-1\t/m, '... does not list the rotated key just used')
    or diag $l->{out};

done_testing;
