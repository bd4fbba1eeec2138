
/*
 * ngx_http_api_key_module: Redis on nginx's event loop.
 *
 * Each worker keeps one hiredis async context for commands.  Its socket is
 * wrapped in an ngx_connection_t whose read/write events drive hiredis
 * (level-triggered); timeouts are nginx timers, since hiredis 0.14 has none.
 * hiredis owns and closes the socket: the cleanup hook only releases the
 * nginx connection.  Names are resolved at configuration time.
 *
 * Reads of the same key by concurrent requests of a worker are coalesced:
 * one HGETALL, every waiting request woken by its answer.
 */


#include "ngx_http_api_key.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_HTTP_API_KEY_BACKOFF_MIN   100
#define NGX_HTTP_API_KEY_BACKOFF_MAX   2000


typedef struct ngx_http_api_key_rconn_s  ngx_http_api_key_rconn_t;

struct ngx_http_api_key_rconn_s {
    const char                     *name;
    redisAsyncContext              *ac;
    ngx_connection_t               *c;
    ngx_http_api_key_redis_conf_t  *conf;
    ngx_log_t                      *log;
    ngx_event_t                     connect_timer;
    ngx_event_t                     reconnect_timer;
    ngx_msec_t                      backoff;
    ngx_uint_t                      pending_handshake;
    unsigned                        connected:1;
    unsigned                        failing:1;   /* an error was logged */
};


struct ngx_http_api_key_lookup_s {
    ngx_rbtree_node_t               node;
    u_char                          hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t        *zone;
    ngx_queue_t                     waiters;
    ngx_event_t                     timer;
    uint64_t                        seq;
    unsigned                        done:1;     /* waiters were woken */
};


static void ngx_http_api_key_rconn_connect(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_rconn_schedule(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_rconn_reconnect_handler(ngx_event_t *ev);
static void ngx_http_api_key_rconn_timeout_handler(ngx_event_t *ev);
static void ngx_http_api_key_rconn_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_api_key_rconn_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_api_key_rconn_handshake_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_api_key_ev_read(ngx_event_t *ev);
static void ngx_http_api_key_ev_write(ngx_event_t *ev);
static void ngx_http_api_key_add_read(void *data);
static void ngx_http_api_key_del_read(void *data);
static void ngx_http_api_key_add_write(void *data);
static void ngx_http_api_key_del_write(void *data);
static void ngx_http_api_key_cleanup_conn(void *data);

static ngx_http_api_key_lookup_t *ngx_http_api_key_lookup_find(
    ngx_http_api_key_zone_t *zone, u_char *hash);
static void ngx_http_api_key_lookup_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_uint_t ngx_http_api_key_lookup_store(ngx_http_api_key_lookup_t *lk,
    redisReply *reply);
static void ngx_http_api_key_lookup_timeout(ngx_event_t *ev);
static void ngx_http_api_key_lookup_finish(ngx_http_api_key_lookup_t *lk,
    ngx_uint_t result);
static void ngx_http_api_key_id_of(u_char *hash, char *id);


static ngx_http_api_key_rconn_t   ngx_http_api_key_cmd;
static ngx_rbtree_t               ngx_http_api_key_inflight;
static ngx_rbtree_node_t          ngx_http_api_key_inflight_sentinel;
static ngx_uint_t                 ngx_http_api_key_exiting;


ngx_int_t
ngx_http_api_key_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf)
{
    ngx_http_api_key_rconn_t  *rc;

    ngx_rbtree_init(&ngx_http_api_key_inflight,
                    &ngx_http_api_key_inflight_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_api_key_exiting = 0;

    rc = &ngx_http_api_key_cmd;
    ngx_memzero(rc, sizeof(ngx_http_api_key_rconn_t));

    rc->name = "commands";
    rc->conf = amcf->redis;
    rc->log = cycle->log;
    rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MIN;

    rc->connect_timer.handler = ngx_http_api_key_rconn_timeout_handler;
    rc->connect_timer.data = rc;
    rc->connect_timer.log = cycle->log;
    rc->connect_timer.cancelable = 1;

    rc->reconnect_timer.handler = ngx_http_api_key_rconn_reconnect_handler;
    rc->reconnect_timer.data = rc;
    rc->reconnect_timer.log = cycle->log;
    rc->reconnect_timer.cancelable = 1;

    ngx_http_api_key_rconn_connect(rc);

    return NGX_OK;
}


void
ngx_http_api_key_redis_exit_worker(ngx_cycle_t *cycle)
{
    redisAsyncContext         *ac;
    ngx_http_api_key_rconn_t  *rc;

    ngx_http_api_key_exiting = 1;

    rc = &ngx_http_api_key_cmd;

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    if (rc->reconnect_timer.timer_set) {
        ngx_del_timer(&rc->reconnect_timer);
    }

    if (rc->ac) {
        ac = rc->ac;
        rc->ac = NULL;
        redisAsyncFree(ac);     /* answers pending callbacks with NULL */
    }
}


/* ---- connections ---------------------------------------------------- */

static void
ngx_http_api_key_rconn_connect(ngx_http_api_key_rconn_t *rc)
{
    redisAsyncContext              *ac;
    ngx_connection_t               *c;
    ngx_http_api_key_redis_conf_t  *conf;

    conf = rc->conf;

    if (conf->path.len) {
        ac = redisAsyncConnectUnix((const char *) conf->path.data);

    } else {
        ac = redisAsyncConnect((const char *) conf->host.data,
                               (int) conf->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis %s connection to \"%V\": out of memory",
                      rc->name, &conf->url);
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    if (ac->err) {
        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" failed: %s",
                          rc->name, &conf->url, ac->errstr);
            rc->failing = 1;
        }

        redisAsyncFree(ac);
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    c = ngx_get_connection(ac->c.fd, rc->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    c->data = rc;
    c->read->handler = ngx_http_api_key_ev_read;
    c->write->handler = ngx_http_api_key_ev_write;
    c->read->log = rc->log;
    c->write->log = rc->log;

    rc->c = c;
    rc->ac = ac;
    rc->connected = 0;

    ac->data = rc;
    ac->ev.data = rc;
    ac->ev.addRead = ngx_http_api_key_add_read;
    ac->ev.delRead = ngx_http_api_key_del_read;
    ac->ev.addWrite = ngx_http_api_key_add_write;
    ac->ev.delWrite = ngx_http_api_key_del_write;
    ac->ev.cleanup = ngx_http_api_key_cleanup_conn;

    redisAsyncSetConnectCallback(ac, ngx_http_api_key_rconn_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_http_api_key_rconn_on_disconnect);

    /* AUTH and SELECT go first, pipelined ahead of any command */

    rc->pending_handshake = 0;

    if (conf->password.len) {
        if (conf->user.len) {
            (void) redisAsyncCommand(ac,
                                     ngx_http_api_key_rconn_handshake_reply,
                                     (void *) "AUTH", "AUTH %b %b",
                                     conf->user.data, conf->user.len,
                                     conf->password.data, conf->password.len);
        } else {
            (void) redisAsyncCommand(ac,
                                     ngx_http_api_key_rconn_handshake_reply,
                                     (void *) "AUTH", "AUTH %b",
                                     conf->password.data, conf->password.len);
        }

        rc->pending_handshake++;
    }

    if (conf->db) {
        (void) redisAsyncCommand(ac, ngx_http_api_key_rconn_handshake_reply,
                                 (void *) "SELECT", "SELECT %d",
                                 (int) conf->db);
        rc->pending_handshake++;
    }

    /* the write event tells when the non-blocking connect() is done */
    ngx_http_api_key_add_write(rc);

    ngx_add_timer(&rc->connect_timer, conf->connect_timeout);
}


static void
ngx_http_api_key_rconn_schedule(ngx_http_api_key_rconn_t *rc)
{
    if (ngx_http_api_key_exiting || ngx_exiting || ngx_terminate) {
        return;
    }

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    if (!rc->reconnect_timer.timer_set) {
        ngx_add_timer(&rc->reconnect_timer, rc->backoff);
    }

    rc->backoff *= 2;

    if (rc->backoff > NGX_HTTP_API_KEY_BACKOFF_MAX) {
        rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MAX;
    }
}


static void
ngx_http_api_key_rconn_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_api_key_rconn_t  *rc = ev->data;

    if (rc->ac == NULL) {
        ngx_http_api_key_rconn_connect(rc);
    }
}


/* connect_timeout: the socket never became connected */

static void
ngx_http_api_key_rconn_timeout_handler(ngx_event_t *ev)
{
    redisAsyncContext         *ac;
    ngx_http_api_key_rconn_t  *rc = ev->data;

    if (rc->ac == NULL || rc->connected) {
        return;
    }

    if (!rc->failing) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis %s connection to \"%V\" timed out",
                      rc->name, &rc->conf->url);
        rc->failing = 1;
    }

    ac = rc->ac;
    rc->ac = NULL;
    redisAsyncFree(ac);

    ngx_http_api_key_rconn_schedule(rc);
}


static void
ngx_http_api_key_rconn_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_api_key_rconn_t  *rc = ac->data;

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    if (status != REDIS_OK) {
        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" failed: %s",
                          rc->name, &rc->conf->url, ac->errstr);
            rc->failing = 1;
        }

        /* hiredis frees the context when this callback returns */
        rc->ac = NULL;
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    rc->connected = 1;

    if (rc->pending_handshake == 0) {
        if (rc->failing) {
            ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" is up",
                          rc->name, &rc->conf->url);
        }

        rc->failing = 0;
        rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MIN;
    }
}


static void
ngx_http_api_key_rconn_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_api_key_rconn_t  *rc = ac->data;

    rc->ac = NULL;
    rc->connected = 0;

    if (ngx_http_api_key_exiting) {
        return;
    }

    if (status != REDIS_OK && !rc->failing) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis %s connection to \"%V\" lost: %s",
                      rc->name, &rc->conf->url, ac->errstr);
        rc->failing = 1;
    }

    ngx_http_api_key_rconn_schedule(rc);
}


static void
ngx_http_api_key_rconn_handshake_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                *reply = r;
    ngx_http_api_key_rconn_t  *rc = ac->data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis %s connection to \"%V\": %s failed: %*s",
                      rc->name, &rc->conf->url, (char *) privdata,
                      (size_t) reply->len, reply->str);
        rc->failing = 1;

        /* every later command would fail the same way: start over */
        redisAsyncDisconnect(ac);
        return;
    }

    if (--rc->pending_handshake == 0) {
        if (rc->failing) {
            ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" is up",
                          rc->name, &rc->conf->url);
        }

        rc->failing = 0;
        rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MIN;
    }
}


/* ---- the hiredis event adapter -------------------------------------- */

static void
ngx_http_api_key_ev_read(ngx_event_t *ev)
{
    ngx_connection_t          *c = ev->data;
    ngx_http_api_key_rconn_t  *rc = c->data;

    if (rc->ac) {
        redisAsyncHandleRead(rc->ac);
    }
}


static void
ngx_http_api_key_ev_write(ngx_event_t *ev)
{
    ngx_connection_t          *c = ev->data;
    ngx_http_api_key_rconn_t  *rc = c->data;

    if (rc->ac) {
        redisAsyncHandleWrite(rc->ac);
    }
}


static void
ngx_http_api_key_add_read(void *data)
{
    ngx_http_api_key_rconn_t  *rc = data;

    if (rc->c && !rc->c->read->active) {
        if (ngx_add_event(rc->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                          "api_key: cannot add a redis read event");
        }
    }
}


static void
ngx_http_api_key_del_read(void *data)
{
    ngx_http_api_key_rconn_t  *rc = data;

    if (rc->c && rc->c->read->active) {
        (void) ngx_del_event(rc->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_api_key_add_write(void *data)
{
    ngx_http_api_key_rconn_t  *rc = data;

    if (rc->c && !rc->c->write->active) {
        if (ngx_add_event(rc->c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                          "api_key: cannot add a redis write event");
        }
    }
}


static void
ngx_http_api_key_del_write(void *data)
{
    ngx_http_api_key_rconn_t  *rc = data;

    if (rc->c && rc->c->write->active) {
        (void) ngx_del_event(rc->c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


/* hiredis is about to close the socket: release the nginx connection */

static void
ngx_http_api_key_cleanup_conn(void *data)
{
    ngx_connection_t          *c;
    ngx_http_api_key_rconn_t  *rc = data;

    c = rc->c;
    if (c == NULL) {
        return;
    }

    ngx_http_api_key_del_read(rc);
    ngx_http_api_key_del_write(rc);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    rc->c = NULL;
}


/* ---- lookups -------------------------------------------------------- */

/*
 * Starts (or joins) the read of ctx->hash.  NGX_AGAIN: the request waits
 * and is woken by ngx_http_api_key_wake(); NGX_ERROR: Redis cannot be asked
 * now (not connected), answer without it.
 */

ngx_int_t
ngx_http_api_key_redis_lookup(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, uint64_t seq)
{
    u_char                          *p;
    ngx_http_api_key_rconn_t        *rc;
    ngx_http_api_key_lookup_t       *lk;
    ngx_http_api_key_redis_conf_t   *conf;
    u_char                           name[256 + AK_HASH_HEX_LEN];

    rc = &ngx_http_api_key_cmd;
    conf = rc->conf;

    lk = ngx_http_api_key_lookup_find(zone, ctx->hash);

    if (lk == NULL) {

        if (rc->ac == NULL || conf->prefix.len > 256) {
            return NGX_ERROR;
        }

        lk = ngx_calloc(sizeof(ngx_http_api_key_lookup_t), rc->log);
        if (lk == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(lk->hash, ctx->hash, AK_HASH_LEN);
        lk->zone = zone;
        lk->seq = seq;
        ngx_queue_init(&lk->waiters);

        p = ngx_cpymem(name, conf->prefix.data, conf->prefix.len);
        ak_hex_encode(ctx->hash, AK_HASH_LEN, (char *) p);
        p += AK_HASH_HEX_LEN;

        if (redisAsyncCommand(rc->ac, ngx_http_api_key_lookup_reply, lk,
                              "HGETALL %b", name, (size_t) (p - name))
            != REDIS_OK)
        {
            ngx_free(lk);
            return NGX_ERROR;
        }

        ngx_memcpy(&lk->node.key, lk->hash, sizeof(ngx_rbtree_key_t));
        ngx_rbtree_insert(&ngx_http_api_key_inflight, &lk->node);

        lk->timer.handler = ngx_http_api_key_lookup_timeout;
        lk->timer.data = lk;
        lk->timer.log = rc->log;
        ngx_add_timer(&lk->timer, conf->timeout);
    }

    ngx_queue_insert_tail(&lk->waiters, &ctx->wait);
    ctx->lookup = lk;

    return NGX_AGAIN;
}


/* the request went away while waiting */

void
ngx_http_api_key_redis_cancel(ngx_http_api_key_ctx_t *ctx)
{
    ngx_queue_remove(&ctx->wait);
    ctx->lookup = NULL;
}


static ngx_http_api_key_lookup_t *
ngx_http_api_key_lookup_find(ngx_http_api_key_zone_t *zone, u_char *hash)
{
    ngx_rbtree_key_t            key;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_api_key_lookup_t  *lk;

    ngx_memcpy(&key, hash, sizeof(ngx_rbtree_key_t));

    node = ngx_http_api_key_inflight.root;
    sentinel = ngx_http_api_key_inflight.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        /* equal keys: the full hash decides; duplicates go right */

        lk = (ngx_http_api_key_lookup_t *) node;

        if (lk->zone == zone
            && ngx_memcmp(lk->hash, hash, AK_HASH_LEN) == 0)
        {
            return lk;
        }

        node = node->right;
    }

    return NULL;
}


static void
ngx_http_api_key_lookup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_uint_t                  result;
    ngx_http_api_key_lookup_t  *lk = privdata;

    result = ngx_http_api_key_lookup_store(lk, r);

    if (!lk->done) {
        ngx_http_api_key_lookup_finish(lk, result);
    }

    ngx_free(lk);
}


/* turns the answer into a cache entry and the waiters' outcome */

static ngx_uint_t
ngx_http_api_key_lookup_store(ngx_http_api_key_lookup_t *lk,
    redisReply *reply)
{
    int                        len, rc;
    size_t                     i, n;
    ak_str_t                  *fields, *values;
    ngx_log_t                 *log;
    ngx_slab_pool_t           *shpool;
    ak_record_err_t            err;
    char                       id[AK_ID_DEFAULT_LEN + 1];
    ak_str_t                   fbuf[32], vbuf[32];
    static u_char              blob[AK_RECORD_MAX];

    log = ngx_http_api_key_cmd.log;
    shpool = lk->zone->shpool;

    if (reply == NULL) {
        /* the connection went down */
        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        if (reply->len >= 9 && ngx_strncmp(reply->str, "WRONGTYPE", 9) == 0) {
            ngx_http_api_key_id_of(lk->hash, id);
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "api_key: record of key id \"%s\" is not a hash",
                          id);
            return NGX_HTTP_API_KEY_LOOKUP_BAD;
        }

        ngx_log_error(NGX_LOG_ERR, log, 0, "api_key: redis error: %*s",
                      (size_t) reply->len, reply->str);
        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "api_key: unexpected redis reply to HGETALL");
        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (reply->elements == 0) {
        ngx_shmtx_lock(&shpool->mutex);
        (void) ak_cache_put_negative(lk->zone->sh->cache, lk->hash,
                                     (uint64_t) ngx_current_msec, lk->seq);
        ngx_shmtx_unlock(&shpool->mutex);

        return NGX_HTTP_API_KEY_LOOKUP_NOTFOUND;
    }

    n = reply->elements / 2;

    if (n <= 32) {
        ngx_memzero(fbuf, sizeof(fbuf));
        ngx_memzero(vbuf, sizeof(vbuf));
        fields = fbuf;
        values = vbuf;

    } else {
        fields = ngx_alloc(2 * n * sizeof(ak_str_t), log);
        if (fields == NULL) {
            return NGX_HTTP_API_KEY_LOOKUP_ERROR;
        }

        values = fields + n;
    }

    rc = NGX_HTTP_API_KEY_LOOKUP_FOUND;

    for (i = 0; i < n; i++) {
        if (reply->element[2 * i]->type != REDIS_REPLY_STRING
            || reply->element[2 * i + 1]->type != REDIS_REPLY_STRING)
        {
            rc = NGX_HTTP_API_KEY_LOOKUP_ERROR;
            break;
        }

        fields[i].data = reply->element[2 * i]->str;
        fields[i].len = reply->element[2 * i]->len;
        values[i].data = reply->element[2 * i + 1]->str;
        values[i].len = reply->element[2 * i + 1]->len;
    }

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
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "api_key: record of key id \"%s\" is invalid: %s, "
                      "the key is denied", err.id, err.msg);
        return NGX_HTTP_API_KEY_LOOKUP_BAD;
    }

    ngx_shmtx_lock(&shpool->mutex);
    rc = ak_cache_put(lk->zone->sh->cache, lk->hash, blob, (size_t) len,
                      (uint64_t) ngx_current_msec, lk->seq);
    ngx_shmtx_unlock(&shpool->mutex);

    if (rc != 0) {
        ngx_http_api_key_id_of(lk->hash, id);
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "api_key: record of key id \"%s\" does not fit in "
                      "api_key_zone \"%V\"", id, &lk->zone->name);
        return NGX_HTTP_API_KEY_LOOKUP_BAD;
    }

    return NGX_HTTP_API_KEY_LOOKUP_FOUND;
}


/* Redis did not answer within "timeout": the waiters go on without it */

static void
ngx_http_api_key_lookup_timeout(ngx_event_t *ev)
{
    char                        id[AK_ID_DEFAULT_LEN + 1];
    ngx_http_api_key_lookup_t  *lk = ev->data;

    ngx_http_api_key_id_of(lk->hash, id);

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "api_key: redis read of key id \"%s\" timed out", id);

    /* the hiredis callback still comes, and frees lk */
    ngx_http_api_key_lookup_finish(lk, NGX_HTTP_API_KEY_LOOKUP_ERROR);
}


static void
ngx_http_api_key_lookup_finish(ngx_http_api_key_lookup_t *lk,
    ngx_uint_t result)
{
    ngx_queue_t             *q;
    ngx_http_api_key_ctx_t  *ctx;

    lk->done = 1;

    if (lk->timer.timer_set) {
        ngx_del_timer(&lk->timer);
    }

    ngx_rbtree_delete(&ngx_http_api_key_inflight, &lk->node);

    while (!ngx_queue_empty(&lk->waiters)) {
        q = ngx_queue_head(&lk->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_api_key_ctx_t, wait);
        ngx_http_api_key_wake(ctx, result);
    }
}


/* the default public id: the first 12 hex digits of the hash */

static void
ngx_http_api_key_id_of(u_char *hash, char *id)
{
    ak_hex_encode(hash, AK_ID_DEFAULT_LEN / 2, id);
    id[AK_ID_DEFAULT_LEN] = '\0';
}
