/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * record_old.h: the record view of src/core/record.cpp as it was before it
 * was made cheaper (a Reader through every byte, a memset of the view),
 * kept unchanged as the reference fuzz_record compares ak_record_view and
 * ak_record_view_lazy with, field for field, on every blob.
 */

#ifndef AK_FUZZ_RECORD_OLD_H
#define AK_FUZZ_RECORD_OLD_H

#include "ak_core.h"
#include "internal.hpp"

#include <cstring>

namespace record_old {

const char kEmpty[] = "";

constexpr uint64_t kUsPerSecond = 1000000ULL;

inline bool id_char(unsigned char c) noexcept
{
    return ak::is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
}

inline bool valid_id(const char *v, size_t len) noexcept
{
    if (v == nullptr || len == 0 || len > AK_ID_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!id_char(static_cast<unsigned char>(v[i]))) {
            return false;
        }
    }
    return true;
}

/* full false: a record without an id leaves rec->id empty (data NULL),
   ak_record_default_id() makes it when asked; the rules sections' bytes
   are left to the matchers (see ak_record_view_lazy) */
inline int
record_view_old(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec,
    bool full) noexcept
{
    using namespace ak;

    if (rec == nullptr) {
        return -1;
    }

    std::memset(rec, 0, sizeof(*rec));

    if (blob == nullptr || len < blob::kHeaderLen || len > AK_RECORD_MAX) {
        return -1;
    }

    Reader r(blob, len);
    uint8_t version = r.u8();
    uint8_t b1 = r.u8();
    uint8_t pres = r.u8();

    uint8_t status = b1 & blob::kStatusMask;
    uint8_t rp = (b1 & blob::kRateMask) >> blob::kRateShift;
    uint8_t qp = (b1 & blob::kQuotaMask) >> blob::kQuotaShift;

    if (version != blob::kVersion
        || status > AK_STATUS_DISABLED
        || (qp != AK_PERIOD_NONE && qp != AK_PERIOD_HOUR
            && qp != AK_PERIOD_DAY && qp != AK_PERIOD_MONTH)
        || ((pres & blob::kHasBurst) && rp == AK_PERIOD_NONE))
    {
        goto corrupt;
    }

    rec->status = status;
    rec->owner = { kEmpty, 0 };
    rec->plan = { kEmpty, 0 };
    rec->scopes = { kEmpty, 0 };

    if (pres & blob::kHasIps) {
        size_t n = r.u16();
        const unsigned char *p = r.bytes(n);
        if (p == nullptr || n == 0 || (full && !check_ips_section(p, n))) {
            goto corrupt;
        }
        rec->has_ips = 1;
        rec->ips = p;
        rec->ips_len = static_cast<uint16_t>(n);
    }

    if (pres & blob::kHasReferrers) {
        size_t n = r.u16();
        const unsigned char *p = r.bytes(n);
        if (p == nullptr || n == 0
            || (full && !check_referrers_section(p, n)))
        {
            goto corrupt;
        }
        rec->has_referrers = 1;
        rec->referrers = p;
        rec->referrers_len = static_cast<uint16_t>(n);
    }

    if (pres & blob::kHasId) {
        uint64_t n = r.varint();
        const unsigned char *p = r.bytes(n);
        if (p == nullptr
            || !valid_id(reinterpret_cast<const char *>(p),
                         static_cast<size_t>(n)))
        {
            goto corrupt;
        }
        rec->id = { reinterpret_cast<const char *>(p),
                    static_cast<size_t>(n) };
    } else {
        if (hash == nullptr) {
            goto corrupt;
        }
        if (full) {
            ak_record_default_id(hash, rec);
        }
    }

    {
        static const uint8_t bits[] = {
            blob::kHasOwner, blob::kHasPlan, blob::kHasScopes,
        };
        ak_str_t *dst[] = { &rec->owner, &rec->plan, &rec->scopes };
        const uint64_t max[] = { kTextMax, kTextMax, AK_RECORD_MAX };

        for (size_t i = 0; i < 3; i++) {
            if (pres & bits[i]) {
                uint64_t n = r.varint();
                const unsigned char *p = r.bytes(n);
                if (p == nullptr || n == 0 || n > max[i]) {
                    goto corrupt;
                }
                *dst[i] = { reinterpret_cast<const char *>(p),
                            static_cast<size_t>(n) };
            }
        }
    }

    if (pres & blob::kHasExpires) {
        uint64_t v = r.varint();
        if (v == 0 || v > kExpiresMax) {
            goto corrupt;
        }
        rec->expires_at = static_cast<int64_t>(v);
    }

    if (rp != AK_PERIOD_NONE) {
        uint64_t v = r.varint();
        if (v == 0 || v > kRateMax) {
            goto corrupt;
        }
        uint64_t period = rp == AK_PERIOD_SECOND ? kUsPerSecond
                          : rp == AK_PERIOD_MINUTE ? 60 * kUsPerSecond
                                                   : 3600 * kUsPerSecond;
        rec->rate_period = rp;
        rec->rate_n = static_cast<uint32_t>(v);
        rec->rate_interval_us = period / v ? period / v : 1;
    }

    if (pres & blob::kHasBurst) {
        uint64_t v = r.varint();
        if (v == 0 || v > kBurstMax) {
            goto corrupt;
        }
        rec->burst = static_cast<uint32_t>(v);
    }

    if (qp != AK_PERIOD_NONE) {
        uint64_t v = r.varint();
        if (v == 0 || v > kQuotaMax) {
            goto corrupt;
        }
        rec->quota_period = qp;
        rec->quota_n = v;
    }

    if (b1 & blob::kHasExt) {
        uint8_t ext = r.u8();
        if (ext == 0 || (ext & ~blob::kExtKnown)) {
            goto corrupt;
        }
        if (ext & blob::kExtIdentity) {
            const unsigned char *p = r.bytes(AK_HASH_LEN);
            if (p == nullptr) {
                goto corrupt;
            }
            rec->identity = p;
        }
        if (ext & blob::kExtAliasUntil) {
            uint64_t v = r.varint();
            if (v == 0 || v > kExpiresMax) {
                goto corrupt;
            }
            rec->alias_until = static_cast<int64_t>(v);
        }
        if (ext & blob::kExtRateScope) {
            uint64_t v = r.varint();
            if (rp == AK_PERIOD_NONE
                || (v != AK_RATE_SCOPE_NODE && v != AK_RATE_SCOPE_CLUSTER))
            {
                goto corrupt;
            }
            rec->rate_scope = static_cast<uint8_t>(v);
        }
    }

    if (!r.ok || r.off != len) {
        goto corrupt;
    }

    rec->blob = blob;
    rec->blob_len = len;
    return 0;

corrupt:
    std::memset(rec, 0, sizeof(*rec));
    return -1;
}

} // namespace record_old

#endif /* AK_FUZZ_RECORD_OLD_H */
