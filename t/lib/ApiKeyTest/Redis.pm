package ApiKeyTest::Redis;

# my $r = ApiKeyTest::Redis->start(
#     port => P (default: a free one; 0: no TCP, unix socket only),
#     unixsocket => 1 | PATH, requirepass => PW,
#     users => ['alice on >pw ~* &* +@all', ...],   # ACL "user" lines
#     config => ["notify-keyspace-events Kgh", ...]);
# $r->port, ->socket_path, ->cmd(@args), ->try_cmd, ->client(%o) (a new
# connection), ->pause, ->resume, ->pause_guard, ->stop, ->start_again,
# ->restart (same port and configuration, empty data), ->log.
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
    push @ApiKeyTest::REDIS, $self;
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
        exec($ApiKeyTest::REDIS_SERVER, "$self->{dir}/redis.conf") or POSIX::_exit(127);
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

1;
