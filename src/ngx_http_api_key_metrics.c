
/*
 * ngx_http_api_key_module: "api_key_metrics", Prometheus text metrics.
 *
 * Request and event counters are atomics in each zone's shared context,
 * bumped without the zone lock; only this handler takes the lock, to read
 * the cache's own statistics.
 */


#include "ngx_http_api_key.h"


static ngx_int_t ngx_http_api_key_metrics_handler(ngx_http_request_t *r);


const ngx_uint_t  ngx_http_api_key_latency_bounds[] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000
};


static const char  *ngx_http_api_key_event_names[] = {
    "revoke", "update", "flush", "keyspace", "malformed"
};


char *
ngx_http_api_key_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_api_key_metrics_handler;

    return NGX_CONF_OK;
}


void
ngx_http_api_key_observe_latency(ngx_http_api_key_zone_t *zone, ngx_uint_t us)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_API_KEY_LATENCY_BUCKETS - 1; i++) {
        if (us <= ngx_http_api_key_latency_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&zone->sh->latency[i], 1);
    (void) ngx_atomic_fetch_add(&zone->sh->latency_sum_us, us);
    (void) ngx_atomic_fetch_add(&zone->sh->latency_count, 1);
}


#define ngx_http_api_key_room(b, n)                                           \
    if ((size_t) ((b)->end - (b)->last) < (n)) {                              \
        goto overflow;                                                        \
    }


static ngx_int_t
ngx_http_api_key_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_uint_t                     i, j, cum;
    ngx_chain_t                    out;
    ak_cache_stats_t               st;
    ngx_http_api_key_zone_t      **zp, *zone;
    ngx_http_api_key_shctx_t      *sh;
    ngx_http_api_key_main_conf_t  *amcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_api_key_module);
    zp = amcf->zones.elts;

    b = ngx_create_temp_buf(r->pool, 8192 + amcf->zones.nelts * 8192);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
        "# HELP api_key_requests_total Requests checked, by outcome.\n"
        "# TYPE api_key_requests_total counter\n");

    for (i = 0; i < amcf->zones.nelts; i++) {
        sh = zp[i]->sh;

        for (j = 1; j < NGX_HTTP_API_KEY_NSTATUS; j++) {
            ngx_http_api_key_room(b, 128 + zp[i]->name.len);
            b->last = ngx_sprintf(b->last,
                          "api_key_requests_total{zone=\"%V\",status=\"%V\"} "
                          "%uA\n", &zp[i]->name,
                          &ngx_http_api_key_status_names[j], sh->status[j]);
        }
    }

    ngx_http_api_key_room(b, 1024);
    b->last = ngx_sprintf(b->last,
        "# HELP api_key_cache_lookups_total Cache lookups, by result.\n"
        "# TYPE api_key_cache_lookups_total counter\n");

    for (i = 0; i < amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_shmtx_lock(&zone->shpool->mutex);
        ak_cache_get_stats(zone->sh->cache, &st);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_http_api_key_room(b, 2048 + 16 * zone->name.len);
        b->last = ngx_sprintf(b->last,
            "api_key_cache_lookups_total{zone=\"%V\",result=\"hit\"} %uL\n"
            "api_key_cache_lookups_total{zone=\"%V\",result=\"negative_hit\"}"
            " %uL\n"
            "api_key_cache_lookups_total{zone=\"%V\",result=\"stale\"} %uL\n"
            "api_key_cache_lookups_total{zone=\"%V\",result=\"miss\"} %uL\n"
            "# HELP api_key_cache_evictions_total Entries evicted to make "
            "room.\n"
            "# TYPE api_key_cache_evictions_total counter\n"
            "api_key_cache_evictions_total{zone=\"%V\"} %uL\n"
            "# HELP api_key_cache_inserts_total Records stored.\n"
            "# TYPE api_key_cache_inserts_total counter\n"
            "api_key_cache_inserts_total{zone=\"%V\"} %uL\n"
            "# HELP api_key_cache_entries Cached entries, by kind.\n"
            "# TYPE api_key_cache_entries gauge\n"
            "api_key_cache_entries{zone=\"%V\",kind=\"key\"} %uD\n"
            "api_key_cache_entries{zone=\"%V\",kind=\"negative\"} %uD\n"
            "# HELP api_key_cache_slots Cache slots.\n"
            "# TYPE api_key_cache_slots gauge\n"
            "api_key_cache_slots{zone=\"%V\",state=\"total\"} %uD\n"
            "api_key_cache_slots{zone=\"%V\",state=\"free\"} %uD\n",
            &zone->name, st.hits, &zone->name, st.negative_hits,
            &zone->name, st.stale_hits, &zone->name, st.misses,
            &zone->name, st.evictions, &zone->name, st.inserts,
            &zone->name, st.entries, &zone->name, st.negative_entries,
            &zone->name, st.slots_total, &zone->name, st.slots_free);

        sh = zone->sh;

        b->last = ngx_sprintf(b->last,
            "# HELP api_key_redis_read_seconds Redis record reads, from "
            "command to answer.\n"
            "# TYPE api_key_redis_read_seconds histogram\n");

        cum = 0;

        for (j = 0; j < NGX_HTTP_API_KEY_LATENCY_BUCKETS; j++) {
            cum += sh->latency[j];

            if (j < NGX_HTTP_API_KEY_LATENCY_BUCKETS - 1) {
                b->last = ngx_sprintf(b->last,
                              "api_key_redis_read_seconds_bucket{zone=\"%V\","
                              "le=\"%ui.%06ui\"} %ui\n", &zone->name,
                              ngx_http_api_key_latency_bounds[j] / 1000000,
                              ngx_http_api_key_latency_bounds[j] % 1000000,
                              cum);
            } else {
                b->last = ngx_sprintf(b->last,
                              "api_key_redis_read_seconds_bucket{zone=\"%V\","
                              "le=\"+Inf\"} %ui\n", &zone->name, cum);
            }
        }

        b->last = ngx_sprintf(b->last,
            "api_key_redis_read_seconds_sum{zone=\"%V\"} %uA.%06uA\n"
            "api_key_redis_read_seconds_count{zone=\"%V\"} %uA\n"
            "# HELP api_key_redis_errors_total Failed record reads.\n"
            "# TYPE api_key_redis_errors_total counter\n"
            "api_key_redis_errors_total{zone=\"%V\",kind=\"error\"} %uA\n"
            "api_key_redis_errors_total{zone=\"%V\",kind=\"timeout\"} %uA\n",
            &zone->name, sh->latency_sum_us / 1000000,
            sh->latency_sum_us % 1000000, &zone->name, sh->latency_count,
            &zone->name, sh->redis_errors, &zone->name, sh->redis_timeouts);
    }

    if (amcf->zones.nelts) {
        sh = zp[0]->sh;

        ngx_http_api_key_room(b, 2048);
        b->last = ngx_sprintf(b->last,
            "# HELP api_key_events_total Events received, by type (counted "
            "once per worker that received them).\n"
            "# TYPE api_key_events_total counter\n");

        for (j = 0; j < 5; j++) {
            b->last = ngx_sprintf(b->last,
                                  "api_key_events_total{type=\"%s\"} %uA\n",
                                  ngx_http_api_key_event_names[j],
                                  sh->events[j]);
        }

        b->last = ngx_sprintf(b->last,
            "# HELP api_key_subscription_reconnects_total Events "
            "subscriptions restored after a loss.\n"
            "# TYPE api_key_subscription_reconnects_total counter\n"
            "api_key_subscription_reconnects_total %uA\n"
            "# HELP api_key_redis_connects_total Redis connections made, "
            "all workers.\n"
            "# TYPE api_key_redis_connects_total counter\n"
            "api_key_redis_connects_total{connection=\"commands\"} %uA\n"
            "api_key_redis_connects_total{connection=\"events\"} %uA\n"
            "# HELP api_key_redis_disconnects_total Redis connections lost, "
            "all workers.\n"
            "# TYPE api_key_redis_disconnects_total counter\n"
            "api_key_redis_disconnects_total{connection=\"commands\"} %uA\n"
            "api_key_redis_disconnects_total{connection=\"events\"} %uA\n"
            "# HELP api_key_redis_connected Whether the worker answering "
            "this scrape is connected.\n"
            "# TYPE api_key_redis_connected gauge\n"
            "api_key_redis_connected{connection=\"commands\"} %ui\n"
            "api_key_redis_connected{connection=\"events\"} %ui\n",
            sh->resubscribes, sh->connects[0], sh->connects[1],
            sh->disconnects[0], sh->disconnects[1],
            ngx_http_api_key_redis_state(0),
            ngx_http_api_key_redis_state(1));
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
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

overflow:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "api_key: metrics buffer too small");
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}
