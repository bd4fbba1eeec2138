/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: Redis Cluster key slots (pure: no I/O).
 */

#ifndef APIKEYCTL_SLOT_HPP
#define APIKEYCTL_SLOT_HPP

#include <cstddef>
#include <cstdint>
#include <string>

namespace apikeyctl {

/* CRC16/XMODEM (polynomial 0x1021, initial 0), Redis Cluster's. */
uint16_t crc16_xmodem(const char *data, size_t len) noexcept;

/* The cluster slot (0..16383) of a key, as CLUSTER KEYSLOT: of its hash
 * tag, the part between the first '{' and the next '}', when that part is
 * not empty; else of the whole key. */
unsigned key_slot(const std::string &key) noexcept;

} // namespace apikeyctl

#endif
