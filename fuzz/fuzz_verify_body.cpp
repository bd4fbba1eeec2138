/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_verify_body: api_key_verify's request body (ak_verify_body_key) on
 * any bytes, into an output buffer of exactly cap bytes (heap, so that a
 * write past it is caught): the answer is one of the five, a key found
 * fits in cap, the same input gives the same answer, and a key found,
 * written back as a JSON string (every byte escaped as \u00XX or kept),
 * parses to the same bytes.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <string>
#include <vector>

namespace {

FUZZ_ORACLE std::string json_string(const std::string &s)
{
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\' || c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof(b), "\\u%04x", c);
            out += b;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

int parse(const std::string &body, size_t cap, std::string *key)
{
    std::vector<char> out(cap ? cap : 1);
    size_t n = 12345;
    int rc = ak_verify_body_key(
        reinterpret_cast<const unsigned char *>(body.data()), body.size(),
        out.data(), cap, &n);
    if (rc == AK_VERIFY_KEY) {
        FUZZ_CHECK(n <= cap);
        key->assign(out.data(), n);
    }
    return rc;
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }

    size_t cap = (data[0] & 0x80) ? AK_KEY_MAX_LEN : data[0] % 40;
    std::string body(reinterpret_cast<const char *>(data) + 1, size - 1);

    std::string k1, k2;
    int rc = parse(body, cap, &k1);
    FUZZ_CHECK(rc >= AK_VERIFY_KEY && rc <= AK_VERIFY_BAD_JSON);
    FUZZ_CHECK(parse(body, cap, &k2) == rc && k1 == k2);

    if (rc == AK_VERIFY_KEY) {
        std::string again;
        std::string doc = "{\"key\":" + json_string(k1) + "}";
        int rc2 = parse(doc, cap, &again);
        FUZZ_CHECK(rc2 == AK_VERIFY_KEY);
        FUZZ_CHECK(again == k1);
    }

    return 0;
}
