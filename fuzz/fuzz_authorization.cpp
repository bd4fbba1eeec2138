/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_authorization: Authorization header values (extract.cpp:
 * ak_auth_is_bearer, ak_auth_bearer), what keys.c takes a "bearer" source's
 * key from and strip.c removes Bearer headers by, then the key's format
 * check on what was taken (ak_key_check_any), as check_and_hash() does for
 * bearer and header sources (their value is used as it is).
 *
 * Input: the header value.  Oracles, against a simple reference:
 * - a Bearer value is one whose first 7 bytes are "Bearer " in any case of
 *   the letters (strncasecmp); ak_auth_is_bearer and ak_auth_bearer agree
 *   with it and with each other;
 * - the credential is what follows, spaces (0x20 only) dropped at both
 *   ends, inside the value;
 * - ak_key_check_any accepts exactly 1..256 bytes of 0x21..0x7e;
 * - for the schemes of authorization:SCHEME (ApiKey, Token, Key, "B", and
 *   Bearer again through the generic call), ak_auth_is_scheme and
 *   ak_auth_scheme agree with the same reference: the scheme in any case,
 *   then a space, the credential trimmed of spaces;
 * - ak_auth_basic (user name and password forms) agrees with a reference
 *   strict base64 decoder (length a multiple of 4, '=' only at the end,
 *   at most two, the bits it leaves over zero) and a split at the first
 *   ':'; it never writes past a buffer of len / 4 * 3 bytes, and a buffer
 *   one byte short of the decoded length is refused as malformed.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <cstring>
#include <string>
#include <strings.h>

namespace {

FUZZ_ORACLE bool ref_key_ok(const std::string &k)
{
    if (k.empty() || k.size() > AK_KEY_MAX_LEN) return false;
    for (unsigned char c : k) {
        if (c < 0x21 || c > 0x7e) return false;
    }
    return true;
}

/* "SCHEME credential": 1 and the trimmed credential, 0 not that scheme */
FUZZ_ORACLE bool ref_scheme(const std::string &value, const std::string &scheme,
    std::string *token)
{
    if (value.size() < scheme.size() + 1 || value[scheme.size()] != ' ') {
        return false;
    }
    for (size_t i = 0; i < scheme.size(); i++) {
        unsigned char a = value[i], b = scheme[i];
        if (a == b) continue;
        bool letters = ((a | 0x20) >= 'a' && (a | 0x20) <= 'z');
        if (!letters || (a | 0x20) != (b | 0x20)) return false;
    }
    std::string t = value.substr(scheme.size() + 1);
    size_t b = t.find_first_not_of(' ');
    t = b == std::string::npos ? "" : t.substr(b);
    while (!t.empty() && t.back() == ' ') t.pop_back();
    *token = t;
    return true;
}

FUZZ_ORACLE bool ref_base64(const std::string &in, std::string *out)
{
    static const std::string alpha =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    if (in.size() % 4 != 0) return false;

    size_t pad = 0;
    while (pad < in.size() && in[in.size() - 1 - pad] == '=') pad++;
    if (pad > 2) return false;

    std::string bits;
    for (size_t i = 0; i < in.size() - pad; i++) {
        size_t v = alpha.find(in[i]);
        if (v == std::string::npos || in[i] == '\0') return false;
        for (int k = 5; k >= 0; k--) bits += ((v >> k) & 1) ? '1' : '0';
    }

    out->clear();
    size_t i = 0;
    for (; i + 8 <= bits.size(); i += 8) {
        out->push_back(static_cast<char>(std::stoi(bits.substr(i, 8), nullptr, 2)));
    }
    /* the left-over bits: zero, and fewer than a byte */
    return bits.find('1', i) == std::string::npos;
}

void check_scheme(fuzz::Exact &v, const std::string &value, const char *scheme)
{
    std::string sch(scheme), token;
    bool yes = ref_scheme(value, sch, &token);
    const unsigned char *su = reinterpret_cast<const unsigned char *>(scheme);

    FUZZ_CHECK(ak_auth_is_scheme(v.u(), v.len, su, sch.size()) == (yes ? 1 : 0));

    size_t off = 0, len = 0;
    int rc = ak_auth_scheme(v.u(), v.len, su, sch.size(), &off, &len);
    FUZZ_CHECK(rc == (yes ? 1 : 0));
    if (rc) {
        FUZZ_CHECK(off > sch.size() && off + len <= v.len);
        FUZZ_CHECK(value.substr(off, len) == token);
    }
}

void check_basic(fuzz::Exact &v, const std::string &value)
{
    std::string token, dec;
    bool basic = ref_scheme(value, "Basic", &token);
    bool ok = basic && ref_base64(token, &dec) && dec.find(':') != std::string::npos;

    size_t cap = v.len / 4 * 3;
    std::string buf(cap + 16, '\x5a');
    unsigned char *b = reinterpret_cast<unsigned char *>(&buf[0]);

    for (int password = 0; password <= 1; password++) {
        size_t off = 0, len = 0;
        int rc = ak_auth_basic(v.u(), v.len, password, b, cap, &off, &len);

        FUZZ_CHECK(rc == (!basic ? 0 : ok ? 1 : -1));
        /* nothing written past cap */
        FUZZ_CHECK(buf.compare(cap, 16, std::string(16, '\x5a')) == 0);

        if (rc == 1) {
            size_t colon = dec.find(':');
            std::string want = password ? dec.substr(colon + 1) : dec.substr(0, colon);
            FUZZ_CHECK(off + len <= cap);
            FUZZ_CHECK(std::string(reinterpret_cast<char *>(b) + off, len) == want);

            /* one byte short of the decoded credential: refused */
            if (!dec.empty()) {
                std::string small(dec.size() - 1 + 16, '\x5a');
                FUZZ_CHECK(ak_auth_basic(v.u(), v.len, password,
                               reinterpret_cast<unsigned char *>(&small[0]),
                               dec.size() - 1, &off, &len) == -1);
                FUZZ_CHECK(small.compare(dec.size() - 1, 16, std::string(16, '\x5a')) == 0);
            }
        }
    }
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Exact v(std::string(reinterpret_cast<const char *>(data), size));
    const std::string value(v.c(), v.len);

    /* the reference (strncasecmp in the C locale: ASCII letters only) */

    bool bearer = value.size() >= 7
                  && ::strncasecmp(std::string(value, 0, 7).c_str(),
                                   "bearer ", 7) == 0
                  && std::memchr(value.data(), '\0', 7) == nullptr;
    std::string token;
    if (bearer) {
        token = value.substr(7);
        size_t b = token.find_first_not_of(' ');
        token = b == std::string::npos ? "" : token.substr(b);
        while (!token.empty() && token.back() == ' ') token.pop_back();
    }

    for (const char *scheme : { "Bearer", "ApiKey", "Token", "Key", "B" }) {
        check_scheme(v, value, scheme);
    }
    check_basic(v, value);

    FUZZ_CHECK(ak_auth_is_bearer(v.u(), v.len) == (bearer ? 1 : 0));

    size_t off = 0, len = 0;
    int rc = ak_auth_bearer(v.u(), v.len, &off, &len);

    FUZZ_CHECK(rc == (bearer ? 1 : 0));
    if (!rc) {
        return 0;
    }

    FUZZ_CHECK(off >= 7 && off + len <= v.len);
    FUZZ_CHECK(value.substr(off, len) == token);

    /* the key check on the credential, in place (no copy: as keys.c) */

    FUZZ_CHECK(ak_key_check_any(v.u() + off, len) == (ref_key_ok(token) ? 1 : 0));

    return 0;
}
