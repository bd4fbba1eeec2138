/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_record: record fields -> record.  Field/value pairs from the input
 * (every field the module reads, unknown ones, repeats, empty, huge and
 * hostile values) go through ak_record_build into a buffer of exactly the
 * capacity given; the answer is checked against a reference reading of
 * each field written from README's record format (status, expires_at,
 * rate, burst, quota: the rate/quota specs; id, owner, plan, scopes;
 * identity, alias_until, rate_scope), and
 * against ak::validate_field.  A built blob goes through ak_record_view
 * (and ak_record_view_lazy + ak_record_default_id: the same view) and
 * every accessor (ips, referrers, scopes, the state carried between two
 * records).  A second mode hands any bytes to ak_record_view as a blob.
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "internal.hpp"
#include "fuzz_util.h"
#include "match_old.h"
#include "record_old.h"

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace {

const char *const kNames[] = {
    "id", "owner", "plan", "status", "expires_at", "scopes", "ips",
    "referrers", "rate", "burst", "quota", "identity", "alias_until",
    "rate_scope",
};
constexpr size_t kNNames = sizeof(kNames) / sizeof(kNames[0]);

bool digit(char c) { return c >= '0' && c <= '9'; }

bool lower_eq(const std::string &a, const char *b)
{
    if (a.size() != std::strlen(b)) {
        return false;
    }
    for (size_t i = 0; i < a.size(); i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c + 32);
        }
        if (c != b[i]) {
            return false;
        }
    }
    return true;
}

/* 1..maxd digits */
std::optional<uint64_t> ref_uint(const std::string &s, size_t maxd)
{
    if (s.empty() || s.size() > maxd) {
        return std::nullopt;
    }
    uint64_t v = 0;
    for (char c : s) {
        if (!digit(c)) {
            return std::nullopt;
        }
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
}

struct Per {
    bool ok = false;
    uint64_t n = 0;
    uint8_t period = 0;
};

Per ref_per(const std::string &v, bool rate)
{
    Per p;
    size_t slash = v.find('/');
    if (slash == std::string::npos) {
        return p;
    }
    auto n = ref_uint(v.substr(0, slash), 19);
    std::string u = v.substr(slash + 1);
    if (!n) {
        return p;
    }
    uint8_t period = 0;
    if (rate) {
        if (lower_eq(u, "s") || lower_eq(u, "sec") || lower_eq(u, "second")) {
            period = AK_PERIOD_SECOND;
        } else if (lower_eq(u, "m") || lower_eq(u, "min")
                   || lower_eq(u, "minute")) {
            period = AK_PERIOD_MINUTE;
        } else if (lower_eq(u, "h") || lower_eq(u, "hour")) {
            period = AK_PERIOD_HOUR;
        }
    } else {
        if (lower_eq(u, "hour")) {
            period = AK_PERIOD_HOUR;
        } else if (lower_eq(u, "day")) {
            period = AK_PERIOD_DAY;
        } else if (lower_eq(u, "month")) {
            period = AK_PERIOD_MONTH;
        }
    }
    uint64_t max = rate ? 1000000000ULL : 1000000000000000ULL;
    if (period == 0 || *n < 1 || *n > max) {
        return p;
    }
    p.ok = true;
    p.n = *n;
    p.period = period;
    return p;
}

bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || digit(c)
           || c == '.' || c == '_' || c == ':' || c == '-';
}

bool scope_char(char c)
{
    return id_char(c) || c == '/' || c == '*';
}

bool ref_id(const std::string &v)
{
    if (v.empty() || v.size() > 64) {
        return false;
    }
    for (char c : v) {
        if (!id_char(c)) {
            return false;
        }
    }
    return true;
}

bool ref_text(const std::string &v)
{
    if (v.size() > 256) {
        return false;
    }
    for (unsigned char c : v) {
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

std::vector<std::string> words(const std::string &v)
{
    std::vector<std::string> w;
    std::string cur;
    for (char c : v) {
        if (c == ' ' || c == '\t') {
            if (!cur.empty()) {
                w.push_back(cur);
                cur.clear();
            }
        } else {
            cur.push_back(c);
        }
    }
    if (!cur.empty()) {
        w.push_back(cur);
    }
    return w;
}

bool ref_scopes(const std::string &v, std::string *norm)
{
    norm->clear();
    for (const auto &w : words(v)) {
        if (w.size() > 64) {
            return false;
        }
        for (char c : w) {
            if (!scope_char(c)) {
                return false;
            }
        }
        if (!norm->empty()) {
            norm->push_back(' ');
        }
        *norm += w;
    }
    return true;
}

bool printable_nul_terminated(const char *s, size_t cap)
{
    for (size_t i = 0; i < cap; i++) {
        if (s[i] == '\0') {
            return true;
        }
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return false;
}

std::string view_str(const ak_str_t &s)
{
    return s.len ? std::string(s.data, s.len) : std::string();
}

std::string value_for(fuzz::Input &in)
{
    uint8_t how = in.u8();
    switch (how % 8) {
    case 0: {
        /* a huge value: one byte repeated */
        size_t n = 1 + in.u16() % 70000;
        return std::string(n, static_cast<char>(in.u8()));
    }
    case 1:
        return in.str16(5000);
    case 2: {
        /* 64 hex digits (an identity), lowercase or not */
        static const char hx[] = "0123456789abcdefABCDEF";
        std::string h(64, '0');
        for (auto &c : h) {
            c = hx[in.u8() % (in.flag() ? 16 : 22)];
        }
        return h;
    }
    default:
        return in.str8();
    }
}

void exercise(const ak_record_t &rec, fuzz::Input &in);

/*
 * ak_record_view_lazy: the same view as ak_record_view where that one
 * accepts, but for an id left empty where the record has none (then
 * ak_record_default_id makes the id the full view has, once).  It accepts
 * more only where a rules section is malformed (it leaves the rules' bytes
 * to the matchers): then the matchers run on its view (the sanitizers
 * check that they stay in the section).
 */
/* the same string: the same bytes in the blob (an empty one anywhere) */
bool same_str(const ak_str_t &a, const ak_str_t &b)
{
    return a.len == b.len
           && (a.len == 0 || a.data == b.data
               || std::memcmp(a.data, b.data, a.len) == 0);
}

/* the same view, field for field (id_buf: only where id points to it) */
bool same_view(const ak_record_t &a, const ak_record_t &b)
{
    return same_str(a.id, b.id)
           && (a.id.data == a.id_buf) == (b.id.data == b.id_buf)
           && same_str(a.owner, b.owner) && same_str(a.plan, b.plan)
           && same_str(a.scopes, b.scopes)
           && (a.owner.data != nullptr) == (b.owner.data != nullptr)
           && (a.plan.data != nullptr) == (b.plan.data != nullptr)
           && (a.scopes.data != nullptr) == (b.scopes.data != nullptr)
           && a.expires_at == b.expires_at && a.status == b.status
           && a.has_ips == b.has_ips && a.has_referrers == b.has_referrers
           && a.rate_period == b.rate_period && a.rate_n == b.rate_n
           && a.burst == b.burst && a.rate_interval_us == b.rate_interval_us
           && a.quota_period == b.quota_period && a.quota_n == b.quota_n
           && a.rate_scope == b.rate_scope && a.identity == b.identity
           && a.alias_until == b.alias_until && a.blob == b.blob
           && a.blob_len == b.blob_len && a.ips == b.ips
           && a.referrers == b.referrers && a.ips_len == b.ips_len
           && a.referrers_len == b.referrers_len;
}

/* both views against the view before it was made cheaper
   (record_old.h): the same answer and the same view, on every blob */
void check_old(const unsigned char *hash, const unsigned char *blob,
    size_t len, int rc, const ak_record_t &full, int lrc,
    const ak_record_t &lz)
{
    ak_record_t of, ol;
    int orc = record_old::record_view_old(hash, blob, len, &of, true);
    int olrc = record_old::record_view_old(hash, blob, len, &ol, false);

    FUZZ_CHECK(rc == orc && lrc == olrc);
    if (rc == 0) {
        FUZZ_CHECK(same_view(full, of));
    }
    if (lrc == 0) {
        FUZZ_CHECK(same_view(lz, ol));
    }
}

const unsigned char kSomeHash[AK_HASH_LEN] = { 0x42 };

void check_lazy(const unsigned char *hash, const unsigned char *blob,
    size_t len, int rc, const ak_record_t &full, fuzz::Input &in)
{
    ak_record_t lz;
    int lrc = ak_record_view_lazy(hash, blob, len, &lz);
    FUZZ_CHECK(lrc == 0 || lrc == -1);
    check_old(hash, blob, len, rc, full, lrc, lz);
    if (rc == 0) {
        FUZZ_CHECK(lrc == 0);
    }

    /* ak_record_plain: exactly the blobs both views read as a record that
     * only its texts describe (a request is allowed on it unviewed) */
    int plain = ak_record_plain(blob, len);
    FUZZ_CHECK(plain == 0 || plain == 1);
    bool viewed_plain = (rc == 0 && full.status == AK_STATUS_ACTIVE
                   && full.expires_at == 0 && full.scopes.len == 0
                   && !full.has_ips && !full.has_referrers
                   && full.rate_period == AK_PERIOD_NONE
                   && full.quota_period == AK_PERIOD_NONE
                   && full.identity == nullptr && full.alias_until == 0
                   && full.rate_scope == AK_RATE_SCOPE_DEFAULT);
    /* (without a hash the views refuse a record without an id; the glue
     * always has one) */
    FUZZ_CHECK(hash == nullptr ? (!viewed_plain || plain)
                               : (plain == (viewed_plain ? 1 : 0)));

    /* AK_ENTRY_RATED: only a record of texts and a rate (the request path
     * then reads it with ak_record_rate_only, the rate's fields as the
     * views read them); not every such record (a number of more than
     * three bytes is left to the view) */
    uint32_t ef = ak_record_entry_flags(blob, len);
    FUZZ_CHECK(ef == 0 || ef == AK_ENTRY_PLAIN || ef == AK_ENTRY_RATED);
    FUZZ_CHECK((ef == AK_ENTRY_PLAIN) == (plain == 1));
    bool viewed_rated = (full.status == AK_STATUS_ACTIVE
                         && full.expires_at == 0 && full.scopes.len == 0
                         && !full.has_ips && !full.has_referrers
                         && full.rate_period != AK_PERIOD_NONE
                         && full.quota_period == AK_PERIOD_NONE
                         && full.identity == nullptr && full.alias_until == 0
                         && full.rate_scope == AK_RATE_SCOPE_DEFAULT);
    if (ef == AK_ENTRY_RATED && hash != nullptr) {
        FUZZ_CHECK(rc == 0 && viewed_rated);
    }
    ak_record_t ro, lv;
    std::memset(&ro, 0x5a, sizeof(ro));
    int rated = ak_record_rate_only(blob, len, &ro);
    FUZZ_CHECK(rated == 0 || rated == 1);
    FUZZ_CHECK(ef != AK_ENTRY_RATED || rated == 1);
    if (rated
        && ak_record_view_lazy(hash ? hash : kSomeHash, blob, len, &lv) == 0)
    {
        FUZZ_CHECK(ro.status == lv.status && ro.rate_period == lv.rate_period
                   && ro.rate_n == lv.rate_n
                   && ro.rate_interval_us == lv.rate_interval_us
                   && ro.burst == lv.burst && ro.rate_scope == lv.rate_scope
                   && ro.quota_period == lv.quota_period
                   && ro.quota_n == lv.quota_n
                   && ro.expires_at == lv.expires_at
                   && ro.alias_until == lv.alias_until
                   && ro.has_ips == lv.has_ips
                   && ro.has_referrers == lv.has_referrers
                   && lv.identity == nullptr && lv.scopes.len == 0
                   && ro.identity == nullptr && ro.id.len == 0
                   && ro.scopes.len == 0 && ro.blob == blob
                   && ro.blob_len == len);
    }
    if (!rated) {
        /* untouched */
        unsigned char pat[sizeof(ro)];
        std::memset(pat, 0x5a, sizeof(pat));
        FUZZ_CHECK(std::memcmp(&ro, pat, sizeof(ro)) == 0);
    }
    if (lrc != 0) {
        FUZZ_CHECK(lz.blob == nullptr && lz.id.len == 0);
        return;
    }
    FUZZ_CHECK(lz.has_ips == (lz.ips != nullptr)
               && lz.has_referrers == (lz.referrers != nullptr));
    FUZZ_CHECK(lz.ips == nullptr
               || (lz.ips >= blob && lz.ips + lz.ips_len <= blob + len));
    FUZZ_CHECK(lz.referrers == nullptr
               || (lz.referrers >= blob
                   && lz.referrers + lz.referrers_len <= blob + len));
    if (rc != 0) {
        FUZZ_CHECK((lz.has_ips && !ak::check_ips_section(lz.ips, lz.ips_len))
                   || (lz.has_referrers
                       && !ak::check_referrers_section(lz.referrers,
                                                       lz.referrers_len)));
        exercise(lz, in);
        return;
    }

    if (full.id.data != full.id_buf) {
        /* the record's own id */
        FUZZ_CHECK(lz.id.data == full.id.data && lz.id.len == full.id.len);
    } else {
        FUZZ_CHECK(lz.id.data == nullptr && lz.id.len == 0);
        ak_record_default_id(hash, &lz);
        FUZZ_CHECK(lz.id.data == lz.id_buf && view_str(lz.id) == view_str(full.id));
        ak_record_default_id(hash, &lz);        /* made already: nothing */
        FUZZ_CHECK(lz.id.data == lz.id_buf && view_str(lz.id) == view_str(full.id));
    }

    FUZZ_CHECK(lz.owner.data == full.owner.data && lz.owner.len == full.owner.len);
    FUZZ_CHECK(lz.plan.data == full.plan.data && lz.plan.len == full.plan.len);
    FUZZ_CHECK(lz.scopes.data == full.scopes.data
               && lz.scopes.len == full.scopes.len);
    FUZZ_CHECK(lz.expires_at == full.expires_at && lz.status == full.status);
    FUZZ_CHECK(lz.has_ips == full.has_ips
               && lz.has_referrers == full.has_referrers);
    FUZZ_CHECK(lz.ips == full.ips && lz.ips_len == full.ips_len
               && lz.referrers == full.referrers
               && lz.referrers_len == full.referrers_len);
    FUZZ_CHECK(lz.rate_period == full.rate_period && lz.rate_n == full.rate_n
               && lz.burst == full.burst
               && lz.rate_interval_us == full.rate_interval_us);
    FUZZ_CHECK(lz.quota_period == full.quota_period
               && lz.quota_n == full.quota_n
               && lz.rate_scope == full.rate_scope);
    FUZZ_CHECK(lz.identity == full.identity
               && lz.alias_until == full.alias_until);
    FUZZ_CHECK(lz.blob == full.blob && lz.blob_len == full.blob_len);
}

/* the accessors on a viewed record, with arguments from the input; the
 * rules sections are copied into buffers of their own size, so that a read
 * past a section is one past a buffer (the sanitizers see it) */
void exercise(const ak_record_t &viewed, fuzz::Input &in)
{
    ak_record_t rec = viewed;
    fuzz::Exact ips(viewed.ips
        ? std::string(reinterpret_cast<const char *>(viewed.ips),
                      viewed.ips_len)
        : std::string());
    fuzz::Exact refs(viewed.referrers
        ? std::string(reinterpret_cast<const char *>(viewed.referrers),
                      viewed.referrers_len)
        : std::string());
    if (viewed.ips) {
        rec.ips = ips.u();
    }
    if (viewed.referrers) {
        rec.referrers = refs.u();
    }

    unsigned char addr[16];
    for (auto &b : addr) {
        b = in.u8();
    }
    int fam = in.u8() % 8;
    int r = ak_record_ip_allowed(&rec, fam, addr);
    FUZZ_CHECK(r == 0 || r == 1);
    /* the same answer as the matcher before it was made cheaper, on the
       same rules as it read them (blob version 1); a section the full
       view refuses (corrupt) has no such rules: read within its bounds
       (the buffers above are its size), any answer */
    bool ips_ok = rec.has_ips && rec.ips
                  && ak::check_ips_section(rec.ips, rec.ips_len);
    bool refs_ok = rec.has_referrers && rec.referrers
                   && ak::check_referrers_section(rec.referrers,
                                                  rec.referrers_len);
    if (!rec.has_ips || ips_ok) {
        FUZZ_CHECK(r == match_old::ip_allowed_v2(&rec, fam, addr));
    }
    if (!rec.has_ips) {
        FUZZ_CHECK(r == 1);
    }

    std::string referer = in.str8();
    fuzz::Exact ref(referer);
    r = ak_record_referrer_allowed(&rec, ref.c(), ref.len);
    FUZZ_CHECK(r == 0 || r == 1);
    /* the same bytes as a URL's host, so that the rules are reached */
    fuzz::Exact url("http://" + referer + "/");
    int ru = ak_record_referrer_allowed(&rec, url.c(), url.len);
    FUZZ_CHECK(ru == 0 || ru == 1);
    if (!rec.has_referrers || refs_ok) {
        FUZZ_CHECK(r == match_old::referrer_allowed_v2(&rec, ref.c(),
                                                       ref.len));
        FUZZ_CHECK(ru == match_old::referrer_allowed_v2(&rec, url.c(),
                                                        url.len));
    }
    if (!rec.has_referrers) {
        FUZZ_CHECK(r == 1);
    }
    FUZZ_CHECK(ak_record_referrer_allowed(&rec, nullptr, 0)
               == (rec.has_referrers ? 0 : 1));

    /* scopes: each required one must be one of the record's words */
    std::vector<std::string> req;
    size_t n = in.u8() % 4;
    for (size_t i = 0; i < n; i++) {
        req.push_back(in.str8());
    }
    std::vector<std::string> have = words(view_str(rec.scopes));
    bool want = true;
    for (const auto &w : req) {
        bool found = false;
        for (const auto &h : have) {
            found = found || (!w.empty() && h == w);
        }
        want = want && found;
    }
    std::vector<fuzz::Exact *> keep;
    std::vector<ak_str_t> rs;
    for (const auto &w : req) {
        keep.push_back(new fuzz::Exact(w));
        rs.push_back({ keep.back()->c(), keep.back()->len });
    }
    FUZZ_CHECK(ak_record_has_scopes(&rec, rs.data(), rs.size())
               == (want ? 1 : 0));
    for (auto *e : keep) {
        delete e;
    }
}

void exercise_carry(const ak_record_t &a, const ak_record_t &b,
    fuzz::Input &in)
{
    ak_key_state_t st;
    st.tat_us = in.u64();
    st.q_window = in.u32();
    st.q_left = in.u32();
    st.q_used = in.u64();
    ak_key_state_t before = st;

    ak_key_state_carry(&a, &b, &st);

    bool same_rate = a.rate_period && b.rate_period
                     && a.rate_interval_us == b.rate_interval_us
                     && a.burst == b.burst;
    FUZZ_CHECK(st.tat_us == (same_rate ? before.tat_us : 0));

    bool same_identity = (a.identity == nullptr) == (b.identity == nullptr)
                         && (a.identity == nullptr
                             || std::memcmp(a.identity, b.identity,
                                            AK_HASH_LEN) == 0);
    bool same_quota = b.quota_period && a.quota_period == b.quota_period
                      && same_identity;
    if (!same_quota) {
        FUZZ_CHECK(st.q_window == 0 && st.q_left == 0 && st.q_used == 0);
    } else {
        FUZZ_CHECK(st.q_window == before.q_window);
        FUZZ_CHECK(st.q_used == before.q_used);
        FUZZ_CHECK(st.q_left == (b.quota_n < a.quota_n ? 0 : before.q_left));
    }
}

/* builds from fields; returns the blob when it built */
std::optional<std::vector<unsigned char>>
build_and_check(fuzz::Input &in, const unsigned char *hash)
{
    std::vector<std::string> names, values;
    size_t n = in.u8() % 16;

    for (size_t i = 0; i < n; i++) {
        uint8_t sel = in.u8();
        if (sel % 16 < kNNames) {
            names.push_back(kNames[sel % 16]);
        } else if (sel % 16 == 15) {
            names.push_back(in.str8());
        } else {
            names.push_back(kNames[(sel >> 4) % kNNames]);
        }
        values.push_back(value_for(in));
    }

    size_t cap = in.flag() ? AK_RECORD_MAX : in.u16() % 4200;

    /* the reference reading: the last non-empty value of each field */
    std::optional<std::string> val[kNNames];
    for (size_t i = 0; i < names.size(); i++) {
        for (size_t k = 0; k < kNNames; k++) {
            if (names[i] == kNames[k]) {
                val[k] = values[i].empty() ? std::nullopt
                                           : std::optional(values[i]);
            }
        }
    }

    bool valid = true;
    size_t total = 0;
    for (size_t k = 0; k < kNNames; k++) {
        if (!val[k]) {
            continue;
        }
        total += val[k]->size();
        std::string why;
        bool vf = ak::validate_field(kNames[k], *val[k], &why);
        valid = valid && vf;
        FUZZ_CHECK(vf == why.empty());
    }

    std::string norm;
    Per rate, quota;
    std::optional<uint64_t> burst, expires;
    uint8_t status = AK_STATUS_ACTIVE;
    bool ref_valid = true;

    if (val[0]) ref_valid &= ref_id(*val[0]);
    if (val[1]) ref_valid &= ref_text(*val[1]);
    if (val[2]) ref_valid &= ref_text(*val[2]);
    if (val[3]) {
        if (*val[3] == "active") status = AK_STATUS_ACTIVE;
        else if (*val[3] == "revoked") status = AK_STATUS_REVOKED;
        else if (*val[3] == "disabled") status = AK_STATUS_DISABLED;
        else ref_valid = false;
    }
    if (val[4]) {
        expires = ref_uint(*val[4], 18);
        ref_valid &= expires.has_value();
    }
    if (val[5]) ref_valid &= ref_scopes(*val[5], &norm);
    if (val[8]) {
        rate = ref_per(*val[8], true);
        ref_valid &= rate.ok;
    }
    if (val[9]) {
        burst = ref_uint(*val[9], 18);
        ref_valid &= burst.has_value() && *burst <= 1000000;
    }
    if (val[10]) {
        quota = ref_per(*val[10], false);
        ref_valid &= quota.ok;
    }
    bool own_identity = false;
    if (val[11]) {
        bool hex = val[11]->size() == 64;
        for (char c : *val[11]) {
            hex = hex && (digit(c) || (c >= 'a' && c <= 'f'));
        }
        ref_valid &= hex;
        own_identity = hex && ak::hex_encode(hash, AK_HASH_LEN) == *val[11];
    }
    std::optional<uint64_t> alias;
    if (val[12]) {
        alias = ref_uint(*val[12], 18);
        ref_valid &= alias.has_value() && *alias != 0;
    }
    uint8_t rate_scope = AK_RATE_SCOPE_DEFAULT;
    if (val[13]) {
        if (*val[13] == "node") rate_scope = AK_RATE_SCOPE_NODE;
        else if (*val[13] == "cluster") rate_scope = AK_RATE_SCOPE_CLUSTER;
        else ref_valid = false;
    }

    /* ips and referrers: validate_field's word (the other targets check
     * those parsers); every other field: the reference's */
    bool other_valid = true;
    for (size_t k : { 6, 7 }) {
        if (val[k]) {
            other_valid &= ak::validate_field(kNames[k], *val[k], nullptr);
        }
    }
    FUZZ_CHECK(valid == (ref_valid && other_valid));

    std::vector<fuzz::Exact *> keep;
    std::vector<ak_str_t> f, v;
    for (size_t i = 0; i < names.size(); i++) {
        keep.push_back(new fuzz::Exact(names[i]));
        f.push_back({ keep.back()->c(), keep.back()->len });
        keep.push_back(new fuzz::Exact(values[i]));
        v.push_back({ keep.back()->c(), keep.back()->len });
    }

    unsigned char *blob = static_cast<unsigned char *>(
        std::malloc(cap ? cap : 1));
    ak_record_err_t err;
    std::memset(&err, 0x5a, sizeof(err));

    int rc = ak_record_build(hash, f.data(), v.data(), names.size(),
                             cap ? blob : nullptr, cap, &err);

    for (auto *e : keep) {
        delete e;
    }

    std::optional<std::vector<unsigned char>> out;

    if (rc < 0) {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(printable_nul_terminated(err.id, sizeof(err.id)));
        FUZZ_CHECK(printable_nul_terminated(err.msg, sizeof(err.msg)));
        FUZZ_CHECK(err.msg[0] != '\0');
        if (valid) {
            FUZZ_CHECK(std::strncmp(err.msg, "record too large", 16) == 0);
            /* small values always fit in a full-size buffer */
            FUZZ_CHECK(!(cap >= AK_RECORD_MAX && total < 1000));
        }
        std::free(blob);
        return out;
    }

    FUZZ_CHECK(valid);
    FUZZ_CHECK(rc > 0 && static_cast<size_t>(rc) <= cap
               && rc <= AK_RECORD_MAX);

    ak_record_t rec;
    FUZZ_CHECK(ak_record_view(hash, blob, static_cast<size_t>(rc), &rec) == 0);
    check_lazy(hash, blob, static_cast<size_t>(rc), 0, rec, in);

    /* the view says what the fields said */
    char def[AK_ID_DEFAULT_LEN];
    ak_hex_encode(hash, AK_ID_DEFAULT_LEN / 2, def);
    std::string want_id = val[0] ? *val[0]
                                 : std::string(def, AK_ID_DEFAULT_LEN);
    FUZZ_CHECK(view_str(rec.id) == want_id);
    FUZZ_CHECK(view_str(rec.owner) == val[1].value_or(""));
    FUZZ_CHECK(view_str(rec.plan) == val[2].value_or(""));
    FUZZ_CHECK(view_str(rec.scopes) == norm);
    FUZZ_CHECK(rec.status == status);
    FUZZ_CHECK(static_cast<uint64_t>(rec.expires_at) == expires.value_or(0));
    FUZZ_CHECK(rec.rate_period == rate.period);
    FUZZ_CHECK(rec.rate_n == rate.n);
    if (rate.ok) {
        uint64_t per = rate.period == AK_PERIOD_SECOND ? 1000000ULL
                       : rate.period == AK_PERIOD_MINUTE ? 60000000ULL
                                                         : 3600000000ULL;
        uint64_t iv = per / rate.n ? per / rate.n : 1;
        FUZZ_CHECK(rec.rate_interval_us == iv);
        /* no burst field: a bucket of N, at most 1,000,000 above the
         * rate (N - 1, capped) */
        uint64_t def = rate.n - 1 < 1000000 ? rate.n - 1 : 1000000;
        FUZZ_CHECK(rec.burst == burst.value_or(def));
    } else {
        FUZZ_CHECK(rec.burst == 0 && rec.rate_interval_us == 0);
    }
    FUZZ_CHECK(rec.quota_period == quota.period);
    FUZZ_CHECK(rec.quota_n == quota.n);
    if (val[11] && !own_identity) {
        FUZZ_CHECK(rec.identity != nullptr
                   && ak::hex_encode(rec.identity, AK_HASH_LEN) == *val[11]);
    } else {
        FUZZ_CHECK(rec.identity == nullptr);    /* the default: not kept */
    }
    FUZZ_CHECK(static_cast<uint64_t>(rec.alias_until) == alias.value_or(0));
    /* rate_scope without a rate: ignored, as burst is */
    FUZZ_CHECK(rec.rate_scope == (rate.ok ? rate_scope
                                          : AK_RATE_SCOPE_DEFAULT));
    FUZZ_CHECK(rec.has_ips == (val[6] ? 1 : 0));
    FUZZ_CHECK(rec.has_referrers == (val[7] ? 1 : 0));
    FUZZ_CHECK(rec.blob == blob && rec.blob_len == static_cast<size_t>(rc));

    /* a blob cut short is corrupt */
    if (rc > 3) {
        ak_record_t cut;
        size_t at = in.u16() % static_cast<size_t>(rc);
        FUZZ_CHECK(ak_record_view(hash, blob, at, &cut) == -1);
    }

    exercise(rec, in);

    out.emplace(blob, blob + rc);
    std::free(blob);
    return out;
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);
    unsigned char hash[AK_HASH_LEN];

    uint8_t mode = in.u8();
    for (auto &b : hash) {
        b = (mode & 0x80) ? in.u8() : 0x42;
    }

    if (mode % 4 == 0) {
        /* any bytes as a blob (a corrupt cache entry, a stray value) */
        std::string b = in.str16(AK_RECORD_MAX + 8);
        fuzz::Exact e(b);
        ak_record_t rec;
        int rc = ak_record_view((mode & 0x40) ? hash : nullptr, e.u(), e.len,
                                &rec);
        FUZZ_CHECK(rc == 0 || rc == -1);
        check_lazy((mode & 0x40) ? hash : nullptr, e.u(), e.len, rc, rec, in);
        if (rc == 0) {
            FUZZ_CHECK(rec.blob == e.u() && rec.blob_len == e.len);
            FUZZ_CHECK(rec.status <= AK_STATUS_DISABLED);
            exercise(rec, in);
        } else {
            /* a failed view is an empty one: the accessors refuse it */
            FUZZ_CHECK(rec.blob == nullptr && rec.id.len == 0);
        }
        return 0;
    }

    auto a = build_and_check(in, hash);

    if (mode % 4 == 3 && a) {
        auto b = build_and_check(in, hash);
        if (b) {
            ak_record_t ra, rb;
            FUZZ_CHECK(ak_record_view(hash, a->data(), a->size(), &ra) == 0);
            FUZZ_CHECK(ak_record_view(hash, b->data(), b->size(), &rb) == 0);
            exercise_carry(ra, rb, in);
        }
    }

    return 0;
}
