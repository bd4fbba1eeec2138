/* SPDX-License-Identifier: BSD-2-Clause */

/*
 * ngx_http_api_key_module: requests waiting on Redis.
 *
 * A request whose key is not cached waits for the read of its record
 * (lookup.c); one whose quota counts ran out waits for a lease (limits.c).
 * Either is an ngx_http_api_key_wait_t: the requests that joined it, and,
 * for a read, its answer.  The owner wakes them all when the answer (or a
 * timeout) comes: each runs its phases again from its own connection's
 * event.  A request that goes away while waiting cancels its place.
 *
 * The waiter is the request's context (ngx_http_api_key_ctx_t), made here:
 * it lives as long as the request's pool, whose cleanup cancels its wait.
 *
 * The owners keep their waits in rbtrees keyed by the key's hash (one read,
 * one lease per key and zone at a time): ngx_http_api_key_tree_find() finds
 * one there.
 */


#include "ngx_http_api_key.h"


static ngx_rbtree_node_t *ngx_http_api_key_tree_find_from(
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel,
    ngx_http_api_key_zone_t *zone, u_char *hash, size_t hash_offset,
    size_t zone_offset);


/* the context whose text is lent (ngx_http_api_key.h), NULL: none */
ngx_http_api_key_ctx_t  *ngx_http_api_key_text_lent;


/*
 * The context survives internal redirects (which clear r->ctx) through its
 * pool cleanup, as the realip module does (ngx_http_api_key_get_ctx(), in
 * ngx_http_api_key.h, looks here once r->ctx is cleared).  Subrequests
 * share the main request's pool: the contexts of other requests are passed
 * over.
 */

ngx_http_api_key_ctx_t *
ngx_http_api_key_find_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_api_key_ctx_t  *ctx;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_api_key_ctx_cleanup) {
            ctx = cln->data;

            if (ctx->request != r) {
                continue;
            }

            ngx_http_set_ctx(r, ctx, ngx_http_api_key_module);
            return ctx;
        }
    }

    return NULL;
}


/*
 * The request is going away: stop waiting for Redis, forget the hash (the
 * context's pool cleanup, ngx_http_api_key_create_ctx() in
 * ngx_http_api_key.h)
 */

void
ngx_http_api_key_ctx_cleanup(void *data)
{
    ngx_http_api_key_ctx_t  *ctx = data;

    if (ctx->waiting) {
        ngx_http_api_key_wait_cancel(ctx);
    }

    if (ngx_http_api_key_text_lent == ctx) {
        ngx_http_api_key_text_lent = NULL;
    }

#if (defined __GNUC__ || defined __clang__)
    /* ngx_explicit_memzero() inline: the barrier keeps the stores */
    ngx_memzero(ctx->hash, AK_HASH_LEN);
    __asm__ __volatile__ ("" : : "r" (ctx->hash) : "memory");
#else
    ngx_explicit_memzero(ctx->hash, AK_HASH_LEN);
#endif
}


void
ngx_http_api_key_wait_init(ngx_http_api_key_wait_t *w,
    ngx_http_api_key_wait_e kind, ngx_log_t *log)
{
    ngx_queue_init(&w->waiters);
    w->kind = kind;
    w->result = NGX_HTTP_API_KEY_LOOKUP_NONE;
    w->log = log;
}


void
ngx_http_api_key_wait_join(ngx_http_api_key_wait_t *w,
    ngx_http_api_key_ctx_t *ctx)
{
    ngx_queue_insert_tail(&w->waiters, &ctx->wait_link);
    ctx->waiting = w;
}


/* the request went away while waiting */

void
ngx_http_api_key_wait_cancel(ngx_http_api_key_ctx_t *ctx)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ctx->waiting->log, 0,
                   "api_key: a waiting request went away");

    ngx_queue_remove(&ctx->wait_link);
    ctx->waiting = NULL;
}


/*
 * The read (or lease) is over: every request waiting on it runs its phases
 * again; a read's waiters take its answer (w->result) with them.
 */

void
ngx_http_api_key_wait_wake(ngx_http_api_key_wait_t *w)
{
    ngx_uint_t               n;
    ngx_queue_t             *q;
    ngx_http_api_key_ctx_t  *ctx;

    n = 0;

    while (!ngx_queue_empty(&w->waiters)) {
        q = ngx_queue_head(&w->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_api_key_ctx_t, wait_link);
        ctx->waiting = NULL;

        if (w->kind == NGX_HTTP_API_KEY_WAIT_READ) {
            ctx->lookup_result = w->result;
        }

        if (ctx->request->connection->data != ctx->request) {
            /*
             * the connection's event runs the active request (c->data),
             * then the posted ones: a subrequest that is not the active
             * one is posted (the active one must not: it would run twice)
             */
            (void) ngx_http_post_request(ctx->request, NULL);
        }

        ngx_post_event(ctx->request->connection->write, &ngx_posted_events);

        n++;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "api_key: wake %ui request(s)", n);
}


/*
 * An rbtree keyed by the hash's first bytes.  Equal keys (the same hash in
 * two zones, or hashes that share their first bytes) are inserted to the
 * right, but rotations move them to either side: both are searched.
 */

ngx_rbtree_node_t *
ngx_http_api_key_tree_find(ngx_rbtree_t *tree, ngx_http_api_key_zone_t *zone,
    u_char *hash, size_t hash_offset, size_t zone_offset)
{
    return ngx_http_api_key_tree_find_from(tree->root, tree->sentinel, zone,
                                           hash, hash_offset, zone_offset);
}


static ngx_rbtree_node_t *
ngx_http_api_key_tree_find_from(ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel, ngx_http_api_key_zone_t *zone, u_char *hash,
    size_t hash_offset, size_t zone_offset)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *found;

    ngx_memcpy(&key, hash, sizeof(ngx_rbtree_key_t));

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        if (*(ngx_http_api_key_zone_t **) ((u_char *) node + zone_offset)
            == zone
            && ngx_memcmp((u_char *) node + hash_offset, hash, AK_HASH_LEN)
               == 0)
        {
            return node;
        }

        /* the depth of the recursion is bounded by the tree's height */

        found = ngx_http_api_key_tree_find_from(node->left, sentinel, zone,
                                                hash, hash_offset,
                                                zone_offset);
        if (found) {
            return found;
        }

        node = node->right;
    }

    return NULL;
}
