/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_util.h: helpers shared by the libFuzzer targets in fuzz/.
 *
 * Input: a byte string cut into the pieces a target needs (integers, short
 * strings) by Input; what is left over is the "rest".  Every check that
 * fails calls FUZZ_CHECK's abort, which libFuzzer reports as a crash and
 * saves as an input to replay (fuzz/crashes/<target>/).
 */

#ifndef AK_FUZZ_UTIL_H
#define AK_FUZZ_UTIL_H

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#define FUZZ_CHECK(cond)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,      \
                         __LINE__, #cond);                                   \
            std::abort();                                                    \
        }                                                                    \
    } while (0)

/*
 * FUZZ_ORACLE marks the slow reference code of a target (checkers,
 * reference parsers): not instrumented for coverage, whose comparison
 * tracing would otherwise cost more than the code under test and guide
 * the fuzzer by the checker's branches instead of the module's.
 */
#if defined(__clang__) && __clang_major__ >= 13
#define FUZZ_ORACLE  __attribute__((no_sanitize("coverage")))
#else
#define FUZZ_ORACLE
#endif

namespace fuzz {

class Input {
public:
    Input(const uint8_t *data, size_t size) : p_(data), n_(size) {}

    size_t left() const { return n_; }
    bool empty() const { return n_ == 0; }

    uint8_t u8()
    {
        if (n_ == 0) {
            return 0;
        }
        n_--;
        return *p_++;
    }

    uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }

    uint32_t u32()
    {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
            v |= static_cast<uint32_t>(u8()) << (8 * i);
        }
        return v;
    }

    uint64_t u64()
    {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) {
            v |= static_cast<uint64_t>(u8()) << (8 * i);
        }
        return v;
    }

    bool flag() { return u8() & 1; }

    /* up to n bytes */
    std::string bytes(size_t n)
    {
        if (n > n_) {
            n = n_;
        }
        std::string s(reinterpret_cast<const char *>(p_), n);
        p_ += n;
        n_ -= n;
        return s;
    }

    /* a length byte, then that many bytes */
    std::string str8() { return bytes(u8()); }

    /* a 16-bit length (capped at max), then that many bytes */
    std::string str16(size_t max)
    {
        size_t n = u16();
        return bytes(n > max ? max : n);
    }

    /* a string up to the next NUL byte (dropped), or the rest */
    std::string until_nul()
    {
        const void *z = std::memchr(p_, 0, n_);
        size_t n = z ? static_cast<size_t>(static_cast<const uint8_t *>(z) - p_)
                     : n_;
        std::string s = bytes(n);
        if (z) {
            u8();
        }
        return s;
    }

    std::string rest() { return bytes(n_); }

private:
    const uint8_t *p_;
    size_t n_;
};

/* data in a heap buffer of exactly its size: a read past it is reported */
struct Exact {
    explicit Exact(const std::string &s)
        : len(s.size()),
          buf(static_cast<char *>(std::malloc(s.empty() ? 1 : s.size())))
    {
        FUZZ_CHECK(buf != nullptr);
        if (len) {
            std::memcpy(buf, s.data(), len);
        }
        p = buf;    /* never null, also for no bytes */
    }
    ~Exact() { std::free(buf); }
    Exact(const Exact &) = delete;
    Exact &operator=(const Exact &) = delete;

    const char *c() const { return p; }
    const unsigned char *u() const
    {
        return reinterpret_cast<const unsigned char *>(p);
    }

    size_t len;
    char *buf;
    char *p;
};

} // namespace fuzz

#endif
