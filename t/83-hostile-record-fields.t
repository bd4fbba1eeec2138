# SPDX-License-Identifier: BSD-2-Clause
# Hostile input, Redis side (1): every record field with out-of-range,
# negative, overflowing, huge (1 MB) and odd values, and unknown fields.
#
# The rules are the README's (Redis records) and src/core/record.cpp's.  A
# malformed field makes the key bad_record (401), with one warning naming
# the key id (the record's id when it is valid, else the first 12 hex
# digits of the hash) and never the key, however often the key is sent;
# values at the edge of their range are accepted.  A key is never let
# through by a field it could not read (200 only where the table says so).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Hostile;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:4m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Status $api_key_status always;
        add_header X-Owner  $api_key_owner always;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;

my $MB = 1 << 20;
my $BAD = '401 bad_record';
my $OK = '200 ok';

# [ field => value, ..., expected ]: a record of these fields (and an id of
# its own unless the row sets one)
my @rows = (
    # id
    [ id => 'a' x 64,                 $OK ],
    [ id => 'a' x 65,                 $BAD ],
    [ id => 'has space',              $BAD ],
    [ id => "nul\0id",                $BAD ],
    [ id => "caf\xc3\xa9",            $BAD ],
    [ id => 'x' x $MB,                $BAD ],
    [ id => '',                       $OK ],         # empty: absent
    # owner, plan
    [ owner => 'o' x 256,             $OK ],
    [ owner => 'o' x 257,             $BAD ],
    [ owner => "a\x01b",              $BAD ],
    [ owner => "a\tb",                $BAD ],
    [ owner => "line\nfeed",          $BAD ],
    [ owner => "del\x7f",             $BAD ],
    [ owner => "nul\0",               $BAD ],
    [ owner => "caf\xc3\xa9 \xf0\x9f\x94\x91", $OK ],  # UTF-8 is text
    [ owner => "\xff\xfe",            $OK ],         # so are other high bytes
    [ owner => 'o' x $MB,             $BAD ],
    [ plan => 'p' x 257,              $BAD ],
    [ plan => "\r",                   $BAD ],
    [ plan => 'p' x $MB,              $BAD ],
    # status
    [ status => 'active',             $OK ],
    [ status => 'revoked',            '401 revoked' ],
    [ status => 'disabled',           '403 disabled' ],
    [ status => 'Active',             $BAD ],
    [ status => 'REVOKED',            $BAD ],
    [ status => ' active',            $BAD ],
    [ status => 'active ',            $BAD ],
    [ status => "active\0",           $BAD ],
    [ status => 'deleted',            $BAD ],
    [ status => '0',                  $BAD ],
    [ status => 's' x $MB,            $BAD ],
    # expires_at
    [ expires_at => '0',              $OK ],
    [ expires_at => '1',              '401 expired' ],
    [ expires_at => '999999999999999999', $OK ],    # 18 digits
    [ expires_at => '1000000000000000000', $BAD ],  # 19
    [ expires_at => '18446744073709551616', $BAD ], # 2^64
    [ expires_at => '9' x 40,         $BAD ],
    [ expires_at => '-1',             $BAD ],
    [ expires_at => '+5',             $BAD ],
    [ expires_at => '1e10',           $BAD ],
    [ expires_at => '1.5',            $BAD ],
    [ expires_at => '0x10',           $BAD ],
    [ expires_at => ' 5',             $BAD ],
    [ expires_at => '1' x $MB,        $BAD ],
    # scopes
    [ scopes => 's' x 64,             $OK ],
    [ scopes => 's' x 65,             $BAD ],
    [ scopes => 'read,write',         $BAD ],
    [ scopes => "read\nwrite",        $BAD ],
    [ scopes => "read \t  write",     $OK ],
    [ scopes => '     ',              $OK ],         # blanks only: none
    [ scopes => "caf\xc3\xa9",        $BAD ],
    [ scopes => join(' ', ('abcdefgh') x 500), $BAD ],   # 4.5 KB: too large
    [ scopes => 's ' x ($MB / 2),     $BAD ],
    # ips (the client is 127.0.0.1)
    [ ips => '127.0.0.1',             $OK ],
    [ ips => '0.0.0.0/0',             $OK ],
    [ ips => '10.0.0.0/8',            '403 ip_denied' ],
    [ ips => '::/0',                  '403 ip_denied' ],  # IPv4 meets IPv4 rules
    [ ips => '::ffff:127.0.0.0/104',  $OK ],              # mapped: an IPv4 rule
    [ ips => '10.0.0.0/33',           $BAD ],
    [ ips => '10.0.0.0/-1',           $BAD ],
    [ ips => '10.0.0.0/',             $BAD ],
    [ ips => '127.0.0.0/08',          $OK ],              # 8, whatever its zeros
    [ ips => '10.0.0.0/4294967304',   $BAD ],             # 2^32 + 8
    [ ips => '::1/129',               $BAD ],
    [ ips => '256.0.0.1',             $BAD ],
    [ ips => '1.2.3',                 $BAD ],
    [ ips => '127.0.0.01',            $BAD ],
    [ ips => '127.0.0.1,,10.0.0.1',   $BAD ],
    [ ips => ',',                     $BAD ],
    [ ips => 'localhost',             $BAD ],
    [ ips => "127.0.0.1\0",           $BAD ],             # NUL: not an address
    [ ips => "127.0.0.1\0junk",       $BAD ],
    [ ips => "::ffff:127.0.0.1\0junk", $BAD ],
    [ ips => '1' x $MB,               $BAD ],
    # referrers (no Referer sent)
    [ referrers => 'example.com',     '403 referrer_denied' ],
    [ referrers => 'http://example.com', $BAD ],
    [ referrers => 'example.com:80',  $BAD ],
    [ referrers => 'a.com,,b.com',    $BAD ],
    [ referrers => 'exa mple.com',    $BAD ],
    [ referrers => "example.com\0",   $BAD ],
    [ referrers => 'r' x $MB,         $BAD ],
    # rate, burst
    [ rate => '1/s',                  $OK ],
    [ rate => '1000000000/s',         $OK ],
    [ rate => '1000000001/s',         $BAD ],
    [ rate => '18446744073709551617/s', $BAD ],
    [ rate => ('9' x 30) . '/s',      $BAD ],
    [ rate => '0/s',                  $BAD ],
    [ rate => '-1/s',                 $BAD ],
    [ rate => '5/S',                  $OK ],
    [ rate => '5/Minute',             $OK ],
    [ rate => '5/d',                  $BAD ],
    [ rate => '5/day',                $BAD ],
    [ rate => '5',                    $BAD ],
    [ rate => '/s',                   $BAD ],
    [ rate => '5/',                   $BAD ],
    [ rate => '5/s/s',                $BAD ],
    [ rate => ' 5/s',                 $BAD ],
    [ rate => '5 /s',                 $BAD ],
    [ rate => '5.5/s',                $BAD ],
    [ rate => '5' x $MB . '/s',       $BAD ],
    [ rate => '1/s', burst => '1000000', $OK ],
    [ rate => '1/s', burst => '1000001', $BAD ],
    [ rate => '1/s', burst => '-1',   $BAD ],
    [ rate => '1/s', burst => '1.0',  $BAD ],
    [ rate => '1/s', burst => '18446744073709551616', $BAD ],
    [ burst => 'x',                   $BAD ],         # checked without rate
    [ burst => '7',                   $OK ],
    # quota
    [ quota => '2/day',               $OK ],
    [ quota => '1000000000000000/month', $OK ],
    [ quota => '1000000000000001/month', $BAD ],
    [ quota => '0/day',               $BAD ],
    [ quota => '-5/day',              $BAD ],
    [ quota => '5/week',              $BAD ],
    [ quota => '5/DAY',               $OK ],
    [ quota => '5/s',                 $BAD ],
    [ quota => '5/d',                 $BAD ],
    [ quota => 'q' x $MB,             $BAD ],
    # unknown fields are ignored (README), whatever their size or content;
    # field names are compared with case
    [ foo => 'x' x $MB,               $OK ],
    [ ('n' x $MB) => 'v',             $OK ],
    [ Status => 'revoked',            $OK ],
    [ ID => 'bad id',                 $OK ],
    [ "status\0" => 'revoked',        $OK ],
    [ (map { ("f$_" => 'v') } 1 .. 3000), $OK ],     # 3000 fields
    [ (map { ("f$_" => 'v') } 1 .. 3000), rate => 'x', $BAD ],
);

my @cases;
my (%want_warn, %no_warn);
my $i = 0;
for my $row (@rows) {
    my @f = @$row;
    my $want = pop @f;
    $i++;
    my %f = @f;
    my $k = random_key("rf$i");
    my $id = "rec-$i";
    $f{id} = $id unless exists $f{id};
    $f{owner} //= "own$i" unless grep { $_ eq 'owner' } keys %f;
    my $hash = add_key($r, $k, %f);
    # the id the warning names: the record's, when valid
    my $wid = ($f{id} =~ /\A[A-Za-z0-9._:-]{1,64}\z/) ? $f{id} : substr($hash, 0, 12);
    (my $what = join ' ', map { my $v = $f{$_}; $v = length($v) > 24
        ? substr($v, 0, 12) . '...(' . length($v) . ' bytes)' : $v;
        $v =~ s/([^\x21-\x7e])/sprintf '\\x%02x', ord $1/ge;
        (length > 24 ? substr($_, 0, 8) . '...' : $_) . "=$v" }
        grep { $_ ne 'id' || $row->[0] eq 'id' } grep { $_ ne 'owner' || $row->[0] eq 'owner' }
        sort keys %f);
    $what = substr($what, 0, 60) . '...' if length $what > 60;
    # twice (the warning is logged once), but a rate allows one request
    for my $try (1 .. ($want ne $BAD && exists $f{rate} ? 1 : 2)) {
        push @cases, { name => "record $i, $what (request $try)",
                       headers => [ 'X-API-Key' => $k ], want => $want };
    }
    if ($want eq $BAD) { $want_warn{$wid} = "record $i, $what" }
    else { $no_warn{$wid} = "record $i, $what" }
}

my $mark = $n->log_mark;
run_cases($port, \@cases);

# one warning per bad record, naming its id; none for the others
{
    my %count;
    for my $l (split /\n/, $n->error_log_since($mark)) {
        next unless $l =~ /\[warn\]/;
        $count{$1}++ while $l =~ /api_key: record of key id "([^"]*)" (?:is invalid|is not a hash|does not fit)/g;
    }
    my @wrong;
    for my $id (sort keys %want_warn) {
        push @wrong, "$want_warn{$id}: " . ($count{$id} // 0) . " warnings"
            unless ($count{$id} // 0) == 1;
    }
    for my $id (sort keys %no_warn) {
        push @wrong, "$no_warn{$id}: $count{$id} warnings" if $count{$id};
    }
    is_deeply(\@wrong, [], 'every bad record: one warning naming its key id, '
              . 'whatever the number of requests; the others none')
        or diag join "\n", @wrong;
}

is_deeply([ $n->problems ], [], 'no alert, crit, emerg or crash');

done_testing;
