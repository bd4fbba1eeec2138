/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: small shared helpers (errors, text, time, JSON).
 */

#ifndef APIKEYCTL_UTIL_HPP
#define APIKEYCTL_UTIL_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace apikeyctl {

/* Exit codes: the operator-facing contract. */
constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;   /* bug, no randomness, out of memory */
constexpr int kExitUsage = 2;      /* bad option, bad field value */
constexpr int kExitNotFound = 3;   /* no such key or id */
constexpr int kExitRedis = 4;      /* Redis unreachable or answered an error */
constexpr int kExitLeaked = 5;     /* leaked: live keys were found (revoked) */

/*
 * The one exception type of the tool.  Thrown anywhere, caught in main(),
 * which prints "apikeyctl: " + what() and exits with code().
 */
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &msg)
        : std::runtime_error(msg), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

[[noreturn]] void fail(int code, const std::string &msg);
[[noreturn]] inline void usage_error(const std::string &msg)
{
    fail(kExitUsage, msg);
}

/* "apikeyctl: msg" on stderr. */
void note(const std::string &msg);

/* A secret file: at most 4096 bytes, one trailing "\n" or "\r\n" removed,
 * must not be empty.  Errors are usage errors naming `what`. */
std::string read_secret_file(const std::string &path, const char *what);

/* The first line of stdin without its "\n" / "\r\n". */
std::string read_stdin_line();

/* Text for a terminal: control characters and non-ASCII as \xNN. */
std::string printable(const std::string &s);
/* printable(s) in double quotes, for messages. */
std::string quoted(const std::string &s);

/* A JSON string literal (invalid UTF-8 bytes become U+FFFD). */
std::string json_quote(const std::string &s);

bool is_hex64(const std::string &s);
bool has_control_chars(const std::string &s);

/* Decimal digits only, no sign, value <= max. */
bool parse_uint(const std::string &s, uint64_t max, uint64_t *out);

/* "90", "90s", "15m", "24h", "90d", "2w", "1h30m": seconds. */
bool parse_duration(const std::string &s, int64_t *secs);

/*
 * A point in time: unix seconds ("1798675200"), a duration from now
 * ("90d"), a date ("2027-01-31", 00:00:00 UTC) or an RFC 3339 time
 * ("2027-01-31T12:00:00Z", "...+02:00").  "never" and "0" give 0.
 */
bool parse_time(const std::string &s, int64_t now, int64_t *out,
                std::string *why);

/* "2027-01-31T12:00:00Z" */
std::string iso8601(int64_t t);

int64_t unix_now();

std::vector<std::string> split_ws(const std::string &s);
std::string trim(const std::string &s);

/* Overwrites the string's bytes before it is freed (keys, secrets). */
void wipe(std::string &s) noexcept;

/* A std::string that is wiped when it goes out of scope. */
class SecretString {
public:
    SecretString() = default;
    explicit SecretString(std::string s) : s_(std::move(s)) {}
    SecretString(const SecretString &) = delete;
    SecretString &operator=(const SecretString &) = delete;
    SecretString &operator=(std::string s)
    {
        wipe(s_);
        s_ = std::move(s);
        return *this;
    }
    ~SecretString() { wipe(s_); }
    const std::string &str() const noexcept { return s_; }
    bool empty() const noexcept { return s_.empty(); }

private:
    std::string s_;
};

} // namespace apikeyctl

#endif
