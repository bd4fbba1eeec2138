/* SPDX-License-Identifier: BSD-2-Clause */
/* Key formats, CRC-32, base62, key generation. */

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ak_core.h"
#include "akcore.hpp"

namespace {

const char kAlpha[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* reference CRC-32: bit by bit, no table */
uint32_t ref_crc32(const std::string &s)
{
    uint32_t c = 0xffffffffu;
    for (unsigned char b : s) {
        c ^= b;
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
        }
    }
    return ~c;
}

/* reference checksum suffix: 6 base62 digits of v, MSB first */
std::string ref_base62_6(uint64_t v)
{
    std::string s(6, '0');
    for (int i = 5; i >= 0; i--) {
        s[i] = kAlpha[v % 62];
        v /= 62;
    }
    return s;
}

std::string ref_key(const std::string &prefix, const std::string &random30)
{
    std::string body = prefix + "_" + random30;
    return body + ref_base62_6(ref_crc32(body));
}

int check(const std::string &key, const std::string &prefix = "")
{
    return ak_key_check_checksum(
        reinterpret_cast<const unsigned char *>(key.data()), key.size(),
        reinterpret_cast<const unsigned char *>(prefix.data()),
        prefix.size());
}

int check_any(const std::string &key)
{
    return ak_key_check_any(
        reinterpret_cast<const unsigned char *>(key.data()), key.size());
}

int prefix_ok(const std::string &p)
{
    return ak_key_prefix_valid(reinterpret_cast<const unsigned char *>(
                                   p.data()),
                               p.size());
}

/* a random source that replays a fixed byte sequence, then fails */
ak::RandomSource replay(std::vector<unsigned char> bytes)
{
    auto pos = std::make_shared<size_t>(0);
    auto data = std::make_shared<std::vector<unsigned char>>(
        std::move(bytes));
    return [pos, data](unsigned char *buf, size_t len) {
        for (size_t i = 0; i < len; i++) {
            if (*pos >= data->size()) {
                return false;
            }
            buf[i] = (*data)[(*pos)++];
        }
        return true;
    };
}

ak::RandomSource mt_source(uint32_t seed)
{
    auto rng = std::make_shared<std::mt19937>(seed);
    return [rng](unsigned char *buf, size_t len) {
        for (size_t i = 0; i < len; i++) {
            buf[i] = static_cast<unsigned char>((*rng)() & 0xff);
        }
        return true;
    };
}

} // namespace


TEST(Crc32, CheckValue)
{
    EXPECT_EQ(ak::crc32("123456789", 9), 0xCBF43926u);
    EXPECT_EQ(ak::crc32("", 0), 0u);
    EXPECT_EQ(ak::crc32("The quick brown fox jumps over the lazy dog", 43),
              0x414FA339u);
    EXPECT_EQ(ak::crc32("a", 1), 0xE8B7BE43u);
}

TEST(Crc32, IncrementalAndReference)
{
    std::mt19937 rng(7);
    for (int n = 0; n < 300; n++) {
        std::string s(n, '\0');
        for (auto &c : s) {
            c = static_cast<char>(rng() & 0xff);
        }
        uint32_t whole = ak::crc32(s.data(), s.size());
        ASSERT_EQ(whole, ref_crc32(s)) << "len " << n;
        size_t cut = n ? rng() % n : 0;
        uint32_t part = ak::crc32(s.data(), cut);
        part = ak::crc32(s.data() + cut, s.size() - cut, part);
        ASSERT_EQ(part, whole);
    }
}

TEST(Base62, Encode)
{
    char out[8];
    ASSERT_TRUE(ak::base62_encode(0, out, 6));
    EXPECT_EQ(std::string(out, 6), "000000");
    ASSERT_TRUE(ak::base62_encode(61, out, 6));
    EXPECT_EQ(std::string(out, 6), "00000z");
    ASSERT_TRUE(ak::base62_encode(62, out, 6));
    EXPECT_EQ(std::string(out, 6), "000010");
    ASSERT_TRUE(ak::base62_encode(10, out, 1));
    EXPECT_EQ(out[0], 'A');
    ASSERT_TRUE(ak::base62_encode(36, out, 1));
    EXPECT_EQ(out[0], 'a');
    ASSERT_TRUE(ak::base62_encode(0xffffffffu, out, 6));
    EXPECT_EQ(std::string(out, 6), ref_base62_6(0xffffffffu));
    EXPECT_EQ(std::string(out, 6), "4gfFC3");

    /* 62^6 does not fit in 6 digits */
    std::memcpy(out, "xxxxxx", 6);
    EXPECT_FALSE(ak::base62_encode(56800235584ULL, out, 6));
    EXPECT_EQ(std::string(out, 6), "xxxxxx");
    EXPECT_TRUE(ak::base62_encode(56800235583ULL, out, 6));
    EXPECT_EQ(std::string(out, 6), "zzzzzz");
    EXPECT_FALSE(ak::base62_encode(1, out, 0));
}

TEST(Base62, DecodeRoundTrip)
{
    uint64_t v;
    EXPECT_TRUE(ak::base62_decode("zz", 2, &v));
    EXPECT_EQ(v, 62u * 62 - 1);
    EXPECT_FALSE(ak::base62_decode("a-b", 3, &v));
    EXPECT_FALSE(ak::base62_decode("", 0, &v));
    EXPECT_FALSE(ak::base62_decode("00000000000", 11, &v));

    std::mt19937_64 rng(3);
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng() % 56800235584ULL;
        char out[6];
        ASSERT_TRUE(ak::base62_encode(x, out, 6));
        ASSERT_TRUE(ak::base62_decode(out, 6, &v));
        ASSERT_EQ(v, x);
    }
}

TEST(KeyFormat, Any)
{
    EXPECT_EQ(check_any(""), 0);
    EXPECT_EQ(check_any("a"), 1);
    EXPECT_EQ(check_any("!~"), 1);
    EXPECT_EQ(check_any(std::string(256, 'k')), 1);
    EXPECT_EQ(check_any(std::string(257, 'k')), 0);
    EXPECT_EQ(check_any("a b"), 0);
    EXPECT_EQ(check_any("a\tb"), 0);
    EXPECT_EQ(check_any(std::string("a\0b", 3)), 0);
    EXPECT_EQ(check_any("a\x7f"), 0);
    EXPECT_EQ(check_any("caf\xc3\xa9"), 0);
    EXPECT_EQ(ak_key_check_any(nullptr, 3), 0);
}

TEST(KeyFormat, PrefixValid)
{
    EXPECT_EQ(prefix_ok("ak"), 1);
    EXPECT_EQ(prefix_ok("my_app_Live9"), 1);
    EXPECT_EQ(prefix_ok(std::string(32, 'p')), 1);
    EXPECT_EQ(prefix_ok(std::string(33, 'p')), 0);
    EXPECT_EQ(prefix_ok(""), 0);
    EXPECT_EQ(prefix_ok("a-b"), 0);
    EXPECT_EQ(prefix_ok("a.b"), 0);
    EXPECT_EQ(prefix_ok("a b"), 0);
}

TEST(KeyFormat, ChecksumKnownKey)
{
    std::string key = ref_key("test", std::string(30, 'A'));
    EXPECT_EQ(key.size(), 4u + 1 + 36);
    EXPECT_EQ(check(key), 1);
    EXPECT_EQ(check(key, "test"), 1);
    EXPECT_EQ(check(key, "tes"), 0);
    EXPECT_EQ(check(key, "test_"), 0);
    EXPECT_EQ(check(key, "TEST"), 0);

    /* a prefix holding underscores: parsed from the end */
    std::string k2 = ref_key("my_live_app", "0123456789abcdefghijABCDEFGHIJ");
    EXPECT_EQ(check(k2), 1);
    EXPECT_EQ(check(k2, "my_live_app"), 1);
    EXPECT_EQ(check(k2, "my"), 0);

    /* prefix lengths 1 and 32 are fine, 0 and 33 are not */
    EXPECT_EQ(check(ref_key("p", std::string(30, 'z'))), 1);
    EXPECT_EQ(check(ref_key(std::string(32, 'p'), std::string(30, 'z'))), 1);
    EXPECT_EQ(check(ref_key(std::string(33, 'p'), std::string(30, 'z'))), 0);
    EXPECT_EQ(check(ref_key("", std::string(30, 'z'))), 0);

    /* bad characters in the prefix or the random part */
    EXPECT_EQ(check(ref_key("a-b", std::string(30, 'z'))), 0);
    EXPECT_EQ(check(ref_key("ab", std::string(29, 'z') + "-")), 0);

    /* wrong lengths of the random part: the '_' is not where the end
     * says it must be */
    EXPECT_EQ(check(ref_key("ab", std::string(29, 'z'))), 0);
    EXPECT_EQ(check(ref_key("ab", std::string(31, 'z'))), 0);
}

TEST(KeyFormat, ChecksumRejects)
{
    std::string key = ref_key("ak", "Q1w2E3r4T5y6U7i8O9p0AaSsDdFfGg");
    ASSERT_EQ(check(key), 1);

    EXPECT_EQ(check(""), 0);
    EXPECT_EQ(check(key.substr(1)), 0);
    EXPECT_EQ(check(key + "0"), 0);
    EXPECT_EQ(check(key.substr(0, key.size() - 1)), 0);

    /* the separator must be '_' */
    std::string nosep = key;
    nosep[2] = 'x';
    EXPECT_EQ(check(nosep), 0);

    /* a checksum of a value >= 2^32 never matches */
    std::string big = key.substr(0, key.size() - 6) + "zzzzzz";
    EXPECT_EQ(check(big), 0);

    /* the checksum must be zero padded exactly, not written shorter */
    uint32_t crc = ref_crc32(key.substr(0, key.size() - 6));
    std::string digits = ref_base62_6(crc);
    EXPECT_EQ(key.substr(key.size() - 6), digits);
}

TEST(KeyFormat, EverySingleCharacterChangeFails)
{
    std::string key = ref_key("live_k", "abcdefghijKLMNOPQRSTuvwxyz0123");
    ASSERT_EQ(check(key), 1);

    for (size_t i = 0; i < key.size(); i++) {
        for (char c : std::string(kAlpha) + "_") {
            if (c == key[i]) {
                continue;
            }
            std::string k = key;
            k[i] = c;
            ASSERT_EQ(check(k), 0) << "position " << i << " -> " << c;
        }
    }
}

TEST(KeyGen, FormatAndChecksum)
{
    auto src = mt_source(42);
    for (int i = 0; i < 200; i++) {
        std::string key;
        ASSERT_TRUE(ak::generate_key("sk_live", src, &key));
        ASSERT_EQ(key.size(), 7u + 1 + 30 + 6);
        ASSERT_EQ(key.compare(0, 8, "sk_live_"), 0);
        for (size_t k = 8; k < key.size(); k++) {
            ASSERT_NE(std::strchr(kAlpha, key[k]), nullptr);
        }
        ASSERT_EQ(check(key), 1);
        ASSERT_EQ(check(key, "sk_live"), 1);
        ASSERT_TRUE(ak::key_check_checksum(key, "sk_live"));
        ASSERT_TRUE(ak::key_check_any(key));
        ASSERT_EQ(key, ref_key("sk_live", key.substr(8, 30)));

        /* one changed character fails */
        std::string bad = key;
        size_t pos = 8 + static_cast<size_t>(i) % 36;
        bad[pos] = bad[pos] == 'a' ? 'b' : 'a';
        ASSERT_EQ(check(bad), 0);
    }
}

TEST(KeyGen, RejectionSampling)
{
    /* 248..255 are dropped; others map to b % 62 */
    std::vector<unsigned char> bytes = {
        248, 0, 255, 61, 62, 247, 123, 250, 186, 185, 10, 36,
    };
    std::string expect;
    for (unsigned char b : bytes) {
        if (b < 248) {
            expect += kAlpha[b % 62];
        }
    }
    /* pad with zeros up to 30 usable bytes; 48 bytes are read per round */
    while (bytes.size() < 96) {
        bytes.push_back(0);
    }
    while (expect.size() < 30) {
        expect += '0';
    }

    std::string key;
    ASSERT_TRUE(ak::generate_key("t", replay(bytes), &key));
    EXPECT_EQ(expect.substr(0, 10), "0z0zz0zAa0");
    EXPECT_EQ(key.substr(2, 30), expect);
    EXPECT_EQ(key, ref_key("t", expect));
}

TEST(KeyGen, Uniformity)
{
    /* with rejection sampling every symbol is equally likely: check a
     * chi-square over many keys against a generous bound */
    auto src = mt_source(1);
    std::vector<int> counts(62, 0);
    int total = 0;
    for (int i = 0; i < 4000; i++) {
        std::string key;
        ASSERT_TRUE(ak::generate_key("u", src, &key));
        for (size_t k = 2; k < 32; k++) {
            counts[std::strchr(kAlpha, key[k]) - kAlpha]++;
            total++;
        }
    }
    double expect = total / 62.0, chi = 0;
    for (int c : counts) {
        chi += (c - expect) * (c - expect) / expect;
    }
    /* 61 degrees of freedom: p(chi > 120) is ~1e-5; plain b % 62 of all
     * 256 bytes would give ~0.24 * total / 62 excess on 8 symbols */
    EXPECT_LT(chi, 120.0);
}

TEST(KeyGen, Failures)
{
    std::string key = "stale";
    EXPECT_FALSE(ak::generate_key("bad-prefix", mt_source(1), &key));
    EXPECT_TRUE(key.empty());
    EXPECT_FALSE(ak::generate_key("", mt_source(1), &key));
    EXPECT_FALSE(ak::generate_key(std::string(33, 'a'), mt_source(1), &key));

    /* a failing source */
    EXPECT_FALSE(ak::generate_key("ok",
                                  [](unsigned char *, size_t) { return false; },
                                  &key));
    EXPECT_TRUE(key.empty());

    /* a source that runs dry half way */
    EXPECT_FALSE(ak::generate_key("ok", replay(std::vector<unsigned char>(10)),
                                  &key));
    EXPECT_TRUE(key.empty());

    /* a source of nothing but rejected bytes must not loop forever */
    EXPECT_FALSE(ak::generate_key("ok",
                                  [](unsigned char *b, size_t n) {
                                      std::memset(b, 0xff, n);
                                      return true;
                                  },
                                  &key));
    EXPECT_TRUE(key.empty());

    /* an empty std::function */
    EXPECT_FALSE(ak::generate_key("ok", ak::RandomSource(), &key));
}


/* Every byte value at every position of keys of several lengths: the
   word-at-a-time check agrees with the byte-at-a-time definition. */
TEST(KeyFormatAny, EveryByteAtEveryPosition)
{
    for (size_t len : {1, 7, 8, 9, 16, 40, 63, 256}) {
        std::string  key(len, 'a');

        for (size_t pos = 0; pos < len; pos++) {
            for (int b = 0; b < 256; b++) {
                key[pos] = (char) b;
                bool want = (b >= 0x21 && b <= 0x7e);
                ASSERT_EQ(ak_key_check_any(
                              reinterpret_cast<const unsigned char *>(
                                  key.data()), len),
                          want ? 1 : 0)
                    << "len " << len << " pos " << pos << " byte " << b;
            }

            key[pos] = 'a';
        }
    }

    /* neighbours of an invalid byte do not hide or fake it (borrows and
       carries between bytes) */
    std::string  k = "!~!~!~!~!~!~!~!~";
    EXPECT_EQ(ak_key_check_any(
                  reinterpret_cast<const unsigned char *>(k.data()),
                  k.size()), 1);
    k[5] = '\x7f';
    EXPECT_EQ(ak_key_check_any(
                  reinterpret_cast<const unsigned char *>(k.data()),
                  k.size()), 0);
    k = std::string("\x20\xff\x21\x7e\x80\x00zz", 8);
    EXPECT_EQ(ak_key_check_any(
                  reinterpret_cast<const unsigned char *>(k.data()),
                  k.size()), 0);
}


/* ---- strict percent-decoding (query arguments) ------------------------ */

namespace {

/* decoded value, or "<invalid>" */
std::string pct(const std::string &in, size_t cap = AK_KEY_MAX_LEN)
{
    std::vector<unsigned char>  out(cap + 1, 0xee);
    size_t                      n = 12345;

    int rc = ak_percent_decode(
        reinterpret_cast<const unsigned char *>(in.data()), in.size(),
        out.data(), cap, &n);

    /* never a byte past cap */
    EXPECT_EQ(out[cap], 0xee) << in;

    if (rc != 1) {
        EXPECT_EQ(rc, 0);
        EXPECT_EQ(n, 12345u) << "out_len set on failure: " << in;
        return "<invalid>";
    }

    EXPECT_LE(n, cap);
    return std::string(reinterpret_cast<char *>(out.data()), n);
}

/* reference: strict, written the obvious way */
bool ref_pct(const std::string &in, std::string *out)
{
    out->clear();
    for (size_t i = 0; i < in.size(); i++) {
        if (in[i] != '%') {
            out->push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size() || !isxdigit((unsigned char) in[i + 1])
            || !isxdigit((unsigned char) in[i + 2]))
        {
            return false;
        }
        out->push_back((char) std::stoi(in.substr(i + 1, 2), nullptr, 16));
        i += 2;
    }
    return true;
}

} // namespace


TEST(PercentDecode, Valid)
{
    EXPECT_EQ(pct(""), "");
    EXPECT_EQ(pct("abc"), "abc");
    EXPECT_EQ(pct("ab%63"), "abc");
    EXPECT_EQ(pct("%61%62%63"), "abc");
    EXPECT_EQ(pct("key%3Fanything"), "key?anything");     /* not cut at '?' */
    EXPECT_EQ(pct("key%3fanything"), "key?anything");
    EXPECT_EQ(pct("a%2Fb%2fc"), "a/b/c");
    EXPECT_EQ(pct("%25"), "%");
    EXPECT_EQ(pct("%2525"), "%25");                        /* once only */
    EXPECT_EQ(pct("a+b"), "a+b");                          /* '+' stays */
    EXPECT_EQ(pct("%00"), std::string(1, '\0'));
    EXPECT_EQ(pct("%ff%FF"), "\xff\xff");
    EXPECT_EQ(pct("?&=#"), "?&=#");
}

TEST(PercentDecode, InvalidEscapes)
{
    for (const char *in : {"%", "abc%", "abc%4", "%4", "%g0", "%0g", "%%",
                           "%%41", "a%zzb", "%-1", "% 1", "%+1", "%x41",
                           "abc%4%41", "%41%"})
    {
        EXPECT_EQ(pct(in), "<invalid>") << in;
    }
}

TEST(PercentDecode, Capacity)
{
    std::string  k(AK_KEY_MAX_LEN, 'k');

    EXPECT_EQ(pct(k), k);
    EXPECT_EQ(pct(k + "x"), "<invalid>");
    EXPECT_EQ(pct(k.substr(1) + "%41"), k.substr(1) + "A");
    EXPECT_EQ(pct(k + "%41"), "<invalid>");
    EXPECT_EQ(pct("abc", 3), "abc");
    EXPECT_EQ(pct("abcd", 3), "<invalid>");
    EXPECT_EQ(pct("%41%42%43", 3), "ABC");
    EXPECT_EQ(pct("%41%42%43%44", 3), "<invalid>");
    EXPECT_EQ(pct("", 0), "");
    EXPECT_EQ(pct("a", 0), "<invalid>");

    size_t n;
    EXPECT_EQ(ak_percent_decode(nullptr, 0, nullptr, 0, &n), 1);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ak_percent_decode(nullptr, 1, nullptr, 0, &n), 0);
    EXPECT_EQ(ak_percent_decode(
                  reinterpret_cast<const unsigned char *>("a"), 1, nullptr,
                  0, nullptr), 0);
}

/* random strings of escape-prone characters: valid or not and the decoded
 * bytes as the reference says */
TEST(PercentDecode, RandomAgainstReference)
{
    std::mt19937                         rng(20261201);
    const std::string                    alphabet = "%%%0123456789aAfFgG+?&=z";
    std::uniform_int_distribution<int>   len_d(0, 24), ch_d(0, alphabet.size() - 1);

    for (int round = 0; round < 200000; round++) {
        std::string  in(len_d(rng), ' ');
        for (char &c : in) {
            c = alphabet[ch_d(rng)];
        }

        std::string  want;
        bool         ok = ref_pct(in, &want);

        ASSERT_EQ(pct(in), ok ? want : "<invalid>") << in;
    }
}
