# SPDX-License-Identifier: BSD-2-Clause
# api_key_strip of a key's header between other headers: the request's
# header list is split around it (the first split of a request takes a part
# kept in its context, a later one a part from the pool).  Every other
# header reaches the upstream, in order, once; the key's header does not:
# with the key in the middle, first or last of the headers, and with two
# splits in one request (a key in the middle, then, after an internal
# redirect into a location that reads another header, another key in the
# middle), plain and with headers added after the split (proxy_set_header).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;

        location /one/ {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        # a key in X-API-Key (stripped here), then the named location reads
        # X-Custom first: checked again, its key stripped too
        location /two/ {
            try_files /nonexistent-file @two;
        }
        location @two {
            api_key_source header:X-Custom header:X-API-Key;
            proxy_set_header X-Added "added";
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_UP%%;
        api_key off;
        location / {
            default_type text/plain;
            return 200 "a=[$http_x_a] b=[$http_x_b] c=[$http_x_c] d=[$http_x_d] key=[$http_x_api_key] custom=[$http_x_custom] added=[$http_x_added] owner=[$http_x_owner]\n";
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, vars => { REDIS => $r->port },
                                 redis => $r);
my $port = $n->port;

my $k1 = random_key('sp1');
my $k2 = random_key('sp2');
add_key($r, $k1, owner => 'one');
add_key($r, $k2, owner => 'two');

sub get { my ($path, @h) = @_; http_get($port, $path, headers => [@h]) }

sub others_kept {
    my ($res, $what) = @_;
    is($res->status, 200, "$what: 200") or diag $res->as_string;
    like($res->body, qr/a=\[1\] b=\[2\] c=\[3\] d=\[4\]/,
         "$what: the other headers reach the upstream")
        or diag $res->body;
    like($res->body, qr/key=\[\] custom=\[\]/, "$what: no key upstream")
        or diag $res->body;
}

# --- one split: the key in the middle, first, last -------------------------------
others_kept(get('/one/x', 'X-A' => 1, 'X-B' => 2, 'X-API-Key' => $k1,
                'X-C' => 3, 'X-D' => 4), 'in the middle');
others_kept(get('/one/x', 'X-API-Key' => $k1, 'X-A' => 1, 'X-B' => 2,
                'X-C' => 3, 'X-D' => 4), 'first');
others_kept(get('/one/x', 'X-A' => 1, 'X-B' => 2, 'X-C' => 3, 'X-D' => 4,
                'X-API-Key' => $k1), 'last');

# again: each request splits with its own context's part
{
    for my $i (1 .. 3) {
        others_kept(get('/one/x', 'X-A' => 1, 'X-API-Key' => $k1, 'X-B' => 2,
                        'X-C' => 3, 'X-D' => 4), "in the middle, request $i");
    }
}

# --- two splits in one request ---------------------------------------------------
{
    my $res = get('/two/x', 'X-A' => 1, 'X-API-Key' => $k1, 'X-B' => 2,
                  'X-Custom' => $k2, 'X-C' => 3, 'X-D' => 4);
    others_kept($res, 'two splits');
    like($res->body, qr/added=\[added\]/, 'two splits: a header added after them');
    unlike($res->body, qr/\Q$k1\E|\Q$k2\E/, 'two splits: neither key upstream');
}

done_testing;
