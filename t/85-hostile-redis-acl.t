# SPDX-License-Identifier: BSD-2-Clause
# Hostile input, Redis side (3): an ACL user without permission for a
# command the module sends.  What the README says each produces:
#
# - HGETALL (or the record's key pattern, or SELECT, or the password): an
#   authorization error, a misconfiguration: keys not cached get 503
#   unavailable, also under api_key_fail open (never "unchecked"), and one
#   error line;
# - EVALSHA or SCRIPT (LOAD): quota leases are refused: a quota key gets
#   its quota_offline share, then 429 quota_exceeded; keys without a quota
#   are not concerned;
# - SUBSCRIBE (or the channel), PSUBSCRIBE (keyspace_events=on): no
#   events; keys keep working from Redis reads, the failure is logged
#   (once, not per retry);
# - CONFIG (keyspace_events=on): a warning at start, keys work;
# - PING: answered, the connection works, nothing logged.
# Never a 200 for a key Redis was not allowed to read, never a crash.
# A connection refused at its handshake (SELECT) or its subscription
# (PSUBSCRIBE) is retried with the backoff of api_key_redis and logged once
# (README, api_key_redis), and a cached key is not re-read meanwhile.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Hostile;

require_module();

my $ALL = '~* &* +@all';
my %users = (
    nohgetall   => "$ALL -hgetall",
    nokeys      => 'resetkeys ~other:* &* +@all',
    noselect    => "$ALL -select",
    noevalsha   => "$ALL -evalsha",
    noscript    => "$ALL -script",
    nosubscribe => "$ALL -subscribe",
    nochannel   => 'resetchannels &other ~* +@all',
    nopsub      => "$ALL -psubscribe",
    noconfig    => "$ALL -config",
    noping      => "$ALL -ping",
);
my $r = ApiKeyTest::Redis->start(
    users => [ 'default on nopass ~* &* +@all',
               map { "$_ on >pw-$_ $users{$_}" } sort keys %users ],
    config => [ 'notify-keyspace-events Kghx' ]);

my $tmpl = <<'EOT' . echo_server();
    api_key_zone  keys:1m quota_offline=2;
    api_key_redis redis://%%USER%%:pw-%%USER%%@127.0.0.1:%%REDIS%%%%DB%% timeout=500ms %%EXTRA%%;

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
    }
EOT

my $k = random_key('acl');
my $kq = random_key('aclq');
my $krev = random_key('aclr');
add_key($r, $k, owner => 'o');
add_key($r, $kq, owner => 'q', quota => '1000/day');
add_key($r, $krev, owner => 'r');
my $u = random_key('aclu');

# user => [ options, [ [ path, key, expected ] ... ], log expectations ]
# log expectations: [ regexp, min, max ] lines of the error log
my @D = ('401 unknown');
my @rows = (
    [ 'nohgetall', {}, [ [ '/open/', $k, '503 unavailable' ], [ '/open/', $u, '503 unavailable' ],
                         [ '/', $k, '503 unavailable' ], [ '/open/', 'any-garbage', '503 unavailable' ] ],
      [ [ qr/\[error\].*answered the read of key id.*NOPERM.*authorization error/, 1, 1 ] ] ],
    [ 'nokeys', {}, [ [ '/open/', $k, '503 unavailable' ], [ '/open/', $u, '503 unavailable' ] ],
      [ [ qr/\[error\].*answered the read of key id.*NOPERM.*authorization error/, 1, 1 ] ] ],
    [ 'noselect', { db => '/1' },
      [ [ '/open/', $k, '503 unavailable' ], [ '/', $k, '503 unavailable' ] ],
      [ [ qr/\[error\].*SELECT failed: NOPERM/, 1, 2 ] ] ],
    [ 'noevalsha', {}, [ [ '/', $k, '200 ok' ], [ '/', $kq, '200 ok' ], [ '/', $kq, '200 ok' ],
                         [ '/', $kq, '429 quota_exceeded' ], [ '/open/', $kq, '429 quota_exceeded' ] ],
      [ [ qr/\[error\].*NOPERM/, 1, 1 ] ] ],
    [ 'noscript', { setup => sub { $r->cmd('SCRIPT', 'FLUSH') } }, [ [ '/', $k, '200 ok' ], [ '/', $kq, '200 ok' ], [ '/', $kq, '200 ok' ],
                        [ '/', $kq, '429 quota_exceeded' ] ],
      # (the lease is refused as NOSCRIPT: the SCRIPT LOAD before it was)
      [ [ qr/\[error\].*quota lease for key id "[0-9a-f]{12}" failed: NOSCRIPT/, 1, 1 ] ] ],
    [ 'nosubscribe', {}, [ [ '/', $k, '200 ok' ], [ '/', $u, '401 unknown' ] ],
      [ [ qr/\[error\].*events connection.*NOPERM/, 1, 1 ] ], 'events' ],
    [ 'nochannel', {}, [ [ '/', $k, '200 ok' ], [ '/', $u, '401 unknown' ] ],
      [ [ qr/\[error\].*events connection.*NOPERM/, 1, 1 ] ], 'events' ],
    [ 'nopsub', { extra => 'keyspace_events=on' }, [ [ '/', $k, '200 ok' ], [ '/', $u, '401 unknown' ] ],
      [ [ qr/\[error\].*events connection.*NOPERM/, 1, 1 ],
        [ qr/events subscription to .* is back, cached records will be re-read/, 0, 1 ] ],
      'events' ],
    [ 'noconfig', { extra => 'keyspace_events=on' }, [ [ '/', $k, '200 ok' ], [ '/', $u, '401 unknown' ] ],
      [ [ qr/\[warn\].*CONFIG GET notify-keyspace-events is not allowed/, 1, 1 ],
        [ qr/\[error\]/, 0, 0 ] ] ],
    [ 'noping', {}, [ [ '/', $k, '200 ok' ], [ '/open/', $u, '401 unknown' ] ],
      [ [ qr/\[error\]/, 0, 0 ] ] ],
);

for my $row (@rows) {
    my ($user, $o, $reqs, $logs, $events) = @$row;
    $o->{setup}->() if $o->{setup};
    my $n = ApiKeyTest::Nginx->start(http => $tmpl,
        vars => { REDIS => $r->port, USER => $user, DB => $o->{db} // '',
                  EXTRA => $o->{extra} // '' });
    # the commands connection (not when the handshake is refused)
    $r->wait_clients(1, timeout => 2);
    sleep 0.2;
    my $port = $n->port;
    # (the events connection may be refused; the commands one is up)
    my @got;
    for my $q (@$reqs) {
        my ($path, $key, $want) = @$q;
        push @got, got(http_get($port, $path, headers => { 'X-API-Key' => $key }));
    }
    is_deeply(\@got, [ map { $_->[2] } @$reqs ],
              "user $user ($users{$user}): " . join(', ', map { $_->[2] } @$reqs))
        or diag "got: @got";
    if ($events) {
        # the subscription cannot be made: retried with backoff, logged once;
        # a cached key is not read again and again meanwhile
        reset_stats($r);
        my @st = map { sleep 0.1; got(http_get($port, '/', headers => { 'X-API-Key' => $k })) } 1 .. 15;
        is_deeply(\@st, [ ('200 ok') x 15 ], "$user: a cached key keeps working");
        my $reads = hgetall_calls($r);
        ok($reads <= 1, "$user: ... without being read again and again "
           . "(HGETALL: $reads in 1.5 s)");
    }
    $n->stop;
    my $log = $n->error_log;
    for my $l (@$logs) {
        my ($re, $min, $max) = @$l;
        my $c = grep { /$re/ } split /\n/, $log;
        ok($c >= $min && $c <= $max, "$user: $min to $max error log lines like $re")
            or diag "$c lines:\n" . join "\n", (grep { /\[(?:error|warn)\]/ } split /\n/, $log)[0 .. 5];
    }
}

done_testing;
