/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the common header of the C glue.
 *
 * The glue files, top to bottom: a file calls only files below it (function
 * pointers registered at init time excepted).
 *
 * ngx_http_api_key_module.c     directives, zones, worker start/stop
 * ngx_http_api_key_handler.c    access phase: lookup, decision (the
 *                               worker's kept views of records, with their
 *                               marks and last rule verdicts), redirects,
 *                               responses (problem+json body filters)
 * ngx_http_api_key_metrics.c    the metrics page
 * ngx_http_api_key_verify.c     api_key_verify's JSON answer
 * ngx_http_api_key_variables.c  $api_key_* variables
 * ngx_http_api_key_keys.c       key sources: find the key, check and hash
 *                               it (query percent-decoded)
 * ngx_http_api_key_lookup.c     coalesced record reads: answer -> cache
 * ngx_http_api_key_limits.c     rate limits and quotas, quota lease I/O
 * ngx_http_api_key_rate.c       cluster-wide rates: token lease I/O
 * ngx_http_api_key_usage.c      per-key usage (last use, requests per day)
 *                               and requests by label: counted in the
 *                               worker, folded into the zone and flushed
 *                               by timers
 * ngx_http_api_key_events.c     the events subscriber: apply to the caches
 * ngx_http_api_key_marker.c     the hash mode marker apikeyctl writes,
 *                               compared with api_key_hash at start
 * ngx_http_api_key_strip.c      headers, cookies and query strings that carry
 *                               a key: walk them, strip the key (api_key_strip;
 *                               the parsing is the core's extract.cpp)
 * ngx_http_api_key_redis.c      Redis connections and the command queue
 * ngx_http_api_key_sentinel.c   redis-sentinel://: asks the sentinels where
 *                               the master is, follows +switch-master
 * ngx_http_api_key_cluster.c    Redis Cluster: the slot map, a command
 *                               connection per master, MOVED/ASK, events
 *                               connections on every master
 * ngx_http_api_key_redis_io.c   one Redis connection on nginx's events:
 *                               connect, TLS, write, read (hiredis: RESP only)
 * ngx_http_api_key_redis_url.c  api_key_redis's URL and parameters, the TLS
 *                               context of rediss://
 * ngx_http_api_key_zone.c       api_key_zone: the directive, the zone's init
 * ngx_http_api_key_wait.c       requests waiting on a read or a lease
 * ngx_http_api_key.h            this: types, names, inline counters
 * ngx_http_api_key_redis.h      redis.c's API with hiredis types
 * ngx_http_api_key.map          the linker's version script of a dynamic
 *                               module: exports nginx's three symbols only
 *
 * The C++ core (src/core, no nginx types) is reached through ak_core.h;
 * among its files, src/core/extract.cpp parses the request's key sources
 * (Cookie values, Bearer credentials, query strings) and rebuilds a Cookie
 * value or a query string without the key, for keys.c and strip.c.
 */

#ifndef _NGX_HTTP_API_KEY_H_INCLUDED_
#define _NGX_HTTP_API_KEY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * Everything declared below (the glue's functions and variables, the core's
 * API) is used within the module's shared object only: hidden, so that a
 * call from one of its files to another is a direct call, not one through
 * the PLT, and a variable is not read through the GOT.  nginx finds the
 * module by ngx_modules, in the file its build generates.
 */
#pragma GCC visibility push(hidden)


/*
 * ngx_http_api_key_cold: a function off the usual path (a denial, a rare
 * case), kept out of line, so that the usual path's caller saves fewer
 * registers and its stack frame stays small.
 * ngx_http_api_key_hot: a function of the usual path inlined where it is
 * called, whatever the compiler thinks of its size: its one call there
 * saves a stack frame.
 * ngx_http_api_key_apart: a function of the usual path kept out of line
 * (its caller tail-calls it and so needs no frame of its own).
 */
#if (defined __GNUC__ || defined __clang__)
#define ngx_http_api_key_cold   __attribute__((noinline, cold))
#define ngx_http_api_key_hot    __attribute__((always_inline))
#define ngx_http_api_key_apart  __attribute__((noinline))
#else
#define ngx_http_api_key_cold
#define ngx_http_api_key_hot
#define ngx_http_api_key_apart
#endif

#include "ak_core.h"


/* $api_key_status values; their names follow, in the same order */
typedef enum {
    NGX_HTTP_API_KEY_NONE = 0,
    NGX_HTTP_API_KEY_OK,
    NGX_HTTP_API_KEY_MISSING,
    NGX_HTTP_API_KEY_MALFORMED,
    NGX_HTTP_API_KEY_UNKNOWN,
    NGX_HTTP_API_KEY_EXPIRED,
    NGX_HTTP_API_KEY_REVOKED,
    NGX_HTTP_API_KEY_DISABLED,
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


static ngx_inline ngx_str_t *
ngx_http_api_key_status_name(ngx_http_api_key_status_e status)
{
    static ngx_str_t  names[NGX_HTTP_API_KEY_NSTATUS] = {
        ngx_string(""),
        ngx_string("ok"),
        ngx_string("missing"),
        ngx_string("malformed"),
        ngx_string("unknown"),
        ngx_string("expired"),
        ngx_string("revoked"),
        ngx_string("disabled"),
        ngx_string("bad_record"),
        ngx_string("ip_denied"),
        ngx_string("referrer_denied"),
        ngx_string("scope_denied"),
        ngx_string("rate_limited"),
        ngx_string("quota_exceeded"),
        ngx_string("unavailable"),
        ngx_string("unchecked")
    };

    return &names[status];
}


/*
 * What arrives on the events subscription, as counted per node
 * (shctx->events[], api_key_events_total); names in the same order.
 */
typedef enum {
    NGX_HTTP_API_KEY_EVENT_REVOKE = 0,   /* "revoke HASH" */
    NGX_HTTP_API_KEY_EVENT_UPDATE,       /* "update HASH" */
    NGX_HTTP_API_KEY_EVENT_FLUSH,        /* "flush" */
    NGX_HTTP_API_KEY_EVENT_KEYSPACE,     /* a keyspace notification */
    NGX_HTTP_API_KEY_EVENT_MALFORMED,    /* anything else on the channel */
    NGX_HTTP_API_KEY_NEVENTS
} ngx_http_api_key_event_e;


static ngx_inline const char *
ngx_http_api_key_event_name(ngx_http_api_key_event_e event)
{
    static const char  *names[NGX_HTTP_API_KEY_NEVENTS] = {
        "revoke", "update", "flush", "keyspace", "malformed"
    };

    return names[event];
}


/* a worker's two Redis connections (shctx->connects[] etc. by these) */
typedef enum {
    NGX_HTTP_API_KEY_CONN_COMMANDS = 0,  /* reads, leases, the handshake */
    NGX_HTTP_API_KEY_CONN_EVENTS,        /* the events subscription */
    NGX_HTTP_API_KEY_NCONNS
} ngx_http_api_key_conn_e;


/* key sources */
#define NGX_HTTP_API_KEY_MAX_SOURCES  32    /* in one api_key_source */
#define NGX_HTTP_API_KEY_SRC_HEADER   1
#define NGX_HTTP_API_KEY_SRC_BEARER   2     /* "Authorization: SCHEME KEY":
                                                bearer, authorization:NAME;
                                                name is the scheme */
#define NGX_HTTP_API_KEY_SRC_QUERY    3
#define NGX_HTTP_API_KEY_SRC_COOKIE   4
#define NGX_HTTP_API_KEY_SRC_BASIC    5     /* "Authorization: Basic ...":
                                                name "" (the key is the user
                                                name) or "password" */

#define NGX_HTTP_API_KEY_FORMAT_ANY       0
#define NGX_HTTP_API_KEY_FORMAT_CHECKSUM  1

/* outcome of a Redis read, as seen by the requests waiting on it */
typedef enum {
    NGX_HTTP_API_KEY_LOOKUP_NONE = 0,    /* no answer to use: ask Redis */
    NGX_HTTP_API_KEY_LOOKUP_FOUND,
    NGX_HTTP_API_KEY_LOOKUP_NOTFOUND,
    NGX_HTTP_API_KEY_LOOKUP_BAD,
    NGX_HTTP_API_KEY_LOOKUP_ERROR,
    NGX_HTTP_API_KEY_LOOKUP_DENIED       /* Redis refuses the module's
                                            commands (NOPERM, NOAUTH,
                                            WRONGPASS): never fail open */
} ngx_http_api_key_lookup_e;


/* for debug lines */

static ngx_inline const char *
ngx_http_api_key_lookup_name(ngx_http_api_key_lookup_e result)
{
    static const char  *names[] = {
        "none", "found", "not found", "bad record", "error", "denied"
    };

    return names[result];
}


/* what a request waits on (wait.c) */
typedef enum {
    NGX_HTTP_API_KEY_WAIT_READ = 0,      /* a record read (lookup.c) */
    NGX_HTTP_API_KEY_WAIT_LEASE          /* a quota lease (limits.c) or a
                                            rate lease (rate.c) */
} ngx_http_api_key_wait_e;


typedef struct {
    ngx_queue_t                   waiters;   /* ngx_http_api_key_ctx_t */
    ngx_http_api_key_wait_e       kind;
    ngx_http_api_key_lookup_e     result;    /* a read's answer */
    ngx_log_t                    *log;
} ngx_http_api_key_wait_t;


/*
 * A Redis answer as the files without hiredis see it (limits.c): given to
 * an ngx_http_api_key_reply_pt, NULL when there is none (the connection
 * went down or was closed).
 */
typedef enum {
    NGX_HTTP_API_KEY_REPLY_ERROR = 1,    /* str: the error */
    NGX_HTTP_API_KEY_REPLY_STRING,       /* str */
    NGX_HTTP_API_KEY_REPLY_STATUS,       /* str */
    NGX_HTTP_API_KEY_REPLY_INTEGERS,     /* an integer, or an array of up to
                                            NGX_HTTP_API_KEY_REPLY_INTS of
                                            them: ints[0 .. nints) */
    NGX_HTTP_API_KEY_REPLY_OTHER         /* anything else */
} ngx_http_api_key_reply_e;

#define NGX_HTTP_API_KEY_REPLY_INTS  2

typedef struct {
    ngx_http_api_key_reply_e      type;
    ngx_str_t                     str;
    ngx_uint_t                    nints;
    int64_t                       ints[NGX_HTTP_API_KEY_REPLY_INTS];
} ngx_http_api_key_reply_t;

typedef void (*ngx_http_api_key_reply_pt)(ngx_http_api_key_reply_t *reply,
    void *data);


/*
 * How much of a Redis error answer a log line shows: at most 256 bytes, and
 * not the arguments Redis echoes after ", with args beginning with:" (an
 * unknown or renamed command): those are the command's key name, which
 * holds the whole hash of an API key; logs name a key by its id.
 */
static ngx_inline size_t
ngx_http_api_key_error_len(const u_char *err, size_t len)
{
    u_char  *p;

    len = ngx_min(len, 256);

    p = ngx_strlcasestrn((u_char *) err, (u_char *) err + len,
                         (u_char *) ", with args", sizeof(", with args") - 2);

    return (p == NULL) ? len : (size_t) (p - err);
}


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
    ngx_uint_t                    kept;      /* the header's pointer in
                                                r->headers_in (offset), for
                                                one nginx keeps; 0 none */
    ngx_uint_t                    rest_auth; /* every later source of the
                                                location's (none included)
                                                reads Authorization */
} ngx_http_api_key_source_t;


/* a query argument removed at the start of the request (strip.c) */
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


/*
 * Redis read latency histogram: upper bounds in microseconds, then +Inf.
 * A read from Redis on the same host or LAN takes 20-200 us: the buckets
 * below 250 us tell those apart (p50 and p99 of a healthy Redis).
 */
#define NGX_HTTP_API_KEY_LATENCY_BUCKETS  15


static ngx_inline ngx_uint_t
ngx_http_api_key_latency_bound(ngx_uint_t i)
{
    static const ngx_uint_t  bounds[NGX_HTTP_API_KEY_LATENCY_BUCKETS - 1] = {
        25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
        250000, 1000000
    };

    return bounds[i];
}


/*
 * Requests by status are counted in the stripe of the worker (ngx_worker
 * modulo the stripes), each stripe whole cache lines, first in the shared
 * context (a slab allocation of whole pages): workers on different cores
 * do not write the same line on every request.  The metrics page adds the
 * stripes up.
 */
#define NGX_HTTP_API_KEY_STRIPES     16
#define NGX_HTTP_API_KEY_STATUS_ROW  ((NGX_HTTP_API_KEY_NSTATUS + 7) & ~7)


/* lives in shared memory, at the start of the zone's slab pool */
typedef struct {
    ngx_atomic_t                  status[NGX_HTTP_API_KEY_STRIPES]
                                        [NGX_HTTP_API_KEY_STATUS_ROW];
    ak_cache_t                   *cache;
    size_t                        cache_size;
    ngx_atomic_t                  events[NGX_HTTP_API_KEY_NEVENTS];
    ngx_atomic_t                  resubscribes;
    ngx_atomic_t                  connects[NGX_HTTP_API_KEY_NCONNS];
    ngx_atomic_t                  disconnects[NGX_HTTP_API_KEY_NCONNS];
    ngx_atomic_t                  redis_errors;
    ngx_atomic_t                  redis_timeouts;
    ngx_atomic_t                  latency[NGX_HTTP_API_KEY_LATENCY_BUCKETS];
    ngx_atomic_t                  latency_sum_us;
    ngx_atomic_t                  latency_count;
    ak_evlog_t                    evlog;     /* events applied on this node */
    ngx_atomic_t                  reconnects[NGX_HTTP_API_KEY_NCONNS];
    ngx_atomic_t                  tls_failures[NGX_HTTP_API_KEY_NCONNS];
    ngx_atomic_t                  tls_reused[NGX_HTTP_API_KEY_NCONNS];
    ngx_atomic_t                  failover_errors;  /* READONLY, LOADING,
                                                       MASTERDOWN... */
    ngx_atomic_t                  master_switches;  /* sentinel: the master
                                                       moved */
    ngx_atomic_t                  master_queries;   /* sentinel: asked */
    ak_usage_t                   *usage;     /* NULL: usage_flush=off */
    ngx_msec_t                    usage_next;    /* the node's next flush
                                                    (under the lock) */
    ngx_atomic_t                  usage_flushes;
    ngx_atomic_t                  usage_writes;  /* EVALSHAs sent */
    ngx_atomic_t                  usage_errors;
    ak_labels_t                  *labels;    /* api_key_metrics labels=,
                                                NULL: none */
} ngx_http_api_key_shctx_t;


typedef struct {
    ngx_str_t                     name;
    ak_cache_conf_t               conf;
    ngx_uint_t                    quota_lease;    /* counts per lease */
    ngx_uint_t                    quota_offline;  /* per worker, key, window */
    ngx_uint_t                    rate_scope;     /* AK_RATE_SCOPE_NODE or
                                                     _CLUSTER: of a record
                                                     without rate_scope */
    ngx_msec_t                    usage_flush;    /* 0: off */
    void                         *amcf;      /* the main conf: labels= */
    ngx_shm_zone_t               *shm_zone;
    ngx_slab_pool_t              *shpool;
    ngx_http_api_key_shctx_t     *sh;
    uint64_t                      event_pos; /* this worker's, in sh->evlog */
    ngx_uint_t                    event_lagging;
    ak_usage_item_t              *usage_front;   /* a few of them first,
                                                    by the hash's first
                                                    byte (usage.c); NULL:
                                                    none */
    ak_usage_t                   *usage_local;   /* this worker's counts, */
    ak_labels_t                  *labels_local;  /* folded into sh->usage
                                                    and sh->labels by a
                                                    timer (usage.c); NULL:
                                                    counted there at once */
    ngx_uint_t                    local_counts;  /* counted since the last
                                                    fold */
} ngx_http_api_key_zone_t;


typedef struct {
    ngx_str_t                     url_redacted;  /* for logs: no password */
    ngx_addr_t                    addr;      /* where, at start (sockaddr
                                                NULL: a name that did not
                                                resolve); its name is the
                                                address as text (IP:port,
                                                unix:/path) */
    ngx_str_t                     path;      /* unix socket, NUL-terminated */
    ngx_str_t                     host;      /* as written in the url, no
                                                brackets, NUL-terminated */
    in_port_t                     port;
    ngx_flag_t                    resolve;   /* host is a name */
    ngx_http_core_loc_conf_t     *core;      /* the http block's: resolver */
    ngx_int_t                     db;
    ngx_flag_t                    cluster;   /* redis(s)-cluster:// */
    ngx_array_t                  *seeds;     /* a cluster's: ngx_addr_t */
    ngx_flag_t                    tls;       /* rediss:// */
    ngx_flag_t                    tls_verify;
    ngx_str_t                     tls_ca;    /* full paths; empty: none */
    ngx_str_t                     tls_cert;
    ngx_str_t                     tls_key;
    ngx_str_t                     tls_name;  /* checked in the certificate,
                                                NUL-terminated */
    ngx_str_t                     tls_sni;   /* sent (a name, not an IP) */
#if (NGX_SSL)
    ngx_ssl_t                    *ssl;       /* at configuration time */
#endif
    ngx_str_t                     user;
    ngx_str_t                     password;
    ngx_msec_t                    timeout;
    ngx_msec_t                    connect_timeout;
    ngx_str_t                     prefix;
    ngx_str_t                     channel;
    ngx_flag_t                    keyspace_events;
    ngx_uint_t                    max_pending;   /* commands in flight */
    ngx_uint_t                    max_timeouts;  /* in a row: reopen */

    /* redis-sentinel://, rediss-sentinel:// (sentinel.c) */
    ngx_flag_t                    sentinel;
    ngx_array_t                  *sentinels;     /* ngx_addr_t: whom to ask */
    ngx_str_t                     master_name;   /* NUL-terminated */
    ngx_str_t                     sentinel_password;
    ngx_flag_t                    tls_name_set;  /* tls_name= given: else
                                                    the address the
                                                    sentinels give */
} ngx_http_api_key_redis_conf_t;


typedef struct {
    ngx_array_t                   zones;     /* ngx_http_api_key_zone_t * */
    ngx_http_api_key_redis_conf_t *redis;
    ngx_int_t                     hash_kind;  /* AK_HASH_*, -1 unset */
    ngx_str_t                     secret;
    ngx_uint_t                    enabled;   /* some location checks keys */
    ngx_uint_t                    early_strip;   /* a server strips query
                                                    sources: the POST_READ
                                                    handler is needed */
    ngx_uint_t                    error_body_json;   /* some block has
                                                        api_key_error_body
                                                        json: the body
                                                        filters are needed */
    ngx_uint_t                    query_vars;    /* the two below are set */
    ngx_int_t                     var_request;   /* indexes: $request, */
    ngx_int_t                     var_request_uri;   /* $request_uri */
    ngx_array_t                   vars;      /* the indexes of the
                                                variables above and of the
                                                sources', found once the
                                                configuration is read
                                                (module.c) */
    ngx_uint_t                    metrics_label;  /* api_key_metrics
                                                     labels=: NGX_HTTP_API_
                                                     KEY_LABEL_* */
    ngx_uint_t                    metrics_label_max;  /* values= */
} ngx_http_api_key_main_conf_t;

/* api_key_metrics labels= (0: none) */
#define NGX_HTTP_API_KEY_LABEL_PLAN   1
#define NGX_HTTP_API_KEY_LABEL_OWNER  2


/*
 * Debug lines name a key by its id or by this: the first 8 hex digits of
 * its hash ("hash %08xD"), never by the key.
 */
#define ngx_http_api_key_hash_prefix(hash)                                    \
    ((uint32_t) (hash)[0] << 24 | (uint32_t) (hash)[1] << 16                  \
     | (uint32_t) (hash)[2] << 8 | (uint32_t) (hash)[3])


/*
 * A timer of the module's own (no connection's): its handler, its data and
 * the log of its messages; cancelable, so that a worker shutting down does
 * not wait for it.
 */

static ngx_inline void
ngx_http_api_key_timer_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    void *data, ngx_log_t *log)
{
    ev->handler = handler;
    ev->data = data;
    ev->log = log;
    ev->cancelable = 1;
}


/*
 * Counters in shared memory, bumped without the zone lock (the metrics page
 * reads them); used by several files, so small and inline here.
 */

static ngx_inline void
ngx_http_api_key_count(ngx_atomic_t *counter)
{
    (void) ngx_atomic_fetch_add(counter, 1);
}


/* a Redis read answered after us microseconds: the zone's histogram */

static ngx_inline void
ngx_http_api_key_observe_latency(ngx_http_api_key_zone_t *zone, ngx_uint_t us)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_API_KEY_LATENCY_BUCKETS - 1; i++) {
        if (us <= ngx_http_api_key_latency_bound(i)) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&zone->sh->latency[i], 1);
    (void) ngx_atomic_fetch_add(&zone->sh->latency_sum_us, us);
    (void) ngx_atomic_fetch_add(&zone->sh->latency_count, 1);
}


/* module-wide counters (events, connections) live in the first zone */

static ngx_inline ngx_http_api_key_shctx_t *
ngx_http_api_key_first_sh(ngx_http_api_key_main_conf_t *amcf)
{
    ngx_http_api_key_zone_t  **zp;

    if (amcf == NULL || amcf->zones.nelts == 0) {
        return NULL;
    }

    zp = amcf->zones.elts;

    return zp[0]->sh;
}


/* api_key_error_body */
#define NGX_HTTP_API_KEY_ERROR_BODY_HTML     0
#define NGX_HTTP_API_KEY_ERROR_BODY_JSON     1


typedef struct {
    ngx_http_api_key_zone_t      *zone;      /* NULL: off */
    ngx_array_t                  *sources;   /* ngx_http_api_key_source_t */
    ngx_int_t                     format;
    ngx_str_t                     format_prefix;
    ngx_array_t                  *scopes;    /* ak_str_t */
    ngx_str_t                     scopes_text;
    ngx_flag_t                    fail_open;
    ngx_flag_t                    strip;
    ngx_uint_t                    query_sources; /* of sources: the query
                                                    ones (counted at merge
                                                    time) */
    ngx_int_t                     pass;      /* what an allowed request
                                                answers the access phase:
                                                NGX_DECLINED under "satisfy
                                                all" (nginx does the same
                                                as for NGX_OK, by a shorter
                                                way), NGX_OK under "satisfy
                                                any" (at merge time) */
    ngx_str_t                     realm;
    ngx_str_t                     www_missing;   /* WWW-Authenticate values */
    ngx_str_t                     www_invalid;
    ngx_str_t                     www_scope;
    ngx_uint_t                    www_bearer;    /* the Bearer challenge
                                                    above is sent */
    ngx_array_t                  *www_more;      /* ngx_str_t: the other
                                                    schemes' challenges
                                                    (authorization:SCHEME,
                                                    basic), or NULL */
    ngx_uint_t                    error_body;    /* ..._ERROR_BODY_* */
    ngx_uint_t                    verify;        /* api_key_verify here:
                                                    ..._VERIFY_* (0: no) */
} ngx_http_api_key_loc_conf_t;

/* api_key_verify: the key checked, the answer is JSON (verify.c) */
#define NGX_HTTP_API_KEY_VERIFY_PEEK     1  /* consume=off: no limits */
#define NGX_HTTP_API_KEY_VERIFY_CONSUME  2  /* consume=on */
#define NGX_HTTP_API_KEY_VERIFY_BODY_MAX 4096   /* bytes of body read */


/* a key found in the request (keys.c): where it is, not a copy of it */
typedef struct {
    ngx_str_t                     value;     /* as sent (maybe escaped) */
    ngx_http_api_key_source_t    *source;
    ngx_list_part_t              *part;  /* a header source: where it is */
    ngx_uint_t                    i;
    ngx_uint_t                    last;  /* ... and no header of its name
                                            follows (find() looked) */
    uint32_t                      same;      /* the other sources (by index)
                                                that hold the same key:
                                                stripped too */
    ngx_http_api_key_source_t    *other;     /* another source that holds
                                                a different key: malformed,
                                                stripped too */
    u_char                       *decoded;   /* basic: the decoded
                                                credential (request pool),
                                                zeroed once hashed */
    size_t                        decoded_len;
    ngx_list_part_t             **spare;     /* set by the caller of strip()
                                                (not find()): the context's
                                                spare part (strip.c) */
} ngx_http_api_key_found_t;


/*
 * A request's own counts (ctx->attempts, ->lease_waits, ->relooks), in
 * bitfields that must never wrap: a count that wraps to 0 lets the request
 * send more Redis reads than its bound.  A request looks its key up in one
 * pass, and once more after each wait for a lease (limits.c, at most
 * LEASE_WAITS_MAX) and each time its entry went away before its limits were
 * counted (at most RELOOK_MAX); a pass sends at most one HGETALL, and one
 * more read is allowed once when the entry was evicted between the answer
 * and the request's turn (the handler's "attempts < 2").  So ctx->attempts
 * never exceeds READS_MAX, checked below against the bitfield's width.
 */
#define NGX_HTTP_API_KEY_LEASE_WAITS_MAX     2
#define NGX_HTTP_API_KEY_RELOOK_MAX          2
#define NGX_HTTP_API_KEY_READS_MAX                                           \
    (1 + NGX_HTTP_API_KEY_LEASE_WAITS_MAX + NGX_HTTP_API_KEY_RELOOK_MAX + 1)
#define NGX_HTTP_API_KEY_COUNT_BITS          4

typedef char  ngx_http_api_key_counts_fit[
    (NGX_HTTP_API_KEY_READS_MAX < (1 << NGX_HTTP_API_KEY_COUNT_BITS)
     && NGX_HTTP_API_KEY_LEASE_WAITS_MAX < (1 << NGX_HTTP_API_KEY_COUNT_BITS)
     && NGX_HTTP_API_KEY_RELOOK_MAX < (1 << NGX_HTTP_API_KEY_COUNT_BITS))
    ? 1 : -1];


/* the record's text kept by a request (ctx->text_str[]) */
#define NGX_HTTP_API_KEY_TEXT_ID        0
#define NGX_HTTP_API_KEY_TEXT_OWNER     1
#define NGX_HTTP_API_KEY_TEXT_PLAN      2
#define NGX_HTTP_API_KEY_TEXT_SCOPES    3
#define NGX_HTTP_API_KEY_TEXT_IDENTITY  4   /* AK_HASH_LEN bytes: the hash
                                               its usage counts under (a
                                               rotated key's first) */
#define NGX_HTTP_API_KEY_NTEXT          5
#define NGX_HTTP_API_KEY_TEXT_INLINE    128 /* bytes in the context: more
                                               go to the request's pool */

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
    unsigned                      unchecked:1;   /* hashed, its characters
                                                    not checked yet (keys.c:
                                                    the handler hands them
                                                    to the lookup, which
                                                    checks them if its hash
                                                    is unknown) */
    unsigned                      problem:1;     /* the denial is answered
                                                    with problem+json */
    unsigned                      problem_body:1;    /* ... being sent */
    /* see NGX_HTTP_API_KEY_READS_MAX for their bound */
    unsigned                      attempts:NGX_HTTP_API_KEY_COUNT_BITS;
                                                 /* reads from Redis */
    unsigned                      lease_waits:NGX_HTTP_API_KEY_COUNT_BITS;
                                                 /* waits for a lease */
    unsigned                      relooks:NGX_HTTP_API_KEY_COUNT_BITS;
                                                 /* looks again: the entry
                                                    went before its limits
                                                    were counted */
    unsigned                      verify_body:1;  /* api_key_verify: the
                                                     body was looked at */
    unsigned                      body_waiting:1; /* ... is being read */
    unsigned                      verify_bad:1;   /* ... is not JSON, or
                                                     its "key" not a
                                                     string: 400 */
    unsigned                      text_made:1;    /* id... below are set */
    unsigned                      text_lazy:1;    /* text is a whole
                                                     record's blob,
                                                     text_str not yet
                                                     made from it
                                                     (handler.c) */
    unsigned                      default_id:1;   /* the record has no id:
                                                     its hash's first hex
                                                     digits */

    ngx_http_api_key_lookup_e     lookup_result; /* the answer of the read
                                                    it waited on, unused */
    /* waiting on Redis: a record read or a quota lease (wait.c) */
    ngx_http_api_key_wait_t      *waiting;       /* NULL: not waiting */

    /*
     * The record's text (id, owner, plan, scopes, identity) for variables,
     * logs, api_key_verify, usage and labels: the part of the record's blob
     * that holds it, lent in the worker's copy of the record or copied
     * (text_buf; the pool when larger), offsets into it; the strings below
     * (and the default id, from the hash) are made on first use:
     * ngx_http_api_key_ctx_text().  Never the key.
     */
    u_char                       *text;              /* NULL: no record */
    int64_t                       expires_at;        /* 0: never */

    /*
     * Not zeroed at the start (NGX_HTTP_API_KEY_CTX_ZEROED): set there
     * (the two below), or written before they are read: the hash once
     * hashed is set, the link once waiting is, the text's offsets and
     * lengths before text, the strings by ngx_http_api_key_ctx_text()
     * (empty without a text), the 429 headers' numbers with the status
     */
    ngx_int_t                     rate_remaining;    /* -1: none */
    ngx_int_t                     quota_remaining;   /* -1: none */

    u_char                        hash[AK_HASH_LEN];

    ngx_queue_t                   wait_link;     /* in waiting->waiters */

    /*
     * The part a split of the request's header list takes when the key's
     * header is removed from the middle of one (strip.c; the usual case:
     * no allocation): part, once; spare NULL once taken.  The context
     * lives in the request's pool, as the list does.
     */
    ngx_list_part_t              *spare;
    ngx_list_part_t               part;

    size_t                        text_n;            /* its bytes */
    ngx_str_t                     text_str[NGX_HTTP_API_KEY_NTEXT];
                                                     /* each in text; len
                                                        0: none (data may
                                                        be anything) */
    ngx_str_t                     id;                /* made on first use */
    ngx_str_t                     owner;
    ngx_str_t                     plan;
    ngx_str_t                     scopes;

    /* for the 429 headers */
    ngx_uint_t                    rate_n;
    ngx_uint_t                    rate_window;       /* seconds */
    ngx_uint_t                    rate_burst;
    ngx_uint_t                    retry_after;       /* seconds */
    ngx_uint_t                    reset;             /* seconds */

    u_char                        id_buf[AK_ID_DEFAULT_LEN];  /* default */
    u_char                        text_buf[NGX_HTTP_API_KEY_TEXT_INLINE];
} ngx_http_api_key_ctx_t;

/* the part of a new context that starts zeroed: what is written before read
 * is left out */
#define NGX_HTTP_API_KEY_CTX_ZEROED                                           \
    offsetof(ngx_http_api_key_ctx_t, rate_remaining)


extern ngx_module_t  ngx_http_api_key_module;


void ngx_http_api_key_text_view(ngx_http_api_key_ctx_t *ctx);
void ngx_http_api_key_text_keep_large(ngx_http_api_key_ctx_t *ctx);


/* one of the record's texts a request keeps (empty: none, or no record) */

static ngx_inline void
ngx_http_api_key_ctx_field(ngx_http_api_key_ctx_t *ctx, ngx_uint_t i,
    ngx_str_t *s)
{
    if (ctx->text_lazy) {
        ngx_http_api_key_text_view(ctx);
    }

    s->len = ctx->text ? ctx->text_str[i].len : 0;
    s->data = s->len ? ctx->text_str[i].data : NULL;
}


/* the text (and the strings in it) moved to "to", text_n bytes */

static ngx_inline void
ngx_http_api_key_text_move(ngx_http_api_key_ctx_t *ctx, u_char *to)
{
    ngx_uint_t  i;

    ngx_memcpy(to, ctx->text, ctx->text_n);

    for (i = 0; !ctx->text_lazy && i < NGX_HTTP_API_KEY_NTEXT; i++) {
        if (ctx->text_str[i].len) {
            ctx->text_str[i].data = to + (ctx->text_str[i].data - ctx->text);
        }
    }

    ctx->text = to;
}


/*
 * The text of the context whose record the worker evaluated last (the
 * whole record when it has no identity, else the part that holds the
 * text, when that fits in text_buf) is left where it is, in the worker's
 * copy of the record (handler.c): ctx->text points there, "lent", until
 * the next lookup is about to overwrite that copy or something takes
 * strings out of the text (ngx_http_api_key_ctx_text()); only then is it
 * copied into the context, by ngx_http_api_key_text_keep() (a whole record
 * larger than text_buf: the part that holds its text, into text_buf when
 * it fits, else into the request's pool).  The context's pool cleanup
 * (wait.c) and a reset forget it.  Most requests end before either: no
 * copy.
 */
extern ngx_http_api_key_ctx_t  *ngx_http_api_key_text_lent;

static ngx_inline void
ngx_http_api_key_text_keep(void)
{
    ngx_http_api_key_ctx_t  *ctx;

    ctx = ngx_http_api_key_text_lent;

    if (ctx == NULL) {
        return;
    }

    ngx_http_api_key_text_lent = NULL;

    if (ctx->text_n > sizeof(ctx->text_buf)) {
        /* a whole record larger than text_buf, lent lazily (handler.c) */
        ngx_http_api_key_text_keep_large(ctx);
        return;
    }

    ngx_http_api_key_text_move(ctx, ctx->text_buf);
}


/*
 * ctx->id, ->owner, ->plan, ->scopes: made on first use (once), in the
 * context's memory (they outlive the worker's copy of the record)
 */

static ngx_inline void
ngx_http_api_key_ctx_text(ngx_http_api_key_ctx_t *ctx)
{
    if (ctx->text_made) {
        return;
    }

    if (ctx->text_lazy) {
        /* (a view that fails leaves no text) */
        ngx_http_api_key_text_view(ctx);
    }

    if (ctx->text == NULL) {
        /* no record (yet): empty (not made: a record may come) */
        ngx_str_null(&ctx->id);
        ngx_str_null(&ctx->owner);
        ngx_str_null(&ctx->plan);
        ngx_str_null(&ctx->scopes);
        return;
    }

    if (ngx_http_api_key_text_lent == ctx) {
        ngx_http_api_key_text_keep();
    }

    ctx->text_made = 1;

    if (ctx->default_id) {
        /* as ak_record_view() makes it: the hash's first hex digits */
        ngx_hex_dump(ctx->id_buf, ctx->hash, AK_ID_DEFAULT_LEN / 2);
        ctx->id.data = ctx->id_buf;
        ctx->id.len = AK_ID_DEFAULT_LEN;

    } else {
        ngx_http_api_key_ctx_field(ctx, NGX_HTTP_API_KEY_TEXT_ID, &ctx->id);
    }

    ngx_http_api_key_ctx_field(ctx, NGX_HTTP_API_KEY_TEXT_OWNER, &ctx->owner);
    ngx_http_api_key_ctx_field(ctx, NGX_HTTP_API_KEY_TEXT_PLAN, &ctx->plan);
    ngx_http_api_key_ctx_field(ctx, NGX_HTTP_API_KEY_TEXT_SCOPES,
                               &ctx->scopes);
}


/* handler.c */
ngx_int_t ngx_http_api_key_post_read_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_api_key_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_api_key_subrequest_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_api_key_subrequest_checker(ngx_http_request_t *r,
    ngx_http_phase_handler_t *ph);
ngx_int_t ngx_http_api_key_filter_init(ngx_conf_t *cf);

/* zone.c */
char *ngx_http_api_key_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* keys.c */
ngx_int_t ngx_http_api_key_keys_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf);
void ngx_http_api_key_keys_exit_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_api_key_find(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t *early,
    ngx_http_api_key_found_t *found);
ngx_int_t ngx_http_api_key_check_and_hash(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_found_t *found);
ngx_int_t ngx_http_api_key_find_and_hash(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_early_t *early, ngx_http_api_key_found_t *found);
ngx_uint_t ngx_http_api_key_same_source(ngx_http_api_key_source_t *a,
    ngx_http_api_key_source_t *b);

/* strip.c */
ngx_int_t ngx_http_api_key_strip_early(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t **early);
void ngx_http_api_key_restore_early(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_early_t *early);
ngx_int_t ngx_http_api_key_strip(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_found_t *found,
    ngx_http_api_key_early_t *early);
ngx_table_elt_t *ngx_http_api_key_next_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_list_part_t **part, ngx_uint_t *i);


/* whether header h is named name (given in lowercase) */

static ngx_inline ngx_uint_t
ngx_http_api_key_header_named(ngx_table_elt_t *h, ngx_str_t *name)
{
    return h->key.len == name->len
           && (h->lowcase_key
               ? ngx_memcmp(h->lowcase_key, name->data, name->len) == 0
               : ngx_strncasecmp(h->key.data, name->data, name->len) == 0);
}

ngx_http_api_key_arg_t *ngx_http_api_key_early_arg(
    ngx_http_api_key_early_t *early, ngx_str_t *name);


/* redis.c (the part without hiredis types; see ngx_http_api_key_redis.h) */
typedef void (*ngx_http_api_key_ready_pt)(void);

ngx_int_t ngx_http_api_key_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf);
void ngx_http_api_key_redis_start(ngx_cycle_t *cycle);
void ngx_http_api_key_redis_exit_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_api_key_redis_command(ngx_http_api_key_reply_pt handler,
    void *data, ngx_int_t key, int argc, const char **argv,
    const size_t *argvlen);
ngx_uint_t ngx_http_api_key_redis_ready(void);
ngx_http_api_key_redis_conf_t *ngx_http_api_key_redis_conf(void);
ngx_uint_t ngx_http_api_key_redis_state(ngx_http_api_key_conn_e conn);
/* at init time: called once a connection is up (two per connection) */
void ngx_http_api_key_redis_on_ready(ngx_http_api_key_conn_e conn,
    ngx_http_api_key_ready_pt ready);

/* lookup.c */
void ngx_http_api_key_lookup_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_redis_conf_t *conf);
ngx_int_t ngx_http_api_key_lookup_read(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, uint64_t seq);

/* events.c */
ngx_int_t ngx_http_api_key_events_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf);

/* wait.c */
void ngx_http_api_key_ctx_cleanup(void *data);
ngx_http_api_key_ctx_t *ngx_http_api_key_find_ctx(ngx_http_request_t *r);
void ngx_http_api_key_wait_init(ngx_http_api_key_wait_t *w,
    ngx_http_api_key_wait_e kind, ngx_log_t *log);
void ngx_http_api_key_wait_join(ngx_http_api_key_wait_t *w,
    ngx_http_api_key_ctx_t *ctx);
void ngx_http_api_key_wait_cancel(ngx_http_api_key_ctx_t *ctx);
void ngx_http_api_key_wait_wake(ngx_http_api_key_wait_t *w);
ngx_rbtree_node_t *ngx_http_api_key_tree_find(ngx_rbtree_t *tree,
    ngx_http_api_key_zone_t *zone, u_char *hash, size_t hash_offset,
    size_t zone_offset);


/*
 * The context and its pool cleanup in one allocation (what
 * ngx_pool_cleanup_add() does with two): the cleanup is linked as it links
 * one.  Inline: its two callers are on the handlers' paths.
 */

typedef struct {
    ngx_pool_cleanup_t       cln;
    ngx_http_api_key_ctx_t   ctx;
} ngx_http_api_key_ctx_block_t;


static ngx_inline ngx_http_api_key_ctx_t *
ngx_http_api_key_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_api_key_ctx_t        *ctx;
    ngx_http_api_key_ctx_block_t  *b;

    b = ngx_palloc(r->pool, sizeof(ngx_http_api_key_ctx_block_t));
    if (b == NULL) {
        return NULL;
    }

    cln = &b->cln;
    ctx = &b->ctx;

    ngx_memzero(ctx, NGX_HTTP_API_KEY_CTX_ZEROED);

    ctx->request = r;
    ctx->rate_remaining = -1;
    ctx->quota_remaining = -1;
    ctx->spare = &ctx->part;

    /* linked whole, as ngx_pool_cleanup_add() would have it */

    cln->handler = ngx_http_api_key_ctx_cleanup;
    cln->data = ctx;
    cln->next = r->pool->cleanup;
    r->pool->cleanup = cln;

    ngx_http_set_ctx(r, ctx, ngx_http_api_key_module);

    return ctx;
}


/*
 * The request's context: in r->ctx, else, after an internal redirect or a
 * filter's finalization (which clear r->ctx; they set r->internal or
 * r->filter_finalize, as the realip module tells), maybe still in the
 * request's pool: ngx_http_api_key_find_ctx() (wait.c).
 */

static ngx_inline ngx_http_api_key_ctx_t *
ngx_http_api_key_get_ctx(ngx_http_request_t *r)
{
    ngx_http_api_key_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_api_key_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {
        return ngx_http_api_key_find_ctx(r);
    }

    return ctx;
}

/* limits.c */
void ngx_http_api_key_limits_init_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_api_key_limits(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, const ak_cache_found_t *f,
    ngx_http_api_key_status_e *status);
ngx_int_t ngx_http_api_key_limits_all(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, uint32_t slot, ngx_http_api_key_status_e *status);
void ngx_http_api_key_rate_denied(ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, ak_rate_result_t *rate);
void ngx_http_api_key_limits_peek(ngx_http_api_key_loc_conf_t *alcf,
    ngx_http_api_key_ctx_t *ctx, const ak_record_t *rec, uint32_t slot);

/* marker.c */
ngx_int_t ngx_http_api_key_marker_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf);

/* usage.c */
#define NGX_HTTP_API_KEY_FRONT_SLOTS  32    /* the items in front of a
                                               worker's usage table (a
                                               power of 2) */

void ngx_http_api_key_usage_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf);
void ngx_http_api_key_usage_exit_worker(ngx_cycle_t *cycle);
void ngx_http_api_key_usage_count(ngx_http_api_key_zone_t *zone,
    const u_char *hash, ngx_http_api_key_status_e status);
void ngx_http_api_key_usage_label(ngx_http_api_key_zone_t *zone,
    const u_char *value, size_t len, ngx_http_api_key_status_e status);
void ngx_http_api_key_usage_fold(ngx_http_api_key_zone_t *zone);


/*
 * The key's id for a lease's logs, into id (AK_ID_MAX_LEN bytes): the
 * record's, or its default one (the request path's view leaves it out; the
 * view may be one the worker keeps for other requests too: not written
 * to); its length.
 */

static ngx_inline size_t
ngx_http_api_key_lease_id(const ak_record_t *rec, const u_char *hash,
    u_char *id)
{
    size_t  n;

    if (rec->id.len == 0) {
        (void) ngx_hex_dump(id, (u_char *) hash, AK_ID_DEFAULT_LEN / 2);
        return AK_ID_DEFAULT_LEN;
    }

    n = ngx_min(rec->id.len, AK_ID_MAX_LEN);
    ngx_memcpy(id, rec->id.data, n);

    return n;
}


/* two key hashes (AK_HASH_LEN bytes) alike: four words, no call (where
 * the compiler can read a word at any address) */

#if (defined __GNUC__ || defined __clang__)

typedef uint64_t __attribute__((may_alias, aligned(1)))
    ngx_http_api_key_word_t;

static ngx_inline ngx_uint_t
ngx_http_api_key_same_hash(const u_char *a, const u_char *b)
{
    const ngx_http_api_key_word_t  *x, *y;

    x = (const ngx_http_api_key_word_t *) a;
    y = (const ngx_http_api_key_word_t *) b;

    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]))
           == 0;
}

#else

static ngx_inline ngx_uint_t
ngx_http_api_key_same_hash(const u_char *a, const u_char *b)
{
    return ngx_memcmp(a, b, AK_HASH_LEN) == 0;
}

#endif

typedef char  ngx_http_api_key_same_hash_fits[
    (AK_HASH_LEN == 4 * sizeof(uint64_t)) ? 1 : -1];


/*
 * n bytes alike: from 8 on, word by word, the last word overlapping the
 * one before (a Referer's scheme and host: a few words), without a call;
 * below 8, by ngx_memcmp()
 */

static ngx_inline ngx_uint_t
ngx_http_api_key_same_bytes(const u_char *a, const u_char *b, size_t n)
{
#if (defined __GNUC__ || defined __clang__)
    size_t    i;
    uint64_t  d;

    if (n >= sizeof(uint64_t)) {
        d = *(const ngx_http_api_key_word_t *) (a + n - sizeof(uint64_t))
            ^ *(const ngx_http_api_key_word_t *) (b + n - sizeof(uint64_t));

        for (i = 0; i + sizeof(uint64_t) < n; i += sizeof(uint64_t)) {
            d |= *(const ngx_http_api_key_word_t *) (a + i)
                 ^ *(const ngx_http_api_key_word_t *) (b + i);
        }

        return d == 0;
    }
#endif

    return ngx_memcmp(a, b, n) == 0;
}


/*
 * An allowed request of a key counted today already in its item in front
 * of the worker's usage table (usage.c), inline: 1; else 0, and
 * ngx_http_api_key_usage_count() counts it.
 */

static ngx_inline ngx_uint_t
ngx_http_api_key_usage_allowed(ngx_http_api_key_zone_t *zone,
    const u_char *hash)
{
    int64_t           now;
    ak_usage_item_t  *it;

    if (zone->usage_front == NULL) {
        return 0;
    }

    now = (int64_t) ngx_time();

    it = &zone->usage_front[hash[0] & (NGX_HTTP_API_KEY_FRONT_SLOTS - 1)];

    /*
     * the item's day (0: empty, else the start of a UTC day, as
     * usage_count() sets it) is today's: now is less than a day after it
     * (no division)
     */

    if (it->day <= 0 || (uint64_t) (now - it->day) >= 86400
        || !ngx_http_api_key_same_hash(it->hash, hash))
    {
        return 0;
    }

    if (it->counts[AK_USAGE_ALLOWED] != UINT32_MAX) {
        it->counts[AK_USAGE_ALLOWED]++;
    }

    if (now > it->last_used) {
        it->last_used = now;
    }

    zone->local_counts++;

    return 1;
}

/* verify.c */
ngx_int_t ngx_http_api_key_verify_handler(ngx_http_request_t *r);

/* rate.c */
void ngx_http_api_key_rate_init_worker(ngx_cycle_t *cycle);
ngx_uint_t ngx_http_api_key_rate_usable(void);
ngx_int_t ngx_http_api_key_rate_lease(ngx_http_api_key_ctx_t *ctx,
    ngx_http_api_key_zone_t *zone, u_char *hash, const ak_record_t *rec);

/* variables.c */
ngx_int_t ngx_http_api_key_add_variables(ngx_conf_t *cf);

/* metrics.c */
char *ngx_http_api_key_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* redis_url.c (configuration time) */
ngx_int_t ngx_http_api_key_redis_parse(ngx_conf_t *cf,
    ngx_http_api_key_redis_conf_t *rcf);
ngx_int_t ngx_http_api_key_read_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *out, const char *what);
ngx_int_t ngx_http_api_key_msec_arg(ngx_conf_t *cf, ngx_str_t *arg,
    size_t skip, ngx_msec_t *out);


#pragma GCC visibility pop


/*
 * The rate's usual case, inline where the evaluation asks for it (and in
 * ngx_http_api_key_limits()): a node-scope rate and no quota (the scope is
 * ak_rate_scope's, without a call: the record's, else the zone's)
 */

static ngx_inline ngx_uint_t
ngx_http_api_key_rate_alone(const ak_record_t *rec,
    ngx_http_api_key_zone_t *zone)
{
    return rec->rate_period != AK_PERIOD_NONE
           && rec->quota_period == AK_PERIOD_NONE
           && rec->rate_scope != AK_RATE_SCOPE_CLUSTER
           && (rec->rate_scope != AK_RATE_SCOPE_DEFAULT
               || (uint8_t) zone->rate_scope != AK_RATE_SCOPE_CLUSTER);
}


/* the monotonic clock in microseconds (the GCRA's) */

static ngx_inline uint64_t
ngx_http_api_key_monotonic_us(void)
{
    /* the worker's own, not the stack's: no stack canary on the rate's
     * path (a worker runs one request at a time) */
    static struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return (uint64_t) ngx_current_msec * 1000;
    }

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


/*
 * A node-scope rate and no quota: the GCRA's TAT is swapped in the entry
 * the lookup found without the zone lock (ak_cache_gcra_found(): the
 * entry's identity is checked only when something was written to the
 * cache since the lookup began); -1 (the entry left the slot since the
 * lookup, or has no TAT yet) goes to ngx_http_api_key_limits_all(), which
 * decides the same way.  NGX_OK or NGX_DECLINED (*status), as
 * ngx_http_api_key_limits().
 */

static ngx_inline ngx_int_t
ngx_http_api_key_limits_rate(ngx_http_request_t *r,
    ngx_http_api_key_loc_conf_t *alcf, ngx_http_api_key_ctx_t *ctx,
    const ak_record_t *rec, const ak_cache_found_t *f,
    ngx_http_api_key_status_e *status)
{
    uint64_t                 now_us;

    /* the worker's own, as in ngx_http_api_key_monotonic_us() */
    static ak_rate_result_t  rate;

    /*
     * The clock first: the record's fields are read after the call, not
     * kept across it on the stack.
     */
    now_us = ngx_http_api_key_monotonic_us();

    switch (ak_cache_gcra_found(alcf->zone->sh->cache, ctx->hash, f, now_us,
                                rec, &rate))
    {
    case 1:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "api_key: rate admits, %uD left", rate.remaining);

        ctx->rate_remaining = rate.remaining;
        *status = NGX_HTTP_API_KEY_OK;
        return NGX_OK;

    case 0:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "api_key: rate denies");

        ngx_http_api_key_rate_denied(ctx, rec, &rate);
        *status = NGX_HTTP_API_KEY_RATE_LIMITED;
        return NGX_DECLINED;

    default:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "api_key: rate entry not found lock-free");

        return ngx_http_api_key_limits_all(r, alcf, ctx, rec, f->slot,
                                           status);
    }
}


#endif /* _NGX_HTTP_API_KEY_H_INCLUDED_ */
