#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl's audit trail and hash mode marker, against a real redis-server
# (and a Redis Cluster for the trail, whose stream is one key):
#  - every change (create, set, revoke --reason, rotate, delete) appends one
#    entry to {prefix}audit: time, actor (--actor, APIKEY_ACTOR, else
#    user@host), command, id, hash, the changed fields old -> new, reason;
#    "audit [KEY] [--since] [--json]" reads it; the stream is capped
#    (MAXLEN ~);
#  - revoke --reason stores revoked_at, revoked_by and reason on the record;
#  - the first write stores {prefix}meta (hash mode, the hash of a fixed
#    label under it: never the secret); a write with another mode or secret
#    is refused (exit 2, nothing written), reads are not.

use strict;
use warnings;

use Test::More;
use JSON::PP ();

use ApiKeyTest;
use ApiKeyTest::Cli qw(cli_path run_cli hgetall);

BAIL_OUT('apikeyctl not built: ' . cli_path() . ' (make cli, or set AK_CLI)')
    unless -x cli_path();

my $json = JSON::PP->new;
my $r = ApiKeyTest::Redis->start;
my $url = 'redis://127.0.0.1:' . $r->port;
my $db = $r->client;
my $dir = tmpdir();

sub cli {
    my (@args) = @_;
    my %o;
    %o = %{ pop @args } if @args && ref $args[-1] eq 'HASH';
    return run_cli(args => ['--redis', $url, @args], %o);
}
sub jdecode { my $v = eval { $json->decode($_[0]) }; return $v }

# --- the marker -----------------------------------------------------------------

ok(!$db->cmd('EXISTS', 'apikey:meta'), 'no marker before the first write');
my $res = cli('list');
is($res->{exit}, 0, 'a read (list) works without a marker');
ok(!$db->cmd('EXISTS', 'apikey:meta'), 'and writes none');

$res = cli('create', '--json', '--id', 'a1', '--owner', 'acme', '--actor', 'alice');
is($res->{exit}, 0, 'the first create') or diag($res->{err});
my $a1 = jdecode($res->{out}) || {};
track_key($a1->{key});
my $meta = hgetall($db, 'apikey:meta');
is($meta->{hash}, 'sha256', 'the marker holds the hash mode');
is($meta->{check}, sha256_hex('ngx_http_api_key_module hash check v1'),
   'and "check": the hash of the fixed label under that mode');

my $secret = spew("$dir/secret", "t27-secret\n", 0600);
my $other = spew("$dir/other", "t27-other\n", 0600);
my $n0 = $db->cmd('DBSIZE');
$res = cli('--hash', 'hmac-sha256', '--secret-file', $secret, 'create');
is($res->{exit}, 2, 'create with another hash mode: exit 2');
like($res->{err}, qr/hashed with "sha256".*not with --hash hmac-sha256/,
     'saying which mode the keys use');
is($res->{out}, '', 'no key printed');
is($db->cmd('DBSIZE'), $n0, 'nothing written');
for my $cmd ([qw(revoke a1)], [qw(set a1 plan=x)], [qw(rotate a1 --grace 1h)],
             [qw(delete a1)]) {
    my $x = cli('--hash', 'hmac-sha256', '--secret-file', $secret, @$cmd);
    is($x->{exit}, 2, "$cmd->[0] with another mode: refused");
}
is(hgetall($db, 'apikey:' . $a1->{hash})->{status}, 'active', 'a1 untouched');
$res = cli('--hash', 'hmac-sha256', '--secret-file', $secret, 'show',
           $a1->{hash});
is($res->{exit}, 0, 'a read with another mode is not refused');

# a prefix of HMAC keys: the marker holds the check of that secret
my @h = ('--prefix', 'hk:', '--hash', 'hmac-sha256');
$res = cli(@h, '--secret-file', $secret, 'create');
is($res->{exit}, 0, 'create under an HMAC prefix') or diag($res->{err});
track_key($res->{out} =~ s/\s+//gr);
my $hm = hgetall($db, 'hk:meta');
is($hm->{hash}, 'hmac-sha256', 'its marker says hmac-sha256');
is($hm->{check}, hmac_sha256_hex('ngx_http_api_key_module hash check v1',
                                 't27-secret'),
   'check = HMAC of the label with the secret');
unlike(join(' ', %$hm), qr/t27-secret/, 'the secret itself is not stored');
$res = cli(@h, '--secret-file', $other, 'create');
is($res->{exit}, 2, 'another secret: refused');
like($res->{err}, qr/another secret/, 'saying so');
$res = cli('--prefix', 'hk:', 'create');
is($res->{exit}, 2, 'sha256 on the HMAC prefix: refused');

# --- the audit trail ----------------------------------------------------------------

$res = cli('set', 'a1', 'plan=gold', 'owner=', { env => { APIKEY_ACTOR => 'bob' } });
is($res->{exit}, 0, 'set (actor from APIKEY_ACTOR)') or diag($res->{err});
$res = cli('revoke', 'a1', '--reason', 'customer left', '--actor', 'carol');
is($res->{exit}, 0, 'revoke --reason') or diag($res->{err});
my $f = hgetall($db, "apikey:$a1->{hash}");
is($f->{reason}, 'customer left', 'the record holds the reason');
is($f->{revoked_by}, 'carol', 'revoked_by: the actor');
ok(abs($f->{revoked_at} - time) < 5, 'revoked_at: now');
$res = cli('set', 'a1', 'status=active');
is($res->{exit}, 0, 'set status=active') or diag($res->{err});
$f = hgetall($db, "apikey:$a1->{hash}");
ok(!exists $f->{revoked_at} && !exists $f->{revoked_by} && !exists $f->{reason},
   're-activated: revoked_at, revoked_by and reason are removed');
$res = cli('rotate', 'a1', '--grace', '1h', '--json');
is($res->{exit}, 0, 'rotate') or diag($res->{err});
my $a2 = jdecode($res->{out}) || {};
track_key($a2->{key});
$res = cli('delete', $a2->{hash});
is($res->{exit}, 0, 'delete');

$res = cli('audit', 'a1', '--json');
is($res->{exit}, 0, 'audit a1 --json') or diag($res->{err});
my $e = jdecode($res->{out}) || [];
is_deeply([ map { $_->{command} } @$e ],
          [ qw(create set revoke set rotate delete) ],
          'one entry per change of the key, in order');
is($e->[0]{actor}, 'alice', 'create: actor from --actor');
is($e->[0]{changes}{owner}[1], 'acme', 'create: the fields, absent -> value');
is($e->[1]{actor}, 'bob', 'set: actor from APIKEY_ACTOR');
is_deeply($e->[1]{changes}, { plan => [ undef, 'gold' ], owner => [ 'acme', undef ] },
          'set: only the changed fields, old -> new');
is_deeply($e->[2]{changes}{status}, [ 'active', 'revoked' ], 'revoke: the status');
is($e->[2]{reason}, 'customer left', 'revoke: the reason');
is($e->[4]{hash}, $a2->{hash}, 'rotate: the new hash');
is_deeply($e->[4]{changes}{hash}, [ $a1->{hash}, $a2->{hash} ], 'rotate: old -> new hash');
is($e->[5]{changes}{plan}[0], 'gold', 'delete: the fields it removed');
like($e->[3]{actor}, qr/^\S+@\S+$/, 'the default actor is user@host');
ok(abs($e->[0]{time} - time) < 30, 'time: unix seconds');
unlike($res->{out}, qr/\Q$a1->{key}\E|\Q$a2->{key}\E/, 'no key in the trail');

$res = cli('audit');
is(scalar(split /\n/, $res->{out}), 6, 'audit: every entry under the prefix (one line each)');
like($res->{out}, qr/^\d{4}-\d\d-\d\dT\S+Z\tcarol\trevoke\ta1\t.*\treason: customer left$/m,
     'text: time, actor, command, id, changes, reason');
$res = cli('audit', '--since', '2000-01-01', '--json');
is(scalar @{ jdecode($res->{out}) || [] }, 6, '--since a past date: all');
$res = cli('audit', '--since', '1h', '--json');
is(scalar @{ jdecode($res->{out}) || [] }, 6, '--since 1h (ago): all');
$res = cli('audit', '--since', '2099-01-01', '--json');
is_deeply(jdecode($res->{out}), [], '--since the future: none');
$res = cli('audit', 'nobody');
is($res->{out}, '', 'another id: none');

$db->cmd('DEL', 'apikey:audit');
for (1 .. 3) {
    $db->cmd('XADD', 'apikey:audit', '*', 'time', 1, 'command', 'x');
}
my $info = $db->cmd('XINFO', 'STREAM', 'apikey:audit');
ok(scalar(@$info), 'the trail is a stream');
my $mon = $r->monitor;
cli('create', '--id', 'capped');
like(join("\n", $mon->lines(0.5)), qr/"XADD" "apikey:audit" "MAXLEN" "~" "100000"/,
     'entries are added with MAXLEN ~ 100000');

done_testing();
