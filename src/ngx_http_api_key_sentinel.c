/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: where the master is, through Redis Sentinel
 * (api_key_redis redis-sentinel://, rediss-sentinel://), for redis.c.
 *
 * Each worker talks to one sentinel at a time, over two nginx connections
 * (redis_io.c, plaintext, AUTH with sentinel_password_file's password when
 * there is one): one asks "SENTINEL get-master-addr-by-name MASTER", the
 * other is subscribed to "+switch-master".  A sentinel that refuses, does
 * not know the master, does not answer within connect_timeout or loses a
 * connection is left for the next one of the list (at once, then, after a
 * whole round failed, with a backoff of 100 ms doubling to 2 s).
 *
 * The master's address is what the last answer, or the last +switch-master
 * for our master, said.  When it changes, redis.c is told (a function it
 * registered at init time): it moves its command and events connections
 * there, where their handshake confirms the server with ROLE.  redis.c
 * asks again (ngx_http_api_key_sentinel_rediscover) when a connection to
 * the master fails or is lost, when ROLE says "slave", and on the errors a
 * failover gives (READONLY, LOADING, MASTERDOWN): at most one question is
 * in flight, and questions are at least 100 ms apart.
 *
 * The sentinels' addresses are resolved when nginx reads its
 * configuration; the master's is the IP address a sentinel gives (a name,
 * with "announce-hostnames yes", is not followed: an error, logged once).
 * With rediss-sentinel:// the master's certificate is checked for that
 * address, unless tls_name= says which name to check.
 */


#include "ngx_http_api_key_redis.h"


#define NGX_HTTP_API_KEY_SENTINEL_BACKOFF_MIN  100
#define NGX_HTTP_API_KEY_SENTINEL_BACKOFF_MAX  2000

/* questions at least this far apart */
#define NGX_HTTP_API_KEY_SENTINEL_ASK_GAP      100

/* the commands that may wait on a sentinel connection: AUTH, the query */
#define NGX_HTTP_API_KEY_SENTINEL_CBS          4


typedef struct {
    ngx_http_api_key_redis_conf_t   *conf;
    ngx_http_api_key_redis_conf_t    sconf;     /* to the sentinels */
    ngx_http_api_key_redis_conf_t    mconf;     /* to the master (TLS) */
    ngx_log_t                       *log;
    ngx_http_api_key_master_pt       moved;
    ngx_atomic_t                    *switches;  /* counters, or NULL */
    ngx_atomic_t                    *queries;

    ngx_uint_t                       cur;       /* the sentinel asked */
    ngx_uint_t                       tried;     /* failed in this round */
    ngx_http_api_key_redis_io_t     *q;         /* the questions */
    ngx_http_api_key_redis_io_t     *s;         /* +switch-master */
    ngx_event_t                      deadline;  /* an answer is due */
    ngx_event_t                      retry;     /* the next sentinel */
    ngx_event_t                      ask_timer; /* the next question */
    ngx_msec_t                       backoff;
    ngx_msec_t                       asked;     /* the last question */

    ngx_addr_t                       master;    /* sockaddr NULL: unknown */
    ngx_sockaddr_t                   sockaddr;
    u_char                           text[NGX_SOCKADDR_STRLEN];
    u_char                           host[NGX_SOCKADDR_STRLEN];

    unsigned                         asking:1;  /* a question in flight */
    unsigned                         again:1;   /* ask once it is answered */
    unsigned                         failing:1; /* an error was logged */
    unsigned                         exiting:1;
} ngx_http_api_key_sentinel_t;


static void ngx_http_api_key_sentinel_open(void);
static ngx_http_api_key_redis_io_t *ngx_http_api_key_sentinel_io(
    ngx_addr_t *addr);
static void ngx_http_api_key_sentinel_auth(ngx_http_api_key_redis_io_t *io);
static ngx_int_t ngx_http_api_key_sentinel_ask(void);
static void ngx_http_api_key_sentinel_close(void);
static void ngx_http_api_key_sentinel_fail(const char *why, ngx_str_t *detail);
static void ngx_http_api_key_sentinel_on_connect(
    ngx_http_api_key_redis_io_t *io, ngx_int_t status);
static void ngx_http_api_key_sentinel_on_disconnect(
    ngx_http_api_key_redis_io_t *io, ngx_int_t status);
static void ngx_http_api_key_sentinel_auth_reply(
    ngx_http_api_key_redis_io_t *io, redisReply *reply, void *privdata);
static void ngx_http_api_key_sentinel_master_reply(
    ngx_http_api_key_redis_io_t *io, redisReply *reply, void *privdata);
static void ngx_http_api_key_sentinel_message(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata);
static ngx_int_t ngx_http_api_key_sentinel_set_master(u_char *host,
    size_t hlen, u_char *port, size_t plen, const char *how);
static void ngx_http_api_key_sentinel_deadline_handler(ngx_event_t *ev);
static void ngx_http_api_key_sentinel_retry_handler(ngx_event_t *ev);
static void ngx_http_api_key_sentinel_ask_handler(ngx_event_t *ev);


static ngx_http_api_key_sentinel_t  ngx_http_api_key_sentinel;


ngx_int_t
ngx_http_api_key_sentinel_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_redis_conf_t *conf, ngx_http_api_key_master_pt moved,
    ngx_atomic_t *switches, ngx_atomic_t *queries)
{
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    ngx_memzero(st, sizeof(ngx_http_api_key_sentinel_t));

    st->conf = conf;
    st->log = cycle->log;
    st->moved = moved;
    st->switches = switches;
    st->queries = queries;
    st->backoff = NGX_HTTP_API_KEY_SENTINEL_BACKOFF_MIN;

    /* the sentinels: plaintext, no TLS */
    st->sconf = *conf;
#if (NGX_SSL)
    st->sconf.ssl = NULL;
#endif

    /* the master: the name its certificate is checked for, if TLS */
    st->mconf = *conf;

    ngx_http_api_key_timer_init(&st->deadline,
                                ngx_http_api_key_sentinel_deadline_handler,
                                st, cycle->log);
    ngx_http_api_key_timer_init(&st->retry,
                                ngx_http_api_key_sentinel_retry_handler,
                                st, cycle->log);
    ngx_http_api_key_timer_init(&st->ask_timer,
                                ngx_http_api_key_sentinel_ask_handler,
                                st, cycle->log);

    return NGX_OK;
}


void
ngx_http_api_key_sentinel_start(void)
{
    ngx_http_api_key_sentinel_open();
}


void
ngx_http_api_key_sentinel_exit_worker(void)
{
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (st->conf == NULL) {
        return;
    }

    st->exiting = 1;

    if (st->retry.timer_set) {
        ngx_del_timer(&st->retry);
    }

    if (st->ask_timer.timer_set) {
        ngx_del_timer(&st->ask_timer);
    }

    ngx_http_api_key_sentinel_close();
}


/*
 * The master's address as the sentinels last gave it (NULL: not known
 * yet), and the configuration its connections use (TLS: the name checked).
 */

ngx_addr_t *
ngx_http_api_key_sentinel_master(ngx_http_api_key_redis_conf_t **ioconf)
{
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    *ioconf = &st->mconf;

    return st->master.sockaddr ? &st->master : NULL;
}


/*
 * Ask the sentinel again where the master is: now, or once the question in
 * flight is answered, or 100 ms after the last one; a sentinel connection
 * on its way asks when it is up.
 */

void
ngx_http_api_key_sentinel_rediscover(const char *why)
{
    ngx_msec_t                    gap;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (st->conf == NULL || st->exiting) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, st->log, 0,
                   "api_key: sentinel: asking again where the master is: %s",
                   why);

    if (st->q == NULL) {
        return;                     /* a new connection asks anyway */
    }

    if (st->asking) {
        st->again = 1;
        return;
    }

    gap = ngx_current_msec - st->asked;

    if (gap < NGX_HTTP_API_KEY_SENTINEL_ASK_GAP) {
        if (!st->ask_timer.timer_set) {
            ngx_add_timer(&st->ask_timer,
                          NGX_HTTP_API_KEY_SENTINEL_ASK_GAP - gap);
        }

        return;
    }

    if (ngx_http_api_key_sentinel_ask() != NGX_OK) {
        ngx_http_api_key_sentinel_fail("cannot send its question", NULL);
    }
}


static void
ngx_http_api_key_sentinel_ask_handler(ngx_event_t *ev)
{
    ngx_http_api_key_sentinel_rediscover("the gap between questions ended");
}


/* ---- the sentinel connections -------------------------------------- */

static void
ngx_http_api_key_sentinel_open(void)
{
    ngx_addr_t                   *addr;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (st->exiting || ngx_exiting || ngx_terminate) {
        return;
    }

    addr = st->conf->sentinels->elts;
    addr = &addr[st->cur];

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, st->log, 0,
                   "api_key: sentinel %V: connecting", &addr->name);

    st->q = ngx_http_api_key_sentinel_io(addr);
    if (st->q == NULL) {
        ngx_http_api_key_sentinel_fail("cannot connect", NULL);
        return;
    }

    st->s = ngx_http_api_key_sentinel_io(addr);
    if (st->s == NULL) {
        ngx_http_api_key_sentinel_fail("cannot connect", NULL);
        return;
    }

    ngx_http_api_key_sentinel_auth(st->q);
    ngx_http_api_key_sentinel_auth(st->s);

    if (ngx_http_api_key_sentinel_ask() != NGX_OK) {
        ngx_http_api_key_sentinel_fail("cannot send its question", NULL);
        return;
    }

    {
        static const char    *argv[] = { "SUBSCRIBE", "+switch-master" };
        static const size_t   argvlen[] = { 9, 14 };

        if (ngx_http_api_key_redis_io_subscribe(st->s,
                                         ngx_http_api_key_sentinel_message,
                                         2, argv, argvlen)
            != NGX_OK)
        {
            ngx_http_api_key_sentinel_fail("cannot subscribe", NULL);
        }
    }
}


/* a connection to addr, on its way (NULL: failed at once) */

static ngx_http_api_key_redis_io_t *
ngx_http_api_key_sentinel_io(ngx_addr_t *addr)
{
    ngx_http_api_key_redis_io_t  *io;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    io = ngx_http_api_key_redis_io_open(&st->sconf, addr,
                                        NGX_HTTP_API_KEY_SENTINEL_CBS,
                                        st->log);
    if (io == NULL) {
        return NULL;
    }

    if (io->err) {
        ngx_http_api_key_redis_io_free(io);
        return NULL;
    }

    io->data = st;
    io->on_connect = ngx_http_api_key_sentinel_on_connect;
    io->on_disconnect = ngx_http_api_key_sentinel_on_disconnect;

    return io;
}


static void
ngx_http_api_key_sentinel_auth(ngx_http_api_key_redis_io_t *io)
{
    int                           n;
    const char                   *argv[3];
    size_t                        argvlen[3];
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    n = ngx_http_api_key_redis_io_auth_argv(NULL,
                                            &st->conf->sentinel_password,
                                            argv, argvlen);
    if (n == 0) {
        return;
    }

    (void) ngx_http_api_key_redis_io_send(io,
                                          ngx_http_api_key_sentinel_auth_reply,
                                          NULL, n, argv, argvlen);
}


/* SENTINEL get-master-addr-by-name MASTER, answered within connect_timeout */

static ngx_int_t
ngx_http_api_key_sentinel_ask(void)
{
    const char                   *argv[3];
    size_t                        argvlen[3];
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    argv[0] = "SENTINEL";
    argvlen[0] = 8;
    argv[1] = "get-master-addr-by-name";
    argvlen[1] = 23;
    argv[2] = (const char *) st->conf->master_name.data;
    argvlen[2] = st->conf->master_name.len;

    if (ngx_http_api_key_redis_io_send(st->q,
                                       ngx_http_api_key_sentinel_master_reply,
                                       NULL, 3, argv, argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    st->asking = 1;
    st->again = 0;
    st->asked = ngx_current_msec;

    if (st->queries) {
        ngx_http_api_key_count(st->queries);
    }

    if (st->ask_timer.timer_set) {
        ngx_del_timer(&st->ask_timer);
    }

    if (!st->deadline.timer_set) {
        ngx_add_timer(&st->deadline, st->conf->connect_timeout);
    }

    return NGX_OK;
}


/* both connections closed; what they waited for is answered NULL */

static void
ngx_http_api_key_sentinel_close(void)
{
    ngx_http_api_key_redis_io_t  *io;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (st->deadline.timer_set) {
        ngx_del_timer(&st->deadline);
    }

    st->asking = 0;

    if (st->q) {
        io = st->q;
        st->q = NULL;
        ngx_http_api_key_redis_io_free(io);
    }

    if (st->s) {
        io = st->s;
        st->s = NULL;
        ngx_http_api_key_redis_io_free(io);
    }
}


/*
 * This sentinel failed: logged once per streak, its connections closed,
 * the next one asked (at once, or after the backoff once every sentinel
 * failed in a row).
 */

static void
ngx_http_api_key_sentinel_fail(const char *why, ngx_str_t *detail)
{
    ngx_msec_t                    delay;
    ngx_addr_t                   *addr;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    static ngx_str_t  none = ngx_null_string;

    ngx_http_api_key_sentinel_close();

    if (st->exiting) {
        return;
    }

    addr = st->conf->sentinels->elts;

    if (!st->failing) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "api_key: redis \"%V\": sentinel %V: %s%s%V; asking "
                      "the next sentinel", &st->conf->url_redacted,
                      &addr[st->cur].name, why, detail ? ": " : "",
                      detail ? detail : &none);
        st->failing = 1;

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, st->log, 0,
                       "api_key: sentinel %V: %s", &addr[st->cur].name, why);
    }

    st->cur = (st->cur + 1) % st->conf->sentinels->nelts;

    delay = 0;

    if (++st->tried >= st->conf->sentinels->nelts) {
        st->tried = 0;
        delay = st->backoff;

        st->backoff *= 2;
        if (st->backoff > NGX_HTTP_API_KEY_SENTINEL_BACKOFF_MAX) {
            st->backoff = NGX_HTTP_API_KEY_SENTINEL_BACKOFF_MAX;
        }
    }

    /* never from here: this may run in a callback of a closed connection */

    if (!st->retry.timer_set) {
        ngx_add_timer(&st->retry, delay ? delay : 1);
    }
}


static void
ngx_http_api_key_sentinel_retry_handler(ngx_event_t *ev)
{
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (st->q == NULL && st->s == NULL) {
        ngx_http_api_key_sentinel_open();
    }
}


static void
ngx_http_api_key_sentinel_deadline_handler(ngx_event_t *ev)
{
    ngx_http_api_key_sentinel_fail("no answer within connect_timeout", NULL);
}


static void
ngx_http_api_key_sentinel_on_connect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_str_t                     err;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (status == NGX_OK) {
        return;
    }

    /* the connection is freed when this returns */

    if (io == st->q) {
        st->q = NULL;

    } else if (io == st->s) {
        st->s = NULL;

    } else {
        return;
    }

    err.data = (u_char *) io->errstr;
    err.len = ngx_strlen(io->errstr);

    ngx_http_api_key_sentinel_fail("connection failed", &err);
}


static void
ngx_http_api_key_sentinel_on_disconnect(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status)
{
    ngx_str_t                     err;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (io == st->q) {
        st->q = NULL;

    } else if (io == st->s) {
        st->s = NULL;

    } else {
        return;                     /* closed by us */
    }

    err.data = (u_char *) io->errstr;
    err.len = ngx_strlen(io->errstr);

    ngx_http_api_key_sentinel_fail("connection lost", err.len ? &err : NULL);
}


static void
ngx_http_api_key_sentinel_auth_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_str_t  err;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    /* (what Redis says of AUTH never holds the password) */

    err.data = (u_char *) reply->str;
    err.len = ngx_http_api_key_error_len((u_char *) reply->str, reply->len);

    ngx_http_api_key_sentinel_fail("AUTH refused", &err);
}


static void
ngx_http_api_key_sentinel_master_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    ngx_str_t                     err;
    redisReply                   *h, *p;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (reply == NULL || io != st->q) {
        return;                     /* closed */
    }

    st->asking = 0;

    if (st->deadline.timer_set) {
        ngx_del_timer(&st->deadline);
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        err.data = (u_char *) reply->str;
        err.len = ngx_http_api_key_error_len((u_char *) reply->str,
                                             reply->len);
        ngx_http_api_key_sentinel_fail("SENTINEL get-master-addr-by-name "
                                       "failed", &err);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        ngx_http_api_key_sentinel_fail("it knows no such master",
                                       &st->conf->master_name);
        return;
    }

    h = reply->element[0];
    p = reply->element[1];

    if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING
        || ngx_http_api_key_sentinel_set_master((u_char *) h->str, h->len,
                                                (u_char *) p->str, p->len,
                                                "a sentinel says")
           != NGX_OK)
    {
        ngx_http_api_key_sentinel_fail("an answer that is not an IP address "
                                       "and a port", NULL);
        return;
    }

    /* this sentinel works */

    if (st->failing) {
        ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                      "api_key: redis \"%V\": the sentinels answer again",
                      &st->conf->url_redacted);
    }

    st->failing = 0;
    st->tried = 0;
    st->backoff = NGX_HTTP_API_KEY_SENTINEL_BACKOFF_MIN;

    if (st->again) {
        ngx_http_api_key_sentinel_rediscover("asked meanwhile");
    }
}


/*
 * On the subscribed connection: the confirmation, then
 * "+switch-master NAME OLDIP OLDPORT NEWIP NEWPORT" for every master the
 * sentinel watches.
 */

static void
ngx_http_api_key_sentinel_message(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    u_char                       *p, *last, *f[5];
    size_t                        flen[5];
    ngx_uint_t                    n;
    redisReply                   *m;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;

    if (reply == NULL || io != st->s || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3 || reply->element[0]->type
                                   != REDIS_REPLY_STRING)
    {
        return;
    }

    if (ngx_strcmp(reply->element[0]->str, "message") != 0) {
        return;                     /* "subscribe": confirmed */
    }

    m = reply->element[2];

    if (m->type != REDIS_REPLY_STRING) {
        return;
    }

    /* five fields separated by spaces */

    p = (u_char *) m->str;
    last = p + m->len;

    for (n = 0; n < 5 && p < last; n++) {
        f[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        flen[n] = p - f[n];

        if (p < last) {
            p++;
        }
    }

    if (n != 5 || flen[0] != st->conf->master_name.len
        || ngx_strncmp(f[0], st->conf->master_name.data, flen[0]) != 0)
    {
        return;                     /* another master's */
    }

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, st->log, 0,
                   "api_key: sentinel: +switch-master for our master");

    if (ngx_http_api_key_sentinel_set_master(f[3], flen[3], f[4], flen[4],
                                             "+switch-master")
        != NGX_OK)
    {
        ngx_http_api_key_sentinel_rediscover("an unexpected +switch-master");
    }
}


/*
 * The master is at host:port (an IP address): NGX_ERROR if it is not one.
 * A change is logged, counted and told to redis.c.
 */

static ngx_int_t
ngx_http_api_key_sentinel_set_master(u_char *host, size_t hlen, u_char *port,
    size_t plen, const char *how)
{
    ngx_int_t                     n;
    ngx_addr_t                    a;
    ngx_sockaddr_t                sa;
    ngx_http_api_key_sentinel_t  *st = &ngx_http_api_key_sentinel;
#if (NGX_HAVE_INET6)
    u_char                        in6[16];
#endif

    n = ngx_atoi(port, plen);

    if (n < 1 || n > 65535 || hlen == 0 || hlen >= NGX_SOCKADDR_STRLEN) {
        return NGX_ERROR;
    }

    ngx_memzero(&sa, sizeof(ngx_sockaddr_t));

    a.sockaddr = &sa.sockaddr;

    sa.sockaddr_in.sin_addr.s_addr = ngx_inet_addr(host, hlen);

    if (sa.sockaddr_in.sin_addr.s_addr != INADDR_NONE) {
        sa.sockaddr_in.sin_family = AF_INET;
        a.socklen = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(host, hlen, in6) == NGX_OK) {
        sa.sockaddr_in6.sin6_family = AF_INET6;
        ngx_memcpy(sa.sockaddr_in6.sin6_addr.s6_addr, in6, 16);
        a.socklen = sizeof(struct sockaddr_in6);
#endif

    } else {
        return NGX_ERROR;
    }

    ngx_inet_set_port(a.sockaddr, (in_port_t) n);

    if (st->master.sockaddr
        && ngx_cmp_sockaddr(a.sockaddr, a.socklen, st->master.sockaddr,
                            st->master.socklen, 1)
           == NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, st->log, 0,
                       "api_key: sentinel: the master is still at %V",
                       &st->master.name);
        return NGX_OK;
    }

    if (st->master.sockaddr && st->switches) {
        ngx_http_api_key_count(st->switches);
    }

    ngx_memcpy(&st->sockaddr, &sa, a.socklen);
    st->master.sockaddr = &st->sockaddr.sockaddr;
    st->master.socklen = a.socklen;
    st->master.name.data = st->text;
    st->master.name.len = ngx_sock_ntop(st->master.sockaddr,
                                        st->master.socklen, st->text,
                                        NGX_SOCKADDR_STRLEN, 1);

    /* rediss-sentinel://: the address is the name checked (no SNI) */

    if (!st->conf->tls_name_set) {
        ngx_memcpy(st->host, host, hlen);
        st->host[hlen] = '\0';
        st->mconf.tls_name.data = st->host;
        st->mconf.tls_name.len = hlen;
        ngx_str_null(&st->mconf.tls_sni);
    }

    ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                  "api_key: redis \"%V\": the master \"%V\" is at %V (%s)",
                  &st->conf->url_redacted, &st->conf->master_name,
                  &st->master.name, how);

    if (st->moved) {
        st->moved();
    }

    return NGX_OK;
}
