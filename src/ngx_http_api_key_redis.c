
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
 *
 * The command connection carries at most max_pending commands at a time:
 * beyond that a miss is answered without Redis at once.  Commands are
 * answered in the order they were sent, so a ring of what is pending (the
 * caller's callback, when it was sent) tells the age of the oldest one.  A
 * connection whose oldest command has waited max_timeouts * timeout (and at
 * least 5 s), or on which max_timeouts reads in a row timed out with no
 * answer in between, is declared dead, closed and opened again.  A timeout, a refusal or a reopened
 * connection starts an "outage": one warning when it starts, one notice
 * with the counts when Redis answers again and a second passed without a
 * timeout or refusal.
 *
 * The reconnection backoff (100 ms doubling to 2 s) starts over only when a
 * connection has proven itself: its handshake (AUTH, SELECT, PING) answered,
 * or its subscription confirmed; not when TCP connects.
 *
 * A second connection per worker subscribes to the events channel (and, with
 * keyspace_events=on, to keyspace notifications of the records) and applies
 * revoke/update/flush to the shared caches.  When that subscription comes
 * back after a loss, every cached record is made stale (a new generation),
 * so nothing cached while events could be missed is trusted unread.
 */


#include "ngx_http_api_key.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <netinet/tcp.h>


#define NGX_HTTP_API_KEY_BACKOFF_MIN   100
#define NGX_HTTP_API_KEY_BACKOFF_MAX   2000

/* the handshake's commands (AUTH, SELECT, PING) beyond max_pending */
#define NGX_HTTP_API_KEY_HANDSHAKE_MAX 4

/* an outage (or a run of error answers) ends after this long without one */
#define NGX_HTTP_API_KEY_QUIET         1000

/* no answer to the oldest command for at least this long: a dead peer */
#define NGX_HTTP_API_KEY_STALL_MIN     5000

/* unacknowledged data (or keepalive probes) for this long: a dead peer */
#define NGX_HTTP_API_KEY_USER_TIMEOUT  10000


typedef struct ngx_http_api_key_rconn_s  ngx_http_api_key_rconn_t;

typedef struct {
    redisCallbackFn                *fn;         /* hiredis's answer, or */
    ngx_http_api_key_reply_pt       handler;    /* a typed one */
    void                           *privdata;
    ngx_msec_t                      sent;
} ngx_http_api_key_pending_t;

struct ngx_http_api_key_rconn_s {
    const char                     *name;
    ngx_http_api_key_conn_e         conn;
    redisAsyncContext              *ac;
    ngx_connection_t               *c;
    ngx_http_api_key_redis_conf_t  *conf;
    ngx_log_t                      *log;
    ngx_event_t                     connect_timer;
    ngx_event_t                     reconnect_timer;
    ngx_msec_t                      backoff;
    ngx_uint_t                      pending_handshake;
    void                          (*ready)(ngx_http_api_key_rconn_t *rc);

    /* the command connection: what is waiting for an answer, a FIFO ring */
    ngx_http_api_key_pending_t     *pending;
    ngx_uint_t                      npending;
    ngx_uint_t                      phead;
    ngx_uint_t                      pcap;
    ngx_event_t                     stall_timer;
    ngx_uint_t                      timeouts;    /* in a row, no answer */

    /* an outage: Redis does not answer (timeouts, refusals, reopening) */
    ngx_msec_t                      outage_start;
    ngx_uint_t                      outage_timeouts;
    ngx_uint_t                      outage_refused;
    ngx_uint_t                      outage_down;
    ngx_uint_t                      outage_reopened;
    ngx_msec_t                      outage_last; /* its last event */

    ngx_uint_t                      errors;      /* error answers ... */
    ngx_msec_t                      errors_last; /* ... and the last one */

    unsigned                        connected:1;
    unsigned                        failing:1;   /* an error was logged */
    unsigned                        lost:1;      /* down since last ready */
    unsigned                        outage:1;
    unsigned                        denied:1;    /* an authorization error */
};


typedef struct {
    ngx_rbtree_node_t               node;
    u_char                          hash[AK_HASH_LEN];
    ngx_http_api_key_zone_t        *zone;
    ngx_http_api_key_wait_t         wait;
    ngx_event_t                     timer;
    uint64_t                        seq;
    ngx_uint_t                      sent_us;
    unsigned                        done:1;     /* waiters were woken */
} ngx_http_api_key_lookup_t;


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
static void ngx_http_api_key_rconn_handshake(ngx_http_api_key_rconn_t *rc,
    const char *what, int argc, const char **argv, const size_t *argvlen);
static void ngx_http_api_key_rconn_proven(ngx_http_api_key_rconn_t *rc);
static ngx_int_t ngx_http_api_key_cmd_send(ngx_http_api_key_rconn_t *rc,
    redisCallbackFn *fn, ngx_http_api_key_reply_pt handler, void *privdata,
    int argc, const char **argv, const size_t *argvlen);
static void ngx_http_api_key_reply_of(redisReply *reply,
    ngx_http_api_key_reply_t *out);
static void ngx_http_api_key_cmd_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_api_key_cmd_stall_handler(ngx_event_t *ev);
static ngx_msec_t ngx_http_api_key_stall_time(
    ngx_http_api_key_redis_conf_t *conf);
static void ngx_http_api_key_cmd_reopen(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_outage_begin(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_outage_end(ngx_http_api_key_rconn_t *rc);
static ngx_uint_t ngx_http_api_key_auth_error(redisReply *reply);
static uint64_t ngx_http_api_key_reply_version(redisReply *reply);
static void ngx_http_api_key_ev_read(ngx_event_t *ev);
static void ngx_http_api_key_ev_write(ngx_event_t *ev);
static void ngx_http_api_key_event(void *data, ngx_uint_t write,
    ngx_uint_t add);
static void ngx_http_api_key_add_read(void *data);
static void ngx_http_api_key_del_read(void *data);
static void ngx_http_api_key_add_write(void *data);
static void ngx_http_api_key_del_write(void *data);
static void ngx_http_api_key_cleanup_conn(void *data);

static void ngx_http_api_key_lookup_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_http_api_key_lookup_e ngx_http_api_key_lookup_store(
    ngx_http_api_key_lookup_t *lk, redisReply *reply);
static void ngx_http_api_key_lookup_timeout(ngx_event_t *ev);
static void ngx_http_api_key_lookup_finish(ngx_http_api_key_lookup_t *lk,
    ngx_http_api_key_lookup_e result);
static void ngx_http_api_key_id_of(u_char *hash, char *id);

static void ngx_http_api_key_rconn_init(ngx_http_api_key_rconn_t *rc,
    const char *name, ngx_cycle_t *cycle, ngx_http_api_key_redis_conf_t *conf);
static void ngx_http_api_key_rconn_close(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_cmd_ready(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_config_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_api_key_sub_ready(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_sub_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_api_key_sub_event(ngx_str_t *msg);
static void ngx_http_api_key_sub_keyspace(ngx_str_t *channel);
static void ngx_http_api_key_apply(ngx_http_api_key_event_e event,
    u_char *hash);
static void ngx_http_api_key_events_sync(void);
static void ngx_http_api_key_events_new_generation(void);
static void ngx_http_api_key_count_event(ngx_http_api_key_event_e event);
static void ngx_http_api_key_keepalive(int fd);
static ngx_uint_t ngx_http_api_key_now_us(void);


static ngx_http_api_key_rconn_t       ngx_http_api_key_cmd;
static ngx_http_api_key_rconn_t       ngx_http_api_key_sub;
static ngx_http_api_key_main_conf_t  *ngx_http_api_key_amcf;
static ngx_rbtree_t                   ngx_http_api_key_inflight;
static ngx_rbtree_node_t              ngx_http_api_key_inflight_sentinel;
static ngx_uint_t                     ngx_http_api_key_exiting;
static ngx_str_t                      ngx_http_api_key_keyspace_prefix;
static uint64_t                      *ngx_http_api_key_sub_mark;


ngx_int_t
ngx_http_api_key_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf)
{
    u_char                         *p;
    ngx_http_api_key_redis_conf_t  *conf;

    ngx_rbtree_init(&ngx_http_api_key_inflight,
                    &ngx_http_api_key_inflight_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_api_key_exiting = 0;
    ngx_http_api_key_amcf = amcf;
    conf = amcf->redis;

    /* "__keyspace@DB__:" + prefix: what keyspace channels start with */

    p = ngx_pnalloc(cycle->pool, sizeof("__keyspace@__:") - 1 + NGX_INT_T_LEN
                                 + conf->prefix.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_api_key_keyspace_prefix.data = p;
    p = ngx_sprintf(p, "__keyspace@%i__:%V", conf->db, &conf->prefix);
    ngx_http_api_key_keyspace_prefix.len =
                                  p - ngx_http_api_key_keyspace_prefix.data;

    /* per zone: the event log's head when SUBSCRIBE was sent */

    ngx_http_api_key_sub_mark = ngx_pcalloc(cycle->pool,
                                   (amcf->zones.nelts + 1) * sizeof(uint64_t));
    if (ngx_http_api_key_sub_mark == NULL) {
        return NGX_ERROR;
    }

    ngx_http_api_key_rconn_init(&ngx_http_api_key_cmd, "commands", cycle,
                                conf);
    ngx_http_api_key_cmd.ready = ngx_http_api_key_cmd_ready;

    ngx_http_api_key_cmd.pcap = conf->max_pending
                                + NGX_HTTP_API_KEY_HANDSHAKE_MAX;
    ngx_http_api_key_cmd.pending = ngx_palloc(cycle->pool,
                     ngx_http_api_key_cmd.pcap
                     * sizeof(ngx_http_api_key_pending_t));
    if (ngx_http_api_key_cmd.pending == NULL) {
        return NGX_ERROR;
    }

    ngx_http_api_key_rconn_init(&ngx_http_api_key_sub, "events", cycle, conf);
    ngx_http_api_key_sub.ready = ngx_http_api_key_sub_ready;
    ngx_http_api_key_sub.conn = NGX_HTTP_API_KEY_CONN_EVENTS;

    ngx_http_api_key_limits_init_worker(cycle);

    ngx_http_api_key_rconn_connect(&ngx_http_api_key_cmd);
    ngx_http_api_key_rconn_connect(&ngx_http_api_key_sub);

    return NGX_OK;
}


void
ngx_http_api_key_redis_exit_worker(ngx_cycle_t *cycle)
{
    if (ngx_http_api_key_amcf == NULL) {
        return;
    }

    ngx_http_api_key_exiting = 1;

    ngx_http_api_key_rconn_close(&ngx_http_api_key_cmd);
    ngx_http_api_key_rconn_close(&ngx_http_api_key_sub);
}


static void
ngx_http_api_key_rconn_init(ngx_http_api_key_rconn_t *rc, const char *name,
    ngx_cycle_t *cycle, ngx_http_api_key_redis_conf_t *conf)
{
    ngx_memzero(rc, sizeof(ngx_http_api_key_rconn_t));

    rc->name = name;
    rc->conf = conf;
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

    rc->stall_timer.handler = ngx_http_api_key_cmd_stall_handler;
    rc->stall_timer.data = rc;
    rc->stall_timer.log = cycle->log;
    rc->stall_timer.cancelable = 1;
}


static void
ngx_http_api_key_rconn_close(ngx_http_api_key_rconn_t *rc)
{
    redisAsyncContext  *ac;

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    if (rc->reconnect_timer.timer_set) {
        ngx_del_timer(&rc->reconnect_timer);
    }

    if (rc->stall_timer.timer_set) {
        ngx_del_timer(&rc->stall_timer);
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
    int                             n;
    redisAsyncContext              *ac;
    ngx_connection_t               *c;
    ngx_http_api_key_redis_conf_t  *conf;
    const char                     *argv[3];
    size_t                          argvlen[3];
    u_char                          db[NGX_INT_T_LEN];

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

    if (conf->path.len == 0) {
        ngx_http_api_key_keepalive(ac->c.fd);
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

    /*
     * AUTH and SELECT go first, pipelined ahead of any command; on the
     * command connection a PING follows: its answer proves the connection
     */

    rc->pending_handshake = 0;

    if (rc->npending) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "api_key: %ui redis commands left pending",
                      rc->npending);
        rc->npending = 0;
    }

    if (conf->password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        n = 1;

        if (conf->user.len) {
            argv[n] = (const char *) conf->user.data;
            argvlen[n++] = conf->user.len;
        }

        argv[n] = (const char *) conf->password.data;
        argvlen[n++] = conf->password.len;

        ngx_http_api_key_rconn_handshake(rc, "AUTH", n, argv, argvlen);
    }

    if (conf->db) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", conf->db) - db;

        ngx_http_api_key_rconn_handshake(rc, "SELECT", 2, argv, argvlen);
    }

    if (rc->conn == NGX_HTTP_API_KEY_CONN_COMMANDS) {
        argv[0] = "PING";
        argvlen[0] = 4;

        ngx_http_api_key_rconn_handshake(rc, "PING", 1, argv, argvlen);
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
    rc->lost = 1;
    redisAsyncFree(ac);

    ngx_http_api_key_rconn_schedule(rc);
}


static void
ngx_http_api_key_rconn_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_api_key_shctx_t  *sh;
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
        rc->lost = 1;
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    rc->connected = 1;

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (sh) {
        ngx_http_api_key_count(&sh->connects[rc->conn]);
    }

    /*
     * TCP is up, which proves little (a full server, a proxy in front of
     * one): the backoff starts over once the handshake or subscription
     * is answered (ngx_http_api_key_rconn_proven)
     */

    if (rc->ready) {
        rc->ready(rc);
    }
}


static void
ngx_http_api_key_rconn_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_api_key_shctx_t  *sh;
    ngx_http_api_key_rconn_t  *rc = ac->data;

    rc->ac = NULL;
    rc->connected = 0;
    rc->lost = 1;

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (sh) {
        ngx_http_api_key_count(&sh->disconnects[rc->conn]);
    }

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

    if (reply->type == REDIS_REPLY_ERROR
        && !(ngx_strcmp((char *) privdata, "PING") == 0
             && reply->len >= 6 && ngx_strncmp(reply->str, "NOPERM", 6) == 0))
    {
        /* (an ACL user without PING: answered, authenticated, it works) */

        /* once per failure: the reconnections are not logged */

        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\": %s "
                          "failed: %*s", rc->name, &rc->conf->url,
                          (char *) privdata, (size_t) reply->len, reply->str);
        }

        rc->failing = 1;

        if (ngx_http_api_key_auth_error(reply)) {
            rc->denied = 1;
        }

        /* every later command would fail the same way: start over */
        redisAsyncDisconnect(ac);
        return;
    }

    if (rc->pending_handshake && --rc->pending_handshake == 0
        && rc->conn == NGX_HTTP_API_KEY_CONN_COMMANDS)
    {
        ngx_http_api_key_rconn_proven(rc);
    }
}


/* on the command connection through the ring, on the other directly */

static void
ngx_http_api_key_rconn_handshake(ngx_http_api_key_rconn_t *rc,
    const char *what, int argc, const char **argv, const size_t *argvlen)
{
    ngx_int_t  rv;

    if (rc->conn == NGX_HTTP_API_KEY_CONN_COMMANDS) {
        rv = ngx_http_api_key_cmd_send(rc,
                                       ngx_http_api_key_rconn_handshake_reply,
                                       NULL, (void *) what, argc, argv,
                                       argvlen);

    } else {
        rv = (redisAsyncCommandArgv(rc->ac,
                                    ngx_http_api_key_rconn_handshake_reply,
                                    (void *) what, argc, argv, argvlen)
              == REDIS_OK) ? NGX_OK : NGX_ERROR;
    }

    if (rv == NGX_OK) {
        rc->pending_handshake++;
    }
}


/* the connection answered its handshake (or subscription): it works */

static void
ngx_http_api_key_rconn_proven(ngx_http_api_key_rconn_t *rc)
{
    if (rc->failing) {
        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "api_key: redis %s connection to \"%V\" is up",
                      rc->name, &rc->conf->url);
    }

    rc->failing = 0;
    rc->denied = 0;
    rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MIN;
}


/* ---- the command connection: what waits for an answer -------------- */

static ngx_int_t
ngx_http_api_key_cmd_send(ngx_http_api_key_rconn_t *rc, redisCallbackFn *fn,
    ngx_http_api_key_reply_pt handler, void *privdata, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_api_key_pending_t  *p;

    if (rc->ac == NULL || rc->npending >= rc->pcap) {
        return NGX_ERROR;
    }

    if (redisAsyncCommandArgv(rc->ac, ngx_http_api_key_cmd_reply, rc, argc,
                              argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    p = &rc->pending[(rc->phead + rc->npending) % rc->pcap];
    p->fn = fn;
    p->handler = handler;
    p->privdata = privdata;
    p->sent = ngx_current_msec;

    rc->npending++;

    if (!rc->stall_timer.timer_set) {
        ngx_add_timer(&rc->stall_timer,
                      ngx_http_api_key_stall_time(rc->conf));
    }

    return NGX_OK;
}


/* every answer (or NULL when the connection goes) comes here, in order */

static void
ngx_http_api_key_cmd_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_http_api_key_reply_t     reply;
    ngx_http_api_key_rconn_t    *rc = privdata;
    ngx_http_api_key_pending_t   p;

    if (rc->npending == 0) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "api_key: a redis answer to no command");
        return;
    }

    p = rc->pending[rc->phead];
    rc->phead = (rc->phead + 1) % rc->pcap;
    rc->npending--;

    if (r) {
        rc->timeouts = 0;

        /* over once Redis answers and a second passed without trouble */

        if (rc->outage
            && ngx_current_msec - rc->outage_last >= NGX_HTTP_API_KEY_QUIET)
        {
            ngx_http_api_key_outage_end(rc);
        }
    }

    if (p.fn) {
        p.fn(ac, r, p.privdata);

    } else if (p.handler) {
        if (r) {
            ngx_http_api_key_reply_of(r, &reply);
        }

        p.handler(r ? &reply : NULL, p.privdata);
    }
}


/* hiredis's answer as the files without hiredis see it */

static void
ngx_http_api_key_reply_of(redisReply *reply, ngx_http_api_key_reply_t *out)
{
    size_t  i;

    ngx_memzero(out, sizeof(ngx_http_api_key_reply_t));

    switch (reply->type) {

    case REDIS_REPLY_ERROR:
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        out->type = (reply->type == REDIS_REPLY_ERROR)
                    ? NGX_HTTP_API_KEY_REPLY_ERROR
                    : (reply->type == REDIS_REPLY_STRING)
                      ? NGX_HTTP_API_KEY_REPLY_STRING
                      : NGX_HTTP_API_KEY_REPLY_STATUS;
        out->str.data = (u_char *) reply->str;
        out->str.len = reply->str ? (size_t) reply->len : 0;
        return;

    case REDIS_REPLY_INTEGER:
        out->type = NGX_HTTP_API_KEY_REPLY_INTEGERS;
        out->nints = 1;
        out->ints[0] = (int64_t) reply->integer;
        return;

    case REDIS_REPLY_ARRAY:
        if (reply->elements > NGX_HTTP_API_KEY_REPLY_INTS) {
            break;
        }

        for (i = 0; i < reply->elements; i++) {
            if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
                goto other;
            }

            out->ints[i] = (int64_t) reply->element[i]->integer;
        }

        out->type = NGX_HTTP_API_KEY_REPLY_INTEGERS;
        out->nints = reply->elements;
        return;
    }

other:

    out->type = NGX_HTTP_API_KEY_REPLY_OTHER;
    out->nints = 0;
}


/*
 * The oldest command has waited max_timeouts * timeout, and at least 5 s:
 * a dead connection.  This catches a connection that carries no reads (the
 * quota leases of cached keys); reads that time out close it sooner.  Not
 * too soon: what was sent may still run on Redis after the connection is
 * closed, and the answer of a quota lease would then be lost.
 */

static ngx_msec_t
ngx_http_api_key_stall_time(ngx_http_api_key_redis_conf_t *conf)
{
    ngx_msec_t  t;

    t = conf->timeout * conf->max_timeouts;

    return ngx_max(t, NGX_HTTP_API_KEY_STALL_MIN);
}


static void
ngx_http_api_key_cmd_stall_handler(ngx_event_t *ev)
{
    ngx_msec_t                 age, stall;
    ngx_http_api_key_rconn_t  *rc = ev->data;

    if (rc->ac == NULL || rc->npending == 0) {
        return;
    }

    stall = ngx_http_api_key_stall_time(rc->conf);
    age = ngx_current_msec - rc->pending[rc->phead].sent;

    if (age < stall) {
        ngx_add_timer(ev, stall - age);
        return;
    }

    ngx_http_api_key_cmd_reopen(rc);
}


static void
ngx_http_api_key_cmd_reopen(ngx_http_api_key_rconn_t *rc)
{
    redisAsyncContext  *ac;

    ngx_http_api_key_outage_begin(rc);

    if (rc->outage_reopened++ == 0) {
        ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                      "api_key: redis commands connection to \"%V\" did "
                      "not answer for %M ms (%ui commands waiting): it is "
                      "closed and opened again", &rc->conf->url,
                      ngx_current_msec - rc->outage_start, rc->npending);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rc->log, 0,
                   "api_key: reopening the redis commands connection, "
                   "%ui commands waiting", rc->npending);

    rc->timeouts = 0;
    rc->connected = 0;
    rc->lost = 1;

    ac = rc->ac;
    rc->ac = NULL;

    /* answers the pending callbacks with NULL; on_disconnect if connected */
    redisAsyncFree(ac);

    if (!rc->reconnect_timer.timer_set) {
        ngx_http_api_key_rconn_schedule(rc);
    }
}


static void
ngx_http_api_key_outage_begin(ngx_http_api_key_rconn_t *rc)
{
    rc->outage_last = ngx_current_msec;

    if (rc->outage) {
        return;
    }

    rc->outage = 1;
    rc->outage_start = ngx_current_msec;
    rc->outage_timeouts = 0;
    rc->outage_refused = 0;
    rc->outage_down = 0;
    rc->outage_reopened = 0;
}


static void
ngx_http_api_key_outage_end(ngx_http_api_key_rconn_t *rc)
{
    rc->outage = 0;

    ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                  "api_key: redis answers again after %M ms: %ui reads "
                  "timed out, %ui misses were answered without it (%ui with "
                  "too many commands waiting, %ui while reconnecting), the "
                  "commands connection was reopened %ui times",
                  ngx_current_msec - rc->outage_start, rc->outage_timeouts,
                  rc->outage_refused + rc->outage_down, rc->outage_refused,
                  rc->outage_down, rc->outage_reopened);
}


/* an authorization error: a misconfiguration, not an outage */

static ngx_uint_t
ngx_http_api_key_auth_error(redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    return (reply->len >= 6 && ngx_strncmp(reply->str, "NOPERM", 6) == 0)
           || (reply->len >= 6 && ngx_strncmp(reply->str, "NOAUTH", 6) == 0)
           || (reply->len >= 9 && ngx_strncmp(reply->str, "WRONGPASS", 9)
                                  == 0);
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


/* hiredis wants (or no longer wants) to read or write */

static void
ngx_http_api_key_event(void *data, ngx_uint_t write, ngx_uint_t add)
{
    ngx_event_t               *ev;
    ngx_http_api_key_rconn_t  *rc = data;

    if (rc->c == NULL) {
        return;
    }

    ev = write ? rc->c->write : rc->c->read;

    if (add && !ev->active) {
        if (ngx_add_event(ev, write ? NGX_WRITE_EVENT : NGX_READ_EVENT,
                          NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                          "api_key: cannot add a redis %s event",
                          write ? "write" : "read");
        }

    } else if (!add && ev->active) {
        (void) ngx_del_event(ev, write ? NGX_WRITE_EVENT : NGX_READ_EVENT,
                             NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_api_key_add_read(void *data)
{
    ngx_http_api_key_event(data, 0, 1);
}


static void
ngx_http_api_key_del_read(void *data)
{
    ngx_http_api_key_event(data, 0, 0);
}


static void
ngx_http_api_key_add_write(void *data)
{
    ngx_http_api_key_event(data, 1, 1);
}


static void
ngx_http_api_key_del_write(void *data)
{
    ngx_http_api_key_event(data, 1, 0);
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
 * and is woken by ngx_http_api_key_wait_wake(); NGX_ERROR: Redis cannot be
 * asked now (not connected, too many commands waiting), answer without it;
 * NGX_DECLINED: the same, after Redis refused the module's credentials or
 * commands (an authorization error: never "unchecked").
 */

ngx_int_t
ngx_http_api_key_redis_lookup(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, uint64_t seq)
{
    u_char                          *p;
    ngx_http_api_key_rconn_t        *rc;
    ngx_http_api_key_lookup_t       *lk;
    ngx_http_api_key_redis_conf_t   *conf;
    const char                      *argv[2];
    size_t                           argvlen[2];
    u_char                           name[256 + AK_HASH_HEX_LEN];

    rc = &ngx_http_api_key_cmd;
    conf = rc->conf;

    lk = (ngx_http_api_key_lookup_t *) ngx_http_api_key_tree_find(
                                 &ngx_http_api_key_inflight, zone, ctx->hash,
                                 offsetof(ngx_http_api_key_lookup_t, hash),
                                 offsetof(ngx_http_api_key_lookup_t, zone));

    if (lk == NULL) {

        if (rc->ac == NULL || conf->prefix.len > 256) {
            rc->outage_down += rc->outage;
            return rc->denied ? NGX_DECLINED : NGX_ERROR;
        }

        if (rc->npending >= conf->max_pending) {

            /* Redis is slow or gone: no more commands pile up */

            if (!rc->outage) {
                ngx_http_api_key_outage_begin(rc);

                ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                              "api_key: %ui redis commands are waiting for "
                              "an answer (max_pending): further misses are "
                              "answered without redis until it answers",
                              rc->npending);
            }

            ngx_http_api_key_outage_begin(rc);
            rc->outage_refused++;

            return rc->denied ? NGX_DECLINED : NGX_ERROR;
        }

        lk = ngx_calloc(sizeof(ngx_http_api_key_lookup_t), rc->log);
        if (lk == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(lk->hash, ctx->hash, AK_HASH_LEN);
        lk->zone = zone;
        lk->seq = seq;
        ngx_http_api_key_wait_init(&lk->wait, NGX_HTTP_API_KEY_WAIT_READ,
                                   rc->log);

        p = ngx_cpymem(name, conf->prefix.data, conf->prefix.len);
        ak_hex_encode(ctx->hash, AK_HASH_LEN, (char *) p);
        p += AK_HASH_HEX_LEN;

        argv[0] = "HGETALL";
        argvlen[0] = 7;
        argv[1] = (const char *) name;
        argvlen[1] = p - name;

        if (ngx_http_api_key_cmd_send(rc, ngx_http_api_key_lookup_reply,
                                      NULL, lk, 2, argv, argvlen)
            != NGX_OK)
        {
            ngx_free(lk);
            return NGX_ERROR;
        }

        lk->sent_us = ngx_http_api_key_now_us();

        ngx_memcpy(&lk->node.key, lk->hash, sizeof(ngx_rbtree_key_t));
        ngx_rbtree_insert(&ngx_http_api_key_inflight, &lk->node);

        lk->timer.handler = ngx_http_api_key_lookup_timeout;
        lk->timer.data = lk;
        lk->timer.log = rc->log;
        ngx_add_timer(&lk->timer, conf->timeout);
    }

    ngx_http_api_key_wait_join(&lk->wait, ctx);

    return NGX_AGAIN;
}


static void
ngx_http_api_key_lookup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_http_api_key_lookup_e   result;
    ngx_http_api_key_lookup_t  *lk = privdata;

    if (r) {
        ngx_http_api_key_observe_latency(lk->zone,
                                  ngx_http_api_key_now_us() - lk->sent_us);
    }

    result = ngx_http_api_key_lookup_store(lk, r);

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
    int                        len, rc, seen;
    size_t                     i, n;
    ak_str_t                  *fields, *values;
    ngx_log_t                 *log;
    ngx_uint_t                 denied;
    ngx_slab_pool_t           *shpool;
    ak_record_err_t            err;
    ngx_http_api_key_rconn_t  *rconn;
    char                       id[AK_ID_DEFAULT_LEN + 1];
    ak_str_t                   fbuf[32], vbuf[32];
    static u_char              blob[AK_RECORD_MAX];

    rconn = &ngx_http_api_key_cmd;
    log = rconn->log;
    shpool = lk->zone->shpool;

    if (reply == NULL) {
        /* the connection went down */
        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        if (reply->len >= 9 && ngx_strncmp(reply->str, "WRONGTYPE", 9) == 0) {

            /* the record's fault, not Redis's: a bad record */

            ngx_shmtx_lock(&shpool->mutex);
            seen = ak_cache_put_bad(lk->zone->sh->cache, lk->hash,
                                    (uint64_t) ngx_current_msec, lk->seq,
                                    ngx_http_api_key_reply_version(reply));
            ngx_shmtx_unlock(&shpool->mutex);

            if (seen != 1) {
                ngx_http_api_key_id_of(lk->hash, id);
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "api_key: record of key id \"%s\" is not a "
                              "hash, the key is denied", id);
            }

            return NGX_HTTP_API_KEY_LOOKUP_BAD;
        }

        denied = ngx_http_api_key_auth_error(reply);

        /* once until a read succeeds again; the others are counted */

        rconn->errors_last = ngx_current_msec;

        if (rconn->errors++ == 0) {
            ngx_http_api_key_id_of(lk->hash, id);
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "api_key: redis answered the read of key id "
                          "\"%s\" with an error: %*s%s; until a read "
                          "succeeds, further error answers are counted, not "
                          "logged", id, (size_t) reply->len, reply->str,
                          denied ? " (an authorization error: keys not "
                                   "cached are answered \"unavailable\", "
                                   "also under api_key_fail open)"
                                 : "");
        }

        if (denied) {
            rconn->denied = 1;
            return NGX_HTTP_API_KEY_LOOKUP_DENIED;
        }

        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "api_key: unexpected redis reply to HGETALL");
        return NGX_HTTP_API_KEY_LOOKUP_ERROR;
    }

    if (rconn->errors
        && ngx_current_msec - rconn->errors_last >= NGX_HTTP_API_KEY_QUIET)
    {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "api_key: redis reads succeed again, after %ui error "
                      "answers", rconn->errors);
        rconn->errors = 0;
    }

    rconn->denied = 0;

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

        /* cached as bad for negative_ttl; logged once per version */

        ngx_shmtx_lock(&shpool->mutex);
        seen = ak_cache_put_bad(lk->zone->sh->cache, lk->hash,
                                (uint64_t) ngx_current_msec, lk->seq,
                                ngx_http_api_key_reply_version(reply));
        ngx_shmtx_unlock(&shpool->mutex);

        if (seen != 1) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "api_key: record of key id \"%s\" is invalid: %s, "
                          "the key is denied", err.id, err.msg);
        }

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
    ngx_http_api_key_rconn_t   *rc;
    ngx_http_api_key_lookup_t  *lk = ev->data;

    rc = &ngx_http_api_key_cmd;

    ngx_http_api_key_id_of(lk->hash, id);

    if (!rc->outage) {
        ngx_http_api_key_outage_begin(rc);

        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "api_key: redis read of key id \"%s\" timed out "
                      "after %M ms; until redis answers again, further "
                      "timeouts are counted, not logged", id,
                      rc->conf->timeout);

    } else {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "api_key: redis read of key id \"%s\" timed out",
                       id);
    }

    ngx_http_api_key_outage_begin(rc);    /* its last event: now */
    rc->outage_timeouts++;

    ngx_http_api_key_count(&lk->zone->sh->redis_timeouts);

    /* the hiredis callback still comes, and frees lk */
    ngx_http_api_key_lookup_finish(lk, NGX_HTTP_API_KEY_LOOKUP_ERROR);

    /* lk may be gone from here on */

    if (++rc->timeouts >= rc->conf->max_timeouts && rc->ac) {
        ngx_http_api_key_cmd_reopen(rc);
    }
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


/* ---- the command connection: a look at the server's settings -------- */

static void
ngx_http_api_key_cmd_ready(ngx_http_api_key_rconn_t *rc)
{
    static const char    *argv[] = { "CONFIG", "GET",
                                     "notify-keyspace-events" };
    static const size_t   argvlen[] = { 6, 3, 22 };

    if (!rc->conf->keyspace_events || ngx_worker != 0) {
        return;
    }

    (void) ngx_http_api_key_cmd_send(rc, ngx_http_api_key_config_reply, NULL,
                                     NULL, 3, argv, argvlen);
}


/*
 * keyspace_events=on needs K (keyspace channel) and g (DEL, EXPIRE, RENAME),
 * h (HSET, HDEL) and x (expired) events, or A for all of them
 */

static void
ngx_http_api_key_config_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    size_t       i;
    ngx_uint_t   k, g, h, x;
    redisReply  *reply = r, *v;

    if (reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_cmd.log, 0,
                      "api_key: keyspace_events=on, but CONFIG GET "
                      "notify-keyspace-events is not allowed; make sure the "
                      "redis server has notify-keyspace-events \"Kghx\" or "
                      "\"KA\"");
        return;
    }

    v = reply->element[1];
    k = g = h = x = 0;

    for (i = 0; i < v->len; i++) {
        switch (v->str[i]) {
        case 'K':
            k = 1;
            break;
        case 'g':
            g = 1;
            break;
        case 'h':
            h = 1;
            break;
        case 'x':
            x = 1;
            break;
        case 'A':
            g = h = x = 1;
            break;
        }
    }

    if (!k || !g || !h || !x) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_cmd.log, 0,
                      "api_key: keyspace_events=on, but the redis server's "
                      "notify-keyspace-events is \"%*s\": some changes of "
                      "records (HSET, DEL, EXPIRE, expiries) will not be seen "
                      "until their ttl ends; set it to \"Kghx\" (or \"KA\")",
                      v->len, v->str);
    }
}


/* ---- the events subscription ---------------------------------------- */

static void
ngx_http_api_key_sub_ready(ngx_http_api_key_rconn_t *rc)
{
    u_char                         *p, *q, *last;
    ngx_uint_t                      i;
    ngx_http_api_key_zone_t       **zp;
    ngx_http_api_key_redis_conf_t  *conf;
    u_char                          pattern[512];

    conf = rc->conf;

    /*
     * The events in the zones' logs now were published before this
     * SUBSCRIBE: never this subscription's.  The ones logged from here on
     * may be (a faster worker applied them before this worker reads the
     * confirmation): the position starts here, not at the head when the
     * subscription is confirmed, so that they are recognised, not applied
     * a second time (an old "revoke" after a newer "update").
     */

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        ngx_shmtx_lock(&zp[i]->shpool->mutex);
        ngx_http_api_key_sub_mark[i] = ak_evlog_head(&zp[i]->sh->evlog);
        ngx_shmtx_unlock(&zp[i]->shpool->mutex);
    }

    (void) redisAsyncCommand(rc->ac, ngx_http_api_key_sub_reply, NULL,
                             "SUBSCRIBE %b", conf->channel.data,
                             conf->channel.len);

    if (!conf->keyspace_events) {
        return;
    }

    /* the prefix, its glob characters escaped, then "*" */

    p = pattern;
    last = pattern + sizeof(pattern) - 2;
    q = ngx_http_api_key_keyspace_prefix.data;

    p = ngx_cpymem(p, q, ngx_http_api_key_keyspace_prefix.len
                         - conf->prefix.len);
    q += ngx_http_api_key_keyspace_prefix.len - conf->prefix.len;

    for ( /* void */ ; q < ngx_http_api_key_keyspace_prefix.data
                           + ngx_http_api_key_keyspace_prefix.len;
         q++)
    {
        if (p >= last) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: prefix too long for keyspace events");
            return;
        }

        if (*q == '*' || *q == '?' || *q == '[' || *q == ']' || *q == '\\') {
            *p++ = '\\';
        }

        *p++ = *q;
    }

    *p++ = '*';

    (void) redisAsyncCommand(rc->ac, ngx_http_api_key_sub_reply, NULL,
                             "PSUBSCRIBE %b", pattern,
                             (size_t) (p - pattern));
}


static void
ngx_http_api_key_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_str_t                  type, msg;
    redisReply                *reply = r;
    ngx_http_api_key_shctx_t  *sh;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 3)
    {
        return;
    }

    if (reply->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }

    type.data = (u_char *) reply->element[0]->str;
    type.len = reply->element[0]->len;

    if (type.len == 7 && ngx_strncmp(type.data, "message", 7) == 0) {
        if (reply->element[2]->type == REDIS_REPLY_STRING) {
            msg.data = (u_char *) reply->element[2]->str;
            msg.len = reply->element[2]->len;
            ngx_http_api_key_sub_event(&msg);
        }

        return;
    }

    if (type.len == 8 && ngx_strncmp(type.data, "pmessage", 8) == 0) {
        if (reply->elements == 4
            && reply->element[2]->type == REDIS_REPLY_STRING)
        {
            msg.data = (u_char *) reply->element[2]->str;
            msg.len = reply->element[2]->len;
            ngx_http_api_key_sub_keyspace(&msg);
        }

        return;
    }

    if (type.len == 9 && ngx_strncmp(type.data, "subscribe", 9) == 0) {

        ngx_http_api_key_rconn_proven(&ngx_http_api_key_sub);

        /* from here on, this worker receives what the others receive */
        ngx_http_api_key_events_sync();

        if (ngx_http_api_key_sub.lost) {
            /*
             * Events may have been missed while the subscription was down:
             * everything cached so far is re-read before it is trusted.
             */

            ngx_http_api_key_events_new_generation();

            ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_sub.log, 0,
                          "api_key: events subscription to \"%V\" is back, "
                          "cached records will be re-read",
                          &ngx_http_api_key_sub.conf->channel);

            sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

            if (sh) {
                ngx_http_api_key_count(&sh->resubscribes);
            }
        }

        ngx_http_api_key_sub.lost = 0;
    }
}


/* "revoke HASH", "update HASH", "flush": the first word names the event */

static void
ngx_http_api_key_sub_event(ngx_str_t *msg)
{
    u_char                    *p;
    ngx_str_t                  word, hex;
    ngx_http_api_key_event_e   event;
    u_char                     hash[AK_HASH_LEN];

    p = ngx_strlchr(msg->data, msg->data + msg->len, ' ');

    word.data = msg->data;
    word.len = (p ? p : msg->data + msg->len) - msg->data;

    if (word.len == sizeof("flush") - 1
        && ngx_strncmp(word.data, "flush", word.len) == 0)
    {
        if (p) {
            goto invalid;
        }

        ngx_http_api_key_apply(NGX_HTTP_API_KEY_EVENT_FLUSH, NULL);
        ngx_http_api_key_count_event(NGX_HTTP_API_KEY_EVENT_FLUSH);
        return;
    }

    if (word.len == sizeof("revoke") - 1
        && ngx_strncmp(word.data, "revoke", word.len) == 0)
    {
        event = NGX_HTTP_API_KEY_EVENT_REVOKE;

    } else if (word.len == sizeof("update") - 1
               && ngx_strncmp(word.data, "update", word.len) == 0)
    {
        event = NGX_HTTP_API_KEY_EVENT_UPDATE;

    } else {
        goto invalid;
    }

    if (p == NULL) {
        goto invalid;
    }

    hex.data = p + 1;
    hex.len = msg->data + msg->len - hex.data;

    if (ak_hex_decode_hash((const char *) hex.data, hex.len, hash) != 0) {
        goto invalid;
    }

    ngx_http_api_key_apply(event, hash);
    ngx_http_api_key_count_event(event);

    return;

invalid:

    ngx_http_api_key_count_event(NGX_HTTP_API_KEY_EVENT_MALFORMED);

    /* the message is not echoed: it might be a key sent by mistake */
    ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_sub.log, 0,
                  "api_key: ignored a malformed event of %uz bytes on "
                  "\"%V\"; expected \"revoke HASH\", \"update HASH\" or "
                  "\"flush\"", msg->len, &ngx_http_api_key_sub.conf->channel);
}


/* "__keyspace@0__:apikey:HASH": any change of a record drops it */

static void
ngx_http_api_key_sub_keyspace(ngx_str_t *channel)
{
    ngx_str_t  hex;
    u_char     hash[AK_HASH_LEN];

    if (channel->len != ngx_http_api_key_keyspace_prefix.len + AK_HASH_HEX_LEN
        || ngx_strncmp(channel->data, ngx_http_api_key_keyspace_prefix.data,
                       ngx_http_api_key_keyspace_prefix.len)
           != 0)
    {
        /* id lookups, usage counters: not records */
        return;
    }

    hex.data = channel->data + ngx_http_api_key_keyspace_prefix.len;
    hex.len = AK_HASH_HEX_LEN;

    if (ak_hex_decode_hash((const char *) hex.data, hex.len, hash) != 0) {
        return;
    }

    /* any change of a record: as an "update" of its key */
    ngx_http_api_key_apply(NGX_HTTP_API_KEY_EVENT_UPDATE, hash);
    ngx_http_api_key_count_event(NGX_HTTP_API_KEY_EVENT_KEYSPACE);
}


/*
 * Applies a revoke, update or flush to every zone.  Events from the channel
 * are applied once per node (the zone's event log): the first worker to
 * receive one applies it, the others only move their position past it.
 */

static void
ngx_http_api_key_apply(ngx_http_api_key_event_e event, u_char *hash)
{
    int                        rc, kind;
    uint64_t                   fp;
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    switch (event) {

    case NGX_HTTP_API_KEY_EVENT_REVOKE:
        kind = AK_EVENT_REVOKE;
        break;

    case NGX_HTTP_API_KEY_EVENT_UPDATE:
        kind = AK_EVENT_UPDATE;
        break;

    default: /* NGX_HTTP_API_KEY_EVENT_FLUSH */
        kind = AK_EVENT_FLUSH;
        break;
    }

    fp = ak_evlog_fingerprint(kind, hash);

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_shmtx_lock(&zone->shpool->mutex);

        rc = ak_evlog_claim(&zone->sh->evlog, &zone->event_pos, fp);

        if (rc == AK_EVLOG_APPLY) {
            switch (kind) {

            case AK_EVENT_REVOKE:
                (void) ak_cache_revoke(zone->sh->cache, hash);
                break;

            case AK_EVENT_UPDATE:
                (void) ak_cache_remove(zone->sh->cache, hash);
                break;

            default:
                ak_cache_flush(zone->sh->cache);
                break;
            }
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (rc == AK_EVLOG_LOST && !zone->event_lagging) {
            ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_sub.log, 0,
                          "api_key: this worker fell more than %d events "
                          "behind the others in api_key_zone \"%V\" and "
                          "skips the events they applied already",
                          AK_EVLOG_SIZE, &zone->name);
        }

        zone->event_lagging = (rc == AK_EVLOG_LOST);
    }
}


/*
 * Subscribed: this worker's position in each zone's event log starts where
 * the log was when SUBSCRIBE was sent (sub_ready).  This worker's own, not
 * an event.
 */

static void
ngx_http_api_key_events_sync(void)
{
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_shmtx_lock(&zone->shpool->mutex);
        zone->event_pos = ngx_http_api_key_sub_mark[i];
        zone->event_lagging = 0;
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


/* events may have been missed: every cached record is re-read first */

static void
ngx_http_api_key_events_new_generation(void)
{
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_shmtx_lock(&zone->shpool->mutex);
        ak_cache_new_generation(zone->sh->cache);
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


/* per node (the first zone), by kind: api_key_events_total */

static void
ngx_http_api_key_count_event(ngx_http_api_key_event_e event)
{
    ngx_http_api_key_shctx_t  *sh;

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (sh) {
        ngx_http_api_key_count(&sh->events[event]);
    }
}


/* a dead peer is noticed in about 10 + 3 * 3 seconds, not hours */

static void
ngx_http_api_key_keepalive(int fd)
{
    int  on = 1;

    (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(int));

#if (NGX_HAVE_KEEPALIVE_TUNABLE)
    {
        int  idle = 10, intvl = 3, cnt = 3;

        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(int));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(int));
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(int));
    }
#endif

#ifdef TCP_USER_TIMEOUT
    {
        /* a black-holed path: sent data never acknowledged */
        unsigned int  ut = NGX_HTTP_API_KEY_USER_TIMEOUT;

        (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut,
                          sizeof(unsigned int));
    }
#endif
}


ngx_uint_t
ngx_http_api_key_redis_state(ngx_http_api_key_conn_e conn)
{
    ngx_http_api_key_rconn_t  *rc;

    rc = (conn == NGX_HTTP_API_KEY_CONN_EVENTS) ? &ngx_http_api_key_sub
                                                : &ngx_http_api_key_cmd;

    return (rc->ac && rc->connected) ? 1 : 0;
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


static ngx_uint_t
ngx_http_api_key_now_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_uint_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/*
 * A command on the command connection, for the quota leases: its answer
 * goes to handler (if any) as an ngx_http_api_key_reply_t.
 */

ngx_int_t
ngx_http_api_key_redis_command(ngx_http_api_key_reply_pt handler, void *data,
    int argc, const char **argv, const size_t *argvlen)
{
    ngx_http_api_key_rconn_t  *rc = &ngx_http_api_key_cmd;

    if (rc->ac == NULL || rc->npending >= rc->conf->max_pending) {
        return NGX_ERROR;
    }

    return ngx_http_api_key_cmd_send(rc, NULL, handler, data, argc, argv,
                                     argvlen);
}


ngx_uint_t
ngx_http_api_key_redis_ready(void)
{
    return ngx_http_api_key_cmd.ac != NULL;
}


ngx_http_api_key_redis_conf_t *
ngx_http_api_key_redis_conf(void)
{
    return ngx_http_api_key_cmd.conf;
}
