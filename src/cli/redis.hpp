/*
 * apikeyctl: a synchronous Redis connection (hiredis), RAII-wrapped.
 */

#ifndef APIKEYCTL_REDIS_HPP
#define APIKEYCTL_REDIS_HPP

#include <memory>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>

namespace apikeyctl {

/*
 * redis://[user[:password]@]host[:port][/db]  or  unix:/path.sock[?db=N],
 * as the module's api_key_redis: "user@" alone names an ACL user whose
 * password comes from elsewhere; an IPv6 host goes in brackets.
 */
struct RedisUrl {
    bool         unix_socket = false;
    std::string  host;              /* without [] for IPv6 */
    int          port = 6379;
    std::string  path;
    std::string  user;
    std::string  password;
    bool         has_password = false;
    long         db = 0;

    /* For messages: never holds the password. */
    std::string  where() const;
};

/* Throws a usage Error naming the URL form on bad input. */
RedisUrl parse_redis_url(const std::string &url);


struct ReplyFree {
    void operator()(redisReply *r) const noexcept
    {
        if (r) {
            freeReplyObject(r);
        }
    }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

struct ContextFree {
    void operator()(redisContext *c) const noexcept
    {
        if (c) {
            redisFree(c);
        }
    }
};

using Argv = std::vector<std::string>;


class Redis {
public:
    /*
     * Connects (connect timeout and command timeout: timeout_s each),
     * authenticates and selects the database.  Any failure throws
     * Error(kExitRedis) with a clear message.
     */
    Redis(const RedisUrl &url, const std::string &password, double timeout_s);

    Redis(const Redis &) = delete;
    Redis &operator=(const Redis &) = delete;

    /* One command; an error reply throws Error(kExitRedis). */
    Reply cmd(const Argv &argv);

    /* One command; an error reply is returned to the caller. */
    Reply cmd_raw(const Argv &argv);

    /* Pipelining: queue commands, then read their replies in order. */
    void append(const Argv &argv);
    Reply next();           /* error replies are returned, not thrown */

    const std::string &where() const noexcept { return where_; }

private:
    [[noreturn]] void io_failure(const char *during);

    std::unique_ptr<redisContext, ContextFree> ctx_;
    std::string where_;
    double timeout_s_;
};


/* Helpers for replies. */
bool reply_is_error(const redisReply *r) noexcept;
std::string reply_string(const redisReply *r);  /* STRING/STATUS/ERROR */
/* Throws Error(kExitRedis) "redis: ERR ..." when r is an error reply. */
void check_reply(const redisReply *r, const std::string &what);

} // namespace apikeyctl

#endif
