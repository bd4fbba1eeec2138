/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: per-key usage, last use and requests per UTC day
 * by outcome class (api_key_zone usage_flush=).
 *
 * A request's outcome is counted in the worker's own table (the core's
 * usage.cpp, in process memory, made at the worker's start: no lock, no
 * allocation, no Redis on the request's path), and so are the requests by
 * label of api_key_metrics labels= (labels.cpp).  A worker folds its tables
 * into the zone's (shared memory, under the zone lock, once for all it
 * counted) every NGX_HTTP_API_KEY_FOLD_MAX ms or a quarter of the shortest
 * usage_flush, at once when its table is full, before it flushes a zone,
 * before it serves the metrics page, and when it exits (a reload's old
 * workers included: nothing is lost to a reload or a stop; a worker that
 * crashes loses what it had not folded).  Every worker runs a timer; the first one whose timer
 * fires after the zone's next flush time swaps the table's halves (under
 * the lock, so the node writes each key at most once per usage_flush) and
 * writes the retired half: one EVALSHA per key and day, pipelined on its
 * command connection, after one SCRIPT LOAD of the flush, at most a quarter
 * of max_pending at a time (the rest as answers come back), so that record
 * reads always have room.  What cannot be sent (the connection went) goes
 * back into the active half, for the next flush.  While Redis is not
 * connected nothing is swapped: the counts wait in the zone.
 *
 * The script adds the counts to {prefix}usage:{{prefix}{hex}}:requests:{day}
 * (a hash, expiring NGX_HTTP_API_KEY_USAGE_DAYS after the day) and raises
 * {prefix}usage:{{prefix}{hex}}:last_used (unix seconds, expiring
 * NGX_HTTP_API_KEY_LAST_USED_DAYS after the last use); the record's hash is
 * never written (a write there would drop every node's cached copy through
 * keyspace events).
 */


#include "ngx_http_api_key.h"

#include <ngx_sha1.h>


#define NGX_HTTP_API_KEY_USAGE_DAYS       92    /* requests:{day} kept */
#define NGX_HTTP_API_KEY_LAST_USED_DAYS   400   /* last_used kept */

#define NGX_HTTP_API_KEY_FOLD_MAX         1000  /* ms between two folds of
                                                   a worker's counts */
#define NGX_HTTP_API_KEY_LOCAL_SLOTS      512   /* a worker's usage table:
                                                   3/4 of it (384 keys) per
                                                   fold */
#define NGX_HTTP_API_KEY_LOCAL_LABELS     128   /* values of a worker's
                                                   label table per fold */
#define NGX_HTTP_API_KEY_FOLD_STEP        8     /* items of a worker's usage
                                                   table (values of its
                                                   label table) folded per
                                                   hold of the zone's lock */


/*
 * KEYS[1] requests:{day}, KEYS[2] last_used; ARGV: the day hash's expiry
 * (unix time), the last use, last_used's expiry, then pairs of class and
 * count.  last_used only grows (nodes flush in any order).
 */

static char  ngx_http_api_key_usage_script[] =
    "for i = 4, #ARGV - 1, 2 do "
    "redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end "
    "redis.call('EXPIREAT', KEYS[1], ARGV[1]) "
    "local last = tonumber(redis.call('GET', KEYS[2]) or 0) or 0 "
    "if last < tonumber(ARGV[2]) then "
    "redis.call('SET', KEYS[2], ARGV[2]) end "
    "redis.call('EXPIREAT', KEYS[2], ARGV[3]) "
    "return 1";


typedef struct {
    ngx_http_api_key_zone_t    *zone;       /* the zone being written */
    ak_usage_item_t            *items;      /* its retired half */
    uint32_t                    n;
    uint32_t                    next;       /* the next slot to send */
    ngx_uint_t                  inflight;   /* writes not answered yet */
} ngx_http_api_key_usage_drain_t;


static void ngx_http_api_key_usage_front_take(ngx_http_api_key_zone_t *zone,
    ak_usage_item_t *it, const u_char *hash, int64_t day)
    ngx_http_api_key_cold;
static void ngx_http_api_key_usage_add(ngx_http_api_key_zone_t *zone,
    const u_char *hash, int64_t now, unsigned cls) ngx_http_api_key_cold;
static void ngx_http_api_key_usage_front_flush(ngx_http_api_key_zone_t *zone,
    ngx_uint_t locked);
static void ngx_http_api_key_usage_fold_steps(ngx_http_api_key_zone_t *zone);
static void ngx_http_api_key_usage_labels_steps(
    ngx_http_api_key_zone_t *zone);
static void ngx_http_api_key_usage_fold_locked(ngx_http_api_key_zone_t *zone);
static void ngx_http_api_key_usage_fold_tick(ngx_event_t *ev);
static void ngx_http_api_key_usage_tick(ngx_event_t *ev);
static void ngx_http_api_key_usage_start(ngx_http_api_key_zone_t *zone);
static void ngx_http_api_key_usage_send_more(void);
static ngx_int_t ngx_http_api_key_usage_send(ngx_http_api_key_zone_t *zone,
    ak_usage_item_t *it);
static void ngx_http_api_key_usage_reply(ngx_http_api_key_reply_t *reply,
    void *data);
static void ngx_http_api_key_usage_finish(void);
static void ngx_http_api_key_usage_wait_handler(ngx_event_t *ev);


static ngx_event_t                     ngx_http_api_key_usage_timer;
static ngx_event_t                     ngx_http_api_key_fold_timer;
static ngx_msec_t                      ngx_http_api_key_fold_every;
static ngx_http_api_key_main_conf_t   *ngx_http_api_key_usage_amcf;
static ngx_msec_t                      ngx_http_api_key_usage_every;
static ngx_http_api_key_usage_drain_t  ngx_http_api_key_usage_drain;
static u_char                          ngx_http_api_key_usage_sha[40];
static ngx_uint_t                      ngx_http_api_key_usage_failures;

/* the timer's data: debug lines name an event's connection (its fd) */
static ngx_connection_t                ngx_http_api_key_usage_dummy;

/*
 * Set while a flush has writes in flight, and not cancelable: a worker
 * that is leaving (a reload's old worker, a graceful stop) stays until
 * they are answered instead of closing the connection on them, for at
 * most one Redis "timeout" (the timer fires every timeout while the flush
 * goes on, and lets the worker go once it is leaving).
 */
static ngx_event_t                     ngx_http_api_key_usage_wait;


/*
 * The usage class of each status, plus one: 0 is not counted (no record
 * known: missing, malformed, unknown, unchecked...).
 */

static const u_char  ngx_http_api_key_usage_class[NGX_HTTP_API_KEY_NSTATUS] = {
    0,                                   /* NONE */
    1 + AK_USAGE_ALLOWED,                /* OK */
    0,                                   /* MISSING */
    0,                                   /* MALFORMED */
    0,                                   /* UNKNOWN */
    1 + AK_USAGE_DENIED_STATUS,          /* EXPIRED */
    1 + AK_USAGE_DENIED_STATUS,          /* REVOKED */
    1 + AK_USAGE_DENIED_STATUS,          /* DISABLED */
    0,                                   /* BAD_RECORD */
    1 + AK_USAGE_DENIED_POLICY,          /* IP_DENIED */
    1 + AK_USAGE_DENIED_POLICY,          /* REFERRER_DENIED */
    1 + AK_USAGE_DENIED_POLICY,          /* SCOPE_DENIED */
    1 + AK_USAGE_DENIED_LIMIT,           /* RATE_LIMITED */
    1 + AK_USAGE_DENIED_LIMIT,           /* QUOTA_EXCEEDED */
    0,                                   /* UNAVAILABLE */
    0                                    /* UNCHECKED */
};


/*
 * The request's outcome, counted for its key (the handler, decided).  In
 * the worker, in front of its usage table, one item per slot, by the
 * hash's first byte (a digest's: uniform): the usual request adds one
 * there, with no probe of the table; another key (or day) in its slot
 * moves the item into the table first, as a fold does with all of them.
 */

void
ngx_http_api_key_usage_count(ngx_http_api_key_zone_t *zone,
    const u_char *hash, ngx_http_api_key_status_e status)
{
    unsigned          cls;
    int64_t           now, day;
    ak_usage_item_t  *it;

    cls = ngx_http_api_key_usage_class[status];

    if (cls == 0 || zone->usage_flush == 0) {
        return;
    }

    cls--;

    now = (int64_t) ngx_time();

    if (zone->usage_front == NULL) {
        ngx_http_api_key_usage_add(zone, hash, now, cls);
        return;
    }

    /* the UTC day, as the table counts it (never 0: an empty item) */

    day = now - now % 86400;

    if (day <= 0) {
        day = 86400;
    }

    it = &zone->usage_front[hash[0] & (NGX_HTTP_API_KEY_FRONT_SLOTS - 1)];

    if (it->day != day || ngx_memcmp(it->hash, hash, AK_HASH_LEN) != 0) {
        ngx_http_api_key_usage_front_take(zone, it, hash, day);
    }

    if (it->counts[cls] != UINT32_MAX) {
        it->counts[cls]++;
    }

    if (now > it->last_used) {
        it->last_used = now;
    }

    zone->local_counts++;
}


/* the item in front of the table for another key, or day, than its own */

static void
ngx_http_api_key_usage_front_take(ngx_http_api_key_zone_t *zone,
    ak_usage_item_t *it, const u_char *hash, int64_t day)
{
    if (it->day && ak_usage_merge(zone->usage_local, it) != 0) {
        /*
         * the worker's table is full: the fold moves this item and the
         * others there, then the table into the zone
         */
        ngx_http_api_key_usage_fold(zone);
    }

    ngx_memcpy(it->hash, hash, AK_HASH_LEN);
    it->day = day;
    it->last_used = 0;
    ngx_memzero(it->counts, sizeof(it->counts));
}


/* without items in front: in the worker's table, or the zone's */

static void
ngx_http_api_key_usage_add(ngx_http_api_key_zone_t *zone, const u_char *hash,
    int64_t now, unsigned cls)
{
    if (zone->usage_local == NULL) {
        if (zone->sh->usage == NULL) {
            return;
        }

        /* not made at the worker's start: in the zone at once */
        ngx_shmtx_lock(&zone->shpool->mutex);
        (void) ak_usage_add(zone->sh->usage, hash, now, cls);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    if (ak_usage_add(zone->usage_local, hash, now, cls) != 0) {
        /*
         * the worker's table is full (its own "dropped" count is never
         * read): into the zone, then counted in the emptied table
         */
        ngx_http_api_key_usage_fold(zone);

        (void) ak_usage_add(zone->usage_local, hash, now, cls);
    }

    zone->local_counts++;
}


/*
 * The items in front of the worker's usage table into it (a fold; under
 * the zone's lock when locked, else taken for a few items at a time): when
 * the table is full, it is folded into the zone's first.
 */

static void
ngx_http_api_key_usage_front_flush(ngx_http_api_key_zone_t *zone,
    ngx_uint_t locked)
{
    ngx_uint_t        i;
    ak_usage_item_t  *it;

    for (i = 0; i < NGX_HTTP_API_KEY_FRONT_SLOTS; i++) {
        it = &zone->usage_front[i];

        if (it->day == 0) {
            continue;
        }

        if (ak_usage_merge(zone->usage_local, it) != 0) {
            if (locked) {
                (void) ak_usage_fold(zone->sh->usage, zone->usage_local);

            } else {
                ngx_http_api_key_usage_fold_steps(zone);
            }

            (void) ak_usage_merge(zone->usage_local, it);
        }

        ngx_memzero(it, sizeof(ak_usage_item_t));
    }
}


/*
 * api_key_metrics labels=: a request of the key's plan or owner, by the
 * metrics page's status index (NONE is not a status)
 */

void
ngx_http_api_key_usage_label(ngx_http_api_key_zone_t *zone,
    const u_char *value, size_t len, ngx_http_api_key_status_e status)
{
    ngx_http_api_key_main_conf_t  *amcf = zone->amcf;

    if (zone->sh->labels == NULL) {
        return;
    }

    if (zone->labels_local == NULL) {
        ngx_shmtx_lock(&zone->shpool->mutex);
        ak_labels_count(zone->sh->labels, (const char *) value, len,
                        status - 1, (uint32_t) amcf->metrics_label_max);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    if (ak_labels_count_local(zone->labels_local, (const char *) value, len,
                              status - 1)
        != 0)
    {
        /* a new value and the worker's table is full: fold, count again */
        ngx_http_api_key_usage_fold(zone);

        (void) ak_labels_count_local(zone->labels_local, (const char *) value,
                                     len, status - 1);
    }

    zone->local_counts++;
}


/*
 * the worker's counts of the zone into the zone's tables, under its lock
 * taken for NGX_HTTP_API_KEY_FOLD_STEP items at a time (the other workers'
 * cache writers and folds wait for no more than that): the items in front
 * of the worker's table first, into it (process memory), then its items
 */

void
ngx_http_api_key_usage_fold(ngx_http_api_key_zone_t *zone)
{
    if (zone->local_counts == 0) {
        return;
    }

    if (zone->usage_local && zone->sh->usage) {
        if (zone->usage_front) {
            ngx_http_api_key_usage_front_flush(zone, 0);
        }

        ngx_http_api_key_usage_fold_steps(zone);
    }

    if (zone->labels_local && zone->sh->labels) {
        ngx_http_api_key_usage_labels_steps(zone);
    }

    zone->local_counts = 0;
}


/* the worker's label table into the zone's, the lock taken for a few
 * values at a time (as ngx_http_api_key_usage_fold_locked() folds it) */

static void
ngx_http_api_key_usage_labels_steps(ngx_http_api_key_zone_t *zone)
{
    uint32_t                       at;
    ngx_http_api_key_main_conf_t  *amcf = zone->amcf;

    for (at = 0; at != AK_LABELS_FOLDED; /* void */) {
        ngx_shmtx_lock(&zone->shpool->mutex);

        if (ak_labels_kind(zone->sh->labels) == amcf->metrics_label) {
            (void) ak_labels_fold_step(zone->sh->labels, zone->labels_local,
                                       (uint32_t) amcf->metrics_label_max,
                                       &at, NGX_HTTP_API_KEY_FOLD_STEP);

        } else {
            /* a reload switched labels= (see fold_locked()) */
            ak_labels_reset(zone->labels_local,
                            ak_labels_kind(zone->labels_local));
            at = AK_LABELS_FOLDED;
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


/* the worker's usage table into the zone's, the lock taken for a few items
 * at a time */

static void
ngx_http_api_key_usage_fold_steps(ngx_http_api_key_zone_t *zone)
{
    uint32_t  at, slots;

    slots = ak_usage_slots(zone->usage_local);

    for (at = 0; at < slots; /* void */) {
        ngx_shmtx_lock(&zone->shpool->mutex);
        (void) ak_usage_fold_step(zone->sh->usage, zone->usage_local, &at,
                                  NGX_HTTP_API_KEY_FOLD_STEP);
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


static void
ngx_http_api_key_usage_fold_locked(ngx_http_api_key_zone_t *zone)
{
    ngx_http_api_key_main_conf_t  *amcf = zone->amcf;

    if (zone->local_counts == 0) {
        return;
    }

    if (zone->usage_local && zone->sh->usage) {
        if (zone->usage_front) {
            ngx_http_api_key_usage_front_flush(zone, 1);
        }

        (void) ak_usage_fold(zone->sh->usage, zone->usage_local);
    }

    if (zone->labels_local && zone->sh->labels) {
        if (ak_labels_kind(zone->sh->labels) == amcf->metrics_label) {
            (void) ak_labels_fold(zone->sh->labels, zone->labels_local,
                                  (uint32_t) amcf->metrics_label_max);

        } else {
            /*
             * a reload switched labels= (plan, owner) and reset the zone's
             * table: an old worker's counts of the other field are dropped
             */
            ak_labels_reset(zone->labels_local,
                            ak_labels_kind(zone->labels_local));
        }
    }

    zone->local_counts = 0;
}


void
ngx_http_api_key_usage_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf)
{
    void                      *mem;
    size_t                     size;
    u_char                     digest[20];
    ngx_sha1_t                 sha1;
    ngx_uint_t                 i, nvalues;
    ngx_http_api_key_zone_t  **zp, *zone;

    ngx_http_api_key_usage_amcf = amcf;
    ngx_http_api_key_usage_every = 0;
    ngx_memzero(&ngx_http_api_key_usage_drain,
                sizeof(ngx_http_api_key_usage_drain_t));
    ngx_http_api_key_usage_failures = 0;

    ngx_http_api_key_fold_every = 0;

    zp = amcf->zones.elts;

    for (i = 0; i < amcf->zones.nelts; i++) {
        zone = zp[i];

        zone->usage_front = NULL;
        zone->usage_local = NULL;
        zone->labels_local = NULL;
        zone->local_counts = 0;

        if (zone->usage_flush && zone->sh->usage
            && (ngx_http_api_key_usage_every == 0
                || zone->usage_flush < ngx_http_api_key_usage_every))
        {
            ngx_http_api_key_usage_every = zone->usage_flush;
        }

        /*
         * the worker's own tables (process memory, for the worker's life;
         * without them, counted in the zone at once)
         */

        if (zone->usage_flush && zone->sh->usage) {
            size = ak_usage_size(NGX_HTTP_API_KEY_LOCAL_SLOTS);
            mem = ngx_alloc(size, cycle->log);

            if (mem) {
                zone->usage_local = ak_usage_create(mem, size);

                if (zone->usage_local == NULL) {
                    ngx_free(mem);
                }
            }

            if (zone->usage_local) {
                /* without it, counted in the table at once */
                zone->usage_front = ngx_calloc(NGX_HTTP_API_KEY_FRONT_SLOTS
                                               * sizeof(ak_usage_item_t),
                                               cycle->log);
            }
        }

        if (amcf->metrics_label && zone->sh->labels) {
            /*
             * as many values as it can (not values=: the zone's table
             * decides which get a series when they are folded)
             */
            nvalues = NGX_HTTP_API_KEY_LOCAL_LABELS;
            size = ak_labels_size((uint32_t) nvalues,
                                  NGX_HTTP_API_KEY_NSTATUS - 1);
            mem = ngx_alloc(size, cycle->log);

            if (mem) {
                zone->labels_local = ak_labels_create(mem, size,
                                                 (uint32_t) nvalues,
                                                 NGX_HTTP_API_KEY_NSTATUS - 1,
                                                 (uint32_t) amcf->metrics_label);

                if (zone->labels_local == NULL) {
                    ngx_free(mem);
                }
            }
        }

        if (zone->usage_local || zone->labels_local) {
            ngx_http_api_key_fold_every = NGX_HTTP_API_KEY_FOLD_MAX;
        }
    }

    if (ngx_http_api_key_fold_every) {
        if (ngx_http_api_key_usage_every) {
            /* a few folds per flush: what is flushed is at most this late */
            ngx_http_api_key_fold_every = ngx_min(NGX_HTTP_API_KEY_FOLD_MAX,
                                              ngx_http_api_key_usage_every / 4);
        }

        ngx_memzero(&ngx_http_api_key_fold_timer, sizeof(ngx_event_t));
        ngx_http_api_key_usage_dummy.fd = (ngx_socket_t) -1;
        ngx_http_api_key_timer_init(&ngx_http_api_key_fold_timer,
                                    ngx_http_api_key_usage_fold_tick,
                                    &ngx_http_api_key_usage_dummy,
                                    cycle->log);

        ngx_add_timer(&ngx_http_api_key_fold_timer,
                      ngx_http_api_key_fold_every);
    }

    if (ngx_http_api_key_usage_every == 0) {
        return;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, ngx_http_api_key_usage_script,
                    sizeof(ngx_http_api_key_usage_script) - 1);
    ngx_sha1_final(digest, &sha1);
    ngx_hex_dump(ngx_http_api_key_usage_sha, digest, sizeof(digest));

    ngx_memzero(&ngx_http_api_key_usage_timer, sizeof(ngx_event_t));
    ngx_http_api_key_usage_dummy.fd = (ngx_socket_t) -1;
    ngx_http_api_key_timer_init(&ngx_http_api_key_usage_timer,
                                ngx_http_api_key_usage_tick,
                                &ngx_http_api_key_usage_dummy, cycle->log);

    ngx_memzero(&ngx_http_api_key_usage_wait, sizeof(ngx_event_t));
    ngx_http_api_key_timer_init(&ngx_http_api_key_usage_wait,
                                ngx_http_api_key_usage_wait_handler,
                                &ngx_http_api_key_usage_dummy, cycle->log);
    ngx_http_api_key_usage_wait.cancelable = 0;

    ngx_add_timer(&ngx_http_api_key_usage_timer,
                  ngx_http_api_key_usage_every);
}


/* the worker's counts into the zones, a few times per usage_flush */

static void
ngx_http_api_key_usage_fold_tick(ngx_event_t *ev)
{
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp;

    zp = ngx_http_api_key_usage_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_usage_amcf->zones.nelts; i++) {
        ngx_http_api_key_usage_fold(zp[i]);
    }

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        /* the rest at the worker's exit */
        return;
    }

    ngx_add_timer(ev, ngx_http_api_key_fold_every);
}


/*
 * The worker exits (a stop, a reload's old worker once its requests are
 * done): what it counted goes into the zones, kept across a reload, where
 * the next flush (by any worker, a new one after a reload) finds it.
 */

void
ngx_http_api_key_usage_exit_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    if (ngx_http_api_key_usage_amcf == NULL) {
        return;
    }

    zp = ngx_http_api_key_usage_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_usage_amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_http_api_key_usage_fold(zone);

        /* (made by ngx_alloc() at the worker's start) */

        if (zone->usage_front) {
            ngx_free(zone->usage_front);
            zone->usage_front = NULL;
        }

        if (zone->usage_local) {
            ngx_free(zone->usage_local);
            zone->usage_local = NULL;
        }

        if (zone->labels_local) {
            ngx_free(zone->labels_local);
            zone->labels_local = NULL;
        }
    }
}


/*
 * The worker's timer: the zones whose flush is due (the first worker to
 * see it takes it) and that counted something are written.
 */

static void
ngx_http_api_key_usage_tick(ngx_event_t *ev)
{
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_add_timer(ev, ngx_http_api_key_usage_every);

    if (ngx_http_api_key_usage_drain.items || !ngx_http_api_key_redis_ready())
    {
        /* still writing the last flush, or Redis is not there: later */
        return;
    }

    zp = ngx_http_api_key_usage_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_usage_amcf->zones.nelts; i++) {
        zone = zp[i];

        if (zone->usage_flush && zone->sh->usage) {
            ngx_http_api_key_usage_start(zone);

            if (ngx_http_api_key_usage_drain.items) {
                /* one zone at a time; the others at the next tick */
                return;
            }
        }
    }
}


/* the node's next flush of the zone is due at now (or none was made) */

static ngx_inline ngx_uint_t
ngx_http_api_key_usage_due(ngx_http_api_key_shctx_t *sh, ngx_msec_t now)
{
    return (ngx_msec_int_t) (now - sh->usage_next) >= 0 || sh->usage_next == 0;
}


static void
ngx_http_api_key_usage_start(ngx_http_api_key_zone_t *zone)
{
    uint32_t                        n;
    ngx_msec_t                      now;
    const char                     *argv[3];
    size_t                          argvlen[3];
    ak_usage_item_t                *items;
    ngx_http_api_key_shctx_t       *sh;
    ngx_http_api_key_redis_conf_t  *conf;

    sh = zone->sh;
    now = ngx_current_msec;
    items = NULL;
    n = 0;

    if (ngx_http_api_key_usage_due(sh, now)) {
        /* likely due (read without the lock, checked again under it):
         * this worker's counts first, a few items per hold of the lock */
        ngx_http_api_key_usage_fold(zone);
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* the clock all workers share (monotonic): due for the node? */

    if (ngx_http_api_key_usage_due(sh, now)) {
        /* this worker's counts first (the others' are folded by now, but
         * for at most a fold interval; this one's, above, when it looked
         * due: what is left of them, if anything) */
        ngx_http_api_key_usage_fold_locked(zone);

        items = ak_usage_swap(sh->usage, &n);

        if (items) {
            sh->usage_next = now + zone->usage_flush;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (items == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(&sh->usage_flushes, 1);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_usage_timer.log, 0,
                   "api_key: usage flush of zone \"%V\" (%uD slots)",
                   &zone->name, n);

    ngx_http_api_key_usage_drain.zone = zone;
    ngx_http_api_key_usage_drain.items = items;
    ngx_http_api_key_usage_drain.n = n;
    ngx_http_api_key_usage_drain.next = 0;
    ngx_http_api_key_usage_drain.inflight = 0;

    conf = ngx_http_api_key_redis_conf();

    ngx_add_timer(&ngx_http_api_key_usage_wait,
                  (conf && conf->timeout) ? conf->timeout : 1000);

    /* the script, before the writes on the same connection (in order) */

    argv[0] = "SCRIPT";
    argvlen[0] = 6;
    argv[1] = "LOAD";
    argvlen[1] = 4;
    argv[2] = ngx_http_api_key_usage_script;
    argvlen[2] = sizeof(ngx_http_api_key_usage_script) - 1;

    /* (a cluster: EVAL instead, each master has its own script cache) */

    if (!(conf && conf->cluster)) {
        (void) ngx_http_api_key_redis_command(NULL, NULL, -1, 3, argv,
                                              argvlen);
    }

    ngx_http_api_key_usage_send_more();
}


/*
 * Sends what is left of the retired half, keeping at most a quarter of
 * max_pending in flight; when everything is sent (or cannot be: the
 * connection went), the rest goes back and the half is cleared.
 */

static void
ngx_http_api_key_usage_send_more(void)
{
    ngx_uint_t                       budget;
    ak_usage_item_t                 *it;
    ngx_http_api_key_redis_conf_t   *conf;
    ngx_http_api_key_usage_drain_t  *d = &ngx_http_api_key_usage_drain;

    if (ngx_exiting) {
        /* the worker is leaving: nothing more is sent, what was not goes
         * back to the zone for the next flush (a new worker's) once the
         * writes in flight are answered */

        if (d->inflight == 0) {
            ngx_http_api_key_usage_finish();
        }

        return;
    }

    conf = ngx_http_api_key_redis_conf();
    budget = ngx_max(conf->max_pending / 4, 1);

    while (d->next < d->n && d->inflight < budget) {
        it = &d->items[d->next];

        if (it->day == 0) {
            d->next++;
            continue;
        }

        if (ngx_http_api_key_usage_send(d->zone, it) != NGX_OK) {
            break;
        }

        d->next++;
        d->inflight++;
    }

    if (d->next < d->n && d->inflight == 0) {
        /* nothing in flight and nothing can be sent: give the rest back */
        ngx_http_api_key_usage_finish();
        return;
    }

    if (d->next >= d->n && d->inflight == 0) {
        ngx_http_api_key_usage_finish();
    }
}


static ngx_int_t
ngx_http_api_key_usage_send(ngx_http_api_key_zone_t *zone, ak_usage_item_t *it)
{
    int                              argc;
    size_t                           len[2];
    int64_t                          now;
    unsigned                         c;
    const char                      *argv[8 + 2 * AK_USAGE_NCLASSES];
    size_t                           argvlen[8 + 2 * AK_USAGE_NCLASSES];
    u_char                          *p;
    ngx_http_api_key_redis_conf_t   *conf;
    static u_char                    names[2][AK_REDIS_TAGGED_MAX];
    static u_char                    nums[3 + AK_USAGE_NCLASSES]
                                         [NGX_INT64_LEN];

    conf = ngx_http_api_key_redis_conf();
    now = (int64_t) ngx_time();

    len[0] = ak_redis_name_requests((const char *) conf->prefix.data,
                                    conf->prefix.len, it->hash, it->day,
                                    (char *) names[0], sizeof(names[0]));
    len[1] = ak_redis_name_last_used((const char *) conf->prefix.data,
                                     conf->prefix.len, it->hash,
                                     (char *) names[1], sizeof(names[1]));

    if (len[0] == 0 || len[1] == 0) {
        return NGX_ERROR;
    }

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_http_api_key_usage_sha;
    argvlen[1] = sizeof(ngx_http_api_key_usage_sha);

    if (conf->cluster) {
        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_http_api_key_usage_script;
        argvlen[1] = sizeof(ngx_http_api_key_usage_script) - 1;
    }

    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) names[0];
    argvlen[3] = len[0];
    argv[4] = (const char *) names[1];
    argvlen[4] = len[1];

    p = nums[0];
    argv[5] = (const char *) p;
    argvlen[5] = ngx_sprintf(p, "%L",
                             it->day + (NGX_HTTP_API_KEY_USAGE_DAYS + 1)
                                       * 86400)
                 - p;

    p = nums[1];
    argv[6] = (const char *) p;
    argvlen[6] = ngx_sprintf(p, "%L", it->last_used) - p;

    p = nums[2];
    argv[7] = (const char *) p;
    argvlen[7] = ngx_sprintf(p, "%L",
                             ngx_max(now, it->last_used)
                             + NGX_HTTP_API_KEY_LAST_USED_DAYS * 86400)
                 - p;

    argc = 8;

    for (c = 0; c < AK_USAGE_NCLASSES; c++) {
        if (it->counts[c] == 0) {
            continue;
        }

        argv[argc] = ak_usage_class_name(c);
        argvlen[argc] = ngx_strlen(argv[argc]);
        argc++;

        p = nums[3 + c];
        argv[argc] = (const char *) p;
        argvlen[argc] = ngx_sprintf(p, "%uD", it->counts[c]) - p;
        argc++;
    }

    /* the arguments are encoded at once: the buffers may be reused */

    /* KEYS[1] and KEYS[2] share the record's hash tag: one slot */

    if (ngx_http_api_key_redis_command(ngx_http_api_key_usage_reply, zone,
                                       3, argc, argv, argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    (void) ngx_atomic_fetch_add(&zone->sh->usage_writes, 1);

    return NGX_OK;
}


static void
ngx_http_api_key_usage_reply(ngx_http_api_key_reply_t *reply, void *data)
{
    ngx_http_api_key_zone_t         *zone = data;
    ngx_http_api_key_usage_drain_t  *d = &ngx_http_api_key_usage_drain;

    if (reply == NULL || reply->type == NGX_HTTP_API_KEY_REPLY_ERROR) {
        (void) ngx_atomic_fetch_add(&zone->sh->usage_errors, 1);

        if (ngx_http_api_key_usage_failures++ == 0) {
            if (reply) {
                ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_usage_timer.log,
                              0, "api_key: a usage write failed: %*s",
                              ngx_http_api_key_error_len(reply->str.data,
                                                         reply->str.len),
                              reply->str.data);

            } else {
                ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_usage_timer.log,
                              0, "api_key: a usage write got no answer "
                              "(the Redis connection went)");
            }
        }

    } else if (ngx_http_api_key_usage_failures) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_usage_timer.log, 0,
                      "api_key: usage writes work again, %ui failed "
                      "meanwhile", ngx_http_api_key_usage_failures);
        ngx_http_api_key_usage_failures = 0;
    }

    if (d->items == NULL || d->zone != zone || d->inflight == 0) {
        return;
    }

    d->inflight--;

    ngx_http_api_key_usage_send_more();
}


/* the rest of the retired half back into the active one; clear it */

static void
ngx_http_api_key_usage_finish(void)
{
    uint32_t                         i, back;
    ngx_http_api_key_zone_t         *zone;
    ngx_http_api_key_usage_drain_t  *d = &ngx_http_api_key_usage_drain;

    zone = d->zone;
    back = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = d->next; i < d->n; i++) {
        if (d->items[i].day) {
            (void) ak_usage_merge(zone->sh->usage, &d->items[i]);
            back++;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (ngx_http_api_key_usage_wait.timer_set) {
        ngx_del_timer(&ngx_http_api_key_usage_wait);
    }

    /* nothing else writes the retired half: cleared without the lock */

    ak_usage_clear(zone->sh->usage);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_usage_timer.log, 0,
                   "api_key: usage flush of zone \"%V\" done, %uD kept "
                   "for the next one", &zone->name, back);

    ngx_memzero(d, sizeof(ngx_http_api_key_usage_drain_t));
}


/*
 * A flush's writes still unanswered after a Redis timeout: a worker that
 * is leaving waits no longer (it closes the connection on them at its
 * exit); else the mark stays while the flush goes on.
 */

static void
ngx_http_api_key_usage_wait_handler(ngx_event_t *ev)
{
    ngx_http_api_key_redis_conf_t  *conf;

    if (ngx_http_api_key_usage_drain.items == NULL || ngx_exiting) {
        return;
    }

    conf = ngx_http_api_key_redis_conf();

    ngx_add_timer(ev, (conf && conf->timeout) ? conf->timeout : 1000);
}
