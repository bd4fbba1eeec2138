/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cache.cpp: the shared-memory key cache (see "Shared-memory cache" in
 * ak_core.h, and api_key_zone in README.md).
 *
 * Layout of the block handed over by the glue (offsets, never pointers, so
 * that it works at any mapping address):
 *
 *   [0, 256)              header (struct ak_cache_s, padded to 256 bytes)
 *   [256, 1280)           statistics: 16 stripes of 64 bytes (lookups count
 *                         in the stripe of their process, see
 *                         ak_cache_set_stripe)
 *   [1280, B)             bucket groups: ngroups x 64 bytes, each a
 *                         sequence counter and 15 bucket heads (u32 slot
 *                         index or NIL)
 *   [B, F)                the free bitmap: a bit per slot (set: free),
 *                         then a summary bit per bitmap word (set: the
 *                         word has a free slot), rounded up to 64 bytes;
 *                         writers only
 *   [F, F + 128*nslots)   slots, 128 bytes each
 *
 * There are at least as many buckets as slots (ngroups = ceil(nslots /
 * 15)), so the index costs 64 / 15 bytes per slot and the bitmap 1 / 8: a
 * cached key whose blob is <= 36 bytes costs about 132.4 bytes
 * (ak_cache_bytes_per_key() says 133), and a 128 MiB block holds 1,013,767
 * slots.  Smallest block: 8768 bytes (56 slots).  Keys are uniformly
 * distributed digests: the group is picked from their first 4 bytes, the
 * bucket in it from the next 4, the home pair (below) from the 4 after
 * ("fastrange": (x * n) >> 32, no division).
 *
 * Home slots.  A hit costs two dependent DRAM (and TLB) misses: the group's
 * line, then the slot its chain leads to.  So a new entry takes, when one
 * is free, a slot of its "home pair" (slots 2m and 2m + 1, m from the
 * digest), which a reader prefetches (four lines, one DRAM row) while it
 * reads the group: the two misses overlap.  Else the free slot nearest to
 * the home in its bitmap word, else the lowest free one from the
 * allocation cursor on; overflow slots take the slot after the previous
 * one when free.  An entry stored after an eviction takes its victim's
 * slot instead (just behind the CLOCK hand, as an entry had before: ahead
 * of it, it would get less than a turn).  With 1,000,000 keys put in
 * 1.1 M slots, 68% are in their home pair.  Home slots are random: a
 * fresh zone's pages are touched as keys arrive, not in order.
 *
 * Entry (head) slot, 128 bytes:
 *
 *     0  st        32     ak_key_state_t; its first 8 bytes (tat_us) are
 *                         the slot's "tag word", see below
 *    32  hash[32]         key digest
 *    64  hnext     u32    next entry in the bucket chain
 *    68  gen       u32    cache generation when stored
 *    72  fetched   u64    now_ms when stored
 *    80  kind      u8     KIND_POS / KIND_NEG
 *    81  flags     u8     AK_ENTRY_REVOKED | AK_ENTRY_BAD | AK_ENTRY_PLAIN
 *                         | AK_ENTRY_RATED | F_STORED_STALE | F_GONE
 *    82  len       u16    blob length (0 for a negative entry)
 *    84  serial    u32    the cache's count of stores when stored:
 *                         with fetched, the entry's mark (a record's
 *                         store, see ak_cache_lookup_kept)
 *    88  blob[36]         the first 36 blob bytes (a bad negative entry:
 *                         the record's version in the first 8)
 *   124  ovf       u32    first overflow slot (or NIL)
 *
 * Overflow slot: bytes [0, 8) are its tag word, [8, 16) are left alone
 * (an entry's quota word, q_window and q_left: ak_cache_quota_take swaps
 * it by compare-and-swap without the lock, and may do so just after the
 * slot stopped being that entry; it must never hit record bytes),
 * [16, 124) carry 108 blob bytes, the u32 at 124 (the same "ovf" field)
 * links the next overflow slot.  A blob of len bytes uses
 * 1 + ceil((len - 36) / 108) slots: 100 bytes -> 2, 1000 -> 10,
 * 4096 -> 39.  The chain length is implied by len, so chain walks are
 * bounded by it.
 *
 * The tag word of every slot (AK_TAT_* in ak_core.h): bit 63 the CLOCK
 * "referenced" bit, bits 52-62 a tag counting the slot's changes of
 * identity, bits 0-51 the GCRA TAT of an entry, or AK_TAT_NONE in a slot
 * that is not an entry (free, overflow).  A writer changes the tag whenever
 * the slot becomes or stops being an entry; the word is only ever changed
 * by atomic operations (readers set the referenced bit, ak_cache_gcra and
 * ak_limits_admit_ex compare-and-swap the TAT).  The quota word beside it
 * (bytes 8-15: q_window, q_left) is changed by atomic operations too:
 * ak_cache_quota_take takes counts from it without the lock.
 *
 * Free slots are the bits set in the bitmap (create and flush set them
 * and never touch the slot area); "hwm" is above every slot used since the
 * last format: a free slot below it may never have been written (its tag
 * word is not looked at: the CLOCK sweep skips free slots), every slot at
 * or above it is free.  npos + nneg + novf + nfree == nslots at rest.
 *
 * Concurrency.  Writers (every function but the lookups, the statistics,
 * ak_cache_event_seq, ak_cache_gcra and ak_cache_quota_take) are called
 * with the zone lock held.
 * Readers (ak_cache_lookup, _again) take no lock: each bucket group has a
 * sequence counter, odd while a writer changes a chain of the group or an
 * entry in it (its fields, its blob, its overflow chain).  A reader reads
 * the counter (acquire), walks the chain checking every index against
 * nslots and bounding the walk, copies what it needs into the caller's
 * buffer, then reads the counter again (after an acquire fence): the same
 * even value, and the copy is what the writer left; else it retries, up to
 * kReadTries times, then answers MISS (a writer was interrupted in that
 * group, or kept changing it).  Entries are never referenced in place by
 * a reader, only copied.  Readers never write to the block but to the tag
 * word (the referenced bit) and the statistics stripes.
 *
 * Eviction: CLOCK.  A hit sets the referenced bit of its entry (only when
 * clear: a hot entry's cache line stays clean); a writer that needs room
 * sweeps a hand over the slots, clearing referenced bits and evicting the
 * first entry that had none (or that is expired), looking at no more than
 * kSweepMax slots per eviction.  Negative entries may hold at most
 * neg_max = max(1, nslots * negative_max_pct / 100) slots and never evict
 * a live positive entry.  Expired entries are found MISS by readers and
 * removed by writers (eviction, replacement).
 *
 * Crash safety: a writer sets "writing" in the header for the whole
 * operation.  A worker killed in the middle leaves it set (and maybe a
 * group's counter odd: readers of that group answer MISS): the next writer
 * finds it and reformats the cache (empties it).  Readers of a cache left
 * half-written stay within the block: every index is checked, every walk
 * bounded, every copy bounded by the caller's buffer.
 *
 * Corruption: every index read from the slots, the bucket heads and the
 * mutable header fields is checked against nslots and every walk is
 * bounded, so damage there can neither loop forever nor reach outside the
 * block.  When a writer detects an inconsistency the cache is reformatted
 * (emptied) and the operation is retried once on the clean cache.
 *
 * The layout fields of the header (magic, version, slot_size, size,
 * groups_off, slots_off, nslots, ngroups) are different: they are written
 * once by create and trusted by every operation after that, since they are
 * what the bounds are checked against.  Damage to them after create/attach
 * CAN make an operation read or write outside the block; nothing in the
 * block can guard against that.  ak_cache_validate (and so attach) checks
 * them against the block size the caller gives, which comes from outside
 * the block, together with the plausibility of the mutable header fields,
 * and refuses a block that does not match.
 */

#include "ak_core.h"
#include "internal.hpp"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <utility>


#ifdef AK_CACHE_KILL_POINTS
/* fuzz builds: a writer step may be the last one (see ak_core.h) */
extern "C" { void (*ak_cache_kill_hook)(void) = nullptr; }
#define KILL_POINT()  do { if (ak_cache_kill_hook) ak_cache_kill_hook(); } \
                      while (0)
/* and a lock-free step may be where another process acts (see ak_core.h) */
extern "C" { void (*ak_cache_race_hook)(int point) = nullptr; }
#define RACE_POINT(n)  do { if (ak_cache_race_hook) ak_cache_race_hook(n); } \
                       while (0)
#else
#define KILL_POINT()  do { } while (0)
#define RACE_POINT(n)  do { } while (0)
#endif


namespace {

const uint64_t  kMagic = 0x3148434143414b41ULL;    /* "AKCACHE1" LE */
const uint32_t  kVersion = 8;        /* 3: lock-free reads, CLOCK, bucket
                                        groups, tag words; 4: overflow data
                                        after the quota word; 5: a free
                                        bitmap, home slots, and the record
                                        blob's rules made for matching;
                                        6: AK_ENTRY_PLAIN and
                                        AK_ENTRY_RATED; 7: a store's
                                        serial in each entry; 8: the
                                        header's count of writes */
const uint32_t  NIL = 0xffffffffu;
const size_t    kHeaderSize = 256;
const uint32_t  kStripes = 16;
const size_t    kStripeSize = 64;
const size_t    kGroupsOff = kHeaderSize + kStripes * kStripeSize;
const uint32_t  kGroupBuckets = 15;
const size_t    kGroupSize = 64;
const size_t    kInline = 36;           /* blob bytes in the entry slot */
const size_t    kInlineWords = (kInline + 7) / 8;   /* as whole words */
const size_t    kOvfStart = 16;         /* after the tag word and the
                                           quota word (see above) */
const size_t    kOvfData = 108;         /* blob bytes per overflow slot */
const uint32_t  kMinSlots = 56;         /* >= 36, the largest chain; the
                                           block fits where the 64 slots of
                                           layout 2 did: the smallest zone
                                           stays 41k */
const uint32_t  kMaxSlots = 0x7fffffffu;
const int       kReadTries = 16;        /* a reader's attempts */
const uint32_t  kSweepMax = 4096;       /* slots a CLOCK sweep looks at */

const uint8_t   KIND_POS = 1;
const uint8_t   KIND_NEG = 2;

/* internal entry flags: stored STALE (events arrived during its read);
 * gone (removed by an "update": never used again, kept for its state) */
const uint8_t   F_STORED_STALE = 0x80;
const uint8_t   F_GONE = 0x40;

const uint64_t  kDefaultTtl = 60000;
const uint64_t  kDefaultNegTtl = 5000;
const uint64_t  kDefaultStale = 600000;
const uint32_t  kDefaultNegPct = 25;

const uint64_t  TW_REF = AK_TAT_REF;
const uint64_t  TW_TAT = AK_TAT_MASK;
const uint64_t  TW_TAG_ONE = UINT64_C(1) << AK_TAT_BITS;
const uint64_t  TW_TAG = ~(TW_REF | TW_TAT);


struct Slot {
    ak_key_state_t  st;
    unsigned char   hash[AK_HASH_LEN];
    uint32_t        hnext;
    uint32_t        gen;
    uint64_t        fetched;
    uint8_t         kind;
    uint8_t         flags;
    uint16_t        len;
    uint32_t        serial;
    unsigned char   blob[kInline];
    uint32_t        ovf;
};

struct Group {
    uint32_t        seq;
    uint32_t        head[kGroupBuckets];
};

struct Stripe {
    uint64_t        hits;
    uint64_t        misses;
    uint64_t        stale_hits;
    uint64_t        negative_hits;
    uint64_t        retries;
    uint64_t        pad[3];
};

static_assert(sizeof(ak_key_state_t) == 32, "ak_key_state_t size");
static_assert(offsetof(ak_key_state_t, tat_us) == 0, "tag word first");
static_assert(sizeof(Slot) == 128, "slot size");
static_assert(sizeof(Group) == kGroupSize, "group size");
static_assert(sizeof(Stripe) == kStripeSize, "stripe size");
static_assert(offsetof(Slot, hash) % 8 == 0, "hash alignment");
static_assert(offsetof(Slot, blob) % 8 == 0, "blob alignment");
static_assert(offsetof(Slot, ovf) == kOvfStart + kOvfData, "overflow data");
/* racy_read reads whole words: blob bytes rounded up stay in the slot */
static_assert((offsetof(Slot, blob) + kInline + 7) / 8 * 8 <= sizeof(Slot)
              && (kOvfStart + kOvfData + 7) / 8 * 8 <= sizeof(Slot),
              "whole words of blob bytes");
static_assert(offsetof(ak_key_state_t, q_window) + 8 <= kOvfStart,
              "the quota word is never overflow data");
static_assert((AK_RECORD_MAX - kInline + kOvfData - 1) / kOvfData + 1
              <= kMinSlots, "largest blob fits in the smallest cache");
static_assert(AK_RECORD_MAX <= 0xffff, "blob length is a u16");


/* relaxed atomic access to fields a reader may read while a writer writes
 * them (the same instructions as plain ones on every target we build for,
 * but neither the compiler nor a race detector may tear or elide them) */

template <class T>
inline T
ld(const T &x) noexcept
{
    return __atomic_load_n(&x, __ATOMIC_RELAXED);
}

template <class T>
inline void
st(T &x, T v) noexcept
{
    __atomic_store_n(&x, v, __ATOMIC_RELAXED);
}

typedef uint64_t __attribute__((may_alias))  u64a;

/*
 * n bytes from src (8-byte aligned) to dst, word by word, relaxed.  Whole
 * words are read: src has readable bytes up to the next multiple of 8 past
 * n (a slot's blob bytes end 4 bytes before its end, see the asserts).
 * Whole: the last word is written whole too (dst has n + 7 bytes); else
 * its bytes up to n.  Four words a turn: atomic loads are neither unrolled
 * nor vectorised by the compiler, and a turn per word cost 7 instructions.
 */
template <bool Whole>
inline void
racy_read(unsigned char *dst, const unsigned char *src, size_t n) noexcept
{
    size_t         k, words;
    uint64_t       a, b, x, y;
    const u64a    *s = reinterpret_cast<const u64a *>(src);

    words = Whole ? (n + 7) / 8 : n / 8;

    for (k = 0; k + 4 <= words; k += 4, s += 4, dst += 32) {
        a = __atomic_load_n(s, __ATOMIC_RELAXED);
        b = __atomic_load_n(s + 1, __ATOMIC_RELAXED);
        x = __atomic_load_n(s + 2, __ATOMIC_RELAXED);
        y = __atomic_load_n(s + 3, __ATOMIC_RELAXED);
        memcpy(dst, &a, 8);
        memcpy(dst + 8, &b, 8);
        memcpy(dst + 16, &x, 8);
        memcpy(dst + 24, &y, 8);
    }

    for (; k < words; k++, s++, dst += 8) {
        a = __atomic_load_n(s, __ATOMIC_RELAXED);
        memcpy(dst, &a, 8);
    }

    if (!Whole && n % 8) {
        unsigned char  t[8];

        a = __atomic_load_n(s, __ATOMIC_RELAXED);
        memcpy(t, &a, 8);
        memcpy(dst, t, n % 8);
    }
}


/* the inline blob bytes of an entry slot, whole words (dst has
 * kInlineWords * 8 bytes): no count, no loop */
inline void
racy_read_inline(unsigned char *dst, const unsigned char *src) noexcept
{
    uint64_t     a, b, x, y, z;
    const u64a  *s = reinterpret_cast<const u64a *>(src);

    static_assert(kInlineWords == 5, "five words");

    a = __atomic_load_n(s, __ATOMIC_RELAXED);
    b = __atomic_load_n(s + 1, __ATOMIC_RELAXED);
    x = __atomic_load_n(s + 2, __ATOMIC_RELAXED);
    y = __atomic_load_n(s + 3, __ATOMIC_RELAXED);
    z = __atomic_load_n(s + 4, __ATOMIC_RELAXED);
    memcpy(dst, &a, 8);
    memcpy(dst + 8, &b, 8);
    memcpy(dst + 16, &x, 8);
    memcpy(dst + 24, &y, 8);
    memcpy(dst + 32, &z, 8);
}


/*
 * The data of an overflow slot as whole words: kOvfWords (14) words from
 * its byte 16 to its end, the last word's upper half being the slot's
 * "ovf" link (dst has 112 bytes; the 4 after the 108 data bytes are
 * overwritten by the next slot's copy or are spill the caller allows).
 * A fixed count, unrolled: no count, no bound, no loop per word.
 */
const size_t  kOvfWords = (sizeof(Slot) - kOvfStart) / 8;

static_assert(kOvfStart + kOvfWords * 8 == sizeof(Slot)
              && kOvfWords * 8 >= kOvfData, "whole overflow words");

inline __attribute__((always_inline)) void
racy_read_word(unsigned char *dst, const u64a *s) noexcept
{
    uint64_t  w = __atomic_load_n(s, __ATOMIC_RELAXED);

    memcpy(dst, &w, 8);
}

template <size_t... I>
inline __attribute__((always_inline)) void
racy_read_words(unsigned char *dst, const unsigned char *src,
    std::index_sequence<I...>) noexcept
{
    const u64a  *s = reinterpret_cast<const u64a *>(src);

    (racy_read_word(dst + 8 * I, s + I), ...);
}

inline __attribute__((always_inline)) void
racy_read_ovf(unsigned char *dst, const unsigned char *slot) noexcept
{
    racy_read_words(dst, slot + kOvfStart,
                    std::make_index_sequence<kOvfWords>());
}


/* the same the other way: dst 8-byte aligned */
void
racy_write(unsigned char *dst, const unsigned char *src, size_t n) noexcept
{
    size_t    k;
    uint64_t  w;

    for (k = 0; k + 8 <= n; k += 8) {
        memcpy(&w, src + k, 8);
        __atomic_store_n(reinterpret_cast<u64a *>(dst + k), w,
                         __ATOMIC_RELAXED);
    }

    for (; k < n; k++) {
        __atomic_store_n(dst + k, src[k], __ATOMIC_RELAXED);
    }
}

/* 1 when the 32 bytes at p (8-byte aligned) are hash: the four words
 * compared at once, no branch per word (a chain's other entries, read
 * whole, are in the line the hash is in anyway) */
inline bool
racy_same_hash(const unsigned char *p, const unsigned char *hash) noexcept
{
    uint64_t     a0, a1, a2, a3, b0, b1, b2, b3;
    const u64a  *w = reinterpret_cast<const u64a *>(p);

    static_assert(AK_HASH_LEN == 32, "four words");

    a0 = __atomic_load_n(w, __ATOMIC_RELAXED);
    a1 = __atomic_load_n(w + 1, __ATOMIC_RELAXED);
    a2 = __atomic_load_n(w + 2, __ATOMIC_RELAXED);
    a3 = __atomic_load_n(w + 3, __ATOMIC_RELAXED);
    memcpy(&b0, hash, 8);
    memcpy(&b1, hash + 8, 8);
    memcpy(&b2, hash + 16, 8);
    memcpy(&b3, hash + 24, 8);

    return ((a0 ^ b0) | (a1 ^ b1) | (a2 ^ b2) | (a3 ^ b3)) == 0;
}

inline void
cpu_relax() noexcept
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

} /* namespace */


struct ak_cache_s {
    uint64_t        magic;
    uint32_t        version;
    uint32_t        slot_size;
    uint64_t        size;           /* the block size given to create */
    uint64_t        groups_off;
    uint64_t        slots_off;
    uint32_t        nslots;
    uint32_t        ngroups;

    uint64_t        ttl_ms;
    uint64_t        neg_ttl_ms;
    uint64_t        stale_ms;
    uint32_t        neg_pct;
    uint32_t        neg_max;        /* most negative entries */

    uint64_t        seq;            /* event sequence */
    uint32_t        gen;            /* generation */
    uint32_t        cursor;         /* bitmap word the search starts at */
    uint32_t        nfree;          /* free slots (bits set) */
    uint32_t        hwm;            /* above every slot ever used */
    uint32_t        hand;           /* CLOCK hand: the next slot looked at */
    uint32_t        writing;        /* a writer is (or died) in the middle */
    uint32_t        npos;
    uint32_t        nneg;

    uint64_t        evictions;
    uint64_t        inserts;

    uint32_t        ngone;          /* positive entries marked F_GONE */
    uint32_t        novf;           /* overflow slots in use: npos + nneg
                                       + novf + nfree == nslots */
    uint32_t        stores;         /* entries written (write_fields): the
                                       entries' serials */
    uint32_t        pad;
    uint64_t        salt;           /* random, at create: this cache's
                                       marks are no other cache's (but a
                                       copy's of this block) */
    uint64_t        writes;         /* writes that may change an entry:
                                       odd while one is under way (or
                                       died), then even again, one more;
                                       never goes back (format keeps it):
                                       ak_cache_lookup_kept */
};

static_assert(sizeof(ak_cache_s) <= kHeaderSize, "header size");


namespace {

struct Layout {
    uint32_t  nslots;
    uint32_t  ngroups;
    uint64_t  slots_off;
};


inline uint64_t
groups_of(uint64_t n) noexcept
{
    return (n + kGroupBuckets - 1) / kGroupBuckets;
}


/* the free bitmap: a bit per slot, and a summary bit per bitmap word
 * (set when the word has a free slot) */
inline uint64_t
bit_words(uint64_t n) noexcept
{
    return (n + 63) / 64;
}


inline uint64_t
bitmap_bytes(uint64_t n) noexcept
{
    return ((bit_words(n) + (bit_words(n) + 63) / 64) * 8 + 63) / 64 * 64;
}


uint64_t
layout_bytes(uint64_t n) noexcept
{
    return kGroupsOff + groups_of(n) * kGroupSize + bitmap_bytes(n)
           + n * sizeof(Slot);
}


bool
layout_of(size_t size, Layout *l) noexcept
{
    uint64_t  n;

    if (size < kGroupsOff + kGroupSize) {
        return false;
    }

    /* 128 + 64 / 15 + 1 / 8 bytes a slot: an estimate, then exact */
    n = (size - kGroupsOff) * kGroupBuckets * 8
        / ((sizeof(Slot) * kGroupBuckets + kGroupSize) * 8 + kGroupBuckets);

    if (n > kMaxSlots) {
        n = kMaxSlots;
    }

    while (n > 0 && layout_bytes(n) > size) {
        n--;
    }

    while (n < kMaxSlots && layout_bytes(n + 1) <= size) {
        n++;
    }

    if (n < kMinSlots) {
        return false;
    }

    l->nslots = (uint32_t) n;
    l->ngroups = (uint32_t) groups_of(n);
    l->slots_off = kGroupsOff + groups_of(n) * kGroupSize + bitmap_bytes(n);

    return true;
}


inline uint32_t
n_ovf(size_t len) noexcept
{
    return len <= kInline ? 0 : (uint32_t) ((len - kInline + kOvfData - 1)
                                            / kOvfData);
}


using ak::sat_add;


inline Group *
groups(const ak_cache_s *h) noexcept
{
    return reinterpret_cast<Group *>(
        reinterpret_cast<unsigned char *>(const_cast<ak_cache_s *>(h))
        + h->groups_off);
}


inline Slot *
slots(const ak_cache_s *h) noexcept
{
    return reinterpret_cast<Slot *>(
        reinterpret_cast<unsigned char *>(const_cast<ak_cache_s *>(h))
        + h->slots_off);
}


/* the free bitmap (writers only: readers never look at it), then its
 * summary */
inline uint64_t *
bitmap(const ak_cache_s *h) noexcept
{
    return reinterpret_cast<uint64_t *>(
        reinterpret_cast<unsigned char *>(const_cast<ak_cache_s *>(h))
        + h->groups_off + (uint64_t) h->ngroups * kGroupSize);
}


inline uint64_t *
summary(const ak_cache_s *h) noexcept
{
    return bitmap(h) + bit_words(h->nslots);
}


/* the slot a new entry for hash takes when it is free: the reader fetches
 * it together with the bucket group (from bytes 8-11 of the digest, the
 * group and bucket come from bytes 0-7) */
inline uint32_t
home_of(const ak_cache_s *h, const unsigned char *hash) noexcept
{
    uint32_t  x;

    memcpy(&x, hash + 8, sizeof(x));

    return (uint32_t) (((uint64_t) x * h->nslots) >> 32);
}


inline Stripe *
stripes(const ak_cache_s *h) noexcept
{
    return reinterpret_cast<Stripe *>(
        reinterpret_cast<unsigned char *>(const_cast<ak_cache_s *>(h))
        + kHeaderSize);
}


/* the group and the bucket in it of a hash */
inline void
bucket_of(const ak_cache_s *h, const unsigned char *hash, uint32_t *g,
    uint32_t *k) noexcept
{
    uint32_t  x, y;

    memcpy(&x, hash, sizeof(x));
    memcpy(&y, hash + 4, sizeof(y));

    *g = (uint32_t) (((uint64_t) x * h->ngroups) >> 32);
    *k = (uint32_t) (((uint64_t) y * kGroupBuckets) >> 32);
}


inline uint64_t *
tag_word(Slot *s) noexcept
{
    return &s->st.tat_us;
}


/*
 * The statistics stripe of this process (ak_cache_set_stripe, given once
 * at worker start: a worker's counts never share a cache line with
 * another's, up to kStripes workers), stripe 0 until then.  A process-wide
 * variable, not a field of the shared block: each worker has its own.
 */
uint32_t  g_stripe;

inline Stripe *
my_stripe(const ak_cache_s *h) noexcept
{
    return stripes(h) + g_stripe;
}


inline void
count(uint64_t *counter, uint64_t n) noexcept
{
    if (n) {
        __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
    }
}


void
apply_conf(ak_cache_s *h, const ak_cache_conf_t *conf) noexcept
{
    uint32_t  pct;
    uint64_t  max;

    if (conf) {
        st(h->ttl_ms, conf->ttl_ms);
        st(h->neg_ttl_ms, conf->negative_ttl_ms);
        st(h->stale_ms, conf->stale_ms);
        pct = conf->negative_max_pct;

    } else {
        st(h->ttl_ms, kDefaultTtl);
        st(h->neg_ttl_ms, kDefaultNegTtl);
        st(h->stale_ms, kDefaultStale);
        pct = kDefaultNegPct;
    }

    if (pct == 0) {
        pct = kDefaultNegPct;
    }

    if (pct > 100) {
        pct = 100;
    }

    max = (uint64_t) h->nslots * pct / 100;

    h->neg_pct = pct;
    h->neg_max = max ? (uint32_t) max : 1;
}


/* a group's counter odd: readers of the group retry */
inline void
group_open(Group *g) noexcept
{
    uint32_t  s = g->seq;

    st(g->seq, (s + 1) | 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}


inline void
group_close(Group *g) noexcept
{
    __atomic_store_n(&g->seq, g->seq + 1, __ATOMIC_RELEASE);
}


/*
 * Empties the cache; keeps conf, generation, counters and seq.  Each group
 * is emptied under its counter (readers in the middle of a walk retry), and
 * a counter left odd by a writer that died becomes even.
 */
void
format(ak_cache_s *h) noexcept
{
    uint32_t   i, k;
    uint64_t   w, nw, *bm, *sm;
    Group     *g = groups(h);

    for (i = 0; i < h->ngroups; i++) {
        group_open(&g[i]);

        for (k = 0; k < kGroupBuckets; k++) {
            st(g[i].head[k], NIL);
        }

        group_close(&g[i]);
    }

    /* every slot free: all bits set up to nslots */
    bm = bitmap(h);
    sm = summary(h);
    nw = bit_words(h->nslots);

    for (w = 0; w < nw; w++) {
        bm[w] = ~UINT64_C(0);
    }

    if (h->nslots % 64) {
        bm[nw - 1] = (UINT64_C(1) << (h->nslots % 64)) - 1;
    }

    for (w = 0; w < (nw + 63) / 64; w++) {
        sm[w] = ~UINT64_C(0);
    }

    if (nw % 64) {
        sm[(nw + 63) / 64 - 1] = (UINT64_C(1) << (nw % 64)) - 1;
    }

    h->cursor = 0;
    h->nfree = h->nslots;
    __atomic_store_n(&h->hwm, 0u, __ATOMIC_RELEASE);
    h->hand = 0;
    h->npos = 0;
    h->nneg = 0;
    h->ngone = 0;
    h->novf = 0;
}


/*
 * The count of writes (ak_cache_lookup_kept's kept records): odd from
 * before a writer changes anything until after it is done, so a reader
 * that read it even, and reads the same value later, knows that no writer
 * changed an entry in between, nor was changing one.  A writer that dies
 * leaves it odd; the next one makes it even, higher than any value read.
 */
inline void
writes_begin(ak_cache_s *h) noexcept
{
    st(h->writes, h->writes | 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}


inline void
writes_end(ak_cache_s *h) noexcept
{
    __atomic_store_n(&h->writes, h->writes + 1, __ATOMIC_RELEASE);
}


/* every entry gone: a write that changes entries, whatever the writer
 * (its end is Writing's, or ak_cache_recover's) */
void
reset(ak_cache_s *h) noexcept
{
    writes_begin(h);
    format(h);
    st(h->seq, h->seq + 1);
}


/*
 * Every writer entry point: a writer that died in the middle of an
 * operation (the flag is still set) left the cache in an unknown state:
 * it is emptied.  The flag is cleared by Writing's destructor (not run
 * when the process dies).
 */
class Writing {
public:
    /* entries: the writer may change an entry (a record, its flags, its
     * slot); false for the writers of limit states alone, whose count is
     * still ended when they emptied a damaged cache (reset()) */
    explicit Writing(ak_cache_s *c, bool entries = true) noexcept
        : h(c), counted(entries || c->writing)
    {
        if (counted) {
            writes_begin(h);
        }

        if (h->writing) {
            reset(h);
        }

        h->writing = 1;
    }

    ~Writing()
    {
        h->writing = 0;

        if (counted || (h->writes & 1)) {
            writes_end(h);
        }
    }

    Writing(const Writing &) = delete;
    Writing &operator=(const Writing &) = delete;

private:
    ak_cache_s  *h;
    bool         counted;
};


/*
 * One writer call's view of the block.  Every index taken from the block
 * goes through ok(); an inconsistency sets "bad" and the operation stops
 * doing anything further; the caller then reformats the cache.
 */

class Cache {
public:
    explicit Cache(ak_cache_s *c) noexcept
        : h(c), g(groups(c)), s(slots(c)), bm(bitmap(c)), sm(summary(c)),
          freed(NIL), bad(false)
    {
    }

    ak_cache_s  *h;
    Group       *g;
    Slot        *s;
    uint64_t    *bm;
    uint64_t    *sm;
    uint32_t     freed;     /* the head slot of the last entry dropped */
    bool         bad;

    bool ok(uint32_t i) const noexcept { return i < h->nslots; }

    uint32_t *
    head_of(const unsigned char *hash, Group **grp) noexcept
    {
        uint32_t  gi, k;

        bucket_of(h, hash, &gi, &k);
        *grp = &g[gi];

        return &g[gi].head[k];
    }

    uint64_t tw(uint32_t i) const noexcept
    {
        return __atomic_load_n(tag_word(&s[i]), __ATOMIC_ACQUIRE);
    }

    bool is_entry(uint32_t i) const noexcept
    {
        return (tw(i) & TW_TAT) != AK_TAT_NONE;
    }

    /* a new identity for slot i: the tag moves on, the TAT is tat */
    void
    retag(uint32_t i, uint64_t tat, uint64_t ref) noexcept
    {
        uint64_t  *w = tag_word(&s[i]);
        uint64_t   old = __atomic_load_n(w, __ATOMIC_RELAXED);
        uint64_t   nw;

        do {
            nw = ref | (((old & TW_TAG) + TW_TAG_ONE) & TW_TAG) | tat;
        } while (!__atomic_compare_exchange_n(w, &old, nw, false,
                                              __ATOMIC_RELEASE,
                                              __ATOMIC_RELAXED));

        /* the new tag before whatever is written to the slot next (a
         * quota word swapped after it, ak_cache_quota_take, sees it) */
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }

    /* the TAT of entry i set to 0 (its rate changed), the tag kept */
    void
    reset_tat(uint32_t i) noexcept
    {
        uint64_t  *w = tag_word(&s[i]);
        uint64_t   old = __atomic_load_n(w, __ATOMIC_RELAXED);

        while (!__atomic_compare_exchange_n(w, &old, old & ~TW_TAT, false,
                                            __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED))
        {
        }
    }

    void
    set_ref(uint32_t i) noexcept
    {
        uint64_t  *w = tag_word(&s[i]);

        if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & TW_REF)) {
            __atomic_fetch_or(w, TW_REF, __ATOMIC_RELAXED);
        }
    }

    /* clears the referenced bit; true when it was set */
    bool
    take_ref(uint32_t i) noexcept
    {
        uint64_t  *w = tag_word(&s[i]);

        if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & TW_REF)) {
            return false;
        }

        return __atomic_fetch_and(w, ~TW_REF, __ATOMIC_RELAXED) & TW_REF;
    }

    uint32_t
    find(const unsigned char *hash) noexcept
    {
        uint32_t  i, steps;
        Group    *grp;

        i = *head_of(hash, &grp);

        for (steps = 0; i != NIL; steps++) {
            if (!ok(i) || steps >= h->nslots) {
                bad = true;
                return NIL;
            }

            if (memcmp(s[i].hash, hash, AK_HASH_LEN) == 0) {
                if ((s[i].kind != KIND_POS && s[i].kind != KIND_NEG)
                    || !is_entry(i))
                {
                    bad = true;
                    return NIL;
                }

                return i;
            }

            i = s[i].hnext;
        }

        return NIL;
    }

    /* links entry i (all its fields written) at the head of its bucket */
    void
    bucket_insert(uint32_t i) noexcept
    {
        Group     *grp;
        uint32_t  *head = head_of(s[i].hash, &grp);

        group_open(grp);
        KILL_POINT();
        st(s[i].hnext, *head);
        KILL_POINT();
        st(*head, i);
        group_close(grp);
    }

    void
    bucket_unlink(uint32_t i) noexcept
    {
        uint32_t  *p, j, steps;
        Group     *grp;

        p = head_of(s[i].hash, &grp);

        for (steps = 0; *p != NIL; steps++) {
            j = *p;

            if (!ok(j) || steps >= h->nslots) {
                break;
            }

            if (j == i) {
                group_open(grp);
                KILL_POINT();
                st(*p, s[i].hnext);
                group_close(grp);
                return;
            }

            p = &s[j].hnext;
        }

        bad = true;
    }

    uint32_t *count_of(uint8_t kind) noexcept
    {
        return kind == KIND_POS ? &h->npos : &h->nneg;
    }

    bool
    is_free(uint32_t i) const noexcept
    {
        return (bm[i >> 6] >> (i & 63)) & 1;
    }

    void
    free_slot(uint32_t i) noexcept
    {
        uint32_t  w = i >> 6;

        retag(i, AK_TAT_NONE, 0);
        KILL_POINT();

        if (bm[w] == 0) {
            sm[w >> 6] |= UINT64_C(1) << (w & 63);
        }

        bm[w] |= UINT64_C(1) << (i & 63);
        h->nfree++;
    }

    /* takes free slot i (ok(i), is_free(i)): not an entry (tag word
     * AK_TAT_NONE) until made one */
    uint32_t
    take(uint32_t i) noexcept
    {
        uint32_t  w = i >> 6;

        bm[w] &= ~(UINT64_C(1) << (i & 63));

        if (bm[w] == 0) {
            sm[w >> 6] &= ~(UINT64_C(1) << (w & 63));
        }

        h->nfree--;

        if (i >= h->hwm) {
            __atomic_store_n(&h->hwm, i + 1, __ATOMIC_RELEASE);
        }

        retag(i, AK_TAT_NONE, 0);
        KILL_POINT();

        return i;
    }

    /*
     * The lowest free slot of the first bitmap word with one, from the
     * cursor's summary word on (at most every summary word once).
     */
    uint32_t
    alloc_slot() noexcept
    {
        uint32_t  t, ns, si, w, nw;
        uint64_t  x;

        if (h->nfree == 0) {
            bad = true;
            return NIL;
        }

        nw = (uint32_t) bit_words(h->nslots);
        ns = (nw + 63) / 64;
        si = h->cursor < nw ? h->cursor / 64 : 0;

        for (t = 0; t < ns; t++, si = si + 1 < ns ? si + 1 : 0) {
            x = sm[si];

            if (x == 0) {
                continue;
            }

            w = si * 64 + (uint32_t) __builtin_ctzll(x);

            if (w >= nw || bm[w] == 0
                || !ok(w * 64 + (uint32_t) __builtin_ctzll(bm[w])))
            {
                break;
            }

            h->cursor = w;

            return take(w * 64 + (uint32_t) __builtin_ctzll(bm[w]));
        }

        bad = true;
        return NIL;
    }

    /* slot i when it is free (the one after the previous overflow slot),
     * else any */
    uint32_t
    alloc_at(uint32_t i) noexcept
    {
        if (ok(i) && is_free(i)) {
            return take(i);
        }

        return alloc_slot();
    }

    /*
     * A new entry's slot: the first of its home pair (home_of) that is
     * free, which a reader fetches with the bucket group; else the free
     * slot nearest to it in its bitmap word (the same 8 KiB: often the
     * same page, its TLB entry loaded by the reader's prefetch), else any.
     * Not when the operation made room by eviction (see below).
     */
    uint32_t
    alloc_home(uint32_t home) noexcept
    {
        uint32_t  b;
        uint64_t  x, above;

        if (freed != NIL) {
            /* this operation evicted (or dropped) an entry: its slot, just
             * behind the CLOCK hand, as before there were home slots (a
             * new entry ahead of the hand would get less than a turn) */
            return alloc_at(freed);
        }

        if (!ok(home)) {
            return alloc_slot();
        }

        if (is_free(home)) {
            return take(home);
        }

        if (ok(home ^ 1) && is_free(home ^ 1)) {
            return take(home ^ 1);
        }

        x = bm[home >> 6];

        if (x == 0) {
            return alloc_slot();
        }

        b = home & 63;
        above = x >> b << b;
        b = above ? (uint32_t) __builtin_ctzll(above)
                  : 63 - (uint32_t) __builtin_clzll(x);

        return take((home & ~63u) | b);
    }

    /* Frees the overflow chain of entry i (len bytes). */
    void
    free_chain(uint32_t i) noexcept
    {
        uint32_t  j, next, n;

        n = n_ovf(s[i].len);
        j = s[i].ovf;
        st(s[i].ovf, NIL);

        while (n--) {
            if (!ok(j)) {
                bad = true;
                return;
            }

            next = s[j].ovf;
            free_slot(j);
            h->novf--;
            j = next;
        }
    }

    /* Removes entry i from everything and frees its slots. */
    void
    drop(uint32_t i) noexcept
    {
        uint8_t  kind = s[i].kind;

        if (s[i].len > AK_RECORD_MAX
            || (kind != KIND_POS && kind != KIND_NEG)
            || *count_of(kind) == 0)
        {
            bad = true;
            return;
        }

        bucket_unlink(i);

        if (bad) {
            return;
        }

        KILL_POINT();
        (*count_of(kind))--;
        unmark_gone(i);
        free_chain(i);
        free_slot(i);
        freed = i;
    }

    void
    unmark_gone(uint32_t i) noexcept
    {
        if (s[i].kind == KIND_POS && (s[i].flags & F_GONE)) {
            st(s[i].flags, (uint8_t) (s[i].flags & ~F_GONE));

            if (h->ngone) {
                h->ngone--;
            }
        }
    }

    void
    evict(uint32_t i) noexcept
    {
        drop(i);
        h->evictions++;
    }

    uint64_t
    age(uint32_t i, uint64_t now) const noexcept
    {
        return now > s[i].fetched ? now - s[i].fetched : 0;
    }

    bool
    neg_dead(uint32_t i, uint64_t now) const noexcept
    {
        return s[i].gen != h->gen || age(i, now) >= h->neg_ttl_ms;
    }

    bool
    pos_dead(uint32_t i, uint64_t now) const noexcept
    {
        return age(i, now) >= sat_add(h->ttl_ms, h->stale_ms);
    }

    bool
    dead(uint32_t i, uint64_t now) const noexcept
    {
        return s[i].kind == KIND_NEG ? neg_dead(i, now) : pos_dead(i, now);
    }

    enum Want { ANY, NEG_ONLY, NO_LIVE_POS };

    /*
     * CLOCK: the hand goes over the slots below hwm; of the entries that
     * may go (want), the first expired one, or the first whose referenced
     * bit was clear, is the victim; referenced bits are cleared on the
     * way.  At most kSweepMax slots (two turns of a small cache) are looked
     * at: then the first entry that may go, referenced or not.  NIL: none
     * may go.
     */
    uint32_t
    victim(Want want, uint64_t now, uint32_t exclude) noexcept
    {
        uint32_t  i, n, max, fallback;
        uint8_t   kind;

        if (h->hwm == 0 || h->hwm > h->nslots) {
            return NIL;
        }

        max = h->hwm < kSweepMax / 2 ? 2 * h->hwm + 1 : kSweepMax;
        fallback = NIL;

        for (n = 0; n < max; n++) {
            i = h->hand;

            if (i >= h->hwm) {
                i = 0;
            }

            h->hand = i + 1 < h->hwm ? i + 1 : 0;

            /* a free slot below hwm may never have been written */
            if (i == exclude || is_free(i) || !is_entry(i)) {
                continue;
            }

            kind = s[i].kind;

            if (want == NEG_ONLY && kind != KIND_NEG) {
                continue;
            }

            if (want == NO_LIVE_POS && kind == KIND_POS && !pos_dead(i, now))
            {
                continue;
            }

            if (dead(i, now)) {
                return i;
            }

            if (!take_ref(i)) {
                return i;
            }

            if (fallback == NIL) {
                fallback = i;
            }
        }

        return fallback;
    }

    /*
     * Evicts until need slots are free, for a positive entry (any entry may
     * go but exclude, the one being replaced).
     */
    bool
    room_for_positive(uint32_t need, uint64_t now, uint32_t exclude) noexcept
    {
        uint32_t  v, before, rounds;

        for (rounds = 0; h->nfree < need; rounds++) {
            if (rounds > need + 1) {
                bad = true;
                return false;
            }

            v = victim(ANY, now, exclude);

            if (v == NIL) {
                bad = true;
                return false;
            }

            before = h->nfree;
            evict(v);

            if (bad || h->nfree <= before) {
                bad = true;
                return false;
            }
        }

        return true;
    }

    /*
     * Makes room for one more negative entry without touching live
     * positive entries.  false: do not store it.
     */
    bool
    room_for_negative(uint64_t now) noexcept
    {
        uint32_t  v, rounds;

        for (rounds = 0; h->nneg >= h->neg_max && rounds < 2; rounds++) {
            v = victim(NEG_ONLY, now, NIL);

            if (v == NIL) {
                break;
            }

            evict(v);

            if (bad) {
                return false;
            }
        }

        if (h->nneg >= h->neg_max) {
            return false;
        }

        if (h->nfree > 0) {
            return true;
        }

        v = victim(NO_LIVE_POS, now, NIL);

        if (v == NIL) {
            return false;
        }

        evict(v);

        return !bad && h->nfree > 0;
    }

    /* Copies the blob of entry i into buf (a writer: nothing moves). */
    void
    read_blob(uint32_t i, unsigned char *buf) noexcept
    {
        size_t    len, n;
        uint32_t  j;

        len = s[i].len;
        n = len < kInline ? len : kInline;
        memcpy(buf, s[i].blob, n);
        buf += n;
        len -= n;
        j = s[i].ovf;

        while (len) {
            if (!ok(j)) {
                bad = true;
                return;
            }

            n = len < kOvfData ? len : kOvfData;
            memcpy(buf, reinterpret_cast<unsigned char *>(&s[j]) + kOvfStart,
                   n);
            buf += n;
            len -= n;
            j = s[j].ovf;
        }
    }

    /*
     * Writes blob into entry i, allocating its overflow slots (the slots
     * are filled before they are linked).
     */
    void
    write_blob(uint32_t i, const unsigned char *blob, size_t len) noexcept
    {
        size_t     n;
        uint32_t   j, *link;

        n = len < kInline ? len : kInline;
        racy_write(s[i].blob, blob, n);
        blob += n;
        len -= n;
        link = &s[i].ovf;

        j = i;

        while (len) {
            j = alloc_at(j + 1);    /* next to the previous one, if free */
            if (j == NIL) {
                st(*link, NIL);
                return;
            }

            h->novf++;

            n = len < kOvfData ? len : kOvfData;
            racy_write(reinterpret_cast<unsigned char *>(&s[j]) + kOvfStart,
                       blob, n);
            KILL_POINT();
            st(*link, j);
            blob += n;
            len -= n;
            link = &s[j].ovf;
        }

        st(*link, NIL);
    }
};


/* The slot of hash's positive entry, or NIL; a damaged block is emptied. */
uint32_t
find_positive(ak_cache_s *c, const unsigned char *hash) noexcept
{
    uint32_t  i;
    Cache     x(c);

    i = x.find(hash);

    if (x.bad) {
        reset(c);
        return NIL;
    }

    return (i != NIL && x.s[i].kind == KIND_POS) ? i : NIL;
}


/*
 * The state an entry keeps when its record is replaced by blob: what
 * ak_key_state_carry allows.  A blob that cannot be read (never one built
 * by ak_record_build) keeps everything, as before records were compared.
 */
void
carry_state(Cache &x, uint32_t i, const unsigned char *hash,
    const unsigned char *blob, size_t len, ak_key_state_t *st) noexcept
{
    ak_record_t     o, n;
    unsigned char   old[AK_RECORD_MAX];

    if (x.s[i].len == 0 || x.s[i].len > AK_RECORD_MAX) {
        return;
    }

    x.read_blob(i, old);

    if (x.bad
        || ak_record_view(hash, old, x.s[i].len, &o) != 0
        || ak_record_view(hash, blob, len, &n) != 0)
    {
        return;
    }

    ak_key_state_carry(&o, &n, st);
}


/* the fields of entry i beside its tag word, hash and links */
void
write_fields(Cache &x, uint32_t i, uint64_t now, uint8_t kind, uint8_t flags,
    size_t len) noexcept
{
    Slot  &e = x.s[i];

    st(e.gen, x.h->gen);
    st(e.fetched, now);
    st(e.kind, kind);
    st(e.flags, flags);
    st(e.len, (uint16_t) len);
    st(e.serial, ++x.h->stores);
}


/*
 * The fields after q_used: changed with the lock only, but stored word by
 * word atomically too: a reader holding a stale overflow link may be
 * copying bytes 16-123 of the slot as blob bytes (and throws them away
 * when it sees the group's counter moved)
 */
const size_t  kStateRest = offsetof(ak_key_state_t, q_used) + sizeof(uint64_t);

static_assert(offsetof(ak_key_state_t, q_used) == 16, "q_used after the word");

/*
 * The limiter state beside the tag word (never read by readers) of a slot
 * that becomes an entry.  ak_cache_quota_take may still take a count from
 * the quota word and read q_used of the slot it had found before (it finds
 * the tag changed afterwards and gives up): both are stored atomically.
 */
void
write_state_rest(Slot &e, const ak_key_state_t *from) noexcept
{
    ak::qword::store(&e.st, ak::qword::pack(from->q_window, from->q_left));
    ak::qword::set_used(&e.st, from->q_used);

    racy_write(reinterpret_cast<unsigned char *>(&e.st) + kStateRest,
               reinterpret_cast<const unsigned char *>(from) + kStateRest,
               sizeof(ak_key_state_t) - kStateRest);
}


/*
 * The same for an entry that stays (replaced in place): ak_cache_quota_take
 * may take counts from its quota word meanwhile, so the word is written
 * only when the carry changed it from what was read (qw), and then
 * atomically: the carry either keeps it or drops the counts left (q_left 0,
 * or a fresh window 0), whatever they were, so a count taken since is not
 * given back.  The fields after it change with the lock only.
 */
void
write_state_kept(Slot &e, const ak_key_state_t *from, uint64_t qw) noexcept
{
    uint64_t  nw = ak::qword::pack(from->q_window, from->q_left);

    if (nw != qw) {
        ak::qword::store(&e.st, nw);
    }

    /* q_used is read without the lock too (ak_cache_quota_take) */
    ak::qword::set_used(&e.st, from->q_used);

    racy_write(reinterpret_cast<unsigned char *>(&e.st) + kStateRest,
               reinterpret_cast<const unsigned char *>(from) + kStateRest,
               sizeof(ak_key_state_t) - kStateRest);
}


int
put_once(ak_cache_s *c, const unsigned char *hash, const unsigned char *blob,
    size_t len, uint64_t now, uint64_t seq, bool *bad) noexcept
{
    bool            outdated, rate_reset;
    uint8_t         flags;
    uint32_t        i, novf, have;
    uint64_t        qw;
    Group          *grp;
    ak_key_state_t  state;
    Cache           x(c);

    novf = n_ovf(len);
    outdated = (seq != c->seq);
    /* what the reader's fast path needs to know of the record, once */
    flags = (uint8_t) ak_record_entry_flags(blob, len);
    rate_reset = false;
    qw = 0;
    memset(&state, 0, sizeof(state));

    i = x.find(hash);

    if (x.bad) {
        *bad = true;
        return -1;
    }

    if (i != NIL) {
        /* replace in place: keep the head slot (and its bucket link) */

        if (x.s[i].len > AK_RECORD_MAX) {
            *bad = true;
            return -1;
        }

        if (x.s[i].kind == KIND_POS) {
            /* the tag word is not copied (a reader may change it): a
             * non-zero stand-in tells whether the carry resets the TAT */
            qw = ak::qword::load(&x.s[i].st);
            memcpy(reinterpret_cast<unsigned char *>(&state) + 16,
                   reinterpret_cast<const unsigned char *>(&x.s[i].st) + 16,
                   sizeof(ak_key_state_t) - 16);
            state.q_window = ak::qword::unpack(qw).window;
            state.q_left = ak::qword::unpack(qw).left;
            state.tat_us = 1;
            carry_state(x, i, hash, blob, len, &state);
            rate_reset = (state.tat_us == 0);

            if (outdated) {
                /* a revoke that arrived during the read stays */
                flags |= x.s[i].flags & AK_ENTRY_REVOKED;
            }
        }

        /* room first (the chain it has now counts), the entry itself
         * never goes */
        have = n_ovf(x.s[i].len);

        if (novf > have && !x.room_for_positive(novf - have, now, i)) {
            *bad = true;
            return -1;
        }

        if (x.bad) {
            *bad = true;
            return -1;
        }

        (void) x.head_of(hash, &grp);
        group_open(grp);
        KILL_POINT();

        if (x.s[i].kind == KIND_POS) {
            x.unmark_gone(i);

            if (rate_reset) {
                x.reset_tat(i);
            }

            write_state_kept(x.s[i], &state, qw);

        } else {
            /* a negative entry becomes positive: a new identity */
            (*x.count_of(KIND_NEG))--;
            c->npos++;
            x.retag(i, 0, 0);
            write_state_rest(x.s[i], &state);
        }

        x.free_chain(i);
        write_fields(x, i, now, KIND_POS,
                     flags | (outdated ? F_STORED_STALE : 0), len);
        KILL_POINT();
        x.write_blob(i, blob, len);
        group_close(grp);

    } else {
        if (!x.room_for_positive(novf + 1, now, NIL)) {
            *bad = true;
            return -1;
        }

        i = x.alloc_home(home_of(c, hash));

        if (i == NIL) {
            *bad = true;
            return -1;
        }

        racy_write(x.s[i].hash, hash, AK_HASH_LEN);
        write_state_rest(x.s[i], &state);
        write_fields(x, i, now, KIND_POS,
                     flags | (outdated ? F_STORED_STALE : 0), len);
        x.write_blob(i, blob, len);
        x.retag(i, 0, 0);
        KILL_POINT();
        c->npos++;
        x.bucket_insert(i);
    }

    if (x.bad) {
        *bad = true;
        return -1;
    }

    c->inserts++;

    return 0;
}


int
put_negative_once(ak_cache_s *c, const unsigned char *hash, uint64_t now,
    bool *bad) noexcept
{
    uint32_t        i;
    Group          *grp;
    ak_key_state_t  zero;
    Cache           x(c);

    i = x.find(hash);

    if (x.bad) {
        *bad = true;
        return -1;
    }

    if (i != NIL && x.s[i].kind == KIND_NEG) {
        (void) x.head_of(hash, &grp);
        group_open(grp);
        KILL_POINT();
        st(x.s[i].fetched, now);
        st(x.s[i].gen, c->gen);
        st(x.s[i].flags, (uint8_t) 0);  /* no longer a malformed record */
        group_close(grp);
        x.set_ref(i);

    } else {
        if (i != NIL) {
            /* the key was deleted in Redis: its positive entry goes */
            x.drop(i);

            if (x.bad) {
                *bad = true;
                return -1;
            }
        }

        if (!x.room_for_negative(now)) {
            *bad = x.bad;
            return x.bad ? -1 : 0;
        }

        i = x.alloc_home(home_of(c, hash));

        if (i == NIL) {
            *bad = true;
            return -1;
        }

        memset(&zero, 0, sizeof(zero));
        racy_write(x.s[i].hash, hash, AK_HASH_LEN);
        write_state_rest(x.s[i], &zero);
        write_fields(x, i, now, KIND_NEG, 0, 0);
        st(x.s[i].ovf, NIL);
        x.retag(i, 0, 0);
        KILL_POINT();
        c->nneg++;
        x.bucket_insert(i);
    }

    if (x.bad) {
        *bad = true;
        return -1;
    }

    c->inserts++;

    return 0;
}


/*
 * A malformed record: a negative entry flagged AK_ENTRY_BAD whose inline
 * blob bytes hold the record's version (len stays 0).  1: it was already
 * there with that version.
 */
int
put_bad_once(ak_cache_s *c, const unsigned char *hash, uint64_t now,
    uint64_t seq, uint64_t version, bool *bad) noexcept
{
    int       seen;
    uint32_t  i;
    uint64_t  v;
    Group    *grp;
    Cache     x(c);

    i = x.find(hash);

    if (x.bad) {
        *bad = true;
        return 0;
    }

    seen = 0;

    if (i != NIL && x.s[i].kind == KIND_NEG && (x.s[i].flags & AK_ENTRY_BAD)) {
        memcpy(&v, x.s[i].blob, sizeof(v));
        seen = (v == version);
    }

    if (seq != c->seq) {
        /* events arrived during the read: store nothing */
        return seen;
    }

    if (put_negative_once(c, hash, now, bad) != 0 || *bad) {
        return seen;
    }

    i = x.find(hash);

    if (x.bad) {
        *bad = true;
        return seen;
    }

    if (i != NIL && x.s[i].kind == KIND_NEG) {
        (void) x.head_of(hash, &grp);
        group_open(grp);
        KILL_POINT();
        st(x.s[i].flags, (uint8_t) AK_ENTRY_BAD);
        racy_write(x.s[i].blob, reinterpret_cast<unsigned char *>(&version),
                   sizeof(version));
        group_close(grp);
    }

    return seen;
}


/*
 * The lock-free lookup.  One attempt: the group's counter, the walk, the
 * copy, the counter again.  The answer is kept only when the counter did
 * not move.
 */

struct Found {
    int       rc;
    uint32_t  slot;
    uint32_t  flags;
    size_t    len;
    uint64_t  mark;
    uint64_t  until;    /* FRESH: the now_ms it stops being, else 0 */
};


/*
 * A positive entry's mark: the time it was stored and the cache's count
 * of stores then (ak_cache_lookup_kept), with the cache's random salt.
 * Two stores of one cache share it only when their counts are 2^32 stores
 * apart and their times 2^32 ms (49.7 days) apart to the millisecond; two
 * caches' marks meet by chance, one in 2^64.
 */
inline uint64_t
mark_of(const ak_cache_s *c, uint64_t fetched, uint32_t serial) noexcept
{
    return ((fetched << 32) ^ serial) ^ c->salt;
}


/* a positive entry's answer: FRESH (until when) or STALE, its slot, the
 * flags a caller sees (with kept: 0 or AK_ENTRY_KEPT) and its length */
inline __attribute__((always_inline)) void
found_at(const ak_cache_s *c, Found *f, uint32_t i, uint8_t flags,
    uint16_t len, uint32_t gen, uint64_t now, uint64_t age, uint64_t ttl,
    uint32_t kept) noexcept
{
    if (age < ttl && gen == ld(c->gen) && !(flags & F_STORED_STALE)) {
        f->rc = AK_CACHE_FRESH;
        f->until = now + (ttl - age);

    } else {
        f->rc = AK_CACHE_STALE;
        f->until = 0;
    }

    f->slot = i;
    f->flags = (flags & (AK_ENTRY_REVOKED | AK_ENTRY_PLAIN | AK_ENTRY_RATED))
               | kept;
    f->len = len;
}


/* false: the group changed (or was being changed) during the attempt.
 * Inlined in the lookup: *f then lives in registers */
inline __attribute__((always_inline)) bool
lookup_once(const ak_cache_s *c, const unsigned char *hash, uint64_t now,
    unsigned char *buf, size_t cap, const uint64_t *known, Found *f) noexcept
{
    uint8_t        kind, flags;
    uint16_t       len;
    uint32_t       gi, k, i, j, next, s1, s2, steps, gen, nslots, m, novf;
    uint64_t       fetched, age, ttl, stale;
    bool           whole;
    size_t         rest, n;
    unsigned char *out;
    const unsigned char  *src;
    Group         *g;
    Slot          *s;

    bucket_of(c, hash, &gi, &k);
    g = &groups(c)[gi];
    s = slots(c);
    nslots = c->nslots;

    s1 = __atomic_load_n(&g->seq, __ATOMIC_ACQUIRE);

    if (s1 & 1) {
        return false;
    }

    f->rc = AK_CACHE_MISS;
    f->slot = NIL;
    i = ld(g->head[k]);

    for (steps = 0; i != NIL; steps++) {
        if (i >= nslots || steps >= nslots) {
            goto check;                 /* torn, or a damaged chain */
        }

        /* both lines of the slot at once: the hash is in the first, the
         * fields and the inline blob in the second */
        __builtin_prefetch(reinterpret_cast<const char *>(&s[i]) + 64);

        if (racy_same_hash(s[i].hash, hash)) {
            break;
        }

        i = ld(s[i].hnext);
    }

    if (i == NIL) {
        goto check;
    }

    kind = ld(s[i].kind);
    flags = ld(s[i].flags);
    len = ld(s[i].len);
    gen = ld(s[i].gen);
    fetched = ld(s[i].fetched);
    age = now > fetched ? now - fetched : 0;

    if (kind == KIND_NEG) {
        if (gen != ld(c->gen) || age >= ld(c->neg_ttl_ms)) {
            goto check;                 /* expired (a bad one: kept) */
        }

        f->rc = AK_CACHE_NEGATIVE;
        f->slot = i;
        f->flags = flags & AK_ENTRY_BAD;
        f->len = 0;
        goto check;
    }

    ttl = ld(c->ttl_ms);
    stale = ld(c->stale_ms);

    if (kind != KIND_POS || len == 0 || len > AK_RECORD_MAX
        || age >= sat_add(ttl, stale) || (flags & F_GONE)
        || buf == NULL || cap < len)
    {
        goto check;
    }

    if (known && !(flags & (AK_ENTRY_PLAIN | AK_ENTRY_RATED))) {
        /* (ak_cache_lookup_kept only: a constant NULL elsewhere; the
         * records callers read where they are copied need no mark) */
        f->mark = mark_of(c, fetched, ld(s[i].serial));
        RACE_POINT(AK_RACE_LOOKUP_MARK);

        if (*known && f->mark == *known) {
            /* the record the caller keeps: not copied again */
            goto kept;
        }
    }

    if (len <= kInline && cap >= kInlineWords * 8) {
        /* the common record, inline only: its words, all of them */
        racy_read_inline(buf, s[i].blob);
        goto found;
    }

    j = ld(s[i].ovf);
    novf = n_ovf(len);

    if (len > kInline && cap >= kInline + novf * kOvfData
                                 + (kOvfWords * 8 - kOvfData))
    {
        /*
         * Room for whole slots (the module's buffer, AK_RECORD_MAX, for
         * all but the largest records): the inline words, then each
         * overflow slot's 14 words at once, one bound check a slot.
         */
        if (j < nslots) {
            __builtin_prefetch(&s[j]);
            __builtin_prefetch(reinterpret_cast<const char *>(&s[j]) + 64);
        }

        racy_read_inline(buf, s[i].blob);
        out = buf + kInline;

        for (m = 0; m < novf; m++) {
            if (j >= nslots) {
                goto check;             /* torn: the counter moved */
            }

            next = ld(s[j].ovf);

            if (m + 1 < novf && next < nslots) {
                __builtin_prefetch(&s[next]);
                __builtin_prefetch(reinterpret_cast<const char *>(&s[next])
                                   + 64);
            }

            racy_read_ovf(out, reinterpret_cast<unsigned char *>(&s[j]));
            out += kOvfData;
            j = next;
        }

        goto found;
    }

    rest = len;
    out = buf;

    if (rest > kInline && j < nslots) {
        /* the first overflow slot, while the inline part is copied */
        __builtin_prefetch(&s[j]);
        __builtin_prefetch(reinterpret_cast<const char *>(&s[j]) + 64);
    }

    /* whole words, when the buffer has room for the last one's spill */
    whole = cap - len >= 8;

    n = rest < kInline ? rest : kInline;

    if (whole) {
        racy_read<true>(out, s[i].blob, n);
    } else {
        racy_read<false>(out, s[i].blob, n);
    }

    out += n;
    rest -= n;

    while (rest) {
        if (j >= nslots) {
            goto check;                 /* torn: the counter moved */
        }

        n = rest < kOvfData ? rest : kOvfData;
        next = ld(s[j].ovf);

        if (rest > n && next < nslots) {
            __builtin_prefetch(&s[next]);
            __builtin_prefetch(reinterpret_cast<const char *>(&s[next]) + 64);
        }

        src = reinterpret_cast<unsigned char *>(&s[j]) + kOvfStart;

        if (whole) {
            racy_read<true>(out, src, n);
        } else {
            racy_read<false>(out, src, n);
        }

        out += n;
        rest -= n;
        j = next;
    }

found:

    found_at(c, f, i, flags, len, gen, now, age, ttl, 0);

check:

    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    s2 = ld(g->seq);

    return s1 == s2;

kept:

    /* as found, and AK_ENTRY_KEPT (a bit never stored) */
    found_at(c, f, i, flags, len, gen, now, age, ttl, AK_ENTRY_KEPT);

    goto check;
}


/* inlined in ak_cache_lookup and _again: their call of it cost 11
 * instructions, its nine arguments passed on (three on the stack) */
inline __attribute__((always_inline)) int
lookup(ak_cache_s *c, const unsigned char *hash, uint64_t now,
    unsigned char *buf, size_t cap, size_t *len, uint32_t *flags,
    uint32_t *slot, bool counted, uint64_t *mark, uint64_t *until) noexcept
{
    int       tries;
    Found     f;
    Stripe   *sp;
    Slot     *home;
    uint64_t *w;

    f.rc = AK_CACHE_MISS;
    f.slot = NIL;
    f.flags = 0;
    f.len = 0;
    f.mark = 0;
    f.until = 0;

    /* the home pair, where the entry most likely is, fetched while the
     * bucket group is: the two misses overlap instead of following each
     * other (a prefetch reads nothing and cannot fault: the second slot
     * of the last pair may be past nslots, in the block's end or not) */
    home = &slots(c)[home_of(c, hash) & ~1u];
    __builtin_prefetch(reinterpret_cast<const char *>(home) + 32);
    __builtin_prefetch(reinterpret_cast<const char *>(home) + 64);
    __builtin_prefetch(reinterpret_cast<const char *>(home) + 128 + 32);
    __builtin_prefetch(reinterpret_cast<const char *>(home) + 128 + 64);

    for (tries = 0; tries < kReadTries; tries++) {
        if (lookup_once(c, hash, now, buf, cap, mark, &f)) {
            break;
        }

        f.rc = AK_CACHE_MISS;
        f.mark = 0;
        cpu_relax();
    }

    sp = my_stripe(c);

    if (tries) {
        count(&sp->retries, (uint64_t) tries);
    }

    switch (f.rc) {

    case AK_CACHE_FRESH:
        count(&sp->hits, counted);
        break;

    case AK_CACHE_STALE:
        count(&sp->stale_hits, counted);
        break;

    case AK_CACHE_NEGATIVE:
        count(&sp->negative_hits, counted);
        break;

    default:
        count(&sp->misses, counted);

        if (mark) {
            *mark = 0;
            *until = 0;
        }

        return AK_CACHE_MISS;
    }

    /* CLOCK: referenced (the slot may hold another entry by now: then
     * that one gets a second chance, nothing worse) */
    w = tag_word(&slots(c)[f.slot]);

    if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & TW_REF)) {
        __atomic_fetch_or(w, TW_REF, __ATOMIC_RELAXED);
    }

    if (len) {
        *len = f.len;
    }

    if (flags) {
        *flags = f.flags;
    }

    if (slot) {
        *slot = f.slot;
    }

    if (mark) {
        *mark = f.mark;
        *until = f.until;
    }

    return f.rc;
}


bool
aligned(const void *p) noexcept
{
    return (reinterpret_cast<uintptr_t>(p) & 7) == 0;
}


/* a cache's salt (mark_of): 8 random bytes from the kernel, else the
 * time, the process and the block's address, mixed (splitmix64) */
uint64_t
new_salt(const void *mem) noexcept
{
    uint64_t         x;
    struct timespec  ts;

    if (getrandom(&x, sizeof(x), GRND_NONBLOCK) == (ssize_t) sizeof(x)) {
        return x;
    }

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    x = (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
    x ^= (uint64_t) getpid() << 40;
    x ^= (uint64_t) reinterpret_cast<uintptr_t>(mem);

    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);

    return x ^ (x >> 31);
}

} /* namespace */


/*
 * The C entry points, declared AK_NOEXCEPT in ak_core.h (noexcept in C++):
 * none of them can throw, they call nothing but the noexcept helpers above
 * and memset/memcpy.
 */

extern "C" {

void
ak_cache_set_stripe(unsigned n) noexcept
{
    g_stripe = n % kStripes;
}


size_t
ak_cache_min_size(void) noexcept
{
    return (size_t) layout_bytes(kMinSlots);
}


ak_cache_t *
ak_cache_create(void *mem, size_t size, const ak_cache_conf_t *conf) noexcept
{
    Layout       l;
    ak_cache_s  *h;

    if (mem == NULL || !aligned(mem) || !layout_of(size, &l)) {
        return NULL;
    }

    h = static_cast<ak_cache_s *>(mem);
    memset(h, 0, kGroupsOff);
    memset(static_cast<unsigned char *>(mem) + kGroupsOff, 0,
           (size_t) l.ngroups * kGroupSize);

    h->magic = kMagic;
    h->version = kVersion;
    h->slot_size = sizeof(Slot);
    h->size = size;
    h->groups_off = kGroupsOff;
    h->slots_off = l.slots_off;
    h->nslots = l.nslots;
    h->ngroups = l.ngroups;
    h->seq = 1;
    h->gen = 1;
    h->salt = new_salt(h);

    apply_conf(h, conf);
    format(h);

    return h;
}


const char *
ak_cache_validate(const void *mem, size_t size) noexcept
{
    Layout              l;
    uint64_t            used;
    const ak_cache_s   *h;

    if (mem == NULL) {
        return "no block";
    }

    if (!aligned(mem)) {
        return "block not aligned to 8 bytes";
    }

    if (!layout_of(size, &l)) {
        return "block too small for a cache";
    }

    h = static_cast<const ak_cache_s *>(mem);

    /* the layout: what every operation trusts */

    if (h->magic != kMagic) {
        return "not a cache block (bad magic)";
    }

    if (h->version != kVersion) {
        return "cache layout version differs";
    }

    if (h->slot_size != sizeof(Slot)) {
        return "slot size differs";
    }

    if (h->size != size) {
        return "block size differs from the one the cache was created with";
    }

    if (h->nslots != l.nslots || h->ngroups != l.ngroups) {
        return "slot or bucket count does not match the block size";
    }

    if (h->groups_off != kGroupsOff || h->slots_off != l.slots_off) {
        return "bucket or slot area offset does not match the block size";
    }

    /* the mutable fields: indices in range, counts that add up */

    if (h->hwm > h->nslots) {
        return "high-water mark beyond the slot count";
    }

    if (h->nfree > h->nslots || h->nfree < h->nslots - h->hwm) {
        return "free slot count out of range";
    }

    used = (uint64_t) h->npos + h->nneg + h->novf;

    if (used + h->nfree != h->nslots) {
        return "entry, overflow and free slot counts do not add up";
    }

    if (h->cursor >= bit_words(h->nslots)) {
        return "free bitmap cursor out of range";
    }

    if (h->hand > h->nslots) {
        return "CLOCK hand beyond the slot count";
    }

    if (h->writing > 1) {
        return "writer flag out of range";
    }

    if (h->ngone > h->npos) {
        return "count of entries removed by updates out of range";
    }

    if (h->neg_pct == 0 || h->neg_pct > 100
        || h->neg_max == 0 || h->neg_max > h->nslots)
    {
        return "negative entry limit out of range";
    }

    return NULL;
}


size_t
ak_cache_check_scratch(const ak_cache_t *c) noexcept
{
    return c ? c->nslots : 0;
}


namespace {

/* ak_record_entry_flags of positive entry i's blob (its chain checked) */
uint32_t
entry_flags(const ak_cache_t *c, uint32_t i) noexcept
{
    unsigned char  buf[AK_RECORD_MAX];
    Cache          x(const_cast<ak_cache_s *>(c));

    x.read_blob(i, buf);            /* reads only: len <= AK_RECORD_MAX */

    return x.bad ? 0 : ak_record_entry_flags(buf, x.s[i].len);
}

} // namespace


const char *
ak_cache_check(const ak_cache_t *c, unsigned char *scratch,
    size_t scratch_len) noexcept
{
    enum { UNSEEN = 0, ENTRY, OVERFLOW, FREE };

    const char          *why;
    uint32_t             gi, k, i, j, n, count, gone, npos, nneg, steps;
    uint32_t             xg, xk;
    uint64_t             w, nw;
    const uint64_t      *bm, *sm;
    const Group         *g;
    const Slot          *s;

    if (c == NULL) {
        return "no cache";
    }

    why = ak_cache_validate(c, c->size);
    if (why) {
        return why;
    }

    if (scratch == NULL || scratch_len < c->nslots) {
        return "scratch too small";
    }

    if (c->writing) {
        return "a writer was interrupted (the next one reformats)";
    }

    memset(scratch, UNSEEN, c->nslots);

    g = groups(c);
    s = slots(c);

    /* bucket chains: every entry once, in the bucket of its hash */

    npos = 0;
    nneg = 0;
    gone = 0;

    for (gi = 0; gi < c->ngroups; gi++) {
        if (g[gi].seq & 1) {
            return "bucket group: counter left odd";
        }

        for (k = 0; k < kGroupBuckets; k++) {
            steps = 0;

            for (i = g[gi].head[k]; i != NIL; i = s[i].hnext) {
                if (i >= c->hwm || scratch[i] != UNSEEN
                    || steps++ >= c->nslots)
                {
                    return "bucket chain: index out of range or seen twice";
                }

                scratch[i] = ENTRY;

                bucket_of(c, s[i].hash, &xg, &xk);
                if (xg != gi || xk != k) {
                    return "bucket chain: entry in the wrong bucket";
                }

                if ((s[i].st.tat_us & TW_TAT) == AK_TAT_NONE) {
                    return "bucket chain: slot tagged as no entry";
                }

                if (s[i].kind == KIND_POS) {
                    if (s[i].len == 0 || s[i].len > AK_RECORD_MAX) {
                        return "positive entry: blob length out of range";
                    }
                    if (s[i].flags & ~(AK_ENTRY_REVOKED | AK_ENTRY_PLAIN
                                       | AK_ENTRY_RATED | F_STORED_STALE
                                       | F_GONE))
                    {
                        return "positive entry: unknown flags";
                    }
                    gone += (s[i].flags & F_GONE) ? 1 : 0;
                    npos++;

                } else if (s[i].kind == KIND_NEG) {
                    if (s[i].len != 0 || s[i].ovf != NIL
                        || (s[i].flags & ~AK_ENTRY_BAD))
                    {
                        return "negative entry: blob, overflow or flags";
                    }
                    nneg++;

                } else {
                    return "bucket chain: slot is not an entry";
                }
            }
        }
    }

    if (npos != c->npos || nneg != c->nneg) {
        return "entry count differs from the bucket chains";
    }

    if (gone != c->ngone) {
        return "count of entries removed by updates differs";
    }

    /* overflow chains: exactly as many slots as the blob needs */

    count = 0;

    for (i = 0; i < c->hwm; i++) {
        if (scratch[i] != ENTRY || s[i].kind != KIND_POS) {
            continue;
        }

        j = s[i].ovf;

        for (n = n_ovf(s[i].len); n > 0; n--) {
            if (j >= c->hwm || scratch[j] != UNSEEN) {
                return "overflow chain: index out of range or seen twice";
            }

            if ((s[j].st.tat_us & TW_TAT) != AK_TAT_NONE) {
                return "overflow slot tagged as an entry";
            }

            scratch[j] = OVERFLOW;
            count++;
            j = s[j].ovf;
        }

        if (j != NIL) {
            return "overflow chain longer than its blob";
        }

        /* AK_ENTRY_PLAIN and _RATED, what readers act on unviewed, are
         * the blob's */

        if ((s[i].flags & (AK_ENTRY_PLAIN | AK_ENTRY_RATED))
            != entry_flags(c, i))
        {
            return "positive entry: AK_ENTRY_PLAIN or _RATED differs from "
                   "its blob";
        }
    }

    if (count != c->novf) {
        return "overflow slot count differs from the chains";
    }

    /* the free bitmap and its summary, then every slot below hwm
     * accounted for (a free slot below hwm may never have been written:
     * its tag word is not looked at) */

    bm = bitmap(c);
    sm = summary(c);
    nw = bit_words(c->nslots);
    count = 0;

    for (w = 0; w < (nw + 63) / 64 * 64; w++) {
        if (w < nw
            && (w + 1 < nw || c->nslots % 64 == 0
                || (bm[w] >> (c->nslots % 64)) == 0)
            && ((sm[w / 64] >> (w % 64)) & 1) == (bm[w] != 0))
        {
            continue;
        }

        if (w >= nw && ((sm[w / 64] >> (w % 64)) & 1) == 0) {
            continue;
        }

        return "free bitmap: a bit past the slots, or a summary bit wrong";
    }

    for (i = 0; i < c->nslots; i++) {
        if (!((bm[i / 64] >> (i % 64)) & 1)) {
            if (i >= c->hwm) {
                return "slot in use at or above the high-water mark";
            }

            continue;
        }

        if (scratch[i] != UNSEEN) {
            return "free bitmap: a slot in use marked free";
        }

        scratch[i] = FREE;
        count++;
    }

    if (count != c->nfree) {
        return "free slot count differs from the free bitmap";
    }

    for (i = 0; i < c->hwm; i++) {
        if (scratch[i] == UNSEEN) {
            return "slot neither free nor used";
        }
    }

    return NULL;
}


int
ak_cache_recover(void *mem, size_t size) noexcept
{
    Layout        l;
    ak_cache_s   *h;

    if (mem == NULL || !aligned(mem) || !layout_of(size, &l)) {
        return -1;
    }

    h = static_cast<ak_cache_s *>(mem);

    if (h->magic != kMagic || h->version != kVersion
        || h->slot_size != sizeof(Slot) || h->size != size
        || h->nslots != l.nslots || h->ngroups != l.ngroups
        || h->groups_off != kGroupsOff || h->slots_off != l.slots_off)
    {
        return -1;
    }

    if (h->writing == 0 && ak_cache_validate(mem, size) == NULL) {
        return 0;
    }

    /* a writer died in the middle of an operation: empty it, as the next
     * writer would (Writing) */
    writes_begin(h);
    reset(h);
    h->writing = 0;
    writes_end(h);

    return 1;
}


ak_cache_t *
ak_cache_attach(void *mem, size_t size) noexcept
{
    if (ak_cache_validate(mem, size) != NULL) {
        return NULL;
    }

    return static_cast<ak_cache_s *>(mem);
}


void
ak_cache_set_conf(ak_cache_t *c, const ak_cache_conf_t *conf) noexcept
{
    if (c) {
        Writing  w(c);

        apply_conf(c, conf);
    }
}


size_t
ak_cache_bytes_per_key(void) noexcept
{
    /* a slot, its share of a bucket group and its bit, rounded up:
     * 128 + 64 / 15 + 1 / 8 */
    return sizeof(Slot) + (kGroupSize * 8 + 1 * kGroupBuckets
                           + kGroupBuckets * 8 - 1) / (kGroupBuckets * 8);
}


int
ak_cache_lookup(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, size_t *len,
    uint32_t *flags, uint32_t *slot) noexcept
{
    if (c == NULL || hash == NULL) {
        return AK_CACHE_MISS;
    }

    return lookup(c, hash, now_ms, buf, cap, len, flags, slot, true,
                  nullptr, nullptr);
}


namespace {

/* what a lookup said of the store a caller keeps: its count of writes,
 * freshness, length, flags and slot */
inline void
note_kept(ak_cache_kept_t *k, const ak_cache_found_t *found) noexcept
{
    k->writes = found->writes;
    k->until = found->until;
    k->len = found->len;
    k->flags = found->flags & ~AK_ENTRY_KEPT;
    k->slot = found->slot;
}


/* ak_cache_lookup_kept when the kept record is not known unchanged: a
 * frame of its own, so that the call that is answers without one */
__attribute__((noinline)) int
lookup_kept_looking(ak_cache_t *c, const unsigned char *hash,
    uint64_t now_ms, unsigned char *buf, size_t cap, ak_cache_found_t *found)
    noexcept
{
    int               rc;
    ak_cache_kept_t  *k;

    k = found->kept;

    if (k) {
        found->mark = k->mark;

    } else {
        found->writes = 1;      /* (not read: odd, nothing to keep by) */
    }

    rc = lookup(c, hash, now_ms, buf, cap, &found->len, &found->flags,
                &found->slot, true, &found->mark, &found->until);

    if (k && (found->flags & AK_ENTRY_KEPT)) {
        /* the kept record's store (its mark says so), found at the count
         * of writes read before the lookup */
        note_kept(k, found);
    }

    return rc;
}

} /* namespace */


int
ak_cache_lookup_kept(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, ak_cache_found_t *found)
    noexcept
{
    uint64_t          w;
    ak_cache_kept_t  *k;

    if (c == NULL || hash == NULL || found == NULL) {
        return AK_CACHE_MISS;
    }

    k = found->kept;

    if (k) {
        /*
         * The count of writes first (acquire): when it is even and the
         * one the kept record was found at, no writer changed an entry
         * since, nor is changing one: the entry is as it was, fresh until
         * k->until.  Else it is read before the lookup reads the entry,
         * so that a write after that makes it differ from the value kept
         * with the answer.
         */
        w = __atomic_load_n(&c->writes, __ATOMIC_ACQUIRE);
        found->writes = w;

        if (w == k->writes && !(w & 1) && k->mark != 0 && now_ms < k->until
            && k->salt == c->salt && racy_same_hash(k->hash, hash))
        {
            count(&my_stripe(c)->hits, 1);

            found->mark = k->mark;
            found->until = k->until;
            found->len = k->len;
            found->flags = k->flags | AK_ENTRY_KEPT;
            found->slot = k->slot;

            return AK_CACHE_FRESH;
        }
    }

    return lookup_kept_looking(c, hash, now_ms, buf, cap, found);
}


void
ak_cache_keep(const ak_cache_t *c, ak_cache_kept_t *k,
    const unsigned char hash[AK_HASH_LEN], const ak_cache_found_t *found)
    noexcept
{
    if (k == NULL) {
        return;
    }

    if (c == NULL || hash == NULL || found == NULL || found->mark == 0) {
        k->mark = 0;
        k->until = 0;
        return;
    }

    memcpy(k->hash, hash, AK_HASH_LEN);
    k->mark = found->mark;
    k->salt = c->salt;
    note_kept(k, found);
}


int
ak_cache_lookup_again(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, size_t *len,
    uint32_t *flags, uint32_t *slot) noexcept
{
    if (c == NULL || hash == NULL) {
        return AK_CACHE_MISS;
    }

    return lookup(c, hash, now_ms, buf, cap, len, flags, slot, false,
                  nullptr, nullptr);
}


/*
 * 0 ok, -1 when the blob can never fit (len 0 or > AK_RECORD_MAX).
 */
int
ak_cache_put(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, uint64_t now_ms, uint64_t seq) noexcept
{
    int   rc;
    bool  bad;

    if (c == NULL || hash == NULL || blob == NULL || len == 0
        || len > AK_RECORD_MAX)
    {
        return -1;
    }

    Writing  w(c);

    bad = false;
    rc = put_once(c, hash, blob, len, now_ms, seq, &bad);

    if (bad) {
        /* the block was inconsistent: start over on an empty cache */
        reset(c);
        bad = false;
        rc = put_once(c, hash, blob, len, now_ms, seq + 1, &bad);
    }

    return bad ? -1 : rc;
}


/*
 * 0 ok: stored, or deliberately not stored (events arrived since seq, or
 * no slot can be had without evicting a live positive entry).  -1 bad
 * arguments.
 */
int
ak_cache_put_negative(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, uint64_t seq) noexcept
{
    bool  bad;

    if (c == NULL || hash == NULL) {
        return -1;
    }

    Writing  w(c);

    if (seq != c->seq) {
        return 0;
    }

    bad = false;
    (void) put_negative_once(c, hash, now_ms, &bad);

    if (bad) {
        reset(c);
    }

    return 0;
}


int
ak_cache_put_bad(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, uint64_t seq, uint64_t version) noexcept
{
    int   seen;
    bool  bad;

    if (c == NULL || hash == NULL) {
        return -1;
    }

    Writing  w(c);

    bad = false;
    seen = put_bad_once(c, hash, now_ms, seq, version, &bad);

    if (bad) {
        reset(c);
        return 0;
    }

    return seen;
}


int
ak_cache_revoke(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN]) noexcept
{
    uint32_t  i;
    Group    *grp;

    if (c == NULL || hash == NULL) {
        return 0;
    }

    Writing  w(c);

    st(c->seq, c->seq + 1);

    i = find_positive(c, hash);

    if (i == NIL) {
        return 0;
    }

    Cache  x(c);

    (void) x.head_of(hash, &grp);
    group_open(grp);
    KILL_POINT();
    st(x.s[i].flags, (uint8_t) (x.s[i].flags | AK_ENTRY_REVOKED));
    group_close(grp);

    return (x.s[i].flags & F_GONE) ? 0 : 1;
}


int
ak_cache_remove(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN]) noexcept
{
    uint32_t  i;
    Group    *grp;

    if (c == NULL || hash == NULL) {
        return 0;
    }

    Writing  w(c);

    st(c->seq, c->seq + 1);

    Cache  x(c);

    i = x.find(hash);

    if (i == NIL) {
        if (x.bad) {
            reset(c);
        }

        return 0;
    }

    if (x.s[i].kind == KIND_POS) {
        /* kept for its limiter state until re-read or evicted */

        if (x.s[i].flags & F_GONE) {
            return 0;
        }

        (void) x.head_of(hash, &grp);
        group_open(grp);
        KILL_POINT();
        st(x.s[i].flags, (uint8_t) (x.s[i].flags | F_GONE));
        group_close(grp);
        c->ngone++;

        return 1;
    }

    x.drop(i);

    if (x.bad) {
        reset(c);
        return 0;
    }

    return 1;
}


void
ak_cache_flush(ak_cache_t *c) noexcept
{
    if (c) {
        Writing  w(c);

        reset(c);
    }
}


void
ak_cache_new_generation(ak_cache_t *c) noexcept
{
    if (c) {
        Writing  w(c);

        st(c->seq, c->seq + 1);
        st(c->gen, c->gen + 1);
    }
}


uint64_t
ak_cache_event_seq(const ak_cache_t *c) noexcept
{
    return c ? __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE) : 0;
}


ak_key_state_t *
ak_cache_state(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN]) noexcept
{
    uint32_t  i;

    if (c == NULL || hash == NULL || slot >= c->nslots) {
        return NULL;
    }

    Writing  w(c, false);

    i = find_positive(c, hash);

    if (i == NIL || i != slot) {
        return NULL;
    }

    return &slots(c)[i].st;
}


ak_key_state_t *
ak_cache_state_find(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint32_t *slot) noexcept
{
    uint32_t  i;

    if (c == NULL || hash == NULL) {
        return NULL;
    }

    Writing  w(c, false);

    i = find_positive(c, hash);

    if (i == NIL) {
        return NULL;
    }

    if (slot) {
        *slot = i;
    }

    return &slots(c)[i].st;
}


namespace {

/*
 * One GCRA step on an entry's tag word, read as *w: 1 admitted (the new
 * TAT swapped in), 0 limited (nothing changed), 2 the word changed since
 * (*w: its new value)
 */
inline __attribute__((always_inline)) int
gcra_swap(uint64_t *word, uint64_t *w, uint64_t now_us, uint64_t interval_us,
    uint32_t burst, ak_rate_result_t *res) noexcept
{
    uint64_t  tat;

    tat = *w & TW_TAT;

    if (!ak::gcra(&tat, now_us, interval_us, burst, res)) {
        return 0;
    }

    if (tat >= AK_TAT_NONE) {
        tat = AK_TAT_NONE - 1;
    }

    return __atomic_compare_exchange_n(word, w, (*w & ~TW_TAT) | tat, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
           ? 1 : 2;
}

} /* namespace */


int
ak_cache_gcra(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint64_t now_us,
    uint64_t interval_us, uint32_t burst, ak_rate_result_t *res) noexcept
{
    int        tries, rc;
    uint64_t   w, *word;
    Slot      *e;

    if (c == NULL || hash == NULL || slot >= c->nslots) {
        return -1;
    }

    e = &slots(c)[slot];
    word = tag_word(e);
    w = __atomic_load_n(word, __ATOMIC_ACQUIRE);

    for (tries = 0; tries < 64; tries++) {
        /*
         * The word was read (acquire) before the identity is checked: a
         * writer stores a new identity's fields before its tag word
         * (release), so what is read here is the entry's of that word or
         * of a later one, and a later one changed the word: the CAS below
         * fails.
         */
        if ((w & TW_TAT) == AK_TAT_NONE || ld(e->kind) != KIND_POS
            || !racy_same_hash(e->hash, hash)
            || slot >= __atomic_load_n(&c->hwm, __ATOMIC_ACQUIRE))
        {
            /* not an entry, another one, or flushed (a flush leaves the
             * slots as they were, the high-water mark at 0: a slot is
             * reused below it only after its tag moved on) */
            return -1;
        }

        rc = gcra_swap(word, &w, now_us, interval_us, burst, res);

        if (rc != 2) {
            return rc;
        }
    }

    return -1;
}


namespace {

/* ak_cache_gcra_found's way when the lookup's count of writes says
 * nothing: by the key's hash (a frame of its own, reached by a jump) */
__attribute__((noinline)) int
gcra_by_hash(ak_cache_t *c, const unsigned char *hash,
    const ak_cache_found_t *found, uint64_t now_us, const ak_record_t *rec,
    ak_rate_result_t *res) noexcept
{
    return ak_cache_gcra(c, found->slot, hash, now_us, rec->rate_interval_us,
                         rec->burst, res);
}

} /* namespace */


int
ak_cache_gcra_found(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    const ak_cache_found_t *found, uint64_t now_us, const ak_record_t *rec,
    ak_rate_result_t *res) noexcept
{
    int        rc;
    uint64_t   w, *word;

    if (c == NULL || found == NULL || rec == NULL
        || found->slot >= c->nslots)
    {
        return -1;
    }

    if (found->writes & 1) {
        /* (no count read, or a writer was at work then) */
        return gcra_by_hash(c, hash, found, now_us, rec, res);
    }

    word = tag_word(&slots(c)[found->slot]);
    w = __atomic_load_n(word, __ATOMIC_ACQUIRE);

    /*
     * The word was read (acquire) before the count of writes: a writer
     * makes the count odd (and a release fence) before it changes a slot's
     * identity, so while the count is the one read before the lookup found
     * the entry in this slot, the word read is that entry's; a later change
     * of identity changes the word, and the swap below fails.  One swap:
     * when it fails (another request's swap, or a writer), by the hash,
     * which tries again.
     */
    if (ld(c->writes) != found->writes) {
        return gcra_by_hash(c, hash, found, now_us, rec, res);
    }

    if ((w & TW_TAT) == AK_TAT_NONE) {
        return -1;
    }

    RACE_POINT(AK_RACE_GCRA_FOUND);

    rc = gcra_swap(word, &w, now_us, rec->rate_interval_us, rec->burst, res);

    return (rc != 2) ? rc : gcra_by_hash(c, hash, found, now_us, rec, res);
}


int
ak_cache_quota_take(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint8_t period, uint64_t quota_n,
    uint64_t quota_lease, int64_t now, ak_admit_result_t *res) noexcept
{
    int               tries;
    int64_t           start, end;
    uint32_t          window;
    uint64_t          t0, t1, qw, used;
    Slot             *e;
    ak::qword::Pair   p;

    if (c == NULL || hash == NULL || res == NULL || slot >= c->nslots
        || ak_quota_window(period, now, &start, &end) != 0)
    {
        return -1;
    }

    window = (uint32_t) (start / 3600);
    e = &slots(c)[slot];

    /*
     * The tag word first (acquire), then the identity, as ak_cache_gcra
     * does; the quota word is read after them.
     */
    t0 = __atomic_load_n(tag_word(e), __ATOMIC_ACQUIRE);

    if ((t0 & TW_TAT) == AK_TAT_NONE || ld(e->kind) != KIND_POS
        || !racy_same_hash(e->hash, hash)
        || slot >= __atomic_load_n(&c->hwm, __ATOMIC_ACQUIRE))
    {
        return -1;
    }

    qw = ak::qword::load(&e->st);

    for (tries = 0; tries < 8; tries++) {
        p = ak::qword::unpack(qw);

        if (p.window != window || p.left == 0) {
            return -1;                  /* a new window, or a lease: locked */
        }

        if (!ak::qword::cas(&e->st, &qw, ak::qword::pack(window, p.left - 1)))
        {
            continue;                   /* qw is the word found */
        }

        RACE_POINT(AK_RACE_QUOTA_TAKEN);

        /*
         * Taken.  The quota word has no tag of its own: if the slot changed
         * identity since t0 was read, the count came off whatever the slot
         * holds now (the writer moved the tag on before writing the slot
         * again, and stores a new entry's state before its tag word): the
         * safe side, a leased count lost, never one served twice.  The
         * request is then decided under the lock.
         */
        t1 = __atomic_load_n(tag_word(e), __ATOMIC_ACQUIRE);

        if ((t1 & TW_TAG) != (t0 & TW_TAG) || (t1 & TW_TAT) == AK_TAT_NONE) {
            return -1;
        }

        /* q_used changes with the lock held only (a lease, the offline
         * share, a new window): the total as known now */
        used = __atomic_load_n(&e->st.q_used, __ATOMIC_ACQUIRE);

        *res = ak_admit_result_t{};
        res->quota_used = used;
        res->window_start = start;
        res->window_end = end;
        res->window = window;

        return ak_quota_took(quota_n, used, p.left - 1, quota_lease, res);
    }

    return -1;
}


int
ak_cache_limits_take(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint64_t now_us,
    uint64_t interval_us, uint32_t burst, uint8_t period, uint64_t quota_n,
    uint64_t quota_lease, int64_t now, ak_admit_result_t *res,
    uint32_t *stamp) noexcept
{
    int               tries;
    int64_t           start, end;
    uint32_t          window, gi, k;
    uint64_t          t0, w, qw, tat, used;
    Slot             *e;
    ak::qword::Pair   p;
    ak_rate_result_t  rate;

    if (c == NULL || hash == NULL || res == NULL || stamp == NULL
        || slot >= c->nslots
        || ak_quota_window(period, now, &start, &end) != 0)
    {
        return -1;
    }

    window = (uint32_t) (start / 3600);
    e = &slots(c)[slot];

    /*
     * The key's group's counter before anything: a count owed is given
     * back only if no writer changed the group since (ak_cache_give_back),
     * so never into a word a writer rewrote meanwhile (a record replaced
     * with a lower quota drops the counts left; a new identity).  A writer
     * at work: under the lock.
     */
    bucket_of(c, hash, &gi, &k);
    *stamp = __atomic_load_n(&groups(c)[gi].seq, __ATOMIC_ACQUIRE);

    if (*stamp & 1) {
        return -1;
    }

    /* the tag word, then the identity (as ak_cache_gcra), then the quota
     * word: a leased count of the window of now, else under the lock */

    t0 = __atomic_load_n(tag_word(e), __ATOMIC_ACQUIRE);

    if ((t0 & TW_TAT) == AK_TAT_NONE || ld(e->kind) != KIND_POS
        || !racy_same_hash(e->hash, hash)
        || slot >= __atomic_load_n(&c->hwm, __ATOMIC_ACQUIRE))
    {
        return -1;
    }

    qw = ak::qword::load(&e->st);
    p = ak::qword::unpack(qw);

    if (p.window != window || p.left == 0) {
        return -1;
    }

    /* the rate first: a request it limits takes nothing */

    tat = t0 & TW_TAT;

    if (!ak::gcra(&tat, now_us, interval_us, burst, &rate)) {
        *res = ak_admit_result_t{};
        res->rate = rate;
        return AK_DENY_RATE;
    }

    /* one count (one try: contention goes to the lock, nothing taken) */

    if (!ak::qword::cas(&e->st, &qw, ak::qword::pack(window, p.left - 1))) {
        return -1;
    }

    RACE_POINT(AK_RACE_LIMITS_TAKEN);

    /*
     * Taken.  If the tag moved since t0 the count may have come off
     * another entry the slot holds now: lost (as in ak_cache_quota_take),
     * never given to this key, and the request is decided under the lock.
     * Else the count is this key's from here on: a tag that moves later
     * moved after the count was taken.
     */
    w = __atomic_load_n(tag_word(e), __ATOMIC_ACQUIRE);

    if ((w & TW_TAG) != (t0 & TW_TAG) || (w & TW_TAT) == AK_TAT_NONE) {
        return -1;
    }

    for (tries = 0; tries < 64; tries++) {
        tat = w & TW_TAT;

        if (!ak::gcra(&tat, now_us, interval_us, burst, &rate)) {
            /* other requests took the rate meanwhile */
            res->window = window;
            return AK_TAKE_GIVE_BACK;
        }

        if (tat >= AK_TAT_NONE) {
            tat = AK_TAT_NONE - 1;
        }

        RACE_POINT(AK_RACE_LIMITS_TAT);

        if (__atomic_compare_exchange_n(tag_word(e), &w, (w & ~TW_TAT) | tat,
                                        false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
        {
            /* q_used changes with the lock held only: the total as known
             * now */
            used = __atomic_load_n(&e->st.q_used, __ATOMIC_ACQUIRE);

            *res = ak_admit_result_t{};
            res->rate = rate;
            res->quota_used = used;
            res->window_start = start;
            res->window_end = end;
            res->window = window;

            return ak_quota_took(quota_n, used, p.left - 1, quota_lease, res);
        }

        /* w is the word found */

        if ((w & TW_TAG) != (t0 & TW_TAG) || (w & TW_TAT) == AK_TAT_NONE) {
            break;                      /* the entry left the slot */
        }
    }

    res->window = window;

    return AK_TAKE_GIVE_BACK;
}


int
ak_cache_give_back(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint32_t window, uint32_t stamp)
    noexcept
{
    uint32_t  gi, k;

    if (c == NULL || hash == NULL || slot >= c->nslots) {
        return 0;
    }

    bucket_of(c, hash, &gi, &k);

    /* no writer changed the key's group since the count was taken: the
     * entry, its record and its quota word are the ones it came from */
    if (ld(groups(c)[gi].seq) != stamp || (stamp & 1)) {
        return 0;
    }

    Writing  w(c, false);

    if (find_positive(c, hash) != slot) {
        return 0;
    }

    return ak_quota_give_back(&slots(c)[slot].st, window);
}


int
ak_cache_peek(const ak_cache_t *c, const unsigned char hash[AK_HASH_LEN])
    noexcept
{
    uint32_t  i;

    if (c == NULL || hash == NULL) {
        return 0;
    }

    Cache  x(const_cast<ak_cache_s *>(c));

    i = x.find(hash);

    if (i == NIL) {
        return 0;
    }

    return x.s[i].kind == KIND_POS ? 1 : 2;
}


void
ak_cache_get_stats(const ak_cache_t *c, ak_cache_stats_t *st) noexcept
{
    uint32_t       k;
    const Stripe  *sp;

    if (st == NULL) {
        return;
    }

    memset(st, 0, sizeof(*st));

    if (c == NULL) {
        return;
    }

    sp = stripes(c);

    for (k = 0; k < kStripes; k++) {
        st->hits += ld(sp[k].hits);
        st->misses += ld(sp[k].misses);
        st->stale_hits += ld(sp[k].stale_hits);
        st->negative_hits += ld(sp[k].negative_hits);
        st->read_retries += ld(sp[k].retries);
    }

    st->evictions = c->evictions;
    st->inserts = c->inserts;
    st->entries = c->npos > c->ngone ? c->npos - c->ngone : 0;
    st->negative_entries = c->nneg;
    st->slots_total = c->nslots;
    st->slots_free = c->nfree;
}

} /* extern "C" */
