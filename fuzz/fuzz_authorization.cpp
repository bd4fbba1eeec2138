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
 * - ak_key_check_any accepts exactly 1..256 bytes of 0x21..0x7e.
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
