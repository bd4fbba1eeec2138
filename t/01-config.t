# SPDX-License-Identifier: BSD-2-Clause
# Configuration: the module loads, every documented directive and option is
# accepted by nginx -t, and bad configuration fails nginx -t with a message
# that names the file and the line of the offending directive.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $dir = tmpdir();
my $secret = spew("$dir/secret", "s3cret\n", 0600);
my $pwfile = spew("$dir/redis.pw", "pw\n", 0600);

# --- the module loads, nothing configured --------------------------------
{
    my $c = ApiKeyTest::Nginx->check_config(http => <<'EOT');
    server { listen 127.0.0.1:%%PORT%%; location / { return 204; } }
EOT
    ok($c->{ok}, 'load_module: the module loads (no api_key directive)')
        or diag $c->{output};
}

# --- every directive and option, documented syntax -----------------------
my @good = (
    ['all directives, all options', <<'EOT'],
    api_key_zone  keys:1m ttl=60s negative_ttl=5s stale=10m;
    api_key_redis redis://127.0.0.1:6379/0 timeout=100ms connect_timeout=1s
                  password_file=%%PWFILE%% prefix=apikey: channel=apikey:events
                  keyspace_events=off;
    api_key_hash  hmac-sha256 secret_file=%%SECRET%%;
    api_key       keys;
    api_key_source header:X-API-Key bearer;
    api_key_format any;
    api_key_fail  closed;
    api_key_strip on;
    api_key_realm api;
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key_source query:api_key cookie:api_key header:X-Key bearer;
        api_key_format checksum prefix=ak;
        location / {
            api_key_fail open;
            api_key_strip off;
            api_key_realm "my realm";
            add_header X-S "$api_key_status $api_key_id $api_key_owner $api_key_plan $api_key_scopes";
            proxy_set_header X-Owner $api_key_owner;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
        location /open { api_key off; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
    ['user and password in the url, sha256, keyspace events on', <<'EOT'],
    api_key_zone  keys:1m;
    api_key_redis redis://alice:pw@127.0.0.1:6379/3 keyspace_events=on;
    api_key_hash  sha256;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
    ['unix socket url with a db', <<'EOT'],
    api_key_zone  keys:1m;
    api_key_redis unix:%%DIR%%/redis.sock?db=2;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
    ['unix socket url without a db, redis url without a db', <<'EOT'],
    api_key_zone  keys:1m;
    api_key_zone  other:1m;
    api_key_redis unix:%%DIR%%/redis.sock;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /a { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
        location /b { api_key other; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
    ['format checksum without a prefix', <<'EOT'],
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379;
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        api_key_format checksum;
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
);

for my $g (@good) {
    my ($name, $http) = @$g;
    my $c = ApiKeyTest::Nginx->check_config(
        http => $http, vars => { SECRET => $secret, PWFILE => $pwfile });
    ok($c->{ok}, "nginx -t accepts: $name") or diag $c->{output};
}

# --- bad configuration ---------------------------------------------------
# Each: [name, http text with the offending line marked "# BAD", a regex the
# output must also match (optional)].
my $base_redis = 'api_key_redis redis://127.0.0.1:6379;';
my $server = <<'EOT';
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { api_key keys; proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT

# a server whose key check has one more directive, the bad one
sub server_with {
    my ($directive) = @_;
    return <<"EOT";
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        $directive;   # BAD
        location / { proxy_pass http://127.0.0.1:%%PORT_UP%%; }
    }
EOT
}

my @bad = (
    ['unknown zone name in api_key', <<"EOT", qr/nosuch/],
    api_key_zone keys:1m;
    $base_redis
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key nosuch;   # BAD
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
    ['bad zone size', <<"EOT"],
    api_key_zone keys:abc;   # BAD
    $base_redis
$server
EOT
    ['zone without a size', <<"EOT"],
    api_key_zone keys;   # BAD
    $base_redis
$server
EOT
    ['bad ttl', <<"EOT", qr/ttl/],
    api_key_zone keys:1m ttl=abc;   # BAD
    $base_redis
$server
EOT
    ['bad negative_ttl', <<"EOT", qr/negative_ttl/],
    api_key_zone keys:1m negative_ttl=soon;   # BAD
    $base_redis
$server
EOT
    ['bad stale', <<"EOT", qr/stale/],
    api_key_zone keys:1m stale=-1;   # BAD
    $base_redis
$server
EOT
    ['unknown zone option', <<"EOT", qr/foo/],
    api_key_zone keys:1m foo=bar;   # BAD
    $base_redis
$server
EOT
    ['api_key_zone in a server block', <<"EOT"],
    $base_redis
    server {
        listen 127.0.0.1:%%PORT%%;
        api_key_zone keys:1m;   # BAD
    }
EOT
    ['unknown source type', <<"EOT", qr/form:key/],
    api_key_zone keys:1m;
    $base_redis
@{[ server_with('api_key_source header:X-API-Key form:key') ]}
EOT
    ['header source without a name', <<"EOT"],
    api_key_zone keys:1m;
    $base_redis
@{[ server_with('api_key_source header:') ]}
EOT
    ['bad url scheme', <<"EOT", qr{http://}],
    api_key_zone keys:1m;
    api_key_redis http://127.0.0.1:6379;   # BAD
$server
EOT
    ['bad url port', <<"EOT"],
    api_key_zone keys:1m;
    api_key_redis redis://127.0.0.1:notaport;   # BAD
$server
EOT
    ['bad url db', <<"EOT"],
    api_key_zone keys:1m;
    api_key_redis redis://127.0.0.1:6379/x;   # BAD
$server
EOT
    ['bad timeout', <<"EOT", qr/timeout/],
    api_key_zone keys:1m;
    api_key_redis redis://127.0.0.1:6379 timeout=fast;   # BAD
$server
EOT
    ['unknown redis option', <<"EOT", qr/bogus/],
    api_key_zone keys:1m;
    api_key_redis redis://127.0.0.1:6379 bogus=1;   # BAD
$server
EOT
    ['password_file that does not exist', <<"EOT", qr{/nonexistent/pw}],
    api_key_zone keys:1m;
    api_key_redis redis://127.0.0.1:6379 password_file=/nonexistent/pw;   # BAD
$server
EOT
    ['hmac-sha256 without secret_file', <<"EOT", qr/secret_file/],
    api_key_zone keys:1m;
    $base_redis
    api_key_hash hmac-sha256;   # BAD
$server
EOT
    ['secret_file that does not exist', <<"EOT", qr{/nonexistent/secret}],
    api_key_zone keys:1m;
    $base_redis
    api_key_hash hmac-sha256 secret_file=/nonexistent/secret;   # BAD
$server
EOT
    ['unknown hash', <<"EOT", qr/md5/],
    api_key_zone keys:1m;
    $base_redis
    api_key_hash md5;   # BAD
$server
EOT
    ['bad api_key_fail value', <<"EOT", qr/maybe/],
    api_key_zone keys:1m;
    $base_redis
@{[ server_with('api_key_fail maybe') ]}
EOT
    ['bad api_key_format value', <<"EOT", qr/sha1/],
    api_key_zone keys:1m;
    $base_redis
@{[ server_with('api_key_format sha1') ]}
EOT
    ['bad api_key_strip value', <<"EOT"],
    api_key_zone keys:1m;
    $base_redis
@{[ server_with('api_key_strip sometimes') ]}
EOT
    ['api_key without api_key_redis', <<"EOT", qr/api_key_redis/],
    api_key_zone keys:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;   # BAD
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
    ['api_key without any api_key_zone', <<"EOT"],
    $base_redis
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;   # BAD
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT
);

for my $b (@bad) {
    my ($name, $http, $also) = @$b;
    my $c = config_refused($http, '', "nginx -t fails: $name");
    like($c->{output}, $also, "... and mentions $also") if $also && !$c->{ok};
}

# a prefix longer than a Redis name may hold: refused by nginx -t (a longer
# one used to make every record read fail at run time)
for my $len (256, 257) {
    my $p = 'p' x $len;
    my $c = ApiKeyTest::Nginx->check_config(http => <<"EOT");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379 prefix=$p;
EOT
    if ($len <= 256) {
        ok($c->{ok}, "nginx -t accepts a $len-byte prefix") or diag $c->{output};
    } else {
        my $line = ApiKeyTest::Nginx::line_of($c, qr/api_key_redis/);
        ok(!$c->{ok}, "nginx -t refuses a $len-byte prefix");
        like($c->{output}, qr/"prefix" is longer than 256 bytes in \Q$c->{conf_path}\E:$line/,
             '... naming the limit, the file and the line');
    }
}

# a prefix with a brace would move the Redis Cluster hash tag of the per-key
# names off the record's name: refused by nginx -t
for my $p ('ak{x}:', 'ak}:', '{') {
    my $c = ApiKeyTest::Nginx->check_config(http => <<"EOT");
    api_key_zone  keys:1m;
    api_key_redis redis://127.0.0.1:6379 "prefix=$p";
EOT
    my $line = ApiKeyTest::Nginx::line_of($c, qr/api_key_redis/);
    ok(!$c->{ok}, "nginx -t refuses the prefix $p");
    like($c->{output}, qr/"prefix" must not contain .*hash tag in \Q$c->{conf_path}\E:$line/,
         '... saying why, with the file and the line');
}

done_testing;
