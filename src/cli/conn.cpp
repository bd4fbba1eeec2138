/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: a small blocking connection to Redis (socket + OpenSSL).
 *
 * The socket is non-blocking and every wait is a poll() bounded by the
 * caller's deadline, so that connect, the TLS handshake and each reply are
 * limited by --timeout whatever the server does.
 */

#include "conn.hpp"

#include "util.hpp"

#include <cerrno>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace apikeyctl {

double mono_now()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}


static std::string fmt_seconds(double s)
{
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", s);
    return buf;
}


/* the oldest error of OpenSSL's queue as text (and the queue emptied) */
static std::string ssl_error_text()
{
    unsigned long e = ERR_get_error();
    std::string text;

    if (e != 0) {
        const char *reason = ERR_reason_error_string(e);
        if (reason) {
            text = reason;
        } else {
            char buf[256];
            ERR_error_string_n(e, buf, sizeof(buf));
            text = buf;
        }
    }

    ERR_clear_error();
    return text;
}


/* a file the user named: readable, a regular file (a usage error if not) */
static void check_readable(const std::string &path, const std::string &what)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        usage_error("cannot read " + what + " " + quoted(path) + ": "
                    + std::strerror(errno));
    }

    struct stat st;
    bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);

    if (!regular) {
        usage_error("cannot read " + what + " " + quoted(path)
                    + ": not a regular file");
    }
}


void UniqueFd::reset(int f) noexcept
{
    if (fd >= 0) {
        close(fd);
    }
    fd = f;
}


Conn::Conn(const RedisUrl &url, const TlsOptions &tls, double timeout_s)
    : where_(url.where()), timeout_s_(timeout_s)
{
    /* a server closing the connection must be an error we report, not a
     * silent death in write(2) */
    std::signal(SIGPIPE, SIG_IGN);

    if (url.tls) {
        /* the files first: a usage error needs no network */
        setup_tls(url, tls);
    }

    double deadline = mono_now() + timeout_s;

    if (url.unix_socket) {
        connect_unix(url.path, deadline);
    } else {
        connect_socket(url, deadline);
    }

    if (url.tls) {
        handshake(url, tls, mono_now() + timeout_s);
    }
}


Conn::~Conn()
{
    if (ssl_ && tls_up_) {
        /* close_notify, best effort: the socket is non-blocking and the
         * answer is not waited for */
        SSL_shutdown(ssl_.get());
        ERR_clear_error();
    }
}


void Conn::wait(short events, double deadline, const char *during)
{
    for ( ;; ) {
        double left = deadline - mono_now();
        if (left <= 0) {
            /* a plaintext server waits for a line that a ClientHello
             * never ends */
            bool hs = ssl_ && !tls_up_;
            fail(kExitRedis, "redis at " + where_ + ": "
                             + (*during ? std::string(during) + ": " : "")
                             + "no answer within " + fmt_seconds(timeout_s_)
                             + "s" + (hs ? " (is it a TLS port? redis:// "
                                           "is plaintext)" : ""));
        }

        struct pollfd p;
        p.fd = fd_.fd;
        p.events = events;
        p.revents = 0;

        double ms = std::ceil(left * 1000);
        int n = poll(&p, 1, ms > INT_MAX ? INT_MAX : static_cast<int>(ms));

        if (n > 0) {
            return;     /* ready, or an error the next call reports */
        }

        if (n < 0 && errno != EINTR) {
            fail(kExitRedis, std::string("poll: ") + std::strerror(errno));
        }
    }
}


void Conn::connect_socket(const RedisUrl &url, double deadline)
{
    struct addrinfo hints;
    std::memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;

    struct addrinfo *res = nullptr;
    std::string port = std::to_string(url.port);
    int rc = getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res);

    if (rc != 0) {
        std::string why = rc == EAI_SYSTEM ? std::strerror(errno)
                                           : gai_strerror(rc);
        fail(kExitRedis, "cannot connect to redis at " + where_
                         + ": cannot resolve " + quoted(url.host) + ": "
                         + why);
    }

    std::unique_ptr<struct addrinfo, void (*)(struct addrinfo *)>
        list(res, freeaddrinfo);
    std::string why = "no address";

    for (struct addrinfo *ai = res; ai != nullptr; ai = ai->ai_next) {
        int fd = socket(ai->ai_family,
                        ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            why = std::strerror(errno);
            continue;
        }

        fd_.reset(fd);

        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                why = std::strerror(errno);
                fd_.reset();
                continue;
            }

            struct pollfd p;
            p.fd = fd;
            p.events = POLLOUT;
            p.revents = 0;
            int n;

            do {
                double ms = std::ceil((deadline - mono_now()) * 1000);
                n = poll(&p, 1, ms <= 0 ? 0 : ms > INT_MAX
                                              ? INT_MAX : static_cast<int>(ms));
            } while (n < 0 && errno == EINTR);

            if (n == 0) {
                fd_.reset();
                fail(kExitRedis, "cannot connect to redis at " + where_
                                 + ": no answer within "
                                 + fmt_seconds(timeout_s_) + "s");
            }

            int err = 0;
            socklen_t len = sizeof(err);
            if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
                err = errno;
            }

            if (err != 0) {
                why = std::strerror(err);
                fd_.reset();
                continue;
            }
        }

        int one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return;
    }

    fail(kExitRedis, "cannot connect to redis at " + where_ + ": " + why);
}


void Conn::connect_unix(const std::string &path, double deadline)
{
    struct sockaddr_un sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;

    if (path.size() >= sizeof(sa.sun_path)) {
        usage_error("the unix socket path is longer than "
                    + std::to_string(sizeof(sa.sun_path) - 1) + " bytes");
    }
    std::memcpy(sa.sun_path, path.data(), path.size());

    fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd_.fd < 0) {
        fail(kExitRedis, std::string("socket: ") + std::strerror(errno));
    }

    if (connect(fd_.fd, reinterpret_cast<struct sockaddr *>(&sa), sizeof(sa))
        == 0)
    {
        return;
    }

    if (errno != EINPROGRESS && errno != EAGAIN) {
        fail(kExitRedis, "cannot connect to redis at " + where_ + ": "
                         + std::strerror(errno));
    }

    wait(POLLOUT, deadline, "connect");

    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd_.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        fail(kExitRedis, "cannot connect to redis at " + where_ + ": "
                         + std::strerror(err));
    }
}


void Conn::setup_tls(const RedisUrl &url, const TlsOptions &tls)
{
    ERR_clear_error();

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) {
        fail(kExitInternal, "TLS: cannot create a context: "
                            + ssl_error_text());
    }
    ctx_.reset(ctx);

    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        fail(kExitInternal, "TLS: cannot require TLS 1.2: " + ssl_error_text());
    }

    if (tls.insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);

    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);

        if (!tls.ca.empty()) {
            check_readable(tls.ca, tls.ca_from);
            if (SSL_CTX_load_verify_locations(ctx, tls.ca.c_str(), nullptr)
                != 1)
            {
                usage_error(tls.ca_from + " " + quoted(tls.ca)
                            + ": no CA certificate in it (PEM expected): "
                            + ssl_error_text());
            }

        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            fail(kExitInternal, "TLS: cannot load the system's CA "
                                "certificates: " + ssl_error_text());
        }
    }

    if (!tls.cert.empty()) {
        client_cert_ = true;
        check_readable(tls.cert, tls.cert_from);
        check_readable(tls.key, tls.key_from);

        if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str()) != 1) {
            usage_error(tls.cert_from + " " + quoted(tls.cert)
                        + ": not a certificate (PEM expected): "
                        + ssl_error_text());
        }

        if (SSL_CTX_use_PrivateKey_file(ctx, tls.key.c_str(),
                                        SSL_FILETYPE_PEM) != 1)
        {
            std::string why = ssl_error_text();
            if (why.find("key values mismatch") != std::string::npos) {
                usage_error(tls.key_from + " " + quoted(tls.key)
                            + " is not the key of " + tls.cert_from + " "
                            + quoted(tls.cert));
            }
            usage_error(tls.key_from + " " + quoted(tls.key)
                        + ": not a private key (PEM, unencrypted, "
                          "expected): " + why);
        }

        if (SSL_CTX_check_private_key(ctx) != 1) {
            usage_error(tls.key_from + " " + quoted(tls.key)
                        + " is not the key of " + tls.cert_from + " "
                        + quoted(tls.cert));
        }
    }

    SSL *ssl = SSL_new(ctx);
    if (ssl == nullptr) {
        fail(kExitInternal, "TLS: " + ssl_error_text());
    }
    ssl_.reset(ssl);

    std::string name = tls_expected_name(url, tls);

    /* SNI: a host name only (RFC 6066: never an address) */
    if (!is_ip_literal(name)
        && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1)
    {
        fail(kExitInternal, "TLS: cannot set the server name: "
                            + ssl_error_text());
    }

    if (!tls.insecure) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        int ok;

        if (is_ip_literal(name)) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
        } else {
            X509_VERIFY_PARAM_set_hostflags(
                param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
        }

        if (ok != 1) {
            fail(kExitInternal, "TLS: cannot set the expected name: "
                                + ssl_error_text());
        }
    }
}


void Conn::handshake(const RedisUrl &url, const TlsOptions &tls,
                     double deadline)
{
    SSL *ssl = ssl_.get();

    if (SSL_set_fd(ssl, fd_.fd) != 1) {
        fail(kExitInternal, "TLS: " + ssl_error_text());
    }

    for ( ;; ) {
        ERR_clear_error();
        int rc = SSL_connect(ssl);
        if (rc == 1) {
            tls_up_ = true;
            return;
        }

        int err = SSL_get_error(ssl, rc);

        if (err == SSL_ERROR_WANT_READ) {
            wait(POLLIN, deadline, "TLS handshake");
            continue;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            wait(POLLOUT, deadline, "TLS handshake");
            continue;
        }

        /* with --tls-insecure the result is recorded but not enforced:
         * it is not why the handshake failed */
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK && !tls.insecure) {
            std::string msg = "redis at " + where_
                + ": TLS: certificate verify failed: "
                + X509_verify_cert_error_string(v);

            if (v == X509_V_ERR_HOSTNAME_MISMATCH
                || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            {
                msg += " (the certificate is not for "
                       + quoted(tls_expected_name(url, tls))
                       + "; --tls-name NAME gives the name it must have)";

            } else if (tls.ca.empty()) {
                msg += " (checked against the system's CA certificates; "
                       "--tls-ca FILE gives the CA that signed it)";

            } else {
                msg += " (checked against " + tls.ca_from + " "
                       + quoted(tls.ca) + ")";
            }

            ERR_clear_error();
            fail(kExitRedis, msg);
        }

        tls_failure(err, "TLS handshake");
    }
}


void Conn::tls_failure(int ssl_err, const char *during)
{
    int saved = errno;
    std::string text = ssl_error_text();

    tls_up_ = false;

    if (text.empty()) {
        if (ssl_err == SSL_ERROR_ZERO_RETURN
            || (ssl_err == SSL_ERROR_SYSCALL && saved == 0))
        {
            text = "connection closed by the server";
        } else if (ssl_err == SSL_ERROR_SYSCALL) {
            text = std::strerror(saved);
        } else {
            text = "error " + std::to_string(ssl_err);
        }
    }

    std::string hint;

    if (text.find("certificate required") != std::string::npos
        || text.find("handshake failure") != std::string::npos)
    {
        hint = " (does the server require a client certificate? "
               "--tls-cert and --tls-key give one)";

    } else if (text.find("wrong version number") != std::string::npos
               || text.find("packet length too long") != std::string::npos
               || text.find("record layer failure") != std::string::npos)
    {
        hint = " (is it a TLS port? redis:// is plaintext)";

    } else if (text.find("unknown ca") != std::string::npos
               || text.find("bad certificate") != std::string::npos
               || text.find("certificate unknown") != std::string::npos)
    {
        hint = " (the server refused the client certificate)";

    } else if (!received_ && std::strcmp(during, "TLS handshake") != 0) {
        /* TLS 1.3: the server checks the client certificate after the
         * client has finished its handshake, and answers a missing or
         * refused one by closing the connection */
        hint = client_cert_
               ? " (after the TLS handshake, before any answer: did the "
                 "server refuse the client certificate?)"
               : " (after the TLS handshake, before any answer: does the "
                 "server require a client certificate? --tls-cert and "
                 "--tls-key give one)";
    }

    fail(kExitRedis, "redis at " + where_ + ": TLS"
                     + (*during ? std::string(" (") + during + ")" : "")
                     + ": " + text + hint);
}


void Conn::write_all(const char *data, size_t len, double deadline)
{
    size_t off = 0;

    while (off < len) {
        size_t chunk = len - off;

        if (ssl_) {
            int n = chunk > INT_MAX ? INT_MAX : static_cast<int>(chunk);
            ERR_clear_error();
            errno = 0;
            int rc = SSL_write(ssl_.get(), data + off, n);

            if (rc > 0) {
                off += static_cast<size_t>(rc);
                continue;
            }

            int err = SSL_get_error(ssl_.get(), rc);
            if (err == SSL_ERROR_WANT_WRITE) {
                wait(POLLOUT, deadline, "sending");
                continue;
            }
            if (err == SSL_ERROR_WANT_READ) {
                wait(POLLIN, deadline, "sending");
                continue;
            }
            tls_failure(err, "");
        }

        ssize_t n = send(fd_.fd, data + off, chunk, MSG_NOSIGNAL);
        if (n >= 0) {
            off += static_cast<size_t>(n);
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wait(POLLOUT, deadline, "sending");
            continue;
        }
        fail(kExitRedis, "redis at " + where_ + ": sending: "
                         + (errno == EPIPE || errno == ECONNRESET
                                ? std::string("connection closed by the "
                                              "server")
                                : std::string(std::strerror(errno))));
    }
}


size_t Conn::read_some(char *buf, size_t cap, double deadline)
{
    for ( ;; ) {
        if (ssl_) {
            int n = cap > INT_MAX ? INT_MAX : static_cast<int>(cap);
            ERR_clear_error();
            errno = 0;
            int rc = SSL_read(ssl_.get(), buf, n);

            if (rc > 0) {
                received_ = true;
                return static_cast<size_t>(rc);
            }

            int err = SSL_get_error(ssl_.get(), rc);
            if (err == SSL_ERROR_WANT_READ) {
                wait(POLLIN, deadline, "");
                continue;
            }
            if (err == SSL_ERROR_WANT_WRITE) {
                wait(POLLOUT, deadline, "");
                continue;
            }
            tls_failure(err, "");
        }

        ssize_t n = recv(fd_.fd, buf, cap, 0);
        if (n > 0) {
            received_ = true;
            return static_cast<size_t>(n);
        }
        if (n == 0 || errno == ECONNRESET) {
            /* a TLS server closes on the first bytes of plaintext */
            fail(kExitRedis, "redis at " + where_
                             + ": connection closed by the server"
                             + (received_ ? "" : " before any answer (is it "
                                                 "a TLS port? rediss:// "
                                                 "speaks TLS)"));
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wait(POLLIN, deadline, "");
            continue;
        }
        fail(kExitRedis, "redis at " + where_ + ": "
                         + (errno == ECONNRESET
                                ? std::string("connection closed by the "
                                              "server")
                                : std::string(std::strerror(errno))));
    }
}

} // namespace apikeyctl
