/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: api_key_zone, the shared zones: the directive
 * (size and cache parameters) and the zone's initialisation (the cache in
 * the slab pool, kept across reloads).
 */


#include "ngx_http_api_key.h"


static ngx_int_t ngx_http_api_key_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_api_key_zone_labels(ngx_http_api_key_zone_t *zone,
    ngx_shm_zone_t *shm_zone);


/* api_key_zone name:size [ttl=60s] [negative_ttl=5s] [stale=10m]
 *              [negative_max=25%] [quota_lease=100] [quota_offline=N]
 *              [rate_scope=node|cluster] [usage_flush=10s|off] */

char *
ngx_http_api_key_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_api_key_main_conf_t *amcf = conf;

    u_char                    *p;
    ssize_t                    size;
    ngx_int_t                  n, pct;
    ngx_uint_t                 lease;
    ngx_msec_t                 ms;
    ngx_str_t                 *value, name, s;
    ngx_uint_t                 i;
    ngx_shm_zone_t            *shm_zone;
    ngx_http_api_key_zone_t   *zone, **zp;

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\": expected name:size",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if ((size_t) size < 8 * ngx_pagesize + ak_cache_min_size()) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: at least %uzk",
                           &value[1],
                           (8 * ngx_pagesize + ak_cache_min_size()) / 1024
                           + 1);
        return NGX_CONF_ERROR;
    }

    zp = amcf->zones.elts;
    for (i = 0; i < amcf->zones.nelts; i++) {
        if (zp[i]->name.len == name.len
            && ngx_strncmp(zp[i]->name.data, name.data, name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate api_key_zone \"%V\"", &name);
            return NGX_CONF_ERROR;
        }
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_key_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->name = name;
    zone->conf.ttl_ms = 60000;
    zone->conf.negative_ttl_ms = 5000;
    zone->conf.stale_ms = 600000;
    zone->conf.negative_max_pct = 25;
    zone->quota_lease = 100;
    zone->quota_offline = NGX_CONF_UNSET_UINT;
    zone->rate_scope = AK_RATE_SCOPE_NODE;
    zone->usage_flush = 10000;
    zone->amcf = amcf;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            if (ngx_http_api_key_msec_arg(cf, &value[i], 4, &ms) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            if (ms == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": ttl must be positive", &value[i]);
                return NGX_CONF_ERROR;
            }

            zone->conf.ttl_ms = ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "negative_ttl=", 13) == 0) {
            if (ngx_http_api_key_msec_arg(cf, &value[i], 13, &ms) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            zone->conf.negative_ttl_ms = ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "stale=", 6) == 0) {
            if (ngx_http_api_key_msec_arg(cf, &value[i], 6, &ms) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            zone->conf.stale_ms = ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "usage_flush=", 12) == 0) {
            if (value[i].len == 15
                && ngx_strncmp(value[i].data + 12, "off", 3) == 0)
            {
                zone->usage_flush = 0;
                continue;
            }

            if (ngx_http_api_key_msec_arg(cf, &value[i], 12, &ms) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            if (ms < 100 || ms > 3600000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": expected off or 100ms to 1h",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            zone->usage_flush = ms;
            continue;
        }

        lease = (ngx_strncmp(value[i].data, "quota_lease=", 12) == 0);

        if (lease || ngx_strncmp(value[i].data, "quota_offline=", 14) == 0) {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_atoi(s.data, s.len);

            if (n == NGX_ERROR || n > 1000000 || (n == 0 && lease)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected a count "
                                   "(lease: 1 to 1000000)", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (lease) {
                zone->quota_lease = (ngx_uint_t) n;

            } else {
                zone->quota_offline = (ngx_uint_t) n;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate_scope=", 11) == 0) {
            s.data = value[i].data + 11;
            s.len = value[i].len - 11;

            if (s.len == 4 && ngx_strncmp(s.data, "node", 4) == 0) {
                zone->rate_scope = AK_RATE_SCOPE_NODE;

            } else if (s.len == 7 && ngx_strncmp(s.data, "cluster", 7) == 0) {
                zone->rate_scope = AK_RATE_SCOPE_CLUSTER;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected node or "
                                   "cluster", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "negative_max=", 13) == 0) {
            s.data = value[i].data + 13;
            s.len = value[i].len - 13;

            if (s.len > 1 && s.data[s.len - 1] == '%') {
                s.len--;
            }

            pct = ngx_atoi(s.data, s.len);

            if (pct < 1 || pct > 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected 1%% to 100%%",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            zone->conf.negative_max_pct = (uint32_t) pct;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (zone->quota_offline == NGX_CONF_UNSET_UINT) {
        zone->quota_offline = zone->quota_lease;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_api_key_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shared memory zone \"%V\" is already used",
                           &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_api_key_init_zone;
    shm_zone->data = zone;
    zone->shm_zone = shm_zone;

    zp = ngx_array_push(&amcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = zone;

    return NGX_CONF_OK;
}


/*
 * A zone kept across a reload: its label table follows api_key_metrics
 * labels= (another field starts it afresh); one made without it stays
 * without until the zone is made anew.
 */

static void
ngx_http_api_key_zone_labels(ngx_http_api_key_zone_t *zone,
    ngx_shm_zone_t *shm_zone)
{
    ngx_http_api_key_main_conf_t  *amcf = zone->amcf;

    if (zone->sh->labels == NULL || amcf->metrics_label == 0) {
        if (amcf->metrics_label) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "api_key_zone \"%V\": api_key_metrics labels= "
                          "takes effect when the zone is made anew (a "
                          "restart, or a new size)", &shm_zone->shm.name);
        }

        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (ak_labels_kind(zone->sh->labels) != amcf->metrics_label) {
        ak_labels_reset(zone->sh->labels, (uint32_t) amcf->metrics_label);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static ngx_int_t
ngx_http_api_key_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_api_key_zone_t  *ozone = data;

    size_t                         size, len;
    void                          *block;
    int                            emptied;
    const char                    *why;
    ngx_slab_pool_t               *shpool;
    ngx_http_api_key_zone_t       *zone;
    ngx_http_api_key_shctx_t      *sh;
    ngx_http_api_key_main_conf_t  *amcf;

    zone = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    zone->shpool = shpool;

    if (ozone && ozone->sh) {
        /* nginx -s reload with the zone's size unchanged: keep the cache */
        zone->sh = ozone->sh;

        /* under the lock: the workers' writes leave it consistent */
        ngx_shmtx_lock(&shpool->mutex);

        /* a worker that died while writing: emptied, as its next writer
         * would (else the counts it left half-updated refuse the reload) */
        emptied = ak_cache_recover(zone->sh->cache, zone->sh->cache_size);

        why = ak_cache_validate(zone->sh->cache, zone->sh->cache_size);

        if (why == NULL) {
            ak_cache_set_conf(zone->sh->cache, &zone->conf);
        }

        ngx_shmtx_unlock(&shpool->mutex);

        if (emptied == 1) {
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "api_key_zone \"%V\": a worker died while writing "
                          "to the cache: it was emptied",
                          &shm_zone->shm.name);
        }

        if (why) {
            /*
             * a module of another cache layout (an upgrade by reload): the
             * old workers still use the block as it is, so it can be
             * neither reused nor formatted anew; the reload fails and the
             * running configuration stays
             */
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "api_key_zone \"%V\": the cache in shared "
                          "memory cannot be kept (%s): restart nginx, or "
                          "give the zone another size, to start it anew",
                          &shm_zone->shm.name, why);
            return NGX_ERROR;
        }

        ngx_http_api_key_zone_labels(zone, shm_zone);

        if (zone->usage_flush && zone->sh->usage == NULL) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "api_key_zone \"%V\": usage_flush takes effect "
                          "when the zone is made anew (a restart, or a "
                          "new size); no usage is counted until then",
                          &shm_zone->shm.name);
        }

        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        zone->sh = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_http_api_key_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh, sizeof(ngx_http_api_key_shctx_t));
    ak_evlog_init(&sh->evlog);

    shpool->data = sh;
    zone->sh = sh;

    len = sizeof(" in api_key_zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in api_key_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* api_key_metrics labels=: the table of values (before the cache) */

    amcf = zone->amcf;

    if (amcf->metrics_label) {
        /* one count per status of the metrics page (NONE is none) */
        size = ak_labels_size((uint32_t) amcf->metrics_label_max,
                              NGX_HTTP_API_KEY_NSTATUS - 1);

        if (shpool->pfree * ngx_pagesize
            >= size + ak_cache_min_size() + 2 * ngx_pagesize)
        {
            block = ngx_slab_alloc(shpool, size);

            if (block) {
                sh->labels = ak_labels_create(block, size,
                                              (uint32_t)
                                                  amcf->metrics_label_max,
                                              NGX_HTTP_API_KEY_NSTATUS - 1,
                                              (uint32_t) amcf->metrics_label);
            }
        }

        if (sh->labels == NULL) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "api_key_zone \"%V\" is too small for "
                          "api_key_metrics labels=: not counted by label",
                          &shm_zone->shm.name);
        }
    }

    /*
     * usage_flush: a sixteenth of the zone counts usage between two
     * flushes (when the cache keeps room for itself)
     */

    if (zone->usage_flush) {
        size = ngx_max((shpool->pfree * ngx_pagesize) / 16, ak_usage_size(16));

        if (shpool->pfree * ngx_pagesize
            >= size + ak_cache_min_size() + 2 * ngx_pagesize)
        {
            block = ngx_slab_alloc(shpool, size);

            if (block) {
                sh->usage = ak_usage_create(block, size);
            }
        }

        if (sh->usage == NULL) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "api_key_zone \"%V\" is too small to count usage "
                          "as well: usage_flush is off",
                          &shm_zone->shm.name);
        }
    }

    /* every page left, in one run, goes to the cache */

    size = shpool->pfree * ngx_pagesize;
    block = NULL;

    while (size > ngx_pagesize) {
        block = ngx_slab_alloc(shpool, size);
        if (block) {
            break;
        }

        size -= ngx_pagesize;
    }

    if (block == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "api_key_zone \"%V\": no memory for the cache",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    sh->cache = ak_cache_create(block, size, &zone->conf);
    sh->cache_size = size;

    if (sh->cache == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "api_key_zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}
