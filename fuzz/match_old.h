/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * match_old.h: the request-path matchers of src/core/match.cpp as they
 * were before they were made cheaper (referer_host,
 * ak_record_ip_allowed, ak_record_referrer_allowed), kept unchanged as
 * the reference the fuzz targets compare the current ones with, answer
 * for answer, on every input (well-formed records in fuzz_ips and
 * fuzz_referrer, corrupt rules sections in fuzz_record).
 *
 * They read the rules sections of blob version 1 (family, prefix, bytes;
 * varint length, bytes).  Version 2 stores the rules made for matching:
 * old_ips / old_referrers (at the end) turn a section of version 2 that
 * ak::check_*_section accepts into the version 1 section of the same
 * rules, and ip_allowed_v2 / referrer_allowed_v2 run the old matchers on
 * them.
 */

#ifndef AK_FUZZ_MATCH_OLD_H
#define AK_FUZZ_MATCH_OLD_H

#include "ak_core.h"
#include "internal.hpp"
#include "fuzz_util.h"

#include <cstring>
#include <string>

#include <arpa/inet.h>

namespace match_old {

using namespace ak;

constexpr size_t kHostMax = 253;
constexpr size_t kLabelMax = 63;
constexpr size_t kV6TextMax = 45;

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
            if (i == '/' || i == '?' || i == '#') {
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

FUZZ_ORACLE inline bool v4_mapped(const unsigned char *a) noexcept
{
    static const unsigned char pfx[12] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
    };
    return std::memcmp(a, pfx, sizeof(pfx)) == 0;
}

/* the first nbytes (0..4) bytes of p as the high bytes of a u32 */
FUZZ_ORACLE inline uint32_t be32_head(const unsigned char *p,
    unsigned nbytes) noexcept
{
    uint32_t v = 0;

    switch (nbytes) {
    case 4:
        v |= static_cast<uint32_t>(p[3]);
        /* fall through */
    case 3:
        v |= static_cast<uint32_t>(p[2]) << 8;
        /* fall through */
    case 2:
        v |= static_cast<uint32_t>(p[1]) << 16;
        /* fall through */
    case 1:
        v |= static_cast<uint32_t>(p[0]) << 24;
        /* fall through */
    default:
        break;
    }
    return v;
}

FUZZ_ORACLE inline bool prefix_match(const unsigned char *rule,
    const unsigned char *a, unsigned prefix) noexcept
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

/* the inside of [ ]: hex digits, ':' and '.', with at least one ':' */
FUZZ_ORACLE inline bool valid_v6_literal(const char *h, size_t len) noexcept
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

/* the length (a varint) at p[*off], off < len: the one-byte form inline,
 * any other through Reader (which accepts and refuses the same) */
FUZZ_ORACLE inline bool next_len(const unsigned char *p, size_t len,
    size_t *off, uint64_t *n) noexcept
{
    if (*off < len && p[*off] < 0x80) {
        *n = p[(*off)++];
        return true;
    }
    Reader r(p, len);
    r.off = *off;
    *n = r.varint();
    *off = r.off;
    return r.ok;
}

FUZZ_ORACLE inline bool referer_host(const char *s, size_t len,
    const char **host, size_t *host_len) noexcept
{
    if (s == nullptr || len == 0
        || !is_alpha(static_cast<unsigned char>(s[0])))
    {
        return false;
    }

    /* scheme "://" */
    size_t i = 1;
    while (i < len && (kCC[static_cast<unsigned char>(s[i])] & CC_SCHEME)) {
        i++;
    }
    if (len - i < 3 || std::memcmp(s + i, "://", 3) != 0) {
        return false;
    }

    /*
     * The authority, up to "/", "?", "#" or the end, in one pass: no
     * byte of it may be CC_AUTH_BAD; the userinfo ends at the last '@';
     * colon: the first ':' after it (the port, unless bracketed).
     */
    size_t a = i + 3, end = a, hp = a, colon = len;
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
            return false;
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
            return false;
        }
        he = static_cast<size_t>(close - s) + 1;
        if (!valid_v6_literal(s + hp + 1, he - hp - 2)) {
            return false;
        }
        rest = he;
    } else {
        he = colon < end ? colon : end;
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
        /* "example.com.": the last label is the one before the dot (it
           was checked when the dot came) */
        bool dot = he > h && s[he - 1] == '.';
        if (dot) {
            he--;
        }
        if (!hok || he == h || he - h > kHostMax
            || (!dot && (label == 0 || label > kLabelMax)))
        {
            return false;
        }
    }

    *host = s + h;
    *host_len = he - h;
    return true;
}


FUZZ_ORACLE inline int
ip_allowed(const ak_record_t *rec, int family,
    const unsigned char *addr) noexcept
{
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

    /* the section the view found; its bytes are checked here, rule by
     * rule, not by the request path's view (see ak_record_view_lazy) */
    const unsigned char *ips = rec->ips;
    size_t ips_len = rec->ips_len;

    if (ips == nullptr) {
        return 0;
    }

    /*
     * One pass over the rules: [family, prefix, the prefix's bytes].  IPv4
     * rules are compared as integers under the rule's mask (4 bytes read
     * at once where the section has them: the bytes after the prefix's
     * are under no mask bit); both families compare under the mask, so a
     * host bit in a stored rule (never one ak_record_build stores) is
     * ignored.  A rule that cannot be read (past the section, a prefix too
     * long, an unknown family) denies.
     */
    uint32_t a4 = fam == 4 ? be32_head(a, 4) : 0;
    const unsigned char *p = ips, *end = ips + ips_len;

    while (end - p >= 2) {
        unsigned f = p[0], prefix = p[1];
        size_t nbytes = (prefix + 7u) / 8;
        const unsigned char *rule = p + 2;

        if (nbytes > static_cast<size_t>(end - rule)) {
            return 0;
        }
        p = rule + nbytes;

        if (f == 4) {
            if (prefix > 32) {
                return 0;
            }
            if (fam == 4) {
                uint32_t r, mask;
                if (end - rule >= 4) {
                    std::memcpy(&r, rule, 4);
                    r = ntohl(r);
                } else {
                    r = be32_head(rule, static_cast<unsigned>(nbytes));
                }
                mask = prefix ? ~uint32_t(0) << (32 - prefix) : 0;
                if (((a4 ^ r) & mask) == 0) {
                    return 1;
                }
            }
        } else if (f == 6) {
            if (prefix > 128) {
                return 0;
            }
            if (fam == 6 && prefix_match(rule, a, prefix)) {
                return 1;
            }
        } else {
            return 0;
        }
    }

    return 0;
}


FUZZ_ORACLE inline int
referrer_allowed(const ak_record_t *rec, const char *referer,
    size_t len) noexcept
{
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

    const unsigned char *refs = rec->referrers;
    size_t refs_len = rec->referrers_len;

    if (refs == nullptr) {
        return 0;
    }

    /* (each candidate rule compared in place, up to its first differing
     * byte: faster than lowering the host first and a memcmp per rule) */
    size_t off = 0;

    while (off < refs_len) {
        uint64_t n;
        if (!next_len(refs, refs_len, &off, &n) || n == 0
            || n > refs_len - off)
        {
            return 0;
        }
        const char *rule = reinterpret_cast<const char *>(refs + off);
        off += static_cast<size_t>(n);

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


/* ---- version 2 sections as version 1 ones ------------------------- */

/* the ips section of version 2 (check_ips_section holds) as version 1:
 * the IPv4 rules, then the IPv6 ones */
inline std::string old_ips(const unsigned char *p, size_t len)
{
    std::string out;
    size_t n4 = static_cast<size_t>(p[0] | (p[1] << 8));

    for (size_t i = 0; i < n4; i++) {
        const unsigned char *net = p + 2 + 4 * i;
        unsigned prefix = p[2 + 4 * n4 + i];
        out += static_cast<char>(4);
        out += static_cast<char>(prefix);
        out.append(reinterpret_cast<const char *>(net), (prefix + 7) / 8);
    }
    for (size_t off = 2 + 5 * n4; off < len;) {
        unsigned prefix = p[off];
        size_t nbytes = (prefix + 7) / 8;
        out += static_cast<char>(6);
        out += static_cast<char>(prefix);
        out.append(reinterpret_cast<const char *>(p + off + 1), nbytes);
        off += 1 + nbytes;
    }
    return out;
}

/* the referrers section of version 2 (check_referrers_section holds) as
 * version 1: the exact rules, then the ".domain" ones */
inline std::string old_referrers(const unsigned char *p, size_t len)
{
    std::string out;
    size_t nr = static_cast<size_t>(p[0] | (p[1] << 8))
                + static_cast<size_t>(p[2] | (p[3] << 8));
    size_t off = 4 + nr;

    for (size_t i = 0; i < nr && off <= len; i++) {
        size_t n = p[4 + i];
        out += static_cast<char>(n);        /* n < 0x80: one varint byte */
        if (n >= 0x80) {
            out.back() = static_cast<char>(0x80 | (n & 0x7f));
            out += static_cast<char>(n >> 7);
        }
        out.append(reinterpret_cast<const char *>(p + off), n);
        off += n;
    }
    return out;
}

/* the old matchers on a record of version 2 whose sections hold */
inline int ip_allowed_v2(const ak_record_t *rec, int family,
    const unsigned char *addr)
{
    ak_record_t r = *rec;
    std::string s;
    if (r.has_ips && r.ips) {
        s = old_ips(r.ips, r.ips_len);
        r.ips = reinterpret_cast<const unsigned char *>(s.data());
        r.ips_len = static_cast<uint16_t>(s.size());
    }
    return ip_allowed(&r, family, addr);
}

inline int referrer_allowed_v2(const ak_record_t *rec, const char *referer,
    size_t len)
{
    ak_record_t r = *rec;
    std::string s;
    if (r.has_referrers && r.referrers) {
        s = old_referrers(r.referrers, r.referrers_len);
        r.referrers = reinterpret_cast<const unsigned char *>(s.data());
        r.referrers_len = static_cast<uint16_t>(s.size());
    }
    return referrer_allowed(&r, referer, len);
}

} // namespace match_old


#endif
