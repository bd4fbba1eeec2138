/* SPDX-License-Identifier: BSD-2-Clause */
// The cache's lock-free side (src/core/cache.cpp): lookups in threads
// against a writer that holds "the lock" (one writer thread, as nginx's
// zone mutex serialises writers), the GCRA by compare-and-swap from many
// threads, and a slot reused between a lookup and its swap; the same for
// the quota's leased counts (ak_cache_quota_take).

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "ak_core.h"
#include "cache_zone.h"

using namespace akt;


// Readers copy records while a writer replaces them (lengths from 24 bytes
// to the largest, so overflow chains are freed and reused), evicts (the
// cache is small), drops and flushes: every copy is whole, of its key.
TEST(CacheLockFree, LookupsAgainstAWriterNeverTear)
{
    Zone z(ak_cache_min_size() * 4);
    ASSERT_NE(nullptr, z.c);
    const uint64_t keys = 64;
    std::atomic<bool> stop(false);
    std::atomic<uint64_t> found(0), checked(0);

    auto reader = [&](int seed) {
        std::mt19937_64 rng(seed);
        std::vector<unsigned char> buf(AK_RECORD_MAX);
        while (!stop.load(std::memory_order_relaxed)) {
            uint64_t id = rng() % keys;
            Key k = key_of(id);
            size_t len = 0;
            uint32_t flags = 0, slot = 0;
            int rc = ak_cache_lookup(z.c, k.b, 1, buf.data(), buf.size(),
                                     &len, &flags, &slot);
            checked.fetch_add(1, std::memory_order_relaxed);
            if (rc == AK_CACHE_FRESH || rc == AK_CACHE_STALE) {
                found.fetch_add(1, std::memory_order_relaxed);
                ASSERT_TRUE(record_ok(buf.data(), len, id))
                    << "a torn or foreign copy of key " << id << ", " << len
                    << " bytes";
            }
        }
    };

    std::vector<std::thread> readers;
    for (int t = 0; t < 3; t++) {
        readers.emplace_back(reader, t + 1);
    }

    std::mt19937_64 rng(99);
    for (uint64_t op = 0; op < 30000 && !HasFatalFailure(); op++) {
        uint64_t id = rng() % keys;
        Key k = key_of(id);
        std::lock_guard<std::mutex> g(z.lock);
        uint32_t what = rng() % 100;
        if (what < 80) {
            size_t len = rng() % 4 == 0 ? 24 + rng() % (AK_RECORD_MAX - 24)
                                        : 24 + rng() % 300;
            std::vector<unsigned char> b = record(id, op, len);
            ASSERT_EQ(0, ak_cache_put(z.c, k.b, b.data(), b.size(), 1,
                                      ak_cache_event_seq(z.c)));
        } else if (what < 90) {
            ak_cache_put_negative(z.c, k.b, 1, ak_cache_event_seq(z.c));
        } else if (what < 97) {
            ak_cache_revoke(z.c, k.b);
        } else if (what < 99) {
            ak_cache_remove(z.c, k.b);
        } else {
            ak_cache_flush(z.c);
        }
    }

    stop = true;
    for (auto &t : readers) {
        t.join();
    }

    std::vector<unsigned char> scratch(ak_cache_check_scratch(z.c));
    EXPECT_EQ(nullptr, ak_cache_check(z.c, scratch.data(), scratch.size()));
    ak_cache_stats_t st;
    ak_cache_get_stats(z.c, &st);
    EXPECT_GT(st.evictions, 0u);
    EXPECT_GT(checked.load(), 0u);
    // what the readers counted is what the statistics say
    EXPECT_EQ(checked.load(), st.hits + st.stale_hits + st.negative_hits
                              + st.misses);
}


// Many threads at the same instant: exactly burst + 1 admitted, then one
// per interval; half of them through the locked path (ak_limits_admit_ex
// under the zone lock), half lock-free: the two never lose a count.
TEST(CacheLockFree, GcraCasAdmitsExactlyBurstPlusOne)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(1);
    std::vector<unsigned char> b = record(1, 1, 40);
    ASSERT_EQ(0, ak_cache_put(z.c, k.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot;
    ASSERT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, k.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));

    const uint64_t T = 1000000;
    const uint32_t burst = 2999;
    const int per_thread = 2000, nthreads = 4;
    const ak_record_t rec = rate_record(T, burst);
    const uint64_t t0 = 5000000000ULL;

    for (uint64_t round = 0; round < 3; round++) {
        uint64_t now = t0 + round * 10 * (burst + 1) * T;  // full again
        std::atomic<int> admitted(0), limited(0), ready(0);
        auto worker = [&](int id) {
            ready.fetch_add(1);
            while (ready.load() < nthreads) {
            }
            for (int i = 0; i < per_thread; i++) {
                int rc = -1;
                if ((id + i / 64) % 2) {
                    ak_rate_result_t r;
                    rc = ak_cache_gcra(z.c, slot, k.b, now, T, burst, &r);
                }
                if (rc < 0) {
                    // the locked path (also where the swap gave up after
                    // its retries under contention, as the glue does)
                    std::lock_guard<std::mutex> g(z.lock);
                    ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
                    ASSERT_NE(nullptr, st);
                    ak_admit_result_t ar;
                    rc = ak_limits_admit_ex(st, &rec, 0, now, 0, 0, &ar)
                         == AK_ADMIT;
                }
                (rc ? admitted : limited).fetch_add(1);
            }
        };
        std::vector<std::thread> ts;
        for (int t = 0; t < nthreads; t++) {
            ts.emplace_back(worker, t);
        }
        for (auto &t : ts) {
            t.join();
        }
        ASSERT_EQ((int) burst + 1, admitted.load()) << "round " << round;
        EXPECT_EQ(nthreads * per_thread - (int) burst - 1, limited.load());

        // one more per interval, exactly
        ak_rate_result_t r;
        EXPECT_EQ(0, ak_cache_gcra(z.c, slot, k.b, now + T - 1, T, burst, &r));
        EXPECT_EQ(1, ak_cache_gcra(z.c, slot, k.b, now + T, T, burst, &r));
        EXPECT_EQ(0, ak_cache_gcra(z.c, slot, k.b, now + T, T, burst, &r));
    }

    // hits (the CLOCK bit) never disturb the TAT
    for (int i = 0; i < 10; i++) {
        ak_cache_lookup(z.c, k.b, 2, buf, sizeof(buf), &len, &flags, &slot);
    }
    ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(t0 + 20 * (burst + 1) * T + (burst + 2) * T,
              st->tat_us & AK_TAT_MASK);
}

// The entry looked up is evicted, its slot given to another key, before the
// swap: the swap does not touch the new key's state; after a flush neither.
TEST(CacheLockFree, SlotReusedBetweenLookupAndSwap)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    ak_cache_stats_t st;
    ak_cache_get_stats(z.c, &st);
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot, other_slot = 0xffffffffu;
    const uint64_t T = 1000, now = 1000000;

    Key a = key_of(1);
    std::vector<unsigned char> b = record(1, 1, 30);
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));
    ASSERT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));

    // fill the cache with others until a's slot holds another key
    Key other = other_in_slot(z, a, slot, st.slots_total, &other_slot);
    ASSERT_EQ(slot, other_slot);

    // a's handle: refused, and the new owner's TAT is untouched
    ak_rate_result_t r;
    EXPECT_EQ(-1, ak_cache_gcra(z.c, slot, a.b, now, T, 0, &r));
    ak_key_state_t *os = ak_cache_state(z.c, slot, other.b);
    ASSERT_NE(nullptr, os);
    EXPECT_EQ(0u, os->tat_us & AK_TAT_MASK);

    // the owner's own swap works; a negative entry or a flush refuses
    EXPECT_EQ(1, ak_cache_gcra(z.c, slot, other.b, now, T, 0, &r));
    EXPECT_EQ(now + T, ak_cache_state(z.c, slot, other.b)->tat_us
                       & AK_TAT_MASK);
    ak_cache_flush(z.c);
    EXPECT_EQ(-1, ak_cache_gcra(z.c, slot, other.b, now + T, T, 0, &r));
    ASSERT_EQ(0, ak_cache_put_negative(z.c, a.b, 1, ak_cache_event_seq(z.c)));
    ASSERT_EQ(AK_CACHE_NEGATIVE, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                                 &len, &flags, &slot));
    EXPECT_EQ(-1, ak_cache_gcra(z.c, slot, a.b, now, T, 0, &r));
    EXPECT_EQ(-1, ak_cache_gcra(z.c, 0xffffffffu, a.b, now, T, 0, &r));
    EXPECT_EQ(-1, ak_cache_gcra(nullptr, 0, a.b, now, T, 0, &r));

    // the tag moves with every change of identity
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));
    ASSERT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));
    uint64_t w1 = ak_cache_state(z.c, slot, a.b)->tat_us & ~AK_TAT_REF;
    ASSERT_EQ(0, ak_cache_put_negative(z.c, a.b, 1, ak_cache_event_seq(z.c)));
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));
    uint32_t slot2;
    ak_key_state_t *s2 = ak_cache_state_find(z.c, a.b, &slot2);
    ASSERT_NE(nullptr, s2);
    if (slot2 == slot) {
        EXPECT_NE(w1, s2->tat_us & ~AK_TAT_REF);
    }
}


// ak_cache_gcra_found: while the cache's count of writes is the one the
// lookup read first, the entry it found is swapped without its identity
// checked again; once a writer changed anything (or with an odd count), by
// the key's hash, as ak_cache_gcra: the slot given to another key since,
// or a flush, refused, the other key's TAT untouched.
TEST(CacheLockFree, GcraFoundGoesByTheLookupsCountOfWrites)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    ak_cache_stats_t st;
    ak_cache_get_stats(z.c, &st);
    unsigned char buf[AK_RECORD_MAX];
    uint32_t other_slot = 0xffffffffu;
    const uint64_t T = 1000, now = 1000000;
    const ak_record_t rec = rate_record(T, 1);
    ak_rate_result_t r;

    auto find = [&](const Key &k, ak_cache_found_t *f, ak_cache_kept_t *kp) {
        memset(f, 0, sizeof(*f));
        memset(kp, 0, sizeof(*kp));
        f->kept = kp;
        return ak_cache_lookup_kept(z.c, k.b, 1, buf, sizeof(buf), f);
    };

    Key a = key_of(1), x = key_of(99);
    std::vector<unsigned char> b = record(1, 1, 30);
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));
    ak_cache_found_t f, g;
    ak_cache_kept_t fk, gk;
    ASSERT_EQ(AK_CACHE_FRESH, find(a, &f, &fk));
    ASSERT_EQ(0u, f.writes & 1);
    ak_cache_found_t odd = f;
    odd.writes = 1;

    // burst 1: two admitted, by the count and by the hash alike, then
    // limited; the answers ak_cache_gcra gives
    EXPECT_EQ(1, ak_cache_gcra_found(z.c, a.b, &f, now, &rec, &r));
    EXPECT_EQ(1u, r.remaining);
    EXPECT_EQ(T, r.reset_us);
    EXPECT_EQ(1, ak_cache_gcra_found(z.c, a.b, &odd, now, &rec, &r));
    EXPECT_EQ(0, ak_cache_gcra_found(z.c, a.b, &f, now, &rec, &r));
    EXPECT_EQ(T, r.retry_after_us);
    EXPECT_EQ(0, ak_cache_gcra(z.c, f.slot, a.b, now, T, 1, &r));
    EXPECT_EQ(now + 2 * T,
              ak_cache_state(z.c, f.slot, a.b)->tat_us & AK_TAT_MASK);

    // nothing written since the lookup: the hash is not even looked at
    // (the caller's word that the lookup was of it); by the hash, it is
    EXPECT_EQ(1, ak_cache_gcra_found(z.c, x.b, &f, now + 2 * T, &rec, &r));
    EXPECT_EQ(-1, ak_cache_gcra_found(z.c, x.b, &odd, now + 3 * T, &rec, &r));

    // a's slot given to another key: the count moved on, so by the hash:
    // refused, and the new owner's TAT untouched
    Key other = other_in_slot(z, a, f.slot, st.slots_total, &other_slot);
    ASSERT_EQ(f.slot, other_slot);
    EXPECT_EQ(-1, ak_cache_gcra_found(z.c, a.b, &f, now + 4 * T, &rec, &r));
    ASSERT_NE(nullptr, ak_cache_state(z.c, f.slot, other.b));
    EXPECT_EQ(0u, ak_cache_state(z.c, f.slot, other.b)->tat_us
                  & AK_TAT_MASK);

    // the new owner's own lookup and swap; after a flush, refused
    ASSERT_EQ(AK_CACHE_FRESH, find(other, &g, &gk));
    EXPECT_EQ(f.slot, g.slot);
    EXPECT_EQ(1, ak_cache_gcra_found(z.c, other.b, &g, now, &rec, &r));
    EXPECT_EQ(now + T, ak_cache_state(z.c, g.slot, other.b)->tat_us
                       & AK_TAT_MASK);
    ak_cache_flush(z.c);
    EXPECT_EQ(-1, ak_cache_gcra_found(z.c, other.b, &g, now + T, &rec, &r));

    // bad arguments
    g.slot = st.slots_total;
    EXPECT_EQ(-1, ak_cache_gcra_found(z.c, other.b, &g, now, &rec, &r));
    EXPECT_EQ(-1, ak_cache_gcra_found(nullptr, other.b, &f, now, &rec, &r));
    EXPECT_EQ(-1, ak_cache_gcra_found(z.c, other.b, nullptr, now, &rec, &r));
    EXPECT_EQ(-1, ak_cache_gcra_found(z.c, other.b, &f, now, nullptr, &r));
}

// A quota key's leased counts taken without the lock: the same answers,
// field by field, as ak_limits_admit_ex gives on a copy of the state; when
// none is left, in a new window, or for a bad period: -1, nothing taken.
TEST(CacheLockFree, QuotaTakeAnswersAsTheLockedPath)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(1);
    uint32_t slot = put_key(z, k, 1);
    const ak_record_t rec = quota_record(1000);
    const int64_t now = 1800000000;             // 2027-01-15 08:00 UTC
    ak_admit_result_t ar, want;

    // no window yet: locked
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000,
                                      100, now, &ar));

    lease(z, k, rec, now, 40, 900);
    ak_key_state_t copy = *ak_cache_state(z.c, slot, k.b);
    int prefetches = 0;

    for (int i = 0; i < 40; i++) {
        int rc = ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000,
                                     100, now + i, &ar);
        int wrc = ak_limits_admit_ex(&copy, &rec, now + i, 0, 100, 0, &want);
        ASSERT_EQ(wrc, rc) << i;
        EXPECT_EQ(want.quota_remaining, ar.quota_remaining) << i;
        EXPECT_EQ(want.quota_used, ar.quota_used);
        EXPECT_EQ(want.window_start, ar.window_start);
        EXPECT_EQ(want.window_end, ar.window_end);
        EXPECT_EQ(want.window, ar.window);
        EXPECT_EQ(0u, ar.retry_after);
        EXPECT_EQ(0, memcmp(&copy.q_window,
                            &ak_cache_state(z.c, slot, k.b)->q_window, 8));
        prefetches += rc == AK_ADMIT_PREFETCH;
    }
    EXPECT_EQ(26, prefetches);          // fewer than 100 / 4 + 1 left
    EXPECT_EQ(100u, ar.quota_remaining); // 1000 - (900 - 0)

    // none left: locked (NEED_LEASE there), nothing taken
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000,
                                      100, now, &ar));
    EXPECT_EQ(0u, ak_cache_state(z.c, slot, k.b)->q_left);

    // the window changes: counts left in the old one are not served here
    lease(z, k, rec, now, 5, 905);
    EXPECT_EQ(5u, ak_cache_state(z.c, slot, k.b)->q_left);
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000,
                                      100, now + 3600, &ar));
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_DAY, 1000,
                                      100, now + 86400, &ar));
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, 0, 1000, 100, now,
                                      &ar));
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, 99, 1000, 100, now,
                                      &ar));
    EXPECT_EQ(5u, ak_cache_state(z.c, slot, k.b)->q_left);
    EXPECT_EQ(AK_ADMIT, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR,
                                            1000, 0, now, &ar));
    EXPECT_EQ(4u, ak_cache_state(z.c, slot, k.b)->q_left);

    // the locked path opens the new window (the old counts dropped)
    {
        ak_admit_result_t r;
        EXPECT_EQ(AK_NEED_LEASE,
                  ak_limits_admit_ex(ak_cache_state(z.c, slot, k.b), &rec,
                                     now + 3600, 0, 100, 0, &r));
    }
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000,
                                      100, now, &ar));
    EXPECT_EQ(0u, ak_cache_state(z.c, slot, k.b)->q_left);

    // the record put again (its state kept): the counts left stay
    lease(z, k, rec, now + 3600, 3, 3);
    slot = put_key(z, k, 1);
    EXPECT_EQ(AK_ADMIT, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR,
                                            1000, 0, now + 3600, &ar));
    EXPECT_EQ(1000u - 1, ar.quota_remaining);
    EXPECT_EQ(2u, ak_cache_state(z.c, slot, k.b)->q_left);

    EXPECT_EQ(-1, ak_cache_quota_take(nullptr, slot, k.b, AK_PERIOD_HOUR,
                                      1000, 0, now + 3600, &ar));
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, 0xffffffffu, k.b, AK_PERIOD_HOUR,
                                      1000, 0, now + 3600, &ar));
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000,
                                      0, now + 3600, nullptr));
}

// The entry looked up is evicted and its slot given to another key that has
// counts leased in the same window, as many: the old handle takes none of
// them; nor after a flush, nor from a negative entry.
TEST(CacheLockFree, QuotaTakeSlotReusedByAnotherKey)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    ak_cache_stats_t cs;
    ak_cache_get_stats(z.c, &cs);
    const ak_record_t rec = quota_record(1000);
    const int64_t now = 1800000000;
    ak_admit_result_t ar;

    Key a = key_of(1);
    uint32_t slot = put_key(z, a, 1), other_slot = 0xffffffffu;
    lease(z, a, rec, now, 10, 10);
    uint64_t a_word;
    memcpy(&a_word, &ak_cache_state(z.c, slot, a.b)->q_window, 8);

    Key other = other_in_slot(z, a, slot, cs.slots_total, &other_slot);
    ASSERT_EQ(slot, other_slot);

    // the new owner: the same window, the same counts left as a had
    lease(z, other, rec, now, 10, 10);
    ak_key_state_t *os = ak_cache_state(z.c, slot, other.b);
    ASSERT_NE(nullptr, os);
    ASSERT_EQ(0, memcmp(&a_word, &os->q_window, 8));

    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, a.b, AK_PERIOD_HOUR, 1000,
                                      100, now, &ar));
    EXPECT_EQ(10u, os->q_left);
    EXPECT_EQ(AK_ADMIT_PREFETCH,
              ak_cache_quota_take(z.c, slot, other.b, AK_PERIOD_HOUR, 1000,
                                  100, now, &ar));
    EXPECT_EQ(9u, os->q_left);

    ak_cache_flush(z.c);
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, other.b, AK_PERIOD_HOUR,
                                      1000, 100, now, &ar));
    ASSERT_EQ(0, ak_cache_put_negative(z.c, a.b, 1, ak_cache_event_seq(z.c)));
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags;
    ASSERT_EQ(AK_CACHE_NEGATIVE, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                                 &len, &flags, &slot));
    EXPECT_EQ(-1, ak_cache_quota_take(z.c, slot, a.b, AK_PERIOD_HOUR, 1000,
                                      100, now, &ar));
}

// Threads take counts, half lock-free, half through ak_limits_admit_ex
// under the lock, while the lock's holder grants leases (ak_quota_lease_apply
// and the offline share) and replaces the record (its state kept): the
// counts granted are admitted exactly, none lost, none served twice.
TEST(CacheLockFree, QuotaTakeAdmitsExactlyWhatWasLeased)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(7);
    uint32_t slot = put_key(z, k, 7);
    const uint64_t quota_n = 1000000000;
    const ak_record_t rec = quota_record(quota_n);
    const int64_t now = 1800000000;
    const int nthreads = 4, leases = 100, per_lease = 5000;

    for (int round = 0; round < 3; round++) {
        const int64_t t = now + round * 3600;   // a new window each round
        std::atomic<long> admitted(0), fast(0);
        std::atomic<bool> granted(false);
        std::atomic<int> ready(0);

        {
            std::lock_guard<std::mutex> g(z.lock);
            ak_admit_result_t ar;
            ASSERT_EQ(AK_NEED_LEASE,
                      ak_limits_admit_ex(ak_cache_state(z.c, slot, k.b),
                                         &rec, t, 0, 100, 0, &ar));
        }

        auto taker = [&](int id) {
            ready.fetch_add(1);
            while (ready.load() < nthreads + 1) {
            }
            for (long i = 0;; i++) {
                bool done = granted.load(std::memory_order_acquire);
                ak_admit_result_t ar;
                int rc = -1;
                if ((id + i / 16) % 2) {
                    rc = ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR,
                                             quota_n, 100, t, &ar);
                    if (rc >= 0) {
                        fast.fetch_add(1, std::memory_order_relaxed);
                    }
                }
                if (rc < 0) {
                    std::lock_guard<std::mutex> g(z.lock);
                    ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
                    ASSERT_NE(nullptr, st);
                    rc = ak_limits_admit_ex(st, &rec, t, 0, 100, 0, &ar);
                }
                if (rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH) {
                    admitted.fetch_add(1, std::memory_order_relaxed);
                } else {
                    ASSERT_EQ(AK_NEED_LEASE, rc);
                    if (done) {
                        return;     // every lease applied, none left
                    }
                }
            }
        };

        std::vector<std::thread> ts;
        for (int n = 0; n < nthreads; n++) {
            ts.emplace_back(taker, n);
        }
        ready.fetch_add(1);
        std::vector<unsigned char> b = record(7, 1, 30);
        for (int l = 0; l < leases;) {
            // the record put again and again while the counts go; the
            // next lease when fewer than half of one are left
            std::lock_guard<std::mutex> g(z.lock);
            ASSERT_EQ(0, ak_cache_put(z.c, k.b, b.data(), b.size(), 1,
                                      ak_cache_event_seq(z.c)));
            ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
            ASSERT_NE(nullptr, st);
            if (__atomic_load_n(&st->q_left, __ATOMIC_RELAXED)
                >= per_lease / 2)
            {
                continue;
            }
            const uint32_t w = (uint32_t) (t / 3600);
            if (l % 2) {
                ASSERT_EQ(1, ak_quota_lease_apply(st, w, per_lease,
                                                  (uint64_t) l * per_lease));
            } else {
                ASSERT_EQ(1, ak_quota_offline_apply(st, w, per_lease));
            }
            l++;
        }
        granted.store(true, std::memory_order_release);
        for (auto &th : ts) {
            th.join();
        }
        EXPECT_EQ((long) leases * per_lease, admitted.load())
            << "round " << round << ", " << fast.load() << " lock-free";
        EXPECT_GT(fast.load(), 0);
        EXPECT_EQ(0u, ak_cache_state(z.c, slot, k.b)->q_left);
    }
}

namespace {

ak_record_t
rate_quota_record(uint64_t interval_us, uint32_t burst, uint64_t quota_n)
{
    ak_record_t rec = rate_record(interval_us, burst);
    rec.quota_period = AK_PERIOD_HOUR;
    rec.quota_n = quota_n;
    return rec;
}

// ak_cache_limits_take as the glue uses it: a count owed is given back
// under the lock, where the request is then decided
int
limits_take_or_lock(Zone &z, const Key &k, uint32_t slot,
    const ak_record_t &rec, int64_t now, uint64_t now_us, bool lockfree,
    bool *fast, ak_admit_result_t *ar)
{
    int rc = -1;
    uint32_t stamp = 0;
    if (lockfree) {
        rc = ak_cache_limits_take(z.c, slot, k.b, now_us,
                                  rec.rate_interval_us, rec.burst,
                                  rec.quota_period, rec.quota_n, 100, now,
                                  ar, &stamp);
        if (rc >= 0) {
            *fast = true;
            return rc;
        }
    }
    std::lock_guard<std::mutex> g(z.lock);
    ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
    EXPECT_NE(nullptr, st);
    if (st == nullptr) {
        return -100;
    }
    if (rc == AK_TAKE_GIVE_BACK) {
        // no writer here: the group's counter has not moved
        EXPECT_EQ(1, ak_cache_give_back(z.c, slot, k.b, ar->window, stamp));
    }
    *fast = false;
    return ak_limits_admit_ex(st, &rec, now, now_us, 100, 0, ar);
}

} // namespace

// A key with a rate and a quota decided without the lock: the same answers,
// field by field, and the same state after each, as ak_limits_admit_ex on
// a copy; the rate limits before a count is taken; -1 where the locked
// path would open a window or ask for a lease, nothing taken.
TEST(CacheLockFree, LimitsTakeAnswersAsTheLockedPath)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(3);
    uint32_t slot = put_key(z, k, 3);
    const uint64_t T = 1000000;
    const ak_record_t rec = rate_quota_record(T, 4, 1000);
    const int64_t now = 1800000000;
    const uint64_t us = 7000000000ULL;
    ak_admit_result_t ar, want;
    uint32_t stamp;

    // no window yet: locked, nothing taken
    EXPECT_EQ(-1, ak_cache_limits_take(z.c, slot, k.b, us, T, 4,
                                       AK_PERIOD_HOUR, 1000, 100, now, &ar, &stamp));
    EXPECT_EQ(AK_TAT_NONE - 1 > (ak_cache_state(z.c, slot, k.b)->tat_us
                                 & AK_TAT_MASK), true);
    const uint64_t tat0 = ak_cache_state(z.c, slot, k.b)->tat_us
                          & AK_TAT_MASK;

    lease(z, k, quota_record(1000), now, 12, 900);
    ak_key_state_t copy = *ak_cache_state(z.c, slot, k.b);
    copy.tat_us &= AK_TAT_MASK;
    int admitted = 0, limited = 0;

    // 5 at once (burst 4), then one a second, some too early
    const uint64_t at[] = { 0, 0, 0, 0, 0, 0, 1, 1, 500000, 2000000,
                            2999999, 3000000, 3000000, 9000000, 9000000,
                            9000000, 9000000, 9000000, 9000000, 9000000 };
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        int rc = ak_cache_limits_take(z.c, slot, k.b, us + at[i], T, 4,
                                      AK_PERIOD_HOUR, 1000, 100, now, &ar, &stamp);
        if (rc == -1) {
            // only when no count is left here: where the locked path asks
            EXPECT_EQ(0u, ak_cache_state(z.c, slot, k.b)->q_left) << i;
            EXPECT_EQ(AK_NEED_LEASE,
                      ak_limits_admit_ex(&copy, &rec, now, us + at[i], 100,
                                         0, &want)) << i;
            continue;
        }
        int wrc = ak_limits_admit_ex(&copy, &rec, now, us + at[i], 100, 0,
                                     &want);
        ASSERT_EQ(wrc, rc) << i;
        EXPECT_EQ(want.rate.remaining, ar.rate.remaining) << i;
        EXPECT_EQ(want.rate.retry_after_us, ar.rate.retry_after_us) << i;
        EXPECT_EQ(want.rate.reset_us, ar.rate.reset_us) << i;
        EXPECT_EQ(want.quota_remaining, ar.quota_remaining) << i;
        EXPECT_EQ(want.quota_used, ar.quota_used) << i;
        EXPECT_EQ(want.window_start, ar.window_start) << i;
        EXPECT_EQ(want.window_end, ar.window_end) << i;
        const ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
        EXPECT_EQ(copy.tat_us, st->tat_us & AK_TAT_MASK) << i;
        EXPECT_EQ(0, memcmp(&copy.q_window, &st->q_window, 8)) << i;
        admitted += rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH;
        limited += rc == AK_DENY_RATE;
    }
    EXPECT_EQ(12, admitted);            // every count leased, no more
    EXPECT_GT(limited, 0);
    EXPECT_NE(tat0, ak_cache_state(z.c, slot, k.b)->tat_us & AK_TAT_MASK);

    // a new window, another period, a bad one, no cache: -1, nothing taken
    lease(z, k, quota_record(1000), now, 5, 912);
    const uint64_t tat1 = ak_cache_state(z.c, slot, k.b)->tat_us
                          & AK_TAT_MASK;
    EXPECT_EQ(-1, ak_cache_limits_take(z.c, slot, k.b, us + 20000000, T, 4,
                                       AK_PERIOD_HOUR, 1000, 100, now + 3600,
                                       &ar, &stamp));
    EXPECT_EQ(-1, ak_cache_limits_take(z.c, slot, k.b, us + 20000000, T, 4,
                                       AK_PERIOD_DAY, 1000, 100, now + 86400,
                                       &ar, &stamp));
    EXPECT_EQ(-1, ak_cache_limits_take(z.c, slot, k.b, us + 20000000, T, 4,
                                       99, 1000, 100, now, &ar, &stamp));
    EXPECT_EQ(-1, ak_cache_limits_take(nullptr, slot, k.b, us + 20000000, T,
                                       4, AK_PERIOD_HOUR, 1000, 100, now,
                                       &ar, &stamp));
    EXPECT_EQ(-1, ak_cache_limits_take(z.c, 0xffffffffu, k.b, us + 20000000,
                                       T, 4, AK_PERIOD_HOUR, 1000, 100, now,
                                       &ar, &stamp));
    EXPECT_EQ(5u, ak_cache_state(z.c, slot, k.b)->q_left);
    EXPECT_EQ(tat1, ak_cache_state(z.c, slot, k.b)->tat_us & AK_TAT_MASK);

    // another key's handle: nothing taken from this one
    Key other = key_of(4);
    EXPECT_EQ(-1, ak_cache_limits_take(z.c, slot, other.b, us + 20000000, T,
                                       4, AK_PERIOD_HOUR, 1000, 100, now,
                                       &ar, &stamp));
    EXPECT_EQ(5u, ak_cache_state(z.c, slot, k.b)->q_left);

    // a count given back goes to the window it came from only
    ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
    const uint32_t w = (uint32_t) (now / 3600);
    EXPECT_EQ(1, ak_quota_give_back(st, w));
    EXPECT_EQ(6u, st->q_left);
    EXPECT_EQ(0, ak_quota_give_back(st, w + 1));
    EXPECT_EQ(6u, st->q_left);
    EXPECT_EQ(0, ak_quota_give_back(nullptr, w));
}

// A count owed goes back to the entry it came from only while no writer
// changed the key's bucket group since the take began: not after the
// record was put again (a lowered quota drops the counts left, which must
// not come back), nor to another slot, key or window.
TEST(CacheLockFree, GiveBackOnlyToAnUnchangedEntry)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(5);
    uint32_t slot = put_key(z, k, 5);
    const uint64_t T = 1000000;
    const int64_t now = 1800000000;
    const uint64_t us = 7000000000ULL;
    const uint32_t w = (uint32_t) (now / 3600);
    ak_admit_result_t ar;
    uint32_t stamp = 1;

    lease(z, k, quota_record(1000), now, 10, 0);
    ASSERT_EQ(AK_ADMIT, ak_cache_limits_take(z.c, slot, k.b, us, T, 100,
                                             AK_PERIOD_HOUR, 1000, 0, now,
                                             &ar, &stamp));
    EXPECT_EQ(0u, stamp & 1);
    EXPECT_EQ(9u, ak_cache_state(z.c, slot, k.b)->q_left);

    // what a request owing that count would do: given back
    EXPECT_EQ(1, ak_cache_give_back(z.c, slot, k.b, w, stamp));
    EXPECT_EQ(10u, ak_cache_state(z.c, slot, k.b)->q_left);

    // not into another window, slot or key, nor with an odd stamp
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, k.b, w + 1, stamp));
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot ^ 1u, k.b, w, stamp));
    Key other = key_of(6);
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, other.b, w, stamp));
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, k.b, w, stamp | 1));
    EXPECT_EQ(0, ak_cache_give_back(nullptr, slot, k.b, w, stamp));
    EXPECT_EQ(10u, ak_cache_state(z.c, slot, k.b)->q_left);

    // a writer in the key's group since (the record put again): dropped
    ASSERT_EQ(AK_ADMIT, ak_cache_limits_take(z.c, slot, k.b, us + T, T, 100,
                                             AK_PERIOD_HOUR, 1000, 0, now,
                                             &ar, &stamp));
    EXPECT_EQ(9u, ak_cache_state(z.c, slot, k.b)->q_left);
    slot = put_key(z, k, 5);
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, k.b, w, stamp));
    EXPECT_EQ(9u, ak_cache_state(z.c, slot, k.b)->q_left);
}

// Many threads at one instant on a key with a rate and a quota, half of
// them lock-free: both limits are consumed together or neither.  Bound by
// the rate (burst + 1 = 3000 of 8000, 5000 counts leased): exactly 3000
// admitted and 2000 counts left; bound by the quota (burst 9999, 700
// counts): exactly 700 admitted and the TAT 700 intervals on.
TEST(CacheLockFree, LimitsTakeConsumesBothOrNeither)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(9);
    uint32_t slot = put_key(z, k, 9);
    const uint64_t T = 1000000;
    const int64_t now = 1800000000;
    const int nthreads = 4, per_thread = 2000;

    struct Case {
        uint32_t burst;
        uint64_t leased;
        long want;
    } cases[] = { { 2999, 5000, 3000 }, { 9999, 700, 700 } };

    for (int c = 0; c < 2; c++) {
        const ak_record_t rec = rate_quota_record(T, cases[c].burst,
                                                  1000000000);
        const int64_t t = now + c * 3600;       // a window of its own
        const uint64_t us = 9000000000ULL + c * 100000000000ULL;
        lease(z, k, quota_record(1000000000), t, cases[c].leased, 0);
        const uint64_t tat_before = ak_cache_state(z.c, slot, k.b)->tat_us
                                    & AK_TAT_MASK;
        std::atomic<long> admitted(0), fast(0);
        std::atomic<int> ready(0);

        auto worker = [&](int id) {
            ready.fetch_add(1);
            while (ready.load() < nthreads) {
            }
            for (int i = 0; i < per_thread; i++) {
                ak_admit_result_t ar;
                bool f = false;
                int rc = limits_take_or_lock(z, k, slot, rec, t, us,
                                             (id + i / 32) % 2, &f, &ar);
                if (rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH) {
                    admitted.fetch_add(1, std::memory_order_relaxed);
                    fast.fetch_add(f, std::memory_order_relaxed);
                } else {
                    ASSERT_TRUE(rc == AK_DENY_RATE || rc == AK_NEED_LEASE)
                        << rc;
                }
            }
        };
        std::vector<std::thread> ts;
        for (int n = 0; n < nthreads; n++) {
            ts.emplace_back(worker, n);
        }
        for (auto &th : ts) {
            th.join();
        }
        const ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
        EXPECT_EQ(cases[c].want, admitted.load())
            << "case " << c << ", " << fast.load() << " lock-free";
        EXPECT_GT(fast.load(), 0);
        EXPECT_EQ(cases[c].leased - (uint64_t) cases[c].want,
                  (uint64_t) st->q_left) << "case " << c;
        EXPECT_EQ((tat_before > us ? tat_before : us)
                  + (uint64_t) cases[c].want * T,
                  st->tat_us & AK_TAT_MASK) << "case " << c;
    }
}

// Two threads (the machine's cores) race for one token a step (burst 0, the
// clock one interval on each step, both released together): both may pass
// the rate on the same word and take a count, one stores the TAT, the other
// finds the rate spent and owes its count, given back under the lock.
// Exactly one admitted a step, and exactly as many counts gone.
TEST(CacheLockFree, LimitsTakeGivesBackWhatTheRateRefused)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key k = key_of(11);
    uint32_t slot = put_key(z, k, 11);
    const uint64_t T = 1000000;
    const int64_t now = 1800000000;
    const int steps = 20000;
    const ak_record_t rec = rate_quota_record(T, 0, 1000000000);
    lease(z, k, quota_record(1000000000), now, 1000000, 0);
    std::atomic<long> admitted(0), owed(0);
    long total = 0;

    // the race is a few instructions wide: rounds of 20,000 steps until
    // 10 counts were owed (a few per round on 2 cores), at most 10 rounds
    for (int round = 0; round < 10 && owed.load() < 10; round++) {
        const uint64_t us = 3000000000ULL + (uint64_t) round * 2 * steps * T;
        std::atomic<int> arrived(0);

        auto worker = [&](int id) {
            for (int i = 0; i < steps; i++) {
                // both threads at step i before either goes on
                arrived.fetch_add(1);
                while (arrived.load() < 2 * (i + 1)) {
                    std::this_thread::yield();  /* a core short */
                }
                ak_admit_result_t ar;
                uint32_t stamp;
                const uint64_t t = us + (uint64_t) i * T;
                int rc = ak_cache_limits_take(z.c, slot, k.b, t, T, 0,
                                              AK_PERIOD_HOUR, 1000000000, 100,
                                              now, &ar, &stamp);
                if (rc == AK_TAKE_GIVE_BACK || rc == -1) {
                    owed.fetch_add(rc == AK_TAKE_GIVE_BACK);
                    std::lock_guard<std::mutex> g(z.lock);
                    ak_key_state_t *st = ak_cache_state(z.c, slot, k.b);
                    ASSERT_NE(nullptr, st);
                    if (rc == AK_TAKE_GIVE_BACK) {
                        ASSERT_EQ(1, ak_cache_give_back(z.c, slot, k.b,
                                                        ar.window, stamp));
                    }
                    rc = ak_limits_admit_ex(st, &rec, now, t, 100, 0, &ar);
                }
                if (rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH) {
                    admitted.fetch_add(1);
                } else {
                    ASSERT_EQ(AK_DENY_RATE, rc) << id;
                }
            }
        };
        std::thread a(worker, 0), b(worker, 1);
        a.join();
        b.join();
        total += steps;

        ASSERT_EQ(total, admitted.load()) << "round " << round;
        ASSERT_EQ(1000000u - (uint64_t) total,
                  ak_cache_state(z.c, slot, k.b)->q_left)
            << "round " << round << ", " << owed.load() << " given back";
    }
    std::printf("[ info ] %ld of %ld steps: a count given back\n",
                owed.load(), total);
}

// A writer that stops in the middle (a killed worker) leaves its group's
// counter odd: readers of that group answer MISS after their retries,
// within bounds; the next writer reformats.  (The fuzz target kills
// writers at every step; this is the case by hand.)
TEST(CacheLockFree, ReadersOfAGroupLeftOddAnswerMiss)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    Key a = key_of(7);
    std::vector<unsigned char> b = record(7, 1, 500);
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));

    // the group counter of a: header (256) + stripes (1024), then groups
    // of 64 bytes picked by the first 4 bytes of the hash
    unsigned char *mem = reinterpret_cast<unsigned char *>(z.words.data());
    uint32_t ngroups, x;
    memcpy(&ngroups, mem + 44, 4);
    memcpy(&x, a.b, 4);
    uint32_t g = (uint32_t) (((uint64_t) x * ngroups) >> 32);
    uint32_t *seq = reinterpret_cast<uint32_t *>(mem + 1280 + 64 * (size_t) g);
    uint32_t writing = 1;

    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot;
    ASSERT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));
    *seq |= 1;
    memcpy(mem + 108, &writing, 4);     // the header's "writing"
    ak_cache_stats_t before, after;
    ak_cache_get_stats(z.c, &before);
    EXPECT_EQ(AK_CACHE_MISS, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                             &len, &flags, &slot));
    ak_cache_get_stats(z.c, &after);
    EXPECT_EQ(before.misses + 1, after.misses);
    EXPECT_EQ(before.read_retries + 16, after.read_retries);
    std::vector<unsigned char> scratch(ak_cache_check_scratch(z.c));
    EXPECT_NE(nullptr, ak_cache_check(z.c, scratch.data(), scratch.size()));

    // the next writer: reformatted, consistent, readable
    ak_cache_new_generation(z.c);
    EXPECT_EQ(nullptr, ak_cache_check(z.c, scratch.data(), scratch.size()));
    EXPECT_EQ(0, ak_cache_peek(z.c, a.b));
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, b.data(), b.size(), 1,
                              ak_cache_event_seq(z.c)));
    EXPECT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));
}

// ak_cache_recover (a reload that keeps the zone, a lookup out of
// retries): a consistent cache is left alone; one whose writer died (its
// flag set, or counts half-updated: a store of nfree without the slot
// counts that go with it) is emptied and usable; a block of another layout is not
// touched.  Without it a reload after a dead writer was refused.
TEST(CacheLockFree, RecoverEmptiesWhatADeadWriterLeft)
{
    Zone z(ak_cache_min_size());
    ASSERT_NE(nullptr, z.c);
    void *mem = z.words.data();
    size_t size = ak_cache_min_size();
    unsigned char *b8 = reinterpret_cast<unsigned char *>(mem);
    Key a = key_of(9);
    std::vector<unsigned char> rec = record(9, 1, 200);
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot, v;
    std::vector<unsigned char> scratch(ak_cache_check_scratch(z.c));

    ASSERT_EQ(0, ak_cache_put(z.c, a.b, rec.data(), rec.size(), 1,
                              ak_cache_event_seq(z.c)));
    EXPECT_EQ(0, ak_cache_recover(mem, size));
    EXPECT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));

    // counts half-updated (nfree one further, the others not), the flag
    // cleared
    memcpy(&v, b8 + 96, 4);
    v++;
    memcpy(b8 + 96, &v, 4);
    ASSERT_NE(nullptr, ak_cache_validate(mem, size));
    EXPECT_EQ(1, ak_cache_recover(mem, size));
    EXPECT_EQ(nullptr, ak_cache_validate(mem, size));
    EXPECT_EQ(nullptr, ak_cache_check(z.c, scratch.data(), scratch.size()));
    EXPECT_EQ(AK_CACHE_MISS, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                             &len, &flags, &slot));

    // the writer's flag left set
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, rec.data(), rec.size(), 1,
                              ak_cache_event_seq(z.c)));
    v = 1;
    memcpy(b8 + 108, &v, 4);
    EXPECT_EQ(1, ak_cache_recover(mem, size));
    memcpy(&v, b8 + 108, 4);
    EXPECT_EQ(0u, v);
    EXPECT_EQ(nullptr, ak_cache_check(z.c, scratch.data(), scratch.size()));
    ASSERT_EQ(0, ak_cache_put(z.c, a.b, rec.data(), rec.size(), 1,
                              ak_cache_event_seq(z.c)));
    EXPECT_EQ(AK_CACHE_FRESH, ak_cache_lookup(z.c, a.b, 1, buf, sizeof(buf),
                                              &len, &flags, &slot));

    // another layout version: left as it is
    std::vector<unsigned char> before(b8, b8 + size);
    memcpy(&v, b8 + 8, 4);
    v++;
    memcpy(b8 + 8, &v, 4);
    before[8] = b8[8];
    before[9] = b8[9];
    before[10] = b8[10];
    before[11] = b8[11];
    v = 1;
    memcpy(b8 + 108, &v, 4);
    before[108] = 1;
    before[109] = before[110] = before[111] = 0;
    EXPECT_EQ(-1, ak_cache_recover(mem, size));
    EXPECT_EQ(0, memcmp(before.data(), b8, size));
    EXPECT_EQ(-1, ak_cache_recover(mem, size - 8));
}
