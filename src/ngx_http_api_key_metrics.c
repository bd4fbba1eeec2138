
/*
 * ngx_http_api_key_module: "api_key_metrics", Prometheus text metrics.
 *
 * Request and event counters are atomics in each zone's shared context,
 * bumped without the zone lock; only this handler takes the lock, to read
 * the cache's own statistics.
 */


#include "ngx_http_api_key.h"


static ngx_int_t ngx_http_api_key_metrics_handler(ngx_http_request_t *r);


char *
ngx_http_api_key_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_api_key_metrics_handler;

    return NGX_CONF_OK;
}


/*
 * The page is printed into a chain of buffers, each line into what is left
 * of the current buffer; a line that does not fit is printed again into a
 * new buffer large enough for it.  Nothing is sized from a guess.
 */

#define NGX_HTTP_API_KEY_METRICS_CHUNK  4096
#define NGX_HTTP_API_KEY_METRICS_MAX    (64 * 1024 * 1024)


typedef struct {
    ngx_http_request_t           *request;
    ngx_chain_t                  *first;
    ngx_chain_t                 **next;
    ngx_buf_t                    *buf;       /* being written, in the chain */
    off_t                         len;       /* bytes written */
} ngx_http_api_key_metrics_out_t;


/* in the handler: prints into its "out", or answers 500 */
#define ngx_http_api_key_print(...)                                           \
    if (ngx_http_api_key_metrics_printf(&out, __VA_ARGS__) != NGX_OK) {       \
        return NGX_HTTP_INTERNAL_SERVER_ERROR;                                \
    }


static ngx_int_t ngx_http_api_key_metrics_printf(
    ngx_http_api_key_metrics_out_t *out, const char *fmt, ...);
static ngx_int_t ngx_http_api_key_metrics_label(ngx_pool_t *pool,
    ngx_str_t *name, ngx_str_t *label);


static ngx_int_t
ngx_http_api_key_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_str_t                       *labels, *z;
    ngx_uint_t                       i, j, cum;
    ak_cache_stats_t                 st;
    ngx_http_api_key_zone_t        **zp, *zone;
    ngx_http_api_key_shctx_t        *sh;
    ngx_http_api_key_main_conf_t    *amcf;
    ngx_http_api_key_metrics_out_t   out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_api_key_module);
    zp = amcf->zones.elts;

    ngx_memzero(&out, sizeof(ngx_http_api_key_metrics_out_t));
    out.request = r;
    out.next = &out.first;

    /* zone names as label values (escaped) */

    labels = ngx_palloc(r->pool, (amcf->zones.nelts + 1) * sizeof(ngx_str_t));
    if (labels == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < amcf->zones.nelts; i++) {
        if (ngx_http_api_key_metrics_label(r->pool, &zp[i]->name, &labels[i])
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_api_key_print(
        "# HELP api_key_requests_total Requests checked, by outcome.\n"
        "# TYPE api_key_requests_total counter\n");

    for (i = 0; i < amcf->zones.nelts; i++) {
        sh = zp[i]->sh;

        for (j = 1; j < NGX_HTTP_API_KEY_NSTATUS; j++) {
            ngx_http_api_key_print(
                "api_key_requests_total{zone=\"%V\",status=\"%V\"} %uA\n",
                &labels[i], ngx_http_api_key_status_name(j), sh->status[j]);
        }
    }

    ngx_http_api_key_print(
        "# HELP api_key_cache_lookups_total Cache lookups, by result.\n"
        "# TYPE api_key_cache_lookups_total counter\n");

    for (i = 0; i < amcf->zones.nelts; i++) {
        zone = zp[i];
        z = &labels[i];

        ngx_shmtx_lock(&zone->shpool->mutex);
        ak_cache_get_stats(zone->sh->cache, &st);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_http_api_key_print(
            "api_key_cache_lookups_total{zone=\"%V\",result=\"hit\"} %uL\n"
            "api_key_cache_lookups_total{zone=\"%V\",result=\"negative_hit\"}"
            " %uL\n"
            "api_key_cache_lookups_total{zone=\"%V\",result=\"stale\"} %uL\n"
            "api_key_cache_lookups_total{zone=\"%V\",result=\"miss\"} %uL\n",
            z, st.hits, z, st.negative_hits, z, st.stale_hits, z, st.misses);

        ngx_http_api_key_print(
            "# HELP api_key_cache_evictions_total Entries evicted to make "
            "room.\n"
            "# TYPE api_key_cache_evictions_total counter\n"
            "api_key_cache_evictions_total{zone=\"%V\"} %uL\n"
            "# HELP api_key_cache_inserts_total Records stored.\n"
            "# TYPE api_key_cache_inserts_total counter\n"
            "api_key_cache_inserts_total{zone=\"%V\"} %uL\n",
            z, st.evictions, z, st.inserts);

        ngx_http_api_key_print(
            "# HELP api_key_cache_entries Cached entries, by kind.\n"
            "# TYPE api_key_cache_entries gauge\n"
            "api_key_cache_entries{zone=\"%V\",kind=\"key\"} %uD\n"
            "api_key_cache_entries{zone=\"%V\",kind=\"negative\"} %uD\n"
            "# HELP api_key_cache_slots Cache slots.\n"
            "# TYPE api_key_cache_slots gauge\n"
            "api_key_cache_slots{zone=\"%V\",state=\"total\"} %uD\n"
            "api_key_cache_slots{zone=\"%V\",state=\"free\"} %uD\n",
            z, st.entries, z, st.negative_entries,
            z, st.slots_total, z, st.slots_free);

        sh = zone->sh;

        ngx_http_api_key_print(
            "# HELP api_key_redis_read_seconds Redis record reads, from "
            "command to answer.\n"
            "# TYPE api_key_redis_read_seconds histogram\n");

        cum = 0;

        for (j = 0; j < NGX_HTTP_API_KEY_LATENCY_BUCKETS; j++) {
            cum += sh->latency[j];

            if (j < NGX_HTTP_API_KEY_LATENCY_BUCKETS - 1) {
                ngx_http_api_key_print(
                    "api_key_redis_read_seconds_bucket{zone=\"%V\","
                    "le=\"%ui.%06ui\"} %ui\n", z,
                    ngx_http_api_key_latency_bound(j) / 1000000,
                    ngx_http_api_key_latency_bound(j) % 1000000, cum);

            } else {
                ngx_http_api_key_print(
                    "api_key_redis_read_seconds_bucket{zone=\"%V\","
                    "le=\"+Inf\"} %ui\n", z, cum);
            }
        }

        ngx_http_api_key_print(
            "api_key_redis_read_seconds_sum{zone=\"%V\"} %uA.%06uA\n"
            "api_key_redis_read_seconds_count{zone=\"%V\"} %uA\n"
            "# HELP api_key_redis_errors_total Failed record reads.\n"
            "# TYPE api_key_redis_errors_total counter\n"
            "api_key_redis_errors_total{zone=\"%V\",kind=\"error\"} %uA\n"
            "api_key_redis_errors_total{zone=\"%V\",kind=\"timeout\"} %uA\n",
            z, sh->latency_sum_us / 1000000, sh->latency_sum_us % 1000000,
            z, sh->latency_count, z, sh->redis_errors,
            z, sh->redis_timeouts);
    }

    if (amcf->zones.nelts) {
        sh = zp[0]->sh;

        ngx_http_api_key_print(
            "# HELP api_key_events_total Events received, by type (counted "
            "once per worker that received them).\n"
            "# TYPE api_key_events_total counter\n");

        for (j = 0; j < NGX_HTTP_API_KEY_NEVENTS; j++) {
            ngx_http_api_key_print("api_key_events_total{type=\"%s\"} %uA\n",
                                   ngx_http_api_key_event_name(j),
                                   sh->events[j]);
        }

        ngx_http_api_key_print(
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
            "# HELP api_key_redis_reconnects_total Redis connections "
            "opened again after one was lost or failed, all workers.\n"
            "# TYPE api_key_redis_reconnects_total counter\n"
            "api_key_redis_reconnects_total{connection=\"commands\"} %uA\n"
            "api_key_redis_reconnects_total{connection=\"events\"} %uA\n"
            "# HELP api_key_redis_tls_handshake_failures_total TLS "
            "handshakes that failed or whose certificate was refused, all "
            "workers.\n"
            "# TYPE api_key_redis_tls_handshake_failures_total counter\n"
            "api_key_redis_tls_handshake_failures_total"
            "{connection=\"commands\"} %uA\n"
            "api_key_redis_tls_handshake_failures_total"
            "{connection=\"events\"} %uA\n"
            "# HELP api_key_redis_tls_sessions_reused_total TLS connections "
            "that resumed an earlier session, all workers.\n"
            "# TYPE api_key_redis_tls_sessions_reused_total counter\n"
            "api_key_redis_tls_sessions_reused_total"
            "{connection=\"commands\"} %uA\n"
            "api_key_redis_tls_sessions_reused_total"
            "{connection=\"events\"} %uA\n"
            "# HELP api_key_redis_connected Whether the worker answering "
            "this scrape is connected.\n"
            "# TYPE api_key_redis_connected gauge\n"
            "api_key_redis_connected{connection=\"commands\"} %ui\n"
            "api_key_redis_connected{connection=\"events\"} %ui\n",
            sh->resubscribes,
            sh->connects[NGX_HTTP_API_KEY_CONN_COMMANDS],
            sh->connects[NGX_HTTP_API_KEY_CONN_EVENTS],
            sh->disconnects[NGX_HTTP_API_KEY_CONN_COMMANDS],
            sh->disconnects[NGX_HTTP_API_KEY_CONN_EVENTS],
            sh->reconnects[NGX_HTTP_API_KEY_CONN_COMMANDS],
            sh->reconnects[NGX_HTTP_API_KEY_CONN_EVENTS],
            sh->tls_failures[NGX_HTTP_API_KEY_CONN_COMMANDS],
            sh->tls_failures[NGX_HTTP_API_KEY_CONN_EVENTS],
            sh->tls_reused[NGX_HTTP_API_KEY_CONN_COMMANDS],
            sh->tls_reused[NGX_HTTP_API_KEY_CONN_EVENTS],
            ngx_http_api_key_redis_state(NGX_HTTP_API_KEY_CONN_COMMANDS),
            ngx_http_api_key_redis_state(NGX_HTTP_API_KEY_CONN_EVENTS));
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "api_key: metrics page of %O bytes for %ui zones",
                   out.len, amcf->zones.nelts);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = out.len;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf->last_buf = (r == r->main) ? 1 : 0;
    out.buf->last_in_chain = 1;

    return ngx_http_output_filter(r, out.first);
}


/*
 * Appends one printf-formatted piece to the page.  ngx_vslprintf() stops at
 * the end of the space it is given, so a piece that filled the space may be
 * cut: it is printed again into a new buffer, twice as large each time,
 * which joins the chain only once the piece fits.
 */

static ngx_int_t
ngx_http_api_key_metrics_printf(ngx_http_api_key_metrics_out_t *out,
    const char *fmt, ...)
{
    size_t        size;
    u_char       *p;
    va_list       args;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = out->buf;

    if (b) {
        va_start(args, fmt);
        p = ngx_vslprintf(b->last, b->end, fmt, args);
        va_end(args);

        if (p < b->end) {
            out->len += p - b->last;
            b->last = p;
            return NGX_OK;
        }
    }

    for (size = NGX_HTTP_API_KEY_METRICS_CHUNK;
         size <= NGX_HTTP_API_KEY_METRICS_MAX;
         size *= 2)
    {
        b = ngx_create_temp_buf(out->request->pool, size);
        if (b == NULL) {
            return NGX_ERROR;
        }

        va_start(args, fmt);
        p = ngx_vslprintf(b->last, b->end, fmt, args);
        va_end(args);

        if (p < b->end) {
            cl = ngx_alloc_chain_link(out->request->pool);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            out->len += p - b->last;
            b->last = p;

            cl->buf = b;
            cl->next = NULL;
            *out->next = cl;
            out->next = &cl->next;
            out->buf = b;

            return NGX_OK;
        }

        ngx_pfree(out->request->pool, b->start);
    }

    ngx_log_error(NGX_LOG_ERR, out->request->connection->log, 0,
                  "api_key: a metrics line longer than %uz bytes",
                  (size_t) NGX_HTTP_API_KEY_METRICS_MAX);

    return NGX_ERROR;
}


/*
 * A zone name as a Prometheus label value: backslash, double quote and
 * line feed escaped.
 */

static ngx_int_t
ngx_http_api_key_metrics_label(ngx_pool_t *pool, ngx_str_t *name,
    ngx_str_t *label)
{
    u_char      *p, *q, *end;
    size_t       n;

    n = 0;
    end = name->data + name->len;

    for (p = name->data; p < end; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            n++;
        }
    }

    if (n == 0) {
        *label = *name;
        return NGX_OK;
    }

    q = ngx_pnalloc(pool, name->len + n);
    if (q == NULL) {
        return NGX_ERROR;
    }

    label->data = q;
    label->len = name->len + n;

    for (p = name->data; p < end; p++) {
        if (*p == '\\' || *p == '"') {
            *q++ = '\\';
            *q++ = *p;

        } else if (*p == '\n') {
            *q++ = '\\';
            *q++ = 'n';

        } else {
            *q++ = *p;
        }
    }

    return NGX_OK;
}
