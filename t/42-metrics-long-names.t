# SPDX-License-Identifier: BSD-2-Clause
# api_key_metrics with many zones and long zone names: the page is complete
# and well-formed whatever the names (issue 10, item 7: the page used to be
# printed into a buffer sized from a guess, 8 KiB per zone, and overflowed
# it with long names; a check that wrapped when the write had gone past
# the end let it through).  Names up to what nginx's configuration parser
# accepts (a parameter must fit its 4 KiB buffer).  A worker crash, an
# [alert] or a sanitizer report fails the file (the harness's final check).
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;

require_module();

my $r = ApiKeyTest::Redis->start;

# zone names as written in the configuration => as Prometheus label values
sub page_for {
    my ($what, @zones) = @_;
    my $conf = join '', map { "    api_key_zone '$_->[0]:48k';\n" } @zones;
    my $n = ApiKeyTest::Nginx->start(vars => { REDIS => $r->port },
                                     error_level => 'info', http => <<"EOT");
$conf
    api_key_redis redis://127.0.0.1:%%REDIS%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /metrics {
            api_key_metrics;
        }
    }
EOT
    my @workers = $n->worker_pids;
    for my $try (1, 2) {
        my $res = http_get($n->port, '/metrics', timeout => 20);
        is($res->status, 200, "$what: metrics answer 200 (request $try)")
            or diag($res->error_message // $res->body);
        my $body = $res->body // '';
        is($res->header('content-length'), length $body,
           "$what: Content-Length is the length of the page");
        like($body, qr/\napi_key_redis_connected\{connection="events"\} \d+\n\z/,
             "$what: the page is complete (ends with its last metric)");
        my @bad = grep { !/^(?:# (?:HELP|TYPE) \w+ .+|\w+(?:\{.*\})? \d+(?:\.\d+)?)$/ }
            split /\n/, $body;
        is_deeply([ @bad[0 .. ($#bad < 2 ? $#bad : 2)] ], [],
                  "$what: every line is a comment or a sample");
        my %help;
        $help{$_}++ for $body =~ /^# HELP (\S+) /mg;
        is_deeply([ grep { $help{$_} != 1 } sort keys %help ], [],
                  "$what: one HELP line per metric, however many zones");
        my %count;
        for my $line (split /\n/, $body) {
            next unless $line =~ /\{zone="((?:[^"\\]|\\.)*)"/;
            $count{$1}++;
        }
        my $want = $count{ $zones[0][1] } // 0;
        ok($want > 20, "$what: the first zone has its lines ($want)");
        my @wrong = grep { ($count{ $_->[1] } // 0) != $want } @zones;
        is(scalar @wrong, 0, "$what: every zone has as many lines as the "
           . "first one") or diag 'zones with a wrong count: '
           . join ', ', map { length($_->[1]) . ' bytes' } @wrong;
    }
    is_deeply([ $n->worker_pids ], \@workers, "$what: the worker did not crash");
    $n->stop;
    is_deeply([ $n->problems ], [], "$what: no alert, crit or crash in the error log");
}

# the case that overflowed: three zones, 302-byte names
page_for('3 zones, 302-byte names',
         map { [ "z$_" . 'x' x 300, "z$_" . 'x' x 300 ] } 1 .. 3);

# the longest names nginx accepts (the parameter "NAME:48k" in its 4 KiB
# configuration buffer)
page_for('2 zones of 4,000 bytes',
         map { [ "$_" x 4000, "$_" x 4000 ] } 'a', 'b');

# many zones of every length, and characters a label value must escape
my @many = ([ 'short', 'short' ], [ q{we"ird\\\\name}, q{we\\"ird\\\\name} ]);
push @many, map { my $l = 1 + ($_ * 97) % 1500; [ "m${_}_" . 'q' x $l, "m${_}_" . 'q' x $l ] }
    1 .. 40;
page_for('42 zones, names of 1 to 1,500 bytes', @many);

done_testing();
