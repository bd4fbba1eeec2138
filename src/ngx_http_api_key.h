
/*
 * ngx_http_api_key_module: the common header of the C glue.
 *
 * ngx_http_api_key_module.c     directives, configuration, shared zones,
 *                               worker start/stop
 * ngx_http_api_key_handler.c    the access-phase handler: cache lookup,
 *                               policy, decision, redirects, responses
 * ngx_http_api_key_keys.c       key sources: find the key (header, bearer,
 *                               query, cookie), check and hash it (query
 *                               percent-decoded), strip the sources
 * ngx_http_api_key_redis.c      hiredis on nginx's event loop: connections,
 *                               lookups, reconnection
 * ngx_http_api_key_variables.c  $api_key_* variables
 *
 * The C++ core (src/core, no nginx types) is reached through ak_core.h.
 */

#ifndef _NGX_HTTP_API_KEY_H_INCLUDED_
#define _NGX_HTTP_API_KEY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ak_core.h"


/* $api_key_status values, in the order of ngx_http_api_key_status_names */
typedef enum {
    NGX_HTTP_API_KEY_NONE = 0,
    NGX_HTTP_API_KEY_OK,
    NGX_HTTP_API_KEY_MISSING,
    NGX_HTTP_API_KEY_MALFORMED,
    NGX_HTTP_API_KEY_UNKNOWN,
    NGX_HTTP_API_KEY_EXPIRED,
    NGX_HTTP_API_KEY_REVOKED,
    NGX_HTTP_API_KEY_BAD_RECORD,
    NGX_HTTP_API_KEY_IP_DENIED,
    NGX_HTTP_API_KEY_REFERRER_DENIED,
    NGX_HTTP_API_KEY_SCOPE_DENIED,
    NGX_HTTP_API_KEY_RATE_LIMITED,
    NGX_HTTP_API_KEY_QUOTA_EXCEEDED,
    NGX_HTTP_API_KEY_UNAVAILABLE,
    NGX_HTTP_API_KEY_UNCHECKED,
    NGX_HTTP_API_KEY_NSTATUS
} ngx_http_api_key_status_e;


/* key sources */
#define NGX_HTTP_API_KEY_SRC_HEADER   1
#define NGX_HTTP_API_KEY_SRC_BEARER   2
#define NGX_HTTP_API_KEY_SRC_QUERY    3
#define NGX_HTTP_API_KEY_SRC_COOKIE   4

#define NGX_HTTP_API_KEY_FORMAT_ANY       0
#define NGX_HTTP_API_KEY_FORMAT_CHECKSUM  1

/* outcome of a Redis read, as seen by the requests waiting on it */
#define NGX_HTTP_API_KEY_LOOKUP_PENDING   0
#define NGX_HTTP_API_KEY_LOOKUP_FOUND     1
#define NGX_HTTP_API_KEY_LOOKUP_NOTFOUND  2
#define NGX_HTTP_API_KEY_LOOKUP_BAD       3
#define NGX_HTTP_API_KEY_LOOKUP_ERROR     4
#define NGX_HTTP_API_KEY_LOOKUP_DENIED    5  /* Redis refuses the module's
                                                commands (NOPERM, NOAUTH,
                                                WRONGPASS): never fail open */


typedef struct {
    ngx_uint_t                    type;
    ngx_str_t                     name;      /* as written */
    ngx_int_t                     var;       /* indexes of the cacheable */
    ngx_int_t                     var2;      /* variables that hold the
                                                source ($http_NAME,
                                                $http_authorization,
                                                $cookie_NAME, $http_cookie),
                                                dropped once stripped;
                                                NGX_ERROR: none */
} ngx_http_api_key_source_t;


/* a query argument removed at the start of the request (keys.c) */
typedef struct {
    ngx_str_t                     name;      /* the server's source */
    ngx_str_t                     value;     /* its first occurrence as
                                                sent (a copy, wiped at the
                                                end); data NULL: taken by a
                                                location that strips it */
} ngx_http_api_key_arg_t;


typedef struct {
    ngx_http_api_key_arg_t       *args;
    ngx_uint_t                    nargs;
    ngx_str_t                     sent[3];      /* r->args, r->unparsed_uri,
                                                   r->request_line as sent */
    ngx_str_t                     stripped[3];  /* and as stripped */
} ngx_http_api_key_early_t;


/* Redis read latency histogram: upper bounds in microseconds, then +Inf */
#define NGX_HTTP_API_KEY_LATENCY_BUCKETS  12
extern const ngx_uint_t  ngx_http_api_key_latency_bounds[];


/* lives in shared memory, at the start of the zone's slab pool */
typedef struct {
    ak_cache_t                   *cache;
    size_t                        cache_size;
    ngx_atomic_t                  status[NGX_HTTP_API_KEY_NSTATUS];
    ngx_atomic_t                  events[5];  /* revoke, update, flush,
                                                 keyspace, malformed */
    ngx_atomic_t                  resubscribes;
    ngx_atomic_t                  connects[2];      /* commands, events */
    ngx_atomic_t                  disconnects[2];
    ngx_atomic_t                  redis_errors;
    ngx_atomic_t                  redis_timeouts;
    ngx_atomic_t                  latency[NGX_HTTP_API_KEY_LATENCY_BUCKETS];
    ngx_atomic_t                  latency_sum_us;
    ngx_atomic_t                  latency_count;
    ak_evlog_t                    evlog;     /* events applied on this node */
} ngx_http_api_key_shctx_t;


typedef struct {
    ngx_str_t                     name;
    ak_cache_conf_t               conf;
    ngx_uint_t                    quota_lease;    /* counts per lease */
    ngx_uint_t                    quota_offline;  /* per worker, key, window */
    ngx_shm_zone_t               *shm_zone;
    ngx_slab_pool_t              *shpool;
    ngx_http_api_key_shctx_t     *sh;
    uint64_t                      event_pos; /* this worker's, in sh->evlog */
    ngx_uint_t                    event_lagging;
} ngx_http_api_key_zone_t;


typedef struct {
    ngx_str_t                     url;
    ngx_str_t                     host;      /* NUL-terminated IP text */
    ngx_int_t                     port;
    ngx_str_t                     path;      /* unix socket, NUL-terminated */
    ngx_int_t                     db;
    ngx_str_t                     user;
    ngx_str_t                     password;
    ngx_msec_t                    timeout;
    ngx_msec_t                    connect_timeout;
    ngx_str_t                     prefix;
    ngx_str_t                     channel;
    ngx_flag_t                    keyspace_events;
    ngx_uint_t                    max_pending;   /* commands in flight */
    ngx_uint_t                    max_timeouts;  /* in a row: reopen */
} ngx_http_api_key_redis_conf_t;


typedef struct {
    ngx_array_t                   zones;     /* ngx_http_api_key_zone_t * */
    ngx_http_api_key_redis_conf_t *redis;
    ngx_int_t                     hash_kind;  /* AK_HASH_*, -1 unset */
    ngx_str_t                     secret;
    ngx_uint_t                    enabled;   /* some location checks keys */
    ngx_uint_t                    query_vars;    /* the two below are set */
    ngx_int_t                     var_request;   /* indexes: $request, */
    ngx_int_t                     var_request_uri;   /* $request_uri */
} ngx_http_api_key_main_conf_t;


typedef struct {
    ngx_http_api_key_zone_t      *zone;      /* NULL: off */
    ngx_array_t                  *sources;   /* ngx_http_api_key_source_t */
    ngx_int_t                     format;
    ngx_str_t                     format_prefix;
    ngx_array_t                  *scopes;    /* ak_str_t */
    ngx_str_t                     scopes_text;
    ngx_flag_t                    fail_open;
    ngx_flag_t                    strip;
    ngx_str_t                     realm;
    ngx_str_t                     www_missing;   /* WWW-Authenticate values */
    ngx_str_t                     www_invalid;
    ngx_str_t                     www_scope;
} ngx_http_api_key_loc_conf_t;


/* a key found in the request (keys.c): where it is, not a copy of it */
typedef struct {
    ngx_str_t                     value;     /* as sent (maybe escaped) */
    ngx_http_api_key_source_t    *source;
    ngx_list_part_t              *part;  /* a header source: where it is */
    ngx_uint_t                    i;
} ngx_http_api_key_found_t;


typedef struct {
    ngx_http_request_t           *request;
    ngx_http_api_key_status_e     status;
    ngx_int_t                     rc;        /* the handler's final answer */
    ngx_http_api_key_loc_conf_t  *decided_by;    /* where it was decided */
    ngx_http_api_key_source_t    *source;    /* where the key was found */
    ngx_http_api_key_early_t     *early;     /* query arguments removed at
                                                the start (main request) */
    unsigned                      decided:1;
    unsigned                      hashed:1;
    unsigned                      attempts:2;

    u_char                        hash[AK_HASH_LEN];

    /* waiting on Redis: a record read or a quota lease */
    void                         *waiting;
    ngx_queue_t                   wait;
    ngx_uint_t                    lookup_result;
    ngx_uint_t                    quota_tries;

    /* for variables; copied out of the record */
    ngx_str_t                     id;
    ngx_str_t                     owner;
    ngx_str_t                     plan;
    ngx_str_t                     scopes;
    ngx_int_t                     rate_remaining;    /* -1: none */
    ngx_int_t                     quota_remaining;   /* -1: none */

    /* for the 429 headers */
    ngx_uint_t                    rate_n;
    ngx_uint_t                    rate_window;       /* seconds */
    ngx_uint_t                    rate_burst;
    ngx_uint_t                    retry_after;       /* seconds */
    ngx_uint_t                    reset;             /* seconds */
} ngx_http_api_key_ctx_t;


/*
 * The first 4 bytes of a key's hash as a number: what debug lines show of a
 * key whose id is not known yet (never the key itself).
 */

static ngx_inline uint32_t
ngx_http_api_key_hash_prefix(u_char *hash)
{
    return (uint32_t) hash[0] << 24 | (uint32_t) hash[1] << 16
           | (uint32_t) hash[2] << 8 | (uint32_t) hash[3];
}


extern ngx_module_t  ngx_http_api_key_module;
extern ngx_str_t     ngx_http_api_key_status_names[];


/* handler.c */
ngx_int_t ngx_http_api_key_post_read_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_api_key_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_api_key_subrequest_handler(ngx_http_request_t *r);
ngx_http_api_key_ctx_t *ngx_http_api_key_get_ctx(ngx_http_request_t *r);
void ngx_http_api_key_wake_all(ngx_queue_t *waiters, ngx_uint_t result);

/* keys.c */
ngx_int_t ngx_http_api_key_strip_early(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t **early);
void ngx_http_api_key_restore_early(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t *early);
ngx_int_t ngx_http_api_key_find(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t *early,
    ngx_http_api_key_found_t *found);
ngx_int_t ngx_http_api_key_check_and_hash(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_found_t *found, ak_hasher_t *hasher);
ngx_int_t ngx_http_api_key_strip(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_found_t *found,
    ngx_http_api_key_early_t *early);
ngx_uint_t ngx_http_api_key_same_source(ngx_http_api_key_source_t *a,
    ngx_http_api_key_source_t *b);

/* redis.c */
ngx_int_t ngx_http_api_key_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf);
void ngx_http_api_key_redis_exit_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_api_key_redis_lookup(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, uint64_t seq);
void ngx_http_api_key_redis_cancel(ngx_http_api_key_ctx_t *ctx);

struct redisAsyncContext;
typedef void (*ngx_http_api_key_redis_cb_pt)(struct redisAsyncContext *ac,
    void *reply, void *privdata);

ngx_int_t ngx_http_api_key_redis_command(ngx_http_api_key_redis_cb_pt cb,
    void *privdata, int argc, const char **argv, const size_t *argvlen);
ngx_uint_t ngx_http_api_key_redis_ready(void);
ngx_http_api_key_redis_conf_t *ngx_http_api_key_redis_conf(void);
ngx_rbtree_node_t *ngx_http_api_key_tree_find(ngx_rbtree_t *tree,
    ngx_http_api_key_zone_t *zone, u_char *hash, size_t hash_offset,
    size_t zone_offset);

/* limits.c */
void ngx_http_api_key_limits_init_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_api_key_limits(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ak_record_t *rec, uint32_t slot, ngx_http_api_key_status_e *status);

/* variables.c */
ngx_int_t ngx_http_api_key_add_variables(ngx_conf_t *cf);

/* metrics.c */
char *ngx_http_api_key_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_api_key_observe_latency(ngx_http_api_key_zone_t *zone,
    ngx_uint_t us);
ngx_uint_t ngx_http_api_key_redis_state(ngx_uint_t which);

/* module.c: per-worker state */
ak_hasher_t *ngx_http_api_key_hasher(void);


#endif /* _NGX_HTTP_API_KEY_H_INCLUDED_ */
