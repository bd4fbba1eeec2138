/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * akcore.hpp: the C++ API of the module's core for the apikeyctl CLI.
 *
 * The CLI and the module share this code, so they can never disagree on a
 * key's format, its hash or whether a record field is valid.  The nginx
 * glue uses ak_core.h only.
 */

#ifndef AKCORE_HPP
#define AKCORE_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "ak_core.h"

namespace ak {

/* ---- key format ------------------------------------------------------ */

inline constexpr size_t kKeyPrefixMax = 32;     /* [A-Za-z0-9_]{1,32} */
inline constexpr size_t kKeyRandomChars = 30;   /* ~178 random bits */
inline constexpr size_t kKeyChecksumChars = 6;  /* base62 of the CRC-32 */

/* "0-9A-Za-z" */
inline constexpr char kBase62Alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/*
 * CRC-32 (IEEE 802.3, reflected 0xEDB88320), same values as zlib's
 * crc32(crc, data, len): start with crc = 0, feed the previous result to
 * continue.  crc32("123456789") == 0xCBF43926.
 */
uint32_t crc32(const void *data, size_t len, uint32_t crc = 0) noexcept;

/*
 * value in exactly 'width' base62 digits, most significant first, padded
 * with '0'.  false (out untouched) when value >= 62^width.
 */
bool base62_encode(uint64_t value, char *out, size_t width) noexcept;

/* 1..10 base62 digits to a value.  false on a bad digit or length. */
bool base62_decode(const char *in, size_t len, uint64_t *value) noexcept;

/*
 * Fills buf[0..len) with random bytes (e.g. from getrandom(2)); returns
 * false on failure.
 */
using RandomSource = std::function<bool(unsigned char *buf, size_t len)>;

/*
 * A new key: prefix "_" + 30 base62 characters + 6 base62 characters of the
 * CRC-32 of everything before them.  Random characters by rejection
 * sampling: bytes >= 248 are discarded, b % 62 otherwise.  The random bytes
 * are wiped after use.  false (key cleared) when the prefix is invalid, the
 * source fails, or it gives no usable bytes for too long.
 */
bool generate_key(std::string_view prefix, const RandomSource &random,
    std::string *key);

/* Wrappers of ak_key_prefix_valid / ak_key_check_any /
 * ak_key_check_checksum (an empty prefix accepts any prefix). */
bool key_prefix_valid(std::string_view prefix) noexcept;
bool key_check_any(std::string_view key) noexcept;
bool key_check_checksum(std::string_view key,
    std::string_view prefix = std::string_view()) noexcept;


/* ---- record fields --------------------------------------------------- */

/* The fields the module reads, in canonical order. */
inline constexpr std::string_view kRecordFields[] = {
    "id", "owner", "plan", "status", "expires_at", "scopes", "ips",
    "referrers", "rate", "burst", "quota", "rate_scope", "identity",
    "alias_until",
};

bool is_record_field(std::string_view name) noexcept;

/*
 * Checks one field's value with exactly the rules of ak_record_build.
 * Returns true when the value is valid, empty (= absent) or the field is
 * not one the module reads.  Otherwise false, and *error (if not null) gets
 * the module's own message, e.g.
 *   field "rate": expected N/s, N/m or N/h
 */
bool validate_field(std::string_view name, std::string_view value,
    std::string *error);


/* ---- hashing --------------------------------------------------------- */

/* Lowercase hex of bytes. */
std::string hex_encode(const unsigned char *data, size_t len);

/* The key's Redis name part: lowercase hex digest with h (from
 * ak_hasher_new); empty string on error. */
std::string hash_hex(ak_hasher_t *h, std::string_view key);

/* The default public id of a hash: its first 12 hex digits. */
std::string default_id(const unsigned char hash[AK_HASH_LEN]);


/* ---- Redis names (ak_core.h: ak_redis_name_*) ------------------------ */

/* {prefix}{hex of hash} */
std::string redis_record_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN]);

/* {prefix}id:{id} */
std::string redis_id_name(std::string_view prefix, std::string_view id);

/* {prefix}usage:{{prefix}{hex}}:{hour|day|month}:{window_start}; empty
 * for a period other than AK_PERIOD_HOUR, _DAY or _MONTH, or a prefix with
 * '{' or '}' */
std::string redis_usage_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN], uint8_t period,
    int64_t window_start);

/* {prefix}rate:{{prefix}{hex}}; empty for a prefix with '{' or '}' */
std::string redis_rate_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN]);

/* true when prefix may be used: no '{' or '}' (ak_redis_prefix_check) */
bool redis_prefix_valid(std::string_view prefix) noexcept;

/* {prefix}usage:{{prefix}{hex}}:requests:{day} (requests of a UTC day) */
std::string redis_requests_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN], int64_t day);

/* {prefix}usage:{{prefix}{hex}}:last_used (unix seconds) */
std::string redis_last_used_name(std::string_view prefix,
    const unsigned char hash[AK_HASH_LEN]);
/* {prefix}audit: apikeyctl's audit trail (a stream) */
std::string redis_audit_name(std::string_view prefix);

/* {prefix}meta: the hash mode marker (a hash) */
std::string redis_marker_name(std::string_view prefix);

/* SCAN MATCH pattern of every name under prefix: the prefix, glob
 * characters escaped, then "*" */
std::string redis_records_pattern(std::string_view prefix);

/* true when name is a record's name under prefix; hash set */
bool redis_parse_record_name(std::string_view prefix, std::string_view name,
    unsigned char hash[AK_HASH_LEN]) noexcept;

} // namespace ak

#endif
