# SPDX-License-Identifier: BSD-2-Clause
# The harness's TLS and DNS parts, without the module: test certificates
# made with the openssl CLI (ApiKeyTest::Tls), a redis-server with TLS only
# (ApiKeyTest::Redis->start(tls => ...)) and every harness operation on it,
# client certificates (tls-auth-clients yes), a restart with a new
# certificate, a redis-server on 127.0.0.2, and the test DNS server
# (ApiKeyTest::Dns): UDP and TCP answers, set(), NXDOMAIN, modes, and a
# plain nginx (no module) whose resolver follows set().
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

# --- certificates -----------------------------------------------------------

my $pki = ApiKeyTest::Tls->new;
ok(-s $pki->$_, "$_ written") for qw(ca server_cert server_key client_cert
    client_key other_ca other_server_cert other_server_key);

sub openssl {
    my $out = `openssl @_ 2>&1`;
    return ($? == 0, $out);
}

sub verifies {
    my ($ca, $cert, @more) = @_;
    my ($ok, $out) = openssl('verify', '-CAfile', $ca, @more, $cert);
    return $ok && $out =~ /: OK$/m;
}

ok(verifies($pki->ca, $pki->server_cert), 'server cert signed by ca');
ok(!verifies($pki->other_ca, $pki->server_cert), '... not by other_ca');
ok(verifies($pki->other_ca, $pki->other_server_cert),
   'other_server_cert signed by other_ca');
ok(!verifies($pki->ca, $pki->other_server_cert), '... not by ca');
ok(verifies($pki->ca, $pki->server_cert, '-verify_hostname', 'localhost'),
   'server cert is for localhost');
ok(verifies($pki->ca, $pki->server_cert, '-verify_ip', '127.0.0.1'),
   'server cert is for 127.0.0.1');
ok(!verifies($pki->ca, $pki->server_cert, '-verify_hostname', 'other.example'),
   'server cert is not for other.example');
ok(verifies($pki->ca, $pki->client_cert, '-purpose', 'sslclient'),
   'client cert: signed by ca, for TLS clients');
my ($oc, $ok) = $pki->cert_for('other.example');
ok(verifies($pki->ca, $oc, '-verify_hostname', 'other.example'),
   'cert_for: a cert for other.example');
ok(!verifies($pki->ca, $oc, '-verify_hostname', 'localhost'),
   '... and not for localhost');
my ($c2, $k2) = $pki->cert_for('localhost', ip => ['127.0.0.1']);
isnt(ApiKeyTest::slurp($k2), ApiKeyTest::slurp($pki->server_key),
     'cert_for the same name: a new key');

# --- a TLS redis-server -----------------------------------------------------

my $r = ApiKeyTest::Redis->start(tls => $pki->redis_tls);
ok($r->tls, 'a TLS redis');
is($r->url, 'rediss://127.0.0.1:' . $r->port, 'url: rediss://127.0.0.1:PORT');
like(ApiKeyTest::slurp($r->dir . '/redis.conf'), qr/^port 0$/m,
     'no plaintext port');
is($r->cmd('PING'), 'PONG', 'PING over TLS');
is($r->cmd('SET', 'big', 'x' x 300000), 'OK', 'SET of 300 kB over TLS');
is(length $r->cmd('GET', 'big'), 300000,
   'GET of 300 kB over TLS (several TLS records)');
my $key = random_key('tls');
my $hash = add_key($r, $key, owner => 'acme');
is($r->cmd('HGET', "apikey:$hash", 'owner'), 'acme', 'add_key over TLS');
reset_stats($r);
$r->cmd('HGETALL', "apikey:$hash") for 1 .. 2;
is(hgetall_calls($r), 2, 'commandstats over TLS');
{
    my $m = $r->monitor;
    $r->cmd('HGETALL', "apikey:$hash");
    ok(scalar(grep { $_->[0] eq 'hgetall' } $m->commands(0.3)),
       'monitor over TLS');
    $m->close;
}
{
    my $c = $r->client;
    ok($r->wait_clients(1), 'wait_clients over TLS');
    $c->close;
}

{
    my $plain = eval { $r->client(plain => 1, timeout => 2) };
    my ($v, $err) = $plain ? $plain->try_cmd('PING') : (undef, $@);
    ok(!defined $v && $err, 'plaintext to the TLS port gets no answer')
        or diag explain $v;
}
{
    my $c = $r->client(verify => 1, name => 'localhost');
    is($c->cmd('PING'), 'PONG', 'a client verifying ca and name localhost');
    $c = $r->client(verify => 1);
    is($c->cmd('PING'), 'PONG', 'a client verifying the address 127.0.0.1');
    ok(!eval { $r->client(verify => 1, ca => $pki->other_ca); 1 },
       'a client trusting other_ca fails');
    like($@, qr/certificate verify failed/, '... certificate verify failed');
    ok(!eval { $r->client(verify => 1, name => 'other.example'); 1 },
       'a client expecting other.example fails');
}

# restart with a certificate of the other CA, then back
$r->restart(tls => { cert => $pki->other_server_cert,
                     key => $pki->other_server_key });
is($r->cmd('PING'), 'PONG', 'restart with a new certificate');
ok(!eval { $r->client(verify => 1); 1 }, '... the old CA no longer verifies');
is($r->client(verify => 1, ca => $pki->other_ca)->cmd('PING'), 'PONG',
   '... the other CA does');
$r->tls_reload(cert => $pki->server_cert, key => $pki->server_key);
is($r->client(verify => 1)->cmd('PING'), 'PONG',
   'tls_reload: new connections get the new certificate');
$r->restart;
is($r->client(verify => 1)->cmd('PING'), 'PONG',
   '... and keep it after a restart');

# client certificates
my $ry = ApiKeyTest::Redis->start(tls => $pki->redis_tls(auth_clients => 'yes'));
is($ry->cmd('PING'), 'PONG',
   'auth_clients yes: the harness presents the client certificate');
{
    my $c = eval { $ry->client(tls => { cert => undef, key => undef },
                               timeout => 2) };
    my ($v, $err) = $c ? $c->try_cmd('PING') : (undef, $@);
    ok(!defined $v && $err, 'auth_clients yes: no client certificate, no answer')
        or diag explain $v;
    my ($oc2, $ok2) = $pki->cert_for('stranger', client => 1, ca => 'other');
    $c = eval { $ry->client(tls => { cert => $oc2, key => $ok2 }, timeout => 2) };
    ($v, $err) = $c ? $c->try_cmd('PING') : (undef, $@);
    ok(!defined $v && $err,
       'auth_clients yes: a client certificate of another CA, no answer');
}
my $ro = ApiKeyTest::Redis->start(tls => $pki->redis_tls(auth_clients => 'optional'));
is($ro->client(tls => { cert => undef, key => undef })->cmd('PING'), 'PONG',
   'auth_clients optional: no client certificate is fine');

# redis-cli speaks TLS to it too (the harness's view agrees with Redis's)
{
    my $cli = `redis-cli --tls --cacert ${\ $pki->ca} --cert ${\ $pki->client_cert} --key ${\ $pki->client_key} -h 127.0.0.1 -p ${\ $ry->port} PING 2>&1`;
    like($cli, qr/PONG/, 'redis-cli --tls with the client certificate');
}

# a plaintext redis on another loopback address
my $r2 = ApiKeyTest::Redis->start(bind => '127.0.0.2');
is($r2->url, 'redis://127.0.0.2:' . $r2->port, 'url of a redis on 127.0.0.2');
is($r2->cmd('PING'), 'PONG', 'redis on 127.0.0.2');
ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $r2->port,
                          Timeout => 1),
   '... not on 127.0.0.1');
$r2->restart;
is($r2->cmd('PING'), 'PONG', '... restarts there');
# a name moving between two servers: the same port on two addresses
my $r3 = ApiKeyTest::Redis->start(bind => '127.0.0.3', port => $r2->port);
$r3->cmd('SET', 'who', 'three');
$r2->cmd('SET', 'who', 'two');
is($r3->cmd('GET', 'who'), 'three', 'a second redis on 127.0.0.3, same port');
is($r2->cmd('GET', 'who'), 'two', '... the first one is another server');
$r3->stop;

# --- the DNS server ---------------------------------------------------------

# a connection open when the DNS server starts is not kept open by its child
my $before = $r2->client;
my $before_id = $before->cmd('CLIENT', 'ID');
my $dns = ApiKeyTest::Dns->start(records => { 'redis.test' => '127.0.0.2' });
$before->close;
ok(wait_until(sub { !grep { $_->{id} eq $before_id } $r2->other_clients },
              timeout => 5),
   'a connection closed by the test is closed (the DNS child does not hold it)');
ok($dns->port > 0, 'DNS server on port ' . $dns->port);
is($dns->resolver_line, '127.0.0.1:' . $dns->port, 'resolver_line');
is_deeply([ $dns->lookup('redis.test') ], ['127.0.0.2'], 'A over UDP');
is_deeply([ $dns->lookup('Redis.Test.', tcp => 1) ], ['127.0.0.2'],
          'A over TCP, case and trailing dot ignored');
is_deeply([ $dns->lookup('nowhere.test') ], [], 'unknown name: no address');
{
    require Net::DNS;
    my $res = Net::DNS::Resolver->new(nameservers => ['127.0.0.1'],
        port => $dns->port, udp_timeout => 2, retry => 1);
    my $p = $res->send('nowhere.test', 'A');
    is($p && $p->header->rcode, 'NXDOMAIN', '... NXDOMAIN');
    $p = $res->send('redis.test', 'AAAA');
    is($p && $p->header->rcode, 'NOERROR', 'AAAA of a known name: NOERROR');
    is($p && scalar($p->answer), 0, '... and no answer');
}
$dns->set('redis.test' => '127.0.0.3');
is_deeply([ $dns->lookup('redis.test') ], ['127.0.0.3'], 'set() moves the name');
$dns->set('redis.test' => ['127.0.0.2', '127.0.0.3'], 'b.test' => '127.0.0.4');
is_deeply([ sort $dns->lookup('redis.test') ], ['127.0.0.2', '127.0.0.3'],
          'set() with two addresses');
is_deeply([ $dns->lookup('b.test') ], ['127.0.0.4'], 'set() adds a name');
$dns->set('b.test' => undef);
is_deeply([ $dns->lookup('b.test') ], [], 'set(name => undef) removes it');
$dns->set_mode('drop');
is_deeply([ $dns->lookup('redis.test', timeout => 0.3) ], [],
          "set_mode('drop'): no answer");
$dns->set_mode('answer');
ok(scalar(grep { $_ eq 'redis.test A' } $dns->queries), 'queries are logged');
ok(!eval { $dns->set('x' => 'not-an-address'); 1 }, 'set() checks addresses');

# nginx's resolver follows set(): two echo servers, on 127.0.0.2 and .3
{
    $dns->set('up.test' => '127.0.0.2');
    my $conf = <<'EOT';
    resolver %%DNS%% valid=1s ipv6=off;
    resolver_timeout 2s;
    server {
        listen 127.0.0.1:%%PORT_UP%%;   # the harness waits for it
        listen 127.0.0.2:%%PORT_UP%%;
        location / { return 200 "two\n"; }
    }
    server {
        listen 127.0.0.3:%%PORT_UP%%;
        location / { return 200 "three\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            set $up up.test;
            proxy_pass http://$up:%%PORT_UP%%;
        }
    }
EOT
    my $n = ApiKeyTest::Nginx->start(http => $conf, module => 0,
                                     vars => { DNS => $dns->resolver_line });
    is(http_get($n->port, '/')->body, "two\n",
       'nginx resolves up.test to 127.0.0.2');
    $dns->set('up.test' => '127.0.0.3');
    ok(wait_until(sub { http_get($n->port, '/')->body eq "three\n" },
                  timeout => 10, interval => 0.2),
       'after set(), nginx follows to 127.0.0.3 (valid=1s)');
    $n->stop;
}

done_testing;
