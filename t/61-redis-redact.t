# SPDX-License-Identifier: BSD-2-Clause
# A Redis password given in the URL is never written anywhere: not in the
# module's error log when the connection fails (refused, wrong password),
# not in nginx -t's messages about a bad URL, not in apikeyctl's stderr.
# The log shows the URL with the password as "***".
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Cli qw(run_cli);

require_module();

my $PW = 'Pw-' . random_base62(20);          # the secret that must not leak
my $closed = free_port();                    # nothing listens there

sub no_pw {
    my ($text, $what) = @_;
    my @hits = grep { index($_, $PW) >= 0 } split /\n/, $text;
    is_deeply(\@hits, [], "$what: the password is not there")
        or diag join("\n", @hits);
}

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m;
    api_key_redis %%URL%% timeout=200ms connect_timeout=200ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

# --- the module: a refused connection ------------------------------------
{
    my $url = "redis://alice:$PW\@127.0.0.1:$closed";
    my $n = ApiKeyTest::Nginx->start(http => $http, vars => { URL => $url });
    my $res = http_get($n->port, '/', headers => { 'X-API-Key' => 'k-' . random_base62(10) });
    is($res->status, 503, 'Redis unreachable: 503');
    my $log;
    wait_until(sub { $log = $n->error_log; $log =~ /connection to .* failed/ },
               timeout => 5);
    like($log, qr{connection to "redis://alice:\*\*\*\@127\.0\.0\.1:$closed" failed},
         'refused: the log names the URL with the password redacted');
    no_pw($log, 'refused: error log (debug level)');
    is_deeply([ $n->problems ], [], 'refused: no alert, crit or emerg');
    $n->stop;
}

# --- the module: the server refuses the password --------------------------
{
    my $r = ApiKeyTest::Redis->start(users => ['alice on >right-pw ~* &* +@all'],
                                     requirepass => 'other-pw');
    my $url = "redis://alice:$PW\@127.0.0.1:" . $r->port . "/2";
    my $n = ApiKeyTest::Nginx->start(http => $http, vars => { URL => $url });
    my $log;
    ok(wait_until(sub { $log = $n->error_log; $log =~ /AUTH failed/ }, timeout => 5),
       'wrong password: AUTH failure logged');
    like($log, qr{"redis://alice:\*\*\*\@127\.0\.0\.1:\d+/2": AUTH failed},
         'wrong password: the URL is shown redacted');
    no_pw($log, 'wrong password: error log');
    is_deeply([ $n->problems ], [], 'wrong password: no alert, crit or emerg');
    $n->stop;
    $r->stop;
}

# --- the module: a server that does not know AUTH (renamed) -----------------
# Redis echoes an unknown command's arguments, here the user and the password:
# the log line keeps Redis's error without them
{
    my $r = ApiKeyTest::Redis->start(config => ['rename-command AUTH ""']);
    my $url = "redis://alice:$PW\@127.0.0.1:" . $r->port;
    my $n = ApiKeyTest::Nginx->start(http => $http, vars => { URL => $url });
    my $log;
    ok(wait_until(sub { $log = $n->error_log; $log =~ /AUTH failed/ }, timeout => 5),
       'AUTH unknown: the failure is logged');
    like($log, qr{"redis://alice:\*\*\*\@127\.0\.0\.1:\d+": AUTH failed: ERR unknown command},
         "... with Redis's error");
    no_pw($log, 'AUTH unknown: error log');
    is_deeply([ $n->problems ], [], 'AUTH unknown: no alert, crit or emerg');
    $n->stop;
    $r->stop;
}

# --- nginx -t: URLs that do not parse --------------------------------------
for my $bad ("redis://alice:$PW\@127.0.0.1:6379/notadb",
             "redis:/alice:$PW\@127.0.0.1:6379",
             "alice:$PW\@127.0.0.1:6379")
{
    my $c = ApiKeyTest::Nginx->check_config(http => $http, vars => { URL => $bad });
    ok(!$c->{ok}, "nginx -t rejects a bad url") or diag $c->{output};
    like($c->{output}, qr/invalid redis (?:url|database) .*:\*\*\*\@127\.0\.0\.1:6379/,
         '... and names it with the password redacted');
    no_pw($c->{output}, 'nginx -t output');
    no_pw(slurp("$c->{dir}/error.log"), 'nginx -t error log');
}

# URLs written wrong with the password where a host, port, database or user
# would be read: the message says what is wrong and names the file and line,
# never the text (the userinfo ends at the last '@', as in apikeyctl)
{
    my $PWS = substr($PW, 0, 10) . '/' . substr($PW, 10);     # holds a '/'
    for my $case (
        # [ url, what, the message (undef: nginx -t accepts it) ]
        ["redis://alice:$PWS\@127.0.0.1:6379", 'a password with a /', undef],
        ["redis://alice:$PWS\@127.0.0.1:6379/x", 'a password with a /, a bad database',
         qr{invalid redis url "redis://alice:\*\*\*\@127\.0\.0\.1:6379/\*\*\*": the database}],
        ["redis://alice:$PW", 'no host (the password read as the port)',
         qr{invalid redis url "redis://alice:\*\*\*": }],
        ["redis://alice:$PWS", 'no host, a password with a /',
         qr{invalid redis url "redis://alice:\*\*\*": }],
        ["redis://$PW\@127.0.0.1:6379", 'a password without its : (read as a user)',
         qr{invalid redis url "redis://\*\*\*\@127\.0\.0\.1:6379": a user without a password}],
        ["redis://alice:x\@127.0.0.1:6379/$PW", 'a bad database',
         qr{invalid redis url "redis://alice:\*\*\*\@127\.0\.0\.1:6379/\*\*\*": the database}],
        ["redis://alice:$PW\@127.0.0.1:99999", 'a bad port',
         qr{invalid redis url "redis://alice:\*\*\*\@127\.0\.0\.1:99999": }],
        ["redis://alice:$PW\@", 'an empty host',
         qr{invalid redis url "redis://alice:\*\*\*\@": }])
    {
        my ($url, $what, $msg) = @$case;
        my $c = ApiKeyTest::Nginx->check_config(http => $http, vars => { URL => $url });
        if ($msg) {
            ok(!$c->{ok}, "nginx -t, $what: rejected") or diag $c->{output};
            like($c->{output}, $msg, "... says what is wrong") or diag $c->{output};
            my $line = ApiKeyTest::Nginx::line_of($c, qr/api_key_redis/);
            like($c->{output}, qr/in \Q$c->{conf_path}\E:$line\b/,
                 '... and names the file and line');
        } else {
            ok($c->{ok}, "nginx -t, $what: accepted") or diag $c->{output};
        }
        no_pw($c->{output}, "nginx -t, $what: output");
        no_pw(slurp("$c->{dir}/error.log"), "nginx -t, $what: error log");
    }
}

# --- the module: a password with a '/' authenticates ---------------------
{
    my $pws = 'se/cr' . random_base62(12);
    my $r = ApiKeyTest::Redis->start(users => ["alice on >$pws ~* &* +\@all"]);
    my $url = "redis://alice:$pws\@127.0.0.1:" . $r->port;
    my $n = ApiKeyTest::Nginx->start(http => $http, vars => { URL => $url });
    my $res;
    wait_until(sub {
        $res = http_get($n->port, '/', headers => { 'X-API-Key' => 'k-' . random_base62(10) });
        $res->status == 401;
    }, timeout => 5);
    is($res->status, 401, "a password with a '/': Redis answers the read (401 unknown)");
    unlike($n->error_log, qr/\Q$pws\E/, '... and the password is not logged');
    is_deeply([ $n->problems ], [], "a password with a '/': no alert, crit or emerg");
    $n->stop;
    $r->stop;
}

# --- apikeyctl ---------------------------------------------------------------
{
    my $x = run_cli(args => ['--redis', "redis://alice:$PW\@127.0.0.1:$closed", 'show', 'foo']);
    is($x->{exit}, 4, 'apikeyctl, refused connection: exit 4');
    like($x->{err}, qr/cannot connect/, '... says why');
    no_pw($x->{err} . $x->{out}, 'apikeyctl, refused connection');

    my $r = ApiKeyTest::Redis->start(users => ['alice on >right-pw ~* &* +@all']);
    $x = run_cli(args => ['--redis', "redis://alice:$PW\@127.0.0.1:" . $r->port, 'show', 'foo']);
    is($x->{exit}, 4, 'apikeyctl, wrong password: exit 4');
    like($x->{err}, qr/refused the password/, '... says why');
    no_pw($x->{err} . $x->{out}, 'apikeyctl, wrong password');

    $x = run_cli(args => ['--redis', "redis://alice:$PW\@127.0.0.1:" . $r->port . '/x', 'show', 'foo']);
    is($x->{exit}, 2, 'apikeyctl, bad url: exit 2');
    no_pw($x->{err} . $x->{out}, 'apikeyctl, bad url');

    $x = run_cli(args => ['show', 'foo'],
                 env => { APIKEY_REDIS_URL => "redis://alice:$PW\@127.0.0.1:$closed" });
    is($x->{exit}, 4, 'apikeyctl, URL from the environment: exit 4');
    no_pw($x->{err} . $x->{out}, 'apikeyctl, URL from the environment');
    # URLs written wrong, with the password where a host, port, database or
    # user would be read: usage errors that do not echo it
    for my $bad (["redis://alice:$PW/x\@127.0.0.1:$closed", 4,
                  'a password with a /'],
                 ["redis://alice:$PW", 2, 'no host (the password read as the port)'],
                 ["redis://$PW\@127.0.0.1:$closed", 2,
                  'a password without its : (read as a user)'],
                 ["redis://alice:x\@127.0.0.1:$closed/$PW", 2,
                  'a bad database'])
    {
        my ($url, $exit, $what) = @$bad;
        $x = run_cli(args => ['--redis', $url, 'show', 'foo']);
        is($x->{exit}, $exit, "apikeyctl, $what: exit $exit") or diag $x->{err};
        no_pw($x->{err} . $x->{out}, "apikeyctl, $what");
    }
    $r->stop;
}

done_testing;
