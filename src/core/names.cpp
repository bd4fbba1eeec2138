/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * names.cpp: the names of everything the module and apikeyctl keep in
 * Redis (records, id lookups, quota counters, cluster-wide rate state,
 * usage counters, the audit stream, the hash mode marker) and the keyspace
 * channels and glob patterns derived from them.  Each name is built in one
 * place, so the module and the CLI can never disagree on one.  The per-key
 * names beside the record carry the record's name as their Redis Cluster
 * hash tag: {prefix}usage:{{prefix}{hex}}:..., so they share the record's
 * slot.
 */

#include "ak_core.h"
#include "akcore.hpp"

#include <cstring>

namespace {

/* the periods of quota counters: AK_PERIOD_HOUR..AK_PERIOD_MONTH */
const char *period_name(uint8_t period) noexcept
{
    switch (period) {
    case AK_PERIOD_HOUR:
        return "hour";
    case AK_PERIOD_DAY:
        return "day";
    case AK_PERIOD_MONTH:
        return "month";
    default:
        return nullptr;
    }
}

/* decimal of v, at most 20 characters; returns the length */
size_t format_int(int64_t v, char out[20]) noexcept
{
    char tmp[20];
    size_t n = 0;
    /* the magnitude as unsigned: INT64_MIN has none as int64_t */
    uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v)
                       : static_cast<uint64_t>(v);

    do {
        tmp[n++] = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u != 0);

    size_t len = 0;
    if (v < 0) {
        out[len++] = '-';
    }
    while (n > 0) {
        out[len++] = tmp[--n];
    }
    return len;
}

/*
 * Writes the concatenation of parts into buf when it fits in cap: sized
 * from the parts first, nothing written when it does not fit.
 */
struct Part {
    const char *data;
    size_t len;
};

size_t concat(const Part *parts, size_t n, char *buf, size_t cap) noexcept
{
    size_t total = 0;

    for (size_t i = 0; i < n; i++) {
        if (parts[i].len > cap - total || (parts[i].len && !parts[i].data)) {
            return 0;
        }
        total += parts[i].len;
    }

    if (buf == nullptr || total == 0) {
        return 0;
    }

    char *p = buf;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].len) {
            std::memcpy(p, parts[i].data, parts[i].len);
            p += parts[i].len;
        }
    }
    return total;
}

bool is_glob_char(char c) noexcept
{
    return c == '*' || c == '?' || c == '[' || c == ']' || c == '\\';
}

/* "__keyspace@{db}__:" into out (at most 34 bytes); the length */
size_t keyspace_head(int64_t db, char out[40]) noexcept
{
    char num[20];
    size_t n = format_int(db, num);
    size_t len = 0;

    std::memcpy(out, "__keyspace@", 11);
    len += 11;
    std::memcpy(out + len, num, n);
    len += n;
    std::memcpy(out + len, "__:", 3);
    return len + 3;
}

/* head, then the prefix escaped, then "*" */
size_t pattern(const char *head, size_t head_len, const char *prefix,
    size_t prefix_len, char *buf, size_t cap) noexcept
{
    if (buf == nullptr || (prefix_len && prefix == nullptr)) {
        return 0;
    }

    size_t need = head_len + 1;
    for (size_t i = 0; i < prefix_len; i++) {
        need += is_glob_char(prefix[i]) ? 2 : 1;
    }

    if (need > cap) {
        return 0;
    }

    char *p = buf;
    if (head_len) {
        std::memcpy(p, head, head_len);
        p += head_len;
    }
    for (size_t i = 0; i < prefix_len; i++) {
        if (is_glob_char(prefix[i])) {
            *p++ = '\\';
        }
        *p++ = prefix[i];
    }
    *p++ = '*';

    return need;
}

bool has_brace(const char *prefix, size_t prefix_len) noexcept
{
    return prefix_len
           && (std::memchr(prefix, '{', prefix_len) != nullptr
               || std::memchr(prefix, '}', prefix_len) != nullptr);
}

bool is_lower_hex(char c) noexcept
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

} // namespace


extern "C" int
ak_redis_prefix_check(const char *prefix, size_t prefix_len) noexcept
{
    if (prefix_len && prefix == nullptr) {
        return -1;
    }

    return has_brace(prefix, prefix_len) ? -1 : 0;
}


extern "C" size_t
ak_redis_name_record(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], char *buf, size_t cap) noexcept
{
    if (hash == nullptr) {
        return 0;
    }

    char hex[AK_HASH_HEX_LEN];
    ak_hex_encode(hash, AK_HASH_LEN, hex);

    const Part parts[] = {
        { prefix, prefix_len },
        { hex, sizeof(hex) },
    };

    return concat(parts, 2, buf, cap);
}


extern "C" size_t
ak_redis_name_id(const char *prefix, size_t prefix_len, const char *id,
    size_t id_len, char *buf, size_t cap) noexcept
{
    const Part parts[] = {
        { prefix, prefix_len },
        { "id:", 3 },
        { id, id_len },
    };

    return concat(parts, 3, buf, cap);
}


extern "C" size_t
ak_redis_name_usage(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], uint8_t period,
    int64_t window_start, char *buf, size_t cap) noexcept
{
    const char *pname = period_name(period);

    if (hash == nullptr || pname == nullptr
        || ak_redis_prefix_check(prefix, prefix_len) != 0)
    {
        return 0;
    }

    char hex[AK_HASH_HEX_LEN];
    ak_hex_encode(hash, AK_HASH_LEN, hex);

    char num[20];
    size_t num_len = format_int(window_start, num);

    const Part parts[] = {
        { prefix, prefix_len },
        { "usage:{", 7 },
        { prefix, prefix_len },
        { hex, sizeof(hex) },
        { "}:", 2 },
        { pname, std::strlen(pname) },
        { ":", 1 },
        { num, num_len },
    };

    return concat(parts, 8, buf, cap);
}


extern "C" size_t
ak_redis_name_rate(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], char *buf, size_t cap) noexcept
{
    if (hash == nullptr || ak_redis_prefix_check(prefix, prefix_len) != 0) {
        return 0;
    }

    char hex[AK_HASH_HEX_LEN];
    ak_hex_encode(hash, AK_HASH_LEN, hex);

    const Part parts[] = {
        { prefix, prefix_len },
        { "rate:{", 6 },
        { prefix, prefix_len },
        { hex, sizeof(hex) },
        { "}", 1 },
    };

    return concat(parts, 5, buf, cap);
}


/* {prefix}usage:{{prefix}{hex}}:tail: the record's name as hash tag */
static size_t
tagged_name(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], const char *tail, size_t tail_len,
    char *buf, size_t cap) noexcept
{
    if (hash == nullptr) {
        return 0;
    }

    char hex[AK_HASH_HEX_LEN];
    ak_hex_encode(hash, AK_HASH_LEN, hex);

    const Part parts[] = {
        { prefix, prefix_len },
        { "usage:{", 7 },
        { prefix, prefix_len },
        { hex, sizeof(hex) },
        { "}:", 2 },
        { tail, tail_len },
    };

    return concat(parts, 6, buf, cap);
}


extern "C" size_t
ak_redis_name_requests(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], int64_t day, char *buf,
    size_t cap) noexcept
{
    char tail[9 + 20];
    char num[20];
    size_t n = format_int(day, num);

    std::memcpy(tail, "requests:", 9);
    std::memcpy(tail + 9, num, n);

    return tagged_name(prefix, prefix_len, hash, tail, 9 + n, buf, cap);
}


extern "C" size_t
ak_redis_name_last_used(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], char *buf, size_t cap) noexcept
{
    return tagged_name(prefix, prefix_len, hash, "last_used", 9, buf, cap);
}


extern "C" size_t
ak_redis_name_keyspace(int64_t db, const char *prefix, size_t prefix_len,
    char *buf, size_t cap) noexcept
{
    char head[40];
    size_t head_len = keyspace_head(db, head);

    const Part parts[] = {
        { head, head_len },
        { prefix, prefix_len },
    };

    return concat(parts, 2, buf, cap);
}


extern "C" size_t
ak_redis_pattern_records(const char *prefix, size_t prefix_len, char *buf,
    size_t cap) noexcept
{
    return pattern(nullptr, 0, prefix, prefix_len, buf, cap);
}


extern "C" size_t
ak_redis_pattern_keyspace(int64_t db, const char *prefix, size_t prefix_len,
    char *buf, size_t cap) noexcept
{
    char head[40];
    size_t head_len = keyspace_head(db, head);

    return pattern(head, head_len, prefix, prefix_len, buf, cap);
}


extern "C" int
ak_redis_name_parse_record(const char *prefix, size_t prefix_len,
    const char *name, size_t len, unsigned char hash[AK_HASH_LEN]) noexcept
{
    if (name == nullptr || hash == nullptr || (prefix_len && !prefix)
        || len != prefix_len + AK_HASH_HEX_LEN
        || (prefix_len && std::memcmp(name, prefix, prefix_len) != 0))
    {
        return -1;
    }

    const char *hex = name + prefix_len;

    for (size_t i = 0; i < AK_HASH_HEX_LEN; i++) {
        if (!is_lower_hex(hex[i])) {
            return -1;
        }
    }

    return ak_hex_decode_hash(hex, AK_HASH_HEX_LEN, hash);
}


extern "C" size_t
ak_redis_name_audit(const char *prefix, size_t prefix_len, char *buf,
    size_t cap) noexcept
{
    const Part parts[] = {
        { prefix, prefix_len },
        { "audit", 5 },
    };

    return concat(parts, 2, buf, cap);
}


extern "C" size_t
ak_redis_name_marker(const char *prefix, size_t prefix_len, char *buf,
    size_t cap) noexcept
{
    const Part parts[] = {
        { prefix, prefix_len },
        { "meta", 4 },
    };

    return concat(parts, 2, buf, cap);
}


/* ---- the CLI's C++ API ----------------------------------------------- */

namespace ak {

namespace {

/* a name of at most extra + AK_REDIS_NAME_FIXED bytes beside the prefix */
template <typename Build>
std::string build_name(std::string_view prefix, size_t extra, Build build)
{
    std::string s(prefix.size() + extra + AK_REDIS_NAME_FIXED, '\0');
    size_t n = build(&s[0], s.size());
    s.resize(n);
    return s;
}

} // namespace


std::string redis_record_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN])
{
    return build_name(prefix, 0, [&](char *buf, size_t cap) {
        return ak_redis_name_record(prefix.data(), prefix.size(), hash, buf,
                                    cap);
    });
}


std::string redis_id_name(std::string_view prefix, std::string_view id)
{
    return build_name(prefix, id.size(), [&](char *buf, size_t cap) {
        return ak_redis_name_id(prefix.data(), prefix.size(), id.data(),
                                id.size(), buf, cap);
    });
}


std::string redis_usage_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN], uint8_t period,
    int64_t window_start)
{
    return build_name(prefix, prefix.size(), [&](char *buf, size_t cap) {
        return ak_redis_name_usage(prefix.data(), prefix.size(), hash, period,
                                   window_start, buf, cap);
    });
}


std::string redis_rate_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN])
{
    return build_name(prefix, prefix.size(), [&](char *buf, size_t cap) {
        return ak_redis_name_rate(prefix.data(), prefix.size(), hash, buf,
                                  cap);
    });
}


std::string redis_audit_name(std::string_view prefix)
{
    return build_name(prefix, 0, [&](char *buf, size_t cap) {
        return ak_redis_name_audit(prefix.data(), prefix.size(), buf, cap);
    });
}


bool redis_prefix_valid(std::string_view prefix) noexcept
{
    return ak_redis_prefix_check(prefix.data(), prefix.size()) == 0;
}


std::string redis_requests_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN], int64_t day)
{
    return build_name(prefix, prefix.size() + AK_REDIS_TAGGED_FIXED,
                      [&](char *buf, size_t cap) {
        return ak_redis_name_requests(prefix.data(), prefix.size(), hash, day,
                                      buf, cap);
    });
}


std::string redis_last_used_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN])
{
    return build_name(prefix, prefix.size() + AK_REDIS_TAGGED_FIXED,
                      [&](char *buf, size_t cap) {
        return ak_redis_name_last_used(prefix.data(), prefix.size(), hash, buf,
                                       cap);
    });
}


std::string redis_marker_name(std::string_view prefix)
{
    return build_name(prefix, 0, [&](char *buf, size_t cap) {
        return ak_redis_name_marker(prefix.data(), prefix.size(), buf, cap);
    });
}


std::string redis_records_pattern(std::string_view prefix)
{
    /* every prefix byte escaped at worst */
    return build_name(prefix, prefix.size(), [&](char *buf, size_t cap) {
        return ak_redis_pattern_records(prefix.data(), prefix.size(), buf,
                                        cap);
    });
}


bool redis_parse_record_name(std::string_view prefix, std::string_view name,
    unsigned char hash[AK_HASH_LEN]) noexcept
{
    return ak_redis_name_parse_record(prefix.data(), prefix.size(),
                                      name.data(), name.size(), hash) == 0;
}

} // namespace ak
