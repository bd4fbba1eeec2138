/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Admission of a request by its key's quota and rate (ak_quota_admit,
 * ak_limits_admit) and the quota's lease arithmetic (ak_quota_lease_want,
 * ak_quota_lease_apply, ak_quota_offline_apply): fixed cases, then random
 * sequences of requests, lease answers and window changes against a
 * reference model, and several nodes sharing a simulated Redis counter.
 */

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <ctime>
#include <map>
#include <random>
#include <vector>

#include "ak_core.h"

namespace {

int64_t utc(int y, int mo, int d, int h = 0)
{
    struct tm t = {};
    t.tm_year = y - 1900;
    t.tm_mon = mo - 1;
    t.tm_mday = d;
    t.tm_hour = h;
    return static_cast<int64_t>(timegm(&t));    /* tests only */
}

ak_key_state_t state(uint32_t window, uint32_t left, uint64_t used,
    uint64_t tat = 0)
{
    ak_key_state_t st;
    std::memset(&st, 0, sizeof(st));
    st.tat_us = tat;
    st.q_window = window;
    st.q_left = left;
    st.q_used = used;
    return st;
}

bool same(const ak_key_state_t &a, const ak_key_state_t &b)
{
    return a.tat_us == b.tat_us && a.q_window == b.q_window
           && a.q_left == b.q_left && a.q_used == b.q_used;
}

bool admitted(int rc)
{
    return rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH;
}

/* the window of now, computed another way than the core (gmtime/timegm) */
void model_window(uint8_t period, int64_t now, int64_t *start, int64_t *end)
{
    time_t t = static_cast<time_t>(now);
    struct tm tm;
    gmtime_r(&t, &tm);
    int y = tm.tm_year + 1900, m = tm.tm_mon + 1;

    switch (period) {
    case AK_PERIOD_HOUR:
        *start = utc(y, m, tm.tm_mday, tm.tm_hour);
        *end = *start + 3600;
        break;
    case AK_PERIOD_DAY:
        *start = utc(y, m, tm.tm_mday);
        *end = *start + 86400;
        break;
    default:
        *start = utc(y, m, 1);
        *end = m == 12 ? utc(y + 1, 1, 1) : utc(y, m + 1, 1);
        break;
    }
}

/*
 * Reference: one node's view of one key's quota as a ledger of the current
 * window: the counts granted to the node (leases, offline shares), the
 * counts it consumed, and the highest total of the key it has been told.
 */
struct Model {
    uint8_t period;
    uint64_t n;
    uint64_t lease;
    int64_t start = INT64_MIN, end = 0;
    uint64_t granted = 0, consumed = 0, total = 0;

    Model(uint8_t p, uint64_t quota_n, uint64_t quota_lease)
        : period(p), n(quota_n), lease(quota_lease) {}

    struct Answer {
        int rc;
        uint64_t remaining, used, retry_after;
        int64_t start, end;
    };

    Answer request(int64_t now)
    {
        int64_t s, e;
        model_window(period, now, &s, &e);
        if (s != start) {
            start = s;
            end = e;
            granted = consumed = total = 0;
        }

        Answer a = { 0, 0, total, 0, start, end };

        if (consumed < granted) {
            consumed++;
            uint64_t here = granted - consumed;
            uint64_t spent = total > here ? total - here : 0;
            a.remaining = n > spent ? n - spent : 0;
            a.rc = (total < n && here <= lease / 4) ? AK_ADMIT_PREFETCH
                                                    : AK_ADMIT;
            return a;
        }

        a.retry_after = end - now > 0 ? static_cast<uint64_t>(end - now) : 1;
        a.rc = total < n ? AK_NEED_LEASE : AK_DENY_QUOTA;
        return a;
    }

    bool lease_answer(int64_t window_start, uint64_t grant, uint64_t seen)
    {
        if (window_start != start) {
            return false;
        }
        granted += grant;
        if (seen > total) {
            total = seen;
        }
        return true;
    }

    bool offline(int64_t window_start, uint64_t block)
    {
        if (window_start != start) {
            return false;
        }
        granted += block;
        total += block;
        return true;
    }
};

/* what the lease script does with the counter of one window */
uint64_t redis_lease(uint64_t *counter, uint64_t limit, uint64_t want,
    uint64_t debt)
{
    *counter += debt;
    uint64_t grant = *counter < limit ? limit - *counter : 0;
    if (grant > want) {
        grant = want;
    }
    *counter += grant;
    return grant;
}

} // namespace


TEST(QuotaAdmit, ConsumesLeasedCounts)
{
    const int64_t now = utc(2024, 5, 17, 13) + 125;
    const uint32_t w = static_cast<uint32_t>(utc(2024, 5, 17, 13) / 3600);
    ak_key_state_t st = state(w, 50, 400);
    ak_admit_result_t r;

    /* 1000/hour, quota_lease 100: prefetch below 26 left */
    ASSERT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 1000, 100, now, &r),
              AK_ADMIT);
    EXPECT_EQ(st.q_left, 49u);
    EXPECT_EQ(st.q_used, 400u);
    EXPECT_EQ(r.quota_remaining, 1000u - (400 - 49));
    EXPECT_EQ(r.quota_used, 400u);
    EXPECT_EQ(r.window, w);
    EXPECT_EQ(r.window_start, utc(2024, 5, 17, 13));
    EXPECT_EQ(r.window_end, utc(2024, 5, 17, 14));
    EXPECT_EQ(r.retry_after, 0u);

    st.q_left = 27;
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 1000, 100, now, &r),
              AK_ADMIT);
    EXPECT_EQ(st.q_left, 26u);
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 1000, 100, now, &r),
              AK_ADMIT_PREFETCH);
    EXPECT_EQ(st.q_left, 25u);

    /* no prefetch once the known total reached the quota */
    st.q_used = 1000;
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 1000, 100, now, &r),
              AK_ADMIT);
    EXPECT_EQ(r.quota_remaining, 24u);

    /* the last count here, then a lease is needed, then nothing */
    st = state(w, 1, 10);
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 1000, 100, now, &r),
              AK_ADMIT_PREFETCH);
    EXPECT_EQ(st.q_left, 0u);
    EXPECT_EQ(r.quota_remaining, 990u);
    ak_key_state_t before = st;
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 1000, 100, now, &r),
              AK_NEED_LEASE);
    EXPECT_TRUE(same(st, before));
    EXPECT_EQ(r.quota_used, 10u);
    EXPECT_EQ(r.quota_remaining, 0u);
    EXPECT_EQ(r.retry_after, 3600u - 125);
    st.q_used = 1000;
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 1000, 100, now, &r),
              AK_DENY_QUOTA);
    EXPECT_EQ(r.retry_after, 3600u - 125);

    /* quota_lease 1: prefetch only with nothing left here */
    st = state(w, 2, 0);
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 10, 1, now, &r), AK_ADMIT);
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 10, 1, now, &r),
              AK_ADMIT_PREFETCH);
}

TEST(QuotaAdmit, NewWindowStartsAfresh)
{
    const int64_t day = utc(2024, 2, 29);
    ak_key_state_t st = state(static_cast<uint32_t>(day / 3600) - 24, 7, 99);
    ak_admit_result_t r;

    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_DAY, 100, 100, day, &r),
              AK_NEED_LEASE);
    EXPECT_EQ(st.q_window, day / 3600);
    EXPECT_EQ(st.q_left, 0u);
    EXPECT_EQ(st.q_used, 0u);
    EXPECT_EQ(r.quota_used, 0u);
    EXPECT_EQ(r.retry_after, 86400u);
    EXPECT_EQ(r.window_start, day);

    /* the month of Feb 29th, 2024; the last second of a window */
    st = state(0, 0, 0);
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_MONTH, 5, 100,
                             utc(2024, 3, 1) - 1, &r),
              AK_NEED_LEASE);
    EXPECT_EQ(r.window_start, utc(2024, 2, 1));
    EXPECT_EQ(r.window_end, utc(2024, 3, 1));
    EXPECT_EQ(r.retry_after, 1u);
    EXPECT_EQ(st.q_window, utc(2024, 2, 1) / 3600);
}

TEST(QuotaAdmit, BadInput)
{
    ak_key_state_t st = state(5, 5, 5);
    ak_key_state_t before = st;
    ak_admit_result_t r;

    for (uint8_t p : { (uint8_t) AK_PERIOD_NONE, (uint8_t) AK_PERIOD_SECOND,
                       (uint8_t) AK_PERIOD_MINUTE, (uint8_t) 9 }) {
        EXPECT_EQ(ak_quota_admit(&st, p, 10, 100, 1700000000, &r),
                  AK_DENY_BAD);
        EXPECT_TRUE(same(st, before));
    }
    EXPECT_EQ(ak_quota_admit(nullptr, AK_PERIOD_HOUR, 10, 100, 0, &r),
              AK_DENY_BAD);
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 10, 100, INT64_MAX, &r),
              AK_DENY_BAD);
    EXPECT_EQ(ak_quota_admit(&st, AK_PERIOD_HOUR, 10, 100, 0, nullptr),
              AK_NEED_LEASE);
}

TEST(QuotaAdmit, LeaseWant)
{
    /* a quarter of what is left, at most quota_lease, at least 1 */
    EXPECT_EQ(ak_quota_lease_want(1000, 0, 100), 100u);
    EXPECT_EQ(ak_quota_lease_want(1000, 600, 100), 100u);
    EXPECT_EQ(ak_quota_lease_want(1000, 700, 100), 75u);
    EXPECT_EQ(ak_quota_lease_want(1000, 996, 100), 1u);
    EXPECT_EQ(ak_quota_lease_want(1000, 999, 100), 1u);
    EXPECT_EQ(ak_quota_lease_want(1000, 1000, 100), 1u);
    EXPECT_EQ(ak_quota_lease_want(1000, 5000, 100), 1u);
    EXPECT_EQ(ak_quota_lease_want(1000, 0, 1), 1u);
    EXPECT_EQ(ak_quota_lease_want(1000, 0, 0), 1u);
    EXPECT_EQ(ak_quota_lease_want(UINT64_MAX, 0, 1000000), 1000000u);
}

TEST(QuotaAdmit, LeaseAndOfflineApply)
{
    ak_key_state_t st = state(7, 3, 50);

    EXPECT_EQ(ak_quota_lease_apply(&st, 7, 20, 80), 1);
    EXPECT_EQ(st.q_left, 23u);
    EXPECT_EQ(st.q_used, 80u);

    /* an older total never lowers the known one */
    EXPECT_EQ(ak_quota_lease_apply(&st, 7, 0, 60), 1);
    EXPECT_EQ(st.q_used, 80u);

    /* another window: not applied (the counts are given back) */
    ak_key_state_t before = st;
    EXPECT_EQ(ak_quota_lease_apply(&st, 8, 20, 200), 0);
    EXPECT_EQ(ak_quota_offline_apply(&st, 6, 5), 0);
    EXPECT_TRUE(same(st, before));
    EXPECT_EQ(ak_quota_lease_apply(nullptr, 7, 1, 1), 0);
    EXPECT_EQ(ak_quota_offline_apply(nullptr, 7, 1), 0);

    /* offline counts are served and count as used at once */
    EXPECT_EQ(ak_quota_offline_apply(&st, 7, 5), 1);
    EXPECT_EQ(st.q_left, 28u);
    EXPECT_EQ(st.q_used, 85u);

    /* saturates */
    st = state(1, UINT32_MAX - 1, UINT64_MAX - 1);
    EXPECT_EQ(ak_quota_lease_apply(&st, 1, 10, 0), 1);
    EXPECT_EQ(st.q_left, UINT32_MAX);
    EXPECT_EQ(ak_quota_offline_apply(&st, 1, 10), 1);
    EXPECT_EQ(st.q_left, UINT32_MAX);
    EXPECT_EQ(st.q_used, UINT64_MAX);
}

/*
 * Random sequences on one node: requests at moving times (crossing
 * windows), lease answers (some late, for a window gone), offline shares;
 * every answer and the state match the model.
 */
TEST(QuotaAdmit, MatchesModelOnRandomSequences)
{
    std::mt19937_64 rng(1107);
    const uint8_t periods[] = { AK_PERIOD_HOUR, AK_PERIOD_DAY,
                                AK_PERIOD_MONTH };
    int seen[6] = { 0 };

    for (int seq = 0; seq < 300; seq++) {
        const uint8_t period = periods[rng() % 3];
        const uint64_t n = 1 + rng() % (seq % 4 == 0 ? 5 : 3000);
        const uint64_t lease = 1 + rng() % (seq % 3 == 0 ? 4 : 200);
        Model m(period, n, lease);
        ak_key_state_t st = state(static_cast<uint32_t>(rng()), 0, 0);
        int64_t now = 946684800 + static_cast<int64_t>(rng() % 2000000000);

        struct Pending {
            uint32_t window;
            int64_t start;
            uint64_t grant, total;
        };
        std::vector<Pending> pending;

        struct Seen {
            uint32_t window;
            int64_t start;
        };
        std::vector<Seen> windows;

        for (int i = 0; i < 500; i++) {
            switch (rng() % 10) {
            case 0:
                /* later, perhaps in another window */
                now += static_cast<int64_t>(rng() % (period == AK_PERIOD_HOUR
                                                     ? 4000 : 200000));
                if (period == AK_PERIOD_MONTH && rng() % 4 == 0) {
                    now += 2678400;
                }
                break;

            case 1:
            case 2:
                /* a lease answer, in any order */
                if (!pending.empty()) {
                    size_t k = rng() % pending.size();
                    Pending p = pending[k];
                    pending.erase(pending.begin() + k);
                    int got = ak_quota_lease_apply(&st, p.window, p.grant,
                                                   p.total);
                    bool want = m.lease_answer(p.start, p.grant, p.total);
                    ASSERT_EQ(got, want ? 1 : 0) << "seq " << seq << " op "
                                                 << i;
                }
                break;

            case 3:
                /* an offline share for the window of a request made
                 * (mostly the last one) */
                if (!windows.empty()) {
                    const Seen &w = rng() % 4 ? windows.back()
                                    : windows[rng() % windows.size()];
                    uint64_t block = 1 + rng() % 5;
                    int got = ak_quota_offline_apply(&st, w.window, block);
                    bool want = m.offline(w.start, block);
                    ASSERT_EQ(got, want ? 1 : 0) << "seq " << seq << " op "
                                                 << i;
                }
                break;

            default: {
                ak_admit_result_t r;
                ak_key_state_t before = st;
                int got = ak_quota_admit(&st, period, n, lease, now, &r);
                Model::Answer a = m.request(now);
                seen[got]++;

                ASSERT_EQ(got, a.rc) << "seq " << seq << " op " << i
                                     << " n=" << n << " lease=" << lease;
                ASSERT_EQ(r.window_start, a.start);
                ASSERT_EQ(r.window_end, a.end);
                ASSERT_EQ(r.window, static_cast<uint32_t>(a.start / 3600));
                ASSERT_EQ(st.q_window, r.window);
                ASSERT_EQ(r.quota_used, a.used);
                ASSERT_EQ(st.q_used, m.total);
                ASSERT_EQ(st.q_left, m.granted - m.consumed);

                if (windows.empty() || windows.back().start != a.start) {
                    windows.push_back({ r.window, a.start });
                }

                if (admitted(got)) {
                    ASSERT_EQ(r.quota_remaining, a.remaining);
                    ASSERT_EQ(r.retry_after, 0u);
                } else {
                    ASSERT_EQ(r.quota_remaining, 0u);
                    ASSERT_EQ(r.retry_after, a.retry_after);
                    ASSERT_GE(r.retry_after, 1u);
                    if (before.q_window == st.q_window) {
                        ASSERT_TRUE(same(st, before)) << "nothing consumed";
                    }
                }

                if (got == AK_NEED_LEASE || got == AK_ADMIT_PREFETCH
                    || rng() % 8 == 0)
                {
                    /* what Redis might answer: up to what was asked, a
                     * total at least what this node knows */
                    uint64_t want = ak_quota_lease_want(n, r.quota_used,
                                                        lease);
                    ASSERT_GE(want, 1u);
                    ASSERT_LE(want, lease);
                    uint64_t grant = rng() % (want + 1);
                    uint64_t total = r.quota_used + grant + rng() % 4;
                    pending.push_back({ r.window, r.window_start, grant,
                                        total });
                }
                break;
            }
            }
        }
    }

    /* every outcome came up */
    EXPECT_GT(seen[AK_ADMIT], 0);
    EXPECT_GT(seen[AK_ADMIT_PREFETCH], 0);
    EXPECT_GT(seen[AK_NEED_LEASE], 0);
    EXPECT_GT(seen[AK_DENY_QUOTA], 0);
}

/*
 * Several nodes, one Redis: leases go through the lease script's
 * arithmetic on one counter per window, are answered in any order, and a
 * grant for a window gone is given back.  Never more admitted in a window
 * than the quota; a quota denial only when the counter holds the quota.
 */
TEST(QuotaAdmit, NodesNeverExceedTheQuota)
{
    std::mt19937_64 rng(42);

    for (int sim = 0; sim < 60; sim++) {
        const uint64_t n = 1 + rng() % 400;
        const uint64_t lease = 1 + rng() % 50;
        const int nodes = 1 + static_cast<int>(rng() % 4);
        std::vector<ak_key_state_t> st(nodes, state(0, 0, 0));
        std::vector<bool> inflight(nodes, false);
        std::map<int64_t, uint64_t> counter, admits;
        int64_t now = utc(2024, 1, 1) + static_cast<int64_t>(rng() % 3600);

        struct Lease {
            int node;
            uint32_t window;
            int64_t start;
            uint64_t want;
        };
        std::vector<Lease> sent;

        for (int i = 0; i < 4000; i++) {
            if (rng() % 200 == 0) {
                now += 1 + static_cast<int64_t>(rng() % 3000);
            }

            if (!sent.empty() && rng() % 3 == 0) {
                size_t k = rng() % sent.size();
                Lease l = sent[k];
                sent.erase(sent.begin() + k);
                uint64_t grant = redis_lease(&counter[l.start], n, l.want, 0);
                if (!ak_quota_lease_apply(&st[l.node], l.window, grant,
                                          counter[l.start]))
                {
                    counter[l.start] -= grant;      /* DECRBY */
                }
                inflight[l.node] = false;
                continue;
            }

            int k = static_cast<int>(rng() % nodes);
            ak_admit_result_t r;
            int rc = ak_quota_admit(&st[k], AK_PERIOD_HOUR, n, lease, now, &r);

            if (admitted(rc)) {
                admits[r.window_start]++;
                ASSERT_LE(admits[r.window_start], n) << "sim " << sim;
            } else if (rc == AK_DENY_QUOTA) {
                ASSERT_GE(counter[r.window_start], n) << "sim " << sim;
            } else {
                ASSERT_EQ(rc, AK_NEED_LEASE);
            }

            if ((rc == AK_NEED_LEASE || rc == AK_ADMIT_PREFETCH)
                && !inflight[k])
            {
                inflight[k] = true;
                sent.push_back({ k, r.window, r.window_start,
                                 ak_quota_lease_want(n, r.quota_used,
                                                     lease) });
            }
        }

        for (const auto &w : counter) {
            ASSERT_LE(w.second, n);
        }
    }
}


/* ---- both limits ------------------------------------------------------- */

namespace {

struct Rec {
    ak_record_t r;

    Rec(uint8_t rate_period, uint64_t interval, uint32_t burst,
        uint8_t quota_period, uint64_t quota_n)
    {
        std::memset(&r, 0, sizeof(r));
        r.rate_period = rate_period;
        r.rate_n = 1;
        r.rate_interval_us = interval;
        r.burst = burst;
        r.quota_period = quota_period;
        r.quota_n = quota_n;
    }
};

} // namespace

TEST(LimitsAdmit, DeniedByOneConsumesNeither)
{
    const int64_t now = utc(2024, 6, 1, 10);
    const uint32_t w = static_cast<uint32_t>(now / 3600);
    Rec rec(AK_PERIOD_SECOND, 1000000, 0, AK_PERIOD_HOUR, 100);
    ak_admit_result_t r;

    /* rate limited: the quota count stays */
    ak_key_state_t st = state(w, 5, 10, 2000000);
    ak_key_state_t before = st;
    EXPECT_EQ(ak_limits_admit(&st, &rec.r, now, 1500000, 100, &r),
              AK_DENY_RATE);
    EXPECT_TRUE(same(st, before));
    EXPECT_EQ(r.rate.retry_after_us, 500000u);
    EXPECT_EQ(r.retry_after, 0u);

    /* out of quota counts: the rate stays */
    st = state(w, 0, 100, 1000000);
    before = st;
    EXPECT_EQ(ak_limits_admit(&st, &rec.r, now, 1500000, 100, &r),
              AK_DENY_QUOTA);
    EXPECT_TRUE(same(st, before));
    st.q_used = 50;
    EXPECT_EQ(ak_limits_admit(&st, &rec.r, now, 1500000, 100, &r),
              AK_NEED_LEASE);
    EXPECT_EQ(st.tat_us, 1000000u);
    EXPECT_EQ(r.quota_used, 50u);

    /* both */
    st = state(w, 2, 50, 1000000);
    EXPECT_EQ(ak_limits_admit(&st, &rec.r, now, 1500000, 100, &r),
              AK_ADMIT_PREFETCH);
    EXPECT_EQ(st.tat_us, 2500000u);
    EXPECT_EQ(st.q_left, 1u);
    EXPECT_EQ(r.quota_remaining, 51u);
    EXPECT_EQ(r.rate.remaining, 0u);

    /* neither limit: admitted, nothing changes */
    Rec none(AK_PERIOD_NONE, 0, 0, AK_PERIOD_NONE, 0);
    st = state(3, 4, 5, 6);
    before = st;
    EXPECT_EQ(ak_limits_admit(&st, &none.r, now, 7, 100, &r), AK_ADMIT);
    EXPECT_TRUE(same(st, before));

    EXPECT_EQ(ak_limits_admit(nullptr, &none.r, now, 7, 100, &r),
              AK_DENY_BAD);
    EXPECT_EQ(ak_limits_admit(&st, nullptr, now, 7, 100, &r), AK_DENY_BAD);
}

/* the same as ak_gcra, then ak_quota_admit, with the rate kept only when
 * the quota admits too */
TEST(LimitsAdmit, IsGcraThenQuotaOnRandomStates)
{
    std::mt19937_64 rng(7);
    const uint8_t rates[] = { AK_PERIOD_NONE, AK_PERIOD_SECOND,
                              AK_PERIOD_HOUR };
    const uint8_t quotas[] = { AK_PERIOD_NONE, AK_PERIOD_HOUR,
                               AK_PERIOD_DAY, AK_PERIOD_MONTH };

    for (int i = 0; i < 20000; i++) {
        Rec rec(rates[rng() % 3], 1 + rng() % 3000000,
                static_cast<uint32_t>(rng() % 4), quotas[rng() % 4],
                1 + rng() % 50);
        int64_t now = 1700000000 + static_cast<int64_t>(rng() % 100000000);
        uint64_t now_us = rng() % 10000000;
        uint64_t lease = 1 + rng() % 100;
        ak_key_state_t st = state(
            rng() % 2 ? static_cast<uint32_t>(now / 3600 - rng() % 800)
                      : static_cast<uint32_t>(rng()),
            static_cast<uint32_t>(rng() % 3), rng() % 60, rng() % 12000000);

        /* expected */
        ak_key_state_t want = st;
        ak_rate_result_t rr;
        std::memset(&rr, 0, sizeof(rr));
        uint64_t tat = st.tat_us;
        int rc = AK_ADMIT;
        bool rate_ok = rec.r.rate_period == AK_PERIOD_NONE
                       || ak_gcra(&tat, now_us, rec.r.rate_interval_us,
                                  rec.r.burst, &rr);
        ak_admit_result_t qr;
        std::memset(&qr, 0, sizeof(qr));
        if (!rate_ok) {
            rc = AK_DENY_RATE;
        } else {
            if (rec.r.quota_period != AK_PERIOD_NONE) {
                rc = ak_quota_admit(&want, rec.r.quota_period, rec.r.quota_n,
                                    lease, now, &qr);
            }
            if (admitted(rc)) {
                want.tat_us = tat;
            }
        }

        ak_admit_result_t r;
        ASSERT_EQ(ak_limits_admit(&st, &rec.r, now, now_us, lease, &r), rc)
            << i;
        ASSERT_TRUE(same(st, want)) << i;
        ASSERT_EQ(r.rate.remaining, rr.remaining);
        ASSERT_EQ(r.rate.retry_after_us, rr.retry_after_us);
        ASSERT_EQ(r.rate.reset_us, rr.reset_us);
        ASSERT_EQ(r.quota_remaining, qr.quota_remaining);
        ASSERT_EQ(r.quota_used, qr.quota_used);
        ASSERT_EQ(r.retry_after, qr.retry_after);
        ASSERT_EQ(r.window, qr.window);
    }
}
