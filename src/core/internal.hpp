/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * internal.hpp: helpers shared by the core's .cpp files (not for the glue,
 * not for the CLI).  Nothing here allocates or throws.
 *
 * Blob layout (version 2), all integers unsigned LEB128 varints unless said
 * otherwise:
 *
 *   byte 0   version (2; 1 stored the rules as read, one after another)
 *   byte 1   status (bits 0-1) | rate_period << 2 (bits 2-3)
 *            | quota_period << 4 (bits 4-6) | kHasExt (bit 7)
 *   byte 2   presence bits, kHas* below
 *   [ips]        u16 LE section length, then the rules made for matching:
 *                u16 LE n4; n4 IPv4 networks (4 bytes each, host bits
 *                zero); their n4 prefixes (a byte each, 0..32); then the
 *                IPv6 rules: prefix, ceil(prefix / 8) address bytes (host
 *                bits zero)
 *   [referrers]  u16 LE section length, then the rules made for matching:
 *                u16 LE ne, u16 LE nw; the lengths (1..254, a byte each) of
 *                the ne exact rules, then of the nw ".domain" ones; then
 *                the rules' bytes in the same order (lowercase host; a
 *                leading '.' means "*." = any subdomain, and only those
 *                rules have one)
 *   [id] [owner] [plan] [scopes]   varint length, bytes
 *   [expires_at] varint (> 0)
 *   [rate N]     varint, present iff rate_period != 0
 *   [burst]      varint (> 0), only with a rate: the burst in effect (the
 *                field, or N - 1 without one: ak_rate_default_burst)
 *   [quota N]    varint, present iff quota_period != 0
 *   [ext]        iff kHasExt: one byte of presence bits, kExt* below, then
 *     [identity]     32 bytes: the hash whose quota counters the key uses
 *                    (absent: its own; never stored equal to it)
 *     [alias_until]  varint (> 0): the old secret of a rotated key, refused
 *                    as revoked from then on
 *     [rate_scope]   varint, AK_RATE_SCOPE_NODE or _CLUSTER (only with a
 *                    rate)
 *
 * ips and referrers come first so that the hot match functions find them
 * from the header alone.
 */

#ifndef AK_INTERNAL_HPP
#define AK_INTERNAL_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ak_core.h"

namespace ak {

namespace blob {

constexpr uint8_t kVersion = 2;
constexpr size_t kHeaderLen = 3;

constexpr uint8_t kStatusMask = 0x03;
constexpr unsigned kRateShift = 2;
constexpr uint8_t kRateMask = 0x0c;
constexpr unsigned kQuotaShift = 4;
constexpr uint8_t kQuotaMask = 0x70;
constexpr uint8_t kHasExt = 0x80;

constexpr uint8_t kHasIps = 0x01;
constexpr uint8_t kHasReferrers = 0x02;
constexpr uint8_t kHasId = 0x04;
constexpr uint8_t kHasOwner = 0x08;
constexpr uint8_t kHasPlan = 0x10;
constexpr uint8_t kHasScopes = 0x20;
constexpr uint8_t kHasExpires = 0x40;
constexpr uint8_t kHasBurst = 0x80;

constexpr uint8_t kExtIdentity = 0x01;
constexpr uint8_t kExtAliasUntil = 0x02;
constexpr uint8_t kExtRateScope = 0x04;
constexpr uint8_t kExtKnown = kExtIdentity | kExtAliasUntil | kExtRateScope;

} // namespace blob

/* limits of the record fields */
constexpr size_t kTextMax = 256;                 /* owner, plan */
constexpr size_t kScopeMax = 64;                 /* one scope word */
constexpr uint64_t kExpiresMax = 999999999999999999ULL;  /* 18 digits */
constexpr uint64_t kRateMax = 1000000000ULL;
constexpr uint64_t kBurstMax = AK_BURST_MAX;
constexpr uint64_t kQuotaMax = 1000000000000000ULL;


/* ---- character classes (ASCII only, locale independent) ------------- */

inline bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }

inline bool is_alpha(unsigned char c) noexcept
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

inline bool is_alnum(unsigned char c) noexcept
{
    return is_digit(c) || is_alpha(c);
}

inline unsigned char to_lower(unsigned char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + 32) : c;
}

inline bool is_hex(unsigned char c) noexcept
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

inline bool eq_nocase(const char *a, const char *b, size_t n) noexcept
{
    for (size_t i = 0; i < n; i++) {
        if (to_lower(static_cast<unsigned char>(a[i]))
            != to_lower(static_cast<unsigned char>(b[i])))
        {
            return false;
        }
    }
    return true;
}


/* ---- bounded writer: counts what it would need even past cap --------- */

struct Writer {
    unsigned char *buf;
    size_t cap;
    size_t len;

    Writer(unsigned char *b, size_t c) noexcept : buf(b), cap(c), len(0) {}

    bool fits() const noexcept { return len <= cap; }

    void put(uint8_t v) noexcept
    {
        if (buf && len < cap) {
            buf[len] = v;
        }
        len++;
    }

    void put_bytes(const void *p, size_t n) noexcept
    {
        if (buf && n <= cap && len <= cap - n) {
            std::memcpy(buf + len, p, n);
        }
        len += n;
    }

    void put_varint(uint64_t v) noexcept
    {
        while (v >= 0x80) {
            put(static_cast<uint8_t>(v | 0x80));
            v >>= 7;
        }
        put(static_cast<uint8_t>(v));
    }

    void put_str(const char *p, size_t n) noexcept
    {
        put_varint(n);
        put_bytes(p, n);
    }

    /* writes a u16 LE at 'at' (a placeholder written earlier) */
    void patch_u16(size_t at, size_t value) noexcept
    {
        if (buf && at + 2 <= cap) {
            buf[at] = static_cast<uint8_t>(value & 0xff);
            buf[at + 1] = static_cast<uint8_t>((value >> 8) & 0xff);
        }
    }
};


/* ---- bounds-checked reader ------------------------------------------ */

struct Reader {
    const unsigned char *p;
    size_t len;
    size_t off;
    bool ok;

    Reader(const unsigned char *b, size_t l) noexcept
        : p(b), len(l), off(0), ok(b != nullptr || l == 0) {}

    size_t left() const noexcept { return ok ? len - off : 0; }

    uint8_t u8() noexcept
    {
        if (!ok || off >= len) {
            ok = false;
            return 0;
        }
        return p[off++];
    }

    uint16_t u16() noexcept
    {
        uint16_t lo = u8();
        uint16_t hi = u8();
        return static_cast<uint16_t>(lo | (hi << 8));
    }

    uint64_t varint() noexcept
    {
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 64; shift += 7) {
            uint8_t b = u8();
            if (!ok) {
                return 0;
            }
            if (shift == 63 && (b & 0x7e)) {
                ok = false;     /* more than 64 bits */
                return 0;
            }
            v |= static_cast<uint64_t>(b & 0x7f) << shift;
            if (!(b & 0x80)) {
                return v;
            }
        }
        ok = false;
        return 0;
    }

    const unsigned char *bytes(size_t n) noexcept
    {
        if (!ok || n > len - off) {
            ok = false;
            return nullptr;
        }
        const unsigned char *r = p + off;
        off += n;
        return r;
    }
};


/* ---- error message builder: printable ASCII, always NUL-terminated --- */

struct ErrBuf {
    char *buf;
    size_t cap;
    size_t len;

    ErrBuf(char *b, size_t c) noexcept : buf(b), cap(c), len(0)
    {
        if (buf && cap) {
            buf[0] = '\0';
        }
    }

    void add(const char *s, size_t n) noexcept
    {
        for (size_t i = 0; i < n; i++) {
            addc(s[i]);
        }
    }

    void add(const char *s) noexcept { add(s, std::strlen(s)); }

    void addc(char c) noexcept
    {
        if (buf && cap && len + 1 < cap) {
            buf[len++] = c;
            buf[len] = '\0';
        }
    }

    void add_u64(uint64_t v) noexcept
    {
        char tmp[24];
        size_t n = 0;
        do {
            tmp[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);
        while (n) {
            addc(tmp[--n]);
        }
    }

    /* "value", odd bytes as \xHH, cut after max bytes with "..." */
    void add_quoted(const char *s, size_t n, size_t max = 40) noexcept
    {
        static const char hex[] = "0123456789abcdef";
        addc('"');
        for (size_t i = 0; i < n && i < max; i++) {
            unsigned char c = static_cast<unsigned char>(s[i]);
            if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
                addc('\\');
                addc('x');
                addc(hex[c >> 4]);
                addc(hex[c & 0xf]);
            } else {
                addc(static_cast<char>(c));
            }
        }
        if (n > max) {
            add("...");
        }
        addc('"');
    }

    void field(const char *name) noexcept
    {
        add("field \"");
        add(name);
        add("\": ");
    }
};


/* ---- field parsers shared by ak_record_build and ak::validate_field --- */

/* match.cpp: encode the ips / referrers rules (entries only, no section
 * length).  false + message (after the "field ...: " prefix) if bad. */
bool encode_ips(const char *v, size_t len, Writer &w, ErrBuf &e) noexcept;
bool encode_referrers(const char *v, size_t len, Writer &w, ErrBuf &e)
    noexcept;

/* match.cpp: structural checks of encoded sections (for ak_record_view) */
bool check_ips_section(const unsigned char *p, size_t len) noexcept;
bool check_referrers_section(const unsigned char *p, size_t len) noexcept;

/*
 * match.cpp: the host of an absolute URL (Referer), without brackets
 * removed and without a trailing dot.  false when unparsable.
 */
bool referer_host(const char *s, size_t len, const char **host,
    size_t *host_len) noexcept;

/* Locates the ips / referrers sections of a blob from its header.  The
 * spans are empty when absent.  false when the blob is too short.  (The
 * matchers use the sections the view found; the unit tests use this.) */
bool blob_rule_sections(const unsigned char *b, size_t len,
    const unsigned char **ips, size_t *ips_len,
    const unsigned char **refs, size_t *refs_len) noexcept;

/* record.cpp: the fields, in canonical order (= ak::kRecordFields) */
enum Field {
    F_ID, F_OWNER, F_PLAN, F_STATUS, F_EXPIRES, F_SCOPES, F_IPS,
    F_REFERRERS, F_RATE, F_BURST, F_QUOTA, F_RATE_SCOPE, F_IDENTITY,
    F_ALIAS_UNTIL, F_COUNT
};

extern const char *const kFieldNames[F_COUNT];

/* what parse_field learns of the scalar fields */
struct Scalars {
    uint8_t status = AK_STATUS_ACTIVE;
    uint64_t expires = 0;
    uint8_t rate_period = AK_PERIOD_NONE;
    uint64_t rate_n = 0;
    uint64_t burst = 0;
    uint8_t quota_period = AK_PERIOD_NONE;
    uint64_t quota_n = 0;
    uint8_t rate_scope = AK_RATE_SCOPE_DEFAULT;
    size_t scope_words = 0;
    bool has_identity = false;
    unsigned char identity[AK_HASH_LEN] = {};
    uint64_t alias_until = 0;
};

/* -1 when the module does not read that field */
int field_index(const char *name, size_t len) noexcept;

/*
 * Parses one non-empty field value.  Text fields (id, owner, plan, scopes)
 * and the ips / referrers sections are written to w in their blob form;
 * the others go to s.  false and "field \"name\": why" in e when malformed.
 */
bool parse_field(int index, const char *v, size_t len, Scalars &s,
    Writer &w, ErrBuf &e) noexcept;

/*
 * The quota word of an ak_key_state_t: q_window and q_left, its bytes 8-15.
 * In the cache it is changed without the zone lock (ak_cache_quota_take
 * takes one count by compare-and-swap), so every change of it, with the
 * lock too, is a compare-and-swap or an atomic store (ak_core.h).  Without
 * the lock q_left only ever goes down, in the same window.
 */
namespace qword {

typedef uint64_t __attribute__((may_alias)) word_t;

struct Pair {
    uint32_t window;
    uint32_t left;
};

static_assert(offsetof(ak_key_state_t, q_window) == 8, "quota word at 8");
static_assert(offsetof(ak_key_state_t, q_left)
              == offsetof(ak_key_state_t, q_window) + 4, "q_left beside");
static_assert(alignof(ak_key_state_t) >= 8, "quota word aligned");
static_assert(sizeof(Pair) == 8 && offsetof(Pair, left) == 4, "pair");

inline word_t *
of(ak_key_state_t *st) noexcept
{
    return reinterpret_cast<word_t *>(&st->q_window);
}

inline uint64_t
pack(uint32_t window, uint32_t left) noexcept
{
    Pair      p{window, left};
    uint64_t  w;

    std::memcpy(&w, &p, sizeof(w));
    return w;
}

inline Pair
unpack(uint64_t w) noexcept
{
    Pair  p;

    std::memcpy(&p, &w, sizeof(p));
    return p;
}

inline uint64_t
load(ak_key_state_t *st) noexcept
{
    return __atomic_load_n(of(st), __ATOMIC_ACQUIRE);
}

/* *expected is set to the word found when it is not it */
inline bool
cas(ak_key_state_t *st, uint64_t *expected, uint64_t desired) noexcept
{
    return __atomic_compare_exchange_n(of(st), expected, desired, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

inline void
store(ak_key_state_t *st, uint64_t w) noexcept
{
    __atomic_store_n(of(st), w, __ATOMIC_RELEASE);
}

/*
 * q_used beside the word: changed with the lock held only, but read
 * without it by ak_cache_quota_take (an atomic load), so it is stored
 * atomically too (a plain store beside an atomic load is a data race)
 */
inline void
set_used(ak_key_state_t *st, uint64_t v) noexcept
{
    __atomic_store_n(&st->q_used, v, __ATOMIC_RELEASE);
}

} // namespace qword


/* saturating arithmetic of the limits and the cache's ages */
inline uint64_t sat_add(uint64_t a, uint64_t b) noexcept
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

inline uint64_t sat_mul(uint64_t a, uint64_t b) noexcept
{
    return (b != 0 && a > UINT64_MAX / b) ? UINT64_MAX : a * b;
}


/*
 * ak_gcra (see ak_core.h), inline: ak_cache_gcra runs it on every request
 * of a key with a rate, its TAT then in a register, not in memory for a
 * call.  ak_gcra is this.
 */
inline int gcra(uint64_t *tat, uint64_t now_us, uint64_t interval_us,
    uint32_t burst, ak_rate_result_t *res) noexcept
{
    /* res is written where it is known (no result of our own on the
     * stack when it is null: no stack canary in ak_cache_gcra) */
    if (tat == nullptr) {
        if (res != nullptr) {
            res->remaining = 0;
            res->retry_after_us = 0;
            res->reset_us = 0;
        }
        return 1;
    }

    const uint64_t T = interval_us ? interval_us : 1;
    const uint64_t tau = sat_mul(burst, T);
    const uint64_t t = *tat > now_us ? *tat : now_us;   /* max(tat, now) */
    const uint64_t wait = t - now_us;                   /* bucket level */

    if (wait > tau) {
        /* limited: the next request conforms once t - now <= tau */
        if (res != nullptr) {
            res->remaining = 0;
            res->retry_after_us = wait - tau;
            res->reset_us = wait;
        }
        return 0;
    }

    const uint64_t new_tat = sat_add(t, T);
    *tat = new_tat;

    if (res != nullptr) {
        /* how many more would be allowed right now: (tau - wait) / T */
        uint64_t remaining = (tau - wait) / T;
        res->remaining = remaining > UINT32_MAX
                         ? UINT32_MAX : static_cast<uint32_t>(remaining);
        res->retry_after_us = 0;
        res->reset_us = new_tat - now_us;
    }
    return 1;
}

} // namespace ak

#endif
