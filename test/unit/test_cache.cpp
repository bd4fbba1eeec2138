/* SPDX-License-Identifier: BSD-2-Clause */
// Unit tests of the shared-memory key cache (src/core/cache.cpp).

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <list>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "ak_core.h"
#include "ak_record_util.h"

namespace {

typedef std::vector<unsigned char> Bytes;

const uint64_t kTtl = 60000;
const uint64_t kNegTtl = 5000;
const uint64_t kStale = 600000;

ak_cache_conf_t
conf(uint32_t pct = 25)
{
    ak_cache_conf_t c;
    c.ttl_ms = kTtl;
    c.negative_ttl_ms = kNegTtl;
    c.stale_ms = kStale;
    c.negative_max_pct = pct;
    return c;
}

uint64_t
splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// A digest-like key: 32 uniformly distributed bytes derived from id.
struct Hash {
    unsigned char b[AK_HASH_LEN];
};

Hash
hash_of(uint64_t id)
{
    Hash h;
    uint64_t x = id * 0x632be59bd9b4e019ULL + 12345;
    for (int i = 0; i < 4; i++) {
        uint64_t v = splitmix(&x);
        memcpy(h.b + 8 * i, &v, 8);
    }
    return h;
}

Bytes
blob_of(uint64_t id, size_t len, uint64_t version = 0)
{
    Bytes b(len);
    uint64_t x = id * 31 + version * 1000003 + len;
    for (size_t i = 0; i < len; i++) {
        b[i] = (unsigned char) splitmix(&x);
    }
    return b;
}

// Slots a blob of len bytes uses (entry slot: 36 inline bytes, overflow
// slots: 108 bytes each): the documented layout.
uint32_t
slots_for(size_t len)
{
    return len <= 36 ? 1 : 1 + (uint32_t) ((len - 36 + 107) / 108);
}

// The TAT of a cached state (the bits above are the cache's)
uint64_t
tat(const ak_key_state_t *st)
{
    return st->tat_us & AK_TAT_MASK;
}

void
set_tat(ak_key_state_t *st, uint64_t v)
{
    st->tat_us = (st->tat_us & ~AK_TAT_MASK) | v;
}

// An 8-byte aligned block of shared memory stand-in.
struct Block {
    explicit Block(size_t n) : size(n), words((n + 7) / 8 + 1, 0) {}
    void *mem() { return words.data(); }
    size_t size;
    std::vector<uint64_t> words;
};

struct Result {
    int rc;
    Bytes blob;
    uint32_t flags;
    uint32_t slot;
};

Result
look(ak_cache_t *c, const Hash &h, uint64_t now)
{
    static unsigned char buf[AK_RECORD_MAX];
    Result r;
    size_t len = 0;
    r.flags = 0xdead;
    r.slot = 0xdead;
    r.rc = ak_cache_lookup(c, h.b, now, buf, sizeof(buf), &len, &r.flags,
                           &r.slot);
    if (r.rc == AK_CACHE_FRESH || r.rc == AK_CACHE_STALE) {
        r.blob.assign(buf, buf + len);
    }
    return r;
}

int
put(ak_cache_t *c, const Hash &h, const Bytes &b, uint64_t now)
{
    return ak_cache_put(c, h.b, b.data(), b.size(), now,
                        ak_cache_event_seq(c));
}

int
put_neg(ak_cache_t *c, const Hash &h, uint64_t now)
{
    return ak_cache_put_negative(c, h.b, now, ak_cache_event_seq(c));
}

ak_cache_stats_t
stats(const ak_cache_t *c)
{
    ak_cache_stats_t st;
    ak_cache_get_stats(c, &st);
    return st;
}

// A cache formatted on the smallest accepted block.
struct Small {
    explicit Small(uint32_t pct = 25, size_t size = ak_cache_min_size())
        : block(size)
    {
        ak_cache_conf_t cf = conf(pct);
        c = ak_cache_create(block.mem(), block.size, &cf);
    }
    Block block;
    ak_cache_t *c;
};

} // namespace


TEST(Cache, CreateAndMinSize)
{
    size_t min = ak_cache_min_size();
    Block b(min + 64);
    ak_cache_conf_t cf = conf();

    EXPECT_EQ(nullptr, ak_cache_create(b.mem(), min - 1, &cf));
    EXPECT_EQ(nullptr, ak_cache_create(nullptr, min, &cf));
    EXPECT_EQ(nullptr,
              ak_cache_create((char *) b.mem() + 1, min, &cf));  // misaligned

    ak_cache_t *c = ak_cache_create(b.mem(), min, &cf);
    ASSERT_NE(nullptr, c);
    ak_cache_stats_t st = stats(c);
    EXPECT_GE(st.slots_total, 37u);     // the largest blob always fits
    EXPECT_EQ(st.slots_total, st.slots_free);
    EXPECT_EQ(0u, st.entries);
    EXPECT_EQ(0u, st.negative_entries);
    EXPECT_EQ(AK_CACHE_MISS, look(c, hash_of(1), 0).rc);
    EXPECT_EQ(1u, stats(c).misses);
}

TEST(Cache, PutLookupFresh)
{
    Small s;
    ASSERT_NE(nullptr, s.c);
    Bytes b = blob_of(7, 20);
    ASSERT_EQ(0, put(s.c, hash_of(7), b, 1000));

    Result r = look(s.c, hash_of(7), 1001);
    EXPECT_EQ(AK_CACHE_FRESH, r.rc);
    EXPECT_EQ(b, r.blob);
    EXPECT_EQ(0u, r.flags);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(8), 1001).rc);

    ak_cache_stats_t st = stats(s.c);
    EXPECT_EQ(1u, st.hits);
    EXPECT_EQ(1u, st.misses);
    EXPECT_EQ(1u, st.inserts);
    EXPECT_EQ(1u, st.entries);
    EXPECT_EQ(st.slots_total - 1, st.slots_free);

    // bad arguments
    unsigned char one = 1;
    EXPECT_EQ(-1, ak_cache_put(s.c, hash_of(9).b, &one, 0, 0,
                               ak_cache_event_seq(s.c)));
    Bytes huge(AK_RECORD_MAX + 1, 1);
    EXPECT_EQ(-1, put(s.c, hash_of(9), huge, 0));
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(9), 0).rc);
}

TEST(Cache, LookupAgainReturnsTheSameWithoutCounting)
{
    Small s;
    ASSERT_NE(nullptr, s.c);
    Bytes b = blob_of(3, 40);
    ASSERT_EQ(0, put(s.c, hash_of(3), b, 1000));
    ASSERT_EQ(0, ak_cache_put_negative(s.c, hash_of(4).b, 1000,
                                       ak_cache_event_seq(s.c)));

    unsigned char buf[AK_RECORD_MAX];
    size_t len = 0;
    uint32_t flags = 0, slot = 0;
    ak_cache_stats_t before = stats(s.c);

    EXPECT_EQ(AK_CACHE_FRESH,
              ak_cache_lookup_again(s.c, hash_of(3).b, 1001, buf, sizeof(buf),
                                    &len, &flags, &slot));
    EXPECT_EQ(b, Bytes(buf, buf + len));
    EXPECT_NE(nullptr, ak_cache_state(s.c, slot, hash_of(3).b));
    EXPECT_EQ(AK_CACHE_NEGATIVE,
              ak_cache_lookup_again(s.c, hash_of(4).b, 1001, buf, sizeof(buf),
                                    &len, &flags, &slot));
    EXPECT_EQ(AK_CACHE_MISS,
              ak_cache_lookup_again(s.c, hash_of(5).b, 1001, buf, sizeof(buf),
                                    &len, &flags, &slot));

    ak_cache_stats_t after = stats(s.c);
    EXPECT_EQ(before.hits, after.hits);
    EXPECT_EQ(before.negative_hits, after.negative_hits);
    EXPECT_EQ(before.misses, after.misses);

    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(3), 1002).rc);
    EXPECT_EQ(before.hits + 1, stats(s.c).hits);
}

// Home slots: with room, a new entry takes a slot of its home pair (slots
// 2m and 2m + 1, m from digest bytes 8-11), the pair a lookup prefetches
// with the bucket group.  Half full: (nearly) all are there; the free
// bitmap stays consistent.
TEST(Cache, NewEntriesTakeTheirHomePair)
{
    Small s(25, ak_cache_min_size() * 64);
    uint32_t n = stats(s.c).slots_total;
    uint32_t home = 0;

    for (uint32_t i = 0; i < n / 2; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(i), blob_of(i, 10), 1));
    }
    for (uint32_t i = 0; i < n / 2; i++) {
        Hash h = hash_of(i);
        Result r = look(s.c, h, 2);
        ASSERT_EQ(AK_CACHE_FRESH, r.rc);
        uint32_t x;
        memcpy(&x, h.b + 8, 4);
        uint32_t m = (uint32_t) (((uint64_t) x * n) >> 32);
        home += (r.slot | 1) == (m | 1);
    }
    // 1 - (k / n)^2 on average over k < n / 2: 92%
    EXPECT_GE(home, n / 2 * 85 / 100) << home << " of " << n / 2;

    std::vector<unsigned char> scratch(ak_cache_check_scratch(s.c));
    EXPECT_EQ(nullptr, ak_cache_check(s.c, scratch.data(), scratch.size()));
}

// CLOCK: a hit sets the entry's referenced bit; an insert into a full cache
// sweeps the hand, clearing bits, and evicts the first entry without one
// (or an expired one, referenced or not).
TEST(Cache, ClockSecondChanceWhenFull)
{
    Small s;
    uint32_t n = stats(s.c).slots_total;

    for (uint32_t i = 0; i < n; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(i), blob_of(i, 10), 100 + i));
    }
    ASSERT_EQ(n, stats(s.c).entries);
    ASSERT_EQ(0u, stats(s.c).slots_free);
    ASSERT_EQ(0u, stats(s.c).evictions);

    // the first half is used: the next inserts take from the second half
    for (uint32_t i = 0; i < n / 2; i++) {
        ASSERT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(i), 1000).rc);
    }
    for (uint32_t k = 0; k < n / 4; k++) {
        ASSERT_EQ(0, put(s.c, hash_of(n + k), blob_of(n + k, 10), 1001));
    }
    EXPECT_EQ(n / 4, stats(s.c).evictions);
    uint32_t lost = 0;
    for (uint32_t i = 0; i < n; i++) {
        int has = ak_cache_peek(s.c, hash_of(i).b);
        if (i < n / 2) {
            EXPECT_EQ(1, has) << "referenced key " << i << " evicted";
        } else {
            lost += has == 0;
        }
    }
    EXPECT_EQ(n / 4, lost);

    // the hand cleared the bits it passed: without new hits, those go too
    // (within two turns: entries sit in their home slots, so the ones the
    // hand had not reached yet are passed once more, clearing their bits)
    for (uint32_t k = 0; k < 2 * n; k++) {
        ASSERT_EQ(0, put(s.c, hash_of(2 * n + k), blob_of(k, 10), 1002));
    }
    for (uint32_t i = 0; i < n / 2; i++) {
        EXPECT_EQ(0, ak_cache_peek(s.c, hash_of(i).b)) << i;
    }

    // an expired entry goes first, even when it was used
    Small e;
    uint64_t late = kTtl + kStale + 1000;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t t = i == n / 2 ? 1000 : late - 10;
        ASSERT_EQ(0, put(e.c, hash_of(i), blob_of(i, 10), t));
    }
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_NE(AK_CACHE_MISS, look(e.c, hash_of(i), late - 20).rc) << i;
    }
    ASSERT_EQ(0, put(e.c, hash_of(5000), blob_of(5000, 10), late));
    EXPECT_EQ(0, ak_cache_peek(e.c, hash_of(n / 2).b));
    EXPECT_EQ(1u, stats(e.c).evictions);

    // a big blob evicts as many entries as it needs slots
    uint64_t ev = stats(s.c).evictions;
    Bytes big = blob_of(999, 1000);
    ASSERT_EQ(0, put(s.c, hash_of(999), big, 1007));
    EXPECT_EQ(ev + slots_for(1000), stats(s.c).evictions);
    EXPECT_EQ(big, look(s.c, hash_of(999), 1008).blob);
    EXPECT_EQ(0u, stats(s.c).slots_free);
}

TEST(Cache, PositiveInsertTakesUnusedEntriesOfEitherKind)
{
    Small s;
    uint32_t n = stats(s.c).slots_total;
    uint32_t neg = 4;

    for (uint32_t i = 0; i < neg; i++) {
        ASSERT_EQ(0, put_neg(s.c, hash_of(1000 + i), 0));
    }
    for (uint32_t i = 0; i < n - neg; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(i), blob_of(i, 8), 10));
    }
    ASSERT_EQ(0u, stats(s.c).slots_free);

    // every positive used, the negatives not: a negative goes
    for (uint32_t i = 0; i < n - neg; i++) {
        ASSERT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(i), 20).rc);
    }
    ASSERT_EQ(0, put(s.c, hash_of(5000), blob_of(5000, 8), 100));
    EXPECT_EQ(neg - 1, stats(s.c).negative_entries);
    EXPECT_EQ(n - neg + 1, stats(s.c).entries);

    // past negative_ttl: expired negatives go before the positives (whose
    // bits the hand cleared)
    uint64_t t = kNegTtl + 1;
    ASSERT_EQ(0, put(s.c, hash_of(5001), blob_of(5001, 8), t));
    EXPECT_EQ(neg - 2, stats(s.c).negative_entries);
    EXPECT_EQ(n - neg + 2, stats(s.c).entries);

    // no positive at all left to evict: live negatives are taken
    Small s2;
    const uint32_t cap = stats(s2.c).slots_total / 4;   // negative_max 25%
    for (uint32_t i = 0; i < cap; i++) {
        ASSERT_EQ(0, put_neg(s2.c, hash_of(2000 + i), 0));
    }
    Bytes big = blob_of(1, AK_RECORD_MAX);
    // fill everything else with one huge blob + small ones, then replace
    uint32_t total = stats(s2.c).slots_total;
    ASSERT_EQ(cap, total - stats(s2.c).slots_free);
    ASSERT_EQ(0, put(s2.c, hash_of(1), big, 1));
    for (uint32_t i = 0; stats(s2.c).slots_free > 0; i++) {
        ASSERT_EQ(0, put(s2.c, hash_of(3000 + i), blob_of(i, 4), 1));
    }
    ASSERT_EQ(cap, stats(s2.c).negative_entries);
    EXPECT_EQ(0, ak_cache_remove(s2.c, hash_of(424242).b));
    ASSERT_EQ(0, put(s2.c, hash_of(1), big, 2));    // same size: no eviction
    EXPECT_EQ(cap, stats(s2.c).negative_entries);
}

TEST(Cache, NegativeFloodKeepsEveryPositive)
{
    for (uint32_t fill_pct : {50u, 75u, 100u}) {
        Small s(25, ak_cache_min_size() * 16);
        uint32_t n = stats(s.c).slots_total;
        uint32_t npos = (uint32_t) ((uint64_t) n * fill_pct / 100);

        for (uint32_t i = 0; i < npos; i++) {
            ASSERT_EQ(0, put(s.c, hash_of(i), blob_of(i, 30), 0));
        }

        std::mt19937_64 rng(fill_pct);
        for (uint32_t i = 0; i < 10 * n; i++) {
            ASSERT_EQ(0, put_neg(s.c, hash_of(rng() | (1ULL << 63)), i / 16));
        }

        ak_cache_stats_t st = stats(s.c);
        EXPECT_EQ(npos, st.entries) << fill_pct;
        EXPECT_LE(st.negative_entries, n * 25 / 100) << fill_pct;
        for (uint32_t i = 0; i < npos; i++) {
            ASSERT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(i), 1000).rc)
                << "positive " << i << " lost at fill " << fill_pct;
        }
    }
}

TEST(Cache, NegativeCapEvictsOldestNegative)
{
    for (uint32_t pct : {1u, 10u, 25u, 100u}) {
        Small s(pct, ak_cache_min_size() * 4);
        uint32_t n = stats(s.c).slots_total;
        uint32_t cap = std::max<uint32_t>(1, n * pct / 100);

        for (uint32_t i = 0; i < 10 * n; i++) {
            ASSERT_EQ(0, put_neg(s.c, hash_of(i), 0));
            ASSERT_LE(stats(s.c).negative_entries, cap);
        }
        ak_cache_stats_t st = stats(s.c);
        EXPECT_EQ(cap, st.negative_entries) << pct;
        EXPECT_EQ(10 * n - cap, st.evictions) << pct;
        EXPECT_EQ(n - cap, st.slots_free) << pct;

        // the newest cap keys are there, the one before is not
        for (uint32_t i = 10 * n - cap; i < 10 * n; i++) {
            ASSERT_EQ(AK_CACHE_NEGATIVE, look(s.c, hash_of(i), 1).rc);
        }
        EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(10 * n - cap - 1), 1).rc);
    }

    // lookups refresh negatives too
    Small s(10);
    uint32_t cap = stats(s.c).slots_total / 10;
    for (uint32_t i = 0; i < cap; i++) {
        ASSERT_EQ(0, put_neg(s.c, hash_of(i), 0));
    }
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, hash_of(0), 1).rc);
    ASSERT_EQ(0, put_neg(s.c, hash_of(cap), 2));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, hash_of(0), 3).rc);
    // one unreferenced negative went (which one: the hand's order over
    // their home slots)
    uint32_t gone = 0;
    for (uint32_t i = 1; i < cap; i++) {
        gone += look(s.c, hash_of(i), 3).rc == AK_CACHE_MISS;
    }
    EXPECT_EQ(1u, gone);
}

TEST(Cache, NegativeNeverEvictsLivePositive)
{
    Small s;
    uint32_t n = stats(s.c).slots_total;
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(i), blob_of(i, 5), 0));
    }
    EXPECT_EQ(0, put_neg(s.c, hash_of(10000), 1));
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(10000), 1).rc);
    EXPECT_EQ(n, stats(s.c).entries);

    // a positive past ttl + stale is dead weight: it may make room
    uint64_t t = kTtl + kStale;
    EXPECT_EQ(0, put_neg(s.c, hash_of(10000), t));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, hash_of(10000), t).rc);
    EXPECT_EQ(n - 1, stats(s.c).entries);
}

TEST(Cache, TtlStaleMissTransitions)
{
    Small s;
    Hash h = hash_of(1);
    Bytes b = blob_of(1, 25);
    uint64_t t0 = 5000000;
    ASSERT_EQ(0, put(s.c, h, b, t0));

    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, h, t0 - 10).rc);   // clock skew
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, h, t0 + kTtl - 1).rc);
    Result r = look(s.c, h, t0 + kTtl);
    EXPECT_EQ(AK_CACHE_STALE, r.rc);
    EXPECT_EQ(b, r.blob);
    EXPECT_EQ(AK_CACHE_STALE, look(s.c, h, t0 + kTtl + kStale - 1).rc);
    EXPECT_EQ(1u, stats(s.c).entries);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, t0 + kTtl + kStale).rc);
    // a lookup (a reader) leaves it for a writer to remove
    EXPECT_EQ(1u, stats(s.c).entries);
    EXPECT_EQ(1, ak_cache_peek(s.c, h.b));

    ak_cache_stats_t st = stats(s.c);
    EXPECT_EQ(2u, st.hits);
    EXPECT_EQ(2u, st.stale_hits);
    EXPECT_EQ(1u, st.misses);

    // a re-read makes it FRESH again
    ASSERT_EQ(0, put(s.c, h, b, t0 + kTtl));
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, h, t0 + kTtl + 1).rc);

    // negative_ttl
    Hash n = hash_of(2);
    ASSERT_EQ(0, put_neg(s.c, n, t0));
    r = look(s.c, n, t0 + kNegTtl - 1);
    EXPECT_EQ(AK_CACHE_NEGATIVE, r.rc);
    EXPECT_EQ(1u, stats(s.c).negative_hits);
    EXPECT_EQ(1u, stats(s.c).negative_entries);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, n, t0 + kNegTtl).rc);
    EXPECT_EQ(1u, stats(s.c).negative_entries);
    EXPECT_EQ(2, ak_cache_peek(s.c, n.b));

    // set_conf changes the ttls of entries already cached
    ak_cache_conf_t cf = conf();
    cf.ttl_ms = 10;
    cf.stale_ms = 0;
    ak_cache_set_conf(s.c, &cf);
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, h, t0 + kTtl + 9).rc);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, t0 + kTtl + 10).rc);
}

TEST(Cache, NewGenerationMakesEverythingStale)
{
    Small s;
    for (uint64_t i = 0; i < 10; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(i), blob_of(i, 40), 100));
    }
    ASSERT_EQ(0, put_neg(s.c, hash_of(100), 100));
    uint64_t seq = ak_cache_event_seq(s.c);

    ak_cache_new_generation(s.c);
    EXPECT_GT(ak_cache_event_seq(s.c), seq);

    for (uint64_t i = 0; i < 10; i++) {
        Result r = look(s.c, hash_of(i), 101);
        EXPECT_EQ(AK_CACHE_STALE, r.rc);
        EXPECT_EQ(blob_of(i, 40), r.blob);
    }
    // a negative cannot be stale: it must be read again
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(100), 101).rc);

    // a read sent before the new generation is still stale ...
    ASSERT_EQ(0, ak_cache_put(s.c, hash_of(1).b, blob_of(1, 40).data(), 40,
                              102, seq));
    EXPECT_EQ(AK_CACHE_STALE, look(s.c, hash_of(1), 103).rc);
    // ... a read sent after it is FRESH
    ASSERT_EQ(0, put(s.c, hash_of(1), blob_of(1, 40), 104));
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(1), 105).rc);
    EXPECT_EQ(AK_CACHE_STALE, look(s.c, hash_of(2), 105).rc);
    // stale entries still expire at ttl + stale
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(2), 100 + kTtl + kStale).rc);
}

TEST(Cache, OutdatedSeqStoresStaleAndDropsNegatives)
{
    Small s;
    uint64_t seq = ak_cache_event_seq(s.c);

    // an event for some other key arrives while the reads are under way
    EXPECT_EQ(0, ak_cache_revoke(s.c, hash_of(99).b));
    EXPECT_EQ(seq + 1, ak_cache_event_seq(s.c));

    ASSERT_EQ(0, ak_cache_put(s.c, hash_of(1).b, blob_of(1, 10).data(), 10,
                              10, seq));
    Result r = look(s.c, hash_of(1), 11);
    EXPECT_EQ(AK_CACHE_STALE, r.rc);
    EXPECT_EQ(blob_of(1, 10), r.blob);

    EXPECT_EQ(0, ak_cache_put_negative(s.c, hash_of(2).b, 10, seq));
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(2), 11).rc);
    EXPECT_EQ(0u, stats(s.c).negative_entries);

    // an outdated "no such key" leaves a newer positive entry alone
    ASSERT_EQ(0, put(s.c, hash_of(3), blob_of(3, 10), 10));
    EXPECT_EQ(0, ak_cache_put_negative(s.c, hash_of(3).b, 12, seq));
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(3), 13).rc);

    // every event kind advances the sequence
    uint64_t q = ak_cache_event_seq(s.c);
    ak_cache_remove(s.c, hash_of(12345).b);
    EXPECT_EQ(q + 1, ak_cache_event_seq(s.c));
    ak_cache_flush(s.c);
    EXPECT_EQ(q + 2, ak_cache_event_seq(s.c));
    ak_cache_new_generation(s.c);
    EXPECT_EQ(q + 3, ak_cache_event_seq(s.c));
    ak_cache_revoke(s.c, hash_of(12345).b);
    EXPECT_EQ(q + 4, ak_cache_event_seq(s.c));
    // puts and lookups do not
    put(s.c, hash_of(4), blob_of(4, 4), 20);
    put_neg(s.c, hash_of(5), 20);
    look(s.c, hash_of(4), 20);
    EXPECT_EQ(q + 4, ak_cache_event_seq(s.c));
}

TEST(Cache, PositiveReplacesNegativeAndBack)
{
    Small s;
    Hash h = hash_of(1);
    uint32_t total = stats(s.c).slots_total;

    ASSERT_EQ(0, put_neg(s.c, h, 0));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, h, 1).rc);

    // the key was created: the negative entry is converted
    Bytes b = blob_of(1, 300);
    ASSERT_EQ(0, put(s.c, h, b, 2));
    Result r = look(s.c, h, 3);
    EXPECT_EQ(AK_CACHE_FRESH, r.rc);
    EXPECT_EQ(b, r.blob);
    EXPECT_EQ(1u, stats(s.c).entries);
    EXPECT_EQ(0u, stats(s.c).negative_entries);
    EXPECT_EQ(total - slots_for(300), stats(s.c).slots_free);

    // the key was deleted: the positive entry is replaced
    ASSERT_EQ(0, put_neg(s.c, h, 4));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, h, 5).rc);
    EXPECT_EQ(0u, stats(s.c).entries);
    EXPECT_EQ(1u, stats(s.c).negative_entries);
    EXPECT_EQ(total - 1, stats(s.c).slots_free);
    EXPECT_EQ(nullptr, ak_cache_state(s.c, r.slot, h.b));

    // a repeated negative refreshes its time
    ASSERT_EQ(0, put_neg(s.c, h, 4000));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, h, 4000 + kNegTtl - 1).rc);
    EXPECT_EQ(1u, stats(s.c).negative_entries);
}

TEST(Cache, RevokeFlagReturnedAndClearedByPut)
{
    Small s;
    Hash h = hash_of(1);
    ASSERT_EQ(0, put(s.c, h, blob_of(1, 10), 0));

    EXPECT_EQ(1, ak_cache_revoke(s.c, h.b));
    Result r = look(s.c, h, 1);
    EXPECT_EQ(AK_CACHE_FRESH, r.rc);     // denies without Redis
    EXPECT_EQ((uint32_t) AK_ENTRY_REVOKED, r.flags);
    EXPECT_EQ(AK_CACHE_STALE, look(s.c, h, kTtl).rc);
    EXPECT_EQ((uint32_t) AK_ENTRY_REVOKED, look(s.c, h, kTtl).flags);

    // a read sent before the revoke does not clear it
    uint64_t old = ak_cache_event_seq(s.c) - 1;
    ASSERT_EQ(0, ak_cache_put(s.c, h.b, blob_of(1, 10).data(), 10, 2, old));
    EXPECT_EQ((uint32_t) AK_ENTRY_REVOKED, look(s.c, h, 3).flags);

    // a read sent after it does
    ASSERT_EQ(0, put(s.c, h, blob_of(1, 10, 1), 4));
    r = look(s.c, h, 5);
    EXPECT_EQ(AK_CACHE_FRESH, r.rc);
    EXPECT_EQ(0u, r.flags);

    EXPECT_EQ(0, ak_cache_revoke(s.c, hash_of(2).b));   // not cached
    ASSERT_EQ(0, put_neg(s.c, hash_of(3), 6));
    EXPECT_EQ(0, ak_cache_revoke(s.c, hash_of(3).b));   // negative
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, hash_of(3), 7).rc);
}

// A record that only its texts describe is stored with AK_ENTRY_PLAIN, one
// of texts and a rate with AK_ENTRY_RATED (the glue's fast paths); any
// other with neither, and a put replaces the flag.
TEST(Cache, PlainFlagFollowsTheRecord)
{
    Small s;
    Hash h = hash_of(1);
    auto plain = aktest::build({ { "owner", "acme" }, { "plan", "pro" } });
    auto rated = aktest::build({ { "owner", "acme" }, { "rate", "5/s" } });
    ASSERT_GT(plain.len, 0);
    ASSERT_GT(rated.len, 0);

    ASSERT_EQ(0, put(s.c, h, plain.blob, 0));
    Result r = look(s.c, h, 1);
    EXPECT_EQ(AK_CACHE_FRESH, r.rc);
    EXPECT_EQ((uint32_t) AK_ENTRY_PLAIN, r.flags);
    EXPECT_EQ((uint32_t) AK_ENTRY_PLAIN, look(s.c, h, kTtl).flags);  // stale

    // revoked: both, and the glue's check ((PLAIN | REVOKED) == PLAIN) fails
    EXPECT_EQ(1, ak_cache_revoke(s.c, h.b));
    EXPECT_EQ((uint32_t) (AK_ENTRY_PLAIN | AK_ENTRY_REVOKED),
              look(s.c, h, 2).flags);

    // the record gains a rate: no longer plain but rated (and the revoke
    // is cleared)
    ASSERT_EQ(0, put(s.c, h, rated.blob, 3));
    EXPECT_EQ((uint32_t) AK_ENTRY_RATED, look(s.c, h, 4).flags);

    // and back; a read older than an event keeps its revoke, not its plain
    ASSERT_EQ(0, put(s.c, h, plain.blob, 5));
    EXPECT_EQ((uint32_t) AK_ENTRY_PLAIN, look(s.c, h, 6).flags);
    EXPECT_EQ(1, ak_cache_revoke(s.c, h.b));
    uint64_t old = ak_cache_event_seq(s.c) - 1;
    ASSERT_EQ(0, ak_cache_put(s.c, h.b, rated.blob.data(), rated.blob.size(),
                              7, old));
    EXPECT_EQ((uint32_t) (AK_ENTRY_REVOKED | AK_ENTRY_RATED),
              look(s.c, h, 8).flags);

    // texts and a rate: AK_ENTRY_RATED
    ASSERT_EQ(0, put(s.c, h, rated.blob, 9));
    EXPECT_EQ((uint32_t) AK_ENTRY_RATED, look(s.c, h, 9).flags);
    EXPECT_EQ(1, ak_cache_revoke(s.c, h.b));
    EXPECT_EQ((uint32_t) (AK_ENTRY_RATED | AK_ENTRY_REVOKED),
              look(s.c, h, 9).flags);
    ASSERT_EQ(0, put(s.c, h, plain.blob, 9));
    EXPECT_EQ((uint32_t) AK_ENTRY_PLAIN, look(s.c, h, 9).flags);

    // blobs that are not records at all: never plain
    ASSERT_EQ(0, put(s.c, hash_of(2), blob_of(2, 20), 9));
    EXPECT_EQ(0u, look(s.c, hash_of(2), 10).flags);
}

// ak_cache_lookup_kept: a record kept with its mark is not copied again
// while the entry holds that store's record; any store (even of the same
// bytes) gives a new mark; another key's or another cache's mark never
// matches; plain and rated records have none.
TEST(Cache, KeptLookupSkipsTheCopyOfTheSameStore)
{
    Small s, t;
    ASSERT_NE(nullptr, s.c);
    ASSERT_NE(nullptr, t.c);
    Hash h = hash_of(1), g = hash_of(2);
    Bytes b = blob_of(1, 250), b2 = blob_of(1, 250, 1);
    unsigned char buf[AK_RECORD_MAX + 8];

    auto kept = [&](ak_cache_t *c, const Hash &k, uint64_t mark,
                    uint64_t now) {
        ak_cache_found_t f;
        memset(buf, 0xa5, sizeof(buf));
        f.mark = mark;
        f.kept = nullptr;
        f.len = 0;
        f.flags = 0xdead;
        f.slot = 0xdead;
        int rc = ak_cache_lookup_kept(c, k.b, now, buf, sizeof(buf), &f);
        return std::make_pair(rc, f);
    };

    ASSERT_EQ(0, put(s.c, h, b, 1000));
    ASSERT_EQ(0, put(t.c, h, b, 1000));     // the same store in another cache
    ASSERT_EQ(0, put(s.c, g, b, 1000));

    // no mark known: copied, a mark given
    auto r = kept(s.c, h, 0, 1001);
    EXPECT_EQ(AK_CACHE_FRESH, r.first);
    EXPECT_EQ(0u, r.second.flags);
    EXPECT_EQ(b.size(), r.second.len);
    EXPECT_EQ(0, memcmp(buf, b.data(), b.size()));
    uint64_t m = r.second.mark;
    EXPECT_NE(0u, m);

    // known: not copied, the same answer otherwise
    r = kept(s.c, h, m, 1002);
    EXPECT_EQ(AK_CACHE_FRESH, r.first);
    EXPECT_EQ((uint32_t) AK_ENTRY_KEPT, r.second.flags);
    EXPECT_EQ(b.size(), r.second.len);
    EXPECT_EQ(m, r.second.mark);
    EXPECT_EQ(0xa5, buf[0]);
    EXPECT_EQ(look(s.c, h, 1002).slot, r.second.slot);

    // counted as hits
    EXPECT_EQ(2u + 1u, stats(s.c).hits);

    // another key's entry, another cache's entry of the same key: copied
    r = kept(s.c, g, m, 1003);
    EXPECT_EQ(0u, r.second.flags);
    EXPECT_NE(m, r.second.mark);
    EXPECT_EQ(0, memcmp(buf, b.data(), b.size()));
    r = kept(t.c, h, m, 1003);
    EXPECT_EQ(AK_CACHE_FRESH, r.first);
    EXPECT_EQ(0u, r.second.flags);
    EXPECT_NE(m, r.second.mark);

    // a revoke changes the flags, not the record: still kept, revoked
    EXPECT_EQ(1, ak_cache_revoke(s.c, h.b));
    r = kept(s.c, h, m, 1004);
    EXPECT_EQ((uint32_t) (AK_ENTRY_KEPT | AK_ENTRY_REVOKED), r.second.flags);

    // stored again, with the same bytes in the same millisecond: a new
    // mark, copied
    ASSERT_EQ(0, put(s.c, h, b, 1004));
    r = kept(s.c, h, m, 1004);
    EXPECT_EQ(0u, r.second.flags);
    EXPECT_NE(m, r.second.mark);
    EXPECT_EQ(0, memcmp(buf, b.data(), b.size()));
    m = r.second.mark;

    // other bytes: copied
    ASSERT_EQ(0, put(s.c, h, b2, 1005));
    r = kept(s.c, h, m, 1005);
    EXPECT_EQ(0u, r.second.flags);
    EXPECT_EQ(0, memcmp(buf, b2.data(), b2.size()));
    m = r.second.mark;
    EXPECT_EQ((uint32_t) AK_ENTRY_KEPT, kept(s.c, h, m, 1006).second.flags);

    // stale: still kept, answered STALE
    r = kept(s.c, h, m, 1005 + kTtl);
    EXPECT_EQ(AK_CACHE_STALE, r.first);
    EXPECT_EQ((uint32_t) AK_ENTRY_KEPT, r.second.flags);

    // past stale, removed, flushed: a miss, no mark
    r = kept(s.c, h, m, 1005 + kTtl + kStale);
    EXPECT_EQ(AK_CACHE_MISS, r.first);
    EXPECT_EQ(0u, r.second.mark);
    ASSERT_EQ(1, ak_cache_remove(s.c, h.b));
    EXPECT_EQ(AK_CACHE_MISS, kept(s.c, h, m, 1007).first);
    ASSERT_EQ(0, put(s.c, h, b2, 1008));
    m = kept(s.c, h, 0, 1008).second.mark;
    ak_cache_flush(s.c);
    EXPECT_EQ(AK_CACHE_MISS, kept(s.c, h, m, 1009).first);

    // stored again after the flush in the same millisecond as before it:
    // the count of stores goes on, a new mark
    ASSERT_EQ(0, put(s.c, h, b2, 1008));
    r = kept(s.c, h, m, 1008);
    EXPECT_EQ(AK_CACHE_FRESH, r.first);
    EXPECT_EQ(0u, r.second.flags);
    EXPECT_NE(m, r.second.mark);
    m = r.second.mark;

    // a new generation: STALE, still that store
    ak_cache_new_generation(s.c);
    r = kept(s.c, h, m, 1009);
    EXPECT_EQ(AK_CACHE_STALE, r.first);
    EXPECT_EQ((uint32_t) AK_ENTRY_KEPT, r.second.flags);

    // stored stale (an event arrived while it was read): STALE, a new mark
    uint64_t sent = ak_cache_event_seq(s.c);   // the read is sent
    (void) ak_cache_revoke(s.c, g.b);           // an event meanwhile
    ASSERT_GT(ak_cache_event_seq(s.c), sent);
    ASSERT_EQ(0, ak_cache_put(s.c, h.b, b2.data(), b2.size(), 1010, sent));
    r = kept(s.c, h, m, 1010);
    EXPECT_EQ(AK_CACHE_STALE, r.first);
    EXPECT_EQ(0u, r.second.flags);
    EXPECT_NE(m, r.second.mark);
    EXPECT_EQ((uint32_t) AK_ENTRY_KEPT,
              kept(s.c, h, r.second.mark, 1010).second.flags);

    // plain and rated records: no mark, always copied
    auto plain = aktest::build({ { "owner", "acme" }, { "plan", "pro" } });
    auto rated = aktest::build({ { "owner", "acme" }, { "rate", "5/s" } });
    for (const Bytes *x : { &plain.blob, &rated.blob }) {
        ASSERT_EQ(0, put(s.c, h, *x, 2000));
        r = kept(s.c, h, 0, 2000);
        EXPECT_EQ(AK_CACHE_FRESH, r.first);
        EXPECT_EQ(0u, r.second.mark);
        EXPECT_EQ(0, memcmp(buf, x->data(), x->size()));
    }

    // bad arguments
    ak_cache_found_t f = {};
    EXPECT_EQ(AK_CACHE_MISS, ak_cache_lookup_kept(nullptr, h.b, 0, buf,
                                                  sizeof(buf), &f));
    EXPECT_EQ(AK_CACHE_MISS, ak_cache_lookup_kept(s.c, h.b, 0, buf,
                                                  sizeof(buf), nullptr));
}

// ak_cache_lookup_kept with what ak_cache_keep noted: while the cache's
// count of writes stays where it was (no writer changed an entry since)
// and the entry is fresh, the kept record is taken as it is, the entry not
// even read; every writer that may change an entry moves the count on, a
// writer of limit states alone does not; another key, another cache, the
// end of the entry's freshness: the entry is read again.
TEST(Cache, KeptRecordUnchangedSinceItsLookup)
{
    Small s, t;
    ASSERT_NE(nullptr, s.c);
    ASSERT_NE(nullptr, t.c);
    Hash h = hash_of(1), g = hash_of(2), x = hash_of(3);
    Bytes b = blob_of(1, 250);
    unsigned char buf[AK_RECORD_MAX + 8];
    ak_cache_kept_t k;
    ak_cache_found_t f;

    memset(&k, 0, sizeof(k));

    auto kept = [&](ak_cache_t *c, const Hash &key, uint64_t now) {
        memset(&f, 0, sizeof(f));
        f.kept = &k;
        memset(buf, 0xa5, sizeof(buf));
        return ak_cache_lookup_kept(c, key.b, now, buf, sizeof(buf), &f);
    };

    ASSERT_EQ(0, put(s.c, h, b, 1000));
    ASSERT_EQ(0, put(s.c, g, b, 1000));
    ASSERT_EQ(0, put(t.c, h, b, 1000));     // (t's count of writes: s's)
    ASSERT_EQ(0, put(t.c, g, b, 1000));

    // nothing kept yet: read and copied; then kept
    EXPECT_EQ(AK_CACHE_FRESH, kept(s.c, h, 1001));
    EXPECT_EQ(0u, f.flags);
    EXPECT_EQ(0, memcmp(buf, b.data(), b.size()));
    EXPECT_EQ(0u, f.writes & 1);
    EXPECT_EQ(1000 + kTtl, f.until);
    EXPECT_NE(0u, f.mark);
    ak_cache_keep(s.c, &k, h.b, &f);
    const uint64_t w = f.writes, m = f.mark;
    const uint32_t slot = f.slot;
    EXPECT_EQ(m, k.mark);

    // unchanged since: the entry is not read (its key bytes, changed
    // behind the cache's back, go unseen), a hit is counted
    unsigned char *block = static_cast<unsigned char *>(s.block.mem());
    unsigned char *e = std::search(block, block + s.block.size, h.b,
                                   h.b + AK_HASH_LEN);
    ASSERT_NE(block + s.block.size, e);
    e[5] ^= 1;
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, 1002).rc);
    uint64_t hits = stats(s.c).hits;
    EXPECT_EQ(AK_CACHE_FRESH, kept(s.c, h, 1002));
    EXPECT_EQ((uint32_t) AK_ENTRY_KEPT, f.flags);
    EXPECT_EQ(0xa5, buf[0]);
    EXPECT_EQ(b.size(), f.len);
    EXPECT_EQ(slot, f.slot);
    EXPECT_EQ(m, f.mark);
    EXPECT_EQ(w, f.writes);
    EXPECT_EQ(hits + 1, stats(s.c).hits);
    e[5] ^= 1;

    // another key (with h's kept record), the same key in another cache:
    // read, copied, h's kept record left as it was
    ak_cache_kept_t before = k;
    EXPECT_EQ(AK_CACHE_FRESH, kept(s.c, g, 1002));
    EXPECT_EQ(0u, f.flags);
    EXPECT_EQ(0, memcmp(buf, b.data(), b.size()));
    EXPECT_EQ(AK_CACHE_FRESH, kept(t.c, h, 1002));
    EXPECT_EQ(0u, f.flags);
    EXPECT_EQ(0, memcmp(buf, b.data(), b.size()));
    EXPECT_EQ(w, f.writes);     // (the same count: the salt tells them apart)
    EXPECT_EQ(0, memcmp(&before, &k, sizeof(k)));

    // each writer that may change an entry (here: another key's) moves
    // the count on by 2: the entry is read again, found of the kept store
    // by its mark, and the count kept from then on; a writer of limit
    // states alone leaves it
    ak_cache_conf_t cf = conf();
    uint32_t xslot = 0;
    struct Op {
        const char *what;
        std::function<void()> run;
        uint64_t moves;
    } ops[] = {
        { "put", [&] { ASSERT_EQ(0, put(s.c, x, b, 1003)); }, 2 },
        { "put again", [&] { ASSERT_EQ(0, put(s.c, x, b, 1003)); }, 2 },
        { "revoke", [&] { EXPECT_EQ(1, ak_cache_revoke(s.c, x.b)); }, 2 },
        { "state", [&] {
              EXPECT_NE(nullptr, ak_cache_state_find(s.c, x.b, &xslot));
              EXPECT_NE(nullptr, ak_cache_state(s.c, xslot, x.b));
          }, 0 },
        { "remove", [&] { EXPECT_EQ(1, ak_cache_remove(s.c, x.b)); }, 2 },
        { "negative", [&] { ASSERT_EQ(0, put_neg(s.c, x, 1003)); }, 2 },
        { "bad", [&] {
              ASSERT_EQ(0, ak_cache_put_bad(s.c, x.b, 1003,
                                            ak_cache_event_seq(s.c), 9));
          }, 2 },
        { "configuration", [&] { ak_cache_set_conf(s.c, &cf); }, 2 },
        { "a miss's look under the lock", [&] {
              EXPECT_EQ(0, ak_cache_recover(s.block.mem(), s.block.size));
          }, 0 },
    };
    uint64_t now = w;
    for (Op &op : ops) {
        SCOPED_TRACE(op.what);
        ASSERT_EQ(AK_CACHE_FRESH, kept(s.c, h, 1003));
        ASSERT_EQ((uint32_t) AK_ENTRY_KEPT, f.flags);
        now = f.writes;
        EXPECT_EQ(now, k.writes);
        op.run();
        e[5] ^= 1;      // (a read now would miss)
        int rc = kept(s.c, h, 1003);
        e[5] ^= 1;
        if (op.moves) {
            EXPECT_EQ(AK_CACHE_MISS, rc);   // read: it saw the change
            EXPECT_EQ(AK_CACHE_FRESH, kept(s.c, h, 1003));
            EXPECT_EQ((uint32_t) AK_ENTRY_KEPT, f.flags);   // by its mark
        } else {
            EXPECT_EQ(AK_CACHE_FRESH, rc);  // not read
        }
        EXPECT_EQ(now + op.moves, f.writes);
        EXPECT_EQ(f.writes, k.writes);
        EXPECT_EQ(0u, f.writes & 1);
    }

    // a revocation of the kept key: read again, revoked, and kept so
    EXPECT_EQ(1, ak_cache_revoke(s.c, h.b));
    EXPECT_EQ(AK_CACHE_FRESH, kept(s.c, h, 1004));
    EXPECT_EQ((uint32_t) (AK_ENTRY_KEPT | AK_ENTRY_REVOKED), f.flags);
    e[5] ^= 1;
    EXPECT_EQ(AK_CACHE_FRESH, kept(s.c, h, 1004));
    EXPECT_EQ((uint32_t) (AK_ENTRY_KEPT | AK_ENTRY_REVOKED), f.flags);
    e[5] ^= 1;

    // fresh until ttl after the store: then read, STALE by its mark, and
    // never unchanged again until stored anew
    EXPECT_EQ(1000 + kTtl, k.until);
    EXPECT_EQ(AK_CACHE_STALE, kept(s.c, h, 1000 + kTtl));
    EXPECT_EQ((uint32_t) (AK_ENTRY_KEPT | AK_ENTRY_REVOKED), f.flags);
    EXPECT_EQ(0u, k.until);

    // a new generation, a flush: read (STALE, then a miss)
    ASSERT_EQ(0, put(s.c, h, b, 5000));
    ASSERT_EQ(AK_CACHE_FRESH, kept(s.c, h, 5001));
    ak_cache_keep(s.c, &k, h.b, &f);
    ASSERT_EQ(AK_CACHE_FRESH, kept(s.c, h, 5001));
    ASSERT_EQ((uint32_t) AK_ENTRY_KEPT, f.flags);
    ak_cache_new_generation(s.c);
    EXPECT_EQ(AK_CACHE_STALE, kept(s.c, h, 5002));
    ak_cache_flush(s.c);
    EXPECT_EQ(AK_CACHE_MISS, kept(s.c, h, 5002));
    EXPECT_EQ(0u, f.mark);

    // nothing kept by a record without a mark, or by none
    auto plain = aktest::build({ { "owner", "acme" }, { "plan", "pro" } });
    ASSERT_EQ(0, put(s.c, h, plain.blob, 6000));
    ASSERT_EQ(AK_CACHE_FRESH, kept(s.c, h, 6001));
    EXPECT_EQ(0u, f.mark);
    ak_cache_keep(s.c, &k, h.b, &f);
    EXPECT_EQ(0u, k.mark);
    EXPECT_EQ(AK_CACHE_FRESH, kept(s.c, h, 6001));
    EXPECT_EQ((uint32_t) AK_ENTRY_PLAIN, f.flags);
    EXPECT_EQ(0, memcmp(buf, plain.blob.data(), plain.blob.size()));
    ak_cache_keep(s.c, &k, h.b, nullptr);
    EXPECT_EQ(0u, k.mark);
    ak_cache_keep(s.c, nullptr, h.b, &f);   // (no crash)

    // without a kept record: the count is not read (odd: nothing to keep)
    memset(&f, 0, sizeof(f));
    EXPECT_EQ(AK_CACHE_FRESH,
              ak_cache_lookup_kept(s.c, h.b, 6001, buf, sizeof(buf), &f));
    EXPECT_EQ(1u, f.writes);

    // a writer of limit states alone that finds the block damaged (another
    // key's entry: its kind byte) empties it: the count moves on all the
    // same, and the kept record is read again (a miss)
    Small u;
    ASSERT_NE(nullptr, u.c);
    ASSERT_EQ(0, put(u.c, h, b, 7000));
    ASSERT_EQ(0, put(u.c, x, b, 7000));
    ASSERT_EQ(AK_CACHE_FRESH, kept(u.c, h, 7001));
    ak_cache_keep(u.c, &k, h.b, &f);
    ASSERT_EQ(AK_CACHE_FRESH, kept(u.c, h, 7001));
    ASSERT_EQ((uint32_t) AK_ENTRY_KEPT, f.flags);
    const uint64_t wu = f.writes;
    unsigned char *ub = static_cast<unsigned char *>(u.block.mem());
    unsigned char *xe = std::search(ub, ub + u.block.size, x.b,
                                    x.b + AK_HASH_LEN);
    ASSERT_NE(ub + u.block.size, xe);
    xe[80 - 32] = 0x7f;     // the entry's kind, 80 bytes into its slot
    uint32_t xs = 0;
    EXPECT_EQ(nullptr, ak_cache_state_find(u.c, x.b, &xs));
    EXPECT_EQ(AK_CACHE_MISS, kept(u.c, h, 7001));
    EXPECT_EQ(wu + 2, f.writes);
}

TEST(Cache, Remove)
{
    Small s;
    uint32_t total = stats(s.c).slots_total;
    ASSERT_EQ(0, put(s.c, hash_of(1), blob_of(1, 500), 0));
    ASSERT_EQ(0, put(s.c, hash_of(2), blob_of(2, 5), 0));
    ASSERT_EQ(0, put_neg(s.c, hash_of(3), 0));

    EXPECT_EQ(1, ak_cache_remove(s.c, hash_of(1).b));
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(1), 1).rc);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(1), 1).rc);   // still
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(2), 1).rc);
    EXPECT_EQ(0, ak_cache_remove(s.c, hash_of(1).b));
    EXPECT_EQ(0, ak_cache_revoke(s.c, hash_of(1).b));       // not usable
    EXPECT_EQ(1, ak_cache_remove(s.c, hash_of(3).b));
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(3), 1).rc);
    EXPECT_EQ(1, ak_cache_remove(s.c, hash_of(2).b));

    // removed positive entries keep their slots (for the limiter state)
    // until re-read, evicted, flushed or replaced by a negative entry; they
    // are not counted as entries
    ak_cache_stats_t st = stats(s.c);
    EXPECT_EQ(0u, st.entries);
    EXPECT_EQ(0u, st.negative_entries);
    EXPECT_EQ(total - slots_for(500) - slots_for(5), st.slots_free);
    EXPECT_EQ(0u, st.evictions);

    // a negative answer (the key was deleted) frees them
    ASSERT_EQ(0, put_neg(s.c, hash_of(1), 2));
    ASSERT_EQ(0, put_neg(s.c, hash_of(2), 2));
    EXPECT_EQ(1, ak_cache_remove(s.c, hash_of(1).b));
    EXPECT_EQ(1, ak_cache_remove(s.c, hash_of(2).b));
    st = stats(s.c);
    EXPECT_EQ(0u, st.entries);
    EXPECT_EQ(0u, st.negative_entries);
    EXPECT_EQ(total, st.slots_free);

    // a re-read makes a removed entry an entry again
    ASSERT_EQ(0, put(s.c, hash_of(4), blob_of(4, 5), 3));
    EXPECT_EQ(1, ak_cache_remove(s.c, hash_of(4).b));
    EXPECT_EQ(0u, stats(s.c).entries);
    ASSERT_EQ(0, put(s.c, hash_of(4), blob_of(4, 5), 3));
    EXPECT_EQ(1u, stats(s.c).entries);
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(4), 4).rc);
    ak_cache_flush(s.c);
    EXPECT_EQ(total, stats(s.c).slots_free);
}

TEST(Cache, Flush)
{
    Small s(25, ak_cache_min_size() * 8);
    uint32_t total = stats(s.c).slots_total;
    for (uint64_t i = 0; i < 100; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(i), blob_of(i, 1 + i * 7), 0));
        ASSERT_EQ(0, put_neg(s.c, hash_of(1000 + i), 0));
    }
    look(s.c, hash_of(1), 1);
    uint64_t hits = stats(s.c).hits;

    ak_cache_flush(s.c);
    ak_cache_stats_t st = stats(s.c);
    EXPECT_EQ(0u, st.entries);
    EXPECT_EQ(0u, st.negative_entries);
    EXPECT_EQ(total, st.slots_free);
    EXPECT_EQ(hits, st.hits);   // counters survive
    for (uint64_t i = 0; i < 100; i++) {
        ASSERT_EQ(AK_CACHE_MISS, look(s.c, hash_of(i), 1).rc);
        ASSERT_EQ(AK_CACHE_MISS, look(s.c, hash_of(1000 + i), 1).rc);
    }

    // fully usable afterwards, up to its whole capacity
    uint64_t ev = stats(s.c).evictions;
    for (uint32_t i = 0; i < total; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(5000 + i), blob_of(i, 3), 2));
    }
    EXPECT_EQ(ev, stats(s.c).evictions);
    EXPECT_EQ(total, stats(s.c).entries);
}

TEST(Cache, BigBlobsRoundTripAndFreeTheirChains)
{
    Small s(25, ak_cache_min_size() * 8);
    uint32_t total = stats(s.c).slots_total;
    const size_t sizes[] = {1, 35, 36, 37, 100, 151, 152, 153, 268, 1000,
                            4095, AK_RECORD_MAX};

    for (size_t len : sizes) {
        Hash h = hash_of(len);
        Bytes b = blob_of(len, len);
        ASSERT_EQ(0, put(s.c, h, b, 0)) << len;
        EXPECT_EQ(total - slots_for(len), stats(s.c).slots_free) << len;
        Result r = look(s.c, h, 1);
        ASSERT_EQ(AK_CACHE_FRESH, r.rc) << len;
        EXPECT_EQ(b, r.blob) << len;
        ak_cache_flush(s.c);
        EXPECT_EQ(total, stats(s.c).slots_free) << len;
    }

    // re-puts grow and shrink the chain in place
    Hash h = hash_of(77);
    for (size_t len : {10, 4096, 100, 1000, 33, 4096, 1}) {
        Bytes b = blob_of(77, len, len);
        ASSERT_EQ(0, put(s.c, h, b, 2)) << len;
        EXPECT_EQ(total - slots_for(len), stats(s.c).slots_free) << len;
        EXPECT_EQ(1u, stats(s.c).entries);
        Result r = look(s.c, h, 3);
        ASSERT_EQ(AK_CACHE_FRESH, r.rc);
        EXPECT_EQ(b, r.blob) << len;
    }

    // many big ones side by side, then all gone by eviction
    for (uint64_t i = 0; i < 50; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(100 + i), blob_of(i, 1000 + i), 4));
    }
    for (uint64_t i = 0; i < 50; i++) {
        Result r = look(s.c, hash_of(100 + i), 5);
        if (r.rc != AK_CACHE_MISS) {
            EXPECT_EQ(blob_of(i, 1000 + i), r.blob);
        }
    }
    // CLOCK gives the big ones (used) a second chance, then they go
    uint32_t last = 0;
    for (uint32_t i = 0; i < 4 * total; i++) {
        ASSERT_EQ(0, put(s.c, hash_of(10000 + i), blob_of(i, 20), 6));
        last = 10000 + i;
    }
    for (uint64_t i = 0; i < 50; i++) {
        EXPECT_EQ(0, ak_cache_peek(s.c, hash_of(100 + i).b)) << i;
    }
    ak_cache_stats_t st = stats(s.c);
    EXPECT_EQ(total, st.entries + st.slots_free);

    // a lookup into a short buffer fails without damage
    size_t len;
    uint32_t flags, slot;
    unsigned char small[8];
    EXPECT_EQ(AK_CACHE_MISS, ak_cache_lookup(s.c, hash_of(last).b, 7, small,
                                             sizeof(small), &len, &flags,
                                             &slot));
    EXPECT_EQ(AK_CACHE_FRESH, look(s.c, hash_of(last), 7).rc);
}

TEST(Cache, KeyStateSurvivesReputAndNotSlotReuse)
{
    Small s;
    Hash h = hash_of(1);
    ASSERT_EQ(0, put(s.c, h, blob_of(1, 10), 0));
    Result r = look(s.c, h, 1);
    ak_key_state_t *st = ak_cache_state(s.c, r.slot, h.b);
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(0u, tat(st));
    set_tat(st, 123456);
    st->q_window = 7;
    st->q_left = 8;
    st->q_used = 9;

    EXPECT_EQ(nullptr, ak_cache_state(s.c, r.slot, hash_of(2).b));
    EXPECT_EQ(nullptr, ak_cache_state(s.c, 0xffffffffu, h.b));
    EXPECT_EQ(nullptr, ak_cache_state(s.c, stats(s.c).slots_total, h.b));

    // re-puts, with chains of other lengths, keep the state
    for (size_t len : {10, 2000, 50, 4}) {
        ASSERT_EQ(0, put(s.c, h, blob_of(1, len, 1), 2));
        r = look(s.c, h, 3);
        st = ak_cache_state(s.c, r.slot, h.b);
        ASSERT_NE(nullptr, st) << len;
        EXPECT_EQ(123456u, tat(st));
        EXPECT_EQ(7u, st->q_window);
        EXPECT_EQ(8u, st->q_left);
        EXPECT_EQ(9u, st->q_used);
    }

    // evicted: the handle is dead, and the slot's new owner starts at zero
    uint32_t old = r.slot;
    uint32_t n = stats(s.c).slots_total;
    uint32_t put_n = 0;
    for (; put_n < 3 * n && ak_cache_peek(s.c, h.b); put_n++) {
        ASSERT_EQ(0, put(s.c, hash_of(100 + put_n), blob_of(put_n, 10), 4));
    }
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, 5).rc);
    EXPECT_EQ(nullptr, ak_cache_state(s.c, old, h.b));
    bool reused = false;
    for (uint32_t i = 0; i < put_n + n; i++) {
        if (i >= put_n) {
            ASSERT_EQ(0, put(s.c, hash_of(100 + i), blob_of(i, 10), 4));
        }
        Result q = look(s.c, hash_of(100 + i), 5);
        if (q.rc == AK_CACHE_FRESH && q.slot == old) {
            reused = true;
            ak_key_state_t *o = ak_cache_state(s.c, old, hash_of(100 + i).b);
            ASSERT_NE(nullptr, o);
            EXPECT_EQ(0u, tat(o));
            EXPECT_EQ(0u, o->q_used);
            break;
        }
    }
    EXPECT_TRUE(reused);

    // back again: a new entry, fresh state
    ASSERT_EQ(0, put(s.c, h, blob_of(1, 10), 6));
    r = look(s.c, h, 6);
    st = ak_cache_state(s.c, r.slot, h.b);
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(0u, tat(st));

    // removed by an update: the state stays (same slot) until re-read
    set_tat(st, 777);
    ak_cache_remove(s.c, h.b);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, 6).rc);
    ASSERT_EQ(st, ak_cache_state(s.c, r.slot, h.b));
    uint32_t where = 0xffffffffu;
    ASSERT_EQ(st, ak_cache_state_find(s.c, h.b, &where));
    EXPECT_EQ(r.slot, where);
    ASSERT_EQ(0, put(s.c, h, blob_of(1, 10), 6));
    r = look(s.c, h, 6);
    st = ak_cache_state(s.c, r.slot, h.b);
    ASSERT_NE(nullptr, st);
    EXPECT_EQ(777u, tat(st));

    // negative -> NULL
    ASSERT_EQ(0, put_neg(s.c, h, 7));
    EXPECT_EQ(nullptr, ak_cache_state_find(s.c, h.b, &where));
    r = look(s.c, h, 7);
    EXPECT_EQ(AK_CACHE_NEGATIVE, r.rc);
    EXPECT_EQ(nullptr, ak_cache_state(s.c, r.slot, h.b));
}

TEST(Cache, AttachCopyAtAnotherAddress)
{
    size_t size = ak_cache_min_size() * 8;
    Block a(size);
    ak_cache_conf_t cf = conf();
    ak_cache_t *c = ak_cache_create(a.mem(), size, &cf);
    ASSERT_NE(nullptr, c);

    for (uint64_t i = 0; i < 100; i++) {
        ASSERT_EQ(0, put(c, hash_of(i), blob_of(i, 1 + (i * 37) % 300), 10));
    }
    for (uint64_t i = 0; i < 20; i++) {
        ASSERT_EQ(0, put_neg(c, hash_of(1000 + i), 10));
    }
    ak_cache_revoke(c, hash_of(99).b);
    Result r = look(c, hash_of(99), 11);
    set_tat(ak_cache_state(c, r.slot, hash_of(99).b), 4242);

    ak_cache_stats_t before = stats(c);
    ASSERT_EQ(0u, before.evictions);
    ASSERT_EQ(100u, before.entries);
    ASSERT_EQ(20u, before.negative_entries);

    Block b(size + 4096);
    void *mem = (char *) b.mem() + 4096;
    memcpy(mem, a.mem(), size);
    memset(a.mem(), 0xa5, size);    // the original is gone

    ak_cache_t *d = ak_cache_attach(mem, size);
    ASSERT_NE(nullptr, d);
    ak_cache_stats_t after = stats(d);
    EXPECT_EQ(0, memcmp(&before, &after, sizeof(before)));

    for (uint64_t i = 0; i < 100; i++) {
        Result q = look(d, hash_of(i), 12);
        EXPECT_EQ(AK_CACHE_FRESH, q.rc);
        EXPECT_EQ(blob_of(i, 1 + (i * 37) % 300), q.blob);
    }
    r = look(d, hash_of(99), 12);
    ASSERT_EQ(AK_CACHE_FRESH, r.rc);
    EXPECT_EQ((uint32_t) AK_ENTRY_REVOKED, r.flags);
    ASSERT_NE(nullptr, ak_cache_state(d, r.slot, hash_of(99).b));
    EXPECT_EQ(4242u, tat(ak_cache_state(d, r.slot, hash_of(99).b)));
    for (uint64_t i = 0; i < 20; i++) {
        EXPECT_EQ(AK_CACHE_NEGATIVE, look(d, hash_of(1000 + i), 12).rc);
    }

    // and keeps working
    ASSERT_EQ(0, put(d, hash_of(5000), blob_of(5000, 3000), 13));
    EXPECT_EQ(blob_of(5000, 3000), look(d, hash_of(5000), 13).blob);

    // ttls come from set_conf after attach
    cf.ttl_ms = 1;
    ak_cache_set_conf(d, &cf);
    EXPECT_EQ(AK_CACHE_STALE, look(d, hash_of(5000), 14).rc);
}

TEST(Cache, AttachRejectsMismatch)
{
    size_t size = ak_cache_min_size() * 4;
    Block a(size + 256);
    ak_cache_conf_t cf = conf();
    ASSERT_NE(nullptr, ak_cache_create(a.mem(), size, &cf));
    std::vector<uint64_t> saved(a.words);

    EXPECT_NE(nullptr, ak_cache_attach(a.mem(), size));
    EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), size - 8));
    EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), size + 8));
    EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), size + 256));
    EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), 16));
    EXPECT_EQ(nullptr, ak_cache_attach(nullptr, size));

    // any damage to the magic or version
    for (size_t byte = 0; byte < 16; byte++) {
        a.words = saved;
        ((unsigned char *) a.mem())[byte] ^= 0x40;
        EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), size)) << byte;
    }

    // zeroes and garbage
    memset(a.mem(), 0, size);
    EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), size));
    std::mt19937_64 rng(1);
    for (auto &w : a.words) {
        w = rng();
    }
    EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), size));
}

TEST(Cache, CapacityOneMillionKeysIn128MiB)
{
    EXPECT_LE(ak_cache_bytes_per_key(), 133u);

    size_t size = (size_t) 128 << 20;
    Block b(size);
    ak_cache_conf_t cf = conf();
    ak_cache_t *c = ak_cache_create(b.mem(), size, &cf);
    ASSERT_NE(nullptr, c);
    ak_cache_stats_t st = stats(c);
    EXPECT_GE(st.slots_total, 1000000u);
    EXPECT_GE((uint64_t) st.slots_total * ak_cache_bytes_per_key(),
              (uint64_t) size - 4096);  // nearly every byte is used

    const uint32_t n = 1000000;
    unsigned char blob[30];
    for (uint32_t i = 0; i < n; i++) {
        memcpy(blob, &i, sizeof(i));
        memset(blob + 4, (int) (i & 0xff), sizeof(blob) - 4);
        ASSERT_EQ(0, ak_cache_put(c, hash_of(i).b, blob, sizeof(blob), 1, 1));
    }
    st = stats(c);
    EXPECT_EQ(n, st.entries);
    EXPECT_EQ(0u, st.evictions);

    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot;
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_EQ(AK_CACHE_FRESH, ak_cache_lookup(c, hash_of(i).b, 2, buf,
                                                  sizeof(buf), &len, &flags,
                                                  &slot));
        uint32_t v;
        memcpy(&v, buf, sizeof(v));
        ASSERT_EQ(i, v);
        ASSERT_EQ(30u, len);
    }
}

// ---------------------------------------------------------------------------
// Randomized operations against a straightforward model of the contract.

namespace {

struct Model {
    struct Entry {
        bool neg;
        Bytes blob;
        uint64_t fetched;
        uint32_t gen;
        bool stored_stale;
        bool revoked;
        bool gone = false;      // removed by an update, kept for its state
        uint64_t tat;
    };

    // Which entry CLOCK evicts is the cache's choice: the model predicts
    // everything else exactly, and after each operation (sync) takes the
    // entries the cache no longer has as evicted, checking that only what
    // may go went (a negative insert never takes a live positive entry).
    uint32_t nslots, neg_max;
    uint64_t ttl, neg_ttl, stale;
    uint64_t seq = 1, gen = 1;
    uint64_t evictions = 0, hits = 0, misses = 0, stale_hits = 0,
             negative_hits = 0, inserts = 0;
    uint32_t ngone = 0;
    std::unordered_map<uint64_t, Entry> map;
    bool pending_neg = false;   // a negative insert the cache may refuse
    uint64_t pending_key = 0;
    bool negative_op = false;   // the last operation stored a negative
    uint64_t now = 0;

    static uint32_t cost(const Entry &e)
    {
        return e.neg ? 1 : slots_for(e.blob.size());
    }

    uint64_t age(const Entry &e, uint64_t t)
    {
        return t > e.fetched ? t - e.fetched : 0;
    }

    bool neg_dead(const Entry &e, uint64_t t)
    {
        return e.gen != gen || age(e, t) >= neg_ttl;
    }

    bool pos_dead(const Entry &e, uint64_t t)
    {
        return age(e, t) >= ttl + stale;
    }

    void drop(uint64_t k)
    {
        Entry &e = map.at(k);
        ngone -= e.gone;
        map.erase(k);
    }

    uint32_t free_slots() const
    {
        uint32_t used = 0;
        for (const auto &kv : map) {
            used += cost(kv.second);
        }
        return nslots - used;
    }

    uint32_t count(bool neg) const
    {
        uint32_t n = 0;
        for (const auto &kv : map) {
            n += kv.second.neg == neg;
        }
        return n;
    }

    int lookup(uint64_t k, uint64_t t, Bytes *blob, bool *revoked,
               uint64_t **tat)
    {
        auto f = map.find(k);
        if (f == map.end()) {
            misses++;
            return AK_CACHE_MISS;
        }
        Entry &e = f->second;
        if (e.neg) {
            if (neg_dead(e, t)) {
                misses++;               // left for a writer to remove
                return AK_CACHE_MISS;
            }
            negative_hits++;
            return AK_CACHE_NEGATIVE;
        }
        if (pos_dead(e, t) || e.gone) {
            misses++;
            return AK_CACHE_MISS;
        }
        *blob = e.blob;
        *revoked = e.revoked;
        *tat = &e.tat;
        if (age(e, t) < ttl && e.gen == gen && !e.stored_stale) {
            hits++;
            return AK_CACHE_FRESH;
        }
        stale_hits++;
        return AK_CACHE_STALE;
    }

    void put(uint64_t k, const Bytes &blob, uint64_t t, uint64_t s)
    {
        bool outdated = s != seq;
        Entry ne;
        ne.neg = false;
        ne.blob = blob;
        ne.fetched = t;
        ne.gen = (uint32_t) gen;
        ne.stored_stale = outdated;
        ne.revoked = false;
        ne.tat = 0;

        auto f = map.find(k);
        if (f != map.end()) {
            Entry &e = f->second;
            if (!e.neg) {
                ne.tat = e.tat;
                ne.revoked = outdated && e.revoked;
            }
            ngone -= e.gone;
            map.erase(f);
        }
        map[k] = ne;
        inserts++;
    }

    void put_negative(uint64_t k, uint64_t t, uint64_t s)
    {
        if (s != seq) {
            return;
        }
        auto f = map.find(k);
        if (f != map.end() && f->second.neg) {
            f->second.fetched = t;
            f->second.gen = (uint32_t) gen;
            inserts++;
            return;
        }
        if (f != map.end()) {
            drop(k);
        }
        Entry ne;
        ne.neg = true;
        ne.fetched = t;
        ne.gen = (uint32_t) gen;
        ne.stored_stale = false;
        ne.revoked = false;
        ne.tat = 0;
        map[k] = ne;
        inserts++;
        pending_neg = true;
        pending_key = k;
        negative_op = true;
        now = t;
    }

    // after the cache did the operation: what it evicted, and whether a
    // negative entry was stored
    void sync(ak_cache_t *c, uint64_t evicted)
    {
        uint64_t gone = 0;
        for (auto it = map.begin(); it != map.end();) {
            int has = ak_cache_peek(c, hash_of(it->first).b);
            if (has != 0) {
                ASSERT_EQ(it->second.neg ? 2 : 1, has) << it->first;
                ++it;
                continue;
            }
            if (pending_neg && it->first == pending_key) {
                inserts--;              // refused: no room for it
                ngone -= it->second.gone;
                it = map.erase(it);
                continue;
            }
            if (negative_op && !it->second.neg) {
                ASSERT_TRUE(pos_dead(it->second, now))
                    << "a negative insert took live positive " << it->first;
            }
            ngone -= it->second.gone;
            it = map.erase(it);
            gone++;
        }
        evictions += gone;
        ASSERT_EQ(evictions, evicted);
        pending_neg = false;
        negative_op = false;
        ASSERT_LE(count(true), neg_max);
    }

    int revoke(uint64_t k)
    {
        seq++;
        auto f = map.find(k);
        if (f == map.end() || f->second.neg) {
            return 0;
        }
        f->second.revoked = true;
        return f->second.gone ? 0 : 1;
    }

    int remove(uint64_t k)
    {
        seq++;
        auto f = map.find(k);
        if (f == map.end()) {
            return 0;
        }
        if (f->second.neg) {
            drop(k);
            return 1;
        }
        if (f->second.gone) {
            return 0;
        }
        f->second.gone = true;
        ngone++;
        return 1;
    }

    void flush()
    {
        seq++;
        map.clear();
        ngone = 0;
    }

    void new_generation()
    {
        seq++;
        gen++;
    }
};

void
check_stats(ak_cache_t *c, const Model &m)
{
    ak_cache_stats_t st = stats(c);
    ASSERT_EQ(m.count(false) - m.ngone, st.entries);
    ASSERT_EQ(m.count(true), st.negative_entries);
    ASSERT_EQ(m.free_slots(), st.slots_free);
    ASSERT_EQ(m.nslots, st.slots_total);
    ASSERT_EQ(m.evictions, st.evictions);
    ASSERT_EQ(m.hits, st.hits);
    ASSERT_EQ(m.misses, st.misses);
    ASSERT_EQ(m.stale_hits, st.stale_hits);
    ASSERT_EQ(m.negative_hits, st.negative_hits);
    ASSERT_EQ(m.inserts, st.inserts);
    ASSERT_EQ(m.seq, ak_cache_event_seq(c));
}

void
run_model(uint64_t seed, size_t size, uint32_t pct, int ops, int keys)
{
    Block b(size);
    ak_cache_conf_t cf = conf(pct);
    cf.ttl_ms = 1000;
    cf.negative_ttl_ms = 300;
    cf.stale_ms = 2000;
    ak_cache_t *c = ak_cache_create(b.mem(), size, &cf);
    ASSERT_NE(nullptr, c);

    Model m;
    m.nslots = stats(c).slots_total;
    m.neg_max = std::max<uint32_t>(1, (uint32_t) ((uint64_t) m.nslots * pct
                                                  / 100));
    m.ttl = cf.ttl_ms;
    m.neg_ttl = cf.negative_ttl_ms;
    m.stale = cf.stale_ms;
    m.seq = ak_cache_event_seq(c);

    std::mt19937_64 rng(seed);
    uint64_t now = 1000;
    uint64_t version = 0;
    std::vector<uint64_t> inflight;     // seqs of "reads under way"
    unsigned char buf[AK_RECORD_MAX];

    for (int op = 0; op < ops; op++) {
        uint64_t k = rng() % keys;
        Hash h = hash_of(k);
        uint32_t what = rng() % 1000;

        now += rng() % 8;

        // a read sent some time ago, maybe before some events
        uint64_t s = m.seq;
        if (rng() % 10 == 0) {
            inflight.push_back(m.seq);
        }
        if (!inflight.empty() && rng() % 10 == 0) {
            s = inflight[rng() % inflight.size()];
            if (inflight.size() > 16) {
                inflight.clear();
            }
        }

        if (what < 450) {
            size_t len, flags_n;
            uint32_t flags, slot;
            Bytes eblob;
            bool erev = false;
            uint64_t *etat = nullptr;
            int want = m.lookup(k, now, &eblob, &erev, &etat);
            int rc = ak_cache_lookup(c, h.b, now, buf, sizeof(buf), &len,
                                     &flags, &slot);
            ASSERT_EQ(want, rc) << "op " << op << " key " << k;
            if (rc == AK_CACHE_FRESH || rc == AK_CACHE_STALE) {
                ASSERT_EQ(eblob, Bytes(buf, buf + len)) << "op " << op;
                flags_n = erev ? AK_ENTRY_REVOKED : 0;
                ASSERT_EQ(flags_n, flags);
                ak_key_state_t *st = ak_cache_state(c, slot, h.b);
                ASSERT_NE(nullptr, st);
                ASSERT_EQ(*etat, st->tat_us & AK_TAT_MASK) << "op " << op;
                *etat = rng() & (AK_TAT_MASK >> 1);
                st->tat_us = (st->tat_us & ~AK_TAT_MASK) | *etat;
            }

        } else if (what < 750) {
            size_t len = rng() % 20 == 0 ? 1 + rng() % AK_RECORD_MAX
                                         : 1 + rng() % 60;
            Bytes blob = blob_of(k, len, ++version);
            m.put(k, blob, now, s);
            ASSERT_EQ(0, ak_cache_put(c, h.b, blob.data(), len, now, s));

        } else if (what < 900) {
            m.put_negative(k, now, s);
            ASSERT_EQ(0, ak_cache_put_negative(c, h.b, now, s));

        } else if (what < 950) {
            ASSERT_EQ(m.revoke(k), ak_cache_revoke(c, h.b));

        } else if (what < 990) {
            ASSERT_EQ(m.remove(k), ak_cache_remove(c, h.b));

        } else if (what < 994) {
            now += rng() % 3000;

        } else if (what < 998) {
            m.new_generation();
            ak_cache_new_generation(c);

        } else {
            m.flush();
            ak_cache_flush(c);
        }

        m.sync(c, stats(c).evictions);
        if (::testing::Test::HasFatalFailure()) {
            return;
        }
        check_stats(c, m);
        if (::testing::Test::HasFatalFailure()) {
            return;
        }
    }
}

} // namespace

TEST(Cache, RandomizedAgainstModel)
{
    run_model(1, ak_cache_min_size() * 4, 25, 100000, 600);
    run_model(2, ak_cache_min_size() * 16, 10, 60000, 5000);
    run_model(3, ak_cache_min_size(), 50, 40000, 200);
}

// A damaged block must never hang a call or make it reach outside the block.
TEST(Cache, CorruptBlockStaysBounded)
{
    size_t size = ak_cache_min_size() * 16;
    std::mt19937_64 rng(7);

    for (int round = 0; round < 20; round++) {
        Block b(size);
        ak_cache_conf_t cf = conf();
        ak_cache_t *c = ak_cache_create(b.mem(), size, &cf);
        ASSERT_NE(nullptr, c);
        uint32_t n = stats(c).slots_total;

        for (uint32_t i = 0; i < n; i++) {
            put(c, hash_of(i), blob_of(i, 1 + rng() % 200), 0);
            if (i % 3 == 0) {
                put_neg(c, hash_of(100000 + i), 0);
            }
        }

        // scribble over the index and the slots (not the header), with
        // plausible indices (cycles), NILs and noise; the first rounds
        // fill everything with one small index: every chain is a cycle
        uint32_t *w = (uint32_t *) ((char *) b.mem() + 1024);
        size_t nw = (size - 1024) / 4;
        if (round < 4) {
            std::fill(w, w + nw, (uint32_t) round * 5);
        }
        for (int i = 0; round >= 4 && i < 200 + round * 100; i++) {
            uint32_t v;
            switch (rng() % 3) {
            case 0: v = (uint32_t) (rng() % n); break;
            case 1: v = 0xffffffffu; break;
            default: v = (uint32_t) rng(); break;
            }
            w[rng() % nw] = v;
        }

        unsigned char buf[AK_RECORD_MAX];
        size_t len;
        uint32_t flags, slot;
        for (int i = 0; i < 3000; i++) {
            uint64_t k = rng() % (2 * n);
            Hash h = hash_of(rng() % 2 ? k : 100000 + k);
            switch (rng() % 6) {
            case 0: case 1: {
                int rc = ak_cache_lookup(c, h.b, 1, buf, sizeof(buf), &len,
                                         &flags, &slot);
                if (rc == AK_CACHE_FRESH || rc == AK_CACHE_STALE) {
                    ASSERT_LE(len, (size_t) AK_RECORD_MAX);
                    ak_cache_state(c, slot, h.b);
                }
                break;
            }
            case 2:
                put(c, h, blob_of(k, 1 + rng() % 500), 1);
                break;
            case 3:
                put_neg(c, h, 1);
                break;
            case 4:
                ak_cache_remove(c, h.b);
                break;
            default:
                ak_cache_revoke(c, h.b);
                break;
            }
            ak_cache_stats_t st = stats(c);
            ASSERT_LE(st.slots_free, st.slots_total);
        }

        // a flush always brings back a sound cache
        ak_cache_flush(c);
        ASSERT_EQ(n, stats(c).slots_free);
        for (uint32_t i = 0; i < 100; i++) {
            Bytes bl = blob_of(i, 300);
            ASSERT_EQ(0, put(c, hash_of(i), bl, 2));
            ASSERT_EQ(bl, look(c, hash_of(i), 2).blob);
        }
    }
}


// A malformed record is remembered like a negative entry, answered with
// AK_ENTRY_BAD, and its version survives negative_ttl so that a re-read of
// the same record is recognised (logged once per version).
TEST(Cache, BadRecordEntry)
{
    Small s;
    Hash h = hash_of(1);

    EXPECT_EQ(0, ak_cache_put_bad(s.c, h.b, 0, ak_cache_event_seq(s.c), 7));
    Result r = look(s.c, h, 1);
    EXPECT_EQ(AK_CACHE_NEGATIVE, r.rc);
    EXPECT_EQ((uint32_t) AK_ENTRY_BAD, r.flags);
    EXPECT_EQ(1u, stats(s.c).negative_entries);
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, h, kNegTtl - 1).rc);

    // past negative_ttl: a miss (re-read it), but the version is kept
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, kNegTtl).rc);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, kNegTtl + 1).rc);
    EXPECT_EQ(1, ak_cache_put_bad(s.c, h.b, kNegTtl + 2,
                                  ak_cache_event_seq(s.c), 7));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, h, kNegTtl + 3).rc);
    EXPECT_EQ(1u, stats(s.c).negative_entries);

    // another version
    EXPECT_EQ(0, ak_cache_put_bad(s.c, h.b, kNegTtl + 4,
                                  ak_cache_event_seq(s.c), 8));
    EXPECT_EQ(1, ak_cache_put_bad(s.c, h.b, kNegTtl + 5,
                                  ak_cache_event_seq(s.c), 8));

    // events since the read: nothing stored, the answer still says "seen"
    uint64_t old = ak_cache_event_seq(s.c);
    EXPECT_EQ(0, ak_cache_remove(s.c, hash_of(9).b));
    EXPECT_EQ(1, ak_cache_put_bad(s.c, h.b, kNegTtl + 6, old, 8));
    EXPECT_EQ(0, ak_cache_put_bad(s.c, hash_of(2).b, 0, old, 8));
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, hash_of(2), 1).rc);

    // a plain negative answer replaces it, without the flag
    ASSERT_EQ(0, put_neg(s.c, h, kNegTtl + 7));
    r = look(s.c, h, kNegTtl + 8);
    EXPECT_EQ(AK_CACHE_NEGATIVE, r.rc);
    EXPECT_EQ(0u, r.flags);
    EXPECT_EQ(0, ak_cache_put_bad(s.c, h.b, kNegTtl + 9,
                                  ak_cache_event_seq(s.c), 8));

    // the record was fixed: a positive entry replaces it
    Bytes b = blob_of(1, 100);
    ASSERT_EQ(0, put(s.c, h, b, kNegTtl + 10));
    r = look(s.c, h, kNegTtl + 11);
    EXPECT_EQ(AK_CACHE_FRESH, r.rc);
    EXPECT_EQ(b, r.blob);
    EXPECT_EQ(0u, r.flags);
    EXPECT_EQ(0u, stats(s.c).negative_entries);
    EXPECT_EQ(1u, stats(s.c).entries);

    // ... and a positive entry becomes a bad one when the record breaks
    EXPECT_EQ(0, ak_cache_put_bad(s.c, h.b, kNegTtl + 12,
                                  ak_cache_event_seq(s.c), 9));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, h, kNegTtl + 13).rc);
    EXPECT_EQ(0u, stats(s.c).entries);
    EXPECT_EQ(stats(s.c).slots_total - 1, stats(s.c).slots_free);

    // an update event drops it at once; a new generation makes it a miss
    EXPECT_EQ(1, ak_cache_remove(s.c, h.b));
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, kNegTtl + 14).rc);
    EXPECT_EQ(0, ak_cache_put_bad(s.c, h.b, 0, ak_cache_event_seq(s.c), 9));
    ak_cache_new_generation(s.c);
    EXPECT_EQ(AK_CACHE_MISS, look(s.c, h, 1).rc);
    EXPECT_EQ(1, ak_cache_put_bad(s.c, h.b, 2, ak_cache_event_seq(s.c), 9));
    EXPECT_EQ(AK_CACHE_NEGATIVE, look(s.c, h, 3).rc);

    EXPECT_EQ(-1, ak_cache_put_bad(nullptr, h.b, 0, 0, 1));
    EXPECT_EQ(-1, ak_cache_put_bad(s.c, nullptr, 0, 0, 1));
}

// Bad entries share the negative entries' cap and never evict a live
// positive entry.
TEST(Cache, BadRecordEntriesCountAsNegative)
{
    Small s(10);
    uint32_t total = stats(s.c).slots_total;
    uint32_t cap = std::max<uint32_t>(1, total * 10 / 100);

    for (uint64_t k = 0; k < total - cap; k++) {
        ASSERT_EQ(0, put(s.c, hash_of(k), blob_of(k, 10), 0));
    }
    for (uint64_t k = 1000; k < 1000 + 3 * cap; k++) {
        ASSERT_LE(0, ak_cache_put_bad(s.c, hash_of(k).b, 1,
                                      ak_cache_event_seq(s.c), k));
    }
    EXPECT_EQ(cap, stats(s.c).negative_entries);
    EXPECT_EQ(total - cap, stats(s.c).entries);
}

// ak_cache_validate / ak_cache_attach: the layout fields of the header are
// what every operation trusts (issue 10: damaging them made operations read
// outside the block), so a block whose header does not match the size the
// caller gives is refused, with a message; the mutable header fields must
// add up.  Field offsets as in cache.cpp's struct ak_cache_s (checked
// against known values first).
namespace {

uint32_t &u32_at(Block &b, size_t off) { return *(uint32_t *) ((char *) b.mem() + off); }
uint64_t &u64_at(Block &b, size_t off) { return *(uint64_t *) ((char *) b.mem() + off); }

const size_t kOffMagic = 0, kOffVersion = 8, kOffSlotSize = 12, kOffSize = 16,
             kOffBucketsOff = 24, kOffSlotsOff = 32, kOffNslots = 40,
             kOffNgroups = 44, kOffNegPct = 72, kOffNegMax = 76,
             kOffFreeHead = 92, kOffNfree = 96, kOffHwm = 100,
             kOffHand = 104, kOffWriting = 108, kOffNpos = 112,
             kOffNneg = 116;

const uint32_t kNil = 0xffffffffu;

} // namespace

TEST(Cache, ValidateRefusesDamagedHeader)
{
    size_t size = ak_cache_min_size() * 8;
    Block a(size);
    ak_cache_conf_t cf = conf();
    ak_cache_t *c = ak_cache_create(a.mem(), size, &cf);
    ASSERT_NE(nullptr, c);
    uint32_t n = stats(c).slots_total;

    // a used cache: entries, negative entries, a free list
    for (uint64_t i = 0; i < 40; i++) {
        ASSERT_EQ(0, put(c, hash_of(i), blob_of(i, 1 + (i * 53) % 400), 1));
    }
    for (uint64_t i = 0; i < 10; i++) {
        put_neg(c, hash_of(1000 + i), 1);
    }
    // keys deleted in Redis: their positive entries (and overflow slots)
    // go to the free list (ak_cache_remove keeps an entry for its state)
    for (uint64_t i = 0; i < 40; i += 3) {
        put_neg(c, hash_of(i), 1);
    }
    EXPECT_EQ(nullptr, ak_cache_validate(a.mem(), size));

    // the offsets used below
    ASSERT_EQ(size, u64_at(a, kOffSize));
    ASSERT_EQ(n, u32_at(a, kOffNslots));
    ASSERT_EQ((n + 14) / 15, u32_at(a, kOffNgroups));
    ASSERT_EQ(stats(c).entries, u32_at(a, kOffNpos));
    ASSERT_EQ(stats(c).negative_entries, u32_at(a, kOffNneg));
    ASSERT_EQ(stats(c).slots_free, u32_at(a, kOffNfree));
    ASSERT_LT(u32_at(a, kOffFreeHead), (n + 63) / 64);
    ASSERT_LE(u32_at(a, kOffHwm), n);

    std::vector<uint64_t> saved(a.words);

    struct Damage {
        const char *what;
        size_t off;
        int width;          // 4 or 8
        uint64_t value;     // 0: computed below
        const char *says;   // part of the message
    };
    uint64_t hwm = u32_at(a, kOffHwm);
    const Damage damage[] = {
        { "magic", kOffMagic, 8, 0x3148434143414b42ULL, "magic" },
        { "version", kOffVersion, 4, 1, "version" },
        { "slot size", kOffSlotSize, 4, 121, "slot size" },
        { "size + 8", kOffSize, 8, size + 8, "size" },
        { "size * 2", kOffSize, 8, size * 2, "size" },
        { "size 0", kOffSize, 8, 0, "size" },
        { "buckets_off", kOffBucketsOff, 8, 8, "offset" },
        { "buckets_off huge", kOffBucketsOff, 8, UINT64_MAX - 7, "offset" },
        { "slots_off", kOffSlotsOff, 8, size, "offset" },
        { "slots_off - 128", kOffSlotsOff, 8, u64_at(a, kOffSlotsOff) - 128, "offset" },
        { "nslots + 1", kOffNslots, 4, n + 1, "count" },
        { "nslots huge", kOffNslots, 4, 0x7fffffff, "count" },
        { "nslots 0", kOffNslots, 4, 0, "count" },
        { "ngroups + 1", kOffNgroups, 4, (n + 14) / 15 + 1, "count" },
        { "ngroups 0", kOffNgroups, 4, 0, "count" },
        { "hwm > nslots", kOffHwm, 4, n + 1, "high-water" },
        { "nfree > nslots", kOffNfree, 4, n + 1, "free" },
        { "nfree < never used", kOffNfree, 4, n - hwm - 1, "free" },
        { "nfree + 1", kOffNfree, 4, u32_at(a, kOffNfree) + 1, "add up" },
        { "nfree - 1", kOffNfree, 4, u32_at(a, kOffNfree) - 1, "add up" },
        { "cursor past the bitmap", kOffFreeHead, 4, (n + 63) / 64, "cursor" },
        { "cursor NIL", kOffFreeHead, 4, kNil, "cursor" },
        { "npos = nslots", kOffNpos, 4, n, "counts" },
        { "nneg = nslots", kOffNneg, 4, n, "counts" },
        { "hand past nslots", kOffHand, 4, n + 1, "hand" },
        { "hand huge", kOffHand, 4, 0x7ffffff0, "hand" },
        { "writing 2", kOffWriting, 4, 2, "writer" },
        { "neg_pct 0", kOffNegPct, 4, 0, "negative entry limit" },
        { "neg_pct 101", kOffNegPct, 4, 101, "negative entry limit" },
        { "neg_max 0", kOffNegMax, 4, 0, "negative entry limit" },
        { "neg_max > nslots", kOffNegMax, 4, n + 1, "negative entry limit" },
    };

    for (const Damage &d : damage) {
        a.words = saved;
        if (d.width == 8) {
            u64_at(a, d.off) = d.value;
        } else {
            u32_at(a, d.off) = (uint32_t) d.value;
        }
        const char *why = ak_cache_validate(a.mem(), size);
        ASSERT_NE(nullptr, why) << d.what;
        EXPECT_NE(nullptr, strstr(why, d.says)) << d.what << ": " << why;
        EXPECT_EQ(nullptr, ak_cache_attach(a.mem(), size)) << d.what;
    }

    // undamaged again: attaches, and works
    a.words = saved;
    ak_cache_t *d = ak_cache_attach(a.mem(), size);
    ASSERT_NE(nullptr, d);
    EXPECT_EQ(blob_of(1, 1 + 53 % 400), look(d, hash_of(1), 2).blob);

    // the block itself
    EXPECT_NE(nullptr, ak_cache_validate(nullptr, size));
    EXPECT_NE(nullptr, ak_cache_validate((char *) a.mem() + 4, size - 8));
    EXPECT_NE(nullptr, ak_cache_validate(a.mem(), 100));
    EXPECT_NE(nullptr, ak_cache_validate(a.mem(), size - 8));
}

// Every state the operations leave validates: what validate requires of the
// mutable fields holds (random puts, negative entries, removes, evictions,
// revokes, flushes).
TEST(Cache, ValidateAcceptsEveryStateOfUse)
{
    size_t size = ak_cache_min_size() * 2;
    Block a(size);
    ak_cache_conf_t cf = conf(30);
    ak_cache_t *c = ak_cache_create(a.mem(), size, &cf);
    ASSERT_NE(nullptr, c);
    EXPECT_EQ(nullptr, ak_cache_validate(a.mem(), size));

    std::mt19937_64 rng(11);
    for (int i = 0; i < 20000; i++) {
        Hash h = hash_of(rng() % 300);
        switch (rng() % 10) {
        case 0: case 1: case 2: case 3:
            put(c, h, blob_of(i, 1 + rng() % 700), i / 10);
            break;
        case 4: case 5:
            put_neg(c, h, i / 10);
            break;
        case 6: case 7:
            ak_cache_remove(c, h.b);
            break;
        case 8:
            ak_cache_revoke(c, h.b);
            break;
        default:
            if (rng() % 200 == 0) {
                ak_cache_flush(c);
            } else {
                look(c, h, i / 10);
            }
            break;
        }
        const char *why = ak_cache_validate(a.mem(), size);
        ASSERT_EQ(nullptr, why) << "after operation " << i << ": " << why;
    }
    EXPECT_GT(stats(c).evictions, 0u);
}

// ak_cache_check: every state of use is consistent (random operations, as
// above), and a broken link, a count that is off or a slot in two places is
// found.
TEST(Cache, CheckAcceptsUseAndFindsDamage)
{
    size_t size = ak_cache_min_size() * 2;
    Block a(size);
    ak_cache_conf_t cf = conf(30);
    ak_cache_t *c = ak_cache_create(a.mem(), size, &cf);
    ASSERT_NE(nullptr, c);
    std::vector<unsigned char> scratch(ak_cache_check_scratch(c));
    EXPECT_EQ(nullptr, ak_cache_check(c, scratch.data(), scratch.size()));
    EXPECT_NE(nullptr, ak_cache_check(c, scratch.data(), scratch.size() - 1));

    std::mt19937_64 rng(12);
    for (int i = 0; i < 5000; i++) {
        Hash h = hash_of(rng() % 100);
        switch (rng() % 8) {
        case 0: case 1: case 2:
            put(c, h, blob_of(i, 1 + rng() % 700), i / 10);
            break;
        case 3:
            put_neg(c, h, i / 10);
            break;
        case 4:
            ak_cache_put_bad(c, h.b, i / 10, ak_cache_event_seq(c), i);
            break;
        case 5:
            ak_cache_remove(c, h.b);
            break;
        case 6:
            ak_cache_revoke(c, h.b);
            break;
        default:
            look(c, h, i / 10);
            break;
        }
        const char *why = ak_cache_check(c, scratch.data(), scratch.size());
        ASSERT_EQ(nullptr, why) << "after operation " << i << ": " << why;
    }

    // damage: each on a copy of the block, found by the check
    struct Damage {
        const char *what;
        void (*apply)(unsigned char *mem, const ak_cache_stats_t &);
    };
    ak_cache_stats_t st = stats(c);
    ASSERT_GT(st.entries, 2u);
    const size_t groups_off = 1280;
    const size_t slots_off = u64_at(a, 32);
    const uint32_t ngroups = (st.slots_total + 14) / 15;
    for (int which = 0; which < 5; which++) {
        Block b(size);
        memcpy(b.mem(), a.mem(), size);
        unsigned char *m = static_cast<unsigned char *>(b.mem());
        uint32_t *heads = nullptr;
        uint32_t first = 0xffffffffu, bucket = 0, group = 0;
        for (uint32_t g = 0; g < ngroups && first == 0xffffffffu; g++) {
            uint32_t *grp = reinterpret_cast<uint32_t *>(m + groups_off
                                                          + 64 * (size_t) g);
            for (uint32_t k = 0; k < 15 && first == 0xffffffffu; k++) {
                first = grp[1 + k];
                bucket = k;
                group = g;
                heads = grp + 1;
            }
        }
        ASSERT_NE(0xffffffffu, first);
        unsigned char *slot = m + slots_off + 128 * (size_t) first;
        switch (which) {
        case 0:     // the entry's chain link points at itself
            memcpy(slot + 64, &first, 4);
            break;
        case 1:     // the bucket head moved to another bucket
            heads[(bucket + 1) % 15] = first;
            heads[bucket] = 0xffffffffu;
            break;
        case 2:     // the entry's overflow link: the head of the free list
            memset(slot + 124, 0, 4);
            memset(slot + 83, 0xff, 1);     // and a long blob
            break;
        case 3:     // a writer died with the group's counter odd
            heads[-1] |= 1;
            break;
        default: {  // the entry's tag word says "no entry"
            uint64_t w;
            memcpy(&w, slot, 8);
            w |= AK_TAT_NONE;
            memcpy(slot, &w, 8);
            break;
        }
        }
        (void) group;
        ak_cache_t *d = ak_cache_attach(b.mem(), size);
        ASSERT_NE(nullptr, d);
        EXPECT_NE(nullptr, ak_cache_check(d, scratch.data(), scratch.size()))
            << "damage " << which << " not found";
    }
}
