/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_names: the Redis name builders (names.cpp).  Each writes into a
 * heap buffer of exactly cap bytes (a write past it is an ASan report),
 * returns 0 or the length of what a reference builds, and the record name
 * parses back: parse(build(prefix, hash)) == hash; a name that parses
 * builds back to itself.
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "fuzz_util.h"

#include <string>

namespace {

std::string hex(const unsigned char *h)
{
    static const char d[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < AK_HASH_LEN; i++) {
        s.push_back(d[h[i] >> 4]);
        s.push_back(d[h[i] & 15]);
    }
    return s;
}

std::string escaped(const std::string &p)
{
    std::string s;
    for (char c : p) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') {
            s.push_back('\\');
        }
        s.push_back(c);
    }
    return s + "*";
}

/* calls build(buf, cap) with a buffer of exactly cap bytes; checks the
 * answer against want (0 when it does not fit, or want is empty) */
template <typename Build>
void check(size_t cap, const std::string &want, Build build)
{
    char *buf = static_cast<char *>(std::malloc(cap ? cap : 1));
    size_t n = build(cap ? buf : nullptr, cap);
    if (want.empty() || want.size() > cap) {
        FUZZ_CHECK(n == 0);
    } else {
        FUZZ_CHECK(n == want.size());
        FUZZ_CHECK(std::memcmp(buf, want.data(), n) == 0);
    }
    std::free(buf);
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);

    uint8_t mode = in.u8();
    std::string prefix = (mode & 0x80) ? std::string("apikey:") : in.str16(600);
    unsigned char hash[AK_HASH_LEN];
    for (auto &b : hash) b = in.u8();
    std::string id = in.str8();
    uint8_t period = in.u8() % 8;
    int64_t start = static_cast<int64_t>(in.u64());
    int64_t db = static_cast<int64_t>(in.u64());
    if (mode & 0x40) db %= 16;
    size_t cap = (mode & 0x20) ? AK_REDIS_NAME_MAX * 2 : in.u16() % 1400;

    fuzz::Exact p(prefix), i(id);
    std::string h = hex(hash);

    check(cap, prefix + h, [&](char *b, size_t c) {
        return ak_redis_name_record(p.c(), p.len, hash, b, c);
    });
    check(cap, prefix + "id:" + id, [&](char *b, size_t c) {
        return ak_redis_name_id(p.c(), p.len, i.c(), i.len, b, c);
    });

    const char *pn = period == AK_PERIOD_HOUR ? "hour"
                     : period == AK_PERIOD_DAY ? "day"
                     : period == AK_PERIOD_MONTH ? "month" : nullptr;
    /* the tagged names: none for a prefix with a brace */
    const bool braces = prefix.find_first_of("{}") != std::string::npos;
    FUZZ_CHECK(ak_redis_prefix_check(p.c(), p.len) == (braces ? -1 : 0));
    check(cap, pn && !braces ? prefix + "usage:{" + prefix + h + "}:" + pn
                                   + ":" + std::to_string(start)
                             : std::string(),
          [&](char *b, size_t c) {
              return ak_redis_name_usage(p.c(), p.len, hash, period, start,
                                         b, c);
          });
    check(cap, !braces ? prefix + "rate:{" + prefix + h + "}" : std::string(),
          [&](char *b, size_t c) {
              return ak_redis_name_rate(p.c(), p.len, hash, b, c);
          });

    std::string ks = "__keyspace@" + std::to_string(db) + "__:";
    check(cap, ks + prefix, [&](char *b, size_t c) {
        return ak_redis_name_keyspace(db, p.c(), p.len, b, c);
    });
    check(cap, escaped(prefix), [&](char *b, size_t c) {
        return ak_redis_pattern_records(p.c(), p.len, b, c);
    });
    check(cap, ks + escaped(prefix), [&](char *b, size_t c) {
        return ak_redis_pattern_keyspace(db, p.c(), p.len, b, c);
    });

    /* a built record name parses back to its hash */
    if (prefix.size() <= AK_REDIS_PREFIX_MAX) {
        char buf[AK_REDIS_NAME_MAX];
        size_t n = ak_redis_name_record(p.c(), p.len, hash, buf, sizeof(buf));
        FUZZ_CHECK(n == prefix.size() + AK_HASH_HEX_LEN);
        unsigned char back[AK_HASH_LEN];
        FUZZ_CHECK(ak_redis_name_parse_record(p.c(), p.len, buf, n, back) == 0);
        FUZZ_CHECK(std::memcmp(back, hash, AK_HASH_LEN) == 0);
        FUZZ_CHECK(ak::redis_record_name(prefix, hash) == std::string(buf, n));
        if (pn && !braces) {
            FUZZ_CHECK(ak::redis_usage_name(prefix, hash, period, start)
                       == prefix + "usage:{" + prefix + h + "}:" + pn + ":"
                              + std::to_string(start));
        }
        if (id.size() <= AK_ID_MAX_LEN) {
            FUZZ_CHECK(ak::redis_id_name(prefix, id) == prefix + "id:" + id);
        }
        FUZZ_CHECK(ak::redis_records_pattern(prefix) == escaped(prefix));
    }

    /* any name: parses only as prefix + 64 lowercase hex, then builds back */
    std::string name = in.rest();
    fuzz::Exact nm(name);
    unsigned char got[AK_HASH_LEN];
    int rc = ak_redis_name_parse_record(p.c(), p.len, nm.c(), nm.len, got);
    bool want = name.size() == prefix.size() + AK_HASH_HEX_LEN
                && name.compare(0, prefix.size(), prefix) == 0;
    for (size_t k = prefix.size(); want && k < name.size(); k++) {
        char c = name[k];
        want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    FUZZ_CHECK(rc == (want ? 0 : -1));
    FUZZ_CHECK(ak::redis_parse_record_name(prefix, name, got) == want);
    if (want) {
        FUZZ_CHECK(prefix + hex(got) == name);
    }

    return 0;
}
