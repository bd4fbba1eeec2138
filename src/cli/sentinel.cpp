/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl through Redis Sentinel: see sentinel.hpp.
 */

#include "sentinel.hpp"

#include "util.hpp"

#include <ctime>

namespace apikeyctl {

static void nap(double s)
{
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(s);
    ts.tv_nsec = static_cast<long>((s - static_cast<double>(ts.tv_sec)) * 1e9);
    nanosleep(&ts, nullptr);
}


std::unique_ptr<Redis> connect_via_sentinels(
    const RedisUrl &url, const std::string &password,
    const std::string &sentinel_password, double timeout_s,
    const TlsOptions &tls)
{
    const double deadline = mono_now() + timeout_s;
    std::string why;

    for ( ;; ) {
        for (const HostPort &s : url.nodes) {
            RedisUrl su;
            su.host = s.host;
            su.port = s.port;
            std::string host;
            long long port = 0;

            try {
                Redis sentinel(su, sentinel_password, timeout_s);
                Reply r = sentinel.cmd_raw({"SENTINEL",
                                            "get-master-addr-by-name",
                                            url.master});
                if (reply_is_error(r.get())) {
                    why = "sentinel " + su.where() + ": "
                          + printable(reply_string(r.get()));
                    continue;
                }
                if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                    why = "sentinel " + su.where() + " knows no master "
                          + quoted(url.master);
                    continue;
                }
                host = reply_string(r->element[0]);
                uint64_t p;
                if (host.empty() || has_control_chars(host)
                    || !parse_uint(reply_string(r->element[1]), 65535, &p)
                    || p == 0)
                {
                    why = "sentinel " + su.where() + ": an unexpected "
                          "answer to SENTINEL get-master-addr-by-name";
                    continue;
                }
                port = static_cast<long long>(p);
            } catch (const Error &e) {
                if (e.code() != kExitRedis) {
                    throw;
                }
                why = e.what();
                continue;
            }

            RedisUrl mu = url.node(host, static_cast<int>(port));

            try {
                std::unique_ptr<Redis> m(new Redis(mu, password, timeout_s,
                                                   tls));
                Reply role = m->cmd_raw({"ROLE"});
                if (role && role->type == REDIS_REPLY_ARRAY
                    && role->elements > 0
                    && reply_string(role->element[0]) == "master")
                {
                    return m;
                }
                why = "the sentinels name " + mu.where() + " as master "
                      + quoted(url.master) + ", but its ROLE says "
                      + (role && role->type == REDIS_REPLY_ARRAY
                                 && role->elements > 0
                             ? printable(reply_string(role->element[0]))
                             : printable(reply_string(role.get())));
            } catch (const Error &e) {
                if (e.code() != kExitRedis) {
                    throw;
                }
                why = e.what();
            }
        }

        if (mono_now() + 0.2 >= deadline) {
            break;
        }
        nap(0.2);
    }

    fail(kExitRedis, "no master " + quoted(url.master) + " found through "
                     "the sentinels within "
                     + std::to_string(static_cast<int>(timeout_s + 0.5))
                     + "s: " + why);
}

} // namespace apikeyctl
