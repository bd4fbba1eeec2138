/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl through Redis Sentinel (redis-sentinel://, rediss-sentinel://):
 * the sentinels are asked in turn for the master (SENTINEL
 * get-master-addr-by-name), the server named is asked ROLE, and the
 * connection is kept when it says master.  Until the timeout, a sentinel
 * that does not answer or knows no master, or a server that is not (or no
 * longer) the master, makes it ask the next one (during a failover the
 * sentinels may name the old master for a moment).
 */

#ifndef APIKEYCTL_SENTINEL_HPP
#define APIKEYCTL_SENTINEL_HPP

#include <memory>
#include <string>

#include "redis.hpp"
#include "url.hpp"

namespace apikeyctl {

/* url: a redis-sentinel:// URL; password: the data nodes' (with url.user);
 * sentinel_password: the sentinels' (AUTH), empty for none.  The sentinels
 * are spoken to in plaintext, the master with TLS for rediss-sentinel://. */
std::unique_ptr<Redis> connect_via_sentinels(
    const RedisUrl &url, const std::string &password,
    const std::string &sentinel_password, double timeout_s,
    const TlsOptions &tls);

} // namespace apikeyctl

#endif
