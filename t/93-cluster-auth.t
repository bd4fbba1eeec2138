#!/usr/bin/perl
# SPDX-License-Identifier: BSD-2-Clause
# A Redis Cluster whose nodes want a user and password
# (redis-cluster://user:password@...): every connection the module opens to
# a node, the command connections (one per master, opened when first
# needed) and the events connections (keyspace events on every master, the
# events channel on one), logs in as that user before anything else:
# CLIENT LIST on each master names the user for each of them.  With a
# wrong password the nodes refuse (WRONGPASS), a key is answered 503
# unavailable, never 401, and neither log nor page shows the password.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $c = ApiKeyTest::Cluster->start(masters => 3,
                                   config => ['notify-keyspace-events Kghx']);
my $rt = $c->router;
for my $node ($c->nodes) {
    is $node->cmd('ACL', 'SETUSER', 'akmod', 'on', '>clu-pw-7', '~*', '&*', '+@all'),
       'OK', 'user akmod on node ' . $node->port;
}

sub start_nginx {
    my ($url) = @_;
    return ApiKeyTest::Nginx->start(workers => 1, http => <<"EOT" . echo_server());
    api_key_zone  keys:1m ttl=60s negative_ttl=60s;
    api_key_redis $url timeout=1s keyspace_events=on;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status \$api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
}

# one key whose record is on each master
my (%on, @keys);
while (keys(%on) < 3) {
    my $k = random_key();
    my $h = add_key($rt, $k, owner => 'auth');
    my $m = $c->master_for_slot(ApiKeyTest::Cluster::slot_of("apikey:$h"));
    next if $on{ $m->port }++;
    push @keys, [$k, "apikey:$h", $m];
}

# --- the right user and password ------------------------------------------------

my $n = start_nginx($c->url(user => 'akmod', password => 'clu-pw-7'));
my $get = sub {
    my $x = http_get($n->port, '/', headers => { 'X-API-Key' => $_[0] });
    return $x->status . ' ' . ($x->header('X-Status') // '');
};
is $get->($_->[0]), '200 ok', 'a key on master ' . $_->[2]->port . ' verifies'
    for @keys;

for my $m ($c->masters) {
    my @mod = grep { /\bname=\S*/ && !/\bcmd=client\b/ }
              split /\n/, $m->cmd('CLIENT', 'LIST');
    my @as_user = grep { /\buser=akmod\b/ } @mod;
    # the command connection and the keyspace events connection at least
    cmp_ok scalar(@as_user), '>=', 2,
        'master ' . $m->port . ': the module\'s connections log in as akmod'
        or diag join "\n", @mod;
    ok !grep({ /\buser=default\b/ && /\bcmd=(?:hgetall|psubscribe|subscribe|evalsha|eval)\b/ } @mod),
        '... none of them as the default user' or diag join "\n", @mod;
}

# keyspace events come over the authenticated events connections
$rt->cmd('HSET', $keys[0][1], 'status', 'revoked');
ok wait_until(sub { $get->($keys[0][0]) =~ /revoked/ }, timeout => 5),
    'a change on a master is seen at once (its events connection logged in)';
unlike $n->error_log, qr/clu-pw-7/, 'the password is in no log line';
$n->stop;

# --- a wrong password -------------------------------------------------------------

my $bad = start_nginx($c->url(user => 'akmod', password => 'wrong-pw-3'));
$bad->expect_problem(qr/WRONGPASS|AUTH/);
my $last;
ok wait_until(sub { ($last = http_get($bad->port, '/',
                       headers => { 'X-API-Key' => $keys[1][0] })->status) == 503 },
              timeout => 5),
    'a wrong password: 503 (unavailable), never 401' or diag $last;
like $bad->error_log, qr/WRONGPASS|invalid username-password/i,
    '... the log says why';
unlike $bad->error_log, qr/wrong-pw-3/, '... without the password';
$bad->stop;

done_testing;
