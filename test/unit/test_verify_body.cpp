/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * api_key_verify's body (ak_verify_body_key): the "key" member decoded,
 * other members skipped, strict JSON refused when malformed.
 */

#include <gtest/gtest.h>

#include <string>

#include "ak_core.h"

namespace {

int parse(const std::string &body, std::string *key, size_t cap = AK_KEY_MAX_LEN)
{
    char out[AK_KEY_MAX_LEN + 8];
    size_t n = 0;
    int rc = ak_verify_body_key(
        reinterpret_cast<const unsigned char *>(body.data()), body.size(),
        out, cap, &n);
    if (rc == AK_VERIFY_KEY) {
        key->assign(out, n);
    }
    return rc;
}

} // namespace

TEST(VerifyBody, Key)
{
    std::string k;
    EXPECT_EQ(AK_VERIFY_KEY, parse("{\"key\":\"ak_abc\"}", &k));
    EXPECT_EQ("ak_abc", k);
    EXPECT_EQ(AK_VERIFY_KEY, parse(" \n{ \"a\" : [1, -2.5e3, {\"key\": 5}, "
                                   "null, true, false, \"x\"], \"key\" : "
                                   "\"k\\\"\\\\\\/\\u0041\" , \"z\": {} }\r\n",
                                   &k));
    EXPECT_EQ("k\"\\/A", k);
    EXPECT_EQ(AK_VERIFY_KEY, parse("{\"key\":\"\\ud83d\\udd11\\u00e9\"}", &k));
    EXPECT_EQ("\xf0\x9f\x94\x91\xc3\xa9", k);
    EXPECT_EQ(AK_VERIFY_KEY, parse("{\"key\":\"\"}", &k));
    EXPECT_EQ("", k);
}

TEST(VerifyBody, NoKeyAndBadKey)
{
    std::string k;
    EXPECT_EQ(AK_VERIFY_NO_KEY, parse("{}", &k));
    EXPECT_EQ(AK_VERIFY_NO_KEY, parse("{\"keys\":\"x\",\"Key\":\"y\"}", &k));
    EXPECT_EQ(AK_VERIFY_NO_KEY, parse("{\"a\":{\"key\":\"nested\"}}", &k));
    EXPECT_EQ(AK_VERIFY_BAD_KEY, parse("{\"key\":5}", &k));
    EXPECT_EQ(AK_VERIFY_BAD_KEY, parse("{\"key\":null}", &k));
    EXPECT_EQ(AK_VERIFY_BAD_KEY, parse("{\"key\":\"a\",\"key\":\"b\"}", &k));
    EXPECT_EQ(AK_VERIFY_KEY_TOO_LONG,
              parse("{\"key\":\"" + std::string(11, 'a') + "\"}", &k, 10));
    EXPECT_EQ(AK_VERIFY_KEY,
              parse("{\"key\":\"" + std::string(10, 'a') + "\"}", &k, 10));
}

TEST(VerifyBody, BadJson)
{
    std::string k;
    for (const char *b : {"", "[]", "\"key\"", "{", "{\"key\":\"a\"",
                          "{\"key\" \"a\"}", "{\"key\":\"a\",}",
                          "{\"key\":\"a\"} x", "{\"key\":\"a\"}{}",
                          "{'key':'a'}", "{\"key\":\"a\x01\"}",
                          "{\"key\":\"\\x\"}", "{\"key\":\"\\ud800\"}",
                          "{\"key\":\"\\udc00\"}", "{\"a\":01}",
                          "{\"a\":1.}", "{\"a\":tru}", "{\"a\":[1,]}",
                          "{\"key\":\"\\u12g4\"}"}) {
        EXPECT_EQ(AK_VERIFY_BAD_JSON, parse(b, &k)) << b;
    }
    std::string deep(40, '[');
    EXPECT_EQ(AK_VERIFY_BAD_JSON,
              parse("{\"a\":" + deep + std::string(40, ']') + "}", &k));
    std::string ok(30, '[');
    EXPECT_EQ(AK_VERIFY_NO_KEY,
              parse("{\"a\":" + ok + std::string(30, ']') + "}", &k));
}
