# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Dns;

# A test DNS server (Net::DNS::Nameserver) in a child process, on one
# loopback port, UDP and TCP, answering A records from a table that the
# test changes while it runs:
#
#   my $dns = ApiKeyTest::Dns->start(records => { 'redis.test' => '127.0.0.2' },
#                                    ttl => 1, addr => '127.0.0.1');
#   $dns->port, ->addr, ->resolver_line ("127.0.0.1:PORT", for nginx's
#   resolver directive)
#   $dns->set('redis.test' => '127.0.0.3')          # from the next query on
#   $dns->set('redis.test' => ['127.0.0.2', '127.0.0.3'])   # several As
#   $dns->set('redis.test' => undef)                # NXDOMAIN from now on
#   $dns->set_mode('answer' | 'servfail' | 'drop')  # 'drop': no answer at all
#   $dns->lookup('redis.test') -> addresses (asks the server, over UDP;
#                                 tcp => 1: over TCP)
#   $dns->queries -> list of "name TYPE" asked so far (e.g. to see nginx
#                    resolving again)
#   $dns->stop
#
# Names are matched without case and without a trailing dot; a name not in
# the table gets NXDOMAIN; a query for another type (AAAA, ...) of a known
# name gets an empty NOERROR answer.  The table is a file that the child
# reads on every query (set() replaces it atomically), so a change is
# visible to the next query.  The child exits when the test process goes
# away; every server started is stopped at the end of the test, and the
# final checks fail when its child died or wrote anything on stderr.
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;
use Carp qw(croak);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our @SERVERS;    # every server started by this process (for the clean-up)

sub start {
    my ($class, %o) = @_;
    require Net::DNS;
    require Net::DNS::Nameserver;
    my $self = bless {
        dir => $o{dir} // ApiKeyTest::tmpdir(),
        addr => $o{addr} // '127.0.0.1',
        ttl => $o{ttl} // 1,
        records => {},
        mode => 'answer',
    }, $class;
    while (my ($n, $a) = each %{ $o{records} // {} }) {
        $self->{records}{ _norm($n) } = _addrs($a);
    }
    $self->_write_table;

    # bind in the parent (no race with the first query), serve in the child
    my $ns;
    for (1 .. 20) {
        my $port = ApiKeyTest::free_port();
        my @warn;
        local $SIG{__WARN__} = sub { push @warn, @_ };
        $ns = Net::DNS::Nameserver->new(
            LocalAddr => [ $self->{addr} ], LocalPort => $port,
            ReplyHandler => sub { $self->_reply(@_) },
            Verbose => 0, Truncate => 1, IdleTimeout => 30,
        );
        # one TCP and one UDP socket, both bound
        if ($ns && $ns->{select} && $ns->{select}->count == 2) {
            $self->{port} = $port;
            last;
        }
        undef $ns;
    }
    croak "ApiKeyTest::Dns: cannot bind a UDP and TCP port on $self->{addr}"
        unless $ns;

    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/dns.stdout";
        open STDERR, '>>', "$self->{dir}/dns.stderr";
        $SIG{$_} = 'DEFAULT' for qw(INT TERM ALRM PIPE);
        $SIG{PIPE} = 'IGNORE';
        alarm 0;
        # the test's other sockets (Redis and HTTP connections) must not
        # stay open in this child after the test closes them
        my %keep = map { (fileno($_) => 1) } $ns->{select}->handles;
        if (opendir my $dh, '/proc/self/fd') {
            my @fds = grep { /^\d+\z/ && $_ > 2 && !$keep{$_} } readdir $dh;
            closedir $dh;
            POSIX::close($_) for @fds;
        }
        while (getppid() == $parent) {
            $ns->loop_once(0.5);
        }
        POSIX::_exit(0);
    }
    undef $ns;    # the parent's copies of the sockets
    $self->{pid} = $pid;
    push @SERVERS, $self;
    return $self;
}

sub port { $_[0]{port} }
sub addr { $_[0]{addr} }
sub dir  { $_[0]{dir} }
sub pid  { $_[0]{pid} }
sub resolver_line { "$_[0]{addr}:$_[0]{port}" }

sub _norm { my $n = lc shift; $n =~ s/\.\z//; $n }

sub _addrs {
    my ($a) = @_;
    return undef unless defined $a;
    my @a = ref $a ? @$a : ($a);
    for (@a) {
        croak "ApiKeyTest::Dns: not an IPv4 address: $_"
            unless /^\d{1,3}(?:\.\d{1,3}){3}\z/;
    }
    return \@a;
}

# the table file: "mode M" then "name addr addr ..." lines
sub _write_table {
    my ($self) = @_;
    my $t = "mode $self->{mode}\nttl $self->{ttl}\n";
    for my $n (sort keys %{ $self->{records} }) {
        my $a = $self->{records}{$n} or next;
        $t .= join(' ', $n, @$a) . "\n";
    }
    my $f = "$self->{dir}/dns.table";
    ApiKeyTest::spew("$f.tmp", $t);
    rename "$f.tmp", $f or die "rename $f: $!";
}

sub set {
    my ($self, %r) = @_;
    while (my ($n, $a) = each %r) {
        $self->{records}{ _norm($n) } = _addrs($a);
    }
    $self->_write_table;
    return 1;
}

sub set_mode {
    my ($self, $mode) = @_;
    croak "set_mode: answer, servfail or drop"
        unless $mode =~ /^(?:answer|servfail|drop)\z/;
    $self->{mode} = $mode;
    $self->_write_table;
    return 1;
}

# in the child: the answer to one query
sub _reply {
    my ($self, $qname, $qclass, $qtype) = @_;
    my $name = _norm($qname);
    my %t;
    my ($mode, $ttl) = ('answer', 1);
    if (open my $fh, '<', "$self->{dir}/dns.table") {
        while (my $l = <$fh>) {
            chomp $l;
            my ($k, @v) = split ' ', $l;
            next unless defined $k;
            if ($k eq 'mode') { $mode = $v[0]; next }
            if ($k eq 'ttl') { $ttl = $v[0]; next }
            $t{$k} = \@v;
        }
    }
    if (open my $q, '>>', "$self->{dir}/dns.queries") {
        print $q "$name $qtype\n";
        close $q;
    }
    return if $mode eq 'drop';
    return ('SERVFAIL', [], [], []) if $mode eq 'servfail';
    my $a = $t{$name} or return ('NXDOMAIN', [], [], [], { aa => 1 });
    my @ans;
    if ($qtype eq 'A' && $qclass eq 'IN') {
        @ans = map { Net::DNS::RR->new("$name. $ttl IN A $_") } @$a;
    }
    return ('NOERROR', \@ans, [], [], { aa => 1 });
}

# lookup($name, tcp => 1, timeout => 2): the A addresses the server gives
# (empty list: none, NXDOMAIN or no answer)
sub lookup {
    my ($self, $name, %o) = @_;
    require Net::DNS;
    my $res = Net::DNS::Resolver->new(
        nameservers => [ $self->{addr} ], port => $self->{port},
        recurse => 0, retry => 1, udp_timeout => $o{timeout} // 2,
        tcp_timeout => $o{timeout} // 2, usevc => $o{tcp} ? 1 : 0,
        defnames => 0, dnsrch => 0,
    );
    my $p = $res->send($name, 'A') or return;
    return map { $_->address } grep { $_->type eq 'A' } $p->answer;
}

# the queries seen so far, each "name TYPE"
sub queries {
    my ($self) = @_;
    return split /\n/, ApiKeyTest::slurp("$self->{dir}/dns.queries");
}

sub is_running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return 0 if waitpid($self->{pid}, WNOHANG) == $self->{pid};
    return 1;
}

# stops the child; returns what went wrong ('' when it ran cleanly)
sub stop {
    my ($self) = @_;
    return $self->{problems} // '' unless $self->{pid};
    my $pid = delete $self->{pid};
    my @p;
    if (waitpid($pid, WNOHANG) == $pid) {
        push @p, "the DNS server (pid $pid) had exited by itself, status $?";
    } else {
        kill 'TERM', $pid;
        unless (ApiKeyTest::wait_until(sub { waitpid($pid, WNOHANG) == $pid },
                                       timeout => 5)) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
            push @p, "the DNS server (pid $pid) did not stop on TERM";
        }
    }
    my $err = ApiKeyTest::slurp("$self->{dir}/dns.stderr");
    push @p, "the DNS server wrote on stderr:\n$err" if length $err;
    return $self->{problems} = join "\n", @p;
}

1;
