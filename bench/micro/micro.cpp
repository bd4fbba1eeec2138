/* SPDX-License-Identifier: BSD-2-Clause */
// bench/micro/micro.cpp: Google Benchmark micro-benchmarks of the C++ core
// (`make bench-micro`), through its C API (src/core/ak_core.h), the way the
// nginx glue calls it on every request:
//
//   hashing      SHA-256 and HMAC-SHA256 of a 40-byte key (+ hex, as the
//                glue makes the Redis name)
//   key format   "any" and "checksum" checks
//   cache        lookup of a present key in a cache holding 1M entries (and of
//                an absent one), put (replace)
//   records      ak_record_build from HGETALL fields, ak_record_view (a
//                typical record; one with rate + 10 CIDRs + 10 referrers)
//   rules        CIDR match (10 rules), referrer match (10 rules)
//   GCRA         one rate-limit update
//   memory       the machine's reference: a chain of dependent reads in a
//                block of the 1M-key cache's size
//
// Each lookup of the 1M-entry cache picks a pseudo-random present key, so
// most lookups miss the TLB, and the CPU caches where the last-level cache
// is smaller than the cache's 146 MB, as they would with real traffic.

#include "ak_core.h"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

const char kKey40[] = "ak_3xQm9vT2LpR8sWcY1nHb6KdFz0JgE4aU7t5oX";  // 40 bytes
static_assert(sizeof(kKey40) - 1 == 40, "40-byte key");

uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void random_hash(uint64_t *s, unsigned char h[AK_HASH_LEN])
{
    for (int i = 0; i < AK_HASH_LEN; i += 8) {
        uint64_t v = splitmix64(s);
        std::memcpy(h + i, &v, 8);
    }
}

[[noreturn]] void fail(const char *what)
{
    std::fprintf(stderr, "micro: %s\n", what);
    std::exit(1);
}

ak_hasher_t *make_hasher(int kind)
{
    char err[AK_ERR_LEN];
    static const unsigned char secret[] = "bench-secret-0123456789abcdef";
    ak_hasher_t *h = ak_hasher_new(kind, secret, sizeof(secret) - 1, err,
                                   sizeof(err));
    if (h == nullptr) {
        fail(err);
    }
    return h;
}

/* a record blob built from HGETALL-style field/value pairs */
std::vector<unsigned char> build(const std::vector<std::string> &fv)
{
    std::vector<ak_str_t> f, v;
    for (size_t i = 0; i + 1 < fv.size(); i += 2) {
        f.push_back({fv[i].data(), fv[i].size()});
        v.push_back({fv[i + 1].data(), fv[i + 1].size()});
    }
    unsigned char hash[AK_HASH_LEN] = {1, 2, 3};
    std::vector<unsigned char> blob(AK_RECORD_MAX);
    ak_record_err_t err;
    int n = ak_record_build(hash, f.data(), v.data(), f.size(), blob.data(),
                            blob.size(), &err);
    if (n <= 0) {
        fail(err.msg);
    }
    blob.resize(static_cast<size_t>(n));
    return blob;
}

const std::vector<std::string> kTypical = {
    "owner", "customer-0000001", "plan", "pro", "rate", "100/s",
    "burst", "20",
};

const char kIps10[] =
    "192.0.2.0/24,198.51.100.0/24,203.0.113.0/24,10.1.0.0/16,10.2.0.0/16,"
    "172.16.0.0/12,2001:db8::/32,2001:db8:1::/48,fd00::/8,127.0.0.0/8";

const char kReferrers10[] =
    "app.example.com,*.shop.example.com,partner.example.net,*.cdn.example.org,"
    "www.example.io,dashboard.example.dev,*.eu.example.com,*.us.example.com,"
    "admin.example.co,*.example.com";

} // namespace


// --- hashing -----------------------------------------------------------------

/* one 40-byte key hashed per iteration, with a hasher made once (as each
   nginx worker does); hex: also encoded as the Redis key's 64 hex digits */
static void hash_40B(benchmark::State &state, int kind, bool hex)
{
    ak_hasher_t *h = make_hasher(kind);
    unsigned char out[AK_HASH_LEN];
    char text[AK_HASH_HEX_LEN];
    for (auto _ : state) {
        ak_hasher_digest(h, reinterpret_cast<const unsigned char *>(kKey40),
                         40, out);
        if (hex) {
            ak_hex_encode(out, AK_HASH_LEN, text);
            benchmark::DoNotOptimize(text);
        }
        benchmark::DoNotOptimize(out);
    }
    ak_hasher_free(h);
}

static void BM_Sha256_40B(benchmark::State &state)
{
    hash_40B(state, AK_HASH_SHA256, false);
}
BENCHMARK(BM_Sha256_40B);

static void BM_HmacSha256_40B(benchmark::State &state)
{
    hash_40B(state, AK_HASH_HMAC_SHA256, false);
}
BENCHMARK(BM_HmacSha256_40B);

static void BM_Sha256Hex_40B(benchmark::State &state)
{
    hash_40B(state, AK_HASH_SHA256, true);
}
BENCHMARK(BM_Sha256Hex_40B);


// --- key format --------------------------------------------------------------

static void BM_KeyCheckAny_40B(benchmark::State &state)
{
    for (auto _ : state) {
        benchmark::DoNotOptimize(ak_key_check_any(
            reinterpret_cast<const unsigned char *>(kKey40), 40));
    }
}
BENCHMARK(BM_KeyCheckAny_40B);

/* CRC-32 (IEEE, as zlib's crc32()), for making a valid checksum key */
static uint32_t crc32_ieee(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
        }
    }
    return ~c;
}

static void BM_KeyCheckChecksum(benchmark::State &state)
{
    /* "ak_" + 30 base62 + 6 base62 digits of the CRC-32 of what precedes */
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::string key = "ak_3xQm9vT2LpR8sWcY1nHb6KdFz0JgE4";
    uint32_t crc = crc32_ieee(reinterpret_cast<const unsigned char *>(
                                  key.data()), key.size());
    char sum[6];
    for (int i = 5; i >= 0; i--) {
        sum[i] = alphabet[crc % 62];
        crc /= 62;
    }
    key.append(sum, 6);
    const unsigned char *k = reinterpret_cast<const unsigned char *>(
                                 key.data());
    if (!ak_key_check_checksum(k, key.size(),
            reinterpret_cast<const unsigned char *>("ak"), 2)) {
        fail("the checksum key does not pass ak_key_check_checksum");
    }
    for (auto _ : state) {
        benchmark::DoNotOptimize(ak_key_check_checksum(k, key.size(),
            reinterpret_cast<const unsigned char *>("ak"), 2));
    }
}
BENCHMARK(BM_KeyCheckChecksum);


// --- the shared-memory cache ----------------------------------------------

namespace {

/* the digest of entry i, computed (in registers) rather than read */
inline void hash_of(size_t i, unsigned char h[AK_HASH_LEN])
{
    uint64_t seed = 42 + i * 0x2545f4914f6cdd1dULL;
    random_hash(&seed, h);
}

struct BigCache {
    static constexpr size_t kEntries = 1000000;

    void                      *mem = nullptr;
    ak_cache_t                *cache = nullptr;
    std::vector<unsigned char> hashes;      /* kEntries x 32 */
    std::vector<unsigned char> blob;

    BigCache()
    {
        /* room for 1M entries and 10% more slots: nothing is evicted */
        size_t size = 256 + 8 + (kEntries + kEntries / 10)
                      * ak_cache_bytes_per_key();
        mem = std::aligned_alloc(4096, (size + 4095) & ~size_t(4095));
        if (mem == nullptr) {
            fail("no memory for the cache");
        }
        ak_cache_conf_t conf = {60000, 5000, 600000, 25};
        cache = ak_cache_create(mem, size, &conf);
        if (cache == nullptr) {
            fail("ak_cache_create");
        }
        blob = build(kTypical);
        hashes.resize(kEntries * AK_HASH_LEN);
        for (size_t i = 0; i < kEntries; i++) {
            unsigned char *h = &hashes[i * AK_HASH_LEN];
            hash_of(i, h);
            if (ak_cache_put(cache, h, blob.data(), blob.size(), 1000,
                             ak_cache_event_seq(cache)) != 0) {
                fail("ak_cache_put");
            }
        }
        ak_cache_stats_t st;
        ak_cache_get_stats(cache, &st);
        if (st.entries != kEntries || st.evictions != 0) {
            fail("the cache does not hold 1M entries");
        }
    }
};

BigCache &big_cache()
{
    static BigCache c;
    return c;
}

} // namespace

/*
 * A hit on a random one of 1M keys.  The probe's digest is computed, as the
 * module has it (just hashed: in the CPU's cache), not read from the 32 MB
 * table of digests: that read was a DRAM miss of the benchmark's own, before
 * the cache's (BM_CacheLookupHit_1M_TableDigest keeps it, for comparison
 * with the figures measured that way).
 */
static void BM_CacheLookupHit_1M(benchmark::State &state)
{
    BigCache &bc = big_cache();
    unsigned char buf[AK_RECORD_MAX], h[AK_HASH_LEN];
    size_t len;
    uint32_t flags, slot;
    uint64_t seed = 7;
    for (auto _ : state) {
        size_t i = splitmix64(&seed) % BigCache::kEntries;
        hash_of(i, h);
        int rc = ak_cache_lookup(bc.cache, h, 2000, buf, sizeof(buf), &len,
                                 &flags, &slot);
        if (rc != AK_CACHE_FRESH) {
            state.SkipWithError("not a hit");
            break;
        }
        benchmark::DoNotOptimize(buf);
    }
}
BENCHMARK(BM_CacheLookupHit_1M);

static void BM_CacheLookupHit_1M_TableDigest(benchmark::State &state)
{
    BigCache &bc = big_cache();
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot;
    uint64_t seed = 7;
    for (auto _ : state) {
        size_t i = splitmix64(&seed) % BigCache::kEntries;
        int rc = ak_cache_lookup(bc.cache, &bc.hashes[i * AK_HASH_LEN], 2000,
                                 buf, sizeof(buf), &len, &flags, &slot);
        if (rc != AK_CACHE_FRESH) {
            state.SkipWithError("not a hit");
            break;
        }
        benchmark::DoNotOptimize(buf);
    }
}
BENCHMARK(BM_CacheLookupHit_1M_TableDigest);

static void BM_CacheLookupHitSameKey_1M(benchmark::State &state)
{
    BigCache &bc = big_cache();
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot;
    for (auto _ : state) {
        int rc = ak_cache_lookup(bc.cache, &bc.hashes[12345 * AK_HASH_LEN],
                                 2000, buf, sizeof(buf), &len, &flags, &slot);
        benchmark::DoNotOptimize(rc);
        benchmark::DoNotOptimize(buf);
    }
}
BENCHMARK(BM_CacheLookupHitSameKey_1M);

static void BM_CacheLookupAbsent_1M(benchmark::State &state)
{
    BigCache &bc = big_cache();
    unsigned char buf[AK_RECORD_MAX], h[AK_HASH_LEN];
    size_t len;
    uint32_t flags, slot;
    uint64_t seed = 99999;
    for (auto _ : state) {
        random_hash(&seed, h);
        int rc = ak_cache_lookup(bc.cache, h, 2000, buf, sizeof(buf), &len,
                                 &flags, &slot);
        benchmark::DoNotOptimize(rc);
    }
}
BENCHMARK(BM_CacheLookupAbsent_1M);

static void BM_CachePutReplace_1M(benchmark::State &state)
{
    BigCache &bc = big_cache();
    uint64_t seed = 11;
    for (auto _ : state) {
        size_t i = splitmix64(&seed) % BigCache::kEntries;
        benchmark::DoNotOptimize(ak_cache_put(bc.cache,
            &bc.hashes[i * AK_HASH_LEN], bc.blob.data(), bc.blob.size(), 2000,
            ak_cache_event_seq(bc.cache)));
    }
}
BENCHMARK(BM_CachePutReplace_1M);

namespace {

/*
 * The machine's reference for the lookups above: a chain of reads in a
 * block the size of the 1M-key cache's slots (1.1 M slots of 128 bytes),
 * each read's address taken from the one before (a random cycle through
 * every slot: no read overlaps another), so each misses the TLB, and the
 * CPU caches where the last-level cache is smaller than the block.  A
 * random hit needs about one such read (its bucket group and home slots
 * are fetched at once; one lookup's misses may overlap the next's); read
 * beside the lookups, it says how much of their cost is the machine's
 * memory at that moment.
 */
struct Chase {
    static constexpr size_t kSlots = BigCache::kEntries + BigCache::kEntries / 10;
    static constexpr size_t kStride = 128 / sizeof(uint64_t);

    uint64_t *mem = nullptr;

    Chase()
    {
        size_t bytes = kSlots * 128;
        mem = static_cast<uint64_t *>(std::aligned_alloc(4096, bytes));
        if (mem == nullptr) {
            fail("no memory for the chase");
        }
        std::vector<uint32_t> order(kSlots);
        for (size_t i = 0; i < kSlots; i++) {
            order[i] = static_cast<uint32_t>(i);
        }
        /* the slots in a random order, each linking the next in it (the
         * last the first): one cycle through all of them */
        uint64_t seed = 3;
        for (size_t i = kSlots - 1; i > 0; i--) {
            size_t j = splitmix64(&seed) % i;
            std::swap(order[i], order[j]);
        }
        for (size_t i = 0; i < kSlots; i++) {
            mem[order[i] * kStride] = order[(i + 1) % kSlots];
        }
    }
};

Chase &chase()
{
    static Chase c;
    return c;
}

} // namespace

static void BM_MemoryLatency_1M(benchmark::State &state)
{
    Chase &ch = chase();
    uint64_t i = 0;
    for (auto _ : state) {
        i = ch.mem[i * Chase::kStride];
        benchmark::DoNotOptimize(i);
    }
}
BENCHMARK(BM_MemoryLatency_1M);


// --- records -----------------------------------------------------------------

static void BM_RecordBuild_Typical(benchmark::State &state)
{
    std::vector<ak_str_t> f, v;
    for (size_t i = 0; i < kTypical.size(); i += 2) {
        f.push_back({kTypical[i].data(), kTypical[i].size()});
        v.push_back({kTypical[i + 1].data(), kTypical[i + 1].size()});
    }
    unsigned char hash[AK_HASH_LEN] = {1};
    unsigned char blob[AK_RECORD_MAX];
    ak_record_err_t err;
    for (auto _ : state) {
        benchmark::DoNotOptimize(ak_record_build(hash, f.data(), v.data(),
            f.size(), blob, sizeof(blob), &err));
    }
}
BENCHMARK(BM_RecordBuild_Typical);

static void BM_RecordView_Typical(benchmark::State &state)
{
    std::vector<unsigned char> blob = build(kTypical);
    unsigned char hash[AK_HASH_LEN] = {1};
    ak_record_t rec;
    for (auto _ : state) {
        benchmark::DoNotOptimize(ak_record_view(hash, blob.data(), blob.size(),
                                                &rec));
        benchmark::DoNotOptimize(rec);
    }
}
BENCHMARK(BM_RecordView_Typical);


// --- rules -------------------------------------------------------------------

namespace {

struct RuleRecord {
    std::vector<unsigned char> blob;
    ak_record_t rec;
    unsigned char hash[AK_HASH_LEN] = {5};

    RuleRecord()
    {
        blob = build({"owner", "acme", "ips", kIps10, "referrers",
                      kReferrers10});
        if (ak_record_view(hash, blob.data(), blob.size(), &rec) != 0) {
            fail("ak_record_view");
        }
    }
};

RuleRecord &rules()
{
    static RuleRecord r;
    return r;
}

} // namespace

/* a record with rate, 10 CIDRs and 10 referrers rules, viewed by view */
static void
view_rules(benchmark::State &state,
    int (*view)(const unsigned char *, const unsigned char *, size_t,
                ak_record_t *))
{
    std::vector<unsigned char> blob = build({"owner", "acme", "plan", "pro",
        "rate", "100/s", "burst", "20", "ips", kIps10, "referrers",
        kReferrers10});
    unsigned char hash[AK_HASH_LEN] = {1};
    ak_record_t rec;
    for (auto _ : state) {
        benchmark::DoNotOptimize(view(hash, blob.data(), blob.size(), &rec));
        benchmark::DoNotOptimize(rec);
    }
}

/* the full view (its sections are checked), as a record built or
   replaced is viewed */
static void BM_RecordView_Rules(benchmark::State &state)
{
    view_rules(state, ak_record_view);
}
BENCHMARK(BM_RecordView_Rules);

/* the request path's view: the rules' bytes left to the matchers, no
   default id */
static void BM_RecordViewLazy_Rules(benchmark::State &state)
{
    view_rules(state, ak_record_view_lazy);
}
BENCHMARK(BM_RecordViewLazy_Rules);

/* state.range(0): 1 = the address matches the last rule, 0 = no rule */
static void BM_CidrMatch_10Rules_IPv4(benchmark::State &state)
{
    RuleRecord &r = rules();
    const unsigned char hit[4] = {127, 0, 0, 1};
    const unsigned char miss[4] = {8, 8, 8, 8};
    const unsigned char *a = state.range(0) ? hit : miss;
    for (auto _ : state) {
        int ok = ak_record_ip_allowed(&r.rec, 4, a);
        if (ok != state.range(0)) {
            state.SkipWithError("unexpected CIDR match result");
            break;
        }
        benchmark::DoNotOptimize(ok);
    }
}
BENCHMARK(BM_CidrMatch_10Rules_IPv4)->ArgName("match")->Arg(1)->Arg(0);

static void BM_CidrMatch_10Rules_IPv6(benchmark::State &state)
{
    RuleRecord &r = rules();
    /* fd00::1 matches rule 9 of 10; 2001:4860::8888 matches none */
    const unsigned char hit[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 0, 0, 0, 1};
    const unsigned char miss[16] = {0x20, 0x01, 0x48, 0x60, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0x88, 0x88};
    const unsigned char *a = state.range(0) ? hit : miss;
    for (auto _ : state) {
        int ok = ak_record_ip_allowed(&r.rec, 6, a);
        if (ok != state.range(0)) {
            state.SkipWithError("unexpected CIDR match result");
            break;
        }
        benchmark::DoNotOptimize(ok);
    }
}
BENCHMARK(BM_CidrMatch_10Rules_IPv6)->ArgName("match")->Arg(1)->Arg(0);

/* the referrer check of the 10 rules on hit (state.range(0) 1) or miss */
static void referrer_match(benchmark::State &state, const char *hit,
    const char *miss)
{
    RuleRecord &r = rules();
    const char *ref = state.range(0) ? hit : miss;
    size_t len = std::strlen(ref);
    for (auto _ : state) {
        int ok = ak_record_referrer_allowed(&r.rec, ref, len);
        if (ok != state.range(0)) {
            state.SkipWithError("unexpected referrer match result");
            break;
        }
        benchmark::DoNotOptimize(ok);
    }
}

static void BM_ReferrerMatch_10Rules(benchmark::State &state)
{
    /* matches only the last rule, "*.example.com" / matches none */
    referrer_match(state, "https://www.api.example.com/docs/page?x=1",
                   "https://evil.example.net.attacker.test/x");
}
BENCHMARK(BM_ReferrerMatch_10Rules)->ArgName("match")->Arg(1)->Arg(0);

/* a Referer without a path: fewer than sixteen bytes after the scheme */
static void BM_ReferrerMatch_10Rules_NoPath(benchmark::State &state)
{
    referrer_match(state, "https://www.example.com", "https://example.net");
}
BENCHMARK(BM_ReferrerMatch_10Rules_NoPath)->ArgName("match")->Arg(1)->Arg(0);


// --- GCRA --------------------------------------------------------------------

static void BM_Gcra(benchmark::State &state)
{
    uint64_t tat = 0, now = 1000000;
    ak_rate_result_t res;
    for (auto _ : state) {
        now += 1000;   /* 1000 requests/s against 100/s + burst 20: mixed */
        benchmark::DoNotOptimize(ak_gcra(&tat, now, 10000, 20, &res));
    }
}
BENCHMARK(BM_Gcra);

BENCHMARK_MAIN();
