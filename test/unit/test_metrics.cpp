/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The metrics page (metrics.cpp: ak_metrics_page): the text the module
 * served before the writer moved into the core, sizing equal to writing,
 * escaping of label values, one HELP/TYPE per family with several zones.
 */

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ak_core.h"

namespace {

const ak_str_t kStatus[] = {{"ok", 2}, {"missing", 7}};
const ak_str_t kEvents[] = {{"revoke", 6}, {"flush", 5}};
const uint64_t kBounds[] = {250, 1000000, 0};

struct Page {
    std::vector<ak_metrics_zone_t> zones;
    std::vector<std::string> names;
    uint64_t status[8][2];
    uint64_t latency[8][3];
    uint64_t events[2] = {5, 6};
    ak_metrics_t m = {};

    explicit Page(std::vector<std::string> zone_names) : names(zone_names)
    {
        zones.resize(names.size());
        for (size_t i = 0; i < names.size(); i++) {
            ak_metrics_zone_t &z = zones[i];
            z = {};
            z.name = {names[i].data(), names[i].size()};
            status[i][0] = 10 + i;
            status[i][1] = 20 + i;
            latency[i][0] = 1;
            latency[i][1] = 2;
            latency[i][2] = 4;
            z.status = status[i];
            z.latency = latency[i];
            z.cache.hits = 7;
            z.cache.entries = 3;
            z.cache.slots_total = 100;
            z.cache.read_retries = 11;
            z.latency_sum_us = 1234567;
            z.latency_count = 7;
            z.redis_timeouts = 18446744073709551615ULL;
        }
        m.zones = zones.data();
        m.nzones = zones.size();
        m.status_names = kStatus;
        m.nstatus = 2;
        m.latency_bounds_us = kBounds;
        m.nbuckets = 3;
        m.event_names = kEvents;
        m.events = events;
        m.nevents = 2;
        m.resubscribes = 9;
        m.failover_errors = 3;
        m.master_switches = 2;
        m.master_queries = 5;
        m.connects[0] = 1;
        m.connects[1] = 2;
        m.connected[0] = 1;
    }

    std::string text()
    {
        size_t len = ak_metrics_page(&m, nullptr, 0);
        std::string out(len + 8, '#');
        EXPECT_EQ(ak_metrics_page(&m, &out[0], len), len);
        EXPECT_EQ(out.substr(len), "########");
        return out.substr(0, len);
    }
};

size_t count(const std::string &s, const std::string &what)
{
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos;
         at = s.find(what, at + 1)) {
        n++;
    }
    return n;
}

} // namespace


TEST(Metrics, OneZone)
{
    Page p({"keys"});
    std::string t = p.text();

    const std::string head =
              "# HELP api_key_requests_total Requests checked, by outcome.\n"
              "# TYPE api_key_requests_total counter\n"
              "api_key_requests_total{zone=\"keys\",status=\"ok\"} 10\n"
              "api_key_requests_total{zone=\"keys\",status=\"missing\"} 20\n"
              "# HELP api_key_cache_lookups_total C";
    EXPECT_EQ(t.substr(0, head.size()), head);
    EXPECT_NE(t.find("api_key_cache_lookups_total{zone=\"keys\","
                     "result=\"hit\"} 7\n"
                     "api_key_cache_lookups_total{zone=\"keys\","
                     "result=\"negative_hit\"} 0\n"), std::string::npos);
    EXPECT_NE(t.find("# TYPE api_key_redis_read_seconds histogram\n"
                     "api_key_redis_read_seconds_bucket{zone=\"keys\","
                     "le=\"0.000250\"} 1\n"
                     "api_key_redis_read_seconds_bucket{zone=\"keys\","
                     "le=\"1.000000\"} 3\n"
                     "api_key_redis_read_seconds_bucket{zone=\"keys\","
                     "le=\"+Inf\"} 7\n"
                     "api_key_redis_read_seconds_sum{zone=\"keys\"} 1.234567\n"
                     "api_key_redis_read_seconds_count{zone=\"keys\"} 7\n"),
              std::string::npos);
    EXPECT_NE(t.find("api_key_redis_errors_total{zone=\"keys\","
                     "kind=\"timeout\"} 18446744073709551615\n"),
              std::string::npos);
    EXPECT_NE(t.find("api_key_events_total{type=\"flush\"} 6\n"),
              std::string::npos);
    EXPECT_NE(t.find("\napi_key_subscription_reconnects_total 9\n"),
              std::string::npos);
    EXPECT_NE(t.find("# TYPE api_key_redis_failover_errors_total counter\n"
                     "api_key_redis_failover_errors_total 3\n"),
              std::string::npos);
    EXPECT_NE(t.find("\napi_key_redis_master_switches_total 2\n"),
              std::string::npos);
    EXPECT_NE(t.find("\napi_key_redis_master_queries_total 5\n"),
              std::string::npos);
    const std::string tail =
        "api_key_redis_connected{connection=\"commands\"} 1\n"
        "api_key_redis_connected{connection=\"events\"} 0\n";
    EXPECT_EQ(t.substr(t.size() - tail.size()), tail);
}

TEST(Metrics, ShortBuffers)
{
    Page p({"keys", "other"});
    size_t len = ak_metrics_page(&p.m, nullptr, 0);
    std::string full = p.text();

    for (size_t cap : {size_t(0), size_t(1), len / 2, len - 1}) {
        std::string out(len + 8, '#');
        EXPECT_EQ(ak_metrics_page(&p.m, &out[0], cap), len);
        EXPECT_EQ(out.substr(cap), std::string(len + 8 - cap, '#'))
            << "written past cap " << cap;
    }
    EXPECT_EQ(ak_metrics_page(nullptr, nullptr, 0), 0u);
}

TEST(Metrics, ZonesShareFamilies)
{
    Page p({"a", "b", "c"});
    std::string t = p.text();

    /* one HELP and one TYPE per family, then every zone's samples */
    EXPECT_EQ(count(t, "# HELP api_key_cache_evictions_total "), 1u);
    EXPECT_EQ(count(t, "# TYPE api_key_redis_read_seconds "), 1u);
    EXPECT_NE(t.find("api_key_cache_evictions_total{zone=\"a\"} 0\n"
                     "api_key_cache_evictions_total{zone=\"b\"} 0\n"
                     "api_key_cache_evictions_total{zone=\"c\"} 0\n"),
              std::string::npos);
    EXPECT_EQ(count(t, "{zone=\"a\""), count(t, "{zone=\"c\""));
    EXPECT_NE(t.find("# TYPE api_key_cache_read_retries_total counter\n"
                     "api_key_cache_read_retries_total{zone=\"a\"} 11\n"
                     "api_key_cache_read_retries_total{zone=\"b\"} 11\n"),
              std::string::npos);
}

TEST(Metrics, UsageFamilies)
{
    Page p({"keys"});
    std::string t = p.text();

    for (const char *f : {"api_key_usage_flushes_total",
                          "api_key_usage_writes_total",
                          "api_key_usage_write_errors_total",
                          "api_key_usage_dropped_total"}) {
        EXPECT_NE(t.find(std::string("# TYPE ") + f + " counter\n"),
                  std::string::npos) << f;
        EXPECT_NE(t.find(std::string(f) + "{zone=\"keys\"} 0\n"),
                  std::string::npos) << f;
    }
}

TEST(Metrics, NoZones)
{
    Page p({});
    std::string t = p.text();

    /* the families without samples, and no node-wide part */
    EXPECT_EQ(count(t, "# HELP "), 13u);
    EXPECT_EQ(t.find("api_key_events_total"), std::string::npos);
    EXPECT_EQ(t.find("{"), std::string::npos);
}

TEST(Metrics, LabelValues)
{
    Page p({std::string("we\"ird\\na\nme"),
            std::string("z\xc3\xb6ne-\xf0\x9f\x94\x91", 10),
            std::string("bad\xff\xc0\xaf|\xed\xa0\x80|\xe2\x82", 13),
            std::string("nul\0cr\r", 7)});
    std::string t = p.text();

    EXPECT_NE(t.find("{zone=\"we\\\"ird\\\\na\\nme\"}"), std::string::npos);
    /* valid UTF-8 as it is */
    EXPECT_NE(t.find("{zone=\"z\xc3\xb6ne-\xf0\x9f\x94\x91\"}"),
              std::string::npos);
    /* each byte that is not: U+FFFD (overlong, surrogate, truncated) */
    const std::string r = "\xef\xbf\xbd";
    EXPECT_NE(t.find("{zone=\"bad" + r + r + r + "|" + r + r + r + "|" + r + r
                     + "\"}"),
              std::string::npos);
    EXPECT_NE(t.find(std::string("{zone=\"nul\0cr\r\"}", 15)),
              std::string::npos);
}
