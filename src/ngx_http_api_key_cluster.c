/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: Redis Cluster (redis-cluster://, for redis.c).
 *
 * Per worker: the slot map, from CLUSTER SLOTS asked of the first seed or
 * known node that answers; one command connection per master (redis_io.c,
 * an nginx connection), opened when a command first needs it.  A command
 * goes to the master of its key's slot (the core's ak_redis_slot()); a
 * command without a key to any master.
 *
 * Answers Redis gives while the cluster changes:
 * - MOVED slot addr: the slot is the other node's now: the map says so at
 *   once, is refreshed, and the command is sent there (at most
 *   NGX_HTTP_API_KEY_CLUSTER_REDIRECTS redirections);
 * - ASK slot addr: the slot is being migrated and the key is not on this
 *   node any more: the command is sent once to the named node, preceded by
 *   ASKING; the map does not change;
 * - CLUSTERDOWN, TRYAGAIN (the command did not run): the map is refreshed
 *   and the command sent once more after it; then no answer (NULL): the
 *   caller counts it as "unavailable", never "unknown";
 * - a node that does not answer (connection refused, lost, timed out,
 *   stalled): the map is refreshed; a read (redis.c's record reads) is sent
 *   once more after it, any other command is answered NULL: a quota lease
 *   that may have run is not run twice.
 * Every command accepted by ngx_http_api_key_cluster_send() is answered
 * exactly once (NULL: no answer), also when its node goes away or the
 * worker exits: nothing dangles.
 *
 * Events: keyspace notifications are node-local, so each master of the map
 * gets an events connection that PSUBSCRIBEs to the keyspace pattern; the
 * events channel is SUBSCRIBEd on one of them (the master of slot 0): a
 * PUBLISH reaches every node of a cluster.  The subscriber (events.c) sees
 * one subscription: its "ready" once every master's connection is up, one
 * "psubscribe" confirmation once every master confirmed.  When one of the
 * connections is lost, or the map's masters change, all of them are closed
 * and opened again on the current masters (with a backoff): the subscriber
 * then sees a subscription that was lost (its cached records are re-read).
 *
 * Nodes are known by their IP address and port as CLUSTER SLOTS gives them
 * (cluster-preferred-endpoint-type ip, Redis's default); at most
 * NGX_HTTP_API_KEY_CLUSTER_NODES of them per worker.
 */


#include "ngx_http_api_key_redis.h"


#define NGX_HTTP_API_KEY_CLUSTER_NODES      64
#define NGX_HTTP_API_KEY_CLUSTER_REDIRECTS  5

/* a node that failed is not tried again for this long */
#define NGX_HTTP_API_KEY_CLUSTER_DOWN       100

/* map refreshes: at most one at a time, one per this long */
#define NGX_HTTP_API_KEY_CLUSTER_REFRESH    100

#define NGX_HTTP_API_KEY_CLUSTER_BACKOFF_MAX  2000

/* no answer on a node for this long with commands waiting: a dead peer */
#define NGX_HTTP_API_KEY_CLUSTER_STALL_MIN  5000

/* the handshake's commands beyond max_pending */
#define NGX_HTTP_API_KEY_CLUSTER_EXTRA      8


typedef struct ngx_http_api_key_cnode_s  ngx_http_api_key_cnode_t;
typedef struct ngx_http_api_key_ccmd_s   ngx_http_api_key_ccmd_t;

struct ngx_http_api_key_cnode_s {
    ngx_addr_t                      addr;
    ngx_sockaddr_t                  sockaddr;
    u_char                          text[NGX_SOCKADDR_STRLEN];

    /* the command connection */
    ngx_http_api_key_redis_io_t    *io;          /* NULL: none */
    ngx_queue_t                     waiting;     /* until it is ready */
    ngx_uint_t                      npending;    /* sent, not answered */
    ngx_msec_t                      progress;    /* last answer or send */
    ngx_msec_t                      down_until;  /* failed: not before */
    ngx_msec_t                      opened;

    /* its events connection (a master) */
    ngx_http_api_key_redis_io_t    *sub;

    unsigned                        ready:1;     /* handshake answered */
    unsigned                        master:1;    /* in the current map */
    unsigned                        failing:1;   /* logged */
    unsigned                        sub_ready:1;
    unsigned                        sub_confirmed:1;
    unsigned                        sub_channel:1; /* carries SUBSCRIBE */
};

struct ngx_http_api_key_ccmd_s {
    ngx_queue_t                     queue;
    ngx_http_api_key_redis_cb_pt    fn;
    ngx_http_api_key_reply_pt       handler;
    void                           *privdata;
    ngx_http_api_key_cnode_t       *node;        /* sent to, or fixed */
    ngx_int_t                       slot;        /* -1: none */
    int                             argc;
    const char                    **argv;
    size_t                         *argvlen;
    unsigned                        read:1;      /* safe to send again */
    unsigned                        retried:1;
    unsigned                        asking:1;
    unsigned                        fixed:1;     /* to node, not routed */
    unsigned                        redirects:4;
    unsigned                        tries:8;     /* CLUSTER SLOTS */
    unsigned                        sending:1;   /* in cluster_send() */
    unsigned                        failed:1;    /* ... and already over */
};


static ngx_http_api_key_cnode_t *ngx_http_api_key_cluster_node(
    struct sockaddr *sa, socklen_t socklen);
static void ngx_http_api_key_cluster_dispatch(ngx_http_api_key_ccmd_t *cmd);
static void ngx_http_api_key_cluster_node_send(ngx_http_api_key_cnode_t *node,
    ngx_http_api_key_ccmd_t *cmd);
static ngx_int_t ngx_http_api_key_cluster_node_open(
    ngx_http_api_key_cnode_t *node);
static void ngx_http_api_key_cluster_on_connect(
    ngx_http_api_key_redis_io_t *io, ngx_int_t status);
static void ngx_http_api_key_cluster_on_disconnect(
    ngx_http_api_key_redis_io_t *io, ngx_int_t status);
static void ngx_http_api_key_cluster_auth_reply(
    ngx_http_api_key_redis_io_t *io, redisReply *reply, void *privdata);
static void ngx_http_api_key_cluster_node_ready(ngx_http_api_key_cnode_t *node);
static void ngx_http_api_key_cluster_node_failed(
    ngx_http_api_key_cnode_t *node, const char *why);
static void ngx_http_api_key_cluster_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata);
static void ngx_http_api_key_cluster_noop(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata);
static void ngx_http_api_key_cluster_again(ngx_http_api_key_ccmd_t *cmd);
static void ngx_http_api_key_cluster_finish(ngx_http_api_key_ccmd_t *cmd,
    ngx_http_api_key_redis_io_t *io, redisReply *reply);
static ngx_int_t ngx_http_api_key_cluster_redirect(redisReply *reply,
    ngx_int_t *slot, ngx_sockaddr_t *sa, socklen_t *socklen);
static ngx_int_t ngx_http_api_key_cluster_parse_addr(u_char *host, size_t len,
    ngx_int_t port, ngx_sockaddr_t *sa, socklen_t *socklen);
static void ngx_http_api_key_cluster_refresh(void);
static void ngx_http_api_key_cluster_refresh_handler(ngx_event_t *ev);
static void ngx_http_api_key_cluster_refresh_next(ngx_http_api_key_ccmd_t *cmd);
static void ngx_http_api_key_cluster_slots_reply(
    ngx_http_api_key_redis_io_t *io, redisReply *reply, void *privdata);
static ngx_int_t ngx_http_api_key_cluster_slots_apply(
    ngx_http_api_key_cnode_t *from, redisReply *reply);
static void ngx_http_api_key_cluster_refreshed(ngx_uint_t ok);
static void ngx_http_api_key_cluster_stall_handler(ngx_event_t *ev);
static void ngx_http_api_key_cluster_ev_open(void);
static void ngx_http_api_key_cluster_ev_handler(ngx_event_t *ev);
static void ngx_http_api_key_cluster_ev_lost(const char *why);
static void ngx_http_api_key_cluster_ev_close(void);
static void ngx_http_api_key_cluster_ev_on_connect(
    ngx_http_api_key_redis_io_t *io, ngx_int_t status);
static void ngx_http_api_key_cluster_ev_on_disconnect(
    ngx_http_api_key_redis_io_t *io, ngx_int_t status);
static void ngx_http_api_key_cluster_ev_auth_reply(
    ngx_http_api_key_redis_io_t *io, redisReply *reply, void *privdata);
static void ngx_http_api_key_cluster_ev_node_ready(
    ngx_http_api_key_cnode_t *node);
static void ngx_http_api_key_cluster_ev_message(
    ngx_http_api_key_redis_io_t *io, redisReply *reply, void *privdata);
static void ngx_http_api_key_cluster_ev_pattern_others(void);


static ngx_http_api_key_redis_conf_t    *ngx_http_api_key_cluster_conf;
static ngx_http_api_key_shctx_t         *ngx_http_api_key_cluster_sh;
static ngx_log_t                        *ngx_http_api_key_cluster_log;
static ngx_http_api_key_cluster_typed_pt ngx_http_api_key_cluster_typed;
static ngx_http_api_key_ready_pt         ngx_http_api_key_cluster_cmd_ready;
static ngx_http_api_key_ready_pt         ngx_http_api_key_cluster_sub_ready;

static ngx_http_api_key_cnode_t  *ngx_http_api_key_cluster_nodes;
static ngx_uint_t                 ngx_http_api_key_cluster_nnodes;
static ngx_uint_t                 ngx_http_api_key_cluster_nseeds;

/* the master of each slot; NULL: not known */
static ngx_http_api_key_cnode_t **ngx_http_api_key_cluster_slots;
static ngx_uint_t                 ngx_http_api_key_cluster_loaded;
static ngx_uint_t                 ngx_http_api_key_cluster_inflight;

/* commands waiting for the map */
static ngx_queue_t                ngx_http_api_key_cluster_map_wait;

static ngx_uint_t                 ngx_http_api_key_cluster_refreshing;
static ngx_uint_t                 ngx_http_api_key_cluster_refresh_again;
static ngx_uint_t                 ngx_http_api_key_cluster_next;
static ngx_msec_t                 ngx_http_api_key_cluster_refreshed_at;
static ngx_uint_t                 ngx_http_api_key_cluster_failing;
static ngx_event_t                ngx_http_api_key_cluster_refresh_ev;
static ngx_event_t                ngx_http_api_key_cluster_stall_ev;
static ngx_uint_t                 ngx_http_api_key_cluster_exiting;

/* events */
static ngx_event_t                ngx_http_api_key_cluster_ev_ev;
static ngx_msec_t                 ngx_http_api_key_cluster_ev_backoff;
static ngx_http_api_key_redis_cb_pt  ngx_http_api_key_cluster_ev_fn;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_open_n;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_ready_n;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_confirm_n;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_lost_flag;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_failing;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_up;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_denied;

/* the PSUBSCRIBE for the masters without the channel, sent once the channel
   is confirmed */
static u_char                     ngx_http_api_key_cluster_ev_pattern[1024];
static size_t                     ngx_http_api_key_cluster_ev_pattern_len;
static ngx_uint_t                 ngx_http_api_key_cluster_ev_pattern_wait;


/* sh: where the connections are counted (the metrics), or NULL */

ngx_int_t
ngx_http_api_key_cluster_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_redis_conf_t *conf, ngx_http_api_key_shctx_t *sh)
{
    ngx_uint_t   i;
    ngx_addr_t  *seeds;

    ngx_http_api_key_cluster_conf = conf;
    ngx_http_api_key_cluster_sh = sh;
    ngx_http_api_key_cluster_log = cycle->log;
    ngx_http_api_key_cluster_exiting = 0;
    ngx_http_api_key_cluster_loaded = 0;
    ngx_http_api_key_cluster_inflight = 0;
    ngx_http_api_key_cluster_refreshing = 0;
    ngx_http_api_key_cluster_ev_backoff = NGX_HTTP_API_KEY_CLUSTER_DOWN;
    ngx_http_api_key_cluster_ev_lost_flag = 0;

    ngx_queue_init(&ngx_http_api_key_cluster_map_wait);

    ngx_http_api_key_cluster_nodes = ngx_pcalloc(cycle->pool,
                                  NGX_HTTP_API_KEY_CLUSTER_NODES
                                  * sizeof(ngx_http_api_key_cnode_t));
    ngx_http_api_key_cluster_slots = ngx_pcalloc(cycle->pool,
                                  AK_REDIS_SLOTS
                                  * sizeof(ngx_http_api_key_cnode_t *));

    if (ngx_http_api_key_cluster_nodes == NULL
        || ngx_http_api_key_cluster_slots == NULL)
    {
        return NGX_ERROR;
    }

    ngx_http_api_key_cluster_nnodes = 0;

    seeds = conf->seeds->elts;

    for (i = 0; i < conf->seeds->nelts; i++) {
        (void) ngx_http_api_key_cluster_node(seeds[i].sockaddr,
                                             seeds[i].socklen);
    }

    ngx_http_api_key_cluster_nseeds = ngx_http_api_key_cluster_nnodes;

    /* (nginx's debug lines read a timer's data as a connection) */

    ngx_http_api_key_timer_init(&ngx_http_api_key_cluster_refresh_ev,
                                ngx_http_api_key_cluster_refresh_handler,
                                ngx_http_api_key_cluster_nodes, cycle->log);
    ngx_http_api_key_timer_init(&ngx_http_api_key_cluster_stall_ev,
                                ngx_http_api_key_cluster_stall_handler,
                                ngx_http_api_key_cluster_nodes, cycle->log);
    ngx_http_api_key_timer_init(&ngx_http_api_key_cluster_ev_ev,
                                ngx_http_api_key_cluster_ev_handler,
                                ngx_http_api_key_cluster_nodes, cycle->log);

    return NGX_OK;
}


/*
 * At the worker's start (redis.c): typed turns hiredis's answer into the
 * typed one of the callers without hiredis; cmd_ready runs once the first
 * map is loaded, sub_ready once every master's events connection is up.
 */

void
ngx_http_api_key_cluster_start(ngx_http_api_key_cluster_typed_pt typed,
    ngx_http_api_key_ready_pt cmd_ready, ngx_http_api_key_ready_pt sub_ready)
{
    ngx_http_api_key_cluster_typed = typed;
    ngx_http_api_key_cluster_cmd_ready = cmd_ready;
    ngx_http_api_key_cluster_sub_ready = sub_ready;

    ngx_http_api_key_cluster_refresh();
}


void
ngx_http_api_key_cluster_exit_worker(void)
{
    ngx_uint_t                 i;
    ngx_queue_t               *q;
    ngx_http_api_key_ccmd_t   *cmd;
    ngx_http_api_key_cnode_t  *node;
    ngx_http_api_key_redis_io_t  *io;

    if (ngx_http_api_key_cluster_nodes == NULL) {
        return;
    }

    ngx_http_api_key_cluster_exiting = 1;

    if (ngx_http_api_key_cluster_refresh_ev.timer_set) {
        ngx_del_timer(&ngx_http_api_key_cluster_refresh_ev);
    }

    if (ngx_http_api_key_cluster_stall_ev.timer_set) {
        ngx_del_timer(&ngx_http_api_key_cluster_stall_ev);
    }

    if (ngx_http_api_key_cluster_ev_ev.timer_set) {
        ngx_del_timer(&ngx_http_api_key_cluster_ev_ev);
    }

    ngx_http_api_key_cluster_ev_close();

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (node->io) {
            io = node->io;
            node->io = NULL;
            ngx_http_api_key_redis_io_free(io);  /* its commands: NULL */
        }

        while (!ngx_queue_empty(&node->waiting)) {
            q = ngx_queue_head(&node->waiting);
            ngx_queue_remove(q);
            cmd = ngx_queue_data(q, ngx_http_api_key_ccmd_t, queue);
            ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
        }
    }

    while (!ngx_queue_empty(&ngx_http_api_key_cluster_map_wait)) {
        q = ngx_queue_head(&ngx_http_api_key_cluster_map_wait);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_api_key_ccmd_t, queue);
        ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
    }
}


/* the node at this address, known or new; NULL: too many */

static ngx_http_api_key_cnode_t *
ngx_http_api_key_cluster_node(struct sockaddr *sa, socklen_t socklen)
{
    ngx_uint_t                 i;
    ngx_http_api_key_cnode_t  *node;

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (ngx_cmp_sockaddr(node->addr.sockaddr, node->addr.socklen,
                             sa, socklen, 1)
            == NGX_OK)
        {
            return node;
        }
    }

    if (ngx_http_api_key_cluster_nnodes == NGX_HTTP_API_KEY_CLUSTER_NODES) {
        ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\" has more than %d nodes: "
                      "the others are not used",
                      &ngx_http_api_key_cluster_conf->url_redacted,
                      NGX_HTTP_API_KEY_CLUSTER_NODES);
        return NULL;
    }

    node = &ngx_http_api_key_cluster_nodes[ngx_http_api_key_cluster_nnodes++];
    ngx_memzero(node, sizeof(ngx_http_api_key_cnode_t));

    socklen = ngx_min(socklen, (socklen_t) sizeof(ngx_sockaddr_t));
    ngx_memcpy(&node->sockaddr, sa, socklen);

    node->addr.sockaddr = &node->sockaddr.sockaddr;
    node->addr.socklen = socklen;
    node->addr.name.data = node->text;
    node->addr.name.len = ngx_sock_ntop(node->addr.sockaddr, socklen,
                                        node->text, NGX_SOCKADDR_STRLEN, 1);

    ngx_queue_init(&node->waiting);

    return node;
}


/* ---- commands --------------------------------------------------------- */

/*
 * May a read be sent?  NGX_OK, or NGX_ERROR: max_pending commands wait for
 * an answer already.
 */

ngx_int_t
ngx_http_api_key_cluster_admit(void)
{
    return (ngx_http_api_key_cluster_inflight
            < ngx_http_api_key_cluster_conf->max_pending)
           ? NGX_OK : NGX_ERROR;
}


ngx_uint_t
ngx_http_api_key_cluster_ready(void)
{
    return ngx_http_api_key_cluster_loaded;
}


/* 1: a command connection is up (metrics) */

ngx_uint_t
ngx_http_api_key_cluster_state(ngx_http_api_key_conn_e conn)
{
    ngx_uint_t  i;

    if (conn == NGX_HTTP_API_KEY_CONN_EVENTS) {
        return ngx_http_api_key_cluster_ev_up;
    }

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        if (ngx_http_api_key_cluster_nodes[i].ready) {
            return 1;
        }
    }

    return 0;
}


/*
 * A command, to the master of argv[key]'s slot (key < 0: any master): its
 * answer goes to fn (hiredis's) or handler (typed), exactly once (NULL: no
 * answer).  read: it may be sent a second time when its node went away.
 * NGX_ERROR: not accepted (max_pending commands wait), or failed at once
 * (no master for its slot, its master down): no callback.
 */

ngx_int_t
ngx_http_api_key_cluster_send(ngx_http_api_key_redis_cb_pt fn,
    ngx_http_api_key_reply_pt handler, void *privdata, ngx_int_t key,
    ngx_uint_t read, int argc, const char **argv, const size_t *argvlen)
{
    int                       i;
    size_t                    size;
    u_char                   *p;
    ngx_http_api_key_ccmd_t  *cmd;

    if (ngx_http_api_key_cluster_exiting
        || ngx_http_api_key_cluster_inflight
           >= ngx_http_api_key_cluster_conf->max_pending
        || key >= argc)
    {
        return NGX_ERROR;
    }

    /* the command and a copy of its arguments: it may be sent again */

    size = sizeof(ngx_http_api_key_ccmd_t)
           + argc * (sizeof(char *) + sizeof(size_t));

    for (i = 0; i < argc; i++) {
        size += argvlen[i];
    }

    cmd = ngx_alloc(size, ngx_http_api_key_cluster_log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(cmd, sizeof(ngx_http_api_key_ccmd_t));

    cmd->fn = fn;
    cmd->handler = handler;
    cmd->privdata = privdata;
    cmd->read = read ? 1 : 0;
    cmd->argc = argc;
    cmd->argv = (const char **) (cmd + 1);
    cmd->argvlen = (size_t *) (cmd->argv + argc);

    p = (u_char *) (cmd->argvlen + argc);

    for (i = 0; i < argc; i++) {
        cmd->argv[i] = (const char *) p;
        cmd->argvlen[i] = argvlen[i];
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    cmd->slot = (key < 0) ? -1
                          : (ngx_int_t) ak_redis_slot(argv[key], argvlen[key]);

    ngx_http_api_key_cluster_inflight++;

    /*
     * A command that fails at once (no master for its slot, its master
     * down or not reachable) is not answered from inside this call: the
     * caller may not have set up what the answer needs yet.  It hears
     * NGX_ERROR instead, as for a command not accepted.
     */

    cmd->sending = 1;

    ngx_http_api_key_cluster_dispatch(cmd);

    if (cmd->failed) {
        ngx_free(cmd);
        return NGX_ERROR;
    }

    cmd->sending = 0;

    return NGX_OK;
}


/* to its slot's master, or to wait for the map */

static void
ngx_http_api_key_cluster_dispatch(ngx_http_api_key_ccmd_t *cmd)
{
    ngx_uint_t                 i, n;
    ngx_http_api_key_cnode_t  *node;

    node = NULL;

    if (cmd->fixed) {
        node = cmd->node;

    } else if (ngx_http_api_key_cluster_loaded) {

        if (cmd->slot >= 0) {
            node = ngx_http_api_key_cluster_slots[cmd->slot];

        } else {
            /* any master: the first of the map, else any node */
            n = ngx_http_api_key_cluster_nnodes;

            for (i = 0; i < n; i++) {
                if (ngx_http_api_key_cluster_nodes[i].master) {
                    node = &ngx_http_api_key_cluster_nodes[i];
                    break;
                }
            }
        }
    }

    if (node == NULL && ngx_http_api_key_cluster_loaded && !cmd->fixed) {
        /* a slot without a usable master */
        ngx_http_api_key_cluster_refresh();
        ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
        return;
    }

    if (node == NULL) {
        ngx_queue_insert_tail(&ngx_http_api_key_cluster_map_wait,
                              &cmd->queue);
        ngx_http_api_key_cluster_refresh();
        return;
    }

    ngx_http_api_key_cluster_node_send(node, cmd);
}


static void
ngx_http_api_key_cluster_node_send(ngx_http_api_key_cnode_t *node,
    ngx_http_api_key_ccmd_t *cmd)
{
    static const char    *asking[] = { "ASKING" };
    static const size_t   asking_len[] = { 6 };

    cmd->node = node;

    if (node->io == NULL) {
        if (ngx_current_msec < node->down_until
            || ngx_http_api_key_cluster_node_open(node) != NGX_OK)
        {
            ngx_http_api_key_cluster_again(cmd);
            return;
        }
    }

    if (!node->ready) {
        ngx_queue_insert_tail(&node->waiting, &cmd->queue);
        return;
    }

    if (cmd->asking) {
        cmd->asking = 0;

        if (ngx_http_api_key_redis_io_send(node->io,
                                           ngx_http_api_key_cluster_noop,
                                           NULL, 1, asking, asking_len)
            != NGX_OK)
        {
            ngx_http_api_key_cluster_again(cmd);
            return;
        }

        node->npending++;
    }

    if (ngx_http_api_key_redis_io_send(node->io, ngx_http_api_key_cluster_reply,
                                       cmd, cmd->argc, cmd->argv,
                                       cmd->argvlen)
        != NGX_OK)
    {
        ngx_http_api_key_cluster_again(cmd);
        return;
    }

    if (node->npending++ == 0) {
        node->progress = ngx_current_msec;
    }

    if (!ngx_http_api_key_cluster_stall_ev.timer_set) {
        ngx_add_timer(&ngx_http_api_key_cluster_stall_ev, 1000);
    }
}


static ngx_int_t
ngx_http_api_key_cluster_node_open(ngx_http_api_key_cnode_t *node)
{
    int                             n;
    ngx_http_api_key_redis_io_t    *io;
    ngx_http_api_key_redis_conf_t  *conf;
    const char                     *argv[3];
    size_t                          argvlen[3];

    conf = ngx_http_api_key_cluster_conf;

    io = ngx_http_api_key_redis_io_open(conf, &node->addr,
                                        conf->max_pending
                                        + NGX_HTTP_API_KEY_CLUSTER_EXTRA,
                                        ngx_http_api_key_cluster_log);
    if (io == NULL) {
        return NGX_ERROR;
    }

    if (io->err) {
        ngx_http_api_key_cluster_node_failed(node, io->errstr);
        ngx_http_api_key_redis_io_free(io);
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_cluster_log, 0,
                   "api_key: redis cluster node %V: connecting",
                   &node->addr.name);

    node->io = io;
    node->ready = 0;
    node->npending = 0;
    node->opened = ngx_current_msec;

    io->data = node;
    io->on_connect = ngx_http_api_key_cluster_on_connect;
    io->on_disconnect = ngx_http_api_key_cluster_on_disconnect;

    n = ngx_http_api_key_redis_io_auth_argv(&conf->user, &conf->password,
                                            argv, argvlen);

    if (n) {
        if (ngx_http_api_key_redis_io_send(io,
                                           ngx_http_api_key_cluster_auth_reply,
                                           node, n, argv, argvlen)
            != NGX_OK)
        {
            node->io = NULL;
            ngx_http_api_key_redis_io_free(io);
            return NGX_ERROR;
        }
    }

    /* connected or not within connect_timeout: the stall check */

    if (!ngx_http_api_key_cluster_stall_ev.timer_set) {
        ngx_add_timer(&ngx_http_api_key_cluster_stall_ev, 1000);
    }

    return NGX_OK;
}


static void
ngx_http_api_key_cluster_on_connect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_http_api_key_cnode_t  *node = io->data;

    if (status != NGX_OK) {
        /* freed when this returns; its commands were answered NULL */
        if (node->io == io) {
            node->io = NULL;
        }

        ngx_http_api_key_cluster_node_failed(node, io->errstr);
        return;
    }

    if (ngx_http_api_key_cluster_sh) {
        ngx_http_api_key_count(&ngx_http_api_key_cluster_sh->connects[
                                             NGX_HTTP_API_KEY_CONN_COMMANDS]);
    }

    if (ngx_http_api_key_cluster_conf->password.len == 0) {
        ngx_http_api_key_cluster_node_ready(node);
    }
}


static void
ngx_http_api_key_cluster_auth_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_http_api_key_cnode_t  *node = privdata;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (!node->failing) {
            ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_cluster_log, 0,
                          "api_key: redis cluster \"%V\", node %V: AUTH "
                          "failed: %*s",
                          &ngx_http_api_key_cluster_conf->url_redacted,
                          &node->addr.name,
                          ngx_http_api_key_error_len((u_char *) reply->str,
                                                     reply->len),
                          reply->str);
            node->failing = 1;
        }

        ngx_http_api_key_redis_io_disconnect(io);
        return;
    }

    ngx_http_api_key_cluster_node_ready(node);
}


static void
ngx_http_api_key_cluster_node_ready(ngx_http_api_key_cnode_t *node)
{
    ngx_queue_t              *q;
    ngx_http_api_key_ccmd_t  *cmd;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_cluster_log, 0,
                   "api_key: redis cluster node %V: ready", &node->addr.name);

    if (node->failing) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\", node %V is up",
                      &ngx_http_api_key_cluster_conf->url_redacted,
                      &node->addr.name);
        node->failing = 0;
    }

    node->ready = 1;
    node->progress = ngx_current_msec;

    while (!ngx_queue_empty(&node->waiting) && node->io && node->ready) {
        q = ngx_queue_head(&node->waiting);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_api_key_ccmd_t, queue);
        ngx_http_api_key_cluster_node_send(node, cmd);
    }
}


static void
ngx_http_api_key_cluster_on_disconnect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_http_api_key_cnode_t  *node = io->data;

    /* its commands were answered NULL already */

    if (ngx_http_api_key_cluster_sh) {
        ngx_http_api_key_count(&ngx_http_api_key_cluster_sh->disconnects[
                                             NGX_HTTP_API_KEY_CONN_COMMANDS]);
    }

    if (node->io != io) {
        return;                 /* closed by the stall check */
    }

    node->io = NULL;

    if (ngx_http_api_key_cluster_exiting) {
        return;
    }

    ngx_http_api_key_cluster_node_failed(node,
                                  status == NGX_OK ? "closed" : io->errstr);
}


/*
 * The node's connection failed or went: the commands waiting for it are
 * sent again or answered NULL, the node is left alone for a while, and the
 * map is refreshed (a failover, a node removed).
 */

static void
ngx_http_api_key_cluster_node_failed(ngx_http_api_key_cnode_t *node,
    const char *why)
{
    ngx_queue_t              *q;
    ngx_queue_t               waiting;
    ngx_http_api_key_ccmd_t  *cmd;

    node->ready = 0;
    node->npending = 0;
    node->down_until = ngx_current_msec + NGX_HTTP_API_KEY_CLUSTER_DOWN;

    if (!node->failing && !ngx_http_api_key_cluster_exiting) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\", node %V: %s; the "
                      "slot map is read again",
                      &ngx_http_api_key_cluster_conf->url_redacted,
                      &node->addr.name, why);
        node->failing = 1;
    }

    ngx_queue_init(&waiting);

    if (!ngx_queue_empty(&node->waiting)) {
        ngx_queue_add(&waiting, &node->waiting);
        ngx_queue_init(&node->waiting);
    }

    while (!ngx_queue_empty(&waiting)) {
        q = ngx_queue_head(&waiting);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_api_key_ccmd_t, queue);
        ngx_http_api_key_cluster_again(cmd);
    }

    if (!ngx_http_api_key_cluster_exiting) {
        ngx_http_api_key_cluster_refresh();
    }
}


static void
ngx_http_api_key_cluster_noop(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_http_api_key_cnode_t  *node = io->data;

    if (reply && node->npending) {
        node->npending--;
        node->progress = ngx_current_msec;
    }
}


static void
ngx_http_api_key_cluster_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_int_t                  slot;
    socklen_t                  socklen;
    ngx_sockaddr_t             sa;
    ngx_http_api_key_ccmd_t   *cmd = privdata;
    ngx_http_api_key_cnode_t  *node, *to;

    node = io->data;

    if (reply == NULL) {
        /* the connection went: again once (a read), after a refresh */
        ngx_http_api_key_cluster_again(cmd);
        return;
    }

    if (node->npending) {
        node->npending--;
    }

    node->progress = ngx_current_msec;

    if (reply->type != REDIS_REPLY_ERROR || cmd->fixed) {
        ngx_http_api_key_cluster_finish(cmd, io, reply);
        return;
    }

    /* MOVED, ASK: the slot is (being) moved */

    if ((reply->len > 6 && ngx_strncmp(reply->str, "MOVED ", 6) == 0)
        || (reply->len > 4 && ngx_strncmp(reply->str, "ASK ", 4) == 0))
    {
        if (ngx_http_api_key_cluster_redirect(reply, &slot, &sa, &socklen)
            != NGX_OK
            || cmd->redirects >= NGX_HTTP_API_KEY_CLUSTER_REDIRECTS
            || (to = ngx_http_api_key_cluster_node(&sa.sockaddr, socklen))
               == NULL)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_cluster_log, 0,
                          "api_key: redis cluster \"%V\": a redirection "
                          "that cannot be followed: %*s",
                          &ngx_http_api_key_cluster_conf->url_redacted,
                          ngx_http_api_key_error_len((u_char *) reply->str,
                                                     reply->len),
                          reply->str);
            ngx_http_api_key_cluster_refresh();
            ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
            return;
        }

        cmd->redirects++;

        if (reply->str[0] == 'M') {
            ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_cluster_log,
                           0, "api_key: redis cluster: slot %i MOVED to %V",
                           slot, &to->addr.name);

            ngx_http_api_key_cluster_slots[slot] = to;
            ngx_http_api_key_cluster_refresh();

        } else {
            ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_cluster_log,
                           0, "api_key: redis cluster: slot %i: ASK %V",
                           slot, &to->addr.name);

            cmd->asking = 1;
        }

        ngx_http_api_key_cluster_node_send(to, cmd);
        return;
    }

    /* the cluster is failing over, a slot being migrated: did not run */

    if ((reply->len >= 11 && ngx_strncmp(reply->str, "CLUSTERDOWN", 11) == 0)
        || (reply->len >= 8 && ngx_strncmp(reply->str, "TRYAGAIN", 8) == 0))
    {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_cluster_log, 0,
                       "api_key: redis cluster: %*s", (size_t) reply->len,
                       reply->str);

        if (!cmd->retried) {
            cmd->retried = 1;
            ngx_queue_insert_tail(&ngx_http_api_key_cluster_map_wait,
                                  &cmd->queue);
            ngx_http_api_key_cluster_refresh();
            return;
        }

        ngx_http_api_key_cluster_refresh();
        ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
        return;
    }

    ngx_http_api_key_cluster_finish(cmd, io, reply);
}


/*
 * Its node could not take it or went away: a read is sent once more after
 * the map is read again; anything else is answered NULL (it may have run).
 */

static void
ngx_http_api_key_cluster_again(ngx_http_api_key_ccmd_t *cmd)
{
    if (cmd->fixed) {
        /* CLUSTER SLOTS: the next node */
        ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
        return;
    }

    if (cmd->read && !cmd->retried && !ngx_http_api_key_cluster_exiting) {
        cmd->retried = 1;
        cmd->asking = 0;
        ngx_queue_insert_tail(&ngx_http_api_key_cluster_map_wait,
                              &cmd->queue);
        ngx_http_api_key_cluster_refresh();
        return;
    }

    ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
}


static void
ngx_http_api_key_cluster_finish(ngx_http_api_key_ccmd_t *cmd,
    ngx_http_api_key_redis_io_t *io, redisReply *reply)
{
    ngx_http_api_key_cluster_inflight--;

    if (cmd->sending) {
        /* over before cluster_send() returned: it says NGX_ERROR */
        cmd->failed = 1;
        return;
    }

    if (cmd->fn) {
        cmd->fn(io, reply, cmd->privdata);

    } else if (cmd->handler) {
        ngx_http_api_key_cluster_typed(cmd->handler, cmd->privdata, reply);
    }

    ngx_free(cmd);
}


/* "MOVED 3999 127.0.0.1:6381", "ASK 3999 [::1]:6381" */

static ngx_int_t
ngx_http_api_key_cluster_redirect(redisReply *reply, ngx_int_t *slot,
    ngx_sockaddr_t *sa, socklen_t *socklen)
{
    u_char     *p, *last, *sp, *colon;
    ngx_int_t   port;

    p = (u_char *) reply->str;
    last = p + reply->len;

    p = ngx_strlchr(p, last, ' ');
    if (p == NULL) {
        return NGX_ERROR;
    }

    p++;
    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL) {
        return NGX_ERROR;
    }

    *slot = ngx_atoi(p, sp - p);
    if (*slot == NGX_ERROR || *slot >= AK_REDIS_SLOTS) {
        return NGX_ERROR;
    }

    p = sp + 1;

    for (colon = last - 1; colon > p && *colon != ':'; colon--) {
        /* void */
    }

    if (colon <= p) {
        return NGX_ERROR;
    }

    port = ngx_atoi(colon + 1, last - colon - 1);

    if (*p == '[' && colon[-1] == ']') {
        p++;
        colon--;
    }

    return ngx_http_api_key_cluster_parse_addr(p, colon - p, port, sa,
                                               socklen);
}


static ngx_int_t
ngx_http_api_key_cluster_parse_addr(u_char *host, size_t len, ngx_int_t port,
    ngx_sockaddr_t *sa, socklen_t *socklen)
{
    in_addr_t  in;

    if (port < 1 || port > 65535) {
        return NGX_ERROR;
    }

    ngx_memzero(sa, sizeof(ngx_sockaddr_t));

    in = ngx_inet_addr(host, len);

    if (in != INADDR_NONE) {
        sa->sockaddr_in.sin_family = AF_INET;
        sa->sockaddr_in.sin_addr.s_addr = in;
        sa->sockaddr_in.sin_port = htons((in_port_t) port);
        *socklen = sizeof(struct sockaddr_in);
        return NGX_OK;
    }

#if (NGX_HAVE_INET6)
    if (ngx_inet6_addr(host, len, sa->sockaddr_in6.sin6_addr.s6_addr)
        == NGX_OK)
    {
        sa->sockaddr_in6.sin6_family = AF_INET6;
        sa->sockaddr_in6.sin6_port = htons((in_port_t) port);
        *socklen = sizeof(struct sockaddr_in6);
        return NGX_OK;
    }
#endif

    return NGX_ERROR;
}


/* ---- the slot map ------------------------------------------------------ */

/*
 * Asks CLUSTER SLOTS of a node: the seeds and the known nodes in turn,
 * from where the last good answer came; one refresh at a time and one per
 * NGX_HTTP_API_KEY_CLUSTER_REFRESH ms at most.
 */

static void
ngx_http_api_key_cluster_refresh(void)
{
    ngx_msec_t                 since;
    ngx_http_api_key_ccmd_t   *cmd;

    static const char    *argv[] = { "CLUSTER", "SLOTS" };
    static const size_t   argvlen[] = { 7, 5 };

    if (ngx_http_api_key_cluster_exiting) {
        return;
    }

    if (ngx_http_api_key_cluster_refreshing) {
        ngx_http_api_key_cluster_refresh_again = 1;
        return;
    }

    if (ngx_http_api_key_cluster_refresh_ev.timer_set) {
        return;
    }

    since = ngx_current_msec - ngx_http_api_key_cluster_refreshed_at;

    if (ngx_http_api_key_cluster_refreshed_at
        && since < NGX_HTTP_API_KEY_CLUSTER_REFRESH)
    {
        ngx_add_timer(&ngx_http_api_key_cluster_refresh_ev,
                      NGX_HTTP_API_KEY_CLUSTER_REFRESH - since);
        return;
    }

    cmd = ngx_alloc(sizeof(ngx_http_api_key_ccmd_t),
                    ngx_http_api_key_cluster_log);
    if (cmd == NULL) {
        return;
    }

    ngx_memzero(cmd, sizeof(ngx_http_api_key_ccmd_t));

    cmd->fn = ngx_http_api_key_cluster_slots_reply;
    cmd->privdata = cmd;
    cmd->fixed = 1;
    cmd->slot = -1;
    cmd->argc = 2;
    cmd->argv = (const char **) argv;
    cmd->argvlen = (size_t *) argvlen;

    ngx_http_api_key_cluster_refreshing = 1;
    ngx_http_api_key_cluster_refresh_again = 0;
    ngx_http_api_key_cluster_inflight++;

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_cluster_log, 0,
                   "api_key: redis cluster: reading the slot map");

    ngx_http_api_key_cluster_refresh_next(cmd);
}


static void
ngx_http_api_key_cluster_refresh_handler(ngx_event_t *ev)
{
    ngx_http_api_key_cluster_refresh();
}


/* the next node to ask; none left: the refresh failed */

static void
ngx_http_api_key_cluster_refresh_next(ngx_http_api_key_ccmd_t *cmd)
{
    ngx_uint_t                 n;
    ngx_http_api_key_cnode_t  *node;

    n = ngx_http_api_key_cluster_nnodes;

    while (cmd->tries < n) {
        node = &ngx_http_api_key_cluster_nodes[
                                   (ngx_http_api_key_cluster_next + cmd->tries)
                                   % n];
        cmd->tries++;

        if (node->io == NULL && ngx_current_msec < node->down_until) {
            continue;
        }

        cmd->node = node;

        /* its answer, or NULL, comes to slots_reply */
        ngx_http_api_key_cluster_node_send(node, cmd);
        return;
    }

    ngx_http_api_key_cluster_inflight--;
    ngx_free(cmd);

    ngx_http_api_key_cluster_refreshed(0);
}


static void
ngx_http_api_key_cluster_slots_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_uint_t                 i;
    ngx_http_api_key_ccmd_t   *cmd = privdata;
    ngx_http_api_key_ccmd_t   *next;
    ngx_http_api_key_cnode_t  *node;

    /* finish() frees cmd after this returns: a copy goes on */

    node = cmd->node;

    if (reply != NULL
        && ngx_http_api_key_cluster_slots_apply(node, reply) == NGX_OK)
    {
        for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
            if (&ngx_http_api_key_cluster_nodes[i] == node) {
                ngx_http_api_key_cluster_next = i;
            }
        }

        ngx_http_api_key_cluster_refreshed(1);
        return;
    }

    if (reply && !ngx_http_api_key_cluster_failing) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\": node %V gave no "
                      "usable slot map%s%*s",
                      &ngx_http_api_key_cluster_conf->url_redacted,
                      &node->addr.name,
                      reply->type == REDIS_REPLY_ERROR ? ": " : "",
                      reply->type == REDIS_REPLY_ERROR
                      ? ngx_http_api_key_error_len((u_char *) reply->str,
                                                   reply->len)
                      : 0,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    }

    /* the next node, with a command of its own (this one is freed) */

    if (ngx_http_api_key_cluster_exiting) {
        return;
    }

    ngx_http_api_key_cluster_refreshing = 0;
    ngx_http_api_key_cluster_refresh_again = 0;

    next = ngx_alloc(sizeof(ngx_http_api_key_ccmd_t),
                     ngx_http_api_key_cluster_log);
    if (next == NULL) {
        ngx_http_api_key_cluster_refreshed(0);
        return;
    }

    *next = *cmd;
    next->privdata = next;

    ngx_http_api_key_cluster_refreshing = 1;
    ngx_http_api_key_cluster_inflight++;

    ngx_http_api_key_cluster_refresh_next(next);
}


/*
 * [[start, end, [ip, port, id, ...], replicas...], ...]: the masters; an
 * empty ip is the node asked.  Every slot must be covered; the nodes not in
 * the answer stay known (as seeds for the next refresh) but are no masters.
 */

static ngx_int_t
ngx_http_api_key_cluster_slots_apply(ngx_http_api_key_cnode_t *from,
    redisReply *reply)
{
    size_t                      i, covered;
    ngx_uint_t                  k, changed;
    socklen_t                   socklen;
    long long                   start, end, s;
    redisReply                 *range, *m;
    ngx_sockaddr_t              sa;
    ngx_http_api_key_cnode_t   *node;
    ngx_http_api_key_cnode_t  **slots;
    u_char                      was[NGX_HTTP_API_KEY_CLUSTER_NODES];

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        return NGX_ERROR;
    }

    /* checked whole before the map changes */

    covered = 0;

    for (i = 0; i < reply->elements; i++) {
        range = reply->element[i];

        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
            || range->element[0]->type != REDIS_REPLY_INTEGER
            || range->element[1]->type != REDIS_REPLY_INTEGER
            || range->element[2]->type != REDIS_REPLY_ARRAY
            || range->element[2]->elements < 2
            || range->element[2]->element[0]->type != REDIS_REPLY_STRING
            || range->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
        {
            return NGX_ERROR;
        }

        start = range->element[0]->integer;
        end = range->element[1]->integer;

        if (start < 0 || end < start || end >= AK_REDIS_SLOTS) {
            return NGX_ERROR;
        }

        covered += end - start + 1;
    }

    if (covered != AK_REDIS_SLOTS) {
        /* slots without a master: a cluster that is not "ok" */
        return NGX_ERROR;
    }

    slots = ngx_http_api_key_cluster_slots;

    /* (nodes first seen in this answer were no masters) */
    ngx_memzero(was, sizeof(was));

    for (k = 0; k < ngx_http_api_key_cluster_nnodes; k++) {
        was[k] = ngx_http_api_key_cluster_nodes[k].master;
        ngx_http_api_key_cluster_nodes[k].master = 0;
    }

    for (i = 0; i < reply->elements; i++) {
        range = reply->element[i];
        m = range->element[2];

        if (m->element[0]->len == 0) {
            node = from;

        } else if (ngx_http_api_key_cluster_parse_addr(
                              (u_char *) m->element[0]->str,
                              m->element[0]->len, m->element[1]->integer,
                              &sa, &socklen)
                   != NGX_OK
                   || (node = ngx_http_api_key_cluster_node(&sa.sockaddr,
                                                            socklen))
                      == NULL)
        {
            node = NULL;
        }

        if (node) {
            node->master = 1;
        }

        start = range->element[0]->integer;
        end = range->element[1]->integer;

        for (s = start; s <= end; s++) {
            slots[s] = node;
        }
    }

    changed = 0;

    for (k = 0; k < ngx_http_api_key_cluster_nnodes; k++) {
        if (was[k] != ngx_http_api_key_cluster_nodes[k].master) {
            changed = 1;
        }
    }

    if (changed && ngx_http_api_key_cluster_loaded) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\": its masters changed",
                      &ngx_http_api_key_cluster_conf->url_redacted);
        ngx_http_api_key_cluster_ev_lost("its masters changed");
    }

    return NGX_OK;
}


/* a refresh is over: the commands waiting for the map go, or fail */

static void
ngx_http_api_key_cluster_refreshed(ngx_uint_t ok)
{
    ngx_uint_t                first;
    ngx_queue_t              *q;
    ngx_queue_t               waiting;
    ngx_http_api_key_ccmd_t  *cmd;

    ngx_http_api_key_cluster_refreshing = 0;
    ngx_http_api_key_cluster_refreshed_at = ngx_current_msec;

    if (ngx_http_api_key_cluster_refreshed_at == 0) {
        ngx_http_api_key_cluster_refreshed_at = 1;
    }

    first = 0;

    if (ok) {
        first = !ngx_http_api_key_cluster_loaded;
        ngx_http_api_key_cluster_loaded = 1;

        if (ngx_http_api_key_cluster_failing) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_cluster_log, 0,
                          "api_key: redis cluster \"%V\": the slot map is "
                          "read again",
                          &ngx_http_api_key_cluster_conf->url_redacted);
            ngx_http_api_key_cluster_failing = 0;
        }

    } else if (!ngx_http_api_key_cluster_failing) {
        ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\": no node gave its slot "
                      "map; misses are answered without redis until one "
                      "does", &ngx_http_api_key_cluster_conf->url_redacted);
        ngx_http_api_key_cluster_failing = 1;
    }

    ngx_queue_init(&waiting);

    if (!ngx_queue_empty(&ngx_http_api_key_cluster_map_wait)) {
        ngx_queue_add(&waiting, &ngx_http_api_key_cluster_map_wait);
        ngx_queue_init(&ngx_http_api_key_cluster_map_wait);
    }

    while (!ngx_queue_empty(&waiting)) {
        q = ngx_queue_head(&waiting);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_api_key_ccmd_t, queue);

        if (ok) {
            ngx_http_api_key_cluster_dispatch(cmd);

        } else {
            ngx_http_api_key_cluster_finish(cmd, NULL, NULL);
        }
    }

    if (ok && ngx_http_api_key_cluster_refresh_again) {
        ngx_http_api_key_cluster_refresh_again = 0;
        ngx_http_api_key_cluster_refresh();

    } else if (!ok && !ngx_http_api_key_cluster_exiting
               && !ngx_http_api_key_cluster_refresh_ev.timer_set)
    {
        /* try again: the first map, or the one after a failure */
        ngx_add_timer(&ngx_http_api_key_cluster_refresh_ev,
                      NGX_HTTP_API_KEY_CLUSTER_REFRESH * 5);
    }

    if (first) {
        if (ngx_http_api_key_cluster_cmd_ready) {
            ngx_http_api_key_cluster_cmd_ready();
        }

        ngx_http_api_key_cluster_ev_open();
    }
}


/*
 * Every second while commands wait: a node connected connect_timeout ago
 * and still not ready, or with commands waiting and no answer for the
 * stall time (max_timeouts * timeout, at least 5 s), is closed (its
 * commands answered NULL, sent again where safe).
 */

static void
ngx_http_api_key_cluster_stall_handler(ngx_event_t *ev)
{
    ngx_uint_t                      i, busy;
    ngx_msec_t                      stall;
    ngx_http_api_key_cnode_t       *node;
    ngx_http_api_key_redis_io_t    *io;
    ngx_http_api_key_redis_conf_t  *conf;

    conf = ngx_http_api_key_cluster_conf;
    stall = ngx_max(conf->timeout * conf->max_timeouts,
                    NGX_HTTP_API_KEY_CLUSTER_STALL_MIN);
    busy = 0;

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (node->io == NULL) {
            continue;
        }

        if ((!node->ready
             && ngx_current_msec - node->opened >= conf->connect_timeout)
            || (node->ready && node->npending
                && ngx_current_msec - node->progress >= stall))
        {
            io = node->io;
            node->io = NULL;

            ngx_http_api_key_cluster_node_failed(node, node->ready
                                        ? "no answer" : "connect timed out");

            /* its commands: NULL (sent again where safe) */
            ngx_http_api_key_redis_io_free(io);
            continue;
        }

        if (!node->ready || node->npending) {
            busy = 1;
        }
    }

    if (busy && !ngx_http_api_key_cluster_exiting) {
        ngx_add_timer(ev, 1000);
    }
}


/* ---- events ------------------------------------------------------------ */

/*
 * An events connection to every master of the map; once all of them are
 * up, the subscriber's "ready" sends its (P)SUBSCRIBE through
 * ngx_http_api_key_cluster_subscribe().
 */

static void
ngx_http_api_key_cluster_ev_open(void)
{
    int                             n;
    ngx_uint_t                      i, first;
    ngx_http_api_key_cnode_t       *node;
    ngx_http_api_key_redis_io_t    *io;
    ngx_http_api_key_redis_conf_t  *conf;
    const char                     *argv[3];
    size_t                          argvlen[3];

    if (ngx_http_api_key_cluster_exiting) {
        return;
    }

    conf = ngx_http_api_key_cluster_conf;

    ngx_http_api_key_cluster_ev_close();

    ngx_http_api_key_cluster_ev_open_n = 0;
    ngx_http_api_key_cluster_ev_ready_n = 0;
    ngx_http_api_key_cluster_ev_confirm_n = 0;
    ngx_http_api_key_cluster_ev_pattern_wait = 0;

    /* the channel on the master of slot 0 */
    first = 1;

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        /* without keyspace events: the channel's node alone */

        if (!node->master
            || (!conf->keyspace_events
                && ngx_http_api_key_cluster_slots[0] != node))
        {
            continue;
        }

        io = ngx_http_api_key_redis_io_open(conf, &node->addr,
                                            NGX_HTTP_API_KEY_CLUSTER_EXTRA,
                                            ngx_http_api_key_cluster_log);
        if (io == NULL || io->err) {
            if (io) {
                ngx_http_api_key_redis_io_free(io);
            }

            ngx_http_api_key_cluster_ev_lost("cannot connect");
            return;
        }

        node->sub = io;
        node->sub_ready = 0;
        node->sub_confirmed = 0;
        node->sub_channel = 0;

        io->data = node;
        io->on_connect = ngx_http_api_key_cluster_ev_on_connect;
        io->on_disconnect = ngx_http_api_key_cluster_ev_on_disconnect;

        ngx_http_api_key_cluster_ev_open_n++;

        n = ngx_http_api_key_redis_io_auth_argv(&conf->user,
                                                &conf->password, argv,
                                                argvlen);

        if (n) {
            (void) ngx_http_api_key_redis_io_send(io,
                                     ngx_http_api_key_cluster_ev_auth_reply,
                                     node, n, argv, argvlen);
        }
    }

    for (i = 0; i < ngx_http_api_key_cluster_nnodes && first; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (node->sub && ngx_http_api_key_cluster_slots[0] == node) {
            node->sub_channel = 1;
            first = 0;
        }
    }

    /* (slot 0's master at an address not usable: the first opened) */

    for (i = 0; i < ngx_http_api_key_cluster_nnodes && first; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (node->sub) {
            node->sub_channel = 1;
            first = 0;
        }
    }

    if (ngx_http_api_key_cluster_ev_open_n == 0) {
        ngx_http_api_key_cluster_ev_lost("no master");
        return;
    }

    /* all up within connect_timeout, else all again */
    ngx_add_timer(&ngx_http_api_key_cluster_ev_ev,
                  conf->connect_timeout
                  + ngx_max(conf->timeout * conf->max_timeouts,
                            NGX_HTTP_API_KEY_CLUSTER_STALL_MIN));
}


static void
ngx_http_api_key_cluster_ev_handler(ngx_event_t *ev)
{
    if (ngx_http_api_key_cluster_ev_open_n
        && ngx_http_api_key_cluster_ev_up)
    {
        return;
    }

    if (ngx_http_api_key_cluster_ev_open_n) {
        /* not all up in time */
        ngx_http_api_key_cluster_ev_lost("its subscription was not "
                                         "confirmed in time");
        return;
    }

    ngx_http_api_key_cluster_ev_open();
}


/* one is gone: all closed, opened again after the backoff */

static void
ngx_http_api_key_cluster_ev_lost(const char *why)
{
    if (ngx_http_api_key_cluster_exiting) {
        return;
    }

    if (ngx_http_api_key_cluster_ev_up || !ngx_http_api_key_cluster_ev_failing)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\": events connections: "
                      "%s; they are opened again on the masters of the map",
                      &ngx_http_api_key_cluster_conf->url_redacted, why);
        ngx_http_api_key_cluster_ev_failing = 1;
    }

    ngx_http_api_key_cluster_ev_up = 0;
    ngx_http_api_key_cluster_ev_lost_flag = 1;

    ngx_http_api_key_cluster_ev_close();
    ngx_http_api_key_cluster_ev_open_n = 0;

    if (ngx_http_api_key_cluster_ev_ev.timer_set) {
        ngx_del_timer(&ngx_http_api_key_cluster_ev_ev);
    }

    ngx_add_timer(&ngx_http_api_key_cluster_ev_ev,
                  ngx_http_api_key_cluster_ev_backoff);

    ngx_http_api_key_cluster_ev_backoff *= 2;

    if (ngx_http_api_key_cluster_ev_backoff
        > NGX_HTTP_API_KEY_CLUSTER_BACKOFF_MAX)
    {
        ngx_http_api_key_cluster_ev_backoff =
                                      NGX_HTTP_API_KEY_CLUSTER_BACKOFF_MAX;
    }

    ngx_http_api_key_cluster_refresh();
}


static void
ngx_http_api_key_cluster_ev_close(void)
{
    ngx_uint_t                    i;
    ngx_http_api_key_cnode_t     *node;
    ngx_http_api_key_redis_io_t  *io;

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (node->sub) {
            io = node->sub;
            node->sub = NULL;
            io->data = NULL;
            ngx_http_api_key_redis_io_free(io);
        }
    }
}


static void
ngx_http_api_key_cluster_ev_on_connect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_http_api_key_cnode_t  *node = io->data;

    if (node == NULL) {
        return;
    }

    if (status != NGX_OK) {
        node->sub = NULL;       /* freed when this returns */
        ngx_http_api_key_cluster_ev_lost(io->errstr);
        return;
    }

    if (ngx_http_api_key_cluster_sh) {
        ngx_http_api_key_count(&ngx_http_api_key_cluster_sh->connects[
                                             NGX_HTTP_API_KEY_CONN_EVENTS]);
    }

    if (ngx_http_api_key_cluster_conf->password.len == 0) {
        ngx_http_api_key_cluster_ev_node_ready(node);
    }
}


static void
ngx_http_api_key_cluster_ev_auth_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_http_api_key_cnode_t  *node = io->data;

    if (reply == NULL || node == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_api_key_redis_io_disconnect(io);
        return;
    }

    ngx_http_api_key_cluster_ev_node_ready(node);
}


static void
ngx_http_api_key_cluster_ev_on_disconnect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_http_api_key_cnode_t  *node = io->data;

    if (ngx_http_api_key_cluster_sh) {
        ngx_http_api_key_count(&ngx_http_api_key_cluster_sh->disconnects[
                                             NGX_HTTP_API_KEY_CONN_EVENTS]);
    }

    if (node == NULL) {
        return;                 /* closed by ev_close */
    }

    node->sub = NULL;

    /*
     * closed on an error answer nothing waited for: a (P)SUBSCRIBE the ACL
     * user may not run (NOPERM), for the subscriber
     */

    ngx_http_api_key_cluster_ev_denied = (status != NGX_OK
                                  && io->err == REDIS_ERR_OTHER
                                  && ngx_strncmp(io->errstr, "NOPERM", 6)
                                     == 0);

    ngx_http_api_key_cluster_ev_lost(status == NGX_OK ? "closed"
                                                      : io->errstr);
}


static void
ngx_http_api_key_cluster_ev_node_ready(ngx_http_api_key_cnode_t *node)
{
    node->sub_ready = 1;

    if (++ngx_http_api_key_cluster_ev_ready_n
        < ngx_http_api_key_cluster_ev_open_n)
    {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_cluster_log, 0,
                   "api_key: redis cluster: %ui events connections up",
                   ngx_http_api_key_cluster_ev_open_n);

    if (ngx_http_api_key_cluster_sub_ready) {
        ngx_http_api_key_cluster_sub_ready();
    }
}


/*
 * The subscriber's SUBSCRIBE (on the channel's node) or PSUBSCRIBE (on
 * every master); what comes back goes to fn.  The PSUBSCRIBE goes to the
 * other masters once the channel is confirmed: an ACL user refused
 * PSUBSCRIBE (NOPERM closes the connection) is then seen by the
 * subscriber with the channel confirmed, and it keeps the channel alone.
 */

ngx_int_t
ngx_http_api_key_cluster_subscribe(ngx_http_api_key_redis_cb_pt fn, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_uint_t                 i, pattern, sent;
    ngx_http_api_key_cnode_t  *node;

    ngx_http_api_key_cluster_ev_fn = fn;

    pattern = (argvlen[0] == 10
               && ngx_strncasecmp((u_char *) argv[0], (u_char *) "PSUBSCRIBE",
                                  10) == 0);
    sent = 0;

    if (pattern) {
        if (argc != 2
            || argvlen[1] > sizeof(ngx_http_api_key_cluster_ev_pattern))
        {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_http_api_key_cluster_ev_pattern, argv[1], argvlen[1]);
        ngx_http_api_key_cluster_ev_pattern_len = argvlen[1];
        ngx_http_api_key_cluster_ev_pattern_wait = 1;
    }

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (node->sub == NULL || !node->sub_ready || !node->sub_channel) {
            continue;
        }

        if (ngx_http_api_key_redis_io_subscribe(node->sub,
                                    ngx_http_api_key_cluster_ev_message,
                                    argc, argv, argvlen)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        sent++;
    }

    return sent ? NGX_OK : NGX_ERROR;
}


/*
 * What the events connections receive: to the subscriber, but one
 * "psubscribe" confirmation only, once every master confirmed.
 */

static void
ngx_http_api_key_cluster_ev_message(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_http_api_key_cnode_t  *node = io->data;

    if (node == NULL || ngx_http_api_key_cluster_ev_fn == NULL) {
        return;
    }

    if (node->sub_channel && ngx_http_api_key_cluster_ev_pattern_wait
        && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[0]->len == 9
        && ngx_strncmp(reply->element[0]->str, "subscribe", 9) == 0)
    {
        ngx_http_api_key_cluster_ev_pattern_wait = 0;
        ngx_http_api_key_cluster_ev_pattern_others();
    }

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[0]->len == 10
        && ngx_strncmp(reply->element[0]->str, "psubscribe", 10) == 0)
    {
        if (node->sub_confirmed) {
            return;
        }

        node->sub_confirmed = 1;

        if (++ngx_http_api_key_cluster_ev_confirm_n
            < ngx_http_api_key_cluster_ev_open_n)
        {
            return;
        }
    }

    ngx_http_api_key_cluster_ev_fn(io, reply, privdata);
}


/* the last events connection lost was closed by NOPERM */

ngx_uint_t
ngx_http_api_key_cluster_sub_denied(void)
{
    return ngx_http_api_key_cluster_ev_denied;
}


/* the channel is confirmed: the PSUBSCRIBE on the other masters */

static void
ngx_http_api_key_cluster_ev_pattern_others(void)
{
    ngx_uint_t                 i;
    ngx_http_api_key_cnode_t  *node;
    const char                *argv[2];
    size_t                     argvlen[2];

    argv[0] = "PSUBSCRIBE";
    argvlen[0] = 10;
    argv[1] = (const char *) ngx_http_api_key_cluster_ev_pattern;
    argvlen[1] = ngx_http_api_key_cluster_ev_pattern_len;

    for (i = 0; i < ngx_http_api_key_cluster_nnodes; i++) {
        node = &ngx_http_api_key_cluster_nodes[i];

        if (node->sub == NULL || !node->sub_ready || node->sub_channel) {
            continue;
        }

        if (ngx_http_api_key_redis_io_subscribe(node->sub,
                                    ngx_http_api_key_cluster_ev_message,
                                    2, argv, argvlen)
            != NGX_OK)
        {
            ngx_http_api_key_cluster_ev_lost("a PSUBSCRIBE could not be "
                                             "sent");
            return;
        }
    }
}


/*
 * The subscriber's subscription is confirmed: 1 if it had been lost since
 * the last confirmation (events may have been missed).
 */

ngx_uint_t
ngx_http_api_key_cluster_subscribed(void)
{
    ngx_uint_t  lost;

    if (ngx_http_api_key_cluster_ev_failing) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_cluster_log, 0,
                      "api_key: redis cluster \"%V\": events connections "
                      "to %ui masters are up",
                      &ngx_http_api_key_cluster_conf->url_redacted,
                      ngx_http_api_key_cluster_ev_open_n);
        ngx_http_api_key_cluster_ev_failing = 0;
    }

    ngx_http_api_key_cluster_ev_up = 1;
    ngx_http_api_key_cluster_ev_backoff = NGX_HTTP_API_KEY_CLUSTER_DOWN;

    if (ngx_http_api_key_cluster_ev_ev.timer_set) {
        ngx_del_timer(&ngx_http_api_key_cluster_ev_ev);
    }

    lost = ngx_http_api_key_cluster_ev_lost_flag;
    ngx_http_api_key_cluster_ev_lost_flag = 0;

    return lost;
}
