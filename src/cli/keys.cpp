/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: keys, hashes and record fields, through the module's core.
 */

#include "keys.hpp"

#include "util.hpp"

#include "akcore.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include <sys/random.h>

namespace apikeyctl {

Hasher::Hasher(int kind, const std::string &secret)
{
    char err[AK_ERR_LEN];
    err[0] = '\0';

    h_ = ak_hasher_new(kind,
                       reinterpret_cast<const unsigned char *>(secret.data()),
                       secret.size(), err, sizeof(err));
    if (h_ == nullptr) {
        fail(kExitUsage, std::string("--hash: ") + err);
    }
}


Hasher::~Hasher()
{
    ak_hasher_free(h_);
}


std::string Hasher::hex(const std::string &key) const
{
    std::string hex = ak::hash_hex(h_, key);
    if (hex.size() != AK_HASH_HEX_LEN) {
        fail(kExitInternal, "cannot hash the key");
    }
    return hex;
}


bool key_prefix_valid(const std::string &prefix)
{
    return ak::key_prefix_valid(prefix);
}


bool key_is_checksum(const std::string &key)
{
    return ak::key_check_checksum(key);
}


bool key_is_any(const std::string &key)
{
    return ak::key_check_any(key);
}


static bool random_bytes(unsigned char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        got += static_cast<size_t>(n);
    }
    return true;
}


std::string generate_key(const std::string &prefix)
{
    if (!key_prefix_valid(prefix)) {
        usage_error("--key-prefix " + quoted(prefix)
                    + ": expected 1 to 32 of A-Z a-z 0-9 _");
    }

    int random_errno = 0;
    std::string key;

    bool ok = ak::generate_key(prefix,
        [&random_errno](unsigned char *buf, size_t len) {
            if (!random_bytes(buf, len)) {
                random_errno = errno;
                return false;
            }
            return true;
        },
        &key);

    if (!ok) {
        wipe(key);
        fail(kExitInternal, std::string("cannot make a key: getrandom: ")
                            + (random_errno ? std::strerror(random_errno)
                                            : "no usable random bytes"));
    }

    /* the module's own test: a key we print must pass "api_key_format
     * checksum prefix=PREFIX" */
    if (!ak::key_check_checksum(key, prefix)) {
        wipe(key);
        fail(kExitInternal, "internal error: a generated key fails the "
                            "module's checksum test");
    }

    return key;
}


const std::vector<std::string> &module_fields()
{
    static const std::vector<std::string> f(std::begin(ak::kRecordFields),
                                            std::end(ak::kRecordFields));
    return f;
}


const std::vector<std::string> &tool_fields()
{
    static const std::vector<std::string> f = {
        "created_at", "key_prefix", "rotated_from", "rotated_to",
        "revoked_at", "revoked_by", "reason", "imported_at",
    };
    return f;
}


bool is_module_field(const std::string &name)
{
    const auto &f = module_fields();
    return std::find(f.begin(), f.end(), name) != f.end();
}


std::string field_value(const Fields &fields, const std::string &name,
                        bool *present)
{
    for (const Field &f : fields) {
        if (f.first == name) {
            if (present) {
                *present = true;
            }
            return f.second;
        }
    }
    if (present) {
        *present = false;
    }
    return std::string();
}


std::string record_id(const std::string &hash_hex, const Fields &fields)
{
    bool present;
    std::string id = field_value(fields, "id", &present);
    if (present && !id.empty()) {
        return id;
    }
    return hash_hex.substr(0, AK_ID_DEFAULT_LEN);
}


std::string field_problem(const std::string &name, const std::string &value)
{
    if (has_control_chars(value)) {
        return "field \"" + printable(name) + "\": control characters are "
               "not allowed";
    }

    if (name == "id" && value.empty()) {
        return "field \"id\": expected 1 to 64 of A-Z a-z 0-9 . _ : -";
    }

    std::string err;
    if (!ak::validate_field(name, value, &err)) {
        return err.empty() ? "field \"" + name + "\": invalid" : err;
    }

    return std::string();
}


std::string record_problem(const std::string &hash_hex, const Fields &fields)
{
    for (const Field &f : fields) {
        std::string why = field_problem(f.first, f.second);
        if (!why.empty()) {
            return why;
        }
    }

    /* the whole record, as the module builds it (size limit included) */

    unsigned char hash[AK_HASH_LEN];
    if (ak_hex_decode_hash(hash_hex.data(), hash_hex.size(), hash) != 0) {
        return "internal error: bad hash";
    }

    std::vector<ak_str_t> names, values;
    names.reserve(fields.size());
    values.reserve(fields.size());

    for (const Field &f : fields) {
        names.push_back({f.first.data(), f.first.size()});
        values.push_back({f.second.data(), f.second.size()});
    }

    std::vector<unsigned char> blob(AK_RECORD_MAX);
    ak_record_err_t err;
    std::memset(&err, 0, sizeof(err));

    int n = ak_record_build(hash, names.data(), values.data(), fields.size(),
                            blob.data(), blob.size(), &err);
    if (n < 0) {
        err.msg[sizeof(err.msg) - 1] = '\0';
        std::string msg = err.msg;
        if (msg.empty()) {
            msg = "the record is larger than the module accepts ("
                  + std::to_string(AK_RECORD_MAX) + " bytes once stored)";
        }
        return msg;
    }

    return std::string();
}


bool quota_window(const std::string &period, int64_t now, int64_t *start,
                  int64_t *end)
{
    uint8_t p;

    if (period == "hour") {
        p = AK_PERIOD_HOUR;
    } else if (period == "day") {
        p = AK_PERIOD_DAY;
    } else if (period == "month") {
        p = AK_PERIOD_MONTH;
    } else {
        return false;
    }

    return ak_quota_window(p, now, start, end) == 0;
}

} // namespace apikeyctl
