/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl's --redis URL (redis://, rediss://, unix:) and its TLS options:
 * what is accepted, what is refused, and that no message holds a password.
 */

#include <gtest/gtest.h>

#include <string>

#include "url.hpp"
#include "util.hpp"

using apikeyctl::Error;
using apikeyctl::RedisUrl;
using apikeyctl::TlsOptions;
using apikeyctl::check_tls_options;
using apikeyctl::parse_bool_env;
using apikeyctl::parse_redis_url;
using apikeyctl::tls_expected_name;

namespace {

/* the usage error a URL gets ("" when it is accepted) */
std::string url_error(const std::string &url)
{
    try {
        parse_redis_url(url);
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), apikeyctl::kExitUsage);
        return e.what();
    }
    return "";
}

std::string tls_error(const RedisUrl &u, const TlsOptions &t)
{
    try {
        check_tls_options(u, t);
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), apikeyctl::kExitUsage);
        return e.what();
    }
    return "";
}

TEST(CliUrl, PlainUrl)
{
    RedisUrl u = parse_redis_url("redis://10.0.0.5:6380/3");
    EXPECT_FALSE(u.tls);
    EXPECT_FALSE(u.unix_socket);
    EXPECT_EQ(u.host, "10.0.0.5");
    EXPECT_EQ(u.port, 6380);
    EXPECT_EQ(u.db, 3);
    EXPECT_EQ(u.where(), "10.0.0.5:6380");
}

TEST(CliUrl, TlsUrl)
{
    RedisUrl u = parse_redis_url("rediss://alice:s3cr%t/@@redis.example.com:6380/2");
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.host, "redis.example.com");
    EXPECT_EQ(u.port, 6380);
    EXPECT_EQ(u.db, 2);
    EXPECT_EQ(u.user, "alice");
    EXPECT_EQ(u.password, "s3cr%t/@");
    EXPECT_TRUE(u.has_password);
    EXPECT_EQ(u.where(), "redis.example.com:6380 (TLS)");
    EXPECT_EQ(u.where().find("s3cr"), std::string::npos);
}

TEST(CliUrl, TlsUrlDefaultsAndIpv6)
{
    RedisUrl u = parse_redis_url("rediss://cache.internal");
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.port, 6379);
    EXPECT_EQ(u.db, 0);

    u = parse_redis_url("rediss://[::1]:7000");
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.where(), "[::1]:7000 (TLS)");

    u = parse_redis_url("rediss://bob@h:1");
    EXPECT_EQ(u.user, "bob");
    EXPECT_FALSE(u.has_password);
}

TEST(CliUrl, UnixUrl)
{
    RedisUrl u = parse_redis_url("unix:/run/redis.sock?db=4");
    EXPECT_TRUE(u.unix_socket);
    EXPECT_FALSE(u.tls);
    EXPECT_EQ(u.path, "/run/redis.sock");
    EXPECT_EQ(u.db, 4);
}

TEST(CliUrl, Refused)
{
    for (const char *bad : {"http://h:1", "rediss:/h:1", "redis://", "rediss://",
                            "rediss://:0", "rediss://h:", "rediss://h:65536",
                            "rediss://h:1/x", "rediss://[::1", "rediss://::1:6379",
                            "redis://h\n:1", "unix:relative.sock", "REDISS://h:1"})
    {
        EXPECT_NE(url_error(bad), "") << bad;
    }
    EXPECT_NE(url_error("ftp://x").find("rediss://"), std::string::npos)
        << "the message names the forms";
}

TEST(CliUrl, PasswordNeverInMessages)
{
    for (const char *bad : {"rediss://u:hunter2@h:notaport",
                            "rediss://u:hunter2@h:1/notadb",
                            "rediss://u:hunter2@",
                            "rediss://hunter2:1/x", "rediss://u:hunter2@[h"})
    {
        std::string e = url_error(bad);
        EXPECT_NE(e, "") << bad;
        EXPECT_EQ(e.find("hunter2"), std::string::npos) << e;
    }
}

TEST(CliTls, OptionsNeedRediss)
{
    RedisUrl plain = parse_redis_url("redis://h:1");
    TlsOptions t;
    EXPECT_EQ(tls_error(plain, t), "") << "no TLS option: fine";

    t.ca = "/ca.pem";
    EXPECT_NE(tls_error(plain, t).find("--tls-ca is a TLS option"),
              std::string::npos);

    TlsOptions e;
    e.name = "x";
    e.name_from = "APIKEY_TLS_NAME";
    EXPECT_NE(tls_error(plain, e).find("APIKEY_TLS_NAME"), std::string::npos)
        << "names the variable it came from";

    TlsOptions i;
    i.insecure = true;
    EXPECT_NE(tls_error(parse_redis_url("unix:/s"), i), "");
}

TEST(CliTls, CertAndKeyTogether)
{
    RedisUrl u = parse_redis_url("rediss://h:1");
    TlsOptions t;
    t.cert = "/c.pem";
    EXPECT_NE(tls_error(u, t).find("--tls-key"), std::string::npos);
    t.cert.clear();
    t.key = "/k.pem";
    EXPECT_NE(tls_error(u, t).find("--tls-cert"), std::string::npos);
    t.cert = "/c.pem";
    EXPECT_EQ(tls_error(u, t), "");
}

TEST(CliTls, InsecureExcludesVerification)
{
    RedisUrl u = parse_redis_url("rediss://h:1");
    TlsOptions t;
    t.insecure = true;
    EXPECT_EQ(tls_error(u, t), "");
    t.ca = "/ca.pem";
    EXPECT_NE(tls_error(u, t), "");
    t.ca.clear();
    t.name = "h";
    EXPECT_EQ(tls_error(u, t), "") << "the name is still the SNI";
}

TEST(CliTls, Name)
{
    RedisUrl u = parse_redis_url("rediss://10.1.2.3:6380");
    TlsOptions t;
    EXPECT_EQ(tls_expected_name(u, t), "10.1.2.3");
    t.name = "redis.example.com";
    EXPECT_EQ(tls_error(u, t), "");
    EXPECT_EQ(tls_expected_name(u, t), "redis.example.com");
    t.name = "::1";
    EXPECT_EQ(tls_error(u, t), "") << "an address is a name too";
    for (const char *bad : {"a b", "-x", ".x", "h/x", "h\x01"}) {
        t.name = bad;
        EXPECT_NE(tls_error(u, t), "") << bad;
    }
}

TEST(CliTls, BoolEnv)
{
    for (const char *y : {"1", "yes", "true", "on"}) {
        EXPECT_TRUE(parse_bool_env(y, "V")) << y;
    }
    for (const char *n : {"", "0", "no", "false", "off"}) {
        EXPECT_FALSE(parse_bool_env(n, "V")) << n;
    }
    EXPECT_THROW(parse_bool_env("maybe", "V"), Error);
}

} // namespace
