/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * keyfmt.cpp: key formats ("any", "checksum"), CRC-32, base62 and key
 * generation.
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "internal.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstring>

namespace ak {

namespace {

/* CRC-32 table, built at compile time: reflected polynomial 0xEDB88320 */
struct Crc32Table {
    uint32_t v[256];

    constexpr Crc32Table() : v()
    {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            }
            v[i] = c;
        }
    }
};

constexpr Crc32Table kCrcTable;

/* base62 digit value, or -1 */
inline int base62_value(unsigned char c) noexcept
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'Z') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 36;
    }
    return -1;
}

/* hex digit value, or -1 */
inline int hex_value(unsigned char c) noexcept
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

inline bool prefix_char(unsigned char c) noexcept
{
    return is_alnum(c) || c == '_';
}

constexpr size_t kTail = kKeyRandomChars + kKeyChecksumChars;  /* 36 */

/* wipes memory in a way the compiler keeps */
void wipe(void *p, size_t n) noexcept
{
    volatile unsigned char *v = static_cast<volatile unsigned char *>(p);
    while (n--) {
        *v++ = 0;
    }
}

} // namespace


uint32_t crc32(const void *data, size_t len, uint32_t crc) noexcept
{
    const unsigned char *p = static_cast<const unsigned char *>(data);

    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc = kCrcTable.v[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}


bool base62_encode(uint64_t value, char *out, size_t width) noexcept
{
    char tmp[16];

    if (width == 0 || width > sizeof(tmp)) {
        return false;
    }

    for (size_t i = width; i-- > 0;) {
        tmp[i] = kBase62Alphabet[value % 62];
        value /= 62;
    }

    if (value != 0) {
        return false;
    }

    std::memcpy(out, tmp, width);
    return true;
}


bool base62_decode(const char *in, size_t len, uint64_t *value) noexcept
{
    uint64_t v = 0;

    /* 62^10 < 2^64 */
    if (len == 0 || len > 10) {
        return false;
    }

    for (size_t i = 0; i < len; i++) {
        int d = base62_value(static_cast<unsigned char>(in[i]));
        if (d < 0) {
            return false;
        }
        v = v * 62 + static_cast<uint64_t>(d);
    }

    *value = v;
    return true;
}


bool generate_key(std::string_view prefix, const RandomSource &random,
    std::string *key)
{
    key->clear();

    if (!key_prefix_valid(prefix) || !random) {
        return false;
    }

    char out[kKeyPrefixMax + 1 + kTail];
    size_t n = prefix.size();

    std::memcpy(out, prefix.data(), n);
    out[n++] = '_';

    const size_t want = n + kKeyRandomChars;
    unsigned char buf[48];
    bool ok = true;

    /* 248 = 4 * 62: P(a byte is discarded) = 8/256, so 100 rounds of 48
     * bytes failing means a broken source */
    for (int round = 0; n < want; round++) {
        if (round == 100 || !random(buf, sizeof(buf))) {
            ok = false;
            break;
        }
        for (size_t i = 0; i < sizeof(buf) && n < want; i++) {
            if (buf[i] < 248) {
                out[n++] = kBase62Alphabet[buf[i] % 62];
            }
        }
    }

    wipe(buf, sizeof(buf));

    if (ok) {
        uint32_t crc = crc32(out, n);
        ok = base62_encode(crc, out + n, kKeyChecksumChars);
        n += kKeyChecksumChars;
    }

    if (ok) {
        try {
            key->assign(out, n);
        } catch (...) {
            ok = false;
        }
    }

    wipe(out, sizeof(out));

    if (ok && !key_check_checksum(*key, prefix)) {
        ok = false;                     /* cannot happen */
    }

    if (!ok && !key->empty()) {
        wipe(&(*key)[0], key->size());
        key->clear();
    }

    return ok;
}


bool key_prefix_valid(std::string_view prefix) noexcept
{
    return ak_key_prefix_valid(
               reinterpret_cast<const unsigned char *>(prefix.data()),
               prefix.size())
           == 1;
}


bool key_check_any(std::string_view key) noexcept
{
    return ak_key_check_any(
               reinterpret_cast<const unsigned char *>(key.data()),
               key.size())
           == 1;
}


bool key_check_checksum(std::string_view key, std::string_view prefix)
    noexcept
{
    return ak_key_check_checksum(
               reinterpret_cast<const unsigned char *>(key.data()),
               key.size(),
               reinterpret_cast<const unsigned char *>(prefix.data()),
               prefix.size())
           == 1;
}

} // namespace ak


/* ---- C API ----------------------------------------------------------- */

extern "C" int
ak_key_check_any(const unsigned char *key, size_t len) noexcept
{
    if (key == nullptr || len == 0 || len > AK_KEY_MAX_LEN) {
        return 0;
    }

#if defined(__SSE2__)
    /*
     * Sixteen bytes at a time, the last block overlapping the one before:
     * compared as signed bytes, every byte of 0x80 and above is below 0x21
     * too, so "below 0x21 or above 0x7e" is the whole test.
     */
    if (len >= 16) {
        const __m128i  lo = _mm_set1_epi8(0x21);
        const __m128i  hi = _mm_set1_epi8(0x7e);
        __m128i        v, bad;
        size_t         i;

        /* up to 48 bytes (most keys): three blocks, the middle one and
         * the last overlapping the others, no loop */
        i = (len >= 32) ? 16 : len - 16;

        v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(key));
        bad = _mm_or_si128(_mm_cmplt_epi8(v, lo), _mm_cmpgt_epi8(v, hi));
        v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(key + i));
        bad = _mm_or_si128(bad, _mm_cmplt_epi8(v, lo));
        bad = _mm_or_si128(bad, _mm_cmpgt_epi8(v, hi));
        v = _mm_loadu_si128(
                reinterpret_cast<const __m128i *>(key + len - 16));
        bad = _mm_or_si128(bad, _mm_cmplt_epi8(v, lo));
        bad = _mm_or_si128(bad, _mm_cmpgt_epi8(v, hi));

        for (i = 32; i + 16 < len; i += 16) {
            v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(key + i));
            bad = _mm_or_si128(bad, _mm_cmplt_epi8(v, lo));
            bad = _mm_or_si128(bad, _mm_cmpgt_epi8(v, hi));
        }

        return _mm_movemask_epi8(bad) == 0;
    }
#endif

    /*
     * Eight bytes at a time (the last word overlapping the one before): a
     * byte below 0x21 or above 0x7e sets its top bit in one of the two
     * expressions (exact, no false positives, for bounds up to 0x80:
     * "hasless" and "hasmore" of the bit-twiddling folklore).
     */

    constexpr uint64_t  ones = ~(uint64_t) 0 / 255;
    constexpr uint64_t  high = ones * 0x80;

    uint64_t  x;

    if (len >= 8) {
        for (size_t i = 0; ; i += 8) {
            size_t  at = (i + 8 <= len) ? i : len - 8;

            memcpy(&x, key + at, 8);

            if ((((x - ones * 0x21) & ~x) | ((x + ones * (0x7f - 0x7e)) | x))
                & high)
            {
                return 0;
            }

            if (at + 8 >= len) {
                return 1;
            }
        }
    }

    for (size_t i = 0; i < len; i++) {
        if (key[i] < 0x21 || key[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


extern "C" int
ak_key_prefix_valid(const unsigned char *prefix, size_t len) noexcept
{
    if (prefix == nullptr || len == 0 || len > ak::kKeyPrefixMax) {
        return 0;
    }

    for (size_t i = 0; i < len; i++) {
        if (!ak::prefix_char(prefix[i])) {
            return 0;
        }
    }

    return 1;
}


extern "C" int
ak_key_check_checksum(const unsigned char *key, size_t len,
    const unsigned char *prefix, size_t prefix_len) noexcept
{
    using ak::kTail;

    /* PREFIX (1..32) "_" 30 random 6 checksum, parsed from the end */
    if (key == nullptr || len < 1 + 1 + kTail
        || len > ak::kKeyPrefixMax + 1 + kTail)
    {
        return 0;
    }

    size_t plen = len - kTail - 1;

    if (key[plen] != '_' || !ak_key_prefix_valid(key, plen)) {
        return 0;
    }

    if (prefix_len > 0
        && (prefix == nullptr || prefix_len != plen
            || std::memcmp(prefix, key, plen) != 0))
    {
        return 0;
    }

    for (size_t i = plen + 1; i < len - ak::kKeyChecksumChars; i++) {
        if (ak::base62_value(key[i]) < 0) {
            return 0;
        }
    }

    uint64_t sum;
    size_t body = len - ak::kKeyChecksumChars;

    if (!ak::base62_decode(reinterpret_cast<const char *>(key + body),
                           ak::kKeyChecksumChars, &sum))
    {
        return 0;
    }

    return sum == ak::crc32(key, body) ? 1 : 0;
}


extern "C" int
ak_percent_decode(const unsigned char *in, size_t len, unsigned char *out,
    size_t cap, size_t *out_len) noexcept
{
    if ((in == nullptr && len > 0) || (out == nullptr && cap > 0)
        || out_len == nullptr)
    {
        return 0;
    }

    size_t  n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char  c = in[i];

        if (c == '%') {
            if (len - i < 3) {
                return 0;
            }

            int  hi = ak::hex_value(in[i + 1]);
            int  lo = ak::hex_value(in[i + 2]);

            if (hi < 0 || lo < 0) {
                return 0;
            }

            c = static_cast<unsigned char>(hi << 4 | lo);
            i += 2;
        }

        if (n == cap) {
            return 0;
        }

        out[n++] = c;
    }

    *out_len = n;
    return 1;
}
