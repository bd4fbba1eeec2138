/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: per-key rate limits and quotas.
 *
 * Rate: GCRA on the cache entry's state in shared memory, per node; with
 * rate_scope=cluster (the record's, else the zone's) also a token leased
 * from a GCRA in Redis, so the nodes together keep the rate (the token
 * leases are rate.c's).  When Redis cannot be asked for tokens, the
 * per-node limiter alone.
 *
 * Quota: counted across every node in Redis, without a round trip per
 * request.  A node takes counts in leases: an atomic Lua script grants at
 * most what is left of the limit (so the nodes together never admit more
 * than the limit while Redis answers) and the counts are served from the
 * entry's state in shared memory, shared by the node's workers.  A new lease
 * is fetched in the background when a quarter of the last one is left.
 *
 * When Redis cannot be reached, each worker may admit up to quota_offline
 * counts per key and window on its own; those are added to the Redis counter
 * with the key's next lease (reconciliation).  Overshoot is therefore bounded
 * by nodes x workers x quota_offline per key and window, and only during an
 * outage.
 *
 * A lease that fails (an error answer, a timeout) is not retried at once:
 * leases back off, per worker for the server's errors and timeouts, per key
 * for a key's own, from 200 ms doubling up to 5 s; meanwhile requests are
 * served as when Redis is down (offline share, then quota_exceeded).  The
 * script is loaded once (SCRIPT LOAD) and called by its SHA1 (EVALSHA).
 *
 * Both limits are checked, and consumed, together, so a request denied by
 * one consumes neither.  A key with nothing to ask Redis for skips the
 * zone lock: its node-scope GCRA, one leased quota count, or both, are
 * swapped in the entry (ak_cache_gcra, ak_cache_quota_take,
 * ak_cache_limits_take; a count the rate then refused is given back under
 * the lock, ak_cache_give_back); else both under the lock.  The arithmetic
 * (GCRA, the quota window, consuming a leased count, when to prefetch, the
 * size of a lease, remaining counts) is the core's (ak_limits_admit, ak_quota_lease_want, ak_quota_lease_apply,
 * ak_quota_offline_apply); this file does the locking, the lease I/O and
 * the offline grants.
 */


#include "ngx_http_api_key.h"

#include <ngx_sha1.h>


typedef struct {
    ngx_rbtree_node_t           node;
    u_char                      hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t    *zone;
    uint32_t                    window;     /* window start / 3600 */
    ngx_http_api_key_wait_t     wait;       /* requests waiting for it */
    ngx_event_t                 timer;
    uint64_t                    debt;       /* offline counts reported */
    uint64_t                    limit;      /* the script's arguments */
    uint64_t                    want;
    int64_t                     expire_at;
    u_char                      name[AK_REDIS_NAME_MAX]; /* usage counter */
    size_t                      name_len;
    u_char                      id[AK_ID_MAX_LEN];  /* key id, for logs */
    size_t                      id_len;
    unsigned                    done:1;     /* timed out (or answered) */
    unsigned                    reloaded:1; /* sent again after NOSCRIPT */
    unsigned                    probe:1;    /* sent during an outage */
} ngx_http_api_key_lease_t;


/* per worker and key: offline grants and the lease backoff */

typedef struct {
    ngx_rbtree_node_t           node;
    u_char                      hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t    *zone;
    uint32_t                    window;
    uint64_t                    used;       /* offline counts granted */
    uint64_t                    debt;       /* not yet added in Redis */
    ngx_msec_t                  retry_at;   /* no lease before (backoff) */
    ngx_msec_t                  backoff;
    ngx_uint_t                  failures;   /* in a row; 0: leases work */
} ngx_http_api_key_offline_t;


/*
 * Per worker, i.e. per command connection: the backoff after failures that
 * are the server's, not one key's (OOM, READONLY, NOPERM, timeouts...).
 * While it runs no lease is sent; when it has run out one lease (the probe)
 * is sent and the others wait for its answer.
 */

typedef struct {
    ngx_msec_t                  retry_at;
    ngx_msec_t                  backoff;
    ngx_uint_t                  failures;   /* in this outage; 0: none */
    ngx_uint_t                  probing;
} ngx_http_api_key_lease_conn_t;


#define NGX_HTTP_API_KEY_LEASE_BACKOFF_MIN   200     /* ms, doubled ... */
#define NGX_HTTP_API_KEY_LEASE_BACKOFF_MAX   5000    /* ... up to */

/* the lease script, by SHA1 (EVALSHA) */
#define NGX_HTTP_API_KEY_SCRIPT_UNKNOWN      0
#define NGX_HTTP_API_KEY_SCRIPT_LOADING      1
#define NGX_HTTP_API_KEY_SCRIPT_LOADED       2

/*
 * per request: waits for a lease, looks again after the entry went away:
 * NGX_HTTP_API_KEY_LEASE_WAITS_MAX, NGX_HTTP_API_KEY_RELOOK_MAX (in the
 * header, with the bound on a request's reads they set)
 */


static ngx_int_t ngx_http_api_key_lease_start(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, u_char *hash, const ak_record_t *rec,
    int64_t start, int64_t end, uint64_t used);
static ngx_int_t ngx_http_api_key_lease_send(ngx_http_api_key_lease_t *lease);
static void ngx_http_api_key_lease_reply(ngx_http_api_key_reply_t *reply,
    void *data);
static void ngx_http_api_key_script_reply(ngx_http_api_key_reply_t *reply,
    void *data);
static void ngx_http_api_key_lease_timeout(ngx_event_t *ev);
static void ngx_http_api_key_lease_finish(ngx_http_api_key_lease_t *lease);
static ngx_uint_t ngx_http_api_key_lease_backed_off(
    ngx_http_api_key_offline_t *off);
static void ngx_http_api_key_lease_failed(ngx_http_api_key_lease_t *lease,
    ngx_http_api_key_reply_t *reply);
static void ngx_http_api_key_lease_worked(ngx_http_api_key_lease_t *lease);
static ngx_uint_t ngx_http_api_key_lease_key_error(u_char *err, size_t len);
static ngx_http_api_key_offline_t *ngx_http_api_key_offline_node(
    ngx_http_api_key_zone_t *zone, u_char *hash, uint32_t window,
    ngx_uint_t create);
static void ngx_http_api_key_offline_grant(ngx_http_api_key_zone_t *zone,
    u_char *hash, uint32_t window);


/*
 * KEYS[1] usage counter; ARGV: limit, wanted, expire-at, debt.
 * Returns {granted, total now leased by all nodes}.
 */

static char  ngx_http_api_key_lease_script[] =
    "local k = KEYS[1] "
    "local limit = tonumber(ARGV[1]) "
    "local want = tonumber(ARGV[2]) "
    "local debt = tonumber(ARGV[4]) "
    "if debt > 0 then redis.call('INCRBY', k, debt) end "
    "local used = tonumber(redis.call('GET', k) or '0') "
    "local grant = limit - used "
    "if grant > want then grant = want end "
    "if grant < 0 then grant = 0 end "
    "if grant > 0 then used = redis.call('INCRBY', k, grant) end "
    "if redis.call('TTL', k) == -1 then "
    "redis.call('EXPIREAT', k, ARGV[3]) end "
    "return {grant, used}";


static ngx_int_t ngx_http_api_key_limits_again(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, uint32_t slot, ngx_http_api_key_status_e *status);


static ngx_rbtree_t                   ngx_http_api_key_leases;
static ngx_rbtree_node_t              ngx_http_api_key_leases_sentinel;
static ngx_rbtree_t                   ngx_http_api_key_offline;
static ngx_rbtree_node_t              ngx_http_api_key_offline_sentinel;
static ngx_log_t                     *ngx_http_api_key_limits_log;
static ngx_http_api_key_lease_conn_t  ngx_http_api_key_lease_conn;
static ngx_uint_t                     ngx_http_api_key_script_state;
static u_char                         ngx_http_api_key_script_sha[40];


void
ngx_http_api_key_limits_init_worker(ngx_cycle_t *cycle)
{
    u_char      digest[20];
    ngx_sha1_t  sha1;

    ngx_rbtree_init(&ngx_http_api_key_leases,
                    &ngx_http_api_key_leases_sentinel,
                    ngx_rbtree_insert_value);

    ngx_rbtree_init(&ngx_http_api_key_offline,
                    &ngx_http_api_key_offline_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_api_key_limits_log = cycle->log;

    ngx_memzero(&ngx_http_api_key_lease_conn,
                sizeof(ngx_http_api_key_lease_conn_t));

    /* what SCRIPT LOAD answers: the script is called by it (EVALSHA) */

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, ngx_http_api_key_lease_script,
                    sizeof(ngx_http_api_key_lease_script) - 1);
    ngx_sha1_final(digest, &sha1);

    ngx_hex_dump(ngx_http_api_key_script_sha, digest, sizeof(digest));

    ngx_http_api_key_script_state = NGX_HTTP_API_KEY_SCRIPT_UNKNOWN;
}


/*
 * NGX_OK: admitted (both limits consumed); NGX_DECLINED: *status says which
 * limit denies; NGX_AGAIN: the request waits (for a quota lease, or to look
 * its key up again).
 */

ngx_int_t
ngx_http_api_key_limits(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, const ak_cache_found_t *f,
    ngx_http_api_key_status_e *status)
{
    /*
     * The common case, a node-scope rate and no quota (the evaluation
     * takes it without this call), or every other case in
     * ngx_http_api_key_limits_all.
     */
    if (ngx_http_api_key_rate_alone(rec, alcf->zone)) {
        return ngx_http_api_key_limits_rate(r, alcf, ctx, rec, f, status);
    }

    return ngx_http_api_key_limits_all(r, alcf, ctx, rec, f->slot, status);
}


/* the limits once more, for the entry in slot (no lookup's count of
 * writes to go by) */

static ngx_int_t
ngx_http_api_key_limits_again(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, uint32_t slot, ngx_http_api_key_status_e *status)
{
    ak_cache_found_t  f;

    ngx_memzero(&f, sizeof(ak_cache_found_t));
    f.slot = slot;
    f.writes = 1;

    return ngx_http_api_key_limits(r, alcf, ctx, rec, &f, status);
}


/* what a 429 of the rate says (RateLimit-Policy, Retry-After, RateLimit) */

void
ngx_http_api_key_rate_denied(ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, ak_rate_result_t *rate)
{
    ctx->rate_remaining = 0;
    ctx->rate_n = rec->rate_n;
    ctx->rate_window = (rec->rate_period == AK_PERIOD_SECOND) ? 1
                       : (rec->rate_period == AK_PERIOD_MINUTE) ? 60
                       : 3600;
    ctx->rate_burst = rec->burst;
    ctx->retry_after = (rate->retry_after_us + 999999) / 1000000;
    ctx->reset = (rate->reset_us + 999999) / 1000000;
}


/*
 * The limits in every case (a rate-only key whose entry
 * ak_cache_gcra_found() did not find tries it once more here, then under
 * the lock).
 */

ngx_int_t
ngx_http_api_key_limits_all(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, uint32_t slot, ngx_http_api_key_status_e *status)
{
    int                       decision;
    int64_t                   now;
    uint32_t                  owed, stamp;
    uint64_t                  now_us;
    unsigned                  flags;
    ngx_int_t                 rc;
    ak_key_state_t           *st;
    ak_admit_result_t         ar;
    ngx_http_api_key_zone_t  *zone;

    zone = alcf->zone;
    now = (int64_t) ngx_time();

    /*
     * The limiter needs a clock finer than ngx_current_msec: that is
     * milliseconds, and the same for every request of one event loop
     * iteration, which would cap any rate at about one request per
     * millisecond.  CLOCK_MONOTONIC is the same in every worker.
     */
    now_us = (rec->rate_period != AK_PERIOD_NONE)
             ? ngx_http_api_key_monotonic_us() : 0;

    /*
     * A cluster-wide rate while Redis can be asked for tokens, and this
     * request has not waited for leases as often as it may; else the
     * per-node limiter (the fallback).
     */
    flags = 0;

    if (rec->rate_period != AK_PERIOD_NONE
        && ak_rate_scope(rec, (uint8_t) zone->rate_scope)
           == AK_RATE_SCOPE_CLUSTER
        && ctx->lease_waits < NGX_HTTP_API_KEY_LEASE_WAITS_MAX
        && ngx_http_api_key_rate_usable())
    {
        flags = AK_LIMITS_CLUSTER_RATE;
    }

    /*
     * The common case, a node-scope rate and no quota: the GCRA's TAT is
     * swapped in the entry without the zone lock (ak_cache_gcra); -1 when
     * the entry left the slot since the lookup: then under the lock.
     */
    if (flags == 0 && rec->rate_period != AK_PERIOD_NONE
        && rec->quota_period == AK_PERIOD_NONE)
    {
        ngx_memzero(&ar, sizeof(ak_admit_result_t));

        switch (ak_cache_gcra(zone->sh->cache, slot, ctx->hash, now_us,
                              rec->rate_interval_us, rec->burst, &ar.rate))
        {
        case 1:
            decision = AK_ADMIT;
            goto decided;

        case 0:
            decision = AK_DENY_RATE;
            goto decided;

        default:
            break;
        }
    }

    /*
     * Likewise a quota and no rate, where a count leased to this node is
     * left in the current window: taken from the entry without the lock
     * (ak_cache_quota_take); -1 for anything else (a new window, a lease
     * to ask for, the entry gone): under the lock.
     */
    if (rec->rate_period == AK_PERIOD_NONE
        && rec->quota_period != AK_PERIOD_NONE)
    {
        decision = ak_cache_quota_take(zone->sh->cache, slot, ctx->hash,
                                       rec->quota_period, rec->quota_n,
                                       zone->quota_lease, now, &ar);
        if (decision >= 0) {
            goto decided;
        }
    }

    /*
     * And a node-scope rate with a quota in the same case: the rate's TAT
     * and a leased count taken from the entry without the lock, together
     * or neither (ak_cache_limits_take).  A count taken there that the
     * rate then did not admit (other requests took the rate meanwhile) is
     * owed: given back under the lock below (if no writer changed the
     * entry since), before deciding there.
     */
    owed = 0;

    if (flags == 0 && rec->rate_period != AK_PERIOD_NONE
        && rec->quota_period != AK_PERIOD_NONE)
    {
        decision = ak_cache_limits_take(zone->sh->cache, slot, ctx->hash,
                                        now_us, rec->rate_interval_us,
                                        rec->burst, rec->quota_period,
                                        rec->quota_n, zone->quota_lease, now,
                                        &ar, &stamp);
        if (decision >= 0) {
            goto decided;
        }

        if (decision == AK_TAKE_GIVE_BACK) {
            owed = 1;
        }
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (owed) {
        /* to the entry it came from, unless a writer changed it since */
        (void) ak_cache_give_back(zone->sh->cache, slot, ctx->hash,
                                  ar.window, stamp);
    }

    /*
     * The entry found by the lookup, or the key's entry wherever it is now:
     * another worker may have evicted it and read it again since.
     */
    st = ak_cache_state(zone->sh->cache, slot, ctx->hash);

    if (st == NULL) {
        st = ak_cache_state_find(zone->sh->cache, ctx->hash, &slot);
    }

    if (st == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        /*
         * The entry went away since the lookup (evicted, flushed): there is
         * nothing to count on, and a request is never admitted uncounted.
         * It looks its key up again (from Redis) and comes back here.
         */

        if (ctx->relooks < NGX_HTTP_API_KEY_RELOOK_MAX) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "api_key: entry gone before its limits, "
                           "looking the key up again");

            ctx->relooks++;

            ngx_post_event(r->connection->write, &ngx_posted_events);

            return NGX_AGAIN;
        }

        /* the zone is thrashing: the limits cannot be counted */

        *status = alcf->fail_open ? NGX_HTTP_API_KEY_UNCHECKED
                                  : NGX_HTTP_API_KEY_UNAVAILABLE;
        return NGX_DECLINED;
    }

    /* the core decides; both limits are consumed together, or neither */

    decision = ak_limits_admit_ex(st, rec, now, now_us, zone->quota_lease,
                                  flags, &ar);

    ngx_shmtx_unlock(&zone->shpool->mutex);

decided:

    switch (decision) {

    case AK_ADMIT:
    case AK_ADMIT_PREFETCH:

        if (rec->rate_period != AK_PERIOD_NONE) {
            ctx->rate_remaining = ar.rate.remaining;

            if (ar.rate_lease) {
                /* the node's tokens run low: the next batch */
                (void) ngx_http_api_key_rate_lease(NULL, zone, ctx->hash,
                                                   rec);
            }
        }

        if (rec->quota_period != AK_PERIOD_NONE) {
            ctx->quota_remaining =
                (ar.quota_remaining > NGX_MAX_INT_T_VALUE)
                ? NGX_MAX_INT_T_VALUE : (ngx_int_t) ar.quota_remaining;

            if (decision == AK_ADMIT_PREFETCH) {
                (void) ngx_http_api_key_lease_start(NULL, zone, ctx->hash,
                                                    rec, ar.window_start,
                                                    ar.window_end,
                                                    ar.quota_used);
            }
        }

        *status = NGX_HTTP_API_KEY_OK;
        return NGX_OK;

    case AK_DENY_RATE:

        ngx_http_api_key_rate_denied(ctx, rec, &ar.rate);

        *status = NGX_HTTP_API_KEY_RATE_LIMITED;
        return NGX_DECLINED;

    case AK_NEED_RATE_LEASE:

        /* no token of the cluster-wide rate left here: ask Redis */

        ctx->lease_waits++;

        rc = ngx_http_api_key_rate_lease(ctx, zone, ctx->hash, rec);
        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        /*
         * Redis cannot be asked now: decide again, per node if it is down
         * or backs off (or once this request waited enough)
         */
        return ngx_http_api_key_limits_again(r, alcf, ctx, rec, slot, status);

    case AK_NEED_LEASE:

        if (ctx->lease_waits < NGX_HTTP_API_KEY_LEASE_WAITS_MAX) {
            ctx->lease_waits++;

            rc = ngx_http_api_key_lease_start(ctx, zone, ctx->hash, rec,
                                              ar.window_start, ar.window_end,
                                              ar.quota_used);
            if (rc == NGX_AGAIN) {
                return NGX_AGAIN;
            }

            /*
             * Redis cannot be asked now (down, or leases back off): an
             * offline grant may have been made
             */
            return ngx_http_api_key_limits_again(r, alcf, ctx, rec, slot,
                                                 status);
        }

        /* fall through */

    case AK_DENY_QUOTA:

        /*
         * Out of counts: the quota is used up, or Redis cannot grant any
         * (down, or leases fail and back off) and this worker's
         * quota_offline share is used up too.
         */

        ctx->quota_remaining = 0;
        ctx->retry_after = (ngx_uint_t) ar.retry_after;

        *status = NGX_HTTP_API_KEY_QUOTA_EXCEEDED;
        return NGX_DECLINED;

    default: /* AK_DENY_BAD: not a quota period */

        *status = NGX_HTTP_API_KEY_BAD_RECORD;
        return NGX_DECLINED;
    }
}


/*
 * Asks Redis for counts (ctx, if any, waits for the answer).  NGX_AGAIN:
 * ctx waits; NGX_OK: a lease is on its way, nobody waits; NGX_DECLINED:
 * Redis could not be asked (down, or leases back off), an offline grant was
 * tried instead.
 */

static ngx_int_t
ngx_http_api_key_lease_start(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, u_char *hash, const ak_record_t *rec,
    int64_t start, int64_t end, uint64_t used)
{
    uint32_t                         window;
    ngx_rbtree_node_t               *node;
    ngx_http_api_key_lease_t        *lease;
    ngx_http_api_key_offline_t      *off;
    ngx_http_api_key_redis_conf_t   *conf;

    window = (uint32_t) (start / 3600);

    node = ngx_http_api_key_tree_find(&ngx_http_api_key_leases, zone, hash,
                                   offsetof(ngx_http_api_key_lease_t, hash),
                                   offsetof(ngx_http_api_key_lease_t, zone));
    if (node) {
        lease = (ngx_http_api_key_lease_t *) node;

        if (ctx == NULL) {
            return NGX_OK;
        }

        ngx_http_api_key_wait_join(&lease->wait, ctx);

        return NGX_AGAIN;
    }

    conf = ngx_http_api_key_redis_conf();
    off = ngx_http_api_key_offline_node(zone, hash, window, 0);

    if (!ngx_http_api_key_redis_ready()
        || conf->prefix.len > AK_REDIS_PREFIX_MAX
        || ngx_http_api_key_lease_backed_off(off))
    {
        ngx_http_api_key_offline_grant(zone, hash, window);
        return NGX_DECLINED;
    }

    lease = ngx_calloc(sizeof(ngx_http_api_key_lease_t),
                       ngx_http_api_key_limits_log);
    if (lease == NULL) {
        return NGX_DECLINED;
    }

    ngx_memcpy(lease->hash, hash, AK_HASH_LEN);
    lease->zone = zone;
    lease->window = window;
    ngx_http_api_key_wait_init(&lease->wait, NGX_HTTP_API_KEY_WAIT_LEASE,
                               ngx_http_api_key_limits_log);

    lease->id_len = ngx_http_api_key_lease_id(rec, hash, lease->id);

    /*
     * the usage counter: {prefix}usage:{hex}:{period}:{window start}, of
     * the key's identity (the same across rotations), else of its hash
     */

    lease->name_len = ak_redis_name_usage((const char *) conf->prefix.data,
                                          conf->prefix.len,
                                          rec->identity ? rec->identity
                                                        : hash,
                                          rec->quota_period, start,
                                          (char *) lease->name,
                                          sizeof(lease->name));
    if (lease->name_len == 0) {
        ngx_free(lease);
        ngx_http_api_key_offline_grant(zone, hash, window);
        return NGX_DECLINED;
    }

    /* smaller leases as the quota runs out, so few counts sit unused */

    lease->limit = rec->quota_n;
    lease->want = ak_quota_lease_want(rec->quota_n, used, zone->quota_lease);
    lease->expire_at = end + 3600;

    /* counts admitted offline are added to the counter first */

    if (off && off->window == window) {
        lease->debt = off->debt;
        off->debt = 0;
    }

    if (ngx_http_api_key_lease_conn.failures) {
        /* the first lease after the backoff: the others wait for it */
        lease->probe = 1;
        ngx_http_api_key_lease_conn.probing = 1;
    }

    if (ngx_http_api_key_lease_send(lease) != NGX_OK) {
        if (lease->debt && off) {
            off->debt += lease->debt;
        }

        if (lease->probe) {
            ngx_http_api_key_lease_conn.probing = 0;
        }

        ngx_free(lease);
        ngx_http_api_key_offline_grant(zone, hash, window);
        return NGX_DECLINED;
    }

    ngx_memcpy(&lease->node.key, lease->hash, sizeof(ngx_rbtree_key_t));
    ngx_rbtree_insert(&ngx_http_api_key_leases, &lease->node);

    lease->timer.handler = ngx_http_api_key_lease_timeout;
    lease->timer.data = lease;
    lease->timer.log = ngx_http_api_key_limits_log;
    ngx_add_timer(&lease->timer, conf->timeout);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_limits_log, 0,
                   "api_key: lease sent, key id \"%*s\": want %uL, "
                   "debt %uL%s", lease->id_len, lease->id, lease->want,
                   lease->debt, ctx ? ", a request waits" : " (prefetch)");

    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_http_api_key_wait_join(&lease->wait, ctx);

    return NGX_AGAIN;
}


/*
 * EVALSHA, preceded by SCRIPT LOAD on the same connection when the script
 * is not known to be loaded (first use; NOSCRIPT after a Redis restart or
 * SCRIPT FLUSH).  Commands on one connection run in order, so the EVALSHA
 * finds the script.
 */

static ngx_int_t
ngx_http_api_key_lease_send(ngx_http_api_key_lease_t *lease)
{
    const char                     *argv[8];
    size_t                          argvlen[8];
    u_char                          nums[4][NGX_INT64_LEN];
    ngx_http_api_key_redis_conf_t  *conf;

    conf = ngx_http_api_key_redis_conf();

    if (!(conf && conf->cluster)
        && ngx_http_api_key_script_state == NGX_HTTP_API_KEY_SCRIPT_UNKNOWN)
    {
        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;
        argv[2] = ngx_http_api_key_lease_script;
        argvlen[2] = sizeof(ngx_http_api_key_lease_script) - 1;

        if (ngx_http_api_key_redis_command(ngx_http_api_key_script_reply,
                                           NULL, -1, 3, argv, argvlen)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_http_api_key_script_state = NGX_HTTP_API_KEY_SCRIPT_LOADING;
    }

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_http_api_key_script_sha;
    argvlen[1] = sizeof(ngx_http_api_key_script_sha);

    if (conf && conf->cluster) {
        /*
         * a cluster: each master has its own script cache, a SCRIPT LOAD
         * on one of them is not seen by the others; EVAL with the script
         * (which Redis caches too) needs none
         */
        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_http_api_key_lease_script;
        argvlen[1] = sizeof(ngx_http_api_key_lease_script) - 1;
    }
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) lease->name;
    argvlen[3] = lease->name_len;
    argv[4] = (const char *) nums[0];
    argvlen[4] = ngx_sprintf(nums[0], "%uL", lease->limit) - nums[0];
    argv[5] = (const char *) nums[1];
    argvlen[5] = ngx_sprintf(nums[1], "%uL", lease->want) - nums[1];
    argv[6] = (const char *) nums[2];
    argvlen[6] = ngx_sprintf(nums[2], "%L", lease->expire_at) - nums[2];
    argv[7] = (const char *) nums[3];
    argvlen[7] = ngx_sprintf(nums[3], "%uL", lease->debt) - nums[3];

    /* KEYS[1], the counter's name, routes it on a cluster */

    return ngx_http_api_key_redis_command(ngx_http_api_key_lease_reply, lease,
                                          3, 8, argv, argvlen);
}


static void
ngx_http_api_key_script_reply(ngx_http_api_key_reply_t *reply, void *data)
{
    if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_STRING
        && reply->str.len == sizeof(ngx_http_api_key_script_sha)
        && ngx_strncasecmp(reply->str.data, ngx_http_api_key_script_sha,
                           sizeof(ngx_http_api_key_script_sha))
           == 0)
    {
        if (ngx_http_api_key_script_state == NGX_HTTP_API_KEY_SCRIPT_LOADING) {
            ngx_http_api_key_script_state = NGX_HTTP_API_KEY_SCRIPT_LOADED;
        }

        return;
    }

    /* no answer or an error: load it again with the next lease */

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_limits_log, 0,
                   "api_key: SCRIPT LOAD of the lease script failed");

    ngx_http_api_key_script_state = NGX_HTTP_API_KEY_SCRIPT_UNKNOWN;
}


static void
ngx_http_api_key_lease_reply(ngx_http_api_key_reply_t *reply, void *data)
{
    uint64_t                     grant, used;
    ngx_uint_t                   applied, failed;
    ak_key_state_t              *st;
    ngx_http_api_key_lease_t    *lease = data;
    ngx_http_api_key_offline_t  *off;
    const char                  *argv[3];
    size_t                       argvlen[3];
    u_char                       num[NGX_INT64_LEN];

    if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_ERROR
        && reply->str.len >= 8
        && ngx_strncmp(reply->str.data, "NOSCRIPT", 8) == 0
        && !lease->reloaded && !lease->done)
    {
        /* Redis restarted or SCRIPT FLUSH: load it again, once per lease */

        lease->reloaded = 1;

        if (ngx_http_api_key_script_state == NGX_HTTP_API_KEY_SCRIPT_LOADED) {
            ngx_http_api_key_script_state = NGX_HTTP_API_KEY_SCRIPT_UNKNOWN;
        }

        if (ngx_http_api_key_lease_send(lease) == NGX_OK) {
            return;
        }
    }

    applied = 0;
    failed = 1;
    grant = 0;
    used = 0;

    /* the script's {granted, total now leased by all nodes} */

    if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_INTEGERS
        && reply->nints == 2 && reply->ints[0] >= 0 && reply->ints[1] >= 0)
    {
        failed = 0;
        grant = (uint64_t) reply->ints[0];
        used = (uint64_t) reply->ints[1];

        /* offline counts not in Redis yet (sent with the next lease) */

        off = ngx_http_api_key_offline_node(lease->zone, lease->hash,
                                            lease->window, 0);
        if (off && off->window == lease->window) {
            used += off->debt;
        }

        ngx_shmtx_lock(&lease->zone->shpool->mutex);

        st = ak_cache_state_find(lease->zone->sh->cache, lease->hash, NULL);

        applied = ak_quota_lease_apply(st, lease->window, grant, used);

        ngx_shmtx_unlock(&lease->zone->shpool->mutex);
    }

    ngx_log_debug6(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_limits_log, 0,
                   "api_key: lease answered: %s, key id \"%*s\": granted "
                   "%uL, used %uL%s",
                   failed ? (reply ? "failed" : "no answer") : "counts",
                   lease->id_len, lease->id, grant, used,
                   lease->done ? " (after its timeout)"
                   : (!failed && !applied) ? " (not applied)" : "");

    if (lease->probe) {
        ngx_http_api_key_lease_conn.probing = 0;
        lease->probe = 0;
    }

    if (!failed) {
        ngx_http_api_key_lease_worked(lease);

    } else if (reply && !lease->done) {
        /* an error (or a malformed answer); a timeout was counted already */
        ngx_http_api_key_lease_failed(lease, reply);
    }

    if (!failed && !applied && grant > 0) {
        /* the entry or the window went away: give the counts back */

        argv[0] = "DECRBY";
        argvlen[0] = 6;
        argv[1] = (const char *) lease->name;
        argvlen[1] = lease->name_len;
        argv[2] = (const char *) num;
        argvlen[2] = ngx_sprintf(num, "%uL", grant) - num;

        (void) ngx_http_api_key_redis_command(NULL, NULL, 1, 3, argv,
                                              argvlen);
    }

    if (failed) {
        /*
         * No answer (the connection went down) or an error: the offline
         * counts this lease carried are reported with the next one, also
         * after a timeout.  Should the script have run and only its answer
         * been lost, they are counted twice: for a quota, the safe side.
         */

        off = ngx_http_api_key_offline_node(lease->zone, lease->hash,
                                            lease->window, 0);

        if (off && lease->debt && off->window == lease->window) {
            off->debt += lease->debt;
        }

        if (!lease->done) {
            /* before the timeout: the waiters may count locally now */
            ngx_http_api_key_offline_grant(lease->zone, lease->hash,
                                           lease->window);
        }
    }

    if (!lease->done) {
        ngx_http_api_key_lease_finish(lease);
    }

    ngx_free(lease);
}


static void
ngx_http_api_key_lease_timeout(ngx_event_t *ev)
{
    ngx_http_api_key_lease_t  *lease = ev->data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_limits_log, 0,
                   "api_key: lease timed out, key id \"%*s\"",
                   lease->id_len, lease->id);

    if (lease->probe) {
        ngx_http_api_key_lease_conn.probing = 0;
        lease->probe = 0;
    }

    ngx_http_api_key_lease_failed(lease, NULL);

    ngx_http_api_key_offline_grant(lease->zone, lease->hash, lease->window);

    /* the answer (or its absence) still comes, and frees the lease */
    ngx_http_api_key_lease_finish(lease);
}


static void
ngx_http_api_key_lease_finish(ngx_http_api_key_lease_t *lease)
{
    lease->done = 1;

    if (lease->timer.timer_set) {
        ngx_del_timer(&lease->timer);
    }

    ngx_rbtree_delete(&ngx_http_api_key_leases, &lease->node);

    /* the waiters look at their key's counts again */
    ngx_http_api_key_wait_wake(&lease->wait);
}


/* 1: no lease may be sent for this key now */

static ngx_uint_t
ngx_http_api_key_lease_backed_off(ngx_http_api_key_offline_t *off)
{
    ngx_http_api_key_lease_conn_t  *c;

    c = &ngx_http_api_key_lease_conn;

    if (c->failures
        && (c->probing
            || (ngx_msec_int_t) (c->retry_at - ngx_current_msec) > 0))
    {
        return 1;
    }

    if (off && off->failures
        && (ngx_msec_int_t) (off->retry_at - ngx_current_msec) > 0)
    {
        return 1;
    }

    return 0;
}


/*
 * A lease failed: reply is Redis's error (or a malformed answer), NULL a
 * timeout.  The server's errors back off every lease of this worker, a
 * key's own (its counter holds something else: see
 * ngx_http_api_key_lease_key_error; or a number out of range, which the
 * script answers with a negative count) that key's.  One line per outage (per
 * key for a key's errors), naming the key id, never the key; the count when
 * leases work again.
 */

static void
ngx_http_api_key_lease_failed(ngx_http_api_key_lease_t *lease,
    ngx_http_api_key_reply_t *reply)
{
    size_t                          len;
    u_char                         *err;
    ngx_msec_t                     *backoff, *retry_at;
    ngx_uint_t                     *failures, key_level;
    ngx_http_api_key_offline_t     *off;
    ngx_http_api_key_redis_conf_t  *conf;

    key_level = 0;
    off = NULL;
    err = (u_char *) "malformed answer";
    len = sizeof("malformed answer") - 1;

    if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_ERROR
        && reply->str.data)
    {
        err = reply->str.data;
        key_level = ngx_http_api_key_lease_key_error(err, reply->str.len);
        len = ngx_http_api_key_error_len(err, reply->str.len);

    } else if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_INTEGERS
               && reply->nints == 2)
    {
        /*
         * the script ran and answered, with a negative number: its counter
         * holds one (or one too large for Lua's numbers): the key's own
         */
        key_level = 1;
        err = (u_char *) "a count out of range (the usage counter holds a "
                         "negative or too large number)";
        len = ngx_strlen(err);
    }

    if (key_level) {
        off = ngx_http_api_key_offline_node(lease->zone, lease->hash,
                                            lease->window, 1);
    }

    if (off) {
        backoff = &off->backoff;
        retry_at = &off->retry_at;
        failures = &off->failures;

    } else {
        backoff = &ngx_http_api_key_lease_conn.backoff;
        retry_at = &ngx_http_api_key_lease_conn.retry_at;
        failures = &ngx_http_api_key_lease_conn.failures;
    }

    if (*failures == 0) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_limits_log, 0,
                          "api_key: quota lease for key id \"%*s\" failed: "
                          "%*s; %s back off (up to %d ms), requests are "
                          "counted locally up to quota_offline, then get "
                          "quota_exceeded; logged once until leases work "
                          "again",
                          lease->id_len, lease->id, len, err,
                          off ? "this key's leases" : "all leases",
                          NGX_HTTP_API_KEY_LEASE_BACKOFF_MAX);

        } else {
            conf = ngx_http_api_key_redis_conf();

            ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_limits_log, 0,
                          "api_key: quota lease for key id \"%*s\" timed "
                          "out after %M ms; leases back off (up to %d ms), "
                          "requests are counted locally up to "
                          "quota_offline, then get quota_exceeded; logged "
                          "once until leases work again",
                          lease->id_len, lease->id, conf->timeout,
                          NGX_HTTP_API_KEY_LEASE_BACKOFF_MAX);
        }
    }

    (*failures)++;

    *backoff = (*backoff == 0) ? NGX_HTTP_API_KEY_LEASE_BACKOFF_MIN
                               : ngx_min(*backoff * 2,
                                         NGX_HTTP_API_KEY_LEASE_BACKOFF_MAX);
    *retry_at = ngx_current_msec + *backoff;
}


/*
 * 1: the error is the key's own, its usage counter holds something the
 * script cannot count on: a value of another type (WRONGTYPE), a string
 * that is not a number ("ERR value is not an integer", or Lua's "attempt to
 * perform arithmetic on" the nil tonumber() made of it), a number that would
 * overflow.  Redis 6 wraps these in "ERR Error running script ...": they are
 * looked for anywhere in the answer.  Every other error, "ERR ..." included
 * ("ERR unknown command" for a renamed EVALSHA, "ERR max number of
 * clients"...), is the server's, and backs off the worker.
 */

static ngx_uint_t
ngx_http_api_key_lease_key_error(u_char *err, size_t len)
{
    ngx_uint_t  i;
    ngx_str_t  *m;

    static ngx_str_t  marks[] = {
        ngx_string("WRONGTYPE"),
        ngx_string("not an integer"),
        ngx_string("would overflow"),
        ngx_string("arithmetic on")
    };

    for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        m = &marks[i];

        if (len >= m->len
            && ngx_strlcasestrn(err, err + len, m->data, m->len - 1) != NULL)
        {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_api_key_lease_worked(ngx_http_api_key_lease_t *lease)
{
    ngx_http_api_key_offline_t     *off;
    ngx_http_api_key_lease_conn_t  *c;

    c = &ngx_http_api_key_lease_conn;

    if (c->failures) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_limits_log, 0,
                      "api_key: quota leases work again (key id \"%*s\"); "
                      "%ui failed or timed out meanwhile",
                      lease->id_len, lease->id, c->failures);

        c->failures = 0;
        c->backoff = 0;
    }

    off = ngx_http_api_key_offline_node(lease->zone, lease->hash,
                                        lease->window, 0);

    if (off && off->failures) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_limits_log, 0,
                      "api_key: quota leases for key id \"%*s\" work again; "
                      "%ui failed meanwhile",
                      lease->id_len, lease->id, off->failures);

        off->failures = 0;
        off->backoff = 0;
    }
}


/* this worker's node of the key (created if asked), NULL if none */

static ngx_http_api_key_offline_t *
ngx_http_api_key_offline_node(ngx_http_api_key_zone_t *zone, u_char *hash,
    uint32_t window, ngx_uint_t create)
{
    ngx_rbtree_node_t           *node;
    ngx_http_api_key_offline_t  *off;

    node = ngx_http_api_key_tree_find(&ngx_http_api_key_offline, zone, hash,
                                 offsetof(ngx_http_api_key_offline_t, hash),
                                 offsetof(ngx_http_api_key_offline_t, zone));
    if (node) {
        return (ngx_http_api_key_offline_t *) node;
    }

    if (!create) {
        return NULL;
    }

    off = ngx_calloc(sizeof(ngx_http_api_key_offline_t),
                     ngx_http_api_key_limits_log);
    if (off == NULL) {
        return NULL;
    }

    ngx_memcpy(off->hash, hash, AK_HASH_LEN);
    off->zone = zone;
    off->window = window;

    ngx_memcpy(&off->node.key, hash, sizeof(ngx_rbtree_key_t));
    ngx_rbtree_insert(&ngx_http_api_key_offline, &off->node);

    return off;
}


/*
 * api_key_verify consume=off: what the key has left, nothing consumed.  The
 * core decides on a copy of the key's state (so nothing is written): the
 * rate's answer is the requests the key may send now (the remaining burst
 * after one more, plus that one; 0 when limited); the quota's is the
 * estimate $api_key_quota_remaining gives (the whole quota in a window
 * nothing was counted in yet).  No lease is taken.
 */

void
ngx_http_api_key_limits_peek(ngx_http_api_key_loc_conf_t *alcf,
    ngx_http_api_key_ctx_t *ctx, const ak_record_t *rec, uint32_t slot)
{
    int                       decision;
    int64_t                   now, start, end;
    uint64_t                  now_us, left;
    ak_key_state_t           *st, copy;
    ak_admit_result_t         ar;
    ngx_http_api_key_zone_t  *zone;

    zone = alcf->zone;
    now = (int64_t) ngx_time();
    now_us = ngx_http_api_key_monotonic_us();

    ngx_shmtx_lock(&zone->shpool->mutex);

    st = ak_cache_state(zone->sh->cache, slot, ctx->hash);

    if (st == NULL) {
        st = ak_cache_state_find(zone->sh->cache, ctx->hash, NULL);
    }

    if (st) {
        copy = *st;
        copy.tat_us &= AK_TAT_MASK;     /* the bits above are the cache's */
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (st == NULL) {
        return;
    }

    if (rec->rate_period != AK_PERIOD_NONE) {
        ngx_memzero(&ar, sizeof(ak_admit_result_t));

        decision = ak_gcra(&copy.tat_us, now_us, rec->rate_interval_us,
                           rec->burst, &ar.rate);

        ctx->rate_remaining = decision ? (ngx_int_t) ar.rate.remaining + 1
                                       : 0;
    }

    if (rec->quota_period != AK_PERIOD_NONE
        && ak_quota_window(rec->quota_period, now, &start, &end) == 0)
    {
        left = (copy.q_window == (uint32_t) (start / 3600))
               ? ak_quota_remaining(rec->quota_n, copy.q_used, copy.q_left)
               : rec->quota_n;

        ctx->quota_remaining = (left > NGX_MAX_INT_T_VALUE)
                               ? NGX_MAX_INT_T_VALUE : (ngx_int_t) left;
    }
}


/*
 * Redis cannot count: this worker may admit up to quota_offline counts of
 * the key in this window on its own, added to Redis with the next lease.
 * They count as used at once (q_used), so $api_key_quota_remaining stays
 * right.
 */

static void
ngx_http_api_key_offline_grant(ngx_http_api_key_zone_t *zone, u_char *hash,
    uint32_t window)
{
    uint64_t                     block;
    ak_key_state_t              *st;
    ngx_http_api_key_offline_t  *off;

    if (zone->quota_offline == 0) {
        return;
    }

    off = ngx_http_api_key_offline_node(zone, hash, window, 1);
    if (off == NULL) {
        return;
    }

    if (off->window != window) {
        off->window = window;
        off->used = 0;
        off->debt = 0;
    }

    if (off->used >= zone->quota_offline) {
        return;
    }

    /*
     * In blocks of at most quota_lease: the share is taken as it is used,
     * so what the cache entry loses with its state (evicted, re-read after
     * an unknown answer) is one block, not the rest of the window's share,
     * and what is reported to Redis as used offline is close to what was
     */

    block = ngx_min(zone->quota_offline - off->used,
                    ngx_max(zone->quota_lease, 1));

    ngx_shmtx_lock(&zone->shpool->mutex);

    st = ak_cache_state_find(zone->sh->cache, hash, NULL);

    if (ak_quota_offline_apply(st, window, block)) {
        off->used += block;
        off->debt += block;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
