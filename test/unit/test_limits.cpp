/* SPDX-License-Identifier: BSD-2-Clause */
/* GCRA rate limiting and UTC quota windows. */

#include <gtest/gtest.h>

#include <cstdint>
#include <ctime>
#include <random>

#include "ak_core.h"

namespace {

/*
 * Reference: a token bucket kept as "credit" in microseconds.  Capacity is
 * (burst + 1) intervals; credit refills one microsecond per microsecond; a
 * request costs one interval.  Mathematically the same limiter as GCRA, but
 * computed a different way (credit and last time, not a TAT).
 */
struct Bucket {
    uint64_t T, cap, credit, last;
    bool started = false;

    Bucket(uint64_t interval, uint32_t burst)
        : T(interval), cap((uint64_t(burst) + 1) * interval), credit(cap),
          last(0) {}

    bool hit(uint64_t now, uint64_t *remaining, uint64_t *retry,
        uint64_t *reset)
    {
        if (started) {
            uint64_t add = now - last;
            credit = (cap - credit < add) ? cap : credit + add;
        }
        started = true;
        last = now;
        if (credit >= T) {
            credit -= T;
            *remaining = credit / T;
            *retry = 0;
            *reset = cap - credit;
            return true;
        }
        *remaining = 0;
        *retry = T - credit;
        *reset = cap - credit;
        return false;
    }
};

int64_t utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0)
{
    struct tm t = {};
    t.tm_year = y - 1900;
    t.tm_mon = mo - 1;
    t.tm_mday = d;
    t.tm_hour = h;
    t.tm_min = mi;
    t.tm_sec = s;
    return static_cast<int64_t>(timegm(&t));    /* tests only */
}

struct Window {
    int rc;
    int64_t start, end;
};

Window win(uint8_t p, int64_t now)
{
    Window w = { 0, -1, -1 };
    w.rc = ak_quota_window(p, now, &w.start, &w.end);
    return w;
}

} // namespace


TEST(Gcra, BurstZero)
{
    uint64_t tat = 0;
    ak_rate_result_t r;
    const uint64_t T = 100000;     /* 10/s */
    uint64_t now = 5000000;

    ASSERT_EQ(ak_gcra(&tat, now, T, 0, &r), 1);
    EXPECT_EQ(r.remaining, 0u);
    EXPECT_EQ(r.reset_us, T);
    EXPECT_EQ(tat, now + T);

    ASSERT_EQ(ak_gcra(&tat, now, T, 0, &r), 0);
    EXPECT_EQ(r.retry_after_us, T);
    EXPECT_EQ(r.remaining, 0u);
    EXPECT_EQ(tat, now + T) << "tat changes only when allowed";

    ASSERT_EQ(ak_gcra(&tat, now + T - 1, T, 0, &r), 0);
    EXPECT_EQ(r.retry_after_us, 1u);
    ASSERT_EQ(ak_gcra(&tat, now + T, T, 0, &r), 1);
    EXPECT_EQ(tat, now + 2 * T);
}

TEST(Gcra, BurstPlusOneBackToBack)
{
    for (uint32_t b : { 0u, 1u, 2u, 5u, 10u, 100u }) {
        uint64_t tat = 0;
        ak_rate_result_t r;
        const uint64_t T = 250000;
        const uint64_t now = 1000000000;

        for (uint32_t i = 0; i <= b; i++) {
            ASSERT_EQ(ak_gcra(&tat, now, T, b, &r), 1) << "b=" << b
                                                       << " i=" << i;
            EXPECT_EQ(r.remaining, b - i);
            EXPECT_EQ(r.reset_us, (i + 1) * T);
        }
        uint64_t before = tat;
        ASSERT_EQ(ak_gcra(&tat, now, T, b, &r), 0) << "b=" << b;
        EXPECT_EQ(r.remaining, 0u);
        EXPECT_EQ(r.retry_after_us, T);
        EXPECT_EQ(tat, before);

        /* one interval later exactly one more is allowed */
        ASSERT_EQ(ak_gcra(&tat, now + T, T, b, &r), 1);
        EXPECT_EQ(r.remaining, 0u);
        ASSERT_EQ(ak_gcra(&tat, now + T, T, b, &r), 0);

        /* after a long pause the whole burst is back */
        ASSERT_EQ(ak_gcra(&tat, now + 1000 * T, T, b, &r), 1);
        EXPECT_EQ(r.remaining, b);
    }
}

TEST(Gcra, MatchesTokenBucketOnRandomTimelines)
{
    std::mt19937_64 rng(2024);

    for (int tl = 0; tl < 400; tl++) {
        uint64_t T = 1 + rng() % 2000000;
        uint32_t burst = static_cast<uint32_t>(rng() % 25);
        if (tl % 7 == 0) {
            T = 1 + rng() % 5;        /* tiny intervals */
        }
        Bucket ref(T, burst);
        uint64_t tat = 0;
        uint64_t now = rng() % (uint64_t(1) << 40);
        int allowed = 0, limited = 0;

        for (int i = 0; i < 600; i++) {
            switch (rng() % 4) {
            case 0:
                break;                          /* same instant */
            case 1:
                now += rng() % (T + 1);
                break;
            case 2:
                now += rng() % (3 * T + 1);
                break;
            default:
                now += rng() % (T * (burst + 2) + 1);
                break;
            }

            uint64_t rem, retry, reset;
            bool want = ref.hit(now, &rem, &retry, &reset);
            ak_rate_result_t r;
            uint64_t before = tat;
            int got = ak_gcra(&tat, now, T, burst, &r);

            ASSERT_EQ(got, want ? 1 : 0)
                << "timeline " << tl << " step " << i << " T=" << T
                << " burst=" << burst;
            ASSERT_EQ(r.remaining, rem) << "timeline " << tl << " step " << i;
            if (want) {
                allowed++;
                ASSERT_EQ(r.reset_us, reset);
                ASSERT_EQ(r.reset_us, tat - now);
            } else {
                limited++;
                ASSERT_EQ(tat, before);
                ASSERT_EQ(r.retry_after_us, retry);
                ASSERT_GT(r.retry_after_us, 0u);
                ASSERT_EQ(r.reset_us, reset);

                /* waiting retry_after exactly is enough, one less is not */
                uint64_t t2 = tat;
                ak_rate_result_t r2;
                ASSERT_EQ(ak_gcra(&t2, now + r.retry_after_us - 1, T, burst,
                                  &r2),
                          0);
                ASSERT_EQ(ak_gcra(&t2, now + r.retry_after_us, T, burst, &r2),
                          1);
            }
        }
        /* the timelines exercise both outcomes overall */
        if (tl == 0) {
            EXPECT_GT(allowed, 0);
        }
        (void) limited;
    }
}

TEST(Gcra, EdgeValues)
{
    ak_rate_result_t r;
    uint64_t tat = 0;

    /* interval 0 behaves as 1 microsecond */
    ASSERT_EQ(ak_gcra(&tat, 10, 0, 0, &r), 1);
    ASSERT_EQ(ak_gcra(&tat, 10, 0, 0, &r), 0);
    EXPECT_EQ(r.retry_after_us, 1u);

    /* huge values saturate instead of wrapping */
    tat = 0;
    ASSERT_EQ(ak_gcra(&tat, 1, UINT64_MAX / 2, 4000000000u, &r), 1);
    EXPECT_GT(tat, 1u);
    tat = UINT64_MAX - 5;
    EXPECT_EQ(ak_gcra(&tat, UINT64_MAX - 10, 100, 0, &r), 0);
    EXPECT_EQ(tat, UINT64_MAX - 5);
    tat = UINT64_MAX - 5;
    EXPECT_EQ(ak_gcra(&tat, UINT64_MAX - 5, 100, 1, &r), 1);
    EXPECT_EQ(tat, UINT64_MAX);

    /* a stale tat far in the past does not bank credit */
    tat = 1;
    const uint64_t T = 1000;
    int ok = 0;
    while (ak_gcra(&tat, 1000000000, T, 3, &r) == 1) {
        ok++;
    }
    EXPECT_EQ(ok, 4);

    /* null result pointer tolerated */
    tat = 0;
    EXPECT_EQ(ak_gcra(&tat, 0, 1, 0, nullptr), 1);
}


TEST(Quota, Hour)
{
    Window w = win(AK_PERIOD_HOUR, utc(2024, 5, 17, 13, 45, 12));
    ASSERT_EQ(w.rc, 0);
    EXPECT_EQ(w.start, utc(2024, 5, 17, 13));
    EXPECT_EQ(w.end, utc(2024, 5, 17, 14));

    /* exact boundary belongs to the new window */
    w = win(AK_PERIOD_HOUR, utc(2024, 5, 17, 14));
    EXPECT_EQ(w.start, utc(2024, 5, 17, 14));
    w = win(AK_PERIOD_HOUR, utc(2024, 5, 17, 14) - 1);
    EXPECT_EQ(w.start, utc(2024, 5, 17, 13));
    EXPECT_EQ(w.end, utc(2024, 5, 17, 14));

    /* before 1970 (floor, not truncation) */
    w = win(AK_PERIOD_HOUR, -1);
    EXPECT_EQ(w.start, -3600);
    EXPECT_EQ(w.end, 0);
}

TEST(Quota, Day)
{
    Window w = win(AK_PERIOD_DAY, utc(2023, 12, 31, 23, 59, 59));
    ASSERT_EQ(w.rc, 0);
    EXPECT_EQ(w.start, 1703980800);                 /* 2023-12-31 */
    EXPECT_EQ(w.end, 1704067200);                   /* 2024-01-01 */
    w = win(AK_PERIOD_DAY, 1704067200);
    EXPECT_EQ(w.start, 1704067200);
    EXPECT_EQ(w.end, 1704067200 + 86400);
    w = win(AK_PERIOD_DAY, 0);
    EXPECT_EQ(w.start, 0);
    w = win(AK_PERIOD_DAY, -1);
    EXPECT_EQ(w.start, -86400);
    EXPECT_EQ(w.end, 0);
}

TEST(Quota, MonthKnownDates)
{
    struct {
        int64_t now, start, end;
    } cases[] = {
        /* Jan 31 -> Feb 1 */
        { 1706745599, 1704067200, 1706745600 },
        { 1706745600, 1706745600, 1709251200 },
        /* 2024 is leap: Feb 29 is in February, March starts on the 1st */
        { 1709208000, 1706745600, 1709251200 },
        { 1709164800, 1706745600, 1709251200 },
        { 1709251200, 1709251200, utc(2024, 4, 1) },
        /* December -> next year */
        { 1704067199, utc(2023, 12, 1), 1704067200 },
        { 1704067200, 1704067200, 1706745600 },
        /* 2100 is not leap: Feb has 28 days */
        { 4107459600, 4105123200, 4107542400 },
        /* 2000 is leap */
        { 951782400, 949363200, 951868800 },
        /* 2023 not leap */
        { 1675209600 + 27 * 86400, 1675209600, 1677628800 },
        /* before 1970 */
        { -3600, -2678400, 0 },
    };
    for (const auto &c : cases) {
        Window w = win(AK_PERIOD_MONTH, c.now);
        ASSERT_EQ(w.rc, 0);
        EXPECT_EQ(w.start, c.start) << "now " << c.now;
        EXPECT_EQ(w.end, c.end) << "now " << c.now;
    }
    /* sanity of the constants against timegm */
    EXPECT_EQ(utc(2100, 3, 1), 4107542400);
    EXPECT_EQ(utc(2000, 2, 29), 951782400);
}

TEST(Quota, MonthAgainstGmtime)
{
    std::mt19937_64 rng(77);
    for (int i = 0; i < 20000; i++) {
        int64_t now = static_cast<int64_t>(rng() % 8000000000ULL)
                      - 2000000000LL;
        time_t t = static_cast<time_t>(now);
        struct tm tm;
        ASSERT_NE(gmtime_r(&t, &tm), nullptr);
        int y = tm.tm_year + 1900, m = tm.tm_mon + 1;
        int64_t start = utc(y, m, 1);
        int64_t end = m == 12 ? utc(y + 1, 1, 1) : utc(y, m + 1, 1);

        Window w = win(AK_PERIOD_MONTH, now);
        ASSERT_EQ(w.rc, 0);
        ASSERT_EQ(w.start, start) << now;
        ASSERT_EQ(w.end, end) << now;
        ASSERT_LE(w.start, now);
        ASSERT_LT(now, w.end);

        Window d = win(AK_PERIOD_DAY, now);
        ASSERT_EQ(d.start, utc(y, m, tm.tm_mday)) << now;
        Window h = win(AK_PERIOD_HOUR, now);
        ASSERT_EQ(h.start, utc(y, m, tm.tm_mday, tm.tm_hour)) << now;

        /* the first second of a month opens that month */
        Window b = win(AK_PERIOD_MONTH, start);
        ASSERT_EQ(b.start, start);
        Window p = win(AK_PERIOD_MONTH, start - 1);
        ASSERT_EQ(p.end, start);
    }
}

TEST(Quota, BadInput)
{
    int64_t s, e;
    for (uint8_t p : { (uint8_t) AK_PERIOD_NONE, (uint8_t) AK_PERIOD_SECOND,
                       (uint8_t) AK_PERIOD_MINUTE, (uint8_t) 6,
                       (uint8_t) 255 }) {
        EXPECT_EQ(ak_quota_window(p, 1700000000, &s, &e), -1) << int(p);
    }
    EXPECT_EQ(ak_quota_window(AK_PERIOD_DAY, 0, nullptr, &e), -1);
    EXPECT_EQ(ak_quota_window(AK_PERIOD_MONTH, INT64_MAX, &s, &e), -1);
    EXPECT_EQ(ak_quota_window(AK_PERIOD_MONTH, INT64_MIN, &s, &e), -1);
}
