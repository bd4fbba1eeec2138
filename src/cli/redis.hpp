/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: a synchronous Redis connection.  hiredis is the RESP codec
 * only (redisFormatCommandArgv encodes, a redisReader parses); the bytes go
 * over conn.hpp's blocking socket, with TLS for rediss://.
 */

#ifndef APIKEYCTL_REDIS_HPP
#define APIKEYCTL_REDIS_HPP

#include <memory>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>

#include "conn.hpp"
#include "url.hpp"

namespace apikeyctl {

struct ReplyFree {
    void operator()(redisReply *r) const noexcept
    {
        if (r) {
            freeReplyObject(r);
        }
    }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

struct ReaderFree {
    void operator()(redisReader *r) const noexcept
    {
        if (r) {
            redisReaderFree(r);
        }
    }
};

using Argv = std::vector<std::string>;


/*
 * What the subcommands talk to: one server (Redis) or a Redis Cluster
 * (ClusterClient, cluster.hpp), which routes each command to the master of
 * its key's slot.
 */
class Client {
public:
    virtual ~Client() = default;

    /* One command; an error reply throws Error(kExitRedis). */
    Reply cmd(const Argv &argv);

    /* One command; an error reply is returned to the caller. */
    virtual Reply cmd_raw(const Argv &argv) = 0;

    /* Pipelining: queue commands, then read their replies in order (the
     * first next() sends what is queued). */
    virtual void append(const Argv &argv) = 0;
    virtual Reply next() = 0;           /* error replies are returned */

    /* The servers a keyless walk (SCAN) must visit: 1 for one server, the
     * masters of a cluster (read when called); then cmd_on(i, argv) runs a
     * command on server i. */
    virtual size_t scan_nodes() { return 1; }

    /* a cluster: PUBLISH counts the subscribers of one node only */
    virtual bool is_cluster() const { return false; }
    virtual Reply cmd_on(size_t i, const Argv &argv)
    {
        (void) i;
        return cmd(argv);
    }
};


class Redis : public Client {
public:
    /*
     * Connects (connect timeout and command timeout: timeout_s each; TLS
     * for a rediss:// URL, with `tls`), authenticates and selects the
     * database.  Any failure throws Error(kExitRedis) with a clear message
     * (kExitUsage for an unusable TLS file).
     */
    Redis(const RedisUrl &url, const std::string &password, double timeout_s,
          const TlsOptions &tls = TlsOptions());
    ~Redis() override;

    Redis(const Redis &) = delete;
    Redis &operator=(const Redis &) = delete;

    Reply cmd_raw(const Argv &argv) override;
    void append(const Argv &argv) override;
    Reply next() override;

    const std::string &where() const noexcept { return where_; }

private:
    void flush();

    std::unique_ptr<Conn> conn_;
    std::unique_ptr<redisReader, ReaderFree> reader_;
    /* the size of an array header refused by the reader (see redis.cpp) */
    static constexpr long long kNoBadArray = -(1LL << 40);
    long long bad_array_ = kNoBadArray;
    std::string reader_error() const;
    std::string out_;       /* encoded commands not sent yet */
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
