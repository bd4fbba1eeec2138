
/*
 * ngx_http_api_key_module: per-key rate limits and quotas.
 *
 * Rate: GCRA on the cache entry's state in shared memory, per node.
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
 * Both limits are checked, and consumed, together under the zone lock, so a
 * request denied by one consumes neither.
 */


#include "ngx_http_api_key.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


typedef struct {
    ngx_rbtree_node_t           node;
    u_char                      hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t    *zone;
    uint32_t                    slot;
    uint32_t                    window;     /* window start / 3600 */
    ngx_queue_t                 waiters;
    ngx_event_t                 timer;
    uint64_t                    debt;       /* offline counts reported */
    u_char                      name[512];  /* the usage counter */
    size_t                      name_len;
    unsigned                    done:1;
} ngx_http_api_key_lease_t;


typedef struct {
    ngx_rbtree_node_t           node;
    u_char                      hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t    *zone;
    uint32_t                    window;
    uint64_t                    used;       /* offline counts granted */
    uint64_t                    debt;       /* not yet added in Redis */
} ngx_http_api_key_offline_t;


static ngx_int_t ngx_http_api_key_lease_start(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, u_char *hash, uint32_t slot,
    ak_record_t *rec, int64_t start, int64_t end, uint64_t used);
static void ngx_http_api_key_lease_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_api_key_lease_timeout(ngx_event_t *ev);
static void ngx_http_api_key_lease_finish(ngx_http_api_key_lease_t *lease);
static void ngx_http_api_key_offline_grant(ngx_http_api_key_zone_t *zone,
    u_char *hash, uint32_t slot, uint32_t window);


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


static const char  *ngx_http_api_key_period_names[] = {
    "", "second", "minute", "hour", "day", "month"
};


static uint64_t ngx_http_api_key_monotonic_us(void);


static ngx_rbtree_t        ngx_http_api_key_leases;
static ngx_rbtree_node_t   ngx_http_api_key_leases_sentinel;
static ngx_rbtree_t        ngx_http_api_key_offline;
static ngx_rbtree_node_t   ngx_http_api_key_offline_sentinel;
static ngx_log_t          *ngx_http_api_key_limits_log;


void
ngx_http_api_key_limits_init_worker(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_http_api_key_leases,
                    &ngx_http_api_key_leases_sentinel,
                    ngx_rbtree_insert_value);

    ngx_rbtree_init(&ngx_http_api_key_offline,
                    &ngx_http_api_key_offline_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_api_key_limits_log = cycle->log;
}


/*
 * NGX_OK: admitted (both limits consumed); NGX_DECLINED: *status says which
 * limit denies; NGX_AGAIN: the request waits for a quota lease.
 */

ngx_int_t
ngx_http_api_key_limits(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ak_record_t *rec, uint32_t slot, ngx_http_api_key_status_e *status)
{
    int                       rate_ok;
    int64_t                   now, start, end;
    uint32_t                  window;
    uint64_t                  tat, used, left, now_us;
    ngx_int_t                 rc;
    ngx_uint_t                quota, need_lease, prefetch;
    ak_key_state_t           *st;
    ak_rate_result_t          rr;
    ngx_http_api_key_zone_t  *zone;

    zone = alcf->zone;
    now = (int64_t) ngx_time();
    quota = (rec->quota_period != AK_PERIOD_NONE);
    start = end = 0;
    window = 0;

    if (quota) {
        if (ak_quota_window(rec->quota_period, now, &start, &end) != 0) {
            *status = NGX_HTTP_API_KEY_BAD_RECORD;
            return NGX_DECLINED;
        }

        window = (uint32_t) (start / 3600);
    }

    rate_ok = 1;
    need_lease = 0;
    prefetch = 0;
    used = 0;
    left = 0;

    ngx_memzero(&rr, sizeof(ak_rate_result_t));

    /*
     * The limiter needs a clock finer than ngx_current_msec: that is
     * milliseconds, and the same for every request of one event loop
     * iteration, which would cap any rate at about one request per
     * millisecond.  CLOCK_MONOTONIC is the same in every worker.
     */
    now_us = (rec->rate_period != AK_PERIOD_NONE)
             ? ngx_http_api_key_monotonic_us() : 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    st = ak_cache_state(zone->sh->cache, slot, ctx->hash);

    if (st == NULL) {
        /* the entry went away since the lookup: nothing to count on */
        ngx_shmtx_unlock(&zone->shpool->mutex);
        *status = NGX_HTTP_API_KEY_OK;
        return NGX_OK;
    }

    tat = st->tat_us;

    if (rec->rate_period != AK_PERIOD_NONE) {
        rate_ok = ak_gcra(&tat, now_us,
                          rec->rate_interval_us, rec->burst, &rr);
    }

    if (rate_ok && quota) {
        if (st->q_window != window) {
            st->q_window = window;
            st->q_left = 0;
            st->q_used = 0;
        }

        if (st->q_left == 0) {
            need_lease = (st->q_used < rec->quota_n);
            used = st->q_used;
        }
    }

    if (rate_ok && (!quota || st->q_left > 0)) {
        st->tat_us = tat;

        if (quota) {
            st->q_left--;
            used = st->q_used;
            left = st->q_left;

            prefetch = (st->q_used < rec->quota_n
                        && st->q_left < zone->quota_lease / 4 + 1);
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (rec->rate_period != AK_PERIOD_NONE) {
            ctx->rate_remaining = rr.remaining;
        }

        if (quota) {
            ctx->quota_remaining = (used - left < rec->quota_n)
                                   ? (ngx_int_t) (rec->quota_n - used + left)
                                   : 0;

            if (prefetch) {
                (void) ngx_http_api_key_lease_start(NULL, zone, ctx->hash,
                                                    slot, rec, start, end,
                                                    used);
            }
        }

        *status = NGX_HTTP_API_KEY_OK;
        return NGX_OK;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!rate_ok) {
        ctx->rate_remaining = 0;
        ctx->rate_n = rec->rate_n;
        ctx->rate_window = (rec->rate_period == AK_PERIOD_SECOND) ? 1
                           : (rec->rate_period == AK_PERIOD_MINUTE) ? 60
                           : 3600;
        ctx->rate_burst = rec->burst;
        ctx->retry_after = (rr.retry_after_us + 999999) / 1000000;
        ctx->reset = (rr.reset_us + 999999) / 1000000;

        *status = NGX_HTTP_API_KEY_RATE_LIMITED;
        return NGX_DECLINED;
    }

    if (need_lease && ctx->quota_tries < 2) {
        ctx->quota_tries++;

        rc = ngx_http_api_key_lease_start(ctx, zone, ctx->hash, slot, rec,
                                          start, end, used);
        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        /* Redis cannot be asked now: an offline grant may have been made */
        return ngx_http_api_key_limits(r, alcf, ctx, rec, slot, status);
    }

    ctx->quota_remaining = 0;
    ctx->retry_after = (end > now) ? (ngx_uint_t) (end - now) : 1;

    *status = NGX_HTTP_API_KEY_QUOTA_EXCEEDED;
    return NGX_DECLINED;
}


/*
 * Asks Redis for counts (ctx, if any, waits for the answer).  NGX_AGAIN:
 * ctx waits; NGX_OK: a lease is on its way, nobody waits; NGX_DECLINED:
 * Redis could not be asked, an offline grant was tried instead.
 */

static ngx_int_t
ngx_http_api_key_lease_start(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, u_char *hash, uint32_t slot,
    ak_record_t *rec, int64_t start, int64_t end, uint64_t used)
{
    u_char                          *p;
    uint32_t                         window;
    uint64_t                         want, rest;
    ngx_rbtree_node_t               *node;
    ngx_http_api_key_lease_t        *lease;
    ngx_http_api_key_offline_t      *off;
    ngx_http_api_key_redis_conf_t   *conf;
    const char                      *argv[8];
    size_t                           argvlen[8];
    u_char                           nums[4][NGX_INT64_LEN];

    window = (uint32_t) (start / 3600);

    node = ngx_http_api_key_tree_find(&ngx_http_api_key_leases, zone, hash,
                                   offsetof(ngx_http_api_key_lease_t, hash),
                                   offsetof(ngx_http_api_key_lease_t, zone));
    if (node) {
        lease = (ngx_http_api_key_lease_t *) node;

        if (ctx == NULL) {
            return NGX_OK;
        }

        ngx_queue_insert_tail(&lease->waiters, &ctx->wait);
        ctx->waiting = lease;

        return NGX_AGAIN;
    }

    conf = ngx_http_api_key_redis_conf();

    if (!ngx_http_api_key_redis_ready() || conf->prefix.len > 256) {
        ngx_http_api_key_offline_grant(zone, hash, slot, window);
        return NGX_DECLINED;
    }

    lease = ngx_calloc(sizeof(ngx_http_api_key_lease_t),
                       ngx_http_api_key_limits_log);
    if (lease == NULL) {
        return NGX_DECLINED;
    }

    ngx_memcpy(lease->hash, hash, AK_HASH_LEN);
    lease->zone = zone;
    lease->slot = slot;
    lease->window = window;
    ngx_queue_init(&lease->waiters);

    /* {prefix}usage:{hex}:{period}:{window start} */

    p = ngx_cpymem(lease->name, conf->prefix.data, conf->prefix.len);
    p = ngx_cpymem(p, "usage:", sizeof("usage:") - 1);
    ak_hex_encode(hash, AK_HASH_LEN, (char *) p);
    p += AK_HASH_HEX_LEN;
    p = ngx_sprintf(p, ":%s:%L",
                    ngx_http_api_key_period_names[rec->quota_period],
                    start);
    lease->name_len = p - lease->name;

    /* smaller leases as the quota runs out, so few counts sit unused */

    rest = (used < rec->quota_n) ? rec->quota_n - used : 1;
    want = rest / 4;

    if (want > zone->quota_lease) {
        want = zone->quota_lease;
    }

    if (want == 0) {
        want = 1;
    }

    /* counts admitted offline are added to the counter first */

    node = ngx_http_api_key_tree_find(&ngx_http_api_key_offline, zone, hash,
                                 offsetof(ngx_http_api_key_offline_t, hash),
                                 offsetof(ngx_http_api_key_offline_t, zone));
    if (node) {
        off = (ngx_http_api_key_offline_t *) node;

        if (off->window == window) {
            lease->debt = off->debt;
            off->debt = 0;
        }
    }

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_api_key_lease_script;
    argvlen[1] = sizeof(ngx_http_api_key_lease_script) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) lease->name;
    argvlen[3] = lease->name_len;
    argv[4] = (const char *) nums[0];
    argvlen[4] = ngx_sprintf(nums[0], "%uL", rec->quota_n) - nums[0];
    argv[5] = (const char *) nums[1];
    argvlen[5] = ngx_sprintf(nums[1], "%uL", want) - nums[1];
    argv[6] = (const char *) nums[2];
    argvlen[6] = ngx_sprintf(nums[2], "%L", end + 3600) - nums[2];
    argv[7] = (const char *) nums[3];
    argvlen[7] = ngx_sprintf(nums[3], "%uL", lease->debt) - nums[3];

    if (ngx_http_api_key_redis_command(ngx_http_api_key_lease_reply, lease,
                                       8, argv, argvlen)
        != NGX_OK)
    {
        if (lease->debt && node) {
            ((ngx_http_api_key_offline_t *) node)->debt += lease->debt;
        }

        ngx_free(lease);
        ngx_http_api_key_offline_grant(zone, hash, slot, window);
        return NGX_DECLINED;
    }

    ngx_memcpy(&lease->node.key, lease->hash, sizeof(ngx_rbtree_key_t));
    ngx_rbtree_insert(&ngx_http_api_key_leases, &lease->node);

    lease->timer.handler = ngx_http_api_key_lease_timeout;
    lease->timer.data = lease;
    lease->timer.log = ngx_http_api_key_limits_log;
    ngx_add_timer(&lease->timer, conf->timeout);

    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_queue_insert_tail(&lease->waiters, &ctx->wait);
    ctx->waiting = lease;

    return NGX_AGAIN;
}


static void
ngx_http_api_key_lease_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    uint64_t                     grant, used;
    ngx_uint_t                   applied, failed;
    redisReply                  *reply = r;
    ak_key_state_t              *st;
    ngx_rbtree_node_t           *node;
    ngx_http_api_key_lease_t    *lease = privdata;
    ngx_http_api_key_offline_t  *off;
    const char                  *argv[3];
    size_t                       argvlen[3];
    u_char                       num[NGX_INT64_LEN];

    applied = 0;
    failed = 1;
    grant = 0;
    used = 0;

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->type == REDIS_REPLY_INTEGER
        && reply->element[0]->integer >= 0
        && reply->element[1]->integer >= 0)
    {
        failed = 0;
        grant = (uint64_t) reply->element[0]->integer;
        used = (uint64_t) reply->element[1]->integer;

        ngx_shmtx_lock(&lease->zone->shpool->mutex);

        st = ak_cache_state(lease->zone->sh->cache, lease->slot, lease->hash);

        if (st && st->q_window == lease->window) {
            st->q_left += (uint32_t) grant;

            if (used > st->q_used) {
                st->q_used = used;
            }

            applied = 1;
        }

        ngx_shmtx_unlock(&lease->zone->shpool->mutex);

    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_limits_log, 0,
                      "api_key: quota lease failed: %*s",
                      (size_t) reply->len, reply->str);
    }

    if (!failed && !applied && grant > 0) {
        /* the entry or the window went away: give the counts back */

        argv[0] = "DECRBY";
        argvlen[0] = 6;
        argv[1] = (const char *) lease->name;
        argvlen[1] = lease->name_len;
        argv[2] = (const char *) num;
        argvlen[2] = ngx_sprintf(num, "%uL", grant) - num;

        (void) ngx_http_api_key_redis_command(NULL, NULL, 3, argv, argvlen);
    }

    if (failed) {
        /*
         * No answer (the connection went down) or an error: the offline
         * counts this lease carried are reported with the next one, also
         * after a timeout.  Should the script have run and only its answer
         * been lost, they are counted twice: for a quota, the safe side.
         */

        node = ngx_http_api_key_tree_find(&ngx_http_api_key_offline,
                                 lease->zone, lease->hash,
                                 offsetof(ngx_http_api_key_offline_t, hash),
                                 offsetof(ngx_http_api_key_offline_t, zone));
        if (node && lease->debt) {
            off = (ngx_http_api_key_offline_t *) node;

            if (off->window == lease->window) {
                off->debt += lease->debt;
            }
        }

        if (!lease->done) {
            /* before the timeout: the waiters may count locally now */
            ngx_http_api_key_offline_grant(lease->zone, lease->hash,
                                           lease->slot, lease->window);
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

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "api_key: quota lease timed out, counting locally");

    ngx_http_api_key_offline_grant(lease->zone, lease->hash, lease->slot,
                                   lease->window);

    /* the hiredis callback still comes, and frees the lease */
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

    ngx_http_api_key_wake_all(&lease->waiters, NGX_HTTP_API_KEY_LOOKUP_PENDING);
}


/*
 * Redis cannot count: this worker may admit up to quota_offline counts of
 * the key in this window on its own, added to Redis with the next lease.
 */

static void
ngx_http_api_key_offline_grant(ngx_http_api_key_zone_t *zone, u_char *hash,
    uint32_t slot, uint32_t window)
{
    uint64_t                     block;
    ak_key_state_t              *st;
    ngx_rbtree_node_t           *node;
    ngx_http_api_key_offline_t  *off;

    if (zone->quota_offline == 0) {
        return;
    }

    node = ngx_http_api_key_tree_find(&ngx_http_api_key_offline, zone, hash,
                                 offsetof(ngx_http_api_key_offline_t, hash),
                                 offsetof(ngx_http_api_key_offline_t, zone));

    if (node == NULL) {
        off = ngx_calloc(sizeof(ngx_http_api_key_offline_t),
                         ngx_http_api_key_limits_log);
        if (off == NULL) {
            return;
        }

        ngx_memcpy(off->hash, hash, AK_HASH_LEN);
        off->zone = zone;
        off->window = window;

        ngx_memcpy(&off->node.key, hash, sizeof(ngx_rbtree_key_t));
        ngx_rbtree_insert(&ngx_http_api_key_offline, &off->node);

    } else {
        off = (ngx_http_api_key_offline_t *) node;
    }

    if (off->window != window) {
        off->window = window;
        off->used = 0;
        off->debt = 0;
    }

    if (off->used >= zone->quota_offline) {
        return;
    }

    block = zone->quota_offline - off->used;

    ngx_shmtx_lock(&zone->shpool->mutex);

    st = ak_cache_state(zone->sh->cache, slot, hash);

    if (st && st->q_window == window) {
        st->q_left += (uint32_t) block;
        off->used += block;
        off->debt += block;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static uint64_t
ngx_http_api_key_monotonic_us(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return (uint64_t) ngx_current_msec * 1000;
    }

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}
