/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: api_key_verify, the answer.
 *
 * The access phase checked the key (from the POST body {"key": "..."} or
 * the location's sources) as for any request, through the same cache and
 * Redis reads, without denying: here the outcome becomes a JSON document.
 * The key is never in it.
 */


#include "ngx_http_api_key.h"


static u_char *ngx_http_api_key_verify_string(u_char *p, ngx_str_t *s);


ngx_int_t
ngx_http_api_key_verify_handler(ngx_http_request_t *r)
{
    u_char                  *p, *q, *end;
    size_t                   len;
    ngx_int_t                rc;
    ngx_buf_t               *b;
    ngx_str_t               *status, one = ngx_string("1");
    ngx_uint_t               valid, first;
    ngx_chain_t              out;
    ngx_table_elt_t         *h;
    ngx_http_api_key_ctx_t  *ctx;

    ctx = ngx_http_api_key_get_ctx(r->main);

    if (ctx == NULL || !ctx->decided) {
        /* the access phase did not check a key here (satisfy any...) */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "api_key_verify: no key check ran for this request");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    status = ngx_http_api_key_status_name(ctx->status);
    valid = (ctx->status == NGX_HTTP_API_KEY_OK);

    /* the record's strings, made from the request's copy */
    ngx_http_api_key_ctx_text(ctx);

    /*
     * sized from what is written: every string escaped at worst 6 bytes a
     * byte, each scope 3 more, the numbers, the fixed text
     */

    len = sizeof("{\"valid\":false,\"status\":\"\",\"id\":,\"owner\":,"
                 "\"plan\":,\"scopes\":[],\"expires_at\":,"
                 "\"rate_remaining\":,\"quota_remaining\":}\n")
          + status->len
          + 6 * (ctx->id.len + ctx->owner.len + ctx->plan.len) + 3 * 4
          + 4 * ctx->scopes.len + 3
          + 3 * NGX_INT64_LEN;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    p = ngx_sprintf(p, "{\"valid\":%s,\"status\":\"%V\",\"id\":",
                    valid ? "true" : "false", status);
    p = ngx_http_api_key_verify_string(p, &ctx->id);
    p = ngx_cpymem(p, ",\"owner\":", sizeof(",\"owner\":") - 1);
    p = ngx_http_api_key_verify_string(p, &ctx->owner);
    p = ngx_cpymem(p, ",\"plan\":", sizeof(",\"plan\":") - 1);
    p = ngx_http_api_key_verify_string(p, &ctx->plan);
    p = ngx_cpymem(p, ",\"scopes\":[", sizeof(",\"scopes\":[") - 1);

    /* the scopes: words of A-Z a-z 0-9 . _ : / * - (no escaping needed) */

    first = 1;
    q = ctx->scopes.data;
    end = q + ctx->scopes.len;

    while (q < end) {
        while (q < end && *q == ' ') {
            q++;
        }

        if (q == end) {
            break;
        }

        if (!first) {
            *p++ = ',';
        }

        first = 0;
        *p++ = '"';

        while (q < end && *q != ' ') {
            *p++ = (*q == '"' || *q == '\\') ? '_' : *q;
            q++;
        }

        *p++ = '"';
    }

    *p++ = ']';

    p = ngx_cpymem(p, ",\"expires_at\":", sizeof(",\"expires_at\":") - 1);
    p = ctx->expires_at ? ngx_sprintf(p, "%L", ctx->expires_at)
                        : ngx_cpymem(p, "null", 4);

    p = ngx_cpymem(p, ",\"rate_remaining\":",
                   sizeof(",\"rate_remaining\":") - 1);
    p = (ctx->rate_remaining >= 0) ? ngx_sprintf(p, "%i", ctx->rate_remaining)
                                   : ngx_cpymem(p, "null", 4);

    p = ngx_cpymem(p, ",\"quota_remaining\":",
                   sizeof(",\"quota_remaining\":") - 1);
    p = (ctx->quota_remaining >= 0)
        ? ngx_sprintf(p, "%i", ctx->quota_remaining)
        : ngx_cpymem(p, "null", 4);

    p = ngx_cpymem(p, "}\n", 2);

    if ((size_t) (p - b->pos) > len) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "api_key_verify: the answer outgrew its buffer");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    /* Redis could not answer: not "invalid", a 503 to retry */

    if (ctx->status == NGX_HTTP_API_KEY_UNAVAILABLE
        || ctx->status == NGX_HTTP_API_KEY_UNCHECKED)
    {
        r->headers_out.status = NGX_HTTP_SERVICE_UNAVAILABLE;

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value = one;

    } else {
        r->headers_out.status = NGX_HTTP_OK;
    }

    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* a JSON string of s (null when empty): '"' and '\' escaped, control
 * characters as \u00XX (records have none; at most 6 bytes a byte) */

static u_char *
ngx_http_api_key_verify_string(u_char *p, ngx_str_t *s)
{
    size_t  i;

    if (s->len == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';

    for (i = 0; i < s->len; i++) {
        if (s->data[i] == '"' || s->data[i] == '\\') {
            *p++ = '\\';
            *p++ = s->data[i];

        } else if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            p = ngx_sprintf(p, "\\u%04xd", (ngx_uint_t) s->data[i]);

        } else {
            *p++ = s->data[i];
        }
    }

    *p++ = '"';

    return p;
}
