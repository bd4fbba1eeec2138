/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_referrer: referrer patterns and Referer parsing.  A "referrers"
 * value is built into a record and Referer values are matched
 * (ak_record_referrer_allowed), against a slow reference written from
 * README: the list split on commas, each pattern a host name, "*." + a
 * domain or a bracketed IPv6 literal; the Referer an absolute URL whose
 * host is compared label by label.
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "fuzz_util.h"
#include "match_old.h"

#include <string>
#include <vector>

namespace {

std::string lower(std::string s)
{
    for (auto &c : s) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
    return s;
}

bool alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9');
}

bool hexc(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
           || (c >= 'A' && c <= 'F');
}

std::vector<std::string> split(const std::string &s, char sep)
{
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t at = s.find(sep, start);
        out.push_back(s.substr(start, at == std::string::npos
                                          ? std::string::npos : at - start));
        if (at == std::string::npos) return out;
        start = at + 1;
    }
}

/* labels of 1..63 [A-Za-z0-9-] (and '_'), at most 253 in all */
bool hostname(const std::string &h, bool underscore)
{
    if (h.empty() || h.size() > 253) return false;
    for (const auto &l : split(h, '.')) {
        if (l.empty() || l.size() > 63) return false;
        for (char c : l) {
            if (!alnum(c) && c != '-' && !(underscore && c == '_')) {
                return false;
            }
        }
    }
    return true;
}

bool v6_literal(const std::string &s)
{
    if (s.size() < 2 || s.size() > 45) return false;
    bool colon = false;
    for (char c : s) {
        if (c == ':') colon = true;
        else if (!hexc(c) && c != '.') return false;
    }
    return colon;
}

struct Pattern {
    bool wildcard;
    std::string host;           /* lowercase, no trailing dot */
};

std::string trim(const std::string &s)
{
    size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t')) b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    return s.substr(b, e - b);
}

bool ref_patterns(const std::string &v, std::vector<Pattern> *out)
{
    for (auto item : split(v, ',')) {
        item = trim(item);
        if (item.empty()) return false;
        Pattern p;
        p.wildcard = item.size() >= 2 && item[0] == '*' && item[1] == '.';
        std::string h = p.wildcard ? item.substr(2) : item;
        if (!p.wildcard && h.size() >= 2 && h.front() == '['
            && h.back() == ']')
        {
            if (!v6_literal(h.substr(1, h.size() - 2))) return false;
        } else {
            if (h.size() > 1 && h.back() == '.') h.pop_back();
            if (!hostname(h, false)) return false;
        }
        p.host = lower(h);
        out->push_back(p);
    }
    return true;
}

/* the host of an absolute URL, or false */
bool ref_referer_host(const std::string &u, std::string *host)
{
    size_t sep = u.find("://");
    if (sep == std::string::npos || sep == 0) return false;
    std::string scheme = u.substr(0, sep);
    if (!((scheme[0] >= 'a' && scheme[0] <= 'z')
          || (scheme[0] >= 'A' && scheme[0] <= 'Z'))) return false;
    for (char c : scheme) {
        if (!alnum(c) && c != '+' && c != '-' && c != '.') return false;
    }
    std::string rest = u.substr(sep + 3);
    std::string auth = rest.substr(0, rest.find_first_of("/?#"));
    for (char c : auth) {
        unsigned char uc = static_cast<unsigned char>(c);
        if (uc <= 0x20 || uc >= 0x7f || c == '\\' || c == '%') return false;
    }
    size_t at = auth.rfind('@');
    std::string hp = at == std::string::npos ? auth : auth.substr(at + 1);
    std::string h, port;
    bool has_port = false;
    if (!hp.empty() && hp[0] == '[') {
        size_t close = hp.find(']');
        if (close == std::string::npos) return false;
        h = hp.substr(0, close + 1);
        if (!v6_literal(h.substr(1, h.size() - 2))) return false;
        std::string after = hp.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') return false;
            has_port = true;
            port = after.substr(1);
        }
    } else {
        size_t colon = hp.find(':');
        h = hp.substr(0, colon);
        if (colon != std::string::npos) {
            has_port = true;
            port = hp.substr(colon + 1);
        }
        if (!h.empty() && h.back() == '.') h.pop_back();
        if (!hostname(h, true)) return false;
    }
    if (has_port) {
        if (port.size() > 5) return false;
        for (char c : port) {
            if (c < '0' || c > '9') return false;
        }
    }
    *host = h;
    return true;
}

bool ref_allowed(const std::vector<Pattern> &ps, const std::string &referer)
{
    std::string host;
    if (!ref_referer_host(referer, &host)) return false;
    host = lower(host);
    std::vector<std::string> hl = split(host, '.');
    for (const auto &p : ps) {
        if (!p.wildcard) {
            if (host == p.host) return true;
            continue;
        }
        /* more labels than the domain, the last ones equal to it */
        std::vector<std::string> pl = split(p.host, '.');
        if (host[0] == '[' || hl.size() <= pl.size()) continue;
        bool same = true;
        for (size_t i = 0; i < pl.size() && same; i++) {
            same = hl[hl.size() - pl.size() + i] == pl[i];
        }
        if (same) return true;
    }
    return false;
}

const char *const kHosts[] = {
    "example.com", "a.example.com", "EXAMPLE.com", "b.a.example.com",
    "xexample.com", "[::1]", "[2001:DB8::1]", "127.0.0.1", "com",
    "example.com.", "-a-.b", "a_b.example.com",
};

std::string piece(fuzz::Input &in)
{
    uint8_t how = in.u8();
    if (how % 3 == 0) {
        return in.str8();
    }
    return kHosts[(how >> 2) % (sizeof(kHosts) / sizeof(kHosts[0]))];
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);

    std::string v;
    size_t n = 1 + in.u8() % 6;
    for (size_t i = 0; i < n; i++) {
        if (i) v += ",";
        uint8_t how = in.u8();
        if (how & 1) v += " ";
        if (how & 2) v += "*.";
        v += piece(in);
    }

    if (v.empty()) {
        return 0;                       /* empty: absent, no rule */
    }

    std::vector<Pattern> ps;
    bool ok = ref_patterns(v, &ps);
    FUZZ_CHECK(ak::validate_field("referrers", v, nullptr) == ok);

    unsigned char hash[AK_HASH_LEN] = { 2 };
    fuzz::Exact name(std::string("referrers")), val(v);
    ak_str_t f = { name.c(), name.len }, fv = { val.c(), val.len };
    unsigned char blob[AK_RECORD_MAX];
    ak_record_err_t err;
    int len = ak_record_build(hash, &f, &fv, 1, blob, sizeof(blob), &err);

    if (!ok) {
        FUZZ_CHECK(len == -1);
        FUZZ_CHECK(std::strncmp(err.msg, "field \"referrers\": ", 19) == 0);
        return 0;
    }
    if (len == -1) {
        FUZZ_CHECK(std::strncmp(err.msg, "record too large", 16) == 0);
        return 0;
    }

    ak_record_t rec;
    FUZZ_CHECK(ak_record_view(hash, blob, static_cast<size_t>(len), &rec) == 0);
    FUZZ_CHECK(rec.has_referrers == 1);

    while (!in.empty()) {
        std::string r;
        uint8_t how = in.u8();
        if (how % 4 == 0) {
            r = in.str8();
        } else {
            static const char *const schemes[] = {
                "https://", "http://", "HTTP://", "a+b.c-d://", "1http://",
                "//", "https:/", "",
            };
            r = schemes[(how >> 2) % 8];
            if (how & 0x20) r += in.str8() + "@";
            r += (how & 0x40) ? in.str8() : piece(in);
            if (how & 0x80) r += in.str8();
        }
        fuzz::Exact e(r);
        int got = ak_record_referrer_allowed(&rec, e.c(), e.len);
        FUZZ_CHECK(got == (ref_allowed(ps, r) ? 1 : 0));

        /* and the same as the matchers before they were made cheaper:
           the answer, the host found and its length */
        FUZZ_CHECK(got
                   == match_old::referrer_allowed_v2(&rec, e.c(), e.len));
        const char *h = nullptr, *oh = nullptr;
        size_t hl = 0, ohl = 0;
        bool hok = ak::referer_host(e.c(), e.len, &h, &hl);
        FUZZ_CHECK(hok == match_old::referer_host(e.c(), e.len, &oh, &ohl));
        FUZZ_CHECK(!hok || (h == oh && hl == ohl));

        /* the two steps a worker takes to keep verdicts by host agree */
        size_t sl = 0;
        const char *sh = ak_referer_host(e.c(), e.len, &sl);
        FUZZ_CHECK(sh == (hok ? h : nullptr) && (!hok || sl == hl));
        FUZZ_CHECK(got == (sh ? ak_record_referrer_host_allowed(&rec, sh, sl)
                              : 0));

        /*
         * What the worker relies on to reuse a verdict: a Referer whose
         * host follows "://" and is ended by '/', '?', '#' or the end
         * names that host in any value that begins with the same bytes up
         * to the host's end followed by one of those or nothing.
         */
        size_t kp = hok ? ak_referer_kept_prefix(e.c(), e.len, h, hl) : 0;
        bool keepable = hok && h - e.c() >= 3
                        && std::memcmp(h - 3, "://", 3) == 0
                        && (static_cast<size_t>(h - e.c()) + hl == e.len
                            || AK_REFERER_HOST_ENDS(r[h - e.c() + hl]));
        FUZZ_CHECK(kp == (keepable ? static_cast<size_t>(h - e.c()) + hl
                                   : 0));
        if (kp) {
            /* the prefix alone, and followed by each byte that
             * AK_REFERER_HOST_ENDS() accepts (as the worker tests it) and
             * anything */
            std::string tail = in.str8();
            for (int c = -1; c < 256; c++) {
                if (c >= 0 && !AK_REFERER_HOST_ENDS(c)) {
                    continue;
                }
                std::string r2 = r.substr(0, kp);
                if (c >= 0) {
                    r2 += static_cast<char>(c);
                    r2 += tail;
                }
                fuzz::Exact e2(r2);
                size_t l2 = 0;
                const char *h2 = ak_referer_host(e2.c(), e2.len, &l2);
                FUZZ_CHECK(h2 == e2.c() + (h - e.c()) && l2 == hl);
                FUZZ_CHECK(ak_record_referrer_allowed(&rec, e2.c(), e2.len)
                           == got);
            }
        }
    }

    return 0;
}
