/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_metrics: the api_key_metrics page (metrics.cpp: ak_metrics_page)
 * from arbitrary zone names, label values and counters.
 *
 * Input: a byte (zones: 0..2, enough for the page's order across zones;
 * bit 3: status and event names from the input, else the module's), then
 * per zone its name (a length byte: up to 63 bytes, or up to 300 when it
 * is 255 -- every byte of a name is written about 45 times per page, so
 * short names keep the target fast; t/42 has the 4,000-byte names of real
 * configurations) and its counters (u64s; missing bytes read as 0), then
 * the node's counters.
 *
 * Oracles:
 * - sizing and writing agree: the length measured without a buffer is what
 *   is written into a heap buffer of exactly that size, and a buffer one
 *   byte short is never written past (ASan) while the length returned
 *   stays the same;
 * - the page parses as Prometheus text exposition (a small checker below):
 *   every line a "# HELP name text", a "# TYPE name type" or a sample
 *   "name{label="value",...} number"; metric and label names well-formed;
 *   label values valid UTF-8 with only the escapes \\ \" \n; HELP and TYPE
 *   at most once per family and before its samples; a family's samples
 *   in one run (never interleaved with another family's); the page ends
 *   with a line feed;
 * - every zone label, unescaped, is the zone's name with each byte that is
 *   not valid UTF-8 replaced by U+FFFD (a reference decoder); each zone has
 *   the same number of samples; the requests_total values are the zone's
 *   counters and a zone's histogram buckets are their running sums.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <string>
#include <string_view>
#include <vector>

namespace {

const char *const kStatus[] = {
    "ok", "missing", "malformed", "unknown", "expired", "revoked",
    "bad_record", "ip_denied", "referrer_denied", "scope_denied",
    "rate_limited", "quota_exceeded", "unavailable", "unchecked"};
constexpr size_t kNStatus = sizeof(kStatus) / sizeof(kStatus[0]);
const char *const kEvents[] = {"revoke", "update", "flush", "keyspace",
                               "malformed"};
constexpr size_t kNEvents = 5;
constexpr size_t kBuckets = 12;
const uint64_t kBounds[kBuckets] = {250, 500, 1000, 2500, 5000, 10000, 25000,
                                    50000, 100000, 250000, 1000000, 0};

/* ---- a reference UTF-8 decoder: the U+FFFD-substituted string */

/* the length of the valid sequence at s[i], decoded to a code point and
 * checked against its range; 0 when invalid */
FUZZ_ORACLE size_t ref_seq(std::string_view s, size_t i)
{
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
             : (c >> 3) == 30 ? 4 : 0;

    if (k == 0 || i + k > s.size()) return 0;

    uint32_t cp = k == 1 ? c : (c & (0x7f >> k));
    for (size_t j = 1; j < k; j++) {
        unsigned char d = static_cast<unsigned char>(s[i + j]);
        if ((d & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (d & 0x3f);
    }

    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return k;
}

FUZZ_ORACLE std::string ref_utf8(std::string_view s)
{
    std::string out;
    size_t i = 0;

    while (i < s.size()) {
        size_t k = ref_seq(s, i);
        if (k) {
            out.append(s.data() + i, k);
            i += k;
        } else {
            out += "\xef\xbf\xbd";
            i++;
        }
    }
    return out;
}

FUZZ_ORACLE bool valid_utf8(std::string_view s)
{
    for (size_t i = 0, k; i < s.size(); i += k) {
        k = ref_seq(s, i);
        if (k == 0) return false;
    }
    return true;
}

/* ---- the Prometheus text checker */

FUZZ_ORACLE bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
           || c == ':' || (!first && c >= '0' && c <= '9');
}

FUZZ_ORACLE bool metric_name(std::string_view s)
{
    if (s.empty()) return false;
    for (size_t i = 0; i < s.size(); i++) {
        if (!name_char(s[i], i == 0)) return false;
    }
    return true;
}

/* a parsed sample; reused from line to line (few allocations per page:
 * ASan's malloc records a stack trace each time) */
struct Sample {
    std::string_view name;
    size_t nlabels;
    std::string_view lname[4];
    std::string lval[4];                /* unescaped */
    std::string_view value;
};

/* parses "name{a="x",b="y"} value"; false when malformed */
FUZZ_ORACLE bool parse_sample(std::string_view line, Sample *s)
{
    size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) i++;
    s->name = line.substr(0, i);
    s->nlabels = 0;
    if (!metric_name(s->name)) return false;

    if (i < line.size() && line[i] == '{') {
        i++;
        for (;;) {
            size_t b = i;
            while (i < line.size() && name_char(line[i], i == b)
                   && line[i] != ':') i++;
            std::string_view lname = line.substr(b, i - b);
            if (lname.empty() || i + 1 >= line.size() || line[i] != '='
                || line[i + 1] != '"') {
                return false;
            }
            i += 2;
            if (s->nlabels == 4) return false;
            std::string &val = s->lval[s->nlabels];
            val.clear();
            for (;;) {
                if (i >= line.size()) return false;
                char c = line[i];
                if (c == '"') { i++; break; }
                if (c == '\\') {
                    if (i + 1 >= line.size()) return false;
                    char e = line[i + 1];
                    if (e == '\\') val += '\\';
                    else if (e == '"') val += '"';
                    else if (e == 'n') val += '\n';
                    else return false;
                    i += 2;
                    continue;
                }
                val += c;
                i++;
            }
            if (!valid_utf8(val)) return false;
            s->lname[s->nlabels++] = lname;
            if (i < line.size() && line[i] == ',') { i++; continue; }
            if (i < line.size() && line[i] == '}') { i++; break; }
            return false;
        }
    }

    if (i >= line.size() || line[i] != ' ') return false;
    s->value = line.substr(i + 1);

    /* what the module writes: digits, maybe "." and digits */
    size_t dot = s->value.find('.');
    std::string_view ip = s->value.substr(0, dot);
    if (ip.empty()
        || ip.find_first_not_of("0123456789") != std::string_view::npos) {
        return false;
    }
    if (dot != std::string_view::npos) {
        std::string_view fp = s->value.substr(dot + 1);
        if (fp.size() != 6 || fp.find_first_not_of("0123456789")
                                  != std::string_view::npos) {
            return false;
        }
    }
    return true;
}

FUZZ_ORACLE bool seen(const std::vector<std::string_view> &v,
    std::string_view name)
{
    for (const auto &x : v) {
        if (x == name) return true;
    }
    return false;
}

/* checks the page's format; each sample to f (views into page) */
template <typename F>
FUZZ_ORACLE void check_page(std::string_view page, F f)
{
    static std::vector<std::string_view> help, type, done, types;
    static Sample s;
    std::string_view current;

    help.clear();
    type.clear();
    done.clear();
    types.clear();

    FUZZ_CHECK(page.empty() || page.back() == '\n');

    size_t i = 0;
    while (i < page.size()) {
        size_t nl = page.find('\n', i);
        FUZZ_CHECK(nl != std::string_view::npos);
        std::string_view line = page.substr(i, nl - i);
        i = nl + 1;

        FUZZ_CHECK(!line.empty());

        if (line[0] == '#') {
            bool is_help = line.compare(0, 7, "# HELP ") == 0;
            bool is_type = line.compare(0, 7, "# TYPE ") == 0;
            FUZZ_CHECK(is_help || is_type);
            size_t sp = line.find(' ', 7);
            FUZZ_CHECK(sp != std::string_view::npos);
            std::string_view name = line.substr(7, sp - 7);
            std::string_view rest = line.substr(sp + 1);
            FUZZ_CHECK(metric_name(name));
            FUZZ_CHECK(!seen(done, name));             /* not after its run */
            if (is_help) {
                FUZZ_CHECK(!seen(help, name));
                help.push_back(name);
                FUZZ_CHECK(rest.find('\\') == std::string_view::npos);
            } else {
                FUZZ_CHECK(!seen(type, name));
                type.push_back(name);
                FUZZ_CHECK(rest == "counter" || rest == "gauge"
                           || rest == "histogram");
                types.push_back(rest);
            }
            if (current != name && !current.empty()) done.push_back(current);
            current = name;
            continue;
        }

        FUZZ_CHECK(parse_sample(line, &s));

        /* the family: histogram suffixes removed when so declared */
        std::string_view fam = s.name;
        for (std::string_view sf : {"_bucket", "_sum", "_count"}) {
            if (fam.size() > sf.size()
                && fam.compare(fam.size() - sf.size(), sf.size(), sf) == 0)
            {
                std::string_view base = fam.substr(0, fam.size() - sf.size());
                for (size_t t = 0; t < type.size(); t++) {
                    if (type[t] == base && types[t] == "histogram") {
                        fam = base;
                    }
                }
            }
        }

        FUZZ_CHECK(seen(type, fam));                    /* TYPE came first */
        FUZZ_CHECK(!seen(done, fam));
        if (current != fam) {
            if (!current.empty()) done.push_back(current);
            current = fam;
        }
        f(s);
    }
}

FUZZ_ORACLE uint64_t number(std::string_view v)
{
    uint64_t n = 0;
    for (char c : v) {
        if (c == '.') break;
        n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    return n;
}

std::string name_from(fuzz::Input &in)
{
    uint8_t n = in.u8();
    if (n == 255) {
        size_t len = in.u16() % 301;
        return in.bytes(len);
    }
    return in.bytes(n & 63);
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);
    uint8_t head = in.u8();
    size_t nz = head % 3;                       /* 0..2 */
    bool custom = head & 8;

    /* kept from run to run: few allocations per input */
    static std::string znames[4], snames[kNStatus], enames[kNEvents];
    static ak_str_t sstr[kNStatus], estr[kNEvents];
    static uint64_t counts[4 * (kNStatus + kBuckets)];
    static ak_metrics_zone_t zones[4];
    uint64_t ev[kNEvents];

    for (size_t j = 0; j < kNStatus; j++) {
        snames[j] = custom ? in.str8() : kStatus[j];
    }
    for (size_t j = 0; j < kNEvents; j++) {
        enames[j] = custom ? in.str8() : kEvents[j];
    }

    for (size_t i = 0; i < nz; i++) {
        znames[i] = name_from(in);
        ak_metrics_zone_t &z = zones[i];
        z = ak_metrics_zone_t();
        uint64_t *c = &counts[i * (kNStatus + kBuckets)];
        for (size_t j = 0; j < kNStatus; j++) c[j] = in.u64();
        for (size_t j = 0; j < kBuckets; j++) {
            c[kNStatus + j] = in.u8() ? in.u32() : in.u64();
        }
        z.status = c;
        z.latency = c + kNStatus;
        z.cache.hits = in.u64();
        z.cache.misses = in.u64();
        z.cache.stale_hits = in.u64();
        z.cache.negative_hits = in.u64();
        z.cache.evictions = in.u64();
        z.cache.inserts = in.u64();
        z.cache.entries = in.u32();
        z.cache.negative_entries = in.u32();
        z.cache.slots_total = in.u32();
        z.cache.slots_free = in.u32();
        z.latency_sum_us = in.u64();
        z.latency_count = in.u64();
        z.redis_errors = in.u64();
        z.redis_timeouts = in.u64();
    }

    ak_metrics_t m = {};
    for (size_t i = 0; i < nz; i++) {
        zones[i].name = {znames[i].data(), znames[i].size()};
    }
    for (size_t j = 0; j < kNStatus; j++) {
        sstr[j] = {snames[j].data(), snames[j].size()};
    }
    for (size_t j = 0; j < kNEvents; j++) {
        estr[j] = {enames[j].data(), enames[j].size()};
        ev[j] = in.u64();
    }
    m.zones = zones;
    m.nzones = nz;
    m.status_names = sstr;
    m.nstatus = kNStatus;
    m.latency_bounds_us = kBounds;
    m.nbuckets = kBuckets;
    m.event_names = estr;
    m.events = ev;
    m.nevents = kNEvents;
    m.resubscribes = in.u64();
    for (int c = 0; c < 2; c++) {
        m.connects[c] = in.u64();
        m.disconnects[c] = in.u64();
        m.reconnects[c] = in.u64();
        m.tls_failures[c] = in.u64();
        m.tls_reused[c] = in.u64();
        m.connected[c] = in.u8() & 1;
    }
    m.failover_errors = in.u64();
    m.master_switches = in.u64();
    m.master_queries = in.u64();

    /* ---- sizing and writing */

    size_t len = ak_metrics_page(&m, nullptr, 0);
    FUZZ_CHECK(len > 0);

    fuzz::Exact buf(std::string(len, '\0'));
    FUZZ_CHECK(ak_metrics_page(&m, buf.buf, len) == len);

    {
        fuzz::Exact shorter(std::string(len - 1, '\0'));
        FUZZ_CHECK(ak_metrics_page(&m, shorter.buf, len - 1) == len);
    }

    const std::string_view page(buf.buf, len);

    /* ---- the format, the zones' labels and values */

    std::string want[4];
    size_t distinct = 0;
    for (size_t i = 0; i < nz; i++) {
        want[i] = ref_utf8(znames[i]);
        bool dup = false;
        for (size_t k = 0; k < i; k++) dup = dup || want[k] == want[i];
        distinct += dup ? 0 : 1;
    }

    size_t per_zone[4] = {0, 0, 0, 0}, nreq[4] = {0, 0, 0, 0};
    size_t nbucket[4] = {0, 0, 0, 0};
    uint64_t cum[4] = {0, 0, 0, 0};
    bool used[4] = {false, false, false, false};

    check_page(page, [&](const Sample &smp) {
        const std::string *z = nullptr;
        for (size_t l = 0; l < smp.nlabels; l++) {
            if (smp.lname[l] == "zone") z = &smp.lval[l];
        }
        if (z == nullptr) return;

        size_t zi = nz;
        for (size_t k = 0; k < nz && zi == nz; k++) {
            if (want[k] == *z) zi = k;
        }
        FUZZ_CHECK(zi < nz);            /* a zone label is a zone's name */
        used[zi] = true;
        per_zone[zi]++;

        if (distinct != nz) return;     /* two names alike: counts mix */

        const uint64_t *c = &counts[zi * (kNStatus + kBuckets)];
        if (smp.name == "api_key_requests_total") {
            FUZZ_CHECK(nreq[zi] < kNStatus);
            FUZZ_CHECK(number(smp.value) == c[nreq[zi]]);
            nreq[zi]++;
        } else if (smp.name == "api_key_redis_read_seconds_bucket") {
            FUZZ_CHECK(nbucket[zi] < kBuckets);
            cum[zi] += c[kNStatus + nbucket[zi]];
            FUZZ_CHECK(number(smp.value) == cum[zi]);
            nbucket[zi]++;
        }
    });

    size_t nused = 0;
    for (size_t i = 0; i < nz; i++) nused += used[i] ? 1 : 0;
    FUZZ_CHECK(nused == distinct);

    if (distinct == nz) {
        for (size_t i = 0; i < nz; i++) {
            FUZZ_CHECK(per_zone[i] == per_zone[0]);
            FUZZ_CHECK(nreq[i] == kNStatus);
            FUZZ_CHECK(nbucket[i] == kBuckets);
        }
    }

    return 0;
}
