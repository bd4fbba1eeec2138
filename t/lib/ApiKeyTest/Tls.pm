# SPDX-License-Identifier: BSD-2-Clause
package ApiKeyTest::Tls;

# Test certificates, made at test time with the openssl command-line tool
# in a temporary directory (EC P-256 keys, valid for 2 days):
#
#   my $pki = ApiKeyTest::Tls->new;
#   $pki->ca                       CA certificate (PEM path)
#   $pki->server_cert, ->server_key
#                                  signed by ca: CN=localhost, subjectAltName
#                                  DNS:localhost, IP:127.0.0.1
#   $pki->client_cert, ->client_key
#                                  signed by ca: CN=apikey-test-client,
#                                  extendedKeyUsage clientAuth
#   $pki->other_ca                 a second, unrelated CA ("wrong CA")
#   $pki->other_server_cert, ->other_server_key
#                                  localhost/127.0.0.1, signed by other_ca
#   my ($crt, $key) = $pki->cert_for('other.example', ip => [...],
#                                    ca => 'main'|'other', client => 1)
#                                  a new certificate for other names ("name
#                                  mismatch"), or a new one for the same
#                                  names (a server restarted with a new
#                                  certificate: each call makes a new key)
#   $pki->redis_tls(auth_clients => 'no'|'yes'|'optional', cert =>, key =>)
#                                  the tls => {...} of ApiKeyTest::Redis->start
#                                  (server_cert/key, ca; the harness's own
#                                  connection presents the client certificate)
#   $pki->dir                      where the files are
#
# The files are readable by anyone (test keys only): nginx workers run as
# nobody when the tests run as root.
#
# Part of the test harness: loaded by t/lib/ApiKeyTest.pm (use ApiKeyTest;).

use strict;
use warnings;
use v5.36;
use Carp qw(croak);
use POSIX ();

our $OPENSSL = $ENV{AK_OPENSSL} // 'openssl';

my $SERIAL = 1000 + int rand 100000;

sub new {
    my ($class, %o) = @_;
    my $self = bless { dir => $o{dir} // ApiKeyTest::tmpdir(), n => 0 },
        $class;
    $self->{main} = $self->_make_ca('main', 'ApiKeyTest CA');
    $self->{other} = $self->_make_ca('other', 'ApiKeyTest other CA');
    @{$self}{qw(server_cert server_key)} =
        $self->cert_for('localhost', ip => ['127.0.0.1'], file => 'server');
    @{$self}{qw(client_cert client_key)} =
        $self->cert_for('apikey-test-client', client => 1, file => 'client');
    @{$self}{qw(other_server_cert other_server_key)} =
        $self->cert_for('localhost', ip => ['127.0.0.1'], ca => 'other',
                        file => 'other-server');
    return $self;
}

sub dir               { $_[0]{dir} }
sub ca                { $_[0]{main}{cert} }
sub other_ca          { $_[0]{other}{cert} }
sub server_cert       { $_[0]{server_cert} }
sub server_key        { $_[0]{server_key} }
sub client_cert       { $_[0]{client_cert} }
sub client_key        { $_[0]{client_key} }
sub other_server_cert { $_[0]{other_server_cert} }
sub other_server_key  { $_[0]{other_server_key} }

# runs openssl; dies with its output on failure
sub _run {
    my ($self, @args) = @_;
    my $out = "$self->{dir}/openssl.out";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec($OPENSSL, @args) or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    croak "openssl @args: exit " . ($? >> 8) . "\n" . ApiKeyTest::slurp($out)
        if $?;
}

sub _key_args { ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                 '-nodes') }

sub _make_ca {
    my ($self, $tag, $cn) = @_;
    my $d = $self->{dir};
    $self->_run('req', '-x509', _key_args(), '-keyout', "$d/$tag-ca.key",
                '-out', "$d/$tag-ca.crt", '-days', 2, '-subj', "/CN=$cn",
                '-set_serial', $SERIAL++,
                '-addext', 'basicConstraints=critical,CA:TRUE',
                '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    chmod 0644, "$d/$tag-ca.key", "$d/$tag-ca.crt";
    return { cert => "$d/$tag-ca.crt", key => "$d/$tag-ca.key" };
}

# cert_for($cn, dns => [names] (default [$cn]), ip => [addresses],
#          ca => 'main'|'other', client => 1 (clientAuth only), file => base)
# -> ($cert_path, $key_path)
sub cert_for {
    my ($self, $cn, %o) = @_;
    my $ca = $self->{ $o{ca} // 'main' } or croak "cert_for: unknown ca";
    my $d = $self->{dir};
    my $base = $o{file} // sprintf('cert-%d-%s', ++$self->{n},
                                   $cn =~ s/[^A-Za-z0-9.-]/_/gr);
    my @san;
    unless ($o{client}) {
        push @san, map { "DNS:$_" } @{ $o{dns} // [$cn] };
        push @san, map { "IP:$_" } @{ $o{ip} // [] };
    }
    my $ext = join "\n",
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=' . ($o{client} ? 'clientAuth' : 'serverAuth,clientAuth'),
        (@san ? 'subjectAltName=' . join(',', @san) : ()),
        '';
    ApiKeyTest::spew("$d/$base.ext", $ext);
    $self->_run('req', '-new', _key_args(), '-keyout', "$d/$base.key",
                '-out', "$d/$base.csr", '-subj', "/CN=$cn");
    $self->_run('x509', '-req', '-in', "$d/$base.csr", '-CA', $ca->{cert},
                '-CAkey', $ca->{key}, '-set_serial', $SERIAL++, '-days', 2,
                '-extfile', "$d/$base.ext", '-out', "$d/$base.crt");
    chmod 0644, "$d/$base.key", "$d/$base.crt";
    return ("$d/$base.crt", "$d/$base.key");
}

# the tls => {...} option of ApiKeyTest::Redis->start
sub redis_tls {
    my ($self, %o) = @_;
    return {
        cert => $o{cert} // $self->server_cert,
        key => $o{key} // $self->server_key,
        ca => $o{ca} // $self->ca,
        auth_clients => $o{auth_clients} // 'no',
        client_cert => $self->client_cert,
        client_key => $self->client_key,
    };
}

1;
