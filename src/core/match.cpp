/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * match.cpp: the "ips" and "referrers" rules of a record.
 *
 * Both are parsed once, when the record is built, into binary entries of the
 * blob (see internal.hpp); matching a request walks those entries and
 * neither allocates nor parses the rules again.
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
        return (a[full] & mask) == rule[full];
    }
    return true;
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

    for (size_t i = 0; i < len; i++) {
        unsigned char c = static_cast<unsigned char>(h[i]);
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        if (!(is_alnum(c) || c == '-' || (underscore && c == '_'))) {
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

bool encode_ip(const char *item, size_t len, Writer &w, ErrBuf &e) noexcept
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

        unsigned char out[16];
        unsigned nbytes = (prefix + 7) / 8;

        std::memcpy(out, addr, nbytes);
        if (prefix % 8) {
            out[nbytes - 1] &= static_cast<unsigned char>(
                0xff << (8 - prefix % 8));
        }

        w.put(static_cast<uint8_t>(family));
        w.put(static_cast<uint8_t>(prefix));
        w.put_bytes(out, nbytes);
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

bool encode_referrer(const char *item, size_t len, Writer &w, ErrBuf &e)
    noexcept
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

    w.put_varint(hlen + (wildcard ? 1 : 0));
    if (wildcard) {
        w.put('.');
    }
    for (size_t i = 0; i < hlen; i++) {
        w.put(to_lower(static_cast<unsigned char>(h[i])));
    }
    return true;
}

inline bool referrer_rule_char(unsigned char c) noexcept
{
    return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '.'
           || c == '[' || c == ']' || c == ':';
}

} // namespace


bool encode_ips(const char *v, size_t len, Writer &w, ErrBuf &e) noexcept
{
    return each_item(v, len, [&](const char *item, size_t n) {
        if (item == nullptr) {
            e.field("ips");
            e.add("empty item in the list");
            return false;
        }
        return encode_ip(item, n, w, e);
    });
}


bool encode_referrers(const char *v, size_t len, Writer &w, ErrBuf &e)
    noexcept
{
    return each_item(v, len, [&](const char *item, size_t n) {
        if (item == nullptr) {
            e.field("referrers");
            e.add("empty item in the list");
            return false;
        }
        return encode_referrer(item, n, w, e);
    });
}


bool check_ips_section(const unsigned char *p, size_t len) noexcept
{
    Reader r(p, len);

    if (len == 0) {
        return false;
    }

    while (r.ok && r.off < len) {
        uint8_t family = r.u8();
        uint8_t prefix = r.u8();
        if (!r.ok || (family != 4 && family != 6)
            || prefix > (family == 4 ? 32 : 128))
        {
            return false;
        }
        size_t nbytes = (prefix + 7u) / 8;
        const unsigned char *a = r.bytes(nbytes);
        if (a == nullptr) {
            return false;
        }
        if ((prefix % 8)
            && (a[nbytes - 1]
                & static_cast<unsigned char>(0xff >> (prefix % 8))))
        {
            return false;               /* host bits set */
        }
    }

    return r.ok && r.off == len;
}


bool check_referrers_section(const unsigned char *p, size_t len) noexcept
{
    Reader r(p, len);

    if (len == 0) {
        return false;
    }

    while (r.ok && r.off < len) {
        uint64_t n = r.varint();
        const unsigned char *s = r.bytes(n);
        if (s == nullptr || n == 0 || n > kHostMax + 1) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!referrer_rule_char(s[i])) {
                return false;
            }
        }
    }

    return r.ok && r.off == len;
}


bool referer_host(const char *s, size_t len, const char **host,
    size_t *host_len) noexcept
{
    if (s == nullptr || len == 0
        || !is_alpha(static_cast<unsigned char>(s[0])))
    {
        return false;
    }

    /* scheme "://" */
    size_t i = 1;
    while (i < len) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (!(is_alnum(c) || c == '+' || c == '-' || c == '.')) {
            break;
        }
        i++;
    }
    if (len - i < 3 || std::memcmp(s + i, "://", 3) != 0) {
        return false;
    }

    /* the authority: up to "/", "?", "#" or the end */
    size_t a = i + 3, end = a;
    while (end < len && s[end] != '/' && s[end] != '?' && s[end] != '#') {
        end++;
    }

    size_t hp = a;
    for (size_t k = a; k < end; k++) {
        unsigned char c = static_cast<unsigned char>(s[k]);
        if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '%') {
            return false;
        }
        if (c == '@') {
            hp = k + 1;                 /* userinfo ends at the last '@' */
        }
    }

    size_t h = hp, he, rest;
    bool bracket = hp < end && s[hp] == '[';

    if (bracket) {
        const char *close = static_cast<const char *>(
            std::memchr(s + hp, ']', end - hp));
        if (close == nullptr) {
            return false;
        }
        he = static_cast<size_t>(close - s) + 1;
        if (!valid_v6_literal(s + hp + 1, he - hp - 2)) {
            return false;
        }
        rest = he;
    } else {
        he = hp;
        while (he < end && s[he] != ':') {
            he++;
        }
        rest = he;
    }

    /* [":" port] */
    if (rest < end) {
        if (s[rest] != ':' || end - rest - 1 > 5) {
            return false;
        }
        for (size_t k = rest + 1; k < end; k++) {
            if (!is_digit(static_cast<unsigned char>(s[k]))) {
                return false;
            }
        }
    }

    if (!bracket) {
        if (he > h && s[he - 1] == '.') {
            he--;                       /* "example.com." */
        }
        if (!valid_hostname(s + h, he - h, true)) {
            return false;
        }
    }

    *host = s + h;
    *host_len = he - h;
    return true;
}

} // namespace ak


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
    if (addr == nullptr) {
        return 0;
    }

    unsigned fam;
    const unsigned char *a;

    if (family == 4) {
        fam = 4;
        a = addr;
    } else if (family == 6) {
        if (v4_mapped(addr)) {
            fam = 4;
            a = addr + 12;
        } else {
            fam = 6;
            a = addr;
        }
    } else {
        return 0;
    }

    const unsigned char *ips, *refs;
    size_t ips_len, refs_len;

    if (!blob_rule_sections(rec->blob, rec->blob_len, &ips, &ips_len, &refs,
                            &refs_len)
        || ips == nullptr)
    {
        return 0;
    }

    Reader r(ips, ips_len);

    while (r.off < ips_len) {
        uint8_t f = r.u8();
        uint8_t prefix = r.u8();
        const unsigned char *rule = r.bytes((prefix + 7u) / 8);
        if (rule == nullptr || prefix > (f == 4 ? 32 : 128)) {
            return 0;
        }
        if (f == fam && prefix_match(rule, a, prefix)) {
            return 1;
        }
    }

    return 0;
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

    const char *host;
    size_t hlen;

    if (!referer_host(referer, len, &host, &hlen)) {
        return 0;
    }

    const unsigned char *ips, *refs;
    size_t ips_len, refs_len;

    if (!blob_rule_sections(rec->blob, rec->blob_len, &ips, &ips_len, &refs,
                            &refs_len)
        || refs == nullptr)
    {
        return 0;
    }

    Reader r(refs, refs_len);

    while (r.off < refs_len) {
        uint64_t n = r.varint();
        const char *rule = reinterpret_cast<const char *>(r.bytes(n));
        if (rule == nullptr || n == 0) {
            return 0;
        }

        if (rule[0] == '.') {
            /* "*.example.com" is stored as ".example.com": host must end
             * with it and have a label before it */
            if (hlen > n && eq_nocase(host + hlen - n, rule, n)) {
                return 1;
            }
        } else if (hlen == n && eq_nocase(host, rule, n)) {
            return 1;
        }
    }

    return 0;
}
