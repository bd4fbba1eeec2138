/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * "rate N/period" without a burst field: a bucket of N (N requests at
 * once, refilled at N per period); an explicit burst keeps the GCRA
 * meaning (burst + 1 at once, then one per period / N), burst=0 included.
 * Built from record fields and admitted through ak_limits_admit, as the
 * module does.
 */

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ak_core.h"
#include "ak_record_util.h"

using aktest::Fields;

namespace {

constexpr uint64_t kSec = 1000000;
constexpr int64_t kNow = 1764547200;        /* 2025-12-01 00:00:00 UTC */
constexpr uint64_t kNowUs = 5000 * kSec;

/* n requests at the same microsecond: the outcome of each */
std::vector<int> at_once(const ak_record_t &rec, ak_key_state_t *st, int n,
    uint64_t now_us, std::vector<ak_admit_result_t> *out = nullptr)
{
    std::vector<int> rcs;
    for (int i = 0; i < n; i++) {
        ak_admit_result_t res;
        rcs.push_back(ak_limits_admit(st, &rec, kNow, now_us, 100, &res));
        if (out) {
            out->push_back(res);
        }
    }
    return rcs;
}

int count(const std::vector<int> &v, int rc)
{
    int n = 0;
    for (int x : v) {
        n += x == rc;
    }
    return n;
}

} // namespace


TEST(RateDefault, BurstOfARate)
{
    EXPECT_EQ(ak_rate_default_burst(0), 0u);
    EXPECT_EQ(ak_rate_default_burst(1), 0u);
    EXPECT_EQ(ak_rate_default_burst(5), 4u);
    EXPECT_EQ(ak_rate_default_burst(100), 99u);
    EXPECT_EQ(ak_rate_default_burst(1000001), 1000000u);
    EXPECT_EQ(ak_rate_default_burst(1000002), 1000000u);
    EXPECT_EQ(ak_rate_default_burst(1000000000), 1000000u);
    EXPECT_EQ(ak_rate_default_burst(UINT64_MAX), 1000000u);
}

TEST(RateDefault, RecordWithoutBurstHasABucketOfN)
{
    auto a = aktest::make({ { "rate", "5/m" } });
    ASSERT_EQ(a->view_rc, 0);
    EXPECT_EQ(a->rec.rate_n, 5u);
    EXPECT_EQ(a->rec.burst, 4u);

    /* an empty burst field is an absent one */
    auto b = aktest::make({ { "rate", "5/m" }, { "burst", "" } });
    EXPECT_EQ(b->rec.burst, 4u);
    EXPECT_EQ(a->b.blob, b->b.blob);

    /* explicit values are kept, 0 included */
    auto c = aktest::make({ { "rate", "5/m" }, { "burst", "0" } });
    EXPECT_EQ(c->rec.burst, 0u);
    auto d = aktest::make({ { "rate", "5/m" }, { "burst", "2" } });
    EXPECT_EQ(d->rec.burst, 2u);
    auto e = aktest::make({ { "rate", "5/m" }, { "burst", "40" } });
    EXPECT_EQ(e->rec.burst, 40u);

    /* 1/s: a bucket of one, as burst=0 */
    auto f = aktest::make({ { "rate", "1/s" } });
    EXPECT_EQ(f->rec.burst, 0u);

    /* a huge rate: the burst stays within its limit */
    auto g = aktest::make({ { "rate", "1000000000/s" } });
    ASSERT_EQ(g->view_rc, 0);
    EXPECT_EQ(g->rec.burst, 1000000u);
    EXPECT_EQ(g->rec.rate_interval_us, 1u);
}

TEST(RateDefault, FivePerMinuteAdmitsFiveOfEightAtOnce)
{
    auto r = aktest::make({ { "rate", "5/m" } });
    ASSERT_EQ(r->view_rc, 0);
    ak_key_state_t st;
    std::memset(&st, 0, sizeof(st));

    std::vector<ak_admit_result_t> res;
    auto rcs = at_once(r->rec, &st, 8, kNowUs, &res);
    EXPECT_EQ(rcs, (std::vector<int>{ AK_ADMIT, AK_ADMIT, AK_ADMIT, AK_ADMIT,
                                      AK_ADMIT, AK_DENY_RATE, AK_DENY_RATE,
                                      AK_DENY_RATE }));
    /* remaining counts down 4, 3, 2, 1, 0 */
    for (int i = 0; i < 5; i++) {
        EXPECT_EQ(res[i].rate.remaining, static_cast<uint32_t>(4 - i));
    }
    /* the next one in 12 s (60 s / 5), not a microsecond before */
    EXPECT_EQ(res[5].rate.retry_after_us, 12 * kSec);
    EXPECT_EQ(res[7].rate.retry_after_us, 12 * kSec);

    EXPECT_EQ(count(at_once(r->rec, &st, 1, kNowUs + 12 * kSec - 1),
                    AK_ADMIT), 0);
    EXPECT_EQ(count(at_once(r->rec, &st, 3, kNowUs + 12 * kSec), AK_ADMIT),
              1);

    /* refilled at 5 per minute: after a minute of silence, 5 again */
    EXPECT_EQ(count(at_once(r->rec, &st, 8, kNowUs + 120 * kSec), AK_ADMIT),
              5);
}

TEST(RateDefault, ExplicitBurstZeroKeepsGcra)
{
    auto r = aktest::make({ { "rate", "5/m" }, { "burst", "0" } });
    ASSERT_EQ(r->view_rc, 0);
    ak_key_state_t st;
    std::memset(&st, 0, sizeof(st));

    std::vector<ak_admit_result_t> res;
    auto rcs = at_once(r->rec, &st, 8, kNowUs, &res);
    EXPECT_EQ(count(rcs, AK_ADMIT), 1);
    EXPECT_EQ(rcs[0], AK_ADMIT);
    EXPECT_EQ(res[1].rate.retry_after_us, 12 * kSec);
}

TEST(RateDefault, ExplicitBurstKeepsGcra)
{
    auto r = aktest::make({ { "rate", "5/m" }, { "burst", "2" } });
    ak_key_state_t st;
    std::memset(&st, 0, sizeof(st));
    EXPECT_EQ(count(at_once(r->rec, &st, 8, kNowUs), AK_ADMIT), 3);
}

TEST(RateDefault, QuotaDeniedRequestConsumesNoRate)
{
    /* the bucket is consumed only by admitted requests, as before */
    auto r = aktest::make({ { "rate", "3/s" }, { "quota", "2/day" } });
    ASSERT_EQ(r->view_rc, 0);
    ak_key_state_t st;
    std::memset(&st, 0, sizeof(st));
    ak_admit_result_t res;
    EXPECT_EQ(ak_limits_admit(&st, &r->rec, kNow, kNowUs, 100, &res),
              AK_NEED_LEASE);
    EXPECT_EQ(st.tat_us, 0u);
    st.q_left = 3;
    st.q_used = 3;
    st.q_window = res.window;
    EXPECT_EQ(count(at_once(r->rec, &st, 5, kNowUs), AK_ADMIT), 3);
}
