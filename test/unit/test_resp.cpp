/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * HGETALL answers -> record fields (resp.cpp: ak_hgetall_fields), on
 * replies parsed from RESP bytes by hiredis's reader, as the module gets
 * them; then ak_record_build on what it gives.
 */

#include <gtest/gtest.h>

#include <hiredis/hiredis.h>

#include <string>

#include "ak_core.h"

namespace {

/* one reply parsed from raw RESP */
struct Reply {
    redisReply *r = nullptr;

    explicit Reply(const std::string &resp)
    {
        redisReader *rd = redisReaderCreate();
        void *out = nullptr;
        EXPECT_EQ(redisReaderFeed(rd, resp.data(), resp.size()), REDIS_OK);
        EXPECT_EQ(redisReaderGetReply(rd, &out), REDIS_OK);
        EXPECT_NE(out, nullptr) << "incomplete: " << resp;
        r = static_cast<redisReply *>(out);
        redisReaderFree(rd);
    }
    ~Reply() { if (r) freeReplyObject(r); }
    Reply(const Reply &) = delete;
    Reply &operator=(const Reply &) = delete;
};

int shape(const std::string &resp, size_t cap = 32, size_t *pairs = nullptr)
{
    Reply rep(resp);
    ak_str_t f[32], v[32];
    size_t n = 999;
    int rc = ak_hgetall_fields(rep.r, f, v, cap, &n);
    if (pairs) *pairs = n;
    return rc;
}

} // namespace


TEST(Resp, Pairs)
{
    Reply rep("*4\r\n$5\r\nowner\r\n$5\r\nalice\r\n$4\r\nplan\r\n$3\r\npro\r\n");
    ak_str_t f[4], v[4];
    size_t n = 0;

    ASSERT_EQ(ak_hgetall_fields(rep.r, f, v, 4, &n), AK_HGETALL_FIELDS);
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(std::string(f[0].data, f[0].len), "owner");
    EXPECT_EQ(std::string(v[0].data, v[0].len), "alice");
    EXPECT_EQ(std::string(f[1].data, f[1].len), "plan");
    EXPECT_EQ(std::string(v[1].data, v[1].len), "pro");

    /* they point into the reply */
    EXPECT_EQ(f[0].data, rep.r->element[0]->str);

    unsigned char hash[AK_HASH_LEN] = {0};
    unsigned char blob[AK_RECORD_MAX];
    ak_record_err_t err;
    int len = ak_record_build(hash, f, v, n, blob, sizeof(blob), &err);
    ASSERT_GT(len, 0);
    ak_record_t rec;
    ASSERT_EQ(ak_record_view(hash, blob, len, &rec), 0);
    EXPECT_EQ(std::string(rec.owner.data, rec.owner.len), "alice");
}

TEST(Resp, Shapes)
{
    EXPECT_EQ(shape("*0\r\n"), AK_HGETALL_EMPTY);
    /* an empty field name or value is a string too */
    EXPECT_EQ(shape("*2\r\n$0\r\n\r\n$0\r\n\r\n"), AK_HGETALL_FIELDS);

    /* not a hash's answer */
    EXPECT_EQ(shape("$5\r\nhello\r\n"), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(shape("+OK\r\n"), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(shape(":1\r\n"), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(shape("$-1\r\n"), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(shape("*-1\r\n"), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(shape("-ERR x\r\n"), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(shape("*1\r\n$1\r\na\r\n"), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(shape("*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
              AK_HGETALL_NOT_PAIRS);

    /* pairs, but an element is no bulk string */
    EXPECT_EQ(shape("*2\r\n$1\r\na\r\n:1\r\n"), AK_HGETALL_BAD_ELEMENT);
    EXPECT_EQ(shape("*2\r\n+a\r\n$1\r\nb\r\n"), AK_HGETALL_BAD_ELEMENT);
    EXPECT_EQ(shape("*2\r\n$1\r\na\r\n$-1\r\n"), AK_HGETALL_BAD_ELEMENT);
    EXPECT_EQ(shape("*2\r\n$1\r\na\r\n*0\r\n"), AK_HGETALL_BAD_ELEMENT);
    EXPECT_EQ(shape("*2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
              AK_HGETALL_BAD_ELEMENT);
    EXPECT_EQ(shape("*2\r\n$1\r\na\r\n-ERR\r\n"), AK_HGETALL_BAD_ELEMENT);

    /* the bad element is found before the count matters */
    std::string many = "*68\r\n";
    for (int i = 0; i < 67; i++) many += "$1\r\nx\r\n";
    EXPECT_EQ(shape(many + ":1\r\n"), AK_HGETALL_BAD_ELEMENT);

    /* more pairs than room: how many, then with room */
    size_t n = 0;
    EXPECT_EQ(shape(many + "$1\r\ny\r\n", 32, &n), AK_HGETALL_TOO_MANY);
    EXPECT_EQ(n, 34u);

    Reply rep(many + "$1\r\ny\r\n");
    ak_str_t f[34], v[34];
    EXPECT_EQ(ak_hgetall_fields(rep.r, f, v, 34, &n), AK_HGETALL_FIELDS);
    EXPECT_EQ(std::string(v[33].data, v[33].len), "y");
    EXPECT_EQ(ak_hgetall_fields(rep.r, nullptr, nullptr, 0, &n),
              AK_HGETALL_TOO_MANY);

    EXPECT_EQ(ak_hgetall_fields(nullptr, f, v, 34, &n), AK_HGETALL_NOT_PAIRS);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ak_hgetall_fields(rep.r, f, v, 34, nullptr),
              AK_HGETALL_NOT_PAIRS);
}
