/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: the --redis URL and the TLS options (pure: no I/O).
 */

#ifndef APIKEYCTL_URL_HPP
#define APIKEYCTL_URL_HPP

#include <string>
#include <vector>

namespace apikeyctl {

struct HostPort {
    std::string  host;              /* without [] for IPv6 */
    int          port = 6379;
};

/*
 * redis://[user[:password]@]host[:port][/db], the same with rediss:// (TLS),
 * or unix:/path.sock[?db=N], as the module's api_key_redis: "user@" alone
 * names an ACL user whose password comes from elsewhere; an IPv6 host goes
 * in brackets.
 *
 * Also redis-sentinel://[user[:password]@]h1[:p1],h2[:p2],.../MASTER[/db]
 * (sentinels, port 26379 by default; the user and password are the data
 * nodes', the sentinels' own password comes from --sentinel-password-file)
 * and redis-cluster://[user[:password]@]h1[:p1],h2[:p2],... (seed nodes;
 * database 0 only); rediss-sentinel:// and rediss-cluster:// speak TLS to
 * the data nodes (not to the sentinels).
 */
struct RedisUrl {
    enum Kind { kSingle, kSentinel, kCluster };

    Kind         kind = kSingle;
    std::vector<HostPort> nodes;    /* sentinels or cluster seed nodes */
    std::string  master;            /* redis-sentinel://.../MASTER */

    bool         unix_socket = false;
    bool         tls = false;       /* rediss:// */
    std::string  host;              /* without [] for IPv6 */
    int          port = 6379;
    std::string  path;
    std::string  user;
    std::string  password;
    bool         has_password = false;
    long         db = 0;

    /* For messages: never holds the password (nor the user). */
    std::string  where() const;

    /* a plain redis:// (or rediss://) URL of one node of a sentinel or
     * cluster URL, with its credentials, TLS and database */
    RedisUrl     node(const std::string &host, int port) const;
};

/* Throws a usage Error naming the URL form on bad input; never echoes the
 * URL (it may hold a password). */
RedisUrl parse_redis_url(const std::string &url);


/*
 * The TLS options of a rediss:// connection (--tls-ca, --tls-cert,
 * --tls-key, --tls-name, --tls-insecure or their APIKEY_TLS_* variables).
 * Each `*_from` names where the value came from, for messages.
 */
struct TlsOptions {
    std::string  ca;            /* empty: the system's CA store */
    std::string  cert;          /* client certificate (PEM chain) */
    std::string  key;           /* its private key (PEM) */
    std::string  name;          /* expected name (and SNI); empty: host */
    bool         insecure = false;

    std::string  ca_from = "--tls-ca";
    std::string  cert_from = "--tls-cert";
    std::string  key_from = "--tls-key";
    std::string  name_from = "--tls-name";
    std::string  insecure_from = "--tls-insecure";

    bool any() const
    {
        return !ca.empty() || !cert.empty() || !key.empty() || !name.empty()
               || insecure;
    }
};

/*
 * Throws a usage Error when the options do not fit the URL: TLS options on
 * a redis:// or unix: URL, a certificate without its key (or the reverse),
 * --tls-insecure with --tls-ca (it would be ignored; with --tls-insecure,
 * --tls-name only names the SNI), a name that is not a host name or an
 * address.
 */
void check_tls_options(const RedisUrl &url, const TlsOptions &tls);

/* "1", "yes", "true", "on" -> true; "", "0", "no", "false", "off" -> false;
 * else a usage Error naming `what`. */
bool parse_bool_env(const std::string &v, const char *what);

/* The name the server certificate must match: --tls-name, else the host. */
std::string tls_expected_name(const RedisUrl &url, const TlsOptions &tls);

/* An IPv4 or IPv6 address literal (no brackets). */
bool is_ip_literal(const std::string &s);

} // namespace apikeyctl

#endif
