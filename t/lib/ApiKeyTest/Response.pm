# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Response;

# An HTTP response (http_get, http_request, HTTPConn, http_batch):
# status header headers body elapsed raw as_string error_message.
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;),
# whose functions it calls.

use strict;
use warnings;
use v5.36;

sub error {
    my ($class, $msg, $elapsed, $raw) = @_;
    return bless { status => 0, error => $msg, headers => {}, body => '',
                   elapsed => $elapsed, raw => $raw // '' }, $class;
}

# parse($buf): a Response, or undef if $buf is not (yet) a complete one.
# With complete_only, a close-delimited body counts as incomplete.
sub parse {
    my ($class, $buf, %o) = @_;
    my $he = index($buf, "\r\n\r\n");
    return undef if $he < 0;
    my $head = substr($buf, 0, $he);
    my $rest = substr($buf, $he + 4);
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines;
    return undef unless $sl =~ m{^HTTP/1\.[01] (\d{3})(?: (.*))?$};
    my $self = bless { status => $1 + 0, reason => $2 // '', headers => {},
                       header_list => [], raw => $buf }, $class;
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $self->{headers}{lc $k} }, $v;
        push @{ $self->{header_list} }, [$k, $v];
    }
    my $te = lc($self->header('transfer-encoding') // '');
    my $cl = $self->header('content-length');
    if ($te =~ /chunked/) {
        my $body = '';
        my $p = 0;
        while (1) {
            my $e = index($rest, "\r\n", $p);
            return undef if $e < 0;
            my ($size) = substr($rest, $p, $e - $p) =~ /^([0-9a-fA-F]+)/;
            return undef unless defined $size;
            $size = hex $size;
            $p = $e + 2;
            if ($size == 0) {
                # trailers end with an empty line
                return undef if index($rest, "\r\n", $p) < 0;
                last;
            }
            return undef if length($rest) < $p + $size + 2;
            $body .= substr($rest, $p, $size);
            $p += $size + 2;
        }
        $self->{body} = $body;
    } elsif (defined $cl) {
        return undef if length($rest) < $cl;
        $self->{body} = substr($rest, 0, $cl);
    } elsif ($self->{status} == 204 || $self->{status} == 304
             || $self->{status} < 200) {
        $self->{body} = '';
    } else {
        return undef if $o{complete_only};
        $self->{body} = $rest;
    }
    return $self;
}

sub status  { $_[0]{status} }
sub body    { $_[0]{body} }
sub elapsed { $_[0]{elapsed} }
sub error_message { $_[0]{error} }
sub raw     { $_[0]{raw} }

# header($name): the values of that header joined by ", " (undef if absent)
sub header {
    my ($self, $name) = @_;
    my $v = $self->{headers}{lc $name} or return undef;
    return join ', ', @$v;
}

# headers($name): every value of that header
sub headers {
    my ($self, $name) = @_;
    return @{ $self->{headers}{lc $name} // [] };
}

sub as_string {
    my ($self) = @_;
    return "error: $self->{error}" if $self->{error};
    my $s = "$self->{status}";
    $s .= " [$_->[0]: $_->[1]]" for @{ $self->{header_list} };
    $s .= " body=" . substr($self->{body} // '', 0, 300);
    return $s;
}

1;
