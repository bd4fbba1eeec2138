/* SPDX-License-Identifier: BSD-2-Clause */
// Helpers of the cache's lock-free tests (test/unit/test_cache_lockfree.cpp)
// and of the race tests (test/race): keys, records that show a torn copy,
// a zone with its lock, a key put and its quota window leased.

#ifndef AK_TEST_CACHE_ZONE_H
#define AK_TEST_CACHE_ZONE_H

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include "ak_core.h"

namespace akt {

inline uint64_t
mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct Key {
    unsigned char b[AK_HASH_LEN];
};

inline Key
key_of(uint64_t id)
{
    Key k;
    for (int i = 0; i < 4; i++) {
        uint64_t v = mix(id * 4 + i + 1);
        memcpy(k.b + 8 * i, &v, 8);
    }
    return k;
}

// A record for the stress test: [id u64][version u64][len - 24 bytes of a
// pattern of (id, version)][checksum u64 of everything before].  A copy
// torn between two versions, or of another key, fails the check.
inline std::vector<unsigned char>
record(uint64_t id, uint64_t version, size_t len)
{
    std::vector<unsigned char> b(len);
    memcpy(&b[0], &id, 8);
    memcpy(&b[8], &version, 8);
    uint64_t x = id * 1000003 + version;
    for (size_t i = 16; i < len - 8; i++) {
        b[i] = (unsigned char) mix(x + i);
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < len - 8; i++) {
        sum = mix(sum ^ b[i]);
    }
    memcpy(&b[len - 8], &sum, 8);
    return b;
}

inline bool
record_ok(const unsigned char *b, size_t len, uint64_t id)
{
    if (len < 24) {
        return false;
    }
    uint64_t got, sum = 0;
    memcpy(&got, b, 8);
    for (size_t i = 0; i < len - 8; i++) {
        sum = mix(sum ^ b[i]);
    }
    uint64_t want;
    memcpy(&want, b + len - 8, 8);
    return got == id && sum == want;
}

struct Zone {
    explicit Zone(size_t size) : words(size / 8 + 1, 0), size(size)
    {
        ak_cache_conf_t cf;
        cf.ttl_ms = 1000000;
        cf.negative_ttl_ms = 1000000;
        cf.stale_ms = 0;
        cf.negative_max_pct = 25;
        c = ak_cache_create(words.data(), size, &cf);
    }
    std::vector<uint64_t> words;
    size_t size;
    ak_cache_t *c;
    std::mutex lock;        // the zone lock: writers only
};

// Puts other keys (ids from 100) until a (in slot) has left the cache and
// one of them holds its slot: that key (gtest's ASSERT in the caller checks
// *other_slot == slot).
inline Key
other_in_slot(Zone &z, const Key &a, uint32_t slot, uint64_t slots_total,
    uint32_t *other_slot)
{
    Key other;
    *other_slot = 0xffffffffu;
    for (uint64_t id = 100; id < 100 + 4 * slots_total && *other_slot != slot;
         id++)
    {
        other = key_of(id);
        std::vector<unsigned char> ob = record(id, 1, 30);
        if (ak_cache_put(z.c, other.b, ob.data(), ob.size(), 1,
                         ak_cache_event_seq(z.c)) != 0)
        {
            break;
        }
        if (ak_cache_peek(z.c, a.b) == 0) {
            ak_cache_state_find(z.c, other.b, other_slot);
        }
    }
    return other;
}


inline ak_record_t
rate_record(uint64_t interval_us, uint32_t burst)
{
    ak_record_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.rate_period = AK_PERIOD_SECOND;
    rec.rate_n = 1;
    rec.rate_interval_us = interval_us;
    rec.burst = burst;
    rec.quota_period = AK_PERIOD_NONE;
    return rec;
}


inline ak_record_t
quota_record(uint64_t quota_n)
{
    ak_record_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.rate_period = AK_PERIOD_NONE;
    rec.quota_period = AK_PERIOD_HOUR;
    rec.quota_n = quota_n;
    return rec;
}

// a key put and looked up: its slot
inline uint32_t
put_key(Zone &z, const Key &k, uint64_t id)
{
    std::vector<unsigned char> b = record(id, 1, 30);
    EXPECT_EQ(0, ak_cache_put(z.c, k.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot = 0xffffffffu;
    EXPECT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, k.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));
    return slot;
}

// the key's window of now opened under the lock (NEED_LEASE), then granted
// counts as a lease answer would
inline void
lease(Zone &z, const Key &k, const ak_record_t &rec, int64_t now,
    uint64_t grant, uint64_t used)
{
    std::lock_guard<std::mutex> g(z.lock);
    uint32_t slot;
    ak_key_state_t *st = ak_cache_state_find(z.c, k.b, &slot);
    ASSERT_NE(nullptr, st);
    ak_admit_result_t ar;
    ASSERT_EQ(AK_NEED_LEASE, ak_limits_admit_ex(st, &rec, now, 0, 100, 0,
                                                &ar));
    ASSERT_EQ(1, ak_quota_lease_apply(st, ar.window, grant, used));
}

} // namespace akt

#endif
