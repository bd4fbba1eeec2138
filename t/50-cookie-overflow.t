# SPDX-License-Identifier: BSD-2-Clause
# Cookie stripping rebuilds the Cookie header: it must be sized from what
# is written (kept cookies re-joined with "; "), not from the header that
# came in ("a=1;b=1" has no spaces).  Issue 10, item 1: a heap overflow, the
# worker aborted on every such request, with a valid key or a malformed one.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

# the upstream gets the rebuilt header, longer than the one sent
(my $echo = echo_server())
    =~ s/api_key off;/api_key off;\n        large_client_header_buffers 4 32k;/;

my $http = <<'EOT' . $echo;
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        large_client_header_buffers 4 32k;
        api_key keys;
        api_key_source cookie:k;
        add_header X-Status $api_key_status always;
        proxy_set_header X-Owner $api_key_owner;

        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;
my @workers = $n->worker_pids;

my $k = random_key('ck');
add_key($r, $k, owner => 'cookie-owner');

sub get { my (@h) = @_; http_get($port, '/c', headers => [@h]) }

sub short { my ($res) = @_; substr($res->as_string, 0, 300) }

sub upstream_cookie {
    my ($res) = @_;
    my ($c) = $res->body =~ /cookie=\[([^\]]*)\]/;
    return $c;
}

my @many = map { "c$_=1" } 0 .. 999;
my $many_kept = join '; ', @many;

# --- the issue's request: 1000 cookies without spaces, the key last --------
{
    my $res = get(Cookie => join(';', @many) . ";k=$k");
    is($res->status, 200, '1000 cookies joined by ";", key last: 200')
        or diag short($res);
    ok((upstream_cookie($res) // '') eq $many_kept,
       '... the other 1000 cookies reach the upstream, re-joined by "; "');
    unlike($res->body, qr/\Q$k\E/, '... the key does not');

    # a malformed key is stripped too: no valid key is needed to get there
    $res = get(Cookie => join(';', @many) . ';k=');
    is($res->status, 401, 'the same with an empty (malformed) key: 401');
    is($res->header('X-Status'), 'malformed', '... malformed');
    $res = get(Cookie => join(';', @many) . ";k=bad key");
    is($res->status, 401, 'the same with a key with a space: 401');
}

# --- the key first, in the middle, last; many empty pairs -------------------
{
    my @cases = (
        [ 'key first, no spaces',    "k=$k;" . join(';', @many[0 .. 99]),
          join('; ', @many[0 .. 99]) ],
        [ 'key in the middle',       join(';', @many[0 .. 49]) . ";k=$k;"
                                     . join(';', @many[50 .. 99]),
          join('; ', @many[0 .. 99]) ],
        [ 'many empty pairs',        (';' x 500) . "a=1" . (';' x 500) . "k=$k"
                                     . (';' x 500) . 'b=2;;',
          'a=1; b=2' ],
        [ 'only separators and the key', ";;;;k=$k;;;;", undef ],
        [ 'pairs without "="',       join(';', map { "flag$_" } 1 .. 300) . ";k=$k",
          join('; ', map { "flag$_" } 1 .. 300) ],
        [ 'spaces and tabs mixed',   "a=1 ;b=2;  k=$k ;c=3", 'a=1 ; b=2; c=3' ],
        [ 'key sent twice',          "k=$k;" . join(';', @many[0 .. 199]) . ";k=$k",
          join('; ', @many[0 .. 199]) ],
    );
    for my $c (@cases) {
        my ($what, $cookie, $want) = @$c;
        my $res = get(Cookie => $cookie);
        is($res->status, 200, "$what: 200") or diag short($res);
        ok((upstream_cookie($res) // '<none>') eq ($want // ''),
           "$what: the other cookies kept, the key removed")
            or diag substr(upstream_cookie($res) // '<none>', 0, 200);
        unlike($res->body, qr/\Q$k\E/, "$what: the key does not reach the upstream");
    }
}

# --- several Cookie headers, each without spaces --------------------------
{
    my @h = (Cookie => join(';', @many[0 .. 299]),
             Cookie => join(';', @many[300 .. 599]) . ";k=$k;"
                       . join(';', @many[600 .. 699]),
             Cookie => "k=$k",
             Cookie => join(';', @many[700 .. 999]));
    my $res = get(@h);
    is($res->status, 200, 'four Cookie headers, the key in two: 200')
        or diag short($res);
    # a header without the key is passed as it came, one with it rebuilt
    my $want = join(';', @many[0 .. 299]) . '; ' . join('; ', @many[300 .. 699])
               . '; ' . join(';', @many[700 .. 999]);
    ok((upstream_cookie($res) // '') eq $want,
       '... every other cookie reaches the upstream, the emptied header is gone')
        or diag length(upstream_cookie($res) // ''), ' ', length $many_kept, ' ',
                substr(upstream_cookie($res) // '<none>', -200);
    unlike($res->body, qr/\Q$k\E/, '... the key does not');
}

# --- many requests in a row on the same worker ------------------------------
{
    my $ok = 0;
    for my $i (1 .. 50) {
        my $res = get(Cookie => join(';', @many[0 .. 20 * $i - 1]) . ";k=$k");
        $ok++ if $res->status == 200
                 && upstream_cookie($res) eq join('; ', @many[0 .. 20 * $i - 1]);
    }
    is($ok, 50, '50 requests of growing size: all stripped correctly');
}

is_deeply([ $n->worker_pids ], \@workers, 'the worker is still the same process');
is_deeply([ $n->problems ], [], 'no crash (exited on signal), alert, crit or emerg');
is_deeply([ key_leaks($n->error_log, $k) ], [], 'the key is in no log line');
unlike($n->access_log, qr/\Q$k\E/, 'the key is not in the access log');
$n->stop;
ok(!$n->stop_forced, 'nginx stops gracefully');

done_testing;
