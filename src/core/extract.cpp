/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * extract.cpp: the parts of a request that carry a key, parsed without
 * nginx: Cookie header values ("a=1; b=2"), "Authorization: Bearer ..."
 * values, query strings ("a=1&b=2"), where the query is in a URI or a
 * request line, and the rebuilding of a Cookie value or a query string
 * without the key (api_key_strip).  Byte ranges in, offsets and lengths
 * out; a rebuilt value is written into a buffer the caller sized with the
 * first pass (…_strip_len).  Nothing here allocates.
 *
 * Names are compared as the glue did with nginx's ngx_strncmp (cookies:
 * with case) and ngx_strncasecmp (query arguments: ASCII letters without
 * case); like those, a comparison ends, equal, at a NUL byte both sides
 * have at the same place.
 */

#include "ak_core.h"

#include <cstring>

namespace {

inline unsigned char lower(unsigned char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c | 0x20) : c;
}

/* a[0..n) and b[0..n) equal, as ngx_strncmp / ngx_strncasecmp compare */
bool same(const unsigned char *a, const unsigned char *b, size_t n,
    bool fold) noexcept
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c1 = fold ? lower(a[i]) : a[i];
        unsigned char c2 = fold ? lower(b[i]) : b[i];

        if (c1 != c2) {
            return false;
        }

        if (c1 == '\0') {
            return true;
        }
    }

    return true;
}

/* the first c in s[from, to), or to */
size_t find(const unsigned char *s, size_t from, size_t to, unsigned char c)
    noexcept
{
    if (from >= to) {
        return to;
    }

    const void *p = std::memchr(s + from, c, to - from);

    return p ? static_cast<size_t>(static_cast<const unsigned char *>(p) - s)
             : to;
}

/* s[arg, end) is the argument "NAME" or "NAME=..." */
bool arg_named(const unsigned char *s, size_t arg, size_t end,
    const unsigned char *name, size_t name_len) noexcept
{
    size_t eq = find(s, arg, end, '=');

    return eq - arg == name_len && same(s + arg, name, name_len, true);
}

bool cookie_named(const unsigned char *s, const ak_cookie_t *c,
    const unsigned char *name, size_t name_len) noexcept
{
    return c->has_value && c->name_len == name_len
           && same(s + c->pair, name, name_len, false);
}

bool bad_range(const void *s, size_t len) noexcept
{
    return s == nullptr && len > 0;
}

} // namespace


/* ---- Cookie ----------------------------------------------------------- */

extern "C" int
ak_cookie_next(const unsigned char *s, size_t len, size_t *pos,
    ak_cookie_t *c) noexcept
{
    if (pos == nullptr || c == nullptr || bad_range(s, len)) {
        return 0;
    }

    size_t p = *pos;

    while (p < len && (s[p] == ' ' || s[p] == ';')) {
        p++;
    }

    if (p >= len) {
        *pos = len;
        return 0;
    }

    size_t end = find(s, p, len, ';');
    size_t eq = find(s, p, end, '=');

    c->pair = p;
    c->pair_len = end - p;
    c->name_len = eq - p;

    if (eq < end) {
        c->has_value = 1;
        c->value = eq + 1;
        c->value_len = end - c->value;

        while (c->value_len && s[c->value + c->value_len - 1] == ' ') {
            c->value_len--;
        }

    } else {
        c->has_value = 0;
        c->value = end;
        c->value_len = 0;
    }

    *pos = end;

    return 1;
}


extern "C" int
ak_cookie_find(const unsigned char *s, size_t len, const unsigned char *name,
    size_t name_len, size_t *value, size_t *value_len) noexcept
{
    ak_cookie_t  c;
    size_t       pos = 0;

    if (value == nullptr || value_len == nullptr || bad_range(name, name_len))
    {
        return 0;
    }

    while (ak_cookie_next(s, len, &pos, &c)) {

        if (!cookie_named(s, &c, name, name_len)) {
            continue;
        }

        *value = c.value;
        *value_len = c.value_len;

        if (c.value_len >= 2 && s[c.value] == '"'
            && s[c.value + c.value_len - 1] == '"')
        {
            *value += 1;
            *value_len -= 2;
        }

        return 1;
    }

    return 0;
}


extern "C" int
ak_cookie_strip_len(const unsigned char *s, size_t len,
    const unsigned char *name, size_t name_len, size_t *out_len) noexcept
{
    ak_cookie_t  c;
    size_t       pos = 0, n = 0, kept = 0;
    bool         removed = false;

    if (out_len == nullptr || bad_range(name, name_len)) {
        return AK_STRIP_NONE;
    }

    while (ak_cookie_next(s, len, &pos, &c)) {

        if (cookie_named(s, &c, name, name_len)) {
            removed = true;
            continue;
        }

        n += (kept ? 2 : 0) + c.pair_len;
        kept++;
    }

    *out_len = n;

    if (!removed) {
        return AK_STRIP_NONE;
    }

    return kept ? AK_STRIP_REBUILT : AK_STRIP_EMPTY;
}


extern "C" size_t
ak_cookie_strip(const unsigned char *s, size_t len, const unsigned char *name,
    size_t name_len, unsigned char *out, size_t cap) noexcept
{
    ak_cookie_t  c;
    size_t       pos = 0, o = 0;

    if (bad_range(out, cap) || bad_range(name, name_len)) {
        return 0;
    }

    while (ak_cookie_next(s, len, &pos, &c)) {

        if (cookie_named(s, &c, name, name_len)) {
            continue;
        }

        size_t need = (o ? 2 : 0) + c.pair_len;

        if (need > cap - o) {
            return 0;
        }

        if (o) {
            out[o++] = ';';
            out[o++] = ' ';
        }

        std::memcpy(out + o, s + c.pair, c.pair_len);
        o += c.pair_len;
    }

    return o;
}


/* ---- Authorization ---------------------------------------------------- */

extern "C" int
ak_auth_is_scheme(const unsigned char *s, size_t len,
    const unsigned char *scheme, size_t scheme_len) noexcept
{
    if (bad_range(s, len) || bad_range(scheme, scheme_len) || scheme_len == 0
        || len < scheme_len + 1)
    {
        return 0;
    }

    return (same(s, scheme, scheme_len, true) && s[scheme_len] == ' ')
           ? 1 : 0;
}


extern "C" int
ak_auth_scheme(const unsigned char *s, size_t len,
    const unsigned char *scheme, size_t scheme_len, size_t *token,
    size_t *token_len) noexcept
{
    if (token == nullptr || token_len == nullptr
        || !ak_auth_is_scheme(s, len, scheme, scheme_len))
    {
        return 0;
    }

    size_t p = scheme_len + 1;
    size_t last = len;

    while (p < last && s[p] == ' ') {
        p++;
    }

    while (last > p && s[last - 1] == ' ') {
        last--;
    }

    *token = p;
    *token_len = last - p;

    return 1;
}


extern "C" int
ak_auth_is_bearer(const unsigned char *s, size_t len) noexcept
{
    return ak_auth_is_scheme(s, len,
                             reinterpret_cast<const unsigned char *>("Bearer"),
                             6);
}


extern "C" int
ak_auth_bearer(const unsigned char *s, size_t len, size_t *token,
    size_t *token_len) noexcept
{
    return ak_auth_scheme(s, len,
                          reinterpret_cast<const unsigned char *>("Bearer"),
                          6, token, token_len);
}


namespace {

int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

} // namespace


extern "C" int
ak_base64_decode(const unsigned char *s, size_t len, unsigned char *out,
    size_t cap, size_t *out_len) noexcept
{
    if (out_len == nullptr || bad_range(s, len) || (out == nullptr && cap)
        || len % 4 != 0)
    {
        return 0;
    }

    size_t pad = 0;

    if (len && s[len - 1] == '=') {
        pad = (len >= 2 && s[len - 2] == '=') ? 2 : 1;
    }

    size_t n = len / 4 * 3 - pad;

    if (n > cap) {
        return 0;
    }

    size_t o = 0;

    for (size_t i = 0; i < len; i += 4) {
        bool last = (i + 4 == len);
        int v[4];

        for (size_t j = 0; j < 4; j++) {
            if (last && j >= 4 - pad) {
                v[j] = 0;
                continue;
            }

            v[j] = b64_value(s[i + j]);

            if (v[j] < 0) {
                return 0;
            }
        }

        /* the bits a padded group leaves over must be zero (canonical) */
        if (last && pad == 1 && (v[2] & 0x03)) return 0;
        if (last && pad == 2 && (v[1] & 0x0f)) return 0;

        unsigned long g = (unsigned long) v[0] << 18 | (unsigned long) v[1] << 12
                          | (unsigned long) v[2] << 6 | (unsigned long) v[3];

        out[o++] = (unsigned char) (g >> 16);
        if (!(last && pad == 2)) out[o++] = (unsigned char) (g >> 8);
        if (!(last && pad >= 1)) out[o++] = (unsigned char) g;
    }

    *out_len = o;

    return 1;
}


extern "C" int
ak_auth_basic(const unsigned char *s, size_t len, int password,
    unsigned char *buf, size_t cap, size_t *key, size_t *key_len) noexcept
{
    size_t off, n, dlen;

    if (key == nullptr || key_len == nullptr
        || !ak_auth_scheme(s, len,
                           reinterpret_cast<const unsigned char *>("Basic"),
                           5, &off, &n))
    {
        return 0;
    }

    if (!ak_base64_decode(s + off, n, buf, cap, &dlen)) {
        return -1;
    }

    const void *c = dlen ? std::memchr(buf, ':', dlen) : nullptr;

    if (c == nullptr) {
        return -1;
    }

    size_t colon = static_cast<const unsigned char *>(c) - buf;

    if (password) {
        *key = colon + 1;
        *key_len = dlen - colon - 1;

    } else {
        *key = 0;
        *key_len = colon;
    }

    return 1;
}


/* ---- query strings ---------------------------------------------------- */

extern "C" int
ak_args_has(const unsigned char *s, size_t len, const unsigned char *name,
    size_t name_len) noexcept
{
    if (bad_range(s, len) || bad_range(name, name_len)) {
        return 0;
    }

    size_t p = 0;

    while (p < len) {
        size_t a = find(s, p, len, '&');

        if (arg_named(s, p, a, name, name_len)) {
            return 1;
        }

        p = a + 1;
    }

    return 0;
}


extern "C" int
ak_query_bounds(const unsigned char *s, size_t len, int request_line,
    size_t *start, size_t *end) noexcept
{
    if (start == nullptr || end == nullptr || s == nullptr) {
        return 0;
    }

    size_t q;
    size_t last = len;

    if (!request_line) {
        /* path [ "?" args ] */
        q = find(s, 0, len, '?');

    } else {
        /* METHOD SP+ URI [ SP "HTTP/" version ] */
        q = find(s, 0, len, ' ');

        if (q < len) {
            q = find(s, q, len, '?');
        }
    }

    if (q >= len) {
        return 0;
    }

    if (request_line) {
        /* the query ends at the protocol, if there is one */

        size_t p;

        for (p = len; p > q + 1; p--) {
            if (s[p - 1] == ' ') {
                break;
            }
        }

        if (p > q + 1 && len - p >= sizeof("HTTP/") - 1
            && std::memcmp(s + p, "HTTP/", sizeof("HTTP/") - 1) == 0)
        {
            last = p - 1;
        }
    }

    *start = q + 1;
    *end = last;

    return 1;
}


/*
 * The rebuilt string: s[0, start), the kept non-empty arguments of
 * s[start, end) joined by '&' (the '?' before them dropped when none is
 * left and start > 0), then s[end, len).  One function for both passes:
 * out NULL measures; out writes exactly what it measured, no byte more.
 */
namespace {

size_t args_rebuild(const unsigned char *s, size_t len, size_t start,
    size_t end, const unsigned char *name, size_t name_len,
    unsigned char *out) noexcept
{
    size_t o = start;
    size_t begin = start;
    size_t p = start;

    while (p < end) {
        size_t a = find(s, p, end, '&');

        if (!arg_named(s, p, a, name, name_len) && a > p) {
            if (o > begin) {
                if (out) {
                    out[o] = '&';
                }
                o++;
            }

            if (out) {
                std::memcpy(out + o, s + p, a - p);
            }
            o += a - p;
        }

        p = (a < end) ? a + 1 : end;
    }

    if (o == begin && start > 0 && s[start - 1] == '?') {
        /* nothing left: "path?" becomes "path" */
        o--;
    }

    /* the part before the arguments last: it may lose its '?' */

    if (out) {
        std::memcpy(out, s, o < start ? o : start);
        std::memcpy(out + o, s + end, len - end);
    }

    return o + (len - end);
}

} // namespace


extern "C" int
ak_args_strip_len(const unsigned char *s, size_t len, size_t start,
    size_t end, const unsigned char *name, size_t name_len, size_t *out_len)
    noexcept
{
    if (out_len == nullptr || bad_range(s, len) || bad_range(name, name_len)
        || start >= end || end > len)
    {
        return AK_STRIP_NONE;
    }

    /* most requests do not have it: one scan then */

    size_t p = start;

    for ( ;; ) {
        size_t a = find(s, p, end, '&');

        if (arg_named(s, p, a, name, name_len)) {
            break;
        }

        if (a == end) {
            return AK_STRIP_NONE;
        }

        p = a + 1;
    }

    *out_len = args_rebuild(s, len, start, end, name, name_len, nullptr);

    return AK_STRIP_REBUILT;
}


extern "C" size_t
ak_args_strip(const unsigned char *s, size_t len, size_t start, size_t end,
    const unsigned char *name, size_t name_len, unsigned char *out,
    size_t cap) noexcept
{
    if (bad_range(s, len) || bad_range(name, name_len) || bad_range(out, cap)
        || start >= end || end > len)
    {
        return 0;
    }

    size_t need = args_rebuild(s, len, start, end, name, name_len, nullptr);

    if (need > cap || need == 0) {
        return 0;
    }

    return args_rebuild(s, len, start, end, name, name_len, out);
}
