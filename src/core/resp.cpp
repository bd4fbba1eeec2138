/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * resp.cpp: the answer to HGETALL, as hiredis's reader (redisReader) hands
 * it over, turned into the field/value pairs ak_record_build takes.  Only
 * hiredis's reply structure is used (no hiredis function): the core links
 * without the library.
 */

#include "ak_core.h"

#include <hiredis/hiredis.h>

extern "C" int
ak_hgetall_fields(const struct redisReply *reply, ak_str_t *fields,
    ak_str_t *values, size_t cap, size_t *n) noexcept
{
    if (n == nullptr) {
        return AK_HGETALL_NOT_PAIRS;
    }

    *n = 0;

    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY
        || reply->elements % 2 != 0
        || (reply->elements > 0 && reply->element == nullptr))
    {
        return AK_HGETALL_NOT_PAIRS;
    }

    if (reply->elements == 0) {
        return AK_HGETALL_EMPTY;
    }

    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];

        if (e == nullptr || e->type != REDIS_REPLY_STRING
            || (e->str == nullptr && e->len > 0))
        {
            return AK_HGETALL_BAD_ELEMENT;
        }
    }

    size_t pairs = reply->elements / 2;

    *n = pairs;

    if (pairs > cap || fields == nullptr || values == nullptr) {
        return AK_HGETALL_TOO_MANY;
    }

    for (size_t i = 0; i < pairs; i++) {
        const redisReply *f = reply->element[2 * i];
        const redisReply *v = reply->element[2 * i + 1];

        fields[i].data = f->str;
        fields[i].len = f->len;
        values[i].data = v->str;
        values[i].len = v->len;
    }

    return AK_HGETALL_FIELDS;
}
