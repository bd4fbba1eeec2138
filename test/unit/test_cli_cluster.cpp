/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl on Sentinel and Cluster: the redis-sentinel:// and
 * redis-cluster:// URL forms, and the cluster key slot (CRC16/XMODEM with
 * hash tags) against values CLUSTER KEYSLOT of redis-server 7.0 gave.
 */

#include <gtest/gtest.h>

#include <string>

#include "slot.hpp"
#include "url.hpp"
#include "util.hpp"

using apikeyctl::Error;
using apikeyctl::RedisUrl;
using apikeyctl::key_slot;
using apikeyctl::parse_redis_url;

namespace {

std::string url_error(const std::string &url)
{
    try {
        parse_redis_url(url);
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), apikeyctl::kExitUsage);
        return e.what();
    }
    return "";
}

} // namespace


TEST(CliSlot, Crc16XmodemCheckValue)
{
    /* the standard check value of CRC-16/XMODEM */
    EXPECT_EQ(apikeyctl::crc16_xmodem("123456789", 9), 0x31C3);
    EXPECT_EQ(apikeyctl::crc16_xmodem("", 0), 0);
}


TEST(CliSlot, MatchesClusterKeyslot)
{
    /* redis-cli cluster keyslot KEY on redis-server 7.0.15 */
    EXPECT_EQ(key_slot("foo"), 12182u);
    EXPECT_EQ(key_slot("bar"), 5061u);
    EXPECT_EQ(key_slot(""), 0u);
    EXPECT_EQ(key_slot("123456789"), 12739u);
    EXPECT_EQ(key_slot("{user1000}.following"), 3443u);
    EXPECT_EQ(key_slot("{user1000}.followers"), 3443u);
    EXPECT_EQ(key_slot("foo{}{bar}"), 8363u);       /* empty tag: whole key */
    EXPECT_EQ(key_slot("foo{{bar}}zap"), 4015u);    /* tag "{bar" */
    EXPECT_EQ(key_slot("foo{bar}{zap}"), 5061u);    /* first tag: "bar" */
    EXPECT_EQ(key_slot("{}"), 15257u);
    EXPECT_EQ(key_slot("apikey:945b3a395876fee0d66d8a02bd1fccac30056f314a3f"
                       "0b4cd8ef1a268f842ba0"), 16362u);
    EXPECT_EQ(key_slot("apikey:id:alice"), 13962u);
    EXPECT_EQ(key_slot("foo{"), key_slot("foo{"));  /* unclosed: whole key */
    EXPECT_NE(key_slot("x{foo"), key_slot("foo"));
}


TEST(CliUrlSentinel, Forms)
{
    RedisUrl u = parse_redis_url(
        "redis-sentinel://127.0.0.1:26379,10.0.0.2:26380,[::1]/mymaster");
    EXPECT_EQ(u.kind, RedisUrl::kSentinel);
    EXPECT_FALSE(u.tls);
    ASSERT_EQ(u.nodes.size(), 3u);
    EXPECT_EQ(u.nodes[0].host, "127.0.0.1");
    EXPECT_EQ(u.nodes[0].port, 26379);
    EXPECT_EQ(u.nodes[1].port, 26380);
    EXPECT_EQ(u.nodes[2].host, "::1");
    EXPECT_EQ(u.nodes[2].port, 26379);          /* the sentinels' default */
    EXPECT_EQ(u.master, "mymaster");
    EXPECT_EQ(u.db, 0);

    u = parse_redis_url("rediss-sentinel://alice:s3cret@h1:1,h2:2/m1/5");
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.user, "alice");
    EXPECT_EQ(u.password, "s3cret");
    EXPECT_EQ(u.master, "m1");
    EXPECT_EQ(u.db, 5);
    EXPECT_EQ(u.where().find("s3cret"), std::string::npos);
    EXPECT_NE(u.where().find("h1:1,h2:2"), std::string::npos);

    /* a node of it: the data nodes' credentials, TLS and database */
    RedisUrl n = u.node("10.1.1.1", 6380);
    EXPECT_EQ(n.kind, RedisUrl::kSingle);
    EXPECT_TRUE(n.tls);
    EXPECT_EQ(n.host, "10.1.1.1");
    EXPECT_EQ(n.port, 6380);
    EXPECT_EQ(n.user, "alice");
    EXPECT_EQ(n.password, "s3cret");
    EXPECT_EQ(n.db, 5);
}


TEST(CliUrlSentinel, Refused)
{
    EXPECT_NE(url_error("redis-sentinel://h1:1,h2:2"), "");        /* no name */
    EXPECT_NE(url_error("redis-sentinel://h1:1,h2:2/"), "");
    EXPECT_NE(url_error("redis-sentinel://h1:1,,h2:2/m"), "");     /* empty host */
    EXPECT_NE(url_error("redis-sentinel://h1:0/m"), "");
    EXPECT_NE(url_error("redis-sentinel://h1:1/m/x"), "");         /* db */
    EXPECT_NE(url_error("redis-sentinel://h1:1/m\x01/0"), "");
    std::string e = url_error("redis-sentinel://u:hunter2@h1:1,h2:x/m");
    EXPECT_NE(e, "");
    EXPECT_EQ(e.find("hunter2"), std::string::npos);
}


TEST(CliUrlCluster, Forms)
{
    RedisUrl u = parse_redis_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,h3");
    EXPECT_EQ(u.kind, RedisUrl::kCluster);
    ASSERT_EQ(u.nodes.size(), 3u);
    EXPECT_EQ(u.nodes[1].port, 7001);
    EXPECT_EQ(u.nodes[2].host, "h3");
    EXPECT_EQ(u.nodes[2].port, 6379);
    EXPECT_EQ(u.master, "");

    u = parse_redis_url("rediss-cluster://bob:pw@[::1]:7000/0");
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.user, "bob");
    EXPECT_EQ(u.nodes[0].host, "::1");
    EXPECT_EQ(u.where().find("pw"), std::string::npos);
}


TEST(CliUrlCluster, Refused)
{
    EXPECT_NE(url_error("redis-cluster://h1:1,h2:2/3"), "");       /* db 0 only */
    EXPECT_NE(url_error("redis-cluster://"), "");
    EXPECT_NE(url_error("redis-cluster://h1:1,"), "");
    EXPECT_NE(url_error("redis-cluster://::1:7000"), "");          /* brackets */
    EXPECT_NE(url_error("redis-clusters://h1:1"), "");
    std::string many = "redis-cluster://h:1";
    for (int i = 0; i < 64; i++) {
        many += ",h:1";
    }
    EXPECT_NE(url_error(many), "");
}
