# SPDX-License-Identifier: BSD-2-Clause
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
# redis-server.  AK_KEEP=1 keeps the temporary directories (and names
# them on stderr at the end).
#
# Final checks: when the test calls done_testing (or at its end), every
# DNS server it started (ApiKeyTest::Dns) is stopped and must have run
# without dying or writing on stderr, every Sentinel set and Cluster
# (ApiKeyTest::Sentinel, ApiKeyTest::Cluster) must have no member that
# crashed or exited without being stopped or killed by the test, and every
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
#   Redis:   start(%o) port host url tls socket_path dir pid cmd try_cmd
#            client(%o) monitor pause resume pause_guard stop start_again
#            restart(tls => ...) tls_reload other_clients wait_clients log;
#            start(tls => {...}) runs it with TLS only (rediss://)
#   Tls:     ApiKeyTest::Tls->new: test certificates made with the openssl
#            CLI: ca server_cert server_key client_cert client_key other_ca
#            other_server_cert other_server_key cert_for(name, %o)
#            redis_tls(%o) dir
#   Dns:     ApiKeyTest::Dns->start(records => {name => addr}): a DNS server
#            on a loopback port (UDP and TCP): port addr resolver_line
#            set(name => addr | [addrs] | undef) set_mode lookup queries stop
#   Sentinel: ApiKeyTest::Sentinel->start(%o): master replica redises
#            sentinels master_addr failover wait_switch wait_replica
#            wait_ready kill_master kill_timeout report url
#            by_port problems stop
#   Cluster: ApiKeyTest::Cluster->start(masters => 3, replicas => 0|1):
#            nodes masters slot_map keyslot master_for_key master_for_slot
#            cmd_for_key url node_id migrate_slot finish_migration
#            kill_master wait_promoted wait_agree problems stop
#   FakeRedis: ApiKeyTest::FakeRedis->start(command => sub {...}, accept =>,
#            record =>): a fake Redis for replies a real one never gives:
#            port pid dir file stop; reply(\@argv, hgetall =>) take_command
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
#   gdb:     gdb_at (stop a process at a function, run gdb commands there,
#            detach) gdb_finish
#
# Files: this one holds the exported functions, the sanitizer set-up, the
# final checks and the clean-up; each class has its own file, loaded here:
#   ApiKeyTest/Nginx.pm              ApiKeyTest::Nginx
#   ApiKeyTest/Redis.pm              ApiKeyTest::Redis (a redis-server)
#   ApiKeyTest/Redis/Monitor.pm      ApiKeyTest::Redis::Monitor (->monitor)
#   ApiKeyTest/Redis/PauseGuard.pm   ApiKeyTest::Redis::PauseGuard (->pause_guard)
#   ApiKeyTest/RedisClient.pm        ApiKeyTest::RedisClient (RESP2 client,
#                                    plaintext or TLS)
#   ApiKeyTest/Tls.pm                ApiKeyTest::Tls (test certificates)
#   ApiKeyTest/Dns.pm                ApiKeyTest::Dns (a test DNS server)
#   ApiKeyTest/Sentinel.pm           ApiKeyTest::Sentinel (master, replica,
#                                    three sentinels)
#   ApiKeyTest/Cluster.pm            ApiKeyTest::Cluster (redis-cli
#                                    --cluster create)
#   ApiKeyTest/RedisError.pm         ApiKeyTest::RedisError (an error reply)
#   ApiKeyTest/Response.pm           ApiKeyTest::Response (an HTTP response)
#   ApiKeyTest/HTTPConn.pm           ApiKeyTest::HTTPConn (keep-alive)
#   ApiKeyTest/Batch.pm              ApiKeyTest::Batch (http_batch)
# and helpers for groups of tests, which a test file uses itself:
#   ApiKeyTest/Events.pm (t/1*), ApiKeyTest/Cli.pm (t/2*),
#   ApiKeyTest/Policy.pm (t/3*), ApiKeyTest/Held.pm (requests held by
#   their upstream: t/89-*)

use strict;
use warnings;
use v5.36;

use Exporter 'import';
use Carp qw(croak confess);
use Digest::SHA ();
use Compress::Zlib ();
use Fcntl ();
use File::Temp ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use IO::Select;
use POSIX qw(:sys_wait_h);
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use Errno qw(EAGAIN EWOULDBLOCK EINTR EINPROGRESS);

# the classes, one file each under t/lib/ApiKeyTest/ (see Files above)
use ApiKeyTest::Response;
use ApiKeyTest::HTTPConn;
use ApiKeyTest::Batch;
use ApiKeyTest::RedisError;
use ApiKeyTest::RedisClient;
use ApiKeyTest::Redis;
use ApiKeyTest::Redis::Monitor;
use ApiKeyTest::Redis::PauseGuard;
use ApiKeyTest::Nginx;
use ApiKeyTest::Tls;
use ApiKeyTest::Dns;
use ApiKeyTest::Sentinel;
use ApiKeyTest::Cluster;

our @EXPORT = qw(
    module_path require_module free_port wait_until slurp spew tmpdir
    sha256_hex hmac_sha256_hex crc32 base62 checksum_key random_key
    random_base62 add_key key_hash commandstats hgetall_calls reset_stats
    http_get http_request http_batch http_concurrent http_open_raw
    parse_error_log key_leaks echo_server CORE_DEBUG_PREFIXES
    track_key tracked_keys run_nginx CORE_REQUEST_DEBUG gdb_at gdb_finish
    config_refused
);

our $NGINX = $ENV{AK_NGINX} // '/usr/sbin/nginx';
our $REDIS_SERVER = $ENV{AK_REDIS_SERVER} // '/usr/bin/redis-server';

my $OWNER_PID = $$;
our (@NGINX, @REDIS);   # everything started by this process (Nginx.pm, Redis.pm)
our @CHECKED;           # nginx -t runs (check_config), for sanitizer reports

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
    _report_kept();
    _release_ports();
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
    # before the clean-up: a member that exited by itself is still visible
    my @sets = map { [ ref $_, $_->problems ] }
        @ApiKeyTest::Sentinel::SETS, @ApiKeyTest::Cluster::SETS;
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
    $i = 0;
    for my $d (@ApiKeyTest::Dns::SERVERS) {
        $i++;
        my $p = $d->stop;    # already stopped by _cleanup_all: its findings
        next if $quiet && !length $p;
        $tb->ok(!length $p, "final check of DNS server $i: ran cleanly");
        $tb->diag($p) if length $p;
    }
    for my $s (@sets) {
        my ($what, $p) = @$s;
        next if $quiet && !length $p;
        $tb->ok(!length $p, "final check of $what: no member crashed or exited");
        $tb->diag($p) if length $p;
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

# With AK_KEEP, say where the kept directories are (on stderr, as TAP
# comments): one per nginx and per redis-server the test started.
sub _report_kept {
    return unless $ENV{AK_KEEP} && $$ == $OWNER_PID;
    require File::Spec;
    my $i = 0;
    print STDERR "# AK_KEEP: nginx " . ++$i . ": $_->{dir}\n" for @NGINX;
    $i = 0;
    print STDERR "# AK_KEEP: redis " . ++$i . ": $_->{dir}\n" for @REDIS;
    print STDERR "# AK_KEEP: nginx -t and failed starts: " . scalar(@CHECKED)
        . " more under " . File::Spec->tmpdir . "/aktest-*\n" if @CHECKED;
    print STDERR "# AK_KEEP: sanitizer reports of the programs run: "
        . "$PROC_SAN_DIR\n" if $PROC_SAN_DIR;
}

sub _cleanup_all {
    return unless $$ == $OWNER_PID;
    # resume first: a stopped redis cannot be shut down and nginx workers
    # waiting on it would delay their graceful exit
    for my $r (@REDIS) { eval { $r->resume if $r->{paused} } }
    for my $n (@NGINX) { eval { $n->stop } }
    for my $r (@REDIS) { eval { $r->stop } }
    for my $d (@ApiKeyTest::Dns::SERVERS) { eval { $d->stop } }
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

# A port is closed again before nginx binds it, so the kernel may hand the
# same one out twice: two placeholders of one config (PORT and PORT_UP) would
# then share a listening socket, and nginx accepts that silently (the proxy
# would loop back into the server under test).  Never return a port twice.
#
# Test files run in parallel (make test: prove -j), so a port is also
# claimed across processes: a file named after it in $PORT_DIR
# (AK_PORT_DIR, default /tmp/apikey-test-ports), created exclusively and
# holding the claiming process's pid.  A claim whose process is gone is
# taken over; the process's own claims are removed at its end.
my %PORT_GIVEN;
my $PORT_DIR = $ENV{AK_PORT_DIR} // '/tmp/apikey-test-ports';
my $PORT_OWNER = $$;

sub _claim_port {
    my ($p) = @_;
    my $f = "$PORT_DIR/$p";
    for (1 .. 2) {
        if (sysopen(my $fh, $f, Fcntl::O_WRONLY() | Fcntl::O_CREAT() | Fcntl::O_EXCL(), 0644)) {
            print $fh "$$\n";
            close $fh;
            return 1;
        }
        return 0 unless $!{EEXIST};
        my $pid = slurp($f);
        $pid = $1 if defined $pid && $pid =~ /^(\d+)/;
        # being written (empty), or held by a live process: not ours
        return 0 if !$pid || $pid == $$ || kill(0, $pid) || $!{EPERM};
        unlink $f;    # its process is gone
    }
    return 0;
}

sub _release_ports {
    return unless $$ == $PORT_OWNER;
    for my $p (keys %PORT_GIVEN) {
        my $f = "$PORT_DIR/$p";
        my $pid = slurp($f);
        unlink $f if defined $pid && $pid =~ /^$$\b/;
    }
}

sub free_port {
    unless (-d $PORT_DIR) {
        mkdir $PORT_DIR;
        chmod 01777, $PORT_DIR;
    }
    for (1 .. 200) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
            Listen => 1, ReuseAddr => 1,
        ) or die "cannot bind a free port: $!";
        my $p = $s->sockport;
        close $s;
        next if $PORT_GIVEN{$p};
        next unless _claim_port($p);
        $PORT_GIVEN{$p} = 1;
        return $p;
    }
    die "no free port not already given out after 200 tries";
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

# gdb_at($pid, $out, $function, @commands): gdb (/usr/bin/gdb) attached to
# process $pid, its output in $out, stops it at the next call of $function,
# runs @commands there (each a gdb command, as -ex) and detaches.  Returns
# (gdb's pid, true when the breakpoint was set within 20 s: until then the
# process is stopped, and its next call of $function waits for gdb).
# gdb_finish($gpid): waits (20 s) for gdb to be done, else kills it.
sub gdb_at {
    my ($pid, $out, $function, @commands) = @_;
    my $gpid = fork // die "fork: $!";
    if ($gpid == 0) {
        open STDOUT, '>', $out or POSIX::_exit(1);
        open STDERR, '>&', \*STDOUT;
        exec '/usr/bin/gdb', '-nx', '-batch', '-p', $pid,
            '-ex', 'set pagination off', '-ex', 'set confirm off',
            '-ex', "break $function", '-ex', 'continue',
            (map { ('-ex', $_) } @commands), '-ex', 'detach'
            or POSIX::_exit(127);
    }
    my $ready = wait_until(sub { slurp($out) =~ /^Breakpoint 1 at /m },
                           timeout => 20, interval => 0.1);
    return ($gpid, $ready);
}

sub gdb_finish {
    my ($gpid) = @_;
    my $done = wait_until(sub { waitpid($gpid, POSIX::WNOHANG()) == $gpid },
                          timeout => 20);
    kill 'KILL', $gpid unless $done;
    waitpid $gpid, 0 unless $done;
    return $done;
}

# nginx -t on the http block $http must fail with an [emerg] whose text
# matches $re (a string or a qr//) and that names the config file and the
# line marked "# BAD" (two tests; the first named $name).  %o goes to
# check_config (vars => ...).  The check_config result, for more checks.
sub config_refused {
    my ($http, $re, $name, %o) = @_;
    require Test::More;
    my $c = ApiKeyTest::Nginx->check_config(http => $http, %o);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok(!$c->{ok}, $name) or return $c;
    my $line = ApiKeyTest::Nginx::line_of($c, qr/# BAD/);
    Test::More::like($c->{output},
        qr/\[emerg\].*$re.* in \Q$c->{conf_path}\E:$line\b/,
        "... the message and file:line $line");
    return $c;
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

# _connect(PORT, TIMEOUT, FROM): to 127.0.0.1:PORT, from the loopback
# address FROM (another 127.x.y.z: a second client address) when given
sub _connect {
    my ($port, $timeout, $from) = @_;
    return IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => $timeout // 5,
        defined $from ? (LocalAddr => $from) : (),
    );
}

# http_request($port, $path, method =>, headers => {..} | [k, v, ...],
#              body =>, timeout => 10, from => '127.0.0.2'): a Response
# (status 0 and ->error on a connection error or timeout); from: the
# client's loopback address (default 127.0.0.1)
sub http_request {
    my ($port, $path, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $t0 = time;
    my $s = _connect($port, $timeout, $o{from})
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

1;
