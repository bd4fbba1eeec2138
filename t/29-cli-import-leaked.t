#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl import (existing keys from stdin: a migration without reissuing
# keys) and apikeyctl leaked (a secret scanner's findings on stdin: every
# live key among them is revoked with reason "leaked"), with a real nginx
# that accepts the imported keys and refuses the leaked ones; and the
# scanner rules of contrib/scanners/ (gitleaks, trufflehog, GitHub secret
# scanning) against generated keys and near misses.  The scanners are not
# packaged for Debian or npm, so their regexes are run here with Perl: they
# use only constructs that RE2 (gitleaks, trufflehog), Hyperscan (GitHub)
# and Perl read the same way on ASCII text (character classes, a fixed
# count, alternation, \A and \z, groups).

use strict;
use warnings;

use Test::More;
use JSON::PP ();

use ApiKeyTest;
use ApiKeyTest::Cli qw(cli_path run_cli hgetall);
use ApiKeyTest::Policy;

require_module();
BAIL_OUT('apikeyctl not built: ' . cli_path() . ' (make cli, or set AK_CLI)')
    unless -x cli_path();

my $json = JSON::PP->new;
my $r = ApiKeyTest::Redis->start;
my $url = 'redis://127.0.0.1:' . $r->port;

my $n = ApiKeyTest::Nginx->start(http => <<'EOT', vars => { REDIS => $r->port },
    api_key_zone  keys:1m ttl=60s negative_ttl=1s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Id     $api_key_id always;
        add_header X-Owner  $api_key_owner always;
        location / { try_files /ok.txt =404; }
    }
EOT
    redis => $r, redis_clients => 2);
static_site($n);

sub cli {
    my (@args) = @_;
    my %o;
    %o = %{ pop @args } if @args && ref $args[-1] eq 'HASH';
    return run_cli(args => ['--redis', $url, @args], %o);
}
sub get { http_get($n->port, '/', headers => { 'X-API-Key' => $_[0] }) }

# --- import: one raw key per line, fields as options -----------------------

my @legacy = map { random_key("legacy$_") } 1 .. 3;   # another system's keys
my $res = cli('import', '--owner', 'legacy', '--plan', 'basic', '--quota',
              '100/day', { stdin => join("\n", @legacy, '') });
is($res->{exit}, 0, 'import 3 keys') or diag($res->{err});
my @lines = split /\n/, $res->{out};
is(scalar @lines, 3, 'one line per key');
for my $i (0 .. 2) {
    my $h = sha256_hex($legacy[$i]);
    like($lines[$i], qr/^imported \S+ \Q$h\E$/, "line $i names the id and hash");
    my $f = hgetall($r->client, "apikey:$h");
    is_deeply([ @$f{qw(owner plan quota status)} ],
              [ 'legacy', 'basic', '100/day', 'active' ],
              "key $i: the fields given as options");
    ok($f->{imported_at}, 'and imported_at');
}
my $g = get($legacy[0]);
is($g->status, 200, 'nginx accepts an imported key as it is');
is($g->header('x-owner'), 'legacy', 'with its owner');
unlike($res->{out} . $res->{err}, qr/\Q$_\E/, 'the key is printed nowhere')
    for @legacy;

# --- import --jsonl: fields per line; bad lines are skipped ----------------

my $k4 = checksum_key('ak');
my $k5 = random_key('five');
my $jl = join "\n",
    $json->encode({ key => $k4, id => 'mig-4', owner => 'acme',
                    scopes => 'read  write', expires_at => '30d' }),
    $json->encode({ key => $k5, id => 'mig-5', rate => '10/s' }),
    $json->encode({ key => $legacy[1], id => 'dup' }),     # stored already
    $json->encode({ key => random_key('bad'), id => 'mig-4' }), # id in use
    $json->encode({ key => random_key('bad'), rate => 'fast' }),
    $json->encode({ key => random_key('bad'), colour => 'red' }),
    '{"key": "unterminated',
    $json->encode({ id => 'nokey' }),
    '';
$res = cli('import', '--jsonl', '--owner', 'default-owner', '--json',
           { stdin => $jl });
is($res->{exit}, 2, 'import --jsonl with bad lines: exit 2') or diag($res->{err});
my $out = eval { $json->decode($res->{out}) } || {};
is_deeply([ map { $_->{id} } @{ $out->{imported} || [] } ], [ 'mig-4', 'mig-5' ],
          'the two good lines are imported');
is($out->{skipped}, 6, 'six lines skipped');
like($res->{err}, qr/line 3 skipped: the key is stored already/, 'a key stored already');
like($res->{err}, qr/line 4 skipped: the id "mig-4" is in use/, 'an id in use');
like($res->{err}, qr/line 5 skipped: .*rate/, 'a bad field value, named');
like($res->{err}, qr/line 6 skipped: unknown field "colour"/, 'an unknown field');
like($res->{err}, qr/line 7 skipped: bad string/, 'bad JSON');
like($res->{err}, qr/line 8 skipped: no "key"/, 'no key');
my $f4 = hgetall($r->client, 'apikey:' . sha256_hex($k4));
is($f4->{owner}, 'acme', 'the line\'s owner overrides --owner');
is($f4->{scopes}, 'read write', 'scopes normalised');
ok(abs($f4->{expires_at} - (time + 30 * 86400)) < 5, 'expires_at from "30d"');
is(hgetall($r->client, 'apikey:' . sha256_hex($k5))->{owner}, 'default-owner',
   'the option\'s owner where the line has none');
is(get($k5)->header('x-id'), 'mig-5', 'nginx: the imported id');
unlike($res->{out} . $res->{err}, qr/\Q$_\E/, 'no key printed') for $k4, $k5;

# --- leaked: revoke the live keys among a scanner's findings ---------------

my $c = cli('create', '--json', '--id', 'live-1');
my $live = eval { $json->decode($c->{out}) } || {};
track_key($live->{key});
my $c2 = cli('create', '--json', '--id', 'live-2');
my $live2 = eval { $json->decode($c2->{out}) } || {};
track_key($live2->{key});
is(get($live->{key})->status, 200, 'a live key works');

my $findings = join "\n", $live->{key}, checksum_key('ak'), 'not a key at all',
    $legacy[2], $live->{key}, '';
$res = cli('leaked', { stdin => $findings });
is($res->{exit}, 5, 'leaked: exit 5 when it revoked keys') or diag($res->{err});
is_deeply([ sort split /\n/, $res->{out} ],
          [ sort("revoked live-1 $live->{hash}",
                 'revoked ' . substr(sha256_hex($legacy[2]), 0, 12) . ' '
                 . sha256_hex($legacy[2])) ],
          'prints the id and hash of each key it revoked (once)');
like($res->{err}, qr/2 revoked, 0 revoked already, 2 not live keys/,
     'and the count of non-matches');
unlike($res->{out} . $res->{err}, qr/\Q$live->{key}\E/, 'never the key');
my $lf = hgetall($r->client, "apikey:$live->{hash}");
is($lf->{status}, 'revoked', 'the key is revoked');
is($lf->{reason}, 'leaked', 'with reason leaked');
ok($lf->{revoked_at} && $lf->{revoked_by}, 'revoked_at, revoked_by');
ok(wait_until(sub { get($live->{key})->status == 401 }, timeout => 2),
   'nginx refuses it');
is(get($live2->{key})->status, 200, 'the other key still works');

$res = cli('leaked', '--json', { stdin => "$live->{key}\nnoise\n" });
is($res->{exit}, 0, 'leaked again: nothing revoked, exit 0');
is_deeply(eval { $json->decode($res->{out}) },
          { revoked => [], already => 1, not_keys => 1 },
          '--json: revoked, already, not_keys');
$res = cli('leaked', { stdin => '' });
is($res->{exit}, 0, 'no findings: exit 0');

my $au = cli('audit', 'live-1', '--json');
my $entries = eval { $json->decode($au->{out}) } || [];
is($entries->[-1]{command}, 'leaked', 'the audit trail has the leaked entry');
is($entries->[-1]{reason}, 'leaked', 'with its reason');
is_deeply($entries->[-1]{changes}{status}, [ 'active', 'revoked' ],
          'and the status change');

# --- the scanner rules ---------------------------------------------------------

my $dir = (__FILE__ =~ s{/?t/[^/]+$}{}r || '.') . '/contrib/scanners';
my %rx;
{
    my $t = slurp("$dir/gitleaks.toml");
    my ($re) = $t =~ /^regex = '''(.*)'''$/m;
    ok($re, 'gitleaks.toml: a regex');
    like($t, qr/^secretGroup = 1$/m, 'gitleaks.toml: the key is group 1');
    $rx{gitleaks} = $re;

    my $y = slurp("$dir/trufflehog.yaml");
    my ($tr) = $y =~ /^\s+key: '(.*)'$/m;
    ok($tr, 'trufflehog.yaml: a regex');
    $rx{trufflehog} = $tr;

    my $gh = slurp("$dir/github-secret-scanning.yml");
    my %p = $gh =~ /^(\w+): '(.*)'$/mg;
    ok($p{secret_format} && $p{before_secret} && $p{after_secret},
       'github-secret-scanning.yml: the secret format, before and after');
    $rx{github} = "(?:$p{before_secret})($p{secret_format})(?:$p{after_secret})";
    like($p{test_string}, qr/$rx{github}/, 'github: its own test string matches');
}

# keys as apikeyctl makes them
my @keys = map { checksum_key('ak') } 1 .. 20;
my $mk = cli('create', '--json');
push @keys, (eval { $json->decode($mk->{out}) } || {})->{key};
track_key($keys[-1]);

my $k = $keys[0];
my @near = (
    substr($k, 0, -1),                   # 35 characters after ak_
    $k . 'x',                            # 37
    "x$k",                               # inside a longer word
    "${k}_",                             # followed by a word character
    'AK_' . substr($k, 3),               # the prefix in capitals
    'ak-' . substr($k, 3),               # another separator
    'ak_' . substr($k, 3, 20) . '-' . substr($k, 24),   # a - inside
    'ak_' . ('=' x 36),                  # not base62
);

for my $name (sort keys %rx) {
    my $re = qr/$rx{$name}/;
    my $hits = grep { my ($m) = "token=$_;" =~ $re; defined $m && $m eq $_ } @keys;
    is($hits, scalar @keys, "$name: matches every generated key, exactly");
    for my $ctx ("$k", "Authorization: Bearer $k\n", "\"$k\"", "key=$k&x=1") {
        my ($m) = $ctx =~ $re;
        is($m, $k, "$name: finds the key in " . ($ctx =~ s/\Q$k\E/KEY/r =~ s/\n/\\n/r));
    }
    for my $i (0 .. $#near) {
        my ($m) = "token=$near[$i];" =~ $re;
        ok(!defined $m, "$name: near miss $i not matched")
            or diag("matched $m");
    }
}

done_testing();
