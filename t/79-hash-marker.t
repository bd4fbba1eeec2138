# SPDX-License-Identifier: BSD-2-Clause
# The hash mode marker apikeyctl writes ({prefix}meta: hash, check): when
# its command connection comes up, the module (one worker) reads it and
# logs one clear error when api_key_hash disagrees (another mode, or
# another HMAC secret), nothing when it agrees or there is no marker; the
# secret is never logged; requests are served either way.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $dir = tmpdir();
my $r = ApiKeyTest::Redis->start;
my $LABEL = 'ngx_http_api_key_module hash check v1';
my %secret = (a => 'secret-a-Zq9x', b => 'secret-b-Wm3y');
my %file = map { $_ => spew("$dir/$_", "$secret{$_}\n", 0600) } keys %secret;

sub marker {
    my ($mode, $check) = @_;
    $r->cmd('DEL', 'apikey:meta');
    $r->cmd('HSET', 'apikey:meta', 'hash', $mode, 'check', $check,
            'written_by', 'apikeyctl') if defined $mode;
}

# starts nginx with api_key_hash $hash, waits for the check's outcome in
# the log, returns the error log lines about the marker
sub run {
    my ($hash, $what) = @_;
    my $n = ApiKeyTest::Nginx->start(redis => $r, workers => 2,
                                     vars => { REDIS => $r->port }, http => <<"EOT");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;
    api_key_hash  $hash;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; empty_gif; }
    }
EOT
    my $re = qr/hash mode marker|api_key: the keys in Redis are hashed/;
    ok(wait_until(sub { $n->error_log =~ $re }, timeout => 10),
       "$what: the marker was checked");
    is(http_get($n->port, '/', headers => { 'X-API-Key' => 'nope' })->status, 401,
       "$what: requests are served");
    my @lines = grep { /api_key: the keys in Redis are hashed/ } split /\n/, $n->error_log;
    for my $s (values %secret) {
        ok(index($n->error_log, $s) < 0, "$what: the log never holds a secret");
    }
    $n->stop;
    return @lines;
}

my $sha_check  = sha256_hex($LABEL);
my %hmac_check = map { $_ => hmac_sha256_hex($LABEL, $secret{$_}) } keys %secret;

# --- agreeing, or no marker: no error ----------------------------------------
marker(undef);
is(scalar(run('sha256', 'no marker')), 0, 'no marker: no error');

marker('sha256', $sha_check);
is(scalar(run('sha256', 'sha256 marker, sha256')), 0, 'the same mode: no error');

marker('hmac-sha256', $hmac_check{a});
is(scalar(run("hmac-sha256 secret_file=$file{a}", 'hmac marker, same secret')), 0,
   'hmac, the same secret: no error');

# --- another mode --------------------------------------------------------------
{
    marker('hmac-sha256', $hmac_check{a});
    my @e = run('sha256', 'hmac marker, sha256');
    is(scalar @e, 1, 'another mode: one error line (one worker logs it)');
    like($e[0] // '', qr/\[error\].*hashed with "hmac-sha256" \(the marker "apikey:meta" apikeyctl wrote\), but api_key_hash is sha256/,
         'another mode: names both modes and the marker');

    marker('sha256', $sha_check);
    @e = run("hmac-sha256 secret_file=$file{a}", 'sha256 marker, hmac');
    is(scalar @e, 1, 'the other way round: one error line');
    like($e[0] // '', qr/hashed with "sha256".*api_key_hash is hmac-sha256/,
         'the other way round: names both modes');
}

# --- another secret --------------------------------------------------------------
{
    marker('hmac-sha256', $hmac_check{a});
    my @e = run("hmac-sha256 secret_file=$file{b}", 'hmac marker, another secret');
    is(scalar @e, 1, 'another secret: one error line');
    like($e[0] // '', qr/\[error\].*hashed with hmac-sha256 and another secret than api_key_hash's/,
         'another secret: says so');
}

# --- another prefix: its own marker ----------------------------------------------
{
    marker('hmac-sha256', $hmac_check{a});       # under apikey:, not other:
    my $n = ApiKeyTest::Nginx->start(redis => $r, vars => { REDIS => $r->port }, http => <<"EOT");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s prefix=other:;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; empty_gif; }
    }
EOT
    ok(wait_until(sub { $n->error_log =~ /no hash mode marker "other:meta"/ }, timeout => 10),
       'prefix=other: reads other:meta (none there)');
    unlike($n->error_log, qr/the keys in Redis are hashed/, 'prefix=other: no error');
}

done_testing;
