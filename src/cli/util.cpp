/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: small shared helpers (errors, text, time, JSON).
 */

#include "util.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

namespace apikeyctl {

void fail(int code, const std::string &msg)
{
    throw Error(code, msg);
}


void note(const std::string &msg)
{
    std::cerr << "apikeyctl: " << msg << '\n';
}


std::string read_secret_file(const std::string &path, const char *what)
{
    if (path.empty()) {
        usage_error(std::string(what) + ": empty file name");
    }

    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        usage_error(std::string(what) + ": cannot open " + quoted(path)
                    + ": " + std::strerror(errno));
    }

    char buf[4097];
    size_t len = 0;

    for (;;) {
        ssize_t n = ::read(fd, buf + len, sizeof(buf) - len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            ::close(fd);
            OPENSSL_cleanse(buf, sizeof(buf));
            usage_error(std::string(what) + ": cannot read " + quoted(path)
                        + ": " + std::strerror(e));
        }
        if (n == 0) {
            break;
        }
        len += static_cast<size_t>(n);
        if (len == sizeof(buf)) {
            break;
        }
    }

    ::close(fd);

    if (len > 4096) {
        OPENSSL_cleanse(buf, sizeof(buf));
        usage_error(std::string(what) + ": " + quoted(path)
                    + " is larger than 4096 bytes");
    }

    if (len && buf[len - 1] == '\n') {
        len--;
        if (len && buf[len - 1] == '\r') {
            len--;
        }
    }

    if (len == 0) {
        usage_error(std::string(what) + ": " + quoted(path) + " is empty");
    }

    std::string s(buf, len);
    OPENSSL_cleanse(buf, sizeof(buf));
    return s;
}


std::string read_stdin_line()
{
    std::string line;
    int c;

    while ((c = std::getchar()) != EOF && c != '\n') {
        line.push_back(static_cast<char>(c));
        if (line.size() > 4096) {
            wipe(line);
            usage_error("the line read from stdin is too long");
        }
    }

    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }

    if (line.empty()) {
        usage_error("\"-\" given but stdin holds no key or id");
    }

    return line;
}


std::string printable(const std::string &s)
{
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());

    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out.push_back(static_cast<char>(c));
        } else if (c == '\\') {
            out += "\\\\";
        } else {
            out += "\\x";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }

    return out;
}


std::string quoted(const std::string &s)
{
    return "\"" + printable(s) + "\"";
}


/* Length of the valid UTF-8 sequence at p, or 0. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }

    if (left < n) {
        return 0;
    }

    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800)
        || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff))
    {
        return 0;
    }

    return n;
}


std::string json_quote(const std::string &s)
{
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() + 2);
    out.push_back('"');

    const unsigned char *p = reinterpret_cast<const unsigned char *>(s.data());
    size_t len = s.size();

    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];

        switch (c) {
        case '"':  out += "\\\""; i++; continue;
        case '\\': out += "\\\\"; i++; continue;
        case '\n': out += "\\n"; i++; continue;
        case '\r': out += "\\r"; i++; continue;
        case '\t': out += "\\t"; i++; continue;
        default: break;
        }

        if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
            i++;
            continue;
        }

        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) {
            out += "\\ufffd";
            i++;
            continue;
        }

        out.append(reinterpret_cast<const char *>(p + i), n);
        i += n;
    }

    out.push_back('"');
    return out;
}


bool is_hex64(const std::string &s)
{
    if (s.size() != 64) {
        return false;
    }

    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }

    return true;
}


bool has_control_chars(const std::string &s)
{
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}


bool parse_uint(const std::string &s, uint64_t max, uint64_t *out)
{
    if (s.empty() || s.size() > 20) {
        return false;
    }

    uint64_t v = 0;

    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        uint64_t d = static_cast<uint64_t>(c - '0');
        if (v > (max - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }

    *out = v;
    return true;
}


bool parse_duration(const std::string &s, int64_t *secs)
{
    /* at most 100 years, so that now + duration never overflows */
    const int64_t limit = 100LL * 366 * 86400;

    if (s.empty()) {
        return false;
    }

    uint64_t plain;
    if (parse_uint(s, static_cast<uint64_t>(limit), &plain)) {
        *secs = static_cast<int64_t>(plain);
        return true;
    }

    int64_t total = 0;
    size_t i = 0;

    while (i < s.size()) {
        size_t start = i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == start || i == s.size() || i - start > 12) {
            return false;
        }

        int64_t n = std::stoll(s.substr(start, i - start));
        int64_t unit;

        switch (s[i]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return false;
        }
        i++;

        if (n > limit / unit) {
            return false;
        }
        total += n * unit;
        if (total > limit) {
            return false;
        }
    }

    *secs = total;
    return true;
}


static bool digits(const std::string &s, size_t pos, size_t n, int *out)
{
    if (pos + n > s.size()) {
        return false;
    }
    int v = 0;
    for (size_t i = pos; i < pos + n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}


static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}


bool parse_time(const std::string &s, int64_t now, int64_t *out,
                std::string *why)
{
    if (s == "never" || s == "0") {
        *out = 0;
        return true;
    }

    uint64_t u;
    if (parse_uint(s, 253402300799ULL, &u)) {     /* up to 9999-12-31 */
        *out = static_cast<int64_t>(u);
        return true;
    }

    int64_t d;
    if (parse_duration(s, &d)) {
        *out = now + d;
        return true;
    }

    /* YYYY-MM-DD[THH:MM:SS(Z|+HH:MM|-HH:MM)] */

    int y, mo, da, h = 0, mi = 0, se = 0;

    if (s.size() < 10 || !digits(s, 0, 4, &y) || s[4] != '-'
        || !digits(s, 5, 2, &mo) || s[7] != '-' || !digits(s, 8, 2, &da))
    {
        *why = "expected unix seconds, a duration such as 90d, a date "
               "such as 2027-01-31 or a time such as 2027-01-31T12:00:00Z";
        return false;
    }

    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (y < 1970 || mo < 1 || mo > 12 || da < 1
        || da > mdays[mo - 1] + (mo == 2 && leap(y) ? 1 : 0))
    {
        *why = "no such date";
        return false;
    }

    int64_t offset = 0;

    if (s.size() > 10) {
        if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ')
            || !digits(s, 11, 2, &h) || s.size() < 19 || s[13] != ':'
            || !digits(s, 14, 2, &mi) || s[16] != ':'
            || !digits(s, 17, 2, &se))
        {
            *why = "expected a time such as 2027-01-31T12:00:00Z";
            return false;
        }

        if (h > 23 || mi > 59 || se > 59) {
            *why = "no such time of day";
            return false;
        }

        std::string tz = s.substr(19);
        int oh, om;

        if (tz == "Z" || tz == "z") {
            offset = 0;
        } else if (tz.size() == 6 && (tz[0] == '+' || tz[0] == '-')
                   && digits(tz, 1, 2, &oh) && tz[3] == ':'
                   && digits(tz, 4, 2, &om) && oh < 24 && om < 60)
        {
            offset = (oh * 3600 + om * 60) * (tz[0] == '+' ? 1 : -1);
        } else {
            *why = "a time needs its zone: Z or +HH:MM";
            return false;
        }
    }

    struct tm tm;
    std::memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = da;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;

    time_t t = timegm(&tm);
    if (t == static_cast<time_t>(-1)) {
        *why = "no such date";
        return false;
    }

    *out = static_cast<int64_t>(t) - offset;
    if (*out < 0) {
        *why = "before 1970";
        return false;
    }
    return true;
}


std::string iso8601(int64_t t)
{
    time_t tt = static_cast<time_t>(t);
    struct tm tm;
    char buf[64];

    if (gmtime_r(&tt, &tm) == nullptr
        || std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        return std::to_string(t);
    }

    return buf;
}


int64_t unix_now()
{
    return static_cast<int64_t>(std::time(nullptr));
}


std::vector<std::string> split_ws(const std::string &s)
{
    std::vector<std::string> out;
    size_t i = 0;

    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
            i++;
        }
        size_t start = i;
        while (i < s.size() && s[i] != ' ' && s[i] != '\t') {
            i++;
        }
        if (i > start) {
            out.push_back(s.substr(start, i - start));
        }
    }

    return out;
}


std::string trim(const std::string &s)
{
    size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t')) {
        b++;
    }
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) {
        e--;
    }
    return s.substr(b, e - b);
}


void wipe(std::string &s) noexcept
{
    if (!s.empty()) {
        OPENSSL_cleanse(&s[0], s.size());
    }
    s.clear();
}

} // namespace apikeyctl
