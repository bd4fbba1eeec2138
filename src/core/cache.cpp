/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * cache.cpp: the shared-memory key cache (see "Shared-memory cache" in
 * ak_core.h, and api_key_zone in README.md).
 *
 * Layout of the block handed over by the glue (offsets, never pointers, so
 * that it works at any mapping address):
 *
 *   [0, 256)            header (struct ak_cache_s, padded to 256 bytes)
 *   [256, B)            bucket heads: nslots x uint32 slot index (or NIL)
 *   [B, B + 128*nslots) slots, 128 bytes each
 *
 * There are as many buckets as slots, so the index costs 4 bytes per slot:
 * a cached key whose blob is <= 32 bytes costs 128 + 4 = 132 bytes
 * (ak_cache_bytes_per_key()), and a 128 MiB block holds 1,016,800 slots
 * (1,016,800 keys with blobs of <= 32 bytes).  Smallest block: 8712 bytes
 * (64 slots).
 * Keys are uniformly distributed digests; the bucket is picked from their
 * first 4 bytes ("fastrange": (x * nbuckets) >> 32, no division).  With
 * at most one entry per slot the load factor never exceeds 1.
 *
 * Entry (head) slot, 128 bytes:
 *
 *     0  hash[32]         key digest
 *    32  hnext     u32    next entry in the bucket chain
 *    36  prev      u32    LRU list (positive or negative list)
 *    40  next      u32
 *    44  gen       u32    cache generation when stored
 *    48  fetched   u64    now_ms when stored
 *    56  st        32     ak_key_state_t (GCRA tat, quota lease, cluster
 *                         rate tokens)
 *    88  kind      u8     KIND_POS / KIND_NEG
 *    89  flags     u8     AK_ENTRY_REVOKED | AK_ENTRY_BAD | F_STORED_STALE
 *                         | F_GONE
 *    90  len       u16    blob length (0 for a negative entry)
 *    92  blob[32]         the first 32 blob bytes (a bad negative entry:
 *                         the record's version in the first 8)
 *   124  ovf       u32    first overflow slot (or NIL)
 *
 * Overflow slot: bytes [0, 124) carry blob bytes, the u32 at 124 (the same
 * "ovf" field) links the next overflow slot.  A blob of len bytes uses
 * 1 + ceil((len - 32) / 124) slots: 100 bytes -> 2, 1000 -> 9,
 * 4096 -> 34.  The chain length is implied by len, so chain walks are
 * bounded by it.
 *
 * Free slots are linked through "ovf" too; slots at or above the high-water
 * mark "hwm" have never been used and are free without being on the list,
 * so create and flush never touch the slot area (pages of a fresh zone stay
 * untouched until used).
 *
 * Two LRU lists (most recently used at the head): positive entries and
 * negative ("no such key") entries.  Negative entries may hold at most
 * neg_max = max(1, nslots * negative_max_pct / 100) slots and never evict a
 * live positive entry.
 *
 * Every function is called with the zone lock held (except create/attach)
 * and is O(1): a put may evict a few entries, at most one per slot it
 * needs (<= 34).  Nothing allocates, nothing throws, no system calls.
 *
 * Corruption: every index read from the slots, the bucket heads and the
 * mutable header fields is checked against nslots and every walk is
 * bounded, so damage there can neither loop forever nor reach outside the
 * block.  When an inconsistency is detected the cache is reformatted
 * (emptied) and the operation is retried once on the clean cache.
 *
 * The layout fields of the header (magic, version, slot_size, size,
 * buckets_off, slots_off, nslots, nbuckets) are different: they are written
 * once by create and trusted by every operation after that, since they are
 * what the bounds are checked against.  Damage to them after create/attach
 * CAN make an operation read or write outside the block; nothing in the
 * block can guard against that.  ak_cache_validate (and so attach) checks
 * them against the block size the caller gives, which comes from outside
 * the block, together with the plausibility of the mutable header fields,
 * and refuses a block that does not match.
 */

#include "ak_core.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>


namespace {

const uint64_t  kMagic = 0x3148434143414b41ULL;    /* "AKCACHE1" LE */
const uint32_t  kVersion = 2;        /* 2: 128-byte slots, 32-byte key
                                           state */
const uint32_t  NIL = 0xffffffffu;
const size_t    kHeaderSize = 256;
const size_t    kInline = 32;           /* blob bytes in the entry slot */
const size_t    kOvfData = 124;         /* blob bytes per overflow slot */
const uint32_t  kMinSlots = 64;         /* >= 34, the largest chain */
const uint32_t  kMaxSlots = 0x7fffffffu;

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


struct Slot {
    unsigned char   hash[AK_HASH_LEN];
    uint32_t        hnext;
    uint32_t        prev;
    uint32_t        next;
    uint32_t        gen;
    uint64_t        fetched;
    ak_key_state_t  st;
    uint8_t         kind;
    uint8_t         flags;
    uint16_t        len;
    unsigned char   blob[kInline];
    uint32_t        ovf;
};

static_assert(sizeof(ak_key_state_t) == 32, "ak_key_state_t size");
static_assert(sizeof(Slot) == 128, "slot size");
static_assert(offsetof(Slot, st) % 8 == 0, "state alignment");
static_assert(offsetof(Slot, ovf) == kOvfData, "overflow data size");
static_assert((AK_RECORD_MAX - kInline + kOvfData - 1) / kOvfData + 1
              <= kMinSlots, "largest blob fits in the smallest cache");
static_assert(AK_RECORD_MAX <= 0xffff, "blob length is a u16");

} /* namespace */


struct ak_cache_s {
    uint64_t        magic;
    uint32_t        version;
    uint32_t        slot_size;
    uint64_t        size;           /* the block size given to create */
    uint64_t        buckets_off;
    uint64_t        slots_off;
    uint32_t        nslots;
    uint32_t        nbuckets;

    uint64_t        ttl_ms;
    uint64_t        neg_ttl_ms;
    uint64_t        stale_ms;
    uint32_t        neg_pct;
    uint32_t        neg_max;        /* most negative entries */

    uint64_t        seq;            /* event sequence */
    uint32_t        gen;            /* generation */
    uint32_t        free_head;
    uint32_t        nfree;          /* free list + [hwm, nslots) */
    uint32_t        hwm;
    uint32_t        pos_head;
    uint32_t        pos_tail;
    uint32_t        neg_head;
    uint32_t        neg_tail;
    uint32_t        npos;
    uint32_t        nneg;

    uint64_t        hits;
    uint64_t        misses;
    uint64_t        stale_hits;
    uint64_t        negative_hits;
    uint64_t        evictions;
    uint64_t        inserts;

    uint32_t        ngone;          /* positive entries marked F_GONE
                                       (zero in a block of an older build:
                                       the header is zeroed at create) */
};

static_assert(sizeof(ak_cache_s) <= kHeaderSize, "header size");


namespace {

struct Layout {
    uint32_t  nslots;
    uint64_t  buckets_off;
    uint64_t  slots_off;
};


inline uint64_t
round8(uint64_t n) noexcept
{
    return (n + 7) & ~(uint64_t) 7;
}


uint64_t
layout_bytes(uint64_t n) noexcept
{
    return kHeaderSize + round8(n * sizeof(uint32_t)) + n * sizeof(Slot);
}


bool
layout_of(size_t size, Layout *l) noexcept
{
    uint64_t  n;

    if (size < kHeaderSize + 8) {
        return false;
    }

    n = (size - kHeaderSize - 8) / (sizeof(Slot) + sizeof(uint32_t));

    if (n > kMaxSlots) {
        n = kMaxSlots;
    }

    while (n > 0 && layout_bytes(n) > size) {
        n--;
    }

    if (n < kMinSlots) {
        return false;
    }

    l->nslots = (uint32_t) n;
    l->buckets_off = kHeaderSize;
    l->slots_off = kHeaderSize + round8(n * sizeof(uint32_t));

    return true;
}


inline uint32_t
n_ovf(size_t len) noexcept
{
    return len <= kInline ? 0 : (uint32_t) ((len - kInline + kOvfData - 1)
                                            / kOvfData);
}


inline uint64_t
sat_add(uint64_t a, uint64_t b) noexcept
{
    return a + b < a ? UINT64_MAX : a + b;
}


void
apply_conf(ak_cache_s *h, const ak_cache_conf_t *conf) noexcept
{
    uint32_t  pct;
    uint64_t  max;

    if (conf) {
        h->ttl_ms = conf->ttl_ms;
        h->neg_ttl_ms = conf->negative_ttl_ms;
        h->stale_ms = conf->stale_ms;
        pct = conf->negative_max_pct;

    } else {
        h->ttl_ms = kDefaultTtl;
        h->neg_ttl_ms = kDefaultNegTtl;
        h->stale_ms = kDefaultStale;
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


/* Empties the cache; keeps conf, generation, counters and seq. */
void
format(ak_cache_s *h) noexcept
{
    memset((unsigned char *) h + h->buckets_off, 0xff,
           (size_t) h->nslots * sizeof(uint32_t));

    h->free_head = NIL;
    h->nfree = h->nslots;
    h->hwm = 0;
    h->pos_head = NIL;
    h->pos_tail = NIL;
    h->neg_head = NIL;
    h->neg_tail = NIL;
    h->npos = 0;
    h->nneg = 0;
    h->ngone = 0;
}


/*
 * One call's view of the block.  Every index taken from the block goes
 * through ok(); an inconsistency sets "bad" and the operation stops doing
 * anything further; the caller then reformats the cache.
 */

class Cache {
public:
    explicit Cache(ak_cache_s *c) noexcept
        : h(c),
          bk(reinterpret_cast<uint32_t *>(
                 reinterpret_cast<unsigned char *>(c) + c->buckets_off)),
          s(reinterpret_cast<Slot *>(
                 reinterpret_cast<unsigned char *>(c) + c->slots_off)),
          bad(false)
    {
    }

    ak_cache_s  *h;
    uint32_t    *bk;
    Slot        *s;
    bool         bad;

    bool ok(uint32_t i) const noexcept { return i < h->nslots; }

    uint32_t
    bucket(const unsigned char *hash) const noexcept
    {
        uint32_t  x;

        memcpy(&x, hash, sizeof(x));
        return (uint32_t) (((uint64_t) x * h->nbuckets) >> 32);
    }

    uint32_t
    find(const unsigned char *hash) noexcept
    {
        uint32_t  i, steps;

        i = bk[bucket(hash)];

        for (steps = 0; i != NIL; steps++) {
            if (!ok(i) || steps >= h->nslots) {
                bad = true;
                return NIL;
            }

            if (memcmp(s[i].hash, hash, AK_HASH_LEN) == 0) {
                if (s[i].kind != KIND_POS && s[i].kind != KIND_NEG) {
                    bad = true;
                    return NIL;
                }

                return i;
            }

            i = s[i].hnext;
        }

        return NIL;
    }

    void
    bucket_insert(uint32_t i) noexcept
    {
        uint32_t  b = bucket(s[i].hash);

        s[i].hnext = bk[b];
        bk[b] = i;
    }

    void
    bucket_unlink(uint32_t i) noexcept
    {
        uint32_t  *p, j, steps;

        p = &bk[bucket(s[i].hash)];

        for (steps = 0; *p != NIL; steps++) {
            j = *p;

            if (!ok(j) || steps >= h->nslots) {
                break;
            }

            if (j == i) {
                *p = s[i].hnext;
                return;
            }

            p = &s[j].hnext;
        }

        bad = true;
    }

    uint32_t *head_of(uint8_t kind) noexcept
    {
        return kind == KIND_POS ? &h->pos_head : &h->neg_head;
    }

    uint32_t *tail_of(uint8_t kind) noexcept
    {
        return kind == KIND_POS ? &h->pos_tail : &h->neg_tail;
    }

    uint32_t *count_of(uint8_t kind) noexcept
    {
        return kind == KIND_POS ? &h->npos : &h->nneg;
    }

    /* Takes entry i off its LRU list (and out of its list's count). */
    void
    lru_unlink(uint32_t i) noexcept
    {
        uint8_t    kind = s[i].kind;
        uint32_t   p = s[i].prev, n = s[i].next;
        uint32_t  *head = head_of(kind), *tail = tail_of(kind);
        uint32_t  *count = count_of(kind);

        if ((p == NIL ? *head != i : (!ok(p) || s[p].next != i))
            || (n == NIL ? *tail != i : (!ok(n) || s[n].prev != i))
            || *count == 0)
        {
            bad = true;
            return;
        }

        if (p == NIL) {
            *head = n;
        } else {
            s[p].next = n;
        }

        if (n == NIL) {
            *tail = p;
        } else {
            s[n].prev = p;
        }

        (*count)--;
    }

    /* Puts entry i (kind already set) at the front of its list. */
    void
    lru_push(uint32_t i) noexcept
    {
        uint8_t    kind = s[i].kind;
        uint32_t  *head = head_of(kind), *tail = tail_of(kind);

        if (*head != NIL && !ok(*head)) {
            bad = true;
            return;
        }

        s[i].prev = NIL;
        s[i].next = *head;

        if (*head == NIL) {
            *tail = i;
        } else {
            s[*head].prev = i;
        }

        *head = i;
        (*count_of(kind))++;
    }

    void
    lru_touch(uint32_t i) noexcept
    {
        if (*head_of(s[i].kind) == i) {
            return;
        }

        lru_unlink(i);

        if (!bad) {
            lru_push(i);
        }
    }

    void
    free_slot(uint32_t i) noexcept
    {
        s[i].kind = 0;
        s[i].ovf = h->free_head;
        h->free_head = i;
        h->nfree++;
    }

    uint32_t
    alloc_slot() noexcept
    {
        uint32_t  i;

        if (h->nfree == 0) {
            bad = true;
            return NIL;
        }

        if (h->free_head != NIL) {
            i = h->free_head;

            if (!ok(i)) {
                bad = true;
                return NIL;
            }

            h->free_head = s[i].ovf;

        } else if (h->hwm < h->nslots) {
            i = h->hwm++;

        } else {
            bad = true;
            return NIL;
        }

        h->nfree--;
        return i;
    }

    /* Frees the overflow chain of entry i (len bytes). */
    void
    free_chain(uint32_t i) noexcept
    {
        uint32_t  j, next, n;

        n = n_ovf(s[i].len);
        j = s[i].ovf;
        s[i].ovf = NIL;

        while (n--) {
            if (!ok(j)) {
                bad = true;
                return;
            }

            next = s[j].ovf;
            free_slot(j);
            j = next;
        }
    }

    /* Removes entry i from everything and frees its slots. */
    void
    drop(uint32_t i) noexcept
    {
        if (s[i].len > AK_RECORD_MAX) {
            bad = true;
            return;
        }

        lru_unlink(i);
        bucket_unlink(i);

        if (bad) {
            return;
        }

        unmark_gone(i);
        free_chain(i);
        free_slot(i);
    }

    void
    unmark_gone(uint32_t i) noexcept
    {
        if (s[i].kind == KIND_POS && (s[i].flags & F_GONE)) {
            s[i].flags &= ~F_GONE;

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

    /*
     * Evicts until need slots are free, for a positive entry: expired
     * negatives first, then the least recently used positive, then
     * negatives.  The entry being replaced is on no list, so it is safe.
     */
    bool
    room_for_positive(uint32_t need, uint64_t now) noexcept
    {
        uint32_t  v, before, rounds;

        for (rounds = 0; h->nfree < need; rounds++) {
            if (rounds > need + 1) {
                bad = true;
                return false;
            }

            if (h->neg_tail != NIL && ok(h->neg_tail)
                && neg_dead(h->neg_tail, now))
            {
                v = h->neg_tail;

            } else if (h->pos_tail != NIL) {
                v = h->pos_tail;

            } else if (h->neg_tail != NIL) {
                v = h->neg_tail;

            } else {
                bad = true;
                return false;
            }

            if (!ok(v)) {
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

        for (rounds = 0; h->nneg >= h->neg_max && h->neg_tail != NIL;
             rounds++)
        {
            if (!ok(h->neg_tail)) {
                bad = true;
                return false;
            }

            if (rounds == 2) {
                break;
            }

            evict(h->neg_tail);

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

        if (h->neg_tail != NIL && ok(h->neg_tail)
            && neg_dead(h->neg_tail, now))
        {
            v = h->neg_tail;

        } else if (h->pos_tail != NIL && ok(h->pos_tail)
                   && pos_dead(h->pos_tail, now))
        {
            v = h->pos_tail;

        } else if (h->neg_tail != NIL) {
            v = h->neg_tail;

        } else {
            return false;
        }

        if (!ok(v)) {
            bad = true;
            return false;
        }

        evict(v);

        return !bad && h->nfree > 0;
    }

    /* Copies the blob of entry i into buf. */
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
            memcpy(buf, reinterpret_cast<unsigned char *>(&s[j]), n);
            buf += n;
            len -= n;
            j = s[j].ovf;
        }
    }

    /* Writes blob into entry i, allocating its overflow slots. */
    void
    write_blob(uint32_t i, const unsigned char *blob, size_t len) noexcept
    {
        size_t     n;
        uint32_t   j, *link;

        n = len < kInline ? len : kInline;
        memcpy(s[i].blob, blob, n);
        blob += n;
        len -= n;
        link = &s[i].ovf;

        while (len) {
            j = alloc_slot();
            if (j == NIL) {
                *link = NIL;
                return;
            }

            *link = j;
            n = len < kOvfData ? len : kOvfData;
            memcpy(reinterpret_cast<unsigned char *>(&s[j]), blob, n);
            blob += n;
            len -= n;
            link = &s[j].ovf;
        }

        *link = NIL;
    }
};


void
reset(ak_cache_s *h) noexcept
{
    format(h);
    h->seq++;
}


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


int
put_once(ak_cache_s *c, const unsigned char *hash, const unsigned char *blob,
    size_t len, uint64_t now, uint64_t seq, bool *bad) noexcept
{
    bool            outdated;
    uint8_t         flags;
    uint32_t        i, novf;
    ak_key_state_t  st;
    Cache           x(c);

    novf = n_ovf(len);
    outdated = (seq != c->seq);
    flags = 0;
    memset(&st, 0, sizeof(st));

    i = x.find(hash);

    if (x.bad) {
        *bad = true;
        return -1;
    }

    if (i != NIL) {
        /* replace in place: keep the head slot (and its bucket link) */

        if (x.s[i].kind == KIND_POS) {
            st = x.s[i].st;
            carry_state(x, i, hash, blob, len, &st);
            x.unmark_gone(i);

            if (outdated) {
                /* a revoke that arrived during the read stays */
                flags = x.s[i].flags & AK_ENTRY_REVOKED;
            }
        }

        if (x.s[i].len > AK_RECORD_MAX) {
            *bad = true;
            return -1;
        }

        x.lru_unlink(i);
        x.free_chain(i);

        if (!x.bad) {
            x.room_for_positive(novf, now);
        }

    } else {
        if (x.room_for_positive(novf + 1, now)) {
            i = x.alloc_slot();

            if (i != NIL) {
                memcpy(x.s[i].hash, hash, AK_HASH_LEN);
                x.bucket_insert(i);
            }
        }
    }

    if (x.bad) {
        *bad = true;
        return -1;
    }

    x.s[i].gen = c->gen;
    x.s[i].fetched = now;
    x.s[i].st = st;
    x.s[i].kind = KIND_POS;
    x.s[i].flags = flags | (outdated ? F_STORED_STALE : 0);
    x.s[i].len = (uint16_t) len;
    x.write_blob(i, blob, len);
    x.lru_push(i);

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
    uint32_t  i;
    Cache     x(c);

    i = x.find(hash);

    if (x.bad) {
        *bad = true;
        return -1;
    }

    if (i != NIL && x.s[i].kind == KIND_NEG) {
        x.s[i].fetched = now;
        x.s[i].gen = c->gen;
        x.s[i].flags = 0;       /* no longer a malformed record, if it was */
        x.lru_touch(i);

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

        i = x.alloc_slot();

        if (i == NIL) {
            *bad = true;
            return -1;
        }

        memcpy(x.s[i].hash, hash, AK_HASH_LEN);
        x.bucket_insert(i);
        x.s[i].gen = c->gen;
        x.s[i].fetched = now;
        memset(&x.s[i].st, 0, sizeof(ak_key_state_t));
        x.s[i].kind = KIND_NEG;
        x.s[i].flags = 0;
        x.s[i].len = 0;
        x.s[i].ovf = NIL;
        x.lru_push(i);
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
        x.s[i].flags = AK_ENTRY_BAD;
        memcpy(x.s[i].blob, &version, sizeof(version));
    }

    return seen;
}


int
lookup(ak_cache_s *c, const unsigned char *hash, uint64_t now,
    unsigned char *buf, size_t cap, size_t *len, uint32_t *flags,
    uint32_t *slot, bool count) noexcept
{
    int       rc;
    uint32_t  i;
    Cache     x(c);

    i = x.find(hash);

    if (i == NIL) {
        if (x.bad) {
            reset(c);
        }

        c->misses += count;
        return AK_CACHE_MISS;
    }

    if (x.s[i].kind == KIND_NEG) {
        if (x.neg_dead(i, now) && (x.s[i].flags & AK_ENTRY_BAD)) {
            /* kept for its version: ak_cache_put_bad replaces it */
            rc = AK_CACHE_MISS;

        } else if (x.neg_dead(i, now)) {
            x.drop(i);
            rc = AK_CACHE_MISS;

        } else {
            x.lru_touch(i);
            rc = AK_CACHE_NEGATIVE;
        }

    } else if (x.s[i].len == 0 || x.s[i].len > AK_RECORD_MAX) {
        x.bad = true;
        rc = AK_CACHE_MISS;

    } else if (x.pos_dead(i, now)) {
        x.drop(i);
        rc = AK_CACHE_MISS;

    } else if (x.s[i].flags & F_GONE) {
        /* removed by an update: kept only for its state, never used */
        rc = AK_CACHE_MISS;

    } else if (buf == NULL || cap < x.s[i].len) {
        rc = AK_CACHE_MISS;

    } else {
        x.read_blob(i, buf);
        x.lru_touch(i);

        rc = (x.age(i, now) < c->ttl_ms && x.s[i].gen == c->gen
              && !(x.s[i].flags & F_STORED_STALE))
             ? AK_CACHE_FRESH : AK_CACHE_STALE;
    }

    if (x.bad) {
        reset(c);
        rc = AK_CACHE_MISS;
    }

    switch (rc) {

    case AK_CACHE_FRESH:
        c->hits += count;
        break;

    case AK_CACHE_STALE:
        c->stale_hits += count;
        break;

    case AK_CACHE_NEGATIVE:
        c->negative_hits += count;
        break;

    default:
        c->misses += count;
        return AK_CACHE_MISS;
    }

    if (len) {
        *len = x.s[i].len;
    }

    if (flags) {
        *flags = x.s[i].flags & (AK_ENTRY_REVOKED | AK_ENTRY_BAD);
    }

    if (slot) {
        *slot = i;
    }

    return rc;
}


bool
aligned(const void *p) noexcept
{
    return (reinterpret_cast<uintptr_t>(p) & 7) == 0;
}

} /* namespace */


/*
 * The C entry points, declared AK_NOEXCEPT in ak_core.h (noexcept in C++):
 * none of them can throw, they call nothing but the noexcept helpers above
 * and memset/memcpy.
 */

extern "C" {

size_t
ak_cache_min_size(void) noexcept
{
    return (size_t) layout_bytes(kMinSlots) + 8;
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
    memset(h, 0, kHeaderSize);

    h->magic = kMagic;
    h->version = kVersion;
    h->slot_size = sizeof(Slot);
    h->size = size;
    h->buckets_off = l.buckets_off;
    h->slots_off = l.slots_off;
    h->nslots = l.nslots;
    h->nbuckets = l.nslots;
    h->seq = 1;
    h->gen = 1;

    apply_conf(h, conf);
    format(h);

    return h;
}


const char *
ak_cache_validate(const void *mem, size_t size) noexcept
{
    Layout              l;
    uint64_t            listed, used;
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

    if (h->nslots != l.nslots || h->nbuckets != l.nslots) {
        return "slot or bucket count does not match the block size";
    }

    if (h->buckets_off != l.buckets_off || h->slots_off != l.slots_off) {
        return "bucket or slot area offset does not match the block size";
    }

    /* the mutable fields: indices in range, counts that add up */

    if (h->hwm > h->nslots) {
        return "high-water mark beyond the slot count";
    }

    if (h->nfree > h->nslots || h->nfree < h->nslots - h->hwm) {
        return "free slot count out of range";
    }

    used = (uint64_t) h->npos + h->nneg;

    if (used + h->nfree > h->nslots) {
        return "entry and free slot counts exceed the slot count";
    }

    listed = h->nfree - (h->nslots - h->hwm);    /* on the free list */

    if ((h->free_head == NIL) != (listed == 0)
        || (h->free_head != NIL && h->free_head >= h->hwm))
    {
        return "free list head inconsistent";
    }

    if ((h->pos_head == NIL) != (h->npos == 0)
        || (h->pos_tail == NIL) != (h->npos == 0)
        || (h->pos_head != NIL && h->pos_head >= h->hwm)
        || (h->pos_tail != NIL && h->pos_tail >= h->hwm))
    {
        return "positive LRU list inconsistent";
    }

    if ((h->neg_head == NIL) != (h->nneg == 0)
        || (h->neg_tail == NIL) != (h->nneg == 0)
        || (h->neg_head != NIL && h->neg_head >= h->hwm)
        || (h->neg_tail != NIL && h->neg_tail >= h->hwm))
    {
        return "negative LRU list inconsistent";
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


const char *
ak_cache_check(const ak_cache_t *c, unsigned char *scratch,
    size_t scratch_len) noexcept
{
    enum { UNSEEN = 0, ENTRY, LISTED, OVERFLOW, FREE };

    const char          *why;
    uint8_t              kinds[2] = { KIND_POS, KIND_NEG };
    uint32_t             b, i, j, k, n, prev, count, gone, found;
    const uint32_t      *bk;
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

    memset(scratch, UNSEEN, c->nslots);

    bk = reinterpret_cast<const uint32_t *>(
        reinterpret_cast<const unsigned char *>(c) + c->buckets_off);
    s = reinterpret_cast<const Slot *>(
        reinterpret_cast<const unsigned char *>(c) + c->slots_off);

    /* bucket chains: every entry once, in the bucket of its hash */

    found = 0;
    gone = 0;

    for (b = 0; b < c->nbuckets; b++) {
        for (i = bk[b]; i != NIL; i = s[i].hnext) {
            uint32_t  x;

            if (i >= c->hwm || scratch[i] != UNSEEN) {
                return "bucket chain: index out of range or seen twice";
            }

            scratch[i] = ENTRY;
            found++;

            memcpy(&x, s[i].hash, sizeof(x));
            if ((uint32_t) (((uint64_t) x * c->nbuckets) >> 32) != b) {
                return "bucket chain: entry in the wrong bucket";
            }

            if (s[i].kind == KIND_POS) {
                if (s[i].len == 0 || s[i].len > AK_RECORD_MAX) {
                    return "positive entry: blob length out of range";
                }
                if (s[i].flags & ~(AK_ENTRY_REVOKED | F_STORED_STALE
                                   | F_GONE))
                {
                    return "positive entry: unknown flags";
                }
                gone += (s[i].flags & F_GONE) ? 1 : 0;

            } else if (s[i].kind == KIND_NEG) {
                if (s[i].len != 0 || s[i].ovf != NIL
                    || (s[i].flags & ~AK_ENTRY_BAD))
                {
                    return "negative entry: blob, overflow or flags";
                }

            } else {
                return "bucket chain: slot is not an entry";
            }
        }
    }

    if (found != c->npos + c->nneg) {
        return "entry count differs from the bucket chains";
    }

    if (gone != c->ngone) {
        return "count of entries removed by updates differs";
    }

    /* LRU lists: doubly linked, of their kind, every entry once */

    for (k = 0; k < 2; k++) {
        uint32_t  head = k ? c->neg_head : c->pos_head;
        uint32_t  tail = k ? c->neg_tail : c->pos_tail;
        uint32_t  want = k ? c->nneg : c->npos;

        prev = NIL;
        count = 0;

        for (i = head; i != NIL; i = s[i].next) {
            if (i >= c->hwm || scratch[i] != ENTRY
                || s[i].kind != kinds[k] || s[i].prev != prev)
            {
                return "LRU list: bad link, kind or entry seen twice";
            }

            scratch[i] = LISTED;
            prev = i;
            count++;
        }

        if (prev != tail || count != want) {
            return "LRU list: tail or count differs";
        }
    }

    /* overflow chains: exactly as many slots as the blob needs */

    for (i = 0; i < c->hwm; i++) {
        if (scratch[i] != LISTED || s[i].kind != KIND_POS) {
            continue;
        }

        j = s[i].ovf;

        for (n = n_ovf(s[i].len); n > 0; n--) {
            if (j >= c->hwm || scratch[j] != UNSEEN) {
                return "overflow chain: index out of range or seen twice";
            }

            scratch[j] = OVERFLOW;
            j = s[j].ovf;
        }

        if (j != NIL) {
            return "overflow chain longer than its blob";
        }
    }

    /* the free list, then every slot below hwm accounted for */

    count = 0;

    for (i = c->free_head; i != NIL; i = s[i].ovf) {
        if (i >= c->hwm || scratch[i] != UNSEEN) {
            return "free list: index out of range or seen twice";
        }

        scratch[i] = FREE;
        count++;
    }

    if (count + (c->nslots - c->hwm) != c->nfree) {
        return "free slot count differs from the free list";
    }

    for (i = 0; i < c->hwm; i++) {
        if (scratch[i] == UNSEEN || scratch[i] == ENTRY) {
            return "slot neither free nor used, or an entry on no list";
        }
    }

    return NULL;
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
        apply_conf(c, conf);
    }
}


size_t
ak_cache_bytes_per_key(void) noexcept
{
    return sizeof(Slot) + sizeof(uint32_t);     /* 132 */
}


int
ak_cache_lookup(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, size_t *len,
    uint32_t *flags, uint32_t *slot) noexcept
{
    if (c == NULL || hash == NULL) {
        return AK_CACHE_MISS;
    }

    return lookup(c, hash, now_ms, buf, cap, len, flags, slot, true);
}


int
ak_cache_lookup_again(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, size_t *len,
    uint32_t *flags, uint32_t *slot) noexcept
{
    if (c == NULL || hash == NULL) {
        return AK_CACHE_MISS;
    }

    return lookup(c, hash, now_ms, buf, cap, len, flags, slot, false);
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

    if (c == NULL || hash == NULL) {
        return 0;
    }

    c->seq++;

    i = find_positive(c, hash);

    if (i == NIL) {
        return 0;
    }

    Cache  x(c);

    x.s[i].flags |= AK_ENTRY_REVOKED;

    return (x.s[i].flags & F_GONE) ? 0 : 1;
}


int
ak_cache_remove(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN]) noexcept
{
    uint32_t  i;

    if (c == NULL || hash == NULL) {
        return 0;
    }

    c->seq++;

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

        x.s[i].flags |= F_GONE;
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
        reset(c);
    }
}


void
ak_cache_new_generation(ak_cache_t *c) noexcept
{
    if (c) {
        c->seq++;
        c->gen++;
    }
}


uint64_t
ak_cache_event_seq(const ak_cache_t *c) noexcept
{
    return c ? c->seq : 0;
}


ak_key_state_t *
ak_cache_state(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN]) noexcept
{
    uint32_t  i;

    if (c == NULL || hash == NULL || slot >= c->nslots) {
        return NULL;
    }

    i = find_positive(c, hash);

    if (i == NIL || i != slot) {
        return NULL;
    }

    Cache  x(c);

    return &x.s[i].st;
}


ak_key_state_t *
ak_cache_state_find(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint32_t *slot) noexcept
{
    uint32_t  i;

    if (c == NULL || hash == NULL) {
        return NULL;
    }

    i = find_positive(c, hash);

    if (i == NIL) {
        return NULL;
    }

    if (slot) {
        *slot = i;
    }

    Cache  x(c);

    return &x.s[i].st;
}


void
ak_cache_get_stats(const ak_cache_t *c, ak_cache_stats_t *st) noexcept
{
    if (st == NULL) {
        return;
    }

    memset(st, 0, sizeof(*st));

    if (c == NULL) {
        return;
    }

    st->hits = c->hits;
    st->misses = c->misses;
    st->stale_hits = c->stale_hits;
    st->negative_hits = c->negative_hits;
    st->evictions = c->evictions;
    st->inserts = c->inserts;
    st->entries = c->npos > c->ngone ? c->npos - c->ngone : 0;
    st->negative_entries = c->nneg;
    st->slots_total = c->nslots;
    st->slots_free = c->nfree;
}

} /* extern "C" */
