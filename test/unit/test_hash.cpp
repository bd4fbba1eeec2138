/* SPDX-License-Identifier: BSD-2-Clause */
/* SHA-256 / HMAC-SHA256 hashers, hex helpers, and "no allocation per
 * digest". */

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ak_core.h"
#include "akcore.hpp"

namespace {

/*
 * Counting allocators for OpenSSL.  CRYPTO_set_mem_functions only works
 * before OpenSSL's first allocation, so it runs from a static initializer;
 * the result is checked by the test below (which fails if it was too late).
 */
std::atomic<long> g_openssl_allocs{0};

void *count_malloc(size_t n, const char *, int)
{
    g_openssl_allocs++;
    return std::malloc(n);
}

void *count_realloc(void *p, size_t n, const char *, int)
{
    g_openssl_allocs++;
    return std::realloc(p, n);
}

void count_free(void *p, const char *, int)
{
    std::free(p);
}

const int g_counting_installed =
    CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);


std::string unhex(const std::string &h)
{
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) {
        out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr,
                                                  16)));
    }
    return out;
}

std::string hexs(const unsigned char *d, size_t n)
{
    std::string s(2 * n, '?');
    ak_hex_encode(d, n, &s[0]);
    return s;
}

struct Hasher {
    ak_hasher_t *h = nullptr;
    char err[AK_ERR_LEN] = "";

    Hasher(int kind, const std::string &secret = "")
    {
        h = ak_hasher_new(kind,
                          reinterpret_cast<const unsigned char *>(
                              secret.data()),
                          secret.size(), err, sizeof(err));
    }
    ~Hasher() { ak_hasher_free(h); }

    std::string hex(const std::string &msg)
    {
        unsigned char out[AK_HASH_LEN];
        std::memset(out, 0, sizeof(out));
        int rc = ak_hasher_digest(
            h, reinterpret_cast<const unsigned char *>(msg.data()),
            msg.size(), out);
        if (rc != 0) {
            return "error";
        }
        return hexs(out, sizeof(out));
    }
};

} // namespace


TEST(Hash, CountingAllocatorsInstalled)
{
    /* if this fails, something made OpenSSL allocate before the static
     * initializer of this file ran: the zero-allocation test below would
     * prove nothing */
    ASSERT_EQ(g_counting_installed, 1);
    Hasher s(AK_HASH_SHA256);
    ASSERT_NE(s.h, nullptr);
    EXPECT_GT(g_openssl_allocs.load(), 0) << "counting does not see OpenSSL";
}

TEST(Hash, Sha256Vectors)
{
    Hasher s(AK_HASH_SHA256);
    ASSERT_NE(s.h, nullptr) << s.err;

    /* FIPS 180-2 */
    EXPECT_EQ(s.hex("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(s.hex(""),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(s.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* and again: the context is reused correctly */
    EXPECT_EQ(s.hex("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(s.hex(std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Hash, Sha256MatchesOpenSsl)
{
    Hasher s(AK_HASH_SHA256);
    ASSERT_NE(s.h, nullptr);
    std::mt19937 rng(11);
    for (int i = 0; i < 300; i++) {
        std::string m(rng() % 300, '\0');
        for (auto &c : m) {
            c = static_cast<char>(rng());
        }
        unsigned char ref[EVP_MAX_MD_SIZE];
        unsigned int rl = 0;
        ASSERT_EQ(EVP_Digest(m.data(), m.size(), ref, &rl, EVP_sha256(),
                             nullptr),
                  1);
        ASSERT_EQ(s.hex(m), hexs(ref, rl));
    }
}

TEST(Hash, HmacRfc4231)
{
    struct V {
        std::string key, data, mac;
    };
    const std::string k131(131, '\xaa');
    const V v[] = {
        /* 1 */
        { std::string(20, '\x0b'), "Hi There",
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
        /* 2 */
        { "Jefe", "what do ya want for nothing?",
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
        /* 3 */
        { std::string(20, '\xaa'), std::string(50, '\xdd'),
          "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
        /* 4 */
        { unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
          std::string(50, '\xcd'),
          "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
        /* 6: key longer than the block */
        { k131, "Test Using Larger Than Block-Size Key - Hash Key First",
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
        /* 7 */
        { k131,
          "This is a test using a larger than block-size key and a larger "
          "than block-size data. The key needs to be hashed before being "
          "used by the HMAC algorithm.",
          "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
    };

    for (const V &t : v) {
        Hasher h(AK_HASH_HMAC_SHA256, t.key);
        ASSERT_NE(h.h, nullptr) << h.err;
        EXPECT_EQ(h.hex(t.data), t.mac);
        EXPECT_EQ(h.hex(t.data), t.mac) << "second use of the hasher";
    }
}

TEST(Hash, HmacMatchesOpenSslHmac)
{
    std::mt19937 rng(5);
    /* key lengths around the block size matter most */
    std::vector<size_t> klens = { 1, 2, 31, 32, 33, 63, 64, 65, 100, 128,
                                  129, 200 };
    for (size_t kl : klens) {
        std::string key(kl, '\0');
        for (auto &c : key) {
            c = static_cast<char>(rng());
        }
        Hasher h(AK_HASH_HMAC_SHA256, key);
        ASSERT_NE(h.h, nullptr);
        for (int i = 0; i < 40; i++) {
            std::string m(rng() % 300, '\0');
            for (auto &c : m) {
                c = static_cast<char>(rng());
            }
            unsigned char ref[EVP_MAX_MD_SIZE];
            unsigned int rl = 0;
            ASSERT_NE(HMAC(EVP_sha256(), key.data(), static_cast<int>(kl),
                           reinterpret_cast<const unsigned char *>(m.data()),
                           m.size(), ref, &rl),
                      nullptr);
            ASSERT_EQ(h.hex(m), hexs(ref, rl)) << "key " << kl << " msg "
                                               << m.size();
        }
    }
}

TEST(Hash, HmacDiffersFromSha256AndBySecret)
{
    Hasher s(AK_HASH_SHA256), a(AK_HASH_HMAC_SHA256, "one"),
        b(AK_HASH_HMAC_SHA256, "two");
    ASSERT_TRUE(s.h && a.h && b.h);
    EXPECT_NE(s.hex("key"), a.hex("key"));
    EXPECT_NE(a.hex("key"), b.hex("key"));
    EXPECT_EQ(a.hex("key"), a.hex("key"));
}

TEST(Hash, NoOpenSslAllocationPerDigest)
{
    ASSERT_EQ(g_counting_installed, 1)
        << "counting allocators could not be installed";

    for (int kind : { AK_HASH_SHA256, AK_HASH_HMAC_SHA256 }) {
        Hasher h(kind, std::string(100, 's'));
        ASSERT_NE(h.h, nullptr) << h.err;

        unsigned char out[AK_HASH_LEN];
        const unsigned char key[] = "ak_0123456789abcdefghijABCDEFGHIJ012345";
        ASSERT_EQ(ak_hasher_digest(h.h, key, sizeof(key) - 1, out), 0);

        long before = g_openssl_allocs.load();
        for (int i = 0; i < 1000; i++) {
            ASSERT_EQ(ak_hasher_digest(h.h, key, 1 + i % (sizeof(key) - 1),
                                       out),
                      0);
        }
        EXPECT_EQ(g_openssl_allocs.load() - before, 0)
            << "kind " << kind << ": OpenSSL allocated while digesting";
    }
}

TEST(Hash, CreationErrors)
{
    char err[AK_ERR_LEN];

    err[0] = '\0';
    EXPECT_EQ(ak_hasher_new(7, nullptr, 0, err, sizeof(err)), nullptr);
    EXPECT_NE(err[0], '\0');

    err[0] = '\0';
    EXPECT_EQ(ak_hasher_new(AK_HASH_HMAC_SHA256, nullptr, 0, err,
                            sizeof(err)),
              nullptr);
    EXPECT_NE(std::strstr(err, "secret"), nullptr) << err;

    const unsigned char s[] = "x";
    EXPECT_EQ(ak_hasher_new(AK_HASH_HMAC_SHA256, s, 0, err, sizeof(err)),
              nullptr);

    /* a tiny err buffer is respected */
    char small[4] = { 'z', 'z', 'z', 'z' };
    EXPECT_EQ(ak_hasher_new(7, nullptr, 0, small, 3), nullptr);
    EXPECT_EQ(small[2], '\0');
    EXPECT_EQ(small[3], 'z');

    ak_hasher_free(nullptr);    /* harmless */

    unsigned char out[AK_HASH_LEN];
    EXPECT_EQ(ak_hasher_digest(nullptr, s, 1, out), -1);
}

TEST(Hex, EncodeDecode)
{
    unsigned char in[AK_HASH_LEN];
    for (size_t i = 0; i < sizeof(in); i++) {
        in[i] = static_cast<unsigned char>(i * 37 + 1);
    }
    char hex[AK_HASH_HEX_LEN + 1];
    hex[AK_HASH_HEX_LEN] = '#';
    ak_hex_encode(in, sizeof(in), hex);
    EXPECT_EQ(hex[AK_HASH_HEX_LEN], '#') << "wrote past 2 * len";
    EXPECT_EQ(std::string(hex, 4), "0126");

    unsigned char out[AK_HASH_LEN];
    ASSERT_EQ(ak_hex_decode_hash(hex, AK_HASH_HEX_LEN, out), 0);
    EXPECT_EQ(std::memcmp(in, out, sizeof(in)), 0);

    /* upper case too */
    std::string up(hex, AK_HASH_HEX_LEN);
    for (auto &c : up) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    std::memset(out, 0, sizeof(out));
    ASSERT_EQ(ak_hex_decode_hash(up.data(), up.size(), out), 0);
    EXPECT_EQ(std::memcmp(in, out, sizeof(in)), 0);

    /* bad input leaves out alone */
    std::memset(out, 0x5a, sizeof(out));
    EXPECT_EQ(ak_hex_decode_hash(hex, AK_HASH_HEX_LEN - 1, out), -1);
    EXPECT_EQ(ak_hex_decode_hash(hex, AK_HASH_HEX_LEN + 1, out), -1);
    std::string bad(hex, AK_HASH_HEX_LEN);
    bad[63] = 'g';
    EXPECT_EQ(ak_hex_decode_hash(bad.data(), bad.size(), out), -1);
    bad[63] = ' ';
    EXPECT_EQ(ak_hex_decode_hash(bad.data(), bad.size(), out), -1);
    EXPECT_EQ(out[31], 0x5a);
    EXPECT_EQ(ak_hex_decode_hash(nullptr, AK_HASH_HEX_LEN, out), -1);
}

TEST(Hash, CppApi)
{
    Hasher s(AK_HASH_SHA256);
    ASSERT_NE(s.h, nullptr);
    EXPECT_EQ(ak::hash_hex(s.h, "abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(ak::hash_hex(nullptr, "abc"), "");

    unsigned char hash[AK_HASH_LEN];
    ASSERT_EQ(ak_hex_decode_hash(
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                  64, hash),
              0);
    EXPECT_EQ(ak::default_id(hash), "ba7816bf8f01");
    EXPECT_EQ(ak::hex_encode(hash, 3), "ba7816");
    EXPECT_EQ(ak::hex_encode(hash, 0), "");
}


/* every byte value (the encoder reads a table of digit pairs), lower case */
TEST(Hex, EncodeEveryByte)
{
    unsigned char in[256];
    for (int i = 0; i < 256; i++) {
        in[i] = static_cast<unsigned char>(i);
    }
    std::string hex(2 * 256 + 1, '#');
    ak_hex_encode(in, sizeof(in), &hex[0]);
    EXPECT_EQ('#', hex[2 * 256]) << "wrote past 2 * len";

    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 256; i++) {
        EXPECT_EQ(digits[i >> 4], hex[2 * i]) << i;
        EXPECT_EQ(digits[i & 15], hex[2 * i + 1]) << i;
    }

    ak_hex_encode(in, 0, &hex[0]);
    EXPECT_EQ('0', hex[0]) << "len 0 writes nothing";
}
