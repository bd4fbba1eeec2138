/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * slot.cpp: the Redis Cluster slot of a key name (CRC16/XMODEM of the key,
 * or of its hash tag, modulo 16384), for the module's routing on a cluster
 * and apikeyctl's.  Pure: no I/O, no allocation.
 */

#include "ak_core.h"

uint16_t
ak_redis_crc16(const char *data, size_t len) AK_NOEXCEPT
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


unsigned
ak_redis_slot(const char *key, size_t len) AK_NOEXCEPT
{
    size_t open, close;

    for (open = 0; open < len; open++) {
        if (key[open] == '{') {
            break;
        }
    }

    if (open < len) {
        for (close = open + 1; close < len; close++) {
            if (key[close] == '}') {
                break;
            }
        }

        if (close < len && close > open + 1) {
            return ak_redis_crc16(key + open + 1, close - open - 1)
                   & (AK_REDIS_SLOTS - 1);
        }
    }

    return ak_redis_crc16(key, len) & (AK_REDIS_SLOTS - 1);
}
