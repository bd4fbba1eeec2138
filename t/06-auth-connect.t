# SPDX-License-Identifier: BSD-2-Clause
# Connecting to Redis: requirepass with password_file, a wrong password,
# a Redis 6 ACL user in the URL (with a db), an ACL user with password_file,
# a unix socket with ?db=N.  The workers run as nobody when the tests run as
# root, so files read at config time (password_file) may be root-only.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

sub conf {
    my ($url_and_opts) = @_;
    return <<"EOT" . echo_server();
    api_key_zone  keys:1m;
    api_key_redis $url_and_opts timeout=1s;
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Status \$api_key_status always;
        add_header X-Owner  \$api_key_owner always;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
}

sub get { my ($n, $k) = @_; http_get($n->port, '/', headers => { 'X-API-Key' => $k }) }

my $dir = tmpdir();

# --- requirepass + password_file ---------------------------------------------
{
    my $r = ApiKeyTest::Redis->start(requirepass => 'pa55-word');
    my $pw = spew("$dir/redis.pw", "pa55-word\n", 0600);   # root-only, one trailing newline
    my $k = random_key('pw');
    add_key($r, $k, owner => 'pw-owner');

    my $n = ApiKeyTest::Nginx->start(
        http => conf("redis://127.0.0.1:%%REDIS%% password_file=$pw"),
        vars => { REDIS => $r->port }, redis => $r);
    my $res = get($n, $k);
    is($res->status, 200, 'requirepass + password_file (trailing newline stripped): 200')
        or diag $res->as_string;
    is($res->header('X-Owner'), 'pw-owner', '... the record was read');
    is(get($n, random_key('x'))->status, 401, 'requirepass: an unknown key is 401 (Redis answers)');
    is_deeply([ $n->problems ], [], 'requirepass: no alert/crit/emerg');
    $n->stop;

    # a wrong password: Redis refuses, so keys cannot be checked
    my $bad = spew("$dir/bad.pw", "wrong\n", 0600);
    my $n2 = ApiKeyTest::Nginx->start(
        http => conf("redis://127.0.0.1:%%REDIS%% password_file=$bad"),
        vars => { REDIS => $r->port });
    $res = get($n2, $k);
    is($res->status, 503, 'wrong password: 503 (not 401: the key was not checked)')
        or diag $res->as_string;
    is($res->header('X-Status'), 'unavailable', 'wrong password: unavailable');
    $n2->stop;
    $r->stop;
}

# --- ACL user in the URL, db 3 ----------------------------------------------
{
    my $r = ApiKeyTest::Redis->start(
        requirepass => 'adm1n-pw',
        users => ['alice on >alice-pw ~* &* +@all']);
    my $k3 = random_key('db3');
    my $k0 = random_key('db0');
    add_key($r, $k3, owner => 'in-db-3', -db => 3);
    add_key($r, $k0, owner => 'in-db-0');

    my $n = ApiKeyTest::Nginx->start(
        http => conf('redis://alice:alice-pw@127.0.0.1:%%REDIS%%/3'),
        vars => { REDIS => $r->port }, redis => $r);
    my $res = get($n, $k3);
    is($res->status, 200, 'ACL user alice in the URL, db 3: a record in db 3 is found')
        or diag $res->as_string;
    is($res->header('X-Owner'), 'in-db-3', '... its record');
    $res = get($n, $k0);
    is($res->status, 401, 'db 3: a record only in db 0 is unknown');
    is($res->header('X-Status'), 'unknown', '... unknown');
    my @mod = grep { ($_->{user} // '') eq 'alice' } $r->other_clients;
    ok(scalar @mod, 'the module is connected as alice');
    ok(scalar(grep { ($_->{db} // '') eq '3' } @mod), '... on db 3');
    $n->stop;

    # the same user, the password from password_file (SPEC: the URL is
    # redis://[user[:password]@]host:port[/db], so "alice@" is a user)
    my $pw = spew("$dir/alice.pw", "alice-pw\n", 0600);
    my $n2 = eval {
        ApiKeyTest::Nginx->start(
            http => conf("redis://alice\@127.0.0.1:%%REDIS%%/3 password_file=$pw"),
            vars => { REDIS => $r->port }, redis => $r);
    };
    ok($n2, 'redis://alice@host:port/3 password_file=...: nginx starts')
        or diag $@;
    if ($n2) {
        $res = get($n2, $k3);
        is($res->status, 200, 'ACL user in the URL + password_file: 200')
            or diag $res->as_string;
        ok(scalar(grep { ($_->{user} // '') eq 'alice' } $r->other_clients),
           '... connected as alice');
        $n2->stop;
    }
    $r->stop;
}

# --- unix socket ------------------------------------------------------------------
{
    my $r = ApiKeyTest::Redis->start(unixsocket => 1, port => 0);   # no TCP at all
    my $k2 = random_key('unix2');
    my $k0 = random_key('unix0');
    add_key($r, $k2, owner => 'unix-db-2', -db => 2);
    add_key($r, $k0, owner => 'unix-db-0');
    my $sock = $r->socket_path;

    my $n = ApiKeyTest::Nginx->start(http => conf("unix:$sock?db=2"), redis => $r);
    my $res = get($n, $k2);
    is($res->status, 200, 'unix socket ?db=2: a record in db 2 is found')
        or diag $res->as_string;
    is($res->header('X-Owner'), 'unix-db-2', '... its record');
    is(get($n, $k0)->status, 401, 'unix socket ?db=2: a record only in db 0 is unknown');
    $n->stop;

    my $n2 = ApiKeyTest::Nginx->start(http => conf("unix:$sock"), redis => $r);
    is(get($n2, $k0)->status, 200, 'unix socket without ?db: db 0');
    is(get($n2, $k2)->status, 401, 'unix socket without ?db: not db 2');
    is_deeply([ $n2->problems ], [], 'unix socket: no alert/crit/emerg');
    $n2->stop;
}

done_testing;
