/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_resp: what Redis answers to HGETALL -> a record.  The bytes are
 * parsed by hiredis's reader (redisReader, as the module's connection
 * does), fed in two pieces (the first byte of the input says where to
 * cut, as answers arrive in several reads); every reply it gives goes
 * through the module's conversion (ak_hgetall_fields, then
 * ak_record_build into a heap buffer of exactly AK_RECORD_MAX bytes, then
 * ak_record_view), as lookup.c does.
 *
 * Oracles:
 * - ak_hgetall_fields's verdict is the reference's, from the reply's
 *   shape alone: an array of an even number of bulk strings (fields),
 *   empty (no record), more pairs than room (asked again with room), an
 *   element of another type, or no hash's answer at all;
 * - only a hash-shaped reply gives fields, and they are exactly the
 *   reply's strings, in order: never a record from anything else;
 * - a record that builds views back (ak_record_view == 0), its blob within
 *   AK_RECORD_MAX; one that does not names a NUL-terminated id.
 *
 * hiredis 0.14's reader allocates the element table of an array from its
 * header ("*N") before any element arrives (up to its own limit of about
 * 2^31 elements): an input with a header above 65536 elements is skipped,
 * so that what is fuzzed is the conversion, not the allocator's limit.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <hiredis/hiredis.h>

#include <cstring>

namespace {

constexpr size_t kCap = 32;            /* what lookup.c has on its stack */
constexpr long long kMaxElements = 65536;

/* an array header "*N" with N > kMaxElements anywhere in the input */
FUZZ_ORACLE bool huge_array(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*') continue;
        long long v = 0;
        size_t j = i + 1;
        if (j < size && (data[j] == '-' || data[j] == '+')) j++;
        for (; j < size && data[j] >= '0' && data[j] <= '9'; j++) {
            v = v * 10 + (data[j] - '0');
            if (v > kMaxElements) return true;
        }
    }
    return false;
}

FUZZ_ORACLE int ref_shape(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        return AK_HGETALL_NOT_PAIRS;
    }
    if (r->elements == 0) {
        return AK_HGETALL_EMPTY;
    }
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            return AK_HGETALL_BAD_ELEMENT;
        }
    }
    return r->elements / 2 > kCap ? AK_HGETALL_TOO_MANY : AK_HGETALL_FIELDS;
}

void check_reply(const redisReply *r, const unsigned char *hash,
    unsigned char *blob)
{
    static ak_str_t f[kCap], v[kCap];
    static ak_str_t *bf, *bv;
    static size_t bcap;

    ak_str_t *fields = f, *values = v;
    size_t n = 12345;
    int want = ref_shape(r);
    int got = ak_hgetall_fields(r, fields, values, kCap, &n);

    FUZZ_CHECK(got == want);

    if (got == AK_HGETALL_TOO_MANY) {
        FUZZ_CHECK(n == r->elements / 2);
        if (n > bcap) {
            delete[] bf;
            delete[] bv;
            bcap = n;
            bf = new ak_str_t[bcap];
            bv = new ak_str_t[bcap];
        }
        fields = bf;
        values = bv;
        got = ak_hgetall_fields(r, fields, values, n, &n);
        FUZZ_CHECK(got == AK_HGETALL_FIELDS);
    }

    if (got != AK_HGETALL_FIELDS) {
        FUZZ_CHECK(got == AK_HGETALL_EMPTY ? n == 0 : true);
        return;
    }

    /* hash-shaped, and the pairs are the reply's strings */
    FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY && n * 2 == r->elements && n > 0);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(fields[i].data == r->element[2 * i]->str);
        FUZZ_CHECK(fields[i].len == r->element[2 * i]->len);
        FUZZ_CHECK(values[i].data == r->element[2 * i + 1]->str);
        FUZZ_CHECK(values[i].len == r->element[2 * i + 1]->len);
    }

    ak_record_err_t err;
    int len = ak_record_build(hash, fields, values, n, blob, AK_RECORD_MAX,
                              &err);

    if (len < 0) {
        FUZZ_CHECK(std::memchr(err.id, '\0', sizeof(err.id)) != nullptr);
        FUZZ_CHECK(std::memchr(err.msg, '\0', sizeof(err.msg)) != nullptr);
        return;
    }

    FUZZ_CHECK(len > 0 && len <= AK_RECORD_MAX);

    ak_record_t rec;
    FUZZ_CHECK(ak_record_view(hash, blob, static_cast<size_t>(len), &rec) == 0);
    FUZZ_CHECK(rec.status <= AK_STATUS_DISABLED);
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned char *blob = static_cast<unsigned char *>(
        std::malloc(AK_RECORD_MAX));    /* exactly: ASan sees a byte more */
    static const unsigned char hash[AK_HASH_LEN] = {0xab, 0xcd, 0x01};

    if (size == 0 || huge_array(data + 1, size - 1)) {
        return 0;
    }

    size_t cut = data[0] % size;
    const char *p = reinterpret_cast<const char *>(data + 1);
    size_t len = size - 1;
    if (cut > len) cut = len;

    redisReader *rd = redisReaderCreate();
    FUZZ_CHECK(rd != nullptr);

    const char *pieces[2] = {p, p + cut};
    size_t lens[2] = {cut, len - cut};
    bool failed = false;

    for (int k = 0; k < 2 && !failed; k++) {
        if (lens[k] && redisReaderFeed(rd, pieces[k], lens[k]) != REDIS_OK) {
            break;
        }

        for (;;) {
            void *reply = nullptr;

            if (redisReaderGetReply(rd, &reply) != REDIS_OK) {
                failed = true;          /* a protocol error: the connection
                                           would be closed */
                break;
            }
            if (reply == nullptr) {
                break;                  /* needs more bytes */
            }

            check_reply(static_cast<redisReply *>(reply), hash, blob);
            freeReplyObject(reply);
        }
    }

    redisReaderFree(rd);
    return 0;
}
