/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: a small blocking connection to Redis: a TCP or unix socket,
 * with TLS (OpenSSL) for rediss://.  Bytes only: the RESP codec is in
 * redis.cpp.  Every wait is bounded by a deadline (poll on a non-blocking
 * socket); every failure throws Error(kExitRedis) (kExitUsage for an
 * unreadable or unusable certificate or key file) with a clear message.
 */

#ifndef APIKEYCTL_CONN_HPP
#define APIKEYCTL_CONN_HPP

#include <memory>
#include <string>

#include <openssl/ssl.h>

#include "url.hpp"

namespace apikeyctl {

struct SslCtxFree {
    void operator()(SSL_CTX *c) const noexcept { SSL_CTX_free(c); }
};

/* a file descriptor closed when it goes out of scope (also when the
 * constructor of its owner throws) */
struct UniqueFd {
    int fd = -1;
    UniqueFd() = default;
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    ~UniqueFd() { reset(); }
    void reset(int f = -1) noexcept;
};

struct SslFree {
    void operator()(SSL *s) const noexcept { SSL_free(s); }
};


class Conn {
public:
    /* Connects (and for rediss:// completes the TLS handshake, verifying
     * the server unless tls.insecure) within timeout_s each. */
    Conn(const RedisUrl &url, const TlsOptions &tls, double timeout_s);
    ~Conn();

    Conn(const Conn &) = delete;
    Conn &operator=(const Conn &) = delete;

    /* Sends every byte before the deadline (a monotonic time in s). */
    void write_all(const char *data, size_t len, double deadline);

    /* Reads what is there (at least one byte) into buf, waiting until the
     * deadline; the server closing the connection throws. */
    size_t read_some(char *buf, size_t cap, double deadline);

    const std::string &where() const noexcept { return where_; }

private:
    void connect_socket(const RedisUrl &url, double deadline);
    void connect_unix(const std::string &path, double deadline);
    void setup_tls(const RedisUrl &url, const TlsOptions &tls);
    void handshake(const RedisUrl &url, const TlsOptions &tls,
                   double deadline);
    /* waits for POLLIN or POLLOUT; throws on timeout */
    void wait(short events, double deadline, const char *during);
    [[noreturn]] void tls_failure(int ssl_err, const char *during);

    /* destroyed in reverse order: the SSL, its context, then the socket */
    UniqueFd fd_;
    std::unique_ptr<SSL_CTX, SslCtxFree> ctx_;
    std::unique_ptr<SSL, SslFree> ssl_;
    bool tls_up_ = false;       /* handshake done, no fatal error since */
    bool received_ = false;     /* a byte of an answer has arrived */
    bool client_cert_ = false;  /* --tls-cert given */
    std::string where_;
    double timeout_s_;
};

/* A monotonic clock in seconds. */
double mono_now();

} // namespace apikeyctl

#endif
