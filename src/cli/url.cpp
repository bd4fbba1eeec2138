/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: the --redis URL and the TLS options (pure: no I/O).
 */

#include "url.hpp"

#include "util.hpp"

#include <arpa/inet.h>
#include <cstdint>

namespace apikeyctl {

static const char kUrlForms[] =
    "expected redis://[user[:password]@]host:port[/db], the same with "
    "rediss:// (TLS), unix:/path.sock[?db=N], "
    "redis-sentinel://[user[:password]@]host:port,host:port,.../MASTER[/db] "
    "or redis-cluster://[user[:password]@]host:port,host:port,... (rediss-: "
    "TLS)";


static std::string host_port(const std::string &host, int port)
{
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]"
                                                        : host;
    return h + ":" + std::to_string(port);
}


std::string RedisUrl::where() const
{
    if (unix_socket) {
        return "unix:" + path;
    }

    if (kind != kSingle) {
        std::string list;
        for (const HostPort &n : nodes) {
            list += (list.empty() ? "" : ",") + host_port(n.host, n.port);
        }
        return (kind == kSentinel ? "sentinels " + list + " (master "
                                    + master + ")"
                                  : "cluster " + list)
               + (tls ? " (TLS)" : "");
    }

    return host_port(host, port) + (tls ? " (TLS)" : "");
}


RedisUrl RedisUrl::node(const std::string &h, int p) const
{
    RedisUrl u;
    u.tls = tls;
    u.host = h;
    u.port = p;
    u.user = user;
    u.password = password;
    u.has_password = has_password;
    u.db = db;
    return u;
}


static long parse_db(const std::string &db)
{
    uint64_t v;
    if (!parse_uint(db, 1000000, &v)) {
        /* not echoed: a URL missing its '@' may have a password here */
        usage_error("invalid --redis URL: the database must be a number "
                    "from 0 to 1000000");
    }
    return static_cast<long>(v);
}


/* host[:port] or [v6][:port]; the port is left as it is when absent */
static void parse_authority(const std::string &authority, std::string *host,
                            int *port_out)
{
    std::string port;

    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string::npos) {
            usage_error(std::string("invalid --redis URL: unclosed [ in the "
                                    "host; ") + kUrlForms);
        }
        *host = authority.substr(1, close - 1);
        std::string after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') {
                usage_error(std::string("invalid --redis URL: ") + kUrlForms);
            }
            port = after.substr(1);
            if (port.empty()) {
                usage_error("invalid --redis URL: empty port");
            }
        }
    } else {
        size_t colon = authority.rfind(':');
        if (colon != std::string::npos
            && authority.find(':') != colon)
        {
            usage_error("invalid --redis URL: write an IPv6 address in "
                        "brackets, as redis://[::1]:6379");
        }
        *host = authority.substr(0, colon);
        if (colon != std::string::npos) {
            port = authority.substr(colon + 1);
            if (port.empty()) {
                usage_error("invalid --redis URL: empty port");
            }
        }
    }

    if (host->empty()) {
        usage_error(std::string("invalid --redis URL: no host; ") + kUrlForms);
    }

    if (has_control_chars(*host)) {
        /* not echoed either: it may be a mistyped password */
        usage_error("invalid --redis URL: control characters in the host");
    }

    if (!port.empty()) {
        uint64_t p;
        if (!parse_uint(port, 65535, &p) || p == 0) {
            /* not echoed: in redis://user:password (no host) the
             * password would be read as the port */
            usage_error("invalid --redis URL: the port must be a number "
                        "from 1 to 65535");
        }
        *port_out = static_cast<int>(p);
    }
}


RedisUrl parse_redis_url(const std::string &url)
{
    RedisUrl u;

    /* never echo the URL itself: it may hold a password */

    if (url.size() > 5 && url.compare(0, 5, "unix:") == 0) {
        u.unix_socket = true;
        std::string rest = url.substr(5);
        size_t q = rest.find('?');

        if (q != std::string::npos) {
            std::string query = rest.substr(q);
            if (query.size() < 5 || query.compare(0, 4, "?db=") != 0) {
                usage_error(std::string("invalid --redis URL: ") + kUrlForms);
            }
            u.db = parse_db(query.substr(4));
            rest = rest.substr(0, q);
        }

        if (rest.empty() || rest[0] != '/') {
            usage_error(std::string("invalid --redis URL: the socket path "
                                    "must be absolute; ") + kUrlForms);
        }

        u.path = rest;
        return u;
    }

    std::string rest;

    static const struct {
        const char      *scheme;
        bool             tls;
        RedisUrl::Kind   kind;
    } schemes[] = {
        {"redis://", false, RedisUrl::kSingle},
        {"rediss://", true, RedisUrl::kSingle},
        {"redis-sentinel://", false, RedisUrl::kSentinel},
        {"rediss-sentinel://", true, RedisUrl::kSentinel},
        {"redis-cluster://", false, RedisUrl::kCluster},
        {"rediss-cluster://", true, RedisUrl::kCluster},
    };
    bool known = false;

    for (const auto &sc : schemes) {
        size_t n = std::char_traits<char>::length(sc.scheme);
        if (url.size() > n && url.compare(0, n, sc.scheme) == 0) {
            u.tls = sc.tls;
            u.kind = sc.kind;
            rest = url.substr(n);
            known = true;
            break;
        }
    }

    if (!known) {
        usage_error(std::string("invalid --redis URL: ") + kUrlForms);
    }

    /*
     * The userinfo ends at the last '@' of the whole URL, not of the part
     * before the first '/': a password may hold a '/' (neither a host nor a
     * database ever holds an '@'), and it must not end up in the host or the
     * database, which error messages would name.
     */
    size_t at = rest.rfind('@');
    std::string userinfo;
    if (at != std::string::npos) {
        userinfo = rest.substr(0, at);
        rest = rest.substr(at + 1);
    }

    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);

    if (slash != std::string::npos) {
        std::string db = rest.substr(slash + 1);

        if (u.kind == RedisUrl::kSentinel) {
            /* MASTER[/db] */
            size_t s2 = db.find('/');
            u.master = db.substr(0, s2);
            db = s2 == std::string::npos ? std::string() : db.substr(s2 + 1);
            if (u.master.empty() || has_control_chars(u.master)
                || u.master.size() > 256)
            {
                usage_error("invalid --redis URL: the master's name (after "
                            "the hosts: redis-sentinel://host:port,.../"
                            "MASTER) must be 1 to 256 printable characters");
            }
        }

        if (!db.empty()) {
            u.db = parse_db(db);
        }

        if (u.kind == RedisUrl::kCluster && u.db != 0) {
            usage_error("invalid --redis URL: a Redis Cluster has database "
                        "0 only");
        }
    }

    if (u.kind == RedisUrl::kSentinel && u.master.empty()) {
        usage_error("invalid --redis URL: name the master: "
                    "redis-sentinel://host:port,host:port,.../MASTER[/db]");
    }

    if (at != std::string::npos) {
        size_t colon = userinfo.find(':');

        if (colon != std::string::npos) {
            u.user = userinfo.substr(0, colon);
            u.password = userinfo.substr(colon + 1);
        } else {
            /* redis://user@host: the password comes from --password-file
             * or APIKEY_REDIS_PASSWORD, as the module's password_file */
            u.user = userinfo;
        }

        u.has_password = !u.password.empty();
    }

    if (u.kind == RedisUrl::kSingle) {
        parse_authority(authority, &u.host, &u.port);
        return u;
    }

    /* a list of hosts */
    int def_port = u.kind == RedisUrl::kSentinel ? 26379 : 6379;
    size_t b = 0;
    for ( ;; ) {
        size_t comma = authority.find(',', b);
        HostPort hp;
        hp.port = def_port;
        parse_authority(authority.substr(b, comma == std::string::npos
                                                ? std::string::npos
                                                : comma - b),
                        &hp.host, &hp.port);
        u.nodes.push_back(hp);
        if (comma == std::string::npos) {
            break;
        }
        b = comma + 1;
    }
    if (u.nodes.size() > 64) {
        usage_error("invalid --redis URL: more than 64 hosts");
    }
    u.host = u.nodes[0].host;
    u.port = u.nodes[0].port;

    return u;
}


bool is_ip_literal(const std::string &s)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, s.c_str(), buf) == 1
           || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}


static bool is_host_name(const std::string &s)
{
    if (s.empty() || s.size() > 253) {
        return false;
    }

    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                  || (c >= '0' && c <= '9') || c == '.' || c == '-'
                  || c == '_';
        if (!ok) {
            return false;
        }
    }

    return s.front() != '.' && s.front() != '-';
}


void check_tls_options(const RedisUrl &url, const TlsOptions &tls)
{
    if (!url.tls) {
        const std::string *from = nullptr;

        if (!tls.ca.empty()) {
            from = &tls.ca_from;
        } else if (!tls.cert.empty()) {
            from = &tls.cert_from;
        } else if (!tls.key.empty()) {
            from = &tls.key_from;
        } else if (!tls.name.empty()) {
            from = &tls.name_from;
        } else if (tls.insecure) {
            from = &tls.insecure_from;
        }

        if (from) {
            usage_error(*from + " is a TLS option: the --redis URL must "
                        "then be rediss://...");
        }
        return;
    }

    if (tls.cert.empty() != tls.key.empty()) {
        usage_error(tls.cert.empty()
                    ? tls.key_from + " needs a client certificate too ("
                      + tls.cert_from + ")"
                    : tls.cert_from + " needs its private key too ("
                      + tls.key_from + ")");
    }

    if (tls.insecure && !tls.ca.empty()) {
        usage_error(tls.insecure_from + " does not verify the server: "
                    + tls.ca_from + " would be ignored (give one of them)");
    }

    if (!tls.name.empty() && !is_ip_literal(tls.name)
        && !is_host_name(tls.name))
    {
        usage_error(tls.name_from + " " + quoted(tls.name)
                    + ": expected a host name or an address");
    }
}


std::string tls_expected_name(const RedisUrl &url, const TlsOptions &tls)
{
    return tls.name.empty() ? url.host : tls.name;
}


bool parse_bool_env(const std::string &v, const char *what)
{
    if (v.empty() || v == "0" || v == "no" || v == "false" || v == "off") {
        return false;
    }
    if (v == "1" || v == "yes" || v == "true" || v == "on") {
        return true;
    }
    usage_error(std::string(what) + " " + quoted(v)
                + ": expected 1, yes, true, on or 0, no, false, off");
}

} // namespace apikeyctl
