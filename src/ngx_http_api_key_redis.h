
/*
 * ngx_http_api_key_module: the Redis command layer (redis.c) as the files
 * that speak hiredis see it: lookup.c (record reads) and events.c (the
 * events subscription); and redis.c's own adapter (redis_io.c).  The
 * other files use the part of it in ngx_http_api_key.h, without hiredis
 * types.
 */

#ifndef _NGX_HTTP_API_KEY_REDIS_H_INCLUDED_
#define _NGX_HTTP_API_KEY_REDIS_H_INCLUDED_


#include "ngx_http_api_key.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/* hiredis on nginx's events (redis_io.c, for redis.c) */
typedef struct {
    redisAsyncContext            *ac;
    ngx_connection_t             *c;
    ngx_log_t                    *log;
} ngx_http_api_key_redis_io_t;

ngx_int_t ngx_http_api_key_redis_io_attach(ngx_http_api_key_redis_io_t *io,
    redisAsyncContext *ac, ngx_uint_t tcp);
void ngx_http_api_key_redis_io_add_write(void *data);

/* the commands connection, for the record reads */
ngx_int_t ngx_http_api_key_redis_read_admit(void);
ngx_int_t ngx_http_api_key_redis_send(redisCallbackFn *fn, void *privdata,
    int argc, const char **argv, const size_t *argvlen);
ngx_uint_t ngx_http_api_key_redis_outage_timeout(void);
void ngx_http_api_key_redis_unanswered(void);
void ngx_http_api_key_redis_set_denied(ngx_uint_t denied);
ngx_uint_t ngx_http_api_key_redis_auth_error(redisReply *reply);

/* the events subscriber: both connections' "ready", the subscription */
void ngx_http_api_key_redis_on_ready(ngx_http_api_key_conn_e conn,
    ngx_http_api_key_ready_pt ready);
ngx_int_t ngx_http_api_key_redis_subscribe(redisCallbackFn *fn, int argc,
    const char **argv, const size_t *argvlen);
ngx_uint_t ngx_http_api_key_redis_subscribed(void);
ngx_uint_t ngx_http_api_key_redis_sub_denied(void);


#endif /* _NGX_HTTP_API_KEY_REDIS_H_INCLUDED_ */
