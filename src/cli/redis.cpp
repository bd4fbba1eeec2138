/*
 * apikeyctl: a synchronous Redis connection (hiredis), RAII-wrapped.
 */

#include "redis.hpp"

#include "util.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sys/time.h>

namespace apikeyctl {

static const char kUrlForms[] =
    "expected redis://[user[:password]@]host:port[/db] "
    "or unix:/path.sock[?db=N]";


std::string RedisUrl::where() const
{
    if (unix_socket) {
        return "unix:" + path;
    }

    std::string h = host.find(':') != std::string::npos ? "[" + host + "]"
                                                        : host;
    return h + ":" + std::to_string(port);
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

    if (url.size() <= 8 || url.compare(0, 8, "redis://") != 0) {
        usage_error(std::string("invalid --redis URL: ") + kUrlForms);
    }

    std::string rest = url.substr(8);

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
        if (!db.empty()) {
            u.db = parse_db(db);
        }
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

    std::string port;

    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string::npos) {
            usage_error(std::string("invalid --redis URL: unclosed [ in the "
                                    "host; ") + kUrlForms);
        }
        u.host = authority.substr(1, close - 1);
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
        u.host = authority.substr(0, colon);
        if (colon != std::string::npos) {
            port = authority.substr(colon + 1);
            if (port.empty()) {
                usage_error("invalid --redis URL: empty port");
            }
        }
    }

    if (u.host.empty()) {
        usage_error(std::string("invalid --redis URL: no host; ") + kUrlForms);
    }

    if (!port.empty()) {
        uint64_t p;
        if (!parse_uint(port, 65535, &p) || p == 0) {
            /* not echoed: in redis://user:password (no host) the
             * password would be read as the port */
            usage_error("invalid --redis URL: the port must be a number "
                        "from 1 to 65535");
        }
        u.port = static_cast<int>(p);
    }

    return u;
}


static struct timeval to_timeval(double s)
{
    struct timeval tv;
    double whole = std::floor(s);
    tv.tv_sec = static_cast<time_t>(whole);
    tv.tv_usec = static_cast<suseconds_t>((s - whole) * 1e6);
    return tv;
}


static std::string fmt_seconds(double s)
{
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", s);
    return buf;
}


Redis::Redis(const RedisUrl &url, const std::string &password,
             double timeout_s)
    : where_(url.where()), timeout_s_(timeout_s)
{
    struct timeval tv = to_timeval(timeout_s);
    redisContext *c;

    if (url.unix_socket) {
        c = redisConnectUnixWithTimeout(url.path.c_str(), tv);
    } else {
        c = redisConnectWithTimeout(url.host.c_str(), url.port, tv);
    }

    if (c == nullptr) {
        fail(kExitInternal, "out of memory connecting to redis");
    }

    ctx_.reset(c);

    if (c->err) {
        std::string why = c->errstr;
        if (c->err == REDIS_ERR_IO && (errno == EINPROGRESS
                                       || errno == ETIMEDOUT
                                       || errno == EAGAIN))
        {
            why = "no answer within " + fmt_seconds(timeout_s) + "s";
        }
        fail(kExitRedis, "cannot connect to redis at " + where_ + ": " + why);
    }

    if (redisSetTimeout(c, tv) != REDIS_OK) {
        fail(kExitRedis, "cannot set the redis timeout: "
                         + std::string(c->errstr));
    }

    if (!password.empty()) {
        Argv auth = url.user.empty() ? Argv{"AUTH", password}
                                     : Argv{"AUTH", url.user, password};
        Reply r = cmd_raw(auth);
        if (reply_is_error(r.get())) {
            fail(kExitRedis, "redis at " + where_ + " refused the password: "
                             + reply_string(r.get()));
        }
    }

    if (url.db != 0) {
        Reply r = cmd_raw({"SELECT", std::to_string(url.db)});
        if (reply_is_error(r.get())) {
            fail(kExitRedis, "redis at " + where_ + ": SELECT "
                             + std::to_string(url.db) + ": "
                             + reply_string(r.get()));
        }
    }
}


void Redis::io_failure(const char *during)
{
    redisContext *c = ctx_.get();
    std::string why = c->errstr;

    if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        why = "no answer within " + fmt_seconds(timeout_s_) + "s";
    } else if (c->err == REDIS_ERR_EOF) {
        why = "connection closed by the server";
    }

    fail(kExitRedis, std::string("redis at ") + where_ + ": "
                     + (*during ? std::string(during) + ": " : std::string())
                     + why);
}


static void to_c_argv(const Argv &argv, std::vector<const char *> &p,
                      std::vector<size_t> &l)
{
    p.reserve(argv.size());
    l.reserve(argv.size());
    for (const std::string &a : argv) {
        p.push_back(a.data());
        l.push_back(a.size());
    }
}


Reply Redis::cmd_raw(const Argv &argv)
{
    std::vector<const char *> p;
    std::vector<size_t> l;
    to_c_argv(argv, p, l);

    void *r = redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()),
                               p.data(), l.data());
    if (r == nullptr) {
        io_failure(argv.empty() ? "command" : argv[0].c_str());
    }

    return Reply(static_cast<redisReply *>(r));
}


Reply Redis::cmd(const Argv &argv)
{
    Reply r = cmd_raw(argv);
    check_reply(r.get(), argv.empty() ? "" : argv[0]);
    return r;
}


void Redis::append(const Argv &argv)
{
    std::vector<const char *> p;
    std::vector<size_t> l;
    to_c_argv(argv, p, l);

    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv.size()),
                               p.data(), l.data())
        != REDIS_OK)
    {
        io_failure("sending");
    }
}


Reply Redis::next()
{
    void *r = nullptr;

    if (redisGetReply(ctx_.get(), &r) != REDIS_OK || r == nullptr) {
        io_failure("");
    }

    return Reply(static_cast<redisReply *>(r));
}


bool reply_is_error(const redisReply *r) noexcept
{
    return r && r->type == REDIS_REPLY_ERROR;
}


std::string reply_string(const redisReply *r)
{
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS
              || r->type == REDIS_REPLY_ERROR))
    {
        return std::string(r->str, r->len);
    }
    return std::string();
}


void check_reply(const redisReply *r, const std::string &what)
{
    if (reply_is_error(r)) {
        std::string msg = reply_string(r);
        std::string hint;
        if (msg.compare(0, 6, "NOAUTH") == 0) {
            hint = " (give the password with --password-file or "
                   "APIKEY_REDIS_PASSWORD)";
        }
        fail(kExitRedis, "redis: " + what + ": " + printable(msg) + hint);
    }
}

} // namespace apikeyctl
