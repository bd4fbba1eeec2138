/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hash.cpp: SHA-256 and HMAC-SHA256 of keys, without allocation per digest.
 *
 * SHA-256 is fetched once (EVP_MD_fetch).  HMAC is built here on top of the
 * digest (RFC 2104): the 64-byte ipad/opad blocks are precomputed when the
 * hasher is made, then inner = H(ipad || key), outer = H(opad || inner).
 *
 * Why not EVP_DigestInit_ex2 on a reused EVP_MD_CTX per digest: in OpenSSL
 * 3.0 (Debian 12 ships 3.0.x) evp_md_init_internal() frees the context's
 * provider state and allocates a new one on every init, i.e. one
 * allocation per digest.  So the hasher takes the digest functions of the
 * fetched algorithm from its provider's dispatch table
 * (OSSL_PROVIDER_query_operation, public API), allocates one provider
 * context once, and re-initialises it per digest, which allocates nothing.
 * The result is checked against the EVP path once at creation.  Should the
 * provider's table not be usable, the hasher falls back to the one reused
 * EVP_MD_CTX with EVP_DigestInit_ex2 (correct, but one allocation per
 * digest on OpenSSL 3.0).
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "internal.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

namespace {

constexpr size_t kBlock = 64;   /* SHA-256 block size */

struct Dispatch {
    OSSL_FUNC_digest_newctx_fn *newctx;
    OSSL_FUNC_digest_init_fn *init;
    OSSL_FUNC_digest_update_fn *update;
    OSSL_FUNC_digest_final_fn *final;
    OSSL_FUNC_digest_freectx_fn *freectx;
};

void set_err(char *err, size_t err_len, const char *msg) noexcept
{
    if (err && err_len) {
        ak::ErrBuf e(err, err_len);
        e.add(msg);
    }
}

/* true if the ':'-separated names of an algorithm include one of md's */
bool names_match(const EVP_MD *md, const char *names) noexcept
{
    char name[128];

    while (names && *names) {
        const char *end = std::strchr(names, ':');
        size_t n = end ? static_cast<size_t>(end - names)
                       : std::strlen(names);
        if (n > 0 && n < sizeof(name)) {
            std::memcpy(name, names, n);
            name[n] = '\0';
            if (EVP_MD_is_a(md, name)) {
                return true;
            }
        }
        names = end ? end + 1 : nullptr;
    }
    return false;
}

bool find_dispatch(const EVP_MD *md, Dispatch *d, void **provctx) noexcept
{
    const OSSL_PROVIDER *prov = EVP_MD_get0_provider(md);
    if (prov == nullptr) {
        return false;
    }

    int no_cache = 0;
    const OSSL_ALGORITHM *algs =
        OSSL_PROVIDER_query_operation(prov, OSSL_OP_DIGEST, &no_cache);
    if (algs == nullptr) {
        return false;
    }

    bool found = false;

    for (const OSSL_ALGORITHM *a = algs; a->algorithm_names; a++) {
        if (!names_match(md, a->algorithm_names)) {
            continue;
        }

        Dispatch t{};
        for (const OSSL_DISPATCH *f = a->implementation; f && f->function_id;
             f++)
        {
            switch (f->function_id) {
            case OSSL_FUNC_DIGEST_NEWCTX:
                t.newctx = OSSL_FUNC_digest_newctx(f);
                break;
            case OSSL_FUNC_DIGEST_INIT:
                t.init = OSSL_FUNC_digest_init(f);
                break;
            case OSSL_FUNC_DIGEST_UPDATE:
                t.update = OSSL_FUNC_digest_update(f);
                break;
            case OSSL_FUNC_DIGEST_FINAL:
                t.final = OSSL_FUNC_digest_final(f);
                break;
            case OSSL_FUNC_DIGEST_FREECTX:
                t.freectx = OSSL_FUNC_digest_freectx(f);
                break;
            default:
                break;
            }
        }

        if (t.newctx && t.init && t.update && t.final && t.freectx) {
            *d = t;
            found = true;
            break;
        }
    }

    OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_DIGEST, algs);

    if (found) {
        *provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
    }
    return found;
}

} // namespace


struct ak_hasher_s {
    int kind;
    EVP_MD *md;
    EVP_MD_CTX *ctx;        /* the EVP path: fallback and self-test */
    Dispatch d;
    void *algctx;           /* the provider path, when available */
    unsigned char ipad[kBlock];
    unsigned char opad[kBlock];
};

namespace {

/* SHA-256 of the concatenation of up to two buffers */
bool digest2(ak_hasher_t *h, bool use_provider, const unsigned char *a,
    size_t alen, const unsigned char *b, size_t blen,
    unsigned char out[AK_HASH_LEN]) noexcept
{
    if (use_provider) {
        size_t outl = 0;
        if (!h->d.init(h->algctx, nullptr)
            || (alen && !h->d.update(h->algctx, a, alen))
            || (blen && !h->d.update(h->algctx, b, blen))
            || !h->d.final(h->algctx, out, &outl, AK_HASH_LEN)
            || outl != AK_HASH_LEN)
        {
            return false;
        }
        return true;
    }

    unsigned int outl = 0;
    if (!EVP_DigestInit_ex2(h->ctx, h->md, nullptr)
        || (alen && !EVP_DigestUpdate(h->ctx, a, alen))
        || (blen && !EVP_DigestUpdate(h->ctx, b, blen))
        || !EVP_DigestFinal_ex(h->ctx, out, &outl)
        || outl != AK_HASH_LEN)
    {
        return false;
    }
    return true;
}

bool digest(ak_hasher_t *h, const unsigned char *key, size_t len,
    unsigned char out[AK_HASH_LEN]) noexcept
{
    bool prov = h->algctx != nullptr;

    if (h->kind == AK_HASH_SHA256) {
        return digest2(h, prov, key, len, nullptr, 0, out);
    }

    unsigned char inner[AK_HASH_LEN];
    bool ok = digest2(h, prov, h->ipad, kBlock, key, len, inner)
              && digest2(h, prov, h->opad, kBlock, inner, AK_HASH_LEN, out);
    OPENSSL_cleanse(inner, sizeof(inner));
    return ok;
}

} // namespace


extern "C" ak_hasher_t *
ak_hasher_new(int kind, const unsigned char *secret, size_t secret_len,
    char *err, size_t err_len) noexcept
{
    if (err && err_len) {
        err[0] = '\0';
    }

    if (kind != AK_HASH_SHA256 && kind != AK_HASH_HMAC_SHA256) {
        set_err(err, err_len, "unknown hash kind");
        return nullptr;
    }

    if (kind == AK_HASH_HMAC_SHA256 && (secret == nullptr || secret_len == 0))
    {
        set_err(err, err_len, "hmac-sha256 needs a non-empty secret");
        return nullptr;
    }

    ak_hasher_t *h = static_cast<ak_hasher_t *>(std::calloc(1, sizeof(*h)));
    if (h == nullptr) {
        set_err(err, err_len, "out of memory");
        return nullptr;
    }

    h->kind = kind;
    h->md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    h->ctx = EVP_MD_CTX_new();

    if (h->md == nullptr || h->ctx == nullptr
        || EVP_MD_get_size(h->md) != AK_HASH_LEN
        || EVP_MD_get_block_size(h->md) != static_cast<int>(kBlock))
    {
        set_err(err, err_len, "cannot fetch SHA256 from OpenSSL");
        ak_hasher_free(h);
        return nullptr;
    }

    void *provctx = nullptr;
    if (find_dispatch(h->md, &h->d, &provctx)) {
        h->algctx = h->d.newctx(provctx);
    }

    /* self-test: the provider path must agree with the EVP path */
    static const unsigned char abc[] = { 'a', 'b', 'c' };
    unsigned char want[AK_HASH_LEN], got[AK_HASH_LEN];

    if (!digest2(h, false, abc, sizeof(abc), nullptr, 0, want)) {
        set_err(err, err_len, "SHA256 does not work");
        ak_hasher_free(h);
        return nullptr;
    }

    if (h->algctx
        && (!digest2(h, true, abc, sizeof(abc), nullptr, 0, got)
            || std::memcmp(want, got, AK_HASH_LEN) != 0))
    {
        h->d.freectx(h->algctx);
        h->algctx = nullptr;
    }

    if (kind == AK_HASH_HMAC_SHA256) {
        unsigned char k0[kBlock];
        std::memset(k0, 0, sizeof(k0));

        if (secret_len > kBlock) {
            if (!digest2(h, false, secret, secret_len, nullptr, 0, k0)) {
                OPENSSL_cleanse(k0, sizeof(k0));
                set_err(err, err_len, "SHA256 does not work");
                ak_hasher_free(h);
                return nullptr;
            }
        } else {
            std::memcpy(k0, secret, secret_len);
        }

        for (size_t i = 0; i < kBlock; i++) {
            h->ipad[i] = static_cast<unsigned char>(k0[i] ^ 0x36);
            h->opad[i] = static_cast<unsigned char>(k0[i] ^ 0x5c);
        }

        OPENSSL_cleanse(k0, sizeof(k0));
    }

    return h;
}


extern "C" void
ak_hasher_free(ak_hasher_t *h) noexcept
{
    if (h == nullptr) {
        return;
    }

    if (h->algctx) {
        h->d.freectx(h->algctx);
    }
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);

    OPENSSL_cleanse(h, sizeof(*h));
    std::free(h);
}


extern "C" int
ak_hasher_digest(ak_hasher_t *h, const unsigned char *key, size_t len,
    unsigned char out[AK_HASH_LEN]) noexcept
{
    if (h == nullptr || out == nullptr || (key == nullptr && len != 0)) {
        return -1;
    }

    return digest(h, key, len, out) ? 0 : -1;
}


namespace {

/* the two hex digits of each byte value: one load and one store a byte */
struct HexPairs {
    char d[256][2];
    constexpr HexPairs() : d()
    {
        const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 256; i++) {
            d[i][0] = hex[i >> 4];
            d[i][1] = hex[i & 0x0f];
        }
    }
};

constexpr HexPairs kHexPairs;

} // namespace


extern "C" void
ak_hex_encode(const unsigned char *in, size_t len, char *out) noexcept
{
    /* hot: the default id of every record without one (ak_record_view) */
    for (size_t i = 0; i < len; i++) {
        std::memcpy(out + 2 * i, kHexPairs.d[in[i]], 2);
    }
}


extern "C" int
ak_hex_decode_hash(const char *hex, size_t len, unsigned char out[AK_HASH_LEN]) noexcept
{
    if (hex == nullptr || out == nullptr || len != AK_HASH_HEX_LEN) {
        return -1;
    }

    unsigned char tmp[AK_HASH_LEN];

    for (size_t i = 0; i < AK_HASH_LEN; i++) {
        int v = 0;
        for (size_t k = 0; k < 2; k++) {
            unsigned char c = static_cast<unsigned char>(hex[2 * i + k]);
            int d;
            if (c >= '0' && c <= '9') {
                d = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                d = c - 'a' + 10;
            } else if (c >= 'A' && c <= 'F') {
                d = c - 'A' + 10;
            } else {
                return -1;
            }
            v = v * 16 + d;
        }
        tmp[i] = static_cast<unsigned char>(v);
    }

    std::memcpy(out, tmp, AK_HASH_LEN);
    return 0;
}


/* ---- C++ API --------------------------------------------------------- */

namespace ak {

std::string hex_encode(const unsigned char *data, size_t len)
{
    std::string s(2 * len, '\0');
    if (len) {
        ak_hex_encode(data, len, &s[0]);
    }
    return s;
}


std::string hash_hex(ak_hasher_t *h, std::string_view key)
{
    unsigned char d[AK_HASH_LEN];

    if (ak_hasher_digest(h, reinterpret_cast<const unsigned char *>(
                                key.data()),
                         key.size(), d)
        != 0)
    {
        return std::string();
    }

    return hex_encode(d, sizeof(d));
}


std::string default_id(const unsigned char hash[AK_HASH_LEN])
{
    return hex_encode(hash, AK_ID_DEFAULT_LEN / 2);
}

} // namespace ak
