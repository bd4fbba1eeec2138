/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_limits: the rate (GCRA) and the quota admission of ak_limits_admit
 * over a sequence of requests, lease answers and time steps from the
 * input, with Redis simulated honestly: a lease grants at most what is
 * left of the quota in the window.  Invariants:
 *   - a window never admits more requests than the quota
 *     (ak_quota_offline_apply aside: offline counts are over the quota by
 *     design, and a run that uses them is not held to it);
 *   - a denied request consumes nothing (the state is unchanged, but for
 *     a new window's reset);
 *   - GCRA: a limited request's retry_after is exact (admitted then, not a
 *     microsecond before), and no more than burst + 1 + elapsed / interval
 *     requests are admitted from any admitted request on;
 *   - ak_quota_window: start <= now < end, aligned, months of 28..31 days.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <map>
#include <vector>

namespace {

const uint8_t kPeriods[] = {
    AK_PERIOD_NONE, AK_PERIOD_HOUR, AK_PERIOD_DAY, AK_PERIOD_MONTH,
};

bool same(const ak_key_state_t &a, const ak_key_state_t &b)
{
    return a.tat_us == b.tat_us && a.q_window == b.q_window
           && a.q_left == b.q_left && a.q_used == b.q_used;
}

void check_window(uint8_t period, int64_t now)
{
    int64_t s, e;
    if (ak_quota_window(period, now, &s, &e) != 0) {
        return;
    }
    FUZZ_CHECK(s <= now && now < e);
    int64_t len = e - s;
    if (period == AK_PERIOD_HOUR) FUZZ_CHECK(len == 3600 && s % 3600 == 0);
    if (period == AK_PERIOD_DAY) FUZZ_CHECK(len == 86400 && s % 86400 == 0);
    if (period == AK_PERIOD_MONTH) {
        FUZZ_CHECK(s % 86400 == 0);
        FUZZ_CHECK(len >= 28 * 86400 && len <= 31 * 86400);
        /* the day before the start is in the previous month */
        int64_t ps, pe;
        if (s - 1 > -(INT64_C(1) << 56)) {
            FUZZ_CHECK(ak_quota_window(period, s - 1, &ps, &pe) == 0);
            FUZZ_CHECK(pe == s);
        }
    }
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);

    ak_record_t rec;
    std::memset(&rec, 0, sizeof(rec));

    uint8_t cfg = in.u8();
    if (cfg & 1) {
        rec.rate_period = static_cast<uint8_t>(AK_PERIOD_SECOND + cfg / 2 % 3);
        rec.rate_n = 1 + in.u32() % 1000000000u;
        uint64_t per = rec.rate_period == AK_PERIOD_SECOND ? 1000000ULL
                       : rec.rate_period == AK_PERIOD_MINUTE ? 60000000ULL
                                                             : 3600000000ULL;
        rec.rate_interval_us = per / rec.rate_n ? per / rec.rate_n : 1;
        rec.burst = (cfg & 8) ? in.u32() % 1000001u : in.u8() % 8;
        if ((cfg & 136) == 128) {
            /* a record without a burst field: a bucket of N */
            rec.burst = ak_rate_default_burst(rec.rate_n);
        }
    }
    rec.quota_period = kPeriods[(cfg >> 4) % 4];
    if (rec.quota_period) {
        rec.quota_n = (cfg & 64) ? 1 + in.u64() % 1000000000000000ULL
                                 : 1 + in.u8() % 64;
    }
    uint64_t lease = 1 + in.u16() % 1000;

    ak_key_state_t st = {};
    int64_t now = static_cast<int64_t>(in.u32()) * 8;   /* 1970..2990 */
    /* a monotonic clock (time since boot) below 2^49 us, 17 years: with
     * 400 steps of at most 2^32 us and the largest burst x interval
     * (1,000,000 x 1 h), every TAT stays below 2^52 (AK_TAT_BITS) */
    uint64_t now_us = in.u64() >> 15;

    std::map<uint32_t, uint64_t> redis;     /* window -> total granted */
    std::map<uint32_t, uint64_t> admitted;  /* window -> admitted here */
    bool offline = false;

    std::vector<uint64_t> rate_admits;      /* now_us of admitted ones */

    int steps = 0;
    while (!in.empty() && steps++ < 400) {
        uint8_t op = in.u8();

        switch (op % 8) {

        case 0: {
            /* time passes */
            uint32_t d = in.u32();
            uint64_t dus = (op & 8) ? d : static_cast<uint64_t>(d % 5000);
            now_us += dus;
            now += (op & 16) ? static_cast<int64_t>(d % 4000000)
                             : static_cast<int64_t>(dus / 1000000);
            break;
        }

        case 1: {
            /* a lease answer for the current window, as Redis gives it */
            if (!rec.quota_period) break;
            int64_t s, e;
            FUZZ_CHECK(ak_quota_window(rec.quota_period, now, &s, &e) == 0);
            uint32_t w = static_cast<uint32_t>(s / 3600);
            uint64_t &total = redis[w];
            uint64_t want = ak_quota_lease_want(rec.quota_n, st.q_used, lease);
            FUZZ_CHECK(want >= 1 && want <= (lease > 1 ? lease : 1));
            uint64_t left = rec.quota_n > total ? rec.quota_n - total : 0;
            uint64_t grant = want < left ? want : left;
            total += grant;
            uint32_t aw = (op & 8) ? st.q_window : w;   /* maybe a late one */
            if (aw != w) {
                break;
            }
            if (ak_quota_lease_apply(&st, aw, grant, total) == 0) {
                total -= grant;                         /* given back */
            }
            break;
        }

        case 2: {
            /* offline share (exempt from the quota invariant) */
            if (!rec.quota_period || !(op & 8)) break;
            offline = true;
            ak_quota_offline_apply(&st, st.q_window, 1 + in.u8() % 8);
            break;
        }

        case 3:
            check_window(static_cast<uint8_t>(op >> 3),
                         static_cast<int64_t>(in.u64()));
            break;

        default: {
            /* a request */
            ak_key_state_t before = st;
            ak_admit_result_t res;
            int rc = ak_limits_admit(&st, &rec, now, now_us, lease, &res);

            FUZZ_CHECK(rc >= AK_ADMIT && rc <= AK_DENY_BAD);
            FUZZ_CHECK(rc != AK_DENY_BAD);

            if (rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH) {
                if (rec.rate_period) {
                    FUZZ_CHECK(st.tat_us != before.tat_us
                               || rec.rate_interval_us == 0);
                    rate_admits.push_back(now_us);
                }
                if (rec.quota_period) {
                    uint64_t &a = admitted[res.window];
                    a++;
                    if (!offline) {
                        FUZZ_CHECK(a <= rec.quota_n);
                        FUZZ_CHECK(a <= redis[res.window]);
                    }
                    FUZZ_CHECK(res.quota_remaining <= rec.quota_n);
                    FUZZ_CHECK(res.window_start <= now
                               && now < res.window_end);
                } else {
                    FUZZ_CHECK(rc == AK_ADMIT);
                }
            } else {
                /* nothing consumed (a new window resets the quota part) */
                FUZZ_CHECK(st.tat_us == before.tat_us);
                if (st.q_window == before.q_window) {
                    FUZZ_CHECK(same(st, before));
                } else {
                    FUZZ_CHECK(st.q_left == 0 && st.q_used == 0);
                }
                if (rc == AK_DENY_RATE) {
                    FUZZ_CHECK(rec.rate_period != AK_PERIOD_NONE);
                    uint64_t r = res.rate.retry_after_us;
                    FUZZ_CHECK(r > 0);
                    /* exactly then, and not a microsecond before */
                    uint64_t t = st.tat_us;
                    FUZZ_CHECK(ak_gcra(&t, now_us + r, rec.rate_interval_us,
                                       rec.burst, nullptr) == 1);
                    t = st.tat_us;
                    FUZZ_CHECK(ak_gcra(&t, now_us + r - 1,
                                       rec.rate_interval_us, rec.burst,
                                       nullptr) == 0);
                }
                if (rc == AK_NEED_LEASE || rc == AK_DENY_QUOTA) {
                    FUZZ_CHECK(rec.quota_period != AK_PERIOD_NONE);
                    FUZZ_CHECK(res.retry_after >= 1);
                    FUZZ_CHECK(st.q_left == 0);
                    FUZZ_CHECK((rc == AK_NEED_LEASE)
                               == (st.q_used < rec.quota_n));
                }
            }
            break;
        }
        }
    }

    /* GCRA: from any admitted request on, at most burst + 1 + elapsed / T
     * more (the time never goes back here) */
    if (rec.rate_period && rec.rate_interval_us) {
        size_t n = rate_admits.size();
        for (size_t i = 0; i < n; i += 1 + n / 16) {
            for (size_t j = i; j < n; j++) {
                uint64_t el = rate_admits[j] - rate_admits[i];
                FUZZ_CHECK(j - i + 1 <= rec.burst + 1 + el / rec.rate_interval_us);
            }
        }
    }

    return 0;
}
