# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Held;

# Requests held by their upstream: an upstream that accepts and reads a
# request and answers only when told.
#
#   my $h = ApiKeyTest::Held->new;          # listens on a free port
#   ... proxy_pass http://127.0.0.1:$h->{port} ...
#   my ($c, $u, $req) = $h->hold($port, $path, $key, $what);
#       # the request sent to nginx (X-API-Key: $key) reached the upstream:
#       # it passed its check; one test (ok) says so
#   my $raw = $h->release($c, $u);          # answered 200 "ok": the
#                                           # client's whole response

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Test::More;

sub new {
    my ($class) = @_;
    my $port = ApiKeyTest::free_port();
    my $up = IO::Socket::INET->new(Listen => 8, LocalAddr => '127.0.0.1',
                                   LocalPort => $port, ReuseAddr => 1)
        or die "listen: $!";
    return bless { port => $port, up => $up }, $class;
}

sub hold {
    my ($self, $port, $path, $key, $what) = @_;
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!";
    print $c "GET $path HTTP/1.1\r\nHost: t\r\nX-API-Key: $key\r\n"
           . "Connection: close\r\n\r\n";
    ok(IO::Select->new($self->{up})->can_read(10), "$what reached its upstream");
    my $u = $self->{up}->accept;
    my $req = '';
    while ($u && $req !~ /\r\n\r\n/) {
        last unless IO::Select->new($u)->can_read(5);
        sysread($u, $req, 4096, length $req) or last;
    }
    return ($c, $u, $req);
}

sub release {
    my ($self, $c, $u) = @_;
    if ($u) {
        print $u "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        close $u;
    }
    my $raw = '';
    while (IO::Select->new($c)->can_read(10)) {
        sysread($c, $raw, 65536, length $raw) or last;
    }
    close $c;
    return $raw;
}

1;
