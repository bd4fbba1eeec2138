/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: one Redis connection on nginx's own events, for
 * redis.c; hiredis is only the RESP codec here (redisFormatCommandArgv to
 * encode, a redisReader to parse).
 *
 * ngx_event_connect_peer() opens the socket (TCP or unix); the write event
 * tells when the non-blocking connect is done.  Commands are encoded into an
 * output buffer and written with c->send on the write event (posted, so that
 * the commands of one event loop iteration leave in one write; a partial
 * write goes on at the next write event); what c->recv reads is fed to the
 * reader and each reply goes, in order, to the callback of its command (a
 * FIFO ring); on a subscribed connection, a reply no command waits for is a
 * pushed message and goes to the subscription's callback.  c->send and
 * c->recv are nginx's: over TLS (rediss://) they are nginx's SSL ones, after
 * a handshake made with ngx_ssl_handshake() and checked here (the chain's
 * verification result, the name), the session kept for the next one.
 *
 * The life of a connection is the one hiredis's async contexts had, which
 * redis.c relies on:
 * - ngx_http_api_key_redis_io_open(): a connection on its way; io->err
 *   set if connect() failed at once (the caller frees it);
 * - on_connect(io, NGX_OK or NGX_ERROR) once connected or failed; on a
 *   failure the connection is then freed, without on_disconnect;
 * - ngx_http_api_key_redis_io_free(): every command still waiting is
 *   answered NULL, in order, the socket closed, then on_disconnect(io,
 *   NGX_OK) if it was connected; called from a callback, all that happens
 *   once the callback returns;
 * - an error (read, write, a protocol error, EOF, an error reply nothing
 *   waited for): the same, with on_disconnect(io, NGX_ERROR) and io->err,
 *   io->errstr saying why;
 * - ngx_http_api_key_redis_io_disconnect(): no new command; once every
 *   command sent is answered, the same with on_disconnect(io, NGX_OK).
 *
 * TCP connections get keepalive probes, a user timeout and TCP_NODELAY.
 * nginx's own messages about the socket (connect() or recv() failing) go
 * to a log of the connection's that keeps the last of them in io->errstr:
 * redis.c logs a failure once per streak, not once per retry.
 */


#include "ngx_http_api_key_redis.h"

#include <netinet/tcp.h>


/* unacknowledged data (or keepalive probes) for this long: a dead peer */
#define NGX_HTTP_API_KEY_USER_TIMEOUT  10000

#define NGX_HTTP_API_KEY_IO_READ       16384
#define NGX_HTTP_API_KEY_IO_OUT        4096

/*
 * hiredis's reader allocates an array's element table from its announced
 * size, before any element arrives ("*2147483647" is 16 GB): an array
 * announced larger than this is a protocol error.  (A negative size other
 * than -1 is refused too; Debian's hiredis refuses it first, "Multi-bulk
 * length out of range", older ones would make an array without a table.)
 * The module's largest reply is a record's HGETALL.
 */
#define NGX_HTTP_API_KEY_IO_MAX_ELEMENTS  (1024 * 1024)


#if (NGX_SSL)
/* the last TLS session of this worker's connections: the next one resumes */
static ngx_ssl_session_t  *ngx_http_api_key_io_session;
#endif


static void ngx_http_api_key_io_connected(ngx_event_t *wev);
static void ngx_http_api_key_io_connect_failed(
    ngx_http_api_key_redis_io_t *io);
#if (NGX_SSL)
static void ngx_http_api_key_io_ssl_start(ngx_http_api_key_redis_io_t *io);
static void ngx_http_api_key_io_ssl_done(ngx_connection_t *c);
static ngx_int_t ngx_http_api_key_io_ssl_verify(
    ngx_http_api_key_redis_io_t *io);
static void ngx_http_api_key_io_ssl_save_session(ngx_connection_t *c);
static int ngx_http_api_key_io_ssl_cert_requested(ngx_ssl_conn_t *ssl_conn,
    void *arg);
#endif
static ngx_int_t ngx_http_api_key_io_test_connect(
    ngx_http_api_key_redis_io_t *io);
static void ngx_http_api_key_io_ready(ngx_http_api_key_redis_io_t *io);
static void ngx_http_api_key_io_read_handler(ngx_event_t *rev);
static void ngx_http_api_key_io_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_http_api_key_io_flush(ngx_http_api_key_redis_io_t *io);
static ngx_int_t ngx_http_api_key_io_dispatch(
    ngx_http_api_key_redis_io_t *io);
static ngx_int_t ngx_http_api_key_io_append(ngx_http_api_key_redis_io_t *io,
    int argc, const char **argv, const size_t *argvlen);
static void ngx_http_api_key_io_error(ngx_http_api_key_redis_io_t *io,
    ngx_uint_t err, const char *text, ngx_err_t errnum);
static void ngx_http_api_key_io_close_now(ngx_http_api_key_redis_io_t *io);
static void ngx_http_api_key_io_destroy(ngx_http_api_key_redis_io_t *io);
static void ngx_http_api_key_io_run(ngx_http_api_key_redis_io_t *io,
    ngx_http_api_key_redis_cb_pt fn, redisReply *reply, void *privdata);
static void ngx_http_api_key_io_log_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len);
static void ngx_http_api_key_keepalive(int fd);
static void *ngx_http_api_key_io_create_array(const redisReadTask *task,
    int elements);


/* hiredis's reply functions, but for arrays */
static redisReplyObjectFunctions   ngx_http_api_key_io_reply_fn;
static void                     *(*ngx_http_api_key_io_default_array)(
                                    const redisReadTask *task, int elements);


/*
 * A connection to addr (it must outlive the connection), on its way: NULL
 * when out of memory; with io->err set, connect() failed at once (the
 * caller frees it).  ncbs: how many commands may wait for an answer at a
 * time.
 */

ngx_http_api_key_redis_io_t *
ngx_http_api_key_redis_io_open(ngx_http_api_key_redis_conf_t *conf,
    ngx_addr_t *addr, ngx_uint_t ncbs, ngx_log_t *log)
{
    ngx_int_t                     rc;
    ngx_connection_t             *c;
    ngx_http_api_key_redis_io_t  *io;

    io = ngx_calloc(sizeof(ngx_http_api_key_redis_io_t), log);
    if (io == NULL) {
        return NULL;
    }

    io->log = log;
    io->conf = conf;
    io->cap = ncbs;

    io->cbs = ngx_alloc(ncbs * sizeof(ngx_http_api_key_redis_io_cb_t), log);
    io->rbuf = ngx_alloc(NGX_HTTP_API_KEY_IO_READ, log);
    io->out = ngx_alloc(NGX_HTTP_API_KEY_IO_OUT, log);
    io->reader = redisReaderCreate();

    if (io->cbs == NULL || io->rbuf == NULL || io->out == NULL
        || io->reader == NULL)
    {
        ngx_http_api_key_io_destroy(io);
        return NULL;
    }

    if (ngx_http_api_key_io_default_array == NULL) {
        ngx_http_api_key_io_reply_fn = *io->reader->fn;
        ngx_http_api_key_io_default_array =
                                     ngx_http_api_key_io_reply_fn.createArray;
        ngx_http_api_key_io_reply_fn.createArray =
                                     ngx_http_api_key_io_create_array;
    }

    io->reader->fn = &ngx_http_api_key_io_reply_fn;
    io->reader->privdata = io;

    io->out_size = NGX_HTTP_API_KEY_IO_OUT;

    /*
     * the connection's log: nginx's messages about this socket are kept
     * (errstr), not written; the caller logs a failure once per streak
     */

    io->clog = *log;
    io->clog.log_level = NGX_LOG_INFO;
    io->clog.writer = ngx_http_api_key_io_log_writer;
    io->clog.wdata = io;
    io->clog.handler = NULL;
    io->clog.data = NULL;
    io->clog.next = NULL;

    io->peer.sockaddr = addr->sockaddr;
    io->peer.socklen = addr->socklen;
    io->peer.name = &addr->name;
    io->peer.get = ngx_event_get_peer;
    io->peer.log = &io->clog;
    io->peer.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&io->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        io->peer.connection = NULL;
        io->err = REDIS_ERR_IO;

        if (io->errstr[0] == '\0') {
            (void) ngx_cpystrn((u_char *) io->errstr,
                               (u_char *) "cannot connect",
                               sizeof(io->errstr));
        }

        return io;
    }

    c = io->peer.connection;

    c->data = io;
    c->read->handler = ngx_http_api_key_io_read_handler;
    c->write->handler = ngx_http_api_key_io_connected;

    if (addr->sockaddr->sa_family != AF_UNIX) {
        ngx_http_api_key_keepalive(c->fd);

        /*
         * no Nagle delay: a command written while an earlier one is not
         * acknowledged yet leaves at once (as with hiredis's connections,
         * and nginx's to a TLS upstream)
         */

        (void) ngx_tcp_nodelay(c);
    }

    if (rc == NGX_OK) {
        /* connected at once (a unix socket): on_connect later, as always */
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return io;
}


/* the write event, first: the non-blocking connect() is done */

static void
ngx_http_api_key_io_connected(ngx_event_t *wev)
{
    ngx_connection_t             *c = wev->data;
    ngx_http_api_key_redis_io_t  *io = c->data;

    if (ngx_http_api_key_io_test_connect(io) != NGX_OK) {
        ngx_http_api_key_io_connect_failed(io);
        return;
    }

#if (NGX_SSL)
    if (io->conf->ssl) {
        ngx_http_api_key_io_ssl_start(io);
        return;
    }
#endif

    ngx_http_api_key_io_ready(io);
}


/* on_connect(NGX_ERROR), then freed, without on_disconnect */

static void
ngx_http_api_key_io_connect_failed(ngx_http_api_key_redis_io_t *io)
{
    io->in_callback = 1;
    io->on_connect(io, NGX_ERROR);
    io->in_callback = 0;

    io->disconnecting = 1;
    ngx_http_api_key_io_close_now(io);
}


#if (NGX_SSL)

/* TCP is up: the TLS handshake, with the SNI and the last session */

static void
ngx_http_api_key_io_ssl_start(ngx_http_api_key_redis_io_t *io)
{
    ngx_int_t                       rc;
    ngx_connection_t               *c;
    ngx_http_api_key_redis_conf_t  *conf;

    c = io->peer.connection;
    conf = io->conf;

    io->errstr[0] = '\0';

    /* (ngx_ssl_create_connection() allocates from c->pool) */

    c->pool = ngx_create_pool(512, &io->clog);
    if (c->pool == NULL) {
        goto failed;
    }

    if (ngx_ssl_create_connection(conf->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        goto failed;
    }

    if (conf->tls_sni.len
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) conf->tls_sni.data)
           != 1)
    {
        ngx_ssl_error(NGX_LOG_ALERT, io->log, 0,
                      "api_key: SSL_set_tlsext_host_name(\"%V\") failed",
                      &conf->tls_sni);
        goto failed;
    }

    if (ngx_http_api_key_io_session
        && ngx_ssl_set_session(c, ngx_http_api_key_io_session) != NGX_OK)
    {
        goto failed;
    }

    /*
     * A write that did not finish (SSL_ERROR_WANT_WRITE) is retried with
     * the output buffer where it is then: commands appended meanwhile may
     * have moved the unsent bytes to its start or into a larger buffer
     * (ngx_http_api_key_io_append()); OpenSSL refuses that ("bad write
     * retry") unless told the buffer may move.  The bytes are the same.
     */

    SSL_set_mode(c->ssl->connection, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    c->ssl->save_session = ngx_http_api_key_io_ssl_save_session;

    /* whether the server asks for a client certificate: to say so */
    SSL_set_cert_cb(c->ssl->connection,
                    ngx_http_api_key_io_ssl_cert_requested, io);

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_api_key_io_ssl_done;
        return;
    }

    ngx_http_api_key_io_ssl_done(c);
    return;

failed:

    io->err = REDIS_ERR_IO;
    io->tls_failed = 1;

    if (io->errstr[0] == '\0') {
        (void) ngx_cpystrn((u_char *) io->errstr,
                           (u_char *) "TLS: cannot start a TLS connection",
                           sizeof(io->errstr));
    }

    ngx_http_api_key_io_connect_failed(io);
}


/* the handshake is over: verified, the connection is ready; or failed */

static void
ngx_http_api_key_io_ssl_done(ngx_connection_t *c)
{
    ngx_http_api_key_redis_io_t  *io = c->data;
    u_char                        text[sizeof(io->errstr)];

    if (c->ssl->handshaked) {

        if (!io->conf->tls_verify
            || ngx_http_api_key_io_ssl_verify(io) == NGX_OK)
        {
            io->tls_reused = SSL_session_reused(c->ssl->connection) ? 1 : 0;

            ngx_log_debug2(NGX_LOG_DEBUG_EVENT, io->log, 0,
                           "api_key: redis TLS handshake done: %s, %s",
                           SSL_get_version(c->ssl->connection),
                           io->tls_reused ? "session reused"
                                          : "new session");

            ngx_http_api_key_io_ready(io);
            return;
        }

        /* a session of a server that failed the checks is not resumed */

        if (ngx_http_api_key_io_session) {
            ngx_ssl_free_session(ngx_http_api_key_io_session);
            ngx_http_api_key_io_session = NULL;
        }

    } else {
        /* nginx's message ("SSL_do_handshake() failed (...)"), if any */

        (void) ngx_cpystrn(text, (u_char *) io->errstr, sizeof(text));

        (void) ngx_snprintf((u_char *) io->errstr, sizeof(io->errstr) - 1,
                            "TLS: handshake failed: %s%Z",
                            text[0] ? (char *) text : "no reason given");
        io->errstr[sizeof(io->errstr) - 1] = '\0';
    }

    c->ssl->no_wait_shutdown = 1;
    c->ssl->no_send_shutdown = 1;

    io->err = REDIS_ERR_IO;
    io->tls_failed = 1;

    ngx_http_api_key_io_connect_failed(io);
}


/*
 * tls_verify=on: the chain (checked during the handshake against tls_ca or
 * the system's store, its result kept by OpenSSL) and the name: tls_name
 * or the url's host (an IP address is checked as one)
 */

static ngx_int_t
ngx_http_api_key_io_ssl_verify(ngx_http_api_key_redis_io_t *io)
{
    long                            rc;
    X509                           *cert;
    ngx_connection_t               *c;
    ngx_http_api_key_redis_conf_t  *conf;

    c = io->peer.connection;
    conf = io->conf;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        (void) ngx_snprintf((u_char *) io->errstr, sizeof(io->errstr) - 1,
                            "TLS: certificate verify failed: (%l: %s)%Z", rc,
                            X509_verify_cert_error_string(rc));
        io->errstr[sizeof(io->errstr) - 1] = '\0';
        return NGX_ERROR;
    }

    if (conf->tls_sni.len == 0) {
        /* an IP address */

        cert = SSL_get_peer_certificate(c->ssl->connection);

        if (cert != NULL
            && X509_check_ip_asc(cert, (char *) conf->tls_name.data, 0) == 1)
        {
            X509_free(cert);
            return NGX_OK;
        }

        if (cert) {
            X509_free(cert);
        }

    } else if (ngx_ssl_check_host(c, &conf->tls_name) == NGX_OK) {
        return NGX_OK;
    }

    (void) ngx_snprintf((u_char *) io->errstr, sizeof(io->errstr) - 1,
                        "TLS: name mismatch: the certificate is not for "
                        "\"%V\"%Z", &conf->tls_name);
    io->errstr[sizeof(io->errstr) - 1] = '\0';

    return NGX_ERROR;
}


/*
 * The server asks for a client certificate.  Without tls_cert, TLS 1.3
 * finishes the handshake all the same and the server closes the connection
 * after it: the error then says what is missing (ngx_http_api_key_io_error).
 */

static int
ngx_http_api_key_io_ssl_cert_requested(ngx_ssl_conn_t *ssl_conn, void *arg)
{
    ngx_http_api_key_redis_io_t  *io = arg;

    io->cert_requested = 1;

    return 1;
}


/* a new session (TLS 1.3: a ticket after the handshake): the next one */

static void
ngx_http_api_key_io_ssl_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t  *session;

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    if (ngx_http_api_key_io_session) {
        ngx_ssl_free_session(ngx_http_api_key_io_session);
    }

    ngx_http_api_key_io_session = session;
}

#endif


/* at worker exit */

void
ngx_http_api_key_redis_io_cleanup(void)
{
#if (NGX_SSL)
    if (ngx_http_api_key_io_session) {
        ngx_ssl_free_session(ngx_http_api_key_io_session);
        ngx_http_api_key_io_session = NULL;
    }
#endif
}


static ngx_int_t
ngx_http_api_key_io_test_connect(ngx_http_api_key_redis_io_t *io)
{
    int         err;
    socklen_t   len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(io->peer.connection->fd, SOL_SOCKET, SO_ERROR,
                   (void *) &err, &len)
        == -1)
    {
        err = ngx_socket_errno;
    }

    if (err) {
        io->err = REDIS_ERR_IO;
        (void) ngx_cpystrn((u_char *) io->errstr, (u_char *) strerror(err),
                           sizeof(io->errstr));
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* connected: the commands written so far go, replies are read */

static void
ngx_http_api_key_io_ready(ngx_http_api_key_redis_io_t *io)
{
    ngx_connection_t  *c;

    c = io->peer.connection;

    io->connected = 1;

    c->read->handler = ngx_http_api_key_io_read_handler;
    c->write->handler = ngx_http_api_key_io_write_handler;

    io->in_callback = 1;
    io->on_connect(io, NGX_OK);
    io->in_callback = 0;

    if (io->freeing) {
        ngx_http_api_key_io_close_now(io);
        return;
    }

    if (io->out_len > io->out_pos && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static void
ngx_http_api_key_io_write_handler(ngx_event_t *wev)
{
    ngx_connection_t             *c = wev->data;
    ngx_http_api_key_redis_io_t  *io = c->data;

    io->errstr[0] = '\0';

    if (ngx_http_api_key_io_flush(io) == NGX_ERROR) {
        ngx_http_api_key_io_error(io, REDIS_ERR_IO, NULL, ngx_socket_errno);
    }
}


/* writes what the output buffer holds, as far as the socket takes it */

static ngx_int_t
ngx_http_api_key_io_flush(ngx_http_api_key_redis_io_t *io)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = io->peer.connection;

    while (io->out_pos < io->out_len) {

        n = c->send(c, io->out + io->out_pos, io->out_len - io->out_pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n <= 0) {
            return NGX_ERROR;
        }

        io->out_pos += n;
    }

    if (io->out_pos == io->out_len) {
        io->out_pos = 0;
        io->out_len = 0;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_api_key_io_read_handler(ngx_event_t *rev)
{
    ssize_t                       n;
    ngx_err_t                     err;
    ngx_connection_t             *c = rev->data;
    ngx_http_api_key_redis_io_t  *io = c->data;

    if (!io->connected) {
        return;                 /* the write event tells when it is */
    }

    io->errstr[0] = '\0';

    for ( ;; ) {
        n = c->recv(c, io->rbuf, NGX_HTTP_API_KEY_IO_READ);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_api_key_io_error(io, REDIS_ERR_EOF,
                                      "Server closed the connection", 0);
            return;
        }

        if (n < 0) {
            /* nginx's message about it is in errstr, or the errno says */
            err = ngx_socket_errno;
            ngx_http_api_key_io_error(io, REDIS_ERR_IO, NULL, err);
            return;
        }

        if (redisReaderFeed(io->reader, (const char *) io->rbuf, n)
            != REDIS_OK)
        {
            ngx_http_api_key_io_error(io, REDIS_ERR_OOM, "Out of memory", 0);
            return;
        }

        if (ngx_http_api_key_io_dispatch(io) == NGX_DONE) {
            return;             /* io is freed */
        }

        io->errstr[0] = '\0';

        /*
         * recv() said it read all there was (over TLS, ngx_ssl_recv() read
         * until the socket would block): another call would only be a
         * read() that fails with EAGAIN
         */

        if (!rev->ready) {
            break;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_api_key_io_error(io, REDIS_ERR_IO, "cannot read", 0);
    }
}


/*
 * Every complete reply, in order, to the callback of its command; on a
 * subscribed connection, the others (pushed messages) to the subscription's.
 * NGX_DONE: io was freed here.
 */

static ngx_int_t
ngx_http_api_key_io_dispatch(ngx_http_api_key_redis_io_t *io)
{
    void                            *r;
    u_char                          *p;
    redisReply                      *reply;
    ngx_http_api_key_redis_io_cb_t   cb;
    u_char                           text[96];

    for ( ;; ) {
        r = NULL;

        if (redisReaderGetReply(io->reader, &r) != REDIS_OK) {

            if (io->array_refused) {
                p = ngx_snprintf(text, sizeof(text) - 1,
                                 "a reply announced an array of %i elements "
                                 "(at most %d are taken)", io->bad_array,
                                 NGX_HTTP_API_KEY_IO_MAX_ELEMENTS);
                *p = '\0';

                ngx_http_api_key_io_error(io, REDIS_ERR_PROTOCOL,
                                          (const char *) text, 0);
                return NGX_DONE;
            }

            ngx_http_api_key_io_error(io, REDIS_ERR_PROTOCOL,
                                      io->reader->errstr, 0);
            return NGX_DONE;
        }

        reply = r;

        if (reply == NULL) {
            break;
        }

        io->nreplies++;

        if (io->ncbs) {
            cb = io->cbs[io->head];
            io->head = (io->head + 1) % io->cap;
            io->ncbs--;

        } else if (reply->type == REDIS_REPLY_ERROR) {

            /*
             * an error nothing waited for: the server refuses the
             * connection (maxclients, loading) or a subscription
             * (NOPERM), and may close it: an error, its text kept
             */

            io->err = REDIS_ERR_OTHER;
            (void) ngx_cpystrn((u_char *) io->errstr, (u_char *) reply->str,
                               ngx_min(sizeof(io->errstr),
                                       (size_t) reply->len + 1));
            freeReplyObject(reply);
            ngx_http_api_key_io_error(io, REDIS_ERR_OTHER, NULL, 0);
            return NGX_DONE;

        } else if (io->subscribed) {
            cb.fn = io->sub_fn;
            cb.privdata = NULL;

        } else {
            cb.fn = NULL;
        }

        if (cb.fn) {
            ngx_http_api_key_io_run(io, cb.fn, reply, cb.privdata);
        }

        freeReplyObject(reply);

        if (io->freeing) {
            ngx_http_api_key_io_close_now(io);
            return NGX_DONE;
        }
    }

    if (io->disconnecting && io->ncbs == 0) {
        ngx_http_api_key_io_close_now(io);
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_api_key_io_run(ngx_http_api_key_redis_io_t *io,
    ngx_http_api_key_redis_cb_pt fn, redisReply *reply, void *privdata)
{
    io->in_callback = 1;
    fn(io, reply, privdata);
    io->in_callback = 0;
}


/*
 * AUTH [user] password into argv and argvlen (3 entries each): the number
 * of arguments written, 0 when there is no password (no AUTH to send)
 */

int
ngx_http_api_key_redis_io_auth_argv(ngx_str_t *user, ngx_str_t *password,
    const char **argv, size_t *argvlen)
{
    int  n;

    if (password->len == 0) {
        return 0;
    }

    argv[0] = "AUTH";
    argvlen[0] = 4;
    n = 1;

    if (user != NULL && user->len) {
        argv[n] = (const char *) user->data;
        argvlen[n++] = user->len;
    }

    argv[n] = (const char *) password->data;
    argvlen[n++] = password->len;

    return n;
}


/* a command; its reply (or NULL) to fn(io, reply, privdata) */

ngx_int_t
ngx_http_api_key_redis_io_send(ngx_http_api_key_redis_io_t *io,
    ngx_http_api_key_redis_cb_pt fn, void *privdata, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_api_key_redis_io_cb_t  *cb;

    if (io->disconnecting || io->freeing || io->ncbs >= io->cap) {
        return NGX_ERROR;
    }

    if (ngx_http_api_key_io_append(io, argc, argv, argvlen) != NGX_OK) {
        return NGX_ERROR;
    }

    cb = &io->cbs[(io->head + io->ncbs) % io->cap];
    cb->fn = fn;
    cb->privdata = privdata;
    io->ncbs++;

    return NGX_OK;
}


/*
 * A (P)SUBSCRIBE: no reply of its own waits in the ring; its confirmation
 * and the messages go to fn(io, reply, NULL).
 */

ngx_int_t
ngx_http_api_key_redis_io_subscribe(ngx_http_api_key_redis_io_t *io,
    ngx_http_api_key_redis_cb_pt fn, int argc, const char **argv,
    const size_t *argvlen)
{
    if (io->disconnecting || io->freeing) {
        return NGX_ERROR;
    }

    if (ngx_http_api_key_io_append(io, argc, argv, argvlen) != NGX_OK) {
        return NGX_ERROR;
    }

    io->subscribed = 1;
    io->sub_fn = fn;

    return NGX_OK;
}


/* the command, encoded, at the end of the output buffer */

static ngx_int_t
ngx_http_api_key_io_append(ngx_http_api_key_redis_io_t *io, int argc,
    const char **argv, const size_t *argvlen)
{
    int                len;
    char              *cmd;
    size_t             size, unsent;
    u_char            *out;
    ngx_connection_t  *c;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    unsent = io->out_len - io->out_pos;

    if (io->out_size - io->out_len < (size_t) len) {

        if (io->out_size - unsent >= (size_t) len) {
            /* what was sent goes: the rest moves to the start */
            ngx_memmove(io->out, io->out + io->out_pos, unsent);

        } else {
            for (size = io->out_size * 2; size - unsent < (size_t) len;
                 size *= 2)
            {
                /* void */
            }

            out = ngx_alloc(size, io->log);
            if (out == NULL) {
                redisFreeCommand(cmd);
                return NGX_ERROR;
            }

            ngx_memcpy(out, io->out + io->out_pos, unsent);
            ngx_free(io->out);
            io->out = out;
            io->out_size = size;
        }

        io->out_pos = 0;
        io->out_len = unsent;
    }

    ngx_memcpy(io->out + io->out_len, cmd, len);
    io->out_len += len;

    redisFreeCommand(cmd);

    c = io->peer.connection;

    /* written once this iteration's events are handled, all at once */

    if (io->connected && c && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


/* no new command; closed once every command sent is answered */

void
ngx_http_api_key_redis_io_disconnect(ngx_http_api_key_redis_io_t *io)
{
    io->disconnecting = 1;

    if (!io->in_callback && io->ncbs == 0) {
        ngx_http_api_key_io_close_now(io);
    }
}


/* closed now (or once the running callback returns), with on_disconnect */

void
ngx_http_api_key_redis_io_free(ngx_http_api_key_redis_io_t *io)
{
    io->freeing = 1;

    if (!io->in_callback) {
        ngx_http_api_key_io_close_now(io);
    }
}


/* a broken connection: err and errstr say why */

static void
ngx_http_api_key_io_error(ngx_http_api_key_redis_io_t *io, ngx_uint_t err,
    const char *text, ngx_err_t errnum)
{
#if (NGX_SSL)
    u_char  reason[sizeof(io->errstr)];
#endif

    if (io->err == 0) {
        io->err = err;
    }

    if (text) {
        (void) ngx_cpystrn((u_char *) io->errstr, (u_char *) text,
                           sizeof(io->errstr));

    } else if (io->errstr[0] == '\0' && errnum) {
        (void) ngx_cpystrn((u_char *) io->errstr, (u_char *) strerror(errnum),
                           sizeof(io->errstr));

    } else if (io->errstr[0] == '\0') {
        (void) ngx_cpystrn((u_char *) io->errstr, (u_char *) "I/O error",
                           sizeof(io->errstr));
    }

#if (NGX_SSL)
    if (io->cert_requested && io->conf->tls_cert.len == 0 && io->nreplies == 0
        && (io->err == REDIS_ERR_IO || io->err == REDIS_ERR_EOF))
    {
        /*
         * the server broke the connection (an alert, a reset, a close)
         * before its first reply: for want of a client certificate most
         * likely; anything else (a reply it could not have sent, a
         * timeout) is told as it is
         */

        (void) ngx_cpystrn(reason, (u_char *) io->errstr, sizeof(reason));
        (void) ngx_snprintf((u_char *) io->errstr, sizeof(io->errstr) - 1,
                            "TLS: the server asks for a client certificate "
                            "and none is configured (tls_cert, tls_key): "
                            "%s%Z", reason);
        io->errstr[sizeof(io->errstr) - 1] = '\0';
        io->tls_failed = 1;
    }
#endif

    /* the commands sent are answered NULL, none is taken meanwhile */
    io->disconnecting = 1;

    if (io->peer.connection) {
        io->peer.connection->error = 1;
    }

    ngx_http_api_key_io_close_now(io);
}


/*
 * The end (hiredis's order): the commands waiting are answered NULL, then
 * the subscription's callback; the socket is closed; on_disconnect if it
 * was connected; io is freed.
 */

static void
ngx_http_api_key_io_close_now(ngx_http_api_key_redis_io_t *io)
{
    ngx_int_t                        status;
    ngx_pool_t                      *pool;
    ngx_connection_t                *c;
    ngx_http_api_key_redis_io_cb_t   cb;

    if (io->closing) {
        return;
    }

    io->closing = 1;

    while (io->ncbs) {
        cb = io->cbs[io->head];
        io->head = (io->head + 1) % io->cap;
        io->ncbs--;

        if (cb.fn) {
            ngx_http_api_key_io_run(io, cb.fn, NULL, cb.privdata);
        }
    }

    if (io->subscribed && io->sub_fn) {
        ngx_http_api_key_io_run(io, io->sub_fn, NULL, NULL);
    }

    c = io->peer.connection;

    if (c) {
        io->peer.connection = NULL;

#if (NGX_SSL)
        if (c->ssl) {
            /* no close_notify exchange: the SSL object goes now */
            c->ssl->no_wait_shutdown = 1;
            c->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif

        pool = c->pool;
        ngx_close_connection(c);

        if (pool) {
            ngx_destroy_pool(pool);
        }
    }

    if (io->connected && io->on_disconnect) {
        status = (io->freeing || io->err == 0) ? NGX_OK : NGX_ERROR;
        io->on_disconnect(io, status);
    }

    ngx_http_api_key_io_destroy(io);
}


static void
ngx_http_api_key_io_destroy(ngx_http_api_key_redis_io_t *io)
{
    if (io->reader) {
        redisReaderFree(io->reader);
    }

    if (io->cbs) {
        ngx_free(io->cbs);
    }

    if (io->rbuf) {
        ngx_free(io->rbuf);
    }

    if (io->out) {
        ngx_free(io->out);
    }

    ngx_free(io);
}


/*
 * The connection's log: the text of nginx's last message about the socket
 * (its errno included) is kept in io->errstr; alerts still go to the
 * error log.
 */

static void
ngx_http_api_key_io_log_writer(ngx_log_t *log, ngx_uint_t level, u_char *buf,
    size_t len)
{
    u_char                       *p, *last;
    ngx_http_api_key_redis_io_t  *io = log->wdata;

    last = buf + len;

    while (last > buf && (last[-1] == LF || last[-1] == CR)) {
        last--;
    }

    /* "TIME [LEVEL] PID#TID: [*N ]TEXT" */

    p = ngx_strlchr(buf, last, ']');
    p = (p == NULL) ? buf : p;
    p = ngx_strlchr(p, last, ':');
    p = (p == NULL) ? buf : p + 1;

    while (p < last && *p == ' ') {
        p++;
    }

    if (p < last && *p == '*') {
        while (p < last && *p != ' ') {
            p++;
        }

        p += (p < last);
    }

    if (level <= NGX_LOG_ALERT) {
        ngx_log_error(level, io->log, 0, "%*s", last - p, p);
    }

    if (level <= NGX_LOG_INFO) {
        (void) ngx_cpystrn((u_char *) io->errstr, p,
                           ngx_min(sizeof(io->errstr), (size_t) (last - p + 1)));
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


/*
 * The reader's array constructor: hiredis's, for a size it can take (see
 * NGX_HTTP_API_KEY_IO_MAX_ELEMENTS); NULL makes the reader fail.
 */

static void *
ngx_http_api_key_io_create_array(const redisReadTask *task, int elements)
{
    ngx_http_api_key_redis_io_t  *io;

    if (elements < 0 || elements > NGX_HTTP_API_KEY_IO_MAX_ELEMENTS) {
        io = task->privdata;

        if (io) {
            io->array_refused = 1;
            io->bad_array = elements;
        }

        return NULL;
    }

    return ngx_http_api_key_io_default_array(task, elements);
}
