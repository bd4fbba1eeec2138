/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: key sources.
 *
 * Finds the key in the request (the first configured source present wins:
 * a header, "Authorization: SCHEME", HTTP Basic, a query argument, a
 * cookie; another source with a different key makes it malformed), checks
 * its format and hashes it (a query argument percent-decoded first), and
 * strips the sources from the request (api_key_strip) so that the key does
 * not go upstream nor into the access log.  The handler calls these; this
 * file calls only nginx and the core.
 */


#include "ngx_http_api_key.h"


static ngx_inline ngx_int_t ngx_http_api_key_find_key(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t *early,
    ngx_http_api_key_found_t *found) ngx_http_api_key_hot;
static ngx_inline ngx_int_t ngx_http_api_key_check_and_hash_key(
    ngx_http_request_t *r, ngx_http_api_key_loc_conf_t *alcf,
    ngx_http_api_key_ctx_t *ctx, ngx_http_api_key_found_t *found,
    ngx_uint_t later) ngx_http_api_key_hot;
static ngx_inline ngx_int_t ngx_http_api_key_find_source(
    ngx_http_request_t *r, ngx_http_api_key_source_t *src,
    ngx_http_api_key_early_t *early, ngx_http_api_key_found_t *f,
    ngx_http_api_key_found_t *ref);
static ngx_int_t ngx_http_api_key_find_more(ngx_http_request_t *r,
    ngx_http_api_key_source_t *src, ngx_uint_t n,
    ngx_http_api_key_early_t *early, ngx_http_api_key_found_t *found)
    ngx_http_api_key_cold;
static ngx_int_t ngx_http_api_key_find_in(ngx_http_request_t *r,
    ngx_http_api_key_source_t *src, ngx_http_api_key_early_t *early,
    ngx_http_api_key_found_t *found);
static ngx_inline ngx_int_t ngx_http_api_key_find_header(
    ngx_http_request_t *r, ngx_str_t *name, ngx_http_api_key_found_t *f,
    ngx_http_api_key_found_t *ref);
static ngx_int_t ngx_http_api_key_find_cookie(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_api_key_check_and_hash_escaped(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_str_t *value) ngx_http_api_key_cold;
static ngx_inline ngx_int_t ngx_http_api_key_check_hash(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    u_char *key, size_t len, ngx_uint_t later);


#if (NGX_DEBUG)

/* what precedes a source's name in api_key_source, by type */
static char  *ngx_http_api_key_source_kinds[] = {
    "", "header:", "authorization:", "query:", "cookie:", "basic:"
};

#endif


/* the worker's hasher (SHA-256 or HMAC-SHA256), built at worker start */
static ak_hasher_t  *ngx_http_api_key_hasher;


ngx_int_t
ngx_http_api_key_keys_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf)
{
    char  err[AK_ERR_LEN];

    ngx_http_api_key_hasher = ak_hasher_new((int) amcf->hash_kind,
                                            amcf->secret.data,
                                            amcf->secret.len,
                                            err, sizeof(err));
    if (ngx_http_api_key_hasher == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "api_key_hash: %s", err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_api_key_keys_exit_worker(ngx_cycle_t *cycle)
{
    if (ngx_http_api_key_hasher) {
        ak_hasher_free(ngx_http_api_key_hasher);
        ngx_http_api_key_hasher = NULL;
    }
}


/*
 * The handler's usual path, in one call: the key found (find_key()), then
 * checked and hashed (check_and_hash_key()), both inlined here.  NGX_OK:
 * hashed; NGX_ABORT: found (ctx->source), but malformed (or not hashed);
 * NGX_DECLINED: no key; NGX_ERROR.
 */

ngx_int_t
ngx_http_api_key_find_and_hash(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_early_t *early, ngx_http_api_key_found_t *found)
{
    ngx_int_t  rc;

    rc = ngx_http_api_key_find_key(r, alcf, early, found);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->source = found->source;

    /* (the handler's key: in a header, it stays where it is until the
     * lookup, which may check its characters then) */
    rc = ngx_http_api_key_check_and_hash_key(r, alcf, ctx, found,
                                             found->source->type
                                             == NGX_HTTP_API_KEY_SRC_HEADER);

    return (rc == NGX_OK) ? NGX_OK : NGX_ABORT;
}


ngx_int_t
ngx_http_api_key_find(ngx_http_request_t *r, ngx_http_api_key_loc_conf_t *alcf,
    ngx_http_api_key_early_t *early, ngx_http_api_key_found_t *found)
{
    return ngx_http_api_key_find_key(r, alcf, early, found);
}


/*
 * The first configured source present in the request gives the key; the
 * others are looked at too: a different key in any of them (or in another
 * header of the same name) makes the request malformed (found->other set,
 * the value emptied so that the format check fails).  The same key twice
 * is fine.  Values are compared as sent (a query argument before
 * percent-decoding, a Basic credential after base64-decoding).
 */

static ngx_inline ngx_int_t
ngx_http_api_key_find_key(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t *early,
    ngx_http_api_key_found_t *found)
{
    ngx_int_t                   rc;
    ngx_uint_t                  n, nelts;
    ngx_http_api_key_source_t  *src;

    src = alcf->sources->elts;
    nelts = alcf->sources->nelts;

    found->source = NULL;
    found->last = 0;
    found->same = 0;
    found->other = NULL;
    found->decoded = NULL;
    found->decoded_len = 0;

    /* the first source present fills found */

    for (n = 0; n < nelts; n++) {

        rc = ngx_http_api_key_find_source(r, &src[n], early, found, NULL);

        if (rc == NGX_DECLINED) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        found->source = &src[n];

        if (rc == NGX_BUSY) {
            /* another header of that name holds another key */
            found->other = &src[n];
        }

        break;
    }

    if (found->source == NULL) {
        return NGX_DECLINED;
    }

    /* the later ones, each compared with it (an Authorization source
     * without the header: nothing to look at; when only such sources
     * follow, not even a look at them) */

    if (src[n].rest_auth && r->headers_in.authorization == NULL) {
        n = nelts;
    }

    for (n++; n < nelts && found->other == NULL; n++) {

        if ((src[n].type == NGX_HTTP_API_KEY_SRC_BEARER
             || src[n].type == NGX_HTTP_API_KEY_SRC_BASIC)
            && r->headers_in.authorization == NULL)
        {
            continue;
        }

        if (ngx_http_api_key_find_more(r, &src[n], n, early, found)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: key from %s%V",
                   ngx_http_api_key_source_kinds[found->source->type],
                   &found->source->name);

    if (found->other) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "api_key: another key in %s%V: malformed",
                       ngx_http_api_key_source_kinds[found->other->type],
                       &found->other->name);

        if (found->decoded) {
            ngx_explicit_memzero(found->decoded, found->decoded_len);
        }

        ngx_str_set(&found->value, "");
    }

    return NGX_OK;
}


/*
 * One source's value in the request into f: NGX_OK, NGX_DECLINED (none),
 * NGX_BUSY (a header source: another header of that name holds another
 * value than ref's, or, ref NULL, than the first one's), NGX_ERROR.
 */

static ngx_inline ngx_int_t
ngx_http_api_key_find_source(ngx_http_request_t *r,
    ngx_http_api_key_source_t *src, ngx_http_api_key_early_t *early,
    ngx_http_api_key_found_t *f, ngx_http_api_key_found_t *ref)
{
    /* a header first: the usual source */

    if (src->type == NGX_HTTP_API_KEY_SRC_HEADER) {
        return ngx_http_api_key_find_header(r, &src->name, f, ref);
    }

    if ((src->type == NGX_HTTP_API_KEY_SRC_BEARER
         || src->type == NGX_HTTP_API_KEY_SRC_BASIC)
        && r->headers_in.authorization == NULL)
    {
        return NGX_DECLINED;
    }

    return ngx_http_api_key_find_in(r, src, early, f);
}


/*
 * A later source, n of the location's, once the key is found: the same key
 * there sets its bit in found->same (stripped too), another one makes the
 * request malformed (found->other).  NGX_OK or NGX_ERROR.
 */

static ngx_int_t
ngx_http_api_key_find_more(ngx_http_request_t *r,
    ngx_http_api_key_source_t *src, ngx_uint_t n,
    ngx_http_api_key_early_t *early, ngx_http_api_key_found_t *found)
{
    ngx_int_t                 rc;
    ngx_http_api_key_found_t  more;

    more.decoded = NULL;
    more.decoded_len = 0;

    rc = ngx_http_api_key_find_source(r, src, early, &more, found);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc == NGX_BUSY
        || more.value.len != found->value.len
        || ngx_memcmp(more.value.data, found->value.data, more.value.len)
           != 0)
    {
        found->other = src;

    } else {
        found->same |= (uint32_t) 1 << n;
    }

    if (more.decoded) {
        ngx_explicit_memzero(more.decoded, more.decoded_len);
    }

    return NGX_OK;
}


/*
 * The value of one source other than a header (find_header() below) in the
 * request: NGX_OK and found->value, NGX_DECLINED none.  A Basic credential
 * that cannot be decoded, or has no ':', is found with an empty value (a
 * malformed key).
 */

static ngx_int_t
ngx_http_api_key_find_in(ngx_http_request_t *r, ngx_http_api_key_source_t *src,
    ngx_http_api_key_early_t *early, ngx_http_api_key_found_t *found)
{
    int                      rc;
    size_t                   off, len;
    ngx_table_elt_t         *h;
    ngx_http_api_key_arg_t  *arg;

    switch (src->type) {

    case NGX_HTTP_API_KEY_SRC_BEARER:

        h = r->headers_in.authorization;

        if (h == NULL
            || !ak_auth_scheme(h->value.data, h->value.len, src->name.data,
                               src->name.len, &off, &len))
        {
            return NGX_DECLINED;
        }

        found->value.data = h->value.data + off;
        found->value.len = len;
        return NGX_OK;

    case NGX_HTTP_API_KEY_SRC_BASIC:

        h = r->headers_in.authorization;

        if (h == NULL
            || !ak_auth_is_scheme(h->value.data, h->value.len,
                                  (u_char *) "Basic", 5))
        {
            return NGX_DECLINED;
        }

        /* the decoded credential is at most 3/4 of the encoded one */

        found->decoded_len = h->value.len / 4 * 3;
        found->decoded = ngx_pnalloc(r->pool, found->decoded_len);
        if (found->decoded == NULL) {
            return NGX_ERROR;
        }

        rc = ak_auth_basic(h->value.data, h->value.len,
                           src->name.len != 0, found->decoded,
                           found->decoded_len, &off, &len);

        if (rc == 1) {
            found->value.data = found->decoded + off;
            found->value.len = len;

        } else {
            ngx_explicit_memzero(found->decoded, found->decoded_len);
            ngx_str_set(&found->value, "");
        }

        return NGX_OK;

    case NGX_HTTP_API_KEY_SRC_QUERY:

        if (ngx_http_arg(r, src->name.data, src->name.len, &found->value)
            == NGX_OK)
        {
            return NGX_OK;
        }

        /* removed at the start of the request (strip_early) */

        arg = early ? ngx_http_api_key_early_arg(early, &src->name) : NULL;

        if (arg && arg->value.data) {
            found->value = arg->value;
            return NGX_OK;
        }

        return NGX_DECLINED;

    default: /* NGX_HTTP_API_KEY_SRC_COOKIE */

        return ngx_http_api_key_find_cookie(r, &src->name, &found->value);
    }
}


/*
 * A header source, in one walk of the headers: the first header named name
 * (in lowercase) gives f->value and its position; f->last: no other header
 * of that name follows it (strip() then removes that one alone, without a
 * walk).  NGX_BUSY: one of them holds another value than ref's (ref NULL:
 * than the first one's); the walk stops there, f->last is then 0.
 */

static ngx_inline ngx_int_t
ngx_http_api_key_find_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_http_api_key_found_t *f, ngx_http_api_key_found_t *ref)
{
    ngx_str_t        *v;
    ngx_uint_t        i, nelts;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    v = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {

        h = part->elts;
        nelts = part->nelts;

        for (i = 0; i < nelts; i++) {

            if (!ngx_http_api_key_header_named(&h[i], name)) {
                continue;
            }

            if (v == NULL) {
                f->value = h[i].value;
                f->part = part;
                f->i = i;
                f->last = 1;

                if (ref == NULL) {
                    v = &f->value;
                    continue;
                }

                v = &ref->value;

            } else {
                f->last = 0;
            }

            if (h[i].value.len != v->len
                || ngx_memcmp(h[i].value.data, v->data, v->len) != 0)
            {
                return NGX_BUSY;
            }
        }
    }

    return (v == NULL) ? NGX_DECLINED : NGX_OK;
}


/*
 * Whether two sources name the same place in a request: header names are
 * lowercased, query names compared without case, cookie names with case.
 */

ngx_uint_t
ngx_http_api_key_same_source(ngx_http_api_key_source_t *a,
    ngx_http_api_key_source_t *b)
{
    if (a == b) {
        return 1;
    }

    if (a->type != b->type || a->name.len != b->name.len) {
        return 0;
    }

    if (a->type == NGX_HTTP_API_KEY_SRC_COOKIE) {
        return ngx_strncmp(a->name.data, b->name.data, a->name.len) == 0;
    }

    return ngx_strncasecmp(a->name.data, b->name.data, a->name.len) == 0;
}


/*
 * Looks the named cookie up in every Cookie header ("a=1; b=2").  Our own
 * parser (the core's), so that the same code finds and strips it on every
 * nginx version.
 */

static ngx_int_t
ngx_http_api_key_find_cookie(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    size_t            off, len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_str_t         cookie = ngx_string("cookie");

    part = NULL;
    i = 0;

    for ( /* void */ ;
         (h = ngx_http_api_key_next_header(r, &cookie, &part, &i));
         i++)
    {
        if (ak_cookie_find(h->value.data, h->value.len, name->data, name->len,
                           &off, &len))
        {
            value->data = h->value.data + off;
            value->len = len;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_api_key_check_and_hash(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_found_t *found)
{
    return ngx_http_api_key_check_and_hash_key(r, alcf, ctx, found, 0);
}


/*
 * Format check, then the hash; the key itself is not kept anywhere.  Only a
 * query argument is percent-decoded (the whole value, strictly: an invalid
 * escape makes the key malformed); a header, bearer or cookie value is
 * taken as it is.
 */

static ngx_inline ngx_int_t
ngx_http_api_key_check_and_hash_key(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_found_t *found, ngx_uint_t later)
{
    ngx_int_t  rc;

    if (found->source->type == NGX_HTTP_API_KEY_SRC_QUERY
        && found->value.len
        && memchr(found->value.data, '%', found->value.len))
    {
        rc = ngx_http_api_key_check_and_hash_escaped(r, alcf, ctx,
                                                     &found->value);

    } else {
        rc = ngx_http_api_key_check_hash(r, alcf, ctx, found->value.data,
                                         found->value.len, later);
    }

    if (found->decoded) {
        ngx_explicit_memzero(found->decoded, found->decoded_len);
        found->decoded = NULL;
    }

    return rc;
}


/* a query argument with escapes: percent-decoded (then wiped) first */

static ngx_int_t
ngx_http_api_key_check_and_hash_escaped(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_str_t *value)
{
    size_t     len;
    ngx_int_t  rc;
    u_char     buf[AK_KEY_MAX_LEN];

    if (!ak_percent_decode(value->data, value->len, buf, sizeof(buf), &len)) {
        /* an invalid escape, or longer than any key */
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_DECLINED;
    }

    rc = ngx_http_api_key_check_hash(r, alcf, ctx, buf, len, 0);

    ngx_explicit_memzero(buf, len);

    return rc;
}


/*
 * The key checked (its length and characters, its checksum) and hashed.
 * With later (the key stays where it is until the lookup) and no checksum
 * asked, only its length is checked now: its characters are checked by
 * the lookup when the cache does not know its hash (ctx->unchecked,
 * ngx_http_api_key_lookup()).  A hash the cache knows is a key's that
 * passed that check (the cache holds only what was read from Redis for
 * such keys, and two keys share a SHA-256 by no known means), so a key
 * found in the cache is not scanned again on every request.
 */

static ngx_inline ngx_int_t
ngx_http_api_key_check_hash(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    u_char *key, size_t len, ngx_uint_t later)
{
    if (later && alcf->format == NGX_HTTP_API_KEY_FORMAT_ANY) {
        if (len == 0 || len > AK_KEY_MAX_LEN) {
            return NGX_DECLINED;
        }

        ctx->unchecked = 1;

    } else if (!ak_key_check_any(key, len)) {
        return NGX_DECLINED;
    }

    if (alcf->format == NGX_HTTP_API_KEY_FORMAT_CHECKSUM
        && !ak_key_check_checksum(key, len, alcf->format_prefix.data,
                                  alcf->format_prefix.len))
    {
        return NGX_DECLINED;
    }

    if (ak_hasher_digest(ngx_http_api_key_hasher, key, len, ctx->hash) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "api_key: hashing failed");
        return NGX_ERROR;
    }

    ctx->hashed = 1;

    return NGX_OK;
}
