#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# Statuses and expiry in apikeyctl, against a real redis-server:
#  - create --expires 90d | DATE;
#  - list's STATUS column is what the module makes of the record now:
#    disabled is shown as disabled (not revoked), a passed expires_at as
#    expired, an old secret of a rotation as alias (in its grace) or
#    rotated (after it);
#  - list --status expired | expiring [--within 30d] | alias | rotated;
#  - report --prometheus [FILE]: a node_exporter textfile (keys by status
#    and plan, keys expiring within 7 and 30 days), written to FILE.tmp and
#    renamed, in the text format Prometheus reads.

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
sub create {
    my $res = cli('create', '--json', @_);
    is($res->{exit}, 0, "create @_") or diag($res->{err});
    my $k = eval { $json->decode($res->{out}) } || {};
    track_key($k->{key}) if $k->{key};
    return $k;
}
# id -> status, from list
sub listed {
    my $res = cli('list', @_);
    is($res->{exit}, 0, "list @_") or diag($res->{err});
    my %s = map { my @c = split /\t/; ($c[0] => $c[1]) } split /\n/, $res->{out};
    return \%s;
}

my $now = time;
my $k90 = create('--id', 'in90d', '--plan', 'pro', '--expires', '90d');
ok(abs(hgetall($db, "apikey:$k90->{hash}")->{expires_at} - ($now + 90 * 86400)) < 5,
   '--expires 90d: now + 90 days');
my $date = create('--id', 'dated', '--expires', '2099-01-31');
is(hgetall($db, "apikey:$date->{hash}")->{expires_at}, 4073500800,
   '--expires 2099-01-31: 00:00 UTC of that day');
my $bad = cli('create', '--expires', 'soonish');
is($bad->{exit}, 2, '--expires with a bad value: exit 2');

create('--id', 'in5d', '--plan', 'pro', '--expires', '5d');
create('--id', 'in20d', '--expires', '20d');
create('--id', 'forever', '--plan', 'free');
create('--id', 'off', '--plan', 'free');
create('--id', 'gone', '--plan', 'free');
create('--id', 'old', '--plan', 'pro', '--expires', '60s');
cli('set', 'off', 'status=disabled');
cli('revoke', 'gone');
# expired a minute ago (set by hand: apikeyctl refuses a past --expires)
my $old = cli('show', 'old', '--json');
my $oh = (eval { $json->decode($old->{out}) } || {})->{hash};
$db->cmd('HSET', "apikey:$oh", 'expires_at', time - 60);

my $rot = create('--id', 'rot');
my $rr = cli('rotate', 'rot', '--grace', '1h', '--json');
my $rn = eval { $json->decode($rr->{out}) } || {};
track_key($rn->{key});
my $ended = create('--id', 'ended');
my $er = cli('rotate', 'ended', '--grace', '0', '--json');
track_key((eval { $json->decode($er->{out}) } || {})->{key});

my $all = listed();
is($all->{off}, 'disabled', 'a disabled key is listed as disabled');
is($all->{gone}, 'revoked', 'a revoked one as revoked');
is($all->{in5d}, 'active', 'a key expiring in 5 days is active');
my $res = cli('list');
like($res->{out}, qr/^old\texpired\t/m, 'an expired key as expired');
like($res->{out}, qr/^rot\talias\t.*\t\Q$rot->{hash}\E$/m,
     'the old secret of a rotation in its grace: alias');
like($res->{out}, qr/^rot\tactive\t.*\t\Q$rn->{hash}\E$/m, 'the new one: active');
like($res->{out}, qr/^ended\trotated\t/m, 'an old secret after its grace: rotated');
my $sh = cli('show', $rot->{hash});
like($sh->{out}, qr/^alias_until\s+\d+ \(\S+Z\) \(an old secret: alias\)$/m,
     'show: alias_until with its time and what it means');

is_deeply([ sort keys %{ listed('--status', 'expired') } ], [ 'old' ],
          '--status expired');
is_deeply([ sort keys %{ listed('--status', 'expiring') } ], [ 'in20d', 'in5d' ],
          '--status expiring: within 30 days by default');
is_deeply([ sort keys %{ listed('--status', 'expiring', '--within', '7d') } ],
          [ 'in5d' ], '--within 7d');
is_deeply([ sort keys %{ listed('--status', 'expiring', '--within', '2160h') } ],
          [ 'in20d', 'in5d', 'in90d' ], '--within 2160h (hours)');
is_deeply([ sort keys %{ listed('--status', 'disabled') } ], [ 'off' ],
          '--status disabled');
my $active = listed('--status', 'active');
ok(!exists $active->{old} && !exists $active->{off} && exists $active->{in5d},
   '--status active leaves out expired and disabled keys');
for my $a ([qw(--status expiring --within 3x)], [qw(--status soon)],
           [qw(--status active --within 7d)]) {
    is(cli('list', @$a)->{exit}, 2, "list @$a: exit 2");
}

# --- report --prometheus --------------------------------------------------------

$res = cli('report', '--prometheus');
is($res->{exit}, 0, 'report --prometheus (stdout)') or diag($res->{err});
my $text = $res->{out};
my %m;
for my $l (split /\n/, $text) {
    next if $l =~ /^# (HELP|TYPE) apikey_\w+ /;
    like($l, qr/^apikey_\w+(\{(\w+="(?:[^"\\]|\\.)*",?)+\})? \d+$/,
         "a sample line: $l");
    my ($name, $v) = $l =~ /^(\S+) (\d+)$/;
    $m{$name} = $v;
}
is($m{'apikey_keys{status="active",plan="pro"}'}, 2, 'active pro keys: in90d, in5d');
is($m{'apikey_keys{status="active",plan="free"}'}, 1, 'active free keys: forever');
is($m{'apikey_keys{status="disabled",plan="free"}'}, 1, 'disabled');
is($m{'apikey_keys{status="revoked",plan="free"}'}, 1, 'revoked');
is($m{'apikey_keys{status="expired",plan="pro"}'}, 1, 'expired');
is($m{'apikey_keys{status="alias",plan=""}'}, 1, 'alias');
is($m{'apikey_keys_expiring{within="7d"}'}, 1, 'expiring within 7 days');
is($m{'apikey_keys_expiring{within="30d"}'}, 2, 'within 30 days');
ok(abs($m{apikey_report_timestamp_seconds} - time) < 30, 'the timestamp');

like($text, qr/^# TYPE apikey_keys gauge$/m, 'TYPE lines');

my $file = "$dir/apikeys.prom";
$res = cli('report', '--prometheus', $file);
is($res->{exit}, 0, 'report --prometheus FILE') or diag($res->{err});
is(slurp($file) =~ s/^apikey_report_timestamp_seconds \d+$//mr,
   $text =~ s/^apikey_report_timestamp_seconds \d+$//mr, 'the same text in the file');
ok(!-e "$file.tmp", 'no FILE.tmp left');
$res = cli('report', '--prometheus', "$dir/no/such/dir/x.prom");
is($res->{exit}, 2, 'an unwritable file: exit 2');
is(cli('report')->{exit}, 2, 'report without --prometheus: exit 2');

# unused: active keys with no last use in 90 days (the module's usage flush
# writes {prefix}usage:{{prefix}{hash}}:last_used; none here yet)
my $nactive = 0;
$nactive += $m{$_} for grep { /^apikey_keys\{status="active",/ } keys %m;
is($m{'apikey_keys_unused{for="90d"}'}, $nactive,
   "unused for 90 days: every active key while nginx wrote no last use ($nactive)");
$db->cmd('SET', "apikey:usage:{apikey:$k90->{hash}}:last_used", int(time) - 3600);
$db->cmd('SET', "apikey:usage:{apikey:$date->{hash}}:last_used", int(time) - 100 * 86400);
my ($unused) = cli('report', '--prometheus')->{out} =~ /^apikey_keys_unused\{for="90d"\} (\d+)$/m;
is($unused, $nactive - 1, 'one key used an hour ago: not unused; one used 100 days ago: still unused');

# a plan with a quote and a backslash is escaped
cli('set', 'forever', 'plan=a"b\\c');
$res = cli('report', '--prometheus');
like($res->{out}, qr/^apikey_keys\{status="active",plan="a\\"b\\\\c"\} 1$/m,
     'label values are escaped');

done_testing();
