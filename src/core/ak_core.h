/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ak_core.h: the C API of the module's C++17 core.
 *
 * This is the only header the nginx glue (C) includes from the core.  It uses
 * no nginx types.  Every function is noexcept on the C++ side: nothing throws
 * across this boundary.  Functions marked "hot" never allocate.
 */

#ifndef AK_CORE_H
#define AK_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define AK_NOEXCEPT  noexcept
extern "C" {
#else
#define AK_NOEXCEPT
#endif

#define AK_HASH_LEN         32      /* raw SHA-256 / HMAC-SHA256 */
#define AK_HASH_HEX_LEN     64
#define AK_KEY_MAX_LEN      256
#define AK_ID_DEFAULT_LEN   12      /* default public id: first 12 hex digits */
#define AK_ID_MAX_LEN       64
#define AK_RECORD_MAX       4096    /* largest serialized record blob */
#define AK_ERR_LEN          192

typedef struct {
    const char  *data;
    size_t       len;
} ak_str_t;


/* ------------------------------------------------------------------ */
/* Key format                                                          */

/* "any": 1..256 bytes, each printable ASCII 0x21..0x7e.  1 = ok.  hot */
int ak_key_check_any(const unsigned char *key, size_t len) AK_NOEXCEPT;

/*
 * "checksum": PREFIX "_" + 30 base62 + 6 base62 of CRC-32 (IEEE, as zlib's
 * crc32()) over everything before the checksum, most significant digit
 * first, zero-padded with '0'.  Base62 alphabet: 0-9 A-Z a-z.  PREFIX is
 * 1..32 characters of [A-Za-z0-9_]; the key is parsed from its end.  When
 * prefix_len > 0 the key's prefix must equal it exactly.  1 = ok.  hot
 */
int ak_key_check_checksum(const unsigned char *key, size_t len,
    const unsigned char *prefix, size_t prefix_len) AK_NOEXCEPT;

/* 1 if prefix is a valid key prefix (1..32 of [A-Za-z0-9_]). */
int ak_key_prefix_valid(const unsigned char *prefix, size_t len) AK_NOEXCEPT;

/*
 * Strict percent-decoding of a whole value (a query argument): every '%'
 * must start "%XX" with two hex digits (either case); everything else,
 * '+' included, is copied as it is.  Writes at most cap bytes to out.
 * 1 = ok and *out_len set; 0 = an invalid escape ("%", "%4", "%zz") or a
 * result longer than cap.  in and out must not overlap.  hot
 */
int ak_percent_decode(const unsigned char *in, size_t len,
    unsigned char *out, size_t cap, size_t *out_len) AK_NOEXCEPT;


/* ------------------------------------------------------------------ */
/* Key sources: the parts of a request that carry a key (extract.cpp)  */

/*
 * Byte ranges in, offsets into them and lengths out; nothing allocates.
 * A value rebuilt without the key (api_key_strip) is measured by a first
 * pass (..._strip_len) and written by a second into a buffer of that size.
 * Cookie names are compared with case, query argument names without
 * (ASCII letters), as nginx's ngx_strncmp / ngx_strncasecmp do (a NUL
 * byte at the same place in both ends the comparison, equal).  All hot.
 */

#define AK_STRIP_NONE     0     /* the name is not there: keep the value */
#define AK_STRIP_EMPTY    1     /* only the name was there: drop the header */
#define AK_STRIP_REBUILT  2     /* rebuild it, *out_len bytes */

/* A cookie of a Cookie header value: offsets into the value. */
typedef struct {
    size_t       pair;          /* the whole "NAME=VALUE" or "NAME" */
    size_t       pair_len;      /* up to the ';' or the end */
    size_t       name_len;      /* NAME starts at pair: up to '=' */
    size_t       value;         /* after the '=' */
    size_t       value_len;     /* trailing spaces dropped */
    int          has_value;     /* 0: no '=' */
} ak_cookie_t;

/*
 * The next cookie of a Cookie value s ("a=1; b=2") from *pos (start at 0):
 * spaces and ';' skipped, then everything up to the next ';'.  1 and *c
 * set, *pos moved past it; 0 at the end.
 */
int ak_cookie_next(const unsigned char *s, size_t len, size_t *pos,
    ak_cookie_t *c) AK_NOEXCEPT;

/*
 * The value of the first cookie "NAME=..." of s, one pair of surrounding
 * double quotes removed.  1 found (*value, *value_len), 0 not.
 */
int ak_cookie_find(const unsigned char *s, size_t len,
    const unsigned char *name, size_t name_len, size_t *value,
    size_t *value_len) AK_NOEXCEPT;

/*
 * s without every cookie "NAME=...", the others (as ak_cookie_next gives
 * them) joined by "; ": AK_STRIP_NONE, AK_STRIP_EMPTY, or AK_STRIP_REBUILT
 * with its length in *out_len.  ak_cookie_strip writes it (at most cap
 * bytes) and returns the length written, 0 when it does not fit.
 */
int ak_cookie_strip_len(const unsigned char *s, size_t len,
    const unsigned char *name, size_t name_len, size_t *out_len) AK_NOEXCEPT;
size_t ak_cookie_strip(const unsigned char *s, size_t len,
    const unsigned char *name, size_t name_len, unsigned char *out,
    size_t cap) AK_NOEXCEPT;

/*
 * An Authorization value "SCHEME SP ..." with the given scheme (any case of
 * its letters, then at least one space).  1 yes
 */
int ak_auth_is_scheme(const unsigned char *s, size_t len,
    const unsigned char *scheme, size_t scheme_len) AK_NOEXCEPT;

/*
 * The credential of "SCHEME TOKEN", spaces (0x20) around it dropped (may
 * be empty).  1 and *token, *token_len set; 0 not a value of that scheme.
 */
int ak_auth_scheme(const unsigned char *s, size_t len,
    const unsigned char *scheme, size_t scheme_len, size_t *token,
    size_t *token_len) AK_NOEXCEPT;

/*
 * Strict base64 (RFC 4648 standard alphabet): a length that is a multiple
 * of 4, '=' padding only at the end, the bits it leaves over zero.  The
 * decoded bytes (at most len / 4 * 3) go to out[0..cap).  1 and *out_len
 * set; 0 invalid or longer than cap.
 */
int ak_base64_decode(const unsigned char *s, size_t len, unsigned char *out,
    size_t cap, size_t *out_len) AK_NOEXCEPT;

/*
 * "Basic BASE64(user:password)": decodes into buf[0..cap) (cap >= len / 4
 * * 3 is enough) and sets [*key, *key + *key_len) of buf to the user name
 * (password 0) or the password (password 1), split at the first ':'.
 * 1 found; 0 not a Basic value; -1 a Basic value that is malformed (bad
 * base64, no ':' in the credential, or buf too small).
 */
int ak_auth_basic(const unsigned char *s, size_t len, int password,
    unsigned char *buf, size_t cap, size_t *key, size_t *key_len) AK_NOEXCEPT;

/* An Authorization value with the scheme "Bearer " (any case).  1 yes */
int ak_auth_is_bearer(const unsigned char *s, size_t len) AK_NOEXCEPT;

/*
 * The credential of "Bearer TOKEN", spaces around it dropped (may be
 * empty).  1 and *token, *token_len set; 0 not a Bearer value.
 */
int ak_auth_bearer(const unsigned char *s, size_t len, size_t *token,
    size_t *token_len) AK_NOEXCEPT;

/* The '&'-separated arguments s have one "NAME" or "NAME=...".  1 yes */
int ak_args_has(const unsigned char *s, size_t len,
    const unsigned char *name, size_t name_len) AK_NOEXCEPT;

/*
 * Where the arguments are: after the first '?' of a URI (request_line 0),
 * or of a request line "METHOD SP+ URI [SP HTTP/version]" after its first
 * space, up to the protocol (request_line 1).  1 and [*start, *end) set
 * (maybe empty); 0 no '?'.
 */
int ak_query_bounds(const unsigned char *s, size_t len, int request_line,
    size_t *start, size_t *end) AK_NOEXCEPT;

/*
 * s with every argument "NAME" or "NAME=..." removed from s[start, end):
 * the kept non-empty arguments joined by '&', the '?' before them dropped
 * when none is left (start > 0), s[0, start) and s[end, len) as they
 * were.  ak_args_strip_len: AK_STRIP_NONE (no such argument, s is kept
 * as it is) or AK_STRIP_REBUILT with the length in *out_len (never more
 * than len).  ak_args_strip writes it (at most cap bytes) and returns the
 * length, 0 when it does not fit or is empty.
 */
int ak_args_strip_len(const unsigned char *s, size_t len, size_t start,
    size_t end, const unsigned char *name, size_t name_len,
    size_t *out_len) AK_NOEXCEPT;
size_t ak_args_strip(const unsigned char *s, size_t len, size_t start,
    size_t end, const unsigned char *name, size_t name_len,
    unsigned char *out, size_t cap) AK_NOEXCEPT;


/* ------------------------------------------------------------------ */
/* Hashing                                                             */

#define AK_HASH_SHA256       0
#define AK_HASH_HMAC_SHA256  1

typedef struct ak_hasher_s  ak_hasher_t;

/*
 * Fetches the algorithm and allocates the contexts once.  For HMAC the
 * secret must be non-empty.  Returns NULL and a message in err on failure.
 */
ak_hasher_t *ak_hasher_new(int kind, const unsigned char *secret,
    size_t secret_len, char *err, size_t err_len) AK_NOEXCEPT;
void ak_hasher_free(ak_hasher_t *h) AK_NOEXCEPT;

/* Digest of the key's bytes.  0 ok, -1 error.  hot: no allocation. */
int ak_hasher_digest(ak_hasher_t *h, const unsigned char *key, size_t len,
    unsigned char out[AK_HASH_LEN]) AK_NOEXCEPT;

/* Lowercase hex, writes 2 * len characters, no NUL.  hot */
void ak_hex_encode(const unsigned char *in, size_t len, char *out) AK_NOEXCEPT;

/* Parses 64 hex digits (either case).  0 ok, -1 bad input. */
int ak_hex_decode_hash(const char *hex, size_t len,
    unsigned char out[AK_HASH_LEN]) AK_NOEXCEPT;


/* ------------------------------------------------------------------ */
/* Redis names                                                         */

/*
 * Every name the module and apikeyctl use in Redis, built here only.
 * prefix is api_key_redis prefix= / apikeyctl --prefix (default
 * "apikey:"), used as it is; hex is the lowercase hex of the key's hash:
 *
 *   {prefix}{hex}                                   the record (a hash)
 *   {prefix}id:{id}                                 id -> hex (a string)
 *   {prefix}usage:{{prefix}{hex}}:{hour|day|month}:{start}
 *                                                   a quota counter of the
 *                                                   window starting at unix
 *                                                   time start (decimal)
 *   {prefix}rate:{{prefix}{hex}}                    the cluster-wide GCRA
 *                                                   state of the key's rate
 *   __keyspace@{db}__:{prefix}                      what the keyspace
 *                                                   channel of a record
 *                                                   starts with
 *
 * Every per-key name beside the record carries the record's full name as
 * its Redis Cluster hash tag (between '{' and '}'), so it lands in the
 * record's slot: a script over a counter and the record never crosses
 * slots.  A prefix holding '{' or '}' would break that (the tag is what
 * lies between the FIRST '{' and the next '}'): ak_redis_prefix_check
 * refuses it, and the builders of tagged names write nothing for it.
 *
 * The builders write no NUL and return the length written, or 0 (and
 * write nothing) when the name would not fit in cap or an argument is
 * invalid.  hot: no allocation.
 */

#define AK_REDIS_PREFIX_MAX  256    /* the longest prefix the module uses */
#define AK_REDIS_NAME_FIXED  99     /* the longest part of a record, usage,
                                       rate or id (of at most AK_ID_MAX_LEN)
                                       name beside its one or two copies of
                                       the prefix: "usage:{" hex "}:month:"
                                       -9223372036854775808 */
#define AK_REDIS_NAME_MAX    (2 * AK_REDIS_PREFIX_MAX + AK_REDIS_NAME_FIXED)

/* 0: prefix may be used; -1: it holds '{' or '}' (or is NULL with a
 * length) */
int ak_redis_prefix_check(const char *prefix, size_t prefix_len) AK_NOEXCEPT;

size_t ak_redis_name_record(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], char *buf, size_t cap) AK_NOEXCEPT;

/*
 * Names of the whole prefix, not of one key (no hash tag: one Redis key
 * each, in one slot of a cluster):
 *   {prefix}meta    the marker of the hash mode (a hash: "hash", "check";
 *                   see README "Redis records")
 */
size_t ak_redis_name_marker(const char *prefix, size_t prefix_len, char *buf,
    size_t cap) AK_NOEXCEPT;

/* The text whose hash (under api_key_hash) is the marker's "check" field */
#define AK_MARKER_LABEL  "ngx_http_api_key_module hash check v1"

size_t ak_redis_name_id(const char *prefix, size_t prefix_len,
    const char *id, size_t id_len, char *buf, size_t cap) AK_NOEXCEPT;

/*
 * Names of the whole prefix, not of one key (no hash tag: one Redis key
 * each, in one slot of a cluster):
 *   {prefix}audit   apikeyctl's audit trail (a stream)
 *   {prefix}meta    the marker of the hash mode (a hash: "hash", "check";
 *                   see README "Redis records")
 */
size_t ak_redis_name_audit(const char *prefix, size_t prefix_len, char *buf,
    size_t cap) AK_NOEXCEPT;
size_t ak_redis_name_marker(const char *prefix, size_t prefix_len, char *buf,
    size_t cap) AK_NOEXCEPT;

/* The text whose hash (under api_key_hash) is the marker's "check" field */
#define AK_MARKER_LABEL  "ngx_http_api_key_module hash check v1"

/* period: AK_PERIOD_HOUR, _DAY or _MONTH (anything else: 0) */
size_t ak_redis_name_usage(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], uint8_t period,
    int64_t window_start, char *buf, size_t cap) AK_NOEXCEPT;

/* the key's cluster-wide rate state (rate_scope=cluster) */
size_t ak_redis_name_rate(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], char *buf, size_t cap) AK_NOEXCEPT;

size_t ak_redis_name_keyspace(int64_t db, const char *prefix,
    size_t prefix_len, char *buf, size_t cap) AK_NOEXCEPT;

/*
 * Glob patterns (SCAN MATCH, PSUBSCRIBE) matching every name under prefix:
 * the prefix with the glob characters * ? [ ] \ escaped by a backslash,
 * then "*"; the second one for the keyspace channels of db.  A
 * pattern is at most 2 * prefix_len + 1 bytes (+ the keyspace part).
 */
size_t ak_redis_pattern_records(const char *prefix, size_t prefix_len,
    char *buf, size_t cap) AK_NOEXCEPT;
size_t ak_redis_pattern_keyspace(int64_t db, const char *prefix,
    size_t prefix_len, char *buf, size_t cap) AK_NOEXCEPT;

/*
 * Redis Cluster: the slot (0 .. AK_REDIS_SLOTS - 1) of a key name, as
 * CLUSTER KEYSLOT says: CRC16/XMODEM of its hash tag (the bytes between the
 * first '{' and the next '}', when not empty), else of the whole name.
 * hot: no allocation.
 */
#define AK_REDIS_SLOTS  16384

uint16_t ak_redis_crc16(const char *data, size_t len) AK_NOEXCEPT;
unsigned ak_redis_slot(const char *key, size_t len) AK_NOEXCEPT;

/*
 * Request counts and last use (usage.cpp, written by the module's usage
 * flush): per key, with the record's whole name as a Redis Cluster hash
 * tag, so that both names of a key live in its record's slot:
 *
 *   {prefix}usage:{{prefix}{hex}}:requests:{day}   a hash: requests of the
 *                                                  UTC day starting at unix
 *                                                  time day, by class
 *   {prefix}usage:{{prefix}{hex}}:last_used        unix seconds (a string)
 *
 * As the builders above; at most 2 * prefix_len + AK_REDIS_TAGGED_FIXED.
 */
#define AK_REDIS_TAGGED_FIXED  128  /* "usage:{" hex "}:requests:" int64 */
#define AK_REDIS_TAGGED_MAX    (2 * AK_REDIS_PREFIX_MAX + AK_REDIS_TAGGED_FIXED)

size_t ak_redis_name_requests(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], int64_t day, char *buf,
    size_t cap) AK_NOEXCEPT;
size_t ak_redis_name_last_used(const char *prefix, size_t prefix_len,
    const unsigned char hash[AK_HASH_LEN], char *buf, size_t cap) AK_NOEXCEPT;

/*
 * The hash of a record's name: 0 when name is prefix followed by exactly
 * 64 lowercase hex digits (a name ak_redis_name_record builds), else -1.
 */
int ak_redis_name_parse_record(const char *prefix, size_t prefix_len,
    const char *name, size_t len, unsigned char hash[AK_HASH_LEN]) AK_NOEXCEPT;


/* ------------------------------------------------------------------ */
/* Records                                                             */

#define AK_STATUS_ACTIVE    0
#define AK_STATUS_REVOKED   1
#define AK_STATUS_DISABLED  2

#define AK_PERIOD_NONE      0
#define AK_PERIOD_SECOND    1       /* rate only */
#define AK_PERIOD_MINUTE    2       /* rate only */
#define AK_PERIOD_HOUR      3       /* rate and quota */
#define AK_PERIOD_DAY       4       /* quota only */
#define AK_PERIOD_MONTH     5       /* quota only */

/* the record's rate_scope: where its rate is counted */
#define AK_RATE_SCOPE_DEFAULT  0    /* no field: the zone's default */
#define AK_RATE_SCOPE_NODE     1    /* "node": per nginx node (GCRA in the
                                       zone) */
#define AK_RATE_SCOPE_CLUSTER  2    /* "cluster": across the nodes sharing
                                       the Redis (leased tokens) */

typedef struct {
    char         id[AK_ID_MAX_LEN + 1];     /* NUL-terminated, safe to log */
    char         msg[AK_ERR_LEN];           /* e.g. field "rate": ... */
} ak_record_err_t;

/*
 * Builds the compact serialized record (the "blob" stored in the cache)
 * from the field/value pairs of an HGETALL answer.  Unknown fields are
 * ignored.  Returns the blob length (> 0) or -1 when a field is malformed
 * or the record does not fit in blob_cap; err then names the key id (the
 * record's valid "id" field, else the default id) and the field.
 */
int ak_record_build(const unsigned char hash[AK_HASH_LEN],
    const ak_str_t *fields, const ak_str_t *values, size_t n,
    unsigned char *blob, size_t blob_cap, ak_record_err_t *err) AK_NOEXCEPT;

/*
 * The field/value pairs of an HGETALL answer as hiredis's reader parsed it
 * (resp.cpp; only the reply structure is read).  Checked in this order:
 * AK_HGETALL_NOT_PAIRS   not an array, or an odd number of elements;
 * AK_HGETALL_EMPTY       an empty array: no such record;
 * AK_HGETALL_BAD_ELEMENT an element that is not a bulk string (an integer,
 *                        a nested array, a nil, a status...);
 * AK_HGETALL_TOO_MANY    more than cap pairs: *n says how many (call again
 *                        with room for them);
 * AK_HGETALL_FIELDS      *n pairs in fields[] / values[], pointing into
 *                        the reply's strings.  hot: no allocation
 */
#define AK_HGETALL_FIELDS       0
#define AK_HGETALL_EMPTY        1
#define AK_HGETALL_NOT_PAIRS    2
#define AK_HGETALL_BAD_ELEMENT  3
#define AK_HGETALL_TOO_MANY     4

struct redisReply;

int ak_hgetall_fields(const struct redisReply *reply, ak_str_t *fields,
    ak_str_t *values, size_t cap, size_t *n) AK_NOEXCEPT;

/* A parsed view of a blob; pointers point into the blob (or id_buf). */
typedef struct {
    ak_str_t     id;            /* record id, or first 12 hex of the hash */
    ak_str_t     owner;
    ak_str_t     plan;
    ak_str_t     scopes;        /* space-separated, normalised */
    int64_t      expires_at;    /* unix seconds, 0 = never */
    uint8_t      status;        /* AK_STATUS_* */
    uint8_t      has_ips;
    uint8_t      has_referrers;
    uint8_t      rate_period;   /* AK_PERIOD_NONE/SECOND/MINUTE/HOUR */
    uint32_t     rate_n;        /* N of "N/period" */
    uint32_t     burst;         /* in effect: the field, or N - 1 without one */
    uint64_t     rate_interval_us;  /* period / N */
    uint8_t      quota_period;  /* AK_PERIOD_NONE/HOUR/DAY/MONTH */
    uint64_t     quota_n;
    uint8_t      rate_scope;    /* AK_RATE_SCOPE_*: the field (only with a
                                   rate), DEFAULT without one */
    const unsigned char *identity;  /* AK_HASH_LEN bytes: the hash whose
                                       quota counters the key uses (kept
                                       across rotations), NULL: its own */
    int64_t      alias_until;   /* unix seconds, 0 = not an alias: the old
                                   secret of a rotated key, refused as
                                   revoked from then on */
    const unsigned char *blob;
    size_t       blob_len;
    const unsigned char *ips;       /* the binary ips rules in the blob
                                       (has_ips), for the matcher */
    const unsigned char *referrers; /* the same for the referrers rules */
    uint16_t     ips_len;
    uint16_t     referrers_len;
    char         id_buf[AK_ID_DEFAULT_LEN];
} ak_record_t;

/* 0 ok, -1 corrupt blob.  hot */
int ak_record_view(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec) AK_NOEXCEPT;

/*
 * The view of the request path.  The same view as ak_record_view, with two
 * differences:
 * - a record without an id leaves rec->id empty (data NULL, len 0) instead
 *   of making the default one: ak_record_default_id() makes it when
 *   something asks (the request path mostly does not);
 * - the bytes of the ips and referrers rules are not checked (their
 *   section's bounds are): every blob in the cache was made by
 *   ak_record_build, whose output ak_record_view accepts, and the two
 *   matchers bound every read by the section and answer "not allowed" on
 *   a rule they cannot read.  So it accepts every blob ak_record_view
 *   accepts, with the same view, and more only where a rules section is
 *   malformed (shared memory damaged: the request is then denied as
 *   ip_denied / referrer_denied, not answered bad_record).  hot
 */
int ak_record_view_lazy(const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, ak_record_t *rec) AK_NOEXCEPT;

/*
 * 1: the blob is a well-formed record that only its texts describe: active,
 * no expiry, ips, referrers, scopes, rate, quota or extension; id, owner
 * and plan (each optional) as ak_record_view_lazy reads them, and nothing
 * after (a record without an id is as the views read it with a hash).
 * Such a record allows every request that presents its key (no
 * location scopes asked): the caller can decide without a view and make
 * the view only when a text is asked for.  0: anything else (the view
 * tells what, or that the blob is corrupt).  hot
 */
int ak_record_plain(const unsigned char *blob, size_t len) AK_NOEXCEPT;

/*
 * 1: the blob is a well-formed record of texts (id, owner, plan, each
 * optional) and a rate (with its burst), nothing else: active, no expiry,
 * ips, referrers, scopes, quota or extension (so the rate's scope is the
 * zone's), its rate and burst under 2,097,152 (three bytes), each text's
 * length in at most two bytes (else 0: the view reads it).  The id's
 * characters are not checked (the cache checked them when it stored the
 * record: ak_record_entry_flags).  rec (when not NULL) is then set as
 * ak_record_view_lazy sets it but for the texts, left empty (id NULL: the
 * caller keeps the blob as the request's text and views it when a text is
 * asked for).  0: anything else, rec untouched.  hot
 */
int ak_record_rate_only(const unsigned char *blob, size_t len,
    ak_record_t *rec) AK_NOEXCEPT;

/* AK_ENTRY_PLAIN (ak_record_plain), AK_ENTRY_RATED (ak_record_rate_only,
 * the id checked too) or 0: what the cache notes of a record it stores */
uint32_t ak_record_entry_flags(const unsigned char *blob, size_t len)
    AK_NOEXCEPT;

/*
 * rec->id empty (ak_record_view_lazy of a record without one): the default
 * id, as ak_record_view makes it (the first 12 hex digits of hash, hash the
 * view's), in rec->id_buf.  Else, or with hash NULL, nothing.
 */
void ak_record_default_id(const unsigned char hash[AK_HASH_LEN],
    ak_record_t *rec) AK_NOEXCEPT;

/* family 4 (addr: 4 bytes) or 6 (16 bytes; v4-mapped handled). 1 allowed,
 * 1 also when the record has no ips rule.  hot */
int ak_record_ip_allowed(const ak_record_t *rec, int family,
    const unsigned char *addr) AK_NOEXCEPT;

/* The raw Referer header value (NULL/0 when absent).  1 allowed; 1 when
 * the record has no referrers rule.  hot */
int ak_record_referrer_allowed(const ak_record_t *rec, const char *referer,
    size_t len) AK_NOEXCEPT;

/*
 * The same in two steps, for a caller that remembers verdicts by host:
 * the host of the raw Referer value (NULL when it is absent or names none,
 * which denies), then whether the record's referrers rule allows that
 * host (ak_referer_host()'s answer, not NULL).  hot
 */
const char *ak_referer_host(const char *referer, size_t len,
    size_t *host_len) AK_NOEXCEPT;
int ak_record_referrer_host_allowed(const ak_record_t *rec, const char *host,
    size_t host_len) AK_NOEXCEPT;

/* what ends a Referer's authority (and so its host): the path, query or
 * fragment; the core's parse stops at these and at the value's end */
#define AK_REFERER_HOST_ENDS(c)  ((c) == '/' || (c) == '?' || (c) == '#')

/*
 * For a caller that keeps verdicts by host: the length of the part of the
 * Referer value that names its host (host, host_len: ak_referer_host()'s
 * answer for it), "scheme://host", when the host follows "://" directly
 * and ends at AK_REFERER_HOST_ENDS() or the value's end; 0 otherwise (user
 * info, a port, brackets, a trailing dot: such values are judged each
 * time).  Any value that begins with those bytes followed by
 * AK_REFERER_HOST_ENDS() or nothing names the same host: the verdict for
 * one is the verdict for all (fuzz_referrer checks it).  Nothing after
 * the host is part of it.
 */
size_t ak_referer_kept_prefix(const char *referer, size_t len,
    const char *host, size_t host_len) AK_NOEXCEPT;

/* 1 if the record holds every scope of required[0..n).  hot */
int ak_record_has_scopes(const ak_record_t *rec, const ak_str_t *required,
    size_t n) AK_NOEXCEPT;


/* ------------------------------------------------------------------ */
/* Rate limiting (GCRA) and quota windows: pure arithmetic.            */

typedef struct {
    uint32_t     remaining;     /* requests left in the current burst */
    uint64_t     retry_after_us;/* when limited: wait before a retry */
    uint64_t     reset_us;      /* time until the bucket is full again */
} ak_rate_result_t;

/*
 * GCRA: a key may send burst+1 requests at once, then one per interval.
 * *tat is the theoretical arrival time (microseconds, same clock as now).
 * Updates *tat only when the request is allowed.  1 allowed, 0 limited. hot
 */
int ak_gcra(uint64_t *tat, uint64_t now_us, uint64_t interval_us,
    uint32_t burst, ak_rate_result_t *res) AK_NOEXCEPT;

/*
 * The burst of a record with "rate N/period" and no burst field: a bucket
 * of N (N requests at once, refilled at N per period), as users read
 * "N per period": N - 1, at most AK_BURST_MAX.  0 for rate_n 0.
 */
#define AK_BURST_MAX  1000000
uint32_t ak_rate_default_burst(uint64_t rate_n) AK_NOEXCEPT;

/*
 * Quota counts left, for $api_key_quota_remaining: quota_n minus what was
 * consumed, where q_used is the key's total as last known (in Redis, plus
 * the counts granted offline) and q_left the part of it granted to this node
 * but not used yet.  Saturates: never below 0, never above quota_n.  hot
 */
uint64_t ak_quota_remaining(uint64_t quota_n, uint64_t q_used,
    uint64_t q_left) AK_NOEXCEPT;

/*
 * UTC calendar window containing unix time now for AK_PERIOD_HOUR/DAY/MONTH:
 * [*start, *end).  Returns 0, or -1 for a bad period.
 */
int ak_quota_window(uint8_t period, int64_t now, int64_t *start,
    int64_t *end) AK_NOEXCEPT;


/*
 * Per-key mutable state, kept across re-reads of the record (in the cache
 * entry, see ak_cache_state).
 *
 * tat_us is the entry's "tag word": its low AK_TAT_BITS bits are the TAT of
 * this node's GCRA (microseconds; AK_TAT_NONE is never a TAT: it marks a
 * cache slot that is no entry), the bits above belong to the cache (a tag
 * that changes with the slot's identity, and the CLOCK referenced bit).
 * In the cache the word is changed by atomic operations only, also without
 * the zone lock (ak_cache_gcra): ak_limits_admit_ex updates it by
 * compare-and-swap and keeps the upper bits.  A state outside the cache
 * (tests, api_key_verify's copy) has them 0 and tat_us is the TAT.
 * now_us is a monotonic clock (time since boot): a TAT, at most now_us +
 * (burst + 1) x interval, must stay below 2^52 us (142 years; the largest
 * burst x interval is 1,000,000 h, 114 years), else it is held at
 * AK_TAT_NONE - 1.
 *
 * q_window and q_left, bytes 8-15, are the "quota word": in the cache
 * ak_cache_quota_take takes one count from it without the zone lock (by
 * compare-and-swap, only in the current window and while q_left > 0), so
 * every other change of the two, with the lock held too, is made by
 * compare-and-swap (ak_limits_admit_ex, ak_quota_lease_apply,
 * ak_quota_offline_apply) or an atomic store of a word it no longer reads
 * (the cache's replace when the record's change drops the counts).
 */
#define AK_TAT_BITS   52
#define AK_TAT_MASK   ((UINT64_C(1) << AK_TAT_BITS) - 1)
#define AK_TAT_NONE   AK_TAT_MASK                 /* not an entry */
#define AK_TAT_REF    (UINT64_C(1) << 63)         /* CLOCK: referenced */

typedef struct {
    uint64_t     tat_us;            /* GCRA of this node (AK_TAT_MASK bits)
                                       and the cache's tag (see above) */
    uint32_t     q_window;          /* quota window id (start / 3600) */
    uint32_t     q_left;            /* leased counts not yet used */
    uint64_t     q_used;            /* last total seen in Redis */
    uint32_t     r_left;            /* rate_scope=cluster: tokens leased to
                                       this node, not used yet */
    uint32_t     r_next_ms;         /* no rate lease before then: Redis has
                                       no batch before (monotonic ms, wraps:
                                       compared as a signed difference; 0:
                                       none) */
} ak_key_state_t;

/* ------------------------------------------------------------------ */
/* Admission: the rate and the quota of one request, decided on the    */
/* key's ak_key_state_t (with the zone's lock held).  Pure arithmetic. */

#define AK_ADMIT            0   /* admitted: the rate and one quota count
                                   consumed */
#define AK_ADMIT_PREFETCH   1   /* admitted as AK_ADMIT, and the node's
                                   counts run low: fetch the next lease in
                                   the background */
#define AK_NEED_LEASE       2   /* nothing consumed: no count is left on this
                                   node but the key's total is under its
                                   quota: ask Redis for a lease (or grant
                                   offline), then decide again */
#define AK_DENY_RATE        3   /* nothing consumed: the rate limits */
#define AK_DENY_QUOTA       4   /* nothing consumed: the quota is used up */
#define AK_DENY_BAD         5   /* nothing consumed: the record's quota
                                   period is not one (a bad record) */
#define AK_NEED_RATE_LEASE  6   /* nothing consumed: a cluster-wide rate and
                                   no token left on this node: ask Redis
                                   for tokens, then decide again */

typedef struct {
    ak_rate_result_t rate;      /* the record has a rate: ak_gcra's answer */
    uint64_t     quota_remaining;   /* admitted with a quota: for
                                       $api_key_quota_remaining; else 0 */
    uint64_t     quota_used;    /* with a quota: the key's total as known
                                   (q_used), where a lease starts from */
    uint64_t     retry_after;   /* AK_NEED_LEASE, AK_DENY_QUOTA: seconds to
                                   the end of the window, at least 1 */
    int64_t      window_start;  /* with a quota: the window, [start, end) */
    int64_t      window_end;
    uint32_t     window;        /* its id: ak_key_state_t.q_window */
    uint32_t     rate_lease;    /* cluster rate, admitted: 1 when the node's
                                   tokens run low (fetch more in the
                                   background) */
} ak_admit_result_t;

/*
 * The quota part alone.  The window of now is computed (a new window
 * starts with nothing leased and nothing used); a count leased to this node
 * is consumed if there is one (AK_ADMIT, or AK_ADMIT_PREFETCH when the key
 * is under its quota and fewer than quota_lease / 4 + 1 counts are left
 * here); else AK_NEED_LEASE while the known total is under quota_n, and
 * AK_DENY_QUOTA when it is not.  period: AK_PERIOD_HOUR/DAY/MONTH, else
 * AK_DENY_BAD (st untouched).  hot
 */
int ak_quota_admit(ak_key_state_t *st, uint8_t period, uint64_t quota_n,
    uint64_t quota_lease, int64_t now, ak_admit_result_t *res) AK_NOEXCEPT;

/*
 * The quota's answer for a count just taken, q_left left and q_used the
 * key's known total: res->quota_remaining, and AK_ADMIT_PREFETCH when the
 * key is under its quota and fewer than quota_lease / 4 + 1 counts are left
 * here, else AK_ADMIT.  What ak_quota_admit returns when it takes a count
 * (and ak_cache_quota_take).  hot
 */
int ak_quota_took(uint64_t quota_n, uint64_t q_used, uint32_t q_left,
    uint64_t quota_lease, ak_admit_result_t *res) AK_NOEXCEPT;

/*
 * Both limits of rec, consumed together: the rate first (ak_gcra on
 * st->tat_us at now_us; when it limits, AK_DENY_RATE and the quota is not
 * looked at), then the quota (ak_quota_admit at now); the rate is consumed
 * only when the quota admits too, so a request denied by one consumes
 * neither.  A record without a rate or without a quota skips that part.
 * hot
 */
int ak_limits_admit(ak_key_state_t *st, const ak_record_t *rec, int64_t now,
    uint64_t now_us, uint64_t quota_lease, ak_admit_result_t *res) AK_NOEXCEPT;

/*
 * The same, with the rate counted across the nodes when flags has
 * AK_LIMITS_CLUSTER_RATE (the glue sets it for a key whose rate scope is
 * cluster while Redis can be asked for tokens; without it, the per-node
 * limiter alone: the fallback).  A cluster rate takes both this node's
 * GCRA (so one node never exceeds the rate) and one token leased from the
 * Redis-side GCRA (so the nodes together do not).  Without a token:
 * AK_DENY_RATE before r_next_ms (Redis said it has none before;
 * retry_after_us until then), else AK_NEED_RATE_LEASE.  As for the quota,
 * nothing is consumed unless every limit admits; admitted with fewer than a
 * quarter of a batch left and r_next_ms past, res->rate_lease is 1.  hot
 */
#define AK_LIMITS_CLUSTER_RATE  0x01

int ak_limits_admit_ex(ak_key_state_t *st, const ak_record_t *rec,
    int64_t now, uint64_t now_us, uint64_t quota_lease, unsigned flags,
    ak_admit_result_t *res) AK_NOEXCEPT;

/* NODE or CLUSTER: the record's rate_scope, else zone_default */
uint8_t ak_rate_scope(const ak_record_t *rec, uint8_t zone_default)
    AK_NOEXCEPT;

/*
 * Cluster-wide rate: tokens leased in batches from a GCRA kept in Redis
 * ({prefix}rate:{{prefix}{hash}}: its TAT in microseconds of Redis's
 * clock), by a script that computes ak_gcra_grant.
 *
 * The batch: the tokens of AK_RATE_LEASE_WINDOW_US at the rate, at least 1
 * (so at low rates one token at a time: nothing sits unused), at most
 * AK_RATE_LEASE_MAX.
 */
#define AK_RATE_LEASE_WINDOW_US  100000     /* 100 ms of the rate */
#define AK_RATE_LEASE_MAX        1000

uint32_t ak_rate_lease_want(uint64_t interval_us) AK_NOEXCEPT;

/*
 * The depth the Redis-side GCRA allows: the record's burst plus a batch
 * less one, plus AK_RATE_LEASE_WINDOW_US, (burst + want - 1) * interval +
 * 100 ms: a whole batch can be granted at once even with burst 0, and a
 * token up to 100 ms before its time, so a lease's round trip and a
 * request arriving late lose no capacity (each node's own GCRA still
 * paces its requests).  Saturates.
 */
uint64_t ak_rate_lease_tau(uint64_t interval_us, uint32_t burst,
    uint32_t want) AK_NOEXCEPT;

/*
 * GCRA granting up to want requests at once (what the Redis script does):
 * t = max(*tat, now); when t - now > tau, none; else min(want, (tau - (t -
 * now)) / interval + 1), and *tat advances by interval per token granted.
 * *retry_us: how long until a whole batch (want) would conform, 0 if it
 * already does (the node asks for no batch before).  Returns the grant.
 */
uint64_t ak_gcra_grant(uint64_t *tat, uint64_t now_us, uint64_t interval_us,
    uint64_t tau_us, uint64_t want, uint64_t *retry_us) AK_NOEXCEPT;

/*
 * A rate lease's answer at now_us: grant more tokens for this node
 * (r_left saturates), and no lease before retry_us (0: at any time).
 */
void ak_rate_lease_apply(ak_key_state_t *st, uint64_t grant,
    uint64_t retry_us, uint64_t now_us) AK_NOEXCEPT;

/*
 * How many counts to ask a lease for: a quarter of what is left of the
 * quota after used (so few counts sit unused as it runs out), at most
 * quota_lease, at least 1.
 */
uint64_t ak_quota_lease_want(uint64_t quota_n, uint64_t used,
    uint64_t quota_lease) AK_NOEXCEPT;

/*
 * A lease's answer for window: grant more counts for this node, and the
 * key's total in Redis is now at least used.  Applied only when st is
 * still in that window: 1 applied, 0 not (the counts are to be given
 * back).  q_left saturates.
 */
int ak_quota_lease_apply(ak_key_state_t *st, uint32_t window, uint64_t grant,
    uint64_t used) AK_NOEXCEPT;

/*
 * Counts granted without Redis (the offline share) for window: served like
 * leased ones and counted as used at once.  1 applied, 0 not (st is in
 * another window).
 */
int ak_quota_offline_apply(ak_key_state_t *st, uint32_t window,
    uint64_t block) AK_NOEXCEPT;

/*
 * One count taken from st for window, given back (with the zone lock held,
 * so that the window stays): 1 given, 0 not (st is in another window now,
 * the count is dropped with the window it belonged to).
 */
int ak_quota_give_back(ak_key_state_t *st, uint32_t window) AK_NOEXCEPT;


/* ------------------------------------------------------------------ */
/* Shared-memory cache                                                 */

/*
 * The cache lives in one block of shared memory handed over by the glue.
 * It stores nothing but pointers-free data (offsets), so it works at any
 * mapping address.
 *
 * Locking.  Need NO lock (any number of workers at once, also while a
 * writer holds the lock): ak_cache_lookup, ak_cache_lookup_kept,
 * ak_cache_lookup_again, ak_cache_event_seq, ak_cache_gcra,
 * ak_cache_gcra_found, ak_cache_keep (it writes the caller's memory only),
 * ak_cache_quota_take, ak_cache_limits_take, ak_cache_get_stats (a
 * snapshot, its counts may be a moment apart), and
 * ak_cache_create/attach/validate/
 * min_size/bytes_per_key (before the zone is shared).  Every other
 * function must be called with the zone's lock held: they are the writers,
 * serialised by it; a pointer ak_cache_state returns may be used only
 * until the lock is released.  Each is O(1) (eviction of one entry may free
 * a few chained slots; a CLOCK sweep looks at a bounded number of slots).
 * The readers retry (a bounded number of times) while a writer changes
 * their bucket group; a writer killed at any instruction leaves a cache the
 * readers can still read (their answer may be MISS), and the next writer
 * reformats it.
 *
 * Time: now_ms is a monotonic millisecond clock shared by all workers.
 */

/* ak_cache_lookup and _again are safe without the zone lock */
#define AK_CACHE_LOCKFREE_READS  1

typedef struct ak_cache_s  ak_cache_t;

typedef struct {
    uint64_t     ttl_ms;
    uint64_t     negative_ttl_ms;
    uint64_t     stale_ms;
    uint32_t     negative_max_pct;  /* share of slots negative entries may
                                       hold, 1..100 (default 25) */
} ak_cache_conf_t;

typedef struct {
    uint64_t     hits;
    uint64_t     misses;
    uint64_t     stale_hits;
    uint64_t     negative_hits;
    uint64_t     evictions;
    uint64_t     inserts;
    uint32_t     entries;           /* positive entries */
    uint32_t     negative_entries;
    uint32_t     slots_total;
    uint32_t     slots_free;
    uint64_t     read_retries;      /* lock-free lookups that read again
                                       because a writer changed their
                                       bucket group meanwhile */
} ak_cache_stats_t;

#define AK_CACHE_MISS       0
#define AK_CACHE_FRESH      1   /* positive, within ttl, current gen */
#define AK_CACHE_NEGATIVE   2   /* "no such key", within negative_ttl */
#define AK_CACHE_STALE      3   /* positive, past ttl (within ttl+stale)
                                   or of an older generation: re-read it,
                                   use it only if Redis cannot answer */

#define AK_ENTRY_REVOKED    0x01 /* marked revoked by an event */
#define AK_ENTRY_BAD        0x02 /* a NEGATIVE entry: the record exists but
                                    is malformed (ak_cache_put_bad) */
#define AK_ENTRY_PLAIN      0x04 /* a positive entry whose blob is a plain
                                    record (ak_record_plain, when stored) */
#define AK_ENTRY_RATED      0x08 /* ... texts and a rate only
                                    (ak_record_entry_flags, when stored) */
#define AK_ENTRY_KEPT       0x10 /* the caller keeps this store's record:
                                    not copied (ak_cache_lookup_kept) */

/*
 * The statistics stripe the lookups of this process count in (n modulo
 * the 16 stripes): each worker its own (its number), so that workers never
 * write one cache line on every lookup.  Process-wide, called once at
 * worker start, before any lookup; without it, stripe 0.
 */
void ak_cache_set_stripe(unsigned n) AK_NOEXCEPT;

/* Smallest block ak_cache_create accepts. */
size_t ak_cache_min_size(void) AK_NOEXCEPT;

/* Formats [mem, mem + size) as an empty cache.  NULL if too small. */
ak_cache_t *ak_cache_create(void *mem, size_t size,
    const ak_cache_conf_t *conf) AK_NOEXCEPT;

/*
 * Re-uses a block formatted by ak_cache_create with the same layout
 * version and size (nginx -s reload).  NULL when ak_cache_validate refuses
 * it.
 */
ak_cache_t *ak_cache_attach(void *mem, size_t size) AK_NOEXCEPT;

/*
 * With the zone's lock held: a block of this layout (the fields
 * ak_cache_validate checks first: magic, version, sizes, offsets) whose
 * last writer died in the middle of an operation (its flag still set, or
 * counts that do not add up) is emptied, as the next writer would do.
 * 1 emptied, 0 nothing to do, -1 not a block of this layout (left alone).
 * For a reload that keeps the zone, and for a lookup that ran out of
 * retries (a bucket group's counter left odd by a dead writer).
 */
int ak_cache_recover(void *mem, size_t size) AK_NOEXCEPT;

/*
 * Checks that [mem, mem + size) holds a cache that can be attached: the
 * layout fields of its header (size, counts, offsets) match the block size
 * given, which every later operation relies on, and the mutable header
 * fields are plausible.  NULL when it can, else a static message saying
 * what is wrong.
 */
const char *ak_cache_validate(const void *mem, size_t size) AK_NOEXCEPT;

/*
 * A full consistency check of a cache (for tests and fuzzing; O(slots),
 * not for a worker's path, with the lock held): ak_cache_validate's
 * checks, no writer interrupted (no group counter odd), then every bucket
 * chain, the free bitmap and every overflow chain walked, each slot below
 * the high-water mark found exactly once in one of them with the tag word
 * of what it is (entry or not), and the counts they keep matching what was
 * found.  scratch: at least ak_cache_check_scratch(c) bytes.  NULL when
 * consistent, else a static message.
 */
size_t ak_cache_check_scratch(const ak_cache_t *c) AK_NOEXCEPT;
const char *ak_cache_check(const ak_cache_t *c, unsigned char *scratch,
    size_t scratch_len) AK_NOEXCEPT;

void ak_cache_set_conf(ak_cache_t *c, const ak_cache_conf_t *conf) AK_NOEXCEPT;

/* Bytes of shared memory a cached key costs (slot + index share). */
size_t ak_cache_bytes_per_key(void) AK_NOEXCEPT;

/*
 * Looks the hash up without the lock and marks its entry referenced (for
 * CLOCK).  On FRESH and STALE copies the blob into buf (cap >=
 * AK_RECORD_MAX; a record that does not fit in cap is a MISS; bytes after
 * it may be written too, never past cap: whole words are copied, up to 7
 * bytes more when cap has room for them, and the 40 bytes of a slot's
 * inline part for a record of up to 36 when cap >= 40) and sets *len,
 * *flags (AK_ENTRY_*) and *slot (a handle for ak_cache_state and
 * ak_cache_gcra; the slot may hold another entry by the time it is used:
 * they check).  Expired entries (negative past negative_ttl, positive
 * past ttl + stale) are reported as MISS and left for a writer to remove.
 * A lookup that found its bucket group changing in each of its 16
 * attempts answers MISS.  hot
 */
int ak_cache_lookup(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, size_t *len,
    uint32_t *flags, uint32_t *slot) AK_NOEXCEPT;

/*
 * ak_cache_lookup without counting it in the statistics: for the second
 * look of a request that waited for Redis (its first look was counted as
 * a miss).
 */
int ak_cache_lookup_again(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, size_t *len,
    uint32_t *flags, uint32_t *slot) AK_NOEXCEPT;

/*
 * ak_cache_lookup for a caller that keeps records it was given, its
 * answers in *found: found->mark is the mark of the one it keeps for hash
 * (0: none).  A positive entry that still holds the record of that store
 * is not copied: *flags gets AK_ENTRY_KEPT too and buf is left as it was
 * (the caller's kept copy is the record).  A positive entry found sets
 * found->mark to its mark, 0 otherwise, and 0 for an AK_ENTRY_PLAIN or
 * AK_ENTRY_RATED one (such records are read where they are copied: none
 * is kept).  A mark names one store of one key's record in one cache: the
 * time it was stored and the cache's count of stores then, mixed with the
 * cache's random salt.  Two stores of one cache share it only when their
 * counts are 2^32 stores apart and their times 2^32 ms (49.7 days) apart
 * to the millisecond; stores of two caches (salts made apart) share it by
 * chance, one in 2^64 (a block copied and attached elsewhere keeps its
 * salt: its marks are the original's).  hot
 */
typedef struct ak_cache_kept_s  ak_cache_kept_t;

typedef struct {
    uint64_t          mark;     /* in: the kept record's (0: none), unless
                                   kept is set; out: the entry's */
    ak_cache_kept_t  *kept;     /* in: the caller's kept record for hash's
                                   place, or NULL (below) */
    size_t            len;      /* out, as ak_cache_lookup's *len, *flags */
    uint32_t          flags;    /* and *slot */
    uint32_t          slot;
    uint64_t          writes;   /* out, for ak_cache_keep(): the cache's */
    uint64_t          until;    /* count of writes when the lookup began
                                   (kept NULL: 1, none); the now_ms a FRESH
                                   entry stops being (else 0) */
} ak_cache_found_t;

int ak_cache_lookup_kept(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, unsigned char *buf, size_t cap, ak_cache_found_t *found)
    AK_NOEXCEPT;

/*
 * A kept record: what ak_cache_keep() noted of the lookup that gave it,
 * for ak_cache_lookup_kept() (found->kept), which then takes the mark
 * from it.  The cache counts its writes that may change an entry (a
 * store, a revocation, a removal, an eviction, a flush, a new generation
 * or configuration): the count is odd while a writer is at work, and even
 * and higher after.  A lookup of the kept record's key that finds the
 * count even and unchanged since, before k->until, answers FRESH with
 * AK_ENTRY_KEPT, the kept len, flags and slot, without reading the entry
 * (counted as a hit; the entry's referenced bit is not set: no eviction
 * moved the CLOCK hand since the last look that set it).  Else it looks
 * as above; when the mark says the entry still holds the kept store, the
 * kept record is updated (count, until, flags, slot).  The fields are the
 * core's; zero-filled: nothing kept.  One caller's, one thread's.
 */
struct ak_cache_kept_s {
    unsigned char     hash[AK_HASH_LEN];
    uint64_t          mark;     /* 0: nothing kept */
    uint64_t          salt;     /* the cache's */
    uint64_t          writes;
    uint64_t          until;
    size_t            len;
    uint32_t          flags;
    uint32_t          slot;
};

/*
 * The caller now keeps the record *found came with (the key hash's, in
 * cache c): noted in *k for the next ak_cache_lookup_kept().  found NULL,
 * or found->mark 0 (a record with no mark): *k keeps nothing.  hot
 */
void ak_cache_keep(const ak_cache_t *c, ak_cache_kept_t *k,
    const unsigned char hash[AK_HASH_LEN], const ak_cache_found_t *found)
    AK_NOEXCEPT;

/*
 * Inserts or replaces the positive record for hash, keeping its
 * ak_key_state_t when it exists.  seq is the value ak_cache_event_seq()
 * returned when the Redis read was sent: if events arrived since, the entry
 * is stored already STALE (it may predate the change).  Evicts entries as
 * needed (CLOCK: one not referenced since the hand last passed, or an
 * expired one).  0 ok, -1 the blob can never fit.
 */
int ak_cache_put(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    const unsigned char *blob, size_t len, uint64_t now_ms, uint64_t seq) AK_NOEXCEPT;

/*
 * Remembers "no such key".  Negative entries may hold at most
 * negative_max_pct of the slots: beyond that a negative entry is evicted
 * (CLOCK among the negative entries), never a positive one.
 */
int ak_cache_put_negative(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, uint64_t seq) AK_NOEXCEPT;

/*
 * Remembers "the record is malformed" as a negative entry (same lifetime,
 * same share of slots): ak_cache_lookup then answers AK_CACHE_NEGATIVE with
 * AK_ENTRY_BAD in *flags.  version identifies the record's content (any
 * 64-bit digest of it).  Past negative_ttl such an entry is looked up as a
 * MISS but kept until it is replaced or evicted, so that the re-read can
 * tell whether the record changed.  Like ak_cache_put_negative, nothing is
 * stored when events arrived since seq.  Returns 1 when the entry for hash
 * was already a bad entry of the same version (the caller reported it
 * already), 0 when not, -1 on bad arguments.
 */
int ak_cache_put_bad(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    uint64_t now_ms, uint64_t seq, uint64_t version) AK_NOEXCEPT;

/*
 * Events.  Each advances the event sequence.  Return 1 if hash was cached.
 * ak_cache_remove ("update"): the positive entry is never used again (a
 * lookup is a MISS, so it is re-read, also while Redis cannot answer) but
 * its ak_key_state_t is kept until the entry is re-read (ak_cache_put,
 * which carries it over per ak_key_state_carry), evicted, found expired,
 * replaced by a negative entry or flushed.  A negative entry is dropped.
 */
int ak_cache_revoke(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN]) AK_NOEXCEPT;
int ak_cache_remove(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN]) AK_NOEXCEPT;
void ak_cache_flush(ak_cache_t *c) AK_NOEXCEPT;           /* removes every entry */
void ak_cache_new_generation(ak_cache_t *c) AK_NOEXCEPT;  /* all entries become STALE */
uint64_t ak_cache_event_seq(const ak_cache_t *c) AK_NOEXCEPT;

/* ------------------------------------------------------------------ */
/* Node-wide event log                                                 */

/*
 * Every worker of a node subscribes to the events channel and receives
 * every event, in the order Redis published them, but workers run at their
 * own pace: a worker that lags (descheduled, busy, stopped) would apply an
 * older "update" after a faster worker applied a newer "revoke", and undo
 * it.  So each event is applied to a zone's cache once, by the first worker
 * that receives it, in publication order; the others only recognise it.
 *
 * The log (in the zone's shared memory, used with the zone lock held)
 * remembers the fingerprints of the last AK_EVLOG_SIZE events applied.
 * Each worker keeps its position: the number of the last logged event it
 * has received.  An event that matches the next entries after the position
 * was applied already (AK_EVLOG_SEEN); one that does not is new: it is
 * appended and must be applied now, under the same lock (AK_EVLOG_APPLY).
 * A worker so far behind that the entry after its position was overwritten
 * reads an event the others applied long ago: it skips it and advances its
 * position by one (AK_EVLOG_LOST, to be treated as SEEN), until it is back
 * inside the ring.
 * A worker sets its position to the ak_evlog_head() of when it sent its
 * SUBSCRIBE: the events logged before were published before it and are not
 * its to recognise; the ones logged after may be events it will receive,
 * applied by a faster worker before its subscription was confirmed (taking
 * the head at the confirmation would apply those a second time).
 */

#define AK_EVLOG_SIZE       1024    /* entries (8 KiB) */
#define AK_EVLOG_SCAN       64      /* entries looked at past the position */

#define AK_EVLOG_SEEN       0
#define AK_EVLOG_APPLY      1
#define AK_EVLOG_LOST       2

#define AK_EVENT_REVOKE     1
#define AK_EVENT_UPDATE     2
#define AK_EVENT_FLUSH      3

/*
 * A message of the events channel: "revoke HASH", "update HASH" (HASH: 64
 * hex digits, either case; hash set) or "flush", exactly: one space, no
 * other byte.  AK_EVENT_REVOKE, _UPDATE or _FLUSH, or 0 when malformed.
 */
int ak_event_parse(const char *msg, size_t len,
    unsigned char hash[AK_HASH_LEN]) AK_NOEXCEPT;

typedef struct {
    uint64_t     head;               /* number of events logged */
    uint64_t     fp[AK_EVLOG_SIZE];  /* fingerprint of event n: fp[n % SIZE] */
} ak_evlog_t;

void ak_evlog_init(ak_evlog_t *log) AK_NOEXCEPT;
uint64_t ak_evlog_head(const ak_evlog_t *log) AK_NOEXCEPT;

/* Identifies an event: its type and (for revoke and update) its hash. */
uint64_t ak_evlog_fingerprint(int event, const unsigned char *hash) AK_NOEXCEPT;

/* AK_EVLOG_SEEN, _APPLY or _LOST; advances *pos.  O(AK_EVLOG_SCAN). */
int ak_evlog_claim(ak_evlog_t *log, uint64_t *pos, uint64_t fp) AK_NOEXCEPT;


/*
 * The mutable state of the entry in slot, if it still holds hash (an entry
 * removed by ak_cache_remove included: its state stays until it is
 * re-read, evicted or flushed).
 */
ak_key_state_t *ak_cache_state(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN]) AK_NOEXCEPT;

/* The same wherever hash's entry is now; *slot is set.  NULL: not cached. */
ak_key_state_t *ak_cache_state_find(ak_cache_t *c,
    const unsigned char hash[AK_HASH_LEN], uint32_t *slot) AK_NOEXCEPT;

/*
 * The node's GCRA of the positive entry in slot, if it still holds hash,
 * WITHOUT the zone lock: ak_gcra on its TAT, the new TAT stored by
 * compare-and-swap of the tag word (retried when another request or the
 * CLOCK changed it meanwhile).  The slot may have been evicted and reused
 * since the lookup: the tag word holds a tag that every change of the
 * slot's identity moves on, so a swap prepared for the old entry fails
 * (unless the slot changed identity exactly a multiple of 2048 times
 * between the read of the word and the swap).  1 admitted (*res as
 * ak_gcra), 0 limited (nothing consumed), -1 the entry is not there (or
 * the swap lost 64 times): decide under the lock (ak_cache_state_find).
 * hot
 */
int ak_cache_gcra(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint64_t now_us,
    uint64_t interval_us, uint32_t burst, ak_rate_result_t *res) AK_NOEXCEPT;

/*
 * ak_cache_gcra of the entry an ak_cache_lookup_kept() of hash found
 * (found: that lookup's answer, found->slot), at rec's rate
 * (rate_interval_us, burst): while the cache's count of writes is still
 * found->writes (even), no writer changed a slot's identity since the
 * lookup found the entry there, so neither the slot's identity nor hash is
 * checked again (a found of another key's lookup is the caller's error);
 * else (or found->writes odd) as ak_cache_gcra(hash).  Its answers (1, 0,
 * -1), the swap made by compare-and-swap of the tag word as there.  A
 * flush between the count's read and the swap leaves the tag word as it
 * was: the swap then lands on the flushed entry, as if made just before
 * the flush.  hot
 */
int ak_cache_gcra_found(ak_cache_t *c, const unsigned char hash[AK_HASH_LEN],
    const ak_cache_found_t *found, uint64_t now_us, const ak_record_t *rec,
    ak_rate_result_t *res) AK_NOEXCEPT;

/*
 * The quota of the positive entry in slot, if it still holds hash, WITHOUT
 * the zone lock, for a record with a quota (period, quota_n) and no rate:
 * when the entry's q_window is the window of now and q_left > 0 (where
 * ak_limits_admit_ex would take one leased count and nothing else), one
 * count is taken by compare-and-swap of the quota word (retried while
 * other requests take counts, up to 8 times) and *res is filled as
 * ak_limits_admit_ex fills it; returns AK_ADMIT or AK_ADMIT_PREFETCH (the
 * rule of ak_quota_took).  Else -1, nothing taken from the key: decide
 * under the lock (a new window, no count left here, the entry gone,
 * contention).
 * The quota word carries no tag: the slot may change identity between the
 * check of the entry and the swap.  The tag word is read (acquire) before
 * the check and again after the swap; writers store a new identity's
 * state before its tag word (release), and move the tag on (with a fence)
 * before its slot is written again.  When the tag moved, the count came
 * off whatever the slot holds now (at worst a count leased to this node is
 * lost, never one more served than leased; if the slot became an overflow
 * slot, the swap succeeded only if its blob bytes equal the old word
 * exactly): -1, and the request decides under the lock.  hot
 */
int ak_cache_quota_take(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint8_t period, uint64_t quota_n,
    uint64_t quota_lease, int64_t now, ak_admit_result_t *res) AK_NOEXCEPT;

/*
 * Both limits of the positive entry in slot, if it still holds hash,
 * WITHOUT the zone lock, for a record with a node-scope rate (interval_us,
 * burst) and a quota (period, quota_n), where ak_limits_admit_ex would
 * take one leased count (the entry's q_window is the window of now and
 * q_left > 0): the GCRA on the TAT of the tag word; when it admits, one
 * count taken by compare-and-swap of the quota word, then the new TAT
 * stored by compare-and-swap of the tag word (the GCRA decided again on
 * the word found when another request moved it meanwhile).  Returns, with
 * *res filled as ak_limits_admit_ex fills it:
 *   AK_ADMIT, AK_ADMIT_PREFETCH  both taken (the rule of ak_quota_took);
 *   AK_DENY_RATE                 limited by the rate, nothing taken;
 *   -1                           nothing taken from the key (a new window,
 *                                no count left here, the entry gone, the
 *                                tag moved after the count was taken: the
 *                                count is lost, as in ak_cache_quota_take):
 *                                decide under the lock;
 *   AK_TAKE_GIVE_BACK            a count was taken, but the rate no longer
 *                                admits on the word found or the entry left
 *                                the slot after the count was taken: give
 *                                it back under the lock
 *                                (ak_cache_give_back with res->window and
 *                                *stamp), then decide there.
 * *stamp: the key's bucket group's counter when the call began.
 * hot
 */
#define AK_TAKE_GIVE_BACK  (-2)

int ak_cache_limits_take(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint64_t now_us,
    uint64_t interval_us, uint32_t burst, uint8_t period, uint64_t quota_n,
    uint64_t quota_lease, int64_t now, ak_admit_result_t *res,
    uint32_t *stamp) AK_NOEXCEPT;

/*
 * With the zone lock held: the count an ak_cache_limits_take that answered
 * AK_TAKE_GIVE_BACK (window, stamp) took from slot, given back to it
 * (ak_quota_give_back) only if no writer changed hash's bucket group since
 * that call began (its counter is still stamp) and slot still holds hash:
 * else the record, its quota word or the slot's owner may have changed
 * (a lowered quota drops the counts left, which must not come back), and
 * the count is dropped (the safe side: a leased count lost).  1 given, 0
 * dropped.
 */
int ak_cache_give_back(ak_cache_t *c, uint32_t slot,
    const unsigned char hash[AK_HASH_LEN], uint32_t window, uint32_t stamp)
    AK_NOEXCEPT;

#ifdef AK_CACHE_KILL_POINTS
/*
 * Fuzz builds only: called at every step of a writer; a hook that does not
 * return (longjmp) stands for a worker killed there.
 */
extern void (*ak_cache_kill_hook)(void);

/*
 * The same builds: called at the steps of the lock-free limits where
 * another process may act between two atomic operations, so that a test
 * can be that other process, deterministically:
 *   AK_RACE_QUOTA_TAKEN   ak_cache_quota_take, the count just taken, the
 *                         tag word not read again yet;
 *   AK_RACE_LIMITS_TAKEN  ak_cache_limits_take, the same;
 *   AK_RACE_LIMITS_TAT    ak_cache_limits_take, before each swap of the
 *                         new TAT into the tag word;
 *   AK_RACE_LOOKUP_MARK   ak_cache_lookup_kept, the entry's mark just
 *                         read, not compared yet, the group's counter not
 *                         read again yet;
 *   AK_RACE_GCRA_FOUND    ak_cache_gcra_found, the count of writes found
 *                         unchanged, the new TAT not swapped in yet.
 */
#define AK_RACE_QUOTA_TAKEN   1
#define AK_RACE_LIMITS_TAKEN  2
#define AK_RACE_LIMITS_TAT    3
#define AK_RACE_LOOKUP_MARK   4
#define AK_RACE_GCRA_FOUND    5

extern void (*ak_cache_race_hook)(int point);
#endif

/*
 * What of a key's state survives a change of its record from old to cur
 * (ak_cache_put over an entry, also one removed by an "update" event):
 * the GCRA state when the rate is the same (interval and burst), the quota
 * state when the quota period and the identity (the counters) are the same
 * and its limit not lowered (when lowered, the counts leased but unused are
 * dropped; the window and the total stay).  Anything else starts afresh.
 */
void ak_key_state_carry(const ak_record_t *old, const ak_record_t *cur,
    ak_key_state_t *st) AK_NOEXCEPT;

/*
 * For tests and tools (with the lock held): what the cache holds for hash
 * (1 a positive entry, also one removed by an update or expired; 2 a
 * negative one; 0 nothing), touching nothing: no statistics, no CLOCK bit.
 */
int ak_cache_peek(const ak_cache_t *c, const unsigned char hash[AK_HASH_LEN])
    AK_NOEXCEPT;

void ak_cache_get_stats(const ak_cache_t *c, ak_cache_stats_t *st) AK_NOEXCEPT;

/* ------------------------------------------------------------------ */
/* The metrics page (metrics.cpp)                                      */

/*
 * Requests by a record field (api_key_metrics labels=plan|owner): per zone
 * a table of at most max distinct values (each up to AK_LABEL_VALUE_MAX
 * bytes), requests of any other value counted under the value "other".
 * Entries are never removed (values never move: the page may point at
 * them); in shared memory, under the zone lock.
 */
#define AK_LABEL_VALUE_MAX   64
#define AK_LABEL_MAX_VALUES  1000

typedef struct ak_labels_s  ak_labels_t;

size_t ak_labels_size(uint32_t max, uint32_t nstatus) AK_NOEXCEPT;
/* NULL when size is too small or max/nstatus are 0 or too large */
ak_labels_t *ak_labels_create(void *mem, size_t size, uint32_t max,
    uint32_t nstatus, uint32_t kind) AK_NOEXCEPT;
uint32_t ak_labels_capacity(const ak_labels_t *l) AK_NOEXCEPT;
/* what it counts (the caller's code: plan, owner); a change resets it */
uint32_t ak_labels_kind(const ak_labels_t *l) AK_NOEXCEPT;
void ak_labels_reset(ak_labels_t *l, uint32_t kind) AK_NOEXCEPT;

/*
 * One request of status (< nstatus) for value: counted under value while
 * fewer than limit (<= capacity) values are known or value is one of
 * them, else under "other" (also a value longer than AK_LABEL_VALUE_MAX).
 * hot: no allocation.
 */
void ak_labels_count(ak_labels_t *l, const char *value, size_t len,
    uint32_t status, uint32_t limit) AK_NOEXCEPT;

/*
 * A worker's own table (process memory, no lock), folded into the zone's:
 * one request of status for value, counted under value (known, or added
 * while the table has room) or, longer than AK_LABEL_VALUE_MAX, under
 * "other".  -1, nothing counted: a new value and no room (fold, then count
 * again).  hot: no allocation.
 */
int ak_labels_count_local(ak_labels_t *l, const char *value, size_t len,
    uint32_t status) AK_NOEXCEPT;

/*
 * Adds src's counts to dst (whose values follow limit as ak_labels_count
 * does: a value dst has no room for counts under "other") and empties src
 * (its kind kept).  Both have the same nstatus.  Returns the requests
 * moved.
 */
uint64_t ak_labels_fold(ak_labels_t *dst, ak_labels_t *src, uint32_t limit)
    AK_NOEXCEPT;

/*
 * The same fold in steps, so that the zone's lock is held for a few values
 * at a time: at most max of src's values (1 when max is 0), from *at on (0
 * at the fold's start; its "other" row counts as one more); *at is moved
 * past them, and is AK_LABELS_FOLDED once src is empty again (or cannot be
 * folded into dst).  Nothing else may use src until then.  Returns the
 * requests moved.
 */
#define AK_LABELS_FOLDED  UINT32_MAX

uint64_t ak_labels_fold_step(ak_labels_t *dst, ak_labels_t *src,
    uint32_t limit, uint32_t *at, uint32_t max) AK_NOEXCEPT;

/*
 * For the page: the n values known (n <= cap - 1), then "other", into
 * values[0 .. n], and their counts into counts[(n + 1) * nstatus] (row by
 * value).  Returns n + 1.  The values point into the table.
 */
uint32_t ak_labels_snapshot(const ak_labels_t *l, ak_str_t *values,
    uint64_t *counts, uint32_t cap) AK_NOEXCEPT;

/* One zone's counters, as the glue read them (a snapshot). */
typedef struct {
    ak_str_t           name;            /* the zone's name (any bytes) */
    const uint64_t    *status;          /* ak_metrics_t.nstatus counters */
    ak_cache_stats_t   cache;
    const uint64_t    *latency;         /* ak_metrics_t.nbuckets counts,
                                           one per bucket (not cumulative) */
    uint64_t           latency_sum_us;
    uint64_t           latency_count;
    uint64_t           redis_errors;
    uint64_t           redis_timeouts;
    uint64_t           usage_flushes;   /* usage_flush: flushes by this node */
    uint64_t           usage_writes;    /* per-key writes sent */
    uint64_t           usage_errors;    /* writes failed or unanswered */
    uint64_t           usage_dropped;   /* requests not counted (full) */
    uint32_t           nlabels;         /* labels=: values, "other" last */
    const ak_str_t    *label_values;
    const uint64_t    *label_counts;    /* nlabels rows of nstatus */
} ak_metrics_zone_t;

typedef struct {
    const ak_metrics_zone_t *zones;
    size_t             nzones;
    const ak_str_t    *status_names;    /* the "status" label values */
    size_t             nstatus;
    const uint64_t    *latency_bounds_us;   /* upper bounds of the buckets
                                           but the last one (+Inf) */
    size_t             nbuckets;
    const ak_str_t    *event_names;     /* the "type" label values */
    const uint64_t    *events;
    size_t             nevents;
    uint64_t           resubscribes;
    uint64_t           connects[2];     /* commands, events */
    uint64_t           disconnects[2];
    uint64_t           reconnects[2];
    uint64_t           tls_failures[2]; /* TLS handshakes failed/refused */
    uint64_t           tls_reused[2];   /* TLS sessions resumed */
    uint64_t           connected[2];
    uint64_t           failover_errors; /* READONLY, LOADING, MASTERDOWN */
    uint64_t           master_switches; /* Sentinel: the master moved */
    uint64_t           master_queries;  /* Sentinel: questions asked */
    const char        *label_name;      /* "plan", "owner" or NULL: the
                                           family api_key_requests_by_
                                           {label_name}_total */
} ak_metrics_t;

/*
 * The Prometheus text page (format 0.0.4) of m: each metric family's HELP
 * and TYPE once, then its samples for every zone; the node-wide families
 * (events, connections) only when there is a zone.  Label values escaped
 * (\\, \", \n; a byte that is not valid UTF-8 becomes U+FFFD).  Returns the
 * page's length; writes it into out when out is not NULL, never a byte
 * past cap: size with (m, NULL, 0), then write with a buffer of that size.
 */
size_t ak_metrics_page(const ak_metrics_t *m, char *out, size_t cap)
    AK_NOEXCEPT;

/* ------------------------------------------------------------------ */
/* api_key_verify: the request body {"key": "..."} (json.cpp)          */

#define AK_VERIFY_KEY           0   /* the "key" member, decoded */
#define AK_VERIFY_NO_KEY        1   /* a JSON object without "key" */
#define AK_VERIFY_KEY_TOO_LONG  2   /* "key" longer than cap */
#define AK_VERIFY_BAD_KEY       3   /* "key" not a string, or twice */
#define AK_VERIFY_BAD_JSON      4   /* not one JSON object (RFC 8259) */

/*
 * The top-level "key" string of the JSON object in body, decoded into
 * out[0 .. *out_len) (at most cap bytes; nothing else is kept).  Strict:
 * one object, nothing after it but white space, nesting up to 32 levels.
 * hot: no allocation.
 */
int ak_verify_body_key(const unsigned char *body, size_t len, char *out,
    size_t cap, size_t *out_len) AK_NOEXCEPT;

/* ------------------------------------------------------------------ */
/* Usage: requests per key and UTC day between two flushes (usage.cpp) */

/*
 * A table in shared memory (the zone's; the glue holds the zone lock for
 * ak_usage_add and ak_usage_swap) of two halves: requests are counted in
 * the active one; a flush swaps them and reads the retired half without
 * the lock (nothing writes there until it is cleared), then clears it.
 * Per (key, UTC day) one item: the counts by class and the last use.
 */

#define AK_USAGE_ALLOWED         0  /* ok */
#define AK_USAGE_DENIED_STATUS   1  /* expired, revoked, disabled */
#define AK_USAGE_DENIED_POLICY   2  /* ip, referrer, scope */
#define AK_USAGE_DENIED_LIMIT    3  /* rate_limited, quota_exceeded */
#define AK_USAGE_NCLASSES        4

/* the Redis hash field of each class */
const char *ak_usage_class_name(unsigned cls) AK_NOEXCEPT;

typedef struct {
    unsigned char  hash[AK_HASH_LEN];
    int64_t        day;         /* 00:00 UTC, unix seconds; 0: empty slot */
    int64_t        last_used;   /* unix seconds */
    uint32_t       counts[AK_USAGE_NCLASSES];
} ak_usage_item_t;

typedef struct ak_usage_s  ak_usage_t;

/* the bytes a table of slots items per half takes */
size_t ak_usage_size(uint32_t slots) AK_NOEXCEPT;

/* a table in mem (zeroed here), its halves as large as size allows; NULL
 * when size holds fewer than 8 items per half */
ak_usage_t *ak_usage_create(void *mem, size_t size) AK_NOEXCEPT;

uint32_t ak_usage_slots(const ak_usage_t *u) AK_NOEXCEPT;

/*
 * Counts a request of the key at now (unix seconds) in class cls.  0, or
 * -1 when the active half is full (3/4 of its slots in use; the request is
 * counted in ak_usage_dropped) or an argument is invalid.  hot
 */
int ak_usage_add(ak_usage_t *u, const unsigned char hash[AK_HASH_LEN],
    int64_t now, unsigned cls) AK_NOEXCEPT;

/* merges an item (counts and last use) into the active half: 0 or -1 */
int ak_usage_merge(ak_usage_t *u, const ak_usage_item_t *item) AK_NOEXCEPT;

/*
 * The flush: when the retired half was cleared, the halves swap and the
 * new retired half is returned (*n: its slots, empty ones have day 0);
 * NULL when the last one is still being read, or nothing was counted
 * (then nothing swaps).  ak_usage_clear then empties the retired half.
 */
ak_usage_item_t *ak_usage_swap(ak_usage_t *u, uint32_t *n) AK_NOEXCEPT;
void ak_usage_clear(ak_usage_t *u) AK_NOEXCEPT;

uint64_t ak_usage_dropped(const ak_usage_t *u) AK_NOEXCEPT;

/*
 * A worker's own table (process memory, no lock) into the zone's: every
 * item of src's active half is merged into dst's active half (what dst has
 * no room for is counted in dst's ak_usage_dropped), and src's active half
 * is emptied.  Returns the requests moved into dst.
 */
uint64_t ak_usage_fold(ak_usage_t *dst, ak_usage_t *src) AK_NOEXCEPT;

/*
 * The same fold in steps, so that the zone's lock is held for a few items
 * at a time: at most max items of src (1 when max is 0), from its slot *at
 * on (0 at the fold's start); *at is moved past them, and is ak_usage_slots(src) once
 * src's active half is empty (or src cannot be folded into dst).  Nothing
 * else may use src until then.  Returns the requests moved into dst.
 */
uint64_t ak_usage_fold_step(ak_usage_t *dst, ak_usage_t *src, uint32_t *at,
    uint32_t max) AK_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* AK_CORE_H */
