/* SPDX-License-Identifier: BSD-2-Clause */
/* The per-request paths of the rules (src/core/match.cpp): IPv4 rules
 * compared as integers, the Referer's authority parsed in one pass, the
 * view's checks of the sections by table and index arithmetic.  Each
 * against a plain reference or a hand-made corrupt blob. */

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ak_core.h"
#include "ak_record_util.h"
#include "internal.hpp"

using aktest::make;

namespace {

uint64_t
mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

std::string
dotted(uint32_t a)
{
    return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255)
           + "." + std::to_string((a >> 8) & 255) + "."
           + std::to_string(a & 255);
}

/* bit by bit: the first prefix bits of a and b are equal */
bool
same_prefix(uint32_t a, uint32_t b, unsigned prefix)
{
    for (unsigned i = 0; i < prefix; i++) {
        if (((a >> (31 - i)) & 1) != ((b >> (31 - i)) & 1)) {
            return false;
        }
    }
    return true;
}

std::string
host_of(const std::string &url)
{
    const char *h;
    size_t n;
    if (!ak::referer_host(url.data(), url.size(), &h, &n)) {
        return "<none>";
    }
    return std::string(h, n);
}

int
view(std::vector<unsigned char> &blob)
{
    ak_record_t v;
    return ak_record_view(aktest::test_hash(), blob.data(), blob.size(), &v);
}

} // namespace


/* every prefix length, rules with random host bits (masked when built),
 * addresses near and far from the rule: as the bitwise reference says */
TEST(MatchPaths, Ipv4RulesAsIntegersAgainstBitwiseReference)
{
    uint64_t x = 2026;
    for (unsigned prefix = 0; prefix <= 32; prefix++) {
        for (int round = 0; round < 6; round++) {
            uint32_t rule = static_cast<uint32_t>(mix(&x));
            std::string text = dotted(rule) + "/" + std::to_string(prefix);
            /* an IPv6 rule first, so that the IPv4 one is not the first
               entry of the section */
            auto r = make({ { "ips", "2001:db8::/32," + text } });
            ASSERT_EQ(r->view_rc, 0) << text << ": " << r->b.err.msg;
            for (int k = 0; k < 40; k++) {
                uint32_t a = static_cast<uint32_t>(mix(&x));
                if (k % 2 == 0) {
                    /* the rule's prefix, random below it, one bit flipped
                       at times */
                    uint32_t mask = prefix ? ~uint32_t(0) << (32 - prefix) : 0;
                    a = (rule & mask) | (a & ~mask);
                    if (k % 4 == 0 && prefix > 0) {
                        a ^= uint32_t(1) << (32 - 1 - (mix(&x) % prefix));
                    }
                }
                unsigned char b[4] = {
                    static_cast<unsigned char>(a >> 24),
                    static_cast<unsigned char>(a >> 16),
                    static_cast<unsigned char>(a >> 8),
                    static_cast<unsigned char>(a),
                };
                int want = same_prefix(a, rule, prefix) ? 1 : 0;
                EXPECT_EQ(ak_record_ip_allowed(&r->rec, 4, b), want)
                    << dotted(a) << " against " << text;
                /* the same address v4-mapped meets the same rule */
                unsigned char m[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        0xff, 0xff };
                std::memcpy(m + 12, b, 4);
                EXPECT_EQ(ak_record_ip_allowed(&r->rec, 6, m), want)
                    << "::ffff:" << dotted(a) << " against " << text;
            }
        }
    }
}

/* the port colon is the first ':' after the last '@', in one pass */
TEST(MatchPaths, RefererAuthorityInOnePass)
{
    EXPECT_EQ(host_of("https://u:p@example.com:8080/x"), "example.com");
    EXPECT_EQ(host_of("https://a:b@c:d@example.org/"), "example.org");
    EXPECT_EQ(host_of("https://example.com:80@evil.net/"), "evil.net");
    EXPECT_EQ(host_of("https://evil.net:1@example.com:443"), "example.com");
    EXPECT_EQ(host_of("https://u@[::1]:8443/"), "[::1]");
    EXPECT_EQ(host_of("https://www.example.com/page"), "www.example.com");
    EXPECT_EQ(host_of("h+t-t.p://example.com?q"), "example.com");
    /* a second colon after the host is no port */
    EXPECT_EQ(host_of("https://example.com:80:80/"), "<none>");
    /* a bad byte anywhere in the authority, also in the userinfo or after
       the port, and not after it ends */
    EXPECT_EQ(host_of("https://u%40@example.com/"), "<none>");
    EXPECT_EQ(host_of("https://example.com:8\x01/"), "<none>");
    EXPECT_EQ(host_of("https://exa\\mple.com/"), "<none>");
    EXPECT_EQ(host_of("https://example.com/%zz\x01"), "example.com");
    EXPECT_EQ(host_of("https://example.com:123456/"), "<none>");
    EXPECT_EQ(host_of("https://"), "<none>");
    EXPECT_EQ(host_of("https://@/"), "<none>");
    EXPECT_EQ(host_of("https://ex_ample.com/"), "ex_ample.com");
    EXPECT_EQ(host_of("https://ex!ample.com/"), "<none>");
}

/* the view refuses a referrers section with a byte no rule has, an empty
 * rule, a rule longer than the section, a ".domain" rule among the exact
 * ones; the request path's view leaves them to the matcher, which never
 * reads past the section */
TEST(MatchPaths, ReferrersSectionChecks)
{
    auto r = make({ { "referrers", "app.example.com,*.example.org" } });
    ASSERT_EQ(r->view_rc, 0);
    const std::vector<unsigned char> good = r->b.blob;
    const unsigned char *ips, *refs;
    size_t ips_len, refs_len;
    ASSERT_TRUE(ak::blob_rule_sections(good.data(), good.size(), &ips,
                                       &ips_len, &refs, &refs_len));
    ASSERT_NE(refs, nullptr);
    ASSERT_EQ(refs_len, 4u + 2u + 15u + 12u);
    size_t at = static_cast<size_t>(refs - good.data());
    ASSERT_EQ(good[at], 1);                 /* one exact rule */
    ASSERT_EQ(good[at + 2], 1);             /* one ".domain" rule */
    ASSERT_EQ(good[at + 4], 15);            /* "app.example.com" */
    ASSERT_EQ(good[at + 5], 12);            /* ".example.org" */
    const size_t t = at + 6;                /* the rules' bytes */
    ASSERT_EQ(good[t], 'a');
    ASSERT_EQ(good[t + 15], '.');

    for (int bad : { int('A'), int('_'), int('/'), int(' '), 0, 0x80, int('*') }) {
        for (size_t k : { size_t(0), size_t(7), size_t(14), size_t(20) }) {
            std::vector<unsigned char> b = good;
            b[t + k] = static_cast<unsigned char>(bad);
            EXPECT_EQ(view(b), -1) << "byte " << bad << " at " << k;
        }
    }
    std::vector<unsigned char> b = good;
    b[at + 4] = 0;
    EXPECT_EQ(view(b), -1);
    b = good;
    b[at + 4] = static_cast<unsigned char>(refs_len);   /* past the section */
    EXPECT_EQ(view(b), -1);
    b = good;
    b[at] = 2;                              /* ".example.org" as exact */
    b[at + 2] = 0;
    EXPECT_EQ(view(b), -1);
    b = good;
    b[at] = 0;                              /* "app.example.com" as .domain */
    b[at + 2] = 2;
    EXPECT_EQ(view(b), -1);

    /* a changed rule no longer matches app.example.com; a rule the
     * matcher cannot place (a length past the section, a count past it)
     * denies */
    const std::string app = "https://app.example.com/";
    const std::string org = "https://x.example.org/";
    ak_record_t lz;
    for (int bad : { int('B'), int('_'), int('/'), int(' '), 0, 0x80, int('*') }) {
        b = good;
        b[t + 1] = static_cast<unsigned char>(bad);
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(),
                                      &lz), 0) << bad;
        EXPECT_EQ(ak_record_referrer_allowed(&lz, app.data(), app.size()), 0)
            << bad;
        EXPECT_EQ(ak_record_referrer_allowed(&lz, org.data(), org.size()), 1)
            << bad;
    }
    for (unsigned char n : { static_cast<unsigned char>(0),
                             static_cast<unsigned char>(refs_len),
                             static_cast<unsigned char>(0xff) })
    {
        b = good;
        b[at + 4] = n;
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(),
                                      &lz), 0) << int(n);
        EXPECT_EQ(ak_record_referrer_allowed(&lz, app.data(), app.size()), 0);
        EXPECT_EQ(ak_record_referrer_allowed(&lz, org.data(), org.size()), 0);
    }
    for (size_t c : { at, at + 2 }) {
        b = good;
        b[c] = 0xff;                        /* more rules than bytes */
        ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(),
                                      &lz), 0);
        EXPECT_EQ(ak_record_referrer_allowed(&lz, app.data(), app.size()), 0);
        EXPECT_EQ(ak_record_referrer_allowed(&lz, org.data(), org.size()), 0);
    }
    /* rules are compared without case, as Referer hosts are */
    b = good;
    b[t + 1] = 'P';
    ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(), &lz),
              0);
    EXPECT_EQ(ak_record_referrer_allowed(&lz, app.data(), app.size()), 1);
    b = good;
    ASSERT_EQ(ak_record_view_lazy(aktest::test_hash(), b.data(), b.size(), &lz),
              0);
    EXPECT_EQ(ak_record_referrer_allowed(&lz, app.data(), app.size()), 1);
    const std::string upper = "https://APP.Example.COM/";
    EXPECT_EQ(ak_record_referrer_allowed(&lz, upper.data(), upper.size()), 1);
    const std::string no = "https://example.org/";
    EXPECT_EQ(ak_record_referrer_allowed(&lz, no.data(), no.size()), 0);
}


namespace {

/* the Referer's host the plain way (several passes, as match.cpp did
 * before its one-pass parse): the reference for the one below */
bool
ref_label_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool
ref_hostname(const char *h, size_t len)
{
    if (len == 0 || len > 253) {
        return false;
    }
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        if (h[i] == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
        } else if (!ref_label_char(static_cast<unsigned char>(h[i]))
                   || ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

std::string
ref_host_of(const std::string &u)
{
    const char *s = u.data();
    size_t len = u.size(), i = 1;
    auto scheme = [](unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
               || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    };
    unsigned char c0 = len ? static_cast<unsigned char>(s[0]) : 0;
    if (len == 0 || !((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z'))) {
        return "<none>";
    }
    while (i < len && scheme(static_cast<unsigned char>(s[i]))) {
        i++;
    }
    if (len - i < 3 || u.compare(i, 3, "://") != 0) {
        return "<none>";
    }
    size_t a = i + 3, end = a;
    while (end < len && s[end] != '/' && s[end] != '?' && s[end] != '#') {
        end++;
    }
    size_t hp = a;
    for (size_t k = a; k < end; k++) {
        unsigned char c = static_cast<unsigned char>(s[k]);
        if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '%') {
            return "<none>";
        }
        if (c == '@') {
            hp = k + 1;
        }
    }
    size_t h = hp, he, rest;
    bool bracket = hp < end && s[hp] == '[';
    if (bracket) {
        size_t close = u.find(']', hp);
        if (close == std::string::npos || close >= end) {
            return "<none>";
        }
        he = close + 1;
        std::string in = u.substr(hp + 1, he - hp - 2);
        bool colon = false, ok = in.size() >= 2 && in.size() <= 45;
        for (char c : in) {
            if (c == ':') {
                colon = true;
            } else if (!isxdigit(static_cast<unsigned char>(c)) && c != '.') {
                ok = false;
            }
        }
        if (!ok || !colon) {
            return "<none>";
        }
        rest = he;
    } else {
        he = hp;
        while (he < end && s[he] != ':') {
            he++;
        }
        rest = he;
    }
    if (rest < end) {
        if (s[rest] != ':' || end - rest - 1 > 5) {
            return "<none>";
        }
        for (size_t k = rest + 1; k < end; k++) {
            if (!(s[k] >= '0' && s[k] <= '9')) {
                return "<none>";
            }
        }
    }
    if (!bracket) {
        if (he > h && s[he - 1] == '.') {
            he--;
        }
        if (!ref_hostname(s + h, he - h)) {
            return "<none>";
        }
    }
    return u.substr(h, he - h);
}

} // namespace


/* random Referers from the bytes that matter (label bytes, dots, '@', ':',
 * the authority's ends, brackets, bad bytes), labels up to 70 bytes and
 * hosts up to 270: the one-pass parse answers as the reference */
TEST(MatchPaths, RefererHostAgainstReference)
{
    static const char *pieces[] = {
        "a", "Z", "0", "-", "_", ".", "..", "@", ":", "/", "?", "#", "[",
        "]", "%", "\\", " ", "\x7f", "\x01", "example", "com", "::1", "80",
        "x.y", "user:pw@",
    };
    const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
    uint64_t x = 17;
    size_t some = 0;
    for (int round = 0; round < 60000; round++) {
        std::string u = (round % 7 == 0) ? "h+x.y-z://" : "https://";
        unsigned shape = static_cast<unsigned>(mix(&x) % 4);
        size_t n = static_cast<size_t>(mix(&x) % 12);
        for (size_t k = 0; k < n; k++) {
            if (shape == 0 && mix(&x) % 3 == 0) {
                /* a long label: 60..70 bytes */
                u.append(60 + mix(&x) % 11, 'a');
            } else if (shape == 1 && mix(&x) % 4 == 0) {
                /* many short labels: near 253 bytes */
                for (int j = 0; j < 60; j++) {
                    u += "abc.";
                }
            }
            u += pieces[mix(&x) % npieces];
        }
        if (mix(&x) % 2) {
            u += "/path";
        }
        std::string want = ref_host_of(u);
        ASSERT_EQ(host_of(u), want) << "Referer \"" << u << "\"";
        some += want != "<none>";
    }
    EXPECT_GT(some, 1000u);     /* not only refusals */
}

/*
 * The last turn of referer_host's scan (fewer than sixteen bytes left: the
 * Referer's last sixteen, those already read shifted out) and the turns
 * before it: every split of two labels around it, a label of 63 and 64
 * bytes across it, empty labels, a trailing dot, each end of the host.
 */
TEST(MatchPaths, RefererHostLastTurn)
{
    static const char *ends[] = { "", "/", ".", "./", "..", ":80", "?q",
                                  "#f", "@x", " ", "\x80" };
    size_t some = 0;

    for (size_t k1 = 0; k1 <= 70; k1++) {
        for (size_t k2 = 0; k2 <= 20; k2++) {
            for (const char *end : ends) {
                for (int dots = 1; dots <= 2; dots++) {
                    std::string u = "https://" + std::string(k1, 'a')
                                    + std::string(dots, '.')
                                    + std::string(k2, 'B') + end;
                    std::string want = ref_host_of(u);
                    ASSERT_EQ(host_of(u), want) << "Referer \"" << u << "\"";
                    some += want != "<none>";
                }
            }
        }
    }
    EXPECT_GT(some, 1000u);
}
