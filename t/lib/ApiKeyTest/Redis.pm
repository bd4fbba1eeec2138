# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Redis;

# my $r = ApiKeyTest::Redis->start(
#     port => P (default: a free one; 0: no TCP, unix socket only),
#     bind => '127.0.0.2' (default 127.0.0.1; all of 127/8 is loopback),
#     unixsocket => 1 | PATH, requirepass => PW,
#     users => ['alice on >pw ~* &* +@all', ...],   # ACL "user" lines
#     config => ["notify-keyspace-events Kgh", ...],
#     args => ['--sentinel'] (more arguments of redis-server),
#     tls => { cert => PEM, key => PEM, ca => PEM,
#              auth_clients => 'no' | 'yes' | 'optional' (default no),
#              client_cert => PEM, client_key => PEM });
# $r->port, ->host, ->url, ->socket_path, ->cmd(@args), ->try_cmd,
# ->client(%o) (a new connection), ->pause, ->resume, ->pause_guard, ->stop,
# ->start_again, ->restart (same port and configuration, empty data), ->log,
# ->kill9 (SIGKILL, as a crash: the process is gone, ->pid undef),
# ->crashed (its log reports a crash: a bug report or an assertion).
#
# TLS: with tls => {...} the server listens with TLS only (port 0,
# tls-port P): ->port is the TLS port, ->tls is true, ->url is
# rediss://HOST:P.  ApiKeyTest::Tls->redis_tls(...) makes the hash.  The
# harness's own connections (cmd, client, monitor, wait_clients, ...) speak
# TLS (IO::Socket::SSL) and present client_cert/client_key when given; they
# do not verify the server (tests of verification use their own client:
# ->client(verify => 1, name => 'localhost')).  ->client(plain => 1) speaks
# plaintext to the TLS port, ->client(tls => { client_cert => undef, ... })
# overrides the TLS options of one connection.  A new certificate:
# ->restart(tls => { cert => C, key => K }) (restarts with it; the other
# TLS options stay), or ->tls_reload(cert => C, key => K) (CONFIG SET: new
# connections get it, existing ones stay).
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use IO::Socket::INET ();
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
        bind => $o{bind} // '127.0.0.1',
        tls => $o{tls} ? { auth_clients => 'no', %{ $o{tls} } } : undef,
        args => $o{args} // [],
    }, $class;
    if (my $t = $self->{tls}) {
        for (qw(cert key ca)) {
            croak "tls => { $_ => ... } is needed" unless defined $t->{$_};
        }
        croak "tls: auth_clients must be no, yes or optional"
            unless $t->{auth_clients} =~ /^(?:no|yes|optional)$/;
    }
    if ($o{unixsocket}) {
        $self->{socket_path} = $o{unixsocket} eq '1'
            ? "$self->{dir}/redis.sock" : $o{unixsocket};
    }
    push @ApiKeyTest::REDIS, $self;
    $self->_write_conf;
    $self->_spawn;
    return $self;
}

sub _write_conf {
    my ($self) = @_;
    my $t = $self->{tls};
    my @c = (
        ($t ? ("port 0", "tls-port $self->{port}")
            : ("port $self->{port}")),
        "bind $self->{bind}",
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
    if ($t) {
        push @c, "tls-cert-file $t->{cert}", "tls-key-file $t->{key}",
            "tls-ca-cert-file $t->{ca}", "tls-auth-clients $t->{auth_clients}";
    }
    push @c, @{ $self->{config} };
    ApiKeyTest::spew("$self->{dir}/redis.conf", join("\n", @c) . "\n");
}

sub _spawn {
    my ($self) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/redis.stdout";
        open STDERR, '>&', \*STDOUT;
        exec($ApiKeyTest::REDIS_SERVER, "$self->{dir}/redis.conf",
             @{ $self->{args} }) or POSIX::_exit(127);
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
        croak "redis-server did not start on port $self->{port}"
            . ($self->{tls} ? ' (TLS)' : '') . ":\n$log";
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
    my %where = $self->{port} ? (host => $self->{bind}, port => $self->{port})
                              : (path => $self->{socket_path});
    my %tls;
    if ($self->{tls} && $self->{port} && !$o{plain}) {
        my $t = $self->{tls};
        %tls = (tls => {
            cert => $t->{client_cert}, key => $t->{client_key},
            %{ $o{tls} // {} },
            ($o{verify} ? (verify => 1, ca => $o{ca} // $t->{ca},
                           name => $o{name} // $self->{bind}) : ()),
        });
    }
    return ApiKeyTest::RedisClient->new(%where, %auth, %tls,
                                        timeout => $o{timeout} // 5,
                                        db => $o{db});
}

# a new, separate connection (e.g. for MONITOR or as another user)
sub client { my ($self, %o) = @_; $self->_new_client(%o) }

sub port        { $_[0]{port} }
sub host        { $_[0]{bind} }
sub tls         { $_[0]{tls} }

# url(host => NAME (default the bind address), db => N, user => U,
#     password => P): redis://HOST:PORT or rediss://HOST:PORT for a TLS
# server; unix:PATH for a server without TCP
sub url {
    my ($self, %o) = @_;
    unless ($self->{port}) {
        return "unix:$self->{socket_path}" . ($o{db} ? "?db=$o{db}" : '');
    }
    my $auth = '';
    if (defined $o{user} || defined $o{password}) {
        $auth = ($o{user} // '') . (defined $o{password} ? ":$o{password}" : '')
            . '@';
    }
    my $h = $o{host} // $self->{bind};
    $h = "[$h]" if $h =~ /:/;
    return ($self->{tls} ? 'rediss' : 'redis') . "://$auth$h:$self->{port}"
        . (defined $o{db} ? "/$o{db}" : '');
}
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
        !IO::Socket::INET->new(PeerAddr => $self->{bind}, PeerPort => $self->{port},
                               Proto => 'tcp', Timeout => 1)
    }, timeout => 5) if $self->{port};
    return 1;
}

# kill -9: no shutdown, as a machine or process crash
sub kill9 {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'CONT', $pid if $self->{paused};
    $self->{paused} = 0;
    delete $self->{client};
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return 1;
}

# what in its log says it crashed ('' when nothing)
sub crashed {
    my ($self) = @_;
    my $log = $self->log . ApiKeyTest::slurp("$self->{dir}/redis.stdout");
    my @l = grep { /REDIS BUG REPORT|crashed by signal|ASSERTION FAILED|Guru Meditation/ }
        split /\n/, $log;
    return join "\n", @l;
}

# start again after stop (same port, same configuration, empty data)
sub start_again {
    my ($self) = @_;
    croak "redis already running" if $self->{pid};
    $self->_spawn;
    return $self;
}

# restart(tls => { cert => C, key => K, ... }): the TLS options given
# replace those of the start (e.g. a new server certificate)
sub restart {
    my ($self, %o) = @_;
    $self->stop;
    if ($o{tls}) {
        croak "restart(tls => ...): not a TLS redis" unless $self->{tls};
        $self->{tls} = { %{ $self->{tls} }, %{ $o{tls} } };
        $self->_write_conf;
    }
    $self->start_again;
}

# tls_reload(cert => C, key => K, ca => A, auth_clients => ...): CONFIG SET
# on the running server (new connections see it) and in the configuration
# of later restarts
sub tls_reload {
    my ($self, %o) = @_;
    croak "tls_reload: not a TLS redis" unless $self->{tls};
    my %name = (cert => 'tls-cert-file', key => 'tls-key-file',
                ca => 'tls-ca-cert-file', auth_clients => 'tls-auth-clients');
    my @set;
    for my $k (sort keys %o) {
        croak "tls_reload: unknown option $k" unless $name{$k};
        push @set, $name{$k}, $o{$k};
    }
    $self->cmd('CONFIG', 'SET', @set);
    $self->{tls} = { %{ $self->{tls} }, %o };
    $self->_write_conf;
    return 1;
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

1;
