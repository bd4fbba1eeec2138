# SPDX-License-Identifier: BSD-2-Clause
# make run / make stop: started in the background on free ports (RUN_DIR a
# temporary directory), the demo key it prints is served; a taken port is
# refused before anything starts, naming the variable to change, without the
# "listening" banner; the stop command it prints stops nginx (master and
# workers) and redis-server and ends make run; Ctrl-C (SIGINT to make run's
# process group, as a terminal sends it) does the same.
use strict;
use warnings;
use Test::More;
use POSIX qw(:sys_wait_h setsid);
use Time::HiRes qw(sleep);
use IO::Socket::INET;
use lib 't/lib';
use ApiKeyTest;

require_module();
plan skip_all => 'make run starts the stock nginx without the sanitizer runtimes'
    if ApiKeyTest::sanitizing();
plan skip_all => 'make run needs make, curl and redis-server'
    if system('command -v make curl redis-server >/dev/null') != 0;

my $build = $ENV{AK_BUILD} // 'build';
# make's variables of an enclosing make test must not reach this one
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};

my @running;    # [pid of make run, RUN_DIR]
END {
    for (@running) {
        system("make -s stop RUN_DIR=$_->[1] >/dev/null 2>&1");
        kill 'KILL', -$_->[0];
    }
}

sub make_run {
    my (%o) = @_;
    my $dir = $o{dir} // tmpdir() . '/run';
    my $out = tmpdir() . '/make-run.out';
    my @vars = ("BUILD=$build", "RUN_DIR=$dir", map { "$_=$o{$_}" }
                grep { defined $o{$_} } qw(PORT APP_PORT REDIS_PORT));
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setsid();    # its own process group, like a job in a terminal
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec('make', '-s', 'run', @vars) or POSIX::_exit(127);
    }
    push @running, [$pid, $dir];
    return { pid => $pid, dir => $dir, out => $out };
}

sub output { slurp($_[0]{out}) // '' }

# the exit status of make run, once it has exited (bounded), else undef
sub finished {
    my ($run, $timeout) = @_;
    my $st;
    wait_until(sub {
        my $w = waitpid($run->{pid}, WNOHANG);
        # the exit code, or 128 + the signal that ended it
        $st = ($? & 127) ? 128 + ($? & 127) : $? >> 8 if $w == $run->{pid};
        return $w == $run->{pid} || $w == -1;
    }, timeout => $timeout // 15);
    @running = grep { $_->[0] != $run->{pid} } @running if defined $st;
    return $st;
}

sub alive { my ($p) = @_; return -d "/proc/$p" && (slurp("/proc/$p/stat") // '') !~ /^\d+ \(.*\) Z/ }

# pgrep -f, without a shell (whose command line would match)
sub pgrep {
    open my $fh, '-|', 'pgrep', '-f', $_[0] or die "pgrep: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

sub listening {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1) or return 0;
    close $s;
    return 1;
}

sub started {
    my ($run) = @_;
    my $ok = wait_until(sub {
        return 1 if output($run) =~ /^Stop: /m;
        return waitpid($run->{pid}, WNOHANG) == $run->{pid} ? 'dead' : 0;
    }, timeout => 90);
    return $ok && $ok ne 'dead';
}

my ($port, $rport) = (free_port(), free_port());
my $app = free_port();
my $run = make_run(PORT => $port, APP_PORT => $app, REDIS_PORT => $rport);
ok(started($run), 'make run started') or diag(output($run));
my $text = output($run);

like($text, qr/listening on http:\/\/127\.0\.0\.1:$port\b/, 'banner names the port');
my ($key) = $text =~ /^A demo key.*\n\n    (\S+)$/m;
ok(defined $key, 'a demo key is printed') or diag($text);
track_key($key) if defined $key;
my ($master, $workers, $redis) =
    $text =~ /^PIDs: nginx master (\d+), workers ([\d ]+); redis-server (\d+)$/m;
ok($master && $redis, 'the PIDs are printed') or diag($text);
my @workers = split ' ', $workers // '';
is(scalar @workers, 2, 'two nginx workers');
my ($stop) = $text =~ /^Stop: (make stop[^\n]*?)\s+\(from any shell/m;
is($stop, "make stop RUN_DIR=$run->{dir}", 'one stop command, naming the RUN_DIR');
ok(alive($_), "process $_ runs") for grep { defined } $master, @workers, $redis;

my $res = http_get($port, '/', headers => { 'X-API-Key' => $key // 'x' });
is($res->status, 200, 'the demo key is served');
like($res->body, qr/^hello demo \(plan free\)/, 'through to the application');
is(http_get($port, '/')->status, 401, 'no key: 401');
ok(!defined finished($run, 0.5), 'make run stays in the foreground');

# a taken port: refused before anything starts, naming the variable
for my $case (["PORT", { PORT => $port, APP_PORT => free_port(), REDIS_PORT => free_port() }],
              ["REDIS_PORT", { PORT => free_port(), APP_PORT => free_port(), REDIS_PORT => $rport }],
              ["APP_PORT", { PORT => free_port(), APP_PORT => $app, REDIS_PORT => free_port() }]) {
    my ($var, $ports) = @$case;
    my $other = make_run(%$ports);
    my $st = finished($other, 60);
    my $out = output($other);
    ok(defined $st && $st != 0, "$var taken: make run fails") or diag($out);
    like($out, qr/port $ports->{$var} on 127\.0\.0\.1 is in use \($var=$ports->{$var}\); choose a free one: make run $var=\d+/,
         "$var taken: the message names $var");
    unlike($out, qr/listening|demo key|^PIDs:/m, "$var taken: no banner");
    ok(!-e "$other->{dir}/redis.pid" && !-e "$other->{dir}/nginx.pid", "$var taken: nothing started");
}

# the same RUN_DIR again: refused, naming the stop command
{
    my $again = make_run(dir => $run->{dir}, PORT => free_port(), APP_PORT => free_port(),
                         REDIS_PORT => free_port());
    my $st = finished($again, 60);
    ok(defined $st && $st != 0, 'a second make run in the same RUN_DIR fails');
    like(output($again), qr/already running .*make stop/, '... saying how to stop the first');
}

# make stop from another "shell"
my $out = `$stop 2>&1`;
is($?, 0, 'make stop succeeds') or diag($out);
like($out, qr/stopped: nginx \(PID $master\), redis-server \(PID $redis\)/, 'make stop says what it stopped');
my $st = finished($run, 15);
is($st, 0, 'make run ended (exit 0)') or diag(output($run));
like(output($run), qr/make run: stopped/, 'make run says so');
ok(!alive($_), "process $_ is gone") for grep { defined } $master, @workers, $redis;
is(pgrep("redis-server 127.0.0.1:$rport"), '', 'no redis-server left (pgrep)');
is(pgrep($run->{dir}), '', 'no nginx of RUN_DIR left (pgrep)');
ok(!listening($port) && !listening($rport) && !listening($app), 'the ports are free again');
$out = `$stop 2>&1`;
like($out, qr/nothing is running/, 'make stop again: nothing to stop');

# Ctrl-C: SIGINT to make run's process group
{
    my ($p, $rp) = (free_port(), free_port());
    my $r2 = make_run(PORT => $p, APP_PORT => free_port(), REDIS_PORT => $rp);
    ok(started($r2), 'make run started again') or diag(output($r2));
    my ($m2, $w2, $red2) = output($r2) =~ /^PIDs: nginx master (\d+), workers ([\d ]+); redis-server (\d+)$/m;
    kill 'INT', -$r2->{pid};
    my $st2 = finished($r2, 15);
    ok(defined $st2 && $st2 != 0, 'Ctrl-C ends make run');
    like(output($r2), qr/stopped: nginx \(PID \d+\), redis-server/, 'Ctrl-C stops both');
    ok(!alive($_), "process $_ is gone after Ctrl-C") for grep { defined } $m2, split(' ', $w2 // ''), $red2;
    ok(!listening($p) && !listening($rp), 'the ports are free after Ctrl-C');
}

done_testing();
