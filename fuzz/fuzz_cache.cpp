/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_cache: the shared-memory cache under operation sequences from the
 * input (put, put_negative, put_bad, lookup, lookup_again, remove, revoke,
 * flush, new_generation, the state functions, set_conf, attach, time
 * steps), with after every operation:
 *   - ak_cache_validate and ak_cache_check (every chain, list and count);
 *   - the event sequence moved exactly as the operation says (an
 *     operation that found the block inconsistent and reformatted it would
 *     move it: none may);
 *   - every answer compared with a model map of what each key holds.  A
 *     key the model knows exactly gets the exact answer (lookup result,
 *     blob, flags, what remove / revoke / put_bad return, its limiter
 *     state); once the cache evicts (stats.evictions moves) the model
 *     no longer knows which keys are still there, and those keys are
 *     only held to soundness: an answer of FRESH/STALE has the blob last
 *     put, NEGATIVE only for a key last stored negative, until the key is
 *     stored again.  A negative entry that could not be stored (no slot
 *     without evicting a live positive one) shows in stats.inserts.
 * Kill points: an operation may be cut short at any step of the writer
 * (the build defines AK_CACHE_KILL_POINTS: the hook longjmps out, as if the
 * worker died there, the zone lock then released by nginx).  Then every
 * lookup must stay within the block (the sanitizers watch) and answer
 * what was there before or what the operation was writing; the next
 * writer must leave a cache that ak_cache_check accepts.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <csetjmp>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

enum Kind { NONE, POS, NEG, BAD };

struct Entry {
    Kind kind = NONE;
    bool exact = true;          /* the model knows what the cache holds */
    std::string blob;
    uint64_t fetched = 0;
    uint32_t gen = 0;
    bool stored_stale = false;
    bool revoked = false;
    bool gone = false;
    uint64_t version = 0;
    ak_key_state_t st = {};
};

constexpr size_t kKeys = 24;

struct Run {
    std::vector<uint64_t> words;
    size_t size = 0;
    ak_cache_t *c = nullptr;
    ak_cache_conf_t conf = {};
    std::vector<unsigned char> scratch;
    unsigned char hashes[kKeys][AK_HASH_LEN];
    Entry m[kKeys];
    /* a caller's kept copies (ak_cache_lookup_kept, ak_cache_keep): what
       the cache said of them, and their bytes */
    ak_cache_kept_t kept[kKeys] = {};
    std::string kept_blob[kKeys];
    uint64_t seq = 0;           /* what ak_cache_event_seq must say */
    uint32_t gen = 1;
    uint64_t now = 0;
    uint64_t evictions = 0;
    std::vector<std::string> records;   /* viewable blobs */
};

bool dead_pos(const Run &r, const Entry &e)
{
    uint64_t age = r.now > e.fetched ? r.now - e.fetched : 0;
    uint64_t lim = r.conf.ttl_ms + r.conf.stale_ms;
    if (lim < r.conf.ttl_ms) lim = UINT64_MAX;
    return age >= lim;
}

bool dead_neg(const Run &r, const Entry &e)
{
    uint64_t age = r.now > e.fetched ? r.now - e.fetched : 0;
    return e.gen != r.gen || age >= r.conf.negative_ttl_ms;
}

FUZZ_ORACLE void check_all(Run &r)
{
    FUZZ_CHECK(ak_cache_validate(r.c, r.size) == nullptr);
    const char *why = ak_cache_check(r.c, r.scratch.data(), r.scratch.size());
    if (why) {
        std::fprintf(stderr, "ak_cache_check: %s\n", why);
    }
    FUZZ_CHECK(why == nullptr);
    FUZZ_CHECK(ak_cache_event_seq(r.c) == r.seq);

    ak_cache_stats_t st;
    ak_cache_get_stats(r.c, &st);
    if (st.evictions != r.evictions) {
        FUZZ_CHECK(st.evictions > r.evictions);
        r.evictions = st.evictions;
        for (auto &e : r.m) {
            e.exact = false;
        }
    }

    bool all_exact = true;
    uint32_t pos = 0, neg = 0;
    for (const auto &e : r.m) {
        all_exact = all_exact && e.exact;
        pos += (e.kind == POS && !e.gone) ? 1 : 0;
        neg += (e.kind == NEG || e.kind == BAD) ? 1 : 0;
    }
    if (all_exact) {
        FUZZ_CHECK(st.entries == pos);
        FUZZ_CHECK(st.negative_entries == neg);
    }
}

/* the limiter's state: the TAT bits of the tag word (the bits above are
 * the cache's: its tag, the referenced bit lookups set) and the rest */
bool same_state(const ak_key_state_t *a, const ak_key_state_t *b)
{
    return (a->tat_us & AK_TAT_MASK) == (b->tat_us & AK_TAT_MASK)
           && a->q_window == b->q_window && a->q_left == b->q_left
           && a->q_used == b->q_used && a->r_left == b->r_left
           && a->r_next_ms == b->r_next_ms;
}

/* what ak_key_state_carry keeps between two blobs (put over an entry) */
ak_key_state_t carried(const std::string &old_blob, const std::string &blob,
    const unsigned char *hash, ak_key_state_t st)
{
    ak_record_t o, n;
    if (ak_record_view(hash, reinterpret_cast<const unsigned char *>(old_blob.data()),
                       old_blob.size(), &o) == 0
        && ak_record_view(hash, reinterpret_cast<const unsigned char *>(blob.data()),
                          blob.size(), &n) == 0)
    {
        ak_key_state_carry(&o, &n, &st);
    }
    return st;
}

void op_lookup(Run &r, size_t k, bool again)
{
    Entry &e = r.m[k];
    /* a buffer of the blob's size plus 0-8 bytes, on the heap: the copy
     * writes whole words only where it has room (ASan sees a byte more) */
    std::vector<unsigned char> room(e.blob.size() + (r.now + k) % 9);
    unsigned char *buf = room.empty() ? nullptr : room.data();
    size_t len = 0;
    uint32_t flags = 0xdead, slot = 0xdead;
    int rc = (again ? ak_cache_lookup_again : ak_cache_lookup)(
        r.c, r.hashes[k], r.now, buf, room.size(), &len, &flags, &slot);

    if (rc == AK_CACHE_FRESH || rc == AK_CACHE_STALE) {
        FUZZ_CHECK(e.kind == POS && !e.gone);
        FUZZ_CHECK(len == e.blob.size());
        FUZZ_CHECK(std::memcmp(buf, e.blob.data(), len) == 0);
        ak_key_state_t *st = ak_cache_state(r.c, slot, r.hashes[k]);
        FUZZ_CHECK(st != nullptr);
        if (e.exact) {
            FUZZ_CHECK(flags
                       == ((e.revoked ? AK_ENTRY_REVOKED : 0u)
                           | ak_record_entry_flags(buf, len)));
            FUZZ_CHECK(same_state(st, &e.st));
        }
    } else if (rc == AK_CACHE_NEGATIVE) {
        FUZZ_CHECK(e.kind == NEG || e.kind == BAD);
        FUZZ_CHECK(flags == (e.kind == BAD ? AK_ENTRY_BAD : 0u));
    } else {
        FUZZ_CHECK(rc == AK_CACHE_MISS);
    }

    if (!e.exact) {
        if (ak_cache_peek(r.c, r.hashes[k]) == 0) {
            e = Entry();                /* evicted: known again */
        }
        return;
    }

    int want;
    switch (e.kind) {
    case NONE:
        want = AK_CACHE_MISS;
        break;
    case NEG:
        /* an expired one stays until a writer removes it */
        want = dead_neg(r, e) ? AK_CACHE_MISS : AK_CACHE_NEGATIVE;
        break;
    case BAD:
        want = dead_neg(r, e) ? AK_CACHE_MISS : AK_CACHE_NEGATIVE;
        break;
    default:
        if (dead_pos(r, e)) {
            want = AK_CACHE_MISS;       /* kept until a writer removes it */
        } else if (e.gone) {
            want = AK_CACHE_MISS;
        } else {
            uint64_t age = r.now > e.fetched ? r.now - e.fetched : 0;
            want = (age < r.conf.ttl_ms && e.gen == r.gen && !e.stored_stale)
                   ? AK_CACHE_FRESH : AK_CACHE_STALE;
        }
        break;
    }
    FUZZ_CHECK(rc == want);
}

/*
 * A lookup by a caller that keeps a copy: what it keeps for key k (or, by
 * other == 1, for key k + 1; by other == 2 nothing; by other == 3 the
 * mark alone, without the rest).  A KEPT answer must mean that the entry
 * holds what the kept copy holds, with the same answer (FRESH or STALE)
 * and flags as a copying lookup, whether the entry was read (its mark) or
 * not (the cache unchanged since); else the record is copied as
 * ak_cache_lookup copies it, and a mark comes with it unless the record
 * is plain or rated.
 */
void op_lookup_kept(Run &r, size_t k, unsigned other)
{
    size_t ko = (k + 1) % kKeys;
    std::vector<unsigned char> room(AK_RECORD_MAX + 8, 0xa5);
    ak_cache_found_t f;

    f.kept = other == 0 ? &r.kept[k] : other == 1 ? &r.kept[ko] : nullptr;
    f.mark = other == 3 ? r.kept[k].mark : 0;
    f.len = 0;
    f.flags = 0xdead;
    f.slot = 0xdead;
    f.writes = 0xdead;
    f.until = 0xdead;
    uint64_t asked = f.kept ? f.kept->mark : other == 3 ? f.mark : 0;
    ak_cache_kept_t before_ko = r.kept[ko];

    int rc = ak_cache_lookup_kept(r.c, r.hashes[k], r.now, room.data(),
                                  room.size(), &f);

    /* another key's kept record is never changed by this key's lookup */
    FUZZ_CHECK(std::memcmp(&before_ko, &r.kept[ko], sizeof(before_ko)) == 0
               || (other != 1 && ko == k));

    if (rc != AK_CACHE_FRESH && rc != AK_CACHE_STALE) {
        FUZZ_CHECK(!(f.flags & AK_ENTRY_KEPT) || rc == AK_CACHE_MISS);
        FUZZ_CHECK(rc != AK_CACHE_MISS || f.mark == 0);
        return;
    }

    if (f.flags & AK_ENTRY_KEPT) {
        FUZZ_CHECK(asked != 0 && f.mark == asked);
        /* another key's kept copy never names this key's store */
        FUZZ_CHECK(other == 0 || other == 3);
        /* the buffer untouched, and the kept copy is the record: a second
           look copies the same bytes, with the same answer */
        FUZZ_CHECK(room[0] == 0xa5 && room[AK_RECORD_MAX] == 0xa5);
        const std::string &kb = r.kept_blob[k];
        FUZZ_CHECK(f.len == kb.size());
        std::vector<unsigned char> again(AK_RECORD_MAX + 8);
        size_t len = 0;
        uint32_t flags = 0, slot = 0;
        int rc2 = ak_cache_lookup_again(r.c, r.hashes[k], r.now, again.data(),
                                        again.size(), &len, &flags, &slot);
        FUZZ_CHECK(rc2 == rc && len == kb.size()
                   && std::memcmp(again.data(), kb.data(), len) == 0);
        FUZZ_CHECK(flags == (f.flags & ~AK_ENTRY_KEPT) && slot == f.slot);
        if (other == 0) {
            /* what is kept now says what this answer said */
            FUZZ_CHECK(r.kept[k].mark == f.mark && r.kept[k].slot == f.slot
                       && r.kept[k].flags == flags
                       && r.kept[k].writes == f.writes
                       && r.kept[k].until == f.until);
        }
        return;
    }

    FUZZ_CHECK(f.len <= AK_RECORD_MAX);
    uint32_t ef = ak_record_entry_flags(room.data(), f.len);
    if (ef & (AK_ENTRY_PLAIN | AK_ENTRY_RATED)) {
        FUZZ_CHECK(f.mark == 0);
    }
    if (r.m[k].exact && r.m[k].kind == POS) {
        FUZZ_CHECK(f.len == r.m[k].blob.size()
                   && std::memcmp(room.data(), r.m[k].blob.data(), f.len) == 0);
    }
    FUZZ_CHECK((rc == AK_CACHE_FRESH) == (f.until > r.now));
    ak_cache_keep(r.c, &r.kept[k], r.hashes[k], &f);
    FUZZ_CHECK(r.kept[k].mark == f.mark);
    r.kept_blob[k].assign(reinterpret_cast<const char *>(room.data()), f.len);
}

void op_put(Run &r, size_t k, fuzz::Input &in)
{
    Entry &e = r.m[k];
    uint8_t how = in.u8();
    std::string blob;
    if (how % 4 == 0 && !r.records.empty()) {
        blob = r.records[in.u8() % r.records.size()];
    } else if (how % 4 == 1) {
        blob = std::string(1 + in.u16() % AK_RECORD_MAX,
                           static_cast<char>(in.u8()));
    } else if (how % 4 == 2) {
        blob = std::string(in.u16() % 5000, 'x');   /* maybe 0 or too long */
    } else {
        blob = in.bytes(1 + in.u8() % 200);
    }
    bool outdated = (how & 4) && r.seq > 1;
    uint64_t seq = outdated ? r.seq - 1 - in.u8() % (r.seq - 1) : r.seq;

    int rc = ak_cache_put(r.c, r.hashes[k],
                          reinterpret_cast<const unsigned char *>(blob.data()),
                          blob.size(), r.now, seq);

    if (blob.empty() || blob.size() > AK_RECORD_MAX) {
        FUZZ_CHECK(rc == -1);
        return;
    }
    FUZZ_CHECK(rc == 0);

    Entry n;
    n.kind = POS;
    n.blob = blob;
    n.fetched = r.now;
    n.gen = r.gen;
    n.stored_stale = outdated;
    n.exact = e.exact || !outdated;
    if (e.kind == POS) {
        n.revoked = outdated && e.revoked;
        n.st = carried(e.blob, blob, r.hashes[k], e.st);
        if (!e.exact) {
            n.exact = false;            /* the state may be gone */
        }
    }
    e = n;
}

uint64_t inserts(const Run &r)
{
    ak_cache_stats_t st;
    ak_cache_get_stats(r.c, &st);
    return st.inserts;
}

/*
 * A negative entry is not stored when no slot can be had without evicting
 * a live positive entry (the key's own positive entry is dropped first):
 * true when it was.
 */
bool negative_stored(Run &r, size_t k, uint64_t before)
{
    if (inserts(r) != before) {
        return true;
    }
    r.m[k] = Entry();
    return false;
}

void op_put_negative(Run &r, size_t k, fuzz::Input &in)
{
    Entry &e = r.m[k];
    bool outdated = (in.u8() & 1) && r.seq > 1;
    uint64_t seq = outdated ? r.seq - 1 : r.seq;
    uint64_t before = inserts(r);
    FUZZ_CHECK(ak_cache_put_negative(r.c, r.hashes[k], r.now, seq) == 0);
    if (outdated) {
        FUZZ_CHECK(inserts(r) == before);
        return;
    }
    if (!negative_stored(r, k, before)) {
        return;
    }
    Entry n;
    n.kind = NEG;
    n.fetched = r.now;
    n.gen = r.gen;
    n.exact = true;
    e = n;
}

void op_put_bad(Run &r, size_t k, fuzz::Input &in)
{
    Entry &e = r.m[k];
    uint8_t how = in.u8();
    bool outdated = (how & 1) && r.seq > 1;
    uint64_t seq = outdated ? r.seq - 1 : r.seq;
    uint64_t version = (how & 2) ? e.version : in.u8();
    uint64_t before = inserts(r);
    int rc = ak_cache_put_bad(r.c, r.hashes[k], r.now, seq, version);
    FUZZ_CHECK(rc == 0 || rc == 1);
    if (rc == 1) {
        FUZZ_CHECK(e.kind == BAD && e.version == version);
    } else if (e.exact) {
        FUZZ_CHECK(!(e.kind == BAD && e.version == version));
    }
    if (outdated) {
        FUZZ_CHECK(inserts(r) == before);
        return;
    }
    if (!negative_stored(r, k, before)) {
        return;
    }
    Entry n;
    n.kind = BAD;
    n.fetched = r.now;
    n.gen = r.gen;
    n.version = version;
    n.exact = true;
    e = n;
}

void op_remove(Run &r, size_t k)
{
    Entry &e = r.m[k];
    int rc = ak_cache_remove(r.c, r.hashes[k]);
    r.seq++;
    if (e.exact) {
        int want = (e.kind == POS && !e.gone) || e.kind == NEG
                   || e.kind == BAD;
        FUZZ_CHECK(rc == want);
    }
    if (e.kind == POS) {
        e.gone = true;
    } else {
        e = Entry();
        e.exact = true;
    }
}

void op_revoke(Run &r, size_t k)
{
    Entry &e = r.m[k];
    int rc = ak_cache_revoke(r.c, r.hashes[k]);
    r.seq++;
    if (e.exact) {
        FUZZ_CHECK(rc == (e.kind == POS && !e.gone ? 1 : 0));
    }
    if (e.kind == POS) {
        e.revoked = true;
    }
}

void op_state(Run &r, size_t k, fuzz::Input &in)
{
    Entry &e = r.m[k];
    uint32_t slot = 0xdead;
    ak_key_state_t *st = ak_cache_state_find(r.c, r.hashes[k], &slot);
    if (st == nullptr) {
        if (e.exact) {
            FUZZ_CHECK(e.kind != POS);
        }
        return;
    }
    FUZZ_CHECK(e.kind == POS);
    FUZZ_CHECK(ak_cache_state(r.c, slot, r.hashes[k]) == st);
    FUZZ_CHECK(ak_cache_state(r.c, slot ^ 1, r.hashes[k]) != st);
    if (e.exact) {
        FUZZ_CHECK(same_state(st, &e.st));
    }
    /* the limiter writes its state (the TAT bits of the tag word: never
     * AK_TAT_NONE, which marks a slot that is no entry) */
    st->tat_us = (st->tat_us & ~AK_TAT_MASK) | (in.u64() % AK_TAT_NONE);
    st->q_window = in.u32();
    st->q_left = in.u32();
    st->q_used = in.u64();
    e.st = *st;
}

std::jmp_buf g_kill;
int g_countdown = -1;

void kill_hook()
{
    if (g_countdown > 0 && --g_countdown == 0) {
        std::longjmp(g_kill, 1);
    }
}

/* a lookup after a writer died: within the block, and what the key held
 * before or what the operation was writing (blob; negative) */
void lookup_after_kill(Run &r, size_t k, const std::string *blob,
    bool negative)
{
    static unsigned char buf[AK_RECORD_MAX];
    size_t len = 0;
    uint32_t flags = 0, slot = 0;
    const Entry &e = r.m[k];
    int rc = ak_cache_lookup(r.c, r.hashes[k], r.now, buf, sizeof(buf), &len,
                             &flags, &slot);

    if (rc == AK_CACHE_FRESH || rc == AK_CACHE_STALE) {
        bool before = e.kind == POS && len == e.blob.size()
                      && std::memcmp(buf, e.blob.data(), len) == 0;
        bool written = blob && len == blob->size()
                       && std::memcmp(buf, blob->data(), len) == 0;
        FUZZ_CHECK(before || written);
        /* the flag readers allow on unviewed is always its own blob's */
        FUZZ_CHECK((flags & (AK_ENTRY_PLAIN | AK_ENTRY_RATED))
                   == ak_record_entry_flags(buf, len));
    } else if (rc == AK_CACHE_NEGATIVE) {
        FUZZ_CHECK(e.kind == NEG || e.kind == BAD || negative);
    } else {
        FUZZ_CHECK(rc == AK_CACHE_MISS);
    }
}

/* one writer operation that may die at its countdown-th step: true when
 * it did (no object owning memory lives in this frame) */
__attribute__((noinline)) bool
run_killable(Run &r, size_t k, unsigned which, int countdown,
    const unsigned char *b, size_t len)
{
    g_countdown = countdown;
    ak_cache_kill_hook = kill_hook;

    if (setjmp(g_kill) != 0) {
        return true;
    }

    switch (which % 7) {
    case 0:
    case 1:
        (void) ak_cache_put(r.c, r.hashes[k], b, len, r.now, r.seq);
        break;
    case 2:
        (void) ak_cache_put_negative(r.c, r.hashes[k], r.now, r.seq);
        break;
    case 3:
        (void) ak_cache_put_bad(r.c, r.hashes[k], r.now, r.seq, which);
        break;
    case 4:
        (void) ak_cache_remove(r.c, r.hashes[k]);
        break;
    case 5:
        (void) ak_cache_revoke(r.c, r.hashes[k]);
        break;
    default:
        ak_cache_flush(r.c);
        break;
    }

    return false;
}

void op_killed(Run &r, size_t k, fuzz::Input &in)
{
    uint8_t which = in.u8();
    int countdown = 1 + in.u8() % 64;
    std::string blob(1 + in.u16() % AK_RECORD_MAX,
                     static_cast<char>(in.u8()));
    bool died = run_killable(r, k, which, countdown,
                             reinterpret_cast<const unsigned char *>(
                                 blob.data()), blob.size());

    ak_cache_kill_hook = nullptr;
    g_countdown = -1;

    /* the readers, while nobody has repaired anything */
    bool neg = which % 7 == 2 || which % 7 == 3;
    for (size_t j = 0; j < kKeys; j++) {
        lookup_after_kill(r, j, j == k ? &blob : nullptr, j == k && neg);

        /* a kept record is never taken as unchanged after a writer died
           (the count of writes stays odd until the next writer) */
        std::vector<unsigned char> room(AK_RECORD_MAX + 8);
        ak_cache_found_t f = {};
        f.kept = &r.kept[j];
        int rc = ak_cache_lookup_kept(r.c, r.hashes[j], r.now, room.data(),
                                      room.size(), &f);
        FUZZ_CHECK(!died || (f.writes & 1));
        FUZZ_CHECK(!(f.flags & AK_ENTRY_KEPT)
                   || (rc != AK_CACHE_MISS
                       && f.len == r.kept_blob[j].size()));
    }

    /* the next writer (any: this one changes nothing else) repairs */
    ak_cache_new_generation(r.c);
    const char *why = ak_cache_check(r.c, r.scratch.data(), r.scratch.size());
    if (why) {
        std::fprintf(stderr, "after a kill (%d): ak_cache_check: %s\n",
                     (int) died, why);
    }
    FUZZ_CHECK(why == nullptr);

    if (died) {
        ak_cache_stats_t st;
        ak_cache_get_stats(r.c, &st);
        /* every kill point is inside a writer: the next one reformatted */
        FUZZ_CHECK(st.entries + st.negative_entries == 0);
    }

    /* start the model again from a known state */
    ak_cache_flush(r.c);
    for (auto &e : r.m) e = Entry();
    r.gen++;
    r.seq = ak_cache_event_seq(r.c);
    ak_cache_stats_t st;
    ak_cache_get_stats(r.c, &st);
    r.evictions = st.evictions;
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);
    Run r;

    uint8_t cfg = in.u8();
    r.size = ak_cache_min_size() + (cfg & 0x80 ? 120u * (in.u8() % 64) : 0);
    r.words.assign(r.size / 8 + 1, 0);
    r.conf.ttl_ms = 1 + in.u16();
    r.conf.negative_ttl_ms = 1 + in.u16();
    r.conf.stale_ms = (cfg & 0x40) ? UINT64_MAX - in.u8() : in.u16();
    r.conf.negative_max_pct = (cfg & 0x20) ? in.u8() : 100;
    r.c = ak_cache_create(r.words.data(), r.size, &r.conf);
    FUZZ_CHECK(r.c != nullptr);
    if (r.conf.negative_max_pct == 0) r.conf.negative_max_pct = 25;
    r.scratch.resize(ak_cache_check_scratch(r.c));
    r.seq = ak_cache_event_seq(r.c);
    r.now = in.u32();

    for (size_t k = 0; k < kKeys; k++) {
        for (size_t b = 0; b < AK_HASH_LEN; b++) {
            /* a few share a bucket: the same first 4 bytes */
            r.hashes[k][b] = static_cast<unsigned char>(
                b < 4 && (cfg & 0x10) ? (k % 3) : (k * 37 + b * 11 + 1));
        }
    }

    /* a few viewable records, with and without a rate and a quota */
    static const char *const specs[][2] = {
        { "rate", "10/s" }, { "rate", "5/m" }, { "quota", "100/day" },
        { "quota", "50/day" }, { "owner", "x" },
    };
    for (const auto &sp : specs) {
        ak_str_t f = { sp[0], std::strlen(sp[0]) };
        ak_str_t v = { sp[1], std::strlen(sp[1]) };
        unsigned char blob[AK_RECORD_MAX];
        int n = ak_record_build(r.hashes[0], &f, &v, 1, blob, sizeof(blob),
                                nullptr);
        FUZZ_CHECK(n > 0);
        r.records.emplace_back(reinterpret_cast<char *>(blob),
                               static_cast<size_t>(n));
    }

    /* few keys or many */
    size_t nkeys = 1 + cfg % 8 + ((cfg & 8) ? 16 : 0);

    check_all(r);

    int steps = 0;
    while (!in.empty() && steps++ < 500) {
        uint8_t op = in.u8();
        size_t k = (op >> 4) % nkeys;

        switch (op % 16) {
        case 0: case 1: case 2:
            op_put(r, k, in);
            break;
        case 3:
            op_put_negative(r, k, in);
            break;
        case 4:
            op_put_bad(r, k, in);
            break;
        case 5: case 6:
            op_lookup(r, k, false);
            break;
        case 7:
            op_lookup_kept(r, k, (op >> 4) % 4);
            break;
        case 8:
            op_lookup(r, k, true);
            break;
        case 9:
            op_remove(r, k);
            break;
        case 10:
            op_revoke(r, k);
            break;
        case 11:
            if ((op & 0x30) == 0x30) {
                ak_cache_flush(r.c);
                r.seq++;
                for (auto &e : r.m) e = Entry();
            } else {
                ak_cache_new_generation(r.c);
                r.seq++;
                r.gen++;
            }
            break;
        case 12:
            op_state(r, k, in);
            break;
        case 13: {
            uint32_t d = in.u32();
            r.now += (op & 0x10) ? d : d % 100000;
            break;
        }
        case 14:
            if (op & 0x20) {
                op_killed(r, k, in);
                break;
            }
            /* a reload: attach again, maybe a new conf */
            FUZZ_CHECK(ak_cache_attach(r.words.data(), r.size) == r.c);
            if (op & 0x10) {
                r.conf.ttl_ms = 1 + in.u16();
                r.conf.negative_ttl_ms = 1 + in.u16();
                ak_cache_set_conf(r.c, &r.conf);
            }
            break;
        default:
            /* a lookup with a buffer too small is a MISS and changes
             * nothing the model knows */
            {
                unsigned char small[8];
                size_t len = 0;
                uint32_t fl = 0, sl = 0;
                Entry &e = r.m[k];
                int rc = ak_cache_lookup(r.c, r.hashes[k], r.now, small,
                                         sizeof(small), &len, &fl, &sl);
                if (e.kind == POS && e.blob.size() > sizeof(small)) {
                    FUZZ_CHECK(rc == AK_CACHE_MISS);
                } else {
                    op_lookup(r, k, true);      /* settles the model */
                }
            }
            break;
        }

        check_all(r);
    }

    return 0;
}
