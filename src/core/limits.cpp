/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * limits.cpp: GCRA rate limiting, UTC calendar quota windows and the
 * admission of a request by both (rate and quota) on a key's state.  Pure
 * arithmetic: no clock, no locale, no timegm.
 */

#include "ak_core.h"
#include "internal.hpp"

#include <cstdint>
#include <cstring>

namespace {

using ak::sat_add;
using ak::sat_mul;

/* floor division for b > 0 */
inline int64_t floor_div(int64_t a, int64_t b) noexcept
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/*
 * Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard
 * Hinnant's algorithms).  Valid far beyond the range accepted below.
 */
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) noexcept
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;                          /* 0..399 */
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;  /* 0..146096 */
    return era * 146097 + doe - 719468;
}

void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) noexcept
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;                       /* 0..146096 */
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
    *m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* about +-2.2 billion years either side of 1970: no overflow anywhere */
constexpr int64_t kNowLimit = INT64_C(1) << 56;

} // namespace


extern "C" int
ak_gcra(uint64_t *tat, uint64_t now_us, uint64_t interval_us, uint32_t burst,
    ak_rate_result_t *res) noexcept
{
    return ak::gcra(tat, now_us, interval_us, burst, res);
}


extern "C" uint32_t
ak_rate_default_burst(uint64_t rate_n) noexcept
{
    if (rate_n == 0) {
        return 0;
    }

    return rate_n - 1 > AK_BURST_MAX ? AK_BURST_MAX
                                     : static_cast<uint32_t>(rate_n - 1);
}


extern "C" int
ak_quota_window(uint8_t period, int64_t now, int64_t *start, int64_t *end) noexcept
{
    if (start == nullptr || end == nullptr || now <= -kNowLimit
        || now >= kNowLimit)
    {
        return -1;
    }

    switch (period) {

    case AK_PERIOD_HOUR:
        *start = floor_div(now, 3600) * 3600;
        *end = *start + 3600;
        return 0;

    case AK_PERIOD_DAY:
        *start = floor_div(now, 86400) * 86400;
        *end = *start + 86400;
        return 0;

    case AK_PERIOD_MONTH: {
        int64_t y;
        unsigned m, d;

        civil_from_days(floor_div(now, 86400), &y, &m, &d);
        *start = days_from_civil(y, m, 1) * 86400;
        *end = (m == 12 ? days_from_civil(y + 1, 1, 1)
                        : days_from_civil(y, m + 1, 1)) * 86400;
        return 0;
    }

    default:
        return -1;
    }
}


extern "C" uint64_t
ak_quota_remaining(uint64_t quota_n, uint64_t q_used, uint64_t q_left) noexcept
{
    /* consumed = used - left; both may be anything: saturate */
    const uint64_t consumed = q_used > q_left ? q_used - q_left : 0;

    return quota_n > consumed ? quota_n - consumed : 0;
}


extern "C" void
ak_key_state_carry(const ak_record_t *old, const ak_record_t *cur,
    ak_key_state_t *st) noexcept
{
    if (st == nullptr) {
        return;
    }

    if (old == nullptr || cur == nullptr) {
        *st = ak_key_state_t{};
        return;
    }

    if (cur->rate_period == AK_PERIOD_NONE
        || old->rate_period == AK_PERIOD_NONE
        || old->rate_interval_us != cur->rate_interval_us
        || old->burst != cur->burst)
    {
        st->tat_us = 0;
        st->r_left = 0;
        st->r_next_ms = 0;

    } else if (old->rate_scope != cur->rate_scope) {
        /* the same rate counted elsewhere: tokens leased are dropped */
        st->r_left = 0;
        st->r_next_ms = 0;
    }

    /* another identity counts in other counters (NULL: the key's own) */
    bool same_identity = (old->identity == nullptr) == (cur->identity == nullptr)
                         && (old->identity == nullptr
                             || std::memcmp(old->identity, cur->identity,
                                            AK_HASH_LEN) == 0);

    if (cur->quota_period == AK_PERIOD_NONE
        || old->quota_period != cur->quota_period
        || !same_identity)
    {
        st->q_window = 0;
        st->q_left = 0;
        ak::qword::set_used(st, 0);

    } else if (cur->quota_n < old->quota_n) {
        /* lowered: no count granted under the old limit is served */
        st->q_left = 0;
    }
}


/* ---- admission ------------------------------------------------------- */

namespace {

inline uint32_t add_left(uint32_t left, uint64_t n) noexcept
{
    return n > UINT32_MAX - left ? UINT32_MAX
                                 : left + static_cast<uint32_t>(n);
}

/* n counts added to q_left by compare-and-swap, in window (the lock is
 * held: the window stays; a take may lower q_left meanwhile); qw: the word
 * as last read */
/*
 * r_left and r_next_ms of a state in the cache change with the lock held
 * only, and no lock-free path reads them; but a reader holding a stale
 * overflow link may be copying the slot's bytes 16-123 as blob bytes (and
 * throws them away when it sees the group's counter moved): stored
 * atomically, as every other byte a reader may copy.
 */
inline void set_lease_field(uint32_t *field, uint32_t v) noexcept
{
    __atomic_store_n(field, v, __ATOMIC_RELAXED);
}

inline void add_counts(ak_key_state_t *st, uint64_t qw, uint32_t window,
    uint64_t n) noexcept
{
    while (!ak::qword::cas(st, &qw,
                           ak::qword::pack(window,
                               add_left(ak::qword::unpack(qw).left, n))))
    {
    }
}

} // namespace

extern "C" int
ak_quota_took(uint64_t quota_n, uint64_t q_used, uint32_t q_left,
    uint64_t quota_lease, ak_admit_result_t *res) noexcept
{
    res->quota_remaining = ak_quota_remaining(quota_n, q_used, q_left);

    /* a quarter of a lease left here, and more to be had */
    const bool low = q_used < quota_n && q_left < quota_lease / 4 + 1;

    return low ? AK_ADMIT_PREFETCH : AK_ADMIT;
}


extern "C" int
ak_quota_admit(ak_key_state_t *st, uint8_t period, uint64_t quota_n,
    uint64_t quota_lease, int64_t now, ak_admit_result_t *res) noexcept
{
    ak_admit_result_t tmp;
    if (res == nullptr) {
        res = &tmp;
    }

    res->quota_remaining = 0;
    res->quota_used = 0;
    res->retry_after = 0;
    res->window_start = 0;
    res->window_end = 0;
    res->window = 0;

    int64_t start, end;

    if (st == nullptr || ak_quota_window(period, now, &start, &end) != 0) {
        return AK_DENY_BAD;
    }

    const uint32_t window = static_cast<uint32_t>(start / 3600);

    res->window_start = start;
    res->window_end = end;
    res->window = window;

    if (st->q_window != window) {
        /* a new window: nothing leased, nothing used yet */
        st->q_window = window;
        st->q_left = 0;
        ak::qword::set_used(st, 0);
    }

    res->quota_used = st->q_used;

    if (st->q_left > 0) {
        st->q_left--;
        return ak_quota_took(quota_n, st->q_used, st->q_left, quota_lease,
                             res);
    }

    res->retry_after = end > now ? static_cast<uint64_t>(end - now) : 1;

    return st->q_used < quota_n ? AK_NEED_LEASE : AK_DENY_QUOTA;
}


namespace {

inline uint32_t ms_of(uint64_t us) noexcept
{
    return static_cast<uint32_t>(us / 1000);
}

/* a - b for two wrapping millisecond times */
inline int32_t ms_diff(uint32_t a, uint32_t b) noexcept
{
    return static_cast<int32_t>(a - b);
}

/*
 * The longest "no token before" Redis can answer: less than one interval,
 * at most an hour (rate 1/h).  A time further ahead than that is a stale
 * one that wrapped (the key sat unused for weeks): ignored.  0 stands for
 * "none" (a zeroed state).
 */
constexpr int32_t kMaxWaitMs = 3600 * 1000 + 1000;

inline uint32_t nonzero_ms(uint32_t ms) noexcept
{
    return ms ? ms : 1;
}

} // namespace


extern "C" int
ak_limits_admit_ex(ak_key_state_t *st, const ak_record_t *rec, int64_t now,
    uint64_t now_us, uint64_t quota_lease, unsigned flags,
    ak_admit_result_t *res) noexcept
{
    ak_admit_result_t tmp;
    if (res == nullptr) {
        res = &tmp;
    }

    *res = ak_admit_result_t{};

    if (st == nullptr || rec == nullptr) {
        return AK_DENY_BAD;
    }

    const bool rated = rec->rate_period != AK_PERIOD_NONE;
    const bool cluster = rated && (flags & AK_LIMITS_CLUSTER_RATE);

    /*
     * The tag word (ak_core.h): in the cache, ak_cache_gcra may change it
     * at any time without the lock; everything else of st only changes
     * with the lock held, as here.  The decision is made on a copy and
     * committed when the word still is what it was read as (else decided
     * again on the new one).  The same for the quota word (q_window,
     * q_left): ak_cache_quota_take may take a count from it at any time;
     * the count taken here is committed by compare-and-swap first, and
     * given back if the tag word's swap fails after it.
     */
    uint64_t word = __atomic_load_n(&st->tat_us, __ATOMIC_ACQUIRE);

    for (;;) {
        *res = ak_admit_result_t{};

        uint64_t qw = ak::qword::load(st);

        uint64_t tat = word & AK_TAT_MASK;

        if (rated
            && !ak_gcra(&tat, now_us, rec->rate_interval_us, rec->burst,
                        &res->rate))
        {
            return AK_DENY_RATE;
        }

        if (tat >= AK_TAT_NONE) {
            tat = AK_TAT_NONE - 1;
        }

        /* cluster: Redis has no batch for this node before this long */
        int32_t lease_wait = 0;

        if (cluster) {
            lease_wait = st->r_next_ms ? ms_diff(st->r_next_ms, ms_of(now_us))
                                       : 0;
            if (lease_wait > kMaxWaitMs) {
                lease_wait = 0;         /* stale: wrapped */
            }

            if (st->r_left == 0) {
                if (lease_wait > 0) {
                    res->rate.remaining = 0;
                    res->rate.retry_after_us =
                        static_cast<uint64_t>(lease_wait) * 1000;
                    res->rate.reset_us = sat_add(res->rate.retry_after_us,
                                                 sat_mul(rec->burst,
                                                 rec->rate_interval_us));
                    return AK_DENY_RATE;
                }

                return AK_NEED_RATE_LEASE;
            }
        }

        int rc = AK_ADMIT;
        ak_key_state_t q{};         /* all but the tag word */
        const ak::qword::Pair qp = ak::qword::unpack(qw);
        q.q_window = qp.window;
        q.q_left = qp.left;
        q.q_used = st->q_used;      /* changed with the lock only */

        const bool quota = rec->quota_period != AK_PERIOD_NONE;

        if (quota) {
            /* sets the quota's fields only: res->rate stays */
            rc = ak_quota_admit(&q, rec->quota_period, rec->quota_n,
                                quota_lease, now, res);

            /* a new window's reset stays, nothing is consumed; or the
             * count is taken */
            if (!ak::qword::cas(st, &qw,
                                ak::qword::pack(q.q_window, q.q_left)))
            {
                continue;               /* a count went meanwhile */
            }

            ak::qword::set_used(st, q.q_used);

            if (rc != AK_ADMIT && rc != AK_ADMIT_PREFETCH) {
                return rc;
            }
        }

        if (rated
            && !__atomic_compare_exchange_n(&st->tat_us, &word,
                                            (word & ~AK_TAT_MASK) | tat,
                                            false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
        {
            if (quota) {
                /* the count back: with the lock held the window stays */
                add_counts(st, ak::qword::load(st), q.q_window, 1);
            }

            continue;                   /* word is the new one */
        }

        if (cluster) {
            /* stored atomically: see set_lease_field */
            set_lease_field(&st->r_left, st->r_left - 1);

            const uint32_t want = ak_rate_lease_want(rec->rate_interval_us);

            if (st->r_left < want / 4 + 1 && lease_wait <= 0) {
                res->rate_lease = 1;
            }

            if (res->rate.remaining > st->r_left) {
                res->rate.remaining = st->r_left;
            }
        }

        return rc;
    }
}


extern "C" int
ak_limits_admit(ak_key_state_t *st, const ak_record_t *rec, int64_t now,
    uint64_t now_us, uint64_t quota_lease, ak_admit_result_t *res) noexcept
{
    return ak_limits_admit_ex(st, rec, now, now_us, quota_lease, 0, res);
}


extern "C" uint8_t
ak_rate_scope(const ak_record_t *rec, uint8_t zone_default) noexcept
{
    uint8_t scope = rec ? rec->rate_scope : AK_RATE_SCOPE_DEFAULT;

    if (scope == AK_RATE_SCOPE_DEFAULT) {
        scope = zone_default;
    }

    return scope == AK_RATE_SCOPE_CLUSTER ? AK_RATE_SCOPE_CLUSTER
                                          : AK_RATE_SCOPE_NODE;
}


extern "C" uint32_t
ak_rate_lease_want(uint64_t interval_us) noexcept
{
    const uint64_t T = interval_us ? interval_us : 1;
    uint64_t want = AK_RATE_LEASE_WINDOW_US / T;

    if (want > AK_RATE_LEASE_MAX) {
        want = AK_RATE_LEASE_MAX;
    }

    return want ? static_cast<uint32_t>(want) : 1;
}


extern "C" uint64_t
ak_rate_lease_tau(uint64_t interval_us, uint32_t burst, uint32_t want) noexcept
{
    const uint64_t extra = want ? want - 1 : 0;

    return sat_add(sat_mul(sat_add(burst, extra),
                           interval_us ? interval_us : 1),
                   AK_RATE_LEASE_WINDOW_US);
}


extern "C" uint64_t
ak_gcra_grant(uint64_t *tat, uint64_t now_us, uint64_t interval_us,
    uint64_t tau_us, uint64_t want, uint64_t *retry_us) noexcept
{
    uint64_t retry_tmp;
    if (retry_us == nullptr) {
        retry_us = &retry_tmp;
    }

    *retry_us = 0;

    if (tat == nullptr || want == 0) {
        return 0;
    }

    const uint64_t T = interval_us ? interval_us : 1;
    const uint64_t t = *tat > now_us ? *tat : now_us;
    const uint64_t wait = t - now_us;
    uint64_t grant = 0;

    if (wait <= tau_us) {
        grant = (tau_us - wait) / T + 1;
        if (grant > want) {
            grant = want;
        }
        *tat = sat_add(t, sat_mul(grant, T));
    }

    /* a whole batch conforms once tat + (want - 1) T - now <= tau */
    const uint64_t t2 = *tat > now_us ? *tat : now_us;
    const uint64_t need = sat_add(t2 - now_us, sat_mul(want - 1, T));

    *retry_us = need > tau_us ? need - tau_us : 0;

    return grant;
}


extern "C" void
ak_rate_lease_apply(ak_key_state_t *st, uint64_t grant, uint64_t retry_us,
    uint64_t now_us) noexcept
{
    if (st == nullptr) {
        return;
    }

    const uint64_t left = sat_add(st->r_left, grant);
    set_lease_field(&st->r_left, left > UINT32_MAX
                                 ? UINT32_MAX : static_cast<uint32_t>(left));

    if (retry_us == 0) {
        set_lease_field(&st->r_next_ms, 0);
        return;
    }

    uint64_t ms = (retry_us + 999) / 1000;
    if (ms > static_cast<uint64_t>(kMaxWaitMs)) {
        ms = kMaxWaitMs;
    }
    set_lease_field(&st->r_next_ms,
                    nonzero_ms(ms_of(now_us) + static_cast<uint32_t>(ms)));
}


extern "C" uint64_t
ak_quota_lease_want(uint64_t quota_n, uint64_t used,
    uint64_t quota_lease) noexcept
{
    const uint64_t rest = used < quota_n ? quota_n - used : 1;
    uint64_t want = rest / 4;

    if (want > quota_lease) {
        want = quota_lease;
    }

    return want ? want : 1;
}


extern "C" int
ak_quota_lease_apply(ak_key_state_t *st, uint32_t window, uint64_t grant,
    uint64_t used) noexcept
{
    if (st == nullptr) {
        return 0;
    }

    /* the window only changes with the lock held, as now; q_left may go
     * down meanwhile (ak_cache_quota_take): added by compare-and-swap */
    uint64_t qw = ak::qword::load(st);

    if (ak::qword::unpack(qw).window != window) {
        return 0;
    }

    if (used > st->q_used) {
        ak::qword::set_used(st, used);
    }

    add_counts(st, qw, window, grant);

    return 1;
}


extern "C" int
ak_quota_give_back(ak_key_state_t *st, uint32_t window) noexcept
{
    if (st == nullptr) {
        return 0;
    }

    /* the window only changes with the lock held, as now; q_left may go
     * down meanwhile (ak_cache_quota_take): added by compare-and-swap */
    uint64_t qw = ak::qword::load(st);

    if (ak::qword::unpack(qw).window != window) {
        return 0;
    }

    add_counts(st, qw, window, 1);

    return 1;
}


extern "C" int
ak_quota_offline_apply(ak_key_state_t *st, uint32_t window,
    uint64_t block) noexcept
{
    if (st == nullptr) {
        return 0;
    }

    uint64_t qw = ak::qword::load(st);      /* as ak_quota_lease_apply */

    if (ak::qword::unpack(qw).window != window) {
        return 0;
    }

    ak::qword::set_used(st, sat_add(st->q_used, block));

    add_counts(st, qw, window, block);

    return 1;
}
