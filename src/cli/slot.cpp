/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: Redis Cluster key slots (pure: no I/O): the core's, which the
 * module routes its commands with too.
 */

#include "slot.hpp"

#include "ak_core.h"

namespace apikeyctl {

uint16_t crc16_xmodem(const char *data, size_t len) noexcept
{
    return ak_redis_crc16(data, len);
}


unsigned key_slot(const std::string &key) noexcept
{
    return ak_redis_slot(key.data(), key.size());
}

} // namespace apikeyctl
