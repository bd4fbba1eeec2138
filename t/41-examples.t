# Every configuration in conf-examples/ passes `nginx -t` with the module
# (paths and secrets replaced by test ones), and the JSON error example
# really answers JSON with the original status codes.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use ApiKeyTest;

require_module();

my $module = ApiKeyTest::module_path();
my $nginx = $ENV{AK_NGINX} // '/usr/sbin/nginx';
my @examples = sort glob('conf-examples/*.conf');
ok(@examples >= 7, 'at least 7 examples') or diag("@examples");

for my $file (@examples) {
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    mkdir "$dir/tmp";     # scripts/run.sh makes it for run.conf
    my $text = ApiKeyTest::slurp($file);

    $text =~ s{load_module \S+;}{load_module $module;};
    $text =~ s{/var/log/nginx/}{$dir/logs/}g;
    $text =~ s{/etc/nginx/([\w.-]+)}{$dir/$1}g;
    ApiKeyTest::spew("$dir/$_", "test-secret\n") for qw(api-key.secret redis.password);

    # run.conf, as scripts/run.sh fills it in
    my %ph = (MODULE => $module, DIR => $dir, HTTP_PORT => 18080,
              APP_PORT => 18081, REDIS_PORT => 16390);
    $text =~ s{\@(\w+)\@}{$ph{$1} // die "no value for \@$1\@"}ge;

    # nginx -t needs a pid path and an error log it may open
    $text = "pid $dir/nginx.pid;\n$text" unless $text =~ /^pid\s/m;
    $text = "error_log $dir/logs/error.log;\n$text" unless $text =~ /^error_log\s/m;

    ApiKeyTest::spew("$dir/nginx.conf", $text);
    my $out = run_nginx('-p', "$dir/", '-c', "$dir/nginx.conf", '-t');
    is($?, 0, "$file: nginx -t passes") or diag($out);
}

# json-errors.conf, running: the body is JSON and the status the module's
{
    my $r = ApiKeyTest::Redis->start;
    my $text = ApiKeyTest::slurp('conf-examples/json-errors.conf');
    my ($http) = $text =~ /^http \{\n(.*)^\}/ms or die 'no http block';
    $http =~ s/listen 8080;/listen 127.0.0.1:%%PORT%%;/;
    $http =~ s/redis:\/\/127\.0\.0\.1:6379/redis:\/\/127.0.0.1:%%REDIS%%/;
    $http =~ s/proxy_pass http:\/\/127\.0\.0\.1:9000;/empty_gif;/;

    my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r,
                                     vars => { REDIS => $r->port });
    my $res = http_get($n->port, '/api/x');
    is($res->status, 401, 'json example: missing key is 401');
    like($res->header('content-type'), qr{^application/json}, 'json example: JSON');
    like($res->body, qr/^\{"error":"missing","message":"an API key is required"\}/,
         'json example: body names the status');
    like($res->header('www-authenticate'), qr/^Bearer realm="api"/,
         'json example: WWW-Authenticate kept');

    my $k = random_key('j');
    add_key($r, $k, ips => '10.0.0.0/8');
    $res = http_get($n->port, '/api/x', headers => { 'X-API-Key' => $k });
    is($res->status, 403, 'json example: ip_denied keeps 403');
    like($res->body, qr/"error":"ip_denied"/, 'json example: ip_denied body');

    $res = http_get($n->port, '/api/x', headers => { 'X-API-Key' => 'nope' });
    is($res->status, 401, 'json example: unknown is 401');
    like($res->body, qr/"error":"unknown"/, 'json example: unknown body');
}

done_testing();
