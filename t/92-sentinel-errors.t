#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# Failover errors and what the sentinels may answer (README, api_key_redis,
# "Redis Sentinel" and "During a failover").
#
# - A record read answered with an error Redis gives during a failover
#   (LOADING, READONLY, MASTERDOWN) is "unavailable" (503, or "unchecked"
#   under api_key_fail open), never "unknown" (401); it is counted
#   (api_key_redis_failover_errors_total), and the read is sent once more:
#   a LOADING answered again is 503, a LOADING then the record is 200;
#   READONLY and MASTERDOWN close the connection and open it again (the log
#   says the server is not the master), and the read is sent on the new
#   one.  A connection reset while a read waits: the read is sent again on
#   the next connection.  (ApiKeyTest::FakeRedis answers HGETALL as each case
#   says.)
# - A sentinel that names a replica: ROLE says "slave", the log says so, the
#   sentinels are asked again until they name the master (a fake sentinel
#   in front of a real master and replica).
# - rediss-sentinel://: the master's certificate is checked for the address
#   the sentinel gives (127.0.0.1, an IP SAN), or for tls_name=.
# - Sentinels that require a password: sentinel_password_file= works; none
#   or a wrong one is logged (AUTH refused / NOAUTH) and keys not cached get
#   503; a master name the sentinels do not know is logged and gets 503.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::FakeRedis;

require_module();

my $dir = ApiKeyTest::tmpdir();

sub bulk { ApiKeyTest::FakeRedis::bulk(@_) }

# a fake Redis whose HGETALL answers are @seq in turn, over all its
# connections (the last one again once they are used up): an error line
# ("-LOADING ..."), 'RECORD' (a record: owner o) or 'CLOSE' (the connection
# is closed, unanswered)
sub fake_redis {
    my (@seq) = @_;
    my $hgetalls = 0;       # in the fake's process, across connections
    return ApiKeyTest::FakeRedis->start(command => sub {
        my ($conn, @argv) = @_;
        return undef if $conn->{state}{closed};
        return ApiKeyTest::FakeRedis::reply(\@argv) if uc $argv[0] ne 'HGETALL';
        my $a = $seq[$hgetalls < @seq ? $hgetalls : $#seq];
        $hgetalls++;
        if ($a eq 'CLOSE') {
            $SIG{PIPE} = 'IGNORE';
            $conn->{state}{closed} = 1;
            shutdown($conn->{sock}, 2);
            return undef;
        }
        return "*2\r\n" . bulk('owner') . bulk('o') if $a eq 'RECORD';
        return "$a\r\n";
    });
}

# a fake sentinel: names 127.0.0.1 and the port the file $ctl holds
sub fake_sentinel {
    my ($ctl) = @_;
    return ApiKeyTest::FakeRedis->start(command => sub {
        my ($conn, @argv) = @_;
        if (uc $argv[0] eq 'SENTINEL') {
            my $p = ApiKeyTest::slurp($ctl);
            chomp $p;
            return "*2\r\n" . bulk('127.0.0.1') . bulk($p);
        }
        return ApiKeyTest::FakeRedis::reply(\@argv);
    });
}

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m negative_ttl=1s;
    api_key_redis %%URL%% timeout=2s connect_timeout=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /open/ {
            api_key keys;
            api_key_fail open;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location = /metrics { api_key off; api_key_metrics; }
    }
EOT

sub st { my $x = $_[0]; $x->status . ' ' . ($x->header('X-Status') // '') }
sub failover_errors {
    my ($port) = @_;
    (http_get($port, '/metrics')->body
        =~ /^api_key_redis_failover_errors_total (\d+)$/m)[0];
}

# --- failover errors, a fake Redis ---------------------------------------------------

my $LOADING = '-LOADING Redis is loading the dataset in memory';
my $READONLY = "-READONLY You can't write against a read only replica.";
my $MASTERDOWN = "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.";

for my $c (
    # name, HGETALL answers, expected, log
    ['LOADING, twice', [$LOADING], '503 unavailable', undef],
    ['LOADING, then the record', [$LOADING, 'RECORD'], '200 ok', undef],
    ['READONLY, then the record (on a new connection)', [$READONLY, 'RECORD'], '200 ok',
     qr/answers READONLY: it is not the master, connecting again/],
    ['MASTERDOWN, then the record (on a new connection)', [$MASTERDOWN, 'RECORD'], '200 ok',
     qr/answers MASTERDOWN: it is not the master, connecting again/],
    ['MASTERDOWN, twice', [$MASTERDOWN], '503 unavailable', undef],
    ['the connection reset, then the record', ['CLOSE', 'RECORD'], '200 ok', undef],
) {
    my ($name, $seq, $want, $log) = @$c;
    my $f = fake_redis(@$seq);
    my $n = ApiKeyTest::Nginx->start(http => $http, error_level => 'info',
        vars => { URL => 'redis://127.0.0.1:' . $f->port });
    my $port = $n->port;
    wait_until(sub { defined failover_errors($port) }, timeout => 3);
    sleep 0.3;      # the commands connection is up
    my $k = random_key('fo');
    my $res = http_get($port, '/', headers => { 'X-API-Key' => $k });
    is st($res), $want, "$name: $want" or diag $n->error_log;
    my $fe = failover_errors($port);
    my $errors = grep { /^-/ } @$seq;
    ok $fe >= ($errors ? 1 : 0), "$name: failover errors counted ($fe)";
    like $n->error_log, $log, "$name: logged" if $log;
    if ($want =~ /^503/) {
        my $o = http_get($port, '/open/', headers => { 'X-API-Key' => random_key('fo2') });
        is st($o), '200 unchecked', "$name: api_key_fail open: unchecked";
    }
    $n->stop;
    $f->stop;
}

# --- a sentinel that names a replica ---------------------------------------------------

{
    my $m = ApiKeyTest::Redis->start;
    my $r = ApiKeyTest::Redis->start(config => ['replicaof 127.0.0.1 ' . $m->port]);
    ok wait_until(sub { ($r->cmd('INFO', 'replication') // '') =~ /master_link_status:up/ },
                  timeout => 10), 'a replica';
    my $ctl = "$dir/sentinel-says";
    spew($ctl, $r->port);
    my $fs = fake_sentinel($ctl);
    my $k = random_key('role');
    add_key($m, $k, owner => 'o');
    my $n = ApiKeyTest::Nginx->start(http => $http, error_level => 'info',
        vars => { URL => 'redis-sentinel://127.0.0.1:' . $fs->port . '/mymaster' });
    my $port = $n->port;
    ok wait_until(sub { $n->error_log =~ /is not the master \(ROLE: slave\), asking the sentinels again/ },
                  timeout => 5), 'a replica named: ROLE says slave, logged';
    is st(http_get($port, '/', headers => { 'X-API-Key' => $k })), '503 unavailable',
        'meanwhile keys not cached are unavailable';
    spew($ctl, $m->port);
    my $t0 = time;
    ok wait_until(sub { st(http_get($port, '/', headers => { 'X-API-Key' => $k })) eq '200 ok' },
                  timeout => 5), 'the sentinel names the master: 200';
    note sprintf 'found the master %.2f s after the sentinel named it', time - $t0;
    $n->stop;
    $fs->stop;
}

# --- rediss-sentinel://: the name checked is the address the sentinels give -----------

{
    my $pki = ApiKeyTest::Tls->new;
    my $CA = $pki->ca;
    my $ctl = "$dir/tls-sentinel-says";
    my $fs = fake_sentinel($ctl);
    my $url = 'rediss-sentinel://127.0.0.1:' . $fs->port . '/mymaster';

    # a certificate for localhost and 127.0.0.1
    my $m = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
    spew($ctl, $m->port);
    my $k = random_key('tls');
    add_key($m, $k, owner => 'o');
    (my $h = $http) =~ s/connect_timeout=500ms;/connect_timeout=500ms tls_ca=$CA;/;
    my $n = ApiKeyTest::Nginx->start(http => $h, error_level => 'info', vars => { URL => $url });
    ok wait_until(sub { st(http_get($n->port, '/', headers => { 'X-API-Key' => $k })) eq '200 ok' },
                  timeout => 5), 'rediss-sentinel://: the master at 127.0.0.1, its certificate checked for it';
    $n->stop;

    # a certificate for other.example only
    my ($crt, $key) = $pki->cert_for('other.example');
    my $m2 = ApiKeyTest::Redis->start(tls => $pki->redis_tls(cert => $crt, key => $key));
    spew($ctl, $m2->port);
    add_key($m2, $k, owner => 'o');
    $n = ApiKeyTest::Nginx->start(http => $h, error_level => 'info', vars => { URL => $url });
    my $got = '';
    wait_until(sub {
        $got = st(http_get($n->port, '/', headers => { 'X-API-Key' => $k }));
        $n->error_log =~ /name mismatch/;
    }, timeout => 5);
    is $got, '503 unavailable', 'a certificate for another name: 503';
    like $n->error_log, qr/TLS: name mismatch: the certificate is not for "127\.0\.0\.1"/,
        '... the log names the address checked';
    $n->stop;
    (my $h2 = $h) =~ s/tls_ca=/tls_name=other.example tls_ca=/;
    $n = ApiKeyTest::Nginx->start(http => $h2, error_level => 'info', vars => { URL => $url });
    ok wait_until(sub { st(http_get($n->port, '/', headers => { 'X-API-Key' => $k })) eq '200 ok' },
                  timeout => 5), 'tls_name=other.example: that name is checked instead';
    $n->stop;
    $fs->stop;
}

# --- sentinels with a password; a master they do not know ---------------------------------

{
    my $s = ApiKeyTest::Sentinel->start(name => 'secure', sentinel_password => 'sentinel-pw-1');
    my $k = random_key('sp');
    add_key($s->master, $k, owner => 'o');
    my $pwf = spew("$dir/spw", "sentinel-pw-1\n", 0600);
    my $bad = spew("$dir/bad", "wrong-pw-2\n", 0600);

    for my $c (
        ['sentinel_password_file', "sentinel_password_file=$pwf", '200 ok', undef],
        ['no sentinel password', '', '503 unavailable', qr/AUTH refused|NOAUTH/],
        ['a wrong sentinel password', "sentinel_password_file=$bad", '503 unavailable', qr/AUTH refused: WRONGPASS|invalid password/i],
        ['an unknown master name', "sentinel_password_file=$pwf", '503 unavailable', qr/it knows no such master: nosuch/, 'nosuch'],
    ) {
        my ($name, $args, $want, $log, $master) = @$c;
        my $url = $s->url;
        $url =~ s{/secure$}{/$master} if $master;
        (my $h = $http) =~ s/connect_timeout=500ms;/connect_timeout=500ms $args;/;
        my $n = ApiKeyTest::Nginx->start(http => $h, error_level => 'info',
            vars => { URL => $url });
        my $got = '';
        wait_until(sub {
            $got = st(http_get($n->port, '/', headers => { 'X-API-Key' => $k }));
            $got eq $want && (!$log || $n->error_log =~ $log);
        }, timeout => 5);
        is $got, $want, "$name: $want";
        like $n->error_log, $log, "$name: logged" if $log;
        unlike $n->error_log, qr/sentinel-pw-1|wrong-pw-2/, "$name: no password in the log";
        $n->stop;
    }
}

done_testing;
