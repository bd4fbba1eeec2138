/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Redis names (ak_redis_name_*, ak_redis_pattern_*): the exact spelling
 * the data in Redis already uses, and refusals of what does not fit.
 */

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "ak_core.h"
#include "akcore.hpp"
#include "slot.hpp"

namespace {

/* the hash whose hex is 000102...1f */
struct Hash {
    unsigned char h[AK_HASH_LEN];
    Hash()
    {
        for (size_t i = 0; i < AK_HASH_LEN; i++) {
            h[i] = static_cast<unsigned char>(i);
        }
    }
};

const std::string kHex =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/*
 * Builds with every cap from 0 to the exact length + 2: refused (0,
 * nothing written) below the length, the name at and above it.
 */
template <typename Build>
std::string check_caps(Build build, const std::string &want)
{
    std::string got;

    for (size_t cap = 0; cap <= want.size() + 2; cap++) {
        std::string buf(want.size() + 8, '#');
        size_t n = build(&buf[0], cap);

        if (cap < want.size()) {
            EXPECT_EQ(n, 0u) << "cap " << cap;
            EXPECT_EQ(buf, std::string(want.size() + 8, '#'))
                << "nothing written, cap " << cap;
        } else {
            EXPECT_EQ(n, want.size()) << "cap " << cap;
            EXPECT_EQ(buf.substr(n), std::string(8, '#'))
                << "nothing past the name, cap " << cap;
            got = buf.substr(0, n);
        }
    }
    return got;
}

} // namespace


TEST(RedisNames, Record)
{
    Hash h;
    const char *prefix = "apikey:";

    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_record(prefix, 7, h.h, b, c);
              }, "apikey:" + kHex),
              "apikey:" + kHex);

    /* any prefix as it is, the empty one too */
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_record("t{1}*:", 6, h.h, b, c);
              }, "t{1}*:" + kHex),
              "t{1}*:" + kHex);
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_record(nullptr, 0, h.h, b, c);
              }, kHex),
              kHex);

    char buf[AK_REDIS_NAME_MAX];
    EXPECT_EQ(ak_redis_name_record(prefix, 7, nullptr, buf, sizeof(buf)), 0u);
    EXPECT_EQ(ak_redis_name_record(nullptr, 7, h.h, buf, sizeof(buf)), 0u);
    EXPECT_EQ(ak_redis_name_record(prefix, 7, h.h, nullptr, 100), 0u);

    EXPECT_EQ(ak::redis_record_name("apikey:", h.h), "apikey:" + kHex);
}

TEST(RedisNames, Id)
{
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_id("apikey:", 7, "acme-prod.1", 11, b,
                                          c);
              }, "apikey:id:acme-prod.1"),
              "apikey:id:acme-prod.1");
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_id("", 0, "", 0, b, c);
              }, "id:"),
              "id:");

    EXPECT_EQ(ak::redis_id_name("p:", "x"), "p:id:x");
    std::string odd("a\0b c", 5);
    EXPECT_EQ(ak::redis_id_name("apikey:", odd), "apikey:id:" + odd);
    std::string longid(5000, 'i');
    EXPECT_EQ(ak::redis_id_name(std::string(300, 'p'), longid),
              std::string(300, 'p') + "id:" + longid);
}

TEST(RedisNames, Usage)
{
    Hash h;
    const std::string tag = "{apikey:" + kHex + "}";

    /* 2024-05-17 13:00 UTC, that day, that month; the record's name as
     * hash tag */
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_usage("apikey:", 7, h.h,
                                             AK_PERIOD_HOUR, 1715950800, b,
                                             c);
              }, "apikey:usage:" + tag + ":hour:1715950800"),
              "apikey:usage:" + tag + ":hour:1715950800");
    EXPECT_EQ(ak::redis_usage_name("apikey:", h.h, AK_PERIOD_DAY, 1715904000),
              "apikey:usage:" + tag + ":day:1715904000");
    EXPECT_EQ(ak::redis_usage_name("apikey:", h.h, AK_PERIOD_MONTH,
                                   1714521600),
              "apikey:usage:" + tag + ":month:1714521600");

    EXPECT_EQ(ak::redis_usage_name("", h.h, AK_PERIOD_HOUR, 0),
              "usage:{" + kHex + "}:hour:0");
    EXPECT_EQ(ak::redis_usage_name("x", h.h, AK_PERIOD_HOUR, -3600),
              "xusage:{x" + kHex + "}:hour:-3600");

    /* the longest: a prefix of AK_REDIS_PREFIX_MAX (twice) and INT64_MIN */
    std::string p(AK_REDIS_PREFIX_MAX, 'p');
    std::string want = p + "usage:{" + p + kHex
                       + "}:month:-9223372036854775808";
    ASSERT_EQ(want.size(), size_t(AK_REDIS_NAME_MAX));
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_usage(p.data(), p.size(), h.h,
                                             AK_PERIOD_MONTH, INT64_MIN, b,
                                             c);
              }, want),
              want);
    EXPECT_EQ(ak::redis_usage_name(p, h.h, AK_PERIOD_MONTH, INT64_MIN), want);
    EXPECT_EQ(ak::redis_usage_name("a", h.h, AK_PERIOD_DAY, INT64_MAX),
              "ausage:{a" + kHex + "}:day:9223372036854775807");

    /* not a quota period */
    char buf[AK_REDIS_NAME_MAX];
    for (uint8_t per : { (uint8_t) AK_PERIOD_NONE, (uint8_t) AK_PERIOD_SECOND,
                         (uint8_t) AK_PERIOD_MINUTE, (uint8_t) 6 }) {
        EXPECT_EQ(ak_redis_name_usage("apikey:", 7, h.h, per, 0, buf,
                                      sizeof(buf)),
                  0u);
        EXPECT_EQ(ak::redis_usage_name("apikey:", h.h, per, 0), "");
    }
    EXPECT_EQ(ak_redis_name_usage("apikey:", 7, nullptr, AK_PERIOD_HOUR, 0,
                                  buf, sizeof(buf)),
              0u);
}

TEST(RedisNames, Rate)
{
    Hash h;

    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_rate("apikey:", 7, h.h, b, c);
              }, "apikey:rate:{apikey:" + kHex + "}"),
              "apikey:rate:{apikey:" + kHex + "}");
    EXPECT_EQ(ak::redis_rate_name("", h.h), "rate:{" + kHex + "}");
    EXPECT_EQ(ak::redis_rate_name("a:b:", h.h), "a:b:rate:{a:b:" + kHex + "}");

    std::string p(AK_REDIS_PREFIX_MAX, 'p');
    EXPECT_EQ(ak::redis_rate_name(p, h.h), p + "rate:{" + p + kHex + "}");

    char buf[AK_REDIS_NAME_MAX];
    EXPECT_EQ(ak_redis_name_rate("apikey:", 7, nullptr, buf, sizeof(buf)),
              0u);
    EXPECT_EQ(ak_redis_name_rate(nullptr, 7, h.h, buf, sizeof(buf)), 0u);
}

/* a prefix holding a brace would move the hash tag: refused everywhere */
TEST(RedisNames, PrefixWithBraces)
{
    Hash h;
    char buf[AK_REDIS_NAME_MAX];

    EXPECT_EQ(ak_redis_prefix_check("apikey:", 7), 0);
    EXPECT_EQ(ak_redis_prefix_check("", 0), 0);
    EXPECT_EQ(ak_redis_prefix_check(nullptr, 0), 0);
    EXPECT_EQ(ak_redis_prefix_check(nullptr, 3), -1);
    EXPECT_TRUE(ak::redis_prefix_valid("a*b?[c]:"));

    const std::string bads[] = { "{", "}", "a{b", "a}b", "ak:{x}:", "}{",
                                 std::string("a\0{", 4) };
    for (const std::string &bad : bads) {
        EXPECT_EQ(ak_redis_prefix_check(bad.data(), bad.size()), -1) << bad;
        EXPECT_FALSE(ak::redis_prefix_valid(bad)) << bad;
        EXPECT_EQ(ak_redis_name_usage(bad.data(), bad.size(), h.h,
                                      AK_PERIOD_DAY, 0, buf, sizeof(buf)),
                  0u) << bad;
        EXPECT_EQ(ak_redis_name_rate(bad.data(), bad.size(), h.h, buf,
                                     sizeof(buf)),
                  0u) << bad;
        EXPECT_EQ(ak::redis_usage_name(bad, h.h, AK_PERIOD_DAY, 0), "");
        EXPECT_EQ(ak::redis_rate_name(bad, h.h), "");
    }
}

/*
 * Redis Cluster: the counters and the rate state hash to the slot of the
 * record's name (their tag is that name), for many hashes and prefixes
 */
TEST(RedisNames, SameSlotAsRecord)
{
    unsigned char hash[AK_HASH_LEN];
    unsigned slots_seen[4] = { 0, 0, 0, 0 };

    for (int k = 0; k < 200; k++) {
        for (size_t i = 0; i < AK_HASH_LEN; i++) {
            hash[i] = static_cast<unsigned char>(k * 31 + i * 7 + (k >> 3));
        }

        for (const char *prefix : { "apikey:", "", "svc.a/", "p*" }) {
            std::string rec = ak::redis_record_name(prefix, hash);
            unsigned slot = apikeyctl::key_slot(rec);

            /* the record itself has no tag: its slot is of its whole
             * name, which is the tag of the others */
            EXPECT_EQ(slot,
                      apikeyctl::crc16_xmodem(rec.data(), rec.size()) & 16383);

            for (uint8_t per : { (uint8_t) AK_PERIOD_HOUR,
                                 (uint8_t) AK_PERIOD_DAY,
                                 (uint8_t) AK_PERIOD_MONTH }) {
                std::string u = ak::redis_usage_name(prefix, hash, per,
                                                     1715904000 + k);
                ASSERT_FALSE(u.empty());
                EXPECT_EQ(apikeyctl::key_slot(u), slot) << u;
            }

            std::string r = ak::redis_rate_name(prefix, hash);
            EXPECT_EQ(apikeyctl::key_slot(r), slot) << r;
        }
        slots_seen[apikeyctl::key_slot(ak::redis_record_name("apikey:",
                                                             hash)) >> 12]++;
    }

    /* and the records spread over the slot space (not one constant) */
    for (unsigned q : slots_seen) {
        EXPECT_GT(q, 0u);
    }
}

/* the slot function itself: Redis's documented example values */
TEST(RedisNames, KeySlotKnownValues)
{
    EXPECT_EQ(apikeyctl::crc16_xmodem("123456789", 9), 0x31C3);
    EXPECT_EQ(apikeyctl::key_slot("foo"), 12182u);
    EXPECT_EQ(apikeyctl::key_slot("{user1000}.following"),
              apikeyctl::key_slot("user1000"));
}

TEST(RedisNames, KeyspaceAndPatterns)
{
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_keyspace(0, "apikey:", 7, b, c);
              }, "__keyspace@0__:apikey:"),
              "__keyspace@0__:apikey:");
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_keyspace(15, "", 0, b, c);
              }, "__keyspace@15__:"),
              "__keyspace@15__:");

    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_pattern_records("apikey:", 7, b, c);
              }, "apikey:*"),
              "apikey:*");
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_pattern_records("a*b?[c]\\:", 9, b, c);
              }, "a\\*b\\?\\[c\\]\\\\:*"),
              "a\\*b\\?\\[c\\]\\\\:*");
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_pattern_keyspace(3, "k*:", 3, b, c);
              }, "__keyspace@3__:k\\*:*"),
              "__keyspace@3__:k\\*:*");
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_pattern_records("", 0, b, c);
              }, "*"),
              "*");

    EXPECT_EQ(ak::redis_records_pattern("apikey:"), "apikey:*");
    EXPECT_EQ(ak::redis_records_pattern("****"), "\\*\\*\\*\\**");
}

TEST(RedisNames, ParseRecord)
{
    Hash h;
    unsigned char out[AK_HASH_LEN];
    std::string name = "apikey:" + kHex;

    ASSERT_EQ(ak_redis_name_parse_record("apikey:", 7, name.data(),
                                         name.size(), out),
              0);
    EXPECT_EQ(std::memcmp(out, h.h, AK_HASH_LEN), 0);
    EXPECT_TRUE(ak::redis_parse_record_name("apikey:", name, out));
    EXPECT_TRUE(ak::redis_parse_record_name("", kHex, out));

    /* round trip with the builder */
    char buf[AK_REDIS_NAME_MAX];
    size_t n = ak_redis_name_record("p", 1, h.h, buf, sizeof(buf));
    EXPECT_TRUE(ak::redis_parse_record_name("p", std::string(buf, n), out));

    /* not records: ids, counters, other prefixes, uppercase, lengths */
    std::string upper = kHex;
    upper[10] = 'A';
    for (const std::string &bad : {
             std::string("apikey:id:") + "x",
             "apikey:usage:" + kHex + ":hour:0",
             "apikey:usage:{apikey:" + kHex + "}:hour:0",
             "apikey:rate:{apikey:" + kHex + "}",
             "apikeY:" + kHex,
             "apikey:" + upper,
             "apikey:" + kHex.substr(1),
             "apikey:" + kHex + "0",
             "apikey:" + kHex.substr(0, 63) + "g",
             std::string("apikey:"),
             kHex,
         })
    {
        EXPECT_FALSE(ak::redis_parse_record_name("apikey:", bad, out)) << bad;
    }
    EXPECT_EQ(ak_redis_name_parse_record("apikey:", 7, nullptr, 71, out), -1);
    EXPECT_EQ(ak_redis_name_parse_record("apikey:", 7, name.data(),
                                         name.size(), nullptr),
              -1);
}

TEST(RedisNames, AuditAndMarker)
{
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_audit("apikey:", 7, b, c);
              }, "apikey:audit"),
              "apikey:audit");
    EXPECT_EQ(check_caps([&](char *b, size_t c) {
                  return ak_redis_name_marker("apikey:", 7, b, c);
              }, "apikey:meta"),
              "apikey:meta");
    EXPECT_EQ(ak::redis_audit_name("p:"), "p:audit");
    EXPECT_EQ(ak::redis_marker_name(""), "meta");
    EXPECT_EQ(ak::redis_marker_name(std::string(300, 'p')),
              std::string(300, 'p') + "meta");

    /* neither is a record's name */
    unsigned char h[AK_HASH_LEN];
    EXPECT_FALSE(ak::redis_parse_record_name("apikey:", "apikey:audit", h));
    EXPECT_FALSE(ak::redis_parse_record_name("apikey:", "apikey:meta", h));
}
