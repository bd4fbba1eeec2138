/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * usage.cpp: requests per key and UTC day, counted in shared memory between
 * two flushes of the module's usage writer (see ak_core.h, "Usage").
 *
 * Two halves of open-addressed slots (linear probing, by the key's hash and
 * the day): the active half takes the counts under the zone lock; a flush
 * swaps the halves under the lock and reads the retired half without it,
 * since nothing writes there until ak_usage_clear has emptied it (the
 * "clean" flag, an atomic: the next swap waits for it).  A half is emptied
 * whole, so it needs no deletions.  A half takes at most 3/4 of its slots:
 * probes stay short, and a lookup of an absent item ends at an empty slot.
 */

#include "ak_core.h"

#include <atomic>
#include <cstring>
#include <new>

struct ak_usage_s {
    uint32_t               slots;       /* per half */
    uint32_t               active;      /* 0 or 1 */
    uint32_t               used[2];     /* items in each half */
    std::atomic<uint32_t>  clean;       /* the retired half is empty */
    std::atomic<uint64_t>  dropped;     /* requests not counted: full */
    ak_usage_item_t        items[1];    /* 2 * slots */
};

static_assert(std::atomic<uint32_t>::is_always_lock_free,
              "the table lives in shared memory between processes");
static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "the table lives in shared memory between processes");

namespace {

const char *const kClass[AK_USAGE_NCLASSES] = {
    "allowed", "denied_status", "denied_policy", "denied_limit"
};

size_t header_size() noexcept
{
    return offsetof(ak_usage_s, items);
}

uint32_t slot_of(const unsigned char *hash, int64_t day, uint32_t slots)
    noexcept
{
    uint64_t h = 0;

    /* the hash is a digest: its bytes are uniform already */
    std::memcpy(&h, hash, sizeof(h));
    h ^= static_cast<uint64_t>(day / 86400) * 0x9e3779b97f4a7c15ULL;

    return static_cast<uint32_t>(h % slots);
}

int64_t day_of(int64_t now) noexcept
{
    int64_t d = now - now % 86400;

    return d > 0 ? d : 86400;   /* 0 marks an empty slot */
}

bool same_hash(const unsigned char *a, const unsigned char *b) noexcept
{
    uint64_t x[4], y[4];

    std::memcpy(x, a, sizeof(x));
    std::memcpy(y, b, sizeof(y));

    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]))
           == 0;
}

static_assert(AK_HASH_LEN == 4 * sizeof(uint64_t), "same_hash's words");

/* the item of (hash, day) in the active half, made when create; or null */
ak_usage_item_t *find(ak_usage_t *u, const unsigned char *hash, int64_t day,
    bool create) noexcept
{
    ak_usage_item_t *half = u->items + static_cast<size_t>(u->active)
                                       * u->slots;
    uint32_t i = slot_of(hash, day, u->slots);

    for (uint32_t n = 0; n < u->slots; n++) {
        ak_usage_item_t *it = &half[i];

        if (it->day == 0) {
            if (!create || u->used[u->active] >= u->slots / 4 * 3) {
                return nullptr;
            }
            std::memcpy(it->hash, hash, AK_HASH_LEN);
            it->day = day;
            u->used[u->active]++;
            return it;
        }

        if (it->day == day && same_hash(it->hash, hash)) {
            return it;
        }

        i = (i + 1 == u->slots) ? 0 : i + 1;
    }

    return nullptr;
}

uint32_t add_sat(uint32_t a, uint32_t b) noexcept
{
    return (a > UINT32_MAX - b) ? UINT32_MAX : a + b;
}

} // namespace


extern "C" const char *
ak_usage_class_name(unsigned cls) noexcept
{
    return cls < AK_USAGE_NCLASSES ? kClass[cls] : nullptr;
}


extern "C" size_t
ak_usage_size(uint32_t slots) noexcept
{
    return header_size() + 2 * static_cast<size_t>(slots)
                               * sizeof(ak_usage_item_t);
}


extern "C" ak_usage_t *
ak_usage_create(void *mem, size_t size) noexcept
{
    if (mem == nullptr || size < ak_usage_size(8)) {
        return nullptr;
    }

    size_t slots = (size - header_size()) / (2 * sizeof(ak_usage_item_t));
    if (slots > UINT32_MAX / 2) {
        slots = UINT32_MAX / 2;
    }

    std::memset(mem, 0, ak_usage_size(static_cast<uint32_t>(slots)));

    ak_usage_t *u = static_cast<ak_usage_t *>(mem);
    u->slots = static_cast<uint32_t>(slots);
    new (&u->clean) std::atomic<uint32_t>(1);
    new (&u->dropped) std::atomic<uint64_t>(0);

    return u;
}


extern "C" uint32_t
ak_usage_slots(const ak_usage_t *u) noexcept
{
    return u ? u->slots : 0;
}


extern "C" int
ak_usage_add(ak_usage_t *u, const unsigned char hash[AK_HASH_LEN],
    int64_t now, unsigned cls) noexcept
{
    if (u == nullptr || hash == nullptr || cls >= AK_USAGE_NCLASSES) {
        return -1;
    }

    int64_t day = day_of(now);
    ak_usage_item_t *it = u->items + static_cast<size_t>(u->active) * u->slots
                          + slot_of(hash, day, u->slots);

    /* the usual case: the key counted today already, in its first slot */
    if (it->day != day || !same_hash(it->hash, hash)) {
        it = find(u, hash, day, true);

        if (it == nullptr) {
            u->dropped.fetch_add(1, std::memory_order_relaxed);
            return -1;
        }
    }

    it->counts[cls] = add_sat(it->counts[cls], 1);
    if (now > it->last_used) {
        it->last_used = now;
    }

    return 0;
}


extern "C" int
ak_usage_merge(ak_usage_t *u, const ak_usage_item_t *item) noexcept
{
    if (u == nullptr || item == nullptr || item->day <= 0
        || item->day % 86400 != 0)
    {
        return -1;
    }

    ak_usage_item_t *it = find(u, item->hash, item->day, true);

    if (it == nullptr) {
        uint64_t n = 0;
        for (unsigned c = 0; c < AK_USAGE_NCLASSES; c++) {
            n += item->counts[c];
        }
        u->dropped.fetch_add(n, std::memory_order_relaxed);
        return -1;
    }

    for (unsigned c = 0; c < AK_USAGE_NCLASSES; c++) {
        it->counts[c] = add_sat(it->counts[c], item->counts[c]);
    }
    if (item->last_used > it->last_used) {
        it->last_used = item->last_used;
    }

    return 0;
}


extern "C" ak_usage_item_t *
ak_usage_swap(ak_usage_t *u, uint32_t *n) noexcept
{
    if (u == nullptr || u->used[u->active] == 0
        || u->clean.load(std::memory_order_acquire) == 0)
    {
        return nullptr;
    }

    uint32_t retired = u->active;

    u->clean.store(0, std::memory_order_relaxed);
    u->active = retired ^ 1;

    if (n) {
        *n = u->slots;
    }

    return u->items + static_cast<size_t>(retired) * u->slots;
}


extern "C" void
ak_usage_clear(ak_usage_t *u) noexcept
{
    if (u == nullptr || u->clean.load(std::memory_order_acquire)) {
        return;
    }

    uint32_t retired = u->active ^ 1;

    std::memset(u->items + static_cast<size_t>(retired) * u->slots, 0,
                static_cast<size_t>(u->slots) * sizeof(ak_usage_item_t));
    u->used[retired] = 0;
    u->clean.store(1, std::memory_order_release);
}


extern "C" uint64_t
ak_usage_dropped(const ak_usage_t *u) noexcept
{
    return u ? u->dropped.load(std::memory_order_relaxed) : 0;
}


extern "C" uint64_t
ak_usage_fold_step(ak_usage_t *dst, ak_usage_t *src, uint32_t *at,
    uint32_t max) noexcept
{
    if (at == nullptr) {
        return 0;
    }

    if (dst == nullptr || src == nullptr || dst == src) {
        if (src != nullptr) {
            *at = src->slots;
        }
        return 0;
    }

    uint64_t moved = 0;
    uint32_t i = *at, n = 0;

    if (max == 0) {
        max = 1;                /* a step moves on */
    }
    ak_usage_item_t *half = src->items + static_cast<size_t>(src->active)
                                         * src->slots;

    /* (items are only removed from src here, after their slot is passed:
     * no probe of src runs until the fold has ended) */
    for (; i < src->slots && src->used[src->active] && n < max; i++) {
        ak_usage_item_t *it = &half[i];

        if (it->day == 0) {
            continue;
        }

        if (ak_usage_merge(dst, it) == 0) {
            for (unsigned c = 0; c < AK_USAGE_NCLASSES; c++) {
                moved += it->counts[c];
            }
        }

        std::memset(it, 0, sizeof(*it));
        src->used[src->active]--;
        n++;
    }

    *at = src->used[src->active] ? i : src->slots;
    return moved;
}


extern "C" uint64_t
ak_usage_fold(ak_usage_t *dst, ak_usage_t *src) noexcept
{
    uint32_t at = 0;

    return ak_usage_fold_step(dst, src, &at, UINT32_MAX);
}
