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

    /* "sha256" or "hmac-sha256" */
    const std::string &hash_mode() const noexcept { return hash_mode_; }

    /* who makes the changes, for the audit trail: --actor, APIKEY_ACTOR,
     * else the OS user and host ("user@host") */
    const std::string &actor() const noexcept { return actor_; }

    /* Before the first change: checks the hash mode marker ({prefix}meta)
     * against this hash mode and secret, writing it when there is none
     * (lifecycle.cpp).  A mismatch is a usage error naming both. */
    void check_marker();

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
    std::string hash_mode_;
    std::string actor_;
    bool marker_checked_ = false;
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

/* Sets status=revoked, revoked_at, revoked_by (the actor) and reason (or
 * removes an earlier one) on hex's record and publishes "revoke HASH", in
 * one transaction.  false: no such record.  before/after: the fields as
 * they were and as they are now (for the audit trail). */
bool revoke_record(Context &ctx, const std::string &hex,
                   const std::string &reason, std::string *id,
                   std::string *was, Fields *before, Fields *after);

/* The status a record is in at now: revoked, disabled (its status field),
 * rotated (an old secret whose grace ended), expired, alias (an old secret
 * in its grace) or active. */
std::string effective_status(const Fields &f, int64_t now);

/* the last use a GET of Context::last_used_key answered: unix seconds, -1
 * when none (never used with usage_flush on, or not for 400 days) */
int64_t parse_last_used(const redisReply *r);

/* lifecycle.cpp */
int cmd_audit(Context &ctx, const Args &args);
int cmd_import(Context &ctx, const Args &args);
int cmd_leaked(Context &ctx, const Args &args);
int cmd_report(Context &ctx, const Args &args);

/*
 * Appends an entry to the audit trail ({prefix}audit, a stream capped at
 * kAuditMaxLen entries, approximately): time, actor, command, key id and
 * hash, the fields that differ between before and after (old -> new), and
 * the reason.  A failure is a warning: the change is made already.
 */
inline constexpr long kAuditMaxLen = 100000;
void audit(Context &ctx, const std::string &command, const std::string &id,
           const std::string &hex, const Fields &before, const Fields &after,
           const std::string &reason = std::string());

} // namespace apikeyctl

#endif
