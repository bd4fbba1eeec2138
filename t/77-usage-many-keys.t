# SPDX-License-Identifier: BSD-2-Clause
# A worker counts a key's requests in a few items in front of its usage
# table (one per slot, by the hash's first byte), moved into the table when
# another key takes the slot and at each fold.  Many keys, more than the
# front's slots and than the worker's table takes between two folds, each
# counted twice in two rounds, the second pipelined (every slot changes
# hands, the table fills and is folded on the way): every key has its two requests in Redis, none
# lost, none counted for another key.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events qw(wait_subscribed);

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:4m usage_flush=500ms;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;
            empty_gif;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, workers => 1, redis => $r,
                                 vars => { REDIS => $r->port });
my $port = $n->port;
wait_subscribed($r, 1, timeout => 10);

sub day { my $t = shift // time; int($t) - int($t) % 86400 }
sub allowed {
    my %c = @{ $r->cmd('HGETALL',
                       "apikey:usage:{apikey:$_[0]}:requests:" . day()) // [] };
    return $c{allowed} // 0;
}

my $N = 450;    # > the worker's table between two folds (384), > 32 slots
my (@k, @h);
for my $i (1 .. $N) {
    push @k, random_key("m$i");
    push @h, add_key($r, $k[-1], id => "many-$i");
}

# every key read from Redis (cached) first
my $bad = 0;
for my $i (0 .. $N - 1) {
    my $st = http_get($port, '/', headers => { 'X-API-Key' => $k[$i] })->status;
    $bad++ if $st != 200;
}
is($bad, 0, "$N keys: every request 200");

# then once more each, pipelined on one connection: the worker takes them
# back to back, between two folds (its table fills up on the way)
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
    or die "connect: $!";
my $req = join '', map {
    "GET / HTTP/1.1\r\nHost: t\r\nX-API-Key: $k[$_]\r\n"
    . ($_ == $N - 1 ? "Connection: close\r\n" : '') . "\r\n"
} 0 .. $N - 1;
print $s $req;
my $raw = '';
while (IO::Select->new($s)->can_read(10)) {
    sysread($s, $raw, 65536, length $raw) or last;
}
close $s;
my $ok = () = $raw =~ m{HTTP/1\.1 200 }g;
is($ok, $N, "$N pipelined requests: 200") or diag substr($raw, 0, 600);

ok(wait_until(sub { !grep { allowed($_) != 2 } @h }, timeout => 15),
   'every key: allowed 2 in Redis')
    or diag explain { map { $_ => allowed($h[$_]) }
                      grep { allowed($h[$_]) != 2 } 0 .. $N - 1 };

done_testing;
