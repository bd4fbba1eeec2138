# SPDX-License-Identifier: BSD-2-Clause
# Record names: api_key_hash hmac-sha256 secret_file= (one trailing newline
# stripped), prefix=; key format: api_key_format checksum [prefix=P] rejects a
# bad key at once (malformed, no Redis lookup), accepts a good one.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $dir = tmpdir();
my $r = ApiKeyTest::Redis->start;

sub get { my ($n, $path, $k) = @_; http_get($n->port, $path, headers => { 'X-API-Key' => $k }) }

# --- hmac-sha256, default prefix, checksum formats ---------------------------
my $secret_file = spew("$dir/secret", "topsecret\n", 0600);
my $SECRET = 'topsecret';

my $n = ApiKeyTest::Nginx->start(redis => $r, vars => { REDIS => $r->port }, http => <<"EOT" . echo_server());
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;
    api_key_hash  hmac-sha256 secret_file=$secret_file;
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Status \$api_key_status always;
        add_header X-Owner  \$api_key_owner always;
        location /any/ { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /cs/  { api_key_format checksum; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /csp/ { api_key_format checksum prefix=ak; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /cso/ { api_key_format checksum prefix=my_org; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

{
    my $k = random_key('hmac');
    my $h = add_key($r, $k, owner => 'hmac-owner', -secret => $SECRET);
    is($h, hmac_sha256_hex($k, $SECRET), 'the record name is HMAC-SHA256(secret, key)');
    my $res = get($n, '/any/', $k);
    is($res->status, 200, 'hmac-sha256: a key stored under its HMAC is accepted')
        or diag $res->as_string;
    is($res->header('X-Owner'), 'hmac-owner', '... its record');

    my $k2 = random_key('plain');
    add_key($r, $k2, owner => 'sha-owner');
    is(get($n, '/any/', $k2)->status, 401,
       'hmac-sha256: a key stored under its plain SHA-256 is unknown');

    my $k3 = random_key('nl');
    add_key($r, $k3, owner => 'nl-owner', -secret => "topsecret\n");
    is(get($n, '/any/', $k3)->status, 401,
       'hmac-sha256: the trailing newline of secret_file is not part of the secret');
}

# --- checksum format ---------------------------------------------------------
{
    my $good = checksum_key('ak');
    add_key($r, $good, owner => 'cs-owner', -secret => $SECRET);
    my $res = get($n, '/cs/', $good);
    is($res->status, 200, 'checksum: a well-formed key is looked up and accepted')
        or diag "$good: " . $res->as_string;
    is(get($n, '/csp/', $good)->status, 200, 'checksum prefix=ak: accepted');

    my $org = checksum_key('my_org');
    add_key($r, $org, owner => 'org-owner', -secret => $SECRET);
    is(get($n, '/cso/', $org)->status, 200, 'checksum prefix=my_org (underscore in the prefix): accepted');

    my $zz = checksum_key('zz');
    add_key($r, $zz, owner => 'zz-owner', -secret => $SECRET);
    is(get($n, '/cs/', $zz)->status, 200, 'checksum without prefix=: any prefix accepted');

    my $unknown_good = checksum_key('ak');
    reset_stats($r);
    $res = get($n, '/csp/', $unknown_good);
    is($res->status, 401, 'checksum: a well-formed unknown key: 401');
    is($res->header('X-Status'), 'unknown', '... unknown (looked up)');
    is(hgetall_calls($r), 1, '... with one HGETALL');

    # one changed character in the random part / in the checksum
    my $flip = sub {
        my ($s, $pos) = @_;
        my $c = substr($s, $pos, 1);
        substr($s, $pos, 1) = $c eq 'A' ? 'B' : 'A';
        return $s;
    };
    my @bad = (
        [ $flip->($good, 5), 'one changed character in the random part' ],
        [ $flip->($good, length($good) - 1), 'one changed character in the checksum' ],
        [ $flip->($good, 1), 'a changed prefix character' ],
        [ substr($good, 0, -1), 'one character short' ],
        [ $good . 'x', 'one character more' ],
        [ do { my $b = 'ak_' . random_base62(29); $b . base62(crc32($b), 6) },
          '29 random characters with a valid checksum' ],
        [ do { my $b = '_' . random_base62(30); $b . base62(crc32($b), 6) },
          'an empty prefix' ],
        [ do { my $b = 'ak_' . random_base62(29) . '-'; $b . base62(crc32($b), 6) },
          'a character outside base62' ],
        [ do {
              my ($b, $cs);
              do { $b = 'ak_' . random_base62(30); $cs = base62(crc32($b), 6) }
                  until $cs =~ /[A-Za-z]/;
              $cs =~ s/([A-Za-z])/lc($1) eq $1 ? uc $1 : lc $1/e;
              $b . $cs
          }, 'a letter of the checksum in the other case' ],
        [ 'hello', 'a short free-form key' ],
    );

    reset_stats($r);
    for my $b (@bad) {
        my ($key, $what) = @$b;
        add_key($r, $key, owner => 'should-not-be-read', -secret => $SECRET);
        $res = get($n, '/cs/', $key);
        is($res->status, 401, "checksum: $what: 401");
        is($res->header('X-Status'), 'malformed', "checksum: $what: malformed")
            or diag "key $key";
        is($res->header('WWW-Authenticate'), 'Bearer realm="api", error="invalid_token"',
           "checksum: $what: WWW-Authenticate");
    }
    is(hgetall_calls($r), 0, 'checksum: malformed keys make no HGETALL '
                             . '(although records exist for them)');

    reset_stats($r);
    $res = get($n, '/csp/', $zz);
    is($res->status, 401, 'checksum prefix=ak: a valid key with prefix zz: 401');
    is($res->header('X-Status'), 'malformed', '... malformed');
    $res = get($n, '/csp/', $org);
    is($res->header('X-Status'), 'malformed', 'checksum prefix=ak: prefix my_org is malformed');
    $res = get($n, '/cso/', $good);
    is($res->header('X-Status'), 'malformed', 'checksum prefix=my_org: prefix ak is malformed');
    my $sub = checksum_key('org');    # "my_org" ends with "org": no suffix match
    $res = get($n, '/cso/', $sub);
    is($res->header('X-Status'), 'malformed', 'checksum prefix=my_org: prefix org is malformed');
    is(hgetall_calls($r), 0, 'checksum prefix: no HGETALL for a wrong prefix');

    # format any: the same bad keys are looked up
    reset_stats($r);
    $res = get($n, '/any/', $bad[0][0]);
    is($res->status, 200, 'format any: a key with a bad checksum is just a key (looked up)');
    is(hgetall_calls($r), 1, 'format any: ... with one HGETALL');
}
$n->stop;

# --- custom prefix, a secret with two trailing newlines --------------------
{
    my $sf = spew("$dir/secret2", "two\n\n", 0600);
    my $n2 = ApiKeyTest::Nginx->start(redis => $r, vars => { REDIS => $r->port }, http => <<"EOT" . echo_server());
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s prefix=tk:;
    api_key_hash  hmac-sha256 secret_file=$sf;
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        add_header X-Owner \$api_key_owner always;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
    my $k = random_key('pfx');
    my $m = $r->monitor;
    my $h = add_key($r, $k, owner => 'tk-owner', -prefix => 'tk:', -secret => "two\n");
    my $res = get($n2, '/', $k);
    is($res->status, 200, 'prefix=tk: and a secret "two\n" (only one newline stripped)')
        or diag $res->as_string;
    ok(scalar(grep { $_->[0] eq 'hgetall' && $_->[1] eq "tk:$h" } $m->commands(0.2)),
       'prefix=tk: HGETALL tk:<hmac hex>');
    $m->close;

    my $k2 = random_key('pfx2');
    add_key($r, $k2, owner => 'x', -prefix => 'tk:', -secret => 'two');
    is(get($n2, '/', $k2)->status, 401, 'secret "two\n\n": not "two"');
    my $k3 = random_key('pfx3');
    add_key($r, $k3, owner => 'x', -secret => "two\n");
    is(get($n2, '/', $k3)->status, 401, 'prefix=tk:: a record under apikey: is unknown');
    $n2->stop;
}

done_testing;
