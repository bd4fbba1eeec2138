#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# apikeyctl over TLS (rediss://) against real redis-servers with TLS only:
# every command, a client certificate (tls-auth-clients yes), the
# environment variables, and the failures an operator must understand
# (wrong CA, wrong name, a server wanting a client certificate, plaintext
# and TLS mixed up, unreadable files, TLS options on a redis:// URL), each a
# clear message and a non-zero exit, never with the password.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();

use ApiKeyTest;
use ApiKeyTest::Cli qw(cli_path run_cli key_checksum_ok subscribe
                       next_message);

BAIL_OUT('apikeyctl not built: ' . cli_path() . ' (make cli, or set AK_CLI)')
    unless -x cli_path();

my $json = JSON::PP->new;
my $pki = ApiKeyTest::Tls->new;
my $tmp = tmpdir();

# a TLS-only redis (no client certificate needed)
my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
my $url = $r->url;                     # rediss://127.0.0.1:P
my @ca = ('--tls-ca', $pki->ca);
my @client = ('--tls-cert', $pki->client_cert, '--tls-key', $pki->client_key);

sub cli {
    my ($url, @args) = @_;
    my %o;
    %o = %{ pop @args } if @args && ref $args[-1] eq 'HASH';
    return run_cli(args => ['--redis', $url, @args], %o);
}

sub fails_with {
    my ($res, $exit, $re, $name) = @_;
    is($res->{exit}, $exit, "$name: exit $exit")
        or diag("stderr: $res->{err}");
    like($res->{err}, $re, "$name: says so") or diag("stderr: $res->{err}");
    unlike($res->{out}, qr/\S/, "$name: nothing on stdout");
}

# --- every command over TLS ---------------------------------------------------

my $sub = $r->client;
subscribe($sub, 'apikey:events');

my $c = cli($url, @ca, 'create', '--owner', 'acme', '--plan', 'pro', '--json');
is($c->{exit}, 0, 'create over TLS') or diag($c->{err});
my $new = eval { $json->decode($c->{out}) } // {};
ok(key_checksum_ok($new->{key}), 'create printed a key');
track_key($new->{key});
is($r->cmd('HGET', "apikey:$new->{hash}", 'owner'), 'acme',
   'the record is in the TLS redis');
is($new->{hash}, sha256_hex($new->{key} // ''), 'under the key\'s hash');

my $s = cli($url, @ca, 'show', $new->{id});
is($s->{exit}, 0, 'show over TLS') or diag($s->{err});
like($s->{out}, qr/^owner\s+acme$/m, 'show: the fields');
unlike($s->{out} . $s->{err}, qr/\Q$new->{key}\E/, 'show never prints the key');

my $l = cli($url, @ca, 'list');
is($l->{exit}, 0, 'list over TLS') or diag($l->{err});
like($l->{out}, qr/^\Q$new->{id}\E\tactive\tacme\tpro/m, 'list: the key');

my $st = cli($url, @ca, 'set', $new->{id}, 'plan=enterprise');
is($st->{exit}, 0, 'set over TLS') or diag($st->{err});
is($r->cmd('HGET', "apikey:$new->{hash}", 'plan'), 'enterprise', 'set: changed');
is_deeply(next_message($sub, 2), ['apikey:events', "update $new->{hash}"],
          'set: the update event is published over TLS');

my $u = cli($url, @ca, 'usage', $new->{id});
is($u->{exit}, 0, 'usage over TLS') or diag($u->{err});

my $rot = cli($url, @ca, 'rotate', $new->{id}, '--grace', '1h', '--json');
is($rot->{exit}, 0, 'rotate over TLS') or diag($rot->{err});
my $rotated = eval { $json->decode($rot->{out}) } // {};
track_key($rotated->{key});
ok(key_checksum_ok($rotated->{key}), 'rotate printed a new key');
isnt($rotated->{key}, $new->{key}, '... another one');
is($r->cmd('HGET', "apikey:$rotated->{hash}", 'owner'), 'acme',
   'rotate: the new record has the fields');
is_deeply(next_message($sub, 2), ['apikey:events', "update $new->{hash}"],
          'rotate: the update event of the old key');

my $rv = cli($url, @ca, 'revoke', '-', { stdin => "$rotated->{key}\n" });
is($rv->{exit}, 0, 'revoke (key on stdin) over TLS') or diag($rv->{err});
is($r->cmd('HGET', "apikey:$rotated->{hash}", 'status'), 'revoked',
   'revoke: status revoked');
is_deeply(next_message($sub, 2), ['apikey:events', "revoke $rotated->{hash}"],
          'revoke: the event is published over TLS');
unlike($rv->{err}, qr/nobody listens/, 'revoke: someone received it');

my $d = cli($url, @ca, 'delete', $new->{hash});
is($d->{exit}, 0, 'delete over TLS') or diag($d->{err});
is($r->cmd('EXISTS', "apikey:$new->{hash}"), 0, 'delete: gone');

# the host by name, the database in the URL
{
    my $h = cli('rediss://localhost:' . $r->port . '/5', @ca, 'create',
                '--owner', 'db5', '--json');
    is($h->{exit}, 0, 'rediss://localhost:P/5 (a name, the certificate\'s)')
        or diag($h->{err});
    my $k = eval { $json->decode($h->{out}) } // {};
    track_key($k->{key});
    is($r->client(db => 5)->cmd('HGET', "apikey:$k->{hash}", 'owner'), 'db5',
       '... into database 5');
}

# --tls-name: the name to verify when the URL's host is an address
{
    my $res = cli($url, @ca, '--tls-name', 'localhost', 'list');
    is($res->{exit}, 0, '--tls-name localhost for 127.0.0.1') or diag($res->{err});
}

# the environment variables
{
    my $res = run_cli(args => ['list'],
                      env => { APIKEY_REDIS_URL => $url,
                               APIKEY_TLS_CA => $pki->ca,
                               APIKEY_TLS_NAME => 'localhost' });
    is($res->{exit}, 0, 'APIKEY_REDIS_URL rediss:// + APIKEY_TLS_CA + _NAME')
        or diag($res->{err});
    $res = run_cli(args => ['list'],
                   env => { APIKEY_REDIS_URL => $url, APIKEY_TLS_NAME => 'nope.example',
                            APIKEY_TLS_CA => $pki->ca });
    is($res->{exit}, 4, 'APIKEY_TLS_NAME is used (a wrong one fails)');
    $res = run_cli(args => ['--tls-name', 'localhost', 'list'],
                   env => { APIKEY_REDIS_URL => $url, APIKEY_TLS_NAME => 'nope.example',
                            APIKEY_TLS_CA => $pki->ca });
    is($res->{exit}, 0, 'an option wins over its variable') or diag($res->{err});
}

# --- a password and a user, over TLS ----------------------------------------

{
    my $rp = ApiKeyTest::Redis->start(tls => $pki->redis_tls,
        users => ['ops on >hunter2pw ~* &* +@all'], auth => ['ops', 'hunter2pw']);
    my $purl = 'rediss://ops:hunter2pw@127.0.0.1:' . $rp->port;
    my $res = cli($purl, @ca, 'list');
    is($res->{exit}, 0, 'rediss://user:password@ works') or diag($res->{err});
    my $bad = 'rediss://ops:wrongpw77@127.0.0.1:' . $rp->port;
    $res = cli($bad, @ca, 'list');
    fails_with($res, 4, qr/refused the password/, 'a wrong password over TLS');
    unlike($res->{err}, qr/wrongpw77/, '... the password is not printed');
    $res = cli($purl, '--tls-ca', $pki->other_ca, 'list');
    fails_with($res, 4, qr/certificate verify failed/,
               'a verify failure with a password in the URL');
    unlike($res->{err}, qr/hunter2pw/, '... the password is not printed');
    my $pf = spew("$tmp/pw", "hunter2pw\n", 0600);
    $res = cli('rediss://ops@127.0.0.1:' . $rp->port, @ca,
               '--password-file', $pf, 'list');
    is($res->{exit}, 0, 'rediss://user@ with --password-file') or diag($res->{err});
}

# --- client certificates (tls-auth-clients yes) -------------------------------

{
    my $ry = ApiKeyTest::Redis->start(tls => $pki->redis_tls(auth_clients => 'yes'));
    my $yurl = $ry->url;

    my $res = cli($yurl, @ca, @client, 'create', '--owner', 'mtls', '--json');
    is($res->{exit}, 0, 'create with a client certificate') or diag($res->{err});
    my $k = eval { $json->decode($res->{out}) } // {};
    track_key($k->{key});
    is($ry->cmd('HGET', "apikey:$k->{hash}", 'owner'), 'mtls', '... stored');
    $res = cli($yurl, @ca, @client, 'revoke', $k->{id});
    is($res->{exit}, 0, 'revoke with a client certificate') or diag($res->{err});
    is($ry->cmd('HGET', "apikey:$k->{hash}", 'status'), 'revoked', '... revoked');
    $res = cli($yurl, @ca, @client, 'show', $k->{id});
    is($res->{exit}, 0, 'show with a client certificate') or diag($res->{err});
    $res = cli($yurl, @ca, @client, 'rotate', $k->{id}, '--grace', '0');
    is($res->{exit}, 0, 'rotate with a client certificate') or diag($res->{err});
    track_key($res->{out} =~ /^(\S+)$/m ? $1 : ());

    $res = run_cli(args => ['show', $k->{id}],
                   env => { APIKEY_REDIS_URL => $yurl, APIKEY_TLS_CA => $pki->ca,
                            APIKEY_TLS_CERT => $pki->client_cert,
                            APIKEY_TLS_KEY => $pki->client_key });
    is($res->{exit}, 0, 'APIKEY_TLS_CERT and APIKEY_TLS_KEY') or diag($res->{err});

    $res = cli($yurl, @ca, 'show', $k->{id});
    fails_with($res, 4, qr/client certificate/,
               'no client certificate where one is required');

    # TLS 1.2: the server refuses during the handshake; with --tls-insecure
    # that is not a certificate verify failure (the CA is not given)
    my $r12 = ApiKeyTest::Redis->start(tls => $pki->redis_tls(auth_clients => 'yes'),
                                       config => ['tls-protocols "TLSv1.2"']);
    $res = cli($r12->url, '--tls-insecure', 'show', $k->{id});
    fails_with($res, 4, qr/TLS \(TLS handshake\): .*client certificate/,
               'TLS 1.2, --tls-insecure, no client certificate');
    unlike($res->{err}, qr/verify failed/, '... not a verify failure');
    $res = cli($r12->url, @ca, 'show', $k->{id});
    fails_with($res, 4, qr/client certificate/,
               'TLS 1.2, no client certificate');
    $res = cli($r12->url, @ca, @client, 'list');
    is($res->{exit}, 0, 'TLS 1.2 with the client certificate') or diag($res->{err});

    my ($oc, $ok) = $pki->cert_for('stranger', client => 1, ca => 'other');
    $res = cli($yurl, @ca, '--tls-cert', $oc, '--tls-key', $ok, 'show', $k->{id});
    fails_with($res, 4, qr/refuse|unknown ca|client certificate/,
               'a client certificate of another CA');
}

# --- verification failures ------------------------------------------------------

fails_with(cli($url, '--tls-ca', $pki->other_ca, 'list'), 4,
           qr/TLS: certificate verify failed: .*\Q$pki->{other}{cert}\E/,
           'wrong CA (--tls-ca of another CA)');
fails_with(cli($url, 'list'), 4,
           qr/certificate verify failed: .*system's CA certificates; --tls-ca/,
           'no --tls-ca: the system store does not know the test CA');
fails_with(cli($url, @ca, '--tls-name', 'other.example', 'list'), 4,
           qr/certificate verify failed: hostname mismatch .*"other\.example"/,
           'wrong name (--tls-name other.example)');

my ($other_crt, $other_key) = $pki->cert_for('other.example');
my $rn = ApiKeyTest::Redis->start(tls => $pki->redis_tls(cert => $other_crt,
                                                         key => $other_key));
fails_with(cli($rn->url, @ca, 'list'), 4,
           qr/certificate verify failed: IP address mismatch .*"127\.0\.0\.1"/,
           'a server certificate for other.example at 127.0.0.1');
fails_with(cli($rn->url(host => 'localhost'), @ca, 'list'), 4,
           qr/certificate verify failed: hostname mismatch .*"localhost"/,
           '... at localhost');
{
    my $res = cli($rn->url, @ca, '--tls-name', 'other.example', 'list');
    is($res->{exit}, 0, '... with --tls-name other.example') or diag($res->{err});
    $res = cli($rn->url, '--tls-insecure', 'list');
    is($res->{exit}, 0, '--tls-insecure connects despite the name') or diag($res->{err});
    $res = cli($url, '--tls-insecure', 'list');
    is($res->{exit}, 0, '--tls-insecure connects without the CA') or diag($res->{err});
    $res = run_cli(args => ['list'],
                   env => { APIKEY_REDIS_URL => $rn->url, APIKEY_TLS_INSECURE => 1 });
    is($res->{exit}, 0, 'APIKEY_TLS_INSECURE=1') or diag($res->{err});
    $res = run_cli(args => ['list'],
                   env => { APIKEY_REDIS_URL => $rn->url, APIKEY_TLS_INSECURE => 0,
                            APIKEY_TLS_CA => $pki->ca });
    is($res->{exit}, 4, 'APIKEY_TLS_INSECURE=0 verifies');
}

# --- SNI: the name apikeyctl sends (a TLS server that records it) ----------

{
    require IO::Socket::SSL;
    my ($crt, $key) = $pki->cert_for('redis.example',
        dns => ['redis.example', 'localhost'], ip => ['127.0.0.1']);
    my $srv = IO::Socket::SSL->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1,
        SSL_server => 1, SSL_cert_file => $crt, SSL_key_file => $key,
    ) or die "TLS listener: $IO::Socket::SSL::SSL_ERROR";
    my $sport = $srv->sockport;
    my $log = "$tmp/sni.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # accept performs the handshake: record the SNI and the version,
        # answer every command with an error
        while (my $c = $srv->accept) {
            open my $fh, '>>', $log or POSIX::_exit(1);
            printf $fh "%s %s\n", $c->get_servername // '-', $c->get_sslversion;
            close $fh;
            # one error per command (they are pipelined), until the client
            # closes
            while ($c->sysread(my $req, 65536)) {
                my $cmds = () = $req =~ /^\*\d+\r$/mg;
                $c->syswrite("-ERR not redis\r\n" x $cmds);
            }
            $c->close(SSL_fast_shutdown => 1);
        }
        POSIX::_exit(0);
    }
    close $srv;
    my $n = 0;
    my $seen = sub {
        my @l = split /\n/, slurp($log);
        return $l[$n++] // 'nothing';
    };
    my $res = cli("rediss://localhost:$sport", @ca, 'show', 'x');
    like($res->{err}, qr/not redis/, 'a TLS server that is not redis: its error')
        or diag($res->{err});
    wait_until(sub { -s $log });
    like($seen->(), qr/^localhost TLSv1_[23]$/, 'SNI: the URL\'s host, TLS 1.2+');
    cli("rediss://127.0.0.1:$sport", @ca, 'show', 'x');
    wait_until(sub { (() = slurp($log) =~ /\n/g) >= 2 });
    like($seen->(), qr/^- /, 'no SNI for an address');
    cli("rediss://127.0.0.1:$sport", @ca, '--tls-name', 'redis.example', 'show', 'x');
    wait_until(sub { (() = slurp($log) =~ /\n/g) >= 3 });
    like($seen->(), qr/^redis\.example /, 'SNI: --tls-name');
    cli("rediss://127.0.0.1:$sport", '--tls-insecure', '--tls-name', 'redis.example',
        'show', 'x');
    wait_until(sub { (() = slurp($log) =~ /\n/g) >= 4 });
    like($seen->(), qr/^redis\.example /, 'SNI: --tls-name with --tls-insecure');
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# --- plaintext and TLS mixed up, timeouts -------------------------------------------

{
    my $plain = ApiKeyTest::Redis->start;
    my $res = cli('rediss://127.0.0.1:' . $plain->port, @ca, '--timeout', '1',
                  'list');
    fails_with($res, 4, qr/TLS handshake: no answer within 1s \(is it a TLS port/,
               'rediss:// to a plaintext redis');
    ok($res->{secs} < 4, '... after the timeout') or diag("took $res->{secs}s");

    $res = cli('redis://127.0.0.1:' . $r->port, 'list');
    fails_with($res, 4, qr/closed by the server before any answer \(is it a TLS port/,
               'redis:// to a TLS redis');

    my $mute = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                     LocalPort => 0, Proto => 'tcp');
    $res = cli('rediss://127.0.0.1:' . $mute->sockport, @ca, '--timeout', '1',
               'list');
    fails_with($res, 4, qr/no answer within 1s/, 'a mute server');
    ok($res->{secs} < 4, '... after the timeout') or diag("took $res->{secs}s");

    my $port = free_port();
    $res = cli("rediss://127.0.0.1:$port", @ca, 'list');
    fails_with($res, 4, qr/cannot connect to redis at 127\.0\.0\.1:$port \(TLS\): Connection refused/,
               'nothing listening');

    $res = cli('rediss://no-such-host.invalid:6379', @ca, 'list');
    fails_with($res, 4, qr/cannot resolve "no-such-host\.invalid"/,
               'a name that does not resolve');
}

# --- usage errors (exit 2, before any connection) -----------------------------------

{
    my $plain_url = 'redis://127.0.0.1:1';
    fails_with(cli($plain_url, @ca, 'list'), 2,
               qr/--tls-ca is a TLS option: the --redis URL must then be rediss:/,
               '--tls-ca with a redis:// URL');
    fails_with(cli($plain_url, '--tls-insecure', 'list'), 2,
               qr/--tls-insecure is a TLS option/, '--tls-insecure with redis://');
    fails_with(run_cli(args => ['--redis', $plain_url, 'list'],
                       env => { APIKEY_TLS_CERT => $pki->client_cert }), 2,
               qr/APIKEY_TLS_CERT is a TLS option/, 'APIKEY_TLS_CERT with redis://');
    fails_with(cli('unix:/tmp/x.sock', @ca, 'list'), 2, qr/TLS option/,
               '--tls-ca with a unix: URL');
    fails_with(cli($url, '--tls-cert', $pki->client_cert, 'list'), 2,
               qr/--tls-cert needs its private key too \(--tls-key\)/,
               '--tls-cert without --tls-key');
    fails_with(cli($url, '--tls-key', $pki->client_key, 'list'), 2,
               qr/--tls-key needs a client certificate too/,
               '--tls-key without --tls-cert');
    fails_with(cli($url, '--tls-insecure', @ca, 'list'), 2,
               qr/--tls-insecure does not verify the server: --tls-ca would be ignored/,
               '--tls-insecure with --tls-ca');
    fails_with(cli($url, '--tls-ca', "$tmp/missing.pem", 'list'), 2,
               qr/cannot read --tls-ca ".*missing\.pem": No such file/,
               'a missing CA file');
    fails_with(cli($url, '--tls-ca', $tmp, 'list'), 2,
               qr/cannot read --tls-ca .*not a regular file/, 'a directory');
    my $junk = spew("$tmp/junk.pem", "not a certificate\n");
    fails_with(cli($url, '--tls-ca', $junk, 'list'), 2,
               qr/--tls-ca ".*junk\.pem": no CA certificate in it/,
               'a CA file without a certificate');
    fails_with(cli($url, @ca, '--tls-cert', $junk, '--tls-key', $pki->client_key,
                   'list'), 2,
               qr/--tls-cert ".*junk\.pem": not a certificate/,
               'a client certificate file that is not one');
    fails_with(cli($url, @ca, '--tls-cert', $pki->client_cert, '--tls-key', $junk,
                   'list'), 2,
               qr/--tls-key ".*junk\.pem": not a private key/,
               'a key file that is not one');
    fails_with(cli($url, @ca, '--tls-cert', $pki->client_cert,
                   '--tls-key', $pki->server_key, 'list'), 2,
               qr/--tls-key ".*" is not the key of --tls-cert/,
               'a key of another certificate');
    fails_with(run_cli(args => ['--redis', $url, 'list'],
                       env => { APIKEY_TLS_CA => "$tmp/missing.pem" }), 2,
               qr/cannot read APIKEY_TLS_CA/, 'a missing file named by a variable');
    fails_with(run_cli(args => ['--redis', $url, 'list'],
                       env => { APIKEY_TLS_INSECURE => 'maybe' }), 2,
               qr/APIKEY_TLS_INSECURE "maybe": expected/, 'a bad APIKEY_TLS_INSECURE');
    fails_with(cli($url, @ca, '--tls-name', 'a b', 'list'), 2,
               qr/--tls-name "a b": expected a host name/, 'a bad --tls-name');
    fails_with(cli($url, '--tls-ca=', 'list'), 2, qr/--tls-ca: must not be empty/,
               'an empty --tls-ca');
}

{
    my $h = run_cli(args => ['--help']);
    like($h->{out}, qr/--tls-ca FILE.*--tls-cert FILE.*--tls-key FILE.*--tls-name NAME.*--tls-insecure/s,
         '--help lists the TLS options');
    like($h->{out}, qr/APIKEY_TLS_CA/, '... and their variables');
}

done_testing;
