# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Chaos;

# Faults injected under load (make chaos, bench/chaos.pl; t/70-74): a
# redis-server with key records, an nginx with the module (two workers, a
# main zone and a zone of the smallest allowed size), and a load of
# keep-alive connections (ApiKeyTest::Load) sending three kinds of request:
#
#   cached    valid keys requested before the scenario (in the cache); some
#             have a quota (leases: Redis writes)
#   walk      valid keys never requested before (each a cache miss: a Redis
#             read); 200 expected
#   unknown   keys Redis does not have (a miss each); 401 unknown expected
#
#   my $c = ApiKeyTest::Chaos->new(conns => 64, walk => 200_000);
#   my $row = $c->scenario('redis SIGSTOP 5s', fault => sub { ...; $t_end });
#   print $c->table;
#
# Each scenario runs the load for `pre` seconds, injects its fault (the sub
# returns the time the fault ended), runs the load `post` seconds more, and
# then checks, as Test::More tests:
#   - no request for a cached valid key failed (anything but a 200), except
#     connection errors the scenario declares (a killed worker's);
#   - no valid key was answered 401 (unknown or otherwise) outside the
#     windows a scenario declares (Redis restarted empty): a Redis error is
#     never an unknown key;
#   - recovery: the last unexpected answer of any kind came at most 2 s
#     after the fault ended;
#   - no [alert], [crit], [emerg] or signal exit in the error log beyond the
#     lines the scenario declares;
#   - once the load stops: each worker's open fds back to the baseline (at
#     most +1 per worker), its private memory (RssAnon, /proc/PID/status:
#     the zones are shared memory and not counted) at most
#     max(2 MiB, 10%) above the baseline's largest worker, and the module's
#     Redis connections back to 2 per worker, within 5 s.
# The baseline is taken after a warm-up load of the same mix.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use Digest::SHA qw(sha256_hex);
use Carp qw(croak);
use Test::More;
use ApiKeyTest::Load;

our $RECOVERY_MAX = 2;          # seconds after the fault ends
our $FD_SLACK_PER_WORKER = 1;
our $RSS_SLACK_MIN = 2 * 1024;  # KiB
our $RSS_SLACK_PCT = 10;

sub config {
    return <<'EOT';
    api_key_zone  keys:64m ttl=60s negative_ttl=1s quota_offline=1000000;
    api_key_zone  tiny:%%TINY%% ttl=60s negative_ttl=1s quota_offline=1000000;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s connect_timeout=500ms;
    keepalive_requests 1000000;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            empty_gif;
        }
        location /tiny/ {
            api_key tiny;
            empty_gif;
        }
    }
EOT
}

sub _resp {
    my @a = @_;
    my $s = '*' . @a . "\r\n";
    $s .= '$' . length($_) . "\r\n$_\r\n" for @a;
    return $s;
}

sub cached_key { sprintf 'chaos_c_%04d', $_[0] }
sub quota_key  { sprintf 'chaos_q_%04d', $_[0] }
sub walk_key   { sprintf 'chaos_w_%08d', $_[0] }

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        conns => $o{conns} // 64,
        walk => $o{walk} // 20_000,
        ncached => $o{cached} // 24,
        nquota => $o{quota} // 8,
        workers => $o{workers} // 2,
        pre => $o{pre} // 1.5,
        rate => $o{rate} // 0,
        post => $o{post} // 3,
        walk_next => 0,
        rows => [],
        uniq => 0,
    }, $class;
    $self->{r} = ApiKeyTest::Redis->start(config => ['maxclients 10000']);
    $self->_write_records;
    $self->restore_records;
    $self->{n} = ApiKeyTest::Nginx->start(http => config(), workers => $self->{workers},
        error_level => 'info', redis => $self->{r},
        redis_clients => 2 * $self->{workers},
        vars => { REDIS => $self->{r}->port, TINY => $o{tiny} // '41k' });
    $self->{cached} = [ (map { cached_key($_) } 0 .. $self->{ncached} - 1),
                        (map { quota_key($_) } 0 .. $self->{nquota} - 1) ];
    $self->warm($_) for '/', '/tiny/';
    # the baseline: after a warm-up load of the same mix
    my $l = ApiKeyTest::Load->start(port => $self->port, conns => $self->{conns},
                                    duration => $o{warmup} // 2, rate => $self->{rate},
                                    classes => $self->classes);
    my $res = $l->wait;
    $self->{walk_next} += ApiKeyTest::Load::count($res, 'walk');
    $self->{warmup} = $res;
    sleep 0.5;
    $self->{base} = $self->measure;
    note sprintf 'baseline: %d requests in the warm-up; workers: fds %s, RssAnon %s KiB; '
        . 'Redis connections %d', $res->{requests},
        join('/', @{ $self->{base}{fds} }), join('/', @{ $self->{base}{rss} }),
        $self->{base}{redis};
    return $self;
}

sub redis { $_[0]{r} }
sub nginx { $_[0]{n} }
sub port  { $_[0]{n}->port }

sub _write_records {
    my ($self) = @_;
    my $f = ApiKeyTest::tmpdir() . '/records.resp';
    open my $fh, '>:raw', $f or die "$f: $!";
    for my $i (0 .. ($self->{ncached} // 24) - 1) {
        my $k = cached_key($i);
        print $fh _resp('HSET', 'apikey:' . sha256_hex($k), owner => "c$i", plan => 'chaos');
    }
    for my $i (0 .. ($self->{nquota} // 8) - 1) {
        my $k = quota_key($i);
        print $fh _resp('HSET', 'apikey:' . sha256_hex($k), owner => "q$i",
                        quota => '1000000000/day');
    }
    my $buf = '';
    for my $i (0 .. $self->{walk} - 1) {
        $buf .= _resp('HSET', 'apikey:' . sha256_hex(walk_key($i)), owner => "w$i");
        if (length $buf > 1 << 20) { print $fh $buf; $buf = '' }
    }
    print $fh $buf;
    close $fh or die "$f: $!";
    $self->{resp} = $f;
}

# every record written again (redis-cli --pipe)
sub restore_records {
    my ($self) = @_;
    my $port = $self->{r}->port;
    my $out = `redis-cli -p $port --pipe < $self->{resp} 2>&1`;
    croak "redis-cli --pipe failed: $out" if $? || $out !~ /errors: 0\b/;
}

sub warm {
    my ($self, $path) = @_;
    for my $k (@{ $self->{cached} }) {
        my $res = ApiKeyTest::http_get($self->port, $path, headers => { 'X-API-Key' => $k });
        croak "warm-up of a cached key on $path: " . $res->status
            unless $res->status == 200;
    }
}

# the default mix: 2 cached : 1 walk : 1 unknown
sub classes {
    my ($self, %o) = @_;
    my $walk0 = \$self->{walk_next};
    my $wmax = $self->{walk};
    my $u = $$ . '_' . $self->{uniq}++;
    my $path = $o{path} // '/';
    return [
        { name => 'cached', weight => 2, path => $path, keys => $self->{cached}, ok => ['200'] },
        { name => 'walk', weight => 1, path => $path, ok => ['200'],
          gen => sub ($i) { walk_key(($$walk0 + $i) % $wmax) } },
        { name => 'unknown', weight => 1, path => $path, ok => ['401 unknown'],
          gen => sub ($i) { "chaos_u_${u}_$i" } },
    ];
}

# fds and private resident memory (KiB) of each worker, Redis connections
sub measure {
    my ($self) = @_;
    my (@fds, @rss);
    for my $p ($self->{n}->worker_pids) {
        opendir my $d, "/proc/$p/fd" or next;
        push @fds, scalar grep { /^\d+$/ } readdir $d;
        my ($kb) = ApiKeyTest::slurp("/proc/$p/status") =~ /^RssAnon:\s+(\d+)/m;
        push @rss, $kb // 0;
    }
    my $redis = eval { scalar $self->{r}->other_clients } // -1;
    return { fds => \@fds, rss => \@rss, redis => $redis };
}

sub _sum { my $s = 0; $s += $_ for @_; $s }
sub _max { my $m = 0; for (@_) { $m = $_ if $_ > $m } $m }

# true when the workers are back to the baseline; $why says what is not
sub _back_to_base {
    my ($self, $m, $why) = @_;
    my $b = $self->{base};
    my @w;
    push @w, "workers " . scalar(@{ $m->{fds} }) . " (want $self->{workers})"
        if @{ $m->{fds} } != $self->{workers};
    my $fdmax = _sum(@{ $b->{fds} }) + $FD_SLACK_PER_WORKER * $self->{workers};
    push @w, "fds " . _sum(@{ $m->{fds} }) . " > $fdmax" if _sum(@{ $m->{fds} }) > $fdmax;
    my $bm = _max(@{ $b->{rss} });
    my $slack = $bm * $RSS_SLACK_PCT / 100;
    $slack = $RSS_SLACK_MIN if $slack < $RSS_SLACK_MIN;
    my $rmax = int($bm + $slack);
    # under ASan freed memory sits in its quarantine (up to 256 MB) and
    # shadow memory grows with use: memory is checked in the plain build only
    # (make test, make chaos, make soak), fds and connections in both
    push @w, "RssAnon " . _max(@{ $m->{rss} }) . " KiB > $rmax"
        if _max(@{ $m->{rss} }) > $rmax && $ApiKeyTest::SANITIZE !~ /address/;
    push @w, "Redis connections $m->{redis} (want " . 2 * $self->{workers} . ")"
        if $m->{redis} != 2 * $self->{workers};
    $$why = join '; ', @w;
    return !@w;
}

# $c->scenario($name, fault => sub ($c) { ... return $t_end }, pre =>, post =>,
#     classes => [...] (default: the mix), until_done => [class, secs],
#     allow_cached => qr/^err:/ (cached-key answers that are not failures),
#     allow_401 => sub ($t) { true when a valid key's 401 at $t is expected },
#     expect => [ qr/.../ ] (error log lines), no_load => 1 (the fault sub
#     runs alone and returns a result hash itself))
sub scenario {
    my ($self, $name, %o) = @_;
    my $n = $self->{n};
    my $mark = $n->log_mark;
    my $pre = $o{pre} // $self->{pre};
    my $post = $o{post} // $self->{post};
    my ($res, $t_end, $t_fault);
    my $classes = $o{classes} // $self->classes(path => $o{path});
    my $l = ApiKeyTest::Load->start(port => $self->port, conns => $o{conns} // $self->{conns},
        duration => $o{duration} // 600, classes => $classes,
        rate => $o{rate} // $self->{rate},
        until_done => $o{until_done});
    sleep $pre;
    $t_fault = time;
    $t_end = $o{fault}->($self, $l);
    if ($o{until_done}) {
        $res = $l->wait;
        $t_end = $res->{until_done_at} // $t_end;
    } else {
        sleep $post;
        $res = $l->stop->wait;
    }
    # the walk keys used are not used again (they are cached now)
    $self->{walk_next} += ApiKeyTest::Load::count($res, 'walk');

    my $allow_c = $o{allow_cached};
    my $allow_401 = $o{allow_401} // sub { 0 };
    my (@bad_cached, $allowed_cached, @unknown_by_error, $last_bad, @other_bad);
    $allowed_cached = 0;
    for my $cn (keys %{ $res->{classes} }) {
        my $cr = $res->{classes}{$cn};
        for my $b (@{ $cr->{bad} }) {
            my ($t, $a) = @$b;
            my $expected401 = $a =~ /^401/ && $cn ne 'unknown' && $allow_401->($t);
            if ($cn eq 'cached') {
                if ($allow_c && $a =~ $allow_c) { $allowed_cached++ }
                elsif (!$expected401) { push @bad_cached, $b }
            }
            push @unknown_by_error, [ $cn, @$b ]
                if $cn ne 'unknown' && $a =~ /^401/ && !$expected401;
            push @other_bad, [ $cn, @$b ] if $cn ne 'cached';
            $last_bad = $t if !defined $last_bad || $t > $last_bad;
        }
    }
    my $recovery = defined $last_bad && $last_bad > $t_end ? $last_bad - $t_end : 0;

    my $cached_n = $res->{classes}{cached}{n} // 0;
    is(scalar @bad_cached, 0, "$name: no request for a cached valid key failed "
       . "($cached_n requests" . ($allowed_cached ? ", $allowed_cached declared" : '') . ")")
        or diag "$name: cached keys: " . ApiKeyTest::Load::answers_text($res, 'cached');
    is(scalar @unknown_by_error, 0, "$name: no valid key answered 401 because of a Redis fault")
        or diag "$name: " . join(', ', map { sprintf '%s %.3fs after the fault: %s',
            $_->[0], $_->[1] - $t_fault, $_->[2] } @unknown_by_error[0 .. _min(9, $#unknown_by_error)]);
    ok($recovery <= $RECOVERY_MAX, sprintf "$name: recovered within %ds of the fault's end (%.2fs)",
       $RECOVERY_MAX, $recovery)
        or diag "$name: walk: " . ApiKeyTest::Load::answers_text($res, 'walk')
              . "; unknown: " . ApiKeyTest::Load::answers_text($res, 'unknown');
    ok(ApiKeyTest::Load::count($res, undef) > 0, "$name: the load made requests");

    my @expect = @{ $o{expect} // [] };
    my @probs = grep { my $l = $_; !grep { $l =~ $_ } @expect } $n->problems($n->error_log_since($mark));
    is(scalar @probs, 0, "$name: no [alert], [crit], [emerg] or signal exit in the error log")
        or diag join "\n", @probs[0 .. _min(19, $#probs)];
    $n->expect_problem(@expect) if @expect;

    my ($why, $m) = ('');
    my $back = ApiKeyTest::wait_until(sub {
        $m = $self->measure;
        $self->_back_to_base($m, \$why);
    }, timeout => 5, interval => 0.25);
    Test::More::note("$name: memory not compared under ASan (quarantine)")
        if $ApiKeyTest::SANITIZE =~ /address/;
    ok($back, "$name: worker fds, memory and Redis connections back to the baseline")
        or diag "$name: $why";

    my $row = {
        name => $name,
        requests => $res->{requests},
        cached => $cached_n,
        failures => scalar @bad_cached,
        declared => $allowed_cached,
        other => scalar @other_bad,
        unknown_by_error => scalar @unknown_by_error,
        recovery => $recovery,
        ka_retries => $res->{ka_retries},
        fds => join('/', @{ $m->{fds} }),
        rss => join('/', map { sprintf '%.1f', $_ / 1024 } @{ $m->{rss} }),
        ok => (!@bad_cached && !@unknown_by_error && $recovery <= $RECOVERY_MAX
               && !@probs && $back) ? 'pass' : 'FAIL',
        note => $o{note} // '',
        res => $res,
    };
    note sprintf '%s: %d requests (cached %s; walk %s; unknown %s), recovery %.2fs',
        $name, $res->{requests}, ApiKeyTest::Load::answers_text($res, 'cached'),
        ApiKeyTest::Load::answers_text($res, 'walk'),
        ApiKeyTest::Load::answers_text($res, 'unknown'), $recovery;
    push @{ $self->{rows} }, $row;
    return $row;
}

sub _min { $_[0] < $_[1] ? $_[0] : $_[1] }

# --- the faults ---------------------------------------------------------------
# Each returns the time the fault ended.

sub fault_sigstop {
    my ($self, $secs) = @_;
    $self->{r}->pause;
    sleep $secs;
    $self->{r}->resume;
    return time;
}

# kill -9, start again empty, $empty seconds later the records back
sub fault_kill_restart {
    my ($self, $empty) = @_;
    my $r = $self->{r};
    my $pid = $r->{pid};
    $self->{killed_at} = time;
    kill 'KILL', $pid;
    waitpid $pid, 0;
    delete $r->{pid};
    delete $r->{client};
    $r->start_again;
    $self->{empty_from} = time;
    sleep $empty;
    $self->restore_records;
    return $self->{empty_to} = time;
}

sub fault_client_kill {
    my ($self, $secs, $every) = @_;
    my $end = time + $secs;
    my $i = 0;
    while (time < $end) {
        $self->{r}->cmd('CLIENT', 'KILL', 'TYPE', $i++ % 2 ? 'pubsub' : 'normal');
        sleep $every;
    }
    return time;
}

sub fault_maxclients {
    my ($self, $secs) = @_;
    my $r = $self->{r};
    $r->cmd('CONFIG', 'SET', 'maxclients', 1);
    $r->cmd('CLIENT', 'KILL', 'TYPE', 'normal');
    $r->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    sleep $secs;
    $r->cmd('CONFIG', 'SET', 'maxclients', 10000);
    return time;
}

sub fault_maxmemory {
    my ($self, $secs) = @_;
    my $r = $self->{r};
    my ($used) = $r->cmd('INFO', 'memory') =~ /^used_memory:(\d+)/m;
    $r->cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    $r->cmd('CONFIG', 'SET', 'maxmemory', int($used / 2));
    my ($err) = $r->try_cmd('SET', 'chaos:probe', 'x');
    my (undef, $e) = $r->try_cmd('SET', 'chaos:probe', 'x');
    croak "maxmemory: a write still works" unless defined $e && $e =~ /OOM/;
    sleep $secs;
    $r->cmd('CONFIG', 'SET', 'maxmemory', 0);
    return time;
}

sub fault_reloads {
    my ($self, $count, $every) = @_;
    my $n = $self->{n};
    for (1 .. $count) {
        my $out = ApiKeyTest::run_nginx('-p', $n->dir . '/', '-c', $n->conf_path, '-s', 'reload');
        croak "nginx -s reload: $out" if $?;
        sleep $every;
    }
    my $t = time;
    # the last generation up, the old ones gone
    ApiKeyTest::wait_until(sub { $n->all_worker_pids == $self->{workers} }, timeout => 30);
    return $t;
}

sub fault_kill_worker {
    my ($self) = @_;
    my ($pid) = $self->{n}->worker_pids;
    $self->{killed} = $pid;
    kill 'KILL', $pid;
    ApiKeyTest::wait_until(sub {
        my @w = $self->{n}->worker_pids;
        @w == $self->{workers} && !grep { $_ == $pid } @w;
    }, timeout => 10);
    return time;
}

# a valid key's 401 is expected from the kill -9 to negative_ttl (1 s) after
# the records are back: Redis really had no record then
sub allow_401_empty {
    my ($self) = @_;
    return sub ($t) {
        defined $self->{killed_at} && $t >= $self->{killed_at}
            && $t <= ($self->{empty_to} // 9e9) + 1.5;
    };
}

# the flood of distinct unknown keys on the smallest zone (/tiny/), the
# cached keys requested there too; recovery counts from the flood's end
sub scenario_flood {
    my ($self, $name, $count, %o) = @_;
    my $u = $$ . '_' . $self->{uniq}++;
    my $h0 = ApiKeyTest::hgetall_calls($self->{r});
    my $row = $self->scenario($name, %o, pre => 0, until_done => [ 'unknown', 2 ],
        classes => [
            { name => 'cached', weight => 1, path => '/tiny/', keys => $self->{cached}, ok => ['200'] },
            { name => 'unknown', weight => 3, path => '/tiny/', ok => ['401 unknown'],
              gen => sub ($i) { $i < $count ? "chaos_f_${u}_$i" : undef } },
        ],
        fault => sub { time });
    my $flood = ApiKeyTest::Load::count($row->{res}, 'unknown');
    is($flood, $count, "$name: $count distinct keys sent");
    my $rereads = ApiKeyTest::hgetall_calls($self->{r}) - $h0 - $flood;
    note "$name: Redis reads beyond one per flood key: $rereads";
    $row->{note} = "cached keys read again: $rereads";
    return $row;
}

# graceful quit (nginx -s quit: SIGQUIT to the master) while requests wait
# on a stopped Redis: $nwalk misses and $ncached cached keys, one connection
# each.  Every request gets its answer (503 unavailable, 200), nginx exits
# by itself (not forced) within timeout (1 s) + 3 s.  Ends this nginx.
sub scenario_quit {
    my ($self, $name, $nwalk, $ncached) = @_;
    my $n = $self->{n};
    my $mark = $n->log_mark;
    my @reqs;
    my $w0 = $self->{walk_next};
    $self->{walk_next} += $nwalk;
    push @reqs, map { { path => '/', headers => { 'X-API-Key' => walk_key(($w0 + $_) % $self->{walk}) } } } 0 .. $nwalk - 1;
    push @reqs, map { { path => '/', headers => { 'X-API-Key' => $self->{cached}[ $_ % @{ $self->{cached} } ] } } } 0 .. $ncached - 1;
    $self->{r}->pause;
    my $b = ApiKeyTest::http_batch($self->port, \@reqs);
    sleep 0.3;
    my $t = time;
    $n->stop;
    my $secs = time - $t;
    my @res = $b->wait(timeout => 10);
    $self->{r}->resume;
    my %ans;
    $ans{ $_->status . ' ' . ($_->header('X-Status') // '') }++ for @res;
    my @walk = @res[0 .. $nwalk - 1];
    my @cached = @res[$nwalk .. $#res];
    my $cfail = grep { $_->status != 200 } @cached;
    my $wbad = grep { $_->status != 503 } @walk;
    my $w401 = grep { $_->status == 401 } @walk;
    is($cfail, 0, "$name: every cached key answered 200 during the quit ($ncached)");
    is($wbad, 0, "$name: every miss waiting on Redis answered 503 ($nwalk)")
        or diag join ', ', map { "$_ x$ans{$_}" } sort keys %ans;
    ok(!$n->stop_forced && $secs <= 4, sprintf "$name: nginx exited by itself in %.2fs", $secs);
    my @probs = $n->problems($n->error_log_since($mark));
    is(scalar @probs, 0, "$name: no [alert], [crit], [emerg] or signal exit in the error log")
        or diag join "\n", @probs;
    my $row = { name => $name, requests => scalar @res, cached => $ncached,
                failures => $cfail, other => $wbad, unknown_by_error => $w401,
                recovery => $secs, ka_retries => 0,
                ok => (!$cfail && !$wbad && !$n->stop_forced && $secs <= 4 && !@probs) ? 'pass' : 'FAIL',
                note => sprintf('recovery column: seconds from SIGQUIT to the exit; %s',
                                join ', ', map { "$_ x$ans{$_}" } sort keys %ans) };
    push @{ $self->{rows} }, $row;
    return $row;
}

# --- the table ------------------------------------------------------------------

sub rows { @{ $_[0]{rows} } }

sub table {
    my ($self, @extra) = @_;
    my $t = "| scenario | requests | cached-key requests | failures | other unexpected answers | "
        . "401 by a Redis fault | recovery (s) | keep-alive retries | result |\n"
        . "|---|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for my $r ($self->rows, @extra) {
        $t .= sprintf "| %s | %d | %d | %d%s | %d | %d | %s | %d | %s |\n",
            $r->{name}, $r->{requests}, $r->{cached}, $r->{failures},
            ($r->{declared} ? " (+$r->{declared} declared)" : ''), $r->{other},
            $r->{unknown_by_error},
            defined $r->{recovery} ? sprintf('%.2f', $r->{recovery}) : 'n/a',
            $r->{ka_retries} // 0, $r->{ok};
    }
    return $t;
}

1;
