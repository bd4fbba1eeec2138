/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The limiter state of a key: what $api_key_quota_remaining says
 * (ak_quota_remaining), what survives a change of the record
 * (ak_key_state_carry), and that an "update" (ak_cache_remove) keeps the
 * state of a cached key for the re-read.
 */

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "ak_core.h"
#include "ak_record_util.h"

using aktest::Fields;

namespace {

struct View {
    aktest::Built b;
    ak_record_t rec;

    View(const View &) = delete;
    View &operator=(const View &) = delete;

    View(std::initializer_list<std::pair<std::string, std::string>> f)
    {
        b = aktest::build(Fields(f));
        EXPECT_GT(b.len, 0);
        EXPECT_EQ(0, ak_record_view(aktest::test_hash(), b.blob.data(),
                                    b.blob.size(), &rec));
    }
};

ak_key_state_t
state(uint64_t tat, uint32_t window, uint32_t left, uint64_t used)
{
    ak_key_state_t st;
    std::memset(&st, 0, sizeof(st));
    st.tat_us = tat;
    st.q_window = window;
    st.q_left = left;
    st.q_used = used;
    return st;
}

struct Zone {
    Zone() : mem(ak_cache_min_size() * 4 / 8 + 1, 0)
    {
        ak_cache_conf_t cf;
        std::memset(&cf, 0, sizeof(cf));
        cf.ttl_ms = 60000;
        cf.negative_ttl_ms = 5000;
        cf.stale_ms = 600000;
        cf.negative_max_pct = 25;
        c = ak_cache_create(mem.data(), ak_cache_min_size() * 4, &cf);
    }

    int put(const View &v, uint64_t now)
    {
        return ak_cache_put(c, aktest::test_hash(), v.b.blob.data(),
                            v.b.blob.size(), now, ak_cache_event_seq(c));
    }

    int look(uint64_t now, uint32_t *slot)
    {
        unsigned char buf[AK_RECORD_MAX];
        size_t len;
        uint32_t flags;
        return ak_cache_lookup(c, aktest::test_hash(), now, buf, sizeof(buf),
                               &len, &flags, slot);
    }

    std::vector<uint64_t> mem;
    ak_cache_t *c;
};

} // namespace


TEST(QuotaRemaining, Arithmetic)
{
    // leased from Redis: used includes the unused lease
    EXPECT_EQ(1000u, ak_quota_remaining(1000, 0, 0));
    EXPECT_EQ(999u, ak_quota_remaining(1000, 10, 9));
    EXPECT_EQ(990u, ak_quota_remaining(1000, 10, 0));
    EXPECT_EQ(0u, ak_quota_remaining(5, 5, 0));
    EXPECT_EQ(1u, ak_quota_remaining(5, 5, 1));

    // other nodes used more than the limit: never below 0
    EXPECT_EQ(0u, ak_quota_remaining(5, 9, 1));
    EXPECT_EQ(0u, ak_quota_remaining(5, UINT64_MAX, 0));

    // more left than used (a state that predates counting offline grants
    // in q_used): used - left used to wrap around and say 0
    EXPECT_EQ(1000u, ak_quota_remaining(1000, 10, 52));
    EXPECT_EQ(1000u, ak_quota_remaining(1000, 0, UINT32_MAX));

    // offline grants counted in used: 10 leased + 50 offline, 52 left
    EXPECT_EQ(992u, ak_quota_remaining(1000, 60, 52));

    EXPECT_EQ(UINT64_MAX, ak_quota_remaining(UINT64_MAX, 0, 0));
    EXPECT_EQ(0u, ak_quota_remaining(0, 0, 0));
}


TEST(KeyStateCarry, SameSpecKeepsEverything)
{
    View a({ { "rate", "5/m" }, { "quota", "100/day" }, { "owner", "x" } });
    View b({ { "rate", "5/m" }, { "quota", "100/day" }, { "owner", "y" },
             { "scopes", "read write" } });
    ak_key_state_t st = state(123, 7, 8, 9);
    ak_key_state_carry(&a.rec, &b.rec, &st);
    EXPECT_EQ(123u, st.tat_us);
    EXPECT_EQ(7u, st.q_window);
    EXPECT_EQ(8u, st.q_left);
    EXPECT_EQ(9u, st.q_used);

    // the same interval written another way
    View c({ { "rate", "60/m" }, { "burst", "2" } });
    View d({ { "rate", "1/s" }, { "burst", "2" } });
    st = state(123, 0, 0, 0);
    ak_key_state_carry(&c.rec, &d.rec, &st);
    EXPECT_EQ(123u, st.tat_us);
}


TEST(KeyStateCarry, ChangedRateStartsAfresh)
{
    View a({ { "rate", "5/m" }, { "quota", "100/day" } });
    View faster({ { "rate", "10/m" }, { "quota", "100/day" } });
    View burst({ { "rate", "5/m" }, { "burst", "3" }, { "quota", "100/day" } });
    View none({ { "quota", "100/day" } });

    for (const View *v : { &faster, &burst, &none }) {
        ak_key_state_t st = state(123, 7, 8, 9);
        ak_key_state_carry(&a.rec, &v->rec, &st);
        EXPECT_EQ(0u, st.tat_us);
        EXPECT_EQ(7u, st.q_window);     // the quota is the same
        EXPECT_EQ(8u, st.q_left);
        EXPECT_EQ(9u, st.q_used);
    }

    ak_key_state_t st = state(123, 0, 0, 0);
    ak_key_state_carry(&none.rec, &a.rec, &st);
    EXPECT_EQ(0u, st.tat_us);
}


TEST(KeyStateCarry, Quota)
{
    View a({ { "rate", "5/m" }, { "quota", "100/day" } });
    View raised({ { "rate", "5/m" }, { "quota", "200/day" } });
    View lowered({ { "rate", "5/m" }, { "quota", "50/day" } });
    View hourly({ { "rate", "5/m" }, { "quota", "100/hour" } });
    View none({ { "rate", "5/m" } });

    ak_key_state_t st = state(123, 7, 8, 9);
    ak_key_state_carry(&a.rec, &raised.rec, &st);
    EXPECT_EQ(123u, st.tat_us);
    EXPECT_EQ(7u, st.q_window);
    EXPECT_EQ(8u, st.q_left);
    EXPECT_EQ(9u, st.q_used);

    st = state(123, 7, 8, 9);
    ak_key_state_carry(&a.rec, &lowered.rec, &st);
    EXPECT_EQ(123u, st.tat_us);
    EXPECT_EQ(7u, st.q_window);
    EXPECT_EQ(0u, st.q_left);       // granted under the old limit: dropped
    EXPECT_EQ(9u, st.q_used);

    for (const View *v : { &hourly, &none }) {
        st = state(123, 7, 8, 9);
        ak_key_state_carry(&a.rec, &v->rec, &st);
        EXPECT_EQ(123u, st.tat_us);
        EXPECT_EQ(0u, st.q_window);
        EXPECT_EQ(0u, st.q_left);
        EXPECT_EQ(0u, st.q_used);
    }

    st = state(123, 7, 8, 9);
    ak_key_state_carry(nullptr, &a.rec, &st);
    EXPECT_EQ(0u, st.tat_us);
    EXPECT_EQ(0u, st.q_left);
}


// "update HASH": the entry is re-read, its state survives when the limits
// are the same, and is reset where they changed.
TEST(KeyStateCarry, UpdateEventThenReRead)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    View v1({ { "rate", "5/m" }, { "quota", "100/day" }, { "owner", "a" } });
    View v2({ { "rate", "5/m" }, { "quota", "100/day" }, { "owner", "b" } });
    View v3({ { "rate", "6/m" }, { "quota", "100/day" }, { "owner", "b" } });

    uint32_t slot;
    ASSERT_EQ(0, z.put(v1, 1));
    ASSERT_EQ(AK_CACHE_FRESH, z.look(2, &slot));
    ak_key_state_t *st = ak_cache_state(z.c, slot, aktest::test_hash());
    ASSERT_NE(nullptr, st);
    *st = state(5000, 7, 8, 9);

    EXPECT_EQ(1, ak_cache_remove(z.c, aktest::test_hash()));
    EXPECT_EQ(AK_CACHE_MISS, z.look(3, &slot));     // re-read it
    ASSERT_EQ(0, z.put(v2, 4));
    ASSERT_EQ(AK_CACHE_FRESH, z.look(5, &slot));
    st = ak_cache_state(z.c, slot, aktest::test_hash());
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(5000u, st->tat_us & AK_TAT_MASK);
    EXPECT_EQ(8u, st->q_left);
    EXPECT_EQ(9u, st->q_used);

    // the rate changed: a new bucket, the quota state stays
    EXPECT_EQ(1, ak_cache_remove(z.c, aktest::test_hash()));
    ASSERT_EQ(0, z.put(v3, 6));
    ASSERT_EQ(AK_CACHE_FRESH, z.look(7, &slot));
    st = ak_cache_state(z.c, slot, aktest::test_hash());
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(0u, st->tat_us & AK_TAT_MASK);
    EXPECT_EQ(8u, st->q_left);

    // the same on a plain re-read (ttl passed), without an event
    st->tat_us = 42;
    ASSERT_EQ(0, z.put(v1, 8));
    ASSERT_EQ(AK_CACHE_FRESH, z.look(9, &slot));
    EXPECT_EQ(0u, ak_cache_state(z.c, slot, aktest::test_hash())->tat_us
                  & AK_TAT_MASK);
}


// the entry evicted and cached again elsewhere: the old handle is dead,
// ak_cache_state_find finds the new entry
TEST(KeyStateCarry, StateFindAfterReCreation)
{
    Zone z;
    ASSERT_NE(nullptr, z.c);
    View v({ { "rate", "5/m" } });
    uint32_t slot, slot2, found;

    ASSERT_EQ(0, z.put(v, 1));
    ASSERT_EQ(AK_CACHE_FRESH, z.look(1, &slot));
    EXPECT_EQ(nullptr, ak_cache_state_find(z.c, nullptr, &found));
    found = 0xffffffffu;
    EXPECT_EQ(ak_cache_state(z.c, slot, aktest::test_hash()),
              ak_cache_state_find(z.c, aktest::test_hash(), &found));
    EXPECT_EQ(slot, found);

    ak_cache_flush(z.c);
    EXPECT_EQ(nullptr, ak_cache_state_find(z.c, aktest::test_hash(), &found));

    // another key takes the first slot, ours comes back in another one
    // (the other key has the same digest bytes 8-11, which pick an entry's
    // home slot: it takes ours)
    unsigned char other[AK_HASH_LEN];
    std::memset(other, 0x11, sizeof(other));
    std::memcpy(other + 8, aktest::test_hash() + 8, 4);
    ASSERT_EQ(0, ak_cache_put(z.c, other, v.b.blob.data(), v.b.blob.size(),
                              2, ak_cache_event_seq(z.c)));
    ASSERT_EQ(0, z.put(v, 2));
    ASSERT_EQ(AK_CACHE_FRESH, z.look(2, &slot2));
    ASSERT_NE(slot, slot2);
    EXPECT_EQ(nullptr, ak_cache_state(z.c, slot, aktest::test_hash()));
    ak_key_state_t *st = ak_cache_state_find(z.c, aktest::test_hash(), &found);
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(slot2, found);
    EXPECT_EQ(0u, st->tat_us & AK_TAT_MASK);
}


/* the quota counters are the identity's: another identity, another count */
TEST(KeyStateCarry, IdentityChangeStartsQuotaAfresh)
{
    const std::string one(64, 'a'), two(64, 'b');
    View a({ { "rate", "5/m" }, { "quota", "100/day" }, { "identity", one } });
    View same({ { "rate", "5/m" }, { "quota", "100/day" },
                { "identity", one }, { "alias_until", "1800000000" } });
    View other({ { "rate", "5/m" }, { "quota", "100/day" },
                 { "identity", two } });
    View own({ { "rate", "5/m" }, { "quota", "100/day" } });

    ak_key_state_t st = state(123, 7, 8, 9);
    ak_key_state_carry(&a.rec, &same.rec, &st);
    EXPECT_EQ(123u, st.tat_us);
    EXPECT_EQ(7u, st.q_window);
    EXPECT_EQ(8u, st.q_left);
    EXPECT_EQ(9u, st.q_used);

    for (const View *v : { &other, &own }) {
        st = state(123, 7, 8, 9);
        ak_key_state_carry(&a.rec, &v->rec, &st);
        EXPECT_EQ(123u, st.tat_us);     // the rate is the same
        EXPECT_EQ(0u, st.q_window);
        EXPECT_EQ(0u, st.q_left);
        EXPECT_EQ(0u, st.q_used);
    }
    st = state(123, 7, 8, 9);
    ak_key_state_carry(&own.rec, &a.rec, &st);
    EXPECT_EQ(0u, st.q_left);
}
