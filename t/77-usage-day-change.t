# SPDX-License-Identifier: BSD-2-Clause
# A worker counts a key's requests per UTC day in an item in front of its
# usage table: at a day change the item of the day before goes into the
# table (or was folded already) and the new day starts from 0.  Requests
# sent back to back across midnight (nginx's clock moved a few seconds
# before it by a preloaded shift of the wall clock; the monotonic clock and
# Redis are left alone): each day has in Redis exactly the requests nginx
# answered on it (by their Date header), none lost, none counted twice or
# for the other day.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Events qw(wait_subscribed);

require_module();

plan skip_all => 'the sanitizer runtimes are preloaded already'
    if ApiKeyTest::sanitizing();

my $dir = ApiKeyTest::tmpdir();
ApiKeyTest::spew("$dir/shift.c", <<'EOC');
/* the wall clock moved by AK_TIME_SHIFT seconds (read at load: nginx's
 * workers lose the environment) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long  shift;

__attribute__((constructor)) static void
init(void)
{
    const char  *s = getenv("AK_TIME_SHIFT");

    shift = s ? atol(s) : 0;
}

int
gettimeofday(struct timeval *tv, void *tz)
{
    int  (*real)(struct timeval *, void *);
    int    rc;

    real = (int (*)(struct timeval *, void *)) dlsym(RTLD_NEXT,
                                                     "gettimeofday");
    rc = real(tv, tz);
    if (rc == 0 && tv) {
        tv->tv_sec += shift;
    }
    return rc;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
    int  (*real)(clockid_t, struct timespec *);
    int    rc;

    real = (int (*)(clockid_t, struct timespec *)) dlsym(RTLD_NEXT,
                                                         "clock_gettime");
    rc = real(id, ts);
    if (rc == 0 && ts
        && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
    {
        ts->tv_sec += shift;
    }
    return rc;
}

time_t
time(time_t *t)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);
    if (t) {
        *t = tv.tv_sec;
    }
    return tv.tv_sec;
}
EOC
system('cc', '-shared', '-fPIC', '-O2', '-o', "$dir/shift.so", "$dir/shift.c",
       '-ldl') == 0 or plan skip_all => 'no C compiler for the clock shift';

my $r = ApiKeyTest::Redis->start;
my $http = <<'EOT';
    api_key_zone  keys:1m usage_flush=500ms;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            api_key keys;
            empty_gif;
        }
    }
EOT

my $key = random_key('day');
my $h = add_key($r, $key, id => 'day-change');

# nginx's clock 5 s before the next midnight (UTC)
my $now = int(time);
my $shift = $now - $now % 86400 + 86400 - 5 - $now;
my $n = do {
    local $ENV{LD_PRELOAD} = "$dir/shift.so";
    local $ENV{AK_TIME_SHIFT} = $shift;
    ApiKeyTest::Nginx->start(http => $http, workers => 1, redis => $r,
                             vars => { REDIS => $r->port });
};
my $port = $n->port;
wait_subscribed($r, 1, timeout => 10);

my $midnight = $now - $now % 86400 + 86400;
my %mon = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
           Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);

# an HTTP date (nginx writes "Thu, 03 Dec 2026 23:59:58 GMT"): its time
sub date_time {
    my ($d) = @_;
    return undef unless defined $d
        && $d =~ /^\w{3}, (\d\d) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$/;
    return timegm($6, $5, $4, $1, $mon{$2}, $3);
}
my $day0 = $midnight - 86400;

# back to back on one connection each, until 2 s after midnight
my (%sent, $bad);
while (time + $shift < $midnight + 2) {
    my $res = http_get($port, '/', headers => { 'X-API-Key' => $key });
    $bad++ if $res->status != 200;
    my $t = date_time($res->header('Date'));
    $bad++, next unless defined $t;
    $sent{ $t - $t % 86400 }++;
    sleep 0.01;
}
ok(!$bad, 'every request 200, with a Date');
ok($sent{$day0} && $sent{$midnight},
   "requests on both days: $sent{$day0} before midnight, "
   . "$sent{$midnight} after")
    or diag explain \%sent;

sub allowed {
    my %c = @{ $r->cmd('HGETALL', "apikey:usage:{apikey:$h}:requests:$_[0]")
               // [] };
    return $c{allowed} // 0;
}

ok(wait_until(sub { allowed($day0) == $sent{$day0}
                    && allowed($midnight) == $sent{$midnight} },
              timeout => 10),
   'each day has its own requests in Redis, no more, no less')
    or diag explain { day0 => [ allowed($day0), $sent{$day0} ],
                      day1 => [ allowed($midnight), $sent{$midnight} ] };

done_testing;
