/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the parts of a request that carry a key, and
 * api_key_strip.
 *
 * Walks the request's headers and Cookie values and its query string for
 * the key sources (keys.c finds the key with these), and takes the key out
 * of them: the header or cookie, the query argument from r->args, the
 * unparsed URI and the request line, at the start of the request for the
 * server's query sources (strip_early) and in the access phase; cached
 * variables that hold them are dropped.  Calls only nginx and the core.
 */


#include "ngx_http_api_key.h"


/* where nginx keeps the Cookie headers in r->headers_in (unkeep()) */
#if (nginx_version >= 1023000)
#define NGX_HTTP_API_KEY_COOKIES_KEPT  offsetof(ngx_http_headers_in_t, cookie)
#else
#define NGX_HTTP_API_KEY_COOKIES_KEPT  offsetof(ngx_http_headers_in_t, cookies)
#endif


static ngx_int_t ngx_http_api_key_strip_source(ngx_http_request_t *r,
    ngx_http_api_key_source_t *src, ngx_list_part_t *part, ngx_uint_t i,
    ngx_uint_t last);
static ngx_int_t ngx_http_api_key_strip_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *scheme, ngx_uint_t kept, ngx_list_part_t *part,
    ngx_uint_t i, ngx_uint_t last);
static ngx_int_t ngx_http_api_key_strip_query(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_int_t ngx_http_api_key_strip_args(ngx_pool_t *pool, ngx_str_t *s,
    size_t start, size_t end, ngx_str_t *name, ngx_uint_t *removed);
static ngx_int_t ngx_http_api_key_strip_cookie(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_inline ngx_int_t ngx_http_api_key_remove_header(
    ngx_http_request_t *r, ngx_table_elt_t *h, ngx_uint_t kept,
    ngx_list_part_t **part, ngx_uint_t *i, ngx_list_part_t **spare);
static void ngx_http_api_key_unkeep(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_uint_t kept);
static ngx_inline ngx_int_t ngx_http_api_key_list_remove(ngx_list_t *l,
    ngx_list_part_t **part, ngx_uint_t *i, ngx_list_part_t **spare);
static void ngx_http_api_key_early_wipe(void *data);
static void ngx_http_api_key_drop_var(ngx_http_request_t *r, ngx_int_t index);


/*
 * The first header named name (in lowercase) at or after (*part, *i), which
 * are left pointing at it; *part NULL: from the first header.
 */

ngx_table_elt_t *
ngx_http_api_key_next_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_list_part_t **part, ngx_uint_t *i)
{
    ngx_table_elt_t  *h;

    if (*part == NULL) {
        *part = &r->headers_in.headers.part;
        *i = 0;
    }

    for ( ;; ) {

        if (*i >= (*part)->nelts) {
            if ((*part)->next == NULL) {
                return NULL;
            }

            *part = (*part)->next;
            *i = 0;
            continue;
        }

        h = (ngx_table_elt_t *) (*part)->elts + *i;

        if (ngx_http_api_key_header_named(h, name)) {
            return h;
        }

        (*i)++;
    }
}


/*
 * The Cookie, Authorization and query string parsing itself (finding a
 * cookie, a Bearer credential or an argument, and rebuilding a value
 * without the key) is the core's (src/core/extract.cpp): pure functions
 * on byte ranges that the fuzz targets run without nginx.
 */


/* ---- api_key_strip: the key does not go upstream ------------------- */

/*
 * The found key's header or cookie goes; so do the arguments of every query
 * source, wherever the key was found and also when none was (the request
 * line may hold one that "set $args" removed from r->args), and what
 * strip_early() kept of them: a location that strips a source takes it
 * away for good.  A subrequest strips only its own query arguments: its
 * headers are the main request's (shared memory), which keeps them.
 * Variables that hold a stripped source and were cached earlier (an "if" or
 * a "set" before this phase) are dropped, so the access log does not get
 * the key from them.
 */

ngx_int_t
ngx_http_api_key_strip(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_found_t *found,
    ngx_http_api_key_early_t *early)
{
    ngx_int_t                   rc;
    uint32_t                    same;
    ngx_uint_t                  n, i;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h;
    ngx_http_api_key_arg_t     *arg;
    ngx_http_api_key_source_t  *src;

    if (found && r == r->main) {
        src = found->source;
        part = found->part;
        i = found->i;
        h = NULL;

        if (src->type == NGX_HTTP_API_KEY_SRC_HEADER
            && found->last
            && found->other == NULL
            && found->same == 0
            && i < part->nelts)
        {
            h = (ngx_table_elt_t *) part->elts + i;

            if (h->value.data != found->value.data) {
                h = NULL;
            }
        }

        if (h) {
            /*
             * the usual case: one header holds the key, and it is still
             * where find() found it (found->value is its value): removed
             * there, with no walk nor name comparison
             */

            if (ngx_http_api_key_remove_header(r, h, src->kept, &part, &i,
                                               found->spare)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            ngx_http_api_key_drop_var(r, src->var);
            ngx_http_api_key_drop_var(r, src->var2);

        } else {
            rc = ngx_http_api_key_strip_source(r, src, part, i, found->last);

            if (rc == NGX_OK && found->other) {
                rc = ngx_http_api_key_strip_source(r, found->other, NULL, 0,
                                                   0);
            }

            /* the same key in other sources goes too */

            src = alcf->sources->elts;

            same = found->same;

            for (n = 0; rc == NGX_OK && same; n++) {
                if (same & ((uint32_t) 1 << n)) {
                    same &= ~((uint32_t) 1 << n);
                    rc = ngx_http_api_key_strip_source(r, &src[n], NULL, 0,
                                                       0);
                }
            }

            if (rc != NGX_OK) {
                return rc;
            }
        }
    }

    if (alcf->query_sources == 0) {
        return NGX_OK;
    }

    src = alcf->sources->elts;

    for (n = 0; n < alcf->sources->nelts; n++) {

        if (src[n].type != NGX_HTTP_API_KEY_SRC_QUERY) {
            continue;
        }

        if (ngx_http_api_key_strip_query(r, &src[n].name) != NGX_OK) {
            return NGX_ERROR;
        }

        arg = (early && r == r->main)
              ? ngx_http_api_key_early_arg(early, &src[n].name) : NULL;

        if (arg && arg->value.data) {
            ngx_explicit_memzero(arg->value.data, arg->value.len);
            ngx_str_null(&arg->value);
        }
    }

    return NGX_OK;
}


/*
 * Removes one source's key from the request (a query source's: below, in
 * ngx_http_api_key_strip) and drops the variables that hold it.  A header
 * source's (part, i): where the key was found; last: no header of that
 * name follows it (find() looked).
 */

static ngx_int_t
ngx_http_api_key_strip_source(ngx_http_request_t *r,
    ngx_http_api_key_source_t *src, ngx_list_part_t *part, ngx_uint_t i,
    ngx_uint_t last)
{
    static ngx_str_t  authorization = ngx_string("authorization");
    static ngx_str_t  basic = ngx_string("Basic");

    ngx_int_t         rc;

    switch (src->type) {

    case NGX_HTTP_API_KEY_SRC_HEADER:
        rc = ngx_http_api_key_strip_header(r, &src->name, NULL, src->kept,
                                           part, i, last);
        break;

    case NGX_HTTP_API_KEY_SRC_BEARER:
        rc = ngx_http_api_key_strip_header(r, &authorization, &src->name,
                                           src->kept, NULL, 0, 0);
        break;

    case NGX_HTTP_API_KEY_SRC_BASIC:
        rc = ngx_http_api_key_strip_header(r, &authorization, &basic,
                                           src->kept, NULL, 0, 0);
        break;

    case NGX_HTTP_API_KEY_SRC_COOKIE:
        rc = ngx_http_api_key_strip_cookie(r, &src->name);
        break;

    default: /* NGX_HTTP_API_KEY_SRC_QUERY: by the caller */
        rc = NGX_OK;
        break;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_api_key_drop_var(r, src->var);
    ngx_http_api_key_drop_var(r, src->var2);

    return NGX_OK;
}


/*
 * Removes every header named name (with a scheme: every "SCHEME ..." one)
 * from (part, i) on, the position where the key was found (part NULL: from
 * the first header), so the usual single header costs no second walk; and
 * when it is known to be the last of its name (last), no walk at all.
 */

static ngx_int_t
ngx_http_api_key_strip_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *scheme, ngx_uint_t kept, ngx_list_part_t *part, ngx_uint_t i,
    ngx_uint_t last)
{
    ngx_table_elt_t  *h;

    if (part != NULL && last && scheme == NULL) {
        h = (ngx_table_elt_t *) part->elts + i;

        /* still the header find() found (else the walk below) */

        if (i < part->nelts && ngx_http_api_key_header_named(h, name)) {
            return ngx_http_api_key_remove_header(r, h, kept, &part, &i,
                                                  NULL);
        }

        part = NULL;
    }

    if (part == NULL) {
        i = 0;
    }

    while ((h = ngx_http_api_key_next_header(r, name, &part, &i))) {

        if (scheme
            && !ak_auth_is_scheme(h->value.data, h->value.len, scheme->data,
                                  scheme->len))
        {
            i++;
            continue;
        }

        /* (part, i) then points at the header that followed */

        if (ngx_http_api_key_remove_header(r, h, kept, &part, &i, NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}

/*
 * Removes request header h, element i of part, and the pointer nginx keeps
 * to it when it keeps one (kept, its offset in r->headers_in: 0 none);
 * (part, i) and spare as ngx_http_api_key_list_remove() leaves them.
 */

static ngx_inline ngx_int_t
ngx_http_api_key_remove_header(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_uint_t kept, ngx_list_part_t **part, ngx_uint_t *i,
    ngx_list_part_t **spare)
{
    if (kept) {
        ngx_http_api_key_unkeep(r, h, kept);
    }

    return ngx_http_api_key_list_remove(&r->headers_in.headers, part, i,
                                        spare);
}


/*
 * nginx keeps pointers to the headers it knows (Authorization, User-Agent,
 * Referer, X-Forwarded-For...) in r->headers_in, and reads them there:
 * $http_user_agent, $http_referer, $proxy_add_x_forwarded_for, the
 * referer module.  A removed header leaves that place too.  Since nginx
 * 1.23.0 headers of one name are chained through "next" from that pointer;
 * before, the pointer is to the first of them, or, for Cookie and
 * X-Forwarded-For, an array of pointers.
 */

static void
ngx_http_api_key_unkeep(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_uint_t kept)
{
    u_char            *p;
    ngx_table_elt_t  **ph;
#if (nginx_version < 1023000)
    ngx_uint_t         n;
    ngx_array_t       *a;
#endif

    p = (u_char *) &r->headers_in + kept;

    if (kept == offsetof(ngx_http_headers_in_t, authorization)
        && r->headers_in.authorization == h)
    {
        /*
         * what nginx decoded of it ($remote_user, auth_basic; decoded
         * before the strip by an "if" or a "set" that read $remote_user)
         * goes too: marked decoded and empty, as nginx marks a request
         * without the header, so that it is not decoded again
         */
        r->headers_in.user.len = 0;
        r->headers_in.user.data = (u_char *) "";
        ngx_str_null(&r->headers_in.passwd);
    }

#if (nginx_version >= 1023000)

    for (ph = (ngx_table_elt_t **) p; *ph; ph = &(*ph)->next) {
        if (*ph == h) {
            *ph = h->next;
            return;
        }
    }

#else

    if (kept == offsetof(ngx_http_headers_in_t, cookies)
#if (NGX_HTTP_X_FORWARDED_FOR)
        || kept == offsetof(ngx_http_headers_in_t, x_forwarded_for)
#endif
        )
    {
        a = (ngx_array_t *) p;
        ph = a->elts;

        for (n = 0; n < a->nelts; n++) {
            if (ph[n] == h) {
                ngx_memmove(&ph[n], &ph[n + 1],
                            (a->nelts - n - 1) * sizeof(ngx_table_elt_t *));
                a->nelts--;
                return;
            }
        }

        return;
    }

    ph = (ngx_table_elt_t **) p;

    if (*ph == h) {
        *ph = NULL;
    }

#endif
}


/*
 * Removes element i of a part without moving any other element, since
 * r->headers_in keeps pointers into the list: the part is shortened at
 * either end or split in two (the second part: *spare, then NULL, when
 * spare and *spare are not NULL, else allocated from the list's pool).
 * When the list's last part changes, the list's per-part capacity is
 * lowered so that ngx_list_push() never writes past the memory of the
 * original part.  A part other than the first that is emptied leaves the
 * chain: nginx's own list walks (the proxy module's request headers, for
 * one) step into the next part and read its first element without checking
 * that there is one.  On return (*part, *i) is the position of the element
 * that followed the removed one (maybe past the end of *part: iterators
 * move on to the next part).
 */

static ngx_inline ngx_int_t
ngx_http_api_key_list_remove(ngx_list_t *l, ngx_list_part_t **part,
    ngx_uint_t *i, ngx_list_part_t **spare)
{
    ngx_list_part_t  *p, *prev, *tail;

    p = *part;

    if (*i == p->nelts - 1) {
        p->nelts--;

    } else if (*i == 0) {
        p->elts = (char *) p->elts + l->size;
        p->nelts--;

        if (p == l->last) {
            l->nalloc = p->nelts;
        }

        return NGX_OK;

    } else {
        if (spare && *spare) {
            tail = *spare;
            *spare = NULL;

        } else {
            tail = ngx_palloc(l->pool, sizeof(ngx_list_part_t));
            if (tail == NULL) {
                return NGX_ERROR;
            }
        }

        tail->elts = (char *) p->elts + (*i + 1) * l->size;
        tail->nelts = p->nelts - *i - 1;
        tail->next = p->next;

        p->nelts = *i;
        p->next = tail;

        if (p == l->last) {
            l->last = tail;
            l->nalloc = tail->nelts;
        }

        *part = tail;
        *i = 0;

        return NGX_OK;
    }

    if (p->nelts || p == &l->part) {
        return NGX_OK;
    }

    /* an emptied part after the first: unlinked, (*part, *i) before it */

    for (prev = &l->part; prev->next != p; prev = prev->next) {
        /* void */
    }

    prev->next = p->next;

    if (p == l->last) {
        l->last = prev;
        l->nalloc = prev->nelts;
    }

    *part = prev;
    *i = prev->nelts;

    return NGX_OK;
}


/*
 * A query argument is in three strings, which may or may not share memory
 * and may or may not agree: r->args (what ngx_http_arg() and $args read,
 * maybe set by "set $args" or "rewrite"), r->unparsed_uri ($request_uri,
 * and what is proxied while valid_unparsed_uri is set) and r->request_line
 * ($request in the access log; a separate copy over HTTP/2).  Each is
 * parsed and rebuilt on its own, whatever the others hold.
 */

static ngx_int_t
ngx_http_api_key_strip_query(ngx_http_request_t *r, ngx_str_t *name)
{
    size_t                         start, end;
    ngx_uint_t                     removed;
    ngx_http_api_key_main_conf_t  *amcf;

    removed = 0;

    /* r->args: the whole string */

    if (ngx_http_api_key_strip_args(r->pool, &r->args, 0, r->args.len, name,
                                    &removed)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* r->unparsed_uri: path [ "?" args ] */

    if (ak_query_bounds(r->unparsed_uri.data, r->unparsed_uri.len, 0,
                        &start, &end)
        && ngx_http_api_key_strip_args(r->pool, &r->unparsed_uri, start, end,
                                       name, &removed)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* r->request_line: METHOD SP+ URI [ SP "HTTP/" version ] */

    if (ak_query_bounds(r->request_line.data, r->request_line.len, 1,
                        &start, &end)
        && ngx_http_api_key_strip_args(r->pool, &r->request_line, start, end,
                                       name, &removed)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!removed) {
        return NGX_OK;
    }

    /*
     * $request and $request_uri are cacheable: a value taken before this
     * phase (an "if ($request_uri ...)", a map used by "set") would still
     * hold the key when the access log is written
     */

    amcf = ngx_http_get_module_main_conf(r, ngx_http_api_key_module);

    if (amcf->query_vars) {
        ngx_http_api_key_drop_var(r, amcf->var_request);
        ngx_http_api_key_drop_var(r, amcf->var_request_uri);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: query argument \"%V\" stripped", name);

    return NGX_OK;
}


/*
 * Removes every argument named name ("NAME" or "NAME=...", compared as
 * ngx_http_arg() does, without case) from s[start, end), the '&'-separated
 * arguments of s; the '?' before them goes too when none is left (start >
 * 0).  s then points at a new copy of the length the core measured first
 * (ak_args_strip_len).  Sets *removed when one was.
 */

static ngx_int_t
ngx_http_api_key_strip_args(ngx_pool_t *pool, ngx_str_t *s, size_t start,
    size_t end, ngx_str_t *name, ngx_uint_t *removed)
{
    u_char  *out;
    size_t   len;

    /* most requests do not have it: no copy then */

    if (ak_args_strip_len(s->data, s->len, start, end, name->data, name->len,
                          &len)
        == AK_STRIP_NONE)
    {
        return NGX_OK;
    }

    out = ngx_pnalloc(pool, len);
    if (out == NULL) {
        return NGX_ERROR;
    }

    if (len
        && ak_args_strip(s->data, s->len, start, end, name->data, name->len,
                         out, len)
           != len)
    {
        return NGX_ERROR;
    }

    *removed = 1;

    s->data = out;
    s->len = len;

    return NGX_OK;
}


/*
 * Removes "NAME=..." from every Cookie header; an emptied header goes.  The
 * kept cookies are re-joined with "; " whatever separated them before
 * ("a=1;b=2" becomes longer): a first pass measures what will be written.
 */

static ngx_int_t
ngx_http_api_key_strip_cookie(ngx_http_request_t *r, ngx_str_t *name)
{
    u_char           *v;
    size_t            len;
    ngx_int_t         rc;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_str_t         cookie = ngx_string("cookie");

    part = NULL;
    i = 0;

    while ((h = ngx_http_api_key_next_header(r, &cookie, &part, &i))) {

        /* pass 1: is the cookie there, and how long is the rest */

        rc = ak_cookie_strip_len(h->value.data, h->value.len, name->data,
                                 name->len, &len);

        if (rc == AK_STRIP_NONE) {
            i++;
            continue;
        }

        if (rc == AK_STRIP_EMPTY) {

            /* emptied: removed; (part, i) then points at the next header */

            h->value.len = 0;

            if (ngx_http_api_key_remove_header(r, h,
                                               NGX_HTTP_API_KEY_COOKIES_KEPT,
                                               &part, &i, NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        /* pass 2: the kept cookies, exactly len bytes */

        v = ngx_pnalloc(r->pool, len);
        if (v == NULL) {
            return NGX_ERROR;
        }

        if (ak_cookie_strip(h->value.data, h->value.len, name->data,
                            name->len, v, len)
            != len)
        {
            return NGX_ERROR;
        }

        h->value.data = v;
        h->value.len = len;

        i++;
    }

    return NGX_OK;
}


/* ---- the start of a request: the server's query sources ------------- */

/*
 * Called at POST_READ, before the server's rewrite phase, limit_req,
 * limit_conn or a "return" can end the request (and log it): the arguments
 * of the query sources of alcf (the server's configuration, which its
 * locations inherit) are removed from r->args, r->unparsed_uri and
 * r->request_line.  The first occurrence of each (what ngx_http_arg()
 * finds) is kept, a copy wiped when the request ends, for find() in the
 * access phase.  *early stays NULL when the request has none of them.
 */

ngx_int_t
ngx_http_api_key_strip_early(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t **early)
{
    ngx_str_t                   value;
    ngx_uint_t                  n, nq;
    ngx_pool_cleanup_t         *cln;
    ngx_http_api_key_arg_t     *arg;
    ngx_http_api_key_early_t   *e;
    ngx_http_api_key_source_t  *src;

    *early = NULL;

    src = alcf->sources->elts;
    nq = 0;

    /* most requests have none: no allocation then */

    for (n = 0; n < alcf->sources->nelts; n++) {
        if (src[n].type == NGX_HTTP_API_KEY_SRC_QUERY
            && ak_args_has(r->args.data, r->args.len, src[n].name.data,
                           src[n].name.len))
        {
            nq++;
        }
    }

    if (nq == 0) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_api_key_early_t)
                                        + nq * sizeof(ngx_http_api_key_arg_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    e = cln->data;
    ngx_memzero(e, sizeof(ngx_http_api_key_early_t)
                   + nq * sizeof(ngx_http_api_key_arg_t));
    e->args = (ngx_http_api_key_arg_t *) (e + 1);

    cln->handler = ngx_http_api_key_early_wipe;

    e->sent[0] = r->args;
    e->sent[1] = r->unparsed_uri;
    e->sent[2] = r->request_line;

    for (n = 0; n < alcf->sources->nelts; n++) {

        if (src[n].type != NGX_HTTP_API_KEY_SRC_QUERY
            || e->nargs == nq
            || ngx_http_api_key_early_arg(e, &src[n].name)
            || !ak_args_has(r->args.data, r->args.len, src[n].name.data,
                            src[n].name.len))
        {
            continue;
        }

        arg = &e->args[e->nargs++];
        arg->name = src[n].name;

        if (ngx_http_arg(r, src[n].name.data, src[n].name.len, &value)
            == NGX_OK)
        {
            arg->value.data = ngx_pnalloc(r->pool, value.len + 1);
            if (arg->value.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(arg->value.data, value.data, value.len);
            arg->value.len = value.len;
        }

        if (ngx_http_api_key_strip_query(r, &src[n].name) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    e->stripped[0] = r->args;
    e->stripped[1] = r->unparsed_uri;
    e->stripped[2] = r->request_line;

    *early = e;

    return NGX_OK;
}


/*
 * A location with api_key_strip off that reads one of the arguments
 * strip_early() removed gets them back, as they came: r->args,
 * r->unparsed_uri and r->request_line, each unless something (a rewrite,
 * "set $args") replaced it meanwhile.
 */

void
ngx_http_api_key_restore_early(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t *early)
{
    ngx_str_t                     *s[3];
    ngx_uint_t                     n, restored;
    ngx_http_api_key_arg_t        *arg;
    ngx_http_api_key_source_t     *src;
    ngx_http_api_key_main_conf_t  *amcf;

    src = alcf->sources->elts;

    for (n = 0; n < alcf->sources->nelts; n++) {
        if (src[n].type == NGX_HTTP_API_KEY_SRC_QUERY) {
            arg = ngx_http_api_key_early_arg(early, &src[n].name);

            if (arg && arg->value.data) {
                goto restore;
            }
        }
    }

    return;

restore:

    s[0] = &r->args;
    s[1] = &r->unparsed_uri;
    s[2] = &r->request_line;

    restored = 0;

    for (n = 0; n < 3; n++) {
        if (s[n]->data == early->stripped[n].data
            && s[n]->len == early->stripped[n].len
            && (s[n]->data != early->sent[n].data
                || s[n]->len != early->sent[n].len))
        {
            *s[n] = early->sent[n];
            restored = 1;
        }
    }

    if (!restored) {
        return;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_api_key_module);

    if (amcf->query_vars) {
        ngx_http_api_key_drop_var(r, amcf->var_request);
        ngx_http_api_key_drop_var(r, amcf->var_request_uri);
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: query arguments put back (api_key_strip off)");
}


/* what strip_early() kept under that name (compared without case) */

ngx_http_api_key_arg_t *
ngx_http_api_key_early_arg(ngx_http_api_key_early_t *early, ngx_str_t *name)
{
    ngx_uint_t               n;
    ngx_http_api_key_arg_t  *arg;

    arg = early->args;

    for (n = 0; n < early->nargs; n++) {
        if (arg[n].name.len == name->len
            && ngx_strncasecmp(arg[n].name.data, name->data, name->len) == 0)
        {
            return &arg[n];
        }
    }

    return NULL;
}


/* the request's pool goes: the kept values with it, wiped first */

static void
ngx_http_api_key_early_wipe(void *data)
{
    ngx_http_api_key_early_t  *early = data;

    ngx_uint_t  n;

    for (n = 0; n < early->nargs; n++) {
        if (early->args[n].value.data) {
            ngx_explicit_memzero(early->args[n].value.data,
                                 early->args[n].value.len);
        }
    }
}


/*
 * A cacheable variable whose value may hold a stripped key (taken before it
 * was stripped) is computed again when next read.
 */

static void
ngx_http_api_key_drop_var(ngx_http_request_t *r, ngx_int_t index)
{
    if (index == NGX_ERROR || r->variables == NULL) {
        return;
    }

    r->variables[index].valid = 0;
    r->variables[index].not_found = 0;
}
