/* SPDX-License-Identifier: BSD-2-Clause */
/* Records: build, view, scopes, field validation, corrupt blobs. */

#include <gtest/gtest.h>

#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "ak_core.h"
#include "ak_record_util.h"
#include "akcore.hpp"

using aktest::build;
using aktest::Fields;
using aktest::make;

namespace {

bool printable(const char *s)
{
    for (; *s; s++) {
        if (static_cast<unsigned char>(*s) < 0x20
            || static_cast<unsigned char>(*s) > 0x7e)
        {
            return false;
        }
    }
    return true;
}

bool starts_with(const std::string &s, const std::string &p)
{
    return s.compare(0, p.size(), p) == 0;
}

/* a record that uses every field */
Fields full_fields()
{
    return {
        { "id", "acme-prod.1" },
        { "owner", "acme-corp" },
        { "plan", "enterprise" },
        { "status", "active" },
        { "expires_at", "1893456000" },
        { "scopes", "  read\twrite   admin:users  " },
        { "ips", "10.0.0.0/8, 192.168.1.7 ,2001:db8::/32" },
        { "referrers", "example.com,*.Example.ORG" },
        { "rate", "100/m" },
        { "burst", "20" },
        { "quota", "50000/month" },
        { "created_at", "whatever the tool adds" },
    };
}

} // namespace


TEST(Record, CompactExampleFitsInline)
{
    auto r = make({ { "owner", "acme-corp" }, { "plan", "pro" },
                    { "rate", "100/s" } });
    ASSERT_GT(r->b.len, 0) << r->b.err.msg;
    EXPECT_LE(r->b.len, 32);
    std::printf("[ info ] owner/plan/rate record blob: %d bytes\n",
                r->b.len);
    ASSERT_EQ(r->view_rc, 0);
    EXPECT_EQ(r->owner(), "acme-corp");
    EXPECT_EQ(r->plan(), "pro");
    EXPECT_EQ(r->rec.rate_period, AK_PERIOD_SECOND);
    EXPECT_EQ(r->rec.rate_n, 100u);
    EXPECT_EQ(r->rec.rate_interval_us, 10000u);
    EXPECT_EQ(r->rec.burst, 99u);           /* no burst field: N - 1 */
    EXPECT_EQ(r->id(), "abcdef012345");
}

TEST(Record, DefaultIdIsNotStored)
{
    /* apikeyctl stores id = the default id: it must not take blob bytes */
    auto plain = make({ { "owner", "acme-corp" }, { "plan", "pro" },
                        { "rate", "100/s" } });
    auto with_default = make({ { "id", "abcdef012345" }, { "owner", "acme-corp" },
                               { "plan", "pro" }, { "rate", "100/s" } });
    ASSERT_GT(with_default->b.len, 0) << with_default->b.err.msg;
    EXPECT_EQ(plain->b.len, with_default->b.len);
    ASSERT_EQ(with_default->view_rc, 0);
    EXPECT_EQ(std::string(with_default->rec.id.data, with_default->rec.id.len),
              "abcdef012345");

    /* another 12-character id is stored, and read back */
    auto other = make({ { "id", "abcdef012346" }, { "owner", "acme-corp" } });
    ASSERT_GT(other->b.len, 0);
    ASSERT_EQ(other->view_rc, 0);
    EXPECT_EQ(std::string(other->rec.id.data, other->rec.id.len),
              "abcdef012346");
}

TEST(Record, EmptyRecordDefaults)
{
    auto r = make({});
    ASSERT_GT(r->b.len, 0);
    ASSERT_EQ(r->view_rc, 0);
    EXPECT_EQ(r->id(), "abcdef012345");
    EXPECT_EQ(r->rec.id.data, r->rec.id_buf);
    EXPECT_EQ(r->rec.status, AK_STATUS_ACTIVE);
    EXPECT_EQ(r->rec.expires_at, 0);
    EXPECT_EQ(r->rec.has_ips, 0);
    EXPECT_EQ(r->rec.has_referrers, 0);
    EXPECT_EQ(r->rec.rate_period, AK_PERIOD_NONE);
    EXPECT_EQ(r->rec.quota_period, AK_PERIOD_NONE);
    EXPECT_EQ(r->rec.owner.len, 0u);
    EXPECT_NE(r->rec.owner.data, nullptr);
    EXPECT_EQ(r->rec.scopes.len, 0u);
    EXPECT_EQ(r->rec.blob, r->b.blob.data());
    EXPECT_EQ(r->rec.blob_len, r->b.blob.size());
    EXPECT_EQ(r->b.err.msg[0], '\0');
}

TEST(Record, EveryFieldRoundTrips)
{
    auto r = make(full_fields());
    ASSERT_GT(r->b.len, 0) << r->b.err.msg;
    ASSERT_EQ(r->view_rc, 0);
    EXPECT_EQ(r->id(), "acme-prod.1");
    EXPECT_EQ(r->owner(), "acme-corp");
    EXPECT_EQ(r->plan(), "enterprise");
    EXPECT_EQ(r->rec.status, AK_STATUS_ACTIVE);
    EXPECT_EQ(r->rec.expires_at, 1893456000);
    EXPECT_EQ(r->scopes(), "read write admin:users");
    EXPECT_EQ(r->rec.has_ips, 1);
    EXPECT_EQ(r->rec.has_referrers, 1);
    EXPECT_EQ(r->rec.rate_period, AK_PERIOD_MINUTE);
    EXPECT_EQ(r->rec.rate_n, 100u);
    EXPECT_EQ(r->rec.rate_interval_us, 600000u);
    EXPECT_EQ(r->rec.burst, 20u);
    EXPECT_EQ(r->rec.quota_period, AK_PERIOD_MONTH);
    EXPECT_EQ(r->rec.quota_n, 50000u);

    const unsigned char v4[] = { 10, 200, 0, 1 };
    EXPECT_EQ(ak_record_ip_allowed(&r->rec, 4, v4), 1);
    const std::string ref = "https://www.example.org/x";
    EXPECT_EQ(ak_record_referrer_allowed(&r->rec, ref.data(), ref.size()), 1);
}

TEST(Record, StatusValues)
{
    EXPECT_EQ(make({ { "status", "active" } })->rec.status, AK_STATUS_ACTIVE);
    EXPECT_EQ(make({ { "status", "revoked" } })->rec.status,
              AK_STATUS_REVOKED);
    EXPECT_EQ(make({ { "status", "disabled" } })->rec.status,
              AK_STATUS_DISABLED);
}

TEST(Record, RateUnitsAndIntervals)
{
    struct {
        const char *v;
        uint8_t period;
        uint32_t n;
        uint64_t interval;
    } cases[] = {
        { "1/s", AK_PERIOD_SECOND, 1, 1000000 },
        { "3/s", AK_PERIOD_SECOND, 3, 333333 },
        { "10/sec", AK_PERIOD_SECOND, 10, 100000 },
        { "10/second", AK_PERIOD_SECOND, 10, 100000 },
        { "60/m", AK_PERIOD_MINUTE, 60, 1000000 },
        { "7/min", AK_PERIOD_MINUTE, 7, 8571428 },
        { "7/minute", AK_PERIOD_MINUTE, 7, 8571428 },
        { "3600/h", AK_PERIOD_HOUR, 3600, 1000000 },
        { "1/hour", AK_PERIOD_HOUR, 1, 3600000000ULL },
        { "1000000000/s", AK_PERIOD_SECOND, 1000000000, 1 },
        { "1000000000/h", AK_PERIOD_HOUR, 1000000000, 3 },
        { "5/S", AK_PERIOD_SECOND, 5, 200000 },
    };
    for (const auto &c : cases) {
        auto r = make({ { "rate", c.v } });
        ASSERT_EQ(r->view_rc, 0) << c.v << ": " << r->b.err.msg;
        EXPECT_EQ(r->rec.rate_period, c.period) << c.v;
        EXPECT_EQ(r->rec.rate_n, c.n) << c.v;
        EXPECT_EQ(r->rec.rate_interval_us, c.interval) << c.v;
    }
}

TEST(Record, QuotaUnits)
{
    auto h = make({ { "quota", "10/hour" } });
    EXPECT_EQ(h->rec.quota_period, AK_PERIOD_HOUR);
    EXPECT_EQ(h->rec.quota_n, 10u);
    auto d = make({ { "quota", "1000000000000000/day" } });
    EXPECT_EQ(d->rec.quota_period, AK_PERIOD_DAY);
    EXPECT_EQ(d->rec.quota_n, 1000000000000000ULL);
    auto m = make({ { "quota", "1/month" } });
    EXPECT_EQ(m->rec.quota_period, AK_PERIOD_MONTH);
}

TEST(Record, BurstWithoutRateIsIgnored)
{
    auto a = make({ { "burst", "5" } });
    auto b = make({});
    ASSERT_EQ(a->view_rc, 0);
    EXPECT_EQ(a->rec.burst, 0u);
    EXPECT_EQ(a->b.blob, b->b.blob);

    auto c = make({ { "burst", "0" }, { "rate", "1/s" } });
    ASSERT_EQ(c->view_rc, 0);
    EXPECT_EQ(c->rec.burst, 0u);
    auto d = make({ { "burst", "1000000" }, { "rate", "1/s" } });
    EXPECT_EQ(d->rec.burst, 1000000u);
}

TEST(Record, EmptyValuesAreAbsentAndUnknownFieldsIgnored)
{
    auto r = make({ { "ips", "" }, { "referrers", "" }, { "rate", "" },
                    { "status", "" }, { "id", "" }, { "expires_at", "0" },
                    { "scopes", " \t " }, { "Owner", "x" }, { "ownerx", "y" },
                    { "nonsense", "\x01\x02" } });
    ASSERT_GT(r->b.len, 0) << r->b.err.msg;
    ASSERT_EQ(r->view_rc, 0);
    EXPECT_EQ(r->rec.has_ips, 0);
    EXPECT_EQ(r->rec.has_referrers, 0);
    EXPECT_EQ(r->rec.rate_period, AK_PERIOD_NONE);
    EXPECT_EQ(r->rec.expires_at, 0);
    EXPECT_EQ(r->rec.scopes.len, 0u);
    EXPECT_EQ(r->owner(), "");
    EXPECT_EQ(r->id(), "abcdef012345");
    EXPECT_EQ(r->b.blob, make({})->b.blob);
}

TEST(Record, OwnerPlanLimits)
{
    auto ok = make({ { "owner", std::string(256, 'o') },
                     { "plan", "Pro \xc3\xa9t\xc3\xa9 ~!" } });
    ASSERT_EQ(ok->view_rc, 0) << ok->b.err.msg;
    EXPECT_EQ(ok->owner().size(), 256u);
    EXPECT_EQ(ok->plan(), "Pro \xc3\xa9t\xc3\xa9 ~!");
}

struct BadCase {
    const char *field;
    std::string value;
    const char *want;       /* a substring of the message */
};

TEST(Record, MalformedFields)
{
    const BadCase cases[] = {
        { "id", "has space", "field \"id\"" },
        { "id", std::string(65, 'i'), "field \"id\"" },
        { "id", "a/b", "field \"id\"" },
        { "owner", std::string(257, 'o'), "longer than 256" },
        { "owner", "line\nbreak", "control character" },
        { "plan", "tab\there", "control character" },
        { "plan", "del\x7f", "control character" },
        { "status", "Active", "expected active, revoked or disabled" },
        { "status", "active ", "expected active" },
        { "status", "expired", "field \"status\"" },
        { "expires_at", "-1", "field \"expires_at\"" },
        { "expires_at", "+5", "field \"expires_at\"" },
        { "expires_at", "1.5", "field \"expires_at\"" },
        { "expires_at", "1234567890123456789", "field \"expires_at\"" },
        { "expires_at", " 12", "field \"expires_at\"" },
        { "scopes", "read wr!te", "bad scope \"wr!te\"" },
        { "scopes", std::string(65, 's'), "bad scope" },
        { "scopes", "a\nb", "bad scope" },
        { "ips", "10.0.0.256", "bad address" },
        { "ips", "10.0.0.0/33", "bad prefix length" },
        { "ips", "10.0.0.1,", "empty item" },
        { "referrers", "http://x", "bad host" },
        { "referrers", "*", "bad host" },
        { "rate", "100", "expected N/s, N/m or N/h" },
        { "rate", "100/d", "expected N/s, N/m or N/h" },
        { "rate", "0/s", "N must be 1 to 1000000000" },
        { "rate", "1000000001/s", "N must be 1 to 1000000000" },
        { "rate", "-1/s", "expected N/s" },
        { "rate", " 1/s", "expected N/s" },
        { "rate", "1/ s", "expected N/s" },
        { "rate", "/s", "expected N/s" },
        { "rate", "99999999999999999999/s", "expected N/s" },
        { "burst", "-1", "field \"burst\"" },
        { "burst", "1000001", "0 to 1000000" },
        { "burst", "1e3", "field \"burst\"" },
        { "quota", "5/m", "expected N/hour, N/day or N/month" },
        { "quota", "5/week", "expected N/hour" },
        { "quota", "0/day", "N must be 1 to 1000000000000000" },
        { "quota", "1000000000000001/day", "N must be 1" },
    };

    for (const BadCase &c : cases) {
        SCOPED_TRACE(std::string(c.field) + "=" + c.value);
        {
            auto b = build({ { "id", "good-id" }, { c.field, c.value } });
            std::string msg = b.err.msg;
            EXPECT_EQ(b.len, -1);
            EXPECT_NE(msg.find(c.want), std::string::npos) << msg;
            EXPECT_TRUE(starts_with(msg, std::string("field \"") + c.field
                                             + "\": "))
                << msg;
            EXPECT_TRUE(printable(b.err.msg)) << msg;
            EXPECT_LT(std::strlen(b.err.msg), sizeof(b.err.msg));
            /* the record's valid id names it, except when the id is bad */
            EXPECT_STREQ(b.err.id, std::strcmp(c.field, "id") == 0
                                       ? "abcdef012345"
                                       : "good-id");

            /* the CLI's validator says exactly the same */
            std::string err;
            EXPECT_FALSE(ak::validate_field(c.field, c.value, &err));
            EXPECT_EQ(err, msg);
        }
    }
}

TEST(Record, MalformedRecordWithoutIdNamesDefaultId)
{
    auto b = build({ { "rate", "fast" } });
    EXPECT_EQ(b.len, -1);
    EXPECT_STREQ(b.err.id, "abcdef012345");
    EXPECT_STREQ(b.err.msg, "field \"rate\": expected N/s, N/m or N/h");
}

TEST(Record, MessagesEscapeOddBytes)
{
    auto b = build({ { "status", std::string("\x01\"x\\\xff", 5) } });
    ASSERT_EQ(b.len, -1);
    EXPECT_TRUE(printable(b.err.msg)) << b.err.msg;
    EXPECT_NE(std::string(b.err.msg).find("\\x01\\x22x\\x5c\\xff"),
              std::string::npos)
        << b.err.msg;

    /* long values are cut */
    auto l = build({ { "status", std::string(1000, 'q') } });
    ASSERT_EQ(l.len, -1);
    EXPECT_NE(std::string(l.err.msg).find("...\""), std::string::npos);
    EXPECT_LT(std::strlen(l.err.msg), 120u);
}

TEST(Record, FirstBadFieldInCanonicalOrder)
{
    auto b = build({ { "quota", "x" }, { "owner", "a\x01" },
                     { "rate", "y" } });
    ASSERT_EQ(b.len, -1);
    EXPECT_TRUE(starts_with(b.err.msg, "field \"owner\"")) << b.err.msg;
}

TEST(Record, TooLarge)
{
    std::string refs;
    for (int i = 0; i < 300; i++) {
        refs += (i ? "," : "") + std::string("host-number-") + std::to_string(i)
                + ".example.com";
    }
    auto b = build({ { "referrers", refs } });
    EXPECT_EQ(b.len, -1);
    EXPECT_NE(std::string(b.err.msg).find("too large"), std::string::npos)
        << b.err.msg;
    std::string err;
    EXPECT_FALSE(ak::validate_field("referrers", refs, &err));
    EXPECT_NE(err.find("too long"), std::string::npos) << err;

    /* a small buffer: nothing written past it */
    std::vector<unsigned char> buf(40, 0xee);
    const std::string owner(100, 'o');
    ak_str_t f = { "owner", 5 }, v = { owner.data(), owner.size() };
    ak_record_err_t err2;
    EXPECT_EQ(ak_record_build(aktest::test_hash(), &f, &v, 1, buf.data(), 20,
                              &err2),
              -1);
    for (size_t i = 20; i < buf.size(); i++) {
        ASSERT_EQ(buf[i], 0xee) << i;
    }
    EXPECT_NE(std::string(err2.msg).find("too large"), std::string::npos);

    /* exactly enough is enough, one byte less is not */
    auto full = build({ { "owner", owner } });
    ASSERT_GT(full.len, 0);
    buf.assign(static_cast<size_t>(full.len) + 16, 0xee);
    EXPECT_EQ(ak_record_build(aktest::test_hash(), &f, &v, 1, buf.data(),
                              static_cast<size_t>(full.len), &err2),
              full.len);
    EXPECT_EQ(ak_record_build(aktest::test_hash(), &f, &v, 1, buf.data(),
                              static_cast<size_t>(full.len) - 1, &err2),
              -1);
    for (size_t i = static_cast<size_t>(full.len); i < buf.size(); i++) {
        ASSERT_EQ(buf[i], 0xee) << i;
    }
}

TEST(Record, NullErrAndNoFields)
{
    unsigned char blob[64];
    EXPECT_GT(ak_record_build(aktest::test_hash(), nullptr, nullptr, 0, blob,
                              sizeof(blob), nullptr),
              0);
    ak_str_t f = { "rate", 4 }, v = { "x", 1 };
    EXPECT_EQ(ak_record_build(aktest::test_hash(), &f, &v, 1, blob,
                              sizeof(blob), nullptr),
              -1);
}

TEST(Record, ViewRejectsTruncatedBlobs)
{
    auto b = build(full_fields());
    ASSERT_GT(b.len, 0);
    ak_record_t rec;
    ASSERT_EQ(ak_record_view(aktest::test_hash(), b.blob.data(), b.blob.size(),
                             &rec),
              0);

    for (size_t n = 0; n < b.blob.size(); n++) {
        /* a copy of exactly n bytes, so reading past it is a real bug that
         * sanitizers see */
        std::vector<unsigned char> cut(b.blob.begin(), b.blob.begin() + n);
        EXPECT_EQ(ak_record_view(aktest::test_hash(), n ? cut.data() : nullptr,
                                 n, &rec),
                  -1)
            << "length " << n;
        EXPECT_EQ(rec.has_ips, 0);
    }

    /* a trailing byte */
    std::vector<unsigned char> longer = b.blob;
    longer.push_back(0);
    EXPECT_EQ(ak_record_view(aktest::test_hash(), longer.data(), longer.size(),
                             &rec),
              -1);
}

/* ak_record_view_lazy: the same view and answer, the default id on demand */
TEST(Record, LazyViewMakesTheDefaultIdWhenAsked)
{
    auto b = build({ { "owner", "acme-corp" }, { "plan", "pro" },
                     { "rate", "100/s" } });
    ASSERT_GT(b.len, 0) << b.err.msg;
    ak_record_t full, lazy;
    ASSERT_EQ(ak_record_view(aktest::test_hash(), b.blob.data(), b.blob.size(),
                             &full),
              0);
    ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.blob.data(),
                                  b.blob.size(), &lazy),
              0);

    /* no id made: empty, NULL */
    EXPECT_EQ(lazy.id.data, nullptr);
    EXPECT_EQ(lazy.id.len, 0u);

    /* everything else as the full view */
    EXPECT_EQ(std::string(lazy.owner.data, lazy.owner.len), "acme-corp");
    EXPECT_EQ(std::string(lazy.plan.data, lazy.plan.len), "pro");
    EXPECT_EQ(lazy.rate_n, full.rate_n);
    EXPECT_EQ(lazy.burst, full.burst);
    EXPECT_EQ(lazy.rate_interval_us, full.rate_interval_us);
    EXPECT_EQ(lazy.blob, full.blob);
    EXPECT_EQ(lazy.blob_len, full.blob_len);

    /* no hash: no id is made (none to make it from) */
    ak_record_default_id(nullptr, &lazy);
    EXPECT_EQ(lazy.id.len, 0u);
    EXPECT_EQ(lazy.id.data, nullptr);

    /* asked for: the full view's default id, in id_buf */
    ak_record_default_id(aktest::test_hash(), &lazy);
    ASSERT_EQ(lazy.id.len, static_cast<size_t>(AK_ID_DEFAULT_LEN));
    EXPECT_EQ(lazy.id.data, lazy.id_buf);
    EXPECT_EQ(std::string(lazy.id.data, lazy.id.len),
              std::string(full.id.data, full.id.len));
    EXPECT_EQ(std::string(lazy.id.data, lazy.id.len), "abcdef012345");

    /* a record's own id: the same in both, and never replaced */
    auto own = build({ { "id", "acme-prod.1" }, { "owner", "acme-corp" } });
    ASSERT_GT(own.len, 0);
    ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), own.blob.data(),
                                  own.blob.size(), &lazy),
              0);
    EXPECT_EQ(std::string(lazy.id.data, lazy.id.len), "acme-prod.1");
    ak_record_default_id(aktest::test_hash(), &lazy);
    EXPECT_EQ(std::string(lazy.id.data, lazy.id.len), "acme-prod.1");
    ak_record_default_id(aktest::test_hash(), nullptr);   /* nothing */

    /* the same answer on a corrupt blob, and without a hash */
    std::vector<unsigned char> cut(b.blob.begin(), b.blob.end() - 1);
    EXPECT_EQ(ak_record_view_lazy(aktest::test_hash(), cut.data(), cut.size(),
                                  &lazy),
              -1);
    EXPECT_EQ(lazy.id.data, nullptr);
    EXPECT_EQ(ak_record_view_lazy(nullptr, b.blob.data(), b.blob.size(),
                                  &lazy),
              -1);
    EXPECT_EQ(ak_record_view_lazy(aktest::test_hash(), b.blob.data(),
                                  b.blob.size(), nullptr),
              -1);
}

/* the lazy view as the full one, field for field (its id: NULL where the
 * full view made the default one) */
static void expect_lazy_is_full(const std::vector<unsigned char> &blob,
    const std::string &what)
{
    ak_record_t full, lazy;
    int rc = ak_record_view(aktest::test_hash(), blob.data(), blob.size(),
                            &full);
    std::memset(&lazy, 0x5a, sizeof(lazy));
    int lrc = ak_record_view_lazy(aktest::test_hash(), blob.data(),
                                  blob.size(), &lazy);
    if (rc != 0) {
        /* more only where a rules section is malformed */
        if (lrc != 0) {
            EXPECT_EQ(lazy.blob, nullptr) << what;
            EXPECT_EQ(lazy.id.len + lazy.owner.len + lazy.ips_len, 0u)
                << what;
        }
        return;
    }
    ASSERT_EQ(lrc, 0) << what;
    if (full.id.data == full.id_buf) {
        EXPECT_EQ(lazy.id.data, nullptr) << what;
        EXPECT_EQ(lazy.id.len, 0u) << what;
    } else {
        EXPECT_EQ(lazy.id.data, full.id.data) << what;
        EXPECT_EQ(lazy.id.len, full.id.len) << what;
    }
    EXPECT_EQ(lazy.owner.data, full.owner.data) << what;
    EXPECT_EQ(lazy.owner.len, full.owner.len) << what;
    EXPECT_EQ(lazy.plan.data, full.plan.data) << what;
    EXPECT_EQ(lazy.plan.len, full.plan.len) << what;
    EXPECT_EQ(lazy.scopes.data, full.scopes.data) << what;
    EXPECT_EQ(lazy.scopes.len, full.scopes.len) << what;
    EXPECT_EQ(lazy.expires_at, full.expires_at) << what;
    EXPECT_EQ(lazy.status, full.status) << what;
    EXPECT_EQ(lazy.has_ips, full.has_ips) << what;
    EXPECT_EQ(lazy.has_referrers, full.has_referrers) << what;
    EXPECT_EQ(lazy.rate_period, full.rate_period) << what;
    EXPECT_EQ(lazy.rate_n, full.rate_n) << what;
    EXPECT_EQ(lazy.burst, full.burst) << what;
    EXPECT_EQ(lazy.rate_interval_us, full.rate_interval_us) << what;
    EXPECT_EQ(lazy.quota_period, full.quota_period) << what;
    EXPECT_EQ(lazy.quota_n, full.quota_n) << what;
    EXPECT_EQ(lazy.rate_scope, full.rate_scope) << what;
    EXPECT_EQ(lazy.identity, full.identity) << what;
    EXPECT_EQ(lazy.alias_until, full.alias_until) << what;
    EXPECT_EQ(lazy.blob, full.blob) << what;
    EXPECT_EQ(lazy.blob_len, full.blob_len) << what;
    EXPECT_EQ(lazy.ips, full.ips) << what;
    EXPECT_EQ(lazy.ips_len, full.ips_len) << what;
    EXPECT_EQ(lazy.referrers, full.referrers) << what;
    EXPECT_EQ(lazy.referrers_len, full.referrers_len) << what;
}

/*
 * The lazy view reads the usual records (rules, texts of up to 127 bytes,
 * a rate and burst of up to three bytes; no expiry, quota or extension) by
 * a path of their own, every other one as before: the same view either
 * way, on each side of each limit, cut short, one byte longer, damaged.
 */
TEST(Record, LazyViewOfTheUsualRecordsIsTheFullView)
{
    const std::string ips = "192.0.2.0/24,10.1.0.0/16,2001:db8::/32";
    const std::string refs = "app.example.com,*.example.org";
    const Fields records[] = {
        { { "owner", "client4322" }, { "plan", "pro" },
          { "rate", "1000000/s" }, { "burst", "1000" }, { "ips", ips },
          { "referrers", refs } },
        { { "ips", ips } },
        { { "referrers", refs }, { "rate", "7/h" } },
        { { "id", "acme-prod.1" }, { "owner", "a" }, { "plan", "b" },
          { "scopes", "read write" }, { "rate", "100/m" } },
        { { "id", std::string(64, 'i') }, { "rate", "1/s" },
          { "burst", "0" } },
        { { "owner", std::string(127, 'o') }, { "plan", "p" } },
        { { "owner", std::string(128, 'o') }, { "plan", "p" } },
        { { "scopes", std::string(63, 's') + " " + std::string(63, 't') } },
        { { "scopes", std::string(64, 's') + " " + std::string(64, 't') } },
        { { "plan", std::string(256, 'p') }, { "rate", "1/m" } },
        { { "rate", "127/s" }, { "burst", "127" } },
        { { "rate", "128/s" }, { "burst", "128" } },
        { { "rate", "16383/s" }, { "burst", "16384" } },
        { { "rate", "2097151/s" }, { "burst", "1000000" } },
        { { "rate", "2097152/s" } },
        { { "rate", "1000000000/h" } },
        { { "owner", "x" }, { "status", "revoked" }, { "rate", "5/s" } },
        { { "owner", "x" }, { "status", "disabled" } },
        { { "owner", "x" }, { "expires_at", "1893456000" } },
        { { "owner", "x" }, { "rate", "5/s" }, { "quota", "10/day" } },
        { { "owner", "x" }, { "rate", "5/s" }, { "rate_scope", "node" } },
        { { "owner", "x" }, { "alias_until", "1800000000" } },
        { { "owner", "x" },
          { "identity", "00112233445566778899aabbccddeeff"
                        "00112233445566778899aabbccddeeff" } },
        { { "owner", "x" }, { "rate", "1/h" }, { "rate_scope", "cluster" },
          { "alias_until", "999999999999999999" },
          { "identity", "ffeeddccbbaa99887766554433221100"
                        "ffeeddccbbaa99887766554433221100" } },
        { { "expires_at", "999999999999999999" },
          { "quota", "1000000000000000/month" } },
        { { "id", "k" }, { "quota", "1/hour" }, { "ips", ips } },
        full_fields(),
    };
    for (const Fields &f : records) {
        auto b = build(f);
        ASSERT_GT(b.len, 0) << b.err.msg;
        const std::string what = f.front().first + "=" + f.front().second
                                 + " .. " + f.back().first;
        expect_lazy_is_full(b.blob, what);

        for (size_t n = 0; n < b.blob.size(); n++) {
            std::vector<unsigned char> cut(b.blob.begin(),
                                           b.blob.begin() + n);
            ak_record_t v;
            EXPECT_EQ(ak_record_view_lazy(aktest::test_hash(),
                                          n ? cut.data() : nullptr, n, &v),
                      -1)
                << what << " cut at " << n;
        }
        std::vector<unsigned char> longer = b.blob;
        longer.push_back(0);
        ak_record_t v;
        EXPECT_EQ(ak_record_view_lazy(aktest::test_hash(), longer.data(),
                                      longer.size(), &v),
                  -1)
            << what;

        for (size_t i = 0; i < b.blob.size(); i++) {
            for (unsigned x : { 0x01u, 0x02u, 0x10u, 0x40u, 0x80u, 0xffu }) {
                std::vector<unsigned char> c = b.blob;
                c[i] ^= static_cast<unsigned char>(x);
                expect_lazy_is_full(c, what + " byte " + std::to_string(i)
                                       + " ^ " + std::to_string(x));
            }
        }
    }

    /* numbers and lengths written longer than they need (no builder
     * writes them; ak::Reader reads them): the same view */
    const std::vector<unsigned char> longer_forms[] = {
        /* owner "abc", its length in two bytes */
        { 2, 0x00, 0x08, 0x83, 0x00, 'a', 'b', 'c' },
        /* a rate of 5/s in two bytes, a burst of 1 in three */
        { 2, 0x04, 0x80, 0x85, 0x00, 0x81, 0x80, 0x00 },
        /* expires_at 1 in ten bytes (the longest ak::Reader reads) */
        { 2, 0x00, 0x40, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
          0x80, 0x00 },
        /* a quota of 7/day in nine bytes */
        { 2, 0x40, 0x00, 0x87, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
          0x00 },
        /* a rate_scope of node in two bytes */
        { 2, 0x84, 0x00, 0x05, 0x04, 0x81, 0x00 },
    };
    for (const auto &lf : longer_forms) {
        ak_record_t full;
        ASSERT_EQ(ak_record_view(aktest::test_hash(), lf.data(), lf.size(),
                                 &full),
                  0)
            << lf.size();
        expect_lazy_is_full(lf, "longer form of " + std::to_string(lf.size())
                                + " bytes");
    }

    /* an id of a character no id has: corrupt, an empty view */
    auto b = build({ { "id", "acme-prod" }, { "owner", "a" },
                     { "rate", "10/s" } });
    ASSERT_GT(b.len, 0);
    std::vector<unsigned char> bad = b.blob;
    ASSERT_EQ(bad[3], 9);                 /* header 3, length 9, the id */
    bad[7] = ' ';
    ak_record_t v;
    std::memset(&v, 0x5a, sizeof(v));
    EXPECT_EQ(ak_record_view_lazy(aktest::test_hash(), bad.data(), bad.size(),
                                  &v),
              -1);
    std::vector<unsigned char> zero(sizeof(v), 0);
    EXPECT_EQ(std::memcmp(&v, zero.data(), sizeof(v)), 0);

    /* a burst without a rate (no builder writes one): corrupt */
    auto nr = build({ { "owner", "a" } });
    ASSERT_GT(nr.len, 0);
    std::vector<unsigned char> burst = nr.blob;
    burst[2] |= 0x80;                     /* kHasBurst */
    burst.push_back(5);
    EXPECT_EQ(ak_record_view_lazy(aktest::test_hash(), burst.data(),
                                  burst.size(), &v),
              -1);
}

/* an id's characters: A-Z a-z 0-9 . _ : - and nothing else, each byte */
TEST(Record, IdCharacters)
{
    for (unsigned c = 0; c < 256; c++) {
        bool want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
                    || (c >= 'A' && c <= 'Z') || c == '.' || c == '_'
                    || c == ':' || c == '-';
        std::string id = "k";
        id.push_back(static_cast<char>(c));
        id += "1";
        EXPECT_EQ(ak::validate_field("id", id, nullptr), want) << c;

        /* and the lazy view of a record with that id */
        auto b = build({ { "id", "k1x" }, { "owner", "o" } });
        ASSERT_GT(b.len, 0);
        ASSERT_EQ(b.blob[3], 3);          /* header 3, length 3, the id */
        b.blob[5] = static_cast<unsigned char>(c);
        ak_record_t v;
        EXPECT_EQ(ak_record_view_lazy(aktest::test_hash(), b.blob.data(),
                                      b.blob.size(), &v),
                  want ? 0 : -1)
            << c;
    }
}

TEST(Record, ViewRejectsBadHeaders)
{
    auto b = build({ { "owner", "x" }, { "rate", "1/s" }, { "burst", "2" },
                     { "quota", "5/day" } });
    ASSERT_GT(b.len, 0);
    ak_record_t rec;

    auto bad = [&](size_t at, unsigned char value) {
        std::vector<unsigned char> c = b.blob;
        c[at] = value;
        return ak_record_view(aktest::test_hash(), c.data(), c.size(), &rec);
    };

    EXPECT_EQ(bad(0, 0), -1);                      /* version */
    EXPECT_EQ(bad(0, 1), -1);   /* 1: the rules as read, not for matching */
    EXPECT_EQ(bad(0, 3), -1);
    EXPECT_EQ(bad(1, b.blob[1] | 0x80), -1);       /* ext flag, no ext */
    EXPECT_EQ(bad(1, (b.blob[1] & ~0x03) | 3), -1);   /* status 3 */
    EXPECT_EQ(bad(1, (b.blob[1] & ~0x70) | (1 << 4)), -1);  /* quota "s" */
    EXPECT_EQ(bad(1, (b.blob[1] & ~0x70) | (7 << 4)), -1);
    EXPECT_EQ(bad(1, b.blob[1] & ~0x0c), -1);      /* burst without rate */

    /* too big a blob */
    std::vector<unsigned char> huge(AK_RECORD_MAX + 1, 0);
    huge[0] = 1;
    EXPECT_EQ(ak_record_view(aktest::test_hash(), huge.data(), huge.size(),
                             &rec),
              -1);

    /* values out of range are corrupt: rate N = 0 */
    auto z = build({ { "rate", "1/s" } });
    ASSERT_EQ(z.blob.back(), 1);
    z.blob.back() = 0;
    EXPECT_EQ(ak_record_view(aktest::test_hash(), z.blob.data(), z.blob.size(),
                             &rec),
              -1);

    /* default id needs the hash */
    auto e = build({});
    EXPECT_EQ(ak_record_view(nullptr, e.blob.data(), e.blob.size(), &rec), -1);
    EXPECT_EQ(ak_record_view(aktest::test_hash(), e.blob.data(), e.blob.size(),
                             nullptr),
              -1);
}

TEST(Record, ViewSurvivesRandomCorruption)
{
    auto b = build(full_fields());
    ASSERT_GT(b.len, 0);
    std::mt19937 rng(99);
    int rejected = 0;

    for (int i = 0; i < 20000; i++) {
        std::vector<unsigned char> c = b.blob;
        int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; k++) {
            c[rng() % c.size()] ^= static_cast<unsigned char>(1 + rng() % 255);
        }
        if (rng() % 3 == 0) {
            c.resize(rng() % c.size());
        }
        ak_record_t rec;
        if (ak_record_view(aktest::test_hash(), c.empty() ? nullptr : c.data(),
                           c.size(), &rec)
            != 0)
        {
            rejected++;
            continue;
        }
        /* whatever was accepted stays inside the blob */
        auto inside = [&](const ak_str_t &s) {
            if (s.len == 0) {
                return true;
            }
            const unsigned char *p = reinterpret_cast<const unsigned char *>(
                s.data);
            return p >= c.data() && p + s.len <= c.data() + c.size();
        };
        ASSERT_TRUE(inside(rec.owner) && inside(rec.plan)
                    && inside(rec.scopes));
        ASSERT_TRUE(rec.id.data == rec.id_buf || inside(rec.id));
        ASSERT_LE(rec.status, AK_STATUS_DISABLED);
        ASSERT_GE(rec.rate_interval_us, rec.rate_period ? 1u : 0u);
        const unsigned char a4[4] = { 10, 1, 2, 3 };
        const unsigned char a6[16] = { 0x20, 0x01, 0x0d, 0xb8 };
        (void) ak_record_ip_allowed(&rec, 4, a4);
        (void) ak_record_ip_allowed(&rec, 6, a6);
        (void) ak_record_referrer_allowed(&rec, "https://a.example.org/", 22);
    }
    EXPECT_GT(rejected, 10000);
}

TEST(Record, HasScopes)
{
    auto r = make({ { "scopes", "read  write:all\tadmin" } });
    ASSERT_EQ(r->view_rc, 0);
    auto has = [&](std::vector<std::string> req) {
        std::vector<ak_str_t> v;
        for (auto &s : req) {
            v.push_back({ s.data(), s.size() });
        }
        return ak_record_has_scopes(&r->rec, v.data(), v.size());
    };
    EXPECT_EQ(has({}), 1);
    EXPECT_EQ(has({ "read" }), 1);
    EXPECT_EQ(has({ "admin" }), 1);
    EXPECT_EQ(has({ "write:all" }), 1);
    EXPECT_EQ(has({ "read", "admin", "write:all" }), 1);
    EXPECT_EQ(has({ "write" }), 0);         /* not a prefix match */
    EXPECT_EQ(has({ "rea" }), 0);
    EXPECT_EQ(has({ "Read" }), 0);
    EXPECT_EQ(has({ "read", "delete" }), 0);
    EXPECT_EQ(has({ "dmin" }), 0);
    EXPECT_EQ(has({ "read write:all" }), 0);
    EXPECT_EQ(has({ "" }), 0);

    auto none = make({});
    ak_str_t want = { "read", 4 };
    EXPECT_EQ(ak_record_has_scopes(&none->rec, &want, 1), 0);
    EXPECT_EQ(ak_record_has_scopes(&none->rec, nullptr, 0), 1);

    /* the glue re-checks with a zeroed record holding only scopes */
    ak_record_t z;
    std::memset(&z, 0, sizeof(z));
    z.scopes = { "a b c", 5 };
    ak_str_t c = { "c", 1 }, d = { "d", 1 };
    EXPECT_EQ(ak_record_has_scopes(&z, &c, 1), 1);
    EXPECT_EQ(ak_record_has_scopes(&z, &d, 1), 0);
    std::memset(&z, 0, sizeof(z));
    EXPECT_EQ(ak_record_has_scopes(&z, &c, 1), 0);
}

TEST(Record, CppFieldApi)
{
    EXPECT_TRUE(ak::is_record_field("rate"));
    EXPECT_TRUE(ak::is_record_field("referrers"));
    EXPECT_FALSE(ak::is_record_field("Rate"));
    EXPECT_FALSE(ak::is_record_field("created_at"));
    EXPECT_EQ(std::size(ak::kRecordFields), 14u);
    for (auto f : ak::kRecordFields) {
        EXPECT_TRUE(ak::is_record_field(f)) << f;
    }

    std::string err = "untouched";
    EXPECT_TRUE(ak::validate_field("rate", "10/s", &err));
    EXPECT_TRUE(ak::validate_field("rate", "", &err));       /* absent */
    EXPECT_TRUE(ak::validate_field("created_at", "\x01", &err));
    EXPECT_TRUE(ak::validate_field("ips", "::1, 10.0.0.0/8", &err));
    EXPECT_EQ(err, "untouched");
    EXPECT_FALSE(ak::validate_field("rate", "10/d", nullptr));
}


/* identity (the quota counters' hash, kept across rotations) and
 * alias_until (the old secret of a rotated key) */
TEST(Record, IdentityAndAliasUntil)
{
    const std::string other(
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    aktest::Rec r;
    r.b = aktest::build({ { "owner", "x" }, { "quota", "5/day" },
                          { "identity", other },
                          { "alias_until", "1800000000" } });
    ASSERT_GT(r.b.len, 0) << r.b.err.msg;
    ASSERT_EQ(ak_record_view(aktest::test_hash(), r.b.blob.data(),
                             r.b.blob.size(), &r.rec),
              0);
    ASSERT_NE(r.rec.identity, nullptr);
    EXPECT_EQ(ak::hex_encode(r.rec.identity, AK_HASH_LEN), other);
    EXPECT_EQ(r.rec.alias_until, 1800000000);
    EXPECT_EQ(r.owner(), "x");
    EXPECT_EQ(r.rec.quota_n, 5u);

    /* every truncation of it is corrupt; so is an unknown ext bit */
    for (size_t n = 0; n < r.b.blob.size(); n++) {
        std::vector<unsigned char> cut(r.b.blob.begin(),
                                       r.b.blob.begin() + n);
        ak_record_t v;
        EXPECT_EQ(ak_record_view(aktest::test_hash(),
                                 n ? cut.data() : nullptr, n, &v),
                  -1)
            << n;
    }
    auto b2 = aktest::build({ { "alias_until", "7" } });
    ASSERT_GT(b2.len, 0);
    ak_record_t v;
    ASSERT_EQ(ak_record_view(aktest::test_hash(), b2.blob.data(),
                             b2.blob.size(), &v),
              0);
    EXPECT_EQ(v.identity, nullptr);
    EXPECT_EQ(v.alias_until, 7);
    ASSERT_EQ(b2.blob[3], 0x02);        /* header 3, then the ext byte */
    for (unsigned char bad : { 0x00, 0x04, 0x80 }) {
        std::vector<unsigned char> c = b2.blob;
        c[3] = bad;
        EXPECT_EQ(ak_record_view(aktest::test_hash(), c.data(), c.size(), &v),
                  -1)
            << int(bad);
    }

    /* the key's own hash as identity is the default: not stored */
    std::string own = ak::hex_encode(aktest::test_hash(), AK_HASH_LEN);
    auto plain = aktest::build({ { "owner", "x" } });
    auto same = aktest::build({ { "owner", "x" }, { "identity", own } });
    ASSERT_GT(same.len, 0);
    EXPECT_EQ(same.blob, plain.blob);

    /* malformed values */
    for (const char *bad : {
             "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
             "0011", "zz112233445566778899aabbccddeeff00112233445566778899aab"
                     "bccddeeff" }) {
        auto b = aktest::build({ { "identity", bad } });
        EXPECT_EQ(b.len, -1) << bad;
        EXPECT_NE(std::string(b.err.msg).find("field \"identity\""),
                  std::string::npos)
            << b.err.msg;
    }
    for (const char *bad : { "0", "-1", "soon", "1234567890123456789" }) {
        auto b = aktest::build({ { "alias_until", bad } });
        EXPECT_EQ(b.len, -1) << bad;
        EXPECT_NE(std::string(b.err.msg).find("field \"alias_until\""),
                  std::string::npos)
            << b.err.msg;
    }
    EXPECT_TRUE(ak::validate_field("identity", own, nullptr));
    EXPECT_FALSE(ak::validate_field("identity", "x", nullptr));
    EXPECT_TRUE(ak::validate_field("alias_until", "1800000000", nullptr));
}

/* ak_record_plain: a record that only its texts describe, and nothing else */
TEST(Record, PlainIsTextsOnly)
{
    const Fields plain[] = {
        {},
        { { "owner", "acme-corp" } },
        { { "owner", "acme-corp" }, { "plan", "pro" } },
        { { "id", "acme-prod.1" }, { "owner", "a" }, { "plan", "b" } },
        { { "status", "active" }, { "plan", std::string(256, 'p') } },
        { { "owner", "x" }, { "created_at", "ignored by the module" } },
    };
    for (const Fields &f : plain) {
        auto b = build(f);
        ASSERT_GT(b.len, 0) << b.err.msg;
        EXPECT_EQ(ak_record_plain(b.blob.data(), b.blob.size()), 1);

        /* and the view agrees: nothing a request would be checked for */
        ak_record_t v;
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.blob.data(),
                                      b.blob.size(), &v),
                  0);
        EXPECT_EQ(v.status, AK_STATUS_ACTIVE);
        EXPECT_EQ(v.expires_at, 0);
        EXPECT_EQ(v.has_ips + v.has_referrers, 0);
        EXPECT_EQ(v.rate_period, AK_PERIOD_NONE);
        EXPECT_EQ(v.quota_period, AK_PERIOD_NONE);
        EXPECT_EQ(v.scopes.len, 0u);
        EXPECT_EQ(v.identity, nullptr);
        EXPECT_EQ(v.alias_until, 0);

        /* every truncation, and every blob one byte longer, is not */
        for (size_t n = 0; n < b.blob.size(); n++) {
            EXPECT_EQ(ak_record_plain(n ? b.blob.data() : nullptr, n), 0)
                << n;
        }
        std::vector<unsigned char> longer = b.blob;
        longer.push_back('x');
        EXPECT_EQ(ak_record_plain(longer.data(), longer.size()), 0);
    }

    /* each thing a request is checked for makes a record not plain */
    const Fields other[] = {
        { { "owner", "x" }, { "status", "disabled" } },
        { { "owner", "x" }, { "status", "revoked" } },
        { { "owner", "x" }, { "expires_at", "1893456000" } },
        { { "owner", "x" }, { "scopes", "read" } },
        { { "owner", "x" }, { "ips", "10.0.0.0/8" } },
        { { "owner", "x" }, { "referrers", "example.com" } },
        { { "owner", "x" }, { "rate", "10/s" } },
        { { "owner", "x" }, { "quota", "10/day" } },
        { { "owner", "x" }, { "alias_until", "1800000000" } },
        { { "owner", "x" },
          { "identity", "00112233445566778899aabbccddeeff"
                        "00112233445566778899aabbccddeeff" } },
    };
    for (const Fields &f : other) {
        auto b = build(f);
        ASSERT_GT(b.len, 0) << b.err.msg;
        EXPECT_EQ(ak_record_plain(b.blob.data(), b.blob.size()), 0)
            << f.back().first;
    }

    /* a damaged plain blob: plain only where the view reads it as plain */
    auto b = build({ { "id", "acme-prod.1" }, { "owner", "acme" },
                     { "plan", "pro" } });
    ASSERT_GT(b.len, 0);
    for (size_t i = 0; i < b.blob.size(); i++) {
        for (unsigned x : { 0x01u, 0x04u, 0x20u, 0x80u, 0xffu }) {
            std::vector<unsigned char> c = b.blob;
            c[i] ^= static_cast<unsigned char>(x);
            ak_record_t v;
            int view = ak_record_view_lazy(aktest::test_hash(), c.data(),
                                           c.size(), &v);
            if (ak_record_plain(c.data(), c.size())) {
                ASSERT_EQ(view, 0) << i << " ^ " << x;
                EXPECT_EQ(v.status, AK_STATUS_ACTIVE);
                EXPECT_EQ(v.has_ips + v.has_referrers, 0);
                EXPECT_EQ(v.rate_period + v.quota_period, 0);
                EXPECT_EQ(v.expires_at + v.alias_until, 0);
            }
        }
    }
    EXPECT_EQ(ak_record_plain(nullptr, 0), 0);
}

/* ak_record_rate_only and ak_record_entry_flags: texts and a rate only */
TEST(Record, RateOnlyIsTextsAndARate)
{
    const Fields rated[] = {
        { { "owner", "acme" }, { "plan", "pro" }, { "rate", "100/s" } },
        { { "id", "acme-prod.1" }, { "owner", "a" }, { "plan", "b" },
          { "rate", "5000/m" }, { "burst", "20" } },
        { { "rate", "1000000/s" }, { "burst", "1000" } },
        { { "rate", "2097151/h" }, { "owner", std::string(200, 'o') } },
    };
    for (const Fields &f : rated) {
        auto b = build(f);
        ASSERT_GT(b.len, 0) << b.err.msg;
        EXPECT_EQ(ak_record_entry_flags(b.blob.data(), b.blob.size()),
                  (uint32_t) AK_ENTRY_RATED);
        ak_record_t ro, v;
        ASSERT_EQ(ak_record_rate_only(b.blob.data(), b.blob.size(), &ro), 1);
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.blob.data(),
                                      b.blob.size(), &v),
                  0);
        EXPECT_EQ(ro.status, v.status);
        EXPECT_EQ(ro.rate_period, v.rate_period);
        EXPECT_EQ(ro.rate_n, v.rate_n);
        EXPECT_EQ(ro.rate_interval_us, v.rate_interval_us);
        EXPECT_EQ(ro.burst, v.burst);
        EXPECT_EQ(ro.rate_scope, v.rate_scope);
        EXPECT_EQ(ro.quota_period, AK_PERIOD_NONE);
        EXPECT_EQ(ro.expires_at + ro.alias_until, 0);
        EXPECT_EQ(ro.has_ips + ro.has_referrers, 0);
        EXPECT_EQ(ro.identity, nullptr);
        EXPECT_EQ(ro.id.data, nullptr);        /* the texts: left empty */
        EXPECT_EQ(ro.owner.len + ro.plan.len + ro.scopes.len, 0u);
        EXPECT_EQ(ro.blob, b.blob.data());

        for (size_t n = 0; n < b.blob.size(); n++) {
            EXPECT_EQ(ak_record_rate_only(n ? b.blob.data() : nullptr, n,
                                          nullptr),
                      0)
                << n;
            EXPECT_EQ(ak_record_entry_flags(n ? b.blob.data() : nullptr, n),
                      0u)
                << n;
        }
        std::vector<unsigned char> longer = b.blob;
        longer.push_back(1);
        EXPECT_EQ(ak_record_rate_only(longer.data(), longer.size(), nullptr),
                  0);
    }

    /* anything else is not, and rec is left as it was */
    const Fields other[] = {
        { { "owner", "x" }, { "rate", "10/s" }, { "quota", "10/day" } },
        { { "owner", "x" }, { "rate", "10/s" }, { "ips", "10.0.0.0/8" } },
        { { "owner", "x" }, { "rate", "10/s" }, { "referrers", "a.com" } },
        { { "owner", "x" }, { "rate", "10/s" }, { "scopes", "read" } },
        { { "owner", "x" }, { "rate", "10/s" }, { "expires_at", "1893456000" } },
        { { "owner", "x" }, { "rate", "10/s" }, { "status", "disabled" } },
        { { "owner", "x" }, { "rate", "10/s" }, { "rate_scope", "cluster" } },
        { { "owner", "x" }, { "rate", "10/s" }, { "alias_until", "1800000000" } },
        { { "owner", "x" }, { "rate", "3000000/s" } },   /* four bytes */
        { { "owner", "x" } },                            /* plain */
    };
    for (const Fields &f : other) {
        auto b = build(f);
        ASSERT_GT(b.len, 0) << b.err.msg;
        ak_record_t ro;
        std::memset(&ro, 0x77, sizeof(ro));
        EXPECT_EQ(ak_record_rate_only(b.blob.data(), b.blob.size(), &ro), 0)
            << f.back().first;
        std::vector<unsigned char> untouched(sizeof(ro), 0x77);
        EXPECT_EQ(std::memcmp(&ro, untouched.data(), sizeof(ro)), 0);
        EXPECT_NE(ak_record_entry_flags(b.blob.data(), b.blob.size()),
                  (uint32_t) AK_ENTRY_RATED)
            << f.back().first;
    }
    auto p = build({ { "owner", "x" } });
    EXPECT_EQ(ak_record_entry_flags(p.blob.data(), p.blob.size()),
              (uint32_t) AK_ENTRY_PLAIN);

    /* the id's characters: checked when the cache notes the record, not
     * again on the request path */
    auto b = build({ { "id", "acme-prod" }, { "rate", "10/s" } });
    ASSERT_GT(b.len, 0);
    std::vector<unsigned char> bad = b.blob;
    ASSERT_EQ(bad[3], 9);                 /* header 3, length 9, the id */
    ASSERT_EQ(bad[4], 'a');
    bad[4] = '/';
    EXPECT_EQ(ak_record_entry_flags(bad.data(), bad.size()), 0u);
    EXPECT_EQ(ak_record_rate_only(bad.data(), bad.size(), nullptr), 1);
}
