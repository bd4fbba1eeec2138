# SPDX-License-Identifier: BSD-2-Clause
# A worker whose subscription is confirmed late must not apply a second time
# the events that a faster worker applied between its SUBSCRIBE and the
# confirmation: an old "revoke" re-applied after the key was re-activated
# denied it until its next re-read.
#
# Two workers reach Redis through a proxy on loopback that holds back what
# Redis sends on the second events connection (its SUBSCRIBE confirmation
# and the messages after it) until the test lets it go.  Meanwhile: a key is
# revoked (PUBLISH revoke, applied by the other worker), re-activated in
# Redis and re-read after ttl.  Then the held worker reads its confirmation
# and the old revoke: the key must stay accepted.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use lib 't/lib';
use ApiKeyTest;

require_module();

my @KIDS;
END { kill 'TERM', @KIDS if @KIDS }

my $r = ApiKeyTest::Redis->start;

# the proxy: relays every connection; the second connection that sends
# SUBSCRIBE gets nothing from Redis until $dir/release exists
sub holding_proxy {
    my ($upstream) = @_;
    my $dir = tmpdir();
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 64, ReuseAddr => 1) or die "listen: $!";
    my $port = $l->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        $SIG{ALRM} = sub { POSIX::_exit(0) };
        $SIG{TERM} = sub { POSIX::_exit(0) };
        alarm 60;
        my $sel = IO::Select->new($l);
        my (%peer, %held, %hold, $subs);
        while (1) {
            for my $s ($sel->can_read(0.05)) {
                if ($s == $l) {
                    my $c = $l->accept or next;
                    my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                                  PeerPort => $upstream) or next;
                    $peer{ fileno $c } = [ $u, 'up', $c ];
                    $peer{ fileno $u } = [ $c, 'down', $u ];
                    $sel->add($c, $u);
                    next;
                }
                my ($to, $dir_, $me) = @{ $peer{ fileno $s } };
                my $got = sysread($s, my $buf, 65536);
                if (!$got) {
                    $sel->remove($s, $to);
                    close $s; close $to;
                    next;
                }
                if ($dir_ eq 'up' && $buf =~ /\r\nSUBSCRIBE\r\n/i && ++$subs == 2) {
                    $hold{ fileno $to } = 1;    # what Redis sends back on it
                    open my $f, '>', "$dir/holding"; close $f;
                }
                if ($hold{ fileno $s }) {
                    $held{ fileno $s } .= $buf;
                    next;
                }
                syswrite($to, $buf);
            }
            if (%hold && -e "$dir/release") {
                for my $fd (keys %hold) {
                    my $to = $peer{$fd}[0];
                    syswrite($to, delete $held{$fd}) if defined $held{$fd};
                }
                %hold = ();
                open my $f, '>', "$dir/released"; close $f;
            }
        }
    }
    close $l;
    push @KIDS, $pid;
    return { pid => $pid, port => $port, dir => $dir };
}

my $px = holding_proxy($r->port);

my $http = <<'EOT' . echo_server();
    api_key_zone  keys:1m ttl=2s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Status $api_key_status always;
        location / {
            api_key keys;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
EOT

my $k = random_key('re');
my $h = add_key($r, $k, owner => 'rita', status => 'active');

my $n = ApiKeyTest::Nginx->start(http => $http, workers => 2,
    vars => { REDIS => $px->{port} });
my $port = $n->port;
sub st { my $x = http_get($port, '/', headers => { 'X-API-Key' => $k }); $x->status . ' ' . ($x->header('X-Status') // '') }

ok(wait_until(sub { ($r->cmd('PUBSUB', 'NUMSUB', 'apikey:events'))[0][1] == 2
                    && -e "$px->{dir}/holding" }, timeout => 5),
   'both workers subscribed; the second one does not see its confirmation yet');

is(st(), '200 ok', 'the key is accepted (cached)');
$r->cmd('HSET', "apikey:$h", 'status', 'revoked');
$r->cmd('PUBLISH', 'apikey:events', "revoke $h");
ok(wait_until(sub { st() eq '401 revoked' }, timeout => 3, interval => 0.05),
   'revoke: the subscribed worker applies it, the key is revoked');
$r->cmd('HSET', "apikey:$h", 'status', 'active');
my $t = time;
ok(wait_until(sub { st() eq '200 ok' }, timeout => 5, interval => 0.1),
   're-activated in Redis: accepted again after ttl (re-read)');
note sprintf 're-read after %.1fs', time - $t;

# the held worker now reads its confirmation and the old revoke
open my $f, '>', "$px->{dir}/release"; close $f;
ok(wait_until(sub { -e "$px->{dir}/released" }, timeout => 3, interval => 0.02),
   'the held subscription is confirmed');
my @s;
my $end = time + 0.6;    # well within ttl (2s) of the re-read
while (time < $end) { push @s, st(); sleep 0.03 }
my @bad = grep { $_ ne '200 ok' } @s;
is(scalar @bad, 0, 'the old revoke is not applied again: the key stays accepted ('
                   . scalar(@s) . ' requests)') or diag "@bad";

# and the late worker applies new events
$r->cmd('HSET', "apikey:$h", 'status', 'revoked');
$r->cmd('PUBLISH', 'apikey:events', "revoke $h");
ok(wait_until(sub { st() eq '401 revoked' }, timeout => 3, interval => 0.05),
   'a new revoke is applied');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg');
$n->stop;

done_testing;
