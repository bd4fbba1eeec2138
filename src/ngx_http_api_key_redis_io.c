
/*
 * ngx_http_api_key_module: hiredis's async adapter on nginx's event loop,
 * for redis.c's connections (until the TLS issue replaces the transport).
 *
 * The socket hiredis opened is wrapped in an ngx_connection_t whose
 * read/write events (level-triggered) call hiredis; hiredis owns and closes
 * the socket: its cleanup hook only releases the nginx connection.  TCP
 * connections get keepalive probes and a user timeout.
 */


#include "ngx_http_api_key_redis.h"

#include <netinet/tcp.h>


/* unacknowledged data (or keepalive probes) for this long: a dead peer */
#define NGX_HTTP_API_KEY_USER_TIMEOUT  10000


static void ngx_http_api_key_ev_read(ngx_event_t *ev);
static void ngx_http_api_key_ev_write(ngx_event_t *ev);
static void ngx_http_api_key_event(void *data, ngx_uint_t write,
    ngx_uint_t add);
static void ngx_http_api_key_add_read(void *data);
static void ngx_http_api_key_del_read(void *data);
static void ngx_http_api_key_del_write(void *data);
static void ngx_http_api_key_cleanup_conn(void *data);
static void ngx_http_api_key_keepalive(int fd);


/*
 * ac, just created by redisAsyncConnect*(), on nginx's events: io->log is
 * set; NGX_ERROR: no free connection (the caller frees ac).
 */

ngx_int_t
ngx_http_api_key_redis_io_attach(ngx_http_api_key_redis_io_t *io,
    redisAsyncContext *ac, ngx_uint_t tcp)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, io->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    if (tcp) {
        ngx_http_api_key_keepalive(ac->c.fd);
    }

    c->data = io;
    c->read->handler = ngx_http_api_key_ev_read;
    c->write->handler = ngx_http_api_key_ev_write;
    c->read->log = io->log;
    c->write->log = io->log;

    io->c = c;
    io->ac = ac;

    ac->ev.data = io;
    ac->ev.addRead = ngx_http_api_key_add_read;
    ac->ev.delRead = ngx_http_api_key_del_read;
    ac->ev.addWrite = ngx_http_api_key_redis_io_add_write;
    ac->ev.delWrite = ngx_http_api_key_del_write;
    ac->ev.cleanup = ngx_http_api_key_cleanup_conn;

    return NGX_OK;
}


static void
ngx_http_api_key_ev_read(ngx_event_t *ev)
{
    ngx_connection_t             *c = ev->data;
    ngx_http_api_key_redis_io_t  *io = c->data;

    if (io->ac) {
        redisAsyncHandleRead(io->ac);
    }
}


static void
ngx_http_api_key_ev_write(ngx_event_t *ev)
{
    ngx_connection_t             *c = ev->data;
    ngx_http_api_key_redis_io_t  *io = c->data;

    if (io->ac) {
        redisAsyncHandleWrite(io->ac);
    }
}


/* hiredis wants (or no longer wants) to read or write */

static void
ngx_http_api_key_event(void *data, ngx_uint_t write, ngx_uint_t add)
{
    ngx_event_t                  *ev;
    ngx_http_api_key_redis_io_t  *io = data;

    if (io->c == NULL) {
        return;
    }

    ev = write ? io->c->write : io->c->read;

    if (add && !ev->active) {
        if (ngx_add_event(ev, write ? NGX_WRITE_EVENT : NGX_READ_EVENT,
                          NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, io->log, 0,
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


void
ngx_http_api_key_redis_io_add_write(void *data)
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
    ngx_connection_t             *c;
    ngx_http_api_key_redis_io_t  *io = data;

    c = io->c;
    if (c == NULL) {
        return;
    }

    ngx_http_api_key_del_read(io);
    ngx_http_api_key_del_write(io);

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

    io->c = NULL;
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
