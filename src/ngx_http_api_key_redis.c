/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the Redis connection/command layer, on nginx's
 * event loop.
 *
 * Each worker keeps one connection for commands, an nginx connection
 * (redis_io.c: hiredis only encodes the commands and parses the replies);
 * timeouts are nginx timers.  A host name is resolved at configuration
 * time, and again before every connection through nginx's resolver when
 * the http block has one.
 *
 * What is sent on it: the record reads (lookup.c), the quota leases
 * (limits.c, through ngx_http_api_key_redis_command() and a typed answer),
 * a look at the server's settings (events.c) and, here, the handshake.
 *
 * The command connection carries at most max_pending commands at a time:
 * beyond that a miss is answered without Redis at once.  Commands are
 * answered in the order they were sent, so a ring of what is pending (the
 * caller's callback, when it was sent) tells the age of the oldest one.  A
 * connection whose oldest command has waited max_timeouts * timeout (and at
 * least 5 s), or on which max_timeouts reads in a row timed out with no
 * answer in between, is declared dead, closed and opened again.  A timeout,
 * a refusal or a reopened connection starts an "outage": one warning when
 * it starts, one notice with the counts when Redis answers again and a
 * second passed without a timeout or refusal.
 *
 * The reconnection backoff (100 ms doubling to 2 s) starts over only when a
 * connection has proven itself: its handshake (AUTH, SELECT, PING) answered,
 * or its subscription confirmed; not when TCP connects.
 *
 * A second connection per worker carries the events subscription: what it
 * subscribes to and what it does with the messages is events.c's, which
 * registers itself at init time for what to do when a connection is ready.
 * From its opening to its whole subscription confirmed (its AUTH, SELECT
 * and (P)SUBSCRIBE answered) it has connect_timeout plus the commands
 * connection's stall time (max_timeouts * timeout, at least 5 s): a server
 * that accepts it and never answers gets it closed and opened again with
 * the backoff, logged once per failure streak.
 *
 * With redis-sentinel:// (sentinel.c) both connections go where the
 * sentinels last said the master is, and their handshake adds ROLE (a
 * replica is closed and the sentinels asked again); when the master moves,
 * sentinel.c calls ngx_http_api_key_master_moved(): both connections go to
 * the new address at once.  Any failure of a connection makes sentinel.c
 * ask again.  The errors of a failover (READONLY, LOADING, MASTERDOWN:
 * ngx_http_api_key_failover_kind(), where the cluster's CLUSTERDOWN and
 * TRYAGAIN belong too) are counted, make the sentinels be asked again, and
 * (READONLY, MASTERDOWN) reopen the commands connection, with any url.
 */


#include "ngx_http_api_key_redis.h"


#define NGX_HTTP_API_KEY_BACKOFF_MIN   100
#define NGX_HTTP_API_KEY_BACKOFF_MAX   2000

/* the handshake's commands (AUTH, SELECT, PING) beyond max_pending */
#define NGX_HTTP_API_KEY_HANDSHAKE_MAX 4

/* an outage ends after this long without one */
#define NGX_HTTP_API_KEY_QUIET         1000

/* no answer to the oldest command for at least this long: a dead peer */
#define NGX_HTTP_API_KEY_STALL_MIN     5000


typedef struct ngx_http_api_key_rconn_s  ngx_http_api_key_rconn_t;

typedef struct {
    ngx_http_api_key_redis_cb_pt    fn;         /* hiredis's reply, or */
    ngx_http_api_key_reply_pt       handler;    /* a typed one */
    void                           *privdata;
    ngx_msec_t                      sent;
} ngx_http_api_key_pending_t;

/* the functions called when a connection is ready, at most */
#define NGX_HTTP_API_KEY_READY_MAX        4

struct ngx_http_api_key_rconn_s {
    const char                     *name;
    ngx_http_api_key_conn_e         conn;
    ngx_http_api_key_redis_io_t    *io;          /* NULL: none */
    ngx_addr_t                      addr;        /* the last known one */
    ngx_sockaddr_t                  sockaddr;
    u_char                          addr_text[NGX_SOCKADDR_STRLEN];
    ngx_resolver_ctx_t             *resolving;   /* the host, now */
    ngx_http_api_key_redis_conf_t  *conf;
    ngx_log_t                      *log;
    ngx_event_t                     connect_timer;
    ngx_event_t                     reconnect_timer;
    ngx_msec_t                      backoff;
    ngx_uint_t                      pending_handshake;
    /* what to call once connected (events.c, lookup.c, marker.c) */
    ngx_http_api_key_ready_pt       ready[NGX_HTTP_API_KEY_READY_MAX];
    ngx_uint_t                      nready;

    /* the command connection: what is waiting for an answer, a FIFO ring */
    ngx_http_api_key_pending_t     *pending;
    ngx_uint_t                      npending;
    ngx_uint_t                      phead;
    ngx_uint_t                      pcap;
    ngx_event_t                     stall_timer;
    ngx_uint_t                      timeouts;    /* in a row, no answer */

    /* the events connection: opened, its subscription not confirmed yet */
    ngx_event_t                     sub_timer;

    ngx_msec_t                      failover_logged;  /* "not the master" */

    /* an outage: Redis does not answer (timeouts, refusals, reopening) */
    ngx_msec_t                      outage_start;
    ngx_uint_t                      outage_timeouts;
    ngx_uint_t                      outage_refused;
    ngx_uint_t                      outage_down;
    ngx_uint_t                      outage_reopened;
    ngx_msec_t                      outage_last; /* its last event */

    unsigned                        connected:1;
    unsigned                        failing:1;   /* an error was logged */
    unsigned                        lost:1;      /* down since last ready */
    unsigned                        outage:1;
    unsigned                        denied:1;    /* an authorization error */
    unsigned                        handshake_done:1;
    unsigned                        closed_denied:1; /* by an auth. error */
};


static void ngx_http_api_key_rconn_connect(ngx_http_api_key_rconn_t *rc);
static ngx_int_t ngx_http_api_key_rconn_resolve(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_rconn_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_http_api_key_rconn_set_addr(ngx_http_api_key_rconn_t *rc,
    struct sockaddr *sockaddr, socklen_t socklen);
static ngx_resolver_t *ngx_http_api_key_resolver(
    ngx_http_api_key_redis_conf_t *conf);
static void ngx_http_api_key_rconn_open(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_rconn_schedule(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_rconn_reconnect_handler(ngx_event_t *ev);
static void ngx_http_api_key_rconn_timeout_handler(ngx_event_t *ev);
static void ngx_http_api_key_rconn_on_connect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status);
static void ngx_http_api_key_rconn_on_disconnect(
    ngx_http_api_key_redis_io_t *io, ngx_int_t status);
static void ngx_http_api_key_rconn_handshake_reply(
    ngx_http_api_key_redis_io_t *io, redisReply *reply, void *privdata);
static void ngx_http_api_key_rconn_handshake(ngx_http_api_key_rconn_t *rc,
    const char *what, int argc, const char **argv, const size_t *argvlen);
static void ngx_http_api_key_cmd_ready_all(void);
static void ngx_http_api_key_sub_ready_all(void);
static void ngx_http_api_key_rconn_handshake_done(
    ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_rconn_proven(ngx_http_api_key_rconn_t *rc);
static ngx_int_t ngx_http_api_key_cmd_send(ngx_http_api_key_rconn_t *rc,
    ngx_http_api_key_redis_cb_pt fn, ngx_http_api_key_reply_pt handler, void *privdata,
    int argc, const char **argv, const size_t *argvlen);
static void ngx_http_api_key_reply_of(redisReply *reply,
    ngx_http_api_key_reply_t *out);
static void ngx_http_api_key_cmd_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *r, void *privdata);
static void ngx_http_api_key_cmd_stall_handler(ngx_event_t *ev);
static ngx_msec_t ngx_http_api_key_stall_time(
    ngx_http_api_key_redis_conf_t *conf);
static void ngx_http_api_key_cmd_reopen(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_sub_timeout_handler(ngx_event_t *ev);
static void ngx_http_api_key_outage_begin(ngx_http_api_key_rconn_t *rc);
static ngx_uint_t ngx_http_api_key_auth_error_str(const char *s, size_t len);
static void ngx_http_api_key_outage_end(ngx_http_api_key_rconn_t *rc);

static void ngx_http_api_key_master_moved(void);
static void ngx_http_api_key_rconn_move(ngx_http_api_key_rconn_t *rc);
static ngx_uint_t ngx_http_api_key_role_is_master(redisReply *reply);
static ngx_uint_t ngx_http_api_key_failover_kind(const char *s, size_t len);
static void ngx_http_api_key_failover(ngx_http_api_key_rconn_t *rc,
    redisReply *reply);

static void ngx_http_api_key_rconn_init(ngx_http_api_key_rconn_t *rc,
    const char *name, ngx_cycle_t *cycle, ngx_http_api_key_redis_conf_t *conf);
static void ngx_http_api_key_rconn_close(ngx_http_api_key_rconn_t *rc);
static void ngx_http_api_key_cluster_typed_reply(
    ngx_http_api_key_reply_pt handler, void *data, redisReply *reply);


static ngx_http_api_key_rconn_t       ngx_http_api_key_cmd;
static ngx_http_api_key_rconn_t       ngx_http_api_key_sub;
static ngx_http_api_key_main_conf_t  *ngx_http_api_key_amcf;
static ngx_uint_t                     ngx_http_api_key_exiting;
static ngx_uint_t                     ngx_http_api_key_moving;


/* what a failover error means (ngx_http_api_key_failover_kind) */
#define NGX_HTTP_API_KEY_FAILOVER_WAIT    1  /* the server is not ready yet:
                                                ask where the master is */
#define NGX_HTTP_API_KEY_FAILOVER_MOVED   2  /* not (or no longer) the master:
                                                connect again, too */


/* a Redis Cluster (redis-cluster://): cluster.c's connections */

static ngx_inline ngx_uint_t
ngx_http_api_key_is_cluster(void)
{
    return ngx_http_api_key_cmd.conf && ngx_http_api_key_cmd.conf->cluster;
}


/*
 * The worker's two connections, not connected yet: the units that use them
 * register (events.c) and set up (lookup.c, limits.c) first, then
 * ngx_http_api_key_redis_start() connects.
 */

ngx_int_t
ngx_http_api_key_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf)
{
    ngx_http_api_key_shctx_t       *sh;
    ngx_http_api_key_redis_conf_t  *conf;

    ngx_http_api_key_exiting = 0;
    ngx_http_api_key_moving = 0;
    ngx_http_api_key_amcf = amcf;
    conf = amcf->redis;

    ngx_http_api_key_rconn_init(&ngx_http_api_key_cmd, "commands", cycle,
                                conf);

    ngx_http_api_key_cmd.pcap = conf->max_pending
                                + NGX_HTTP_API_KEY_HANDSHAKE_MAX;
    ngx_http_api_key_cmd.pending = ngx_palloc(cycle->pool,
                     ngx_http_api_key_cmd.pcap
                     * sizeof(ngx_http_api_key_pending_t));
    if (ngx_http_api_key_cmd.pending == NULL) {
        return NGX_ERROR;
    }

    ngx_http_api_key_rconn_init(&ngx_http_api_key_sub, "events", cycle, conf);
    ngx_http_api_key_sub.conn = NGX_HTTP_API_KEY_CONN_EVENTS;

    /* redis-sentinel://: the sentinels say where the master is */

    if (conf->sentinel) {
        sh = ngx_http_api_key_first_sh(amcf);

        if (ngx_http_api_key_sentinel_init_worker(cycle, conf,
                                 ngx_http_api_key_master_moved,
                                 sh ? &sh->master_switches : NULL,
                                 sh ? &sh->master_queries : NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* a cluster: its connections are cluster.c's */

    if (conf->cluster) {
        return ngx_http_api_key_cluster_init_worker(cycle, conf,
                                     ngx_http_api_key_first_sh(amcf));
    }

    /* a host name without a resolver: said once (by the first worker) */

    if (conf->resolve && ngx_http_api_key_resolver(conf) == NULL
        && ngx_worker == 0)
    {
        if (conf->addr.sockaddr) {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "api_key: redis \"%V\" is used at %V, the address "
                          "its host had when nginx read its configuration: "
                          "without a \"resolver\" in the http block, a "
                          "change of that address is seen at the next "
                          "reload only", &conf->url_redacted,
                          &conf->addr.name);

        } else {
            ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                          "api_key: redis \"%V\": its host did not resolve "
                          "when nginx read its configuration and there is no "
                          "\"resolver\" in the http block: redis cannot be "
                          "reached until a reload", &conf->url_redacted);
        }
    }

    return NGX_OK;
}


void
ngx_http_api_key_redis_start(ngx_cycle_t *cycle)
{
    if (ngx_http_api_key_cmd.conf->sentinel) {
        ngx_http_api_key_sentinel_start();
    }

    if (ngx_http_api_key_is_cluster()) {
        ngx_http_api_key_cluster_start(ngx_http_api_key_cluster_typed_reply,
                                       ngx_http_api_key_cmd_ready_all,
                                       ngx_http_api_key_sub_ready_all);
        return;
    }

    ngx_http_api_key_rconn_connect(&ngx_http_api_key_cmd);
    ngx_http_api_key_rconn_connect(&ngx_http_api_key_sub);
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

    if (ngx_http_api_key_cmd.conf->sentinel) {
        ngx_http_api_key_sentinel_exit_worker();
    }

    if (ngx_http_api_key_is_cluster()) {
        ngx_http_api_key_cluster_exit_worker();
    }

    ngx_http_api_key_redis_io_cleanup();
}


static void
ngx_http_api_key_rconn_init(ngx_http_api_key_rconn_t *rc, const char *name,
    ngx_cycle_t *cycle, ngx_http_api_key_redis_conf_t *conf)
{
    ngx_memzero(rc, sizeof(ngx_http_api_key_rconn_t));

    rc->name = name;
    rc->conf = conf;
    rc->log = cycle->log;

    if (conf->addr.sockaddr) {
        ngx_http_api_key_rconn_set_addr(rc, conf->addr.sockaddr,
                                        conf->addr.socklen);
    }
    rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MIN;

    ngx_http_api_key_timer_init(&rc->connect_timer,
                                ngx_http_api_key_rconn_timeout_handler, rc,
                                cycle->log);
    ngx_http_api_key_timer_init(&rc->reconnect_timer,
                                ngx_http_api_key_rconn_reconnect_handler, rc,
                                cycle->log);
    ngx_http_api_key_timer_init(&rc->stall_timer,
                                ngx_http_api_key_cmd_stall_handler, rc,
                                cycle->log);
    ngx_http_api_key_timer_init(&rc->sub_timer,
                                ngx_http_api_key_sub_timeout_handler, rc,
                                cycle->log);
}


static void
ngx_http_api_key_rconn_close(ngx_http_api_key_rconn_t *rc)
{
    ngx_http_api_key_redis_io_t  *io;

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    if (rc->reconnect_timer.timer_set) {
        ngx_del_timer(&rc->reconnect_timer);
    }

    if (rc->stall_timer.timer_set) {
        ngx_del_timer(&rc->stall_timer);
    }

    if (rc->sub_timer.timer_set) {
        ngx_del_timer(&rc->sub_timer);
    }

    if (rc->resolving) {
        ngx_resolve_name_done(rc->resolving);
        rc->resolving = NULL;
    }

    if (rc->io) {
        io = rc->io;
        rc->io = NULL;
        ngx_http_api_key_redis_io_free(io);  /* pending callbacks: NULL */
    }
}


/* ---- connections ---------------------------------------------------- */

/*
 * A host name is resolved again, through the http block's resolver, before
 * every connection (nginx's resolver caches it as long as its TTL, or
 * "valid=", says); without a resolver the address it had at start is used.
 */

static void
ngx_http_api_key_rconn_connect(ngx_http_api_key_rconn_t *rc)
{
    ngx_addr_t                     *addr;
    ngx_http_api_key_redis_conf_t  *conf, *ioconf;

    conf = rc->conf;

    if (conf->sentinel) {
        /* where the sentinels last said; not known yet: once they say */

        addr = ngx_http_api_key_sentinel_master(&ioconf);

        if (addr == NULL) {
            return;
        }

        ngx_http_api_key_rconn_set_addr(rc, addr->sockaddr, addr->socklen);
        ngx_http_api_key_rconn_open(rc);
        return;
    }

    if (conf->resolve && ngx_http_api_key_resolver(conf)) {
        if (ngx_http_api_key_rconn_resolve(rc) != NGX_OK) {
            rc->lost = 1;
            ngx_http_api_key_rconn_schedule(rc);
        }

        return;
    }

    if (rc->addr.sockaddr == NULL) {
        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" failed: "
                          "its host did not resolve when nginx read its "
                          "configuration, and there is no \"resolver\"",
                          rc->name, &conf->url_redacted);
            rc->failing = 1;
        }

        rc->lost = 1;
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    ngx_http_api_key_rconn_open(rc);
}


/* the http block's resolver, if it has one with an address */

static ngx_resolver_t *
ngx_http_api_key_resolver(ngx_http_api_key_redis_conf_t *conf)
{
    ngx_resolver_t  *r;

    if (conf->core == NULL) {
        return NULL;
    }

    r = conf->core->resolver;

    if (r == NULL || r->connections.nelts == 0) {
        return NULL;
    }

    return r;
}


static ngx_int_t
ngx_http_api_key_rconn_resolve(ngx_http_api_key_rconn_t *rc)
{
    ngx_resolver_t                 *r;
    ngx_resolver_ctx_t             *ctx;
    ngx_http_api_key_redis_conf_t  *conf;

    conf = rc->conf;
    r = ngx_http_api_key_resolver(conf);

    ctx = ngx_resolve_start(r, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "api_key: redis %s connection to \"%V\": cannot "
                      "start resolving its host", rc->name,
                      &conf->url_redacted);
        return NGX_ERROR;
    }

    ctx->name = conf->host;
    ctx->handler = ngx_http_api_key_rconn_resolved;
    ctx->data = rc;
    ctx->timeout = (conf->core->resolver_timeout == NGX_CONF_UNSET_MSEC)
                   ? 30000 : conf->core->resolver_timeout;
    ctx->cancelable = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: redis %s connection to \"%V\": resolving",
                   rc->name, &conf->url_redacted);

    rc->resolving = ctx;

    /* (the handler may run from here: a name in the resolver's cache) */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        rc->resolving = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_api_key_rconn_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_uint_t                      i;
    ngx_http_api_key_rconn_t       *rc = ctx->data;
    ngx_http_api_key_redis_conf_t  *conf;

    conf = rc->conf;
    rc->resolving = NULL;

    if (ctx->state || ctx->naddrs == 0) {
        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" failed: "
                          "its host could not be resolved (%i: %s)",
                          rc->name, &conf->url_redacted, ctx->state,
                          ngx_resolver_strerror(ctx->state));
            rc->failing = 1;
        }

        ngx_resolve_name_done(ctx);

        rc->lost = 1;
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    /*
     * The address used so far, if it is still one of them; else the first.
     * A name with several addresses: after a failure (a connection to the
     * address refused, lost or not proven yet) the next one, so that a dead
     * address still in the DNS is not tried for ever.
     */

    for (i = 0; i < ctx->naddrs; i++) {
        if (rc->addr.sockaddr
            && ngx_cmp_sockaddr(ctx->addrs[i].sockaddr, ctx->addrs[i].socklen,
                                rc->addr.sockaddr, rc->addr.socklen, 0)
               == NGX_OK)
        {
            break;
        }
    }

    if (i < ctx->naddrs && rc->failing && ctx->naddrs > 1) {
        i = (i + 1) % ctx->naddrs;

        ngx_http_api_key_rconn_set_addr(rc, ctx->addrs[i].sockaddr,
                                        ctx->addrs[i].socklen);

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                       "api_key: redis %s connection to \"%V\": trying "
                       "its host's next address, %V", rc->name,
                       &conf->url_redacted, &rc->addr.name);

    } else if (i == ctx->naddrs) {
        ngx_http_api_key_rconn_set_addr(rc, ctx->addrs[0].sockaddr,
                                        ctx->addrs[0].socklen);

        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "api_key: redis %s connection to \"%V\": its host "
                      "is at %V now", rc->name, &conf->url_redacted,
                      &rc->addr.name);
    }

    ngx_resolve_name_done(ctx);

    ngx_http_api_key_rconn_open(rc);
}


/* rc->addr: a copy of sockaddr, with the url's port */

static void
ngx_http_api_key_rconn_set_addr(ngx_http_api_key_rconn_t *rc,
    struct sockaddr *sockaddr, socklen_t socklen)
{
    socklen = ngx_min(socklen, (socklen_t) sizeof(ngx_sockaddr_t));

    ngx_memcpy(&rc->sockaddr, sockaddr, socklen);

    rc->addr.sockaddr = &rc->sockaddr.sockaddr;
    rc->addr.socklen = socklen;

    if (rc->conf->resolve) {
        ngx_inet_set_port(rc->addr.sockaddr, rc->conf->port);
    }

    if (sockaddr->sa_family == AF_UNIX) {
        /* "unix:/path", as parsed */
        rc->addr.name = rc->conf->addr.name;
        return;
    }

    rc->addr.name.data = rc->addr_text;
    rc->addr.name.len = ngx_sock_ntop(rc->addr.sockaddr, rc->addr.socklen,
                                      rc->addr_text, NGX_SOCKADDR_STRLEN, 1);
}


static void
ngx_http_api_key_rconn_open(ngx_http_api_key_rconn_t *rc)
{
    int                             n;
    ngx_http_api_key_redis_io_t    *io;
    ngx_http_api_key_redis_conf_t  *conf, *ioconf;
    const char                     *argv[3];
    size_t                          argvlen[3];
    u_char                          db[NGX_INT_T_LEN];

    conf = rc->conf;
    ioconf = conf;

    if (conf->sentinel) {
        /* rediss-sentinel://: the name checked is the master's address */
        (void) ngx_http_api_key_sentinel_master(&ioconf);
    }

    io = ngx_http_api_key_redis_io_open(ioconf, &rc->addr,
                           (rc->conn == NGX_HTTP_API_KEY_CONN_COMMANDS)
                           ? rc->pcap : NGX_HTTP_API_KEY_HANDSHAKE_MAX,
                           rc->log);

    if (io == NULL) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis %s connection to \"%V\": out of memory",
                      rc->name, &conf->url_redacted);
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    if (io->err) {
        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" failed: %s",
                          rc->name, &conf->url_redacted, io->errstr);
            rc->failing = 1;
        }

        ngx_http_api_key_redis_io_free(io);
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    rc->io = io;

    rc->connected = 0;
    rc->handshake_done = 0;

    io->data = rc;
    io->on_connect = ngx_http_api_key_rconn_on_connect;
    io->on_disconnect = ngx_http_api_key_rconn_on_disconnect;

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

    n = ngx_http_api_key_redis_io_auth_argv(&conf->user, &conf->password,
                                            argv, argvlen);

    if (n) {
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

    /* through the sentinels: the server must say it is the master */

    if (conf->sentinel) {
        argv[0] = "ROLE";
        argvlen[0] = 4;

        ngx_http_api_key_rconn_handshake(rc, "ROLE", 1, argv, argvlen);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: redis %s connection to \"%V\": connecting, "
                   "%ui handshake commands", rc->name, &conf->url_redacted,
                   rc->pending_handshake);

    /* connected, or not, within connect_timeout */
    ngx_add_timer(&rc->connect_timer, conf->connect_timeout);

    /*
     * the events connection: subscribed, or not, within connect_timeout
     * and the stall time (its replies, as for the commands connection)
     */

    if (rc->conn == NGX_HTTP_API_KEY_CONN_EVENTS) {
        ngx_add_timer(&rc->sub_timer, conf->connect_timeout
                                      + ngx_http_api_key_stall_time(conf));
    }
}


static void
ngx_http_api_key_rconn_schedule(ngx_http_api_key_rconn_t *rc)
{
    /* this connection is gone: its subscription is not awaited any more */

    if (rc->sub_timer.timer_set) {
        ngx_del_timer(&rc->sub_timer);
    }

    if (ngx_http_api_key_exiting || ngx_exiting || ngx_terminate) {
        return;
    }

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    /* a connection to the master failed or went: has the master moved? */

    if (rc->conf->sentinel && !ngx_http_api_key_moving) {
        ngx_http_api_key_sentinel_rediscover(rc->name);
    }

    if (!rc->reconnect_timer.timer_set) {
        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                       "api_key: redis %s connection to \"%V\": again in "
                       "%M ms", rc->name, &rc->conf->url_redacted, rc->backoff);

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
    ngx_http_api_key_shctx_t  *sh;
    ngx_http_api_key_rconn_t  *rc = ev->data;

    if (rc->io == NULL && rc->resolving == NULL) {
        sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

        if (sh) {
            ngx_http_api_key_count(&sh->reconnects[rc->conn]);
        }

        ngx_http_api_key_rconn_connect(rc);
    }
}


/* connect_timeout: the socket never became connected */

static void
ngx_http_api_key_rconn_timeout_handler(ngx_event_t *ev)
{
    ngx_http_api_key_redis_io_t  *io;
    ngx_http_api_key_rconn_t     *rc = ev->data;

    if (rc->io == NULL || rc->connected) {
        return;
    }

    if (!rc->failing) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis %s connection to \"%V\" timed out",
                      rc->name, &rc->conf->url_redacted);
        rc->failing = 1;
    }

    io = rc->io;
    rc->io = NULL;
    rc->lost = 1;
    ngx_http_api_key_redis_io_free(io);

    ngx_http_api_key_rconn_schedule(rc);
}


static void
ngx_http_api_key_rconn_on_connect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_http_api_key_shctx_t  *sh;
    ngx_http_api_key_rconn_t  *rc = io->data;

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (status != NGX_OK) {
        if (sh && io->tls_failed) {
            ngx_http_api_key_count(&sh->tls_failures[rc->conn]);
        }

        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\" failed: %s",
                          rc->name, &rc->conf->url_redacted, io->errstr);
            rc->failing = 1;
        }

        /* the connection is freed when this callback returns */
        rc->io = NULL;
        rc->lost = 1;
        ngx_http_api_key_rconn_schedule(rc);
        return;
    }

    rc->connected = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: redis %s connection to \"%V\": connected",
                   rc->name, &rc->conf->url_redacted);

    if (sh) {
        ngx_http_api_key_count(&sh->connects[rc->conn]);

        if (io->tls_reused) {
            ngx_http_api_key_count(&sh->tls_reused[rc->conn]);
        }
    }

    /*
     * TCP is up, which proves little (a full server, a proxy in front of
     * one): the connection is used once its handshake is answered, and
     * the backoff starts over once the handshake (the commands connection)
     * or the subscription (the events connection) is answered
     * (ngx_http_api_key_rconn_proven)
     */

    if (rc->pending_handshake == 0) {
        ngx_http_api_key_rconn_handshake_done(rc);
    }
}


static void
ngx_http_api_key_rconn_on_disconnect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_http_api_key_shctx_t  *sh;
    ngx_http_api_key_rconn_t  *rc = io->data;

    rc->io = NULL;
    rc->connected = 0;
    rc->lost = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: redis %s connection to \"%V\": closed (%i)",
                   rc->name, &rc->conf->url_redacted, status);

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (sh) {
        ngx_http_api_key_count(&sh->disconnects[rc->conn]);

        if (io->tls_failed) {
            /* refused after the handshake: no client certificate */
            ngx_http_api_key_count(&sh->tls_failures[rc->conn]);
        }
    }

    if (ngx_http_api_key_exiting) {
        return;
    }

    if (status != NGX_OK && !rc->failing) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis %s connection to \"%V\" lost: %s",
                      rc->name, &rc->conf->url_redacted, io->errstr);
        rc->failing = 1;
    }

    /*
     * A subscribed connection is closed on an error reply nothing waited
     * for, its text in errstr: a (P)SUBSCRIBE the ACL user may not run.
     * How the last connection used (its handshake done) ended, for the
     * subscriber.
     */

    if (rc->handshake_done) {
        rc->closed_denied = (status != NGX_OK && io->err == REDIS_ERR_OTHER
                             && ngx_http_api_key_auth_error_str(io->errstr,
                                                  ngx_strlen(io->errstr)));
    }

    ngx_http_api_key_rconn_schedule(rc);
}


static void
ngx_http_api_key_rconn_handshake_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_http_api_key_rconn_t  *rc = io->data;

    if (reply == NULL) {
        return;
    }

    if (ngx_strcmp((char *) privdata, "ROLE") == 0
        && !ngx_http_api_key_role_is_master(reply))
    {
        /* a replica (the sentinels' answer was old): ask them again */

        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\": %V is "
                          "not the master (ROLE: %s), asking the sentinels "
                          "again", rc->name, &rc->conf->url_redacted,
                          &rc->addr.name,
                          (reply->type == REDIS_REPLY_ARRAY
                           && reply->elements
                           && reply->element[0]->type == REDIS_REPLY_STRING
                           && reply->element[0]->len < 16)
                          ? reply->element[0]->str : "?");
        }

        rc->failing = 1;

        ngx_http_api_key_sentinel_rediscover("ROLE is not master");
        ngx_http_api_key_redis_io_disconnect(io);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR
        && !((ngx_strcmp((char *) privdata, "PING") == 0
              || ngx_strcmp((char *) privdata, "ROLE") == 0)
             && reply->len >= 6 && ngx_strncmp(reply->str, "NOPERM", 6) == 0))
    {
        /* (an ACL user without PING: answered, authenticated, it works) */

        /* once per failure: the reconnections are not logged */

        /*
         * not what Redis echoes of an unknown command's arguments: those
         * of AUTH are the user and the password
         */

        if (!rc->failing) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "api_key: redis %s connection to \"%V\": %s "
                          "failed: %*s", rc->name, &rc->conf->url_redacted,
                          (char *) privdata,
                          ngx_http_api_key_error_len((u_char *) reply->str,
                                                     reply->len),
                          reply->str);
        }

        rc->failing = 1;

        if (ngx_http_api_key_redis_auth_error(reply)) {
            rc->denied = 1;
        }

        if (rc->conf->sentinel && ngx_http_api_key_redis_failover_error(reply))
        {
            ngx_http_api_key_sentinel_rediscover("a failover error");
        }

        /* every later command would fail the same way: start over */
        ngx_http_api_key_redis_io_disconnect(io);
        return;
    }

    /* (a refused command above is not counted: never done) */

    if (rc->pending_handshake && --rc->pending_handshake == 0) {
        ngx_http_api_key_rconn_handshake_done(rc);
    }
}


/*
 * The handshake (AUTH, SELECT, PING) is answered, or there is none: the
 * commands connection works; on the events connection, only the
 * subscription, sent from here, proves it (ngx_http_api_key_redis_
 * subscribed).  Nothing is sent before the handshake is answered, so that
 * a connection refused at its handshake is never mistaken for one that
 * works, on either connection: one log line per failure streak and a
 * growing backoff for both.
 */

static void
ngx_http_api_key_rconn_handshake_done(ngx_http_api_key_rconn_t *rc)
{
    ngx_uint_t  i;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: redis %s connection to \"%V\": handshake done",
                   rc->name, &rc->conf->url_redacted);

    rc->handshake_done = 1;

    if (rc->conn == NGX_HTTP_API_KEY_CONN_COMMANDS) {
        ngx_http_api_key_rconn_proven(rc);
    }

    for (i = 0; i < rc->nready; i++) {
        rc->ready[i]();
    }
}


/* a cluster's connections are ready: what registered for ours, in turn */

static void
ngx_http_api_key_cmd_ready_all(void)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_http_api_key_cmd.nready; i++) {
        ngx_http_api_key_cmd.ready[i]();
    }
}


static void
ngx_http_api_key_sub_ready_all(void)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_http_api_key_sub.nready; i++) {
        ngx_http_api_key_sub.ready[i]();
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
        rv = ngx_http_api_key_redis_io_send(rc->io,
                                    ngx_http_api_key_rconn_handshake_reply,
                                    (void *) what, argc, argv, argvlen);
    }

    if (rv == NGX_OK) {
        rc->pending_handshake++;
    }
}


/* the connection answered its handshake (or subscription): it works */

static void
ngx_http_api_key_rconn_proven(ngx_http_api_key_rconn_t *rc)
{
    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: redis %s connection to \"%V\": it works",
                   rc->name, &rc->conf->url_redacted);

    if (rc->failing) {
        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "api_key: redis %s connection to \"%V\" is up",
                      rc->name, &rc->conf->url_redacted);
    }

    rc->failing = 0;
    rc->denied = 0;
    rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MIN;
}


/* ---- the command connection: what waits for an answer -------------- */

static ngx_int_t
ngx_http_api_key_cmd_send(ngx_http_api_key_rconn_t *rc,
    ngx_http_api_key_redis_cb_pt fn,
    ngx_http_api_key_reply_pt handler, void *privdata, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_api_key_pending_t  *p;

    if (rc->io == NULL || rc->npending >= rc->pcap) {
        return NGX_ERROR;
    }

    if (ngx_http_api_key_redis_io_send(rc->io, ngx_http_api_key_cmd_reply, rc,
                                       argc, argv, argvlen)
        != NGX_OK)
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
ngx_http_api_key_cmd_reply(ngx_http_api_key_redis_io_t *io, redisReply *r,
    void *privdata)
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

    if (r && r->type == REDIS_REPLY_ERROR) {
        ngx_http_api_key_failover(rc, r);
    }

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
        p.fn(io, r, p.privdata);

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

    if (rc->io == NULL || rc->npending == 0) {
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
    ngx_http_api_key_redis_io_t  *io;

    ngx_http_api_key_outage_begin(rc);

    if (rc->outage_reopened++ == 0) {
        ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                      "api_key: redis commands connection to \"%V\" did "
                      "not answer for %M ms (%ui commands waiting): it is "
                      "closed and opened again", &rc->conf->url_redacted,
                      ngx_current_msec - rc->outage_start, rc->npending);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rc->log, 0,
                   "api_key: reopening the redis commands connection, "
                   "%ui commands waiting", rc->npending);

    rc->timeouts = 0;
    rc->connected = 0;
    rc->lost = 1;

    io = rc->io;
    rc->io = NULL;

    /* answers the pending callbacks with NULL; on_disconnect if connected */
    ngx_http_api_key_redis_io_free(io);

    if (!rc->reconnect_timer.timer_set) {
        ngx_http_api_key_rconn_schedule(rc);
    }
}


/*
 * The events connection was opened connect_timeout + the stall time ago
 * and its subscription is not confirmed: its AUTH, SELECT or (P)SUBSCRIBE
 * went unanswered (or could not be sent).  Without it no event arrives:
 * closed and opened again with the backoff, logged once per failure streak
 * (until the subscription is confirmed: "is up", then "is back").
 */

static void
ngx_http_api_key_sub_timeout_handler(ngx_event_t *ev)
{
    ngx_http_api_key_redis_io_t  *io;
    ngx_http_api_key_rconn_t     *rc = ev->data;

    if (rc->io == NULL || ngx_http_api_key_exiting) {
        return;
    }

    if (!rc->failing) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "api_key: redis events connection to \"%V\": %s was "
                      "not answered within %M ms: it is closed and opened "
                      "again; no event is received meanwhile",
                      &rc->conf->url_redacted,
                      rc->handshake_done ? "its subscription"
                                         : "its handshake (AUTH, SELECT)",
                      rc->conf->connect_timeout
                      + ngx_http_api_key_stall_time(rc->conf));
        rc->failing = 1;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: reopening the redis events connection to \"%V\"",
                   &rc->conf->url_redacted);

    rc->connected = 0;
    rc->lost = 1;

    io = rc->io;
    rc->io = NULL;

    /* on_disconnect (if connected) schedules the next connection */
    ngx_http_api_key_redis_io_free(io);

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

ngx_uint_t
ngx_http_api_key_redis_auth_error(redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    return ngx_http_api_key_auth_error_str(reply->str, reply->len);
}


static ngx_uint_t
ngx_http_api_key_auth_error_str(const char *s, size_t len)
{
    return (len >= 6 && ngx_strncmp(s, "NOPERM", 6) == 0)
           || (len >= 6 && ngx_strncmp(s, "NOAUTH", 6) == 0)
           || (len >= 9 && ngx_strncmp(s, "WRONGPASS", 9) == 0);
}


ngx_uint_t
ngx_http_api_key_redis_state(ngx_http_api_key_conn_e conn)
{
    ngx_http_api_key_rconn_t  *rc;

    if (ngx_http_api_key_is_cluster()) {
        return ngx_http_api_key_cluster_state(conn);
    }

    rc = (conn == NGX_HTTP_API_KEY_CONN_EVENTS) ? &ngx_http_api_key_sub
                                                : &ngx_http_api_key_cmd;

    return (rc->io && rc->connected) ? 1 : 0;
}


/*
 * A command on the command connection, for the quota leases: its answer
 * goes to handler (if any) as an ngx_http_api_key_reply_t.  argv[key] is
 * the name it works on (-1: none): on a cluster, it goes to that name's
 * master.
 */

ngx_int_t
ngx_http_api_key_redis_command(ngx_http_api_key_reply_pt handler, void *data,
    ngx_int_t key, int argc, const char **argv, const size_t *argvlen)
{
    ngx_http_api_key_rconn_t  *rc = &ngx_http_api_key_cmd;

    if (ngx_http_api_key_is_cluster()) {
        return ngx_http_api_key_cluster_send(NULL, handler, data, key, 0,
                                             argc, argv, argvlen);
    }

    if (rc->io == NULL || rc->npending >= rc->conf->max_pending) {
        return NGX_ERROR;
    }

    return ngx_http_api_key_cmd_send(rc, NULL, handler, data, argc, argv,
                                     argvlen);
}


ngx_uint_t
ngx_http_api_key_redis_ready(void)
{
    if (ngx_http_api_key_is_cluster()) {
        return ngx_http_api_key_cluster_ready();
    }

    return ngx_http_api_key_cmd.io != NULL;
}


/* a cluster's answer to a typed command (cluster.c calls it) */

static void
ngx_http_api_key_cluster_typed_reply(ngx_http_api_key_reply_pt handler,
    void *data, redisReply *reply)
{
    ngx_http_api_key_reply_t  out;

    if (reply) {
        ngx_http_api_key_reply_of(reply, &out);
    }

    handler(reply ? &out : NULL, data);
}


ngx_http_api_key_redis_conf_t *
ngx_http_api_key_redis_conf(void)
{
    return ngx_http_api_key_cmd.conf;
}


/* ---- for the record reads (lookup.c) -------------------------------- */

/*
 * May a read be sent now?  NGX_OK: yes.  NGX_ERROR: Redis cannot be asked
 * (not connected, or max_pending commands wait for an answer: the outage
 * counts it, the first such refusal warns); NGX_DECLINED: the same, after
 * Redis refused the module's credentials or commands.
 */

ngx_int_t
ngx_http_api_key_redis_read_admit(void)
{
    ngx_http_api_key_rconn_t       *rc;
    ngx_http_api_key_redis_conf_t  *conf;

    rc = &ngx_http_api_key_cmd;
    conf = rc->conf;

    if (ngx_http_api_key_is_cluster() && conf->prefix.len <= 256) {
        return ngx_http_api_key_cluster_admit();
    }

    /* (a prefix this long does not fit a read's key name) */

    if (rc->io == NULL || conf->prefix.len > 256) {
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

    return NGX_OK;
}


/*
 * A read on the command connection, hiredis's answer to fn; argv[key] is
 * the name it reads (-1: none), which routes it on a cluster (where it is
 * sent once more if its node goes away before it is answered).
 */

ngx_int_t
ngx_http_api_key_redis_send(ngx_http_api_key_redis_cb_pt fn, void *privdata,
    ngx_int_t key, int argc, const char **argv, const size_t *argvlen)
{
    if (ngx_http_api_key_is_cluster()) {
        return ngx_http_api_key_cluster_send(fn, NULL, privdata, key, 1,
                                             argc, argv, argvlen);
    }

    return ngx_http_api_key_cmd_send(&ngx_http_api_key_cmd, fn, NULL,
                                     privdata, argc, argv, argvlen);
}


/* a read timed out: the outage counts it; 1: it starts the outage */

ngx_uint_t
ngx_http_api_key_redis_outage_timeout(void)
{
    ngx_uint_t                 first;
    ngx_http_api_key_rconn_t  *rc = &ngx_http_api_key_cmd;

    first = !rc->outage;

    ngx_http_api_key_outage_begin(rc);    /* its last event: now */
    rc->outage_timeouts++;

    return first;
}


/*
 * One more read in a row without an answer: max_timeouts of them close the
 * connection and open it again (the pending callbacks are answered NULL).
 */

void
ngx_http_api_key_redis_unanswered(void)
{
    ngx_http_api_key_rconn_t  *rc = &ngx_http_api_key_cmd;

    if (++rc->timeouts >= rc->conf->max_timeouts && rc->io) {
        ngx_http_api_key_cmd_reopen(rc);
    }
}


/* a read was refused as unauthorized (1), or answered (0) */

void
ngx_http_api_key_redis_set_denied(ngx_uint_t denied)
{
    ngx_http_api_key_cmd.denied = denied ? 1 : 0;
}


/* ---- for the events subscriber (events.c) --------------------------- */

/*
 * at init time: what to do once a connection is up (TCP connected and its
 * handshake answered)
 */

void
ngx_http_api_key_redis_on_ready(ngx_http_api_key_conn_e conn,
    ngx_http_api_key_ready_pt ready)
{
    ngx_uint_t                 i;
    ngx_http_api_key_rconn_t  *rc;

    rc = (conn == NGX_HTTP_API_KEY_CONN_EVENTS) ? &ngx_http_api_key_sub
                                                : &ngx_http_api_key_cmd;

    for (i = 0; i < rc->nready; i++) {
        if (rc->ready[i] == ready) {
            return;
        }
    }

    if (rc->nready == NGX_HTTP_API_KEY_READY_MAX) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "api_key: more than %d ready callbacks on the redis %s "
                      "connection", NGX_HTTP_API_KEY_READY_MAX, rc->name);
        return;
    }

    rc->ready[rc->nready++] = ready;
}


/* a (P)SUBSCRIBE on the events connection; its messages go to fn */

ngx_int_t
ngx_http_api_key_redis_subscribe(ngx_http_api_key_redis_cb_pt fn, int argc,
    const char **argv, const size_t *argvlen)
{
    if (ngx_http_api_key_is_cluster()) {
        return ngx_http_api_key_cluster_subscribe(fn, argc, argv, argvlen);
    }

    if (ngx_http_api_key_sub.io == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_api_key_redis_io_subscribe(ngx_http_api_key_sub.io, fn,
                                               argc, argv, argvlen);
}


/*
 * The last events connection that got past its handshake (the one the
 * subscriber last subscribed on) was closed by an authorization error
 * (NOPERM): an error answer to its (P)SUBSCRIBE.
 */

ngx_uint_t
ngx_http_api_key_redis_sub_denied(void)
{
    if (ngx_http_api_key_is_cluster()) {
        return ngx_http_api_key_cluster_sub_denied();
    }

    return ngx_http_api_key_sub.closed_denied;
}


/*
 * The whole subscription is confirmed (SUBSCRIBE, and PSUBSCRIBE with
 * keyspace_events=on): the connection works.  1: it had been lost since the
 * last confirmation, or was never confirmed after a failure (events may
 * have been missed).
 */

ngx_uint_t
ngx_http_api_key_redis_subscribed(void)
{
    ngx_uint_t  lost;

    if (ngx_http_api_key_is_cluster()) {
        return ngx_http_api_key_cluster_subscribed();
    }

    if (ngx_http_api_key_sub.sub_timer.timer_set) {
        ngx_del_timer(&ngx_http_api_key_sub.sub_timer);
    }

    ngx_http_api_key_rconn_proven(&ngx_http_api_key_sub);

    lost = ngx_http_api_key_sub.lost;
    ngx_http_api_key_sub.lost = 0;

    return lost;
}


/* ---- failover: the master moves ------------------------------------ */

/*
 * The errors a server gives while a failover goes on (the cluster's
 * CLUSTERDOWN and TRYAGAIN belong here too): 0 for any other answer.
 */

static ngx_uint_t
ngx_http_api_key_failover_kind(const char *s, size_t len)
{
    ngx_uint_t  i;

    static const struct {
        ngx_str_t   prefix;
        ngx_uint_t  kind;
    } errors[] = {
        { ngx_string("READONLY"), NGX_HTTP_API_KEY_FAILOVER_MOVED },
        { ngx_string("MASTERDOWN"), NGX_HTTP_API_KEY_FAILOVER_MOVED },
        { ngx_string("LOADING"), NGX_HTTP_API_KEY_FAILOVER_WAIT },
    };

    for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        if (len >= errors[i].prefix.len
            && ngx_strncmp(s, errors[i].prefix.data, errors[i].prefix.len)
               == 0
            && (len == errors[i].prefix.len
                || s[errors[i].prefix.len] == ' '))
        {
            return errors[i].kind;
        }
    }

    return 0;
}


/* a failover error: the request's outcome is "unavailable", not "unknown" */

ngx_uint_t
ngx_http_api_key_redis_failover_error(redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    return ngx_http_api_key_failover_kind(reply->str, reply->len) ? 1 : 0;
}


/*
 * An answer on the commands connection was a failover error: counted; the
 * sentinels are asked where the master is; READONLY or MASTERDOWN (a
 * replica now, or one cut off from its master) also closes the connection
 * and opens it again with the backoff (to the address the sentinels give,
 * or, for redis://, the host's address then), where ROLE checks it.
 */

static void
ngx_http_api_key_failover(ngx_http_api_key_rconn_t *rc, redisReply *reply)
{
    u_char                       *p;
    size_t                        len;
    ngx_uint_t                    kind;
    ngx_http_api_key_shctx_t     *sh;
    ngx_http_api_key_redis_io_t  *io;

    kind = ngx_http_api_key_failover_kind(reply->str, reply->len);

    if (kind == 0) {
        return;
    }

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (sh) {
        ngx_http_api_key_count(&sh->failover_errors);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                   "api_key: redis failover error: %*s",
                   ngx_http_api_key_error_len((u_char *) reply->str,
                                              reply->len), reply->str);

    if (rc->conf->sentinel) {
        ngx_http_api_key_sentinel_rediscover("a failover error");
    }

    if (kind != NGX_HTTP_API_KEY_FAILOVER_MOVED || rc->io == NULL) {
        return;
    }

    /*
     * once per failure streak, and at most every 10 s (a redis:// url that
     * names a replica: every quota lease answers READONLY, and each new
     * connection proves itself in between)
     */

    if (!rc->failing
        && (rc->failover_logged == 0
            || ngx_current_msec - rc->failover_logged >= 10000))
    {
        rc->failover_logged = ngx_current_msec;

        /* the error's code only: READONLY, MASTERDOWN */

        p = ngx_strlchr((u_char *) reply->str,
                        (u_char *) reply->str + reply->len, ' ');
        len = p ? (size_t) (p - (u_char *) reply->str) : (size_t) reply->len;

        ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                      "api_key: redis %s connection to \"%V\": %V answers "
                      "%*s: it is not the master, connecting again",
                      rc->name, &rc->conf->url_redacted, &rc->addr.name,
                      len, reply->str);
        rc->failing = 1;
    }

    rc->connected = 0;
    rc->lost = 1;

    io = rc->io;
    rc->io = NULL;

    /* (in this connection's callback: closed once it returns) */
    ngx_http_api_key_redis_io_free(io);

    ngx_http_api_key_rconn_schedule(rc);
}


/* ROLE's answer says "master" (or ROLE is refused to this ACL user) */

static ngx_uint_t
ngx_http_api_key_role_is_master(redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        return reply->len >= 6 && ngx_strncmp(reply->str, "NOPERM", 6) == 0;
    }

    return reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
           && reply->element[0]->type == REDIS_REPLY_STRING
           && reply->element[0]->len == 6
           && ngx_strncmp(reply->element[0]->str, "master", 6) == 0;
}


/*
 * The sentinels say the master is elsewhere now (sentinel.c): both
 * connections go there at once (no backoff); what waited on the commands
 * connection is answered "no answer" (lookup.c retries a record read once).
 */

static void
ngx_http_api_key_master_moved(void)
{
    if (ngx_http_api_key_exiting) {
        return;
    }

    ngx_http_api_key_moving = 1;

    ngx_http_api_key_rconn_move(&ngx_http_api_key_cmd);
    ngx_http_api_key_rconn_move(&ngx_http_api_key_sub);

    ngx_http_api_key_moving = 0;
}


static void
ngx_http_api_key_rconn_move(ngx_http_api_key_rconn_t *rc)
{
    ngx_addr_t                     *addr;
    ngx_http_api_key_redis_io_t    *io;
    ngx_http_api_key_redis_conf_t  *ioconf;

    addr = ngx_http_api_key_sentinel_master(&ioconf);

    if (addr == NULL) {
        return;
    }

    if (rc->io) {
        if (rc->addr.sockaddr
            && ngx_cmp_sockaddr(addr->sockaddr, addr->socklen,
                                rc->addr.sockaddr, rc->addr.socklen, 1)
               == NGX_OK)
        {
            return;                 /* there already */
        }

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rc->log, 0,
                       "api_key: redis %s connection: moving from %V to %V",
                       rc->name, &rc->addr.name, &addr->name);

        rc->connected = 0;
        rc->lost = 1;

        io = rc->io;
        rc->io = NULL;
        ngx_http_api_key_redis_io_free(io);
    }

    if (rc->connect_timer.timer_set) {
        ngx_del_timer(&rc->connect_timer);
    }

    if (rc->sub_timer.timer_set) {
        ngx_del_timer(&rc->sub_timer);
    }

    if (rc->reconnect_timer.timer_set) {
        ngx_del_timer(&rc->reconnect_timer);
    }

    rc->backoff = NGX_HTTP_API_KEY_BACKOFF_MIN;

    ngx_http_api_key_rconn_connect(rc);
}
