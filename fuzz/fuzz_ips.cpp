/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_ips: CIDR lists and address matching.  An "ips" value from the
 * input is built into a record (ak_record_build) and client addresses are
 * matched (ak_record_ip_allowed); both against a model: the list split and
 * read by a reference (inet_pton for the address text, the rest from
 * README), rules kept as bit strings, an address matched bit by bit.
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "fuzz_util.h"
#include "match_old.h"

#include <arpa/inet.h>

#include <string>
#include <vector>

namespace {

struct Rule {
    int family;                 /* 4 or 6 */
    unsigned prefix;
    unsigned char a[16];
};

bool bit(const unsigned char *a, unsigned i)
{
    return (a[i / 8] >> (7 - i % 8)) & 1;
}

bool mapped(const unsigned char *a)
{
    for (int i = 0; i < 10; i++) {
        if (a[i]) {
            return false;
        }
    }
    return a[10] == 0xff && a[11] == 0xff;
}

std::string trim(const std::string &s)
{
    size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t')) b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    return s.substr(b, e - b);
}

bool ref_item(const std::string &item, Rule *r)
{
    if (item.find('\0') != std::string::npos) {
        return false;
    }
    size_t slash = item.find('/');
    std::string addr = item.substr(0, slash);
    unsigned char a[16] = {};
    int fam;

    if (addr.find(':') != std::string::npos) {
        if (inet_pton(AF_INET6, addr.c_str(), a) != 1) return false;
        fam = 6;
    } else {
        if (inet_pton(AF_INET, addr.c_str(), a) != 1) return false;
        fam = 4;
    }
    unsigned max = fam == 4 ? 32 : 128;
    unsigned prefix = max;
    if (slash != std::string::npos) {
        std::string p = item.substr(slash + 1);
        if (p.empty() || p.size() > 3) return false;
        prefix = 0;
        for (char c : p) {
            if (c < '0' || c > '9') return false;
            prefix = prefix * 10 + static_cast<unsigned>(c - '0');
        }
        if (prefix > max) return false;
    }
    if (fam == 6 && prefix >= 96 && mapped(a)) {
        fam = 4;
        prefix -= 96;
        std::memmove(a, a + 12, 4);
        std::memset(a + 4, 0, 12);
    }
    r->family = fam;
    r->prefix = prefix;
    std::memcpy(r->a, a, 16);
    return true;
}

bool ref_list(const std::string &v, std::vector<Rule> *rules)
{
    size_t start = 0;
    for (;;) {
        size_t comma = v.find(',', start);
        std::string item = trim(v.substr(start, comma == std::string::npos
                                                    ? std::string::npos
                                                    : comma - start));
        Rule r;
        if (item.empty() || !ref_item(item, &r)) {
            return false;
        }
        rules->push_back(r);
        if (comma == std::string::npos) {
            return true;
        }
        start = comma + 1;
    }
}

bool ref_allowed(const std::vector<Rule> &rules, int family,
    const unsigned char *addr)
{
    unsigned char a[16] = {};
    int fam;
    if (family == 4) {
        fam = 4;
        std::memcpy(a, addr, 4);
    } else if (family == 6 && mapped(addr)) {
        fam = 4;
        std::memcpy(a, addr + 12, 4);
    } else if (family == 6) {
        fam = 6;
        std::memcpy(a, addr, 16);
    } else {
        return false;
    }
    for (const auto &r : rules) {
        if (r.family != fam) continue;
        bool same = true;
        for (unsigned i = 0; i < r.prefix && same; i++) {
            same = bit(r.a, i) == bit(a, i);
        }
        if (same) return true;
    }
    return false;
}

/* text for an address: the input's own, or one made from bytes */
std::string item_from(fuzz::Input &in, unsigned char *kept, int *kept_fam)
{
    uint8_t how = in.u8();
    std::string s;
    if (how % 4 == 0) {
        return in.str8();               /* any text */
    }
    char buf[INET6_ADDRSTRLEN];
    unsigned char a[16];
    for (auto &b : a) b = in.u8();
    if (how & 4) {
        /* near a v4-mapped or v4-compatible address */
        std::memset(a, 0, 10);
        a[10] = a[11] = (how & 8) ? 0xff : 0;
    }
    int fam = (how % 4 == 1) ? 4 : 6;
    inet_ntop(fam == 4 ? AF_INET : AF_INET6, a, buf, sizeof(buf));
    s = buf;
    std::memcpy(kept, a, 16);
    *kept_fam = fam;
    if (how & 16) {
        s += "/" + std::to_string(in.u8() % (fam == 4 ? 40 : 140));
    }
    if (how & 32) {
        s = std::string(in.u8() % 3, ' ') + s + std::string(in.u8() % 3, '\t');
    }
    return s;
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);
    unsigned char kept[16] = {};
    int kept_fam = 0;

    std::string v;
    size_t n = 1 + in.u8() % 8;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            v += (in.u8() % 16) ? "," : ",,";
        }
        v += item_from(in, kept, &kept_fam);
    }

    std::vector<Rule> rules;
    bool ok = ref_list(v, &rules);

    FUZZ_CHECK(ak::validate_field("ips", v, nullptr) == ok || v.empty());

    unsigned char hash[AK_HASH_LEN] = { 1 };
    fuzz::Exact name(std::string("ips")), val(v);
    ak_str_t f = { name.c(), name.len }, fv = { val.c(), val.len };
    unsigned char blob[AK_RECORD_MAX];
    ak_record_err_t err;
    int len = ak_record_build(hash, &f, &fv, 1, blob, sizeof(blob), &err);

    if (v.empty()) {
        FUZZ_CHECK(len > 0);            /* empty: no rule */
        return 0;
    }

    if (!ok) {
        FUZZ_CHECK(len == -1);
        FUZZ_CHECK(std::strncmp(err.msg, "field \"ips\": ", 13) == 0);
        return 0;
    }

    /* a long list may not fit: then it says so */
    if (len == -1) {
        FUZZ_CHECK(std::strncmp(err.msg, "record too large", 16) == 0);
        return 0;
    }

    ak_record_t rec;
    FUZZ_CHECK(ak_record_view(hash, blob, static_cast<size_t>(len), &rec) == 0);
    FUZZ_CHECK(rec.has_ips == 1);

    /* addresses: the rules' own, neighbours (one bit flipped), any */
    for (int k = 0; k < 8 && !in.empty(); k++) {
        unsigned char a[16];
        uint8_t how = in.u8();
        int fam = (how & 1) ? 4 : 6;

        if (how & 2 && kept_fam) {
            std::memcpy(a, kept, 16);
            fam = kept_fam;
        } else if (how & 4 && !rules.empty()) {
            const Rule &r = rules[in.u8() % rules.size()];
            std::memset(a, 0, 16);
            if (r.family == 4) {
                if (how & 8) {
                    a[10] = a[11] = 0xff;       /* as v4-mapped v6 */
                    std::memcpy(a + 12, r.a, 4);
                    fam = 6;
                } else {
                    std::memcpy(a, r.a, 4);
                    fam = 4;
                }
            } else {
                std::memcpy(a, r.a, 16);
                fam = 6;
            }
        } else {
            for (auto &b : a) b = in.u8();
        }
        if (how & 16) {
            unsigned i = in.u8() % (fam == 4 ? 32 : 128);
            a[i / 8] ^= static_cast<unsigned char>(0x80 >> (i % 8));
        }
        if (how & 32) {
            fam = in.u8();              /* neither 4 nor 6, mostly */
        }

        int got = ak_record_ip_allowed(&rec, fam, a);
        FUZZ_CHECK(got == (ref_allowed(rules, fam, a) ? 1 : 0));
        /* the same as the matcher before it was made cheaper, on the same
           rules as it read them (blob version 1) */
        FUZZ_CHECK(got == match_old::ip_allowed_v2(&rec, fam, a));
    }

    FUZZ_CHECK(ak_record_ip_allowed(&rec, 4, nullptr) == 0);

    return 0;
}
