/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: "api_key_metrics", Prometheus text metrics.
 *
 * Request and event counters are atomics in each zone's shared context,
 * bumped without the zone lock; only this handler takes the lock, to read
 * the cache's own statistics.
 */


#include "ngx_http_api_key.h"


static ngx_int_t ngx_http_api_key_metrics_handler(ngx_http_request_t *r);


/*
 * api_key_metrics [labels=plan|owner] [values=20]: the labels are the
 * module's (counted in the zones, whichever location shows them), so two
 * api_key_metrics lines may not ask for different ones.
 */

char *
ngx_http_api_key_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_int_t                      n;
    ngx_str_t                     *value;
    ngx_uint_t                     i, label, max;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_api_key_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_api_key_module);
    value = cf->args->elts;
    label = 0;
    max = 20;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "labels=plan") == 0) {
            label = NGX_HTTP_API_KEY_LABEL_PLAN;
            continue;
        }

        if (ngx_strcmp(value[i].data, "labels=owner") == 0) {
            label = NGX_HTTP_API_KEY_LABEL_OWNER;
            continue;
        }

        if (ngx_strncmp(value[i].data, "values=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);

            if (n < 1 || n > AK_LABEL_MAX_VALUES) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected 1 to %d",
                                   &value[i], AK_LABEL_MAX_VALUES);
                return NGX_CONF_ERROR;
            }

            max = (ngx_uint_t) n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" (expected "
                           "labels=plan, labels=owner or values=N)",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (label == 0 && max != 20) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"values=\" needs \"labels=plan\" or "
                           "\"labels=owner\"");
        return NGX_CONF_ERROR;
    }

    if (label) {
        if (amcf->metrics_label
            && (amcf->metrics_label != label
                || amcf->metrics_label_max != max))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "api_key_metrics: labels= and values= are "
                               "the module's: every api_key_metrics with "
                               "labels= must give the same");
            return NGX_CONF_ERROR;
        }

        amcf->metrics_label = label;
        amcf->metrics_label_max = max;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_api_key_metrics_handler;

    return NGX_CONF_OK;
}


/*
 * The counters are read once into a snapshot (request and event counters
 * move while the page is written); the core prints the page from it
 * (ak_metrics_page): a first call measures it, the buffer is allocated of
 * that size, a second call writes it.  Nothing is sized from a guess.
 */

static ngx_int_t
ngx_http_api_key_metrics_handler(ngx_http_request_t *r)
{
    size_t                           len;
    uint64_t                        *counts, *lcounts;
    uint32_t                         n;
    ak_str_t                        *values;
    ngx_int_t                        rc;
    ngx_buf_t                       *b;
    ngx_str_t                       *name;
    ngx_uint_t                       i, j, k;
    ngx_chain_t                      out;
    ak_metrics_t                     m;
    ak_metrics_zone_t               *mz;
    ngx_http_api_key_zone_t        **zp, *zone;
    ngx_http_api_key_shctx_t        *sh;
    ngx_http_api_key_main_conf_t    *amcf;
    ak_str_t                         status[NGX_HTTP_API_KEY_NSTATUS - 1];
    ak_str_t                         events[NGX_HTTP_API_KEY_NEVENTS];
    uint64_t                         event_counts[NGX_HTTP_API_KEY_NEVENTS];
    uint64_t                         bounds[NGX_HTTP_API_KEY_LATENCY_BUCKETS];

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_api_key_module);
    zp = amcf->zones.elts;

    /* the snapshot */

    ngx_memzero(&m, sizeof(ak_metrics_t));

    for (j = 1; j < NGX_HTTP_API_KEY_NSTATUS; j++) {
        name = ngx_http_api_key_status_name(j);
        status[j - 1].data = (const char *) name->data;
        status[j - 1].len = name->len;
    }

    for (j = 0; j < NGX_HTTP_API_KEY_LATENCY_BUCKETS; j++) {
        bounds[j] = (j < NGX_HTTP_API_KEY_LATENCY_BUCKETS - 1)
                    ? ngx_http_api_key_latency_bound(j) : 0;
    }

    m.status_names = status;
    m.nstatus = NGX_HTTP_API_KEY_NSTATUS - 1;
    m.latency_bounds_us = bounds;
    m.nbuckets = NGX_HTTP_API_KEY_LATENCY_BUCKETS;
    m.nzones = amcf->zones.nelts;
    m.label_name = (amcf->metrics_label == NGX_HTTP_API_KEY_LABEL_PLAN)
                   ? "plan"
                   : (amcf->metrics_label == NGX_HTTP_API_KEY_LABEL_OWNER)
                     ? "owner" : NULL;

    mz = ngx_pcalloc(r->pool, (amcf->zones.nelts + 1)
                              * sizeof(ak_metrics_zone_t));
    counts = ngx_palloc(r->pool, (amcf->zones.nelts + 1)
                                 * (NGX_HTTP_API_KEY_NSTATUS - 1
                                    + NGX_HTTP_API_KEY_LATENCY_BUCKETS)
                                 * sizeof(uint64_t));
    if (mz == NULL || counts == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    m.zones = mz;

    for (i = 0; i < amcf->zones.nelts; i++) {
        zone = zp[i];
        sh = zone->sh;

        mz[i].name.data = (const char *) zone->name.data;
        mz[i].name.len = zone->name.len;

        mz[i].status = counts;

        for (j = 1; j < NGX_HTTP_API_KEY_NSTATUS; j++) {
            *counts = 0;

            for (k = 0; k < NGX_HTTP_API_KEY_STRIPES; k++) {
                *counts += sh->status[k][j];
            }

            counts++;
        }

        mz[i].latency = counts;

        for (j = 0; j < NGX_HTTP_API_KEY_LATENCY_BUCKETS; j++) {
            *counts++ = sh->latency[j];
        }

        mz[i].latency_sum_us = sh->latency_sum_us;
        mz[i].latency_count = sh->latency_count;
        mz[i].redis_errors = sh->redis_errors;
        mz[i].redis_timeouts = sh->redis_timeouts;
        mz[i].usage_flushes = sh->usage_flushes;
        mz[i].usage_writes = sh->usage_writes;
        mz[i].usage_errors = sh->usage_errors;
        mz[i].usage_dropped = ak_usage_dropped(sh->usage);

        values = NULL;
        lcounts = NULL;
        n = 0;

        if (amcf->metrics_label && sh->labels) {
            n = ak_labels_capacity(sh->labels) + 1;
            values = ngx_palloc(r->pool, n * sizeof(ak_str_t));
            lcounts = ngx_palloc(r->pool, n * NGX_HTTP_API_KEY_NSTATUS
                                          * sizeof(uint64_t));
            if (values == NULL || lcounts == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        /* this worker's counts by label (the others' are at most a fold
         * interval late) */
        ngx_http_api_key_usage_fold(zone);

        ngx_shmtx_lock(&zone->shpool->mutex);
        ak_cache_get_stats(sh->cache, &mz[i].cache);

        if (values) {
            /* the values stay where they are: the page may point at them */
            mz[i].nlabels = ak_labels_snapshot(sh->labels, values, lcounts, n);
            mz[i].label_values = values;
            mz[i].label_counts = lcounts;
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    if (amcf->zones.nelts) {
        sh = zp[0]->sh;

        for (j = 0; j < NGX_HTTP_API_KEY_NEVENTS; j++) {
            events[j].data = ngx_http_api_key_event_name(j);
            events[j].len = ngx_strlen(events[j].data);
            event_counts[j] = sh->events[j];
        }

        m.event_names = events;
        m.events = event_counts;
        m.nevents = NGX_HTTP_API_KEY_NEVENTS;

        m.resubscribes = sh->resubscribes;
        m.failover_errors = sh->failover_errors;
        m.master_switches = sh->master_switches;
        m.master_queries = sh->master_queries;

        for (j = 0; j < NGX_HTTP_API_KEY_NCONNS; j++) {
            m.connects[j] = sh->connects[j];
            m.disconnects[j] = sh->disconnects[j];
            m.reconnects[j] = sh->reconnects[j];
            m.tls_failures[j] = sh->tls_failures[j];
            m.tls_reused[j] = sh->tls_reused[j];
            m.connected[j] = ngx_http_api_key_redis_state(j);
        }
    }

    /* measured, then written into exactly that */

    len = ak_metrics_page(&m, NULL, 0);

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ak_metrics_page(&m, (char *) b->pos, len) != len) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "api_key: the metrics page changed length");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = b->pos + len;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: metrics page of %uz bytes for %ui zones",
                   len, amcf->zones.nelts);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
