/* SPDX-License-Identifier: BSD-2-Clause */
// The lock-free limits (ak_cache_quota_take, ak_cache_limits_take) and the
// kept lookup (ak_cache_lookup_kept) with
// another process acting between two of their atomic operations, made
// deterministic: the core is built with AK_CACHE_KILL_POINTS (as for the
// fuzz replay), and ak_cache_race_hook runs the other process's step at
// the point named (AK_RACE_* in ak_core.h).  The lock-free stress tests in
// test/unit reach these interleavings only by chance.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>

#include "ak_core.h"
#include "cache_zone.h"

using namespace akt;

namespace {

const int64_t   kNow = 1800000000;          // 2027-01-15 08:00 UTC
const uint64_t  kUs = 7000000000ULL;
const uint64_t  kT = 1000000;               // 1/s
const uint32_t  kBurst = 2;
const uint32_t  kWindow = (uint32_t) (kNow / 3600);

// the hook: runs `step` once, at the first call at `point`, and counts
// the calls there
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

// a key in its slot, its hourly window leased 10 counts
class CacheRace : public ::testing::Test {
protected:
    CacheRace() : z(ak_cache_min_size()), k(key_of(1)) {}

    void SetUp() override
    {
        ASSERT_NE(nullptr, z.c);
        slot = put_key(z, k, 1);
        lease(z, k, quota_record(1000), kNow, 10, 0);
    }

    int limits_take()
    {
        return ak_cache_limits_take(z.c, slot, k.b, kUs, kT, kBurst,
                                    AK_PERIOD_HOUR, 1000, 0, kNow, &ar,
                                    &stamp);
    }

    int quota_take()
    {
        return ak_cache_quota_take(z.c, slot, k.b, AK_PERIOD_HOUR, 1000, 0,
                                   kNow, &ar);
    }

    uint32_t left(const Key &key)
    {
        ak_key_state_t *st = ak_cache_state(z.c, slot, key.b);
        return st ? st->q_left : 0xffffffffu;
    }

    // other requests take the key's whole burst at kUs: how many
    int take_the_rate()
    {
        ak_rate_result_t rr;
        int n = 0;
        while (ak_cache_gcra(z.c, slot, k.b, kUs, kT, kBurst, &rr) == 1) {
            n++;
        }
        return n;
    }

    // k evicted, another key in its slot: that key
    Key replace()
    {
        ak_cache_stats_t st;
        ak_cache_get_stats(z.c, &st);
        uint32_t os;
        Key o = other_in_slot(z, k, slot, st.slots_total, &os);
        EXPECT_EQ(slot, os);
        EXPECT_NE(0, memcmp(o.b, k.b, AK_HASH_LEN));
        return o;
    }

    Zone               z;
    Key                k;
    uint32_t           slot = 0;
    ak_admit_result_t  ar;
    uint32_t           stamp = 1;
};

} // namespace


// Nothing in between: the hooks are reached and change nothing.
TEST_F(CacheRace, NothingInBetween)
{
    {
        Race r(AK_RACE_LIMITS_TAKEN, [] {});
        EXPECT_EQ(AK_ADMIT, limits_take());
        EXPECT_EQ(1, Race::fired_);
    }
    {
        Race r(AK_RACE_QUOTA_TAKEN, [] {});
        EXPECT_EQ(AK_ADMIT, quota_take());
        EXPECT_EQ(1, Race::fired_);
    }
    EXPECT_EQ(8u, left(k));
}

// The slot changes identity after the count was taken and before the tag
// word is read again: the count came off the new entry's word, it is lost
// (never given to this key), and the request goes to the lock (-1).
// Without the re-check the TAT swap would succeed on the new entry's tag
// word and admit.
TEST_F(CacheRace, LimitsTakeSlotReusedAfterTheCount)
{
    Key other = k;

    Race r(AK_RACE_LIMITS_TAKEN, [&] { other = replace(); });
    EXPECT_EQ(-1, limits_take());
    EXPECT_EQ(1, Race::fired_);
    EXPECT_EQ(nullptr, ak_cache_state(z.c, slot, k.b));
    // the new entry's rate untouched: its TAT is still that of a new key
    const ak_key_state_t *st = ak_cache_state(z.c, slot, other.b);
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(0u, st->tat_us & AK_TAT_MASK);
}

// The same for the quota alone.
TEST_F(CacheRace, QuotaTakeSlotReusedAfterTheCount)
{
    Race r(AK_RACE_QUOTA_TAKEN, [&] { replace(); });
    EXPECT_EQ(-1, quota_take());
    EXPECT_EQ(1, Race::fired_);
}

// Other requests take the whole burst after the count was taken and before
// the new TAT is swapped in: the rate no longer admits on the word found,
// the count is owed (AK_TAKE_GIVE_BACK) and given back under the lock, as
// no writer changed the key's group: the key has all its counts again.
TEST_F(CacheRace, LimitsTakeRateTakenMeanwhileGivesTheCountBack)
{
    int others = 0;

    Race r(AK_RACE_LIMITS_TAKEN, [&] { others = take_the_rate(); });
    EXPECT_EQ(AK_TAKE_GIVE_BACK, limits_take());
    EXPECT_EQ((int) kBurst + 1, others);
    EXPECT_EQ(9u, left(k));
    EXPECT_EQ(kWindow, ar.window);
    EXPECT_EQ(1, ak_cache_give_back(z.c, slot, k.b, ar.window, stamp));
    EXPECT_EQ(10u, left(k));
}

// Another request moves the TAT between the decision and the swap, with
// room left in the burst: the swap fails, the GCRA is decided again on the
// word found, and the request is admitted with the one count taken.
TEST_F(CacheRace, LimitsTakeTatMovedMeanwhileDecidesAgain)
{
    ak_rate_result_t rr;

    Race r(AK_RACE_LIMITS_TAT, [&] {
        EXPECT_EQ(1, ak_cache_gcra(z.c, slot, k.b, kUs, kT, kBurst, &rr));
    });
    EXPECT_EQ(AK_ADMIT, limits_take());
    EXPECT_EQ(2, Race::fired_);         // the swap was tried twice
    EXPECT_EQ(9u, left(k));
    // two requests took the rate (burst 2: one more fits, then limited)
    EXPECT_EQ(1, take_the_rate());
}

// The entry leaves its slot between the decision and the TAT swap: the
// swap fails on the new tag, the count is owed, and the give-back finds
// the group changed (a writer was there): the count is dropped, nothing
// goes into the slot's new entry.
TEST_F(CacheRace, LimitsTakeEntryGoneBeforeTheSwapDropsTheCount)
{
    Key other = k;

    Race r(AK_RACE_LIMITS_TAT, [&] { other = replace(); });
    EXPECT_EQ(AK_TAKE_GIVE_BACK, limits_take());
    EXPECT_EQ(1, Race::fired_);
    const ak_key_state_t *st = ak_cache_state(z.c, slot, other.b);
    ASSERT_NE(nullptr, st);
    const uint32_t before = st->q_left;
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, k.b, ar.window, stamp));
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, other.b, ar.window, stamp));
    EXPECT_EQ(before, left(other));
    EXPECT_EQ(0u, st->tat_us & AK_TAT_MASK);
}

// A writer changes the key's group (the record put again) between a take
// that owes a count and its give-back: dropped, even though the key is
// still in the same slot (the put may have lowered the quota).
TEST_F(CacheRace, GiveBackAfterAWriterInTheGroupIsDropped)
{
    Race r(AK_RACE_LIMITS_TAKEN, [&] { take_the_rate(); });
    EXPECT_EQ(AK_TAKE_GIVE_BACK, limits_take());
    EXPECT_EQ(slot, put_key(z, k, 1));
    const uint32_t after_put = left(k);
    EXPECT_EQ(0, ak_cache_give_back(z.c, slot, k.b, ar.window, stamp));
    EXPECT_EQ(after_put, left(k));
}


// A kept lookup (ak_cache_lookup_kept) whose entry is stored again between
// its reading the entry's mark and its group's counter: that attempt is
// thrown away and the next copies the new store (a new mark); the mark of
// the copy the caller keeps never answers KEPT for it.  With the same
// bytes, then with others.
TEST_F(CacheRace, KeptLookupWithAStoreInBetween)
{
    unsigned char     buf[AK_RECORD_MAX + 8];
    ak_cache_found_t  f;

    auto kept = [&](uint64_t mark) {
        f.mark = mark;
        f.kept = nullptr;
        f.len = 0;
        f.flags = 0;
        f.slot = 0;
        memset(buf, 0xa5, sizeof(buf));
        return ak_cache_lookup_kept(z.c, k.b, 2, buf, sizeof(buf), &f);
    };

    ASSERT_EQ(AK_CACHE_FRESH, kept(0));
    uint64_t m = f.mark;
    ASSERT_NE(0u, m);

    for (uint64_t version : { 1, 2 }) {
        std::vector<unsigned char> b = record(1, version, 30);
        {
            Race r(AK_RACE_LOOKUP_MARK, [&] {
                std::lock_guard<std::mutex> g(z.lock);
                EXPECT_EQ(0, ak_cache_put(z.c, k.b, b.data(), b.size(), 1,
                                          ak_cache_event_seq(z.c)));
            });
            EXPECT_EQ(AK_CACHE_FRESH, kept(m)) << "version " << version;
            EXPECT_EQ(2, Race::fired_) << "an attempt, then another";
        }
        EXPECT_EQ(0u, f.flags & AK_ENTRY_KEPT) << "version " << version;
        EXPECT_NE(m, f.mark);
        EXPECT_EQ(b.size(), f.len);
        EXPECT_EQ(0, memcmp(buf, b.data(), b.size()));

        // the new mark is kept from now on
        m = f.mark;
        EXPECT_EQ(AK_CACHE_FRESH, kept(m));
        EXPECT_EQ((uint32_t) AK_ENTRY_KEPT, f.flags);
        EXPECT_EQ(0xa5, buf[0]);
    }
}


// A kept lookup read by its mark (the count of writes moved on), during
// which a writer revokes the key (between its reading the entry's mark and
// its group's counter): the attempt is thrown away, the next one finds the
// key revoked, and the record is kept with the count of writes read
// before the entry was, not after: the next lookup reads the entry again
// (and finds it revoked), it never takes the record as unchanged.
TEST_F(CacheRace, KeptRecordWithARevocationInBetween)
{
    unsigned char     buf[AK_RECORD_MAX + 8];
    ak_cache_found_t  f;
    ak_cache_kept_t   kept;

    memset(&kept, 0, sizeof(kept));

    auto look = [&] {
        memset(&f, 0, sizeof(f));
        f.kept = &kept;
        return ak_cache_lookup_kept(z.c, k.b, 2, buf, sizeof(buf), &f);
    };

    ASSERT_EQ(AK_CACHE_FRESH, look());
    ak_cache_keep(z.c, &kept, k.b, &f);
    ASSERT_EQ(AK_CACHE_FRESH, look());
    ASSERT_EQ((uint32_t) AK_ENTRY_KEPT, f.flags);

    // another key stored: the count moves on, the next look reads the
    // entry (by its mark), and the revocation comes then
    put_key(z, key_of(2), 2);
    const uint64_t before = kept.writes;
    {
        Race r(AK_RACE_LOOKUP_MARK, [&] {
            std::lock_guard<std::mutex> g(z.lock);
            EXPECT_EQ(1, ak_cache_revoke(z.c, k.b));
        });
        EXPECT_EQ(AK_CACHE_FRESH, look());
        EXPECT_EQ(2, Race::fired_) << "an attempt, then another";
    }
    EXPECT_EQ((uint32_t) (AK_ENTRY_KEPT | AK_ENTRY_REVOKED), f.flags);
    EXPECT_EQ(before + 2, f.writes) << "the count before the revocation";
    EXPECT_EQ(f.writes, kept.writes);

    // read again: revoked, and kept at the count after it
    EXPECT_EQ(AK_CACHE_FRESH, look());
    EXPECT_EQ((uint32_t) (AK_ENTRY_KEPT | AK_ENTRY_REVOKED), f.flags);
    EXPECT_EQ(before + 4, f.writes);
    EXPECT_EQ(before + 4, kept.writes);
    EXPECT_EQ(AK_CACHE_FRESH, look());
    EXPECT_EQ((uint32_t) (AK_ENTRY_KEPT | AK_ENTRY_REVOKED), f.flags);
}


// ak_cache_gcra_found whose slot is given to another key between its check
// of the count of writes and its swap: the swap fails (the slot's tag word
// moved with its identity), it goes by the hash and finds the key gone
// (-1); the new owner's TAT is untouched.  Without the race, the same call
// is admitted.
TEST_F(CacheRace, GcraFoundWithTheSlotReusedInBetween)
{
    unsigned char     buf[AK_RECORD_MAX + 8];
    ak_cache_found_t  f;
    ak_cache_kept_t   kept;
    ak_cache_stats_t  st;
    ak_rate_result_t  r;
    const ak_record_t rec = rate_record(kT, kBurst);

    memset(&f, 0, sizeof(f));
    memset(&kept, 0, sizeof(kept));
    f.kept = &kept;
    ASSERT_EQ(AK_CACHE_FRESH,
              ak_cache_lookup_kept(z.c, k.b, 2, buf, sizeof(buf), &f));
    ASSERT_EQ(0u, f.writes & 1);
    ak_cache_get_stats(z.c, &st);

    Key other;
    uint32_t other_slot = 0xffffffffu;
    {
        Race race(AK_RACE_GCRA_FOUND, [&] {
            std::lock_guard<std::mutex> g(z.lock);
            other = other_in_slot(z, k, f.slot, st.slots_total, &other_slot);
        });
        EXPECT_EQ(-1, ak_cache_gcra_found(z.c, k.b, &f, kUs, &rec, &r));
        EXPECT_EQ(1, Race::fired_);
    }
    ASSERT_EQ(f.slot, other_slot);
    ak_key_state_t *os = ak_cache_state(z.c, f.slot, other.b);
    ASSERT_NE(nullptr, os);
    EXPECT_EQ(0u, os->tat_us & AK_TAT_MASK);

    // the new owner, looked up: admitted once, its TAT swapped
    memset(&f, 0, sizeof(f));
    memset(&kept, 0, sizeof(kept));
    f.kept = &kept;
    ASSERT_EQ(AK_CACHE_FRESH,
              ak_cache_lookup_kept(z.c, other.b, 2, buf, sizeof(buf), &f));
    EXPECT_EQ(other_slot, f.slot);
    EXPECT_EQ(1, ak_cache_gcra_found(z.c, other.b, &f, kUs, &rec, &r));
    EXPECT_EQ(kUs + kT, ak_cache_state(z.c, f.slot, other.b)->tat_us
                        & AK_TAT_MASK);
}
