/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: the subcommands.
 */

#ifndef APIKEYCTL_COMMANDS_HPP
#define APIKEYCTL_COMMANDS_HPP

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "keys.hpp"
#include "redis.hpp"
#include "util.hpp"

namespace apikeyctl {

/* The parsed command line. */
struct Args {
    std::string                         command;
    std::map<std::string, std::string>  opts;   /* "--name" -> value */
    std::vector<std::string>            pos;    /* after the command */

    bool has(const std::string &name) const { return opts.count(name) > 0; }
    std::string get(const std::string &name,
                    const std::string &def = std::string()) const
    {
        auto it = opts.find(name);
        return it == opts.end() ? def : it->second;
    }
};


/* Settings shared by every subcommand (options and environment). */
class Context {
public:
    explicit Context(const Args &args);

    /* Connects on first use: to the server, to the master the sentinels
     * name (redis-sentinel://), or to a cluster (redis-cluster://). */
    Client &redis();
    const Hasher &hasher() const { return *hasher_; }

    const std::string &prefix() const noexcept { return prefix_; }
    const std::string &channel() const noexcept { return channel_; }

    /* the Redis names (built by the core, as the module builds them) of a
     * record (hex: a 64-digit lowercase hash), an id lookup and a quota
     * counter (period: hour, day or month) */
    std::string record_key(const std::string &hex) const;
    std::string id_key(const std::string &id) const;
    std::string usage_key(const std::string &hex, const std::string &period,
                          int64_t window_start) const;
    /* the module's usage flush: requests of a UTC day, the last use */
    std::string requests_key(const std::string &hex, int64_t day) const;
    std::string last_used_key(const std::string &hex) const;

private:
    RedisUrl url_;
    TlsOptions tls_;
    SecretString password_;
    std::string prefix_;
    std::string channel_;
    double timeout_s_;
    std::unique_ptr<Hasher> hasher_;
    std::unique_ptr<Client> redis_;
    SecretString sentinel_password_;
};


int cmd_create(Context &ctx, const Args &args);
int cmd_revoke(Context &ctx, const Args &args);
int cmd_rotate(Context &ctx, const Args &args);
int cmd_set(Context &ctx, const Args &args);
int cmd_show(Context &ctx, const Args &args);
int cmd_list(Context &ctx, const Args &args);
int cmd_usage(Context &ctx, const Args &args);
int cmd_delete(Context &ctx, const Args &args);

} // namespace apikeyctl

#endif
