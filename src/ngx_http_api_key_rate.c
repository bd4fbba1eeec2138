/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: cluster-wide rates (rate_scope=cluster), the
 * token lease I/O.
 *
 * A key whose rate is counted across the nodes keeps its GCRA in Redis, in
 * {prefix}rate:{{prefix}{hash}} (one key: no CROSSSLOT on a cluster).  A
 * node never asks Redis per request: it leases tokens in batches (100 ms of
 * the rate, at least 1, at most 1000) with an atomic Lua script that runs
 * the GCRA on Redis's clock (TIME), and the workers spend them from the
 * key's state in the zone (limits.c, the core's ak_limits_admit_ex), on top
 * of the node's own GCRA.  The next batch is fetched in the background when
 * a quarter of the last one is left; a request that finds none waits for
 * the lease (at most NGX_HTTP_API_KEY_LEASE_WAITS_MAX times); when Redis
 * has no batch, it says when it will, and no lease is sent before.
 *
 * When Redis cannot be asked (down, not connected, or rate leases failing
 * and backing off: 200 ms doubling to 5 s, per worker) the rate falls back
 * to the per-node limiter (ngx_http_api_key_rate_usable() is 0); one
 * warning per outage, one notice when leases work again.
 *
 * The arithmetic (batch size, depth, the GCRA grant the script mirrors, the
 * spending) is the core's (limits.cpp); this file does the I/O.
 */


#include "ngx_http_api_key.h"

#include <ngx_sha1.h>


typedef struct {
    ngx_rbtree_node_t           node;
    u_char                      hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t    *zone;
    ngx_http_api_key_wait_t     wait;       /* requests waiting for it */
    ngx_event_t                 timer;
    uint64_t                    interval;   /* the script's arguments */
    uint64_t                    tau;
    uint64_t                    want;
    u_char                      name[AK_REDIS_NAME_MAX]; /* rate state */
    size_t                      name_len;
    u_char                      id[AK_ID_MAX_LEN];  /* key id, for logs */
    size_t                      id_len;
    unsigned                    done:1;     /* timed out (or answered) */
    unsigned                    reloaded:1; /* sent again after NOSCRIPT */
} ngx_http_api_key_rate_lease_t;


#define NGX_HTTP_API_KEY_RATE_BACKOFF_MIN    200     /* ms, doubled ... */
#define NGX_HTTP_API_KEY_RATE_BACKOFF_MAX    5000    /* ... up to */

#define NGX_HTTP_API_KEY_RATE_SCRIPT_UNKNOWN  0
#define NGX_HTTP_API_KEY_RATE_SCRIPT_LOADING  1
#define NGX_HTTP_API_KEY_RATE_SCRIPT_LOADED   2


/*
 * KEYS[1] the rate state (its TAT, microseconds of Redis's clock);
 * ARGV: interval, tau (the depth), want (all microseconds but want).
 * Returns {granted, microseconds until a whole batch conforms}: the
 * core's ak_gcra_grant.  A value that is not a number counts as 0 (a
 * full bucket).  The state expires once the bucket would be full again.
 */

static char  ngx_http_api_key_rate_script[] =
    "local k = KEYS[1] "
    "local T = tonumber(ARGV[1]) "
    "local tau = tonumber(ARGV[2]) "
    "local want = tonumber(ARGV[3]) "
    "local tm = redis.call('TIME') "
    "local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2]) "
    "local tat = tonumber(redis.call('GET', k) or '0') or 0 "
    "if tat < now then tat = now end "
    "local grant = 0 "
    "if tat - now <= tau then "
    "grant = math.floor((tau - (tat - now)) / T) + 1 "
    "if grant > want then grant = want end "
    "tat = tat + grant * T "
    "redis.call('SET', k, string.format('%.0f', tat), 'PX', "
    "math.floor((tat - now) / 1000) + 1) end "
    "local t2 = tat "
    "if t2 < now then t2 = now end "
    "local need = t2 - now + (want - 1) * T "
    "local retry = 0 "
    "if need > tau then retry = need - tau end "
    "return {grant, retry}";


static ngx_int_t ngx_http_api_key_rate_send(
    ngx_http_api_key_rate_lease_t *lease);
static void ngx_http_api_key_rate_reply(ngx_http_api_key_reply_t *reply,
    void *data);
static void ngx_http_api_key_rate_script_reply(
    ngx_http_api_key_reply_t *reply, void *data);
static void ngx_http_api_key_rate_timeout(ngx_event_t *ev);
static void ngx_http_api_key_rate_finish(ngx_http_api_key_rate_lease_t *lease);
static void ngx_http_api_key_rate_failed(ngx_http_api_key_rate_lease_t *lease,
    ngx_http_api_key_reply_t *reply);
static uint64_t ngx_http_api_key_rate_now_us(void);


static ngx_rbtree_t        ngx_http_api_key_rate_leases;
static ngx_rbtree_node_t   ngx_http_api_key_rate_sentinel;
static ngx_log_t          *ngx_http_api_key_rate_log;
static ngx_uint_t          ngx_http_api_key_rate_script_state;
static u_char              ngx_http_api_key_rate_script_sha[40];

/* this worker's backoff after failed rate leases */
static ngx_msec_t          ngx_http_api_key_rate_retry_at;
static ngx_msec_t          ngx_http_api_key_rate_backoff;
static ngx_uint_t          ngx_http_api_key_rate_failures;


void
ngx_http_api_key_rate_init_worker(ngx_cycle_t *cycle)
{
    u_char      digest[20];
    ngx_sha1_t  sha1;

    ngx_rbtree_init(&ngx_http_api_key_rate_leases,
                    &ngx_http_api_key_rate_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_api_key_rate_log = cycle->log;
    ngx_http_api_key_rate_failures = 0;
    ngx_http_api_key_rate_backoff = 0;
    ngx_http_api_key_rate_retry_at = 0;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, ngx_http_api_key_rate_script,
                    sizeof(ngx_http_api_key_rate_script) - 1);
    ngx_sha1_final(digest, &sha1);

    ngx_hex_dump(ngx_http_api_key_rate_script_sha, digest, sizeof(digest));

    ngx_http_api_key_rate_script_state = NGX_HTTP_API_KEY_RATE_SCRIPT_UNKNOWN;
}


/*
 * 1: tokens may be asked for now (Redis is connected, rate leases do not
 * back off); 0: cluster rates fall back to the per-node limiter.
 */

ngx_uint_t
ngx_http_api_key_rate_usable(void)
{
    if (!ngx_http_api_key_redis_ready()) {
        return 0;
    }

    if (ngx_http_api_key_rate_failures
        && (ngx_msec_int_t) (ngx_http_api_key_rate_retry_at
                             - ngx_current_msec) > 0)
    {
        return 0;
    }

    return 1;
}


/*
 * Asks Redis for a batch of the key's tokens (ctx, if any, waits for the
 * answer).  NGX_AGAIN: ctx waits; NGX_OK: a lease is on its way, nobody
 * waits; NGX_DECLINED: Redis could not be asked.
 */

ngx_int_t
ngx_http_api_key_rate_lease(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, u_char *hash, const ak_record_t *rec)
{
    uint32_t                         want;
    ngx_rbtree_node_t               *node;
    ngx_http_api_key_rate_lease_t   *lease;
    ngx_http_api_key_redis_conf_t   *conf;

    node = ngx_http_api_key_tree_find(&ngx_http_api_key_rate_leases, zone,
                            hash,
                            offsetof(ngx_http_api_key_rate_lease_t, hash),
                            offsetof(ngx_http_api_key_rate_lease_t, zone));
    if (node) {
        lease = (ngx_http_api_key_rate_lease_t *) node;

        if (ctx == NULL) {
            return NGX_OK;
        }

        ngx_http_api_key_wait_join(&lease->wait, ctx);

        return NGX_AGAIN;
    }

    conf = ngx_http_api_key_redis_conf();

    if (!ngx_http_api_key_rate_usable()
        || conf->prefix.len > AK_REDIS_PREFIX_MAX)
    {
        return NGX_DECLINED;
    }

    lease = ngx_calloc(sizeof(ngx_http_api_key_rate_lease_t),
                       ngx_http_api_key_rate_log);
    if (lease == NULL) {
        return NGX_DECLINED;
    }

    ngx_memcpy(lease->hash, hash, AK_HASH_LEN);
    lease->zone = zone;
    ngx_http_api_key_wait_init(&lease->wait, NGX_HTTP_API_KEY_WAIT_LEASE,
                               ngx_http_api_key_rate_log);

    lease->id_len = ngx_http_api_key_lease_id(rec, hash, lease->id);

    lease->name_len = ak_redis_name_rate((const char *) conf->prefix.data,
                                         conf->prefix.len, hash,
                                         (char *) lease->name,
                                         sizeof(lease->name));
    if (lease->name_len == 0) {
        ngx_free(lease);
        return NGX_DECLINED;
    }

    want = ak_rate_lease_want(rec->rate_interval_us);

    lease->interval = rec->rate_interval_us ? rec->rate_interval_us : 1;
    lease->want = want;
    lease->tau = ak_rate_lease_tau(rec->rate_interval_us, rec->burst, want);

    if (ngx_http_api_key_rate_send(lease) != NGX_OK) {
        ngx_free(lease);
        return NGX_DECLINED;
    }

    ngx_memcpy(&lease->node.key, lease->hash, sizeof(ngx_rbtree_key_t));
    ngx_rbtree_insert(&ngx_http_api_key_rate_leases, &lease->node);

    lease->timer.handler = ngx_http_api_key_rate_timeout;
    lease->timer.data = lease;
    lease->timer.log = ngx_http_api_key_rate_log;
    ngx_add_timer(&lease->timer, conf->timeout);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_rate_log, 0,
                   "api_key: rate lease sent, key id \"%*s\": want %uL%s",
                   lease->id_len, lease->id, lease->want,
                   ctx ? ", a request waits" : " (prefetch)");

    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_http_api_key_wait_join(&lease->wait, ctx);

    return NGX_AGAIN;
}


/* EVALSHA, preceded by SCRIPT LOAD when the script is not known loaded */

static ngx_int_t
ngx_http_api_key_rate_send(ngx_http_api_key_rate_lease_t *lease)
{
    const char                     *argv[7];
    size_t                          argvlen[7];
    u_char                          nums[3][NGX_INT64_LEN];
    ngx_http_api_key_redis_conf_t  *conf;

    conf = ngx_http_api_key_redis_conf();

    if (!(conf && conf->cluster)
        && ngx_http_api_key_rate_script_state
           == NGX_HTTP_API_KEY_RATE_SCRIPT_UNKNOWN)
    {
        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;
        argv[2] = ngx_http_api_key_rate_script;
        argvlen[2] = sizeof(ngx_http_api_key_rate_script) - 1;

        if (ngx_http_api_key_redis_command(
                ngx_http_api_key_rate_script_reply, NULL, -1, 3, argv,
                argvlen)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_http_api_key_rate_script_state =
            NGX_HTTP_API_KEY_RATE_SCRIPT_LOADING;
    }

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_http_api_key_rate_script_sha;
    argvlen[1] = sizeof(ngx_http_api_key_rate_script_sha);

    if (conf && conf->cluster) {
        /* each master has its own script cache: EVAL (cached by Redis) */
        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_http_api_key_rate_script;
        argvlen[1] = sizeof(ngx_http_api_key_rate_script) - 1;
    }

    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) lease->name;
    argvlen[3] = lease->name_len;
    argv[4] = (const char *) nums[0];
    argvlen[4] = ngx_sprintf(nums[0], "%uL", lease->interval) - nums[0];
    argv[5] = (const char *) nums[1];
    argvlen[5] = ngx_sprintf(nums[1], "%uL", lease->tau) - nums[1];
    argv[6] = (const char *) nums[2];
    argvlen[6] = ngx_sprintf(nums[2], "%uL", lease->want) - nums[2];

    /* KEYS[1], the rate state's name, routes it on a cluster */

    return ngx_http_api_key_redis_command(ngx_http_api_key_rate_reply, lease,
                                          3, 7, argv, argvlen);
}


static void
ngx_http_api_key_rate_script_reply(ngx_http_api_key_reply_t *reply,
    void *data)
{
    if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_STRING
        && reply->str.len == sizeof(ngx_http_api_key_rate_script_sha)
        && ngx_strncasecmp(reply->str.data, ngx_http_api_key_rate_script_sha,
                           sizeof(ngx_http_api_key_rate_script_sha))
           == 0)
    {
        if (ngx_http_api_key_rate_script_state
            == NGX_HTTP_API_KEY_RATE_SCRIPT_LOADING)
        {
            ngx_http_api_key_rate_script_state =
                NGX_HTTP_API_KEY_RATE_SCRIPT_LOADED;
        }

        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_rate_log, 0,
                   "api_key: SCRIPT LOAD of the rate script failed");

    ngx_http_api_key_rate_script_state = NGX_HTTP_API_KEY_RATE_SCRIPT_UNKNOWN;
}


static void
ngx_http_api_key_rate_reply(ngx_http_api_key_reply_t *reply, void *data)
{
    uint64_t                        grant, retry;
    ngx_uint_t                      failed;
    ak_key_state_t                 *st;
    ngx_http_api_key_rate_lease_t  *lease = data;

    if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_ERROR
        && reply->str.len >= 8
        && ngx_strncmp(reply->str.data, "NOSCRIPT", 8) == 0
        && !lease->reloaded && !lease->done)
    {
        /* Redis restarted or SCRIPT FLUSH: load it again, once per lease */

        lease->reloaded = 1;

        if (ngx_http_api_key_rate_script_state
            == NGX_HTTP_API_KEY_RATE_SCRIPT_LOADED)
        {
            ngx_http_api_key_rate_script_state =
                NGX_HTTP_API_KEY_RATE_SCRIPT_UNKNOWN;
        }

        if (ngx_http_api_key_rate_send(lease) == NGX_OK) {
            return;
        }
    }

    failed = 1;
    grant = 0;
    retry = 0;

    if (reply && reply->type == NGX_HTTP_API_KEY_REPLY_INTEGERS
        && reply->nints == 2 && reply->ints[0] >= 0 && reply->ints[1] >= 0
        && (uint64_t) reply->ints[0] <= lease->want)
    {
        failed = 0;
        grant = (uint64_t) reply->ints[0];
        retry = (uint64_t) reply->ints[1];

        /*
         * Tokens granted for an entry gone meanwhile are lost (not given
         * back): at most a batch, as if the node had used them.
         */

        ngx_shmtx_lock(&lease->zone->shpool->mutex);

        st = ak_cache_state_find(lease->zone->sh->cache, lease->hash, NULL);

        ak_rate_lease_apply(st, grant, retry,
                            ngx_http_api_key_rate_now_us());

        ngx_shmtx_unlock(&lease->zone->shpool->mutex);
    }

    ngx_log_debug6(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_rate_log, 0,
                   "api_key: rate lease answered: %s, key id \"%*s\": "
                   "granted %uL, next batch in %uL us%s",
                   failed ? (reply ? "failed" : "no answer") : "tokens",
                   lease->id_len, lease->id, grant, retry,
                   lease->done ? " (after its timeout)" : "");

    if (!failed) {
        if (ngx_http_api_key_rate_failures) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_rate_log, 0,
                          "api_key: rate leases work again (key id "
                          "\"%*s\"); %ui failed or timed out meanwhile",
                          lease->id_len, lease->id,
                          ngx_http_api_key_rate_failures);

            ngx_http_api_key_rate_failures = 0;
            ngx_http_api_key_rate_backoff = 0;
        }

    } else if (reply && !lease->done) {
        /* an error (or a malformed answer); a timeout was counted already */
        ngx_http_api_key_rate_failed(lease, reply);
    }

    if (!lease->done) {
        ngx_http_api_key_rate_finish(lease);
    }

    ngx_free(lease);
}


static void
ngx_http_api_key_rate_timeout(ngx_event_t *ev)
{
    ngx_http_api_key_rate_lease_t  *lease = ev->data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_rate_log, 0,
                   "api_key: rate lease timed out, key id \"%*s\"",
                   lease->id_len, lease->id);

    ngx_http_api_key_rate_failed(lease, NULL);

    /* the answer (or its absence) still comes, and frees the lease */
    ngx_http_api_key_rate_finish(lease);
}


static void
ngx_http_api_key_rate_finish(ngx_http_api_key_rate_lease_t *lease)
{
    lease->done = 1;

    if (lease->timer.timer_set) {
        ngx_del_timer(&lease->timer);
    }

    ngx_rbtree_delete(&ngx_http_api_key_rate_leases, &lease->node);

    /* the waiters look at their key's tokens again */
    ngx_http_api_key_wait_wake(&lease->wait);
}


/*
 * A rate lease failed: reply is Redis's error (or a malformed answer), NULL
 * a timeout.  The worker's rate leases back off; meanwhile cluster rates
 * are counted per node.  One line per outage, naming the key id, never
 * the key.
 */

static void
ngx_http_api_key_rate_failed(ngx_http_api_key_rate_lease_t *lease,
    ngx_http_api_key_reply_t *reply)
{
    size_t                          len;
    u_char                         *err;
    ngx_http_api_key_redis_conf_t  *conf;

    if (ngx_http_api_key_rate_failures == 0) {
        if (reply) {
            err = (u_char *) "malformed answer";
            len = sizeof("malformed answer") - 1;

            if (reply->type == NGX_HTTP_API_KEY_REPLY_ERROR
                && reply->str.data)
            {
                err = reply->str.data;
                len = ngx_http_api_key_error_len(err, reply->str.len);
            }

            ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_rate_log, 0,
                          "api_key: rate lease for key id \"%*s\" failed: "
                          "%*s; rate leases back off (up to %d ms), "
                          "cluster-wide rates are counted per node "
                          "meanwhile; logged once until leases work again",
                          lease->id_len, lease->id, len, err,
                          NGX_HTTP_API_KEY_RATE_BACKOFF_MAX);

        } else {
            conf = ngx_http_api_key_redis_conf();

            ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_rate_log, 0,
                          "api_key: rate lease for key id \"%*s\" timed out "
                          "after %M ms; rate leases back off (up to %d ms), "
                          "cluster-wide rates are counted per node "
                          "meanwhile; logged once until leases work again",
                          lease->id_len, lease->id, conf->timeout,
                          NGX_HTTP_API_KEY_RATE_BACKOFF_MAX);
        }
    }

    ngx_http_api_key_rate_failures++;

    ngx_http_api_key_rate_backoff =
        (ngx_http_api_key_rate_backoff == 0)
        ? NGX_HTTP_API_KEY_RATE_BACKOFF_MIN
        : ngx_min(ngx_http_api_key_rate_backoff * 2,
                  NGX_HTTP_API_KEY_RATE_BACKOFF_MAX);

    ngx_http_api_key_rate_retry_at = ngx_current_msec
                                     + ngx_http_api_key_rate_backoff;
}


/* the clock of limits.c's limiter: CLOCK_MONOTONIC, the same in every
 * worker */

static uint64_t
ngx_http_api_key_rate_now_us(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return (uint64_t) ngx_current_msec * 1000;
    }

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}
