# SPDX-License-Identifier: BSD-2-Clause
# The "ips" field of a record: IPv4 addresses and CIDRs, IPv6 (over [::1]
# when the machine has it), lists, real_ip ($remote_addr is the client
# address), IPv4-mapped addresses, clients of one key taking turns (and
# the record changing between them; IPv6 and IPv4 through real_ip), two
# keys of one entry of the worker's kept views, one key in two zones
# holding two versions of its record, malformed rules (401 bad_record, a
# warning naming the key id and the field, no crash).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;
use ApiKeyTest::Events;

require_module();

my $V6 = ipv6_loopback();
my $r = ApiKeyTest::Redis->start;

my $listen6 = $V6 ? 'listen [::1]:%%PORT%%;' : '';
my $http = <<"EOT";
    api_key_zone  keys:1m ttl=60s negative_ttl=1s;
    api_key_zone  two:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        $listen6
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status \$api_key_status always;
        add_header X-Id     \$api_key_id always;
        add_header X-Remote \$remote_addr always;
        add_header X-Owner  \$api_key_owner always;

        location / {
            try_files /ok.txt =404;
        }

        location /two/ {
            api_key two;
            try_files /ok.txt =404;
        }

        location /rip/ {
            set_real_ip_from 127.0.0.1;
            set_real_ip_from ::1;
            real_ip_header   X-Forwarded-For;
            try_files /ok.txt =404;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, redis_clients => 2,
                                 vars => { REDIS => $r->port });
static_site($n);
my $port = $n->port;

sub get4 { my ($k, $path, %h) = @_; http_get($port, $path // '/', headers => xkey($k, %h)) }
sub get6 { my ($k, $path, %h) = @_; http6_get($port, $path // '/', headers => xkey($k, %h)) }

sub is_ok {
    my ($res, $what) = @_;
    is($res->status, 200, "$what: 200") or diag $res->as_string;
    is($res->header('X-Status'), 'ok', "$what: status ok");
}

sub is_denied {
    my ($res, $what) = @_;
    is($res->status, 403, "$what: 403") or diag $res->as_string;
    is($res->header('X-Status'), 'ip_denied', "$what: status ip_denied");
    is($res->header('WWW-Authenticate'), undef, "$what: no WWW-Authenticate");
}

sub is_answer {
    my ($res, $status, $owner, $what) = @_;
    is($res->status, $status, "$what: $status") or diag $res->as_string;
    is($res->header('X-Owner'), $owner, "$what: owner $owner");
}

my %key;
sub mk {
    my ($name, %f) = @_;
    $key{$name} = random_key($name);
    return add_key($r, $key{$name}, owner => $name, %f);
}

# --- IPv4 from 127.0.0.1 -------------------------------------------------------
{
    my @allow = (
        [ exact      => '127.0.0.1' ],
        [ slash8     => '127.0.0.0/8' ],
        [ slash32    => '127.0.0.1/32' ],
        [ slash31    => '127.0.0.0/31' ],        # .0 and .1
        [ hostbits   => '127.0.0.77/8' ],        # host bits under the prefix ignored
        [ all4       => '0.0.0.0/0' ],
        [ second     => '10.0.0.0/8,127.0.0.1' ],
        [ third_sp   => '192.0.2.0/24, 198.51.100.7 , 127.0.0.0/8' ],
        [ v6_then_v4 => '2001:db8::/32,127.0.0.1' ],
    );
    my @deny = (
        [ net10      => '10.0.0.0/8' ],
        [ other_host => '127.0.0.2' ],
        [ other_31   => '127.0.0.2/31' ],        # .2 and .3
        [ near_miss  => '128.0.0.0/8' ],
        [ list_none  => '10.0.0.0/8,192.168.0.0/16,172.16.0.0/12' ],
        [ v6_only    => '::1' ],                 # an IPv6 rule, an IPv4 client
        [ v6_all     => '2001:db8::/32' ],
    );
    for my $c (@allow) {
        mk($c->[0], ips => $c->[1]);
        my $res = get4($key{ $c->[0] });
        is_ok($res, "ips=$c->[1] from 127.0.0.1");
    }
    for my $c (@deny) {
        mk($c->[0], ips => $c->[1]);
        my $res = get4($key{ $c->[0] });
        is_denied($res, "ips=$c->[1] from 127.0.0.1");
    }
    # the denial is the key's, not the client's: another key still works
    is_ok(get4($key{exact}), 'after denials, an allowed key still passes');
    # a denied key is still identified ($api_key_id is set)
    my $h = mk('idshown', ips => '10.0.0.0/8', id => 'ip-key-1');
    my $res = get4($key{idshown});
    is_denied($res, 'denied key with an id');
    is($res->header('X-Id'), 'ip-key-1', 'ip_denied: $api_key_id is the key id');
}

# --- IPv6 from ::1 --------------------------------------------------------------
SKIP: {
    skip 'no IPv6 loopback on this machine', 20 unless $V6;
    my @allow = (
        [ v6_128    => '::1/128' ],
        [ v6_plain  => '::1' ],
        [ v6_second => '2001:db8::/32,::1' ],
        [ v6_all    => '::/0' ],
        [ v6_mixed  => '10.0.0.0/8, ::1/128' ],
    );
    my @deny = (
        [ v6_doc    => '2001:db8::/32' ],
        [ v6_two    => '::2' ],
        [ v4_lo     => '127.0.0.1' ],            # an IPv4 rule, an IPv6 client
    );
    my $res = get6($key{exact});
    is($res->header('X-Remote'), '::1', 'the request came over IPv6 from ::1')
        or diag $res->as_string;
    for my $c (@allow) {
        mk("6$c->[0]", ips => $c->[1]);
        is_ok(get6($key{"6$c->[0]"}), "ips=$c->[1] from ::1");
    }
    for my $c (@deny) {
        mk("6$c->[0]", ips => $c->[1]);
        is_denied(get6($key{"6$c->[0]"}), "ips=$c->[1] from ::1");
    }
}

# --- real_ip: the client address is $remote_addr -------------------------------
{
    mk('rip10', ips => '10.0.0.0/8');
    my $res = get4($key{rip10}, '/rip/x', 'X-Forwarded-For' => '10.1.2.3');
    is_ok($res, 'real_ip: X-Forwarded-For 10.1.2.3, ips=10.0.0.0/8');
    is($res->header('X-Remote'), '10.1.2.3', 'real_ip: $remote_addr is 10.1.2.3');

    $res = get4($key{rip10}, '/rip/x', 'X-Forwarded-For' => '192.0.2.1');
    is_denied($res, 'real_ip: X-Forwarded-For 192.0.2.1, ips=10.0.0.0/8');
    is($res->header('X-Remote'), '192.0.2.1', 'real_ip: $remote_addr is 192.0.2.1');

    $res = get4($key{rip10}, '/rip/x', 'X-Forwarded-For' => '198.51.100.9, 10.1.2.3');
    is_ok($res, 'real_ip: the last X-Forwarded-For address is the client');

    # without real_ip in that location the header means nothing
    $res = get4($key{rip10}, '/', 'X-Forwarded-For' => '10.1.2.3');
    is_denied($res, 'no real_ip: X-Forwarded-For is ignored');

    # the loopback key is denied when real_ip makes the client 10.1.2.3
    $res = get4($key{exact}, '/rip/x', 'X-Forwarded-For' => '10.1.2.3');
    is_denied($res, 'real_ip: ips=127.0.0.1, client 10.1.2.3');

    # IPv6 client addresses through real_ip (no IPv6 socket needed)
    mk('rip6', ips => '2001:db8::/32');
    is_ok(get4($key{rip6}, '/rip/x', 'X-Forwarded-For' => '2001:db8::5'),
          'real_ip: client 2001:db8::5, ips=2001:db8::/32');
    is_denied(get4($key{rip6}, '/rip/x', 'X-Forwarded-For' => '2001:db9::5'),
              'real_ip: client 2001:db9::5, ips=2001:db8::/32');

    # IPv4-mapped IPv6 addresses match IPv4 rules (README)
    $res = get4($key{rip10}, '/rip/x', 'X-Forwarded-For' => '::ffff:10.1.2.3');
    is_ok($res, 'real_ip: client ::ffff:10.1.2.3 matches ips=10.0.0.0/8');
    is_denied(get4($key{rip10}, '/rip/x', 'X-Forwarded-For' => '::ffff:192.0.2.1'),
              'real_ip: client ::ffff:192.0.2.1, ips=10.0.0.0/8');
}

# --- clients take turns: each gets its own verdict ------------------------------
# (the worker keeps the last verdict of a key's address rules with the
# address it was for; another address, or a changed record, is asked anew)
{
    my $h = mk('turns', ips => '127.0.0.1/32,10.0.0.0/8');
    my $from = sub {
        my ($addr) = @_;
        return http_get($port, '/', headers => xkey($key{turns}), from => $addr);
    };
    my $res = $from->('127.0.0.2');
    is($res->header('X-Remote'), '127.0.0.2', 'a second client address: 127.0.0.2')
        or diag $res->as_string;
    for my $round (1 .. 3) {
        is_ok($from->('127.0.0.1'), "turn $round: 127.0.0.1, ips=127.0.0.1/32,10.0.0.0/8");
        is_denied($from->('127.0.0.2'), "turn $round: 127.0.0.2, ips=127.0.0.1/32,10.0.0.0/8");
        is_denied($from->('127.0.0.3'), "turn $round: 127.0.0.3");
    }
    is_denied($from->('127.0.0.2'), '127.0.0.2 again');
    is_denied($from->('127.0.0.2'), '127.0.0.2 twice in a row');
    is_ok($from->('127.0.0.1'), '127.0.0.1 again');
    is_ok($from->('127.0.0.1'), '127.0.0.1 twice in a row');

    # the record changes (and with it the rules) right after 127.0.0.1
    # passed: the verdicts are asked anew
    add_key($r, $key{turns}, owner => 'turns', ips => '127.0.0.2/32');
    is(publish($r, "update $h"), 1, 'PUBLISH update: one worker hears it');
    ok(wait_until(sub { $from->('127.0.0.1')->status == 403 }, timeout => 5),
       'after the change, 127.0.0.1 is denied');
    # (the first request after the change viewed the new record afresh;
    # this one uses that view, and must not find the old verdict there)
    is_denied($from->('127.0.0.1'), 'after the change, 127.0.0.1 a second time');
    is_ok($from->('127.0.0.2'), 'after the change, 127.0.0.2 passes');
    is_denied($from->('127.0.0.1'), 'after the change, 127.0.0.1 again: denied');
    is_ok($from->('127.0.0.2'), 'after the change, 127.0.0.2 again: passes');
}

# --- a kept record with a rate: denied clients take nothing, a revocation is
# seen at once (the worker takes a record it keeps as unchanged while nothing
# was written to the cache: from a key's third request on)
{
    my $h = mk('keptrate', ips => '127.0.0.1/32', rate => '3/m', burst => 2);
    my $from = sub {
        return http_get($port, '/', headers => xkey($key{keptrate}), from => $_[0]);
    };
    is_ok($from->('127.0.0.1'), 'kept, rate 3/m burst 2: the 1st passes');
    is_ok($from->('127.0.0.1'), 'kept, rate 3/m burst 2: the 2nd passes');
    is_denied($from->('127.0.0.2'), "kept, rate: 127.0.0.2 ($_)") for 1 .. 4;
    is_ok($from->('127.0.0.1'), 'kept, rate: the 3rd passes (the denied took none)');
    my $res = $from->('127.0.0.1');
    is($res->status . ' ' . ($res->header('X-Status') // ''), '429 rate_limited',
       'kept, rate: the 4th is rate_limited') or diag $res->as_string;
    is_denied($from->('127.0.0.2'), 'kept, rate: 127.0.0.2 once more');

    # revoked while kept: an event's write moves the cache's count on
    is(publish($r, "revoke $h"), 1, 'PUBLISH revoke: one worker hears it');
    $res = $from->('127.0.0.1');
    is($res->status . ' ' . ($res->header('X-Status') // ''), '401 revoked',
       'kept, revoked: the next request is revoked') or diag $res->as_string;
    $res = $from->('127.0.0.1');
    is($res->status . ' ' . ($res->header('X-Status') // ''), '401 revoked',
       'kept, revoked: and the one after');
}

# --- two keys in one entry of the worker's kept views ------------------------
# (the worker keeps 16 keys' views, by the second byte of the key's hash:
# two keys of the same entry replace each other's view, verdicts and mark)
{
    my $slot = sub { hex(substr(key_hash($_[0]), 2, 2)) & 15 };
    my $a = random_key('slota');
    my $b;
    for (1 .. 2000) {
        $b = random_key('slotb');
        last if $slot->($b) == $slot->($a);
    }
    is($slot->($b), $slot->($a), 'two keys of one kept-view entry');
    add_key($r, $a, owner => 'a', ips => '127.0.0.1/32');
    add_key($r, $b, owner => 'b', ips => '127.0.0.2/32');
    my $from = sub {
        my ($k, $addr) = @_;
        return http_get($port, '/', headers => xkey($k), from => $addr);
    };
    # by turns, by pairs (the second of a pair reuses the view the first
    # made), from either address
    for my $round (1 .. 2) {
        for my $k ($a, $a, $b, $b, $a, $b, $a, $a) {
            my $who = $k eq $a ? 'key a (127.0.0.1)' : 'key b (127.0.0.2)';
            my ($ok, $no) = $k eq $a ? ('127.0.0.1', '127.0.0.2')
                                     : ('127.0.0.2', '127.0.0.1');
            is_ok($from->($k, $ok), "round $round: $who from $ok");
            is_denied($from->($k, $no), "round $round: $who from $no");
        }
    }
}

# --- IPv6 and IPv4 clients taking turns (real_ip) -------------------------------
{
    mk('turns6', ips => '2001:db8::/32,10.0.0.0/8');
    my @turns = (
        [ '2001:db8::5', 1 ], [ '2001:db8::5', 1 ], [ '2001:db9::5', 0 ],
        [ '10.1.2.3', 1 ], [ '2001:db8::5', 1 ], [ '192.0.2.1', 0 ],
        [ '::ffff:10.1.2.3', 1 ], [ '::ffff:192.0.2.1', 0 ],
        [ '2001:db9::5', 0 ], [ '2001:db9::5', 0 ], [ '2001:db8::6', 1 ],
        [ '10.1.2.3', 1 ], [ '10.1.2.3', 1 ], [ '11.1.2.3', 0 ],
        [ '2001:db8:ffff::1', 1 ], [ '::ffff:10.1.2.3', 1 ],
    );
    for my $t (@turns, reverse @turns) {
        my ($addr, $ok) = @$t;
        my $res = get4($key{turns6}, '/rip/x', 'X-Forwarded-For' => $addr);
        if ($ok) {
            is_ok($res, "ips=2001:db8::/32,10.0.0.0/8, client $addr");
        } else {
            is_denied($res, "ips=2001:db8::/32,10.0.0.0/8, client $addr");
        }
    }
}

# --- one key in two zones holding two versions of its record ----------------
# (changed in Redis without an event: each zone keeps the version it read;
# "/" is zone keys, here "zone one", /two/ zone two), asked of by turns:
# each request is judged by its own zone's version, never by the view the
# worker keeps of the other's (one view per key, whichever zone gave it)
{
    my $k = random_key('zones');

    # version 1 read by zone one, then version 2 (no event) read by zone two
    add_key($r, $k, owner => 'v1', ips => '127.0.0.1/32',
            referrers => 'one.example.com');
    my %ref1 = (Referer => 'https://one.example.com/');
    is(http_get($port, '/one/x', headers => xkey($k, %ref1))->status, 200,
       'zone one reads version 1');
    add_key($r, $k, owner => 'v2', ips => '127.0.0.2/32',
            referrers => 'two.example.com');
    my %ref2 = (Referer => 'https://two.example.com/');
    my $res = http_get($port, '/two/x', headers => xkey($k, %ref2), from => '127.0.0.2');
    is_answer($res, 200, 'v2', 'zone two reads version 2');

    for my $round (1 .. 3) {
        for my $zone (qw(one one two two one two one two two one)) {
            my ($ok, $no, $owner, $ref, $other_ref) = $zone eq 'one'
                ? ('127.0.0.1', '127.0.0.2', 'v1', \%ref1, \%ref2)
                : ('127.0.0.2', '127.0.0.1', 'v2', \%ref2, \%ref1);
            is_answer(http_get($port, "/$zone/x", headers => xkey($k, %$ref), from => $ok),
                      200, $owner, "round $round, zone $zone from $ok");
            $res = http_get($port, "/$zone/x", headers => xkey($k, %$ref), from => $no);
            is_answer($res, 403, $owner, "round $round, zone $zone from $no");
            is($res->header('X-Status'), 'ip_denied', "round $round, zone $zone from $no: ip_denied");
            $res = http_get($port, "/$zone/x", headers => xkey($k, %$other_ref), from => $ok);
            is($res->header('X-Status'), 'referrer_denied',
               "round $round, zone $zone: the other version's Referer denied");
        }
    }
}

# --- malformed rules: 401 bad_record, a warning naming the key, no crash --------
{
    my @bad = (
        [ 'bad33',   '10.0.0.0/33',        undef ],
        [ 'badword', 'not-an-ip',          undef ],
        [ 'bad300',  '300.1.1.1',          undef ],
        [ 'badv6p',  '::1/129',            undef ],
        [ 'badneg',  '10.0.0.0/-1',        undef ],
        [ 'badslash','10.0.0.0/',          undef ],
        [ 'badlist', '127.0.0.1,bogus',    undef ],
        [ 'badid',   'not-an-ip',          'ip-bad-key-7' ],
    );
    for my $b (@bad) {
        my ($name, $ips, $id) = @$b;
        my $mark = $n->log_mark;
        my $h = mk($name, ips => $ips, defined $id ? (id => $id) : ());
        my $res = get4($key{$name});
        is($res->status, 401, "ips=$ips: 401") or diag $res->as_string;
        is($res->header('X-Status'), 'bad_record', "ips=$ips: bad_record");
        like($res->header('WWW-Authenticate') // '', qr/error="invalid_token"/,
             "ips=$ips: WWW-Authenticate invalid_token");
        my $want_id = $id // substr($h, 0, 12);
        my $log = '';
        wait_until(sub {
            $log = $n->error_log_since($mark);
            $log =~ /\[warn\].*\Q$want_id\E/;
        }, timeout => 3);
        my @w = grep { /\[warn\]/ && /\Q$want_id\E/ } split /\n/, $log;
        ok(@w, "ips=$ips: a warning names the key id $want_id")
            or diag join "\n", grep { !/\[debug\]/ } split /\n/, $log;
        ok((grep { /\bips\b/ } @w), "ips=$ips: the warning names the field \"ips\"")
            or diag join "\n", @w;
        is_deeply([ key_leaks($log, $key{$name}) ], [],
                  "ips=$ips: the raw key is not logged (outside nginx's own debug lines)");
    }
    is_ok(get4($key{exact}), 'after malformed records, a good key still passes');
    unlike($n->error_log, qr/exited on signal/, 'no worker crashed');
    is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
}

$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
