/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The usage table (ak_usage_*): counts per key and UTC day by class, the
 * last use, the swap of the halves, merging back, the fill limit; and the
 * Redis names of the usage flush (ak_redis_name_requests, _last_used).
 */

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ak_core.h"
#include "akcore.hpp"

namespace {

struct Key {
    unsigned char h[AK_HASH_LEN];
    explicit Key(unsigned n)
    {
        for (size_t i = 0; i < AK_HASH_LEN; i++) {
            h[i] = static_cast<unsigned char>(n * 131 + i * 7 + (n >> 8));
        }
    }
};

struct Table {
    std::vector<unsigned char> mem;
    ak_usage_t *u;
    explicit Table(uint32_t slots) : mem(ak_usage_size(slots))
    {
        u = ak_usage_create(mem.data(), mem.size());
    }
};

const int64_t kDay = 1764633600;    /* 2025-12-02 00:00 UTC */

/* the used items of a retired half, by key byte 0 and day */
std::map<std::pair<int, int64_t>, ak_usage_item_t>
items(ak_usage_item_t *half, uint32_t n)
{
    std::map<std::pair<int, int64_t>, ak_usage_item_t> m;
    for (uint32_t i = 0; i < n; i++) {
        if (half[i].day) {
            m[{ half[i].hash[0], half[i].day }] = half[i];
        }
    }
    return m;
}

} // namespace


TEST(Usage, CreateRefusesTooSmall)
{
    std::vector<unsigned char> mem(ak_usage_size(7));
    EXPECT_EQ(nullptr, ak_usage_create(mem.data(), mem.size()));
    EXPECT_EQ(nullptr, ak_usage_create(nullptr, 1 << 20));
    Table t(8);
    ASSERT_NE(nullptr, t.u);
    EXPECT_EQ(8u, ak_usage_slots(t.u));
}

TEST(Usage, CountsByClassAndDay)
{
    Table t(64);
    Key a(1), b(2);

    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay + 10, AK_USAGE_ALLOWED));
    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay + 20, AK_USAGE_ALLOWED));
    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay + 15, AK_USAGE_DENIED_LIMIT));
    ASSERT_EQ(0, ak_usage_add(t.u, b.h, kDay + 30, AK_USAGE_DENIED_STATUS));
    /* the next UTC day: an item of its own */
    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay + 86400, AK_USAGE_DENIED_POLICY));
    EXPECT_EQ(-1, ak_usage_add(t.u, a.h, kDay, AK_USAGE_NCLASSES));

    uint32_t n = 0;
    ak_usage_item_t *half = ak_usage_swap(t.u, &n);
    ASSERT_NE(nullptr, half);
    auto m = items(half, n);
    ASSERT_EQ(3u, m.size());

    const ak_usage_item_t &a1 = m[{ a.h[0], kDay }];
    EXPECT_EQ(0, std::memcmp(a1.hash, a.h, AK_HASH_LEN));
    EXPECT_EQ(2u, a1.counts[AK_USAGE_ALLOWED]);
    EXPECT_EQ(1u, a1.counts[AK_USAGE_DENIED_LIMIT]);
    EXPECT_EQ(0u, a1.counts[AK_USAGE_DENIED_STATUS]);
    EXPECT_EQ(kDay + 20, a1.last_used);      /* the latest, not the last */

    EXPECT_EQ(1u, (m[{ b.h[0], kDay }].counts[AK_USAGE_DENIED_STATUS]));
    EXPECT_EQ(1u, (m[{ a.h[0], kDay + 86400 }].counts[AK_USAGE_DENIED_POLICY]));
}

TEST(Usage, SwapWaitsForClear)
{
    Table t(16);
    Key a(1);

    uint32_t n = 0;
    EXPECT_EQ(nullptr, ak_usage_swap(t.u, &n)) << "nothing counted: no swap";

    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay, AK_USAGE_ALLOWED));
    ak_usage_item_t *half = ak_usage_swap(t.u, &n);
    ASSERT_NE(nullptr, half);

    /* counted meanwhile: in the other half */
    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay, AK_USAGE_ALLOWED));
    EXPECT_EQ(nullptr, ak_usage_swap(t.u, &n)) << "the retired half is read";
    EXPECT_EQ(1u, items(half, n).begin()->second.counts[0]);

    ak_usage_clear(t.u);
    EXPECT_TRUE(items(half, n).empty());

    ak_usage_item_t *h2 = ak_usage_swap(t.u, &n);
    ASSERT_NE(nullptr, h2);
    EXPECT_NE(half, h2);
    auto m = items(h2, n);
    ASSERT_EQ(1u, m.size());
    EXPECT_EQ(1u, m.begin()->second.counts[0]);
    ak_usage_clear(t.u);
}

TEST(Usage, MergeBack)
{
    Table t(16);
    Key a(1);

    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay + 5, AK_USAGE_ALLOWED));
    uint32_t n = 0;
    ak_usage_item_t *half = ak_usage_swap(t.u, &n);
    ASSERT_NE(nullptr, half);
    ak_usage_item_t copy = items(half, n).begin()->second;
    ak_usage_clear(t.u);

    ASSERT_EQ(0, ak_usage_add(t.u, a.h, kDay + 3, AK_USAGE_DENIED_LIMIT));
    ASSERT_EQ(0, ak_usage_merge(t.u, &copy));
    ak_usage_item_t bad = copy;
    bad.day = kDay + 1;
    EXPECT_EQ(-1, ak_usage_merge(t.u, &bad));

    half = ak_usage_swap(t.u, &n);
    ASSERT_NE(nullptr, half);
    auto m = items(half, n);
    ASSERT_EQ(1u, m.size());
    EXPECT_EQ(1u, m.begin()->second.counts[AK_USAGE_ALLOWED]);
    EXPECT_EQ(1u, m.begin()->second.counts[AK_USAGE_DENIED_LIMIT]);
    EXPECT_EQ(kDay + 5, m.begin()->second.last_used);
}

TEST(Usage, FullHalfDropsAndCounts)
{
    Table t(16);        /* 12 items per half at most */

    for (unsigned k = 0; k < 12; k++) {
        Key key(k + 1);
        ASSERT_EQ(0, ak_usage_add(t.u, key.h, kDay, AK_USAGE_ALLOWED)) << k;
    }
    Key extra(100);
    EXPECT_EQ(-1, ak_usage_add(t.u, extra.h, kDay, AK_USAGE_ALLOWED));
    EXPECT_EQ(1u, ak_usage_dropped(t.u));
    /* a key already there still counts */
    Key first(1);
    EXPECT_EQ(0, ak_usage_add(t.u, first.h, kDay, AK_USAGE_ALLOWED));

    uint32_t n = 0;
    ak_usage_item_t *half = ak_usage_swap(t.u, &n);
    ASSERT_NE(nullptr, half);
    EXPECT_EQ(12u, items(half, n).size());
    ak_usage_clear(t.u);
    /* the other half has room */
    EXPECT_EQ(0, ak_usage_add(t.u, extra.h, kDay, AK_USAGE_ALLOWED));
}

TEST(Usage, ClassNames)
{
    EXPECT_STREQ("allowed", ak_usage_class_name(AK_USAGE_ALLOWED));
    EXPECT_STREQ("denied_status", ak_usage_class_name(AK_USAGE_DENIED_STATUS));
    EXPECT_STREQ("denied_policy", ak_usage_class_name(AK_USAGE_DENIED_POLICY));
    EXPECT_STREQ("denied_limit", ak_usage_class_name(AK_USAGE_DENIED_LIMIT));
    EXPECT_EQ(nullptr, ak_usage_class_name(AK_USAGE_NCLASSES));
}

TEST(Usage, Names)
{
    unsigned char h[AK_HASH_LEN];
    for (size_t i = 0; i < AK_HASH_LEN; i++) {
        h[i] = static_cast<unsigned char>(i);
    }
    const std::string hex =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    EXPECT_EQ("apikey:usage:{apikey:" + hex + "}:requests:1764633600",
              ak::redis_requests_name("apikey:", h, kDay));
    EXPECT_EQ("apikey:usage:{apikey:" + hex + "}:last_used",
              ak::redis_last_used_name("apikey:", h));
    EXPECT_EQ("usage:{" + hex + "}:last_used",
              ak::redis_last_used_name("", h));

    /* refused, nothing written, below the exact length */
    std::string want = "p:usage:{p:" + hex + "}:last_used";
    char buf[300];
    for (size_t cap = 0; cap < want.size(); cap++) {
        std::memset(buf, 'x', sizeof(buf));
        EXPECT_EQ(0u, ak_redis_name_last_used("p:", 2, h, buf, cap));
        EXPECT_EQ('x', buf[0]);
    }
    EXPECT_EQ(want.size(), ak_redis_name_last_used("p:", 2, h, buf,
                                                   want.size()));

    /* the longest prefix fits AK_REDIS_TAGGED_MAX */
    std::string prefix(AK_REDIS_PREFIX_MAX, 'a');
    char big[AK_REDIS_TAGGED_MAX];
    EXPECT_GT(ak_redis_name_requests(prefix.data(), prefix.size(), h,
                                     INT64_MIN, big, sizeof(big)), 0u);
}


/*
 * A worker's own table folded into the zone's (ak_usage_fold): every count
 * and last use arrives once, the worker's table is empty after, what the
 * zone has no room for is counted as dropped there.
 */

TEST(Usage, FoldMovesEverythingOnce)
{
    Table zone(64), local(16);
    Key a(1), b(2), c(3);

    ASSERT_EQ(0, ak_usage_add(zone.u, a.h, kDay + 5, AK_USAGE_ALLOWED));
    ASSERT_EQ(0, ak_usage_add(local.u, a.h, kDay + 10, AK_USAGE_ALLOWED));
    ASSERT_EQ(0, ak_usage_add(local.u, a.h, kDay + 40, AK_USAGE_DENIED_LIMIT));
    ASSERT_EQ(0, ak_usage_add(local.u, b.h, kDay + 20, AK_USAGE_DENIED_POLICY));
    ASSERT_EQ(0, ak_usage_add(local.u, c.h, kDay + 86400 + 1,
                              AK_USAGE_DENIED_STATUS));

    EXPECT_EQ(4u, ak_usage_fold(zone.u, local.u));
    EXPECT_EQ(0u, ak_usage_fold(zone.u, local.u)) << "the worker's table is empty";

    uint32_t n = 0;
    ak_usage_item_t *half = ak_usage_swap(zone.u, &n);
    ASSERT_NE(nullptr, half);
    auto m = items(half, n);
    ASSERT_EQ(3u, m.size());
    ak_usage_item_t ia = m[{ a.h[0], kDay }];
    EXPECT_EQ(2u, ia.counts[AK_USAGE_ALLOWED]);
    EXPECT_EQ(1u, ia.counts[AK_USAGE_DENIED_LIMIT]);
    EXPECT_EQ(kDay + 40, ia.last_used);
    EXPECT_EQ(1u, (m[{ b.h[0], kDay }].counts[AK_USAGE_DENIED_POLICY]));
    EXPECT_EQ(1u, (m[{ c.h[0], kDay + 86400 }].counts[AK_USAGE_DENIED_STATUS]));
    EXPECT_EQ(0u, ak_usage_dropped(zone.u));

    /* the local table counts again from empty */
    ASSERT_EQ(0, ak_usage_add(local.u, a.h, kDay + 50, AK_USAGE_ALLOWED));
    EXPECT_EQ(1u, ak_usage_fold(zone.u, local.u));
}

/* the same fold in steps of at most max items (the lock held per step):
 * each step moves no more than max items, *at only grows and ends at the
 * table's slot count, and the zone gets what one fold gives */
TEST(Usage, FoldInStepsMovesWhatOneFoldMoves)
{
    for (uint32_t max : { 1u, 3u, 8u, 1000u }) {
        Table zone(256), local(64), whole(256), again(64);

        for (unsigned k = 0; k < 40; k++) {
            Key key(700 + k);
            for (unsigned r = 0; r <= k % 3; r++) {
                ASSERT_EQ(0, ak_usage_add(local.u, key.h, kDay + k,
                                          AK_USAGE_ALLOWED));
                ASSERT_EQ(0, ak_usage_add(again.u, key.h, kDay + k,
                                          AK_USAGE_ALLOWED));
            }
        }

        uint64_t moved = 0;
        uint32_t at = 0, steps = 0, slots = ak_usage_slots(local.u);
        while (at < slots) {
            uint32_t before = at;
            uint64_t n = ak_usage_fold_step(zone.u, local.u, &at, max);
            EXPECT_LE(n, 3u * max) << "at most max items (3 requests each)";
            EXPECT_GT(at, before) << "the cursor moves on";
            moved += n;
            ASSERT_LT(++steps, 1000u);
        }
        EXPECT_EQ(slots, at);
        EXPECT_EQ(ak_usage_fold(whole.u, again.u), moved) << "max " << max;
        EXPECT_EQ(79u, moved);
        if (max == 1) {
            EXPECT_GE(steps, 40u) << "one item a step";
        }
        EXPECT_EQ(0u, ak_usage_fold(zone.u, local.u)) << "local is empty";

        uint32_t nz = 0, nw = 0;
        ak_usage_item_t *hz = ak_usage_swap(zone.u, &nz);
        ak_usage_item_t *hw = ak_usage_swap(whole.u, &nw);
        ASSERT_NE(nullptr, hz);
        ASSERT_NE(nullptr, hw);
        auto mz = items(hz, nz);
        auto mw = items(hw, nw);
        ASSERT_EQ(40u, mz.size()) << "max " << max;
        ASSERT_EQ(mw.size(), mz.size());
        for (auto &kv : mw) {
            EXPECT_EQ(kv.second.counts[AK_USAGE_ALLOWED],
                      mz[kv.first].counts[AK_USAGE_ALLOWED]);
            EXPECT_EQ(kv.second.last_used, mz[kv.first].last_used);
        }
    }

    /* max 0 moves one item a step (a step always moves on) */
    {
        Table zone(64), local(16);
        Key a(1), b(2);
        ASSERT_EQ(0, ak_usage_add(local.u, a.h, kDay + 1, AK_USAGE_ALLOWED));
        ASSERT_EQ(0, ak_usage_add(local.u, b.h, kDay + 1, AK_USAGE_ALLOWED));
        uint32_t at = 0, steps = 0;
        uint64_t moved = 0;
        while (at < ak_usage_slots(local.u) && steps++ < 100) {
            moved += ak_usage_fold_step(zone.u, local.u, &at, 0);
        }
        EXPECT_EQ(2u, moved);
        EXPECT_EQ(2u, steps);
    }

    /* nothing to fold into: the fold ends at once */
    Table t(16);
    uint32_t at = 0;
    EXPECT_EQ(0u, ak_usage_fold_step(t.u, t.u, &at, 8));
    EXPECT_EQ(ak_usage_slots(t.u), at);
    at = 0;
    EXPECT_EQ(0u, ak_usage_fold_step(nullptr, t.u, &at, 8));
    EXPECT_EQ(ak_usage_slots(t.u), at);
    EXPECT_EQ(0u, ak_usage_fold_step(t.u, t.u, nullptr, 8));
}

TEST(Usage, FoldIntoAFullZoneCountsDropped)
{
    Table zone(8), local(64);

    /* the zone takes 6 items (3/4 of 8); the worker has 10 keys, 2 requests
     * each */
    for (unsigned k = 0; k < 10; k++) {
        Key key(100 + k);
        ASSERT_EQ(0, ak_usage_add(local.u, key.h, kDay + 1, AK_USAGE_ALLOWED));
        ASSERT_EQ(0, ak_usage_add(local.u, key.h, kDay + 2, AK_USAGE_ALLOWED));
    }

    EXPECT_EQ(12u, ak_usage_fold(zone.u, local.u));
    EXPECT_EQ(8u, ak_usage_dropped(zone.u));
    /* the worker's table is empty: it takes 48 new keys again */
    for (unsigned k = 0; k < 48; k++) {
        Key key(400 + k);
        ASSERT_EQ(0, ak_usage_add(local.u, key.h, kDay + 3, AK_USAGE_ALLOWED));
    }
    EXPECT_EQ(0u, ak_usage_fold(nullptr, local.u));
    EXPECT_EQ(0u, ak_usage_fold(zone.u, zone.u));
}

TEST(Usage, FullWorkerTableFoldsAndCountsAgain)
{
    Table zone(64), local(8);
    unsigned k = 0;

    /* 6 keys fill the worker's table (3/4 of 8): the 7th is refused */
    for (; k < 6; k++) {
        Key key(200 + k);
        ASSERT_EQ(0, ak_usage_add(local.u, key.h, kDay, AK_USAGE_ALLOWED));
    }
    Key more(300);
    EXPECT_EQ(-1, ak_usage_add(local.u, more.h, kDay, AK_USAGE_ALLOWED));

    /* what the glue does then: fold, count again */
    EXPECT_EQ(6u, ak_usage_fold(zone.u, local.u));
    EXPECT_EQ(0, ak_usage_add(local.u, more.h, kDay, AK_USAGE_ALLOWED));
    EXPECT_EQ(1u, ak_usage_fold(zone.u, local.u));
    EXPECT_EQ(0u, ak_usage_dropped(zone.u));
}
