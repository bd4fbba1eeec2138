/*
 * apikeyctl: keys, hashes and record fields, through the module's core.
 */

#include "keys.hpp"

#include "util.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <openssl/crypto.h>
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
    unsigned char d[AK_HASH_LEN];
    char out[AK_HASH_HEX_LEN];

    if (ak_hasher_digest(h_, reinterpret_cast<const unsigned char *>(
                                 key.data()),
                         key.size(), d)
        != 0)
    {
        fail(kExitInternal, "cannot hash the key");
    }

    ak_hex_encode(d, sizeof(d), out);
    return std::string(out, sizeof(out));
}


bool key_prefix_valid(const std::string &prefix)
{
    return ak_key_prefix_valid(
               reinterpret_cast<const unsigned char *>(prefix.data()),
               prefix.size())
           == 1;
}


bool key_is_checksum(const std::string &key)
{
    return ak_key_check_checksum(
               reinterpret_cast<const unsigned char *>(key.data()),
               key.size(), nullptr, 0)
           == 1;
}


bool key_is_any(const std::string &key)
{
    return ak_key_check_any(
               reinterpret_cast<const unsigned char *>(key.data()),
               key.size())
           == 1;
}


static const char kBase62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static constexpr size_t kRandomChars = 30;
static constexpr size_t kChecksumChars = 6;


static void random_bytes(unsigned char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail(kExitInternal, std::string("getrandom: ")
                                + std::strerror(errno));
        }
        got += static_cast<size_t>(n);
    }
}


/* CRC-32, IEEE 802.3 (reflected 0xEDB88320), as zlib's crc32(). */
static uint32_t crc32_ieee(const unsigned char *p, size_t len)
{
    static uint32_t table[256];
    static bool ready = false;

    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            }
            table[i] = c;
        }
        ready = true;
    }

    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    }
    return crc ^ 0xffffffffu;
}


std::string generate_key(const std::string &prefix)
{
    if (!key_prefix_valid(prefix)) {
        usage_error("--key-prefix " + quoted(prefix)
                    + ": expected 1 to 32 of A-Z a-z 0-9 _");
    }

    std::string key = prefix + "_";
    key.reserve(prefix.size() + 1 + kRandomChars + kChecksumChars);

    /*
     * Uniform base62 by rejection: bytes >= 248 (= 4 * 62) are dropped,
     * so each character carries log2(62) ~ 5.95 bits: 30 give ~178 bits.
     */
    unsigned char buf[64];

    while (key.size() < prefix.size() + 1 + kRandomChars) {
        random_bytes(buf, sizeof(buf));
        for (unsigned char b : buf) {
            if (b < 248 && key.size() < prefix.size() + 1 + kRandomChars) {
                key.push_back(kBase62[b % 62]);
            }
        }
    }
    OPENSSL_cleanse(buf, sizeof(buf));

    uint32_t crc = crc32_ieee(reinterpret_cast<const unsigned char *>(
                                  key.data()),
                              key.size());
    char sum[kChecksumChars];
    for (size_t i = kChecksumChars; i-- > 0;) {
        sum[i] = kBase62[crc % 62];
        crc /= 62;
    }
    key.append(sum, kChecksumChars);

    /* the module's own test: a key we print must pass "api_key_format
     * checksum" */
    if (ak_key_check_checksum(reinterpret_cast<const unsigned char *>(
                                  key.data()),
                              key.size(),
                              reinterpret_cast<const unsigned char *>(
                                  prefix.data()),
                              prefix.size())
        != 1)
    {
        wipe(key);
        fail(kExitInternal, "internal error: a generated key fails the "
                            "module's checksum test");
    }

    return key;
}


const std::vector<std::string> &module_fields()
{
    static const std::vector<std::string> f = {
        "id", "owner", "plan", "status", "expires_at", "scopes", "ips",
        "referrers", "rate", "burst", "quota",
    };
    return f;
}


const std::vector<std::string> &tool_fields()
{
    static const std::vector<std::string> f = {
        "created_at", "rotated_from", "rotated_to",
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


std::string record_problem(const std::string &hash_hex, const Fields &fields)
{
    for (const Field &f : fields) {
        if (has_control_chars(f.second)) {
            return "field \"" + f.first + "\": control characters are not "
                   "allowed";
        }
        if (f.first == "id"
            && (f.second.empty() || f.second.size() > AK_ID_MAX_LEN))
        {
            return "field \"id\": expected 1 to "
                   + std::to_string(AK_ID_MAX_LEN) + " characters";
        }
    }

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
            msg = "the record is malformed or larger than "
                  + std::to_string(AK_RECORD_MAX) + " bytes";
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
