# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Events;

# Helpers for the revocation / change event tests (t/1*-events*.t), on top of
# ApiKeyTest: which Redis connections are nginx's (pub/sub or command, and of
# which worker), PUBLISH, the metrics endpoint, keep-alive connections spread
# over every worker, bounded polling.
#
#   my @s = sub_conns($r);                 # CLIENT LIST entries with sub/psub
#   my %w = conns_by_pid($r, $n->worker_pids);   # pid => { sub => [..], cmd => [..] }
#   wait_subscribed($r, $n_expected, timeout => 5)
#   my $receivers = publish($r, 'revoke ' . $hash);   # delivered when it returns
#   publish_pipelined($r, \@messages)
#   my $m = metrics($port); $m->{'api_key_events_total{type="revoke"}'}
#   wait_events($port, 'update', $before, $workers)   # every worker applied it
#   my @conns = spread_conns($port, $key, $workers, per_worker => 4);
#   poll(sub { ... }, timeout => 1)  -> the last value (true = success)

use strict;
use warnings;
use v5.36;

use Exporter 'import';
use Time::HiRes qw(time sleep);

use ApiKeyTest ();

our @EXPORT = qw(client_list sub_conns cmd_conns conns_by_pid wait_subscribed
                 numsub publish publish_pipelined metrics metric
                 events_seen wait_events spread_conns poll
                 socket_owner_pids);

our $CHANNEL = 'apikey:events';

# every client of the Redis server except the harness's own connection,
# as hashes of CLIENT LIST fields
sub client_list {
    my ($r) = @_;
    return $r->other_clients;
}

sub _is_pubsub {
    my ($c) = @_;
    return ($c->{sub} // 0) > 0 || ($c->{psub} // 0) > 0
        || ($c->{flags} // '') =~ /P/;
}

# pub/sub connections (SUBSCRIBE / PSUBSCRIBE)
sub sub_conns {
    my ($r) = @_;
    return grep { _is_pubsub($_) } client_list($r);
}

# ordinary (command) connections, MONITOR excluded
sub cmd_conns {
    my ($r) = @_;
    return grep { !_is_pubsub($_) && ($_->{flags} // '') !~ /O/ }
        client_list($r);
}

# PUBSUB NUMSUB channel
sub numsub {
    my ($r, $channel) = @_;
    my $a = $r->cmd('PUBSUB', 'NUMSUB', $channel // $CHANNEL);
    return $a->[1] // 0;
}

# wait until exactly $n pub/sub connections exist and $n of them are
# subscribed to the channel
sub wait_subscribed {
    my ($r, $n, %o) = @_;
    my $ch = $o{channel} // $CHANNEL;
    return ApiKeyTest::wait_until(sub {
        my @s = sub_conns($r);
        @s == $n && numsub($r, $ch) == $n;
    }, timeout => $o{timeout} // 5, interval => $o{interval} // 0.02);
}

# PUBLISH on the events channel: the number of receivers.  Returns once the
# message has been written to every subscriber's socket: Redis writes the
# publisher's reply and the subscribers' copies in the same pass of its event
# loop, the publisher's first, so on a busy machine PUBLISH can return a
# little (observed: over 1 ms) before nginx's sockets have the message.  A
# second round trip (PING) is processed only after that pass has finished.
sub publish {
    my ($r, $msg, %o) = @_;
    my $n = $r->cmd('PUBLISH', $o{channel} // $CHANNEL, $msg);
    $r->cmd('PING');
    return $n;
}

# publish_pipelined($r, \@msgs, channel => ...): every PUBLISH sent on a new
# connection before any reply is read; the list of replies (receivers)
sub publish_pipelined {
    my ($r, $msgs, %o) = @_;
    my $ch = $o{channel} // $CHANNEL;
    my $c = $r->client(timeout => $o{timeout} // 20);
    $c->send_only('PUBLISH', $ch, $_) for @$msgs;
    my @rep = map { $c->read_reply } @$msgs;
    $c->cmd('PING');    # delivered to every subscriber's socket (see publish)
    $c->close;
    return @rep;
}

# ---------------------------------------------------------------------------
# which process owns a local TCP port (nginx's end of a Redis connection)

sub _inodes_by_local_port {
    my %by_port;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        my $t = ApiKeyTest::slurp($f);
        for my $l (split /\n/, $t) {
            my @f = split ' ', $l;
            next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})$/;
            push @{ $by_port{ hex $1 } }, $f[9];
        }
    }
    return \%by_port;
}

sub _socket_inodes_of {
    my ($pid) = @_;
    my %ino;
    opendir my $dh, "/proc/$pid/fd" or return {};
    for my $fd (readdir $dh) {
        my $l = readlink "/proc/$pid/fd/$fd" // next;
        $ino{$1} = 1 if $l =~ /^socket:\[(\d+)\]$/;
    }
    return \%ino;
}

# socket_owner_pids(\@local_ports, @pids): { port => pid } for the ports one
# of the pids holds a socket of
sub socket_owner_pids {
    my ($ports, @pids) = @_;
    my $by_port = _inodes_by_local_port();
    my %ino_of_pid = map { $_ => _socket_inodes_of($_) } @pids;
    my %owner;
    for my $port (@$ports) {
        for my $ino (@{ $by_port->{$port} // [] }) {
            for my $pid (@pids) {
                $owner{$port} = $pid if $ino_of_pid{$pid}{$ino};
            }
        }
    }
    return \%owner;
}

# conns_by_pid($r, @worker_pids): { pid => { sub => [clients], cmd => [clients] },
# '?' => { ... } for connections no worker holds }
sub conns_by_pid {
    my ($r, @pids) = @_;
    my @c = client_list($r);
    my @ports = map { ($_->{addr} // '') =~ /:(\d+)$/ ? $1 : () } @c;
    my $owner = socket_owner_pids(\@ports, @pids);
    my %out = map { $_ => { sub => [], cmd => [] } } @pids;
    for my $c (@c) {
        next if ($c->{flags} // '') =~ /O/;
        my ($port) = ($c->{addr} // '') =~ /:(\d+)$/;
        my $pid = defined $port ? $owner->{$port} // '?' : '?';
        push @{ $out{$pid}{ _is_pubsub($c) ? 'sub' : 'cmd' } }, $c;
    }
    return \%out;
}

# ---------------------------------------------------------------------------
# metrics

# metrics($port, $path): { 'name{labels}' => value } of the Prometheus text
sub metrics {
    my ($port, $path) = @_;
    my $res = ApiKeyTest::http_get($port, $path // '/metrics');
    die "metrics: " . $res->as_string . "\n" unless $res->status == 200;
    my %m;
    for my $l (split /\n/, $res->body) {
        next if $l =~ /^#/ || $l !~ /\S/;
        my ($k, $v) = $l =~ /^(\S+)\s+(\S+)$/ or next;
        $m{$k} = $v;
    }
    return \%m;
}

# metric($port, 'name{labels}'): one value (0 when absent)
sub metric {
    my ($port, $name) = @_;
    return metrics($port)->{$name} // 0;
}

# events_seen($port, $type): api_key_events_total{type="$type"}
sub events_seen {
    my ($port, $type) = @_;
    return metric($port, qq{api_key_events_total{type="$type"}});
}

# wait_events($port, $type, $before, $n, timeout => 2): wait until
# api_key_events_total{type} >= $before + $n, i.e. until every worker has
# read its copy of an event (each worker counts the events it receives; the
# first to read one applies it); returns the last value
sub wait_events {
    my ($port, $type, $before, $n, %o) = @_;
    my $v;
    poll(sub { ($v = events_seen($port, $type)) >= $before + $n },
         timeout => $o{timeout} // 2, interval => 0.01);
    return $v;
}

# ---------------------------------------------------------------------------
# keep-alive connections over every worker

# spread_conns($port, $key, $workers, per_worker => 4, path => '/',
#              header => 'X-API-Key', max_tries => 400):
# keep-alive connections (ApiKeyTest::HTTPConn), per_worker of them for each
# of $workers distinct X-Pid values, each having served one request with the
# key.  New connections are opened until every worker is seen (the ones
# beyond per_worker are closed).  Returns a list of { conn, pid, res };
# fewer pids than $workers when max_tries ran out.
sub spread_conns {
    my ($port, $key, $workers, %o) = @_;
    my $per = $o{per_worker} // 4;
    my $path = $o{path} // '/';
    my $hdr = $o{header} // 'X-API-Key';
    my $tries = $o{max_tries} // 400;
    my (%n, @out);
    while ($tries-- > 0) {
        last if keys(%n) == $workers && !grep { $_ < $per } values %n;
        my $c = ApiKeyTest::HTTPConn->new($port);
        my $res = $c->get($path, headers => { $hdr => $key });
        my $pid = $res->header('X-Pid');
        if (!defined $pid || ($n{$pid} // 0) >= $per) {
            $c->close;
            next;
        }
        $n{$pid}++;
        push @out, { conn => $c, pid => $pid, res => $res };
    }
    return @out;
}

# poll(sub { ... }, timeout => 1, interval => 0.02): calls the sub until it
# returns true or the time is up; returns the last value
sub poll {
    my ($cb, %o) = @_;
    my $deadline = time + ($o{timeout} // 1);
    my $interval = $o{interval} // 0.02;
    while (1) {
        my $v = $cb->();
        return $v if $v || time >= $deadline;
        sleep $interval;
    }
}

1;
