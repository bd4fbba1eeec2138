/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: keys, hashes and record fields, through the module's core so
 * that the tool and the module agree byte for byte.
 */

#ifndef APIKEYCTL_KEYS_HPP
#define APIKEYCTL_KEYS_HPP

#include <string>
#include <utility>
#include <vector>

#include "ak_core.h"

namespace apikeyctl {

using Field = std::pair<std::string, std::string>;
using Fields = std::vector<Field>;

/* Turns a key into its Redis name: SHA-256 or HMAC-SHA256, lowercase hex. */
class Hasher {
public:
    Hasher(int kind, const std::string &secret);
    ~Hasher();
    Hasher(const Hasher &) = delete;
    Hasher &operator=(const Hasher &) = delete;

    std::string hex(const std::string &key) const;

private:
    ak_hasher_t *h_;
};

/* 1..32 of [A-Za-z0-9_] */
bool key_prefix_valid(const std::string &prefix);

/* The "checksum" key format (any prefix). */
bool key_is_checksum(const std::string &key);

/* The "any" key format: 1..256 printable ASCII characters. */
bool key_is_any(const std::string &key);

/*
 * A new key (ak::generate_key): PREFIX "_" 30 base62 characters from
 * getrandom(2), then 6 base62 characters of the CRC-32 of everything
 * before.  Checked with the module's own checksum test before it is
 * returned.
 */
std::string generate_key(const std::string &prefix);

/* The fields the module reads, in display order. */
const std::vector<std::string> &module_fields();
/* Fields the tool adds for operators (the module ignores them). */
const std::vector<std::string> &tool_fields();
bool is_module_field(const std::string &name);

/*
 * Checks one field's value with the module's rules (an empty value means
 * "absent", except for "id"), plus: no control characters.  Returns "" or
 * the reason, which names the field.
 */
std::string field_problem(const std::string &name, const std::string &value);

/*
 * Checks a whole record with the module's parser (ak_record_build) plus
 * field_problem() for each field.
 * Returns an empty string when the record is fine, else the reason, which
 * names the field.
 */
std::string record_problem(const std::string &hash_hex, const Fields &fields);

/* The record's public id: its "id" field, else the first 12 hex digits. */
std::string record_id(const std::string &hash_hex, const Fields &fields);

/* A field's value, or "" when absent. */
std::string field_value(const Fields &fields, const std::string &name,
                        bool *present = nullptr);

/* Quota window [start, end) for "hour"/"day"/"month" at now. */
bool quota_window(const std::string &period, int64_t now, int64_t *start,
                  int64_t *end);

} // namespace apikeyctl

#endif
