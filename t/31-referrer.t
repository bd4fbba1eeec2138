# SPDX-License-Identifier: BSD-2-Clause
# The "referrers" field of a record: exact hosts, "*.example.com" wildcards
# (any depth, never the bare domain), case, ports, paths, userinfo, no
# Referer, Referers that are not absolute URLs, Referers of one key taking
# turns (and the record changing between them), malformed rules.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use ApiKeyTest;
use ApiKeyTest::Policy;
use ApiKeyTest::Events;

require_module();

my $r = ApiKeyTest::Redis->start;

my $http = <<'EOT';
    api_key_zone  keys:1m ttl=60s;
    api_key_redis redis://127.0.0.1:%%REDIS%% timeout=2s;

    server {
        listen 127.0.0.1:%%PORT%%;
        api_key keys;
        root %%DIR%%/html;
        add_header X-Status $api_key_status always;
        add_header X-Id     $api_key_id always;
        location / {
            try_files /ok.txt =404;
        }
    }
EOT

my $n = ApiKeyTest::Nginx->start(http => $http, redis => $r, redis_clients => 2,
                                 vars => { REDIS => $r->port });
static_site($n);
my $port = $n->port;

sub get {
    my ($k, $ref) = @_;
    my %h = ('X-API-Key' => $k);
    $h{Referer} = $ref if defined $ref;
    return http_get($port, '/', headers => \%h);
}

sub check {
    my ($k, $rules, $ref, $want) = @_;
    my $res = get($k, $ref);
    my $what = sprintf 'referrers=%s, Referer %s', $rules,
                       defined $ref ? "\"$ref\"" : '(none)';
    if ($want eq 'ok') {
        is($res->status, 200, "$what: 200") or diag $res->as_string;
        is($res->header('X-Status'), 'ok', "$what: ok");
    } else {
        is($res->status, 403, "$what: 403") or diag $res->as_string;
        is($res->header('X-Status'), 'referrer_denied', "$what: referrer_denied");
    }
}

# --- exact host and wildcard ------------------------------------------------------
{
    my $rules = 'app.test.org,*.example.com';
    my $k = random_key('ref');
    add_key($r, $k, referrers => $rules);

    my @ok = (
        'https://app.test.org/',
        'http://app.test.org',
        'https://app.test.org/page.html?x=1',
        'https://sub.example.com/',
        'https://a.b.example.com/x/y',
        'https://deep.a.b.c.example.com/',
        'HTTPS://SUB.EXAMPLE.COM/x',
        'https://Sub.Example.Com/',
        'https://APP.TEST.ORG/',
        'https://sub.example.com:8443/',
        'https://user@sub.example.com:8443/p?q',
        'https://user:pass@sub.example.com/',
        'http://sub.example.com?q=1',
        'https://sub.example.com/path@evil.net',
    );
    my @deny = (
        'https://example.com/',                    # the bare domain
        'https://example.com.evil.net/',
        'https://evilexample.com/',
        'https://sub.example.com.evil.net/',
        'https://sub.example.com@evil.net/',       # userinfo, then the real host
        'https://user:sub.example.com@evil.net/',
        'https://evil.net/?r=https://sub.example.com/',
        'https://evil.net/sub.example.com',
        'https://evil.net#https://sub.example.com/',
        'https://test.org/',
        'https://x.app.test.org/',                 # exact rule: no subdomains
        'https://app.test.org.evil.net/',
        'https://notapp.test.org/',
        'sub.example.com',                         # no scheme
        'sub.example.com/path',
        '//sub.example.com/',
        'garbage',
        '-',
        'https://',
        'https:///sub.example.com',
        'http//sub.example.com/',
        '*.example.com',
    );
    check($k, $rules, $_, 'ok') for @ok;
    check($k, $rules, $_, 'deny') for @deny;
    check($k, $rules, undef, 'deny');               # no Referer at all
    check($k, $rules, '', 'deny');                  # an empty Referer

    my $res = get($k);
    is($res->header('WWW-Authenticate'), undef,
       'referrer_denied: no WWW-Authenticate');
}

# --- Referers taking turns: each gets its own verdict ---------------------------
# (the worker keeps the last verdict of a key's Referer rules with the
# scheme and host it was for; a Referer that only begins alike is asked
# anew, and so is any after the record changed)
{
    my $rules = 'app.test.org,*.example.com';
    my $k = random_key('turns');
    my $h = add_key($r, $k, referrers => $rules);
    my $long3 = join '.', map { $_ x 59 } qw(a b c);
    my $long4 = join '.', map { $_ x 59 } qw(a b c d);
    my @turns = (
        [ 'https://app.test.org/'               => 'ok' ],
        [ 'https://app.test.org.evil.net/'      => 'deny' ],
        [ 'https://app.test.org?x=1'            => 'ok' ],
        [ 'https://app.test.org@evil.net/'      => 'deny' ],
        [ 'https://app.test.org#top'            => 'ok' ],
        [ 'https://app.test.orgx/'              => 'deny' ],
        [ 'https://app.test.org'                => 'ok' ],
        [ 'https://app.test.org.'               => 'ok' ],
        [ 'https://app.test.org..'              => 'deny' ],
        [ 'https://app.test.org/a/b?c#d'        => 'ok' ],
        [ 'https://app.test.org:8443/'          => 'ok' ],
        [ 'https://app.test.org:8443@evil.net/' => 'deny' ],
        [ 'http://app.test.org/'                => 'ok' ],
        [ 'http://app.test.org.evil.net'        => 'deny' ],
        [ 'https://evil.net/'                   => 'deny' ],
        [ 'https://evil.net/https://app.test.org/' => 'deny' ],
        [ 'https://evil.net'                    => 'deny' ],
        [ 'https://a.example.com/'              => 'ok' ],
        [ 'https://a.example.com.evil.net/'     => 'deny' ],
        [ 'https://a.example.com/'              => 'ok' ],
        [ 'https://example.com/'                => 'deny' ],
        [ 'https://example.com/'                => 'deny' ],
        [ 'HTTPS://APP.TEST.ORG/'               => 'ok' ],
        [ 'https://app.test.org/'               => 'ok' ],
        [ 'https://[2001:db8::1]/'              => 'deny' ],
        [ 'https://app.test.org\\@evil.net/'    => 'deny' ],
        [ 'https://app.test.org%2f@evil.net/'   => 'deny' ],
        [ 'https://app.test.org/'               => 'ok' ],
        # hosts of 251 bytes (past the 256 bytes of scheme and host the
        # worker keeps) and of 191 (within them), and a name over 253
        [ "https://$long4.example.com/"         => 'ok' ],
        [ "https://$long4.example.com/x"        => 'ok' ],
        [ "https://$long4.example.com.evil.net/" => 'deny' ],
        [ "https://$long3.example.com/"         => 'ok' ],
        [ "https://$long3.example.com?x"        => 'ok' ],
        [ "https://$long3.example.com.evil.net/" => 'deny' ],
        [ "https://xxx.$long4.example.com/"     => 'deny' ],
        [ 'https://app.test.org/'               => 'ok' ],
    );
    check($k, $rules, $_->[0], $_->[1]) for @turns, reverse @turns;
    check($k, $rules, undef, 'deny');
    check($k, $rules, 'https://app.test.org/', 'ok');

    # the record changes right after app.test.org passed: asked anew
    add_key($r, $k, referrers => 'other.test.org');
    is(publish($r, "update $h"), 1, 'PUBLISH update: one worker hears it');
    ok(wait_until(sub { get($k, 'https://app.test.org/')->status == 403 }, timeout => 5),
       'after the change, app.test.org is denied');
    # (the first request after the change viewed the new record afresh;
    # this one uses that view, and must not find the old verdict there)
    check($k, 'other.test.org', 'https://app.test.org/x', 'deny');
    check($k, 'other.test.org', 'https://other.test.org/', 'ok');
    check($k, 'other.test.org', 'https://app.test.org/', 'deny');
    check($k, 'other.test.org', 'https://other.test.org/x', 'ok');
}

# --- a key without referrers needs no Referer ----------------------------------
{
    my $k = random_key('noref');
    add_key($r, $k, owner => 'x');
    is(get($k)->status, 200, 'no referrers field: no Referer is fine');
    is(get($k, 'garbage')->status, 200, 'no referrers field: any Referer is fine');
}

# --- a rule written with a trailing dot, and upper case rules ---------------------
{
    my $k = random_key('case');
    add_key($r, $k, referrers => 'WWW.Example.NET');
    check($k, 'WWW.Example.NET', 'https://www.example.net/', 'ok');
    check($k, 'WWW.Example.NET', 'https://example.net/', 'deny');
}

# --- malformed rules: bad_record ------------------------------------------------
{
    for my $rules ('https://example.com/', 'exa mple.com', 'a..b.com', 'ex@mple.com') {
        my $k = random_key('badref');
        my $h = add_key($r, $k, referrers => $rules);
        my $mark = $n->log_mark;
        my $res = get($k, 'https://example.com/');
        is($res->status, 401, "referrers=\"$rules\": 401") or diag $res->as_string;
        is($res->header('X-Status'), 'bad_record', "referrers=\"$rules\": bad_record");
        my $id = substr($h, 0, 12);
        my $log = '';
        wait_until(sub { $log = $n->error_log_since($mark); $log =~ /\[warn\].*\Q$id\E/ },
                   timeout => 3);
        my @w = grep { /\[warn\]/ && /\Q$id\E/ } split /\n/, $log;
        ok((grep { /referrers/ } @w),
           "referrers=\"$rules\": a warning names the key id and the field")
            or diag join "\n", grep { !/\[debug\]/ } split /\n/, $log;
    }
}

unlike($n->error_log, qr/exited on signal/, 'no worker crashed');
is_deeply([ $n->problems ], [], 'no alert, crit or emerg in the error log');
$n->stop;

done_testing;
