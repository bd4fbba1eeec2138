# SPDX-License-Identifier: BSD-2-Clause
# Every configuration in conf-examples/ runs as shipped (what make example
# does: nginx's prefix is a directory whose modules/ links to the module's
# build directory, the relative logs/ and api-key.secret live there) and
# serves a request with a valid key: only the ports are replaced by free
# ones, after checking that the shipped ones are make run's (Redis 6390,
# application 8081) and make example's (8000, metrics 9145), and temp paths
# are added so that nothing outside the test directory is written.
use strict;
use warnings;
use Test::More;
use File::Basename qw(dirname);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $module = ApiKeyTest::module_path();
my @examples = grep { !m{/run\.conf$} } sort glob('conf-examples/*.conf');
ok(@examples >= 7, 'at least 7 examples') or diag("@examples");

my $r = ApiKeyTest::Redis->start;

# make run's application, on a free port
my $app = ApiKeyTest::Nginx->start(module => 0, http => <<'EOT');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            return 200 "app uri=$uri owner=$http_x_key_owner key=$http_x_api_key auth=$http_authorization\n";
        }
    }
EOT

# what make example prepares: a prefix with modules/ and logs/, and the HMAC
# secret made by scripts/make-secret.sh (the documented way)
sub prefix_dir {
    my ($text) = @_;
    my $dir = tmpdir();
    mkdir "$dir/logs";
    chmod 0777, "$dir/logs";
    symlink(dirname($module), "$dir/modules") or die "symlink: $!";
    if ($text =~ /secret_file=api-key\.secret/) {
        my $out = `sh scripts/make-secret.sh $dir/api-key.secret 2>&1`;
        is($?, 0, 'make-secret.sh writes the secret') or diag($out);
        is((stat "$dir/api-key.secret")[2] & 0777, 0600, 'the secret is 0600');
        like(slurp("$dir/api-key.secret"), qr/^[0-9a-f]{64}\n\z/, 'the secret is 64 hex digits');
        $out = `sh scripts/make-secret.sh $dir/api-key.secret 2>&1`;
        like($out, qr/exists, kept/, 'make-secret.sh keeps an existing secret');
    }
    return $dir;
}

# the ports of the shipped file replaced by the test's (each must be there)
sub ports {
    my ($name, $text) = @_;
    my $n = 0;
    $n += $text =~ s{^(\s*)listen 8000;}{$1listen 127.0.0.1:%%PORT%%;}mg;
    ok($n >= 1, "$name: listens on 8000 (make example's port)");
    $text =~ s{listen 127\.0\.0\.1:9145;}{listen 127.0.0.1:%%PORT_METRICS%%;}g;
    $n = $text =~ s{redis://127\.0\.0\.1:6390\b}{redis://127.0.0.1:%%REDIS%%}g;
    is($n, 1, "$name: uses Redis on 127.0.0.1:6390 (make run's)");
    $n = $text =~ s{http://127\.0\.0\.1:8081\b}{http://127.0.0.1:%%APP%%}g;
    $n += $text =~ s{server 127\.0\.0\.1:8081;}{server 127.0.0.1:%%APP%%;}g;
    ok($n >= 1, "$name: proxies to 127.0.0.1:8081 (make run's application)");
    unlike($text, qr/\b(?:6379|9000|8080)\b/, "$name: no other port");
    unlike($text, qr{^[^#]*(?:/etc/|/var/)}m, "$name: no absolute system path");
    return $text;
}

my %path = (
    'fail-open' => '/billing/x', gateway => '/x', hmac => '/x',
    'json-errors' => '/api/x', logging => '/x', metrics => '/x',
    minimal => '/api/x',
);

for my $file (@examples) {
    (my $name = $file) =~ s{.*/(.*)\.conf$}{$1};
    my $text = slurp($file);
    like($text, qr/^load_module modules\/ngx_http_api_key_module\.so;$/m,
         "$name: loads modules/ngx_http_api_key_module.so");
    my $dir = prefix_dir($text);
    $text = ports($name, $text);

    # nginx -t on the file itself (only the ports replaced)
    {
        my $t = $text;
        my %v = (PORT => ApiKeyTest::free_port(), PORT_METRICS => ApiKeyTest::free_port(),
                 REDIS => $r->port, APP => $app->port);
        $t =~ s{%%(\w+)%%}{$v{$1}}g;
        $t =~ s{^(http \{\n)}{$1    client_body_temp_path $dir/tmp-t;\n    proxy_temp_path $dir/tmp-t;\n}m;
        spew("$dir/nginx.conf", $t);
        my $out = run_nginx('-p', "$dir/", '-c', "$dir/nginx.conf",
                            '-g', "pid $dir/nginx-t.pid; error_log $dir/logs/t.log;", '-t');
        is($?, 0, "$name: nginx -t passes as shipped") or diag($out);
    }

    # running: the main context of the harness (it has its own events {},
    # worker_processes, error_log, pid); the example's load_module line kept
    my ($load) = $text =~ /^(load_module [^\n]+)\n/m;
    $text =~ s/^load_module [^\n]+\n//m;
    $text =~ s/^worker_processes [^\n]+\n//m;
    $text =~ s/^events \{[^}]*\}\n//m or die "$name: no events block";
    $text =~ s{^(http \{\n)}{$1    client_body_temp_path %%DIR%%/tmp/body;\n    proxy_temp_path %%DIR%%/tmp/proxy;\n}m
        or die "$name: no http block";
    my $n = ApiKeyTest::Nginx->start(dir => $dir, module => 0, main => $load,
        conf => $text, redis => $r,
        vars => { REDIS => $r->port, APP => $app->port });

    my $secret = -e "$dir/api-key.secret"
        ? do { (my $s = slurp("$dir/api-key.secret")) =~ s/\n\z//; $s } : undef;
    my $k = checksum_key('ak');
    add_key($r, $k, owner => "owner-$name", -secret => $secret);
    my $p = $path{$name} // '/x';
    my $res = http_get($n->port, $p, headers => { 'X-API-Key' => $k });
    is($res->status, 200, "$name: a valid key is served") or diag($res->as_string);
    like($res->body, qr/^app uri=\Q$p\E /, "$name: the application answered");
    unlike($res->body, qr/\Q$k\E/, "$name: the key is not passed on");
    like($res->body, qr/owner=owner-\Q$name\E/, "$name: identity passed on")
        if $name eq 'gateway';
    $res = http_get($n->port, $p);
    is($res->status, 401, "$name: no key is 401");
    if ($name eq 'metrics') {
        $res = http_get($n->port('metrics'), '/metrics');
        is($res->status, 200, 'metrics: the scraper port answers');
        like($res->body, qr/^# (?:HELP|TYPE) /m, 'metrics: Prometheus text');
    }
    if ($name eq 'logging') {
        ok(wait_until(sub { -s "$dir/logs/api_access.log" }, timeout => 5),
           'logging: logs/api_access.log written under the prefix');
    }
    if ($name eq 'json-errors') {
        $res = http_get($n->port, $p);
        is($res->header('content-type'), 'application/problem+json',
           'json example: problem+json');
        is($res->body, qq({"type":"about:blank","title":"Unauthorized","status":401,"detail":"missing"}\n),
           'json example: the problem body');
        $res = http_get($n->port, '/console/x');
        like($res->header('content-type'), qr{^text/html}, 'json example: /console/ keeps HTML');
        like($res->header('www-authenticate'), qr/^Bearer realm="api"/,
             'json example: WWW-Authenticate kept');
        my $ip = checksum_key('ak');
        add_key($r, $ip, ips => '10.0.0.0/8');
        $res = http_get($n->port, $p, headers => { 'X-API-Key' => $ip });
        is($res->status, 403, 'json example: ip_denied keeps 403');
        like($res->body, qr/"detail":"ip_denied"/, 'json example: ip_denied body');
    }
    $n->stop;
}

done_testing();
