#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl against a real redis-server: what an operator relies on.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use JSON::PP ();

use ApiKeyTest;
use ApiKeyTest::Cli qw(cli_path run_cli key_checksum_ok subscribe
                       next_message messages pipeline all_keys hgetall
                       everything_in scan_repeat_proxy);

BAIL_OUT('apikeyctl not built: ' . cli_path() . ' (make cli, or set AK_CLI)')
    unless -x cli_path();

my $json = JSON::PP->new;
my $redis = ApiKeyTest::Redis->start;
my $url = 'redis://127.0.0.1:' . $redis->port;
my $db = $redis->client;
my $tmp = tmpdir();

sub cli {
    my (@args) = @_;
    my %o;
    %o = %{ pop @args } if @args && ref $args[-1] eq 'HASH';
    return run_cli(args => ['--redis', $url, @args], %o);
}

sub dbsize { $db->cmd('DBSIZE') }

# Every name and every value in Redis, as one string.
sub everything_in_redis { everything_in($db) }

sub near {
    my ($got, $want, $slack, $name) = @_;
    ok(defined $got && $got =~ /^\d+$/ && abs($got - $want) <= $slack, $name)
        or diag("got " . ($got // 'undef') . ", want $want +- $slack");
}

sub write_file {
    my ($name, $content) = @_;
    return spew("$tmp/$name", $content, 0600);
}


# --- help ---------------------------------------------------------------

{
    my $r = run_cli(args => ['--help']);
    is($r->{exit}, 0, '--help exits 0');
    like($r->{out}, qr/^usage: apikeyctl/, '--help prints the usage');
    for my $c (qw(create revoke rotate set show list usage delete)) {
        my $h = run_cli(args => [$c, '--help']);
        is($h->{exit}, 0, "$c --help exits 0");
        like($h->{out}, qr/^usage: apikeyctl $c/, "$c --help is its own");
    }
    $r = run_cli(args => ['frobnicate']);
    is($r->{exit}, 2, 'an unknown command exits 2');
    $r = run_cli(args => ['create', '--colour', 'red']);
    is($r->{exit}, 2, 'an unknown option exits 2');
    like($r->{err}, qr/^apikeyctl: .*--colour/m, 'and names it');
}


# --- create: only the hash is stored, with the given fields --------------

my ($key1, $hex1, $id1);
{
    my $t0 = time;
    my $r = cli('create', '--owner', 'acme', '--plan', 'pro',
                '--scopes', 'read  write', '--ips', '10.0.0.0/8,127.0.0.1',
                '--referrers', 'example.com,*.example.org', '--rate', '10/s',
                '--burst', '5', '--quota', '1000/day', '--expires', '90d');
    is($r->{exit}, 0, 'create exits 0') or diag($r->{err});
    like($r->{out}, qr/^ak_[0-9A-Za-z]{36}\n\z/,
         'create prints the key alone on one line');
    ($key1) = $r->{out} =~ /^(\S+)/;
    $key1 //= '';
    ok(key_checksum_ok($key1, 'ak'), 'the key carries a valid CRC-32 checksum');
    unlike($r->{err}, qr/\Q$key1\E/, 'the key is not on stderr');

    $hex1 = sha256_hex($key1);
    $id1 = substr($hex1, 0, 12);
    like($r->{err}, qr/\Q$id1\E/, 'stderr shows the id');

    is_deeply([ all_keys($db, '*') ],
              [ sort("apikey:$hex1", "apikey:id:$id1", 'apikey:audit',
                     'apikey:meta') ],
              'Redis holds the record named by the SHA-256 and the id lookup '
              . '(and the audit trail and the hash mode marker)');
    is($db->cmd('TYPE', "apikey:$hex1"), 'hash', 'the record is a HASH');
    is($db->cmd('GET', "apikey:id:$id1"), $hex1, 'the id lookup holds the hash');

    my $h = hgetall($db, "apikey:$hex1");
    my $exp = delete $h->{expires_at};
    my $created = delete $h->{created_at};
    is_deeply($h, { id => $id1, owner => 'acme', plan => 'pro',
                    key_prefix => 'ak',
                    status => 'active', scopes => 'read write',
                    ips => '10.0.0.0/8,127.0.0.1',
                    referrers => 'example.com,*.example.org',
                    rate => '10/s', burst => '5', quota => '1000/day' },
              'the record holds exactly the given fields');
    near($exp, $t0 + 90 * 86400, 5, 'expires_at is now + 90 days');
    near($created, $t0, 5, 'created_at is now');

    my $all = everything_in_redis();
    unlike($all, qr/\Q$key1\E/, 'the key appears nowhere in Redis');
    unlike($all, qr/\Q${\ substr($key1, 3, 30)}\E/,
           'not even its random part');
}

my ($key2, $hex2);
{
    my $r = cli('create', '--json', '--id', 'svc-1', '--owner', 'beta');
    is($r->{exit}, 0, 'create --json exits 0') or diag($r->{err});
    my $j = eval { $json->decode($r->{out}) } || {};
    ($key2, $hex2) = ($j->{key} // '', $j->{hash} // '');
    ok(key_checksum_ok($key2, 'ak'), '--json: "key" is a checksummed key');
    is($j->{id}, 'svc-1', '--json: "id" is the given id');
    is($hex2, sha256_hex($key2), '--json: "hash" is the SHA-256 of the key');
    is($db->cmd('HGET', "apikey:$hex2", 'id'), 'svc-1', 'record has the id');
    is($db->cmd('GET', 'apikey:id:svc-1'), $hex2, 'and the id lookup');
    unlike(everything_in_redis(), qr/\Q$key2\E/, 'the key is not in Redis');
    unlike($r->{err}, qr/\Q$key2\E/, 'nor on stderr');

    my $n = dbsize();
    $r = cli('create', '--id', 'svc-1');
    is($r->{exit}, 2, 'an id already in use is refused with exit 2');
    like($r->{err}, qr/svc-1.*in use/, 'saying so');
    is($r->{out}, '', 'and no key is printed');
    is(dbsize(), $n, 'and nothing is written');

    $r = cli('create', '--key-prefix', 'live_acme');
    is($r->{exit}, 0, 'create --key-prefix');
    like($r->{out}, qr/^live_acme_[0-9A-Za-z]{36}\n\z/, 'uses the prefix');
    my $live = $r->{out} =~ s/\n//r;
    ok(key_checksum_ok($live, 'live_acme'), 'checksum ok');
    $r = cli('rotate', sha256_hex($live), '--grace', '1h');
    is($r->{exit}, 0, 'rotate a live_acme key') or diag($r->{err});
    like($r->{out}, qr/^live_acme_[0-9A-Za-z]{36}\n\z/,
         'the new key keeps the prefix');
    my $live2 = $r->{out} =~ s/\n//r;
    $r = cli('rotate', sha256_hex($live2), '--grace', '1h',
             '--key-prefix', 'test');
    like($r->{out}, qr/^test_[0-9A-Za-z]{36}\n\z/, 'unless --key-prefix says');
    cli('delete', sha256_hex($_)) for $live, $live2, $r->{out} =~ s/\n//r;
}


# --- the key could not be shown: no record is left behind -------------------

{
    my $n = dbsize();
    my $r = cli('create', '--id', 'lost', { stdout => '/dev/full' });
    is($r->{exit}, 1, 'create with an unwritable stdout fails');
    like($r->{err}, qr/cannot write the key.*removed/, 'saying so');
    is(dbsize(), $n, 'and removes the record it made');
}


# --- a key given as an argument is hidden from ps ----------------------------

{
    my $mute = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                     LocalPort => 0, Proto => 'tcp');
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec { cli_path() } cli_path(), '--redis',
            'redis://127.0.0.1:' . $mute->sockport, '--timeout', '3',
            'show', $key1 or POSIX::_exit(127);
    }
    my $cmdline = '';
    wait_until(sub {
        $cmdline = slurp("/proc/$pid/cmdline");
        $cmdline =~ /show\0\*+\0/;      # once main() has run
    }, timeout => 2);
    $cmdline =~ s/\0/ /g;
    like($cmdline, qr/ show \*{${\ length $key1}} /,
         'the key is overwritten in /proc/PID/cmdline while it runs');
    unlike($cmdline, qr/\Q$key1\E/, 'it does not show there');
    kill 'TERM', $pid;
    waitpid($pid, 0);
}


# --- validation: exit 2, the field named, nothing written ------------------

{
    my $n = dbsize();
    my @bad = (
        [ [qw(create --rate fast)],           qr/rate/,     'bad rate' ],
        [ [qw(create --rate 10/s --burst -1)], qr/burst/,   'bad burst' ],
        [ [qw(create --ips 10.0.0.300)],      qr/ips/,      'bad ip' ],
        [ [qw(create --ips 10.0.0.0/33)],     qr/ips/,      'bad cidr' ],
        [ [qw(create --quota 5/week)],        qr/quota/,    'bad quota' ],
        [ [qw(create --expires soon)],        qr/expires/,  'bad expires' ],
        [ [qw(create --expires 2001-01-01)],  qr/expires/,  'past expires' ],
        [ [qw(create --expires 2027-02-30)],  qr/expires/,  'no such date' ],
        [ [qw(create --id), 'has space'],     qr/id/,       'bad id' ],
        [ [qw(create --key-prefix bad-pfx)],  qr/key-prefix/, 'bad key prefix' ],
        [ [qw(set svc-1 status=gone)],        qr/status/,   'bad status' ],
        [ [qw(set svc-1 rate=1/fortnight)],   qr/rate/,     'set: bad rate' ],
        [ [qw(set svc-1 ips=1.2.3)],          qr/ips/,      'set: bad ip' ],
        [ [qw(set svc-1 expires_at=later)],   qr/expires/,  'set: bad expires' ],
        [ [qw(set svc-1 colour=red)],         qr/colour/,   'set: unknown field' ],
        [ [qw(set svc-1 owner)],              qr/field=value/, 'set: no =' ],
        [ [qw(rotate svc-1)],                 qr/grace/,    'rotate: no --grace' ],
        [ [qw(rotate svc-1 --grace forever)], qr/grace/,    'rotate: bad grace' ],
        [ [qw(list --status gone)],           qr/status/,   'list: bad status' ],
        [ [qw(list --page-size 0)],           qr/page-size/, 'list: bad page size' ],
        [ ['--prefix', 'ak{x}:', 'create'],   qr/--prefix.*\{/, 'prefix with a brace' ],
        [ ['--prefix', 'ak}', 'list'],        qr/--prefix.*\}/, 'prefix with a closing brace' ],
    );
    for my $b (@bad) {
        my ($args, $re, $name) = @$b;
        my $r = cli(@$args);
        is($r->{exit}, 2, "$name: exit 2");
        like($r->{err}, qr/^apikeyctl: .*$re/m, "$name: the message names it")
            or diag($r->{err});
    }
    is(dbsize(), $n, 'no invalid value was written');
    is($db->cmd('HGET', "apikey:$hex2", 'status'), 'active',
       'the record kept its status');
}


# --- not found: exit 3 ---------------------------------------------------

for my $c ([qw(show no-such-id)], [qw(revoke no-such-id)],
           [qw(usage no-such-id)], [qw(delete no-such-id)],
           [qw(set no-such-id owner=x)], [qw(rotate no-such-id --grace 1h)],
           ['show', 'ak_' . ('x' x 36)])
{
    my $r = cli(@$c);
    is($r->{exit}, 3, "@$c[0 .. 1]: exit 3");
    like($r->{err}, qr/^apikeyctl: no such key or id/m, "@$c[0]: says so");
}


# --- Redis unreachable: exit 4, quickly -----------------------------------

{
    my $port = free_port();
    my $r = run_cli(args => ['--redis', "redis://127.0.0.1:$port", 'list']);
    is($r->{exit}, 4, 'connection refused: exit 4');
    like($r->{err}, qr/^apikeyctl: .*redis.*127\.0\.0\.1:$port/m,
         'the message names the server');
    ok($r->{secs} < 3, 'at once');

    # a server that accepts connections but never answers
    my $mute = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                     LocalPort => 0, Proto => 'tcp');
    my $mport = $mute->sockport;
    $r = run_cli(args => ['--redis', "redis://127.0.0.1:$mport",
                          '--timeout', '1', 'show', 'svc-1']);
    is($r->{exit}, 4, 'a mute server: exit 4');
    ok($r->{secs} < 4, 'after the timeout, not a hang')
        or diag("took $r->{secs}s");
    like($r->{err}, qr/no answer|timed out|timeout/i, 'saying it timed out');

    $r = run_cli(args => ['--redis', 'http://127.0.0.1:6379', 'list']);
    is($r->{exit}, 2, 'a bad URL is a usage error');
    like($r->{err}, qr{redis://}, 'naming the forms');

    $r = run_cli(args => ['--redis', 'redis://user:hunter2@127.0.0.1:notaport',
                          'list']);
    is($r->{exit}, 2, 'a bad port is a usage error');
    unlike($r->{err}, qr/hunter2/, 'the password in the URL is not echoed');
}


# --- revoke: status and the event -----------------------------------------

{
    my $sub = $redis->client;
    subscribe($sub, 'apikey:events');

    my $r = cli('revoke', 'svc-1');
    is($r->{exit}, 0, 'revoke by id exits 0') or diag($r->{err});
    is($db->cmd('HGET', "apikey:$hex2", 'status'), 'revoked', 'status revoked');
    my $m = next_message($sub, 2);
    is_deeply($m, ['apikey:events', "revoke $hex2"],
              'revoke publishes "revoke HASH" on apikey:events');
    unlike($r->{err}, qr/nobody listens/, 'and knows someone received it');

    # by key, from stdin: the key never is an argument
    $r = cli('revoke', '-', { stdin => "$key1\n" });
    is($r->{exit}, 0, 'revoke - (key on stdin) exits 0') or diag($r->{err});
    is($db->cmd('HGET', "apikey:$hex1", 'status'), 'revoked', 'status revoked');
    is_deeply(next_message($sub, 2), ['apikey:events', "revoke $hex1"],
              'and the event names its hash');
    unlike($r->{err}, qr/\Q$key1\E/, 'the key is not echoed');

    $r = cli('show', '-', { stdin => "$key1\r\n" });
    is($r->{exit}, 0, 'show - with a CRLF line');
    like($r->{out}, qr/^hash\s+$hex1$/m, 'finds the key');
    unlike($r->{out} . $r->{err}, qr/\Q$key1\E/, 'show never prints the key');

    $r = cli('show', $key1, '--json');
    my $j = eval { $json->decode($r->{out}) } || {};
    is($j->{hash}, $hex1, 'show KEY --json: the hash');
    is($j->{fields}{owner}, 'acme', 'show --json: the fields');
    unlike($r->{out}, qr/\Q$key1\E/, 'show --json never prints the key');

    $r = cli('show', $hex1);
    is($r->{exit}, 0, 'a record can be named by its hash');

    # a custom channel
    my $sub2 = $redis->client;
    subscribe($sub2, 'ops:ev');
    $r = cli('--channel', 'ops:ev', 'set', 'svc-1', 'status=active');
    is($r->{exit}, 0, 'set status=active');
    is_deeply(next_message($sub2, 2), ['ops:ev', "update $hex2"],
              '--channel: the event goes to that channel');
    messages($sub, 0.3);
}


# --- set -----------------------------------------------------------------

{
    my $sub = $redis->client;
    subscribe($sub, 'apikey:events');

    my $r = cli('set', 'svc-1', 'rate=5/m', 'burst=2', 'owner=',
                'expires_at=2031-01-01', 'scopes=a  b');
    is($r->{exit}, 0, 'set field=value field= exits 0') or diag($r->{err});
    my $h = hgetall($db, "apikey:$hex2");
    is($h->{rate}, '5/m', 'rate set');
    is($h->{burst}, '2', 'burst set');
    # show says how many requests the rate admits at once: burst + 1, or
    # N of N/period without a burst field
    like(cli('show', 'svc-1')->{out}, qr/^rate\s+5\/m \(3 at once, then one per period \/ N: burst\)$/m,
         'show: rate 5/m burst 2: 3 at once');
    is((eval { $json->decode(cli('show', 'svc-1', '--json')->{out}) } || {})->{rate_at_once}, 3,
       'show --json: rate_at_once 3');
    is(cli('set', 'svc-1', 'burst=')->{exit}, 0, 'set burst= (no burst field)');
    like(cli('show', 'svc-1')->{out}, qr/^rate\s+5\/m \(5 at once, refilled at the rate: no burst field\)$/m,
         'show: rate 5/m and no burst field: 5 at once');
    is((eval { $json->decode(cli('show', 'svc-1', '--json')->{out}) } || {})->{rate_at_once}, 5,
       'show --json: rate_at_once 5');
    is(cli('set', 'svc-1', 'burst=2')->{exit}, 0, 'set burst=2 again');
    ok(!exists $h->{owner}, 'owner= removed the field');
    is($h->{expires_at}, 1924992000, 'a date is stored as unix seconds');
    is($h->{scopes}, 'a b', 'scopes normalised');
    is_deeply(next_message($sub, 2), ['apikey:events', "update $hex2"],
              'set publishes "update HASH"');

    $r = cli('set', 'svc-1', 'expires_at=0');
    ok(!$db->cmd('HEXISTS', "apikey:$hex2", 'expires_at'),
       'expires_at=0 removes the expiry');

    $r = cli('set', 'svc-1', 'ips=10.1.1.1', 'rate=bad');
    is($r->{exit}, 2, 'one bad field: exit 2');
    ok(!$db->cmd('HEXISTS', "apikey:$hex2", 'ips'), 'and no field is written');

    $r = cli('set', 'svc-1', 'status=disabled');
    my @m = map { $_->[1] } messages($sub, 0.5);
    ok((grep { $_ eq "revoke $hex2" } @m), 'status=disabled publishes revoke')
        or diag("@m");
    cli('set', 'svc-1', 'status=active');

    $r = cli('set', 'svc-1', 'id=svc-2');
    is($r->{exit}, 0, 'set id=');
    is($db->cmd('GET', 'apikey:id:svc-2'), $hex2, 'the new id names the key');
    ok(!$db->cmd('EXISTS', 'apikey:id:svc-1'), 'the old id is gone');
    is(cli('show', 'svc-1')->{exit}, 3, 'show old id: 3');
    $r = cli('set', 'svc-2', "id=$id1");
    is($r->{exit}, 2, 'set id= to an id in use: 2');
    cli('set', 'svc-2', 'id=svc-1');
    is($db->cmd('GET', 'apikey:id:svc-1'), $hex2, 'id moved back');
}


# --- rotate --------------------------------------------------------------

{
    my $t0 = time;
    my $r = cli('create', '--json', '--owner', 'rot', '--plan', 'gold',
                '--scopes', 'read', '--ips', '127.0.0.1', '--rate', '3/s',
                '--burst', '1', '--quota', '10/hour', '--expires', '30d');
    my $old = eval { $json->decode($r->{out}) } || {};
    my $old_fields = hgetall($db, "apikey:$old->{hash}");

    my $sub = $redis->client;
    subscribe($sub, 'apikey:events');

    $r = cli('rotate', '-', '--grace', '24h', '--json',
             { stdin => "$old->{key}\n" });
    is($r->{exit}, 0, 'rotate --grace 24h exits 0') or diag($r->{err});
    my $new = eval { $json->decode($r->{out}) } || {};
    ok(key_checksum_ok($new->{key} // '', 'ak'), 'prints a new key');
    isnt($new->{key}, $old->{key}, 'a different key');
    is($new->{hash}, sha256_hex($new->{key} // ''), 'its hash');
    is($new->{id}, $old->{id}, 'the same id');
    is($new->{old_id}, $old->{id}, '--json names the old id');

    my $nf = hgetall($db, "apikey:$new->{hash}");
    for my $f (qw(owner plan scopes ips rate burst quota status expires_at)) {
        is($nf->{$f}, $old_fields->{$f}, "the new key has the same $f");
    }
    is($nf->{id}, $new->{id}, 'the new record has its id');
    is($db->cmd('GET', "apikey:id:$new->{id}"), $new->{hash},
       'and its id lookup');

    my $of = hgetall($db, "apikey:$old->{hash}");
    near($of->{alias_until}, $t0 + 86400, 5,
         'the old key is an alias until now + grace');
    is($of->{expires_at}, $old_fields->{expires_at},
       'its expiry is unchanged');
    is($of->{status}, 'active', 'the old key is still active');
    is($db->cmd('GET', "apikey:id:$old->{id}"), $new->{hash},
       'the id names the new key');
    is_deeply(next_message($sub, 2), ['apikey:events', "update $old->{hash}"],
              'rotate publishes "update OLDHASH"');
    unlike(everything_in_redis(), qr/\Q$new->{key}\E/,
           'the new key appears nowhere in Redis');

    # the grace never extends the old key
    $r = cli('rotate', $new->{id}, '--grace', '365d', '--id', $new->{id});
    is($r->{exit}, 0, 'rotate --id with the same id');
    my $newer_key = $r->{out} =~ s/\n//r;
    my $newer = sha256_hex($newer_key);
    is($db->cmd('GET', "apikey:id:$new->{id}"), $newer,
       'giving the old id moves it to the new key');
    is($db->cmd('HGET', "apikey:$new->{hash}", 'alias_until'),
       $old_fields->{expires_at}, 'a grace past the expiry ends at the expiry');

    $r = cli('rotate', $new->{id}, '--grace', '0', '--expires', 'never');
    is($r->{exit}, 0, 'rotate --grace 0 --expires never');
    near($db->cmd('HGET', "apikey:$newer", 'alias_until'), time, 3,
         '--grace 0 ends the old key now');
    my $newest = sha256_hex($r->{out} =~ s/\n//r);
    ok(!$db->cmd('HEXISTS', "apikey:$newest", 'expires_at'),
       '--expires never: the new key does not expire');
}


# --- usage -----------------------------------------------------------------

{
    my $r = cli('create', '--json', '--id', 'metered', '--quota', '100/day');
    my $k = eval { $json->decode($r->{out}) } || {};
    my $now = time;
    my $day = $now - $now % 86400;
    my $hour = $now - $now % 3600;
    $db->cmd('SET', "apikey:usage:{apikey:$k->{hash}}:day:$day", 42);
    $db->cmd('SET', "apikey:usage:{apikey:$k->{hash}}:hour:$hour", 7);
    $db->cmd('SET', "apikey:usage:{apikey:$k->{hash}}:day:" . ($day - 86400), 99);

    $r = cli('usage', 'metered', '--json');
    is($r->{exit}, 0, 'usage --json exits 0') or diag($r->{err});
    my $u = eval { $json->decode($r->{out}) } || {};
    is($u->{limit}, 100, 'usage: the limit');
    is($u->{period}, 'day', 'usage: the period');
    is($u->{used}, 42, "usage: today's counter, not yesterday's");
    is($u->{remaining}, 58, 'usage: what remains');
    is($u->{window_start}, $day, 'usage: the window start');
    is($u->{windows}{hour}{used}, 7, 'usage: the hour counter');

    $r = cli('usage', 'metered');
    like($r->{out}, qr/^used\s+42$/m, 'usage (plain): used');
    like($r->{out}, qr/^remaining\s+58$/m, 'usage (plain): remaining');
}


# --- delete --------------------------------------------------------------

{
    my $sub = $redis->client;
    subscribe($sub, 'apikey:events');
    my $r = cli('delete', 'svc-1');
    is($r->{exit}, 0, 'delete exits 0') or diag($r->{err});
    ok(!$db->cmd('EXISTS', "apikey:$hex2"), 'the record is gone');
    ok(!$db->cmd('EXISTS', 'apikey:id:svc-1'), 'the id lookup is gone');
    is_deeply(next_message($sub, 2), ['apikey:events', "update $hex2"],
              'delete publishes "update HASH"');
    is(cli('show', 'svc-1')->{exit}, 3, 'then show: exit 3');
    is(cli('show', '-', { stdin => "$key2\n" })->{exit}, 3,
       'by key too');

    # an id whose record vanished (deleted by hand)
    $db->cmd('SET', 'apikey:id:orphan', 'ab' x 32);
    $r = cli('show', 'orphan');
    is($r->{exit}, 3, 'an id without its record: 3');
    $r = cli('delete', 'orphan');
    is($r->{exit}, 0, 'delete removes such an id');
    ok(!$db->cmd('EXISTS', 'apikey:id:orphan'), 'it is gone');
}


# --- --json everywhere: revoke, set, delete too ---------------------------

{
    for my $c (qw(create revoke rotate set show list usage delete)) {
        my $h = cli($c, '--help');
        like($h->{out} . $h->{err}, qr/--json/, "$c --help offers --json");
    }
    my $r = cli('create', '--owner', 'js', '--id', 'json-1', '--json');
    is($r->{exit}, 0, 'create --json') or diag $r->{err};
    my $c = eval { $json->decode($r->{out}) } || {};
    my $h = $c->{hash} // '';

    $r = cli('set', 'json-1', 'plan=gold', 'owner=', '--json');
    is($r->{exit}, 0, 'set --json exits 0') or diag $r->{err};
    is_deeply(eval { $json->decode($r->{out}) },
              { id => 'json-1', hash => $h, set => ['plan'], removed => ['owner'] },
              'set --json: id, hash, the fields set and removed');
    is($db->cmd('HGET', "apikey:$h", 'plan'), 'gold', '... and the field is set');

    $r = cli('revoke', 'json-1', '--json');
    is($r->{exit}, 0, 'revoke --json exits 0') or diag $r->{err};
    is_deeply(eval { $json->decode($r->{out}) },
              { id => 'json-1', hash => $h, status => 'revoked', was => 'active',
                reason => '' },
              'revoke --json: id, hash, status, the status before');
    $r = cli('revoke', 'json-1', '--json');
    is((eval { $json->decode($r->{out}) } || {})->{was}, 'revoked', 'revoke again: was revoked');

    $r = cli('delete', 'json-1', '--json');
    is($r->{exit}, 0, 'delete --json exits 0') or diag $r->{err};
    is_deeply(eval { $json->decode($r->{out}) },
              { id => 'json-1', hash => $h, record_deleted => JSON::PP::true },
              'delete --json: id, hash, record_deleted');

    $r = cli('delete', 'json-1', '--json');
    is($r->{exit}, 3, 'delete --json of a gone id: exit 3');
    is($r->{out}, '', '... nothing on stdout');
    like($r->{err}, qr/^apikeyctl: /m, '... the error on stderr, as text');
}


# --- list: 10,000 keys, each once, filters --------------------------------

{
    $db->cmd('FLUSHALL');
    my (%want, %owner, %status, %plan);
    my @cmds;
    for my $i (1 .. 10_000) {
        my $hex = sha256_hex("bulk-key-$i");
        my @f = (id => "k$i", owner => 'o' . ($i % 3), plan => 'p' . ($i % 2));
        my $st = $i % 5 == 0 ? 'revoked' : $i % 7 == 0 ? 'disabled'
               : $i % 2 ? 'active' : undef;       # absent means active
        push @f, status => $st if defined $st;
        push @cmds, ['HSET', "apikey:$hex", @f];
        $want{$hex} = 1;
        $owner{ 'o' . ($i % 3) }{$hex} = 1;
        $status{ $st // 'active' }{$hex} = 1;
        $plan{ 'p' . ($i % 2) }{$hex} = 1;
    }
    # names that are not records
    push @cmds, ['SET', 'apikey:id:k1', sha256_hex('bulk-key-1')],
                ['SET', 'apikey:usage:' . sha256_hex('x') . ':day:0', 1],
                ['SET', 'apikey:usage:{apikey:' . sha256_hex('x') . '}:day:0', 1],
                ['SET', 'apikey:rate:{apikey:' . sha256_hex('x') . '}', 1],
                ['HSET', 'apikey:' . uc(sha256_hex('upper')), 'id', 'u'],
                ['HSET', 'apikey:' . sha256_hex('short') . 'ff', 'id', 's'],
                ['HSET', 'other:' . sha256_hex('other'), 'id', 'x'],
                ['SET', 'apikey:notahash', 'x'];
    while (my @chunk = splice @cmds, 0, 1000) {
        pipeline($db, @chunk);
    }
    is(dbsize(), 10_008, '10,000 records made by a pipeline');

    $db->cmd('CONFIG', 'RESETSTAT');
    my $r = cli('list', '--page-size', '100');
    is($r->{exit}, 0, 'list exits 0') or diag($r->{err});
    my @lines = split /\n/, $r->{out};
    my %seen;
    $seen{ (split /\t/)[-1] }++ for @lines;
    is(scalar @lines, 10_000, 'list prints 10,000 lines');
    is_deeply(\%seen, { map { $_ => 1 } keys %want },
              'each record exactly once, nothing else');
    like($r->{err}, qr/10000 keys/, 'the count on stderr');

    my $stats = $db->cmd('INFO', 'commandstats');
    my ($scans) = $stats =~ /cmdstat_scan:calls=(\d+)/;
    ok(($scans // 0) >= 10, "SCAN iterated to the end ($scans calls)");
    unlike($stats, qr/cmdstat_keys:/, 'KEYS is never used');

    # SCAN may return a name twice (rehashing): through a proxy that makes
    # it do so on every page, each record is still listed once
    my $proxy = scan_repeat_proxy($redis->port);
    {
        my $pc = ApiKeyTest::RedisClient->new(port => $proxy->{port});
        my (%n, $cursor, $total) = ();
        $cursor = 0;
        do {
            my $rep = $pc->cmd('SCAN', $cursor, 'COUNT', 500);
            $cursor = $rep->[0];
            $n{$_}++ for @{ $rep->[1] };
            $total += @{ $rep->[1] };
        } while ($cursor ne '0');
        ok($total > keys(%n) * 1.5, 'the proxy makes SCAN repeat names');
        $pc->close;
    }
    $r = run_cli(args => ['--redis', "redis://127.0.0.1:$proxy->{port}",
                          'list', '--page-size', '250']);
    ApiKeyTest::Cli::stop_proxy($proxy);
    is($r->{exit}, 0, 'list through it exits 0') or diag($r->{err});
    my %again;
    $again{ (split /\t/)[-1] }++ for split /\n/, $r->{out};
    is_deeply(\%again, { map { $_ => 1 } keys %want },
              'SCAN repeats are listed once');

    my $line = (grep { /\tk77\t|^k77\t/ } @lines)[0] // '';
    like($line, qr/^k77\tdisabled\to2\tp1\tnever\t[0-9a-f]{64}$/,
         'columns: id status owner plan expires hash');

    my $check = sub {
        my ($name, $args, $expect) = @_;
        my $r = cli('list', @$args, '--json');
        is($r->{exit}, 0, "$name: exit 0");
        my $arr = eval { $json->decode($r->{out}) } || [];
        my %got;
        $got{ $_->{hash} }++ for @$arr;
        is(scalar @$arr, scalar keys %$expect, "$name: count");
        is_deeply(\%got, { map { $_ => 1 } keys %$expect }, "$name: the keys");
    };
    $check->('--json, all', [], \%want);
    $check->('--owner o1', ['--owner', 'o1'], $owner{o1});
    $check->('--status revoked', ['--status', 'revoked'], $status{revoked});
    $check->('--status active (absent = active)', ['--status', 'active'],
             $status{active});
    $check->('--plan p0', ['--plan', 'p0'], $plan{p0});
    my %both = map { $_ => 1 } grep { $plan{p1}{$_} } keys %{ $owner{o2} };
    $check->('--owner o2 --plan p1', ['--owner', 'o2', '--plan', 'p1'], \%both);

    $r = cli('list', '--json', '--page-size', '7', '--owner', 'nobody');
    is($r->{out}, "[]\n", 'no match: an empty JSON array');

    my $arr = eval { $json->decode(cli('list', '--json')->{out}) } || [];
    my ($k9) = grep { $_->{id} eq 'k9' } @$arr;
    is_deeply($k9->{fields}, { id => 'k9', owner => 'o0', plan => 'p1',
                               status => 'active' },
              'list --json: the fields of each record');
    $db->cmd('FLUSHALL');
}


# --- hmac-sha256 -----------------------------------------------------------

{
    my $secret_file = write_file('secret', "s3cret-value\n");
    my @h = ('--hash', 'hmac-sha256', '--secret-file', $secret_file);
    my $r = cli(@h, 'create', '--json', '--id', 'hm');
    is($r->{exit}, 0, 'create with hmac-sha256') or diag($r->{err});
    my $k = eval { $json->decode($r->{out}) } || {};
    my $want = hmac_sha256_hex($k->{key} // '', 's3cret-value');
    is($k->{hash}, $want, 'the hash is HMAC-SHA256(secret, key), one '
                          . 'trailing newline not part of the secret');
    ok($db->cmd('EXISTS', "apikey:$want"), 'the record is named by the HMAC');
    ok(!$db->cmd('EXISTS', 'apikey:' . sha256_hex($k->{key} // '')),
       'not by the plain SHA-256');

    is(cli(@h, 'show', '-', { stdin => "$k->{key}\n" })->{exit}, 0,
       'found by key with the same secret');
    my $crlf = write_file('secret-crlf', "s3cret-value\r\n");
    is(cli('--hash', 'hmac-sha256', '--secret-file', $crlf, 'show', '-',
           { stdin => "$k->{key}\n" })->{exit}, 0, 'a CRLF ends the secret too');
    is(cli('show', '-', { stdin => "$k->{key}\n" })->{exit}, 3,
       'not found by key with sha256');
    my $other = write_file('other', "other\n");
    is(cli('--hash', 'hmac-sha256', '--secret-file', $other, 'show', '-',
           { stdin => "$k->{key}\n" })->{exit}, 3,
       'not found with another secret');

    $r = run_cli(args => ['--redis', $url, 'list'],
                 env => { APIKEY_HASH => 'hmac-sha256',
                          APIKEY_SECRET_FILE => $secret_file });
    is($r->{exit}, 0, 'APIKEY_HASH / APIKEY_SECRET_FILE');

    $r = cli('--hash', 'hmac-sha256', 'list');
    is($r->{exit}, 2, 'hmac-sha256 without --secret-file: 2');
    like($r->{err}, qr/secret-file/, 'naming it');
    $r = cli('--hash', 'md5', 'list');
    is($r->{exit}, 2, 'an unknown hash: 2');
    $r = cli('--hash', 'hmac-sha256', '--secret-file', write_file('e', "\n"),
             'list');
    is($r->{exit}, 2, 'an empty secret: 2');
}


# --- a Redis with a password; URL forms -------------------------------------

{
    my $pw = 'pw-' . int(rand(1e9));
    my $locked = ApiKeyTest::Redis->start(
        requirepass => $pw, unixsocket => 1,
        users => ['ops on >ops-pw ~* &* +@all']);
    my $lurl = 'redis://127.0.0.1:' . $locked->port;
    my $pwfile = write_file('redis-pw', "$pw\n");

    my $r = run_cli(args => ['--redis', $lurl, 'list']);
    is($r->{exit}, 4, 'no password: exit 4');
    like($r->{err}, qr/NOAUTH|password|auth/i, 'saying a password is needed');

    $r = run_cli(args => ['--redis', $lurl, '--password-file', $pwfile,
                          'create', '--id', 'locked']);
    is($r->{exit}, 0, '--password-file') or diag($r->{err});

    $r = run_cli(args => ['--redis', $lurl, 'show', 'locked'],
                 env => { APIKEY_REDIS_PASSWORD => $pw });
    is($r->{exit}, 0, 'APIKEY_REDIS_PASSWORD') or diag($r->{err});

    $r = run_cli(args => ['show', 'locked'],
                 env => { APIKEY_REDIS_PASSWORD => $pw,
                          APIKEY_REDIS_URL => $lurl });
    is($r->{exit}, 0, 'APIKEY_REDIS_URL');

    $r = run_cli(args => ['--redis', $lurl, 'list'],
                 env => { APIKEY_REDIS_PASSWORD => 'Xyzzy-bad-pw' });
    is($r->{exit}, 4, 'a wrong password: exit 4');
    unlike($r->{err}, qr/Xyzzy/, 'the password is not echoed');

    my $port = $locked->port;
    $r = run_cli(args => ['--redis', "redis://:$pw\@127.0.0.1:$port/3",
                          'create', '--id', 'in-db3']);
    is($r->{exit}, 0, 'redis://:password@host:port/db') or diag($r->{err});
    my $c = $locked->client;
    $c->cmd('SELECT', 3);
    ok($c->cmd('EXISTS', 'apikey:id:in-db3'), 'the key went to database 3');

    $r = run_cli(args => ['--redis', "redis://ops:ops-pw\@127.0.0.1:$port/3",
                          'show', 'in-db3']);
    is($r->{exit}, 0, 'redis://user:password@host:port/db (ACL user)')
        or diag($r->{err});
    $r = run_cli(args => ['--redis', "redis://ops\@127.0.0.1:$port/3",
                          '--password-file', write_file('ops-pw', "ops-pw\n"),
                          'show', 'in-db3']);
    is($r->{exit}, 0, 'redis://user@host with --password-file, as the module')
        or diag($r->{err});
    $r = run_cli(args => ['--redis', "redis://ops\@127.0.0.1:$port/3", 'list']);
    is($r->{exit}, 2, 'a user without a password: 2');
    # the user is not named: redis://PASSWORD@host would echo a password
    like($r->{err}, qr/names a user but no password/, 'saying so');
    unlike($r->{err}, qr/ops/, 'without echoing the user part of the URL');

    my $sock = $locked->socket_path;
    $r = run_cli(args => ['--redis', "unix:$sock?db=3", '--password-file',
                          $pwfile, 'show', 'in-db3']);
    is($r->{exit}, 0, 'unix:/path.sock?db=N') or diag($r->{err});
    $r = run_cli(args => ['--redis', "unix:$sock", '--password-file',
                          $pwfile, 'show', 'in-db3']);
    is($r->{exit}, 3, 'unix socket, database 0: not there');

    $r = run_cli(args => ['--redis', "redis://:$pw\@127.0.0.1:$port",
                          '--password-file', $pwfile, 'list']);
    is($r->{exit}, 2, 'a password in the URL and a file: 2');
    $locked->stop;
}


# --- prefix -------------------------------------------------------------------

{
    my $r = cli('--prefix', 'k*[x]:', 'create', '--id', 'pfx', '--json');
    is($r->{exit}, 0, '--prefix with glob characters');
    my $k = eval { $json->decode($r->{out}) } || {};
    ok($db->cmd('EXISTS', "k*[x]:$k->{hash}"), 'the record has the prefix');
    ok($db->cmd('EXISTS', 'k*[x]:id:pfx'), 'and the id lookup');
    $db->cmd('HSET', 'kQx:' . ('a' x 64), 'id', 'not-mine');
    $r = cli('--prefix', 'k*[x]:', 'list');
    is(scalar(() = $r->{out} =~ /\n/g), 1, 'list matches the prefix literally');
}

done_testing();
