package ApiKeyTest;

# Integration-test harness of ngx_http_api_key_module: a real redis-server and
# a real nginx per test, in a temporary directory, on 127.0.0.1 only.
# Core Perl 5.36 modules only.
#
#   use ApiKeyTest;
#   my $r = ApiKeyTest::Redis->start;                 # own redis-server
#   my $n = ApiKeyTest::Nginx->start(http => $text, vars => { REDIS => $r->port });
#   my $res = http_get($n->port, '/path', headers => { 'X-API-Key' => $k });
#   $res->status, $res->header('www-authenticate'), $res->body, $res->elapsed
#
# Everything started is stopped at the end, also when the test dies (END
# block, INT/TERM handlers, a watchdog alarm): paused redis-servers are
# resumed first, then every nginx is stopped (gracefully, QUIT), then every
# redis-server.  AK_KEEP=1 keeps the temporary directories.
#
# Final checks: when the test calls done_testing (or at its end), every
# nginx it started is stopped and gets one more test: its error log has no
# [alert], [crit], [emerg] or "exited on signal" line, neither log (error or
# access) holds a raw key made by the key helpers (random_key, checksum_key,
# add_key, track_key), and no sanitizer report was written.  A test that
# expects such a line says so: $n->expect_problem(qr/.../),
# $n->expect_key_leak($key or qr/.../), or the start options
# expect_problems => [qr/.../, ...] and expect_key_leaks => [...].  With a
# numeric plan, only a failing check is added (it breaks the plan, which
# fails the file).  AK_FINAL_CHECKS=0 turns the checks off.
#
# Sanitizers: with AK_SANITIZE (e.g. "address,undefined", set by
# make test-asan) every nginx runs with the sanitizer runtimes preloaded
# (LD_PRELOAD, only into nginx: not perl, redis-server or a shell), reports
# go to <nginx dir>/san/ (writable by the worker user), and the final check
# fails on any.  Other programs run by the test (apikeyctl) report into a
# directory of the test file's own (ASAN_OPTIONS/UBSAN_OPTIONS of the
# process), checked too.  AK_SANITIZE_PRELOAD overrides the preloaded
# libraries; AK_CC names the compiler asked for their paths (default cc).
#
# Config placeholders (Nginx->start / check_config): %%DIR%% (the nginx
# prefix directory, no trailing slash), %%MODULE%% (the module path),
# %%PORT%% (the port named "main"), %%PORT_NAME%% (a port named "name",
# allocated on first use), %%VAR%% from vars => { VAR => ... }.  A
# placeholder left unresolved is an error.
#
# Summary of the API (details at each package):
#   Redis:   start(%o) port socket_path dir pid cmd try_cmd client(%o) monitor
#            pause resume pause_guard stop start_again restart other_clients
#            wait_clients log
#   Nginx:   start(%o) check_config(%o) line_of port(name) dir conf_path
#            conf_text reload(%o) reload_error stop stop_forced stop_seconds
#            worker_pids all_worker_pids master_pid error_log access_log
#            log_mark error_log_since problems expect_problem
#            expect_key_leak sanitizer_reports
#   HTTP:    http_get http_request (-> ApiKeyTest::Response: status header
#            headers body elapsed raw as_string error_message),
#            ApiKeyTest::HTTPConn (keep-alive), http_batch (->pending ->wait
#            ->abort), http_concurrent, http_open_raw
#   Keys:    sha256_hex hmac_sha256_hex(data, secret) crc32 base62
#            checksum_key random_key random_base62 key_hash add_key
#            track_key tracked_keys
#   Redis stats: commandstats hgetall_calls reset_stats
#   Logs:    parse_error_log key_leaks CORE_DEBUG_PREFIXES CORE_REQUEST_DEBUG
#   nginx:   run_nginx (nginx -t, -s reload: with the sanitizer runtimes)
#   Misc:    module_path require_module free_port wait_until slurp spew
#            tmpdir echo_server sanitizing

use strict;
use warnings;
use v5.36;

use Exporter 'import';
use Carp qw(croak confess);
use Digest::SHA ();
use Compress::Zlib ();
use File::Temp ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use IO::Select;
use POSIX qw(:sys_wait_h);
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use Errno qw(EAGAIN EWOULDBLOCK EINTR EINPROGRESS);

our @EXPORT = qw(
    module_path require_module free_port wait_until slurp spew tmpdir
    sha256_hex hmac_sha256_hex crc32 base62 checksum_key random_key
    random_base62 add_key key_hash commandstats hgetall_calls reset_stats
    http_get http_request http_batch http_concurrent http_open_raw
    parse_error_log key_leaks echo_server CORE_DEBUG_PREFIXES
    track_key tracked_keys run_nginx CORE_REQUEST_DEBUG
);

our $NGINX = $ENV{AK_NGINX} // '/usr/sbin/nginx';
our $REDIS_SERVER = $ENV{AK_REDIS_SERVER} // '/usr/bin/redis-server';

my $OWNER_PID = $$;
my (@NGINX, @REDIS);    # everything started by this process
my @CHECKED;            # nginx -t runs (check_config), for sanitizer reports

# ---------------------------------------------------------------------------
# process-wide safety nets

$SIG{PIPE} = 'IGNORE';
$SIG{INT}  = sub { _cleanup_all(); exit 130 };
$SIG{TERM} = sub { _cleanup_all(); exit 143 };

# A watchdog: no test file may hang forever.
my $WATCHDOG = $ENV{AK_TEST_TIMEOUT} // 120;
$SIG{ALRM} = sub {
    print STDERR "# ApiKeyTest: watchdog: test still running after "
        . "${WATCHDOG}s, aborting\n";
    _cleanup_all();
    POSIX::_exit(254);
};
alarm $WATCHDOG if $WATCHDOG;

END {
    local $?;    # keep the test's exit status
    # the final checks, if done_testing did not run them: now, before the
    # temporary directories go (File::Temp's END runs after this one)
    _final_checks_at_end();
    _cleanup_all();
}

# ---------------------------------------------------------------------------
# sanitizers

our $SANITIZE = $ENV{AK_SANITIZE} // '';

# the first line of a sanitizer report written to stderr
our $SAN_LINE = qr/: runtime error: |==\d+==ERROR: \w+Sanitizer|^SUMMARY: \w+Sanitizer/;
my $SAN_PRELOAD;

sub sanitizing { $SANITIZE ne '' }

# the libraries LD_PRELOADed into nginx ('' when not sanitizing)
sub _san_preload {
    return '' unless sanitizing();
    return $SAN_PRELOAD if defined $SAN_PRELOAD;
    if (defined $ENV{AK_SANITIZE_PRELOAD}) {
        return $SAN_PRELOAD = $ENV{AK_SANITIZE_PRELOAD};
    }
    my $cc = $ENV{AK_CC} || 'cc';
    my @libs;
    push @libs, 'libasan.so' if $SANITIZE =~ /\baddress\b/;
    push @libs, 'libubsan.so' if $SANITIZE =~ /\bundefined\b/;
    my @paths;
    for my $l (@libs) {
        chomp(my $p = `$cc -print-file-name=$l`);
        die "ApiKeyTest: $cc does not know $l (AK_SANITIZE=$SANITIZE)\n"
            unless $p =~ m{^/} && -e $p;
        push @paths, $p;
    }
    return $SAN_PRELOAD = join ' ', @paths;
}

# the sanitizer options for a process reporting into $dir
sub _san_env {
    my ($dir, %o) = @_;
    # programs (apikeyctl): leaks reported, UBSan fatal (next to ASan its
    # reports go to stderr, not to log_path); nginx: no leak detection (it
    # does not free at exit), UBSan reports in the error log (its stderr)
    my $prog = $o{program} ? 1 : 0;
    my $halt = $prog ? 1 : 0;
    return (
        ASAN_OPTIONS => "log_path=$dir/asan:detect_leaks=$prog"
            . ":abort_on_error=0:print_summary=1",
        UBSAN_OPTIONS => "log_path=$dir/ubsan:print_stacktrace=1"
            . ":halt_on_error=$halt:print_summary=1",
    );
}

# a directory for reports that any user can write (nginx workers run as
# nobody)
sub _san_dir {
    my ($dir) = @_;
    mkdir $dir;
    chmod 01777, $dir;
    return $dir;
}

# the reports in $dir: list of [ file, text ]
sub _san_reports {
    my ($dir) = @_;
    opendir my $dh, $dir or return ();
    my @r;
    for my $f (sort grep { !/^\./ } readdir $dh) {
        my $t = slurp("$dir/$f");
        push @r, [ "$dir/$f", $t ] if length $t;
    }
    return @r;
}

# Programs the test runs itself (apikeyctl) report into a directory of this
# test file; perl and redis-server are not instrumented and ignore these.
my $PROC_SAN_DIR;
if (sanitizing()) {
    $PROC_SAN_DIR = _san_dir(tmpdir() . '/san');
    my %e = _san_env($PROC_SAN_DIR, program => 1);
    @ENV{ keys %e } = values %e;
}

# ---------------------------------------------------------------------------
# the final checks (see the top)

my %KEYS;       # raw keys made by the helpers
my $KEYS_RE;    # one regexp matching any of them (undef: rebuild)

# track_key(@keys): a raw key that must never reach a log (the key helpers
# call it; tests call it for keys made otherwise, e.g. by apikeyctl).  Keys
# shorter than 8 bytes are ignored (they would match anything).
sub track_key {
    for my $k (@_) {
        next unless defined $k && length $k >= 8;
        next if $KEYS{$k};
        $KEYS{$k} = 1;
        undef $KEYS_RE;
    }
    return;
}

sub tracked_keys { sort keys %KEYS }

sub _keys_re {
    return undef unless %KEYS;
    return $KEYS_RE //= do {
        my $alt = join '|', map { quotemeta } sort keys %KEYS;
        qr/$alt/;
    };
}

sub _matches_any {
    my ($line, $list) = @_;
    for my $e (@$list) {
        return 1 if ref $e eq 'Regexp' ? $line =~ $e : index($line, $e) >= 0;
    }
    return 0;
}

# what is wrong with an nginx, as text ('' when nothing)
sub _final_findings {
    my ($n, %o) = @_;
    my @out;
    unless ($o{sanitizer_only}) {
        my @p = grep { !_matches_any($_, $n->{expect_problems}) } $n->problems;
        push @out, "unexpected [alert]/[crit]/[emerg]/crash lines in "
            . "$n->{dir}/error.log:", @p if @p;
        my @leaks = $n->_key_leak_lines;
        push @out, "raw keys in the logs of $n->{dir}:", @leaks if @leaks;
    }
    for my $r ($n->sanitizer_reports) {
        push @out, "sanitizer report $r->[0]:", split /\n/, $r->[1];
    }
    # before nginx has opened its error log, stderr is nginx.stderr
    for my $f ('nginx.stderr', 'nginx.run') {
        my $t = slurp("$n->{dir}/$f");
        push @out, "sanitizer output in $n->{dir}/$f:", split /\n/, $t
            if $t =~ $SAN_LINE;
    }
    return @out;
}

my $FINAL_DONE;

sub _final_checks {
    my ($trace, $hub) = @_;
    return unless $$ == $OWNER_PID;
    return if $FINAL_DONE++;
    return if defined $ENV{AK_FINAL_CHECKS} && !$ENV{AK_FINAL_CHECKS};
    my $plan = $hub->plan;
    return if defined $plan && $plan eq 'SKIP';
    # a numeric plan counts the tests: add one only when it fails
    my $quiet = defined $plan && $plan =~ /^\d+$/;
    _cleanup_all();    # the logs are complete once nginx has exited
    require Test::More;
    my $tb = Test::More->builder;
    my $i = 0;
    for my $n (@NGINX) {
        $i++;
        my @f = _final_findings($n);
        next if $quiet && !@f;
        my $name = "final check of nginx $i: no alert, crit, emerg or crash, "
            . "no raw key in its logs"
            . (sanitizing() ? ', no sanitizer report' : '');
        $tb->ok(!@f, $name);
        if (@f) {
            splice @f, 400, @f - 400, '... (cut)' if @f > 401;
            $tb->diag(join "\n", @f);
        }
    }
    for my $n (@CHECKED) {
        my @f = _final_findings($n, sanitizer_only => 1) or next;
        $tb->ok(0, "nginx -t in $n->{dir}: no sanitizer report");
        $tb->diag(join "\n", @f);
    }
    if ($PROC_SAN_DIR) {
        my @r = _san_reports($PROC_SAN_DIR);
        if (@r || !$quiet) {
            $tb->ok(!@r, 'no sanitizer report from the programs the test ran');
            $tb->diag(join "\n", map { ("sanitizer report $_->[0]:", $_->[1]) } @r)
                if @r;
        }
    }
}

sub _final_checks_at_end {
    return unless $$ == $OWNER_PID && $INC{'Test2/API.pm'};
    my $hub = eval { Test2::API::test2_stack()->top } or return;
    return if $hub->ended;
    _final_checks(undef, $hub);
}

# run_nginx(@args): runs nginx (AK_NGINX, default /usr/sbin/nginx) with
# @args, e.g. ('-p', $dir, '-c', $conf, '-t'), with the sanitizer runtimes
# preloaded when sanitizing; returns its output (stdout and stderr) and sets
# $? like backticks.  Use it instead of `$ApiKeyTest::NGINX ...`.
sub run_nginx {
    my (@args) = @_;
    my %env = sanitizing()
        ? (LD_PRELOAD => _san_preload(), _san_env($PROC_SAN_DIR)) : ();
    my $tmp = File::Temp->new(TEMPLATE => 'aknginx-XXXXXX', TMPDIR => 1);
    return _run_nginx($tmp->filename, \%env, @args);
}

sub _run_nginx {
    my ($out, $env, @args) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        @ENV{ keys %$env } = values %$env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec($NGINX, @args) or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $st = $?;
    my $text = slurp($out);
    $? = $st;
    return $text;
}

sub _register_final_checks {
    require Test2::API;
    Test2::API::test2_add_callback_testing_done(\&_final_checks);
}
_register_final_checks();

sub _cleanup_all {
    return unless $$ == $OWNER_PID;
    # resume first: a stopped redis cannot be shut down and nginx workers
    # waiting on it would delay their graceful exit
    for my $r (@REDIS) { eval { $r->resume if $r->{paused} } }
    for my $n (@NGINX) { eval { $n->stop } }
    for my $r (@REDIS) { eval { $r->stop } }
}

# ---------------------------------------------------------------------------
# small utilities

sub module_path {
    require File::Spec;
    return File::Spec->rel2abs($ENV{AK_MODULE}) if $ENV{AK_MODULE};
    my $lib = File::Spec->rel2abs(__FILE__);
    (my $top = $lib) =~ s{/t/lib/ApiKeyTest\.pm$}{};
    return "$top/build/ngx_http_api_key_module.so";
}

# Module tests call this first: without the module there is nothing to test.
sub require_module {
    my $m = module_path();
    return $m if -f $m;
    require Test::More;
    if ($ENV{AK_ALLOW_SKIP}) {
        Test::More::plan(skip_all => "module not built: $m");
    }
    Test::More::BAIL_OUT("module not found at $m (make module; or set AK_MODULE)");
}

sub free_port {
    my $s = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 1, ReuseAddr => 1,
    ) or die "cannot bind a free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

# wait_until(sub { ... }, timeout => 10, interval => 0.05): true when the sub
# returned true before the timeout.
sub wait_until {
    my ($cb, %o) = @_;
    my $timeout  = $o{timeout}  // 10;
    my $interval = $o{interval} // 0.05;
    my $deadline = time + $timeout;
    while (1) {
        my $v = $cb->();
        return $v if $v;
        return 0 if time >= $deadline;
        sleep $interval;
    }
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return '';
    local $/;
    my $t = <$fh>;
    return $t // '';
}

sub spew {
    my ($path, $text, $mode) = @_;
    open my $fh, '>:raw', $path or die "cannot write $path: $!";
    print $fh $text;
    close $fh or die "cannot write $path: $!";
    chmod $mode, $path if defined $mode;
    return $path;
}

sub tmpdir {
    my $d = File::Temp::tempdir('aktest-XXXXXX', TMPDIR => 1,
                                CLEANUP => !$ENV{AK_KEEP});
    chmod 0755, $d;    # nginx workers run as nobody when the tests run as root
    return $d;
}

# ---------------------------------------------------------------------------
# keys and hashes

sub sha256_hex { Digest::SHA::sha256_hex($_[0]) }

# hmac_sha256_hex($data, $secret)
sub hmac_sha256_hex { Digest::SHA::hmac_sha256_hex($_[0], $_[1]) }

sub crc32 { Compress::Zlib::crc32($_[0]) }

my @B62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');

# base62($n, $width): most significant digit first, zero-padded
sub base62 {
    my ($n, $width) = @_;
    my $s = '';
    while ($n > 0) {
        $s = $B62[$n % 62] . $s;
        $n = int($n / 62);
    }
    $s = '0' x ($width - length $s) . $s if defined $width && length $s < $width;
    return $s;
}

sub random_base62 {
    my ($len) = @_;
    return join '', map { $B62[int rand 62] } 1 .. $len;
}

# A key in the project's format: PREFIX_ + 30 base62 + 6 base62 of the
# CRC-32 of everything before the checksum.
sub checksum_key {
    my ($prefix, $random) = @_;
    $prefix //= 'ak';
    $random //= random_base62(30);
    my $body = "${prefix}_$random";
    my $k = $body . base62(crc32($body), 6);
    track_key($k);
    return $k;
}

# A distinctive random key (easy to find in logs): "tk" + tag + random.
sub random_key {
    my ($tag) = @_;
    $tag //= '';
    my $k = 'tk' . $tag . 'X' . random_base62(28);
    track_key($k);
    return $k;
}

# key_hash($key, secret => S): the hex record name suffix
sub key_hash {
    my ($key, %o) = @_;
    return defined $o{secret} ? hmac_sha256_hex($key, $o{secret})
                              : sha256_hex($key);
}

# add_key($redis, $key, field => value, ...): HSET prefix.hash fields.
# Options among the fields: -prefix (default "apikey:"), -secret (HMAC
# secret), -db (SELECT first), -string (store a STRING with this value
# instead of a hash).  Returns the hex hash.
sub add_key {
    my ($redis, $key, %f) = @_;
    my $prefix = delete $f{-prefix} // 'apikey:';
    my $secret = delete $f{-secret};
    my $db     = delete $f{-db};
    my $string = delete $f{-string};
    track_key($key);
    my $hash = key_hash($key, secret => $secret);
    my $name = $prefix . $hash;
    $redis->cmd('SELECT', $db) if defined $db;
    $redis->cmd('DEL', $name);
    if (defined $string) {
        $redis->cmd('SET', $name, $string);
    } else {
        croak "add_key: at least one field is needed (an empty hash does "
            . "not exist in Redis)" unless %f;
        $redis->cmd('HSET', $name, map { ($_, $f{$_}) } sort keys %f);
    }
    $redis->cmd('SELECT', 0) if defined $db;
    return $hash;
}

# {command => calls} from INFO commandstats (command names in lowercase,
# subcommands as "config|resetstat")
sub commandstats {
    my ($redis) = @_;
    my $info = $redis->cmd('INFO', 'commandstats');
    my %c;
    while ($info =~ /^cmdstat_([^:]+):calls=(\d+)/mg) {
        $c{lc $1} = $2;
    }
    return \%c;
}

sub hgetall_calls { commandstats($_[0])->{hgetall} // 0 }

sub reset_stats { $_[0]->cmd('CONFIG', 'RESETSTAT') }

# ---------------------------------------------------------------------------
# logs

# nginx debug lines written by nginx's own code that print raw request data
# (the request line, headers, arguments, the URI): a key sent by a client
# shows up there whatever a module does.  Everything else must never contain
# a key.  Matched against the message part of an error log line (after
# "[level] pid#tid: *conn ").
use constant CORE_DEBUG_PREFIXES => (
    'http header: ',          # ngx_http_process_request_headers
    'http request line: ',    # ngx_http_process_request_line
    'http args: ',            # ngx_http_process_request_uri
    'http uri: ',             # ngx_http_process_request_uri
    'http exten: ',           # ngx_http_process_request_uri
);

# For tests that send keys where the module does not take them away (a
# location with api_key_strip off, an argument or header that is not the
# location's key source): nginx's own debug lines that print the request
# (URI, arguments, proxied headers) and the continuation lines of its
# multi-line dumps.  $n->expect_key_leak(CORE_REQUEST_DEBUG) lets them be.
use constant CORE_REQUEST_DEBUG => qr{
    ^error\.log:\ (?:
        \S+\ \S+\ \[debug\]\ \d+\#\d+:\ \*\d+\ http\ (?:proxy\ header|script\ var
            |finalize\ request|special\ response|output\ filter|copy\ filter
            |postpone\ filter|run\ request|upstream\ request)
      | (?!\d{4}/\d\d/\d\d\ )    # a continuation line
    )
}x;

# parse_error_log($text) -> list of { level, msg, line }
sub parse_error_log {
    my ($text) = @_;
    my @out;
    for my $line (split /\n/, $text) {
        if ($line =~ m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$}) {
            push @out, { level => $1, msg => $2, line => $line };
        } else {
            # continuation lines (e.g. the multi-line "http proxy header")
            push @out, { level => 'cont', msg => $line, line => $line };
        }
    }
    return @out;
}

# key_leaks($error_log_text, @keys): the error log lines that contain one of
# the keys, other than nginx core's request-parser debug lines.
sub key_leaks {
    my ($text, @keys) = @_;
    my @bad;
    LINE: for my $l (parse_error_log($text)) {
        my $hit = grep { index($l->{line}, $_) >= 0 } @keys;
        next unless $hit;
        for my $p (CORE_DEBUG_PREFIXES) {
            next LINE if $l->{level} eq 'debug' && index($l->{msg}, $p) == 0;
        }
        push @bad, $l->{line};
    }
    return @bad;
}

# A server block that echoes what it received (the "upstream"), with
# api_key off.  The port placeholder is %%PORT_UP%%.
sub echo_server {
    return <<'EOT';
    server {
        listen 127.0.0.1:%%PORT_UP%%;
        api_key off;
        location / {
            default_type text/plain;
            return 200 "echo uri=[$uri] xkey=[$http_x_api_key] auth=[$http_authorization] args=[$args] cookie=[$http_cookie] custom=[$http_x_custom] owner=[$http_x_owner] plan=[$http_x_plan] id=[$http_x_key_id]\n";
        }
    }
EOT
}

# ---------------------------------------------------------------------------
# HTTP client

sub _fmt_request {
    my ($path, %o) = @_;
    my $method = $o{method} // 'GET';
    my @h;
    my $hdrs = $o{headers} // {};
    if (ref $hdrs eq 'HASH') {
        @h = map { ($_, $hdrs->{$_}) } sort keys %$hdrs;
    } else {
        @h = @$hdrs;
    }
    my $req = "$method $path HTTP/1.1\r\n";
    my %seen;
    while (@h) {
        my ($k, $v) = splice @h, 0, 2;
        $seen{lc $k} = 1;
        $req .= "$k: $v\r\n";
    }
    $req .= "Host: 127.0.0.1\r\n" unless $seen{host};
    $req .= "Connection: " . ($o{keepalive} ? 'keep-alive' : 'close') . "\r\n"
        unless $seen{connection};
    my $body = $o{body} // '';
    $req .= "Content-Length: " . length($body) . "\r\n"
        if length $body && !$seen{'content-length'};
    $req .= "\r\n" . $body;
    return $req;
}

sub _connect {
    my ($port, $timeout) = @_;
    return IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => $timeout // 5,
    );
}

# http_request($port, $path, method =>, headers => {..} | [k, v, ...],
#              body =>, timeout => 10): a Response (status 0 and ->error on
# a connection error or timeout)
sub http_request {
    my ($port, $path, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $t0 = time;
    my $s = _connect($port, $timeout)
        or return ApiKeyTest::Response->error("connect: $!", time - $t0);
    my $req = _fmt_request($path, %o);
    unless (_write_all($s, $req, $t0 + $timeout)) {
        # a server may answer and close before reading everything
    }
    my $buf = '';
    my $deadline = $t0 + $timeout;
    my $sel = IO::Select->new($s);
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            close $s;
            return ApiKeyTest::Response->error('timeout', time - $t0, $buf);
        }
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            last if length $buf;    # ECONNRESET after the answer
            close $s;
            return ApiKeyTest::Response->error("read: $!", time - $t0);
        }
        last if $n == 0;
        # stop as soon as a complete response is there (do not depend on
        # the server closing the connection)
        my $r = ApiKeyTest::Response->parse($buf, complete_only => 1);
        last if $r;
    }
    close $s;
    my $res = ApiKeyTest::Response->parse($buf)
        // return ApiKeyTest::Response->error('bad response', time - $t0, $buf);
    $res->{elapsed} = time - $t0;
    return $res;
}

sub http_get { my ($port, $path, %o) = @_; http_request($port, $path, %o, method => 'GET') }

sub _write_all {
    my ($s, $data, $deadline) = @_;
    my $off = 0;
    my $sel = IO::Select->new($s);
    while ($off < length $data) {
        my $left = $deadline - time;
        return 0 if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            return 0;
        }
        $off += $n;
    }
    return 1;
}

# A socket with a request sent and not read: to disconnect while waiting.
# http_open_raw($port, $path, headers => ...) -> socket
sub http_open_raw {
    my ($port, $path, %o) = @_;
    my $s = _connect($port, 5) or die "connect to $port: $!";
    _write_all($s, _fmt_request($path, %o), time + 5) or die "write: $!";
    return $s;
}

# http_batch($port, [ { path => ..., headers => ... }, ... ]): every request
# sent on its own connection at once; ->wait(timeout => 15) returns the
# Responses in the same order.
sub http_batch {
    my ($port, $reqs, %o) = @_;
    return ApiKeyTest::Batch->new($port, $reqs, %o);
}

# http_concurrent($port, \@reqs, timeout => 15): http_batch + wait
sub http_concurrent {
    my ($port, $reqs, %o) = @_;
    return http_batch($port, $reqs, %o)->wait(%o);
}

# ===========================================================================
package ApiKeyTest::Response;

use strict;
use warnings;

sub error {
    my ($class, $msg, $elapsed, $raw) = @_;
    return bless { status => 0, error => $msg, headers => {}, body => '',
                   elapsed => $elapsed, raw => $raw // '' }, $class;
}

# parse($buf): a Response, or undef if $buf is not (yet) a complete one.
# With complete_only, a close-delimited body counts as incomplete.
sub parse {
    my ($class, $buf, %o) = @_;
    my $he = index($buf, "\r\n\r\n");
    return undef if $he < 0;
    my $head = substr($buf, 0, $he);
    my $rest = substr($buf, $he + 4);
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines;
    return undef unless $sl =~ m{^HTTP/1\.[01] (\d{3})(?: (.*))?$};
    my $self = bless { status => $1 + 0, reason => $2 // '', headers => {},
                       header_list => [], raw => $buf }, $class;
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $self->{headers}{lc $k} }, $v;
        push @{ $self->{header_list} }, [$k, $v];
    }
    my $te = lc($self->header('transfer-encoding') // '');
    my $cl = $self->header('content-length');
    if ($te =~ /chunked/) {
        my $body = '';
        my $p = 0;
        while (1) {
            my $e = index($rest, "\r\n", $p);
            return undef if $e < 0;
            my ($size) = substr($rest, $p, $e - $p) =~ /^([0-9a-fA-F]+)/;
            return undef unless defined $size;
            $size = hex $size;
            $p = $e + 2;
            if ($size == 0) {
                # trailers end with an empty line
                return undef if index($rest, "\r\n", $p) < 0;
                last;
            }
            return undef if length($rest) < $p + $size + 2;
            $body .= substr($rest, $p, $size);
            $p += $size + 2;
        }
        $self->{body} = $body;
    } elsif (defined $cl) {
        return undef if length($rest) < $cl;
        $self->{body} = substr($rest, 0, $cl);
    } elsif ($self->{status} == 204 || $self->{status} == 304
             || $self->{status} < 200) {
        $self->{body} = '';
    } else {
        return undef if $o{complete_only};
        $self->{body} = $rest;
    }
    return $self;
}

sub status  { $_[0]{status} }
sub body    { $_[0]{body} }
sub elapsed { $_[0]{elapsed} }
sub error_message { $_[0]{error} }
sub raw     { $_[0]{raw} }

# header($name): the values of that header joined by ", " (undef if absent)
sub header {
    my ($self, $name) = @_;
    my $v = $self->{headers}{lc $name} or return undef;
    return join ', ', @$v;
}

# headers($name): every value of that header
sub headers {
    my ($self, $name) = @_;
    return @{ $self->{headers}{lc $name} // [] };
}

sub as_string {
    my ($self) = @_;
    return "error: $self->{error}" if $self->{error};
    my $s = "$self->{status}";
    $s .= " [$_->[0]: $_->[1]]" for @{ $self->{header_list} };
    $s .= " body=" . substr($self->{body} // '', 0, 300);
    return $s;
}

# ===========================================================================
package ApiKeyTest::HTTPConn;

# A keep-alive connection: my $c = ApiKeyTest::HTTPConn->new($port);
# $c->get($path, headers => ...) (reconnects if the server closed it).

use strict;
use warnings;
use Time::HiRes qw(time);
use IO::Select;
use Errno qw(EAGAIN EINTR);

sub new {
    my ($class, $port, %o) = @_;
    my $self = bless { port => $port, timeout => $o{timeout} // 10,
                       connects => 0 }, $class;
    return $self;
}

sub connects { $_[0]{connects} }

sub _ensure {
    my ($self) = @_;
    return $self->{s} if $self->{s};
    $self->{s} = ApiKeyTest::_connect($self->{port}, $self->{timeout})
        or return undef;
    $self->{connects}++;
    $self->{buf} = '';
    return $self->{s};
}

sub get {
    my ($self, $path, %o) = @_;
    return $self->request($path, %o, method => 'GET');
}

sub request {
    my ($self, $path, %o) = @_;
    my $t0 = time;
    my $s = $self->_ensure
        or return ApiKeyTest::Response->error("connect: $!", time - $t0);
    my $req = ApiKeyTest::_fmt_request($path, %o, keepalive => 1);
    my $deadline = $t0 + ($o{timeout} // $self->{timeout});
    unless (ApiKeyTest::_write_all($s, $req, $deadline)) {
        $self->close;
        return ApiKeyTest::Response->error("write: $!", time - $t0);
    }
    my $sel = IO::Select->new($s);
    my $buf = '';
    while (1) {
        if (my $r = ApiKeyTest::Response->parse($buf, complete_only => 1)) {
            $r->{elapsed} = time - $t0;
            my $conn = lc($r->header('connection') // '');
            $self->close if $conn eq 'close';
            return $r;
        }
        my $left = $deadline - time;
        if ($left <= 0) {
            $self->close;
            return ApiKeyTest::Response->error('timeout', time - $t0, $buf);
        }
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
        }
        if (!$n) {
            $self->close;
            my $r = ApiKeyTest::Response->parse($buf);
            if ($r) { $r->{elapsed} = time - $t0; return $r }
            return ApiKeyTest::Response->error('connection closed',
                                               time - $t0, $buf);
        }
    }
}

sub close {
    my ($self) = @_;
    close $self->{s} if $self->{s};
    delete $self->{s};
}

sub DESTROY { $_[0]->close }

# ===========================================================================
package ApiKeyTest::Batch;

use strict;
use warnings;
use Time::HiRes qw(time);
use IO::Select;
use Errno qw(EAGAIN EINTR);

sub new {
    my ($class, $port, $reqs, %o) = @_;
    my $self = bless { port => $port, items => [], t0 => time }, $class;
    for my $r (@$reqs) {
        my %r = ref $r eq 'HASH' ? %$r : (path => $r);
        my $path = delete $r{path} // '/';
        my $item = { t0 => time, buf => '', done => 0 };
        my $s = ApiKeyTest::_connect($port, 5);
        if (!$s) {
            $item->{res} = ApiKeyTest::Response->error("connect: $!", 0);
            $item->{done} = 1;
        } else {
            $item->{s} = $s;
            $item->{req} = ApiKeyTest::_fmt_request($path, %r);
            $s->blocking(0);
        }
        push @{ $self->{items} }, $item;
    }
    # send everything (requests are small: one write each, normally)
    for my $it (grep { !$_->{done} } @{ $self->{items} }) {
        $it->{s}->blocking(1);
        ApiKeyTest::_write_all($it->{s}, $it->{req}, time + 5);
        $it->{s}->blocking(0);
    }
    return $self;
}

# the number of requests still without a complete answer
sub pending {
    my ($self) = @_;
    $self->_poll(0);
    return scalar grep { !$_->{done} } @{ $self->{items} };
}

sub _finish {
    my ($it, $eof) = @_;
    my $r = ApiKeyTest::Response->parse($it->{buf}, complete_only => !$eof);
    return 0 unless $r || $eof;
    $r //= ApiKeyTest::Response->error('connection closed', 0, $it->{buf});
    $r->{elapsed} = time - $it->{t0};
    $it->{res} = $r;
    $it->{done} = 1;
    close $it->{s};
    delete $it->{s};
    return 1;
}

sub _poll {
    my ($self, $wait) = @_;
    my %by_fd;
    for my $it (grep { !$_->{done} } @{ $self->{items} }) {
        $by_fd{ fileno $it->{s} } = $it;
    }
    return unless %by_fd;
    my $sel = IO::Select->new(map { $_->{s} } values %by_fd);
    for my $s ($sel->can_read($wait)) {
        my $it = $by_fd{ fileno $s };
        my $n = sysread($s, $it->{buf}, 65536, length $it->{buf});
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            _finish($it, 1);
            next;
        }
        if ($n == 0) { _finish($it, 1); next }
        _finish($it, 0);
    }
}

# wait(timeout => 15): every Response (status 0 / error "timeout" for the
# ones without an answer)
sub wait {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // 15);
    while (grep { !$_->{done} } @{ $self->{items} }) {
        my $left = $deadline - time;
        last if $left <= 0;
        $self->_poll($left > 0.2 ? 0.2 : $left);
    }
    for my $it (@{ $self->{items} }) {
        next if $it->{done};
        $it->{res} = ApiKeyTest::Response->error('timeout', time - $it->{t0},
                                                 $it->{buf});
        close $it->{s};
        delete $it->{s};
        $it->{done} = 1;
    }
    return map { $_->{res} } @{ $self->{items} };
}

# abort(): close every connection without reading (clients going away)
sub abort {
    my ($self, %o) = @_;
    for my $it (@{ $self->{items} }) {
        next if $it->{done};
        if ($o{reset}) {
            # RST instead of FIN
            setsockopt($it->{s}, Socket::SOL_SOCKET(), Socket::SO_LINGER(),
                       pack('ii', 1, 0));
        }
        close $it->{s};
        delete $it->{s};
        $it->{done} = 1;
        $it->{res} = ApiKeyTest::Response->error('aborted', 0);
    }
}

sub DESTROY {
    my ($self) = @_;
    for my $it (@{ $self->{items} // [] }) {
        close $it->{s} if $it->{s};
    }
}

# ===========================================================================
package ApiKeyTest::RedisError;

use overload '""' => sub { "redis error: $_[0]{msg}" }, fallback => 1;
sub new { bless { msg => $_[1] }, $_[0] }
sub msg { $_[0]{msg} }

# ===========================================================================
package ApiKeyTest::RedisClient;

# A tiny RESP2 client.  ApiKeyTest::RedisClient->new(port => P | path => S,
# user => U, password => P, timeout => 5).  cmd(@args) returns the decoded
# reply (arrays as array refs, nil as undef) and dies on an error reply or a
# timeout; try_cmd(@args) returns ($reply, $error_string).

use strict;
use warnings;
use Time::HiRes qw(time);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Errno qw(EAGAIN EINTR);
use Carp qw(croak);

sub new {
    my ($class, %o) = @_;
    my $self = bless { %o, timeout => $o{timeout} // 5 }, $class;
    $self->_connect;
    return $self;
}

sub _connect {
    my ($self) = @_;
    my $s;
    if (defined $self->{path}) {
        $s = IO::Socket::UNIX->new(Peer => $self->{path}, Type => Socket::SOCK_STREAM())
            or croak "redis connect $self->{path}: $!";
    } else {
        $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                   PeerPort => $self->{port}, Proto => 'tcp',
                                   Timeout => $self->{timeout})
            or croak "redis connect 127.0.0.1:$self->{port}: $!";
    }
    $self->{s} = $s;
    $self->{buf} = '';
    if (defined $self->{password}) {
        my @a = defined $self->{user}
            ? ('AUTH', $self->{user}, $self->{password})
            : ('AUTH', $self->{password});
        $self->cmd(@a);
    }
    $self->cmd('SELECT', $self->{db}) if $self->{db};
    return $s;
}

sub close {
    my ($self) = @_;
    close $self->{s} if $self->{s};
    delete $self->{s};
}

sub _encode {
    my (@args) = @_;
    my $out = '*' . scalar(@args) . "\r\n";
    for my $a (@args) {
        $a = "$a";
        $out .= '$' . length($a) . "\r\n$a\r\n";
    }
    return $out;
}

sub send_only {
    my ($self, @args) = @_;
    $self->_connect unless $self->{s};
    ApiKeyTest::_write_all($self->{s}, _encode(@args), time + $self->{timeout})
        or do { $self->close; croak "redis write: $!" };
}

sub _fill {
    my ($self, $deadline) = @_;
    my $left = $deadline - time;
    die "redis: timeout waiting for a reply\n" if $left <= 0;
    my $sel = IO::Select->new($self->{s});
    return unless $sel->can_read($left);
    my $n = sysread($self->{s}, $self->{buf}, 65536, length $self->{buf});
    if (!defined $n) {
        return if $! == EINTR || $! == EAGAIN;
        $self->close;
        die "redis: read error: $!\n";
    }
    if ($n == 0) {
        $self->close;
        die "redis: connection closed\n";
    }
}

sub _line {
    my ($self, $deadline) = @_;
    while (1) {
        my $i = index($self->{buf}, "\r\n");
        if ($i >= 0) {
            my $l = substr($self->{buf}, 0, $i);
            substr($self->{buf}, 0, $i + 2) = '';
            return $l;
        }
        $self->_fill($deadline);
    }
}

sub _bytes {
    my ($self, $n, $deadline) = @_;
    $self->_fill($deadline) while length($self->{buf}) < $n + 2;
    my $d = substr($self->{buf}, 0, $n);
    substr($self->{buf}, 0, $n + 2) = '';
    return $d;
}

# read_reply(timeout => T): one decoded reply; errors as RedisError objects
sub read_reply {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // $self->{timeout});
    return $self->_reply($deadline);
}

sub _reply {
    my ($self, $deadline) = @_;
    my $l = $self->_line($deadline);
    my $t = substr($l, 0, 1, '');
    return $l if $t eq '+';
    return ApiKeyTest::RedisError->new($l) if $t eq '-';
    return $l + 0 if $t eq ':';
    if ($t eq '$') {
        return undef if $l < 0;
        return $self->_bytes($l, $deadline);
    }
    if ($t eq '*') {
        return undef if $l < 0;
        return [ map { $self->_reply($deadline) } 1 .. $l ];
    }
    die "redis: protocol error: unexpected '$t$l'\n";
}

# replies that arrive within $wait seconds (MONITOR, pub/sub)
sub read_available {
    my ($self, $wait) = @_;
    my @out;
    while (1) {
        my $r = eval { $self->read_reply(timeout => $wait) };
        last if $@;
        push @out, $r;
    }
    return @out;
}

sub try_cmd {
    my ($self, @args) = @_;
    my $r = eval {
        $self->send_only(@args);
        $self->read_reply;
    };
    if (my $e = $@) {
        $self->close;    # the stream is out of step now
        return (undef, "$e");
    }
    return (undef, $r->msg) if ref $r eq 'ApiKeyTest::RedisError';
    return ($r, undef);
}

sub cmd {
    my ($self, @args) = @_;
    my ($r, $err) = $self->try_cmd(@args);
    croak "redis command '$args[0]' failed: $err" if defined $err;
    return $r;
}

sub DESTROY { $_[0]->close }

# ===========================================================================
package ApiKeyTest::Redis;

# my $r = ApiKeyTest::Redis->start(
#     port => P (default: a free one; 0: no TCP, unix socket only),
#     unixsocket => 1 | PATH, requirepass => PW,
#     users => ['alice on >pw ~* &* +@all', ...],   # ACL "user" lines
#     config => ["notify-keyspace-events Kgh", ...]);
# $r->port, ->socket_path, ->cmd(@args), ->try_cmd, ->client(%o) (a new
# connection), ->pause, ->resume, ->pause_guard, ->stop, ->start_again,
# ->restart (same port and configuration, empty data), ->log.

use strict;
use warnings;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use Carp qw(croak);

sub start {
    my ($class, %o) = @_;
    my $self = bless {
        dir => $o{dir} // ApiKeyTest::tmpdir(),
        port => $o{port} // ApiKeyTest::free_port(),
        requirepass => $o{requirepass},
        users => $o{users} // [],
        config => $o{config} // [],
        auth => $o{auth},    # [user, password] for the harness's own connection
    }, $class;
    if ($o{unixsocket}) {
        $self->{socket_path} = $o{unixsocket} eq '1'
            ? "$self->{dir}/redis.sock" : $o{unixsocket};
    }
    my @c = (
        "port $self->{port}",
        "bind 127.0.0.1",
        "save \"\"",
        "appendonly no",
        "dir $self->{dir}",
        "daemonize no",
        "logfile $self->{dir}/redis.log",
        "databases 16",
    );
    if ($self->{socket_path}) {
        push @c, "unixsocket $self->{socket_path}", "unixsocketperm 777";
    }
    push @c, "requirepass $self->{requirepass}" if defined $self->{requirepass};
    push @c, "user $_" for @{ $self->{users} };
    push @c, @{ $self->{config} };
    ApiKeyTest::spew("$self->{dir}/redis.conf", join("\n", @c) . "\n");
    push @REDIS, $self;
    $self->_spawn;
    return $self;
}

sub _spawn {
    my ($self) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/redis.stdout";
        open STDERR, '>&', \*STDOUT;
        exec($REDIS_SERVER, "$self->{dir}/redis.conf") or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{paused} = 0;
    delete $self->{client};
    my $ok = ApiKeyTest::wait_until(sub {
        return 'dead' if waitpid($pid, WNOHANG) == $pid;
        my $c = eval { $self->_new_client(timeout => 1) } or return 0;
        my ($r) = $c->try_cmd('PING');
        return 0 unless defined $r && $r eq 'PONG';
        $self->{client} = $c;
        return 1;
    }, timeout => 10);
    if (!$ok || $ok eq 'dead' || !$self->{client}) {
        my $log = ApiKeyTest::slurp("$self->{dir}/redis.log")
            . ApiKeyTest::slurp("$self->{dir}/redis.stdout");
        kill 'KILL', $pid;
        waitpid $pid, 0;
        delete $self->{pid};
        croak "redis-server did not start on port $self->{port}:\n$log";
    }
}

sub _new_client {
    my ($self, %o) = @_;
    my %auth;
    if ($o{user} || $o{password}) {
        %auth = (user => $o{user}, password => $o{password});
    } elsif ($self->{auth}) {
        %auth = (user => $self->{auth}[0], password => $self->{auth}[1]);
    } elsif (defined $self->{requirepass}) {
        %auth = (password => $self->{requirepass});
    }
    delete $auth{user} unless defined $auth{user};
    my %where = $self->{port} ? (port => $self->{port})
                              : (path => $self->{socket_path});
    return ApiKeyTest::RedisClient->new(%where, %auth,
                                        timeout => $o{timeout} // 5,
                                        db => $o{db});
}

# a new, separate connection (e.g. for MONITOR or as another user)
sub client { my ($self, %o) = @_; $self->_new_client(%o) }

sub port        { $_[0]{port} }
sub socket_path { $_[0]{socket_path} }
sub dir         { $_[0]{dir} }
sub pid         { $_[0]{pid} }
sub log         { ApiKeyTest::slurp("$_[0]{dir}/redis.log") }
sub is_running  { $_[0]{pid} && kill(0, $_[0]{pid}) }

sub cmd {
    my ($self, @args) = @_;
    croak "redis is paused: a command would hang" if $self->{paused};
    croak "redis is not running" unless $self->{pid};
    $self->{client} //= $self->_new_client;
    return $self->{client}->cmd(@args);
}

sub try_cmd {
    my ($self, @args) = @_;
    return (undef, 'paused') if $self->{paused};
    return (undef, 'not running') unless $self->{pid};
    $self->{client} //= eval { $self->_new_client } or return (undef, "$@");
    return $self->{client}->try_cmd(@args);
}

sub pause {
    my ($self) = @_;
    kill 'STOP', $self->{pid} or croak "SIGSTOP: $!";
    $self->{paused} = 1;
}

sub resume {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'CONT', $self->{pid};
    $self->{paused} = 0;
}

# my $g = $r->pause_guard;  # paused until $g goes out of scope (or ->resume)
sub pause_guard {
    my ($self) = @_;
    $self->pause;
    return bless { r => $self }, 'ApiKeyTest::Redis::PauseGuard';
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'CONT', $pid if $self->{paused};
    $self->{paused} = 0;
    delete $self->{client};
    kill 'TERM', $pid;
    my $ok = ApiKeyTest::wait_until(sub { waitpid($pid, WNOHANG) == $pid },
                                    timeout => 5);
    unless ($ok) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    # the port must be free before someone starts a server on it again
    ApiKeyTest::wait_until(sub {
        !IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                               Proto => 'tcp', Timeout => 1)
    }, timeout => 5) if $self->{port};
    return 1;
}

# start again after stop (same port, same configuration, empty data)
sub start_again {
    my ($self) = @_;
    croak "redis already running" if $self->{pid};
    $self->_spawn;
    return $self;
}

sub restart {
    my ($self) = @_;
    $self->stop;
    $self->start_again;
}

# my $m = $r->monitor; ... ; my @cmds = $m->commands(0.3): MONITOR lines
# seen so far, each as [ lc command, args... ]; ->lines: raw lines
sub monitor {
    my ($self) = @_;
    my $c = $self->_new_client;
    $c->send_only('MONITOR');
    my $ok = $c->read_reply;
    croak "MONITOR: $ok" unless defined $ok && $ok eq 'OK';
    return bless { c => $c, lines => [] }, 'ApiKeyTest::Redis::Monitor';
}

# client ids of connections other than the harness's own
sub other_clients {
    my ($self) = @_;
    my $mine = $self->cmd('CLIENT', 'ID');
    my $list = $self->cmd('CLIENT', 'LIST');
    my @c;
    for my $l (split /\n/, $list) {
        my %f = map { /^([^=]+)=(.*)$/ ? ($1, $2) : () } split / /, $l;
        next if ($f{id} // '') eq $mine;
        push @c, \%f;
    }
    return @c;
}

# wait until at least $n connections other than the harness's own exist
sub wait_clients {
    my ($self, $n, %o) = @_;
    return ApiKeyTest::wait_until(sub { $self->other_clients >= $n },
                                  timeout => $o{timeout} // 5);
}

package ApiKeyTest::Redis::Monitor;

sub lines {
    my ($self, $wait) = @_;
    push @{ $self->{lines} }, grep { defined && !ref }
        $self->{c}->read_available($wait // 0.3);
    return @{ $self->{lines} };
}

# the commands seen, each as [ lc command, args... ] (args unquoted)
sub commands {
    my ($self, $wait) = @_;
    my @out;
    for my $l ($self->lines($wait)) {
        my ($rest) = $l =~ /^\S+ \[[^\]]*\] (.*)$/ or next;
        my @a;
        while ($rest =~ /"((?:[^"\\]|\\.)*)"/g) {
            my $s = $1;
            $s =~ s/\\x([0-9a-fA-F]{2})/chr hex $1/ge;
            $s =~ s/\\(.)/$1 eq 'n' ? "\n" : $1 eq 'r' ? "\r" : $1 eq 't' ? "\t" : $1/ge;
            push @a, $s;
        }
        $a[0] = lc $a[0] if @a;
        push @out, \@a if @a;
    }
    return @out;
}

sub clear { $_[0]->lines(0.05); $_[0]{lines} = [] }

sub close { $_[0]{c}->close }

package ApiKeyTest::Redis::PauseGuard;
sub resume  { my $r = delete $_[0]{r}; $r->resume if $r }
sub DESTROY { $_[0]->resume }

# ===========================================================================
package ApiKeyTest::Nginx;

# my $n = ApiKeyTest::Nginx->start(
#     http => $text,            # the inside of http { } (temp paths, a default
#                               # access log and log format "ak" are added), or
#     conf => $text,            # everything after the main preamble
#     vars => { REDIS => $r->port, ... },
#     workers => 1, module => 1 (0: no load_module), error_level => 'debug',
#     main => $extra_main_context_text, user => 'nobody',
#     expect_problems => [qr/.../, ...], expect_key_leaks => [$key, qr/../]);
# $n->port (main), ->port('up'), ->dir, ->conf_path, ->reload(%same_opts),
# ->stop, ->error_log, ->access_log, ->log_mark / ->error_log_since($mark),
# ->problems, ->worker_pids, ->master_pid.
#
# ApiKeyTest::Nginx->check_config(%same_opts) runs nginx -t:
# returns { ok => 0|1, output => text, conf_path => path, conf => text }.

use strict;
use warnings;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use Carp qw(croak);

sub _new {
    my ($class, %o) = @_;
    my $self = bless {
        dir => $o{dir} // ApiKeyTest::tmpdir(),
        ports => {},
        workers => $o{workers} // 1,
        expect_problems => [ _list($o{expect_problems}) ],
        expect_key_leaks => [ _list($o{expect_key_leaks}) ],
    }, $class;
    ApiKeyTest::_san_dir("$self->{dir}/san");
    mkdir "$self->{dir}/tmp";
    mkdir "$self->{dir}/html";
    chmod 0755, "$self->{dir}/html";
    return $self;
}

sub _list { my ($v) = @_; !defined $v ? () : ref $v eq 'ARRAY' ? @$v : ($v) }

# the environment of an nginx process: the sanitizer runtimes and options
# when sanitizing
sub _env {
    my ($self) = @_;
    return () unless ApiKeyTest::sanitizing();
    return (LD_PRELOAD => ApiKeyTest::_san_preload(),
            ApiKeyTest::_san_env("$self->{dir}/san"));
}

# runs nginx with @args (not through a shell, so that only nginx gets the
# preload): returns (output, exit status)
sub _run {
    my ($self, @args) = @_;
    my $out = ApiKeyTest::_run_nginx("$self->{dir}/nginx.run", { $self->_env }, @args);
    return ($out, $?);
}

sub _build_conf {
    my ($self, %o) = @_;
    my $dir = $self->{dir};
    my $module = $o{module} // 1;
    my $level = $o{error_level} // 'debug';
    my $user = $o{user};
    if (!defined $user && $> == 0) {
        my $grp = getgrnam('nogroup') ? 'nogroup' : 'nobody';
        $user = "nobody $grp";
    }
    my $t = "# generated by ApiKeyTest\n";
    $t .= "load_module " . ($o{module_path} // ApiKeyTest::module_path()) . ";\n"
        if $module;
    $t .= "user $user;\n" if defined $user && $> == 0;
    $t .= "worker_processes $self->{workers};\n";
    $t .= "worker_rlimit_nofile 8192;\n";
    $t .= "error_log $dir/error.log $level;\n";
    $t .= "pid $dir/nginx.pid;\n";
    $t .= $o{main} . "\n" if defined $o{main};
    $t .= "events {\n    worker_connections 2048;\n}\n";
    if (defined $o{http}) {
        my $fmt = $module
            ? q{'$remote_addr "$request" $status uri=$request_uri }
              . q{st=$api_key_status id=$api_key_id owner=$api_key_owner }
              . q{plan=$api_key_plan'}
            : q{'$remote_addr "$request" $status uri=$request_uri'};
        $t .= "http {\n"
            . "    client_body_temp_path $dir/tmp/body;\n"
            . "    proxy_temp_path $dir/tmp/proxy;\n"
            . "    fastcgi_temp_path $dir/tmp/fastcgi;\n"
            . "    uwsgi_temp_path $dir/tmp/uwsgi;\n"
            . "    scgi_temp_path $dir/tmp/scgi;\n"
            . "    default_type text/plain;\n"
            . "    log_format ak $fmt;\n"
            . "    access_log $dir/access.log ak;\n"
            . $o{http}
            . "\n}\n";
    } elsif (defined $o{conf}) {
        $t .= $o{conf};
    } else {
        croak "Nginx: http => or conf => is needed";
    }
    my %vars = (%{ $o{vars} // {} }, DIR => $dir,
                MODULE => $o{module_path} // ApiKeyTest::module_path());
    $t =~ s{%%([A-Za-z0-9_]+)%%}{$self->_placeholder($1, \%vars)}ge;
    return $t;
}

sub _placeholder {
    my ($self, $name, $vars) = @_;
    return $vars->{$name} if exists $vars->{$name};
    if ($name =~ /^PORT(?:_(\w+))?$/) {
        my $p = lc($1 // 'main');
        return $self->{ports}{$p} //= ApiKeyTest::free_port();
    }
    croak "config placeholder %%${name}%% has no value";
}

sub _write_conf {
    my ($self, %o) = @_;
    my $text = $self->_build_conf(%o);
    $self->{conf_path} = "$self->{dir}/nginx.conf";
    $self->{conf_text} = $text;
    ApiKeyTest::spew($self->{conf_path}, $text);
}

sub check_config {
    my ($class, %o) = @_;
    my $self = $class->_new(%o);
    $self->_write_conf(%o);
    push @CHECKED, $self;
    my ($out, $st) = $self->_run('-p', "$self->{dir}/", '-c', $self->{conf_path}, '-t');
    my $ok = $st == 0 ? 1 : 0;
    return { ok => $ok, output => $out, conf_path => $self->{conf_path},
             conf => $self->{conf_text}, dir => $self->{dir},
             nginx => $self };
}

# the 1-based line number of the first line of the written config that
# matches $re
sub line_of {
    my ($self_or_conf, $re) = @_;
    my $text = ref $self_or_conf eq 'HASH' ? $self_or_conf->{conf}
                                           : $self_or_conf->{conf_text};
    my @l = split /\n/, $text;
    for my $i (0 .. $#l) { return $i + 1 if $l[$i] =~ $re }
    croak "no config line matches $re";
}

sub start {
    my ($class, %o) = @_;
    my $self = $class->_new(%o);
    $self->{opts} = \%o;
    $self->_write_conf(%o);
    push @NGINX, $self;
    my %env = $self->_env;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        @ENV{ keys %env } = values %env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/nginx.stderr";
        open STDERR, '>&', \*STDOUT;
        exec($NGINX, '-p', "$self->{dir}/", '-c', $self->{conf_path},
            '-g', 'daemon off; master_process on;') or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $why = '';
    my $ok = ApiKeyTest::wait_until(sub {
        if (waitpid($pid, WNOHANG) == $pid) {
            $why = "nginx exited (status $?)";
            delete $self->{pid};
            return 'dead';
        }
        my @w = $self->worker_pids;
        return 0 unless @w == $self->{workers};
        for my $p (values %{ $self->{ports} }) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $p, Proto => 'tcp',
                                          Timeout => 1) or return 0;
            close $s;
        }
        return 1;
    }, timeout => 10);
    if (!$ok || $ok eq 'dead') {
        my $diag = ApiKeyTest::slurp("$self->{dir}/nginx.stderr");
        my @err = grep { !/\[debug\]/ } split /\n/, $self->error_log;
        $self->stop;
        # a start that failed is checked like nginx -t: sanitizer reports
        # only (its [emerg] is what the caller looks at)
        @NGINX = grep { $_ != $self } @NGINX;
        push @CHECKED, $self;
        my @tail = @err > 40 ? @err[-40 .. -1] : @err;
        croak "nginx did not start ($why):\n$diag\n" . join("\n", @tail) . "\n";
    }
    if (my $r = $o{redis}) {
        # the workers connect to Redis when they start: wait for that
        # (best effort; a test about startup would not pass redis =>)
        my $want = $o{redis_clients} // $self->{workers};
        $r->wait_clients($want, timeout => 5)
            or Test::More::diag("nginx workers did not connect to redis "
                                . "within 5s") if $INC{'Test/More.pm'};
    }
    return $self;
}

sub dir        { $_[0]{dir} }
sub conf_path  { $_[0]{conf_path} }
sub conf_text  { $_[0]{conf_text} }
sub master_pid { $_[0]{pid} }

sub port {
    my ($self, $name) = @_;
    $name = lc($name // 'main');
    return $self->{ports}{$name} // croak "no port named $name";
}

# worker process pids of this nginx (not cache manager/loader), and the
# ones of a previous generation still shutting down
sub _children {
    my ($self) = @_;
    my $master = $self->{pid} or return ();
    my @c;
    opendir my $dh, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = ApiKeyTest::slurp("/proc/$p/stat") or next;
        my $e = rindex($stat, ')');
        my (undef, $ppid) = split / /, substr($stat, $e + 2);
        next unless defined $ppid && $ppid == $master;
        my $cmd = ApiKeyTest::slurp("/proc/$p/cmdline");
        $cmd =~ s/\0/ /g;
        push @c, { pid => $p, cmd => $cmd };
    }
    return @c;
}

sub worker_pids {
    my ($self) = @_;
    my @p = sort { $a <=> $b } map { $_->{pid} }
        grep { $_->{cmd} =~ /worker process/ && $_->{cmd} !~ /shutting down/ }
        $self->_children;
    return @p;
}

sub all_worker_pids {
    my ($self) = @_;
    my @p = sort { $a <=> $b } map { $_->{pid} }
        grep { $_->{cmd} =~ /worker process/ } $self->_children;
    return @p;
}

# nginx -s reload, optionally with a new configuration (same options as
# start); true once a new generation of workers is up and the old one has
# stopped accepting (exited or "shutting down").  Waits also for the old
# workers to exit (old_exit_timeout, default 10 s) and records in
# ->{old_workers_left} any that did not.
sub reload {
    my ($self, %o) = @_;
    if (%o) {
        my %opts = (%{ $self->{opts} }, %o);
        $self->{opts} = \%opts;
        $self->_write_conf(%opts);
    }
    my %old = map { $_ => 1 } $self->all_worker_pids;
    my ($out, $st) = $self->_run('-p', "$self->{dir}/", '-c', $self->{conf_path},
                                 '-s', 'reload');
    if ($st) {
        $self->{reload_error} = $out;
        return 0;
    }
    my $ok = ApiKeyTest::wait_until(sub {
        my @new = grep { !$old{$_} } $self->worker_pids;
        return 0 unless @new == $self->{workers};
        my @still = grep { $old{$_} } $self->worker_pids;
        return @still == 0;
    }, timeout => 10);
    unless ($ok) {
        $self->{reload_error} = "no new generation of workers within 10s";
        return 0;
    }
    my $gone = ApiKeyTest::wait_until(sub {
        !grep { $old{$_} } $self->all_worker_pids
    }, timeout => $o{old_exit_timeout} // 10);
    $self->{old_workers_left} = $gone ? [] : [ grep { $old{$_} } $self->all_worker_pids ];
    return 1;
}

sub reload_error { $_[0]{reload_error} }

# stop: graceful (QUIT) for up to 10 s, then TERM, then KILL.  Records
# ->{stop_seconds} and ->{stop_forced}.
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    $self->{pid_was} = $pid;
    my @workers = do { local $self->{pid} = $pid; map { $_->{pid} } $self->_children };
    my $t0 = time;
    kill 'QUIT', $pid;
    my $ok = ApiKeyTest::wait_until(sub { waitpid($pid, WNOHANG) == $pid },
                                    timeout => 10);
    $self->{stop_forced} = 0;
    unless ($ok) {
        $self->{stop_forced} = 1;
        kill 'TERM', $pid;
        $ok = ApiKeyTest::wait_until(sub { waitpid($pid, WNOHANG) == $pid },
                                     timeout => 3);
        unless ($ok) {
            kill 'KILL', $pid, @workers;
            waitpid $pid, 0;
        }
    }
    # workers are gone with their master, except after a KILL
    ApiKeyTest::wait_until(sub { !grep { kill 0, $_ } @workers }, timeout => 3);
    kill 'KILL', grep { kill 0, $_ } @workers;
    $self->{stop_seconds} = time - $t0;
    return 1;
}

sub stop_seconds { $_[0]{stop_seconds} }
sub stop_forced  { $_[0]{stop_forced} }

sub error_log  { ApiKeyTest::slurp("$_[0]{dir}/error.log") }
sub access_log { ApiKeyTest::slurp("$_[0]{dir}/access.log") }

# the current length of the error log: error_log_since($mark) returns what
# was written after it
sub log_mark { -s "$_[0]{dir}/error.log" // 0 }

sub error_log_since {
    my ($self, $mark) = @_;
    my $t = $self->error_log;
    return substr($t, $mark // 0);
}

# lines that show a crash or a serious problem (a sanitizer report written
# to stderr, as UBSan's are next to ASan, lands in the error log: nginx
# points its stderr there)
sub problems {
    my ($self, $text) = @_;
    $text //= $self->error_log;
    return grep { /exited on signal|\[alert\]|\[emerg\]|\[crit\]|$SAN_LINE/ }
        split /\n/, $text;
}

# $n->expect_problem(qr/.../ or 'text', ...): problems lines that match are
# expected (the final check ignores them; they need not occur)
sub expect_problem {
    my ($self, @e) = @_;
    push @{ $self->{expect_problems} }, @e;
    return $self;
}

# $n->expect_key_leak($key or qr/.../, ...): log lines with a raw key that
# match are expected (e.g. a configuration that logs a header on purpose)
sub expect_key_leak {
    my ($self, @e) = @_;
    push @{ $self->{expect_key_leaks} }, @e;
    return $self;
}

# lines of the error and access logs that hold a key made by the helpers
sub _key_leak_lines {
    my ($self) = @_;
    my $re = ApiKeyTest::_keys_re() or return ();
    my @bad;
    my $err = $self->error_log;
    if ($err =~ $re) {
        my @k = grep { index($err, $_) >= 0 } ApiKeyTest::tracked_keys();
        push @bad, map { "error.log: $_" } ApiKeyTest::key_leaks($err, @k);
    }
    my $acc = $self->access_log;
    if ($acc =~ $re) {
        push @bad, map { "access.log: $_" } grep { $_ =~ $re } split /\n/, $acc;
    }
    return grep { !ApiKeyTest::_matches_any($_, $self->{expect_key_leaks}) } @bad;
}

# sanitizer reports written by this nginx: list of [ file, text ]
sub sanitizer_reports {
    my ($self) = @_;
    return ApiKeyTest::_san_reports("$self->{dir}/san");
}

1;
