/* SPDX-License-Identifier: BSD-2-Clause */
// bench/revoke/revoke_bench.cpp: how fast a revocation reaches every nginx
// worker (`make bench-revoke`, driven by bench/revoke.sh).
//
// Many keep-alive HTTP/1.1 connections to nginx stay busy with the accepted
// key (one request in flight each, the next sent as soon as the answer
// arrives; nginx adds "X-Pid: $pid", so every connection knows its worker).
// Then, for each trial:
//
//   1. PUBLISH "update HASH": the key is active again; wait until every
//      connection got a 200 to a request sent after that PUBLISH;
//   2. keep the load on for a random 2-20 ms (--delay-ms);
//   3. PUBLISH "revoke HASH" (hiredis, synchronous); t0 = when it returned;
//   4. for each connection: latency = arrival of its first 401 - t0.
//
// Prints p50 / p99 / max of the latencies over every (trial, connection)
// pair, the same per worker, and a few counters; with --markdown, a Markdown
// block for bench/RESULTS.md.  Exit status 1 when the setup fails (a worker
// without connections, an unexpected status, a trial that times out).
//
// Single-threaded: epoll (level-triggered) for HTTP, one blocking hiredis
// connection for PUBLISH.  Responses that arrive while PUBLISH blocks are
// read right after it returns: their latency is counted from t0 (>= 0).

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

struct Options {
    int         port = 0;
    int         redis_port = 6379;
    std::string key;
    std::string hash;
    std::string channel = "apikey:events";
    int         conns = 64;
    int         trials = 100;
    int         min_per_worker = 4;
    bool        markdown = false;
    bool        verbose = false;
    int         delay_min_ms = 2;   /* load between "all 200" and revoke */
    int         delay_max_ms = 20;
};

int64_t now_us()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

[[noreturn]] void die(const std::string &msg)
{
    std::fprintf(stderr, "revoke_bench: %s\n", msg.c_str());
    std::exit(1);
}

struct Conn {
    int         fd = -1;
    int         pid = 0;            /* the nginx worker, from X-Pid */
    std::string in;                 /* bytes read, not yet parsed */
    int64_t     sent_at = 0;        /* when the in-flight request was sent */
    uint64_t    responses = 0;

    /* per trial */
    bool        ok_after_update = false;
    bool        got_401 = false;
    int64_t     first_401_at = 0;
    uint64_t    ok_after_revoke = 0;    /* 200s read after t0 */
    int64_t     last_ok_at = 0;         /* the last of them */
    uint64_t    ok_sent_after = 0;      /* 200s to requests sent after t0 */
    uint64_t    ok_after_401 = 0;       /* 200s after this connection's
                                           first 401: the revoke undone */
    int64_t     last_ok_sent = 0;       /* the latest such request's send */
};

class Load {
public:
    Load(const Options &o) : opt_(o)
    {
        ep_ = epoll_create1(0);
        if (ep_ < 0) {
            die("epoll_create1");
        }
        req_ = "GET / HTTP/1.1\r\nHost: bench\r\nX-API-Key: " + o.key
               + "\r\n\r\n";
    }

    void open_conn()
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            die("socket: " + std::string(strerror(errno)));
        }
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(uint16_t(opt_.port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0) {
            die("connect to nginx: " + std::string(strerror(errno)));
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns_.emplace_back();
        Conn &c = conns_.back();
        c.fd = fd;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = uint32_t(conns_.size() - 1);
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            die("epoll_ctl");
        }
        send_req(c);
    }

    /* runs the event loop for up to max_us, or until done() holds */
    template <typename Done>
    bool run(int64_t max_us, Done done)
    {
        int64_t end = now_us() + max_us;
        epoll_event evs[256];
        for (;;) {
            if (done()) {
                return true;
            }
            int64_t left = end - now_us();
            if (left <= 0) {
                return false;
            }
            int n = epoll_wait(ep_, evs, 256, int(std::min<int64_t>(
                                   left / 1000 + 1, 10)));
            if (n < 0 && errno != EINTR) {
                die("epoll_wait");
            }
            int64_t t = now_us();
            for (int i = 0; i < n; i++) {
                if (evs[i].data.u32 == kSubscriber) {
                    on_subscriber(t);
                } else {
                    on_readable(conns_[evs[i].data.u32], t);
                }
            }
        }
    }

    std::vector<Conn> &conns() { return conns_; }

    /* our own subscriber to the channel: when Redis delivers a "revoke"
     * message to a subscriber (us), for comparison with the workers */
    void add_subscriber(redisContext *sc)
    {
        sc_ = sc;
        sc->flags &= ~REDIS_BLOCK;      /* EAGAIN is not an error */
        fcntl(sc->fd, F_SETFL, fcntl(sc->fd, F_GETFL) | O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = kSubscriber;
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, sc->fd, &ev) != 0) {
            die("epoll_ctl (subscriber)");
        }
    }

    int64_t sub_revoke_at = 0;      /* last "revoke" message seen */

    /* callback for each response: (conn, status, arrival time) */
    void set_observer(void (*fn)(void *, Conn &, int, int64_t), void *arg)
    {
        obs_ = fn;
        obs_arg_ = arg;
    }

    uint64_t total_responses = 0;

private:
    void send_req(Conn &c)
    {
        c.sent_at = now_us();
        size_t off = 0;
        while (off < req_.size()) {
            ssize_t n = write(c.fd, req_.data() + off, req_.size() - off);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                die("write to nginx: " + std::string(strerror(errno)));
            }
            off += size_t(n);
        }
    }

    static constexpr uint32_t kSubscriber = 0xffffffffu;

    void on_subscriber(int64_t t)
    {
        if (redisBufferRead(sc_) != REDIS_OK) {
            die("subscriber connection lost");
        }
        void *r = nullptr;
        while (redisGetReplyFromReader(sc_, &r) == REDIS_OK && r != nullptr) {
            redisReply *m = static_cast<redisReply *>(r);
            if (m->type == REDIS_REPLY_ARRAY && m->elements == 3
                && m->element[2]->type == REDIS_REPLY_STRING
                && std::strncmp(m->element[2]->str, "revoke ", 7) == 0)
            {
                sub_revoke_at = t;
            }
            freeReplyObject(m);
            r = nullptr;
        }
    }

    void on_readable(Conn &c, int64_t t)
    {
        char buf[65536];
        for (;;) {
            ssize_t n = read(c.fd, buf, sizeof(buf));
            if (n > 0) {
                c.in.append(buf, size_t(n));
                if (size_t(n) < sizeof(buf)) {
                    break;
                }
                continue;
            }
            if (n == 0) {
                die("nginx closed a connection (keep-alive expected)");
            }
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            die("read from nginx: " + std::string(strerror(errno)));
        }
        parse(c, t);
    }

    static long header_long(const std::string &h, const char *name)
    {
        /* name in lower case, e.g. "\r\ncontent-length:" */
        std::string lower(h);
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char ch) { return char(std::tolower(ch)); });
        size_t p = lower.find(name);
        if (p == std::string::npos) {
            return -1;
        }
        return std::strtol(h.c_str() + p + std::strlen(name), nullptr, 10);
    }

    void parse(Conn &c, int64_t t)
    {
        for (;;) {
            size_t hend = c.in.find("\r\n\r\n");
            if (hend == std::string::npos) {
                return;
            }
            std::string head = c.in.substr(0, hend);
            long clen = header_long(head, "\r\ncontent-length:");
            if (clen < 0) {
                die("response without Content-Length: " + head);
            }
            size_t total = hend + 4 + size_t(clen);
            if (c.in.size() < total) {
                return;
            }
            int status = std::atoi(head.c_str() + 9);    /* "HTTP/1.1 200" */
            long pid = header_long(head, "\r\nx-pid:");
            if (pid > 0) {
                c.pid = int(pid);
            }
            c.in.erase(0, total);
            c.responses++;
            total_responses++;
            if (obs_) {
                obs_(obs_arg_, c, status, t);
            }
            send_req(c);
        }
    }

    const Options     &opt_;
    int                ep_ = -1;
    std::string        req_;
    std::vector<Conn>  conns_;
    redisContext      *sc_ = nullptr;
    void             (*obs_)(void *, Conn &, int, int64_t) = nullptr;
    void              *obs_arg_ = nullptr;
};

struct TrialState {
    int      phase = 0;             /* 0 warm, 1 after update, 2 after revoke */
    int64_t  t_update = 0;
    int64_t  t_revoke = 0;
    uint64_t unexpected = 0;        /* non-200 before the revoke, etc. */
    int      last_bad_status = 0;
    std::vector<int64_t> rtt;       /* request round trips between trials */
};

void observe(void *arg, Conn &c, int status, int64_t t)
{
    TrialState *ts = static_cast<TrialState *>(arg);
    switch (ts->phase) {
    case 0:
        if (ts->rtt.size() < 2000000) {
            ts->rtt.push_back(t - c.sent_at);
        }
        if (status != 200) {
            ts->unexpected++;
            ts->last_bad_status = status;
        }
        break;
    case 1:
        /* a 401 may still come back for a request the revoked entry saw */
        if (status == 200 && c.sent_at >= ts->t_update) {
            c.ok_after_update = true;
        } else if (status != 200 && status != 401) {
            ts->unexpected++;
            ts->last_bad_status = status;
        }
        break;
    case 2:
        if (status == 401) {
            if (!c.got_401) {
                c.got_401 = true;
                c.first_401_at = t;
            }
        } else if (status == 200) {
            if (c.got_401) {
                c.ok_after_401++;
            } else {
                c.ok_after_revoke++;
                c.last_ok_at = t;
                if (c.sent_at > ts->t_revoke) {
                    c.ok_sent_after++;
                    c.last_ok_sent = c.sent_at;
                }
            }
        } else {
            ts->unexpected++;
            ts->last_bad_status = status;
        }
        break;
    }
}

long long publish(redisContext *rc, const std::string &channel,
                  const std::string &msg)
{
    redisReply *r = static_cast<redisReply *>(
        redisCommand(rc, "PUBLISH %b %b", channel.data(), channel.size(),
                     msg.data(), msg.size()));
    if (r == nullptr) {
        die(std::string("PUBLISH: ") + rc->errstr);
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        die("PUBLISH: unexpected reply");
    }
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

double pct(std::vector<int64_t> v, double p)
{
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    /* nearest rank */
    size_t rank = size_t(std::max(1.0, std::ceil(p / 100.0 * double(v.size()))));
    return double(v[std::min(rank, v.size()) - 1]);
}

void usage()
{
    std::fprintf(stderr,
        "usage: revoke_bench --port P --key KEY --hash HEX [--redis-port R]\n"
        "         [--channel apikey:events] [--conns 64] [--trials 100]\n"
        "         [--min-per-worker 4] [--delay-ms 2-20] [--markdown]\n"
        "         [--verbose]\n");
    std::exit(2);
}

} // namespace

int main(int argc, char **argv)
{
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
            }
            return argv[++i];
        };
        if (a == "--port") o.port = std::atoi(val().c_str());
        else if (a == "--redis-port") o.redis_port = std::atoi(val().c_str());
        else if (a == "--key") o.key = val();
        else if (a == "--hash") o.hash = val();
        else if (a == "--channel") o.channel = val();
        else if (a == "--conns") o.conns = std::atoi(val().c_str());
        else if (a == "--trials") o.trials = std::atoi(val().c_str());
        else if (a == "--min-per-worker") o.min_per_worker = std::atoi(val().c_str());
        else if (a == "--markdown") o.markdown = true;
        else if (a == "--verbose") o.verbose = true;
        else if (a == "--delay-ms") {
            std::string v = val();
            if (std::sscanf(v.c_str(), "%d-%d", &o.delay_min_ms,
                            &o.delay_max_ms) != 2) {
                usage();
            }
        }
        else usage();
    }
    if (o.port <= 0 || o.key.empty() || o.hash.size() != 64 || o.conns < 2
        || o.trials < 1) {
        usage();
    }

    redisContext *rc = redisConnect("127.0.0.1", o.redis_port);
    if (rc == nullptr || rc->err) {
        die("cannot connect to redis");
    }
    {
        int one = 1;
        setsockopt(rc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }

    Load load(o);
    TrialState ts;
    load.set_observer(observe, &ts);

    redisContext *sc = redisConnect("127.0.0.1", o.redis_port);
    if (sc == nullptr || sc->err) {
        die("cannot connect to redis (subscriber)");
    }
    {
        redisReply *r = static_cast<redisReply *>(redisCommand(sc,
            "SUBSCRIBE %b", o.channel.data(), o.channel.size()));
        if (r == nullptr) {
            die("SUBSCRIBE failed");
        }
        freeReplyObject(r);
        load.add_subscriber(sc);
    }

    /* connections, spread across the workers (nginx: listen ... reuseport);
     * open more (up to 4x) while a worker has fewer than min_per_worker */
    for (int i = 0; i < o.conns; i++) {
        load.open_conn();
    }
    std::map<int, int> per_worker;
    for (;;) {
        auto &cs = load.conns();
        if (!load.run(3000000, [&] {
                for (auto &c : cs) {
                    if (c.responses == 0) return false;
                }
                return true;
            })) {
            die("no answer from nginx within 3 s");
        }
        per_worker.clear();
        for (auto &c : cs) {
            per_worker[c.pid]++;
        }
        if (per_worker.count(0)) {
            die("a response without X-Pid (add_header X-Pid $pid always)");
        }
        bool enough = per_worker.size() >= 2;
        for (auto &kv : per_worker) {
            enough = enough && kv.second >= o.min_per_worker;
        }
        if (enough) {
            break;
        }
        if (int(cs.size()) >= 4 * o.conns) {
            std::string s;
            for (auto &kv : per_worker) {
                s += " pid " + std::to_string(kv.first) + ": "
                     + std::to_string(kv.second);
            }
            die("connections do not spread over two workers:" + s);
        }
        load.open_conn();
    }
    if (ts.unexpected) {
        die("status " + std::to_string(ts.last_bad_status)
            + " for the accepted key before the first trial");
    }

    /* a little more warm-up under load */
    load.run(300000, [] { return false; });

    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> delay_ms(o.delay_min_ms,
                                                o.delay_max_ms);
    std::vector<int64_t> all, pubrtt, subdelay;
    std::map<int, std::vector<int64_t>> by_worker;
    uint64_t late_200 = 0, timeouts = 0;
    int slow_trials = 0;                /* slowest connection > 5 ms */
    int undone_trials = 0;              /* 401 then 200 again, or no 401 */
    uint64_t flips = 0;
    long long receivers_min = 1 << 30, receivers_max = 0;
    int64_t t_start = now_us();
    uint64_t resp_start = load.total_responses;

    for (int trial = 0; trial < o.trials; trial++) {
        auto &cs = load.conns();

        /* 1. active again */
        for (auto &c : cs) {
            c.ok_after_update = c.got_401 = false;
            c.ok_after_revoke = c.ok_sent_after = c.ok_after_401 = 0;
        }
        ts.phase = 1;
        ts.t_update = now_us();
        publish(rc, o.channel, "update " + o.hash);
        if (!load.run(3000000, [&] {
                for (auto &c : cs) {
                    if (!c.ok_after_update) return false;
                }
                return true;
            })) {
            die("trial " + std::to_string(trial)
                + ": not every connection got a 200 within 3 s of the update");
        }

        /* 2. load for a random while */
        ts.phase = 0;
        load.run(int64_t(delay_ms(rng)) * 1000, [] { return false; });
        if (ts.unexpected) {
            die("status " + std::to_string(ts.last_bad_status)
                + " for the active key between trials");
        }

        /* 3. revoke */
        ts.phase = 2;
        int64_t t_send = now_us();
        long long receivers = publish(rc, o.channel, "revoke " + o.hash);
        int64_t t0 = now_us();
        ts.t_revoke = t0;
        load.sub_revoke_at = 0;
        pubrtt.push_back(t0 - t_send);
        receivers_min = std::min(receivers_min, receivers);
        receivers_max = std::max(receivers_max, receivers);

        /* 4. first 401 on every connection */
        bool all_seen = load.run(2000000, [&] {
            for (auto &c : cs) {
                if (!c.got_401) return false;
            }
            return true;
        });
        /* our subscriber's copy of the message, if not read yet */
        load.run(2000000, [&] { return load.sub_revoke_at != 0; });
        int64_t sub_delay = load.sub_revoke_at ? load.sub_revoke_at - t0 : -1;
        if (sub_delay >= 0) {
            subdelay.push_back(sub_delay);
        }
        int64_t trial_max = 0;
        uint64_t trial_flips = 0, trial_missing = 0;
        for (auto &c : cs) {
            trial_flips += c.ok_after_401;
            trial_missing += c.got_401 ? 0 : 1;
            late_200 += c.ok_after_revoke;
            if (c.got_401) {
                trial_max = std::max(trial_max, c.first_401_at - t0);
            }
            if (!c.got_401) {
                timeouts++;
                continue;
            }
            int64_t lat = std::max<int64_t>(0, c.first_401_at - t0);
            all.push_back(lat);
            by_worker[c.pid].push_back(lat);
        }
        if (trial_max > 5000) {
            slow_trials++;
        }
        flips += trial_flips;
        if (trial_flips || trial_missing) {
            undone_trials++;
            std::fprintf(stderr, "revoke_bench: trial %d: the revocation did "
                         "not hold: %llu connection(s) never saw a 401, %llu "
                         "200s came after a connection's first 401\n", trial,
                         (unsigned long long) trial_missing,
                         (unsigned long long) trial_flips);
        }
        if (o.verbose && (trial_max > 5000 || trial_flips || trial_missing)) {
            /* per worker: first and last first-401, 200s after t0 and the
             * last of them: was the worker answering without knowing? */
            std::map<int, std::vector<const Conn *>> w;
            for (auto &c : cs) w[c.pid].push_back(&c);
            std::fprintf(stderr, "slow trial %d: our subscriber got the "
                         "message at %.2f ms;", trial, sub_delay / 1000.0);
            for (auto &kv : w) {
                int64_t mn = INT64_MAX, mx = 0, last_ok = 0, last_sent = 0;
                uint64_t oks = 0, oks_sent = 0;
                for (const Conn *c : kv.second) {
                    if (c->got_401) {
                        mn = std::min(mn, c->first_401_at - t0);
                        mx = std::max(mx, c->first_401_at - t0);
                    }
                    oks += c->ok_after_revoke;
                    oks_sent += c->ok_sent_after;
                    if (c->ok_sent_after) {
                        last_sent = std::max(last_sent, c->last_ok_sent - t0);
                    }
                    if (c->ok_after_revoke) {
                        last_ok = std::max(last_ok, c->last_ok_at - t0);
                    }
                }
                uint64_t fl = 0, miss = 0;
                for (const Conn *c : kv.second) {
                    fl += c->ok_after_401;
                    miss += c->got_401 ? 0 : 1;
                }
                std::fprintf(stderr, "  pid %d: %llu conns without a 401, "
                             "%llu 200s after a 401;", kv.first,
                             (unsigned long long) miss,
                             (unsigned long long) fl);
                std::fprintf(stderr, "  pid %d: first 401 %.2f..%.2f ms, "
                             "%llu 200s read after t0 (last at %.2f ms), "
                             "%llu to requests sent after t0 (last sent "
                             "at %.2f ms);",
                             kv.first, mn / 1000.0, mx / 1000.0,
                             (unsigned long long) oks, last_ok / 1000.0,
                             (unsigned long long) oks_sent,
                             last_sent / 1000.0);
            }
            std::fprintf(stderr, "\n");
        }
        if (!all_seen) {
            std::fprintf(stderr, "revoke_bench: trial %d: a connection saw "
                         "no 401 within 2 s\n", trial);
        }
        if (ts.unexpected) {
            die("unexpected status " + std::to_string(ts.last_bad_status)
                + " after the revoke");
        }
    }

    double secs = double(now_us() - t_start) / 1e6;
    double rps = double(load.total_responses - resp_start) / secs;

    /* restore the key for whoever comes next */
    publish(rc, o.channel, "update " + o.hash);

    auto ms = [](double us) { return us / 1000.0; };
    std::printf("revoke_bench: %d trials x %zu connections (%zu workers), "
                "%.0f requests/s during the trials\n", o.trials,
                load.conns().size(), per_worker.size(), rps);
    std::printf("%-22s %8s %8s %8s %8s %8s\n", "", "pairs", "p50 ms",
                "p99 ms", "max ms", "mean ms");
    auto line = [&](const std::string &name, const std::vector<int64_t> &v) {
        double sum = 0;
        for (int64_t x : v) sum += double(x);
        std::printf("%-22s %8zu %8.3f %8.3f %8.3f %8.3f\n", name.c_str(),
                    v.size(), ms(pct(v, 50)), ms(pct(v, 99)), ms(pct(v, 100)),
                    v.empty() ? 0.0 : ms(sum / double(v.size())));
    };
    line("all", all);
    for (auto &kv : by_worker) {
        line("worker pid " + std::to_string(kv.first) + " ("
             + std::to_string(per_worker[kv.first]) + " conns)", kv.second);
    }
    std::printf("PUBLISH round trip: p50 %.3f ms, max %.3f ms; receivers per "
                "PUBLISH: %lld..%lld\n", ms(pct(pubrtt, 50)),
                ms(pct(pubrtt, 100)), receivers_min, receivers_max);
    std::printf("200s read after PUBLISH returned, before that connection's "
                "first 401: %llu; connections without a 401 within 2 s: %llu\n",
                (unsigned long long) late_200, (unsigned long long) timeouts);

    std::printf("our own subscriber read the revoke message after PUBLISH "
                "returned: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
                ms(pct(subdelay, 50)), ms(pct(subdelay, 99)),
                ms(pct(subdelay, 100)));
    std::printf("trials where the revocation did not hold (a connection "
                "without a 401 within 2 s, or a 200 after a 401): %d of %d "
                "(%llu such 200s)\n", undone_trials, o.trials,
                (unsigned long long) flips);
    std::printf("trials whose slowest connection saw its 401 after 5 ms: "
                "%d of %d\n", slow_trials, o.trials);
    std::printf("request round trip under this load (between trials): "
                "p50 %.3f ms, p99 %.3f ms\n", ms(pct(ts.rtt, 50)),
                ms(pct(ts.rtt, 99)));

    bool pass = timeouts == 0 && undone_trials == 0 && pct(all, 99) < 5000;
    std::printf("target p99 < 5 ms: %s\n", pass ? "met" : "NOT met");

    if (o.markdown) {
        std::FILE *f = stderr;
        std::fprintf(f, "MD| | (trial, connection) pairs | p50 | p99 | max | mean |\n");
        std::fprintf(f, "MD|---|---:|---:|---:|---:|---:|\n");
        auto mdline = [&](const std::string &name,
                          const std::vector<int64_t> &v) {
            double sum = 0;
            for (int64_t x : v) sum += double(x);
            std::fprintf(f, "MD| %s | %zu | %.3f ms | %.3f ms | %.3f ms | %.3f ms |\n",
                         name.c_str(), v.size(), ms(pct(v, 50)),
                         ms(pct(v, 99)), ms(pct(v, 100)),
                         v.empty() ? 0.0 : ms(sum / double(v.size())));
        };
        mdline("all", all);
        int w = 0;
        for (auto &kv : by_worker) {
            mdline("worker " + std::to_string(++w) + " (" + std::to_string(
                       per_worker[kv.first]) + " connections)", kv.second);
        }
        std::fprintf(f, "MDINFO trials=%d conns=%zu workers=%zu rps=%.0f "
                     "pub_p50_ms=%.3f pub_max_ms=%.3f sub_p50_ms=%.3f sub_p99_ms=%.3f "
                     "sub_max_ms=%.3f rtt_p50_ms=%.3f rtt_p99_ms=%.3f "
                     "receivers=%lld..%lld "
                     "late_200=%llu timeouts=%llu undone_trials=%d slow_trials=%d "
                     "target=%s\n", o.trials,
                     load.conns().size(), per_worker.size(), rps,
                     ms(pct(pubrtt, 50)), ms(pct(pubrtt, 100)),
                     ms(pct(subdelay, 50)), ms(pct(subdelay, 99)),
                     ms(pct(subdelay, 100)), ms(pct(ts.rtt, 50)), ms(pct(ts.rtt, 99)), receivers_min,
                     receivers_max, (unsigned long long) late_200,
                     (unsigned long long) timeouts, undone_trials, slow_trials,
                     pass ? "met" : "not_met");
    }

    redisFree(rc);
    redisFree(sc);
    return timeouts == 0 && undone_trials == 0 ? 0 : 1;
}
