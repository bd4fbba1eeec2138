/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: the events subscriber.
 *
 * Each worker's events connection (redis.c) subscribes to the events
 * channel ("revoke HASH", "update HASH", "flush") and, with
 * keyspace_events=on, to the keyspace notifications of the records (any
 * change drops the record).  Events are applied to every zone's cache once
 * per node: the zone's event log (the core's) tells whether another worker
 * applied one already.  The subscription is complete once SUBSCRIBE (and,
 * with keyspace_events=on, PSUBSCRIBE) is confirmed: only then has the
 * events connection proven itself (redis.c's backoff starts over), and when
 * it completes after a loss (or for the first time after a failure), every
 * cached record is made stale (a new generation), so nothing cached while
 * events could be missed is trusted unread.  A subscription that never
 * completes starts no generation: the records are read as their ttl says.
 *
 * A PSUBSCRIBE refused by permission (NOPERM, after the channel's SUBSCRIBE
 * was confirmed; the connection is closed on it) is not retried: the
 * worker warns once and subscribes to the channel alone from then on, so
 * that the revocations still arrive.
 */


#include "ngx_http_api_key_redis.h"


static void ngx_http_api_key_events_check_server(void);
static void ngx_http_api_key_config_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata);
static void ngx_http_api_key_sub_ready(void);
static void ngx_http_api_key_sub_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata);
static void ngx_http_api_key_sub_event(ngx_str_t *msg);
static void ngx_http_api_key_sub_keyspace(ngx_str_t *channel);
static void ngx_http_api_key_apply(ngx_http_api_key_event_e event,
    u_char *hash);
static void ngx_http_api_key_events_sync(void);
static void ngx_http_api_key_events_new_generation(void);
static void ngx_http_api_key_count_event(ngx_http_api_key_event_e event);


static ngx_http_api_key_main_conf_t   *ngx_http_api_key_amcf;
static ngx_http_api_key_redis_conf_t  *ngx_http_api_key_events_conf;
static ngx_log_t                      *ngx_http_api_key_events_log;
static ngx_str_t                       ngx_http_api_key_keyspace_prefix;
static uint64_t                       *ngx_http_api_key_sub_mark;

/* this connection's subscription: what was sent, what is confirmed */
#define NGX_HTTP_API_KEY_SUB_CHANNEL   0x01
#define NGX_HTTP_API_KEY_SUB_PATTERN   0x02

static ngx_uint_t                      ngx_http_api_key_sub_sent;
static ngx_uint_t                      ngx_http_api_key_sub_confirmed;
static ngx_uint_t                      ngx_http_api_key_sub_complete;

/* PSUBSCRIBE refused by permission: the channel alone, until a reload */
static ngx_uint_t                      ngx_http_api_key_sub_no_pattern;


ngx_int_t
ngx_http_api_key_events_init_worker(ngx_cycle_t *cycle,
    ngx_http_api_key_main_conf_t *amcf)
{
    u_char                         *p;
    ngx_http_api_key_redis_conf_t  *conf;

    ngx_http_api_key_amcf = amcf;
    ngx_http_api_key_events_log = cycle->log;
    conf = amcf->redis;
    ngx_http_api_key_events_conf = conf;

    /* "__keyspace@DB__:" + prefix: what keyspace channels start with */

    p = ngx_pnalloc(cycle->pool, sizeof("__keyspace@__:") - 1 + NGX_INT_T_LEN
                                 + conf->prefix.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_http_api_key_keyspace_prefix.data = p;
    p = ngx_sprintf(p, "__keyspace@%i__:%V", conf->db, &conf->prefix);
    ngx_http_api_key_keyspace_prefix.len =
                                  p - ngx_http_api_key_keyspace_prefix.data;

    /* per zone: the event log's head when SUBSCRIBE was sent */

    ngx_http_api_key_sub_mark = ngx_pcalloc(cycle->pool,
                                   (amcf->zones.nelts + 1) * sizeof(uint64_t));
    if (ngx_http_api_key_sub_mark == NULL) {
        return NGX_ERROR;
    }

    ngx_http_api_key_redis_on_ready(NGX_HTTP_API_KEY_CONN_COMMANDS,
                                    ngx_http_api_key_events_check_server);
    ngx_http_api_key_redis_on_ready(NGX_HTTP_API_KEY_CONN_EVENTS,
                                    ngx_http_api_key_sub_ready);

    return NGX_OK;
}


/*
 * The commands connection is up: with keyspace_events=on, one worker looks
 * at whether the server publishes what it needs.
 */

static void
ngx_http_api_key_events_check_server(void)
{
    static const char    *argv[] = { "CONFIG", "GET",
                                     "notify-keyspace-events" };
    static const size_t   argvlen[] = { 6, 3, 22 };

    if (!ngx_http_api_key_events_conf->keyspace_events || ngx_worker != 0) {
        return;
    }

    (void) ngx_http_api_key_redis_send(ngx_http_api_key_config_reply, NULL,
                                       -1, 3, argv, argvlen);
}


/*
 * keyspace_events=on needs K (keyspace channel) and g (DEL, EXPIRE, RENAME),
 * h (HSET, HDEL) and x (expired) events, or A for all of them
 */

static void
ngx_http_api_key_config_reply(ngx_http_api_key_redis_io_t *io,
    redisReply *reply, void *privdata)
{
    size_t       i;
    ngx_uint_t   k, g, h, x;
    redisReply  *v;

    if (reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_events_log, 0,
                      "api_key: keyspace_events=on, but CONFIG GET "
                      "notify-keyspace-events is not allowed; make sure the "
                      "redis server has notify-keyspace-events \"Kghx\" or "
                      "\"KA\"");
        return;
    }

    v = reply->element[1];
    k = g = h = x = 0;

    for (i = 0; i < v->len; i++) {
        switch (v->str[i]) {
        case 'K':
            k = 1;
            break;
        case 'g':
            g = 1;
            break;
        case 'h':
            h = 1;
            break;
        case 'x':
            x = 1;
            break;
        case 'A':
            g = h = x = 1;
            break;
        }
    }

    if (!k || !g || !h || !x) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_events_log, 0,
                      "api_key: keyspace_events=on, but the redis server's "
                      "notify-keyspace-events is \"%*s\": some changes of "
                      "records (HSET, DEL, EXPIRE, expiries) will not be seen "
                      "until their ttl ends; set it to \"Kghx\" (or \"KA\")",
                      v->len, v->str);
    }
}


static void
ngx_http_api_key_sub_ready(void)
{
    u_char                         *p, *q, *last;
    ngx_uint_t                      i;
    ngx_http_api_key_zone_t       **zp;
    ngx_http_api_key_redis_conf_t  *conf;
    const char                     *argv[2];
    size_t                          argvlen[2];
    u_char                          pattern[512];

    conf = ngx_http_api_key_events_conf;

    /*
     * The last connection confirmed the channel, not the pattern, and was
     * closed by an authorization error: the ACL user may not PSUBSCRIBE
     * (to this pattern).  Without the channel too, revocations would be
     * lost as well: keep the channel, without keyspace notifications.
     */

    if (conf->keyspace_events
        && !ngx_http_api_key_sub_no_pattern
        && (ngx_http_api_key_sub_sent & NGX_HTTP_API_KEY_SUB_PATTERN)
        && ngx_http_api_key_sub_confirmed == NGX_HTTP_API_KEY_SUB_CHANNEL
        && ngx_http_api_key_redis_sub_denied())
    {
        ngx_http_api_key_sub_no_pattern = 1;

        ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_events_log, 0,
                      "api_key: keyspace_events=on, but the redis user may "
                      "not PSUBSCRIBE to the keyspace notifications of "
                      "\"%V\" (NOPERM): this worker subscribes to \"%V\" "
                      "alone until nginx is reloaded; records changed "
                      "without an event are seen when their ttl ends",
                      &conf->prefix, &conf->channel);
    }

    ngx_http_api_key_sub_sent = 0;
    ngx_http_api_key_sub_confirmed = 0;
    ngx_http_api_key_sub_complete = 0;

    /*
     * The events in the zones' logs now were published before this
     * SUBSCRIBE: never this subscription's.  The ones logged from here on
     * may be (a faster worker applied them before this worker reads the
     * confirmation): the position starts here, not at the head when the
     * subscription is confirmed, so that they are recognised, not applied
     * a second time (an old "revoke" after a newer "update").
     */

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        ngx_shmtx_lock(&zp[i]->shpool->mutex);
        ngx_http_api_key_sub_mark[i] = ak_evlog_head(&zp[i]->sh->evlog);
        ngx_shmtx_unlock(&zp[i]->shpool->mutex);
    }

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = (const char *) conf->channel.data;
    argvlen[1] = conf->channel.len;

    if (ngx_http_api_key_redis_subscribe(ngx_http_api_key_sub_reply, 2,
                                         argv, argvlen)
        != NGX_OK)
    {
        return;
    }

    ngx_http_api_key_sub_sent = NGX_HTTP_API_KEY_SUB_CHANNEL;

    if (!conf->keyspace_events || ngx_http_api_key_sub_no_pattern) {
        return;
    }

    /* the prefix, its glob characters escaped, then "*" */

    p = pattern;
    last = pattern + sizeof(pattern) - 2;
    q = ngx_http_api_key_keyspace_prefix.data;

    p = ngx_cpymem(p, q, ngx_http_api_key_keyspace_prefix.len
                         - conf->prefix.len);
    q += ngx_http_api_key_keyspace_prefix.len - conf->prefix.len;

    for ( /* void */ ; q < ngx_http_api_key_keyspace_prefix.data
                           + ngx_http_api_key_keyspace_prefix.len;
         q++)
    {
        if (p >= last) {
            ngx_log_error(NGX_LOG_ERR, ngx_http_api_key_events_log, 0,
                          "api_key: prefix too long for keyspace events");
            return;
        }

        if (*q == '*' || *q == '?' || *q == '[' || *q == ']' || *q == '\\') {
            *p++ = '\\';
        }

        *p++ = *q;
    }

    *p++ = '*';

    argv[0] = "PSUBSCRIBE";
    argvlen[0] = sizeof("PSUBSCRIBE") - 1;
    argv[1] = (const char *) pattern;
    argvlen[1] = p - pattern;

    if (ngx_http_api_key_redis_subscribe(ngx_http_api_key_sub_reply, 2,
                                         argv, argvlen)
        == NGX_OK)
    {
        ngx_http_api_key_sub_sent |= NGX_HTTP_API_KEY_SUB_PATTERN;
    }
}


static void
ngx_http_api_key_sub_reply(ngx_http_api_key_redis_io_t *io, redisReply *reply,
    void *privdata)
{
    ngx_str_t                  type, msg;
    ngx_uint_t                 lost;
    ngx_http_api_key_shctx_t  *sh;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 3)
    {
        return;
    }

    if (reply->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }

    type.data = (u_char *) reply->element[0]->str;
    type.len = reply->element[0]->len;

    if (type.len == 7 && ngx_strncmp(type.data, "message", 7) == 0) {
        if (reply->element[2]->type == REDIS_REPLY_STRING) {
            msg.data = (u_char *) reply->element[2]->str;
            msg.len = reply->element[2]->len;
            ngx_http_api_key_sub_event(&msg);
        }

        return;
    }

    if (type.len == 8 && ngx_strncmp(type.data, "pmessage", 8) == 0) {
        if (reply->elements == 4
            && reply->element[2]->type == REDIS_REPLY_STRING)
        {
            msg.data = (u_char *) reply->element[2]->str;
            msg.len = reply->element[2]->len;
            ngx_http_api_key_sub_keyspace(&msg);
        }

        return;
    }

    if (type.len == 9 && ngx_strncmp(type.data, "subscribe", 9) == 0) {

        /* from here on, this worker receives what the others receive */
        ngx_http_api_key_events_sync();

        ngx_http_api_key_sub_confirmed |= NGX_HTTP_API_KEY_SUB_CHANNEL;

    } else if (type.len == 10
               && ngx_strncmp(type.data, "psubscribe", 10) == 0)
    {
        ngx_http_api_key_sub_confirmed |= NGX_HTTP_API_KEY_SUB_PATTERN;

    } else {
        return;
    }

    if (ngx_http_api_key_sub_complete
        || ngx_http_api_key_sub_confirmed != ngx_http_api_key_sub_sent)
    {
        return;
    }

    /* the whole subscription is confirmed: the connection works */

    ngx_http_api_key_sub_complete = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, ngx_http_api_key_events_log, 0,
                   "api_key: events subscription confirmed");

    lost = ngx_http_api_key_redis_subscribed();

    if (!lost) {
        return;
    }

    /*
     * Events may have been missed while the subscription was down (or not
     * complete yet): everything cached so far is re-read before it is
     * trusted.
     */

    ngx_http_api_key_events_new_generation();

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_events_log, 0,
                   "api_key: event applied: new generation");

    ngx_log_error(NGX_LOG_NOTICE, ngx_http_api_key_events_log, 0,
                  "api_key: events subscription to \"%V\" is back, "
                  "cached records will be re-read",
                  &ngx_http_api_key_events_conf->channel);

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (sh) {
        ngx_http_api_key_count(&sh->resubscribes);
    }
}


/* "revoke HASH", "update HASH", "flush" (parsed by the core) */

static void
ngx_http_api_key_sub_event(ngx_str_t *msg)
{
    ngx_http_api_key_event_e   event;
    u_char                     hash[AK_HASH_LEN];

    switch (ak_event_parse((const char *) msg->data, msg->len, hash)) {

    case AK_EVENT_FLUSH:
        ngx_http_api_key_apply(NGX_HTTP_API_KEY_EVENT_FLUSH, NULL);
        ngx_http_api_key_count_event(NGX_HTTP_API_KEY_EVENT_FLUSH);
        return;

    case AK_EVENT_REVOKE:
        event = NGX_HTTP_API_KEY_EVENT_REVOKE;
        break;

    case AK_EVENT_UPDATE:
        event = NGX_HTTP_API_KEY_EVENT_UPDATE;
        break;

    default:
        goto invalid;
    }

    ngx_http_api_key_apply(event, hash);
    ngx_http_api_key_count_event(event);

    return;

invalid:

    ngx_http_api_key_count_event(NGX_HTTP_API_KEY_EVENT_MALFORMED);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_events_log, 0,
                   "api_key: event malformed, %uz bytes", msg->len);

    /* the message is not echoed: it might be a key sent by mistake */
    ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_events_log, 0,
                  "api_key: ignored a malformed event of %uz bytes on "
                  "\"%V\"; expected \"revoke HASH\", \"update HASH\" or "
                  "\"flush\"", msg->len,
                  &ngx_http_api_key_events_conf->channel);
}


/* "__keyspace@0__:apikey:HASH": any change of a record drops it */

static void
ngx_http_api_key_sub_keyspace(ngx_str_t *channel)
{
    ngx_str_t  hex;
    u_char     hash[AK_HASH_LEN];

    if (channel->len != ngx_http_api_key_keyspace_prefix.len + AK_HASH_HEX_LEN
        || ngx_strncmp(channel->data, ngx_http_api_key_keyspace_prefix.data,
                       ngx_http_api_key_keyspace_prefix.len)
           != 0)
    {
        /* id lookups, usage counters: not records */
        return;
    }

    hex.data = channel->data + ngx_http_api_key_keyspace_prefix.len;
    hex.len = AK_HASH_HEX_LEN;

    if (ak_hex_decode_hash((const char *) hex.data, hex.len, hash) != 0) {
        return;
    }

    /* any change of a record: as an "update" of its key */
    ngx_http_api_key_apply(NGX_HTTP_API_KEY_EVENT_UPDATE, hash);
    ngx_http_api_key_count_event(NGX_HTTP_API_KEY_EVENT_KEYSPACE);
}


/*
 * Applies a revoke, update or flush to every zone.  Events from the channel
 * are applied once per node (the zone's event log): the first worker to
 * receive one applies it, the others only move their position past it.
 */

static void
ngx_http_api_key_apply(ngx_http_api_key_event_e event, u_char *hash)
{
    int                        rc, kind;
    uint64_t                   fp;
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    switch (event) {

    case NGX_HTTP_API_KEY_EVENT_REVOKE:
        kind = AK_EVENT_REVOKE;
        break;

    case NGX_HTTP_API_KEY_EVENT_UPDATE:
        kind = AK_EVENT_UPDATE;
        break;

    default: /* NGX_HTTP_API_KEY_EVENT_FLUSH */
        kind = AK_EVENT_FLUSH;
        break;
    }

    fp = ak_evlog_fingerprint(kind, hash);

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_shmtx_lock(&zone->shpool->mutex);

        rc = ak_evlog_claim(&zone->sh->evlog, &zone->event_pos, fp);

        if (rc == AK_EVLOG_APPLY) {
            switch (kind) {

            case AK_EVENT_REVOKE:
                (void) ak_cache_revoke(zone->sh->cache, hash);
                break;

            case AK_EVENT_UPDATE:
                (void) ak_cache_remove(zone->sh->cache, hash);
                break;

            default:
                ak_cache_flush(zone->sh->cache);
                break;
            }
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        /* (not when another worker of the node applied it already) */

        if (rc == AK_EVLOG_APPLY) {
            ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_http_api_key_events_log, 0,
                           "api_key: event applied: %s, hash %08xD, "
                           "zone \"%V\"", ngx_http_api_key_event_name(event),
                           hash ? ngx_http_api_key_hash_prefix(hash) : 0,
                           &zone->name);
        }

        if (rc == AK_EVLOG_LOST && !zone->event_lagging) {
            ngx_log_error(NGX_LOG_WARN, ngx_http_api_key_events_log, 0,
                          "api_key: this worker fell more than %d events "
                          "behind the others in api_key_zone \"%V\" and "
                          "skips the events they applied already",
                          AK_EVLOG_SIZE, &zone->name);
        }

        zone->event_lagging = (rc == AK_EVLOG_LOST);
    }
}


/*
 * Subscribed: this worker's position in each zone's event log starts where
 * the log was when SUBSCRIBE was sent (sub_ready).  This worker's own, not
 * an event.
 */

static void
ngx_http_api_key_events_sync(void)
{
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_shmtx_lock(&zone->shpool->mutex);
        zone->event_pos = ngx_http_api_key_sub_mark[i];
        zone->event_lagging = 0;
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


/* events may have been missed: every cached record is re-read first */

static void
ngx_http_api_key_events_new_generation(void)
{
    ngx_uint_t                 i;
    ngx_http_api_key_zone_t  **zp, *zone;

    zp = ngx_http_api_key_amcf->zones.elts;

    for (i = 0; i < ngx_http_api_key_amcf->zones.nelts; i++) {
        zone = zp[i];

        ngx_shmtx_lock(&zone->shpool->mutex);
        ak_cache_new_generation(zone->sh->cache);
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


/* per node (the first zone), by kind: api_key_events_total */

static void
ngx_http_api_key_count_event(ngx_http_api_key_event_e event)
{
    ngx_http_api_key_shctx_t  *sh;

    sh = ngx_http_api_key_first_sh(ngx_http_api_key_amcf);

    if (sh) {
        ngx_http_api_key_count(&sh->events[event]);
    }
}
