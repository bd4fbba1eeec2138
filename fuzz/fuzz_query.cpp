/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_query: query strings (extract.cpp: ak_query_bounds, ak_args_has,
 * ak_args_strip_len / ak_args_strip) and the percent-decoding of a query
 * source's value (keyfmt.cpp: ak_percent_decode), what strip.c rebuilds
 * r->args, r->unparsed_uri and r->request_line with and keys.c decodes a
 * query key with.
 *
 * Input: a mode byte (bits 0-1: 0 the whole string is the arguments
 * ($args), 1 a URI, 2 a request line; bit 2: a name from the input, else
 * "api_key"), the name (str8; an empty one is "api_key", as a
 * configuration has no empty name), then the string.  Oracles, against a
 * slow reference built on std::string::find and strncasecmp:
 * - where the arguments are (after the URI's '?'; in a request line after
 *   the first space's '?', up to " HTTP/...");
 * - ak_args_has says whether an argument "NAME" / "NAME=..." is there;
 * - the first pass's verdict and length are the reference's; the second
 *   pass, into a heap buffer of exactly that length, writes exactly that
 *   and refuses one byte less; the result is the reference's: the part
 *   before and after the arguments unchanged, no argument NAME left, every
 *   other non-empty argument in order, the '?' gone when none is left;
 * - differential percent-decoding of every argument's value against a
 *   slow decoder (with the key's cap and with room for all), and a
 *   round trip: what decoded, encoded again, decodes to the same bytes.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <cstring>
#include <string>
#include <strings.h>
#include <vector>

namespace {

const unsigned char *u(const std::string &s)
{
    return reinterpret_cast<const unsigned char *>(s.data());
}

FUZZ_ORACLE bool ref_named(const std::string &arg, const std::string &name)
{
    std::string n = arg.substr(0, arg.find('='));
    return n.size() == name.size()
           && ::strncasecmp(n.c_str(), name.c_str(), name.size()) == 0;
}

FUZZ_ORACLE std::vector<std::string> ref_split(const std::string &s)
{
    std::vector<std::string> out;
    size_t i = 0;
    for (;;) {
        size_t a = s.find('&', i);
        out.push_back(s.substr(i, a == std::string::npos ? std::string::npos
                                                         : a - i));
        if (a == std::string::npos) return out;
        i = a + 1;
    }
}

FUZZ_ORACLE bool ref_bounds(const std::string &s, int mode, size_t *start, size_t *end)
{
    size_t q;

    if (mode == 1) {
        q = s.find('?');
    } else {
        size_t sp = s.find(' ');
        q = sp == std::string::npos ? sp : s.find('?', sp);
    }
    if (q == std::string::npos) return false;

    *start = q + 1;
    *end = s.size();

    if (mode == 2) {
        size_t sp = s.rfind(' ');
        if (sp != std::string::npos && sp > q
            && s.size() - (sp + 1) >= 5 && s.compare(sp + 1, 5, "HTTP/") == 0)
        {
            *end = sp;
        }
    }
    return true;
}

FUZZ_ORACLE int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

FUZZ_ORACLE bool ref_decode(const std::string &in, size_t cap, std::string *out)
{
    out->clear();
    for (size_t i = 0; i < in.size(); i++) {
        unsigned char c = static_cast<unsigned char>(in[i]);
        if (c == '%') {
            if (i + 2 >= in.size()) return false;
            int h = hexv(static_cast<unsigned char>(in[i + 1]));
            int l = hexv(static_cast<unsigned char>(in[i + 2]));
            if (h < 0 || l < 0) return false;
            c = static_cast<unsigned char>(h * 16 + l);
            i += 2;
        }
        if (out->size() == cap) return false;
        out->push_back(static_cast<char>(c));
    }
    return true;
}

/* ak_percent_decode into a heap buffer of exactly cap bytes */
bool decode(const std::string &in, size_t cap, std::string *out)
{
    fuzz::Exact buf(std::string(cap, '\0'));
    size_t n = 99999;

    if (!ak_percent_decode(u(in), in.size(),
                           reinterpret_cast<unsigned char *>(buf.buf), cap, &n))
    {
        return false;
    }
    FUZZ_CHECK(n <= cap);
    out->assign(buf.buf, n);
    return true;
}

FUZZ_ORACLE void check_decode(const std::string &value)
{
    std::string ref, got;

    for (size_t cap : {static_cast<size_t>(AK_KEY_MAX_LEN), value.size()}) {
        bool r = ref_decode(value, cap, &ref);
        bool g = decode(value, cap, &got);
        FUZZ_CHECK(r == g);
        if (!r) continue;
        FUZZ_CHECK(got == ref);

        /* encoded again (letters as they are, the rest as %XX in either
         * case), it decodes to the same bytes */
        std::string enc;
        static const char hx[] = "0123456789ABCDEF0123456789abcdef";
        for (size_t i = 0; i < got.size(); i++) {
            unsigned char c = static_cast<unsigned char>(got[i]);
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
                enc.push_back(static_cast<char>(c));
            } else {
                int off = (i & 1) ? 16 : 0;
                enc.push_back('%');
                enc.push_back(hx[off + (c >> 4)]);
                enc.push_back(hx[off + (c & 15)]);
            }
        }
        std::string back;
        FUZZ_CHECK(decode(enc, got.size(), &back));
        FUZZ_CHECK(back == got);
    }
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);
    uint8_t m = in.u8();
    int mode = (m & 3) == 3 ? 0 : (m & 3);
    std::string name = (m & 4) ? in.str8() : std::string();
    if (name.empty()) name = "api_key";

    fuzz::Exact v(in.rest());
    const std::string s(v.c(), v.len);

    /* ---- where the arguments are */

    size_t start = 0, end = s.size();
    size_t rs = 0, re = 0;

    if (mode != 0) {
        bool r = ref_bounds(s, mode, &rs, &re);
        int got = ak_query_bounds(v.u(), v.len, mode == 2, &start, &end);
        FUZZ_CHECK(got == (r ? 1 : 0));
        if (!got) return 0;
        FUZZ_CHECK(start == rs && end == re);
    }

    const std::string args = s.substr(start, end - start);
    std::vector<std::string> all = ref_split(args);

    /* ---- has, on the arguments alone */

    bool present = false;
    for (const auto &a : all) {
        if (ref_named(a, name)) present = true;
    }
    /* ak_args_has does not look at an empty last argument: no name is empty */
    FUZZ_CHECK(ak_args_has(u(args), args.size(), u(name), name.size())
               == (present ? 1 : 0));

    /* ---- the values, percent-decoded */

    for (const auto &a : all) {
        size_t eq = a.find('=');
        if (eq != std::string::npos) check_decode(a.substr(eq + 1));
    }

    /* ---- strip */

    size_t out_len = 0;
    int rc = ak_args_strip_len(v.u(), v.len, start, end, u(name), name.size(),
                               &out_len);

    if (start >= end || !present) {
        FUZZ_CHECK(rc == AK_STRIP_NONE);
        return 0;
    }
    FUZZ_CHECK(rc == AK_STRIP_REBUILT);

    std::string kept;
    std::vector<std::string> kept_args;
    for (const auto &a : all) {
        if (!a.empty() && !ref_named(a, name)) {
            if (!kept.empty()) kept += '&';
            kept += a;
            kept_args.push_back(a);
        }
    }
    std::string prefix = s.substr(0, start);
    if (kept.empty() && start > 0 && prefix.back() == '?') prefix.pop_back();
    const std::string want = prefix + kept + s.substr(end);

    FUZZ_CHECK(out_len == want.size());
    FUZZ_CHECK(out_len <= v.len);

    fuzz::Exact out(std::string(out_len, '\0'));
    unsigned char *o = reinterpret_cast<unsigned char *>(out.buf);

    if (out_len > 0) {
        FUZZ_CHECK(ak_args_strip(v.u(), v.len, start, end, u(name),
                                 name.size(), o, out_len - 1) == 0);
    }
    size_t n = ak_args_strip(v.u(), v.len, start, end, u(name), name.size(),
                             o, out_len);
    FUZZ_CHECK(n == out_len);

    const std::string got(out.buf, out_len);
    FUZZ_CHECK(got == want);

    /* the rebuilt arguments: none named NAME, the others in order */
    const std::string got_args = got.substr(prefix.size(), kept.size());
    FUZZ_CHECK(!ak_args_has(u(got_args), got_args.size(), u(name),
                            name.size()));
    if (!kept.empty()) {
        FUZZ_CHECK(ref_split(got_args) == kept_args);
    }

    return 0;
}
