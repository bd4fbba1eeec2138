/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the coalesced record reads.
 *
 * A key that is not cached (or stale) is read from Redis: one HGETALL per
 * key and zone in a worker at a time, however many requests wait for it
 * (the in-flight tree, keyed by the hash).  Its answer becomes a record
 * (built by the core), a negative or a bad entry in the zone's cache, and
 * the outcome its waiters wake with (wait.c).  A read that is not answered
 * within "timeout" wakes them with an error; its late answer still fills
 * the cache.  Error answers are logged once until a read succeeds again.
 *
 * A read that gets no answer because its connection went (a failover: the
 * master was killed, or the sentinels moved the connection), or that is
 * answered with a failover error (LOADING, MASTERDOWN...), is sent once
 * more when the commands connection is up again, if that happens within
 * its timeout: an HGETALL is safe to repeat.  The waiters wait meanwhile.
 */


#include "ngx_http_api_key_redis.h"


/* an error answer (or a run of them) ends after this long without one */
#define NGX_HTTP_API_KEY_QUIET         1000


typedef struct {
    ngx_rbtree_node_t               node;
    u_char                          hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t        *zone;
    ngx_http_api_key_wait_t         wait;
    ngx_event_t                     timer;
    uint64_t                        seq;
    ngx_uint_t                      sent_us;
    ngx_queue_t                     retry_link; /* in the retry queue */
    unsigned                        done:1;     /* waiters were woken */
    unsigned                        retried:1;  /* sent a second time */
    unsigned                        retrying:1; /* in the retry queue */
} ngx_http_api_key_lookup_t;


static void ngx_http_api_key_lookup_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *r, void *privdata);
static ngx_http_api_key_lookup_e ngx_http_api_key_lookup_store(
    ngx_http_api_key_lookup_t *lk, redisReply *reply);
static void ngx_http_api_key_lookup_timeout(ngx_event_t *ev);
static void ngx_http_api_key_lookup_finish(ngx_http_api_key_lookup_t *lk,
    ngx_http_api_key_lookup_e result);
static void ngx_http_api_key_id_of(u_char *hash, char *id);
static ngx_uint_t ngx_http_api_key_lookup_bad(ngx_http_api_key_lookup_t *lk,
    redisReply *reply);
static uint64_t ngx_http_api_key_reply_version(redisReply *reply);
static ngx_uint_t ngx_http_api_key_bad_log(u_char *hash, uint64_t version,
    int seen);
static void ngx_http_api_key_bad_forget(u_char *hash);
static ngx_uint_t ngx_http_api_key_now_us(void);
static ngx_int_t ngx_http_api_key_lookup_send(ngx_http_api_key_lookup_t *lk);
static ngx_uint_t ngx_http_api_key_lookup_retry(ngx_http_api_key_lookup_t *lk,
    redisReply *r);
static void ngx_http_api_key_lookup_resend(void);


/*
 * The bad records this worker logged last, by hash: a version is logged
 * once while its cached answer (a negative entry: evictable, see
 * ngx_http_api_key_bad_log) stays in the zone, and by this worker not again
 * while it is here.
 */
#define NGX_HTTP_API_KEY_BAD_LOGGED    64

typedef struct {
    uint64_t                        hash;       /* its first 8 bytes */
    uint64_t                        version;
} ngx_http_api_key_bad_logged_t;


static ngx_http_api_key_bad_logged_t
    ngx_http_api_key_bad_logged[NGX_HTTP_API_KEY_BAD_LOGGED];
static ngx_rbtree_t                    ngx_http_api_key_inflight;
static ngx_rbtree_node_t               ngx_http_api_key_inflight_sentinel;
static ngx_log_t                      *ngx_http_api_key_lookup_log;
static ngx_http_api_key_redis_conf_t  *ngx_http_api_key_lookup_conf;
static ngx_uint_t                      ngx_http_api_key_read_errors;
static ngx_queue_t                     ngx_http_api_key_retries;
static ngx_msec_t                      ngx_http_api_key_read_errors_last;


void
ngx_http_api_key_lookup_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_redis_conf_t *conf)
{
    ngx_rbtree_init(&ngx_http_api_key_inflight,
                    &ngx_http_api_key_inflight_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_api_key_lookup_log = cycle->log;
    ngx_http_api_key_lookup_conf = conf;
    ngx_queue_init(&ngx_http_api_key_retries);

    ngx_http_api_key_redis_on_ready(NGX_HTTP_API_KEY_CONN_COMMANDS,
                                    ngx_http_api_key_lookup_resend);
    ngx_http_api_key_read_errors = 0;
    ngx_http_api_key_read_errors_last = 0;

    ngx_memzero(ngx_http_api_key_bad_logged,
                sizeof(ngx_http_api_key_bad_logged));
}


/*
 * Starts (or joins) the read of ctx->hash.  NGX_AGAIN: the request waits
 * and is woken by ngx_http_api_key_wait_wake(); NGX_ERROR: Redis cannot be
 * asked now (not connected, too many commands waiting), answer without it;
 * NGX_DECLINED: the same, after Redis refused the module's credentials or
 * commands (an authorization error: never "unchecked").
 */

ngx_int_t
ngx_http_api_key_lookup_read(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, uint64_t seq)
{
    ngx_int_t                        rc;
    ngx_http_api_key_lookup_t       *lk;
    ngx_http_api_key_redis_conf_t   *conf;

    conf = ngx_http_api_key_lookup_conf;

    lk = (ngx_http_api_key_lookup_t *) ngx_http_api_key_tree_find(
                                 &ngx_http_api_key_inflight, zone, ctx->hash,
                                 offsetof(ngx_http_api_key_lookup_t, hash),
                                 offsetof(ngx_http_api_key_lookup_t, zone));

    if (lk == NULL) {

        rc = ngx_http_api_key_redis_read_admit();

        if (rc != NGX_OK) {
            return rc;
        }

        lk = ngx_calloc(sizeof(ngx_http_api_key_lookup_t),
                        ngx_http_api_key_lookup_log);
        if (lk == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(lk->hash, ctx->hash, AK_HASH_LEN);
        lk->zone = zone;
        lk->seq = seq;
        ngx_http_api_key_wait_init(&lk->wait, NGX_HTTP_API_KEY_WAIT_READ,
                                   ngx_http_api_key_lookup_log);

        if (ngx_http_api_key_lookup_send(lk) != NGX_OK) {
            ngx_free(lk);
            return NGX_ERROR;
        }

        ngx_memcpy(&lk->node.key, lk->hash, sizeof(ngx_rbtree_key_t));
        ngx_rbtree_insert(&ngx_http_api_key_inflight, &lk->node);

        lk->timer.handler = ngx_http_api_key_lookup_timeout;
        lk->timer.data = lk;
        lk->timer.log = ngx_http_api_key_lookup_log;
        ngx_add_timer(&lk->timer, conf->timeout);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                       "api_key: read started, hash %08xD",
                       ngx_http_api_key_hash_prefix(ctx->hash));

    } else {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                       "api_key: read joined, hash %08xD",
                       ngx_http_api_key_hash_prefix(ctx->hash));
    }

    ngx_http_api_key_wait_join(&lk->wait, ctx);

    return NGX_AGAIN;
}


/* HGETALL {prefix}{hex} (the prefix's length is checked at configuration) */

static ngx_int_t
ngx_http_api_key_lookup_send(ngx_http_api_key_lookup_t *lk)
{
    size_t                          len;
    ngx_http_api_key_redis_conf_t  *conf;
    const char                     *argv[2];
    size_t                          argvlen[2];
    char                            name[AK_REDIS_NAME_MAX];

    conf = ngx_http_api_key_lookup_conf;

    len = ak_redis_name_record((const char *) conf->prefix.data,
                               conf->prefix.len, lk->hash, name,
                               sizeof(name));
    if (len == 0) {
        return NGX_ERROR;
    }

    argv[0] = "HGETALL";
    argvlen[0] = 7;
    argv[1] = name;
    argvlen[1] = len;

    if (ngx_http_api_key_redis_send(ngx_http_api_key_lookup_reply, lk,
                                    1, 2, argv, argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    lk->sent_us = ngx_http_api_key_now_us();

    return NGX_OK;
}


/*
 * No answer (the connection went) or a failover error, for a read whose
 * waiters still wait and that was sent once: 1, it waits in the retry
 * queue for the commands connection (or its timeout).
 */

static ngx_uint_t
ngx_http_api_key_lookup_retry(ngx_http_api_key_lookup_t *lk, redisReply *r)
{
    /*
     * (on a cluster, a read lost with its node was sent once more by
     * cluster.c already, and its connections' "ready" comes once only:
     * a read parked here would wait for its timeout)
     */

    if (lk->done || lk->retried || ngx_terminate || ngx_exiting
        || (r && !ngx_http_api_key_redis_failover_error(r))
        || (r == NULL && ngx_http_api_key_lookup_conf->cluster))
    {
        return 0;
    }

    lk->retried = 1;
    lk->retrying = 1;
    ngx_queue_insert_tail(&ngx_http_api_key_retries, &lk->retry_link);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_lookup_log, 0,
                   "api_key: read to be sent again, hash %08xD",
                   ngx_http_api_key_hash_prefix(lk->hash));

    /* (a failover error on a connection that stays: now) */

    if (r && ngx_http_api_key_redis_read_admit() == NGX_OK) {
        ngx_http_api_key_lookup_resend();
    }

    return 1;
}


/* the commands connection is up (again): the reads to retry are sent */

static void
ngx_http_api_key_lookup_resend(void)
{
    ngx_queue_t                *q;
    ngx_http_api_key_lookup_t  *lk;

    while (!ngx_queue_empty(&ngx_http_api_key_retries)) {
        q = ngx_queue_head(&ngx_http_api_key_retries);
        lk = ngx_queue_data(q, ngx_http_api_key_lookup_t, retry_link);

        ngx_queue_remove(q);
        lk->retrying = 0;

        if (ngx_http_api_key_lookup_send(lk) == NGX_OK) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_lookup_log, 0,
                           "api_key: read sent again, hash %08xD",
                           ngx_http_api_key_hash_prefix(lk->hash));
            continue;
        }

        ngx_http_api_key_lookup_finish(lk, NGX_HTTP_API_KEY_LOOKUP_ERROR);
        ngx_free(lk);
    }
}


static void
ngx_http_api_key_lookup_reply(ngx_http_api_key_redis_io_t *io, redisReply *r,
    void *privdata)
{
    ngx_http_api_key_lookup_e   result;
    ngx_http_api_key_lookup_t  *lk = privdata;

    if (ngx_http_api_key_lookup_retry(lk, r)) {
        if (r) {
            ngx_http_api_key_count(&lk->zone->sh->redis_errors);
        }

        return;
    }

    if (r) {
        ngx_http_api_key_observe_latency(lk->zone,
                                  ngx_http_api_key_now_us() - lk->sent_us);
    }

    result = ngx_http_api_key_lookup_store(lk, r);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_lookup_log, 0,
                   "api_key: read answered: %s%s, hash %08xD",
                   ngx_http_api_key_lookup_name(result),
                   lk->done ? " (after its timeout)" : "",
                   ngx_http_api_key_hash_prefix(lk->hash));

    if (result == NGX_HTTP_API_KEY_LOOKUP_ERROR
        || result == NGX_HTTP_API_KEY_LOOKUP_DENIED)
    {
        ngx_http_api_key_count(&lk->zone->sh->redis_errors);
    }

    if (!lk->done) {
        ngx_http_api_key_lookup_finish(lk, result);
    }

    ngx_free(lk);
}


/* turns the answer into a cache entry and the waiters' outcome */

static ngx_http_api_key_lookup_e
ngx_http_api_key_lookup_store(ngx_http_api_key_lookup_t *lk,
    redisReply *reply)
{
    int                        len, rc, shape;
    size_t                     n;
    ak_str_t                  *fields, *values;
    ngx_log_t                 *log;
    ngx_uint_t                 denied;
    ngx_slab_pool_t           *shpool;
    ak_record_err_t            err;
    char                       id[AK_ID_DEFAULT_LEN + 1];
    ak_str_t                   fbuf[32], vbuf[32];
    static u_char              blob[AK_RECORD_MAX];

    log = ngx_http_api_key_lookup_log;
    shpool = lk->zone->shpool;

    if (reply == NULL) {
        /* the connection went down */
        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        if (reply->len >= 9 && ngx_strncmp(reply->str, "WRONGTYPE", 9) == 0) {

            /* the record's fault, not Redis's: a bad record */

            if (ngx_http_api_key_lookup_bad(lk, reply)) {
                ngx_http_api_key_id_of(lk->hash, id);
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "api_key: record of key id \"%s\" is not a "
                              "hash, the key is denied", id);
            }

            return NGX_HTTP_API_KEY_LOOKUP_BAD;
        }

        denied = ngx_http_api_key_redis_auth_error(reply);

        /* once until a read succeeds again; the others are counted */

        ngx_http_api_key_read_errors_last = ngx_current_msec;

        if (ngx_http_api_key_read_errors++ == 0) {
            ngx_http_api_key_id_of(lk->hash, id);
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "api_key: redis answered the read of key id "
                          "\"%s\" with an error: %*s%s; until a read "
                          "succeeds, further error answers are counted, not "
                          "logged", id,
                          ngx_http_api_key_error_len((u_char *) reply->str,
                                                     reply->len),
                          reply->str,
                          denied ? " (an authorization error: keys not "
                                   "cached are answered \"unavailable\", "
                                   "also under api_key_fail open)"
                                 : "");
        }

        if (denied) {
            ngx_http_api_key_redis_set_denied(1);
            return NGX_HTTP_API_KEY_LOOKUP_DENIED;
        }

        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    /* the answer's field/value pairs (the core's ak_hgetall_fields) */

    fields = fbuf;
    values = vbuf;

    shape = ak_hgetall_fields(reply, fields, values, 32, &n);

    if (shape == AK_HGETALL_NOT_PAIRS) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "api_key: unexpected redis reply to HGETALL");
        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (ngx_http_api_key_read_errors
        && ngx_current_msec - ngx_http_api_key_read_errors_last
           >= NGX_HTTP_API_KEY_QUIET)
    {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "api_key: redis reads succeed again, after %ui error "
                      "answers", ngx_http_api_key_read_errors);
        ngx_http_api_key_read_errors = 0;
    }

    ngx_http_api_key_redis_set_denied(0);

    if (shape == AK_HGETALL_EMPTY) {
        ngx_http_api_key_bad_forget(lk->hash);

        ngx_shmtx_lock(&shpool->mutex);
        (void) ak_cache_put_negative(lk->zone->sh->cache, lk->hash,
                                     (uint64_t) ngx_current_msec, lk->seq);
        ngx_shmtx_unlock(&shpool->mutex);

        return NGX_HTTP_API_KEY_LOOKUP_NOTFOUND;
    }

    if (shape == AK_HGETALL_TOO_MANY) {
        fields = ngx_alloc(2 * n * sizeof(ak_str_t), log);
        if (fields == NULL) {
            return NGX_HTTP_API_KEY_LOOKUP_ERROR;
        }

        values = fields + n;

        shape = ak_hgetall_fields(reply, fields, values, n, &n);
    }

    rc = (shape == AK_HGETALL_FIELDS) ? NGX_HTTP_API_KEY_LOOKUP_FOUND
                                      : NGX_HTTP_API_KEY_LOOKUP_ERROR;

    len = -1;

    if (rc == NGX_HTTP_API_KEY_LOOKUP_FOUND) {
        len = ak_record_build(lk->hash, fields, values, n, blob, sizeof(blob),
                              &err);
    }

    if (fields != fbuf) {
        ngx_free(fields);
    }

    if (rc != NGX_HTTP_API_KEY_LOOKUP_FOUND) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "api_key: unexpected redis reply to HGETALL");
        return rc;
    }

    if (len < 0) {
        if (ngx_http_api_key_lookup_bad(lk, reply)) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "api_key: record of key id \"%s\" is invalid: %s, "
                          "the key is denied", err.id, err.msg);
        }

        return NGX_HTTP_API_KEY_LOOKUP_BAD;
    }

    /*
     * The cache refuses a record only when its block was found inconsistent
     * twice (it is emptied each time): never for the record's size, as any
     * zone holds the largest record (ak_cache_min_size()).  Should it
     * happen, the record is denied like a malformed one, and cached so
     * (if the cache takes that): one read per negative_ttl and one line per
     * version of the record, not one of each per request.
     */

    ngx_shmtx_lock(&shpool->mutex);
    rc = ak_cache_put(lk->zone->sh->cache, lk->hash, blob, (size_t) len,
                      (uint64_t) ngx_current_msec, lk->seq);
    ngx_shmtx_unlock(&shpool->mutex);

    if (rc != 0) {
        if (ngx_http_api_key_lookup_bad(lk, reply)) {
            ngx_http_api_key_id_of(lk->hash, id);
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "api_key: record of key id \"%s\" could not be "
                          "stored in api_key_zone \"%V\", the key is denied",
                          id, &lk->zone->name);
        }

        return NGX_HTTP_API_KEY_LOOKUP_BAD;
    }

    ngx_http_api_key_bad_forget(lk->hash);

    return NGX_HTTP_API_KEY_LOOKUP_FOUND;
}


/* Redis did not answer within "timeout": the waiters go on without it */

static void
ngx_http_api_key_lookup_timeout(ngx_event_t *ev)
{
    char                        id[AK_ID_DEFAULT_LEN + 1];
    ngx_http_api_key_lookup_t  *lk = ev->data;

    ngx_http_api_key_id_of(lk->hash, id);

    if (ngx_http_api_key_redis_outage_timeout()) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "api_key: redis read of key id \"%s\" timed out "
                      "after %M ms; until redis answers again, further "
                      "timeouts are counted, not logged", id,
                      ngx_http_api_key_lookup_conf->timeout);

    } else {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "api_key: redis read of key id \"%s\" timed out",
                       id);
    }

    ngx_http_api_key_count(&lk->zone->sh->redis_timeouts);

    if (lk->retrying) {
        /* waiting to be sent again: no reply comes, nothing unanswered */
        ngx_queue_remove(&lk->retry_link);
        lk->retrying = 0;
        ngx_http_api_key_lookup_finish(lk, NGX_HTTP_API_KEY_LOOKUP_ERROR);
        ngx_free(lk);
        return;
    }

    /* the reply's callback still comes, and frees lk */
    ngx_http_api_key_lookup_finish(lk, NGX_HTTP_API_KEY_LOOKUP_ERROR);

    /* lk may be gone from here on */

    ngx_http_api_key_redis_unanswered();
}


static void
ngx_http_api_key_lookup_finish(ngx_http_api_key_lookup_t *lk,
    ngx_http_api_key_lookup_e result)
{
    lk->done = 1;

    if (lk->timer.timer_set) {
        ngx_del_timer(&lk->timer);
    }

    ngx_rbtree_delete(&ngx_http_api_key_inflight, &lk->node);

    lk->wait.result = result;
    ngx_http_api_key_wait_wake(&lk->wait);
}


/* the default public id: the first 12 hex digits of the hash */

static void
ngx_http_api_key_id_of(u_char *hash, char *id)
{
    ak_hex_encode(hash, AK_ID_DEFAULT_LEN / 2, id);
    id[AK_ID_DEFAULT_LEN] = '\0';
}


/*
 * The record is bad (not a hash, a malformed field, refused by the cache):
 * the answer is cached as bad for negative_ttl, under a version of its
 * content (hashed outside the lock: the answer may be large).  1: this
 * worker is to log it (once per version).
 */

static ngx_uint_t
ngx_http_api_key_lookup_bad(ngx_http_api_key_lookup_t *lk, redisReply *reply)
{
    int               seen;
    uint64_t          version;
    ngx_slab_pool_t  *shpool;

    shpool = lk->zone->shpool;
    version = ngx_http_api_key_reply_version(reply);

    ngx_shmtx_lock(&shpool->mutex);
    seen = ak_cache_put_bad(lk->zone->sh->cache, lk->hash,
                            (uint64_t) ngx_current_msec, lk->seq, version);
    ngx_shmtx_unlock(&shpool->mutex);

    return ngx_http_api_key_bad_log(lk->hash, version, seen);
}


/*
 * What identifies a record's content (FNV-1a over the answer's strings and
 * their lengths): a malformed record is logged once per version.
 */

static uint64_t
ngx_http_api_key_reply_version(redisReply *reply)
{
    size_t       i, j, n;
    uint64_t     h;
    redisReply  *e;

    h = 0xcbf29ce484222325ULL;
    n = (reply->type == REDIS_REPLY_ARRAY) ? reply->elements : 1;

    for (i = 0; i < n; i++) {
        e = (reply->type == REDIS_REPLY_ARRAY) ? reply->element[i] : reply;

        h = (h ^ (uint64_t) e->type) * 0x100000001b3ULL;
        h = (h ^ (uint64_t) e->len) * 0x100000001b3ULL;

        if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_ERROR
            || e->type == REDIS_REPLY_STATUS)
        {
            for (j = 0; j < (size_t) e->len; j++) {
                h = (h ^ (u_char) e->str[j]) * 0x100000001b3ULL;
            }
        }
    }

    return h;
}


/*
 * 1: log this version of a bad record.  Not when the zone had it cached
 * already (seen: another worker, or this one, logged it), nor when this
 * worker logged it lately: the cached answer is a negative entry, which
 * does not stay (evicted by a flood of unknown keys, not stored while
 * events arrive during its read or when the zone holds only live records),
 * and each read after it went would log it again.
 */

static ngx_uint_t
ngx_http_api_key_bad_log(u_char *hash, uint64_t version, int seen)
{
    uint64_t                        h;
    ngx_http_api_key_bad_logged_t  *e;

    ngx_memcpy(&h, hash, sizeof(uint64_t));

    e = &ngx_http_api_key_bad_logged[h % NGX_HTTP_API_KEY_BAD_LOGGED];

    if (seen == 1 || (e->hash == h && e->version == version)) {
        return 0;
    }

    e->hash = h;
    e->version = version;

    return 1;
}


/* the key's record is fine (or gone): a bad version later is news again */

static void
ngx_http_api_key_bad_forget(u_char *hash)
{
    uint64_t                        h;
    ngx_http_api_key_bad_logged_t  *e;

    ngx_memcpy(&h, hash, sizeof(uint64_t));

    e = &ngx_http_api_key_bad_logged[h % NGX_HTTP_API_KEY_BAD_LOGGED];

    if (e->hash == h) {
        ngx_memzero(e, sizeof(ngx_http_api_key_bad_logged_t));
    }
}


static ngx_uint_t
ngx_http_api_key_now_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_uint_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
