/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * json.cpp: the body of an api_key_verify request, {"key": "..."}: a strict
 * JSON (RFC 8259) parser that only keeps the top-level "key" member's
 * string, decoded (escapes, \uXXXX with surrogate pairs into UTF-8).  Other
 * members of any type are checked and skipped; nesting is bounded.
 */

#include "ak_core.h"

#include <cstring>

namespace {

const int kMaxDepth = 32;

struct Parser {
    const unsigned char *p;
    const unsigned char *end;

    void ws() noexcept
    {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n'
                           || *p == '\r')) {
            p++;
        }
    }

    static int hex(unsigned char c) noexcept
    {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    bool u4(unsigned *v) noexcept
    {
        if (end - p < 4) {
            return false;
        }
        *v = 0;
        for (int i = 0; i < 4; i++) {
            int h = hex(p[i]);
            if (h < 0) {
                return false;
            }
            *v = *v * 16 + static_cast<unsigned>(h);
        }
        p += 4;
        return true;
    }

    /*
     * A string (p at its '"'); decoded into out when out is not null:
     * *len its length, *fits false when it did not fit in cap.
     */
    bool string(char *out, size_t cap, size_t *len, bool *fits) noexcept
    {
        size_t n = 0;
        bool ok_fit = true;

        auto put = [&](unsigned char c) {
            if (out) {
                if (n < cap) {
                    out[n] = static_cast<char>(c);
                } else {
                    ok_fit = false;
                }
            }
            n++;
        };

        if (p >= end || *p != '"') {
            return false;
        }
        p++;

        while (p < end) {
            unsigned char c = *p++;

            if (c == '"') {
                if (len) *len = n;
                if (fits) *fits = ok_fit;
                return true;
            }
            if (c < 0x20) {
                return false;
            }
            if (c != '\\') {
                put(c);
                continue;
            }
            if (p >= end) {
                return false;
            }
            c = *p++;
            switch (c) {
            case '"': case '\\': case '/': put(c); break;
            case 'b': put('\b'); break;
            case 'f': put('\f'); break;
            case 'n': put('\n'); break;
            case 'r': put('\r'); break;
            case 't': put('\t'); break;
            case 'u': {
                unsigned v;
                if (!u4(&v)) {
                    return false;
                }
                if (v >= 0xd800 && v <= 0xdbff) {
                    unsigned lo;
                    if (end - p < 2 || p[0] != '\\' || p[1] != 'u') {
                        return false;
                    }
                    p += 2;
                    if (!u4(&lo) || lo < 0xdc00 || lo > 0xdfff) {
                        return false;
                    }
                    v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                } else if (v >= 0xdc00 && v <= 0xdfff) {
                    return false;
                }
                if (v < 0x80) {
                    put(static_cast<unsigned char>(v));
                } else if (v < 0x800) {
                    put(static_cast<unsigned char>(0xc0 | (v >> 6)));
                    put(static_cast<unsigned char>(0x80 | (v & 0x3f)));
                } else if (v < 0x10000) {
                    put(static_cast<unsigned char>(0xe0 | (v >> 12)));
                    put(static_cast<unsigned char>(0x80 | ((v >> 6) & 0x3f)));
                    put(static_cast<unsigned char>(0x80 | (v & 0x3f)));
                } else {
                    put(static_cast<unsigned char>(0xf0 | (v >> 18)));
                    put(static_cast<unsigned char>(0x80 | ((v >> 12) & 0x3f)));
                    put(static_cast<unsigned char>(0x80 | ((v >> 6) & 0x3f)));
                    put(static_cast<unsigned char>(0x80 | (v & 0x3f)));
                }
                break;
            }
            default:
                return false;
            }
        }

        return false;
    }

    bool literal(const char *w) noexcept
    {
        size_t n = std::strlen(w);
        if (static_cast<size_t>(end - p) < n || std::memcmp(p, w, n) != 0) {
            return false;
        }
        p += n;
        return true;
    }

    bool number() noexcept
    {
        const unsigned char *s = p;
        if (p < end && *p == '-') p++;
        if (p >= end) return false;
        if (*p == '0') {
            p++;
        } else if (*p >= '1' && *p <= '9') {
            while (p < end && *p >= '0' && *p <= '9') p++;
        } else {
            return false;
        }
        if (p < end && *p == '.') {
            p++;
            const unsigned char *d = p;
            while (p < end && *p >= '0' && *p <= '9') p++;
            if (p == d) return false;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
            p++;
            if (p < end && (*p == '+' || *p == '-')) p++;
            const unsigned char *d = p;
            while (p < end && *p >= '0' && *p <= '9') p++;
            if (p == d) return false;
        }
        return p > s;
    }

    bool value(int depth) noexcept
    {
        if (depth > kMaxDepth || p >= end) {
            return false;
        }
        switch (*p) {
        case '"': return string(nullptr, 0, nullptr, nullptr);
        case 't': return literal("true");
        case 'f': return literal("false");
        case 'n': return literal("null");
        case '[': {
            p++;
            ws();
            if (p < end && *p == ']') { p++; return true; }
            for (;;) {
                ws();
                if (!value(depth + 1)) return false;
                ws();
                if (p < end && *p == ',') { p++; continue; }
                if (p < end && *p == ']') { p++; return true; }
                return false;
            }
        }
        case '{': return object(depth + 1, nullptr, 0, nullptr, nullptr);
        default: return number();
        }
    }

    /*
     * An object (p at its '{'); at the top (out not null) its "key"
     * member, a string, decoded into out: *found 1 (0: absent), -1 when
     * "key" is not a string or appears twice, -2 when it did not fit.
     */
    bool object(int depth, char *out, size_t cap, size_t *len, int *found)
        noexcept
    {
        if (depth > kMaxDepth || p >= end || *p != '{') {
            return false;
        }
        p++;
        ws();
        if (p < end && *p == '}') { p++; return true; }

        for (;;) {
            ws();
            size_t nlen = 0;
            char name[4];
            bool nfits = true;
            if (!string(name, sizeof(name), &nlen, &nfits)) {
                return false;
            }
            bool is_key = out && nfits && nlen == 3
                          && std::memcmp(name, "key", 3) == 0;
            ws();
            if (p >= end || *p != ':') {
                return false;
            }
            p++;
            ws();
            if (is_key) {
                if (*found != 0 || p >= end || *p != '"') {
                    *found = -1;
                    if (!value(depth + 1)) return false;
                } else {
                    bool fits = true;
                    if (!string(out, cap, len, &fits)) return false;
                    *found = fits ? 1 : -2;
                }
            } else if (!value(depth + 1)) {
                return false;
            }
            ws();
            if (p < end && *p == ',') { p++; continue; }
            if (p < end && *p == '}') { p++; return true; }
            return false;
        }
    }
};

} // namespace


extern "C" int
ak_verify_body_key(const unsigned char *body, size_t len, char *out,
    size_t cap, size_t *out_len) noexcept
{
    if (body == nullptr || out == nullptr || out_len == nullptr) {
        return AK_VERIFY_BAD_JSON;
    }

    Parser ps{body, body + len};
    int found = 0;
    size_t n = 0;

    ps.ws();
    if (!ps.object(1, out, cap, &n, &found)) {
        return AK_VERIFY_BAD_JSON;
    }
    ps.ws();
    if (ps.p != ps.end) {
        return AK_VERIFY_BAD_JSON;
    }

    switch (found) {
    case 1:
        *out_len = n;
        return AK_VERIFY_KEY;
    case 0:
        return AK_VERIFY_NO_KEY;
    case -2:
        return AK_VERIFY_KEY_TOO_LONG;
    default:
        return AK_VERIFY_BAD_KEY;
    }
}
