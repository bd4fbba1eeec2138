/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: directives, configuration, shared zones and
 * per-worker state.
 */


#include "ngx_http_api_key.h"


static void *ngx_http_api_key_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_api_key_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_api_key_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_api_key_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_api_key_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_api_key_init_process(ngx_cycle_t *cycle);
static void ngx_http_api_key_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_api_key_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_key_hash(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_api_key_verify(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_api_key_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_api_key_var_index(ngx_conf_t *cf, ngx_int_t *index,
    ngx_str_t *name);
static ngx_int_t ngx_http_api_key_query_vars(ngx_conf_t *cf);
static ngx_int_t ngx_http_api_key_source_vars(ngx_conf_t *cf,
    ngx_http_api_key_source_t *src);
static ngx_int_t ngx_http_api_key_www_schemes(ngx_conf_t *cf,
    ngx_http_api_key_loc_conf_t *conf);
static char *ngx_http_api_key_source(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_key_format(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_key_scope(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_api_key_realm(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_http_api_key_fail_modes[] = {
    { ngx_string("closed"), 0 },
    { ngx_string("open"), 1 },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_api_key_error_bodies[] = {
    { ngx_string("html"), NGX_HTTP_API_KEY_ERROR_BODY_HTML },
    { ngx_string("json"), NGX_HTTP_API_KEY_ERROR_BODY_JSON },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_api_key_commands[] = {

    { ngx_string("api_key_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_api_key_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_api_key_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_hash"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_api_key_hash,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_api_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_source"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_api_key_source,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_format"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_api_key_format,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_api_key_scope,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_key_loc_conf_t, fail_open),
      &ngx_http_api_key_fail_modes },

    { ngx_string("api_key_strip"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_key_loc_conf_t, strip),
      NULL },

    { ngx_string("api_key_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_api_key_realm,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_error_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_api_key_loc_conf_t, error_body),
      &ngx_http_api_key_error_bodies },

    { ngx_string("api_key_verify"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_api_key_verify,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("api_key_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_api_key_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_api_key_module_ctx = {
    ngx_http_api_key_preconfiguration,     /* preconfiguration */
    ngx_http_api_key_postconfiguration,    /* postconfiguration */

    ngx_http_api_key_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_api_key_create_loc_conf,      /* create location configuration */
    ngx_http_api_key_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_api_key_module = {
    NGX_MODULE_V1,
    &ngx_http_api_key_module_ctx,          /* module context */
    ngx_http_api_key_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_api_key_init_module,          /* init module */
    ngx_http_api_key_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_api_key_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};



/* a variable whose index is looked up once the configuration is read */
typedef struct {
    ngx_int_t                    *index;     /* where it goes */
    ngx_str_t                     name;
} ngx_http_api_key_var_t;


/* where the first "api_key" directive stands, for errors found later */
static ngx_str_t     ngx_http_api_key_first_file;
static ngx_uint_t    ngx_http_api_key_first_line;


static void *
ngx_http_api_key_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_api_key_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_key_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&amcf->zones, cf->pool, 2,
                       sizeof(ngx_http_api_key_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&amcf->vars, cf->pool, 4,
                       sizeof(ngx_http_api_key_var_t))
        != NGX_OK)
    {
        return NULL;
    }

    amcf->hash_kind = NGX_CONF_UNSET;

    return amcf;
}


static void *
ngx_http_api_key_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_api_key_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_key_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     alcf->format_prefix = { 0, NULL };
     *     alcf->realm = { 0, NULL };
     *     alcf->www_* = { 0, NULL };
     */

    alcf->zone = NGX_CONF_UNSET_PTR;
    alcf->sources = NGX_CONF_UNSET_PTR;
    alcf->format = NGX_CONF_UNSET;
    alcf->scopes = NGX_CONF_UNSET_PTR;
    alcf->fail_open = NGX_CONF_UNSET;
    alcf->strip = NGX_CONF_UNSET;
    alcf->query_sources = NGX_CONF_UNSET_UINT;
    alcf->error_body = NGX_CONF_UNSET_UINT;

    return alcf;
}


static char *
ngx_http_api_key_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_api_key_loc_conf_t *prev = parent;
    ngx_http_api_key_loc_conf_t *conf = child;

    u_char                        *p;
    size_t                         len;
    ngx_uint_t                     n;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_core_srv_conf_t      *cscf;
    ngx_http_api_key_source_t     *src;
    ngx_http_api_key_main_conf_t  *amcf;

    ngx_conf_merge_ptr_value(conf->zone, prev->zone, NULL);

    if (conf->sources == NGX_CONF_UNSET_PTR) {
        if (prev->sources == NGX_CONF_UNSET_PTR) {
            /* default: header:X-API-Key bearer */
            prev->sources = ngx_array_create(cf->pool, 2,
                                         sizeof(ngx_http_api_key_source_t));
            if (prev->sources == NULL) {
                return NGX_CONF_ERROR;
            }

            src = ngx_array_push_n(prev->sources, 2);
            if (src == NULL) {
                return NGX_CONF_ERROR;
            }

            src[0].type = NGX_HTTP_API_KEY_SRC_HEADER;
            ngx_str_set(&src[0].name, "x-api-key");
            src[1].type = NGX_HTTP_API_KEY_SRC_BEARER;
            ngx_str_set(&src[1].name, "Bearer");

            if (ngx_http_api_key_source_vars(cf, &src[0]) != NGX_OK
                || ngx_http_api_key_source_vars(cf, &src[1]) != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
        }

        conf->sources = prev->sources;
    }

    /* the query sources, counted once: most configurations have none */

    conf->query_sources = 0;
    src = conf->sources->elts;

    for (n = 0; n < conf->sources->nelts; n++) {
        if (src[n].type == NGX_HTTP_API_KEY_SRC_QUERY) {
            conf->query_sources++;
        }
    }

    /*
     * which sources are followed only by Authorization ones (the default
     * header:X-API-Key bearer): a request without the header has nothing
     * more to look at once the key is found there (keys.c)
     */

    for (n = conf->sources->nelts; n-- > 0; /* void */) {
        src[n].rest_auth = (n + 1 == conf->sources->nelts)
                           || ((src[n + 1].type == NGX_HTTP_API_KEY_SRC_BEARER
                                || src[n + 1].type
                                   == NGX_HTTP_API_KEY_SRC_BASIC)
                               && src[n + 1].rest_auth);
    }

    ngx_conf_merge_value(conf->strip, prev->strip, 1);

    /*
     * A server's own configuration with query sources to strip: the
     * POST_READ handler is needed (it reads the server's configuration; a
     * location's query sources are stripped in the access phase).  While
     * servers merge, cf->ctx->srv_conf is the server's: its ctx holds the
     * server's loc_conf array.  (Merged before the postconfiguration,
     * which reads the flag.)
     */

    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

    if (conf->strip && conf->query_sources
        && cscf != NULL
        && cscf->ctx->loc_conf[ngx_http_api_key_module.ctx_index] == conf)
    {
        amcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_api_key_module);
        amcf->early_strip = 1;
    }

    if (conf->format == NGX_CONF_UNSET) {
        conf->format = (prev->format == NGX_CONF_UNSET)
                       ? NGX_HTTP_API_KEY_FORMAT_ANY : prev->format;
        conf->format_prefix = prev->format_prefix;
    }

    if (conf->scopes == NGX_CONF_UNSET_PTR) {
        conf->scopes = (prev->scopes == NGX_CONF_UNSET_PTR)
                       ? NULL : prev->scopes;
        conf->scopes_text = prev->scopes_text;
    }

    ngx_conf_merge_value(conf->fail_open, prev->fail_open, 0);
    ngx_conf_merge_uint_value(conf->error_body, prev->error_body,
                              NGX_HTTP_API_KEY_ERROR_BODY_HTML);

    if (conf->error_body == NGX_HTTP_API_KEY_ERROR_BODY_JSON) {
        /* the body filters are needed (merged before the postconfiguration,
         * which reads the flag) */
        amcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_api_key_module);
        amcf->error_body_json = 1;
    }

    if (conf->realm.data == NULL) {
        if (prev->realm.data == NULL) {
            ngx_str_set(&prev->realm, "api");
        }

        conf->realm = prev->realm;
        conf->www_missing = prev->www_missing;
        conf->www_invalid = prev->www_invalid;

        if (conf->scopes == prev->scopes) {
            /* a block with its own api_key_scope builds its own, below */
            conf->www_scope = prev->www_scope;
        }
    }

    if (conf->www_missing.data == NULL) {
        /* Bearer realm="R"[, error="invalid_token"] */

        len = sizeof("Bearer realm=\"\"") - 1 + conf->realm.len;

        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->www_missing.data = p;
        p = ngx_cpymem(p, "Bearer realm=\"", sizeof("Bearer realm=\"") - 1);
        p = ngx_cpymem(p, conf->realm.data, conf->realm.len);
        *p++ = '"';
        conf->www_missing.len = p - conf->www_missing.data;

        len = conf->www_missing.len + sizeof(", error=\"invalid_token\"") - 1;

        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->www_invalid.data = p;
        p = ngx_cpymem(p, conf->www_missing.data, conf->www_missing.len);
        p = ngx_cpymem(p, ", error=\"invalid_token\"",
                       sizeof(", error=\"invalid_token\"") - 1);
        conf->www_invalid.len = p - conf->www_invalid.data;
    }

    if (conf->scopes && conf->www_scope.data == NULL) {
        /* Bearer realm="R", error="insufficient_scope", scope="a b" */

        len = conf->www_missing.len
              + sizeof(", error=\"insufficient_scope\", scope=\"\"") - 1
              + conf->scopes_text.len;

        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->www_scope.data = p;
        p = ngx_cpymem(p, conf->www_missing.data, conf->www_missing.len);
        p = ngx_cpymem(p, ", error=\"insufficient_scope\", scope=\"",
                       sizeof(", error=\"insufficient_scope\", scope=\"") - 1);
        p = ngx_cpymem(p, conf->scopes_text.data, conf->scopes_text.len);
        *p++ = '"';
        conf->www_scope.len = p - conf->www_scope.data;
    }

    if (ngx_http_api_key_www_schemes(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* (the core module's settings of the location are merged by now) */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    conf->pass = (clcf->satisfy == NGX_HTTP_SATISFY_ALL) ? NGX_DECLINED
                                                         : NGX_OK;

    if (conf->verify) {

        /*
         * api_key_verify: its request body holds a key, which must never
         * reach a file.  nginx refuses a body over client_max_body_size as
         * it arrives (chunked and HTTP/2 ones too), keeps one that fits
         * client_body_buffer_size in memory, and writes every body to a
         * file with client_body_in_file_only: so, in this location, at
         * most the body it reads, a buffer that holds it, never a file.
         */

        if (clcf->client_max_body_size == 0
            || clcf->client_max_body_size > NGX_HTTP_API_KEY_VERIFY_BODY_MAX)
        {
            clcf->client_max_body_size = NGX_HTTP_API_KEY_VERIFY_BODY_MAX;
        }

        if (clcf->client_body_buffer_size < NGX_HTTP_API_KEY_VERIFY_BODY_MAX) {
            clcf->client_body_buffer_size = NGX_HTTP_API_KEY_VERIFY_BODY_MAX;
        }

        clcf->client_body_in_file_only = 0;    /* off */
    }

    return NGX_CONF_OK;
}


/*
 * The schemes a 401 names in WWW-Authenticate: Bearer (with error= and
 * scope=, as before) when a bearer source is configured or no
 * Authorization source is; one more challenge, SCHEME realm="R", for each
 * other scheme (authorization:SCHEME, Basic), in the order configured.
 */

static ngx_int_t
ngx_http_api_key_www_schemes(ngx_conf_t *cf, ngx_http_api_key_loc_conf_t *conf)
{
    u_char                     *p;
    ngx_str_t                  *w, *scheme, basic = ngx_string("Basic");
    ngx_uint_t                  n, k, dup;
    ngx_http_api_key_source_t  *src;

    conf->www_bearer = 1;
    conf->www_more = NULL;

    src = conf->sources->elts;
    dup = 0;

    for (n = 0; n < conf->sources->nelts; n++) {

        if (src[n].type == NGX_HTTP_API_KEY_SRC_BASIC) {
            scheme = &basic;

        } else if (src[n].type == NGX_HTTP_API_KEY_SRC_BEARER) {
            scheme = &src[n].name;

        } else {
            continue;
        }

        if (scheme->len == 6
            && ngx_strncasecmp(scheme->data, (u_char *) "Bearer", 6) == 0)
        {
            dup = 1;
            continue;
        }

        if (conf->www_more == NULL) {
            conf->www_more = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
            if (conf->www_more == NULL) {
                return NGX_ERROR;
            }
        }

        /* once per scheme (basic and basic:password are both Basic) */

        w = conf->www_more->elts;

        for (k = 0; k < conf->www_more->nelts; k++) {
            if (w[k].len > scheme->len && w[k].data[scheme->len] == ' '
                && ngx_strncasecmp(w[k].data, scheme->data, scheme->len) == 0)
            {
                break;
            }
        }

        if (k < conf->www_more->nelts) {
            continue;
        }

        w = ngx_array_push(conf->www_more);
        if (w == NULL) {
            return NGX_ERROR;
        }

        w->len = scheme->len + sizeof(" realm=\"\"") - 1 + conf->realm.len;
        w->data = ngx_pnalloc(cf->pool, w->len);
        if (w->data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(w->data, scheme->data, scheme->len);
        p = ngx_cpymem(p, " realm=\"", sizeof(" realm=\"") - 1);
        p = ngx_cpymem(p, conf->realm.data, conf->realm.len);
        *p++ = '"';
    }

    if (conf->www_more && !dup) {
        conf->www_bearer = 0;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_api_key_preconfiguration(ngx_conf_t *cf)
{
    ngx_str_null(&ngx_http_api_key_first_file);
    ngx_http_api_key_first_line = 0;

    return ngx_http_api_key_add_variables(cf);
}


static ngx_int_t
ngx_http_api_key_postconfiguration(ngx_conf_t *cf)
{
    char                          err[AK_ERR_LEN];
    ak_hasher_t                  *h;
    ngx_http_handler_pt          *hp;
    ngx_http_core_main_conf_t    *cmcf;
    ngx_http_api_key_main_conf_t *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_key_module);

    if (!amcf->enabled) {
        return NGX_OK;
    }

    if (amcf->redis == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"api_key\" in %V:%ui needs \"api_key_redis\" "
                      "in the http block",
                      &ngx_http_api_key_first_file,
                      ngx_http_api_key_first_line);
        return NGX_ERROR;
    }

    if (amcf->hash_kind == NGX_CONF_UNSET) {
        amcf->hash_kind = AK_HASH_SHA256;
    }

    /* make sure the hash can be set up before a worker needs it */

    h = ak_hasher_new((int) amcf->hash_kind, amcf->secret.data,
                      amcf->secret.len, err, sizeof(err));
    if (h == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "api_key_hash: %s", err);
        return NGX_ERROR;
    }

    ak_hasher_free(h);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * the server's query sources leave the request first (no block strips
     * one: no handler, which every request would call for nothing)
     */

    if (amcf->early_strip) {
        hp = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
        if (hp == NULL) {
            return NGX_ERROR;
        }

        *hp = ngx_http_api_key_post_read_handler;
    }

    /* subrequests skip the access phase: they are checked here */

    hp = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (hp == NULL) {
        return NGX_ERROR;
    }

    *hp = ngx_http_api_key_subrequest_handler;

    hp = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (hp == NULL) {
        return NGX_ERROR;
    }

    *hp = ngx_http_api_key_handler;

    /* api_key_error_body json: the denials' problem+json bodies */

    return ngx_http_api_key_filter_init(cf);
}


static ngx_int_t
ngx_http_api_key_init_process(ngx_cycle_t *cycle)
{
    ngx_http_conf_ctx_t           *ctx;
    ngx_http_api_key_main_conf_t  *amcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        /* not in the master, not in cache manager/loader helpers */
        return NGX_OK;
    }

    ak_cache_set_stripe((unsigned) ngx_worker);

    ctx = (ngx_http_conf_ctx_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_http_module);
    if (ctx == NULL) {
        return NGX_OK;
    }

    amcf = ctx->main_conf[ngx_http_api_key_module.ctx_index];

    if (amcf == NULL || !amcf->enabled || amcf->redis == NULL) {
        return NGX_OK;
    }

    /* each unit of the worker, those used by others first */

    if (ngx_http_api_key_keys_init_worker(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_api_key_redis_init_worker(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_api_key_lookup_init_worker(cycle, amcf->redis);

    if (ngx_http_api_key_events_init_worker(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_api_key_limits_init_worker(cycle);
    ngx_http_api_key_rate_init_worker(cycle);

    ngx_http_api_key_usage_init_worker(cycle, amcf);

    if (ngx_http_api_key_marker_init_worker(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* everyone is ready for answers: connect */

    ngx_http_api_key_redis_start(cycle);

    return NGX_OK;
}


static void
ngx_http_api_key_exit_process(ngx_cycle_t *cycle)
{
    /* the worker's counts into the zones, kept across a reload */
    ngx_http_api_key_usage_exit_worker(cycle);

    ngx_http_api_key_redis_exit_worker(cycle);
    ngx_http_api_key_keys_exit_worker(cycle);
}


/*
 * api_key_redis URL [timeout=100ms] [connect_timeout=1s]
 *               [password_file=PATH] [prefix=apikey:]
 *               [channel=apikey:events] [keyspace_events=on|off]
 *               [max_pending=1000] [max_timeouts=3]
 */

static char *
ngx_http_api_key_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_main_conf_t *amcf = conf;

    ngx_http_api_key_redis_conf_t  *rcf;

    if (amcf->redis) {
        return "is duplicate";
    }

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_key_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_api_key_redis_parse(cf, rcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    amcf->redis = rcf;

    return NGX_CONF_OK;
}


/* api_key_hash sha256 | hmac-sha256 secret_file=PATH */

static char *
ngx_http_api_key_hash(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_main_conf_t *amcf = conf;

    ngx_str_t  *value, s;

    if (amcf->hash_kind != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "sha256") == 0) {
        if (cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"sha256\" takes no parameter");
            return NGX_CONF_ERROR;
        }

        amcf->hash_kind = AK_HASH_SHA256;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "hmac-sha256") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid hash \"%V\": expected \"sha256\" or "
                           "\"hmac-sha256 secret_file=PATH\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts != 3
        || ngx_strncmp(value[2].data, "secret_file=", 12) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"hmac-sha256\" needs \"secret_file=PATH\"");
        return NGX_CONF_ERROR;
    }

    s.data = value[2].data + 12;
    s.len = value[2].len - 12;

    if (ngx_http_api_key_read_secret(cf, &s, &amcf->secret, "secret_file")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    amcf->hash_kind = AK_HASH_HMAC_SHA256;

    return NGX_CONF_OK;
}


/* api_key zone | off */

static char *
ngx_http_api_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_loc_conf_t *alcf = conf;

    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_http_api_key_zone_t      **zp;
    ngx_http_api_key_main_conf_t  *amcf;

    if (alcf->zone != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        alcf->zone = NULL;
        return NGX_CONF_OK;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_key_module);

    zp = amcf->zones.elts;
    for (i = 0; i < amcf->zones.nelts; i++) {
        if (zp[i]->name.len == value[1].len
            && ngx_strncmp(zp[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            alcf->zone = zp[i];
            break;
        }
    }

    if (alcf->zone == NGX_CONF_UNSET_PTR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown api_key_zone \"%V\" (declare it with "
                           "\"api_key_zone\" before this line)", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (!amcf->enabled) {
        amcf->enabled = 1;
        ngx_http_api_key_first_file = cf->conf_file->file.name;
        ngx_http_api_key_first_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


/*
 * api_key_verify ZONE [consume=on|off]: this location answers with the
 * outcome of the key as JSON (verify.c); the key is checked as api_key
 * ZONE would (the same cache, the same reads), without denying.
 */

static char *
ngx_http_api_key_verify(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_loc_conf_t *alcf = conf;

    char                      *rv;
    ngx_str_t                 *value;
    ngx_uint_t                 verify;
    ngx_http_core_loc_conf_t  *clcf;

    value = cf->args->elts;
    verify = NGX_HTTP_API_KEY_VERIFY_PEEK;

    if (cf->args->nelts == 3) {
        if (ngx_strcmp(value[2].data, "consume=on") == 0) {
            verify = NGX_HTTP_API_KEY_VERIFY_CONSUME;

        } else if (ngx_strcmp(value[2].data, "consume=off") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" (expected "
                               "consume=on or consume=off)", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "api_key_verify needs a zone, not \"off\"");
        return NGX_CONF_ERROR;
    }

    /* the zone, as "api_key ZONE" (which may not be here as well) */

    rv = ngx_http_api_key(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    alcf->verify = verify;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_api_key_verify_handler;

    return NGX_CONF_OK;
}


/*
 * The index of a cacheable variable that may hold a key, whose value taken
 * before the key is stripped is dropped then (strip.c): NGX_ERROR until the
 * configuration is read, then the variable's index if something indexed it
 * (a log format, an "if", a "set", a "map"...), else still NGX_ERROR: no
 * request keeps a value of it then, and none gets one more variable to
 * allocate.  (A variable read by name at run time, in SSI or njs, is
 * computed on each read.)
 */

static ngx_int_t
ngx_http_api_key_var_index(ngx_conf_t *cf, ngx_int_t *index, ngx_str_t *name)
{
    ngx_http_api_key_var_t        *v;
    ngx_http_api_key_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_key_module);

    v = ngx_array_push(&amcf->vars);
    if (v == NULL) {
        return NGX_ERROR;
    }

    v->index = index;
    v->name = *name;

    *index = NGX_ERROR;

    return NGX_OK;
}


/*
 * Once the configuration is read, every variable indexed (and no more can
 * be): the indexes of ngx_http_api_key_var_index().  nginx's phase engine
 * is built then too: the subrequest handler's checker is set.
 */

static ngx_int_t
ngx_http_api_key_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i, n;
    ngx_http_variable_t           *cv;
    ngx_http_api_key_var_t        *v;
    ngx_http_phase_handler_t      *ph;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_api_key_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_api_key_module);
    if (amcf == NULL) {
        /* no http block */
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module);

    v = amcf->vars.elts;
    cv = cmcf->variables.elts;

    for (i = 0; i < amcf->vars.nelts; i++) {

        for (n = 0; n < cmcf->variables.nelts; n++) {
            if (cv[n].name.len == v[i].name.len
                && ngx_strncasecmp(cv[n].name.data, v[i].name.data,
                                   v[i].name.len)
                   == 0)
            {
                *v[i].index = (ngx_int_t) n;
                break;
            }
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                       "api_key: $%V %s", &v[i].name,
                       (*v[i].index == NGX_ERROR)
                       ? "not indexed: nothing to drop" : "dropped if kept");
    }

    /*
     * the preaccess handler is for subrequests: a main request passes its
     * entry without a call (ngx_http_api_key_subrequest_checker())
     */

    ph = cmcf->phase_engine.handlers;

    for (i = 0; ph && ph[i].checker; i++) {
        if (ph[i].handler == ngx_http_api_key_subrequest_handler
            && ph[i].checker == ngx_http_core_generic_phase)
        {
            ph[i].checker = ngx_http_api_key_subrequest_checker;
        }
    }

    return NGX_OK;
}


/*
 * Stripping a query key rebuilds $request and $request_uri, whose cached
 * values (taken before the access phase) are then dropped: their indexes.
 */

static ngx_int_t
ngx_http_api_key_query_vars(ngx_conf_t *cf)
{
    ngx_str_t                      request = ngx_string("request");
    ngx_str_t                      request_uri = ngx_string("request_uri");
    ngx_http_api_key_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_key_module);

    if (amcf->query_vars) {
        return NGX_OK;
    }

    if (ngx_http_api_key_var_index(cf, &amcf->var_request, &request)
        != NGX_OK
        || ngx_http_api_key_var_index(cf, &amcf->var_request_uri,
                                      &request_uri)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    amcf->query_vars = 1;

    return NGX_OK;
}


/*
 * api_key_source header:NAME | bearer | authorization:SCHEME | basic
 *     | basic:password | query:NAME | cookie:NAME ...
 */

static char *
ngx_http_api_key_source(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_loc_conf_t *alcf = conf;

    u_char                     *p;
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_api_key_source_t  *src;

    if (alcf->sources != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    if (cf->args->nelts - 1 > NGX_HTTP_API_KEY_MAX_SOURCES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "more than %d key sources",
                           NGX_HTTP_API_KEY_MAX_SOURCES);
        return NGX_CONF_ERROR;
    }

    alcf->sources = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                     sizeof(ngx_http_api_key_source_t));
    if (alcf->sources == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        src = ngx_array_push(alcf->sources);
        if (src == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_strcmp(value[i].data, "bearer") == 0
            || ngx_strncmp(value[i].data, "authorization:", 14) == 0)
        {
            src->type = NGX_HTTP_API_KEY_SRC_BEARER;

            if (value[i].data[0] == 'b') {
                ngx_str_set(&src->name, "Bearer");

            } else {
                src->name.data = value[i].data + 14;
                src->name.len = value[i].len - 14;
            }

            if (src->name.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "key source \"%V\" has no scheme",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            /* a token (RFC 9110): letters, digits and !#$%&'*+-.^_`|~ */

            for (p = src->name.data; p < src->name.data + src->name.len; p++)
            {
                if (!((*p >= '0' && *p <= '9')
                      || ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
                      || (*p && ngx_strchr("!#$%&'*+-.^_`|~", *p) != NULL)))
                {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid character in the scheme of "
                                       "key source \"%V\"", &value[i]);
                    return NGX_CONF_ERROR;
                }
            }

            if (src->name.len == 5
                && ngx_strncasecmp(src->name.data, (u_char *) "basic", 5) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "key source \"%V\": use \"basic\" or "
                                   "\"basic:password\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (ngx_http_api_key_source_vars(cf, src) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "basic") == 0
            || ngx_strncmp(value[i].data, "basic:", 6) == 0)
        {
            src->type = NGX_HTTP_API_KEY_SRC_BASIC;

            if (ngx_strcmp(value[i].data, "basic:password") == 0) {
                ngx_str_set(&src->name, "password");

            } else if (ngx_strcmp(value[i].data, "basic") == 0
                       || ngx_strcmp(value[i].data, "basic:user") == 0)
            {
                ngx_str_set(&src->name, "");

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid key source \"%V\": expected "
                                   "basic, basic:user or basic:password",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            if (ngx_http_api_key_source_vars(cf, src) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "header:", 7) == 0) {
            src->type = NGX_HTTP_API_KEY_SRC_HEADER;
            src->name.data = value[i].data + 7;
            src->name.len = value[i].len - 7;

        } else if (ngx_strncmp(value[i].data, "query:", 6) == 0) {
            src->type = NGX_HTTP_API_KEY_SRC_QUERY;
            src->name.data = value[i].data + 6;
            src->name.len = value[i].len - 6;

            if (ngx_http_api_key_query_vars(cf) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strncmp(value[i].data, "cookie:", 7) == 0) {
            src->type = NGX_HTTP_API_KEY_SRC_COOKIE;
            src->name.data = value[i].data + 7;
            src->name.len = value[i].len - 7;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid key source \"%V\": expected "
                               "header:NAME, bearer, authorization:SCHEME, "
                               "basic, basic:password, query:NAME or "
                               "cookie:NAME", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (src->name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "key source \"%V\" has no name", &value[i]);
            return NGX_CONF_ERROR;
        }

        for (p = src->name.data; p < src->name.data + src->name.len; p++) {
            if (*p <= ' ' || *p >= 0x7f || *p == ';' || *p == '='
                || *p == '&' || *p == ':' || *p == ',' || *p == '"')
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid character in key source \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        if (src->type == NGX_HTTP_API_KEY_SRC_HEADER) {
            /* compared with the lowercased names nginx keeps */
            ngx_strlow(src->name.data, src->name.data, src->name.len);

            if (src->name.len == sizeof("host") - 1
                && ngx_strncmp(src->name.data, "host", 4) == 0)
            {
                /* nginx keeps the Host value elsewhere too ($host, the
                 * server's name): it could not be stripped */
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "key source \"%V\": the Host header "
                                   "cannot carry a key", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        if (ngx_http_api_key_source_vars(cf, src) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * The cacheable variables that hold a source: a value taken before the
 * source is stripped (an "if", a "set" in the rewrite phases) is dropped
 * after stripping, so that it does not reach the access log (their indexes:
 * ngx_http_api_key_var_index()).  $arg_NAME is not cacheable; $request and
 * $request_uri: ngx_http_api_key_query_vars().
 */

static ngx_int_t
ngx_http_api_key_source_vars(ngx_conf_t *cf, ngx_http_api_key_source_t *src)
{
    u_char             *p;
    size_t              i;
    ngx_str_t           name;
    ngx_str_t           http_cookie = ngx_string("http_cookie");
    ngx_str_t           http_authorization = ngx_string("http_authorization");
    ngx_str_t           remote_user = ngx_string("remote_user");
    ngx_http_header_t  *hh;

    src->var = NGX_ERROR;
    src->var2 = NGX_ERROR;
    src->kept = 0;

    switch (src->type) {

    case NGX_HTTP_API_KEY_SRC_HEADER:

        /* a header nginx keeps a pointer to (User-Agent, Referer...): the
         * pointer goes with the header when it is stripped */

        for (hh = ngx_http_headers_in; hh->name.len; hh++) {
            if (hh->offset && hh->name.len == src->name.len
                && ngx_strncasecmp(hh->name.data, src->name.data,
                                   src->name.len) == 0)
            {
                src->kept = hh->offset;
                break;
            }
        }

        /* $http_x_api_key for X-API-Key */

        name.len = sizeof("http_") - 1 + src->name.len;
        name.data = ngx_pnalloc(cf->pool, name.len);
        if (name.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(name.data, "http_", sizeof("http_") - 1);

        for (i = 0; i < src->name.len; i++) {
            p[i] = (src->name.data[i] == '-')
                   ? '_' : ngx_tolower(src->name.data[i]);
        }

        if (ngx_http_api_key_var_index(cf, &src->var, &name) != NGX_OK) {
            return NGX_ERROR;
        }

        if (src->kept == offsetof(ngx_http_headers_in_t, authorization)) {
            /* header:Authorization: what nginx decoded of it too */
            if (ngx_http_api_key_var_index(cf, &src->var2, &remote_user)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        break;

    case NGX_HTTP_API_KEY_SRC_BEARER:
    case NGX_HTTP_API_KEY_SRC_BASIC:
        src->kept = offsetof(ngx_http_headers_in_t, authorization);
        /* and what nginx decoded of Basic credentials */
        if (ngx_http_api_key_var_index(cf, &src->var, &http_authorization)
            != NGX_OK
            || ngx_http_api_key_var_index(cf, &src->var2, &remote_user)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        break;

    case NGX_HTTP_API_KEY_SRC_COOKIE:

        name.len = sizeof("cookie_") - 1 + src->name.len;
        name.data = ngx_pnalloc(cf->pool, name.len);
        if (name.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_cpymem(name.data, "cookie_", sizeof("cookie_") - 1),
                   src->name.data, src->name.len);

        if (ngx_http_api_key_var_index(cf, &src->var, &name) != NGX_OK
            || ngx_http_api_key_var_index(cf, &src->var2, &http_cookie)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        break;

    default: /* NGX_HTTP_API_KEY_SRC_QUERY */
        break;
    }

    return NGX_OK;
}


/* api_key_format any | checksum [prefix=P] */

static char *
ngx_http_api_key_format(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_loc_conf_t *alcf = conf;

    ngx_str_t  *value;

    if (alcf->format != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "any") == 0) {
        if (cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"any\" takes no parameter");
            return NGX_CONF_ERROR;
        }

        alcf->format = NGX_HTTP_API_KEY_FORMAT_ANY;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "checksum") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key format \"%V\": expected \"any\" or "
                           "\"checksum [prefix=PREFIX]\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    alcf->format = NGX_HTTP_API_KEY_FORMAT_CHECKSUM;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "prefix=", 7) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        alcf->format_prefix.data = value[2].data + 7;
        alcf->format_prefix.len = value[2].len - 7;

        if (!ak_key_prefix_valid(alcf->format_prefix.data,
                                 alcf->format_prefix.len))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid key prefix \"%V\": 1 to 32 of "
                               "A-Z a-z 0-9 _", &alcf->format_prefix);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* api_key_scope scope ... */

static char *
ngx_http_api_key_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_loc_conf_t *alcf = conf;

    u_char      *p;
    size_t       len;
    ak_str_t    *sc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (alcf->scopes != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    alcf->scopes = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(ak_str_t));
    if (alcf->scopes == NULL) {
        return NGX_CONF_ERROR;
    }

    len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0 || value[i].len > 64) {
            goto invalid;
        }

        for (p = value[i].data; p < value[i].data + value[i].len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
                  || *p == ':' || *p == '/' || *p == '*' || *p == '-'))
            {
                goto invalid;
            }
        }

        sc = ngx_array_push(alcf->scopes);
        if (sc == NULL) {
            return NGX_CONF_ERROR;
        }

        sc->data = (const char *) value[i].data;
        sc->len = value[i].len;

        len += value[i].len + 1;
    }

    alcf->scopes_text.data = ngx_pnalloc(cf->pool, len);
    if (alcf->scopes_text.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = alcf->scopes_text.data;

    for (i = 1; i < cf->args->nelts; i++) {
        if (i > 1) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, value[i].data, value[i].len);
    }

    alcf->scopes_text.len = p - alcf->scopes_text.data;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid scope \"%V\": 1 to 64 of A-Z a-z 0-9 "
                       ". _ : / * -", &value[i]);
    return NGX_CONF_ERROR;
}


/* api_key_realm string */

static char *
ngx_http_api_key_realm(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_loc_conf_t *alcf = conf;

    u_char     *p;
    ngx_str_t  *value;

    if (alcf->realm.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (*p < ' ' || *p == '"' || *p == '\\' || *p == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid realm \"%V\": no quotes, "
                               "backslashes or control characters",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    alcf->realm = value[1];

    return NGX_CONF_OK;
}
