/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * record.cpp: Redis HASH fields -> compact blob (ak_record_build), blob ->
 * view (ak_record_view), scopes, and one-field validation for the CLI.
 *
 * The blob layout is described in internal.hpp.
 */

#include "ak_core.h"
#include "akcore.hpp"
#include "internal.hpp"

#include <cstring>

namespace ak {

const char *const kFieldNames[F_COUNT] = {
    "id", "owner", "plan", "status", "expires_at", "scopes", "ips",
    "referrers", "rate", "burst", "quota", "rate_scope", "identity",
    "alias_until",
};

namespace {

const char kEmpty[] = "";

constexpr uint64_t kUsPerSecond = 1000000ULL;

/* is_alnum() spelled out: constexpr, for kIdChars below */
constexpr bool id_char(unsigned char c) noexcept
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == ':'
           || c == '-';
}

inline bool scope_char(unsigned char c) noexcept
{
    return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '/'
           || c == '*' || c == '-';
}

inline bool is_lower_hex(unsigned char c) noexcept
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

inline bool blank(unsigned char c) noexcept
{
    return c == ' ' || c == '\t';
}

/* id_char() of each byte: one look-up per character (the request path
   checks the id of every record that has one) */
struct IdChars {
    bool ok[256];

    constexpr IdChars() noexcept : ok()
    {
        for (unsigned c = 0; c < 256; c++) {
            ok[c] = id_char(static_cast<unsigned char>(c));
        }
    }
};

constexpr IdChars kIdChars;

bool valid_id(const char *v, size_t len) noexcept
{
    if (v == nullptr || len == 0 || len > AK_ID_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!kIdChars.ok[static_cast<unsigned char>(v[i])]) {
            return false;
        }
    }
    return true;
}

/* 1..max_digits decimal digits, nothing else */
bool parse_uint(const char *v, size_t len, size_t max_digits, uint64_t *out)
    noexcept
{
    if (len == 0 || len > max_digits) {
        return false;
    }
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = static_cast<unsigned char>(v[i]);
        if (!is_digit(c)) {
            return false;
        }
        n = n * 10 + (c - '0');     /* <= 19 digits cannot overflow */
    }
    *out = n;
    return true;
}

bool word_is(const char *v, size_t len, const char *w) noexcept
{
    size_t n = std::strlen(w);
    return len == n && eq_nocase(v, w, n);
}

/*
 * "N/unit": N in 1..max, unit one of units[] (case-insensitive), mapped to
 * periods[].  Returns 1 ok, 0 bad form, -1 N out of range.
 */
int parse_per(const char *v, size_t len, uint64_t max,
    const char *const *units, const uint8_t *periods, size_t nunits,
    uint64_t *n, uint8_t *period) noexcept
{
    const char *slash = static_cast<const char *>(std::memchr(v, '/', len));
    if (slash == nullptr) {
        return 0;
    }

    size_t nlen = static_cast<size_t>(slash - v);
    const char *u = slash + 1;
    size_t ulen = len - nlen - 1;

    uint64_t value;
    if (!parse_uint(v, nlen, 19, &value)) {
        return 0;
    }

    for (size_t i = 0; i < nunits; i++) {
        if (word_is(u, ulen, units[i])) {
            if (value < 1 || value > max) {
                return -1;
            }
            *n = value;
            *period = periods[i];
            return 1;
        }
    }
    return 0;
}

/* parse_per's answer for field name: true when ok, else the error in e */
bool per_ok(int rc, ErrBuf &e, const char *name, const char *expected,
    uint64_t max) noexcept
{
    if (rc == 1) {
        return true;
    }
    e.field(name);
    if (rc == 0) {
        e.add(expected);
    } else {
        e.add("N must be 1 to ");
        e.add_u64(max);
    }
    return false;
}

bool parse_text(const char *name, const char *v, size_t len, Writer &w,
    ErrBuf &e) noexcept
{
    if (len > kTextMax) {
        e.field(name);
        e.add("longer than ");
        e.add_u64(kTextMax);
        e.add(" bytes");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = static_cast<unsigned char>(v[i]);
        if (c < 0x20 || c == 0x7f) {
            e.field(name);
            e.add("control character at byte ");
            e.add_u64(i + 1);
            return false;
        }
    }
    w.put_str(v, len);
    return true;
}

bool parse_scopes(const char *v, size_t len, Scalars &s, Writer &w,
    ErrBuf &e) noexcept
{
    size_t words = 0, norm = 0;

    for (size_t i = 0; i < len;) {
        if (blank(static_cast<unsigned char>(v[i]))) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && !blank(static_cast<unsigned char>(v[i]))) {
            i++;
        }
        size_t wl = i - start;
        bool ok = wl <= kScopeMax;
        for (size_t k = start; ok && k < i; k++) {
            ok = scope_char(static_cast<unsigned char>(v[k]));
        }
        if (!ok) {
            e.field("scopes");
            e.add("bad scope ");
            e.add_quoted(v + start, wl);
            e.add(" (1 to 64 of A-Z a-z 0-9 . _ : / * -)");
            return false;
        }
        norm += (words ? 1 : 0) + wl;
        words++;
    }

    s.scope_words = words;
    if (words == 0) {
        return true;                    /* only blanks: no scopes */
    }

    w.put_varint(norm);
    bool first = true;
    for (size_t i = 0; i < len;) {
        if (blank(static_cast<unsigned char>(v[i]))) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && !blank(static_cast<unsigned char>(v[i]))) {
            i++;
        }
        if (!first) {
            w.put(' ');
        }
        first = false;
        w.put_bytes(v + start, i - start);
    }
    return true;
}

bool parse_section(int index, const char *v, size_t len, Writer &w,
    ErrBuf &e) noexcept
{
    size_t at = w.len;
    w.put(0);
    w.put(0);

    bool ok = index == F_IPS ? encode_ips(v, len, w, e)
                             : encode_referrers(v, len, w, e);
    if (!ok) {
        return false;
    }

    size_t n = w.len - at - 2;
    if (n <= 0xffff) {
        w.patch_u16(at, n);
    } else {
        w.len += AK_RECORD_MAX;         /* can never fit */
    }
    return true;
}

void default_id_of(const unsigned char *hash, char *out) noexcept
{
    if (hash) {
        ak_hex_encode(hash, AK_ID_DEFAULT_LEN / 2, out);
    } else {
        std::memset(out, '0', AK_ID_DEFAULT_LEN);
    }
}

} // namespace


int field_index(const char *name, size_t len) noexcept
{
    if (name == nullptr) {
        return -1;
    }
    for (int i = 0; i < F_COUNT; i++) {
        size_t n = std::strlen(kFieldNames[i]);
        if (n == len && std::memcmp(name, kFieldNames[i], n) == 0) {
            return i;
        }
    }
    return -1;
}


bool parse_field(int index, const char *v, size_t len, Scalars &s,
    Writer &w, ErrBuf &e) noexcept
{
    static const char *const rate_units[] = {
        "s", "sec", "second", "m", "min", "minute", "h", "hour",
    };
    static const uint8_t rate_periods[] = {
        AK_PERIOD_SECOND, AK_PERIOD_SECOND, AK_PERIOD_SECOND,
        AK_PERIOD_MINUTE, AK_PERIOD_MINUTE, AK_PERIOD_MINUTE,
        AK_PERIOD_HOUR, AK_PERIOD_HOUR,
    };
    static const char *const quota_units[] = { "hour", "day", "month" };
    static const uint8_t quota_periods[] = {
        AK_PERIOD_HOUR, AK_PERIOD_DAY, AK_PERIOD_MONTH,
    };

    int rc;

    switch (index) {

    case F_ID:
        if (!valid_id(v, len)) {
            e.field("id");
            e.add("expected 1 to 64 of A-Z a-z 0-9 . _ : -");
            return false;
        }
        w.put_str(v, len);
        return true;

    case F_OWNER:
        return parse_text("owner", v, len, w, e);

    case F_PLAN:
        return parse_text("plan", v, len, w, e);

    case F_STATUS:
        if (len == 6 && std::memcmp(v, "active", 6) == 0) {
            s.status = AK_STATUS_ACTIVE;
        } else if (len == 7 && std::memcmp(v, "revoked", 7) == 0) {
            s.status = AK_STATUS_REVOKED;
        } else if (len == 8 && std::memcmp(v, "disabled", 8) == 0) {
            s.status = AK_STATUS_DISABLED;
        } else {
            e.field("status");
            e.add("expected active, revoked or disabled, not ");
            e.add_quoted(v, len);
            return false;
        }
        return true;

    case F_EXPIRES:
        if (!parse_uint(v, len, 18, &s.expires)) {
            e.field("expires_at");
            e.add("expected unix seconds (up to 18 digits, 0 = never)");
            return false;
        }
        return true;

    case F_SCOPES:
        return parse_scopes(v, len, s, w, e);

    case F_IPS:
    case F_REFERRERS:
        return parse_section(index, v, len, w, e);

    case F_RATE:
        rc = parse_per(v, len, kRateMax, rate_units, rate_periods,
                       sizeof(rate_periods), &s.rate_n, &s.rate_period);
        return per_ok(rc, e, "rate", "expected N/s, N/m or N/h", kRateMax);

    case F_BURST:
        if (!parse_uint(v, len, 18, &s.burst) || s.burst > kBurstMax) {
            e.field("burst");
            e.add("expected an integer from 0 to ");
            e.add_u64(kBurstMax);
            return false;
        }
        return true;

    case F_QUOTA:
        rc = parse_per(v, len, kQuotaMax, quota_units, quota_periods,
                       sizeof(quota_periods), &s.quota_n, &s.quota_period);
        return per_ok(rc, e, "quota", "expected N/hour, N/day or N/month",
                      kQuotaMax);

    case F_RATE_SCOPE:
        if (len == 4 && std::memcmp(v, "node", 4) == 0) {
            s.rate_scope = AK_RATE_SCOPE_NODE;
        } else if (len == 7 && std::memcmp(v, "cluster", 7) == 0) {
            s.rate_scope = AK_RATE_SCOPE_CLUSTER;
        } else {
            e.field("rate_scope");
            e.add("expected node or cluster, not ");
            e.add_quoted(v, len);
            return false;
        }
        return true;

    case F_IDENTITY:
        for (size_t i = 0; i < len; i++) {
            if (!is_lower_hex(static_cast<unsigned char>(v[i]))) {
                len = 0;
                break;
            }
        }
        if (len != AK_HASH_HEX_LEN
            || ak_hex_decode_hash(v, len, s.identity) != 0)
        {
            e.field("identity");
            e.add("expected 64 lowercase hex digits (a key's hash)");
            return false;
        }
        s.has_identity = true;
        return true;

    case F_ALIAS_UNTIL:
        if (!parse_uint(v, len, 18, &s.alias_until) || s.alias_until == 0) {
            e.field("alias_until");
            e.add("expected unix seconds (up to 18 digits, not 0)");
            return false;
        }
        return true;

    default:
        return true;
    }
}


bool blob_rule_sections(const unsigned char *b, size_t len,
    const unsigned char **ips, size_t *ips_len,
    const unsigned char **refs, size_t *refs_len) noexcept
{
    *ips = nullptr;
    *ips_len = 0;
    *refs = nullptr;
    *refs_len = 0;

    if (b == nullptr || len < blob::kHeaderLen || b[0] != blob::kVersion) {
        return false;
    }

    Reader r(b, len);
    r.off = blob::kHeaderLen;
    uint8_t pres = b[2];

    if (pres & blob::kHasIps) {
        *ips_len = r.u16();
        *ips = r.bytes(*ips_len);
    }
    if (pres & blob::kHasReferrers) {
        *refs_len = r.u16();
        *refs = r.bytes(*refs_len);
    }
    return r.ok;
}


/* ---- C++ API --------------------------------------------------------- */

bool is_record_field(std::string_view name) noexcept
{
    return field_index(name.data(), name.size()) >= 0;
}


bool validate_field(std::string_view name, std::string_view value,
    std::string *error)
{
    int idx = field_index(name.data(), name.size());
    if (idx < 0 || value.empty()) {
        return true;
    }

    char msg[AK_ERR_LEN];
    ErrBuf e(msg, sizeof(msg));
    Scalars s;
    Writer w(nullptr, 0);

    bool ok = parse_field(idx, value.data(), value.size(), s, w, e);

    if (ok && w.len > AK_RECORD_MAX - blob::kHeaderLen) {
        e.field(kFieldNames[idx]);
        e.add("too long (");
        e.add_u64(w.len);
        e.add(" bytes once stored, the record may hold ");
        e.add_u64(AK_RECORD_MAX);
        e.add(")");
        ok = false;
    }

    if (!ok && error) {
        *error = msg;
    }
    return ok;
}

} // namespace ak


/* ---- C API ----------------------------------------------------------- */

namespace {

int record_build(const unsigned char *hash, const ak_str_t *fields,
    const ak_str_t *values, size_t n, unsigned char *blob, size_t blob_cap,
    ak_record_err_t *err) noexcept
{
    using namespace ak;

    char msg_local[AK_ERR_LEN];
    char *msg = err ? err->msg : msg_local;
    ErrBuf e(msg, AK_ERR_LEN);

    const ak_str_t *val[F_COUNT] = {};

    for (size_t i = 0; i < n; i++) {
        int idx = field_index(fields[i].data, fields[i].len);
        if (idx >= 0) {
            /* the empty string counts as absent */
            val[idx] = (values[i].len > 0 && values[i].data) ? &values[i]
                                                            : nullptr;
        }
    }

    if (err) {
        default_id_of(hash, err->id);
        err->id[AK_ID_DEFAULT_LEN] = '\0';
        if (val[F_ID] && valid_id(val[F_ID]->data, val[F_ID]->len)) {
            std::memcpy(err->id, val[F_ID]->data, val[F_ID]->len);
            err->id[val[F_ID]->len] = '\0';
        }
    }

    /* pass 1: validate everything, in canonical field order */
    Scalars s;
    for (int i = 0; i < F_COUNT; i++) {
        if (val[i]) {
            Writer dry(nullptr, 0);
            if (!parse_field(i, val[i]->data, val[i]->len, s, dry, e)) {
                return -1;
            }
        }
    }

    if (s.rate_period == AK_PERIOD_NONE) {
        s.burst = 0;                    /* burst without rate: ignored */
        s.rate_scope = AK_RATE_SCOPE_DEFAULT;   /* so is rate_scope */

    } else if (val[F_BURST] == nullptr) {
        /* no burst field (or an empty one): a bucket of N */
        s.burst = ak_rate_default_burst(s.rate_n);
    }

    /*
     * An id equal to the default one (the first 12 hex digits of the hash,
     * which apikeyctl stores) is not kept: the view derives it.  It would
     * cost 13 of the 32 bytes a cache slot holds inline.
     */
    if (val[F_ID] && val[F_ID]->len == AK_ID_DEFAULT_LEN) {
        char def[AK_ID_DEFAULT_LEN + 1];
        default_id_of(hash, def);
        if (std::memcmp(def, val[F_ID]->data, AK_ID_DEFAULT_LEN) == 0) {
            val[F_ID] = nullptr;
        }
    }

    /* an identity equal to the key's own hash is the default: not kept */
    if (s.has_identity && hash
        && std::memcmp(s.identity, hash, AK_HASH_LEN) == 0)
    {
        s.has_identity = false;
    }

    uint8_t ext = 0;
    if (s.has_identity) ext |= blob::kExtIdentity;
    if (s.alias_until) ext |= blob::kExtAliasUntil;
    if (s.rate_scope) ext |= blob::kExtRateScope;

    uint8_t pres = 0;
    if (val[F_IPS]) pres |= blob::kHasIps;
    if (val[F_REFERRERS]) pres |= blob::kHasReferrers;
    if (val[F_ID]) pres |= blob::kHasId;
    if (val[F_OWNER]) pres |= blob::kHasOwner;
    if (val[F_PLAN]) pres |= blob::kHasPlan;
    if (s.scope_words) pres |= blob::kHasScopes;
    if (s.expires) pres |= blob::kHasExpires;
    if (s.burst) pres |= blob::kHasBurst;

    /* pass 2: write, in blob order */
    size_t cap = blob ? blob_cap : 0;
    if (cap > AK_RECORD_MAX) {
        cap = AK_RECORD_MAX;
    }

    Writer w(blob, cap);
    w.put(blob::kVersion);
    w.put(static_cast<uint8_t>(s.status
                               | (s.rate_period << blob::kRateShift)
                               | (s.quota_period << blob::kQuotaShift)
                               | (ext ? blob::kHasExt : 0)));
    w.put(pres);

    static const int order[] = {
        F_IPS, F_REFERRERS, F_ID, F_OWNER, F_PLAN, F_SCOPES,
    };
    for (int i : order) {
        if (val[i] && (i != F_SCOPES || s.scope_words)) {
            Scalars unused;
            (void) parse_field(i, val[i]->data, val[i]->len, unused, w, e);
        }
    }

    if (s.expires) w.put_varint(s.expires);
    if (s.rate_period) w.put_varint(s.rate_n);
    if (s.burst) w.put_varint(s.burst);
    if (s.quota_period) w.put_varint(s.quota_n);

    if (ext) {
        w.put(ext);
        if (s.has_identity) w.put_bytes(s.identity, AK_HASH_LEN);
        if (s.alias_until) w.put_varint(s.alias_until);
        if (s.rate_scope) w.put_varint(s.rate_scope);
    }

    if (!w.fits()) {
        e.len = 0;
        e.add("record too large: ");
        e.add_u64(w.len);
        e.add(" bytes once serialised, at most ");
        e.add_u64(cap);
        return -1;
    }

    msg[0] = '\0';
    return static_cast<int>(w.len);
}

} // namespace


extern "C" int
ak_record_build(const unsigned char hash[AK_HASH_LEN], const ak_str_t *fields,
    const ak_str_t *values, size_t n, unsigned char *blob, size_t blob_cap,
    ak_record_err_t *err) noexcept
{
    if (err) {
        err->id[0] = '\0';
        err->msg[0] = '\0';
    }

    if (n > 0 && (fields == nullptr || values == nullptr)) {
        if (err) {
            ak::ErrBuf e(err->msg, sizeof(err->msg));
            e.add("no fields");
        }
        return -1;
    }

    try {
        return record_build(hash, fields, values, n, blob, blob_cap, err);
    } catch (...) {
        if (err) {
            ak::ErrBuf e(err->msg, sizeof(err->msg));
            e.add("internal error");
        }
        return -1;
    }
}


namespace {

/*
 * The view reads the blob with a cursor p up to end, every read checked
 * against end (as ak::Reader does, without its "ok" state carried through
 * each byte): a varint of one byte (every length and most numbers) is read
 * inline, a longer one by ak::Reader, bit for bit the same decoding.
 */

bool varint_long(const unsigned char *&p, const unsigned char *end,
    uint64_t *v) noexcept
{
    ak::Reader r(p, static_cast<size_t>(end - p));

    *v = r.varint();
    if (!r.ok) {
        return false;
    }
    p += r.off;
    return true;
}

inline bool varint(const unsigned char *&p, const unsigned char *end,
    uint64_t *v) noexcept
{
    if (p < end && *p < 0x80) {
        *v = *p++;
        return true;
    }
    return varint_long(p, end, v);
}

/* n bytes at p (moved past them), n > 0 and <= max */
inline bool bytes(const unsigned char *&p, const unsigned char *end,
    uint64_t n, uint64_t max, const unsigned char **out) noexcept
{
    if (n == 0 || n > max || n > static_cast<uint64_t>(end - p)) {
        return false;
    }
    *out = p;
    p += n;
    return true;
}

/* a rules section: its 16-bit length, then that many bytes (n > 0) */
inline bool section(const unsigned char *&p, const unsigned char *end,
    const unsigned char **out, uint16_t *len) noexcept
{
    if (end - p < 2) {
        return false;
    }
    uint64_t n = static_cast<uint64_t>(p[0] | (p[1] << 8));
    p += 2;
    *len = static_cast<uint16_t>(n);
    return bytes(p, end, n, 0xffff, out);
}

/* every field of a view but id_buf, blob and blob_len, as a record with
 * only a status has them (texts empty, id NULL) */
inline __attribute__((always_inline)) void
view_empty(ak_record_t *rec, uint8_t status) noexcept
{
    using namespace ak;

    rec->id = { nullptr, 0 };
    rec->owner = { kEmpty, 0 };
    rec->plan = { kEmpty, 0 };
    rec->scopes = { kEmpty, 0 };
    rec->expires_at = 0;
    rec->status = status;
    rec->has_ips = 0;
    rec->has_referrers = 0;
    rec->rate_period = AK_PERIOD_NONE;
    rec->rate_n = 0;
    rec->burst = 0;
    rec->rate_interval_us = 0;
    rec->quota_period = AK_PERIOD_NONE;
    rec->quota_n = 0;
    rec->rate_scope = AK_RATE_SCOPE_DEFAULT;
    rec->identity = nullptr;
    rec->alias_until = 0;
    rec->ips = nullptr;
    rec->referrers = nullptr;
    rec->ips_len = 0;
    rec->referrers_len = 0;
}

/* full false: a record without an id leaves rec->id empty (data NULL),
   ak_record_default_id() makes it when asked; the rules sections' bytes
   are left to the matchers (see ak_record_view_lazy).  Every field of
   *rec is set (id_buf only by ak_record_default_id): no memset of the
   whole view but on a corrupt blob.  Inlined in both entry points: a
   call and a second prologue cost as much as the checks of a field. */
inline __attribute__((always_inline)) int
record_view(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec,
    bool full) noexcept
{
    using namespace ak;

    const unsigned char  *p, *end, *q;
    uint8_t               b1, pres, status, rp, qp;
    uint64_t              n, v;

    if (rec == nullptr) {
        return -1;
    }

    if (blob == nullptr || len < blob::kHeaderLen || len > AK_RECORD_MAX) {
        goto corrupt;
    }

    b1 = blob[1];
    pres = blob[2];
    status = b1 & blob::kStatusMask;
    rp = (b1 & blob::kRateMask) >> blob::kRateShift;
    qp = (b1 & blob::kQuotaMask) >> blob::kQuotaShift;

    if (blob[0] != blob::kVersion
        || status > AK_STATUS_DISABLED
        || (qp != AK_PERIOD_NONE && qp != AK_PERIOD_HOUR
            && qp != AK_PERIOD_DAY && qp != AK_PERIOD_MONTH)
        || ((pres & blob::kHasBurst) && rp == AK_PERIOD_NONE))
    {
        goto corrupt;
    }

    p = blob + blob::kHeaderLen;
    end = blob + len;

    view_empty(rec, status);

    if (pres & blob::kHasIps) {
        if (!section(p, end, &rec->ips, &rec->ips_len)
            || (full && !check_ips_section(rec->ips, rec->ips_len)))
        {
            goto corrupt;
        }
        rec->has_ips = 1;
    }

    if (pres & blob::kHasReferrers) {
        if (!section(p, end, &rec->referrers, &rec->referrers_len)
            || (full && !check_referrers_section(rec->referrers,
                                                 rec->referrers_len)))
        {
            goto corrupt;
        }
        rec->has_referrers = 1;
    }

    if (pres & blob::kHasId) {
        if (!varint(p, end, &n) || !bytes(p, end, n, AK_ID_MAX_LEN, &q)
            || !valid_id(reinterpret_cast<const char *>(q),
                         static_cast<size_t>(n)))
        {
            goto corrupt;
        }
        rec->id = { reinterpret_cast<const char *>(q),
                    static_cast<size_t>(n) };
    } else {
        if (hash == nullptr) {
            goto corrupt;
        }
        if (full) {
            ak_record_default_id(hash, rec);
        }
    }

    if (pres & blob::kHasOwner) {
        if (!varint(p, end, &n) || !bytes(p, end, n, kTextMax, &q)) {
            goto corrupt;
        }
        rec->owner = { reinterpret_cast<const char *>(q),
                       static_cast<size_t>(n) };
    }

    if (pres & blob::kHasPlan) {
        if (!varint(p, end, &n) || !bytes(p, end, n, kTextMax, &q)) {
            goto corrupt;
        }
        rec->plan = { reinterpret_cast<const char *>(q),
                      static_cast<size_t>(n) };
    }

    if (pres & blob::kHasScopes) {
        if (!varint(p, end, &n) || !bytes(p, end, n, AK_RECORD_MAX, &q)) {
            goto corrupt;
        }
        rec->scopes = { reinterpret_cast<const char *>(q),
                        static_cast<size_t>(n) };
    }

    if (pres & blob::kHasExpires) {
        if (!varint(p, end, &v) || v == 0 || v > kExpiresMax) {
            goto corrupt;
        }
        rec->expires_at = static_cast<int64_t>(v);
    }

    if (rp != AK_PERIOD_NONE) {
        if (!varint(p, end, &v) || v == 0 || v > kRateMax) {
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
        if (!varint(p, end, &v) || v == 0 || v > kBurstMax) {
            goto corrupt;
        }
        rec->burst = static_cast<uint32_t>(v);
    }

    if (qp != AK_PERIOD_NONE) {
        if (!varint(p, end, &v) || v == 0 || v > kQuotaMax) {
            goto corrupt;
        }
        rec->quota_period = qp;
        rec->quota_n = v;
    }

    if (b1 & blob::kHasExt) {
        if (p >= end) {
            goto corrupt;
        }
        uint8_t ext = *p++;
        if (ext == 0 || (ext & ~blob::kExtKnown)) {
            goto corrupt;
        }
        if (ext & blob::kExtIdentity) {
            if (!bytes(p, end, AK_HASH_LEN, AK_HASH_LEN, &q)) {
                goto corrupt;
            }
            rec->identity = q;
        }
        if (ext & blob::kExtAliasUntil) {
            if (!varint(p, end, &v) || v == 0 || v > kExpiresMax) {
                goto corrupt;
            }
            rec->alias_until = static_cast<int64_t>(v);
        }
        if (ext & blob::kExtRateScope) {
            if (!varint(p, end, &v) || rp == AK_PERIOD_NONE
                || (v != AK_RATE_SCOPE_NODE && v != AK_RATE_SCOPE_CLUSTER))
            {
                goto corrupt;
            }
            rec->rate_scope = static_cast<uint8_t>(v);
        }
    }

    if (p != end) {
        goto corrupt;
    }

    rec->blob = blob;
    rec->blob_len = len;
    return 0;

corrupt:
    std::memset(rec, 0, sizeof(*rec));
    return -1;
}

} // namespace


extern "C" int
ak_record_view(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec) noexcept
{
    return record_view(hash, blob, len, rec, true);
}


namespace {

/*
 * Blob byte 1 of a record: its rate's period in microseconds (1 without a
 * rate); 0 for one no record has (a status of 3, a quota period of a rate
 * only or none known).
 */
struct UsualB1 {
    uint64_t period[256];

    constexpr UsualB1() noexcept : period()
    {
        for (unsigned b = 0; b < 256; b++) {
            unsigned rp = (b & ak::blob::kRateMask) >> ak::blob::kRateShift;
            unsigned qp = (b & ak::blob::kQuotaMask) >> ak::blob::kQuotaShift;

            period[b] = (b & ak::blob::kStatusMask) == 3
                        || (qp != AK_PERIOD_NONE && qp != AK_PERIOD_HOUR
                            && qp != AK_PERIOD_DAY && qp != AK_PERIOD_MONTH)
                        ? 0
                        : rp == AK_PERIOD_NONE ? 1
                        : rp == AK_PERIOD_SECOND ? ak::kUsPerSecond
                        : rp == AK_PERIOD_MINUTE ? 60 * ak::kUsPerSecond
                                                 : 3600 * ak::kUsPerSecond;
        }
    }
};

constexpr UsualB1 kUsualB1;

/*
 * The usual blob's parts, read at offset o (moved past them) below len.
 * Each read is bounded by len; the end of a part is not checked against
 * len here: o, past len then, fails the next read's check or the blob's
 * end (o == len), and no pointer is made past len (a part's start is at
 * most len).
 */

/* a rules section: a 16-bit length, then that many bytes (n > 0) */
inline __attribute__((always_inline)) bool
usual_section(const unsigned char *blob, size_t len, size_t &o,
    const unsigned char **out, uint16_t *n) noexcept
{
    if (o + 2 > len) {
        return false;
    }
    *n = static_cast<uint16_t>(blob[o] | (blob[o + 1] << 8));
    if (*n == 0) {
        return false;
    }
    *out = blob + o + 2;
    o += 2 + static_cast<size_t>(*n);
    return true;
}

/* a text of 1 to max bytes, its length one byte (up to 127), or when
   longer ok, two (max < 16,384) */
template <bool longer>
inline __attribute__((always_inline)) bool
usual_text(const unsigned char *blob, size_t len, size_t &o, size_t max,
    ak_str_t *out) noexcept
{
    if (o >= len) {
        return false;
    }
    size_t n = blob[o];
    if (!longer) {
        if (n - 1 >= (max < 0x7f ? max : 0x7f)) {
            return false;       /* 0, too long, or a longer length */
        }
        o += 1;
    } else if (n < 0x80) {
        o += 1;
    } else {
        if (o + 1 >= len || blob[o + 1] >= 0x80) {
            return false;
        }
        n = (n & 0x7f) | (static_cast<size_t>(blob[o + 1]) << 7);
        o += 2;
    }
    if (longer && n - 1 >= max) {
        return false;
    }
    out->data = reinterpret_cast<const char *>(blob + o);
    out->len = n;
    o += n;
    return true;
}

/*
 * A number, decoded as ak::Reader decodes it: of one to three bytes, or
 * when longer ok, to nine (up to 2^63 - 1); a longer one: false.
 */
template <bool longer = false>
inline __attribute__((always_inline)) bool
usual_number(const unsigned char *blob, size_t len, size_t &o, uint64_t *v)
    noexcept
{
    if (o >= len) {
        return false;
    }
    uint64_t b0 = blob[o];
    if (b0 < 0x80) {
        *v = b0;
        o += 1;
        return true;
    }
    if (o + 1 >= len) {
        return false;
    }
    uint64_t b1 = blob[o + 1];
    if (b1 < 0x80) {
        *v = (b0 & 0x7f) | (b1 << 7);
        o += 2;
        return true;
    }
    if (o + 2 >= len) {
        return false;
    }
    uint64_t r = (b0 & 0x7f) | ((b1 & 0x7f) << 7)
                 | (static_cast<uint64_t>(blob[o + 2] & 0x7f) << 14);
    if (blob[o + 2] < 0x80) {
        *v = r;
        o += 3;
        return true;
    }
    if (!longer) {
        return false;
    }
    o += 3;
    for (unsigned shift = 21; shift < 63; shift += 7) {
        if (o >= len) {
            return false;
        }
        uint64_t b = blob[o++];
        r |= (b & 0x7f) << shift;
        if (b < 0x80) {
            *v = r;
            return true;
        }
    }
    return false;
}

/*
 * The lazy view of a record written as ak_record_build writes one (every
 * field but the rules sections' bytes, whose bounds only are read).  all
 * false: a record without an expiry, a quota or an extension (else 3),
 * texts of up to 127 bytes, numbers of up to three (2,097,151); all true
 * (after view_usual<false>() answered 3): any record, texts of up to
 * 16,383 bytes, numbers of up to nine.  1: *rec is set as record_view(...,
 * false) sets it, 2: the same for a record with an id, whose characters
 * are left to view_usual_id(); 0: another record, or a corrupt one (rec's
 * fields undefined then): record_view reads it and tells which.  Every
 * field stored once.
 */
template <bool all>
inline __attribute__((always_inline)) int
view_usual(const unsigned char hash[AK_HASH_LEN], const unsigned char *blob,
    size_t len, ak_record_t *rec) noexcept
{
    using namespace ak;

    uint8_t   b1, rp, qp, ext;
    size_t    o;
    uint64_t  period, v;

    /* (no hash: record_view, which refuses a record without an id; all:
       view_usual<false>() checked these and answered 3) */

    if (!all
        && (rec == nullptr || hash == nullptr || blob == nullptr
            || len < blob::kHeaderLen || len > AK_RECORD_MAX
            || blob[0] != blob::kVersion))
    {
        return 0;
    }

    /*
     * The presence bits are read where tested, blob[2] each time: the
     * view's stores may alias the blob for the compiler, which would keep
     * a copy in a register of its own throughout (and save one more in
     * the prologue); x86 tests a byte in memory in one instruction.
     */

    b1 = blob[1];

    if (kUsualB1.period[b1] == 0) {
        return 0;
    }

    if (!all && ((b1 & (blob::kQuotaMask | blob::kHasExt))
                 || (blob[2] & blob::kHasExpires)))
    {
        return 3;
    }

    o = blob::kHeaderLen;
    rp = (b1 & blob::kRateMask) >> blob::kRateShift;

    rec->status = b1 & blob::kStatusMask;
    rec->rate_period = rp;

    if (blob[2] & blob::kHasIps) {
        if (!usual_section(blob, len, o, &rec->ips, &rec->ips_len)) {
            return 0;
        }
        rec->has_ips = 1;
    } else {
        rec->ips = nullptr;
        rec->ips_len = 0;
        rec->has_ips = 0;
    }

    if (blob[2] & blob::kHasReferrers) {
        if (!usual_section(blob, len, o, &rec->referrers,
                           &rec->referrers_len))
        {
            return 0;
        }
        rec->has_referrers = 1;
    } else {
        rec->referrers = nullptr;
        rec->referrers_len = 0;
        rec->has_referrers = 0;
    }

    if (blob[2] & blob::kHasId) {
        if (!usual_text<all>(blob, len, o, AK_ID_MAX_LEN, &rec->id)) {
            return 0;
        }
    } else {
        rec->id = { nullptr, 0 };
    }

    if (blob[2] & blob::kHasOwner) {
        if (!usual_text<all>(blob, len, o, kTextMax, &rec->owner)) {
            return 0;
        }
    } else {
        rec->owner = { kEmpty, 0 };
    }

    if (blob[2] & blob::kHasPlan) {
        if (!usual_text<all>(blob, len, o, kTextMax, &rec->plan)) {
            return 0;
        }
    } else {
        rec->plan = { kEmpty, 0 };
    }

    if (blob[2] & blob::kHasScopes) {
        if (!usual_text<all>(blob, len, o, AK_RECORD_MAX, &rec->scopes)) {
            return 0;
        }
    } else {
        rec->scopes = { kEmpty, 0 };
    }

    if (all && (blob[2] & blob::kHasExpires)) {
        if (!usual_number<all>(blob, len, o, &v) || v - 1 >= kExpiresMax) {
            return 0;
        }
        rec->expires_at = static_cast<int64_t>(v);
    } else {
        rec->expires_at = 0;
    }

    if (rp != AK_PERIOD_NONE) {
        if (!usual_number<all>(blob, len, o, &v) || v - 1 >= kRateMax) {
            return 0;
        }
        period = kUsualB1.period[blob[1]];
        rec->rate_n = static_cast<uint32_t>(v);
        rec->rate_interval_us = period / v ? period / v : 1;
    } else {
        rec->rate_n = 0;
        rec->rate_interval_us = 0;
    }

    if (blob[2] & blob::kHasBurst) {
        if (rp == AK_PERIOD_NONE || !usual_number<all>(blob, len, o, &v)
            || v - 1 >= kBurstMax)
        {
            return 0;
        }
        rec->burst = static_cast<uint32_t>(v);
    } else {
        rec->burst = 0;
    }

    qp = all ? (blob[1] & blob::kQuotaMask) >> blob::kQuotaShift
             : AK_PERIOD_NONE;
    rec->quota_period = qp;

    if (all && qp != AK_PERIOD_NONE) {
        if (!usual_number<all>(blob, len, o, &v) || v - 1 >= kQuotaMax) {
            return 0;
        }
        rec->quota_n = v;
    } else {
        rec->quota_n = 0;
    }

    rec->identity = nullptr;
    rec->alias_until = 0;
    rec->rate_scope = AK_RATE_SCOPE_DEFAULT;

    if (all && (blob[1] & blob::kHasExt)) {
        if (o >= len) {
            return 0;
        }
        ext = blob[o++];
        if (ext == 0 || (ext & ~blob::kExtKnown)) {
            return 0;
        }
        if (ext & blob::kExtIdentity) {
            if (o + AK_HASH_LEN > len) {
                return 0;
            }
            rec->identity = blob + o;
            o += AK_HASH_LEN;
        }
        if (ext & blob::kExtAliasUntil) {
            if (!usual_number<all>(blob, len, o, &v) || v - 1 >= kExpiresMax) {
                return 0;
            }
            rec->alias_until = static_cast<int64_t>(v);
        }
        if (ext & blob::kExtRateScope) {
            if (o >= len || rp == AK_PERIOD_NONE
                || (blob[o] != AK_RATE_SCOPE_NODE
                    && blob[o] != AK_RATE_SCOPE_CLUSTER))
            {
                return 0;
            }
            rec->rate_scope = blob[o++];
        }
    }

    if (o != len) {
        return 0;
    }

    rec->blob = blob;
    rec->blob_len = len;
    return (blob[2] & blob::kHasId) ? 2 : 1;
}

/* view_usual()'s record with an id: its characters checked (not inline:
   the view's loop would keep registers for its whole length) */
__attribute__((noinline)) int
view_usual_id(ak_record_t *rec) noexcept
{
    if (ak::valid_id(rec->id.data, rec->id.len)) {
        return 0;
    }
    std::memset(rec, 0, sizeof(*rec));  /* corrupt, as record_view says */
    return -1;
}

/* every other record, and a corrupt one (not inlined: the usual ones
   keep a short prologue) */
__attribute__((noinline)) int
view_lazy_other(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec) noexcept
{
    return record_view(hash, blob, len, rec, false);
}

/* a record with an expiry, a quota or an extension (view_usual<false>()
   answered 3): the same, with those (not inlined either) */
__attribute__((noinline)) int
view_lazy_all(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec) noexcept
{
    switch (view_usual<true>(hash, blob, len, rec)) {
    case 1:
        return 0;
    case 2:
        return view_usual_id(rec);
    default:
        return view_lazy_other(hash, blob, len, rec);
    }
}

} // namespace


extern "C" int
ak_record_view_lazy(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec) noexcept
{
    switch (view_usual<false>(hash, blob, len, rec)) {
    case 1:
        return 0;
    case 2:
        return view_usual_id(rec);
    case 3:
        return view_lazy_all(hash, blob, len, rec);
    default:
        return view_lazy_other(hash, blob, len, rec);
    }
}


extern "C" int
ak_record_plain(const unsigned char *blob, size_t len) noexcept
{
    using namespace ak;

    const unsigned char  *p, *end, *q;
    uint8_t               pres;
    uint64_t              n;

    /* blob[1]: status active, no rate, no quota, no extension: 0 */
    static_assert(AK_STATUS_ACTIVE == 0 && AK_PERIOD_NONE == 0,
                  "an active record without limits has blob[1] 0");

    if (blob == nullptr || len < blob::kHeaderLen || len > AK_RECORD_MAX
        || blob[0] != blob::kVersion || blob[1] != 0)
    {
        return 0;
    }

    pres = blob[2];

    if (pres & ~(blob::kHasId | blob::kHasOwner | blob::kHasPlan)) {
        return 0;
    }

    /* the texts read as record_view reads them */

    p = blob + blob::kHeaderLen;
    end = blob + len;

    if ((pres & blob::kHasId)
        && (!varint(p, end, &n) || !bytes(p, end, n, AK_ID_MAX_LEN, &q)
            || !valid_id(reinterpret_cast<const char *>(q),
                         static_cast<size_t>(n))))
    {
        return 0;
    }

    if ((pres & blob::kHasOwner)
        && (!varint(p, end, &n) || !bytes(p, end, n, kTextMax, &q)))
    {
        return 0;
    }

    if ((pres & blob::kHasPlan)
        && (!varint(p, end, &n) || !bytes(p, end, n, kTextMax, &q)))
    {
        return 0;
    }

    return p == end;
}


namespace {

/*
 * Texts (id, owner, plan) and a rate only: 1 and, when rec, its view but
 * for the texts; check_id: the id's characters checked too (when the
 * cache stores it; the request path trusts what the cache found).  Read as
 * view_usual() reads a record.
 */
template <bool check_id>
int
rate_only(const unsigned char *blob, size_t len, ak_record_t *rec) noexcept
{
    using namespace ak;

    uint8_t    b1, pres;
    size_t     o;
    ak_str_t   id, text;
    uint64_t   rate, burst, period;

    if (blob == nullptr || len < blob::kHeaderLen || len > AK_RECORD_MAX) {
        return 0;
    }

    /* active, a rate, no quota, no extension; no rules, scopes, expiry */

    b1 = blob[1];
    pres = blob[2];

    if (blob[0] != blob::kVersion || (b1 & ~blob::kRateMask)
        || (b1 & blob::kRateMask) == 0
        || (pres & ~(blob::kHasId | blob::kHasOwner | blob::kHasPlan
                     | blob::kHasBurst)))
    {
        return 0;
    }

    o = blob::kHeaderLen;
    id = { nullptr, 0 };

    if (((pres & blob::kHasId)
         && !usual_text<true>(blob, len, o, AK_ID_MAX_LEN, &id))
        || ((pres & blob::kHasOwner)
            && !usual_text<true>(blob, len, o, kTextMax, &text))
        || ((pres & blob::kHasPlan)
            && !usual_text<true>(blob, len, o, kTextMax, &text))
        || !usual_number(blob, len, o, &rate) || rate - 1 >= kRateMax)
    {
        return 0;
    }

    burst = 0;

    if ((pres & blob::kHasBurst)
        && (!usual_number(blob, len, o, &burst) || burst - 1 >= kBurstMax))
    {
        return 0;
    }

    if (o != len
        || (check_id && id.data != nullptr && !valid_id(id.data, id.len)))
    {
        return 0;
    }

    if (rec == nullptr) {
        return 1;
    }

    period = kUsualB1.period[b1];      /* b1: active, a rate, no more */

    view_empty(rec, AK_STATUS_ACTIVE);
    rec->rate_period = (b1 & blob::kRateMask) >> blob::kRateShift;
    rec->rate_n = static_cast<uint32_t>(rate);
    rec->burst = static_cast<uint32_t>(burst);
    rec->rate_interval_us = period / rate ? period / rate : 1;
    rec->blob = blob;
    rec->blob_len = len;

    return 1;
}

} // namespace


extern "C" int
ak_record_rate_only(const unsigned char *blob, size_t len, ak_record_t *rec)
    noexcept
{
    return rate_only<false>(blob, len, rec);
}


extern "C" uint32_t
ak_record_entry_flags(const unsigned char *blob, size_t len) noexcept
{
    return ak_record_plain(blob, len) ? AK_ENTRY_PLAIN
           : rate_only<true>(blob, len, nullptr) ? AK_ENTRY_RATED : 0;
}


extern "C" void
ak_record_default_id(const unsigned char hash[AK_HASH_LEN], ak_record_t *rec)
    noexcept
{
    static const char hex[] = "0123456789abcdef";

    if (rec == nullptr || rec->id.len != 0 || hash == nullptr) {
        return;                 /* no hash: no id to make (the full view
                                   refuses such a record) */
    }
    /* inline, a constant count (ak_hex_encode's loop and call cost
       twice as much on the request path) */
    for (size_t i = 0; i < AK_ID_DEFAULT_LEN / 2; i++) {
        rec->id_buf[2 * i] = hex[hash[i] >> 4];
        rec->id_buf[2 * i + 1] = hex[hash[i] & 0x0f];
    }
    rec->id = { rec->id_buf, AK_ID_DEFAULT_LEN };
}


extern "C" int
ak_record_has_scopes(const ak_record_t *rec, const ak_str_t *required,
    size_t n) noexcept
{
    if (n == 0) {
        return 1;
    }
    if (rec == nullptr || required == nullptr) {
        return 0;
    }

    const char *s = rec->scopes.data;
    size_t len = s ? rec->scopes.len : 0;

    for (size_t k = 0; k < n; k++) {
        const char *want = required[k].data;
        size_t wl = required[k].len;
        bool found = false;

        if (want == nullptr || wl == 0) {
            return 0;
        }

        for (size_t i = 0; i < len && !found;) {
            while (i < len && (s[i] == ' ' || s[i] == '\t')) {
                i++;
            }
            size_t start = i;
            while (i < len && s[i] != ' ' && s[i] != '\t') {
                i++;
            }
            found = i - start == wl && i > start
                    && std::memcmp(s + start, want, wl) == 0;
        }

        if (!found) {
            return 0;
        }
    }

    return 1;
}
