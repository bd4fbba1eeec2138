/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the Redis command layer (redis.c) as the files
 * that read hiredis's replies see it: lookup.c (record reads) and events.c
 * (the events subscription); sentinel.c (where the master is, for redis.c);
 * and redis.c's connections (redis_io.c, hiredis as the RESP codec only).  The other files use the part of it in
 * ngx_http_api_key.h, without hiredis types.
 */

#ifndef _NGX_HTTP_API_KEY_REDIS_H_INCLUDED_
#define _NGX_HTTP_API_KEY_REDIS_H_INCLUDED_


#include "ngx_http_api_key.h"

#include <hiredis/hiredis.h>


/* within the module only, as in ngx_http_api_key.h */
#pragma GCC visibility push(hidden)


typedef struct ngx_http_api_key_redis_io_s  ngx_http_api_key_redis_io_t;

/* a reply (NULL: the connection went before it came), then freed */
typedef void (*ngx_http_api_key_redis_cb_pt)(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata);

/* connected (NGX_OK) or not (NGX_ERROR); closed (NGX_OK: asked to) */
typedef void (*ngx_http_api_key_redis_io_pt)(ngx_http_api_key_redis_io_t *io,
    ngx_int_t status);

typedef struct {
    ngx_http_api_key_redis_cb_pt   fn;
    void                          *privdata;
} ngx_http_api_key_redis_io_cb_t;


/* one Redis connection on nginx's events (redis_io.c, for redis.c) */
struct ngx_http_api_key_redis_io_s {
    ngx_peer_connection_t            peer;
    ngx_http_api_key_redis_conf_t   *conf;
    ngx_log_t                       *log;
    ngx_log_t                        clog;      /* the connection's */
    void                            *data;      /* the owner's */
    ngx_http_api_key_redis_io_pt     on_connect;
    ngx_http_api_key_redis_io_pt     on_disconnect;
    ngx_http_api_key_redis_cb_pt     sub_fn;    /* pushed messages */

    redisReader                     *reader;
    u_char                          *rbuf;

    u_char                          *out;       /* encoded commands */
    size_t                           out_pos;   /* written up to here */
    size_t                           out_len;
    size_t                           out_size;

    /* the commands waiting for a reply, in order: a ring */
    ngx_http_api_key_redis_io_cb_t  *cbs;
    ngx_uint_t                       ncbs;
    ngx_uint_t                       head;
    ngx_uint_t                       cap;

    ngx_uint_t                       nreplies;  /* read so far */
    ngx_int_t                        bad_array; /* its announced size,
                                                   refused */
    ngx_uint_t                       err;       /* REDIS_ERR_*, 0: none */
    char                             errstr[160];

    unsigned                         connected:1;
    unsigned                         tls_failed:1; /* the handshake, or
                                                      the checks after it */
    unsigned                         tls_reused:1; /* a resumed session */
    unsigned                         cert_requested:1; /* by the server */
    unsigned                         subscribed:1;
    unsigned                         in_callback:1;
    unsigned                         disconnecting:1;
    unsigned                         freeing:1;
    unsigned                         closing:1;
    unsigned                         array_refused:1;
};

ngx_http_api_key_redis_io_t *ngx_http_api_key_redis_io_open(
    ngx_http_api_key_redis_conf_t *conf, ngx_addr_t *addr, ngx_uint_t ncbs,
    ngx_log_t *log);
ngx_int_t ngx_http_api_key_redis_io_send(ngx_http_api_key_redis_io_t *io,
    ngx_http_api_key_redis_cb_pt fn, void *privdata, int argc,
    const char **argv, const size_t *argvlen);
ngx_int_t ngx_http_api_key_redis_io_subscribe(ngx_http_api_key_redis_io_t *io,
    ngx_http_api_key_redis_cb_pt fn, int argc, const char **argv,
    const size_t *argvlen);
void ngx_http_api_key_redis_io_disconnect(ngx_http_api_key_redis_io_t *io);
void ngx_http_api_key_redis_io_free(ngx_http_api_key_redis_io_t *io);
void ngx_http_api_key_redis_io_cleanup(void);
int ngx_http_api_key_redis_io_auth_argv(ngx_str_t *user, ngx_str_t *password,
    const char **argv, size_t *argvlen);

/* sentinel.c: where the master is (redis-sentinel://), for redis.c */
typedef void (*ngx_http_api_key_master_pt)(void);   /* it moved */

ngx_int_t ngx_http_api_key_sentinel_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_redis_conf_t *conf, ngx_http_api_key_master_pt moved,
    ngx_atomic_t *switches, ngx_atomic_t *queries);
void ngx_http_api_key_sentinel_start(void);
void ngx_http_api_key_sentinel_exit_worker(void);
ngx_addr_t *ngx_http_api_key_sentinel_master(
    ngx_http_api_key_redis_conf_t **ioconf);
void ngx_http_api_key_sentinel_rediscover(const char *why);

/* the commands connection, for the record reads */
ngx_int_t ngx_http_api_key_redis_read_admit(void);
ngx_int_t ngx_http_api_key_redis_send(ngx_http_api_key_redis_cb_pt fn, void *privdata,
    ngx_int_t key, int argc, const char **argv, const size_t *argvlen);
ngx_uint_t ngx_http_api_key_redis_outage_timeout(void);
void ngx_http_api_key_redis_unanswered(void);
void ngx_http_api_key_redis_set_denied(ngx_uint_t denied);
ngx_uint_t ngx_http_api_key_redis_auth_error(redisReply *reply);
ngx_uint_t ngx_http_api_key_redis_failover_error(redisReply *reply);

/* the events subscriber: both connections' "ready", the subscription */
ngx_int_t ngx_http_api_key_redis_subscribe(ngx_http_api_key_redis_cb_pt fn, int argc,
    const char **argv, const size_t *argvlen);
ngx_uint_t ngx_http_api_key_redis_subscribed(void);
ngx_uint_t ngx_http_api_key_redis_sub_denied(void);

/* cluster.c: a Redis Cluster (for redis.c) */
typedef void (*ngx_http_api_key_cluster_typed_pt)(
    ngx_http_api_key_reply_pt handler, void *data, redisReply *reply);

ngx_int_t ngx_http_api_key_cluster_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_redis_conf_t *conf, ngx_http_api_key_shctx_t *sh);
void ngx_http_api_key_cluster_start(ngx_http_api_key_cluster_typed_pt typed,
    ngx_http_api_key_ready_pt cmd_ready, ngx_http_api_key_ready_pt sub_ready);
void ngx_http_api_key_cluster_exit_worker(void);
ngx_int_t ngx_http_api_key_cluster_send(ngx_http_api_key_redis_cb_pt fn,
    ngx_http_api_key_reply_pt handler, void *privdata, ngx_int_t key,
    ngx_uint_t read, int argc, const char **argv, const size_t *argvlen);
ngx_int_t ngx_http_api_key_cluster_admit(void);
ngx_uint_t ngx_http_api_key_cluster_ready(void);
ngx_uint_t ngx_http_api_key_cluster_state(ngx_http_api_key_conn_e conn);
ngx_int_t ngx_http_api_key_cluster_subscribe(ngx_http_api_key_redis_cb_pt fn,
    int argc, const char **argv, const size_t *argvlen);
ngx_uint_t ngx_http_api_key_cluster_subscribed(void);
ngx_uint_t ngx_http_api_key_cluster_sub_denied(void);


#pragma GCC visibility pop

#endif /* _NGX_HTTP_API_KEY_REDIS_H_INCLUDED_ */
