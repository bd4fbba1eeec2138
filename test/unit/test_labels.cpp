/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Request counts by plan or owner (ak_labels_*): the hard cap on values,
 * "other", long values, the limit below the capacity, reset, and the
 * metrics family they make.
 */

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ak_core.h"

namespace {

struct Table {
    std::vector<uint64_t> mem;
    ak_labels_t *l;
    Table(uint32_t max, uint32_t ns)
        : mem(ak_labels_size(max, ns) / 8 + 1)
    {
        l = ak_labels_create(mem.data(), mem.size() * 8, max, ns, 1);
    }
};

std::map<std::string, std::vector<uint64_t>> snap(ak_labels_t *l, uint32_t ns)
{
    uint32_t cap = ak_labels_capacity(l) + 1;
    std::vector<ak_str_t> v(cap);
    std::vector<uint64_t> c(cap * ns);
    uint32_t n = ak_labels_snapshot(l, v.data(), c.data(), cap);
    std::map<std::string, std::vector<uint64_t>> m;
    for (uint32_t i = 0; i < n; i++) {
        m[std::string(v[i].data, v[i].len)] =
            std::vector<uint64_t>(c.begin() + i * ns, c.begin() + (i + 1) * ns);
    }
    return m;
}

} // namespace

TEST(Labels, CapAndOther)
{
    Table t(2, 3);
    ASSERT_NE(nullptr, t.l);

    ak_labels_count(t.l, "pro", 3, 0, 2);
    ak_labels_count(t.l, "pro", 3, 0, 2);
    ak_labels_count(t.l, "free", 4, 1, 2);
    ak_labels_count(t.l, "gold", 4, 0, 2);     /* a third value: other */
    ak_labels_count(t.l, "pro", 3, 2, 2);
    ak_labels_count(t.l, "x", 1, 3, 2);        /* status out of range */

    auto m = snap(t.l, 3);
    ASSERT_EQ(3u, m.size());
    EXPECT_EQ((std::vector<uint64_t>{2, 0, 1}), m["pro"]);
    EXPECT_EQ((std::vector<uint64_t>{0, 1, 0}), m["free"]);
    EXPECT_EQ((std::vector<uint64_t>{1, 0, 0}), m["other"]);
}

TEST(Labels, LimitBelowCapacityLongAndEmpty)
{
    Table t(10, 1);
    std::string longv(AK_LABEL_VALUE_MAX + 1, 'a');
    ak_labels_count(t.l, longv.data(), longv.size(), 0, 10);
    ak_labels_count(t.l, "", 0, 0, 10);        /* no plan: its own value */
    ak_labels_count(t.l, "a", 1, 0, 1);        /* limit 1: other */
    std::string maxv(AK_LABEL_VALUE_MAX, 'b');
    ak_labels_count(t.l, maxv.data(), maxv.size(), 0, 10);

    auto m = snap(t.l, 1);
    EXPECT_EQ(2u, m["other"][0]);
    EXPECT_EQ(1u, m[""][0]);
    EXPECT_EQ(1u, m[maxv][0]);
    EXPECT_EQ(3u, m.size());
}

TEST(Labels, ManyValuesAndReset)
{
    Table t(AK_LABEL_MAX_VALUES, 2);
    ASSERT_NE(nullptr, t.l);
    for (int i = 0; i < 1500; i++) {
        std::string v = "plan-" + std::to_string(i);
        ak_labels_count(t.l, v.data(), v.size(), i % 2, AK_LABEL_MAX_VALUES);
    }
    auto m = snap(t.l, 2);
    EXPECT_EQ(AK_LABEL_MAX_VALUES + 1u, m.size());
    EXPECT_EQ(250u, m["other"][0]);
    EXPECT_EQ(250u, m["other"][1]);
    EXPECT_EQ(1u, m["plan-999"][1]);

    ak_labels_reset(t.l, 2);
    EXPECT_EQ(2u, ak_labels_kind(t.l));
    EXPECT_EQ(1u, snap(t.l, 2).size());
}

TEST(Labels, CreateRefuses)
{
    std::vector<uint64_t> mem(1024);
    EXPECT_EQ(nullptr, ak_labels_create(mem.data(), 8, 2, 2, 1));
    EXPECT_EQ(nullptr, ak_labels_create(mem.data(), mem.size() * 8, 0, 2, 1));
    EXPECT_EQ(nullptr, ak_labels_create(mem.data(), mem.size() * 8,
                                        AK_LABEL_MAX_VALUES + 1, 2, 1));
}

TEST(Labels, MetricsFamily)
{
    ak_str_t status[2] = {{"ok", 2}, {"revoked", 7}};
    ak_str_t vals[2] = {{"p\"ro", 4}, {"other", 5}};
    uint64_t counts[4] = {3, 0, 0, 1};
    uint64_t zs[2] = {0, 0};
    uint64_t lat[2] = {0, 0};
    ak_metrics_zone_t z{};
    z.name = {"keys", 4};
    z.status = zs;
    z.latency = lat;
    z.nlabels = 2;
    z.label_values = vals;
    z.label_counts = counts;
    uint64_t bounds[2] = {250, 0};
    ak_metrics_t m{};
    m.zones = &z;
    m.nzones = 1;
    m.status_names = status;
    m.nstatus = 2;
    m.latency_bounds_us = bounds;
    m.nbuckets = 2;
    m.label_name = "plan";

    std::string page(ak_metrics_page(&m, nullptr, 0), '\0');
    ASSERT_EQ(page.size(), ak_metrics_page(&m, &page[0], page.size()));
    EXPECT_NE(std::string::npos,
              page.find("# TYPE api_key_requests_by_plan_total counter\n"));
    EXPECT_NE(std::string::npos,
              page.find("api_key_requests_by_plan_total{zone=\"keys\","
                        "plan=\"p\\\"ro\",status=\"ok\"} 3\n"));
    EXPECT_NE(std::string::npos,
              page.find("api_key_requests_by_plan_total{zone=\"keys\","
                        "plan=\"other\",status=\"revoked\"} 1\n"));
    EXPECT_EQ(std::string::npos,
              page.find("api_key_requests_by_plan_total{zone=\"keys\","
                        "plan=\"p\\\"ro\",status=\"revoked\"}"))
        << "zero counts are not printed";

    m.label_name = nullptr;
    page.assign(ak_metrics_page(&m, nullptr, 0), '\0');
    ak_metrics_page(&m, &page[0], page.size());
    EXPECT_EQ(std::string::npos, page.find("by_plan"));
}


/*
 * A worker's own table (ak_labels_count_local) folded into the zone's
 * (ak_labels_fold): the same counts as counting in the zone directly, the
 * zone's cap decides "other", the worker's table is empty after; a full
 * worker table refuses a new value instead of counting it as "other".
 */

TEST(Labels, LocalFoldMatchesDirectCounting)
{
    Table zone(3, 4), direct(3, 4), local(8, 4);
    const char *seq[] = { "pro", "free", "pro", "gold", "team", "pro", "" };
    std::string longv(AK_LABEL_VALUE_MAX + 1, 'x');

    /* the zone already knows "gold" */
    ak_labels_count(zone.l, "gold", 4, 1, 3);
    ak_labels_count(direct.l, "gold", 4, 1, 3);

    for (unsigned i = 0; i < 7; i++) {
        ASSERT_EQ(0, ak_labels_count_local(local.l, seq[i],
                                           std::strlen(seq[i]), i % 4));
        ak_labels_count(direct.l, seq[i], std::strlen(seq[i]), i % 4, 3);
    }
    ASSERT_EQ(0, ak_labels_count_local(local.l, longv.data(), longv.size(), 2));
    ak_labels_count(direct.l, longv.data(), longv.size(), 2, 3);

    EXPECT_EQ(8u, ak_labels_fold(zone.l, local.l, 3));
    EXPECT_EQ(snap(direct.l, 4), snap(zone.l, 4));
    EXPECT_EQ(1u, snap(local.l, 4).size()) << "only \"other\", empty";
    EXPECT_EQ(std::vector<uint64_t>(4, 0), snap(local.l, 4)["other"]);
    EXPECT_EQ(0u, ak_labels_fold(zone.l, local.l, 3));

    /* counted again after the fold */
    ASSERT_EQ(0, ak_labels_count_local(local.l, "pro", 3, 0));
    EXPECT_EQ(1u, ak_labels_fold(zone.l, local.l, 3));
    EXPECT_EQ((std::vector<uint64_t>{ 2, 1, 1, 0 }), snap(zone.l, 4)["pro"]);
}

/* the same fold in steps of at most max values (the lock held per step):
 * the zone gets what one fold gives, the worker's table stays as it was
 * until the last step empties it */
TEST(Labels, FoldInStepsMovesWhatOneFoldMoves)
{
    for (uint32_t max : { 0u, 1u, 2u, 3u, 100u }) {
        Table zone(20, 2), whole(20, 2), local(16, 2), again(16, 2);
        for (unsigned i = 0; i < 10; i++) {
            std::string v = "plan" + std::to_string(i);
            for (unsigned k = 0; k <= i % 3; k++) {
                ASSERT_EQ(0, ak_labels_count_local(local.l, v.data(), v.size(), k % 2));
                ASSERT_EQ(0, ak_labels_count_local(again.l, v.data(), v.size(), k % 2));
            }
        }
        uint32_t at = 0, steps = 0;
        uint64_t moved = 0;
        while (at != AK_LABELS_FOLDED && steps++ < 100) {
            uint32_t before = at;
            moved += ak_labels_fold_step(zone.l, local.l, 10, &at, max);
            if (at != AK_LABELS_FOLDED) {
                EXPECT_EQ(before + (max ? max : 1), at) << "max " << max;
                EXPECT_EQ(11u, snap(local.l, 2).size()) << "untouched until the end";
            }
        }
        EXPECT_EQ(AK_LABELS_FOLDED, at);
        EXPECT_EQ(ak_labels_fold(whole.l, again.l, 10), moved);
        EXPECT_EQ(19u, moved);
        EXPECT_EQ(snap(whole.l, 2), snap(zone.l, 2)) << "max " << max;
        EXPECT_EQ(1u, snap(local.l, 2).size()) << "emptied";
        if (max <= 1) {
            EXPECT_EQ(11u, steps) << "ten values and other, one a step";
        }
    }

    Table t(4, 2), u(4, 3);
    uint32_t at = 0;
    EXPECT_EQ(0u, ak_labels_fold_step(t.l, u.l, 4, &at, 8)) << "nstatus differs";
    EXPECT_EQ(AK_LABELS_FOLDED, at);
    EXPECT_EQ(0u, ak_labels_fold_step(t.l, t.l, 4, nullptr, 8));
}

TEST(Labels, FullLocalTableRefusesNewValues)
{
    Table local(2, 2), zone(10, 2), other_ns(10, 3);

    ASSERT_EQ(0, ak_labels_count_local(local.l, "a", 1, 0));
    ASSERT_EQ(0, ak_labels_count_local(local.l, "b", 1, 1));
    EXPECT_EQ(0, ak_labels_count_local(local.l, "a", 1, 1)) << "known: counted";
    EXPECT_EQ(-1, ak_labels_count_local(local.l, "c", 1, 0)) << "new, no room";
    EXPECT_EQ(0, ak_labels_count_local(local.l, "x", 1, 5)) << "bad status: ignored";

    EXPECT_EQ(0u, ak_labels_fold(other_ns.l, local.l, 10)) << "nstatus differ";
    EXPECT_EQ(3u, ak_labels_fold(zone.l, local.l, 10));
    EXPECT_EQ(0, ak_labels_count_local(local.l, "c", 1, 0)) << "room again";
    EXPECT_EQ(1u, ak_labels_fold(zone.l, local.l, 10));

    auto m = snap(zone.l, 2);
    EXPECT_EQ((std::vector<uint64_t>{ 1, 1 }), m["a"]);
    EXPECT_EQ((std::vector<uint64_t>{ 0, 1 }), m["b"]);
    EXPECT_EQ((std::vector<uint64_t>{ 1, 0 }), m["c"]);
}
