/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_cookie: Cookie header values (extract.cpp: ak_cookie_next,
 * ak_cookie_find, ak_cookie_strip_len / ak_cookie_strip), what keys.c
 * finds a cookie source with and strip.c rebuilds the header with.
 *
 * Input: a flag byte (bit 0: a name from the input, else "k"), the name
 * (str8), then the Cookie value.  Oracles, against a slow reference
 * written from the README's rules with std::string and strncmp:
 * - the cookies ak_cookie_next gives are the reference's, in order;
 * - ak_cookie_find gives the reference's value of the first "NAME=..."
 *   cookie, one pair of quotes removed;
 * - the first pass's verdict and length are the reference's; the second
 *   pass, into a heap buffer of exactly that length (ASan sees a byte
 *   more), writes exactly that many bytes and refuses one byte less;
 * - the rebuilt value holds no cookie NAME=..., and parsed again gives
 *   every other cookie of the input, in order, unchanged.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

/* views into the value (no allocation per cookie: the target stays fast) */
struct RefCookie {
    std::string_view pair, name, value;
    bool has_value;
};

/* spaces and ';' between cookies; a cookie runs to the next ';' */
FUZZ_ORACLE void ref_cookies(std::string_view s, std::vector<RefCookie> *out)
{
    size_t i = 0;

    out->clear();

    for (;;) {
        while (i < s.size() && (s[i] == ' ' || s[i] == ';')) i++;
        if (i >= s.size()) return;

        size_t semi = s.find(';', i);
        if (semi == std::string_view::npos) semi = s.size();

        RefCookie c;
        c.pair = s.substr(i, semi - i);
        size_t eq = c.pair.find('=');
        c.has_value = eq != std::string_view::npos;
        c.name = c.pair.substr(0, c.has_value ? eq : std::string_view::npos);
        c.value = std::string_view();
        if (c.has_value) {
            c.value = c.pair.substr(eq + 1);
            while (!c.value.empty() && c.value.back() == ' ') {
                c.value.remove_suffix(1);
            }
        }
        out->push_back(c);
        i = semi;
    }
}

/* strncmp's equality: n bytes, or up to a NUL both have */
FUZZ_ORACLE bool ref_named(const RefCookie &c, const std::string &name)
{
    if (!c.has_value || c.name.size() != name.size()) return false;
    for (size_t i = 0; i < name.size(); i++) {
        if (c.name[i] != name[i]) return false;
        if (name[i] == '\0') return true;
    }
    return true;
}

const unsigned char *u(const std::string &s)
{
    return reinterpret_cast<const unsigned char *>(s.data());
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);
    std::string name = in.flag() ? in.str8() : std::string("k");
    fuzz::Exact v(in.rest());
    const std::string value(v.c(), v.len);

    /* ---- the cookies, one by one */

    static std::vector<RefCookie> ref, again;
    static std::vector<const RefCookie *> kept;
    ref_cookies(value, &ref);
    size_t pos = 0, n = 0;
    ak_cookie_t c;

    while (ak_cookie_next(v.u(), v.len, &pos, &c)) {
        FUZZ_CHECK(n < ref.size());
        FUZZ_CHECK(c.pair + c.pair_len <= v.len);
        FUZZ_CHECK(pos == c.pair + c.pair_len);
        FUZZ_CHECK(std::string_view(value).substr(c.pair, c.pair_len)
                   == ref[n].pair);
        FUZZ_CHECK(std::string_view(value).substr(c.pair, c.name_len)
                   == ref[n].name);
        FUZZ_CHECK((c.has_value != 0) == ref[n].has_value);
        if (c.has_value) {
            FUZZ_CHECK(c.value + c.value_len <= v.len);
            FUZZ_CHECK(std::string_view(value).substr(c.value, c.value_len)
                       == ref[n].value);
        }
        n++;
    }
    FUZZ_CHECK(n == ref.size());
    FUZZ_CHECK(pos == v.len);

    /* ---- find */

    const RefCookie *first = nullptr;
    kept.clear();

    for (const auto &r : ref) {
        if (ref_named(r, name)) {
            if (first == nullptr) first = &r;
        } else {
            kept.push_back(&r);
        }
    }

    size_t off = 0, len = 0;
    int found = ak_cookie_find(v.u(), v.len, u(name), name.size(), &off, &len);

    FUZZ_CHECK(found == (first != nullptr));
    if (found) {
        std::string_view want = first->value;
        if (want.size() >= 2 && want.front() == '"' && want.back() == '"') {
            want = want.substr(1, want.size() - 2);
        }
        FUZZ_CHECK(off + len <= v.len);
        FUZZ_CHECK(std::string_view(value).substr(off, len) == want);
    }

    /* ---- strip: measure, then write into exactly that much */

    std::string rebuilt;
    for (const auto *r : kept) {
        if (!rebuilt.empty()) rebuilt += "; ";
        rebuilt += r->pair;
    }

    size_t out_len = 0;
    int rc = ak_cookie_strip_len(v.u(), v.len, u(name), name.size(), &out_len);

    if (first == nullptr) {
        FUZZ_CHECK(rc == AK_STRIP_NONE);
        return 0;
    }

    if (kept.empty()) {
        FUZZ_CHECK(rc == AK_STRIP_EMPTY);
        FUZZ_CHECK(out_len == 0);
        return 0;
    }

    FUZZ_CHECK(rc == AK_STRIP_REBUILT);
    FUZZ_CHECK(out_len == rebuilt.size());

    fuzz::Exact out(std::string(out_len, '\0'));
    unsigned char *o = reinterpret_cast<unsigned char *>(out.buf);

    FUZZ_CHECK(ak_cookie_strip(v.u(), v.len, u(name), name.size(), o,
                               out_len - 1) == 0);
    FUZZ_CHECK(ak_cookie_strip(v.u(), v.len, u(name), name.size(), o, out_len)
               == out_len);

    const std::string got(out.buf, out_len);
    FUZZ_CHECK(got == rebuilt);

    /* parsed again: no NAME=..., the others in order, unchanged */

    ref_cookies(got, &again);
    FUZZ_CHECK(again.size() == kept.size());
    for (size_t i = 0; i < again.size(); i++) {
        FUZZ_CHECK(!ref_named(again[i], name));
        FUZZ_CHECK(again[i].pair == kept[i]->pair);
    }
    FUZZ_CHECK(!ak_cookie_find(o, out_len, u(name), name.size(), &off, &len));

    return 0;
}
