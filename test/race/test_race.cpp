/* SPDX-License-Identifier: BSD-2-Clause */
// The lock-free limits (ak_cache_quota_take, ak_cache_limits_take) with
// another process acting between two of their atomic operations, made
// deterministic: the core is built with AK_CACHE_KILL_POINTS (as for the
// fuzz replay), and ak_cache_race_hook runs the other process's step at
// the point named (AK_RACE_* in ak_core.h).  The lock-free stress tests in
// test/unit reach these interleavings only by chance.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "ak_core.h"

namespace {

struct Key {
    unsigned char b[AK_HASH_LEN];
};

Key
key_of(uint64_t id)
{
    Key k;
    uint64_t x = id * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < 4; i++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 32;
        memcpy(k.b + 8 * i, &x, 8);
    }
    return k;
}

struct Zone {
    Zone() : words(ak_cache_min_size() / 8 + 1, 0)
    {
        ak_cache_conf_t cf;
        cf.ttl_ms = 1000000;
        cf.negative_ttl_ms = 1000000;
        cf.stale_ms = 0;
        cf.negative_max_pct = 25;
        c = ak_cache_create(words.data(), ak_cache_min_size(), &cf);
    }
    std::vector<uint64_t> words;
    ak_cache_t *c;
};

const int64_t   kNow = 1800000000;          // 2027-01-15 08:00 UTC
const uint64_t  kUs = 7000000000ULL;
const uint64_t  kT = 1000000;               // 1/s
const uint32_t  kBurst = 2;
const uint32_t  kWindow = (uint32_t) (kNow / 3600);

// a key put (a 30-byte record) and looked up: its slot
uint32_t
put_key(Zone &z, const Key &k)
{
    unsigned char b[30];
    memset(b, 0x5a, sizeof(b));
    EXPECT_EQ(0, ak_cache_put(z.c, k.b, b, sizeof(b), 1,
                              ak_cache_event_seq(z.c)));
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot = 0xffffffffu;
    EXPECT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, k.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));
    return slot;
}

// the key's hourly window of now opened and granted counts, as a lease
// answer would
void
lease(Zone &z, const Key &k, uint64_t grant)
{
    ak_record_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.rate_period = AK_PERIOD_NONE;
    rec.quota_period = AK_PERIOD_HOUR;
    rec.quota_n = 1000;
    uint32_t slot;
    ak_key_state_t *st = ak_cache_state_find(z.c, k.b, &slot);
    ASSERT_NE(nullptr, st);
    ak_admit_result_t ar;
    ASSERT_EQ(AK_NEED_LEASE, ak_limits_admit_ex(st, &rec, kNow, 0, 100, 0,
                                                &ar));
    ASSERT_EQ(1, ak_quota_lease_apply(st, ar.window, grant, 0));
}

uint32_t
left(Zone &z, const Key &k, uint32_t slot)
{
    ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
    return st ? st->q_left : 0xffffffffu;
}

// k leaves the cache and another key takes its slot (the free slot is
// reused first, else keys are put until one lands there): that key
Key
replace_in_slot(Zone &z, const Key &k, uint32_t slot)
{
    EXPECT_EQ(1, ak_cache_remove(z.c, k.b));
    for (uint64_t id = 1000; id < 3000; id++) {
        Key o = key_of(id);
        unsigned char b[30];
        memset(b, 0x33, sizeof(b));
        EXPECT_EQ(0, ak_cache_put(z.c, o.b, b, sizeof(b), 1,
                                  ak_cache_event_seq(z.c)));
        uint32_t s = 0xffffffffu;
        if (ak_cache_state_find(z.c, o.b, &s) != nullptr && s == slot) {
            return o;
        }
    }
    ADD_FAILURE() << "no key took slot " << slot;
    return k;
}

// the hook: runs `step` once, at the first call at `point`
struct Race {
    Race(int point, std::function<void()> step)
    {
        point_ = point;
        step_ = std::move(step);
        fired_ = 0;
        ak_cache_race_hook = hook;
    }
    ~Race() { ak_cache_race_hook = nullptr; }

    static void hook(int point)
    {
        if (point == point_ && fired_++ == 0) {
            step_();
        }
    }

    static int                    point_;
    static std::function<void()>  step_;
    static int                    fired_;
};

int                    Race::point_;
std::function<void()>  Race::step_;
int                    Race::fired_;

int
limits_take(Zone &z, const Key &k, uint32_t slot, ak_admit_result_t *ar,
    uint32_t *stamp)
{
    return ak_cache_limits_take(z.c, slot, k.b, kUs, kT, kBurst,
                                AK_PERIOD_HOUR, 1000, 0, kNow, ar, stamp);
}

} // namespace


// Nothing in between: the hooks are reached and change nothing.
TEST(CacheRace, NothingInBetween)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(1);
    uint32_t slot = put_key(z, k);
    lease(z, k, 10);
    ak_admit_result_t ar;
    uint32_t stamp;

    {
        Race r(AK_RACE_LIMITS_TAKEN, [] {});
        EXPECT_EQ(AK_ADMIT, limits_take(z, k, slot, &ar, &stamp));
        EXPECT_EQ(1, Race::fired_);
    }
    {
        Race r(AK_RACE_QUOTA_TAKEN, [] {});
        EXPECT_EQ(AK_ADMIT, ak_cache_quota_take(z.c, slot, k.b,
                                                AK_PERIOD_HOUR, 1000, 0,
                                                kNow, &ar));
        EXPECT_EQ(1, Race::fired_);
    }
    EXPECT_EQ(8u, left(z, k, slot));
}

// The slot changes identity after the count was taken and before the tag
// word is read again: the count came off the new entry's word, it is lost
// (never given to this key), and the request goes to the lock (-1).
// Without the re-check the TAT swap would succeed on the new entry's tag
// word and admit.
TEST(CacheRace, LimitsTakeSlotReusedAfterTheCount)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(2);
    uint32_t slot = put_key(z, k);
    lease(z, k, 10);
    ak_admit_result_t ar;
    uint32_t stamp;
    Key other = k;

    Race r(AK_RACE_LIMITS_TAKEN, [&] { other = replace_in_slot(z, k, slot); });
    EXPECT_EQ(-1, limits_take(z, k, slot, &ar, &stamp));
    EXPECT_EQ(1, Race::fired_);
    ASSERT_NE(0, memcmp(other.b, k.b, AK_HASH_LEN));
    EXPECT_EQ(nullptr, ak_cache_state(z.c, slot, k.b));
    // the new entry's rate untouched: its TAT is still that of a new key
    const ak_key_state_t *st = ak_cache_state(z.c, slot, other.b);
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(0u, st->tat_us & AK_TAT_MASK);
}

// The same for the quota alone.
TEST(CacheRace, QuotaTakeSlotReusedAfterTheCount)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(3);
    uint32_t slot = put_key(z, k);
    lease(z, k, 10);
    ak_admit_result_t ar;

    Race r(AK_RACE_QUOTA_TAKEN, [&] { replace_in_slot(z, k, slot); });
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000,
                                      0, kNow, &ar));
    EXPECT_EQ(1, Race::fired_);
}

// Other requests take the whole burst after the count was taken and before
// the new TAT is swapped in: the rate no longer admits on the word found,
// the count is owed (AK_TAKE_GIVE_BACK) and given back under the lock, as
// no writer changed the key's group: the key has all its counts again.
TEST(CacheRace, LimitsTakeRateTakenMeanwhileGivesTheCountBack)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(4);
    uint32_t slot = put_key(z, k);
    lease(z, k, 10);
    ak_admit_result_t ar;
    uint32_t stamp = 1;
    int others = 0;

    Race r(AK_RACE_LIMITS_TAKEN, [&] {
        ak_rate_result_t rr;
        while (ak_cache_gcra(z.c, slot, k.b, kUs, kT, kBurst, &rr) == 1) {
            others++;
        }
    });
    EXPECT_EQ(AK_TAKE_GIVE_BACK, limits_take(z, k, slot, &ar, &stamp));
    EXPECT_EQ((int) kBurst + 1, others);
    EXPECT_EQ(9u, left(z, k, slot));
    EXPECT_EQ(kWindow, ar.window);
    EXPECT_EQ(1, ak_cache_give_back(z.c, slot, k.b, ar.window, stamp));
    EXPECT_EQ(10u, left(z, k, slot));
}

// Another request moves the TAT between the decision and the swap, with
// room left in the burst: the swap fails, the GCRA is decided again on the
// word found, and the request is admitted with the one count taken.
TEST(CacheRace, LimitsTakeTatMovedMeanwhileDecidesAgain)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(5);
    uint32_t slot = put_key(z, k);
    lease(z, k, 10);
    ak_admit_result_t ar;
    uint32_t stamp;

    Race r(AK_RACE_LIMITS_TAT, [&] {
        ak_rate_result_t rr;
        EXPECT_EQ(1, ak_cache_gcra(z.c, slot, k.b, kUs, kT, kBurst, &rr));
    });
    EXPECT_EQ(AK_ADMIT, limits_take(z, k, slot, &ar, &stamp));
    EXPECT_EQ(2, Race::fired_);         // the swap was tried twice
    EXPECT_EQ(9u, left(z, k, slot));
    // two requests took the rate (burst 2: one more fits, then limited)
    ak_rate_result_t rr;
    EXPECT_EQ(1, ak_cache_gcra(z.c, slot, k.b, kUs, kT, kBurst, &rr));
    EXPECT_EQ(0, ak_cache_gcra(z.c, slot, k.b, kUs, kT, kBurst, &rr));
}

// The entry leaves its slot between the decision and the TAT swap: the
// swap fails on the new tag, the count is owed, and the give-back finds
// the group changed (a writer was there): the count is dropped, nothing
// goes into the slot's new entry.
TEST(CacheRace, LimitsTakeEntryGoneBeforeTheSwapDropsTheCount)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(6);
    uint32_t slot = put_key(z, k);
    lease(z, k, 10);
    ak_admit_result_t ar;
    uint32_t stamp = 1;
    Key other = k;

    Race r(AK_RACE_LIMITS_TAT, [&] { other = replace_in_slot(z, k, slot); });
    EXPECT_EQ(AK_TAKE_GIVE_BACK, limits_take(z, k, slot, &ar, &stamp));
    EXPECT_EQ(1, Race::fired_);
    ASSERT_NE(0, memcmp(other.b, k.b, AK_HASH_LEN));
    const ak_key_state_t *st = ak_cache_state(z.c, slot, other.b);
    ASSERT_NE(nullptr, st);
    const uint32_t before = st->q_left;
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, k.b, ar.window, stamp));
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, other.b, ar.window, stamp));
    EXPECT_EQ(before, ak_cache_state(z.c, slot, other.b)->q_left);
    EXPECT_EQ(0u, st->tat_us & AK_TAT_MASK);
}

// A writer changes the key's group (the record put again) between a take
// that owes a count and its give-back: dropped, even though the key is
// still in the same slot (the put may have lowered the quota).
TEST(CacheRace, GiveBackAfterAWriterInTheGroupIsDropped)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(7);
    uint32_t slot = put_key(z, k);
    lease(z, k, 10);
    ak_admit_result_t ar;
    uint32_t stamp = 1;

    Race r(AK_RACE_LIMITS_TAKEN, [&] {
        ak_rate_result_t rr;
        while (ak_cache_gcra(z.c, slot, k.b, kUs, kT, kBurst, &rr) == 1) {
        }
    });
    EXPECT_EQ(AK_TAKE_GIVE_BACK, limits_take(z, k, slot, &ar, &stamp));
    EXPECT_EQ(slot, put_key(z, k));
    const uint32_t after_put = left(z, k, slot);
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, k.b, ar.window, stamp));
    EXPECT_EQ(after_put, left(z, k, slot));
}
