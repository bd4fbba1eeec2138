/* SPDX-License-Identifier: BSD-2-Clause */
/* Helpers for the record / match unit tests: build a blob from fields and
 * view it. */

#ifndef AK_RECORD_UTIL_H
#define AK_RECORD_UTIL_H

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ak_core.h"

namespace aktest {

using Fields = std::vector<std::pair<std::string, std::string>>;

/* a fixed hash whose default id is "abcdef012345" */
inline const unsigned char *test_hash()
{
    static unsigned char h[AK_HASH_LEN];
    static bool ready = false;
    if (!ready) {
        const unsigned char start[] = { 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45 };
        std::memcpy(h, start, sizeof(start));
        for (size_t i = sizeof(start); i < AK_HASH_LEN; i++) {
            h[i] = static_cast<unsigned char>(i * 7);
        }
        ready = true;
    }
    return h;
}

struct Built {
    int len = -1;
    std::vector<unsigned char> blob;
    ak_record_err_t err;
};

inline Built build(const Fields &f, size_t cap = AK_RECORD_MAX,
    const unsigned char *hash = test_hash())
{
    Built b;
    std::vector<ak_str_t> names, values;
    for (const auto &kv : f) {
        names.push_back({ kv.first.data(), kv.first.size() });
        values.push_back({ kv.second.data(), kv.second.size() });
    }
    b.blob.assign(cap, 0xee);
    std::memset(&b.err, 0x55, sizeof(b.err));
    b.len = ak_record_build(hash, names.data(), values.data(), f.size(),
                            b.blob.data(), cap, &b.err);
    if (b.len >= 0) {
        b.blob.resize(static_cast<size_t>(b.len));
    }
    return b;
}

/* a built and viewed record; not copyable (rec points into itself) */
struct Rec {
    Built b;
    int view_rc = -1;
    ak_record_t rec;

    Rec() = default;
    Rec(const Rec &) = delete;
    Rec &operator=(const Rec &) = delete;

    std::string id() const { return std::string(rec.id.data, rec.id.len); }
    std::string owner() const
    {
        return std::string(rec.owner.data, rec.owner.len);
    }
    std::string plan() const
    {
        return std::string(rec.plan.data, rec.plan.len);
    }
    std::string scopes() const
    {
        return std::string(rec.scopes.data, rec.scopes.len);
    }
};

inline std::unique_ptr<Rec> make(const Fields &f)
{
    auto r = std::make_unique<Rec>();
    r->b = build(f);
    std::memset(&r->rec, 0x77, sizeof(r->rec));
    if (r->b.len >= 0) {
        r->view_rc = ak_record_view(test_hash(), r->b.blob.data(),
                                    r->b.blob.size(), &r->rec);
    }
    return r;
}

} // namespace aktest

#endif
