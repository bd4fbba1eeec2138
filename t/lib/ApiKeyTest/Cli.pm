# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Cli;

# Helpers for the apikeyctl tests, on top of ApiKeyTest (which starts
# redis-server and nginx): a runner for the CLI that captures exit code,
# stdout, stderr and run time, and pub/sub, pipeline and SCAN helpers for
# ApiKeyTest::RedisClient connections.
#
#   my $r = run_cli(args => [...], stdin => "...", env => { ... });
#   $r->{exit}, $r->{out}, $r->{err}, $r->{secs}
#   subscribe($client, 'apikey:events'); next_message($client, 2)
#   pipeline($client, [cmd...], [cmd...]); all_keys($client, 'apikey:*')
#   my $p = scan_repeat_proxy($redis_port); $p->{port}  (SCAN repeats names)

use strict;
use warnings;

use Exporter 'import';
use Cwd ();
use File::Temp ();
use POSIX ();
use Time::HiRes ();

use ApiKeyTest ();

our @EXPORT_OK = qw(cli_path run_cli key_checksum_ok subscribe next_message
                    messages pipeline all_keys hgetall everything_in
                    scan_repeat_proxy);

sub cli_path {
    my $p = $ENV{AK_CLI};
    unless ($p) {
        my $top = __FILE__ =~ s{/t/lib/ApiKeyTest/Cli\.pm$}{}r;
        $top = '.' if $top eq __FILE__;
        $p = "$top/build/apikeyctl";
    }
    return $p =~ m{^/} ? $p : Cwd::getcwd() . "/$p";
}

# run_cli(args => [...], stdin => '...', env => {...}, timeout => 60,
#         stdout => PATH (instead of capturing it))
# Returns { exit, out, err, secs, signal }.  APIKEY_* variables of the
# caller's environment are removed first, so that only `env` counts.
sub run_cli {
    my (%o) = @_;
    my $dir = File::Temp->newdir(CLEANUP => 1);
    my ($in, $out, $err) = map { "$dir/$_" } qw(in out err);

    ApiKeyTest::spew($in, $o{stdin} // '');

    my $t0 = Time::HiRes::time();
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        delete $ENV{$_} for grep { /^APIKEY_/ } keys %ENV;
        my $env = $o{env} || {};
        $ENV{$_} = $env->{$_} for keys %$env;
        open STDIN, '<', $in or POSIX::_exit(126);
        open STDOUT, '>', $o{stdout} // $out or POSIX::_exit(126);
        open STDERR, '>', $err or POSIX::_exit(126);
        exec { cli_path() } cli_path(), @{ $o{args} || [] }
            or POSIX::_exit(127);
    }

    my $limit = $o{timeout} // 60;
    my $st;
    while (1) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid) { $st = $?; last }
        if (Time::HiRes::time() - $t0 > $limit) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $st = $?;
            last;
        }
        Time::HiRes::sleep(0.002);
    }

    return {
        exit   => $st & 127 ? -1 : $st >> 8,
        signal => $st & 127,
        out    => ApiKeyTest::slurp($out),
        err    => ApiKeyTest::slurp($err),
        secs   => Time::HiRes::time() - $t0,
    };
}

# PREFIX_ + 30 base62 + 6 base62 of the CRC-32 of everything before.
sub key_checksum_ok {
    my ($key, $prefix) = @_;
    $prefix //= 'ak';
    return 0 unless defined $key
        && $key =~ /^\Q$prefix\E_([0-9A-Za-z]{30})[0-9A-Za-z]{6}\z/;
    return ApiKeyTest::checksum_key($prefix, $1) eq $key ? 1 : 0;
}

# --- on ApiKeyTest::RedisClient connections --------------------------------

sub subscribe {
    my ($c, @channels) = @_;
    $c->send_only('SUBSCRIBE', @channels);
    $c->read_reply for @channels;
}

# The next pub/sub message as [channel, payload]; undef after $timeout s.
sub next_message {
    my ($c, $timeout) = @_;
    my $r = eval { $c->read_reply(timeout => $timeout) };
    return undef unless ref $r eq 'ARRAY' && ($r->[0] // '') eq 'message';
    return [ $r->[1], $r->[2] ];
}

# Every message that arrives within $timeout seconds.
sub messages {
    my ($c, $timeout) = @_;
    my @m;
    my $end = Time::HiRes::time() + $timeout;
    while ((my $left = $end - Time::HiRes::time()) > 0) {
        my $m = next_message($c, $left) or last;
        push @m, $m;
    }
    return @m;
}

# pipeline($c, [cmd...], ...): every command sent before any reply is read.
sub pipeline {
    my ($c, @cmds) = @_;
    $c->send_only(@$_) for @cmds;
    return map { $c->read_reply } @cmds;
}

# Every name matching a pattern, by SCAN.
sub all_keys {
    my ($c, $pattern) = @_;
    my ($cursor, %k) = (0);
    do {
        my $r = $c->cmd('SCAN', $cursor, 'MATCH', $pattern // '*',
                        'COUNT', 1000);
        $cursor = $r->[0];
        $k{$_} = 1 for @{ $r->[1] };
    } while ($cursor ne '0');
    return sort keys %k;
}

sub hgetall {
    my ($c, $name) = @_;
    return { @{ $c->cmd('HGETALL', $name) } };
}

# Every name and every value (of hashes and strings) in the database.
sub everything_in {
    my ($c) = @_;
    my $all = '';
    for my $k (all_keys($c, '*')) {
        $all .= "$k\n";
        my $type = $c->cmd('TYPE', $k);
        if ($type eq 'hash') {
            $all .= join("\n", @{ $c->cmd('HGETALL', $k) }) . "\n";
        } elsif ($type eq 'string') {
            $all .= ($c->cmd('GET', $k) // '') . "\n";
        }
    }
    return $all;
}

# --- a Redis proxy whose SCAN returns every name twice ---------------------
#
# SCAN may return a name more than once (when the table is rehashed during
# the iteration).  This proxy makes that happen every time: each SCAN page
# also carries the names of the page before it.  Everything else passes
# through unchanged; pipelined commands are fine.  One client at a time.
# Returns { port => P, pid => PID }; stop with stop_proxy($p).

sub _resp_parse {
    my ($buf, $pos) = @_;
    my $e = index($$buf, "\r\n", $pos);
    return if $e < 0;
    my $t = substr($$buf, $pos, 1);
    my $l = substr($$buf, $pos + 1, $e - $pos - 1);
    my $p = $e + 2;
    if ($t eq '+' || $t eq '-' || $t eq ':') {
        return ([$t, $l], $p);
    }
    if ($t eq '$') {
        return (['$', undef], $p) if $l < 0;
        return if length($$buf) < $p + $l + 2;
        return (['$', substr($$buf, $p, $l)], $p + $l + 2);
    }
    if ($t eq '*') {
        return (['*', undef], $p) if $l < 0;
        my @a;
        for (1 .. $l) {
            my ($v, $np) = _resp_parse($buf, $p) or return;
            push @a, $v;
            $p = $np;
        }
        return (['*', \@a], $p);
    }
    die "proxy: bad RESP type '$t'";
}

sub _resp_encode {
    my ($v) = @_;
    my ($t, $x) = @$v;
    return "$t$x\r\n" if $t eq '+' || $t eq '-' || $t eq ':';
    if ($t eq '$') {
        return "\$-1\r\n" unless defined $x;
        return '$' . length($x) . "\r\n$x\r\n";
    }
    return "*-1\r\n" unless defined $x;
    return '*' . scalar(@$x) . "\r\n" . join '', map { _resp_encode($_) } @$x;
}

sub scan_repeat_proxy {
    my ($redis_port) = @_;
    require IO::Socket::INET;
    require IO::Select;
    my $ls = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                   LocalPort => 0, Proto => 'tcp',
                                   ReuseAddr => 1) or die "proxy: $!";
    my $port = $ls->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $ls;
        return { port => $port, pid => $pid };
    }

    local $SIG{ALRM} = 'DEFAULT';
    while (my $c = $ls->accept) {
        my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $redis_port, Proto => 'tcp')
            or POSIX::_exit(1);
        my ($cbuf, $ubuf, @pending, $prev) = ('', '');
        my $sel = IO::Select->new($c, $u);
        LOOP: while (1) {
            for my $h ($sel->can_read) {
                my $buf = '';
                my $n = sysread($h, $buf, 65536);
                last LOOP unless $n;
                if ($h == $c) {
                    $cbuf .= $buf;
                    while (my ($v, $p) = _resp_parse(\$cbuf, 0)) {
                        push @pending, uc($v->[1][0][1] // '');
                        substr($cbuf, 0, $p, '');
                    }
                    syswrite($u, $buf);
                } else {
                    $ubuf .= $buf;
                    my $out = '';
                    while (my ($v, $p) = _resp_parse(\$ubuf, 0)) {
                        substr($ubuf, 0, $p, '');
                        my $cmd = shift @pending // '';
                        if ($cmd eq 'SCAN' && $v->[0] eq '*') {
                            my $names = $v->[1][1][1];
                            my @now = @$names;
                            push @$names, @{ $prev // [] };
                            $prev = \@now;
                        }
                        $out .= _resp_encode($v);
                    }
                    my $off = 0;
                    while ($off < length $out) {
                        my $w = syswrite($c, $out, length($out) - $off, $off);
                        last LOOP unless defined $w;
                        $off += $w;
                    }
                }
            }
        }
        close $c;
        close $u;
    }
    POSIX::_exit(0);
}

sub stop_proxy {
    my ($p) = @_;
    kill 'TERM', $p->{pid};
    waitpid($p->{pid}, 0);
}

1;
