/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_keyfmt: the key format checks and the decoders a request's key goes
 * through, each against a slow reference written from the contract in
 * ak_core.h / akcore.hpp:
 *   ak_key_check_any, ak_key_check_checksum (also on keys made valid from
 *   the input, and the checksum of ak::generate_key's format),
 *   ak_key_prefix_valid, ak_percent_decode (into a buffer of exactly cap
 *   bytes), ak_hex_decode_hash, ak::base62_encode/decode.
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "fuzz_util.h"

#include <cstdlib>
#include <string>
#include <vector>

namespace {

bool ref_check_any(const std::string &k)
{
    if (k.empty() || k.size() > AK_KEY_MAX_LEN) {
        return false;
    }
    for (unsigned char c : k) {
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

bool ref_prefix_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '_';
}

bool ref_prefix_valid(const std::string &p)
{
    if (p.empty() || p.size() > 32) {
        return false;
    }
    for (unsigned char c : p) {
        if (!ref_prefix_char(c)) {
            return false;
        }
    }
    return true;
}

int ref_b62(unsigned char c)
{
    const char *a = ak::kBase62Alphabet;
    for (int i = 0; i < 62; i++) {
        if (a[i] == static_cast<char>(c)) {
            return i;
        }
    }
    return -1;
}

/* bit by bit, reflected 0xEDB88320 */
uint32_t ref_crc32(const std::string &s)
{
    uint32_t crc = 0xffffffffu;
    for (unsigned char c : s) {
        crc ^= c;
        for (int k = 0; k < 8; k++) {
            crc = (crc & 1) ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
        }
    }
    return ~crc;
}

std::string ref_b62_6(uint32_t v)
{
    std::string out(6, '0');
    for (int i = 5; i >= 0; i--) {
        out[static_cast<size_t>(i)] = ak::kBase62Alphabet[v % 62];
        v /= 62;
    }
    return out;
}

bool ref_check_checksum(const std::string &k, const std::string &want)
{
    if (k.size() < 38 || k.size() > 32 + 1 + 36) {
        return false;
    }
    size_t plen = k.size() - 37;
    std::string prefix = k.substr(0, plen);
    if (k[plen] != '_' || !ref_prefix_valid(prefix)) {
        return false;
    }
    if (!want.empty() && want != prefix) {
        return false;
    }
    uint64_t sum = 0;
    for (size_t i = plen + 1; i < k.size(); i++) {
        int v = ref_b62(static_cast<unsigned char>(k[i]));
        if (v < 0) {
            return false;
        }
        if (i >= k.size() - 6) {
            sum = sum * 62 + static_cast<uint64_t>(v);
        }
    }
    return sum == ref_crc32(k.substr(0, k.size() - 6));
}

int ref_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* false: invalid; else the decoded bytes (any length) */
bool ref_percent(const std::string &in, std::string *out)
{
    out->clear();
    for (size_t i = 0; i < in.size(); i++) {
        if (in[i] != '%') {
            out->push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size()) {
            return false;
        }
        int hi = ref_hex(static_cast<unsigned char>(in[i + 1]));
        int lo = ref_hex(static_cast<unsigned char>(in[i + 2]));
        if (hi < 0 || lo < 0) {
            return false;
        }
        out->push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return true;
}

void check_key(const std::string &key, const std::string &want)
{
    fuzz::Exact k(key), w(want);

    FUZZ_CHECK(ak_key_check_any(k.u(), k.len) == (ref_check_any(key) ? 1 : 0));
    FUZZ_CHECK(ak_key_check_checksum(k.u(), k.len, w.u(), w.len)
               == (ref_check_checksum(key, want) ? 1 : 0));
    FUZZ_CHECK(ak::key_check_checksum(key, want)
               == ref_check_checksum(key, want));
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);

    switch (in.u8() % 6) {

    case 0: {
        /* any bytes as a key, with or without a prefix to require */
        std::string want = in.flag() ? in.str8() : std::string();
        check_key(in.rest(), want);
        break;
    }

    case 1: {
        /* a key made well-formed from the input, then maybe damaged */
        std::string prefix = in.bytes(1 + in.u8() % 34);
        std::string body;
        for (int i = 0; i < 30; i++) {
            body.push_back(ak::kBase62Alphabet[in.u8() % 62]);
        }
        std::string key = prefix + "_" + body;
        key += ref_b62_6(ref_crc32(key));

        if (ref_prefix_valid(prefix)) {
            FUZZ_CHECK(ref_check_checksum(key, ""));
            FUZZ_CHECK(ref_check_checksum(key, prefix));
        }

        uint8_t damage = in.u8();
        if (damage & 1) {
            size_t at = in.u16() % key.size();
            key[at] = static_cast<char>(in.u8());
        }
        if (damage & 2) {
            key.insert(in.u16() % (key.size() + 1), in.str8());
        }
        if (damage & 4 && !key.empty()) {
            key.erase(in.u16() % key.size(), 1 + in.u8() % 4);
        }
        std::string want = (damage & 8) ? prefix
                           : (damage & 16) ? in.str8() : std::string();
        check_key(key, want);
        break;
    }

    case 2: {
        std::string p = in.rest();
        fuzz::Exact e(p);
        FUZZ_CHECK(ak_key_prefix_valid(e.u(), e.len)
                   == (ref_prefix_valid(p) ? 1 : 0));
        FUZZ_CHECK(ak::key_prefix_valid(p) == ref_prefix_valid(p));
        break;
    }

    case 3: {
        /* percent-decoding into exactly cap bytes */
        size_t cap = in.u16() % 600;
        std::string s = in.rest();
        fuzz::Exact e(s);
        std::string want;
        bool ok = ref_percent(s, &want) && want.size() <= cap;

        unsigned char *out = static_cast<unsigned char *>(
            std::malloc(cap ? cap : 1));
        size_t out_len = 12345;
        int rc = ak_percent_decode(e.u(), e.len, cap ? out : nullptr, cap,
                                   &out_len);
        FUZZ_CHECK(rc == (ok ? 1 : 0));
        if (ok) {
            FUZZ_CHECK(out_len == want.size());
            FUZZ_CHECK(out_len == 0 || std::memcmp(out, want.data(), out_len) == 0);
        }
        std::free(out);
        break;
    }

    case 4: {
        std::string s = in.rest();
        fuzz::Exact e(s);
        unsigned char h[AK_HASH_LEN];
        bool ok = s.size() == AK_HASH_HEX_LEN;
        unsigned char want[AK_HASH_LEN] = {};
        for (size_t i = 0; ok && i < AK_HASH_LEN; i++) {
            int hi = ref_hex(static_cast<unsigned char>(s[2 * i]));
            int lo = ref_hex(static_cast<unsigned char>(s[2 * i + 1]));
            ok = hi >= 0 && lo >= 0;
            want[i] = static_cast<unsigned char>(hi * 16 + lo);
        }
        int rc = ak_hex_decode_hash(e.c(), e.len, h);
        FUZZ_CHECK(rc == (ok ? 0 : -1));
        if (ok) {
            FUZZ_CHECK(std::memcmp(h, want, AK_HASH_LEN) == 0);
            char hex[AK_HASH_HEX_LEN];
            ak_hex_encode(h, AK_HASH_LEN, hex);
            for (size_t i = 0; i < AK_HASH_HEX_LEN; i++) {
                FUZZ_CHECK(hex[i] == static_cast<char>(
                    s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i]));
            }
        }
        break;
    }

    default: {
        /* base62: decode of any text, encode round trip */
        std::string s = in.bytes(in.u8() % 12);
        uint64_t v = 0;
        bool ok = !s.empty() && s.size() <= 10;
        uint64_t want = 0;
        for (size_t i = 0; ok && i < s.size(); i++) {
            int d = ref_b62(static_cast<unsigned char>(s[i]));
            ok = d >= 0;
            want = want * 62 + static_cast<uint64_t>(d);
        }
        fuzz::Exact e(s);
        bool got = ak::base62_decode(e.c(), e.len, &v);
        FUZZ_CHECK(got == ok);
        if (ok) {
            FUZZ_CHECK(v == want);
        }

        uint64_t x = in.u64();
        size_t width = 1 + in.u8() % 11;
        char out[11];
        std::memset(out, '#', sizeof(out));
        bool fits = true;
        {
            /* x < 62^width, without overflow */
            uint64_t lim = 1;
            bool big = false;
            for (size_t i = 0; i < width; i++) {
                if (lim > UINT64_MAX / 62) { big = true; break; }
                lim *= 62;
            }
            fits = big || x < lim;
        }
        bool enc = ak::base62_encode(x, out, width);
        FUZZ_CHECK(enc == fits);
        if (enc) {
            for (size_t i = width; i < sizeof(out); i++) {
                FUZZ_CHECK(out[i] == '#');
            }
            if (width <= 10) {
                uint64_t back = 0;
                FUZZ_CHECK(ak::base62_decode(out, width, &back));
                FUZZ_CHECK(back == x);
            }
        }
        break;
    }
    }

    return 0;
}
