/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: Redis Cluster key slots (pure: no I/O).
 */

#include "slot.hpp"

namespace apikeyctl {

uint16_t crc16_xmodem(const char *data, size_t len) noexcept
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= static_cast<uint16_t>(static_cast<unsigned char>(data[i]) << 8);
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                 : static_cast<uint16_t>(crc << 1);
        }
    }

    return crc;
}


unsigned key_slot(const std::string &key) noexcept
{
    size_t open = key.find('{');

    if (open != std::string::npos) {
        size_t close = key.find('}', open + 1);
        if (close != std::string::npos && close > open + 1) {
            return crc16_xmodem(key.data() + open + 1, close - open - 1)
                   & 16383;
        }
    }

    return crc16_xmodem(key.data(), key.size()) & 16383;
}

} // namespace apikeyctl
