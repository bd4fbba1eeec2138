/* SPDX-License-Identifier: BSD-2-Clause */
/* ips (CIDR) and referrers rules. */

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <vector>

#include "ak_core.h"
#include "ak_record_util.h"
#include "akcore.hpp"
#include "internal.hpp"

using aktest::build;
using aktest::make;

namespace {

/* 1/0 for an address given as text, -1 if the text is no address */
int ip_ok(const ak_record_t *rec, const char *text)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, text, a) == 1) {
        return ak_record_ip_allowed(rec, 4, a);
    }
    if (inet_pton(AF_INET6, text, a) == 1) {
        return ak_record_ip_allowed(rec, 6, a);
    }
    ADD_FAILURE() << "bad test address " << text;
    return -1;
}

/* the verdict, and the same from the two steps (ak_referer_host, then
 * ak_record_referrer_host_allowed), which must agree, for every Referer
 * of these tests */
int ref_ok(const ak_record_t *rec, const std::string &referer)
{
    int whole = ak_record_referrer_allowed(rec, referer.data(),
                                           referer.size());
    size_t n = 0;
    const char *host = ak_referer_host(referer.data(), referer.size(), &n);
    int steps = host ? ak_record_referrer_host_allowed(rec, host, n) : 0;

    if (host != nullptr) {
        EXPECT_TRUE(host >= referer.data()
                    && host + n <= referer.data() + referer.size())
            << referer;
    }
    if (rec != nullptr && rec->has_referrers) {
        EXPECT_EQ(whole, steps) << "two steps disagree on " << referer;
    }
    return whole;
}

std::string host_of(const std::string &url)
{
    const char *h;
    size_t n;
    if (!ak::referer_host(url.data(), url.size(), &h, &n)) {
        return "<none>";
    }
    return std::string(h, n);
}

} // namespace


TEST(Ips, NoRuleAllowsAll)
{
    auto r = make({});
    ASSERT_EQ(r->view_rc, 0);
    EXPECT_EQ(ip_ok(&r->rec, "1.2.3.4"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "::1"), 1);
    EXPECT_EQ(ak_record_ip_allowed(&r->rec, 4, nullptr), 1);
}

TEST(Ips, Ipv4Prefixes)
{
    auto r = make({ { "ips", "10.0.0.0/8, 192.168.7.9,172.16.0.0/31" } });
    ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;
    EXPECT_EQ(ip_ok(&r->rec, "10.0.0.0"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "10.255.255.255"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "11.0.0.0"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "9.255.255.255"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "192.168.7.9"), 1);       /* /32 implied */
    EXPECT_EQ(ip_ok(&r->rec, "192.168.7.8"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "192.168.7.10"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "172.16.0.0"), 1);        /* /31 */
    EXPECT_EQ(ip_ok(&r->rec, "172.16.0.1"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "172.16.0.2"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "172.15.255.255"), 0);
    /* an IPv6 client never meets IPv4 rules, unless v4-mapped */
    EXPECT_EQ(ip_ok(&r->rec, "::a00:1"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "2001:db8::1"), 0);
}

TEST(Ips, Ipv4EdgePrefixes)
{
    auto all = make({ { "ips", "0.0.0.0/0" } });
    ASSERT_EQ(all->view_rc, 0);
    EXPECT_EQ(ip_ok(&all->rec, "0.0.0.0"), 1);
    EXPECT_EQ(ip_ok(&all->rec, "255.255.255.255"), 1);
    EXPECT_EQ(ip_ok(&all->rec, "::1"), 0);             /* /0 of IPv4 only */
    EXPECT_EQ(ip_ok(&all->rec, "::ffff:8.8.8.8"), 1);

    auto half = make({ { "ips", "128.0.0.0/1" } });
    EXPECT_EQ(ip_ok(&half->rec, "128.0.0.0"), 1);
    EXPECT_EQ(ip_ok(&half->rec, "255.1.2.3"), 1);
    EXPECT_EQ(ip_ok(&half->rec, "127.255.255.255"), 0);
    EXPECT_EQ(ip_ok(&half->rec, "0.0.0.1"), 0);

    auto one = make({ { "ips", "203.0.113.77/32" } });
    EXPECT_EQ(ip_ok(&one->rec, "203.0.113.77"), 1);
    EXPECT_EQ(ip_ok(&one->rec, "203.0.113.76"), 0);
    EXPECT_EQ(ip_ok(&one->rec, "203.0.113.78"), 0);

    /* odd prefix lengths */
    auto p9 = make({ { "ips", "10.128.0.0/9" } });
    EXPECT_EQ(ip_ok(&p9->rec, "10.128.0.0"), 1);
    EXPECT_EQ(ip_ok(&p9->rec, "10.255.1.1"), 1);
    EXPECT_EQ(ip_ok(&p9->rec, "10.127.255.255"), 0);
}

TEST(Ips, HostBitsAreMasked)
{
    auto r = make({ { "ips", "10.1.2.3/8, 192.168.1.130/25" } });
    ASSERT_EQ(r->view_rc, 0);
    EXPECT_EQ(ip_ok(&r->rec, "10.9.9.9"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "192.168.1.128"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "192.168.1.255"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "192.168.1.127"), 0);

    auto b1 = build({ { "ips", "10.1.2.3/8" } });
    auto b2 = build({ { "ips", "10.0.0.0/8" } });
    EXPECT_EQ(b1.blob, b2.blob);
}

TEST(Ips, Ipv6Prefixes)
{
    auto r = make({ { "ips", "2001:db8::/32,fe80::1/128, 2001:db8:ffff::/127" } });
    ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;
    EXPECT_EQ(ip_ok(&r->rec, "2001:db8::1"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "2001:db8:ffff:ffff::"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "2001:db9::"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "fe80::1"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "fe80::2"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "fe80::"), 0);
    EXPECT_EQ(ip_ok(&r->rec, "1.2.3.4"), 0);

    auto p127 = make({ { "ips", "2001:db8::ff/127" } });
    EXPECT_EQ(ip_ok(&p127->rec, "2001:db8::fe"), 1);
    EXPECT_EQ(ip_ok(&p127->rec, "2001:db8::ff"), 1);
    EXPECT_EQ(ip_ok(&p127->rec, "2001:db8::fd"), 0);
    EXPECT_EQ(ip_ok(&p127->rec, "2001:db8::100"), 0);

    auto all = make({ { "ips", "::/0" } });
    EXPECT_EQ(ip_ok(&all->rec, "::"), 1);
    EXPECT_EQ(ip_ok(&all->rec, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 1);
    EXPECT_EQ(ip_ok(&all->rec, "10.0.0.1"), 0);        /* /0 of IPv6 only */
    EXPECT_EQ(ip_ok(&all->rec, "::ffff:10.0.0.1"), 0); /* mapped = IPv4 */

    auto half = make({ { "ips", "8000::/1" } });
    EXPECT_EQ(ip_ok(&half->rec, "8000::"), 1);
    EXPECT_EQ(ip_ok(&half->rec, "ffff::1"), 1);
    EXPECT_EQ(ip_ok(&half->rec, "7fff:ffff::"), 0);
}

TEST(Ips, MappedAddresses)
{
    auto r = make({ { "ips", "10.0.0.0/8" } });
    EXPECT_EQ(ip_ok(&r->rec, "::ffff:10.1.2.3"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "::ffff:11.1.2.3"), 0);
    /* IPv4-compatible (deprecated) is not mapped */
    EXPECT_EQ(ip_ok(&r->rec, "::10.1.2.3"), 0);

    /* a mapped rule is the IPv4 rule it means */
    auto m = make({ { "ips", "::ffff:192.0.2.0/120" } });
    ASSERT_EQ(m->view_rc, 0) << m->b.err.msg;
    EXPECT_EQ(ip_ok(&m->rec, "192.0.2.200"), 1);
    EXPECT_EQ(ip_ok(&m->rec, "::ffff:192.0.2.1"), 1);
    EXPECT_EQ(ip_ok(&m->rec, "192.0.3.1"), 0);
    EXPECT_EQ(build({ { "ips", "::ffff:192.0.2.0/120" } }).blob,
              build({ { "ips", "192.0.2.0/24" } }).blob);

    auto one = make({ { "ips", "::ffff:1.2.3.4" } });
    EXPECT_EQ(ip_ok(&one->rec, "1.2.3.4"), 1);
    EXPECT_EQ(ip_ok(&one->rec, "1.2.3.5"), 0);
}

TEST(Ips, BadFamilyOrAddress)
{
    auto r = make({ { "ips", "0.0.0.0/0, ::/0" } });
    const unsigned char a[16] = { 1 };
    EXPECT_EQ(ak_record_ip_allowed(&r->rec, 5, a), 0);
    EXPECT_EQ(ak_record_ip_allowed(&r->rec, 0, a), 0);
    EXPECT_EQ(ak_record_ip_allowed(&r->rec, 4, nullptr), 0);
    EXPECT_EQ(ak_record_ip_allowed(nullptr, 4, a), 0);
}

TEST(Ips, Malformed)
{
    const char *bad[] = {
        "10.0.0.256", "10.0.0", "10.0.0.0.1", "10.0.0.0/33", "::/129",
        "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8",
        "10.0.0.0 /8", "1.2.3.4/8/9", "abc", "example.com", ",", "10.0.0.1,",
        ",10.0.0.1", "10.0.0.1,,10.0.0.2", " , ", "01.2.3.4", "0x7f.0.0.1",
        "fe80::1%eth0", "2001:db8::/0032", ":::1", "1::2::3", "[::1]",
        "10.0.0.1\n", "10.0.0.1;10.0.0.2", "*",
    };
    for (const char *v : bad) {
        auto b = build({ { "ips", v } });
        EXPECT_EQ(b.len, -1) << "accepted ips \"" << v << "\"";
        EXPECT_EQ(std::string(b.err.msg).rfind("field \"ips\": ", 0), 0u)
            << b.err.msg;
    }

    // a NUL inside an item (Redis values are binary): inet_pton would stop
    // at it and read "127.0.0.1" (found by the hostile-input corpus, t/83)
    const std::string nul[] = {
        std::string("127.0.0.1\0junk", 14), std::string("::ffff:127.0.0.1\0x", 18),
        std::string("10.0.0.0\0/8", 11), std::string("\0", 1),
    };
    for (const std::string &v : nul) {
        auto b = build({ { "ips", v } });
        EXPECT_EQ(b.len, -1) << "accepted ips with a NUL, length " << v.size();
    }

    const char *good[] = {
        "1.2.3.4", " 1.2.3.4 ", "\t1.2.3.4,\t::1 ", "::", "::/0", "0.0.0.0/0",
        "1.2.3.4/032", "::ffff:1.2.3.4", "2001:DB8::1", "1:2:3:4:5:6:7:8",
    };
    for (const char *v : good) {
        auto b = build({ { "ips", v } });
        EXPECT_GT(b.len, 0) << "rejected ips \"" << v << "\": " << b.err.msg;
    }
}

// Found by fuzz/fuzz_ips: the address text was handed to inet_pton as a C
// string, so a NUL byte ended it and what followed was ignored: "::\0\0A"
// was the rule ::/128, "1.2.3.4\0/8" the rule 1.0.0.0/8.
TEST(Ips, NulByteIsMalformed)
{
    const std::string bad[] = {
        std::string("::\0\0A", 5),
        std::string("1.2.3.4\0/8", 10),
        std::string("1.2.3.4\0", 8),
        std::string("10.0.0.1,1.2.3.4\0xyz/16", 23),
        std::string("\0", 1),
    };
    for (const auto &v : bad) {
        auto b = build({ { "ips", v } });
        EXPECT_EQ(b.len, -1) << "accepted ips with a NUL byte, "
                             << v.size() << " bytes";
        EXPECT_EQ(std::string(b.err.msg).rfind("field \"ips\": bad address",
                                               0), 0u)
            << b.err.msg;
        EXPECT_FALSE(ak::validate_field("ips", v, nullptr));
    }
}

TEST(Ips, CorruptSectionDenies)
{
    auto r = make({ { "ips", "10.0.0.0/8" } });
    ASSERT_EQ(r->view_rc, 0);
    /* a record whose section went away or is cut: deny, never read past */
    ak_record_t rec = r->rec;
    EXPECT_EQ(ip_ok(&rec, "10.1.1.1"), 1);
    rec.ips_len = 1;
    EXPECT_EQ(ip_ok(&rec, "10.1.1.1"), 0);
    rec.ips_len = 2;            /* n4 = 1, not its network and prefix */
    EXPECT_EQ(ip_ok(&rec, "10.1.1.1"), 0);
    EXPECT_EQ(ip_ok(&rec, "::1"), 0);
    rec.ips_len = 6;            /* the prefix cut */
    EXPECT_EQ(ip_ok(&rec, "10.1.1.1"), 0);
    rec.ips = nullptr;
    rec.ips_len = 0;
    EXPECT_EQ(ip_ok(&rec, "10.1.1.1"), 0);

    /* view checks the section: n4 past it, a prefix over 32, host bits
     * (header 3, u16 length, u16 n4, network 7-10, prefix 11) */
    std::vector<unsigned char> blob = r->b.blob;
    ASSERT_EQ(blob.size(), 12u);
    ASSERT_EQ(blob[5], 1);
    ASSERT_EQ(blob[6], 0);
    ASSERT_EQ(blob[7], 10);
    ASSERT_EQ(blob[11], 8);
    ak_record_t v;
    blob[5] = 2;
    EXPECT_EQ(ak_record_view(aktest::test_hash(), blob.data(), blob.size(), &v),
              -1);
    blob[5] = 0;                /* no IPv4 rule: the 5 bytes as IPv6 rules */
    EXPECT_EQ(ak_record_view(aktest::test_hash(), blob.data(), blob.size(), &v),
              -1);
    blob[5] = 1;
    blob[11] = 33;
    EXPECT_EQ(ak_record_view(aktest::test_hash(), blob.data(), blob.size(), &v),
              -1);
    blob[11] = 8;
    blob[8] = 1;                /* 10.1.0.0 under /8 */
    EXPECT_EQ(ak_record_view(aktest::test_hash(), blob.data(), blob.size(), &v),
              -1);
    blob[8] = 0;
    EXPECT_EQ(ak_record_view(aktest::test_hash(), blob.data(), blob.size(), &v),
              0);

    /* the request path's view leaves the rules' bytes to the matcher: the
     * same blobs are viewed, and a section that cannot hold its n4 denies
     * every address */
    for (unsigned char n4 : { 2, 0xff }) {
        std::vector<unsigned char> b = r->b.blob;
        b[5] = n4;
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(),
                                      &v), 0) << int(n4);
        EXPECT_EQ(v.has_ips, 1);
        EXPECT_EQ(ip_ok(&v, "10.1.1.1"), 0) << int(n4);
        EXPECT_EQ(ip_ok(&v, "::1"), 0) << int(n4);
    }
    for (unsigned char prefix : { 33, 0x80, 0xff }) {
        std::vector<unsigned char> b = r->b.blob;
        b[11] = prefix;
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(),
                                      &v), 0) << int(prefix);
        EXPECT_EQ(ip_ok(&v, "10.1.1.1"), 0) << int(prefix);
    }
    {
        /* host bits in the network: a network no address and'ed with the
         * mask equals, never matched */
        std::vector<unsigned char> b = r->b.blob;
        b[8] = 1;
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(),
                                      &v), 0);
        EXPECT_EQ(ip_ok(&v, "10.1.1.1"), 0);
        EXPECT_EQ(ip_ok(&v, "10.0.0.1"), 0);
    }
    ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), blob.data(),
                                  blob.size(), &v), 0);
    EXPECT_EQ(ip_ok(&v, "10.1.1.1"), 1);
    EXPECT_EQ(ip_ok(&v, "11.1.1.1"), 0);
}

/* four rules a turn (SSE2), the last four overlapping the ones before
 * (four to eight rules in one pass): a match at each position of lists of
 * 1 to 13 IPv4 rules, IPv6 ones between */
TEST(Ips, EachPositionOfTheV4Rules)
{
    for (int n = 1; n <= 13; n++) {
        for (int hit = 0; hit < n; hit++) {
            std::string v;
            for (int i = 0; i < n; i++) {
                v += (i ? ",2001:db8:" + std::to_string(i) + "::/48," : "");
                v += "10." + std::to_string(i) + ".0.0/16";
            }
            auto r = make({ { "ips", v } });
            ASSERT_EQ(r->view_rc, 0) << v;
            std::string a = "10." + std::to_string(hit) + ".9.9";
            EXPECT_EQ(ip_ok(&r->rec, a.c_str()), 1) << v << " " << a;
            EXPECT_EQ(ip_ok(&r->rec, "10.99.0.1"), 0) << v;
            std::string a6 = "2001:db8:" + std::to_string(n - 1) + "::7";
            EXPECT_EQ(ip_ok(&r->rec, a6.c_str()), n > 1 ? 1 : 0) << v;
        }
    }
}

TEST(Referer, HostParsing)
{
    EXPECT_EQ(host_of("https://example.com/"), "example.com");
    EXPECT_EQ(host_of("https://example.com"), "example.com");
    EXPECT_EQ(host_of("http://Example.COM:8080/a?b#c"), "Example.COM");
    EXPECT_EQ(host_of("https://example.com./x"), "example.com");
    EXPECT_EQ(host_of("https://user:pw@example.com/"), "example.com");
    EXPECT_EQ(host_of("https://example.com@evil.net/"), "evil.net");
    EXPECT_EQ(host_of("https://a@b@evil.net/"), "evil.net");
    EXPECT_EQ(host_of("https://evil.net#@example.com"), "evil.net");
    EXPECT_EQ(host_of("https://evil.net?@example.com"), "evil.net");
    EXPECT_EQ(host_of("https://evil.net/?r=a.example.com"), "evil.net");
    EXPECT_EQ(host_of("https://evil.net/@example.com"), "evil.net");
    EXPECT_EQ(host_of("https://[::1]:8443/"), "[::1]");
    EXPECT_EQ(host_of("https://[2001:DB8::1]"), "[2001:DB8::1]");
    EXPECT_EQ(host_of("android-app://com.example.app/"), "com.example.app");
    EXPECT_EQ(host_of("https://127.0.0.1:80"), "127.0.0.1");
    EXPECT_EQ(host_of("https://example.com:/"), "example.com");
    EXPECT_EQ(host_of("https://_dmarc.example.com/"), "_dmarc.example.com");

    const char *bad[] = {
        "", "example.com", "//example.com/", "://example.com",
        "https:/example.com", "https:example.com", "1http://example.com/",
        "ht tp://example.com", "https://", "https:///path", "https://:80/",
        "https://user@/", "https://example.com:8x/", "https://example.com:123456/",
        "https://example.com:80:80/", "https://exa mple.com/",
        "https://example.com\\@evil.net/", "https://evil.net\\.example.com/",
        "https://example%2ecom/", "https://ex%41mple.com",
        "https://example.com\t/", "https://exa\x01mple.com/",
        "https://exa\x7fmple.com/", "https://ex\xc3\xa4mple.com/",
        "https://.example.com/", "https://example..com/",
        "https://example.com../", "https://./", "https://[::1/",
        "https://[::1]x/", "https://[]/", "https://[zz::1]/",
        "https://[::1%25eth0]/", "https://a]b.com/", "https://a[b.com/",
        "https://a*b.com/", "https://a,b.com/",
    };
    for (const char *u : bad) {
        EXPECT_EQ(host_of(u), "<none>") << "parsed \"" << u << "\"";
    }
    const char *h;
    size_t n;
    EXPECT_FALSE(ak::referer_host(nullptr, 10, &h, &n));
}

TEST(Referer, ExactHosts)
{
    auto r = make({ { "referrers", "Example.com, app.example.net,10.0.0.7" } });
    ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;
    EXPECT_EQ(r->rec.has_referrers, 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.com/"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://EXAMPLE.com/page"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "http://example.com:8080"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.com./"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://app.example.net/x"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "http://10.0.0.7/"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://www.example.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.net/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.com.evil.net/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evilexample.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.co/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "http://10.0.0.70/"), 0);
}

TEST(Referer, Wildcards)
{
    auto r = make({ { "referrers", "*.example.com" } });
    ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;
    EXPECT_EQ(ref_ok(&r->rec, "https://a.example.com/"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://a.b.c.example.com/"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://A.Example.COM:443/x"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.com.evil.net/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evilexample.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://a.evilexample.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://.example.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://a..example.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://x.example.com@evil.net/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net#@x.example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net/?r=a.example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net/a.example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net\\.example.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net%2f.example.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net .example.com/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "a.example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "//a.example.com/"), 0);
}

TEST(Referer, UserinfoTricks)
{
    auto r = make({ { "referrers", "example.com" } });
    EXPECT_EQ(ref_ok(&r->rec, "https://example.com@evil.net/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net@example.com/"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net#@example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net?@example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://evil.net/@example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://example.com:pw@evil.net/"), 0);
}

TEST(Referer, MissingOrUnparsable)
{
    auto r = make({ { "referrers", "example.com" } });
    EXPECT_EQ(ak_record_referrer_allowed(&r->rec, nullptr, 0), 0);
    EXPECT_EQ(ak_record_referrer_allowed(&r->rec, "", 0), 0);
    EXPECT_EQ(ref_ok(&r->rec, "example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https:///example.com"), 0);
    EXPECT_EQ(ref_ok(&r->rec, std::string("https://example.com\0", 20)), 0);

    /* the length is honoured: no reading past it */
    const char buf[] = "https://example.comX";
    EXPECT_EQ(ak_record_referrer_allowed(&r->rec, buf, 19), 1);
    EXPECT_EQ(ak_record_referrer_allowed(&r->rec, buf, 20), 0);

    /* no rule: anything goes, even no header */
    auto none = make({});
    EXPECT_EQ(ak_record_referrer_allowed(&none->rec, nullptr, 0), 1);
    EXPECT_EQ(ref_ok(&none->rec, "garbage"), 1);
    EXPECT_EQ(ak_record_referrer_allowed(nullptr, "https://x/", 10), 0);

    /* the two steps: no host found, no record, no rule */
    size_t n = 7;
    EXPECT_EQ(ak_referer_host(nullptr, 0, &n), nullptr);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ak_referer_host("garbage", 7, &n), nullptr);
    const char *h = ak_referer_host(buf, 19, &n);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(std::string(h, n), "example.com");
    EXPECT_EQ(h, buf + 8);
    EXPECT_EQ(ak_record_referrer_host_allowed(&r->rec, h, n), 1);
    EXPECT_EQ(ak_record_referrer_host_allowed(&r->rec, nullptr, 0), 0);
    EXPECT_EQ(ak_record_referrer_host_allowed(nullptr, h, n), 0);
    EXPECT_EQ(ak_record_referrer_host_allowed(&none->rec, h, n), 1);
}

TEST(Referer, Ipv6Literals)
{
    auto r = make({ { "referrers", "[2001:DB8::1], example.com" } });
    ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;
    EXPECT_EQ(ref_ok(&r->rec, "https://[2001:db8::1]/"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://[2001:DB8::1]:8443/"), 1);
    /* compared as text, not as addresses */
    EXPECT_EQ(ref_ok(&r->rec, "https://[2001:db8:0::1]/"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://[::1]/"), 0);
}

TEST(Referer, RuleSyntax)
{
    const char *bad[] = {
        "*", "*.", "a*b.com", "http://x", "*.*.example.com", "**.example.com",
        "example.com:8080", "example.com/", "exa mple.com", ".example.com",
        "example..com", "*..example.com", "[::1", "*.[::1]", "[zz]", "[]",
        "ex_ample.com", "example.com,", ",example.com", "a,,b", "\xc3\xa4.com",
        "", /* handled as absent below */
    };
    for (const char *v : bad) {
        if (*v == '\0') {
            continue;
        }
        auto b = build({ { "referrers", v } });
        EXPECT_EQ(b.len, -1) << "accepted referrers \"" << v << "\"";
        EXPECT_EQ(std::string(b.err.msg).rfind("field \"referrers\": ", 0), 0u)
            << b.err.msg;
    }

    std::string long_label = std::string(64, 'a') + ".com";
    EXPECT_EQ(build({ { "referrers", long_label } }).len, -1);
    std::string long_host;
    while (long_host.size() < 250) {
        long_host += "abcdefghi.";
    }
    long_host += "info";                        /* 254 characters */
    EXPECT_EQ(build({ { "referrers", long_host } }).len, -1);
    long_host.resize(long_host.size() - 1);     /* 253 is fine */
    EXPECT_GT(build({ { "referrers", long_host } }).len, 0);

    const std::vector<std::string> good = {
        "example.com", "EXAMPLE.com", "*.example.com", "example.com.",
        " a.com , *.b.org ", "localhost", "10.0.0.1", "[::1]", "xn--bcher-kva.ch",
        "a-b.c-d.com", std::string(63, 'a') + ".com",
    };
    for (const std::string &v : good) {
        auto b = build({ { "referrers", v } });
        EXPECT_GT(b.len, 0) << "rejected referrers \"" << v << "\": "
                            << b.err.msg;
    }

    /* stored lowercased, trailing dot dropped */
    EXPECT_EQ(build({ { "referrers", "EXAMPLE.com." } }).blob,
              build({ { "referrers", "example.com" } }).blob);
}

TEST(Referer, MixedWithIps)
{
    auto r = make({ { "ips", "10.0.0.0/8" }, { "referrers", "*.a.com" },
                    { "owner", "o" } });
    ASSERT_EQ(r->view_rc, 0);
    EXPECT_EQ(ip_ok(&r->rec, "10.2.3.4"), 1);
    EXPECT_EQ(ip_ok(&r->rec, "11.2.3.4"), 0);
    EXPECT_EQ(ref_ok(&r->rec, "https://x.a.com/"), 1);
    EXPECT_EQ(ref_ok(&r->rec, "https://a.com/"), 0);
    EXPECT_EQ(r->owner(), "o");
}

/*
 * A corrupt referrers section (the request path's view does not check its
 * bytes) never allows: a ".domain" rule of length 0 is no rule, whatever
 * follows the host in the Referer (a trailing dot, the end of the value).
 */
TEST(Referer, CorruptZeroLengthRuleDenies)
{
    auto r = make({ { "referrers", "*.example.org" } });
    ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;

    /* ne 0, nw 2: lengths 0 and 12, then ".example.org" */
    static const unsigned char sec[] = {
        0, 0, 2, 0, 0, 12,
        '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g',
    };
    ak_record_t rec = r->rec;
    rec.referrers = sec;
    rec.referrers_len = sizeof(sec);

    EXPECT_EQ(ref_ok(&rec, "https://example.com./"), 0);
    EXPECT_EQ(ref_ok(&rec, "https://example.com."), 0);
    EXPECT_EQ(ref_ok(&rec, "https://www.example.com.:8080/x"), 0);
    EXPECT_EQ(ref_ok(&rec, "https://a.example.org/"), 1);
    EXPECT_EQ(ref_ok(&rec, "https://a.example.org./"), 1);
}

/* up to sixteen rules are placed by their lengths at once, more a rule at
 * a time: every rule at every position of both, and the hosts next to
 * it, with and without capitals, shorter and longer than a word */
TEST(Referer, EachPositionOfManyRules)
{
    for (size_t nrules : { 1, 2, 8, 15, 16, 17, 24, 40 }) {
        std::string v;
        std::vector<std::string> exact, wild;
        for (size_t i = 0; i < nrules; i++) {
            if (!v.empty()) {
                v += ",";
            }
            if (i % 2 == 0) {
                /* short ones too: "h3.io" is 5 bytes */
                std::string h = (i % 4 == 0)
                    ? "h" + std::to_string(i) + ".io"
                    : "host" + std::to_string(i) + ".example.com";
                exact.push_back(h);
                v += h;
            } else {
                std::string d = "w" + std::to_string(i) + ".example.net";
                wild.push_back(d);
                v += "*." + d;
            }
        }
        auto r = make({ { "referrers", v } });
        ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;
        for (const auto &h : exact) {
            EXPECT_EQ(ref_ok(&r->rec, "https://" + h + "/"), 1) << nrules << h;
            std::string up = h;
            up[0] = static_cast<char>(up[0] - 32);
            up[up.size() - 1] = static_cast<char>(up[up.size() - 1] - 32);
            EXPECT_EQ(ref_ok(&r->rec, "https://" + up + "/x"), 1) << up;
            EXPECT_EQ(ref_ok(&r->rec, "https://a." + h + "/"), 0) << h;
            EXPECT_EQ(ref_ok(&r->rec, "https://x" + h.substr(1) + "/"), 0)
                << h;
            EXPECT_EQ(ref_ok(&r->rec, "https://" + h.substr(0, h.size() - 1)
                                      + "/"), 0) << h;
        }
        for (const auto &d : wild) {
            EXPECT_EQ(ref_ok(&r->rec, "https://a." + d + "/"), 1) << d;
            EXPECT_EQ(ref_ok(&r->rec, "https://b.c." + d), 1) << d;
            EXPECT_EQ(ref_ok(&r->rec, "https://A.B." + d + "."), 1) << d;
            std::string up = "x.W" + d.substr(1, d.size() - 2)
                             + static_cast<char>(d.back() - 32);
            EXPECT_EQ(ref_ok(&r->rec, "https://" + up + "/"), 1) << up;
            EXPECT_EQ(ref_ok(&r->rec, "https://" + d + "/"), 0) << d;
            EXPECT_EQ(ref_ok(&r->rec, "https://aw" + d.substr(1) + "/"), 0)
                << d;
            EXPECT_EQ(ref_ok(&r->rec, "https://a." + d + "x/"), 0) << d;
        }
        EXPECT_EQ(ref_ok(&r->rec, "https://example.com/"), 0);
        EXPECT_EQ(ref_ok(&r->rec, "https://example.net/"), 0);
    }
}

/* corrupt sections long enough for the lengths' load: a rule of length
 * 0 is no rule; lengths past the section's end leave the rules to the
 * one at a time matcher, which denies at the first candidate it cannot
 * place and allows a match before it */
TEST(Referer, CorruptSectionOfSixteenBytesOrMore)
{
    auto r = make({ { "referrers", "*.example.org" } });
    ASSERT_EQ(r->view_rc, 0) << r->b.err.msg;
    ak_record_t rec = r->rec;

    /* ne 0, nw 2: lengths 0 and 16, then ".www.example.org" */
    static const unsigned char zero[] = {
        0, 0, 2, 0, 0, 16,
        '.', 'w', 'w', 'w', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e',
        '.', 'o', 'r', 'g',
    };
    rec.referrers = zero;
    rec.referrers_len = sizeof(zero);
    EXPECT_EQ(ref_ok(&rec, "https://example.com./"), 0);
    EXPECT_EQ(ref_ok(&rec, "https://a.www.example.org./"), 1);
    EXPECT_EQ(ref_ok(&rec, "https://a.example.org/"), 0);

    /* ne 2: "app.example.com" (15), then a length of 200 past the end */
    static const unsigned char past[] = {
        2, 0, 0, 0, 15, 200,
        'a', 'p', 'p', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.',
        'c', 'o', 'm', 'x', 'x', 'x',
    };
    rec.referrers = past;
    rec.referrers_len = sizeof(past);
    EXPECT_EQ(ref_ok(&rec, "https://app.example.com/"), 1);
    EXPECT_EQ(ref_ok(&rec, "https://www.example.com/"), 0);

    /* the same lengths the other way: the candidate of 15 bytes is
     * placed past the end (after the 200), and denies */
    static const unsigned char after[] = {
        2, 0, 0, 0, 200, 15,
        'a', 'p', 'p', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.',
        'c', 'o', 'm', 'x', 'x', 'x',
    };
    rec.referrers = after;
    rec.referrers_len = sizeof(after);
    EXPECT_EQ(ref_ok(&rec, "https://app.example.com/"), 0);
}

/* a prefix over 32 (a corrupt section) denies in its turn of four: a
 * match in a turn before it allows, as the rule at a time reading does;
 * four to eight rules are read in one pass only when no prefix is bad */
TEST(Ips, BadPrefixInItsTurn)
{
#if defined(__SSE2__)
    const int kTurn = 4;
#else
    const int kTurn = 1;
#endif

    for (int n = 4; n <= 12; n++) {
        std::string v;
        for (int i = 0; i < n; i++) {
            v += (i ? "," : "") + std::string("10.") + std::to_string(i)
                 + ".0.0/16";
        }
        auto r = make({ { "ips", v } });
        ASSERT_EQ(r->view_rc, 0) << v;
        ASSERT_EQ(r->rec.ips_len, 2u + 5u * n);
        for (int bad = 0; bad < n; bad++) {
            std::vector<unsigned char> sec(r->rec.ips,
                                           r->rec.ips + r->rec.ips_len);
            sec[2 + 4 * n + bad] = 33;
            ak_record_t rec = r->rec;
            rec.ips = sec.data();
            for (int hit = 0; hit < n; hit++) {
                /* the turns [s, s + k): s = 0, k, ... and n - k last (k
                 * 4 with SSE2, else 1: a rule at a time) */
                int want = 0;
                for (int s = 0;; s += kTurn) {
                    if (s > n - kTurn) {
                        s = n - kTurn;
                    }
                    if (bad >= s && bad < s + kTurn) {
                        break;
                    }
                    if (hit >= s && hit < s + kTurn) {
                        want = 1;
                        break;
                    }
                    if (s == n - kTurn) {
                        break;
                    }
                }
                std::string a = "10." + std::to_string(hit) + ".1.1";
                EXPECT_EQ(ip_ok(&rec, a.c_str()), want)
                    << n << " rules, bad " << bad << ", hit " << hit;
            }
        }
    }
}
