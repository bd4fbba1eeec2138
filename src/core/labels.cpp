/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * labels.cpp: request counts by a record field (api_key_metrics
 * labels=plan|owner), with a hard cap on the number of values: a table in
 * shared memory of at most capacity values, found through an open-addressed
 * index (2 * capacity slots), and one more row, "other", for everything
 * else.  Values are only added (until the table is reset): a value's row
 * never moves, so the metrics page may point at it.  The caller holds the
 * zone lock.
 */

#include "ak_core.h"

#include <cstring>

namespace {

struct Value {
    uint32_t  len;
    char      data[AK_LABEL_VALUE_MAX];
};

const char kOther[] = "other";

uint32_t fnv1a(const char *s, size_t n) noexcept
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= static_cast<unsigned char>(s[i]);
        h *= 16777619u;
    }
    return h;
}

} // namespace

/* header; then Value[capacity], uint32_t index[2 * capacity] (value + 1,
 * 0: empty), uint64_t counts[(capacity + 1) * nstatus] ("other" last) */
struct ak_labels_s {
    uint32_t  capacity;
    uint32_t  nstatus;
    uint32_t  n;
    uint32_t  kind;
};

namespace {

Value *values(ak_labels_t *l) noexcept
{
    return reinterpret_cast<Value *>(l + 1);
}

const Value *values(const ak_labels_t *l) noexcept
{
    return reinterpret_cast<const Value *>(l + 1);
}

uint32_t *index_of(ak_labels_t *l) noexcept
{
    return reinterpret_cast<uint32_t *>(values(l) + l->capacity);
}

uint64_t *counts(ak_labels_t *l) noexcept
{
    /* after the index, 8-byte aligned */
    uintptr_t p = reinterpret_cast<uintptr_t>(index_of(l) + 2 * l->capacity);
    p = (p + 7) & ~static_cast<uintptr_t>(7);
    return reinterpret_cast<uint64_t *>(p);
}

const uint64_t *counts(const ak_labels_t *l) noexcept
{
    return counts(const_cast<ak_labels_t *>(l));
}

} // namespace


extern "C" size_t
ak_labels_size(uint32_t max, uint32_t nstatus) noexcept
{
    return sizeof(ak_labels_s) + static_cast<size_t>(max) * sizeof(Value)
           + 2 * static_cast<size_t>(max) * sizeof(uint32_t) + 8
           + (static_cast<size_t>(max) + 1) * nstatus * sizeof(uint64_t);
}


extern "C" ak_labels_t *
ak_labels_create(void *mem, size_t size, uint32_t max, uint32_t nstatus,
    uint32_t kind) noexcept
{
    if (mem == nullptr || max == 0 || max > AK_LABEL_MAX_VALUES
        || nstatus == 0 || nstatus > 64 || size < ak_labels_size(max, nstatus)
        || reinterpret_cast<uintptr_t>(mem) % 8 != 0)
    {
        return nullptr;
    }

    std::memset(mem, 0, ak_labels_size(max, nstatus));

    ak_labels_t *l = static_cast<ak_labels_t *>(mem);
    l->capacity = max;
    l->nstatus = nstatus;
    l->kind = kind;

    return l;
}


extern "C" uint32_t
ak_labels_capacity(const ak_labels_t *l) noexcept
{
    return l ? l->capacity : 0;
}


extern "C" uint32_t
ak_labels_kind(const ak_labels_t *l) noexcept
{
    return l ? l->kind : 0;
}


extern "C" void
ak_labels_reset(ak_labels_t *l, uint32_t kind) noexcept
{
    if (l == nullptr) {
        return;
    }

    uint32_t cap = l->capacity, ns = l->nstatus;
    (void) ak_labels_create(l, ak_labels_size(cap, ns), cap, ns, kind);
}


namespace {

/*
 * The row of value: found, or added while fewer than limit (<= capacity)
 * values are known; capacity ("other") for a value longer than
 * AK_LABEL_VALUE_MAX; -1 for a new value without room.
 */
int64_t row_of(ak_labels_t *l, const char *value, size_t len, uint32_t limit)
    noexcept
{
    if (len > AK_LABEL_VALUE_MAX) {
        return l->capacity;
    }

    uint32_t *idx = index_of(l);
    uint32_t slots = 2 * l->capacity;
    uint32_t i = fnv1a(value, len) % slots;

    for (uint32_t probe = 0; probe < slots; probe++) {
        uint32_t v = idx[i];

        if (v == 0) {
            /* not known: a new value while there is room */
            if (l->n < limit && l->n < l->capacity) {
                Value &nv = values(l)[l->n];
                nv.len = static_cast<uint32_t>(len);
                if (len) {
                    std::memcpy(nv.data, value, len);
                }
                idx[i] = ++l->n;
                return l->n - 1;
            }
            return -1;
        }

        const Value &kv = values(l)[v - 1];
        if (kv.len == len && (len == 0
                              || std::memcmp(kv.data, value, len) == 0))
        {
            return v - 1;
        }

        i = (i + 1 == slots) ? 0 : i + 1;
    }

    return -1;
}

} // namespace


extern "C" void
ak_labels_count(ak_labels_t *l, const char *value, size_t len,
    uint32_t status, uint32_t limit) noexcept
{
    if (l == nullptr || status >= l->nstatus || (len && value == nullptr)) {
        return;
    }

    int64_t row = row_of(l, value, len, limit);

    if (row < 0) {
        row = l->capacity;             /* "other" */
    }

    counts(l)[static_cast<size_t>(row) * l->nstatus + status]++;
}


extern "C" int
ak_labels_count_local(ak_labels_t *l, const char *value, size_t len,
    uint32_t status) noexcept
{
    if (l == nullptr || status >= l->nstatus || (len && value == nullptr)) {
        return 0;
    }

    int64_t row = row_of(l, value, len, l->capacity);

    if (row < 0) {
        return -1;
    }

    counts(l)[static_cast<size_t>(row) * l->nstatus + status]++;

    return 0;
}


extern "C" uint64_t
ak_labels_fold_step(ak_labels_t *dst, ak_labels_t *src, uint32_t limit,
    uint32_t *at, uint32_t max) noexcept
{
    if (at == nullptr) {
        return 0;
    }

    if (dst == nullptr || src == nullptr || dst == src
        || dst->nstatus != src->nstatus)
    {
        *at = AK_LABELS_FOLDED;
        return 0;
    }

    if (max == 0) {
        max = 1;                /* a step moves on */
    }

    uint32_t ns = src->nstatus;
    uint64_t total = 0;
    uint64_t *sc = counts(src);
    uint64_t *dc = counts(dst);
    uint32_t v = *at, n = 0;

    /* the values src knows, then its "other" row (row capacity); src is
     * only changed once they are all added */

    for (; v <= src->n && n < max; v++, n++) {
        uint32_t srow = (v < src->n) ? v : src->capacity;
        uint64_t *c = sc + static_cast<size_t>(srow) * ns;
        uint64_t sum = 0;

        for (uint32_t s = 0; s < ns; s++) {
            sum += c[s];
        }

        if (sum == 0) {
            continue;
        }

        int64_t row = dst->capacity;

        if (v < src->n) {
            const Value &sv = values(src)[v];
            row = row_of(dst, sv.data, sv.len, limit);
            if (row < 0) {
                row = dst->capacity;
            }
        }

        for (uint32_t s = 0; s < ns; s++) {
            dc[static_cast<size_t>(row) * ns + s] += c[s];
        }

        total += sum;
    }

    if (v <= src->n) {
        *at = v;
        return total;
    }

    /* src empty again: its used rows, index and values */

    for (v = 0; v < src->n; v++) {
        std::memset(sc + static_cast<size_t>(v) * ns, 0, ns * sizeof(uint64_t));
    }
    std::memset(sc + static_cast<size_t>(src->capacity) * ns, 0,
                ns * sizeof(uint64_t));
    if (src->n) {
        std::memset(index_of(src), 0, 2 * static_cast<size_t>(src->capacity)
                                      * sizeof(uint32_t));
        src->n = 0;
    }

    *at = AK_LABELS_FOLDED;
    return total;
}


extern "C" uint64_t
ak_labels_fold(ak_labels_t *dst, ak_labels_t *src, uint32_t limit) noexcept
{
    uint32_t at = 0;

    return ak_labels_fold_step(dst, src, limit, &at, UINT32_MAX);
}


extern "C" uint32_t
ak_labels_snapshot(const ak_labels_t *l, ak_str_t *out, uint64_t *cnt,
    uint32_t cap) noexcept
{
    if (l == nullptr || out == nullptr || cnt == nullptr || cap == 0) {
        return 0;
    }

    uint32_t n = l->n < cap - 1 ? l->n : cap - 1;
    const uint64_t *c = counts(l);

    for (uint32_t v = 0; v < n; v++) {
        out[v].data = values(l)[v].data;
        out[v].len = values(l)[v].len;
        std::memcpy(cnt + static_cast<size_t>(v) * l->nstatus,
                    c + static_cast<size_t>(v) * l->nstatus,
                    l->nstatus * sizeof(uint64_t));
    }

    out[n].data = kOther;
    out[n].len = sizeof(kOther) - 1;
    std::memcpy(cnt + static_cast<size_t>(n) * l->nstatus,
                c + static_cast<size_t>(l->capacity) * l->nstatus,
                l->nstatus * sizeof(uint64_t));

    return n + 1;
}
