/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * metrics.cpp: the api_key_metrics page (Prometheus text exposition format
 * 0.0.4) from a snapshot of the counters the glue took.  One function
 * measures and writes: called without a buffer it returns the page's
 * length, called again with a buffer of that length it writes exactly
 * that; nothing is written past cap, whatever cap is.
 *
 * Each metric family (one HELP, one TYPE line) is followed by the samples
 * of every zone, so that a name has one HELP and one TYPE however many
 * zones there are.  Label values are escaped as the format wants
 * (backslash, double quote and line feed); a byte that is not part of
 * valid UTF-8 is written as U+FFFD, as a label value must be UTF-8.
 */

#include "ak_core.h"

#include <cstdio>
#include <cstring>

namespace {

/* the ASCII bytes a label value holds as they are (all but \\ " \n) */
struct PlainTable {
    bool t[256];
    constexpr PlainTable() : t()
    {
        for (int c = 0; c < 0x80; c++) {
            t[c] = c != '\\' && c != '"' && c != '\n';
        }
    }
    constexpr bool operator[](unsigned char c) const { return t[c]; }
};

constexpr PlainTable kPlain;

class Writer {
public:
    Writer(char *out, size_t cap) : out_(out), cap_(out ? cap : 0) {}

    size_t len() const { return len_; }

    void put(const char *s, size_t n)
    {
        if (out_ && n <= cap_ && len_ <= cap_ - n) {
            std::memcpy(out_ + len_, s, n);
        }
        len_ += n;
    }

    void put(const char *s) { put(s, std::strlen(s)); }

    void u64(uint64_t v)
    {
        char tmp[20];
        size_t n = 0;

        do {
            tmp[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);

        char buf[20];
        for (size_t i = 0; i < n; i++) {
            buf[i] = tmp[n - 1 - i];
        }
        put(buf, n);
    }

    /* microseconds as seconds: "S.UUUUUU" */
    void micros(uint64_t us)
    {
        u64(us / 1000000);

        char frac[7];
        uint64_t f = us % 1000000;
        frac[0] = '.';
        for (int i = 6; i >= 1; i--) {
            frac[i] = static_cast<char>('0' + f % 10);
            f /= 10;
        }
        put(frac, 7);
    }

    /* a label value, escaped */
    void label(const ak_str_t &v)
    {
        const unsigned char *s = reinterpret_cast<const unsigned char *>(
            v.data);
        size_t n = v.data ? v.len : 0;
        size_t i = 0;

        while (i < n) {
            unsigned char c = s[i];

            /* a run of bytes written as they are */
            size_t run = i;
            while (run < n && kPlain[s[run]]) {
                run++;
            }

            if (run > i) {
                put(reinterpret_cast<const char *>(s + i), run - i);
                i = run;
                continue;
            }

            if (c == '\\') {
                put("\\\\", 2);
                i++;
            } else if (c == '"') {
                put("\\\"", 2);
                i++;
            } else if (c == '\n') {
                put("\\n", 2);
                i++;
            } else if (c < 0x80) {
                put(reinterpret_cast<const char *>(s + i), 1);
                i++;
            } else {
                size_t k = utf8_len(s + i, n - i);
                if (k) {
                    put(reinterpret_cast<const char *>(s + i), k);
                    i += k;
                } else {
                    put("\xef\xbf\xbd", 3);
                    i++;
                }
            }
        }
    }

    void family(const char *name, const char *help, const char *type)
    {
        put("# HELP ");
        put(name);
        put(" ");
        put(help);
        put("\n# TYPE ");
        put(name);
        put(" ");
        put(type);
        put("\n");
    }

    /* name{zone="Z"[,key="value"]} */
    void sample(const char *name, const ak_str_t *zone, const char *key,
        const ak_str_t *value)
    {
        put(name);

        if (zone || key) {
            put("{");
            if (zone) {
                put("zone=\"");
                label(*zone);
                put("\"");
            }
            if (key) {
                if (zone) put(",");
                put(key);
                put("=\"");
                label(*value);
                put("\"");
            }
            put("}");
        }

        put(" ");
    }

    void sample(const char *name, const ak_str_t *zone, const char *key,
        const char *value)
    {
        ak_str_t v = {value, std::strlen(value)};
        sample(name, zone, key, &v);
    }

private:
    /* the length of the well-formed UTF-8 sequence at s (lead >= 0x80), or
     * 0 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF) */
    static size_t utf8_len(const unsigned char *s, size_t n)
    {
        unsigned char c = s[0];
        size_t k;
        unsigned char lo = 0x80, hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            k = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }

        if (n < k || s[1] < lo || s[1] > hi) {
            return 0;
        }

        for (size_t i = 2; i < k; i++) {
            if (s[i] < 0x80 || s[i] > 0xbf) {
                return 0;
            }
        }

        return k;
    }

    char *out_;
    size_t cap_;
    size_t len_ = 0;
};

const char *const kConn[2] = {"commands", "events"};

} // namespace


extern "C" size_t
ak_metrics_page(const ak_metrics_t *m, char *out, size_t cap) noexcept
{
    Writer w(out, cap);

    if (m == nullptr || (m->nzones && m->zones == nullptr)) {
        return 0;
    }

    size_t nz = m->nzones;
    const ak_metrics_zone_t *z = m->zones;

    w.family("api_key_requests_total", "Requests checked, by outcome.",
             "counter");

    for (size_t i = 0; i < nz; i++) {
        for (size_t j = 0; j < m->nstatus; j++) {
            w.sample("api_key_requests_total", &z[i].name, "status",
                     &m->status_names[j]);
            w.u64(z[i].status[j]);
            w.put("\n");
        }
    }

    w.family("api_key_cache_lookups_total", "Cache lookups, by result.",
             "counter");

    for (size_t i = 0; i < nz; i++) {
        const ak_cache_stats_t &st = z[i].cache;
        const char *name = "api_key_cache_lookups_total";

        w.sample(name, &z[i].name, "result", "hit");
        w.u64(st.hits);
        w.put("\n");
        w.sample(name, &z[i].name, "result", "negative_hit");
        w.u64(st.negative_hits);
        w.put("\n");
        w.sample(name, &z[i].name, "result", "stale");
        w.u64(st.stale_hits);
        w.put("\n");
        w.sample(name, &z[i].name, "result", "miss");
        w.u64(st.misses);
        w.put("\n");
    }

    w.family("api_key_cache_evictions_total", "Entries evicted to make room.",
             "counter");

    for (size_t i = 0; i < nz; i++) {
        w.sample("api_key_cache_evictions_total", &z[i].name, nullptr,
                 static_cast<const ak_str_t *>(nullptr));
        w.u64(z[i].cache.evictions);
        w.put("\n");
    }

    w.family("api_key_cache_read_retries_total",
             "Lock-free lookups that read a bucket group again because a "
             "writer changed it meanwhile.", "counter");

    for (size_t i = 0; i < nz; i++) {
        w.sample("api_key_cache_read_retries_total", &z[i].name, nullptr,
                 static_cast<const ak_str_t *>(nullptr));
        w.u64(z[i].cache.read_retries);
        w.put("\n");
    }

    w.family("api_key_cache_inserts_total", "Records stored.", "counter");

    for (size_t i = 0; i < nz; i++) {
        w.sample("api_key_cache_inserts_total", &z[i].name, nullptr,
                 static_cast<const ak_str_t *>(nullptr));
        w.u64(z[i].cache.inserts);
        w.put("\n");
    }

    w.family("api_key_cache_entries", "Cached entries, by kind.", "gauge");

    for (size_t i = 0; i < nz; i++) {
        w.sample("api_key_cache_entries", &z[i].name, "kind", "key");
        w.u64(z[i].cache.entries);
        w.put("\n");
        w.sample("api_key_cache_entries", &z[i].name, "kind", "negative");
        w.u64(z[i].cache.negative_entries);
        w.put("\n");
    }

    w.family("api_key_cache_slots", "Cache slots.", "gauge");

    for (size_t i = 0; i < nz; i++) {
        w.sample("api_key_cache_slots", &z[i].name, "state", "total");
        w.u64(z[i].cache.slots_total);
        w.put("\n");
        w.sample("api_key_cache_slots", &z[i].name, "state", "free");
        w.u64(z[i].cache.slots_free);
        w.put("\n");
    }

    w.family("api_key_redis_read_seconds",
             "Redis record reads, from command to answer.", "histogram");

    for (size_t i = 0; i < nz; i++) {
        uint64_t cum = 0;

        for (size_t j = 0; j < m->nbuckets; j++) {
            cum += z[i].latency[j];

            w.put("api_key_redis_read_seconds_bucket{zone=\"");
            w.label(z[i].name);
            w.put("\",le=\"");

            if (j + 1 < m->nbuckets) {
                w.micros(m->latency_bounds_us[j]);
            } else {
                w.put("+Inf");
            }

            w.put("\"} ");
            w.u64(cum);
            w.put("\n");
        }

        w.sample("api_key_redis_read_seconds_sum", &z[i].name, nullptr,
                 static_cast<const ak_str_t *>(nullptr));
        w.micros(z[i].latency_sum_us);
        w.put("\n");
        w.sample("api_key_redis_read_seconds_count", &z[i].name, nullptr,
                 static_cast<const ak_str_t *>(nullptr));
        w.u64(z[i].latency_count);
        w.put("\n");
    }

    w.family("api_key_redis_errors_total", "Failed record reads.", "counter");

    for (size_t i = 0; i < nz; i++) {
        w.sample("api_key_redis_errors_total", &z[i].name, "kind", "error");
        w.u64(z[i].redis_errors);
        w.put("\n");
        w.sample("api_key_redis_errors_total", &z[i].name, "kind", "timeout");
        w.u64(z[i].redis_timeouts);
        w.put("\n");
    }

    /* labels=: requests by plan or owner, the values capped */
    if (m->label_name && std::strlen(m->label_name) <= 16) {
        char fam[64];
        std::snprintf(fam, sizeof(fam), "api_key_requests_by_%s_total",
                      m->label_name);
        w.family(fam, "Requests of keys with a record, by the record's "
                 "field (at most the configured number of values; the rest "
                 "as \"other\") and outcome.", "counter");

        for (size_t i = 0; i < nz; i++) {
            for (uint32_t v = 0; v < z[i].nlabels; v++) {
                for (size_t j = 0; j < m->nstatus; j++) {
                    uint64_t c = z[i].label_counts[v * m->nstatus + j];
                    if (c == 0) {
                        continue;
                    }
                    w.put(fam);
                    w.put("{zone=\"");
                    w.label(z[i].name);
                    w.put("\",");
                    w.put(m->label_name);
                    w.put("=\"");
                    w.label(z[i].label_values[v]);
                    w.put("\",status=\"");
                    w.label(m->status_names[j]);
                    w.put("\"} ");
                    w.u64(c);
                    w.put("\n");
                }
            }
        }
    }

    /* the usage flush (usage.cpp, api_key_zone usage_flush=) */
    struct ZoneFamily {
        const char                 *name;
        const char                 *help;
        uint64_t ak_metrics_zone_t::*value;
    };
    const ZoneFamily usage_families[] = {
        {"api_key_usage_flushes_total",
         "Usage flushes this node ran.", &ak_metrics_zone_t::usage_flushes},
        {"api_key_usage_writes_total",
         "Per-key usage writes sent to Redis (one per key and day and "
         "flush).", &ak_metrics_zone_t::usage_writes},
        {"api_key_usage_write_errors_total",
         "Usage writes that failed or got no answer.",
         &ak_metrics_zone_t::usage_errors},
        {"api_key_usage_dropped_total",
         "Requests not counted in the usage: the table was full.",
         &ak_metrics_zone_t::usage_dropped},
    };

    for (const ZoneFamily &f : usage_families) {
        w.family(f.name, f.help, "counter");
        for (size_t i = 0; i < nz; i++) {
            w.sample(f.name, &z[i].name, nullptr,
                     static_cast<const ak_str_t *>(nullptr));
            w.u64(z[i].*f.value);
            w.put("\n");
        }
    }

    if (nz == 0) {
        return w.len();
    }

    w.family("api_key_events_total",
             "Events received, by type (counted once per worker that "
             "received them).", "counter");

    for (size_t j = 0; j < m->nevents; j++) {
        w.sample("api_key_events_total", nullptr, "type", &m->event_names[j]);
        w.u64(m->events[j]);
        w.put("\n");
    }

    w.family("api_key_subscription_reconnects_total",
             "Events subscriptions restored after a loss.", "counter");
    w.put("api_key_subscription_reconnects_total ");
    w.u64(m->resubscribes);
    w.put("\n");

    /* node-wide counters without labels */
    struct NodeCounter {
        const char  *name;
        const char  *help;
        uint64_t     value;
    };
    const NodeCounter node_counters[] = {
        {"api_key_redis_failover_errors_total",
         "Redis answers a failover gives (READONLY, LOADING, MASTERDOWN), "
         "all workers.", m->failover_errors},
        {"api_key_redis_master_switches_total",
         "Redis Sentinel: moves of the master to another address, as each "
         "worker saw them.", m->master_switches},
        {"api_key_redis_master_queries_total",
         "Redis Sentinel: questions for the master's address sent to the "
         "sentinels, all workers.", m->master_queries},
    };

    for (const NodeCounter &c : node_counters) {
        w.family(c.name, c.help, "counter");
        w.put(c.name);
        w.put(" ");
        w.u64(c.value);
        w.put("\n");
    }

    /* one family per Redis connection counter, a sample per connection */
    struct ConnFamily {
        const char      *name;
        const char      *help;
        const char      *type;
        const uint64_t  *values;
    };
    const ConnFamily conn_families[] = {
        {"api_key_redis_connects_total",
         "Redis connections made, all workers.", "counter", m->connects},
        {"api_key_redis_disconnects_total",
         "Redis connections lost, all workers.", "counter", m->disconnects},
        {"api_key_redis_reconnects_total",
         "Redis connections opened again after one was lost or failed, "
         "all workers.", "counter", m->reconnects},
        {"api_key_redis_tls_handshake_failures_total",
         "TLS handshakes that failed or whose certificate was refused, "
         "all workers.", "counter", m->tls_failures},
        {"api_key_redis_tls_sessions_reused_total",
         "TLS connections that resumed an earlier session, all workers.",
         "counter", m->tls_reused},
        {"api_key_redis_connected",
         "Whether the worker answering this scrape is connected.", "gauge",
         m->connected},
    };

    for (const ConnFamily &f : conn_families) {
        w.family(f.name, f.help, f.type);
        for (int c = 0; c < 2; c++) {
            w.sample(f.name, nullptr, "connection", kConn[c]);
            w.u64(f.values[c]);
            w.put("\n");
        }
    }

    return w.len();
}
