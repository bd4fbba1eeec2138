/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the access-phase handler.
 *
 * The handler is re-entrant: on a cache miss it joins (or starts) a Redis
 * read and returns NGX_AGAIN; the read's callback wakes the request, which
 * runs the phases again and lands here with the outcome in its context.
 *
 * The key itself is handled in ngx_http_api_key_keys.c (find, check and
 * hash, strip); here are the cache lookup, the record's rules, the decision,
 * internal redirects and the responses.
 */


#include "ngx_http_api_key.h"


static ngx_int_t ngx_http_api_key_subrequest(ngx_http_request_t *r)
    ngx_http_api_key_cold;
static ngx_http_api_key_early_t *ngx_http_api_key_early(ngx_http_request_t *r);
static ngx_int_t ngx_http_api_key_redirected(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx);
static ngx_uint_t ngx_http_api_key_reads_alike(
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_loc_conf_t *prev,
    ngx_http_api_key_source_t *src);
static void ngx_http_api_key_reset_ctx(ngx_http_api_key_ctx_t *ctx,
    ngx_uint_t keep_hash);
static ngx_int_t ngx_http_api_key_lookup(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx);
static ngx_inline ngx_int_t ngx_http_api_key_evaluate(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_cache_found_t *f);
static ngx_int_t ngx_http_api_key_unhashed(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx);
static ngx_int_t ngx_http_api_key_keep_text(ngx_http_request_t *r,
    ngx_http_api_key_ctx_t *ctx, const ak_record_t *rec);
static ngx_inline void ngx_http_api_key_text_lend(ngx_http_api_key_ctx_t *ctx,
    const u_char *text, size_t n, ngx_uint_t lazy);
static void ngx_http_api_key_text_span(ngx_http_api_key_ctx_t *ctx);
static ngx_int_t ngx_http_api_key_decide(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_status_e status);
static ngx_inline ngx_int_t ngx_http_api_key_decided(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_status_e status) ngx_http_api_key_hot;
static ngx_int_t ngx_http_api_key_deny(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_status_e status) ngx_http_api_key_cold;
static ngx_int_t ngx_http_api_key_set_header(ngx_http_request_t *r,
    const char *name, size_t len, ngx_str_t *value, ngx_table_elt_t **ref);
static u_char *ngx_http_api_key_uint(u_char *p, ngx_uint_t n);
static ngx_int_t ngx_http_api_key_rate_headers(ngx_http_request_t *r,
    ngx_http_api_key_ctx_t *ctx);
static ngx_int_t ngx_http_api_key_wait_again(ngx_http_request_t *r)
    ngx_http_api_key_cold;
static void ngx_http_api_key_resume(ngx_http_request_t *r);
static ngx_uint_t ngx_http_api_key_problem_wanted(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_int_t rc);
static ngx_int_t ngx_http_api_key_verify_body(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx);
static void ngx_http_api_key_verify_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_api_key_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_api_key_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_api_key_problem_body(ngx_http_request_t *r,
    ngx_http_api_key_ctx_t *ctx, ngx_chain_t *in) ngx_http_api_key_cold;


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


#if (NGX_DEBUG)

/* the cache's answers, by AK_CACHE_* */
static char  *ngx_http_api_key_cache_names[] = {
    "miss", "hit", "negative", "stale"
};

#endif


/*
 * api_key_error_body json: the RFC 9457 problem details of each denial, by
 * $api_key_status (NONE, OK and UNCHECKED are never denials).  Static text:
 * nothing of the request (the key least of all) is ever in a body.
 */

#define ngx_http_api_key_problem(status, title, detail)                      \
    ngx_string("{\"type\":\"about:blank\",\"title\":\"" title "\","          \
               "\"status\":" #status ",\"detail\":\"" detail "\"}\n")

static ngx_str_t  ngx_http_api_key_problems[] = {
    ngx_null_string,
    ngx_null_string,
    ngx_http_api_key_problem(401, "Unauthorized", "missing"),
    ngx_http_api_key_problem(401, "Unauthorized", "malformed"),
    ngx_http_api_key_problem(401, "Unauthorized", "unknown"),
    ngx_http_api_key_problem(401, "Unauthorized", "expired"),
    ngx_http_api_key_problem(401, "Unauthorized", "revoked"),
    ngx_http_api_key_problem(403, "Forbidden", "disabled"),
    ngx_http_api_key_problem(401, "Unauthorized", "bad_record"),
    ngx_http_api_key_problem(403, "Forbidden", "ip_denied"),
    ngx_http_api_key_problem(403, "Forbidden", "referrer_denied"),
    ngx_http_api_key_problem(403, "Forbidden", "scope_denied"),
    ngx_http_api_key_problem(429, "Too Many Requests", "rate_limited"),
    ngx_http_api_key_problem(429, "Too Many Requests", "quota_exceeded"),
    ngx_http_api_key_problem(503, "Service Unavailable", "unavailable"),
    ngx_null_string
};

typedef char  ngx_http_api_key_problems_fit[
    (sizeof(ngx_http_api_key_problems) / sizeof(ngx_str_t)
     == NGX_HTTP_API_KEY_NSTATUS) ? 1 : -1];


/* the record being evaluated, copied out of the cache (one per worker;
 * the cache copies whole words when 8 bytes are spare); its text may be
 * lent to the request (ngx_http_api_key_text_lent): every lookup starts
 * with ngx_http_api_key_text_keep() */
static u_char  ngx_http_api_key_blob[AK_RECORD_MAX + 8];


/*
 * The worker's last views of records (ngx_http_api_key_view()), by the
 * key hash's second byte: a key's record's blob and its view, whose
 * strings and rules point into that blob.  A view depends on the blob's
 * bytes alone: a request of the same key whose record has the same bytes
 * (the cache says it holds the store the view was made of, by what the
 * entry's "kept" notes of it; else the bytes are compared) uses the
 * entry's view as it is, and never writes to it; it writes only the
 * entry's last verdicts of the address and Referer rules.
 * An entry's blob may be lent to a request as the worker's copy is
 * (ngx_http_api_key_text_lent): it is only replaced by a lookup, after
 * ngx_http_api_key_text_keep().  A longer record is viewed where the
 * lookup copied it, every time.
 */

#define NGX_HTTP_API_KEY_VIEWS     16   /* a power of 2 */
#define NGX_HTTP_API_KEY_VIEW_MAX  512  /* bytes of a record kept viewed */

/* a key's entry of the views, by its hash */
#define ngx_http_api_key_view_index(hash)                                     \
    ((hash)[1] & (NGX_HTTP_API_KEY_VIEWS - 1))

#define NGX_HTTP_API_KEY_REF_MEMO  256  /* of a Referer's scheme and host */

typedef struct {
    /*
     * what the cache said of the record (ak_cache_keep(): its store in
     * the cache that gave it, the cache's count of writes then, how long
     * it stays fresh; nothing: not known), first: the lookup reads it
     * before anything else
     */
    ak_cache_kept_t             kept;

    size_t                      len;        /* 0: empty */
    u_char                      hash[AK_HASH_LEN];  /* the key's */
    ak_record_t                 rec;

    /*
     * the last verdicts of the view's address and Referer rules, for the
     * address and the Referer they were asked for (a rule's verdict
     * depends on the record's bytes and that value alone): 0 none yet,
     * 1 denied, 2 allowed; emptied with the entry
     */
    uint8_t                     ip_memo;
    uint8_t                     ip_family;  /* 4 or 6 */
    uint8_t                     ref_memo;
    uint32_t                    ref_len;    /* of "scheme://host" in ref */
    u_char                      ip_addr[16];
    u_char                      ref[NGX_HTTP_API_KEY_REF_MEMO];

    u_char                      blob[NGX_HTTP_API_KEY_VIEW_MAX];
} ngx_http_api_key_view_t;

typedef char  ngx_http_api_key_views_power_of_2[
    (NGX_HTTP_API_KEY_VIEWS & (NGX_HTTP_API_KEY_VIEWS - 1)) == 0 ? 1 : -1];

static ngx_http_api_key_view_t  ngx_http_api_key_views[NGX_HTTP_API_KEY_VIEWS];

/*
 * Where the key of the lookup about to be made is in the request, when its
 * characters were not checked (ctx->unchecked, keys.c): set by the handler
 * just before that lookup (its first: nothing runs between), which checks
 * them if the cache does not know the key's hash, and forgets it either
 * way (data NULL: nothing to check).
 */
static ngx_str_t                ngx_http_api_key_unchecked;
static ak_record_t              ngx_http_api_key_long_view;

static ngx_inline const ak_record_t *ngx_http_api_key_view(
    ak_cache_t *cache, const u_char *hash, const ak_cache_found_t *f,
    ngx_http_api_key_view_t **vp);
static ngx_inline int ngx_http_api_key_ip_allowed(ngx_http_api_key_view_t *v,
    const ak_record_t *rp, int family, const u_char *addr);
static ngx_inline int ngx_http_api_key_referrer_allowed(
    ngx_http_api_key_view_t *v, const ak_record_t *rp, ngx_str_t *referer);


/*
 * POST_READ, once per request (internal redirects and subrequests start at
 * the server's rewrite phase): the arguments of the server's query sources
 * leave the request before anything can end and log it (limit_req,
 * limit_conn, "return", a location without api_key); the access phase
 * finds them in the context.
 */

ngx_int_t
ngx_http_api_key_post_read_handler(ngx_http_request_t *r)
{
    ngx_http_api_key_ctx_t       *ctx;
    ngx_http_api_key_early_t     *early;
    ngx_http_api_key_loc_conf_t  *alcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    /* the server's configuration: what its locations inherit */

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_api_key_module);

    if (!alcf->strip || alcf->query_sources == 0) {
        return NGX_DECLINED;
    }

    if (ngx_http_api_key_strip_early(r, alcf, &early) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (early == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_api_key_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_http_api_key_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->early = early;

    return NGX_DECLINED;
}


/*
 * The preaccess phase, for subrequests, which nginx lets skip the access
 * phase: a subrequest never gets more than a direct request would.  Of a
 * main request checked by this module it shares the outcome (a denied one:
 * the same answer); else (the main request's location has no api_key: the
 * auth_request pattern; or api_key_verify, which denies nothing) it is
 * checked on its own, with its own context, waiting on Redis like a main
 * request does.
 */

ngx_int_t
ngx_http_api_key_subrequest_handler(ngx_http_request_t *r)
{
    if (r == r->main) {
        /* main requests: the access phase */
        return NGX_DECLINED;
    }

    return ngx_http_api_key_subrequest(r);
}


/*
 * The checker of the handler above in nginx's phase engine (set once the
 * configuration is read, module.c), instead of
 * ngx_http_core_generic_phase(): a main request, every request but a
 * subrequest, passes on as that NGX_DECLINED would have it, without the
 * call; a subrequest goes through ngx_http_core_generic_phase().
 */

ngx_int_t
ngx_http_api_key_subrequest_checker(ngx_http_request_t *r,
    ngx_http_phase_handler_t *ph)
{
    if (r != r->main) {
        return ngx_http_core_generic_phase(r, ph);
    }

    /* ngx_http_core_generic_phase()'s line */

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "generic phase: %ui", r->phase_handler);

    r->phase_handler++;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_api_key_subrequest(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_api_key_ctx_t       *ctx;
    ngx_http_api_key_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_api_key_module);

    if (alcf->zone == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_api_key_get_ctx(r->main);

    if (ctx && ctx->decided && (alcf->verify || !ctx->decided_by->verify)) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "api_key: subrequest shares the main request's "
                       "\"%V\"", ngx_http_api_key_status_name(ctx->status));

        return (ctx->rc == NGX_OK) ? NGX_DECLINED : ctx->rc;
    }

    rc = ngx_http_api_key_handler(r);

    /* NGX_OK would skip the other preaccess handlers (limit_req...) */

    return (rc == NGX_OK) ? NGX_DECLINED : rc;
}


/* nothing kept of where a key was in a request (the handler's "found") */

static ngx_inline void
ngx_http_api_key_forget(ngx_http_api_key_found_t *found)
{
    ngx_str_null(&found->value);
    found->part = NULL;
    found->spare = NULL;
}


/*
 * The access phase (main requests; a subrequest comes from the preaccess
 * handler above).
 */

ngx_int_t
ngx_http_api_key_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_api_key_ctx_t       *ctx;
    ngx_http_api_key_early_t     *early;
    ngx_http_api_key_loc_conf_t  *alcf;

    /*
     * where the key is in the request, from the search to the lookup: the
     * worker's own, not the stack's (no stack canary; nothing in between
     * runs another request), forgotten then
     */
    static ngx_http_api_key_found_t  found;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_api_key_module);

    if (alcf->zone == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_api_key_get_ctx(r);

    if (ctx) {
        if (ctx->waiting) {
            /* woken for something else: keep waiting */
            return ngx_http_api_key_wait_again(r);
        }

        if (ctx->decided) {
            rc = ngx_http_api_key_redirected(r, alcf, ctx);

            if (rc != NGX_DECLINED) {
                return rc;
            }

            /* checked again here: ctx was reset */

        } else if (ctx->hashed) {
            return ngx_http_api_key_lookup(r, alcf, ctx);
        }

    } else {
        ctx = ngx_http_api_key_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (alcf->verify && !ctx->verify_body) {
        /* api_key_verify: a key in the body first */

        rc = ngx_http_api_key_verify_body(r, alcf, ctx);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    /* the main request's context holds it: this one when r is main */
    early = (r == r->main) ? ctx->early : ngx_http_api_key_early(r);

    if (early && !alcf->strip && r == r->main) {
        ngx_http_api_key_restore_early(r, alcf, early);
    }

    /* found (ctx->source) and hashed: NGX_OK; malformed: NGX_ABORT */

    rc = ngx_http_api_key_find_and_hash(r, alcf, ctx, early, &found);

    if (rc == NGX_ERROR) {
        ngx_http_api_key_forget(&found);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        if (alcf->strip
            && ngx_http_api_key_strip(r, alcf, NULL, early) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_MISSING);
    }

    found.spare = &ctx->spare;

    if (alcf->strip
        && ngx_http_api_key_strip(r, alcf, &found, early) != NGX_OK)
    {
        ngx_http_api_key_forget(&found);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_http_api_key_forget(&found);
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_MALFORMED);
    }

    /* a key whose characters are not checked yet: for the lookup only */

    if (ctx->unchecked) {
        ctx->unchecked = 0;
        ngx_http_api_key_unchecked = found.value;
    }

    ngx_http_api_key_forget(&found);

    rc = ngx_http_api_key_lookup(r, alcf, ctx);

    /* allowed: alcf->pass (the subrequest handler takes NGX_DECLINED too) */

    return (rc == NGX_OK) ? alcf->pass : rc;
}


/*
 * api_key_verify: a POST body {"key": "..."} (at most
 * NGX_HTTP_API_KEY_VERIFY_BODY_MAX bytes, in memory: 413 otherwise) gives
 * the key; without a "key" member (or a body) the location's sources do.
 * NGX_DECLINED: look in the sources; NGX_DONE: the body is being read (the
 * phases run again once it is); NGX_AGAIN: the key is hashed and looked
 * up; an HTTP status: the answer.  The body's bytes are wiped once read.
 */

static ngx_int_t
ngx_http_api_key_verify_body(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx)
{
    u_char                     *p;
    size_t                      len, klen;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_chain_t                *cl;
    ngx_http_api_key_found_t    found;
    static ngx_http_api_key_source_t  body_source = {
        NGX_HTTP_API_KEY_SRC_HEADER, ngx_string("body"), NGX_ERROR, NGX_ERROR,
        0, 1
    };
    u_char                      body[NGX_HTTP_API_KEY_VERIFY_BODY_MAX];
    char                        key[AK_KEY_MAX_LEN];

    if (r != r->main || !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD
                                       |NGX_HTTP_POST)))
    {
        return (r == r->main) ? NGX_HTTP_NOT_ALLOWED : NGX_DECLINED;
    }

    if (!(r->method & NGX_HTTP_POST)) {
        ctx->verify_body = 1;
        return NGX_DECLINED;
    }

    if (!ctx->body_waiting) {
        if (r->headers_in.content_length_n
            > NGX_HTTP_API_KEY_VERIFY_BODY_MAX)
        {
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r,
                                           ngx_http_api_key_verify_body_read);

        if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        if (rc == NGX_AGAIN) {
            /*
             * the reference the read took is given back now (as a content
             * handler's NGX_DONE would): if reading fails later (too
             * large, a timeout, the client gone), nginx finalizes the
             * request with the error and nothing is left holding it
             */
            ctx->body_waiting = 1;
            ngx_http_finalize_request(r, NGX_DONE);
            return NGX_DONE;
        }
    }

    ctx->body_waiting = 0;
    ctx->verify_body = 1;

    /* the body, in memory, whole (a chunked one has no Content-Length) */

    len = 0;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file || b->file) {
                return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
            }

            if (b->pos == b->last) {
                continue;           /* an empty buffer (its pos may be NULL) */
            }

            if ((size_t) (b->last - b->pos) > sizeof(body) - len) {
                return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
            }

            ngx_memcpy(body + len, b->pos, b->last - b->pos);
            len += b->last - b->pos;

            /* the key leaves the request's memory */
            ngx_explicit_memzero(b->pos, b->last - b->pos);
        }
    }

    for (p = body; p < body + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            break;
        }
    }

    if (p == body + len) {
        /* no body: the key from the sources */
        return NGX_DECLINED;
    }

    rc = ak_verify_body_key(body, len, key, sizeof(key), &klen);

    ngx_explicit_memzero(body, len);

    if (rc != AK_VERIFY_KEY) {
        /* what the parser decoded before it gave up, too */
        ngx_explicit_memzero(key, sizeof(key));
    }

    switch (rc) {

    case AK_VERIFY_KEY:
        break;

    case AK_VERIFY_NO_KEY:
        return NGX_DECLINED;

    case AK_VERIFY_KEY_TOO_LONG:
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_MALFORMED);

    default: /* AK_VERIFY_BAD_KEY, AK_VERIFY_BAD_JSON */
        ctx->verify_bad = 1;
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_memzero(&found, sizeof(ngx_http_api_key_found_t));
    found.value.data = (u_char *) key;
    found.value.len = klen;
    found.source = &body_source;

    ctx->source = found.source;

    rc = ngx_http_api_key_check_and_hash(r, alcf, ctx, &found);

    ngx_explicit_memzero(key, sizeof(key));

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_MALFORMED);
    }

    return ngx_http_api_key_lookup(r, alcf, ctx);
}


static void
ngx_http_api_key_verify_body_read(ngx_http_request_t *r)
{
    ngx_http_api_key_ctx_t  *ctx;

    ctx = ngx_http_api_key_get_ctx(r);

    if (ctx && ctx->body_waiting) {
        /* read in the background: its reference was given back then */
        ngx_http_core_run_phases(r);
        return;
    }

    /* read at once, inside ngx_http_read_client_request_body(): its count */
    r->main->count--;
}


/*
 * The query arguments removed at the start of the request: the main
 * request's (a subrequest's query arguments are its own, in r->args).
 */

static ngx_http_api_key_early_t *
ngx_http_api_key_early(ngx_http_request_t *r)
{
    ngx_http_api_key_ctx_t  *ctx;

    ctx = ngx_http_api_key_get_ctx(r->main);

    return ctx ? ctx->early : NULL;
}


/*
 * A decided request runs the access phase again after an internal redirect
 * (error_page, try_files, rewrite ... last, a named location) into a
 * location that checks keys too.  The redirect never grants more than a
 * direct request to that location would get.
 */

static ngx_int_t
ngx_http_api_key_redirected(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx)
{
    ngx_int_t                     rc;
    ak_str_t                      have;
    ngx_str_t                     v;
    ak_record_t                   rec;
    ngx_http_api_key_early_t     *early;
    ngx_http_api_key_found_t      found;
    ngx_http_api_key_loc_conf_t  *prev;

    prev = ctx->decided_by;
    early = ngx_http_api_key_early(r);

    rc = NGX_DECLINED;

    if (ctx->rc == NGX_OK || (alcf != prev && alcf->strip)) {
        rc = ngx_http_api_key_find(r, alcf, early, &found);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK && found.decoded) {
            /* only where the key is is needed here */
            ngx_explicit_memzero(found.decoded, found.decoded_len);
        }

        found.spare = &ctx->spare;
    }

    if (ctx->rc == NGX_OK
        && (prev == NULL
            || !ngx_http_api_key_reads_alike(alcf, prev, ctx->source)
            || (rc == NGX_OK
                && !ngx_http_api_key_same_source(found.source, ctx->source))))
    {
        /*
         * this location would not read the key as the first one did (or
         * would read another one first): a new check, of what is left of
         * the request (a stripped key is gone: "missing")
         */

        ngx_http_api_key_reset_ctx(ctx, 0);
        return NGX_DECLINED;
    }

    if (alcf != prev && alcf->strip
        && ngx_http_api_key_strip(r, alcf, rc == NGX_OK ? &found : NULL,
                                  early)
           != NGX_OK)
    {
        /* this location's sources may name another key: it goes too */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->rc != NGX_OK) {
        /*
         * denied, then sent here by error_page: denied here as well, with
         * the same answer (its headers are set already), counted once; a
         * location without api_key serves the error page
         */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "api_key: redirected after \"%V\": denied again",
                       ngx_http_api_key_status_name(ctx->status));

        ctx->problem = ngx_http_api_key_problem_wanted(r, alcf, ctx->rc);

        return ctx->rc;
    }

    if (prev->verify && !alcf->verify) {
        /*
         * api_key_verify answers every outcome without denying it (rc is
         * NGX_OK), and checks neither the client's address nor its
         * Referer, nor takes from the limits with consume=off: here the
         * key is checked as a direct request's would be, by its hash; a
         * key never hashed (missing, malformed) is denied
         */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "api_key: redirected after api_key_verify's \"%V\"",
                       ngx_http_api_key_status_name(ctx->status));

        if (ctx->hashed) {
            ngx_http_api_key_reset_ctx(ctx, 1);
            return ngx_http_api_key_lookup(r, alcf, ctx);
        }

        ctx->decided_by = alcf;

        return ngx_http_api_key_deny(r, alcf, ctx, ctx->status);
    }

    if (alcf->zone != prev->zone
        || (ctx->status == NGX_HTTP_API_KEY_UNCHECKED && !alcf->fail_open))
    {
        /*
         * another zone (its own records, cache and limits), or let through
         * unchecked into a location that fails closed: the same key, by
         * its hash, looked up again here; a key never hashed (missing,
         * malformed: api_key_verify let it through) is checked anew
         */

        if (!ctx->hashed) {
            ngx_http_api_key_reset_ctx(ctx, 0);
            return NGX_DECLINED;
        }

        ngx_http_api_key_reset_ctx(ctx, 1);
        return ngx_http_api_key_lookup(r, alcf, ctx);
    }

    /* the same zone: the record was checked; this location's scopes */

    if (alcf->scopes && ctx->status == NGX_HTTP_API_KEY_OK) {
        ngx_http_api_key_ctx_field(ctx, NGX_HTTP_API_KEY_TEXT_SCOPES, &v);

        have.data = (const char *) v.data;
        have.len = v.len;

        ngx_memzero(&rec, sizeof(ak_record_t));
        rec.scopes = have;

        if (!ak_record_has_scopes(&rec, alcf->scopes->elts,
                                  alcf->scopes->nelts))
        {
            ctx->decided = 0;
            return ngx_http_api_key_decide(r, alcf, ctx,
                                           NGX_HTTP_API_KEY_SCOPE_DENIED);
        }
    }

    return NGX_OK;
}


/*
 * Whether alcf would take the key found through src (a source of prev) as
 * prev did: src is one of its sources and its format accepts what prev's
 * did.
 */

static ngx_uint_t
ngx_http_api_key_reads_alike(ngx_http_api_key_loc_conf_t *alcf,
    ngx_http_api_key_loc_conf_t *prev, ngx_http_api_key_source_t *src)
{
    ngx_uint_t                  n;
    ngx_http_api_key_source_t  *s;

    if (src == NULL) {
        return 0;
    }

    if (alcf->format == NGX_HTTP_API_KEY_FORMAT_CHECKSUM
        && (prev->format != NGX_HTTP_API_KEY_FORMAT_CHECKSUM
            || (alcf->format_prefix.len
                && (alcf->format_prefix.len != prev->format_prefix.len
                    || ngx_strncmp(alcf->format_prefix.data,
                                   prev->format_prefix.data,
                                   alcf->format_prefix.len)
                       != 0))))
    {
        return 0;
    }

    if (alcf->sources == prev->sources) {
        return 1;
    }

    s = alcf->sources->elts;

    for (n = 0; n < alcf->sources->nelts; n++) {
        if (ngx_http_api_key_same_source(&s[n], src)) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_api_key_reset_ctx(ngx_http_api_key_ctx_t *ctx, ngx_uint_t keep_hash)
{
    ctx->status = NGX_HTTP_API_KEY_NONE;
    ctx->rc = NGX_OK;
    ctx->decided = 0;
    ctx->decided_by = NULL;
    ctx->attempts = 0;
    ctx->lease_waits = 0;
    ctx->relooks = 0;
    ctx->lookup_result = NGX_HTTP_API_KEY_LOOKUP_NONE;

    if (ngx_http_api_key_text_lent == ctx) {
        ngx_http_api_key_text_lent = NULL;
    }

    ctx->text = NULL;
    ctx->text_made = 0;
    ctx->text_lazy = 0;
    ctx->default_id = 0;
    ngx_str_null(&ctx->id);
    ngx_str_null(&ctx->owner);
    ngx_str_null(&ctx->plan);
    ngx_str_null(&ctx->scopes);

    ctx->rate_remaining = -1;
    ctx->quota_remaining = -1;
    ctx->expires_at = 0;

    if (!keep_hash) {
        ctx->hashed = 0;
        ctx->source = NULL;
        ngx_explicit_memzero(ctx->hash, AK_HASH_LEN);
    }
}


/* ---- the cache, then Redis ------------------------------------------ */

static ngx_int_t
ngx_http_api_key_lookup(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx)
{
    int                         found;
    uint64_t                    seq;
    ak_cache_found_t            f;
    ngx_int_t                   rc;
    ak_cache_t                 *cache;
    ngx_http_api_key_zone_t    *zone;
    ngx_http_api_key_lookup_e   result;

    zone = alcf->zone;
    cache = zone->sh->cache;

    /* the text a context borrowed from the blob, copied before it goes */
    ngx_http_api_key_text_keep();

    /* the answer of the read this request waited on, if any: used once */

    result = ctx->lookup_result;
    ctx->lookup_result = NGX_HTTP_API_KEY_LOOKUP_NONE;

    /*
     * No zone lock: the lookup reads the cache lock-free (ak_core.h), and
     * the event sequence is read after it, before any Redis read is sent.
     * A request woken after waiting was counted at its first look.
     */

    /*
     * The first look names the record this worker keeps viewed in the
     * key's entry of the views: a record still of that store is not
     * copied (AK_ENTRY_KEPT), and while nothing was written to the cache
     * since the last look, not even looked for.  What is kept names one
     * key's store in one cache (ak_cache_lookup_kept()), so neither the
     * entry's key nor its zone is compared here.
     */

    if (ctx->attempts == 0 && ctx->lease_waits == 0 && ctx->relooks == 0) {
        f.kept = &ngx_http_api_key_views[
                      ngx_http_api_key_view_index(ctx->hash)].kept;

        found = ak_cache_lookup_kept(cache, ctx->hash,
                                     (uint64_t) ngx_current_msec,
                                     ngx_http_api_key_blob,
                                     sizeof(ngx_http_api_key_blob),
                                     &f);

    } else {
        f.mark = 0;
        f.kept = NULL;
        f.writes = 1;       /* (no count of writes read) */

        found = ak_cache_lookup_again(cache, ctx->hash,
                                      (uint64_t) ngx_current_msec,
                                      ngx_http_api_key_blob,
                                      sizeof(ngx_http_api_key_blob),
                                      &f.len, &f.flags, &f.slot);
    }

    if (found == AK_CACHE_MISS) {
        if (ngx_http_api_key_unchecked.data
            && !ak_key_check_any(ngx_http_api_key_unchecked.data,
                                 ngx_http_api_key_unchecked.len))
        {
            return ngx_http_api_key_unhashed(r, alcf, ctx);
        }

        /*
         * A lock-free lookup also answers MISS when a writer kept changing
         * the key's bucket group (or died while changing it, leaving its
         * counter odd): look once more under the lock, where no live
         * writer can be, after emptying a cache a dead writer left.  Only
         * on a miss, which goes to Redis anyway.
         */

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (ak_cache_recover(zone->sh->cache, zone->sh->cache_size) == 1) {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "api_key: a worker died while writing to the "
                          "cache of zone \"%V\": it was emptied",
                          &zone->name);
        }

        found = ak_cache_lookup_again(cache, ctx->hash,
                                      (uint64_t) ngx_current_msec,
                                      ngx_http_api_key_blob,
                                      sizeof(ngx_http_api_key_blob),
                                      &f.len, &f.flags, &f.slot);

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    if (ngx_http_api_key_unchecked.data) {
        /* known to the cache (a key's hash), or its characters checked */
        ngx_http_api_key_unchecked.data = NULL;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: cache %s, hash %08xD",
                   (found >= AK_CACHE_MISS && found <= AK_CACHE_STALE)
                   ? ngx_http_api_key_cache_names[found] : "?",
                   ngx_http_api_key_hash_prefix(ctx->hash));

    if (found == AK_CACHE_FRESH) {
        goto evaluate;
    }

    if (found == AK_CACHE_NEGATIVE) {
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       (f.flags & AK_ENTRY_BAD)
                                       ? NGX_HTTP_API_KEY_BAD_RECORD
                                       : NGX_HTTP_API_KEY_UNKNOWN);
    }

    /* MISS or STALE */

    if (result == NGX_HTTP_API_KEY_LOOKUP_NONE) {

        ctx->attempts++;

        /* (read after the lookup, before the read is sent) */
        seq = ak_cache_event_seq(zone->sh->cache);

        rc = ngx_http_api_key_lookup_read(ctx, zone, seq);

        if (rc == NGX_AGAIN) {
            return ngx_http_api_key_wait_again(r);
        }

        result = (rc == NGX_DECLINED) ? NGX_HTTP_API_KEY_LOOKUP_DENIED
                                      : NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    switch (result) {

    case NGX_HTTP_API_KEY_LOOKUP_FOUND:

        if (found == AK_CACHE_STALE) {
            /* just read, but stored stale as events arrived meanwhile */
            goto evaluate;
        }

        if (ctx->attempts < 2) {
            /* evicted between the answer and this request's turn */
            return ngx_http_api_key_lookup(r, alcf, ctx);
        }

        break;

    case NGX_HTTP_API_KEY_LOOKUP_NOTFOUND:
        return ngx_http_api_key_decide(r, alcf, ctx, NGX_HTTP_API_KEY_UNKNOWN);

    case NGX_HTTP_API_KEY_LOOKUP_BAD:
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_BAD_RECORD);

    default: /* NGX_HTTP_API_KEY_LOOKUP_ERROR, _DENIED */

        if (found == AK_CACHE_STALE) {
            /* Redis cannot answer: a known key keeps working for "stale" */
            goto evaluate;
        }

        if (result == NGX_HTTP_API_KEY_LOOKUP_DENIED) {
            /* Redis refuses the module (NOPERM...): never "unchecked" */
            return ngx_http_api_key_decide(r, alcf, ctx,
                                           NGX_HTTP_API_KEY_UNAVAILABLE);
        }

        break;
    }

    return ngx_http_api_key_decide(r, alcf, ctx,
                                   alcf->fail_open
                                   ? NGX_HTTP_API_KEY_UNCHECKED
                                   : NGX_HTTP_API_KEY_UNAVAILABLE);

evaluate:

    /* (one call: the evaluation is inlined here) */

    return ngx_http_api_key_evaluate(r, alcf, ctx, &f);
}


/*
 * A key whose hash the cache does not know, with characters no key has
 * (ak_key_check_any()): malformed, as if checked before it was hashed (no
 * Redis read, no hash kept)
 */

static ngx_int_t
ngx_http_api_key_unhashed(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: the key's characters: malformed");

    ctx->hashed = 0;
    ngx_str_null(&ngx_http_api_key_unchecked);
    ngx_explicit_memzero(ctx->hash, AK_HASH_LEN);

    return ngx_http_api_key_decide(r, alcf, ctx, NGX_HTTP_API_KEY_MALFORMED);
}


/* the record's rules, in order: status, expiry, ip, referrer, scopes, rate */

static ngx_inline ngx_int_t
ngx_http_api_key_evaluate(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_cache_found_t *f)
{
    int                         family, allowed;
    size_t                      len;
    u_char                     *addr;
    uint32_t                    flags, slot;
    ngx_int_t                   rc;
    ak_record_t                 rec;
    const ak_record_t          *rp;
    ngx_http_api_key_view_t    *v;
    ngx_table_elt_t            *ref;
    struct sockaddr_in         *sin;
    ngx_http_api_key_status_e   status;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6      *sin6;
#endif

    len = f->len;
    flags = f->flags;
    slot = f->slot;

    if (flags & AK_ENTRY_KEPT) {
        /* the record the worker keeps viewed, of the store the cache
         * holds: neither copied nor compared (ngx_http_api_key_lookup()) */
        v = (ngx_http_api_key_view_t *)
                ((u_char *) f->kept - offsetof(ngx_http_api_key_view_t, kept));
        rp = &v->rec;

        goto viewed;
    }

    /*
     * a record that only its texts describe (active, no expiry, rules,
     * scopes or limits: what most keys without limits are; the cache
     * found it so when it stored it, AK_ENTRY_PLAIN) allows the request
     * as it is: no view; the texts are viewed when something asks
     * (ngx_http_api_key_text_view()).  Not revoked, no scopes asked here
     * (api_key_verify consume=off: no limits to peek at), and small
     * enough to be lent: the lent text is moved into ctx->text_buf
     * (ngx_http_api_key_text_keep()), which it must fit.
     */

    if ((flags & (AK_ENTRY_PLAIN | AK_ENTRY_REVOKED)) == AK_ENTRY_PLAIN
        && alcf->scopes == NULL
        && len <= sizeof(ctx->text_buf))
    {
        if (ctx->text == NULL) {
            ngx_http_api_key_text_lend(ctx, ngx_http_api_key_blob, len, 1);
        }

        return ngx_http_api_key_decided(r, alcf, ctx, NGX_HTTP_API_KEY_OK);
    }

    /*
     * the default id (a record without one) is made when asked for; a
     * record of texts and a rate only (AK_ENTRY_RATED), counted on this
     * node, is read without its texts (ak_record_rate_only()), which
     * keep_text() below lends whole, to be viewed when something asks (a
     * cluster-wide rate names the key's id in its logs: read whole)
     */

    if ((flags & AK_ENTRY_RATED) && len <= sizeof(ctx->text_buf)
        && alcf->zone->rate_scope != AK_RATE_SCOPE_CLUSTER
        && ak_record_rate_only(ngx_http_api_key_blob, len, &rec))
    {
        rp = &rec;
        v = NULL;

    } else {
        rp = ngx_http_api_key_view(alcf->zone->sh->cache, ctx->hash, f, &v);
    }

    if (rp == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "api_key: corrupt cached record");
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_BAD_RECORD);
    }

viewed:

    if (ctx->text == NULL
        && ngx_http_api_key_keep_text(r, ctx, rp) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a revoke event wins over the record's status: the key is gone */

    if ((flags & AK_ENTRY_REVOKED) || rp->status == AK_STATUS_REVOKED) {
        return ngx_http_api_key_decide(r, alcf, ctx, NGX_HTTP_API_KEY_REVOKED);
    }

    /* the old secret of a rotated key, after its grace */

    if (rp->alias_until && (int64_t) ngx_time() >= rp->alias_until) {
        return ngx_http_api_key_decide(r, alcf, ctx, NGX_HTTP_API_KEY_REVOKED);
    }

    if (rp->status != AK_STATUS_ACTIVE) {
        /* AK_STATUS_DISABLED: suspended, told apart from a revocation */
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_DISABLED);
    }

    if (rp->expires_at && (int64_t) ngx_time() >= rp->expires_at) {
        return ngx_http_api_key_decide(r, alcf, ctx, NGX_HTTP_API_KEY_EXPIRED);
    }

    if (!alcf->verify) {
        /* (api_key_verify: the client is the verifying service, not the
         * key's user: its address and Referer say nothing of the key) */

        if (rp->has_ips) {
            family = 0;
            addr = NULL;

            switch (r->connection->sockaddr->sa_family) {

            case AF_INET:
                sin = (struct sockaddr_in *) r->connection->sockaddr;
                family = 4;
                addr = (u_char *) &sin->sin_addr;
                break;

#if (NGX_HAVE_INET6)
            case AF_INET6:
                sin6 = (struct sockaddr_in6 *) r->connection->sockaddr;
                family = 6;
                addr = sin6->sin6_addr.s6_addr;
                break;
#endif
            }

            if (addr == NULL
                || !ngx_http_api_key_ip_allowed(v, rp, family, addr))
            {
                return ngx_http_api_key_decide(r, alcf, ctx,
                                               NGX_HTTP_API_KEY_IP_DENIED);
            }
        }

        if (rp->has_referrers) {
            ref = r->headers_in.referer;

            allowed = ref ? ngx_http_api_key_referrer_allowed(v, rp,
                                                              &ref->value)
                          : 0;

            if (!allowed) {
                return ngx_http_api_key_decide(
                           r, alcf, ctx, NGX_HTTP_API_KEY_REFERRER_DENIED);
            }
        }
    }

    if (alcf->scopes
        && !ak_record_has_scopes(rp, alcf->scopes->elts,
                                 alcf->scopes->nelts))
    {
        return ngx_http_api_key_decide(r, alcf, ctx,
                                       NGX_HTTP_API_KEY_SCOPE_DENIED);
    }

    if (alcf->verify == NGX_HTTP_API_KEY_VERIFY_PEEK) {
        /* api_key_verify consume=off: what is left, nothing consumed */
        ngx_http_api_key_limits_peek(alcf, ctx, rp, slot);
        goto allowed;
    }

    /* the limits: a node-scope rate alone (the usual), or any other */

    if (ngx_http_api_key_rate_alone(rp, alcf->zone)) {
        rc = ngx_http_api_key_limits_rate(r, alcf, ctx, rp, f, &status);

    } else if (rp->rate_period != AK_PERIOD_NONE
               || rp->quota_period != AK_PERIOD_NONE)
    {
        rc = ngx_http_api_key_limits(r, alcf, ctx, rp, f, &status);

    } else {
        goto allowed;
    }

    if (rc == NGX_AGAIN) {
        return ngx_http_api_key_wait_again(r);
    }

    if (rc != NGX_OK) {
        return ngx_http_api_key_decide(r, alcf, ctx, status);
    }

allowed:

    /* the usual end: decide() inlined here, for this status */

    return ngx_http_api_key_decided(r, alcf, ctx, NGX_HTTP_API_KEY_OK);
}


/*
 * The view of the record the lookup copied (len bytes in
 * ngx_http_api_key_blob; ak_record_view_lazy()): an entry's of
 * ngx_http_api_key_views when its blob has the same bytes, else made into
 * one from a copy of the blob; NULL when the record is corrupt.
 */

static ngx_inline const ak_record_t *
ngx_http_api_key_view(ak_cache_t *cache, const u_char *hash,
    const ak_cache_found_t *f, ngx_http_api_key_view_t **vp)
{
    size_t                     len;
    ak_cache_kept_t           *kept;
    ngx_http_api_key_view_t   *v;

    len = f->len;
    v = &ngx_http_api_key_views[ngx_http_api_key_view_index(hash)];
    kept = &v->kept;
    *vp = v;

    /* the same key's (another key's: its hash tells at once), with the
     * same bytes (the record may have changed) */

    if (v->len == len
        && ngx_http_api_key_same_hash(v->hash, hash)
        && ngx_memcmp(v->blob, ngx_http_api_key_blob, len) == 0)
    {
        /* (stored again with the same bytes: this store is kept now) */
        ak_cache_keep(cache, kept, hash, f);
        return &v->rec;
    }

    if (len > sizeof(v->blob)) {
        /* viewed where the lookup copied it, every time */
        *vp = NULL;
        return (ak_record_view_lazy(hash, ngx_http_api_key_blob, len,
                                    &ngx_http_api_key_long_view)
                == 0) ? &ngx_http_api_key_long_view : NULL;
    }

    /* (empty until viewed: no key's, no length, no verdicts, nothing left
     * of the last clients' address and Referer) */
    v->len = 0;
    ngx_memzero(v->hash, AK_HASH_LEN);
    ak_cache_keep(cache, kept, hash, NULL);

    if (v->ip_memo) {
        v->ip_memo = 0;
        ngx_memzero(v->ip_addr, sizeof(v->ip_addr));
    }

    if (v->ref_memo) {
        v->ref_memo = 0;
        ngx_memzero(v->ref, v->ref_len);
    }

    ngx_memcpy(v->blob, ngx_http_api_key_blob, len);

    if (ak_record_view_lazy(hash, v->blob, len, &v->rec) != 0) {
        return NULL;
    }

    ngx_memcpy(v->hash, hash, AK_HASH_LEN);
    v->len = len;
    ak_cache_keep(cache, kept, hash, f);

    /*
     * a view just made keeps no verdicts yet (*vp NULL): its rules are
     * matched as they are, and verdicts are kept from the key's next
     * request on, so that keys taking turns in one entry pay nothing more
     */
    *vp = NULL;

    return &v->rec;
}


/*
 * The address rules' verdict for a client address (family 4: 4 bytes, 6:
 * 16): the kept view's last one when it was for the same address, else
 * asked of the record and remembered (v NULL: a view not kept, or one
 * just made: asked, not remembered).
 */

static ngx_inline int
ngx_http_api_key_ip_allowed(ngx_http_api_key_view_t *v, const ak_record_t *rp,
    int family, const u_char *addr)
{
    int       allowed;
    size_t    n;
    uint32_t  a, b;

    if (v == NULL) {
        return ak_record_ip_allowed(rp, family, addr);
    }

    if (family == 4) {
        /* (a word's compare, no call) */
        ngx_memcpy(&a, addr, 4);
        ngx_memcpy(&b, v->ip_addr, 4);

        if (v->ip_memo && v->ip_family == 4 && a == b) {
            return v->ip_memo - 1;
        }

        n = 4;

    } else {
        if (v->ip_memo && v->ip_family == family
            && ngx_memcmp(v->ip_addr, addr, 16) == 0)
        {
            return v->ip_memo - 1;
        }

        n = 16;
    }

    allowed = ak_record_ip_allowed(rp, family, addr);

    ngx_memcpy(v->ip_addr, addr, n);
    v->ip_family = (uint8_t) family;
    v->ip_memo = allowed ? 2 : 1;

    return allowed;
}


/*
 * The Referer rules' verdict for a Referer value.  The kept view's last
 * one answers when the value begins as the one it was for did, with the
 * same scheme and host ("https://example.com", kept in v->ref), followed
 * by the path, query, fragment or nothing: such a value names the same
 * host.  Else the host is found (none denies), the verdict asked of the
 * record and remembered when the value had that form (its host right
 * after "://": no user info, port or brackets).  Only the scheme and the
 * host are kept, never the rest of the value (a query string may hold
 * anything, a key too).
 */

static ngx_inline int
ngx_http_api_key_referrer_allowed(ngx_http_api_key_view_t *v,
    const ak_record_t *rp, ngx_str_t *referer)
{
    int          allowed;
    size_t       n, end;
    const char  *host;

    if (v == NULL) {
        /* a view not kept, or one just made: asked, not remembered */
        return ak_record_referrer_allowed(rp, (const char *) referer->data,
                                          referer->len);
    }

    if (v->ref_memo
        && referer->len >= v->ref_len
        && ngx_http_api_key_same_bytes(referer->data, v->ref, v->ref_len)
        && (referer->len == v->ref_len
            || AK_REFERER_HOST_ENDS(referer->data[v->ref_len])))
    {
        return v->ref_memo - 1;
    }

    host = ak_referer_host((const char *) referer->data, referer->len, &n);

    if (host == NULL) {
        return 0;
    }

    allowed = ak_record_referrer_host_allowed(rp, host, n);

    end = ak_referer_kept_prefix((const char *) referer->data, referer->len,
                                 host, n);

    if (end && end <= sizeof(v->ref)) {
        if (end < v->ref_len) {
            /* (nothing left of the last one) */
            ngx_memzero(v->ref + end, v->ref_len - end);
        }

        ngx_memcpy(v->ref, referer->data, end);
        v->ref_len = (uint32_t) end;
        v->ref_memo = allowed ? 2 : 1;
    }

    return allowed;
}


/*
 * The record's text lent to the request from where it lies (the worker's
 * copy of the record, or a kept view's: ngx_http_api_key_view()): lazy,
 * its strings are made by a view when something asks
 * (ngx_http_api_key_text_view()), else they are set already.
 */

static ngx_inline void
ngx_http_api_key_text_lend(ngx_http_api_key_ctx_t *ctx, const u_char *text,
    size_t n, ngx_uint_t lazy)
{
    ctx->text = (u_char *) text;
    ctx->text_n = n;
    ctx->text_lazy = lazy;
    ngx_http_api_key_text_lent = ctx;
}


/* the text's strings: where the record's view found them */

static void
ngx_http_api_key_text_set(ngx_http_api_key_ctx_t *ctx, const ak_record_t *rec)
{
    /* no id (ak_record_view_lazy): the default one, from the hash later */
    ctx->default_id = (rec->id.data == NULL);

    ctx->text_str[NGX_HTTP_API_KEY_TEXT_ID].data = (u_char *) rec->id.data;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_ID].len = rec->id.len;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_OWNER].data =
                                                (u_char *) rec->owner.data;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_OWNER].len = rec->owner.len;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_PLAN].data = (u_char *) rec->plan.data;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_PLAN].len = rec->plan.len;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_SCOPES].data =
                                                (u_char *) rec->scopes.data;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_SCOPES].len = rec->scopes.len;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_IDENTITY].data =
                                                (u_char *) rec->identity;
    ctx->text_str[NGX_HTTP_API_KEY_TEXT_IDENTITY].len = rec->identity
                                                        ? AK_HASH_LEN : 0;
}


/*
 * A lazily lent text (a whole record's blob: ngx_http_api_key_text_lend()):
 * its strings, when something first asks for one, from wherever the text
 * is now (lent, or moved into the context).  The cache, or the view at the
 * decision, read the record whole: the view cannot fail; if it did, the
 * request keeps no text.
 */

void
ngx_http_api_key_text_view(ngx_http_api_key_ctx_t *ctx)
{
    ak_record_t               rec;
    ngx_http_api_key_view_t  *v;

    ctx->text_lazy = 0;

    /*
     * still lent from the blob of a view the worker keeps (only replaced
     * once the text was moved): that view's strings
     */

    v = &ngx_http_api_key_views[ngx_http_api_key_view_index(ctx->hash)];

    if (ctx->text == v->blob && ctx->text_n == v->len) {
        ngx_http_api_key_text_set(ctx, &v->rec);

    } else if (ak_record_view_lazy(ctx->hash, ctx->text, ctx->text_n, &rec)
               == 0)
    {
        ngx_http_api_key_text_set(ctx, &rec);

    } else {
        if (ngx_http_api_key_text_lent == ctx) {
            ngx_http_api_key_text_lent = NULL;
        }

        ctx->text = NULL;
        return;
    }

    if (ctx->text_n > sizeof(ctx->text_buf)) {
        /* a whole record larger than text_buf, still lent: only the part
         * that holds the strings is kept (ngx_http_api_key_text_keep()) */
        ngx_http_api_key_text_span(ctx);
    }
}


/*
 * A whole record larger than text_buf, lent lazily, about to be
 * overwritten (ngx_http_api_key_text_keep(), which stopped lending it): its
 * strings, and the part of it that holds them copied into text_buf when it
 * fits, else into the request's pool (if that fails, the request keeps no
 * text, as when a view fails).
 */

void
ngx_http_api_key_text_keep_large(ngx_http_api_key_ctx_t *ctx)
{
    u_char  *p;

    if (ctx->text_lazy) {
        ngx_http_api_key_text_view(ctx);

        if (ctx->text == NULL) {
            return;
        }
    }

    if (ctx->text_n <= sizeof(ctx->text_buf)) {
        ngx_http_api_key_text_move(ctx, ctx->text_buf);
        return;
    }

    p = ngx_pnalloc(ctx->request->pool, ctx->text_n);
    if (p == NULL) {
        ctx->text = NULL;
        return;
    }

    ngx_http_api_key_text_move(ctx, p);
}


/* the text narrowed to the part of the record that holds its strings:
 * from the first of them to the record's end */

static void
ngx_http_api_key_text_span(ngx_http_api_key_ctx_t *ctx)
{
    ngx_uint_t     i;
    const u_char  *lo, *end;

    end = ctx->text + ctx->text_n;
    lo = end;

    for (i = 0; i < NGX_HTTP_API_KEY_NTEXT; i++) {
        if (ctx->text_str[i].len && ctx->text_str[i].data < lo) {
            lo = ctx->text_str[i].data;
        }
    }

    ctx->text = (u_char *) lo;
    ctx->text_n = end - lo;
}


/*
 * id, owner, plan, scopes and identity outlive the blob (the worker's, the
 * next request's once this one waits): the blob, or the part of it that
 * holds them, is lent to the context, copied into it when the blob is about
 * to be overwritten or its strings are asked for (ngx_http_api_key.h), or,
 * for a record with an identity whose part is larger than the context's
 * room, copied into the pool at once; the strings are made from it when
 * something asks (ngx_http_api_key_ctx_text()).
 */

static ngx_int_t
ngx_http_api_key_keep_text(ngx_http_request_t *r, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec)
{
    u_char  *p;

    ctx->expires_at = rec->expires_at;

    /*
     * lent (copied only when needed, ngx_http_api_key.h): a record without
     * an identity whole, its strings made by a view of it when something
     * asks (ngx_http_api_key_text_view()); a record with one (the usage
     * count reads it at the decision) has its strings made now, and is lent
     * whole when it fits in the context, else the span from the first of
     * them to the blob's end when that fits; else that span is copied into
     * the pool.
     */

    if (rec->identity == NULL) {
        ngx_http_api_key_text_lend(ctx, rec->blob, rec->blob_len, 1);
        return NGX_OK;
    }

    ngx_http_api_key_text_set(ctx, rec);
    ngx_http_api_key_text_lend(ctx, rec->blob, rec->blob_len, 0);

    if (ctx->text_n <= sizeof(ctx->text_buf)) {
        return NGX_OK;
    }

    ngx_http_api_key_text_span(ctx);

    if (ctx->text_n <= sizeof(ctx->text_buf)) {
        return NGX_OK;
    }

    ngx_http_api_key_text_lent = NULL;

    p = ngx_pnalloc(r->pool, ctx->text_n);
    if (p == NULL) {
        ctx->text = NULL;
        return NGX_ERROR;
    }

    ngx_http_api_key_text_move(ctx, p);

    return NGX_OK;
}


/*
 * Records the outcome and turns it into the handler's answer: an allowed
 * request (the usual case) ends here, a denial's headers are set by
 * ngx_http_api_key_deny().  (decided() below, which evaluate() inlines for
 * an allowed request.)
 */

static ngx_int_t
ngx_http_api_key_decide(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_status_e status)
{
    return ngx_http_api_key_decided(r, alcf, ctx, status);
}


static ngx_inline ngx_int_t
ngx_http_api_key_decided(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_status_e status)
{
    u_char                        *hash;
    ngx_str_t                      v;
    ngx_http_api_key_zone_t       *zone;
    ngx_http_api_key_main_conf_t  *amcf;

    zone = alcf->zone;

    ctx->status = status;
    ctx->decided = 1;
    ctx->decided_by = alcf;

    (void) ngx_atomic_fetch_add(
               &zone->sh->status[ngx_worker % NGX_HTTP_API_KEY_STRIPES]
                                [status], 1);

    if (ctx->hashed && zone->usage_flush) {
        /*
         * the key's last use and requests per day (a known record only),
         * under its identity: a rotated key keeps its history
         */
        /* (a lazy text is a record's without an identity) */
        hash = (ctx->text && !ctx->text_lazy
                && ctx->text_str[NGX_HTTP_API_KEY_TEXT_IDENTITY].len)
               ? ctx->text_str[NGX_HTTP_API_KEY_TEXT_IDENTITY].data
               : ctx->hash;

        if (status != NGX_HTTP_API_KEY_OK
            || !ngx_http_api_key_usage_allowed(zone, hash))
        {
            ngx_http_api_key_usage_count(zone, hash, status);
        }
    }

    if (ctx->text && zone->sh->labels) {
        /* api_key_metrics labels=: by the record's plan or owner */

        amcf = ngx_http_get_module_main_conf(r, ngx_http_api_key_module);

        if (amcf->metrics_label) {
            ngx_http_api_key_ctx_field(ctx,
                                       (amcf->metrics_label
                                        == NGX_HTTP_API_KEY_LABEL_PLAN)
                                       ? NGX_HTTP_API_KEY_TEXT_PLAN
                                       : NGX_HTTP_API_KEY_TEXT_OWNER,
                                       &v);

            /* in the worker's table: no lock */
            ngx_http_api_key_usage_label(zone, v.data, v.len, status);
        }
    }

    /* api_key_verify: the content handler answers every outcome */

    if (alcf->verify
        || status == NGX_HTTP_API_KEY_OK
        || status == NGX_HTTP_API_KEY_UNCHECKED)
    {
        ctx->rc = NGX_OK;
        ctx->problem = 0;

#if (NGX_DEBUG)
        if (r->connection->log->log_level & NGX_LOG_DEBUG_HTTP) {
            /* the key id of the line */
            ngx_http_api_key_ctx_text(ctx);

            ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "api_key: %s%V, key id \"%V\"",
                           alcf->verify ? (u_char *) "verify: "
                                        : (u_char *) "decision ",
                           ngx_http_api_key_status_name(status), &ctx->id);
        }
#endif

        return NGX_OK;
    }

    return ngx_http_api_key_deny(r, alcf, ctx, status);
}


/* a denial: its status, its headers (WWW-Authenticate, Retry-After...) */

static ngx_int_t
ngx_http_api_key_deny(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_status_e status)
{
    ngx_int_t   rc;
    ngx_str_t   one = ngx_string("1");
    ngx_str_t   v, *www, *more;
    ngx_uint_t  n;

#if (NGX_DEBUG)
    if (r->connection->log->log_level & NGX_LOG_DEBUG_HTTP) {
        /* the key id of the line below */
        ngx_http_api_key_ctx_text(ctx);
    }
#endif

    www = NULL;

    switch (status) {

    case NGX_HTTP_API_KEY_OK:
    case NGX_HTTP_API_KEY_UNCHECKED:
        rc = NGX_OK;
        break;

    case NGX_HTTP_API_KEY_MISSING:
        www = &alcf->www_missing;
        rc = NGX_HTTP_UNAUTHORIZED;
        break;

    case NGX_HTTP_API_KEY_MALFORMED:
    case NGX_HTTP_API_KEY_UNKNOWN:
    case NGX_HTTP_API_KEY_EXPIRED:
    case NGX_HTTP_API_KEY_REVOKED:
    case NGX_HTTP_API_KEY_BAD_RECORD:
        www = &alcf->www_invalid;
        rc = NGX_HTTP_UNAUTHORIZED;
        break;

    case NGX_HTTP_API_KEY_SCOPE_DENIED:
        www = &alcf->www_scope;
        rc = NGX_HTTP_FORBIDDEN;
        break;

    case NGX_HTTP_API_KEY_DISABLED:
    case NGX_HTTP_API_KEY_IP_DENIED:
    case NGX_HTTP_API_KEY_REFERRER_DENIED:
        rc = NGX_HTTP_FORBIDDEN;
        break;

    case NGX_HTTP_API_KEY_RATE_LIMITED:
        if (ngx_http_api_key_rate_headers(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = NGX_HTTP_TOO_MANY_REQUESTS;
        break;

    case NGX_HTTP_API_KEY_QUOTA_EXCEEDED:
        v.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (v.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v.len = ngx_http_api_key_uint(v.data, ctx->retry_after) - v.data;

        if (ngx_http_api_key_set_header(r, "Retry-After",
                                        sizeof("Retry-After") - 1, &v, NULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = NGX_HTTP_TOO_MANY_REQUESTS;
        break;

    default: /* NGX_HTTP_API_KEY_UNAVAILABLE */
        if (ngx_http_api_key_set_header(r, "Retry-After",
                                        sizeof("Retry-After") - 1, &one, NULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = NGX_HTTP_SERVICE_UNAVAILABLE;
        break;
    }

    if (www && www->len && alcf->www_bearer) {
        if (ngx_http_api_key_set_header(r, "WWW-Authenticate",
                                        sizeof("WWW-Authenticate") - 1, www,
                                        &r->headers_out.www_authenticate)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (www && status != NGX_HTTP_API_KEY_SCOPE_DENIED && alcf->www_more) {
        /* the other configured schemes: SCHEME realm="R" */

        more = alcf->www_more->elts;

        for (n = 0; n < alcf->www_more->nelts; n++) {
            if (ngx_http_api_key_set_header(r, "WWW-Authenticate",
                                            sizeof("WWW-Authenticate") - 1,
                                            &more[n],
                                            r->headers_out.www_authenticate
                                            ? NULL
                                            : &r->headers_out.www_authenticate)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    ctx->rc = rc;
    ctx->problem = (rc == NGX_OK)
                   ? 0 : ngx_http_api_key_problem_wanted(r, alcf, rc);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: decision %V, key id \"%V\"%s",
                   ngx_http_api_key_status_name(status), &ctx->id,
                   ctx->problem ? ", problem+json" : "");

    return rc;
}


/*
 * api_key_error_body json: does the denial get the problem+json body?  Not
 * when the location's error_page takes this status (error_page wins, as
 * ngx_http_special_response_handler() decides it), and not for a
 * subrequest (its parent answers).
 */

static ngx_uint_t
ngx_http_api_key_problem_wanted(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_int_t rc)
{
    ngx_uint_t                 i;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    if (alcf->error_body != NGX_HTTP_API_KEY_ERROR_BODY_JSON
        || r != r->main)
    {
        return 0;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (!r->error_page && clcf->error_pages && r->uri_changes != 0) {
        err_page = clcf->error_pages->elts;

        for (i = 0; i < clcf->error_pages->nelts; i++) {
            if (err_page[i].status == rc) {
                return 0;
            }
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_api_key_set_header(ngx_http_request_t *r, const char *name,
    size_t len, ngx_str_t *value, ngx_table_elt_t **ref)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = len;
    h->value = *value;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    if (ref) {
        *ref = h;
    }

    return NGX_OK;
}


/*
 * Retry-After, and the IETF draft's RateLimit-Policy ("N per w seconds,
 * with this burst") and RateLimit (what is left, and when it is full again).
 */

/* n in decimal at p, as "%ui" writes it: the end */

static u_char *
ngx_http_api_key_uint(u_char *p, ngx_uint_t n)
{
    u_char   digits[NGX_INT_T_LEN];
    u_char  *d, *end;

    end = digits + NGX_INT_T_LEN;
    d = end;

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    while (d < end) {
        *p++ = *d++;
    }

    return p;
}


static ngx_int_t
ngx_http_api_key_rate_headers(ngx_http_request_t *r,
    ngx_http_api_key_ctx_t *ctx)
{
    u_char     *p;
    ngx_str_t   v;

    /* six numbers and the four pieces of text written around them */

    p = ngx_pnalloc(r->pool, 6 * NGX_INT_T_LEN
                             + sizeof(";w=") - 1 + sizeof(";burst=") - 1
                             + sizeof("limit=") - 1
                             + sizeof(", remaining=0, reset=") - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /*
     * every 429 of a limited key: written by hand, as ngx_sprintf() parses
     * its format at each call (some 500 instructions a header)
     */

    v.data = p;
    p = ngx_http_api_key_uint(p, ctx->retry_after ? ctx->retry_after : 1);
    v.len = p - v.data;

    if (ngx_http_api_key_set_header(r, "Retry-After",
                                    sizeof("Retry-After") - 1, &v, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* N;w=W;burst=B */

    v.data = p;
    p = ngx_http_api_key_uint(p, ctx->rate_n);
    p = ngx_cpymem(p, ";w=", sizeof(";w=") - 1);
    p = ngx_http_api_key_uint(p, ctx->rate_window);
    p = ngx_cpymem(p, ";burst=", sizeof(";burst=") - 1);
    p = ngx_http_api_key_uint(p, ctx->rate_burst);
    v.len = p - v.data;

    if (ngx_http_api_key_set_header(r, "RateLimit-Policy",
                                    sizeof("RateLimit-Policy") - 1, &v, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* limit=N, remaining=0, reset=R */

    v.data = p;
    p = ngx_cpymem(p, "limit=", sizeof("limit=") - 1);
    p = ngx_http_api_key_uint(p, ctx->rate_n);
    p = ngx_cpymem(p, ", remaining=0, reset=",
                   sizeof(", remaining=0, reset=") - 1);
    p = ngx_http_api_key_uint(p, ctx->reset);
    v.len = p - v.data;

    return ngx_http_api_key_set_header(r, "RateLimit",
                                       sizeof("RateLimit") - 1, &v, NULL);
}


/*
 * ---- the problem+json body (api_key_error_body json) -----------------
 *
 * A denied request ends in nginx's special response (the error page) for
 * the handler's status, in the location that denied it: with "satisfy
 * all" at once, with "satisfy any" once every access module has denied.
 * A response of the content phase (an upstream's 401, a "return 403
 * text") is left alone: nginx's page is the one with r->err_status set to
 * the response's status.  (With "satisfy any", a request another module
 * let through to a location that answers "return 401;" without text would
 * get the module's problem body: nginx's page for that status too.)  Its
 * headers (WWW-Authenticate,
 * Retry-After, RateLimit*, set by the decision) are kept; the header filter
 * changes the type and length, the body filter replaces nginx's HTML page
 * with the static problem text (HEAD: no body, the same length).
 */

ngx_int_t
ngx_http_api_key_filter_init(ngx_conf_t *cf)
{
    ngx_http_api_key_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_key_module);

    if (!amcf->error_body_json) {
        /* no problem+json anywhere: no filter every response would pass */
        return NGX_OK;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_api_key_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_api_key_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_api_key_header_filter(ngx_http_request_t *r)
{
    ngx_str_t               *body;
    ngx_http_api_key_ctx_t  *ctx;

    switch (r->headers_out.status) {

    case NGX_HTTP_UNAUTHORIZED:
    case NGX_HTTP_FORBIDDEN:
    case NGX_HTTP_TOO_MANY_REQUESTS:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        break;

    default:
        return ngx_http_next_header_filter(r);
    }

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_api_key_get_ctx(r);

    if (ctx == NULL
        || !ctx->problem
        || !ctx->decided
        || ctx->rc != (ngx_int_t) r->headers_out.status)
    {
        return ngx_http_next_header_filter(r);
    }

    /*
     * nginx's own page for the status (ngx_http_special_response_handler()
     * set err_status): not a response of the content phase
     */

    if (r->err_status != r->headers_out.status) {
        return ngx_http_next_header_filter(r);
    }

    body = &ngx_http_api_key_problems[ctx->status];

    if (body->len == 0) {
        return ngx_http_next_header_filter(r);
    }

    /* once: the body filter replaces this response's body */

    ctx->problem = 0;
    ctx->problem_body = 1;

    r->headers_out.content_type_len = sizeof("application/problem+json") - 1;
    ngx_str_set(&r->headers_out.content_type, "application/problem+json");
    r->headers_out.content_type_lowcase = NULL;
    ngx_str_null(&r->headers_out.charset);

    r->headers_out.content_length_n = body->len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: problem+json body for \"%V\"",
                   ngx_http_api_key_status_name(ctx->status));

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_api_key_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_api_key_ctx_t  *ctx;

    if (in == NULL || r != r->main || r->headers_out.status < 400) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_api_key_module);

    if (ctx == NULL || !ctx->problem_body) {
        return ngx_http_next_body_filter(r, in);
    }

    return ngx_http_api_key_problem_body(r, ctx, in);
}


/* nginx's page replaced with the problem+json text */

static ngx_int_t
ngx_http_api_key_problem_body(ngx_http_request_t *r,
    ngx_http_api_key_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_uint_t    last;
    ngx_chain_t  *cl, out;

    /* nginx's page is dropped, up to its last buffer */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            last = 1;
        }
    }

    if (!last) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->problem_body = 0;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->memory = 1;
    b->pos = ngx_http_api_key_problems[ctx->status].data;
    b->last = b->pos + ngx_http_api_key_problems[ctx->status].len;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* ---- woken after waiting on Redis (wait.c) ------------------------ */

/* the request waits: woken by its wait (resume() below), NGX_AGAIN */

static ngx_int_t
ngx_http_api_key_wait_again(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_api_key_resume;

    return NGX_AGAIN;
}


static void
ngx_http_api_key_resume(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}
