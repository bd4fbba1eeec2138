/* SPDX-License-Identifier: BSD-2-Clause */
// bench/scale/scale.cpp: the core cache shared by N processes (`make
// bench-scale`, bench/scale.sh).
//
// One anonymous MAP_SHARED mapping holds the cache (ak_cache_create), filled
// with KEYS entries before anything forks, and a control block (the lock,
// the start/stop flags, one counter line per process).  For each N of the
// list and each round, N processes are forked (stand-ins for nginx workers),
// each pinned with sched_setaffinity round-robin over the CPUs the
// benchmark may use, and each does random hits (ak_cache_lookup of a
// present key, the record copied out) until the parent raises the stop
// flag after SECONDS.  Each reports its hits and the CPU time it used
// (CLOCK_PROCESS_CPUTIME_ID), so the cost of a hit is CPU ns / hit, which
// oversubscription (more processes than CPUs) does not inflate unless the
// processes waste CPU waiting for each other.
//
// Modes:
//   lock      every cache call under a process-shared lock taken the way
//             nginx's ngx_shmtx_lock takes a zone's mutex on Linux (atomic
//             compare-and-swap of a lock word; on contention, spin with the
//             pause instruction in doubling rounds up to 2048 pauses when
//             there is more than one CPU; then sleep on a process-shared
//             POSIX semaphore, posted by the unlocker when waiters are
//             counted).  This is what the module does today: every lookup
//             (and a rated key's limiter call) takes the slab pool's mutex.
//   lockfree  readers call ak_cache_lookup without any lock; writers (the
//             optional writer process) still take it.  Only valid when the
//             core's lookup is safe without the lock: compiled in only when
//             ak_core.h defines AK_CACHE_LOCKFREE_READS, refused otherwise.
//
// --writer-rate R adds one process doing R puts per second (replacing
// random present keys with the same record, under the lock in both modes).
//
// Output: one line per (N, round) on stderr while running, then a Markdown
// table on stdout: per N the median and spread (min..max) over the rounds
// of the total hits per second, hits per second per process, the scaling
// ratio against N=1 (medians), CPU ns per hit and its ratio against N=1,
// the CPUs the readers got (their CPU time over the round's time: below
// min(N, CPUs) when other work shares the machine, which then, not the
// cache, limits the scaling), and the share of lookups that retried
// (lockfree, when the core's statistics count retries).

#include "ak_core.h"

#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

namespace {

[[noreturn]] void fail(const char *what)
{
    std::fprintf(stderr, "scale: %s\n", what);
    std::exit(1);
}

uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL
           + static_cast<uint64_t>(ts.tv_nsec);
}

inline void cpu_pause()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* --- the lock: ngx_shmtx_lock's algorithm on Linux (atomics + POSIX sem) */

struct ShLock {
    std::atomic<uint64_t> lock;     /* 0 free, else the holder's pid */
    std::atomic<int64_t>  wait;     /* processes sleeping (or about to) */
    sem_t                 sem;      /* process-shared */
};

long g_ncpu = 1;
const unsigned kSpin = 2048;        /* nginx's default spin */

inline bool try_take(ShLock *l, uint64_t me)
{
    uint64_t free_ = 0;
    return l->lock.load(std::memory_order_relaxed) == 0
           && l->lock.compare_exchange_strong(free_, me,
                  std::memory_order_acquire, std::memory_order_relaxed);
}

void sh_lock(ShLock *l, uint64_t me)
{
    for (;;) {
        if (try_take(l, me)) {
            return;
        }
        if (g_ncpu > 1) {
            for (unsigned n = 1; n < kSpin; n <<= 1) {
                for (unsigned i = 0; i < n; i++) {
                    cpu_pause();
                }
                if (try_take(l, me)) {
                    return;
                }
            }
        }
        l->wait.fetch_add(1, std::memory_order_acq_rel);
        if (try_take(l, me)) {
            l->wait.fetch_sub(1, std::memory_order_acq_rel);
            return;
        }
        while (sem_wait(&l->sem) == -1 && errno == EINTR) {
        }
    }
}

void sh_unlock(ShLock *l, uint64_t me)
{
    uint64_t held = me;
    if (!l->lock.compare_exchange_strong(held, 0, std::memory_order_release,
                                         std::memory_order_relaxed)) {
        return;
    }
    int64_t w = l->wait.load(std::memory_order_acquire);
    for (;;) {
        if (w <= 0) {
            return;
        }
        if (l->wait.compare_exchange_weak(w, w - 1,
                                          std::memory_order_acq_rel)) {
            break;
        }
    }
    sem_post(&l->sem);
}

/* --- the shared control block ------------------------------------------ */

struct alignas(64) ProcSlot {
    uint64_t hits;
    uint64_t other;         /* lookups that were not FRESH (must stay 0) */
    uint64_t cpu_ns;
    uint64_t puts;
};

const int kMaxProcs = 64;

struct Control {
    ShLock                lock;
    alignas(64) std::atomic<int> start;
    std::atomic<int>      stop;
    std::atomic<int>      ready;
    alignas(64) ProcSlot  p[kMaxProcs + 1];  /* + the writer */
};

/* --- the retry counter, when the core's statistics have one ------------- */

template <typename T, typename = void>
struct has_read_retries : std::false_type {};
template <typename T>
struct has_read_retries<T, std::void_t<decltype(std::declval<T>().read_retries)>>
    : std::true_type {};
template <typename T, typename = void>
struct has_retries : std::false_type {};
template <typename T>
struct has_retries<T, std::void_t<decltype(std::declval<T>().retries)>>
    : std::true_type {};
template <typename T, typename = void>
struct has_lookup_retries : std::false_type {};
template <typename T>
struct has_lookup_retries<T, std::void_t<decltype(std::declval<T>().lookup_retries)>>
    : std::true_type {};

/* -1: the core does not count retries */
template <typename S>
int64_t retries_of(const S &st)
{
    if constexpr (has_read_retries<S>::value) {
        return static_cast<int64_t>(st.read_retries);
    } else if constexpr (has_lookup_retries<S>::value) {
        return static_cast<int64_t>(st.lookup_retries);
    } else if constexpr (has_retries<S>::value) {
        return static_cast<int64_t>(st.retries);
    } else {
        (void) st;
        return -1;
    }
}

/* --- options ----------------------------------------------------------- */

struct Options {
    bool              lockfree = false;
    std::vector<int>  procs = {1, 2, 4, 8};
    double            seconds = 2.0;
    int               rounds = 5;
    size_t            keys = 1000000;
    double            writer_rate = 0;
    bool              pin = true;
};

void usage()
{
    std::fprintf(stderr,
        "usage: scale_bench [--mode lock|lockfree] [--procs 1,2,4,8]\n"
        "                   [--seconds S] [--rounds R] [--keys K]\n"
        "                   [--writer-rate PUTS_PER_S] [--no-pin]\n");
    std::exit(2);
}

Options parse(int argc, char **argv)
{
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> const char * {
            if (i + 1 >= argc) {
                usage();
            }
            return argv[++i];
        };
        if (a == "--mode") {
            std::string m = val();
            if (m == "lock") {
                o.lockfree = false;
            } else if (m == "lockfree") {
                o.lockfree = true;
            } else {
                usage();
            }
        } else if (a == "--procs") {
            o.procs.clear();
            std::string s = val();
            size_t pos = 0;
            while (pos < s.size()) {
                size_t comma = s.find(',', pos);
                if (comma == std::string::npos) {
                    comma = s.size();
                }
                int n = std::atoi(s.substr(pos, comma - pos).c_str());
                if (n < 1 || n > kMaxProcs) {
                    fail("--procs: each between 1 and 64");
                }
                o.procs.push_back(n);
                pos = comma + 1;
            }
            if (o.procs.empty()) {
                usage();
            }
        } else if (a == "--seconds") {
            o.seconds = std::atof(val());
            if (!(o.seconds > 0.05 && o.seconds < 3600)) {
                fail("--seconds: 0.05 .. 3600");
            }
        } else if (a == "--rounds") {
            o.rounds = std::atoi(val());
            if (o.rounds < 1 || o.rounds > 100) {
                fail("--rounds: 1 .. 100");
            }
        } else if (a == "--keys") {
            o.keys = static_cast<size_t>(std::atol(val()));
            if (o.keys < 1000 || o.keys > 50000000) {
                fail("--keys: 1000 .. 50000000");
            }
        } else if (a == "--writer-rate") {
            o.writer_rate = std::atof(val());
            if (!(o.writer_rate >= 0 && o.writer_rate <= 10000000)) {
                fail("--writer-rate: 0 .. 10000000");
            }
        } else if (a == "--no-pin") {
            o.pin = false;
        } else {
            usage();
        }
    }
    return o;
}

/* the record every key holds: a typical key (owner, plan, rate, burst) */
std::vector<unsigned char> typical_record()
{
    static const char *fv[] = {"owner", "customer-0000001", "plan", "pro",
                               "rate", "100/s", "burst", "20"};
    std::vector<ak_str_t> f, v;
    for (size_t i = 0; i + 1 < sizeof(fv) / sizeof(fv[0]); i += 2) {
        f.push_back({fv[i], std::strlen(fv[i])});
        v.push_back({fv[i + 1], std::strlen(fv[i + 1])});
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

std::vector<int> g_cpus;     /* the CPUs this process may run on */

void pin_to(int i)
{
    if (g_cpus.empty()) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(g_cpus[static_cast<size_t>(i) % g_cpus.size()], &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        std::perror("scale: sched_setaffinity");
    }
}

struct Shared {
    Control        *ctl;
    ak_cache_t     *cache;
    unsigned char  *hashes;     /* keys x 32, in the mapping too */
    size_t          keys;
};

const uint64_t kNowMs = 2000;   /* every entry stays FRESH (ttl 60 s) */

void reader(const Shared &sh, const Options &o, int idx)
{
    ProcSlot *me = &sh.ctl->p[idx];
    uint64_t pid = static_cast<uint64_t>(getpid());
    uint64_t seed = 0x5eed0000ULL + static_cast<uint64_t>(idx) * 7919
                    + static_cast<uint64_t>(pid);
    unsigned char buf[AK_RECORD_MAX];
    size_t len;
    uint32_t flags, slot;
    uint64_t hits = 0, other = 0;

    if (o.pin) {
        pin_to(idx);
    }
    sh.ctl->ready.fetch_add(1);
    while (!sh.ctl->start.load(std::memory_order_acquire)) {
        sched_yield();
    }
    uint64_t cpu0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    while (!sh.ctl->stop.load(std::memory_order_relaxed)) {
        for (int k = 0; k < 64; k++) {
            size_t i = splitmix64(&seed) % sh.keys;
            const unsigned char *h = sh.hashes + i * AK_HASH_LEN;
            int rc;
            if (o.lockfree) {
                rc = ak_cache_lookup(sh.cache, h, kNowMs, buf, sizeof(buf),
                                     &len, &flags, &slot);
            } else {
                sh_lock(&sh.ctl->lock, pid);
                rc = ak_cache_lookup(sh.cache, h, kNowMs, buf, sizeof(buf),
                                     &len, &flags, &slot);
                sh_unlock(&sh.ctl->lock, pid);
            }
            if (rc == AK_CACHE_FRESH) {
                hits++;
            } else {
                other++;
            }
        }
    }
    me->cpu_ns = now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    me->hits = hits;
    me->other = other;
}

void writer(const Shared &sh, const Options &o, int idx,
            const std::vector<unsigned char> &blob)
{
    ProcSlot *me = &sh.ctl->p[kMaxProcs];
    uint64_t pid = static_cast<uint64_t>(getpid());
    uint64_t seed = 0x3171e5ULL;
    uint64_t puts = 0;

    if (o.pin) {
        pin_to(idx);
    }
    sh.ctl->ready.fetch_add(1);
    while (!sh.ctl->start.load(std::memory_order_acquire)) {
        sched_yield();
    }
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    while (!sh.ctl->stop.load(std::memory_order_relaxed)) {
        double due = static_cast<double>(now_ns(CLOCK_MONOTONIC) - t0) / 1e9
                     * o.writer_rate;
        if (static_cast<double>(puts) >= due) {
            struct timespec ts = {0, 200000};     /* 0.2 ms */
            nanosleep(&ts, nullptr);
            continue;
        }
        size_t i = splitmix64(&seed) % sh.keys;
        sh_lock(&sh.ctl->lock, pid);
        int rc = ak_cache_put(sh.cache, sh.hashes + i * AK_HASH_LEN,
                              blob.data(), blob.size(), kNowMs,
                              ak_cache_event_seq(sh.cache));
        sh_unlock(&sh.ctl->lock, pid);
        if (rc != 0) {
            fail("ak_cache_put in the writer");
        }
        puts++;
    }
    me->puts = puts;
}

struct RoundResult {
    double  hits_per_s;     /* total */
    double  ns_per_hit;     /* CPU ns per hit, all readers */
    double  retry_share;    /* -1: not counted */
    double  cpus;           /* CPU time of the readers / wall time */
    double  puts_per_s;
};

RoundResult run_round(const Shared &sh, const Options &o, int n,
                      const std::vector<unsigned char> &blob)
{
    Control *ctl = sh.ctl;
    ctl->start.store(0);
    ctl->stop.store(0);
    ctl->ready.store(0);
    std::memset(static_cast<void *>(ctl->p), 0, sizeof(ctl->p));

    ak_cache_stats_t st0;
    ak_cache_get_stats(sh.cache, &st0);

    bool with_writer = o.writer_rate > 0;
    int total = n + (with_writer ? 1 : 0);
    std::vector<pid_t> kids;
    for (int i = 0; i < total; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fail("fork");
        }
        if (pid == 0) {
            if (i < n) {
                reader(sh, o, i);
            } else {
                writer(sh, o, i, blob);
            }
            _exit(0);
        }
        kids.push_back(pid);
    }
    while (ctl->ready.load() < total) {
        usleep(1000);
    }
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    ctl->start.store(1, std::memory_order_release);
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(o.seconds);
    ts.tv_nsec = static_cast<long>((o.seconds - static_cast<double>(ts.tv_sec))
                                   * 1e9);
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
    ctl->stop.store(1, std::memory_order_relaxed);
    for (pid_t k : kids) {
        int status;
        if (waitpid(k, &status, 0) != k || !WIFEXITED(status)
            || WEXITSTATUS(status) != 0) {
            fail("a benchmark process failed");
        }
    }
    double wall = static_cast<double>(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;

    uint64_t hits = 0, other = 0, cpu = 0;
    for (int i = 0; i < n; i++) {
        hits += ctl->p[i].hits;
        other += ctl->p[i].other;
        cpu += ctl->p[i].cpu_ns;
    }
    if (other != 0) {
        fail("a lookup of a present key was not a FRESH hit");
    }
    ak_cache_stats_t st1;
    ak_cache_get_stats(sh.cache, &st1);
    int64_t r0 = retries_of(st0), r1 = retries_of(st1);

    RoundResult r;
    /* the readers stop within a few hundred ns of the flag: the wall time
       between the start and the stop flags is theirs */
    r.hits_per_s = static_cast<double>(hits) / o.seconds;
    r.ns_per_hit = hits ? static_cast<double>(cpu) / static_cast<double>(hits)
                        : 0;
    r.retry_share = (r0 < 0 || hits == 0) ? -1
        : static_cast<double>(r1 - r0) / static_cast<double>(hits);
    r.puts_per_s = static_cast<double>(ctl->p[kMaxProcs].puts) / o.seconds;
    r.cpus = static_cast<double>(cpu) / 1e9 / o.seconds;
    (void) wall;
    return r;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fmt_m(double v)     /* millions */
{
    char b[32];
    std::snprintf(b, sizeof(b), "%.2f M", v / 1e6);
    return b;
}

} // namespace

int main(int argc, char **argv)
{
    Options o = parse(argc, argv);

#ifndef AK_CACHE_LOCKFREE_READS
    if (o.lockfree) {
        std::fprintf(stderr,
            "scale: --mode lockfree refused: this core's ak_cache_lookup "
            "needs the zone lock (ak_core.h does not define "
            "AK_CACHE_LOCKFREE_READS)\n");
        return 2;
    }
#endif

    g_ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
        for (int c = 0; c < CPU_SETSIZE; c++) {
            if (CPU_ISSET(c, &allowed)) {
                g_cpus.push_back(c);
            }
        }
    }

    /* room for the keys and 10% more slots (the record fits in one slot,
       so nothing is evicted), the control block, the key list */
    std::vector<unsigned char> blob = typical_record();
    size_t cache_size = 256 + 8 + (o.keys + o.keys / 10)
                        * ak_cache_bytes_per_key();
    cache_size = (cache_size + 4095) & ~size_t(4095);
    size_t ctl_size = (sizeof(Control) + 4095) & ~size_t(4095);
    size_t hash_size = o.keys * AK_HASH_LEN;
    size_t total = cache_size + ctl_size + hash_size;
    void *mem = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        fail("mmap");
    }
    Shared sh;
    ak_cache_conf_t conf = {60000, 5000, 600000, 25};
    sh.cache = ak_cache_create(mem, cache_size, &conf);
    if (sh.cache == nullptr) {
        fail("ak_cache_create");
    }
    sh.ctl = new (static_cast<char *>(mem) + cache_size) Control();
    if (sem_init(&sh.ctl->lock.sem, 1, 0) != 0) {
        fail("sem_init");
    }
    sh.hashes = static_cast<unsigned char *>(mem) + cache_size + ctl_size;
    sh.keys = o.keys;

    uint64_t seed = 42;
    for (size_t i = 0; i < o.keys; i++) {
        unsigned char *h = sh.hashes + i * AK_HASH_LEN;
        for (int b = 0; b < AK_HASH_LEN; b += 8) {
            uint64_t v = splitmix64(&seed);
            std::memcpy(h + b, &v, 8);
        }
        if (ak_cache_put(sh.cache, h, blob.data(), blob.size(), 1000,
                         ak_cache_event_seq(sh.cache)) != 0) {
            fail("ak_cache_put");
        }
    }
    ak_cache_stats_t st;
    ak_cache_get_stats(sh.cache, &st);
    if (st.entries != o.keys || st.evictions != 0) {
        fail("the cache does not hold every key");
    }

    std::fprintf(stderr, "scale: mode %s, %zu keys (%zu MiB of cache), "
                 "%d CPUs usable, %.1f s x %d rounds per N%s\n",
                 o.lockfree ? "lockfree" : "lock", o.keys, cache_size >> 20,
                 static_cast<int>(g_cpus.size()), o.seconds, o.rounds,
                 o.writer_rate > 0 ? ", with a writer" : "");

    /* rounds interleave the Ns (1 2 4 8 1 2 4 8 ...) so that a change of
       the machine's load spreads over all of them */
    std::vector<std::vector<RoundResult>> res(o.procs.size());
    for (int r = 0; r < o.rounds; r++) {
        for (size_t k = 0; k < o.procs.size(); k++) {
            RoundResult rr = run_round(sh, o, o.procs[k], blob);
            res[k].push_back(rr);
            std::fprintf(stderr, "round %d N=%d: %.0f hits/s, %.1f CPU ns/hit"
                         "\n", r + 1, o.procs[k], rr.hits_per_s,
                         rr.ns_per_hit);
        }
    }

    std::vector<unsigned char> scratch(ak_cache_check_scratch(sh.cache));
    const char *bad = ak_cache_check(sh.cache, scratch.data(), scratch.size());
    if (bad != nullptr) {
        std::fprintf(stderr, "scale: ak_cache_check: %s\n", bad);
        return 1;
    }

    double base_hits = 0, base_ns = 0;
    std::printf("| N | processes / CPUs | hits/s total, median (min..max) "
                "| hits/s per process | x N=1 | CPU ns/hit, median (min..max) "
                "| ns/hit x N=1 | CPUs used | retries/hit |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < o.procs.size(); k++) {
        std::vector<double> h, c, rt, u;
        for (const RoundResult &rr : res[k]) {
            h.push_back(rr.hits_per_s);
            c.push_back(rr.ns_per_hit);
            u.push_back(rr.cpus);
            if (rr.retry_share >= 0) {
                rt.push_back(rr.retry_share);
            }
        }
        double mh = median(h), mc = median(c);
        if (k == 0) {
            base_hits = mh;
            base_ns = mc;
        }
        char retr[32];
        if (!o.lockfree) {
            std::snprintf(retr, sizeof(retr), "n/a (lock)");
        } else if (rt.empty()) {
            std::snprintf(retr, sizeof(retr), "not counted");
        } else {
            std::snprintf(retr, sizeof(retr), "%.4f%%", median(rt) * 100);
        }
        int n = o.procs[k];
        std::printf("| %d | %d / %zu%s | %s (%s..%s) | %s | %.2f | %.0f "
                    "(%.0f..%.0f) | %.2f | %.2f | %s |\n",
                    n, n, g_cpus.size(),
                    static_cast<size_t>(n) > g_cpus.size() ? " (over)" : "",
                    fmt_m(mh).c_str(),
                    fmt_m(*std::min_element(h.begin(), h.end())).c_str(),
                    fmt_m(*std::max_element(h.begin(), h.end())).c_str(),
                    fmt_m(mh / n).c_str(),
                    base_hits > 0 ? mh / base_hits : 0, mc,
                    *std::min_element(c.begin(), c.end()),
                    *std::max_element(c.begin(), c.end()),
                    base_ns > 0 ? mc / base_ns : 0, median(u), retr);
    }
    if (o.writer_rate > 0) {
        std::vector<double> p;
        for (const auto &v : res) {
            for (const RoundResult &rr : v) {
                p.push_back(rr.puts_per_s);
            }
        }
        std::printf("\nwriter: %.0f puts/s asked, %.0f done (median)\n",
                    o.writer_rate, median(p));
    }
    return 0;
}
