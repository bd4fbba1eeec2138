/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * match.cpp: the "ips" and "referrers" rules of a record.
 *
 * Both are compiled once, when the record is built, into a form of the blob
 * made for matching (see internal.hpp): the IPv4 rules as (network,
 * prefix) tested four at a time, the IPv6 ones apart; the referrers rules
 * lowercase, the exact ones first, their lengths (a byte each) before
 * their bytes, so that the rules that can match a host are found by their
 * lengths, sixteen at a time.  Matching a request neither allocates nor
 * parses the rules again, nor checks their bytes beforehand
 * (ak_record_view_lazy): each read is bounded by the section.
 *
 * ips: IPv4 / IPv6 addresses and CIDRs.  Host bits under the prefix are
 * masked off, as nginx's "allow" does.  A rule in ::ffff:0:0/96 with a
 * prefix of 96 or more is stored as the IPv4 rule it means, and an
 * IPv4-mapped client address is matched as its IPv4 address (so it meets
 * the IPv4 rules only).
 *
 * referrers: host names (a leading "*." means any subdomain at any depth,
 * never the bare domain), IPv4 literals, and bracketed IPv6 literals
 * compared as text.  The Referer header is parsed as an absolute URL.
 */

#include "ak_core.h"
#include "internal.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace ak {

namespace {

constexpr size_t kHostMax = 253;
constexpr size_t kLabelMax = 63;
constexpr size_t kV6TextMax = 45;   /* INET6_ADDRSTRLEN - 1 */

inline bool blank(unsigned char c) noexcept
{
    return c == ' ' || c == '\t';
}

/*
 * Byte classes, one table lookup per byte on the per-request paths (the
 * view's check of the referrers section, the Referer's parse) instead of
 * a chain of comparisons.
 */
enum : unsigned char {
    CC_RULE = 0x01,         /* a byte of a stored referrers rule:
                               [a-z0-9.:[\]-] */
    CC_HOST = 0x02,         /* a host name's label byte: [A-Za-z0-9-] */
    CC_HOST_US = 0x04,      /* the same or '_' (lenient: Referer hosts) */
    CC_SCHEME = 0x08,       /* a URL scheme's byte after the first:
                               [A-Za-z0-9+.-] */
    CC_AUTH_BAD = 0x10,     /* never in a Referer's authority: controls,
                               space, DEL and above, '\\', '%' */
    CC_AUTH_END = 0x20,     /* ends the authority: '/', '?', '#' */
    CC_AUTH_MARK = 0x40,    /* '@' and ':' (userinfo, port) */
};

struct CharClasses {
    unsigned char c[256];

    constexpr CharClasses() noexcept : c()
    {
        for (unsigned i = 0; i < 256; i++) {
            bool digit = i >= '0' && i <= '9';
            bool lower = i >= 'a' && i <= 'z';
            bool alpha = lower || (i >= 'A' && i <= 'Z');
            unsigned char k = 0;
            if (lower || digit || i == '-' || i == '.' || i == '['
                || i == ']' || i == ':')
            {
                k |= CC_RULE;
            }
            if (alpha || digit || i == '-') {
                k |= CC_HOST | CC_HOST_US;
            }
            if (i == '_') {
                k |= CC_HOST_US;
            }
            if (alpha || digit || i == '+' || i == '-' || i == '.') {
                k |= CC_SCHEME;
            }
            if (i <= 0x20 || i >= 0x7f || i == '\\' || i == '%') {
                k |= CC_AUTH_BAD;
            }
            if (AK_REFERER_HOST_ENDS(i)) {
                k |= CC_AUTH_END;
            }
            if (i == '@' || i == ':') {
                k |= CC_AUTH_MARK;
            }
            c[i] = k;
        }
    }

    unsigned char operator[](unsigned char b) const noexcept { return c[b]; }
};

constexpr CharClasses kCC;

/* the n (4 or 8) bytes of t as the word a memcpy of them reads: compared
 * with such a memcpy of a Referer's first bytes */
constexpr uint64_t text_word(const char *t, unsigned n) noexcept
{
    uint64_t w = 0;

    for (unsigned i = 0; i < n; i++) {
        uint64_t b = static_cast<unsigned char>(t[i]);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        w |= b << (8 * i);
#else
        w |= b << (8 * (n - 1 - i));
#endif
    }
    return w;
}

inline uint64_t load64(const unsigned char *p) noexcept
{
    uint64_t w;
    std::memcpy(&w, p, sizeof(w));
    return w;
}

inline uint32_t load32(const unsigned char *p) noexcept
{
    uint32_t w;
    std::memcpy(&w, p, sizeof(w));
    return w;
}

inline bool v4_mapped(const unsigned char *a) noexcept
{
    static const unsigned char pfx[12] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
    };
    return std::memcmp(a, pfx, sizeof(pfx)) == 0;
}

inline bool prefix_match(const unsigned char *rule, const unsigned char *a,
    unsigned prefix) noexcept
{
    unsigned full = prefix / 8, rem = prefix % 8;

    if (full && std::memcmp(rule, a, full) != 0) {
        return false;
    }
    if (rem) {
        unsigned char mask = static_cast<unsigned char>(0xff << (8 - rem));
        return ((a[full] ^ rule[full]) & mask) == 0;
    }
    return true;
}

/*
 * An IPv4 rule's mask by prefix length (0..32) as the word load32 reads
 * from the rule's bytes: a rule and an address are compared in memory
 * order, with no byte swap.
 */
struct V4Masks {
    uint32_t m[33];

    constexpr V4Masks() noexcept : m()
    {
        for (unsigned p = 0; p <= 32; p++) {
            uint32_t be = p ? ~uint32_t(0) << (32 - p) : 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            m[p] = (be >> 24) | ((be >> 8) & 0xff00u)
                   | ((be << 8) & 0xff0000u) | (be << 24);
#else
            m[p] = be;
#endif
        }
    }
};

constexpr V4Masks kV4Mask;

/* the first n (0..4) bytes of p where load32 puts them, the others 0 */
/* a little-endian u16 of the blob (the record encoder writes them so) */
inline uint16_t le16(const unsigned char *p) noexcept
{
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

/*
 * The ips section (internal.hpp): u16 n4, the n4 IPv4 networks (u32 each,
 * the address's bytes in memory order), their n4 prefixes (a byte each),
 * then the IPv6 rules (prefix, its bytes).  An IPv4 address against the
 * IPv4 rules: 1 when (a & mask) == network for one of them.  Four rules a
 * turn with SSE2 (their masks from the table by prefix), the last four
 * overlapping the ones before when n4 is not a multiple of four (a rule
 * tested twice answers the same); below four, one at a time.  0 when the
 * section cannot hold what n4 says, or at a prefix over 32.
 */
int v4_allowed(uint32_t a, const unsigned char *p, size_t len) noexcept
{
    if (len < 2) {
        return 0;
    }

    size_t n4 = le16(p);

    if (5 * n4 > len - 2) {
        return 0;
    }

    const unsigned char *nets = p + 2, *pre = nets + 4 * n4;

#if defined(__SSE2__)
    /*
     * Four to eight rules (the most common): the first four and the last
     * four (the same rule twice when n4 < 8) in one pass when no prefix
     * of theirs is over 32, without the loop below; else the loop, which
     * answers a prefix over 32 in its turn.
     */
    if (n4 - 4 <= 4) {
        uint32_t w0 = load32(pre), w1 = load32(pre + n4 - 4);

        if (!(((w0 + 0x5f5f5f5fu) | w0 | (w1 + 0x5f5f5f5fu) | w1)
              & 0x80808080u))
        {
            const unsigned char *q = pre + n4 - 4;
            const __m128i  va = _mm_set1_epi32(static_cast<int>(a));
            __m128i        m0, m1, n0, n1;

            m0 = _mm_set_epi32(static_cast<int>(kV4Mask.m[pre[3]]),
                               static_cast<int>(kV4Mask.m[pre[2]]),
                               static_cast<int>(kV4Mask.m[pre[1]]),
                               static_cast<int>(kV4Mask.m[pre[0]]));
            m1 = _mm_set_epi32(static_cast<int>(kV4Mask.m[q[3]]),
                               static_cast<int>(kV4Mask.m[q[2]]),
                               static_cast<int>(kV4Mask.m[q[1]]),
                               static_cast<int>(kV4Mask.m[q[0]]));
            n0 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(nets));
            n1 = _mm_loadu_si128(
                     reinterpret_cast<const __m128i *>(nets + 4 * (n4 - 4)));

            return _mm_movemask_epi8(_mm_or_si128(
                       _mm_cmpeq_epi32(_mm_and_si128(va, m0), n0),
                       _mm_cmpeq_epi32(_mm_and_si128(va, m1), n1))) != 0;
        }
    }

    if (n4 >= 4) {
        const __m128i  va = _mm_set1_epi32(static_cast<int>(a));

        for (size_t i = 0;; i += 4) {
            if (i > n4 - 4) {
                i = n4 - 4;
            }

            /* a byte over 32 (0x21 + 0x5f = 0x80), or of 0x80 and up */
            uint32_t w = load32(pre + i);
            if (((w + 0x5f5f5f5fu) | w) & 0x80808080u) {
                return 0;
            }

            __m128i m = _mm_set_epi32(
                static_cast<int>(kV4Mask.m[pre[i + 3]]),
                static_cast<int>(kV4Mask.m[pre[i + 2]]),
                static_cast<int>(kV4Mask.m[pre[i + 1]]),
                static_cast<int>(kV4Mask.m[pre[i]]));
            __m128i n = _mm_loadu_si128(
                reinterpret_cast<const __m128i *>(nets + 4 * i));
            if (_mm_movemask_epi8(_mm_cmpeq_epi32(_mm_and_si128(va, m), n)))
            {
                return 1;
            }
            if (i == n4 - 4) {
                return 0;
            }
        }
    }
#endif

    for (size_t i = 0; i < n4; i++) {
        if (pre[i] > 32) {
            return 0;
        }
        if ((a & kV4Mask.m[pre[i]]) == load32(nets + 4 * i)) {
            return 1;
        }
    }
    return 0;
}

/* the same against an IPv6 address (not IPv4-mapped): the IPv6 rules
 * after the IPv4 ones, each [prefix, its bytes]; 0 at one that cannot be
 * read */
__attribute__((noinline)) int
v6_allowed(const unsigned char *a, const unsigned char *p, size_t len)
    noexcept
{
    if (len < 2) {
        return 0;
    }

    size_t n4 = le16(p);

    if (5 * n4 > len - 2) {
        return 0;
    }

    const unsigned char *q = p + 2 + 5 * n4, *end = p + len;

    while (q != end) {
        unsigned prefix = q[0];
        size_t nbytes = (prefix + 7u) / 8;
        const unsigned char *rule = q + 1;

        if (prefix > 128 || nbytes > static_cast<size_t>(end - rule)) {
            return 0;
        }
        if (prefix_match(rule, a, prefix)) {
            return 1;
        }
        q = rule + nbytes;
    }

    return 0;
}

/*
 * Calls fn(item, len) for each comma-separated item with blanks around it
 * trimmed; stops at the first false.  Empty items are reported with a null
 * pointer.
 */
template <typename Fn>
bool each_item(const char *v, size_t len, Fn fn) noexcept
{
    size_t i = 0;

    for (;;) {
        size_t start = i;
        while (i < len && v[i] != ',') {
            i++;
        }
        size_t end = i;
        while (start < end && blank(static_cast<unsigned char>(v[start]))) {
            start++;
        }
        while (end > start && blank(static_cast<unsigned char>(v[end - 1])))
        {
            end--;
        }
        if (!fn(end > start ? v + start : nullptr, end - start)) {
            return false;
        }
        if (i >= len) {
            return true;
        }
        i++;                            /* the comma */
    }
}

/* a host name: labels of 1..63 [A-Za-z0-9-] (plus '_' when lenient) */
bool valid_hostname(const char *h, size_t len, bool underscore) noexcept
{
    if (len == 0 || len > kHostMax) {
        return false;
    }

    size_t label = 0;
    unsigned char want = underscore ? CC_HOST_US : CC_HOST;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = static_cast<unsigned char>(h[i]);
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        if (!(kCC[c] & want)) {
            return false;
        }
        if (++label > kLabelMax) {
            return false;
        }
    }

    return label > 0;
}

/* the inside of [ ]: hex digits, ':' and '.', with at least one ':' */
bool valid_v6_literal(const char *h, size_t len) noexcept
{
    if (len < 2 || len > kV6TextMax) {
        return false;
    }

    bool colon = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = static_cast<unsigned char>(h[i]);
        if (c == ':') {
            colon = true;
        } else if (!is_hex(c) && c != '.') {
            return false;
        }
    }
    return colon;
}

/* one ips item: its family (4 or 6), prefix and prefix bytes (host bits
 * zero, the rest of out zero); a rule in ::ffff:0:0/96 with a prefix of
 * 96 or more is the IPv4 rule it means */
bool parse_ip(const char *item, size_t len, unsigned *family_out,
    unsigned *prefix_out, unsigned char out[16], ErrBuf &e) noexcept
{
    const char *slash = static_cast<const char *>(std::memchr(item, '/', len));
    size_t alen = slash ? static_cast<size_t>(slash - item) : len;

    char buf[kV6TextMax + 1];
    unsigned char a[16];
    unsigned family, max;

    /* inet_pton reads a C string: a NUL byte would end the text early */
    if (alen == 0 || alen >= sizeof(buf) || std::memchr(item, '\0', alen)) {
        goto bad_address;
    }

    std::memcpy(buf, item, alen);
    buf[alen] = '\0';

    if (std::memchr(buf, ':', alen)) {
        if (inet_pton(AF_INET6, buf, a) != 1) {
            goto bad_address;
        }
        family = 6;
        max = 128;
    } else {
        if (inet_pton(AF_INET, buf, a) != 1) {
            goto bad_address;
        }
        family = 4;
        max = 32;
    }

    {
        unsigned prefix = max;

        if (slash) {
            const char *p = slash + 1;
            size_t plen = len - alen - 1;

            if (plen == 0 || plen > 3) {
                goto bad_prefix;
            }
            prefix = 0;
            for (size_t i = 0; i < plen; i++) {
                if (!is_digit(static_cast<unsigned char>(p[i]))) {
                    goto bad_prefix;
                }
                prefix = prefix * 10 + static_cast<unsigned>(p[i] - '0');
            }
            if (prefix > max) {
                goto bad_prefix;
            }
        }

        const unsigned char *addr = a;

        if (family == 6 && prefix >= 96 && v4_mapped(a)) {
            family = 4;
            prefix -= 96;
            addr = a + 12;
        }

        unsigned nbytes = (prefix + 7) / 8;

        std::memset(out, 0, 16);
        std::memcpy(out, addr, nbytes);
        if (prefix % 8) {
            out[nbytes - 1] &= static_cast<unsigned char>(
                0xff << (8 - prefix % 8));
        }

        *family_out = family;
        *prefix_out = prefix;
        return true;
    }

bad_address:
    e.field("ips");
    e.add("bad address ");
    e.add_quoted(item, len);
    return false;

bad_prefix:
    e.field("ips");
    e.add("bad prefix length in ");
    e.add_quoted(item, len);
    return false;
}

/* one referrers item as stored: lowercase, "*.domain" as ".domain", no
 * trailing dot; *n its length (1..kHostMax + 1) */
bool parse_referrer(const char *item, size_t len, unsigned char *out,
    size_t *n, ErrBuf &e) noexcept
{
    bool wildcard = len >= 2 && item[0] == '*' && item[1] == '.';
    const char *h = wildcard ? item + 2 : item;
    size_t hlen = wildcard ? len - 2 : len;
    bool ok;

    if (!wildcard && hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        ok = valid_v6_literal(h + 1, hlen - 2);
    } else {
        if (hlen > 1 && h[hlen - 1] == '.') {
            hlen--;                     /* "example.com." */
        }
        ok = valid_hostname(h, hlen, false);
    }

    if (!ok) {
        e.field("referrers");
        e.add("bad host ");
        e.add_quoted(item, len);
        e.add(" (expected host or *.domain)");
        return false;
    }

    size_t k = 0;
    if (wildcard) {
        out[k++] = '.';
    }
    for (size_t i = 0; i < hlen; i++) {
        out[k++] = to_lower(static_cast<unsigned char>(h[i]));
    }
    *n = k;
    return true;
}

/* every byte of s[0, n) is CC_RULE: the classes of four bytes and'ed at a
 * time, one test at the end (no branch per byte) */
inline bool all_rule_chars(const unsigned char *s, size_t n) noexcept
{
    unsigned acc = CC_RULE;
    size_t i = 0;

    for (; i + 4 <= n; i += 4) {
        acc &= static_cast<unsigned>(kCC[s[i]] & kCC[s[i + 1]]
                                     & kCC[s[i + 2]] & kCC[s[i + 3]]);
    }
    for (; i < n; i++) {
        acc &= kCC[s[i]];
    }
    return acc & CC_RULE;
}

/*
 * eq_nocase a word at a time, for the referrers rules: two words of equal
 * bytes need no lowering (a Referer's host and a stored rule nearly always
 * are lowercase); others are compared lowered, 'A'-'Z' only, as
 * to_lower does.
 */
inline uint64_t lower8(uint64_t x) noexcept
{
    constexpr uint64_t ones = 0x0101010101010101ull, high = ones * 0x80;
    uint64_t h = x & ~high;                     /* each byte 0..0x7f: no
                                                   carry out of it below */
    uint64_t ge_a = h + ones * (0x80 - 'A');    /* high bit: >= 'A' */
    uint64_t gt_z = h + ones * (0x80 - 'Z' - 1);        /* > 'Z' */
    uint64_t upper = ge_a & ~gt_z & ~x & high;  /* and below 0x80 */

    return x | (upper >> 2);                    /* 0x80 >> 2: 0x20 */
}

/* two words whose bytes differ in the 0x20 bit only, lowered: out of
 * line (a Referer's host and a stored rule nearly always are lowercase),
 * its constants in no register of the caller's loop */
__attribute__((noinline)) bool same_lowered(uint64_t x, uint64_t y) noexcept
{
    return lower8(x) == lower8(y);
}

inline bool same_word(uint64_t x, uint64_t y) noexcept
{
    uint64_t d = x ^ y;

    if (d == 0) {
        return true;
    }
    if (d & ~(0x2020202020202020ull)) {
        return false;                   /* bytes differ beyond their case */
    }
    return same_lowered(x, y);
}

/* eq_nocase(a, b, n): no byte read outside [a, a + n) and [b, b + n), the
 * last word overlapping the one before it */
inline __attribute__((always_inline)) bool same_nocase(const char *a, const char *b, size_t n) noexcept
{
    const unsigned char *x = reinterpret_cast<const unsigned char *>(a);
    const unsigned char *y = reinterpret_cast<const unsigned char *>(b);

    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            if (!same_word(load64(x + i), load64(y + i))) {
                return false;
            }
        }
        return same_word(load64(x + n - 8), load64(y + n - 8));
    }
    if (n >= 4) {
        return same_word(load32(x), load32(y))
               && same_word(load32(x + n - 4), load32(y + n - 4));
    }
    return eq_nocase(a, b, n);
}

/* same_nocase out of line: bytes that differ in their case only */
__attribute__((noinline)) bool same_nocase_cold(const char *a,
    const unsigned char *b, size_t n) noexcept
{
    return same_nocase(a, reinterpret_cast<const char *>(b), n);
}

/*
 * same_nocase for a candidate rule of n >= 8 bytes: the words of both
 * xor'ed and or'ed together (the last one overlapping the one before it),
 * one test; bytes that differ in their 0x20 bit only are compared lowered
 * (same_nocase_cold), as is a rule of fewer than eight bytes.
 */
inline bool rule_same(const char *h, const unsigned char *r, size_t n)
    noexcept
{
    const unsigned char *x = reinterpret_cast<const unsigned char *>(h);

    if (n < 8) {
        return same_nocase_cold(h, r, n);
    }

    uint64_t d = (load64(x) ^ load64(r))
                 | (load64(x + n - 8) ^ load64(r + n - 8));

    for (size_t i = 8; i + 8 < n; i += 8) {
        d |= load64(x + i) ^ load64(r + i);
    }

    if (d == 0) {
        return true;
    }
    if (d & ~(0x2020202020202020ull)) {
        return false;                   /* bytes differ beyond their case */
    }
    return same_nocase_cold(h, r, n);
}

#if defined(__SSE2__)
/* sixteen bytes, the first j (0..16) of them 0xff, the others 0 */
inline __m128i first_bytes(size_t j) noexcept
{
    /* sixteen 0xff then sixteen 0: read from 16 - j */
    static const unsigned char  ff[32] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    };

    return _mm_loadu_si128(reinterpret_cast<const __m128i *>(ff + 16 - j));
}

/* the sum of the sixteen bytes of v */
inline size_t bytes_sum(__m128i v) noexcept
{
    const __m128i  s = _mm_sad_epu8(v, _mm_setzero_si128());

#if defined(__x86_64__)
    return static_cast<size_t>(_mm_cvtsi128_si64(s))
           + static_cast<size_t>(_mm_extract_epi16(s, 4));
#else
    return static_cast<size_t>(_mm_cvtsi128_si32(s))
           + static_cast<size_t>(_mm_extract_epi16(s, 4));
#endif
}
#endif

/*
 * The referrers rules against a host (hu, hlen), a rule at a time: lens,
 * the nr lengths (the ne exact rules' first), the rules' bytes (tlen of
 * them) after them.  Only a rule of the right length is compared in full
 * (see referrers_match); a candidate past the section denies.
 */
__attribute__((noinline)) int
referrers_scan(const unsigned char *hu, size_t hlen,
    const unsigned char *lens, size_t ne, size_t nr, size_t tlen) noexcept
{
    const char *host = reinterpret_cast<const char *>(hu);
    const unsigned char *text = lens + nr;
    size_t off = 0, i = 0;

    for (; i < ne; i++) {
        size_t n = lens[i];

        if (n == hlen) {
            if (off > tlen || n > tlen - off) {
                return 0;
            }
            if (same_nocase(host, reinterpret_cast<const char *>(text + off),
                            n))
            {
                return 1;
            }
        }
        off += n;               /* checked when used: no overflow,
                                   nr * 255 at most */
    }

    for (; i < nr; i++) {
        size_t n = lens[i];

        /* n in [1, hlen) (hlen >= 1): a rule of length 0, in a corrupt
         * section, is no rule, and hu[hlen] is never read */
        if (n - 1 < hlen - 1 && hu[hlen - n] == '.') {
            if (off > tlen || n > tlen - off) {
                return 0;
            }
            if (same_nocase(host + hlen - n,
                            reinterpret_cast<const char *>(text + off), n))
            {
                return 1;
            }
        }
        off += n;               /* checked when used: no overflow,
                                   nr * 255 at most */
    }

    return 0;
}


/*
 * The referrers section (refs, refs_len) against a host found in a Referer
 * (host, hlen >= 1): 1 when a rule matches (ak_record_referrer_allowed's
 * second half).
 */
inline __attribute__((always_inline)) int
referrers_match(const char *host, size_t hlen, const unsigned char *refs,
    size_t refs_len) noexcept
{
    if (refs == nullptr || refs_len < 4) {
        return 0;
    }

    size_t ne = le16(refs), nw = le16(refs + 2), nr = ne + nw;

    if (nr > refs_len - 4) {
        return 0;
    }

    /*
     * Only a rule of the right length can match: an exact rule
     * ("example.com") of the host's, a ".domain" one (a "*.example.com"
     * rule) a shorter one whose '.' falls on a dot of the host.  The
     * exact rules come first, then the ".domain" ones, their lengths a
     * byte each, their bytes after them: only a rule of a right length
     * (a candidate) is compared in full, in the order of the rules.
     */
    const unsigned char *lens = refs + 4;
    const unsigned char *hu = reinterpret_cast<const unsigned char *>(host);

#if defined(__SSE2__)
    /*
     * Up to sixteen rules, their lengths in one load (sixteen bytes from
     * lens in the section): the candidates as a bit mask, visited in the
     * order of the rules, each one's offset the sum of the lengths before
     * it.  With l1 = n - 1 and h1 = hlen - 1 (bytes): an exact rule is a
     * candidate when l1 == h1, a ".domain" one when l1 < h1, unsigned (n
     * in [1, hlen): a rule of length 0, in a corrupt section, is no rule,
     * and hu[hlen] is never read).  The same answers as referrers_scan.
     */
    if (nr <= 16 && refs_len >= 4 + 16) {
        const __m128i  l = _mm_loadu_si128(
                               reinterpret_cast<const __m128i *>(lens));
        const __m128i  below_ne = first_bytes(ne), below_nr = first_bytes(nr);
        const size_t   tlen = refs_len - 4 - nr;

        /* every rule within the section (else rule by rule, below: a
         * candidate past it denies when it comes) */
        if (bytes_sum(_mm_and_si128(l, below_nr)) <= tlen) {
            const __m128i  l1 = _mm_add_epi8(l, _mm_set1_epi8(-1));
            const __m128i  h1 = _mm_set1_epi32(static_cast<int>(
                                    (hlen - 1) * 0x01010101u));
            const __m128i  eq = _mm_cmpeq_epi8(l1, h1);
            const __m128i  ge = _mm_cmpeq_epi8(_mm_max_epu8(l1, h1), l1);
            const unsigned char *text = lens + nr;
            unsigned       cand;

            cand = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(
                       _mm_and_si128(eq, below_ne),
                       _mm_andnot_si128(_mm_or_si128(ge, below_ne),
                                        below_nr))));

            while (cand) {
                unsigned  j = static_cast<unsigned>(__builtin_ctz(cand));
                size_t    n = lens[j];

                cand &= cand - 1;

                if (j >= ne && hu[hlen - n] != '.') {
                    continue;
                }

                const unsigned char *rule = text
                    + bytes_sum(_mm_and_si128(l, first_bytes(j)));

                if (rule_same(host + hlen - n, rule, n)) {
                    return 1;
                }
            }

            return 0;
        }
    }
#endif

    return referrers_scan(hu, hlen, lens, ne, nr, refs_len - 4 - nr);
}

} // namespace


/*
 * The ips section, made for matching (see v4_allowed): u16 n4, the IPv4
 * networks, their prefixes, then the IPv6 rules.  Each item is read once per
 * part written (the writer's path, under the zone lock: not per request).
 */
bool encode_ips(const char *v, size_t len, Writer &w, ErrBuf &e) noexcept
{
    size_t n4 = 0;
    unsigned family, prefix;
    unsigned char a[16];

    bool ok = each_item(v, len, [&](const char *item, size_t n) {
        if (item == nullptr) {
            e.field("ips");
            e.add("empty item in the list");
            return false;
        }
        if (!parse_ip(item, n, &family, &prefix, a, e)) {
            return false;
        }
        n4 += family == 4;
        return true;
    });

    if (!ok) {
        return false;
    }
    if (n4 > 0xffff) {
        n4 = 0xffff;            /* so many cannot fit a record anyway: */
        w.len += AK_RECORD_MAX; /* the record says it is too large */
    }

    w.put(static_cast<uint8_t>(n4 & 0xff));
    w.put(static_cast<uint8_t>(n4 >> 8));

    for (int part = 0; part < 3; part++) {
        (void) each_item(v, len, [&](const char *item, size_t n) {
            (void) parse_ip(item, n, &family, &prefix, a, e);
            if (part < 2 && family == 4) {
                if (part == 0) {
                    w.put_bytes(a, 4);
                } else {
                    w.put(static_cast<uint8_t>(prefix));
                }
            } else if (part == 2 && family == 6) {
                w.put(static_cast<uint8_t>(prefix));
                w.put_bytes(a, (prefix + 7) / 8);
            }
            return true;
        });
    }
    return true;
}


/*
 * The referrers section, made for matching (see
 * ak_record_referrer_allowed): u16 ne, u16 nw, the lengths of the ne
 * exact rules then of the nw ".domain" ones (a byte each), then the rules'
 * bytes in the same order.  Each item is read once per part written (the
 * writer's path, under the zone lock: not per request).
 */
bool encode_referrers(const char *v, size_t len, Writer &w, ErrBuf &e)
    noexcept
{
    unsigned char r[kHostMax + 2];
    size_t ne = 0, nw = 0, rn;

    bool ok = each_item(v, len, [&](const char *item, size_t n) {
        if (item == nullptr) {
            e.field("referrers");
            e.add("empty item in the list");
            return false;
        }
        if (!parse_referrer(item, n, r, &rn, e)) {
            return false;
        }
        (r[0] == '.' ? nw : ne)++;
        return true;
    });

    if (!ok) {
        return false;
    }
    if (ne + nw > 0xffff) {
        ne = nw = 0;
        w.len += AK_RECORD_MAX;         /* cannot fit: the record says so */
    }

    w.put(static_cast<uint8_t>(ne & 0xff));
    w.put(static_cast<uint8_t>(ne >> 8));
    w.put(static_cast<uint8_t>(nw & 0xff));
    w.put(static_cast<uint8_t>(nw >> 8));

    /* part 0: exact lengths, 1: wildcard lengths, 2: exact bytes,
       3: wildcard bytes */
    for (int part = 0; part < 4; part++) {
        (void) each_item(v, len, [&](const char *item, size_t n) {
            (void) parse_referrer(item, n, r, &rn, e);
            if ((r[0] == '.') == (part % 2 == 1)) {
                if (part < 2) {
                    w.put(static_cast<uint8_t>(rn));
                } else {
                    w.put_bytes(r, rn);
                }
            }
            return true;
        });
    }
    return true;
}


/*
 * The structural checks of ak_record_view (the full view: a record built,
 * replaced, read by apikeyctl): the section is exactly what
 * encode_ips / encode_referrers write.  The request path's view
 * (ak_record_view_lazy) skips them: the matchers bound each read by the
 * section and deny on a rule they cannot read.
 */
bool check_ips_section(const unsigned char *p, size_t len) noexcept
{
    if (p == nullptr || len < 2) {
        return false;
    }

    size_t n4 = le16(p);

    if (5 * n4 > len - 2 || (n4 == 0 && len == 2)) {
        return false;           /* past the section, or no rule */
    }

    for (size_t i = 0; i < n4; i++) {
        uint32_t net = load32(p + 2 + 4 * i);
        unsigned prefix = p[2 + 4 * n4 + i];

        if (prefix > 32 || (net & ~kV4Mask.m[prefix]) != 0) {
            return false;       /* a prefix too long, or host bits set */
        }
    }

    size_t off = 2 + 5 * n4;

    while (off < len) {
        unsigned prefix = p[off++];
        if (prefix > 128) {
            return false;
        }
        size_t nbytes = (prefix + 7u) / 8;
        if (nbytes > len - off) {
            return false;
        }
        if ((prefix % 8)
            && (p[off + nbytes - 1]
                & static_cast<unsigned char>(0xff >> (prefix % 8))))
        {
            return false;               /* host bits set */
        }
        off += nbytes;
    }

    return true;
}


bool check_referrers_section(const unsigned char *p, size_t len) noexcept
{
    if (p == nullptr || len < 4) {
        return false;
    }

    size_t ne = le16(p), nw = le16(p + 2), nr = ne + nw;

    if (nr == 0 || nr > len - 4) {
        return false;
    }

    const unsigned char *lens = p + 4;
    size_t off = 4 + nr;

    for (size_t i = 0; i < nr; i++) {
        size_t n = lens[i];

        if (n == 0 || n > kHostMax + 1 || n > len - off
            || (p[off] == '.') != (i >= ne)
            || (i >= ne && n < 2)
            || !all_rule_chars(p + off, n))
        {
            return false;
        }
        off += n;
    }

    return off == len;
}


namespace {

/* a host found in a Referer: p null when there is none */
struct HostSpan {
    const char *p;
    size_t n;
};

/*
 * The authority of a Referer from a (after "://") in full: userinfo, a
 * bracketed IPv6 literal, a port, any byte.  referer_host's own loop
 * takes the usual "host.name" and comes here for anything else.
 */
HostSpan referer_authority(const char *s, size_t len, size_t a) noexcept
{
    /*
     * The authority, up to "/", "?", "#" or the end, in one pass: no
     * byte of it may be CC_AUTH_BAD; the userinfo ends at the last '@';
     * colon: the first ':' after it (the port, unless bracketed).
     */
    size_t end = a, hp = a, colon = len;
    /* the host [hp, colon) checked on the way, as valid_hostname (lenient)
       would: label, the length of the current label; hok, no bad byte,
       empty or long label before it */
    size_t label = 0;
    bool hok = true;
    for (; end < len; end++) {
        unsigned char c = static_cast<unsigned char>(s[end]);
        unsigned char k = kCC[c];
        if (!(k & (CC_AUTH_BAD | CC_AUTH_END | CC_AUTH_MARK))) {
            if (colon == len) {
                if (c == '.') {
                    hok = hok && label != 0 && label <= kLabelMax;
                    label = 0;
                } else {
                    hok = hok && (k & CC_HOST_US);
                    label++;
                }
            }
            continue;
        }
        if (k & CC_AUTH_END) {
            break;
        }
        if (k & CC_AUTH_BAD) {
            return HostSpan{nullptr, 0};
        }
        if (c == '@') {
            hp = end + 1;
            colon = len;
            label = 0;
            hok = true;
        } else if (colon == len) {
            colon = end;
        }
    }

    size_t h = hp, he, rest;
    bool bracket = hp < end && s[hp] == '[';

    if (bracket) {
        const char *close = static_cast<const char *>(
            std::memchr(s + hp, ']', end - hp));
        if (close == nullptr) {
            return HostSpan{nullptr, 0};
        }
        he = static_cast<size_t>(close - s) + 1;
        if (!valid_v6_literal(s + hp + 1, he - hp - 2)) {
            return HostSpan{nullptr, 0};
        }
        rest = he;
    } else {
        he = colon < end ? colon : end;
        rest = he;
    }

    /* [":" port] */
    if (rest < end) {
        if (s[rest] != ':' || end - rest - 1 > 5) {
            return HostSpan{nullptr, 0};
        }
        for (size_t k = rest + 1; k < end; k++) {
            if (!is_digit(static_cast<unsigned char>(s[k]))) {
                return HostSpan{nullptr, 0};
            }
        }
    }

    if (!bracket) {
        /* "example.com.": the last label is the one before the dot (it
           was checked when the dot came) */
        bool dot = he > h && s[he - 1] == '.';
        if (dot) {
            he--;
        }
        if (!hok || he == h || he - h > kHostMax
            || (!dot && (label == 0 || label > kLabelMax)))
        {
            return HostSpan{nullptr, 0};
        }
    }

    return HostSpan{s + h, he - h};
}


#if defined(__SSE2__)
/* the bytes of CC_HOST_US and the dots of sixteen bytes, a bit each */
struct HostMasks {
    unsigned hosts;
    unsigned dots;
};

/*
 * The sixteen bytes at q as two bit masks (returned as a value: no
 * address taken, no stack canary): the bytes of CC_HOST_US ([A-Za-z0-9_-]:
 * a letter is one whose (b | 0x20) - 'a' is below 26, a digit one whose
 * b - '0' is below 10, unsigned: both biased by 0x80 and compared signed)
 * and the dots.
 */
inline HostMasks host_masks(const unsigned char *q) noexcept
{
    const __m128i  v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(q));
    __m128i        h;

    h = _mm_cmpgt_epi8(_mm_set1_epi8(-128 + 26),
                       _mm_add_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)),
                                    _mm_set1_epi8(0x80 - 'a')));
    h = _mm_or_si128(h, _mm_cmpgt_epi8(_mm_set1_epi8(-128 + 10),
                                       _mm_add_epi8(v, _mm_set1_epi8(
                                                           0x80 - '0'))));
    h = _mm_or_si128(h, _mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
    h = _mm_or_si128(h, _mm_cmpeq_epi8(v, _mm_set1_epi8('_')));

    return HostMasks{
        static_cast<unsigned>(_mm_movemask_epi8(h)),
        static_cast<unsigned>(_mm_movemask_epi8(
            _mm_cmpeq_epi8(v, _mm_set1_epi8('.')))),
    };
}

/*
 * The labels that a turn's dots end (dots: their bits from p): the first
 * one's length checked (it may have begun sixteen bytes or more before),
 * the others' not zero (no two dots side by side: shorter than sixteen
 * they are); label moved past the last dot.  false: the authority needs
 * the full parse.
 */
inline __attribute__((always_inline)) bool
turn_labels(const unsigned char *p, unsigned dots,
    const unsigned char *&label) noexcept
{
    if (dots) {
        const unsigned char *d = p + __builtin_ctz(dots);

        if (static_cast<size_t>(d - label) - 1 >= kLabelMax
            || (dots & (dots >> 1)))
        {
            return false;
        }
        label = p + (32 - __builtin_clz(dots));
    }

    return true;
}
#endif


/* referer_host's body: inlined into ak_record_referrer_allowed (no call,
 * no frame of its own on the request path) */
inline __attribute__((always_inline)) HostSpan
referer_host_body(const char *s, size_t len) noexcept
{
    const unsigned char *u = reinterpret_cast<const unsigned char *>(s);
    size_t a;

    if (s == nullptr) {
        return HostSpan{nullptr, 0};
    }

    /* "https://" and "http://", nearly every Referer, compared as words
     * (the scheme loop below accepts both) */
    if (len >= 8 && load64(u) == text_word("https://", 8)) {
        a = 8;
    } else if (len >= 7 && load32(u) == text_word("http", 4)
               && load32(u + 3) == text_word("p://", 4))
    {
        a = 7;
    } else {
        if (len == 0 || !is_alpha(u[0])) {
            return HostSpan{nullptr, 0};
        }

        /* scheme "://" */
        size_t i = 1;
        while (i < len && (kCC[u[i]] & CC_SCHEME)) {
            i++;
        }
        if (len - i < 3 || std::memcmp(s + i, "://", 3) != 0) {
            return HostSpan{nullptr, 0};
        }
        a = i + 3;
    }

    /*
     * The usual authority, a host name alone: label bytes and dots up to
     * "/", "?", "#" or the end.  One table lookup a byte; a label's
     * length is checked at its dot.  Anything else (an empty or long
     * label before a dot, '@', ':', '[', a bad byte) goes to
     * referer_authority from the start, which answers all.
     */
    const unsigned char *p = u + a, *e = u + len, *label = p;

#if defined(__SSE2__)
    /*
     * The first turn (below) apart: a host that ends in it (nearly every
     * one: fewer than sixteen bytes) has labels of fewer than sixteen
     * bytes, the first one beginning at p: no dot first and no two dots
     * side by side is all there is to check, and its end gives the host
     * (without a dot last, "example.com.") with no more test.
     */
    {
        unsigned  dots, stop, n, left;

        if (e - p >= 16) {
            const HostMasks  m = host_masks(p);

            dots = m.dots;
            stop = ~(m.hosts | dots) & 0xffffu;

            if (stop == 0) {
                /* sixteen host bytes and dots: the labels checked as
                 * turn_labels does (label is p), the turns go on */
                if (dots & ((dots >> 1) | 1)) {
                    return referer_authority(s, len, a);
                }
                if (dots) {
                    label = p + (32 - __builtin_clz(dots));
                }
                p += 16;
                goto turns;
            }

            n = static_cast<unsigned>(__builtin_ctz(stop));

        } else if (p != e && len >= 16) {
            const HostMasks  m = host_masks(e - 16);

            left = static_cast<unsigned>(e - p);
            dots = m.dots >> (16 - left);
            stop = ~((m.hosts >> (16 - left)) | dots) & ((1u << left) - 1);
            n = stop ? static_cast<unsigned>(__builtin_ctz(stop)) : left;

        } else {
            goto bytes;
        }

        dots &= (1u << n) - 1;

        if ((dots & ((dots >> 1) | 1))
            || (p + n != e && !(kCC[p[n]] & CC_AUTH_END)))
        {
            return referer_authority(s, len, a);
        }
        if (n == 0) {
            return HostSpan{nullptr, 0};                /* no host */
        }

        /* "example.com.": the host is the bytes before its last dot */
        return HostSpan{s + a, n - ((dots >> (n - 1)) & 1)};
    }

turns:

    /*
     * Sixteen bytes a turn while sixteen are left (a host and the byte
     * after it, mostly): the host bytes and the dots as two bit masks
     * (host_masks); the first byte of neither stops the scan; the dots
     * before it end labels checked as the loop below checks them, with
     * one test a turn.
     */
    while (e - p >= 16) {
        const HostMasks  m = host_masks(p);
        unsigned         dots, stop, n;

        dots = m.dots;
        stop = ~(m.hosts | dots) & 0xffffu;
        n = stop ? static_cast<unsigned>(__builtin_ctz(stop)) : 16;
        dots &= (1u << n) - 1;

        if (!turn_labels(p, dots, label)) {
            return referer_authority(s, len, a);
        }

        p += n;

        if (stop) {
            goto scanned;
        }
    }

    /*
     * Fewer than sixteen bytes left (a Referer "https://host" or
     * "https://host/" mostly): the Referer's last sixteen, the bytes
     * before p shifted out, the same steps; a Referer shorter than
     * sixteen bytes takes the loop below.
     */
    if (p != e && len >= 16) {
        const HostMasks  m = host_masks(e - 16);
        unsigned         left, dots, stop, n;

        left = static_cast<unsigned>(e - p);
        dots = m.dots >> (16 - left);
        stop = ~((m.hosts >> (16 - left)) | dots) & ((1u << left) - 1);
        n = stop ? static_cast<unsigned>(__builtin_ctz(stop)) : left;
        dots &= (1u << n) - 1;

        if (!turn_labels(p, dots, label)) {
            return referer_authority(s, len, a);
        }

        p += n;
        goto scanned;
    }
bytes:
#endif

    for (; p != e; p++) {
        if (kCC[*p] & CC_HOST_US) {
            continue;
        }
        if (*p != '.') {
            break;
        }
        if (static_cast<size_t>(p - label) - 1 >= kLabelMax) {
            return referer_authority(s, len, a);
        }
        label = p + 1;
    }

#if defined(__SSE2__)
scanned:
#endif

    if (p != e && !(kCC[*p] & CC_AUTH_END)) {
        return referer_authority(s, len, a);
    }

    /* the authority is [a, p - u), a host name's bytes and dots, each label
     * before a dot checked */
    size_t he = static_cast<size_t>(p - u);

    if (p == label) {
        if (he == a) {
            return HostSpan{nullptr, 0};               /* no host */
        }
        he--;                           /* "example.com." */
    } else if (static_cast<size_t>(p - label) > kLabelMax) {
        return HostSpan{nullptr, 0};
    }
    if (he - a > kHostMax) {
        return HostSpan{nullptr, 0};
    }

    return HostSpan{s + a, he - a};
}

} // namespace


bool referer_host(const char *s, size_t len, const char **host,
    size_t *host_len) noexcept
{
    HostSpan h = referer_host_body(s, len);

    if (h.p == nullptr) {
        return false;
    }
    *host = h.p;
    *host_len = h.n;
    return true;
}

} // namespace ak


/* ---- C API ----------------------------------------------------------- */
/* ---- C API ----------------------------------------------------------- */

extern "C" int
ak_record_ip_allowed(const ak_record_t *rec, int family,
    const unsigned char *addr) noexcept
{
    using namespace ak;

    if (rec == nullptr) {
        return 0;
    }
    if (!rec->has_ips) {
        return 1;
    }
    /* the section the view found; its bytes are checked here, as they
     * are read, not by the request path's view (see ak_record_view_lazy) */
    const unsigned char *ips = rec->ips;
    size_t ips_len = rec->ips_len;

    if (addr == nullptr || ips == nullptr) {
        return 0;
    }

    if (family == 4) {
        return v4_allowed(load32(addr), ips, ips_len);
    }
    if (family != 6) {
        return 0;
    }
    if (v4_mapped(addr)) {
        return v4_allowed(load32(addr + 12), ips, ips_len);
    }
    return v6_allowed(addr, ips, ips_len);
}


extern "C" int
ak_record_referrer_allowed(const ak_record_t *rec, const char *referer,
    size_t len) noexcept
{
    using namespace ak;

    if (rec == nullptr) {
        return 0;
    }
    if (!rec->has_referrers) {
        return 1;
    }

    /* the host as a value (two registers), no address taken */
    const HostSpan hs = referer_host_body(referer, len);
    const char *host = hs.p;
    size_t hlen = hs.n;

    if (host == nullptr) {
        return 0;
    }

    return referrers_match(host, hlen, rec->referrers, rec->referrers_len);
}


extern "C" const char *
ak_referer_host(const char *referer, size_t len, size_t *host_len) noexcept
{
    const ak::HostSpan hs = ak::referer_host_body(referer, len);

    *host_len = hs.n;
    return hs.p;
}


extern "C" size_t
ak_referer_kept_prefix(const char *referer, size_t len, const char *host,
    size_t host_len) noexcept
{
    size_t  at, end;

    if (referer == nullptr || host == nullptr || host < referer
        || host > referer + len)
    {
        return 0;
    }

    at = static_cast<size_t>(host - referer);
    end = at + host_len;

    if (at < 3 || end > len || host_len == 0
        || host[-3] != ':' || host[-2] != '/' || host[-1] != '/')
    {
        return 0;
    }

    if (end < len && !AK_REFERER_HOST_ENDS(referer[end])) {
        return 0;
    }

    return end;
}


extern "C" int
ak_record_referrer_host_allowed(const ak_record_t *rec, const char *host,
    size_t host_len) noexcept
{
    if (rec == nullptr || host == nullptr) {
        return 0;
    }
    if (!rec->has_referrers) {
        return 1;
    }

    return ak::referrers_match(host, host_len, rec->referrers,
                               rec->referrers_len);
}
