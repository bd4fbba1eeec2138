/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The Redis Cluster slot of a key name (ak_redis_slot), as redis-server
 * 7.0's CLUSTER KEYSLOT says, hash tags included.
 */

#include <gtest/gtest.h>

#include <cstring>

#include "ak_core.h"

namespace {

unsigned slot(const char *s)
{
    return ak_redis_slot(s, std::strlen(s));
}

TEST(Slot, MatchesClusterKeyslot)
{
    /* redis-cli cluster keyslot KEY on redis-server 7.0 */
    EXPECT_EQ(slot("foo"), 12182u);
    EXPECT_EQ(slot("bar"), 5061u);
    EXPECT_EQ(slot(""), 0u);
    EXPECT_EQ(slot("123456789"), 12739u);
    EXPECT_EQ(ak_redis_crc16("123456789", 9), 0x31c3);
}

TEST(Slot, HashTag)
{
    EXPECT_EQ(slot("{user1000}.following"), 3443u);
    EXPECT_EQ(slot("{user1000}.followers"), 3443u);
    /* the part of the first '{' to the next '}' */
    EXPECT_EQ(slot("foo{bar}{zap}"), slot("bar"));
    EXPECT_EQ(slot("foo{{bar}}zap"), slot("{bar"));
    /* an empty tag, or no '}': the whole name */
    EXPECT_EQ(slot("foo{}{bar}"), ak_redis_crc16("foo{}{bar}", 10) & 16383u);
    EXPECT_EQ(slot("foo{bar"), ak_redis_crc16("foo{bar", 7) & 16383u);
    /* a record name of the module and the counters tagged with it */
    EXPECT_EQ(slot("apikey:usage:{apikey:00ff}:day:1"), slot("apikey:00ff"));
}

TEST(Slot, BinarySafe)
{
    const char k[] = {'a', '\0', '{', 'b', '}'};
    EXPECT_EQ(ak_redis_slot(k, sizeof(k)), slot("b"));
    EXPECT_LT(ak_redis_slot("\xff\xfe", 2), 16384u);
}

} // namespace
