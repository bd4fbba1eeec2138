/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: $api_key_* variables.
 */


#include "ngx_http_api_key.h"


#define NGX_HTTP_API_KEY_VAR_STATUS            0
#define NGX_HTTP_API_KEY_VAR_ID                1
#define NGX_HTTP_API_KEY_VAR_OWNER             2
#define NGX_HTTP_API_KEY_VAR_PLAN              3
#define NGX_HTTP_API_KEY_VAR_SCOPES            4
#define NGX_HTTP_API_KEY_VAR_RATE_REMAINING    5
#define NGX_HTTP_API_KEY_VAR_QUOTA_REMAINING   6


static ngx_int_t ngx_http_api_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_api_key_vars[] = {

    { ngx_string("api_key_status"), NULL, ngx_http_api_key_variable,
      NGX_HTTP_API_KEY_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("api_key_id"), NULL, ngx_http_api_key_variable,
      NGX_HTTP_API_KEY_VAR_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("api_key_owner"), NULL, ngx_http_api_key_variable,
      NGX_HTTP_API_KEY_VAR_OWNER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("api_key_plan"), NULL, ngx_http_api_key_variable,
      NGX_HTTP_API_KEY_VAR_PLAN, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("api_key_scopes"), NULL, ngx_http_api_key_variable,
      NGX_HTTP_API_KEY_VAR_SCOPES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("api_key_rate_remaining"), NULL, ngx_http_api_key_variable,
      NGX_HTTP_API_KEY_VAR_RATE_REMAINING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("api_key_quota_remaining"), NULL, ngx_http_api_key_variable,
      NGX_HTTP_API_KEY_VAR_QUOTA_REMAINING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_api_key_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_api_key_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_api_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                  *p;
    ngx_int_t                n;
    ngx_str_t               *s;
    ngx_http_api_key_ctx_t  *ctx;

    /* a subrequest checked on its own (auth_request): its outcome */

    ctx = (r != r->main) ? ngx_http_api_key_get_ctx(r) : NULL;

    if (ctx == NULL || !ctx->decided) {
        ctx = ngx_http_api_key_get_ctx(r->main);
    }

    if (ctx == NULL || !ctx->decided) {
        v->not_found = 1;
        return NGX_OK;
    }

    /* the record's strings: made now, for the first variable that asks */
    ngx_http_api_key_ctx_text(ctx);

    switch (data) {

    case NGX_HTTP_API_KEY_VAR_STATUS:
        s = ngx_http_api_key_status_name(ctx->status);
        break;

    case NGX_HTTP_API_KEY_VAR_ID:
        s = &ctx->id;
        break;

    case NGX_HTTP_API_KEY_VAR_OWNER:
        s = &ctx->owner;
        break;

    case NGX_HTTP_API_KEY_VAR_PLAN:
        s = &ctx->plan;
        break;

    case NGX_HTTP_API_KEY_VAR_SCOPES:
        s = &ctx->scopes;
        break;

    default:
        n = (data == NGX_HTTP_API_KEY_VAR_RATE_REMAINING)
            ? ctx->rate_remaining : ctx->quota_remaining;

        if (n < 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_sprintf(p, "%i", n) - p;
        v->data = p;
        v->valid = 1;
        v->no_cacheable = 1;
        v->not_found = 0;
        return NGX_OK;
    }

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
