/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Key sources (extract.cpp): Cookie values, Authorization Bearer values,
 * query strings, where a query is in a URI or a request line, and the
 * values rebuilt without the key by api_key_strip: the exact bytes the
 * glue produced before the parsing moved into the core.
 */

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ak_core.h"

namespace {

const unsigned char *u(const std::string &s)
{
    return reinterpret_cast<const unsigned char *>(s.data());
}

struct Cookie {
    std::string pair, name, value;
    bool has_value;
};

std::vector<Cookie> cookies(const std::string &s)
{
    std::vector<Cookie> out;
    ak_cookie_t c;
    size_t pos = 0;

    while (ak_cookie_next(u(s), s.size(), &pos, &c)) {
        EXPECT_LE(c.pair + c.pair_len, s.size());
        EXPECT_EQ(pos, c.pair + c.pair_len);
        out.push_back({s.substr(c.pair, c.pair_len),
                       s.substr(c.pair, c.name_len),
                       c.has_value ? s.substr(c.value, c.value_len) : "",
                       c.has_value != 0});
    }

    EXPECT_EQ(pos, s.size());
    return out;
}

/* the cookie's value, or "<none>" */
std::string find_cookie(const std::string &s, const std::string &name)
{
    size_t off = 99, len = 99;

    if (!ak_cookie_find(u(s), s.size(), u(name), name.size(), &off, &len)) {
        return "<none>";
    }

    EXPECT_LE(off + len, s.size());
    return s.substr(off, len);
}

/* "<none>", "<empty>" or the rebuilt value (both passes, exact sizes) */
std::string strip_cookie(const std::string &s, const std::string &name)
{
    size_t len = 12345;
    int rc = ak_cookie_strip_len(u(s), s.size(), u(name), name.size(), &len);

    if (rc == AK_STRIP_NONE) {
        return "<none>";
    }

    if (rc == AK_STRIP_EMPTY) {
        EXPECT_EQ(len, 0u);
        return "<empty>";
    }

    EXPECT_EQ(rc, AK_STRIP_REBUILT);
    EXPECT_GT(len, 0u);

    /* one byte short: refused */
    std::string small(len - 1, '#');
    EXPECT_EQ(ak_cookie_strip(u(s), s.size(), u(name), name.size(),
                              reinterpret_cast<unsigned char *>(&small[0]),
                              small.size()),
              0u);

    std::string out(len + 4, '#');
    size_t n = ak_cookie_strip(u(s), s.size(), u(name), name.size(),
                               reinterpret_cast<unsigned char *>(&out[0]),
                               len);
    EXPECT_EQ(n, len);
    EXPECT_EQ(out.substr(len), "####") << "written past the measured length";
    return out.substr(0, n);
}

std::string strip_args(const std::string &s, size_t start, size_t end,
    const std::string &name)
{
    size_t len = 12345;
    int rc = ak_args_strip_len(u(s), s.size(), start, end, u(name),
                               name.size(), &len);

    if (rc == AK_STRIP_NONE) {
        return "<none>";
    }

    EXPECT_EQ(rc, AK_STRIP_REBUILT);
    EXPECT_LE(len, s.size());

    std::string out(len + 4, '#');
    size_t n = ak_args_strip(u(s), s.size(), start, end, u(name), name.size(),
                             reinterpret_cast<unsigned char *>(&out[0]), len);

    if (len == 0) {
        EXPECT_EQ(n, 0u);
    } else {
        EXPECT_EQ(n, len);
        if (len > 1) {
            EXPECT_EQ(ak_args_strip(u(s), s.size(), start, end, u(name),
                                    name.size(),
                                    reinterpret_cast<unsigned char *>(&out[0]),
                                    len - 1),
                      0u);
        }
    }
    EXPECT_EQ(out.substr(len), "####");
    return out.substr(0, len);
}

std::string strip_whole(const std::string &s, const std::string &name)
{
    return strip_args(s, 0, s.size(), name);
}

/* "start,end" of the query, or "<none>" */
std::string bounds(const std::string &s, int request_line)
{
    size_t start = 0, end = 0;

    if (!ak_query_bounds(u(s), s.size(), request_line, &start, &end)) {
        return "<none>";
    }

    EXPECT_LE(start, end);
    EXPECT_LE(end, s.size());
    return s.substr(start, end - start);
}

std::string bearer(const std::string &s)
{
    size_t off = 99, len = 99;

    if (!ak_auth_bearer(u(s), s.size(), &off, &len)) {
        return "<none>";
    }

    EXPECT_LE(off + len, s.size());
    return s.substr(off, len);
}

std::string scheme(const std::string &sch, const std::string &s)
{
    size_t off = 99, len = 99;

    if (!ak_auth_scheme(u(s), s.size(), u(sch), sch.size(), &off, &len)) {
        return "<none>";
    }

    EXPECT_LE(off + len, s.size());
    return s.substr(off, len);
}

std::string b64(const std::string &s)
{
    unsigned char out[64];
    size_t len = 99;

    if (!ak_base64_decode(u(s), s.size(), out, sizeof(out), &len)) {
        return "<bad>";
    }

    EXPECT_LE(len, s.size() / 4 * 3);
    return std::string(reinterpret_cast<char *>(out), len);
}

std::string basic(const std::string &s, int password)
{
    unsigned char buf[64];
    size_t off = 99, len = 99;

    int rc = ak_auth_basic(u(s), s.size(), password, buf, sizeof(buf), &off,
                           &len);
    if (rc == 0) {
        return "<none>";
    }
    if (rc < 0) {
        return "<malformed>";
    }

    EXPECT_LE(off + len, sizeof(buf));
    return std::string(reinterpret_cast<char *>(buf) + off, len);
}

} // namespace


TEST(Extract, CookieNext)
{
    auto c = cookies("a=1; b=2");
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].pair, "a=1");
    EXPECT_EQ(c[0].name, "a");
    EXPECT_EQ(c[0].value, "1");
    EXPECT_EQ(c[1].pair, "b=2");

    /* separators: any run of spaces and ';'; trailing spaces stay in the
     * pair, leave the value; the name is not trimmed */
    c = cookies(" ;; a = 1  ;b;c=;=x;  ");
    ASSERT_EQ(c.size(), 4u);
    EXPECT_EQ(c[0].pair, "a = 1  ");
    EXPECT_EQ(c[0].name, "a ");
    EXPECT_EQ(c[0].value, " 1");
    EXPECT_EQ(c[1].pair, "b");
    EXPECT_FALSE(c[1].has_value);
    EXPECT_EQ(c[2].name, "c");
    EXPECT_TRUE(c[2].has_value);
    EXPECT_EQ(c[2].value, "");
    EXPECT_EQ(c[3].name, "");
    EXPECT_EQ(c[3].value, "x");

    /* the first '=' splits; the others are the value's */
    c = cookies("k=a=b");
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].value, "a=b");

    EXPECT_TRUE(cookies("").empty());
    EXPECT_TRUE(cookies(" ; ;").empty());

    size_t pos = 0;
    ak_cookie_t ck;
    EXPECT_EQ(ak_cookie_next(nullptr, 0, &pos, &ck), 0);
    EXPECT_EQ(ak_cookie_next(nullptr, 3, &pos, &ck), 0);
    EXPECT_EQ(ak_cookie_next(u("a"), 1, nullptr, &ck), 0);
}

TEST(Extract, CookieFind)
{
    EXPECT_EQ(find_cookie("a=1; api_key=K1; b=2", "api_key"), "K1");
    EXPECT_EQ(find_cookie("api_key=K1; api_key=K2", "api_key"), "K1");
    /* names with case; a cookie without '=' is not one */
    EXPECT_EQ(find_cookie("API_KEY=K1", "api_key"), "<none>");
    EXPECT_EQ(find_cookie("api_key; api_key=K2", "api_key"), "K2");
    /* a longer or shorter name is another cookie */
    EXPECT_EQ(find_cookie("api_key2=x; xapi_key=y", "api_key"), "<none>");
    /* quotes: one pair removed, both ends needed */
    EXPECT_EQ(find_cookie("k=\"K1\"", "k"), "K1");
    EXPECT_EQ(find_cookie("k=\"\"", "k"), "");
    EXPECT_EQ(find_cookie("k=\"", "k"), "\"");
    EXPECT_EQ(find_cookie("k=\"K1", "k"), "\"K1");
    EXPECT_EQ(find_cookie("k=\"\"K\"\"", "k"), "\"K\"");
    /* trailing spaces dropped, leading kept */
    EXPECT_EQ(find_cookie("k= K1  ; x=1", "k"), " K1");
    EXPECT_EQ(find_cookie("k=", "k"), "");
    EXPECT_EQ(find_cookie("", "k"), "<none>");
    /* NUL bytes are bytes */
    EXPECT_EQ(find_cookie(std::string("a\0b=1; k=2", 10), "k"), "2");
    EXPECT_EQ(find_cookie(std::string("k=\0x", 4), "k"),
              std::string("\0x", 2));
}

TEST(Extract, CookieStrip)
{
    EXPECT_EQ(strip_cookie("a=1; b=2", "k"), "<none>");
    EXPECT_EQ(strip_cookie("k=K", "k"), "<empty>");
    EXPECT_EQ(strip_cookie("k=K; k=L;;", "k"), "<empty>");
    EXPECT_EQ(strip_cookie("a=1; k=K; b=2", "k"), "a=1; b=2");
    /* re-joined with "; " whatever separated them: may grow */
    EXPECT_EQ(strip_cookie("a=1;k=K;b=2;c=3", "k"), "a=1; b=2; c=3");
    EXPECT_EQ(strip_cookie("a=1;b=2;k=K", "k"), "a=1; b=2");
    /* a pair keeps its trailing spaces; a name-only cookie is kept */
    EXPECT_EQ(strip_cookie("a=1 ;k=K; k ;", "k"), "a=1 ; k ");
    EXPECT_EQ(strip_cookie("K=1; k=2", "k"), "K=1");
    /* the case of t/50-cookie-overflow.t: many short separators */
    std::string v, want;
    for (int i = 0; i < 100; i++) {
        v += "a=1;";
        want += (i ? "; " : "");
        want += "a=1";
    }
    v += "k=K";
    EXPECT_EQ(strip_cookie(v, "k"), want);
    EXPECT_GT(want.size(), v.size());
}

TEST(Extract, Bearer)
{
    EXPECT_EQ(bearer("Bearer K1"), "K1");
    EXPECT_EQ(bearer("bEaReR K1"), "K1");
    EXPECT_EQ(bearer("Bearer    K1   "), "K1");
    EXPECT_EQ(bearer("Bearer "), "");
    EXPECT_EQ(bearer("Bearer      "), "");
    /* one space is part of the scheme: a tab is the credential's */
    EXPECT_EQ(bearer("Bearer \tK1"), "\tK1");
    EXPECT_EQ(bearer("Bearer\tK1"), "<none>");
    EXPECT_EQ(bearer("Bearer"), "<none>");
    EXPECT_EQ(bearer("BearerK1"), "<none>");
    EXPECT_EQ(bearer(" Bearer K1"), "<none>");
    EXPECT_EQ(bearer("Basic a2V5"), "<none>");
    EXPECT_EQ(bearer(""), "<none>");
    EXPECT_EQ(bearer("Bearer K1 K2"), "K1 K2");
    /* not a letter: no case folding ('[' is '{' without 0x20) */
    EXPECT_EQ(bearer("Be@rer K1"), "<none>");

    EXPECT_EQ(ak_auth_is_bearer(u("BEARER x"), 8), 1);
    EXPECT_EQ(ak_auth_is_bearer(nullptr, 0), 0);
    EXPECT_EQ(ak_auth_is_bearer(nullptr, 9), 0);
}

TEST(Extract, AuthScheme)
{
    EXPECT_EQ(scheme("ApiKey", "ApiKey K1"), "K1");
    EXPECT_EQ(scheme("ApiKey", "apikey K1"), "K1");
    EXPECT_EQ(scheme("apikey", "APIKEY    K1  "), "K1");
    EXPECT_EQ(scheme("Token", "Token K1"), "K1");
    EXPECT_EQ(scheme("Token", "Tokens K1"), "<none>");
    EXPECT_EQ(scheme("Token", "TokenK1"), "<none>");
    EXPECT_EQ(scheme("Token", "Token"), "<none>");
    EXPECT_EQ(scheme("Token", "Token "), "");
    EXPECT_EQ(scheme("Key", "Bearer K1"), "<none>");
    EXPECT_EQ(scheme("Key", "Key\tK1"), "<none>");
    EXPECT_EQ(scheme("", "K1 K2"), "<none>");
    EXPECT_EQ(ak_auth_is_scheme(u("Key K"), 5, nullptr, 3), 0);
    EXPECT_EQ(ak_auth_is_scheme(u("Key K"), 5, u("KEY"), 3), 1);
}

TEST(Extract, Base64)
{
    EXPECT_EQ(b64(""), "");
    EXPECT_EQ(b64("YQ=="), "a");
    EXPECT_EQ(b64("YWI="), "ab");
    EXPECT_EQ(b64("YWJj"), "abc");
    EXPECT_EQ(b64("azE6"), "k1:");
    EXPECT_EQ(b64("+/+/"), "\xfb\xff\xbf");
    EXPECT_EQ(b64("YQ"), "<bad>");        /* unpadded */
    EXPECT_EQ(b64("YQ="), "<bad>");
    EXPECT_EQ(b64("Y==="), "<bad>");
    EXPECT_EQ(b64("YR=="), "<bad>");      /* bits left over */
    EXPECT_EQ(b64("YWJ="), "<bad>");
    EXPECT_EQ(b64("Y=Q="), "<bad>");      /* padding inside */
    EXPECT_EQ(b64("YQ==YWJj"), "<bad>");
    EXPECT_EQ(b64("YW-j"), "<bad>");      /* url alphabet */
    EXPECT_EQ(b64("YW j"), "<bad>");

    unsigned char out[2];
    size_t len;
    EXPECT_EQ(ak_base64_decode(u("YWJj"), 4, out, sizeof(out), &len), 0);
    EXPECT_EQ(ak_base64_decode(u("YWI="), 4, out, sizeof(out), &len), 1);
    EXPECT_EQ(len, 2u);
    EXPECT_EQ(ak_base64_decode(u("YWI="), 4, out, 2, nullptr), 0);
}

TEST(Extract, Basic)
{
    /* "k1:" "k1:pw" ":k1" "k1" "a:b:c" */
    EXPECT_EQ(basic("Basic azE6", 0), "k1");
    EXPECT_EQ(basic("basic   azE6 ", 0), "k1");
    EXPECT_EQ(basic("Basic azE6cHc=", 0), "k1");
    EXPECT_EQ(basic("Basic azE6cHc=", 1), "pw");
    EXPECT_EQ(basic("Basic azE6", 1), "");
    EXPECT_EQ(basic("Basic Omsx", 1), "k1");
    EXPECT_EQ(basic("Basic Omsx", 0), "");
    EXPECT_EQ(basic("Basic YTpiOmM=", 0), "a");
    EXPECT_EQ(basic("Basic YTpiOmM=", 1), "b:c");
    EXPECT_EQ(basic("Basic azE=", 0), "<malformed>");    /* no ':' */
    EXPECT_EQ(basic("Basic ", 0), "<malformed>");
    EXPECT_EQ(basic("Basic azE6!", 0), "<malformed>");
    EXPECT_EQ(basic("Basic azE", 0), "<malformed>");
    EXPECT_EQ(basic("Bearer azE6", 0), "<none>");
    EXPECT_EQ(basic("Basic", 0), "<none>");

    unsigned char buf[2];
    size_t off, len;
    EXPECT_EQ(ak_auth_basic(u("Basic azE6"), 10, 0, buf, sizeof(buf), &off,
                            &len), -1);
}

TEST(Extract, ArgsHas)
{
    auto has = [](const std::string &s, const std::string &n) {
        return ak_args_has(u(s), s.size(), u(n), n.size());
    };

    EXPECT_EQ(has("api_key=K", "api_key"), 1);
    EXPECT_EQ(has("a=1&API_KEY=K", "api_key"), 1);
    EXPECT_EQ(has("a=1&api_key", "api_key"), 1);
    EXPECT_EQ(has("a=1&api_key&", "api_key"), 1);
    EXPECT_EQ(has("api_keyx=1&xapi_key=1", "api_key"), 0);
    EXPECT_EQ(has("a=api_key", "api_key"), 0);
    EXPECT_EQ(has("", "api_key"), 0);
    EXPECT_EQ(has("&&", "api_key"), 0);
}

TEST(Extract, QueryBounds)
{
    EXPECT_EQ(bounds("/p?a=1&b=2", 0), "a=1&b=2");
    EXPECT_EQ(bounds("/p?", 0), "");
    EXPECT_EQ(bounds("/p", 0), "<none>");
    EXPECT_EQ(bounds("/p?a?b", 0), "a?b");

    EXPECT_EQ(bounds("GET /p?a=1 HTTP/1.1", 1), "a=1");
    EXPECT_EQ(bounds("GET /p?a=1", 1), "a=1");          /* HTTP/0.9 */
    EXPECT_EQ(bounds("GET /p?a=1 b HTTP/1.0", 1), "a=1 b");
    EXPECT_EQ(bounds("GET /p?a=1 HTTPS/1.1", 1), "a=1 HTTPS/1.1");
    EXPECT_EQ(bounds("GET   /p?a HTTP/", 1), "a");
    EXPECT_EQ(bounds("GET /p HTTP/1.1", 1), "<none>");
    EXPECT_EQ(bounds("GET?x /p", 1), "<none>");          /* before the URI */
    EXPECT_EQ(bounds("GET", 1), "<none>");
    EXPECT_EQ(bounds("GET /? HTTP/1.1", 1), "");

    size_t s, e;
    EXPECT_EQ(ak_query_bounds(nullptr, 0, 0, &s, &e), 0);
}

TEST(Extract, ArgsStrip)
{
    EXPECT_EQ(strip_whole("a=1&b=2", "api_key"), "<none>");
    EXPECT_EQ(strip_whole("api_key=K", "api_key"), "");
    EXPECT_EQ(strip_whole("a=1&api_key=K&b=2", "api_key"), "a=1&b=2");
    EXPECT_EQ(strip_whole("API_Key=K&a=1&api_key&b", "api_key"), "a=1&b");
    /* with the key there, empty arguments go too */
    EXPECT_EQ(strip_whole("&a=1&&api_key=K&&b=2&", "api_key"), "a=1&b=2");
    EXPECT_EQ(strip_whole("&&a=1&&", "api_key"), "<none>");
    /* another name that contains it is kept */
    EXPECT_EQ(strip_whole("api_key2=1&api_key=K", "api_key"), "api_key2=1");

    /* in a URI: the '?' goes when nothing is left */
    std::string uri = "/p?api_key=K";
    EXPECT_EQ(strip_args(uri, 3, uri.size(), "api_key"), "/p");
    uri = "/p?a=1&api_key=K";
    EXPECT_EQ(strip_args(uri, 3, uri.size(), "api_key"), "/p?a=1");

    /* in a request line: what follows the query stays */
    std::string line = "GET /p?api_key=K&a=1 HTTP/1.1";
    EXPECT_EQ(strip_args(line, 7, 20, "api_key"), "GET /p?a=1 HTTP/1.1");
    line = "GET /p?api_key=K HTTP/1.1";
    EXPECT_EQ(strip_args(line, 7, 16, "api_key"), "GET /p HTTP/1.1");

    /* empty or bad ranges: nothing to do */
    EXPECT_EQ(strip_args("api_key=K", 3, 3, "api_key"), "<none>");
    EXPECT_EQ(strip_args("api_key=K", 0, 10, "api_key"), "<none>");
    EXPECT_EQ(strip_args("api_key=K", 5, 2, "api_key"), "<none>");
}
