/* SPDX-License-Identifier: BSD-2-Clause */
// bench/tools/ak_sizes.cpp: shared memory per cached key, from the core
// itself (linked with build/core/*.o).
//
//   ak_sizes [SLOTS]
//
// For a few typical records it prints the blob size ak_record_build makes,
// the cache slots one entry takes, the bytes per key, and how many such keys
// a cache of SLOTS slots holds, computed and then measured: a cache of
// exactly SLOTS slots (SLOTS: api_key_cache_slots{state="total"} that the
// module reports for its zone; default: what a bare 128 MiB block gives) is
// filled with distinct keys until the first eviction.
//
// Output: a Markdown table on stdout, and "SIZES key=value" lines on stderr
// for the scripts.

#include "ak_core.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

const size_t kInline = 36;      /* blob bytes in the entry slot */
const size_t kOvfData = 116;    /* blob bytes per overflow slot */

struct Sample {
    const char *name;
    std::vector<std::string> fv;
};

uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int build(const std::vector<std::string> &fv, unsigned char *blob)
{
    std::vector<ak_str_t> f, v;
    for (size_t i = 0; i + 1 < fv.size(); i += 2) {
        f.push_back({fv[i].data(), fv[i].size()});
        v.push_back({fv[i + 1].data(), fv[i + 1].size()});
    }
    /* the default id of this hash (its first 12 hex digits) is
     * "3f2a9c1b7d4e" */
    unsigned char hash[AK_HASH_LEN] = {0x3f, 0x2a, 0x9c, 0x1b, 0x7d, 0x4e};
    ak_record_err_t err;
    int n = ak_record_build(hash, f.data(), v.data(), f.size(), blob,
                            AK_RECORD_MAX, &err);
    if (n <= 0) {
        std::fprintf(stderr, "ak_sizes: ak_record_build: %s\n", err.msg);
        std::exit(1);
    }
    return n;
}

size_t slots_for(size_t len)
{
    return len <= kInline ? 1 : 1 + (len - kInline + kOvfData - 1) / kOvfData;
}

/* a cache block of exactly `slots` slots (the layout of cache.cpp:
 * 256-byte header, 4-byte bucket heads rounded to 8, 128-byte slots) */
size_t block_size(uint64_t slots)
{
    return 256 + ((slots * 4 + 7) & ~uint64_t(7)) + slots * 128 + 8;
}

/* fills a fresh cache with distinct keys of this blob until the first
 * eviction; returns how many were cached then */
uint64_t fill(uint64_t slots, const unsigned char *blob, size_t len,
              uint32_t *got_slots)
{
    size_t size = block_size(slots);
    void *mem = std::aligned_alloc(4096, (size + 4095) & ~size_t(4095));
    if (mem == nullptr) {
        std::fprintf(stderr, "ak_sizes: no memory\n");
        std::exit(1);
    }
    ak_cache_conf_t conf = {60000, 5000, 600000, 25};
    ak_cache_t *c = ak_cache_create(mem, size, &conf);
    if (c == nullptr) {
        std::fprintf(stderr, "ak_sizes: ak_cache_create\n");
        std::exit(1);
    }
    ak_cache_stats_t st;
    ak_cache_get_stats(c, &st);
    *got_slots = st.slots_total;

    uint64_t seed = 1, n = 0;
    unsigned char h[AK_HASH_LEN];
    for (;;) {
        for (int i = 0; i < AK_HASH_LEN; i += 8) {
            uint64_t v = splitmix64(&seed);
            std::memcpy(h + i, &v, 8);
        }
        if (ak_cache_put(c, h, blob, len, 1000, ak_cache_event_seq(c)) != 0) {
            std::fprintf(stderr, "ak_sizes: ak_cache_put failed\n");
            std::exit(1);
        }
        ak_cache_get_stats(c, &st);
        if (st.evictions > 0) {
            break;
        }
        n++;
    }
    std::free(mem);
    return n;
}

} // namespace

int main(int argc, char **argv)
{
    /* default: the slots of a bare 128 MiB block */
    uint64_t slots = (128ull * 1024 * 1024 - 264) / 132;
    if (argc > 1) {
        slots = std::strtoull(argv[1], nullptr, 10);
        if (slots < 64) {
            std::fprintf(stderr, "usage: ak_sizes [SLOTS >= 64]\n");
            return 2;
        }
    }

    std::string cidrs10 =
        "192.0.2.0/24,198.51.100.0/24,203.0.113.0/24,10.1.0.0/16,"
        "10.2.0.0/16,172.16.0.0/12,2001:db8::/32,2001:db8:1::/48,fd00::/8,"
        "127.0.0.0/8";
    std::string refs10 =
        "app.example.com,*.shop.example.com,partner.example.net,"
        "*.cdn.example.org,www.example.io,dashboard.example.dev,"
        "*.eu.example.com,*.us.example.com,admin.example.co,*.example.com";

    std::vector<Sample> samples = {
        {"owner+plan+rate: owner `acme`, plan `pro`, rate `100/s`, burst 20",
         {"owner", "acme", "plan", "pro", "rate", "100/s", "burst", "20"}},
        {"owner+plan+rate: owner `customer-0000001`, plan `pro`, rate `100/s`, burst 20",
         {"owner", "customer-0000001", "plan", "pro", "rate", "100/s",
          "burst", "20"}},
        {"the same + the default `id` (the hash's first 12 hex digits, as `apikeyctl create` makes it) + `created_at`",
         {"id", "3f2a9c1b7d4e", "owner", "customer-0000001", "plan", "pro",
          "rate", "100/s", "burst", "20", "created_at", "1763840000"}},
        {"the same with a custom `id` (`customer-0000001-live`)",
         {"id", "customer-0000001-live", "owner", "customer-0000001",
          "plan", "pro", "rate", "100/s", "burst", "20"}},
        {"owner+plan+rate, longer names: owner `Acme Corporation Ltd`, plan `enterprise`",
         {"owner", "Acme Corporation Ltd", "plan", "enterprise", "rate",
          "1000/m", "burst", "50"}},
        {"owner+plan+rate + 10 CIDRs + 10 referrers",
         {"owner", "customer-0000001", "plan", "pro", "rate", "100/s",
          "burst", "20", "ips", cidrs10, "referrers", refs10}},
    };

    std::printf("| record | blob bytes | slots | bytes per key | keys in %llu slots (computed) | keys cached before the first eviction (measured) |\n"
                "|---|---:|---:|---:|---:|---:|\n",
                (unsigned long long) slots);

    unsigned char blob[AK_RECORD_MAX];
    int idx = 0;
    for (const Sample &s : samples) {
        size_t len = static_cast<size_t>(build(s.fv, blob));
        size_t ns = slots_for(len);
        size_t bpk = ns * ak_cache_bytes_per_key();
        uint32_t got = 0;
        uint64_t filled = fill(slots, blob, len, &got);
        if (got != slots) {
            std::fprintf(stderr, "ak_sizes: asked %llu slots, got %u\n",
                         (unsigned long long) slots, got);
        }
        std::printf("| %s | %zu | %zu | %zu | %llu | %llu |\n", s.name, len,
                    ns, bpk, (unsigned long long) (got / ns),
                    (unsigned long long) filled);
        std::fprintf(stderr, "SIZES sample=%d blob=%zu slots=%zu "
                     "bytes_per_key=%zu computed=%llu measured=%llu\n", idx,
                     len, ns, bpk, (unsigned long long) (got / ns),
                     (unsigned long long) filled);
        idx++;
    }
    std::fprintf(stderr, "SIZES bytes_per_key_min=%zu\n",
                 ak_cache_bytes_per_key());
    return 0;
}
