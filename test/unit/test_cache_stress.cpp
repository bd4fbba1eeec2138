/* SPDX-License-Identifier: BSD-2-Clause */
// A multi-process stress test of the shared-memory cache's protocol
// (src/core/cache.cpp): several forked processes share one cache in an
// anonymous MAP_SHARED mapping, as nginx workers share a zone, and mix
// lookups with every kind of write (puts of records of 1 to 7 slots,
// negative and bad entries, revokes, removes, evictions by filling a cache
// too small for the keys, expiry on a short ttl, rarely a new generation or
// a flush).  Writers always hold a process-shared lock (the zone mutex's
// stand-in).  Readers take it too, unless ak_core.h defines
// AK_CACHE_LOCKFREE_READS: then ak_cache_lookup (and _again) run without
// the lock, against the writers, which is what the test is for.
//
// Every record put carries its own hash, its length and a checksum of its
// content, so every copy a lookup hands out is checked: a torn copy (bytes
// of two versions, or of another key's entry) fails the checksum or the
// hash.  At the end the cache must pass ak_cache_check.  Bounded: about
// 1.5 s of work (AK_STRESS_MS), whatever the machine's speed.

#include <gtest/gtest.h>

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "ak_core.h"

namespace {

uint64_t
mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t
mono_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000
           + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

uint64_t
fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    return h;
}

const size_t   kKeys = 3000;        /* more than the cache holds */
const size_t   kHotKeys = 32;
const uint32_t kSlotsWanted = 2048;
const int      kProcs = 4;          /* on 2 CPUs: preempted mid-operation */

/*
 * A record: "AKST", the key's hash, the serial of the put, the total
 * length (u16), pseudo-random bytes derived from the serial, then the
 * FNV-1a of everything before it.  40 to 700 bytes: 1 to 7 slots.
 */
const size_t   kHead = 4 + AK_HASH_LEN + 8 + 2;

size_t
make_record(const unsigned char *hash, uint64_t serial, unsigned char *out)
{
    uint64_t x = serial;
    size_t len = kHead + 8 + (mix(&x) % 650);
    memcpy(out, "AKST", 4);
    memcpy(out + 4, hash, AK_HASH_LEN);
    memcpy(out + 4 + AK_HASH_LEN, &serial, 8);
    uint16_t l16 = static_cast<uint16_t>(len);
    memcpy(out + 4 + AK_HASH_LEN + 8, &l16, 2);
    for (size_t i = kHead; i < len - 8; i++) {
        out[i] = static_cast<unsigned char>(mix(&x));
    }
    uint64_t sum = fnv1a(out, len - 8);
    memcpy(out + len - 8, &sum, 8);
    return len;
}

/* NULL when buf[0, len) is an intact record of hash, else what is wrong */
const char *
check_record(const unsigned char *hash, const unsigned char *buf, size_t len)
{
    if (len < kHead + 8 || len > AK_RECORD_MAX) {
        return "length out of range";
    }
    if (memcmp(buf, "AKST", 4) != 0) {
        return "no record magic";
    }
    uint16_t l16;
    memcpy(&l16, buf + 4 + AK_HASH_LEN + 8, 2);
    if (l16 != len) {
        return "length does not match the record's";
    }
    uint64_t sum;
    memcpy(&sum, buf + len - 8, 8);
    if (sum != fnv1a(buf, len - 8)) {
        return "checksum mismatch (torn copy)";
    }
    if (memcmp(buf + 4, hash, AK_HASH_LEN) != 0) {
        return "the record of another key";
    }
    return nullptr;
}

/* the zone mutex's stand-in: compare-and-swap, then yield */
struct SpinLock {
    std::atomic<int> word;

    void lock()
    {
        for (unsigned n = 0;; n++) {
            int free_ = 0;
            if (word.load(std::memory_order_relaxed) == 0
                && word.compare_exchange_weak(free_, 1,
                       std::memory_order_acquire, std::memory_order_relaxed)) {
                return;
            }
            if (n % 64 == 63) {
                sched_yield();
            }
        }
    }
    void unlock() { word.store(0, std::memory_order_release); }
};

struct Shared {
    SpinLock              lock;
    std::atomic<int>      start;
    std::atomic<uint64_t> lookups;
    std::atomic<uint64_t> copies;       /* records copied out and checked */
    std::atomic<uint64_t> writes;
    std::atomic<uint64_t> failures;
    char                  first_failure[256];
    std::atomic<int>      failure_claimed;
    uint64_t              t0_ms;
};

struct Arena {
    void          *mem = MAP_FAILED;
    size_t         total = 0;
    Shared        *sh = nullptr;
    ak_cache_t    *cache = nullptr;
    unsigned char *hashes = nullptr;    /* kKeys x 32 */
};

void
report(Shared *sh, int proc, const char *what, uint64_t serial)
{
    sh->failures.fetch_add(1);
    if (sh->failure_claimed.exchange(1) == 0) {
        snprintf(sh->first_failure, sizeof(sh->first_failure),
                 "process %d: %s (op %llu)", proc, what,
                 static_cast<unsigned long long>(serial));
    }
}

const bool kLockfreeReads =
#ifdef AK_CACHE_LOCKFREE_READS
    true;
#else
    false;
#endif

void
worker(Arena *a, int proc, uint64_t run_ms)
{
    Shared *sh = a->sh;
    ak_cache_t *c = a->cache;
    uint64_t x = 0xabcdef12345ULL + static_cast<uint64_t>(proc) * 1000003;
    unsigned char rec[AK_RECORD_MAX], buf[AK_RECORD_MAX];
    uint64_t lookups = 0, copies = 0, writes = 0;

    while (sh->start.load(std::memory_order_acquire) == 0) {
        sched_yield();
    }
    uint64_t end = mono_ms() + run_ms;
    for (uint64_t op = 0;; op++) {
        if ((op & 255) == 0 && mono_ms() >= end) {
            break;
        }
        uint64_t now = mono_ms() - sh->t0_ms + 1000;
        /* half of the operations on a few hot keys, so that readers
           often meet an entry a writer is changing */
        uint64_t pick = mix(&x);
        size_t k = (pick & 1) ? (pick >> 1) % kHotKeys : (pick >> 1) % kKeys;
        const unsigned char *h = a->hashes + k * AK_HASH_LEN;
        unsigned r = static_cast<unsigned>(mix(&x) % 1000);

        if (r < 800) {
            size_t len = 0;
            uint32_t flags = 0, slot = 0;
            int rc;
            bool again = (r % 10) == 0;
            if (!kLockfreeReads) {
                sh->lock.lock();
            }
            rc = again ? ak_cache_lookup_again(c, h, now, buf, sizeof(buf),
                                               &len, &flags, &slot)
                       : ak_cache_lookup(c, h, now, buf, sizeof(buf), &len,
                                         &flags, &slot);
            if (!kLockfreeReads) {
                sh->lock.unlock();
            }
            lookups++;
            if (rc == AK_CACHE_FRESH || rc == AK_CACHE_STALE) {
                const char *bad = check_record(h, buf, len);
                if (bad != nullptr) {
                    report(sh, proc, bad, op);
                }
                copies++;
            } else if (rc != AK_CACHE_MISS && rc != AK_CACHE_NEGATIVE) {
                report(sh, proc, "unknown lookup answer", op);
            }
            continue;
        }

        sh->lock.lock();
        uint64_t seq = ak_cache_event_seq(c);
        if (r < 900) {
            size_t len = make_record(h, mix(&x), rec);
            if (ak_cache_put(c, h, rec, len, now, seq) != 0) {
                report(sh, proc, "ak_cache_put refused a record", op);
            }
        } else if (r < 930) {
            ak_cache_put_negative(c, h, now, seq);
        } else if (r < 945) {
            ak_cache_put_bad(c, h, now, seq, mix(&x) % 3);
        } else if (r < 970) {
            ak_cache_revoke(c, h);
        } else if (r < 995) {
            ak_cache_remove(c, h);
        } else if (r < 999) {
            uint32_t slot;
            ak_key_state_t *st = ak_cache_state_find(c, h, &slot);
            if (st != nullptr) {
                memset(st, 0, sizeof(*st));
            }
        } else if (mix(&x) % 20 == 0) {
            ak_cache_flush(c);
        } else {
            ak_cache_new_generation(c);
        }
        sh->lock.unlock();
        writes++;
    }
    sh->lookups.fetch_add(lookups);
    sh->copies.fetch_add(copies);
    sh->writes.fetch_add(writes);
}

class CacheStress : public ::testing::Test {
protected:
    Arena a;

    void SetUp() override
    {
        size_t cache_size = 256 + 8 + kSlotsWanted * ak_cache_bytes_per_key();
        cache_size = (cache_size + 4095) & ~size_t(4095);
        size_t sh_size = (sizeof(Shared) + 4095) & ~size_t(4095);
        a.total = cache_size + sh_size + kKeys * AK_HASH_LEN;
        a.mem = mmap(nullptr, a.total, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_NE(a.mem, MAP_FAILED);
        ak_cache_conf_t conf;
        /* short lifetimes: entries expire and go stale during the run */
        conf.ttl_ms = 40;
        conf.negative_ttl_ms = 15;
        conf.stale_ms = 60;
        conf.negative_max_pct = 25;
        a.cache = ak_cache_create(a.mem, cache_size, &conf);
        ASSERT_NE(a.cache, nullptr);
        a.sh = new (static_cast<char *>(a.mem) + cache_size) Shared();
        a.hashes = static_cast<unsigned char *>(a.mem) + cache_size + sh_size;
        uint64_t x = 777;
        for (size_t i = 0; i < kKeys * AK_HASH_LEN; i += 8) {
            uint64_t v = mix(&x);
            memcpy(a.hashes + i, &v, 8);
        }
    }

    void TearDown() override
    {
        if (a.mem != MAP_FAILED) {
            munmap(a.mem, a.total);
        }
    }
};

uint64_t
run_ms()
{
    const char *e = getenv("AK_STRESS_MS");
    long v = e != nullptr ? atol(e) : 0;
    return v > 0 && v <= 60000 ? static_cast<uint64_t>(v) : 1500;
}

TEST_F(CacheStress, ProcessesMixingLookupsAndWritesSeeIntactRecords)
{
    a.sh->t0_ms = mono_ms();
    std::vector<pid_t> kids;
    for (int p = 0; p < kProcs; p++) {
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            worker(&a, p, run_ms());
            _exit(0);
        }
        kids.push_back(pid);
    }
    a.sh->start.store(1, std::memory_order_release);
    for (pid_t k : kids) {
        int status = 0;
        ASSERT_EQ(waitpid(k, &status, 0), k);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
            << "a stress process died (status " << status << ")";
    }

    EXPECT_EQ(a.sh->failures.load(), 0u) << a.sh->first_failure;
    /* it did run: lookups, checked copies and writes of every kind */
    EXPECT_GT(a.sh->lookups.load(), 10000u);
    EXPECT_GT(a.sh->copies.load(), 1000u);
    EXPECT_GT(a.sh->writes.load(), 2000u);

    std::vector<unsigned char> scratch(ak_cache_check_scratch(a.cache));
    const char *bad = ak_cache_check(a.cache, scratch.data(), scratch.size());
    EXPECT_EQ(bad, nullptr) << bad;

    ak_cache_stats_t st;
    ak_cache_get_stats(a.cache, &st);
    EXPECT_GT(st.evictions, 0u) << "the cache was never full";
    EXPECT_GT(st.hits + st.stale_hits, 0u);
    printf("[ stress   ] %s reads, %llu lookups, %llu records checked, "
           "%llu writes, %llu evictions\n",
           kLockfreeReads ? "lock-free" : "locked",
           static_cast<unsigned long long>(a.sh->lookups.load()),
           static_cast<unsigned long long>(a.sh->copies.load()),
           static_cast<unsigned long long>(a.sh->writes.load()),
           static_cast<unsigned long long>(st.evictions));
}

} // namespace
